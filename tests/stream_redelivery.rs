//! Property: however stream batches are duplicated, redelivered and interleaved (keeping
//! each order's own events in order, as DynamoDB Streams does), the views are the same.

mod common;

use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::order::*;
use orders_domain::ports::ReadModels;
use orders_domain::{Currency, Money, Timestamp, decide, evolve};
use orders_handlers::projector::Projector;
use orders_local::store::LocalStores;
use orders_local::tailer::{TailerConfig, stream_record};
use proptest::prelude::*;

/// What a user could do to one order, in any order; invalid steps are simply skipped.
#[derive(Debug, Clone)]
enum Step {
    Confirm,
    Fulfil,
    Ship,
    Cancel,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Confirm),
        Just(Step::Fulfil),
        Just(Step::Ship),
        Just(Step::Cancel)
    ]
}

fn history(order: usize, customer: usize, steps: &[Step], day: i64) -> Vec<EventEnvelope> {
    let id = format!("o-{order:03}");
    let eur = Currency::parse(if order.is_multiple_of(2) {
        "EUR"
    } else {
        "USD"
    })
    .expect("currency");
    let mut commands = vec![Command::Place {
        order_id: id.clone(),
        placed_via: "test".into(),
        request: PlaceOrderRequest {
            customer: Customer {
                id: format!("c-{customer}"),
                email: "a@b.io".into(),
                name: "A".into(),
            },
            items: vec![LineRequest {
                sku: "S".into(),
                quantity: 1 + order as i64 % 5,
                unit_price: Money::new(100 + order as i64, eur),
            }],
            shipping_address: Address {
                line1: "1".into(),
                line2: None,
                city: "C".into(),
                postal_code: "1".into(),
                country: "FR".into(),
            },
        },
    }];
    commands.extend(steps.iter().map(|s| match s {
        Step::Confirm => Command::RecordWorkflowOutcome {
            execution_name: id.clone(),
            notifications: vec![],
        },
        Step::Fulfil => Command::RequestFulfilment {
            message_id: "m".into(),
        },
        Step::Ship => Command::Ship {
            carrier: "UPS".into(),
            tracking_number: "1Z".into(),
        },
        Step::Cancel => Command::Cancel { reason: None },
    }));
    let mut state = Order::default();
    let mut out = vec![];
    for (i, c) in commands.iter().enumerate() {
        let Ok(events) = decide(&state, c) else {
            continue;
        };
        let meta = EventMeta {
            occurred_at: Timestamp(day + (order as i64) * 1000 + i as i64 * 86_400_000),
            correlation_id: id.clone(),
            causation_id: "test".into(),
        };
        let mut n = 0;
        let envs = EventEnvelope::wrap(&id, state.version, &events, &meta, || {
            n += 1;
            format!("{id}-{}-{n}", state.version)
        });
        state = events.iter().fold(state, evolve);
        out.extend(envs);
    }
    out
}

/// Interleaves histories into one log, keeping each order's events in order.
fn interleave(mut histories: Vec<Vec<EventEnvelope>>, picks: &[usize]) -> Vec<EventEnvelope> {
    let mut log = vec![];
    let mut p = picks.iter().cycle();
    while histories.iter().any(|h| !h.is_empty()) {
        let live: Vec<usize> = (0..histories.len())
            .filter(|i| !histories[*i].is_empty())
            .collect();
        let i = live[p.next().copied().unwrap_or(0) % live.len()];
        log.push(histories[i].remove(0));
    }
    log
}

type Views = (Vec<serde_json::Value>, serde_json::Value, serde_json::Value);

/// The views after the given deliveries; with `replay`, also checks that a replay of the
/// same log (stored in the event store) rebuilds exactly these views.
async fn views(log: &[EventEnvelope], deliveries: &[(usize, usize)], replay: bool) -> Views {
    let dir = tempfile::tempdir().expect("dir");
    let stores = LocalStores::open(dir.path()).expect("open");
    if replay {
        common::append_each(&stores.events, log).await;
    }
    let projector = Projector::replay(stores.read_models.clone());
    let config = TailerConfig::default();
    for &(from, len) in deliveries {
        let mut event = aws_lambda_events::event::dynamodb::Event::default();
        event.records = log[from..(from + len).min(log.len())]
            .iter()
            .enumerate()
            .map(|(i, e)| stream_record((from + i + 1) as u64, e, &config).expect("record"))
            .collect();
        let resp = projector.handle(event).await;
        assert!(
            resp.batch_item_failures.is_empty(),
            "{:?}",
            resp.batch_item_failures
        );
    }
    let live = snapshot(&stores, log).await;
    if replay {
        let opts = orders::replay::ReplayOptions {
            projections: orders_domain::projection::ProjectionName::ALL.to_vec(),
            resume: false,
            drop_old: true,
            skip_undecodable: false,
            chunk: 3,
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        orders::replay::replay(&stores, &opts, &stop, |_| {})
            .await
            .expect("replay");
        assert_eq!(
            snapshot(&stores, log).await,
            live,
            "replay equals live processing"
        );
    }
    live
}

async fn snapshot(stores: &LocalStores, log: &[EventEnvelope]) -> Views {
    let mut ids: Vec<&str> = log.iter().map(|e| e.aggregate_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    let mut out = vec![];
    for id in ids {
        let v = stores.read_models.order(id).await.expect("read");
        out.push(serde_json::to_value(v).expect("json"));
    }
    let mut customers = vec![];
    for c in 0..3 {
        let page = stores
            .read_models
            .customer_orders(&format!("c-{c}"), 100, None)
            .await
            .expect("page");
        customers.push(serde_json::to_value(&page.items).expect("json"));
    }
    let sales =
        serde_json::to_value(stores.read_models.daily_sales().await.expect("sales")).expect("json");
    (out, serde_json::Value::Array(customers), sales)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn redelivery_and_duplication_do_not_change_the_views_and_replay_equals_live(
        orders in prop::collection::vec((0usize..3, prop::collection::vec(step(), 0..5)), 1..6),
        picks in prop::collection::vec(0usize..6, 1..20),
        batch in 1usize..5,
        rewinds in prop::collection::vec((0usize..40, 1usize..6), 0..8),
    ) {
        let day = 1_795_706_525_000;
        let histories = orders
            .iter()
            .enumerate()
            .map(|(i, (customer, steps))| history(i, *customer, steps, day))
            .collect();
        let log = interleave(histories, &picks);
        let once: Vec<(usize, usize)> = (0..log.len()).step_by(batch).map(|f| (f, batch)).collect();
        // The messy delivery: every batch, and after each one maybe a rewind that
        // redelivers an earlier stretch (never past what was already delivered), plus a
        // batch delivered twice in a row.
        let mut messy = vec![];
        for (k, &(from, len)) in once.iter().enumerate() {
            messy.push((from, len));
            if let Some(&(back, rlen)) = rewinds.get(k) {
                let end = (from + len).min(log.len());
                let start = end.saturating_sub(back % (end + 1));
                let rlen = rlen.min(end - start);
                if rlen > 0 {
                    messy.push((start, rlen));
                }
            }
            if k.is_multiple_of(3) {
                messy.push((from, len));
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let clean = rt.block_on(views(&log, &once, false));
        let messy_views = rt.block_on(views(&log, &messy, true));
        prop_assert_eq!(clean, messy_views);
    }
}
