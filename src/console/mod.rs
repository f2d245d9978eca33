//! The local console at `/console`: server-rendered HTML (maud) with its CSS and script
//! embedded in the binary, so it works offline with no build step. It reads the same
//! stores the runtime writes; what it changes: dead-letter redrives (of the fulfilment
//! queue's, and of the stream records the projector parked), executions stopped or
//! redriven, and the read models, which a replay, a repair or a switch back rebuilds (run
//! as jobs with their progress, see [`jobs`]).
//!
//! Pages: executions (list, detail with the state machine drawn as SVG and the history),
//! orders (list, search by customer, detail with the event timeline), the log (every
//! order's events in the order they were appended), the local
//! mailbox, topic and queues, the sales report, and the projections (generations,
//! consumers' lag, dead letters).

mod executions;
mod graph;
mod jobs;
mod log;
mod messages;
mod orders;
mod projections;
mod replay;
mod sales;
mod trace;
mod verify;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use orders_local::redrive::{RedriveError, Redriven};
use orders_local::store::{DeadLetter, SqliteEventStore, SqliteReadModels};
use orders_local::workflow::LocalWorkflow;
use orders_local::workflow::db::WorkflowDb;
use orders_local::workflow::services::Names;
use std::sync::Arc;

/// What the console reads.
#[derive(Clone)]
pub struct Console {
    pub events: SqliteEventStore,
    pub reads: SqliteReadModels,
    /// `None` when the runtime runs without the workflow (`serve --no-workflow`).
    pub workflow: Option<ConsoleWorkflow>,
    /// Hands a parked stream record back to the live projector.
    pub redrive: Redriver,
    /// The replays, verifies and switches back started from the console.
    pub jobs: Arc<Jobs>,
}

pub use jobs::Jobs;

/// Redrives one dead letter of the projector's stream (see [`orders_local::redrive`]).
pub type Redriver = Arc<
    dyn Fn(
            DeadLetter,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Redriven, RedriveError>> + Send>,
        > + Send
        + Sync,
>;

/// The workflow side: executions, and the local topic, queues and mailbox.
#[derive(Clone)]
pub struct ConsoleWorkflow {
    pub db: WorkflowDb,
    pub names: Names,
    /// The definition as the engine runs it (substitutions applied), for the graph.
    pub definition: Arc<serde_json::Value>,
    pub state_machine_arn: String,
    /// Stops and redrives executions on the server's own engine.
    pub starter: orders_local::workflow::starter::EngineStarter,
}

impl ConsoleWorkflow {
    pub fn of(wf: &LocalWorkflow) -> ConsoleWorkflow {
        ConsoleWorkflow {
            db: wf.db.clone(),
            names: wf.options.names.clone(),
            definition: Arc::new(
                serde_json::from_str(&wf.state_machine.definition_text)
                    .unwrap_or(serde_json::Value::Null),
            ),
            state_machine_arn: wf.state_machine.arn.clone(),
            starter: wf.starter(),
        }
    }
}

/// The console's routes, all under `/console`.
pub fn router(console: Console) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { axum::response::Redirect::to("/console/executions") }),
        )
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .merge(executions::routes())
        .merge(orders::routes())
        .merge(messages::routes())
        .merge(projections::routes())
        .merge(sales::routes())
        .merge(log::routes())
        .merge(jobs::routes())
        // A mistyped console address gets a page with the navigation, not the API's JSON.
        .route(
            "/console/{*rest}",
            get(|uri: axum::http::Uri| async move {
                not_found("-", &format!("The console has no page at {}.", uri.path()))
            }),
        )
        .with_state(Arc::new(console))
}

pub(crate) type State = axum::extract::State<Arc<Console>>;

/// The navigation entries, in order: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/console/executions", "Executions"),
    ("/console/orders", "Orders"),
    ("/console/log", "Log"),
    ("/console/mail", "Mailbox"),
    ("/console/topic", "Topic"),
    ("/console/queues", "Queues"),
    ("/console/sales", "Sales"),
    ("/console/projections", "Projections"),
];

/// Every page: the same head, navigation and footer around `body`.
pub(crate) fn page(title: &str, active: &str, body: Markup) -> Html<String> {
    page_with(title, active, None, body)
}

/// A page that reloads itself every `seconds` (a job's, while it runs: no script needed).
pub(crate) fn page_refreshing(
    title: &str,
    active: &str,
    seconds: u32,
    body: Markup,
) -> Html<String> {
    page_with(title, active, Some(seconds), body)
}

fn page_with(title: &str, active: &str, refresh: Option<u32>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    @if let Some(seconds) = refresh {
                        meta http-equiv="refresh" content=(seconds);
                    }
                    title { (title) " · orders console" }
                    link rel="stylesheet" href="/console/assets/console.css";
                    script src="/console/assets/console.js" defer {}
                }
                body {
                    header.top {
                        a.brand href="/console" { "orders" span { " local console" } }
                        nav {
                            @for (href, label) in NAV {
                                a href=(href) class=[(href.ends_with(active)).then_some("active")] { (label) }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// A page saying what was not found, with status 404.
pub(crate) fn not_found(active: &str, what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            active,
            html! { h1 { "Not found" } p.muted { (what) } },
        ),
    )
        .into_response()
}

/// A page for a failure reading the stores, with status 500 (logged too).
pub(crate) fn failure(active: &str, error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "console page failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            "Error",
            active,
            html! { h1 { "Something went wrong" } pre { (error.to_string()) } },
        ),
    )
        .into_response()
}

/// Shown on workflow pages when the runtime runs without the workflow.
pub(crate) fn workflow_off(active: &str) -> Response {
    page(
        "Workflow off",
        active,
        html! {
            h1 { "The workflow is not running" }
            p.muted { "This runtime was started with " code { "--no-workflow" } "." }
        },
    )
    .into_response()
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
}
