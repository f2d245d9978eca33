//! Where `orders executions` reads from: the local `workflows.db` or Step Functions
//! (`--aws`). Both answer in AWS's own JSON shapes (ListExecutions items,
//! DescribeExecution, GetExecutionHistory events), so one renderer prints either.

use super::ExecutionsCmd;
use super::render;
use asl::{ExecutionRecord, ExecutionStatus, HistoryEvent};
use orders_aws::sfn::{EXECUTION_STATUSES as STATUSES, InspectError, SfnInspector};
use orders_local::workflow::db::WorkflowDb;
use serde_json::{Value, json};
use std::process::ExitCode;

/// `--aws` and the state machine it reads.
#[derive(Debug, clap::Args)]
pub struct AwsArgs {
    /// Read (or stop, or redrive) the executions on AWS Step Functions (standard
    /// credential chain) instead of the local data dir.
    #[arg(long, global = true)]
    pub aws: bool,
    /// The state machine for --aws (the stack's `StateMachineArn` output).
    #[arg(long, env = "STATE_MACHINE_ARN", global = true, value_name = "ARN")]
    pub state_machine_arn: Option<String>,
    /// For --aws: read the state machine from this CloudFormation stack's
    /// `StateMachineArn` output (the name given to `sam deploy`); wins over the ARN.
    #[arg(long, env = "ORDERS_STACK", global = true, value_name = "NAME")]
    pub stack: Option<String>,
}

/// The outputs of a deployed stack (DescribeStacks), by key.
pub(crate) async fn stack_outputs(
    sdk: &aws_config::SdkConfig,
    stack: &str,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let client = aws_sdk_cloudformation::Client::new(sdk);
    let described = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            let e = aws_sdk_cloudformation::error::DisplayErrorContext(e);
            // DescribeStacks answers an unknown stack with a ValidationError.
            match e.to_string().contains("does not exist") {
                true => anyhow::anyhow!("no stack named {stack} in this account and region"),
                false => anyhow::anyhow!("DescribeStacks {stack}: {e}"),
            }
        })?;
    Ok(described
        .stacks()
        .iter()
        .flat_map(|s| s.outputs())
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

/// One output of a deployed stack.
pub(crate) async fn stack_output(
    sdk: &aws_config::SdkConfig,
    stack: &str,
    key: &str,
) -> anyhow::Result<String> {
    stack_outputs(sdk, stack)
        .await?
        .remove(key)
        .ok_or_else(|| anyhow::anyhow!("stack {stack} has no {key} output"))
}

pub enum Source {
    Local(WorkflowDb),
    Aws(SfnInspector),
}

fn aws_error(name: &str, e: InspectError) -> anyhow::Error {
    match e {
        InspectError::NotFound(_) => anyhow::anyhow!("no execution named {name}"),
        other => other.into(),
    }
}

impl Source {
    pub async fn aws(args: &AwsArgs) -> anyhow::Result<Source> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
        };
        let (stack, arn) = (given(&args.stack), given(&args.state_machine_arn));
        if stack.is_none() && arn.is_none() {
            anyhow::bail!(
                "--aws needs the state machine: pass --stack NAME (its StateMachineArn output) or --state-machine-arn ARN (or set STATE_MACHINE_ARN)"
            );
        }
        let (sdk, arn) = match (stack, arn) {
            (Some(stack), _) => {
                let sdk = crate::aws_access::sdk_config(true).await?;
                let arn = stack_output(&sdk, &stack, "StateMachineArn").await?;
                (sdk, arn)
            }
            (None, arn) => {
                let arn = arn.unwrap_or_default();
                // A bad ARN is the user's to fix first; a good one names the region.
                orders_aws::sfn::state_machine_region(&arn)?;
                (crate::aws_access::sdk_config(false).await?, arn)
            }
        };
        Ok(Source::Aws(SfnInspector::from_sdk_config(&sdk, &arn)?))
    }

    /// ListExecutions items, newest first.
    async fn list(&self, status: Option<&str>, limit: usize) -> anyhow::Result<Vec<Value>> {
        match self {
            Source::Local(db) => {
                let status = match status {
                    // A status the local engine never produces (PENDING_REDRIVE) lists nothing.
                    Some(s) => match serde_json::from_value::<ExecutionStatus>(json!(s)) {
                        Ok(s) => Some(s),
                        Err(_) => return Ok(Vec::new()),
                    },
                    None => None,
                };
                Ok(db.list(status, limit)?.iter().map(summary).collect())
            }
            Source::Aws(sfn) => Ok(sfn
                .list_executions(status, limit)
                .await?
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?),
        }
    }

    /// DescribeExecution of an execution given by name (the order id) or ARN, and its
    /// GetExecutionHistory events, oldest first (a local history is read once for both).
    async fn describe(&self, name: &str) -> anyhow::Result<(Value, Vec<Value>)> {
        match self {
            Source::Local(db) => {
                let record = find(db, name)?;
                let history = db.history_of(&record.execution_arn)?;
                Ok((
                    describe(&record, &history),
                    history.iter().map(HistoryEvent::to_value).collect(),
                ))
            }
            Source::Aws(sfn) => {
                let arn = self.arn_of(sfn, name);
                let d = sfn
                    .describe_execution(&arn)
                    .await
                    .map_err(|e| aws_error(name, e))?;
                let history = sfn
                    .history(&d.execution_arn)
                    .await
                    .map_err(|e| aws_error(name, e))?;
                Ok((serde_json::to_value(d)?, history))
            }
        }
    }

    fn arn_of(&self, sfn: &SfnInspector, name: &str) -> String {
        match name.starts_with("arn:") {
            true => name.to_string(),
            false => sfn.execution_arn(name).unwrap_or_else(|| name.to_string()),
        }
    }
}

