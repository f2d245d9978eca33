//! `orders bench api`: drives `POST /orders` against an in-process runtime over TCP from
//! N connections, and reports throughput, latency and append → projection lag.

use crate::client::Connection;
use crate::runtime::{Runtime, RuntimeConfig};
use anyhow::Context;
use hyper::body::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub connections: usize,
    pub duration: Duration,
    /// Open-loop target rate (orders/s over all connections); `None` = as fast as possible.
    pub rate: Option<u64>,
    pub warmup: Duration,
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub async fn api(opts: BenchOptions) -> anyhow::Result<BenchReport> {
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
    run_load(addr, &opts, opts.warmup, body.clone()).await?;
    runtime.wait_projected().await;
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let (mut latencies, errors) = run_load(addr, &opts, opts.duration, body).await?;
    let seconds = started.elapsed().as_secs_f64();
    runtime.wait_projected().await;
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    runtime.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);

    latencies.sort_by(f64::total_cmp);
    let mut lags = lags.lock().map(|l| l.clone()).unwrap_or_default();
    lags.sort_by(f64::total_cmp);
    Ok(BenchReport {
        connections: opts.connections,
        target_rate: opts.rate,
        seconds,
        orders: latencies.len(),
        errors,
        orders_per_sec: latencies.len() as f64 / seconds,
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: latencies.last().copied().unwrap_or(0.0),
        lag_ms_p50: percentile(&lags, 0.50),
        lag_ms_p99: percentile(&lags, 0.99),
        lag_samples: lags.len(),
    })
}

async fn run_load(
    addr: std::net::SocketAddr,
    opts: &BenchOptions,
    duration: Duration,
    body: Bytes,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let deadline = Instant::now() + duration;
    let per_conn_interval = opts
        .rate
        .map(|r| Duration::from_secs_f64(opts.connections as f64 / r.max(1) as f64));
    let mut tasks = Vec::new();
    for i in 0..opts.connections {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(addr).await?;
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            // Stagger open-loop senders so that they do not fire in lockstep.
            let mut next = Instant::now()
                + per_conn_interval.map_or(Duration::ZERO, |d| d.mul_f64(i as f64 / 8.0 % 1.0));
            while Instant::now() < deadline {
                if let Some(interval) = per_conn_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                let t = Instant::now();
                let reply = conn
                    .send(http::Method::POST, "/orders", &[], Some(body.clone()))
                    .await?;
                if reply.status == 201 {
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.context("load task")??;
        all.extend(l);
        errors += e;
    }
    Ok((all, errors))
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
