//! The projections' SQLite tables and the one code path that folds an event into them.
//! The live projector (through `ReadModels::apply`) and a replay into a fresh generation
//! both go through [`apply`]; only the [`Targets`] differ.
//!
//! Every projection has numbered **generations**, each its own set of tables
//! (`orders_g1`, `daily_sales_g1`, `sales_trackers_g1`, …). `projection_generations` says
//! which generation of each projection is `active` (what readers and the live projector
//! use); a replay builds a new one while the old one keeps serving, then flips the pointer
//! in one transaction (blue/green).

use super::DbError;
use super::sqlite::to_i64;
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::ports::{ApplyOutcome, Page, ReadModelError};
use orders_domain::projection::{
    Applicability, DailySales, OrderSummary, OrderView, ProjectionName, SalesDelta, SalesTracker,
    applicability, apply_daily_sales, apply_order_view,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

/// The generation of each projection an event goes to; `None` leaves a projection alone
/// (a replay of one projection must not touch the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Targets {
    pub orders: Option<u32>,
    pub daily_sales: Option<u32>,
}

impl Targets {
    pub fn get(&self, projection: ProjectionName) -> Option<u32> {
        match projection {
            ProjectionName::Orders => self.orders,
            ProjectionName::DailySales => self.daily_sales,
        }
    }

    pub fn set(&mut self, projection: ProjectionName, generation: Option<u32>) {
        match projection {
            ProjectionName::Orders => self.orders = generation,
            ProjectionName::DailySales => self.daily_sales = generation,
        }
    }

    pub fn only(projection: ProjectionName, generation: u32) -> Self {
        let mut t = Targets::default();
        t.set(projection, Some(generation));
        t
    }
}

pub(crate) fn create_tables(
    conn: &Connection,
    projection: ProjectionName,
    g: u32,
) -> rusqlite::Result<()> {
    match projection {
        ProjectionName::Orders => conn.execute_batch(&format!(
            "CREATE TABLE orders_g{g} (
                 order_id    TEXT    PRIMARY KEY,
                 version     INTEGER NOT NULL, -- last applied version: the duplicate guard
                 customer_id TEXT    NOT NULL,
                 placed_at   INTEGER NOT NULL, -- ms since the epoch, for newest-first paging
                 view        TEXT    NOT NULL  -- the OrderView as JSON
             );
             {}",
            customer_index(g)
        )),
        ProjectionName::DailySales => conn.execute_batch(&format!(
            "CREATE TABLE daily_sales_g{g} (
                 date             TEXT    NOT NULL,
                 currency         TEXT    NOT NULL,
                 orders_placed    INTEGER NOT NULL,
                 amount_placed    INTEGER NOT NULL,
                 orders_cancelled INTEGER NOT NULL,
                 amount_cancelled INTEGER NOT NULL,
                 net_amount       INTEGER NOT NULL,
                 PRIMARY KEY (date, currency)
             ) WITHOUT ROWID;
             CREATE TABLE sales_trackers_g{g} (
                 order_id TEXT    PRIMARY KEY,
                 version  INTEGER NOT NULL, -- last applied version: the duplicate guard
                 tracker  TEXT    NOT NULL  -- the SalesTracker as JSON
             ) WITHOUT ROWID;"
        )),
    }
}

fn customer_index(g: u32) -> String {
    format!(
        "CREATE INDEX orders_g{g}_by_customer
             ON orders_g{g} (customer_id, placed_at DESC, order_id DESC);"
    )
}

pub(crate) fn drop_tables(
    conn: &Connection,
    projection: ProjectionName,
    g: u32,
) -> rusqlite::Result<()> {
    match projection {
        ProjectionName::Orders => conn.execute_batch(&format!("DROP TABLE IF EXISTS orders_g{g};")),
        ProjectionName::DailySales => conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS daily_sales_g{g}; DROP TABLE IF EXISTS sales_trackers_g{g};"
        )),
    }
}

