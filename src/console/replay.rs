//! Console: `POST /console/projections/replay` runs `orders replay` in the server's process
//! as a job (see [`super::jobs`]): fresh generations built beside the live projector, caught
//! up and switched, firing no side effect. Stopped, or interrupted by a restart, it is
//! resumed from its checkpoint.

use super::State;
use super::jobs::{self, Job, Outcome};
use super::orders::bad_request;
use crate::replay::{self, ReplayError, ReplayOptions, ReplaySummary};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use orders_domain::projection::ProjectionName;
use orders_local::store::LocalStores;
use std::path::PathBuf;
use std::sync::Arc;

pub(super) const REPLAY: &str = "/console/projections/replay";
const ACTIVE: &str = "/console/projections";
const FIELDS: &str = "projection, drop_old, resume, skip_undecodable";

/// The form: `projection` (repeatable, or `all`; all by default), and `drop_old`, `resume`,
/// `skip_undecodable` set to 1 as the flags of `orders replay` are given.
pub(super) async fn replay(axum::extract::State(console): State, form: Bytes) -> Response {
    let mut opts = ReplayOptions {
        projections: vec![],
        resume: false,
        drop_old: false,
        skip_undecodable: false,
        chunk: replay::DEFAULT_CHUNK,
    };
    for (k, v) in form_urlencoded::parse(&form) {
        let flag = match k.as_ref() {
            "projection" if v == "all" => {
                opts.projections.extend(ProjectionName::ALL);
                continue;
            }
            "projection" => match ProjectionName::parse(&v) {
                Some(p) => {
                    opts.projections.push(p);
                    continue;
                }
                None => {
                    return bad_request(ACTIVE, "projection", "must name a projection, or be all");
                }
            },
            "drop_old" => &mut opts.drop_old,
            "resume" => &mut opts.resume,
            "skip_undecodable" => &mut opts.skip_undecodable,
            other => {
                return bad_request(
                    ACTIVE,
                    other,
                    &format!("is not a field of the replay form ({FIELDS})"),
                );
            }
        };
        if v != "1" {
            return bad_request(ACTIVE, &k, "must be 1");
        }
        *flag = true;
    }
    opts.projections = jobs::chosen(opts.projections);
    let lock = match jobs::lock(&console, "Start another when it has finished.") {
        Ok(lock) => lock,
        Err(refused) => return *refused,
    };
    let data_dir = super::projections::data_dir(&console).to_path_buf();
    let verb = if opts.resume {
        "Resumed replay"
    } else {
        "Replay"
    };
    let what = jobs::title(verb, &opts.projections);
    let job = console
        .jobs
        .start(what, lock, move |job| run(data_dir, opts, job));
    Redirect::to(&job.href()).into_response()
}

async fn run(data_dir: PathBuf, opts: ReplayOptions, job: Arc<Job>) -> Outcome {
    // Its own connections, as `orders replay` beside `orders serve` has: the live projector
    // writes between the bulk phase's commits instead of waiting for all of them.
    let stores = match tokio::task::spawn_blocking(move || LocalStores::open(&data_dir)).await {
        Ok(Ok(stores)) => stores,
        Ok(Err(e)) => return failed(e),
        Err(e) => return failed(e),
    };
    let replayed = replay::replay(&stores, &opts, &job.stop, |p| job.progress(p)).await;
    // Closing joins the stores' threads (a checkpoint may be copying the replay's WAL): off
    // the async threads, which serve the API too, and before the lock is let go.
    if let Err(e) = tokio::task::spawn_blocking(move || drop(stores)).await {
        tracing::warn!(error = %e, "closing the replay's stores");
    }
    match replayed {
        Ok(s) => {
            tracing::info!(
                events = s.events_read,
                orders = s.orders_rebuilt,
                seconds = s.seconds,
                "console replay"
            );
            Outcome::Page(StatusCode::OK, summary(&s))
        }
        Err(ReplayError::Stopped) => Outcome::Page(
            StatusCode::OK,
            html! {
                h1 { "Replay stopped" }
                p.card.notice.replay-stopped { "Stopped: nothing was switched; readers keep the active generations. The replay continues from its checkpoint:" }
                (again(&opts, "Resume", opts.skip_undecodable))
                p { a href=(ACTIVE) { "← Projections" } }
            },
        ),
        Err(e @ ReplayError::Undecodable { .. }) => Outcome::Page(
            StatusCode::CONFLICT,
            html! {
                h1 { "Replay stopped at an undecodable event" }
                p.card.notice.verify-differs { (e.to_string()) }
                p.muted { "Nothing was switched. Resume it parking such events as dead letters (source replay):" }
                (again(&opts, "Resume, parking undecodable events", true))
                p { a href=(ACTIVE) { "← Projections" } }
            },
        ),
        Err(e @ ReplayError::Interrupted { .. }) => Outcome::Page(
            StatusCode::CONFLICT,
            html! {
                h1 { "An interrupted replay is in the way" }
                p.card.notice.verify-differs { (e.to_string()) }
                p { "Resume it, or drop its generations, on the " a href=(ACTIVE) { "Projections" } " page." }
            },
        ),
        Err(e @ (ReplayError::NothingToResume(_) | ReplayError::Projection { .. })) => {
            Outcome::Page(
                StatusCode::CONFLICT,
                html! {
                    h1 { "Not replayed" }
                    p.card.notice.verify-differs { (e.to_string()) " (nothing was switched)" }
                    p { a href=(ACTIVE) { "← Projections" } }
                },
            )
        }
        Err(e) => failed(e),
    }
}

