//! The application: the HTTP API (an axum `Router` generic over the ports), the stream
//! projector, the fulfilment consumer and the workflow-outcome recorder. `src/bin/*` are
//! the thin Lambda entry points.

pub mod api;
pub mod body;
pub mod caller;
pub mod commands;
pub mod fulfilment;
pub mod gateway;
pub mod links;
pub mod problem;
pub mod projector;
pub mod recorder;
pub mod system;
pub mod telemetry;
