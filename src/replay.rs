//! Rebuilding projections from the local event log (blue/green): build fresh generations
//! while the live projector keeps serving the active ones, catch up with what was appended
//! meanwhile, and switch readers in one transaction. Never starts a workflow, publishes,
//! enqueues or emails: it only reads the log and writes read-model tables.

use crate::dir_lock::DirLock;
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::ports::{ReadModelError, StoreError};
use orders_domain::projection::ProjectionName;
use orders_local::store::read_models::{replay_checkpoint_name, retired_checkpoint_name};
use orders_local::store::{
    BadRow, BulkControl, BulkError, BulkRead, LocalStores, NewDeadLetter, StreamRow, Targets,
};
use orders_local::tailer::TailerConfig;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const DEAD_LETTER_SOURCE: &str = "replay";

/// The file a local replay locks for its whole run.
const LOCK_FILE: &str = "replay.lock";

/// The lock on `<data dir>/replay.lock`, held by a local replay while it runs: a second
/// replay, or dropping the generation one is building, is refused meanwhile.
#[derive(Debug)]
pub struct ReplayLock {
    _lock: DirLock,
    /// When [`ReplayLock::say_progress`] last wrote, and at which step.
    said: Option<(Instant, Option<ReplayStep>)>,
}

/// How often a running replay rewrites its lock's description.
const SAY_EVERY: Duration = Duration::from_secs(1);

impl ReplayLock {
    /// The lock, or `None` when a replay holds it. Taken, it says nothing (not what its
    /// last holder said) until described.
    pub fn try_acquire(data_dir: &Path) -> std::io::Result<Option<ReplayLock>> {
        let Some(lock) = DirLock::try_acquire(&data_dir.join(LOCK_FILE))? else {
            return Ok(None);
        };
        let mut lock = ReplayLock {
            _lock: lock,
            said: None,
        };
        lock.describe("")?;
        Ok(Some(lock))
    }

    /// Whether a replay holds the lock now.
    pub fn running(data_dir: &Path) -> std::io::Result<bool> {
        DirLock::held(&data_dir.join(LOCK_FILE))
    }

    /// Says what holds the lock and how far it is, for whoever finds it taken.
    pub fn describe(&mut self, holder: &str) -> std::io::Result<()> {
        self._lock.describe(holder)
    }

    /// Describes the lock as `holder` and how far `p` is: when the step changes, else at
    /// most once a second (a write of a few bytes, from the progress callback).
    pub fn say_progress(&mut self, holder: &str, p: ReplayProgress) -> std::io::Result<()> {
        let due = self
            .said
            .is_none_or(|(at, step)| step != p.step || at.elapsed() >= SAY_EVERY);
        if !due {
            return Ok(());
        }
        self.said = Some((Instant::now(), p.step));
        self.describe(&format!("{holder}: {}", p.describe()))
    }

    /// What the process holding the lock said of itself ([`ReplayLock::describe`]); `None`
    /// when nothing holds it (the text a finished holder left is not news).
    pub fn holder(data_dir: &Path) -> std::io::Result<Option<String>> {
        Ok(Self::running(data_dir)?
            .then(|| DirLock::holder(&data_dir.join(LOCK_FILE)))
            .flatten())
    }
}

/// Events per transaction of a catch-up, unless `--chunk` says otherwise.
pub const DEFAULT_CHUNK: usize = 5_000;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub projections: Vec<ProjectionName>,
    pub resume: bool,
    pub drop_old: bool,
    pub skip_undecodable: bool,
    /// Events per transaction.
    pub chunk: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationSwitch {
    pub projection: ProjectionName,
    pub from: Option<u32>,
    pub to: u32,
    pub dropped_old: bool,
}

#[derive(Debug, Clone)]
pub struct ReplaySummary {
    pub events_read: u64,
    pub orders_rebuilt: u64,
    pub parked: u64,
    pub seconds: f64,
    pub switches: Vec<GenerationSwitch>,
}

