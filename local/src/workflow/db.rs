//! `<data_dir>/workflows.db`: executions and their history (the engine's
//! [`asl::ExecutionStore`]), the de-duplication table of task effects, and the local
//! topic, queue and mailbox.
//!
//! All writes go through one writer thread that commits whatever is queued in one
//! transaction (group commit). The engine's history appends are queued without waiting:
//! the queue is ordered, so whenever a task's effect is committed, every history event
//! queued before it (in particular the state's entry, whose id is in the invocation key)
//! is committed too. A crash can lose only a tail of events, which the engine re-drives
//! after `resume_all`, re-invoking lost tasks with the same invocation key.
//!
//! History rows travel as plain messages on the same ordered queue (no closure, no
//! savepoint), encoded by `history_rows` (a repeated payload names its earlier event;
//! safe because of the queue order above). `synchronous=NORMAL` under WAL keeps every
//! commit across a process crash (`kill -9`); only an OS crash or power loss can lose
//! the last commits, which the same re-drive covers.

use asl::{ExecutionRecord, ExecutionStatus, ExecutionStore, HistoryEvent, ListFilter, StoreError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::history_rows;
use crate::checkpoint::BackgroundCheckpoint;

pub const FILE_NAME: &str = "workflows.db";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Jobs per transaction at most, so that one commit never holds the lock for long.
const MAX_GROUP: usize = 4_000;
/// The writer connection's page cache: enough for the recent end of every table, and no
/// more. When a B-tree split reorders pages, SQLite parks one under the page number past
/// 1 GiB, and the next commit then walks the whole cache to drop pages past the end of
/// the file: with 64 MB that walk was a quarter of this thread's time at 500 orders/s.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// WAL pages before a background checkpoint (SQLite's automatic default is 1,000): fewer
/// passes over the same hot pages.
const WAL_CHECKPOINT_PAGES: u32 = 8_000;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("workflow database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("workflow database: {0}")]
    Commit(String),
    #[error("workflow database is closed")]
    Closed,
    #[error("workflow database holds corrupt data: {0}")]
    Corrupt(String),
}

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Option<Completion>) + Send>;

enum Msg {
    Job(Job),
    /// A history row: the bulk of the writes, so no closure and no savepoint (a single
    /// statement that fails rolls back alone).
    History {
        arn: String,
        id: i64,
        text: String,
    },
    /// Executions removed (by the retention sweep): their cached rowids must go.
    Forget(Vec<String>),
    Stop,
}

struct Writer {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    _checkpoint: BackgroundCheckpoint,
}

/// The workflow database of one data directory. Cheap to clone.
#[derive(Clone)]
pub struct WorkflowDb {
    path: PathBuf,
    writer: Arc<Writer>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// The last definition stored and its hash: executions share a definition, so it is
    /// stored once, not once per execution.
    definition: Arc<Mutex<Option<(String, String)>>>,
    /// Encodes history rows; held while a row is queued, so rows are queued in the
    /// order they were encoded (a row may name an earlier one's payload).
    rows: Arc<Mutex<history_rows::Encoder>>,
}

fn open_conn(path: &Path, create: bool) -> rusqlite::Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    crate::store::sqlite::cache_statements(&conn)?;
    Ok(conn)
}

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS definitions (
    hash TEXT PRIMARY KEY,
    definition TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    start_date INTEGER NOT NULL,
    stop_date INTEGER,
    definition_hash TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_start ON executions (start_date);
CREATE INDEX IF NOT EXISTS executions_by_name ON executions (name);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, start_date);
-- In insertion order, so a commit appends to the last pages instead of rewriting a leaf
-- (and, past 1 KB, an overflow page) of every execution that moved; the index entries
-- are small, and those of the executions in flight sit together at its end.
CREATE TABLE IF NOT EXISTS history_events (
    seq INTEGER PRIMARY KEY,
    execution INTEGER NOT NULL, -- executions.rowid
    id INTEGER NOT NULL,
    event TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS history_events_by_execution ON history_events (execution, id);
CREATE TABLE IF NOT EXISTS effects (
    invocation_key TEXT PRIMARY KEY,
    response TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS topic_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    topic_arn TEXT NOT NULL,
    subject TEXT,
    message TEXT NOT NULL,
    attributes TEXT NOT NULL,
    correlation_id TEXT,
    published_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    topic_arn TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (topic_arn, queue)
);
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    md5 TEXT NOT NULL,
    attributes TEXT NOT NULL,
    correlation_id TEXT,
    sent_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_received_at INTEGER,
    receipt_handle TEXT,
    last_error TEXT,
    source_queue TEXT,
    dead_reason TEXT,
    done_at INTEGER
);
CREATE INDEX IF NOT EXISTS queue_visible ON queue_messages (queue, state, visible_at);
-- DeleteMessage finds its message by receipt handle: without this, a table scan per
-- delete (quadratic over a long run).
CREATE INDEX IF NOT EXISTS queue_by_receipt ON queue_messages (receipt_handle)
    WHERE receipt_handle IS NOT NULL;
