//! The tables the adapters expect, as code: the SAM template declares the same ones on
//! AWS; tests, and a blue/green read-model rebuild into a fresh table, create them here.

use crate::codec::{GSI_BY_TIME, KEY_AGGREGATE, KEY_VERSION, OCCURRED_AT, TIME_BUCKET};
use crate::dynamo::describe;
use crate::event_store::{KEY_IDEMPOTENCY, TTL_ATTRIBUTE};
use crate::read_models::{GSI_BY_CUSTOMER, GSI1_PK, GSI1_SK, PK, SK};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
    TimeToLiveSpecification,
};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table {table}: {reason}")]
pub struct SchemaError {
    pub table: String,
    pub reason: String,
}

fn err(table: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError {
        table: table.to_string(),
        reason: reason.into(),
    }
}

fn attr(name: &str, t: ScalarAttributeType) -> Result<AttributeDefinition, SchemaError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(t)
        .build()
        .map_err(|e| err(name, e.to_string()))
}

fn key(name: &str, t: KeyType) -> Result<KeySchemaElement, SchemaError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .map_err(|e| err(name, e.to_string()))
}

/// Events: `aggregate_id` (S) + `version` (N), on-demand, stream `NEW_IMAGE`, GSI
/// `by_time` on `time_bucket` + `occurred_at`, projection KEYS_ONLY.
pub async fn create_events_table(client: &Client, table: &str) -> Result<(), SchemaError> {
    let by_time = GlobalSecondaryIndex::builder()
        .index_name(GSI_BY_TIME)
        .key_schema(key(TIME_BUCKET, KeyType::Hash)?)
        .key_schema(key(OCCURRED_AT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(|e| err(table, e.to_string()))?;
    create_events_table_with(client, table, Some(by_time)).await
}

/// An events table as stacks deployed before the `by_time` index have it (a catch-up
/// then scans): for tests of that path.
pub async fn create_events_table_without_index(
    client: &Client,
    table: &str,
) -> Result<(), SchemaError> {
    create_events_table_with(client, table, None).await
}

async fn create_events_table_with(
    client: &Client,
    table: &str,
    index: Option<GlobalSecondaryIndex>,
) -> Result<(), SchemaError> {
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(KEY_AGGREGATE, ScalarAttributeType::S)?)
        .attribute_definitions(attr(KEY_VERSION, ScalarAttributeType::N)?)
        .key_schema(key(KEY_AGGREGATE, KeyType::Hash)?)
        .key_schema(key(KEY_VERSION, KeyType::Range)?);
    if let Some(index) = index {
        create = create
            .attribute_definitions(attr(TIME_BUCKET, ScalarAttributeType::S)?)
            .attribute_definitions(attr(OCCURRED_AT, ScalarAttributeType::S)?)
            .global_secondary_indexes(index);
    }
    create
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(|e| err(table, e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| err(table, describe(&e)))?;
    wait_active(client, table).await
}

/// Idempotency records: `idempotency_key` (S), TTL on `expires_at`.
pub async fn create_idempotency_table(client: &Client, table: &str) -> Result<(), SchemaError> {
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(KEY_IDEMPOTENCY, ScalarAttributeType::S)?)
        .key_schema(key(KEY_IDEMPOTENCY, KeyType::Hash)?)
        .send()
        .await
        .map_err(|e| err(table, describe(&e)))?;
    wait_active(client, table).await?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .map_err(|e| err(table, e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| err(table, describe(&e)))?;
    Ok(())
}

/// Read models: `pk` (S) + `sk` (S), GSI `by_customer` on `gsi1pk` + `gsi1sk`, projection ALL.
pub async fn create_read_models_table(client: &Client, table: &str) -> Result<(), SchemaError> {
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(GSI_BY_CUSTOMER)
        .key_schema(key(GSI1_PK, KeyType::Hash)?)
        .key_schema(key(GSI1_SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| err(table, e.to_string()))?;
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(PK, ScalarAttributeType::S)?)
        .attribute_definitions(attr(SK, ScalarAttributeType::S)?)
        .attribute_definitions(attr(GSI1_PK, ScalarAttributeType::S)?)
        .attribute_definitions(attr(GSI1_SK, ScalarAttributeType::S)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(gsi)
        .send()
        .await
        .map_err(|e| err(table, describe(&e)))?;
    wait_active(client, table).await
}

/// Waits (up to two minutes) until the table and its indexes are ACTIVE.
pub async fn wait_active(client: &Client, table: &str) -> Result<(), SchemaError> {
    for _ in 0..240 {
        let t = summary(client, table).await?;
        // An index DynamoDB gives no status for counts as ACTIVE.
        let indexes_active = t
            .indexes
            .iter()
            .all(|(_, s)| s == TableStatus::Active.as_str() || s == UNKNOWN);
        if t.status == TableStatus::Active.as_str() && indexes_active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(err(table, "did not become ACTIVE within two minutes"))
}

/// The status of a table or index DynamoDB gave none for.
pub const UNKNOWN: &str = "UNKNOWN";

/// What DynamoDB says of a table, as plain data (for the CLI's listings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    pub name: String,
    /// `ACTIVE`, `CREATING`, … (`UNKNOWN` if DynamoDB said nothing).
    pub status: String,
    /// DynamoDB's item count (refreshed about every six hours on AWS).
    pub items: Option<i64>,
    pub created_at_ms: Option<i64>,
    /// Each global secondary index and its status.
    pub indexes: Vec<(String, String)>,
}

/// DescribeTable, summarised.
pub async fn summary(client: &Client, table: &str) -> Result<TableSummary, SchemaError> {
    let out = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| err(table, describe(&e)))?;
    let t = out
        .table()
        .ok_or_else(|| err(table, "DynamoDB described no table"))?;
    let status = |s: Option<&str>| s.unwrap_or(UNKNOWN).to_string();
    Ok(TableSummary {
        name: table.to_string(),
        status: status(t.table_status().map(|s| s.as_str())),
        items: t.item_count(),
        created_at_ms: t.creation_date_time().and_then(|d| d.to_millis().ok()),
        indexes: t
            .global_secondary_indexes()
            .iter()
            .map(|i| {
                (
                    i.index_name().unwrap_or_default().to_string(),
                    status(i.index_status().map(|s| s.as_str())),
                )
            })
            .collect(),
    })
}

/// Every table's name (ListTables, all pages).
pub async fn table_names(client: &Client) -> Result<Vec<String>, SchemaError> {
    let mut names = vec![];
    let mut start: Option<String> = None;
    loop {
        let page = client
            .list_tables()
            .set_exclusive_start_table_name(start.take())
            .send()
            .await
            .map_err(|e| err("(all)", describe(&e)))?;
        names.extend(page.table_names().iter().cloned());
        match page.last_evaluated_table_name() {
            Some(last) => start = Some(last.to_string()),
            None => return Ok(names),
        }
    }
}
