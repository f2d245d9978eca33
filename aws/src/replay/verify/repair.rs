//! `--repair` on DynamoDB: what a verify found different, rewritten beside the running
//! projector, every write conditional on what was read.

use super::{
    AwsVerdict, History, Item, ReplayError, Select, read_order, same_tracker, same_view,
    tracker_from_item,
};
use crate::dynamo::describe;
use crate::read_models::{self, PK, SK, SK_SALES_TRACKER, SK_VIEW};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use orders_domain::ports::ReadModels;
use orders_domain::projection::{DailySales, ProjectionName};

/// What [`repair_table`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AwsRepaired {
    /// Rows rewritten as the log has them at the version they carry (edited by hand, or
    /// folded by a buggy projector), each only if still at that version.
    pub rows_rewritten: u64,
    /// Rows no event explains, deleted if still at the version read.
    pub rows_deleted: u64,
    /// Events applied to bring rows up to the log through the live projector's own
    /// version-guarded path (trackers and their days move together).
    pub events_applied: u64,
    /// Days and currencies whose counters were set to the log's, each only if they still
    /// held what the verify read.
    pub days_corrected: u64,
    /// Rows and days that moved between the verify and the repair: left as they are.
    pub moved: Vec<String>,
}

/// Rewrites in `table` what `verdict` found different from the log, with the live
/// projector running: every write is conditional on the row (or day) still holding what
/// was read, so nothing the projector wrote meanwhile is overwritten; what moved is
/// named in [`AwsRepaired::moved`]. The days first (to the log's counters at the
/// trackers' versions), then each order: a row that is not what the log says at its own
/// version is rewritten at that version, then the events after it are applied as the
/// projector applies them, so a tracker and its day's counters move together. Pending
/// orders and unsettled days are left alone.
pub async fn repair_table(
    client: &Client,
    events_table: &str,
    table: &str,
    projections: &[ProjectionName],
    verdict: &AwsVerdict,
) -> Result<AwsRepaired, ReplayError> {
    let select = Select {
        orders: projections.contains(&ProjectionName::Orders),
        daily_sales: projections.contains(&ProjectionName::DailySales),
    };
    let write_err = |reason: String| ReplayError::Write {
        table: table.to_string(),
        reason,
    };
    let mut done = AwsRepaired::default();
    if select.daily_sales {
        for day in &verdict.compared.days {
            let read = day.read_model.clone();
            let want = day
                .log
                .clone()
                .unwrap_or_else(|| DailySales::new(&day.date, &day.currency));
            let have = read
                .clone()
                .unwrap_or_else(|| DailySales::new(&day.date, &day.currency));
            match set_day(client, table, read.as_ref(), &want, &have).await {
                Ok(true) => done.days_corrected += 1,
                Ok(false) => done
                    .moved
                    .push(format!("day {} {}", day.date, day.currency)),
                Err(e) => return Err(write_err(e)),
            }
        }
    }
    let live =
        read_models::DynamoReadModels::new(client.clone(), table).with_projections(projections);
    for order_id in verdict.compared.order_ids() {
        let order = read_order(client, events_table, table, &order_id).await?;
        let history = History::of(order.events, select);
        let mut from = u64::MAX;
        let rows = [
            (select.orders, order.view.as_ref(), SK_VIEW),
            (select.daily_sales, order.tracker.as_ref(), SK_SALES_TRACKER),
        ];
        for (selected, item, sk) in rows {
            if !selected {
                continue;
            }
            let Some(item) = item else {
                from = 0; // no row: built by applying the order's events
                continue;
            };
            let version = read_models::version_of(item).unwrap_or(0);
            // A row past the log's head is set back to the head: its day counters were
            // compared at the head already (the verify has no deltas past it), so
            // nothing is applied again.
            let fix_at = version.min(history.states.len() as u64);
            let right = match sk {
                SK_VIEW => history
                    .at(fix_at)
                    .and_then(|s| s.view.as_ref())
                    .map(read_models::view_item),
                _ => history
                    .at(fix_at)
                    .and_then(|s| s.tracker.as_ref())
                    .map(|t| read_models::tracker_item(&order_id, t)),
            }
            .transpose()
            .map_err(|e| write_err(e.to_string()))?;
            let result = match right {
                // The log has this row at this version: rewritten as it says, unless it is
                // that already.
                Some(right) if !same_item(item, &right, sk) => {
                    let r = put_if_version(client, table, right, version).await;
                    if matches!(r, Ok(true)) {
                        done.rows_rewritten += 1;
                    }
                    r.map(|ok| ok.then_some(fix_at))
                }
                Some(_) => Ok(Some(fix_at)),
                // No event behind it (or no version to go by): gone, then rebuilt from
                // the events, if the log has any.
                None => {
                    let r = delete_if_version(client, table, &order_id, sk, version).await;
                    if matches!(r, Ok(true)) {
                        done.rows_deleted += 1;
                    }
                    r.map(|ok| ok.then_some(0))
                }
            };
            match result {
                Ok(Some(at)) => from = from.min(at),
                Ok(None) => done.moved.push(format!("order {order_id} ({sk})")),
                Err(e) => return Err(write_err(e)),
            }
        }
        for (envelope, event) in history
            .events
            .iter()
            .skip(usize::try_from(from).unwrap_or(usize::MAX))
        {
            match live.apply(envelope, event).await {
                Ok(orders_domain::ports::ApplyOutcome::Applied) => done.events_applied += 1,
                Ok(_) => {}
                Err(e) => return Err(write_err(format!("order {order_id}: {e}"))),
            }
        }
    }
    Ok(done)
}

