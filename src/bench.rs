//! `orders bench api`: drives `POST /orders` against an in-process runtime over TCP from
//! N connections, and reports throughput, latency and append → projection lag.

use crate::client::Connection;
use crate::runtime::{Runtime, RuntimeConfig};
use anyhow::Context;
use hyper::body::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the `bench` commands drive `POST /orders` (shared by `bench api` and `bench e2e`).
#[derive(Debug, Clone, clap::Args)]
pub struct Load {
    /// Keep-alive connections the orders are sent on.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Open-loop rate in orders/s (default: as fast as the connections go).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds of unmeasured load first (caches, page cache).
    #[arg(long, default_value_t = 2)]
    pub warmup_seconds: u64,
}

/// One order the load placed.
#[derive(Debug, Clone)]
pub struct Posted {
    pub order_id: String,
    /// When its `POST` was sent.
    pub sent: Instant,
    /// How long the `POST` took, in ms.
    pub ms: f64,
}

/// What a load run placed, and how many `POST`s did not answer 201 with an order id.
#[derive(Debug, Default)]
pub struct LoadRun {
    pub posted: Vec<Posted>,
    pub errors: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub connections: usize,
    pub target_rate: Option<u64>,
    pub seconds: f64,
    pub orders: usize,
    pub errors: usize,
    pub orders_per_sec: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub lag_ms_p50: f64,
    pub lag_ms_p99: f64,
    pub lag_samples: usize,
}

/// The `p` quantile (0 to 1) of sorted values, 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub async fn api(load: Load) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(load.connections > 0, "--connections must be at least 1");
    let dir = tempdir()?;
    let lags: Arc<Mutex<Vec<f64>>> = Arc::default();
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let lags = lags.clone();
        let measuring = measuring.clone();
        Arc::new(move |e: &orders_domain::EventEnvelope| {
            if measuring.load(std::sync::atomic::Ordering::Relaxed) {
                let now = orders_domain::ports::Clock::now(&orders_local::store::SystemClock);
                if let Ok(mut l) = lags.lock() {
                    l.push((now.millis() - e.occurred_at.millis()) as f64);
                }
            }
        })
    };
    let runtime = Runtime::start(RuntimeConfig {
        addr: "127.0.0.1:0".parse()?,
        data_dir: dir.clone(),
        observer: Some(observer),
        allowed_hosts: vec![],
        allowed_origins: vec![],
        auth: false,
        throttle: false,
    })
    .await?;
    let addr = runtime.addr;
    let body = Bytes::from(serde_json::to_vec(&crate::sample::order("bench"))?);

    // Warm-up: fill caches and the SQLite page cache, unmeasured.
    let warmup = Duration::from_secs(load.warmup_seconds);
    post_orders(addr, &load, warmup, body.clone()).await?;
    runtime.wait_projected().await;
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let run = post_orders(addr, &load, Duration::from_secs(load.seconds), body).await?;
    let seconds = started.elapsed().as_secs_f64();
    runtime.wait_projected().await;
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    runtime.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);

    let mut latencies: Vec<f64> = run.posted.iter().map(|p| p.ms).collect();
    latencies.sort_by(f64::total_cmp);
    let mut lags = lags.lock().map(|l| l.clone()).unwrap_or_default();
    lags.sort_by(f64::total_cmp);
    Ok(BenchReport {
        connections: load.connections,
        target_rate: load.rate,
        seconds,
        orders: latencies.len(),
        errors: run.errors,
        orders_per_sec: latencies.len() as f64 / seconds,
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: latencies.last().copied().unwrap_or(0.0),
        lag_ms_p50: percentile(&lags, 0.50),
        lag_ms_p99: percentile(&lags, 0.99),
        lag_samples: lags.len(),
    })
}

/// `POST`s the order `body` for `duration` from `load.connections` keep-alive connections:
/// closed loop, or open loop at `load.rate` orders/s over all of them.
pub async fn post_orders(
    addr: std::net::SocketAddr,
    load: &Load,
    duration: Duration,
    body: Bytes,
) -> anyhow::Result<LoadRun> {
    let deadline = Instant::now() + duration;
    let interval = load
        .rate
        .map(|r| Duration::from_secs_f64(load.connections as f64 / r.max(1) as f64));
    let mut tasks = Vec::new();
    for i in 0..load.connections {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(addr).await?;
            let mut run = LoadRun::default();
            // Stagger open-loop senders so that they do not fire in lockstep.
            let mut next = Instant::now()
                + interval.map_or(Duration::ZERO, |d| d.mul_f64(i as f64 / 8.0 % 1.0));
            while Instant::now() < deadline {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                let sent = Instant::now();
                let reply = conn
                    .send(http::Method::POST, "/orders", &[], Some(body.clone()))
                    .await?;
                let ms = sent.elapsed().as_secs_f64() * 1000.0;
                let order_id = (reply.status == 201)
                    .then(|| serde_json::from_slice::<serde_json::Value>(&reply.body).ok())
                    .flatten()
                    .and_then(|v| v["order_id"].as_str().map(str::to_string));
                match order_id {
                    Some(order_id) => run.posted.push(Posted { order_id, sent, ms }),
                    None => run.errors += 1,
                }
            }
            anyhow::Ok(run)
        }));
    }
    let mut all = LoadRun::default();
    for t in tasks {
        let run = t.await.context("load task")??;
        all.posted.extend(run.posted);
        all.errors += run.errors;
    }
    Ok(all)
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "orders-bench-{}-{}",
        std::process::id(),
        orders_domain::ports::Clock::now(&orders_local::store::SystemClock).millis()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
