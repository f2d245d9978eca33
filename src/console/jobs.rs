//! Console: the long operations (a replay, a verify or repair, a switch back) run as jobs
//! in the server's process. The form's POST takes the replay lock, starts the job and
//! answers 303 to the job's page, which shows its progress (refreshing itself, 202 while it
//! runs) with a Stop button, then what it did. Jobs live in memory: the projections page
//! lists the last few; a restart forgets them (an interrupted replay resumes from its
//! checkpoint, and the projections page offers that).

use super::orders::seg;
use super::{Console, State, failure, not_found, page, page_refreshing};
use crate::replay::{ReplayLock, ReplayProgress, ReplayStep};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use orders_domain::Timestamp;
use orders_domain::ports::Clock;
use orders_domain::projection::ProjectionName;
use orders_handlers::system::SystemClock;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) const JOBS: &str = "/console/jobs";
const ACTIVE: &str = "/console/projections";
/// Finished jobs remembered (a running one is never forgotten).
const KEPT: usize = 10;

/// The jobs of this server, newest last.
#[derive(Default)]
pub struct Jobs {
    list: Mutex<JobList>,
}

#[derive(Default)]
struct JobList {
    last_id: u64,
    jobs: VecDeque<Arc<Job>>,
}

/// One long operation, shared by its task (progress in, stop out) and its page.
pub(crate) struct Job {
    pub(crate) id: u64,
    /// What it does, as a title: "Replay of orders".
    pub(crate) what: String,
    pub(crate) started_at: Timestamp,
    started: Instant,
    done: AtomicU64,
    total: AtomicU64,
    /// `done` at the first report (a resumed replay starts past its checkpoint), for the
    /// rate; `u64::MAX` until then.
    first_done: AtomicU64,
    /// The step past the events, while it is at one (building an index, switching).
    step: Mutex<Option<ReplayStep>>,
    /// The replay lock while it runs, and what it says the job is (with its progress,
    /// for a command that finds it taken); `None` once it ended.
    lock: Mutex<Option<(ReplayLock, String)>>,
    /// Asked to stop (the Stop button); the operation ends after the chunk in flight.
    pub(crate) stop: AtomicBool,
    finished: Mutex<Option<Finished>>,
}

/// What a finished job shows.
pub(crate) enum Outcome {
    /// Its page: the status it answers with and the body.
    Page(StatusCode, Markup),
    /// A page elsewhere that shows what it did.
    Redirect(String),
}

struct Finished {
    outcome: Outcome,
    seconds: f64,
}

impl Job {
    fn new(id: u64, what: String) -> Job {
        Job {
            id,
            what,
            started_at: SystemClock.now(),
            started: Instant::now(),
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            first_done: AtomicU64::new(u64::MAX),
            step: Mutex::new(None),
            lock: Mutex::new(None),
            stop: AtomicBool::new(false),
            finished: Mutex::new(None),
        }
    }
}

