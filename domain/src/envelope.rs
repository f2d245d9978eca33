//! The versioned event envelope, and the one mapping between typed events and their
//! stored (type, schema version, payload) form. Old schema versions are upcast on read.

use crate::order::{
    FulfilmentRequested, NotificationFailed, OrderCancelled, OrderConfirmed, OrderEvent,
    OrderPlaced, OrderShipped,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const AGGREGATE_TYPE: &str = "Order";

/// An event as stored: immutable once appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: String,
    pub aggregate_id: String,
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: Timestamp,
    pub correlation_id: String,
    pub causation_id: String,
    pub payload: Value,
}

/// Metadata that every event of one decision shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub occurred_at: Timestamp,
    pub correlation_id: String,
    pub causation_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("unsupported schema version {version} of `{event_type}`")]
    UnknownSchema { event_type: String, version: u32 },
    #[error("payload of `{event_type}` v{version} does not decode: {reason}")]
    Payload {
        event_type: String,
        version: u32,
        reason: String,
    },
}

impl OrderEvent {
    /// Every event type, as stored (for filters that name one).
    pub const TYPES: [&'static str; 6] = [
        "OrderPlaced",
        "OrderCancelled",
        "OrderConfirmed",
        "NotificationFailed",
        "FulfilmentRequested",
        "OrderShipped",
    ];

    pub fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::Placed(_) => "OrderPlaced",
            OrderEvent::Cancelled(_) => "OrderCancelled",
            OrderEvent::Confirmed(_) => "OrderConfirmed",
            OrderEvent::NotificationFailed(_) => "NotificationFailed",
            OrderEvent::FulfilmentRequested(_) => "FulfilmentRequested",
            OrderEvent::Shipped(_) => "OrderShipped",
        }
    }

    /// The schema version new events of this type are written with.
    pub fn schema_version(&self) -> u32 {
        match self {
            OrderEvent::Placed(_) => 2,
            _ => 1,
        }
    }

    pub fn to_payload(&self) -> Value {
        let v = match self {
            OrderEvent::Placed(e) => serde_json::to_value(e),
            OrderEvent::Cancelled(e) => serde_json::to_value(e),
            OrderEvent::Confirmed(e) => serde_json::to_value(e),
            OrderEvent::NotificationFailed(e) => serde_json::to_value(e),
            OrderEvent::FulfilmentRequested(e) => serde_json::to_value(e),
            OrderEvent::Shipped(e) => serde_json::to_value(e),
        };
        // Plain data structs with string keys always serialize.
        v.unwrap_or(Value::Null)
    }

    /// Decodes a stored payload, upcasting older schema versions first.
    pub fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &Value,
    ) -> Result<Self, DecodeError> {
        check_schema(event_type, schema_version)?;
        match upcast(event_type, schema_version, payload) {
            Some(upcast) => decode_from(event_type, schema_version, &upcast),
            None => decode_from(event_type, schema_version, payload),
        }
    }

    /// [`decode`](Self::decode) from the stored JSON text. Current schema versions are
    /// deserialized straight from the text (no JSON tree: a bulk replay decodes millions);
    /// older ones are parsed into a tree and go through the same upcasters first.
    pub fn decode_json(
        event_type: &str,
        schema_version: u32,
        payload: &str,
    ) -> Result<Self, DecodeError> {
        check_schema(event_type, schema_version)?;
        if schema_version < current_schema(event_type) {
            let tree: Value = serde_json::from_str(payload).map_err(|e| DecodeError::Payload {
                event_type: event_type.to_string(),
                version: schema_version,
                reason: e.to_string(),
            })?;
            return Self::decode(event_type, schema_version, &tree);
        }
        decode_from(event_type, schema_version, payload)
    }
}

/// The schema version this build writes (and reads without upcasting) for a type.
fn current_schema(event_type: &str) -> u32 {
    match event_type {
        "OrderPlaced" => 2,
        _ => 1,
    }
}

fn check_schema(event_type: &str, schema_version: u32) -> Result<(), DecodeError> {
    if schema_version == 0 || schema_version > current_schema(event_type) {
        return Err(DecodeError::UnknownSchema {
            event_type: event_type.to_string(),
            version: schema_version,
        });
    }
    Ok(())
}

/// The upcasters, by type: `Some` is the payload in the current schema.
fn upcast(event_type: &str, schema_version: u32, payload: &Value) -> Option<Value> {
    match event_type {
        "OrderPlaced" => upcast_order_placed(schema_version, payload),
        _ => None,
    }
}

/// Where a payload is deserialized from: a JSON tree, or the stored text.
trait PayloadSource {
    fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error>;
}

impl PayloadSource for &Value {
    fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(*self)
    }
}

impl PayloadSource for &str {
    fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self)
    }
}

