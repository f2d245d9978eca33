//! `orders projections verify --aws`: is a read-model table what the event table says?
//! Nothing is written (but by [`repair_table`], conditionally) and no lock holds the live
//! projector off, so what a row should hold is judged by the version the row carries.
//!
//! ```text
//! events table ──parallel Scan──▶ fold (the replay's, in memory: one state per order)
//! days before ──▶ read-model table ──parallel Scan──▶ each order's rows against the fold
//! days after  ──▶ each order that differed: its rows, then its events, read again
//!             ──▶ same / pending / different; each day against the log at the versions
//!                 the trackers hold
//! ```
//!
//! - **Orders.** A row that equals the fold at its own version is right as of that version.
//!   One that does not (the live projector moved it meanwhile, or it drifted) is read
//!   again, then the order's events (so they cover what the row reflects), and judged: the
//!   same as the log's head; *pending* when it equals the log at an older version and the
//!   next event is younger than [`AwsVerifyOptions::pending_grace`] (the stream has not
//!   delivered it yet); else different, with its fields against the log's head.
//! - **Days** are the sum of the placements and cancellations the trackers have applied.
//!   The projector writes a tracker and its day's counters in one transaction, and every
//!   such write moves a counter, so a day read the same before and after the scan that
//!   read the trackers was not written meanwhile: it must equal what the log gives at the
//!   trackers' versions. A day that moved is *unsettled*: named, not compared.
//!
//! Memory: the fold keeps each order's row versions and digests (about 100 bytes an
//! order); the scans hold a page per segment.

use super::fold::FoldOptions;
use super::{
    AwsReplayOptions, Item, ParkedEvent, Rebuild, ReplayError, ReplayPhase, ReplayProgress,
    ScanRead, Scanned, events_after, scan_events, validate,
};
use crate::dynamo::{describe, get_s};
use crate::read_models::{
    self, GSI1_PK, GSI1_SK, ORDER_PREFIX, OrderState, PK, SALES_PREFIX, SK, SK_SALES_TRACKER,
    SK_VIEW,
};
use crate::retry::{ATTEMPTS, backoff, read_with_retries};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use orders_domain::Timestamp;
use orders_domain::compare::{Compared, DayDiff, RowDiff, Undecodable, field_diffs};
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::projection::{DailySales, OrderView, ProjectionName, SalesDelta, SalesTracker};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

mod repair;
pub use repair::{AwsRepaired, repair_table};

/// Orders read again at once.
const RECHECKS_IN_FLIGHT: usize = 16;
/// DynamoDB's limit on the keys of one `BatchGetItem`.
const MAX_BATCH_GET: usize = 100;

/// What to verify, and how.
#[derive(Debug, Clone)]
pub struct AwsVerifyOptions {
    pub projections: Vec<ProjectionName>,
    /// Parallel Scan segments, for both tables.
    pub segments: u32,
    /// How long the live projector may take to apply an event before a row still without
    /// it counts as different (the stream delivers within seconds; retries take longer).
    pub pending_grace: Duration,
    /// Rewrite what differs ([`repair_table`]), then verify again.
    pub repair: bool,
}

impl Default for AwsVerifyOptions {
    fn default() -> Self {
        AwsVerifyOptions {
            projections: ProjectionName::ALL.to_vec(),
            segments: 4,
            pending_grace: Duration::from_secs(60),
            repair: false,
        }
    }
}

/// What was compared, and what differs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AwsVerdict {
    pub events_table: String,
    pub read_models_table: String,
    pub projections: Vec<ProjectionName>,
    /// Events read by the scan.
    pub events_read: u64,
    /// Items read from the read-model table by its scan.
    pub read_model_items: u64,
    /// Events that do not decode, or follow one that does not: no read model holds them.
    pub undecodable: Vec<Undecodable>,
    /// Orders whose rows lag the log by events younger than the grace: the stream has not
    /// delivered them yet. Not different.
    pub not_yet_projected: Vec<String>,
    /// The grace they were judged by ([`AwsVerifyOptions::pending_grace`]).
    pub pending_grace_seconds: u64,
    /// Days and currencies written while they were being read: not compared.
    pub unsettled_days: Vec<(String, String)>,
    /// Orders read again because the first comparison did not settle them.
    pub rechecked: u64,
    pub compared: Compared,
    /// With [`AwsVerifyOptions::repair`]: what was rewritten, and what a verify right
    /// after still found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<AwsRepair>,
    pub seconds: f64,
}