/// Folds one event into every targeted projection, inside the caller's transaction.
/// All or nothing: on a gap or a fold error nothing is written (the caller rolls back).
pub(crate) fn apply(
    conn: &Connection,
    targets: &Targets,
    envelope: &EventEnvelope,
    event: &OrderEvent,
) -> Result<ApplyOutcome, DbError> {
    let id = &envelope.aggregate_id;
    let view = match targets.orders {
        Some(g) => Some(load_view(conn, g, id)?),
        None => None,
    };
    let tracker = match targets.daily_sales {
        Some(g) => Some(load_tracker(conn, g, id)?),
        None => None,
    };
    let Folded { orders, sales } = fold(view, tracker, envelope, event)?;
    let orders = orders.and_then(Step::applied).zip(targets.orders);
    let sales = sales.and_then(Step::applied).zip(targets.daily_sales);
    let applied = orders.is_some() || sales.is_some();
    if let Some((view, g)) = orders {
        save_view(conn, g, id, &view)?;
    }
    if let Some(((tracker, delta), g)) = sales {
        save_tracker(conn, g, id, &tracker)?;
        if let Some(delta) = delta {
            let mut day = load_day(conn, g, &delta.date, &delta.currency)?
                .unwrap_or_else(|| DailySales::new(&delta.date, &delta.currency));
            day.add(&delta);
            save_day(conn, g, &day)?;
        }
    }
    Ok(if applied {
        ApplyOutcome::Applied
    } else {
        ApplyOutcome::Duplicate
    })
}

/// What one event does to one projection's state of its order.
enum Step<New, Old> {
    /// The event applied: the new state.
    Applied(New),
    /// A duplicate: the state handed in, unchanged (an in-memory fold keeps it).
    Unchanged(Old),
}

impl<New, Old> Step<New, Old> {
    fn applied(self) -> Option<New> {
        match self {
            Step::Applied(new) => Some(new),
            Step::Unchanged(_) => None,
        }
    }
}

/// What one event does to each targeted projection (`None`: not targeted).
struct Folded {
    orders: Option<Step<OrderView, Option<OrderView>>>,
    sales: Option<Step<SalesStep, Option<SalesTracker>>>,
}

/// The new tracker, and the change to its day's counters.
type SalesStep = (SalesTracker, Option<SalesDelta>);

/// The one place that applies the version guard and the domain's folds to an order's
/// current projection state. `view`/`tracker` are `None` for a projection not targeted,
/// `Some(None)` for an order it has not seen yet.
fn fold(
    view: Option<Option<OrderView>>,
    tracker: Option<Option<SalesTracker>>,
    envelope: &EventEnvelope,
    event: &OrderEvent,
) -> Result<Folded, ReadModelError> {
    let gap = |expected| ReadModelError::Gap {
        aggregate_id: envelope.aggregate_id.clone(),
        expected,
        got: envelope.version,
    };
    // Decide for every projection before anything is written.
    let orders = match view {
        Some(view) => {
            let last = view.as_ref().map_or(0, |v| v.version);
            Some(match applicability(last, envelope.version) {
                Applicability::Apply => Step::Applied(apply_order_view(view, envelope, event)?),
                Applicability::Duplicate => Step::Unchanged(view),
                Applicability::Gap { expected } => return Err(gap(expected)),
            })
        }
        None => None,
    };
    let sales = match tracker {
        Some(tracker) => {
            let last = tracker.as_ref().map_or(0, |t| t.version);
            Some(match applicability(last, envelope.version) {
                Applicability::Apply => Step::Applied(apply_daily_sales(tracker, envelope, event)),
                Applicability::Duplicate => Step::Unchanged(tracker),
                Applicability::Gap { expected } => return Err(gap(expected)),
            })
        }
        None => None,
    };
    Ok(Folded { orders, sales })
}

