//! Connection setup, a small pool of read connections, and schema migrations, shared by
//! the event store and the read-model store.

use super::{DbError, blocking};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a connection waits for another one's write lock before giving up. Each file
/// has a single writer in this process; what contends is the migration at start-up, an
/// operator's `sqlite3` shell, and a replay (`orders replay`, another process) writing a
/// new generation into `read_models.db` while `orders serve` projects live.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a writer tries a busy lock again. SQLite's own handler backs off to one try
/// per 100 ms, which would almost never land in the moment a replay leaves the lock free
/// between two of its chunks ([`yield_write_lock`]): the live projector would wait for the
/// whole replay, then give up and retry until its records were parked.
const BUSY_POLL: Duration = Duration::from_millis(1);

/// How long a long write (a replay's bulk phase) leaves the lock free between two chunks:
/// a couple of [`BUSY_POLL`]s, so a waiting writer gets in.
const YIELD_FOR: Duration = Duration::from_millis(2);

fn poll_busy(tries: i32) -> bool {
    let waited = BUSY_POLL * u32::try_from(tries).unwrap_or(u32::MAX);
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

/// Commits the writer's open transaction, leaves the write lock free for a moment and
/// opens the next one: a long series of commits (a replay's bulk phase) lets another
/// connection's write in between instead of starving it.
pub(crate) fn yield_write_lock(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("COMMIT")?;
    std::thread::sleep(YIELD_FOR);
    conn.execute_batch("BEGIN IMMEDIATE")
}

/// Read connections per file, and reads running at once: more would only queue on the
/// CPU (and churn connections) on a small machine.
const READERS: usize = 8;

/// Opens the one writing connection of a file.
///
/// WAL lets readers run beside the writer. `synchronous = NORMAL` in WAL mode does not
/// fsync on each commit, only at checkpoints: a committed transaction is in the WAL file
/// (the OS page cache) before `COMMIT` returns, so it survives the process being killed
/// (`kill -9`, a panic, an abort). Only a power loss or OS crash can lose the last few
/// commits, which is acceptable for a local development runtime and buys an order of
/// magnitude in append throughput.
///
/// `page_size` applies to a new file only: SQLite fixes it with the first write, and an
/// existing file keeps its own.
pub(crate) fn open_writer(path: &Path, page_size: PageSize) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_handler(Some(poll_busy))?;
    conn.pragma_update(None, "page_size", page_size as i64)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("cannot use WAL journaling (got `{mode}`)")),
        ));
    }
    durable_enough(&conn)?;
    cache_statements(&conn)?;
    Ok(conn)
}

/// The settings every writing connection shares (here and in `workflows.db`).
///
/// `synchronous = NORMAL`: see [`open_writer`]. `temp_store = MEMORY` keeps the statement
/// journals of the writers' SAVEPOINTs (one per append, per applied event, per workflow
/// job) in memory: by default a journal past 64 KB spilled into a new temporary file,
/// written 4 bytes and then a page at a time (about one write in seven at 200 orders/s).
pub(crate) fn durable_enough(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")
}

/// The page size of a new database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageSize {
    /// SQLite's default, 4 KiB: a commit of a few small rows rewrites little (the log).
    Small = 4096,
    /// 16 KiB, for rows of a kilobyte or more (the order views): a 4 KiB page holds two
    /// and leaves 15% of itself unused; a replay of a million events wrote 12% fewer bytes
    /// and ran 1.17 times faster.
    Large = 16384,
}

/// WAL bytes before a background checkpoint of `events.db` or `read_models.db` (see
/// [`crate::checkpoint`]; SQLite's automatic one ran at 1,000 pages, inside a commit).
const CHECKPOINT_BYTES: i64 = 4_000 * 4096;

/// [`CHECKPOINT_BYTES`] in pages of the file `conn` writes (whose page size a file made
/// by an earlier version may not share with a new one).
pub(crate) fn checkpoint_pages(conn: &Connection) -> rusqlite::Result<u32> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(u32::try_from(CHECKPOINT_BYTES / page_size.max(512)).unwrap_or(u32::MAX))
}

pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    // Read-write flags with `query_only`: a strictly read-only connection cannot create
    // the WAL index if it is missing.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    cache_statements(&conn)?;
    Ok(conn)
}

/// Keeps prepared statements and makes them worth keeping. Without the query planner
/// stability guarantee, SQLite (3.54, built with STAT4) marks a statement for
/// re-preparation whenever a new value is bound to `LIMIT ?`, a range such as
/// `seq > ?`, or `MAX(version) ... WHERE aggregate_id = ?`: that is, on nearly every
/// call of the stream reads and the append's version check (5-6 % of the local
/// runtime's CPU under load). Our plans never depend on the values bound.
pub(crate) fn cache_statements(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(64);
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Read connections for one file. Each read borrows one for its duration, so concurrent
/// readers never queue behind each other or behind the writer.
pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReaderPool {
    pub(crate) fn new(path: PathBuf) -> Self {
        ReaderPool {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(READERS)),
        }
    }

    /// Runs `f` on a pooled connection (blocking: call from `spawn_blocking`).
    pub(crate) fn with<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = f(&mut conn);
        // A connection left inside a transaction (an early return) must not be reused.
        if conn.is_autocommit() {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if idle.len() < READERS {
                idle.push(conn);
            }
        }
        result
    }
}

