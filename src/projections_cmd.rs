//! `orders projections` and `orders dead-letters`: what an operator looks at around the
//! projector and its replays — each projection's generations, how far each consumer has
//! read the log, an interrupted replay to resume or abandon, and the records parked with
//! their reason.

use crate::cli_args::DataDir;
use crate::replay_cmd::{Progress, open_existing, parse_projection, replay_lock};
use anyhow::Context;
use orders::client::Connection;
use orders::projections::{self, ProjectionsStatus, free_space_line, megabytes};
use orders::replay::{self, CatchUpStart, ReplayError, ReplayProgress};
use orders_domain::projection::ProjectionName;
use orders_local::store::{DeadLetter, LocalStores};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ProjectionsArgs {
    #[command(subcommand)]
    command: ProjectionsCmd,
    #[command(flatten)]
    dir: DataDir,
}

#[derive(Debug, clap::Subcommand)]
enum ProjectionsCmd {
    /// Each projection's generations (active, building, retired) with their orders, the
    /// log position of every consumer and how far behind it is, and the parked records.
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        /// A deployed stack's tables instead: the event table, and each read-model table
        /// (the stack's own and those replays made), with the one readers use.
        #[arg(long)]
        aws: bool,
        /// With --aws: the stack (the name given to `sam deploy`).
        #[arg(long, env = "ORDERS_STACK")]
        stack: Option<String>,
    },
    /// Drop one generation that readers do not use: a retired one, or the one an
    /// interrupted replay was building (which abandons that replay).
    Drop {
        /// `orders` or `daily_sales`.
        projection: String,
        generation: u32,
    },
    /// Drop every retired generation (what `orders replay --drop-old` does after a switch).
    Prune,
    /// Switch readers back to a retired generation (blue/green's way back): catch it up
    /// from where it was retired, then make it the active one in one transaction. The
    /// active one is retired, and can be switched back to the same way.
    Activate {
        /// `orders` or `daily_sales`.
        projection: String,
        generation: u32,
        /// Say what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Park undecodable events (with their key and reason) instead of stopping.
        #[arg(long)]
        skip_undecodable: bool,
    },
    /// Give the space of dropped generations back to the disk (rewrites read_models.db;
    /// with `orders serve` stopped and no replay running).
    Compact,
    /// Check that the read models are what the log says: fold the whole log afresh into
    /// a scratch store (removed afterwards) and compare it, row by row, with what readers
    /// see. Lists the orders and days that differ, with the fields; exits 1 if any do.
    /// Changes nothing and fires no side effect; `orders serve` may run meanwhile. With
    /// --aws, a deployed stack's tables on DynamoDB.
    Verify(crate::verify_cmd::VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    command: DeadLettersCmd,
    #[command(flatten)]
    dir: DataDir,
}

#[derive(Debug, clap::Subcommand)]
enum DeadLettersCmd {
    /// Parked records, oldest first: id, source, key, when, and why.
    List {
        /// Only those from this source (`stream:projector`, `replay`).
        #[arg(long, conflicts_with = "aws")]
        source: Option<String>,
        /// Only those after this id (paging).
        #[arg(long, default_value_t = 0, conflicts_with = "aws")]
        after: u64,
        /// At most this many (1 or more).
        #[arg(long, default_value_t = 50, value_parser = crate::cli_args::at_least_one, conflicts_with = "aws")]
        limit: usize,
        /// One JSON object per line, the record included.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        aws: crate::aws_dead_letters::AwsDeadLetterArgs,
    },
    /// Hand parked records of the live projector back to it, in the running `orders serve`
    /// (which starts the workflows they stand for), once what made them fail is fixed.
    /// With --aws: project the batches the projector Lambda gave up on again.
    Redrive {
        /// One dead letter's id (or --all).
        #[arg(conflicts_with_all = ["all", "message_id"])]
        id: Option<u64>,
        /// Every record the live projector parked, oldest first.
        #[arg(long)]
        all: bool,
        /// With --aws: one message of the on-failure queue.
        #[arg(long, conflicts_with = "all", requires = "aws")]
        message_id: Option<String>,
        /// The server (default: the one running on --data-dir, else http://127.0.0.1:3000).
        #[arg(long, env = "ORDERS_URL")]
        url: Option<String>,
        #[command(flatten)]
        aws: crate::aws_dead_letters::AwsDeadLetterArgs,
    },
    /// One parked record: its reason and the record as it was delivered.
    Show { id: u64 },
}

