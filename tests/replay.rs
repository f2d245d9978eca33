//! Replaying the local log into fresh generations: the same views as the live path,
//! resumable, refusing bad input, never firing a side effect.

mod common;

use common::*;
use orders::replay::{self, ReplayError, ReplayOptions, ReplayProgress, ReplayStep};
use orders_domain::ports::{AppendRequest, EventStore, ReadModels};
use orders_domain::projection::ProjectionName;
use orders_local::store::{LocalStores, SystemClock, UlidIds};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn opts(projections: &[ProjectionName]) -> ReplayOptions {
    ReplayOptions {
        projections: projections.to_vec(),
        resume: false,
        drop_old: false,
        skip_undecodable: false,
        chunk: 7,
    }
}

/// Everything readers can see, as JSON.
async fn snapshot(stores: &LocalStores, ids: &[String]) -> Value {
    let mut views = vec![];
    for id in ids {
        views.push(
            serde_json::to_value(stores.read_models.order(id).await.expect("read")).expect("json"),
        );
    }
    let mut customers = vec![];
    for c in 0..5 {
        let page = stores
            .read_models
            .customer_orders(&format!("c-{c}"), 100, None)
            .await
            .expect("page");
        customers.push(serde_json::to_value(page.items).expect("json"));
    }
    let sales =
        serde_json::to_value(stores.read_models.daily_sales().await.expect("sales")).expect("json");
    json!({"views": views, "customers": customers, "sales": sales})
}

/// The progress that says every one of `events` is replayed, no step pending.
fn all_read(events: u64) -> ReplayProgress {
    ReplayProgress {
        done: events,
        total: events,
        step: None,
    }
}

/// Seeds a history through the store and projects it live.
async fn seeded(orders: u64) -> (tempfile::TempDir, LocalStores, Vec<String>) {
    let dir = tempfile::tempdir().expect("dir");
    let stores = LocalStores::open(dir.path()).expect("open");
    seed_and_project(&stores, orders).await;
    let ids = order_ids(&stores).await;
    (dir, stores, ids)
}

#[tokio::test]
async fn a_replay_rebuilds_the_same_views_into_a_new_generation_and_switches() {
    let (_dir, stores, ids) = seeded(60).await;
    let live = snapshot(&stores, &ids).await;
    let steps = std::sync::Mutex::new(vec![]);
    let summary = replay::replay(
        &stores,
        &opts(&ProjectionName::ALL),
        &AtomicBool::new(false),
        |step| steps.lock().expect("steps").push(step),
    )
    .await
    .expect("replay");
    assert_eq!(summary.orders_rebuilt, 60);
    let events = stores.events.count().await.expect("count");
    assert_eq!(summary.events_read, events);
    // Progress: events replayed, never backwards, ending with every event.
    let steps = steps.into_inner().expect("steps");
    assert!(
        steps
            .windows(2)
            .all(|w| w[0].done <= w[1].done && w[0].done <= w[0].total),
        "{steps:?}"
    );
    assert_eq!(steps.last(), Some(&all_read(events)));
    // Past the events, the steps are named (building the index may be too quick to be
    // seen here); nothing was dropped.
    assert!(
        steps
            .iter()
            .any(|p| p.step == Some(ReplayStep::Switching) && p.done == events),
        "{steps:?}"
    );
    assert!(
        steps.iter().all(|p| p.step.is_none() || p.done == events)
            && !steps
                .iter()
                .any(|p| p.step == Some(ReplayStep::DroppingOld)),
        "{steps:?}"
    );
    assert_eq!(summary.switches.len(), 2);
    assert!(
        summary
            .switches
            .iter()
            .all(|s| s.from == Some(1) && s.to == 2 && !s.dropped_old)
    );
    assert_eq!(
        snapshot(&stores, &ids).await,
        live,
        "replayed views equal the live ones"
    );

    // The old generation stays until --drop-old.
    let gens = stores.read_models.generations().await.expect("gens");
    assert_eq!(gens.iter().filter(|g| g.status == "retired").count(), 2);
    let mut o = opts(&[ProjectionName::DailySales]);
    o.drop_old = true;
    let steps = std::sync::Mutex::new(vec![]);
    let s = replay::replay(&stores, &o, &AtomicBool::new(false), |p| {
        steps.lock().expect("steps").push(p)
    })
    .await
    .expect("replay");
    assert!(s.switches[0].dropped_old);
    // Dropping is said, after the switch; the last word is the count again.
    let steps = steps.into_inner().expect("steps");
    let at = |step| steps.iter().position(|p| p.step == Some(step));
    assert!(
        at(ReplayStep::Switching) < at(ReplayStep::DroppingOld)
            && at(ReplayStep::Switching).is_some(),
        "{steps:?}"
    );
    assert_eq!(steps.last(), Some(&all_read(events)));
    let gens = stores.read_models.generations().await.expect("gens");
    let sales: Vec<_> = gens
        .iter()
        .filter(|g| g.projection == ProjectionName::DailySales)
        .collect();
    assert_eq!(sales.len(), 1, "{gens:?}");
    assert_eq!(sales[0].generation, 3);
    assert_eq!(snapshot(&stores, &ids).await, live);
}

/// Appends `orders` more seeded orders and projects them as the live projector does,
/// without moving its checkpoint (this projection is not the tailer's).
async fn seed_and_project(stores: &LocalStores, orders: u64) {
    let after = stores.events.last_seq().await.expect("head");
    orders::seed::seed(
        stores.events.clone(),
        Arc::new(UlidIds::new()),
        orders_domain::ports::Clock::now(&SystemClock),
        orders,
        4,
        |_| {},
    )
    .await
    .expect("seed");
    let projector = orders_handlers::projector::Projector::replay(stores.read_models.clone());
    for (_, e) in stores
        .events
        .read_from(after, usize::MAX)
        .await
        .expect("read")
    {
        projector
            .process_envelope(&e)
            .await
            .expect("live projection");
    }
}

/// [`seed_and_project`], with the live projector's checkpoint moved after them.
async fn more_live_orders(stores: &LocalStores, orders: u64) {
    seed_and_project(stores, orders).await;
    live_at_head(stores).await;
}

/// Puts the live projector's checkpoint at the log's head (as if it had applied, or
/// parked, everything); returns the head.
async fn live_at_head(stores: &LocalStores) -> u64 {
    let head = stores.events.last_seq().await.expect("head");
    stores
        .read_models
        .set_checkpoint("projector", head)
        .await
        .expect("checkpoint");
    head
}

