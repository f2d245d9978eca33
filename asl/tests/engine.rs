//! Engine behaviour: named executions, resources, task tokens, retries, resume.

use asl::{
    Engine, ExecutionOutcome, ExecutionStatus, ExecutionStore, Failure, InMemoryStore,
    RedriveError, ResourceRegistry, StateMachine, TaskContext, TaskFuture, TaskResource,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const TASK: &str = r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::sns:publish",
  "Retry":[{"ErrorEquals":["Flaky"],"IntervalSeconds":5,"MaxAttempts":2}],"End":true}}}"#;

/// What a test resource does with one invocation.
enum Answer {
    /// Answers at once (on the first poll).
    Now(Result<Value, Failure>),
    /// Never answers: the process "crashes" while the task runs.
    Never,
}

/// A task resource that answers at once with what `answer` decides, or never (a
/// process that crashed mid-task). `answer` runs when the task is invoked.
fn resource(
    answer: impl Fn(Value, &TaskContext) -> Answer + Send + Sync + 'static,
) -> Arc<dyn TaskResource> {
    Arc::new(move |p: Value, c: TaskContext| -> TaskFuture {
        match answer(p, &c) {
            Answer::Now(result) => Box::pin(std::future::ready(result)),
            Answer::Never => Box::pin(std::future::pending()),
        }
    })
}

/// A resource that counts its invocations in `calls` and answers `value`.
fn counted(calls: &Arc<AtomicU32>, value: Value) -> Arc<dyn TaskResource> {
    let calls = calls.clone();
    resource(move |_, _| {
        calls.fetch_add(1, Ordering::SeqCst);
        Answer::Now(Ok(value.clone()))
    })
}

/// A resource that answers `value`, or never when `hang` (a process that crashed).
fn answers_unless(hang: bool, value: Value) -> Arc<dyn TaskResource> {
    resource(move |_, _| {
        if hang {
            Answer::Never
        } else {
            Answer::Now(Ok(value.clone()))
        }
    })
}

/// What a task switched by `mode` does: 0 fails with `failure`, 1 never answers (a
/// crash), anything else answers `value`.
fn by_mode(mode: &AtomicU32, failure: Failure, value: Value) -> Answer {
    match mode.load(Ordering::SeqCst) {
        0 => Answer::Now(Err(failure)),
        1 => Answer::Never,
        _ => Answer::Now(Ok(value)),
    }
}

/// An engine on `store` with `resources`: one process of a test that restarts.
fn process(store: &Arc<InMemoryStore>, resources: ResourceRegistry) -> Engine {
    Engine::builder()
        .store(store.clone())
        .resources(resources)
        .build()
}

/// Starts execution "e" of `sm` and returns how it ended, which one poll must decide.
fn run_at_once(engine: &Engine, sm: &StateMachine, input: Value) -> ExecutionOutcome {
    engine
        .start_execution(sm, "e", input)
        .unwrap()
        .poll_now()
        .unwrap()
}

/// Redrives `arn` and returns how the redrive ended, which one poll must decide.
fn redrive_at_once(engine: &Engine, arn: &str) -> ExecutionOutcome {
    engine.redrive_execution(arn).unwrap().poll_now().unwrap()
}

/// The types of the events in `arn`'s history, in order.
fn event_types(engine: &Engine, arn: &str) -> Vec<String> {
    engine
        .history(arn)
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[test]
fn named_executions_follow_aws_semantics() {
    let engine = Engine::builder().build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":10,"End":true}}}"#,
        )
        .unwrap();
    let a = engine.start_execution(&sm, "n", json!({"x": 1})).unwrap();
    // Same name + same input while running: the same execution.
    let b = engine.start_execution(&sm, "n", json!({"x": 1})).unwrap();
    assert_eq!(a.execution_arn, b.execution_arn);
    assert!(engine.start_execution(&sm, "n", json!({"x": 2})).is_err());
    let out = futures_util::FutureExt::now_or_never(a.wait()).unwrap();
    assert_eq!(out.status, ExecutionStatus::Succeeded);
    // Finished: any input is refused.
    assert!(engine.start_execution(&sm, "n", json!({"x": 1})).is_err());
}

