//! The recorder Lambda: the workflow's last Task reports what each notification did; the
//! outcome is appended to the order's log through the domain.
// The Lambda runtime's service stack nests deep enough to need a higher limit.
#![recursion_limit = "256"]

use lambda_runtime::{LambdaEvent, service_fn};
use orders_handlers::commands::Commands;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    orders_handlers::telemetry::init_json();
    let clients = orders_aws::AwsClients::load(orders_aws::TrustRoots::AmazonTrustServices).await?;
    let commands = Commands::live(clients.event_store_from_env()?);
    let commands = &commands;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            orders_handlers::recorder::record(commands, event.payload).await
        },
    ))
    .await
}