fn find(db: &WorkflowDb, name: &str) -> anyhow::Result<ExecutionRecord> {
    db.find_execution(name)?
        .ok_or_else(|| anyhow::anyhow!("no execution named {name}"))
}

/// A ListExecutions item.
fn summary(r: &ExecutionRecord) -> Value {
    let mut v = json!({
        "executionArn": r.execution_arn,
        "stateMachineArn": r.state_machine_arn,
        "name": r.name,
        "status": r.status.as_str(),
        "startDate": super::ts(r.start_date),
    });
    if let Some(s) = r.stop_date {
        v["stopDate"] = json!(super::ts(s));
    }
    v
}

/// DescribeExecution's shape (input and output as JSON strings, as AWS returns them),
/// with its redrive fields.
fn describe(r: &ExecutionRecord, history: &[HistoryEvent]) -> Value {
    let mut v = summary(r);
    let (redrives, last) = asl::redrive::redrives(history);
    v["redriveCount"] = json!(redrives);
    if let Some(at) = last {
        v["redriveDate"] = json!(at);
    }
    match asl::redrive::not_redrivable(r, history) {
        None => v["redriveStatus"] = json!("REDRIVABLE"),
        Some(why) => {
            v["redriveStatus"] = json!("NOT_REDRIVABLE");
            v["redriveStatusReason"] = json!(format!("The execution cannot be redriven: {why}"));
        }
    }
    v["input"] = json!(r.input.to_string());
    if let Some(o) = &r.output {
        v["output"] = json!(o.to_string());
    }
    if let Some(e) = &r.error {
        v["error"] = json!(e);
    }
    if let Some(c) = &r.cause {
        v["cause"] = json!(c);
    }
    v
}

fn parse_status(s: &str) -> anyhow::Result<String> {
    let upper = s.trim().to_ascii_uppercase();
    anyhow::ensure!(
        STATUSES.contains(&upper.as_str()),
        "--status must be one of {}, got {s:?}",
        STATUSES.join(", ")
    );
    Ok(upper)
}