#[test]
fn retries_then_succeeds_with_invocation_keys() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let mut reg = ResourceRegistry::new();
    reg.register(
        "arn:aws:states:::sns:publish",
        resource(move |p, ctx| {
            let n = {
                let mut g = c.lock().unwrap();
                g.push(ctx.invocation_key.clone());
                g.len()
            };
            Answer::Now(if n < 2 {
                Err(Failure::new("Flaky", "try again"))
            } else {
                Ok(json!({"ok": p}))
            })
        }),
    );
    let engine = Engine::builder().resources(reg).build();
    let sm = engine.state_machine("m", TASK).unwrap();
    let h = engine.start_execution(&sm, "e", json!({"a": 1})).unwrap();
    let out = h.poll_now().unwrap();
    assert_eq!(out.output, Some(json!({"ok": {"a": 1}})));
    let keys = calls.lock().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert!(
        keys[0].ends_with("/2/0") && keys[1].ends_with("/2/1"),
        "{keys:?}"
    );
    let types = event_types(&engine, &h.execution_arn);
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskFailed",
            "TaskScheduled",
            "TaskStarted",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
}

#[test]
fn unregistered_resource_fails_clearly() {
    let engine = Engine::builder().build();
    let sm = engine.state_machine("m", TASK).unwrap();
    let out = run_at_once(&engine, &sm, json!({}));
    assert_eq!(out.status, ExecutionStatus::Failed);
    assert_eq!(out.error.as_deref(), Some("States.TaskFailed"));
    assert!(out.cause.unwrap().contains("arn:aws:states:::sns:publish"));
}

#[test]
fn wait_for_task_token() {
    let token = Arc::new(Mutex::new(None));
    let t = token.clone();
    let mut reg = ResourceRegistry::new();
    reg.register(
        "arn:aws:states:::sqs:sendMessage",
        resource(move |_, ctx| {
            *t.lock().unwrap() = ctx.task_token.clone();
            Answer::Now(Ok(json!({"MessageId": "m"})))
        }),
    );
    let engine = Engine::builder().resources(reg).build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken",
               "Parameters":{"Token.$":"$$.Task.Token"},"End":true}}}"#,
        )
        .unwrap();
    let h = engine.start_execution(&sm, "e", json!({})).unwrap();
    assert!(h.poll_now().is_none());
    let tok = token.lock().unwrap().clone().unwrap();
    assert!(engine.send_task_success("nope", json!(1)).is_err());
    engine
        .send_task_success(&tok, json!({"done": true}))
        .unwrap();
    let out = h.poll_now().unwrap();
    assert_eq!(out.output, Some(json!({"done": true})));
    let types = event_types(&engine, &h.execution_arn);
    assert!(types.contains(&"TaskSubmitted".to_string()));
}

#[test]
fn resume_reuses_recorded_task_results() {
    let store: Arc<InMemoryStore> = Arc::new(InMemoryStore::new());
    let def = r#"{"StartAt":"T1","States":{
        "T1":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","ResultPath":"$.one","Next":"T2"},
        "T2":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage","ResultPath":"$.two","End":true}}}"#;
    let calls = Arc::new(AtomicU32::new(0));
    let registry = |block_second: bool, calls: Arc<AtomicU32>| {
        let mut reg = ResourceRegistry::new();
        reg.register(
            "arn:aws:states:::sns:publish",
            counted(&calls, json!("sns")),
        );
        reg.register(
            "arn:aws:states:::sqs:sendMessage",
            answers_unless(block_second, json!("sqs")),
        );
        reg
    };
    // First process: T1 completes, T2 never answers ("crash").
    let e1 = process(&store, registry(true, calls.clone()));
    let sm = e1.state_machine("m", def).unwrap();
    let h = e1.start_execution(&sm, "e", json!({})).unwrap();
    assert!(h.poll_now().is_none());
    drop(h);
    drop(e1);
    // Second process: resume; T1 must not be called again.
    let e2 = process(&store, registry(false, calls.clone()));
    let handles = e2.resume_all().unwrap();
    assert_eq!(handles.len(), 1);
    let out = handles[0].poll_now().unwrap();
    assert_eq!(out.output, Some(json!({"one": "sns", "two": "sqs"})));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let hist = store.history(&out.execution_arn).unwrap();
    let ids: Vec<u64> = hist.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=hist.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        store
            .get_execution(&out.execution_arn)
            .unwrap()
            .unwrap()
            .status,
        ExecutionStatus::Succeeded
    );
}

#[test]
fn heartbeat_timeout_without_heartbeats() {
    let mut reg = ResourceRegistry::new();
    reg.register(
        "arn:aws:states:::sqs:sendMessage",
        resource(|_, _| Answer::Now(Ok(json!({})))),
    );
    let engine = Engine::builder().resources(reg).build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken",
               "TimeoutSeconds":600,"HeartbeatSeconds":5,"End":true}}}"#,
        )
        .unwrap();
    let out = run_at_once(&engine, &sm, json!({}));
    assert_eq!(out.status, ExecutionStatus::Failed);
    assert_eq!(out.error.as_deref(), Some("States.Timeout"));
    let types = event_types(&engine, &out.execution_arn);
    assert_eq!(types[types.len() - 2], "TaskTimedOut");
}

