//! A replay's bulk phase: the log folded and written on every core, in one pass.
//!
//! One thread steps a single statement over `events.db` in order-id order (the
//! `(aggregate_id, version)` index), so each order's events come together, and copies
//! each row's columns into a reusable buffer (no per-row allocation, no JSON tree, no
//! dead-letter record). Batches of whole orders go round-robin to fold workers, which
//! decode the envelope, decode the payload through the upcaster
//! ([`OrderEvent::decode_json`]), fold each order with [`OrderFold`] (the same guard and
//! folds as the live path) and encode its rows. The calling thread writes the batches in
//! order into the new generations ([`SqliteReadModels::save_bulk`]) while later ones are
//! read and folded. Memory is a few batches, whatever the size of the log.

use super::projection::{FoldedBatch, OrderFold, Targets};
use super::read_models::{BulkEnd, NewDeadLetter, SqliteReadModels};
use super::sqlite;
use super::{DbError, LocalStores, blocking};
use orders_domain::Timestamp;
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::ports::StoreError;
use rusqlite::types::ValueRef;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

/// Rows per batch handed to a worker (rounded up to a whole order): large enough to make
/// the channels cheap, small enough to keep every worker busy from the start.
const BATCH_ROWS: usize = 1024;

/// Batches queued per worker: bounds memory when the reader is faster than a worker.
const QUEUE: usize = 8;

/// How much of `events.db` the bulk reader maps (SQLite caps it at its own maximum).
const MMAP_BYTES: i64 = 1 << 32;

/// What to rebuild.
#[derive(Debug, Clone, Copy)]
pub struct BulkRead {
    pub targets: Targets,
    /// Park undecodable rows (as dead letters) instead of stopping at the first.
    pub skip_undecodable: bool,
    /// Fold workers (besides the reading and the writing thread).
    pub workers: usize,
}

