//! The fulfilment Lambda: the fulfilment queue's SQS batches in, `FulfilmentRequested`
//! events out; failed messages are reported one by one (and end in the DLQ).
// The Lambda runtime's service stack nests deep enough to need a higher limit.
#![recursion_limit = "256"]

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use orders_handlers::commands::Commands;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    orders_handlers::telemetry::init_json();
    let clients = orders_aws::AwsClients::load(orders_aws::TrustRoots::AmazonTrustServices).await?;
    let commands = Commands::live(clients.event_store_from_env()?);
    let commands = &commands;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(
            orders_handlers::fulfilment::handle(commands, event.payload).await,
        )
    }))
    .await
}
