//! Console pages: executions. The list (newest first, filtered by status, paginated) and
//! one execution as the Step Functions console shows it: its facts, the state machine
//! drawn with each state coloured by what happened, a panel with the selected state's
//! input, output and error, and the history table.

use super::graph;
use super::messages::parse_form;
use super::orders::{bad_request, execution_link, known_params, pretty, seg};
use super::trace::{self, StateRun, Status};
use super::{Console, State, failure, not_found, page, workflow_off};
use asl::{ExecutionRecord, ExecutionStatus, HistoryEvent, RedriveError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, PreEscaped, html};
use orders_handlers::problem::Problem;
use orders_local::workflow::starter::StopError;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const ACTIVE: &str = "/console/executions";
const PER_PAGE: usize = 25;
const STATUSES: [ExecutionStatus; 5] = [
    ExecutionStatus::Running,
    ExecutionStatus::Succeeded,
    ExecutionStatus::Failed,
    ExecutionStatus::TimedOut,
    ExecutionStatus::Aborted,
];
/// Longer than any execution ARN (names are at most 80 characters).
const MAX_ID: usize = 512;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/console/executions", get(list))
        .route("/console/executions/{id}", get(detail))
        .route("/console/executions/{id}/redrive", post(redrive))
        .route("/console/executions/{id}/stop", post(stop))
}

/// What the detail page's buttons ask of the server's engine.
enum Action {
    Redrive,
    Stop {
        error: Option<String>,
        cause: Option<String>,
    },
}

/// Why an action was refused: status, problem slug and title, detail.
type Refusal = (StatusCode, &'static str, &'static str, String);

/// The detail page's Redrive button; `orders executions redrive` asks for JSON
/// (`{"executionArn": …}`, or a problem document saying why not).
async fn redrive(
    axum::extract::State(console): State,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    act(console, &headers, id, Action::Redrive).await
}

/// The detail page's Stop button (a form with optional `error` and `cause`); `orders
/// executions stop` sends the same form and asks for JSON.
async fn stop(
    axum::extract::State(console): State,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Bytes,
) -> Response {
    let mut form = parse_form(&body);
    if let Some(k) = form
        .keys()
        .find(|k| !["error", "cause"].contains(&k.as_str()))
    {
        return bad_request(ACTIVE, k, "is not a field of the stop form (error, cause)");
    }
    let mut field = |k: &str| form.remove(k).filter(|v| !v.trim().is_empty());
    let (error, cause) = (field("error"), field("cause"));
    // StopExecution's limits.
    if error.as_ref().is_some_and(|e| e.chars().count() > 256) {
        return bad_request(ACTIVE, "error", "is longer than 256 characters");
    }
    if cause.as_ref().is_some_and(|c| c.chars().count() > 32_768) {
        return bad_request(ACTIVE, "cause", "is longer than 32768 characters");
    }
    act(console, &headers, id, Action::Stop { error, cause }).await
}

