//! Injectable time: `Clock` gives "now" and sleeps. `VirtualClock` makes waits instant
//! (tests); `TokioClock` (feature `tokio`) sleeps for real.

use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Time source for the engine. `sleep` must not block the thread.
pub trait Clock: Send + Sync + 'static {
    /// Current time in Unix milliseconds.
    fn now_millis(&self) -> i64;
    /// Completes after `ms` milliseconds of this clock's time.
    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()>;
}

/// Wall-clock "now" in Unix milliseconds.
pub fn system_now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A clock whose sleeps complete immediately and move its time forward, so Wait
/// states, retry backoff and timeouts cost nothing in tests. Sleeps longer than
/// `horizon_ms` never complete (an execution waiting that long stays running).
#[derive(Debug)]
pub struct VirtualClock {
    now: AtomicI64,
    horizon_ms: u64,
}

impl VirtualClock {
    /// Starts at the current wall-clock time.
    pub fn new() -> VirtualClock {
        VirtualClock::starting_at(system_now_millis())
    }

    /// Starts at `ms` (Unix milliseconds).
    pub fn starting_at(ms: i64) -> VirtualClock {
        VirtualClock {
            now: AtomicI64::new(ms),
            horizon_ms: u64::MAX,
        }
    }

    /// Sleeps longer than this stay pending forever.
    pub fn with_horizon(mut self, horizon_ms: u64) -> VirtualClock {
        self.horizon_ms = horizon_ms;
        self
    }

    /// Moves time forward (for tests that poke at timestamps).
    pub fn advance(&self, ms: u64) {
        self.now
            .fetch_add(i64::try_from(ms).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock::new()
    }
}

impl Clock for VirtualClock {
    fn now_millis(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()> {
        if ms > self.horizon_ms {
            return Box::pin(futures_util::future::pending());
        }
        // Concurrent sleepers that started at the same instant end at the same instant.
        let target = self
            .now_millis()
            .saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
        self.now.fetch_max(target, Ordering::SeqCst);
        Box::pin(futures_util::future::ready(()))
    }
}

/// Real time on tokio's timer.
#[cfg(feature = "tokio")]
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

#[cfg(feature = "tokio")]
impl Clock for TokioClock {
    fn now_millis(&self) -> i64 {
        system_now_millis()
    }

    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn virtual_sleep_is_instant() {
        let c = VirtualClock::starting_at(1000);
        assert!(c.sleep(500).now_or_never().is_some());
        assert_eq!(c.now_millis(), 1500);
        let c = c.with_horizon(10);
        assert!(c.sleep(11).now_or_never().is_none());
    }
}
