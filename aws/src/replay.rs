//! Rebuilding the read models on DynamoDB from the event table (`orders replay --aws`).
//!
//! ```text
//! events table ──parallel Scan (N segments, ConsistentRead, paginated)──▶ decode (the codec)
//!     ──▶ fold per order as events arrive, in version order (OrderState::fold: the live
//!         path's fold) ──▶ an order's final items once its segment moves on
//!     ──BatchWriteItem (25/call, token bucket, backoff + jitter, while the scan goes on)──▶
//!     target table; then the late events' orders again, then the day counters
//! ```
//!
//! The call the CLI makes:
//! ```no_run
//! # async fn run(client: aws_sdk_dynamodb::Client) -> Result<(), orders_aws::replay::ReplayError> {
//! use orders_aws::replay::{AwsReplayOptions, replay_to_table};
//! let opts = AwsReplayOptions { segments: 8, rate_limit: Some(500), ..Default::default() };
//! let summary = replay_to_table(&client, "orders-events", "orders-views", &opts, |p| {
//!     eprintln!("{} events read, {} orders written", p.events_read, p.orders_written);
//! })
//! .await?;
//! println!("{summary}"); // names the new table and how to switch readers to it
//! # Ok(()) }
//! ```
//!
//! **What it touches.** DynamoDB reads of the events table (`Scan`, `DescribeTable`) and
//! writes to the target table (`CreateTable`, `DescribeTable`, `DeleteTable` of a table it
//! created when the scan or the fold fails, `Scan` of one item to see that an existing
//! target is empty, `Query` of an order it wrote before all its events came,
//! `BatchWriteItem`). It never starts a workflow, publishes,
//! enqueues or emails: the crate's Step Functions client is not even in reach.
//!
//! **The target (blue/green).** By default a fresh table named after the live one with the
//! next free generation suffix (`orders-views` → `orders-views-g1`, `orders-views-g3` →
//! `orders-views-g4`), created with [`schema::create_read_models_table`]; or the
//! caller's [`AwsReplayOptions::target_table`] (created when missing). An existing target
//! must be empty unless [`AwsReplayOptions::reuse_target`] is set: every item the replay
//! writes is a whole `PutItem` of its final value and the log only grows, so re-running
//! into a partly written target of the same replay (after Ctrl-C or a crash) is exact —
//! that is how `--resume` works on AWS. The live table is never written.
//!
//! **Switching readers** is a deployment parameter, not something this function does:
//! the stack's `ActiveReadModelsTable` points `READ_MODELS_TABLE` of the api and projector
//! functions at the new table (`orders replay --aws --stack` updates it). Events appended while the replay ran may or may not have been read (a Scan is
//! not a snapshot); every order in the new table is consistent with itself (its view,
//! tracker and its share of the counters reflect the same versions), so the live
//! projector's version-guarded `apply` can bring it up to date without double counting:
//! run [`catch_up`] before the switch, switch, and run it once more after the switch to
//! cover the events the live projector wrote to the old table in between.
//!
//! **Exactness.** The fold is [`OrderState::fold`](crate::read_models), the one the live
//! `DynamoReadModels::apply` uses (the domain's `applicability`, `apply_order_view`,
//! `apply_daily_sales`), and the items are built by the same functions. Daily-sales
//! counters are summed in memory and written once with their final values (not `ADD`ed per
//! event), next to each order's tracker and view, so a rebuild is exact and idempotent.
//!
//! **Undecodable events** (an item the codec refuses, or an unknown event type / schema
//! version) stop the replay with their key and reason (a target table this call created is
//! deleted again; a target it was given keeps the orders written so far, each whole, for a
//! re-run with [`AwsReplayOptions::reuse_target`]); with
//! [`AwsReplayOptions::skip_undecodable`] they are *parked* instead — returned in
//! [`ReplaySummary::parked`] with key and reason — and the rest is rebuilt. An order's
//! events after a parked one cannot be folded (the version guard sees a gap, as the live
//! projector would): its read model stops at the version before, and those later events are
//! parked too, each with the reason.
//!
//! **Memory, and writing while scanning.** Events are folded as the scan delivers them
//! (`replay/fold.rs`), and an order is written as soon as its segment of the Scan moves on
//! to another order: a Scan returns an order's events together and in version order in
//! practice (an item collection is stored sorted by its sort key, and a segment covers
//! whole collections). So the scan and the writes overlap, and the replay holds the orders
//! in flight, the day counters, and each written order's id and version (what a catch-up
//! needs), not the log nor every order's state; at most 1,024 orders wait for the writer.
//! DynamoDB does not promise that order, so nothing relies on it: an event that arrives
//! before one it follows waits for it, and an event of an order already written is kept
//! aside and folded, once the scan and its writes are done, on what the target holds of
//! that order (then the order is written again); the day counters are written last. Peak
//! resident memory of `aws/examples/replay_bench` (DynamoDB Local, 4 segments, 5 events per
//! order): holding every event until the scan ended, 305 MB for 100,000 events; one state
//! per order, 89 MB for 100,000 and 257 MB for 500,000 events; writing while scanning, 103
//! to 107 MB and 128 MB. What remains is the pages and batches in flight, plus about 280
//! bytes per order. For logs far larger still, an ordered replay through a GSI (partition
//! key hash(order id) mod K, sort key `aggregate_id#version`) would need no per-order
//! memory at all; it is not built.
//!
//! **Catch-up** finds the newest version of each order with events since the replay
//! started, through the events table's `by_time` index (`replay/by_time.rs` over
//! [`crate::event_log`]: a Query per hour and shard, keys only), or without the index by a
//! Scan that reads only the two keys of each event; then, for each order the target does
//! not hold up to that version, it Queries the events after the one it holds and decodes
//! those.
//!
//! **Costs.** The Scan reads the whole table once with strongly consistent reads (1 RCU per
//! 4 KB); each item written costs 1 WCU per KB, and a BatchWriteItem call carries up to 25.
//! [`AwsReplayOptions::rate_limit`] caps the writes per second (a token bucket), so a
//! provisioned target is not throttled; throttling and `UnprocessedItems` are retried with
//! exponential backoff and jitter either way.

use crate::codec::{self, Item, KEY_AGGREGATE, KEY_VERSION};
use crate::dynamo::{describe, get_n, get_s};
use crate::read_models::{self, DynamoReadModels, OrderState};
use crate::retry::{ATTEMPTS, backoff, read_with_retries, retryable};
use crate::schema::{self, SchemaError};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use orders_domain::Timestamp;
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::ports::{ReadModelError, ReadModels};
use orders_domain::projection::ProjectionName;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

mod by_time;
mod fold;
pub mod verify;
use by_time::ByTime;
pub use by_time::CLOCK_SKEW_MS;
use fold::{Done, FoldOptions, Rebuild};

