//! What happened to each state of one execution, read from its history: the status the
//! graph colours it with, and the input, output and error the side panel shows.
//!
//! Events without a state name (TaskScheduled, TaskFailed, ...) belong to the state their
//! `previousEventId` chain leads back to; Parallel/Map events to the enclosing Parallel/Map
//! (a branch's events chain from its ParallelStateStarted, so branches stay apart).

use super::graph::StateInfo;
use asl::HistoryEvent;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// How a state ended up, as the console colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Succeeded,
    Failed,
    /// Failed, then a Catch took over.
    Caught,
    Running,
    NotReached,
}

impl Status {
    pub fn class(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Caught => "caught",
            Status::Running => "running",
            Status::NotReached => "not-reached",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Succeeded => "Succeeded",
            Status::Failed => "Failed",
            Status::Caught => "Caught error",
            Status::Running => "In progress",
            Status::NotReached => "Not reached",
        }
    }
}

/// One state, over all its entries (a Map iteration or a loop enters it again; the
/// panel shows the last entry).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateRun {
    pub name: String,
    pub status: Status,
    /// How many times it was entered.
    pub entries: usize,
    /// Failed attempts (retried or not).
    pub failures: usize,
    pub entered: Option<String>,
    pub exited: Option<String>,
    /// Milliseconds from entry to exit.
    pub duration_ms: Option<i64>,
    /// JSON text, as in the history.
    pub input: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

#[derive(Default)]
struct Entry {
    entered: String,
    input: String,
    exited: Option<(String, String)>,
    /// The last attempt failed (error, cause) and nothing succeeded since.
    failed: Option<(Option<String>, Option<String>)>,
    /// The last failure seen, kept after a successful retry.
    last_error: Option<(Option<String>, Option<String>)>,
    failures: usize,
}

fn is_failure(t: &str) -> bool {
    !t.starts_with("Execution")
        && !t.starts_with("MapIteration")
        && (t.ends_with("Failed") || t.ends_with("TimedOut") || t == "TaskStateAborted")
}

fn is_success(t: &str) -> bool {
    matches!(
        t,
        "TaskSucceeded"
            | "LambdaFunctionSucceeded"
            | "ActivitySucceeded"
            | "ParallelStateSucceeded"
            | "MapStateSucceeded"
    )
}

fn text(ev: &HistoryEvent, key: &str) -> Option<String> {
    ev.detail(key).and_then(|v| v.as_str().map(str::to_string))
}

/// The state each event belongs to (None for execution-level events).
pub fn owners(
    history: &[HistoryEvent],
    states: &HashMap<String, StateInfo>,
) -> Vec<Option<String>> {
    let index: HashMap<u64, usize> = history.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let mut owner: Vec<Option<String>> = Vec::with_capacity(history.len());
    let enclosing = |from: Option<String>, wanted: &str| -> Option<String> {
        let mut cur = from;
        while let Some(n) = cur {
            let info = states.get(&n)?;
            if info.state_type == wanted {
                return Some(n);
            }
            cur = info.parent.clone();
        }
        None
    };
    for ev in history {
        let t = ev.event_type.as_str();
        let prev = index.get(&ev.previous_event_id).copied();
        let prev_owner = prev.and_then(|p| owner.get(p).cloned().flatten());
        let prev_exited = prev.is_some_and(|p| history[p].event_type.ends_with("StateExited"));
        let o = if t.ends_with("StateEntered")
            || t.ends_with("StateExited")
            || t.starts_with("MapIteration")
        {
            text(ev, "name")
        } else if t.starts_with("Execution") {
            None
        } else if let Some(wanted) = [
            ("ParallelState", "Parallel"),
            ("MapState", "Map"),
            ("MapRun", "Map"),
        ]
        .iter()
        .find(|(p, _)| t.starts_with(p))
        .map(|(_, w)| *w)
        {
            // After a branch's last state exited, the Parallel is that state's ancestor.
            let from = if prev_exited {
                prev_owner.and_then(|n| states.get(&n).and_then(|i| i.parent.clone()))
            } else {
                prev_owner
            };
            enclosing(from, wanted)
        } else {
            prev_owner
        };
        owner.push(o);
    }
    owner
}