/// Whether `item` holds what `right` does (the view or tracker, its version and keys).
fn same_item(item: &Item, right: &Item, sk: &str) -> bool {
    match sk {
        SK_VIEW => read_models::view_from_item(right).is_ok_and(|v| same_view(item, Some(&v))),
        _ => tracker_from_item(right).is_some_and(|t| same_tracker(item, Some(&t))),
    }
}

/// A conditional write's outcome: `Ok(false)` when its condition failed (the row moved).
fn written<T, E, R>(r: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>) -> Result<bool, String>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match r {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .and_then(|s| s.code())
                .is_some_and(|c| c == "ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(describe(&e)),
    }
}

/// Puts `item` if the row is still at `version`; `Ok(false)` if it moved.
async fn put_if_version(
    client: &Client,
    table: &str,
    item: Item,
    version: u64,
) -> Result<bool, String> {
    let r = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("#v = :seen")
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":seen", AttributeValue::N(version.to_string()))
        .send()
        .await;
    written(r)
}

/// Deletes an order's row if it is still at `version`; `Ok(false)` if it moved.
async fn delete_if_version(
    client: &Client,
    table: &str,
    order_id: &str,
    sk: &str,
    version: u64,
) -> Result<bool, String> {
    let r = client
        .delete_item()
        .table_name(table)
        .key(PK, AttributeValue::S(read_models::order_pk(order_id)))
        .key(SK, AttributeValue::S(sk.to_string()))
        .condition_expression("#v = :seen")
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":seen", AttributeValue::N(version.to_string()))
        .send()
        .await;
    written(r)
}

/// Sets a day's counters to `want` if they still hold `read` (`None`: no item);
/// `Ok(false)` if they moved.
async fn set_day(
    client: &Client,
    table: &str,
    read: Option<&DailySales>,
    want: &DailySales,
    have: &DailySales,
) -> Result<bool, String> {
    let n = |v: i64| AttributeValue::N(v.to_string());
    let mut update = client
        .update_item()
        .table_name(table)
        .key(PK, AttributeValue::S(read_models::sales_pk(&want.date)))
        .key(SK, AttributeValue::S(want.currency.clone()))
        .update_expression(
            "SET #date = :date, #cur = :cur, #op = :op, #ap = :ap, #oc = :oc, #ac = :ac",
        )
        .set_expression_attribute_names(Some(read_models::day_names()))
        .expression_attribute_values(":date", AttributeValue::S(want.date.clone()))
        .expression_attribute_values(":cur", AttributeValue::S(want.currency.clone()))
        .expression_attribute_values(":op", n(want.orders_placed))
        .expression_attribute_values(":ap", n(want.amount_placed))
        .expression_attribute_values(":oc", n(want.orders_cancelled))
        .expression_attribute_values(":ac", n(want.amount_cancelled));
    update = match read {
        None => update
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK),
        // Counters are only ever added to, so the four values read pin the item.
        Some(_) => update
            .condition_expression("#op = :op0 AND #ap = :ap0 AND #oc = :oc0 AND #ac = :ac0")
            .expression_attribute_values(":op0", n(have.orders_placed))
            .expression_attribute_values(":ap0", n(have.amount_placed))
            .expression_attribute_values(":oc0", n(have.orders_cancelled))
            .expression_attribute_values(":ac0", n(have.amount_cancelled)),
    };
    written(update.send().await)
}