impl Jobs {
    /// Runs `work` as a new job that holds `lock` until it ends, and returns the job.
    pub(crate) fn start<F, Fut>(&self, what: String, mut lock: ReplayLock, work: F) -> Arc<Job>
    where
        F: FnOnce(Arc<Job>) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let job = {
            let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
            list.last_id += 1;
            let job = Arc::new(Job::new(list.last_id, what));
            list.jobs.push_back(job.clone());
            // Forget the oldest finished ones beyond KEPT.
            let mut finished = list.jobs.iter().filter(|j| j.is_finished()).count();
            list.jobs.retain(|j| {
                let forget = finished > KEPT && j.is_finished();
                finished -= usize::from(forget);
                !forget
            });
            job
        };
        let holder = format!(
            "{}, a job of the console of `orders serve` (pid {}, since {})",
            job.what,
            std::process::id(),
            job.started_at
        );
        // For the messages of others only: a lock without its description still locks.
        let _ = lock.describe(&holder);
        *job.lock.lock().unwrap_or_else(|p| p.into_inner()) = Some((lock, holder));
        let work = tokio::spawn(work(job.clone()));
        let ending = job.clone();
        tokio::spawn(async move {
            let outcome = match work.await {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::error!(error = %e, job = ending.what, "console job failed");
                    Outcome::Page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        html! { h1 { "Something went wrong" } pre { (e.to_string()) } },
                    )
                }
            };
            // Unlocked first: the page it leads to then shows no replay running.
            drop(ending.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
            ending.finish(outcome);
        });
        job
    }

    /// Asks every running job to stop and waits, at most `grace`, for them to end: a server
    /// shutting down leaves its replay stopped after a chunk (resumable, nothing switched)
    /// and the replay lock free, rather than cut wherever it was.
    pub async fn stop_all(&self, grace: Duration) {
        let running: Vec<Arc<Job>> = self
            .recent()
            .into_iter()
            .filter(|j| !j.is_finished())
            .collect();
        for job in &running {
            job.stop.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + grace;
        while running.iter().any(|j| !j.is_finished()) {
            if Instant::now() > deadline {
                tracing::warn!("console jobs still running after the shutdown's grace");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<Job>> {
        let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.jobs.iter().find(|j| j.id == id).cloned()
    }

    /// The newest job still running.
    pub(crate) fn running(&self) -> Option<Arc<Job>> {
        self.recent().into_iter().find(|j| !j.is_finished())
    }

    /// The jobs remembered, newest first.
    pub(crate) fn recent(&self) -> Vec<Arc<Job>> {
        let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.jobs.iter().rev().cloned().collect()
    }
}

impl Job {
    /// The operation's progress callback.
    pub(crate) fn progress(&self, p: ReplayProgress) {
        let _ = self.first_done.compare_exchange(
            u64::MAX,
            p.done,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.total.store(p.total, Ordering::Relaxed);
        self.done.store(p.done, Ordering::Relaxed);
        *self.step.lock().unwrap_or_else(|p| p.into_inner()) = p.step;
        if let Some((lock, holder)) = self.lock.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = lock.say_progress(holder, p);
        }
    }

    pub(crate) fn href(&self) -> String {
        format!("{JOBS}/{}", self.id)
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.took().is_some()
    }

    /// Its seconds, once finished.
    fn took(&self) -> Option<f64> {
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|f| f.seconds)
    }

    fn finish(&self, outcome: Outcome) {
        let seconds = self.started.elapsed().as_secs_f64();
        *self.finished.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Finished { outcome, seconds });
    }

    /// "1234 of 5000 events (25 %), 41000 events/s, about 0.1 s left".
    pub(crate) fn progress_line(&self) -> String {
        let (done, total) = (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        );
        if total == 0 {
            return "starting".into();
        }
        let secs = self.started.elapsed().as_secs_f64();
        let since = done.saturating_sub(self.first_done.load(Ordering::Relaxed));
        let rate = if secs > 0.0 { since as f64 / secs } else { 0.0 };
        let step = *self.step.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = ReplayProgress { done, total, step }.describe();
        // At a step no count moves: a rate or a time left would be wrong.
        if step.is_none() && rate >= 1.0 {
            line.push_str(&format!(", {rate:.0} events/s"));
            if total > done {
                line.push_str(&format!(
                    ", about {:.1} s left",
                    (total - done) as f64 / rate
                ));
            }
        }
        line
    }
}

/// The replay lock for a job of the console, or the page refusing it: 409 while a replay
/// runs (linking to the console's job if it is one; `wait` says what to do meanwhile), 500
/// if the lock file cannot be opened.
pub(super) fn lock(console: &Console, wait: &str) -> Result<ReplayLock, Box<Response>> {
    match ReplayLock::try_acquire(super::projections::data_dir(console)) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => {
            let body = html! {
                h1 { "A replay is running" }
                p.muted { (wait) }
                @if let Some(job) = console.jobs.running() {
                    p { a href=(job.href()) { (job.what) } }
                } @else if let Ok(Some(holder)) = ReplayLock::holder(super::projections::data_dir(console)) {
                    p { "Held by " (holder) "." }
                }
                p { a href=(ACTIVE) { "← Projections" } }
            };
            let page = page("A replay is running", ACTIVE, body);
            Err(Box::new((StatusCode::CONFLICT, page).into_response()))
        }
        Err(e) => Err(Box::new(failure(ACTIVE, e))),
    }
}

/// The projections a console form chose, all when it named none, each once and in order.
pub(super) fn chosen(mut projections: Vec<ProjectionName>) -> Vec<ProjectionName> {
    if projections.is_empty() {
        projections.extend(ProjectionName::ALL);
    }
    projections.sort();
    projections.dedup();
    projections
}

/// A job's title: "Verify of daily_sales and orders".
pub(super) fn title(verb: &str, projections: &[ProjectionName]) -> String {
    let names: Vec<&str> = projections.iter().map(|p| p.as_str()).collect();
    format!("{verb} of {}", names.join(" and "))
}

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{JOBS}/{{id}}"), get(show))
        .route(&format!("{JOBS}/{{id}}/stop"), post(stop))
}

fn find(console: &Console, id: &str) -> Option<Arc<Job>> {
    id.parse::<u64>().ok().and_then(|id| console.jobs.get(id))
}

