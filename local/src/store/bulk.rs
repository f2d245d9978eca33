//! The log folded in memory for a replay's bulk phase, on every core.
//!
//! One thread steps a single statement over `events.db` and copies each row's columns
//! into a reusable buffer (no per-row allocation, no JSON tree, no dead-letter record);
//! rows go to one of several fold workers by a hash of their order id, so each worker
//! owns whole orders and folds them in log order. Workers decode the envelope, decode the
//! payload through the upcaster ([`OrderEvent::decode_json`]) and fold with
//! [`MemoryFold`] (the same guard and folds as the live path), then serialize their rows
//! in parallel. Daily sales are sums, so the workers' days simply add up.

use super::projection::{FoldRows, MemoryFold, Targets};
use super::sqlite::{self, to_i64};
use super::{DbError, SqliteEventStore, blocking};
use orders_domain::Timestamp;
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::ports::StoreError;
use rusqlite::types::ValueRef;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

/// Rows per batch handed to a worker: large enough to make the channel cheap, small
/// enough to keep every worker busy from the start.
const BATCH_ROWS: usize = 1024;

/// Batches queued per worker: bounds memory when the reader is faster than a worker.
const QUEUE: usize = 8;

/// How much of `events.db` the bulk reader maps (SQLite caps it at its own maximum).
const MMAP_BYTES: i64 = 1 << 32;

/// What to fold.
#[derive(Debug, Clone, Copy)]
pub struct BulkRead {
    /// Fold the rows after this `seq`.
    pub after: u64,
    pub targets: Targets,
    /// Collect undecodable rows (to be parked) instead of stopping at the first.
    pub skip_undecodable: bool,
    /// Fold workers (besides the reading thread).
    pub workers: usize,
    /// About how many orders the log holds, to size the workers' maps (0: unknown).
    pub orders_hint: usize,
}

/// Shared with the caller while the fold runs: progress out, stop in.
#[derive(Debug, Default)]
pub struct BulkControl {
    pub events_read: AtomicU64,
    pub stop: AtomicBool,
}

/// A row that could not be decoded or projected.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub seq: u64,
    pub aggregate_id: String,
    pub version: u64,
    pub reason: String,
    /// The stored columns as JSON, for a dead-letter record.
    pub record: String,
}

#[derive(Debug)]
pub struct BulkFolded {
    pub fold: FoldRows,
    /// Rows read, decoded or not.
    pub events: u64,
    /// The last `seq` read (`after` if none).
    pub last_seq: u64,
    /// Undecodable rows in log order (with `skip_undecodable`).
    pub parked: Vec<BadRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("event seq {} does not decode: {}", .0.seq, .0.reason)]
    Undecodable(BadRow),
    #[error("event seq {} cannot be projected: {}", .0.seq, .0.reason)]
    Projection(BadRow),
    #[error("stopped")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BulkError {
    fn seq(&self) -> u64 {
        match self {
            BulkError::Undecodable(r) | BulkError::Projection(r) => r.seq,
            BulkError::Stopped | BulkError::Store(_) => 0,
        }
    }
}

impl SqliteEventStore {
    /// Folds the rows after `read.after` into `read.targets`' projections in memory.
    /// Reads one consistent snapshot of the log; rows appended meanwhile are left for the
    /// caller's catch-up (after [`BulkFolded::last_seq`]).
    pub async fn fold_log(
        &self,
        read: BulkRead,
        control: std::sync::Arc<BulkControl>,
    ) -> Result<BulkFolded, BulkError> {
        let path = self.path().to_path_buf();
        match blocking(move || Ok(run(&path, read, &control))).await {
            Ok(outcome) => outcome,
            Err(e) => Err(BulkError::Store(e.into())),
        }
    }
}

/// The text columns, in `SELECT` order after the three integers.
const TEXT_COLUMNS: [&str; 7] = [
    "aggregate_id",
    "event_id",
    "event_type",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "payload",
];
const AGGREGATE_ID: usize = 0;
const EVENT_ID: usize = 1;
const EVENT_TYPE: usize = 2;
const OCCURRED_AT: usize = 3;
const CORRELATION_ID: usize = 4;
const CAUSATION_ID: usize = 5;
const PAYLOAD: usize = 6;

/// Rows copied out of SQLite: every column's bytes in one buffer.
#[derive(Default)]
struct RawBatch {
    bytes: Vec<u8>,
    rows: Vec<RawRow>,
}

struct RawRow {
    seq: i64,
    version: i64,
    schema_version: i64,
    /// Where each of [`TEXT_COLUMNS`] is in `bytes`; `None` if it is not TEXT.
    text: [Option<Range<usize>>; 7],
}

impl RawBatch {
    fn push(&mut self, row: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        let int = |i: usize| -> rusqlite::Result<i64> {
            match row.get_ref(i)? {
                ValueRef::Integer(n) => Ok(n),
                // A value of another type never decodes; -1 makes the row undecodable.
                _ => Ok(-1),
            }
        };
        let (seq, version, schema_version) = (int(0)?, int(1)?, int(2)?);
        let mut text: [Option<Range<usize>>; 7] = Default::default();
        for (i, slot) in text.iter_mut().enumerate() {
            if let ValueRef::Text(b) = row.get_ref(3 + i)? {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(b);
                *slot = Some(start..self.bytes.len());
            }
        }
        self.rows.push(RawRow {
            seq,
            version,
            schema_version,
            text,
        });
        Ok(())
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.rows.clear();
    }
}