/// Every state of the definition with what happened to it.
pub fn runs(
    history: &[HistoryEvent],
    states: &HashMap<String, StateInfo>,
    execution_running: bool,
) -> BTreeMap<String, StateRun> {
    let owner = owners(history, states);
    let mut entries: HashMap<String, Vec<Entry>> = HashMap::new();
    for (ev, o) in history.iter().zip(owner) {
        let Some(name) = o else { continue };
        let t = ev.event_type.as_str();
        let list = entries.entry(name).or_default();
        if t.ends_with("StateEntered") {
            list.push(Entry {
                entered: ev.timestamp.clone(),
                input: text(ev, "input").unwrap_or_default(),
                ..Entry::default()
            });
            continue;
        }
        let Some(cur) = list.last_mut() else { continue };
        if t.ends_with("StateExited") {
            cur.exited = Some((ev.timestamp.clone(), text(ev, "output").unwrap_or_default()));
        } else if is_failure(t) {
            let err = (text(ev, "error"), text(ev, "cause"));
            // TaskStateAborted carries no error: keep the failure it follows.
            if err.0.is_some() || cur.failed.is_none() {
                cur.failed = Some(err.clone());
                cur.last_error = Some(err);
            }
            if t != "TaskStateAborted" {
                cur.failures += 1;
            }
        } else if is_success(t) {
            cur.failed = None;
        }
    }
    let mut out = BTreeMap::new();
    for name in states.keys() {
        let list = entries.remove(name).unwrap_or_default();
        out.insert(name.clone(), summarise(name, &list, execution_running));
    }
    out
}

fn summarise(name: &str, list: &[Entry], execution_running: bool) -> StateRun {
    let open = list.iter().any(|e| e.exited.is_none());
    let status = if list.is_empty() {
        Status::NotReached
    } else if open {
        if execution_running {
            Status::Running
        } else {
            Status::Failed
        }
    } else if list.iter().any(|e| e.failed.is_some()) {
        Status::Caught
    } else {
        Status::Succeeded
    };
    let last = list.last();
    let exited = last.and_then(|e| e.exited.clone());
    let error = last.and_then(|e| e.failed.clone().or_else(|| e.last_error.clone()));
    let duration_ms = last.and_then(|e| {
        let (t, _) = e.exited.as_ref()?;
        millis(t).zip(millis(&e.entered)).map(|(b, a)| b - a)
    });
    StateRun {
        name: name.to_string(),
        status,
        entries: list.len(),
        failures: list.iter().map(|e| e.failures).sum(),
        entered: last.map(|e| e.entered.clone()),
        exited: exited.as_ref().map(|(t, _)| t.clone()),
        duration_ms,
        input: last.map(|e| e.input.clone()),
        output: exited.map(|(_, o)| o),
        error: error.as_ref().and_then(|(e, _)| e.clone()),
        cause: error.and_then(|(_, c)| c),
    }
}

