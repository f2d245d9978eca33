//! The local runtime in one process: SQLite stores, the HTTP API over TCP, the stream
//! tailer feeding the projector the same DynamoDB stream events Lambda would, and (with
//! [`Runtime::start_with_workflow`]) the order workflow on the ASL engine with the local
//! topic, queue, mailbox and the queue poller feeding the fulfilment consumer.

use crate::dir_lock::DirLock;
use anyhow::Context;
use aws_lambda_events::event::dynamodb::Event;
use orders_domain::envelope::EventEnvelope;
use orders_domain::ports::{StartOutcome, WorkflowError, WorkflowStarter};
use orders_domain::workflow::WorkflowInput;
use orders_handlers::api::{self, Api};
use orders_handlers::commands::Commands;
use orders_handlers::projector::{LoggingStarter, Projector};
use orders_local::redrive;
use orders_local::store::{LocalStores, SqliteReadModels};
use orders_local::tailer::{self, Handled, StreamHandler, TailerConfig, TailerHandle};
use orders_local::workflow::db::WorkflowDb;
use orders_local::workflow::poller::PollerHandle;
use orders_local::workflow::starter::EngineStarter;
use orders_local::workflow::{FulfilmentConsumer, LocalWorkflow, WorkflowOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Called with each event the projector applied, after its batch (the benchmark measures
/// append → projection lag with it).
pub type ProjectionObserver = Arc<dyn Fn(&EventEnvelope) + Send + Sync>;

#[derive(Clone)]
pub struct RuntimeConfig {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub observer: Option<ProjectionObserver>,
    /// Host names the server answers to besides IP addresses and `localhost` (see
    /// [`crate::browser_guard`]).
    pub allowed_hosts: Vec<String>,
    /// Origins whose web pages may call the server (CORS, and trusted by the CSRF check).
    pub allowed_origins: Vec<String>,
    /// Play the deployed stack's authorizers (`--auth`, see [`crate::local_auth`]): the
    /// order routes want a token from `orders token`, and the API's access rules apply.
    pub auth: bool,
    /// Play the deployed stage's request throttling (`--throttle`, see
    /// [`crate::throttle`]): 429 once a route's bucket is empty.
    pub throttle: bool,
}

/// The file a local runtime (`orders serve`) locks for as long as it runs: one data dir
/// has one live projector, one workflow runtime and one queue poller.
pub const SERVE_LOCK: &str = "serve.lock";

/// Takes `dir`'s serve lock for `who` (written into it for the messages of others), or
/// fails naming its holder; `advice` ends that message. Held by `orders serve`, and by
/// what must not run beside a live projector: `orders seed`, `orders projections compact`.
pub fn claim_data_dir(dir: &Path, who: &str, advice: &str) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("opening the data directory {}", dir.display()))?;
    let path = dir.join(SERVE_LOCK);
    let mut lock = DirLock::try_acquire(&path)
        .with_context(|| format!("locking {}", path.display()))?
        .with_context(|| {
            format!(
                "{} is in use by {}: {advice}",
                dir.display(),
                DirLock::holder(&path).unwrap_or_else(|| "another process".into())
            )
        })?;
    describe(&mut lock, who);
    Ok(lock)
}

fn describe(lock: &mut DirLock, who: &str) {
    // Only for the messages of others: the lock itself is held.
    if let Err(e) = lock.describe(&format!("{who}, pid {}", std::process::id())) {
        tracing::warn!(error = %e, "could not note the data dir's user in its lock file");
    }
}

/// A seed interrupted before it built its read models left history the live projector
/// must not see: it would start a workflow (and send an email) per seeded order.
fn refuse_unfinished_seed(dir: &Path) -> anyhow::Result<()> {
    let pending = crate::seed::pending(dir)
        .with_context(|| format!("reading {}'s unfinished seed", dir.display()))?;
    anyhow::ensure!(
        pending.is_none(),
        "{}: {}",
        dir.display(),
        crate::seed::unfinished_advice(dir)
    );
    Ok(())
}

/// How a server names itself in its lock file, before its address.
const SERVER_AT: &str = "`orders serve` at http://";

/// The base URL of the `orders serve` running on `data_dir`, if one does (from its lock
/// file), for the commands that talk to it.
pub fn served_url(data_dir: &Path) -> Option<String> {
    let holder = in_use_by(data_dir).ok()??;
    let addr = holder.strip_prefix(SERVER_AT)?.split(',').next()?;
    Some(format!("http://{addr}"))
}

