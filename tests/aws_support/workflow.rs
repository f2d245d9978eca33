//! The order workflow (`statemachines/order-workflow.asl.json`) run twice for the same
//! order: deployed to moto with the SAM substitutions, and on the project's own engine
//! with the local SNS/SQS/SES stand-ins. Both give AWS-shaped histories.

use orders_aws::{AwsClients, SfnInspector};
use orders_domain::workflow::WorkflowInput;
use orders_local::workflow::resources::LocalFunction;
use orders_local::workflow::{LocalWorkflow, WorkflowOptions};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts `name` with `input` on moto and waits (bounded) until it is no longer RUNNING.
/// Returns DescribeExecution and the history, both in AWS's JSON shape.
pub async fn run_on_moto(
    clients: &AwsClients,
    machine: &str,
    name: &str,
    input: &WorkflowInput,
) -> (Value, Vec<Value>) {
    clients
        .sfn()
        .start_execution()
        .state_machine_arn(machine)
        .name(name)
        .input(serde_json::to_string(input).expect("input JSON"))
        .send()
        .await
        .expect("StartExecution on moto");
    let inspector = SfnInspector::new(clients.sfn(), machine);
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
