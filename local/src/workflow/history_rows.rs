//! The row encoding of history events in `workflows.db`.
//!
//! A row is the event's AWS JSON, except that a state input or output equal to a payload
//! an earlier event of the same execution already holds is left out and named instead:
//! `"payloadFrom": [<earlier id>, "input" | "output"]`. The order workflow passes the
//! same order document from state to state, so this stores each distinct payload once
//! per execution (about 40 % fewer history bytes) instead of up to eight times.
//!
//! Safe across crashes because the writer commits in queue order: a row that names an
//! earlier event is queued after it, so it is never committed without it. Reading
//! ([`decode_history`]) resolves the names back, so readers get the AWS shape, key order
//! included. Rows without `payloadFrom` (all rows of older databases) read as before.

use asl::HistoryEvent;
use asl::history::EventDetails;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::collections::HashMap;

const PAYLOAD_FROM: &str = "payloadFrom";
/// Payloads remembered per execution (the workflow's repeats are a few events apart).
const RECENT: usize = 8;
/// Executions remembered at most; past that the memory is dropped (rows are then
/// stored whole, which is always correct).
const MAX_EXECUTIONS: usize = 50_000;

#[derive(Debug, thiserror::Error)]
#[error("history event: {0}")]
pub struct RowError(String);

struct Payload {
    id: u64,
    field: &'static str,
    text: String,
}

/// Remembers the recent payloads of running executions, to encode repeats as names.
#[derive(Default)]
pub struct Encoder {
    recent: HashMap<String, Vec<Payload>>,
}

#[derive(Serialize)]
struct NotTruncated {
    truncated: bool,
}

const NOT_TRUNCATED: NotTruncated = NotTruncated { truncated: false };

/// `stateEnteredEventDetails` with the input left out when named.
#[derive(Serialize)]
struct Entered<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    #[serde(rename = "inputDetails")]
    input_details: NotTruncated,
}

/// `stateExitedEventDetails` with the output left out when named.
#[derive(Serialize)]
struct Exited<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    #[serde(rename = "outputDetails")]
    output_details: NotTruncated,
    #[serde(rename = "assignedVariables", skip_serializing_if = "Option::is_none")]
    assigned: Option<Map<String, Value>>,
    #[serde(
        rename = "assignedVariablesDetails",
        skip_serializing_if = "Option::is_none"
    )]
    assigned_details: Option<NotTruncated>,
}

fn is_end(event_type: &str) -> bool {
    matches!(
        event_type,
        "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted"
    )
}

