//! Console: `POST /console/projections/verify` runs `orders projections verify` in the
//! server's process as a job (see [`super::jobs`]; under the replay lock; the live
//! projector waits only for the second, short comparison) and shows what differs from the
//! log.

use super::State;
use super::jobs::{self, Outcome};
use super::orders::bad_request;
use crate::replay::ReplayError;
use crate::verify::{self, Repair, Verdict};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use orders_domain::projection::{DailySales, ProjectionName};
use orders_local::store::{LocalStores, RowDiff};

pub(super) const VERIFY: &str = "/console/projections/verify";
const ACTIVE: &str = "/console/projections";
/// Differences listed per kind; the CLI's `--json` has them all.
const SHOWN: usize = 100;

/// The form: `projection` (optional, repeatable; all by default), `repair=1` to rewrite
/// what differs from the log (as `--repair` does).
pub(super) async fn verify(axum::extract::State(console): State, form: Bytes) -> Response {
    let mut projections = vec![];
    let mut repair = false;
    for (k, v) in form_urlencoded::parse(&form) {
        match (k.as_ref(), v.as_ref()) {
            ("projection", name) => match ProjectionName::parse(name) {
                Some(p) => projections.push(p),
                None => return bad_request(ACTIVE, "projection", "must name a projection"),
            },
            ("repair", "1") => repair = true,
            ("repair", _) => return bad_request(ACTIVE, "repair", "must be 1"),
            (other, _) => {
                return bad_request(
                    ACTIVE,
                    other,
                    "is not a field of the verify form (projection, repair)",
                );
            }
        }
    }
    let projections = jobs::chosen(projections);
    let lock = match jobs::lock(&console, "Verify when it has finished.") {
        Ok(lock) => lock,
        Err(refused) => return *refused,
    };
    let data_dir = super::projections::data_dir(&console).to_path_buf();
    let stores = LocalStores {
        events: console.events.clone(),
        read_models: console.reads.clone(),
    };
    let what = jobs::title(if repair { "Repair" } else { "Verify" }, &projections);
    let job = console.jobs.start(what, lock, move |job| async move {
        let verified = verify::verify(&stores, &data_dir, &projections, repair, &job.stop, |p| {
            job.progress(p)
        })
        .await;
        outcome(verified)
    });
    Redirect::to(&job.href()).into_response()
}

fn outcome(verified: Result<Verdict, ReplayError>) -> Outcome {
    let back = html! { p { a href=(ACTIVE) { "← Projections" } } };
    match verified {
        Ok(v) => {
            tracing::info!(
                same = v.same(),
                repaired = v.repair.is_some(),
                position = v.position,
                "console verify"
            );
            Outcome::Page(StatusCode::OK, verdict(&v))
        }
        Err(ReplayError::Stopped) => Outcome::Page(
            StatusCode::OK,
            html! { h1 { "Verify stopped" } p.muted { "Stopped before it finished: nothing was compared or changed." } (back) },
        ),
        Err(e @ (ReplayError::Projection { .. } | ReplayError::Undecodable { .. })) => {
            Outcome::Page(
                StatusCode::CONFLICT,
                html! { h1 { "Not verified" } p.muted { (e.to_string()) } (back) },
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "console verify failed");
            Outcome::Page(
                StatusCode::INTERNAL_SERVER_ERROR,
                html! { h1 { "Something went wrong" } pre { (e.to_string()) } },
            )
        }
    }
}

