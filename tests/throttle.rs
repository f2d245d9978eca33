//! `orders serve --throttle`: each API route has the deployed stage's token bucket (100
//! requests/s, bursts of 200); beyond it API Gateway's own 429, and nothing happens.

mod common;

use common::{config, connect, get, json, post};
use orders::runtime::Runtime;
use orders::throttle::BURST;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_past_its_burst_answers_429_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::start(orders::runtime::RuntimeConfig {
        throttle: true,
        ..config(dir.path())
    })
    .await
    .expect("runtime starts");
    let mut c = connect(&runtime).await;

    // The burst passes; the bucket then empties faster than it refills (100/s).
    let mut passed = 0;
    let throttled = loop {
        let r = get(&mut c, "/health").await;
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200);
        passed += 1;
        assert!(passed < 5 * BURST, "never throttled");
    };
    assert!(passed >= BURST, "{passed} passed before the first 429");
    assert_eq!(json(&throttled), json!({"message": "Too Many Requests"}));
    assert_eq!(
        common::header(&throttled, "content-type"),
        Some("application/json")
    );

    // Every route has its own bucket; the console is not part of the API.
    assert_eq!(get(&mut c, "/orders?customer_id=c-1").await.status, 200);
    assert_eq!(get(&mut c, "/console/orders").await.status, 200);
    // The bucket refills at its rate.
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&mut c, "/health").await.status == 429 {
        assert!(Instant::now() < deadline, "the bucket never refilled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // POST /orders: bad bodies take tokens too (throttling comes before anything else).
    let mut refused = 0;
    while post(&mut c, "/orders", &[], &json!({})).await.status != 429 {
        refused += 1;
        assert!(refused < 5 * BURST, "never throttled");
    }
    // A throttled order is not placed: what the log holds is what was answered 201. The
    // orders go at once, from their own connections, so the bucket (refilling at 100/s)
    // stays nearly empty however slow the machine.
    let mut connections = Vec::new();
    for _ in 0..40 {
        connections.push(connect(&runtime).await);
    }
    let sent: Vec<_> = connections
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                post(&mut c, "/orders", &[], &common::order("c-1"))
                    .await
                    .status
            })
        })
        .collect();
    let (mut placed, mut throttled) = (0, 0);
    for status in sent {
        match status.await.expect("joined") {
            201 => placed += 1,
            429 => throttled += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(throttled > 0, "the bucket was empty");
    runtime.wait_projected().await;
    let listed = json(&get(&mut c, "/orders?customer_id=c-1&limit=100").await);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(placed),
        "{listed}"
    );
    assert_eq!(
        runtime.stores.events.count().await.expect("count"),
        placed as u64
    );
    runtime.shutdown().await.expect("shutdown");
}

/// Without --throttle (the default) nothing is throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_nothing_is_throttled() {
    let s = common::serve().await;
    let mut c = connect(&s.runtime).await;
    for _ in 0..(2 * BURST) {
        assert_eq!(get(&mut c, "/health").await.status, 200);
    }
    s.runtime.shutdown().await.expect("shutdown");
}
