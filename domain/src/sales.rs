//! The sales report: the `daily_sales` read model over a range of days, with a total per
//! currency. `GET /sales/daily`, `orders sales` and the console's sales page show it; the
//! read model itself is the projector's (and a replay's) to build.

use crate::Timestamp;
use crate::money::Currency;
use crate::projection::DailySales;
use serde::Serialize;

/// Which days and currency to show; `None` is no bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalesFilter {
    pub from: Option<String>,
    pub to: Option<String>,
    pub currency: Option<Currency>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FilterError {
    pub field: &'static str,
    pub message: String,
}

impl SalesFilter {
    /// The filter from its text form (CLI flags, query parameters), each part checked.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        currency: Option<&str>,
    ) -> Result<SalesFilter, FilterError> {
        let day = |field, text: Option<&str>| {
            text.map(|t| {
                parse_day(t).ok_or_else(|| FilterError {
                    field,
                    message: format!("`{t}` is not a day (YYYY-MM-DD)"),
                })
            })
            .transpose()
        };
        let filter = SalesFilter {
            from: day("from", from)?,
            to: day("to", to)?,
            currency: currency
                .map(|c| {
                    Currency::parse(&c.to_ascii_uppercase()).ok_or_else(|| FilterError {
                        field: "currency",
                        message: format!("`{c}` is not an ISO 4217 currency code"),
                    })
                })
                .transpose()?,
        };
        if let (Some(from), Some(to)) = (&filter.from, &filter.to)
            && from > to
        {
            return Err(FilterError {
                field: "to",
                message: format!("{to} is before {from}"),
            });
        }
        Ok(filter)
    }

    fn keeps(&self, day: &DailySales) -> bool {
        self.from.as_ref().is_none_or(|f| day.date >= *f)
            && self.to.as_ref().is_none_or(|t| day.date <= *t)
            && self.currency.is_none_or(|c| day.currency == c.code())
    }

    /// The days from `from` to `to` (or to `today`), when there is a `from` and they are
    /// at most [`MAX_LISTED_DAYS`]: a store that keeps a day's sales together reads just
    /// those. `None`: read them all.
    pub fn days(&self, today: &str) -> Option<Vec<String>> {
        const DAY_MS: i64 = 86_400_000;
        let at = |day: &str| Timestamp::parse(&format!("{day}T00:00:00Z")).map(|t| t.millis());
        let first = at(self.from.as_deref()?)?;
        let last = at(self.to.as_deref().unwrap_or(today))?;
        // A `from` after today has no days (`to` before `from` is refused by `parse`).
        let count = ((last - first) / DAY_MS + 1).max(0);
        if count > MAX_LISTED_DAYS {
            return None;
        }
        Some(
            (0..count)
                .map(|i| Timestamp::from_millis(first + i * DAY_MS).date())
                .collect(),
        )
    }

    /// "from 2026-11-01 to 2026-11-30 in EUR", "every day", for messages.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        match (&self.from, &self.to) {
            (Some(f), Some(t)) => parts.push(format!("from {f} to {t}")),
            (Some(f), None) => parts.push(format!("from {f}")),
            (None, Some(t)) => parts.push(format!("up to {t}")),
            (None, None) => parts.push("every day".to_string()),
        }
        if let Some(c) = self.currency {
            parts.push(format!("in {c}"));
        }
        parts.join(" ")
    }
}

/// The longest range [`SalesFilter::days`] lists (a year and a day).
pub const MAX_LISTED_DAYS: i64 = 366;

/// A calendar day as `YYYY-MM-DD`, or `None` (no February 30th).
pub fn parse_day(text: &str) -> Option<String> {
    let well_formed = text.len() == 10 && Timestamp::parse(&format!("{text}T00:00:00Z")).is_some();
    well_formed.then(|| text.to_string())
}

/// One currency's sums over the days of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SalesTotal {
    pub currency: String,
    pub orders_placed: i64,
    pub amount_placed: i64,
    pub orders_cancelled: i64,
    pub amount_cancelled: i64,
    pub net_amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SalesReport {
    pub from: Option<String>,
    pub to: Option<String>,
    pub currency: Option<String>,
    /// Day by day (oldest first), a row per currency sold in that day.
    pub days: Vec<DailySales>,
    /// Per currency (in code order), over `days`.
    pub totals: Vec<SalesTotal>,
}

