//! Differential check of the two engines: `statemachines/order-workflow.asl.json`, deployed
//! to moto with the SAM substitutions and run on the project's `asl` engine with the local
//! SNS/SQS/SES stand-ins, for the same order. Both must deliver the same messages and email,
//! end the same way with the same output (message ids aside), and record the same sequence of
//! history event types.
//!
//! Run inside `scripts/with-emulators` (moto runs the state machine; its Docker-free Lambda
//! echoes the payload, so the local side registers an echoing recorder too).
//!
//! moto quirks, measured against the real executions recorded in the ASL conformance corpus
//! (`../shared/conformance/asl/`), and how the comparison treats them:
//! * moto renders JSON strings (DescribeExecution's output, history inputs, `TaskScheduled`
//!   parameters, task outputs) with Python's separators (`", "`, `": "`); AWS and our engine
//!   render compact JSON. They are compared parsed, never as text.
//! * moto's SES message ids and SQS/SNS message ids have their own formats: every
//!   `message_id`/`MessageId` is masked.
//! * Both engines record `ParallelStateSucceeded` before `ParallelStateExited`. The recorded
//!   real executions cannot arbitrate that one: their successful Parallel histories are
//!   stored with branch events sorted and without Parallel bookkeeping events.
//! * `/moto-api/data.json` (where moto keeps sent email) answers 500 once a Lambda function
//!   exists; no function is created here (moto's Docker-free invoke needs none).

mod aws_support;

use aws_support::order_workflow::{self, MotoResources};
use aws_support::workflow;
use aws_support::{moto, unique};
use orders_local::workflow::services;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// `message_id` / `MessageId` values are random per run and per service: masked.
fn mask(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "message_id" | "MessageId" => Value::String("<message-id>".into()),
                        _ => mask(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(mask).collect()),
        other => other.clone(),
    }
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn details(event: &Value) -> Option<&Value> {
    event
        .as_object()?
        .iter()
        .find(|(k, _)| k.ends_with("EventDetails"))
        .map(|(_, d)| d)
}

/// The history split into threads: the execution's own events, and each Parallel branch's
/// events (keyed by the branch's first state). Branch events interleave differently on each
/// engine, and legitimately so (the branches run concurrently; AWS interleaves them by
/// completion time too), so each branch's sequence is compared on its own.
/// A branch is found through `previousEventId`: its first event points at
/// `ParallelStateStarted`, every later event at an event of the same branch.
fn threads(history: &[Value]) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut main = Vec::new();
    let mut branches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut branch_of: HashMap<u64, String> = HashMap::new();
    let mut parallel_started = None;
    for e in history {
        let t = e["type"].as_str().unwrap_or_default().to_string();
        let id = e["id"].as_u64().unwrap_or_default();
        let prev = e["previousEventId"].as_u64().unwrap_or_default();
        let branch = if t.starts_with("Parallel") || t.starts_with("Execution") {
            None
        } else if parallel_started == Some(prev) {
            details(e)
                .and_then(|d| d["name"].as_str())
                .map(str::to_string)
        } else {
            branch_of.get(&prev).cloned()
        };
        if t == "ParallelStateStarted" {
            parallel_started = Some(id);
        }
        match branch {
            Some(b) => {
                branch_of.insert(id, b.clone());
                branches.entry(b).or_default().push(t);
            }
            None => main.push(t),
        }
    }
    (main, branches)
}

