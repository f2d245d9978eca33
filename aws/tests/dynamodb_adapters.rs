//! DynamoDB-specific behaviour on DynamoDB Local, beyond the shared port contract: the
//! stored item format, AWS's own stream format through the Lambda event type, the
//! idempotency TTL, a blue/green rebuild into a fresh table, and errors.

mod support;

use aws_sdk_dynamodb::config::ProvideCredentials;
use aws_sdk_dynamodb::types::AttributeValue;
use orders_aws::codec;
use orders_aws::event_store::{IDEMPOTENCY_TTL_SECS, KEY_IDEMPOTENCY, TTL_ATTRIBUTE};
use orders_aws::{AwsClients, DynamoEventStore, DynamoReadModels, TrustRoots, schema};
use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::money::{Currency, Money};
use orders_domain::order::{OrderCancelled, OrderEvent, OrderStatus};
use orders_domain::ports::{
    AppendRequest, ApplyOutcome, EventStore, IdempotencyRecord, ReadModelError, ReadModels,
    StoreError,
};
use orders_domain::projection::ProjectionName;
use orders_domain::sample;
use orders_domain::time::Timestamp;
use std::time::Duration;

/// 2026-11-26T15:22:05.123Z
const T0: i64 = 1_795_706_525_123;

struct Tables {
    clients: AwsClients,
    events: String,
    store: DynamoEventStore,
}

async fn tables() -> Tables {
    let clients = support::dynamodb_clients().await;
    let (events, idem) = (support::unique("events"), support::unique("idem"));
    schema::create_events_table(&clients.dynamodb, &events)
        .await
        .unwrap();
    schema::create_idempotency_table(&clients.dynamodb, &idem)
        .await
        .unwrap();
    let store = DynamoEventStore::new(clients.dynamodb.clone(), &events, &idem);
    Tables {
        clients,
        events,
        store,
    }
}

async fn read_models(clients: &AwsClients) -> DynamoReadModels {
    let table = support::unique("views");
    schema::create_read_models_table(&clients.dynamodb, &table)
        .await
        .unwrap();
    DynamoReadModels::new(clients.dynamodb.clone(), &table)
}

fn placed(order_id: &str, customer: &str, amount: i64) -> OrderEvent {
    sample::placed(
        order_id,
        customer,
        Money::new(amount, Currency::parse("EUR").expect("EUR")),
    )
}

fn cancelled() -> OrderEvent {
    OrderEvent::Cancelled(OrderCancelled {
        reason: Some("changed my mind".into()),
    })
}

fn wrap(order_id: &str, current: u64, events: &[OrderEvent], at: i64) -> Vec<EventEnvelope> {
    let meta = EventMeta {
        occurred_at: Timestamp(at),
        correlation_id: support::unique("corr"),
        causation_id: support::unique("cause"),
    };
    EventEnvelope::wrap(order_id, current, events, &meta, || support::unique("evt"))
}

