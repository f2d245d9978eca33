//! `orders replay --aws --stack NAME`, blue/green on DynamoDB Local and moto's
//! CloudFormation: the log is rebuilt into a fresh table, caught up, and readers are
//! switched to it through the stack's `ActiveReadModelsTable` parameter (its template and
//! other parameters kept); the next replay goes on from that table and `--drop-old` drops
//! the one a replay made, never the stack's own. Runs the real `orders` binary inside
//! `scripts/with-emulators`.

mod aws_support;

use aws_sdk_cloudformation::types::Parameter;
use aws_support::events::append;
use aws_support::unique;
use orders_aws::{DynamoEventStore, DynamoReadModels, schema};
use orders_domain::money::{Currency, Money};
use orders_domain::order::{OrderCancelled, OrderEvent, OrderStatus};
use orders_domain::ports::ReadModels;
use std::collections::HashMap;
use std::process::{Command, Output};

/// 2026-11-26T15:22:05.123Z
const T0: i64 = 1_795_706_525_123;

fn orders(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(args)
        .env_remove("ORDERS_STACK")
        .env_remove("EVENTS_TABLE")
        .env_remove("READ_MODELS_TABLE")
        .output()
        .expect("run orders")
}

fn ok(args: &[&str]) -> String {
    let out = orders(args);
    assert!(
        out.status.success(),
        "orders {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `replay --aws --stack STACK --projection all` with `more`.
fn replay_args<'a>(stack: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["replay", "--aws", "--stack", stack, "--projection", "all"];
    args.extend_from_slice(more);
    args
}

fn replay(stack: &str, more: &[&str]) -> Output {
    orders(&replay_args(stack, more))
}

fn replay_ok(stack: &str, more: &[&str]) -> String {
    ok(&replay_args(stack, more))
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").expect("EUR"))
}

/// A stack like the deployed one, as far as the replay sees it: its table outputs (the
/// read models' through `!If` on `ActiveReadModelsTable`) and another parameter that the
/// switch must keep.
fn template(events: &str, own_views: &str) -> String {
    serde_json::json!({
        "Parameters": {
            "ActiveReadModelsTable": {"Type": "String", "Default": ""},
            "LogLevel": {"Type": "String", "Default": "info"}
        },
        "Conditions": {
            "RebuiltReadModels": {"Fn::Not": [{"Fn::Equals": [{"Ref": "ActiveReadModelsTable"}, ""]}]}
        },
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic"},
            "ProjectorDeadLetterQueue": {"Type": "AWS::SQS::Queue"}
        },
        "Outputs": {
            "ProjectorDeadLetterQueueUrl": {"Value": {"Ref": "ProjectorDeadLetterQueue"}},
            "EventsTableName": {"Value": events},
            "ReadModelsTableName": {"Value": {"Fn::If": ["RebuiltReadModels", {"Ref": "ActiveReadModelsTable"}, own_views]}},
            "StackReadModelsTableName": {"Value": own_views}
        }
    })
    .to_string()
}

