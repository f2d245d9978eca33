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
        .with(filter_from_env())
        .try_init();
}

pub fn init_human() {
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_writer(std::io::stderr),
        )
        .with(filter_from_env())
        .try_init();
}

fn filter_from_env() -> Targets {
    let var = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    filter(
        var("RUST_LOG")
            .or_else(|| var("AWS_LAMBDA_LOG_LEVEL"))
            .as_deref(),
    )
}

/// Unparseable directives fall back to `info` rather than silencing the function.
fn filter(directives: Option<&str>) -> Targets {
    let default = Targets::new().with_default(LevelFilter::INFO);
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

    #[test]
    fn directives_from_rust_log_or_lambda_levels_and_info_otherwise() {
        let f = filter(Some("warn,orders_local=debug"));
        assert!(f.would_enable("orders_local::store", &Level::DEBUG));
        assert!(!f.would_enable("orders_handlers", &Level::INFO));
        assert!(f.would_enable("orders_handlers", &Level::WARN));

        let lambda = filter(Some("DEBUG"));
        assert!(lambda.would_enable("anything", &Level::DEBUG));
        assert!(!lambda.would_enable("anything", &Level::TRACE));
        let fatal = filter(Some("FATAL"));
        assert!(!fatal.would_enable("anything", &Level::WARN));
        assert!(fatal.would_enable("anything", &Level::ERROR));

        for none in [None, Some("not a directive ==")] {
            let f = filter(none);
            assert!(f.would_enable("anything", &Level::INFO), "{none:?}");
            assert!(!f.would_enable("anything", &Level::DEBUG), "{none:?}");
        }
    }
}
