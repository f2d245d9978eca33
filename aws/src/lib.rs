//! AWS adapters for the order ports: the DynamoDB event store and read-model store, the
//! Step Functions workflow starter and inspector, configuration from the environment,
//! and the one event item codec shared with the stream projector and the local runtime.
//!
//! A Lambda binary wires them with one configuration load:
//! ```no_run
//! # async fn wire() -> Result<(), orders_aws::ConfigError> {
//! use orders_aws::TrustRoots;
//! let clients = orders_aws::AwsClients::load(TrustRoots::AmazonTrustServices).await?;
//! let store = clients.event_store_from_env()?; // EVENTS_TABLE, IDEMPOTENCY_TABLE
//! let reads = clients.read_models_from_env()?; // READ_MODELS_TABLE
//! let starter = clients.workflow_starter_from_env()?; // STATE_MACHINE_ARN
//! # let _ = (store, reads, starter); Ok(()) }
//! ```

pub mod clients;
pub mod codec;
pub mod config;
mod dynamo;
pub mod event_log;
pub mod event_store;
pub mod read_models;
pub mod replay;
mod retry;
pub mod schema;
pub mod sfn;
#[cfg(feature = "streams")]
pub mod streams;
pub mod trust;

pub use clients::{AwsClients, AwsPorts, Endpoints};
pub use config::{AppConfig, ConfigError, EventStoreConfig, ReadModelsConfig, WorkflowConfig};
pub use dynamo::MAX_TRANSACT_ACTIONS;
pub use event_store::DynamoEventStore;
pub use read_models::DynamoReadModels;
pub use sfn::{
    ExecutionDescription, ExecutionSummary, InspectError, SfnInspector, SfnWorkflowStarter,
    console_url, console_url_for,
};
pub use trust::TrustRoots;
