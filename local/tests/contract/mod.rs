//! The contract every adapter of the `EventStore` and `ReadModels` ports must meet,
//! written against the ports only, so the SQLite and the DynamoDB adapters run the very
//! same checks. Include it with
//! `#[path = "<relative path to>/local/tests/contract/mod.rs"] mod contract;`.
//!
//! Every check makes its own unique order and customer ids, so one store (for example a
//! DynamoDB Local table that outlives the run) can serve all of them, in any order and
//! in parallel. Daily sales are shared counters, so those checks compare before/after.
//!
//! Needs only `orders-domain`, `serde_json` and `tokio` (macros, rt, time).
#![allow(dead_code)]

use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::money::{Currency, Money};
use orders_domain::order::{
    Channel, DeliveryStatus, NotificationResult, OrderCancelled, OrderConfirmed, OrderEvent,
    OrderStatus,
};
use orders_domain::ports::{
    AppendRequest, ApplyOutcome, EventStore, IdempotencyRecord, ReadModelError, ReadModels,
    StoreError,
};
use orders_domain::projection::{DailySales, ProjectionError};
use orders_domain::time::Timestamp;
use std::collections::HashSet;
use std::sync::Arc;

// ---------------------------------------------------------------- fixtures

mod unique;
pub use unique::unique;

/// 2026-11-26T15:22:05.123Z
pub const T0: i64 = 1_795_706_525_123;

pub fn money(amount: i64, currency: &str) -> Money {
    Money::new(amount, Currency::parse(currency).expect("test currency"))
}

pub use orders_domain::sample::placed;

pub fn cancelled() -> OrderEvent {
    OrderEvent::Cancelled(OrderCancelled {
        reason: Some("changed my mind".into()),
    })
}

pub fn confirmed(order_id: &str) -> OrderEvent {
    OrderEvent::Confirmed(OrderConfirmed {
        execution_name: order_id.into(),
        notifications: vec![NotificationResult {
            channel: Channel::Email,
            status: DeliveryStatus::Sent,
            message_id: Some("m-1".into()),
            error: None,
            cause: None,
        }],
    })
}

/// Envelopes for `events`, numbered after `current_version`, all at `at_ms`.
pub fn wrap(
    order_id: &str,
    current_version: u64,
    events: &[OrderEvent],
    at_ms: i64,
) -> Vec<EventEnvelope> {
    let meta = EventMeta {
        occurred_at: Timestamp(at_ms),
        correlation_id: unique("corr"),
        causation_id: unique("cause"),
    };
    EventEnvelope::wrap(order_id, current_version, events, &meta, || unique("evt"))
}

pub fn request(order_id: &str, expected_version: u64, events: Vec<EventEnvelope>) -> AppendRequest {
    AppendRequest {
        aggregate_id: order_id.into(),
        expected_version,
        events,
        idempotency: None,
    }
}

/// When this run's idempotency records were made: now, once per process. Not `T0`:
/// DynamoDB Local's TTL sweep deletes a record a day after it was made.
fn idem_created() -> Timestamp {
    static NOW: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(T0, |d| i64::try_from(d.as_millis()).unwrap_or(T0))
    });
    Timestamp(*NOW)
}

pub fn idem(key: &str, order_id: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.into(),
        request_hash: "sha256:abc".into(),
        aggregate_id: order_id.into(),
        status: 201,
        response: format!(r#"{{"order_id":"{order_id}"}}"#),
        created_at: idem_created(),
    }
}

/// Places a new order (version 1) and returns its envelope.
pub async fn place(store: &impl EventStore, order_id: &str) -> EventEnvelope {
    let events = wrap(
        order_id,
        0,
        &[placed(order_id, "c-1", money(2500, "EUR"))],
        T0,
    );
    store
        .append(request(order_id, 0, events.clone()))
        .await
        .expect("placing a new order");
    events.into_iter().next().expect("one event")
}

// ---------------------------------------------------------------- event store