CREATE TABLE IF NOT EXISTS mail (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    from_address TEXT NOT NULL,
    to_addresses TEXT NOT NULL,
    subject TEXT NOT NULL,
    correlation_id TEXT,
    raw TEXT NOT NULL,
    sent_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    address TEXT PRIMARY KEY,
    verified INTEGER NOT NULL
);
"#;

impl WorkflowDb {
    /// Opens (creating) `<data_dir>/workflows.db` and starts its writer thread.
    pub fn open(data_dir: &Path) -> Result<WorkflowDb, DbError> {
        let path = data_dir.join(FILE_NAME);
        let open_err = |source| DbError::Open {
            path: path.clone(),
            source,
        };
        if let Err(e) = std::fs::create_dir_all(data_dir) {
            return Err(DbError::Commit(format!("{}: {e}", data_dir.display())));
        }
        let mut conn = open_conn(&path, true).map_err(open_err)?;
        // WAL: the CLI reads (and redrives) while `orders serve` writes. NORMAL sync keeps
        // every commit across a process kill (only an OS crash can lose the last ones).
        let _: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        crate::store::sqlite::durable_enough(&conn).map_err(open_err)?;
        // The writer touches the recent end of every table on each commit: with SQLite's
        // default 2 MB cache it re-read those pages from the OS all the time (the largest
        // kernel cost in the profile).
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        migrate_history(&mut conn).map_err(open_err)?;
        let checkpoint = BackgroundCheckpoint::start(&mut conn, &path, WAL_CHECKPOINT_PAGES)
            .map_err(|e| DbError::Commit(format!("{}: {e}", path.display())))?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("workflows-db".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| DbError::Commit(format!("starting the writer thread: {e}")))?;
        Ok(WorkflowDb {
            path,
            writer: Arc::new(Writer {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                _checkpoint: checkpoint,
            }),
            readers: Arc::default(),
            definition: Arc::default(),
            rows: Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn submit(&self, job: Job) -> Result<(), DbError> {
        self.submit_msg(Msg::Job(job))
    }

    fn submit_msg(&self, msg: Msg) -> Result<(), DbError> {
        let guard = self.writer.tx.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(msg).map_err(|_| DbError::Closed),
            None => Err(DbError::Closed),
        }
    }

    /// Queues a write and waits (asynchronously) until it is committed.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, DbError>>();
        self.submit(Box::new(move |c| match f(c) {
            Ok(v) => (
                true,
                Some(Box::new(move |committed: Result<(), String>| {
                    let _ = tx.send(committed.map(|_| v).map_err(DbError::Commit));
                }) as Completion),
            ),
            Err(e) => {
                let _ = tx.send(Err(e));
                (false, None)
            }
        }))?;
        rx.await.map_err(|_| DbError::Closed)?
    }

    /// Queues a write without waiting for it; failures are logged.
    pub fn write_later(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> Result<(), DbError> + Send + 'static,
    ) -> Result<(), DbError> {
        self.submit(Box::new(move |c| match f(c) {
            Ok(()) => (true, None),
            Err(e) => {
                tracing::error!(error = %e, what, "workflow database write failed");
                (false, None)
            }
        }))
    }

    /// Drops the writer's cached rowids of removed executions (an ARN used again gets a
    /// new row).
    pub fn forget_executions(&self, arns: Vec<String>) {
        if !arns.is_empty() {
            // A closed database has nothing cached to forget.
            let _ = self.submit_msg(Msg::Forget(arns));
        }
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self) -> Result<(), DbError> {
        self.write(|_| Ok(())).await
    }

    /// Runs a read on a pooled connection (blocking; short). Sees committed data only.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = open_conn(&self.path, false)?;
                c.pragma_update(None, "query_only", true)?;
                c
            }
        };
        let out = f(&conn);
        if conn.is_autocommit() {
            let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < 8 {
                idle.push(conn);
            }
        }
        out
    }

    /// Async wrapper of [`WorkflowDb::read`] for callers on the runtime's workers.
    pub async fn read_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read(f))
            .await
            .map_err(|e| DbError::Commit(format!("read task failed: {e}")))?
    }

    /// Commits what is queued and stops the writer thread. Later writes fail with `Closed`.
    pub fn close(&self) {
        let tx = self
            .writer
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(Msg::Stop);
        }
        let thread = self
            .writer
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    fn definition_hash(&self, definition: &str) -> Result<String, DbError> {
        let mut cached = self.definition.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((d, h)) = cached.as_ref()
            && d == definition
        {
            return Ok(h.clone());
        }
        let hash = format!("{:x}", sha2::Sha256::digest(definition.as_bytes()));
        let (d, h) = (definition.to_string(), hash.clone());
        self.write_later("definition", move |c| {
            c.prepare_cached(
                "INSERT OR IGNORE INTO definitions (hash, definition) VALUES (?1, ?2)",
            )?
            .execute(params![h, d])?;
            Ok(())
        })?;
        *cached = Some((definition.to_string(), hash.clone()));
        Ok(hash)
    }
}