/// Who holds `data_dir`'s serve lock now (`orders serve` with its pid and address, or
/// `orders seed`), or `None` when nothing does.
pub fn in_use_by(data_dir: &Path) -> std::io::Result<Option<String>> {
    let path = data_dir.join(SERVE_LOCK);
    // A probe creates the file: a data dir never served is left as it is.
    if !path.exists() || !DirLock::held(&path)? {
        return Ok(None);
    }
    Ok(Some(
        DirLock::holder(&path).unwrap_or_else(|| "starting".into()),
    ))
}

/// How long a stop waits for running executions before leaving them to the next start.
const WORKFLOW_GRACE: Duration = Duration::from_secs(5);

/// How long a shutdown waits for the console's jobs to stop (after their chunk in flight).
const JOB_GRACE: Duration = Duration::from_secs(30);

/// The projector's starter: the engine, or only a log line when the workflow is off.
enum Starter {
    Logging(LoggingStarter),
    Engine(EngineStarter),
}

impl WorkflowStarter for Starter {
    async fn start(&self, input: &WorkflowInput) -> Result<StartOutcome, WorkflowError> {
        match self {
            Starter::Logging(s) => s.start(input).await,
            Starter::Engine(s) => s.start(input).await,
        }
    }
}

/// The projector, as the tailer's stream handler.
struct ProjectorStream {
    projector: Projector<SqliteReadModels, Starter>,
    observer: Option<ProjectionObserver>,
    /// Flushed after each batch: the executions it started must be durable before the
    /// tailer's checkpoint moves past their OrderPlaced (one commit per batch, not per start).
    workflows: Option<WorkflowDb>,
}

impl StreamHandler for ProjectorStream {
    async fn handle(&self, event: Event) -> Result<Handled, String> {
        let observed: Vec<EventEnvelope> = match &self.observer {
            Some(_) => event
                .records
                .iter()
                .filter_map(|r| {
                    orders_aws::codec::envelope_from_image(r.change.new_image.clone()).ok()
                })
                .collect(),
            None => vec![],
        };
        let (response, reason) = self.projector.handle_explained(event).await;
        if let Some(db) = &self.workflows {
            db.flush()
                .await
                .map_err(|e| format!("committing workflow starts: {e}"))?;
        }
        if let Some(observe) = &self.observer {
            let failed = response.batch_item_failures.len();
            for e in &observed[..observed.len().saturating_sub(failed)] {
                observe(e);
            }
        }
        Ok(Handled { response, reason })
    }
}

pub struct Runtime {
    pub addr: SocketAddr,
    pub stores: LocalStores,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    tailer: TailerHandle,
    workflow: Option<(LocalWorkflow, PollerHandle)>,
    /// The console's replays, verifies and switches back.
    jobs: Arc<crate::console::Jobs>,
    /// Held while this runtime serves its data dir: a second one on it is refused.
    _lock: DirLock,
}

impl Runtime {
    /// The API and the projector; workflow starts are only logged.
    pub async fn start(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        Runtime::start_inner(config, None).await
    }

    /// The whole loop: the projector starts the order workflow, executions a previous
    /// process left running are resumed, and the queue poller feeds the fulfilment consumer.
    pub async fn start_with_workflow(
        config: RuntimeConfig,
        workflow: WorkflowOptions,
    ) -> anyhow::Result<Runtime> {
        Runtime::start_inner(config, Some(workflow)).await
    }

