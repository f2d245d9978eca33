//! The event table read across orders by time, through its `by_time` index (KEYS_ONLY,
//! partition `time_bucket` = hour#shard, sort `occurred_at`): one Query per hour and shard.
//! What a replay's catch-up looks for (the orders with events since it started) and what
//! `orders log --aws` prints (the events of a time range, fetched whole with BatchGetItem).

use crate::codec::{
    self, GSI_BY_TIME, Item, KEY_AGGREGATE, KEY_VERSION, OCCURRED_AT, TIME_BUCKET,
    TIME_BUCKET_SHARDS,
};
use crate::dynamo::{describe, get_n, get_s};
use crate::retry::{ATTEMPTS, backoff, read_with_retries};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, IndexStatus, KeysAndAttributes};
use orders_domain::{EventEnvelope, Timestamp};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

const HOUR_MS: i64 = 3_600_000;
/// Queries in flight at once.
const CONCURRENCY: usize = 16;
/// DynamoDB's limit on the keys of one `BatchGetItem` (what [`load_events`] sends a call).
pub const MAX_BATCH_GET: usize = 100;

/// An event's place in the index: its key and when it occurred.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LoggedKey {
    /// `occurred_at` as stored (RFC 3339 UTC: its text order is time order).
    pub occurred_at: String,
    pub aggregate_id: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The table has no usable `by_time` index: why.
    #[error("{0}")]
    NoIndex(String),
    #[error("reading {table}: {reason}")]
    Read { table: String, reason: String },
    #[error("{table} holds an event that does not decode at {key}: {reason}")]
    Undecodable {
        table: String,
        key: String,
        reason: String,
    },
}

fn read_err(table: &str, reason: String) -> LogError {
    LogError::Read {
        table: table.to_string(),
        reason,
    }
}

/// The wall clock, as the events' `occurred_at` is (the crate's own: the clock adapter,
/// `orders_handlers::system::SystemClock`, sits above this crate).
pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// `Ok` when `table` has an ACTIVE `by_time` index; [`LogError::NoIndex`] says why not:
/// none (a stack deployed before it), or still being built (`CREATING`, backfilling).
pub async fn check_index(client: &Client, table: &str) -> Result<(), LogError> {
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| read_err(table, describe(&e)))?;
    let index = described
        .table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default()
        .iter()
        .find(|i| i.index_name() == Some(GSI_BY_TIME));
    match index.map(|i| i.index_status()) {
        None => Err(LogError::NoIndex(format!(
            "{table} has no {GSI_BY_TIME} index (deploy the current template to add it)"
        ))),
        // DynamoDB Local leaves the status out: it builds indexes at once.
        Some(None | Some(IndexStatus::Active)) => Ok(()),
        Some(Some(status)) => Err(LogError::NoIndex(format!(
            "{table}'s {GSI_BY_TIME} index is {} (not ACTIVE yet)",
            status.as_str()
        ))),
    }
}

/// How many hours [`hours`] would list, without listing them (to cap a range first).
pub fn hour_count(from: Timestamp, to: Timestamp) -> u64 {
    let (first, last) = (
        from.millis().div_euclid(HOUR_MS),
        to.millis().div_euclid(HOUR_MS),
    );
    u64::try_from(last.saturating_sub(first).saturating_add(1)).unwrap_or(0)
}

/// The hours (`YYYY-MM-DDTHH`) from the one of `from` to the one of `to`.
pub fn hours(from: Timestamp, to: Timestamp) -> Vec<String> {
    let mut hours = Vec::new();
    let mut hour = from.millis().div_euclid(HOUR_MS) * HOUR_MS;
    while hour <= to.millis() {
        hours.push(Timestamp::from_millis(hour).hour());
        hour += HOUR_MS;
    }
    hours
}

