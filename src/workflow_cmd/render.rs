//! The one renderer of `orders executions`, over AWS's JSON shapes (whichever source they
//! came from): ListExecutions items, DescribeExecution, GetExecutionHistory events.

use serde_json::{Value, json};
use std::collections::HashMap;

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn millis(ts: &str) -> Option<i64> {
    asl::timestamp::parse(ts).map(|n| (n / 1_000_000) as i64)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Milliseconds from `startDate` to `stopDate`, when both are there.
fn took(v: &Value) -> Option<i64> {
    let start = millis(v.get("startDate")?.as_str()?)?;
    let stop = millis(v.get("stopDate")?.as_str()?)?;
    Some(stop - start)
}

/// A field of an event's `<x>EventDetails` object.
fn detail<'a>(event: &'a Value, key: &str) -> Option<&'a Value> {
    event
        .as_object()?
        .iter()
        .find(|(k, _)| k.ends_with("EventDetails"))
        .and_then(|(_, d)| d.get(key))
}

fn id(event: &Value, key: &str) -> u64 {
    event.get(key).and_then(Value::as_u64).unwrap_or(0)
}

pub fn list(items: &[Value], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({ "executions": items }));
    }
    if items.is_empty() {
        println!("no executions");
    }
    for e in items {
        let took = took(e)
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<28} {:<10} {}  {took}",
            text(e, "name"),
            text(e, "status"),
            text(e, "startDate")
        );
    }
    Ok(())
}

pub fn show(description: &Value, history: &[Value], json: bool) -> anyhow::Result<()> {
    let states = visits(history);
    if json {
        let mut v = description.clone();
        v["states"] = serde_json::to_value(&states)?;
        return print_json(&v);
    }
    let d = description;
    println!("execution  {}", text(d, "executionArn"));
    println!("status     {}", text(d, "status"));
    if let Some(n) = d["redriveCount"].as_u64().filter(|n| *n > 0) {
        println!("redriven   {n} time(s), last {}", text(d, "redriveDate"));
    }
    if d["redriveStatus"] == "REDRIVABLE" {
        println!("redrive    `orders executions redrive {}`", text(d, "name"));
    }
    println!("started    {}", text(d, "startDate"));
    if let Some(stop) = d.get("stopDate").and_then(Value::as_str) {
        match took(d) {
            Some(ms) => println!("stopped    {stop} ({ms} ms)"),
            None => println!("stopped    {stop}"),
        }
    }
    for key in ["error", "cause", "input", "output"] {
        if let Some(v) = d.get(key).and_then(Value::as_str) {
            println!("{key:<10} {v}");
        }
    }
    println!("states ({} history events)", history.len());
    for s in &states {
        println!(
            "  {:<42} {:<9} {:<9} {}",
            s.name,
            s.kind,
            s.status,
            s.duration_ms
                .map(|d| format!("{d} ms"))
                .unwrap_or_else(|| "-".into())
        );
        for f in &s.failures {
            println!(
                "      {} {}: {}",
                text(f, "type"),
                text(f, "error"),
                text(f, "cause")
            );
        }
    }
    Ok(())
}

pub fn history(events: &[Value], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({ "events": events }));
    }
    for e in events {
        let name = detail(e, "name").and_then(Value::as_str).unwrap_or("");
        println!(
            "{:>4} {:>4}  {}  {:<32} {name}",
            id(e, "id"),
            id(e, "previousEventId"),
            text(e, "timestamp"),
            text(e, "type")
        );
    }
    Ok(())
}

/// One state visit, reconstructed from the history.
#[derive(Debug, serde::Serialize)]
pub struct StateVisit {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub entered: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    pub status: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Value>,
}

