//! Emulator plumbing for the adapter tests. The emulators are started by
//! `scripts/with-emulators`, which exports `DYNAMODB_ENDPOINT` and `MOTO_ENDPOINT`; a test
//! that needs one fails with a clear message when it is missing, it never passes silently.
#![allow(dead_code)]

pub mod moto;
pub mod streams;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use orders_aws::clients::https_client;
use orders_aws::{AwsClients, Endpoints};
use std::sync::atomic::{AtomicU64, Ordering};

const HOW: &str = "run the emulator-backed tests inside `scripts/with-emulators`, \
                   e.g. `scripts/with-emulators cargo test -p orders-aws`";

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

/// A table, queue or execution name no other test (or earlier run) uses.
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

/// Clients for the emulators: dummy credentials, explicit endpoints, the production
/// HTTP client and configuration path otherwise.
pub async fn clients(endpoints: Endpoints) -> AwsClients {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .region(Region::new(region()))
        .credentials_provider(Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .load()
        .await;
    AwsClients::from_sdk_config(&sdk, &endpoints)
}

pub async fn dynamodb_clients() -> AwsClients {
    clients(Endpoints {
        dynamodb: Some(dynamodb_endpoint()),
        sfn: None,
    })
    .await
}

pub async fn moto_clients() -> AwsClients {
    clients(Endpoints {
        dynamodb: None,
        sfn: Some(moto_endpoint()),
    })
    .await
}
