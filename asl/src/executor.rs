//! The engine: starts named executions, runs states, applies paths/retries/catches,
//! and records AWS-shaped history through the `ExecutionStore`.

use crate::choice;
use crate::clock::Clock;
use crate::definition::{
    Definition, Dyn, ErrSrc, IoPath, MapMode, ResultPathSpec, State, StateKind, WaitSpec,
};
use crate::error::{ExecutionAlreadyExists, Failure, StoreError, TaskTokenError, ValidationError};
use crate::history::{EventDetails, HistoryEvent, entered, error_details, exited, not_truncated};
use crate::intrinsics;
use crate::path::to_json_string;
use crate::payload::{Ref, Scope, Vars, eval_template};
use crate::resource::{ResourceKind, ResourceRegistry, TaskContext, classify};
use crate::retry::{self, Catcher};
use crate::store::{ExecutionRecord, ExecutionStatus, ExecutionStore, ListFilter};
use crate::timestamp;
use base64::Engine as _;
use futures_channel::oneshot;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Account-level settings used to build ARNs and history details.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub region: String,
    pub account_id: String,
    /// Shown as `roleArn` in ExecutionStarted and `$$.Execution.RoleArn`.
    pub role_arn: String,
    /// AWS's payload limit (256 KiB); larger state outputs fail with DataLimitExceeded.
    pub max_payload_bytes: usize,
    /// AWS's history limit (25,000 events); an execution reaching it fails.
    pub max_history_events: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            role_arn: "arn:aws:iam::123456789012:role/StepFunctionsExecutionRole".into(),
            max_payload_bytes: 262_144,
            max_history_events: 25_000,
        }
    }
}

/// STANDARD or EXPRESS (changes execution ARNs and the context object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExecutionType {
    #[default]
    Standard,
    Express,
}

/// A validated state machine with its name and ARN.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub name: String,
    pub arn: String,
    pub definition: Arc<Definition>,
    /// The definition text (kept so a restarted process can re-drive executions).
    pub definition_text: String,
    pub execution_type: ExecutionType,
}

impl StateMachine {
    /// The same machine as an EXPRESS workflow: execution ARNs are
    /// `...:express:{machine}:{name}:{uuid}`.
    pub fn express(mut self) -> StateMachine {
        self.execution_type = ExecutionType::Express;
        self
    }
}

/// How an execution ended (or that it is still running).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionOutcome {
    pub execution_arn: String,
    pub status: ExecutionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// Spawns a future on the embedder's runtime (e.g. `tokio::spawn`).
pub type Spawner = Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>;

/// A started execution. Cloneable; `wait` drives it (if no spawner runs it) and
/// returns its outcome.
#[derive(Clone)]
pub struct ExecutionHandle {
    pub execution_arn: String,
    fut: Shared<BoxFuture<'static, ExecutionOutcome>>,
}

impl std::fmt::Debug for ExecutionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionHandle")
            .field("execution_arn", &self.execution_arn)
            .finish()
    }
}

impl ExecutionHandle {
    /// Waits for (and, without a spawner, drives) the execution to its end.
    pub async fn wait(&self) -> ExecutionOutcome {
        self.fut.clone().await
    }

    /// Polls once: `Some` when the execution has ended. With a virtual clock and
    /// resources that answer immediately, one poll runs the whole execution.
    pub fn poll_now(&self) -> Option<ExecutionOutcome> {
        self.fut.clone().now_or_never()
    }
}

/// A running execution: its input (for idempotent starts), handle and stop switch.
struct Running {
    input: Value,
    handle: ExecutionHandle,
    abort: futures_util::future::AbortHandle,
    exec: Arc<Exec>,
}

/// A task waiting for `send_task_success/failure` (callback and `.sync` tasks).
struct PendingToken {
    done: oneshot::Sender<Result<Value, Failure>>,
    heartbeat: futures_channel::mpsc::UnboundedSender<()>,
}

struct Inner {
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    store: Arc<dyn ExecutionStore>,
    resources: ResourceRegistry,
    spawner: Option<Spawner>,
    running: Mutex<HashMap<String, Running>>,
    tokens: Mutex<HashMap<String, PendingToken>>,
}

/// The ASL engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Configures an `Engine`.
pub struct EngineBuilder {
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    store: Arc<dyn ExecutionStore>,
    resources: ResourceRegistry,
    spawner: Option<Spawner>,
}