/// Every order's id in the log.
async fn order_ids(stores: &LocalStores) -> Vec<String> {
    let mut ids: Vec<String> = stores
        .events
        .read_from(0, usize::MAX)
        .await
        .expect("read")
        .into_iter()
        .map(|(_, e)| e.aggregate_id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test]
async fn switching_back_catches_a_retired_generation_up_and_switches_readers() {
    let (_dir, stores, _) = seeded(40).await;
    let rm = &stores.read_models;
    // The live projector stands at the log's head.
    let retired_at = stores.events.last_seq().await.expect("head");
    rm.set_checkpoint("projector", retired_at)
        .await
        .expect("checkpoint");
    let no_stop = AtomicBool::new(false);
    replay::replay(&stores, &opts(&ProjectionName::ALL), &no_stop, |_| {})
        .await
        .expect("replay");
    // Generation 2 is live; generation 1 of both stopped where the projector stood.
    more_live_orders(&stores, 15).await;
    let ids = order_ids(&stores).await;
    assert_eq!(ids.len(), 55);
    let live = snapshot(&stores, &ids).await;
    let head = stores.events.last_seq().await.expect("head");

    let plan = replay::plan_switch_back(&stores, ProjectionName::Orders, 1)
        .await
        .expect("plan");
    assert_eq!(plan.start, replay::CatchUpStart::Retired(retired_at));
    assert_eq!((plan.from, plan.to, plan.head), (Some(2), 1, head));
    let steps = std::sync::Mutex::new(vec![]);
    let back = replay::switch_back(&stores, ProjectionName::Orders, 1, false, &no_stop, |p| {
        steps.lock().expect("steps").push(p)
    })
    .await
    .expect("switch back");
    assert_eq!(back.events_read, head - retired_at, "only what it lacked");
    assert_eq!(
        steps.into_inner().expect("steps").last(),
        Some(&all_read(head - retired_at))
    );
    assert_eq!(
        rm.active_targets().await.expect("targets"),
        orders_local::store::Targets {
            orders: Some(1),
            daily_sales: Some(2)
        },
        "the other projection stays where it is"
    );
    assert_eq!(
        snapshot(&stores, &ids).await,
        live,
        "the generation switched back to equals the one it replaced"
    );

    // And forth again: generation 2 was retired where the projector stood, so it lacks
    // nothing and reads nothing.
    more_live_orders(&stores, 5).await;
    let ids = order_ids(&stores).await;
    let live = snapshot(&stores, &ids).await;
    let plan = replay::plan_switch_back(&stores, ProjectionName::Orders, 2)
        .await
        .expect("plan");
    assert_eq!(plan.start, replay::CatchUpStart::Retired(head));
    let forth = replay::switch_back(&stores, ProjectionName::Orders, 2, false, &no_stop, |_| {})
        .await
        .expect("switch forth");
    let now = stores.events.last_seq().await.expect("head");
    assert_eq!(forth.events_read, now - head);
    assert_eq!(snapshot(&stores, &ids).await, live);

    // A record the live projector parked is missing from the generation it was parked
    // under: the catch-up starts before it.
    rm.park(
        orders_local::store::NewDeadLetter {
            source: "stream:projector".into(),
            key: orders_local::tailer::sequence_number(7),
            reason: "test".into(),
            record: "{}".into(),
        },
        None,
    )
    .await
    .expect("park");
    let plan = replay::plan_switch_back(&stores, ProjectionName::Orders, 1)
        .await
        .expect("plan");
    assert_eq!(plan.start, replay::CatchUpStart::Parked(7));
    assert_eq!(plan.start.after(), 6);
    // One retired before positions were recorded is caught up from the start of the log
    // (the version guard skips what it has).
    rm.delete_checkpoint("retired:orders=g1")
        .await
        .expect("forget the position");
    let plan = replay::plan_switch_back(&stores, ProjectionName::Orders, 1)
        .await
        .expect("plan");
    assert_eq!(plan.start, replay::CatchUpStart::Unrecorded);
    let back = replay::switch_back(&stores, ProjectionName::Orders, 1, false, &no_stop, |_| {})
        .await
        .expect("switch back from the start");
    assert_eq!(back.events_read, now);
    assert_eq!(snapshot(&stores, &ids).await, live);

    for (generation, says) in [(1, "already the active one"), (9, "has no generation 9")] {
        let refused = replay::switch_back(
            &stores,
            ProjectionName::Orders,
            generation,
            false,
            &no_stop,
            |_| {},
        )
        .await
        .expect_err("refused");
        assert!(refused.to_string().contains(says), "{refused}");
    }
    let building = rm
        .create_generation(ProjectionName::DailySales)
        .await
        .expect("a generation a replay would build");
    let refused = replay::switch_back(
        &stores,
        ProjectionName::DailySales,
        building,
        false,
        &no_stop,
        |_| {},
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(refused, ReplayError::Unfinished { .. }),
        "{refused}"
    );
}

#[tokio::test]
async fn an_interrupted_replay_switches_nothing_and_resumes() {
    let (_dir, stores, ids) = seeded(30).await;
    let live = snapshot(&stores, &ids).await;
    let stop = AtomicBool::new(true);
    let err = replay::replay(&stores, &opts(&[ProjectionName::Orders]), &stop, |_| {})
        .await
        .expect_err("stopped after the first chunk");
    assert!(matches!(err, ReplayError::Stopped));
    let active = stores.read_models.active_targets().await.expect("targets");
    assert_eq!(
        active.orders,
        Some(1),
        "readers still on the old generation"
    );

    // Without --resume the interrupted build is not silently abandoned.
    let again = replay::replay(
        &stores,
        &opts(&[ProjectionName::Orders]),
        &AtomicBool::new(false),
        |_| {},
    )
    .await;
    assert!(matches!(
        again,
        Err(ReplayError::Interrupted { generation: 2, .. })
    ));

    let mut o = opts(&[ProjectionName::Orders]);
    o.resume = true;
    let s = replay::replay(&stores, &o, &AtomicBool::new(false), |_| {})
        .await
        .expect("resumed");
    assert_eq!(s.switches[0].to, 2);
    assert_eq!(
        stores
            .read_models
            .active_targets()
            .await
            .expect("targets")
            .orders,
        Some(2)
    );
    assert_eq!(snapshot(&stores, &ids).await, live);
}

#[tokio::test]
async fn a_replay_stopped_in_its_bulk_phase_leaves_no_checkpoint_and_resumes_from_the_start() {
    // Enough events for several batches, so the stop lands inside the bulk phase.
    let (_dir, stores, ids) = seeded(700).await;
    let live = snapshot(&stores, &ids).await;
    let err = replay::replay(
        &stores,
        &opts(&ProjectionName::ALL),
        &AtomicBool::new(true),
        |_| {},
    )
    .await
    .expect_err("stopped");
    assert!(matches!(err, ReplayError::Stopped), "{err:?}");
    let generations = stores.read_models.generations().await.expect("generations");
    let building: Vec<_> = generations
        .iter()
        .filter(|g| g.status == "building")
        .collect();
    assert_eq!(building.len(), 2, "{generations:?}");
    let total = stores.events.count().await.expect("count");
    let orders_written = stores
        .read_models
        .count_orders(ProjectionName::Orders, 2)
        .await
        .expect("count");
    assert!(
        orders_written < ids.len() as u64,
        "stopped before the last rows ({orders_written} of {})",
        ids.len()
    );

    let mut o = opts(&ProjectionName::ALL);
    o.resume = true;
    let first = std::sync::Mutex::new(None);
    let s = replay::replay(&stores, &o, &AtomicBool::new(false), |p| {
        first.lock().expect("first").get_or_insert(p);
    })
    .await
    .expect("resumed");
    // No checkpoint was left: the resumed run starts from the first event.
    assert_eq!(
        first.into_inner().expect("first"),
        Some(ReplayProgress {
            done: 0,
            total,
            step: None
        })
    );
    assert_eq!(s.events_read, total);
    assert_eq!(s.orders_rebuilt, ids.len() as u64);
    assert_eq!(snapshot(&stores, &ids).await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_during_a_replay_are_caught_up_before_the_switch() {
    let (_dir, stores, mut ids) = seeded(20).await;
    let projector = orders_handlers::projector::Projector::replay(stores.read_models.clone());
    let events = stores.events.clone();
    let ids_ref = std::sync::Mutex::new(Vec::new());
    // Append (and project live) a new order from inside the progress callback, i.e. after
    // the bulk phase took its snapshot of the log and before the switch.
    let appended = AtomicBool::new(false);
    let summary = replay::replay(
        &stores,
        &opts(&ProjectionName::ALL),
        &AtomicBool::new(false),
        |step| {
            let ReplayProgress { done, .. } = step;
            if done > 0 && !appended.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let history = orders::seed::history(
                    999,
                    &UlidIds::new(),
                    orders_domain::Timestamp(1_795_706_525_000),
                )
                .expect("history");
                ids_ref
                    .lock()
                    .expect("lock")
                    .push(history[0].aggregate_id.clone());
                let handle = tokio::runtime::Handle::current();
                let events = events.clone();
                std::thread::scope(|s| {
                    s.spawn(|| {
                        handle.block_on(async {
                            events
                                .append(AppendRequest {
                                    aggregate_id: history[0].aggregate_id.clone(),
                                    expected_version: 0,
                                    events: history.clone(),
                                    idempotency: None,
                                })
                                .await
                                .expect("append");
                        })
                    });
                });
            }
        },
    )
    .await
    .expect("replay");
    ids.extend(ids_ref.into_inner().expect("lock"));
    ids.sort();
    assert_eq!(summary.orders_rebuilt, 21);
    // The live projector catches up on the new order into the now-active generation:
    // everything it applies is a duplicate or the next version, never a gap.
    for (_, e) in stores.events.read_from(0, usize::MAX).await.expect("read") {
        projector
            .process_envelope(&e)
            .await
            .expect("live projection after the switch");
    }
    let after = snapshot(&stores, &ids).await;
    assert!(
        after["views"]
            .as_array()
            .expect("views")
            .iter()
            .all(|v| !v.is_null())
    );
}

#[tokio::test]
async fn the_seed_interleaves_orders_as_a_live_log_does() {
    let dir = tempfile::tempdir().expect("dir");
    let stores = LocalStores::open(dir.path()).expect("open");
    let seeded = orders::seed::seed(
        stores.events.clone(),
        Arc::new(UlidIds::new()),
        orders_domain::ports::Clock::now(&SystemClock),
        50,
        4,
        |_| {},
    )
    .await
    .expect("seed");
    let log = stores.events.read_from(0, usize::MAX).await.expect("read");
    assert_eq!(log.len() as u64, seeded.events);
    // Every order's first event comes before any order's second one...
    let firsts = log.iter().take_while(|(_, e)| e.version == 1).count();
    assert_eq!(firsts, 50, "the 50 placements first");
    // ...and each order's events are in version order without a gap.
    let mut last: std::collections::HashMap<&str, u64> = Default::default();
    for (_, e) in &log {
        let before = last.insert(e.aggregate_id.as_str(), e.version).unwrap_or(0);
        assert_eq!(e.version, before + 1, "{}", e.aggregate_id);
    }
    assert_eq!(last.len(), 50);
}

#[tokio::test]
async fn order_placed_v1_events_replay_through_the_upcaster() {
    let dir = tempfile::tempdir().expect("dir");
    let stores = LocalStores::open(dir.path()).expect("open");
    let mut history = orders::seed::history(
        1,
        &UlidIds::new(),
        orders_domain::Timestamp(1_795_706_525_000),
    )
    .expect("history");
    // Store the placement as an old client wrote it: schema 1, no `placed_via`.
    history[0].schema_version = 1;
    if let Value::Object(m) = &mut history[0].payload {
        m.remove("placed_via");
    }
    let id = history[0].aggregate_id.clone();
    stores
        .events
        .append(AppendRequest {
            aggregate_id: id.clone(),
            expected_version: 0,
            events: history,
            idempotency: None,
        })
        .await
        .expect("append");
    replay::replay(
        &stores,
        &opts(&ProjectionName::ALL),
        &AtomicBool::new(false),
        |_| {},
    )
    .await
    .expect("replay");
    assert!(stores.read_models.order(&id).await.expect("read").is_some());
    let stored = stores.events.load(&id).await.expect("load");
    assert_eq!(
        stored[0].schema_version, 1,
        "stored events are never rewritten"
    );
}

/// The bulk phase folds orders on several workers; the order-id order it reads in decides
/// which bad event stops a replay (the same one on every run), and skipped ones are
/// parked in log order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_bad_event_in_order_id_order_stops_a_parallel_replay_and_skips_park_in_log_order()
{
    let (_dir, stores, ids) = seeded(40).await;
    let live = snapshot(&stores, &ids).await;
    let template = stores.events.load(&ids[0]).await.expect("load").remove(0);
    // Several orders, so the bad events land in different batches; appended last id
    // first, so log order and order-id order (the bulk phase's) disagree.
    for i in (0..6).rev() {
        append_undecodable(&stores.events, &template, &format!("broken-{i}")).await;
    }
    let stops = replay::replay(
        &stores,
        &opts(&ProjectionName::ALL),
        &AtomicBool::new(false),
        |_| {},
    )
    .await;
    match stops {
        Err(ReplayError::Undecodable { key, reason }) => {
            assert!(key.starts_with("broken-0#v1 "), "{key}");
            assert!(reason.contains("OrderTeleported"), "{reason}");
        }
        other => panic!("expected the first bad event, got {other:?}"),
    }

    let mut o = opts(&ProjectionName::ALL);
    o.resume = true;
    o.skip_undecodable = true;
    let s = replay::replay(&stores, &o, &AtomicBool::new(false), |_| {})
        .await
        .expect("skips");
    assert_eq!(s.parked, 6);
    let letters = stores
        .read_models
        .dead_letters(Some("replay"), 0, 100)
        .await
        .expect("letters");
    let keys: Vec<&str> = letters
        .iter()
        .map(|l| l.key.split('#').next().unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        (0..6)
            .rev()
            .map(|i| format!("broken-{i}"))
            .collect::<Vec<_>>()
    );
    let record: Value = serde_json::from_str(&letters[0].record).expect("record is JSON");
    assert_eq!(record["event_type"], "OrderTeleported");
    assert_eq!(snapshot(&stores, &ids).await, live);
}

#[tokio::test]
async fn bad_input_is_one_line_and_a_non_zero_exit_with_nothing_half_switched() {
    let missing = orders_cli(&[
        "replay",
        "--projection",
        "all",
        "--data-dir",
        "/nonexistent/orders",
    ]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no event store"), "{err}");

    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    post(&mut c, "/orders", &[], &order("c-1")).await;
    s.runtime.wait_projected().await;
    let dir = s.dir.path().to_str().expect("path").to_string();

    let unknown = orders_cli(&["replay", "--projection", "inventory", "--data-dir", &dir]);
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("unknown projection `inventory`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // An event nobody can decode.
    let placed = json(&post(&mut c, "/orders", &[], &order("c-2")).await);
    let id = placed["order_id"].as_str().expect("id");
    let template = s
        .runtime
        .stores
        .events
        .load(id)
        .await
        .expect("load")
        .remove(0);
    append_undecodable(&s.runtime.stores.events, &template, "broken-order").await;
    s.runtime.wait_projected().await;

    let dry = orders_cli(&[
        "replay",
        "--projection",
        "all",
        "--dry-run",
        "--data-dir",
        &dir,
    ]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(String::from_utf8_lossy(&dry.stdout).contains("generation 2"));

    let stops = orders_cli(&["replay", "--projection", "all", "--data-dir", &dir]);
    assert!(!stops.status.success());
    let err = String::from_utf8_lossy(&stops.stderr);
    assert!(
        err.contains("broken-order#v1") && err.contains("OrderTeleported"),
        "{err}"
    );
    assert_eq!(
        s.runtime
            .stores
            .read_models
            .active_targets()
            .await
            .expect("targets")
            .orders,
        Some(1)
    );

    let parks = orders_cli(&[
        "replay",
        "--projection",
        "all",
        "--resume",
        "--skip-undecodable",
        "--data-dir",
        &dir,
    ]);
    assert!(
        parks.status.success(),
        "{}",
        String::from_utf8_lossy(&parks.stderr)
    );
    assert!(String::from_utf8_lossy(&parks.stdout).contains("parked 1"));
    assert_eq!(
        s.runtime
            .stores
            .read_models
            .active_targets()
            .await
            .expect("targets")
            .orders,
        Some(2)
    );
    let letters = s
        .runtime
        .stores
        .read_models
        .count_dead_letters(Some("replay"))
        .await
        .expect("count");
    assert_eq!(letters, 1);

    // The parked event, as an operator finds it: the live projector parked the same event
    // when it failed to process it, the replay parked it when told to skip it.
    let listed = orders_cli(&["dead-letters", "list", "--json", "--data-dir", &dir]);
    assert!(listed.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let sources: Vec<&str> = lines.iter().filter_map(|l| l["source"].as_str()).collect();
    assert_eq!(sources, ["stream:projector", "replay"], "{lines:?}");
    let parked = &lines[1];
    assert!(
        parked["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("broken-order#v1")),
        "{parked}"
    );
    assert_eq!(parked["record"]["event_type"], "OrderTeleported");
    let id = parked["id"].as_u64().expect("id").to_string();
    let shown = orders_cli(&["dead-letters", "show", &id, "--data-dir", &dir]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("source:    replay") && shown.contains("OrderTeleported"),
        "{shown}"
    );
    let from_replay = orders_cli(&[
        "dead-letters",
        "list",
        "--source",
        "replay",
        "--data-dir",
        &dir,
    ]);
    let from_replay = String::from_utf8_lossy(&from_replay.stdout);
    assert_eq!(
        from_replay.lines().count(),
        2,
        "a header and one: {from_replay}"
    );
    assert!(from_replay.contains("broken-order#v1"), "{from_replay}");
    let after_both = orders_cli(&["dead-letters", "list", "--after", &id, "--data-dir", &dir]);
    assert_eq!(
        String::from_utf8_lossy(&after_both.stdout).trim(),
        "no dead letters"
    );
    let missing = orders_cli(&["dead-letters", "show", "999", "--data-dir", &dir]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no dead letter 999"), "{err}");
    let by_source = &status(&dir)["dead_letters"];
    assert_eq!(
        by_source,
        &json!({"total": 2, "by_source": {"replay": 1, "stream:projector": 1}})
    );
    s.runtime.shutdown().await.expect("shutdown");
}

#[test]
fn replay_on_aws_names_a_missing_table_variable_in_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["replay", "--projection", "all", "--aws"])
        // A region and credentials (as scripts/with-emulators sets), so that the table is
        // what is missing also in a plain `cargo test`.
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("EVENTS_TABLE")
        .env_remove("READ_MODELS_TABLE")
        .output()
        .expect("run orders");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("EVENTS_TABLE"), "{err}");
}

/// `ORDERS_STACK` (which docs/deploy.md exports for the `--aws` forms) leaves local runs
/// alone; a `--stack` typed without `--aws` is one line.
#[test]
fn the_stack_variable_does_not_stop_a_local_replay_but_a_stack_flag_without_aws_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str], stack: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_orders"));
        c.args(args).arg("--data-dir").arg(dir.path());
        match stack {
            Some(s) => c.env("ORDERS_STACK", s),
            None => c.env_remove("ORDERS_STACK"),
        };
        c.output().expect("run orders")
    };
    // A data dir with an event store (and nothing in it).
    orders_local::store::LocalStores::open(dir.path()).expect("stores");
    let replay = ["replay", "--projection", "all", "--dry-run"];
    let local = run(&replay, Some("orders"));
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    assert!(String::from_utf8_lossy(&local.stdout).contains("dry run"));
    let events = run(&["events", "01NOSUCHORDER"], Some("orders"));
    let err = String::from_utf8_lossy(&events.stderr);
    assert!(err.contains("order 01NOSUCHORDER not found"), "{err}");
    for args in [
        &[
            "replay",
            "--projection",
            "all",
            "--dry-run",
            "--stack",
            "other",
        ][..],
        &["events", "01NOSUCHORDER", "--stack", "other"],
    ] {
        let out = run(args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("--stack needs --aws"), "{err}");
    }
}

/// `ORDERS_DATA_DIR` (which `orders serve` reads) points every local command at the same
/// data dir; a `--data-dir` typed next to `--aws` is one line, the variable alone is not.
/// The arguments the commands share (`src/cli_args.rs`) also give every list's `--limit`.
#[test]
fn the_data_dir_variable_is_read_by_every_local_command() {
    let root = tempfile::tempdir().expect("temp dir");
    let (data, cwd) = (root.path().join("data"), root.path().join("cwd"));
    std::fs::create_dir(&cwd).expect("cwd");
    // From `cwd` the default `.orders` does not exist: only the variable leads to `data`.
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_orders"))
            .args(args)
            .current_dir(&cwd)
            .env("ORDERS_DATA_DIR", &data)
            .env_remove("ORDERS_STACK")
            .output()
            .expect("run orders");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, _, err) = run(&["seed", "--orders", "3"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["projections", "status", "--json"]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status");
    let events = status["log"]["events"].as_u64().expect("events");
    assert!(events >= 3, "{status}");
    let (ok, out, err) = run(&["replay", "--projection", "all", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("events in the log: {events}")),
        "{out}"
    );
    let (ok, out, err) = run(&["dead-letters", "list"]);
    assert!(ok && out.contains("no dead letters"), "{out}{err}");
    let (ok, _, err) = run(&["events", "01NOSUCHORDER"]);
    assert!(!ok && err.contains(&data.display().to_string()), "{err}");
    assert!(
        !cwd.join(".orders").exists(),
        "nothing was made in the default"
    );
    // --aws with the variable set is not refused for it; with --data-dir typed, it is.
    let (ok, _, err) = run(&["events", "01NOSUCHORDER", "--aws"]);
    assert!(!ok && !err.contains("--data-dir"), "{err}");
    for args in [
        &[
            "events",
            "01NOSUCHORDER",
            "--aws",
            "--data-dir",
            "elsewhere",
        ][..],
        &[
            "replay",
            "--projection",
            "all",
            "--aws",
            "--data-dir",
            "elsewhere",
        ],
        &["dead-letters", "list", "--aws", "--data-dir", "elsewhere"],
        &["executions", "list", "--aws", "--data-dir", "elsewhere"],
    ] {
        let (ok, out, err) = run(args);
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("give one of them"), "{args:?}: {err}");
    }
    // A list's --limit is 1 or more everywhere (0 listed everything locally, nothing on AWS).
    for list in [
        &["mail", "list"][..],
        &["queue", "list"],
        &["topic", "list"],
        &["executions", "list"],
        &["executions", "list", "--aws"],
        &["dead-letters", "list"],
    ] {
        let (ok, out, err) = run(&[list, &["--limit", "0"]].concat());
        assert!(!ok && out.is_empty(), "{list:?}: {out}");
        assert!(err.contains("a number of 1 or more"), "{list:?}: {err}");
    }
}

#[tokio::test]
async fn a_replay_fires_no_side_effect() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let mut ids = vec![];
    for i in 0..3 {
        let r = post(&mut c, "/orders", &[], &order(&format!("c-{i}"))).await;
        ids.push(json(&r)["order_id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let r = eventually(&mut c, &format!("/orders/{id}"), |r| {
            r.status == 200 && json(r)["status"] == "FULFILMENT_REQUESTED"
        })
        .await;
        assert_eq!(json(&r)["status"], "FULFILMENT_REQUESTED");
    }
    s.runtime.wait_projected().await;
    let before = side_effects(s.dir.path());
    assert_eq!(before[0], 3, "one execution per order: {before:?}");
    assert!(before.iter().all(|n| *n >= 3), "{before:?}");

    let dir = s.dir.path().to_str().expect("path").to_string();
    let out = orders_cli(&["replay", "--projection", "all", "--data-dir", &dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The live runtime keeps running: nothing it sees after the switch may start anything.
    s.runtime.wait_projected().await;
    let mut views = vec![];
    for id in &ids {
        let r = get(&mut c, &format!("/orders/{id}")).await;
        assert_eq!(r.status, 200);
        views.push(json(&r));
    }
    assert_eq!(
        side_effects(s.dir.path()),
        before,
        "executions, topic, queue, mail unchanged"
    );

    // Switching back to the retired generations, with the server running, fires nothing
    // either; readers see the same views, and the live projector writes into them after.
    for projection in ["orders", "daily_sales"] {
        let out = orders_cli(&[
            "projections",
            "activate",
            projection,
            "1",
            "--data-dir",
            &dir,
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!(
                "{projection}: switched readers from generation 2 to generation 1"
            )),
            "{stdout}"
        );
    }
    s.runtime.wait_projected().await;
    for (id, view) in ids.iter().zip(&views) {
        assert_eq!(&json(&get(&mut c, &format!("/orders/{id}")).await), view);
    }
    assert_eq!(side_effects(s.dir.path()), before);
    let r = post(&mut c, "/orders", &[], &order("c-9")).await;
    let id = json(&r)["order_id"].as_str().expect("id").to_string();
    eventually(&mut c, &format!("/orders/{id}"), |r| {
        r.status == 200 && json(r)["status"] == "FULFILMENT_REQUESTED"
    })
    .await;
    let after = status(&dir);
    assert_eq!(
        generations_of(&after)
            .into_iter()
            .filter(|g| g.2 == "active")
            .map(|g| (g.0, g.1, g.3))
            .collect::<Vec<_>>(),
        vec![("daily_sales".into(), 1, 4), ("orders".into(), 1, 4)],
        "the new order is in the generations switched back to"
    );
    s.runtime.shutdown().await.expect("shutdown");
}

#[test]
fn off_a_terminal_progress_is_plain_lines_then_a_summary() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().to_string_lossy().to_string();
    let seeded = orders_cli(&["seed", "--orders", "30", "--data-dir", &dir]);
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let out = orders_cli(&["replay", "--projection", "all", "--data-dir", &dir]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("replayed "))
        .expect("a summary line");
    let events: u64 = summary
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("events in the summary");
    assert!(summary.contains("rebuilt 30 orders"), "{summary}");
    // Plain lines of events replayed (no bar, no escape codes), the last count complete,
    // then the step after the events, once.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("replay: "))
        .collect();
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    let read = format!("replay: {events}/{events} events, ");
    let counts: Vec<&&str> = lines.iter().filter(|l| l.contains(" events, ")).collect();
    assert!(
        counts.last().is_some_and(|l| l.starts_with(&read)),
        "{stderr}"
    );
    assert_eq!(lines.last(), Some(&"replay: switching readers"), "{stderr}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| **l == "replay: switching readers")
            .count(),
        1,
        "{stderr}"
    );
}

/// `orders projections status --json`, parsed.
fn status(dir: &str) -> Value {
    let out = orders_cli(&["projections", "status", "--json", "--data-dir", dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status is JSON")
}

/// `(projection, generation, status, orders)` of each generation in a status.
fn generations_of(status: &Value) -> Vec<(String, u64, String, u64)> {
    status["generations"]
        .as_array()
        .expect("generations")
        .iter()
        .map(|g| {
            (
                g["projection"].as_str().expect("projection").to_string(),
                g["generation"].as_u64().expect("generation"),
                g["status"].as_str().expect("status").to_string(),
                g["orders"].as_u64().expect("orders"),
            )
        })
        .collect()
}

/// A failed command: one line on stderr that contains `needle`.
fn fails_with(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
}

/// A broken file in the data dir is named once, without the causes that repeat it.
#[test]
fn a_data_dir_file_that_is_not_a_database_is_named_once() {
    let tmp = tempfile::tempdir().expect("dir");
    std::fs::write(tmp.path().join("events.db"), "not a database, just text\n").expect("write");
    let dir = tmp.path().to_string_lossy().to_string();
    for args in [
        &["events", "01J0000000000000000000000", "--data-dir", &dir][..],
        &["projections", "status", "--data-dir", &dir][..],
    ] {
        let out = orders_cli(args);
        fails_with(&out, "events.db: file is not a database");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("not a database").count(), 1, "{args:?}: {err}");
    }
}

/// Usage mistakes caught by the argument parser are one line too, with its exit code 2;
/// help still prints in full.
#[test]
fn usage_mistakes_are_one_line() {
    for (args, says) in [
        (
            &["replay", "--no-such-flag"][..],
            "unexpected argument '--no-such-flag'",
        ),
        (
            &["replay", "--projection"][..],
            "a value is required for '--projection",
        ),
        (&["seed", "--orders", "many"][..], "invalid value 'many'"),
        (&["no-such-command"][..], "unrecognized subcommand"),
        (
            &["events"][..],
            "the following required arguments were not provided: <ORDER_ID>",
        ),
        (
            &["dead-letters", "list", "--aws", "--source", "replay"][..],
            "the argument '--aws' cannot be used with '--source <SOURCE>'",
        ),
    ] {
        let out = orders_cli(args);
        fails_with(&out, says);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("try '--help'"),
            "{args:?}"
        );
    }
    let help = orders_cli(&["replay", "--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: orders replay"));
}

#[test]
fn projections_status_lists_generations_and_consumers_and_drops_only_unused_ones() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().to_string_lossy().to_string();
    let seeded = orders_cli(&["seed", "--orders", "30", "--data-dir", &dir]);
    assert!(seeded.status.success());
    let before = status(&dir);
    assert!(
        before["log"]["events"].as_u64().expect("events") >= 30,
        "{before}"
    );
    // The seed built the read models and put the live projector after the history.
    assert_eq!(before["consumers"][0]["name"], "projector");
    assert_eq!(before["consumers"][0]["behind"], 0);
    assert_eq!(before["consumers"][0]["iterator_age_ms"], Value::Null);
    assert_eq!(
        generations_of(&before),
        vec![
            ("daily_sales".into(), 2, "active".into(), 30),
            ("orders".into(), 2, "active".into(), 30),
        ]
    );

    let replayed = orders_cli(&["replay", "--projection", "all", "--data-dir", &dir]);
    assert!(replayed.status.success());
    let after = status(&dir);
    assert_eq!(
        generations_of(&after),
        vec![
            ("daily_sales".into(), 2, "retired".into(), 30),
            ("daily_sales".into(), 3, "active".into(), 30),
            ("orders".into(), 2, "retired".into(), 30),
            ("orders".into(), 3, "active".into(), 30),
        ]
    );
    // A switched replay leaves no checkpoint behind: nothing to resume, nothing listed.
    assert_eq!(after["consumers"].as_array().expect("consumers").len(), 1);
    // The retired generations stopped where the live projector stood: at the log's head.
    let head = after["log"]["head_seq"].as_u64().expect("head");
    for g in after["generations"].as_array().expect("generations") {
        let retired = g["status"] == "retired";
        assert_eq!(g["position"].as_u64(), retired.then_some(head), "{g}");
        assert_eq!(g["behind"].as_u64(), retired.then_some(0), "{g}");
    }
    let text = orders_cli(&["projections", "status", "--data-dir", &dir]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(
            "orders generation 2: retired, up to date; `orders projections activate orders 2`"
        ),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    // The way back, planned, then taken, then undone.
    let dry = orders_cli(&[
        "projections",
        "activate",
        "orders",
        "2",
        "--dry-run",
        "--data-dir",
        &dir,
    ]);
    assert!(dry.status.success());
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains(&format!(
            "orders: catch generation 2 up from log position {head}, where it was retired (0 events at most), then switch readers from generation 3 to it"
        )),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );
    assert_eq!(generations_of(&status(&dir)), generations_of(&after));
    let back = orders_cli(&["projections", "activate", "orders", "2", "--data-dir", &dir]);
    assert!(back.status.success());
    assert!(
        String::from_utf8_lossy(&back.stdout).contains(
            "orders: switched readers from generation 3 to generation 2; generation 3 is retired (`orders projections activate orders 3` switches back)"
        ),
        "{}",
        String::from_utf8_lossy(&back.stdout)
    );
    let refused = |verb: &str, projection: &str, generation: &str, says: &str| {
        fails_with(
            &orders_cli(&[
                "projections",
                verb,
                projection,
                generation,
                "--data-dir",
                &dir,
            ]),
            says,
        )
    };
    refused(
        "activate",
        "orders",
        "2",
        "orders generation 2 is already the active one",
    );
    refused("activate", "orders", "7", "orders has no generation 7");
    refused("activate", "stock", "1", "unknown projection `stock`");
    let forth = orders_cli(&["projections", "activate", "orders", "3", "--data-dir", &dir]);
    assert!(forth.status.success());
    assert_eq!(generations_of(&status(&dir)), generations_of(&after));

    refused("drop", "orders", "3", "generation 3 is the active one");
    refused("drop", "orders", "7", "orders has no generation 7");
    refused("drop", "inventory", "1", "unknown projection `inventory`");
    fails_with(
        &orders_cli(&["projections", "status", "--data-dir", "/nonexistent/orders"]),
        "no event store",
    );
    assert_eq!(generations_of(&status(&dir)).len(), 4, "nothing dropped");

    let dropped = orders_cli(&["projections", "drop", "orders", "2", "--data-dir", &dir]);
    assert!(dropped.status.success());
    let pruned = orders_cli(&["projections", "prune", "--data-dir", &dir]);
    assert!(pruned.status.success());
    assert!(String::from_utf8_lossy(&pruned.stdout).contains("daily_sales: dropped generation 2"));
    assert_eq!(
        generations_of(&status(&dir)),
        vec![
            ("daily_sales".into(), 3, "active".into(), 30),
            ("orders".into(), 3, "active".into(), 30),
        ]
    );
    let text = orders_cli(&["projections", "status", "--data-dir", &dir]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("no dead letters"), "{text}");
    assert!(
        text.lines().any(|l| l
            .split_whitespace()
            .take(4)
            .eq(["orders", "3", "active", "30"])),
        "{text}"
    );
}

#[tokio::test]
async fn an_interrupted_replay_can_be_abandoned_and_a_new_one_starts_from_scratch() {
    let (dir, stores, ids) = seeded(30).await;
    let live = snapshot(&stores, &ids).await;
    let path = dir.path().to_string_lossy().to_string();
    // Stopped after the bulk phase: generation 2 is building and has a checkpoint.
    let err = replay::replay(
        &stores,
        &opts(&[ProjectionName::Orders]),
        &AtomicBool::new(true),
        |_| {},
    )
    .await
    .expect_err("stopped");
    assert!(matches!(err, ReplayError::Stopped), "{err:?}");
    let s = status(&path);
    assert!(
        generations_of(&s).contains(&("orders".into(), 2, "building".into(), 30)),
        "{s}"
    );
    let consumers = s["consumers"].as_array().expect("consumers");
    assert!(
        consumers
            .iter()
            .any(|c| c["kind"] == "replay" && c["name"] == "replay:orders=g2"),
        "{s}"
    );
    // This log was projected without the tailer: its projector waits at the first event,
    // placed up to 30 days ago by the seed.
    let first = stores
        .events
        .read_from(0, 1)
        .await
        .expect("first")
        .remove(0)
        .1;
    let projector = &consumers[0];
    assert_eq!(projector["name"], "projector");
    assert_eq!(projector["behind"], s["log"]["head_seq"]);
    assert_eq!(projector["waiting_since"], first.occurred_at.to_string());
    let age = projector["iterator_age_ms"].as_u64().expect("an age");
    assert!(age > 0 && age <= 31 * 86_400_000, "{age}");
    let text = orders_cli(&["projections", "status", "--data-dir", &path]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains(&format!("{} (", first.occurred_at)), "{text}");
    let text = orders_cli(&["projections", "status", "--data-dir", &path]);
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("abandon it with `orders projections drop orders 2`")
    );

    let dropped = orders_cli(&["projections", "drop", "orders", "2", "--data-dir", &path]);
    assert!(
        dropped.status.success(),
        "{}",
        String::from_utf8_lossy(&dropped.stderr)
    );
    let checkpoints = stores.read_models.checkpoints().await.expect("checkpoints");
    assert!(
        checkpoints
            .iter()
            .all(|(name, _)| !name.starts_with("replay:")),
        "{checkpoints:?}"
    );

    // The next replay gets generation 2 again and must not resume from the dropped
    // one's checkpoint over empty tables.
    let s = replay::replay(
        &stores,
        &opts(&[ProjectionName::Orders]),
        &AtomicBool::new(false),
        |_| {},
    )
    .await
    .expect("a fresh replay");
    assert_eq!(s.switches[0].to, 2);
    assert_eq!(s.orders_rebuilt, ids.len() as u64);
    assert_eq!(snapshot(&stores, &ids).await, live);
}

