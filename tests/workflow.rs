//! The order workflow end to end: HTTP → event log → projector → execution (local SNS,
//! SQS, SES, recorder) → events recorded back → projection; failures, crashes and
//! redeliveries. Every wait is a bounded poll on the state reached.

mod common;

use common::*;
use orders::client::Connection;
use orders_domain::ports::EventStore;
use orders_local::workflow::db::WorkflowDb;
use orders_local::workflow::services;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn open_db(dir: &Path) -> WorkflowDb {
    WorkflowDb::open(dir).expect("workflows.db")
}

/// What the local services hold for one order.
#[derive(Debug, PartialEq, Eq)]
struct Effects {
    sns: usize,
    sqs: usize,
    sqs_consumed: usize,
    mail: usize,
}

fn effects(db: &WorkflowDb, order_id: &str) -> Effects {
    let names = orders_local::workflow::Names::default();
    db.read(|c| {
        let sns = services::topic_messages(c, 0)?
            .iter()
            .filter(|m| m.message.contains(order_id))
            .count();
        let q = services::queue_messages(c, &names.queue, true, 0)?;
        let mine: Vec<_> = q.iter().filter(|m| m.body.contains(order_id)).collect();
        let mail = services::mails(c, 0)?
            .iter()
            .filter(|m| m.subject.contains(order_id))
            .count();
        Ok(Effects {
            sns,
            sqs: mine.len(),
            sqs_consumed: mine.iter().filter(|m| m.state == services::DELETED).count(),
            mail,
        })
    })
    .expect("read effects")
}

fn event_types(events: &[orders_domain::EventEnvelope]) -> Vec<String> {
    events.iter().map(|e| e.event_type.clone()).collect()
}

fn count(types: &[String], t: &str) -> usize {
    types.iter().filter(|x| *x == t).count()
}

