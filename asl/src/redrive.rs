//! Redriving a failed, timed-out or aborted execution (AWS `RedriveExecution`): it goes
//! on from the state that did not finish, in the same execution, and what succeeded
//! before that state is not run again.
//!
//! The engine re-drives an execution by replaying its history (see `Engine::resume`):
//! states run again from the input, and Task results found in the history are reused
//! instead of invoking the task. A redrive records `ExecutionRedriven` and replays the
//! history *without* the unfinished state's events (from its `…StateEntered` to the
//! `ExecutionRedriven`): that state then runs afresh (new task invocations, retry counts
//! from zero), as on AWS, while the history keeps every event for whoever reads it.

use crate::definition::{Definition, StateKind};
use crate::history::{EventDetails, HistoryEvent};
use crate::store::{ExecutionRecord, ExecutionStatus};
use serde_json::json;

/// The history event a redrive records.
pub const REDRIVEN: &str = "ExecutionRedriven";

/// Why the execution cannot be redriven, if it cannot (AWS's `redriveStatusReason` of a
/// `NOT_REDRIVABLE` execution): only a FAILED, TIMED_OUT or ABORTED one can, and not when
/// it ended inside a Parallel or Map state.
pub fn not_redrivable(record: &ExecutionRecord, history: &[HistoryEvent]) -> Option<String> {
    match record.status {
        ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted => {}
        other => return Some(format!("it is {}", other.as_str())),
    }
    let Ok(def) = Definition::parse(&record.definition) else {
        return Some("its stored definition no longer parses".into());
    };
    refusal(&def, &replay(&def, history.to_vec()).events)
}

/// How often the execution was redriven, and the timestamp of the last redrive.
pub fn redrives(history: &[HistoryEvent]) -> (usize, Option<&str>) {
    let mut redriven = history.iter().filter(|e| e.event_type == REDRIVEN);
    let count = redriven.clone().count();
    (count, redriven.next_back().map(|e| e.timestamp.as_str()))
}

/// A history as the engine replays it.
pub(crate) struct Replay {
    /// The events to match, without the failed attempts that redrives superseded.
    pub(crate) events: Vec<HistoryEvent>,
    /// The id for the first new event (after every recorded one).
    pub(crate) next_id: u64,
    /// `ExecutionRedriven` events so far (`$$.Execution.RedriveCount`).
    pub(crate) redrives: u64,
}

/// What of `history` the engine replays.
pub(crate) fn replay(def: &Definition, history: Vec<HistoryEvent>) -> Replay {
    let next_id = history.iter().map(|e| e.id).max().unwrap_or(0) + 1;
    let mut redrives = 0;
    let mut events: Vec<HistoryEvent> = Vec::with_capacity(history.len());
    for e in history {
        if e.event_type == REDRIVEN {
            redrives += 1;
            let from = unfinished(def, &events).map_or(events.len(), |(i, _)| i);
            events.truncate(from);
        } else {
            events.push(e);
        }
    }
    Replay {
        events,
        next_id,
        redrives,
    }
}

/// The top-level state the execution was in when it ended: the index of its
/// `…StateEntered` event and its name. `None` when no state was entered (the input was
/// refused): a redrive then starts over from the first state.
fn unfinished<'a>(def: &Definition, events: &'a [HistoryEvent]) -> Option<(usize, &'a str)> {
    // Top-level states run one after another, and names are unique across the machine:
    // the last top-level state entered is the one that did not finish.
    events.iter().enumerate().rev().find_map(|(i, e)| {
        e.details
            .entered_state()
            .filter(|name| def.state(name).is_some())
            .map(|name| (i, name))
    })
}

/// Why an execution that ended with this (replayed) history cannot be redriven here. A
/// failure inside a Parallel or Map state would run all its branches or iterations
/// again, re-firing the side effects of those that succeeded (AWS redrives only the
/// unsuccessful ones): refused rather than done wrong.
fn refusal(def: &Definition, replayed: &[HistoryEvent]) -> Option<String> {
    let (_, name) = unfinished(def, replayed)?;
    let kind = match def.state(name).map(|s| &s.kind) {
        Some(StateKind::Parallel { .. }) => "Parallel",
        Some(StateKind::Map(_)) => "Map",
        _ => return None,
    };
    Some(format!(
        "it ended inside the {kind} state '{name}'; the local engine redrives failures outside Parallel and Map states only"
    ))
}

/// The `ExecutionRedriven` event appended after `last` (the history's last event).
pub(crate) fn redriven_event(last: u64, redrive_count: u64, timestamp: String) -> HistoryEvent {
    HistoryEvent {
        id: last + 1,
        previous_event_id: last,
        timestamp,
        event_type: REDRIVEN.into(),
        details: EventDetails::Other {
            key: "executionRedrivenEventDetails".into(),
            value: json!({ "redriveCount": redrive_count }),
        },
    }
}
