//! The engine: starts named executions, runs states, applies paths/retries/catches,
//! and records AWS-shaped history through the `ExecutionStore`.

use crate::choice;
use crate::definition::{
    Definition, Dyn, ErrSrc, IoPath, ResultPathSpec, State, StateKind, WaitSpec,
};
use crate::engine::{ExecutionOutcome, Inner, lock};
use crate::error::{Failure, StoreError};
use crate::history::{EventDetails, HistoryEvent, entered, error_details, exited, not_truncated};
use crate::intrinsics;
use crate::map::as_integer;
use crate::path::to_json_string;
use crate::payload::{Ref, Scope, Vars, eval_template};
use crate::retry::{self, Catcher};
use crate::store::{ExecutionRecord, ExecutionStatus};
use crate::timestamp;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
pub(crate) struct Recorder {
    /// Events emitted by this run, including ones matched to the replayed history.
    pub(crate) count: usize,
    /// Id for the next new event.
    pub(crate) next_id: u64,
    /// Id of the last emitted event.
    pub(crate) last_id: u64,
    /// Last rendered timestamp: many events share a millisecond, formatting is not free.
    pub(crate) ts_cache: (i64, String),
    /// History recorded before a restart. Re-driven events are matched to it by
    /// (previousEventId, type, state name / iteration index), not by position, so
    /// branches and iterations that interleaved differently still find their events.
    pub(crate) replay: Vec<HistoryEvent>,
    pub(crate) replay_index: HashMap<(u64, String), Vec<usize>>,
    pub(crate) consumed: Vec<bool>,
    pub(crate) store_err: Option<StoreError>,
}

impl Recorder {
    /// `next_id`: the id of the first new event (past every recorded one, replayed or not).
    pub(crate) fn new(
        replay: Vec<HistoryEvent>,
        next_id: u64,
        store_err: Option<StoreError>,
    ) -> Recorder {
        let mut replay_index: HashMap<(u64, String), Vec<usize>> = HashMap::new();
        for (i, e) in replay.iter().enumerate() {
            replay_index
                .entry((e.previous_event_id, e.event_type.clone()))
                .or_default()
                .push(i);
        }
        Recorder {
            count: 0,
            next_id,
            last_id: 0,
            ts_cache: (i64::MIN, String::new()),
            consumed: vec![false; replay.len()],
            replay,
            replay_index,
            store_err,
        }
    }

    /// The recorded event this re-driven event stands for, if any.
    pub(crate) fn take_replayed(
        &mut self,
        prev: u64,
        ty: &str,
        details: &EventDetails,
    ) -> Option<usize> {
        if self.replay.is_empty() {
            return None;
        }
        let want = discriminator(details);
        let candidates = self.replay_index.get(&(prev, ty.to_string()))?;
        let found = candidates.iter().copied().find(|&i| {
            !self.consumed[i] && (want.is_none() || discriminator(&self.replay[i].details) == want)
        })?;
        self.consumed[found] = true;
        Some(found)
    }
}

/// What tells apart sibling events with the same predecessor and type.
fn discriminator(d: &EventDetails) -> Option<String> {
    if let Some(name) = d.entered_state() {
        return Some(name.to_string());
    }
    match d {
        EventDetails::MapIteration { index, .. } => Some(index.to_string()),
        EventDetails::Other { key, value } if key.starts_with("mapIteration") => {
            value.get("index").map(|i| i.to_string())
        }
        _ => None,
    }
}

/// One chain of events (the execution, a Parallel branch, a Map iteration).
pub(crate) struct Thread {
    pub(crate) prev: u64,
    /// Inside a Parallel branch: an uncaught Task failure records TaskStateAborted.
    pub(crate) in_parallel: bool,
    /// Distributed Map iterations run as child executions: not in this history.
    pub(crate) silent: bool,
}

pub(crate) struct Exec {
    pub(crate) inner: Arc<Inner>,
    pub(crate) arn: String,
    pub(crate) name: String,
    pub(crate) sm_arn: String,
    pub(crate) sm_name: String,
    pub(crate) input: Value,
    pub(crate) start_str: String,
    /// `$$.Execution.RedriveCount`.
    pub(crate) redrive_count: u64,
    pub(crate) rec: Mutex<Recorder>,
    /// Error and cause given to `stop_execution`.
    pub(crate) stop: Mutex<Option<(Option<String>, Option<String>)>>,
}

pub(crate) enum Step {
    Next(String, Value),
    End(Value),
}

