//! `asl`: an Amazon States Language (JSONPath) engine that records AWS-shaped
//! execution histories. It knows nothing about the application it runs for.
//!
//! # Embedding
//! ```no_run
//! use asl::{Engine, ResourceRegistry, TaskContext, TaskFuture, VirtualClock};
//! use std::sync::Arc;
//! # async fn demo() {
//! let mut resources = ResourceRegistry::new();
//! resources.register("arn:aws:states:::sns:publish", Arc::new(|params: serde_json::Value, _ctx: TaskContext| -> TaskFuture {
//!     Box::pin(async move { Ok(serde_json::json!({"MessageId": "1", "echo": params})) })
//! }));
//! let engine = Engine::builder()
//!     .resources(resources)
//!     .clock(Arc::new(VirtualClock::new())) // or TokioClock (feature "tokio")
//!     .build();
//! let sm = engine.state_machine("demo", r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#).unwrap();
//! let handle = engine.start_execution(&sm, "exec-1", serde_json::json!({"x": 1})).unwrap();
//! let outcome = handle.wait().await;
//! let history = engine.history(&outcome.execution_arn).unwrap();
//! # }
//! ```
//!
//! * **Definitions**: [`Definition::parse`] validates and reports every problem with its
//!   state and field ([`ValidationError`]); [`substitute()`] applies `${Name}` substitutions.
//! * **Resources**: implement [`TaskResource`] (returns a boxed `Send` future) and register it
//!   by exact ARN or prefix in a [`ResourceRegistry`]. `.waitForTaskToken` tasks get
//!   `TaskContext::task_token`; complete them with [`Engine::send_task_success`] /
//!   [`Engine::send_task_failure`]. An unregistered resource fails with `States.TaskFailed`.
//! * **Time**: a [`Clock`] (now + sleep). [`VirtualClock`] makes waits instant;
//!   `TokioClock` (cargo feature `tokio`) sleeps for real.
//! * **Durability**: an [`ExecutionStore`] receives each history event before the engine
//!   acts on it, plus the execution record. After a restart, [`Engine::resume_all`] re-drives
//!   RUNNING executions from their input, reusing recorded Task results (no second call) and
//!   re-invoking unfinished tasks with the same [`TaskContext::invocation_key`].
//!   Re-driven events are matched to the recorded ones by (previous event id, type, state
//!   name / iteration index), so concurrently interleaved branches replay correctly.
//! * **Executions**: [`Engine::start_execution`] has AWS's named-execution semantics;
//!   [`ExecutionHandle::wait`] drives the execution unless a spawner was configured
//!   ([`EngineBuilder::spawner`], e.g. `tokio::spawn`), in which case it runs in the background.
//! * **History**: [`Engine::history`] returns [`HistoryEvent`]s; [`HistoryEvent::to_value`]
//!   renders the GetExecutionHistory JSON (inputs/outputs as JSON strings, like AWS).

pub mod choice;
pub mod clock;
pub mod definition;
pub mod engine;
pub mod error;
mod executor;
pub mod history;
pub mod intrinsics;
mod map;
pub mod path;
pub mod payload;
pub mod redrive;
pub mod resource;
pub mod retry;
pub mod store;
pub mod substitute;
mod task;
pub mod timestamp;

#[cfg(feature = "tokio")]
pub use clock::TokioClock;
pub use clock::{Clock, VirtualClock};
pub use definition::Definition;
pub use engine::{
    Engine, EngineBuilder, EngineConfig, ExecutionHandle, ExecutionOutcome, ExecutionType, Spawner,
    StateMachine,
};
pub use error::{
    ExecutionAlreadyExists, Failure, RedriveError, StoreError, TaskTokenError, ValidationError,
};
pub use history::HistoryEvent;
pub use resource::{ResourceRegistry, TaskContext, TaskFuture, TaskResource};
pub use store::{ExecutionRecord, ExecutionStatus, ExecutionStore, InMemoryStore, ListFilter};
pub use substitute::substitute;
