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

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("payload is not an outcome report: {0}")]
    BadPayload(String),
    #[error(transparent)]
    Command(#[from] CommandError),
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