/// Per-visit information for the context object.
pub(crate) struct Visit<'a> {
    pub(crate) state: &'a str,
    pub(crate) entered_ms: i64,
    pub(crate) entered_id: u64,
    pub(crate) item: Option<(usize, &'a Value)>,
    pub(crate) token: Option<&'a str>,
    pub(crate) retry_count: Option<u32>,
}

pub(crate) type Res<T> = Result<T, Failure>;

impl Exec {
    pub(crate) fn emit_raw(
        &self,
        th: &mut Thread,
        ty: &str,
        details: impl Into<EventDetails>,
        advance: bool,
    ) -> (u64, i64) {
        if th.silent {
            return (0, self.inner.clock.now_millis());
        }
        let details = details.into();
        let mut r = lock(&self.rec);
        let replayed = r
            .take_replayed(th.prev, ty, &details)
            .and_then(|i| r.replay.get(i))
            .map(|e| (e.id, e.timestamp.clone()));
        let fresh = replayed.is_none();
        let id = match &replayed {
            Some((id, _)) => *id,
            None => {
                let id = r.next_id;
                r.next_id += 1;
                id
            }
        };
        let (ts_str, ms) = match replayed {
            Some((_, ts)) => {
                let ms = timestamp::parse(&ts)
                    .map(|n| (n / 1_000_000) as i64)
                    .unwrap_or_else(|| self.inner.clock.now_millis());
                (ts, ms)
            }
            None => {
                let ms = self.inner.clock.now_millis();
                if r.ts_cache.0 != ms {
                    r.ts_cache = (ms, timestamp::format_millis(ms));
                }
                (r.ts_cache.1.clone(), ms)
            }
        };
        let ev = HistoryEvent {
            id,
            previous_event_id: th.prev,
            timestamp: ts_str,
            event_type: ty.to_string(),
            details,
        };
        // Matched events are already in the store.
        if fresh && let Err(e) = self.inner.store.append_event(&self.arn, ev) {
            r.store_err.get_or_insert(e);
        }
        r.count += 1;
        r.last_id = id;
        if advance {
            th.prev = id;
        }
        (id, ms)
    }

    pub(crate) fn emit(&self, th: &mut Thread, ty: &str, details: impl Into<EventDetails>) -> u64 {
        self.emit_raw(th, ty, details, true).0
    }

    /// Id of the last event emitted (by any thread).
    pub(crate) fn last_id(&self) -> u64 {
        lock(&self.rec).last_id
    }

    /// Events emitted so far by this run.
    pub(crate) fn event_count(&self) -> usize {
        lock(&self.rec).count
    }

    /// A recorded completion (from before a restart) of the task started at `started_id`.
    pub(crate) fn replayed_result(&self, started_id: u64) -> Option<HistoryEvent> {
        // Only the recorded prefix can hold it; skip the scan in the common case.
        let r = lock(&self.rec);
        r.replay
            .iter()
            .find(|e| {
                e.previous_event_id == started_id
                    && (e.event_type.ends_with("Succeeded")
                        || e.event_type.ends_with("Failed")
                        || e.event_type.ends_with("TimedOut"))
            })
            .cloned()
    }

    pub(crate) fn context(&self, v: &Visit) -> Value {
        let mut ctx = json!({
            "Execution": {
                "Id": self.arn,
                "Input": self.input,
                "StartTime": self.start_str,
                "Name": self.name,
                "RoleArn": self.inner.config.role_arn,
                "RedriveCount": self.redrive_count,
            },
            "StateMachine": {"Id": self.sm_arn, "Name": self.sm_name},
            "State": {"Name": v.state, "EnteredTime": timestamp::format_millis(v.entered_ms)},
        });
        if let Some(rc) = v.retry_count {
            ctx["State"]["RetryCount"] = json!(rc);
        }
        if let Some(t) = v.token {
            ctx["Task"] = json!({"Token": t});
        }
        if let Some((i, val)) = v.item {
            ctx["Map"] = json!({"Item": {"Index": i, "Value": val}});
        }
        ctx
    }

    /// Records the end of a stopped execution.
    pub(crate) fn aborted(&self) -> ExecutionOutcome {
        let (error, cause) = lock(&self.stop).take().unwrap_or((None, None));
        // AWS chains ExecutionAborted to 0.
        let mut th = Thread {
            prev: 0,
            in_parallel: false,
            silent: false,
        };
        self.emit(
            &mut th,
            "ExecutionAborted",
            Some(error_details(
                "executionAbortedEventDetails",
                error.as_deref(),
                cause.as_deref(),
                &[],
            )),
        );
        // The record was stored at start; update it there.
        if let Ok(Some(mut record)) = self.inner.store.get_execution(&self.arn) {
            record.status = ExecutionStatus::Aborted;
            record.stop_date = Some(self.inner.clock.now_millis());
            record.error = error.clone();
            record.cause = cause.clone();
            let _ = self.inner.store.put_execution(&record);
        }
        ExecutionOutcome {
            execution_arn: self.arn.clone(),
            status: ExecutionStatus::Aborted,
            output: None,
            error,
            cause,
        }
    }

