//! `orders projections` and `orders dead-letters`: what an operator looks at around the
//! projector and its replays — each projection's generations, how far each consumer has
//! read the log, an interrupted replay to resume or abandon, and the records parked with
//! their reason.

use crate::replay_cmd::{open_existing, parse_projection};
use anyhow::Context;
use orders::replay::ReplayLock;
use orders_local::store::read_models::replay_checkpoint_targets;
use orders_local::store::{DeadLetter, LocalStores};
use orders_local::tailer::TailerConfig;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ProjectionsArgs {
    #[command(subcommand)]
    command: ProjectionsCmd,
}

#[derive(Debug, clap::Subcommand)]
enum ProjectionsCmd {
    /// Each projection's generations (active, building, retired) with their orders, the
    /// log position of every consumer and how far behind it is, and the parked records.
    Status {
        #[arg(long, default_value = ".orders")]
        data_dir: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop one generation that readers do not use: a retired one, or the one an
    /// interrupted replay was building (which abandons that replay).
    Drop {
        /// `orders` or `daily_sales`.
        projection: String,
        generation: u32,
        #[arg(long, default_value = ".orders")]
        data_dir: PathBuf,
    },
    /// Drop every retired generation (what `orders replay --drop-old` does after a switch).
    Prune {
        #[arg(long, default_value = ".orders")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    command: DeadLettersCmd,
}

#[derive(Debug, clap::Subcommand)]
enum DeadLettersCmd {
    /// Parked records, oldest first: id, source, key, when, and why.
    List {
        /// Only those from this source (`stream:projector`, `replay`).
        #[arg(long)]
        source: Option<String>,
        /// Only those after this id (paging).
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line, the record included.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = ".orders")]
        data_dir: PathBuf,
    },
    /// One parked record: its reason and the record as it was delivered.
    Show {
        id: u64,
        #[arg(long, default_value = ".orders")]
        data_dir: PathBuf,
    },
}