/// DynamoDB's limit on the requests of one `BatchWriteItem`.
pub const MAX_BATCH_WRITE: usize = 25;
/// DynamoDB's limit on `TotalSegments` of a parallel Scan.
pub const MAX_SEGMENTS: u32 = 1_000_000;

/// How to rebuild. `Default`: 4 segments, no rate limit, stop on an undecodable event,
/// every projection, a fresh `-g<N>` table, 8 writes in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsReplayOptions {
    /// Parallel Scan segments (`TotalSegments`), 1..=1,000,000.
    pub segments: u32,
    /// Items written per second at most (each is ≥ 1 WCU); `None`: as fast as DynamoDB takes.
    pub rate_limit: Option<u32>,
    /// Park undecodable events (returned with key and reason) instead of stopping.
    pub skip_undecodable: bool,
    /// The projections to rebuild (at least one).
    pub projections: Vec<ProjectionName>,
    /// The table to write; `None`: `<source>-g<N>` with the next free `N`.
    pub target_table: Option<String>,
    /// Accept an existing, non-empty target (resuming an interrupted replay into it).
    pub reuse_target: bool,
    /// `BatchWriteItem` calls in flight at once (≥ 1).
    pub write_concurrency: usize,
    /// How long a catch-up through the `by_time` index waits before reading it: a GSI is
    /// eventually consistent (its entries usually follow the table's within a second).
    pub index_settle: Duration,
}

impl Default for AwsReplayOptions {
    fn default() -> Self {
        AwsReplayOptions {
            segments: 4,
            rate_limit: None,
            skip_undecodable: false,
            projections: ProjectionName::ALL.to_vec(),
            target_table: None,
            reuse_target: false,
            write_concurrency: 8,
            index_settle: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayPhase {
    /// Reading the event table; `orders_total` is not known yet.
    Scanning,
    /// Writing the target table.
    Writing,
}

/// Reported after every scan page and every written batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayProgress {
    pub phase: ReplayPhase,
    pub events_read: u64,
    /// The events table's `ItemCount` (DynamoDB refreshes it about every six hours): an
    /// estimate for an ETA while scanning.
    pub events_estimate: Option<u64>,
    pub orders_written: u64,
    /// Orders to write, known once the scan is done.
    pub orders_total: Option<u64>,
    pub items_written: u64,
}

/// An event's key in the events table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    pub aggregate_id: String,
    pub version: u64,
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{KEY_AGGREGATE}={} {KEY_VERSION}={}",
            self.aggregate_id, self.version
        )
    }
}

/// An event the replay did not fold, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    pub key: EventKey,
    /// The stored `event_type`, when the item has one.
    pub event_type: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("invalid replay options: {0}")]
    InvalidOptions(String),
    #[error("undecodable event at {key}: {reason}")]
    Undecodable { key: EventKey, reason: String },
    #[error("event at {key} does not fold: {reason}")]
    Fold { key: EventKey, reason: String },
    #[error("scan of {table} (segment {segment}) failed: {reason}")]
    Scan {
        table: String,
        segment: u32,
        reason: String,
    },
    #[error("reading order {order_id} from {table} failed: {reason}")]
    Read {
        table: String,
        order_id: String,
        reason: String,
    },
    #[error("reading the day counters of {table} failed: {reason}")]
    Days { table: String, reason: String },
    #[error("writing {table} failed: {reason}")]
    Write { table: String, reason: String },
    #[error("target table {0} already holds items (reuse it only to resume a replay into it)")]
    TargetNotEmpty(String),
    #[error("target table {0} is a live table; a replay only writes a fresh one")]
    TargetIsLive(String),
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Per order, the version up to which a rebuilt table holds it (what [`replay_to_table`]
/// wrote, then what [`catch_up`] applied): lets a catch-up skip the orders that did not
/// change instead of reading each one back.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AppliedVersions(HashMap<String, u64>);

impl AppliedVersions {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, order_id: &str) -> Option<u64> {
        self.0.get(order_id).copied()
    }
}

impl fmt::Debug for AppliedVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppliedVersions({} orders)", self.0.len())
    }
}

/// The version an order's state holds for the selected projections (the lower of the two
/// when both are rebuilt: events above it are still to apply to one of them).
fn held(state: &OrderState, orders: bool, daily_sales: bool) -> u64 {
    match (orders, daily_sales) {
        (true, true) => state.view_version.min(state.tracker_version),
        (true, false) => state.view_version,
        _ => state.tracker_version,
    }
}

/// What a replay did. Its `Display` is the closing summary; [`ReplaySummary::switch_hint`]
/// says how to switch readers when the caller does not.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaySummary {
    pub events_table: String,
    /// The table readers use now (untouched).
    pub source_table: String,
    /// The table rebuilt.
    pub target_table: String,
    pub created_target: bool,
    pub projections: Vec<ProjectionName>,
    pub segments: u32,
    pub events_read: u64,
    pub events_folded: u64,
    pub orders_rebuilt: u64,
    pub daily_sales_rows: u64,
    pub items_written: u64,
    pub parked: Vec<ParkedEvent>,
    pub elapsed: Duration,
    /// When the replay started (the wall clock): hand it to [`catch_up`] as `since`, so
    /// the catch-up reads only the events appended from then on.
    pub started_at: Timestamp,
    /// What the target holds of each order it was written: hand it to [`catch_up`].
    pub applied: AppliedVersions,
}

impl ReplaySummary {
    pub fn events_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events_read as f64 / secs
        } else {
            0.0
        }
    }

    /// The switch is the stack's `ActiveReadModelsTable` parameter: this says how to set
    /// it by hand.
    pub fn switch_hint(&self) -> String {
        format!(
            "readers still use {}; `orders replay --aws --stack NAME` switches them itself, or \
             deploy the stack with --parameter-overrides ActiveReadModelsTable={} and then run \
             `{}` for what the old table got meanwhile",
            self.source_table,
            self.target_table,
            self.catch_up_command(None)
        )
    }

    /// The command that catches the rebuilt table up after a switch by hand: the same
    /// projections, from the replay's start.
    pub fn catch_up_command(&self, stack: Option<&str>) -> String {
        let projections: Vec<String> = self
            .projections
            .iter()
            .map(|p| format!("--projection {}", p.as_str()))
            .collect();
        format!(
            "orders replay --aws{} {} --catch-up {} --since {}",
            stack.map(|s| format!(" --stack {s}")).unwrap_or_default(),
            projections.join(" "),
            self.target_table,
            self.started_at
        )
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.projections.iter().map(|p| p.as_str()).collect();
        writeln!(
            f,
            "replayed {} events of {} ({} orders, {} daily-sales rows, projections {}) into {}{} \
             in {:.1}s ({:.0} events/s, {} segments, {} items written)",
            self.events_read,
            self.events_table,
            self.orders_rebuilt,
            self.daily_sales_rows,
            names.join(","),
            self.target_table,
            if self.created_target { " (new)" } else { "" },
            self.elapsed.as_secs_f64(),
            self.events_per_sec(),
            self.segments,
            self.items_written,
        )?;
        for p in &self.parked {
            writeln!(f, "parked {}: {}", p.key, p.reason)?;
        }
        Ok(())
    }
}

