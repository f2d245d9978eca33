//! The projector Lambda's code path on real AWS-shaped input: events appended to a table on
//! DynamoDB Local, its stream read with AWS's own DynamoDB Streams client and turned into the
//! Lambda `Event`, handled by `Projector::handle` with the DynamoDB read models and the Step
//! Functions starter on moto. Checks the views, one execution per OrderPlaced, and that a
//! redelivered batch changes nothing and starts nothing new.

mod aws_support;

use aws_support::moto::ACCOUNT;
use aws_support::{streams, unique};
use orders_aws::{DynamoEventStore, DynamoReadModels, SfnInspector, SfnWorkflowStarter, schema};
use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::money::{Currency, Money};
use orders_domain::order::{OrderCancelled, OrderEvent, OrderStatus};
use orders_domain::ports::{AppendRequest, EventStore, ReadModels};
use orders_domain::sample;
use orders_domain::time::Timestamp;
use orders_handlers::projector::Projector;
use std::time::Duration;

/// 2026-11-26T15:22:05.123Z
const T0: i64 = 1_795_706_525_123;

fn placed(order_id: &str, customer: &str, amount: i64) -> OrderEvent {
    sample::placed(
        order_id,
        customer,
        Money::new(amount, Currency::parse("EUR").expect("EUR")),
    )
}

fn append(order_id: &str, current: u64, event: OrderEvent, at: i64) -> AppendRequest {
    let meta = EventMeta {
        occurred_at: Timestamp(at),
        correlation_id: unique("corr"),
        causation_id: unique("cause"),
    };
    AppendRequest {
        aggregate_id: order_id.into(),
        expected_version: current,
        events: EventEnvelope::wrap(order_id, current, &[event], &meta, || unique("evt")),
        idempotency: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_stream_through_the_projector_handler() {
    let clients = aws_support::clients().await;
    let (events, idem, views) = (unique("events"), unique("idem"), unique("views"));
    schema::create_events_table(&clients.dynamodb, &events)
        .await
        .expect("events table");
    schema::create_idempotency_table(&clients.dynamodb, &idem)
        .await
        .expect("idempotency table");
    schema::create_read_models_table(&clients.dynamodb, &views)
        .await
        .expect("read models table");
    let store = DynamoEventStore::new(clients.dynamodb.clone(), &events, &idem);
    let reads = DynamoReadModels::new(clients.dynamodb.clone(), &views);

    // A state machine on moto to start: one Pass state is enough to count executions.
    let machine = clients
        .sfn()
        .create_state_machine()
        .name(unique("orders"))
        .definition(r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#)
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/orders-workflow"))
        .send()
        .await
        .expect("create the state machine on moto")
        .state_machine_arn()
        .to_string();
    let projector = Projector::live(
        reads.clone(),
        SfnWorkflowStarter::new(clients.sfn(), &machine),
    );

    let (a, b) = (unique("order"), unique("order"));
    let customer = unique("cust");
    store
        .append(append(&a, 0, placed(&a, &customer, 1000), T0))
        .await
        .expect("append a");
    store
        .append(append(&b, 0, placed(&b, &customer, 250), T0 + 60_000))
        .await
        .expect("append b");
    let cancelled = OrderEvent::Cancelled(OrderCancelled {
        reason: Some("changed my mind".into()),
    });
    store
        .append(append(&b, 1, cancelled, T0 + 120_000))
        .await
        .expect("cancel b");

    let stream_arn = clients
        .dynamodb
        .describe_table()
        .table_name(&events)
        .send()
        .await
        .expect("describe the events table")
        .table
        .and_then(|d| d.latest_stream_arn)
        .expect("the events table has a stream");
    let stream_client = aws_sdk_dynamodbstreams::Client::from_conf(
        aws_sdk_dynamodbstreams::config::Builder::from(&clients.sdk)
            .endpoint_url(aws_support::dynamodb_endpoint())
            .build(),
    );
    let records = streams::read_all(&stream_client, &stream_arn, 3, Duration::from_secs(20))
        .await
        .expect("read the stream");
    assert_eq!(records.len(), 3, "one record per event");
    let event = streams::lambda_event(&records, &stream_arn, &aws_support::region())
        .expect("the Lambda event");

    // Delivered twice, as Lambda does after a timeout: the same views, no second execution.
    for round in 0..2 {
        let response = projector.handle(event.clone()).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "round {round}: {:?}",
            response.batch_item_failures
        );
    }

    let view_a = reads.order(&a).await.expect("view a").expect("a projected");
    assert_eq!((view_a.version, view_a.status), (1, OrderStatus::Placed));
    let view_b = reads.order(&b).await.expect("view b").expect("b projected");
    assert_eq!((view_b.version, view_b.status), (2, OrderStatus::Cancelled));
    let page = reads
        .customer_orders(&customer, 10, None)
        .await
        .expect("customer orders");
    assert_eq!(
        page.items
            .iter()
            .map(|s| s.order_id.as_str())
            .collect::<Vec<_>>(),
        vec![b.as_str(), a.as_str()],
        "newest first"
    );
    let sales = reads.daily_sales().await.expect("daily sales");
    let day = sales
        .iter()
        .find(|d| d.date == "2026-11-26" && d.currency == "EUR")
        .expect("the day's sales");
    assert_eq!(
        (day.orders_placed, day.orders_cancelled, day.net_amount),
        (2, 1, 1000)
    );

    // One execution per OrderPlaced, named after its order.
    let inspector = SfnInspector::new(clients.sfn(), &machine);
    let mut names: Vec<String> = inspector
        .list_executions(None, 50)
        .await
        .expect("list executions")
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(names, want);
}