#[test]
fn stop_execution_aborts() {
    let engine = Engine::builder()
        .clock(Arc::new(asl::VirtualClock::new().with_horizon(1000)))
        .build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":60,"End":true}}}"#,
        )
        .unwrap();
    let h = engine.start_execution(&sm, "e", json!({})).unwrap();
    assert!(h.poll_now().is_none());
    assert!(engine.stop_execution(
        &h.execution_arn,
        Some("Stop".into()),
        Some("by test".into())
    ));
    let out = h.poll_now().unwrap();
    assert_eq!(out.status, ExecutionStatus::Aborted);
    let hist = engine.history(&h.execution_arn).unwrap();
    assert_eq!(
        hist.last().map(|e| e.event_type.as_str()),
        Some("ExecutionAborted")
    );
    assert_eq!(
        engine
            .describe_execution(&h.execution_arn)
            .unwrap()
            .unwrap()
            .status,
        ExecutionStatus::Aborted
    );
    assert!(!engine.stop_execution(&h.execution_arn, None, None));
}

#[test]
fn endless_loop_hits_history_limit() {
    let engine = Engine::builder().build();
    // Without any terminal state the definition is rejected (MISSING_END_STATE).
    assert!(
        engine
            .state_machine(
                "m",
                r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"A"}}}"#
            )
            .is_err()
    );
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"A"},"Z":{"Type":"Succeed"}}}"#,
        )
        .unwrap();
    let out = run_at_once(&engine, &sm, json!({}));
    assert_eq!(out.status, ExecutionStatus::Failed);
    assert_eq!(out.error.as_deref(), Some("States.Runtime"));
}

#[test]
fn resume_matches_interleaved_parallel_branches() {
    let store: Arc<InMemoryStore> = Arc::new(InMemoryStore::new());
    let def = r#"{"StartAt":"P","States":{"P":{"Type":"Parallel","End":true,"Branches":[
        {"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::a","End":true}}},
        {"StartAt":"B","States":{"B":{"Type":"Task","Resource":"arn:aws:states:::b","Next":"C"},
                                 "C":{"Type":"Task","Resource":"arn:aws:states:::c","End":true}}}]}}}"#;
    let b_calls = Arc::new(AtomicU32::new(0));
    let registry = |first_run: bool, b_calls: Arc<AtomicU32>| {
        let mut reg = ResourceRegistry::new();
        reg.register("arn:aws:states:::a", answers_unless(first_run, json!("a")));
        reg.register("arn:aws:states:::b", counted(&b_calls, json!("b")));
        reg.register("arn:aws:states:::c", answers_unless(first_run, json!("c")));
        reg
    };
    let e1 = process(&store, registry(true, b_calls.clone()));
    let sm = e1.state_machine("m", def).unwrap();
    let h = e1.start_execution(&sm, "e", json!({})).unwrap();
    assert!(h.poll_now().is_none());
    let recorded = store.history(&h.execution_arn).unwrap().len();
    drop(h);
    drop(e1);
    let e2 = process(&store, registry(false, b_calls.clone()));
    let handles = e2.resume_all().unwrap();
    let out = handles[0].poll_now().unwrap();
    assert_eq!(out.output, Some(json!(["a", "c"])));
    assert_eq!(
        b_calls.load(Ordering::SeqCst),
        1,
        "B's recorded result is reused"
    );
    let hist = store.history(&out.execution_arn).unwrap();
    assert!(hist.len() > recorded);
    let mut ids: Vec<u64> = hist.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=hist.len() as u64).collect::<Vec<_>>(),
        "ids unique and gapless"
    );
    assert!(hist.iter().all(|e| e.previous_event_id < e.id));
}

#[test]
fn map_item_batcher_groups_items() {
    let engine = Engine::builder().build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemsPath":"$.xs",
                "ItemSelector":{"v.$":"$$.Map.Item.Value"},
                "ItemBatcher":{"MaxItemsPerBatch":2,"BatchInput":{"k.$":"$.k"}},
                "ItemProcessor":{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},"End":true}}}"#,
        )
        .unwrap();
    let out = run_at_once(&engine, &sm, json!({"xs": [1, 2, 3], "k": "K"}));
    assert_eq!(
        out.output,
        Some(json!([
            {"Items": [{"v": 1}, {"v": 2}], "BatchInput": {"k": "K"}},
            {"Items": [{"v": 3}], "BatchInput": {"k": "K"}}
        ]))
    );
    assert!(
        engine
            .state_machine("w", r#"{"StartAt":"M","States":{"M":{"Type":"Map","ResultWriter":{},"ItemProcessor":{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},"End":true}}}"#)
            .is_err()
    );
}