/// The same fold as [`apply`] over maps in memory, for a replay's bulk phase: the whole log
/// is folded here and each order's final rows are written once ([`save_fold`]), instead
/// of a read and a write per event. The guard and the folds are the domain's, as in `apply`.
///
/// Folds of disjoint sets of orders can run in parallel and be merged
/// ([`EncodedFold::merge`]): per-order state never spans two of them, and daily sales
/// are sums.
#[derive(Debug, Default)]
pub struct MemoryFold {
    // `None` only while an event is being folded: the state moves through the fold
    // instead of being cloned for every event. Views are boxed: a 536-byte view inline
    // made each worker's map ~150 MB of buckets, and collecting, sorting and merging the
    // rows copied every view three more times (the 1M-event fold: ~3.3 s -> ~2.4 s).
    views: HashMap<String, Option<Box<OrderView>>, FnvBuild>,
    trackers: HashMap<String, Option<SalesTracker>, FnvBuild>,
    days: BTreeMap<(String, String), DailySales>,
    /// An event failed: the order it was folding has lost its state, so the fold is void.
    failed: bool,
}

impl MemoryFold {
    /// A fold sized for about `orders` orders (saves rehashing the maps as they grow).
    pub fn with_capacity(orders: usize) -> Self {
        MemoryFold {
            views: HashMap::with_capacity_and_hasher(orders, FnvBuild),
            trackers: HashMap::with_capacity_and_hasher(orders, FnvBuild),
            ..MemoryFold::default()
        }
    }

    pub fn orders(&self) -> usize {
        self.views.len().max(self.trackers.len())
    }