    async fn start_inner(
        config: RuntimeConfig,
        workflow: Option<WorkflowOptions>,
    ) -> anyhow::Result<Runtime> {
        let dir = config.data_dir.clone();
        let (stores, mut lock) = tokio::task::spawn_blocking(move || {
            let lock = claim_data_dir(
                &dir,
                "`orders serve`",
                "stop it, or give this one another --data-dir",
            )?;
            refuse_unfinished_seed(&dir)?;
            let stores = LocalStores::open(&dir)
                .with_context(|| format!("opening the data directory {}", dir.display()))?;
            anyhow::Ok((stores, lock))
        })
        .await
        .context("opening the data directory")??;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("listening on {}", config.addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        describe(&mut lock, &format!("{SERVER_AT}{addr}"));

        let auth_key = match config.auth {
            true => Some(Arc::new(
                crate::local_auth::Key::load_or_create(&config.data_dir)
                    .context("the local authorizer's key")?,
            )),
            false => None,
        };
        let commands = Arc::new(Commands::live(stores.events.clone()));
        let workflow = match workflow {
            None => None,
            Some(options) => {
                let recorder = options.names.recorder_function.clone();
                let functions = HashMap::from([(
                    recorder,
                    orders_local::workflow::recorder_function(commands.clone()),
                )]);
                let wf = LocalWorkflow::open(&config.data_dir, options, functions)
                    .await
                    .context("opening the workflow store")?;
                let resumed = wf.resume().context("resuming executions")?;
                if resumed > 0 {
                    tracing::info!(resumed, "resumed running executions");
                }
                wf.start_sweeper();
                let poller = wf.spawn_poller(FulfilmentConsumer {
                    commands: commands.clone(),
                });
                Some((wf, poller))
            }
        };
        // One for the tailer, one for redriving its dead letters from the console: the
        // same handler, as a redelivery by the stream would meet it.
        let projector = || ProjectorStream {
            projector: Projector::live(
                stores.read_models.clone(),
                match &workflow {
                    Some((wf, _)) => Starter::Engine(wf.starter()),
                    None => Starter::Logging(LoggingStarter),
                },
            ),
            workflows: workflow.as_ref().map(|(wf, _)| wf.db.clone()),
            observer: config.observer.clone(),
        };
        let tailer = tailer::spawn(
            stores.events.clone(),
            stores.read_models.clone(),
            projector(),
            TailerConfig::default(),
        );
        let redriver = {
            let handler = Arc::new(projector());
            let (events, reads) = (stores.events.clone(), stores.read_models.clone());
            let redrive: crate::console::Redriver = Arc::new(move |letter| {
                let (handler, events, reads) = (handler.clone(), events.clone(), reads.clone());
                Box::pin(async move {
                    redrive::redrive(&events, &reads, handler, &TailerConfig::default(), &letter)
                        .await
                })
            });
            redrive
        };

        let api = Arc::new(Api {
            commands: Commands::live(stores.events.clone()),
            reads: stores.read_models.clone(),
            // The execution pages exist only when the workflow runs here.
            links: match &workflow {
                Some(_) => orders_handlers::links::ConsoleLinks::local(addr),
                None => orders_handlers::links::ConsoleLinks::Off,
            },
            // Without --auth the local API is open.
            customers: match &auth_key {
                Some(_) => orders_handlers::caller::CustomerAuth::Claim("sub".into()),
                None => orders_handlers::caller::CustomerAuth::Open,
            },
        });
        let jobs = Arc::new(crate::console::Jobs::default());
        let console = crate::console::Console {
            events: stores.events.clone(),
            reads: stores.read_models.clone(),
            workflow: workflow
                .as_ref()
                .map(|(wf, _)| crate::console::ConsoleWorkflow::of(wf)),
            redrive: redriver,
            jobs: jobs.clone(),
        };
        let mut api_router = match auth_key {
            Some(key) => crate::local_auth::guard(api::router(api), key),
            None => api::router(api),
        };
        if config.throttle {
            api_router = crate::throttle::guard(api_router);
        }
        let router = crate::browser_guard::guard(
            api_router.merge(crate::console::router(console)),
            &config.allowed_hosts,
            &config.allowed_origins,
        )?;
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        Ok(Runtime {
            addr,
            stores,
            stop,
            server,
            tailer,
            workflow,
            jobs,
            _lock: lock,
        })
    }

    /// The workflow, when it runs in this runtime.
    pub fn workflow(&self) -> Option<&LocalWorkflow> {
        self.workflow.as_ref().map(|(wf, _)| wf)
    }

    /// Waits until the projector has handled everything appended so far.
    pub async fn wait_projected(&self) {
        self.tailer.wait_for(self.stores.events.head_seq()).await;
    }

    /// Stops accepting requests, finishes those in flight, then stops the tailer after
    /// its current batch, the queue poller after its batch, and waits a little for
    /// running executions (the next start resumes those still running).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        self.server
            .await
            .context("joining the HTTP server")?
            .context("serving HTTP")?;
        self.jobs.stop_all(JOB_GRACE).await;
        self.tailer.shutdown().await;
        if let Some((wf, poller)) = self.workflow {
            poller.shutdown().await;
            wf.shutdown(WORKFLOW_GRACE).await;
        }
        Ok(())
    }
}
