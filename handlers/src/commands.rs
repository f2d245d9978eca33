//! The application's command path, shared by the HTTP API, the workflow recorder and the
//! fulfilment consumer: load → fold → decide → wrap → conditional append.

use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::ports::{
    AppendRequest, Clock, EventStore, IdGenerator, IdempotencyRecord, StoreError,
};
use orders_domain::{Command, DomainError, Order, OrderEvent, decide, evolve};
use std::sync::Arc;

/// How a command states the version it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever the current version is; a concurrent writer makes us reload and decide again.
    Latest,
    /// Exactly this version (HTTP `If-Match`): a mismatch is the caller's to resolve.
    Version(u64),
}

/// Trace ids carried into every event of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub correlation_id: String,
    pub causation_id: String,
}

/// The first answer to an idempotent request, computed before the append so that it is
/// stored in the same transaction.
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub request_hash: &'a str,
    pub respond: &'a (dyn Fn(&Executed) -> (u16, String) + Send + Sync),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub aggregate_id: String,
    pub state: Order,
    /// The events this command appended (empty when it changed nothing).
    pub appended: Vec<EventEnvelope>,
    /// The stored response when an idempotency record was written with the append.
    pub response: Option<(u16, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("order is at version {actual}, not {expected}")]
    VersionMismatch { expected: u64, actual: u64 },
    #[error("idempotency key `{0}` was used concurrently")]
    IdempotencyRace(String),
    #[error(transparent)]
    Store(StoreError),
    #[error("stored event does not decode: {0}")]
    Decode(#[from] orders_domain::DecodeError),
}

const MAX_CONFLICT_RETRIES: usize = 5;

pub struct Commands<E> {
    pub events: E,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
}

impl<E: EventStore> Commands<E> {
    pub fn new(events: E, clock: Arc<dyn Clock>, ids: Arc<dyn IdGenerator>) -> Self {
        Commands { events, clock, ids }
    }

    /// On the wall clock with ULIDs, as the Lambda functions and `orders serve` run.
    pub fn live(events: E) -> Self {
        Self::new(
            events,
            Arc::new(crate::system::SystemClock),
            Arc::new(crate::system::UlidIds::new()),
        )
    }

    pub async fn load(
        &self,
        aggregate_id: &str,
    ) -> Result<(Order, Vec<EventEnvelope>), CommandError> {
        let stored = self
            .events
            .load(aggregate_id)
            .await
            .map_err(CommandError::Store)?;
        let mut state = Order::default();
        for e in &stored {
            state = evolve(state, &e.decode()?);
        }
        Ok((state, stored))
    }

    pub async fn execute(
        &self,
        aggregate_id: &str,
        expect: Expect,
        command: &Command,
        trace: &Trace,
        idempotency: Option<Idempotency<'_>>,
    ) -> Result<Executed, CommandError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (state, _) = self.load(aggregate_id).await?;
            if let Expect::Version(expected) = expect {
                if !state.exists() {
                    return Err(DomainError::NotFound.into());
                }
                if state.version != expected {
                    return Err(CommandError::VersionMismatch {
                        expected,
                        actual: state.version,
                    });
                }
            }
            let new_events = decide(&state, command)?;
            let meta = EventMeta {
                occurred_at: self.clock.now(),
                correlation_id: trace.correlation_id.clone(),
                causation_id: trace.causation_id.clone(),
            };
            let envelopes =
                EventEnvelope::wrap(aggregate_id, state.version, &new_events, &meta, || {
                    self.ids.next_id()
                });
            let next_state = new_events.iter().fold(state.clone(), evolve);
            let mut executed = Executed {
                aggregate_id: aggregate_id.to_string(),
                state: next_state,
                appended: envelopes.clone(),
                response: None,
            };
            if envelopes.is_empty() && idempotency.is_none() {
                return Ok(executed);
            }
            let record = idempotency.as_ref().map(|i| {
                let (status, response) = (i.respond)(&executed);
                executed.response = Some((status, response.clone()));
                IdempotencyRecord {
                    key: i.key.to_string(),
                    request_hash: i.request_hash.to_string(),
                    aggregate_id: aggregate_id.to_string(),
                    status,
                    response,
                    created_at: meta.occurred_at,
                }
            });
            let request = AppendRequest {
                aggregate_id: aggregate_id.to_string(),
                expected_version: state.version,
                events: envelopes,
                idempotency: record,
            };
            match self.events.append(request).await {
                Ok(()) => return Ok(executed),
                Err(StoreError::Conflict { .. }) => match expect {
                    Expect::Version(expected) => {
                        let (now, _) = self.load(aggregate_id).await?;
                        return Err(CommandError::VersionMismatch {
                            expected,
                            actual: now.version,
                        });
                    }
                    Expect::Latest if attempt < MAX_CONFLICT_RETRIES => {
                        tracing::debug!(aggregate_id, attempt, "version conflict, deciding again");
                        continue;
                    }
                    Expect::Latest => {
                        return Err(CommandError::Store(StoreError::Conflict {
                            aggregate_id: aggregate_id.to_string(),
                            expected: state.version,
                        }));
                    }
                },
                Err(StoreError::DuplicateIdempotencyKey(k)) => {
                    return Err(CommandError::IdempotencyRace(k));
                }
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
    }
}

/// Events of one decision decoded back, for callers that inspect what happened.
pub fn decoded(envelopes: &[EventEnvelope]) -> Vec<OrderEvent> {
    envelopes.iter().filter_map(|e| e.decode().ok()).collect()
}
