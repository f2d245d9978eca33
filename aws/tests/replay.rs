//! `orders replay --aws` on DynamoDB Local: a parallel-Scan rebuild into a fresh table
//! equals what the live projector built; undecodable events stop it or are parked.

mod support;

use support::events::append;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use orders_aws::replay::verify::{AwsVerdict, AwsVerifyOptions, repair_table, verify_table};
use orders_aws::replay::{
    AppliedVersions, AwsReplayOptions, CLOCK_SKEW_MS, CatchUpRead, EventKey, ReplayError,
    ReplayPhase, ReplayProgress, catch_up, replay_to_table,
};
use orders_aws::{DynamoEventStore, DynamoReadModels, codec, schema};
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::ports::{EventStore, ReadModels};
use orders_domain::projection::ProjectionName;
use orders_domain::time::Timestamp;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-11-26T15:22:05.123Z
const T0: i64 = 1_795_706_525_123;
const HOUR: i64 = 3_600_000;

struct Env {
    client: Client,
    store: DynamoEventStore,
    events: String,
}

async fn env() -> Env {
    env_with(true).await
}

/// `by_time`: the events table has its `by_time` index (stacks deployed before it had none).
async fn env_with(by_time: bool) -> Env {
    let clients = support::dynamodb_clients().await;
    let (events, idem) = (support::unique("events"), support::unique("idem"));
    if by_time {
        schema::create_events_table(&clients.dynamodb, &events).await
    } else {
        schema::create_events_table_without_index(&clients.dynamodb, &events).await
    }
    .unwrap();
    schema::create_idempotency_table(&clients.dynamodb, &idem)
        .await
        .unwrap();
    Env {
        store: DynamoEventStore::new(clients.dynamodb.clone(), &events, &idem),
        client: clients.dynamodb,
        events,
    }
}

async fn live_table(client: &Client) -> DynamoReadModels {
    let table = support::unique("views");
    schema::create_read_models_table(client, &table)
        .await
        .unwrap();
    DynamoReadModels::new(client.clone(), &table)
}

/// Events built from their stored form, so the tests follow the domain's schema versions
/// (upcasters included) rather than its struct literals.
fn event(event_type: &str, payload: Value) -> OrderEvent {
    OrderEvent::decode(event_type, 1, &payload).unwrap()
}

fn placed(order_id: &str, customer: &str, amount: i64, currency: &str) -> OrderEvent {
    let money = json!({"amount": amount, "currency": currency});
    event(
        "OrderPlaced",
        json!({
            "order_id": order_id,
            "customer": {"id": customer, "email": "ada@example.com", "name": "Ada Lovelace"},
            "items": [{"sku": "BOOK-1", "quantity": 1, "unit_price": money, "line_total": money}],
            "shipping_address": {"line1": "12 Rue de la Paix", "city": "Paris",
                                 "postal_code": "75002", "country": "FR"},
            "total": money,
        }),
    )
}

fn cancelled() -> OrderEvent {
    event("OrderCancelled", json!({"reason": "changed my mind"}))
}

fn confirmed(order_id: &str) -> OrderEvent {
    event(
        "OrderConfirmed",
        json!({"execution_name": format!("order-{order_id}"),
               "notifications": [{"channel": "sns", "status": "SENT", "message_id": "m-1"},
                                 {"channel": "email", "status": "FAILED", "error": "Bounce"}]}),
    )
}

fn notification_failed(order_id: &str) -> OrderEvent {
    event(
        "NotificationFailed",
        json!({"execution_name": format!("order-{order_id}"), "channel": "email",
               "error": "Throttling", "cause": "try later"}),
    )
}

fn fulfilment_requested() -> OrderEvent {
    event("FulfilmentRequested", json!({"message_id": "msg-1"}))
}

fn shipped() -> OrderEvent {
    event(
        "OrderShipped",
        json!({"carrier": "UPS", "tracking_number": "1Z999"}),
    )
}

/// `orders` orders with mixed lifecycles over several days, currencies and customers.
/// Returns the order ids and the customers.
async fn seed(store: &DynamoEventStore, orders: usize) -> (Vec<String>, BTreeSet<String>) {
    seed_from(store, orders, T0).await
}

