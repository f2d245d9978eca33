//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past its
//! threshold: that commit, and every write queued behind it, waits while the WAL's pages are
//! copied into the database file and synced. In `orders bench e2e` those stalls were most of
//! the POST → confirmed tail (p99 157 ms at 100 orders/s against 13–19 ms without them).
//!
//! Here the writer's WAL hook only notes how many frames the WAL holds after each commit; a
//! thread with its own connection runs PASSIVE checkpoints (they take neither the write lock
//! nor wait for readers) once the WAL has grown past the threshold. Should the WAL reach
//! [`BACKSTOP_FACTOR`] times the threshold anyway (the thread could not keep up), the writer
//! checkpoints itself as SQLite would have.
//!
//! A bulk write (a replay saving a whole generation, [`BackgroundCheckpoint::bulk`]) is
//! different: its commits outrun any checkpoint, and the backstop made the writer wait on
//! `fsync` instead of writing (the 1M-event replay's save: ~5.8 s with it, ~4.3 s without).
//! While one runs the WAL may grow past the backstop and the thread alone copies it; once
//! the WAL is reset, SQLite cuts the file back to the backstop's size
//! (`journal_size_limit`), so the disk space comes back too.

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The writer checkpoints itself past this many times the threshold.
pub const BACKSTOP_FACTOR: u32 = 4;
/// Between two passes at least: while a long stream of commits keeps the WAL from being
/// reset, each pass copies what the previous one could not, not the same few pages in a loop.
const MIN_GAP: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    requested: bool,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Bulk writes under way: while any is, the writer never checkpoints itself.
    bulk: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A bulk write under way (see the module docs); ends when dropped.
pub struct BulkWrite {
    shared: Arc<Shared>,
}

impl Drop for BulkWrite {
    fn drop(&mut self) {
        self.shared.bulk.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The checkpointing thread of one database file; stops when dropped.
pub struct BackgroundCheckpoint {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("starting the checkpoint thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the database is not in WAL mode (journal mode `{0}`)")]
    NotWal(String),
}

impl BackgroundCheckpoint {
    /// Takes over the checkpoints of `writer`, a WAL-mode connection to `path` (its
    /// automatic checkpoint is replaced by the hook), from `threshold` WAL pages on.
    pub fn start(
        writer: &mut Connection,
        path: &Path,
        threshold: u32,
    ) -> Result<BackgroundCheckpoint, CheckpointError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // A connection only knows the file is in WAL mode once it has read it; until then
        // a checkpoint does nothing (and reports -1 frames).
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CheckpointError::NotWal(mode));
        }
        let shared = Arc::new(Shared::default());
        let hook_shared = shared.clone();
        let threshold = threshold.max(1);
        let backstop = threshold.saturating_mul(BACKSTOP_FACTOR);
        let page_size: i64 = writer.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        writer.pragma_update(
            None,
            "journal_size_limit",
            i64::from(backstop).saturating_mul(page_size),
        )?;
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
            let pages = u32::try_from(pages).unwrap_or(0);
            if pages >= backstop && hook_shared.bulk.load(Ordering::Relaxed) == 0 {
                // Busy if the thread is checkpointing right now: then it is on it.
                let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
            } else if pages >= threshold {
                hook_shared.lock().requested = true;
                hook_shared.wake.notify_one();
            }
            Ok(())
        }))?;
        let thread_shared = shared.clone();
        let name = path
            .file_name()
            .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name(format!("checkpoint {name}"))
            .spawn(move || run(conn, &path, &thread_shared))?;
        Ok(BackgroundCheckpoint {
            shared,
            thread: Some(thread),
        })
    }

    /// Marks a bulk write: until the guard is dropped, the writer leaves every checkpoint
    /// to the thread, however far the WAL grows.
    pub fn bulk(&self) -> BulkWrite {
        self.shared.bulk.fetch_add(1, Ordering::Relaxed);
        BulkWrite {
            shared: self.shared.clone(),
        }
    }
}

fn run(conn: Connection, path: &Path, shared: &Shared) {
    loop {
        {
            let mut state = shared.lock();
            while !state.requested && !state.stop {
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stop {
                return;
            }
            state.requested = false;
        }
        match conn.wal_checkpoint_v2(Some("main"), CheckpointMode::PASSIVE) {
            Ok((log, done)) => tracing::debug!(path = %path.display(), log, done, "checkpoint"),
            // Another checkpoint (the writer's backstop) is running: the next request retries.
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "checkpoint failed"),
        }
        std::thread::sleep(MIN_GAP);
    }
}