/// Moves the history of a data dir written before `history_events` (one `history` row per
/// event, keyed by ARN) into it, in one transaction.
fn migrate_history(conn: &mut Connection) -> rusqlite::Result<()> {
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'history')",
        [],
        |r| r.get(0),
    )?;
    if !old {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "INSERT OR REPLACE INTO history_events (execution, id, event)
             SELECT e.rowid, h.id, h.event FROM history h JOIN executions e ON e.arn = h.arn
             ORDER BY e.rowid, h.id;
         DROP TABLE history;",
    )?;
    tx.commit()
}

/// The `executions.rowid` of each ARN the writer has stored history for (an execution's
/// row is queued before its first event, and its rowid never changes).
struct ExecutionKeys(std::collections::HashMap<String, i64>);

impl ExecutionKeys {
    /// Executions remembered at most; past that the map starts over (one lookup each).
    const MAX: usize = 16_384;

    fn get(&mut self, conn: &Connection, arn: &str) -> rusqlite::Result<Option<i64>> {
        if let Some(k) = self.0.get(arn) {
            return Ok(Some(*k));
        }
        let key: Option<i64> = conn
            .prepare_cached("SELECT rowid FROM executions WHERE arn = ?1")?
            .query_row([arn], |r| r.get(0))
            .optional()?;
        if let Some(k) = key {
            if self.0.len() >= Self::MAX {
                self.0.clear();
            }
            self.0.insert(arn.to_string(), k);
        }
        Ok(key)
    }
}