    /// Folds one event. After an error the fold is void (every later call fails too):
    /// a replay stops at the first event it cannot project.
    pub fn apply(
        &mut self,
        targets: &Targets,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> Result<ApplyOutcome, ReadModelError> {
        if self.failed {
            return Err(ReadModelError::Corrupt(
                "an earlier event of this fold failed".into(),
            ));
        }
        let id = &envelope.aggregate_id;
        let view = targets
            .orders
            .map(|_| take(&mut self.views, id).map(|view| *view));
        let tracker = targets.daily_sales.map(|_| take(&mut self.trackers, id));
        let Folded { orders, sales } = match fold(view, tracker, envelope, event) {
            Ok(folded) => folded,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        let mut applied = false;
        if let Some(step) = orders {
            let view = match step {
                Step::Applied(v) => {
                    applied = true;
                    Some(v)
                }
                Step::Unchanged(v) => v,
            };
            put(&mut self.views, id, view.map(Box::new));
        }
        if let Some(step) = sales {
            let tracker = match step {
                Step::Applied((t, delta)) => {
                    applied = true;
                    if let Some(d) = delta {
                        self.days
                            .entry((d.date.clone(), d.currency.clone()))
                            .or_insert_with(|| DailySales::new(&d.date, &d.currency))
                            .add(&d);
                    }
                    Some(t)
                }
                Step::Unchanged(t) => t,
            };
            put(&mut self.trackers, id, tracker);
        }
        Ok(if applied {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::Duplicate
        })
    }

    /// The final rows [`save_fold`] writes, sorted by order id (so the inserts append to
    /// the B-trees instead of splitting pages all over them). Serializing is left to
    /// `save_fold`, which streams it: a few hundred megabytes of JSON never sit in memory
    /// at once.
    pub fn finish(self) -> FoldRows {
        FoldRows {
            views: sorted_rows(self.views),
            trackers: sorted_rows(self.trackers),
            days: self.days,
        }
    }
}

/// A fold map's orders with a state, sorted by order id.
fn sorted_rows<T>(map: HashMap<String, Option<T>, FnvBuild>) -> Vec<(String, T)> {
    // Sized up front: growing a vector of a few hundred thousand rows copies it over
    // and over (and faults in fresh pages each time).
    let mut rows: Vec<(String, T)> = Vec::with_capacity(map.len());
    rows.extend(
        map.into_iter()
            .filter_map(|(id, state)| state.map(|state| (id, state))),
    );
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// FNV-1a: the maps hash two order ids per event, and SipHash's flooding protection buys
/// nothing for ids read from our own log.
#[derive(Debug, Clone, Copy, Default)]
struct FnvBuild;

struct Fnv(u64);

impl std::hash::BuildHasher for FnvBuild {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `serde_json::to_string` into a buffer sized for a typical view (it would otherwise
/// grow from 128 bytes, reallocating four times per view).
fn to_json(view: &OrderView) -> Result<String, serde_json::Error> {
    let mut buf = Vec::with_capacity(VIEW_JSON_BYTES);
    serde_json::to_writer(&mut buf, view)?;
    // serde_json writes UTF-8 only.
    String::from_utf8(buf).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

const VIEW_JSON_BYTES: usize = 1536;

fn take<T>(map: &mut HashMap<String, Option<T>, FnvBuild>, id: &str) -> Option<T> {
    map.get_mut(id).and_then(Option::take)
}

fn put<T>(map: &mut HashMap<String, Option<T>, FnvBuild>, id: &str, value: Option<T>) {
    match map.get_mut(id) {
        Some(slot) => *slot = value,
        None if value.is_some() => {
            map.insert(id.to_string(), value);
        }
        None => {}
    }
}

/// A [`MemoryFold`]'s final state: each order's view and tracker, sorted by order id, and
/// the days' counters.
#[derive(Debug, Default)]
pub struct FoldRows {
    views: Vec<(String, Box<OrderView>)>,
    trackers: Vec<(String, SalesTracker)>,
    days: BTreeMap<(String, String), DailySales>,
}

impl FoldRows {
    /// Orders with a row in either projection.
    pub fn orders(&self) -> usize {
        self.views.len().max(self.trackers.len())
    }

    /// The per-order rows a save writes (an order's view and its sales tracker are two).
    pub fn rows(&self) -> usize {
        self.views.len() + self.trackers.len()
    }

    /// Joins folds of disjoint sets of orders: their rows, and the sums of their days.
    pub fn merge(parts: Vec<FoldRows>) -> FoldRows {
        let mut out = FoldRows {
            views: Vec::with_capacity(parts.iter().map(|p| p.views.len()).sum()),
            trackers: Vec::with_capacity(parts.iter().map(|p| p.trackers.len()).sum()),
            days: BTreeMap::new(),
        };
        for part in parts {
            out.views.extend(part.views);
            out.trackers.extend(part.trackers);
            for (key, day) in part.days {
                // The day's counters as one delta, through the one summing rule.
                let delta = SalesDelta {
                    date: day.date.clone(),
                    currency: day.currency.clone(),
                    orders_placed: day.orders_placed,
                    amount_placed: day.amount_placed,
                    orders_cancelled: day.orders_cancelled,
                    amount_cancelled: day.amount_cancelled,
                };
                out.days
                    .entry(key)
                    .or_insert_with(|| DailySales::new(&day.date, &day.currency))
                    .add(&delta);
            }
        }
        // Each part is sorted already: the stable sort merges the runs in linear time.
        out.views.sort_by(|a, b| a.0.cmp(&b.0));
        out.trackers.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Views serialized per message from the encoding thread to the inserting one.
const ENCODE_CHUNK: usize = 256;

/// Serializes `views` on a second thread, chunk by chunk, while `insert` writes the
/// previous chunks: the two halves of writing a generation overlap, and only a few
/// chunks of JSON exist at any time.
fn insert_views_streamed(
    views: &[(String, Box<OrderView>)],
    mut insert: impl FnMut(&str, &OrderView, &str) -> Result<(), DbError>,
) -> Result<(), DbError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<String>, DbError>>(4);
        std::thread::Builder::new()
            .name("replay-encode".into())
            .spawn_scoped(scope, move || {
                for chunk in views.chunks(ENCODE_CHUNK) {
                    let encoded = chunk
                        .iter()
                        .map(|(id, view)| to_json(view).map_err(|e| corrupt("order view", id, e)))
                        .collect::<Result<Vec<_>, _>>();
                    let failed = encoded.is_err();
                    // The receiver only goes away after an insert failed: stop encoding.
                    if tx.send(encoded).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| DbError::Task(format!("starting the view encoder: {e}")))?;
        for chunk in views.chunks(ENCODE_CHUNK) {
            let encoded = rx
                .recv()
                .map_err(|_| DbError::Task("the view encoder stopped".into()))??;
            for ((id, view), json) in chunk.iter().zip(&encoded) {
                insert(id, view, json)?;
            }
        }
        Ok(())
    })
}

/// About how many bytes of rows a replay writes between two commits (see [`save_fold`]).
/// 2 MB and 32 MB did no better on the 1M-event benchmark; past 64 MB (the WAL backstop)
/// the writer would checkpoint itself.
pub(crate) const BULK_COMMIT_BYTES: usize = 8 << 20;

/// Counts the rows written (for progress) and their bytes, and calls `commit` every
/// `every` bytes.
struct CommitEvery<'a> {
    bytes: usize,
    every: usize,
    commit: &'a dyn Fn(&Connection) -> Result<(), DbError>,
    rows: &'a AtomicU64,
}

impl CommitEvery<'_> {
    fn wrote(&mut self, conn: &Connection, bytes: usize) -> Result<(), DbError> {
        self.rows.fetch_add(1, Ordering::Relaxed);
        self.bytes += bytes;
        if self.bytes >= self.every {
            self.bytes = 0;
            (self.commit)(conn)?;
        }
        Ok(())
    }
}

/// Writes a bulk fold into empty (or partly written) target generations: one prepared
/// statement per table, rows in key order, upserted (a resumed save rewrites what an
/// interrupted one left). `commit` is called every `commit_every` bytes of rows: committing
/// there lets the WAL be copied into the database file in the background while later rows
/// are written, instead of a few hundred megabytes at once after the last row. The target
/// generations are not active, so nobody reads a half-written one. `rows` counts the
/// rows written, out of [`FoldRows::rows`].
pub(crate) fn save_fold(
    conn: &Connection,
    targets: &Targets,
    fold: &FoldRows,
    commit_every: usize,
    commit: &dyn Fn(&Connection) -> Result<(), DbError>,
    rows: &AtomicU64,
) -> Result<(), DbError> {
    let mut every = CommitEvery {
        bytes: 0,
        every: commit_every,
        commit,
        rows,
    };
    if let Some(g) = targets.orders {
        // Building the customer index once from the full table (a sort) is much cheaper
        // than inserting every row into it in customer order. Readers never see the table
        // without it: the generation only becomes active after the save.
        conn.execute_batch(&format!("DROP INDEX IF EXISTS orders_g{g}_by_customer"))?;
        let started = std::time::Instant::now();
        let mut insert = conn.prepare(&view_upsert(g))?;
        insert_views_streamed(&fold.views, |id, view, json| {
            insert.execute(params![
                id,
                to_i64(view.version, "version").map_err(DbError::Corrupt)?,
                view.customer.id,
                view.placed_at.millis(),
                json
            ])?;
            every.wrote(conn, id.len() + json.len())
        })?;
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "bulk: views inserted"
        );
        conn.execute_batch(&customer_index(g))?;
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "bulk: customer index built"
        );
    }
    if let Some(g) = targets.daily_sales {
        let mut insert = conn.prepare(&tracker_upsert(g))?;
        for (id, tracker) in &fold.trackers {
            let json =
                serde_json::to_string(tracker).map_err(|e| corrupt("sales tracker", id, e))?;
            insert.execute(params![
                id,
                to_i64(tracker.version, "version").map_err(DbError::Corrupt)?,
                json
            ])?;
            every.wrote(conn, id.len() + json.len())?;
        }
        for day in fold.days.values() {
            save_day(conn, g, day)?;
        }
    }
    Ok(())
}

fn corrupt(what: &str, id: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("{what} of order {id}: {e}"))
}

/// The view carries its own last applied version (the `version` column mirrors it for SQL).
fn load_view(conn: &Connection, g: u32, id: &str) -> Result<Option<OrderView>, DbError> {
    let json: Option<String> = conn
        .prepare_cached(&format!("SELECT view FROM orders_g{g} WHERE order_id = ?1"))?
        .query_row([id], |r| r.get(0))
        .optional()?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| corrupt("order view", id, e)))
        .transpose()
}

