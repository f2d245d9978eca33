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
        fn typed<T: serde::de::DeserializeOwned>(
            event_type: &str,
            version: u32,
            payload: &Value,
        ) -> Result<T, DecodeError> {
            T::deserialize(payload).map_err(|e| DecodeError::Payload {
                event_type: event_type.to_string(),
                version,
                reason: e.to_string(),
            })
        }
        let current = match event_type {
            "OrderPlaced" => 2,
            _ => 1,
        };
        if schema_version == 0 || schema_version > current {
            return Err(DecodeError::UnknownSchema {
                event_type: event_type.to_string(),
                version: schema_version,
            });
        }
        let v = schema_version;
        Ok(match event_type {
            "OrderPlaced" => {
                let upcast = upcast_order_placed(v, payload);
                OrderEvent::Placed(typed::<OrderPlaced>(
                    event_type,
                    v,
                    upcast.as_ref().unwrap_or(payload),
                )?)
            }
            "OrderCancelled" => {
                OrderEvent::Cancelled(typed::<OrderCancelled>(event_type, v, payload)?)
            }
            "OrderConfirmed" => {
                OrderEvent::Confirmed(typed::<OrderConfirmed>(event_type, v, payload)?)
            }
            "NotificationFailed" => {
                OrderEvent::NotificationFailed(typed::<NotificationFailed>(event_type, v, payload)?)
            }
            "FulfilmentRequested" => OrderEvent::FulfilmentRequested(typed::<FulfilmentRequested>(
                event_type, v, payload,
            )?),
            "OrderShipped" => OrderEvent::Shipped(typed::<OrderShipped>(event_type, v, payload)?),
            other => return Err(DecodeError::UnknownType(other.to_string())),
        })
    }
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
