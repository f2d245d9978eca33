//! Console page: projections. Each projection's generations (a retired one can be switched
//! back to), the consumers' positions in the log and their lag, an unfinished replay, and
//! the dead letters (the records the live projector or a replay parked), filtered by source
//! and paged; the projector's can be redriven, one or all.

use super::jobs::{self, Job, Outcome};
use super::orders::{bad_request, known_params, limit_param, pretty, seg};
use super::{Console, State, failure, not_found, page};
use crate::projections::{self, ProjectionsStatus};
use crate::replay::{self, ReplayError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Redirect;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use orders_domain::projection::ProjectionName;
use orders_handlers::problem::Problem;
use orders_local::redrive::Redriven;
use orders_local::store::{DeadLetter, LocalStores};
use orders_local::tailer::TailerConfig;
use std::collections::HashMap;
use std::sync::Arc;

const ACTIVE: &str = "/console/projections";
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 200;

const REDRIVE: &str = "/console/projections/redrive";
const ACTIVATE: &str = "/console/projections/activate";

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(ACTIVE, get(show))
        .route(REDRIVE, post(redrive))
        .route(ACTIVATE, post(activate))
        .route(super::verify::VERIFY, post(super::verify::verify))
        .route(super::replay::REPLAY, post(super::replay::replay))
}

/// The data dir, where the event store's file sits beside the replay lock.
pub(super) fn data_dir(console: &Console) -> &std::path::Path {
    console
        .events
        .path()
        .parent()
        .unwrap_or(std::path::Path::new("."))
}

/// `POST /console/projections/activate` (form: `projection`, `generation`): switches
/// readers back to a retired generation, as `orders projections activate` does (caught
/// up first, under the replay lock), then 303 to the page with what it did.
async fn activate(axum::extract::State(console): State, body: Bytes) -> Response {
    let form = super::messages::parse_form(&body);
    if let Some(k) = form
        .keys()
        .find(|k| !["projection", "generation"].contains(&k.as_str()))
    {
        return bad_request(
            ACTIVE,
            k,
            "is not a field of the switch-back form (projection, generation)",
        );
    }
    let Some(projection) = form
        .get("projection")
        .and_then(|p| ProjectionName::parse(p))
    else {
        return bad_request(ACTIVE, "projection", "must name a projection");
    };
    let Some(generation) = form.get("generation").and_then(|g| g.parse::<u32>().ok()) else {
        return bad_request(ACTIVE, "generation", "must be a generation's number");
    };
    let lock = match jobs::lock(&console, "Generations switch when it has finished.") {
        Ok(lock) => lock,
        Err(refused) => return *refused,
    };
    let stores = LocalStores {
        events: console.events.clone(),
        read_models: console.reads.clone(),
    };
    let what = format!(
        "Switch back of {} to generation {generation}",
        projection.as_str()
    );
    let job = console.jobs.start(what, lock, move |job| async move {
        let switched =
            replay::switch_back(&stores, projection, generation, false, &job.stop, |p| {
                job.progress(p)
            })
            .await;
        switched_back(projection, generation, switched)
    });
    Redirect::to(&job.href()).into_response()
}

fn switched_back(
    projection: ProjectionName,
    generation: u32,
    switched: Result<replay::SwitchBack, ReplayError>,
) -> Outcome {
    let refused = |status: StatusCode, title: &str, detail: String| -> Outcome {
        Outcome::Page(
            status,
            html! { h1 { (title) } p.muted { (detail) } p { a href=(ACTIVE) { "← Projections" } } },
        )
    };
    match switched {
        Ok(done) => {
            tracing::info!(
                projection = projection.as_str(),
                generation,
                events = done.events_read,
                "console switch back"
            );
            Outcome::Redirect(format!(
                "{ACTIVE}?activated={}&generation={generation}&caught_up={}",
                projection.as_str(),
                done.events_read
            ))
        }
        Err(e @ ReplayError::NoGeneration { .. }) => {
            refused(StatusCode::NOT_FOUND, "Not found", e.to_string())
        }
        Err(ReplayError::Stopped) => refused(
            StatusCode::OK,
            "Switch back stopped",
            "Stopped: nothing was switched. Switch back again continues from where it stopped."
                .into(),
        ),
        Err(
            e @ (ReplayError::AlreadyActive { .. }
            | ReplayError::Unfinished { .. }
            | ReplayError::Undecodable { .. }
            | ReplayError::Projection { .. }),
        ) => refused(
            StatusCode::CONFLICT,
            "Not switched back",
            format!("{e} (nothing was switched)"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "console switch back failed");
            refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                e.to_string(),
            )
        }
    }
}

