//! The SQLite read-model store: `<data_dir>/read_models.db`. Holds the projections (in
//! generations, see [`super::projection`]), the stream checkpoints and the dead letters.
//!
//! Writes go through one connection behind a mutex: there is one projector, so it never
//! waits in practice, and SQLite would serialize writers anyway. Reads use a pool.
//!
//! **Units of work.** A commit per applied event would cost more than the fold itself
//! (every commit writes the touched pages to the WAL again). So the stream tailer opens a
//! unit around each batch it delivers ([`SqliteReadModels::begin_unit`]): every write in
//! between (each apply still all-or-nothing, in its own SAVEPOINT) joins one transaction,
//! which commits together with the tailer's checkpoint in [`SqliteReadModels::end_unit`].
//! Projections and checkpoint therefore move together: after a crash both are where they
//! were and the batch is simply delivered again. Readers see a batch when it commits
//! (a few milliseconds). Outside a unit every write commits on its own.

use super::projection::{self, Targets};
use super::sqlite::{self, Migration, PageSize, ReaderPool, to_i64, to_u64};
use super::{DbError, OpenError, SystemClock, blocking};
use crate::checkpoint::BackgroundCheckpoint;
use orders_domain::Timestamp;
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::ports::{ApplyOutcome, Clock, Page, ReadModelError, ReadModels};
use orders_domain::projection::{DailySales, OrderSummary, OrderView, ProjectionName};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

pub const READ_MODELS_DB: &str = "read_models.db";

/// The size of `read_models.db` ([`SqliteReadModels::space`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FileSpace {
    pub bytes: u64,
    /// Pages no table uses, reused by later writes.
    pub free_bytes: u64,
}

/// The page cache while a replay writes a whole generation (negative: KiB): room for a
/// few commits' dirty pages and the customer index's sort. Not the whole generation: every
/// page the cache keeps is fresh memory, faulted in and zeroed (a 1 GB cache cost 1.2 s of
/// system time and 11% of the wall time on a million-event replay).
const BULK_CACHE_KIB: i64 = -32 * 1024;

const MIGRATIONS: &[Migration] = &[
    |tx| {
        tx.execute_batch(
            "CREATE TABLE projection_generations (
             projection TEXT    NOT NULL,
             generation INTEGER NOT NULL,
             status     TEXT    NOT NULL CHECK (status IN ('building', 'active', 'retired')),
             created_at TEXT    NOT NULL,
             PRIMARY KEY (projection, generation)
         ) WITHOUT ROWID;
         -- The pointer readers follow: at most one active generation per projection.
         CREATE UNIQUE INDEX projection_generations_active
             ON projection_generations (projection) WHERE status = 'active';
         CREATE TABLE checkpoints (
             name TEXT    PRIMARY KEY,
             seq  INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE dead_letters (
             id        INTEGER PRIMARY KEY AUTOINCREMENT,
             source    TEXT NOT NULL, -- e.g. `stream:projector`, later `queue:fulfilment`
             key       TEXT NOT NULL, -- the record's id in its source (a sequence number)
             reason    TEXT NOT NULL,
             record    TEXT NOT NULL, -- the record as delivered (JSON)
             parked_at TEXT NOT NULL
         );
         CREATE INDEX dead_letters_by_source ON dead_letters (source, id);",
        )?;
        let now = SystemClock.now().to_string();
        for p in ProjectionName::ALL {
            projection::create_tables(tx, p, 1)?;
            tx.execute(
                "INSERT INTO projection_generations (projection, generation, status, created_at)
             VALUES (?1, 1, 'active', ?2)",
                params![p.as_str(), now],
            )?;
        }
        Ok(())
    },
    // A failed redrive leaves the letter, and says so: how many, when the last, and why.
    |tx| {
        tx.execute_batch(
            "ALTER TABLE dead_letters ADD COLUMN failed_redrives INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE dead_letters ADD COLUMN last_failed_at TEXT;
         ALTER TABLE dead_letters ADD COLUMN last_failure TEXT;",
        )
    },
];

/// The checkpoint of a replay into these generations: one per replay, so `--resume`
/// finds it, and a status can say which generations it is building.
pub fn replay_checkpoint_name(targets: &[(ProjectionName, u32)]) -> String {
    let parts: Vec<String> = targets
        .iter()
        .map(|(p, g)| format!("{}=g{g}", p.as_str()))
        .collect();
    format!("replay:{}", parts.join(","))
}