/// Rebuilds the selected read models of `source_read_models_table` from `events_table`
/// into a fresh table (see the module docs for the target, the switch and the limits).
/// `progress` is called from this task after every scan page and every written batch.
///
/// Dropping the future (Ctrl-C) aborts its scan and write tasks; a re-run with
/// [`AwsReplayOptions::reuse_target`] and the same `target_table` finishes the job exactly.
pub async fn replay_to_table(
    client: &Client,
    events_table: &str,
    source_read_models_table: &str,
    opts: &AwsReplayOptions,
    progress: impl Fn(ReplayProgress) + Send + Sync,
) -> Result<ReplaySummary, ReplayError> {
    validate(opts)?;
    let span = tracing::info_span!(
        "dynamodb.replay",
        events_table = %events_table,
        source = %source_read_models_table,
        segments = opts.segments,
    );
    replay_inner(
        client,
        events_table,
        source_read_models_table,
        opts,
        &progress,
    )
    .instrument(span)
    .await
}

fn validate(opts: &AwsReplayOptions) -> Result<(), ReplayError> {
    let bad = |m: &str| Err(ReplayError::InvalidOptions(m.to_string()));
    if opts.segments == 0 || opts.segments > MAX_SEGMENTS {
        return bad("segments must be between 1 and 1000000");
    }
    if opts.rate_limit == Some(0) {
        return bad("the rate limit must be at least 1 write/s");
    }
    if opts.projections.is_empty() {
        return bad("select at least one projection");
    }
    if opts.write_concurrency == 0 {
        return bad("write concurrency must be at least 1");
    }
    if opts
        .target_table
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return bad("the target table name is empty");
    }
    Ok(())
}

