//! Step Functions: the workflow starter (a port) and the inspector the CLI uses to show
//! executions, with their history in AWS's own `GetExecutionHistory` JSON shape, the
//! same shape the local ASL engine records, so both print the same way.

use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_sfn::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sfn::error::{DisplayErrorContext, SdkError};
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryError;
use aws_sdk_sfn::operation::redrive_execution::RedriveExecutionError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::operation::stop_execution::StopExecutionError;
use aws_sdk_sfn::primitives::DateTime;
use aws_sdk_sfn::types::ExecutionStatus;
use orders_domain::ports::{StartOutcome, WorkflowError, WorkflowStarter};
use orders_domain::time::Timestamp;
use orders_domain::workflow::{WorkflowInput, execution_name};
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(err).to_string()
}

/// Starts one execution per order, named [`execution_name`] (the order id).
#[derive(Debug, Clone)]
pub struct SfnWorkflowStarter {
    client: Client,
    state_machine_arn: String,
}

impl SfnWorkflowStarter {
    pub fn new(client: Client, state_machine_arn: &str) -> Self {
        SfnWorkflowStarter {
            client,
            state_machine_arn: state_machine_arn.to_string(),
        }
    }

    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    async fn start_inner(&self, input: &WorkflowInput) -> Result<StartOutcome, WorkflowError> {
        let name = execution_name(&input.order_id);
        let json = serde_json::to_string(input).map_err(|e| WorkflowError(e.to_string()))?;
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&name)
            .input(json)
            .send()
            .await;
        match result {
            Ok(out) => {
                tracing::info!(execution_arn = %out.execution_arn(), "workflow started");
                Ok(StartOutcome::Started {
                    execution_name: name,
                })
            }
            // A redelivered record: the execution exists (AWS answers a *running* execution
            // with the same name and input with success instead, which is fine too).
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(StartExecutionError::ExecutionAlreadyExists(_))
                ) =>
            {
                tracing::info!("workflow already started");
                Ok(StartOutcome::AlreadyStarted {
                    execution_name: name,
                })
            }
            Err(e) => {
                let message = describe(&e);
                tracing::warn!(error = %message, "could not start the workflow");
                Err(WorkflowError(message))
            }
        }
    }
}

impl WorkflowStarter for SfnWorkflowStarter {
    async fn start(&self, input: &WorkflowInput) -> Result<StartOutcome, WorkflowError> {
        let span = tracing::info_span!(
            "sfn.start",
            order_id = %input.order_id,
            correlation_id = %input.correlation_id,
        );
        self.start_inner(input).instrument(span).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("execution not found: {0}")]
    NotFound(String),
    #[error(
        "unknown execution status `{0}` (expected RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or PENDING_REDRIVE)"
    )]
    InvalidStatus(String),
    #[error("Step Functions unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected Step Functions response: {0}")]
    Corrupt(String),
    #[error(
        "`{0}` is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)"
    )]
    InvalidArn(String),
    /// Step Functions refused a stop or a redrive; its own words (`Execution Not
    /// Redrivable: …`).
    #[error("{0}")]
    Refused(String),
}

/// One row of ListExecutions, in its AWS JSON field names; dates as RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub status: String,
    pub start_date: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_date: Option<Timestamp>,
}

/// DescribeExecution, in its AWS JSON field names; dates as RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDescription {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub status: String,
    pub start_date: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_date: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Redrives so far (0 when the service does not say).
    pub redrive_count: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_date: Option<Timestamp>,
    /// `REDRIVABLE`, `NOT_REDRIVABLE`, `REDRIVABLE_BY_MAP_RUN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_status_reason: Option<String>,
}

/// Every status ListExecutions filters on.
pub const EXECUTION_STATUSES: [&str; 6] = [
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "TIMED_OUT",
    "ABORTED",
    "PENDING_REDRIVE",
];

/// Reads executions of one state machine.
#[derive(Debug, Clone)]
pub struct SfnInspector {
    client: Client,
    state_machine_arn: String,
}

