//! Everything acknowledged is there after the process goes away without shutting down:
//! once by dropping the stores mid-flight, once by a real SIGKILL of a child process.

#[path = "contract/mod.rs"]
mod contract;

use orders_domain::ports::{EventStore, ReadModels};
use orders_local::store::LocalStores;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "ORDERS_LOCAL_KILL9_DIR";

/// Appends of two events (placed + confirmed) with an idempotency record each.
async fn append_order(stores: &LocalStores, id: &str) {
    let events = contract::wrap(
        id,
        0,
        &[
            contract::placed(id, "c-1", contract::money(100, "EUR")),
            contract::confirmed(id),
        ],
        contract::T0,
    );
    let mut req = contract::request(id, 0, events);
    req.idempotency = Some(contract::idem(&format!("key-{id}"), id));
    stores.events.append(req).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_dropping_everything() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Arc::new(LocalStores::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let stores = stores.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for _ in 0..25 {
                let id = contract::unique("order");
                append_order(&stores, &id).await;
                acked.push(id);
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let last = contract::unique("order");
    let v1 = contract::wrap(
        &last,
        0,
        &[contract::placed(&last, "c-9", contract::money(1, "EUR"))],
        0,
    );
    stores
        .read_models
        .apply(&v1[0], &v1[0].decode().unwrap())
        .await
        .unwrap();
    stores
        .read_models
        .set_checkpoint("projector", 42)
        .await
        .unwrap();
    drop(stores);

    let stores = LocalStores::open(dir.path()).unwrap();
    assert_eq!(stores.events.count().await.unwrap(), 800);
    assert_eq!(stores.events.head_seq(), 800);
    assert_eq!(stores.events.count_streams().await.unwrap(), 400);
    for id in &acked {
        assert_eq!(stores.events.load(id).await.unwrap().len(), 2, "{id}");
        assert!(
            stores
                .events
                .idempotency(&format!("key-{id}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    assert!(stores.read_models.order(&last).await.unwrap().is_some());
    assert_eq!(
        stores.read_models.checkpoint("projector").await.unwrap(),
        42
    );
}

/// The child half of the SIGKILL test: appends until killed, printing each acknowledged
/// order id. Does nothing unless started by the parent below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let stores = Arc::new(LocalStores::open(&dir).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let stores = stores.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let id = contract::unique("order");
                append_order(&stores, &id).await;
                // Straight to the pipe: bypasses the test harness's output capture.
                let mut out = std::io::stdout().lock();
                writeln!(out, "ACK {id}").unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["kill9_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.to_string());
        }
        if acked.len() >= 2000 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    // SIGKILL mid-stream: appends are in flight, nothing shuts down.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        acked.len() >= 100,
        "the child acknowledged {} appends",
        acked.len()
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let stores = LocalStores::open(dir.path()).unwrap();
        for id in &acked {
            assert_eq!(stores.events.load(id).await.unwrap().len(), 2, "{id} lost");
        }
        // Whatever else made it in made it in whole: every order has both its events.
        let mut after = None;
        let mut seen = HashSet::new();
        loop {
            let page = stores
                .events
                .list_streams(after.as_deref(), 500)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.aggregate_id.clone());
            for s in &page {
                assert_eq!(s.version, 2, "{} is half-appended", s.aggregate_id);
                seen.insert(s.aggregate_id.clone());
            }
        }
        assert!(seen.len() >= acked.len());
        assert_eq!(stores.events.count().await.unwrap(), 2 * seen.len() as u64);
    });
}
