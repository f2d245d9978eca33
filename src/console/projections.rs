//! Console page: projections. Each projection's generations, the consumers' positions in
//! the log and their lag, an unfinished replay, and the dead letters (the records the live
//! projector or a replay parked), filtered by source and paged.

use super::orders::{bad_request, known_params, limit_param, pretty, seg};
use super::{Console, State, failure, page};
use crate::projections::{self, ProjectionsStatus};
use axum::Router;
use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use orders_local::store::DeadLetter;
use std::collections::HashMap;
use std::sync::Arc;

const ACTIVE: &str = "/console/projections";
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 200;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route(ACTIVE, get(show))
}

async fn show(
    axum::extract::State(console): State,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = known_params(ACTIVE, &params, &["source", "after", "limit"]) {
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
    // The event store's file sits in the data dir, beside the replay lock.
    let data_dir = console
        .events
        .path()
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let status = match projections::status(&console.events, &console.reads, data_dir).await {
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
    page(
        "Projections",
        ACTIVE,
        body(&status, source, limit, after, &letters),
    )
    .into_response()
}

fn body(
    s: &ProjectionsStatus,
    source: Option<&str>,
    limit: usize,
    after: u64,
    letters: &[DeadLetter],
) -> Markup {
    let shown = &letters[..letters.len().min(limit)];
    let next = (letters.len() > limit)
        .then(|| shown.last().map(|l| letters_href(source, l.id, limit)))
        .flatten();
    html! {
        h1 { "Projections" }
        p.muted {
            "The log holds " strong.log-events { (s.log.events) } " events (last seq "
            (s.log.head_seq) "). Rebuild with " code { "orders replay --projection all" } "."
        }
        @if s.replay_running {
            p.card.notice.replay-running { "A replay is running: it builds the generations marked building, readers keep the active ones until it switches." }
        }
        h2 { "Generations" }
        table.generations {
            thead { tr { th { "Projection" } th { "Generation" } th { "Status" } th { "Orders" } th { "Created" } } }
            tbody {
                @for g in &s.generations {
                    tr data-projection=(g.projection) data-generation=(g.generation) {
                        td { code { (g.projection) } }
                        td { (g.generation) }
                        td { span class={ "status " (g.status) } { (g.status) } }
                        td { (g.orders) }
                        td { (g.created_at) }
                    }
                }
            }
        }
        @for g in s.building() {
            @if !s.replay_running {
                p.card.interrupted {
                    code { (g.projection) } " generation " (g.generation) " was being built by a replay that was interrupted: continue it with "
                    code { "orders replay --projection " (g.projection) " --resume" } ", or abandon it with "
                    code { "orders projections drop " (g.projection) " " (g.generation) } "."
                }
            }
        }
        h2 { "Consumers" }
        table.consumers {
            thead { tr { th { "Consumer" } th { "Kind" } th { "Position (seq)" } th { "Behind" } } }
            tbody {
                @for c in &s.consumers {
                    tr data-consumer=(c.name) {
                        td { code { (c.name) } }
                        td { (c.kind) }
                        td { (c.position) }
                        td.behind { (c.behind) }
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
