//! `orders projections verify`: are the read models what the log says? The projections
//! are folded afresh from the whole log into a scratch store (its own file, removed
//! afterwards: nothing of it is ever read by anyone else), the way a replay builds a new
//! generation, then compared row by row with the active generations.
//!
//! The live projector of a running `orders serve` keeps going meanwhile. The comparison
//! runs twice: over everything, with the scratch caught up to where the live projector
//! was; then, with the live projector held off for a moment (the read models' write
//! lock), the scratch caught up to where it is now and only the orders that differed or
//! changed in between compared again. What is reported holds at one log position.
//! Never starts a workflow, publishes, enqueues or emails, and changes no read model.

use crate::replay::{ReplayError, ReplayOptions, ReplayProgress, Run};
pub use orders_domain::compare::Undecodable;
use orders_domain::projection::ProjectionName;
use orders_local::store::{Compared, LocalStores, Repaired, SqliteReadModels, Targets};
use orders_local::tailer::TailerConfig;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The scratch store's directory under the data dir (one verify at a time: the replay
/// lock; one left by a killed verify is removed by the next).
const SCRATCH_DIR: &str = "verify.tmp";

/// What `--repair` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// The differing rows, rewritten from the log in the transaction that found them;
    /// `still_different` counts what a comparison right after still found (0).
    Repaired {
        rows: Repaired,
        still_different: u64,
    },
    /// Nothing was rewritten: why.
    Refused(String),
}

/// Undecodable events named in a verdict, at most.
pub const UNDECODABLE_LISTED: usize = 20;

/// A projection compared, and the generation readers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Compares {
    pub projection: ProjectionName,
    pub generation: u32,
}

/// What was compared, and what differs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// The projections compared, with the active generation of each.
    pub generations: Vec<Compares>,
    /// The log position both sides were compared at: the live projector's.
    pub position: u64,
    /// Events read from the log (the fold and its catch-ups).
    pub events_read: u64,
    /// Events that do not decode: no read model can hold them (the live projector parks
    /// them too).
    pub undecodable: u64,
    /// The first of them ([`UNDECODABLE_LISTED`]): key and reason.
    pub undecodable_events: Vec<Undecodable>,
    /// Orders with events past `position` that the live projector has not applied yet
    /// (it is behind the log, or not running): left out of the comparison.
    pub not_yet_projected: u64,
    /// Records the live projector parked (dead letters of `stream:projector`): their
    /// orders are likely among those that differ.
    pub live_dead_letters: u64,
    /// The differences found, and how many orders and days the log gives.
    pub compared: Compared,
    /// With `repair`: what was rewritten from the log, or why nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
    pub seconds: f64,
}

impl Verdict {
    /// Whether the read models are what the log says.
    pub fn same(&self) -> bool {
        self.compared.differences() == 0
    }

    /// Whether the read models are what the log says now: the same, or repaired.
    pub fn sound(&self) -> bool {
        match &self.repair {
            Some(Repair::Repaired {
                still_different, ..
            }) => *still_different == 0,
            _ => self.same(),
        }
    }

    /// The projections whose read models differ from the log.
    pub fn differing(&self) -> Vec<ProjectionName> {
        self.compared.differing()
    }
}

/// Verifies `projections` of `stores` (in `data_dir`, whose replay lock the caller
/// holds); with `repair`, rewrites what differs from the log, in the transaction of the
/// comparison that found it. `progress` reports the fold; `stop` ends it early (nothing
/// to resume: nothing was changed).
pub async fn verify(
    stores: &LocalStores,
    data_dir: &Path,
    projections: &[ProjectionName],
    repair: bool,
    stop: &AtomicBool,
    progress: impl Fn(ReplayProgress),
) -> Result<Verdict, ReplayError> {
    let dir = data_dir.join(SCRATCH_DIR);
    let scratch = tokio::task::spawn_blocking(move || open_scratch(&dir))
        .await
        .map_err(|e| store_error(format!("opening the scratch store: {e}")))??;
    let verdict = compare(stores, &scratch, projections, repair, stop, progress).await;
    let dir = scratch.path().parent().map(Path::to_path_buf);
    // Closing joins the store's checkpoint thread, which may be copying a large WAL: off
    // the async threads (in `orders serve` they also serve the API).
    let removed = tokio::task::spawn_blocking(move || {
        drop(scratch);
        if let Some(dir) = dir {
            // Best effort: a leftover is removed by the next verify.
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(error = %e, dir = %dir.display(), "removing the scratch store");
            }
        }
    })
    .await;
    if let Err(e) = removed {
        tracing::warn!(error = %e, "closing the scratch store");
    }
    verdict
}

fn store_error(reason: String) -> ReplayError {
    ReplayError::Store(orders_domain::ports::StoreError::Unavailable(reason))
}

