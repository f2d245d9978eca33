//! Console pages: the local mailbox (SES), topic (SNS) and queues (SQS, with the
//! dead-letter queue and its redrive button).

use super::orders::{
    bad_request, known_params, limit_param, order_id_in, order_link, pretty, seg, ts,
};
use super::{Console, ConsoleWorkflow, State, failure, not_found, page, workflow_off};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use orders_local::workflow::db::{DbError, WorkflowDb};
use orders_local::workflow::resources;
use orders_local::workflow::services::{self, Mail, QueueMessage};
use std::collections::HashMap;
use std::sync::Arc;

const MAIL: &str = "/console/mail";
const TOPIC: &str = "/console/topic";
const QUEUES: &str = "/console/queues";
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// Longer than any message id this system makes.
const MAX_ID: usize = 128;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(MAIL, get(mailbox))
        .route("/console/mail/{id}", get(mail))
        .route("/console/mail/{id}/eml", get(eml))
        .route(TOPIC, get(topic))
        .route(QUEUES, get(queues))
        .route("/console/queues/redrive", post(redrive))
}

/// Runs a read on the workflow database off the async threads.
async fn read<T: Send + 'static>(
    wf: &ConsoleWorkflow,
    f: impl FnOnce(&WorkflowDb, &services::Names) -> Result<T, DbError> + Send + 'static,
) -> Result<T, String> {
    let db = wf.db.clone();
    let names = wf.names.clone();
    tokio::task::spawn_blocking(move || f(&db, &names))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

// ---- mailbox ----

async fn mailbox(
    axum::extract::State(console): State,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(wf) = &console.workflow else {
        return workflow_off(MAIL);
    };
    if let Err(r) = known_params(MAIL, &params, &["limit"]) {
        return r;
    }
    let limit = match limit_param(MAIL, &params, DEFAULT_LIMIT, MAX_LIMIT) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let list = match read(wf, move |db, _| db.read(|c| services::mails(c, limit))).await {
        Ok(l) => l,
        Err(e) => return failure(MAIL, e),
    };
    page(
        "Mailbox",
        MAIL,
        html! {
            h1 { "Mailbox" }
            p.muted { "What the local SES sent, newest first (the " (list.len()) " most recent, at most " (limit) ")." }
            @if list.is_empty() {
                p.card { "No mail." }
            } @else {
                table.mail {
                    thead { tr { th { "Sent" } th { "From" } th { "To" } th { "Subject" } th { "Correlation" } } }
                    tbody {
                        @for m in &list {
                            tr {
                                td { (ts(m.sent_at)) }
                                td { (m.from) }
                                td { (m.to.join(", ")) }
                                td { a href={ "/console/mail/" (seg(&m.message_id)) } { (m.subject) } }
                                td { @if let Some(c) = &m.correlation_id { code { (c) } } }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// One message by SES message id, or `None` (the 404 page) when there is none.
async fn find_mail(wf: &ConsoleWorkflow, id: &str) -> Result<Option<Mail>, String> {
    if id.is_empty() || id.len() > MAX_ID {
        return Ok(None);
    }
    let id = id.to_string();
    read(wf, move |db, _| db.read(|c| services::mail(c, &id))).await
}

async fn mail(axum::extract::State(console): State, Path(id): Path<String>) -> Response {
    let Some(wf) = &console.workflow else {
        return workflow_off(MAIL);
    };
    let m = match find_mail(wf, &id).await {
        Ok(Some(m)) => m,
        Ok(None) => return not_found(MAIL, &format!("No mail {id}.")),
        Err(e) => return failure(MAIL, e),
    };
    let head = m.raw.split("\r\n\r\n").next().unwrap_or("");
    let parts = resources::decode_parts(&m.raw);
    let order = m
        .subject
        .split(|c: char| c.is_whitespace())
        .find(|w| w.len() == 26 && w.bytes().all(|b| b.is_ascii_alphanumeric()));
    page(
        &m.subject,
        MAIL,
        html! {
            h1 { (m.subject) }
            div.card {
                dl.facts {
                    dt { "From" } dd { (m.from) }
                    dt { "To" } dd { (m.to.join(", ")) }
                    dt { "Sent" } dd { (ts(m.sent_at)) }
                    dt { "Message id" } dd { code { (m.message_id) } }
                    @if let Some(c) = &m.correlation_id { dt { "Correlation id" } dd { code { (c) } } }
                    @if let Some(o) = order { dt { "Order" } dd { a href=(order_link(o)) { code { (o) } } } }
                }
                p { a.button href={ "/console/mail/" (seg(&m.message_id)) "/eml" } download={ (m.message_id) ".eml" } { "Download .eml" } }
            }
            @for (kind, body) in &parts {
                @if kind == "text/html" {
                    h2 { "HTML part" }
                    // The email's HTML never runs in the console: a sandboxed frame with no
                    // scripts, no same-origin access, no navigation.
                    iframe.mail-html sandbox="" referrerpolicy="no-referrer" title="HTML part" srcdoc=(body) {}
                    details { summary { "HTML source" } pre { (body) } }
                } @else {
                    h2 { "Text part" }
                    pre.mail-text { (body) }
                }
            }
            h2 { "Headers" }
            pre { (head) }
        },
    )
    .into_response()
}

async fn eml(axum::extract::State(console): State, Path(id): Path<String>) -> Response {
    let Some(wf) = &console.workflow else {
        return workflow_off(MAIL);
    };
    match find_mail(wf, &id).await {
        Ok(Some(m)) => {
            // The id is ours (UUID-like), but a header value must not break on anything.
            let file: String = m
                .message_id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (
                [
                    (header::CONTENT_TYPE, "message/rfc822".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{file}.eml\""),
                    ),
                ],
                m.raw,
            )
                .into_response()
        }
        Ok(None) => not_found(MAIL, &format!("No mail {id}.")),
        Err(e) => failure(MAIL, e),
    }
}

// ---- topic ----

async fn topic(
    axum::extract::State(console): State,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(wf) = &console.workflow else {
        return workflow_off(TOPIC);
    };
    if let Err(r) = known_params(TOPIC, &params, &["limit"]) {
        return r;
    }
    let limit = match limit_param(TOPIC, &params, DEFAULT_LIMIT, MAX_LIMIT) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let arn = wf.names.topic_arn();
    let list = match read(wf, move |db, _| {
        db.read(|c| services::topic_messages(c, limit))
    })
    .await
    {
        Ok(l) => l,
        Err(e) => return failure(TOPIC, e),
    };
    page(
        "Topic",
        TOPIC,
        html! {
            h1 { "Topic" }
            p.muted { code { (arn) } " · newest first (the " (list.len()) " most recent, at most " (limit) ")" }
            @if list.is_empty() {
                p.card { "No messages." }
            }
            @for m in &list {
                div.card.message id={ "m-" (m.message_id) } {
                    dl.facts {
                        dt { "Message id" } dd { code { (m.message_id) } }
                        dt { "Published" } dd { (ts(m.published_at)) }
                        @if let Some(s) = &m.subject { dt { "Subject" } dd { (s) } }
                        @if let Some(c) = &m.correlation_id { dt { "Correlation id" } dd { code { (c) } } }
                        @if let Some(o) = order_id_in(&m.message) { dt { "Order" } dd { a href=(order_link(&o)) { code { (o) } } } }
                        dt { "Attributes" } dd { code { (m.message_attributes) } }
                    }
                    pre { (pretty(&m.message)) }
                }
            }
        },
    )
    .into_response()
}

// ---- queues ----

struct QueueState {
    name: String,
    url: String,
    waiting: u64,
    consumed: u64,
    messages: Vec<QueueMessage>,
}

async fn queues(
    axum::extract::State(console): State,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(wf) = &console.workflow else {
        return workflow_off(QUEUES);
    };
    if let Err(r) = known_params(QUEUES, &params, &["limit", "consumed", "moved"]) {
        return r;
    }
    let limit = match limit_param(QUEUES, &params, DEFAULT_LIMIT, MAX_LIMIT) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let consumed = match params.get("consumed").map(String::as_str) {
        None | Some("show") => true,
        Some("hide") => false,
        Some(_) => return bad_request(QUEUES, "consumed", "must be show or hide"),
    };
    let moved = match params.get("moved").map(|m| m.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return bad_request(QUEUES, "moved", "must be a count"),
    };
    let found = read(wf, move |db, names| {
        db.read(|c| {
            let mut out = Vec::with_capacity(2);
            // Dead letters are never "consumed": only a redrive takes them out.
            for (q, with_consumed) in [(&names.queue, consumed), (&names.dead_letter_queue, false)]
            {
                let (waiting, done) = services::queue_counts(c, q)?;
                out.push(QueueState {
                    name: q.to_string(),
                    url: names.queue_url(q),
                    waiting,
                    consumed: done,
                    messages: services::queue_messages_newest(c, q, with_consumed, limit)?,
                });
            }
            Ok(out)
        })
    })
    .await;
    let mut found = match found {
        Ok(q) => q.into_iter(),
        Err(e) => return failure(QUEUES, e),
    };
    let (Some(main), Some(dlq)) = (found.next(), found.next()) else {
        return failure(QUEUES, "the queues were not read");
    };
    page(
        "Queues",
        QUEUES,
        html! {
            h1 { "Queues" }
            @if let Some(n) = moved {
                p.card.notice role="status" { "Moved " (n) " message(s) from the dead-letter queue back to " code { (main.name) } "." }
            }
            div.filters {
                a class=[consumed.then_some("active")] href="/console/queues?consumed=show" { "With consumed messages" }
                a class=[(!consumed).then_some("active")] href="/console/queues?consumed=hide" { "Waiting and in flight only" }
            }
            (queue_section(&main, false, limit))
            (queue_section(&dlq, true, limit))
        },
    )
    .into_response()
}

fn queue_section(q: &QueueState, dead_letters: bool, limit: usize) -> Markup {
    html! {
        section.queue id={ "q-" (q.name) } {
            h2 { @if dead_letters { "Dead-letter queue " } @else { "Queue " } code { (q.name) } }
            p.muted {
                code { (q.url) } " · "
                span.count-waiting { (q.waiting) } @if dead_letters { " dead letter(s)" } @else { " waiting or in flight" }
                @if !dead_letters { " · " span.count-consumed { (q.consumed) } " consumed" }
                " · newest first, at most " (limit)
            }
            @if dead_letters && q.waiting > 0 {
                form.redrive method="post" action="/console/queues/redrive" {
                    button type="submit" { "Redrive all " (q.waiting) " to the source queue" }
                }
            }
            @if q.messages.is_empty() {
                p.card { "No messages." }
            }
            @for m in &q.messages {
                div.card.message id={ "m-" (m.message_id) } {
                    dl.facts {
                        dt { "Message id" } dd { code { (m.message_id) } }
                        dt { "Sent" } dd { (ts(m.sent_at)) }
                        dt { "State" } dd {
                            (message_state(m))
                        }
                        dt { "Receive count" } dd { (m.receive_count) }
                        @if let Some(t) = m.first_received_at { dt { "First received" } dd { (ts(t)) } }
                        @if let Some(c) = &m.correlation_id { dt { "Correlation id" } dd { code { (c) } } }
                        @if let Some(o) = order_id_in(&m.body) { dt { "Order" } dd { a href=(order_link(&o)) { code { (o) } } } }
                        @if let Some(s) = &m.source_queue { dt { "Source queue" } dd { code { (s) } } }
                        @if let Some(r) = &m.dead_reason { dt { "Reason" } dd.reason { span.status.failed { (r) } } }
                        @if m.dead_reason.is_none() && let Some(e) = &m.last_error { dt { "Last error" } dd { (e) } }
                        dt { "Attributes" } dd { code { (m.message_attributes) } }
                        dt { "MD5 of body" } dd { code { (m.md5_of_body) } }
                    }
                    pre { (pretty(&m.body)) }
                    @if dead_letters {
                        form.redrive method="post" action="/console/queues/redrive" {
                            input type="hidden" name="message_id" value=(m.message_id);
                            button type="submit" { "Redrive this message" }
                        }
                    }
                }
            }
        }
    }
}

fn message_state(m: &QueueMessage) -> Markup {
    let now = asl::clock::system_now_millis();
    let what = if m.state == services::DELETED {
        "consumed"
    } else if m.visible_at > now {
        "in flight"
    } else {
        "waiting"
    };
    html! { span class={ "status " (what) } { (what) } }
}

/// `POST /console/queues/redrive` (form: optional `message_id`): moves the dead letters (or
/// one) back to their source queue, then 303 to the queues page with a notice.
async fn redrive(axum::extract::State(console): State, body: Bytes) -> Response {
    let Some(wf) = &console.workflow else {
        return workflow_off(QUEUES);
    };
    let form = parse_form(&body);
    if let Some(k) = form.keys().find(|k| k.as_str() != "message_id") {
        return bad_request(QUEUES, k, "is not a field of the redrive form (message_id)");
    }
    let wanted = form.get("message_id").filter(|m| !m.is_empty()).cloned();
    if let Some(m) = &wanted
        && m.len() > MAX_ID
    {
        return not_found(QUEUES, "No such message in the dead-letter queue.");
    }
    let dlq = wf.names.dead_letter_queue.clone();
    let one = wanted.clone();
    let moved = wf
        .db
        .write(move |c| services::redrive(c, &dlq, one.as_deref(), asl::clock::system_now_millis()))
        .await;
    match moved {
        Ok(ids) if ids.is_empty() && wanted.is_some() => {
            not_found(QUEUES, "No such message in the dead-letter queue.")
        }
        Ok(ids) => {
            tracing::info!(moved = ids.len(), "console redrive");
            Redirect::to(&format!("/console/queues?moved={}", ids.len())).into_response()
        }
        Err(e) => failure(QUEUES, e),
    }
}

/// An `application/x-www-form-urlencoded` body (the last of a repeated field wins; bad
/// percent-escapes and UTF-8 decode lossily, as browsers and servers do).
pub(super) fn parse_form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_and_bad_ones_are_refused() {
        let f = parse_form(b"message_id=ab%2Dc+d&x=");
        assert_eq!(f["message_id"], "ab-c d");
        assert_eq!(f["x"], "");
        // A bad escape stays as it was: the id it names is then simply not found.
        assert_eq!(parse_form(b"message_id=%zz")["message_id"], "%zz");
        assert_eq!(parse_form(b"message_id=%4")["message_id"], "%4");
        assert!(parse_form(b"").is_empty());
    }
}
