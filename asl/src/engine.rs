//! The engine's public face: configuration, state machines, named executions
//! (start, resume, stop), task tokens, and access to history through the store.

use crate::clock::Clock;
use crate::definition::Definition;
use crate::error::{
    ExecutionAlreadyExists, Failure, RedriveError, StoreError, TaskTokenError, ValidationError,
};
use crate::executor::{Exec, Recorder};
use crate::history::HistoryEvent;
use crate::redrive;
use crate::resource::ResourceRegistry;
use crate::store::{ExecutionRecord, ExecutionStatus, ExecutionStore, ListFilter};
use crate::timestamp;
use futures_channel::oneshot;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Account-level settings used to build ARNs and history details.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// AWS region used in ARNs and TaskScheduled details.
    pub region: String,
    /// Account id used in ARNs.
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
    /// A standard workflow (the default).
    Standard,
    /// An express workflow.
    Express,
}

/// A validated state machine with its name and ARN.
#[derive(Debug, Clone)]
pub struct StateMachine {
    /// The state machine name (part of its ARN and of execution ARNs).
    pub name: String,
    /// `arn:aws:states:{region}:{account}:stateMachine:{name}`.
    pub arn: String,
    /// The parsed definition.
    pub definition: Arc<Definition>,
    /// The definition text (kept so a restarted process can re-drive executions).
    pub definition_text: String,
    /// STANDARD unless made EXPRESS with [`StateMachine::express`].
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
    /// The execution's ARN.
    pub execution_arn: String,
    /// How it ended.
    pub status: ExecutionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The output, when it succeeded.
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The error name, when it failed (absent if the Fail state gave none).
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The cause, when one was given.
    pub cause: Option<String>,
}

/// Spawns a future on the embedder's runtime (e.g. `tokio::spawn`).
pub type Spawner = Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>;

/// A started execution. Cloneable; `wait` drives it (if no spawner runs it) and
/// returns its outcome.
#[derive(Clone)]
pub struct ExecutionHandle {
    /// The execution's ARN.
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
pub(crate) struct Running {
    input: Value,
    handle: ExecutionHandle,
    abort: futures_util::future::AbortHandle,
    exec: Arc<Exec>,
}

/// A task waiting for `send_task_success/failure` (callback and `.sync` tasks).
pub(crate) struct PendingToken {
    pub(crate) done: oneshot::Sender<Result<Value, Failure>>,
    pub(crate) heartbeat: futures_channel::mpsc::UnboundedSender<()>,
}

pub(crate) struct Inner {
    pub(crate) config: EngineConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) store: Arc<dyn ExecutionStore>,
    pub(crate) resources: ResourceRegistry,
    pub(crate) spawner: Option<Spawner>,
    pub(crate) running: Mutex<HashMap<String, Running>>,
    pub(crate) tokens: Mutex<HashMap<String, PendingToken>>,
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
    /// Region, account and limits.
    pub fn config(mut self, c: EngineConfig) -> Self {
        self.config = c;
        self
    }
    /// The time source (default: [`crate::VirtualClock`]).
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }
    /// Where executions and history are kept (default: [`crate::InMemoryStore`]).
    pub fn store(mut self, s: Arc<dyn ExecutionStore>) -> Self {
        self.store = s;
        self
    }
    /// The Task resources.
    pub fn resources(mut self, r: ResourceRegistry) -> Self {
        self.resources = r;
        self
    }
    /// Runs executions in the background as soon as they start.
    pub fn spawner(mut self, s: Spawner) -> Self {
        self.spawner = Some(s);
        self
    }
    /// Builds the engine.
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The store the engine writes to.
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
        let history = self.inner.store.history(execution_arn)?;
        let input = rec.input.clone();
        let r = self.launch(rec, Arc::new(def), history, None, input);
        let h = r.handle.clone();
        running.insert(execution_arn.to_string(), r);
        Ok(Some(h))
    }

    /// Redrives a FAILED, TIMED_OUT or ABORTED execution (AWS `RedriveExecution`): records
    /// `ExecutionRedriven`, marks it RUNNING, and runs it on from the state it did not
    /// finish; the states before it are replayed from the history, not run again. See
    /// [`crate::redrive`] for what is refused.
    pub fn redrive_execution(&self, execution_arn: &str) -> Result<ExecutionHandle, RedriveError> {
        let mut running = lock(&self.inner.running);
        let not = |why: String| RedriveError::NotRedrivable(why);
        if running.contains_key(execution_arn) {
            return Err(not("it is RUNNING".into()));
        }
        let Some(mut rec) = self.inner.store.get_execution(execution_arn)? else {
            return Err(RedriveError::DoesNotExist(execution_arn.to_string()));
        };
        let def = Definition::parse(&rec.definition)
            .map_err(|e| StoreError(format!("stored definition no longer parses: {e:?}")))?;
        let mut history = self.inner.store.history(execution_arn)?;
        let replay = redrive::replay(&def, history.clone());
        if let Some(why) = redrive::refusal(rec.status, &def, &replay.events) {
            return Err(not(why));
        }
        let now = self.inner.clock.now_millis();
        let event = redrive::redriven_event(
            replay.next_id - 1,
            replay.redrives + 1,
            timestamp::format_millis(now),
        );
        self.inner
            .store
            .append_event(execution_arn, event.clone())?;
        history.push(event);
        rec.status = ExecutionStatus::Running;
        rec.stop_date = None;
        rec.output = None;
        rec.error = None;
        rec.cause = None;
        self.inner.store.put_execution(&rec)?;
        let input = rec.input.clone();
        let r = self.launch(rec, Arc::new(def), history, None, input);
        let h = r.handle.clone();
        running.insert(execution_arn.to_string(), r);
        Ok(h)
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
        history: Vec<HistoryEvent>,
        store_err: Option<StoreError>,
        input: Value,
    ) -> Running {
        let replay = redrive::replay(&def, history);
        let exec = Arc::new(Exec {
            inner: self.inner.clone(),
            arn: record.execution_arn.clone(),
            name: record.name.clone(),
            sm_arn: record.state_machine_arn.clone(),
            sm_name: record.state_machine_name.clone(),
            input: record.input.clone(),
            start_str: timestamp::format_millis(record.start_date),
            redrive_count: replay.redrives,
            rec: Mutex::new(Recorder::new(replay.events, replay.next_id, store_err)),
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

    /// The execution's record (status, input, output, dates) from the store.
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