    pub(crate) async fn run(
        self: Arc<Self>,
        def: Arc<Definition>,
        mut record: ExecutionRecord,
    ) -> ExecutionOutcome {
        let mut top = Thread {
            prev: 0,
            in_parallel: false,
            silent: false,
        };
        let too_deep = exceeds_depth(&self.input, MAX_DEPTH);
        let input_text = if too_deep {
            "null".to_string()
        } else {
            to_json_string(&self.input)
        };
        self.emit(
            &mut top,
            "ExecutionStarted",
            Some((
                "executionStartedEventDetails".into(),
                json!({"input": input_text, "inputDetails": not_truncated(), "roleArn": self.inner.config.role_arn}),
            )),
        );
        // AWS chains the first state to 0, not to ExecutionStarted.
        top.prev = 0;
        let body = Box::pin(async {
            if too_deep {
                return Err(Failure::new(
                    "States.Runtime",
                    format!("The execution input is nested deeper than {MAX_DEPTH} levels."),
                ));
            }
            self.run_machine(&def, self.input.clone(), Vars::default(), &mut top)
                .await
        });
        let result = match def.timeout_seconds {
            Some(t) => {
                let sleep = self.inner.clock.sleep(t.saturating_mul(1000));
                match futures_util::future::select(body, sleep).await {
                    futures_util::future::Either::Left((r, _)) => r.map_err(|f| (f, false)),
                    futures_util::future::Either::Right(_) => {
                        Err((Failure::new("States.Timeout", ""), true))
                    }
                }
            }
            None => body.await.map_err(|f| (f, false)),
        };
        let (status, output, error, cause) = match result {
            Ok(out) => {
                self.emit(
                    &mut top,
                    "ExecutionSucceeded",
                    Some((
                        "executionSucceededEventDetails".into(),
                        json!({"output": to_json_string(&out), "outputDetails": not_truncated()}),
                    )),
                );
                (ExecutionStatus::Succeeded, Some(out), None, None)
            }
            Err((f, timed_out)) => {
                top.prev = self.last_id();
                let (ty, key, status) = if timed_out {
                    (
                        "ExecutionTimedOut",
                        "executionTimedOutEventDetails",
                        ExecutionStatus::TimedOut,
                    )
                } else {
                    (
                        "ExecutionFailed",
                        "executionFailedEventDetails",
                        ExecutionStatus::Failed,
                    )
                };
                self.emit(
                    &mut top,
                    ty,
                    Some(error_details(
                        key,
                        Some(f.error.as_str()).filter(|e| !e.is_empty()),
                        f.cause.as_deref(),
                        &[],
                    )),
                );
                (
                    status,
                    None,
                    Some(f.error).filter(|e| !e.is_empty()),
                    f.cause,
                )
            }
        };
        record.status = status;
        record.stop_date = Some(self.inner.clock.now_millis());
        record.output = output.clone();
        record.error = error.clone();
        let cause = cause.filter(|c| !c.is_empty());
        record.cause = cause.clone();
        let store_err = lock(&self.rec).store_err.take();
        let put_err = self.inner.store.put_execution(&record).err();
        let (error, cause) = match store_err.or(put_err) {
            // The run itself ended, but it could not be made durable: say so.
            Some(e) if status == ExecutionStatus::Succeeded => {
                (Some("States.Runtime".into()), Some(e.to_string()))
            }
            _ => (error, cause),
        };
        ExecutionOutcome {
            execution_arn: self.arn.clone(),
            status,
            output,
            error,
            cause,
        }
    }

