//! The fulfilment consumer: SQS batches in (the same `aws_lambda_events` shape on Lambda
//! and from the local queue poller), one `FulfilmentRequested` per order, per-message
//! failures out so that only the failed messages come back (and end in the DLQ).

use crate::commands::{CommandError, Commands, Expect, Trace};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use orders_domain::ports::EventStore;
use orders_domain::{Command, DomainError};
use serde::Deserialize;

/// The message body the workflow sends (extra fields are the warehouse's business).
#[derive(Debug, Deserialize)]
pub struct FulfilmentRequest {
    pub order_id: String,
    #[serde(default)]
    pub correlation_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FulfilmentError {
    #[error("message has no body")]
    NoBody,
    #[error("message body is not a fulfilment request: {0}")]
    BadBody(String),
    #[error(transparent)]
    Command(#[from] CommandError),
}

pub async fn handle<E: EventStore>(commands: &Commands<E>, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        if let Err(e) = process(commands, &message).await {
            tracing::warn!(message_id = %id, error = %e, "fulfilment message failed");
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            response.batch_item_failures.push(f);
        }
    }
    response
}

pub async fn process<E: EventStore>(
    commands: &Commands<E>,
    message: &SqsMessage,
) -> Result<(), FulfilmentError> {
    let body = message.body.as_deref().ok_or(FulfilmentError::NoBody)?;
    let request: FulfilmentRequest =
        serde_json::from_str(body).map_err(|e| FulfilmentError::BadBody(e.to_string()))?;
    let message_id = message.message_id.clone().unwrap_or_default();
    let correlation_id = request
        .correlation_id
        .clone()
        .or_else(|| {
            message
                .message_attributes
                .get("correlation_id")
                .and_then(|a| a.string_value.clone())
        })
        .unwrap_or_else(|| request.order_id.clone());
    let span = tracing::info_span!("fulfilment", order_id = %request.order_id, correlation_id = %correlation_id);
    let _guard = span.enter();
    let trace = Trace {
        correlation_id,
        causation_id: format!("message:{message_id}"),
    };
    drop(_guard);
    let command = Command::RequestFulfilment { message_id };
    match commands
        .execute(&request.order_id, Expect::Latest, &command, &trace, None)
        .await
    {
        Ok(_) => Ok(()),
        // Nothing to fulfil for a cancelled order: the message is done with.
        Err(CommandError::Domain(DomainError::Cancelled)) => {
            tracing::info!(order_id = %request.order_id, "order cancelled; fulfilment skipped");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
