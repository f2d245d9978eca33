//! Blue/green read-model generations: a rebuild into a fresh generation goes through the
//! same fold as the live projector, readers switch atomically, other projections stay.

#[path = "contract/mod.rs"]
mod contract;

use orders_domain::ports::{ApplyOutcome, EventStore, ReadModels};
use orders_domain::projection::ProjectionName;
use orders_local::store::read_models::{retired_checkpoint_name, retired_checkpoint_target};
use orders_local::store::{LocalStores, Targets};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_builds_aside_then_flips() {
    let dir = tempfile::tempdir().unwrap();
    let stores = LocalStores::open(dir.path()).unwrap();
    let rm = &stores.read_models;
    let id = contract::unique("order");
    let v1 = contract::place(&stores.events, &id).await;
    rm.apply(&v1, &v1.decode().unwrap()).await.unwrap();
    let v2 = contract::wrap(&id, 1, &[contract::cancelled()], contract::T0 + 1);
    stores
        .events
        .append(contract::request(&id, 1, v2.clone()))
        .await
        .unwrap();

    let live = rm.active_targets().await.unwrap();
    assert_eq!(
        live,
        Targets {
            orders: Some(1),
            daily_sales: Some(1)
        }
    );
    let g = rm.create_generation(ProjectionName::Orders).await.unwrap();
    assert_eq!(g, 2);
    assert_eq!(
        rm.active_targets().await.unwrap(),
        live,
        "building is not live"
    );

    // Replay the whole log into generation 2, in one transaction.
    let log = stores.events.read_from(0, 1000).await.unwrap();
    let batch = log
        .iter()
        .map(|(_, e)| (e.clone(), e.decode().unwrap()))
        .collect();
    let target = Targets::only(ProjectionName::Orders, g);
    let outcomes = rm.apply_many(Some(target), batch).await.unwrap();
    assert_eq!(
        outcomes,
        vec![Ok(ApplyOutcome::Applied), Ok(ApplyOutcome::Applied)]
    );
    // Readers still see generation 1 (which never got v2).
    assert_eq!(rm.order(&id).await.unwrap().unwrap().version, 1);

    // The live projector had done the first event: the retired generation keeps that.
    rm.set_checkpoint("projector", 1).await.unwrap();
    rm.activate_generation(ProjectionName::Orders, g, "projector")
        .await
        .unwrap();
    assert_eq!(rm.order(&id).await.unwrap().unwrap().version, 2);
    let retired = retired_checkpoint_name(ProjectionName::Orders, 1);
    assert_eq!(retired, "retired:orders=g1");
    assert_eq!(
        retired_checkpoint_target(&retired),
        Some((ProjectionName::Orders, 1))
    );
    assert_eq!(retired_checkpoint_target("replay:orders=g1"), None);
    assert_eq!(
        rm.checkpoints().await.unwrap(),
        vec![("projector".to_string(), 1), (retired.clone(), 1)]
    );
    assert_eq!(
        rm.active_targets().await.unwrap(),
        Targets {
            orders: Some(2),
            daily_sales: Some(1)
        }
    );
    // The live path now folds into generation 2; duplicates are still duplicates.
    assert_eq!(
        rm.apply(&v2[0], &v2[0].decode().unwrap()).await.unwrap(),
        ApplyOutcome::Applied,
        "daily sales (generation 1) had not seen v2 yet"
    );
    assert_eq!(
        rm.apply(&v2[0], &v2[0].decode().unwrap()).await.unwrap(),
        ApplyOutcome::Duplicate
    );

    let gens = rm.generations().await.unwrap();
    let status = |p, g| {
        gens.iter()
            .find(|x| x.projection == p && x.generation == g)
            .map(|x| x.status.clone())
    };
    assert_eq!(
        status(ProjectionName::Orders, 1).as_deref(),
        Some("retired")
    );
    assert_eq!(status(ProjectionName::Orders, 2).as_deref(), Some("active"));
    assert!(
        rm.drop_generation(ProjectionName::Orders, 2).await.is_err(),
        "the active generation cannot be dropped"
    );
    // Back to generation 1 and forth again: each retirement records where it stood, an
    // activated generation forgets its own.
    rm.set_checkpoint("projector", 2).await.unwrap();
    rm.activate_generation(ProjectionName::Orders, 1, "projector")
        .await
        .unwrap();
    assert_eq!(
        rm.checkpoints().await.unwrap(),
        vec![
            ("projector".to_string(), 2),
            (retired_checkpoint_name(ProjectionName::Orders, 2), 2)
        ]
    );
    rm.activate_generation(ProjectionName::Orders, 2, "projector")
        .await
        .unwrap();
    assert_eq!(
        rm.checkpoints().await.unwrap(),
        vec![("projector".to_string(), 2), (retired.clone(), 2)]
    );
    rm.drop_generation(ProjectionName::Orders, 1).await.unwrap();
    assert_eq!(rm.generations().await.unwrap().len(), 2);
    assert_eq!(
        rm.checkpoints().await.unwrap(),
        vec![("projector".to_string(), 2)],
        "a dropped generation's position goes with it"
    );

    // Survives a reopen.
    drop(stores);
    let stores = LocalStores::open(dir.path()).unwrap();
    assert_eq!(
        stores
            .read_models
            .order(&id)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
}

fn page_size(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap()
}

/// New read models get 16 KiB pages (an order's view is over a kilobyte) and the log keeps
/// 4 KiB; a data dir whose read models were made with 4 KiB pages (by an earlier version)
/// keeps them, and is still projected into and rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_use_large_pages_and_older_files_keep_theirs() {
    let fresh = tempfile::tempdir().unwrap();
    drop(LocalStores::open(fresh.path()).unwrap());
    assert_eq!(page_size(&fresh.path().join("read_models.db")), 16384);
    assert_eq!(page_size(&fresh.path().join("events.db")), 4096);

    let older = tempfile::tempdir().unwrap();
    let file = older.path().join("read_models.db");
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x);")
        .unwrap();
    let stores = LocalStores::open(older.path()).unwrap();
    let rm = &stores.read_models;
    let id = contract::unique("order");
    let placed = contract::place(&stores.events, &id).await;
    rm.apply(&placed, &placed.decode().unwrap()).await.unwrap();
    let g = rm.create_generation(ProjectionName::Orders).await.unwrap();
    let target = Targets::only(ProjectionName::Orders, g);
    let outcomes = rm
        .apply_many(
            Some(target),
            vec![(placed.clone(), placed.decode().unwrap())],
        )
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Ok(ApplyOutcome::Applied)]);
    rm.activate_generation(ProjectionName::Orders, g, "projector")
        .await
        .unwrap();
    assert_eq!(rm.order(&id).await.unwrap().unwrap().version, 1);
    drop(stores);
    assert_eq!(
        page_size(&file),
        4096,
        "an existing file keeps its page size"
    );
}