/// [`seed`], the first order placed at `t0` (ms), each next one 5 hours later.
async fn seed_from(
    store: &DynamoEventStore,
    orders: usize,
    t0: i64,
) -> (Vec<String>, BTreeSet<String>) {
    let tag = support::unique("c");
    let mut ids = Vec::new();
    let mut customers = BTreeSet::new();
    for i in 0..orders {
        let id = support::unique("order");
        let customer = format!("{tag}-{}", i % 7);
        let currency = if i.is_multiple_of(3) { "USD" } else { "EUR" };
        let at = t0 + (i as i64) * 5 * HOUR;
        let mut v = append(
            store,
            &id,
            0,
            &[placed(&id, &customer, 100 * (i as i64 + 1), currency)],
            at,
        )
        .await;
        for k in 0..(2 + i % 4) {
            v = append(
                store,
                &id,
                v,
                &[notification_failed(&id)],
                at + k as i64 * 1000 + 1,
            )
            .await;
        }
        // Cancellations land a day later: they count on another day than the placement.
        let later = at + 26 * HOUR;
        v = match i % 5 {
            0 => v,
            1 => append(store, &id, v, &[cancelled()], later).await,
            2 => append(store, &id, v, &[confirmed(&id)], at + HOUR).await,
            3 => {
                let v = append(
                    store,
                    &id,
                    v,
                    &[confirmed(&id), fulfilment_requested()],
                    at + HOUR,
                )
                .await;
                append(store, &id, v, &[shipped()], later).await
            }
            _ => {
                let v = append(store, &id, v, &[confirmed(&id)], at + HOUR).await;
                let v = append(store, &id, v, &[fulfilment_requested()], at + 2 * HOUR).await;
                append(store, &id, v, &[cancelled()], later).await
            }
        };
        assert!(v >= 1);
        ids.push(id);
        customers.insert(customer);
    }
    (ids, customers)
}

/// The live path: every event through `DynamoReadModels::apply`, orders interleaved and
/// every event delivered twice (the second is a duplicate). Returns the events applied.
async fn project_live(store: &DynamoEventStore, ids: &[String], rm: &DynamoReadModels) -> u64 {
    let mut histories = Vec::new();
    for id in ids {
        histories.push(store.load(id).await.unwrap());
    }
    let longest = histories.iter().map(Vec::len).max().unwrap_or(0);
    let mut n = 0;
    for i in 0..longest {
        for h in &histories {
            if let Some(e) = h.get(i) {
                let decoded = e.decode().unwrap();
                rm.apply(e, &decoded).await.unwrap();
                rm.apply(e, &decoded).await.unwrap();
                n += 1;
            }
        }
    }
    n
}

async fn assert_same_read_models(
    a: &DynamoReadModels,
    b: &DynamoReadModels,
    ids: &[String],
    customers: &BTreeSet<String>,
) {
    for id in ids {
        let (va, vb) = (a.order(id).await.unwrap(), b.order(id).await.unwrap());
        assert!(va.is_some(), "order {id} in the live table");
        assert_eq!(va, vb, "order {id}");
    }
    for c in customers {
        let (pa, pb) = (
            a.customer_orders(c, 1000, None).await.unwrap(),
            b.customer_orders(c, 1000, None).await.unwrap(),
        );
        assert!(!pa.items.is_empty());
        assert_eq!(pa, pb, "customer {c}");
    }
    let (sa, sb) = (
        a.daily_sales().await.unwrap(),
        b.daily_sales().await.unwrap(),
    );
    assert_eq!(sa, sb, "daily sales");
}