/// The generations a [`replay_checkpoint_name`] names; `None` for any other checkpoint.
pub fn replay_checkpoint_targets(name: &str) -> Option<Vec<(ProjectionName, u32)>> {
    name.strip_prefix("replay:")?
        .split(',')
        .map(|part| {
            let (p, g) = part.split_once("=g")?;
            Some((ProjectionName::parse(p)?, g.parse().ok()?))
        })
        .collect()
}

/// The checkpoint of a retired generation: the log position it is complete up to (the
/// live projector's when it was retired), so it can be caught up from there and switched
/// back to ([`SqliteReadModels::activate_generation`] writes it, and drops it again when
/// the generation comes back).
pub fn retired_checkpoint_name(projection: ProjectionName, generation: u32) -> String {
    format!("retired:{}=g{generation}", projection.as_str())
}

/// The generation a [`retired_checkpoint_name`] names; `None` for any other checkpoint.
pub fn retired_checkpoint_target(name: &str) -> Option<(ProjectionName, u32)> {
    let (p, g) = name.strip_prefix("retired:")?.split_once("=g")?;
    Some((ProjectionName::parse(p)?, g.parse().ok()?))
}

/// A record parked where an operator can see it, with why it could not be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: u64,
    pub source: String,
    pub key: String,
    pub reason: String,
    pub record: String,
    pub parked_at: Timestamp,
    /// Redrives that failed again (the letter stays; `reason` stays why it was parked).
    pub failed_redrives: u32,
    /// When the last of them failed, and why.
    pub last_failure: Option<(Timestamp, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    pub source: String,
    pub key: String,
    pub reason: String,
    pub record: String,
}

/// How a replay's bulk fold ended when it read the whole log: the rows it parked, and
/// the checkpoint to write with the last rows.
#[derive(Debug)]
pub struct BulkEnd {
    pub letters: Vec<NewDeadLetter>,
    pub checkpoint: String,
    pub seq: u64,
}

/// One generation of one projection, as `projection_generations` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub projection: ProjectionName,
    pub generation: u32,
    /// `building`, `active` or `retired`.
    pub status: String,
    pub created_at: Timestamp,
}

struct Inner {
    writer: Mutex<Writer>,
    /// One unit of work at a time: held from `begin_unit` to `end_unit`.
    unit_gate: Arc<Semaphore>,
    unit_permit: Mutex<Option<OwnedSemaphorePermit>>,
    readers: Arc<ReaderPool>,
    path: PathBuf,
    checkpoint: BackgroundCheckpoint,
}

