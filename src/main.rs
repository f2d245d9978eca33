//! `orders`: the local runtime and the tools around it.

use anyhow::Context;
use clap::{Parser, Subcommand};
use orders::bench;
use orders::browser_guard;
use orders::client::Connection;
use orders::runtime::{Runtime, RuntimeConfig};
use orders_domain::projection::{AsOf, view_as_of};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

// glibc's malloc took a fifth of the runtime's CPU under load (many small JSON values and
// strings per order, freed on other threads); mimalloc is built for that pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod aws_access;
mod aws_dead_letters;
mod bench_e2e;
mod cli_args;
mod log_cmd;
mod projections_aws;
mod projections_cmd;
mod replay_aws;
mod replay_cmd;
mod sales_cmd;
mod states_cmd;
mod verify_cmd;
mod workflow_cmd;

#[derive(Parser)]
#[command(
    name = "orders",
    version,
    about = "Any Company Online's event-sourced order backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole local stack: HTTP API, event store, stream projector, order workflow.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000", env = "ORDERS_ADDR")]
        addr: SocketAddr,
        #[command(flatten)]
        dir: cli_args::DataDir,
        /// A host name the server also answers to (repeatable; IP addresses and
        /// `localhost` always work). Others are refused, so that no web page can reach
        /// it by DNS rebinding.
        #[arg(
            long = "allowed-host",
            env = "ORDERS_ALLOWED_HOSTS",
            value_delimiter = ','
        )]
        allowed_hosts: Vec<String>,
        /// The origin of a web front-end that calls the API from the browser, such as
        /// http://localhost:5173 (repeatable): answered with CORS headers, and trusted by
        /// the cross-site request check. Pages of other origins stay refused.
        #[arg(
            long = "allow-origin",
            env = "ORDERS_ALLOWED_ORIGINS",
            value_delimiter = ',',
            value_parser = browser_guard::parse_origin
        )]
        allowed_origins: Vec<String>,
        /// Play the deployed stack's authorizers: the order routes want a token from
        /// `orders token` (`Authorization: Bearer …`), and a customer touches only their
        /// own orders, as on AWS.
        #[arg(long, env = "ORDERS_AUTH")]
        auth: bool,
        /// Play the deployed stage's throttling: each API route takes 100 requests/s with
        /// bursts of 200 (template.yaml's DefaultRouteSettings), and answers 429 beyond.
        #[arg(long, env = "ORDERS_THROTTLE")]
        throttle: bool,
        #[command(flatten)]
        workflow: workflow_cmd::WorkflowArgs,
    },
    /// A token for a server started with --auth: a customer's, the warehouse's or the back
    /// office's (these two stand in for a SigV4 signature by that IAM principal, and reach
    /// the one route its policy allows on AWS: the ship route, the sales report).
    Token {
        /// The customer id the token is for (its `sub`).
        #[arg(
            long,
            required_unless_present_any = ["warehouse", "back_office"],
            conflicts_with_all = ["warehouse", "back_office"]
        )]
        customer: Option<String>,
        /// The customer's verified e-mail address (their orders must use it).
        #[arg(long, requires = "customer")]
        email: Option<String>,
        /// The warehouse's token instead: it reports shipments (POST /orders/{id}/ship).
        #[arg(long, conflicts_with = "back_office")]
        warehouse: bool,
        /// The back office's token instead: it reads the sales report (GET /sales/daily).
        #[arg(long)]
        back_office: bool,
        /// Hours the token is valid.
        #[arg(long, default_value_t = 12)]
        hours: u64,
        #[command(flatten)]
        dir: cli_args::DataDir,
    },
    /// The local mailbox (emails the workflow sent through SES).
    Mail(workflow_cmd::MailArgs),
    /// The local fulfilment queue and its dead-letter queue.
    Queue(workflow_cmd::QueueArgs),
    /// The local order topic (SNS).
    Topic(workflow_cmd::TopicArgs),
    /// Workflow executions and their histories.
    Executions(workflow_cmd::ExecutionsArgs),
    /// Place an order against a running server (the sample order, or a JSON file).
    Submit {
        /// The server (default: the one running on --data-dir, else http://127.0.0.1:3000).
        #[arg(long, env = "ORDERS_URL")]
        url: Option<String>,
        #[command(flatten)]
        dir: cli_args::DataDir,
        /// A JSON order body; `-` reads standard input. Default: the README's sample order.
        file: Option<PathBuf>,
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Sent as `Authorization: Bearer …` (a server started with --auth wants one).
        #[arg(long, env = "ORDERS_TOKEN")]
        token: Option<String>,
    },
    /// Print one order's events from the local event store, or (--view) its view folded
    /// from them; up to a version or a moment with --version or --at.
    Events {
        order_id: String,
        #[command(flatten)]
        dir: cli_args::DataDir,
        /// Print the order's view as the projector's fold builds it from these events.
        #[arg(long)]
        view: bool,
        /// Only up to the event of this version.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "at")]
        version: Option<u64>,
        /// Only up to this moment (UTC, RFC 3339, such as 2026-11-04T15:30:00Z).
        #[arg(long)]
        at: Option<orders_domain::Timestamp>,
        /// Read the deployed stack's DynamoDB event table instead (standard credential
        /// chain): the one --stack names, else EVENTS_TABLE.
        #[arg(long)]
        aws: bool,
        /// With --aws: the stack (the name given to `sam deploy`).
        #[arg(long, env = "ORDERS_STACK")]
        stack: Option<String>,
    },
    /// The sales report: orders placed and cancelled, and the net amount, per day and
    /// currency (the `daily_sales` read model), with totals.
    Sales(sales_cmd::SalesArgs),
    /// The events of every order, in the order they happened: the log's tail, or a time
    /// range (--since, --until), of one type if asked (locally, or --aws from the
    /// deployed event table).
    Log(log_cmd::LogArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Rebuild projections from the event log (blue/green; never fires side effects).
    Replay(replay_cmd::ReplayArgs),
    /// Write a realistic order history straight into the local event store.
    Seed(replay_cmd::SeedArgs),
    /// Projections: their generations, each consumer's position in the log, interrupted
    /// replays; drop generations nobody reads and give their space back to the disk.
    Projections(projections_cmd::ProjectionsArgs),
    /// Records the projector or a replay could not process, parked with their reason.
    DeadLetters(projections_cmd::DeadLettersArgs),
    /// Run or validate Amazon States Language definitions with the built-in engine.
    States {
        #[command(subcommand)]
        command: states_cmd::StatesCommand,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// POST /orders against an in-process runtime: orders/s, latency, projection lag.
    Api {
        #[command(flatten)]
        load: bench::Load,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// End to end: POST /orders until each execution succeeded with its three effects.
    E2e(bench_e2e::E2eArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    quiet_on_a_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let default_level = match cli.command {
        Cmd::Bench { .. } => tracing::level_filters::LevelFilter::WARN,
        _ => tracing::level_filters::LevelFilter::INFO,
    };
    if let Err(e) = orders_handlers::telemetry::init_local(default_level) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `orders executions list | head`: the reader went away, which is no error of ours. Rust
/// ignores SIGPIPE, so `println!` panics on the closed pipe (a panic message and a
/// backtrace); this ends the process quietly instead, with the status a shell gives a
/// process that SIGPIPE ended (128 + 13), as other command-line tools do. Sockets are not
/// concerned: their writes return the error to the server's code.
fn quiet_on_a_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or_default();
        let printing = message.starts_with("failed printing to stdout")
            || message.starts_with("failed printing to stderr");
        if printing && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

/// An error and its causes on one line, without the causes that only say again what the
/// line already ends with: a wrapper that quotes its source, or SQLite's "Error code 26:
/// file is not a database" under "file is not a database".
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let last_clause = text.rsplit(": ").next().unwrap_or(&text);
        if !line.is_empty() && (line.ends_with(&text) || line.ends_with(last_clause)) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Serve {
            addr,
            dir: cli_args::DataDir { data_dir },
            allowed_hosts,
            allowed_origins,
            auth,
            throttle,
            workflow,
        } => {
            let config = RuntimeConfig {
                addr,
                data_dir,
                observer: None,
                allowed_hosts,
                allowed_origins,
                auth,
                throttle,
            };
            serve(config, workflow.options()?).await
        }
        Cmd::Mail(args) => workflow_cmd::mail(args).await,
        Cmd::Queue(args) => workflow_cmd::queue(args).await,
        Cmd::Topic(args) => workflow_cmd::topic(args).await,
        Cmd::Executions(args) => workflow_cmd::executions(args).await,
        Cmd::Bench {
            what: BenchCmd::E2e(args),
        } => bench_e2e::run(args).await,
        Cmd::Submit {
            url,
            dir: cli_args::DataDir { data_dir },
            file,
            idempotency_key,
            token,
        } => {
            let url = Connection::server_url(url, &data_dir);
            submit(&url, file, idempotency_key, token).await
        }
        Cmd::Token {
            customer,
            email,
            warehouse,
            back_office,
            hours,
            dir: cli_args::DataDir { data_dir },
        } => {
            use orders::local_auth::{Holder, Key};
            let holder = match (customer, warehouse, back_office) {
                (Some(id), _, _) => {
                    anyhow::ensure!(!id.trim().is_empty(), "--customer must not be empty");
                    Holder::Customer { id, email }
                }
                (None, true, _) => Holder::Warehouse,
                (None, false, _) => Holder::BackOffice,
            };
            anyhow::ensure!(
                (1..=24 * 366).contains(&hours),
                "--hours must be between 1 and 8784"
            );
            let key = Key::load_or_create(&data_dir)?;
            println!("{}", key.mint(&holder, Duration::from_secs(hours * 3600))?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Events {
            order_id,
            dir,
            view,
            version,
            at,
            aws,
            stack,
        } => {
            let as_of = match (version, at) {
                (Some(v), _) => AsOf::Version(v),
                (None, Some(t)) => AsOf::At(t),
                (None, None) => AsOf::Latest,
            };
            let stack = aws_access::stack_for(aws, stack)?;
            dir.refuse_with_aws(aws)?;
            let data_dir = dir.data_dir;
            let (events, place) = if aws {
                aws_access::order_events(&order_id, stack.as_deref()).await?
            } else {
                (
                    local_events(&order_id, &data_dir).await?,
                    data_dir.display().to_string(),
                )
            };
            anyhow::ensure!(!events.is_empty(), "order {order_id} not found in {place}");
            print_events(&events, as_of, view)
        }
        Cmd::Sales(args) => sales_cmd::run(args).await,
        Cmd::Log(args) => log_cmd::run(args).await,
        Cmd::Bench {
            what: BenchCmd::Api { load, json },
        } => {
            let report = bench::api(load).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "POST /orders: {} connections{}, {:.1} s\n  orders/s      {:.0} ({} orders, {} errors)\n  latency p50   {:.2} ms\n  latency p99   {:.2} ms (max {:.2} ms)\n  projection lag p50 {:.1} ms, p99 {:.1} ms ({} samples)",
                    report.connections,
                    report
                        .target_rate
                        .map(|r| format!(" at {r}/s"))
                        .unwrap_or_default(),
                    report.seconds,
                    report.orders_per_sec,
                    report.orders,
                    report.errors,
                    report.latency_ms_p50,
                    report.latency_ms_p99,
                    report.latency_ms_max,
                    report.lag_ms_p50,
                    report.lag_ms_p99,
                    report.lag_samples,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::States { command } => states_cmd::run(command).await,
        Cmd::Replay(args) => replay_cmd::replay(args).await,
        Cmd::Seed(args) => replay_cmd::seed(args).await,
        Cmd::Projections(args) => projections_cmd::projections(args).await,
        Cmd::DeadLetters(args) => projections_cmd::dead_letters(args).await,
    }
}

async fn serve(
    config: RuntimeConfig,
    workflow: Option<orders_local::workflow::WorkflowOptions>,
) -> anyhow::Result<ExitCode> {
    let data_dir = config.data_dir.clone();
    let runtime = match workflow {
        Some(options) => Runtime::start_with_workflow(config, options).await?,
        None => Runtime::start(config).await?,
    };
    // Status lines must not panic when stdout is gone (a closed pipe, a detached terminal).
    say(&format!(
        "orders: listening on http://{} (data in {}); Ctrl-C stops",
        runtime.addr,
        data_dir.display()
    ));
    shutdown_signal().await;
    say("orders: stopping");
    runtime.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// Help and the version print as clap writes them; a usage mistake is one line, like
/// every other error of the command line (clap's own adds a usage block and a blank line).
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let code = ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return code;
    }
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // The message (with what it lists on the next lines, such as the missing arguments),
    // then clap's own pointer to the help ("For more information, try ...").
    let mut message = String::new();
    for line in lines
        .iter()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
    {
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
        }
        message.push_str(line);
    }
    if message.is_empty() {
        message.push_str("error: invalid arguments");
    }
    match lines
        .last()
        .filter(|l| l.starts_with("For more information"))
    {
        Some(hint) => eprintln!("{message} ({})", hint.trim_end_matches('.').to_lowercase()),
        None => eprintln!("{message}"),
    }
    code
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn submit(
    url: &str,
    file: Option<PathBuf>,
    key: Option<String>,
    token: Option<String>,
) -> anyhow::Result<ExitCode> {
    let body = match file {
        None => serde_json::to_vec(&orders::sample::order("c-42"))?,
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading stdin")?;
            buf
        }
        Some(p) => std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
    };
    let mut conn = Connection::to_server(url, "orders are placed through it").await?;
    let token_sent = token.is_some();
    let bearer = token.map(|t| format!("Bearer {}", t.trim()));
    let headers: Vec<(&str, &str)> = key
        .as_deref()
        .map(|k| ("idempotency-key", k))
        .into_iter()
        .chain(bearer.as_deref().map(|b| ("authorization", b)))
        .collect();
    let reply = conn
        .send(http::Method::POST, "/orders", &headers, Some(body.into()))
        .await?;
    println!("{}", String::from_utf8_lossy(&reply.body));
    Ok(if (200..300).contains(&reply.status) {
        ExitCode::SUCCESS
    } else {
        let hint = match (reply.status, token_sent) {
            (401, false) => " (it wants a token: --token from `orders token`)",
            (401, true) => " (the token is not this server's, or has expired)",
            _ => "",
        };
        eprintln!("error: the server answered {}{hint}", reply.status);
        ExitCode::FAILURE
    })
}

/// One order's events from the local event store, oldest first.
async fn local_events(
    order_id: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<Vec<orders_domain::EventEnvelope>> {
    anyhow::ensure!(
        data_dir.join("events.db").exists(),
        "no event store in {} (start `orders serve` first, or pass --data-dir)",
        data_dir.display()
    );
    let dir = data_dir.to_path_buf();
    let stores =
        tokio::task::spawn_blocking(move || orders_local::store::LocalStores::open(&dir)).await??;
    orders_domain::ports::EventStore::load(&stores.events, order_id)
        .await
        .context("reading events")
}

/// An order's events up to `as_of`, one JSON object a line, or (`view`) its view then.
fn print_events(
    events: &[orders_domain::EventEnvelope],
    as_of: AsOf,
    view: bool,
) -> anyhow::Result<ExitCode> {
    if view {
        println!(
            "{}",
            serde_json::to_string_pretty(&view_as_of(events, as_of)?)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for e in as_of.events(events)? {
        println!("{}", serde_json::to_string(e)?);
    }
    Ok(ExitCode::SUCCESS)
}
