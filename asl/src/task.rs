//! Task states: scheduling, invoking the resource (request/response, callback and
//! `.sync` patterns), heartbeats, timeouts and the Task/LambdaFunction/Activity events.

use crate::definition::{Dyn, State, StateKind};
use crate::engine::{PendingToken, lock};
use crate::error::Failure;
use crate::executor::{Exec, Res, Thread, Visit};
use crate::history::{HistoryEvent, error_details, not_truncated};
use crate::path::to_json_string;
use crate::payload::Vars;
use crate::resource::{ResourceKind, TaskContext, classify};
use base64::Engine as _;
use futures_channel::oneshot;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

impl Exec {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn task(
        &self,
        st: &State,
        resource: &str,
        timeout: Option<&Dyn<u64>>,
        heartbeat: Option<&Dyn<u64>>,
        eff: &Value,
        vars: &Vars,
        th: &mut Thread,
        v: &Visit<'_>,
        attempt: u32,
    ) -> Res<Value> {
        let credentials = match &st.kind {
            StateKind::Task { credentials, .. } => credentials.as_ref(),
            _ => None,
        };
        // Callback tasks and `.sync` jobs both finish through the token: the resource's
        // immediate answer is the TaskSubmitted output.
        let wait_token = resource.ends_with(".waitForTaskToken") || resource.contains(".sync");
        let invocation_key = format!("{}/{}/{attempt}", self.arn, v.entered_id);
        let token = wait_token.then(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(invocation_key.as_bytes())
        });
        let tv = Visit {
            state: v.state,
            entered_ms: v.entered_ms,
            entered_id: v.entered_id,
            item: None,
            token: token.as_deref(),
            retry_count: v.retry_count,
        };
        let params = match &st.parameters {
            Some(p) => self.template(p, eff, vars, &tv)?,
            None => eff.clone(),
        };
        let timeout_s = match timeout {
            Some(d) => Some(self.dyn_num(d, "TimeoutSecondsPath", eff, vars, &tv)?),
            None => None,
        };
        let heartbeat_s = match heartbeat {
            Some(d) => Some(self.dyn_num(d, "HeartbeatSecondsPath", eff, vars, &tv)?),
            None => None,
        };
        let kind = classify(resource);
        let (scheduled_ty, started_ty, ok_ty, fail_ty, timeout_ty, prefix) = match &kind {
            ResourceKind::LambdaFunction => (
                "LambdaFunctionScheduled",
                "LambdaFunctionStarted",
                "LambdaFunctionSucceeded",
                "LambdaFunctionFailed",
                "LambdaFunctionTimedOut",
                "lambdaFunction",
            ),
            ResourceKind::Activity => (
                "ActivityScheduled",
                "ActivityStarted",
                "ActivitySucceeded",
                "ActivityFailed",
                "ActivityTimedOut",
                "activity",
            ),
            ResourceKind::Service { .. } => (
                "TaskScheduled",
                "TaskStarted",
                "TaskSucceeded",
                "TaskFailed",
                "TaskTimedOut",
                "task",
            ),
        };
        let res_fields: Vec<(&str, Value)> = match &kind {
            ResourceKind::Service {
                resource_type,
                resource,
            } => vec![
                ("resourceType", json!(resource_type)),
                ("resource", json!(resource)),
            ],
            _ => Vec::new(),
        };
        let mut sched = Map::new();
        match &kind {
            ResourceKind::Service { .. } => {
                for (k, val) in &res_fields {
                    sched.insert((*k).to_string(), val.clone());
                }
                sched.insert("region".into(), json!(self.inner.config.region));
                sched.insert("parameters".into(), json!(to_json_string(&params)));
            }
            _ => {
                sched.insert("resource".into(), json!(resource));
                sched.insert("input".into(), json!(to_json_string(&params)));
                sched.insert("inputDetails".into(), not_truncated());
            }
        }
        if let Some(t) = timeout_s {
            sched.insert("timeoutInSeconds".into(), json!(t));
        }
        if let Some(h) = heartbeat_s {
            sched.insert("heartbeatInSeconds".into(), json!(h));
        }
        if let Some(c) = credentials {
            // Credentials.RoleArn (static, path, variable or intrinsic) → taskCredentials.roleArn
            if let Value::Object(m) = self.template(c, eff, vars, &tv)?
                && let Some(role) = m.get("RoleArn")
            {
                sched.insert("taskCredentials".into(), json!({"roleArn": role}));
            }
        }
        self.emit(
            th,
            scheduled_ty,
            Some((
                format!("{prefix}ScheduledEventDetails"),
                Value::Object(sched),
            )),
        );
        let started_details = match &kind {
            ResourceKind::Service { .. } => Some((
                "taskStartedEventDetails".to_string(),
                Value::Object(
                    res_fields
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), v.clone()))
                        .collect(),
                ),
            )),
            ResourceKind::Activity => Some(("activityStartedEventDetails".into(), json!({}))),
            ResourceKind::LambdaFunction => None,
        };
        let started_id = self.emit(th, started_ty, started_details);

        let outcome: Result<Value, (Failure, bool)> = match self.replayed_result(started_id) {
            Some(ev) => replayed_outcome(&ev),
            None => {
                self.invoke(
                    resource,
                    params,
                    &tv,
                    &invocation_key,
                    token.clone(),
                    (timeout_s, heartbeat_s),
                    th,
                    &res_fields,
                )
                .await
            }
        };
        match outcome {
            Ok(out) => {
                // One serialization serves the size limit and the history event.
                let out_text = to_json_string(&out);
                self.size_check_text(resource, &out_text).inspect_err(|f| {
                    self.emit(
                        th,
                        fail_ty,
                        Some(error_details(
                            &format!("{prefix}FailedEventDetails"),
                            Some(&f.error),
                            f.cause.as_deref(),
                            &res_fields,
                        )),
                    );
                })?;
                let mut d: Map<String, Value> = res_fields
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.clone()))
                    .collect();
                d.insert("output".into(), Value::String(out_text));
                d.insert("outputDetails".into(), not_truncated());
                self.emit(
                    th,
                    ok_ty,
                    Some((format!("{prefix}SucceededEventDetails"), Value::Object(d))),
                );
                Ok(out)
            }
            Err((f, timed_out)) => {
                let (ty, key) = if timed_out {
                    (timeout_ty, format!("{prefix}TimedOutEventDetails"))
                } else {
                    (fail_ty, format!("{prefix}FailedEventDetails"))
                };
                self.emit(
                    th,
                    ty,
                    Some(error_details(
                        &key,
                        Some(f.error.as_str()).filter(|e| !e.is_empty()),
                        f.cause.as_deref(),
                        &res_fields,
                    )),
                );
                Err(f)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn invoke(
        &self,
        resource: &str,
        params: Value,
        v: &Visit<'_>,
        key: &str,
        token: Option<String>,
        (timeout_s, heartbeat_s): (Option<u64>, Option<u64>),
        th: &mut Thread,
        res_fields: &[(&str, Value)],
    ) -> Result<Value, (Failure, bool)> {
        let Some(r) = self.inner.resources.lookup(resource) else {
            return Err((
                Failure::new(
                    "States.TaskFailed",
                    format!("No task resource is registered for '{resource}' in this runtime"),
                ),
                false,
            ));
        };
        let ctx = TaskContext {
            resource: resource.to_string(),
            execution_arn: self.arn.clone(),
            execution_name: self.name.clone(),
            state_name: v.state.to_string(),
            state_entered_event_id: v.entered_id,
            attempt: v.retry_count.unwrap_or(0),
            invocation_key: key.to_string(),
            task_token: token.clone(),
        };
        // Registered before the call, so a resource may complete the token at once.
        let rx = token.as_ref().map(|t| {
            let (done, rx) = oneshot::channel();
            let (heartbeat, beats) = futures_channel::mpsc::unbounded();
            lock(&self.inner.tokens).insert(t.clone(), PendingToken { done, heartbeat });
            (rx, beats)
        });
        // Forget the token however this ends (also when the execution is stopped and
        // this future dropped), so a late send_task_success is answered "invalid".
        let _forget = TokenGuard {
            exec: self,
            token: token.clone(),
        };
        let call = async {
            let first = r.invoke(params, ctx).await;
            match (first, rx) {
                (Err(f), _) => Err((f, false)),
                (Ok(v), None) => Ok(v),
                (Ok(submitted), Some(rx)) => {
                    let mut d: Map<String, Value> = res_fields
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), v.clone()))
                        .collect();
                    d.insert("output".into(), json!(to_json_string(&submitted)));
                    d.insert("outputDetails".into(), not_truncated());
                    self.emit(
                        th,
                        "TaskSubmitted",
                        Some(("taskSubmittedEventDetails".into(), Value::Object(d))),
                    );
                    self.await_token(rx, heartbeat_s).await
                }
            }
        };
        match timeout_s {
            Some(t) => {
                let sleep = self.inner.clock.sleep(t.saturating_mul(1000));
                futures_util::pin_mut!(call);
                match futures_util::future::select(call, sleep).await {
                    futures_util::future::Either::Left((r, _)) => r,
                    futures_util::future::Either::Right(_) => {
                        Err((Failure::new("States.Timeout", ""), true))
                    }
                }
            }
            None => call.await,
        }
    }

    /// Waits for the token's completion; without a heartbeat for `heartbeat_s` seconds
    /// the task times out (AWS records `States.Timeout`).
    pub(crate) async fn await_token(
        &self,
        (mut rx, mut beats): (
            oneshot::Receiver<Result<Value, Failure>>,
            futures_channel::mpsc::UnboundedReceiver<()>,
        ),
        heartbeat_s: Option<u64>,
    ) -> Result<Value, (Failure, bool)> {
        use futures_util::StreamExt;
        use futures_util::future::{Either, select};
        loop {
            let timer: BoxFuture<'static, ()> = match heartbeat_s {
                Some(h) => self.inner.clock.sleep(h.saturating_mul(1000)),
                None => Box::pin(futures_util::future::pending()),
            };
            match select(&mut rx, select(beats.next(), timer)).await {
                Either::Left((Ok(r), _)) => return r.map_err(|f| (f, false)),
                Either::Left((Err(_), _)) => {
                    return Err((
                        Failure::new("States.TaskFailed", "the task token was dropped"),
                        false,
                    ));
                }
                Either::Right((Either::Left((Some(()), _)), _)) => continue,
                Either::Right((Either::Left((None, _)), _)) => {
                    // No heartbeat sender left: only completion can end the wait now.
                    return match (&mut rx).await {
                        Ok(r) => r.map_err(|f| (f, false)),
                        Err(_) => Err((
                            Failure::new("States.TaskFailed", "the task token was dropped"),
                            false,
                        )),
                    };
                }
                Either::Right((Either::Right(_), _)) => {
                    return Err((Failure::new("States.Timeout", ""), true));
                }
            }
        }
    }
}

struct TokenGuard<'a> {
    exec: &'a Exec,
    token: Option<String>,
}

impl Drop for TokenGuard<'_> {
    fn drop(&mut self) {
        if let Some(t) = &self.token {
            lock(&self.exec.inner.tokens).remove(t);
        }
    }
}

/// Turns a recorded completion event back into the task's outcome.
pub(crate) fn replayed_outcome(ev: &HistoryEvent) -> Result<Value, (Failure, bool)> {
    if ev.event_type.ends_with("Succeeded") {
        let out = ev
            .detail("output")
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        return Ok(out);
    }
    let error = ev
        .detail("error")
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let cause = ev
        .detail("cause")
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_string);
    Err((
        Failure::bare(error, cause),
        ev.event_type.ends_with("TimedOut"),
    ))
}
