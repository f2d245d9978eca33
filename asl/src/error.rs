//! Error types: definition problems (`ValidationError`) and runtime failures (`Failure`).

use serde::{Deserialize, Serialize};

/// One problem found in a definition, naming the state and field like AWS's
/// `InvalidDefinition` messages (`SCHEMA_VALIDATION_FAILED: ... at /States/X/Field`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message} at {location}")]
pub struct ValidationError {
    /// AWS diagnostic code, e.g. `SCHEMA_VALIDATION_FAILED`, `MISSING_TRANSITION_TARGET`.
    pub code: String,
    /// The state the problem belongs to (its full path for nested states), if any.
    pub state: Option<String>,
    /// The offending field, e.g. `Next`, `ResultPath`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// JSON-pointer-like location: `/States/Name/Field`.
    pub location: String,
}

/// A runtime error as Step Functions names it: an error name and an optional cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error}: {}", cause.as_deref().unwrap_or(""))]
pub struct Failure {
    /// The error name, e.g. `States.TaskFailed` or a custom name.
    pub error: String,
    /// The cause, if any.
    pub cause: Option<String>,
}

impl Failure {
    /// An error with a cause.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            cause: Some(cause.into()),
        }
    }

    /// An error with an optional cause.
    pub fn bare(error: impl Into<String>, cause: Option<String>) -> Failure {
        Failure {
            error: error.into(),
            cause,
        }
    }

    /// `States.Runtime` with the prefix AWS puts on failures of a state.
    pub fn runtime_in_state(state: &str, entered_id: u64, msg: impl std::fmt::Display) -> Failure {
        Failure::new(
            "States.Runtime",
            format!(
                "An error occurred while executing the state '{state}' (entered at the event id #{entered_id}). {msg}"
            ),
        )
    }
}

/// Returned by `start_execution` when the name is taken (AWS `ExecutionAlreadyExists`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Execution Already Exists: '{execution_arn}'")]
pub struct ExecutionAlreadyExists {
    /// The ARN of the existing execution.
    pub execution_arn: String,
}

/// Errors from the task-token API (`send_task_success` / `send_task_failure`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskTokenError {
    #[error("Invalid Token: '{0}'")]
    /// No task waits for this token.
    InvalidToken(String),
    #[error("Task Timed Out: '{0}'")]
    /// The task stopped waiting (timed out or its execution ended).
    TaskTimedOut(String),
}

/// Returned by `redrive_execution` (AWS `RedriveExecution`'s errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedriveError {
    /// No such execution.
    #[error("Execution Does Not Exist: '{0}'")]
    DoesNotExist(String),
    /// It is running or succeeded, or ended where it cannot be redriven: the reason.
    #[error("Execution Not Redrivable: {0}")]
    NotRedrivable(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors an `ExecutionStore` may report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("execution store: {0}")]
pub struct StoreError(pub String);