pub async fn appends_and_loads_in_version_order(store: &impl EventStore) {
    let id = unique("order");
    let first = wrap(&id, 0, &[placed(&id, "c-1", money(2500, "EUR"))], T0);
    store.append(request(&id, 0, first.clone())).await.unwrap();
    // Two events in one append, then one more.
    let more = wrap(&id, 1, &[confirmed(&id), cancelled()], T0 + 10);
    store.append(request(&id, 1, more.clone())).await.unwrap();
    let last = wrap(&id, 3, &[cancelled()], T0 + 20);
    store.append(request(&id, 3, last.clone())).await.unwrap();

    let loaded = store.load(&id).await.unwrap();
    let expected: Vec<EventEnvelope> = first.into_iter().chain(more).chain(last).collect();
    assert_eq!(loaded, expected, "events come back whole, in version order");
    assert_eq!(
        loaded.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    for e in &loaded {
        e.decode().expect("a stored event decodes");
    }
}

pub async fn unknown_order_loads_empty(store: &impl EventStore) {
    assert!(store.load(&unique("nobody")).await.unwrap().is_empty());
    assert_eq!(store.idempotency(&unique("no-key")).await.unwrap(), None);
}

pub async fn stale_expected_version_is_a_conflict(store: &impl EventStore) {
    let id = unique("order");
    let v1 = place(store, &id).await;
    for expected in [0, 2, 7] {
        let events = wrap(&id, expected, &[cancelled()], T0);
        let err = store
            .append(request(&id, expected, events))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict {
                aggregate_id: id.clone(),
                expected
            }
        );
    }
    assert_eq!(store.load(&id).await.unwrap(), vec![v1], "nothing appended");
}