/// A repair, and the verify after it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AwsRepair {
    pub repaired: AwsRepaired,
    /// Rows and days that still differ in the verify after the repair.
    pub still_different: u64,
    /// Orders that verify found not yet projected, and days it could not compare.
    pub still_pending: u64,
    pub still_unsettled: u64,
}

impl AwsVerdict {
    /// Whether the table is what the log says (as far as it was compared).
    pub fn same(&self) -> bool {
        self.compared.differences() == 0
    }

    /// Whether the table is what the log says now: the same, or repaired.
    pub fn sound(&self) -> bool {
        match &self.repair {
            Some(r) => r.still_different == 0,
            None => self.same(),
        }
    }
}

/// Where a verify is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyProgress {
    /// Scanning the events table: events read, and its item count (an estimate).
    Events { read: u64, estimate: Option<u64> },
    /// Scanning the read-model table: items read, and its item count.
    ReadModels { read: u64, estimate: Option<u64> },
    /// Reading again the orders that did not settle.
    Rechecking { done: u64, total: u64 },
}

/// Compares `read_models_table` with what `events_table` folds to (module docs); with
/// [`AwsVerifyOptions::repair`], rewrites what differs and compares again.
pub async fn verify_table(
    client: &Client,
    events_table: &str,
    read_models_table: &str,
    opts: &AwsVerifyOptions,
    progress: impl Fn(VerifyProgress) + Send + Sync,
) -> Result<AwsVerdict, ReplayError> {
    let started = Instant::now();
    let mut verdict = compare(client, events_table, read_models_table, opts, &progress).await?;
    if opts.repair && !verdict.same() {
        let repaired = repair_table(
            client,
            events_table,
            read_models_table,
            &opts.projections,
            &verdict,
        )
        .await?;
        let after = compare(client, events_table, read_models_table, opts, &progress).await?;
        verdict.repair = Some(AwsRepair {
            repaired,
            still_different: after.compared.differences() as u64,
            still_pending: after.not_yet_projected.len() as u64,
            still_unsettled: after.unsettled_days.len() as u64,
        });
    }
    verdict.seconds = started.elapsed().as_secs_f64();
    Ok(verdict)
}

