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
use std::collections::BTreeMap;

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

/// The same fold as [`apply`] for a replay's bulk phase, over a run of whole orders read
/// in order-id order (each order's events in version order): an order's state lives only
/// while its events are folded, then becomes its encoded rows. Memory stays the size of a
/// batch whatever the log's size, and no map, sort or merge is needed. The guard and the
/// folds are the domain's, as in `apply`.
#[derive(Debug)]
pub struct OrderFold {
    targets: Targets,
    current: Option<Current>,
    out: FoldedBatch,
}

/// The order being folded.
#[derive(Debug)]
struct Current {
    id: String,
    view: Option<OrderView>,
    tracker: Option<SalesTracker>,
}

/// One order's final rows, encoded by a fold worker.
#[derive(Debug)]
struct OrderRows {
    id: String,
    view: Option<ViewRow>,
    tracker: Option<TrackerRow>,
}

#[derive(Debug)]
struct ViewRow {
    version: i64,
    customer_id: String,
    placed_at: i64,
    json: String,
}

#[derive(Debug)]
struct TrackerRow {
    version: i64,
    json: String,
}

/// A run of whole orders folded by [`OrderFold`]: their rows in order-id order and the
/// sums of their days, ready for [`BulkSave::write`].
#[derive(Debug, Default)]
pub struct FoldedBatch {
    orders: Vec<OrderRows>,
    days: BTreeMap<(String, String), DailySales>,
}

impl FoldedBatch {
    /// Orders with a row in either projection.
    pub fn orders(&self) -> usize {
        self.orders.len()
    }
}

impl OrderFold {
    pub fn new(targets: Targets) -> Self {
        OrderFold {
            targets,
            current: None,
            out: FoldedBatch::default(),
        }
    }

    /// Folds the next event: of the order being folded, or of the next one (which closes
    /// the current one). An order seen before, or an id out of order, is refused: its
    /// rows would overwrite the earlier ones.
    pub fn apply(
        &mut self,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> Result<ApplyOutcome, ReadModelError> {
        let id = &envelope.aggregate_id;
        let same = self.current.as_ref().is_some_and(|c| c.id == *id);
        if !same {
            if let Some(c) = &self.current
                && c.id.as_str() >= id.as_str()
            {
                return Err(ReadModelError::Corrupt(format!(
                    "order {id} comes after order {} in a bulk fold: the log is not read in \
                     order-id order",
                    c.id
                )));
            }
            self.close()?;
            self.current = Some(Current {
                id: id.clone(),
                view: None,
                tracker: None,
            });
        }
        let Some(current) = self.current.as_mut() else {
            return Err(ReadModelError::Corrupt("no order to fold into".into()));
        };
        let view = self.targets.orders.map(|_| current.view.take());
        let tracker = self.targets.daily_sales.map(|_| current.tracker.take());
        let Folded { orders, sales } = fold(view, tracker, envelope, event)?;
        let mut applied = false;
        match orders {
            Some(Step::Applied(v)) => {
                applied = true;
                current.view = Some(v);
            }
            Some(Step::Unchanged(v)) => current.view = v,
            None => {}
        }
        match sales {
            Some(Step::Applied((t, delta))) => {
                applied = true;
                if let Some(d) = delta {
                    add_day(&mut self.out.days, &d);
                }
                current.tracker = Some(t);
            }
            Some(Step::Unchanged(t)) => current.tracker = t,
            None => {}
        }
        Ok(if applied {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::Duplicate
        })
    }

    /// Encodes the order being folded into its rows (here, on the fold worker: encoding
    /// runs on every core, not on the one writing).
    fn close(&mut self) -> Result<(), ReadModelError> {
        let Some(Current { id, view, tracker }) = self.current.take() else {
            return Ok(());
        };
        let encode_err = |what: &str, e: &dyn std::fmt::Display| {
            ReadModelError::Corrupt(format!("{what} of order {id}: {e}"))
        };
        let view = match view {
            Some(v) => Some(ViewRow {
                version: to_i64(v.version, "version").map_err(ReadModelError::Corrupt)?,
                placed_at: v.placed_at.millis(),
                json: to_json(&v).map_err(|e| encode_err("order view", &e))?,
                customer_id: v.customer.id,
            }),
            None => None,
        };
        let tracker = match tracker {
            Some(t) => Some(TrackerRow {
                version: to_i64(t.version, "version").map_err(ReadModelError::Corrupt)?,
                json: serde_json::to_string(&t).map_err(|e| encode_err("sales tracker", &e))?,
            }),
            None => None,
        };
        if view.is_some() || tracker.is_some() {
            self.out.orders.push(OrderRows { id, view, tracker });
        }
        Ok(())
    }

    /// The batch's rows, the last order's included.
    pub fn finish(mut self) -> Result<FoldedBatch, ReadModelError> {
        self.close()?;
        Ok(self.out)
    }
}

/// Adds an event's sales delta to its day, through the one summing rule.
fn add_day(days: &mut BTreeMap<(String, String), DailySales>, d: &SalesDelta) {
    days.entry((d.date.clone(), d.currency.clone()))
        .or_insert_with(|| DailySales::new(&d.date, &d.currency))
        .add(d);
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

/// About how many bytes of rows a replay writes between two commits (see [`BulkSave`]).
/// 2 MB and 32 MB did no better on the 1M-event benchmark; past 64 MB (the WAL backstop)
/// the writer would checkpoint itself.
pub(crate) const BULK_COMMIT_BYTES: usize = 8 << 20;

/// Writes a replay's folded batches into empty (or partly written) target generations,
/// batch after batch as the fold workers finish them: rows in key order (so the inserts
/// append to the B-trees), upserted (a resumed replay rewrites what an interrupted one
/// left). `commit` is called every `commit_every` bytes of rows: the background
/// checkpoint copies the WAL into the database file while later rows are written,
/// instead of a few hundred megabytes at once after the last row. The target generations
/// are not active, so nobody reads a half-written one.
pub(crate) struct BulkSave<'c> {
    conn: &'c Connection,
    targets: Targets,
    days: BTreeMap<(String, String), DailySales>,
    bytes: usize,
    commit_every: usize,
    commit: &'c dyn Fn(&Connection) -> Result<(), DbError>,
}

impl<'c> BulkSave<'c> {
    pub(crate) fn start(
        conn: &'c Connection,
        targets: Targets,
        commit_every: usize,
        commit: &'c dyn Fn(&Connection) -> Result<(), DbError>,
    ) -> Result<Self, DbError> {
        if let Some(g) = targets.orders {
            // Building the customer index once from the full table (a sort, in
            // `finish`) is much cheaper than inserting every row into it out of order.
            // Readers never see the table without it: the generation only becomes active
            // after the save.
            conn.execute_batch(&format!("DROP INDEX IF EXISTS orders_g{g}_by_customer"))?;
        }
        Ok(BulkSave {
            conn,
            targets,
            days: BTreeMap::new(),
            bytes: 0,
            commit_every,
            commit,
        })
    }

