//! Console pages: orders. The list (newest first, or one customer's), and an order with
//! its view, its event timeline from the log, and links to its execution, email and
//! messages.

use super::{Console, State, failure, not_found, page};
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use orders_domain::Timestamp;
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::Channel;
use orders_domain::ports::{EventStore, Page, ReadModelError, ReadModels};
use orders_domain::projection::{AsOf, OrderSummary, OrderView, view_as_of};
use orders_local::workflow::services::{self, Related};
use std::collections::HashMap;
use std::sync::Arc;

const ACTIVE: &str = "/console/orders";
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 200;
/// Longer than any id this system makes: anything longer is not an order.
const MAX_ID: usize = 128;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/console/orders", get(list))
        .route("/console/orders/{id}", get(detail))
}

// ---- helpers shared with the message pages ----

/// A page naming the query parameter that is wrong, with status 400.
pub(super) fn bad_request(active: &str, param: &str, detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        page(
            "Bad request",
            active,
            html! {
                h1 { "Bad request" }
                p { "Query parameter " code { (param) } " " (detail) "." }
            },
        ),
    )
        .into_response()
}

/// A form field's value: an empty field of a filter form is no bound.
pub(super) fn field<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Refuses query parameters the page does not know (a typo should not silently do nothing).
// The error is the finished 400 page, returned by the handler as is.
#[allow(clippy::result_large_err)]
pub(super) fn known_params(
    active: &str,
    params: &HashMap<String, String>,
    known: &[&str],
) -> Result<(), Response> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad_request(
            active,
            k,
            &format!("is not known here (known: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// `limit`: 1..=`max`, `default` when absent.
// The error is the finished 400 page, returned by the handler as is.
#[allow(clippy::result_large_err)]
pub(super) fn limit_param(
    active: &str,
    params: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, Response> {
    match params.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                bad_request(
                    active,
                    "limit",
                    &format!("must be an integer between 1 and {max}"),
                )
            }),
    }
}

/// A time in milliseconds since the epoch, as the API writes times.
pub(super) fn ts(millis: i64) -> String {
    Timestamp::from_millis(millis).to_string()
}

/// An enum's wire name (`"EMAIL"`, `"SENT"`): what the API shows, so the console agrees.
pub(super) fn label(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// JSON text pretty-printed when it parses, as is when it does not.
pub(super) fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

/// A URL path segment or query value, percent-encoded.
pub(super) use orders_handlers::links::encode_segment as seg;

pub(super) fn order_link(id: &str) -> String {
    format!("/console/orders/{}", seg(id))
}

pub(super) fn execution_link(name: &str) -> String {
    format!("/console/executions/{}", seg(name))
}

/// The order id a message body mentions (`"order_id": "…"` in the workflow's messages).
pub(super) fn order_id_in(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let direct = v.get("order_id").and_then(serde_json::Value::as_str);
    // SNS deliveries to a queue wrap the message in a notification envelope.
    let wrapped = || {
        v.get("Message")
            .and_then(serde_json::Value::as_str)
            .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
            .and_then(|m| {
                m.get("order_id")
                    .and_then(|o| o.as_str().map(str::to_string))
            })
    };
    direct.map(str::to_string).or_else(wrapped)
}

// ---- the list ----

async fn list(
    axum::extract::State(console): State,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = known_params(ACTIVE, &params, &["customer", "limit", "cursor"]) {
        return r;
    }
    let limit = match limit_param(ACTIVE, &params, DEFAULT_LIMIT, MAX_LIMIT) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let customer = params
        .get("customer")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty());
    if let Some(c) = customer
        && c.len() > MAX_ID
    {
        return bad_request(ACTIVE, "customer", "is longer than any customer id");
    }
    let cursor = params.get("cursor").map(String::as_str);
    let found = match customer {
        Some(c) => console.reads.customer_orders(c, limit, cursor).await,
        None => console.reads.recent_orders(limit, cursor).await,
    };
    let page_of = match found {
        Ok(p) => p,
        Err(ReadModelError::InvalidCursor) => {
            return bad_request(ACTIVE, "cursor", "is not a cursor this page made");
        }
        Err(e) => return failure(ACTIVE, e),
    };
    page("Orders", ACTIVE, list_body(customer, limit, &page_of)).into_response()
}