/// The report of the read model's `rows` that `filter` keeps.
pub fn report(rows: Vec<DailySales>, filter: &SalesFilter) -> SalesReport {
    let mut days: Vec<DailySales> = rows.into_iter().filter(|d| filter.keeps(d)).collect();
    days.sort_by(|a, b| (&a.date, &a.currency).cmp(&(&b.date, &b.currency)));
    let mut totals: std::collections::BTreeMap<&str, SalesTotal> = Default::default();
    for d in &days {
        let t = totals
            .entry(d.currency.as_str())
            .or_insert_with(|| SalesTotal {
                currency: d.currency.clone(),
                orders_placed: 0,
                amount_placed: 0,
                orders_cancelled: 0,
                amount_cancelled: 0,
                net_amount: 0,
            });
        t.orders_placed += d.orders_placed;
        t.amount_placed += d.amount_placed;
        t.orders_cancelled += d.orders_cancelled;
        t.amount_cancelled += d.amount_cancelled;
        t.net_amount += d.net_amount;
    }
    let totals = totals.into_values().collect();
    SalesReport {
        from: filter.from.clone(),
        to: filter.to.clone(),
        currency: filter.currency.map(|c| c.code().to_string()),
        days,
        totals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str, currency: &str, placed: i64, amount: i64, cancelled: i64) -> DailySales {
        let mut d = DailySales::new(date, currency);
        d.orders_placed = placed;
        d.amount_placed = amount;
        d.orders_cancelled = cancelled;
        d.amount_cancelled = cancelled * 100;
        d.net_amount = amount - cancelled * 100;
        d
    }

    #[test]
    fn a_report_keeps_the_range_and_currency_and_sums_per_currency() {
        let rows = vec![
            day("2026-11-03", "EUR", 2, 500, 1),
            day("2026-11-01", "EUR", 1, 250, 0),
            day("2026-11-02", "JPY", 3, 4500, 0),
            day("2026-10-31", "EUR", 9, 9000, 0),
        ];
        let all = report(rows.clone(), &SalesFilter::default());
        let dates: Vec<_> = all.days.iter().map(|d| d.date.as_str()).collect();
        assert_eq!(
            dates,
            ["2026-10-31", "2026-11-01", "2026-11-02", "2026-11-03"]
        );
        assert_eq!(all.totals.len(), 2);
        assert_eq!(
            (all.totals[0].orders_placed, all.totals[0].net_amount),
            (12, 9650)
        );
        let filter = SalesFilter::parse(Some("2026-11-01"), Some("2026-11-30"), Some("EUR"))
            .expect("filter");
        let november = report(rows, &filter);
        assert_eq!(november.days.len(), 2);
        assert_eq!(november.totals.len(), 1);
        let eur = &november.totals[0];
        assert_eq!(
            (
                eur.orders_placed,
                eur.amount_placed,
                eur.orders_cancelled,
                eur.net_amount
            ),
            (3, 750, 1, 650)
        );
        assert_eq!(filter.describe(), "from 2026-11-01 to 2026-11-30 in EUR");
    }

    #[test]
    fn a_range_from_a_day_lists_its_days_up_to_a_year() {
        let f = |from, to| SalesFilter::parse(from, to, None).expect("filter");
        assert_eq!(
            f(Some("2028-02-27"), Some("2028-03-01")).days("2030-01-01"),
            Some(vec![
                "2028-02-27".to_string(),
                "2028-02-28".into(),
                "2028-02-29".into(),
                "2028-03-01".into()
            ])
        );
        assert_eq!(
            f(Some("2026-11-29"), None)
                .days("2026-11-30")
                .map(|d| d.len()),
            Some(2),
            "up to today"
        );
        assert_eq!(f(None, Some("2026-11-29")).days("2026-11-30"), None);
        assert_eq!(
            f(Some("2025-01-01"), Some("2026-01-01"))
                .days("x")
                .map(|d| d.len()),
            Some(366)
        );
        assert_eq!(f(Some("2024-01-01"), Some("2026-01-01")).days("x"), None);
        assert_eq!(
            f(Some("2026-12-05"), None).days("2026-11-30"),
            Some(vec![]),
            "a from after today has no days"
        );
    }

    #[test]
    fn bad_filters_name_their_part() {
        let field = |f: Option<&str>, t: Option<&str>, c: Option<&str>| {
            SalesFilter::parse(f, t, c).err().map(|e| e.field)
        };
        assert_eq!(field(Some("2026-02-30"), None, None), Some("from"));
        assert_eq!(field(None, Some("2026-11-1"), None), Some("to"));
        assert_eq!(field(None, Some("yesterday"), None), Some("to"));
        assert_eq!(field(None, None, Some("EURO")), Some("currency"));
        assert_eq!(field(None, None, Some("eur")), None, "any case");
        assert_eq!(
            field(Some("2026-11-02"), Some("2026-11-01"), None),
            Some("to")
        );
        assert_eq!(field(Some("2026-11-01"), Some("2026-11-01"), None), None);
    }
}
