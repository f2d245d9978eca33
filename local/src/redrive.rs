//! Redriving a stream record the tailer parked: once what made it fail is fixed (a new
//! binary that decodes it, a projection bug fixed, a store that is back), an operator
//! hands it to the projector again, as the live stream would have. The record is rebuilt
//! from the log (the log is the truth, not the parked copy); the projector's version guard
//! and the workflow's named executions make a record that was in fact done harmless.

use crate::store::{DeadLetter, SqliteEventStore, SqliteReadModels};
use crate::tailer::{StreamHandler, TailerConfig, item_failure_reason, stream_record};
use aws_lambda_events::event::dynamodb::Event;
use orders_domain::ports::{ReadModelError, StoreError};
use std::sync::Arc;

/// What a redrive did with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redriven {
    /// The projector processed it; the dead letter is gone.
    Processed,
    /// It failed again, for this reason; the dead letter stays.
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error(
        "dead letter {id} comes from `{from}`: only records of `{stream}` go back to its projector (a replay's are rebuilt by the next replay)"
    )]
    OtherSource {
        id: u64,
        from: String,
        stream: String,
    },
    #[error("dead letter {id}: `{key}` is not a stream sequence number")]
    BadKey { id: u64, key: String },
    #[error("dead letter {id}: the log has no event at seq {seq}")]
    NotInLog { id: u64, seq: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

/// Delivers the event a dead letter of `config`'s stream stands for to `handler`, alone in
/// a batch, and removes the letter when it succeeds. Its read-model writes and the removal
/// commit together, in a unit of work of their own (never inside a live batch's). When it
/// fails again, the letter stays with the failure counted, and when and why noted.
pub async fn redrive<H: StreamHandler>(
    events: &SqliteEventStore,
    read_models: &SqliteReadModels,
    handler: Arc<H>,
    config: &TailerConfig,
    letter: &DeadLetter,
) -> Result<Redriven, RedriveError> {
    let outcome = deliver(events, read_models, handler, config, letter).await;
    // What is wrong with this letter counts; a store that is down, or a letter of another
    // source, does not.
    let failure = match &outcome {
        Ok(Redriven::Failed(reason)) => Some(reason.clone()),
        Err(e @ (RedriveError::NotInLog { .. } | RedriveError::BadKey { .. })) => {
            Some(e.to_string())
        }
        _ => None,
    };
    if let Some(reason) = failure {
        read_models
            .record_failed_redrive(letter.id, &reason)
            .await?;
    }
    outcome
}

async fn deliver<H: StreamHandler>(
    events: &SqliteEventStore,
    read_models: &SqliteReadModels,
    handler: Arc<H>,
    config: &TailerConfig,
    letter: &DeadLetter,
) -> Result<Redriven, RedriveError> {
    let stream = config.dead_letter_source();
    if letter.source != stream {
        return Err(RedriveError::OtherSource {
            id: letter.id,
            from: letter.source.clone(),
            stream,
        });
    }
    let seq: u64 =
        letter
            .key
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| RedriveError::BadKey {
                id: letter.id,
                key: letter.key.clone(),
            })?;
    let row = events
        .read_stream(seq - 1, 1)
        .await?
        .into_iter()
        .find(|r| r.seq == seq)
        .ok_or(RedriveError::NotInLog { id: letter.id, seq })?;
    let built = match &row.envelope {
        Ok(env) => stream_record(seq, env, config).map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    let record = match built {
        Ok(r) => r,
        Err(reason) => {
            return Ok(Redriven::Failed(format!(
                "undecodable stream record: {reason}"
            )));
        }
    };
    let mut event = Event::default();
    event.records = vec![record];
    read_models.begin_unit().await?;
    // Its own task, as the tailer does: a panicking handler fails the record, not us.
    let outcome = tokio::spawn(async move { handler.handle(event).await })
        .await
        .unwrap_or_else(|e| Err(format!("the handler panicked: {e}")));
    let result = match outcome {
        Ok(handled) if handled.response.batch_item_failures.is_empty() => read_models
            .delete_dead_letter(letter.id)
            .await
            .map(|()| Redriven::Processed),
        Ok(handled) => Ok(Redriven::Failed(item_failure_reason(
            handled.reason.as_deref(),
        ))),
        Err(message) => Ok(Redriven::Failed(format!("the handler failed: {message}"))),
    };
    read_models.end_unit(None).await?;
    let redriven = result?;
    match &redriven {
        Redriven::Processed => {
            tracing::info!(seq, order_id = %row.aggregate_id, "redriven stream record processed")
        }
        Redriven::Failed(reason) => {
            tracing::warn!(seq, order_id = %row.aggregate_id, %reason, "redriven stream record failed again")
        }
    }
    Ok(redriven)
}
