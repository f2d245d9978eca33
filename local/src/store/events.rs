//! The SQLite event store: `<data_dir>/events.db`.
//!
//! One writer thread owns the only writing connection and **group-commits**: it takes
//! every append that queued up while the previous commit ran, runs each inside its own
//! SAVEPOINT (so each append stays all-or-nothing: a conflict rolls back that append
//! only), commits them in one transaction, and then answers each caller. Under load the
//! per-commit cost is shared by the whole batch; when idle a single append commits at
//! once (no timer, no added latency). Reads use a pool of separate connections and never
//! wait for the writer (WAL).
//!
//! `seq` (the rowid, AUTOINCREMENT) is the global order of the log and feeds the stream
//! tailer. Because one thread writes and each batch commits atomically, readers can never
//! see seq N+1 committed before seq N.

use super::sqlite::{self, Migration, PageSize, ReaderPool, to_i64, to_u64};
use super::{DbError, OpenError};
use crate::checkpoint::BackgroundCheckpoint;
use orders_domain::EventEnvelope;
use orders_domain::Timestamp;
use orders_domain::ports::{AppendRequest, EventStore, IdempotencyRecord, StoreError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::{oneshot, watch};

/// DynamoDB's `TransactWriteItems` takes at most 100 items; the local store refuses the
/// same appends so nothing works locally that would fail on AWS.
pub const MAX_EVENTS_PER_APPEND: usize = 100;

/// Appends committed together at most; bounds the latency one batch adds to its callers.
const MAX_GROUP: usize = 512;

pub const EVENTS_DB: &str = "events.db";

const MIGRATIONS: &[Migration] = &[|tx| {
    tx.execute_batch(
        "CREATE TABLE events (
             seq            INTEGER PRIMARY KEY AUTOINCREMENT, -- global order, feeds the stream
             aggregate_id   TEXT    NOT NULL,
             version        INTEGER NOT NULL CHECK (version >= 1),
             event_id       TEXT    NOT NULL UNIQUE,
             event_type     TEXT    NOT NULL,
             schema_version INTEGER NOT NULL,
             occurred_at    TEXT    NOT NULL, -- RFC 3339 UTC, as in the envelope
             correlation_id TEXT    NOT NULL,
             causation_id   TEXT    NOT NULL,
             payload        TEXT    NOT NULL, -- JSON
             UNIQUE (aggregate_id, version)
         );
         CREATE TABLE idempotency (
             key          TEXT    PRIMARY KEY,
             request_hash TEXT    NOT NULL,
             aggregate_id TEXT    NOT NULL,
             status       INTEGER NOT NULL,
             response     TEXT    NOT NULL,
             created_at   TEXT    NOT NULL
         ) WITHOUT ROWID;",
    )
}];

/// What [`SqliteEventStore::log`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub since: Option<orders_domain::Timestamp>,
    pub until: Option<orders_domain::Timestamp>,
    pub event_type: Option<String>,
    pub limit: usize,
    /// Only events up to this `seq` (a follower's starting point).
    pub up_to_seq: Option<u64>,
}

impl LogQuery {
    /// Whether `e` passes the filter (time and type; not `limit` nor `up_to_seq`): what a
    /// follower applies to the events appended after its start.
    pub fn matches(&self, e: &EventEnvelope) -> bool {
        self.since.is_none_or(|t| e.occurred_at >= t)
            && self.until.is_none_or(|t| e.occurred_at <= t)
            && self.event_type.as_deref().is_none_or(|t| e.event_type == t)
    }
}

/// One row of the log in global order, decoded if it decodes. The tailer parks rows that
/// do not (with `raw` as the parked record) instead of stopping the stream on them.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRow {
    pub seq: u64,
    pub aggregate_id: String,
    pub version: u64,
    pub envelope: Result<EventEnvelope, String>,
    /// The stored columns as JSON, for a dead-letter record.
    pub raw: serde_json::Value,
}

/// One order's event stream, for `orders events` listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub aggregate_id: String,
    /// The latest version (= number of events, versions have no gaps).
    pub version: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
}

struct WriteJob {
    request: AppendRequest,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

struct Inner {
    /// `None` only while dropping, to stop the writer thread.
    jobs: Option<mpsc::Sender<WriteJob>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<ReaderPool>,
    head: watch::Sender<u64>,
    path: PathBuf,
    _checkpoint: BackgroundCheckpoint,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish the batch in hand and exit; joining it
        // means the file is closed when the last handle is gone (tests reopen it at once).
        self.jobs.take();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "event store writer thread panicked");
        }
    }
}

