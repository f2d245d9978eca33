//! Read-model units of work: a batch's applies and its checkpoint commit together.

#[path = "contract/mod.rs"]
mod contract;

use orders_domain::ports::{ApplyOutcome, ReadModels};
use orders_local::store::LocalStores;

fn placed(id: &str) -> orders_domain::EventEnvelope {
    contract::wrap(
        id,
        0,
        &[contract::placed(id, "c-1", contract::money(5, "EUR"))],
        contract::T0,
    )
    .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_commits_applies_with_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let stores = LocalStores::open(dir.path()).unwrap();
    let rm = &stores.read_models;
    let (a, b) = (contract::unique("order"), contract::unique("order"));
    let (ea, eb) = (placed(&a), placed(&b));

    rm.begin_unit().await.unwrap();
    assert_eq!(
        rm.apply(&ea, &ea.decode().unwrap()).await.unwrap(),
        ApplyOutcome::Applied
    );
    // A failed apply inside the unit undoes only itself.
    let gap = contract::wrap(&b, 1, &[contract::cancelled()], contract::T0).remove(0);
    assert!(rm.apply(&gap, &gap.decode().unwrap()).await.is_err());
    assert_eq!(
        rm.apply(&eb, &eb.decode().unwrap()).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        rm.apply(&eb, &eb.decode().unwrap()).await.unwrap(),
        ApplyOutcome::Duplicate
    );
    // Not visible to readers before the unit commits.
    assert_eq!(rm.order(&a).await.unwrap(), None);
    rm.end_unit(Some(("projector", 2))).await.unwrap();

    assert!(rm.order(&a).await.unwrap().is_some());
    assert_eq!(rm.order(&b).await.unwrap().unwrap().version, 1);
    assert_eq!(rm.checkpoint("projector").await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_cut_short_by_a_crash_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = contract::unique("order");
    {
        let stores = LocalStores::open(dir.path()).unwrap();
        stores
            .read_models
            .set_checkpoint("projector", 7)
            .await
            .unwrap();
        stores.read_models.begin_unit().await.unwrap();
        let e = placed(&a);
        stores
            .read_models
            .apply(&e, &e.decode().unwrap())
            .await
            .unwrap();
        // The process dies here: no end_unit.
    }
    let stores = LocalStores::open(dir.path()).unwrap();
    assert_eq!(stores.read_models.order(&a).await.unwrap(), None);
    assert_eq!(stores.read_models.checkpoint("projector").await.unwrap(), 7);
    // And the store works normally afterwards.
    let e = placed(&a);
    assert_eq!(
        stores
            .read_models
            .apply(&e, &e.decode().unwrap())
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_do_not_nest_a_second_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let stores = LocalStores::open(dir.path()).unwrap();
    let rm = stores.read_models.clone();
    rm.begin_unit().await.unwrap();
    let other = rm.clone();
    let second = tokio::spawn(async move {
        other.begin_unit().await.unwrap();
        other.end_unit(Some(("second", 2))).await.unwrap();
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "the second unit waits");
    rm.end_unit(Some(("first", 1))).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rm.checkpoint("first").await.unwrap(), 1);
    assert_eq!(rm.checkpoint("second").await.unwrap(), 2);
}