fn list_body(customer: Option<&str>, limit: usize, p: &Page<OrderSummary>) -> Markup {
    let next = p.next_cursor.as_ref().map(|c| {
        let mut q = format!("?limit={limit}&cursor={}", seg(c));
        if let Some(cu) = customer {
            q.push_str(&format!("&customer={}", seg(cu)));
        }
        q
    });
    html! {
        h1 { "Orders" }
        form.filters method="get" action="/console/orders" {
            label for="customer" { "Customer id" }
            input #customer type="search" name="customer" value=[customer]
                placeholder="c-123" autocomplete="off";
            button type="submit" { "Search" }
            @if customer.is_some() { a href="/console/orders" { "All orders" } }
        }
        @if let Some(c) = customer {
            p.muted {
                "Orders of customer " code { (c) } ", newest first."
                @if c.contains('@') {
                    " Orders are indexed by customer id, not email: search by the id."
                }
            }
        } @else {
            p.muted { "Every order, newest first." }
        }
        @if p.items.is_empty() {
            p.card { "No orders." }
        } @else {
            table.orders {
                thead { tr { th { "Order" } th { "Customer" } th { "Status" } th { "Total" } th { "Placed" } th { "Version" } } }
                tbody {
                    @for o in &p.items {
                        tr {
                            td { a href=(order_link(&o.order_id)) { code { (o.order_id) } } }
                            td { a href={ "/console/orders?customer=" (seg(&o.customer_id)) } { (o.customer_id) } }
                            td { span class={ "status " (o.status) } { (o.status) } }
                            td { (o.total) }
                            td { (o.placed_at) }
                            td { (o.version) }
                        }
                    }
                }
            }
        }
        div.pager {
            @if p.next_cursor.is_some() || customer.is_some() {
                a href={ "/console/orders" @if let Some(c) = customer { "?customer=" (seg(c)) } } { "First page" }
            }
            @if let Some(q) = next { a rel="next" href={ "/console/orders" (q) } { "Next page" } }
        }
    }
}

// ---- one order ----

async fn detail(
    axum::extract::State(console): State,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Ok(Path(id)) = path else {
        return not_found(ACTIVE, "That is not an order id.");
    };
    if id.is_empty() || id.len() > MAX_ID {
        return not_found(ACTIVE, "That is not an order id.");
    }
    if let Err(r) = known_params(ACTIVE, &params, &["version"]) {
        return r;
    }
    let as_of = match params.get("version").map(|v| AsOf::version_from(v)) {
        None => None,
        Some(Some(AsOf::Version(v))) => Some(v),
        Some(_) => return bad_request(ACTIVE, "version", "must be a version number of 1 or more"),
    };
    let (view, events) = tokio::join!(console.reads.order(&id), console.events.load(&id));
    let view = match view {
        Ok(v) => v,
        Err(e) => return failure(ACTIVE, e),
    };
    let events = match events {
        Ok(e) => e,
        Err(e) => return failure(ACTIVE, e),
    };
    if view.is_none() && events.is_empty() {
        return not_found(ACTIVE, &format!("No order {id}."));
    }
    // At a version: the view folded from the log up to it (the projector's fold), in
    // place of the projected one.
    let view = match as_of {
        None => view,
        Some(v) => match view_as_of(&events, AsOf::Version(v)) {
            Ok(folded) => Some(folded),
            Err(e) if e.is_not_found() => return not_found(ACTIVE, &format!("{e}.")),
            Err(e) => return failure(ACTIVE, e),
        },
    };
    let related = match &console.workflow {
        None => None,
        Some(wf) => {
            let db = wf.db.clone();
            let correlation = view
                .as_ref()
                .map(|v| v.correlation_id.clone())
                .or_else(|| events.first().map(|e| e.correlation_id.clone()))
                .unwrap_or_default();
            let needle = id.clone();
            let read = tokio::task::spawn_blocking(move || {
                db.read(|c| services::related(c, &correlation, &needle))
            })
            .await;
            match read {
                Ok(Ok(r)) => Some(r),
                Ok(Err(e)) => return failure(ACTIVE, e),
                Err(e) => return failure(ACTIVE, e),
            }
        }
    };
    let title = format!("Order {id}");
    page(
        &title,
        ACTIVE,
        detail_body(
            &id,
            view.as_ref(),
            as_of,
            &events,
            related.as_ref(),
            console.workflow.is_some(),
        ),
    )
    .into_response()
}