async fn show(
    axum::extract::State(console): State,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = known_params(
        ACTIVE,
        &params,
        &[
            "source",
            "after",
            "limit",
            "redriven",
            "failed",
            "activated",
            "generation",
            "caught_up",
        ],
    ) {
        return r;
    }
    let limit = match limit_param(ACTIVE, &params, DEFAULT_LIMIT, MAX_LIMIT) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let after = match params.get("after").map(|a| a.parse::<u64>()) {
        None => 0,
        Some(Ok(a)) => a,
        Some(Err(_)) => return bad_request(ACTIVE, "after", "must be a dead letter's id"),
    };
    let status =
        match projections::status(&console.events, &console.reads, data_dir(&console)).await {
            Ok(s) => s,
            Err(e) => return failure(ACTIVE, e),
        };
    let source = params.get("source").map(String::as_str);
    if let Some(s) = source
        && !status.dead_letters.by_source.contains_key(s)
    {
        return bad_request(
            ACTIVE,
            "source",
            "names no source of dead letters here (the chips list them)",
        );
    }
    // One more than shown tells whether there is a next page.
    let letters = match console
        .reads
        .dead_letters(source, after, limit.saturating_add(1))
        .await
    {
        Ok(l) => l,
        Err(e) => return failure(ACTIVE, e),
    };
    // The redrive's outcome, carried over its redirect.
    let count = |k: &str| params.get(k).and_then(|v| v.parse::<u64>().ok());
    let notice = count("redriven").map(|r| (r, count("failed").unwrap_or(0)));
    // A switch back's outcome, carried over its redirect.
    let switched = match (params.get("activated"), count("generation")) {
        (Some(p), Some(g)) => ProjectionName::parse(p).map(|p| (p, g, count("caught_up"))),
        _ => None,
    };
    page(
        "Projections",
        ACTIVE,
        body(
            &status,
            source,
            limit,
            after,
            &letters,
            Notices {
                redriven: notice,
                switched,
            },
            &console.jobs.recent(),
        ),
    )
    .into_response()
}

/// `POST /console/projections/redrive` (form: `id` of one dead letter, or `all=1` for every
/// one the live projector parked): hands each, oldest first, back to the projector. Then
/// 303 to the page with the counts, or (`Accept: application/json`, as the CLI asks) the
/// outcome of each as JSON.
async fn redrive(
    axum::extract::State(console): State,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    // A refusal: the console's page for a browser, problem+json naming the field for the CLI.
    let refuse = |status: StatusCode, field: &str, detail: String| -> Response {
        match (wants_json, status) {
            (true, StatusCode::NOT_FOUND) => Problem::not_found(&detail).into_response(),
            (true, _) => {
                Problem::field(status, "redrive", "The redrive is not valid", field, detail)
                    .into_response()
            }
            (false, StatusCode::NOT_FOUND) => not_found(ACTIVE, &detail),
            (false, _) => bad_request(ACTIVE, field, &detail),
        }
    };
    let form = super::messages::parse_form(&body);
    if let Some(k) = form.keys().find(|k| !["id", "all"].contains(&k.as_str())) {
        return refuse(
            StatusCode::BAD_REQUEST,
            k,
            "is not a field of the redrive form (id, all)".into(),
        );
    }
    let stream = TailerConfig::default().dead_letter_source();
    let letters = match (form.get("id"), form.get("all").map(String::as_str)) {
        (Some(id), None) => {
            let Ok(id) = id.parse::<u64>() else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "id",
                    "must be a dead letter's id".into(),
                );
            };
            match console.reads.dead_letter(id).await {
                Ok(Some(l)) if l.source == stream => vec![l],
                Ok(Some(l)) => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "id",
                        format!(
                            "names a dead letter from `{}`: only those of `{stream}` go back to the projector (a replay's are rebuilt by the next replay)",
                            l.source
                        ),
                    );
                }
                Ok(None) => {
                    return refuse(StatusCode::NOT_FOUND, "id", format!("No dead letter {id}."));
                }
                Err(e) => return failure(ACTIVE, e),
            }
        }
        (None, Some("1")) => match all_of(&console, &stream).await {
            Ok(l) => l,
            Err(e) => return failure(ACTIVE, e),
        },
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "id",
                "or `all=1` is needed, not both".into(),
            );
        }
    };
    let mut outcomes = vec![];
    for letter in letters {
        let outcome = match (console.redrive)(letter.clone()).await {
            Ok(Redriven::Processed) => None,
            Ok(Redriven::Failed(reason)) => Some(reason),
            Err(e) => Some(e.to_string()),
        };
        outcomes.push((letter.id, outcome));
    }
    let redriven = outcomes.iter().filter(|(_, o)| o.is_none()).count();
    let failed = outcomes.len() - redriven;
    tracing::info!(redriven, failed, "console stream redrive");
    if wants_json {
        let items: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|(id, o)| match o {
                None => serde_json::json!({"id": id, "processed": true}),
                Some(reason) => serde_json::json!({"id": id, "processed": false, "reason": reason}),
            })
            .collect();
        return axum::Json(serde_json::json!({
            "redriven": redriven,
            "failed": failed,
            "dead_letters": items,
        }))
        .into_response();
    }
    Redirect::to(&format!("{ACTIVE}?redriven={redriven}&failed={failed}")).into_response()
}