impl SfnInspector {
    pub fn new(client: Client, state_machine_arn: &str) -> Self {
        SfnInspector {
            client,
            state_machine_arn: state_machine_arn.to_string(),
        }
    }

    /// From a loaded configuration (credentials, `AWS_ENDPOINT_URL_SFN`, …), in the region
    /// the ARN names: a profile's default region may be another one.
    pub fn from_sdk_config(
        sdk: &aws_config::SdkConfig,
        state_machine_arn: &str,
    ) -> Result<SfnInspector, InspectError> {
        let region = state_machine_region(state_machine_arn)?;
        let mut conf = aws_sdk_sfn::config::Builder::from(sdk);
        if sdk.region().map(|r| r.as_ref()) != Some(region) {
            conf = conf.region(aws_sdk_sfn::config::Region::new(region.to_string()));
        }
        Ok(SfnInspector::new(
            Client::from_conf(conf.build()),
            state_machine_arn,
        ))
    }

    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    /// The ARN of this state machine's execution `name` (for example an order id).
    pub fn execution_arn(&self, name: &str) -> Option<String> {
        execution_arn(&self.state_machine_arn, name)
    }

    /// Executions, newest first, optionally of one status (`RUNNING`, `FAILED`, …),
    /// following pages until `limit` rows.
    pub async fn list_executions(
        &self,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionSummary>, InspectError> {
        let status = match status {
            Some(s) => {
                let upper = s.trim().to_ascii_uppercase();
                if !EXECUTION_STATUSES.contains(&upper.as_str()) {
                    return Err(InspectError::InvalidStatus(s.to_string()));
                }
                Some(ExecutionStatus::from(upper.as_str()))
            }
            None => None,
        };
        let mut rows = Vec::new();
        let mut token: Option<String> = None;
        while rows.len() < limit {
            let page_size = i32::try_from((limit - rows.len()).min(1000)).unwrap_or(1000);
            let out = self
                .client
                .list_executions()
                .state_machine_arn(&self.state_machine_arn)
                .set_status_filter(status.clone())
                .max_results(page_size)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| InspectError::Unavailable(describe(&e)))?;
            for e in out.executions() {
                rows.push(ExecutionSummary {
                    execution_arn: e.execution_arn().to_string(),
                    state_machine_arn: e.state_machine_arn().to_string(),
                    name: e.name().to_string(),
                    status: e.status().as_str().to_string(),
                    start_date: timestamp(e.start_date())?,
                    stop_date: e.stop_date().map(timestamp).transpose()?,
                });
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        rows.truncate(limit);
        Ok(rows)
    }

    pub async fn describe_execution(
        &self,
        execution_arn: &str,
    ) -> Result<ExecutionDescription, InspectError> {
        let out = self
            .client
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(DescribeExecutionError::ExecutionDoesNotExist(_)) => {
                    InspectError::NotFound(execution_arn.to_string())
                }
                _ => InspectError::Unavailable(describe(&e)),
            })?;
        Ok(ExecutionDescription {
            execution_arn: out.execution_arn().to_string(),
            state_machine_arn: out.state_machine_arn().to_string(),
            name: out.name().unwrap_or_default().to_string(),
            status: out.status().as_str().to_string(),
            start_date: timestamp(out.start_date())?,
            stop_date: out.stop_date().map(timestamp).transpose()?,
            input: out.input().map(str::to_string),
            output: out.output().map(str::to_string),
            error: out.error().map(str::to_string),
            cause: out.cause().map(str::to_string),
            redrive_count: out.redrive_count().unwrap_or(0),
            redrive_date: out.redrive_date().map(timestamp).transpose()?,
            redrive_status: out.redrive_status().map(|s| s.as_str().to_string()),
            redrive_status_reason: out.redrive_status_reason().map(str::to_string),
        })
    }

