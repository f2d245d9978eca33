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
    let Ok(def) = Definition::parse(&record.definition) else {
        return Some("its stored definition no longer parses".into());
    };
    refusal(record.status, &def, &replay(&def, history.to_vec()).events)
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
            let from = restart(def, &events).0;
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

/// Where a redrive goes on, given the events of the attempt that ended: the index from
/// which they are not replayed, and the top-level state that did not finish (`None` when
/// the attempt ended between two states, or before the first).
fn restart<'a>(def: &Definition, events: &'a [HistoryEvent]) -> (usize, Option<&'a str>) {
    // Top-level states run one after another, and names are unique across the machine:
    // the last top-level state entered is the one the attempt ended in, unless it exited.
    let entered = events.iter().enumerate().rev().find_map(|(i, e)| {
        e.details
            .entered_state()
            .filter(|name| def.state(name).is_some())
            .map(|name| (i, name))
    });
    let ending = |from: usize| {
        events[from..]
            .iter()
            .position(|e| ENDINGS.contains(&e.event_type.as_str()))
            .map_or(events.len(), |i| from + i)
    };
    match entered {
        // It exited: the attempt ended before the next state; only its ending is dropped.
        Some((i, name))
            if events[i..]
                .iter()
                .any(|e| e.details.exited_state() == Some(name)) =>
        {
            (ending(i), None)
        }
        Some((i, name)) => (i, Some(name)),
        // No state entered (the input was refused): it starts over.
        None => {
            let started = events
                .iter()
                .position(|e| e.event_type == "ExecutionStarted")
                .map_or(0, |i| i + 1);
            (ending(started), None)
        }
    }
}

/// The events that end an attempt.
const ENDINGS: [&str; 3] = ["ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"];

/// Why an execution in `status` whose replayed history is `replayed` cannot be redriven
/// here, if it cannot. A failure inside a Parallel or Map state would run all its branches
/// or iterations again, re-firing the side effects of those that succeeded (AWS redrives
/// only the unsuccessful ones): refused rather than done wrong.
pub(crate) fn refusal(
    status: ExecutionStatus,
    def: &Definition,
    replayed: &[HistoryEvent],
) -> Option<String> {
    match status {
        ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted => {}
        other => return Some(format!("it is {}", other.as_str())),
    }
    let name = restart(def, replayed).1?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> Definition {
        Definition::parse(
            r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"B":{"Type":"Pass","End":true}}}"#,
        )
        .expect("definition")
    }

    fn event(id: u64, prev: u64, ty: &str, details: EventDetails) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: prev,
            timestamp: "2026-11-28T10:00:00.000Z".into(),
            event_type: ty.into(),
            details,
        }
    }

    fn entered(id: u64, prev: u64, name: &str) -> HistoryEvent {
        let details = EventDetails::StateEntered {
            name: name.into(),
            input: "{}".into(),
        };
        event(id, prev, "PassStateEntered", details)
    }

    fn exited(id: u64, prev: u64, name: &str) -> HistoryEvent {
        // As a store gives it back: the generic form.
        let details = EventDetails::Other {
            key: "stateExitedEventDetails".into(),
            value: json!({"name": name, "output": "{}"}),
        };
        event(id, prev, "PassStateExited", details)
    }

    #[test]
    fn a_redrive_goes_on_from_where_the_attempt_ended() {
        let started = event(1, 0, "ExecutionStarted", EventDetails::None);
        let aborted = |id| event(id, 0, "ExecutionAborted", EventDetails::None);
        let def = def();

        // Inside B: B runs again.
        let inside = [
            started.clone(),
            entered(2, 0, "A"),
            exited(3, 2, "A"),
            entered(4, 3, "B"),
            aborted(5),
        ];
        assert_eq!(restart(&def, &inside), (3, Some("B")));
        // Between A and B: nothing runs again, B runs for the first time.
        let between = [
            started.clone(),
            entered(2, 0, "A"),
            exited(3, 2, "A"),
            aborted(4),
        ];
        assert_eq!(restart(&def, &between), (3, None));
        // Before any state: it starts over.
        let before = [started.clone(), aborted(2)];
        assert_eq!(restart(&def, &before), (1, None));

        // A redriven history replays the first attempt up to B, then the second attempt.
        let mut history = inside.to_vec();
        history.push(redriven_event(5, 1, "2026-11-28T10:00:01.000Z".into()));
        history.push(entered(7, 3, "B"));
        let replay = replay(&def, history);
        let ids: Vec<u64> = replay.events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3, 7]);
        assert_eq!((replay.next_id, replay.redrives), (8, 1));
    }
}