    pub(crate) fn run_machine<'a>(
        &'a self,
        def: &'a Definition,
        input: Value,
        mut vars: Vars,
        th: &'a mut Thread,
    ) -> BoxFuture<'a, Res<Value>> {
        Box::pin(async move {
            let mut state = def.start().ok_or_else(|| {
                Failure::new(
                    "States.Runtime",
                    format!("StartAt state '{}' not found", def.start_at),
                )
            })?;
            let mut input = input;
            loop {
                // AWS fails executions past 25,000 events; this also ends endless loops.
                if self.event_count() >= self.inner.config.max_history_events {
                    return Err(Failure::new(
                        "States.Runtime",
                        format!(
                            "The execution reached the maximum number of history events ({}).",
                            self.inner.config.max_history_events
                        ),
                    ));
                }
                match self.run_state(state, input, &mut vars, th).await? {
                    Step::End(out) => return Ok(out),
                    Step::Next(n, out) => {
                        state = def.state(&n).ok_or_else(|| {
                            Failure::new("States.Runtime", format!("Next state '{n}' not found"))
                        })?;
                        input = out;
                    }
                }
            }
        })
    }

    pub(crate) fn size_check_text(&self, state: &str, text: &str) -> Res<()> {
        if text.len() > self.inner.config.max_payload_bytes {
            return Err(Failure::new(
                "States.DataLimitExceeded",
                format!(
                    "The state/task '{state}' returned a result with a size exceeding the maximum number of bytes service limit."
                ),
            ));
        }
        Ok(())
    }

    pub(crate) async fn run_state(
        &self,
        st: &State,
        raw: Value,
        vars: &mut Vars,
        th: &mut Thread,
    ) -> Res<Step> {
        let ty = st.kind.type_name();
        let (entered_id, entered_ms) = self.emit_raw(
            th,
            &format!("{ty}StateEntered"),
            entered(&st.name, &raw),
            true,
        );
        let visit = Visit {
            state: &st.name,
            entered_ms,
            entered_id,
            item: None,
            token: None,
            retry_count: None,
        };
        let rt = |msg: String| Failure::runtime_in_state(&st.name, entered_id, msg);
        let mut assigned: Option<Map<String, Value>> = None;

        let step = match &st.kind {
            StateKind::Pass { result } => {
                let res = {
                    let eff = self.input_path(st, &raw, vars, &visit)?;
                    match (&st.parameters, result) {
                        (_, Some(r)) => r.clone(),
                        (Some(p), None) => self.template(p, &eff, vars, &visit)?,
                        (None, None) => eff.into_owned(),
                    }
                };
                assigned = self.assign(st.assign.as_ref(), &res, vars, &visit)?;
                let out = self.result_path_owned(&st.result_path, raw, res)?;
                let out = self.output_path(st, out, vars, &visit)?;
                self.transition(st, out)
            }
            StateKind::Succeed => {
                let eff = self.io_path(&st.input_path, raw, vars, &visit)?;
                Step::End(self.output_path(st, eff, vars, &visit)?)
            }
            StateKind::Fail { error, cause } => {
                let err = self
                    .err_src(error.as_ref(), "ErrorPath", &raw, vars, &visit)
                    .map_err(|f| {
                        if f.error == "States.Runtime" {
                            rt(f.cause.unwrap_or_default())
                        } else {
                            f
                        }
                    })?;
                let cause = self
                    .err_src(cause.as_ref(), "CausePath", &raw, vars, &visit)
                    .map_err(|f| {
                        if f.error == "States.Runtime" {
                            rt(f.cause.unwrap_or_default())
                        } else {
                            f
                        }
                    })?;
                return Err(Failure::bare(err.unwrap_or_default(), cause));
            }
            StateKind::Choice { choices, default } => {
                let eff = self.io_path(&st.input_path, raw, vars, &visit)?;
                let ctxf = || self.context(&visit);
                let scope = Scope::lazy(&eff, &ctxf, vars);
                let mut chosen = None;
                for r in choices {
                    if choice::eval(&r.cond, &scope).map_err(|f| rt(f.cause.unwrap_or_default()))? {
                        chosen = Some((r.next.clone(), r.assign.as_ref()));
                        break;
                    }
                }
                drop(scope);
                let (next, rule_assign) = match chosen {
                    Some(c) => c,
                    None => match default {
                        Some(d) => (d.clone(), None),
                        None => {
                            return Err(Failure::new(
                                "States.NoChoiceMatched",
                                format!(
                                    "An error occurred while executing the state '{}' (entered at the event id #{entered_id}). No Matches!",
                                    st.name
                                ),
                            ));
                        }
                    },
                };
                // State-level Assign first, then the rule's (rule wins on conflicts).
                let mut a = self.assign(st.assign.as_ref(), &eff, vars, &visit)?;
                if let Some(ra) = self.assign(rule_assign, &eff, vars, &visit)? {
                    a.get_or_insert_with(Map::new).extend(ra);
                }
                assigned = a;
                let out = self.output_path(st, eff, vars, &visit)?;
                Step::Next(next, out)
            }
            StateKind::Wait(spec) => {
                let eff = self.io_path(&st.input_path, raw, vars, &visit)?;
                let delay_ms = self
                    .wait_delay(spec, &eff, vars, &visit, entered_ms)
                    .map_err(rt)?;
                // Measured from the (possibly recorded, when resumed) entry time, so a
                // re-driven Wait only sleeps what is left.
                let deadline =
                    entered_ms.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
                let left = deadline.saturating_sub(self.inner.clock.now_millis());
                if left > 0 {
                    self.inner.clock.sleep(left as u64).await;
                }
                assigned = self.assign(st.assign.as_ref(), &eff, vars, &visit)?;
                let out = self.output_path(st, eff, vars, &visit)?;
                self.transition(st, out)
            }
            StateKind::Task { .. } | StateKind::Parallel { .. } | StateKind::Map(_) => {
                // Boxed: keeps the future of the common (Pass/Choice) path small.
                match Box::pin(self.run_with_retry(st, &raw, vars, th, &visit)).await {
                    Ok((out, a)) => {
                        assigned = a;
                        self.transition(st, out)
                    }
                    Err(CaughtOr::Caught(next, out, a)) => {
                        assigned = a;
                        Step::Next(next, out)
                    }
                    Err(CaughtOr::Failed(f)) => {
                        if th.in_parallel
                            && matches!(st.kind, StateKind::Task { .. })
                            && f.error != "States.Runtime"
                        {
                            self.emit_raw(th, "TaskStateAborted", None, false);
                        }
                        return Err(f);
                    }
                }
            }
        };
        let out = match &step {
            Step::Next(_, o) | Step::End(o) => o,
        };
        // Depth first: serializing (and dropping) very deep values recurses.
        if exceeds_depth(out, MAX_DEPTH) {
            return Err(Failure::runtime_in_state(
                &st.name,
                entered_id,
                format!("The state output is nested deeper than {MAX_DEPTH} levels."),
            ));
        }
        let out_text = to_json_string(out);
        self.size_check_text(&st.name, &out_text)?;
        if let Some(a) = &assigned {
            for (k, v) in a {
                vars.values.insert(k.clone(), v.clone());
            }
        }
        let exit_ty = format!("{ty}StateExited");
        self.emit(th, &exit_ty, exited(&st.name, out_text, assigned.as_ref()));
        Ok(step)
    }

    pub(crate) fn transition(&self, st: &State, out: Value) -> Step {
        match &st.next {
            Some(n) => Step::Next(n.clone(), out),
            None => Step::End(out),
        }
    }

    pub(crate) fn scope_eval<T>(
        &self,
        input: &Value,
        vars: &Vars,
        v: &Visit,
        f: impl FnOnce(&Scope) -> T,
    ) -> T {
        let ctxf = || self.context(v);
        let scope = Scope::lazy(input, &ctxf, vars);
        f(&scope)
    }

    pub(crate) fn template(
        &self,
        tpl: &Value,
        input: &Value,
        vars: &Vars,
        v: &Visit,
    ) -> Res<Value> {
        self.scope_eval(input, vars, v, |s| eval_template(tpl, s))
            .map_err(|f| self.in_state(f, v))
    }

    /// Runtime failures carry AWS's "An error occurred while executing the state" prefix.
    pub(crate) fn in_state(&self, f: Failure, v: &Visit) -> Failure {
        if f.error == "States.Runtime" {
            Failure::runtime_in_state(v.state, v.entered_id, f.cause.unwrap_or_default())
        } else {
            f
        }
    }

    pub(crate) fn resolve_ref(
        &self,
        r: &Ref,
        input: &Value,
        vars: &Vars,
        v: &Visit,
    ) -> Option<Value> {
        self.scope_eval(input, vars, v, |s| r.resolve(s))
    }

    pub(crate) fn io_path(&self, p: &IoPath, input: Value, vars: &Vars, v: &Visit) -> Res<Value> {
        match p {
            IoPath::Default => Ok(input),
            _ => self.io_path_ref(p, &input, vars, v).map(Cow::into_owned),
        }
    }

    /// [`Exec::io_path`] on an input the caller keeps: `$` borrows it instead of copying.
    pub(crate) fn io_path_ref<'r>(
        &self,
        p: &IoPath,
        input: &'r Value,
        vars: &Vars,
        v: &Visit,
    ) -> Res<Cow<'r, Value>> {
        match p {
            IoPath::Default => Ok(Cow::Borrowed(input)),
            IoPath::Null => Ok(Cow::Owned(Value::Object(Map::new()))),
            IoPath::Ref(r) => self
                .resolve_ref(r, input, vars, v)
                .map(Cow::Owned)
                .ok_or_else(|| self.invalid_path(r, input, v)),
        }
    }

    pub(crate) fn invalid_path(&self, r: &Ref, input: &Value, v: &Visit) -> Failure {
        let reason = match r {
            Ref::Path(p) if p.root() == crate::path::Root::Context => {
                p.not_found_reason(&self.context(v))
            }
            Ref::Path(p) => p.not_found_reason(input),
            Ref::Var(..) => format!("No results for path: {}", r.text()),
        };
        Failure::runtime_in_state(
            v.state,
            v.entered_id,
            format!("Invalid path '{}' : {reason}", r.text()),
        )
    }

    /// The effective input of a state whose raw input is still needed (for ResultPath).
    pub(crate) fn input_path<'r>(
        &self,
        st: &State,
        raw: &'r Value,
        vars: &Vars,
        v: &Visit,
    ) -> Res<Cow<'r, Value>> {
        self.io_path_ref(&st.input_path, raw, vars, v)
    }

    pub(crate) fn output_path(&self, st: &State, out: Value, vars: &Vars, v: &Visit) -> Res<Value> {
        self.io_path(&st.output_path, out, vars, v)
    }

    /// ResultPath on a raw input the caller still needs (a state that may be retried or
    /// caught): copied only where the result is merged into it.
    pub(crate) fn result_path(
        &self,
        rp: &ResultPathSpec,
        raw: &Value,
        result: Value,
    ) -> Res<Value> {
        match rp {
            ResultPathSpec::Default => Ok(result),
            ResultPathSpec::Path(p) if p.is_root() => Ok(result),
            _ => self.result_path_owned(rp, raw.clone(), result),
        }
    }

    /// ResultPath on a raw input nobody needs afterwards: the result is merged in place.
    pub(crate) fn result_path_owned(
        &self,
        rp: &ResultPathSpec,
        mut raw: Value,
        result: Value,
    ) -> Res<Value> {
        match rp {
            ResultPathSpec::Default => Ok(result),
            ResultPathSpec::Null => Ok(raw),
            ResultPathSpec::Path(p) if p.is_root() => Ok(result),
            ResultPathSpec::Path(p) => match p.set(&mut raw, result) {
                Ok(()) => Ok(raw),
                // `set` left `raw` as it was.
                Err(()) => Err(Failure::new(
                    "States.ResultPathMatchFailure",
                    format!(
                        "Unable to apply ResultPath \"{}\" to input \"{}\"",
                        p.text(),
                        to_json_string(&raw)
                    ),
                )),
            },
        }
    }

    pub(crate) fn assign(
        &self,
        assign: Option<&Value>,
        input: &Value,
        vars: &Vars,
        v: &Visit,
    ) -> Res<Option<Map<String, Value>>> {
        let Some(a) = assign else {
            return Ok(None);
        };
        match self.template(a, input, vars, v)? {
            Value::Object(m) => Ok(Some(m)),
            _ => Ok(Some(Map::new())),
        }
    }

    pub(crate) fn err_src(
        &self,
        src: Option<&ErrSrc>,
        field: &str,
        raw: &Value,
        vars: &Vars,
        v: &Visit,
    ) -> Res<Option<String>> {
        let val = match src {
            None => return Ok(None),
            Some(ErrSrc::Literal(s)) => return Ok(Some(s.clone())),
            Some(ErrSrc::Path(r)) => self.resolve_ref(r, raw, vars, v).ok_or_else(|| {
                Failure::new(
                    "States.Runtime",
                    format!(
                        "The JSONPath '{}' specified for the field '{field}' could not be found in the input '{}'",
                        r.text(),
                        to_json_string(raw)
                    ),
                )
            })?,
            Some(ErrSrc::Call(c)) => self.scope_eval(raw, vars, v, |s| intrinsics::eval(c, s))?,
        };
        Ok(Some(match val {
            Value::String(s) => s,
            other => to_json_string(&other),
        }))
    }

    pub(crate) fn wait_delay(
        &self,
        spec: &WaitSpec,
        eff: &Value,
        vars: &Vars,
        v: &Visit,
        entered_ms: i64,
    ) -> Result<u64, String> {
        const MAX_DELAY_MS: i128 = i32::MAX as i128 * 1000;
        let until = |ns: i128| -> Result<u64, String> {
            let delay = ns / 1_000_000 - i128::from(entered_ms);
            if delay > MAX_DELAY_MS {
                return Err("Wait state delay is too long.".into());
            }
            Ok(u64::try_from(delay.max(0)).unwrap_or(0))
        };
        match spec {
            WaitSpec::Seconds(s) => Ok(s.saturating_mul(1000)),
            WaitSpec::Timestamp(t) => until(timestamp::parse(t).ok_or("invalid Timestamp")?),
            WaitSpec::SecondsPath(r) => {
                let val = self.resolve_ref(r, eff, vars, v).ok_or_else(|| {
                    format!(
                        "The SecondsPath parameter does not reference an input value: {}",
                        r.text()
                    )
                })?;
                match val.as_i64() {
                    Some(n) if n < 0 => Err(format!(
                        "The SecondsPath parameter references a negative value: {} == {n}",
                        r.text()
                    )),
                    Some(n) => Ok((n as u64).saturating_mul(1000)),
                    None => Err(format!(
                        "The SecondsPath parameter cannot be parsed as a long value: {} == {}",
                        r.text(),
                        match &val {
                            Value::String(s) => s.clone(),
                            o => to_json_string(o),
                        }
                    )),
                }
            }
            WaitSpec::TimestampPath(r) => {
                let val = self.resolve_ref(r, eff, vars, v).ok_or_else(|| {
                    format!(
                        "The TimestampPath parameter does not reference an input value: {}",
                        r.text()
                    )
                })?;
                let shown = match &val {
                    Value::String(s) => s.clone(),
                    o => to_json_string(o),
                };
                let ns = val.as_str().and_then(timestamp::parse).ok_or_else(|| {
                    format!(
                        "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {shown}",
                        r.text()
                    )
                })?;
                until(ns)
            }
        }
    }

    pub(crate) fn dyn_num(
        &self,
        d: &Dyn<u64>,
        field: &str,
        eff: &Value,
        vars: &Vars,
        v: &Visit,
    ) -> Res<u64> {
        match d {
            Dyn::Static(n) => Ok(*n),
            Dyn::Path(r) => {
                let val = self
                    .resolve_ref(r, eff, vars, v)
                    .ok_or_else(|| self.invalid_path(r, eff, v))?;
                as_integer(&val).and_then(|n| u64::try_from(n).ok()).ok_or_else(|| {
                    Failure::runtime_in_state(
                        v.state,
                        v.entered_id,
                        format!(
                            "The {field} field refers to value \"{}\" which is not a valid integer: {}",
                            match &val {
                                Value::String(s) => s.clone(),
                                o => to_json_string(o),
                            },
                            r.text()
                        ),
                    )
                })
            }
        }
    }

    /// Runs Task/Parallel/Map with Retry and Catch; returns the state output.
    pub(crate) async fn run_with_retry(
        &self,
        st: &State,
        raw: &Value,
        vars: &Vars,
        th: &mut Thread,
        visit: &Visit<'_>,
    ) -> Result<(Value, Option<Map<String, Value>>), CaughtOr> {
        let mut counts = vec![0u32; st.retry.len()];
        let mut attempt = 0u32;
        let failure = loop {
            let before = self.event_count();
            let r = self.attempt(st, raw, vars, th, visit, attempt).await;
            let started = self.event_count() > before;
            let (result, f) = match r {
                Ok(res) => match self.finish(st, raw, res, vars, visit) {
                    Ok(done) => return Ok(done),
                    Err(f) => (None::<()>, f),
                },
                Err(f) => (None, f),
            };
            let _ = result;
            // The first retrier whose ErrorEquals matches decides; exhausted means no retry.
            let retrier = st
                .retry
                .iter()
                .enumerate()
                .find(|(_, r)| retry::matches(&r.error_equals, &f.error));
            if let Some((i, r)) = retrier
                && counts[i] < r.max_attempts
            {
                {
                    let delay = r.delay_ms(counts[i]);
                    counts[i] += 1;
                    attempt += 1;
                    if delay > 0 {
                        self.inner.clock.sleep(delay).await;
                    }
                    continue;
                }
            }
            if started && !th.silent && f.error != "States.Runtime" {
                match st.kind {
                    StateKind::Parallel { .. } => {
                        self.emit(th, "ParallelStateFailed", None);
                    }
                    StateKind::Map(_) => {
                        self.emit(th, "MapStateFailed", None);
                    }
                    _ => {}
                }
            }
            break f;
        };
        match st
            .catch
            .iter()
            .find(|c| retry::matches(&c.error_equals, &failure.error))
        {
            Some(c) => match self.caught(st, raw, c, failure, vars, visit) {
                Ok(c) => Err(c),
                Err(f) => Err(CaughtOr::Failed(f)),
            },
            None => Err(CaughtOr::Failed(failure)),
        }
    }

    pub(crate) fn caught(
        &self,
        _st: &State,
        raw: &Value,
        c: &Catcher,
        f: Failure,
        vars: &Vars,
        v: &Visit,
    ) -> Result<CaughtOr, Failure> {
        // AWS always has both keys; an absent error or cause is null.
        let mut err_out = Map::new();
        err_out.insert(
            "Error".into(),
            if f.error.is_empty() {
                Value::Null
            } else {
                json!(f.error)
            },
        );
        err_out.insert("Cause".into(), json!(f.cause));
        let err_out = Value::Object(err_out);
        let assigned = self.assign(c.assign.as_ref(), &err_out, vars, v)?;
        let out = self.result_path(&c.result_path, raw, err_out)?;
        Ok(CaughtOr::Caught(c.next.clone(), out, assigned))
    }

    /// ResultSelector → Assign → ResultPath → OutputPath on a successful raw result.
    pub(crate) fn finish(
        &self,
        st: &State,
        raw: &Value,
        res: Value,
        vars: &Vars,
        v: &Visit,
    ) -> Res<(Value, Option<Map<String, Value>>)> {
        let res = match &st.result_selector {
            Some(sel) => self.template(sel, &res, vars, v)?,
            None => res,
        };
        let assigned = self.assign(st.assign.as_ref(), &res, vars, v)?;
        let out = self.result_path(&st.result_path, raw, res)?;
        let out = self.output_path(st, out, vars, v)?;
        Ok((out, assigned))
    }

    pub(crate) async fn attempt(
        &self,
        st: &State,
        raw: &Value,
        vars: &Vars,
        th: &mut Thread,
        v: &Visit<'_>,
        attempt: u32,
    ) -> Res<Value> {
        let eff = self.input_path(st, raw, vars, v)?;
        match &st.kind {
            StateKind::Task {
                resource,
                timeout,
                heartbeat,
                ..
            } => {
                let retry_visit = Visit {
                    state: v.state,
                    entered_ms: v.entered_ms,
                    entered_id: v.entered_id,
                    item: None,
                    token: None,
                    retry_count: Some(attempt),
                };
                self.task(
                    st,
                    resource,
                    timeout.as_ref(),
                    heartbeat.as_ref(),
                    &eff,
                    vars,
                    th,
                    &retry_visit,
                    attempt,
                )
                .await
            }
            StateKind::Parallel { branches } => {
                let eff = match &st.parameters {
                    Some(p) => self.template(p, &eff, vars, v)?,
                    None => eff.into_owned(),
                };
                self.emit(th, "ParallelStateStarted", None);
                let start = th.prev;
                let futs = branches.iter().map(|b| {
                    let input = eff.clone();
                    let bvars = vars.clone();
                    async move {
                        let mut bth = Thread {
                            prev: start,
                            in_parallel: true,
                            silent: false,
                        };
                        match self.run_machine(b, input, bvars, &mut bth).await {
                            Ok(out) => Ok((out, bth.prev)),
                            Err(f) => Err((f, bth.prev)),
                        }
                    }
                });
                match futures_util::future::try_join_all(futs).await {
                    Ok(results) => {
                        // The join follows the last event of the branch that finished last
                        // (AWS's previousEventId). Taken from the branches' own last
                        // events, not from whatever the execution recorded last: a nested
                        // Parallel must not join under a sibling branch's events, and a
                        // replay (which runs the branches in another order) must find
                        // the same join.
                        th.prev = results.iter().map(|(_, last)| *last).max().unwrap_or(start);
                        self.emit_raw(th, "ParallelStateSucceeded", None, false);
                        Ok(Value::Array(
                            results.into_iter().map(|(out, _)| out).collect(),
                        ))
                    }
                    Err((f, last)) => {
                        // ParallelStateFailed comes only once retries are exhausted.
                        th.prev = last;
                        Err(f)
                    }
                }
            }
            StateKind::Map(m) => self.map(st, m, eff.into_owned(), vars, th, v).await,
            _ => Ok(eff.into_owned()),
        }
    }
}

/// Deepest JSON nesting the engine passes between states (Jackson's default limit).
pub(crate) const MAX_DEPTH: usize = 1000;

/// Iterative depth check (no recursion on user-shaped data).
pub(crate) fn exceeds_depth(v: &Value, max: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        if d > max {
            return true;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    false
}

pub(crate) enum CaughtOr {
    Caught(String, Value, Option<Map<String, Value>>),
    Failed(Failure),
}

impl From<Failure> for CaughtOr {
    fn from(f: Failure) -> Self {
        CaughtOr::Failed(f)
    }
}
