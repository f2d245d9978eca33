//! The order workflow in the local runtime: the project's ASL definition on the `asl`
//! engine, durable in `<data_dir>/workflows.db`, with local SNS/SQS/SES/Lambda resources
//! and the queue poller that feeds the fulfilment consumer.

pub mod db;
mod history_rows;
pub mod poller;
pub mod resources;
pub mod retention;
pub mod services;
pub mod starter;

use crate::store::SqliteEventStore;
use asl::{Engine, StateMachine, TokioClock};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use db::WorkflowDb;
use orders_handlers::commands::Commands;
use resources::{FunctionError, LocalFunction, Services};
use serde_json::Value;
pub use services::Names;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The definition shared with `template.yaml`.
pub const DEFINITION: &str = include_str!("../../../statemachines/order-workflow.asl.json");
pub const STATE_MACHINE_NAME: &str = "orders-order-workflow";
/// Verified by default, so the workflow sends mail out of the box.
pub const DEFAULT_SENDER: &str = "orders@anycompany.example";

#[derive(Debug, Clone)]
pub struct WorkflowOptions {
    pub names: Names,
    pub sender: String,
    /// Whether the sender is a verified SES identity (false: every email is rejected).
    pub sender_verified: bool,
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
    pub batch_size: usize,
    pub poll_interval: Duration,
    /// Test-only task delays (see [`resources::DELAY_ENV`]).
    pub delays: Vec<(String, u64)>,
    /// Write a `mail/<message-id>.eml` copy of each email (the database holds it anyway;
    /// a file per email costs inode churn at benchmark rates).
    pub mail_files: bool,
    /// How long executions, messages and emails are kept (as on AWS).
    pub retention: retention::Retention,
}