    /// StopExecution: a running execution ends `ABORTED` with `error` and `cause`; returns
    /// its stop date.
    pub async fn stop_execution(
        &self,
        execution_arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<Timestamp, InspectError> {
        let out = self
            .client
            .stop_execution()
            .execution_arn(execution_arn)
            .set_error(error)
            .set_cause(cause)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(StopExecutionError::ExecutionDoesNotExist(_)) => {
                    InspectError::NotFound(execution_arn.to_string())
                }
                Some(StopExecutionError::ValidationException(v)) => {
                    InspectError::Refused(refusal("Validation", v.message()))
                }
                _ => InspectError::Unavailable(describe(&e)),
            })?;
        timestamp(out.stop_date())
    }

    /// RedriveExecution: a failed, timed-out or aborted execution goes on from the state
    /// that did not finish (the service decides whether it may); returns the redrive date.
    pub async fn redrive_execution(&self, execution_arn: &str) -> Result<Timestamp, InspectError> {
        let out = self
            .client
            .redrive_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(RedriveExecutionError::ExecutionDoesNotExist(_)) => {
                    InspectError::NotFound(execution_arn.to_string())
                }
                Some(RedriveExecutionError::ExecutionNotRedrivable(v)) => {
                    InspectError::Refused(refusal("Execution Not Redrivable", v.message()))
                }
                Some(RedriveExecutionError::ExecutionLimitExceeded(v)) => {
                    InspectError::Refused(refusal("Execution Limit Exceeded", v.message()))
                }
                Some(RedriveExecutionError::ValidationException(v)) => {
                    InspectError::Refused(refusal("Validation", v.message()))
                }
                _ => InspectError::Unavailable(describe(&e)),
            })?;
        timestamp(out.redrive_date())
    }

    /// Every history event (all pages, oldest first), each as AWS's JSON renders it:
    /// `{"id", "previousEventId", "timestamp", "type", "<x>EventDetails": {…}}`, with the
    /// timestamp as RFC 3339 UTC with milliseconds (the local engine's rendering).
    pub async fn history(&self, execution_arn: &str) -> Result<Vec<Value>, InspectError> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let capture = RawBody::default();
            let out = self
                .client
                .get_execution_history()
                .execution_arn(execution_arn)
                .include_execution_data(true)
                .max_results(1000)
                .set_next_token(token.take())
                .customize()
                .interceptor(capture.clone())
                .send()
                .await
                .map_err(|e| match e.as_service_error() {
                    Some(GetExecutionHistoryError::ExecutionDoesNotExist(_)) => {
                        InspectError::NotFound(execution_arn.to_string())
                    }
                    _ => InspectError::Unavailable(describe(&e)),
                })?;
            let raw = capture
                .take()
                .ok_or_else(|| InspectError::Corrupt("history response had no body".into()))?;
            events.extend(history_events(&raw)?);
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(events),
            }
        }
    }
}

/// Keeps the raw JSON body of one response: the history events are returned exactly as
/// AWS sends them instead of being rebuilt field by field from the SDK's types.
#[derive(Debug, Clone, Default)]
struct RawBody(Arc<Mutex<Option<Vec<u8>>>>);

impl RawBody {
    fn take(&self) -> Option<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl Intercept for RawBody {
    fn name(&self) -> &'static str {
        "RawBody"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(bytes) = context.response().body().bytes() {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// The `events` of a raw GetExecutionHistory body, timestamps normalised from epoch
/// seconds (the wire format) to RFC 3339.
fn history_events(body: &[u8]) -> Result<Vec<Value>, InspectError> {
    let mut doc: Value = serde_json::from_slice(body)
        .map_err(|e| InspectError::Corrupt(format!("history is not JSON: {e}")))?;
    let events = match doc.get_mut("events").map(Value::take) {
        Some(Value::Array(events)) => events,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            return Err(InspectError::Corrupt(format!(
                "history `events` is not an array: {other}"
            )));
        }
    };
    events
        .into_iter()
        .map(|mut e| {
            if let Some(ts) = e.get_mut("timestamp") {
                *ts = Value::String(normalise_timestamp(ts)?);
            }
            Ok(e)
        })
        .collect()
}

fn normalise_timestamp(v: &Value) -> Result<String, InspectError> {
    let millis = match v {
        Value::Number(n) => n
            .as_f64()
            .map(|secs| (secs * 1000.0).round() as i64)
            .ok_or_else(|| InspectError::Corrupt(format!("timestamp {n}")))?,
        Value::String(s) => Timestamp::parse(s)
            .map(|t| t.millis())
            .or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .map(|secs| (secs * 1000.0).round() as i64)
            })
            .ok_or_else(|| InspectError::Corrupt(format!("timestamp `{s}`")))?,
        other => return Err(InspectError::Corrupt(format!("timestamp {other}"))),
    };
    Ok(Timestamp(millis).to_string())
}

