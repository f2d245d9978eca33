//! Conformance against executions recorded on AWS Step Functions
//! (`../shared/conformance/asl/cases.jsonl`, see its README).
//!
//! Runs every case the engine can run: JSONPath-only definitions that need no AWS
//! service, plus service cases whose Tasks can be stubbed with the task results taken
//! from the recorded history. Compares event types and details (mask tokens are
//! wildcards), final status and output. Prints the pass rate per group and fails if a
//! count drops below `tests/conformance-baseline.json`.
//!
//! `ASL_CONFORMANCE_FILTER=substr` runs matching ids only; `ASL_CONFORMANCE_VERBOSE=1`
//! prints the first difference of every failing case.

use asl::{
    Engine, ExecutionStatus, Failure, ResourceRegistry, TaskContext, TaskFuture, VirtualClock,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

fn corpus_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/asl/cases.jsonl")
}

/// A payload field as a value: AWS returns payloads as JSON text and the corpus parsed
/// some of them, so both sides are parsed once (not recursively: a string inside a
/// payload stays a string).
fn payload(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str::<Value>(s).unwrap_or_else(|_| v.clone()),
        _ => v.clone(),
    }
}

/// The payload fields of an event's details, parsed (see `payload`).
fn normalise_details(v: &Value) -> Value {
    let Value::Object(o) = v else {
        return v.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, val) in o {
        let nv = if k.ends_with("EventDetails") {
            match val {
                Value::Object(d) => Value::Object(
                    d.iter()
                        .map(|(dk, dv)| {
                            let parsed = match dk.as_str() {
                                "input" | "output" | "parameters" | "cause" => payload(dv),
                                "assignedVariables" => match dv {
                                    Value::Object(a) => Value::Object(
                                        a.iter()
                                            .map(|(ak, av)| (ak.clone(), payload(av)))
                                            .collect(),
                                    ),
                                    other => other.clone(),
                                },
                                _ => dv.clone(),
                            };
                            (dk.clone(), parsed)
                        })
                        .collect(),
                ),
                other => other.clone(),
            }
        } else {
            val.clone()
        };
        out.insert(k.clone(), nv);
    }
    Value::Object(out)
}

struct Masks {
    tokens: Vec<String>,
}

impl Masks {
    /// Does `actual` match `expected`, where mask tokens in `expected` match anything?
    fn str_match(&self, expected: &str, actual: &str) -> bool {
        if expected == actual {
            return true;
        }
        // Split expected into literal pieces around mask tokens.
        let mut pieces: Vec<&str> = Vec::new();
        let mut rest = expected;
        let mut any_mask = false;
        loop {
            let next = self
                .tokens
                .iter()
                .filter_map(|t| rest.find(t.as_str()).map(|i| (i, t.len())))
                .min_by_key(|(i, l)| (*i, usize::MAX - l));
            match next {
                Some((i, l)) => {
                    pieces.push(&rest[..i]);
                    rest = &rest[i + l..];
                    any_mask = true;
                }
                None => {
                    pieces.push(rest);
                    break;
                }
            }
        }
        if !any_mask {
            return false;
        }
        let mut pos = 0usize;
        let last = pieces.len() - 1;
        for (k, p) in pieces.iter().enumerate() {
            if k == 0 {
                if !actual.starts_with(p) {
                    return false;
                }
                pos = p.len();
            } else if k == last {
                return actual.len() >= pos + p.len() && actual.ends_with(p);
            } else {
                match actual[pos..].find(p) {
                    Some(i) => pos += i + p.len(),
                    None => return false,
                }
            }
        }
        true
    }