async fn act(
    console: Arc<Console>,
    headers: &HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    action: Action,
) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let id = match id {
        Ok(Path(id)) if !id.is_empty() && id.len() <= MAX_ID => id,
        _ => return not_found(ACTIVE, "That is not an execution name or ARN."),
    };
    let Some(wf) = &console.workflow else {
        return workflow_off(ACTIVE);
    };
    let not_found = |e: &dyn std::fmt::Display| -> Refusal {
        (
            StatusCode::NOT_FOUND,
            "execution-does-not-exist",
            "Execution does not exist",
            e.to_string(),
        )
    };
    let done: Result<String, Refusal> = match action {
        Action::Redrive => match wf.starter.redrive(&id).await {
            Ok(arn) => Ok(arn),
            Err(e @ RedriveError::DoesNotExist(_)) => Err(not_found(&e)),
            Err(e @ RedriveError::NotRedrivable(_)) => Err((
                StatusCode::CONFLICT,
                "execution-not-redrivable",
                "Execution not redrivable",
                e.to_string(),
            )),
            Err(e @ RedriveError::Store(_)) => return failure(ACTIVE, e),
        },
        Action::Stop { error, cause } => match wf.starter.stop(&id, error, cause).await {
            Ok(arn) => Ok(arn),
            Err(e @ StopError::DoesNotExist(_)) => Err(not_found(&e)),
            Err(e @ StopError::NotRunning(_)) => Err((
                StatusCode::CONFLICT,
                "execution-not-running",
                "Execution not running",
                e.to_string(),
            )),
            Err(e @ StopError::Store(_)) => return failure(ACTIVE, e),
        },
    };
    match done {
        Ok(arn) if wants_json => {
            axum::Json(serde_json::json!({ "executionArn": arn })).into_response()
        }
        Ok(_) => Redirect::to(&execution_link(&id)).into_response(),
        Err((status, slug, title, detail)) if wants_json => {
            Problem::new(status, slug, title, detail).into_response()
        }
        Err((status, _, title, detail)) => {
            let body = html! { h1 { (title) } p.muted { (detail) } p { a href=(execution_link(&id)) { "← The execution" } } };
            (status, page(title, ACTIVE, body)).into_response()
        }
    }
}

fn parse_status(s: &str) -> Option<ExecutionStatus> {
    let s = s.trim().to_ascii_uppercase();
    STATUSES.into_iter().find(|st| st.as_str() == s)
}

/// `Succeeded`, `Timed out`: how the AWS console labels a status.
fn status_label(s: ExecutionStatus) -> &'static str {
    match s {
        ExecutionStatus::Running => "Running",
        ExecutionStatus::Succeeded => "Succeeded",
        ExecutionStatus::Failed => "Failed",
        ExecutionStatus::TimedOut => "Timed out",
        ExecutionStatus::Aborted => "Aborted",
    }
}

/// `2026-11-26 19:10:21.123 UTC` from Unix milliseconds.
fn time(ms: i64) -> String {
    iso_to_text(&asl::timestamp::format_millis(ms))
}

fn iso_to_text(iso: &str) -> String {
    format!("{} UTC", iso.replacen('T', " ", 1).trim_end_matches('Z'))
}

/// `850 ms`, `1.234 s`, `2 min 03 s`, `1 h 02 min`.
pub(crate) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{}.{:03} s", ms / 1_000, ms % 1_000),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, (ms / 1_000) % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn link(e: &ExecutionRecord) -> String {
    format!("/console/executions/{}", seg(&e.name))
}

// ---- the list ----

struct ListPage {
    status: Option<ExecutionStatus>,
    page: usize,
    pages: usize,
    counts: Vec<(Option<ExecutionStatus>, u64)>,
    items: Vec<ExecutionRecord>,
}

