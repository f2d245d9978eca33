//! The projector Lambda: the event table's DynamoDB stream in, read models and workflow
//! starts out; failed records come back as batch item failures.
// The Lambda runtime's service stack nests deep enough to need a higher limit.
#![recursion_limit = "256"]

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};
use orders_handlers::projector::Projector;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    orders_handlers::telemetry::init_json();
    let clients = orders_aws::AwsClients::load(orders_aws::TrustRoots::AmazonTrustServices).await?;
    let projector = Projector::live(
        clients.read_models_from_env()?,
        clients.workflow_starter_from_env()?,
    );
    let projector = &projector;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, lambda_runtime::Error>(projector.handle(event.payload).await)
    }))
    .await
}