/// `Title: the service's message` (its error code's words when it sent no message).
fn refusal(title: &str, message: Option<&str>) -> String {
    match message.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => format!("{title}: {m}"),
        None => title.to_string(),
    }
}

fn timestamp(dt: &DateTime) -> Result<Timestamp, InspectError> {
    dt.to_millis()
        .map(Timestamp)
        .map_err(|e| InspectError::Corrupt(format!("date {dt}: {e}")))
}

/// `arn:aws:states:<region>:<account>:stateMachine:<name>` → its execution `name`'s ARN.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> Option<String> {
    let (prefix, machine) = state_machine_arn.split_once(":stateMachine:")?;
    if machine.is_empty() || machine.contains(':') {
        return None;
    }
    Some(format!("{prefix}:execution:{machine}:{name}"))
}

/// The region a state machine ARN names, or why it is not one.
pub fn state_machine_region(state_machine_arn: &str) -> Result<&str, InspectError> {
    region_of_arn(state_machine_arn)
        .filter(|_| execution_arn(state_machine_arn, "x").is_some())
        .ok_or_else(|| InspectError::InvalidArn(state_machine_arn.to_string()))
}

/// The region of an ARN (`arn:<partition>:<service>:<region>:…`).
pub fn region_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    if parts.next()? != "arn" {
        return None;
    }
    let _partition = parts.next()?;
    let _service = parts.next()?;
    parts.next().filter(|r| !r.is_empty())
}

/// The AWS console page of one execution.
pub fn console_url(region: &str, execution_arn: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"
    )
}

/// [`console_url`] with the region taken from the execution ARN itself.
pub fn console_url_for(execution_arn: &str) -> Option<String> {
    region_of_arn(execution_arn).map(|r| console_url(r, execution_arn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MACHINE: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:orders";

    #[test]
    fn arns_and_console_urls() {
        let arn = execution_arn(MACHINE, "01JORDER").unwrap();
        assert_eq!(
            arn,
            "arn:aws:states:eu-west-1:123456789012:execution:orders:01JORDER"
        );
        assert_eq!(region_of_arn(&arn), Some("eu-west-1"));
        assert_eq!(
            console_url_for(&arn).unwrap(),
            "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/arn:aws:states:eu-west-1:123456789012:execution:orders:01JORDER"
        );
        assert_eq!(execution_arn("orders", "x"), None);
        assert_eq!(region_of_arn("orders"), None);
    }

    #[test]
    fn raw_history_keeps_aws_shape_with_iso_timestamps() {
        let body = json!({"events": [
            {"id": 1, "previousEventId": 0, "timestamp": 1.795706525123E9, "type": "ExecutionStarted",
             "executionStartedEventDetails": {"input": "{}", "inputDetails": {"truncated": false},
                                               "roleArn": "arn:aws:iam::123456789012:role/r"}},
            {"id": 2, "previousEventId": 1, "timestamp": 1795706526, "type": "PassStateEntered",
             "stateEnteredEventDetails": {"name": "P", "input": "{}"}}
        ], "nextToken": null});
        let events = history_events(body.to_string().as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["timestamp"], "2026-11-26T15:22:05.123Z");
        assert_eq!(events[1]["timestamp"], "2026-11-26T15:22:06.000Z");
        assert_eq!(events[0]["executionStartedEventDetails"]["input"], "{}");
        assert_eq!(events[1]["previousEventId"], 1);
        assert!(history_events(b"{}").unwrap().is_empty());
        assert!(matches!(
            history_events(b"nope"),
            Err(InspectError::Corrupt(_))
        ));
    }
}
