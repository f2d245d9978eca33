//! `orders states run|validate`: run or check an ASL definition with the `asl` engine.

use asl::{Clock, Engine, ExecutionStatus, ResourceRegistry, ValidationError};
use futures_like::BoxFuture;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `futures::future::BoxFuture` without depending on the futures crate here.
mod futures_like {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object.
    Json,
    /// For people.
    Pretty,
}

#[derive(Debug, clap::Subcommand)]
pub enum StatesCommand {
    /// Run a definition with the built-in local resources and print the outcome and history.
    Run {
        /// Path to the ASL definition (JSON).
        definition: PathBuf,
        /// Execution input: inline JSON, or @FILE to read it from a file.
        #[arg(long)]
        input: Option<String>,
        /// A `${NAME}` DefinitionSubstitution, as NAME=VALUE (repeatable).
        #[arg(long = "substitute", value_name = "NAME=VALUE")]
        substitute: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: OutputFormat,
        /// Execution name.
        #[arg(long, default_value = "local")]
        name: String,
    },
    /// Check a definition: print each problem with its state and field, or `valid`.
    Validate {
        /// Path to the ASL definition (JSON).
        definition: PathBuf,
        /// A `${NAME}` DefinitionSubstitution, as NAME=VALUE (repeatable).
        #[arg(long = "substitute", value_name = "NAME=VALUE")]
        substitute: Vec<String>,
    },
}

/// Real time on tokio's timer (the engine itself is runtime-agnostic).
struct TokioClock;

impl Clock for TokioClock {
    fn now_millis(&self) -> i64 {
        asl::clock::system_now_millis()
    }

    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
    }
}

/// Bad CLI input: one line on stderr, exit code 2.
fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn read_definition(path: &PathBuf, subs: &[String]) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read definition {}: {e}", path.display()))?;
    let mut values = HashMap::new();
    for s in subs {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("--substitute expects NAME=VALUE, got '{s}'"))?;
        if k.is_empty() {
            return Err(format!("--substitute expects NAME=VALUE, got '{s}'"));
        }
        values.insert(k.to_string(), v.to_string());
    }
    Ok(asl::substitute(&text, &values))
}

fn read_input(input: Option<&str>) -> Result<Value, String> {
    let text = match input {
        None => return Ok(json!({})),
        Some(s) => match s.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read input file {file}: {e}"))?,
            None => s.to_string(),
        },
    };
    serde_json::from_str(&text).map_err(|e| format!("--input is not valid JSON: {e}"))
}

fn describe(e: &ValidationError) -> String {
    match &e.state {
        Some(s) => format!(
            "state '{s}', field '{}': {} ({})",
            e.field, e.message, e.location
        ),
        None => format!("field '{}': {} ({})", e.field, e.message, e.location),
    }
}