    /// Writes one batch's rows (the batches come in order-id order); its days are summed
    /// until [`BulkSave::finish`].
    pub(crate) fn write(&mut self, batch: FoldedBatch) -> Result<(), DbError> {
        let conn = self.conn;
        let mut views = match self.targets.orders {
            Some(g) => Some(conn.prepare_cached(&view_upsert(g))?),
            None => None,
        };
        let mut trackers = match self.targets.daily_sales {
            Some(g) => Some(conn.prepare_cached(&tracker_upsert(g))?),
            None => None,
        };
        for rows in &batch.orders {
            if let (Some(stmt), Some(v)) = (views.as_mut(), &rows.view) {
                stmt.execute(params![
                    rows.id,
                    v.version,
                    v.customer_id,
                    v.placed_at,
                    v.json
                ])?;
                self.bytes += rows.id.len() + v.json.len();
            }
            if let (Some(stmt), Some(t)) = (trackers.as_mut(), &rows.tracker) {
                stmt.execute(params![rows.id, t.version, t.json])?;
                self.bytes += rows.id.len() + t.json.len();
            }
            if self.bytes >= self.commit_every {
                self.bytes = 0;
                (self.commit)(conn)?;
            }
        }
        for day in batch.days.values() {
            // The day's counters as one delta, through the one summing rule.
            add_day(
                &mut self.days,
                &SalesDelta {
                    date: day.date.clone(),
                    currency: day.currency.clone(),
                    orders_placed: day.orders_placed,
                    amount_placed: day.amount_placed,
                    orders_cancelled: day.orders_cancelled,
                    amount_cancelled: day.amount_cancelled,
                },
            );
        }
        Ok(())
    }

