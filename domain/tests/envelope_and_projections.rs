use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::order::*;
use orders_domain::projection::*;
use orders_domain::{Currency, Money, Timestamp};

fn placed_event() -> OrderEvent {
    let eur = Currency::parse("EUR").unwrap();
    decide(
        &Order::default(),
        &Command::Place {
            order_id: "o-1".into(),
            placed_via: "test".into(),
            request: PlaceOrderRequest {
                customer: Customer {
                    id: "c-1".into(),
                    email: "a@b.io".into(),
                    name: "A <B>".into(),
                },
                items: vec![LineRequest {
                    sku: "S".into(),
                    quantity: 3,
                    unit_price: Money::new(100, eur),
                }],
                shipping_address: Address {
                    line1: "1 St".into(),
                    line2: None,
                    city: "C".into(),
                    postal_code: "1".into(),
                    country: "FR".into(),
                },
            },
        },
    )
    .unwrap()
    .remove(0)
}

fn wrap(version_before: u64, events: &[OrderEvent], at: i64) -> Vec<EventEnvelope> {
    let meta = EventMeta {
        occurred_at: Timestamp(at),
        correlation_id: "corr".into(),
        causation_id: "cause".into(),
    };
    let mut n = 0;
    EventEnvelope::wrap("o-1", version_before, events, &meta, || {
        n += 1;
        format!("e{n}")
    })
}

