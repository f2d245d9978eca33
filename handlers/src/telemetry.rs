//! Logging set-up: JSON lines on Lambda (CloudWatch parses them), human lines locally
//! (on stderr, so that a command's output on stdout stays clean).
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

/// `default` applies when neither variable is set (the benchmarks use `WARN`: a line per
/// order would be noise in their report, and work that the measurement would include).
pub fn init_human(default: LevelFilter) {
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_writer(std::io::stderr),
        )
        .with(filter_from_env(default))
        .try_init();
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