async fn compare(
    client: &Client,
    events_table: &str,
    read_models_table: &str,
    opts: &AwsVerifyOptions,
    progress: &(impl Fn(VerifyProgress) + Send + Sync),
) -> Result<AwsVerdict, ReplayError> {
    let scan_opts = AwsReplayOptions {
        projections: opts.projections.clone(),
        segments: opts.segments,
        skip_undecodable: true,
        ..AwsReplayOptions::default()
    };
    validate(&scan_opts)?;
    let started = Instant::now();
    let select = Select {
        orders: opts.projections.contains(&ProjectionName::Orders),
        daily_sales: opts.projections.contains(&ProjectionName::DailySales),
    };
    let mut fold = fold_log(client, events_table, &scan_opts, select, progress).await?;

    // The read-model table, between two reads of the days.
    let day_keys: Vec<(String, String)> = fold.days.keys().cloned().collect();
    let days_before = match select.daily_sales {
        true => read_days(client, read_models_table, &day_keys).await?,
        false => HashMap::new(),
    };
    let mut seen = Seen::default();
    let items_progress = |p: ReplayProgress| {
        progress(VerifyProgress::ReadModels {
            read: p.events_read,
            estimate: p.events_estimate,
        })
    };
    let scanned = scan_events(
        client,
        read_models_table,
        &scan_opts,
        &WHOLE_ITEMS,
        &items_progress,
        async |_, items| {
            for item in items {
                seen.take(item, &fold.expected, select, &mut fold.recheck);
            }
            Ok(())
        },
    )
    .await?;
    for (order_id, state) in &fold.expected {
        if select.daily_sales && state.tracker.is_some() && !seen.trackers.contains(order_id) {
            fold.recheck.insert(order_id.clone(), Some(0));
        }
        if select.orders && state.view.is_some() && !seen.views.contains(order_id) {
            fold.recheck.entry(order_id.clone()).or_insert(None);
        }
    }
    let mut all_days: BTreeSet<(String, String)> = day_keys.into_iter().collect();
    all_days.extend(seen.days.keys().cloned());
    let days_after = match select.daily_sales {
        true => {
            let keys: Vec<(String, String)> = all_days.iter().cloned().collect();
            read_days(client, read_models_table, &keys).await?
        }
        false => HashMap::new(),
    };

    let rechecked = fold.recheck.len() as u64;
    let mut compared = Compared::default();
    let not_yet_projected = recheck(
        client,
        (events_table, read_models_table),
        opts,
        select,
        &mut fold,
        &mut compared,
        progress,
    )
    .await?;

    // The days, where they held still.
    let mut unsettled_days = Vec::new();
    if select.daily_sales {
        all_days.extend(fold.days.keys().cloned());
        for key in all_days {
            let before = days_before.get(&key).or_else(|| seen.days.get(&key));
            let after = days_after.get(&key);
            if before != after {
                unsettled_days.push(key);
                continue;
            }
            let log = fold.days.get(&key).filter(|d| !empty(d));
            if after.filter(|d| !empty(d)) != log {
                compared.days.push(DayDiff {
                    date: key.0,
                    currency: key.1,
                    read_model: after.cloned(),
                    log: log.cloned(),
                });
            }
        }
        compared.days_in_log = fold.days.values().filter(|d| !empty(d)).count() as u64;
    }
    compared.orders_in_log = fold.expected.values().filter(|s| s.view.is_some()).count() as u64;
    Ok(AwsVerdict {
        events_table: events_table.to_string(),
        read_models_table: read_models_table.to_string(),
        projections: opts.projections.clone(),
        events_read: fold.events_read,
        read_model_items: scanned.events_read,
        undecodable: fold.undecodable,
        not_yet_projected,
        pending_grace_seconds: opts.pending_grace.as_secs(),
        unsettled_days,
        rechecked,
        compared,
        repair: None,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What the event table folds to.
struct Fold {
    /// Each order's rows, in little.
    expected: HashMap<String, Expected>,
    /// The days and currencies, at the versions folded.
    days: BTreeMap<(String, String), DailySales>,
    /// The orders to read again, each with the version of its tracker the scan of the
    /// read-model table read, when that differed (`None`: as folded).
    recheck: BTreeMap<String, Option<u64>>,
    undecodable: Vec<Undecodable>,
    events_read: u64,
}

/// Scans and folds the event table as a replay does.
async fn fold_log(
    client: &Client,
    events_table: &str,
    scan_opts: &AwsReplayOptions,
    select: Select,
    progress: &(impl Fn(VerifyProgress) + Send + Sync),
) -> Result<Fold, ReplayError> {
    let mut rebuild = Rebuild::new(
        FoldOptions {
            orders: select.orders,
            daily_sales: select.daily_sales,
            skip_undecodable: true,
        },
        scan_opts.segments as usize,
    );
    let mut expected: HashMap<String, Expected> = HashMap::new();
    let events_progress = |p: ReplayProgress| {
        if p.phase == ReplayPhase::Scanning {
            progress(VerifyProgress::Events {
                read: p.events_read,
                estimate: p.events_estimate,
            })
        }
    };
    let scan = scan_events(
        client,
        events_table,
        scan_opts,
        &super::WHOLE_EVENTS,
        &events_progress,
        async |segment, events| {
            let mut done = Vec::new();
            for decoded in events {
                let (envelope, event) = *decoded;
                rebuild.add(segment as usize, envelope, event, &mut done)?;
            }
            expected.extend(
                done.into_iter()
                    .map(|d| (d.order_id, Expected::of(&d.state))),
            );
            Ok(())
        },
    )
    .await?;
    expected.extend(
        rebuild
            .finish_scan()?
            .into_iter()
            .map(|d| (d.order_id, Expected::of(&d.state))),
    );
    // Orders with events the fold met after it handed them over: judged afresh.
    let recheck = rebuild
        .take_late()
        .into_iter()
        .map(|(id, _)| (id, None))
        .collect();
    let rebuilt = rebuild.into_result();
    let mut undecodable: Vec<Undecodable> = scan
        .parked
        .into_iter()
        .chain(rebuilt.parked)
        .map(|p: ParkedEvent| Undecodable {
            key: p.key.to_string(),
            reason: p.reason,
        })
        .collect();
    undecodable.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Fold {
        expected,
        days: rebuilt.sales,
        recheck,
        undecodable,
        events_read: scan.events_read,
    })
}

/// Reads again each order of `fold.recheck` (its rows, then its events; a few at once),
/// adds what differs to `compared`, and moves the fold's days to the versions of the
/// trackers the scan read. Returns the orders not yet projected.
async fn recheck(
    client: &Client,
    (events_table, read_models_table): (&str, &str),
    opts: &AwsVerifyOptions,
    select: Select,
    fold: &mut Fold,
    compared: &mut Compared,
    progress: &(impl Fn(VerifyProgress) + Send + Sync),
) -> Result<Vec<String>, ReplayError> {
    let total = fold.recheck.len() as u64;
    let mut not_yet_projected = Vec::new();
    let mut tasks = JoinSet::new();
    let mut queue = std::mem::take(&mut fold.recheck).into_iter();
    let mut done = 0;
    let now = crate::event_log::now();
    loop {
        while tasks.len() < RECHECKS_IN_FLIGHT
            && let Some((order_id, tracker_at_scan)) = queue.next()
        {
            let (client, events_table, table) = (
                client.clone(),
                events_table.to_string(),
                read_models_table.to_string(),
            );
            let folded_at = fold
                .expected
                .get(&order_id)
                .map_or(0, Expected::tracker_version);
            let tracker_at_scan = tracker_at_scan.unwrap_or(folded_at);
            let grace = opts.pending_grace;
            tasks.spawn(async move {
                let order = read_order(&client, &events_table, &table, &order_id).await?;
                Ok::<_, ReplayError>(order.judge(
                    order_id,
                    select,
                    now,
                    grace,
                    (folded_at, tracker_at_scan),
                ))
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let judged = joined.map_err(|e| ReplayError::Read {
            table: read_models_table.to_string(),
            order_id: "?".into(),
            reason: format!("a recheck failed: {e}"),
        })??;
        done += 1;
        progress(VerifyProgress::Rechecking { done, total });
        compared.orders.extend(judged.view);
        compared.trackers.extend(judged.tracker);
        if judged.pending {
            not_yet_projected.push(judged.order_id);
        }
        for (delta, sign) in judged.days {
            let row = fold
                .days
                .entry((delta.date.clone(), delta.currency.clone()))
                .or_insert_with(|| DailySales::new(&delta.date, &delta.currency));
            row.add(&scaled(&delta, sign));
        }
    }
    compared.orders.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    compared
        .trackers
        .sort_by(|a, b| a.order_id.cmp(&b.order_id));
    not_yet_projected.sort();
    Ok(not_yet_projected)
}

#[derive(Debug, Clone, Copy)]
struct Select {
    orders: bool,
    daily_sales: bool,
}

/// Every attribute of each item of the read-model table.
const WHOLE_ITEMS: ScanRead<Item> = ScanRead {
    keys_only: false,
    decode: Scanned::Event,
};

/// What the scan of the read-model table met.
#[derive(Default)]
struct Seen {
    views: BTreeSet<String>,
    trackers: BTreeSet<String>,
    days: HashMap<(String, String), DailySales>,
}

impl Seen {
    /// Compares one item with the fold; an order whose row differs goes to `recheck`,
    /// with the version of its tracker when that is the row.
    fn take(
        &mut self,
        item: Item,
        expected: &HashMap<String, Expected>,
        select: Select,
        recheck: &mut BTreeMap<String, Option<u64>>,
    ) {
        let (Some(pk), Some(sk)) = (get_s(&item, PK), get_s(&item, SK)) else {
            return;
        };
        if let Some(date) = pk.strip_prefix(SALES_PREFIX) {
            if let Ok(day) = read_models::sales_from_item(&item) {
                self.days.insert((date.to_string(), sk.to_string()), day);
            }
            return;
        }
        let Some(order_id) = pk.strip_prefix(ORDER_PREFIX) else {
            return;
        };
        let state = expected.get(order_id);
        match sk {
            SK_VIEW if select.orders => {
                self.views.insert(order_id.to_string());
                if !matches_view(&item, state.and_then(|s| s.view)) {
                    recheck.entry(order_id.to_string()).or_insert(None);
                }
            }
            SK_SALES_TRACKER if select.daily_sales => {
                self.trackers.insert(order_id.to_string());
                if !matches_tracker(&item, state.and_then(|s| s.tracker)) {
                    let version = read_models::version_of(&item).unwrap_or(0);
                    recheck.insert(order_id.to_string(), Some(version));
                }
            }
            _ => {}
        }
    }
}

/// What the fold gives of one order, in little: each row's version and a digest of its
/// value. A verify holds this for every order (about 100 bytes with the id and the map),
/// not the rows (about 1 KB); a row found different is judged from a fresh read.
#[derive(Debug, Default, Clone, Copy)]
struct Expected {
    view: Option<(u64, Digest)>,
    tracker: Option<(u64, Digest)>,
}

type Digest = [u8; 16];

/// The first 128 bits of the SHA-256 of a row's JSON (typed structs: one text a value).
fn digest(value: &impl serde::Serialize) -> Digest {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(serde_json::to_vec(value).unwrap_or_default());
    let mut out = [0; 16];
    out.copy_from_slice(&hash[..16]);
    out
}

impl Expected {
    fn of(state: &OrderState) -> Self {
        Expected {
            view: state.view.as_ref().map(|v| (v.version, digest(v))),
            tracker: state.tracker.as_ref().map(|t| (t.version, digest(t))),
        }
    }

    fn tracker_version(&self) -> u64 {
        self.tracker.map_or(0, |(v, _)| v)
    }
}

/// Whether a view item holds what the fold gives: its version, its value and its index
/// keys.
fn matches_view(item: &Item, expected: Option<(u64, Digest)>) -> bool {
    let (Some((version, want)), Ok(view)) = (expected, read_models::view_from_item(item)) else {
        return false;
    };
    read_models::version_of(item).ok() == Some(version)
        && digest(&view) == want
        && read_models::view_item(&view).is_ok_and(|keys| {
            [GSI1_PK, GSI1_SK]
                .iter()
                .all(|k| item.get(*k) == keys.get(*k))
        })
}

fn matches_tracker(item: &Item, expected: Option<(u64, Digest)>) -> bool {
    let (Some((version, want)), Some(tracker)) = (expected, tracker_from_item(item)) else {
        return false;
    };
    read_models::version_of(item).ok() == Some(version) && digest(&tracker) == want
}

/// Whether a view item holds `view`: its version, its value and its index keys.
fn same_view(item: &Item, view: Option<&OrderView>) -> bool {
    let Some(view) = view else { return false };
    let Ok(expected) = read_models::view_item(view) else {
        return false;
    };
    read_models::version_of(item).ok() == Some(view.version)
        && [GSI1_PK, GSI1_SK]
            .iter()
            .all(|k| item.get(*k) == expected.get(*k))
        && read_models::view_from_item(item).is_ok_and(|v| v == *view)
}

fn same_tracker(item: &Item, tracker: Option<&SalesTracker>) -> bool {
    let Some(tracker) = tracker else { return false };
    read_models::version_of(item).ok() == Some(tracker.version)
        && tracker_from_item(item).as_ref() == Some(tracker)
}

fn tracker_from_item(item: &Item) -> Option<SalesTracker> {
    serde_dynamo::from_attribute_value(item.get("tracker")?.clone()).ok()
}

fn json(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn empty(d: &DailySales) -> bool {
    d.orders_placed == 0
        && d.amount_placed == 0
        && d.orders_cancelled == 0
        && d.amount_cancelled == 0
}

fn scaled(d: &SalesDelta, sign: i64) -> SalesDelta {
    SalesDelta {
        date: d.date.clone(),
        currency: d.currency.clone(),
        orders_placed: d.orders_placed * sign,
        amount_placed: d.amount_placed * sign,
        orders_cancelled: d.orders_cancelled * sign,
        amount_cancelled: d.amount_cancelled * sign,
    }
}

/// Reads the day counters `keys` (date, currency), strongly consistent; a day with no
/// item is left out.
async fn read_days(
    client: &Client,
    table: &str,
    keys: &[(String, String)],
) -> Result<HashMap<(String, String), DailySales>, ReplayError> {
    let err = |reason: String| ReplayError::Days {
        table: table.to_string(),
        reason,
    };
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_BATCH_GET) {
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(
                    chunk
                        .iter()
                        .map(|(date, currency)| {
                            HashMap::from([
                                (
                                    PK.to_string(),
                                    AttributeValue::S(read_models::sales_pk(date)),
                                ),
                                (SK.to_string(), AttributeValue::S(currency.clone())),
                            ])
                        })
                        .collect(),
                ))
                .consistent_read(true)
                .build()
                .map_err(|e| err(e.to_string()))?,
        );
        let mut attempt = 0;
        while let Some(keys) = request.take() {
            let page = read_with_retries("read the day counters", || {
                client
                    .batch_get_item()
                    .request_items(table, keys.clone())
                    .send()
            })
            .await
            .map_err(|e| err(describe(&e)))?;
            for item in page
                .responses
                .unwrap_or_default()
                .remove(table)
                .unwrap_or_default()
            {
                let day = read_models::sales_from_item(&item).map_err(|e| err(e.to_string()))?;
                out.insert((day.date.clone(), day.currency.clone()), day);
            }
            // Keys DynamoDB left for later (throttling, or the 16 MB limit): again, after
            // a pause.
            request = page
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys.is_empty());
            if request.is_some() {
                attempt += 1;
                if attempt >= ATTEMPTS {
                    return Err(err("keys left unprocessed after every retry".into()));
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
    Ok(out)
}

/// One order as read again: its rows, then its events.
struct Order {
    view: Option<Item>,
    tracker: Option<Item>,
    events: Vec<Scanned>,
}

/// What a recheck found of one order.
struct Judged {
    order_id: String,
    view: Option<RowDiff>,
    tracker: Option<RowDiff>,
    pending: bool,
    /// Day counter changes to add (+1) or take away (−1) from the fold's days, so they
    /// are the log's at the version of the tracker the scan read.
    days: Vec<(SalesDelta, i64)>,
}

async fn read_order(
    client: &Client,
    events_table: &str,
    table: &str,
    order_id: &str,
) -> Result<Order, ReplayError> {
    let rows = read_models::DynamoReadModels::new(client.clone(), table);
    let rows = read_with_retries("read an order's rows", || {
        rows.partition(read_models::order_pk(order_id)).send()
    })
    .await
    .map_err(|e| ReplayError::Read {
        table: table.to_string(),
        order_id: order_id.to_string(),
        reason: describe(&e),
    })?;
    let (mut view, mut tracker) = (None, None);
    for item in rows.items.unwrap_or_default() {
        match get_s(&item, SK) {
            Some(SK_VIEW) => view = Some(item),
            Some(SK_SALES_TRACKER) => tracker = Some(item),
            _ => {}
        }
    }
    // After the rows: the events cover whatever the rows reflect.
    let events = events_after(client, events_table, order_id, 0).await?;
    Ok(Order {
        view,
        tracker,
        events,
    })
}

/// An order's states along its log, up to the first event that does not fold (the live
/// projector stops there too).
struct History {
    /// The state after each folded version (index = version − 1).
    states: Vec<OrderState>,
    /// The folded events, for a repair to apply.
    events: Vec<(EventEnvelope, OrderEvent)>,
    /// When each folded event occurred.
    times: Vec<Timestamp>,
    deltas: Vec<(u64, SalesDelta)>,
}

impl History {
    fn of(events: Vec<Scanned>, select: Select) -> Self {
        let mut h = History {
            states: Vec::new(),
            events: Vec::new(),
            times: Vec::new(),
            deltas: Vec::new(),
        };
        let mut state = OrderState::default();
        for scanned in events {
            let Scanned::Event(decoded) = scanned else {
                break;
            };
            let (envelope, event) = *decoded;
            match state.fold(select.orders, select.daily_sales, &envelope, &event) {
                Ok(folded) => {
                    if let Some(d) = folded.delta {
                        h.deltas.push((envelope.version, d));
                    }
                }
                Err(_) => break,
            }
            h.states.push(state.clone());
            h.times.push(envelope.occurred_at);
            h.events.push((envelope, event));
        }
        h
    }

    fn at(&self, version: u64) -> Option<&OrderState> {
        let i = usize::try_from(version).ok()?.checked_sub(1)?;
        self.states.get(i)
    }

    fn head(&self) -> Option<&OrderState> {
        self.states.last()
    }

    /// Whether the event after `version` occurred less than `grace` before `now`.
    fn young_after(&self, version: u64, now: Timestamp, grace: Duration) -> bool {
        usize::try_from(version)
            .ok()
            .and_then(|i| self.times.get(i))
            .is_some_and(|t| now.0 - t.0 < i64::try_from(grace.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A row judged against its order's log: `None` when it is right (or pending).
struct Row<'a, T> {
    item: Option<&'a Item>,
    /// The row's value as the log has it at `version`.
    at: fn(&OrderState) -> Option<&T>,
    same: fn(&Item, Option<&T>) -> bool,
    value: fn(&Item) -> Value,
}

impl<T: serde::Serialize> Row<'_, T> {
    /// `(difference, pending)`.
    fn judge(
        &self,
        order_id: &str,
        history: &History,
        now: Timestamp,
        grace: Duration,
    ) -> (Option<RowDiff>, bool) {
        let head = history.head().and_then(self.at);
        let head_version = head.map(|_| history.states.len() as u64);
        let diff = |version: Option<u64>, fields| RowDiff {
            order_id: order_id.to_string(),
            read_model_version: version,
            log_version: head_version,
            fields,
        };
        match (self.item, head) {
            (None, None) => (None, false),
            (None, Some(_)) => {
                // Not written yet: pending while the order's first event is young.
                let first = (0..history.states.len() as u64)
                    .find(|v| history.at(v + 1).and_then(self.at).is_some())
                    .unwrap_or(0);
                match history.young_after(first, now, grace) {
                    true => (None, true),
                    false => (Some(diff(None, vec![])), false),
                }
            }
            (Some(item), None) => (
                Some(diff(read_models::version_of(item).ok(), vec![])),
                false,
            ),
            (Some(item), Some(head)) => {
                let version = read_models::version_of(item).unwrap_or(0);
                let fields = || field_diffs(&(self.value)(item), &json(head));
                if (self.same)(item, Some(head)) {
                    return (None, false);
                }
                let behind = head_version.is_some_and(|h| version < h)
                    && (self.same)(item, history.at(version).and_then(self.at));
                match behind && history.young_after(version, now, grace) {
                    true => (None, true),
                    false => (Some(diff(Some(version), fields())), false),
                }
            }
        }
    }
}

impl Order {
    fn judge(
        self,
        order_id: String,
        select: Select,
        now: Timestamp,
        grace: Duration,
        (folded_at, tracker_at_scan): (u64, u64),
    ) -> Judged {
        let (view_item, tracker_item) = (self.view, self.tracker);
        let history = History::of(self.events, select);
        let mut judged = Judged {
            order_id,
            view: None,
            tracker: None,
            pending: false,
            days: Vec::new(),
        };
        if select.orders {
            let row = Row {
                item: view_item.as_ref(),
                at: |s: &OrderState| s.view.as_ref(),
                same: same_view,
                value: |item| {
                    read_models::view_from_item(item)
                        .map(|v| json(&v))
                        .unwrap_or_else(|e| Value::String(e.to_string()))
                },
            };
            let (diff, pending) = row.judge(&judged.order_id, &history, now, grace);
            judged.view = diff;
            judged.pending |= pending;
        }
        if select.daily_sales {
            let row = Row {
                item: tracker_item.as_ref(),
                at: |s: &OrderState| s.tracker.as_ref(),
                same: same_tracker,
                value: |item| tracker_from_item(item).map_or(Value::Null, |t| json(&t)),
            };
            let (diff, pending) = row.judge(&judged.order_id, &history, now, grace);
            judged.tracker = diff;
            judged.pending |= pending;
            // The fold's days hold this order's changes up to `folded_at`; the table's, up
            // to the tracker the scan read.
            for (version, delta) in history.deltas {
                let (in_fold, in_table) = (version <= folded_at, version <= tracker_at_scan);
                if in_fold != in_table {
                    judged.days.push((delta, if in_table { 1 } else { -1 }));
                }
            }
        }
        judged.pending &= judged.view.is_none() && judged.tracker.is_none();
        judged
    }
}