async fn stack_state(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> (HashMap<String, String>, HashMap<String, String>) {
    let out = cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .expect("DescribeStacks");
    let s = out.stacks().first().expect("the stack").clone();
    let params = s
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap_or_default().to_string(),
                p.parameter_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let outputs = s
        .outputs()
        .iter()
        .map(|o| {
            (
                o.output_key().unwrap_or_default().to_string(),
                o.output_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (params, outputs)
}

async fn table_exists(clients: &orders_aws::AwsClients, table: &str) -> bool {
    clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_on_a_stack_switches_its_readers_and_drops_only_what_it_made() {
    let clients = aws_support::clients().await;
    let db = clients.dynamodb.clone();
    let (events, idem, views) = (unique("events"), unique("idem"), unique("views"));
    schema::create_events_table(&db, &events)
        .await
        .expect("events table");
    schema::create_idempotency_table(&db, &idem)
        .await
        .expect("idempotency table");
    schema::create_read_models_table(&db, &views)
        .await
        .expect("read-model table");
    let store = DynamoEventStore::new(db.clone(), &events, &idem);
    let ids: Vec<String> = (0..5).map(|_| unique("order")).collect();
    for (i, id) in ids.iter().enumerate() {
        let event = orders_domain::sample::placed(id, "c-replay", eur(100 * (i as i64 + 1)));
        append(&store, id, 0, &[event], T0).await;
    }
    let cancel = async |id: &str| {
        let event = OrderEvent::Cancelled(OrderCancelled { reason: None });
        append(&store, id, 1, &[event], T0 + 1000).await
    };

    // The production configuration load (endpoints from AWS_ENDPOINT_URL_*).
    let sdk = orders_aws::clients::load_sdk_config(&orders_aws::TrustRoots::Platform).await;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let stack = unique("orders-stack");
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(template(&events, &views))
        .parameters(
            Parameter::builder()
                .parameter_key("LogLevel")
                .parameter_value("debug")
                .build(),
        )
        .send()
        .await
        .expect("CreateStack on moto");

    // What it would do.
    let plan = replay_ok(&stack, &["--dry-run"]);
    assert!(plan.contains("switch readers"), "{plan}");
    assert!(plan.contains("through the table's by_time index"), "{plan}");
    assert!(!table_exists(&clients, &format!("{views}-g1")).await);

    // The first replay: into <views>-g1, readers switched, the stack's own table kept.
    let first = format!("{views}-g1");
    let run = replay(&stack, &["--drop-old"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    // The wait for CloudFormation is said, with what it sets.
    assert!(
        err.contains(&format!(
            "switching readers: updating stack {stack} (ActiveReadModelsTable = {first})"
        )),
        "{err}"
    );
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        out.contains(&format!("switched readers from {views} to {first}")),
        "{out}"
    );
    assert!(out.contains("it is the stack's own table"), "{out}");
    assert!(
        out.contains(&format!(
            "to switch readers back to {views}: `orders replay --aws --stack {stack} --projection orders --projection daily_sales --switch-to {views} --since "
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("set it to {first}")),
        "says what samconfig.toml must say: {out}"
    );
    let (params, outputs) = stack_state(&cfn, &stack).await;
    assert_eq!(params["ActiveReadModelsTable"], first);
    assert_eq!(params["LogLevel"], "debug", "the other parameters are kept");
    assert_eq!(outputs["ReadModelsTableName"], first);
    assert!(table_exists(&clients, &views).await);
    let rebuilt = DynamoReadModels::new(db.clone(), &first);
    for id in &ids {
        let view = rebuilt.order(id).await.expect("read").expect("rebuilt");
        assert_eq!(view.status, OrderStatus::Placed);
    }

    // An event appended after it, then the next replay: from <views>-g1 into -g2, which
    // has the event; -g1, a replay's table that readers left, is dropped.
    cancel(&ids[0]).await;
    // The order's history, read from the stack's event table: its events, and its view
    // now and as it stood at version 1.
    let read = |more: &[&str]| {
        let mut args = vec![
            "events",
            ids[0].as_str(),
            "--aws",
            "--stack",
            stack.as_str(),
        ];
        args.extend_from_slice(more);
        ok(&args)
    };
    assert_eq!(read(&[]).lines().count(), 2);
    assert_eq!(read(&["--version", "1"]).lines().count(), 1);
    let view =
        |more: &[&str]| -> serde_json::Value { serde_json::from_str(&read(more)).expect("a view") };
    assert_eq!(view(&["--view"])["status"], "CANCELLED");
    let then = view(&["--view", "--version", "1"]);
    assert_eq!(
        (then["status"].clone(), then["version"].clone()),
        ("PLACED".into(), 1.into())
    );
    let past = orders(&[
        "events",
        &ids[0],
        "--aws",
        "--stack",
        &stack,
        "--version",
        "3",
    ]);
    let err = String::from_utf8_lossy(&past.stderr);
    assert!(!past.status.success() && past.stdout.is_empty(), "{err}");
    assert!(
        err.trim().lines().count() == 1 && err.contains("its latest is 2"),
        "{err}"
    );
    let unknown = orders(&["events", "no-such-order", "--aws", "--stack", &stack]);
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success(), "{err}");
    assert!(
        err.contains(&format!("order no-such-order not found in {events}")),
        "{err}"
    );
    // With no stack and no table variable, one line naming the variable.
    let nowhere = |args: &[&str], var: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_orders"))
            .args(args)
            .env_remove("ORDERS_STACK")
            .env_remove(var)
            .output()
            .expect("run orders");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.trim().lines().count() == 1,
            "{err}"
        );
        assert!(err.contains(var) && err.contains("--stack"), "{err}");
    };
    nowhere(&["events", &ids[0], "--aws"], "EVENTS_TABLE");
    // The cancellation is in the log, not in the table readers use (no live projector
    // here, and it is long past): verify names it and the replay that rebuilds it.
    let verify = |more: &[&str]| {
        let mut args = vec!["projections", "verify", "--aws", "--stack", stack.as_str()];
        args.extend_from_slice(more);
        orders(&args)
    };
    // A batch the projector Lambda gave up on, waiting in its dead-letter queue: named as
    // the likely cause.
    let (_, outputs) = stack_state(&cfn, &stack).await;
    let dlq = aws_sdk_sqs::Client::new(&sdk);
    dlq.send_message()
        .queue_url(&outputs["ProjectorDeadLetterQueueUrl"])
        .message_body("{}")
        .send()
        .await
        .expect("SendMessage on moto");
    let out = verify(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "the projector Lambda gave up on 1 batches, whose orders it could not bring up to date (`orders dead-letters list --aws --stack {stack}`)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("compared them with the 11 items of {first}")),
        "{text}"
    );
    assert!(
        text.contains("5 orders in the log: 4 the same, 1 differ, 0 missing"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: version 1 in the read model, 2 from the log;",
            ids[0]
        )),
        "{text}"
    );
    assert!(
        text.contains(r#"status "PLACED" (read model) / "CANCELLED" (log)"#),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "`orders replay --aws --stack {stack} --projection orders --projection daily_sales` rebuilds them"
        )),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&verify(&["--json", "--projection", "orders"]).stdout)
            .expect("the verdict as JSON");
    assert_eq!(json["compared"]["orders"][0]["order_id"], ids[0].as_str());
    assert_eq!(json["compared"]["trackers"], serde_json::json!([]));
    assert_eq!(json["read_models_table"], first.as_str());
    assert_eq!(json["projector_dead_letters"], 1);
    assert_eq!(json["pending_grace_seconds"], 60);
    let json: serde_json::Value =
        serde_json::from_slice(&verify(&["--json", "--pending-grace", "0"]).stdout)
            .expect("the verdict as JSON");
    assert_eq!(json["pending_grace_seconds"], 0);
    assert_eq!(json["compared"]["orders"][0]["order_id"], ids[0].as_str());
    // --repair: the missing event applied, then verified again.
    let out = verify(&["--repair"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("0 rows rewritten, 0 deleted, 1 events applied, 0 days corrected"),
        "{text}"
    );
    assert!(
        text.ends_with("verified again: the read models are what the log says\n"),
        "{text}"
    );
    let view = DynamoReadModels::new(db.clone(), &first)
        .order(&ids[0])
        .await
        .expect("read")
        .expect("view");
    assert_eq!(view.status, OrderStatus::Cancelled);
    nowhere(&["projections", "verify", "--aws"], "EVENTS_TABLE");
    let second = format!("{views}-g2");
    let out = replay_ok(&stack, &["--drop-old"]);
    assert!(
        out.contains(&format!("switched readers from {first} to {second}")),
        "{out}"
    );
    assert!(out.contains(&format!("dropped {first}")), "{out}");
    // Both catch-ups read only what was appended since the replay started, by the index.
    assert_eq!(
        out.matches("read through the by_time index from").count(),
        2,
        "{out}"
    );
    assert!(!table_exists(&clients, &first).await);
    let (params, _) = stack_state(&cfn, &stack).await;
    assert_eq!(params["ActiveReadModelsTable"], second);
    let rebuilt = DynamoReadModels::new(db.clone(), &second);
    let view = rebuilt.order(&ids[0]).await.expect("read").expect("view");
    assert_eq!(view.status, OrderStatus::Cancelled);
    let out = verify(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("items of {second}")), "{text}");
    assert!(
        text.ends_with("the read models are what the log says\n"),
        "{text}"
    );
    // The sales report, from the table the stack's readers use now.
    let report: serde_json::Value =
        serde_json::from_str(&ok(&["sales", "--aws", "--stack", &stack, "--json"]))
            .expect("a report");
    let rows = rebuilt.daily_sales().await.expect("daily sales");
    assert_eq!(report["days"], serde_json::to_value(&rows).expect("json"));
    assert_eq!(
        (
            report["totals"][0]["orders_placed"].as_i64(),
            report["totals"][0]["orders_cancelled"].as_i64(),
            report["totals"][0]["net_amount"].as_i64()
        ),
        (Some(5), Some(1), Some(1500 - 100)),
        "{report}"
    );
    // A range of days is read a Query per day, not a Scan: the same rows, or none.
    let day = orders_domain::Timestamp::from_millis(T0).date();
    let days = |from: &str, to: &str| -> serde_json::Value {
        let args = [
            "sales", "--aws", "--stack", &stack, "--json", "--from", from, "--to", to,
        ];
        serde_json::from_str(&ok(&args)).expect("a report")
    };
    assert_eq!(days(&day, &day)["days"], report["days"]);
    assert_eq!(
        days("2001-01-01", "2001-01-31")["days"],
        serde_json::json!([])
    );
    nowhere(&["sales", "--aws"], "READ_MODELS_TABLE");

    // After a switch by hand, --catch-up applies what the new table has not seen.
    cancel(&ids[1]).await;
    let out = replay_ok(&stack, &["--catch-up", &second]);
    assert!(out.contains("1 applied"), "{out}");
    assert!(out.contains("read by a scan of the events table"), "{out}");
    let view = rebuilt.order(&ids[1]).await.expect("read").expect("view");
    assert_eq!(view.status, OrderStatus::Cancelled);
    // With --since, only what occurred from then on, through the index.
    let now = orders_domain::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64,
    );
    let event = OrderEvent::Cancelled(OrderCancelled { reason: None });
    append(&store, &ids[2], 1, &[event], now.millis()).await;
    let since = now.to_string();
    let out = replay_ok(&stack, &["--catch-up", &second, "--since", &since]);
    assert!(out.contains("1 events read"), "{out}");
    assert!(out.contains("1 applied"), "{out}");
    assert!(out.contains("read through the by_time index"), "{out}");
    let view = rebuilt.order(&ids[2]).await.expect("read").expect("view");
    assert_eq!(view.status, OrderStatus::Cancelled);
    // --since is a time, and only for --catch-up: one line each.
    for (bad, names) in [
        (
            vec!["--catch-up", second.as_str(), "--since", "yesterday"],
            "--since",
        ),
        (vec!["--since", since.as_str()], "--catch-up"),
    ] {
        let out = replay(&stack, &bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.trim().lines().count() == 1 && err.contains(names),
            "{err}"
        );
    }

    // The log of every order, from the stack's event table through its by_time index: the
    // last hour by default (only the cancellation just appended), or a range.
    let log = |more: &[&str]| {
        let mut args = vec!["log", "--aws", "--stack", stack.as_str()];
        args.extend_from_slice(more);
        ok(&args)
    };
    let tail = log(&[]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(
        tail.contains(&ids[2]) && tail.contains("v2") && tail.contains("OrderCancelled"),
        "{tail}"
    );
    let day = |ms: i64| orders_domain::Timestamp::from_millis(ms).to_string();
    let (from, to) = (day(T0 - 3_600_000), day(T0 + 3_600_000));
    let placed = log(&[
        "--since",
        &from,
        "--until",
        &to,
        "--type",
        "OrderPlaced",
        "--json",
    ]);
    let mut got: Vec<String> = placed
        .lines()
        .map(|l| {
            let e: orders_domain::EventEnvelope = serde_json::from_str(l).expect("an envelope");
            assert_eq!((e.event_type.as_str(), e.version), ("OrderPlaced", 1));
            e.aggregate_id
        })
        .collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
    let two = log(&["--since", &from, "--until", &to, "--limit", "2"]);
    assert_eq!(two.lines().count(), 2, "{two}");
    // A range of more than a month is refused before a Query is sent (counted, not listed).
    let out = orders(&[
        "log",
        "--aws",
        "--stack",
        &stack,
        "--since",
        "0001-01-01T00:00:00Z",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.trim().lines().count() == 1 && err.contains("a month at most"),
        "{err}"
    );
    // An event table without the index (a stack deployed before it): one line saying so.
    let plain = unique("events-plain");
    schema::create_events_table_without_index(&db, &plain)
        .await
        .expect("plain events table");
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["log", "--aws"])
        .env_remove("ORDERS_STACK")
        .env("EVENTS_TABLE", &plain)
        .output()
        .expect("run orders");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.trim().lines().count() == 1 && err.contains("has no by_time index"),
        "{err}"
    );

    // The way back: readers return to the stack's own table, which they left at the first
    // replay (here it never had a projector: empty). Planned, then done (by a scan: the
    // test's events carry times from days ago, before any --since a replay prints).
    let own = DynamoReadModels::new(db.clone(), &views);
    assert!(own.order(&ids[0]).await.expect("read").is_none(), "stale");
    let plan = replay_ok(&stack, &["--switch-to", &views, "--dry-run"]);
    assert!(
        plan.contains(&format!(
            "then switch stack {stack}'s readers from {second} to it (ActiveReadModelsTable=\"\")"
        )),
        "{plan}"
    );
    assert!(plan.contains("a scan"), "{plan}");
    let out = replay_ok(&stack, &["--switch-to", &views]);
    assert!(
        out.contains(&format!("caught up {views}: 8 events applied")),
        "{out}"
    );
    assert!(
        out.contains(&format!("switched readers from {second} to {views}")),
        "{out}"
    );
    let (params, outputs) = stack_state(&cfn, &stack).await;
    assert_eq!(
        params["ActiveReadModelsTable"], "",
        "the stack's own table is the parameter's default, not its name"
    );
    assert_eq!(params["LogLevel"], "debug");
    assert_eq!(outputs["ReadModelsTableName"], views);
    for (i, id) in ids.iter().enumerate() {
        let view = own.order(id).await.expect("read").expect("view");
        let want = if i < 3 {
            OrderStatus::Cancelled
        } else {
            OrderStatus::Placed
        };
        assert_eq!(view.status, want, "{id}");
    }
    // It prints the way forth again, from when readers left -g2: through the index.
    let back = out
        .lines()
        .find_map(|l| l.split('`').nth(1).filter(|c| c.contains("--switch-to")))
        .expect("the command back")
        .to_string();
    assert!(
        back.starts_with(&format!(
            "orders replay --aws --stack {stack} --projection orders --projection daily_sales --switch-to {second} --since "
        )),
        "{back}"
    );
    let args: Vec<&str> = back.split_whitespace().skip(1).collect();
    let out = ok(&args);
    assert!(
        out.contains(&format!("switched readers from {views} to {second}")),
        "{out}"
    );
    assert!(out.contains("read through the by_time index"), "{out}");
    let (params, _) = stack_state(&cfn, &stack).await;
    assert_eq!(params["ActiveReadModelsTable"], second);
    for (more, says) in [
        (vec!["--switch-to", second.as_str()], "already use"),
        (
            vec!["--switch-to", "no-such-table"],
            "cannot switch to no-such-table",
        ),
    ] {
        let out = replay(&stack, &more);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.trim().lines().count() == 1 && err.contains(says),
            "{err}"
        );
    }
    // The stack's tables as an operator looks for the way back: the own one and the
    // replay's readers use (the first replay's table was dropped by --drop-old).
    let tables: serde_json::Value = serde_json::from_str(&ok(&[
        "projections",
        "status",
        "--aws",
        "--stack",
        &stack,
        "--json",
    ]))
    .expect("JSON");
    assert_eq!(tables["events"]["name"], events.as_str(), "{tables}");
    assert_eq!(tables["by_time_index"], "ACTIVE", "{tables}");
    let listed: Vec<(String, bool, bool)> = tables["read_models"]
        .as_array()
        .expect("read-model tables")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                t["own"] == true,
                t["active"] == true,
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![(views.clone(), true, false), (second.clone(), false, true)]
    );
    assert!(
        tables["read_models"][1]["items"].as_i64().expect("items") > 0,
        "{tables}"
    );
    let text = ok(&["projections", "status", "--aws", "--stack", &stack]);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line(&views).ends_with("the stack's own"), "{text}");
    assert!(
        line(&second).ends_with("a replay's; readers use it"),
        "{text}"
    );
    assert!(text.contains("--switch-to TABLE"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["projections", "status", "--aws"])
        .env_remove("ORDERS_STACK")
        .output()
        .expect("run orders");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--aws needs --stack"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args([
            "replay",
            "--aws",
            "--projection",
            "all",
            "--switch-to",
            &views,
        ])
        .env_remove("ORDERS_STACK")
        .env("EVENTS_TABLE", &events)
        .env("READ_MODELS_TABLE", &second)
        .output()
        .expect("run orders");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--switch-to needs --stack"),
        "{err}"
    );

    // A stack deployed from a template without the parameter: refused in one line before
    // anything is built.
    let old = unique("orders-stack");
    let bare = serde_json::json!({
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic"},
            "ProjectorDeadLetterQueue": {"Type": "AWS::SQS::Queue"}
        },
        "Outputs": {
            "ProjectorDeadLetterQueueUrl": {"Value": {"Ref": "ProjectorDeadLetterQueue"}},"EventsTableName": {"Value": events}, "ReadModelsTableName": {"Value": second}}
    });
    cfn.create_stack()
        .stack_name(&old)
        .template_body(bare.to_string())
        .send()
        .await
        .expect("CreateStack on moto");
    let out = replay(&old, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("has no ActiveReadModelsTable parameter"),
        "{err}"
    );
    for out in [
        replay(&old, &["--switch-to", &views]),
        orders(&["projections", "status", "--aws", "--stack", &old]),
    ] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.trim().lines().count() == 1
                && err.contains("has no StackReadModelsTableName output"),
            "{err}"
        );
    }
    assert!(!table_exists(&clients, &format!("{views}-g3")).await);
}