fn gone(id: &str) -> Response {
    not_found(
        ACTIVE,
        &format!(
            "No job {id} here (jobs are kept in memory: the last {KEPT} finished ones, until the server stops)."
        ),
    )
}

/// `GET /console/jobs/{id}`: 202 with the progress while it runs (the page reloads itself
/// every second), then its outcome.
async fn show(axum::extract::State(console): State, Path(id): Path<String>) -> Response {
    let Some(job) = find(&console, &id) else {
        return gone(&id);
    };
    let finished = job.finished.lock().unwrap_or_else(|p| p.into_inner());
    match &*finished {
        Some(Finished {
            outcome: Outcome::Redirect(to),
            ..
        }) => Redirect::to(to).into_response(),
        Some(Finished {
            outcome: Outcome::Page(status, body),
            seconds,
        }) => {
            let body = html! {
                (body)
                p.muted.job-took { (job.what) ", started " (job.started_at) ", took " (format!("{seconds:.2}")) " s." }
            };
            (*status, page(&job.what, ACTIVE, body)).into_response()
        }
        None => {
            let (done, total) = (
                job.done.load(Ordering::Relaxed),
                job.total.load(Ordering::Relaxed),
            );
            let stopping = job.stop.load(Ordering::Relaxed);
            let body = html! {
                h1 { (job.what) }
                p.job-running data-job=(job.id) {
                    progress value=(done) max=(total.max(1)) {}
                    " " span.job-progress { (job.progress_line()) }
                }
                @if stopping {
                    p.muted { "Stopping after the chunk in flight…" }
                } @else {
                    form.job-stop method="post" action={ (JOBS) "/" (seg(&id)) "/stop" } {
                        button type="submit" { "Stop" }
                        " "
                        span.muted { "ends it after the chunk in flight; nothing is switched, and a replay can be resumed" }
                    }
                }
                p.muted { "Started " (job.started_at) ". This page reloads itself every second." }
                p { a href=(ACTIVE) { "← Projections" } }
            };
            (
                StatusCode::ACCEPTED,
                page_refreshing(&job.what, ACTIVE, 1, body),
            )
                .into_response()
        }
    }
}

/// `POST /console/jobs/{id}/stop`: asks a running job to stop, then 303 to its page.
async fn stop(axum::extract::State(console): State, Path(id): Path<String>) -> Response {
    let Some(job) = find(&console, &id) else {
        return gone(&id);
    };
    if !job.is_finished() {
        job.stop.store(true, Ordering::Relaxed);
        tracing::info!(job = job.what, "console job asked to stop");
    }
    Redirect::to(&job.href()).into_response()
}

/// The jobs list on the projections page (nothing when there are none).
pub(super) fn list(jobs: &[Arc<Job>]) -> Markup {
    html! {
        @if !jobs.is_empty() {
            h2 { "Jobs" }
            table.jobs {
                thead { tr { th { "Job" } th { "Started" } th { "State" } } }
                tbody {
                    @for j in jobs {
                        tr data-job=(j.id) {
                            td { a href=(j.href()) { (j.what) } }
                            td { (j.started_at) }
                            td {
                                @match j.took() {
                                    Some(seconds) => { "finished in " (format!("{seconds:.2}")) " s" }
                                    None => { "running: " (j.progress_line()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_counts_the_rate_from_the_first_report() {
        let job = Job::new(1, "Replay of orders".into());
        assert_eq!(job.progress_line(), "starting");
        job.progress(ReplayProgress {
            done: 0,
            total: 1000,
            step: None,
        });
        job.progress(ReplayProgress {
            done: 500,
            total: 1000,
            step: None,
        });
        let line = job.progress_line();
        assert!(line.starts_with("500 of 1000 events (50 %), "), "{line}");
        assert!(
            line.contains(" events/s, about ") && line.ends_with(" s left"),
            "{line}"
        );
        // Resumed past its checkpoint: the events before it are not this run's rate.
        let resumed = Job::new(2, "Resumed replay of orders".into());
        resumed.progress(ReplayProgress {
            done: 800,
            total: 1000,
            step: None,
        });
        assert_eq!(resumed.progress_line(), "800 of 1000 events (80 %)");
        // Past the events, the step it is at, with no rate or time left.
        job.progress(ReplayProgress {
            done: 1000,
            total: 1000,
            step: Some(ReplayStep::Completing),
        });
        assert_eq!(
            job.progress_line(),
            "1000 of 1000 events (100 %), finishing the rebuilt read models (days, customer index)"
        );
        job.progress(ReplayProgress {
            done: 1000,
            total: 1000,
            step: None,
        });
        assert!(!job.progress_line().contains("finishing"));
    }
}
