//! `orders seed`: a realistic history written straight through the event store (not over
//! HTTP), fast enough to make a million events for the replay benchmark.

use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::order::{
    Address, Channel, Customer, DeliveryStatus, LineRequest, NotificationResult, PlaceOrderRequest,
};
use orders_domain::ports::{AppendRequest, EventStore, IdGenerator, StoreError};
use orders_domain::{Command, Currency, Money, Order, Timestamp, decide, evolve};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// `<data dir>/seed.pending`, there while an `orders seed` has appended history whose read
/// models are not built yet. It holds the log position the live projector had reached:
/// everything after it is seeded history, which the projector must never see live (it
/// would start a workflow, publish and send an email per seeded order). Written before
/// the first append and removed once the read models are built and the projector placed
/// after the history, so an interrupted seed (Ctrl-C, `kill -9`) leaves it behind.
const PENDING_FILE: &str = "seed.pending";

/// What an unfinished seed in `data_dir` means, and what to do about it.
pub fn unfinished_advice(data_dir: &Path) -> String {
    format!(
        "an `orders seed` was interrupted before it built the read models of the history it appended (a server would start a workflow for every seeded order); finish it with `orders seed --finish --data-dir {}`",
        data_dir.display()
    )
}

/// The position an unfinished seed started after, if one left its marker in `data_dir`.
pub fn pending(data_dir: &Path) -> std::io::Result<Option<u64>> {
    let text = match std::fs::read_to_string(data_dir.join(PENDING_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    text.trim().parse().map(Some).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", data_dir.join(PENDING_FILE).display()),
        )
    })
}

/// Marks seeded history after `after` as not projected yet (durably, before any append).
pub fn mark_pending(data_dir: &Path, after: u64) -> std::io::Result<()> {
    let path = data_dir.join(PENDING_FILE);
    let mut file = std::fs::File::create(&path)?;
    std::io::Write::write_all(&mut file, after.to_string().as_bytes())?;
    file.sync_all()
}