    fn value_match(&self, expected: &Value, actual: &Value) -> Result<(), String> {
        match (expected, actual) {
            (Value::String(e), _) if self.tokens.iter().any(|t| t == e) => Ok(()),
            (Value::String(e), Value::String(a)) => {
                if self.str_match(e, a) {
                    Ok(())
                } else {
                    Err(format!("expected {e:?}, got {a:?}"))
                }
            }
            (Value::String(e), other) => {
                // A masked string may stand for a non-string value.
                if self.tokens.iter().any(|t| e.contains(t.as_str()))
                    && self.str_match(e, &other.to_string())
                {
                    Ok(())
                } else {
                    Err(format!("expected {e:?}, got {other}"))
                }
            }
            (Value::Number(e), Value::Number(a)) => {
                if e.as_f64() == a.as_f64() {
                    Ok(())
                } else {
                    Err(format!("expected {e}, got {a}"))
                }
            }
            (Value::Array(e), Value::Array(a)) => {
                if e.len() != a.len() {
                    return Err(format!(
                        "array length {} vs {}: expected {expected}, got {actual}",
                        e.len(),
                        a.len()
                    ));
                }
                for (i, (x, y)) in e.iter().zip(a).enumerate() {
                    self.value_match(x, y).map_err(|m| format!("[{i}] {m}"))?;
                }
                Ok(())
            }
            (Value::Object(e), Value::Object(a)) => {
                for k in e.keys() {
                    if !a.contains_key(k) {
                        return Err(format!(
                            "missing key {k:?} (expected {expected}, got {actual})"
                        ));
                    }
                }
                for k in a.keys() {
                    if !e.contains_key(k) {
                        return Err(format!(
                            "extra key {k:?} (expected {expected}, got {actual})"
                        ));
                    }
                }
                for (k, x) in e {
                    self.value_match(x, &a[k])
                        .map_err(|m| format!(".{k} {m}"))?;
                }
                Ok(())
            }
            _ if expected == actual => Ok(()),
            _ => Err(format!("expected {expected}, got {actual}")),
        }
    }
}

fn strip_event(e: &Value) -> Value {
    let mut m = e.as_object().cloned().unwrap_or_default();
    m.remove("timestamp");
    m.remove("id");
    m.remove("previousEventId");
    normalise_details(&Value::Object(m))
}

#[derive(Default)]
struct Stats {
    runnable: usize,
    matched: usize,
    total: usize,
}

fn runnable(c: &Value) -> Result<(), &'static str> {
    if c["query_languages_used"] != json!(["JSONPath"]) {
        return Err("JSONata (out of scope)");
    }
    if c["other_resources"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Err("needs S3 item reader/writer");
    }
    let services = c["services"].as_array().cloned().unwrap_or_default();
    if !services.is_empty() {
        if c["kind"] != "execution_history" {
            return Err("service case without recorded history");
        }
        if services
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.contains("activity")))
        {
            return Err("needs activities");
        }
        if c["definition"].to_string().contains("DISTRIBUTED") {
            return Err("task results of distributed-map child executions are not recorded");
        }
    }
    Ok(())
}

/// JSON text as Python's `json.dumps` writes it (the recorded causes came from there).
fn python_json(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// One recorded task outcome.
enum Rec {
    Ok(Value),
    Fail(Failure),
    /// Timed out on AWS: the stub never answers, the engine's timer fires.
    TimedOut,
    /// A callback/.sync task's immediate answer (TaskSubmitted).
    Submitted(Value),
}

/// Task results recorded in the history, in order: the stub replays them.
fn recorded_results(c: &Value) -> VecDeque<Rec> {
    let mut q = VecDeque::new();
    for e in c["history"].as_array().into_iter().flatten() {
        let ty = e["type"].as_str().unwrap_or("");
        let details = e
            .as_object()
            .and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.ends_with("EventDetails"))
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or(Value::Null);
        match ty {
            "TaskSucceeded" | "LambdaFunctionSucceeded" => {
                q.push_back(Rec::Ok(details["output"].clone()))
            }
            "TaskSubmitted" => q.push_back(Rec::Submitted(details["output"].clone())),
            "TaskFailed" | "LambdaFunctionFailed" => {
                let cause = match &details["cause"] {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    // Direct Lambda invocations carry the Python runtime's json.dumps text
                    // (", " and ": "); service integrations carry compact JSON.
                    other if ty == "LambdaFunctionFailed" => Some(python_json(other)),
                    other => Some(other.to_string()),
                };
                q.push_back(Rec::Fail(Failure::bare(
                    details["error"].as_str().unwrap_or("").to_string(),
                    cause,
                )))
            }
            "TaskTimedOut" | "LambdaFunctionTimedOut" => q.push_back(Rec::TimedOut),
            _ => {}
        }
    }
    q
}

enum Outcome {
    Done(asl::ExecutionOutcome, Vec<Value>),
    NotTerminated(Vec<Value>),
    Invalid(String),
}

