//! The ports: what the application needs from the outside world. SQLite and DynamoDB
//! (and Step Functions, or the local engine) implement them; the domain does no I/O.
//!
//! Async methods are declared as `fn … -> impl Future + Send` so that adapters can be
//! used from multi-threaded runtimes without this crate depending on one.

use crate::envelope::EventEnvelope;
use crate::order::OrderEvent;
use crate::projection::{DailySales, OrderSummary, OrderView};
use crate::time::Timestamp;
use crate::workflow::WorkflowInput;
use std::future::Future;
use std::sync::Arc;

/// The first answer to a command sent with an `Idempotency-Key`, kept with the append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// A digest of the request (method, path, body) that first used the key.
    pub request_hash: String,
    pub aggregate_id: String,
    pub status: u16,
    /// The response body, as sent.
    pub response: String,
    pub created_at: Timestamp,
}

/// Events of one decision, appended atomically if the order is still at `expected_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub aggregate_id: String,
    pub expected_version: u64,
    pub events: Vec<EventEnvelope>,
    pub idempotency: Option<IdempotencyRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("order {aggregate_id} is no longer at version {expected}")]
    Conflict { aggregate_id: String, expected: u64 },
    #[error("idempotency key `{0}` is already used")]
    DuplicateIdempotencyKey(String),
    #[error("an append holds at most {max} events, got {got}")]
    TooManyEvents { max: usize, got: usize },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub trait EventStore: Send + Sync + 'static {
    fn append(&self, request: AppendRequest)
    -> impl Future<Output = Result<(), StoreError>> + Send;
    /// All events of one order, in version order.
    fn load(
        &self,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Vec<EventEnvelope>, StoreError>> + Send;
    fn idempotency(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; pass it back to get the next page. `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// Already applied before: a duplicate or stale delivery, nothing changed.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadModelError {
    #[error("order {aggregate_id}: got version {got} but version {expected} was not applied yet")]
    Gap {
        aggregate_id: String,
        expected: u64,
        got: u64,
    },
    #[error(transparent)]
    Projection(#[from] crate::projection::ProjectionError),
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("read-model store unavailable: {0}")]
    Unavailable(String),
    #[error("read-model data is corrupt: {0}")]
    Corrupt(String),
}

pub trait ReadModels: Send + Sync + 'static {
    /// Folds one event into every projection, each guarded by its last applied version.
    fn apply(
        &self,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> impl Future<Output = Result<ApplyOutcome, ReadModelError>> + Send;
    /// Folds a batch in order, stopping at the first failure: the results cover the
    /// applied prefix and end with that failure, if any. Adapters override it to write a
    /// whole stream batch in one round trip. Shared, not borrowed: an adapter can hand the
    /// batch to another thread without copying it, and the caller keeps reading it.
    fn apply_batch(
        &self,
        events: Arc<[(EventEnvelope, OrderEvent)]>,
    ) -> impl Future<Output = Vec<Result<ApplyOutcome, ReadModelError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(events.len());
            for (envelope, event) in events.iter() {
                let r = self.apply(envelope, event).await;
                let failed = r.is_err();
                out.push(r);
                if failed {
                    break;
                }
            }
            out
        }
    }
    fn order(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<OrderView>, ReadModelError>> + Send;
    /// One customer's orders, newest first.
    fn customer_orders(
        &self,
        customer_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<OrderSummary>, ReadModelError>> + Send;
    fn daily_sales(&self) -> impl Future<Output = Result<Vec<DailySales>, ReadModelError>> + Send;
    /// The sales of these days (`YYYY-MM-DD`), in the order given, currencies in code
    /// order. A store that keeps a day's sales together reads only those (DynamoDB: a
    /// Query per day, where [`ReadModels::daily_sales`] scans the whole table).
    fn daily_sales_of(
        &self,
        days: &[String],
    ) -> impl Future<Output = Result<Vec<DailySales>, ReadModelError>> + Send {
        async move {
            let mut rows: Vec<DailySales> = self
                .daily_sales()
                .await?
                .into_iter()
                .filter(|d| days.contains(&d.date))
                .collect();
            rows.sort_by(|a, b| {
                let at = |d: &DailySales| days.iter().position(|x| *x == d.date);
                (at(a), &a.currency).cmp(&(at(b), &b.currency))
            });
            Ok(rows)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    Started {
        execution_name: String,
    },
    /// The execution exists already (a redelivered record): counts as success.
    AlreadyStarted {
        execution_name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not start the workflow: {0}")]
pub struct WorkflowError(pub String);

pub trait WorkflowStarter: Send + Sync + 'static {
    fn start(
        &self,
        input: &WorkflowInput,
    ) -> impl Future<Output = Result<StartOutcome, WorkflowError>> + Send;
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Fresh unique ids (ULIDs in both adapters: sortable by creation time).
pub trait IdGenerator: Send + Sync + 'static {
    fn next_id(&self) -> String;
}