fn save_view(conn: &Connection, g: u32, id: &str, view: &OrderView) -> Result<(), DbError> {
    let json = serde_json::to_string(view).map_err(|e| corrupt("order view", id, e))?;
    conn.prepare_cached(&view_upsert(g))?.execute(params![
        id,
        to_i64(view.version, "version").map_err(DbError::Corrupt)?,
        view.customer.id,
        view.placed_at.millis(),
        json
    ])?;
    Ok(())
}

/// An order's customer and placing time never change after `OrderPlaced`, so an update
/// leaves them alone: naming them in `SET` would make SQLite delete and re-insert the
/// order's entry in the customer index on every event.
fn view_upsert(g: u32) -> String {
    format!(
        "INSERT INTO orders_g{g} (order_id, version, customer_id, placed_at, view)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (order_id) DO UPDATE SET version = excluded.version, view = excluded.view"
    )
}

fn tracker_upsert(g: u32) -> String {
    format!(
        "INSERT INTO sales_trackers_g{g} (order_id, version, tracker) VALUES (?1, ?2, ?3)
         ON CONFLICT (order_id) DO UPDATE SET version = excluded.version, tracker = excluded.tracker"
    )
}

fn load_tracker(conn: &Connection, g: u32, id: &str) -> Result<Option<SalesTracker>, DbError> {
    let json: Option<String> = conn
        .prepare_cached(&format!(
            "SELECT tracker FROM sales_trackers_g{g} WHERE order_id = ?1"
        ))?
        .query_row([id], |r| r.get(0))
        .optional()?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| corrupt("sales tracker", id, e)))
        .transpose()
}

