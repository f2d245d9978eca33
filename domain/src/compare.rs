//! What differs between a read model and the same read model folded afresh from the log
//! (`orders projections verify`, locally and on DynamoDB): the rows, the fields and the
//! days, as both stores report them. Pure: the stores find the rows, this names them.

use crate::projection::{DailySales, ProjectionName};
use serde_json::Value;
use std::collections::BTreeSet;

/// Field differences kept per row: enough to see what went wrong.
const FIELDS_PER_ROW: usize = 8;

/// One row (an order's view, or its sales tracker) that is not the same on both sides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RowDiff {
    pub order_id: String,
    /// The last version the read model applied; `None`: it has no row for the order.
    pub read_model_version: Option<u64>,
    /// The version folded from the log; `None`: the log has no such order.
    pub log_version: Option<u64>,
    /// What differs, field by field (the first few), where both have a row.
    pub fields: Vec<FieldDiff>,
}

/// A value that is not the same: `path` as `status`, `items[0].quantity`; `null` where a
/// side lacks it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldDiff {
    pub path: String,
    pub read_model: Value,
    pub log: Value,
}

/// A day and currency of `daily_sales` that is not the same on both sides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DayDiff {
    pub date: String,
    pub currency: String,
    pub read_model: Option<DailySales>,
    pub log: Option<DailySales>,
}

/// An event of the log that no read model can hold: it does not decode, or follows one
/// that does not. `key` names it as the store does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Undecodable {
    pub key: String,
    pub reason: String,
}

/// What differs between two generations (empty: the same).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Compared {
    /// `orders`: the order views.
    pub orders: Vec<RowDiff>,
    /// `daily_sales`: the per-order trackers (what a later cancellation subtracts).
    pub trackers: Vec<RowDiff>,
    /// `daily_sales`: the days.
    pub days: Vec<DayDiff>,
    /// Rows of the fresh side (orders with a view; with `only`, those of `only`).
    pub orders_in_log: u64,
    /// Days and currencies of the fresh side.
    pub days_in_log: u64,
}

impl Compared {
    /// Rows that differ, of every kind.
    pub fn differences(&self) -> usize {
        self.orders.len() + self.trackers.len() + self.days.len()
    }

    /// The projections whose rows differ.
    pub fn differing(&self) -> Vec<ProjectionName> {
        let mut out = vec![];
        if !self.orders.is_empty() {
            out.push(ProjectionName::Orders);
        }
        if !self.trackers.is_empty() || !self.days.is_empty() {
            out.push(ProjectionName::DailySales);
        }
        out
    }

    /// The orders with a view or a tracker that differs.
    pub fn order_ids(&self) -> BTreeSet<String> {
        self.orders
            .iter()
            .chain(&self.trackers)
            .map(|d| d.order_id.clone())
            .collect()
    }
}

/// The paths where `a` (the read model's) and `b` (the log's) differ, the first
/// [`FIELDS_PER_ROW`] of them, depth first.
pub fn field_diffs(a: &Value, b: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<FieldDiff>) {
    if out.len() >= FIELDS_PER_ROW || a == b {
        return;
    }
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                walk(va, vb, child(k), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                walk(va, vb, format!("{path}[{i}]"), out);
            }
        }
        _ => out.push(FieldDiff {
            path: if path.is_empty() {
                "(row)".into()
            } else {
                path
            },
            read_model: a.clone(),
            log: b.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_differences_name_their_paths() {
        let out = field_diffs(
            &json!({"status": "CONFIRMED", "items": [{"q": 1}, {"q": 2}], "a": {"b": 1}}),
            &json!({"status": "SHIPPED", "items": [{"q": 1}, {"q": 3}], "a": {"b": 1, "c": 2}}),
        );
        let paths: Vec<&str> = out.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.c", "items[1].q", "status"]);
        assert_eq!(out[2].read_model, json!("CONFIRMED"));
        assert_eq!(out[2].log, json!("SHIPPED"));
        assert_eq!(out[0].read_model, Value::Null);

        let out = field_diffs(&json!({"items": [1]}), &json!({"items": [1, 2]}));
        assert_eq!(out.len(), 1, "arrays of other lengths differ as a whole");
        assert_eq!(out[0].path, "items");
        assert_eq!(field_diffs(&json!(1), &json!(2))[0].path, "(row)");
    }
}