#[test]
fn ever_deeper_loop_fails_fast() {
    // Found by fuzzing: each pass nests the input one level deeper.
    let engine = Engine::builder().build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Parameters":{"x.$":"$"},"Next":"A"},"Z":{"Type":"Succeed"}}}"#,
        )
        .unwrap();
    let t = std::time::Instant::now();
    let out = run_at_once(&engine, &sm, json!({}));
    assert_eq!(out.status, ExecutionStatus::Failed);
    assert_eq!(out.error.as_deref(), Some("States.Runtime"));
    assert!(t.elapsed().as_secs() < 20);
}

#[test]
fn resumed_wait_sleeps_only_what_is_left() {
    let store: Arc<InMemoryStore> = Arc::new(InMemoryStore::new());
    let t0 = 1_700_000_000_000;
    let def = r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":60,"End":true}}}"#;
    let e1 = Engine::builder()
        .store(store.clone())
        .clock(Arc::new(
            asl::VirtualClock::starting_at(t0).with_horizon(1_000),
        ))
        .build();
    let sm = e1.state_machine("m", def).unwrap();
    let h = e1.start_execution(&sm, "e", json!({})).unwrap();
    assert!(h.poll_now().is_none());
    drop(h);
    drop(e1);
    // 50 s later, a new process: 10 s are left, within this clock's 15 s horizon.
    let e2 = Engine::builder()
        .store(store.clone())
        .clock(Arc::new(
            asl::VirtualClock::starting_at(t0 + 50_000).with_horizon(15_000),
        ))
        .build();
    let hs = e2.resume_all().unwrap();
    let out = hs[0]
        .poll_now()
        .expect("the remaining 10 s fit the horizon");
    assert_eq!(out.status, ExecutionStatus::Succeeded);
}

/// Real time on tokio (the library's `TokioClock` needs the `tokio` feature).
struct RealClock;
impl asl::Clock for RealClock {
    fn now_millis(&self) -> i64 {
        asl::clock::system_now_millis()
    }
    fn sleep(&self, ms: u64) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_background_on_tokio_with_callbacks() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut reg = ResourceRegistry::new();
    reg.register(
        "arn:aws:states:::sqs:sendMessage",
        Arc::new(move |_p: Value, c: TaskContext| -> TaskFuture {
            let tx = tx.clone();
            Box::pin(async move {
                let _ = tx.send(c.task_token.unwrap_or_default());
                Ok(json!({"MessageId": "1"}))
            })
        }),
    );
    let engine = Engine::builder()
        .clock(Arc::new(RealClock))
        .resources(reg)
        .spawner(Arc::new(|f| {
            tokio::spawn(f);
        }))
        .build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"W","States":{
                "W":{"Type":"Wait","Seconds":0,"Next":"P"},
                "P":{"Type":"Parallel","End":true,"Branches":[
                  {"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","HeartbeatSeconds":5,"End":true}}},
                  {"StartAt":"U","States":{"U":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","End":true}}}]}}}"#,
        )
        .unwrap();
    let h = engine.start_execution(&sm, "bg", json!({})).unwrap();
    // A "worker" completes both callbacks from another task.
    let e2 = engine.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(token) = rx.recv().await {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            let _ = e2.send_task_heartbeat(&token);
            e2.send_task_success(&token, json!(n)).unwrap();
            n += 1;
        }
    });
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), h.wait())
        .await
        .expect("finishes");
    assert_eq!(out.status, ExecutionStatus::Succeeded, "{out:?}");
    let mut got = out.output.unwrap().as_array().cloned().unwrap();
    got.sort_by_key(|v| v.as_i64());
    assert_eq!(got, vec![json!(0), json!(1)]);
}

