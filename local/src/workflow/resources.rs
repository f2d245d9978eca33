//! The ASL task resources of the local runtime, with the request and response shapes of
//! the Step Functions service integrations, so the same ResultSelector works on AWS:
//! `sns:publish`, `sqs:sendMessage`, `aws-sdk:sesv2:sendEmail` and `lambda:invoke`.
//!
//! Each effect is stored together with its response under the task's invocation key in
//! one transaction: a task re-invoked after a crash (same key) returns the first response
//! and does nothing twice.

use super::db::{DbError, WorkflowDb};
use super::services::{self, Names, NewMail};
use asl::{Failure, ResourceRegistry, TaskContext, TaskFuture, TaskResource};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

pub const SNS_PUBLISH: &str = "arn:aws:states:::sns:publish";
pub const SQS_SEND: &str = "arn:aws:states:::sqs:sendMessage";
pub const SES_SEND: &str = "arn:aws:states:::aws-sdk:sesv2:sendEmail";
pub const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

/// An error a local Lambda function returns (Lambda's `errorType` / `errorMessage`).
#[derive(Debug, Clone)]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
}

/// An in-process Lambda function: payload in, payload out.
pub type LocalFunction =
    Arc<dyn Fn(Value) -> BoxFuture<Result<Value, FunctionError>> + Send + Sync>;

/// Test-only slowness: `ORDERS_TEST_TASK_DELAY_MS="sendEmail=3000,sns:publish=100"` delays
/// each task whose resource ARN contains the key, before its effect (so a test can kill
/// the process in the middle of an execution).
pub const DELAY_ENV: &str = "ORDERS_TEST_TASK_DELAY_MS";

