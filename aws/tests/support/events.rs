//! Writing an order's events straight into a DynamoDB event table (no API in between).

use super::unique;
use orders_aws::DynamoEventStore;
use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::order::OrderEvent;
use orders_domain::ports::{AppendRequest, EventStore};
use orders_domain::time::Timestamp;

/// Appends one decision of order `id` (at version `current`) at `at` (ms since the epoch);
/// returns the new version.
pub async fn append(
    store: &DynamoEventStore,
    id: &str,
    current: u64,
    events: &[OrderEvent],
    at: i64,
) -> u64 {
    let meta = EventMeta {
        occurred_at: Timestamp(at),
        correlation_id: unique("corr"),
        causation_id: unique("cause"),
    };
    let envelopes = EventEnvelope::wrap(id, current, events, &meta, || unique("evt"));
    store
        .append(AppendRequest {
            aggregate_id: id.into(),
            expected_version: current,
            events: envelopes,
            idempotency: None,
        })
        .await
        .expect("append");
    current + events.len() as u64
}
