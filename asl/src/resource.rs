//! Pluggable Task resources. The embedder implements `TaskResource` and registers it
//! by exact ARN or by ARN prefix; the engine owns paths, retries, catches, timeouts
//! and history around the call.

use crate::error::Failure;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a resource returns: the raw result, or an error name and cause.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<Value, Failure>> + Send + 'static>>;

/// Everything a resource may need besides its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskContext {
    /// The Task's `Resource` exactly as written (after substitutions).
    pub resource: String,
    /// The execution's ARN.
    pub execution_arn: String,
    /// The execution's name.
    pub execution_name: String,
    /// The Task state's name.
    pub state_name: String,
    /// Event id of the TaskStateEntered event that started this state visit.
    pub state_entered_event_id: u64,
    /// 0 for the first attempt, then 1, 2, ... for retries.
    pub attempt: u32,
    /// Stable across a crash/restart re-drive: `{execution_arn}/{state_entered_event_id}/{attempt}`.
    /// Use it to de-duplicate side effects.
    pub invocation_key: String,
    /// Set for `.waitForTaskToken` resources: pass it to whoever will call
    /// `Engine::send_task_success` / `send_task_failure`.
    pub task_token: Option<String>,
}

/// A Task resource implementation (SNS publish, SQS send, a local Lambda, ...).
pub trait TaskResource: Send + Sync + 'static {
    /// Called with the effective parameters (after InputPath and Parameters).
    fn invoke(&self, parameters: Value, ctx: TaskContext) -> TaskFuture;
}

/// Lets a plain closure act as a resource.
impl<F> TaskResource for F
where
    F: Fn(Value, TaskContext) -> TaskFuture + Send + Sync + 'static,
{
    fn invoke(&self, parameters: Value, ctx: TaskContext) -> TaskFuture {
        self(parameters, ctx)
    }
}

/// Looks up resources by ARN: exact match first, then the longest registered prefix.
/// `.sync` / `.waitForTaskToken` suffixes are tried stripped too, so registering
/// `arn:aws:states:::sqs:sendMessage` also serves `...sendMessage.waitForTaskToken`.
#[derive(Clone, Default)]
pub struct ResourceRegistry {
    exact: HashMap<String, Arc<dyn TaskResource>>,
    prefixes: Vec<(String, Arc<dyn TaskResource>)>,
}

impl ResourceRegistry {
    /// An empty registry.
    pub fn new() -> ResourceRegistry {
        ResourceRegistry::default()
    }

    /// Serves exactly this resource ARN.
    pub fn register(&mut self, arn: impl Into<String>, r: Arc<dyn TaskResource>) {
        self.exact.insert(arn.into(), r);
    }

    /// Serves every resource ARN starting with `prefix` (e.g. `arn:aws:lambda:`).
    pub fn register_prefix(&mut self, prefix: impl Into<String>, r: Arc<dyn TaskResource>) {
        self.prefixes.push((prefix.into(), r));
        self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    /// The resource serving `arn`, if any.
    pub fn lookup(&self, arn: &str) -> Option<Arc<dyn TaskResource>> {
        let base = strip_pattern(arn);
        for candidate in [arn, base] {
            if let Some(r) = self.exact.get(candidate) {
                return Some(r.clone());
            }
        }
        self.prefixes
            .iter()
            .find(|(p, _)| arn.starts_with(p.as_str()))
            .map(|(_, r)| r.clone())
    }
}

/// The ARN without its integration-pattern suffix.
pub fn strip_pattern(arn: &str) -> &str {
    arn.strip_suffix(".waitForTaskToken")
        .or_else(|| arn.strip_suffix(".sync:2"))
        .or_else(|| arn.strip_suffix(".sync"))
        .unwrap_or(arn)
}

/// How the resource appears in history events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// `arn:aws:states:::service:action[.pattern]` → TaskScheduled etc.
    Service {
        /// e.g. `sqs`, `aws-sdk:sesv2`.
        resource_type: String,
        /// e.g. `sendMessage.waitForTaskToken`.
        resource: String,
    },
    /// A Lambda function ARN used directly → LambdaFunctionScheduled etc.
    LambdaFunction,
    /// An activity ARN → ActivityScheduled etc.
    Activity,
}

/// How a resource ARN shows in history.
pub fn classify(arn: &str) -> ResourceKind {
    // arn:<partition>:states:::service:action (any partition)
    let service_rest = arn
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(':'))
        .and_then(|(_, r)| r.strip_prefix("states:::"));
    if let Some(rest) = service_rest {
        // service:action[.pattern[:n]], or aws-sdk:service:action
        let (ty, res) = match rest.strip_prefix("aws-sdk:") {
            Some(sdk) => match sdk.split_once(':') {
                Some((svc, action)) => (format!("aws-sdk:{svc}"), action.to_string()),
                None => ("aws-sdk".to_string(), sdk.to_string()),
            },
            None => match rest.split_once(':') {
                Some((svc, action)) => (svc.to_string(), action.to_string()),
                None => (rest.to_string(), String::new()),
            },
        };
        return ResourceKind::Service {
            resource_type: ty,
            resource: res,
        };
    }
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.get(2) == Some(&"lambda") {
        return ResourceKind::LambdaFunction;
    }
    if parts.get(2) == Some(&"states") && parts.get(5) == Some(&"activity") {
        return ResourceKind::Activity;
    }
    ResourceKind::Service {
        resource_type: parts.get(2).copied().unwrap_or("unknown").to_string(),
        resource: arn.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_classify() {
        let mut r = ResourceRegistry::new();
        let f: Arc<dyn TaskResource> = Arc::new(|_p: Value, _c: TaskContext| -> TaskFuture {
            Box::pin(async { Ok(Value::Null) })
        });
        r.register("arn:aws:states:::sqs:sendMessage", f.clone());
        r.register_prefix("arn:aws:lambda:", f);
        assert!(
            r.lookup("arn:aws:states:::sqs:sendMessage.waitForTaskToken")
                .is_some()
        );
        assert!(r.lookup("arn:aws:lambda:us-east-1:1:function:x").is_some());
        assert!(r.lookup("arn:aws:states:::sns:publish").is_none());
        assert_eq!(
            classify("arn:aws:states:::aws-sdk:sesv2:sendEmail"),
            ResourceKind::Service {
                resource_type: "aws-sdk:sesv2".into(),
                resource: "sendEmail".into()
            }
        );
        assert_eq!(
            classify("arn:aws:lambda:us-east-1:1:function:x"),
            ResourceKind::LambdaFunction
        );
    }
}
