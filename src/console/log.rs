//! Console page: the log, every order's events in the order they were appended — the
//! newest by default, or from a moment on, of one type if asked; the same as `orders log`.

use super::orders::{bad_request, field, known_params, order_link};
use super::{Console, State, failure, page};
use axum::Router;
use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use orders_domain::{EventEnvelope, OrderEvent, Timestamp};
use orders_local::store::events::LogQuery;
use std::collections::HashMap;
use std::sync::Arc;

const ACTIVE: &str = "/console/log";
/// Events a page shows.
const PAGE: usize = 100;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route(ACTIVE, get(show))
}

async fn show(
    axum::extract::State(console): State,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = known_params(ACTIVE, &params, &["since", "until", "type"]) {
        return r;
    }
    let get = |k: &str| field(&params, k);
    let mut times = [None, None];
    for (slot, name) in times.iter_mut().zip(["since", "until"]) {
        if let Some(v) = get(name) {
            match Timestamp::parse(v) {
                Some(t) => *slot = Some(t),
                None => return bad_request(ACTIVE, name, "is not an RFC 3339 UTC time"),
            }
        }
    }
    let [since, until] = times;
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return bad_request(ACTIVE, "until", "is before since");
    }
    let event_type = match get("type") {
        None => None,
        Some(t) => match OrderEvent::TYPES.iter().find(|k| **k == t) {
            Some(k) => Some(k.to_string()),
            None => return bad_request(ACTIVE, "type", "is not an event type"),
        },
    };
    let query = LogQuery {
        since,
        until,
        event_type,
        limit: PAGE,
        up_to_seq: None,
    };
    match console.events.log(&query).await {
        Ok(events) => page("Log", ACTIVE, body(&query, &events)).into_response(),
        Err(e) => failure(ACTIVE, e),
    }
}

fn body(q: &LogQuery, events: &[EventEnvelope]) -> Markup {
    let filtered = q.since.is_some() || q.until.is_some() || q.event_type.is_some();
    html! {
        h1 { "Log" }
        form.filters method="get" action=(ACTIVE) {
            label for="since" { "Since" }
            input #since type="text" name="since" size="24" placeholder="2026-11-29T10:00:00Z"
                value=[q.since.map(|t| t.to_string())] autocomplete="off";
            label for="until" { "Until" }
            input #until type="text" name="until" size="24"
                value=[q.until.map(|t| t.to_string())] autocomplete="off";
            label for="type" { "Type" }
            select #type name="type" {
                option value="" { "any" }
                @for t in OrderEvent::TYPES {
                    option value=(t) selected[q.event_type.as_deref() == Some(t)] { (t) }
                }
            }
            button type="submit" { "Show" }
            @if filtered { a href=(ACTIVE) { "The newest" } }
        }
        p.muted {
            @if q.since.is_some() {
                "The first " (PAGE) " events from then on"
            } @else {
                "The newest " (PAGE) " events"
            }
            ", in the order they were appended (as " code { "orders log" } " prints them)."
        }
        @if events.is_empty() {
            p.card { "No events." }
        } @else {
            table.log {
                thead { tr {
                    th { "Occurred (UTC)" } th { "Order" } th.num { "Version" } th { "Type" }
                    th { "Correlation id" }
                } }
                tbody {
                    @for e in events {
                        tr {
                            td { (e.occurred_at) }
                            td { a href=(order_link(&e.aggregate_id)) { code { (e.aggregate_id) } } }
                            td.num { (e.version) }
                            td { (e.event_type) }
                            td { code { (e.correlation_id) } }
                        }
                    }
                }
            }
        }
    }
}