impl ReplaySummary {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events_read as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// What a replay reports as it goes: events replayed (read and folded; in a fresh
/// build, their orders' rows written), of `total` (the log's length at the start, or more
/// if it grew meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayProgress {
    pub done: u64,
    pub total: u64,
    /// What it does meanwhile when no count of events moves; `None` while it reads them.
    pub step: Option<ReplayStep>,
}

impl ReplayProgress {
    /// "500000 of 1001143 events (50 %)", and the step past them if at one.
    pub fn describe(&self) -> String {
        let share = if self.total > 0 {
            100.0 * self.done as f64 / self.total as f64
        } else {
            100.0
        };
        let mut text = format!("{} of {} events ({share:.0} %)", self.done, self.total);
        if let Some(step) = self.step {
            text.push_str(&format!(", {}", step.describe()));
        }
        text
    }
}

/// The steps of a replay that read no events: on a large log each takes seconds, and a
/// count standing at its end would look like a hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStep {
    /// Every row is written: the days and the customer index (a sort) of the new
    /// generations, or of a verify's scratch copy.
    Completing,
    /// The last events appended meanwhile and the switch, in one transaction (the live
    /// projector waits for it).
    Switching,
    /// The generations readers left, with `--drop-old`.
    DroppingOld,
}

impl ReplayStep {
    pub fn describe(self) -> &'static str {
        match self {
            ReplayStep::Completing => "finishing the rebuilt read models (days, customer index)",
            ReplayStep::Switching => "switching readers",
            ReplayStep::DroppingOld => "dropping the old generations",
        }
    }
}

/// What a replay would do (`--dry-run`).
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    pub events: u64,
    pub steps: Vec<(ProjectionName, Option<u32>, u32)>,
    pub resuming_from: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "event {key} does not decode: {reason} (fix it, or pass --skip-undecodable to park it)"
    )]
    Undecodable { key: String, reason: String },
    #[error("event {key} cannot be projected: {reason}")]
    Projection { key: String, reason: String },
    #[error(
        "a replay of {projection} into generation {generation} was interrupted; continue it with --resume, or abandon it with `orders projections drop {projection} {generation}`"
    )]
    Interrupted {
        projection: &'static str,
        generation: u32,
    },
    #[error("nothing to resume: no interrupted replay of {0}")]
    NothingToResume(&'static str),
    #[error("stopped; continue with --resume (nothing was switched)")]
    Stopped,
    #[error("{projection} has no generation {generation} (see `orders projections status`)")]
    NoGeneration {
        projection: &'static str,
        generation: u32,
    },
    #[error("{projection} generation {generation} is already the active one")]
    AlreadyActive {
        projection: &'static str,
        generation: u32,
    },
    #[error(
        "{projection} generation {generation} is an unfinished replay's: continue it with `orders replay --projection {projection} --resume` (which switches to it), or abandon it with `orders projections drop {projection} {generation}`"
    )]
    Unfinished {
        projection: &'static str,
        generation: u32,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

/// The generations a replay writes: resumed ones, or fresh ones.
async fn targets(
    stores: &LocalStores,
    opts: &ReplayOptions,
    create: bool,
) -> Result<Vec<(ProjectionName, Option<u32>, u32)>, ReplayError> {
    let generations = stores.read_models.generations().await?;
    let mut out = vec![];
    for &p in &opts.projections {
        let active = generations
            .iter()
            .find(|g| g.projection == p && g.status == "active")
            .map(|g| g.generation);
        let building = generations
            .iter()
            .filter(|g| g.projection == p && g.status == "building")
            .map(|g| g.generation)
            .max();
        let next = generations
            .iter()
            .filter(|g| g.projection == p)
            .map(|g| g.generation)
            .max()
            .unwrap_or(0)
            + 1;
        let target = match (opts.resume, building) {
            (true, Some(g)) => g,
            (true, None) => return Err(ReplayError::NothingToResume(p.as_str())),
            (false, Some(g)) => {
                return Err(ReplayError::Interrupted {
                    projection: p.as_str(),
                    generation: g,
                });
            }
            (false, None) if create => stores.read_models.create_generation(p).await?,
            (false, None) => next,
        };
        out.push((p, active, target));
    }
    Ok(out)
}

fn checkpoint_name(steps: &[(ProjectionName, Option<u32>, u32)]) -> String {
    let targets: Vec<(ProjectionName, u32)> = steps.iter().map(|(p, _, g)| (*p, *g)).collect();
    replay_checkpoint_name(&targets)
}

pub async fn plan(stores: &LocalStores, opts: &ReplayOptions) -> Result<ReplayPlan, ReplayError> {
    let steps = targets(stores, opts, false).await?;
    let resuming_from = if opts.resume {
        Some(
            stores
                .read_models
                .checkpoint(&checkpoint_name(&steps))
                .await?,
        )
    } else {
        None
    };
    Ok(ReplayPlan {
        events: stores.events.count().await?,
        steps,
        resuming_from,
    })
}

fn key_of(row: &StreamRow) -> String {
    key(&row.aggregate_id, row.version, row.seq)
}

fn key(aggregate_id: &str, version: u64, seq: u64) -> String {
    format!("{aggregate_id}#v{version} (seq {seq})")
}

pub(crate) struct Run<'a> {
    pub(crate) stores: &'a LocalStores,
    pub(crate) opts: &'a ReplayOptions,
    pub(crate) targets: Targets,
    pub(crate) checkpoint: String,
    /// The last log position applied.
    pub(crate) after: u64,
    pub(crate) events_read: u64,
    pub(crate) parked: u64,
}

