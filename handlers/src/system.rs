//! The system adapters for the clock and id ports, used by the Lambda binaries and the
//! local runtime alike.

use orders_domain::Timestamp;
use orders_domain::ports::{Clock, IdGenerator};
use std::sync::Mutex;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            // A clock set before 1970 is broken; the epoch is as good a guess as any.
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// ULIDs from a monotonic generator: ids made in the same millisecond still sort in the
/// order they were made (order ids double as the newest-first tie-breaker).
#[derive(Default)]
pub struct UlidIds {
    generator: Mutex<ulid::Generator>,
}

impl std::fmt::Debug for UlidIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UlidIds")
    }
}

impl UlidIds {
    pub fn new() -> Self {
        Self::default()
    }
}

impl IdGenerator for UlidIds {
    fn next_id(&self) -> String {
        let next = self
            .generator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generate();
        // The generator only fails when 2^80 ids were made in one millisecond.
        next.unwrap_or_else(|_| ulid::Ulid::new()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_domain::ports::{Clock, IdGenerator};

    #[test]
    fn ulids_are_unique_and_sort_in_creation_order() {
        let ids = UlidIds::new();
        let made: Vec<String> = (0..10_000).map(|_| ids.next_id()).collect();
        assert!(made.windows(2).all(|w| w[0] < w[1]));
        assert!(made.iter().all(|id| id.len() == 26));
    }

    #[test]
    fn the_system_clock_is_past_2026() {
        assert!(SystemClock.now() > Timestamp(1_767_225_600_000));
    }
}