/// The read-model store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteReadModels {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteReadModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReadModels")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteReadModels {
    /// Opens (creating and migrating if needed) `<data_dir>/read_models.db`. Blocking.
    pub fn open(data_dir: &Path) -> Result<Self, OpenError> {
        let path = data_dir.join(READ_MODELS_DB);
        let sql_err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        // Large pages: an order's view is over a kilobyte of JSON.
        let mut conn = sqlite::open_writer(&path, PageSize::Large).map_err(sql_err)?;
        sqlite::migrate(&mut conn, MIGRATIONS).map_err(|e| OpenError::migrate(&path, e))?;
        let pages = sqlite::checkpoint_pages(&conn).map_err(sql_err)?;
        let checkpoint = BackgroundCheckpoint::start(&mut conn, &path, pages)
            .map_err(|e| OpenError::checkpoint(&path, e))?;
        Ok(SqliteReadModels {
            inner: Arc::new(Inner {
                writer: Mutex::new(Writer { conn }),
                unit_gate: Arc::new(Semaphore::new(1)),
                unit_permit: Mutex::new(None),
                readers: Arc::new(ReaderPool::new(path.clone())),
                path,
                checkpoint,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` all-or-nothing on the writing connection: its own transaction, or a
    /// SAVEPOINT inside the open unit of work.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, ReadModelError> {
        let inner = self.inner.clone();
        Ok(blocking(move || {
            let mut w = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            w.atomically(f)
        })
        .await?)
    }

    /// Opens a unit of work (see the module docs). Units do not nest: while one is open
    /// another `begin_unit` waits for its `end_unit` (so a replay's switch holds off the
    /// live projector of the same process; across processes SQLite's write lock does).
    /// Writes made meanwhile by anyone through this store join the open unit. Every
    /// `begin_unit` that succeeded needs its [`end_unit`](Self::end_unit).
    pub async fn begin_unit(&self) -> Result<(), ReadModelError> {
        let permit = self
            .inner
            .unit_gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ReadModelError::Unavailable("the read-model store is closed".into()))?;
        let inner = self.inner.clone();
        blocking(move || {
            let w = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            if w.conn.is_autocommit() {
                w.conn.execute_batch("BEGIN IMMEDIATE")?;
            }
            Ok(())
        })
        .await?;
        *self
            .inner
            .unit_permit
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(permit);
        Ok(())
    }

    /// Closes the unit of work, moving `checkpoint` in the same transaction, and commits.
    /// On error nothing of the unit is kept (the caller delivers it again).
    pub async fn end_unit(&self, checkpoint: Option<(&str, u64)>) -> Result<(), ReadModelError> {
        let checkpoint = checkpoint.map(|(n, s)| (n.to_string(), s));
        let inner = self.inner.clone();
        let result = blocking(move || {
            let mut w = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let result = match &checkpoint {
                Some((name, seq)) => w.atomically(|conn| write_checkpoint(conn, name, *seq)),
                None => Ok(()),
            };
            if !w.conn.is_autocommit() {
                let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                if let Err(e) = w.conn.execute_batch(end) {
                    if !w.conn.is_autocommit() {
                        let _ = w.conn.execute_batch("ROLLBACK");
                    }
                    return Err(e.into());
                }
            }
            result
        })
        .await;
        // The next unit may start, whatever became of this one.
        self.inner
            .unit_permit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Ok(result?)
    }

    /// Whether this store has a unit of work open ([`begin_unit`](Self::begin_unit)).
    fn in_unit(&self) -> bool {
        self.inner
            .unit_permit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Runs `f` in one read transaction (a consistent snapshot) on a pooled connection.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, ReadModelError> {
        let readers = self.inner.readers.clone();
        Ok(sqlite::read(&readers, move |conn| {
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.finish()?;
            Ok(out)
        })
        .await?)
    }

    /// Every order, newest first, `limit` at a time (the console's list; the API lists
    /// one customer's orders only).
    pub async fn recent_orders(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<OrderSummary>, ReadModelError> {
        let cursor = cursor.map(str::to_string);
        self.read(move |conn| {
            let g = active(conn, ProjectionName::Orders)?;
            projection::recent_orders(conn, g, limit, cursor.as_deref())
        })
        .await
    }

    /// Compares the active generations of `projections` with the active ones of
    /// `fresh` (another store: the same projections folded afresh from the log), in one
    /// snapshot of each; with `only`, just those orders' rows. Inside an open unit of
    /// work ([`begin_unit`](Self::begin_unit)) it reads through the writing connection,
    /// so nothing this store's writers do can move under it.
    pub async fn compare_with(
        &self,
        fresh: &SqliteReadModels,
        projections: &[ProjectionName],
        only: Option<std::collections::BTreeSet<String>>,
    ) -> Result<super::Compared, ReadModelError> {
        let fresh_path = fresh.path().to_path_buf();
        let selected = projections.to_vec();
        let compare = move |conn: &Connection| -> Result<super::Compared, DbError> {
            against_fresh(conn, &fresh_path, &selected, |ours, fresh_conn, fresh| {
                super::compare::compare(conn, ours, fresh_conn, fresh, only.as_ref())
            })
        };
        if self.in_unit() {
            self.write(move |conn| compare(conn)).await
        } else {
            self.read(compare).await
        }
    }

    /// Rewrites the rows `compared` found different in the active generations from those
    /// of `fresh` (see [`compare_with`](Self::compare_with)); only inside an open unit of
    /// work, in which the comparison was made, so nothing moved in between.
    pub async fn repair_from(
        &self,
        fresh: &SqliteReadModels,
        projections: &[ProjectionName],
        compared: super::Compared,
    ) -> Result<super::compare::Repaired, ReadModelError> {
        if !self.in_unit() {
            return Err(ReadModelError::Unavailable(
                "a repair needs the unit of work its comparison was made in".into(),
            ));
        }
        let fresh_path = fresh.path().to_path_buf();
        let selected = projections.to_vec();
        self.write(move |conn| {
            against_fresh(conn, &fresh_path, &selected, |ours, fresh_conn, fresh| {
                super::compare::repair(conn, ours, fresh_conn, fresh, &compared)
            })
        })
        .await
    }

    // ---- generations (blue/green rebuilds) ----

    /// The generation of each projection that readers and the live projector use.
    pub async fn active_targets(&self) -> Result<Targets, ReadModelError> {
        self.read(active_targets).await
    }

    pub async fn generations(&self) -> Result<Vec<Generation>, ReadModelError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT projection, generation, status, created_at FROM projection_generations
                 ORDER BY projection, generation",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (p, generation, status, at) = row?;
                out.push(Generation {
                    projection: ProjectionName::parse(&p)
                        .ok_or_else(|| DbError::Corrupt(format!("unknown projection `{p}`")))?,
                    generation,
                    status,
                    created_at: Timestamp::parse(&at)
                        .ok_or_else(|| DbError::Corrupt(format!("bad time `{at}`")))?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Creates empty tables for a new generation of `projection`, in state `building`:
    /// readers keep using the active one until [`activate_generation`](Self::activate_generation).
    pub async fn create_generation(
        &self,
        projection: ProjectionName,
    ) -> Result<u32, ReadModelError> {
        self.write(move |conn| {
            let last: u32 = conn.query_row(
                "SELECT COALESCE(MAX(generation), 0) FROM projection_generations
                 WHERE projection = ?1",
                [projection.as_str()],
                |r| r.get(0),
            )?;
            let g = last + 1;
            projection::create_tables(conn, projection, g)?;
            conn.execute(
                "INSERT INTO projection_generations (projection, generation, status, created_at)
                 VALUES (?1, ?2, 'building', ?3)",
                params![projection.as_str(), g, SystemClock.now().to_string()],
            )?;
            Ok(g)
        })
        .await
    }

    /// Makes `generation` the active one and retires the previous, atomically: every
    /// later apply and read uses the new one. A replay should have caught up to the live
    /// projector's checkpoint with the live tailer paused; an event applied to the old
    /// generation after the catch-up would be missing from the new one (its successors
    /// would then report a gap rather than fold out of order).
    ///
    /// The retired generation keeps the position of `live_checkpoint` (the consumer that
    /// kept it up to date, whose units commit rows and checkpoint together) under its
    /// [`retired_checkpoint_name`]: a later switch back catches it up from there.
    pub async fn activate_generation(
        &self,
        projection: ProjectionName,
        generation: u32,
        live_checkpoint: &str,
    ) -> Result<(), ReadModelError> {
        let live_checkpoint = live_checkpoint.to_string();
        self.write(move |conn| {
            let exists: Option<String> = conn
                .query_row(
                    "SELECT status FROM projection_generations
                     WHERE projection = ?1 AND generation = ?2",
                    params![projection.as_str(), generation],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_none() {
                return Err(DbError::Corrupt(format!(
                    "{} has no generation {generation}",
                    projection.as_str()
                )));
            }
            if let Some(old) = active_targets(conn)?.get(projection)
                && old != generation
            {
                let position = read_checkpoint(conn, &live_checkpoint)?;
                write_checkpoint(conn, &retired_checkpoint_name(projection, old), position)?;
            }
            conn.execute(
                "UPDATE projection_generations SET status = 'retired'
                 WHERE projection = ?1 AND status = 'active'",
                [projection.as_str()],
            )?;
            conn.execute(
                "UPDATE projection_generations SET status = 'active'
                 WHERE projection = ?1 AND generation = ?2",
                params![projection.as_str(), generation],
            )?;
            delete_checkpoint(conn, &retired_checkpoint_name(projection, generation))?;
            Ok(())
        })
        .await
    }

    /// Drops a generation's tables; the active one is refused.
    pub async fn drop_generation(
        &self,
        projection: ProjectionName,
        generation: u32,
    ) -> Result<(), ReadModelError> {
        self.write(move |conn| {
            let status: Option<String> = conn
                .query_row(
                    "SELECT status FROM projection_generations
                     WHERE projection = ?1 AND generation = ?2",
                    params![projection.as_str(), generation],
                    |r| r.get(0),
                )
                .optional()?;
            if status.as_deref() == Some("active") {
                return Err(DbError::Corrupt(format!(
                    "{} generation {generation} is active",
                    projection.as_str()
                )));
            }
            projection::drop_tables(conn, projection, generation)?;
            conn.execute(
                "DELETE FROM projection_generations WHERE projection = ?1 AND generation = ?2",
                params![projection.as_str(), generation],
            )?;
            // A dropped building generation was an interrupted replay's: its checkpoint
            // goes too, or a later replay that gets the same generation number would
            // resume from it over rows that are no longer there.
            let names: Vec<String> = conn
                .prepare_cached("SELECT name FROM checkpoints WHERE name LIKE 'replay:%'")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for name in names {
                let named = replay_checkpoint_targets(&name)
                    .is_some_and(|t| t.contains(&(projection, generation)));
                if named {
                    delete_checkpoint(conn, &name)?;
                }
            }
            delete_checkpoint(conn, &retired_checkpoint_name(projection, generation))?;
            Ok(())
        })
        .await
    }

    /// How big `read_models.db` is and how much of it is free: the pages of dropped
    /// generations, which SQLite reuses (the next replay writes into them) but keeps.
    pub async fn space(&self) -> Result<FileSpace, ReadModelError> {
        self.read(|conn| {
            let pragma = |name: &str| -> Result<u64, DbError> {
                let n: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
                to_u64(n, name).map_err(DbError::Corrupt)
            };
            let page = pragma("page_size")?;
            Ok(FileSpace {
                bytes: pragma("page_count")? * page,
                free_bytes: pragma("freelist_count")? * page,
            })
        })
        .await
    }

    /// Gives the free pages back to the disk (`VACUUM`). It rewrites the whole file, so it
    /// wants the store to itself: no live projector, no replay (the caller holds their
    /// locks). Readers elsewhere keep reading meanwhile (WAL).
    pub async fn compact(&self) -> Result<(), ReadModelError> {
        let inner = self.inner.clone();
        Ok(blocking(move || {
            let w = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            // VACUUM builds a copy of the file first: on disk, not in memory as the
            // writer's other temporary data.
            w.conn
                .execute_batch("PRAGMA temp_store = FILE; VACUUM; PRAGMA temp_store = MEMORY;")?;
            // The new file went through the WAL: fold it in and give the WAL's space back.
            w.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await?)
    }

    /// Orders that have a row in one generation of a projection.
    pub async fn count_orders(
        &self,
        projection: ProjectionName,
        generation: u32,
    ) -> Result<u64, ReadModelError> {
        self.read(move |conn| {
            let table = match projection {
                ProjectionName::Orders => "orders",
                ProjectionName::DailySales => "sales_trackers",
            };
            let n: i64 = conn.query_row(
                &format!("SELECT COUNT(*) FROM {table}_g{generation}"),
                [],
                |r| r.get(0),
            )?;
            to_u64(n, "count").map_err(DbError::Corrupt)
        })
        .await
    }

    /// The same fold as [`ReadModels::apply`], into chosen generations (a replay target).
    pub async fn apply_to(
        &self,
        targets: Targets,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> Result<ApplyOutcome, ReadModelError> {
        let (envelope, event) = (envelope.clone(), event.clone());
        self.write(move |conn| projection::apply(conn, &targets, &envelope, &event))
            .await
    }

    /// Writes a replay's bulk phase into `targets` on the caller's thread (blocking; the
    /// fold runs on other threads meanwhile): `feed` hands the folded batches to the
    /// [`projection::BulkSave`] as they come, then says how the fold ended: `Some(end)`
    /// completes the generations (days, customer index) and writes the dead letters and
    /// the checkpoint with the last rows; `None` (stopped or failed) leaves them out.
    /// Rows are committed every few megabytes along the way, so an interrupted save leaves
    /// rows in generations nobody reads yet, but no letter and no checkpoint: a resumed
    /// replay streams the log again and rewrites them. Returns whether the save completed.
    pub(crate) fn save_bulk(
        &self,
        targets: Targets,
        feed: impl FnOnce(&mut projection::BulkSave<'_>) -> Result<Option<BulkEnd>, DbError>,
    ) -> Result<bool, DbError> {
        let mut w = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        // The commits below outrun any checkpoint: the background thread copies the
        // WAL while rows are written, and the writer does not stop to help.
        let _bulk = self.inner.checkpoint.bulk();
        // With the default 2 MB page cache SQLite would spill dirty pages to the WAL
        // between commits and write many of them again and again (and building the
        // customer index sorts the whole table). The cache shrinks back afterwards.
        let before: i64 = w
            .conn
            .pragma_query_value(None, "cache_size", |r| r.get(0))?;
        w.conn.pragma_update(None, "cache_size", BULK_CACHE_KIB)?;
        // The customer index's sort runs on a second thread too.
        w.conn.pragma_update(None, "threads", 2)?;
        let started = std::time::Instant::now();
        // Inside a unit (never the case for a replay) everything stays in its one
        // transaction.
        let own = w.conn.is_autocommit();
        // Between chunks the lock is left free for a moment: a live projector (in `orders
        // serve`) writes in between instead of waiting for the whole replay.
        let commit = |conn: &Connection| -> Result<(), DbError> {
            if own {
                sqlite::yield_write_lock(conn)?;
            }
            Ok(())
        };
        let saved = w.atomically(|conn| {
            let mut save =
                projection::BulkSave::start(conn, targets, projection::BULK_COMMIT_BYTES, &commit)?;
            let Some(end) = feed(&mut save)? else {
                return Ok(false);
            };
            tracing::debug!(
                seconds = started.elapsed().as_secs_f64(),
                "bulk: rows inserted"
            );
            save.finish()?;
            for letter in &end.letters {
                insert_dead_letter(conn, letter)?;
            }
            write_checkpoint(conn, &end.checkpoint, end.seq)?;
            Ok(true)
        });
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "bulk: committed");
        w.conn.pragma_update(None, "threads", 0)?;
        w.conn.pragma_update(None, "cache_size", before)?;
        saved
    }

    /// Applies many events in one transaction, each all-or-nothing (a SAVEPOINT each);
    /// for replay, where one commit per event would dominate. Results are per event.
    pub async fn apply_many(
        &self,
        targets: Option<Targets>,
        events: Vec<(EventEnvelope, OrderEvent)>,
    ) -> Result<Vec<Result<ApplyOutcome, ReadModelError>>, ReadModelError> {
        self.write(move |conn| apply_each(conn, targets, &events, false))
            .await
    }

    // ---- checkpoints ----

    /// The last stream `seq` a consumer has finished with (0 if it never ran).
    pub async fn checkpoint(&self, name: &str) -> Result<u64, ReadModelError> {
        let name = name.to_string();
        self.read(move |conn| read_checkpoint(conn, &name)).await
    }

    pub async fn set_checkpoint(&self, name: &str, seq: u64) -> Result<(), ReadModelError> {
        let name = name.to_string();
        self.write(move |conn| write_checkpoint(conn, &name, seq))
            .await
    }

    /// Forgets a checkpoint (a replay that switched, or one that starts afresh).
    pub async fn delete_checkpoint(&self, name: &str) -> Result<(), ReadModelError> {
        let name = name.to_string();
        self.write(move |conn| delete_checkpoint(conn, &name)).await
    }

    /// Every checkpoint, by name: the live consumers' and those of unfinished replays.
    pub async fn checkpoints(&self) -> Result<Vec<(String, u64)>, ReadModelError> {
        self.read(|conn| {
            named_numbers(
                conn,
                "SELECT name, seq FROM checkpoints ORDER BY name",
                "checkpoint",
            )
        })
        .await
    }

    // ---- dead letters ----

    /// Parks a record; with `checkpoint`, also moves that checkpoint past it in the same
    /// transaction, so a crash can neither lose the record nor park it twice.
    pub async fn park(
        &self,
        letter: NewDeadLetter,
        checkpoint: Option<(&str, u64)>,
    ) -> Result<u64, ReadModelError> {
        let checkpoint = checkpoint.map(|(n, s)| (n.to_string(), s));
        self.write(move |conn| {
            let id = insert_dead_letter(conn, &letter)?;
            if let Some((name, seq)) = checkpoint {
                write_checkpoint(conn, &name, seq)?;
            }
            Ok(id)
        })
        .await
    }

    /// Dead letters oldest first, from `source` if given, after id `after` (for paging).
    pub async fn dead_letters(
        &self,
        source: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, ReadModelError> {
        let source = source.map(str::to_string);
        let after = to_i64(after, "id").map_err(ReadModelError::Corrupt)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, source, key, reason, record, parked_at, failed_redrives,
                        last_failed_at, last_failure
                 FROM dead_letters
                 WHERE (?1 IS NULL OR source = ?1) AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![source, after, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })?;
            let time = |at: &str| {
                Timestamp::parse(at).ok_or_else(|| DbError::Corrupt(format!("bad time `{at}`")))
            };
            let mut out = Vec::new();
            for row in rows {
                let (id, source, key, reason, record, at, failed, failed_at, failure) = row?;
                out.push(DeadLetter {
                    id: to_u64(id, "id").map_err(DbError::Corrupt)?,
                    parked_at: time(&at)?,
                    source,
                    key,
                    reason,
                    record,
                    failed_redrives: u32::try_from(failed).unwrap_or(u32::MAX),
                    last_failure: match (failed_at, failure) {
                        (Some(at), Some(why)) => Some((time(&at)?, why)),
                        _ => None,
                    },
                });
            }
            Ok(out)
        })
        .await
    }

    /// The smallest key parked from `source` (keys that are zero-padded positions, as the
    /// stream tailer's are, sort like the positions).
    pub async fn smallest_parked_key(
        &self,
        source: &str,
    ) -> Result<Option<String>, ReadModelError> {
        let source = source.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT MIN(key) FROM dead_letters WHERE source = ?1")?
                .query_row([source], |r| r.get(0))?)
        })
        .await
    }

    /// Removes a dead letter (a redrive processed it).
    pub async fn delete_dead_letter(&self, id: u64) -> Result<(), ReadModelError> {
        let id = to_i64(id, "id").map_err(ReadModelError::Corrupt)?;
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        })
        .await
    }

    /// Notes a redrive that failed again: the letter stays, with the failure counted.
    pub async fn record_failed_redrive(&self, id: u64, reason: &str) -> Result<(), ReadModelError> {
        let id = to_i64(id, "id").map_err(ReadModelError::Corrupt)?;
        let reason = reason.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE dead_letters SET failed_redrives = failed_redrives + 1,
                     last_failed_at = ?2, last_failure = ?3
                 WHERE id = ?1",
            )?
            .execute(params![id, SystemClock.now().to_string(), reason])?;
            Ok(())
        })
        .await
    }

    /// One dead letter by id.
    pub async fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>, ReadModelError> {
        Ok(self
            .dead_letters(None, id.saturating_sub(1), 1)
            .await?
            .into_iter()
            .find(|l| l.id == id))
    }

    /// How many records each source parked.
    pub async fn count_dead_letters_by_source(&self) -> Result<Vec<(String, u64)>, ReadModelError> {
        self.read(|conn| {
            named_numbers(
                conn,
                "SELECT source, COUNT(*) FROM dead_letters GROUP BY source ORDER BY source",
                "count",
            )
        })
        .await
    }

    pub async fn count_dead_letters(&self, source: Option<&str>) -> Result<u64, ReadModelError> {
        let source = source.map(str::to_string);
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM dead_letters WHERE (?1 IS NULL OR source = ?1)",
                )?
                .query_row([source], |r| r.get(0))?;
            to_u64(n, "count").map_err(DbError::Corrupt)
        })
        .await
    }
}