    /// Writes the days and builds the customer index: the generations are complete.
    pub(crate) fn finish(self) -> Result<(), DbError> {
        if let Some(g) = self.targets.daily_sales {
            for day in self.days.values() {
                save_day(self.conn, g, day)?;
            }
        }
        if let Some(g) = self.targets.orders {
            let started = std::time::Instant::now();
            self.conn.execute_batch(&customer_index(g))?;
            tracing::debug!(
                seconds = started.elapsed().as_secs_f64(),
                "bulk: customer index built"
            );
        }
        Ok(())
    }
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

pub(crate) fn save_day(conn: &Connection, g: u32, d: &DailySales) -> Result<(), DbError> {
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

    fn both() -> Targets {
        Targets {
            orders: Some(1),
            daily_sales: Some(1),
        }
    }

    /// The `OrderPlaced` of order `id` (customer c-1) at `amount` cents, as version 1.
    fn placed(id: &str, amount: i64, at: i64) -> (EventEnvelope, OrderEvent) {
        let eur = Currency::parse("EUR").expect("EUR");
        let event = orders_domain::sample::placed(id, "c-1", Money::new(amount, eur));
        let meta = EventMeta {
            occurred_at: Timestamp(at),
            correlation_id: id.to_string(),
            causation_id: id.to_string(),
        };
        let envelope = EventEnvelope::wrap(id, 0, std::slice::from_ref(&event), &meta, || {
            id.to_string()
        })
        .remove(0);
        (envelope, event)
    }

    /// `orders` placed orders (the i-th at `price + i` cents) folded into generation 1 of
    /// both projections, in batches of `per_batch` orders, and their views.
    fn folded(
        orders: usize,
        price: i64,
        per_batch: usize,
    ) -> (Vec<FoldedBatch>, Vec<(String, OrderView)>) {
        let mut batches = vec![];
        let mut views = vec![];
        let mut fold = OrderFold::new(both());
        for i in 0..orders {
            let id = format!("order-{i:03}");
            let (envelope, event) = placed(&id, price + i as i64, 1_795_706_525_000 + i as i64);
            fold.apply(&envelope, &event).expect("fold");
            views.push((id, apply_order_view(None, &envelope, &event).expect("view")));
            if (i + 1) % per_batch == 0 {
                let full = std::mem::replace(&mut fold, OrderFold::new(both()));
                batches.push(full.finish().expect("finish"));
            }
        }
        batches.push(fold.finish().expect("finish"));
        (batches, views)
    }

    #[test]
    fn a_bulk_save_commits_as_it_goes_and_a_second_save_rewrites_the_first() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = Connection::open(dir.path().join("rm.db")).expect("open");
        create_tables(&conn, ProjectionName::Orders, 1).expect("orders");
        create_tables(&conn, ProjectionName::DailySales, 1).expect("sales");
        // What an interrupted save left: fewer orders, other totals.
        let (stale, _) = folded(6, 50, 4);
        let (batches, views) = folded(10, 100, 3);
        assert_eq!(batches.iter().map(FoldedBatch::orders).sum::<usize>(), 10);
        let commits = Cell::new(0);
        let commit = |c: &Connection| -> Result<(), DbError> {
            commits.set(commits.get() + 1);
            // What was written so far is committed: another connection sees it.
            c.execute_batch("COMMIT; BEGIN IMMEDIATE")?;
            Ok(())
        };
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        // Every order is past a 1-byte threshold: a commit after each. Interrupted: no
        // `finish`.
        let mut save = BulkSave::start(&conn, both(), 1, &commit).expect("start");
        for batch in stale {
            save.write(batch).expect("write");
        }
        assert_eq!(commits.get(), 6);
        let other = Connection::open(dir.path().join("rm.db")).expect("open");
        let committed: i64 = other
            .query_row("SELECT count(*) FROM sales_trackers_g1", [], |r| r.get(0))
            .expect("count");
        assert_eq!(committed, 6, "the trackers were committed along the way");
        conn.execute_batch("COMMIT").expect("commit");

        // The resumed save rewrites every row (and no commit below the threshold).
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        let mut save = BulkSave::start(&conn, both(), usize::MAX, &commit).expect("start");
        for batch in batches {
            save.write(batch).expect("write again");
        }
        save.finish().expect("finish");
        conn.execute_batch("COMMIT").expect("commit");
        assert_eq!(commits.get(), 6, "no commit below the threshold");
        for (id, view) in &views {
            assert_eq!(order_view(&conn, 1, id).expect("read").as_ref(), Some(view));
        }
        let days = daily_sales(&conn, 1).expect("days");
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].orders_placed, 10, "the batches' days add up");
        assert_eq!(days[0].amount_placed, (100..110).sum::<i64>());
        let page = customer_orders(&conn, 1, "c-1", 100, None).expect("page");
        assert_eq!(page.items.len(), 10, "the customer index covers every row");
    }

    #[test]
    fn an_order_fold_folds_each_order_whole_and_refuses_one_out_of_order() {
        let mut fold = OrderFold::new(both());
        let (placed_a, event_a) = placed("order-a", 500, 1_795_706_525_000);
        assert_eq!(
            fold.apply(&placed_a, &event_a).expect("a"),
            ApplyOutcome::Applied
        );
        // A redelivered event is a duplicate, as on the live path.
        assert_eq!(
            fold.apply(&placed_a, &event_a).expect("a again"),
            ApplyOutcome::Duplicate
        );
        let (placed_b, event_b) = placed("order-b", 700, 1_795_706_526_000);
        fold.apply(&placed_b, &event_b).expect("b");
        // Order a again, after b: its rows would overwrite the first ones.
        let err = fold.apply(&placed_a, &event_a).expect_err("a after b");
        assert!(err.to_string().contains("order-id order"), "{err}");
        let batch = fold.finish().expect("finish");
        let ids: Vec<&str> = batch.orders.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["order-a", "order-b"]);
        let day = batch.days.values().next().expect("a day");
        assert_eq!((day.orders_placed, day.amount_placed), (2, 1200));
        // A gap is refused as on the live path.
        let mut fold = OrderFold::new(both());
        let (mut v2, event) = placed("order-c", 1, 1_795_706_527_000);
        v2.version = 2;
        assert!(matches!(
            fold.apply(&v2, &event),
            Err(ReadModelError::Gap { expected: 1, .. })
        ));
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
