//! Two generations of the read models compared row by row: a projection as readers see it
//! against the same projection folded afresh from the log (`orders projections verify`).
//! The two sides may live in different database files; each is read through its own
//! connection, in key order, and merged.

use super::DbError;
use super::projection::{self, Targets};
use orders_domain::compare::field_diffs;
pub use orders_domain::compare::{Compared, DayDiff, FieldDiff, RowDiff};
use orders_domain::projection::DailySales;
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// What a repair rewrote in `ours` from `fresh`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Repaired {
    pub orders: u64,
    pub trackers: u64,
    pub days: u64,
}

/// Rewrites in the generations `ours` (in `conn`) the rows `compared` found different
/// from `fresh`: each such order's view and tracker and each such day as `fresh` has
/// them, or gone where `fresh` has none. Inside the caller's transaction.
pub(crate) fn repair(
    conn: &Connection,
    ours: Targets,
    fresh_conn: &Connection,
    fresh: Targets,
    compared: &Compared,
) -> Result<Repaired, DbError> {
    let mut done = Repaired::default();
    let copy = |table: &str, columns: &str, a: u32, b: u32, ids: &[RowDiff]| {
        let mut n = 0;
        for d in ids {
            let row: Option<Vec<rusqlite::types::Value>> = fresh_conn
                .prepare_cached(&format!(
                    "SELECT {columns} FROM {table}_g{b} WHERE order_id = ?1"
                ))?
                .query_row([&d.order_id], |r| {
                    (0..r.as_ref().column_count())
                        .map(|i| r.get(i))
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .optional()?;
            match row {
                Some(values) => {
                    let marks = vec!["?"; values.len()].join(", ");
                    conn.prepare_cached(&format!(
                        "INSERT OR REPLACE INTO {table}_g{a} ({columns}) VALUES ({marks})"
                    ))?
                    .execute(rusqlite::params_from_iter(values))?;
                }
                None => {
                    conn.prepare_cached(&format!("DELETE FROM {table}_g{a} WHERE order_id = ?1"))?
                        .execute([&d.order_id])?;
                }
            }
            n += 1;
        }
        Ok::<u64, DbError>(n)
    };
    if let (Some(a), Some(b)) = (ours.orders, fresh.orders) {
        let columns = "order_id, version, customer_id, placed_at, view";
        done.orders = copy("orders", columns, a, b, &compared.orders)?;
    }
    if let (Some(a), Some(b)) = (ours.daily_sales, fresh.daily_sales) {
        let columns = "order_id, version, tracker";
        done.trackers = copy("sales_trackers", columns, a, b, &compared.trackers)?;
        for d in &compared.days {
            match &d.log {
                Some(day) => projection::save_day(conn, a, day)?,
                None => {
                    conn.prepare_cached(&format!(
                        "DELETE FROM daily_sales_g{a} WHERE date = ?1 AND currency = ?2"
                    ))?
                    .execute([&d.date, &d.currency])?;
                }
            }
            done.days += 1;
        }
    }
    Ok(done)
}

/// Compares the generations `ours` (in `conn`) with `fresh` (in `fresh_conn`), of the
/// projections both select. With `only`, just those orders' rows (the days always).
pub(crate) fn compare(
    conn: &Connection,
    ours: Targets,
    fresh_conn: &Connection,
    fresh: Targets,
    only: Option<&BTreeSet<String>>,
) -> Result<Compared, DbError> {
    let mut out = Compared::default();
    if let (Some(a), Some(b)) = (ours.orders, fresh.orders) {
        let sql = |g: u32| {
            format!("SELECT order_id, version, view, customer_id, placed_at FROM orders_g{g}")
        };
        let (diffs, fresh_rows) = rows(conn, &sql(a), fresh_conn, &sql(b), only, view_row)?;
        out.orders = diffs;
        out.orders_in_log = fresh_rows;
    }
    if let (Some(a), Some(b)) = (ours.daily_sales, fresh.daily_sales) {
        let sql = |g: u32| format!("SELECT order_id, version, tracker FROM sales_trackers_g{g}");
        out.trackers = rows(conn, &sql(a), fresh_conn, &sql(b), only, tracker_row)?.0;
        let (days, fresh_days) = days(conn, a, fresh_conn, b)?;
        out.days = days;
        out.days_in_log = fresh_days;
    }
    Ok(out)
}

/// A row keyed by order id: its version, its JSON as stored, and the columns kept
/// beside it (derived from it: a row whose columns disagree is as wrong as a wrong view).
struct Row {
    order_id: String,
    version: u64,
    json: String,
    columns: Option<(String, i64)>,
}

impl Row {
    /// The row as one JSON value, its columns folded in, to name what differs.
    fn value(&self) -> Value {
        let mut value = serde_json::from_str(&self.json).unwrap_or_else(
            |e| serde_json::json!({"(unreadable JSON)": e.to_string(), "(text)": self.json}),
        );
        if let (Value::Object(m), Some((customer_id, placed_at))) = (&mut value, &self.columns) {
            m.insert("(customer_id column)".into(), customer_id.clone().into());
            m.insert("(placed_at column)".into(), (*placed_at).into());
        }
        value
    }

    /// The same row: the same text, or (written by another path) the same JSON.
    fn same_as(&self, other: &Row) -> bool {
        self.version == other.version
            && self.columns == other.columns
            && (self.json == other.json || self.value() == other.value())
    }
}

fn version(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn view_row(r: &rusqlite::Row<'_>) -> Result<Row, DbError> {
    Ok(Row {
        order_id: r.get(0)?,
        version: version(r.get(1)?),
        json: r.get(2)?,
        columns: Some((r.get(3)?, r.get(4)?)),
    })
}

fn tracker_row(r: &rusqlite::Row<'_>) -> Result<Row, DbError> {
    Ok(Row {
        order_id: r.get(0)?,
        version: version(r.get(1)?),
        json: r.get(2)?,
        columns: None,
    })
}

/// Merges two tables keyed by order id; returns the rows that differ and how many rows
/// the fresh side has.
fn rows(
    conn: &Connection,
    sql: &str,
    fresh_conn: &Connection,
    fresh_sql: &str,
    only: Option<&BTreeSet<String>>,
    read: fn(&rusqlite::Row<'_>) -> Result<Row, DbError>,
) -> Result<(Vec<RowDiff>, u64), DbError> {
    let mut diffs = Vec::new();
    let mut fresh_rows = 0;
    let mut pair = |ours: Option<Row>, fresh: Option<Row>| {
        fresh_rows += u64::from(fresh.is_some());
        if let Some(d) = row_diff(ours, fresh) {
            diffs.push(d);
        }
    };
    match only {
        Some(ids) => {
            let one = |c: &Connection, sql: &str, id: &str| -> Result<Option<Row>, DbError> {
                let mut stmt = c.prepare_cached(&format!("{sql} WHERE order_id = ?1"))?;
                let row = stmt
                    .query_row([id], |r| Ok(read(r)))
                    .optional()?
                    .transpose()?;
                Ok(row)
            };
            for id in ids {
                pair(one(conn, sql, id)?, one(fresh_conn, fresh_sql, id)?);
            }
        }
        None => {
            let mut a = conn.prepare(&format!("{sql} ORDER BY order_id"))?;
            let mut b = fresh_conn.prepare(&format!("{fresh_sql} ORDER BY order_id"))?;
            let mut a = a.query([])?;
            let mut b = b.query([])?;
            let mut next_a = next(&mut a, read)?;
            let mut next_b = next(&mut b, read)?;
            loop {
                let order = match (&next_a, &next_b) {
                    (None, None) => break,
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(x), Some(y)) => x.order_id.cmp(&y.order_id),
                };
                match order {
                    Ordering::Less => {
                        pair(next_a.take(), None);
                        next_a = next(&mut a, read)?;
                    }
                    Ordering::Greater => {
                        pair(None, next_b.take());
                        next_b = next(&mut b, read)?;
                    }
                    Ordering::Equal => {
                        pair(next_a.take(), next_b.take());
                        next_a = next(&mut a, read)?;
                        next_b = next(&mut b, read)?;
                    }
                }
            }
        }
    }
    Ok((diffs, fresh_rows))
}

fn next(
    rows: &mut rusqlite::Rows<'_>,
    read: fn(&rusqlite::Row<'_>) -> Result<Row, DbError>,
) -> Result<Option<Row>, DbError> {
    rows.next()?.map(read).transpose()
}

fn row_diff(ours: Option<Row>, fresh: Option<Row>) -> Option<RowDiff> {
    let (order_id, ours_version, fresh_version) = match (&ours, &fresh) {
        (None, None) => return None,
        (Some(a), Some(b)) if a.same_as(b) => return None,
        (Some(a), b) => (
            a.order_id.clone(),
            Some(a.version),
            b.as_ref().map(|b| b.version),
        ),
        (None, Some(b)) => (b.order_id.clone(), None, Some(b.version)),
    };
    let fields = match (&ours, &fresh) {
        (Some(a), Some(b)) => field_diffs(&a.value(), &b.value()),
        _ => Vec::new(),
    };
    Some(RowDiff {
        order_id,
        read_model_version: ours_version,
        log_version: fresh_version,
        fields,
    })
}

fn days(
    conn: &Connection,
    ours: u32,
    fresh_conn: &Connection,
    fresh: u32,
) -> Result<(Vec<DayDiff>, u64), DbError> {
    // A day is a few rows a currency: both sides fit in memory.
    let by_key =
        |rows: Vec<DailySales>| -> std::collections::BTreeMap<(String, String), DailySales> {
            rows.into_iter()
                .map(|d| ((d.date.clone(), d.currency.clone()), d))
                .collect()
        };
    let mut a = by_key(projection::daily_sales(conn, ours)?);
    let mut b = by_key(projection::daily_sales(fresh_conn, fresh)?);
    let fresh_days = b.len() as u64;
    let keys: BTreeSet<(String, String)> = a.keys().chain(b.keys()).cloned().collect();
    let diffs = keys
        .into_iter()
        .filter_map(|k| {
            let (x, y) = (a.remove(&k), b.remove(&k));
            (x != y).then_some(DayDiff {
                date: k.0,
                currency: k.1,
                read_model: x,
                log: y,
            })
        })
        .collect();
    Ok((diffs, fresh_days))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(json: &str, customer: &str) -> Row {
        Row {
            order_id: "o-1".into(),
            version: 2,
            json: json.into(),
            columns: Some((customer.into(), 7)),
        }
    }

    #[test]
    fn rows_are_the_same_by_text_or_by_value_and_their_columns_count() {
        let a = row(r#"{"a":1,"b":[1,2]}"#, "c-1");
        assert!(a.same_as(&row(r#"{"a":1,"b":[1,2]}"#, "c-1")));
        assert!(
            a.same_as(&row(r#"{"b": [1, 2], "a": 1}"#, "c-1")),
            "another key order"
        );
        assert!(!a.same_as(&row(r#"{"a":1,"b":[2,1]}"#, "c-1")));
        let moved = row(r#"{"a":1,"b":[1,2]}"#, "c-2");
        assert!(!a.same_as(&moved), "the customer column differs");
        let diff = row_diff(Some(a), Some(moved)).expect("a difference");
        assert_eq!(diff.fields.len(), 1);
        assert_eq!(diff.fields[0].path, "(customer_id column)");
        assert!(row_diff(None, None).is_none());
    }
}
