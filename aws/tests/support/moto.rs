//! Just enough of SNS, SQS and SESv2 on moto to give the order workflow real resources,
//! spoken over plain HTTP (moto accepts unsigned requests; the credential scope in the
//! Authorization header names the service). Keeps three SDK crates out of the build.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const ACCOUNT: &str = "123456789012";

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request to moto; returns status and body.
pub fn request(
    method: &str,
    path: &str,
    service: &str,
    content_type: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let endpoint = super::moto_endpoint();
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = TcpStream::connect(&host).map_err(|e| format!("connect {host}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let region = super::region();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body.as_bytes()))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A query-protocol action (SNS, SQS); panics with moto's answer on failure.
pub fn query(service: &str, params: &[(&str, &str)]) -> String {
    let body: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let (status, text) = request(
        "POST",
        "/",
        service,
        "application/x-www-form-urlencoded",
        &body.join("&"),
    )
    .unwrap_or_else(|e| panic!("{service} {params:?}: {e}"));
    assert!(status < 300, "{service} {params:?}: HTTP {status}: {text}");
    text
}

/// The text of the first `<tag>…</tag>`.
pub fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(unescape(&xml[start..end]))
}

/// Every `<tag>…</tag>`.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(v) = xml_value(rest, tag) {
        out.push(v);
        let close = format!("</{tag}>");
        match rest.find(&close) {
            Some(i) => rest = &rest[i + close.len()..],
            None => break,
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A CloudFormation stack (one SNS topic) with one output.
pub fn create_stack_with_output(name: &str, key: &str, value: &str) {
    create_stack_with_outputs(name, &[(key, value)]);
}

/// A CloudFormation stack (one SNS topic) with these outputs.
pub fn create_stack_with_outputs(name: &str, outputs: &[(&str, &str)]) {
    let outputs: serde_json::Map<String, serde_json::Value> = outputs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!({ "Value": v })))
        .collect();
    let template = serde_json::json!({
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": outputs,
    })
    .to_string();
    query(
        "cloudformation",
        &[
            ("Action", "CreateStack"),
            ("StackName", name),
            ("TemplateBody", &template),
        ],
    );
}

pub fn create_topic(name: &str) -> String {
    let xml = query("sns", &[("Action", "CreateTopic"), ("Name", name)]);
    xml_value(&xml, "TopicArn").expect("TopicArn")
}

/// Returns the queue URL.
pub fn create_queue(name: &str) -> String {
    let xml = query("sqs", &[("Action", "CreateQueue"), ("QueueName", name)]);
    xml_value(&xml, "QueueUrl").expect("QueueUrl")
}

pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{}:{ACCOUNT}:{name}", super::region())
}

pub fn subscribe_queue(topic_arn: &str, queue_name: &str) {
    query(
        "sns",
        &[
            ("Action", "Subscribe"),
            ("TopicArn", topic_arn),
            ("Protocol", "sqs"),
            ("Endpoint", &queue_arn(queue_name)),
        ],
    );
}

/// The bodies of the messages waiting in a queue.
pub fn receive(queue_url: &str) -> Vec<String> {
    let xml = query(
        "sqs",
        &[
            ("Action", "ReceiveMessage"),
            ("QueueUrl", queue_url),
            ("MaxNumberOfMessages", "10"),
        ],
    );
    xml_values(&xml, "Body")
}

pub fn create_email_identity(address: &str) {
    let (status, text) = request(
        "POST",
        "/v2/email/identities",
        "ses",
        "application/json",
        &format!(r#"{{"EmailIdentity":"{address}"}}"#),
    )
    .unwrap_or_else(|e| panic!("CreateEmailIdentity: {e}"));
    assert!(status < 300, "CreateEmailIdentity: HTTP {status}: {text}");
}

/// moto's internal state (sent emails live here).
pub fn data_json() -> String {
    let (status, text) = request("GET", "/moto-api/data.json", "sts", "application/json", "")
        .unwrap_or_else(|e| panic!("/moto-api/data.json: {e}"));
    assert!(status < 300, "/moto-api/data.json: HTTP {status}");
    text
}
