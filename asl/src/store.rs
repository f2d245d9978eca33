//! Durability: executions and their history go through an `ExecutionStore`, so an
//! execution can be re-driven after a restart (see `Engine::resume`). The history is
//! the checkpoint. `InMemoryStore` serves tests; the local runtime backs it with SQLite.

use crate::error::StoreError;
use crate::history::HistoryEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

/// AWS execution status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Still running (or waiting to be resumed after a restart).
    Running,
    /// Ended with ExecutionSucceeded.
    Succeeded,
    /// Ended with ExecutionFailed.
    Failed,
    /// Ended with ExecutionTimedOut.
    TimedOut,
    /// Stopped with `Engine::stop_execution`.
    Aborted,
}

impl ExecutionStatus {
    /// `RUNNING`, `SUCCEEDED`, ... as AWS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
        }
    }
}

/// One execution, as DescribeExecution would show it (plus the definition text, so
/// a restarted process can re-drive it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// The key.
    pub execution_arn: String,
    /// The execution name.
    pub name: String,
    /// The state machine's ARN.
    pub state_machine_arn: String,
    /// The state machine's name.
    pub state_machine_name: String,
    /// The definition the execution runs (after substitutions).
    pub definition: String,
    /// The execution input.
    pub input: Value,
    /// Current status.
    pub status: ExecutionStatus,
    /// Unix milliseconds.
    pub start_date: i64,
    /// Unix milliseconds, once ended.
    pub stop_date: Option<i64>,
    /// Output, once succeeded.
    pub output: Option<Value>,
    /// Error name, once failed.
    pub error: Option<String>,
    /// Cause, once failed.
    pub cause: Option<String>,
}

/// Which executions to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    /// Only this state machine's executions.
    pub state_machine_arn: Option<String>,
    /// Only executions with this status.
    pub status: Option<ExecutionStatus>,
    /// At most this many (0 = no limit).
    pub limit: usize,
}

/// Storage for executions and history. Calls are synchronous and short; the engine
/// calls `append_event` once per history event, in id order, before it acts on it
/// (for a Task: TaskScheduled is stored before the resource is invoked).
pub trait ExecutionStore: Send + Sync + 'static {
    /// Inserts or replaces the record (keyed by `execution_arn`).
    fn put_execution(&self, record: &ExecutionRecord) -> Result<(), StoreError>;
    /// The record, if any.
    fn get_execution(&self, execution_arn: &str) -> Result<Option<ExecutionRecord>, StoreError>;
    /// Appends one event to the execution's history.
    fn append_event(&self, execution_arn: &str, event: HistoryEvent) -> Result<(), StoreError>;
    /// The full history in id order.
    fn history(&self, execution_arn: &str) -> Result<Vec<HistoryEvent>, StoreError>;
    /// Newest first (by start date).
    fn list_executions(&self, filter: &ListFilter) -> Result<Vec<ExecutionRecord>, StoreError>;
}

/// A `HashMap`-backed store.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<String, ExecutionRecord>,
    order: Vec<String>,
    history: HashMap<String, Vec<HistoryEvent>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> InMemoryStore {
        InMemoryStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError("in-memory store lock poisoned".into()))
    }
}

impl ExecutionStore for InMemoryStore {
    fn put_execution(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if !g.records.contains_key(&record.execution_arn) {
            g.order.push(record.execution_arn.clone());
        }
        g.records
            .insert(record.execution_arn.clone(), record.clone());
        Ok(())
    }

    fn get_execution(&self, execution_arn: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        Ok(self.lock()?.records.get(execution_arn).cloned())
    }

    fn append_event(&self, execution_arn: &str, event: HistoryEvent) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        match g.history.get_mut(execution_arn) {
            Some(h) => h.push(event),
            None => {
                g.history.insert(execution_arn.to_string(), vec![event]);
            }
        }
        Ok(())
    }

    fn history(&self, execution_arn: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        Ok(self
            .lock()?
            .history
            .get(execution_arn)
            .cloned()
            .unwrap_or_default())
    }

    fn list_executions(&self, filter: &ListFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        let g = self.lock()?;
        let mut out: Vec<ExecutionRecord> = g
            .order
            .iter()
            .rev()
            .filter_map(|a| g.records.get(a))
            .filter(|r| filter.status.is_none_or(|s| s == r.status))
            .filter(|r| {
                filter
                    .state_machine_arn
                    .as_ref()
                    .is_none_or(|a| *a == r.state_machine_arn)
            })
            .cloned()
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.start_date));
        if filter.limit > 0 {
            out.truncate(filter.limit);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(arn: &str, start: i64, status: ExecutionStatus) -> ExecutionRecord {
        ExecutionRecord {
            execution_arn: arn.into(),
            name: arn.into(),
            state_machine_arn: "sm".into(),
            state_machine_name: "sm".into(),
            definition: "{}".into(),
            input: json!({}),
            status,
            start_date: start,
            stop_date: None,
            output: None,
            error: None,
            cause: None,
        }
    }

    #[test]
    fn lists_newest_first_with_filters() {
        let s = InMemoryStore::new();
        s.put_execution(&rec("a", 1, ExecutionStatus::Succeeded))
            .unwrap();
        s.put_execution(&rec("b", 3, ExecutionStatus::Running))
            .unwrap();
        s.put_execution(&rec("c", 2, ExecutionStatus::Running))
            .unwrap();
        let all = s.list_executions(&ListFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
        let running = s
            .list_executions(&ListFilter {
                status: Some(ExecutionStatus::Running),
                limit: 1,
                ..ListFilter::default()
            })
            .unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].name, "b");
        assert!(s.history("zzz").unwrap().is_empty());
        assert_eq!(
            serde_json::to_value(ExecutionStatus::TimedOut).unwrap(),
            json!("TIMED_OUT")
        );
    }
}