fn insert_history(
    conn: &Connection,
    keys: &mut ExecutionKeys,
    arn: &str,
    id: i64,
    text: &str,
) -> rusqlite::Result<()> {
    let Some(execution) = keys.get(conn, arn)? else {
        tracing::error!(execution_arn = %arn, id, "history event of an unknown execution");
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO history_events (execution, id, event) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![execution, id, text])?;
    Ok(())
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Msg>) {
    let mut stop = false;
    let mut keys = ExecutionKeys(std::collections::HashMap::new());
    while !stop {
        let first = match rx.recv() {
            Ok(Msg::Stop) | Err(_) => break,
            Ok(m) => m,
        };
        let mut msgs = vec![first];
        while msgs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Msg::Stop) => {
                    stop = true;
                    break;
                }
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut done: Vec<Completion> = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for msg in msgs {
                match msg {
                    Msg::Job(job) => {
                        tx.prepare_cached("SAVEPOINT job")?.execute([])?;
                        let (ok, completion) = job(&tx);
                        if !ok {
                            tx.prepare_cached("ROLLBACK TO job")?.execute([])?;
                        }
                        tx.prepare_cached("RELEASE job")?.execute([])?;
                        done.extend(completion);
                    }
                    Msg::History { arn, id, text } => {
                        if let Err(e) = insert_history(&tx, &mut keys, &arn, id, &text) {
                            tracing::error!(error = %e, execution_arn = %arn, id, "history write failed");
                        }
                    }
                    Msg::Forget(arns) => {
                        for arn in arns {
                            keys.0.remove(&arn);
                        }
                    }
                    Msg::Stop => {}
                }
            }
            tx.commit()
        })();
        if let Err(e) = &result {
            tracing::error!(error = %e, "workflow database commit failed");
            // Rowids looked up inside the lost transaction may not exist.
            keys.0.clear();
        }
        let result = result.map_err(|e| e.to_string());
        for d in done {
            d(result.clone());
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Reads an execution record row (`record`, `definition`).
fn record_from(json: &str, definition: String) -> Result<ExecutionRecord, DbError> {
    let mut r: ExecutionRecord =
        serde_json::from_str(json).map_err(|e| DbError::Corrupt(format!("execution: {e}")))?;
    r.definition = definition;
    Ok(r)
}

const SELECT_EXECUTION: &str = "SELECT e.record, COALESCE(d.definition, '') FROM executions e \
     LEFT JOIN definitions d ON d.hash = e.definition_hash";

impl WorkflowDb {
    pub fn get_record(&self, arn: &str) -> Result<Option<ExecutionRecord>, DbError> {
        self.read(|c| {
            let row: Option<(String, String)> = c
                .prepare_cached(&format!("{SELECT_EXECUTION} WHERE e.arn = ?1"))?
                .query_row([arn], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(j, d)| record_from(&j, d)).transpose()
        })
    }

    /// Finds an execution by ARN or by name (the order id).
    pub fn find_execution(&self, name_or_arn: &str) -> Result<Option<ExecutionRecord>, DbError> {
        self.read(|c| {
            let row: Option<(String, String)> = c
                .prepare_cached(&format!(
                    "{SELECT_EXECUTION} WHERE e.arn = ?1 OR e.name = ?1 ORDER BY e.start_date DESC LIMIT 1"
                ))?
                .query_row([name_or_arn], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(j, d)| record_from(&j, d)).transpose()
        })
    }

    pub fn history_of(&self, arn: &str) -> Result<Vec<HistoryEvent>, DbError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT h.event FROM history_events h JOIN executions e ON h.execution = e.rowid
                     WHERE e.arn = ?1 ORDER BY h.id",
            )?;
            let rows: Vec<String> = stmt
                .query_map([arn], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?;
            history_rows::decode_history(rows).map_err(|e| DbError::Corrupt(e.to_string()))
        })
    }

    /// Newest first; `status` filters, `limit` 0 = all. Definitions are left out (empty).
    pub fn list(
        &self,
        status: Option<ExecutionStatus>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, DbError> {
        self.read(|c| {
            let limit = if limit == 0 { -1 } else { limit as i64 };
            let mut stmt = c.prepare_cached(
                "SELECT record FROM executions WHERE (?1 IS NULL OR status = ?1) \
                 ORDER BY start_date DESC, arn DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![status.map(|s| s.as_str()), limit], |r| {
                r.get::<_, String>(0)
            })?;
            let mut out = Vec::new();
            for row in rows {
                out.push(record_from(&row?, String::new())?);
            }
            Ok(out)
        })
    }

    /// Executions per status.
    pub fn count_by_status(&self) -> Result<Vec<(String, u64)>, DbError> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT status, COUNT(*) FROM executions GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (s, n) = row?;
                out.push((s, n.max(0) as u64));
            }
            Ok(out)
        })
    }
}

