//! Helpers for the end-to-end tests: a runtime on an ephemeral port in its own data dir.

#![allow(dead_code)]

use orders::client::{Connection, Reply};
use orders::runtime::{Runtime, RuntimeConfig};
use serde_json::Value;
use std::time::{Duration, Instant};

pub struct Served {
    pub runtime: Runtime,
    pub dir: tempfile::TempDir,
}

pub async fn serve() -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = start_in(dir.path()).await;
    Served { runtime, dir }
}

pub async fn start_in(path: &std::path::Path) -> Runtime {
    Runtime::start(config(path)).await.expect("runtime starts")
}

/// `orders serve`'s defaults on an ephemeral port, on `path`.
pub fn config(path: &std::path::Path) -> RuntimeConfig {
    RuntimeConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: path.to_path_buf(),
        observer: None,
        allowed_hosts: vec![],
        allowed_origins: vec![],
        auth: false,
        throttle: false,
    }
}

pub async fn connect(s: &Runtime) -> Connection {
    Connection::open(s.addr).await.expect("connect")
}

pub fn json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {}",
            String::from_utf8_lossy(&reply.body)
        )
    })
}

pub fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn post(
    conn: &mut Connection,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Reply {
    conn.send(
        http::Method::POST,
        path,
        headers,
        Some(serde_json::to_vec(body).expect("json").into()),
    )
    .await
    .expect("request")
}

pub async fn get(conn: &mut Connection, path: &str) -> Reply {
    conn.send(http::Method::GET, path, &[], None)
        .await
        .expect("request")
}

/// Polls `GET path` until `done` holds (bounded): the assertion is on the state reached.
pub async fn eventually(conn: &mut Connection, path: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(conn, path).await;
        if done(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn order(customer: &str) -> Value {
    orders::sample::order(customer)
}

/// A runtime with the order workflow (local SNS/SQS/SES, the queue poller).
pub async fn serve_workflow(options: orders_local::workflow::WorkflowOptions) -> Served {
    serve_workflow_allowing(options, &[]).await
}

/// [`serve_workflow`], also answering to these host names (`--allowed-host`).
pub async fn serve_workflow_allowing(
    options: orders_local::workflow::WorkflowOptions,
    hosts: &[&str],
) -> Served {
    serve_workflow_for(options, hosts, &[]).await
}

/// [`serve_workflow_allowing`], and calls from web pages of these origins (`--allow-origin`).
pub async fn serve_workflow_for(
    options: orders_local::workflow::WorkflowOptions,
    hosts: &[&str],
    origins: &[&str],
) -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::start_with_workflow(
        RuntimeConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            observer: None,
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            auth: false,
            throttle: false,
        },
        options,
    )
    .await
    .expect("runtime starts");
    Served { runtime, dir }
}

/// Workflow options for tests: a short visibility timeout and a quick poller.
pub fn workflow_options() -> orders_local::workflow::WorkflowOptions {
    orders_local::workflow::WorkflowOptions {
        visibility_timeout: Duration::from_millis(300),
        poll_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

/// Polls `check` until it returns `Some` (bounded); panics with `what` on timeout.
pub async fn until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts a message no consumer can decode on the fulfilment queue; returns its message id.
pub async fn send_poison(db: &orders_local::workflow::db::WorkflowDb) -> String {
    let (id, _) = db
        .write(|c| {
            orders_local::workflow::services::send_message(
                c,
                "orders-fulfilment",
                "this is not JSON",
                &serde_json::Map::new(),
                None,
                asl::clock::system_now_millis(),
            )
        })
        .await
        .expect("send");
    id
}

/// Whether the message waits in `queue` (or is in flight there).
pub fn in_queue(
    db: &orders_local::workflow::db::WorkflowDb,
    queue: &str,
    message_id: &str,
) -> bool {
    db.read(|c| orders_local::workflow::services::queue_messages(c, queue, false, 0))
        .expect("read the queue")
        .into_iter()
        .any(|m| m.message_id == message_id)
}

/// A poison message, once it is in the fulfilment dead-letter queue; its message id.
pub async fn dead_poison(db: &orders_local::workflow::db::WorkflowDb) -> String {
    let poison = send_poison(db).await;
    until(
        "the poison message in the DLQ",
        Duration::from_secs(15),
        || in_queue(db, "orders-fulfilment-dlq", &poison).then_some(()),
    )
    .await;
    poison
}

/// Runs the `orders` binary with `args`.
/// The ids of the orders in the server's log (whatever else the workflow has appended to
/// them by now).
pub async fn orders_in_log(s: &Runtime) -> std::collections::BTreeSet<String> {
    let log = s.stores.events.read_stream(0, 1_000).await.expect("log");
    log.into_iter().map(|r| r.aggregate_id).collect()
}

pub fn orders_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(args)
        .output()
        .expect("run orders")
}

/// `orders` run off the test's threads, which may be serving the server it talks to.
pub async fn orders_cli_off_thread(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        orders_cli(&args)
    })
    .await
    .expect("cli task")
}

/// `orders serve` run as its own process on an ephemeral port. Dropped (a test that fails
/// midway), it is killed: it holds neither its data dir nor the harness's output pipe.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `orders` binary, logging warnings only, to the test's stderr.
pub fn quiet_orders() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_orders"));
    cmd.env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::inherit());
    cmd
}

/// Runs `cmd` (the `orders` binary, its environment and stderr set) as `orders serve` on
/// `dir`; returns once it says where it listens.
pub fn spawn_server(mut cmd: std::process::Command, dir: &std::path::Path) -> ServerProcess {
    use std::io::BufRead;
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("orders serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    ServerProcess { child, addr }
}

/// Appends `log` one event at a time, each the next version of its order (nothing
/// projects them here).
pub async fn append_each(
    events: &orders_local::store::SqliteEventStore,
    log: &[orders_domain::EventEnvelope],
) {
    for e in log {
        orders_domain::ports::EventStore::append(
            events,
            orders_domain::ports::AppendRequest {
                aggregate_id: e.aggregate_id.clone(),
                expected_version: e.version - 1,
                events: vec![e.clone()],
                idempotency: None,
            },
        )
        .await
        .expect("append");
    }
}

/// Every side effect the workflow can cause, counted in the local services of `dir`:
/// executions, topic messages, queue messages, emails.
pub fn side_effects(dir: &std::path::Path) -> Vec<u64> {
    let db = orders_local::workflow::db::WorkflowDb::open(dir).expect("workflows.db");
    db.read(|c| {
        ["executions", "topic_messages", "queue_messages", "mail"]
            .iter()
            .map(|t| orders_local::workflow::services::count(c, t))
            .collect::<Result<Vec<u64>, _>>()
    })
    .expect("count effects")
}

/// Appends a copy of `template` as the only event of `order_id`, with a type no decoder
/// knows (`OrderTeleported`).
pub async fn append_undecodable(
    events: &impl orders_domain::ports::EventStore,
    template: &orders_domain::EventEnvelope,
    order_id: &str,
) {
    let mut bad = template.clone();
    bad.aggregate_id = order_id.into();
    bad.event_id = format!("{order_id}-event");
    bad.event_type = "OrderTeleported".into();
    events
        .append(orders_domain::ports::AppendRequest {
            aggregate_id: bad.aggregate_id.clone(),
            expected_version: 0,
            events: vec![bad],
            idempotency: None,
        })
        .await
        .expect("append");
}