/// Every dead letter of `source`, oldest first.
async fn all_of(
    console: &Console,
    source: &str,
) -> Result<Vec<DeadLetter>, orders_domain::ports::ReadModelError> {
    let mut out: Vec<DeadLetter> = vec![];
    loop {
        let after = out.last().map_or(0, |l| l.id);
        let page = console.reads.dead_letters(Some(source), after, 500).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// What a redirect to the page carries: a redrive's counts (processed, failed), a switch
/// back's outcome (projection, generation, events caught up).
struct Notices {
    redriven: Option<(u64, u64)>,
    switched: Option<(ProjectionName, u64, Option<u64>)>,
}

fn body(
    s: &ProjectionsStatus,
    source: Option<&str>,
    limit: usize,
    after: u64,
    letters: &[DeadLetter],
    notices: Notices,
    jobs: &[Arc<Job>],
) -> Markup {
    let stream = TailerConfig::default().dead_letter_source();
    let redrivable = s.dead_letters.by_source.get(&stream).copied().unwrap_or(0);
    let shown = &letters[..letters.len().min(limit)];
    let next = (letters.len() > limit)
        .then(|| shown.last().map(|l| letters_href(source, l.id, limit)))
        .flatten();
    html! {
        h1 { "Projections" }
        @if let Some((redriven, failed)) = notices.redriven {
            p.card.notice.redrive-notice {
                "Redrive: " (redriven) " record(s) processed by the projector"
                @if failed > 0 { ", " (failed) " failed again (still listed below, with the reason they were parked for)" }
                "."
            }
        }
        @if let Some((p, g, caught_up)) = notices.switched {
            p.card.notice.switch-notice {
                "Switched readers of " code { (p.as_str()) } " back to generation " (g)
                @if let Some(n) = caught_up { ", after catching up " (n) " event(s)" }
                "."
            }
        }
        p.muted {
            "The log holds " strong.log-events { (s.log.events) } " events (last seq "
            (s.log.head_seq) ")."
        }
        @if !s.replay_running {
            (super::replay::form())
            form.verify method="post" action=(super::verify::VERIFY) {
                button type="submit" { "Verify against the log" }
                " "
                span.muted { "folds the whole log afresh and compares it with what readers see (" code { "orders projections verify" } "); changes nothing" }
            }
        }
        @if s.replay_running {
            p.card.notice.replay-running {
                "A replay is running: it builds the generations marked building, readers keep the active ones until it switches."
                @if let Some(job) = jobs.iter().find(|j| !j.is_finished()) {
                    " " a href=(job.href()) { (job.what) ": " (job.progress_line()) }
                } @else if let Some(holder) = &s.replay_holder {
                    " " span.replay-holder { (holder) }
                }
            }
        }
        h2 { "Generations" }
        table.generations {
            thead { tr { th { "Projection" } th { "Generation" } th { "Status" } th { "Orders" } th { "Created" } th { "Behind" } th {} } }
            tbody {
                @for g in &s.generations {
                    tr data-projection=(g.projection) data-generation=(g.generation) {
                        td { code { (g.projection) } }
                        td { (g.generation) }
                        td { span class={ "status " (g.status) } { (g.status) } }
                        td { (g.orders) }
                        td { (g.created_at) }
                        td.behind {
                            @match (g.status.as_str(), g.behind) {
                                ("retired", Some(b)) => (b),
                                ("retired", None) => "the whole log",
                                _ => "",
                            }
                        }
                        td {
                            @if g.status == "retired" && !s.replay_running {
                                form.activate method="post" action=(ACTIVATE) {
                                    input type="hidden" name="projection" value=(g.projection);
                                    input type="hidden" name="generation" value=(g.generation);
                                    button type="submit" { "Switch back" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if s.generations.iter().any(|g| g.status == "retired") {
            p.muted.switch-back {
                "A retired generation stays until it is dropped: Switch back (or "
                code { "orders projections activate <projection> <generation>" }
                ") catches it up (Behind: the events it lacks) and switches readers back to it."
            }
        }
        p.muted.file-space {
            @match projections::free_space_line(s.read_models_file) {
                Some(line) => (line),
                None => { "read_models.db: " (projections::megabytes(s.read_models_file.bytes)) },
            }
        }
        @if !s.replay_running && s.building().next().is_some() {
            div.card.interrupted {
                @for g in s.building() {
                    p {
                        code { (g.projection) } " generation " (g.generation) " was being built by a replay that was interrupted: continue it with "
                        code { "orders replay --projection " (g.projection) " --resume" } " (or Resume), or abandon it with "
                        code { "orders projections drop " (g.projection) " " (g.generation) } "."
                    }
                }
                form.replay.resume method="post" action=(super::replay::REPLAY) {
                    @for g in s.building() {
                        input type="hidden" name="projection" value=(g.projection);
                    }
                    input type="hidden" name="resume" value="1";
                    button type="submit" { "Resume" }
                }
            }
        }
        (jobs::list(jobs))
        h2 { "Consumers" }
        table.consumers {
            thead { tr { th { "Consumer" } th { "Kind" } th { "Position (seq)" } th { "Behind" } th { "Oldest waiting event" } } }
            tbody {
                @for c in &s.consumers {
                    tr data-consumer=(c.name) {
                        td { code { (c.name) } }
                        td { (c.kind) }
                        td { (c.position) }
                        td.behind { (c.behind) }
                        td.oldest { (c.oldest_waiting()) }
                    }
                }
            }
        }
        h2 { "Dead letters" }
        nav.filters {
            a class=[source.is_none().then_some("active")] href=(ACTIVE) { "All " span.count { (s.dead_letters.total) } }
            @for (name, n) in &s.dead_letters.by_source {
                a class=[(source == Some(name.as_str())).then_some("active")]
                    href=(format!("{ACTIVE}?source={}", seg(name))) data-source=(name) {
                    (name) " " span.count { (n) }
                }
            }
        }
        @if redrivable > 0 {
            form.redrive-all method="post" action=(REDRIVE) {
                input type="hidden" name="all" value="1";
                button type="submit" { "Redrive all " (redrivable) " from " code { (stream) } }
                span.muted { " hands each back to the live projector, oldest first, once what made it fail is fixed" }
            }
        }
        @if shown.is_empty() {
            p.card.empty { "No dead letters" @if after > 0 { " after id " (after) } "." }
        } @else {
            table.dead-letters {
                thead { tr { th { "Id" } th { "Source" } th { "Key" } th { "Parked at" } th { "Reason and record" } } }
                tbody {
                    @for l in shown {
                        tr data-id=(l.id) {
                            td { (l.id) }
                            td { code { (l.source) } }
                            td { code { (l.key) } }
                            td { (l.parked_at) }
                            td {
                                details {
                                    summary { (l.reason) }
                                    pre { (pretty(&l.record)) }
                                }
                                @if let Some((at, why)) = &l.last_failure {
                                    p.redrive-failed {
                                        span.status.failed { "Redrive failed " (l.failed_redrives) " time(s)" }
                                        " · last at " (at) ": " (why)
                                    }
                                }
                                @if l.source == stream {
                                    form.redrive method="post" action=(REDRIVE) {
                                        input type="hidden" name="id" value=(l.id);
                                        button type="submit" { "Redrive" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(href) = next {
                div.pager { a href=(href) { "Next page" } }
            }
        }
    }
}

fn letters_href(source: Option<&str>, after: u64, limit: usize) -> String {
    let mut q = format!("{ACTIVE}?after={after}&limit={limit}");
    if let Some(s) = source {
        q.push_str(&format!("&source={}", seg(s)));
    }
    q
}