impl Run<'_> {
    /// The next rows of the log (up to position `until`), decoded; undecodable ones are
    /// parked or stop the run.
    async fn next_chunk(
        &mut self,
        limit: usize,
        until: u64,
    ) -> Result<Option<(u64, Vec<(EventEnvelope, OrderEvent)>, Vec<String>)>, ReplayError> {
        let mut rows = self.stores.events.read_stream(self.after, limit).await?;
        rows.retain(|r| r.seq <= until);
        let Some(last) = rows.last().map(|r| r.seq) else {
            return Ok(None);
        };
        let mut batch: Vec<(EventEnvelope, OrderEvent)> = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let decoded = row
                .envelope
                .clone()
                .and_then(|e| e.decode().map(|ev| (e, ev)).map_err(|err| err.to_string()));
            match decoded {
                Ok(pair) => {
                    keys.push(key_of(row));
                    batch.push(pair);
                }
                Err(reason) if self.opts.skip_undecodable => {
                    self.stores
                        .read_models
                        .park(
                            NewDeadLetter {
                                source: DEAD_LETTER_SOURCE.into(),
                                key: key_of(row),
                                reason,
                                record: row.raw.to_string(),
                            },
                            None,
                        )
                        .await?;
                    self.parked += 1;
                }
                Err(reason) => {
                    return Err(ReplayError::Undecodable {
                        key: key_of(row),
                        reason,
                    });
                }
            }
        }
        self.events_read += rows.len() as u64;
        Ok(Some((last, batch, keys)))
    }

    /// Applies the next chunk through the store; `false` when the log is exhausted.
    async fn step(&mut self) -> Result<bool, ReplayError> {
        self.step_until(u64::MAX, None).await
    }

    /// Applies the next chunk of the log up to position `until` through the store, adding
    /// the orders it touched to `touched`; `false` when there is nothing more.
    pub(crate) async fn step_until(
        &mut self,
        until: u64,
        touched: Option<&mut std::collections::BTreeSet<String>>,
    ) -> Result<bool, ReplayError> {
        let Some((last, batch, keys)) = self.next_chunk(self.opts.chunk, until).await? else {
            return Ok(false);
        };
        if let Some(touched) = touched {
            touched.extend(batch.iter().map(|(e, _)| e.aggregate_id.clone()));
        }
        let results = self
            .stores
            .read_models
            .apply_many(Some(self.targets), batch)
            .await?;
        for (i, r) in results.into_iter().enumerate() {
            if let Err(e) = r {
                return Err(ReplayError::Projection {
                    key: keys.get(i).cloned().unwrap_or_default(),
                    reason: e.to_string(),
                });
            }
        }
        self.after = last;
        self.stores
            .read_models
            .set_checkpoint(&self.checkpoint, last)
            .await?;
        Ok(true)
    }

    /// Catches the targets up chunk by chunk (a stop is seen between chunks), then
    /// switches: one write transaction that first applies whatever was appended since,
    /// then makes every target the active generation and forgets this run's checkpoint
    /// (nothing resumes a switched run). The live projector (in this or another process)
    /// waits for it, so no event lands in the old generation only.
    async fn catch_up_and_switch(
        &mut self,
        total: u64,
        stop: &AtomicBool,
        progress: &impl Fn(ReplayProgress),
    ) -> Result<(), ReplayError> {
        while self.step().await? {
            progress(reading(self.events_read, total));
            if stop.load(Ordering::Relaxed) {
                return Err(ReplayError::Stopped);
            }
        }
        let read_models = &self.stores.read_models;
        progress(stepping(ReplayStep::Switching, self.events_read, total));
        read_models.begin_unit().await?;
        let switched = async {
            while self.step().await? {}
            let live = TailerConfig::default().name;
            for p in ProjectionName::ALL {
                if let Some(g) = self.targets.get(p) {
                    read_models.activate_generation(p, g, &live).await?;
                }
            }
            read_models.delete_checkpoint(&self.checkpoint).await?;
            Ok::<_, ReplayError>(())
        }
        .await;
        read_models.end_unit(None).await?;
        switched?;
        progress(reading(self.events_read, self.events_read));
        Ok(())
    }

    /// A fresh build: folds the whole log on every core, one order at a time in order-id
    /// order, and writes each order's final rows once while later orders are folded (one
    /// read and one write per event would dominate). Rows are committed as they go, but
    /// the checkpoint only with the last ones: an interruption leaves it at the start.
    pub(crate) async fn bulk(
        &mut self,
        stop: &AtomicBool,
        total: u64,
        progress: &impl Fn(ReplayProgress),
    ) -> Result<(), ReplayError> {
        let control = Arc::new(BulkControl::default());
        let read = BulkRead {
            targets: self.targets,
            skip_undecodable: self.opts.skip_undecodable,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let stopped = || stop.load(Ordering::Relaxed);
        control.stop.store(stopped(), Ordering::Relaxed);
        let rebuild = self
            .stores
            .rebuild(read, &self.checkpoint, dead_letter, control.clone());
        tokio::pin!(rebuild);
        let base = self.events_read;
        let started = Instant::now();
        let done = loop {
            tokio::select! {
                done = &mut rebuild => break done,
                () = tokio::time::sleep(PROGRESS_EVERY) => {
                    control.stop.store(stopped(), Ordering::Relaxed);
                    let n = base + control.events_done.load(Ordering::Relaxed);
                    progress(if control.completing.load(Ordering::Relaxed) {
                        stepping(ReplayStep::Completing, n, total)
                    } else {
                        reading(n, total)
                    });
                }
            }
        };
        let done = done.map_err(|e| match e {
            BulkError::Undecodable(r) => ReplayError::Undecodable {
                key: key(&r.aggregate_id, r.version, r.seq),
                reason: r.reason,
            },
            BulkError::Projection(r) => ReplayError::Projection {
                key: key(&r.aggregate_id, r.version, r.seq),
                reason: r.reason,
            },
            BulkError::Stopped => ReplayError::Stopped,
            BulkError::Store(e) => ReplayError::Store(e),
        })?;
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "replay: log folded and written"
        );
        self.events_read += done.events;
        self.parked += done.parked;
        progress(reading(self.events_read, total));
        self.after = done.last_seq;
        // A stop that came in while the last rows were written still means "switch
        // nothing" (a resumed run catches up from the checkpoint and switches).
        if stopped() {
            return Err(ReplayError::Stopped);
        }
        Ok(())
    }
}