/// A fresh read-model store in `dir`, whatever an earlier, killed verify left there.
fn open_scratch(dir: &Path) -> Result<SqliteReadModels, ReplayError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(store_error(format!("removing {}: {e}", dir.display())));
        }
        _ => {}
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| store_error(format!("creating {}: {e}", dir.display())))?;
    SqliteReadModels::open(dir).map_err(|e| store_error(e.to_string()))
}

async fn compare(
    stores: &LocalStores,
    scratch: &SqliteReadModels,
    projections: &[ProjectionName],
    repair: bool,
    stop: &AtomicBool,
    progress: impl Fn(ReplayProgress),
) -> Result<Verdict, ReplayError> {
    let started = Instant::now();
    let live = TailerConfig::default().name;
    let ours = stores.read_models.active_targets().await?;
    let mut generations = vec![];
    let mut targets = Targets::default();
    let fresh_targets = scratch.active_targets().await?;
    for &p in projections {
        if let Some(g) = ours.get(p) {
            generations.push(Compares {
                projection: p,
                generation: g,
            });
        }
        targets.set(p, fresh_targets.get(p));
    }
    let fresh = LocalStores {
        events: stores.events.clone(),
        read_models: scratch.clone(),
    };
    let opts = ReplayOptions {
        projections: projections.to_vec(),
        resume: false,
        drop_old: false,
        // Counted and reported: an event that does not decode is part of the answer.
        skip_undecodable: true,
        chunk: crate::replay::DEFAULT_CHUNK,
    };
    let mut run = Run {
        stores: &fresh,
        opts: &opts,
        targets,
        checkpoint: "verify".into(),
        after: 0,
        events_read: 0,
        parked: 0,
    };
    let total = stores.events.count().await?;
    run.bulk(stop, total, &progress).await?;
    let folded_to = run.after;

    // First pass: everything, with the scratch where the live projector was.
    let position = stores.read_models.checkpoint(&live).await?;
    while run.step_until(position, None).await? {}
    let first = stores
        .read_models
        .compare_with(scratch, projections, None)
        .await?;
    let mut recheck = first.order_ids();

    // Second pass, with the live projector held off: the scratch caught up to where it
    // is now, and what differed or changed compared again.
    stores.read_models.begin_unit().await?;
    let second = async {
        let position = stores.read_models.checkpoint(&live).await?;
        while run.step_until(position, Some(&mut recheck)).await? {}
        let compared = stores
            .read_models
            .compare_with(scratch, projections, Some(recheck))
            .await?;
        let repaired = match (repair, compared.differences()) {
            (false, _) | (true, 0) => None,
            // The fold went further than the live projector: the scratch is not what
            // the log says at its position.
            (true, _) if folded_to > position => Some(Repair::Refused(format!(
                "the live projector is behind the log (at position {position} of {folded_to}): let `orders serve` catch up, then repair"
            ))),
            (true, _) => {
                let ids = compared.order_ids();
                let rows = stores
                    .read_models
                    .repair_from(scratch, projections, compared.clone())
                    .await?;
                let left = stores
                    .read_models
                    .compare_with(scratch, projections, Some(ids))
                    .await?;
                Some(Repair::Repaired {
                    rows,
                    still_different: left.differences() as u64,
                })
            }
        };
        Ok::<_, ReplayError>((position, compared, repaired))
    }
    .await;
    stores.read_models.end_unit(None).await?;
    let (position, mut compared, repair) = second?;

    // The fold went further than the live projector: those orders are not compared.
    let mut ahead = BTreeSet::new();
    let mut after = position;
    while after < folded_to {
        let rows = stores.events.read_stream(after, opts.chunk).await?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            break;
        };
        ahead.extend(
            rows.into_iter()
                .filter(|r| r.seq <= folded_to)
                .map(|r| r.aggregate_id),
        );
        after = last;
    }
    compared.orders.retain(|d| !ahead.contains(&d.order_id));
    compared.trackers.retain(|d| !ahead.contains(&d.order_id));
    if !ahead.is_empty() {
        // Their days cannot be compared either.
        compared.days.clear();
    }
    if let Some(g) = fresh_targets.get(ProjectionName::Orders)
        && projections.contains(&ProjectionName::Orders)
    {
        compared.orders_in_log = scratch.count_orders(ProjectionName::Orders, g).await?;
    }
    // The fold parked them in the scratch store, which goes with it.
    let undecodable_events = scratch
        .dead_letters(None, 0, UNDECODABLE_LISTED)
        .await?
        .into_iter()
        .map(|l| Undecodable {
            key: l.key,
            reason: l.reason,
        })
        .collect();
    let live_dead_letters = stores
        .read_models
        .count_dead_letters(Some(&format!("stream:{live}")))
        .await?;
    Ok(Verdict {
        generations,
        position,
        events_read: run.events_read,
        undecodable: run.parked,
        undecodable_events,
        not_yet_projected: ahead.len() as u64,
        live_dead_letters,
        compared,
        repair,
        seconds: started.elapsed().as_secs_f64(),
    })
}