async fn replay_inner(
    client: &Client,
    events_table: &str,
    source_table: &str,
    opts: &AwsReplayOptions,
    progress: &(impl Fn(ReplayProgress) + Send + Sync),
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let started_at = crate::event_log::now();
    let orders = opts.projections.contains(&ProjectionName::Orders);
    let daily_sales = opts.projections.contains(&ProjectionName::DailySales);

    // The target first: a bad name or a non-empty table fails before the (long) scan.
    let (target, created_target) = resolve_target(client, events_table, source_table, opts).await?;
    tracing::info!(target = %target, created = created_target, "replay target ready");

    // Orders are written while the scan goes on, as the fold hands them over; the writer's
    // counts feed the progress reports of both.
    let mut rebuild = Rebuild::new(
        FoldOptions {
            orders,
            daily_sales,
            skip_undecodable: opts.skip_undecodable,
        },
        opts.segments as usize,
    );
    let counts = WriteCounts::default();
    let scan_progress = |p: ReplayProgress| {
        counts.events_read.store(p.events_read, Ordering::Relaxed);
        progress(ReplayProgress {
            orders_written: counts.orders.load(Ordering::Relaxed),
            items_written: counts.items.load(Ordering::Relaxed),
            ..p
        })
    };
    let on_batch = |orders_written: u64, items_written: u64| {
        let orders_written =
            counts.orders.fetch_add(orders_written, Ordering::Relaxed) + orders_written;
        let items_written =
            counts.items.fetch_add(items_written, Ordering::Relaxed) + items_written;
        // While the scan runs, its own reports carry these counts.
        let total = counts.total.load(Ordering::Relaxed);
        if total != u64::MAX {
            progress(ReplayProgress {
                phase: ReplayPhase::Writing,
                events_read: counts.events_read.load(Ordering::Relaxed),
                events_estimate: Some(counts.estimate.load(Ordering::Relaxed))
                    .filter(|e| *e != u64::MAX),
                orders_written,
                orders_total: Some(total),
                items_written,
            })
        }
    };
    let (tx, rx) = mpsc::channel::<Unit>(UNITS_IN_FLIGHT);
    let scanning = async {
        let tx = tx; // dropped when the scan ends, which ends the writer
        let scan = scan_events(
            client,
            events_table,
            opts,
            &WHOLE_EVENTS,
            &scan_progress,
            async |segment, events| {
                let mut done = Vec::new();
                for decoded in events {
                    let (envelope, event) = *decoded;
                    rebuild.add(segment as usize, envelope, event, &mut done)?;
                }
                counts
                    .handed
                    .fetch_add(done.len() as u64, Ordering::Relaxed);
                send_units(&tx, &target, done).await
            },
        )
        .await?;
        let rest = rebuild.finish_scan()?;
        if let Some(e) = scan.estimate {
            counts.estimate.store(e, Ordering::Relaxed);
        }
        counts.total.store(
            counts.handed.load(Ordering::Relaxed) + rest.len() as u64,
            Ordering::Relaxed,
        );
        send_units(&tx, &target, rest).await?;
        Ok::<_, ReplayError>(scan)
    };
    let bucket = opts.rate_limit.map(|r| Arc::new(TokenBucket::new(r)));
    let writing = write_units(client, &target, rx, opts, bucket.as_ref(), &on_batch);
    let (scanned, written) = tokio::join!(scanning, writing);
    let scan = match (scanned, written) {
        // A failed write stops the scan (its sends fail): the write's error is the cause.
        (_, Err(e)) => return Err(e),
        (Err(e), Ok(_)) => {
            discard_target(client, &target, created_target).await;
            return Err(e);
        }
        (Ok(scan), Ok(_)) => scan,
    };

    // Events of orders already written when they came: folded on what the target holds.
    let mut tail = match fold_late_orders(client, &target, &opts.projections, &mut rebuild).await {
        Ok(tail) => tail,
        Err(e @ ReplayError::Fold { .. }) => {
            discard_target(client, &target, created_target).await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let rebuilt = rebuild.into_result();
    // The day counters last, with their final values.
    tail.extend(rebuilt.sales.values().map(|row| Unit {
        items: vec![read_models::sales_item(row)],
        order: false,
    }));
    write_all(client, &target, tail, opts, bucket.as_ref(), &on_batch).await?;

    let events_read = scan.events_read;
    let mut parked = scan.parked;
    parked.extend(rebuilt.parked);
    parked.sort_by(|a, b| a.key.cmp(&b.key));
    let orders_total = rebuilt.applied.len() as u64;
    let daily_sales_rows = rebuilt.sales.len() as u64;
    let items_written = counts.items.load(Ordering::Relaxed);
    let events_folded = rebuilt.events_folded;
    let applied = AppliedVersions(rebuilt.applied);

    let summary = ReplaySummary {
        events_table: events_table.to_string(),
        source_table: source_table.to_string(),
        target_table: target,
        created_target,
        projections: opts.projections.clone(),
        segments: opts.segments,
        events_read,
        events_folded,
        orders_rebuilt: orders_total,
        daily_sales_rows,
        items_written,
        parked,
        elapsed: started.elapsed(),
        started_at,
        applied,
    };
    tracing::info!(
        target = %summary.target_table,
        events = summary.events_read,
        orders = summary.orders_rebuilt,
        parked = summary.parked.len(),
        events_per_sec = summary.events_per_sec() as u64,
        "replay done"
    );
    Ok(summary)
}

/// Units a scan may have queued for the writer: a bound on what waits in memory.
const UNITS_IN_FLIGHT: usize = 1_024;

/// What the writer wrote so far, and what the progress reports need of the scan.
struct WriteCounts {
    /// Orders handed to the writer.
    handed: AtomicU64,
    orders: AtomicU64,
    items: AtomicU64,
    events_read: AtomicU64,
    /// The events table's item count, once the scan is over (`u64::MAX`: unknown).
    estimate: AtomicU64,
    /// The orders to write, once the scan is over (`u64::MAX` before).
    total: AtomicU64,
}

impl Default for WriteCounts {
    fn default() -> Self {
        WriteCounts {
            handed: AtomicU64::new(0),
            orders: AtomicU64::new(0),
            items: AtomicU64::new(0),
            events_read: AtomicU64::new(0),
            estimate: AtomicU64::new(u64::MAX),
            total: AtomicU64::new(u64::MAX),
        }
    }
}

/// Items written together: an order's (counted as one order once written), or a row.
struct Unit {
    items: Vec<Item>,
    order: bool,
}

/// An order's items: its view and its tracker, as far as the projections hold them.
fn order_items(table: &str, done: &Done) -> Result<Vec<Item>, ReplayError> {
    let mut items = Vec::with_capacity(2);
    if let Some(view) = &done.state.view {
        items.push(read_models::view_item(view).map_err(|e| write_err(table, e))?);
    }
    if let Some(tracker) = &done.state.tracker {
        items.push(
            read_models::tracker_item(&done.order_id, tracker).map_err(|e| write_err(table, e))?,
        );
    }
    Ok(items)
}

/// Folds the late events ([`Rebuild::take_late`]) on what `target` holds of their orders
/// (written earlier in this replay): each order's units, to write again.
async fn fold_late_orders(
    client: &Client,
    target: &str,
    projections: &[ProjectionName],
    rebuild: &mut Rebuild,
) -> Result<Vec<Unit>, ReplayError> {
    let late = rebuild.take_late();
    if !late.is_empty() {
        tracing::info!(
            orders = late.len(),
            "folding events that came after their order was written"
        );
    }
    let reads = DynamoReadModels::new(client.clone(), target).with_projections(projections);
    let mut units = Vec::with_capacity(late.len());
    for (order_id, events) in late {
        let written = reads
            .load_state(&order_id)
            .await
            .map_err(|e| read_err(target, &order_id, e))?;
        let done = rebuild.fold_late(order_id, written, events)?;
        units.push(Unit {
            items: order_items(target, &done)?,
            order: false,
        });
    }
    Ok(units)
}

/// Writes `units` (all in memory already) through [`write_units`].
async fn write_all(
    client: &Client,
    table: &str,
    units: Vec<Unit>,
    opts: &AwsReplayOptions,
    bucket: Option<&Arc<TokenBucket>>,
    on_batch: &impl Fn(u64, u64),
) -> Result<(), ReplayError> {
    let (tx, rx) = mpsc::channel::<Unit>(units.len().max(1));
    for unit in units {
        // Room for every unit: the channel was made to hold them all.
        let _ = tx.try_send(unit);
    }
    drop(tx);
    write_units(client, table, rx, opts, bucket, on_batch).await
}

/// Queues the orders the fold handed over for the writer.
async fn send_units(
    tx: &mpsc::Sender<Unit>,
    table: &str,
    done: Vec<Done>,
) -> Result<(), ReplayError> {
    for d in done {
        let unit = Unit {
            items: order_items(table, &d)?,
            order: true,
        };
        if tx.send(unit).await.is_err() {
            return Err(ReplayError::Write {
                table: table.to_string(),
                reason: "the writer stopped".into(),
            });
        }
    }
    Ok(())
}

fn read_err(table: &str, order_id: &str, e: ReadModelError) -> ReplayError {
    ReplayError::Read {
        table: table.to_string(),
        order_id: order_id.to_string(),
        reason: e.to_string(),
    }
}

fn write_err(table: &str, e: ReadModelError) -> ReplayError {
    ReplayError::Write {
        table: table.to_string(),
        reason: e.to_string(),
    }
}

fn key_of_envelope(e: &EventEnvelope) -> EventKey {
    EventKey {
        aggregate_id: e.aggregate_id.clone(),
        version: e.version,
    }
}

// ---- the target -----------------------------------------------------------------------

async fn resolve_target(
    client: &Client,
    events_table: &str,
    source_table: &str,
    opts: &AwsReplayOptions,
) -> Result<(String, bool), ReplayError> {
    let name = match &opts.target_table {
        Some(t) => t.trim().to_string(),
        None => next_generation(client, source_table).await?,
    };
    if name == source_table || name == events_table {
        return Err(ReplayError::TargetIsLive(name));
    }
    if table_exists(client, &name).await? {
        schema::wait_active(client, &name).await?;
        if !opts.reuse_target && !table_is_empty(client, &name).await? {
            return Err(ReplayError::TargetNotEmpty(name));
        }
        Ok((name, false))
    } else {
        schema::create_read_models_table(client, &name).await?;
        Ok((name, true))
    }
}

/// A replay that fails before writing anything leaves no table behind (best effort: a
/// failure to delete is logged, the original error is what the caller sees).
async fn discard_target(client: &Client, table: &str, created: bool) {
    if !created {
        return;
    }
    match client.delete_table().table_name(table).send().await {
        Ok(_) => tracing::info!(table, "replay failed before writing: new target deleted"),
        Err(e) => tracing::warn!(table, error = %describe(&e), "could not delete the new target"),
    }
}

/// `<base>-g<N>` for the first `N` after the source's own generation with no table yet.
async fn next_generation(client: &Client, source: &str) -> Result<String, ReplayError> {
    let (base, current) = split_generation(source);
    for g in current + 1..current + 1000 {
        let name = format!("{base}-g{g}");
        if !table_exists(client, &name).await? {
            return Ok(name);
        }
    }
    Err(ReplayError::InvalidOptions(format!(
        "no free generation after {source}: name a target table"
    )))
}

/// `orders-views-g3` → (`orders-views`, 3); `orders-views` → (`orders-views`, 0).
fn split_generation(table: &str) -> (&str, u64) {
    if let Some((base, g)) = table.rsplit_once("-g")
        && !base.is_empty()
        && !g.is_empty()
        && g.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = g.parse()
    {
        return (base, n);
    }
    (table, 0)
}

async fn table_exists(client: &Client, table: &str) -> Result<bool, ReplayError> {
    match client.describe_table().table_name(table).send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(ReplayError::Schema(SchemaError {
            table: table.to_string(),
            reason: describe(&e),
        })),
    }
}

async fn table_is_empty(client: &Client, table: &str) -> Result<bool, ReplayError> {
    let out = client
        .scan()
        .table_name(table)
        .limit(1)
        .send()
        .await
        .map_err(|e| {
            ReplayError::Schema(SchemaError {
                table: table.to_string(),
                reason: describe(&e),
            })
        })?;
    Ok(out.items().is_empty())
}

// ---- the scan -------------------------------------------------------------------------

type Decoded = (EventEnvelope, OrderEvent);

struct ScanResult {
    parked: Vec<ParkedEvent>,
    events_read: u64,
    estimate: Option<u64>,
}

enum Scanned<T = Box<Decoded>> {
    Event(T),
    Bad(ParkedEvent),
}

/// One message from a segment task: a decoded page with its segment, or the segment's
/// failure.
type PageMsg<T> = Result<(u32, Vec<Scanned<T>>), ReplayError>;

/// What a scan reads of each event item, and how it decodes it.
struct ScanRead<T> {
    /// Only the two keys of each item (a ProjectionExpression), else every attribute.
    keys_only: bool,
    decode: fn(Item) -> Scanned<T>,
}

// Not derived: that would ask `T: Copy`.
impl<T> Clone for ScanRead<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ScanRead<T> {}

/// Whole events, decoded (the replay).
const WHOLE_EVENTS: ScanRead<Box<Decoded>> = ScanRead {
    keys_only: false,
    decode: decode_item,
};

/// Only each event's order id and version (the catch-up): a small part of the bytes over
/// the wire and no payload to decode. DynamoDB charges the read capacity of whole items
/// all the same.
const ORDER_VERSIONS: ScanRead<(String, u64)> = ScanRead {
    keys_only: true,
    decode: decode_key,
};

/// Reads the whole events table with a parallel Scan, decoding in the segment tasks, and
/// hands each page's decoded events to `on_page` with their segment, as they come (in no
/// promised order); undecodable ones are parked or stop the scan.
async fn scan_events<T: Send + 'static>(
    client: &Client,
    table: &str,
    opts: &AwsReplayOptions,
    read: &ScanRead<T>,
    progress: &(impl Fn(ReplayProgress) + Send + Sync),
    mut on_page: impl AsyncFnMut(u32, Vec<T>) -> Result<(), ReplayError>,
) -> Result<ScanResult, ReplayError> {
    let estimate = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| ReplayError::Scan {
            table: table.to_string(),
            segment: 0,
            reason: describe(&e),
        })?
        .table
        .and_then(|t| t.item_count)
        .and_then(|c| u64::try_from(c).ok());

    let (tx, mut rx) = mpsc::channel::<PageMsg<T>>(opts.segments.min(64) as usize * 2);
    let mut tasks = JoinSet::new();
    for segment in 0..opts.segments {
        let (client, table, tx) = (client.clone(), table.to_string(), tx.clone());
        let (total, read) = (opts.segments, *read);
        tasks.spawn(
            async move { scan_segment(&client, &table, segment, total, &read, &tx).await }
                .instrument(tracing::debug_span!("scan.segment", segment)),
        );
    }
    drop(tx);

    let mut result = ScanResult {
        parked: Vec::new(),
        events_read: 0,
        estimate,
    };
    // Dropping `tasks` on an early return aborts the other segments.
    while let Some(msg) = rx.recv().await {
        let (segment, page) = msg?;
        let mut events = Vec::with_capacity(page.len());
        for scanned in page {
            result.events_read += 1;
            match scanned {
                Scanned::Event(decoded) => events.push(decoded),
                Scanned::Bad(p) if opts.skip_undecodable => {
                    tracing::warn!(key = %p.key, reason = %p.reason, "undecodable event parked");
                    result.parked.push(p);
                }
                Scanned::Bad(p) => {
                    return Err(ReplayError::Undecodable {
                        key: p.key,
                        reason: p.reason,
                    });
                }
            }
        }
        on_page(segment, events).await?;
        progress(ReplayProgress {
            phase: ReplayPhase::Scanning,
            events_read: result.events_read,
            events_estimate: estimate,
            orders_written: 0,
            orders_total: None,
            items_written: 0,
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            return Err(ReplayError::Scan {
                table: table.to_string(),
                segment: 0,
                reason: format!("a segment task failed: {e}"),
            });
        }
    }
    Ok(result)
}