/// Many writers race for the same next version: exactly one wins, every other one gets
/// a conflict, and the log holds the winner's event only.
pub async fn concurrent_writers_exactly_one_wins<S: EventStore>(store: Arc<S>) {
    const WRITERS: usize = 8;
    let id = unique("order");
    place(store.as_ref(), &id).await;
    for round in 1..=3u64 {
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let (store, id) = (store.clone(), id.clone());
            let events = wrap(&id, round, &[confirmed(&id)], T0);
            tasks.push(tokio::spawn(async move {
                let event_id = events[0].event_id.clone();
                (event_id, store.append(request(&id, round, events)).await)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (event_id, result) = t.await.unwrap();
            match result {
                Ok(()) => winners.push(event_id),
                Err(StoreError::Conflict { expected, .. }) => assert_eq!(expected, round),
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
        let loaded = store.load(&id).await.unwrap();
        assert_eq!(loaded.len() as u64, round + 1);
        assert_eq!(loaded.last().unwrap().event_id, winners[0]);
    }
}

pub async fn idempotency_record_is_stored_with_the_append(store: &impl EventStore) {
    let id = unique("order");
    let key = unique("key");
    let events = wrap(&id, 0, &[placed(&id, "c-1", money(100, "EUR"))], T0);
    let record = idem(&key, &id);
    let mut req = request(&id, 0, events);
    req.idempotency = Some(record.clone());
    store.append(req).await.unwrap();
    assert_eq!(store.idempotency(&key).await.unwrap(), Some(record));
    assert_eq!(store.load(&id).await.unwrap().len(), 1);
}

/// A key already used refuses the append, and nothing of it is stored.
pub async fn duplicate_idempotency_key_appends_nothing(store: &impl EventStore) {
    let key = unique("key");
    let (a, b) = (unique("order"), unique("order"));
    let mut first = request(
        &a,
        0,
        wrap(&a, 0, &[placed(&a, "c-1", money(100, "EUR"))], T0),
    );
    first.idempotency = Some(idem(&key, &a));
    store.append(first).await.unwrap();

    let mut again = request(
        &b,
        0,
        wrap(&b, 0, &[placed(&b, "c-1", money(100, "EUR"))], T0),
    );
    again.idempotency = Some(idem(&key, &b));
    assert_eq!(
        store.append(again).await.unwrap_err(),
        StoreError::DuplicateIdempotencyKey(key.clone())
    );
    assert!(store.load(&b).await.unwrap().is_empty(), "nothing appended");
    assert_eq!(store.idempotency(&key).await.unwrap(), Some(idem(&key, &a)));
}

/// A repeated command (same key, same order, same expected version) is told that the key
/// is used rather than that the version moved: the caller answers with the first response.
pub async fn duplicate_key_takes_precedence_over_conflict(store: &impl EventStore) {
    let id = unique("order");
    let key = unique("key");
    place(store, &id).await;
    let mut cancel = request(&id, 1, wrap(&id, 1, &[cancelled()], T0));
    cancel.idempotency = Some(idem(&key, &id));
    store.append(cancel.clone()).await.unwrap();
    let mut repeat = cancel;
    repeat.events = wrap(&id, 1, &[cancelled()], T0);
    assert_eq!(
        store.append(repeat).await.unwrap_err(),
        StoreError::DuplicateIdempotencyKey(key)
    );
    assert_eq!(store.load(&id).await.unwrap().len(), 2);
}

/// A refused append leaves no idempotency record behind.
pub async fn conflicting_append_stores_no_idempotency_record(store: &impl EventStore) {
    let id = unique("order");
    let key = unique("key");
    place(store, &id).await;
    let mut stale = request(&id, 0, wrap(&id, 0, &[cancelled()], T0));
    stale.idempotency = Some(idem(&key, &id));
    assert!(matches!(
        store.append(stale).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.idempotency(&key).await.unwrap(), None);
}

/// At most 100 events per append (DynamoDB's TransactWriteItems limit).
pub async fn more_than_100_events_are_refused(store: &impl EventStore) {
    let id = unique("order");
    let mut events = vec![placed(&id, "c-1", money(100, "EUR"))];
    events.extend((0..100).map(|_| cancelled()));
    let too_many = wrap(&id, 0, &events, T0);
    assert_eq!(too_many.len(), 101);
    assert_eq!(
        store.append(request(&id, 0, too_many)).await.unwrap_err(),
        StoreError::TooManyEvents { max: 100, got: 101 }
    );
    assert!(store.load(&id).await.unwrap().is_empty());

    // 99 + the idempotency record is still within the limit of 100 items.
    let ok = wrap(&id, 0, &events[..99], T0);
    let mut req = request(&id, 0, ok);
    req.idempotency = Some(idem(&unique("key"), &id));
    store.append(req).await.unwrap();
    assert_eq!(store.load(&id).await.unwrap().len(), 99);
}

pub async fn event_store_suite<S: EventStore>(store: Arc<S>) {
    appends_and_loads_in_version_order(store.as_ref()).await;
    unknown_order_loads_empty(store.as_ref()).await;
    stale_expected_version_is_a_conflict(store.as_ref()).await;
    concurrent_writers_exactly_one_wins(store.clone()).await;
    idempotency_record_is_stored_with_the_append(store.as_ref()).await;
    duplicate_idempotency_key_appends_nothing(store.as_ref()).await;
    duplicate_key_takes_precedence_over_conflict(store.as_ref()).await;
    conflicting_append_stores_no_idempotency_record(store.as_ref()).await;
    more_than_100_events_are_refused(store.as_ref()).await;
}

// ---------------------------------------------------------------- read models

async fn apply_all(rm: &impl ReadModels, envelopes: &[EventEnvelope]) -> Vec<ApplyOutcome> {
    let mut out = Vec::new();
    for e in envelopes {
        let event = e.decode().expect("fixture decodes");
        out.push(rm.apply(e, &event).await.expect("apply"));
    }
    out
}

pub async fn apply_then_redeliver_is_a_duplicate(rm: &impl ReadModels) {
    let id = unique("order");
    let customer = unique("cust");
    let v1 = wrap(&id, 0, &[placed(&id, &customer, money(2500, "EUR"))], T0);
    assert_eq!(apply_all(rm, &v1).await, vec![ApplyOutcome::Applied]);
    assert_eq!(apply_all(rm, &v1).await, vec![ApplyOutcome::Duplicate]);

    let view = rm.order(&id).await.unwrap().expect("the view exists");
    assert_eq!(view.order_id, id);
    assert_eq!(view.version, 1);
    assert_eq!(view.status, OrderStatus::Placed);
    assert_eq!(view.customer.id, customer);
    assert_eq!(view.total, money(2500, "EUR"));
    assert_eq!(view.placed_at, Timestamp(T0));

    // A stale delivery after later events changes nothing either.
    let v2 = wrap(&id, 1, &[cancelled()], T0 + 1000);
    assert_eq!(apply_all(rm, &v2).await, vec![ApplyOutcome::Applied]);
    assert_eq!(apply_all(rm, &v1).await, vec![ApplyOutcome::Duplicate]);
    let view = rm.order(&id).await.unwrap().unwrap();
    assert_eq!((view.version, view.status), (2, OrderStatus::Cancelled));
    assert_eq!(rm.order(&unique("nobody")).await.unwrap(), None);
}

/// An event whose predecessor was not applied is refused (retry later), changing nothing.
pub async fn a_gap_is_refused_and_changes_nothing(rm: &impl ReadModels) {
    let id = unique("order");
    let all = wrap(
        &id,
        0,
        &[
            placed(&id, "c-1", money(700, "EUR")),
            confirmed(&id),
            cancelled(),
        ],
        T0,
    );
    apply_all(rm, &all[..1]).await;
    let event = all[2].decode().unwrap();
    assert_eq!(
        rm.apply(&all[2], &event).await.unwrap_err(),
        ReadModelError::Gap {
            aggregate_id: id.clone(),
            expected: 2,
            got: 3
        }
    );
    assert_eq!(rm.order(&id).await.unwrap().unwrap().version, 1);
    assert_eq!(
        apply_all(rm, &all[1..]).await,
        vec![ApplyOutcome::Applied, ApplyOutcome::Applied]
    );
    let view = rm.order(&id).await.unwrap().unwrap();
    assert_eq!((view.version, view.status), (3, OrderStatus::Cancelled));
}

/// A first event that is not `OrderPlaced` is refused and leaves no trace.
pub async fn an_event_before_placement_is_refused(rm: &impl ReadModels) {
    let id = unique("order");
    let stray = wrap(&id, 0, &[cancelled()], T0);
    let err = rm
        .apply(&stray[0], &stray[0].decode().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ReadModelError::Projection(ProjectionError::NotPlaced { .. })
        ),
        "{err:?}"
    );
    assert_eq!(rm.order(&id).await.unwrap(), None);
    let v1 = wrap(&id, 0, &[placed(&id, "c-1", money(1, "EUR"))], T0);
    assert_eq!(apply_all(rm, &v1).await, vec![ApplyOutcome::Applied]);
}

/// `apply_batch` folds in order and stops at the first failure: the results cover the
/// applied prefix and end with that failure; nothing after it is applied.
pub async fn apply_batch_stops_at_the_first_failure(rm: &impl ReadModels) {
    let (a, b, c) = (unique("order"), unique("order"), unique("order"));
    let pa = wrap(&a, 0, &[placed(&a, "c-1", money(1, "EUR"))], T0).remove(0);
    let gap = wrap(&b, 1, &[cancelled()], T0).remove(0);
    let pc = wrap(&c, 0, &[placed(&c, "c-1", money(1, "EUR"))], T0).remove(0);
    let batch: Vec<_> = [pa.clone(), gap, pc]
        .into_iter()
        .map(|e| {
            let ev = e.decode().unwrap();
            (e, ev)
        })
        .collect();
    let results = rm.apply_batch(batch.clone().into()).await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0], Ok(ApplyOutcome::Applied));
    assert!(
        matches!(results[1], Err(ReadModelError::Gap { .. })),
        "{results:?}"
    );
    assert!(rm.order(&a).await.unwrap().is_some());
    assert_eq!(
        rm.order(&c).await.unwrap(),
        None,
        "nothing after the failure"
    );
    // Redelivered, the applied prefix is a duplicate.
    assert_eq!(
        rm.apply_batch(batch[..1].to_vec().into()).await,
        vec![Ok(ApplyOutcome::Duplicate)]
    );
}

/// One customer's orders, newest first, page by page; every order exactly once.
pub async fn customer_orders_page_newest_first(rm: &impl ReadModels) {
    let customer = unique("cust");
    let other = unique("cust");
    let mut placed_at = Vec::new();
    // Seven orders at distinct times, shuffled, plus two placed in the same millisecond.
    for (i, offset) in [3, 0, 6, 1, 5, 2, 4, 7, 7].into_iter().enumerate() {
        let id = unique(&format!("order{i}"));
        let at = T0 + offset * 60_000;
        apply_all(
            rm,
            &wrap(&id, 0, &[placed(&id, &customer, money(100, "EUR"))], at),
        )
        .await;
        placed_at.push((at, id));
    }
    let stranger = unique("order");
    apply_all(
        rm,
        &wrap(
            &stranger,
            0,
            &[placed(&stranger, &other, money(1, "EUR"))],
            T0 + 10 * 60_000,
        ),
    )
    .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = rm
            .customer_orders(&customer, 4, cursor.as_deref())
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 4);
        assert!(page.items.iter().all(|s| s.customer_id == customer));
        seen.extend(
            page.items
                .iter()
                .map(|s| (s.placed_at.millis(), s.order_id.clone())),
        );
        match page.next_cursor {
            Some(c) => {
                assert_eq!(page.items.len(), 4, "only the last page is short");
                cursor = Some(c);
            }
            None => break,
        }
        assert!(pages < 10, "paging terminates");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 9);
    let ids: HashSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), 9, "no order twice");
    assert!(
        seen.windows(2).all(|w| w[0].0 >= w[1].0),
        "newest first: {seen:?}"
    );
    let mut expected: Vec<_> = placed_at.iter().map(|(_, id)| id.clone()).collect();
    expected.sort();
    let mut got: Vec<_> = ids.into_iter().collect();
    got.sort();
    assert_eq!(got, expected);

    // A summary carries the order's current state.
    let first = rm.customer_orders(&customer, 1, None).await.unwrap();
    assert_eq!(first.items[0].status, OrderStatus::Placed);
    assert_eq!(first.items[0].total, money(100, "EUR"));

    let none = rm.customer_orders(&unique("cust"), 10, None).await.unwrap();
    assert!(none.items.is_empty() && none.next_cursor.is_none());
    assert_eq!(
        rm.customer_orders(&customer, 4, Some("not a cursor"))
            .await
            .unwrap_err(),
        ReadModelError::InvalidCursor
    );
}