pub async fn projections(args: ProjectionsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ProjectionsCmd::Status { data_dir, json } => {
            let stores = open_existing(&data_dir).await?;
            let status = status(&stores, &data_dir).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        ProjectionsCmd::Drop {
            projection,
            generation,
            data_dir,
        } => {
            let projection = parse_projection(&projection)?;
            let stores = open_existing(&data_dir).await?;
            let _lock = replay_lock(&data_dir)?;
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
        }
        ProjectionsCmd::Prune { data_dir } => {
            let stores = open_existing(&data_dir).await?;
            let _lock = replay_lock(&data_dir)?;
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
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Generations change only while no replay runs, so a drop takes the replay's lock.
fn replay_lock(data_dir: &Path) -> anyhow::Result<ReplayLock> {
    ReplayLock::try_acquire(data_dir)
        .with_context(|| format!("locking {}", data_dir.display()))?
        .with_context(|| {
            format!(
                "a replay is running in {}; drop generations when it has finished",
                data_dir.display()
            )
        })
}

/// The status as JSON: the text output is printed from it, so both say the same.
async fn status(stores: &LocalStores, data_dir: &Path) -> anyhow::Result<Value> {
    let rm = &stores.read_models;
    let head = stores.events.head_seq();
    let replay_running = ReplayLock::try_acquire(data_dir)
        .with_context(|| format!("locking {}", data_dir.display()))?
        .is_none();
    let mut checkpoints = rm.checkpoints().await?;
    // The live projector has no checkpoint until `orders serve` first projects something.
    let projector = TailerConfig::default().name;
    if !checkpoints.iter().any(|(name, _)| *name == projector) {
        checkpoints.insert(0, (projector, 0));
    }
    let mut generations = vec![];
    for g in rm.generations().await? {
        generations.push(json!({
            "projection": g.projection.as_str(),
            "generation": g.generation,
            "status": g.status,
            "orders": rm.count_orders(g.projection, g.generation).await?,
            "created_at": g.created_at.to_string(),
        }));
    }
    let building: Vec<(String, u64)> = generations
        .iter()
        .filter(|g| g["status"] == "building")
        .filter_map(|g| {
            Some((
                g["projection"].as_str()?.to_string(),
                g["generation"].as_u64()?,
            ))
        })
        .collect();
    let mut consumers = vec![];
    for (name, seq) in &checkpoints {
        match replay_checkpoint_targets(name) {
            None => consumers.push(json!({
                "name": name,
                "kind": "live",
                "position": seq,
                "behind": head.saturating_sub(*seq),
            })),
            // A switched replay deletes its checkpoint; one left over from before that
            // names no building generation and says nothing any more.
            Some(targets)
                if targets
                    .iter()
                    .any(|(p, g)| building.contains(&(p.as_str().to_string(), u64::from(*g)))) =>
            {
                consumers.push(json!({
                    "name": name,
                    "kind": "replay",
                    "position": seq,
                    "behind": head.saturating_sub(*seq),
                }))
            }
            Some(_) => {}
        }
    }
    let by_source = rm.count_dead_letters_by_source().await?;
    let total_letters: u64 = by_source.iter().map(|(_, n)| n).sum();
    let by_source: serde_json::Map<String, Value> =
        by_source.into_iter().map(|(k, n)| (k, json!(n))).collect();
    Ok(json!({
        "log": { "events": stores.events.count().await?, "head_seq": head },
        "replay_running": replay_running,
        "generations": generations,
        "consumers": consumers,
        "dead_letters": { "total": total_letters, "by_source": by_source },
    }))
}

/// A JSON value as a table cell: strings without their quotes.
fn cell(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn print_status(s: &Value) {
    println!(
        "log: {} events, last seq {}",
        s["log"]["events"], s["log"]["head_seq"]
    );
    println!();
    println!(
        "{:<13} {:>10}  {:<9} {:>9}  created",
        "projection", "generation", "status", "orders"
    );
    let empty = vec![];
    let generations = s["generations"].as_array().unwrap_or(&empty);
    for g in generations {
        println!(
            "{:<13} {:>10}  {:<9} {:>9}  {}",
            cell(&g["projection"]),
            cell(&g["generation"]),
            cell(&g["status"]),
            cell(&g["orders"]),
            cell(&g["created_at"]),
        );
    }
    println!();
    println!("{:<32} {:>10} {:>10}", "consumer", "position", "behind");
    for c in s["consumers"].as_array().unwrap_or(&empty) {
        println!(
            "{:<32} {:>10} {:>10}",
            cell(&c["name"]),
            cell(&c["position"]),
            cell(&c["behind"])
        );
    }
    for g in generations.iter().filter(|g| g["status"] == "building") {
        let (p, n) = (cell(&g["projection"]), cell(&g["generation"]));
        if s["replay_running"] == true {
            println!("{p} generation {n}: a replay is building it now");
        } else {
            println!(
                "{p} generation {n}: an interrupted replay's; continue it with `orders replay --projection {p} --resume`, or abandon it with `orders projections drop {p} {n}`"
            );
        }
    }
    let letters = &s["dead_letters"];
    if letters["total"] == 0 {
        println!("\nno dead letters");
    } else {
        let parts: Vec<String> = letters["by_source"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{v} from {k}")).collect())
            .unwrap_or_default();
        println!(
            "\ndead letters: {} ({}); see `orders dead-letters list`",
            letters["total"],
            parts.join(", ")
        );
    }
}

pub async fn dead_letters(args: DeadLettersArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DeadLettersCmd::List {
            source,
            after,
            limit,
            json,
            data_dir,
        } => {
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
                        "{:>6}  {:<17} {:<40} {:<24}  {}",
                        l.id, l.source, l.key, l.parked_at, l.reason
                    );
                }
            }
        }
        DeadLettersCmd::Show { id, data_dir } => {
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

fn letter_json(l: &DeadLetter) -> Value {
    json!({
        "id": l.id,
        "source": l.source,
        "key": l.key,
        "reason": l.reason,
        "parked_at": l.parked_at.to_string(),
        "record": serde_json::from_str::<Value>(&l.record).unwrap_or_else(|_| json!(l.record)),
    })
}
