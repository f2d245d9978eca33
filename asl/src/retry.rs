//! Retry and Catch: error-name matching and backoff delays.

use crate::definition::ResultPathSpec;
use serde_json::Value;

/// `JitterStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    None,
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub jitter: Jitter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub result_path: ResultPathSpec,
    pub next: String,
    pub assign: Option<Value>,
}

/// Does an `ErrorEquals` list match this error? `States.ALL` matches everything;
/// `States.TaskFailed` matches every error not named `States.*` (task errors).
/// `States.Runtime` is terminal: nothing catches or retries it.
pub fn matches(error_equals: &[String], error: &str) -> bool {
    if error == "States.Runtime" {
        return false;
    }
    error_equals.iter().any(|e| {
        e == error
            || e == "States.ALL"
            || (e == "States.TaskFailed" && !error.starts_with("States."))
    })
}

impl Retrier {
    /// Delay before retry number `attempt` (0-based), in milliseconds.
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let mut secs = self.interval_seconds * self.backoff_rate.powi(attempt.min(1000) as i32);
        if let Some(max) = self.max_delay_seconds {
            secs = secs.min(max);
        }
        if self.jitter == Jitter::Full {
            use rand::Rng;
            secs = rand::rng().random_range(0.0..=secs.max(0.0));
        }
        if !secs.is_finite() || secs < 0.0 {
            return 0;
        }
        (secs * 1000.0).min(1.0e15) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let all = vec!["States.ALL".to_string()];
        assert!(matches(&all, "Custom"));
        assert!(!matches(&all, "States.Runtime"));
        assert!(matches(
            &["States.TaskFailed".to_string()],
            "Lambda.Unknown"
        ));
        assert!(!matches(
            &["States.TaskFailed".to_string()],
            "States.Timeout"
        ));
    }

    #[test]
    fn backoff() {
        let r = Retrier {
            error_equals: vec![],
            interval_seconds: 1.0,
            max_attempts: 3,
            backoff_rate: 2.0,
            max_delay_seconds: Some(3.0),
            jitter: Jitter::None,
        };
        assert_eq!(r.delay_ms(0), 1000);
        assert_eq!(r.delay_ms(1), 2000);
        assert_eq!(r.delay_ms(2), 3000);
    }
}