fn save_tracker(conn: &Connection, g: u32, id: &str, t: &SalesTracker) -> Result<(), DbError> {
    let json = serde_json::to_string(t).map_err(|e| corrupt("sales tracker", id, e))?;
    conn.prepare_cached(&tracker_upsert(g))?.execute(params![
        id,
        to_i64(t.version, "version").map_err(DbError::Corrupt)?,
        json
    ])?;
    Ok(())
}

const DAY_COLUMNS: &str = "date, currency, orders_placed, amount_placed, orders_cancelled, \
                           amount_cancelled, net_amount";

fn day_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DailySales> {
    Ok(DailySales {
        date: r.get(0)?,
        currency: r.get(1)?,
        orders_placed: r.get(2)?,
        amount_placed: r.get(3)?,
        orders_cancelled: r.get(4)?,
        amount_cancelled: r.get(5)?,
        net_amount: r.get(6)?,
    })
}

fn load_day(
    conn: &Connection,
    g: u32,
    date: &str,
    currency: &str,
) -> Result<Option<DailySales>, DbError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DAY_COLUMNS} FROM daily_sales_g{g} WHERE date = ?1 AND currency = ?2"
        ))?
        .query_row([date, currency], day_row)
        .optional()?)
}

fn save_day(conn: &Connection, g: u32, d: &DailySales) -> Result<(), DbError> {
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO daily_sales_g{g} ({DAY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))?
    .execute(params![
        d.date,
        d.currency,
        d.orders_placed,
        d.amount_placed,
        d.orders_cancelled,
        d.amount_cancelled,
        d.net_amount
    ])?;
    Ok(())
}

// ---- reads ----

pub(crate) fn order_view(
    conn: &Connection,
    g: u32,
    id: &str,
) -> Result<Option<OrderView>, DbError> {
    load_view(conn, g, id)
}

/// Most orders one page returns, whatever the caller asks for.
pub const MAX_PAGE: usize = 1000;

