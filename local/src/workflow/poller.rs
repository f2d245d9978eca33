//! The queue poller: plays Lambda's SQS event source mapping. It receives batches from the
//! local queue, hands the consumer a real `SqsEvent`, deletes the messages that succeeded
//! and leaves the failed ones to reappear after the visibility timeout; a message that
//! fails `max_receive_count` times moves to the dead-letter queue with its reason.

use super::db::WorkflowDb;
use super::services::{self, Names, QueueMessage};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// What the poller feeds: the fulfilment function's handler, or a test double.
pub trait QueueConsumer: Send + Sync + 'static {
    fn handle(&self, event: SqsEvent) -> impl Future<Output = SqsBatchResponse> + Send;
    /// Why a message the handler reported as failed failed (for the dead-letter queue).
    fn failure_reason(&self, message: &SqsMessage) -> String {
        let _ = message;
        "the consumer reported the message as a batch item failure".into()
    }
}

#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub queue: String,
    pub dead_letter_queue: String,
    pub batch_size: usize,
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
    /// Fallback poll (a send in this process wakes the poller at once).
    pub poll_interval: Duration,
}

pub struct PollerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PollerHandle {
    /// Stops after the batch in hand.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

pub fn spawn<C: QueueConsumer>(
    db: WorkflowDb,
    names: Names,
    consumer: C,
    config: PollerConfig,
    wake: Arc<Notify>,
) -> PollerHandle {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            if *stopped.borrow() {
                break;
            }
            match poll_once(&db, &names, &consumer, &config).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "queue poll failed"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(config.poll_interval) => {}
                _ = stopped.changed() => {}
            }
        }
    });
    PollerHandle { stop, task }
}

/// One receive → handle → delete/fail round. Returns how many messages it received.
pub async fn poll_once<C: QueueConsumer>(
    db: &WorkflowDb,
    names: &Names,
    consumer: &C,
    config: &PollerConfig,
) -> Result<usize, super::db::DbError> {
    let queue = config.queue.clone();
    let batch = config.batch_size.clamp(1, 10_000);
    let visibility = i64::try_from(config.visibility_timeout.as_millis()).unwrap_or(i64::MAX);
    let now = asl::clock::system_now_millis();
    let received = db
        .write(move |c| services::receive(c, &queue, batch, visibility, now))
        .await?;
    if received.is_empty() {
        return Ok(0);
    }
    let n = received.len();
    let event = sqs_event(names, &config.queue, &received);
    let by_id: Vec<(String, String, Option<SqsMessage>)> = received
        .iter()
        .zip(event.records.iter())
        .map(|(m, r)| {
            (
                m.message_id.clone(),
                m.receipt_handle.clone().unwrap_or_default(),
                Some(r.clone()),
            )
        })
        .collect();
    let response = consumer.handle(event).await;
    let failed: HashSet<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let mut outcomes = Vec::with_capacity(n);
    for (id, handle, msg) in by_id {
        let reason = if failed.contains(&id) {
            Some(
                msg.as_ref()
                    .map_or_else(String::new, |m| consumer.failure_reason(m)),
            )
        } else {
            None
        };
        outcomes.push((id, handle, reason));
    }
    let max = config.max_receive_count.max(1);
    let dlq = config.dead_letter_queue.clone();
    db.write(move |c| {
        let now = asl::clock::system_now_millis();
        for (id, handle, reason) in &outcomes {
            match reason {
                None => {
                    services::delete(c, handle, now)?;
                }
                Some(reason) => {
                    if services::fail(c, handle, reason, max, &dlq, now)? {
                        tracing::warn!(message_id = %id, reason = %reason, "message moved to the dead-letter queue");
                    }
                }
            }
        }
        Ok(())
    })
    .await?;
    Ok(n)
}

/// The event Lambda's SQS event source mapping would deliver for these messages.
pub fn sqs_event(names: &Names, queue: &str, messages: &[QueueMessage]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attrs: Map<String, Value> = m
                .message_attributes
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({
                                    "stringValue": v.get("StringValue"),
                                    "binaryValue": v.get("BinaryValue"),
                                    "stringListValues": [],
                                    "binaryListValues": [],
                                    "dataType": v.get("DataType").cloned().unwrap_or(json!("String")),
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let md5_attrs = m
                .message_attributes
                .as_object()
                .and_then(services::md5_of_attributes);
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_at.to_string(),
                    "SenderId": format!("AROA{}:orders-workflow", names.account_id),
                    "ApproximateFirstReceiveTimestamp": m.first_received_at.unwrap_or(m.sent_at).to_string(),
                },
                "messageAttributes": attrs,
                "md5OfBody": m.md5_of_body,
                "md5OfMessageAttributes": md5_attrs,
                "eventSource": "aws:sqs",
                "eventSourceARN": names.queue_arn(queue),
                "awsRegion": names.region,
            })
        })
        .collect();
    match serde_json::from_value(json!({ "Records": records })) {
        Ok(e) => e,
        Err(e) => {
            // Our own JSON always fits the type; an empty event is the safe fallback.
            tracing::error!(error = %e, "building the SQS event failed");
            SqsEvent::default()
        }
    }
}