/// Shared with the caller while the rebuild runs: progress out, stop in.
#[derive(Debug, Default)]
pub struct BulkControl {
    /// Events whose orders' rows are written.
    pub events_done: AtomicU64,
    /// Every row is written; the days and the customer index are (a sort of the whole
    /// table, seconds on a large log: worth saying, as no count moves meanwhile).
    pub completing: AtomicBool,
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

/// A completed bulk phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkDone {
    /// Rows read, decoded or not.
    pub events: u64,
    /// The log's last `seq` when the read began: later rows are left for the caller's
    /// catch-up.
    pub last_seq: u64,
    /// Rows parked as dead letters (with `skip_undecodable`).
    pub parked: u64,
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

fn store_error(e: impl Into<DbError>) -> BulkError {
    BulkError::Store(e.into().into())
}

impl LocalStores {
    /// Rebuilds `read.targets` (new, empty or partly written generations) from the whole
    /// log, as one consistent snapshot; rows appended meanwhile are left for the caller's
    /// catch-up (after [`BulkDone::last_seq`]). Parked rows become dead letters through
    /// `letter`; they and the checkpoint `checkpoint` are written with the last rows.
    /// Stopped or failed, the generations are left half-written (not active, nobody
    /// reads them) without letters or checkpoint.
    pub async fn rebuild(
        &self,
        read: BulkRead,
        checkpoint: &str,
        letter: fn(BadRow) -> NewDeadLetter,
        control: Arc<BulkControl>,
    ) -> Result<BulkDone, BulkError> {
        let path = self.events.path().to_path_buf();
        let read_models = self.read_models.clone();
        let checkpoint = checkpoint.to_string();
        let rebuilt = blocking(move || {
            Ok(run(
                &path,
                &read_models,
                read,
                &checkpoint,
                letter,
                &control,
            ))
        })
        .await;
        match rebuilt {
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

    /// The order id of the last row (an order's rows never span two batches).
    fn last_order(&self) -> Option<&[u8]> {
        let range = self.rows.last()?.text[AGGREGATE_ID].clone()?;
        self.bytes.get(range)
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.rows.clear();
    }
}

/// A worker's batch, folded: numbered, so the writer takes them in log order.
struct Folded {
    number: u64,
    result: Result<FoldedBatch, BulkError>,
    /// Rows read (parked ones included).
    events: u64,
    parked: Vec<BadRow>,
}

fn run(
    path: &std::path::Path,
    read_models: &SqliteReadModels,
    read: BulkRead,
    checkpoint: &str,
    letter: fn(BadRow) -> NewDeadLetter,
    control: &BulkControl,
) -> Result<BulkDone, BulkError> {
    let workers = read.workers.max(1);
    let abort = AtomicBool::new(false);
    let (recycle_tx, recycle_rx) = mpsc::channel::<RawBatch>();
    let (folded_tx, folded_rx) = mpsc::sync_channel::<Folded>(workers * QUEUE);
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<(u64, RawBatch)>(QUEUE);
            let (recycle, folded, abort) = (recycle_tx.clone(), folded_tx.clone(), &abort);
            queues.push(tx);
            std::thread::Builder::new()
                .name("replay-fold".into())
                .spawn_scoped(scope, move || work(rx, recycle, folded, read, abort))
                .map_err(|e| {
                    BulkError::Store(StoreError::Unavailable(format!("fold worker: {e}")))
                })?;
        }
        drop((recycle_tx, folded_tx));
        let (abort_ref, stop) = (&abort, &control.stop);
        let reader = std::thread::Builder::new()
            .name("replay-read".into())
            .spawn_scoped(scope, move || {
                let started = std::time::Instant::now();
                let read = read_log(path, &queues, &recycle_rx, stop, abort_ref);
                tracing::debug!(seconds = started.elapsed().as_secs_f64(), "bulk: log read");
                if read.is_err() {
                    abort_ref.store(true, Ordering::Relaxed);
                }
                // Closing the queues lets the workers finish.
                drop(queues);
                read
            })
            .map_err(|e| BulkError::Store(StoreError::Unavailable(format!("log reader: {e}"))))?;

        // This thread writes the batches in the order they were read (order-id order)
        // while later ones are folded.
        let mut failed: Option<BulkError> = None;
        let mut parked: Vec<BadRow> = Vec::new();
        let mut last_seq = 0;
        let saved = read_models.save_bulk(read.targets, |save| {
            let mut waiting: BTreeMap<u64, Folded> = BTreeMap::new();
            let mut next = 0u64;
            'receive: for folded in folded_rx.iter() {
                waiting.insert(folded.number, folded);
                while let Some(folded) = waiting.remove(&next) {
                    next += 1;
                    parked.extend(folded.parked);
                    match folded.result {
                        Ok(batch) => save.write(batch)?,
                        Err(e) => {
                            failed = Some(e);
                            abort.store(true, Ordering::Relaxed);
                            break 'receive;
                        }
                    }
                    control
                        .events_done
                        .fetch_add(folded.events, Ordering::Relaxed);
                }
            }
            // Whatever the workers still send is of no use now; dropping the receiver
            // lets them finish.
            drop(folded_rx);
            let verdict = reader
                .join()
                .map_err(|_| DbError::Task("the log reader panicked".into()))?;
            match verdict {
                Ok(last) if failed.is_none() => {
                    control.completing.store(true, Ordering::Relaxed);
                    last_seq = last;
                    parked.sort_by_key(|r| r.seq);
                    Ok(Some(BulkEnd {
                        letters: parked.iter().cloned().map(letter).collect(),
                        checkpoint: checkpoint.to_string(),
                        seq: last,
                    }))
                }
                Ok(_) => Ok(None),
                Err(e) => {
                    failed.get_or_insert(e);
                    Ok(None)
                }
            }
        });
        if saved.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        let saved = saved.map_err(store_error)?;
        match failed {
            Some(e) => Err(e),
            None if !saved => Err(BulkError::Stopped),
            None => Ok(BulkDone {
                events: control.events_done.load(Ordering::Relaxed),
                last_seq,
                parked: parked.len() as u64,
            }),
        }
    })
}