/// A data dir from before failed redrives were counted (schema version 1) opens with its
/// letters intact and counts from then on.
#[tokio::test]
async fn dead_letters_of_an_older_data_dir_gain_the_redrive_count() {
    let dir = tempfile::tempdir().unwrap();
    drop(LocalStores::open(dir.path()).unwrap());
    let file = dir.path().join("read_models.db");
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch(
            "ALTER TABLE dead_letters DROP COLUMN failed_redrives;
             ALTER TABLE dead_letters DROP COLUMN last_failed_at;
             ALTER TABLE dead_letters DROP COLUMN last_failure;
             INSERT INTO dead_letters (source, key, reason, record, parked_at)
                 VALUES ('stream:projector', '7', 'why', '{}', '2026-11-01T00:00:00.000Z');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    let stores = LocalStores::open(dir.path()).unwrap();
    let rm = &stores.read_models;
    let letter = rm.dead_letters(None, 0, 10).await.unwrap().remove(0);
    assert_eq!(
        (
            letter.key.as_str(),
            letter.failed_redrives,
            &letter.last_failure
        ),
        ("7", 0, &None)
    );
    rm.record_failed_redrive(letter.id, "still broken")
        .await
        .unwrap();
    rm.record_failed_redrive(letter.id, "broken again")
        .await
        .unwrap();
    let letter = rm.dead_letter(letter.id).await.unwrap().unwrap();
    assert_eq!(letter.failed_redrives, 2);
    assert_eq!(
        letter.last_failure.map(|(_, why)| why).as_deref(),
        Some("broken again")
    );
    assert_eq!(letter.reason, "why", "the reason it was parked for stays");
}