/// Unix milliseconds of an ISO-8601 timestamp.
pub fn millis(ts: &str) -> Option<i64> {
    asl::timestamp::parse(ts).and_then(|ns| i64::try_from(ns / 1_000_000).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::graph::states;
    use asl::history::{EventDetails, entered, error_details, exited};
    use serde_json::json;

    struct H(Vec<HistoryEvent>);

    impl H {
        fn push(&mut self, prev: u64, ty: &str, details: EventDetails) -> u64 {
            let id = self.0.len() as u64 + 1;
            self.0.push(HistoryEvent {
                id,
                previous_event_id: prev,
                timestamp: format!("2024-01-01T00:00:00.{:03}Z", id * 10),
                event_type: ty.into(),
                details,
            });
            id
        }
        fn enter(&mut self, prev: u64, ty: &str, name: &str) -> u64 {
            self.push(
                prev,
                &format!("{ty}StateEntered"),
                entered(name, &json!({"in": name})),
            )
        }
        fn exit(&mut self, prev: u64, ty: &str, name: &str) -> u64 {
            self.push(
                prev,
                &format!("{ty}StateExited"),
                exited(name, format!("{{\"out\":\"{name}\"}}"), None),
            )
        }
        fn fail(&mut self, prev: u64, error: &str) -> u64 {
            self.push(
                prev,
                "TaskFailed",
                EventDetails::from(Some(error_details(
                    "taskFailedEventDetails",
                    Some(error),
                    Some("boom"),
                    &[],
                ))),
            )
        }
    }

    fn definition() -> serde_json::Value {
        json!({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "Next": "Record", "Branches": [
                {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true,
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "A failed"}]},
                    "A failed": {"Type": "Pass", "End": true}}},
                {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "r", "End": true}}}]},
            "Record": {"Type": "Task", "Resource": "r", "End": true}}})
    }

    /// P with branch A failing twice (retried, then caught) and branch B succeeding
    /// after one retry, interleaved as concurrent branches are.
    fn parallel_history(record_done: bool) -> H {
        let mut h = H(vec![]);
        let s = h.push(0, "ExecutionStarted", EventDetails::None);
        let pe = h.enter(s, "Parallel", "P");
        let ps = h.push(pe, "ParallelStateStarted", EventDetails::None);
        let a = h.enter(ps, "Task", "A");
        let b = h.enter(ps, "Task", "B");
        let a1 = h.push(a, "TaskScheduled", EventDetails::None);
        let b1 = h.push(b, "TaskScheduled", EventDetails::None);
        let a2 = h.fail(a1, "E1");
        let b2 = h.fail(b1, "Flaky");
        let a3 = h.push(a2, "TaskScheduled", EventDetails::None);
        let b3 = h.push(b2, "TaskScheduled", EventDetails::None);
        let b4 = h.push(b3, "TaskSucceeded", EventDetails::None);
        h.exit(b4, "Task", "B");
        let a4 = h.fail(a3, "E2");
        let ax = h.exit(a4, "Task", "A");
        let af = h.enter(ax, "Pass", "A failed");
        let afx = h.exit(af, "Pass", "A failed");
        let pss = h.push(afx, "ParallelStateSucceeded", EventDetails::None);
        let px = h.exit(pss, "Parallel", "P");
        let r = h.enter(px, "Task", "Record");
        if record_done {
            let r1 = h.push(r, "TaskScheduled", EventDetails::None);
            let r2 = h.push(r1, "TaskSucceeded", EventDetails::None);
            let rx = h.exit(r2, "Task", "Record");
            h.push(rx, "ExecutionSucceeded", EventDetails::None);
        }
        h
    }

    #[test]
    fn branches_retries_and_catches_get_their_own_status() {
        let def = definition();
        let runs = runs(&parallel_history(true).0, &states(&def), false);
        let st = |n: &str| runs[n].status;
        assert_eq!(st("P"), Status::Succeeded);
        assert_eq!(st("A"), Status::Caught);
        assert_eq!(st("A failed"), Status::Succeeded);
        assert_eq!(st("B"), Status::Succeeded, "a retried success is a success");
        assert_eq!(st("Record"), Status::Succeeded);
        assert_eq!(runs["A"].failures, 2);
        assert_eq!(runs["B"].failures, 1);
        assert_eq!(runs["A"].error.as_deref(), Some("E2"));
        assert_eq!(runs["A"].cause.as_deref(), Some("boom"));
        assert_eq!(runs["B"].input.as_deref(), Some(r#"{"in":"B"}"#));
        assert_eq!(runs["B"].output.as_deref(), Some(r#"{"out":"B"}"#));
        assert_eq!(runs["P"].duration_ms, Some(190 - 20));
    }

    #[test]
    fn running_failed_and_not_reached() {
        let def = definition();
        let info = states(&def);
        let h = parallel_history(false);
        let running = runs(&h.0, &info, true);
        assert_eq!(running["Record"].status, Status::Running);
        assert_eq!(running["Record"].output, None);
        // The same history, but the execution ended: the open state failed.
        assert_eq!(runs(&h.0, &info, false)["Record"].status, Status::Failed);
        // Nothing ran yet.
        let fresh = runs(&[], &info, true);
        assert!(fresh.values().all(|r| r.status == Status::NotReached));
        assert_eq!(fresh.len(), 5);
    }
}
