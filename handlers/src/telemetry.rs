//! Logging set-up: JSON lines on Lambda (CloudWatch parses them), human lines locally
//! (on stderr, so that a command's output on stdout stays clean): coloured on a terminal
//! only (and not with `NO_COLOR`), so a log redirected to a file has no escape codes; JSON
//! lines with their time with `ORDERS_LOG_FORMAT=json`, for a log collector.
//!
//! What is logged: `RUST_LOG` as `target=level` directives (`info`,
//! `orders_local=debug,warn`); without it, the function's log level from Lambda's advanced
//! logging controls (`AWS_LAMBDA_LOG_LEVEL`); else `info`. A `Targets` filter rather than
//! `EnvFilter`: no regular-expression engine in the Lambda binaries (smaller, quicker init).

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init_json() {
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_target(false)
                .without_time(),
        )
        .with(filter_from_env(LevelFilter::INFO))
        .try_init();
}

/// The variable that picks the local log format: `text` (the default) or `json`.
pub const LOCAL_FORMAT_VAR: &str = "ORDERS_LOG_FORMAT";

/// How the local commands log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalFormat {
    Text { colour: bool },
    Json,
}

impl LocalFormat {
    /// From [`LOCAL_FORMAT_VAR`]'s value, whether stderr is a terminal, and `NO_COLOR`
    /// (which, set and not empty, turns colour off: <https://no-color.org>).
    pub fn choose(
        format: Option<&str>,
        stderr_is_terminal: bool,
        no_color: Option<&std::ffi::OsStr>,
    ) -> Result<Self, String> {
        match format.map(str::trim).filter(|f| !f.is_empty()) {
            None => {}
            Some(f) if f.eq_ignore_ascii_case("text") => {}
            Some(f) if f.eq_ignore_ascii_case("json") => return Ok(LocalFormat::Json),
            Some(other) => {
                return Err(format!(
                    "{LOCAL_FORMAT_VAR} is `{other}`: it takes `text` or `json`"
                ));
            }
        }
        let colour = stderr_is_terminal && no_color.is_none_or(|v| v.is_empty());
        Ok(LocalFormat::Text { colour })
    }
}

/// Local logging on stderr, in the format the environment asks for ([`LocalFormat::choose`]);
/// a bad [`LOCAL_FORMAT_VAR`] is the error. `default` applies when neither level variable
/// is set (the benchmarks use `WARN`: a line per order would be noise in their report, and
/// work that the measurement would include).
pub fn init_local(default: LevelFilter) -> Result<(), String> {
    use std::io::IsTerminal;
    let format = LocalFormat::choose(
        std::env::var(LOCAL_FORMAT_VAR).ok().as_deref(),
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )?;
    let filter = filter_from_env(default);
    let _ = match format {
        LocalFormat::Json => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_target(false)
                    .with_writer(std::io::stderr),
            )
            .with(filter)
            .try_init(),
        LocalFormat::Text { colour } => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(colour)
                    .with_writer(std::io::stderr),
            )
            .with(filter)
            .try_init(),
    };
    Ok(())
}

fn filter_from_env(default: LevelFilter) -> Targets {
    let var = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    let directives = var("RUST_LOG").or_else(|| var("AWS_LAMBDA_LOG_LEVEL"));
    filter(directives.as_deref(), default)
}

/// Unparseable directives fall back to the default rather than silencing the program.
fn filter(directives: Option<&str>, default: LevelFilter) -> Targets {
    // aws-config warns as it walks its chains (no instance metadata service off EC2, a
    // provider without credentials); what it could not find is the caller's one-line error.
    let default = Targets::new()
        .with_default(default)
        .with_target("aws_config", LevelFilter::ERROR);
    match directives.map(str::trim) {
        None => default,
        // Lambda has one level more than tracing.
        Some(d) if d.eq_ignore_ascii_case("fatal") => {
            Targets::new().with_default(LevelFilter::ERROR)
        }
        Some(d) => d.parse().unwrap_or(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    const INFO: LevelFilter = LevelFilter::INFO;

    #[test]
    fn colour_only_on_a_terminal_without_no_color_and_json_on_request() {
        use std::ffi::OsStr;
        let text = |colour| Ok(LocalFormat::Text { colour });
        assert_eq!(LocalFormat::choose(None, true, None), text(true));
        assert_eq!(LocalFormat::choose(None, false, None), text(false));
        assert_eq!(
            LocalFormat::choose(None, true, Some(OsStr::new("1"))),
            text(false)
        );
        // An empty NO_COLOR does not count (no-color.org).
        assert_eq!(
            LocalFormat::choose(None, true, Some(OsStr::new(""))),
            text(true)
        );
        assert_eq!(LocalFormat::choose(Some(" Text "), true, None), text(true));
        assert_eq!(LocalFormat::choose(Some(""), false, None), text(false));
        assert_eq!(
            LocalFormat::choose(Some("JSON"), true, None),
            Ok(LocalFormat::Json)
        );
        let bad = LocalFormat::choose(Some("yaml"), true, None).unwrap_err();
        assert!(
            bad.contains("ORDERS_LOG_FORMAT") && bad.contains("yaml"),
            "{bad}"
        );
    }

    #[test]
    fn by_default_aws_config_says_only_errors() {
        let f = filter(None, INFO);
        assert!(!f.would_enable("aws_config::imds::region", &Level::WARN));
        assert!(f.would_enable("aws_config::imds::region", &Level::ERROR));
        assert!(!f.would_enable("aws_config::meta::credentials::chain", &Level::WARN));
        assert!(f.would_enable("orders_handlers", &Level::INFO));
    }

    #[test]
    fn directives_from_rust_log_or_lambda_levels_and_the_default_otherwise() {
        let f = filter(Some("warn,orders_local=debug"), INFO);
        assert!(f.would_enable("orders_local::store", &Level::DEBUG));
        assert!(!f.would_enable("orders_handlers", &Level::INFO));
        assert!(f.would_enable("orders_handlers", &Level::WARN));

        let lambda = filter(Some("DEBUG"), INFO);
        assert!(lambda.would_enable("anything", &Level::DEBUG));
        assert!(!lambda.would_enable("anything", &Level::TRACE));
        let fatal = filter(Some("FATAL"), INFO);
        assert!(!fatal.would_enable("anything", &Level::WARN));
        assert!(fatal.would_enable("anything", &Level::ERROR));

        for none in [None, Some("not a directive ==")] {
            let f = filter(none, INFO);
            assert!(f.would_enable("anything", &Level::INFO), "{none:?}");
            assert!(!f.would_enable("anything", &Level::DEBUG), "{none:?}");
        }
        let quiet = filter(None, LevelFilter::WARN);
        assert!(!quiet.would_enable("anything", &Level::INFO));
        assert!(quiet.would_enable("anything", &Level::WARN));
    }
}