fn detail_body(
    id: &str,
    view: Option<&OrderView>,
    as_of: Option<u64>,
    events: &[EventEnvelope],
    related: Option<&Related>,
    workflow_on: bool,
) -> Markup {
    let latest = events.last().map_or(0, |e| e.version);
    html! {
        h1 { "Order " code { (id) } }
        @if let Some(v) = as_of {
            p.card.as-of {
                "As it stood at version " strong { (v) } " of " (latest)
                ", folded from the log. "
                a href={ "/console/orders/" (seg(id)) } { "Show it now" }
            }
        }
        @match view {
            Some(v) => (view_card(v, workflow_on)),
            None => p.card { "Not projected yet: the read model has no view of this order. Its events are below." },
        }
        @if let Some(v) = view {
            h2 { "Lines" }
            table.lines {
                thead { tr { th { "SKU" } th { "Quantity" } th { "Unit price" } th { "Line total" } } }
                tbody {
                    @for l in &v.items {
                        tr { td { code { (l.sku) } } td { (l.quantity) } td { (l.unit_price) } td { (l.line_total) } }
                    }
                    tr.total { td colspan="3" { strong { "Total" } } td { strong { (v.total) } } }
                }
            }
            (notifications(v))
        }
        @if let Some(r) = related { (related_card(r)) }
        h2 #timeline { "Event timeline" }
        (timeline(id, events, as_of))
    }
}

fn view_card(v: &OrderView, workflow_on: bool) -> Markup {
    let a = &v.shipping_address;
    html! {
        div.card {
            dl.facts {
                dt { "Status" } dd { span class={ "status " (v.status) } { (v.status) } }
                dt { "Version" } dd { (v.version) }
                dt { "Customer" } dd {
                    a href={ "/console/orders?customer=" (seg(&v.customer.id)) } { (v.customer.id) }
                    " · " (v.customer.name) " · " (v.customer.email)
                }
                dt { "Ship to" } dd {
                    (a.line1)
                    @if let Some(l2) = &a.line2 { ", " (l2) }
                    ", " (a.postal_code) " " (a.city) ", " (a.country)
                }
                dt { "Total" } dd { (v.total) }
                dt { "Placed" } dd { (v.placed_at) }
                dt { "Updated" } dd { (v.updated_at) }
                @if let Some(t) = v.confirmed_at { dt { "Confirmed" } dd { (t) } }
                @if let Some(t) = v.cancelled_at {
                    dt { "Cancelled" } dd { (t) @if let Some(r) = &v.cancellation_reason { " · " (r) } }
                }
                dt { "Correlation id" } dd { code { (v.correlation_id) } }
                dt { "Workflow" } dd {
                    @if workflow_on {
                        a.execution href=(execution_link(&v.workflow.execution_name)) { (v.workflow.execution_name) }
                    } @else {
                        code { (v.workflow.execution_name) }
                    }
                    " " span class={ "status " (v.workflow.status) } { (v.workflow.status) }
                }
                @if let Some(f) = &v.fulfilment {
                    dt { "Fulfilment" } dd {
                        "requested " (f.requested_at) " (message " a href={ "/console/queues#m-" (f.message_id) } { code { (f.message_id) } } ")"
                        @if let Some(c) = &f.carrier { " · carrier " (c) }
                        @if let Some(t) = &f.tracking_number { " · tracking " code { (t) } }
                        @if let Some(s) = f.shipped_at { " · shipped " (s) }
                    }
                }
            }
        }
    }
}