/// The event store. Cheap to clone; all clones share one writer thread.
#[derive(Clone)]
pub struct SqliteEventStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEventStore")
            .field("path", &self.inner.path)
            .field("head_seq", &*self.inner.head.borrow())
            .finish()
    }
}

impl SqliteEventStore {
    /// Opens (creating and migrating if needed) `<data_dir>/events.db`. Blocking.
    pub fn open(data_dir: &Path) -> Result<Self, OpenError> {
        let path = data_dir.join(EVENTS_DB);
        let sql_err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        // Small pages: each group commit rewrites the last page of the table and of its
        // two unique indexes.
        let mut conn = sqlite::open_writer(&path, PageSize::Small).map_err(sql_err)?;
        sqlite::migrate(&mut conn, MIGRATIONS).map_err(|e| OpenError::migrate(&path, e))?;
        let pages = sqlite::checkpoint_pages(&conn).map_err(sql_err)?;
        let checkpoint = BackgroundCheckpoint::start(&mut conn, &path, pages)
            .map_err(|e| OpenError::checkpoint(&path, e))?;
        let head: i64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
            .map_err(sql_err)?;
        let head = to_u64(head, "seq").map_err(|reason| OpenError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        let (head_tx, _) = watch::channel(head);
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let writer = {
            let head = head_tx.clone();
            std::thread::Builder::new()
                .name("events-writer".into())
                .spawn(move || writer_loop(conn, jobs_rx, head))
                .map_err(|source| OpenError::Io {
                    path: path.clone(),
                    source,
                })?
        };
        Ok(SqliteEventStore {
            inner: Arc::new(Inner {
                jobs: Some(jobs_tx),
                writer: Mutex::new(Some(writer)),
                readers: Arc::new(ReaderPool::new(path.clone())),
                head: head_tx,
                path,
                _checkpoint: checkpoint,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The highest committed `seq` (0 for an empty log).
    pub fn head_seq(&self) -> u64 {
        *self.inner.head.borrow()
    }

    /// Follows [`head_seq`](Self::head_seq): changes right after each commit that
    /// appended events, so a tailer wakes at once instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// Events after `after_seq` in global order, at most `limit`. Fails on a row that does
    /// not decode; the tailer uses [`read_stream`](Self::read_stream) instead.
    pub async fn read_from(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
        self.read_stream(after_seq, limit)
            .await?
            .into_iter()
            .map(|row| match row.envelope {
                Ok(e) => Ok((row.seq, e)),
                Err(reason) => Err(StoreError::Corrupt(format!(
                    "event seq {}: {reason}",
                    row.seq
                ))),
            })
            .collect()
    }

    /// Rows after `after_seq` in global order, at most `limit`, each decoded if it can be.
    pub async fn read_stream(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StreamRow>, StoreError> {
        let readers = self.inner.readers.clone();
        let after = to_i64(after_seq, "seq").map_err(StoreError::Corrupt)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(sqlite::read(&readers, move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, limit], raw_row)?;
            Ok(rows
                .map(|r| r.map(RawRow::into_stream_row))
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await?)
    }

    /// Events across orders in log order, for `orders log`: from `since` on, the first
    /// `limit`; without `since`, the last `limit` (the log's tail). `until` and `event_type`
    /// narrow both. Times compare as the stored RFC 3339 text, which sorts as time does.
    pub async fn log(&self, query: &LogQuery) -> Result<Vec<EventEnvelope>, StoreError> {
        let readers = self.inner.readers.clone();
        let since = query.since.map(|t| t.to_string());
        let until = query.until.map(|t| t.to_string());
        let event_type = query.event_type.clone();
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let up_to = query
            .up_to_seq
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        let rows = sqlite::read(&readers, move |conn| {
            let order = if since.is_some() { "ASC" } else { "DESC" };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events
                  WHERE (?1 IS NULL OR occurred_at >= ?1) AND (?2 IS NULL OR occurred_at <= ?2)
                    AND (?3 IS NULL OR event_type = ?3) AND (?5 IS NULL OR seq <= ?5)
                  ORDER BY seq {order} LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![since, until, event_type, limit, up_to], raw_row)?;
            Ok(rows
                .map(|r| r.map(RawRow::into_stream_row))
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
        let mut events = rows
            .into_iter()
            .map(|row| {
                row.envelope.map_err(|reason| {
                    StoreError::Corrupt(format!("event seq {}: {reason}", row.seq))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if query.since.is_none() {
            events.reverse();
        }
        Ok(events)
    }

    /// The highest committed `seq`, read from the file: unlike [`head_seq`](Self::head_seq)
    /// it sees appends made by other processes too.
    pub async fn last_seq(&self) -> Result<u64, StoreError> {
        let readers = self.inner.readers.clone();
        sqlite::read(&readers, move |conn| {
            let n: i64 =
                conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
            to_u64(n, "seq").map_err(DbError::Corrupt)
        })
        .await
        .map_err(StoreError::from)
    }

    /// Number of events in the log.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let readers = self.inner.readers.clone();
        sqlite::read(&readers, move |conn| {
            let n: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
            to_u64(n, "count").map_err(DbError::Corrupt)
        })
        .await
        .map_err(StoreError::from)
    }

    /// Number of distinct orders in the log.
    pub async fn count_streams(&self) -> Result<u64, StoreError> {
        let readers = self.inner.readers.clone();
        sqlite::read(&readers, move |conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM (SELECT DISTINCT aggregate_id FROM events)",
                [],
                |r| r.get(0),
            )?;
            to_u64(n, "count").map_err(DbError::Corrupt)
        })
        .await
        .map_err(StoreError::from)
    }

    /// Orders' event streams by aggregate id, `limit` at a time after `after` (exclusive):
    /// pass the last id of one page to get the next.
    pub async fn list_streams(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>, StoreError> {
        let readers = self.inner.readers.clone();
        let after = after.unwrap_or("").to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        sqlite::read(&readers, move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT aggregate_id, MAX(version), MIN(seq), MAX(seq),
                            MIN(occurred_at), MAX(occurred_at)
                     FROM events WHERE aggregate_id > ?1
                     GROUP BY aggregate_id ORDER BY aggregate_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (aggregate_id, version, first, last, first_at, last_at) = row?;
                let corrupt = DbError::Corrupt;
                out.push(StreamSummary {
                    version: to_u64(version, "version").map_err(corrupt)?,
                    first_seq: to_u64(first, "seq").map_err(corrupt)?,
                    last_seq: to_u64(last, "seq").map_err(corrupt)?,
                    first_at: parse_time(&first_at).map_err(corrupt)?,
                    last_at: parse_time(&last_at).map_err(corrupt)?,
                    aggregate_id,
                });
            }
            Ok(out)
        })
        .await
        .map_err(StoreError::from)
    }

    fn submit(&self, request: AppendRequest) -> oneshot::Receiver<Result<(), StoreError>> {
        let (reply, rx) = oneshot::channel();
        let job = WriteJob { request, reply };
        match &self.inner.jobs {
            Some(jobs) => {
                if let Err(mpsc::SendError(job)) = jobs.send(job) {
                    let _ = job.reply.send(Err(StoreError::Unavailable(
                        "the event store writer has stopped".into(),
                    )));
                }
            }
            None => {
                let _ = job.reply.send(Err(StoreError::Unavailable(
                    "the event store is closing".into(),
                )));
            }
        }
        rx
    }
}

impl EventStore for SqliteEventStore {
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        // Checked before queueing: a bad request never costs the writer anything.
        let checked = check_request(&request);
        let span = tracing::debug_span!(
            "append",
            order_id = %request.aggregate_id,
            correlation_id = request.events.first().map(|e| e.correlation_id.as_str()).unwrap_or(""),
            expected_version = request.expected_version,
            events = request.events.len(),
        );
        let rx = checked.map(|()| self.submit(request));
        tracing::Instrument::instrument(
            async move {
                match rx?.await {
                    Ok(result) => result,
                    Err(_) => Err(StoreError::Unavailable(
                        "the event store writer stopped before answering".into(),
                    )),
                }
            },
            span,
        )
    }

    async fn load(&self, aggregate_id: &str) -> Result<Vec<EventEnvelope>, StoreError> {
        let readers = self.inner.readers.clone();
        let id = aggregate_id.to_string();
        let loaded = sqlite::read(&readers, move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE aggregate_id = ?1 ORDER BY version"
            ))?;
            let rows = stmt.query_map([&id], raw_row)?;
            let mut out = Vec::new();
            for row in rows {
                let row = row?.into_stream_row();
                out.push(row.envelope.map_err(|reason| {
                    DbError::Corrupt(format!("event seq {}: {reason}", row.seq))
                })?);
            }
            Ok(out)
        })
        .await;
        Ok(loaded?)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let readers = self.inner.readers.clone();
        let key = key.to_string();
        let found = sqlite::read(&readers, move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT key, request_hash, aggregate_id, status, response, created_at
                         FROM idempotency WHERE key = ?1",
                )?
                .query_row([&key], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .optional()?;
            let Some((key, request_hash, aggregate_id, status, response, created_at)) = row else {
                return Ok(None);
            };
            Ok(Some(IdempotencyRecord {
                status: u16::try_from(status).map_err(|_| {
                    DbError::Corrupt(format!("idempotency `{key}`: status {status}"))
                })?,
                created_at: parse_time(&created_at).map_err(DbError::Corrupt)?,
                key,
                request_hash,
                aggregate_id,
                response,
            }))
        })
        .await;
        Ok(found?)
    }
}

/// What the writer can check without the database: the size limit, and that the events
/// are this order's next versions (anything else is a caller bug, not a conflict).
fn check_request(request: &AppendRequest) -> Result<(), StoreError> {
    if request.events.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::TooManyEvents {
            max: MAX_EVENTS_PER_APPEND,
            got: request.events.len(),
        });
    }
    for (i, e) in request.events.iter().enumerate() {
        let want = request.expected_version + 1 + i as u64;
        if e.aggregate_id != request.aggregate_id || e.version != want {
            // StoreError has no "bad request" case; a malformed append is as much a broken
            // invariant as corrupt data, and must not be retried.
            return Err(StoreError::Corrupt(format!(
                "append to {} expected event {} to be version {want} of that order, got {} v{}",
                request.aggregate_id, e.event_id, e.aggregate_id, e.version
            )));
        }
    }
    if let Some(rec) = &request.idempotency
        && rec.aggregate_id != request.aggregate_id
    {
        return Err(StoreError::Corrupt(format!(
            "idempotency record `{}` names order {}, the append is to {}",
            rec.key, rec.aggregate_id, request.aggregate_id
        )));
    }
    Ok(())
}

fn writer_loop(mut conn: Connection, jobs: mpsc::Receiver<WriteJob>, head: watch::Sender<u64>) {
    // Blocks until a job arrives; returns once every handle is dropped and the queue drained.
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (results, new_head) = match commit_group(&mut conn, &batch) {
            Ok(done) => done,
            Err(e) => {
                // The whole transaction is gone: every append in it failed, none half-done.
                tracing::error!(error = %e, appends = batch.len(), "event store commit failed");
                let msg = format!("commit failed: {e}");
                let results = batch
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(msg.clone())))
                    .collect();
                (results, None)
            }
        };
        if let Some(seq) = new_head {
            head.send_replace(seq);
        }
        for (job, result) in batch.into_iter().zip(results) {
            // The caller may have gone away (a dropped request); its append still stands.
            let _ = job.reply.send(result);
        }
    }
}