impl EngineBuilder {
    pub fn config(mut self, c: EngineConfig) -> Self {
        self.config = c;
        self
    }
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }
    pub fn store(mut self, s: Arc<dyn ExecutionStore>) -> Self {
        self.store = s;
        self
    }
    pub fn resources(mut self, r: ResourceRegistry) -> Self {
        self.resources = r;
        self
    }
    /// Runs executions in the background as soon as they start.
    pub fn spawner(mut self, s: Spawner) -> Self {
        self.spawner = Some(s);
        self
    }
    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                config: self.config,
                clock: self.clock,
                store: self.store,
                resources: self.resources,
                spawner: self.spawner,
                running: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of our locks cannot corrupt these maps/vectors in a
    // way that matters more than stopping; keep going with the data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Defaults: `VirtualClock`, `InMemoryStore`, no resources, no spawner.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            config: EngineConfig::default(),
            clock: Arc::new(crate::clock::VirtualClock::new()),
            store: Arc::new(crate::store::InMemoryStore::new()),
            resources: ResourceRegistry::new(),
            spawner: None,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Arc<dyn ExecutionStore> {
        &self.inner.store
    }

    /// Parses `definition` and names it.
    pub fn state_machine(
        &self,
        name: &str,
        definition: &str,
    ) -> Result<StateMachine, Vec<ValidationError>> {
        let def = Definition::parse(definition)?;
        Ok(StateMachine {
            name: name.to_string(),
            arn: format!(
                "arn:aws:states:{}:{}:stateMachine:{name}",
                self.inner.config.region, self.inner.config.account_id
            ),
            definition: Arc::new(def),
            definition_text: definition.to_string(),
            execution_type: ExecutionType::Standard,
        })
    }

    /// Starts (or joins) the execution `name`. Same name and same input while it runs
    /// returns the running execution; otherwise a taken name is `ExecutionAlreadyExists`.
    pub fn start_execution(
        &self,
        sm: &StateMachine,
        name: &str,
        input: Value,
    ) -> Result<ExecutionHandle, ExecutionAlreadyExists> {
        let arn = match sm.execution_type {
            ExecutionType::Standard => format!(
                "arn:aws:states:{}:{}:execution:{}:{name}",
                self.inner.config.region, self.inner.config.account_id, sm.name
            ),
            ExecutionType::Express => format!(
                "arn:aws:states:{}:{}:express:{}:{name}:{}",
                self.inner.config.region,
                self.inner.config.account_id,
                sm.name,
                uuid::Uuid::new_v4()
            ),
        };
        let mut running = lock(&self.inner.running);
        if let Some(r) = running.get(&arn) {
            if r.input == input {
                return Ok(r.handle.clone());
            }
            return Err(ExecutionAlreadyExists { execution_arn: arn });
        }
        if matches!(self.inner.store.get_execution(&arn), Ok(Some(_))) {
            return Err(ExecutionAlreadyExists { execution_arn: arn });
        }
        let start = self.inner.clock.now_millis();
        let record = ExecutionRecord {
            execution_arn: arn.clone(),
            name: name.to_string(),
            state_machine_arn: sm.arn.clone(),
            state_machine_name: sm.name.clone(),
            definition: sm.definition_text.clone(),
            input: input.clone(),
            status: ExecutionStatus::Running,
            start_date: start,
            stop_date: None,
            output: None,
            error: None,
            cause: None,
        };
        let store_err = self.inner.store.put_execution(&record).err();
        let r = self.launch(record, sm.definition.clone(), Vec::new(), store_err, input);
        let h = r.handle.clone();
        running.insert(arn, r);
        Ok(h)
    }

    /// Re-drives an execution the store holds as RUNNING (after a restart): states are
    /// replayed from its input, Task results recorded in the history are reused, and
    /// tasks that had not finished are invoked again with the same invocation key.
    pub fn resume(&self, execution_arn: &str) -> Result<Option<ExecutionHandle>, StoreError> {
        let mut running = lock(&self.inner.running);
        if let Some(r) = running.get(execution_arn) {
            return Ok(Some(r.handle.clone()));
        }
        let Some(rec) = self.inner.store.get_execution(execution_arn)? else {
            return Ok(None);
        };
        if rec.status != ExecutionStatus::Running {
            return Ok(None);
        }
        let def = Definition::parse(&rec.definition)
            .map_err(|e| StoreError(format!("stored definition no longer parses: {e:?}")))?;
        let replay = self.inner.store.history(execution_arn)?;
        let input = rec.input.clone();
        let r = self.launch(rec, Arc::new(def), replay, None, input);
        let h = r.handle.clone();
        running.insert(execution_arn.to_string(), r);
        Ok(Some(h))
    }

    /// Resumes every RUNNING execution in the store.
    pub fn resume_all(&self) -> Result<Vec<ExecutionHandle>, StoreError> {
        let list = self.inner.store.list_executions(&ListFilter {
            status: Some(ExecutionStatus::Running),
            ..ListFilter::default()
        })?;
        let mut out = Vec::new();
        for r in list {
            if let Some(h) = self.resume(&r.execution_arn)? {
                out.push(h);
            }
        }
        Ok(out)
    }

    fn launch(
        &self,
        record: ExecutionRecord,
        def: Arc<Definition>,
        replay: Vec<HistoryEvent>,
        store_err: Option<StoreError>,
        input: Value,
    ) -> Running {
        let exec = Arc::new(Exec {
            inner: self.inner.clone(),
            arn: record.execution_arn.clone(),
            name: record.name.clone(),
            sm_arn: record.state_machine_arn.clone(),
            sm_name: record.state_machine_name.clone(),
            input: record.input.clone(),
            start_str: timestamp::format_millis(record.start_date),
            rec: Mutex::new(Recorder::new(replay, store_err)),
            stop: Mutex::new(None),
        });
        let engine = self.clone();
        let arn = record.execution_arn.clone();
        let (abort, reg) = futures_util::future::AbortHandle::new_pair();
        let exec2 = exec.clone();
        let fut: BoxFuture<'static, ExecutionOutcome> = Box::pin(async move {
            let run = futures_util::future::Abortable::new(exec2.clone().run(def, record), reg);
            let outcome = match run.await {
                Ok(o) => o,
                Err(_) => exec2.aborted(),
            };
            lock(&engine.inner.running).remove(&outcome.execution_arn);
            outcome
        });
        let shared = fut.shared();
        if let Some(sp) = &self.inner.spawner {
            let s = shared.clone();
            sp(Box::pin(async move {
                let _ = s.await;
            }));
        }
        Running {
            input,
            handle: ExecutionHandle {
                execution_arn: arn,
                fut: shared,
            },
            abort,
            exec,
        }
    }

    /// Stops a running execution (AWS StopExecution): records ExecutionAborted and marks
    /// it ABORTED. Returns `false` if it is not running in this engine.
    pub fn stop_execution(
        &self,
        execution_arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> bool {
        let handle = {
            let running = lock(&self.inner.running);
            let Some(r) = running.get(execution_arn) else {
                return false;
            };
            *lock(&r.exec.stop) = Some((error, cause));
            r.abort.abort();
            r.handle.clone()
        };
        // Finish the abort now (records the event) even when nobody drives the execution.
        let _ = handle.poll_now();
        true
    }

    /// Executions in the store, newest first.
    pub fn list_executions(&self, filter: &ListFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.inner.store.list_executions(filter)
    }

    /// The execution's history so far, in id order.
    pub fn history(&self, execution_arn: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        self.inner.store.history(execution_arn)
    }

    pub fn describe_execution(
        &self,
        execution_arn: &str,
    ) -> Result<Option<ExecutionRecord>, StoreError> {
        self.inner.store.get_execution(execution_arn)
    }

    /// Completes a `.waitForTaskToken` task with `output`.
    pub fn send_task_success(&self, token: &str, output: Value) -> Result<(), TaskTokenError> {
        self.complete_token(token, Ok(output))
    }

    /// Fails a `.waitForTaskToken` task.
    pub fn send_task_failure(
        &self,
        token: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<(), TaskTokenError> {
        self.complete_token(token, Err(Failure::bare(error.unwrap_or_default(), cause)))
    }

    /// Resets the HeartbeatSeconds timer of a waiting task.
    pub fn send_task_heartbeat(&self, token: &str) -> Result<(), TaskTokenError> {
        let g = lock(&self.inner.tokens);
        let p = g
            .get(token)
            .ok_or_else(|| TaskTokenError::InvalidToken(token.to_string()))?;
        p.heartbeat
            .unbounded_send(())
            .map_err(|_| TaskTokenError::TaskTimedOut(token.to_string()))
    }

    fn complete_token(&self, token: &str, r: Result<Value, Failure>) -> Result<(), TaskTokenError> {
        let p = lock(&self.inner.tokens)
            .remove(token)
            .ok_or_else(|| TaskTokenError::InvalidToken(token.to_string()))?;
        p.done
            .send(r)
            .map_err(|_| TaskTokenError::TaskTimedOut(token.to_string()))
    }
}

struct Recorder {
    /// Events emitted by this run, including ones matched to the replayed history.
    count: usize,
    /// Id for the next new event.
    next_id: u64,
    /// Id of the last emitted event.
    last_id: u64,
    /// Last rendered timestamp: many events share a millisecond, formatting is not free.
    ts_cache: (i64, String),
    /// History recorded before a restart. Re-driven events are matched to it by
    /// (previousEventId, type, state name / iteration index), not by position, so
    /// branches and iterations that interleaved differently still find their events.
    replay: Vec<HistoryEvent>,
    replay_index: HashMap<(u64, String), Vec<usize>>,
    consumed: Vec<bool>,
    store_err: Option<StoreError>,
}

impl Recorder {
    fn new(replay: Vec<HistoryEvent>, store_err: Option<StoreError>) -> Recorder {
        let mut replay_index: HashMap<(u64, String), Vec<usize>> = HashMap::new();
        for (i, e) in replay.iter().enumerate() {
            replay_index
                .entry((e.previous_event_id, e.event_type.clone()))
                .or_default()
                .push(i);
        }
        Recorder {
            count: 0,
            next_id: replay.iter().map(|e| e.id).max().unwrap_or(0) + 1,
            last_id: 0,
            ts_cache: (i64::MIN, String::new()),
            consumed: vec![false; replay.len()],
            replay,
            replay_index,
            store_err,
        }
    }

    /// The recorded event this re-driven event stands for, if any.
    fn take_replayed(&mut self, prev: u64, ty: &str, details: &EventDetails) -> Option<usize> {
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
    match d {
        EventDetails::StateEntered { name, .. } => Some(name.clone()),
        EventDetails::MapIteration { index, .. } => Some(index.to_string()),
        EventDetails::Other { key, value } if key == "stateEnteredEventDetails" => value
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string),
        EventDetails::Other { key, value } if key.starts_with("mapIteration") => {
            value.get("index").map(|i| i.to_string())
        }
        _ => None,
    }
}

/// One chain of events (the execution, a Parallel branch, a Map iteration).
struct Thread {
    prev: u64,
    /// Inside a Parallel branch: an uncaught Task failure records TaskStateAborted.
    in_parallel: bool,
    /// Distributed Map iterations run as child executions: not in this history.
    silent: bool,
}

struct Exec {
    inner: Arc<Inner>,
    arn: String,
    name: String,
    sm_arn: String,
    sm_name: String,
    input: Value,
    start_str: String,
    rec: Mutex<Recorder>,
    /// Error and cause given to `stop_execution`.
    stop: Mutex<Option<(Option<String>, Option<String>)>>,
}

enum Step {
    Next(String, Value),
    End(Value),
}

/// Per-visit information for the context object.
struct Visit<'a> {
    state: &'a str,
    entered_ms: i64,
    entered_id: u64,
    item: Option<(usize, &'a Value)>,
    token: Option<&'a str>,
    retry_count: Option<u32>,
}

type Res<T> = Result<T, Failure>;

impl Exec {
    fn emit_raw(
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

    fn emit(&self, th: &mut Thread, ty: &str, details: impl Into<EventDetails>) -> u64 {
        self.emit_raw(th, ty, details, true).0
    }

    /// Id of the last event emitted (by any thread).
    fn last_id(&self) -> u64 {
        lock(&self.rec).last_id
    }

    /// Events emitted so far by this run.
    fn event_count(&self) -> usize {
        lock(&self.rec).count
    }

    /// A recorded completion (from before a restart) of the task started at `started_id`.
    fn replayed_result(&self, started_id: u64) -> Option<HistoryEvent> {
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

    fn context(&self, v: &Visit) -> Value {
        let mut ctx = json!({
            "Execution": {
                "Id": self.arn,
                "Input": self.input,
                "StartTime": self.start_str,
                "Name": self.name,
                "RoleArn": self.inner.config.role_arn,
                "RedriveCount": 0,
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
    fn aborted(&self) -> ExecutionOutcome {
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

    async fn run(
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

    fn run_machine<'a>(
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

    fn size_check(&self, state: &str, v: &Value) -> Res<()> {
        self.size_check_text(state, &to_json_string(v))
    }

    fn size_check_text(&self, state: &str, text: &str) -> Res<()> {
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

    async fn run_state(
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
                let eff = self.input_path(st, &raw, vars, &visit)?;
                let res = match (&st.parameters, result) {
                    (_, Some(r)) => r.clone(),
                    (Some(p), None) => self.template(p, &eff, vars, &visit)?,
                    (None, None) => eff,
                };
                assigned = self.assign(st.assign.as_ref(), &res, vars, &visit)?;
                let out = self.result_path(&st.result_path, &raw, res)?;
                let out = self.output_path(st, out, vars, &visit)?;
                self.transition(st, out)
            }
            StateKind::Succeed => {
                let eff = self.input_path(st, &raw, vars, &visit)?;
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
                let eff = self.input_path(st, &raw, vars, &visit)?;
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
                let eff = self.input_path(st, &raw, vars, &visit)?;
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

    fn transition(&self, st: &State, out: Value) -> Step {
        match &st.next {
            Some(n) => Step::Next(n.clone(), out),
            None => Step::End(out),
        }
    }

    fn scope_eval<T>(
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

    fn template(&self, tpl: &Value, input: &Value, vars: &Vars, v: &Visit) -> Res<Value> {
        self.scope_eval(input, vars, v, |s| eval_template(tpl, s))
            .map_err(|f| self.in_state(f, v))
    }

    /// Runtime failures carry AWS's "An error occurred while executing the state" prefix.
    fn in_state(&self, f: Failure, v: &Visit) -> Failure {
        if f.error == "States.Runtime" {
            Failure::runtime_in_state(v.state, v.entered_id, f.cause.unwrap_or_default())
        } else {
            f
        }
    }

    fn resolve_ref(&self, r: &Ref, input: &Value, vars: &Vars, v: &Visit) -> Option<Value> {
        self.scope_eval(input, vars, v, |s| r.resolve(s))
    }

    fn io_path(&self, p: &IoPath, input: Value, vars: &Vars, v: &Visit) -> Res<Value> {
        match p {
            IoPath::Default => Ok(input),
            IoPath::Null => Ok(Value::Object(Map::new())),
            IoPath::Ref(r) => self
                .resolve_ref(r, &input, vars, v)
                .ok_or_else(|| self.invalid_path(r, &input, v)),
        }
    }

    fn invalid_path(&self, r: &Ref, input: &Value, v: &Visit) -> Failure {
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

    fn input_path(&self, st: &State, raw: &Value, vars: &Vars, v: &Visit) -> Res<Value> {
        if st.input_path == IoPath::Default {
            return Ok(raw.clone());
        }
        self.io_path(&st.input_path, raw.clone(), vars, v)
    }

    fn output_path(&self, st: &State, out: Value, vars: &Vars, v: &Visit) -> Res<Value> {
        self.io_path(&st.output_path, out, vars, v)
    }

    fn result_path(&self, rp: &ResultPathSpec, raw: &Value, result: Value) -> Res<Value> {
        match rp {
            ResultPathSpec::Default => Ok(result),
            ResultPathSpec::Null => Ok(raw.clone()),
            ResultPathSpec::Path(p) if p.is_root() => Ok(result),
            ResultPathSpec::Path(p) => {
                let mut doc = raw.clone();
                p.set(&mut doc, result).map_err(|_| {
                    Failure::new(
                        "States.ResultPathMatchFailure",
                        format!(
                            "Unable to apply ResultPath \"{}\" to input \"{}\"",
                            p.text(),
                            to_json_string(raw)
                        ),
                    )
                })?;
                Ok(doc)
            }
        }
    }

    fn assign(
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

    fn err_src(
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

    fn wait_delay(
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

    fn dyn_num(&self, d: &Dyn<u64>, field: &str, eff: &Value, vars: &Vars, v: &Visit) -> Res<u64> {
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
    async fn run_with_retry(
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

    fn caught(
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
    fn finish(
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

    async fn attempt(
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
                    eff,
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
                    None => eff,
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
                        self.run_machine(b, input, bvars, &mut bth)
                            .await
                            .map_err(|f| (f, bth.prev))
                    }
                });
                match futures_util::future::try_join_all(futs).await {
                    Ok(results) => {
                        th.prev = self.last_id();
                        self.emit_raw(th, "ParallelStateSucceeded", None, false);
                        Ok(Value::Array(results))
                    }
                    Err((f, last)) => {
                        // ParallelStateFailed comes only once retries are exhausted.
                        th.prev = last;
                        Err(f)
                    }
                }
            }
            StateKind::Map(m) => self.map(st, m, eff, vars, th, v).await,
            _ => Ok(eff),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn task(
        &self,
        st: &State,
        resource: &str,
        timeout: Option<&Dyn<u64>>,
        heartbeat: Option<&Dyn<u64>>,
        eff: Value,
        vars: &Vars,
        th: &mut Thread,
        v: &Visit<'_>,
        attempt: u32,
    ) -> Res<Value> {
        let credentials = match &st.kind {
            StateKind::Task { credentials, .. } => credentials.as_ref(),
            _ => None,
        };
        // Callback tasks and `.sync` jobs both finish through the token: the resource's
        // immediate answer is the TaskSubmitted output.
        let wait_token = resource.ends_with(".waitForTaskToken") || resource.contains(".sync");
        let invocation_key = format!("{}/{}/{attempt}", self.arn, v.entered_id);
        let token = wait_token.then(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(invocation_key.as_bytes())
        });
        let tv = Visit {
            state: v.state,
            entered_ms: v.entered_ms,
            entered_id: v.entered_id,
            item: None,
            token: token.as_deref(),
            retry_count: v.retry_count,
        };
        let params = match &st.parameters {
            Some(p) => self.template(p, &eff, vars, &tv)?,
            None => eff.clone(),
        };
        let timeout_s = match timeout {
            Some(d) => Some(self.dyn_num(d, "TimeoutSecondsPath", &eff, vars, &tv)?),
            None => None,
        };
        let heartbeat_s = match heartbeat {
            Some(d) => Some(self.dyn_num(d, "HeartbeatSecondsPath", &eff, vars, &tv)?),
            None => None,
        };
        let kind = classify(resource);
        let (scheduled_ty, started_ty, ok_ty, fail_ty, timeout_ty, prefix) = match &kind {
            ResourceKind::LambdaFunction => (
                "LambdaFunctionScheduled",
                "LambdaFunctionStarted",
                "LambdaFunctionSucceeded",
                "LambdaFunctionFailed",
                "LambdaFunctionTimedOut",
                "lambdaFunction",
            ),
            ResourceKind::Activity => (
                "ActivityScheduled",
                "ActivityStarted",
                "ActivitySucceeded",
                "ActivityFailed",
                "ActivityTimedOut",
                "activity",
            ),
            ResourceKind::Service { .. } => (
                "TaskScheduled",
                "TaskStarted",
                "TaskSucceeded",
                "TaskFailed",
                "TaskTimedOut",
                "task",
            ),
        };
        let res_fields: Vec<(&str, Value)> = match &kind {
            ResourceKind::Service {
                resource_type,
                resource,
            } => vec![
                ("resourceType", json!(resource_type)),
                ("resource", json!(resource)),
            ],
            _ => Vec::new(),
        };
        let mut sched = Map::new();
        match &kind {
            ResourceKind::Service { .. } => {
                for (k, val) in &res_fields {
                    sched.insert((*k).to_string(), val.clone());
                }
                sched.insert("region".into(), json!(self.inner.config.region));
                sched.insert("parameters".into(), json!(to_json_string(&params)));
            }
            _ => {
                sched.insert("resource".into(), json!(resource));
                sched.insert("input".into(), json!(to_json_string(&params)));
                sched.insert("inputDetails".into(), not_truncated());
            }
        }
        if let Some(t) = timeout_s {
            sched.insert("timeoutInSeconds".into(), json!(t));
        }
        if let Some(h) = heartbeat_s {
            sched.insert("heartbeatInSeconds".into(), json!(h));
        }
        if let Some(c) = credentials {
            // Credentials.RoleArn (static, path, variable or intrinsic) → taskCredentials.roleArn
            if let Value::Object(m) = self.template(c, &eff, vars, &tv)?
                && let Some(role) = m.get("RoleArn")
            {
                sched.insert("taskCredentials".into(), json!({"roleArn": role}));
            }
        }
        self.emit(
            th,
            scheduled_ty,
            Some((
                format!("{prefix}ScheduledEventDetails"),
                Value::Object(sched),
            )),
        );
        let started_details = match &kind {
            ResourceKind::Service { .. } => Some((
                "taskStartedEventDetails".to_string(),
                Value::Object(
                    res_fields
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), v.clone()))
                        .collect(),
                ),
            )),
            ResourceKind::Activity => Some(("activityStartedEventDetails".into(), json!({}))),
            ResourceKind::LambdaFunction => None,
        };
        let started_id = self.emit(th, started_ty, started_details);

        let outcome: Result<Value, (Failure, bool)> = match self.replayed_result(started_id) {
            Some(ev) => replayed_outcome(&ev),
            None => {
                self.invoke(
                    resource,
                    params,
                    &tv,
                    &invocation_key,
                    token.clone(),
                    (timeout_s, heartbeat_s),
                    th,
                    &res_fields,
                )
                .await
            }
        };
        match outcome {
            Ok(out) => {
                self.size_check(resource, &out).inspect_err(|f| {
                    self.emit(
                        th,
                        fail_ty,
                        Some(error_details(
                            &format!("{prefix}FailedEventDetails"),
                            Some(&f.error),
                            f.cause.as_deref(),
                            &res_fields,
                        )),
                    );
                })?;
                let mut d: Map<String, Value> = res_fields
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.clone()))
                    .collect();
                d.insert("output".into(), json!(to_json_string(&out)));
                d.insert("outputDetails".into(), not_truncated());
                self.emit(
                    th,
                    ok_ty,
                    Some((format!("{prefix}SucceededEventDetails"), Value::Object(d))),
                );
                Ok(out)
            }
            Err((f, timed_out)) => {
                let (ty, key) = if timed_out {
                    (timeout_ty, format!("{prefix}TimedOutEventDetails"))
                } else {
                    (fail_ty, format!("{prefix}FailedEventDetails"))
                };
                self.emit(
                    th,
                    ty,
                    Some(error_details(
                        &key,
                        Some(f.error.as_str()).filter(|e| !e.is_empty()),
                        f.cause.as_deref(),
                        &res_fields,
                    )),
                );
                Err(f)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &self,
        resource: &str,
        params: Value,
        v: &Visit<'_>,
        key: &str,
        token: Option<String>,
        (timeout_s, heartbeat_s): (Option<u64>, Option<u64>),
        th: &mut Thread,
        res_fields: &[(&str, Value)],
    ) -> Result<Value, (Failure, bool)> {
        let Some(r) = self.inner.resources.lookup(resource) else {
            return Err((
                Failure::new(
                    "States.TaskFailed",
                    format!("No task resource is registered for '{resource}' in this runtime"),
                ),
                false,
            ));
        };
        let ctx = TaskContext {
            resource: resource.to_string(),
            execution_arn: self.arn.clone(),
            execution_name: self.name.clone(),
            state_name: v.state.to_string(),
            state_entered_event_id: v.entered_id,
            attempt: v.retry_count.unwrap_or(0),
            invocation_key: key.to_string(),
            task_token: token.clone(),
        };
        // Registered before the call, so a resource may complete the token at once.
        let rx = token.as_ref().map(|t| {
            let (done, rx) = oneshot::channel();
            let (heartbeat, beats) = futures_channel::mpsc::unbounded();
            lock(&self.inner.tokens).insert(t.clone(), PendingToken { done, heartbeat });
            (rx, beats)
        });
        let call = async {
            let first = r.invoke(params, ctx).await;
            match (first, rx) {
                (Err(f), _) => Err((f, false)),
                (Ok(v), None) => Ok(v),
                (Ok(submitted), Some(rx)) => {
                    let mut d: Map<String, Value> = res_fields
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), v.clone()))
                        .collect();
                    d.insert("output".into(), json!(to_json_string(&submitted)));
                    d.insert("outputDetails".into(), not_truncated());
                    self.emit(
                        th,
                        "TaskSubmitted",
                        Some(("taskSubmittedEventDetails".into(), Value::Object(d))),
                    );
                    self.await_token(rx, heartbeat_s).await
                }
            }
        };
        let result = match timeout_s {
            Some(t) => {
                let sleep = self.inner.clock.sleep(t.saturating_mul(1000));
                futures_util::pin_mut!(call);
                match futures_util::future::select(call, sleep).await {
                    futures_util::future::Either::Left((r, _)) => r,
                    futures_util::future::Either::Right(_) => {
                        Err((Failure::new("States.Timeout", ""), true))
                    }
                }
            }
            None => call.await,
        };
        if let Some(t) = &token {
            lock(&self.inner.tokens).remove(t);
        }
        result
    }

    /// Waits for the token's completion; without a heartbeat for `heartbeat_s` seconds
    /// the task times out (AWS records `States.Timeout`).
    async fn await_token(
        &self,
        (mut rx, mut beats): (
            oneshot::Receiver<Result<Value, Failure>>,
            futures_channel::mpsc::UnboundedReceiver<()>,
        ),
        heartbeat_s: Option<u64>,
    ) -> Result<Value, (Failure, bool)> {
        use futures_util::StreamExt;
        use futures_util::future::{Either, select};
        loop {
            let timer: BoxFuture<'static, ()> = match heartbeat_s {
                Some(h) => self.inner.clock.sleep(h.saturating_mul(1000)),
                None => Box::pin(futures_util::future::pending()),
            };
            match select(&mut rx, select(beats.next(), timer)).await {
                Either::Left((Ok(r), _)) => return r.map_err(|f| (f, false)),
                Either::Left((Err(_), _)) => {
                    return Err((
                        Failure::new("States.TaskFailed", "the task token was dropped"),
                        false,
                    ));
                }
                Either::Right((Either::Left((Some(()), _)), _)) => continue,
                Either::Right((Either::Left((None, _)), _)) => {
                    // No heartbeat sender left: only completion can end the wait now.
                    return match (&mut rx).await {
                        Ok(r) => r.map_err(|f| (f, false)),
                        Err(_) => Err((
                            Failure::new("States.TaskFailed", "the task token was dropped"),
                            false,
                        )),
                    };
                }
                Either::Right((Either::Right(_), _)) => {
                    return Err((Failure::new("States.Timeout", ""), true));
                }
            }
        }
    }

    fn batch(
        &self,
        b: &crate::definition::ItemBatcher,
        items: Vec<Value>,
        eff: &Value,
        vars: &Vars,
        v: &Visit<'_>,
    ) -> Res<Vec<Value>> {
        let max_items = match &b.max_items {
            Some(d) => self
                .dyn_num(d, "MaxItemsPerBatchPath", eff, vars, v)?
                .max(1),
            None => u64::MAX,
        };
        let max_bytes = match &b.max_bytes {
            Some(d) => self
                .dyn_num(d, "MaxInputBytesPerBatchPath", eff, vars, v)?
                .max(1),
            None => u64::MAX,
        };
        let batch_input = match &b.batch_input {
            Some(t) => Some(self.template(t, eff, vars, v)?),
            None => None,
        };
        let make = |chunk: Vec<Value>| {
            let mut o = Map::new();
            o.insert("Items".into(), Value::Array(chunk));
            if let Some(bi) = &batch_input {
                o.insert("BatchInput".into(), bi.clone());
            }
            Value::Object(o)
        };
        let mut out = Vec::new();
        let mut chunk = Vec::new();
        let mut bytes = 0u64;
        for item in items {
            let size = to_json_string(&item).len() as u64;
            if !chunk.is_empty() && (chunk.len() as u64 >= max_items || bytes + size > max_bytes) {
                out.push(make(std::mem::take(&mut chunk)));
                bytes = 0;
            }
            bytes += size;
            chunk.push(item);
        }
        if !chunk.is_empty() {
            out.push(make(chunk));
        }
        Ok(out)
    }

    async fn map(
        &self,
        st: &State,
        m: &crate::definition::MapSpec,
        eff: Value,
        vars: &Vars,
        th: &mut Thread,
        v: &Visit<'_>,
    ) -> Res<Value> {
        let items_v = match &m.items_path {
            IoPath::Default => eff.clone(),
            p => self.io_path(p, eff.clone(), vars, v)?,
        };
        let Value::Array(items) = items_v else {
            return Err(Failure::runtime_in_state(
                v.state,
                v.entered_id,
                format!(
                    "Items of the Map state must be a JSON array, but found: {}",
                    to_json_string(&items_v)
                ),
            ));
        };
        let max_c = self.dyn_num(&m.max_concurrency, "MaxConcurrencyPath", &eff, vars, v)?;
        self.emit(
            th,
            "MapStateStarted",
            Some((
                "mapStateStartedEventDetails".into(),
                json!({"length": items.len()}),
            )),
        );
        let tol_count = match &m.tolerated_count {
            None => None,
            Some(Dyn::Static(n)) => Some(*n),
            Some(Dyn::Path(r)) => {
                let val = self.resolve_ref(r, &eff, vars, v).unwrap_or(Value::Null);
                match as_integer(&val) {
                    Some(n) if n < 0 => {
                        return Err(Failure::runtime_in_state(
                            v.state,
                            v.entered_id,
                            "ToleratedFailureCount cannot be negative.",
                        ));
                    }
                    Some(n) => Some(n),
                    None => {
                        return Err(Failure::runtime_in_state(
                            v.state,
                            v.entered_id,
                            format!(
                                "The ToleratedFailureCountPath field refers to value \"{}\" which is not a valid integer: {}",
                                shown(&val),
                                r.text()
                            ),
                        ));
                    }
                }
            }
        };
        let tol_pct = match &m.tolerated_percentage {
            None => None,
            Some(Dyn::Static(n)) => Some(*n),
            Some(Dyn::Path(r)) => {
                let val = self.resolve_ref(r, &eff, vars, v).unwrap_or(Value::Null);
                match as_float(&val) {
                    Some(n) if !(0.0..=100.0).contains(&n) => {
                        return Err(Failure::runtime_in_state(
                            v.state,
                            v.entered_id,
                            "ToleratedFailurePercentage must be between 0 and 100.",
                        ));
                    }
                    Some(n) => Some(n),
                    None => {
                        return Err(Failure::runtime_in_state(
                            v.state,
                            v.entered_id,
                            format!(
                                "The ToleratedFailurePercentagePath field refers to value \"{}\" which is not a valid float: {}",
                                shown(&val),
                                r.text()
                            ),
                        ));
                    }
                }
            }
        };
        let selector = m.item_selector.as_ref().or(st.parameters.as_ref());
        let item_input = |i: usize, item: &Value| -> Res<Value> {
            match selector {
                Some(sel) => {
                    let iv = Visit {
                        state: v.state,
                        entered_ms: v.entered_ms,
                        entered_id: v.entered_id,
                        item: Some((i, item)),
                        token: None,
                        retry_count: None,
                    };
                    self.template(sel, &eff, vars, &iv)
                }
                None => Ok(item.clone()),
            }
        };
        // ItemBatcher: select each item first, then group them; batches are the items.
        let (items, batched) = match &m.item_batcher {
            Some(b) => {
                let mut selected = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    selected.push(item_input(i, item)?);
                }
                (self.batch(b, selected, &eff, vars, v)?, true)
            }
            None => (items, false),
        };
        let item_input = |i: usize, item: &Value| -> Res<Value> {
            if batched {
                Ok(item.clone())
            } else {
                item_input(i, item)
            }
        };
        let distributed = m.mode == MapMode::Distributed;
        if distributed {
            let run_arn = format!(
                "arn:aws:states:{}:{}:mapRun:{}/{}:{}",
                self.inner.config.region,
                self.inner.config.account_id,
                self.sm_name,
                m.label.clone().unwrap_or_else(|| st.name.clone()),
                uuid::Uuid::new_v4()
            );
            self.emit(
                th,
                "MapRunStarted",
                Some((
                    "mapRunStartedEventDetails".into(),
                    json!({"mapRunArn": run_arn}),
                )),
            );
        }
        let n = items.len();
        let mut results: Vec<Value> = Vec::with_capacity(n);
        let mut failures: Vec<Failure> = Vec::new();
        let tolerated = |fails: usize| -> bool {
            let by_count = tol_count.is_some_and(|c| fails as i64 <= c);
            let by_pct = tol_pct.is_some_and(|p| n > 0 && (fails as f64) * 100.0 / (n as f64) <= p);
            by_count || by_pct
        };
        let mut cursor = th.prev;
        let mut last_terminal = th.prev;
        let mut failed: Option<(Failure, u64)> = None;
        if max_c == 1 || distributed {
            for (i, item) in items.iter().enumerate() {
                let input = item_input(i, item)?;
                let mut ith = Thread {
                    prev: cursor,
                    in_parallel: false,
                    silent: distributed,
                };
                let mut it_prev = ith.prev;
                if !distributed {
                    let id = self.emit(
                        &mut ith,
                        "MapIterationStarted",
                        EventDetails::MapIteration {
                            key: "mapIterationStartedEventDetails",
                            index: i,
                            name: st.name.clone(),
                        },
                    );
                    it_prev = id;
                }
                let _ = it_prev;
                let r = self
                    .run_machine(&m.processor, input, vars.clone(), &mut ith)
                    .await;
                cursor = ith.prev;
                match r {
                    Ok(out) => {
                        if !distributed {
                            last_terminal = self
                                .emit_raw(
                                    &mut ith,
                                    "MapIterationSucceeded",
                                    EventDetails::MapIteration {
                                        key: "mapIterationSucceededEventDetails",
                                        index: i,
                                        name: st.name.clone(),
                                    },
                                    false,
                                )
                                .0;
                        }
                        results.push(out);
                    }
                    Err(f) => {
                        if !distributed {
                            self.emit_raw(
                                &mut ith,
                                "MapIterationFailed",
                                EventDetails::MapIteration {
                                    key: "mapIterationFailedEventDetails",
                                    index: i,
                                    name: st.name.clone(),
                                },
                                false,
                            );
                        }
                        failures.push(f.clone());
                        if !tolerated(failures.len()) {
                            failed = Some((f, cursor));
                            break;
                        }
                        results.push(Value::Null);
                    }
                }
            }
        } else {
            let limit = if max_c == 0 {
                n.max(1)
            } else {
                usize::try_from(max_c).unwrap_or(usize::MAX)
            };
            let start = th.prev;
            let mut inputs = Vec::with_capacity(n);
            for (i, item) in items.iter().enumerate() {
                inputs.push(item_input(i, item)?);
            }
            let futs = inputs.into_iter().enumerate().map(|(i, input)| {
                let ivars = vars.clone();
                async move {
                    let mut ith = Thread {
                        prev: start,
                        in_parallel: false,
                        silent: false,
                    };
                    self.emit(
                        &mut ith,
                        "MapIterationStarted",
                        EventDetails::MapIteration {
                            key: "mapIterationStartedEventDetails",
                            index: i,
                            name: st.name.clone(),
                        },
                    );
                    let r = self.run_machine(&m.processor, input, ivars, &mut ith).await;
                    let ty = if r.is_ok() {
                        "MapIterationSucceeded"
                    } else {
                        "MapIterationFailed"
                    };
                    let key = if r.is_ok() {
                        "mapIterationSucceededEventDetails"
                    } else {
                        "mapIterationFailedEventDetails"
                    };
                    let inner_last = ith.prev;
                    let (tid, _) = self.emit_raw(
                        &mut ith,
                        ty,
                        EventDetails::MapIteration {
                            key,
                            index: i,
                            name: st.name.clone(),
                        },
                        false,
                    );
                    (r, inner_last, tid)
                }
            });
            use futures_util::StreamExt;
            let mut stream = futures_util::stream::iter(futs).buffered(limit);
            while let Some((r, inner_last, tid)) = stream.next().await {
                match r {
                    Ok(out) => {
                        last_terminal = tid;
                        results.push(out);
                    }
                    Err(f) => {
                        failures.push(f.clone());
                        if !tolerated(failures.len()) {
                            failed = Some((f, inner_last));
                            break;
                        }
                        results.push(Value::Null);
                    }
                }
            }
        }
        if let Some((f, last)) = failed {
            let f = if failures.len() > 1 || tol_count.is_some() || tol_pct.is_some() {
                Failure::new(
                    "States.ExceedToleratedFailureThreshold",
                    "The specified tolerated failure threshold was exceeded",
                )
            } else {
                f
            };
            if distributed {
                self.emit(
                    th,
                    "MapRunFailed",
                    Some(error_details(
                        "mapRunFailedEventDetails",
                        Some(&f.error),
                        f.cause.as_deref(),
                        &[],
                    )),
                );
            } else {
                th.prev = last;
            }
            // MapStateFailed comes only once retries are exhausted.
            return Err(f);
        }
        if distributed {
            self.emit(th, "MapRunSucceeded", None);
        } else {
            th.prev = last_terminal;
        }
        self.emit_raw(th, "MapStateSucceeded", None, false);
        Ok(Value::Array(results))
    }
}

/// Deepest JSON nesting the engine passes between states (Jackson's default limit).
const MAX_DEPTH: usize = 1000;

/// Iterative depth check (no recursion on user-shaped data).
fn exceeds_depth(v: &Value, max: usize) -> bool {
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

/// An integer, or a string holding one (AWS accepts both in `…Path` fields).
fn as_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        o => to_json_string(o),
    }
}

enum CaughtOr {
    Caught(String, Value, Option<Map<String, Value>>),
    Failed(Failure),
}

impl From<Failure> for CaughtOr {
    fn from(f: Failure) -> Self {
        CaughtOr::Failed(f)
    }
}

/// Turns a recorded completion event back into the task's outcome.
fn replayed_outcome(ev: &HistoryEvent) -> Result<Value, (Failure, bool)> {
    if ev.event_type.ends_with("Succeeded") {
        let out = ev
            .detail("output")
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        return Ok(out);
    }
    let error = ev
        .detail("error")
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let cause = ev
        .detail("cause")
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_string);
    Err((
        Failure::bare(error, cause),
        ev.event_type.ends_with("TimedOut"),
    ))
}