/// The `record` column: an [`ExecutionRecord`] with an empty definition (definitions are
/// stored once, by hash). Borrowed, so storing a record never copies its payloads.
#[derive(serde::Serialize)]
struct StoredRecord<'a> {
    execution_arn: &'a str,
    name: &'a str,
    state_machine_arn: &'a str,
    state_machine_name: &'a str,
    definition: &'static str,
    input: &'a serde_json::Value,
    status: ExecutionStatus,
    start_date: i64,
    stop_date: Option<i64>,
    output: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
    cause: Option<&'a str>,
}

impl<'a> From<&'a ExecutionRecord> for StoredRecord<'a> {
    fn from(r: &'a ExecutionRecord) -> Self {
        StoredRecord {
            execution_arn: &r.execution_arn,
            name: &r.name,
            state_machine_arn: &r.state_machine_arn,
            state_machine_name: &r.state_machine_name,
            definition: "",
            input: &r.input,
            status: r.status,
            start_date: r.start_date,
            stop_date: r.stop_date,
            output: r.output.as_ref(),
            error: r.error.as_deref(),
            cause: r.cause.as_deref(),
        }
    }
}

impl ExecutionStore for WorkflowDb {
    fn put_execution(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
        let hash = self
            .definition_hash(&record.definition)
            .map_err(store_err)?;
        let json = serde_json::to_string(&StoredRecord::from(record)).map_err(store_err)?;
        let (arn, name, status, start, stop) = (
            record.execution_arn.clone(),
            record.name.clone(),
            record.status.as_str(),
            record.start_date,
            record.stop_date,
        );
        self.write_later("execution", move |c| {
            c.prepare_cached(
                "INSERT INTO executions (arn, name, status, start_date, stop_date, definition_hash, record) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (arn) DO UPDATE SET \
                 status = excluded.status, stop_date = excluded.stop_date, record = excluded.record",
            )?
            .execute(params![arn, name, status, start, stop, hash, json])?;
            Ok(())
        })
        .map_err(store_err)
    }

    fn get_execution(&self, execution_arn: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.get_record(execution_arn).map_err(store_err)
    }