async fn scan_segment<T>(
    client: &Client,
    table: &str,
    segment: u32,
    total: u32,
    read: &ScanRead<T>,
    tx: &mpsc::Sender<PageMsg<T>>,
) {
    let (Ok(segment_i32), Ok(total_i32)) = (i32::try_from(segment), i32::try_from(total)) else {
        return;
    };
    let mut start: Option<Item> = None;
    let what = format!("scan segment {segment}");
    loop {
        let page = read_with_retries(&what, || {
            client
                .scan()
                .table_name(table)
                .segment(segment_i32)
                .total_segments(total_i32)
                .consistent_read(true)
                .set_projection_expression(read.keys_only.then(|| "#a, #v".to_string()))
                .set_expression_attribute_names(read.keys_only.then(|| {
                    HashMap::from([
                        ("#a".to_string(), KEY_AGGREGATE.to_string()),
                        ("#v".to_string(), KEY_VERSION.to_string()),
                    ])
                }))
                .set_exclusive_start_key(start.clone())
                .send()
        })
        .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                let _ = tx
                    .send(Err(ReplayError::Scan {
                        table: table.to_string(),
                        segment,
                        reason: describe(&e),
                    }))
                    .await;
                return;
            }
        };
        let next = page.last_evaluated_key.filter(|k| !k.is_empty());
        let decoded = page
            .items
            .unwrap_or_default()
            .into_iter()
            .map(read.decode)
            .collect();
        if tx.send(Ok((segment, decoded))).await.is_err() {
            return; // the replay stopped
        }
        match next {
            Some(k) => start = Some(k),
            None => return,
        }
    }
}

