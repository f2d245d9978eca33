//! The port contract suite shared with the SQLite adapters (`local/tests/contract`), run
//! against the DynamoDB adapters on DynamoDB Local. Each check gets its own tables.

#[path = "../../local/tests/contract/mod.rs"]
mod contract;
// Both bring the one id helper (`local/tests/contract/unique.rs`): two copies of one
// function in this test binary, never two definitions to keep in step.
#[allow(clippy::duplicate_mod)]
mod support;

use orders_aws::{DynamoEventStore, DynamoReadModels, schema};
use std::sync::Arc;

async fn event_store() -> DynamoEventStore {
    let clients = support::dynamodb_clients().await;
    let (events, idem) = (support::unique("events"), support::unique("idempotency"));
    schema::create_events_table(&clients.dynamodb, &events)
        .await
        .expect("create the events table");
    schema::create_idempotency_table(&clients.dynamodb, &idem)
        .await
        .expect("create the idempotency table");
    DynamoEventStore::new(clients.dynamodb.clone(), &events, &idem)
}

async fn read_models() -> DynamoReadModels {
    let clients = support::dynamodb_clients().await;
    let table = support::unique("read-models");
    schema::create_read_models_table(&clients.dynamodb, &table)
        .await
        .expect("create the read-model table");
    DynamoReadModels::new(clients.dynamodb.clone(), &table)
}

macro_rules! event_store_checks {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            contract::$name(&event_store().await).await;
        }
    )*};
}

macro_rules! read_model_checks {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            contract::$name(&read_models().await).await;
        }
    )*};
}

event_store_checks!(
    appends_and_loads_in_version_order,
    unknown_order_loads_empty,
    stale_expected_version_is_a_conflict,
    idempotency_record_is_stored_with_the_append,
    duplicate_idempotency_key_appends_nothing,
    duplicate_key_takes_precedence_over_conflict,
    conflicting_append_stores_no_idempotency_record,
    more_than_100_events_are_refused,
);

read_model_checks!(
    apply_then_redeliver_is_a_duplicate,
    a_gap_is_refused_and_changes_nothing,
    an_event_before_placement_is_refused,
    customer_orders_page_newest_first,
    daily_sales_are_not_double_counted,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_exactly_one_wins() {
    contract::concurrent_writers_exactly_one_wins(Arc::new(event_store().await)).await;
}

/// The whole suites against one shared set of tables, twice for the read models (the
/// daily-sales counters are shared and compared before/after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suites_share_one_store() {
    contract::event_store_suite(Arc::new(event_store().await)).await;
    let rm = read_models().await;
    contract::read_models_suite(&rm).await;
    contract::read_models_suite(&rm).await;
}
