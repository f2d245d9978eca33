//! The catch-up's cheap path: which orders got events since a moment, from the events
//! table's `by_time` index ([`crate::event_log`]) instead of a Scan of the whole table. A
//! catch-up then costs what was appended since the replay started, not the table's size.

use super::ReplayError;
use crate::event_log::{self, LogError};
use aws_sdk_dynamodb::Client;
use orders_domain::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

/// Events are found by the time they say they occurred, stamped by whichever function
/// appended them: reading from this much before `since` covers those clocks and the
/// moments between stamping an event and appending it (the functions time out after
/// seconds). Events read twice are harmless: the target's `apply` is version-guarded.
pub const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// Hours the index is read over at most (16 Queries each); from further back a Scan is
/// cheaper in calls, and a replay takes hours, not weeks.
const MAX_HOURS: u64 = 7 * 24;

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
/// skew), read `settle` after this call, or why the index cannot say.
pub(super) async fn appended_since(
    client: &Client,
    table: &str,
    since: Timestamp,
    settle: Duration,
) -> Result<ByTime, ReplayError> {
    let until = event_log::now();
    let scan_err = |e: LogError| ReplayError::Scan {
        table: table.to_string(),
        segment: 0,
        reason: e.to_string(),
    };
    match event_log::check_index(client, table).await {
        Ok(()) => {}
        Err(LogError::NoIndex(why)) => return Ok(ByTime::Unavailable(why)),
        Err(e) => return Err(scan_err(e)),
    }
    let from = Timestamp::from_millis(since.millis().saturating_sub(CLOCK_SKEW_MS));
    let to = Timestamp::from_millis(until.millis().saturating_add(CLOCK_SKEW_MS));
    if event_log::hour_count(from, to) > MAX_HOURS {
        return Ok(ByTime::Unavailable(format!(
            "{since} is more than {} days ago, too many hours to query",
            MAX_HOURS / 24
        )));
    }
    // Entries of events appended until now have had `settle` to reach the index.
    tokio::time::sleep(settle).await;
    let keys = event_log::keys_between(client, table, from, to)
        .await
        .map_err(scan_err)?;
    let mut newest: HashMap<String, u64> = HashMap::new();
    for k in &keys {
        let v = newest.entry(k.aggregate_id.clone()).or_default();
        *v = (*v).max(k.version);
    }
    Ok(ByTime::Read {
        newest,
        events_read: keys.len() as u64,
        from,
    })
}
