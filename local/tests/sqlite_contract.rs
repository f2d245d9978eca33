//! The port contract suite (`tests/contract`) run against the SQLite adapters, each
//! check in its own temporary data directory.

#[path = "contract/mod.rs"]
mod contract;

use orders_local::store::LocalStores;
use std::sync::Arc;

fn stores() -> (tempfile::TempDir, LocalStores) {
    let dir = tempfile::tempdir().unwrap();
    let stores = LocalStores::open(dir.path()).unwrap();
    (dir, stores)
}

macro_rules! event_store_checks {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_dir, stores) = stores();
            contract::$name(&stores.events).await;
        }
    )*};
}

macro_rules! read_model_checks {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_dir, stores) = stores();
            contract::$name(&stores.read_models).await;
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
    apply_batch_stops_at_the_first_failure,
    customer_orders_page_newest_first,
    daily_sales_are_not_double_counted,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_exactly_one_wins() {
    let (_dir, stores) = stores();
    contract::concurrent_writers_exactly_one_wins(Arc::new(stores.events)).await;
}

/// The whole suites against one shared store, as a persistent DynamoDB Local would run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suites_share_one_store() {
    let (_dir, stores) = stores();
    contract::event_store_suite(Arc::new(stores.events.clone())).await;
    contract::read_models_suite(&stores.read_models).await;
    contract::read_models_suite(&stores.read_models).await;
}