/// Runs an `orders states` command; returns the process exit code.
pub async fn run(cmd: StatesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StatesCommand::Validate {
            definition,
            substitute,
        } => {
            let text = match read_definition(&definition, &substitute) {
                Ok(t) => t,
                Err(e) => return Ok(usage_error(e)),
            };
            match asl::Definition::parse(&text) {
                Ok(_) => {
                    println!("valid");
                    Ok(ExitCode::SUCCESS)
                }
                Err(errs) => {
                    for e in &errs {
                        println!("{}", describe(e));
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        StatesCommand::Run {
            definition,
            input,
            substitute,
            format,
            name,
        } => {
            let text = match read_definition(&definition, &substitute) {
                Ok(t) => t,
                Err(e) => return Ok(usage_error(e)),
            };
            let input = match read_input(input.as_deref()) {
                Ok(v) => v,
                Err(e) => return Ok(usage_error(e)),
            };
            // No local resources are registered yet: Tasks fail with States.TaskFailed.
            let engine = Engine::builder()
                .clock(Arc::new(TokioClock))
                .resources(ResourceRegistry::new())
                .build();
            let sm_name = definition
                .file_stem()
                .and_then(|s| s.to_str())
                .map(|s| s.split('.').next().unwrap_or(s).to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "local".to_string());
            let sm = match engine.state_machine(&sm_name, &text) {
                Ok(sm) => sm,
                Err(errs) => {
                    let first = errs.first().map(describe).unwrap_or_default();
                    return Ok(usage_error(format!(
                        "invalid definition ({} problem(s)): {first}; run `orders states validate` for all",
                        errs.len()
                    )));
                }
            };
            let handle = match engine.start_execution(&sm, &name, input) {
                Ok(h) => h,
                Err(e) => return Ok(usage_error(e)),
            };
            let outcome = handle.wait().await;
            let history: Vec<Value> = engine
                .history(&outcome.execution_arn)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .iter()
                .map(|e| e.to_value())
                .collect();
            let mut out = serde_json::Map::new();
            out.insert("status".into(), json!(outcome.status.as_str()));
            if let Some(o) = &outcome.output {
                out.insert("output".into(), o.clone());
            }
            if outcome.status != ExecutionStatus::Succeeded {
                out.insert("error".into(), json!(outcome.error));
                out.insert("cause".into(), json!(outcome.cause));
            }
            match format {
                OutputFormat::Json => {
                    out.insert("history".into(), Value::Array(history));
                    println!("{}", Value::Object(out));
                }
                OutputFormat::Pretty => print_pretty(&out, &history),
            }
            Ok(if outcome.status == ExecutionStatus::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn print_pretty(out: &serde_json::Map<String, Value>, history: &[Value]) {
    println!(
        "status: {}",
        out.get("status").and_then(Value::as_str).unwrap_or("?")
    );
    if let Some(o) = out.get("output") {
        println!(
            "output: {}",
            serde_json::to_string_pretty(o).unwrap_or_default()
        );
    }
    for k in ["error", "cause"] {
        if let Some(Value::String(s)) = out.get(k) {
            println!("{k}: {s}");
        }
    }
    println!("history:");
    for e in history {
        let details = e
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.ends_with("EventDetails")))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        println!(
            "  {:>4} {:>4}  {:<28} {}",
            e["id"].as_u64().unwrap_or(0),
            e["previousEventId"].as_u64().unwrap_or(0),
            e["type"].as_str().unwrap_or(""),
            details
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in `dir` (a temporary directory the test holds, so nothing is left behind).
    fn temp_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn substitutions_and_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let p = temp_file(&dir, "sub.json", r#"{"x": "${A}"}"#);
        assert_eq!(
            read_definition(&p, &["A=1".to_string()]).unwrap(),
            r#"{"x": "1"}"#
        );
        assert!(read_definition(&p, &["A".to_string()]).is_err());
        assert!(read_definition(&PathBuf::from("/nonexistent/x.json"), &[]).is_err());
        assert_eq!(read_input(None).unwrap(), json!({}));
        assert_eq!(read_input(Some(r#"{"a":1}"#)).unwrap(), json!({"a": 1}));
        let i = temp_file(&dir, "in.json", "[1]");
        assert_eq!(
            read_input(Some(&format!("@{}", i.display()))).unwrap(),
            json!([1])
        );
        assert!(read_input(Some("{bad")).is_err());
    }

    #[tokio::test]
    async fn run_and_validate_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let ok = temp_file(
            &dir,
            "ok.json",
            r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Result":"${V}","End":true}}}"#,
        );
        let bad = temp_file(
            &dir,
            "bad.json",
            r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"}}}"#,
        );
        let task = temp_file(
            &dir,
            "task.json",
            r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","End":true}}}"#,
        );
        let code = |c: ExitCode| format!("{c:?}");
        let validate = |d: &PathBuf| StatesCommand::Validate {
            definition: d.clone(),
            substitute: vec![],
        };
        let run_cmd = |d: &PathBuf, input: Option<&str>| StatesCommand::Run {
            definition: d.clone(),
            input: input.map(str::to_string),
            substitute: vec!["V=x".into()],
            format: OutputFormat::Json,
            name: "t".into(),
        };
        assert_eq!(
            code(run(validate(&ok)).await.unwrap()),
            code(ExitCode::SUCCESS)
        );
        assert_eq!(
            code(run(validate(&bad)).await.unwrap()),
            code(ExitCode::FAILURE)
        );
        assert_eq!(
            code(run(run_cmd(&ok, None)).await.unwrap()),
            code(ExitCode::SUCCESS)
        );
        // Unregistered resource: the execution fails (States.TaskFailed), exit 1.
        assert_eq!(
            code(run(run_cmd(&task, None)).await.unwrap()),
            code(ExitCode::FAILURE)
        );
        // Bad CLI input: exit 2.
        assert_eq!(
            code(run(run_cmd(&ok, Some("{"))).await.unwrap()),
            code(ExitCode::from(2))
        );
        assert_eq!(
            code(run(run_cmd(&bad, None)).await.unwrap()),
            code(ExitCode::from(2))
        );
    }
}
