//! History events in AWS GetExecutionHistory shape:
//! `{"id", "previousEventId", "timestamp", "type", "<x>EventDetails": {...}}`.
//! Inputs and outputs inside details are JSON *strings*, as AWS returns them.

use crate::path::to_json_string;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub id: u64,
    #[serde(rename = "previousEventId")]
    pub previous_event_id: u64,
    /// ISO-8601 with milliseconds, e.g. `2024-01-02T03:04:05.678Z`.
    pub timestamp: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The details object, under its AWS key (`stateEnteredEventDetails`, ...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub details: Option<(String, Value)>,
}

impl HistoryEvent {
    /// The event as AWS renders it.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("previousEventId".into(), json!(self.previous_event_id));
        m.insert("timestamp".into(), json!(self.timestamp));
        m.insert("type".into(), json!(self.event_type));
        if let Some((k, v)) = &self.details {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// Reads an event back from `to_value`'s shape.
    pub fn from_value(v: &Value) -> Option<HistoryEvent> {
        let o = v.as_object()?;
        let details = o
            .iter()
            .find(|(k, _)| k.ends_with("EventDetails"))
            .map(|(k, v)| (k.clone(), v.clone()));
        Some(HistoryEvent {
            id: o.get("id")?.as_u64()?,
            previous_event_id: o.get("previousEventId")?.as_u64()?,
            timestamp: o.get("timestamp")?.as_str()?.to_string(),
            event_type: o.get("type")?.as_str()?.to_string(),
            details,
        })
    }

    pub fn detail(&self, key: &str) -> Option<&Value> {
        self.details.as_ref().and_then(|(_, d)| d.get(key))
    }
}

/// `{"truncated": false}`: we never truncate payloads, we fail them (DataLimitExceeded).
pub fn not_truncated() -> Value {
    json!({"truncated": false})
}

pub fn entered(name: &str, input: &Value) -> (String, Value) {
    (
        "stateEnteredEventDetails".into(),
        json!({"name": name, "input": to_json_string(input), "inputDetails": not_truncated()}),
    )
}

pub fn exited(
    name: &str,
    output: &Value,
    assigned: Option<&Map<String, Value>>,
) -> (String, Value) {
    let assigned = assigned.filter(|a| !a.is_empty());
    let mut d = Map::new();
    d.insert("name".into(), json!(name));
    d.insert("output".into(), json!(to_json_string(output)));
    d.insert("outputDetails".into(), not_truncated());
    if let Some(a) = assigned {
        let rendered: Map<String, Value> = a
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(to_json_string(v))))
            .collect();
        d.insert("assignedVariables".into(), Value::Object(rendered));
        d.insert("assignedVariablesDetails".into(), not_truncated());
    }
    ("stateExitedEventDetails".into(), Value::Object(d))
}

/// `{"error": .., "cause": ..}` with absent fields left out, as AWS does.
pub fn error_details(
    key: &str,
    error: Option<&str>,
    cause: Option<&str>,
    extra: &[(&str, Value)],
) -> (String, Value) {
    let mut d = Map::new();
    for (k, v) in extra {
        d.insert((*k).to_string(), v.clone());
    }
    if let Some(c) = cause.filter(|c| !c.is_empty()) {
        d.insert("cause".into(), json!(c));
    }
    if let Some(e) = error {
        d.insert("error".into(), json!(e));
    }
    (key.to_string(), Value::Object(d))
}