impl Default for WorkflowOptions {
    fn default() -> Self {
        WorkflowOptions {
            names: Names::default(),
            sender: DEFAULT_SENDER.into(),
            sender_verified: true,
            // The template's VisibilityTimeout is 180 s; locally a failed message should
            // come back while someone is still looking.
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 3,
            batch_size: 10,
            poll_interval: Duration::from_millis(500),
            delays: Vec::new(),
            mail_files: true,
            retention: retention::Retention::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("the workflow definition is invalid: {0}")]
    Definition(String),
}

/// The engine, its store and resources, wired for the order workflow.
pub struct LocalWorkflow {
    pub engine: Engine,
    pub state_machine: StateMachine,
    pub db: WorkflowDb,
    pub options: WorkflowOptions,
    wake: Arc<Notify>,
    in_flight: Arc<AtomicUsize>,
    mail_dir: Option<PathBuf>,
    sweeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The substitutions SAM's DefinitionSubstitutions fill on AWS.
pub fn substitutions(options: &WorkflowOptions) -> HashMap<String, String> {
    let n = &options.names;
    HashMap::from([
        ("OrderTopicArn".to_string(), n.topic_arn()),
        ("FulfilmentQueueUrl".to_string(), n.queue_url(&n.queue)),
        ("SenderAddress".to_string(), options.sender.clone()),
        ("RecorderFunctionArn".to_string(), n.recorder_arn()),
    ])
}

/// The recorder Lambda, in process.
pub fn recorder_function(commands: Arc<Commands<SqliteEventStore>>) -> LocalFunction {
    Arc::new(move |payload: Value| {
        let commands = commands.clone();
        Box::pin(async move {
            match orders_handlers::recorder::record(&commands, payload).await {
                Ok(r) => serde_json::to_value(r).map_err(|e| FunctionError {
                    error_type: orders_handlers::recorder::ERROR_TYPE.into(),
                    message: e.to_string(),
                }),
                Err(e) => Err(FunctionError {
                    error_type: orders_handlers::recorder::ERROR_TYPE.into(),
                    message: e.to_string(),
                }),
            }
        })
    })
}

impl LocalWorkflow {
    /// Opens `<data_dir>/workflows.db`, registers the sender identity and builds the
    /// engine (real time, executions spawned on tokio). Call [`LocalWorkflow::resume`]
    /// to finish executions a previous process left running.
    pub async fn open(
        data_dir: &Path,
        options: WorkflowOptions,
        functions: HashMap<String, LocalFunction>,
    ) -> Result<LocalWorkflow, SetupError> {
        let dir = data_dir.to_path_buf();
        let db = tokio::task::spawn_blocking(move || WorkflowDb::open(&dir))
            .await
            .map_err(|e| db::DbError::Commit(format!("opening: {e}")))??;
        let (sender, verified) = (options.sender.clone(), options.sender_verified);
        db.write(move |c| services::set_identity(c, &sender, verified))
            .await?;
        let mail_dir: PathBuf = data_dir.join("mail");
        let mail_dir = match options.mail_files {
            false => None,
            true => match std::fs::create_dir_all(&mail_dir) {
                Ok(()) => Some(mail_dir),
                Err(e) => {
                    tracing::warn!(error = %e, "no mail/ directory: .eml copies are not written");
                    None
                }
            },
        };
        let wake = Arc::new(Notify::new());
        let services = Services {
            db: db.clone(),
            names: options.names.clone(),
            mail_dir: mail_dir.clone(),
            functions,
            delays: options.delays.clone(),
            queue_notify: wake.clone(),
        };
        let engine = Engine::builder()
            .clock(Arc::new(TokioClock))
            .store(Arc::new(db.clone()))
            .resources(resources::registry(services))
            .spawner(Arc::new(|f| {
                tokio::spawn(f);
            }))
            .build();
        let definition = asl::substitute(DEFINITION, &substitutions(&options));
        let state_machine = engine
            .state_machine(STATE_MACHINE_NAME, &definition)
            .map_err(|errs| {
                SetupError::Definition(
                    errs.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        Ok(LocalWorkflow {
            engine,
            state_machine,
            db,
            options,
            wake,
            in_flight: Arc::default(),
            mail_dir,
            sweeper: std::sync::Mutex::new(None),
        })
    }

    /// Starts removing what is past its retention: now, then every `retention.every`.
    pub fn start_sweeper(&self) {
        let (db, names, retention) = (
            self.db.clone(),
            self.options.names.clone(),
            self.options.retention,
        );
        let mail_dir = self.mail_dir.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(retention.every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let now = asl::clock::system_now_millis();
                match retention::sweep(&db, &names, &retention, mail_dir.as_ref(), now).await {
                    Ok(swept) if swept.is_empty() => {}
                    Ok(swept) => tracing::info!(
                        executions = swept.executions,
                        queue_messages = swept.queue_messages,
                        emails = swept.emails,
                        topic_messages = swept.topic_messages,
                        "removed what was past its retention"
                    ),
                    Err(db::DbError::Closed) => return,
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
            }
        });
        let old = self
            .sweeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    pub fn starter(&self) -> starter::EngineStarter {
        starter::EngineStarter {
            engine: self.engine.clone(),
            state_machine: self.state_machine.clone(),
            db: self.db.clone(),
            in_flight: self.in_flight.clone(),
        }
    }

    /// Re-drives every execution a previous process left RUNNING. Returns how many.
    pub fn resume(&self) -> Result<usize, asl::StoreError> {
        let handles = self.engine.resume_all()?;
        let n = handles.len();
        let starter = self.starter();
        for h in handles {
            tracing::info!(execution_arn = %h.execution_arn, "resuming execution");
            starter.track(h);
        }
        Ok(n)
    }

    /// Starts the queue poller feeding `consumer`.
    pub fn spawn_poller<C: poller::QueueConsumer>(&self, consumer: C) -> poller::PollerHandle {
        let o = &self.options;
        poller::spawn(
            self.db.clone(),
            o.names.clone(),
            consumer,
            poller::PollerConfig {
                queue: o.names.queue.clone(),
                dead_letter_queue: o.names.dead_letter_queue.clone(),
                batch_size: o.batch_size,
                visibility_timeout: o.visibility_timeout,
                max_receive_count: o.max_receive_count,
                poll_interval: o.poll_interval,
            },
            self.wake.clone(),
        )
    }

    /// Executions started or resumed by this process that have not ended.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits (at most `grace`) for running executions, then commits and closes the
    /// database. Executions still running are resumed by the next start.
    pub async fn shutdown(self, grace: Duration) {
        let sweeper = self
            .sweeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = sweeper {
            // A sweep's batches are transactions: stopping between them loses nothing.
            task.abort();
        }
        let deadline = Instant::now() + grace;
        while self.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let db = self.db.clone();
        let _ = tokio::task::spawn_blocking(move || db.close()).await;
    }
}

/// The fulfilment Lambda, in process, as the queue poller's consumer.
pub struct FulfilmentConsumer {
    pub commands: Arc<Commands<SqliteEventStore>>,
}

impl poller::QueueConsumer for FulfilmentConsumer {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        orders_handlers::fulfilment::handle(&self.commands, event).await
    }

    fn failure_reason(&self, message: &SqsMessage) -> String {
        use orders_handlers::fulfilment::{FulfilmentError, FulfilmentRequest};
        match message.body.as_deref() {
            None => FulfilmentError::NoBody.to_string(),
            Some(body) => match serde_json::from_str::<FulfilmentRequest>(body) {
                Err(e) => FulfilmentError::BadBody(e.to_string()).to_string(),
                Ok(r) => format!(
                    "the fulfilment consumer could not record the request for order {}",
                    r.order_id
                ),
            },
        }
    }
}