async fn list(
    axum::extract::State(console): State,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = query else {
        return bad_request(ACTIVE, "query", "is not a valid query string");
    };
    if let Err(r) = known_params(ACTIVE, &params, &["status", "page"]) {
        return r;
    }
    let status = match params
        .get("status")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => match parse_status(s) {
            Some(st) => Some(st),
            None => {
                return bad_request(
                    ACTIVE,
                    "status",
                    "must be one of RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED",
                );
            }
        },
    };
    let page_no = match params.get("page") {
        None => 1,
        Some(p) => match p.trim().parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => n,
            _ => return bad_request(ACTIVE, "page", "must be a page number from 1"),
        },
    };
    let Some(wf) = &console.workflow else {
        return workflow_off(ACTIVE);
    };
    let db = wf.db.clone();
    let offset = (page_no - 1) * PER_PAGE;
    let read = db
        .read_async(move |c| {
            let mut counts: Vec<(Option<ExecutionStatus>, u64)> = Vec::new();
            let mut stmt =
                c.prepare_cached("SELECT status, COUNT(*) FROM executions GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut by_status: HashMap<String, u64> = HashMap::new();
            for row in rows {
                let (s, n) = row?;
                by_status.insert(s, n.max(0) as u64);
            }
            counts.push((None, by_status.values().sum()));
            for s in STATUSES {
                counts.push((Some(s), by_status.get(s.as_str()).copied().unwrap_or(0)));
            }
            let mut stmt = c.prepare_cached(
                "SELECT record FROM executions WHERE (?1 IS NULL OR status = ?1) \
                 ORDER BY start_date DESC, arn DESC LIMIT ?2 OFFSET ?3",
            )?;
            let rows = stmt.query_map(
                (status.map(|s| s.as_str()), PER_PAGE as i64, offset as i64),
                |r| r.get::<_, String>(0),
            )?;
            let mut items = Vec::new();
            for row in rows {
                let text: String = row?;
                let rec: ExecutionRecord = serde_json::from_str(&text).map_err(|e| {
                    orders_local::workflow::db::DbError::Corrupt(format!("execution: {e}"))
                })?;
                items.push(rec);
            }
            Ok((counts, items))
        })
        .await;
    let (counts, items) = match read {
        Ok(r) => r,
        Err(e) => return failure(ACTIVE, e),
    };
    let total = counts
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, n)| *n as usize)
        .unwrap_or(0);
    let lp = ListPage {
        status,
        page: page_no,
        pages: total.div_ceil(PER_PAGE).max(1),
        counts,
        items,
    };
    page("Executions", ACTIVE, list_body(&lp, now_ms())).into_response()
}

fn list_href(status: Option<ExecutionStatus>, page: usize) -> String {
    let mut q = Vec::new();
    if let Some(s) = status {
        q.push(format!("status={}", s.as_str()));
    }
    if page > 1 {
        q.push(format!("page={page}"));
    }
    if q.is_empty() {
        ACTIVE.to_string()
    } else {
        format!("{ACTIVE}?{}", q.join("&"))
    }
}

fn list_body(lp: &ListPage, now: i64) -> Markup {
    html! {
        h1 { "Executions" }
        nav.filters aria-label="Filter by status" {
            @for (s, n) in &lp.counts {
                a class=[(*s == lp.status).then_some("active")] href=(list_href(*s, 1)) data-status=(s.map_or("ALL", |s| s.as_str())) {
                    (s.map_or("All", status_label)) " (" (n) ")"
                }
            }
        }
        @if lp.items.is_empty() {
            p.card.empty { "No executions" @if let Some(s) = lp.status { " with status " (status_label(s)) } "." }
        } @else {
            table.executions {
                thead { tr { th { "Name" } th { "Status" } th { "Started" } th { "Ended" } th { "Duration" } } }
                tbody {
                    @for e in &lp.items {
                        tr.execution data-name=(e.name) data-status=(e.status.as_str()) {
                            td { a href=(link(e)) { (e.name) } }
                            td { span class={ "status " (e.status.as_str()) } { (status_label(e.status)) } }
                            td { (time(e.start_date)) }
                            td { @if let Some(t) = e.stop_date { (time(t)) } @else { "–" } }
                            td { (duration(e.stop_date.unwrap_or(now) - e.start_date)) }
                        }
                    }
                }
            }
        }
        div.pager {
            @if lp.page > 1 { a rel="prev" href=(list_href(lp.status, lp.page - 1)) { "← Newer" } }
            span.muted { "Page " (lp.page) " of " (lp.pages) }
            @if lp.page < lp.pages { a rel="next" href=(list_href(lp.status, lp.page + 1)) { "Older →" } }
        }
    }
}

// ---- one execution ----

