//! The order workflow (`statemachines/order-workflow.asl.json`) run twice for the same
//! order: deployed to moto with the SAM substitutions, and on the project's own engine
//! with the local SNS/SQS/SES stand-ins. Both give AWS-shaped histories.

use super::moto::{self, ACCOUNT};
use orders_aws::{AwsClients, SfnInspector};
use orders_domain::envelope::EventEnvelope;
use orders_domain::money::{Currency, Money};
use orders_domain::order::{Address, Customer, OrderLine, OrderPlaced};
use orders_domain::time::Timestamp;
use orders_domain::workflow::WorkflowInput;
use orders_local::workflow::resources::LocalFunction;
use orders_local::workflow::{LocalWorkflow, WorkflowOptions};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DEFINITION: &str = include_str!("../../statemachines/order-workflow.asl.json");

/// The workflow's input for a placed order (what the projector starts it with).
pub fn input(order_id: &str) -> WorkflowInput {
    let eur = Currency::parse("EUR").expect("EUR");
    let placed = OrderPlaced {
        order_id: order_id.into(),
        customer: Customer {
            id: "c-42".into(),
            email: "ada@example.com".into(),
            name: "Ada Lovelace".into(),
        },
        items: vec![OrderLine {
            sku: "BOOK-1".into(),
            quantity: 2,
            unit_price: Money::new(1250, eur),
            line_total: Money::new(2500, eur),
        }],
        shipping_address: Address {
            line1: "12 Rue de la Paix".into(),
            line2: None,
            city: "Paris".into(),
            postal_code: "75002".into(),
            country: "FR".into(),
        },
        total: Money::new(2500, eur),
        placed_via: "test".into(),
    };
    let envelope = EventEnvelope {
        event_id: super::unique("evt"),
        aggregate_id: order_id.into(),
        version: 1,
        event_type: "OrderPlaced".into(),
        schema_version: 1,
        occurred_at: Timestamp(1_795_706_525_123),
        correlation_id: super::unique("corr"),
        causation_id: "req-1".into(),
        payload: Value::Null,
    };
    WorkflowInput::for_placed(&envelope, &placed)
}

/// The resources the workflow talks to, created on moto.
pub struct MotoResources {
    pub topic_arn: String,
    pub fulfilment_queue_url: String,
    /// Subscribed to the topic: where the customer notification lands.
    pub notification_queue_url: String,
    pub sender: String,
}

impl MotoResources {
    pub fn create() -> Self {
        let topic_arn = moto::create_topic(&super::unique("orders-topic"));
        let fulfilment_queue_url = moto::create_queue(&super::unique("orders-fulfilment"));
        let notifications = super::unique("orders-notifications");
        let notification_queue_url = moto::create_queue(&notifications);
        moto::subscribe_queue(&topic_arn, &notifications);
        let sender = format!("{}@example.com", super::unique("orders"));
        moto::create_email_identity(&sender);
        MotoResources {
            topic_arn,
            fulfilment_queue_url,
            notification_queue_url,
            sender,
        }
    }

    /// The SAM `DefinitionSubstitutions` for these resources.
    pub fn substitutions(&self) -> HashMap<String, String> {
        HashMap::from([
            ("OrderTopicArn".to_string(), self.topic_arn.clone()),
            (
                "FulfilmentQueueUrl".to_string(),
                self.fulfilment_queue_url.clone(),
            ),
            ("SenderAddress".to_string(), self.sender.clone()),
            (
                "RecorderFunctionArn".to_string(),
                format!(
                    "arn:aws:lambda:{}:{ACCOUNT}:function:orders-recorder",
                    super::region()
                ),
            ),
        ])
    }
}

/// Deploys the definition (substituted as SAM does) to moto; returns the state machine ARN.
pub async fn deploy(clients: &AwsClients, r: &MotoResources) -> String {
    let definition = asl::substitute(DEFINITION, &r.substitutions());
    let left = definition
        .match_indices("${")
        .filter(|(i, _)| definition[i + 2..].starts_with(|c: char| c.is_ascii_alphabetic()))
        .count();
    assert_eq!(left, 0, "every placeholder is substituted");
    clients
        .sfn
        .create_state_machine()
        .name(super::unique("orders"))
        .definition(definition)
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/orders-workflow"))
        .send()
        .await
        .expect("create the state machine on moto")
        .state_machine_arn()
        .to_string()
}

/// Starts `name` with `input` on moto and waits (bounded) until it is no longer RUNNING.
/// Returns DescribeExecution and the history, both in AWS's JSON shape.
pub async fn run_on_moto(
    clients: &AwsClients,
    machine: &str,
    name: &str,
    input: &WorkflowInput,
) -> (Value, Vec<Value>) {
    clients
        .sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(name)
        .input(serde_json::to_string(input).expect("input JSON"))
        .send()
        .await
        .expect("StartExecution on moto");
    let inspector = SfnInspector::new(clients.sfn.clone(), machine);
    let arn = inspector.execution_arn(name).expect("execution ARN");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let d = inspector.describe_execution(&arn).await.expect("describe");
        if d.status != "RUNNING" || Instant::now() >= deadline {
            let history = inspector.history(&arn).await.expect("history");
            return (serde_json::to_value(d).expect("JSON"), history);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An in-process "Lambda" that answers as moto's Docker-free Lambda does: it echoes the
/// payload. (The real recorder appends events; that is tested in tests/workflow.rs.)
pub fn echo_function() -> LocalFunction {
    Arc::new(|payload: Value| Box::pin(async move { Ok(payload) }))
}

/// The local workflow on `dir`, with the recorder replaced by [`echo_function`].
pub async fn local_workflow(dir: &Path) -> LocalWorkflow {
    let options = WorkflowOptions {
        mail_files: false,
        ..WorkflowOptions::default()
    };
    let functions = HashMap::from([(options.names.recorder_function.clone(), echo_function())]);
    LocalWorkflow::open(dir, options, functions)
        .await
        .expect("open the local workflow")
}

/// Runs `name` on the local engine to its end: the outcome as DescribeExecution JSON
/// (status, output) and the history as GetExecutionHistory JSON.
pub async fn run_locally(
    wf: &LocalWorkflow,
    name: &str,
    input: &WorkflowInput,
) -> (Value, Vec<Value>) {
    let input = serde_json::to_value(input).expect("input JSON");
    let handle = wf
        .engine
        .start_execution(&wf.state_machine, name, input)
        .expect("start locally");
    let outcome = tokio::time::timeout(Duration::from_secs(60), handle.wait())
        .await
        .expect("the local execution ends within a minute");
    let mut d = serde_json::json!({
        "executionArn": outcome.execution_arn,
        "status": outcome.status.as_str(),
    });
    if let Some(o) = &outcome.output {
        d["output"] = Value::String(o.to_string());
    }
    // The store queues its writes: the last events land with the next commit.
    wf.db.flush().await.expect("flush the workflow store");
    let history = wf
        .engine
        .history(&outcome.execution_arn)
        .expect("local history")
        .iter()
        .map(asl::HistoryEvent::to_value)
        .collect();
    (d, history)
}
