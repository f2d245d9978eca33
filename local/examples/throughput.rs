//! Throughput of the SQLite stores and the tailer: a measurement, not a check (numbers from
//! a debug build mean little):
//!
//! `cargo run --release -p orders-local --example throughput`

#[path = "../tests/contract/mod.rs"]
mod contract;

use orders_domain::ports::{EventStore, ReadModels};
use orders_local::store::LocalStores;
use orders_local::tailer::{self, TailerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What `POST /orders` with an `Idempotency-Key` appends: one event and its key.
async fn place(stores: &LocalStores) {
    let id = contract::unique("order");
    let events = contract::wrap(
        &id,
        0,
        &[contract::placed(
            &id,
            &contract::unique("c"),
            contract::money(2500, "EUR"),
        )],
        contract::T0,
    );
    let mut req = contract::request(&id, 0, events);
    req.idempotency = Some(contract::idem(&format!("key-{id}"), &id));
    stores.events.append(req).await.unwrap();
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

async fn run_appenders(
    stores: Arc<LocalStores>,
    concurrency: usize,
    total: usize,
) -> Vec<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (stores, next) = (stores.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                place(&stores).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

async fn append_throughput() {
    for (concurrency, total) in [(1, 5_000), (8, 20_000), (64, 40_000), (256, 40_000)] {
        let dir = tempfile::tempdir().unwrap();
        let stores = Arc::new(LocalStores::open(dir.path()).unwrap());
        let started = Instant::now();
        let lat = run_appenders(stores.clone(), concurrency, total).await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(stores.events.count().await.unwrap(), total as u64);
        println!(
            "appends: {concurrency:>3} concurrent: {total} in {secs:.2}s = {:>6.0}/s  p50 {:?}  p99 {:?}",
            total as f64 / secs,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
    }
}

async fn read_model_apply_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Arc::new(LocalStores::open(dir.path()).unwrap());
    let n = 10_000;
    run_appenders(stores.clone(), 64, n).await;
    let log: Vec<_> = stores
        .events
        .read_from(0, n)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| {
            let ev = e.decode().unwrap();
            (e, ev)
        })
        .collect();
    let started = Instant::now();
    for (e, ev) in &log {
        stores.read_models.apply(e, ev).await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!("apply one by one (a commit each): {:.0}/s", n as f64 / secs);

    let dir = tempfile::tempdir().unwrap();
    let other = LocalStores::open(dir.path()).unwrap();
    let started = Instant::now();
    for chunk in log.chunks(100) {
        other
            .read_models
            .apply_many(None, chunk.to_vec())
            .await
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "apply_many by 100 (a commit per 100): {:.0}/s",
        n as f64 / secs
    );
}

async fn projection_throughput_and_lag() {
    // Catch-up: the tailer and read models alone, over a backlog.
    let dir = tempfile::tempdir().unwrap();
    let stores = Arc::new(LocalStores::open(dir.path()).unwrap());
    let backlog = 20_000;
    run_appenders(stores.clone(), 64, backlog).await;
    let started = Instant::now();
    let t = tailer::spawn(
        stores.events.clone(),
        stores.read_models.clone(),
        orders_handlers::projector::Projector::replay(stores.read_models.clone()),
        TailerConfig::default(),
    );
    t.wait_for(backlog as u64).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "projection catch-up: {backlog} events in {secs:.2}s = {:.0}/s",
        backlog as f64 / secs
    );
    t.shutdown().await;

    // Live: appenders at a fixed rate while the tailer projects; lag = ack → checkpoint.
    for rate in [1_000u64, 3_000] {
        let dir = tempfile::tempdir().unwrap();
        let stores = Arc::new(LocalStores::open(dir.path()).unwrap());
        let t = Arc::new(tailer::spawn(
            stores.events.clone(),
            stores.read_models.clone(),
            orders_handlers::projector::Projector::replay(stores.read_models.clone()),
            TailerConfig::default(),
        ));
        let total = rate as usize * 3;
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let mut waiters = Vec::new();
        let mut lat = Vec::new();
        for _ in 0..total {
            tick.tick().await;
            let (stores, t) = (stores.clone(), t.clone());
            waiters.push(tokio::spawn(async move {
                let a = Instant::now();
                place(&stores).await;
                let acked = Instant::now();
                // The head right after the ack covers this append (or a later one).
                t.wait_for(stores.events.head_seq()).await;
                (acked - a, acked.elapsed())
            }));
        }
        let mut lag = Vec::new();
        for w in waiters {
            let (l, g) = w.await.unwrap();
            lat.push(l);
            lag.push(g);
        }
        lat.sort();
        lag.sort();
        println!(
            "live at {rate}/s: append p50 {:?} p99 {:?}; projection lag p50 {:?} p99 {:?}",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lag, 0.5),
            pct(&lag, 0.99)
        );
        if let Ok(t) = Arc::try_unwrap(t) {
            t.shutdown().await;
        }
    }
}

async fn stream_record_codec_cost() {
    let id = contract::unique("order");
    let env = contract::wrap(
        &id,
        0,
        &[contract::placed(&id, "c-1", contract::money(2500, "EUR"))],
        contract::T0,
    )
    .remove(0);
    let config = TailerConfig::default();
    let n = 20_000;
    let started = Instant::now();
    let mut records = Vec::with_capacity(n);
    for seq in 0..n as u64 {
        records.push(tailer::stream_record(seq, &env, &config).unwrap());
    }
    let build = started.elapsed();
    let started = Instant::now();
    for r in records {
        let e = orders_aws::codec::envelope_from_image(r.change.new_image).unwrap();
        e.decode().unwrap();
    }
    let decode = started.elapsed();
    println!(
        "stream record: build {:?}/record, decode {:?}/record",
        build / n as u32,
        decode / n as u32
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    append_throughput().await;
    read_model_apply_throughput().await;
    projection_throughput_and_lag().await;
    stream_record_codec_cost().await;
}