/// A row the bulk phase parked, as its dead letter (the same key as the chunked path's).
fn dead_letter(r: BadRow) -> NewDeadLetter {
    NewDeadLetter {
        source: DEAD_LETTER_SOURCE.into(),
        key: key(&r.aggregate_id, r.version, r.seq),
        reason: r.reason,
        record: r.record,
    }
}

fn reading(done: u64, total: u64) -> ReplayProgress {
    ReplayProgress {
        done,
        total: total.max(done),
        step: None,
    }
}

fn stepping(step: ReplayStep, done: u64, total: u64) -> ReplayProgress {
    ReplayProgress {
        step: Some(step),
        ..reading(done, total)
    }
}

/// How often the bulk phase reports progress and looks at the stop flag.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Rebuilds the chosen projections. `progress` is called after every chunk (and a few
/// times a second while a fresh build folds and writes); setting `stop` ends the run after
/// the chunk in flight (resumable).
pub async fn replay(
    stores: &LocalStores,
    opts: &ReplayOptions,
    stop: &AtomicBool,
    progress: impl Fn(ReplayProgress),
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let steps = targets(stores, opts, true).await?;
    let mut t = Targets::default();
    for (p, _, g) in &steps {
        t.set(*p, Some(*g));
    }
    let checkpoint = checkpoint_name(&steps);
    // Fresh generations start from the first event whatever a checkpoint of the same name
    // says (one a data dir kept from before switched replays deleted theirs).
    let after = if opts.resume {
        stores.read_models.checkpoint(&checkpoint).await?
    } else {
        stores.read_models.delete_checkpoint(&checkpoint).await?;
        0
    };
    let total = stores.events.count().await?;
    let mut run = Run {
        stores,
        opts,
        targets: t,
        checkpoint,
        after,
        events_read: after.min(total),
        parked: 0,
    };
    progress(reading(run.events_read, total));
    // Bulk: the live projector keeps serving the active generations meanwhile. Without a
    // checkpoint (a fresh build, or one stopped before its bulk phase wrote its last rows)
    // the log is streamed once into the new generations; after that, the catch-up goes
    // through the store chunk by chunk.
    if after == 0 {
        run.bulk(stop, total, &progress).await?;
    }
    run.catch_up_and_switch(total, stop, &progress).await?;

    let mut switches = vec![];
    let mut orders_rebuilt = 0;
    let mut dropped_any = false;
    for (p, from, to) in steps {
        orders_rebuilt = orders_rebuilt.max(stores.read_models.count_orders(p, to).await?);
        let mut dropped_old = false;
        if opts.drop_old {
            for g in stores.read_models.generations().await? {
                if g.projection == p && g.generation != to && g.status != "active" {
                    if !dropped_any {
                        dropped_any = true;
                        progress(stepping(
                            ReplayStep::DroppingOld,
                            run.events_read,
                            run.events_read,
                        ));
                    }
                    stores.read_models.drop_generation(p, g.generation).await?;
                    dropped_old = true;
                }
            }
        }
        switches.push(GenerationSwitch {
            projection: p,
            from,
            to,
            dropped_old,
        });
    }
    if dropped_any {
        // The last word is the count again: every event replayed.
        progress(reading(run.events_read, run.events_read));
    }
    Ok(ReplaySummary {
        events_read: run.events_read,
        orders_rebuilt,
        parked: run.parked,
        seconds: started.elapsed().as_secs_f64(),
        switches,
    })
}