impl Drop for BackgroundCheckpoint {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A new WAL database in a temporary directory, with one table, and its file's size.
    fn fresh() -> (tempfile::TempDir, std::path::PathBuf, Connection, u64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let c = writer(&path);
        let len = db_len(&path);
        (dir, path, c, len)
    }

    fn writer(path: &Path) -> Connection {
        let c = Connection::open(path).expect("open");
        let mode: String = c
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .expect("wal");
        assert_eq!(mode, "wal");
        c.execute_batch("CREATE TABLE t (x BLOB)").expect("table");
        c
    }

    /// Writes `n` commits of one 4 KB row each (at least a page per commit).
    fn write(c: &Connection, n: usize) {
        for _ in 0..n {
            c.execute("INSERT INTO t VALUES (zeroblob(4096))", [])
                .expect("insert");
        }
    }

    fn db_len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn commits_no_longer_checkpoint() {
        let (_dir, path, mut c, initial) = fresh();
        // A threshold no commit reaches: 1,500 commits of a page or more are past SQLite's
        // own automatic checkpoint (1,000 pages), yet the database file does not grow (in
        // WAL mode only a checkpoint writes it).
        let _checkpoint = BackgroundCheckpoint::start(&mut c, &path, 1_000_000).expect("start");
        write(&c, 1_500);
        assert_eq!(db_len(&path), initial, "a commit checkpointed");
    }

    #[test]
    fn past_the_threshold_the_thread_checkpoints() {
        let (_dir, path, mut c, initial) = fresh();
        // 60 commits of a 4 KB row: past 50 pages, short of the backstop (200).
        let _checkpoint = BackgroundCheckpoint::start(&mut c, &path, 50).expect("start");
        write(&c, 60);
        let deadline = Instant::now() + Duration::from_secs(10);
        while db_len(&path) < initial + 50 * 4096 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            db_len(&path) >= initial + 50 * 4096,
            "no background checkpoint"
        );
    }

    #[test]
    fn past_the_backstop_the_writer_checkpoints_itself() {
        let (_dir, path, mut c, initial) = fresh();
        let checkpoint = BackgroundCheckpoint::start(&mut c, &path, 10).expect("start");
        // Stop the thread (the hook stays): only the writer's backstop is left.
        drop(checkpoint);
        write(&c, 10 * BACKSTOP_FACTOR as usize);
        assert!(
            db_len(&path) >= initial + 10 * u64::from(BACKSTOP_FACTOR) * 4096,
            "the writer did not checkpoint past the backstop"
        );
    }

    #[test]
    fn during_a_bulk_write_the_writer_leaves_checkpoints_to_the_thread() {
        let (_dir, path, mut c, initial) = fresh();
        let checkpoint = BackgroundCheckpoint::start(&mut c, &path, 10).expect("start");
        let bulk = checkpoint.bulk();
        // Stop the thread (the hook stays): nobody may checkpoint now.
        drop(checkpoint);
        write(&c, 10 * BACKSTOP_FACTOR as usize * 3);
        assert_eq!(
            db_len(&path),
            initial,
            "the writer checkpointed a bulk write"
        );
        let wal = path.with_extension("db-wal");
        let grown = db_len(&wal);
        assert!(grown > 10 * u64::from(BACKSTOP_FACTOR) * 4096, "{grown}");

        // Bulk over: the next commit's backstop copies the WAL; the one after resets it,
        // and the file is cut back to the backstop's size.
        drop(bulk);
        write(&c, 2);
        assert!(db_len(&path) >= initial + 10 * u64::from(BACKSTOP_FACTOR) * 3 * 4096);
        assert!(
            db_len(&wal) <= 10 * u64::from(BACKSTOP_FACTOR) * 4096,
            "the WAL stayed at {} bytes",
            db_len(&wal)
        );
    }

    #[test]
    fn a_database_not_in_wal_mode_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let mut c = Connection::open(&path).expect("open");
        c.execute_batch("CREATE TABLE t (x)").expect("table");
        match BackgroundCheckpoint::start(&mut c, &path, 10) {
            Err(CheckpointError::NotWal(mode)) => assert_eq!(mode, "delete"),
            other => panic!("{:?}", other.err()),
        }
    }
}