/// Applies events in order, each all-or-nothing in its own SAVEPOINT, into `targets` (or
/// the active generations). With `stop_at_failure` the results end at the first failed
/// event and later ones are not attempted. A database error undoes them all.
fn apply_each(
    conn: &mut Connection,
    targets: Option<Targets>,
    events: &[(EventEnvelope, OrderEvent)],
    stop_at_failure: bool,
) -> Result<Vec<Result<ApplyOutcome, ReadModelError>>, DbError> {
    let targets = match targets {
        Some(t) => t,
        None => active_targets(conn)?,
    };
    let mut out = Vec::with_capacity(events.len());
    for (envelope, event) in events {
        let sp = conn.savepoint()?;
        match projection::apply(&sp, &targets, envelope, event) {
            Ok(outcome) => {
                sp.commit()?;
                out.push(Ok(outcome));
            }
            Err(DbError::Sql(e)) => return Err(DbError::Sql(e)),
            Err(e) => {
                out.push(Err(ReadModelError::from(e)));
                if stop_at_failure {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// The writing connection; a transaction left open on it between calls is a unit's.
struct Writer {
    conn: Connection,
}

impl Writer {
    /// `f` all-or-nothing: in its own IMMEDIATE transaction, or (inside a unit) in a
    /// SAVEPOINT of the unit's transaction.
    fn atomically<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        // An open transaction between calls can only be a unit's. If an error made SQLite
        // drop it, writes fall back to committing on their own.
        let own = self.conn.is_autocommit();
        self.conn.execute_batch(if own {
            "BEGIN IMMEDIATE"
        } else {
            "SAVEPOINT unit_write"
        })?;
        match f(&mut self.conn) {
            Ok(out) => {
                let done = if own { "COMMIT" } else { "RELEASE unit_write" };
                if let Err(e) = self.conn.execute_batch(done) {
                    self.undo(own);
                    return Err(e.into());
                }
                Ok(out)
            }
            Err(e) => {
                self.undo(own);
                Err(e)
            }
        }
    }

    fn undo(&mut self, own: bool) {
        if self.conn.is_autocommit() {
            return; // SQLite already rolled back
        }
        let undo = if own {
            "ROLLBACK"
        } else {
            "ROLLBACK TO unit_write; RELEASE unit_write"
        };
        if let Err(e) = self.conn.execute_batch(undo) {
            tracing::error!(error = %e, "read-model rollback failed");
        }
    }
}

fn active_targets(conn: &Connection) -> Result<Targets, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT projection, generation FROM projection_generations WHERE status = 'active'",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
    let mut targets = Targets::default();
    for row in rows {
        let (p, g) = row?;
        // A projection this build does not know (written by a newer one) is left alone.
        if let Some(p) = ProjectionName::parse(&p) {
            targets.set(p, Some(g));
        }
    }
    Ok(targets)
}

/// Runs `f` with the active generations of `projections` in `conn` and in a snapshot of
/// the read-model store at `fresh_path` (its connection passed along).
fn against_fresh<T>(
    conn: &Connection,
    fresh_path: &Path,
    projections: &[ProjectionName],
    f: impl FnOnce(Targets, &Connection, Targets) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let pick = |all: Targets| {
        let mut t = Targets::default();
        for &p in projections {
            t.set(p, all.get(p));
        }
        t
    };
    let mut fresh_conn = sqlite::open_reader(fresh_path)?;
    let fresh_tx = fresh_conn.transaction()?;
    let fresh = pick(active_targets(&fresh_tx)?);
    let ours = pick(active_targets(conn)?);
    let out = f(ours, &fresh_tx, fresh)?;
    fresh_tx.finish()?;
    Ok(out)
}

fn active(conn: &Connection, projection: ProjectionName) -> Result<u32, DbError> {
    active_targets(conn)?.get(projection).ok_or_else(|| {
        DbError::Corrupt(format!(
            "projection {} has no active generation",
            projection.as_str()
        ))
    })
}

fn insert_dead_letter(conn: &Connection, letter: &NewDeadLetter) -> Result<u64, DbError> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (source, key, reason, record, parked_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        letter.source,
        letter.key,
        letter.reason,
        letter.record,
        SystemClock.now().to_string()
    ])?;
    to_u64(conn.last_insert_rowid(), "id").map_err(DbError::Corrupt)
}

/// The rows of a `SELECT <text>, <count>` query.
fn named_numbers(conn: &Connection, sql: &str, what: &str) -> Result<Vec<(String, u64)>, DbError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, n) = row?;
        out.push((name, to_u64(n, what).map_err(DbError::Corrupt)?));
    }
    Ok(out)
}