/// Where switching back to a retired generation starts catching it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpStart {
    /// The position it was retired at (the live projector's then).
    Retired(u64),
    /// Before the first record the live projector parked: the generation lacks it.
    Parked(u64),
    /// The start of the log: it was retired before positions were recorded.
    Unrecorded,
}

impl CatchUpStart {
    /// The log position the catch-up reads after.
    pub fn after(self) -> u64 {
        match self {
            CatchUpStart::Retired(seq) => seq,
            CatchUpStart::Parked(seq) => seq.saturating_sub(1),
            CatchUpStart::Unrecorded => 0,
        }
    }
}

/// What switching back to a retired generation does, or did.
#[derive(Debug, Clone)]
pub struct SwitchBack {
    pub projection: ProjectionName,
    /// The active generation it replaces (retired by the switch).
    pub from: Option<u32>,
    pub to: u32,
    pub start: CatchUpStart,
    /// The log's last position when it was planned.
    pub head: u64,
    /// Events read by the catch-up (0 in a plan).
    pub events_read: u64,
    pub parked: u64,
    pub seconds: f64,
}

/// Plans [`switch_back`]: checks that `generation` is retired and finds where its catch-up
/// starts.
pub async fn plan_switch_back(
    stores: &LocalStores,
    projection: ProjectionName,
    generation: u32,
) -> Result<SwitchBack, ReplayError> {
    let generations = stores.read_models.generations().await?;
    let found = generations
        .iter()
        .find(|g| g.projection == projection && g.generation == generation);
    let (p, n) = (projection.as_str(), generation);
    match found.map(|g| g.status.as_str()) {
        None => {
            return Err(ReplayError::NoGeneration {
                projection: p,
                generation: n,
            });
        }
        Some("active") => {
            return Err(ReplayError::AlreadyActive {
                projection: p,
                generation: n,
            });
        }
        Some("retired") => {}
        Some(_) => {
            return Err(ReplayError::Unfinished {
                projection: p,
                generation: n,
            });
        }
    }
    let from = generations
        .iter()
        .find(|g| g.projection == projection && g.status == "active")
        .map(|g| g.generation);
    let name = retired_checkpoint_name(projection, generation);
    let retired_at = stores
        .read_models
        .checkpoints()
        .await?
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, seq)| seq);
    // A record the live projector parked is missing from the generation it was active
    // for; started after it, the catch-up would find a gap in that order's versions.
    let parked = stores
        .read_models
        .smallest_parked_key(&TailerConfig::default().dead_letter_source())
        .await?
        .and_then(|key| key.parse::<u64>().ok());
    let start = match (retired_at, parked) {
        (None, _) => CatchUpStart::Unrecorded,
        (Some(at), Some(seq)) if seq <= at => CatchUpStart::Parked(seq),
        (Some(at), _) => CatchUpStart::Retired(at),
    };
    Ok(SwitchBack {
        projection,
        from,
        to: generation,
        start,
        head: stores.events.last_seq().await?,
        events_read: 0,
        parked: 0,
        seconds: 0.0,
    })
}