pub fn visits(history: &[Value]) -> Vec<StateVisit> {
    let by_id: HashMap<u64, &Value> = history.iter().map(|e| (id(e, "id"), e)).collect();
    let mut out: Vec<StateVisit> = Vec::new();
    // Entered event id → index in `out`.
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut open_by_name: HashMap<String, u64> = HashMap::new();
    // Follows previousEventId back to the StateEntered event of the visit an event belongs to.
    let entered_of = |start: &Value| -> Option<u64> {
        let mut e = start;
        for _ in 0..history.len() {
            if text(e, "type").ends_with("StateEntered") {
                return Some(id(e, "id"));
            }
            e = by_id.get(&id(e, "previousEventId")).copied()?;
        }
        None
    };
    for e in history {
        let t = text(e, "type");
        let name = || {
            detail(e, "name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        if let Some(kind) = t.strip_suffix("StateEntered") {
            open.insert(id(e, "id"), out.len());
            open_by_name.insert(name(), id(e, "id"));
            out.push(StateVisit {
                name: name(),
                kind: kind.to_string(),
                entered: text(e, "timestamp").to_string(),
                duration_ms: None,
                status: "RUNNING".into(),
                failures: vec![],
            });
        } else if t.ends_with("StateExited") {
            if let Some(i) = open_by_name.get(&name()).and_then(|id| open.get(id)) {
                let v = &mut out[*i];
                v.duration_ms = millis(text(e, "timestamp"))
                    .zip(millis(&v.entered))
                    .map(|(a, b)| a - b);
                if v.status == "RUNNING" {
                    v.status = "SUCCEEDED".into();
                } else if v.status == "FAILED" {
                    v.status = "CAUGHT".into();
                }
            }
        } else if (t.ends_with("Failed") || t.ends_with("TimedOut"))
            && !t.starts_with("Execution")
            && let Some(i) = entered_of(e).and_then(|id| open.get(&id))
        {
            let v = &mut out[*i];
            v.status = "FAILED".into();
            v.failures.push(json!({
                "type": t,
                "timestamp": e.get("timestamp"),
                "error": detail(e, "error"),
                "cause": detail(e, "cause"),
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, prev: u64, t: &str, details: Option<(&str, Value)>) -> Value {
        let mut v = json!({"id": id, "previousEventId": prev, "type": t,
                           "timestamp": format!("2026-11-26T19:00:00.{:03}Z", id * 10)});
        if let Some((k, d)) = details {
            v[k] = d;
        }
        v
    }

    #[test]
    fn visits_time_each_state_and_keep_caught_failures() {
        let h = vec![
            event(1, 0, "ExecutionStarted", None),
            event(
                2,
                1,
                "TaskStateEntered",
                Some(("stateEnteredEventDetails", json!({"name": "Send"}))),
            ),
            event(3, 2, "TaskScheduled", None),
            event(
                4,
                3,
                "TaskFailed",
                Some((
                    "taskFailedEventDetails",
                    json!({"error": "SesV2.MessageRejected", "cause": "not verified"}),
                )),
            ),
            event(
                5,
                4,
                "TaskStateExited",
                Some(("stateExitedEventDetails", json!({"name": "Send"}))),
            ),
            event(
                6,
                5,
                "PassStateEntered",
                Some(("stateEnteredEventDetails", json!({"name": "Report"}))),
            ),
        ];
        let v = visits(&h);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].name.as_str(), v[0].kind.as_str(), v[0].status.as_str()),
            ("Send", "Task", "CAUGHT")
        );
        assert_eq!(v[0].duration_ms, Some(30));
        assert_eq!(v[0].failures[0]["error"], "SesV2.MessageRejected");
        assert_eq!(v[0].failures[0]["cause"], "not verified");
        assert_eq!((v[1].status.as_str(), v[1].duration_ms), ("RUNNING", None));
    }

    #[test]
    fn took_needs_both_dates() {
        let d = json!({"startDate": "2026-11-26T19:00:00.000Z", "stopDate": "2026-11-26T19:00:01.250Z"});
        assert_eq!(took(&d), Some(1250));
        assert_eq!(
            took(&json!({"startDate": "2026-11-26T19:00:00.000Z"})),
            None
        );
    }
}
