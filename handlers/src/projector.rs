//! The stream projector: DynamoDB stream records in (the same `aws_lambda_events` shape
//! on Lambda and from the local tailer), read models out, and — on the live path only —
//! one workflow start per placed order.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use orders_domain::OrderEvent;
use orders_domain::envelope::EventEnvelope;
use orders_domain::ports::{
    ApplyOutcome, ReadModelError, ReadModels, StartOutcome, WorkflowError, WorkflowStarter,
};
use orders_domain::workflow::WorkflowInput;
use std::sync::Arc;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record {0} has no NewImage")]
    NoImage(String),
    #[error(transparent)]
    Codec(#[from] orders_aws::codec::CodecError),
    #[error(transparent)]
    Decode(#[from] orders_domain::DecodeError),
    #[error(transparent)]
    ReadModel(#[from] orders_domain::ports::ReadModelError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
}

/// What one processed record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub applied: bool,
    pub started: Option<StartOutcome>,
}

/// Never starts anything: replay's starter, so a rebuild cannot fire side effects.
pub struct NoWorkflows;

impl WorkflowStarter for NoWorkflows {
    async fn start(&self, input: &WorkflowInput) -> Result<StartOutcome, WorkflowError> {
        Err(WorkflowError(format!(
            "replay never starts workflows (order {})",
            input.order_id
        )))
    }
}

pub struct Projector<R, W> {
    reads: R,
    /// `None` on replay: side effects belong to the live path only.
    starter: Option<W>,
}

impl<R: ReadModels> Projector<R, NoWorkflows> {
    pub fn replay(reads: R) -> Self {
        Projector {
            reads,
            starter: None,
        }
    }
}

impl<R: ReadModels, W: WorkflowStarter> Projector<R, W> {
    pub fn live(reads: R, starter: W) -> Self {
        Projector {
            reads,
            starter: Some(starter),
        }
    }

    pub fn reads(&self) -> &R {
        &self.reads
    }

    /// Processes a batch in order. On the first failure, that record and every later one
    /// are reported as batch item failures, so nothing is skipped and order is kept.
    /// The read models take the batch in one call; workflows start after their records
    /// were projected.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        self.handle_explained(event).await.0
    }

    /// [`handle`](Self::handle), with why its first failed record failed: Lambda's response
    /// cannot carry that (it goes to the log), the local runtime's dead letters can.
    pub async fn handle_explained(&self, event: Event) -> (DynamoDbEventResponse, Option<String>) {
        let ids: Vec<String> = event
            .records
            .iter()
            .map(|r| {
                r.change
                    .sequence_number
                    .clone()
                    .unwrap_or_else(|| r.event_id.clone())
            })
            .collect();
        // Each decoded pair with the index of its record.
        let mut indices = Vec::with_capacity(event.records.len());
        let mut pairs = Vec::with_capacity(event.records.len());
        let mut failed_at = None;
        let mut reason = None;
        for (i, record) in event.records.into_iter().enumerate() {
            match decode_record(record) {
                Ok(Some(pair)) => {
                    indices.push(i);
                    pairs.push(pair);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(sequence_number = %ids[i], error = %e, "stream record does not decode");
                    failed_at = Some(i);
                    reason = Some(e.to_string());
                    break;
                }
            }
        }
        let pairs: Arc<[(EventEnvelope, OrderEvent)]> = pairs.into();
        let results = self.reads.apply_batch(pairs.clone()).await;
        for (j, (i, (envelope, event))) in indices.iter().zip(pairs.iter()).enumerate() {
            // `apply_batch` answers for a prefix that ends at its first failure.
            let outcome = match results.get(j) {
                Some(Ok(_)) => self.start_if_placed(envelope, event).await.map(|_| ()),
                Some(Err(e)) => Err(RecordError::ReadModel(e.clone())),
                None => Err(RecordError::ReadModel(ReadModelError::Unavailable(
                    "the read models did not answer for this record".into(),
                ))),
            };
            if let Err(e) = outcome {
                tracing::warn!(sequence_number = %ids[*i], order_id = %envelope.aggregate_id,
                    correlation_id = %envelope.correlation_id, error = %e, "stream record failed");
                // A record before the undecodable one failed: it is the first failure.
                if failed_at.is_none_or(|f| *i < f) {
                    reason = Some(e.to_string());
                }
                failed_at = Some(failed_at.map_or(*i, |f: usize| f.min(*i)));
                break;
            }
        }
        let mut response = DynamoDbEventResponse::default();
        if let Some(first) = failed_at {
            for id in &ids[first..] {
                let mut f = DynamoDbBatchItemFailure::default();
                f.item_identifier = Some(id.clone());
                response.batch_item_failures.push(f);
            }
        }
        (response, reason)
    }

    /// Started on every delivery of OrderPlaced, not only the first: a crash between the
    /// projection and the start must not lose the workflow, and the execution name makes a
    /// second start a no-op.
    async fn start_if_placed(
        &self,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> Result<Option<StartOutcome>, RecordError> {
        match (&self.starter, event) {
            (Some(starter), OrderEvent::Placed(placed)) => {
                let span = tracing::info_span!("start_workflow", order_id = %envelope.aggregate_id,
                    correlation_id = %envelope.correlation_id);
                let input = WorkflowInput::for_placed(envelope, placed);
                Ok(Some(starter.start(&input).instrument(span).await?))
            }
            _ => Ok(None),
        }
    }

    pub async fn process(&self, record: EventRecord) -> Result<Processed, RecordError> {
        match decode_record(record)? {
            Some((envelope, _)) => self.process_envelope(&envelope).await,
            None => Ok(Processed {
                applied: false,
                started: None,
            }),
        }
    }

    /// The projection of one event, shared by the stream path and replay.
    pub async fn process_envelope(
        &self,
        envelope: &EventEnvelope,
    ) -> Result<Processed, RecordError> {
        let span = tracing::info_span!(
            "project",
            order_id = %envelope.aggregate_id,
            correlation_id = %envelope.correlation_id,
            version = envelope.version,
            event_type = %envelope.event_type,
        );
        async {
            let event = envelope.decode()?;
            let applied = self.reads.apply(envelope, &event).await? == ApplyOutcome::Applied;
            let started = self.start_if_placed(envelope, &event).await?;
            Ok(Processed { applied, started })
        }
        .instrument(span)
        .await
    }
}

/// The envelope and event of an INSERT record; `None` for records that carry no news.
fn decode_record(record: EventRecord) -> Result<Option<(EventEnvelope, OrderEvent)>, RecordError> {
    if record.event_name != "INSERT" {
        // Events are immutable: only inserts carry news. A MODIFY/REMOVE would be an
        // operator's hand on the table; it changes no read model.
        tracing::warn!(event_name = %record.event_name, "ignoring non-INSERT stream record");
        return Ok(None);
    }
    let seq = record.change.sequence_number.clone().unwrap_or_default();
    if record.change.new_image.is_empty() {
        return Err(RecordError::NoImage(seq));
    }
    let envelope = orders_aws::codec::envelope_from_image(record.change.new_image)?;
    let event = envelope.decode()?;
    Ok(Some((envelope, event)))
}

/// A starter that only logs; stands in where no workflow engine is wired.
pub struct LoggingStarter;

impl WorkflowStarter for LoggingStarter {
    async fn start(&self, input: &WorkflowInput) -> Result<StartOutcome, WorkflowError> {
        tracing::debug!(order_id = %input.order_id, correlation_id = %input.correlation_id, "workflow start requested");
        Ok(StartOutcome::Started {
            execution_name: orders_domain::workflow::execution_name(&input.order_id),
        })
    }
}