fn day(all: &[DailySales], date: &str, currency: &str) -> DailySales {
    all.iter()
        .find(|d| d.date == date && d.currency == currency)
        .cloned()
        .unwrap_or_else(|| DailySales::new(date, currency))
}

/// Placements count on their day, cancellations on theirs; redelivery counts nothing twice.
pub async fn daily_sales_are_not_double_counted(rm: &impl ReadModels) {
    // 2001-02-03 and 2001-02-04, far from any other check's data.
    let (d1, d2) = (981_158_400_000 + 3_600_000, 981_244_800_000 + 3_600_000);
    let before = rm.daily_sales().await.unwrap();
    let (a, b) = (unique("order"), unique("order"));
    let a_events = wrap(&a, 0, &[placed(&a, "c-1", money(1000, "CHF"))], d1);
    let b_placed = wrap(&b, 0, &[placed(&b, "c-1", money(250, "CHF"))], d1);
    let b_cancel = wrap(&b, 1, &[cancelled()], d2);
    for _ in 0..3 {
        apply_all(rm, &a_events).await;
        apply_all(rm, &b_placed).await;
        apply_all(rm, &b_cancel).await;
        apply_all(rm, &b_placed).await;
    }
    let after = rm.daily_sales().await.unwrap();

    let (x, y) = (
        day(&before, "2001-02-03", "CHF"),
        day(&after, "2001-02-03", "CHF"),
    );
    assert_eq!(y.orders_placed - x.orders_placed, 2);
    assert_eq!(y.amount_placed - x.amount_placed, 1250);
    assert_eq!(y.orders_cancelled - x.orders_cancelled, 0);
    assert_eq!(y.net_amount - x.net_amount, 1250);

    let (x, y) = (
        day(&before, "2001-02-04", "CHF"),
        day(&after, "2001-02-04", "CHF"),
    );
    assert_eq!(y.orders_placed - x.orders_placed, 0);
    assert_eq!(y.orders_cancelled - x.orders_cancelled, 1);
    assert_eq!(y.amount_cancelled - x.amount_cancelled, 250);
    assert_eq!(y.net_amount - x.net_amount, -250);
    for d in &after {
        assert_eq!(d.net_amount, d.amount_placed - d.amount_cancelled);
    }
}

pub async fn read_models_suite(rm: &impl ReadModels) {
    apply_then_redeliver_is_a_duplicate(rm).await;
    a_gap_is_refused_and_changes_nothing(rm).await;
    an_event_before_placement_is_refused(rm).await;
    apply_batch_stops_at_the_first_failure(rm).await;
    customer_orders_page_newest_first(rm).await;
    daily_sales_are_not_double_counted(rm).await;
}