/// The keys of the events that occurred from `from` to `to` (both included), in time
/// order (then order id and version), from the index (check it with [`check_index`]
/// first: without it every Query fails). One Query per hour and shard, 16 at a time: cap
/// the range first ([`hour_count`]).
pub async fn keys_between(
    client: &Client,
    table: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<LoggedKey>, LogError> {
    let (from_text, to_text) = (from.to_string(), to.to_string());
    let mut buckets = hours(from, to)
        .into_iter()
        .flat_map(|hour| (0..TIME_BUCKET_SHARDS).map(move |shard| codec::bucket(&hour, shard)));
    let mut keys = Vec::new();
    let mut tasks: JoinSet<Result<Vec<LoggedKey>, LogError>> = JoinSet::new();
    loop {
        while tasks.len() < CONCURRENCY
            && let Some(bucket) = buckets.next()
        {
            let (client, table) = (client.clone(), table.to_string());
            let (from, to) = (from_text.clone(), to_text.clone());
            tasks.spawn(async move { query_bucket(&client, &table, &bucket, &from, &to).await });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        keys.extend(joined.map_err(|e| read_err(table, format!("a query task failed: {e}")))??);
    }
    keys.sort();
    Ok(keys)
}

/// The keys of one bucket's events from `from` to `to`, every page, retrying throttling.
async fn query_bucket(
    client: &Client,
    table: &str,
    bucket: &str,
    from: &str,
    to: &str,
) -> Result<Vec<LoggedKey>, LogError> {
    let mut keys = Vec::new();
    let mut start: Option<Item> = None;
    let what = format!("index query {bucket}");
    loop {
        let page = read_with_retries(&what, || {
            client
                .query()
                .table_name(table)
                .index_name(GSI_BY_TIME)
                .key_condition_expression("#b = :b AND #t BETWEEN :from AND :to")
                .expression_attribute_names("#b", TIME_BUCKET)
                .expression_attribute_names("#t", OCCURRED_AT)
                .expression_attribute_values(":b", AttributeValue::S(bucket.to_string()))
                .expression_attribute_values(":from", AttributeValue::S(from.to_string()))
                .expression_attribute_values(":to", AttributeValue::S(to.to_string()))
                .set_exclusive_start_key(start.clone())
                .send()
        })
        .await
        .map_err(|e| {
            read_err(
                &format!("{table} (index {GSI_BY_TIME}, {bucket})"),
                describe(&e),
            )
        })?;
        for item in page.items() {
            // An index entry carries the table's key and its own, so all three are there.
            if let (Some(aggregate_id), Some(version), Some(occurred_at)) = (
                get_s(item, KEY_AGGREGATE),
                get_n(item, KEY_VERSION),
                get_s(item, OCCURRED_AT),
            ) {
                keys.push(LoggedKey {
                    occurred_at: occurred_at.to_string(),
                    aggregate_id: aggregate_id.to_string(),
                    version,
                });
            }
        }
        match page.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => return Ok(keys),
        }
    }
}

/// The events of `keys`, whole, in the order of `keys` (BatchGetItem, 100 keys a call,
/// unprocessed keys sent again with backoff). A key with no event (deleted since) is left
/// out; an event that does not decode is an error naming its key.
pub async fn load_events(
    client: &Client,
    table: &str,
    keys: &[LoggedKey],
) -> Result<Vec<EventEnvelope>, LogError> {
    let mut found: HashMap<(String, u64), EventEnvelope> = HashMap::new();
    for chunk in keys.chunks(MAX_BATCH_GET) {
        let mut wanted: Vec<Item> = chunk
            .iter()
            .map(|k| {
                HashMap::from([
                    (
                        KEY_AGGREGATE.to_string(),
                        AttributeValue::S(k.aggregate_id.clone()),
                    ),
                    (
                        KEY_VERSION.to_string(),
                        AttributeValue::N(k.version.to_string()),
                    ),
                ])
            })
            .collect();
        let mut attempt = 0;
        while !wanted.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut wanted)))
                .consistent_read(true)
                .build()
                .map_err(|e| read_err(table, e.to_string()))?;
            let out = read_with_retries("event log batch get", || {
                client
                    .batch_get_item()
                    .request_items(table, request.clone())
                    .send()
            })
            .await
            .map_err(|e| read_err(table, describe(&e)))?;
            for item in out
                .responses
                .unwrap_or_default()
                .remove(table)
                .unwrap_or_default()
            {
                let key = format!(
                    "{KEY_AGGREGATE}={} {KEY_VERSION}={}",
                    get_s(&item, KEY_AGGREGATE).unwrap_or("?"),
                    get_n(&item, KEY_VERSION).unwrap_or(0)
                );
                let envelope =
                    codec::envelope_from_item(item).map_err(|e| LogError::Undecodable {
                        table: table.to_string(),
                        key,
                        reason: e.to_string(),
                    })?;
                found.insert((envelope.aggregate_id.clone(), envelope.version), envelope);
            }
            wanted = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if !wanted.is_empty() {
                attempt += 1;
                if attempt >= ATTEMPTS {
                    return Err(read_err(
                        table,
                        format!(
                            "{} keys still unread after {attempt} attempts",
                            wanted.len()
                        ),
                    ));
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
    Ok(keys
        .iter()
        .filter_map(|k| found.remove(&(k.aggregate_id.clone(), k.version)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hours_of_a_range_include_both_ends() {
        // 2026-11-26T15:22:05.123Z to two hours later.
        let t = Timestamp::from_millis(1_795_706_525_123);
        assert_eq!(
            hours(t, Timestamp::from_millis(t.millis() + 2 * HOUR_MS)),
            ["2026-11-26T15", "2026-11-26T16", "2026-11-26T17"]
        );
        assert_eq!(hours(t, t), ["2026-11-26T15"]);
        assert!(hours(t, Timestamp::from_millis(t.millis() - 2 * HOUR_MS)).is_empty());
        let later = Timestamp::from_millis(t.millis() + 2 * HOUR_MS);
        assert_eq!(hour_count(t, later), 3);
        assert_eq!(hour_count(t, t), 1);
        assert_eq!(hour_count(later, t), 0);
        // Counted, not listed: a range from year 1 costs nothing to measure.
        assert_eq!(
            hour_count(Timestamp::from_millis(-62_135_596_800_000), t),
            17_758_696
        );
    }
}
