//! `orders executions list|show|history` against Step Functions (`--aws`, here moto) and
//! against the local data dir, for an execution of the same definition with the same
//! input: the same output both ways, and one-line errors. Runs the real `orders` binary
//! inside `scripts/with-emulators` (it finds moto through `AWS_ENDPOINT_URL_SFN`, like any
//! endpoint override of the standard configuration chain).

mod aws_support;

use aws_support::order_workflow::{self, MotoResources};
use aws_support::workflow;
use aws_support::{moto, unique};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

/// The two ways to point the CLI at executions.
enum Where<'a> {
    Local(&'a Path),
    Aws(&'a str),
}

fn orders(args: &[&str], at: &Where) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orders"));
    c.arg("executions")
        .args(args)
        .env_remove("STATE_MACHINE_ARN")
        .env_remove("ORDERS_STACK");
    match at {
        Where::Local(dir) => c.arg("--data-dir").arg(dir),
        Where::Aws(arn) => c.args(["--aws", "--state-machine-arn", arn]),
    };
    c.output().expect("run orders")
}

fn ok(args: &[&str], at: &Where) -> String {
    let out = orders(args, at);
    assert!(
        out.status.success(),
        "orders executions {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn json(args: &[&str], at: &Where) -> Value {
    let text = ok(args, at);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} --json: {e}: {text}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The one error line and the exit code.
fn fails(args: &[&str], at: &Where) -> (i32, String) {
    let out = orders(args, at);
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    (out.status.code().unwrap_or(-1), err)
}

fn mask_ids(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match k.as_str() {
                    "message_id" => (k.clone(), Value::Null),
                    _ => (k.clone(), mask_ids(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(mask_ids).collect()),
        other => other.clone(),
    }
}

fn parse(v: &Value) -> Value {
    serde_json::from_str(v.as_str().expect("a JSON string")).expect("JSON")
}

/// The columns of `show`'s state lines (name, type, status; the timing varies).
fn state_lines(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("states ("))
        .skip(1)
        .filter(|l| l.starts_with("  ") && !l.starts_with("      "))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // Names have spaces: drop the timing ("12 ms" or "-") and keep the rest.
            let end = if cols.last() == Some(&"ms") {
                cols.len() - 2
            } else {
                cols.len() - 1
            };
            cols[..end].join(" ")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_read_the_same_from_aws_and_from_the_data_dir() {
    let clients = aws_support::clients().await;
    let resources = MotoResources::create();
    let machine = order_workflow::deploy(&clients, &resources).await;
    let name = unique("01JCLI");
    let input = order_workflow::input(&name);
    let (aws_run, _) = workflow::run_on_moto(&clients, &machine, &name, &input).await;
    assert_eq!(aws_run["status"], "SUCCEEDED", "{aws_run}");

    let dir = tempfile::tempdir().expect("tempdir");
    let wf = workflow::local_workflow(dir.path()).await;
    let (local_run, _) = workflow::run_locally(&wf, &name, &input).await;
    assert_eq!(local_run["status"], "SUCCEEDED");
    wf.shutdown(std::time::Duration::from_secs(5)).await;

    let local = Where::Local(dir.path());
    let aws = Where::Aws(&machine);

    // list --json: ListExecutions items, the same fields.
    let (l, a) = (
        json(&["list", "--json"], &local),
        json(&["list", "--json"], &aws),
    );
    let (l, a) = (&l["executions"], &a["executions"]);
    assert_eq!(a.as_array().map(Vec::len), Some(1), "{a}");
    assert_eq!(l.as_array().map(Vec::len), Some(1), "{l}");
    assert_eq!(keys(&l[0]), keys(&a[0]));
    assert_eq!(
        keys(&a[0]),
        [
            "executionArn",
            "name",
            "startDate",
            "stateMachineArn",
            "status",
            "stopDate"
        ]
        .map(String::from)
        .into()
    );
    for item in [&l[0], &a[0]] {
        assert_eq!(item["name"], name.as_str());
        assert_eq!(item["status"], "SUCCEEDED");
    }
    assert_eq!(
        a[0]["executionArn"],
        format!(
            "{}:{name}",
            machine.replace(":stateMachine:", ":execution:")
        )
    );

    // list: one line per execution, the same columns.
    for at in [&local, &aws] {
        let text = ok(&["list"], at);
        let cols: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(cols.len(), 5, "name status start took ms: {text}");
        assert_eq!(
            (cols[0], cols[1], cols[4]),
            (name.as_str(), "SUCCEEDED", "ms")
        );
        assert!(cols[2].ends_with('Z'), "{text}");
        let filtered = ok(&["list", "--status", "succeeded"], at);
        assert!(filtered.contains(&name), "{filtered}");
        assert_eq!(ok(&["list", "--status", "ABORTED"], at), "no executions\n");
    }

    // show --json: DescribeExecution plus the states, the same both ways.
    let (l, a) = (
        json(&["show", &name, "--json"], &local),
        json(&["show", &name, "--json"], &aws),
    );
    // moto's DescribeExecution has no redriveStatus (Step Functions' has): the rest alike.
    let without_status = |v: &Value| {
        let mut k = keys(v);
        k.retain(|k| !k.starts_with("redriveStatus"));
        k
    };
    assert_eq!(without_status(&l), without_status(&a));
    assert_eq!(l["redriveCount"], a["redriveCount"]);
    assert_eq!(l["redriveStatus"], "NOT_REDRIVABLE", "{l}");
    assert_eq!(parse(&l["input"]), parse(&a["input"]), "the same input");
    assert_eq!(
        mask_ids(&parse(&l["output"])),
        mask_ids(&parse(&a["output"])),
        "the same output, message ids aside"
    );
    let states = |v: &Value| -> Vec<(String, String, String)> {
        v["states"]
            .as_array()
            .expect("states")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or_default().to_string(),
                    s["type"].as_str().unwrap_or_default().to_string(),
                    s["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert_eq!(states(&l), states(&a));
    assert_eq!(states(&a).len(), 7, "every state visited: {a}");
    assert!(
        a["states"]
            .as_array()
            .expect("states")
            .iter()
            .all(|s| s["duration_ms"].is_i64() && s["status"] == "SUCCEEDED"),
        "each state with its timing: {a}"
    );

    // show: the same lines, whatever the source.
    let (l, a) = (ok(&["show", &name], &local), ok(&["show", &name], &aws));
    let labels = |t: &str| -> Vec<String> {
        t.lines()
            .take_while(|l| !l.starts_with("states ("))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    assert_eq!(
        labels(&a),
        [
            "execution",
            "status",
            "started",
            "stopped",
            "input",
            "output"
        ]
    );
    assert_eq!(labels(&l), labels(&a));
    let (mut ls, mut as_) = (state_lines(&l), state_lines(&a));
    ls.sort();
    as_.sort();
    assert_eq!(ls, as_, "{l}\n---\n{a}");
    assert!(
        as_.contains(&"Send confirmation email Task SUCCEEDED".to_string()),
        "{a}"
    );

    // history --json: GetExecutionHistory events, the same types (in branch-independent order).
    let (l, a) = (
        json(&["history", &name, "--json"], &local),
        json(&["history", &name, "--json"], &aws),
    );
    let types = |v: &Value| -> Vec<String> {
        let mut t: Vec<String> = v["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_string())
            .collect();
        t.sort();
        t
    };
    assert_eq!(types(&l), types(&a));
    for e in a["events"].as_array().expect("events") {
        assert!(
            e["id"].is_u64() && e["previousEventId"].is_u64() && e["timestamp"].is_string(),
            "{e}"
        );
    }
    // history: one line per event, id and previous id first.
    let (l, a) = (
        ok(&["history", &name], &local),
        ok(&["history", &name], &aws),
    );
    assert_eq!(l.lines().count(), a.lines().count());
    assert_eq!(
        a.lines().count(),
        types(&json(&["history", &name, "--json"], &aws)).len()
    );
    assert!(
        a.lines().next().is_some_and(|first| {
            let c: Vec<&str> = first.split_whitespace().collect();
            c[..2] == ["1", "0"] && c[3] == "ExecutionStarted"
        }),
        "{a}"
    );

    // The ARN works as well as the name.
    let arn = json(&["show", &name, "--json"], &aws)["executionArn"]
        .as_str()
        .expect("executionArn")
        .to_string();
    assert_eq!(json(&["show", &arn, "--json"], &aws)["name"], name.as_str());
    // STATE_MACHINE_ARN stands in for the flag.
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["executions", "list", "--aws"])
        .env("STATE_MACHINE_ARN", &machine)
        .output()
        .expect("run orders");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
    // So does the stack's StateMachineArn output (CloudFormation DescribeStacks).
    let stack = unique("orders-stack");
    moto::create_stack_with_output(&stack, "StateMachineArn", &machine);
    let by_stack = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_orders"))
            .arg("executions")
            .args(args)
            .args(["--aws", "--stack", &stack])
            .env_remove("STATE_MACHINE_ARN")
            .output()
            .expect("run orders")
    };
    let out = by_stack(&["list", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON"),
        json(&["list", "--json"], &aws)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["executions", "list", "--aws", "--stack", "no-such-stack"])
        .output()
        .expect("run orders");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: no stack named no-such-stack in this account and region"
    );
    let bare = unique("orders-stack");
    moto::create_stack_with_output(&bare, "ApiUrl", "https://example.com");
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["executions", "list", "--aws", "--stack", &bare])
        .output()
        .expect("run orders");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!("error: stack {bare} has no StateMachineArn output")
    );

    // Errors: one line, exit 1, both ways.
    for at in [&local, &aws] {
        for cmd in ["show", "history"] {
            assert_eq!(
                fails(&[cmd, "no-such-order"], at),
                (1, "error: no execution named no-such-order".to_string())
            );
        }
        let (code, err) = fails(&["list", "--status", "DONE"], at);
        assert_eq!(code, 1);
        assert!(err.contains("--status must be one of"), "{err}");
    }
}

#[test]
fn aws_without_a_state_machine_is_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["executions", "list", "--aws"])
        .env_remove("STATE_MACHINE_ARN")
        .env_remove("ORDERS_STACK")
        .output()
        .expect("run orders");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "error: --aws needs the state machine: pass --stack NAME (its StateMachineArn output) or --state-machine-arn ARN (or set STATE_MACHINE_ARN)"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args([
            "executions",
            "show",
            "x",
            "--aws",
            "--state-machine-arn",
            "orders",
        ])
        .output()
        .expect("run orders");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("`orders` is not a state machine ARN"), "{err}");
}