/// Runs `f` on a pooled read connection off the async workers, at most [`READERS`] at once.
pub(crate) async fn read<T: Send + 'static>(
    pool: &Arc<ReaderPool>,
    f: impl FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    let permit = pool
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| DbError::Task("the reader pool is closed".into()))?;
    let pool = pool.clone();
    blocking(move || {
        let _permit = permit;
        pool.with(f)
    })
    .await
}

/// One schema migration step, run inside the migration transaction.
pub(crate) type Migration = fn(&Transaction<'_>) -> rusqlite::Result<()>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("schema version {found} is newer than this build knows ({known})")]
    TooNew { found: i64, known: i64 },
}

/// Brings a file to the latest schema. The version lives in `PRAGMA user_version`, and
/// each step commits together with the version bump, so a crash mid-migration leaves the
/// previous version intact.
pub(crate) fn migrate(conn: &mut Connection, steps: &[Migration]) -> Result<(), MigrateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = steps.len() as i64;
    if found > known {
        return Err(MigrateError::TooNew { found, known });
    }
    for step in steps.iter().skip(found as usize) {
        step(&tx)?;
    }
    if found < known {
        tx.pragma_update(None, "user_version", known)?;
    }
    tx.commit()?;
    Ok(())
}

/// Converts a stored INTEGER to the unsigned domain type, refusing negatives.
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("{what} is negative: {v}"))
}

/// Converts a domain number to SQLite's INTEGER, refusing values it cannot hold.
pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| format!("{what} is too large: {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// Runs `sql` through the statement cache with changing values; returns how often
    /// SQLite re-prepared it.
    fn reprepares(conn: &Connection, sql: &str) -> i32 {
        for i in 0..20i64 {
            let mut stmt = conn.prepare_cached(sql).expect("prepare");
            let mut rows = stmt.query((format!("a{i}"), i, 5 + i)).expect("query");
            while rows.next().expect("step").is_some() {}
        }
        let stmt = conn.prepare_cached(sql).expect("prepare");
        stmt.get_status(StatementStatus::RePrepare)
    }

    #[test]
    fn a_long_series_of_commits_lets_another_writer_in_between() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let long = open_writer(&path, PageSize::Small).expect("writer");
        long.execute_batch("CREATE TABLE t (who TEXT NOT NULL, n TEXT NOT NULL)")
            .expect("schema");
        // As in a replay's bulk write, the writer never checkpoints (a background thread
        // does): its commits leave no pause of their own.
        long.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no checkpoints");
        // Another process's writer, as `orders serve` beside `orders replay`.
        let other = open_writer(&path, PageSize::Small).expect("other writer");
        let other_done = std::sync::atomic::AtomicBool::new(false);
        let done = &other_done;
        let chunks = std::thread::scope(|s| {
            let writing = s.spawn(move || {
                long.execute_batch("BEGIN IMMEDIATE").expect("begin");
                let mut chunks = 0u32;
                // Chunk after chunk, as a replay's bulk phase: the lock is held all along
                // but for the moment between two chunks. Bounded: past 20 s the other
                // writer has long given up.
                let started = std::time::Instant::now();
                while !done.load(std::sync::atomic::Ordering::SeqCst)
                    && started.elapsed() < Duration::from_secs(20)
                {
                    // About 2 MB a chunk (a replay commits every 8 MB).
                    let mut insert = long
                        .prepare_cached("INSERT INTO t VALUES ('long', ?1)")
                        .expect("prepare");
                    for n in 0..2_000 {
                        insert.execute([format!("{n:01024}")]).expect("insert");
                    }
                    yield_write_lock(&long).expect("next chunk");
                    chunks += 1;
                }
                long.execute_batch("COMMIT").expect("commit");
                chunks
            });
            // Wait until the long writer holds the lock, then write.
            while long_rows(&path) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let wrote = other.execute("INSERT INTO t VALUES ('other', '0')", []);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(wrote.is_ok(), "the other writer got in: {wrote:?}");
            writing.join().expect("long writer")
        });
        let reader = open_reader(&path).expect("reader");
        let others: i64 = reader
            .query_row("SELECT count(*) FROM t WHERE who = 'other'", [], |r| {
                r.get(0)
            })
            .expect("count");
        assert_eq!(others, 1);
        assert!(chunks > 0);
    }

    /// Rows the long writer committed so far.
    fn long_rows(path: &Path) -> i64 {
        open_reader(path)
            .and_then(|r| r.query_row("SELECT count(*) FROM t", [], |row| row.get(0)))
            .unwrap_or(0)
    }

    #[test]
    fn cached_statements_are_not_reprepared_when_bound_values_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let writer = open_writer(&path, PageSize::Small).expect("writer");
        writer
            .execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY, aggregate_id TEXT NOT NULL,
                     version INTEGER NOT NULL, UNIQUE (aggregate_id, version));
                 INSERT INTO events (aggregate_id, version) VALUES ('a1', 1), ('a2', 1);",
            )
            .expect("schema");
        let reader = open_reader(&path).expect("reader");
        // Each of these was re-prepared on every call before the planner was pinned.
        for sql in [
            "SELECT COALESCE(MAX(version), 0) FROM events WHERE aggregate_id = ?1 AND ?2 + ?3",
            "SELECT seq FROM events WHERE aggregate_id <> ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        ] {
            assert_eq!(reprepares(&writer, sql), 0, "writer: {sql}");
            assert_eq!(reprepares(&reader, sql), 0, "reader: {sql}");
        }
    }
}