fn failed(e: impl std::fmt::Display) -> Outcome {
    tracing::error!(error = %e, "console replay failed");
    Outcome::Page(
        StatusCode::INTERNAL_SERVER_ERROR,
        html! { h1 { "Something went wrong" } pre { (e.to_string()) } },
    )
}

/// A button that resumes `opts`' replay.
fn again(opts: &ReplayOptions, label: &str, skip_undecodable: bool) -> Markup {
    html! {
        form.replay method="post" action=(REPLAY) {
            @for p in &opts.projections {
                input type="hidden" name="projection" value=(p.as_str());
            }
            input type="hidden" name="resume" value="1";
            @if opts.drop_old { input type="hidden" name="drop_old" value="1"; }
            @if skip_undecodable { input type="hidden" name="skip_undecodable" value="1"; }
            button type="submit" { (label) }
        }
    }
}

fn summary(s: &ReplaySummary) -> Markup {
    html! {
        h1 { "Replayed" }
        p.card.notice.replay-done {
            "Replayed " (s.events_read) " events and rebuilt " (s.orders_rebuilt) " orders in "
            (format!("{:.2}", s.seconds)) " s (" (format!("{:.0}", s.rate())) " events/s), firing no side effect."
        }
        ul.switches {
            @for sw in &s.switches {
                li data-projection=(sw.projection.as_str()) data-generation=(sw.to) {
                    code { (sw.projection.as_str()) } ": readers switched "
                    @if let Some(from) = sw.from { "from generation " (from) " " }
                    "to generation " (sw.to)
                    @match (sw.from, sw.dropped_old) {
                        (_, true) => "; the old generations were dropped.",
                        (Some(from), false) => {
                            "; generation " (from) " is retired: Switch back on the "
                            a href=(ACTIVE) { "Projections" } " page undoes it."
                        }
                        (None, false) => ".",
                    }
                }
            }
        }
        @if s.parked > 0 {
            p.card.notice.verify-differs {
                (s.parked) " undecodable events were parked as dead letters ("
                a href={ (ACTIVE) "?source=" (replay::DEAD_LETTER_SOURCE) } { "source " (replay::DEAD_LETTER_SOURCE) } ")."
            }
        }
        p { a href=(ACTIVE) { "← Projections" } }
    }
}

/// The replay form of the projections page.
pub(super) fn form() -> Markup {
    html! {
        form.replay method="post" action=(REPLAY) {
            label { "Replay " select name="projection" {
                option value="all" { "all projections" }
                @for p in ProjectionName::ALL { option value=(p.as_str()) { (p.as_str()) } }
            } }
            " "
            label { input type="checkbox" name="drop_old" value="1"; " drop the old generations" }
            " "
            label title="as --skip-undecodable: an event no decoder reads becomes a dead letter (source replay) instead of stopping the replay" {
                input type="checkbox" name="skip_undecodable" value="1"; " park undecodable events"
            }
            " "
            button type="submit" { "Replay" }
            " "
            span.muted { "builds fresh generations from the log beside the live projector and switches readers to them (" code { "orders replay" } "); fires no side effect" }
        }
    }
}
