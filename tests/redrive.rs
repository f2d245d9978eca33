//! Redriving what the live projector parked, end to end: a placed order whose stream record
//! was parked gets its view and its workflow once redriven from the CLI; a record that
//! still cannot be processed fails again and stays parked; a replay's letters are refused.

mod common;

use common::*;
use orders::runtime::{Runtime, RuntimeConfig};
use orders_domain::ports::{AppendRequest, EventStore};
use orders_local::store::{LocalStores, NewDeadLetter};
use orders_local::tailer::{TailerConfig, sequence_number, stream_record};
use std::time::Duration;

async fn start(dir: &std::path::Path) -> Runtime {
    Runtime::start_with_workflow(
        RuntimeConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.to_path_buf(),
            observer: None,
            allowed_hosts: vec![],
            allowed_origins: vec![],
            auth: false,
            throttle: false,
        },
        workflow_options(),
    )
    .await
    .expect("runtime starts")
}

/// A copy of `template` (an `OrderPlaced`) for another order id.
fn placed_copy(template: &orders_domain::EventEnvelope, id: &str) -> orders_domain::EventEnvelope {
    let text = serde_json::to_string(template)
        .expect("json")
        .replace(&template.aggregate_id, id)
        .replace(&template.event_id, &format!("{id}-placed"));
    serde_json::from_str(&text).expect("envelope")
}

async fn append(stores: &LocalStores, event: orders_domain::EventEnvelope) -> u64 {
    stores
        .events
        .append(AppendRequest {
            aggregate_id: event.aggregate_id.clone(),
            expected_version: 0,
            events: vec![event],
            idempotency: None,
        })
        .await
        .expect("append");
    stores.events.head_seq()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_order_placed_redriven_from_the_cli_gets_its_view_and_its_workflow() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let first = json(&post(&mut c, "/orders", &[], &order("c-1")).await);
    let first = first["order_id"].as_str().expect("id").to_string();
    eventually(&mut c, &format!("/orders/{first}"), |r| {
        r.status == 200 && json(r)["status"] == "FULFILMENT_REQUESTED"
    })
    .await;
    let template = s
        .runtime
        .stores
        .events
        .load(&first)
        .await
        .expect("load")
        .remove(0);
    s.runtime.shutdown().await.expect("shutdown");

    // What the tailer leaves when it parks an OrderPlaced (it failed every delivery): the
    // event in the log, the checkpoint past it, the record in the dead letters.
    let stores = LocalStores::open(s.dir.path()).expect("stores");
    let parked_id = "01PARKEDORDER0000000000001";
    let event = placed_copy(&template, parked_id);
    let seq = append(&stores, event.clone()).await;
    let config = TailerConfig::default();
    let record = stream_record(seq, &event, &config).expect("record");
    stores
        .read_models
        .park(
            NewDeadLetter {
                source: config.dead_letter_source(),
                key: sequence_number(seq),
                reason: "the handler reported it as a batch item failure (5 attempts)".into(),
                record: serde_json::to_string(&record).expect("json"),
            },
            Some((&config.name, seq)),
        )
        .await
        .expect("park");
    let replay_letter = stores
        .read_models
        .park(
            NewDeadLetter {
                source: "replay".into(),
                key: "o-9#v1 (seq 1)".into(),
                reason: "undecodable".into(),
                record: "{}".into(),
            },
            None,
        )
        .await
        .expect("park");
    drop(stores);

    let runtime = start(s.dir.path()).await;
    let mut c = connect(&runtime).await;
    let url = format!("http://{}", runtime.addr);
    runtime.wait_projected().await;
    assert_eq!(
        get(&mut c, &format!("/orders/{parked_id}")).await.status,
        404,
        "parked: no view, no workflow"
    );

    // An event nobody can decode is parked live, and a redrive cannot help it.
    let mut bad = template.clone();
    bad.aggregate_id = "broken-order".into();
    bad.event_id = "broken-order-event".into();
    bad.event_type = "OrderTeleported".into();
    append(&runtime.stores, bad).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while runtime
        .stores
        .read_models
        .count_dead_letters(Some("stream:projector"))
        .await
        .expect("count")
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the bad event to be parked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = orders_cli(&["dead-letters", "redrive", "--all", "--url", &url]);
    let (out, err) = (
        String::from_utf8_lossy(&all.stdout),
        String::from_utf8_lossy(&all.stderr),
    );
    assert!(!all.status.success(), "{out}{err}");
    assert!(out.contains("redriven 1, failed again 1"), "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("still parked") && err.contains("batch item failure"),
        "{err}"
    );
    assert!(
        err.contains("OrderTeleported"),
        "the projector's reason: {err}"
    );
    // Parked live with the projector's own reason, not only "a batch item failure".
    let letters = runtime
        .stores
        .read_models
        .dead_letters(Some("stream:projector"), 0, 10)
        .await
        .expect("letters");
    assert!(
        letters
            .iter()
            .any(|l| l.reason.contains("OrderTeleported") && l.reason.contains("5 attempts")),
        "{letters:?}"
    );
    // The failed redrive is counted on the letter and shown by the CLI.
    let failed = letters
        .iter()
        .find(|l| l.failed_redrives == 1)
        .expect("the letter that failed again");
    assert!(
        failed
            .last_failure
            .as_ref()
            .is_some_and(|(_, why)| why.contains("OrderTeleported")),
        "{failed:?}"
    );
    let dir = s.dir.path().to_str().expect("UTF-8 path");
    let listed = orders_cli(&["dead-letters", "list", "--data-dir", dir]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("(redrive failed 1 time(s), last: "),
        "{listed}"
    );

    // The redriven order ran the whole loop, once.
    let view = eventually(&mut c, &format!("/orders/{parked_id}"), |r| {
        r.status == 200
            && json(r)["status"] == "FULFILMENT_REQUESTED"
            && json(r)["workflow"]["status"] == "SUCCEEDED"
    })
    .await;
    assert_eq!(
        json(&view)["workflow"]["status"],
        "SUCCEEDED",
        "{}",
        json(&view)
    );
    let reads = &runtime.stores.read_models;
    let left = reads.dead_letters(None, 0, 10).await.expect("letters");
    let keys: Vec<&str> = left.iter().map(|l| l.source.as_str()).collect();
    assert_eq!(keys, ["replay", "stream:projector"], "{left:?}");
    let db = runtime.workflow().expect("workflow").db.clone();
    let executions = db
        .read(|c| orders_local::workflow::services::count(c, "executions"))
        .expect("count");
    assert_eq!(executions, 2, "the first order's and the redriven one's");

    let again = orders_cli(&[
        "dead-letters",
        "redrive",
        &replay_letter.to_string(),
        "--url",
        &url,
    ]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("only those of `stream:projector`"), "{err}");
    runtime.shutdown().await.expect("shutdown");

    let down = orders_cli(&["dead-letters", "redrive", "--all", "--url", &url]);
    assert!(!down.status.success());
    let err = String::from_utf8_lossy(&down.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("is `orders serve` running"), "{err}");
    let submit = orders_cli(&["submit", "--url", &url]);
    assert!(!submit.status.success());
    let err = String::from_utf8_lossy(&submit.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("is `orders serve` running at {url}?")),
        "{err}"
    );

    let which = orders_cli(&["dead-letters", "redrive", "--url", &url]);
    assert!(!which.status.success());
    let err = String::from_utf8_lossy(&which.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("pass its id"), "{err}");
}