#[test]
fn map_tolerated_failures() {
    let engine = Engine::builder().build();
    let def = |tol: &str| {
        format!(
            r#"{{"StartAt":"M","States":{{"M":{{"Type":"Map",{tol}
                "ItemProcessor":{{"StartAt":"C","States":{{
                  "C":{{"Type":"Choice","Choices":[{{"Variable":"$","NumericGreaterThan":2,"Next":"F"}}],"Default":"OK"}},
                  "F":{{"Type":"Fail","Error":"Bad"}},"OK":{{"Type":"Succeed"}}}}}},"End":true}}}}}}"#
        )
    };
    let run = |tol: &str, name: &str| {
        let sm = engine.state_machine("m", &def(tol)).unwrap();
        engine
            .start_execution(&sm, name, json!([1, 2, 3, 4]))
            .unwrap()
            .poll_now()
            .unwrap()
    };
    // Two of four items fail.
    let out = run("", "a");
    assert_eq!(out.error.as_deref(), Some("Bad"));
    let out = run(r#""ToleratedFailureCount":2,"#, "b");
    assert_eq!(out.status, ExecutionStatus::Succeeded);
    assert_eq!(out.output, Some(json!([1, 2, null, null])));
    let out = run(r#""ToleratedFailureCount":1,"#, "c");
    assert_eq!(
        out.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
    let out = run(r#""ToleratedFailurePercentage":50,"#, "d");
    assert_eq!(out.status, ExecutionStatus::Succeeded);
    let out = run(
        r#""ToleratedFailureCount":5,"ToleratedFailurePercentage":25,"#,
        "e",
    );
    assert_eq!(
        out.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
}

/// AWS `RedriveExecution`: a failed execution goes on from the state that failed. The
/// states before it are not run again, the failed one runs afresh (new invocation, retries
/// from zero) and sees `$$.Execution.RedriveCount`; the history keeps both attempts around
/// `ExecutionRedriven`; a restart in the middle of the redrive finishes it.
#[test]
fn redrive_goes_on_from_the_state_that_failed() {
    let store: Arc<InMemoryStore> = Arc::new(InMemoryStore::new());
    let def = r#"{"StartAt":"Greet","States":{
        "Greet":{"Type":"Pass","Assign":{"greeting":"hi"},"Next":"T1"},
        "T1":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","ResultPath":"$.one","Next":"T2"},
        "T2":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage",
          "Parameters":{"v.$":"$.one","greeting.$":"$greeting","count.$":"$$.Execution.RedriveCount"},
          "Retry":[{"ErrorEquals":["Flaky"],"IntervalSeconds":1,"MaxAttempts":1}],
          "ResultPath":"$.two","End":true}}}"#;
    // T2: 0 fails, 1 never answers (a crash), 2 answers.
    let mode = Arc::new(AtomicU32::new(0));
    let sns_calls = Arc::new(AtomicU32::new(0));
    let sqs_keys = Arc::new(Mutex::new(Vec::new()));
    let registry = || {
        let mut reg = ResourceRegistry::new();
        reg.register(
            "arn:aws:states:::sns:publish",
            counted(&sns_calls, json!("sns")),
        );
        let (m, keys) = (mode.clone(), sqs_keys.clone());
        reg.register(
            "arn:aws:states:::sqs:sendMessage",
            resource(move |p, c| {
                keys.lock().unwrap().push(c.invocation_key.clone());
                by_mode(&m, Failure::new("Flaky", "the queue is down"), p)
            }),
        );
        reg
    };
    let e1 = process(&store, registry());
    let sm = e1.state_machine("m", def).unwrap();
    let h = e1.start_execution(&sm, "e", json!({})).unwrap();
    let failed = h.poll_now().unwrap();
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(sqs_keys.lock().unwrap().len(), 2, "one try and one retry");
    let arn = h.execution_arn.clone();
    assert!(matches!(
        e1.redrive_execution("arn:aws:states:us-east-1:123456789012:execution:m:nope"),
        Err(RedriveError::DoesNotExist(_))
    ));

    // Redriven while T2 still cannot answer; the process "crashes".
    mode.store(1, Ordering::SeqCst);
    let h = e1.redrive_execution(&arn).unwrap();
    assert!(h.poll_now().is_none());
    let running = store.get_execution(&arn).unwrap().unwrap();
    assert_eq!(running.status, ExecutionStatus::Running);
    assert_eq!((running.error, running.stop_date), (None, None));
    assert!(matches!(
        e1.redrive_execution(&arn),
        Err(RedriveError::NotRedrivable(why)) if why.contains("RUNNING")
    ));
    drop(h);
    drop(e1);

    // The next process resumes the redrive and finishes it.
    mode.store(2, Ordering::SeqCst);
    let e2 = process(&store, registry());
    let handles = e2.resume_all().unwrap();
    assert_eq!(handles.len(), 1);
    let out = handles[0].poll_now().unwrap();
    assert_eq!(out.status, ExecutionStatus::Succeeded, "{out:?}");
    assert_eq!(
        out.output,
        Some(json!({"one": "sns", "two": {"v": "sns", "greeting": "hi", "count": 1}}))
    );
    assert_eq!(sns_calls.load(Ordering::SeqCst), 1, "T1 ran once");
    let keys = sqs_keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 4);
    assert_ne!(keys[2], keys[1], "the redriven attempt is a new invocation");
    assert_eq!(keys[3], keys[2], "the resumed one is the same invocation");

    let hist = store.history(&arn).unwrap();
    let ids: Vec<u64> = hist.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=hist.len() as u64).collect::<Vec<_>>());
    let types: Vec<&str> = hist.iter().map(|e| e.event_type.as_str()).collect();
    let failed_at = types.iter().position(|t| *t == "ExecutionFailed").unwrap();
    assert_eq!(types[failed_at + 1], "ExecutionRedriven");
    assert_eq!(
        types.iter().filter(|t| **t == "ExecutionRedriven").count(),
        1
    );
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    let redriven = &hist[failed_at + 1];
    assert_eq!(redriven.previous_event_id, hist[failed_at].id);
    assert_eq!(
        redriven.to_value()["executionRedrivenEventDetails"],
        json!({"redriveCount": 1})
    );
    let t2_entered = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == "TaskStateEntered")
        .count();
    assert_eq!(t2_entered, 3, "T1 once, T2 before and after the redrive");
    assert!(matches!(
        e2.redrive_execution(&arn),
        Err(RedriveError::NotRedrivable(why)) if why.contains("SUCCEEDED")
    ));
}

