//! The sales report as people read it: amounts with their currency, and the report as
//! text (`orders sales`). The report itself is the domain's ([`orders_domain::sales`]).

use orders_domain::money::{Currency, Money};
pub use orders_domain::sales::*;

/// An amount in minor units of `currency` as people read it: `25.00 EUR`.
pub fn money(amount: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Some(c) => Money::new(amount, c).to_string(),
        None => format!("{amount} {currency}"),
    }
}

/// The report as text: a line per day and currency, then the totals.
pub fn render_text(r: &SalesReport) -> String {
    let mut out = format!(
        "{:<10}  {:<8}  {:>6}  {:>16}  {:>9}  {:>16}  {:>16}\n",
        "date", "currency", "placed", "amount placed", "cancelled", "amount cancelled", "net"
    );
    let mut line = |date: &str, c: &str, placed: i64, ap: i64, cancelled: i64, ac: i64, net| {
        out.push_str(&format!(
            "{date:<10}  {c:<8}  {placed:>6}  {:>16}  {cancelled:>9}  {:>16}  {:>16}\n",
            money(ap, c),
            money(ac, c),
            money(net, c)
        ));
    };
    for d in &r.days {
        line(
            &d.date,
            &d.currency,
            d.orders_placed,
            d.amount_placed,
            d.orders_cancelled,
            d.amount_cancelled,
            d.net_amount,
        );
    }
    for t in &r.totals {
        line(
            "total",
            &t.currency,
            t.orders_placed,
            t.amount_placed,
            t.orders_cancelled,
            t.amount_cancelled,
            t.net_amount,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_a_line_per_day_and_a_total_per_currency() {
        let mut day = orders_domain::projection::DailySales::new("2026-11-01", "EUR");
        day.orders_placed = 3;
        day.amount_placed = 750;
        day.orders_cancelled = 1;
        day.amount_cancelled = 100;
        day.net_amount = 650;
        let text = render_text(&report(vec![day], &SalesFilter::default()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].starts_with("2026-11-01  EUR") && lines[1].ends_with("6.50 EUR"));
        assert!(lines[2].starts_with("total       EUR"), "{text}");
        assert_eq!(money(1500, "JPY"), "1500 JPY");
        assert_eq!(
            money(5, "XYZ"),
            "5 XYZ",
            "an unknown code is shown as stored"
        );
    }
}