async fn detail(
    axum::extract::State(console): State,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return not_found(ACTIVE, "That is not an execution name or ARN.");
    };
    if id.is_empty() || id.len() > MAX_ID {
        return not_found(ACTIVE, "That is not an execution name or ARN.");
    }
    let Some(wf) = &console.workflow else {
        return workflow_off(ACTIVE);
    };
    let db = wf.db.clone();
    let key = id.clone();
    let read = tokio::task::spawn_blocking(move || {
        let rec = db.find_execution(&key)?;
        let history = match &rec {
            Some(r) => db.history_of(&r.execution_arn)?,
            None => Vec::new(),
        };
        Ok::<(Option<ExecutionRecord>, Vec<HistoryEvent>), orders_local::workflow::db::DbError>((
            rec, history,
        ))
    })
    .await;
    let (rec, history) = match read {
        Ok(Ok((Some(r), h))) => (r, h),
        Ok(Ok((None, _))) => return not_found(ACTIVE, &format!("No execution named {id}.")),
        Ok(Err(e)) => return failure(ACTIVE, e),
        Err(e) => return failure(ACTIVE, e),
    };
    // The definition the execution ran; the current one if it was not stored.
    let definition: serde_json::Value =
        serde_json::from_str(&rec.definition).unwrap_or_else(|_| (*wf.definition).clone());
    let title = format!("Execution {}", rec.name);
    page(
        &title,
        ACTIVE,
        detail_body(&rec, &definition, &history, now_ms()),
    )
    .into_response()
}

fn detail_body(
    rec: &ExecutionRecord,
    definition: &serde_json::Value,
    history: &[HistoryEvent],
    now: i64,
) -> Markup {
    let states = graph::states(definition);
    let runs = trace::runs(history, &states, rec.status == ExecutionStatus::Running);
    let class_of = |name: &str| {
        runs.get(name)
            .map_or(Status::NotReached, |r| r.status)
            .class()
    };
    let drawing = graph::layout(definition);
    html! {
        h1 { "Execution " code { (rec.name) } " " span class={ "status badge " (rec.status.as_str()) } { (status_label(rec.status)) } }
        p { a href=(ACTIVE) { "← All executions" } }
        @if rec.status == ExecutionStatus::Running {
            form.stop method="post" action={ (execution_link(&rec.name)) "/stop" } {
                button type="submit" title="StopExecution: it ends ABORTED (and can be redriven)" { "Stop" }
            }
        }
        @if asl::redrive::not_redrivable(rec, history).is_none() {
            // AWS's Redrive: on from the state that did not finish.
            form.redrive method="post" action={ (execution_link(&rec.name)) "/redrive" } {
                button type="submit" title="Go on from the state that did not finish; what succeeded before it is not run again" { "Redrive" }
            }
        }
        div.card {
            dl.facts {
                dt { "Execution ARN" } dd { code { (rec.execution_arn) } }
                dt { "State machine" } dd { code { (rec.state_machine_arn) } }
                dt { "Status" } dd { span class={ "status " (rec.status.as_str()) } { (status_label(rec.status)) } }
                dt { "Started" } dd { (time(rec.start_date)) }
                dt { "Ended" } dd { @if let Some(t) = rec.stop_date { (time(t)) } @else { "–" } }
                dt { "Duration" } dd { (duration(rec.stop_date.unwrap_or(now) - rec.start_date)) }
                @if let Some(e) = &rec.error { dt { "Error" } dd { code.error { (e) } } }
                @if let Some(c) = &rec.cause { dt { "Cause" } dd { pre.cause { (c) } } }
                dt { "Redrive count" } dd.redrives { (asl::redrive::redrives(history).0) }
            }
            div.io {
                details open {
                    summary { "Input" }
                    pre.input { (serde_json::to_string_pretty(&rec.input).unwrap_or_default()) }
                }
                details open {
                    summary { "Output" }
                    pre.output {
                        @match &rec.output {
                            Some(o) => (serde_json::to_string_pretty(o).unwrap_or_default()),
                            None => "–",
                        }
                    }
                }
            }
        }
        h2 { "Graph view" }
        div.graph-view {
            div.graph-wrap {
                @match &drawing {
                    Ok(g) => (graph::svg(g, &class_of)),
                    Err(e) => p.muted { "The definition cannot be drawn: " (e.to_string()) },
                }
                (legend())
            }
            aside #state-panel.card aria-live="polite" {
                h3 #panel-name { "Select a state" }
                p.muted #panel-hint { "Click a state in the graph to see its input, output and error." }
                div #panel-body hidden {
                    p { span #panel-status.status {} " " span #panel-timing.muted {} }
                    h4 { "Input" } pre #panel-input {}
                    h4 { "Output" } pre #panel-output {}
                    div #panel-error-box hidden {
                        h4 { "Error" } pre #panel-error.error {}
                        h4 { "Cause" } pre #panel-cause {}
                    }
                }
            }
        }
        script #state-data type="application/json" { (PreEscaped(state_data(&runs))) }
        h2 { "States" }
        (state_table(&runs, &states))
        h2 { "Events" }
        (history_table(history, &states))
    }
}

