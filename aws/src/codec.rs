//! The one codec between the event envelope and a DynamoDB item. The DynamoDB event
//! store writes it, the stream projector reads it back from `NewImage`, and the local
//! stream tailer builds the same images, so both places decode exactly one format.
//!
//! Item layout (events table, key `aggregate_id` + `version`):
//! `aggregate_id` S, `version` N, `event_id` S, `event_type` S, `schema_version` N,
//! `occurred_at` S (RFC 3339 UTC), `correlation_id` S, `causation_id` S, `payload` M,
//! and `time_bucket` S, the partition key of the `by_time` index (see [`time_bucket`]).

use aws_sdk_dynamodb::types::AttributeValue;
use orders_domain::EventEnvelope;
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

pub const KEY_AGGREGATE: &str = "aggregate_id";
pub const KEY_VERSION: &str = "version";
/// The events table's index of events by the hour they occurred (KEYS_ONLY): a replay's
/// catch-up Queries it for what was appended since the replay started, instead of
/// scanning the whole table again.
pub const GSI_BY_TIME: &str = "by_time";
/// Its partition key; its sort key is `occurred_at`.
pub const TIME_BUCKET: &str = "time_bucket";
pub const OCCURRED_AT: &str = "occurred_at";
/// Partitions per hour of the `by_time` index: one hour's appends spread over this many
/// index partitions, so the index never throttles the table's writes (a partition takes
/// about 1,000 writes/s), and a catch-up Queries this many per hour.
pub const TIME_BUCKET_SHARDS: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("event item does not decode: {0}")]
    Item(String),
    #[error("event does not encode as an item: {0}")]
    Envelope(String),
}

pub fn envelope_to_item(envelope: &EventEnvelope) -> Result<Item, CodecError> {
    let mut item: Item =
        serde_dynamo::to_item(envelope).map_err(|e| CodecError::Envelope(e.to_string()))?;
    item.insert(
        TIME_BUCKET.to_string(),
        AttributeValue::S(time_bucket(envelope)),
    );
    Ok(item)
}

/// The `time_bucket` of an event: `<hour>#<shard>`, e.g. `2026-11-26T15#07`, the hour
/// (`YYYY-MM-DDTHH`, UTC) it occurred in and its order's shard (FNV-1a of the order id,
/// mod [`TIME_BUCKET_SHARDS`]; stable across builds and platforms, as a stored key must be).
pub fn time_bucket(envelope: &EventEnvelope) -> String {
    bucket(
        &envelope.occurred_at.hour(),
        shard_of(&envelope.aggregate_id),
    )
}

/// One partition of the `by_time` index: an hour (`YYYY-MM-DDTHH`) and a shard.
pub fn bucket(hour: &str, shard: u32) -> String {
    format!("{hour}#{shard:02}")
}

fn shard_of(aggregate_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in aggregate_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % TIME_BUCKET_SHARDS
}

/// Decodes an item as the SDK returns it (Query, GetItem).
pub fn envelope_from_item(item: Item) -> Result<EventEnvelope, CodecError> {
    serde_dynamo::from_item(item).map_err(|e| CodecError::Item(e.to_string()))
}

/// Decodes a stream image as `aws_lambda_events` delivers it.
pub fn envelope_from_image(image: serde_dynamo::Item) -> Result<EventEnvelope, CodecError> {
    serde_dynamo::from_item(image).map_err(|e| CodecError::Item(e.to_string()))
}

/// The same item as a stream image (what DynamoDB Streams would carry as `NewImage`).
pub fn envelope_to_image(envelope: &EventEnvelope) -> Result<serde_dynamo::Item, CodecError> {
    envelope_to_item(envelope).map(serde_dynamo::Item::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_domain::Timestamp;
    use serde_json::json;

    fn envelope() -> EventEnvelope {
        EventEnvelope {
            event_id: "01JEVENT".into(),
            aggregate_id: "01JORDER".into(),
            version: 3,
            event_type: "OrderPlaced".into(),
            schema_version: 1,
            occurred_at: Timestamp(1_795_706_525_123),
            correlation_id: "corr-1".into(),
            causation_id: "req-1".into(),
            payload: json!({"order_id": "01JORDER", "total": {"amount": 2500, "currency": "EUR"},
                            "items": [{"sku": "B", "quantity": 2}], "note": null}),
        }
    }

    #[test]
    fn the_item_has_the_documented_attribute_types() {
        let item = envelope_to_item(&envelope()).unwrap();
        assert_eq!(item[KEY_AGGREGATE], AttributeValue::S("01JORDER".into()));
        assert_eq!(item[KEY_VERSION], AttributeValue::N("3".into()));
        assert_eq!(item["schema_version"], AttributeValue::N("1".into()));
        assert_eq!(
            item["occurred_at"],
            AttributeValue::S("2026-11-26T15:22:05.123Z".into())
        );
        assert!(matches!(item["payload"], AttributeValue::M(_)));
    }

    #[test]
    fn the_time_bucket_is_the_hour_and_a_stable_shard_of_the_order() {
        let item = envelope_to_item(&envelope()).unwrap();
        // FNV-1a("01JORDER") mod 16: a stored key, so it must never change.
        assert_eq!(
            item[TIME_BUCKET],
            AttributeValue::S(format!("2026-11-26T15#{:02}", shard_of("01JORDER")))
        );
        assert_eq!(shard_of("01JORDER"), 0x7c01_3c68 % TIME_BUCKET_SHARDS);
        // Orders spread over every shard.
        let shards: std::collections::HashSet<u32> = (0..1000)
            .map(|i| shard_of(&format!("01JORDER{i}")))
            .collect();
        assert_eq!(shards.len(), TIME_BUCKET_SHARDS as usize);
        assert_eq!(bucket("2026-11-26T15", 3), "2026-11-26T15#03");
    }

    #[test]
    fn item_and_image_round_trip() {
        let e = envelope();
        assert_eq!(
            envelope_from_item(envelope_to_item(&e).unwrap()).unwrap(),
            e
        );
        assert_eq!(
            envelope_from_image(envelope_to_image(&e).unwrap()).unwrap(),
            e
        );
    }

    #[test]
    fn an_item_missing_a_field_is_a_clear_error() {
        let mut item = envelope_to_item(&envelope()).unwrap();
        item.remove("event_type");
        let err = envelope_from_item(item).unwrap_err();
        assert!(err.to_string().contains("event_type"), "{err}");
    }
}