#[tokio::test]
async fn while_a_replay_runs_another_replay_and_drops_are_refused() {
    let (dir, _stores, _ids) = seeded(5).await;
    let path = dir.path().to_string_lossy().to_string();
    let mut lock = replay::ReplayLock::try_acquire(dir.path())
        .expect("lock file")
        .expect("free");
    let holder = "`orders replay --projection all` (pid 99, since 2026-11-30T00:00:00.000Z): 5 of 10 events (50 %)";
    lock.describe(holder).expect("describe");
    assert!(
        replay::ReplayLock::try_acquire(dir.path())
            .expect("lock file")
            .is_none(),
        "held"
    );
    // Refused with what holds the lock, as it described itself.
    fails_with(
        &orders_cli(&["replay", "--projection", "all", "--data-dir", &path]),
        &format!("a replay is running in {path} ({holder}); wait for it"),
    );
    fails_with(
        &orders_cli(&["projections", "prune", "--data-dir", &path]),
        "a replay is running",
    );
    fails_with(
        &orders_cli(&[
            "projections",
            "activate",
            "orders",
            "1",
            "--data-dir",
            &path,
        ]),
        "a replay is running",
    );
    fails_with(
        &orders_cli(&["projections", "verify", "--data-dir", &path]),
        "a replay is running",
    );
    assert_eq!(status(&path)["replay_running"], true);
    assert_eq!(status(&path)["replay_holder"], holder);
    let text = orders_cli(&["projections", "status", "--data-dir", &path]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("replay lock held by {holder}")),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    drop(lock);
    assert_eq!(status(&path)["replay_running"], false);
    // What a finished holder left in the file is not news.
    assert_eq!(status(&path)["replay_holder"], serde_json::Value::Null);
    // A status probe holds the lock for a moment only: a replay starting then waits it out.
    let probe = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("replay.lock"))
        .expect("the lock file");
    probe.lock_shared().expect("a probe's shared lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(30));
        drop(probe);
    });
    let waited = replay::ReplayLock::try_acquire(dir.path()).expect("lock file");
    assert!(waited.is_some(), "not refused for a probe");
    release.join().expect("probe thread");
    drop(waited);
    let ran = orders_cli(&["replay", "--projection", "all", "--data-dir", &path]);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    // The command described itself in the lock while it held it: itself, then how far.
    let left = std::fs::read_to_string(dir.path().join("replay.lock")).expect("the lock file");
    assert!(
        left.starts_with(&format!(
            "`orders replay --projection all --data-dir {path}` (pid "
        )) && left.contains(" events (100 %)"),
        "{left}"
    );
}