/// Each state's output (parsed, message ids masked), by state name.
fn state_outputs(history: &[Value]) -> BTreeMap<String, Value> {
    history
        .iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("StateExited"))
        })
        .filter_map(|e| {
            let d = details(e)?;
            Some((
                d["name"].as_str()?.to_string(),
                mask(&parse(d["output"].as_str()?)),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_and_our_engine_agree_on_the_order_workflow() {
    let clients = aws_support::clients().await;
    let resources = MotoResources::create();
    let machine = order_workflow::deploy(&clients, &resources).await;
    let order_id = unique("01JDIFF");
    let input = order_workflow::input(&order_id);

    let (aws, aws_history) = workflow::run_on_moto(&clients, &machine, &order_id, &input).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = workflow::local_workflow(dir.path()).await;
    let (ours, our_history) = workflow::run_locally(&wf, &order_id, &input).await;

    // The same outcome.
    assert_eq!(aws["status"], "SUCCEEDED", "moto: {aws}");
    assert_eq!(ours["status"], aws["status"], "ours: {ours}");
    let aws_output = parse(aws["output"].as_str().expect("moto output"));
    let our_output = parse(ours["output"].as_str().expect("our output"));
    assert_eq!(
        mask(&our_output),
        mask(&aws_output),
        "the same output, message ids aside"
    );
    let statuses: Vec<&str> = aws_output["outcome"]["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter_map(|n| n["status"].as_str())
        .collect();
    assert_eq!(statuses, ["SENT", "SENT", "SENT"], "{aws_output}");

    // The same sequence of history event types, per thread.
    let (aws_main, aws_branches) = threads(&aws_history);
    let (our_main, our_branches) = threads(&our_history);
    eprintln!("moto main thread: {aws_main:?}\nmoto branches: {aws_branches:#?}");
    assert_eq!(our_main, aws_main, "the execution's own events");
    assert_eq!(
        aws_branches.len(),
        3,
        "three branches on moto: {aws_branches:?}"
    );
    assert_eq!(our_branches, aws_branches, "each branch's events");
    assert_eq!(
        our_history.len(),
        aws_history.len(),
        "nothing outside the threads"
    );
    // And every state produced the same output.
    assert_eq!(state_outputs(&our_history), state_outputs(&aws_history));
    // Both start the way real Step Functions does (the recorded executions).
    assert_eq!(
        aws_main[..3],
        [
            "ExecutionStarted",
            "ParallelStateEntered",
            "ParallelStateStarted"
        ]
    );
    assert_eq!(
        aws_main.last().map(String::as_str),
        Some("ExecutionSucceeded")
    );

    // The same deliveries: the notification (SNS -> SQS envelope on moto), the fulfilment
    // message, the email.
    let notified = moto::receive(&resources.notification_queue_url);
    assert_eq!(notified.len(), 1, "SNS -> SQS: {notified:?}");
    let envelope = parse(&notified[0]);
    let aws_notification = parse(envelope["Message"].as_str().expect("SNS Message"));
    let fulfilment = moto::receive(&resources.fulfilment_queue_url);
    assert_eq!(fulfilment.len(), 1, "{fulfilment:?}");
    let aws_fulfilment = parse(&fulfilment[0]);
    let data = moto::data_json();
    let subject = format!("Your order {order_id} is confirmed");
    assert!(data.contains(&subject), "moto sent the confirmation email");

    let queue = wf.options.names.queue.clone();
    let (topic, queued, mails) = wf
        .db
        .read(|c| {
            Ok((
                services::topic_messages(c, 10)?,
                services::queue_messages(c, &queue, true, 10)?,
                services::mails(c, 10)?,
            ))
        })
        .expect("read the local services");
    assert_eq!(topic.len(), 1, "{topic:?}");
    assert_eq!(
        parse(&topic[0].message),
        aws_notification,
        "the same notification"
    );
    assert_eq!(
        envelope["MessageAttributes"]["correlation_id"]["Value"],
        input.correlation_id.as_str()
    );
    assert_eq!(
        topic[0].correlation_id.as_deref(),
        Some(input.correlation_id.as_str())
    );
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(
        parse(&queued[0].body),
        aws_fulfilment,
        "the same fulfilment message"
    );
    assert_eq!(aws_fulfilment["order_id"], order_id.as_str());
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].subject, subject);
    assert_eq!(mails[0].to, ["ada@example.com"]);
    wf.shutdown(std::time::Duration::from_secs(5)).await;
}

#[test]
fn threads_follow_previous_event_ids() {
    let ev = |id: u64, prev: u64, t: &str, name: Option<&str>| {
        let mut v = serde_json::json!({"id": id, "previousEventId": prev, "type": t});
        if let Some(n) = name {
            v["stateEnteredEventDetails"] = serde_json::json!({ "name": n });
        }
        v
    };
    // Two branches, interleaved.
    let h = vec![
        ev(1, 0, "ExecutionStarted", None),
        ev(2, 1, "ParallelStateEntered", Some("P")),
        ev(3, 2, "ParallelStateStarted", None),
        ev(4, 3, "PassStateEntered", Some("A")),
        ev(5, 3, "TaskStateEntered", Some("B")),
        ev(6, 4, "PassStateExited", None),
        ev(7, 5, "TaskScheduled", None),
        ev(8, 7, "TaskSucceeded", None),
        ev(9, 8, "ParallelStateSucceeded", None),
        ev(10, 9, "ParallelStateExited", None),
        ev(11, 10, "ExecutionSucceeded", None),
    ];
    let (main, branches) = threads(&h);
    assert_eq!(
        main,
        [
            "ExecutionStarted",
            "ParallelStateEntered",
            "ParallelStateStarted",
            "ParallelStateSucceeded",
            "ParallelStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(branches["A"], ["PassStateEntered", "PassStateExited"]);
    assert_eq!(
        branches["B"],
        ["TaskStateEntered", "TaskScheduled", "TaskSucceeded"]
    );
}
