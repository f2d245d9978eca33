//! The state of the projections, as an operator asks for it (`orders projections status`
//! and the console's Projections page): each projection's generations, how far each
//! consumer has read the log, an unfinished replay, and the records parked per source.

use crate::replay::ReplayLock;
use orders_domain::ports::{ReadModelError, StoreError};
use orders_local::store::read_models::replay_checkpoint_targets;
use orders_local::store::{SqliteEventStore, SqliteReadModels};
use orders_local::tailer::TailerConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionsStatus {
    pub log: LogHead,
    /// A replay holds the data dir's replay lock right now.
    pub replay_running: bool,
    pub generations: Vec<GenerationStatus>,
    pub consumers: Vec<Consumer>,
    pub dead_letters: DeadLetterCounts,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogHead {
    pub events: u64,
    pub head_seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerationStatus {
    pub projection: &'static str,
    pub generation: u32,
    /// `building`, `active` or `retired`.
    pub status: String,
    /// Orders with a row in this generation.
    pub orders: u64,
    pub created_at: String,
}

/// Something that reads the log and keeps a checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Consumer {
    pub name: String,
    /// `live` (the projector) or `replay` (an unfinished replay's catch-up).
    pub kind: &'static str,
    /// The last `seq` it is done with.
    pub position: u64,
    /// Events appended after that position.
    pub behind: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterCounts {
    pub total: u64,
    pub by_source: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    #[error("reading the replay lock in {dir}: {source}")]
    Lock { dir: String, source: std::io::Error },
}

impl ProjectionsStatus {
    /// Generations a replay is building (or was, when it was interrupted).
    pub fn building(&self) -> impl Iterator<Item = &GenerationStatus> {
        self.generations.iter().filter(|g| g.status == "building")
    }
}

pub async fn status(
    events: &SqliteEventStore,
    read_models: &SqliteReadModels,
    data_dir: &Path,
) -> Result<ProjectionsStatus, StatusError> {
    let head = events.head_seq();
    let replay_running = ReplayLock::running(data_dir).map_err(|source| StatusError::Lock {
        dir: data_dir.display().to_string(),
        source,
    })?;
    let mut generations = vec![];
    for g in read_models.generations().await? {
        generations.push(GenerationStatus {
            projection: g.projection.as_str(),
            generation: g.generation,
            orders: read_models.count_orders(g.projection, g.generation).await?,
            status: g.status,
            created_at: g.created_at.to_string(),
        });
    }
    let building = |p: &str, n: u32| {
        generations
            .iter()
            .any(|g| g.projection == p && g.generation == n && g.status == "building")
    };
    let mut checkpoints = read_models.checkpoints().await?;
    // The live projector has no checkpoint until `orders serve` first projects something.
    let projector = TailerConfig::default().name;
    if !checkpoints.iter().any(|(name, _)| *name == projector) {
        checkpoints.insert(0, (projector, 0));
    }
    let mut consumers = vec![];
    for (name, position) in checkpoints {
        let kind = match replay_checkpoint_targets(&name) {
            None => "live",
            // A switched replay deletes its checkpoint; one kept from before that names
            // no building generation and says nothing any more.
            Some(targets) if targets.iter().any(|(p, g)| building(p.as_str(), *g)) => "replay",
            Some(_) => continue,
        };
        consumers.push(Consumer {
            name,
            kind,
            position,
            behind: head.saturating_sub(position),
        });
    }
    let by_source: BTreeMap<String, u64> = read_models
        .count_dead_letters_by_source()
        .await?
        .into_iter()
        .collect();
    Ok(ProjectionsStatus {
        log: LogHead {
            events: events.count().await?,
            head_seq: head,
        },
        replay_running,
        generations,
        consumers,
        dead_letters: DeadLetterCounts {
            total: by_source.values().sum(),
            by_source,
        },
    })
}