/// The one mapping from a type name to its payload struct (the payload is in the current
/// schema: upcast before).
fn decode_from(
    event_type: &str,
    version: u32,
    payload: impl PayloadSource,
) -> Result<OrderEvent, DecodeError> {
    fn typed<T: serde::de::DeserializeOwned>(
        event_type: &str,
        version: u32,
        payload: &impl PayloadSource,
    ) -> Result<T, DecodeError> {
        payload.typed::<T>().map_err(|e| DecodeError::Payload {
            event_type: event_type.to_string(),
            version,
            reason: e.to_string(),
        })
    }
    let (t, v, p) = (event_type, version, &payload);
    Ok(match event_type {
        "OrderPlaced" => OrderEvent::Placed(typed::<OrderPlaced>(t, v, p)?),
        "OrderCancelled" => OrderEvent::Cancelled(typed::<OrderCancelled>(t, v, p)?),
        "OrderConfirmed" => OrderEvent::Confirmed(typed::<OrderConfirmed>(t, v, p)?),
        "NotificationFailed" => {
            OrderEvent::NotificationFailed(typed::<NotificationFailed>(t, v, p)?)
        }
        "FulfilmentRequested" => {
            OrderEvent::FulfilmentRequested(typed::<FulfilmentRequested>(t, v, p)?)
        }
        "OrderShipped" => OrderEvent::Shipped(typed::<OrderShipped>(t, v, p)?),
        other => return Err(DecodeError::UnknownType(other.to_string())),
    })
}

/// `OrderPlaced` v1 → v2: v2 records the channel the order came through; v1 events did
/// not know it. Stored events are never rewritten; this runs on every read.
fn upcast_order_placed(version: u32, payload: &Value) -> Option<Value> {
    if version >= 2 {
        return None;
    }
    let mut p = payload.clone();
    if let Value::Object(m) = &mut p {
        m.entry("placed_via")
            .or_insert_with(|| Value::from("unknown"));
    }
    Some(p)
}

impl EventEnvelope {
    /// Wraps the events of one decision, numbering them after `current_version`;
    /// `event_ids` supplies one fresh id per event (ids are a port: no randomness here).
    pub fn wrap(
        aggregate_id: &str,
        current_version: u64,
        events: &[OrderEvent],
        meta: &EventMeta,
        mut event_ids: impl FnMut() -> String,
    ) -> Vec<EventEnvelope> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| EventEnvelope {
                event_id: event_ids(),
                aggregate_id: aggregate_id.to_string(),
                version: current_version + 1 + i as u64,
                event_type: e.event_type().to_string(),
                schema_version: e.schema_version(),
                occurred_at: meta.occurred_at,
                correlation_id: meta.correlation_id.clone(),
                causation_id: meta.causation_id.clone(),
                payload: e.to_payload(),
            })
            .collect()
    }

    pub fn decode(&self) -> Result<OrderEvent, DecodeError> {
        OrderEvent::decode(&self.event_type, self.schema_version, &self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_listed_type_is_one_the_decoder_knows_and_no_other() {
        for t in OrderEvent::TYPES {
            let err = OrderEvent::decode(t, 1, &json!({"not": "a payload"})).err();
            assert!(!matches!(err, Some(DecodeError::UnknownType(_))), "{t}");
        }
        assert!(matches!(
            OrderEvent::decode("OrderTeleported", 1, &json!({})),
            Err(DecodeError::UnknownType(_))
        ));
    }

    fn placed(version_field: bool) -> Value {
        let mut p = json!({
            "order_id": "o-1",
            "customer": {"id": "c-1", "email": "a@b.io", "name": "A"},
            "items": [{"sku": "S", "quantity": 3,
                       "unit_price": {"amount": 100, "currency": "EUR"},
                       "line_total": {"amount": 300, "currency": "EUR"}}],
            "shipping_address": {"line1": "1 St", "city": "C", "postal_code": "1", "country": "FR"},
            "total": {"amount": 300, "currency": "EUR"}
        });
        if version_field {
            p["placed_via"] = json!("api");
        }
        p
    }

    /// The text path is the tree path: same events, same upcasts, same refusals.
    #[test]
    fn decoding_from_text_agrees_with_decoding_from_the_tree() {
        let cases = [
            ("OrderPlaced", 2, placed(true)),
            ("OrderPlaced", 1, placed(false)),
            ("OrderPlaced", 1, placed(true)),
            ("OrderPlaced", 2, placed(false)),
            ("OrderPlaced", 3, placed(true)),
            ("OrderCancelled", 1, json!({"reason": null})),
            (
                "OrderShipped",
                1,
                json!({"carrier": "UPS", "tracking_number": "1Z"}),
            ),
            ("OrderShipped", 1, json!({"carrier": "UPS"})),
            ("FulfilmentRequested", 1, json!({"message_id": "m"})),
            ("OrderTeleported", 1, json!({})),
            ("OrderCancelled", 0, json!({})),
        ];
        for (t, v, payload) in cases {
            let tree = OrderEvent::decode(t, v, &payload);
            let text = OrderEvent::decode_json(t, v, &payload.to_string());
            match (&tree, &text) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{t} v{v}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{t} v{v}: tree {tree:?}, text {text:?}"),
            }
        }
        let OrderEvent::Placed(p) =
            OrderEvent::decode_json("OrderPlaced", 1, &placed(false).to_string()).unwrap()
        else {
            panic!("expected OrderPlaced");
        };
        assert_eq!(p.placed_via, "unknown", "v1 text goes through the upcaster");
        assert!(OrderEvent::decode_json("OrderShipped", 1, "not json").is_err());
    }
}