/// Without a region, or without credentials, an `--aws` command says what to set in one
/// line before any call (not the SDK's dispatch failure, nor its chains' warnings).
#[test]
fn aws_without_a_region_or_credentials_is_one_line() {
    let nowhere = tempfile::tempdir().expect("dir");
    // Empty configuration files: no profile, no region, no credentials.
    for f in ["config", "credentials"] {
        std::fs::write(nowhere.path().join(f), "").expect("write");
    }
    let run = |region: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orders"));
        cmd.args(args)
            .env("AWS_CONFIG_FILE", nowhere.path().join("config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                nowhere.path().join("credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("RUST_LOG");
        for v in [
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ] {
            cmd.env_remove(v);
        }
        if let Some(r) = region {
            cmd.env("AWS_REGION", r);
        }
        let out = cmd.output().expect("run orders");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let no_credentials = |err: &str| {
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: no AWS credentials ("), "{err}");
        assert!(err.contains("set AWS_PROFILE"), "{err}");
    };
    let queue = [
        "dead-letters",
        "list",
        "--aws",
        "--queue-url",
        "https://sqs.example/q",
    ];
    let err = run(None, &queue);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: no AWS region: set AWS_REGION"),
        "{err}"
    );
    no_credentials(&run(Some("eu-west-1"), &queue));
    // A state machine ARN names its region: only the credentials are missing.
    let arn = "arn:aws:states:eu-west-1:123456789012:stateMachine:orders";
    no_credentials(&run(
        None,
        &["executions", "list", "--aws", "--state-machine-arn", arn],
    ));
    // A bad ARN is said first.
    let err = run(
        None,
        &[
            "executions",
            "list",
            "--aws",
            "--state-machine-arn",
            "orders",
        ],
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("`orders` is not a state machine ARN"), "{err}");
}

/// A state machine of one state on moto.
async fn machine_of(clients: &orders_aws::AwsClients, state: Value) -> String {
    let definition = serde_json::json!({ "StartAt": "Only", "States": { "Only": state } });
    clients
        .sfn()
        .create_state_machine()
        .name(unique("orders-act"))
        .definition(definition.to_string())
        .role_arn(format!(
            "arn:aws:iam::{}:role/orders-workflow",
            moto::ACCOUNT
        ))
        .send()
        .await
        .expect("create the state machine on moto")
        .state_machine_arn()
        .to_string()
}

/// `executions stop|redrive --aws`: StopExecution on Step Functions, the same one-line
/// refusals as locally for a status that rules the action out, and the standard "not found".
/// (moto has no RedriveExecution: a redrive that reaches the service is tested on the local
/// engine, in tests/workflow.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_are_stopped_on_aws_and_refusals_are_one_line() {
    let clients = aws_support::clients().await;
    let waits = machine_of(
        &clients,
        serde_json::json!({ "Type": "Wait", "Seconds": 600, "End": true }),
    )
    .await;
    let name = unique("01JSTOP");
    clients
        .sfn()
        .start_execution()
        .state_machine_arn(&waits)
        .name(&name)
        .input("{}")
        .send()
        .await
        .expect("StartExecution on moto");
    let aws = Where::Aws(&waits);
    assert_eq!(json(&["show", &name, "--json"], &aws)["status"], "RUNNING");

    let out = ok(
        &["stop", &name, "--error", "Halted", "--cause", "by the test"],
        &aws,
    );
    let arn = format!(
        "{}:{name}",
        waits.replacen(":stateMachine:", ":execution:", 1)
    );
    assert!(
        out.starts_with(&format!(
            "stopped: {arn} (`orders executions show {name} --aws` follows it)\n"
        )),
        "{out}"
    );
    assert!(out.contains("console: https://"), "{out}");
    let shown = json(&["show", &name, "--json"], &aws);
    assert_eq!(shown["status"], "ABORTED", "{shown}");
    assert!(shown["stopDate"].is_string(), "{shown}");

    // Stopped already: refused before any call, in the local engine's words.
    assert_eq!(
        fails(&["stop", &name], &aws),
        (1, "error: Execution Not Running: it is ABORTED".to_string())
    );
    for cmd in ["stop", "redrive"] {
        assert_eq!(
            fails(&[cmd, "no-such-order"], &aws),
            (1, "error: no execution named no-such-order".to_string())
        );
    }

    // A succeeded execution is not redrivable; a running one neither.
    let passes = machine_of(&clients, serde_json::json!({ "Type": "Pass", "End": true })).await;
    let done = unique("01JDONE");
    let input = order_workflow::input(&done);
    let (run, _) = workflow::run_on_moto(&clients, &passes, &done, &input).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(
        fails(&["redrive", &done], &Where::Aws(&passes)),
        (
            1,
            "error: Execution Not Redrivable: it is SUCCEEDED".to_string()
        )
    );
    let running = unique("01JRUN");
    clients
        .sfn()
        .start_execution()
        .state_machine_arn(&waits)
        .name(&running)
        .send()
        .await
        .expect("StartExecution on moto");
    assert_eq!(
        fails(&["redrive", &running], &aws),
        (
            1,
            "error: Execution Not Redrivable: it is RUNNING".to_string()
        )
    );
    // Nothing left waiting on the shared moto.
    ok(&["stop", &running], &aws);
}