async fn place(c: &mut Connection, correlation: &str) -> String {
    let r = post(
        c,
        "/orders",
        &[("x-correlation-id", correlation)],
        &order("c-7"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    json(&r)["order_id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn each_order_runs_the_whole_loop_and_each_effect_happens_once() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(place(&mut c, &format!("corr-{i}")).await);
    }
    let first = Instant::now();
    let confirmed = eventually(&mut c, &format!("/orders/{}", ids[0]), |r| {
        r.status == 200 && json(r)["confirmed_at"].is_string()
    })
    .await;
    let took = first.elapsed();
    let v = json(&confirmed);
    assert!(
        ["CONFIRMED", "FULFILMENT_REQUESTED"].contains(&v["status"].as_str().unwrap_or("")),
        "{v}"
    );
    assert_eq!(v["workflow"]["execution_name"], ids[0].as_str());
    assert_eq!(v["workflow"]["status"], "SUCCEEDED");
    assert!(took < Duration::from_secs(3), "confirmed after {took:?}");

    let db = open_db(s.dir.path());
    for (i, id) in ids.iter().enumerate() {
        let r = eventually(&mut c, &format!("/orders/{id}"), |r| {
            r.status == 200
                && json(r)["status"] == "FULFILMENT_REQUESTED"
                && json(r)["confirmed_at"].is_string()
        })
        .await;
        let v = json(&r);
        assert_eq!(v["status"], "FULFILMENT_REQUESTED", "{v}");
        let channels: Vec<(&str, &str)> = v["notifications"]
            .as_array()
            .expect("notifications")
            .iter()
            .map(|n| {
                (
                    n["channel"].as_str().unwrap_or(""),
                    n["status"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            channels,
            [("sns", "SENT"), ("sqs", "SENT"), ("email", "SENT")]
        );
        let exec = until("the execution to succeed", Duration::from_secs(10), || {
            db.find_execution(id)
                .expect("read")
                .filter(|r| r.status == asl::ExecutionStatus::Succeeded)
        })
        .await;
        assert_eq!(exec.name, *id);
        // FulfilmentRequested is appended before the poller deletes the message.
        until(
            "the fulfilment message to be consumed",
            Duration::from_secs(10),
            || (effects(&db, id).sqs_consumed == 1).then_some(()),
        )
        .await;
        assert_eq!(
            effects(&db, id),
            Effects {
                sns: 1,
                sqs: 1,
                sqs_consumed: 1,
                mail: 1
            }
        );
        let types = event_types(&s.runtime.stores.events.load(id).await.expect("events"));
        for t in ["OrderPlaced", "OrderConfirmed", "FulfilmentRequested"] {
            assert_eq!(count(&types, t), 1, "{t} in {types:?}");
        }
        assert_eq!(types.len(), 3, "{types:?}");

        // The correlation id travels into the message attributes and the email header.
        let corr = format!("corr-{i}");
        let (topic, queue, mail) = db
            .read(|c| {
                Ok((
                    services::topic_messages(c, 0)?,
                    services::queue_messages(c, "orders-fulfilment", true, 0)?,
                    services::mails(c, 0)?,
                ))
            })
            .expect("read");
        let t = topic
            .iter()
            .find(|m| m.message.contains(id.as_str()))
            .expect("sns");
        assert_eq!(t.correlation_id.as_deref(), Some(corr.as_str()));
        assert_eq!(
            t.message_attributes["correlation_id"]["StringValue"],
            corr.as_str()
        );
        let q = queue
            .iter()
            .find(|m| m.body.contains(id.as_str()))
            .expect("sqs");
        assert_eq!(q.correlation_id.as_deref(), Some(corr.as_str()));
        let m = mail
            .iter()
            .find(|m| m.subject.contains(id.as_str()))
            .expect("mail");
        assert!(
            m.raw.contains(&format!("X-Correlation-Id: {corr}\r\n")),
            "{}",
            m.raw
        );
        assert!(m.raw.contains("Content-Type: multipart/alternative"));
        let eml = s
            .dir
            .path()
            .join("mail")
            .join(format!("{}.eml", m.message_id));
        assert_eq!(std::fs::read_to_string(eml).expect(".eml copy"), m.raw);
    }
    let all = db.list(None, 0).expect("list");
    assert_eq!(all.len(), 5);
    s.runtime.shutdown().await.expect("shutdown");
}

/// The last step of the lifecycle: once the fulfilment consumer has taken the order, the
/// warehouse reports the shipment over HTTP; a retried report changes nothing, another
/// shipment and a late cancel are refused, and bad input changes nothing.
#[tokio::test]
async fn an_order_in_fulfilment_ships_once_and_nothing_else_ships() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "corr-ship").await;
    let ship_path = format!("/orders/{id}/ship");
    let parcel = serde_json::json!({"carrier": "UPS", "tracking_number": "1Z999AA10123456784"});
    let in_fulfilment = eventually(&mut c, &format!("/orders/{id}"), |r| {
        // Confirmed too: the recorder and the fulfilment consumer race.
        json(r)["status"] == "FULFILMENT_REQUESTED" && json(r)["confirmed_at"].is_string()
    })
    .await;
    assert_eq!(json(&in_fulfilment)["status"], "FULFILMENT_REQUESTED");
    let version = json(&in_fulfilment)["version"].as_u64().expect("version");
    let events_before = s.runtime.stores.events.load(&id).await.expect("load").len();

    // Bad input: named, nothing appended.
    for (body, field) in [
        (serde_json::json!({"carrier": "UPS"}), "tracking_number"),
        (
            serde_json::json!({"carrier": " ", "tracking_number": "1Z"}),
            "carrier",
        ),
        (
            serde_json::json!({"carrier": "UPS", "tracking_number": "1Z", "eta": "soon"}),
            "eta",
        ),
    ] {
        let bad = post(&mut c, &ship_path, &[], &body).await;
        assert_eq!(bad.status, 422, "{}", String::from_utf8_lossy(&bad.body));
        assert_eq!(
            header(&bad, "content-type"),
            Some("application/problem+json")
        );
        assert!(
            json(&bad)["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .any(|e| e["field"] == field),
            "{}",
            String::from_utf8_lossy(&bad.body)
        );
    }
    let stale = post(&mut c, &ship_path, &[("if-match", "1")], &parcel).await;
    assert_eq!(
        stale.status,
        412,
        "{}",
        String::from_utf8_lossy(&stale.body)
    );
    assert_eq!(
        s.runtime.stores.events.load(&id).await.expect("load").len(),
        events_before
    );

    // Shipped: without If-Match (a warehouse rarely knows the version).
    let shipped = post(
        &mut c,
        &ship_path,
        &[("x-correlation-id", "corr-wh")],
        &parcel,
    )
    .await;
    assert_eq!(
        shipped.status,
        200,
        "{}",
        String::from_utf8_lossy(&shipped.body)
    );
    assert_eq!(json(&shipped)["status"], "SHIPPED");
    assert_eq!(json(&shipped)["version"], version + 1);
    // The carrier's callback retried: the same answer, nothing appended.
    let again = post(&mut c, &ship_path, &[], &parcel).await;
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(json(&again)["version"], version + 1);
    // Another parcel, or a cancel now, is too late.
    let other = post(
        &mut c,
        &ship_path,
        &[],
        &serde_json::json!({"carrier": "DHL", "tracking_number": "00340434"}),
    )
    .await;
    assert_eq!(
        other.status,
        409,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    let cancel = post(
        &mut c,
        &format!("/orders/{id}/cancel"),
        &[("if-match", &(version + 1).to_string())],
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(
        cancel.status,
        409,
        "{}",
        String::from_utf8_lossy(&cancel.body)
    );

    let events = s.runtime.stores.events.load(&id).await.expect("load");
    let types = event_types(&events);
    assert_eq!(count(&types, "OrderShipped"), 1, "{types:?}");
    assert_eq!(events.len(), events_before + 1);
    let last = events.last().expect("events");
    assert_eq!(last.event_type, "OrderShipped");
    assert_eq!(last.correlation_id, "corr-wh");

    let view = eventually(&mut c, &format!("/orders/{id}"), |r| {
        json(r)["status"] == "SHIPPED"
    })
    .await;
    let v = json(&view);
    assert_eq!(v["status"], "SHIPPED");
    assert_eq!(v["fulfilment"]["carrier"], "UPS");
    assert_eq!(v["fulfilment"]["tracking_number"], "1Z999AA10123456784");
    assert!(v["fulfilment"]["shipped_at"].is_string(), "{v}");

    let unknown = post(&mut c, "/orders/no-such-order/ship", &[], &parcel).await;
    assert_eq!(unknown.status, 404);
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_unverified_sender_is_retried_then_caught_and_recorded() {
    let s = serve_workflow(orders_local::workflow::WorkflowOptions {
        sender_verified: false,
        ..workflow_options()
    })
    .await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "corr-unverified").await;
    let db = open_db(s.dir.path());
    // Retry (1 s, then 2 s) before the Catch: allow for it.
    let exec = until("the execution to end", Duration::from_secs(20), || {
        db.find_execution(&id)
            .expect("read")
            .filter(|r| r.status != asl::ExecutionStatus::Running)
    })
    .await;
    assert_eq!(exec.status, asl::ExecutionStatus::Succeeded);

    let view = eventually(&mut c, &format!("/orders/{id}"), |r| {
        json(r)["confirmed_at"].is_string()
    })
    .await;
    let v = json(&view);
    assert!(
        ["CONFIRMED", "FULFILMENT_REQUESTED"].contains(&v["status"].as_str().unwrap_or("")),
        "the order is not stuck: {v}"
    );
    let email = v["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .find(|n| n["channel"] == "email")
        .cloned()
        .expect("email notification");
    assert_eq!(email["status"], "FAILED");
    assert_eq!(email["error"], "SesV2.MessageRejectedException");
    assert!(
        email["cause"]
            .as_str()
            .unwrap_or("")
            .starts_with("Email address is not verified. The following identities failed the check in region US-EAST-1: orders@anycompany.example"),
        "{email}"
    );

    let events = s.runtime.stores.events.load(&id).await.expect("events");
    let types = event_types(&events);
    assert_eq!(count(&types, "NotificationFailed"), 1, "{types:?}");
    assert_eq!(count(&types, "OrderConfirmed"), 1, "{types:?}");
    let failed = events
        .iter()
        .find(|e| e.event_type == "NotificationFailed")
        .expect("NotificationFailed");
    let payload: Value = serde_json::to_value(&failed.payload).expect("payload");
    assert_eq!(payload["channel"], "email", "{payload}");
    assert_eq!(payload["error"], "SesV2.MessageRejectedException");

    // Retry, then Catch: three failed attempts of the email task, and the catch state ran.
    let history = db.history_of(&exec.execution_arn).expect("history");
    let task_failed = history
        .iter()
        .filter(|e| {
            e.event_type == "TaskFailed"
                && e.detail("error")
                    .and_then(|v| v.as_str().map(str::to_string))
                    == Some("SesV2.MessageRejectedException".into())
        })
        .count();
    assert_eq!(task_failed, 3, "1 attempt + 2 retries of States.TaskFailed");
    assert!(history.iter().any(|e| {
        e.event_type == "PassStateEntered"
            && e.detail("name") == Some(Value::from("Confirmation email failed"))
    }));
    assert_eq!(effects(&db, &id).mail, 0);
    assert_eq!(effects(&db, &id).sns, 1);
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_duplicated_stream_delivery_starts_one_execution() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "corr-dup").await;
    let db = open_db(s.dir.path());
    until("the execution to succeed", Duration::from_secs(10), || {
        db.find_execution(&id)
            .expect("read")
            .filter(|r| r.status == asl::ExecutionStatus::Succeeded)
    })
    .await;
    // Deliver the OrderPlaced record again, as a redelivered stream batch would.
    let events = s.runtime.stores.events.load(&id).await.expect("events");
    let placed = events
        .iter()
        .find(|e| e.event_type == "OrderPlaced")
        .expect("placed");
    let starter = s.runtime.workflow().expect("workflow").starter();
    let projector =
        orders_handlers::projector::Projector::live(s.runtime.stores.read_models.clone(), starter);
    for _ in 0..2 {
        let processed = projector.process_envelope(placed).await.expect("processed");
        assert!(!processed.applied, "a duplicate changes no read model");
        assert_eq!(
            processed.started,
            Some(orders_domain::ports::StartOutcome::AlreadyStarted {
                execution_name: id.clone()
            })
        );
    }
    let all = db.list(None, 0).expect("list");
    assert_eq!(all.len(), 1);
    let history = db.history_of(&all[0].execution_arn).expect("history");
    assert_eq!(
        history
            .iter()
            .filter(|e| e.event_type == "ExecutionStarted")
            .count(),
        1
    );
    let once = Effects {
        sns: 1,
        sqs: 1,
        sqs_consumed: 1,
        mail: 1,
    };
    // The queue poller consumes the fulfilment message on its own schedule.
    until(
        "the fulfilment message to be consumed",
        Duration::from_secs(10),
        || (effects(&db, &id).sqs_consumed == 1).then_some(()),
    )
    .await;
    assert_eq!(effects(&db, &id), once);
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_poison_message_ends_in_the_dlq_with_its_reason_and_redrive_moves_it_back() {
    let s = serve_workflow(orders_local::workflow::WorkflowOptions {
        max_receive_count: 2,
        ..workflow_options()
    })
    .await;
    let db = s.runtime.workflow().expect("workflow").db.clone();
    let poison = send_poison(&db).await;
    let dead = || {
        db.read(|c| services::queue_messages(c, "orders-fulfilment-dlq", false, 0))
            .expect("read")
            .into_iter()
            .find(|m| m.message_id == poison)
    };
    let m = until(
        "the poison message in the DLQ",
        Duration::from_secs(10),
        dead,
    )
    .await;
    let reason = m.dead_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("message body is not a fulfilment request"),
        "{reason}"
    );
    assert!(reason.contains("received 2 times"), "{reason}");
    assert_eq!(m.source_queue.as_deref(), Some("orders-fulfilment"));

    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["queue", "dlq", "--data-dir"])
        .arg(s.dir.path())
        .output()
        .expect("orders queue dlq");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&poison) && text.contains("not a fulfilment request"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["queue", "redrive", "--data-dir"])
        .arg(s.dir.path())
        .output()
        .expect("orders queue redrive");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("moved 1 message(s)"));
    // Back on the fulfilment queue, it is received (and fails) again.
    until(
        "the redriven message to be received again",
        Duration::from_secs(10),
        || {
            db.read(|c| services::queue_messages(c, "orders-fulfilment", false, 0))
                .expect("read")
                .into_iter()
                .find(|m| m.message_id == poison && m.receive_count > 0)
                .or_else(|| dead().filter(|m| m.dead_reason.is_some()))
        },
    )
    .await;
    until(
        "the poison message back in the DLQ",
        Duration::from_secs(10),
        dead,
    )
    .await;

    let bad = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["queue", "redrive", "no-such-message", "--data-dir"])
        .arg(s.dir.path())
        .output()
        .expect("orders queue redrive");
    assert!(!bad.status.success());
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
    s.runtime.shutdown().await.expect("shutdown");
}

fn start(dir: &Path, delay: Option<&str>) -> ServerProcess {
    let mut cmd = quiet_orders();
    cmd.env_remove(orders_local::workflow::resources::DELAY_ENV);
    if let Some(d) = delay {
        cmd.env(orders_local::workflow::resources::DELAY_ENV, d);
    }
    spawn_server(cmd, dir)
}

/// `orders serve`'s log on stderr (not a terminal here), in the format `format` asks for:
/// a server started, one order placed and confirmed, then the server killed.
async fn server_log(format: Option<&str>) -> (String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orders"));
    cmd.env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove(orders_local::workflow::resources::DELAY_ENV)
        .env_remove(orders_handlers::telemetry::LOCAL_FORMAT_VAR)
        .stderr(Stdio::piped());
    if let Some(f) = format {
        cmd.env(orders_handlers::telemetry::LOCAL_FORMAT_VAR, f);
    }
    let mut server = spawn_server(cmd, dir.path());
    let mut c = Connection::open(server.addr).await.expect("connect");
    let id = place(&mut c, "corr-log").await;
    let db = open_db(dir.path());
    until("the execution", Duration::from_secs(15), || {
        let r = db.find_execution(&id).ok()??;
        (r.status == asl::ExecutionStatus::Succeeded).then_some(())
    })
    .await;
    server.child.kill().expect("kill");
    let mut log = String::new();
    let mut stderr = server.child.stderr.take().expect("its stderr");
    std::io::Read::read_to_string(&mut stderr, &mut log).expect("the log");
    (id, log)
}

#[tokio::test]
async fn the_log_is_plain_text_off_a_terminal_and_json_lines_on_request() {
    let (id, text) = server_log(None).await;
    assert!(text.contains("stream tailer started"), "{text}");
    assert!(text.contains(&id), "the order's spans name it: {text}");
    assert!(
        !text.contains('\x1b'),
        "no escape codes in a piped log: {text:?}"
    );

    let (id, json) = server_log(Some("json")).await;
    let lines: Vec<Value> = json
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string())
    );
    let started = lines
        .iter()
        .find(|l| l["fields"]["message"] == "workflow started")
        .unwrap_or_else(|| panic!("no workflow start in {json}"));
    assert_eq!(started["span"]["order_id"], id.as_str());
    assert_eq!(started["span"]["correlation_id"], "corr-log");

    let dir = tempfile::tempdir().expect("dir");
    let bad = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["log", "--data-dir"])
        .arg(dir.path())
        .env(orders_handlers::telemetry::LOCAL_FORMAT_VAR, "yaml")
        .output()
        .expect("orders log");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("ORDERS_LOG_FORMAT"), "{stderr}");
}

