//! Redriving a failed, timed-out or aborted execution (AWS `RedriveExecution`): it goes
//! on from the state that did not finish, in the same execution, and what succeeded
//! before that state is not run again.
//!
//! The engine re-drives an execution by replaying its history (see `Engine::resume`):
//! states run again from the input, and Task results found in the history are reused
//! instead of invoking the task. A redrive records `ExecutionRedriven` and replays the
//! history *without* the unfinished states' events: in each thread of the attempt that
//! ended (the execution, every Parallel branch, every inline Map iteration) the state it
//! did not finish, from its `…StateEntered` on, and the attempt's ending. Those states run
//! afresh (new task invocations, retry counts from zero), as on AWS, which "redrives only
//! the iterations and branches that failed or aborted"; branches and iterations that
//! succeeded are replayed, so their side effects are not repeated. The history keeps every
//! event for whoever reads it.
//!
//! The threads are read from the history itself: every event names its predecessor
//! (`previousEventId`), so the events form a tree in which what followed a state in its
//! thread hangs below it.

use crate::definition::{Definition, MapMode, StateKind};
use crate::history::{EventDetails, HistoryEvent};
use crate::store::{ExecutionRecord, ExecutionStatus};
use serde_json::json;
use std::collections::HashMap;

/// The history event a redrive records.
pub const REDRIVEN: &str = "ExecutionRedriven";

/// Why the execution cannot be redriven, if it cannot (AWS's `redriveStatusReason` of a
/// `NOT_REDRIVABLE` execution): only a FAILED, TIMED_OUT or ABORTED one can, and not when
/// it ended inside a distributed Map state.
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
    // Only redriven histories need it (most are not).
    let mut layout = None;
    let mut redrives = 0;
    let mut events: Vec<HistoryEvent> = Vec::with_capacity(history.len());
    for e in history {
        if e.event_type == REDRIVEN {
            redrives += 1;
            let layout = layout.get_or_insert_with(|| Layout::of(def));
            let dropped = not_replayed(layout, &events).dropped;
            let mut i = 0;
            events.retain(|_| {
                i += 1;
                !dropped[i - 1]
            });
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

/// Where each state sits in the machine: the Parallel or Map state it is nested in (`None`
/// at the top level). State names are unique across the whole machine.
struct Layout<'a> {
    parent: HashMap<&'a str, Option<&'a str>>,
    kind: HashMap<&'a str, &'a StateKind>,
}

impl<'a> Layout<'a> {
    fn of(def: &'a Definition) -> Layout<'a> {
        let mut layout = Layout {
            parent: HashMap::new(),
            kind: HashMap::new(),
        };
        layout.add(def, None);
        layout
    }

    fn add(&mut self, def: &'a Definition, parent: Option<&'a str>) {
        for st in &def.states {
            self.parent.insert(&st.name, parent);
            self.kind.insert(&st.name, &st.kind);
            match &st.kind {
                StateKind::Parallel { branches } => {
                    branches.iter().for_each(|b| self.add(b, Some(&st.name)))
                }
                StateKind::Map(m) => self.add(&m.processor, Some(&st.name)),
                _ => {}
            }
        }
    }

    /// Whether `state` is nested (at any depth) in the container `outer`.
    fn within(&self, state: &str, outer: &str) -> bool {
        let mut at = self.parent.get(state).copied().flatten();
        while let Some(p) = at {
            if p == outer {
                return true;
            }
            at = self.parent.get(p).copied().flatten();
        }
        false
    }

    fn siblings(&self, a: &str, b: &str) -> bool {
        self.parent.get(a) == self.parent.get(b)
    }

    fn is_container(&self, state: &str) -> bool {
        matches!(
            self.kind.get(state),
            Some(StateKind::Parallel { .. } | StateKind::Map(_))
        )
    }

    fn is_distributed_map(&self, state: &str) -> bool {
        matches!(self.kind.get(state), Some(StateKind::Map(m)) if m.mode == MapMode::Distributed)
    }
}

/// What a redrive of the attempt `events` leaves out.
struct NotReplayed<'e> {
    /// Per event: not replayed.
    dropped: Vec<bool>,
    /// The states the attempt left unfinished (entered, neither exited nor followed by a
    /// next state), containers included, in history order.
    unfinished: Vec<&'e str>,
}

/// The events of the attempt that ended which a redrive does not replay: its ending, and
/// in every thread the state it did not finish with everything that followed from it
/// (its tasks, its retries, the failure that ended the branch and the Parallel). An
/// unfinished Parallel or Map state itself stays: it runs again, and replays the branches
/// and iterations that finished.
fn not_replayed<'e>(layout: &Layout, events: &'e [HistoryEvent]) -> NotReplayed<'e> {
    let at: HashMap<u64, usize> = events.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    // Each event's predecessor, always earlier in the history.
    let before: Vec<Option<usize>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| at.get(&e.previous_event_id).copied().filter(|&p| p < i))
        .collect();
    let mut finished = vec![false; events.len()];
    for (j, e) in events.iter().enumerate() {
        if let Some(name) = e.details.exited_state() {
            // The state's own entry is the nearest one of its name above its exit.
            let mut k = before[j];
            while let Some(a) = k {
                if events[a].details.entered_state() == Some(name) {
                    finished[a] = true;
                    break;
                }
                k = before[a];
            }
        } else if let Some(name) = e.details.entered_state() {
            // Entering a state finishes the one before it in its thread, and the deeper
            // ones whose failure was caught on the way (a Parallel's branch state whose
            // error the Parallel's Catch took).
            let mut k = before[j];
            while let Some(a) = k {
                if let Some(earlier) = events[a].details.entered_state() {
                    if layout.within(name, earlier) {
                        // The first state of a branch or iteration of `earlier`.
                        break;
                    }
                    finished[a] = true;
                    if layout.siblings(name, earlier) {
                        break;
                    }
                }
                k = before[a];
            }
        }
    }
    let mut dropped = vec![false; events.len()];
    let mut unfinished = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let root = match e.details.entered_state() {
            Some(name) if !finished[i] => {
                unfinished.push(name);
                !layout.is_container(name)
            }
            _ => ENDINGS.contains(&e.event_type.as_str()),
        };
        dropped[i] = root || before[i].is_some_and(|p| dropped[p]);
    }
    NotReplayed {
        dropped,
        unfinished,
    }
}

