//! The console in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `playwright-core` from `tests/browser/console.mjs`. After an order ran through the
//! workflow, the script checks the executions list, the graph's Parallel branches
//! coloured as succeeded, a click on a state showing its input and output, and saves
//! screenshots. Node, playwright-core (.tools/node) and chromium come from
//! `scripts/tools`; when one is missing this test fails and says so, it never skips.
//!
//! `CONSOLE_SCREENSHOTS_DIR=<dir>` keeps the screenshots (list.png, detail.png) there.
//!
//! `tests/browser/guard.mjs` plays a page on another site against the local server: a
//! forged console form and a DNS-rebound host name are refused, the console still works.
//! `tests/browser/front.mjs` plays the shop's own front-end (an origin given with
//! `--allow-origin`): its fetches get through CORS, another origin's do not.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the script needs, or a message naming what is missing.
fn prerequisites() -> Result<(PathBuf, PathBuf), String> {
    let fix = "run scripts/tools (it installs node's playwright-core into .tools/node and chromium with apt)";
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node is not runnable ({e}): {fix}"))?;
    if !node.status.success() {
        return Err(format!("`node --version` failed: {fix}"));
    }
    let modules = root().join(".tools/node/node_modules");
    if !modules.join("playwright-core/package.json").is_file() {
        return Err(format!(
            "{} has no playwright-core: {fix}",
            modules.display()
        ));
    }
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return Err(format!("{} is missing: {fix}", chromium.display()));
    }
    Ok((modules, chromium))
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path)
        .map(|b| b.len() > 1_000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
        .unwrap_or(false)
}

/// Runs the script, killing it if it outlives `SCRIPT_TIMEOUT`.
fn run_script(modules: &Path, chromium: &Path, script: &str, args: &[String]) -> (bool, String) {
    let mut child = Command::new("node")
        .arg(root().join("tests/browser").join(script))
        .args(args)
        .env("NODE_PATH", modules)
        .env("CHROMIUM", chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    loop {
        match child.try_wait().expect("wait for node") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                break;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let out = child.wait_with_output().expect("node output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_execution_in_a_real_browser() {
    let (modules, chromium) = match prerequisites() {
        Ok(p) => p,
        Err(msg) => panic!("the browser test cannot run: {msg}"),
    };
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let r = post(&mut c, "/orders", &[], &order("c-browser")).await;
    assert_eq!(r.status, 201);
    let id = json(&r)["order_id"].as_str().expect("id").to_string();
    let db = s.runtime.workflow().expect("workflow").db.clone();
    let exec = until("the execution to end", Duration::from_secs(20), || {
        db.find_execution(&id)
            .expect("read")
            .filter(|e| e.status != asl::ExecutionStatus::Running)
    })
    .await;
    assert_eq!(exec.status, asl::ExecutionStatus::Succeeded);

    let tmp = tempfile::tempdir().expect("temp dir");
    let shots = std::env::var_os("CONSOLE_SCREENSHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let base = format!("http://{}", s.runtime.addr);
    let (ok, output) = {
        let (shots, id) = (shots.clone(), id.clone());
        let args = [base, id, shots.display().to_string()];
        tokio::task::spawn_blocking(move || run_script(&modules, &chromium, "console.mjs", &args))
            .await
            .expect("script task")
    };
    assert!(ok, "tests/browser/console.mjs failed:\n{output}");
    for name in ["list.png", "detail.png", "replay.png"] {
        assert!(is_png(&shots.join(name)), "{name} is not a PNG screenshot");
    }
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_site_cannot_redrive_or_read_the_local_server() {
    let (modules, chromium) = match prerequisites() {
        Ok(p) => p,
        Err(msg) => panic!("the browser test cannot run: {msg}"),
    };
    let s = serve_workflow(orders_local::workflow::WorkflowOptions {
        max_receive_count: 1,
        ..workflow_options()
    })
    .await;
    let mut c = connect(&s.runtime).await;
    let r = post(&mut c, "/orders", &[], &order("c-guard")).await;
    assert_eq!(r.status, 201);
    let id = json(&r)["order_id"].as_str().expect("id").to_string();
    let db = s.runtime.workflow().expect("workflow").db.clone();
    let poison = dead_poison(&db).await;

    let args = [format!("http://{}", s.runtime.addr), id, poison];
    let (ok, output) =
        tokio::task::spawn_blocking(move || run_script(&modules, &chromium, "guard.mjs", &args))
            .await
            .expect("script task");
    assert!(ok, "tests/browser/guard.mjs failed:\n{output}");
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shops_own_front_end_calls_the_api_from_the_browser() {
    let (modules, chromium) = match prerequisites() {
        Ok(p) => p,
        Err(msg) => panic!("the browser test cannot run: {msg}"),
    };
    // The front-end's port must be known before the server starts (its origin is allowed).
    let front_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let front = format!("http://localhost:{front_port}");
    let s = serve_workflow_for(workflow_options(), &[], &[&front]).await;

    let args = [
        format!("http://{}", s.runtime.addr),
        front_port.to_string(),
        order("c-front").to_string(),
    ];
    let (ok, output) =
        tokio::task::spawn_blocking(move || run_script(&modules, &chromium, "front.mjs", &args))
            .await
            .expect("script task");
    assert!(ok, "tests/browser/front.mjs failed:\n{output}");
    let orders = orders_in_log(&s.runtime).await;
    assert_eq!(
        orders.len(),
        1,
        "only the allowed origin's order is placed: {orders:?}"
    );
    s.runtime.shutdown().await.expect("shutdown");
}
