//! The Step Functions starter and inspector against moto, with the project's own state
//! machine (`statemachines/order-workflow.asl.json`, `${…}` substituted as SAM would).

mod support;

use orders_aws::sfn::{InspectError, execution_arn};
use orders_aws::{SfnInspector, SfnWorkflowStarter, console_url_for};
use orders_domain::ports::{StartOutcome, WorkflowStarter};
use orders_domain::time::Timestamp;
use orders_domain::workflow::WorkflowInput;
use std::time::{Duration, Instant};

use support::moto::{self, ACCOUNT};
use support::order_workflow::{MotoResources, deploy, input};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_once_per_order_and_inspect_in_aws_shape() {
    let clients = support::moto_clients().await;
    let resources = MotoResources::create();
    let machine = deploy(&clients, &resources).await;
    let starter = SfnWorkflowStarter::new(clients.sfn(), &machine);
    let inspector = SfnInspector::new(clients.sfn(), &machine);
    let order_id = support::unique("01JORDER");
    let input = input(&order_id);

    assert_eq!(
        starter.start(&input).await.unwrap(),
        StartOutcome::Started {
            execution_name: order_id.clone()
        }
    );
    // A redelivered stream record starts nothing new and still succeeds.
    let again = starter.start(&input).await.unwrap();
    assert!(
        matches!(&again, StartOutcome::AlreadyStarted { execution_name } | StartOutcome::Started { execution_name } if *execution_name == order_id),
        "{again:?}"
    );
    let listed = inspector.list_executions(None, 50).await.unwrap();
    assert_eq!(listed.len(), 1, "one execution per order: {listed:?}");

    let arn = inspector.execution_arn(&order_id).unwrap();
    assert_eq!(listed[0].execution_arn, arn);
    assert_eq!(listed[0].name, order_id);

    let described = inspector.describe_execution(&arn).await.unwrap();
    assert_eq!(described.name, order_id);
    let sent: WorkflowInput =
        serde_json::from_str(described.input.as_deref().unwrap_or("null")).unwrap();
    assert_eq!(sent, input, "the workflow input travels as JSON");

    // moto runs the ASL (its Docker-free Lambda echoes the recorder's payload).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = described.status.clone();
    while status == "RUNNING" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        status = inspector.describe_execution(&arn).await.unwrap().status;
    }
    let done = inspector.describe_execution(&arn).await.unwrap();
    eprintln!("moto execution {status}: output {:?}", done.output);
    assert_eq!(status, "SUCCEEDED", "{done:?}");
    let output = done.output.unwrap_or_default();
    assert_eq!(
        output.matches("\"SENT\"").count(),
        3,
        "all three channels: {output}"
    );

    // What each channel delivered.
    let fulfilment = moto::receive(&resources.fulfilment_queue_url);
    assert_eq!(fulfilment.len(), 1, "{fulfilment:?}");
    assert!(fulfilment[0].contains(&order_id), "{}", fulfilment[0]);
    let notified = moto::receive(&resources.notification_queue_url);
    assert_eq!(notified.len(), 1, "SNS -> SQS: {notified:?}");
    assert!(notified[0].contains(&order_id), "{}", notified[0]);
    let data = moto::data_json();
    assert!(
        data.contains(&format!("Your order {order_id} is confirmed")),
        "the confirmation email was sent"
    );

    let filtered = inspector
        .list_executions(Some(&status.to_lowercase()), 10)
        .await
        .unwrap();
    assert!(filtered.iter().any(|e| e.name == order_id), "{filtered:?}");
    let other = if status == "ABORTED" {
        "TIMED_OUT"
    } else {
        "ABORTED"
    };
    assert!(
        inspector
            .list_executions(Some(other), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let history = inspector.history(&arn).await.unwrap();
    assert!(!history.is_empty());
    let first = &history[0];
    assert_eq!(first["type"], "ExecutionStarted");
    assert_eq!(first["id"], 1);
    assert_eq!(first["previousEventId"], 0);
    let details_input = first["executionStartedEventDetails"]["input"]
        .as_str()
        .expect("inputs inside details are JSON strings, as AWS returns them");
    assert_eq!(
        serde_json::from_str::<WorkflowInput>(details_input).unwrap(),
        input
    );
    for (i, e) in history.iter().enumerate() {
        assert_eq!(e["id"], (i + 1) as u64, "ids are sequential");
        let ts = e["timestamp"].as_str().expect("timestamps are strings");
        assert!(Timestamp::parse(ts).is_some(), "RFC 3339 UTC: {ts}");
        assert!(e["type"].is_string());
    }
    let types: Vec<&str> = history.iter().filter_map(|e| e["type"].as_str()).collect();
    eprintln!("moto execution {status}: {types:?}");
    assert!(types.contains(&"ParallelStateEntered"), "{types:?}");
    if status != "RUNNING" {
        assert!(
            types.last().is_some_and(|t| t.starts_with("Execution")),
            "the last event closes the execution: {types:?}"
        );
    }
    assert!(
        console_url_for(&arn)
            .unwrap()
            .contains("#/v2/executions/details/arn:aws:states:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_executions_and_statuses_are_clear_errors() {
    let clients = support::moto_clients().await;
    let machine = deploy(&clients, &MotoResources::dummy()).await;
    let inspector = SfnInspector::new(clients.sfn(), &machine);
    let missing = execution_arn(&machine, "no-such-order").unwrap();
    assert_eq!(
        inspector.describe_execution(&missing).await.unwrap_err(),
        InspectError::NotFound(missing.clone())
    );
    assert_eq!(
        inspector.history(&missing).await.unwrap_err(),
        InspectError::NotFound(missing.clone())
    );
    assert!(matches!(
        inspector
            .list_executions(Some("DONE"), 10)
            .await
            .unwrap_err(),
        InspectError::InvalidStatus(_)
    ));
    assert!(
        inspector
            .list_executions(None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A starter pointed at a state machine that does not exist reports the error.
    let ghost = format!(
        "arn:aws:states:{}:{ACCOUNT}:stateMachine:{}",
        support::region(),
        support::unique("ghost")
    );
    let starter = SfnWorkflowStarter::new(clients.sfn(), &ghost);
    let err = starter.start(&input("o-1")).await.unwrap_err();
    assert!(err.0.contains("StateMachineDoesNotExist"), "{err}");
}
