//! `orders log`: the events of every order, in the order they happened, from the local
//! data dir or (`--aws`) from the deployed event table through its `by_time` index.

use crate::cli_args::DataDir;
use crate::replay_cmd::open_existing;
use anyhow::Context;
use orders_aws::event_log::{self, LogError};
use orders_domain::ports::Clock;
use orders_domain::{EventEnvelope, OrderEvent, Timestamp};
use orders_handlers::system::SystemClock;
use orders_local::store::events::LogQuery;
use std::process::ExitCode;

/// Rows a follower reads at once, and how often it looks for more.
const FOLLOW_BATCH: usize = 500;
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// How far back `--aws` reads without `--since`.
const AWS_DEFAULT_HOURS: i64 = 1;
/// How many hours `--aws` reads at most (16 Queries each).
const AWS_MAX_HOURS: u64 = 31 * 24;

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// From this moment on (RFC 3339 UTC, such as 2026-11-29T10:00:00Z): the first
    /// --limit events. Without it, the last --limit events (with --aws: of the last hour).
    #[arg(long)]
    since: Option<Timestamp>,
    /// Up to this moment (RFC 3339 UTC).
    #[arg(long)]
    until: Option<Timestamp>,
    /// Only events of this type (OrderPlaced, OrderConfirmed, …).
    #[arg(long = "type", value_name = "TYPE", value_parser = event_type)]
    event_type: Option<String>,
    /// How many events at most.
    #[arg(long, default_value_t = 50, value_parser = crate::cli_args::at_least_one)]
    limit: usize,
    /// Each event's envelope as a JSON line (as `orders events` prints them).
    #[arg(long)]
    json: bool,
    /// Then keep printing events as they are appended, until Ctrl-C (local only).
    #[arg(long, conflicts_with_all = ["until", "aws"])]
    follow: bool,
    #[command(flatten)]
    dir: DataDir,
    /// Read the deployed stack's event table instead (standard credential chain; its
    /// by_time index, an hour and shard a Query): the one --stack names, else EVENTS_TABLE.
    #[arg(long)]
    aws: bool,
    /// With --aws: the stack (the name given to `sam deploy`).
    #[arg(long, env = "ORDERS_STACK")]
    stack: Option<String>,
}

fn event_type(s: &str) -> Result<String, String> {
    OrderEvent::TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(s))
        .map(|t| t.to_string())
        .ok_or_else(|| {
            format!(
                "not an event type (one of {})",
                OrderEvent::TYPES.join(", ")
            )
        })
}

pub async fn run(args: LogArgs) -> anyhow::Result<ExitCode> {
    if let (Some(since), Some(until)) = (args.since, args.until) {
        anyhow::ensure!(since <= until, "--until {until} is before --since {since}");
    }
    let stack = crate::aws_access::stack_for(args.aws, args.stack.clone())?;
    args.dir.refuse_with_aws(args.aws)?;
    let query = LogQuery {
        since: args.since,
        until: args.until,
        event_type: args.event_type.clone(),
        limit: args.limit,
        up_to_seq: None,
    };
    let print = |e: &EventEnvelope| -> anyhow::Result<()> {
        if args.json {
            println!("{}", serde_json::to_string(e)?);
        } else {
            println!("{}", line(e));
        }
        Ok(())
    };
    if args.aws {
        let (events, table) = aws_log(&query, stack.as_deref()).await?;
        if events.is_empty() {
            let window = if query.since.is_none() {
                "in the last hour "
            } else {
                ""
            };
            println!("no events {}{window}in {table}", describe(&query));
        }
        return events
            .iter()
            .try_for_each(print)
            .map(|()| ExitCode::SUCCESS);
    }
    let data_dir = &args.dir.data_dir;
    let stores = open_existing(data_dir).await?;
    let context = || format!("reading the log in {}", data_dir.display());
    // A follower starts after what it printed: the log's head now.
    let head = stores.events.last_seq().await.with_context(context)?;
    let query = LogQuery {
        up_to_seq: Some(head),
        ..query
    };
    let events = stores.events.log(&query).await.with_context(context)?;
    if events.is_empty() && !args.follow {
        println!("no events {}in {}", describe(&query), data_dir.display());
    }
    events.iter().try_for_each(print)?;
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut after = head;
    loop {
        let rows = stores
            .events
            .read_stream(after, FOLLOW_BATCH)
            .await
            .with_context(context)?;
        for row in &rows {
            after = row.seq;
            match &row.envelope {
                Ok(e) if query.matches(e) => print(e)?,
                Ok(_) => {}
                // The projector parks such a row; the log names it and goes on.
                Err(reason) => eprintln!("event seq {}: {reason}", row.seq),
            }
        }
        if rows.len() < FOLLOW_BATCH {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    }
}

/// One event as a line: when, which order and version, what, and its correlation id.
fn line(e: &EventEnvelope) -> String {
    format!(
        "{}  {}  v{:<3} {:<20} correlation {}",
        e.occurred_at, e.aggregate_id, e.version, e.event_type, e.correlation_id
    )
}

/// The filter in words, for "no events …".
fn describe(q: &LogQuery) -> String {
    let mut s = String::new();
    if let Some(t) = &q.event_type {
        s.push_str(&format!("of type {t} "));
    }
    if let Some(since) = q.since {
        s.push_str(&format!("from {since} "));
    }
    if let Some(until) = q.until {
        s.push_str(&format!("until {until} "));
    }
    s
}

/// The log from the deployed event table: the keys of the range from its `by_time` index,
/// then the events themselves (BatchGetItem), as many as `limit` asks.
async fn aws_log(
    query: &LogQuery,
    stack: Option<&str>,
) -> anyhow::Result<(Vec<EventEnvelope>, String)> {
    let (clients, table) = crate::aws_access::event_table(stack).await?;
    let client = clients.dynamodb;
    let until = query.until.unwrap_or_else(|| SystemClock.now());
    let since = query
        .since
        .unwrap_or_else(|| Timestamp::from_millis(until.millis() - AWS_DEFAULT_HOURS * 3_600_000));
    anyhow::ensure!(
        event_log::hour_count(since, until) <= AWS_MAX_HOURS,
        "--since {since} to {until} is more than {} days: --aws reads a month at most",
        AWS_MAX_HOURS / 24
    );
    let read = async {
        event_log::check_index(&client, &table).await?;
        let mut keys = event_log::keys_between(&client, &table, since, until).await?;
        if query.since.is_none() {
            // The tail: the newest first, put back in order at the end.
            keys.reverse();
        }
        let mut events = Vec::new();
        for chunk in keys.chunks(event_log::MAX_BATCH_GET) {
            let mut loaded = event_log::load_events(&client, &table, chunk).await?;
            if let Some(t) = &query.event_type {
                loaded.retain(|e| &e.event_type == t);
            }
            events.extend(loaded);
            if events.len() >= query.limit {
                break;
            }
        }
        events.truncate(query.limit);
        if query.since.is_none() {
            events.reverse();
        }
        Ok::<_, LogError>(events)
    };
    let events = read.await.map_err(|e| match e {
        LogError::NoIndex(why) => anyhow::anyhow!("{why}; --aws reads the log through it"),
        other => anyhow::anyhow!(other),
    })?;
    Ok((events, table))
}
