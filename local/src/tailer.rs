//! The stream tailer: plays DynamoDB Streams and Lambda's event source mapping for the
//! local runtime. It reads the log after its checkpoint in `seq` order, builds real
//! `aws_lambda_events` DynamoDB stream batches (the `NewImage` comes from the same codec
//! the DynamoDB adapter writes with), and calls a [`StreamHandler`] exactly as Lambda
//! would call the projector function.
//!
//! Delivery follows Lambda with `ReportBatchItemFailures`: records before the first
//! reported failure are done; the batch is retried from the first failed record with
//! exponential backoff; a handler `Err` (or a failure naming no record of the batch)
//! fails the whole batch. Unlike Lambda (which would block the shard until the record
//! expires), after `max_attempts` the failing record is parked in `dead_letters` with its
//! reason and the stream moves on. The checkpoint (in `read_models.db`) only ever moves
//! past records that succeeded or were parked, so after a crash or restart nothing is
//! skipped; redelivered records are harmless because the read models guard by version.

use crate::store::{NewDeadLetter, SqliteEventStore, SqliteReadModels, StreamRow};
use aws_lambda_events::event::dynamodb::{Event, EventRecord, StreamRecord, StreamViewType};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use orders_aws::codec::{self, CodecError, KEY_AGGREGATE, KEY_VERSION};
use orders_domain::EventEnvelope;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// What the tailer feeds: the projector Lambda's handler, or a test double.
pub trait StreamHandler: Send + Sync + 'static {
    /// One batch, as Lambda delivers it. `Err` fails the whole batch (a function error);
    /// `batch_item_failures` name the `SequenceNumber` of the first failed record.
    fn handle(&self, event: Event) -> impl Future<Output = Result<Handled, String>> + Send;
}

/// A batch's outcome: Lambda's response, and why its first failed record failed when the
/// handler can say. Lambda's response cannot carry that; a dead letter can.
#[derive(Debug, Default)]
pub struct Handled {
    pub response: DynamoDbEventResponse,
    pub reason: Option<String>,
}

impl From<DynamoDbEventResponse> for Handled {
    fn from(response: DynamoDbEventResponse) -> Self {
        Handled {
            response,
            reason: None,
        }
    }
}

/// How a record the handler failed is described in its dead letter.
pub fn item_failure_reason(reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("the handler reported it as a batch item failure: {r}"),
        None => "the handler reported it as a batch item failure".to_string(),
    }
}

impl<H: StreamHandler> StreamHandler for Arc<H> {
    fn handle(&self, event: Event) -> impl Future<Output = Result<Handled, String>> + Send {
        (**self).handle(event)
    }
}

#[derive(Debug, Clone)]
pub struct TailerConfig {
    /// Names the checkpoint (`checkpoints.name`) and the dead-letter source (`stream:<name>`).
    pub name: String,
    /// Records per batch at most (Lambda's `BatchSize`).
    pub batch_size: usize,
    /// Deliveries of one record before it is parked.
    pub max_attempts: u32,
    /// The wait before the first retry; doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A fallback poll in case a commit notification is missed (for example, events
    /// appended by another process).
    pub poll_interval: Duration,
    pub aws_region: String,
    /// The fake stream ARN put in `eventSourceARN`.
    pub stream_arn: String,
}

impl Default for TailerConfig {
    fn default() -> Self {
        TailerConfig {
            name: "projector".into(),
            batch_size: 100,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            aws_region: "local".into(),
            stream_arn: "arn:aws:dynamodb:local:000000000000:table/orders-events/stream/\
                         1970-01-01T00:00:00.000"
                .into(),
        }
    }
}