fn append(order_id: &str, expected: u64, events: Vec<EventEnvelope>) -> AppendRequest {
    AppendRequest {
        aggregate_id: order_id.into(),
        expected_version: expected,
        events,
        idempotency: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_in_the_codec_format_and_keys_expire_after_a_day() {
    let t = tables().await;
    let id = support::unique("order");
    let events = wrap(&id, 0, &[placed(&id, "c-1", 2500)], T0);
    let mut req = append(&id, 0, events.clone());
    // Created now: DynamoDB Local's TTL sweep deletes an item whose expiry has passed (with
    // a fixed past time this read raced the sweep once that time was a day old).
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(T0))
        .unwrap_or(T0);
    req.idempotency = Some(IdempotencyRecord {
        key: support::unique("key"),
        request_hash: "sha256:abc".into(),
        aggregate_id: id.clone(),
        status: 201,
        response: "{}".into(),
        created_at: Timestamp(created),
    });
    let key = req.idempotency.as_ref().unwrap().key.clone();
    t.store.append(req).await.unwrap();

    let raw = t
        .clients
        .dynamodb
        .get_item()
        .table_name(&t.events)
        .key(codec::KEY_AGGREGATE, AttributeValue::S(id.clone()))
        .key(codec::KEY_VERSION, AttributeValue::N("1".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the event item");
    assert_eq!(raw, codec::envelope_to_item(&events[0]).unwrap());

    let idem = t
        .clients
        .dynamodb
        .get_item()
        .table_name(t.store.idempotency_table())
        .key(KEY_IDEMPOTENCY, AttributeValue::S(key))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the idempotency item");
    assert_eq!(
        idem[TTL_ATTRIBUTE],
        AttributeValue::N((created / 1000 + IDEMPOTENCY_TTL_SECS).to_string())
    );
    let ttl = t
        .clients
        .dynamodb
        .describe_time_to_live()
        .table_name(t.store.idempotency_table())
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        Some(TTL_ATTRIBUTE)
    );
}

/// The events table's real stream, read with AWS's own DynamoDB Streams client, becomes
/// the Lambda event; its NewImages decode with the codec and fold into the views.
/// Delivering the whole batch again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_stream_feeds_the_read_models() {
    let t = tables().await;
    let rm = read_models(&t.clients).await;
    let (a, b) = (support::unique("order"), support::unique("order"));
    let customer = support::unique("cust");
    t.store
        .append(append(
            &a,
            0,
            wrap(&a, 0, &[placed(&a, &customer, 1000)], T0),
        ))
        .await
        .unwrap();
    t.store
        .append(append(
            &b,
            0,
            wrap(&b, 0, &[placed(&b, &customer, 250)], T0 + 60_000),
        ))
        .await
        .unwrap();
    t.store
        .append(append(&b, 1, wrap(&b, 1, &[cancelled()], T0 + 120_000)))
        .await
        .unwrap();

    let stream_arn = t
        .clients
        .dynamodb
        .describe_table()
        .table_name(&t.events)
        .send()
        .await
        .unwrap()
        .table
        .and_then(|d| d.latest_stream_arn)
        .expect("the events table has a stream");
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(
        aws_sdk_dynamodbstreams::config::Builder::from(&t.clients.sdk)
            .endpoint_url(support::dynamodb_endpoint())
            .build(),
    );
    let records = support::streams::read_all(&streams, &stream_arn, 3, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(records.len(), 3, "one record per event");
    let event = support::streams::lambda_event(&records, &stream_arn, &support::region()).unwrap();

    for round in 0..2 {
        for record in &event.records {
            assert_eq!(record.event_name, "INSERT");
            assert_eq!(record.event_source.as_deref(), Some("aws:dynamodb"));
            assert!(record.change.sequence_number.is_some());
            let envelope = codec::envelope_from_image(record.change.new_image.clone())
                .expect("a NewImage from AWS's stream decodes with the codec");
            let decoded = envelope.decode().unwrap();
            let outcome = rm.apply(&envelope, &decoded).await.unwrap();
            let want = if round == 0 {
                ApplyOutcome::Applied
            } else {
                ApplyOutcome::Duplicate
            };
            assert_eq!(outcome, want, "round {round}");
        }
    }
    assert_eq!(
        t.store.load(&b).await.unwrap(),
        event.records[1..]
            .iter()
            .map(|r| codec::envelope_from_image(r.change.new_image.clone()).unwrap())
            .collect::<Vec<_>>()
    );
    let view_b = rm.order(&b).await.unwrap().unwrap();
    assert_eq!((view_b.version, view_b.status), (2, OrderStatus::Cancelled));
    let page = rm.customer_orders(&customer, 10, None).await.unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|s| s.order_id.as_str())
            .collect::<Vec<_>>(),
        vec![b.as_str(), a.as_str()]
    );
    let sales = rm.daily_sales().await.unwrap();
    let day = sales
        .iter()
        .find(|d| d.date == "2026-11-26" && d.currency == "EUR")
        .unwrap();
    assert_eq!(
        (
            day.orders_placed,
            day.amount_placed,
            day.orders_cancelled,
            day.amount_cancelled
        ),
        (2, 1250, 1, 250)
    );
    assert_eq!(day.net_amount, 1000);
    // Read by day (a Query of each day's partition): that day's rows, and none for a day
    // without sales.
    let days = ["2026-11-25".to_string(), "2026-11-26".to_string()];
    let by_day = rm.daily_sales_of(&days).await.unwrap();
    let want: Vec<_> = sales
        .iter()
        .filter(|d| d.date == "2026-11-26")
        .cloned()
        .collect();
    assert_eq!(by_day, want);
}