fn run_case(c: &Value) -> Outcome {
    let queue = Arc::new(Mutex::new(recorded_results(c)));
    let mut reg = ResourceRegistry::new();
    let q = queue.clone();
    let engine_slot: Arc<OnceLock<Engine>> = Arc::new(OnceLock::new());
    let slot = engine_slot.clone();
    reg.register_prefix(
        "arn:",
        Arc::new(move |_p: Value, c: TaskContext| -> TaskFuture {
            let Ok(mut g) = q.lock() else {
                return Box::pin(async { Err(Failure::new("States.TaskFailed", "stub lock")) });
            };
            let next = g.pop_front();
            if let (Some(Rec::Submitted(sub)), Some(token)) = (&next, &c.task_token) {
                // Complete the callback right away with what AWS recorded next.
                let done = g.pop_front();
                if let Some(e) = slot.get() {
                    let _ = match done {
                        Some(Rec::Ok(v)) => e.send_task_success(token, normalise_task_output(v)),
                        Some(Rec::Fail(f)) => e.send_task_failure(
                            token,
                            Some(f.error).filter(|e| !e.is_empty()),
                            f.cause,
                        ),
                        _ => Ok(()),
                    };
                }
                let sub = normalise_task_output(sub.clone());
                return Box::pin(async move { Ok(sub) });
            }
            match next {
                Some(Rec::Ok(v)) | Some(Rec::Submitted(v)) => {
                    Box::pin(async move { Ok(normalise_task_output(v)) })
                }
                Some(Rec::Fail(f)) => Box::pin(async move { Err(f) }),
                Some(Rec::TimedOut) => Box::pin(futures_util::future::pending()),
                None => Box::pin(async {
                    Err(Failure::new("States.TaskFailed", "no recorded result left"))
                }),
            }
        }),
    );
    let engine = Engine::builder()
        .clock(Arc::new(
            // Waits longer than this stay pending: long enough for every recorded Wait,
            // except in the case that was stopped while waiting.
            case_clock(c).with_horizon(if c["status"] == "ExecutionAborted" {
                1000
            } else {
                365 * 24 * 3600 * 1000
            }),
        ))
        .resources(reg)
        .build();
    let _ = engine_slot.set(engine.clone());
    let text = c["definition"].to_string();
    let sm = match engine.state_machine("conformance-sm", &text) {
        Ok(sm) if c["execution_type"] == "EXPRESS" => sm.express(),
        Ok(sm) => sm,
        Err(errs) => return Outcome::Invalid(format!("{errs:?}")),
    };
    let h = match engine.start_execution(&sm, "conformance-exec", c["input"].clone()) {
        Ok(h) => h,
        Err(e) => return Outcome::Invalid(e.to_string()),
    };
    let mut done = h.poll_now();
    if done.is_none() && c["status"] == "ExecutionAborted" {
        // The recording stopped the execution while it was waiting.
        engine.stop_execution(&h.execution_arn, None, None);
        done = h.poll_now();
    }
    let hist: Vec<Value> = engine
        .history(&h.execution_arn)
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_value())
        .collect();
    match done {
        Some(o) => Outcome::Done(o, hist),
        None => Outcome::NotTerminated(hist),
    }
}

/// Task outputs recorded as parsed JSON go back to being values.
fn normalise_task_output(v: Value) -> Value {
    match &v {
        Value::String(s) => serde_json::from_str(s).unwrap_or(v),
        _ => v,
    }
}

