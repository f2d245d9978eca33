//! Ids for tests against stores that outlive a run (DynamoDB Local, moto, files).

use std::sync::atomic::{AtomicU64, Ordering};

/// An id (table, queue, execution or order name) no other test, process or earlier run uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