/// The events that end an attempt.
const ENDINGS: [&str; 3] = ["ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"];

/// Why an execution in `status` whose replayed history is `replayed` cannot be redriven
/// here, if it cannot. A distributed Map runs its iterations as child executions, whose
/// histories are not in this one: all of them would run again, re-firing the side effects
/// of those that succeeded (AWS redrives the Map Run's unsuccessful ones): refused rather
/// than done wrong.
pub(crate) fn refusal(
    status: ExecutionStatus,
    def: &Definition,
    replayed: &[HistoryEvent],
) -> Option<String> {
    match status {
        ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted => {}
        other => return Some(format!("it is {}", other.as_str())),
    }
    let layout = Layout::of(def);
    let left = not_replayed(&layout, replayed);
    let name = left
        .unfinished
        .into_iter()
        .find(|n| layout.is_distributed_map(n))?;
    Some(format!(
        "it ended inside the distributed Map state '{name}'; the local engine does not redrive Map Runs"
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

    /// The ids a redrive of `events` replays, and the states it names unfinished.
    fn kept(def: &Definition, events: &[HistoryEvent]) -> (Vec<u64>, Vec<String>) {
        let left = not_replayed(&Layout::of(def), events);
        let ids = events
            .iter()
            .zip(&left.dropped)
            .filter(|(_, d)| !**d)
            .map(|(e, _)| e.id)
            .collect();
        (ids, left.unfinished.iter().map(|s| s.to_string()).collect())
    }

    fn plain(id: u64, prev: u64, ty: &str) -> HistoryEvent {
        event(id, prev, ty, EventDetails::None)
    }

    #[test]
    fn a_redrive_goes_on_from_where_the_attempt_ended() {
        let started = plain(1, 0, "ExecutionStarted");
        let aborted = |id| plain(id, 0, "ExecutionAborted");
        let def = def();

        // Inside B: B runs again.
        let inside = [
            started.clone(),
            entered(2, 1, "A"),
            exited(3, 2, "A"),
            entered(4, 3, "B"),
            plain(5, 4, "TaskScheduled"),
            aborted(6),
        ];
        assert_eq!(kept(&def, &inside), (vec![1, 2, 3], vec!["B".into()]));
        // Between A and B: nothing runs again, B runs for the first time.
        let between = [
            started.clone(),
            entered(2, 1, "A"),
            exited(3, 2, "A"),
            aborted(4),
        ];
        assert_eq!(kept(&def, &between), (vec![1, 2, 3], vec![]));
        // Before any state: it starts over.
        let before = [started.clone(), aborted(2)];
        assert_eq!(kept(&def, &before), (vec![1], vec![]));

        // A redriven history replays the first attempt up to B, then the second attempt.
        let mut history = inside.to_vec();
        history.push(redriven_event(6, 1, "2026-11-28T10:00:01.000Z".into()));
        history.push(entered(8, 3, "B"));
        let replay = replay(&def, history);
        let ids: Vec<u64> = replay.events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3, 8]);
        assert_eq!((replay.next_id, replay.redrives), (9, 1));
    }

    fn fan_out() -> Definition {
        Definition::parse(
            r#"{"StartAt":"P","States":{
              "P":{"Type":"Parallel","Next":"F","Catch":[{"ErrorEquals":["States.ALL"],"Next":"F"}],"Branches":[
                {"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}},
                {"StartAt":"B","States":{"B":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","End":true}}},
                {"StartAt":"C","States":{"C":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage","End":true}}}]},
              "F":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","End":true}}}"#,
        )
        .expect("definition")
    }

    #[test]
    fn inside_a_parallel_only_the_branches_that_did_not_finish_run_again() {
        let def = fan_out();
        // A succeeded, B failed, C was cut short by B's failure.
        let attempt = [
            plain(1, 0, "ExecutionStarted"),
            entered(2, 1, "P"),
            plain(3, 2, "ParallelStateStarted"),
            entered(4, 3, "A"),
            entered(5, 3, "B"),
            entered(6, 3, "C"),
            exited(7, 4, "A"),
            plain(8, 5, "TaskScheduled"),
            plain(9, 6, "TaskScheduled"),
            plain(10, 8, "TaskFailed"),
            plain(11, 9, "TaskStateAborted"),
            plain(12, 10, "ParallelStateFailed"),
            plain(13, 12, "ExecutionFailed"),
        ];
        assert_eq!(
            kept(&def, &attempt),
            (
                vec![1, 2, 3, 4, 7],
                vec!["P".into(), "B".into(), "C".into()]
            )
        );
        assert_eq!(refusal(ExecutionStatus::Failed, &def, &attempt), None);

        // The Parallel's Catch took B's failure and F failed after it: only F runs again.
        let caught = [
            plain(1, 0, "ExecutionStarted"),
            entered(2, 1, "P"),
            plain(3, 2, "ParallelStateStarted"),
            entered(4, 3, "A"),
            entered(5, 3, "B"),
            exited(6, 4, "A"),
            plain(7, 5, "TaskFailed"),
            plain(8, 7, "ParallelStateFailed"),
            entered(9, 8, "F"),
            plain(10, 9, "TaskFailed"),
            plain(11, 10, "ExecutionFailed"),
        ];
        assert_eq!(
            kept(&def, &caught),
            (vec![1, 2, 3, 4, 5, 6, 7, 8], vec!["F".into()])
        );
    }

    #[test]
    fn a_failure_inside_a_distributed_map_is_refused() {
        let def = Definition::parse(
            r#"{"StartAt":"M","States":{"M":{"Type":"Map","End":true,
              "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},
                "StartAt":"I","States":{"I":{"Type":"Pass","End":true}}}}}}"#,
        )
        .expect("definition");
        let attempt = [
            plain(1, 0, "ExecutionStarted"),
            entered(2, 1, "M"),
            plain(3, 2, "MapRunFailed"),
            plain(4, 3, "ExecutionFailed"),
        ];
        let why = refusal(ExecutionStatus::Failed, &def, &attempt).expect("refused");
        assert!(why.contains("distributed Map state 'M'"), "{why}");
        assert_eq!(
            refusal(ExecutionStatus::Succeeded, &def, &attempt).as_deref(),
            Some("it is SUCCEEDED")
        );
    }
}