fn read_checkpoint(conn: &Connection, name: &str) -> Result<u64, DbError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM checkpoints WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    to_u64(seq.unwrap_or(0), "checkpoint").map_err(DbError::Corrupt)
}

fn delete_checkpoint(conn: &Connection, name: &str) -> Result<(), DbError> {
    conn.prepare_cached("DELETE FROM checkpoints WHERE name = ?1")?
        .execute([name])?;
    Ok(())
}

fn write_checkpoint(conn: &Connection, name: &str, seq: u64) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (name, seq) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
    )?
    .execute(params![
        name,
        to_i64(seq, "checkpoint").map_err(DbError::Corrupt)?
    ])?;
    Ok(())
}

impl ReadModels for SqliteReadModels {
    async fn apply(
        &self,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> Result<ApplyOutcome, ReadModelError> {
        let span = tracing::debug_span!(
            "project",
            order_id = %envelope.aggregate_id,
            version = envelope.version,
            correlation_id = %envelope.correlation_id,
        );
        let (envelope, event) = (envelope.clone(), event.clone());
        // The active generations are read inside the write transaction, so a flip by a
        // replay is atomic with respect to every apply.
        self.write(move |conn| {
            let targets = active_targets(conn)?;
            projection::apply(conn, &targets, &envelope, &event)
        })
        .instrument(span)
        .await
    }

    /// One blocking hop and one transaction (or the tailer's unit) for the whole batch.
    async fn apply_batch(
        &self,
        events: Arc<[(EventEnvelope, OrderEvent)]>,
    ) -> Vec<Result<ApplyOutcome, ReadModelError>> {
        self.write(move |conn| apply_each(conn, None, &events, true))
            .await
            // A database error undid the whole batch: nothing of it was applied.
            .unwrap_or_else(|e| vec![Err(e)])
    }

    async fn order(&self, order_id: &str) -> Result<Option<OrderView>, ReadModelError> {
        let id = order_id.to_string();
        self.read(move |conn| {
            let g = active(conn, ProjectionName::Orders)?;
            projection::order_view(conn, g, &id)
        })
        .await
    }

    async fn customer_orders(
        &self,
        customer_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<OrderSummary>, ReadModelError> {
        let customer_id = customer_id.to_string();
        let cursor = cursor.map(str::to_string);
        self.read(move |conn| {
            let g = active(conn, ProjectionName::Orders)?;
            projection::customer_orders(conn, g, &customer_id, limit, cursor.as_deref())
        })
        .await
    }

    async fn daily_sales(&self) -> Result<Vec<DailySales>, ReadModelError> {
        self.read(|conn| {
            let g = active(conn, ProjectionName::DailySales)?;
            projection::daily_sales(conn, g)
        })
        .await
    }
}
