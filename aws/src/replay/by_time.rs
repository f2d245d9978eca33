//! The catch-up's cheap path: which orders got events since a moment, read from the
//! events table's `by_time` index (KEYS_ONLY, partition `time_bucket` = hour#shard, sort
//! `occurred_at`) with one Query per hour and shard, instead of a Scan of the whole table.
//! A catch-up then costs what was appended since the replay started, not the table's size.

use super::{ReplayError, read_with_retries};
use crate::codec::{
    self, GSI_BY_TIME, Item, KEY_AGGREGATE, KEY_VERSION, OCCURRED_AT, TIME_BUCKET,
    TIME_BUCKET_SHARDS,
};
use crate::dynamo::{describe, get_n, get_s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, IndexStatus};
use orders_domain::Timestamp;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

/// Events are found by the time they say they occurred, stamped by whichever function
/// appended them: reading from this much before `since` covers those clocks and the
/// moments between stamping an event and appending it (the functions time out after
/// seconds). Events read twice are harmless: the target's `apply` is version-guarded.
pub const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
const HOUR_MS: i64 = 3_600_000;
/// Queries in flight at once.
const CONCURRENCY: usize = 16;
/// Hours the index is read over at most (16 Queries each); from further back a Scan is
/// cheaper in calls, and a replay takes hours, not weeks.
const MAX_HOURS: i64 = 7 * 24;

/// What the index gave, or why it cannot be used.
pub(super) enum ByTime {
    Read {
        /// Each order's newest version among the events found.
        newest: HashMap<String, u64>,
        events_read: u64,
        /// Where the reading started (`since` less [`CLOCK_SKEW_MS`]).
        from: Timestamp,
    },
    Unavailable(String),
}

/// The orders with events that occurred from `since` (less the skew) until now (plus the
/// skew), read `settle` after this call, or why the index cannot say: the table has none
/// (a stack deployed before it), or it is still being built (`CREATING`, backfilling).
pub(super) async fn appended_since(
    client: &Client,
    table: &str,
    since: Timestamp,
    settle: Duration,
) -> Result<ByTime, ReplayError> {
    let until = now();
    let scan_err = |reason: String| ReplayError::Scan {
        table: table.to_string(),
        segment: 0,
        reason,
    };
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| scan_err(describe(&e)))?;
    let index = described
        .table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default()
        .iter()
        .find(|i| i.index_name() == Some(GSI_BY_TIME));
    match index.map(|i| i.index_status()) {
        None => {
            return Ok(ByTime::Unavailable(format!(
                "{table} has no {GSI_BY_TIME} index (deploy the current template to add it)"
            )));
        }
        // DynamoDB Local leaves the status out: it builds indexes at once.
        Some(None | Some(IndexStatus::Active)) => {}
        Some(Some(status)) => {
            return Ok(ByTime::Unavailable(format!(
                "{table}'s {GSI_BY_TIME} index is {} (not ACTIVE yet)",
                status.as_str()
            )));
        }
    }

    let from = Timestamp::from_millis(since.millis().saturating_sub(CLOCK_SKEW_MS));
    let to = until.millis().saturating_add(CLOCK_SKEW_MS);
    if to.saturating_sub(from.millis()) / HOUR_MS > MAX_HOURS {
        return Ok(ByTime::Unavailable(format!(
            "{since} is more than {} days ago, too many hours to query",
            MAX_HOURS / 24
        )));
    }
    // Entries of events appended until now have had `settle` to reach the index.
    tokio::time::sleep(settle).await;
    let from_text = from.to_string();
    let mut buckets = Vec::new();
    let mut hour = from.millis().div_euclid(HOUR_MS) * HOUR_MS;
    while hour <= to {
        let name = Timestamp::from_millis(hour).hour();
        buckets.extend((0..TIME_BUCKET_SHARDS).map(|shard| codec::bucket(&name, shard)));
        hour += HOUR_MS;
    }

    let mut newest: HashMap<String, u64> = HashMap::new();
    let mut events_read = 0u64;
    let mut tasks: JoinSet<Result<Vec<(String, u64)>, ReplayError>> = JoinSet::new();
    let mut pending = buckets.into_iter();
    loop {
        while tasks.len() < CONCURRENCY
            && let Some(bucket) = pending.next()
        {
            let (client, table, from_text) = (client.clone(), table.to_string(), from_text.clone());
            tasks.spawn(async move { query_bucket(&client, &table, &bucket, &from_text).await });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let keys = joined.map_err(|e| scan_err(format!("a query task failed: {e}")))??;
        events_read += keys.len() as u64;
        for (order_id, version) in keys {
            let v = newest.entry(order_id).or_default();
            *v = (*v).max(version);
        }
    }
    Ok(ByTime::Read {
        newest,
        events_read,
        from,
    })
}

/// The wall clock, as the events' `occurred_at` is.
pub(super) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// The keys of one bucket's events from `from` on, every page, retrying throttling.
async fn query_bucket(
    client: &Client,
    table: &str,
    bucket: &str,
    from: &str,
) -> Result<Vec<(String, u64)>, ReplayError> {
    let mut keys = Vec::new();
    let mut start: Option<Item> = None;
    let what = format!("index query {bucket}");
    loop {
        let page = read_with_retries(&what, || {
            client
                .query()
                .table_name(table)
                .index_name(GSI_BY_TIME)
                .key_condition_expression("#b = :b AND #t >= :from")
                .projection_expression("#a, #v")
                .expression_attribute_names("#b", TIME_BUCKET)
                .expression_attribute_names("#t", OCCURRED_AT)
                .expression_attribute_names("#a", KEY_AGGREGATE)
                .expression_attribute_names("#v", KEY_VERSION)
                .expression_attribute_values(":b", AttributeValue::S(bucket.to_string()))
                .expression_attribute_values(":from", AttributeValue::S(from.to_string()))
                .set_exclusive_start_key(start.clone())
                .send()
        })
        .await
        .map_err(|e| ReplayError::Scan {
            table: format!("{table} (index {GSI_BY_TIME}, {bucket})"),
            segment: 0,
            reason: describe(&e),
        })?;
        for item in page.items() {
            // An index entry carries the table's key, so both are there.
            if let (Some(order_id), Some(version)) =
                (get_s(item, KEY_AGGREGATE), get_n(item, KEY_VERSION))
            {
                keys.push((order_id.to_string(), version));
            }
        }
        match page.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => return Ok(keys),
        }
    }
}