/// Spreads orders over workers; any stable hash will do (FNV-1a).
fn partition(aggregate_id: &[u8], workers: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in aggregate_id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % workers as u64) as usize
}

fn run(
    path: &std::path::Path,
    read: BulkRead,
    control: &BulkControl,
) -> Result<BulkFolded, BulkError> {
    let workers = read.workers.max(1);
    let abort = AtomicBool::new(false);
    let (recycle_tx, recycle_rx) = mpsc::channel::<RawBatch>();
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<RawBatch>(QUEUE);
            let (recycle, abort) = (recycle_tx.clone(), &abort);
            queues.push(tx);
            let worker = std::thread::Builder::new()
                .name("replay-fold".into())
                .spawn_scoped(scope, move || work(rx, recycle, read, abort))
                .map_err(|e| {
                    BulkError::Store(StoreError::Unavailable(format!("fold worker: {e}")))
                })?;
            handles.push(worker);
        }
        drop(recycle_tx);
        let started = std::time::Instant::now();
        let reading = read_log(path, read.after, &queues, &recycle_rx, control, &abort);
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "bulk: log read");
        if reading.is_err() {
            // Stopped or failed: the workers' folds are of no use.
            abort.store(true, Ordering::Relaxed);
        }
        // Closing the queues lets the workers finish and serialize their rows.
        drop(queues);
        let mut folds = Vec::with_capacity(workers);
        let mut parked = Vec::new();
        let mut first_error: Option<BulkError> = None;
        for handle in handles {
            let done = handle.join().map_err(|_| {
                BulkError::Store(StoreError::Unavailable("a fold worker panicked".into()))
            })?;
            parked.extend(done.parked);
            match done.result {
                Ok(fold) => folds.push(fold),
                // Only after an abort, whose cause is reported by the reader or a worker.
                Err(BulkError::Stopped) => {}
                // The log's first bad row wins: each worker stops at its own first one,
                // and every row before it went to some worker.
                Err(e) => {
                    if first_error.as_ref().is_none_or(|f| e.seq() < f.seq()) {
                        first_error = Some(e);
                    }
                }
            }
        }
        let (events, last_seq) = reading?;
        if let Some(e) = first_error {
            return Err(e);
        }
        parked.sort_by_key(|r| r.seq);
        Ok(BulkFolded {
            fold: FoldRows::merge(folds),
            events,
            last_seq: last_seq.unwrap_or(read.after),
            parked,
        })
    })
}

/// Streams the log into the workers' queues; returns (rows read, last seq).
fn read_log(
    path: &std::path::Path,
    after: u64,
    queues: &[mpsc::SyncSender<RawBatch>],
    recycled: &mpsc::Receiver<RawBatch>,
    control: &BulkControl,
    abort: &AtomicBool,
) -> Result<(u64, Option<u64>), BulkError> {
    let sql = |e: rusqlite::Error| BulkError::Store(DbError::Sql(e).into());
    let conn = sqlite::open_reader(path).map_err(sql)?;
    // One pass over the whole file: mapping it saves a copy of every page (read-only
    // connection, so a mapping cannot corrupt anything).
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(sql)?;
    let after = to_i64(after, "seq").map_err(|r| BulkError::Store(StoreError::Corrupt(r)))?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT seq, version, schema_version, {} FROM events WHERE seq > ?1 ORDER BY seq",
            TEXT_COLUMNS.join(", ")
        ))
        .map_err(sql)?;
    let mut rows = stmt.query([after]).map_err(sql)?;
    let mut pending: Vec<RawBatch> = (0..queues.len()).map(|_| RawBatch::default()).collect();
    let (mut count, mut last) = (0u64, None);
    let send = |i: usize, pending: &mut Vec<RawBatch>| {
        let fresh = recycled.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut pending[i], fresh);
        // A worker only goes away after an error, which `abort` reports.
        let _ = queues[i].send(full);
    };
    while let Some(row) = rows.next().map_err(sql)? {
        let key = match row.get_ref(3).map_err(sql)? {
            ValueRef::Text(b) => partition(b, queues.len()),
            _ => 0,
        };
        let batch = &mut pending[key];
        batch.push(row).map_err(sql)?;
        count += 1;
        last = batch.rows.last().map(|r| r.seq);
        if batch.rows.len() >= BATCH_ROWS {
            send(key, &mut pending);
            control
                .events_read
                .fetch_add(BATCH_ROWS as u64, Ordering::Relaxed);
            if control.stop.load(Ordering::Relaxed) {
                return Err(BulkError::Stopped);
            }
            // Every row read so far still reaches a worker (the flush below), so the
            // log's first bad row is among the errors the workers report.
            if abort.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    for i in 0..queues.len() {
        if !pending[i].rows.is_empty() {
            send(i, &mut pending);
        }
    }
    control.events_read.store(count, Ordering::Relaxed);
    let last = last
        .map(|s| {
            u64::try_from(s).map_err(|_| BulkError::Store(StoreError::Corrupt(format!("seq {s}"))))
        })
        .transpose()?;
    Ok((count, last))
}

struct WorkerDone {
    result: Result<FoldRows, BulkError>,
    parked: Vec<BadRow>,
}

fn work(
    queue: mpsc::Receiver<RawBatch>,
    recycle: mpsc::Sender<RawBatch>,
    read: BulkRead,
    abort: &AtomicBool,
) -> WorkerDone {
    let started = std::time::Instant::now();
    let mut fold = MemoryFold::with_capacity(read.orders_hint / read.workers.max(1));
    let mut parked = Vec::new();
    let mut failed = None;
    for mut batch in queue.iter() {
        if failed.is_none() {
            for row in &batch.rows {
                let decoded = decode(&batch.bytes, row);
                let error = match decoded {
                    Ok((envelope, event)) => match fold.apply(&read.targets, &envelope, &event) {
                        Ok(_) => continue,
                        Err(e) => BulkError::Projection(bad_row(&batch.bytes, row, e.to_string())),
                    },
                    Err(reason) if read.skip_undecodable => {
                        parked.push(bad_row(&batch.bytes, row, reason));
                        continue;
                    }
                    Err(reason) => BulkError::Undecodable(bad_row(&batch.bytes, row, reason)),
                };
                failed = Some(error);
                abort.store(true, Ordering::Relaxed);
                break;
            }
        }
        // After a failure the queue is drained (not closed) so the reader never blocks.
        batch.clear();
        let _ = recycle.send(batch);
    }
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "bulk: worker folded"
    );
    let result = match failed {
        Some(e) => Err(e),
        None if abort.load(Ordering::Relaxed) => Err(BulkError::Stopped),
        None => Ok(fold.finish()),
    };
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "bulk: worker sorted"
    );
    WorkerDone { result, parked }
}