async fn table_exists(client: &Client, table: &str) -> bool {
    match client.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => panic!("describe {table}: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_scan_replay_rebuilds_what_the_live_projector_built() {
    let t = env().await;
    let (ids, customers) = seed(&t.store, 50).await;
    let live = live_table(&t.client).await;
    let total = project_live(&t.store, &ids, &live).await;
    assert!(total >= 200, "a few hundred events, got {total}");

    let seen = Mutex::new(Vec::<ReplayProgress>::new());
    let opts = AwsReplayOptions {
        segments: 4,
        ..Default::default()
    };
    let summary = replay_to_table(&t.client, &t.events, live.table(), &opts, |p| {
        seen.lock().unwrap().push(p)
    })
    .await
    .unwrap();

    assert_eq!(summary.target_table, format!("{}-g1", live.table()));
    assert!(summary.created_target);
    assert_eq!(summary.events_read, total);
    assert_eq!(summary.events_folded, total);
    assert_eq!(summary.orders_rebuilt, 50);
    assert!(summary.parked.is_empty(), "{:?}", summary.parked);
    assert!(summary.daily_sales_rows >= 4, "several days and currencies");
    assert_eq!(summary.items_written, 100 + summary.daily_sales_rows);
    let hint = summary.switch_hint();
    assert!(
        hint.contains(&format!("ActiveReadModelsTable={}", summary.target_table)),
        "{hint}"
    );
    // The catch-up to run after a switch by hand reads from the replay's start on.
    assert!(
        hint.contains(&format!(
            "--projection orders --projection daily_sales --catch-up {} --since {}",
            summary.target_table, summary.started_at
        )),
        "{hint}"
    );
    assert!(summary.to_string().contains(&summary.target_table));

    let seen = seen.into_inner().unwrap();
    let last = seen.last().copied().unwrap();
    assert_eq!(last.phase, ReplayPhase::Writing);
    assert_eq!(
        (last.events_read, last.orders_written, last.orders_total),
        (total, 50, Some(50))
    );
    assert!(seen.iter().any(|p| p.phase == ReplayPhase::Scanning));
    assert!(seen.windows(2).all(
        |w| w[0].events_read <= w[1].events_read && w[0].orders_written <= w[1].orders_written
    ));

    let green = live.with_table(&summary.target_table);
    assert_same_read_models(&live, &green, &ids, &customers).await;

    // A non-empty target is refused unless resuming into it; resuming rewrites the same.
    let again = AwsReplayOptions {
        target_table: Some(summary.target_table.clone()),
        ..opts.clone()
    };
    let err = replay_to_table(&t.client, &t.events, live.table(), &again, |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ReplayError::TargetNotEmpty(summary.target_table.clone())
    );
    let resumed = replay_to_table(
        &t.client,
        &t.events,
        live.table(),
        &AwsReplayOptions {
            reuse_target: true,
            segments: 3,
            rate_limit: Some(400),
            ..again
        },
        |_| {},
    )
    .await
    .unwrap();
    assert!(!resumed.created_target);
    assert_same_read_models(&live, &green, &ids, &customers).await;
    // The live table is never a target.
    let err = replay_to_table(
        &t.client,
        &t.events,
        live.table(),
        &AwsReplayOptions {
            target_table: Some(live.table().to_string()),
            ..Default::default()
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ReplayError::TargetIsLive(_)), "{err:?}");

    // Events appended after the replay: catch_up applies exactly those, through the live
    // path's guards, so the green table equals the live one again.
    let late = &ids[0];
    let v = t.store.load(late).await.unwrap().len() as u64;
    let fresh = cancel_and_place(&t, late, &customers, T0 + 40 * HOUR).await;
    for id in [late, &fresh] {
        for e in t.store.load(id).await.unwrap() {
            live.apply(&e, &e.decode().unwrap()).await.unwrap();
        }
    }
    assert_eq!(t.store.load(late).await.unwrap().len() as u64, v + 1);
    // Given what the replay wrote, it reads back only the two orders that changed.
    let mut known = resumed.applied.clone();
    assert_eq!(known.len(), ids.len());
    assert_eq!(known.get(late), Some(v));
    let catch = async |known: Option<&mut AppliedVersions>| {
        catch_up(&t.client, &t.events, &green, &opts, None, known, |_| {})
            .await
            .unwrap()
    };
    let caught = catch(Some(&mut known)).await;
    assert_eq!(caught.events_applied, 2);
    assert_eq!(caught.events_read, total + 2);
    assert_eq!((known.get(late), known.get(&fresh)), (Some(v + 1), Some(1)));
    let mut all = ids.clone();
    all.push(fresh.clone());
    assert_same_read_models(&live, &green, &all, &customers).await;
    // A second catch-up, reading every order back, finds nothing new.
    let caught = catch(None).await;
    assert_eq!(caught.events_applied, 0);
    // The map kept up to date by the first catch-up serves the next one.
    let v = t.store.load(&fresh).await.unwrap().len() as u64;
    append(&t.store, &fresh, v, &[cancelled()], T0 + 42 * HOUR).await;
    let caught = catch(Some(&mut known)).await;
    assert_eq!(caught.events_applied, 1, "the fresh order's cancellation");
    assert_eq!(known.get(&fresh), Some(v + 1));
    // Without the map, each order is read back, and what changed is applied.
    let v = t.store.load(late).await.unwrap().len() as u64;
    append(&t.store, late, v, &[shipped()], T0 + 43 * HOUR).await;
    for id in [late, &fresh] {
        for e in t.store.load(id).await.unwrap() {
            live.apply(&e, &e.decode().unwrap()).await.unwrap();
        }
    }
    let caught = catch(None).await;
    assert_eq!(caught.events_applied, 1, "the late order's shipment");
    assert_same_read_models(&live, &green, &all, &customers).await;
}

/// Cancels order `late` and places a new order of one of `customers`, both at `at`;
/// returns the new order's id.
async fn cancel_and_place(t: &Env, late: &str, customers: &BTreeSet<String>, at: i64) -> String {
    let v = t.store.load(late).await.unwrap().len() as u64;
    append(&t.store, late, v, &[cancelled()], at).await;
    let fresh = support::unique("order");
    let customer = customers.iter().next().unwrap().clone();
    append(
        &t.store,
        &fresh,
        0,
        &[placed(&fresh, &customer, 777, "EUR")],
        at + 1,
    )
    .await;
    fresh
}

/// The wall clock in ms: the catch-up reads the index by the times events carry.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_from_the_replay_start_reads_only_newer_events_through_the_index() {
    let t = env().await;
    // A history of weeks ago.
    let (ids, customers) = seed_from(&t.store, 20, now_ms() - 30 * 24 * HOUR).await;
    let live = live_table(&t.client).await;
    let total = project_live(&t.store, &ids, &live).await;
    let opts = AwsReplayOptions {
        segments: 2,
        index_settle: Duration::ZERO,
        ..Default::default()
    };
    let built = replay_to_table(&t.client, &t.events, live.table(), &opts, |_| {})
        .await
        .unwrap();
    let since = built.started_at;
    assert!((since.millis() - now_ms()).abs() < 60_000, "{since}");
    let green = live.with_table(&built.target_table);

    // Two events stamped after the start, and one stamped two hours before it (an
    // import, say): past the clock-skew margin, the index does not find that one.
    let late = &ids[0];
    let fresh = cancel_and_place(&t, late, &customers, now_ms()).await;
    let back_dated = &ids[1];
    let w = t.store.load(back_dated).await.unwrap().len() as u64;
    append(
        &t.store,
        back_dated,
        w,
        &[cancelled()],
        since.millis() - 2 * HOUR,
    )
    .await;
    for id in [late, &fresh, back_dated] {
        for e in t.store.load(id).await.unwrap() {
            live.apply(&e, &e.decode().unwrap()).await.unwrap();
        }
    }

    let mut known = built.applied.clone();
    let caught = catch_up(
        &t.client,
        &t.events,
        &green,
        &opts,
        Some(since),
        Some(&mut known),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        caught.read_by,
        CatchUpRead::Index {
            from: Timestamp(since.millis() - CLOCK_SKEW_MS)
        }
    );
    assert_eq!(
        (caught.events_read, caught.events_applied),
        (2, 2),
        "only the events since the start, of {} in the table",
        total + 3
    );
    assert!(
        caught.read_by.to_string().contains("by_time index"),
        "{}",
        caught.read_by
    );
    // A scan finds the back-dated one as well.
    let caught = catch_up(
        &t.client,
        &t.events,
        &green,
        &opts,
        None,
        Some(&mut known),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(caught.read_by, CatchUpRead::Scan { why: None });
    assert_eq!((caught.events_read, caught.events_applied), (total + 3, 1));
    let mut all = ids.clone();
    all.push(fresh);
    assert_same_read_models(&live, &green, &all, &customers).await;

    // From more than a week back, the hours to query are too many: a scan, saying why.
    let caught = catch_up(
        &t.client,
        &t.events,
        &green,
        &opts,
        Some(Timestamp(now_ms() - 8 * 24 * HOUR)),
        None,
        |_| {},
    )
    .await
    .unwrap();
    match &caught.read_by {
        CatchUpRead::Scan { why: Some(why) } => assert!(why.contains("7 days"), "{why}"),
        other => panic!("expected a scan, got {other:?}"),
    }
    assert_eq!(caught.events_applied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_index_a_catch_up_scans_and_says_why() {
    let t = env_with(false).await;
    let (ids, customers) = seed_from(&t.store, 6, now_ms() - 30 * 24 * HOUR).await;
    let live = live_table(&t.client).await;
    project_live(&t.store, &ids, &live).await;
    let opts = AwsReplayOptions {
        segments: 2,
        ..Default::default()
    };
    let built = replay_to_table(&t.client, &t.events, live.table(), &opts, |_| {})
        .await
        .unwrap();
    let green = live.with_table(&built.target_table);
    let late = &ids[0];
    let v = t.store.load(late).await.unwrap().len() as u64;
    append(&t.store, late, v, &[cancelled()], now_ms()).await;
    for e in t.store.load(late).await.unwrap() {
        live.apply(&e, &e.decode().unwrap()).await.unwrap();
    }
    let started = std::time::Instant::now();
    let caught = catch_up(
        &t.client,
        &t.events,
        &green,
        &opts,
        Some(built.started_at),
        None,
        |_| {},
    )
    .await
    .unwrap();
    match &caught.read_by {
        CatchUpRead::Scan { why: Some(why) } => {
            assert!(why.contains("has no by_time index"), "{why}")
        }
        other => panic!("expected a scan, got {other:?}"),
    }
    // Nothing waited for an index it did not read.
    assert!(
        started.elapsed() < opts.index_settle,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(caught.events_applied, 1);
    assert_same_read_models(&live, &green, &ids, &customers).await;
}

/// A raw item the domain cannot decode: `OrderTeleported` at version 2 of one order, with
/// a valid event after it.
async fn put_undecodable(t: &Env, id: &str) {
    let mut item = codec::envelope_to_item(&EventEnvelope {
        event_id: support::unique("evt"),
        aggregate_id: id.into(),
        version: 2,
        event_type: "OrderTeleported".into(),
        schema_version: 1,
        occurred_at: Timestamp(T0 + HOUR),
        correlation_id: "corr".into(),
        causation_id: "cause".into(),
        payload: json!({"to": "the moon"}),
    })
    .unwrap();
    item.insert("note".into(), AttributeValue::S("written raw".into()));
    t.client
        .put_item()
        .table_name(&t.events)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

/// An order placed, then [`put_undecodable`] at version 2, then cancelled: its id.
async fn undecodable_order(t: &Env) -> String {
    let bad = support::unique("order");
    append(&t.store, &bad, 0, &[placed(&bad, "c-bad", 999, "EUR")], T0).await;
    put_undecodable(t, &bad).await;
    append(&t.store, &bad, 2, &[cancelled()], T0 + 2 * HOUR).await;
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_event_stops_the_replay_or_is_parked() {
    let t = env().await;
    let (ids, customers) = seed(&t.store, 12).await;
    let bad = undecodable_order(&t).await;
    let live = live_table(&t.client).await;
    project_live(&t.store, &ids, &live).await;
    // The live projector folds the bad order's placement; it dead-letters version 2 and
    // sees a gap at version 3.
    let history = t.store.load(&bad).await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(history[1].decode().is_err());
    live.apply(&history[0], &history[0].decode().unwrap())
        .await
        .unwrap();

    // Stops, with the key and the reason; the table it created is gone again.
    let target = format!("{}-green", live.table());
    let opts = AwsReplayOptions {
        segments: 4,
        target_table: Some(target.clone()),
        projections: vec![ProjectionName::Orders, ProjectionName::DailySales],
        ..Default::default()
    };
    let err = replay_to_table(&t.client, &t.events, live.table(), &opts, |_| {})
        .await
        .unwrap_err();
    let want_key = EventKey {
        aggregate_id: bad.clone(),
        version: 2,
    };
    match &err {
        ReplayError::Undecodable { key, reason } => {
            assert_eq!(key, &want_key);
            assert!(reason.contains("OrderTeleported"), "{reason}");
        }
        other => panic!("expected Undecodable, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&bad) && message.contains("version=2"),
        "{message}"
    );
    assert!(
        !table_exists(&t.client, &target).await,
        "nothing left behind"
    );

    // Parked: the rest is rebuilt; the bad order stops at version 1.
    let summary = replay_to_table(
        &t.client,
        &t.events,
        live.table(),
        &AwsReplayOptions {
            skip_undecodable: true,
            ..opts.clone()
        },
        |_| {},
    )
    .await
    .unwrap();
    let parked: Vec<(&EventKey, &str)> = summary
        .parked
        .iter()
        .map(|p| (&p.key, p.reason.as_str()))
        .collect();
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert_eq!(parked[0].0, &want_key);
    assert!(parked[0].1.contains("OrderTeleported"), "{parked:?}");
    assert_eq!(
        summary.parked[0].event_type.as_deref(),
        Some("OrderTeleported")
    );
    assert_eq!(parked[1].0.version, 3, "the event after it cannot fold");
    assert_eq!(summary.orders_rebuilt, 13);
    assert!(summary.to_string().contains("parked"), "{summary}");

    let green = live.with_table(&target);
    assert_same_read_models(&live, &green, &ids, &customers).await;
    let view = green.order(&bad).await.unwrap().unwrap();
    assert_eq!(view.version, 1);

    // A catch-up parks the same two events, applies nothing, and stops without parking.
    for known in [None, Some(summary.applied.clone())] {
        let mut known = known;
        let caught = catch_up(
            &t.client,
            &t.events,
            &green,
            &AwsReplayOptions {
                skip_undecodable: true,
                ..opts.clone()
            },
            None,
            known.as_mut(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(caught.events_applied, 0);
        let parked: Vec<(u64, &str)> = caught
            .parked
            .iter()
            .map(|p| (p.key.version, p.reason.as_str()))
            .collect();
        assert_eq!(parked.len(), 2, "{parked:?}");
        assert_eq!(caught.parked[0].key, want_key);
        assert!(parked[0].1.contains("OrderTeleported"), "{parked:?}");
        assert_eq!(parked[1].0, 3, "{parked:?}");
    }
    let err = catch_up(&t.client, &t.events, &green, &opts, None, None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ReplayError::Undecodable { key, .. } if key == &want_key),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_projection_only_and_bad_options() {
    let t = env().await;
    let (ids, _) = seed(&t.store, 5).await;
    let live = live_table(&t.client).await;
    project_live(&t.store, &ids, &live).await;
    let summary = replay_to_table(
        &t.client,
        &t.events,
        live.table(),
        &AwsReplayOptions {
            segments: 2,
            projections: vec![ProjectionName::DailySales],
            ..Default::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    let green = live.with_table(&summary.target_table);
    assert_eq!(
        green.order(&ids[0]).await.unwrap(),
        None,
        "views not selected"
    );
    assert_eq!(
        green.daily_sales().await.unwrap(),
        live.daily_sales().await.unwrap()
    );
    let err = replay_to_table(
        &t.client,
        &t.events,
        live.table(),
        &AwsReplayOptions {
            segments: 0,
            ..Default::default()
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ReplayError::InvalidOptions(_)), "{err:?}");
    // The next generation after -g1 is -g2.
    let next = replay_to_table(
        &t.client,
        &t.events,
        &summary.target_table,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(next.target_table, format!("{}-g2", live.table()));
}

// ---- verify ----------------------------------------------------------------------------

/// Every item of `table`, in key order: what a verify must leave as it was.
async fn table_items(client: &Client, table: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(page.items().iter().map(|i| {
            let value: Value = serde_dynamo::from_item(i.clone()).unwrap();
            sorted(value).to_string()
        }));
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    items.sort();
    items
}

/// `v` with every object's keys in order: one text per value, whatever order a map (or
/// serde_json's `preserve_order`, which another crate may turn on) gives them.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let entries: std::collections::BTreeMap<String, Value> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// An order view's status set to SHIPPED in the table, as a hand edit would.
async fn shipped_by_hand(client: &Client, table: &str, id: &str) {
    client
        .update_item()
        .table_name(table)
        .set_key(Some(order_key(id)))
        .update_expression("SET #v.#s = :s")
        .expression_attribute_names("#v", "view")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", AttributeValue::S("SHIPPED".into()))
        .send()
        .await
        .unwrap();
}

fn order_key(id: &str) -> std::collections::HashMap<String, AttributeValue> {
    std::collections::HashMap::from([
        ("pk".to_string(), AttributeValue::S(format!("ORDER#{id}"))),
        ("sk".to_string(), AttributeValue::S("VIEW".into())),
    ])
}

async fn verify(t: &Env, table: &str, projections: &[ProjectionName]) -> AwsVerdict {
    verify_with(t, table, projections, false).await
}

/// [`verify`], with `--repair` or not.
async fn verify_with(
    t: &Env,
    table: &str,
    projections: &[ProjectionName],
    repair: bool,
) -> AwsVerdict {
    let opts = AwsVerifyOptions {
        projections: projections.to_vec(),
        segments: 3,
        repair,
        ..Default::default()
    };
    verify_table(&t.client, &t.events, table, &opts, |_| {})
        .await
        .unwrap()
}

fn ids_of(diffs: &[orders_domain::compare::RowDiff]) -> Vec<&str> {
    diffs.iter().map(|d| d.order_id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_names_what_drifted_and_leaves_what_the_stream_has_not_delivered() {
    let t = env().await;
    let (ids, customers) = seed(&t.store, 10).await;
    let live = live_table(&t.client).await;
    project_live(&t.store, &ids, &live).await;
    let all = [ProjectionName::Orders, ProjectionName::DailySales];

    let v = verify(&t, live.table(), &all).await;
    assert!(v.same(), "{:?}", v.compared);
    assert_eq!(v.compared.orders_in_log, 10);
    assert!(v.compared.days_in_log >= 5, "{}", v.compared.days_in_log);
    assert!(v.events_read >= 40, "{}", v.events_read);
    assert_eq!(v.rechecked, 0);
    assert!(v.not_yet_projected.is_empty() && v.unsettled_days.is_empty());
    assert!(v.undecodable.is_empty());

    // Drift, as it happens in life. ids[0]: its view deleted by hand.
    let (missing, tampered, stale, young) = (&ids[0], &ids[1], &ids[2], &ids[5]);
    t.client
        .delete_item()
        .table_name(live.table())
        .set_key(Some(order_key(missing)))
        .send()
        .await
        .unwrap();
    // ids[1]: its status edited.
    shipped_by_hand(&t.client, live.table(), tampered).await;
    // A view no event explains.
    let ghost = support::unique("ghost");
    let mut item = t
        .client
        .get_item()
        .table_name(live.table())
        .set_key(Some(order_key(tampered)))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    item.insert("pk".into(), AttributeValue::S(format!("ORDER#{ghost}")));
    t.client
        .put_item()
        .table_name(live.table())
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    // ids[2]: a cancellation of long ago that the live projector never applied.
    let v2 = t.store.load(stale).await.unwrap().len() as u64;
    append(&t.store, stale, v2, &[cancelled()], T0 + 60 * HOUR).await;
    // ids[5]: a cancellation of a moment ago, which the stream has not delivered yet.
    let v5 = t.store.load(young).await.unwrap().len() as u64;
    append(&t.store, young, v5, &[cancelled()], now_ms()).await;
    // A day's counter moved by hand.
    let day = live.daily_sales().await.unwrap()[0].clone();
    t.client
        .update_item()
        .table_name(live.table())
        .key("pk", AttributeValue::S(format!("SALES#{}", day.date)))
        .key("sk", AttributeValue::S(day.currency.clone()))
        .update_expression("ADD orders_placed :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();

    let before = table_items(&t.client, live.table()).await;
    let v = verify(&t, live.table(), &all).await;
    let mut want = vec![missing.as_str(), tampered, stale, &ghost];
    want.sort();
    assert_eq!(
        ids_of(&v.compared.orders),
        want,
        "{:#?} {:?}",
        v.compared.orders,
        v.not_yet_projected
    );
    let by_id = |id: &str| v.compared.orders.iter().find(|d| d.order_id == id).unwrap();
    assert_eq!(by_id(missing).read_model_version, None);
    assert!(by_id(missing).log_version.is_some());
    assert_eq!(by_id(&ghost).log_version, None);
    let edited = by_id(tampered);
    assert_eq!(edited.read_model_version, edited.log_version);
    assert_eq!(edited.fields.len(), 1, "{:?}", edited.fields);
    assert_eq!(edited.fields[0].path, "status");
    assert_eq!(edited.fields[0].read_model, json!("SHIPPED"));
    let behind = by_id(stale);
    assert_eq!(behind.read_model_version, Some(v2));
    assert_eq!(behind.log_version, Some(v2 + 1));
    assert!(
        behind
            .fields
            .iter()
            .any(|f| f.path == "status" && f.log == json!("CANCELLED"))
    );
    assert_eq!(ids_of(&v.compared.trackers), [stale.as_str()]);
    assert_eq!(v.compared.days.len(), 1, "{:#?}", v.compared.days);
    let d = &v.compared.days[0];
    assert_eq!((&d.date, &d.currency), (&day.date, &day.currency));
    assert_eq!(
        d.read_model.as_ref().unwrap().orders_placed,
        d.log.as_ref().unwrap().orders_placed + 1
    );
    assert_eq!(v.not_yet_projected, std::slice::from_ref(young));
    assert!(v.unsettled_days.is_empty());
    assert_eq!(v.compared.differing(), all);
    assert_eq!(
        table_items(&t.client, live.table()).await,
        before,
        "nothing written"
    );

    // One projection: only its rows.
    let v = verify(&t, live.table(), &[ProjectionName::Orders]).await;
    assert_eq!(ids_of(&v.compared.orders), want);
    assert!(v.compared.trackers.is_empty() && v.compared.days.is_empty());
    let v = verify(&t, live.table(), &[ProjectionName::DailySales]).await;
    assert!(v.compared.orders.is_empty());
    assert_eq!(ids_of(&v.compared.trackers), [stale.as_str()]);
    assert_eq!(v.compared.days.len(), 1);

    // The stream delivers: the young one was only late, the stale one is right again.
    for id in [stale, young] {
        let history = t.store.load(id).await.unwrap();
        let last = history.last().unwrap();
        live.apply(last, &last.decode().unwrap()).await.unwrap();
    }
    let v = verify(&t, live.table(), &all).await;
    want.retain(|id| *id != stale.as_str());
    assert_eq!(ids_of(&v.compared.orders), want);
    assert!(v.compared.trackers.is_empty());
    assert!(v.not_yet_projected.is_empty());

    // A repair reads each order again and judges it then: an order edited after the
    // verify is rewritten all the same. A day that moved since the verify read it is
    // left as it is.
    let edited_later = &ids[7];
    shipped_by_hand(&t.client, live.table(), edited_later).await;
    let mut later = v.clone();
    later.compared.orders = vec![orders_domain::compare::RowDiff {
        order_id: edited_later.clone(),
        read_model_version: None,
        log_version: None,
        fields: vec![],
    }];
    later.compared.trackers.clear();
    let mut moved_day = v.compared.days[0].clone();
    if let Some(rm) = moved_day.read_model.as_mut() {
        rm.orders_placed += 5; // not what the table holds
    }
    later.compared.days = vec![moved_day.clone()];
    let days_before = live.daily_sales().await.unwrap();
    let repaired = repair_table(&t.client, &t.events, live.table(), &all, &later)
        .await
        .unwrap();
    assert_eq!(repaired.rows_rewritten, 1, "{repaired:?}");
    assert_eq!(
        repaired.moved,
        [format!("day {} {}", moved_day.date, moved_day.currency)]
    );
    assert_eq!(repaired.days_corrected, 0);
    assert_eq!(live.daily_sales().await.unwrap(), days_before);
    let after = verify(&t, live.table(), &all).await;
    assert_eq!(
        ids_of(&after.compared.orders),
        want,
        "only that order repaired"
    );

    // A tracker past its order's last event (as if events were lost): set back to the
    // log's head, its days left as they are (counted once).
    let ahead = &ids[8];
    let mut key = order_key(ahead);
    key.insert("sk".into(), AttributeValue::S("SALES".into()));
    t.client
        .update_item()
        .table_name(live.table())
        .set_key(Some(key))
        .update_expression("SET #v = #v + :five, #t.#v = #t.#v + :five")
        .expression_attribute_names("#v", "version")
        .expression_attribute_names("#t", "tracker")
        .expression_attribute_values(":five", AttributeValue::N("5".into()))
        .send()
        .await
        .unwrap();
    let v = verify(&t, live.table(), &all).await;
    let head = t.store.load(ahead).await.unwrap().len() as u64;
    let behind = v
        .compared
        .trackers
        .iter()
        .find(|d| &d.order_id == ahead)
        .expect("the tracker ahead");
    assert_eq!(
        (behind.read_model_version, behind.log_version),
        (Some(head + 5), Some(head))
    );

    // --repair: the rest, each write conditional on what was read; then the same, and what
    // readers see is what a replay builds.
    let v = verify_with(&t, live.table(), &all, true).await;
    let r = v.repair.as_ref().expect("a repair");
    assert_eq!(
        (
            r.repaired.rows_rewritten,
            r.repaired.rows_deleted,
            r.repaired.days_corrected
        ),
        (2, 1, 1),
        "{r:?}"
    );
    let missing_events = t.store.load(missing).await.unwrap().len() as u64;
    assert_eq!(r.repaired.events_applied, missing_events, "{r:?}");
    assert!(r.repaired.moved.is_empty());
    assert_eq!((r.still_different, r.still_pending), (0, 0));
    assert!(v.sound() && !v.same());
    assert!(verify(&t, live.table(), &all).await.same());
    let summary = replay_to_table(
        &t.client,
        &t.events,
        live.table(),
        &AwsReplayOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    let rebuilt = DynamoReadModels::new(t.client.clone(), &summary.target_table);
    assert_same_read_models(&live, &rebuilt, &ids, &customers).await;
    assert!(live.order(&ghost).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_beside_a_busy_live_projector_finds_nothing_wrong() {
    let t = env().await;
    let (ids, customers) = seed(&t.store, 8).await;
    let live = live_table(&t.client).await;
    project_live(&t.store, &ids, &live).await;
    let all = [ProjectionName::Orders, ProjectionName::DailySales];

    // The live path meanwhile: orders placed and cancelled now, each event applied right
    // after it is appended (a quick stream), as long as the verifies run.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, live, done) = (t.store.clone(), live.clone(), done.clone());
        let customer = customers.iter().next().unwrap().clone();
        tokio::spawn(async move {
            let mut placed_ids: Vec<String> = Vec::new();
            let mut events = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || events < 20 {
                let id = support::unique("busy");
                append(
                    &store,
                    &id,
                    0,
                    &[placed(&id, &customer, 250, "EUR")],
                    now_ms(),
                )
                .await;
                placed_ids.push(id);
                if placed_ids.len().is_multiple_of(2) {
                    let id = &placed_ids[placed_ids.len() - 2];
                    append(&store, id, 1, &[cancelled()], now_ms()).await;
                }
                for id in placed_ids.iter().rev().take(2) {
                    for e in store.load(id).await.unwrap() {
                        live.apply(&e, &e.decode().unwrap()).await.unwrap();
                    }
                }
                events += 1;
            }
            placed_ids.len()
        })
    };
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        verdicts.push(verify(&t, live.table(), &all).await);
    }
    // A view edited and a tracker deleted by hand, repaired while the projector goes on.
    shipped_by_hand(&t.client, live.table(), &ids[0]).await;
    let mut tracker = order_key(&ids[1]);
    tracker.insert("sk".into(), AttributeValue::S("SALES".into()));
    t.client
        .delete_item()
        .table_name(live.table())
        .set_key(Some(tracker))
        .send()
        .await
        .unwrap();
    let repaired = verify_with(&t, live.table(), &all, true).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let placed_meanwhile = writer.await.unwrap();
    assert!(placed_meanwhile >= 20);
    for v in &verdicts {
        assert_eq!(v.compared.differences(), 0, "{:#?}", v.compared);
    }
    assert_eq!(ids_of(&repaired.compared.orders), [ids[0].as_str()]);
    assert_eq!(ids_of(&repaired.compared.trackers), [ids[1].as_str()]);
    assert!(!repaired.compared.days.is_empty());
    let r = repaired.repair.as_ref().expect("a repair");
    assert_eq!(r.still_different, 0, "{r:?}");
    assert_eq!(r.repaired.rows_rewritten, 1, "{r:?}");
    assert!(r.repaired.events_applied >= 2, "{r:?}");
    // Quiet again: everything compared, the same.
    let v = verify(&t, live.table(), &all).await;
    assert!(v.same(), "{:#?}", v.compared);
    assert!(v.unsettled_days.is_empty() && v.not_yet_projected.is_empty());
    assert_eq!(v.compared.orders_in_log, 8 + placed_meanwhile as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_names_undecodable_events_and_what_a_replay_builds_is_the_same() {
    let t = env().await;
    let (ids, _) = seed(&t.store, 6).await;
    let bad = undecodable_order(&t).await;
    let live = live_table(&t.client).await;
    project_live(&t.store, &ids, &live).await;
    // The live projector stops the bad order at version 1, as it parks version 2.
    let history = t.store.load(&bad).await.unwrap();
    live.apply(&history[0], &history[0].decode().unwrap())
        .await
        .unwrap();
    let all = [ProjectionName::Orders, ProjectionName::DailySales];
    let v = verify(&t, live.table(), &all).await;
    assert!(v.same(), "{:#?}", v.compared);
    let keys: Vec<&str> = v.undecodable.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(keys.len(), 2, "{:?}", v.undecodable);
    assert!(
        keys[0].contains(&bad) && keys[0].contains("version=2"),
        "{keys:?}"
    );
    assert!(v.undecodable[0].reason.contains("OrderTeleported"));
    assert!(keys[1].contains("version=3"), "{keys:?}");

    // A replay's table is what the log says too.
    let summary = replay_to_table(
        &t.client,
        &t.events,
        live.table(),
        &AwsReplayOptions {
            skip_undecodable: true,
            ..Default::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    let v = verify(&t, &summary.target_table, &all).await;
    assert!(v.same(), "{:#?}", v.compared);
    assert_eq!(v.compared.orders_in_log, 7);

    // Bad options are refused before anything is read.
    let err = verify_table(
        &t.client,
        &t.events,
        live.table(),
        &AwsVerifyOptions {
            segments: 0,
            ..Default::default()
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("segments"), "{err}");
    let err = verify_table(
        &t.client,
        &t.events,
        "no-such-table",
        &AwsVerifyOptions::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no-such-table"), "{err}");
}