type GroupResult = (Vec<Result<(), StoreError>>, Option<u64>);

/// One transaction for the whole group, one SAVEPOINT per append.
fn commit_group(conn: &mut Connection, batch: &[WriteJob]) -> rusqlite::Result<GroupResult> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut last_seq = None;
    for job in batch {
        let sp = tx.savepoint()?;
        match append_one(&sp, &job.request) {
            Ok(seq) => {
                sp.commit()?;
                last_seq = seq.or(last_seq);
                results.push(Ok(()));
            }
            Err(e) => {
                // Dropping the savepoint rolls this append back; the others stay.
                drop(sp);
                // Some errors (I/O, full disk) make SQLite roll back the whole transaction;
                // going on would commit the later appends one by one outside it.
                let e = match e {
                    DbError::Sql(err) if tx.is_autocommit() => return Err(err),
                    other => StoreError::from(other),
                };
                if let StoreError::Unavailable(_) | StoreError::Corrupt(_) = &e {
                    tracing::warn!(order_id = %job.request.aggregate_id, error = %e, "append failed");
                }
                results.push(Err(e));
            }
        }
    }
    tx.commit()?;
    Ok((results, last_seq))
}

/// Returns the seq of the last inserted event, if any.
fn append_one(tx: &Connection, req: &AppendRequest) -> Result<Option<u64>, DbError> {
    // The key is checked first: a repeated command is "already done", which matters more
    // to the caller than the version it now finds (it answers with the first response).
    if let Some(rec) = &req.idempotency {
        let taken = tx
            .prepare_cached("SELECT 1 FROM idempotency WHERE key = ?1")?
            .exists([&rec.key])?;
        if taken {
            return Err(StoreError::DuplicateIdempotencyKey(rec.key.clone()).into());
        }
    }
    let current: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(version), 0) FROM events WHERE aggregate_id = ?1")?
        .query_row([&req.aggregate_id], |r| r.get(0))?;
    if to_u64(current, "version").map_err(DbError::Corrupt)? != req.expected_version {
        return Err(StoreError::Conflict {
            aggregate_id: req.aggregate_id.clone(),
            expected: req.expected_version,
        }
        .into());
    }
    let mut last = None;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (aggregate_id, version, event_id, event_type, schema_version,
                                 occurred_at, correlation_id, causation_id, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for e in &req.events {
            let payload = serde_json::to_string(&e.payload)
                .map_err(|err| DbError::Corrupt(format!("payload: {err}")))?;
            insert
                .execute(params![
                    e.aggregate_id,
                    to_i64(e.version, "version").map_err(DbError::Corrupt)?,
                    e.event_id,
                    e.event_type,
                    e.schema_version,
                    e.occurred_at.to_string(),
                    e.correlation_id,
                    e.causation_id,
                    payload,
                ])
                .map_err(|err| match constraint(&err) {
                    // The version was just checked, so only the event id can collide.
                    true => DbError::Corrupt(format!("event id {} is already stored", e.event_id)),
                    false => DbError::Sql(err),
                })?;
            last = Some(to_u64(tx.last_insert_rowid(), "seq").map_err(DbError::Corrupt)?);
        }
    }
    if let Some(rec) = &req.idempotency {
        tx.prepare_cached(
            "INSERT INTO idempotency (key, request_hash, aggregate_id, status, response, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            rec.key,
            rec.request_hash,
            rec.aggregate_id,
            rec.status,
            rec.response,
            rec.created_at.to_string()
        ])
        .map_err(|err| match constraint(&err) {
            true => StoreError::DuplicateIdempotencyKey(rec.key.clone()).into(),
            false => DbError::Sql(err),
        })?;
    }
    Ok(last)
}