pub(crate) fn customer_orders(
    conn: &Connection,
    g: u32,
    customer_id: &str,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<OrderSummary>, DbError> {
    let Some((limit, after)) = page_bounds(limit, cursor)? else {
        return Ok(Page {
            items: vec![],
            next_cursor: None,
        });
    };
    // One row more than asked tells whether another page exists.
    let fetch = (limit + 1) as i64;
    let views: Vec<String> = match &after {
        None => conn
            .prepare_cached(&format!(
                "SELECT view FROM orders_g{g} WHERE customer_id = ?1
                 ORDER BY placed_at DESC, order_id DESC LIMIT ?2"
            ))?
            .query_map(params![customer_id, fetch], |r| r.get(0))?
            .collect::<Result<_, _>>()?,
        Some((placed_at, order_id)) => conn
            .prepare_cached(&format!(
                "SELECT view FROM orders_g{g} WHERE customer_id = ?1
                   AND (placed_at, order_id) < (?2, ?3)
                 ORDER BY placed_at DESC, order_id DESC LIMIT ?4"
            ))?
            .query_map(params![customer_id, placed_at, order_id, fetch], |r| {
                r.get(0)
            })?
            .collect::<Result<_, _>>()?,
    };
    summary_page(views, limit, customer_id)
}

/// Every order, newest first (the console's list; a full-table sort, fine locally).
pub(crate) fn recent_orders(
    conn: &Connection,
    g: u32,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<OrderSummary>, DbError> {
    let Some((limit, after)) = page_bounds(limit, cursor)? else {
        return Ok(Page {
            items: vec![],
            next_cursor: None,
        });
    };
    let fetch = (limit + 1) as i64;
    let (placed_at, order_id) = after.unwrap_or((i64::MAX, String::new()));
    let unbounded = cursor.is_none();
    let views: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT view FROM orders_g{g} WHERE ?1 OR (placed_at, order_id) < (?2, ?3)
             ORDER BY placed_at DESC, order_id DESC LIMIT ?4"
        ))?
        .query_map(params![unbounded, placed_at, order_id, fetch], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    summary_page(views, limit, "every customer")
}

/// A page cursor decoded: the last row's `placed_at` and order id.
type After = (i64, String);

/// The limit (at most [`MAX_PAGE`]) and the decoded cursor; `None` when no row is asked for.
fn page_bounds(
    limit: usize,
    cursor: Option<&str>,
) -> Result<Option<(usize, Option<After>)>, DbError> {
    let after = cursor.map(decode_cursor).transpose()?;
    let limit = limit.min(MAX_PAGE);
    Ok((limit > 0).then_some((limit, after)))
}

/// Up to `limit` summaries from the views fetched (one more than `limit` when another page
/// exists), with the cursor of the last one shown.
fn summary_page(
    views: Vec<String>,
    limit: usize,
    whose: &str,
) -> Result<Page<OrderSummary>, DbError> {
    let more = views.len() > limit;
    let mut items = Vec::with_capacity(limit);
    for json in views.into_iter().take(limit) {
        let view: OrderView = serde_json::from_str(&json)
            .map_err(|e| DbError::Corrupt(format!("an order view of {whose}: {e}")))?;
        items.push(view.summary());
    }
    let next_cursor = match (more, items.last()) {
        (true, Some(last)) => Some(encode_cursor(last.placed_at.millis(), &last.order_id)),
        _ => None,
    };
    Ok(Page { items, next_cursor })
}

pub(crate) fn daily_sales(conn: &Connection, g: u32) -> Result<Vec<DailySales>, DbError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DAY_COLUMNS} FROM daily_sales_g{g} ORDER BY date, currency"
        ))?
        .query_map([], day_row)?
        .collect::<Result<_, _>>()?)
}

