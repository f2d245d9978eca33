//! Small helpers shared by the DynamoDB adapters: transactions and their cancellation
//! reasons, SDK error rendering, attribute access.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use std::collections::HashMap;
use std::time::Duration;

/// DynamoDB's limit on the actions of one `TransactWriteItems`.
pub const MAX_TRANSACT_ACTIONS: usize = 100;

pub(crate) const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailed";
const TRANSACTION_CONFLICT: &str = "TransactionConflict";

/// How often a transaction that collided with another in-flight transaction on the same
/// item (`TransactionConflict`) is retried before the caller sees it as unavailable.
const CONFLICT_ATTEMPTS: u32 = 4;

/// The error with its full source chain, for logs and error messages.
pub(crate) fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(err).to_string()
}

#[derive(Debug)]
pub(crate) enum TxError {
    /// Canceled: one cancellation code per action, in action order (`None` = no reason given).
    Canceled(Vec<Option<String>>),
    Other(String),
}

impl TxError {
    pub(crate) fn failed_condition_at(&self, index: usize) -> bool {
        matches!(self, TxError::Canceled(codes)
            if codes.get(index).and_then(|c| c.as_deref()) == Some(CONDITIONAL_CHECK_FAILED))
    }

    pub(crate) fn any_failed_condition(&self) -> bool {
        matches!(self, TxError::Canceled(codes)
            if codes.iter().any(|c| c.as_deref() == Some(CONDITIONAL_CHECK_FAILED)))
    }

    pub(crate) fn message(&self) -> String {
        match self {
            TxError::Canceled(codes) => format!(
                "transaction canceled, reasons [{}]",
                codes
                    .iter()
                    .map(|c| c.as_deref().unwrap_or("-"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            TxError::Other(m) => m.clone(),
        }
    }
}

/// Runs one `TransactWriteItems`, retrying a short while when it only collided with
/// another in-flight transaction (no condition failed). The SDK's own retries (throttling,
/// 5xx, network) reuse the same `ClientRequestToken`, so a retried success is not applied
/// twice.
pub(crate) async fn transact(
    client: &Client,
    items: Vec<TransactWriteItem>,
    token: Option<String>,
) -> Result<(), TxError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .set_client_request_token(token.clone())
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let tx_err = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => TxError::Canceled(
                c.cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_string))
                    .collect(),
            ),
            _ => TxError::Other(describe(&err)),
        };
        let only_collided = matches!(&tx_err, TxError::Canceled(codes)
            if codes.iter().any(|c| c.as_deref() == Some(TRANSACTION_CONFLICT))
                && !codes.iter().any(|c| c.as_deref() == Some(CONDITIONAL_CHECK_FAILED)));
        let in_progress = matches!(
            err.as_service_error(),
            Some(TransactWriteItemsError::TransactionInProgressException(_))
        );
        if (only_collided || in_progress) && attempt < CONFLICT_ATTEMPTS {
            tracing::debug!(attempt, reason = %tx_err.message(), "transaction collided, retrying");
            tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            continue;
        }
        return Err(tx_err);
    }
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(crate) fn get_n<T: std::str::FromStr>(
    item: &HashMap<String, AttributeValue>,
    key: &str,
) -> Option<T> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}
