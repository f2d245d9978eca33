//! Given / when / then for every rule of the Order aggregate.

use orders_domain::order::*;
use orders_domain::{Currency, Money, sample};

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

fn request() -> PlaceOrderRequest {
    PlaceOrderRequest {
        customer: sample::customer("c-42"),
        items: vec![LineRequest {
            sku: "BOOK-1".into(),
            quantity: 2,
            unit_price: eur(1250),
        }],
        shipping_address: sample::address(),
    }
}

fn place() -> Command {
    Command::Place {
        order_id: "o-1".into(),
        placed_via: "test".into(),
        request: request(),
    }
}

/// given the events, when the command, then the outcome.
fn given(events: &[OrderEvent]) -> Order {
    Order::from_events(events)
}

fn placed() -> OrderEvent {
    decide(&Order::default(), &place()).unwrap().remove(0)
}

fn sent(channel: Channel) -> NotificationResult {
    NotificationResult {
        channel,
        status: DeliveryStatus::Sent,
        message_id: Some("m".into()),
        error: None,
        cause: None,
    }
}

fn outcome(execution: &str, notifications: Vec<NotificationResult>) -> Command {
    Command::RecordWorkflowOutcome {
        execution_name: execution.into(),
        notifications,
    }
}

fn confirmed() -> OrderEvent {
    OrderEvent::Confirmed(OrderConfirmed {
        execution_name: "o-1".into(),
        notifications: vec![sent(Channel::Sns)],
    })
}

fn fulfilment() -> OrderEvent {
    OrderEvent::FulfilmentRequested(FulfilmentRequested {
        message_id: "q-1".into(),
    })
}

#[test]
fn placing_a_new_order_records_lines_and_total() {
    let events = decide(&given(&[]), &place()).unwrap();
    let [OrderEvent::Placed(p)] = events.as_slice() else {
        panic!("expected one OrderPlaced, got {events:?}");
    };
    assert_eq!(p.order_id, "o-1");
    assert_eq!(p.items[0].line_total, eur(2500));
    assert_eq!(p.total, eur(2500));
    assert_eq!(given(&events).status(), OrderStatus::Placed);
    assert_eq!(given(&events).version, 1);
}

#[test]
fn an_order_cannot_be_placed_twice() {
    assert_eq!(
        decide(&given(&[placed()]), &place()),
        Err(DomainError::AlreadyPlaced("o-1".into()))
    );
}

#[test]
fn invalid_orders_name_every_wrong_field() {
    let mut r = request();
    r.customer.email = "not-an-email".into();
    r.items[0].quantity = 0;
    r.items.push(LineRequest {
        sku: "".into(),
        quantity: 1001,
        unit_price: Money::new(-1, Currency::parse("USD").unwrap()),
    });
    r.shipping_address.country = "France".into();
    let Err(DomainError::Invalid(errors)) = decide(
        &given(&[]),
        &Command::Place {
            order_id: "o-1".into(),
            placed_via: "test".into(),
            request: r,
        },
    ) else {
        panic!("expected a validation error");
    };
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    for f in [
        "customer.email",
        "items[0].quantity",
        "items[1].sku",
        "items[1].quantity",
        "items[1].unit_price.amount",
        "items[1].unit_price.currency",
        "shipping_address.country",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
}

#[test]
fn an_order_needs_between_one_and_a_hundred_lines() {
    let mut r = request();
    r.items.clear();
    let none = decide(
        &given(&[]),
        &Command::Place {
            order_id: "o".into(),
            placed_via: "test".into(),
            request: r.clone(),
        },
    );
    assert!(matches!(none, Err(DomainError::Invalid(e)) if e.0[0].field == "items"));
    r.items = vec![request().items[0].clone(); 101];
    let many = decide(
        &given(&[]),
        &Command::Place {
            order_id: "o".into(),
            placed_via: "test".into(),
            request: r.clone(),
        },
    );
    assert!(matches!(many, Err(DomainError::Invalid(e)) if e.0[0].field == "items"));
    r.items.truncate(100);
    assert!(
        decide(
            &given(&[]),
            &Command::Place {
                order_id: "o".into(),
                placed_via: "test".into(),
                request: r
            }
        )
        .is_ok()
    );
}

#[test]
fn a_total_that_overflows_is_refused() {
    let mut r = request();
    r.items = vec![
        LineRequest {
            sku: "X".into(),
            quantity: 1000,
            unit_price: eur(i64::MAX / 1000)
        };
        2
    ];
    assert!(matches!(
        decide(
            &given(&[]),
            &Command::Place {
                order_id: "o".into(),
                placed_via: "test".into(),
                request: r
            }
        ),
        Err(DomainError::Invalid(_))
    ));
}

#[test]
fn a_placed_or_confirmed_order_can_be_cancelled() {
    for history in [vec![placed()], vec![placed(), confirmed()]] {
        let events = decide(
            &given(&history),
            &Command::Cancel {
                reason: Some("changed my mind".into()),
            },
        )
        .unwrap();
        assert!(
            matches!(events.as_slice(), [OrderEvent::Cancelled(c)] if c.reason.as_deref() == Some("changed my mind"))
        );
        let mut all = history.clone();
        all.extend(events);
        assert_eq!(given(&all).status(), OrderStatus::Cancelled);
    }
}

#[test]
fn cancelling_is_refused_once_fulfilment_started_or_already_cancelled() {
    let cancelled = OrderEvent::Cancelled(OrderCancelled { reason: None });
    assert_eq!(
        decide(
            &given(&[placed(), fulfilment()]),
            &Command::Cancel { reason: None }
        ),
        Err(DomainError::NotCancellable(
            OrderStatus::FulfilmentRequested
        ))
    );
    assert_eq!(
        decide(
            &given(&[placed(), cancelled]),
            &Command::Cancel { reason: None }
        ),
        Err(DomainError::NotCancellable(OrderStatus::Cancelled))
    );
}

#[test]
fn commands_on_an_unknown_order_are_not_found() {
    for c in [
        Command::Cancel { reason: None },
        outcome("x", vec![]),
        Command::RequestFulfilment {
            message_id: "m".into(),
        },
        Command::Ship {
            carrier: "UPS".into(),
            tracking_number: "1Z".into(),
        },
    ] {
        assert_eq!(decide(&given(&[]), &c), Err(DomainError::NotFound));
    }
}

#[test]
fn the_workflow_outcome_confirms_and_records_each_failed_channel() {
    let failed = NotificationResult {
        channel: Channel::Email,
        status: DeliveryStatus::Failed,
        message_id: None,
        error: Some("SesV2.MessageRejected".into()),
        cause: Some("Email address is not verified.".into()),
    };
    let events = decide(
        &given(&[placed()]),
        &outcome("o-1", vec![sent(Channel::Sns), sent(Channel::Sqs), failed]),
    )
    .unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(&events[0], OrderEvent::Confirmed(c) if c.notifications.len() == 3));
    assert!(matches!(&events[1], OrderEvent::NotificationFailed(f)
        if f.channel == Channel::Email && f.error == "SesV2.MessageRejected"));
    let mut all = vec![placed()];
    all.extend(events);
    assert_eq!(given(&all).status(), OrderStatus::Confirmed);
}

