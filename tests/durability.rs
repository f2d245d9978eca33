//! The served binary, stopped politely and killed with SIGKILL: every acknowledged order,
//! its events and its view survive, and the projector resumes from its checkpoint.

mod common;

use common::*;
use orders::client::Connection;
use orders_domain::ports::ReadModels;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

fn start(dir: &std::path::Path) -> ServerProcess {
    spawn_server(quiet_orders(), dir)
}

async fn place(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut c = Connection::open(addr).await.expect("connect");
    let mut ids = vec![];
    for i in 0..n {
        let r = post(&mut c, "/orders", &[], &order(&format!("c-{}", i % 3))).await;
        assert_eq!(r.status, 201);
        ids.push(json(&r)["order_id"].as_str().expect("id").to_string());
    }
    ids
}

async fn assert_all_there(addr: SocketAddr, ids: &[String]) {
    let mut c = Connection::open(addr).await.expect("connect");
    for id in ids {
        let ev = get(&mut c, &format!("/orders/{id}/events")).await;
        assert_eq!(ev.status, 200, "events of acknowledged order {id}");
        let v = eventually(&mut c, &format!("/orders/{id}"), |r| r.status == 200).await;
        assert_eq!(v.status, 200, "view of acknowledged order {id}");
        assert_eq!(json(&v)["order_id"], id.as_str());
    }
}

