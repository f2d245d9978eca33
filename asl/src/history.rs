//! History events in AWS GetExecutionHistory shape:
//! `{"id", "previousEventId", "timestamp", "type", "<x>EventDetails": {...}}`.
//! Inputs and outputs inside details are JSON *strings*, as AWS returns them.

use crate::path::to_json_string;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One history event. Serializes to (and deserializes from) AWS's JSON shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    /// 1-based, in the order the events were recorded.
    pub id: u64,
    /// The event this one follows in its branch/iteration (0 for the first state).
    pub previous_event_id: u64,
    /// ISO-8601 with milliseconds, e.g. `2024-01-02T03:04:05.678Z`.
    pub timestamp: String,
    /// `ExecutionStarted`, `PassStateEntered`, `TaskScheduled`, ...
    pub event_type: String,
    /// The `*EventDetails` object.
    pub details: EventDetails,
}

/// The `*EventDetails` object. The two most frequent shapes are kept typed (cheap to
/// build: the engine records two of them per state); everything else is JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum EventDetails {
    /// No details object.
    None,
    /// `stateEnteredEventDetails`; `input` is the JSON text.
    StateEntered {
        /// The state name.
        name: String,
        /// The state input as JSON text.
        input: String,
    },
    /// `stateExitedEventDetails`; `output` and assigned values are JSON texts.
    StateExited {
        /// The state name.
        name: String,
        /// The state output as JSON text.
        output: String,
        /// Variables assigned by the state: name and JSON text.
        assigned: Option<Vec<(String, String)>>,
    },
    /// `mapIteration{Started,Succeeded,Failed}EventDetails`.
    MapIteration {
        /// The AWS details key.
        key: &'static str,
        /// The iteration index.
        index: usize,
        /// The Map state's name.
        name: String,
    },
    /// Any other details object, under its AWS key.
    Other {
        /// The AWS details key, e.g. `taskScheduledEventDetails`.
        key: String,
        /// The details object.
        value: Value,
    },
}

impl From<Option<(String, Value)>> for EventDetails {
    fn from(d: Option<(String, Value)>) -> Self {
        match d {
            None => EventDetails::None,
            Some((key, value)) => EventDetails::Other { key, value },
        }
    }
}

impl EventDetails {
    /// The state a `…StateEntered` event entered, as built here or read back from a store.
    pub fn entered_state(&self) -> Option<&str> {
        match self {
            EventDetails::StateEntered { name, .. } => Some(name),
            EventDetails::Other { key, value } if key == "stateEnteredEventDetails" => {
                value.get("name").and_then(Value::as_str)
            }
            _ => None,
        }
    }

    /// The state a `…StateExited` event left, as built here or read back from a store.
    pub fn exited_state(&self) -> Option<&str> {
        match self {
            EventDetails::StateExited { name, .. } => Some(name),
            EventDetails::Other { key, value } if key == "stateExitedEventDetails" => {
                value.get("name").and_then(Value::as_str)
            }
            _ => None,
        }
    }

    /// The AWS key and the details object.
    pub fn to_pair(&self) -> Option<(String, Value)> {
        match self {
            EventDetails::None => None,
            EventDetails::StateEntered { name, input } => Some((
                "stateEnteredEventDetails".into(),
                json!({"name": name, "input": input, "inputDetails": not_truncated()}),
            )),
            EventDetails::StateExited {
                name,
                output,
                assigned,
            } => {
                let mut d = Map::new();
                d.insert("name".into(), json!(name));
                d.insert("output".into(), json!(output));
                d.insert("outputDetails".into(), not_truncated());
                if let Some(a) = assigned {
                    let m: Map<String, Value> =
                        a.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                    d.insert("assignedVariables".into(), Value::Object(m));
                    d.insert("assignedVariablesDetails".into(), not_truncated());
                }
                Some(("stateExitedEventDetails".into(), Value::Object(d)))
            }
            EventDetails::MapIteration { key, index, name } => {
                Some(((*key).to_string(), json!({"index": index, "name": name})))
            }
            EventDetails::Other { key, value } => Some((key.clone(), value.clone())),
        }
    }
}

impl HistoryEvent {
    /// The event as AWS renders it.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("previousEventId".into(), json!(self.previous_event_id));
        m.insert("timestamp".into(), json!(self.timestamp));
        m.insert("type".into(), json!(self.event_type));
        if let Some((k, v)) = self.details.to_pair() {
            m.insert(k, v);
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
            details: details.into(),
        })
    }

    /// One field of the details object.
    pub fn detail(&self, key: &str) -> Option<Value> {
        self.details
            .to_pair()
            .and_then(|(_, d)| d.get(key).cloned())
    }
}

impl Serialize for HistoryEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for HistoryEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        HistoryEvent::from_value(&v).ok_or_else(|| serde::de::Error::custom("not a history event"))
    }
}

/// `{"truncated": false}`: we never truncate payloads, we fail them (DataLimitExceeded).
pub fn not_truncated() -> Value {
    json!({"truncated": false})
}

/// Details of a `*StateEntered` event.
pub fn entered(name: &str, input: &Value) -> EventDetails {
    EventDetails::StateEntered {
        name: name.to_string(),
        input: to_json_string(input),
    }
}

/// `output` is the already rendered JSON text (the engine measures its size first).
pub fn exited(name: &str, output: String, assigned: Option<&Map<String, Value>>) -> EventDetails {
    EventDetails::StateExited {
        name: name.to_string(),
        output,
        assigned: assigned.filter(|a| !a.is_empty()).map(|a| {
            a.iter()
                .map(|(k, v)| (k.clone(), to_json_string(v)))
                .collect()
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_aws_shape_and_round_trips() {
        let ev = HistoryEvent {
            id: 3,
            previous_event_id: 2,
            timestamp: "2024-01-01T00:00:00.000Z".into(),
            event_type: "PassStateExited".into(),
            details: exited(
                "A",
                "{\"a\":1}".into(),
                Some(&Map::from_iter([("x".to_string(), json!(42))])),
            ),
        };
        let v = ev.to_value();
        assert_eq!(
            v,
            json!({"id": 3, "previousEventId": 2, "timestamp": "2024-01-01T00:00:00.000Z", "type": "PassStateExited",
                   "stateExitedEventDetails": {"name": "A", "output": "{\"a\":1}", "outputDetails": {"truncated": false},
                   "assignedVariables": {"x": "42"}, "assignedVariablesDetails": {"truncated": false}}})
        );
        let text = serde_json::to_string(&ev).unwrap();
        let back: HistoryEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_value(), v);
        assert_eq!(back.detail("name"), Some(json!("A")));
        // Empty Assign: no assignedVariables, as AWS.
        let (_, d) = exited("A", "{}".into(), Some(&Map::new()))
            .to_pair()
            .unwrap();
        assert!(d.get("assignedVariables").is_none());
        // Absent or empty cause is left out.
        let (_, d) = error_details("k", Some("E"), Some(""), &[]);
        assert_eq!(d, json!({"error": "E"}));
    }
}