fn column<'a>(bytes: &'a [u8], row: &RawRow, i: usize) -> Result<&'a str, String> {
    let range = row.text[i]
        .clone()
        .ok_or_else(|| format!("{} is not text", TEXT_COLUMNS[i]))?;
    std::str::from_utf8(&bytes[range]).map_err(|e| format!("{} is not UTF-8: {e}", TEXT_COLUMNS[i]))
}

/// The envelope and its event. The envelope's `payload` is left `Null`: the event is
/// decoded straight from the stored text, and the folds read the event, not the payload.
fn decode(bytes: &[u8], row: &RawRow) -> Result<(EventEnvelope, OrderEvent), String> {
    let text = |i| column(bytes, row, i);
    let event_type = text(EVENT_TYPE)?;
    let schema_version = u32::try_from(row.schema_version)
        .map_err(|_| format!("schema_version {} is out of range", row.schema_version))?;
    let event = OrderEvent::decode_json(event_type, schema_version, text(PAYLOAD)?)
        .map_err(|e| e.to_string())?;
    let occurred_at = text(OCCURRED_AT)?;
    let envelope = EventEnvelope {
        event_id: text(EVENT_ID)?.to_string(),
        aggregate_id: text(AGGREGATE_ID)?.to_string(),
        version: u64::try_from(row.version)
            .map_err(|_| format!("version is negative: {}", row.version))?,
        event_type: event_type.to_string(),
        schema_version,
        occurred_at: occurred_at
            .parse::<Timestamp>()
            .map_err(|e| e.to_string())?,
        correlation_id: text(CORRELATION_ID)?.to_string(),
        causation_id: text(CAUSATION_ID)?.to_string(),
        payload: serde_json::Value::Null,
    };
    Ok((envelope, event))
}

/// A bad row with its columns as JSON (lossy where they are not text), like the tailer's.
fn bad_row(bytes: &[u8], row: &RawRow, reason: String) -> BadRow {
    let lossy = |i: usize| -> serde_json::Value {
        match &row.text[i] {
            Some(r) => String::from_utf8_lossy(&bytes[r.clone()])
                .into_owned()
                .into(),
            None => serde_json::Value::Null,
        }
    };
    let record = serde_json::json!({
        "seq": row.seq,
        "aggregate_id": lossy(AGGREGATE_ID),
        "version": row.version,
        "event_id": lossy(EVENT_ID),
        "event_type": lossy(EVENT_TYPE),
        "schema_version": row.schema_version,
        "occurred_at": lossy(OCCURRED_AT),
        "correlation_id": lossy(CORRELATION_ID),
        "causation_id": lossy(CAUSATION_ID),
        "payload": lossy(PAYLOAD),
    });
    BadRow {
        seq: u64::try_from(row.seq).unwrap_or(0),
        aggregate_id: lossy(AGGREGATE_ID).as_str().unwrap_or_default().to_string(),
        version: u64::try_from(row.version).unwrap_or(0),
        reason,
        record: record.to_string(),
    }
}