impl Encoder {
    /// The row text of `event`, the next event of `arn` (events of one execution must
    /// be encoded in the order they are queued for writing).
    pub fn encode(&mut self, arn: &str, event: HistoryEvent) -> Result<String, RowError> {
        if self.recent.len() >= MAX_EXECUTIONS && !self.recent.contains_key(arn) {
            self.recent.clear();
        }
        let recent = self.recent.entry(arn.to_string()).or_default();
        let named = |text: &str| {
            recent
                .iter()
                .rev()
                .find(|p| p.text.len() == text.len() && p.text == text)
                .map(|p| (p.id, p.field))
        };
        let mut out = Vec::with_capacity(256);
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut m = ser.serialize_map(None).map_err(err)?;
        m.serialize_entry("id", &event.id).map_err(err)?;
        m.serialize_entry("previousEventId", &event.previous_event_id)
            .map_err(err)?;
        m.serialize_entry("timestamp", &event.timestamp)
            .map_err(err)?;
        m.serialize_entry("type", &event.event_type).map_err(err)?;
        let mut remember: Option<(&'static str, String)> = None;
        let mut from = None;
        match event.details {
            EventDetails::None => {}
            EventDetails::StateEntered { name, input } => {
                from = named(&input);
                m.serialize_entry(
                    "stateEnteredEventDetails",
                    &Entered {
                        name: &name,
                        input: from.is_none().then_some(input.as_str()),
                        input_details: NOT_TRUNCATED,
                    },
                )
                .map_err(err)?;
                remember = Some(("input", input));
            }
            EventDetails::StateExited {
                name,
                output,
                assigned,
            } => {
                from = named(&output);
                let assigned_details = assigned.as_ref().map(|_| NOT_TRUNCATED);
                let assigned = assigned.map(|a| {
                    a.into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect::<Map<_, _>>()
                });
                m.serialize_entry(
                    "stateExitedEventDetails",
                    &Exited {
                        name: &name,
                        output: from.is_none().then_some(output.as_str()),
                        output_details: NOT_TRUNCATED,
                        assigned,
                        assigned_details,
                    },
                )
                .map_err(err)?;
                remember = Some(("output", output));
            }
            EventDetails::Other { key, value } => {
                m.serialize_entry(&key, &value).map_err(err)?;
                if key == "executionStartedEventDetails"
                    && let Some(Value::String(input)) = value.get("input")
                {
                    remember = Some(("input", input.clone()));
                }
            }
            other => {
                if let Some((key, value)) = other.to_pair() {
                    m.serialize_entry(&key, &value).map_err(err)?;
                }
            }
        }
        if let Some(f) = from {
            m.serialize_entry(PAYLOAD_FROM, &f).map_err(err)?;
        }
        SerializeMap::end(m).map_err(err)?;
        if is_end(&event.event_type) {
            self.recent.remove(arn);
        } else if let Some((field, text)) = remember
            && from.is_none()
        {
            // A named payload is already remembered under its first event.
            if recent.len() >= RECENT {
                recent.remove(0);
            }
            recent.push(Payload {
                id: event.id,
                field,
                text,
            });
        }
        String::from_utf8(out).map_err(err)
    }
}

fn err(e: impl std::fmt::Display) -> RowError {
    RowError(e.to_string())
}

/// The events of one execution from its rows, in id order.
pub fn decode_history(
    rows: impl IntoIterator<Item = String>,
) -> Result<Vec<HistoryEvent>, RowError> {
    let mut out: Vec<HistoryEvent> = Vec::new();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    for row in rows {
        let mut v: Value = serde_json::from_str(&row).map_err(err)?;
        if let Some(obj) = v.as_object_mut()
            && let Some(from) = obj.remove(PAYLOAD_FROM)
        {
            let (src_id, src_field) = match from.as_array().map(Vec::as_slice) {
                Some([Value::Number(id), Value::String(f)]) => {
                    (id.as_u64().unwrap_or(u64::MAX), f.clone())
                }
                _ => return Err(RowError(format!("bad {PAYLOAD_FROM}: {from}"))),
            };
            let text = by_id
                .get(&src_id)
                .and_then(|&i| out[i].detail(&src_field))
                .ok_or_else(|| {
                    RowError(format!("{PAYLOAD_FROM} names a missing event {src_id}"))
                })?;
            resolve(obj, text)?;
        }
        let event = HistoryEvent::from_value(&v).ok_or_else(|| RowError("shape".into()))?;
        by_id.insert(event.id, out.len());
        out.push(event);
    }
    Ok(out)
}

/// Puts the named payload back into the details, in AWS's key order (before its
/// `inputDetails` / `outputDetails`).
fn resolve(obj: &mut Map<String, Value>, text: Value) -> Result<(), RowError> {
    let (key, field) = if obj.contains_key("stateEnteredEventDetails") {
        ("stateEnteredEventDetails", "input")
    } else if obj.contains_key("stateExitedEventDetails") {
        ("stateExitedEventDetails", "output")
    } else {
        return Err(RowError(format!(
            "{PAYLOAD_FROM} on an event without a payload"
        )));
    };
    let Some(Value::Object(details)) = obj.get_mut(key) else {
        return Err(RowError(format!("{key} is not an object")));
    };
    let marker = format!("{field}Details");
    let mut rebuilt = Map::with_capacity(details.len() + 1);
    let mut text = Some(text);
    for (k, v) in std::mem::take(details) {
        if k == marker
            && let Some(t) = text.take()
        {
            rebuilt.insert(field.to_string(), t);
        }
        rebuilt.insert(k, v);
    }
    if let Some(t) = text {
        rebuilt.insert(field.to_string(), t);
    }
    *details = rebuilt;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use asl::history::{entered, exited};
    use serde_json::json;

    fn ev(id: u64, prev: u64, ty: &str, details: EventDetails) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: prev,
            timestamp: "2024-01-01T00:00:00.000Z".into(),
            event_type: ty.into(),
            details,
        }
    }

    /// A run like the order workflow's: the input repeats, an output becomes an input.
    fn run() -> Vec<HistoryEvent> {
        let input = json!({"order_id": "o-1", "items": [1, 2, 3], "note": "é \"q\""});
        let summary = json!({"summary": {"n": 3}});
        vec![
            ev(
                1,
                0,
                "ExecutionStarted",
                EventDetails::Other {
                    key: "executionStartedEventDetails".into(),
                    value: json!({"input": input.to_string(), "inputDetails": {"truncated": false},
                                  "roleArn": "arn:role"}),
                },
            ),
            ev(2, 0, "ParallelStateEntered", entered("P", &input)),
            ev(3, 2, "ParallelStateStarted", EventDetails::None),
            ev(4, 3, "PassStateEntered", entered("A", &input)),
            ev(
                5,
                4,
                "PassStateExited",
                exited(
                    "A",
                    summary.to_string(),
                    Some(&Map::from_iter([("x".to_string(), json!(1))])),
                ),
            ),
            ev(6, 5, "TaskStateEntered", entered("T", &summary)),
            ev(7, 6, "TaskStateExited", exited("T", "{}".into(), None)),
            ev(
                8,
                7,
                "ExecutionSucceeded",
                EventDetails::Other {
                    key: "executionSucceededEventDetails".into(),
                    value: json!({"output": "{}", "outputDetails": {"truncated": false}}),
                },
            ),
        ]
    }

    /// What the rows read back as before this encoding: the AWS JSON, parsed.
    fn aws_text(events: &[HistoryEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let v = HistoryEvent::from_value(&e.to_value()).unwrap().to_value();
                serde_json::to_string(&v).unwrap()
            })
            .collect()
    }

    #[test]
    fn repeated_payloads_are_named_and_read_back_in_aws_shape() {
        let events = run();
        let mut enc = Encoder::default();
        let rows: Vec<String> = events
            .iter()
            .map(|e| enc.encode("arn:x", e.clone()).unwrap())
            .collect();
        // 2 and 4 repeat the execution input, 6 the output of 5.
        assert!(
            rows[1].contains(r#""payloadFrom":[1,"input"]"#),
            "{}",
            rows[1]
        );
        assert!(
            rows[3].contains(r#""payloadFrom":[1,"input"]"#),
            "{}",
            rows[3]
        );
        assert!(
            rows[5].contains(r#""payloadFrom":[5,"output"]"#),
            "{}",
            rows[5]
        );
        assert!(!rows[4].contains("payloadFrom"));
        assert!(!rows[1].contains("order_id"));
        // Rows that name nothing are exactly the AWS JSON.
        let expected = aws_text(&events);
        assert_eq!(rows[0], expected[0]);
        assert_eq!(rows[4], expected[4]);
        let back = decode_history(rows).unwrap();
        let got: Vec<String> = back
            .iter()
            .map(|e| serde_json::to_string(&e.to_value()).unwrap())
            .collect();
        assert_eq!(got, expected);
        // The execution ended: nothing of it is remembered.
        assert!(enc.recent.is_empty());
    }

    #[test]
    fn executions_do_not_share_payloads() {
        let events = run();
        let mut enc = Encoder::default();
        enc.encode("arn:a", events[0].clone()).unwrap();
        let row = enc.encode("arn:b", events[1].clone()).unwrap();
        assert!(!row.contains("payloadFrom"), "{row}");
    }

    #[test]
    fn a_name_without_its_event_is_an_error_not_a_guess() {
        let events = run();
        let mut enc = Encoder::default();
        let rows: Vec<String> = events[..2]
            .iter()
            .map(|e| enc.encode("arn:x", e.clone()).unwrap())
            .collect();
        let e = decode_history(vec![rows[1].clone()]).unwrap_err();
        assert!(e.to_string().contains("missing event 1"), "{e}");
    }
}
