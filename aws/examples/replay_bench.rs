//! Replay throughput against DynamoDB Local (a measurement, not a test).
//!
//! ```text
//! cargo build --release -p orders-aws --example replay_bench
//! scripts/with-emulators cargo run --release -p orders-aws --example replay_bench -- [EVENTS] [SEGMENTS]
//! ```
//! Seeds EVENTS (default 100,000) events — orders of 5 events each: placed, confirmed,
//! fulfilment requested, then shipped or cancelled — straight into a fresh events table
//! with BatchWriteItem (items from the codec), then replays them into a fresh read-model
//! table with SEGMENTS (default 4) and prints events/s; then the catch-ups, and a verify of
//! the table built. Refuses to run without
//! `DYNAMODB_ENDPOINT`, so it can never write to a real account.

use orders_aws::read_models::DynamoReadModels;
use orders_aws::replay::verify::{AwsVerifyOptions, verify_table};
use orders_aws::replay::{AwsReplayOptions, catch_up, replay_to_table};
use orders_aws::{AwsClients, Endpoints, TrustRoots, codec, schema};
use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::order::OrderEvent;
use orders_domain::time::Timestamp;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const T0: i64 = 1_795_706_525_123;
const EVENTS_PER_ORDER: usize = 5;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn event(event_type: &str, payload: Value) -> Result<OrderEvent, Error> {
    Ok(OrderEvent::decode(event_type, 1, &payload)?)
}

