//! Console pages: executions.

use super::Console;
use axum::Router;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
}