#[tokio::test]
async fn a_seeded_history_is_served_without_firing_its_workflows() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().to_string_lossy().to_string();
    let seeded = orders_cli(&["seed", "--orders", "20", "--data-dir", &dir]);
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    assert!(String::from_utf8_lossy(&seeded.stdout).contains("built the read models (20 orders)"));

    let runtime = orders::runtime::Runtime::start_with_workflow(
        orders::runtime::RuntimeConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir: tmp.path().to_path_buf(),
            observer: None,
            allowed_hosts: vec![],
            allowed_origins: vec![],
            auth: false,
            throttle: false,
        },
        workflow_options(),
    )
    .await
    .expect("runtime starts");
    let mut c = connect(&runtime).await;
    let page = runtime
        .stores
        .read_models
        .recent_orders(20, None)
        .await
        .expect("orders");
    assert_eq!(page.items.len(), 20, "the seeded orders are served");
    let old = &page.items[0].order_id;
    assert_eq!(get(&mut c, &format!("/orders/{old}")).await.status, 200);

    // A new order runs the whole loop; by then the projector has passed the history.
    let placed = json(&post(&mut c, "/orders", &[], &order("c-new")).await);
    let id = placed["order_id"].as_str().expect("id").to_string();
    eventually(&mut c, &format!("/orders/{id}"), |r| {
        r.status == 200 && json(r)["status"] == "FULFILMENT_REQUESTED"
    })
    .await;
    runtime.wait_projected().await;
    assert_eq!(
        side_effects(tmp.path()),
        vec![1, 1, 1, 1],
        "one execution, SNS message, SQS message and email: the new order's only"
    );
    runtime.shutdown().await.expect("shutdown");
}