pub async fn projections(args: ProjectionsArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir;
    let data_dir = dir.data_dir.clone();
    match args.command {
        ProjectionsCmd::Status { json, aws, stack } => {
            let stack = crate::aws_access::stack_for(aws, stack)?;
            if aws {
                dir.refuse_with_aws(aws)?;
                let stack = stack.context(
                    "--aws needs --stack (or ORDERS_STACK): the stack whose tables to show",
                )?;
                let tables = crate::projections_aws::stack_tables(&stack).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&tables)?);
                } else {
                    crate::projections_aws::print(&tables);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let stores = open_existing(&data_dir).await?;
            let status = projections::status(&stores.events, &stores.read_models, &data_dir)
                .await
                .context("reading the status")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status, &data_dir);
            }
        }
        ProjectionsCmd::Drop {
            projection,
            generation,
        } => {
            let projection = parse_projection(&projection)?;
            let stores = open_existing(&data_dir).await?;
            // Generations change only while no replay runs, so a drop takes the replay's lock.
            let _lock = replay_lock(&data_dir, "drop generations when it has finished")?;
            let found = stores
                .read_models
                .generations()
                .await?
                .into_iter()
                .find(|g| g.projection == projection && g.generation == generation);
            let Some(found) = found else {
                anyhow::bail!(
                    "{} has no generation {generation} (see `orders projections status`)",
                    projection.as_str()
                );
            };
            anyhow::ensure!(
                found.status != "active",
                "{} generation {generation} is the active one: readers use it, so it stays",
                projection.as_str()
            );
            stores
                .read_models
                .drop_generation(projection, generation)
                .await?;
            println!(
                "{}: dropped generation {generation} ({})",
                projection.as_str(),
                found.status
            );
            free_space_hint(&stores).await;
        }
        ProjectionsCmd::Prune => {
            let stores = open_existing(&data_dir).await?;
            // Generations change only while no replay runs, so a drop takes the replay's lock.
            let _lock = replay_lock(&data_dir, "drop generations when it has finished")?;
            let mut dropped = 0;
            for g in stores.read_models.generations().await? {
                if g.status == "retired" {
                    stores
                        .read_models
                        .drop_generation(g.projection, g.generation)
                        .await?;
                    println!(
                        "{}: dropped generation {} (retired)",
                        g.projection.as_str(),
                        g.generation
                    );
                    dropped += 1;
                }
            }
            if dropped == 0 {
                println!("no retired generation to drop");
            } else {
                free_space_hint(&stores).await;
            }
        }
        ProjectionsCmd::Activate {
            projection,
            generation,
            dry_run,
            skip_undecodable,
        } => {
            let projection = parse_projection(&projection)?;
            let stores = open_existing(&data_dir).await?;
            let _lock = replay_lock(&data_dir, "switch generations when it has finished")?;
            return activate(&stores, projection, generation, dry_run, skip_undecodable).await;
        }
        ProjectionsCmd::Verify(args) => {
            if args.aws() {
                dir.refuse_with_aws(true)?;
                return crate::verify_cmd::run_aws(args).await;
            }
            let stores = open_existing(&data_dir).await?;
            let _lock = replay_lock(&data_dir, "verify when it has finished")?;
            return crate::verify_cmd::run(&stores, &data_dir, args).await;
        }
        ProjectionsCmd::Compact => {
            let stores = open_existing(&data_dir).await?;
            let _serving = orders::runtime::claim_data_dir(
                &data_dir,
                "`orders projections compact`",
                "stop it first (compacting rewrites read_models.db, which its live projector writes)",
            )?;
            let _lock = replay_lock(&data_dir, "compact when it has finished")?;
            let before = stores.read_models.space().await?;
            if before.free_bytes == 0 {
                println!(
                    "read_models.db: {}, nothing free to give back",
                    megabytes(before.bytes)
                );
                return Ok(ExitCode::SUCCESS);
            }
            let started = std::time::Instant::now();
            stores
                .read_models
                .compact()
                .await
                .context("compacting read_models.db")?;
            let after = stores.read_models.space().await?;
            println!(
                "read_models.db: {} -> {} in {:.1} s",
                megabytes(before.bytes),
                megabytes(after.bytes),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `orders projections activate`: the way back to a retired generation.
async fn activate(
    stores: &LocalStores,
    projection: ProjectionName,
    generation: u32,
    dry_run: bool,
    skip_undecodable: bool,
) -> anyhow::Result<ExitCode> {
    let p = projection.as_str();
    if dry_run {
        let plan = replay::plan_switch_back(stores, projection, generation).await?;
        println!("dry run: nothing will be changed");
        println!(
            "  {p}: catch generation {generation} up {} ({} events at most), then switch readers from {} to it",
            start_line(plan.start),
            plan.head.saturating_sub(plan.start.after()),
            plan.from
                .map_or("none".into(), |g| format!("generation {g}")),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let stop = crate::replay_cmd::stop_on_ctrl_c();
    let progress = Progress::new("catch-up");
    let result = replay::switch_back(
        stores,
        projection,
        generation,
        skip_undecodable,
        &stop,
        |r: ReplayProgress| progress.replay(r),
    )
    .await;
    progress.finish();
    match result {
        Ok(done) => {
            println!(
                "{p}: caught generation {generation} up {}: {} events in {:.2} s{}",
                start_line(done.start),
                done.events_read,
                done.seconds,
                crate::replay_cmd::parked_note(done.parked)
            );
            match done.from {
                Some(old) => println!(
                    "{p}: switched readers from generation {old} to generation {generation}; generation {old} is retired (`orders projections activate {p} {old}` switches back)"
                ),
                None => println!("{p}: switched readers to generation {generation}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ReplayError::Stopped) => {
            eprintln!(
                "error: interrupted; nothing was switched; the same command continues from where it stopped"
            );
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e.into()),
    }
}

/// Where a switch back's catch-up starts, as a phrase.
fn start_line(start: CatchUpStart) -> String {
    match start {
        CatchUpStart::Retired(seq) => format!("from log position {seq}, where it was retired"),
        CatchUpStart::Parked(seq) => format!(
            "from log position {}, before the first record the live projector parked",
            seq.saturating_sub(1)
        ),
        CatchUpStart::Unrecorded => {
            "from the start of the log (it was retired before positions were recorded)".into()
        }
    }
}

/// What dropping generations freed stays in the file (reused by the next replay): says
/// how much and how to give it back. Best effort: the drop itself has succeeded.
pub(crate) async fn free_space_hint(stores: &LocalStores) {
    if let Ok(space) = stores.read_models.space().await
        && let Some(line) = free_space_line(space)
    {
        println!("{line}");
    }
}

fn print_status(s: &ProjectionsStatus, data_dir: &Path) {
    println!("log: {} events, last seq {}", s.log.events, s.log.head_seq);
    match &s.in_use_by {
        Some(holder) => println!("in use by {holder}"),
        None => println!("no `orders serve` runs on this data dir: the live projector is stopped"),
    }
    if s.replay_running {
        match &s.replay_holder {
            Some(holder) => println!("replay lock held by {holder}"),
            None => println!("replay lock held (by a process that has not said what it is)"),
        }
    }
    if let Some(line) = free_space_line(s.read_models_file) {
        println!("{line}");
    }
    if s.unfinished_seed_after.is_some() {
        println!("{}", orders::seed::unfinished_advice(data_dir));
    }
    println!();
    println!(
        "{:<13} {:>10}  {:<9} {:>9}  created",
        "projection", "generation", "status", "orders"
    );
    for g in &s.generations {
        println!(
            "{:<13} {:>10}  {:<9} {:>9}  {}",
            g.projection, g.generation, g.status, g.orders, g.created_at
        );
    }
    println!();
    println!(
        "{:<32} {:>10} {:>10}  oldest waiting",
        "consumer", "position", "behind"
    );
    for c in &s.consumers {
        println!(
            "{:<32} {:>10} {:>10}  {}",
            c.name,
            c.position,
            c.behind,
            c.oldest_waiting()
        );
    }
    for g in s.generations.iter().filter(|g| g.status == "retired") {
        let (p, n) = (g.projection, g.generation);
        let behind = match g.behind {
            Some(0) => "up to date".to_string(),
            Some(b) => format!("{b} events behind"),
            None => "retired before positions were recorded, so catching it up reads the whole log"
                .into(),
        };
        println!(
            "{p} generation {n}: retired, {behind}; `orders projections activate {p} {n}` catches it up and switches readers back to it"
        );
    }
    for g in s.building() {
        let (p, n) = (g.projection, g.generation);
        if s.replay_running {
            println!("{p} generation {n}: a replay is building it now");
        } else {
            println!(
                "{p} generation {n}: an interrupted replay's; continue it with `orders replay --projection {p} --resume`, or abandon it with `orders projections drop {p} {n}`"
            );
        }
    }
    if s.dead_letters.total == 0 {
        println!("\nno dead letters");
    } else {
        let parts: Vec<String> = s
            .dead_letters
            .by_source
            .iter()
            .map(|(k, v)| format!("{v} from {k}"))
            .collect();
        println!(
            "\ndead letters: {} ({}); see `orders dead-letters list`",
            s.dead_letters.total,
            parts.join(", ")
        );
    }
}

pub async fn dead_letters(args: DeadLettersArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir;
    let data_dir = dir.data_dir.clone();
    match args.command {
        DeadLettersCmd::List {
            source,
            after,
            limit,
            json,
            aws,
        } => {
            dir.refuse_with_aws(aws.aws)?;
            if aws.aws {
                return crate::aws_dead_letters::list(&aws, json).await;
            }
            let stores = open_existing(&data_dir).await?;
            let letters = stores
                .read_models
                .dead_letters(source.as_deref(), after, limit)
                .await?;
            if json {
                for l in &letters {
                    println!("{}", serde_json::to_string(&letter_json(l))?);
                }
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                println!(
                    "{:>6}  {:<17} {:<40} {:<24}  reason",
                    "id", "source", "key", "parked at"
                );
                for l in &letters {
                    println!(
                        "{:>6}  {:<17} {:<40} {:<24}  {}{}",
                        l.id,
                        l.source,
                        l.key,
                        l.parked_at,
                        l.reason,
                        failed_redrives(l)
                    );
                }
            }
        }
        DeadLettersCmd::Redrive {
            id,
            all,
            message_id,
            url,
            aws,
        } => {
            dir.refuse_with_aws(aws.aws)?;
            if !aws.aws {
                anyhow::ensure!(
                    id.is_some() || all,
                    "which dead letter? pass its id (see `orders dead-letters list`) or --all"
                );
                return redrive(&Connection::server_url(url, &data_dir), id, all).await;
            }
            anyhow::ensure!(
                id.is_none() && (message_id.is_some() || all),
                "--aws redrives messages of the on-failure queue: pass --message-id ID (see `orders dead-letters list --aws`) or --all"
            );
            return crate::aws_dead_letters::redrive(&aws, message_id.as_deref(), all).await;
        }
        DeadLettersCmd::Show { id } => {
            let stores = open_existing(&data_dir).await?;
            let letter = stores
                .read_models
                .dead_letters(None, id.saturating_sub(1), 1)
                .await?
                .into_iter()
                .find(|l| l.id == id)
                .with_context(|| {
                    format!(
                        "no dead letter {id} in {} (see `orders dead-letters list`)",
                        data_dir.display()
                    )
                })?;
            println!("id:        {}", letter.id);
            println!("source:    {}", letter.source);
            println!("key:       {}", letter.key);
            println!("parked at: {}", letter.parked_at);
            println!("reason:    {}", letter.reason);
            if let Some((at, why)) = &letter.last_failure {
                println!(
                    "redriven:  failed {} time(s), last at {at}: {why}",
                    letter.failed_redrives
                );
            }
            println!("record:");
            // The record is the JSON that was delivered; shown as it was if it is not.
            match serde_json::from_str::<Value>(&letter.record) {
                Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
                Err(_) => println!("{}", letter.record),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the running server to redrive (the projector and the workflow engine live there).
async fn redrive(url: &str, id: Option<u64>, all: bool) -> anyhow::Result<ExitCode> {
    let form = match (id, all) {
        (Some(id), _) => format!("id={id}"),
        (None, _) => "all=1".to_string(),
    };
    let mut conn = Connection::to_server(url, "redrive runs in it").await?;
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/json"),
    ];
    let reply = conn
        .send(
            http::Method::POST,
            "/console/projections/redrive",
            &headers,
            Some(form.into()),
        )
        .await
        .context("sending the redrive")?;
    if !(200..300).contains(&reply.status) {
        // A refusal comes as problem+json.
        let problem: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        anyhow::bail!(
            "the server refused the redrive ({}): {}",
            reply.status,
            problem["detail"].as_str().unwrap_or("no detail")
        );
    }
    let out: Value = serde_json::from_slice(&reply.body).context("reading the server's answer")?;
    let failed: Vec<String> = out["dead_letters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l["processed"] == false)
                .map(|l| format!("{}: {}", l["id"], l["reason"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if out["redriven"] == 0 && out["failed"] == 0 {
        println!("nothing to redrive: the live projector has parked nothing");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "redriven {}, failed again {}",
        out["redriven"], out["failed"]
    );
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: still parked: {}", failed.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

fn letter_json(l: &DeadLetter) -> Value {
    json!({
        "id": l.id,
        "source": l.source,
        "key": l.key,
        "reason": l.reason,
        "parked_at": l.parked_at.to_string(),
        "failed_redrives": l.failed_redrives,
        "last_failure": l.last_failure.as_ref().map(|(at, why)| json!({"at": at.to_string(), "reason": why})),
        "record": serde_json::from_str::<Value>(&l.record).unwrap_or_else(|_| json!(l.record)),
    })
}

/// ` (redrive failed N time(s), last: why)`, or nothing.
fn failed_redrives(l: &DeadLetter) -> String {
    match &l.last_failure {
        Some((_, why)) => format!(
            " (redrive failed {} time(s), last: {why})",
            l.failed_redrives
        ),
        None => String::new(),
    }
}
