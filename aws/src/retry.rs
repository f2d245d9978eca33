//! Retrying DynamoDB calls: which failures are worth another try, and the backoff
//! between tries (the replay's scans, queries and batch writes; the event log's reads).

use crate::dynamo::describe;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often one call (a batch, a scan page, a query page) is tried before giving up.
pub(crate) const ATTEMPTS: u32 = 12;
const BACKOFF_BASE_MS: u64 = 50;
const BACKOFF_CAP_MS: u64 = 5_000;

/// Sends one read (a Scan or Query page) until it answers, retrying throttling and
/// transient failures with backoff, [`ATTEMPTS`] times at most; `what` names it in the log.
pub(crate) async fn read_with_retries<T, E, R, Fut>(
    what: &str,
    mut send: impl FnMut() -> Fut,
) -> Result<T, SdkError<E, R>>
where
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let mut attempt = 0;
    loop {
        match send().await {
            Err(e) if retryable(&e) && attempt + 1 < ATTEMPTS => {
                attempt += 1;
                tracing::warn!(what, attempt, error = %describe(&e), "read throttled, backing off");
                tokio::time::sleep(backoff(attempt)).await;
            }
            done => return done,
        }
    }
}

/// Throttling, server errors and transport failures are worth another try; anything else
/// (validation, a missing table, access denied) is not.
pub(crate) fn retryable<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => matches!(
            e.err().code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
            )
        ),
        _ => false,
    }
}

/// Exponential backoff with "equal jitter": half the step fixed, half random.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let step = BACKOFF_BASE_MS
        .saturating_mul(1u64 << attempt.min(16))
        .min(BACKOFF_CAP_MS);
    Duration::from_millis(step / 2 + jitter(step / 2 + 1))
}

/// A random number below `bound` (xorshift over a per-call seed; not for anything secret).
fn jitter(bound: u64) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ nanos;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % bound.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            let step = (BACKOFF_BASE_MS << attempt.min(16)).min(BACKOFF_CAP_MS);
            assert!(d >= Duration::from_millis(step / 2), "{attempt}: {d:?}");
            assert!(d <= Duration::from_millis(step + 1), "{attempt}: {d:?}");
        }
    }
}
