//! The `WorkflowStarter` of the local runtime: starts the named execution on the engine.
//! AWS's named-execution semantics make a redelivered `OrderPlaced` harmless: the name is
//! taken, the stored input is the same, so the start counts as done.

use super::db::WorkflowDb;
use asl::{Engine, ExecutionAlreadyExists, RedriveError, StateMachine};
use orders_domain::ports::{StartOutcome, WorkflowError, WorkflowStarter};
use orders_domain::workflow::{WorkflowInput, execution_name};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone)]
pub struct EngineStarter {
    pub(crate) engine: Engine,
    pub(crate) state_machine: StateMachine,
    pub(crate) db: WorkflowDb,
    /// Executions started by this process and not finished yet (for a graceful stop).
    pub(crate) in_flight: Arc<AtomicUsize>,
}

impl EngineStarter {
    pub(crate) fn track(&self, handle: asl::ExecutionHandle) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let outcome = handle.wait().await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            tracing::info!(execution_arn = %outcome.execution_arn, status = outcome.status.as_str(), "execution ended");
        });
    }
}

/// Why an execution was not stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("Execution Does Not Exist: '{0}'")]
    DoesNotExist(String),
    #[error("Execution Not Running: it is {0}")]
    NotRunning(&'static str),
    #[error(transparent)]
    Store(#[from] asl::StoreError),
}

impl EngineStarter {
    /// The stored record of an execution given by order id, execution name or ARN.
    async fn find(
        &self,
        name_or_arn: &str,
    ) -> Result<Option<asl::ExecutionRecord>, asl::StoreError> {
        let db = self.db.clone();
        let key = name_or_arn.to_string();
        tokio::task::spawn_blocking(move || db.find_execution(&key))
            .await
            .map_err(|e| asl::StoreError(format!("finding the execution: {e}")))?
            .map_err(|e| asl::StoreError(e.to_string()))
    }

    /// Stops a running execution (StopExecution): it ends ABORTED with `error` and `cause`,
    /// and a task it was running is not waited for. Returns its ARN once that is durable.
    pub async fn stop(
        &self,
        name_or_arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<String, StopError> {
        let Some(record) = self.find(name_or_arn).await? else {
            return Err(StopError::DoesNotExist(name_or_arn.to_string()));
        };
        if !self
            .engine
            .stop_execution(&record.execution_arn, error, cause)
        {
            return Err(StopError::NotRunning(record.status.as_str()));
        }
        self.db
            .flush()
            .await
            .map_err(|e| asl::StoreError(e.to_string()))?;
        tracing::info!(execution_arn = %record.execution_arn, "execution stopped");
        Ok(record.execution_arn)
    }

    /// Redrives a FAILED, TIMED_OUT or ABORTED execution (by order id, execution name or
    /// ARN) on this process's engine, as `RedriveExecution` does on AWS: it goes on from
    /// the state that did not finish. Returns its ARN once the redrive is durable.
    pub async fn redrive(&self, name_or_arn: &str) -> Result<String, RedriveError> {
        let Some(record) = self.find(name_or_arn).await? else {
            return Err(RedriveError::DoesNotExist(name_or_arn.to_string()));
        };
        let handle = self.engine.redrive_execution(&record.execution_arn)?;
        self.track(handle);
        self.db
            .flush()
            .await
            .map_err(|e| asl::StoreError(e.to_string()))?;
        tracing::info!(execution_arn = %record.execution_arn, "execution redriven");
        Ok(record.execution_arn)
    }
}

impl WorkflowStarter for EngineStarter {
    async fn start(&self, input: &WorkflowInput) -> Result<StartOutcome, WorkflowError> {
        let value = serde_json::to_value(input)
            .map_err(|e| WorkflowError(format!("workflow input: {e}")))?;
        let name = execution_name(&input.order_id);
        match self
            .engine
            .start_execution(&self.state_machine, &name, value.clone())
        {
            Ok(handle) => {
                // The record is queued, not yet committed: the caller commits
                // (`WorkflowDb::flush`) before it acknowledges the stream batch.
                tracing::info!(order_id = %input.order_id, correlation_id = %input.correlation_id, execution_arn = %handle.execution_arn, "workflow started");
                self.track(handle);
                Ok(StartOutcome::Started {
                    execution_name: name,
                })
            }
            Err(ExecutionAlreadyExists { execution_arn }) => {
                let arn = execution_arn.clone();
                let db = self.db.clone();
                let existing = tokio::task::spawn_blocking(move || db.get_record(&arn))
                    .await
                    .map_err(|e| WorkflowError(format!("reading the execution: {e}")))?
                    .map_err(|e| WorkflowError(e.to_string()))?;
                match existing {
                    Some(r) if r.input == value => {
                        tracing::info!(order_id = %input.order_id, execution_arn = %execution_arn, "workflow already started");
                        Ok(StartOutcome::AlreadyStarted {
                            execution_name: name,
                        })
                    }
                    _ => Err(WorkflowError(format!(
                        "Execution Already Exists: '{execution_arn}' with a different input"
                    ))),
                }
            }
        }
    }
}