/// `orders ... | head`: the reader is gone before the command prints. The command ends
/// quietly with the status SIGPIPE gives (141), not with a panic and its backtrace.
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // Closed before the command writes: its first line meets a broken pipe.
    drop(reader);
    let definition = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/statemachines/order-workflow.asl.json"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orders"))
        .args(["states", "validate", definition])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run orders")
        .wait_with_output()
        .expect("wait");
    assert_eq!(out.status.code(), Some(141), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "nothing on stderr"
    );
}

/// After `--drop-old` the dropped generation's pages stay in `read_models.db` (SQLite
/// reuses them); `orders projections compact` gives them back to the disk, only while no
/// server writes to the file, and every view is still there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_gives_the_dropped_generations_space_back() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().to_string_lossy().to_string();
    let seeded = orders_cli(&["seed", "--orders", "3000", "--data-dir", &dir]);
    assert!(seeded.status.success(), "{seeded:?}");
    let replayed = orders_cli(&[
        "replay",
        "--projection",
        "all",
        "--drop-old",
        "--data-dir",
        &dir,
    ]);
    let said = String::from_utf8_lossy(&replayed.stdout).to_string();
    assert!(said.contains("of it free"), "{said}");
    let file = tmp.path().join("read_models.db");
    let space = |v: &Value| {
        (
            v["read_models_file"]["bytes"].as_u64().expect("bytes"),
            v["read_models_file"]["free_bytes"].as_u64().expect("free"),
        )
    };
    let (bytes, free) = space(&status(&dir));
    assert!(
        free > bytes / 4,
        "a generation's worth free: {free} of {bytes}"
    );

    // A running server writes to the file: refused, one line, nothing changed.
    let runtime = start_in(tmp.path()).await;
    let out = orders_cli(&["projections", "compact", "--data-dir", &dir]);
    assert!(!out.status.success());
    let line = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("is in use by `orders serve`"), "{line}");
    assert_eq!(space(&status(&dir)), (bytes, free));
    runtime.shutdown().await.expect("shutdown");

    let out = orders_cli(&["projections", "compact", "--data-dir", &dir]);
    assert!(out.status.success(), "{out:?}");
    let (after, free_after) = space(&status(&dir));
    assert_eq!(free_after, 0);
    // What was in use, or less: VACUUM also packs half-empty pages.
    assert!(
        after <= bytes - free,
        "{after} of {bytes} bytes, {free} were free"
    );
    let on_disk = std::fs::metadata(&file).expect("read_models.db").len();
    assert!(on_disk <= after, "the file shrank: {on_disk} bytes");
    let generations = status(&dir)["generations"].clone();
    for g in generations.as_array().expect("generations") {
        assert_eq!(g["status"], "active", "{generations}");
        assert_eq!(g["orders"], 3000, "{generations}");
    }
    let again = orders_cli(&["projections", "compact", "--data-dir", &dir]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing free"),
        "{again:?}"
    );
}