/// Switches readers back to a retired generation of `projection` (blue/green's way back):
/// catches it up from where it was retired through the live projector's version-guarded
/// apply, then, in one write transaction that first applies whatever was appended
/// meanwhile, makes it the active one and retires the current one (which keeps its
/// position, so the way back again is the same command). Progress goes into the retired
/// generation's checkpoint as it goes: stopped, nothing is switched and the same call
/// continues from there. Like a replay, it fires no side effect.
pub async fn switch_back(
    stores: &LocalStores,
    projection: ProjectionName,
    generation: u32,
    skip_undecodable: bool,
    stop: &AtomicBool,
    progress: impl Fn(ReplayProgress),
) -> Result<SwitchBack, ReplayError> {
    let started = Instant::now();
    let mut plan = plan_switch_back(stores, projection, generation).await?;
    let opts = ReplayOptions {
        projections: vec![projection],
        resume: false,
        drop_old: false,
        skip_undecodable,
        chunk: DEFAULT_CHUNK,
    };
    let after = plan.start.after();
    let mut run = Run {
        stores,
        opts: &opts,
        targets: Targets::only(projection, generation),
        checkpoint: retired_checkpoint_name(projection, generation),
        after,
        events_read: 0,
        parked: 0,
    };
    run.catch_up_and_switch(plan.head.saturating_sub(after), stop, &progress)
        .await?;
    plan.events_read = run.events_read;
    plan.parked = run.parked;
    plan.seconds = started.elapsed().as_secs_f64();
    Ok(plan)
}