fn history(i: usize) -> Result<Vec<EventEnvelope>, Error> {
    let id = format!("01BENCH{i:010}");
    let money = json!({"amount": 1000 + (i % 97) as i64 * 25, "currency": if i.is_multiple_of(4) { "USD" } else { "EUR" }});
    let placed = event(
        "OrderPlaced",
        json!({
            "order_id": id,
            "customer": {"id": format!("c-{}", i % 1000), "email": "ada@example.com", "name": "Ada"},
            "items": [{"sku": "BOOK-1", "quantity": 1, "unit_price": money, "line_total": money}],
            "shipping_address": {"line1": "1 Main St", "city": "Paris", "postal_code": "75002", "country": "FR"},
            "total": money,
        }),
    )?;
    let confirmed = event(
        "OrderConfirmed",
        json!({"execution_name": format!("order-{id}"),
               "notifications": [{"channel": "sns", "status": "SENT", "message_id": "m"}]}),
    )?;
    let requested = event("FulfilmentRequested", json!({"message_id": "msg"}))?;
    let last = if i.is_multiple_of(10) {
        event("OrderCancelled", json!({"reason": "changed my mind"}))?
    } else {
        event(
            "OrderShipped",
            json!({"carrier": "UPS", "tracking_number": "1Z"}),
        )?
    };
    let meta = EventMeta {
        occurred_at: Timestamp(T0 + i as i64 * 60_000),
        correlation_id: format!("corr-{i}"),
        causation_id: format!("cause-{i}"),
    };
    let mut n = 0;
    Ok(
        EventEnvelope::wrap(&id, 0, &[placed, confirmed, requested, last], &meta, || {
            n += 1;
            format!("{id}-{n}")
        })
        .into_iter()
        .chain(std::iter::once_with(|| EventEnvelope {
            event_id: format!("{id}-5"),
            aggregate_id: id.clone(),
            version: 5,
            event_type: "NotificationFailed".into(),
            schema_version: 1,
            occurred_at: Timestamp(T0 + i as i64 * 60_000 + 1),
            correlation_id: format!("corr-{i}"),
            causation_id: format!("cause-{i}"),
            payload: json!({"execution_name": format!("order-{id}"), "channel": "email",
                        "error": "Throttling", "cause": "later"}),
        }))
        .collect(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .map_err(|_| "DYNAMODB_ENDPOINT is not set: run inside scripts/with-emulators")?;
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let segments: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let orders = events.div_ceil(EVENTS_PER_ORDER);

    let clients = AwsClients::load_with(
        &Endpoints {
            dynamodb: Some(endpoint),
            sfn: None,
        },
        TrustRoots::Platform,
    )
    .await?;
    let client = clients.dynamodb;
    let suffix = std::process::id();
    let (events_table, views) = (
        format!("bench-events-{suffix}"),
        format!("bench-views-{suffix}"),
    );
    schema::create_events_table(&client, &events_table).await?;

    // Seed: BatchWriteItem, 25 items a call, 8 calls in flight.
    let started = Instant::now();
    let written = std::sync::Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    // Batches are made as they are sent, so the seed holds little and the process's peak
    // memory (printed at the end) is the replay's.
    let mut batch = Vec::with_capacity(25);
    let send = async |chunk: Vec<aws_sdk_dynamodb::types::WriteRequest>,
                      tasks: &mut tokio::task::JoinSet<Result<(), Error>>|
           -> Result<(), Error> {
        while tasks.len() >= 8 {
            if let Some(r) = tasks.join_next().await {
                r??;
            }
        }
        let (client, table, written) = (client.clone(), events_table.clone(), written.clone());
        tasks.spawn(async move {
            let mut requests = chunk;
            while !requests.is_empty() {
                let n = requests.len() as u64;
                let out = client
                    .batch_write_item()
                    .request_items(&table, requests)
                    .send()
                    .await?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&table))
                    .unwrap_or_default();
                written.fetch_add(n - requests.len() as u64, Ordering::Relaxed);
            }
            Ok::<_, Error>(())
        });
        Ok(())
    };
    for i in 0..orders {
        for e in history(i)? {
            let item = codec::envelope_to_item(&e)?;
            batch.push(
                aws_sdk_dynamodb::types::WriteRequest::builder()
                    .put_request(
                        aws_sdk_dynamodb::types::PutRequest::builder()
                            .set_item(Some(item))
                            .build()?,
                    )
                    .build(),
            );
            if batch.len() == 25 {
                send(
                    std::mem::replace(&mut batch, Vec::with_capacity(25)),
                    &mut tasks,
                )
                .await?;
            }
        }
    }
    if !batch.is_empty() {
        send(batch, &mut tasks).await?;
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let seeded = written.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {seeded} events ({orders} orders) in {secs:.1}s ({:.0} events/s)",
        seeded as f64 / secs
    );

    println!("memory after the seed: {}", memory());
    let opts = AwsReplayOptions {
        segments,
        ..Default::default()
    };
    let last_report = std::sync::Mutex::new(Instant::now());
    let summary = replay_to_table(&client, &events_table, &views, &opts, |p| {
        let mut last = last_report.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed().as_secs() >= 2 {
            *last = Instant::now();
            eprintln!(
                "  {:?}: {} events read, {}/{} orders written",
                p.phase,
                p.events_read,
                p.orders_written,
                p.orders_total.unwrap_or(0)
            );
        }
    })
    .await?;
    println!("{summary}");
    println!(
        "replay: {} events, {} orders, {:.2}s, {:.0} events/s ({} segments)",
        summary.events_read,
        summary.orders_rebuilt,
        summary.elapsed.as_secs_f64(),
        summary.events_per_sec(),
        segments
    );
    println!("memory after the replay: {}", memory());

    // The catch-up a replay runs before and after switching readers, with nothing new to
    // apply: its cost is finding the orders with new events, by a Scan of every order id
    // and version, or through the by_time index from the replay's start.
    let target = DynamoReadModels::new(client.clone(), &summary.target_table)
        .with_projections(&summary.projections);
    for since in [None, Some(summary.started_at)] {
        let mut known = summary.applied.clone();
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let caught = catch_up(
            &client,
            &events_table,
            &target,
            &opts,
            since,
            Some(&mut known),
            |_| {},
        )
        .await?;
        let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        println!(
            "catch-up ({}): {} events read, {} applied, {secs:.2}s (of which {:.1}s waiting for the index to settle), this process's CPU {cpu:.2}s",
            caught.read_by,
            caught.events_read,
            caught.events_applied,
            if since.is_some() {
                opts.index_settle.as_secs_f64()
            } else {
                0.0
            },
        );
    }

    // `orders projections verify --aws` of the table just built: the fold again, a scan
    // of the read-model table, and nothing to read again when all is the same.
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let verdict = verify_table(
        &client,
        &events_table,
        &summary.target_table,
        &AwsVerifyOptions {
            segments,
            ..AwsVerifyOptions::default()
        },
        |_| {},
    )
    .await?;
    let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "verify: {} events and {} read-model items read, {} differences, {} rechecked, {secs:.2}s, {:.0} events/s, this process's CPU {cpu:.2}s",
        verdict.events_read,
        verdict.read_model_items,
        verdict.compared.differences(),
        verdict.rechecked,
        verdict.events_read as f64 / secs.max(1e-9),
    );
    println!("memory after the verify: {}", memory());
    Ok(())
}

/// This process's CPU time so far (user and system; Linux, 100 ticks a second), apart
/// from the emulator's.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Linux's resident memory now and its high-water mark so far. The seed streams its
/// batches, so what the replay adds shows against the figures printed after the seed.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or("?".to_string(), |v| v.trim().to_string())
    };
    format!("resident {}, peak {}", field("VmRSS:"), field("VmHWM:"))
}