fn compare(c: &Value, outcome: &Outcome) -> Result<(), String> {
    let mut tokens: Vec<String> = c["masks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    tokens.sort_by_key(|t| std::cmp::Reverse(t.len()));
    let masks = Masks { tokens };
    let status = c["status"].as_str().unwrap_or("");
    let (got_status, hist) = match outcome {
        Outcome::Invalid(e) => return Err(format!("definition rejected: {e}")),
        Outcome::NotTerminated(h) => ("NotTerminated", h),
        Outcome::Done(o, h) => (
            match o.status {
                ExecutionStatus::Succeeded => "ExecutionSucceeded",
                ExecutionStatus::Failed => "ExecutionFailed",
                ExecutionStatus::TimedOut => "ExecutionTimedOut",
                ExecutionStatus::Aborted => "ExecutionAborted",
                ExecutionStatus::Running => "NotTerminated",
            },
            h,
        ),
    };
    if got_status != status {
        let detail = match outcome {
            Outcome::Done(o, _) => format!("{:?} {:?}", o.error, o.cause),
            _ => String::new(),
        };
        return Err(format!(
            "status: expected {status}, got {got_status} {detail}"
        ));
    }
    if let Outcome::Done(o, _) = outcome {
        if status == "ExecutionSucceeded" {
            let exp = c["output"].clone();
            let got = o.output.clone().unwrap_or(Value::Null);
            masks
                .value_match(&exp, &got)
                .map_err(|m| format!("output: {m}"))?;
        }
        if status == "ExecutionFailed" {
            let cause = |v: &Value| payload(v);
            let e = json!({"error": c.get("error").cloned().unwrap_or(Value::Null),
                           "cause": cause(&c.get("cause").cloned().unwrap_or(Value::Null))});
            let g = json!({"error": o.error, "cause": cause(&json!(o.cause))});
            masks
                .value_match(&e, &g)
                .map_err(|m| format!("error/cause: {m}"))?;
        }
    }
    if c["kind"] != "execution_history" {
        return Ok(());
    }
    let mut expected: Vec<Value> = c["history"].as_array().cloned().unwrap_or_default();
    if c["history_reverse_order"] == true {
        expected.reverse();
    }
    let exp: Vec<Value> = expected.iter().map(strip_event).collect();
    let got: Vec<Value> = hist.iter().map(strip_event).collect();
    if c["history_parallel_normalised"] == true {
        // Branch events are recorded sorted: compare as a multiset.
        let mut used = vec![false; got.len()];
        for e in &exp {
            let found = got
                .iter()
                .enumerate()
                .find(|(i, g)| !used[*i] && masks.value_match(e, g).is_ok())
                .map(|(i, _)| i);
            match found {
                Some(i) => used[i] = true,
                None => return Err(format!("no match for event {e}")),
            }
        }
        let extra: Vec<&Value> = got
            .iter()
            .zip(&used)
            // The recording dropped the Parallel bookkeeping events of nested branches.
            .filter(|(g, u)| !**u && !g["type"].as_str().unwrap_or("").starts_with("Parallel"))
            .map(|(g, _)| g)
            .collect();
        if !extra.is_empty() {
            return Err(format!("extra events: {extra:?}"));
        }
        return Ok(());
    }
    for (i, e) in exp.iter().enumerate() {
        let Some(g) = got.get(i) else {
            return Err(format!(
                "history too short: missing #{} {}",
                i + 1,
                e["type"]
            ));
        };
        if e["type"] != g["type"] {
            return Err(format!(
                "event #{}: expected type {}, got {} ({g})",
                i + 1,
                e["type"],
                g["type"]
            ));
        }
        masks
            .value_match(e, g)
            .map_err(|m| format!("event #{} {}: {m}", i + 1, e["type"]))?;
    }
    if got.len() > exp.len() {
        return Err(format!("history too long: extra {}", got[exp.len()]));
    }
    Ok(())
}

fn ids_match(c: &Value, outcome: &Outcome) -> bool {
    let hist = match outcome {
        Outcome::Done(_, h) | Outcome::NotTerminated(h) => h,
        Outcome::Invalid(_) => return false,
    };
    if c["history_parallel_normalised"] == true || c["kind"] != "execution_history" {
        return true;
    }
    let mut exp = c["history"].as_array().cloned().unwrap_or_default();
    if c["history_reverse_order"] == true {
        exp.reverse();
    }
    exp.len() == hist.len()
        && exp
            .iter()
            .zip(hist)
            .all(|(e, g)| e["id"] == g["id"] && e["previousEventId"] == g["previousEventId"])
}

/// The clock a case runs on: the current time, except where the test code computed the
/// input from its own "now". `test_timestamp_too_far_in_future_boundary[N]` waits until
/// `now + N days` (the corpus holds the timestamp as materialized when it was built), and
/// the limit it probes (2^31 seconds from the state's entry) is relative to the clock: on
/// the real date the N = 24,856 case stopped failing on 2026-11-27. Those cases start at
/// the `now` their input implies.
fn case_clock(c: &Value) -> VirtualClock {
    let implied = c["id"]
        .as_str()
        .and_then(|id| id.split_once("test_timestamp_too_far_in_future_boundary["))
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(days, _)| days.parse::<i64>().ok())
        .zip(
            c["input"]["start_at"]
                .as_str()
                .and_then(asl::timestamp::parse),
        )
        .and_then(|(days, until_ns)| {
            let until_ms = i64::try_from(until_ns / 1_000_000).ok()?;
            Some(until_ms - days * 86_400_000)
        });
    match implied {
        Some(now_ms) => VirtualClock::starting_at(now_ms),
        None => VirtualClock::new(),
    }
}

