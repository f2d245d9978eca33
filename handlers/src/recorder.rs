//! The workflow-outcome recorder: invoked by the state machine's last Task with what each
//! notification branch did; appends the outcome through the domain.

use crate::commands::{CommandError, Commands, Expect, Trace};
use orders_domain::Command;
use orders_domain::order::NotificationResult;
use orders_domain::ports::EventStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OutcomeReport {
    pub order_id: String,
    pub correlation_id: String,
    pub execution_name: String,
    pub notifications: Vec<NotificationResult>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Recorded {
    pub order_id: String,
    pub status: orders_domain::OrderStatus,
    pub version: u64,
    /// Event types appended now (empty when the outcome was already recorded).
    pub appended: Vec<String>,
}

/// Lambda's `errorType` for a failed recording, the same on AWS and in the local runtime
/// (it is the error name a workflow's Retry and Catch match).
pub const ERROR_TYPE: &str = "RecorderError";

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("payload is not an outcome report: {0}")]
    BadPayload(String),
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl From<RecorderError> for lambda_runtime::Diagnostic {
    fn from(e: RecorderError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: ERROR_TYPE.into(),
            error_message: e.to_string(),
        }
    }
}

pub async fn record<E: EventStore>(
    commands: &Commands<E>,
    payload: serde_json::Value,
) -> Result<Recorded, RecorderError> {
    let report: OutcomeReport =
        serde_json::from_value(payload).map_err(|e| RecorderError::BadPayload(e.to_string()))?;
    let span = tracing::info_span!("record_outcome", order_id = %report.order_id, correlation_id = %report.correlation_id);
    let _guard = span.enter();
    let trace = Trace {
        correlation_id: report.correlation_id.clone(),
        causation_id: format!("execution:{}", report.execution_name),
    };
    let command = Command::RecordWorkflowOutcome {
        execution_name: report.execution_name.clone(),
        notifications: report.notifications.clone(),
    };
    drop(_guard);
    let executed = commands
        .execute(&report.order_id, Expect::Latest, &command, &trace, None)
        .await?;
    Ok(Recorded {
        order_id: report.order_id,
        status: executed.state.status(),
        version: executed.state.version,
        appended: executed
            .appended
            .iter()
            .map(|e| e.event_type.clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_reports_the_error_name_a_workflow_matches() {
        let d = lambda_runtime::Diagnostic::from(RecorderError::BadPayload(
            "missing field `order_id`".into(),
        ));
        assert_eq!(d.error_type, ERROR_TYPE);
        assert_eq!(
            d.error_message,
            "payload is not an outcome report: missing field `order_id`"
        );
    }
}