fn constraint(err: &rusqlite::Error) -> bool {
    err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

const COLUMNS: &str = "seq, aggregate_id, version, event_id, event_type, schema_version, \
                       occurred_at, correlation_id, causation_id, payload";

struct RawRow {
    seq: i64,
    aggregate_id: String,
    version: i64,
    event_id: String,
    event_type: String,
    schema_version: i64,
    occurred_at: String,
    correlation_id: String,
    causation_id: String,
    payload: String,
}

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        seq: r.get(0)?,
        aggregate_id: r.get(1)?,
        version: r.get(2)?,
        event_id: r.get(3)?,
        event_type: r.get(4)?,
        schema_version: r.get(5)?,
        occurred_at: r.get(6)?,
        correlation_id: r.get(7)?,
        causation_id: r.get(8)?,
        payload: r.get(9)?,
    })
}

impl RawRow {
    fn into_stream_row(self) -> StreamRow {
        let raw = serde_json::json!({
            "seq": self.seq,
            "aggregate_id": self.aggregate_id,
            "version": self.version,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "payload": self.payload,
        });
        let envelope = self.decode();
        StreamRow {
            seq: u64::try_from(self.seq).unwrap_or(0),
            version: u64::try_from(self.version).unwrap_or(0),
            aggregate_id: self.aggregate_id,
            envelope,
            raw,
        }
    }

    fn decode(&self) -> Result<EventEnvelope, String> {
        Ok(EventEnvelope {
            event_id: self.event_id.clone(),
            aggregate_id: self.aggregate_id.clone(),
            version: to_u64(self.version, "version")?,
            event_type: self.event_type.clone(),
            schema_version: u32::try_from(self.schema_version)
                .map_err(|_| format!("schema_version {} is out of range", self.schema_version))?,
            occurred_at: parse_time(&self.occurred_at)?,
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            payload: serde_json::from_str(&self.payload)
                .map_err(|e| format!("payload is not JSON: {e}"))?,
        })
    }
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    s.parse()
        .map_err(|e: orders_domain::time::NotATimestamp| e.to_string())
}