/// Decodes one stored event; the payload is dropped once decoded (the folds read the
/// typed event and the envelope's metadata only).
fn decode_item(item: Item) -> Scanned {
    let key = EventKey {
        aggregate_id: get_s(&item, KEY_AGGREGATE).unwrap_or("?").to_string(),
        version: get_n(&item, KEY_VERSION).unwrap_or(0),
    };
    let event_type = get_s(&item, "event_type").map(str::to_string);
    let mut envelope = match codec::envelope_from_item(item) {
        Ok(e) => e,
        Err(e) => {
            return Scanned::Bad(ParkedEvent {
                key,
                event_type,
                reason: e.to_string(),
            });
        }
    };
    match envelope.decode() {
        Ok(event) => {
            envelope.payload = serde_json::Value::Null;
            Scanned::Event(Box::new((envelope, event)))
        }
        Err(e) => Scanned::Bad(ParkedEvent {
            key,
            event_type,
            reason: e.to_string(),
        }),
    }
}

/// An event's order id and version. Both are the table's keys, so DynamoDB keeps their
/// types; a version that is no `u64` (negative, fractional) is still reported.
fn decode_key(item: Item) -> Scanned<(String, u64)> {
    let order_id = get_s(&item, KEY_AGGREGATE).unwrap_or("?").to_string();
    match get_n(&item, KEY_VERSION) {
        Some(version) => Scanned::Event((order_id, version)),
        None => Scanned::Bad(ParkedEvent {
            reason: format!(
                "{KEY_VERSION} is not a version: {:?}",
                item.get(KEY_VERSION)
            ),
            key: EventKey {
                aggregate_id: order_id,
                version: 0,
            },
            event_type: None,
        }),
    }
}

/// One order's events above `after`, decoded (or not) as the scan decodes them.
async fn events_after(
    client: &Client,
    table: &str,
    order_id: &str,
    after: u64,
) -> Result<Vec<Scanned>, ReplayError> {
    let items = crate::event_store::events_after(client, table, order_id, after)
        .await
        .map_err(|reason| ReplayError::Read {
            table: table.to_string(),
            order_id: order_id.to_string(),
            reason,
        })?;
    Ok(items.into_iter().map(decode_item).collect())
}

// ---- the writes -----------------------------------------------------------------------

/// Writes the units that come through `units` in batches of 25 (fewer under a rate
/// limit), with up to `write_concurrency` calls in flight, until the channel closes;
/// `on_batch(orders, items)` after each written batch, with what it carried.
async fn write_units(
    client: &Client,
    table: &str,
    mut units: mpsc::Receiver<Unit>,
    opts: &AwsReplayOptions,
    bucket: Option<&Arc<TokenBucket>>,
    on_batch: &impl Fn(u64, u64),
) -> Result<(), ReplayError> {
    let batch_size = opts
        .rate_limit
        .map_or(MAX_BATCH_WRITE, |r| (r as usize).clamp(1, MAX_BATCH_WRITE));
    let mut tasks: JoinSet<Result<(u64, u64), ReplayError>> = JoinSet::new();
    let mut batch: Vec<WriteRequest> = Vec::with_capacity(batch_size);
    let mut batch_orders = 0u64;

    let finish_one =
        |joined: Option<Result<Result<(u64, u64), ReplayError>, _>>| -> Result<(), ReplayError> {
            match joined {
                Some(Ok(Ok((orders, items)))) => {
                    on_batch(orders, items);
                    Ok(())
                }
                Some(Ok(Err(e))) => Err(e),
                Some(Err(e)) => Err(ReplayError::Write {
                    table: table.to_string(),
                    reason: format!("a write task failed: {e}"),
                }),
                None => Ok(()),
            }
        };
    let spawn = |tasks: &mut JoinSet<_>, full: Vec<WriteRequest>, orders: u64| {
        let (client, table, bucket) = (client.clone(), table.to_string(), bucket.cloned());
        tasks.spawn(async move {
            let n = full.len() as u64;
            write_batch(&client, &table, full, bucket.as_deref()).await?;
            Ok((orders, n))
        });
    };

    while let Some(unit) = units.recv().await {
        let last = unit.items.len().saturating_sub(1);
        for (j, item) in unit.items.into_iter().enumerate() {
            let request =
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().map_err(
                        |e| ReplayError::Write {
                            table: table.to_string(),
                            reason: e.to_string(),
                        },
                    )?)
                    .build();
            batch.push(request);
            // An order counts as written with the batch that carries its last item.
            if j == last && unit.order {
                batch_orders += 1;
            }
            if batch.len() == batch_size {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                while tasks.len() >= opts.write_concurrency {
                    finish_one(tasks.join_next().await)?;
                }
                spawn(&mut tasks, full, std::mem::take(&mut batch_orders));
            }
        }
    }
    if !batch.is_empty() {
        spawn(&mut tasks, batch, batch_orders);
    }
    while !tasks.is_empty() {
        finish_one(tasks.join_next().await)?;
    }
    Ok(())
}

/// One `BatchWriteItem`, resending `UnprocessedItems` and retrying throttling with
/// exponential backoff and jitter; every (re)sent item takes a token first.
async fn write_batch(
    client: &Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
    bucket: Option<&TokenBucket>,
) -> Result<(), ReplayError> {
    let mut attempt = 0;
    loop {
        if let Some(b) = bucket {
            b.acquire(requests.len()).await;
        }
        let result = client
            .batch_write_item()
            .request_items(table, requests.clone())
            .send()
            .await;
        match result {
            Ok(out) => {
                let left = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(table))
                    .unwrap_or_default();
                if left.is_empty() {
                    return Ok(());
                }
                tracing::debug!(
                    attempt,
                    unprocessed = left.len(),
                    "resending unprocessed items"
                );
                requests = left;
            }
            Err(e) if retryable(&e) => {
                tracing::warn!(attempt, error = %describe(&e), "batch write throttled, backing off");
            }
            Err(e) => {
                return Err(ReplayError::Write {
                    table: table.to_string(),
                    reason: describe(&e),
                });
            }
        }
        attempt += 1;
        if attempt >= ATTEMPTS {
            return Err(ReplayError::Write {
                table: table.to_string(),
                reason: format!(
                    "{} items still unwritten after {attempt} attempts (throttled)",
                    requests.len()
                ),
            });
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// A token bucket of `rate` writes per second, bursting to one second's worth. A caller
/// takes its tokens at once (the balance may go negative) and sleeps off the debt, so
/// concurrent writers queue fairly and the long-run rate never exceeds `rate`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    state: std::sync::Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        TokenBucket {
            rate,
            state: std::sync::Mutex::new((rate, Instant::now())),
        }
    }

    /// How long the caller must wait before spending `n` tokens (already taken).
    pub(crate) fn reserve(&self, n: usize, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.rate);
        *last = now;
        *tokens -= n as f64;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / self.rate)
        }
    }

    pub(crate) async fn acquire(&self, n: usize) {
        let wait = self.reserve(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

// ---- catching up ----------------------------------------------------------------------

/// Each order's newest version, by a Scan of the whole events table (keys only).
async fn scan_newest(
    client: &Client,
    events_table: &str,
    opts: &AwsReplayOptions,
    progress: &(impl Fn(ReplayProgress) + Send + Sync),
) -> Result<(HashMap<String, u64>, ScanResult), ReplayError> {
    let mut newest: HashMap<String, u64> = HashMap::new();
    let scan = scan_events(
        client,
        events_table,
        opts,
        &ORDER_VERSIONS,
        progress,
        async |_, keys| {
            for (order_id, version) in keys {
                let v = newest.entry(order_id).or_default();
                *v = (*v).max(version);
            }
            Ok(())
        },
    )
    .await?;
    Ok((newest, scan))
}

/// How a catch-up found the orders with new events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUpRead {
    /// Through the events table's `by_time` index, from this moment on.
    Index { from: Timestamp },
    /// By a Scan of the whole events table: no moment was given, or the index could not
    /// be used (why).
    Scan { why: Option<String> },
}

impl fmt::Display for CatchUpRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatchUpRead::Index { from } => write!(
                f,
                "read through the {} index from {from}",
                codec::GSI_BY_TIME
            ),
            CatchUpRead::Scan { why: None } => f.write_str("read by a scan of the events table"),
            CatchUpRead::Scan { why: Some(why) } => {
                write!(f, "read by a scan of the events table: {why}")
            }
        }
    }
}