fn notifications(v: &OrderView) -> Markup {
    html! {
        @if !v.notifications.is_empty() {
            h2 { "Notifications" }
            table.notifications {
                thead { tr { th { "Channel" } th { "Status" } th { "Message" } th { "Error" } } }
                tbody {
                    @for n in &v.notifications {
                        @let channel = label(&n.channel);
                        @let status = label(&n.status);
                        tr {
                            td { (channel) }
                            td { span class={ "status " (status.to_ascii_lowercase()) } { (status) } }
                            td {
                                @if let Some(id) = &n.message_id {
                                    @match n.channel {
                                        Channel::Email => a href={ "/console/mail/" (seg(id)) } { code { (id) } },
                                        Channel::Sns => a href={ "/console/topic#m-" (id) } { code { (id) } },
                                        Channel::Sqs => a href={ "/console/queues#m-" (id) } { code { (id) } },
                                    }
                                }
                            }
                            td {
                                @if let Some(e) = &n.error { code { (e) } }
                                @if let Some(c) = &n.cause { " " span.muted { (c) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn related_card(r: &Related) -> Markup {
    html! {
        h2 { "Messages" }
        div.card.related {
            @if r.mail.is_empty() && r.topic.is_empty() && r.queue.is_empty() {
                p.muted { "No email, topic or queue message mentions this order yet." }
            }
            @if !r.mail.is_empty() {
                h3 { "Email" }
                ul {
                    @for m in &r.mail {
                        li { a.mail href={ "/console/mail/" (seg(&m.message_id)) } { (m.subject) } " to " (m.to.join(", ")) " · " (ts(m.sent_at)) }
                    }
                }
            }
            @if !r.topic.is_empty() {
                h3 { "Topic" }
                ul {
                    @for m in &r.topic {
                        li { a.topic href={ "/console/topic#m-" (m.message_id) } { code { (m.message_id) } } " · " (ts(m.published_at)) }
                    }
                }
            }
            @if !r.queue.is_empty() {
                h3 { "Queues" }
                ul {
                    @for m in &r.queue {
                        li {
                            a.queue href={ "/console/queues#m-" (m.message_id) } { code { (m.message_id) } }
                            " · " (m.queue) " · " (m.state) " · received " (m.receive_count) "×"
                            @if let Some(reason) = &m.dead_reason { " · " span.status.failed { (reason) } }
                        }
                    }
                }
            }
        }
    }
}

/// The order's events; each version links to the order as it stood then, and with
/// `as_of` the events after it are marked as later.
fn timeline(id: &str, events: &[EventEnvelope], as_of: Option<u64>) -> Markup {
    html! {
        @if events.is_empty() {
            p.card { "No events in the log." }
        } @else {
            table.timeline {
                thead { tr { th { "Version" } th { "Type" } th { "Occurred" } th { "Correlation" } th { "Causation" } th { "Payload" } } }
                tbody {
                    @for e in events {
                        @let later = as_of.is_some_and(|v| e.version > v);
                        tr.event.later[later] data-version=(e.version) {
                            td {
                                a.as-of title="The order as it stood after this event"
                                    href={ "/console/orders/" (seg(id)) "?version=" (e.version) } { (e.version) }
                            }
                            td { strong { (e.event_type) } " " span.muted { "v" (e.schema_version) } }
                            td { (e.occurred_at) }
                            td { code { (e.correlation_id) } }
                            td { code { (e.causation_id) } }
                            td {
                                details {
                                    summary { code { (e.event_id) } }
                                    pre { (serde_json::to_string_pretty(&e.payload).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