/// Daily sales count each order once, so they show whether anything was applied twice.
async fn placed_count(dir: &std::path::Path) -> i64 {
    let stores = orders_local::store::LocalStores::open(dir).expect("open");
    let sales = stores.read_models.daily_sales().await.expect("sales");
    sales.iter().map(|s| s.orders_placed).sum()
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_order_and_applies_none_twice() {
    let dir = tempfile::tempdir().expect("dir");
    let mut first = start(dir.path());
    let mut ids = place(first.addr, 40).await;
    // SIGKILL: no shutdown code runs; some orders may not be projected yet.
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");

    let mut second = start(dir.path());
    ids.extend(place(second.addr, 10).await);
    assert_all_there(second.addr, &ids).await;
    second.child.kill().expect("kill -9");
    second.child.wait().expect("reaped");

    let mut third = start(dir.path());
    assert_all_there(third.addr, &ids).await;
    let stores = orders_local::store::LocalStores::open(dir.path()).expect("open");
    assert_eq!(
        stores.events.count_streams().await.expect("count"),
        50,
        "one stream per acknowledged order"
    );
    assert_eq!(
        stores
            .read_models
            .count_dead_letters(None)
            .await
            .expect("dead letters"),
        0
    );
    third.child.kill().expect("kill");
    third.child.wait().expect("reaped");
    assert_eq!(placed_count(dir.path()).await, 50);
}

#[tokio::test]
async fn sigint_stops_cleanly_and_a_restart_serves_the_same_data() {
    let dir = tempfile::tempdir().expect("dir");
    let mut first = start(dir.path());
    let ids = place(first.addr, 5).await;
    assert_all_there(first.addr, &ids).await;
    let status = Command::new("kill")
        .args(["-INT", &first.child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let exit = first.child.wait().expect("exits");
    assert!(exit.success(), "Ctrl-C exits with success, got {exit:?}");

    let mut second = start(dir.path());
    assert_all_there(second.addr, &ids).await;
    second.child.kill().expect("kill");
    second.child.wait().expect("reaped");
    assert_eq!(placed_count(dir.path()).await, 5);
}

/// The one-line error of a command that failed.
fn refused(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "refused with a non-zero exit");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[tokio::test]
async fn a_data_dir_is_served_by_one_server_and_not_seeded_under_it() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().to_str().expect("utf-8 path");
    let mut first = start(dir.path());
    let ids = place(first.addr, 2).await;
    let holder = format!(
        "`orders serve` at http://{}, pid {}",
        first.addr,
        first.child.id()
    );

    // A second server would run a second projector and workflow runtime on the same log.
    let second = orders_cli(&["serve", "--addr", "127.0.0.1:0", "--data-dir", path]);
    let line = refused(&second);
    assert!(line.contains(&format!("is in use by {holder}")), "{line}");
    assert!(line.contains("another --data-dir"), "{line}");

    // Seeded orders would be projected live, and their workflows started.
    let seed = orders_cli(&["seed", "--orders", "3", "--data-dir", path]);
    let line = refused(&seed);
    assert!(line.contains(&holder), "{line}");
    assert!(line.contains("stop it before seeding"), "{line}");
    let status = orders_cli(&["projections", "status", "--data-dir", path]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&format!("in use by {holder}")), "{text}");
    assert_all_there(first.addr, &ids).await;

    // SIGKILL: the OS lets go of the lock, nothing needs clearing.
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");
    let status = orders_cli(&["projections", "status", "--data-dir", path]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("no `orders serve` runs"), "{text}");
    let seed = orders_cli(&["seed", "--orders", "3", "--data-dir", path]);
    assert!(seed.status.success(), "{seed:?}");
    let stores = orders_local::store::LocalStores::open(dir.path()).expect("open");
    assert_eq!(stores.events.count_streams().await.expect("count"), 2 + 3);

    let mut again = start(dir.path());
    assert_all_there(again.addr, &ids).await;
    again.child.kill().expect("kill");
    again.child.wait().expect("reaped");
}

#[tokio::test]
async fn an_interrupted_seed_blocks_the_server_until_it_is_finished_and_starts_no_workflow() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().to_str().expect("utf-8 path");
    // Far more than it writes before the kill.
    let mut seed = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["seed", "--orders", "300000", "--data-dir", path])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orders seed starts");
    // Its progress lines ("seed: N/M events, ...") say when some history is appended (off
    // a terminal it prints them plainly).
    // (Read on until the kill: a closed pipe would end the seed before it.)
    let mut progress = BufReader::new(seed.stderr.take().expect("stderr")).lines();
    let appended = progress.by_ref().map_while(Result::ok).any(|line| {
        line.strip_prefix("seed: ")
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    });
    assert!(appended, "the seed reports appended events");
    seed.kill().expect("kill -9");
    seed.wait().expect("reaped");
    drop(progress);
    let stores = orders_local::store::LocalStores::open(dir.path()).expect("open");
    let seeded = stores.events.count_streams().await.expect("count");
    assert!(seeded > 0 && seeded < 300_000, "killed midway: {seeded}");

    // Its history is in the log, its read models are not: a server would project it live.
    let line = refused(&orders_cli(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        path,
    ]));
    assert!(line.contains("`orders seed` was interrupted"), "{line}");
    assert!(
        line.contains(&format!("orders seed --finish --data-dir {path}")),
        "{line}"
    );
    let status = orders_cli(&["projections", "status", "--data-dir", path]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("was interrupted"),
        "{status:?}"
    );

    let finished = orders_cli(&["seed", "--finish", "--data-dir", path]);
    assert!(finished.status.success(), "{finished:?}");
    assert!(
        String::from_utf8_lossy(&finished.stdout)
            .contains(&format!("built the read models ({seeded} orders)")),
        "{finished:?}"
    );
    let again = orders_cli(&["seed", "--finish", "--data-dir", path]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to finish"),
        "{again:?}"
    );

    // The server starts after the seeded history: the one workflow is the new order's.
    let mut server = start(dir.path());
    let new = place(server.addr, 1).await;
    let mut c = Connection::open(server.addr).await.expect("connect");
    // The order is confirmed a moment before its execution records its own end.
    let confirmed = eventually(&mut c, &format!("/orders/{}", new[0]), |r| {
        r.status == 200 && json(r)["workflow"]["status"] == "SUCCEEDED"
    })
    .await;
    assert_ne!(json(&confirmed)["status"], "PLACED");
    let listed = orders_cli(&["executions", "list", "--data-dir", path]);
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with(&new[0]), "{text}");
    server.child.kill().expect("kill");
    server.child.wait().expect("reaped");
}

/// `orders submit` and `orders dead-letters redrive` without `--url`: the server running on
/// the data dir, whatever its port; `--url` still wins.
#[tokio::test]
async fn commands_that_talk_to_the_server_find_it_through_the_data_dir() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().to_str().expect("utf-8 path");
    let server = start(dir.path());
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_orders"))
            .args(args)
            .env_remove("ORDERS_URL")
            .output()
            .expect("run orders")
    };
    let out = cli(&["submit", "--data-dir", path]);
    assert!(out.status.success(), "{out:?}");
    let placed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the reply");
    let id = placed["order_id"].as_str().expect("order id").to_string();
    assert_all_there(server.addr, &[id]).await;
    let out = cli(&["dead-letters", "redrive", "--all", "--data-dir", path]);
    assert!(out.status.success(), "{out:?}");

    let line = refused(&cli(&[
        "submit",
        "--url",
        "http://127.0.0.1:1",
        "--data-dir",
        path,
    ]));
    assert!(
        line.contains("is `orders serve` running at http://127.0.0.1:1?"),
        "{line}"
    );
}
