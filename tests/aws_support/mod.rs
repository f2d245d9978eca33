//! Emulator plumbing for the root crate's AWS tests (`tests/aws_*.rs`), run inside
//! `scripts/with-emulators`. The endpoint, moto and DynamoDB Streams helpers are the adapter
//! tests' own (`aws/tests/support`), included by path; endpoints and credentials come from the
//! environment the script exports, through the production configuration load.
#![allow(dead_code)]

#[path = "../../aws/tests/support/emulators.rs"]
pub mod emulators;
#[path = "../../aws/tests/support/events.rs"]
pub mod events;
#[path = "../../aws/tests/support/moto.rs"]
pub mod moto;
#[path = "../../aws/tests/support/order_workflow.rs"]
pub mod order_workflow;
#[path = "../../aws/tests/support/streams.rs"]
pub mod streams;
pub mod workflow;

use orders_aws::{AwsClients, Endpoints, TrustRoots};

pub use emulators::{dynamodb_endpoint, moto_endpoint, region, unique};

/// DynamoDB on DynamoDB Local, Step Functions on moto.
pub async fn clients() -> AwsClients {
    AwsClients::load_with(
        &Endpoints {
            dynamodb: Some(dynamodb_endpoint()),
            sfn: Some(moto_endpoint()),
        },
        TrustRoots::Platform,
    )
    .await
    .expect("no AWS_CA_BUNDLE in the tests")
}
