//! Configuration from the environment. Each Lambda binary needs a subset of these
//! variables; a missing one is named in the error, all of them at once.
//!
//! | variable | used by |
//! |---|---|
//! | `EVENTS_TABLE` | the event store (events, key `aggregate_id` + `version`) |
//! | `IDEMPOTENCY_TABLE` | the event store (idempotency records, key `idempotency_key`) |
//! | `READ_MODELS_TABLE` | the read-model store (`pk`/`sk`, GSI `by_customer`) |
//! | `STATE_MACHINE_ARN` | the workflow starter and inspector |
//!
//! Endpoints, region and credentials come from the SDK's own chain (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, …), see [`crate::clients`].

pub const EVENTS_TABLE: &str = "EVENTS_TABLE";
pub const IDEMPOTENCY_TABLE: &str = "IDEMPOTENCY_TABLE";
pub const READ_MODELS_TABLE: &str = "READ_MODELS_TABLE";
pub const STATE_MACHINE_ARN: &str = "STATE_MACHINE_ARN";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing environment variable{}: {}", if .0.len() == 1 { "" } else { "s" }, .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Reads variables through `lookup` (the process environment in production, a map in
/// tests), collecting every missing or empty one before failing.
struct Reader<F> {
    lookup: F,
    missing: Vec<&'static str>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn new(lookup: F) -> Self {
        Reader {
            lookup,
            missing: Vec::new(),
        }
    }

    fn get(&mut self, name: &'static str) -> String {
        match (self.lookup)(name).map(|v| v.trim().to_string()) {
            Some(v) if !v.is_empty() => v,
            _ => {
                self.missing.push(name);
                String::new()
            }
        }
    }

    fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.missing.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Missing(self.missing))
        }
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The event store's two tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStoreConfig {
    pub events_table: String,
    pub idempotency_table: String,
}

/// The read-model table. A blue/green rebuild replays into a new table by naming it here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModelsConfig {
    pub table: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowConfig {
    pub state_machine_arn: String,
}

/// Everything [`crate::AwsPorts`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub event_store: EventStoreConfig,
    pub read_models: ReadModelsConfig,
    pub workflow: WorkflowConfig,
}

impl EventStoreConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_lookup)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader::new(lookup);
        let c = Self::read(&mut r);
        r.finish(c)
    }

    fn read<F: Fn(&str) -> Option<String>>(r: &mut Reader<F>) -> Self {
        EventStoreConfig {
            events_table: r.get(EVENTS_TABLE),
            idempotency_table: r.get(IDEMPOTENCY_TABLE),
        }
    }
}

impl ReadModelsConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_lookup)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader::new(lookup);
        let c = Self::read(&mut r);
        r.finish(c)
    }

    fn read<F: Fn(&str) -> Option<String>>(r: &mut Reader<F>) -> Self {
        ReadModelsConfig {
            table: r.get(READ_MODELS_TABLE),
        }
    }
}

impl WorkflowConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_lookup)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader::new(lookup);
        let c = Self::read(&mut r);
        r.finish(c)?.validated()
    }

    fn read<F: Fn(&str) -> Option<String>>(r: &mut Reader<F>) -> Self {
        WorkflowConfig {
            state_machine_arn: r.get(STATE_MACHINE_ARN),
        }
    }

    fn validated(self) -> Result<Self, ConfigError> {
        if crate::sfn::region_of_arn(&self.state_machine_arn).is_none()
            || !self.state_machine_arn.contains(":stateMachine:")
        {
            return Err(ConfigError::Invalid {
                name: STATE_MACHINE_ARN,
                reason: format!(
                    "`{}` is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)",
                    self.state_machine_arn
                ),
            });
        }
        Ok(self)
    }
}

impl AppConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_lookup)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader::new(lookup);
        let event_store = EventStoreConfig::read(&mut r);
        let read_models = ReadModelsConfig::read(&mut r);
        let workflow = WorkflowConfig::read(&mut r);
        let c = r.finish(AppConfig {
            event_store,
            read_models,
            workflow,
        })?;
        Ok(AppConfig {
            workflow: c.workflow.validated()?,
            ..c
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn every_missing_variable_is_named() {
        let err =
            AppConfig::from_lookup(env(&[(EVENTS_TABLE, "events"), (READ_MODELS_TABLE, " ")]))
                .unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing(vec![
                IDEMPOTENCY_TABLE,
                READ_MODELS_TABLE,
                STATE_MACHINE_ARN
            ])
        );
        assert_eq!(
            err.to_string(),
            "missing environment variables: IDEMPOTENCY_TABLE, READ_MODELS_TABLE, STATE_MACHINE_ARN"
        );
        let one = ReadModelsConfig::from_lookup(env(&[])).unwrap_err();
        assert_eq!(
            one.to_string(),
            "missing environment variable: READ_MODELS_TABLE"
        );
    }

    #[test]
    fn a_binary_needs_only_its_subset() {
        let c = EventStoreConfig::from_lookup(env(&[
            (EVENTS_TABLE, "ev"),
            (IDEMPOTENCY_TABLE, "idem"),
        ]))
        .unwrap();
        assert_eq!(c.events_table, "ev");
        assert_eq!(c.idempotency_table, "idem");
    }

    #[test]
    fn the_state_machine_arn_is_checked() {
        let err = WorkflowConfig::from_lookup(env(&[(STATE_MACHINE_ARN, "orders")])).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    name: STATE_MACHINE_ARN,
                    ..
                }
            ),
            "{err}"
        );
        let ok = WorkflowConfig::from_lookup(env(&[(
            STATE_MACHINE_ARN,
            "arn:aws:states:eu-west-1:123456789012:stateMachine:orders",
        )]))
        .unwrap();
        assert!(ok.state_machine_arn.ends_with(":orders"));
    }
}
