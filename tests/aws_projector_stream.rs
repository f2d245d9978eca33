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
    let Appended {
        clients,
        reads,
        machine,
        a,
        b,
        customer,
        stream_arn,
        records,
        ..
    } = three_events_in_the_stream().await;
    let projector = Projector::live(
        reads.clone(),
        SfnWorkflowStarter::new(clients.sfn(), &machine),
    );
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
    assert_eq!(execution_names(&clients, &machine).await, sorted(&[&a, &b]));
}

/// The names of the machine's executions on moto, sorted.
async fn execution_names(clients: &orders_aws::AwsClients, machine: &str) -> Vec<String> {
    let listed = SfnInspector::new(clients.sfn(), machine)
        .list_executions(None, 50)
        .await
        .expect("list executions");
    sorted(&listed.iter().map(|e| e.name.as_str()).collect::<Vec<_>>())
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

/// Lambda's on-failure record for a batch of the stream (what the projector's stream
/// mapping sends its `ProjectorDeadLetterQueue` when it gives up).
fn batch_failure(shard: &str, stream_arn: &str, first: &str, last: &str, size: usize) -> String {
    serde_json::json!({
        "requestContext": {
            "requestId": unique("req"),
            "functionArn": format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders-projector"),
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-26T15:22:09.021Z",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": first,
            "endSequenceNumber": last,
            "approximateArrivalOfFirstRecord": "2026-11-26T15:22:05Z",
            "approximateArrivalOfLastRecord": "2026-11-26T15:22:06Z",
            "batchSize": size,
            "streamArn": stream_arn
        }
    })
    .to_string()
}

fn orders_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_orders"));
    c.args(args)
        .env_remove("ORDERS_STACK")
        .env_remove("PROJECTOR_DLQ_URL")
        .env_remove("READ_MODELS_TABLE")
        .env_remove("STATE_MACHINE_ARN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run orders")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Tables on DynamoDB Local, a state machine on moto (one Pass state is enough to count
/// executions), and three events appended (order
/// `a` placed, order `b` placed and cancelled), read back from the table's stream.
struct Appended {
    clients: orders_aws::AwsClients,
    reads: DynamoReadModels,
    views: String,
    machine: String,
    a: String,
    b: String,
    customer: String,
    stream_arn: String,
    stream_client: aws_sdk_dynamodbstreams::Client,
    records: Vec<aws_sdk_dynamodbstreams::types::Record>,
}

async fn three_events_in_the_stream() -> Appended {
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
    // With a reason: DynamoDB Local's stream writes an empty map as `{}`, which no SDK reads.
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
    Appended {
        clients,
        reads,
        views,
        machine,
        a,
        b,
        customer,
        stream_arn,
        stream_client,
        records,
    }
}

/// `orders dead-letters list|redrive --aws`: the on-failure queue on moto holds Lambda's
/// records of a batch of the real stream (DynamoDB Local) and of two it cannot redrive (a
/// range the shard does not have, a body that is no such record). The list shows the
/// batch's events; redriving it projects them with the projector's own code and starts
/// the workflows, then deletes the message; the others are kept with their reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_and_redrives_the_batches_the_projector_gave_up_on() {
    let Appended {
        clients,
        reads,
        views,
        machine,
        a,
        b,
        stream_arn,
        stream_client,
        records,
        ..
    } = three_events_in_the_stream().await;
    let seq = |i: usize| {
        records[i]
            .dynamodb()
            .and_then(|d| d.sequence_number())
            .expect("sequence number")
            .to_string()
    };
    let shard = stream_client
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .expect("describe the stream")
        .stream_description()
        .and_then(|d| {
            d.shards()
                .first()
                .and_then(|s| s.shard_id())
                .map(str::to_string)
        })
        .expect("a shard");

    let queue_name = unique("projector-dlq");
    let queue = aws_support::moto::create_queue(&queue_name);
    let sqs = aws_sdk_sqs::Client::new(&clients.sdk);
    let send = async |body: String| {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .expect("send to the on-failure queue")
            .message_id()
            .expect("message id")
            .to_string()
    };
    let good = send(batch_failure(&shard, &stream_arn, &seq(0), &seq(2), 3)).await;
    let gone = send(batch_failure(
        "shardId-00000000000000000000-00000000",
        &stream_arn,
        "100",
        "200",
        2,
    ))
    .await;
    let junk = send("this is not an on-failure record".to_string()).await;

    let list = |more: &[&str]| {
        let args = [
            &["dead-letters", "list", "--aws", "--queue-url", &queue],
            more,
        ]
        .concat();
        orders_cli(&args, &[])
    };
    // The list: every message, the batch shown as its events.
    let out = list(&["--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let by_id = |id: &str| {
        listed
            .iter()
            .find(|v| v["message_id"] == id)
            .unwrap_or_else(|| panic!("{id} is not listed: {listed:?}"))
            .clone()
    };
    let g = by_id(&good);
    assert_eq!(
        g["reason"],
        "RetryAttemptsExhausted after 3 invocation(s) (function error: Unhandled)"
    );
    let shown: Vec<(String, u64, String)> = g["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["order_id"].as_str().unwrap_or("").to_string(),
                r["version"].as_u64().unwrap_or(0),
                r["event_type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (a.clone(), 1, "OrderPlaced".to_string()),
            (b.clone(), 1, "OrderPlaced".to_string()),
            (b.clone(), 2, "OrderCancelled".to_string())
        ]
    );
    assert!(by_id(&gone)["records_error"].is_string(), "{listed:?}");
    assert!(
        by_id(&junk)["error"]
            .as_str()
            .unwrap_or("")
            .contains("not an on-failure record")
    );
    // The same for a person: the batch, then one line per event.
    let out = list(&[]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(said.contains(&format!("message {good}")), "{said}");
    assert!(said.contains(&format!("{b}  v2  OrderCancelled")), "{said}");
    assert!(
        said.contains("records: "),
        "the range it cannot read says why: {said}"
    );
    // Listing changed nothing: nothing projected yet.
    assert!(reads.order(&a).await.expect("read").is_none());
    // A list that fills its hold says the queue may hold more, on stderr (stdout stays JSON).
    let out = list(&["--json", "--hold", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("the first 2 shown; the queue may hold more"),
        "{}",
        text(&out.stderr)
    );

    // Redrive the one batch: projected with the projector's code, message deleted. In
    // rounds of one message, so it may take more than one round to find it.
    let env = [
        ("READ_MODELS_TABLE", views.as_str()),
        ("STATE_MACHINE_ARN", machine.as_str()),
    ];
    let out = orders_cli(
        &[
            "dead-letters",
            "redrive",
            "--aws",
            "--queue-url",
            &queue,
            "--message-id",
            &good,
            "--hold",
            "1",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("redriven {good}: 3 record(s) projected")));
    let view_b = reads.order(&b).await.expect("read b").expect("b projected");
    assert_eq!((view_b.version, view_b.status), (2, OrderStatus::Cancelled));
    assert!(reads.order(&a).await.expect("read a").is_some());
    assert_eq!(
        execution_names(&clients, &machine).await,
        sorted(&[&a, &b]),
        "one execution per OrderPlaced"
    );

    // The rest cannot be redriven: kept, with why, and a failing exit; through --stack. In
    // rounds of one: a kept message stays held, so no round takes it again.
    let stack = unique("orders-stack");
    aws_support::moto::create_stack_with_outputs(
        &stack,
        &[
            ("ProjectorDeadLetterQueueUrl", queue.as_str()),
            ("ReadModelsTableName", views.as_str()),
            ("StateMachineArn", machine.as_str()),
        ],
    );
    let out = orders_cli(
        &[
            "dead-letters",
            "redrive",
            "--aws",
            "--stack",
            &stack,
            "--all",
            "--hold",
            "1",
        ],
        &[],
    );
    assert!(!out.status.success());
    let said = text(&out.stdout);
    assert!(said.contains(&format!("kept {gone}: ")), "{said}");
    assert!(
        said.contains(&format!("kept {junk}: not an on-failure record")),
        "{said}"
    );
    assert!(said.contains("0 redriven, 2 kept"), "{said}");
    // Received without hiding them, so the commands below see them too.
    let waiting = async || {
        let page = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .expect("receive");
        let mut ids: Vec<String> = page
            .messages()
            .iter()
            .filter_map(|m| m.message_id().map(str::to_string))
            .collect();
        ids.sort();
        ids
    };
    let kept = sorted(&[&gone, &junk]);
    assert_eq!(
        waiting().await,
        kept,
        "the kept messages are back in the queue"
    );

    // Bad input: one line, non-zero exit.
    let redrive = [
        "dead-letters",
        "redrive",
        "--aws",
        "--queue-url",
        queue.as_str(),
    ];
    for (args, with, says) in [
        (
            vec!["dead-letters", "list", "--aws"],
            &env[..],
            "--queue-url",
        ),
        (
            [&redrive[..], &["--message-id", "no-such-message"]].concat(),
            &env[..],
            "no message no-such-message",
        ),
        (
            [&redrive[..], &["--all"]].concat(),
            &[][..],
            "READ_MODELS_TABLE",
        ),
        ([&redrive[..], &["7"]].concat(), &env[..], "--message-id"),
        (
            [&redrive[..], &["--all", "--hold", "0"]].concat(),
            &env[..],
            "--hold",
        ),
        (
            [
                &redrive[..],
                &["--message-id", "no-such-message", "--hold", "1"],
            ]
            .concat(),
            &env[..],
            "no message no-such-message",
        ),
    ] {
        let out = orders_cli(&args, with);
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(waiting().await, kept, "bad input changed the queue");
}
