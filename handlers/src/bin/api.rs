//! The API Lambda: the same axum Router as `orders serve`, behind API Gateway HTTP API.
// The Lambda runtime's service stack nests deep enough to need a higher limit.
#![recursion_limit = "256"]

use orders_handlers::api::{self, Api};
use orders_handlers::commands::Commands;
use orders_handlers::links::ConsoleLinks;
use orders_handlers::system::{SystemClock, UlidIds};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    orders_handlers::telemetry::init_json();
    let clients = orders_aws::AwsClients::load().await;
    let api = Arc::new(Api {
        commands: Commands::new(
            clients.event_store_from_env()?,
            Arc::new(SystemClock),
            Arc::new(UlidIds::new()),
        ),
        reads: clients.read_models_from_env()?,
        links: ConsoleLinks::Aws {
            state_machine_arn: orders_aws::WorkflowConfig::from_env()?.state_machine_arn,
        },
    });
    lambda_http::run(api::router(api)).await
}