/// A rebuild replays the log into a fresh table, optionally one projection only; the
/// live table is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_writes_a_fresh_table() {
    let t = tables().await;
    let live = read_models(&t.clients).await;
    let id = support::unique("order");
    let events = wrap(&id, 0, &[placed(&id, "c-9", 4200), cancelled()], T0);
    t.store.append(append(&id, 0, events)).await.unwrap();

    let green_table = support::unique("views-green");
    schema::create_read_models_table(&t.clients.dynamodb, &green_table)
        .await
        .unwrap();
    let green = live
        .with_table(&green_table)
        .with_projections(&[ProjectionName::DailySales]);
    for e in t.store.load(&id).await.unwrap() {
        assert_eq!(
            green.apply(&e, &e.decode().unwrap()).await.unwrap(),
            ApplyOutcome::Applied
        );
    }
    assert_eq!(green.order(&id).await.unwrap(), None, "views not selected");
    let sales = green.daily_sales().await.unwrap();
    assert_eq!(sales.len(), 1);
    assert_eq!((sales[0].amount_placed, sales[0].net_amount), (4200, 0));
    assert_eq!(live.order(&id).await.unwrap(), None, "live table untouched");
    assert!(live.daily_sales().await.unwrap().is_empty());
}

/// A missing table is "unavailable" with the table's name in the message, not a panic or
/// a conflict; a stale cursor for another customer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_mapped_and_named() {
    let clients = support::dynamodb_clients().await;
    let store = DynamoEventStore::new(clients.dynamodb.clone(), "no-such-events", "no-such-idem");
    let id = support::unique("order");
    let err = store
        .append(append(&id, 0, wrap(&id, 0, &[placed(&id, "c", 1)], T0)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store.load(&id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("ResourceNotFound")),
        "{err:?}"
    );
    let rm = DynamoReadModels::new(clients.dynamodb.clone(), "no-such-views");
    assert!(matches!(
        rm.order(&id).await.unwrap_err(),
        ReadModelError::Unavailable(_)
    ));

    // Events of a request must continue the log: refused before any write.
    let t = tables().await;
    let bad = wrap(&id, 3, &[cancelled()], T0);
    let err = t.store.append(append(&id, 0, bad)).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(t.store.load(&id).await.unwrap().is_empty());
}

/// The SDK's default chain finds the emulator through `AWS_ENDPOINT_URL_DYNAMODB`, as
/// the Lambda binaries' `AwsClients::load()` would find AWS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_honours_the_endpoint_environment() {
    let ddb = support::dynamodb_endpoint();
    let from_env = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| {
            panic!("AWS_ENDPOINT_URL_DYNAMODB is not set: run inside scripts/with-emulators")
        });
    assert_eq!(from_env, ddb);
    let clients = AwsClients::load(TrustRoots::Platform)
        .await
        .expect("no AWS_CA_BUNDLE in the tests");
    let table = support::unique("env");
    schema::create_read_models_table(&clients.dynamodb, &table)
        .await
        .expect("the env-configured client reaches DynamoDB Local");
    assert_eq!(
        clients.region().as_deref(),
        Some(support::region().as_str())
    );
    // The environment's credentials, as the default chain's first link would find them.
    let credentials = clients
        .sdk
        .credentials_provider()
        .expect("a credentials provider")
        .provide_credentials()
        .await
        .expect("credentials from the environment");
    assert_eq!(
        Some(credentials.access_key_id()),
        std::env::var("AWS_ACCESS_KEY_ID").ok().as_deref()
    );
}

/// The `ClientRequestToken` makes a retried identical append (its answer was lost) a
/// success that writes nothing twice; a different append at the same version conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_retry_is_idempotent() {
    let t = tables().await;
    let id = support::unique("order");
    let events = wrap(&id, 0, &[placed(&id, "c-1", 100)], T0);
    t.store
        .append(append(&id, 0, events.clone()))
        .await
        .unwrap();
    let retry = t.store.append(append(&id, 0, events.clone())).await;
    assert_eq!(retry, Ok(()));
    assert_eq!(t.store.load(&id).await.unwrap(), events);
    let other = wrap(&id, 0, &[placed(&id, "c-1", 100)], T0);
    assert!(matches!(
        t.store.append(append(&id, 0, other)).await,
        Err(StoreError::Conflict { .. })
    ));
}
