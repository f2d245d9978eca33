//! Console page: the sales report (the `daily_sales` read model) over a range of days,
//! with a total per currency; the same report as `orders sales`.

use super::orders::{bad_request, field, known_params};
use super::{Console, State, failure, page};
use crate::sales::{self, SalesFilter, SalesReport};
use axum::Router;
use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use orders_domain::ports::ReadModels;
use std::collections::HashMap;
use std::sync::Arc;

const ACTIVE: &str = "/console/sales";

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route(ACTIVE, get(show))
}

async fn show(
    axum::extract::State(console): State,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = known_params(ACTIVE, &params, &["from", "to", "currency"]) {
        return r;
    }
    let get = |k: &str| field(&params, k);
    let filter = match SalesFilter::parse(get("from"), get("to"), get("currency")) {
        Ok(f) => f,
        Err(e) => return bad_request(ACTIVE, e.field, &e.message),
    };
    let rows = match console.reads.daily_sales().await {
        Ok(r) => r,
        Err(e) => return failure(ACTIVE, e),
    };
    let report = sales::report(rows, &filter);
    page("Sales", ACTIVE, body(&filter, &report)).into_response()
}

fn body(filter: &SalesFilter, r: &SalesReport) -> Markup {
    let money = sales::money;
    html! {
        h1 { "Sales" }
        form.filters method="get" action=(ACTIVE) {
            label for="from" { "From" }
            input #from type="date" name="from" value=[filter.from.as_deref()];
            label for="to" { "To" }
            input #to type="date" name="to" value=[filter.to.as_deref()];
            label for="currency" { "Currency" }
            input #currency type="text" name="currency" size="4" maxlength="3" placeholder="EUR"
                value=[filter.currency.map(|c| c.code())] autocomplete="off";
            button type="submit" { "Show" }
            @if *filter != SalesFilter::default() { a href=(ACTIVE) { "Every day" } }
        }
        p.muted {
            "Orders placed and cancelled per day (UTC) and currency, "
            (filter.describe())
            ", from the " code { "daily_sales" } " read model (rebuilt by "
            code { "orders replay --projection daily_sales" } ")."
        }
        @if r.days.is_empty() {
            p.card { "No sales." }
        } @else {
            table.sales {
                thead { tr {
                    th { "Day" } th { "Currency" } th.num { "Placed" } th.num { "Amount placed" }
                    th.num { "Cancelled" } th.num { "Amount cancelled" } th.num { "Net" }
                } }
                tbody {
                    @for d in &r.days {
                        tr {
                            td { (d.date) } td { (d.currency) } td.num { (d.orders_placed) }
                            td.num { (money(d.amount_placed, &d.currency)) }
                            td.num { (d.orders_cancelled) }
                            td.num { (money(d.amount_cancelled, &d.currency)) }
                            td.num { (money(d.net_amount, &d.currency)) }
                        }
                    }
                }
                tfoot {
                    @for t in &r.totals {
                        tr.total {
                            th { "Total" } td { (t.currency) } td.num { (t.orders_placed) }
                            td.num { (money(t.amount_placed, &t.currency)) }
                            td.num { (t.orders_cancelled) }
                            td.num { (money(t.amount_cancelled, &t.currency)) }
                            td.num { (money(t.net_amount, &t.currency)) }
                        }
                    }
                }
            }
        }
    }
}
