//! Emulator plumbing for the root crate's AWS tests (`tests/aws_*.rs`), run inside
//! `scripts/with-emulators`. The moto and DynamoDB Streams helpers are the adapter tests'
//! own (`aws/tests/support`), included by path; endpoints and credentials come from the
//! environment the script exports, through the production configuration load.
#![allow(dead_code)]

#[path = "../../aws/tests/support/moto.rs"]
pub mod moto;
#[path = "../../aws/tests/support/streams.rs"]
pub mod streams;
pub mod workflow;

use orders_aws::{AwsClients, Endpoints};
use std::sync::atomic::{AtomicU64, Ordering};

const HOW: &str = "run these tests inside `scripts/with-emulators`, \
                   e.g. `scripts/with-emulators cargo test --test aws_differential`";

fn endpoint(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!("{var} is not set: this test needs {what}; {HOW}"),
    }
}

pub fn dynamodb_endpoint() -> String {
    endpoint("DYNAMODB_ENDPOINT", "DynamoDB Local")
}

pub fn moto_endpoint() -> String {
    endpoint("MOTO_ENDPOINT", "moto_server")
}

pub fn region() -> String {
    std::env::var("AWS_REGION")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_string())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// DynamoDB on DynamoDB Local, Step Functions on moto.
pub async fn clients() -> AwsClients {
    AwsClients::load_with(&Endpoints {
        dynamodb: Some(dynamodb_endpoint()),
        sfn: Some(moto_endpoint()),
    })
    .await
}