/// What [`catch_up`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUpSummary {
    pub read_by: CatchUpRead,
    pub events_read: u64,
    /// Events the target had not applied yet, now applied.
    pub events_applied: u64,
    pub parked: Vec<ParkedEvent>,
    pub elapsed: Duration,
}

/// Brings a rebuilt table up to date with events appended since its replay read them,
/// through the live projector's own version-guarded `apply` (so nothing counts twice).
/// First it finds each order's newest version:
/// - given `since` (when the replay started, [`ReplaySummary::started_at`]), from the
///   events table's `by_time` index: one Query per hour and shard from `since` (less
///   [`CLOCK_SKEW_MS`]) on, after waiting [`AwsReplayOptions::index_settle`]. It costs what
///   was appended since, not the table's size;
/// - without `since`, or when the table has no ACTIVE `by_time` index, by a Scan of the
///   whole table (reading only the two keys of each event: little over the wire, though
///   DynamoDB charges the read capacity of whole items). [`CatchUpSummary::read_by`] says
///   which, and why.
///
/// Then it loads the state in `target` of each order found and Queries the events above
/// the version it holds, which are decoded then (an undecodable one is parked or stops
/// the catch-up there): one Query per order (two for a changed one) — or, given what the
/// target holds (`known`, from [`ReplaySummary::applied`] and kept up to date here), two
/// Queries per order that changed; it writes only what is new. Run it before switching
/// readers and once more after (module docs). `target` must select the projections the
/// replay rebuilt; of `opts` only `segments`, `skip_undecodable` and `index_settle`
/// matter. Progress: `orders_written` counts orders checked, `items_written` the events
/// applied.
pub async fn catch_up(
    client: &Client,
    events_table: &str,
    target: &DynamoReadModels,
    opts: &AwsReplayOptions,
    since: Option<Timestamp>,
    mut known: Option<&mut AppliedVersions>,
    progress: impl Fn(ReplayProgress) + Send + Sync,
) -> Result<CatchUpSummary, ReplayError> {
    validate(opts)?;
    let started = Instant::now();
    let span = tracing::info_span!("dynamodb.catch_up", events_table = %events_table, target = %target.table());
    async {
        // Only each order's newest version is kept; the events to apply are read per
        // changed order, after the version the target holds.
        let found = match since {
            Some(since) => {
                Some(by_time::appended_since(client, events_table, since, opts.index_settle).await?)
            }
            None => None,
        };
        let (newest, read_by, scan) = match found {
            Some(ByTime::Read {
                newest,
                events_read,
                from,
            }) => (
                newest,
                CatchUpRead::Index { from },
                ScanResult {
                    parked: Vec::new(),
                    events_read,
                    estimate: None,
                },
            ),
            Some(ByTime::Unavailable(why)) => {
                tracing::warn!(reason = %why, "catch-up scans the events table");
                let (newest, scan) = scan_newest(client, events_table, opts, &progress).await?;
                (newest, CatchUpRead::Scan { why: Some(why) }, scan)
            }
            None => {
                let (newest, scan) = scan_newest(client, events_table, opts, &progress).await?;
                (newest, CatchUpRead::Scan { why: None }, scan)
            }
        };
        let mut parked = scan.parked;
        let selected = target.projections();
        let (orders, daily_sales) = (
            selected.contains(&ProjectionName::Orders),
            selected.contains(&ProjectionName::DailySales),
        );
        let orders_total = newest.len() as u64;
        let mut applied = 0u64;
        for (done, (order_id, newest)) in newest.into_iter().enumerate() {
            let report = |applied| {
                progress(ReplayProgress {
                    phase: ReplayPhase::Writing,
                    events_read: scan.events_read,
                    events_estimate: scan.estimate,
                    orders_written: done as u64 + 1,
                    orders_total: Some(orders_total),
                    items_written: applied,
                })
            };
            let unchanged = known
                .as_deref()
                .and_then(|k| k.get(&order_id))
                .is_some_and(|v| v >= newest);
            if unchanged {
                report(applied);
                continue;
            }
            let state = target
                .load_state(&order_id)
                .await
                .map_err(|e| read_err(target.table(), &order_id, e))?;
            let from = held(&state, orders, daily_sales);
            let mut have = from;
            if newest > from {
                // After an event that cannot be applied, the order's later events are
                // parked too, each with the reason (as the replay does).
                let mut stopped: Option<u64> = None;
                for scanned in events_after(client, events_table, &order_id, from).await? {
                    if let Some(at) = stopped {
                        // An undecodable one is parked with its own reason, as the
                        // replay parks it.
                        let p = match scanned {
                            Scanned::Bad(p) => p,
                            Scanned::Event(d) => ParkedEvent {
                                key: key_of_envelope(&d.0),
                                event_type: Some(d.0.event_type.clone()),
                                reason: format!(
                                    "not applied: follows version {at} of this order, parked"
                                ),
                            },
                        };
                        if !parked.iter().any(|q| q.key == p.key) {
                            parked.push(p);
                        }
                        continue;
                    }
                    let (envelope, event) = match scanned {
                        Scanned::Event(decoded) => *decoded,
                        Scanned::Bad(p) if !opts.skip_undecodable => {
                            return Err(ReplayError::Undecodable {
                                key: p.key,
                                reason: p.reason,
                            });
                        }
                        Scanned::Bad(p) => {
                            stopped = Some(p.key.version);
                            if !parked.iter().any(|q| q.key == p.key) {
                                parked.push(p);
                            }
                            continue;
                        }
                    };
                    match target.apply(&envelope, &event).await {
                        Ok(_) => {
                            applied += 1;
                            have = envelope.version;
                        }
                        Err(e @ (ReadModelError::Gap { .. } | ReadModelError::Projection(_)))
                            if opts.skip_undecodable =>
                        {
                            parked.push(ParkedEvent {
                                key: key_of_envelope(&envelope),
                                event_type: Some(envelope.event_type.clone()),
                                reason: e.to_string(),
                            });
                            stopped = Some(envelope.version);
                        }
                        Err(e) => {
                            return Err(ReplayError::Fold {
                                key: key_of_envelope(&envelope),
                                reason: e.to_string(),
                            });
                        }
                    }
                }
            }
            if let Some(k) = known.as_deref_mut() {
                k.0.insert(order_id, have);
            }
            report(applied);
        }
        parked.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(CatchUpSummary {
            read_by,
            events_read: scan.events_read,
            events_applied: applied,
            parked,
            elapsed: started.elapsed(),
        })
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_follow_the_source() {
        assert_eq!(split_generation("orders-views"), ("orders-views", 0));
        assert_eq!(split_generation("orders-views-g3"), ("orders-views", 3));
        assert_eq!(split_generation("orders-g-views"), ("orders-g-views", 0));
        assert_eq!(split_generation("-g2"), ("-g2", 0));
        assert_eq!(split_generation("views-g"), ("views-g", 0));
    }

    #[test]
    fn the_bucket_allows_a_second_of_burst_then_the_rate() {
        let b = TokenBucket::new(100);
        let t0 = Instant::now();
        assert_eq!(b.reserve(100, t0), Duration::ZERO);
        // Empty now: 25 more cost a quarter of a second.
        assert_eq!(b.reserve(25, t0), Duration::from_millis(250));
        // Half a second later the debt of 25 is repaid and 25 are back.
        assert_eq!(
            b.reserve(25, t0 + Duration::from_millis(500)),
            Duration::ZERO
        );
    }

    #[test]
    fn options_are_checked() {
        let ok = AwsReplayOptions::default();
        assert!(validate(&ok).is_ok());
        for bad in [
            AwsReplayOptions {
                segments: 0,
                ..ok.clone()
            },
            AwsReplayOptions {
                rate_limit: Some(0),
                ..ok.clone()
            },
            AwsReplayOptions {
                projections: vec![],
                ..ok.clone()
            },
            AwsReplayOptions {
                write_concurrency: 0,
                ..ok.clone()
            },
            AwsReplayOptions {
                target_table: Some(" ".into()),
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(validate(&bad), Err(ReplayError::InvalidOptions(_))),
                "{bad:?}"
            );
        }
    }

    /// DynamoDB Local (inside `scripts/with-emulators`): an order written before its last
    /// event came is read back, folded on and written again whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_order_written_before_its_last_event_came_is_written_again_whole() {
        let endpoint = std::env::var("DYNAMODB_ENDPOINT")
            .expect("DYNAMODB_ENDPOINT: run this test inside scripts/with-emulators");
        let clients = crate::AwsClients::load_with(
            &crate::Endpoints {
                dynamodb: Some(endpoint),
                sfn: None,
            },
            crate::TrustRoots::Platform,
        )
        .await
        .unwrap();
        let client = clients.dynamodb;
        let table = format!(
            "late-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        schema::create_read_models_table(&client, &table)
            .await
            .unwrap();
        let opts = AwsReplayOptions::default();
        let all = [ProjectionName::Orders, ProjectionName::DailySales];

        // One segment: o-0's cancellation (log[1]) comes after o-1 (log[2]).
        let log = fold::tests::log();
        let mut rebuild = Rebuild::new(fold::tests::ALL, 1);
        let mut done = Vec::new();
        for i in [0, 2, 1, 3, 4] {
            let (envelope, event) = log[i].clone();
            rebuild.add(0, envelope, event, &mut done).unwrap();
        }
        done.extend(rebuild.finish_scan().unwrap());
        let units = done
            .iter()
            .map(|d| Unit {
                items: order_items(&table, d).unwrap(),
                order: true,
            })
            .collect();
        write_all(&client, &table, units, &opts, None, &|_, _| {})
            .await
            .unwrap();
        let reads = DynamoReadModels::new(client.clone(), &table);
        let before = reads.order("o-0").await.unwrap().unwrap();
        assert_eq!(before.version, 1, "written when o-1 began");

        let tail = fold_late_orders(&client, &table, &all, &mut rebuild)
            .await
            .unwrap();
        assert_eq!(tail.len(), 1);
        write_all(&client, &table, tail, &opts, None, &|_, _| {})
            .await
            .unwrap();
        let after = reads.order("o-0").await.unwrap().unwrap();
        assert_eq!(after.version, 2);
        assert_eq!(after.status, orders_domain::order::OrderStatus::Cancelled);
        let state = reads.load_state("o-0").await.unwrap();
        assert_eq!((state.view_version, state.tracker_version), (2, 2));
        let rebuilt = rebuild.into_result();
        assert_eq!(rebuilt.applied["o-0"], 2);
        assert_eq!(rebuilt.events_folded, 5);
        client
            .delete_table()
            .table_name(&table)
            .send()
            .await
            .unwrap();
    }

    #[test]
    fn an_unknown_event_type_is_parked_with_its_key() {
        let item = HashMap::from([
            (KEY_AGGREGATE.to_string(), crate::dynamo::s("o-1")),
            (KEY_VERSION.to_string(), crate::dynamo::n(2)),
            (
                "event_type".to_string(),
                crate::dynamo::s("OrderTeleported"),
            ),
        ]);
        match decode_item(item) {
            Scanned::Bad(p) => {
                assert_eq!(
                    p.key,
                    EventKey {
                        aggregate_id: "o-1".into(),
                        version: 2
                    }
                );
                assert_eq!(p.event_type.as_deref(), Some("OrderTeleported"));
                assert!(!p.reason.is_empty());
            }
            Scanned::Event(_) => panic!("decoded"),
        }
    }

    #[test]
    fn the_catch_up_scan_reads_order_ids_and_versions() {
        let item = |version| {
            HashMap::from([
                (KEY_AGGREGATE.to_string(), crate::dynamo::s("o-1")),
                (KEY_VERSION.to_string(), version),
            ])
        };
        match decode_key(item(crate::dynamo::n(7))) {
            Scanned::Event(key) => assert_eq!(key, ("o-1".to_string(), 7)),
            Scanned::Bad(p) => panic!("{p:?}"),
        }
        let odd = aws_sdk_dynamodb::types::AttributeValue::N("-1".into());
        match decode_key(item(odd)) {
            Scanned::Bad(p) => {
                assert_eq!(p.key.aggregate_id, "o-1");
                assert!(p.reason.contains("not a version"), "{}", p.reason);
            }
            Scanned::Event(key) => panic!("{key:?}"),
        }
    }
}