/// The per-state data for console.js, safe inside a `<script>` element.
fn state_data(runs: &BTreeMap<String, StateRun>) -> String {
    serde_json::to_string(runs)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
}

fn legend() -> Markup {
    html! {
        ul.legend {
            @for s in [Status::Succeeded, Status::Failed, Status::Caught, Status::Running, Status::NotReached] {
                li { span class={ "swatch " (s.class()) } {} (s.label()) }
            }
        }
    }
}

/// Every state with what happened to it: the same data as the panel, without script.
fn state_table(
    runs: &BTreeMap<String, StateRun>,
    states: &HashMap<String, graph::StateInfo>,
) -> Markup {
    // Definition order would need the flow walk; ordering by first entry reads like the run.
    let mut list: Vec<&StateRun> = runs.values().collect();
    list.sort_by(|a, b| {
        (a.entered.is_none(), a.entered.as_deref(), &a.name).cmp(&(
            b.entered.is_none(),
            b.entered.as_deref(),
            &b.name,
        ))
    });
    html! {
        table.states {
            thead { tr { th { "State" } th { "Type" } th { "Status" } th { "Entered" } th { "Duration" } th { "Details" } } }
            tbody {
                @for r in list {
                    tr data-state=(r.name) class=(r.status.class()) {
                        td { (r.name) }
                        td { (states.get(&r.name).map_or("", |i| i.state_type.as_str())) }
                        td {
                            span class={ "status " (r.status.class()) } { (r.status.label()) }
                            @if r.entries > 1 { " " span.muted { "×" (r.entries) } }
                            @if r.failures > 0 { " " span.muted { "(" (r.failures) " failed attempts)" } }
                        }
                        td { @if let Some(t) = &r.entered { (iso_to_text(t)) } }
                        td { @if let Some(d) = r.duration_ms { (duration(d)) } }
                        td {
                            @if r.input.is_some() {
                                details {
                                    summary { "Input / output" }
                                    @if let Some(i) = &r.input { h4 { "Input" } pre { (pretty(i)) } }
                                    @if let Some(o) = &r.output { h4 { "Output" } pre { (pretty(o)) } }
                                    @if let Some(e) = &r.error { h4 { "Error" } pre.error { (e) } }
                                    @if let Some(c) = &r.cause { h4 { "Cause" } pre { (c) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The history as AWS lists it: id, type, step, resource, elapsed time, timestamp, and
/// the event's details on demand.
fn history_table(history: &[HistoryEvent], states: &HashMap<String, graph::StateInfo>) -> Markup {
    let owners = trace::owners(history, states);
    let start = history.first().and_then(|e| trace::millis(&e.timestamp));
    // The resource of each Task state's scheduled attempt, for its later events.
    let mut resource_of: HashMap<&str, String> = HashMap::new();
    html! {
        table.history {
            thead { tr { th { "ID" } th { "Type" } th { "Step" } th { "Resource" } th { "Started after" } th { "Date and time" } } }
            tbody {
                @for (ev, owner) in history.iter().zip(&owners) {
                    @let step = owner.as_deref().unwrap_or("");
                    @let resource = resource(ev, step, &mut resource_of);
                    @let elapsed = start.zip(trace::millis(&ev.timestamp)).map(|(a, b)| b - a);
                    tr class={ "event " (event_class(&ev.event_type)) } data-type=(ev.event_type) {
                        td { (ev.id) }
                        td {
                            details {
                                summary { (ev.event_type) }
                                pre { (serde_json::to_string_pretty(&event_details(ev)).unwrap_or_default()) }
                            }
                        }
                        td { (step) }
                        td { code { (resource) } }
                        td { @if let Some(ms) = elapsed { (ms) " ms" } }
                        td { (iso_to_text(&ev.timestamp)) }
                    }
                }
            }
        }
    }
}

fn resource<'a>(ev: &HistoryEvent, step: &'a str, seen: &mut HashMap<&'a str, String>) -> String {
    if ev.event_type.ends_with("Scheduled")
        && let Some(r) = ev
            .detail("resource")
            .and_then(|v| v.as_str().map(str::to_string))
    {
        let full = match ev
            .detail("resourceType")
            .and_then(|v| v.as_str().map(str::to_string))
        {
            Some(t) if !r.contains(':') => format!("{t}:{r}"),
            _ => r,
        };
        seen.insert(step, full.clone());
        return full;
    }
    let task_event = ["Task", "LambdaFunction", "Activity"]
        .iter()
        .any(|p| ev.event_type.starts_with(p) && !ev.event_type.contains("State"));
    if task_event {
        seen.get(step).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// The event's details with the JSON texts inside parsed, so they read as JSON.
fn event_details(ev: &HistoryEvent) -> serde_json::Value {
    let Some((_, mut d)) = ev.details.to_pair() else {
        return serde_json::json!({});
    };
    if let Some(o) = d.as_object_mut() {
        for (_, v) in o.iter_mut() {
            if let Some(s) = v.as_str()
                && let Ok(parsed) = serde_json::from_str::<serde_json::Value>(s)
                && (parsed.is_object() || parsed.is_array())
            {
                *v = parsed;
            }
        }
    }
    d
}

fn event_class(t: &str) -> &'static str {
    if t.ends_with("Failed") || t.ends_with("TimedOut") || t.ends_with("Aborted") {
        "failed"
    } else if t.ends_with("Succeeded") {
        "succeeded"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_aws_console() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(1_234), "1.234 s");
        assert_eq!(duration(123_000), "2 min 03 s");
        assert_eq!(duration(3_720_000), "1 h 02 min");
        assert_eq!(duration(-5), "0 ms");
    }

    #[test]
    fn statuses_parse_in_any_case_and_links_keep_the_filter() {
        assert_eq!(parse_status("succeeded"), Some(ExecutionStatus::Succeeded));
        assert_eq!(parse_status("TIMED_OUT"), Some(ExecutionStatus::TimedOut));
        assert_eq!(parse_status("done"), None);
        assert_eq!(list_href(None, 1), "/console/executions");
        assert_eq!(
            list_href(Some(ExecutionStatus::Failed), 3),
            "/console/executions?status=FAILED&page=3"
        );
        assert_eq!(time(0), "1970-01-01 00:00:00.000 UTC");
    }

    #[test]
    fn state_data_cannot_close_its_script_element() {
        let mut runs = BTreeMap::new();
        runs.insert(
            "x".to_string(),
            StateRun {
                name: "x".into(),
                status: Status::Succeeded,
                entries: 1,
                failures: 0,
                entered: None,
                exited: None,
                duration_ms: None,
                input: Some("</script><script>alert(1)</script>".into()),
                output: None,
                error: None,
                cause: None,
            },
        );
        let s = state_data(&runs);
        assert!(!s.contains('<'), "{s}");
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["x"]["input"], "</script><script>alert(1)</script>");
    }
}