/// Read models that drifted from the log as they do when the live projector parks
/// records: verify names exactly the orders, trackers and days that differ (with the
/// fields), leaves everything as it was, and fires nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_exactly_what_differs_from_the_log_and_changes_nothing() {
    use orders::verify::verify;
    let (dir, stores, _) = seeded(30).await;
    let rm = &stores.read_models;
    let head = live_at_head(&stores).await;
    let all = ProjectionName::ALL;
    let stop = AtomicBool::new(false);
    let v = verify(&stores, dir.path(), &all, false, &stop, |_| {})
        .await
        .expect("verify");
    assert!(v.same(), "{v:?}");
    assert_eq!((v.position, v.compared.orders_in_log), (head, 30));
    assert_eq!((v.not_yet_projected, v.undecodable), (0, 0));
    assert!(v.compared.days_in_log > 0);
    assert_eq!(v.events_read, head);

    // Drift: an order whose second event was parked (its view stops at version 1), an
    // order parked whole (missing), and a view no event in the log explains (extra).
    let ids = UlidIds::new();
    let now = orders_domain::ports::Clock::now(&SystemClock);
    let stale = orders::seed::history(1_000, &ids, now).expect("history");
    let parked = orders::seed::history(1_001, &ids, now).expect("history");
    let ghost = orders::seed::history(1_002, &ids, now).expect("history");
    append_each(&stores.events, &stale[..2]).await;
    append_each(&stores.events, &parked).await;
    let projector = orders_handlers::projector::Projector::replay(rm.clone());
    for e in [&stale[0], &ghost[0]] {
        projector.process_envelope(e).await.expect("projected");
    }
    let head = live_at_head(&stores).await;
    let before = snapshot(&stores, &order_ids(&stores).await).await;
    let generations = rm.generations().await.expect("generations");

    let v = verify(&stores, dir.path(), &all, false, &stop, |_| {})
        .await
        .expect("verify");
    assert_eq!(v.position, head);
    let kinds: Vec<(&str, Option<u64>, Option<u64>)> = v
        .compared
        .orders
        .iter()
        .map(|d| (d.order_id.as_str(), d.read_model_version, d.log_version))
        .collect();
    let mut expected = vec![
        (stale[0].aggregate_id.as_str(), Some(1), Some(2)),
        (
            parked[0].aggregate_id.as_str(),
            None,
            Some(parked.len() as u64),
        ),
        (ghost[0].aggregate_id.as_str(), Some(1), None),
    ];
    expected.sort();
    assert_eq!(kinds, expected);
    let stale_diff = v
        .compared
        .orders
        .iter()
        .find(|d| d.order_id == stale[0].aggregate_id)
        .expect("the stale order");
    let status = stale_diff
        .fields
        .iter()
        .find(|f| f.path == "status")
        .expect("its status differs");
    assert_eq!(status.read_model, json!("PLACED"));
    assert_ne!(status.log, json!("PLACED"));
    assert_eq!(
        v.compared.orders_in_log, 32,
        "30 seeded, the stale one and the parked one"
    );
    // The parked and the ghost order count on the days they were placed; the trackers
    // of the parked one (missing), the ghost (extra) and the stale one (if its second
    // event was a cancellation) differ.
    assert!(!v.compared.days.is_empty(), "{:?}", v.compared.days);
    let trackers: Vec<&str> = v
        .compared
        .trackers
        .iter()
        .map(|d| d.order_id.as_str())
        .collect();
    assert!(
        trackers.contains(&parked[0].aggregate_id.as_str()),
        "{trackers:?}"
    );
    assert!(
        trackers.contains(&ghost[0].aggregate_id.as_str()),
        "{trackers:?}"
    );
    assert_eq!(
        v.differing(),
        vec![ProjectionName::Orders, ProjectionName::DailySales]
    );

    // Only one projection: only its rows.
    let orders_only = verify(
        &stores,
        dir.path(),
        &[ProjectionName::Orders],
        false,
        &stop,
        |_| {},
    )
    .await
    .expect("verify");
    assert_eq!(orders_only.compared.orders.len(), 3);
    assert!(orders_only.compared.trackers.is_empty() && orders_only.compared.days.is_empty());

    // Nothing changed: what readers see, the generations, no scratch store left behind,
    // no dead letter.
    assert_eq!(snapshot(&stores, &order_ids(&stores).await).await, before);
    assert_eq!(rm.generations().await.expect("generations"), generations);
    assert!(!dir.path().join("verify.tmp").exists());
    assert_eq!(rm.count_dead_letters(None).await.expect("letters"), 0);

    // The live projector behind the log (a server stopped before it caught up): the
    // orders it has not applied are left out, not reported as different.
    let later = orders::seed::history(1_003, &ids, now).expect("history");
    append_each(&stores.events, &later).await;
    let v = verify(&stores, dir.path(), &all, false, &stop, |_| {})
        .await
        .expect("verify");
    assert_eq!(v.position, head, "the live projector's position");
    assert_eq!(v.not_yet_projected, 1);
    assert!(
        v.compared
            .orders
            .iter()
            .all(|d| d.order_id != later[0].aggregate_id),
        "{:?}",
        v.compared.orders
    );
    assert_eq!(v.compared.orders.len(), 3);

    // An event that does not decode: no read model holds it, so no difference; counted
    // and named, with its key and reason.
    append_undecodable(&stores.events, &stale[0], "01UNDECODABLE0000000000001").await;
    let head = live_at_head(&stores).await;
    let v = verify(&stores, dir.path(), &all, false, &stop, |_| {})
        .await
        .expect("verify");
    assert_eq!(
        (v.position, v.undecodable, v.not_yet_projected),
        (head, 1, 0)
    );
    assert_eq!(v.undecodable_events.len(), 1);
    assert!(
        v.undecodable_events[0]
            .key
            .starts_with("01UNDECODABLE0000000000001#v1"),
        "{:?}",
        v.undecodable_events
    );
    assert!(
        v.undecodable_events[0].reason.contains("OrderTeleported"),
        "{:?}",
        v.undecodable_events
    );
    assert_eq!(
        v.compared.orders.len(),
        4,
        "the three before, and `later` now compared"
    );

    // Repaired: the differing rows rewritten from the log, in the comparison's
    // transaction; then the same, and what readers see is what a replay would build.
    let v = verify(&stores, dir.path(), &all, true, &stop, |_| {})
        .await
        .expect("repair");
    assert!(!v.same(), "what it found is reported");
    let Some(orders::verify::Repair::Repaired {
        rows,
        still_different,
    }) = v.repair
    else {
        panic!("not repaired: {:?}", v.repair);
    };
    assert_eq!((rows.orders, still_different), (4, 0));
    assert!(rows.trackers >= 3 && rows.days >= 1, "{rows:?}");
    assert!(v.sound());
    let v = verify(&stores, dir.path(), &all, false, &stop, |_| {})
        .await
        .expect("verify");
    assert!(v.same(), "{:?}", v.compared);
    let all_ids = order_ids(&stores).await;
    let repaired = snapshot(&stores, &all_ids).await;
    let skipping = ReplayOptions {
        skip_undecodable: true,
        ..opts(&all)
    };
    replay::replay(&stores, &skipping, &stop, |_| {})
        .await
        .expect("replay");
    assert_eq!(
        snapshot(&stores, &all_ids).await,
        repaired,
        "as a replay builds them"
    );
    assert!(
        stores
            .read_models
            .order(&ghost[0].aggregate_id)
            .await
            .expect("read")
            .is_none(),
        "the view no event explains is gone"
    );

    // With the live projector behind the log, nothing is repaired.
    let ghost2 = orders::seed::history(1_005, &ids, now).expect("history");
    projector
        .process_envelope(&ghost2[0])
        .await
        .expect("projected");
    append_each(
        &stores.events,
        &orders::seed::history(1_004, &ids, now).expect("history"),
    )
    .await;
    let v = verify(&stores, dir.path(), &all, true, &stop, |_| {})
        .await
        .expect("verify");
    assert!(
        matches!(&v.repair, Some(orders::verify::Repair::Refused(why)) if why.contains("behind the log")),
        "{:?}",
        v.repair
    );
    assert!(!v.sound());
    assert!(
        rm.order(&ghost2[0].aggregate_id)
            .await
            .expect("read")
            .is_some(),
        "nothing rewritten"
    );
}

