//! `orders projections status --aws`: a deployed stack's tables, as a replay leaves them.
//! The event table (and its `by_time` index), and every read-model table: the stack's own
//! (CloudFormation's), those replays made next to it (`<own>-g<N>`), and which of them
//! readers use. The tables readers left are the way back (`orders replay --aws
//! --switch-to`); they stay until `--drop-old` or a `DeleteTable`.

use crate::replay_aws::OWN_TABLE_OUTPUT;
use anyhow::Context;
use orders_aws::AwsClients;
use orders_aws::codec::GSI_BY_TIME;
use orders_aws::schema::{self, TableSummary};
use orders_domain::Timestamp;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct StackTables {
    pub stack: String,
    pub events: TableInfo,
    /// The event table's `by_time` index: its status, or `None` without one.
    pub by_time_index: Option<String>,
    /// The stack's own read-model table first, then the others by name.
    pub read_models: Vec<ReadModelTable>,
}

#[derive(Debug, Serialize)]
pub struct TableInfo {
    pub name: String,
    /// `ACTIVE`, `CREATING`, … as DynamoDB says.
    pub status: String,
    /// DynamoDB's item count (it refreshes it about every six hours).
    pub items: Option<i64>,
    pub created_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ReadModelTable {
    #[serde(flatten)]
    pub table: TableInfo,
    /// The stack's own (CloudFormation's), not a replay's.
    pub own: bool,
    /// The one readers use now.
    pub active: bool,
}

/// A replay's table next to `own`: `<own>-g<N>`.
fn is_generation_of(own: &str, name: &str) -> bool {
    name.strip_prefix(own)
        .and_then(|rest| rest.strip_prefix("-g"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn info(t: &TableSummary) -> TableInfo {
    TableInfo {
        name: t.name.clone(),
        status: t.status.clone(),
        items: t.items,
        created_at: t
            .created_at_ms
            .map(|ms| Timestamp::from_millis(ms).to_string()),
    }
}

/// The stack's tables (`stack` names it; its outputs name the tables).
pub async fn stack_tables(stack: &str) -> anyhow::Result<StackTables> {
    let sdk = crate::aws_access::sdk_config(true).await?;
    let outputs = crate::workflow_cmd::executions::stack_outputs(&sdk, stack).await?;
    let output = |key: &str, why: &str| {
        outputs
            .get(key)
            .cloned()
            .with_context(|| format!("stack {stack} has no {key} output{why}"))
    };
    let events = output("EventsTableName", "")?;
    let active = output("ReadModelsTableName", "")?;
    let own = output(
        OWN_TABLE_OUTPUT,
        ", so its own table cannot be told from a replay's: deploy the current template.yaml first",
    )?;
    let clients = AwsClients::from_sdk_config(&sdk, &orders_aws::Endpoints::default());
    let db = &clients.dynamodb;
    let mut names: Vec<String> = schema::table_names(db)
        .await?
        .into_iter()
        .filter(|n| is_generation_of(&own, n))
        .collect();
    names.sort();
    // The own table first; the active one even when a replay named it otherwise
    // (`--target-table`).
    names.insert(0, own.clone());
    if !names.contains(&active) {
        names.push(active.clone());
    }
    let mut read_models = vec![];
    for name in names {
        let t = schema::summary(db, &name).await?;
        read_models.push(ReadModelTable {
            table: info(&t),
            own: name == own,
            active: name == active,
        });
    }
    let e = schema::summary(db, &events).await?;
    let by_time_index = e
        .indexes
        .iter()
        .find(|(name, _)| name == GSI_BY_TIME)
        .map(|(_, status)| status.clone());
    Ok(StackTables {
        stack: stack.to_string(),
        events: info(&e),
        by_time_index,
        read_models,
    })
}

pub fn print(t: &StackTables) {
    let items = |i: &TableInfo| i.items.map_or("-".into(), |n| n.to_string());
    println!(
        "stack {}: event table {} ({}, {} items; by_time index {})",
        t.stack,
        t.events.name,
        t.events.status,
        items(&t.events),
        t.by_time_index.as_deref().unwrap_or("missing")
    );
    println!();
    println!(
        "{:<40} {:<9} {:>10}  {:<24}  role",
        "read-model table", "status", "items", "created"
    );
    for r in &t.read_models {
        let role = match (r.own, r.active) {
            (true, true) => "the stack's own; readers use it",
            (true, false) => "the stack's own",
            (false, true) => "a replay's; readers use it",
            (false, false) => "a replay's",
        };
        println!(
            "{:<40} {:<9} {:>10}  {:<24}  {role}",
            r.table.name,
            r.table.status,
            items(&r.table),
            r.table.created_at.as_deref().unwrap_or("-")
        );
    }
    if t.read_models.iter().any(|r| !r.active) {
        println!();
        println!(
            "item counts are DynamoDB's (refreshed about every six hours); to switch readers to another table: `orders replay --aws --stack {} --projection all --switch-to TABLE --since <when readers left it>` (the time each switch prints; without --since, a scan)",
            t.stack
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_table_is_the_own_name_and_a_generation_number() {
        assert!(is_generation_of("orders-views", "orders-views-g1"));
        assert!(is_generation_of("orders-views", "orders-views-g12"));
        assert!(!is_generation_of("orders-views", "orders-views"));
        assert!(!is_generation_of("orders-views", "orders-views-g"));
        assert!(!is_generation_of("orders-views", "orders-views-g1x"));
        assert!(!is_generation_of("orders-views", "orders-views2-g1"));
        assert!(!is_generation_of("orders-views", "other-orders-views-g1"));
    }
}