/// A redrive inside a Parallel state runs again only the branches that failed or were
/// cut short (as AWS does); the branch that succeeded is replayed, its task not invoked
/// again. Both for a branch that failed and for an execution stopped mid-Parallel.
#[test]
fn redrive_inside_a_parallel_reruns_only_the_unfinished_branches() {
    // sqs: 0 fails, 1 never answers, 2 answers.
    let mode = Arc::new(AtomicU32::new(0));
    let (sns_calls, sqs_calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut reg = ResourceRegistry::new();
    reg.register(
        "arn:aws:states:::sns:publish",
        counted(&sns_calls, json!("sent")),
    );
    let (m, c) = (mode.clone(), sqs_calls.clone());
    reg.register(
        "arn:aws:states:::sqs:sendMessage",
        resource(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
            by_mode(
                &m,
                Failure::new("Broken", "the queue is down"),
                json!("queued"),
            )
        }),
    );
    let engine = Engine::builder().resources(reg).build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"P","States":{"P":{"Type":"Parallel","Next":"Done","Branches":[
              {"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","End":true}}},
              {"StartAt":"B","States":{"B":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage","End":true}}}]},
              "Done":{"Type":"Pass","End":true}}}"#,
        )
        .unwrap();
    let counts = || {
        (
            sns_calls.load(Ordering::SeqCst),
            sqs_calls.load(Ordering::SeqCst),
        )
    };

    // B fails: the execution fails; redriven, B runs again and A does not.
    let h = engine.start_execution(&sm, "failed", json!({})).unwrap();
    assert_eq!(h.poll_now().unwrap().status, ExecutionStatus::Failed);
    assert_eq!(counts(), (1, 1));
    // With the queue back, a redrive succeeds with both branches' results.
    let redriven = |arn: &str| {
        mode.store(2, Ordering::SeqCst);
        let out = redrive_at_once(&engine, arn);
        assert_eq!(out.status, ExecutionStatus::Succeeded, "{out:?}");
        assert_eq!(out.output, Some(json!(["sent", "queued"])));
    };
    redriven(&h.execution_arn);
    assert_eq!(counts(), (1, 2), "A once, B twice");
    let types = event_types(&engine, &h.execution_arn);
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(count("ParallelStateEntered"), 1, "{types:?}");
    assert_eq!(count("ParallelStateFailed"), 1);
    assert_eq!(count("ParallelStateSucceeded"), 1);
    assert_eq!(count("TaskSucceeded"), 2, "A before, B after the redrive");

    // Stopped while B waits: ABORTED; redriven, B runs again and A does not.
    mode.store(1, Ordering::SeqCst);
    let h = engine.start_execution(&sm, "stopped", json!({})).unwrap();
    assert!(h.poll_now().is_none());
    assert_eq!(counts(), (2, 3));
    assert!(engine.stop_execution(&h.execution_arn, None, None));
    assert_eq!(h.poll_now().unwrap().status, ExecutionStatus::Aborted);
    redriven(&h.execution_arn);
    assert_eq!(counts(), (2, 4), "A once, B twice");
}

