//! Emulator plumbing for the adapter tests (endpoints and names: [`emulators`]).
#![allow(dead_code)]

pub mod emulators;
pub mod events;
pub mod moto;
pub mod order_workflow;
pub mod streams;

pub use emulators::{dynamodb_endpoint, moto_endpoint, region, unique};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use orders_aws::clients::https_client;
use orders_aws::{AwsClients, Endpoints, TrustRoots};

/// Clients for the emulators: dummy credentials, explicit endpoints, the production
/// HTTP client and configuration path otherwise.
pub async fn clients(endpoints: Endpoints) -> AwsClients {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client(&TrustRoots::Platform))
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
