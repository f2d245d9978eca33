//! The API Lambda: the same axum Router as `orders serve`, behind API Gateway HTTP API
//! (payload format 2.0, see `orders_handlers::gateway`).
// The Lambda runtime's service stack nests deep enough to need a higher limit.
#![recursion_limit = "256"]

use orders_handlers::api::{self, Api};
use orders_handlers::caller::CustomerAuth;
use orders_handlers::commands::Commands;
use orders_handlers::gateway;
use orders_handlers::links::ConsoleLinks;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    orders_handlers::telemetry::init_json();
    let clients = orders_aws::AwsClients::load(orders_aws::TrustRoots::AmazonTrustServices).await?;
    let api = Arc::new(Api {
        commands: Commands::live(clients.event_store_from_env()?),
        reads: clients.read_models_from_env()?,
        links: ConsoleLinks::Aws {
            state_machine_arn: orders_aws::WorkflowConfig::from_env()?.state_machine_arn,
        },
        customers: CustomerAuth::from_env(),
    });
    let router = api::router(api);
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        gateway::handle(router.clone(), event)
    }))
    .await
}