#[test]
fn a_repeated_outcome_report_appends_nothing() {
    assert_eq!(
        decide(
            &given(&[placed(), confirmed()]),
            &outcome("o-1", vec![sent(Channel::Sns)])
        ),
        Ok(vec![])
    );
}

#[test]
fn fulfilment_may_overtake_confirmation_and_status_keeps_the_furthest_step() {
    let state = given(&[placed(), fulfilment()]);
    assert_eq!(state.status(), OrderStatus::FulfilmentRequested);
    let events = decide(&state, &outcome("o-1", vec![sent(Channel::Sqs)])).unwrap();
    let mut all = vec![placed(), fulfilment()];
    all.extend(events);
    assert_eq!(given(&all).status(), OrderStatus::FulfilmentRequested);
}

#[test]
fn fulfilment_is_requested_once_and_never_for_a_cancelled_order() {
    let again = Command::RequestFulfilment {
        message_id: "q-2".into(),
    };
    assert_eq!(
        decide(&given(&[placed(), fulfilment()]), &again),
        Ok(vec![])
    );
    let cancelled = OrderEvent::Cancelled(OrderCancelled { reason: None });
    assert_eq!(
        decide(&given(&[placed(), cancelled]), &again),
        Err(DomainError::Cancelled)
    );
}

#[test]
fn only_an_order_in_fulfilment_ships() {
    let ship = Command::Ship {
        carrier: "UPS".into(),
        tracking_number: "1Z999".into(),
    };
    assert_eq!(
        decide(&given(&[placed(), confirmed()]), &ship),
        Err(DomainError::NotShippable(OrderStatus::Confirmed))
    );
    let events = decide(&given(&[placed(), confirmed(), fulfilment()]), &ship).unwrap();
    let mut all = vec![placed(), confirmed(), fulfilment()];
    all.extend(events);
    assert_eq!(given(&all).status(), OrderStatus::Shipped);
    assert!(matches!(
        decide(&given(&all), &Command::Cancel { reason: None }),
        Err(DomainError::NotCancellable(OrderStatus::Shipped))
    ));
    // The same shipment reported again appends nothing; another one is refused.
    assert_eq!(decide(&given(&all), &ship), Ok(vec![]));
    let other = Command::Ship {
        carrier: "UPS".into(),
        tracking_number: "1Z000".into(),
    };
    assert_eq!(
        decide(&given(&all), &other),
        Err(DomainError::NotShippable(OrderStatus::Shipped))
    );
    // A cancelled order never ships, and bad input is named whatever the state.
    let cancelled = [
        placed(),
        OrderEvent::Cancelled(OrderCancelled { reason: None }),
    ];
    assert_eq!(
        decide(&given(&cancelled), &ship),
        Err(DomainError::NotShippable(OrderStatus::Cancelled))
    );
    let blank = Command::Ship {
        carrier: " ".into(),
        tracking_number: String::new(),
    };
    let Err(DomainError::Invalid(errors)) = decide(&given(&cancelled), &blank) else {
        panic!("blank fields are invalid");
    };
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["carrier", "tracking_number"]);
}
