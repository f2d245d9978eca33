//! The local runtime in one process: SQLite stores, the HTTP API over TCP, and the stream
//! tailer feeding the projector the same DynamoDB stream events Lambda would.

use anyhow::Context;
use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use orders_domain::envelope::EventEnvelope;
use orders_handlers::api::{self, Api};
use orders_handlers::commands::Commands;
use orders_handlers::projector::{LoggingStarter, Projector};
use orders_local::store::{LocalStores, SqliteReadModels, SystemClock, UlidIds};
use orders_local::tailer::{self, StreamHandler, TailerConfig, TailerHandle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
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
}

/// The projector, as the tailer's stream handler.
struct ProjectorStream {
    projector: Projector<SqliteReadModels, LoggingStarter>,
    observer: Option<ProjectionObserver>,
}

impl StreamHandler for ProjectorStream {
    async fn handle(&self, event: Event) -> Result<DynamoDbEventResponse, String> {
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
        let response = self.projector.handle(event).await;
        if let Some(observe) = &self.observer {
            let failed = response.batch_item_failures.len();
            for e in &observed[..observed.len().saturating_sub(failed)] {
                observe(e);
            }
        }
        Ok(response)
    }
}

pub struct Runtime {
    pub addr: SocketAddr,
    pub stores: LocalStores,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    tailer: TailerHandle,
}

impl Runtime {
    pub async fn start(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let dir = config.data_dir.clone();
        let stores = tokio::task::spawn_blocking(move || LocalStores::open(&dir))
            .await
            .context("opening the data directory")?
            .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("listening on {}", config.addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;

        let projector = ProjectorStream {
            projector: Projector::live(stores.read_models.clone(), LoggingStarter),
            observer: config.observer.clone(),
        };
        let tailer = tailer::spawn(
            stores.events.clone(),
            stores.read_models.clone(),
            projector,
            TailerConfig::default(),
        );

        let api = Arc::new(Api {
            commands: Commands::new(
                stores.events.clone(),
                Arc::new(SystemClock),
                Arc::new(UlidIds::new()),
            ),
            reads: stores.read_models.clone(),
        });
        let router = api::router(api);
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
        })
    }

    /// Waits until the projector has handled everything appended so far.
    pub async fn wait_projected(&self) {
        self.tailer.wait_for(self.stores.events.head_seq()).await;
    }

    /// Stops accepting requests, finishes those in flight, then stops the tailer after
    /// its current batch.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        self.server
            .await
            .context("joining the HTTP server")?
            .context("serving HTTP")?;
        self.tailer.shutdown().await;
        Ok(())
    }
}