/// Inside an inline Map, a redrive runs again only the iterations that failed.
#[test]
fn redrive_inside_a_map_reruns_only_the_failed_iterations() {
    let broken = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut reg = ResourceRegistry::new();
    let (b, c) = (broken.clone(), calls.clone());
    reg.register(
        "arn:aws:states:::sns:publish",
        resource(move |p, _| {
            c.lock().unwrap().push(p.clone());
            Answer::Now(if p == json!(2) && b.load(Ordering::SeqCst) {
                Err(Failure::new("Broken", "item 2"))
            } else {
                Ok(p)
            })
        }),
    );
    let engine = Engine::builder().resources(reg).build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"Each","States":{"Each":{"Type":"Map","End":true,"ItemsPath":"$.items",
              "ItemProcessor":{"StartAt":"Send","States":{
                "Send":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","InputPath":"$","End":true}}}}}}"#,
        )
        .unwrap();
    let h = engine
        .start_execution(&sm, "e", json!({"items": [1, 2, 3]}))
        .unwrap();
    assert_eq!(h.poll_now().unwrap().status, ExecutionStatus::Failed);
    broken.store(false, Ordering::SeqCst);
    let before = calls.lock().unwrap().len();
    let out = redrive_at_once(&engine, &h.execution_arn);
    assert_eq!(out.status, ExecutionStatus::Succeeded, "{out:?}");
    assert_eq!(out.output, Some(json!([1, 2, 3])));
    let again: Vec<Value> = calls.lock().unwrap()[before..].to_vec();
    // The first attempt: 1 succeeded, 2 failed, and 3 was cut short before its task (the
    // tasks answer at once, so one poll decides). The redrive: 2 again, 3 for the first
    // time, 1 replayed.
    assert_eq!(calls.lock().unwrap()[..before], [json!(1), json!(2)]);
    assert_eq!(again, [json!(2), json!(3)]);
    let succeeded = engine
        .history(&h.execution_arn)
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "MapIterationSucceeded")
        .count();
    assert_eq!(
        succeeded, 3,
        "each iteration succeeded once, over both attempts"
    );
}

/// A Parallel joins after the last event of the branch that finished last. Resumed after a
/// restart, its branches replay in another order: the join must still match the history,
/// or the state after the Parallel would be entered again and its task invoked anew.
#[test]
fn a_resume_after_a_parallel_whose_branches_finished_out_of_order_matches_its_history() {
    let store: Arc<InMemoryStore> = Arc::new(InMemoryStore::new());
    let gate = Arc::new(AtomicBool::new(false));
    let after_keys = Arc::new(Mutex::new(Vec::new()));
    let registry = || {
        let mut reg = ResourceRegistry::new();
        let g = gate.clone();
        // A answers only once the gate opens: it finishes after B.
        reg.register(
            "arn:aws:states:::sns:publish",
            Arc::new(move |_p: Value, _c: TaskContext| -> TaskFuture {
                let g = g.clone();
                Box::pin(async move {
                    futures_util::future::poll_fn(|cx| {
                        if g.load(Ordering::SeqCst) {
                            std::task::Poll::Ready(())
                        } else {
                            cx.waker().wake_by_ref();
                            std::task::Poll::Pending
                        }
                    })
                    .await;
                    Ok(json!("a"))
                })
            }),
        );
        reg.register(
            "arn:aws:states:::sqs:sendMessage",
            resource(|_, _| Answer::Now(Ok(json!("b")))),
        );
        // The state after the Parallel never answers: the process "crashes" there.
        let keys = after_keys.clone();
        reg.register(
            "arn:aws:states:::lambda:invoke",
            resource(move |_, c| {
                keys.lock().unwrap().push(c.invocation_key.clone());
                Answer::Never
            }),
        );
        reg
    };
    let def = r#"{"StartAt":"P","States":{"P":{"Type":"Parallel","Next":"After","Branches":[
      {"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","End":true}}},
      {"StartAt":"B","States":{"B":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage","End":true}}}]},
      "After":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","End":true}}}"#;
    let e1 = process(&store, registry());
    let sm = e1.state_machine("m", def).unwrap();
    let h = e1.start_execution(&sm, "e", json!({})).unwrap();
    assert!(h.poll_now().is_none());
    gate.store(true, Ordering::SeqCst);
    assert!(h.poll_now().is_none());
    let arn = h.execution_arn.clone();
    let before = store.history(&arn).unwrap();
    drop(h);
    drop(e1);

    let e2 = process(&store, registry());
    let handles = e2.resume_all().unwrap();
    assert!(handles[0].poll_now().is_none());
    let after = store.history(&arn).unwrap();
    let show = |h: &[asl::HistoryEvent]| -> Vec<String> {
        h.iter()
            .map(|e| format!("{} {} {}", e.id, e.previous_event_id, e.event_type))
            .collect()
    };
    assert_eq!(show(&after), show(&before), "nothing recorded twice");
    let keys = after_keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[1], keys[0],
        "the same invocation of the state after the Parallel"
    );
}

/// Outer Parallel [Inner Parallel [X, Y] then After, Z]: runs it with the task named
/// `failing` failing, then redrives it with that task mended. Returns the tasks called in
/// the first attempt and in both; the redrive must succeed with both branches' results.
fn nested_parallel_redriven(failing: &str) -> (Vec<String>, Vec<String>) {
    let broken = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut reg = ResourceRegistry::new();
    for (arn, name) in [
        ("arn:aws:states:::sns:publish", "x"),
        ("arn:aws:states:::sqs:sendMessage", "y"),
        ("arn:aws:states:::lambda:invoke", "after"),
        ("arn:aws:states:::events:putEvents", "z"),
    ] {
        let (c, b) = (calls.clone(), broken.clone());
        let fails = name == failing;
        reg.register(
            arn,
            resource(move |_, _| {
                c.lock().unwrap().push(name.to_string());
                Answer::Now(if fails && b.load(Ordering::SeqCst) {
                    Err(Failure::new("Broken", "the service is down"))
                } else {
                    Ok(json!(name))
                })
            }),
        );
    }
    let engine = Engine::builder().resources(reg).build();
    let sm = engine
        .state_machine(
            "m",
            r#"{"StartAt":"Outer","States":{"Outer":{"Type":"Parallel","End":true,"Branches":[
              {"StartAt":"Inner","States":{
                "Inner":{"Type":"Parallel","Next":"After","Branches":[
                  {"StartAt":"X","States":{"X":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","End":true}}},
                  {"StartAt":"Y","States":{"Y":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage","End":true}}}]},
                "After":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","End":true}}},
              {"StartAt":"Z","States":{"Z":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents","End":true}}}]}}}"#,
        )
        .unwrap();
    let h = engine.start_execution(&sm, "e", json!({})).unwrap();
    assert_eq!(h.poll_now().unwrap().status, ExecutionStatus::Failed);
    let first = calls.lock().unwrap().clone();
    broken.store(false, Ordering::SeqCst);
    let out = redrive_at_once(&engine, &h.execution_arn);
    assert_eq!(out.status, ExecutionStatus::Succeeded, "{out:?}");
    assert_eq!(out.output, Some(json!(["after", "z"])));
    let all = calls.lock().unwrap().clone();
    (first, all)
}

fn count_of(calls: &[String], name: &str) -> usize {
    calls.iter().filter(|c| *c == name).count()
}

/// A redrive of an outer Parallel whose first branch holds another Parallel: that branch
/// finished (the inner branches, their join and the state after it) and is replayed;
/// the outer branch that failed runs again.
#[test]
fn redrive_inside_a_nested_parallel_reruns_only_what_did_not_finish() {
    let (first, all) = nested_parallel_redriven("z");
    // Whatever of the outer first branch finished before Z failed is not run again.
    for name in ["x", "y", "after"] {
        assert_eq!(
            count_of(&all, name),
            1,
            "{name}: first {first:?}, all {all:?}"
        );
    }
    assert_eq!(count_of(&all, "z"), 2, "Z failed, then ran again: {all:?}");
}

/// A failure inside the inner one of two nested Parallels: the redrive runs again only the
/// inner branch that failed (not its finished sibling), then what had not run yet.
#[test]
fn redrive_of_a_failure_inside_a_nested_parallel() {
    let (first, all) = nested_parallel_redriven("y");
    assert_eq!(first[..2], ["x".to_string(), "y".to_string()], "{first:?}");
    assert_eq!(count_of(&all, "x"), 1, "X finished: replayed, {all:?}");
    assert_eq!(count_of(&all, "y"), 2, "Y failed, then ran again: {all:?}");
    assert_eq!(count_of(&all, "after"), 1, "{all:?}");
    assert_eq!(count_of(&all, "z"), 1, "{all:?}");
}