// The cursor is the last row's sort key, hex-encoded so clients treat it as opaque and it
// needs no escaping in a query string.
fn encode_cursor(placed_at: i64, order_id: &str) -> String {
    format!("{placed_at}:{order_id}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_cursor(cursor: &str) -> Result<(i64, String), DbError> {
    let invalid = || DbError::ReadModel(ReadModelError::InvalidCursor);
    if !cursor.len().is_multiple_of(2) || cursor.len() > 1024 {
        return Err(invalid());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| {
            cursor
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (at, id) = text.split_once(':').ok_or_else(invalid)?;
    let at = at.parse::<i64>().map_err(|_| invalid())?;
    if id.is_empty() {
        return Err(invalid());
    }
    Ok((at, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_domain::envelope::EventMeta;
    use orders_domain::money::{Currency, Money};
    use orders_domain::time::Timestamp;
    use std::cell::Cell;

    /// `orders` placed orders (the i-th at `price + i` cents) folded in memory into
    /// generation 1 of both projections, and their views.
    fn folded(orders: usize, price: i64) -> (Targets, FoldRows, Vec<(String, OrderView)>) {
        let targets = Targets {
            orders: Some(1),
            daily_sales: Some(1),
        };
        let eur = Currency::parse("EUR").expect("EUR");
        let mut fold = MemoryFold::default();
        let mut views = vec![];
        for i in 0..orders {
            let id = format!("order-{i:03}");
            let event =
                orders_domain::sample::placed(&id, "c-1", Money::new(price + i as i64, eur));
            let meta = EventMeta {
                occurred_at: Timestamp(1_795_706_525_000 + i as i64),
                correlation_id: id.clone(),
                causation_id: id.clone(),
            };
            let envelope =
                EventEnvelope::wrap(&id, 0, std::slice::from_ref(&event), &meta, || id.clone())
                    .remove(0);
            fold.apply(&targets, &envelope, &event).expect("fold");
            views.push((id, apply_order_view(None, &envelope, &event).expect("view")));
        }
        (targets, fold.finish(), views)
    }

    #[test]
    fn a_bulk_save_commits_as_it_goes_and_a_second_save_rewrites_the_first() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = Connection::open(dir.path().join("rm.db")).expect("open");
        create_tables(&conn, ProjectionName::Orders, 1).expect("orders");
        create_tables(&conn, ProjectionName::DailySales, 1).expect("sales");
        // What an interrupted save left: fewer orders, other totals.
        let (targets, stale, _) = folded(6, 50);
        let (_, rows, views) = folded(10, 100);
        let commits = Cell::new(0);
        let commit = |c: &Connection| -> Result<(), DbError> {
            commits.set(commits.get() + 1);
            // What was written so far is committed: another connection sees it.
            c.execute_batch("COMMIT; BEGIN IMMEDIATE")?;
            Ok(())
        };
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        // Every row is past a 1-byte threshold: a commit after each view and tracker.
        let written = AtomicU64::new(0);
        save_fold(&conn, &targets, &stale, 1, &commit, &written).expect("save");
        assert_eq!(commits.get(), 12);
        assert_eq!(written.load(Ordering::Relaxed), stale.rows() as u64);
        assert_eq!(stale.rows(), 12);
        let other = Connection::open(dir.path().join("rm.db")).expect("open");
        let committed: i64 = other
            .query_row("SELECT count(*) FROM sales_trackers_g1", [], |r| r.get(0))
            .expect("count");
        assert_eq!(committed, 6, "the trackers were committed along the way");
        conn.execute_batch("COMMIT").expect("commit");

        // The resumed save rewrites every row (and no commit below the threshold).
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        save_fold(
            &conn,
            &targets,
            &rows,
            usize::MAX,
            &commit,
            &AtomicU64::new(0),
        )
        .expect("save again");
        conn.execute_batch("COMMIT").expect("commit");
        assert_eq!(commits.get(), 12, "no commit below the threshold");
        for (id, view) in &views {
            assert_eq!(order_view(&conn, 1, id).expect("read").as_ref(), Some(view));
        }
        let days = daily_sales(&conn, 1).expect("days");
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].orders_placed, 10);
        assert_eq!(days[0].amount_placed, (100..110).sum::<i64>());
        let page = customer_orders(&conn, 1, "c-1", 100, None).expect("page");
        assert_eq!(page.items.len(), 10, "the customer index covers every row");
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode_cursor(1_795_706_525_123, "01JORDER:x");
        assert_eq!(
            decode_cursor(&c).unwrap(),
            (1_795_706_525_123, "01JORDER:x".to_string())
        );
        for bad in ["", "zz", "abc", "3132", "3a", &"00".repeat(600)] {
            assert!(
                matches!(
                    decode_cursor(bad),
                    Err(DbError::ReadModel(ReadModelError::InvalidCursor))
                ),
                "{bad}"
            );
        }
    }
}