/// The seeded history is projected: a server may start.
pub fn clear_pending(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(data_dir.join(PENDING_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

const SKUS: [&str; 8] = [
    "BOOK-1", "BOOK-2", "MUG-RED", "MUG-BLUE", "PEN-3", "LAMP-9", "SOCKS-5", "TEA-7",
];
const CURRENCIES: [&str; 3] = ["EUR", "EUR", "USD"];

/// A small deterministic generator (xorshift): seeds are reproducible without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One order's whole history: placed, then (mostly) confirmed, fulfilled and shipped, or
/// cancelled along the way.
pub fn history(
    n: u64,
    ids: &dyn IdGenerator,
    now: Timestamp,
) -> Result<Vec<EventEnvelope>, orders_domain::DomainError> {
    let mut rng = Rng(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let order_id = ids.next_id();
    // A constant table, not input: a bad code here is a bug in this file.
    let currency = Currency::parse(CURRENCIES[rng.below(3) as usize])
        .expect("the seed's currency table holds ISO 4217 codes");
    let lines = 1 + rng.below(4);
    let request = PlaceOrderRequest {
        customer: Customer {
            id: format!("c-{}", rng.below(5_000)),
            email: format!("customer{}@example.com", n % 5_000),
            name: format!("Customer {}", n % 5_000),
        },
        items: (0..lines)
            .map(|_| LineRequest {
                sku: SKUS[rng.below(SKUS.len() as u64) as usize].into(),
                quantity: 1 + rng.below(5) as i64,
                unit_price: Money::new(100 + rng.below(9_900) as i64, currency),
            })
            .collect(),
        shipping_address: Address {
            line1: format!("{} Main Street", 1 + rng.below(200)),
            line2: None,
            city: "Springfield".into(),
            postal_code: format!("{:05}", rng.below(99_999)),
            country: "US".into(),
        },
    };
    let mut commands = vec![Command::Place {
        order_id: order_id.clone(),
        request,
        placed_via: "seed".into(),
    }];
    let fate = rng.below(10);
    if fate == 0 {
        commands.push(Command::Cancel {
            reason: Some("changed my mind".into()),
        });
    } else {
        commands.push(Command::RecordWorkflowOutcome {
            execution_name: order_id.clone(),
            notifications: [Channel::Sns, Channel::Sqs, Channel::Email]
                .into_iter()
                .map(|channel| NotificationResult {
                    channel,
                    status: DeliveryStatus::Sent,
                    message_id: Some(format!("{order_id}-{channel:?}")),
                    error: None,
                    cause: None,
                })
                .collect(),
        });
        if fate == 1 {
            commands.push(Command::Cancel { reason: None });
        } else {
            commands.push(Command::RequestFulfilment {
                message_id: format!("msg-{order_id}"),
            });
            if fate > 3 {
                commands.push(Command::Ship {
                    carrier: "UPS".into(),
                    tracking_number: format!("1Z{n:010}"),
                });
            }
        }
    }
    // Spread placements over the last 30 days, steps a few minutes apart.
    let mut at = now.millis() - rng.below(30 * 86_400_000) as i64;
    let mut state = Order::default();
    let mut out = vec![];
    for c in &commands {
        let events = decide(&state, c)?;
        let meta = EventMeta {
            occurred_at: Timestamp(at),
            correlation_id: order_id.clone(),
            causation_id: "seed".into(),
        };
        out.extend(EventEnvelope::wrap(
            &order_id,
            state.version,
            &events,
            &meta,
            || ids.next_id(),
        ));
        state = events.iter().fold(state, evolve);
        at += 60_000 + rng.below(600_000) as i64;
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeded {
    pub orders: u64,
    pub events: u64,
}

/// Orders whose histories are interleaved in the log (see [`seed`]).
const WINDOW: u64 = 2_048;

/// Appends `orders` histories from `concurrency` writers (the store group-commits them).
/// As in a live log, an order's events are not next to each other: orders are seeded
/// window by window, and within a window every order's first event is appended, then
/// every second one, and so on, so an order's events lie a few thousand events apart (a
/// replay reading order by order then jumps around the log as it would in production).
pub async fn seed<E: EventStore + Clone>(
    store: E,
    ids: Arc<dyn IdGenerator>,
    now: Timestamp,
    orders: u64,
    concurrency: usize,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<Seeded, StoreError> {
    let events = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(progress);
    let mut start = 0;
    while start < orders {
        let end = (start + WINDOW).min(orders);
        let histories = (start..end)
            .map(|n| {
                history(n, ids.as_ref(), now)
                    .map_err(|e| StoreError::Corrupt(format!("seed history {n}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rounds = histories.iter().map(Vec::len).max().unwrap_or(0);
        for round in 0..rounds {
            let appends: Vec<EventEnvelope> = histories
                .iter()
                .filter_map(|h| h.get(round).cloned())
                .collect();
            append_all(&store, appends, concurrency, &events).await?;
        }
        start = end;
        progress(events.load(Ordering::Relaxed));
    }
    Ok(Seeded {
        orders,
        events: events.load(Ordering::Relaxed),
    })
}

/// Appends each event (of distinct orders, each the next version of its order) from
/// `concurrency` tasks.
async fn append_all<E: EventStore + Clone>(
    store: &E,
    appends: Vec<EventEnvelope>,
    concurrency: usize,
    events: &Arc<AtomicU64>,
) -> Result<(), StoreError> {
    let queue = Arc::new(std::sync::Mutex::new(appends));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (store, queue, events) = (store.clone(), queue.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                let Some(event) = next else {
                    return Ok::<_, StoreError>(());
                };
                store
                    .append(AppendRequest {
                        aggregate_id: event.aggregate_id.clone(),
                        expected_version: event.version.saturating_sub(1),
                        events: vec![event],
                        idempotency: None,
                    })
                    .await?;
                events.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| StoreError::Unavailable(format!("seed task: {e}")))??;
    }
    Ok(())
}