fn verdict(v: &Verdict) -> Markup {
    let c = &v.compared;
    let differing: Vec<&str> = v.differing().iter().map(|p| p.as_str()).collect();
    html! {
        h1 { "Verify" }
        p.muted {
            "Folded " (v.events_read) " events of the log afresh and compared them with the read models at log position "
            (v.position) " (" (format!("{:.1}", v.seconds)) " s)."
        }
        @match &v.repair {
            Some(Repair::Repaired { rows, still_different: 0 }) => {
                p.card.notice.verify-repaired {
                    "Repaired from the log, with the live projector held off: " (rows.orders) " order views, "
                    (rows.trackers) " sales trackers and " (rows.days) " days rewritten. The read models are now what the log says."
                }
            }
            Some(Repair::Repaired { still_different, .. }) => {
                p.card.notice.verify-differs { (still_different) " rows still differ after the repair: replay." }
            }
            Some(Repair::Refused(why)) => {
                p.card.notice.verify-differs { "Not repaired: " (why) "." }
            }
            None => {}
        }
        @if v.same() {
            p.card.notice.verify-same { "The read models are what the log says." }
        } @else if v.repair.is_none() {
            div.card.notice.verify-differs {
                "The read models differ from the log: "
                code { "orders replay --projection " (differing.join(" --projection ")) }
                " rebuilds them from it, or repair just what differs:"
                form.repair method="post" action=(VERIFY) {
                    @for p in v.differing() { input type="hidden" name="projection" value=(p.as_str()); }
                    input type="hidden" name="repair" value="1";
                    button type="submit" { "Repair from the log" }
                }
            }
        }
        @for g in &v.generations {
            @match g.projection {
                ProjectionName::Orders => {
                    h2 { code { "orders" } " (generation " (g.generation) ")" }
                    p.muted.orders-counts {
                        (c.orders_in_log) " orders in the log, " (c.orders.len()) " not as the log says."
                    }
                    (rows(&c.orders))
                }
                ProjectionName::DailySales => {
                    h2 { code { "daily_sales" } " (generation " (g.generation) ")" }
                    p.muted.days-counts {
                        (c.days_in_log) " days and currencies in the log, " (c.days.len())
                        " not as the log says; " (c.trackers.len()) " orders' sales trackers differ."
                    }
                    @if !c.days.is_empty() {
                        table.days {
                            thead { tr { th { "Day" } th { "Currency" } th { "Read model" } th { "Log" } } }
                            tbody {
                                @for d in c.days.iter().take(SHOWN) {
                                    tr { td { (d.date) } td { (d.currency) } td { (day(&d.read_model)) } td { (day(&d.log)) } }
                                }
                            }
                        }
                    }
                    (rows(&c.trackers))
                }
            }
        }
        @if v.undecodable > 0 {
            p.muted { (v.undecodable) " events of the log do not decode: no read model holds them." }
            ul.undecodable {
                @for e in &v.undecodable_events { li { code { (e.key) } ": " (e.reason) } }
            }
        }
        @if v.not_yet_projected > 0 {
            p.muted { (v.not_yet_projected) " orders have events the live projector has not applied yet: not compared." }
        }
        @if v.live_dead_letters > 0 && !v.same() {
            p.muted { "The live projector parked " (v.live_dead_letters) " records (dead letters on the Projections page)." }
        }
        p { a href=(ACTIVE) { "← Projections" } }
    }
}

fn rows(diffs: &[RowDiff]) -> Markup {
    html! {
        @if !diffs.is_empty() {
            table.differences {
                thead { tr { th { "Order" } th { "Read model" } th { "Log" } th { "What differs (read model / log)" } } }
                tbody {
                    @for d in diffs.iter().take(SHOWN) {
                        tr data-order=(d.order_id) {
                            td { a href={ "/console/orders/" (d.order_id) } { code { (d.order_id) } } }
                            td { (version(d.read_model_version)) }
                            td { (version(d.log_version)) }
                            td {
                                @match (d.read_model_version, d.log_version) {
                                    (None, _) => span.muted { "missing from the read model" },
                                    (_, None) => span.muted { "no event in the log explains it" },
                                    _ => {},
                                }
                                @for f in &d.fields {
                                    div.field { code { (f.path) } ": " (f.read_model.to_string()) " / " (f.log.to_string()) }
                                }
                            }
                        }
                    }
                }
            }
            @if diffs.len() > SHOWN {
                p.muted { "… and " (diffs.len() - SHOWN) " more: " code { "orders projections verify --json" } " lists them all." }
            }
        }
    }
}

fn version(v: Option<u64>) -> String {
    v.map_or("no row".into(), |v| format!("version {v}"))
}

fn day(d: &Option<DailySales>) -> String {
    match d {
        Some(s) => format!(
            "{} placed, {} cancelled, net {}",
            s.orders_placed,
            s.orders_cancelled,
            crate::sales::money(s.net_amount, &s.currency)
        ),
        None => "no row".into(),
    }
}