    fn append_event(&self, execution_arn: &str, event: HistoryEvent) -> Result<(), StoreError> {
        let id = event.id as i64;
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let text = rows.encode(execution_arn, event).map_err(store_err)?;
        let guard = self.writer.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = guard.as_ref().map(|tx| {
            tx.send(Msg::History {
                arn: execution_arn.to_string(),
                id,
                text,
            })
        });
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) | None => Err(store_err(DbError::Closed)),
        }
    }

    fn history(&self, execution_arn: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        self.history_of(execution_arn).map_err(store_err)
    }

    fn list_executions(&self, filter: &ListFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        let mut list = self.list(filter.status, 0).map_err(store_err)?;
        if let Some(sm) = &filter.state_machine_arn {
            list.retain(|r| &r.state_machine_arn == sm);
        }
        if filter.limit > 0 {
            list.truncate(filter.limit);
        }
        // The engine re-drives from these records: they need their definitions.
        for r in &mut list {
            if let Some(full) = self.get_record(&r.execution_arn).map_err(store_err)? {
                *r = full;
            }
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asl::history::EventDetails;

    fn record(name: &str) -> ExecutionRecord {
        ExecutionRecord {
            execution_arn: format!("arn:aws:states:us-east-1:123456789012:execution:wf:{name}"),
            name: name.to_string(),
            state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:wf".into(),
            state_machine_name: "wf".into(),
            definition: r#"{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}"#.into(),
            input: serde_json::json!({"order_id": name}),
            status: ExecutionStatus::Running,
            start_date: 1_700_000_000_000,
            stop_date: None,
            output: None,
            error: None,
            cause: None,
        }
    }

    fn event(id: u64, input: &str) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: id - 1,
            timestamp: "2026-11-27T10:00:00.000Z".into(),
            event_type: "PassStateEntered".into(),
            details: EventDetails::StateEntered {
                name: format!("S{id}"),
                input: input.to_string(),
            },
        }
    }

    fn ids(db: &WorkflowDb, arn: &str) -> Vec<(u64, String)> {
        db.history_of(arn)
            .expect("history")
            .into_iter()
            .map(|e| match e.details {
                EventDetails::StateEntered { input, .. } => (e.id, input),
                // Read back in the generic shape.
                EventDetails::Other { value, .. } => (
                    e.id,
                    value["input"].as_str().unwrap_or_default().to_string(),
                ),
                other => panic!("unexpected details {other:?}"),
            })
            .collect()
    }

    /// Two executions whose events interleave (as concurrent ones do) each read back
    /// whole and in order, repeated payloads included, after a reopen too.
    #[tokio::test]
    async fn interleaved_histories_read_back_per_execution_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (record("a"), record("b"));
        {
            let db = WorkflowDb::open(dir.path()).expect("open");
            db.put_execution(&a).expect("put a");
            db.put_execution(&b).expect("put b");
            for id in 1..=3 {
                db.append_event(&a.execution_arn, event(id, r#"{"same":true}"#))
                    .expect("append a");
                db.append_event(&b.execution_arn, event(id, &format!("{{\"b\":{id}}}")))
                    .expect("append b");
            }
            db.flush().await.expect("flush");
            db.close();
        }
        let db = WorkflowDb::open(dir.path()).expect("reopen");
        let same = r#"{"same":true}"#.to_string();
        assert_eq!(
            ids(&db, &a.execution_arn),
            vec![(1, same.clone()), (2, same.clone()), (3, same)]
        );
        assert_eq!(
            ids(&db, &b.execution_arn),
            (1..=3)
                .map(|id| (id, format!("{{\"b\":{id}}}")))
                .collect::<Vec<_>>()
        );
        assert!(
            ids(
                &db,
                "arn:aws:states:us-east-1:123456789012:execution:wf:none"
            )
            .is_empty()
        );
        db.close();
    }

    /// The stored record is the record without its definition, field for field (a field
    /// added to `ExecutionRecord` but not to `StoredRecord` fails here).
    #[test]
    fn a_stored_record_is_the_record_without_its_definition() {
        let mut r = record("x");
        r.status = ExecutionStatus::Failed;
        r.stop_date = Some(r.start_date + 5);
        r.output = Some(serde_json::json!({"out": [1, 2]}));
        r.error = Some("E".into());
        r.cause = Some("because".into());
        let stored = serde_json::to_value(StoredRecord::from(&r)).expect("stored");
        r.definition = String::new();
        assert_eq!(stored, serde_json::to_value(&r).expect("record"));
        let back: ExecutionRecord = serde_json::from_value(stored).expect("reads back");
        assert_eq!(back, r);
    }

    /// A data dir from before `history_events` (a `history` table keyed by ARN) keeps
    /// its executions' histories.
    #[tokio::test]
    async fn the_history_table_of_an_older_data_dir_is_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = record("a");
        {
            let db = WorkflowDb::open(dir.path()).expect("open");
            db.put_execution(&a).expect("put");
            db.append_event(&a.execution_arn, event(1, r#"{"x":1}"#))
                .expect("append");
            db.append_event(&a.execution_arn, event(2, r#"{"x":2}"#))
                .expect("append");
            db.flush().await.expect("flush");
            db.close();
        }
        // Rewrite the rows the way the older schema held them.
        {
            let c = Connection::open(dir.path().join(FILE_NAME)).expect("sqlite");
            c.execute_batch(
                "CREATE TABLE history (arn TEXT NOT NULL, id INTEGER NOT NULL,
                     event TEXT NOT NULL, PRIMARY KEY (arn, id)) WITHOUT ROWID;
                 INSERT INTO history (arn, id, event)
                     SELECT e.arn, h.id, h.event FROM history_events h
                     JOIN executions e ON e.rowid = h.execution;
                 DELETE FROM history_events;",
            )
            .expect("old schema");
        }
        let db = WorkflowDb::open(dir.path()).expect("reopen");
        assert_eq!(
            ids(&db, &a.execution_arn),
            vec![(1, r#"{"x":1}"#.to_string()), (2, r#"{"x":2}"#.to_string())]
        );
        let old: i64 = db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'history'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .expect("schema");
        assert_eq!(old, 0, "the old table is dropped");
        db.close();
    }
}