impl TailerConfig {
    pub fn dead_letter_source(&self) -> String {
        format!("stream:{}", self.name)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// The stream's `SequenceNumber` for a log position: zero-padded so that the strings sort
/// like the numbers (DynamoDB's are 21+ digits too).
pub fn sequence_number(seq: u64) -> String {
    format!("{seq:021}")
}

/// The stream record DynamoDB Streams would deliver for an inserted event item.
pub fn stream_record(
    seq: u64,
    envelope: &EventEnvelope,
    config: &TailerConfig,
) -> Result<EventRecord, CodecError> {
    let new_image = codec::envelope_to_image(envelope)?;
    let keys: HashMap<String, serde_dynamo::AttributeValue> = [KEY_AGGREGATE, KEY_VERSION]
        .into_iter()
        .filter_map(|k| new_image.get(k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let keys = serde_dynamo::Item::from(keys);
    let size = item_size(&keys) + item_size(&new_image);

    let mut change = StreamRecord::default();
    // DynamoDB rounds this down to the second (and the Lambda JSON carries seconds).
    change.approximate_creation_date_time =
        chrono::DateTime::from_timestamp(envelope.occurred_at.millis().div_euclid(1000), 0)
            .unwrap_or_default();
    change.keys = keys;
    change.new_image = new_image;
    change.sequence_number = Some(sequence_number(seq));
    change.size_bytes = i64::try_from(size).unwrap_or(i64::MAX);
    change.stream_view_type = Some(StreamViewType::NewImage);

    let mut record = EventRecord::default();
    record.aws_region = config.aws_region.clone();
    record.change = change;
    // Stable per log position, so a redelivered record carries the same id.
    record.event_id = format!("{seq:032x}");
    record.event_name = "INSERT".into();
    record.event_source = Some("aws:dynamodb".into());
    record.event_version = Some("1.1".into());
    record.event_source_arn = Some(config.stream_arn.clone());
    Ok(record)
}

/// A running tailer. Dropping the handle stops it too (after the batch in flight), but
/// only [`shutdown`](Self::shutdown) waits for that.
pub struct TailerHandle {
    stop: watch::Sender<bool>,
    progress: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl TailerHandle {
    /// The durable checkpoint: every record up to this `seq` was handled or parked.
    pub fn checkpoint(&self) -> u64 {
        *self.progress.borrow()
    }

    /// Follows the durable checkpoint (to wait until an append has been projected).
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.clone()
    }

    /// Waits until the checkpoint reaches `seq` (or the tailer stops).
    pub async fn wait_for(&self, seq: u64) {
        let mut rx = self.progress.clone();
        let _ = rx.wait_for(|cp| *cp >= seq).await;
    }

    /// Finishes the batch in flight, then stops. Waits for the task to end.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "stream tailer task failed");
        }
    }
}

/// Starts tailing `events` into `handler`, resuming from the checkpoint named
/// `config.name` in `read_models`.
pub fn spawn<H: StreamHandler>(
    events: SqliteEventStore,
    read_models: SqliteReadModels,
    handler: H,
    config: TailerConfig,
) -> TailerHandle {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (progress_tx, progress_rx) = watch::channel(0);
    let span = tracing::info_span!("tailer", name = %config.name);
    let config = TailerConfig {
        // A batch of none would never move; more than DynamoDB's 10,000 is not Lambda-like.
        batch_size: config.batch_size.clamp(1, 10_000),
        max_attempts: config.max_attempts.max(1),
        ..config
    };
    let tailer = Tailer {
        events,
        read_models,
        handler: Arc::new(handler),
        config,
        stop: stop_rx,
        progress: progress_tx,
    };
    TailerHandle {
        stop: stop_tx,
        progress: progress_rx,
        task: tokio::spawn(tailer.run().instrument(span)),
    }
}

struct Tailer<H> {
    events: SqliteEventStore,
    read_models: SqliteReadModels,
    handler: Arc<H>,
    config: TailerConfig,
    stop: watch::Receiver<bool>,
    progress: watch::Sender<u64>,
}

/// The record that keeps failing, and how often it was delivered.
struct Failing {
    seq: u64,
    attempts: u32,
}

impl<H: StreamHandler> Tailer<H> {
    fn stopping(&self) -> bool {
        // A dropped handle (sender gone) means stop as well.
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    /// Sleeps unless asked to stop first; returns whether to stop.
    async fn pause(&mut self, d: Duration) -> bool {
        if self.stopping() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopping(),
            _ = self.stop.changed() => true,
        }
    }

    async fn run(mut self) {
        let mut attempt = 0;
        let mut cp = loop {
            match self.read_models.checkpoint(&self.config.name).await {
                Ok(cp) => break cp,
                Err(e) => {
                    attempt += 1;
                    tracing::error!(error = %e, "cannot read the stream checkpoint");
                    if self.pause(self.config.backoff(attempt)).await {
                        return;
                    }
                }
            }
        };
        self.progress.send_replace(cp);
        tracing::info!(checkpoint = cp, "stream tailer started");
        let mut head = self.events.subscribe();
        let mut failing: Option<Failing> = None;
        let mut trouble = 0; // consecutive store errors, for their backoff

        while !self.stopping() {
            let rows = match self.events.read_stream(cp, self.config.batch_size).await {
                Ok(rows) => rows,
                Err(e) => {
                    trouble += 1;
                    tracing::error!(error = %e, "cannot read the event log");
                    if self.pause(self.config.backoff(trouble)).await {
                        break;
                    }
                    continue;
                }
            };
            if rows.is_empty() {
                let poll = self.config.poll_interval;
                tokio::select! {
                    _ = head.wait_for(|h| *h > cp) => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = self.stop.changed() => {}
                }
                continue;
            }

            match self.step(cp, rows, &mut failing).await {
                Step::Advanced(to) => {
                    cp = to;
                    trouble = 0;
                    self.progress.send_replace(cp);
                }
                Step::Retry { advanced, wait } => {
                    if let Some(to) = advanced {
                        cp = to;
                        self.progress.send_replace(cp);
                    }
                    if self.pause(wait).await {
                        break;
                    }
                }
                Step::StoreTrouble => {
                    trouble += 1;
                    if self.pause(self.config.backoff(trouble)).await {
                        break;
                    }
                }
            }
        }
        tracing::info!(checkpoint = cp, "stream tailer stopped");
    }

    /// Closes the batch's unit of work, moving the checkpoint to `to` if given.
    async fn settle(
        &self,
        unit: bool,
        to: Option<u64>,
    ) -> Result<(), orders_domain::ports::ReadModelError> {
        let checkpoint = to.map(|seq| (self.config.name.as_str(), seq));
        match (unit, checkpoint) {
            (true, checkpoint) => self.read_models.end_unit(checkpoint).await,
            (false, Some((name, seq))) => self.read_models.set_checkpoint(name, seq).await,
            (false, None) => Ok(()),
        }
    }

    /// Delivers one batch starting right after `cp`, and settles its outcome durably.
    async fn step(&self, cp: u64, rows: Vec<StreamRow>, failing: &mut Option<Failing>) -> Step {
        // The batch is the run of rows that make stream records; a row that cannot is
        // parked once the rows before it are done (it would fail the same way every time).
        let mut records = Vec::with_capacity(rows.len());
        let mut kept = Vec::with_capacity(rows.len());
        let mut bad = None;
        for row in rows {
            let built = match &row.envelope {
                Ok(env) => stream_record(row.seq, env, &self.config).map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            match built {
                Ok(record) => {
                    records.push(record);
                    kept.push(row);
                }
                Err(reason) => {
                    bad = Some((row, reason));
                    break;
                }
            }
        }
        if records.is_empty() {
            let Some((row, reason)) = bad else {
                return Step::Advanced(cp);
            };
            let letter = NewDeadLetter {
                source: self.config.dead_letter_source(),
                key: sequence_number(row.seq),
                reason: format!("undecodable stream record: {reason}"),
                record: row.raw.to_string(),
            };
            tracing::warn!(seq = row.seq, order_id = %row.aggregate_id, version = row.version,
                           %reason, "parking an undecodable stream record");
            return match self
                .read_models
                .park(letter, Some((&self.config.name, row.seq)))
                .await
            {
                Ok(_) => Step::Advanced(row.seq),
                Err(e) => {
                    tracing::error!(error = %e, "cannot park a stream record");
                    Step::StoreTrouble
                }
            };
        }

        let seqs: Vec<u64> = kept.iter().map(|r| r.seq).collect();
        let (first, last) = (seqs[0], seqs[seqs.len() - 1]);
        let mut event = Event::default();
        event.records = records;
        let span = tracing::debug_span!(
            "stream_batch",
            first_seq = first,
            last_seq = last,
            records = seqs.len()
        );
        // Its own task, so a panicking handler fails the batch (as a crashed Lambda
        // invocation would) instead of killing the tailer.
        let handler = self.handler.clone();
        // The batch's read-model writes and its checkpoint commit together (see
        // `SqliteReadModels::begin_unit`); without a unit each write commits on its own.
        let unit = match self.read_models.begin_unit().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a read-model unit of work");
                false
            }
        };
        let outcome = tokio::spawn(async move { handler.handle(event).await }.instrument(span))
            .await
            .unwrap_or_else(|e| Err(format!("the handler panicked: {e}")));

        let (failed_at, reason) = match outcome {
            Ok(handled) if handled.response.batch_item_failures.is_empty() => {
                return match self.settle(unit, Some(last)).await {
                    Ok(()) => {
                        *failing = None;
                        Step::Advanced(last)
                    }
                    Err(e) => {
                        // The batch will be delivered again: harmless, the read models
                        // guard by version.
                        tracing::error!(error = %e, "cannot save the stream checkpoint");
                        Step::StoreTrouble
                    }
                };
            }
            Ok(handled) => {
                let idx = first_failure(&handled.response, &seqs);
                (idx, item_failure_reason(handled.reason.as_deref()))
            }
            Err(message) => (0, format!("the handler failed: {message}")),
        };

        // Everything before the first failure is done.
        let done = (failed_at > 0).then(|| seqs[failed_at - 1]);
        if let Err(e) = self.settle(unit, done).await {
            tracing::error!(error = %e, "cannot save the stream checkpoint");
            return Step::StoreTrouble;
        }
        let seq = seqs[failed_at];
        let attempts = match failing {
            Some(f) if f.seq == seq => f.attempts + 1,
            _ => 1,
        };
        let row = &kept[failed_at];
        let order_id = row.aggregate_id.as_str();
        if attempts < self.config.max_attempts {
            tracing::warn!(seq, order_id, attempts, %reason, "stream record failed; will retry");
            *failing = Some(Failing { seq, attempts });
            return Step::Retry {
                advanced: done,
                wait: self.config.backoff(attempts),
            };
        }

        let letter = NewDeadLetter {
            source: self.config.dead_letter_source(),
            key: sequence_number(seq),
            reason: format!("{reason} ({attempts} attempts)"),
            // The record exactly as delivered (rebuilding it is deterministic).
            record: match &row.envelope {
                Ok(env) => stream_record(seq, env, &self.config)
                    .map_err(|e| e.to_string())
                    .and_then(|r| serde_json::to_string(&r).map_err(|e| e.to_string()))
                    .unwrap_or_else(|e| format!("{{\"unencodable\": {:?}}}", e)),
                Err(_) => row.raw.to_string(),
            },
        };
        tracing::error!(seq, order_id, attempts, %reason, "parking a stream record");
        match self
            .read_models
            .park(letter, Some((&self.config.name, seq)))
            .await
        {
            Ok(_) => {
                *failing = None;
                Step::Advanced(seq)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot park a stream record");
                // Keep the count: the next failed delivery tries to park it again.
                *failing = Some(Failing {
                    seq,
                    attempts: attempts - 1,
                });
                match done {
                    Some(_) => Step::Retry {
                        advanced: done,
                        wait: self.config.backoff(attempts),
                    },
                    None => Step::StoreTrouble,
                }
            }
        }
    }
}

enum Step {
    /// Everything up to this seq is settled.
    Advanced(u64),
    /// A record failed: retry it after `wait` (having settled the ones before it).
    Retry {
        advanced: Option<u64>,
        wait: Duration,
    },
    /// The stores failed: back off and try again from the durable checkpoint.
    StoreTrouble,
}

/// The index of the first failed record. As in Lambda, a failure that names no record of
/// the batch (missing, empty or unknown identifier) fails the whole batch.
fn first_failure(resp: &DynamoDbEventResponse, seqs: &[u64]) -> usize {
    let mut first = usize::MAX;
    for failure in &resp.batch_item_failures {
        let pos = failure
            .item_identifier
            .as_deref()
            .and_then(|id| seqs.iter().position(|s| sequence_number(*s) == id));
        match pos {
            Some(i) => first = first.min(i),
            None => return 0,
        }
    }
    first.min(seqs.len().saturating_sub(1))
}

/// An item's size by DynamoDB's rules (names plus values; numbers and containers
/// approximated), for `SizeBytes`.
fn item_size(item: &HashMap<String, serde_dynamo::AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &serde_dynamo::AttributeValue) -> usize {
    use serde_dynamo::AttributeValue as A;
    match v {
        A::S(s) | A::N(s) => s.len(),
        A::B(b) => b.len(),
        A::Bool(_) | A::Null(_) => 1,
        A::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        A::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        A::Ss(l) | A::Ns(l) => l.iter().map(String::len).sum(),
        A::Bs(l) => l.iter().map(Vec::len).sum(),
    }
}

/// The projector from `orders-handlers` is the tailer's handler in `orders serve`.
impl<R, W> StreamHandler for orders_handlers::projector::Projector<R, W>
where
    R: orders_domain::ports::ReadModels,
    W: orders_domain::ports::WorkflowStarter,
{
    async fn handle(&self, event: Event) -> Result<Handled, String> {
        let (response, reason) = self.handle_explained(event).await;
        Ok(Handled { response, reason })
    }
}