/// `orders projections verify` on the command line: exit 0 and a closing line when the
/// read models are what the log says, exit 1 and the orders when not, JSON on request,
/// bad input in one line.
#[tokio::test]
async fn verify_on_the_command_line_exits_1_when_the_read_models_differ() {
    let (dir, stores, _) = seeded(6).await;
    let path = dir.path().to_string_lossy().to_string();
    live_at_head(&stores).await;
    let out = orders_cli(&["projections", "verify", "--data-dir", &path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("orders (generation 1): 6 orders in the log: 6 the same"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("the read models are what the log says\n"),
        "{stdout}"
    );

    let parked = orders::seed::history(
        99,
        &UlidIds::new(),
        orders_domain::ports::Clock::now(&SystemClock),
    )
    .expect("history");
    append_each(&stores.events, &parked).await;
    let head = live_at_head(&stores).await;
    let id = parked[0].aggregate_id.clone();
    let out = orders_cli(&[
        "projections",
        "verify",
        "--data-dir",
        &path,
        "--projection",
        "orders",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{id}: missing from the read model (the log has it at version {})",
            parked.len()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("`orders replay --projection orders` rebuilds"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("daily_sales"),
        "only the projection asked for: {stdout}"
    );

    let out = orders_cli(&["projections", "verify", "--data-dir", &path, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["compared"]["orders"][0]["order_id"], id.as_str());
    assert_eq!(
        v["compared"]["orders"][0]["read_model_version"],
        Value::Null
    );
    assert_eq!(v["position"], head);
    assert_eq!(
        v["generations"][0],
        json!({"projection": "orders", "generation": 1})
    );

    // Repaired: the missing order is written from the log, and verify then agrees.
    let out = orders_cli(&["projections", "verify", "--data-dir", &path, "--repair"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("repaired from the log, with the live projector held off: 1 order views"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("the read models are now what the log says\n"),
        "{stdout}"
    );
    assert!(stores.read_models.order(&id).await.expect("read").is_some());
    let out = orders_cli(&["projections", "verify", "--data-dir", &path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    fails_with(
        &orders_cli(&[
            "projections",
            "verify",
            "--data-dir",
            &path,
            "--projection",
            "bogus",
        ]),
        "unknown projection `bogus`",
    );
    fails_with(
        &orders_cli(&["projections", "verify", "--data-dir", &path, "--limit", "0"]),
        "--limit",
    );
    // The AWS flags: --stack and --segments go with --aws, which goes without --data-dir.
    fails_with(
        &orders_cli(&["projections", "verify", "--data-dir", &path, "--stack", "x"]),
        "--stack needs --aws",
    );
    fails_with(
        &orders_cli(&[
            "projections",
            "verify",
            "--data-dir",
            &path,
            "--segments",
            "2",
        ]),
        "--aws",
    );
    fails_with(
        &orders_cli(&[
            "projections",
            "verify",
            "--data-dir",
            &path,
            "--pending-grace",
            "5",
        ]),
        "--aws",
    );
    for grace in [
        "--pending-grace=-1",
        "--pending-grace=soon",
        "--pending-grace=86401",
    ] {
        fails_with(
            &orders_cli(&["projections", "verify", "--aws", grace]),
            "--pending-grace",
        );
    }
    fails_with(
        &orders_cli(&["projections", "verify", "--data-dir", &path, "--aws"]),
        "--data-dir",
    );
    let missing = dir.path().join("nowhere").to_string_lossy().to_string();
    let out = orders_cli(&["projections", "verify", "--data-dir", &missing]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// With the server running and taking orders meanwhile, verify finds nothing to report
/// (the orders placed while it runs are not false differences) and fires nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_beside_a_running_server_taking_orders_reports_no_false_difference() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    for i in 0..10 {
        let r = post(&mut c, "/orders", &[], &order(&format!("c-{}", i % 3))).await;
        assert_eq!(r.status, 201);
    }
    until("the executions", std::time::Duration::from_secs(20), || {
        let e = side_effects(s.dir.path());
        (e[0] == 10 && e.iter().all(|n| *n >= 10)).then_some(())
    })
    .await;
    s.runtime.wait_projected().await;
    let before = side_effects(s.dir.path());
    let dir = s.dir.path().to_string_lossy().to_string();
    let out = orders_cli_off_thread(&["projections", "verify", "--data-dir", &dir]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(side_effects(s.dir.path()), before, "verify fires nothing");

    // Orders placed while it runs.
    let addr = s.runtime.addr;
    let placing = tokio::spawn(async move {
        let mut c = orders::client::Connection::open(addr)
            .await
            .expect("connect");
        for i in 0..60 {
            let r = post(&mut c, "/orders", &[], &order(&format!("c-{}", i % 3))).await;
            assert_eq!(r.status, 201);
        }
    });
    for _ in 0..3 {
        let out =
            orders_cli_off_thread(&["projections", "verify", "--data-dir", &dir, "--json"]).await;
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(out.status.success(), "{v}");
    }
    placing.await.expect("orders placed");
    s.runtime.wait_projected().await;
    let dead: u64 = s
        .runtime
        .stores
        .read_models
        .count_dead_letters(None)
        .await
        .expect("letters");
    assert_eq!(dead, 0, "the live projector parked nothing while held off");
    s.runtime.shutdown().await.expect("shutdown");
}