/// Streams the whole log, in order-id order, into the workers' queues (batches of whole
/// orders, round-robin); returns the log's last `seq` in the snapshot read.
fn read_log(
    path: &std::path::Path,
    queues: &[mpsc::SyncSender<(u64, RawBatch)>],
    recycled: &mpsc::Receiver<RawBatch>,
    stop: &AtomicBool,
    abort: &AtomicBool,
) -> Result<u64, BulkError> {
    let conn = sqlite::open_reader(path).map_err(store_error)?;
    // One pass over the whole file: mapping it saves a copy of every page (read-only
    // connection, so a mapping cannot corrupt anything).
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(store_error)?;
    // One snapshot for the last seq and the rows.
    conn.execute_batch("BEGIN").map_err(store_error)?;
    let last: Option<i64> = conn
        .query_row("SELECT max(seq) FROM events", [], |r| r.get(0))
        .map_err(store_error)?;
    let last = u64::try_from(last.unwrap_or(0))
        .map_err(|_| BulkError::Store(StoreError::Corrupt(format!("seq {last:?}"))))?;
    // The order matches the UNIQUE (aggregate_id, version) index: a walk, not a sort.
    let mut stmt = conn
        .prepare(&format!(
            "SELECT seq, version, schema_version, {} FROM events ORDER BY aggregate_id, version",
            TEXT_COLUMNS.join(", ")
        ))
        .map_err(store_error)?;
    let mut rows = stmt.query([]).map_err(store_error)?;
    let mut batch = RawBatch::default();
    let mut number = 0u64;
    // False once a worker has gone away (after an error, which `abort` reports).
    let mut send = |batch: &mut RawBatch| -> bool {
        let fresh = recycled.try_recv().unwrap_or_default();
        let full = std::mem::replace(batch, fresh);
        let sent = queues[number as usize % queues.len()]
            .send((number, full))
            .is_ok();
        number += 1;
        sent
    };
    while let Some(row) = rows.next().map_err(store_error)? {
        if batch.rows.len() >= BATCH_ROWS {
            let next_order = match row.get_ref(3).map_err(store_error)? {
                ValueRef::Text(b) => Some(b),
                _ => None,
            };
            if next_order != batch.last_order() {
                if stop.load(Ordering::Relaxed) {
                    return Err(BulkError::Stopped);
                }
                if !send(&mut batch) || abort.load(Ordering::Relaxed) {
                    return Err(BulkError::Stopped);
                }
            }
        }
        batch.push(row).map_err(store_error)?;
    }
    if !batch.rows.is_empty() && !send(&mut batch) {
        return Err(BulkError::Stopped);
    }
    Ok(last)
}

fn work(
    queue: mpsc::Receiver<(u64, RawBatch)>,
    recycle: mpsc::Sender<RawBatch>,
    folded: mpsc::SyncSender<Folded>,
    read: BulkRead,
    abort: &AtomicBool,
) {
    for (number, mut batch) in queue.iter() {
        // After an abort nothing is written any more: the queue is only drained, so the
        // reader never blocks.
        if !abort.load(Ordering::Relaxed) {
            let done = fold_batch(&batch, read);
            if folded.send(Folded { number, ..done }).is_err() {
                // The writer stopped.
                return;
            }
        }
        batch.clear();
        let _ = recycle.send(batch);
    }
}

/// Folds one batch of whole orders into their rows.
fn fold_batch(batch: &RawBatch, read: BulkRead) -> Folded {
    let mut fold = OrderFold::new(read.targets);
    let mut parked = Vec::new();
    let events = batch.rows.len() as u64;
    for row in &batch.rows {
        let error = match decode(&batch.bytes, row) {
            Ok((envelope, event)) => match fold.apply(&envelope, &event) {
                Ok(_) => continue,
                Err(e) => BulkError::Projection(bad_row(&batch.bytes, row, e.to_string())),
            },
            Err(reason) if read.skip_undecodable => {
                parked.push(bad_row(&batch.bytes, row, reason));
                continue;
            }
            Err(reason) => BulkError::Undecodable(bad_row(&batch.bytes, row, reason)),
        };
        return Folded {
            number: 0,
            result: Err(error),
            events,
            parked,
        };
    }
    let result = fold.finish().map_err(|e| {
        // Encoding the last order failed: name its last row.
        let reason = e.to_string();
        match batch.rows.last() {
            Some(row) => BulkError::Projection(bad_row(&batch.bytes, row, reason)),
            None => BulkError::Store(StoreError::Corrupt(reason)),
        }
    });
    Folded {
        number: 0,
        result,
        events,
        parked,
    }
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