#[test]
fn conformance() {
    let path = corpus_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!(
            "conformance corpus not found at {}: skipped",
            path.display()
        );
        return;
    };
    let filter = std::env::var("ASL_CONFORMANCE_FILTER").ok();
    let verbose = std::env::var("ASL_CONFORMANCE_VERBOSE").is_ok();
    let mut groups: BTreeMap<String, Stats> = BTreeMap::new();
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut ns_total, mut ns_matched, mut choice_matched, mut choice_total) = (0, 0, 0, 0);
    let mut ns_runnable = 0;
    let (mut all_matched, mut ids_ok, mut panics) = (0, 0, 0);
    for line in text.lines() {
        let Ok(c) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let id = c["id"].as_str().unwrap_or("").to_string();
        if filter.as_ref().is_some_and(|f| !id.contains(f.as_str())) {
            continue;
        }
        let group = c["group"].as_str().unwrap_or("?").to_string();
        let no_service = c["services"].as_array().is_none_or(|a| a.is_empty())
            && c["other_resources"].as_array().is_none_or(|a| a.is_empty());
        let st = groups.entry(group.clone()).or_default();
        st.total += 1;
        if no_service {
            ns_total += 1;
        }
        if group == "choice_operators" {
            choice_total += 1;
        }
        if let Err(why) = runnable(&c) {
            *skipped.entry(why).or_default() += 1;
            continue;
        }
        st.runnable += 1;
        if no_service {
            ns_runnable += 1;
        }
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&c)))
        {
            Ok(o) => o,
            Err(_) => {
                panics += 1;
                println!("PANIC {id}");
                continue;
            }
        };
        match compare(&c, &outcome) {
            Ok(()) => {
                st.matched += 1;
                all_matched += 1;
                if no_service {
                    ns_matched += 1;
                }
                if group == "choice_operators" {
                    choice_matched += 1;
                }
                if ids_match(&c, &outcome) {
                    ids_ok += 1;
                } else if verbose {
                    println!("IDS {id}");
                }
            }
            Err(m) => {
                if verbose {
                    println!("FAIL {id}: {}", m.chars().take(600).collect::<String>());
                }
            }
        }
    }
    println!(
        "\nASL conformance (JSONPath; JSONata cases are out of scope and counted as not runnable)"
    );
    println!(
        "{:<22} {:>6} {:>9} {:>8} {:>8}",
        "group", "cases", "runnable", "matched", "rate"
    );
    for (g, s) in &groups {
        let rate = if s.runnable > 0 {
            100.0 * s.matched as f64 / s.runnable as f64
        } else {
            0.0
        };
        println!(
            "{g:<22} {:>6} {:>9} {:>8} {:>7.1}%",
            s.total, s.runnable, s.matched, rate
        );
    }
    let runnable_total: usize = groups.values().map(|s| s.runnable).sum();
    println!("not runnable: {skipped:?}");
    println!(
        "overall: {all_matched}/{runnable_total} runnable cases match ({:.1}%); event ids/previousEventIds also equal in {ids_ok}",
        100.0 * all_matched as f64 / runnable_total.max(1) as f64
    );
    println!(
        "no-service cases: {ns_matched}/{ns_total} ({:.1}%; {ns_matched}/{ns_runnable} of the JSONPath ones, the rest use JSONata); choice operators: {choice_matched}/{choice_total}",
        100.0 * ns_matched as f64 / ns_total.max(1) as f64
    );
    assert_eq!(panics, 0, "the engine panicked on some cases");
    if filter.is_some() {
        return;
    }
    let baseline_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-baseline.json");
    let baseline: Value = std::fs::read_to_string(&baseline_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(json!({}));
    for (key, got) in [
        ("matched", all_matched),
        ("no_service_matched", ns_matched),
        ("choice_operators_matched", choice_matched),
    ] {
        let min = baseline[key].as_u64().unwrap_or(0) as usize;
        assert!(
            got >= min,
            "conformance regressed: {key} = {got}, baseline {min}"
        );
    }
}
