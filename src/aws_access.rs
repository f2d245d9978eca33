//! The AWS configuration of the command line's `--aws` forms: the platform's trust roots
//! (or `AWS_CA_BUNDLE`), checked before the first call, so that a missing region or missing
//! credentials are one line saying what to set.

use orders_aws::clients::{check_access, load_sdk_config};
use orders_aws::{AwsClients, Endpoints, TrustRoots};

/// The loaded configuration; `region_needed` is false where an ARN names the region.
pub(crate) async fn sdk_config(region_needed: bool) -> anyhow::Result<aws_config::SdkConfig> {
    let roots = TrustRoots::from_env_or(TrustRoots::Platform)?;
    let sdk = load_sdk_config(&roots).await;
    check_access(&sdk, region_needed).await?;
    Ok(sdk)
}

pub(crate) async fn clients() -> anyhow::Result<AwsClients> {
    Ok(AwsClients::from_sdk_config(
        &sdk_config(true).await?,
        &Endpoints::default(),
    ))
}

/// One order's events from a deployed stack's event table (see [`event_table`]), and the
/// table's name for messages.
pub(crate) async fn order_events(
    order_id: &str,
    stack: Option<&str>,
) -> anyhow::Result<(Vec<orders_domain::EventEnvelope>, String)> {
    use anyhow::Context;
    let (clients, table) = event_table(stack).await?;
    let events = orders_aws::event_store::load_order(&clients.dynamodb, &table, order_id)
        .await
        .with_context(|| format!("reading {table}"))?;
    Ok((events, table))
}

/// A deployed stack's event table (`--stack`: its `EventsTableName` output; else the
/// functions' own `EVENTS_TABLE`): the clients, and the table's name.
pub(crate) async fn event_table(stack: Option<&str>) -> anyhow::Result<(AwsClients, String)> {
    let sdk = sdk_config(true).await?;
    let table = table(
        &sdk,
        stack,
        "EventsTableName",
        orders_aws::config::EVENTS_TABLE,
        "event table",
    )
    .await?;
    Ok((
        AwsClients::from_sdk_config(&sdk, &Endpoints::default()),
        table,
    ))
}

/// The read-model table readers use (`--stack`: its `ReadModelsTableName` output; else the
/// functions' own `READ_MODELS_TABLE`), and its name for messages.
pub(crate) async fn read_models(
    stack: Option<&str>,
) -> anyhow::Result<(orders_aws::read_models::DynamoReadModels, String)> {
    let sdk = sdk_config(true).await?;
    let table = table(
        &sdk,
        stack,
        "ReadModelsTableName",
        orders_aws::config::READ_MODELS_TABLE,
        "read-model table",
    )
    .await?;
    let clients = AwsClients::from_sdk_config(&sdk, &Endpoints::default());
    let reads = orders_aws::read_models::DynamoReadModels::new(clients.dynamodb, &table);
    Ok((reads, table))
}

/// A table of the deployed stack: the stack's `output`, or without a stack the functions'
/// own variable `var`.
async fn table(
    sdk: &aws_config::SdkConfig,
    stack: Option<&str>,
    output: &str,
    var: &str,
    what: &str,
) -> anyhow::Result<String> {
    match stack {
        Some(stack) => crate::workflow_cmd::executions::stack_output(sdk, stack, output).await,
        None => std::env::var(var)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{var} is not set (the DynamoDB {what} to read with --aws; or pass --stack NAME)"
                )
            }),
    }
}

/// `--stack` as the local forms see it. `ORDERS_STACK` (which docs/deploy.md exports) fills
/// it for every command, and must not turn a local run into an error; a `--stack` typed
/// without `--aws` is one.
pub(crate) fn stack_for(aws: bool, stack: Option<String>) -> anyhow::Result<Option<String>> {
    let stack = stack
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if aws {
        return Ok(stack);
    }
    let from_env = std::env::var("ORDERS_STACK")
        .ok()
        .map(|s| s.trim().to_string());
    anyhow::ensure!(
        stack.is_none() || stack == from_env,
        "--stack needs --aws (the stack is only read on AWS)"
    );
    Ok(None)
}