pub fn parse_delays(spec: &str) -> Vec<(String, u64)> {
    spec.split(',')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Everything the resources share.
#[derive(Clone)]
pub struct Services {
    pub db: WorkflowDb,
    pub names: Names,
    /// Where `.eml` copies of sent mail go.
    pub mail_dir: Option<PathBuf>,
    pub functions: HashMap<String, LocalFunction>,
    pub delays: Vec<(String, u64)>,
    /// Wakes the queue poller when a message is sent.
    pub queue_notify: Arc<tokio::sync::Notify>,
}

fn now_ms() -> i64 {
    asl::clock::system_now_millis()
}

fn request_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// The SDK metadata every Step Functions service integration adds to a response.
fn sdk_metadata(m: &mut Map<String, Value>) {
    let rid = request_id();
    m.insert(
        "SdkHttpMetadata".into(),
        json!({"AllHttpHeaders": {"x-amzn-RequestId": [rid], "Content-Type": ["text/xml"]},
               "HttpHeaders": {"x-amzn-RequestId": rid, "Content-Type": "text/xml"},
               "HttpStatusCode": 200}),
    );
    m.insert("SdkResponseMetadata".into(), json!({"RequestId": rid}));
}

fn db_failure(service: &str, e: DbError) -> Failure {
    Failure::new(
        format!("{service}.SdkClientException"),
        format!("Unable to execute request: {e}"),
    )
}

fn str_param<'a>(p: &'a Value, key: &str, service: &str) -> Result<&'a str, Failure> {
    p.get(key).and_then(Value::as_str).ok_or_else(|| {
        Failure::new(
            format!("{service}.InvalidParameterException"),
            format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null (Service: {service}, Status Code: 400, Request ID: {})",
                lower_first(key),
                request_id()
            ),
        )
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn attrs(p: &Value) -> Map<String, Value> {
    p.get("MessageAttributes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

impl Services {
    async fn delay(&self, ctx: &TaskContext) {
        for (k, ms) in &self.delays {
            if ctx.resource.contains(k.as_str()) {
                tracing::info!(resource = %ctx.resource, ms, "test delay before the task's effect");
                tokio::time::sleep(Duration::from_millis(*ms)).await;
            }
        }
    }

    async fn sns_publish(&self, p: Value, ctx: TaskContext) -> Result<Value, Failure> {
        let topic = str_param(&p, "TopicArn", "SNS")?.to_string();
        let message = str_param(&p, "Message", "SNS")?.to_string();
        if topic != self.names.topic_arn() {
            return Err(Failure::new(
                "SNS.NotFoundException",
                format!(
                    "Topic does not exist (Service: Sns, Status Code: 404, Request ID: {})",
                    request_id()
                ),
            ));
        }
        let subject = p.get("Subject").and_then(Value::as_str).map(str::to_string);
        let attributes = attrs(&p);
        let key = ctx.invocation_key.clone();
        self.db
            .write(move |c| {
                if let Some(done) = services::effect(c, &key)? {
                    return Ok(done);
                }
                let id = services::publish(
                    c,
                    &topic,
                    subject.as_deref(),
                    &message,
                    &attributes,
                    now_ms(),
                )?;
                let mut m = Map::new();
                m.insert("MessageId".into(), json!(id));
                sdk_metadata(&mut m);
                let response = Value::Object(m);
                services::record_effect(c, &key, &response)?;
                Ok(response)
            })
            .await
            .map_err(|e| db_failure("SNS", e))
    }

    async fn sqs_send(&self, p: Value, ctx: TaskContext) -> Result<Value, Failure> {
        let url = str_param(&p, "QueueUrl", "SQS")?.to_string();
        let body = str_param(&p, "MessageBody", "SQS")?.to_string();
        let queue = services::queue_name_of(&url).to_string();
        let known = [&self.names.queue, &self.names.dead_letter_queue];
        if url != self.names.queue_url(&queue) || !known.contains(&&queue) {
            return Err(Failure::new(
                "SQS.QueueDoesNotExistException",
                format!(
                    "The specified queue does not exist. (Service: Sqs, Status Code: 400, Request ID: {})",
                    request_id()
                ),
            ));
        }
        let attributes = attrs(&p);
        let key = ctx.invocation_key.clone();
        self.db
            .write(move |c| {
                if let Some(done) = services::effect(c, &key)? {
                    return Ok(done);
                }
                let (id, md5) =
                    services::send_message(c, &queue, &body, &attributes, None, now_ms())?;
                let mut m = Map::new();
                m.insert("MD5OfMessageBody".into(), json!(md5));
                if let Some(a) = services::md5_of_attributes(&attributes) {
                    m.insert("MD5OfMessageAttributes".into(), json!(a));
                }
                m.insert("MessageId".into(), json!(id));
                sdk_metadata(&mut m);
                let response = Value::Object(m);
                services::record_effect(c, &key, &response)?;
                Ok(response)
            })
            .await
            .map_err(|e| db_failure("SQS", e))
            .inspect(|_| self.queue_notify.notify_one())
    }

    async fn ses_send(&self, p: Value, ctx: TaskContext) -> Result<Value, Failure> {
        let email = Email::from_params(&p)?;
        let key = ctx.invocation_key.clone();
        let region = self.names.region.to_ascii_uppercase();
        let sent = self
            .db
            .write(move |c| {
                if let Some(done) = services::effect(c, &key)? {
                    return Ok(Ok((done, None)));
                }
                if !services::is_verified(c, &email.from)? {
                    // SES checks the sender identity (sandbox: recipients too, not modelled).
                    return Ok(Err(Failure::new(
                        "SesV2.MessageRejectedException",
                        format!(
                            "Email address is not verified. The following identities failed the check in region {region}: {} (Service: SesV2, Status Code: 400, Request ID: {})",
                            email.from,
                            request_id()
                        ),
                    )));
                }
                let now = now_ms();
                let id = ses_message_id(now);
                let raw = email.render(&id, now);
                services::store_mail(
                    c,
                    &NewMail {
                        message_id: &id,
                        from: &email.from,
                        to: &email.to,
                        subject: &email.subject,
                        correlation_id: email.correlation_id.as_deref(),
                        raw: &raw,
                        sent_at: now,
                    },
                )?;
                let response = json!({ "MessageId": id });
                services::record_effect(c, &key, &response)?;
                Ok(Ok((response, Some((id, raw)))))
            })
            .await
            .map_err(|e| db_failure("SesV2", e))??;
        let (response, file) = sent;
        if let (Some(dir), Some((id, raw))) = (&self.mail_dir, file) {
            // A convenience copy; the database holds the message.
            let path = dir.join(format!("{id}.eml"));
            if let Err(e) = tokio::fs::write(&path, raw).await {
                tracing::warn!(path = %path.display(), error = %e, "could not write the .eml copy");
            }
        }
        Ok(response)
    }

    async fn lambda_invoke(&self, p: Value, ctx: TaskContext) -> Result<Value, Failure> {
        let name = str_param(&p, "FunctionName", "Lambda")?;
        // An ARN (optionally qualified), a partial ARN or a plain name.
        let short = match name.split_once(":function:") {
            Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
            None => name,
        }
        .to_string();
        let Some(function) = self.functions.get(&short).cloned() else {
            return Err(Failure::new(
                "Lambda.ResourceNotFoundException",
                format!(
                    "Function not found: {name} (Service: Lambda, Status Code: 404, Request ID: {})",
                    request_id()
                ),
            ));
        };
        let key = ctx.invocation_key.clone();
        let known = {
            let k = key.clone();
            self.db
                .read_async(move |c| services::effect(c, &k))
                .await
                .map_err(|e| db_failure("Lambda", e))?
        };
        if let Some(done) = known {
            return Ok(done);
        }
        let payload = p.get("Payload").cloned().unwrap_or(Value::Null);
        let out = function(payload).await.map_err(|e| {
            Failure::new(
                e.error_type.clone(),
                json!({"errorMessage": e.message, "errorType": e.error_type}).to_string(),
            )
        })?;
        let mut m = Map::new();
        m.insert("ExecutedVersion".into(), json!("$LATEST"));
        m.insert("Payload".into(), out);
        sdk_metadata(&mut m);
        m.insert("StatusCode".into(), json!(200));
        let response = Value::Object(m);
        let r = response.clone();
        // Not awaited: the function is idempotent itself; this only spares a second call.
        if let Err(e) = self.db.write_later("lambda effect", move |c| {
            services::record_effect(c, &key, &r)
        }) {
            tracing::warn!(error = %e, "could not record the invocation");
        }
        Ok(response)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Sns,
    Sqs,
    Ses,
    Lambda,
}

struct Resource {
    services: Arc<Services>,
    kind: Kind,
}

impl TaskResource for Resource {
    fn invoke(&self, parameters: Value, ctx: TaskContext) -> TaskFuture {
        let s = self.services.clone();
        let kind = self.kind;
        Box::pin(async move {
            let span = tracing::info_span!(
                "task",
                order_id = %ctx.execution_name,
                state = %ctx.state_name,
                attempt = ctx.attempt,
                correlation_id = tracing::field::Empty,
            );
            if let Some(c) = correlation_in(&parameters) {
                span.record("correlation_id", c);
            }
            let fut = async move {
                s.delay(&ctx).await;
                let out = match kind {
                    Kind::Sns => s.sns_publish(parameters, ctx).await,
                    Kind::Sqs => s.sqs_send(parameters, ctx).await,
                    Kind::Ses => s.ses_send(parameters, ctx).await,
                    Kind::Lambda => s.lambda_invoke(parameters, ctx).await,
                };
                if let Err(f) = &out {
                    tracing::warn!(error = %f.error, cause = f.cause.as_deref().unwrap_or(""), "task failed");
                }
                out
            };
            tracing::Instrument::instrument(fut, span).await
        })
    }
}

/// The correlation id in a task's parameters (message attribute, header or payload).
fn correlation_in(p: &Value) -> Option<&str> {
    p.pointer("/MessageAttributes/correlation_id/StringValue")
        .or_else(|| p.pointer("/Payload/correlation_id"))
        .and_then(Value::as_str)
        .or_else(|| {
            p.pointer("/Content/Simple/Headers")
                .and_then(Value::as_array)
                .and_then(|h| {
                    h.iter().find(|h| {
                        h.get("Name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.eq_ignore_ascii_case("X-Correlation-Id"))
                    })
                })
                .and_then(|h| h.get("Value"))
                .and_then(Value::as_str)
        })
}

/// The registry with the four resources.
pub fn registry(services: Services) -> ResourceRegistry {
    let services = Arc::new(services);
    let mut r = ResourceRegistry::new();
    for (arn, kind) in [
        (SNS_PUBLISH, Kind::Sns),
        (SQS_SEND, Kind::Sqs),
        (SES_SEND, Kind::Ses),
        (LAMBDA_INVOKE, Kind::Lambda),
    ] {
        r.register(
            arn,
            Arc::new(Resource {
                services: services.clone(),
                kind,
            }),
        );
    }
    r
}

/// SES message ids look like `0100018c7d1e2f3a-…-000000`.
fn ses_message_id(now: i64) -> String {
    let u = ulid::Ulid::new().to_string().to_lowercase();
    format!("0100{now:012x}-{}-{}-000000", &u[10..18], &u[18..26])
}

/// The parts of an SESv2 SendEmail (Simple content) request the mailbox uses.
struct Email {
    from: String,
    to: Vec<String>,
    cc: Vec<String>,
    subject: String,
    text: Option<String>,
    html: Option<String>,
    headers: Vec<(String, String)>,
    correlation_id: Option<String>,
}

fn bad_request(msg: &str) -> Failure {
    Failure::new(
        "SesV2.BadRequestException",
        format!(
            "{msg} (Service: SesV2, Status Code: 400, Request ID: {})",
            request_id()
        ),
    )
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Header values must stay on one line (no header injection through data).
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

impl Email {
    fn from_params(p: &Value) -> Result<Email, Failure> {
        let from = p
            .get("FromEmailAddress")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("FromEmailAddress is required"))?;
        let to = strings(p.pointer("/Destination/ToAddresses"));
        let cc = strings(p.pointer("/Destination/CcAddresses"));
        if to.is_empty()
            && cc.is_empty()
            && strings(p.pointer("/Destination/BccAddresses")).is_empty()
        {
            return Err(bad_request("Missing final '@domain'"));
        }
        let simple = p.pointer("/Content/Simple").ok_or_else(|| {
            bad_request("Content.Simple is required (Raw and Template are not supported locally)")
        })?;
        let subject = simple
            .pointer("/Subject/Data")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("Subject.Data is required"))?;
        let text = simple
            .pointer("/Body/Text/Data")
            .and_then(Value::as_str)
            .map(str::to_string);
        let html = simple
            .pointer("/Body/Html/Data")
            .and_then(Value::as_str)
            .map(str::to_string);
        if text.is_none() && html.is_none() {
            return Err(bad_request("Body needs Text or Html"));
        }
        let headers: Vec<(String, String)> = simple
            .get("Headers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|h| {
                        Some((
                            h.get("Name")?.as_str()?.to_string(),
                            h.get("Value")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let correlation_id = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-Correlation-Id"))
            .map(|(_, v)| v.clone());
        Ok(Email {
            from: from.to_string(),
            to,
            cc,
            subject: subject.to_string(),
            text,
            html,
            headers,
            correlation_id,
        })
    }

    /// The RFC 5322 message (MIME multipart/alternative when there are both bodies).
    fn render(&self, message_id: &str, now: i64) -> String {
        let mut out = String::new();
        let date = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
            .ok()
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc2822)
                    .ok()
            })
            .unwrap_or_default();
        let mut header = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(&one_line(value));
            out.push_str("\r\n");
        };
        header("From", &self.from);
        if !self.to.is_empty() {
            header("To", &self.to.join(", "));
        }
        if !self.cc.is_empty() {
            header("Cc", &self.cc.join(", "));
        }
        header("Subject", &encode_word(&self.subject));
        header("Date", &date);
        header("Message-ID", &format!("<{message_id}@email.amazonses.com>"));
        header("MIME-Version", "1.0");
        for (n, v) in &self.headers {
            let n: String = n
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != ':')
                .collect();
            if !n.is_empty() {
                header(&n, v);
            }
        }
        let boundary = format!("=_orders_{}", message_id.replace('-', ""));
        let text_part = |t: &str| {
            format!(
                "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                base64_lines(t)
            )
        };
        let html_part = |h: &str| {
            format!(
                "Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                base64_lines(h)
            )
        };
        match (&self.text, &self.html) {
            (Some(t), Some(h)) => {
                out.push_str(&format!(
                    "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
                ));
                out.push_str(&format!("--{boundary}\r\n{}\r\n", text_part(t)));
                out.push_str(&format!("--{boundary}\r\n{}\r\n", html_part(h)));
                out.push_str(&format!("--{boundary}--\r\n"));
            }
            (Some(t), None) => out.push_str(&text_part(t)),
            (None, Some(h)) => out.push_str(&html_part(h)),
            (None, None) => out.push_str("\r\n"),
        }
        out
    }
}

/// RFC 2047 encoded-word for a non-ASCII header value.
fn encode_word(s: &str) -> String {
    if s.is_ascii() {
        s.to_string()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }
}

/// Base64 in 76-character lines (RFC 2045).
fn base64_lines(s: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(s);
    let mut out = String::with_capacity(b.len() + b.len() / 76 * 2 + 2);
    for chunk in b.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push_str("\r\n");
    }
    out
}

/// Decodes the text/plain and text/html parts of a message [`Email::render`] wrote (for
/// `orders mail show`).
pub fn decode_parts(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in raw.split("\r\n--") {
        let Some((head, body)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let ct = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or("");
        if !ct.starts_with("text/") {
            continue;
        }
        let b64: String = body
            .lines()
            .take_while(|l| !l.starts_with("--"))
            .collect::<Vec<_>>()
            .concat();
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
            let kind = ct.split(';').next().unwrap_or(ct).to_string();
            out.push((kind, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}