#[tokio::test]
async fn kill_9_in_the_middle_of_an_execution_then_restart_finishes_it_once() {
    let dir = tempfile::tempdir().expect("dir");
    // The email task waits 30 s before its effect: the kill lands while it waits.
    let mut first = start(dir.path(), Some("sendEmail=30000"));
    let mut c = Connection::open(first.addr).await.expect("connect");
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(place(&mut c, &format!("corr-kill-{i}")).await);
    }
    let db = open_db(dir.path());
    // SNS and SQS are done (and the SQS message consumed), the email is pending.
    until("SNS and SQS effects", Duration::from_secs(15), || {
        ids.iter()
            .all(|id| {
                let e = effects(&db, id);
                e.sns == 1 && e.sqs == 1 && e.sqs_consumed == 1
            })
            .then_some(())
    })
    .await;
    for id in &ids {
        let r = db.find_execution(id).expect("read").expect("execution");
        assert_eq!(r.status, asl::ExecutionStatus::Running);
        assert_eq!(effects(&db, id).mail, 0);
    }
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");

    let mut second = start(dir.path(), None);
    let mut c = Connection::open(second.addr).await.expect("connect");
    for id in &ids {
        let exec = until(
            "the resumed execution to succeed",
            Duration::from_secs(20),
            || {
                db.find_execution(id)
                    .expect("read")
                    .filter(|r| r.status == asl::ExecutionStatus::Succeeded)
            },
        )
        .await;
        assert_eq!(
            effects(&db, id),
            Effects {
                sns: 1,
                sqs: 1,
                sqs_consumed: 1,
                mail: 1
            },
            "each effect once for {id}"
        );
        let history = db.history_of(&exec.execution_arn).expect("history");
        assert_eq!(
            history
                .iter()
                .filter(|e| e.event_type == "ExecutionStarted")
                .count(),
            1
        );
        let v = eventually(&mut c, &format!("/orders/{id}"), |r| {
            json(r)["confirmed_at"].is_string() && json(r)["status"] == "FULFILMENT_REQUESTED"
        })
        .await;
        assert_eq!(json(&v)["workflow"]["status"], "SUCCEEDED");
        let r = get(&mut c, &format!("/orders/{id}/events")).await;
        let types: Vec<String> = json(&r)["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["event_type"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(count(&types, "OrderConfirmed"), 1, "{types:?}");
        assert_eq!(count(&types, "FulfilmentRequested"), 1, "{types:?}");
    }

    // The CLI reads the same store while the server runs.
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["executions", "show", &ids[0], "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("orders executions show");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SUCCEEDED") && text.contains("Send confirmation email"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["executions", "history", &ids[0], "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("orders executions history");
    let h: Value = serde_json::from_slice(&out.stdout).expect("history JSON");
    assert_eq!(h["events"][0]["type"], "ExecutionStarted");
    second.child.kill().expect("kill");
    second.child.wait().expect("reaped");
}

#[test]
fn the_end_to_end_benchmark_counts_every_effect_and_the_cpu_per_order() {
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args([
            "bench",
            "e2e",
            "--rate",
            "100",
            "--connections",
            "4",
            "--seconds",
            "1",
            "--warmup-seconds",
            "0",
            "--timeline",
            "--json",
        ])
        .output()
        .expect("run bench e2e");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let orders = report["orders"].as_u64().expect("orders");
    assert!(orders > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    for effect in [
        "executions_succeeded",
        "sns_messages",
        "sqs_messages",
        "emails",
    ] {
        assert_eq!(report[effect].as_u64(), Some(orders), "{effect}: {report}");
    }
    assert_eq!(
        report["confirmed_samples"].as_u64(),
        Some(orders),
        "{report}"
    );
    let cpu = report["cpu_ms_per_order"].as_f64().expect("cpu");
    assert!(cpu > 0.0 && cpu.is_finite(), "{report}");
    // Linux says how much of the machine the hypervisor gave to others meanwhile.
    let steal = report["host_steal_percent"]
        .as_f64()
        .expect("the host's steal");
    assert!((0.0..=100.0).contains(&steal), "{report}");
    // The timeline splits the same orders by the second they were POSTed in.
    let timeline = report["timeline"].as_array().expect("a timeline");
    let per_second: Vec<u64> = timeline
        .iter()
        .map(|s| s["orders"].as_u64().expect("orders per second"))
        .collect();
    assert_eq!(per_second.iter().sum::<u64>(), orders, "{report}");
    assert_eq!(timeline[0]["second"], 0, "{report}");
    for s in timeline {
        let (p50, p99) = (
            s["confirmed_ms_p50"].as_f64().expect("p50"),
            s["confirmed_ms_p99"].as_f64().expect("p99"),
        );
        assert!(p50 > 0.0 && p50 <= p99, "{s}");
    }
    assert!(
        timeline[0]["cores"].as_f64().expect("cores") > 0.0,
        "{report}"
    );
}

/// What AWS would have dropped by now is gone locally too, and nothing else: a closed
/// execution with its history and task effects, its email (and `.eml` copy), its topic
/// message and its consumed queue message after the execution retention, a dead letter
/// after the dead-letter queue's; a running execution stays whatever its age.
#[tokio::test]
async fn what_is_past_its_retention_is_removed_and_running_executions_stay() {
    use orders_local::workflow::retention::Retention;
    let keep = Duration::from_millis(1_500);
    let s = serve_workflow(orders_local::workflow::WorkflowOptions {
        retention: Retention {
            executions: keep,
            queue: Duration::from_secs(600),
            dead_letter_queue: keep,
            every: Duration::from_millis(100),
        },
        max_receive_count: 1,
        // The recorder, the workflow's last task, holds the second order's execution
        // open for longer than the retention.
        delays: vec![("lambda:invoke".into(), 4_000)],
        ..workflow_options()
    })
    .await;
    let db = s.runtime.workflow().expect("workflow").db.clone();
    let mut c = connect(&s.runtime).await;
    let first = place(&mut c, "retention-1").await;
    let arn_of = |id: &str| {
        db.find_execution(id)
            .expect("read")
            .map(|e| e.execution_arn)
    };
    let first_arn = until("the first execution", Duration::from_secs(10), || {
        arn_of(&first)
    })
    .await;
    let history_rows = |arn: &str| {
        let arn = arn.to_string();
        db.read(move |c| {
            let rows: i64 = c.query_row(
                "SELECT count(*) FROM history_events h JOIN executions e ON e.rowid = h.execution \
                 WHERE e.arn = ?1",
                [&arn],
                |r| r.get(0),
            )?;
            let effects: i64 = c.query_row(
                "SELECT count(*) FROM effects WHERE invocation_key LIKE ?1 || '/%'",
                [&arn],
                |r| r.get(0),
            )?;
            Ok((rows, effects))
        })
        .expect("read")
    };
    // All its effects exist before anything expires.
    until("the first order's effects", Duration::from_secs(10), || {
        let e = effects(&db, &first);
        (e.sns == 1 && e.mail == 1 && e.sqs_consumed == 1).then_some(())
    })
    .await;
    let (rows, task_effects) = history_rows(&first_arn);
    assert!(
        rows > 0 && task_effects > 0,
        "{rows} history rows, {task_effects} effects"
    );
    let mail_dir = s.dir.path().join("mail");
    let eml_count = || std::fs::read_dir(&mail_dir).map(|d| d.count()).unwrap_or(0);
    assert!(eml_count() >= 1);
    let poison = dead_poison(&db).await;

    // After the retention: the first order's traces are gone, the dead letter too.
    until(
        "the first execution removed",
        Duration::from_secs(15),
        || arn_of(&first).is_none().then_some(()),
    )
    .await;
    until("the dead letter removed", Duration::from_secs(10), || {
        (!in_queue(&db, "orders-fulfilment-dlq", &poison)).then_some(())
    })
    .await;
    let gone = until(
        "the first order's messages removed",
        Duration::from_secs(10),
        || {
            let e = effects(&db, &first);
            (e.sns == 0 && e.mail == 0 && e.sqs == 0).then_some(e)
        },
    )
    .await;
    assert_eq!(gone.sqs_consumed, 0);
    assert_eq!(
        history_rows(&first_arn),
        (0, 0),
        "history and task effects removed"
    );

    // A second order: its email is sent at once and expires while the recorder still
    // holds the execution open. Once the email is gone, a sweep has run past the
    // execution's own retention, and the running execution must still be there.
    let second = place(&mut c, "retention-2").await;
    until("the second order's email", Duration::from_secs(10), || {
        (effects(&db, &second).mail == 1).then_some(())
    })
    .await;
    until(
        "the second order's email removed",
        Duration::from_secs(10),
        || (effects(&db, &second).mail == 0 && eml_count() == 0).then_some(()),
    )
    .await;
    let second_exec = db.find_execution(&second).expect("read").expect("kept");
    assert_eq!(
        second_exec.status,
        asl::ExecutionStatus::Running,
        "a running execution is never removed"
    );

    // The running one finishes normally, and its order is confirmed: removal touched
    // nothing it needed.
    until(
        "the second execution to succeed",
        Duration::from_secs(15),
        || {
            db.find_execution(&second)
                .expect("read")
                .filter(|e| e.status == asl::ExecutionStatus::Succeeded)
        },
    )
    .await;
    // The event log is never swept.
    let log = s.runtime.stores.events.load(&first).await.expect("log");
    assert!(
        log.len() >= 2,
        "the first order's events stay: {}",
        log.len()
    );
    s.runtime.shutdown().await.expect("shutdown");
}

/// An execution whose outcome cannot be recorded fails after the recorder's retries (here:
/// its order's OrderPlaced was missing from the log). Once the cause is mended (the event
/// restored), `orders executions redrive` sends it on from "Record outcome": the order is
/// confirmed, and the notification and the email are not sent again. The fulfilment
/// message that failed meanwhile is redriven from its dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_execution_redriven_from_the_cli_records_its_outcome_and_sends_nothing_twice() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let db = open_db(s.dir.path());
    let dir = s.dir.path().display().to_string();
    // The lost order's execution, started while its OrderPlaced is not in the log.
    let lost = "01LOSTORDER000000000000001";
    let (template_id, _) = start_without_its_order(&s, &mut c, &db, lost).await;
    // The recorder's retries: 2 s, 4 s, 8 s.
    let failed = until("the execution to fail", Duration::from_secs(40), || {
        db.find_execution(lost)
            .expect("read")
            .filter(|r| r.status == asl::ExecutionStatus::Failed)
    })
    .await;
    assert_eq!(failed.error.as_deref(), Some("RecorderError"), "{failed:?}");
    let page = get(&mut c, &format!("/console/executions/{lost}")).await;
    assert!(
        String::from_utf8_lossy(&page.body).contains("class=\"redrive\""),
        "the failed execution's page offers Redrive"
    );
    let described = |name: &str| {
        let out = orders_cli(&["executions", "show", name, "--json", "--data-dir", &dir]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("DescribeExecution JSON")
    };
    let d = described(lost);
    assert_eq!(
        (&d["redriveStatus"], &d["redriveCount"]),
        (&Value::from("REDRIVABLE"), &Value::from(0)),
        "{d}"
    );
    let before = effects(&db, lost);
    assert_eq!((before.sns, before.mail), (1, 1), "{before:?}");

    // Mended: the order's OrderPlaced is restored (its workflow exists already: the
    // projector's start counts as done), then the execution is redriven.
    let template = s
        .runtime
        .stores
        .events
        .load(&template_id)
        .await
        .expect("load")
        .remove(0);
    let text = serde_json::to_string(&template)
        .expect("json")
        .replace(&template_id, lost)
        .replace(&template.event_id, &format!("{lost}-placed"));
    let placed: orders_domain::EventEnvelope = serde_json::from_str(&text).expect("envelope");
    s.runtime
        .stores
        .events
        .append(orders_domain::ports::AppendRequest {
            aggregate_id: lost.into(),
            expected_version: 0,
            events: vec![placed],
            idempotency: None,
        })
        .await
        .expect("append");
    let redrive = async |name: &str| {
        orders_cli_off_thread(&["executions", "redrive", name, "--data-dir", &dir]).await
    };
    let out = redrive(lost).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains(&failed.execution_arn), "{said}");
    let succeeded = until("the redriven execution", Duration::from_secs(20), || {
        db.find_execution(lost)
            .expect("read")
            .filter(|r| r.status == asl::ExecutionStatus::Succeeded)
    })
    .await;
    assert_eq!(
        (succeeded.error, succeeded.stop_date.is_some()),
        (None, true)
    );
    let history = db.history_of(&failed.execution_arn).expect("history");
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(count_str(&types, "ExecutionRedriven"), 1, "{types:?}");
    assert_eq!(
        count_str(&types, "ExecutionStarted"),
        1,
        "the same execution"
    );
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    let d = described(lost);
    assert_eq!(d["redriveCount"], 1, "{d}");
    assert!(d["redriveDate"].is_string(), "{d}");
    assert_eq!(d["redriveStatus"], "NOT_REDRIVABLE", "{d}");
    assert!(
        d["redriveStatusReason"]
            .as_str()
            .unwrap_or("")
            .contains("SUCCEEDED"),
        "{d}"
    );

    // The fulfilment message failed meanwhile (no order yet): back from its DLQ.
    let out = orders_cli_off_thread(&["queue", "redrive", "--data-dir", &dir]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = eventually(&mut c, &format!("/orders/{lost}"), |r| {
        r.status == 200 && json(r)["status"] == "FULFILMENT_REQUESTED"
    })
    .await;
    assert!(json(&view)["confirmed_at"].is_string());
    let events = s.runtime.stores.events.load(lost).await.expect("events");
    let types = event_types(&events);
    assert_eq!(count(&types, "OrderConfirmed"), 1, "{types:?}");
    let after = effects(&db, lost);
    assert_eq!(
        (after.sns, after.sqs, after.mail),
        (1, 1, 1),
        "nothing sent twice: {after:?}"
    );

    // What cannot be redriven: a succeeded execution, one that does not exist. One line each.
    for (name, why) in [
        (template_id.as_str(), "Not Redrivable: it is SUCCEEDED"),
        ("no-such-order", "Does Not Exist"),
    ] {
        let out = redrive(name).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(err.contains(why), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    s.runtime.shutdown().await.expect("shutdown");
}

fn count_str(types: &[&str], t: &str) -> usize {
    types.iter().filter(|x| **x == t).count()
}

/// `orders executions stop` ends a running execution ABORTED with the given error and
/// cause (StopExecution), here while its recorder waits between retries; it can then be
/// redriven, and stopping it again is refused with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_execution_stopped_from_the_cli_ends_aborted() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let db = open_db(s.dir.path());
    let stuck = "01STUCKORDER00000000000001";
    let (_, arn) = start_without_its_order(&s, &mut c, &db, stuck).await;
    until(
        "the recorder's first failure",
        Duration::from_secs(20),
        || {
            let history = db.history_of(&arn).expect("history");
            history
                .iter()
                .any(|e| e.event_type == "TaskFailed")
                .then_some(())
        },
    )
    .await;

    let page = get(&mut c, &format!("/console/executions/{stuck}")).await;
    assert!(
        String::from_utf8_lossy(&page.body).contains("class=\"stop\""),
        "a running execution can be stopped from its page"
    );
    let dir = s.dir.path().display().to_string();
    let stop = async |more: &[&str]| {
        let mut args = vec!["executions", "stop", stuck, "--data-dir", &dir];
        args.extend_from_slice(more);
        orders_cli_off_thread(&args).await
    };
    let out = stop(&[
        "--error",
        "Operator.Stop",
        "--cause",
        "the order is being restored",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&arn));
    let aborted = db.find_execution(stuck).expect("read").expect("record");
    assert_eq!(aborted.status, asl::ExecutionStatus::Aborted);
    assert_eq!(aborted.error.as_deref(), Some("Operator.Stop"));
    assert_eq!(
        aborted.cause.as_deref(),
        Some("the order is being restored")
    );
    let history = db.history_of(&arn).expect("history");
    assert_eq!(
        history.last().map(|e| e.event_type.as_str()),
        Some("ExecutionAborted")
    );
    let page = get(&mut c, &format!("/console/executions/{stuck}")).await;
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("class=\"redrive\""),
        "an aborted execution can be redriven"
    );
    assert!(!html.contains("class=\"stop\""), "and not stopped again");

    let out = stop(&[]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Not Running: it is ABORTED"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    s.runtime.shutdown().await.expect("shutdown");
}

/// Stopped while the confirmation email is being sent (the notification and the
/// fulfilment message are out), then redriven: inside the Parallel only the email branch
/// runs again, as on AWS, so each effect exists once and the order is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_stopped_mid_fan_out_redrives_only_the_unfinished_branch() {
    let s = serve_workflow(orders_local::workflow::WorkflowOptions {
        delays: vec![("sendEmail".into(), 4_000)],
        ..workflow_options()
    })
    .await;
    let mut c = connect(&s.runtime).await;
    let db = open_db(s.dir.path());
    let dir = s.dir.path().display().to_string();
    let id = place(&mut c, "corr-mid-fan-out").await;
    let arn = until("the execution", Duration::from_secs(10), || {
        db.find_execution(&id).expect("read")
    })
    .await
    .execution_arn;
    let succeeded = |types: &[&str]| count_str(types, "TaskSucceeded");
    until(
        "the notification and the fulfilment message",
        Duration::from_secs(10),
        || {
            let history = db.history_of(&arn).expect("history");
            let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
            (succeeded(&types) == 2).then_some(())
        },
    )
    .await;
    let out = orders_cli_off_thread(&["executions", "stop", &id, "--data-dir", &dir]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped = db.find_execution(&id).expect("read").expect("record");
    assert_eq!(stopped.status, asl::ExecutionStatus::Aborted);
    let before = effects(&db, &id);
    assert_eq!(
        (before.sns, before.sqs, before.mail),
        (1, 1, 0),
        "{before:?}"
    );

    let out = orders_cli_off_thread(&["executions", "redrive", &id, "--data-dir", &dir]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until("the redriven execution", Duration::from_secs(20), || {
        db.find_execution(&id)
            .expect("read")
            .filter(|r| r.status == asl::ExecutionStatus::Succeeded)
    })
    .await;
    let after = effects(&db, &id);
    assert_eq!((after.sns, after.sqs, after.mail), (1, 1, 1), "{after:?}");
    let history = db.history_of(&arn).expect("history");
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    // SNS and SQS before the stop; the email and the recorder after the redrive.
    assert_eq!(succeeded(&types), 4, "{types:?}");
    assert_eq!(count_str(&types, "ParallelStateEntered"), 1, "{types:?}");
    let view = eventually(&mut c, &format!("/orders/{id}"), |r| {
        json(r)["confirmed_at"].is_string()
    })
    .await;
    assert!(json(&view)["confirmed_at"].is_string(), "{}", json(&view));
    s.runtime.shutdown().await.expect("shutdown");
}

/// Places an order, waits for its execution, and starts by hand an execution for order
/// `missing` with the same input but with no OrderPlaced of `missing` in the log: its
/// recorder fails ("order not found") and retries. Returns the placed order's id and the
/// execution's ARN.
async fn start_without_its_order(
    s: &Served,
    c: &mut Connection,
    db: &WorkflowDb,
    missing: &str,
) -> (String, String) {
    let template_id = place(c, "corr-template").await;
    let done = until("the template's execution", Duration::from_secs(20), || {
        db.find_execution(&template_id)
            .expect("read")
            .filter(|r| r.status == asl::ExecutionStatus::Succeeded)
    })
    .await;
    let input: Value = serde_json::from_str(&done.input.to_string().replace(&template_id, missing))
        .expect("input");
    let wf = s.runtime.workflow().expect("workflow");
    let arn = wf
        .engine
        .start_execution(&wf.state_machine, missing, input)
        .expect("started")
        .execution_arn;
    (template_id, arn)
}
