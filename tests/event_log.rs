//! `orders log`: the events of every order in log order, from a seeded data dir: the tail,
//! a time range, one type, as lines or JSON; bad input is one line.

mod common;

use common::orders_cli as orders;
use orders_domain::EventEnvelope;
use orders_local::store::LocalStores;

fn ok(args: &[&str]) -> String {
    let out = orders(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn envelopes(text: &str) -> Vec<EventEnvelope> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("an envelope per line"))
        .collect()
}

#[tokio::test]
async fn the_log_shows_the_tail_a_range_and_one_type_of_every_order() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_str().expect("path");
    ok(&["seed", "--orders", "40", "--data-dir", d]);
    let stores = LocalStores::open(dir.path()).expect("open");
    let all: Vec<EventEnvelope> = stores
        .events
        .read_from(0, usize::MAX)
        .await
        .expect("read")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert!(all.len() > 100, "{}", all.len());

    // The tail: the last 50 by default, in log order, as lines naming order, version, type.
    let tail = ok(&["log", "--data-dir", d]);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 50);
    let last = all.last().expect("an event");
    assert!(
        lines[49].contains(&last.aggregate_id)
            && lines[49].contains(&format!("v{}", last.version))
            && lines[49].contains(&last.event_type)
            && lines[49].starts_with(&last.occurred_at.to_string()),
        "{}",
        lines[49]
    );
    let json = envelopes(&ok(&["log", "--data-dir", d, "--json", "--limit", "7"]));
    assert_eq!(json, all[all.len() - 7..]);

    // From a moment on: the first events at or after it, in log order (the seed's log is
    // not in time order: orders interleave, as live).
    let mut times: Vec<_> = all.iter().map(|e| e.occurred_at).collect();
    times.sort();
    let since = times[times.len() / 2];
    let since_text = since.to_string();
    let from = envelopes(&ok(&[
        "log",
        "--data-dir",
        d,
        "--json",
        "--since",
        &since_text,
        "--limit",
        "1000",
    ]));
    let want: Vec<&EventEnvelope> = all.iter().filter(|e| e.occurred_at >= since).collect();
    assert_eq!(from.iter().collect::<Vec<_>>(), want);
    // … up to another, and of one type (in any case).
    let until = times[times.len() * 3 / 4];
    let until_text = until.to_string();
    let placed = envelopes(&ok(&[
        "log",
        "--data-dir",
        d,
        "--json",
        "--since",
        &since_text,
        "--until",
        &until_text,
        "--type",
        "orderplaced",
        "--limit",
        "1000",
    ]));
    let want: Vec<&EventEnvelope> = all
        .iter()
        .filter(|e| e.occurred_at >= since && e.occurred_at <= until)
        .filter(|e| e.event_type == "OrderPlaced")
        .collect();
    assert!(!want.is_empty());
    assert_eq!(placed.iter().collect::<Vec<_>>(), want);
    // Nothing there: said, and not an error.
    let none = ok(&["log", "--data-dir", d, "--since", "2999-01-01T00:00:00Z"]);
    assert!(none.starts_with("no events from 2999-01-01"), "{none}");

    // Bad input: one line, a non-zero exit.
    for (args, says) in [
        (vec!["--type", "OrderTeleported"], "not an event type"),
        (vec!["--since", "yesterday"], "--since"),
        (
            vec![
                "--since",
                "2026-11-29T14:00:00Z",
                "--until",
                "2026-11-29T13:00:00Z",
            ],
            "is before --since",
        ),
        (vec!["--limit", "0"], "1 or more"),
        (vec!["--follow", "--aws"], "cannot be used with"),
    ] {
        let mut all_args = vec!["log", "--data-dir", d];
        all_args.extend(args);
        let out = orders(&all_args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all_args:?}");
        assert!(
            err.trim().lines().count() == 1 && err.contains(says),
            "{all_args:?}: {err}"
        );
    }
    let missing = orders(&["log", "--data-dir", &format!("{d}/nowhere")]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && err.contains("no event store"),
        "{err}"
    );
}

/// `--follow`: the tail first, then each event as it is appended (filtered), until stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_follows_what_is_appended() {
    let s = common::serve().await;
    let mut c = common::connect(&s.runtime).await;
    let first = common::post(&mut c, "/orders", &[], &common::order("c-f1")).await;
    assert_eq!(first.status, 201);
    let first = common::json(&first)["order_id"]
        .as_str()
        .expect("id")
        .to_string();
    let dir = s.dir.path().to_str().expect("path").to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_orders"))
        .args([
            "log",
            "--follow",
            "--json",
            "--type",
            "OrderPlaced",
            "--data-dir",
            &dir,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn orders log --follow");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<EventEnvelope>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(e) = serde_json::from_str(&line) else {
                break;
            };
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("a line within 10 s")
    };
    // What was there: the first order's placement.
    assert_eq!(next().aggregate_id, first);
    // Appended after the start: a cancellation (filtered out), then a placement.
    let cancel = format!("/orders/{first}/cancel");
    let r = common::post(
        &mut c,
        &cancel,
        &[("if-match", "1")],
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(r.status, 200);
    let second = common::post(&mut c, "/orders", &[], &common::order("c-f2")).await;
    let second = common::json(&second)["order_id"]
        .as_str()
        .expect("id")
        .to_string();
    let e = next();
    assert_eq!(
        (e.aggregate_id, e.event_type.as_str()),
        (second, "OrderPlaced")
    );
    child.kill().expect("stop the follower");
    let _ = child.wait();
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "nothing else was printed"
    );
    s.runtime.shutdown().await.expect("shutdown");
}