#[test]
fn envelopes_number_versions_without_gaps_and_round_trip() {
    let envs = wrap(
        3,
        &[
            placed_event(),
            OrderEvent::Cancelled(OrderCancelled { reason: None }),
        ],
        0,
    );
    assert_eq!(
        envs.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert_eq!(envs[0].event_type, "OrderPlaced");
    assert_eq!(envs[0].decode().unwrap(), placed_event());
    let json = serde_json::to_string(&envs[0]).unwrap();
    let back: EventEnvelope = serde_json::from_str(&json).unwrap();
    assert_eq!(back, envs[0]);
}

#[test]
fn unknown_types_and_versions_and_bad_payloads_do_not_decode() {
    let mut e = wrap(0, &[placed_event()], 0).remove(0);
    e.event_type = "OrderTeleported".into();
    assert!(e.decode().is_err());
    let mut e = wrap(0, &[placed_event()], 0).remove(0);
    e.schema_version = 99;
    assert!(e.decode().is_err());
    let mut e = wrap(0, &[placed_event()], 0).remove(0);
    e.payload = serde_json::json!({"order_id": 5});
    assert!(e.decode().is_err());
}

#[test]
fn the_version_guard_applies_the_next_ignores_the_old_and_waits_on_gaps() {
    assert_eq!(applicability(0, 1), Applicability::Apply);
    assert_eq!(applicability(3, 3), Applicability::Duplicate);
    assert_eq!(applicability(3, 1), Applicability::Duplicate);
    assert_eq!(applicability(3, 5), Applicability::Gap { expected: 4 });
}

#[test]
fn the_order_view_follows_the_lifecycle() {
    let day = 1_795_706_525_000;
    let envs = wrap(
        0,
        &[
            placed_event(),
            OrderEvent::Confirmed(OrderConfirmed {
                execution_name: "o-1".into(),
                notifications: vec![],
            }),
            OrderEvent::FulfilmentRequested(FulfilmentRequested {
                message_id: "m".into(),
            }),
        ],
        day,
    );
    let mut view = None;
    let mut statuses = vec![];
    for e in &envs {
        let v = apply_order_view(view, e, &e.decode().unwrap()).unwrap();
        statuses.push(v.status);
        view = Some(v);
    }
    let view = view.unwrap();
    assert_eq!(
        statuses,
        vec![
            OrderStatus::Placed,
            OrderStatus::Confirmed,
            OrderStatus::FulfilmentRequested
        ]
    );
    assert_eq!(view.version, 3);
    assert_eq!(view.workflow.status, "SUCCEEDED");
    assert_eq!(view.summary().customer_id, "c-1");
}

#[test]
fn a_view_as_of_a_version_or_a_moment_folds_only_the_events_up_to_it() {
    let (t1, t2, t3) = (1_795_706_525_000, 1_795_706_526_000, 1_795_706_527_000);
    let mut envs = wrap(0, &[placed_event()], t1);
    envs.extend(wrap(
        1,
        &[OrderEvent::Confirmed(OrderConfirmed {
            execution_name: "o-1".into(),
            notifications: vec![],
        })],
        t2,
    ));
    envs.extend(wrap(
        2,
        &[OrderEvent::Cancelled(OrderCancelled {
            reason: Some("changed my mind".into()),
        })],
        t3,
    ));
    let status_in = |envs: &[EventEnvelope], as_of| {
        view_as_of(envs, as_of)
            .map(|v| (v.version, v.status))
            .map_err(|e| e.to_string())
    };
    let status = |as_of| status_in(&envs, as_of);
    assert_eq!(status(AsOf::Latest), Ok((3, OrderStatus::Cancelled)));
    assert_eq!(status(AsOf::Version(1)), Ok((1, OrderStatus::Placed)));
    assert_eq!(status(AsOf::Version(2)), Ok((2, OrderStatus::Confirmed)));
    assert_eq!(status(AsOf::Version(3)), Ok((3, OrderStatus::Cancelled)));
    assert_eq!(
        status(AsOf::Version(4)),
        Err("order o-1 has no version 4: its latest is 3".into())
    );
    let not_yet = view_as_of(&envs, AsOf::At(Timestamp(t1 - 1))).unwrap_err();
    assert!(not_yet.is_not_found(), "{not_yet}");
    assert!(
        not_yet
            .to_string()
            .starts_with("order o-1 was not placed yet at "),
        "{not_yet}"
    );
    assert_eq!(
        status(AsOf::At(Timestamp(t1))),
        Ok((1, OrderStatus::Placed))
    );
    assert_eq!(
        status(AsOf::At(Timestamp(t3 - 1))),
        Ok((2, OrderStatus::Confirmed))
    );
    assert_eq!(
        status(AsOf::At(Timestamp(t3))),
        Ok((3, OrderStatus::Cancelled))
    );
    assert_eq!(
        view_as_of(&[], AsOf::Latest).unwrap_err(),
        ViewAtError::NoEvents
    );
    // The events up to a point: the same cut and the same checks.
    let upto = |as_of: AsOf| as_of.events(&envs).map(|e| e.len());
    assert_eq!(upto(AsOf::Latest), Ok(3));
    assert_eq!(upto(AsOf::Version(2)), Ok(2));
    assert_eq!(upto(AsOf::At(Timestamp(t3 - 1))), Ok(2));
    assert!(upto(AsOf::Version(4)).is_err_and(|e| e.is_not_found()));
    assert!(upto(AsOf::At(Timestamp(t1 - 1))).is_err_and(|e| e.is_not_found()));
    // The latest view is the one the projector's fold builds.
    let mut live = None;
    for e in &envs {
        live = Some(apply_order_view(live, e, &e.decode().unwrap()).unwrap());
    }
    assert_eq!(Some(view_as_of(&envs, AsOf::Latest).unwrap()), live);
    // An undecodable event is named, but only if the view needs it.
    envs[2].event_type = "OrderTeleported".into();
    assert_eq!(
        status_in(&envs, AsOf::Version(2)),
        Ok((2, OrderStatus::Confirmed))
    );
    let err = view_as_of(&envs, AsOf::Latest).unwrap_err();
    assert!(!err.is_not_found());
    assert!(err.to_string().contains("o-1#v3"), "{err}");
}

#[test]
fn an_event_before_placement_is_an_error_not_a_view() {
    let e = wrap(
        1,
        &[OrderEvent::Cancelled(OrderCancelled { reason: None })],
        0,
    )
    .remove(0);
    assert!(apply_order_view(None, &e, &e.decode().unwrap()).is_err());
}

#[test]
fn daily_sales_count_placements_and_cancellations_on_their_days() {
    let day1 = 1_795_706_525_000;
    let day2 = day1 + 86_400_000;
    let placed = wrap(0, &[placed_event()], day1).remove(0);
    let cancelled = wrap(
        1,
        &[OrderEvent::Cancelled(OrderCancelled { reason: None })],
        day2,
    )
    .remove(0);
    let (tracker, d1) = apply_daily_sales(None, &placed, &placed.decode().unwrap());
    let (_, d2) = apply_daily_sales(Some(tracker), &cancelled, &cancelled.decode().unwrap());
    let (d1, d2) = (d1.unwrap(), d2.unwrap());
    assert_eq!(
        (d1.date.as_str(), d1.orders_placed, d1.amount_placed),
        ("2026-11-26", 1, 300)
    );
    assert_eq!(
        (d2.date.as_str(), d2.orders_cancelled, d2.amount_cancelled),
        ("2026-11-27", 1, 300)
    );
    let mut s = DailySales::new("2026-11-26", "EUR");
    s.add(&d1);
    s.add(&d2);
    assert_eq!(s.net_amount, 0);
}

#[test]
fn the_confirmation_email_lists_lines_and_escapes_html() {
    let OrderEvent::Placed(p) = placed_event() else {
        unreachable!()
    };
    let email = orders_domain::workflow::confirmation_email(&p);
    assert!(email.text.contains("3 x S @ 1.00 EUR = 3.00 EUR"));
    assert!(email.text.contains("Total: 3.00 EUR"));
    assert!(email.html.contains("A &lt;B&gt;"));
    assert!(!email.html.contains("A <B>"));
}

#[test]
fn order_placed_v1_is_upcast_on_read_and_new_events_are_v2() {
    let current = wrap(0, &[placed_event()], 0).remove(0);
    assert_eq!(current.schema_version, 2);
    assert_eq!(current.payload["placed_via"], "test");

    // A v1 event as stored before the channel was recorded: never rewritten, upcast on read.
    let mut v1 = current.clone();
    v1.schema_version = 1;
    if let serde_json::Value::Object(m) = &mut v1.payload {
        m.remove("placed_via");
    }
    let OrderEvent::Placed(p) = v1.decode().unwrap() else {
        panic!("expected OrderPlaced");
    };
    assert_eq!(p.placed_via, "unknown");
    assert_eq!(p.total, Money::new(300, Currency::parse("EUR").unwrap()));
    assert!(
        v1.payload.get("placed_via").is_none(),
        "the stored payload is unchanged"
    );

    // A v2 payload without the field is not silently accepted.
    let mut broken = current.clone();
    if let serde_json::Value::Object(m) = &mut broken.payload {
        m.remove("placed_via");
    }
    assert!(broken.decode().is_err());
    let mut future = current;
    future.schema_version = 3;
    assert!(future.decode().is_err());
}