pub async fn run(source: &Source, command: ExecutionsCmd) -> anyhow::Result<ExitCode> {
    match command {
        ExecutionsCmd::List {
            status,
            limit,
            json,
        } => {
            let status = status.as_deref().map(parse_status).transpose()?;
            let items = source.list(status.as_deref(), limit).await?;
            render::list(&items, json)?;
        }
        ExecutionsCmd::Show { name, json } => {
            let (description, history) = source.describe(&name).await?;
            render::show(&description, &history, json)?;
        }
        ExecutionsCmd::History { name, json } => {
            let (_, history) = source.describe(&name).await?;
            render::history(&history, json)?;
        }
        // Handled before a source is opened: the server's engine runs it.
        ExecutionsCmd::Redrive { .. } | ExecutionsCmd::Stop { .. } => {
            anyhow::bail!("this is asked of the running server")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the server at `url` to `redrive` or `stop` the execution `name` (the console's
/// buttons), with the form fields `form`.
pub async fn ask_server(
    url: &str,
    name: &str,
    action: &str,
    form: &[(&str, String)],
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !name.trim().is_empty(),
        "the execution name must not be empty"
    );
    let mut conn =
        orders::client::Connection::to_server(url, "its engine runs the executions").await?;
    let path = format!(
        "/console/executions/{}/{action}",
        orders_handlers::links::encode_segment(name)
    );
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{k}={}", orders_handlers::links::encode_segment(v)))
        .collect();
    let reply = conn
        .send(
            http::Method::POST,
            &path,
            &[
                ("accept", "application/json"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(body.join("&").into()),
        )
        .await?;
    let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if (200..300).contains(&reply.status) {
        done(
            action,
            answer["executionArn"].as_str().unwrap_or(name),
            name,
            "",
        );
        return Ok(ExitCode::SUCCESS);
    }
    let why = answer["detail"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("the server answered {}", reply.status));
    anyhow::bail!("{why}")
}

/// The line a stop or a redrive ends with.
fn done(action: &str, arn: &str, name: &str, flags: &str) {
    let done = if action == "stop" {
        "stopped"
    } else {
        "redriven"
    };
    println!("{done}: {arn} (`orders executions show {name}{flags}` follows it)");
}

/// `stop` or `redrive` on Step Functions (`--aws`). A status that rules it out is refused
/// up front in the local engine's words; otherwise the service decides (a redrive's
/// other rules: its age, its count, the redrive status).
pub async fn act_on_aws(
    source: &Source,
    name: &str,
    action: &str,
    error: Option<String>,
    cause: Option<String>,
) -> anyhow::Result<ExitCode> {
    let Source::Aws(sfn) = source else {
        anyhow::bail!("{action} --aws needs Step Functions");
    };
    anyhow::ensure!(
        !name.trim().is_empty(),
        "the execution name must not be empty"
    );
    let arn = source.arn_of(sfn, name);
    let d = sfn
        .describe_execution(&arn)
        .await
        .map_err(|e| aws_error(name, e))?;
    let status = d.status.as_str();
    if action == "stop" {
        anyhow::ensure!(
            matches!(status, "RUNNING" | "PENDING_REDRIVE"),
            "Execution Not Running: it is {status}"
        );
        sfn.stop_execution(&arn, error, cause)
            .await
            .map_err(|e| aws_error(name, e))?;
    } else {
        anyhow::ensure!(
            !matches!(status, "RUNNING" | "SUCCEEDED" | "PENDING_REDRIVE"),
            "Execution Not Redrivable: it is {status}"
        );
        if d.redrive_status.as_deref() == Some("NOT_REDRIVABLE") {
            let why = d
                .redrive_status_reason
                .as_deref()
                .unwrap_or("the service says so");
            anyhow::bail!("Execution Not Redrivable: {why}");
        }
        sfn.redrive_execution(&arn)
            .await
            .map_err(|e| aws_error(name, e))?;
    }
    done(action, &arn, name, " --aws");
    if let Some(url) = orders_aws::sfn::console_url_for(&arn) {
        println!("console: {url}");
    }
    Ok(ExitCode::SUCCESS)
}
