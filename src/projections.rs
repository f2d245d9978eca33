//! The state of the projections, as an operator asks for it (`orders projections status`
//! and the console's Projections page): each projection's generations, how far each
//! consumer has read the log, an unfinished replay, and the records parked per source.

use crate::replay::ReplayLock;
use orders_domain::ports::Clock;
use orders_domain::ports::{ReadModelError, StoreError};
use orders_local::store::read_models::{
    FileSpace, replay_checkpoint_targets, retired_checkpoint_name, retired_checkpoint_target,
};
use orders_local::store::{SqliteEventStore, SqliteReadModels, SystemClock};
use orders_local::tailer::TailerConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionsStatus {
    pub log: LogHead,
    /// A replay holds the data dir's replay lock right now.
    pub replay_running: bool,
    /// What holds it, as it said of itself: the command, its pid, since when and, for a
    /// replay, how far it is ("`orders replay --projection all` (pid 1234, since …): 500000
    /// of 1001143 events (50 %)").
    pub replay_holder: Option<String>,
    /// What holds the data dir's serve lock (`orders serve` with its pid and address): the
    /// live projector runs only there.
    pub in_use_by: Option<String>,
    /// An interrupted `orders seed` left history after this log position unprojected.
    pub unfinished_seed_after: Option<u64>,
    /// `read_models.db`'s size, and the part dropped generations left free.
    pub read_models_file: FileSpace,
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
    /// A retired generation: the log position it is complete up to (where it was
    /// retired, or where a switch back that was stopped got to). `None` for the others,
    /// and for one retired before positions were recorded.
    pub position: Option<u64>,
    /// Events appended after `position`: what switching back to it catches up.
    pub behind: Option<u64>,
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
    /// When the oldest of those events happened (`None` when none waits).
    pub waiting_since: Option<String>,
    /// How old that event is, as Lambda's `IteratorAge` metric says of a stream consumer.
    pub iterator_age_ms: Option<u64>,
}

impl Consumer {
    /// `2026-11-03T02:30:25.848Z (24d 13h ago)`, or `-` when nothing waits.
    pub fn oldest_waiting(&self) -> String {
        let (Some(ms), Some(since)) = (self.iterator_age_ms, &self.waiting_since) else {
            return "-".into();
        };
        let s = ms / 1000;
        let ago = match s {
            0..60 => format!("{:.1} s", ms as f64 / 1000.0),
            60..3_600 => format!("{}m {}s", s / 60, s % 60),
            3_600..86_400 => format!("{}h {}m", s / 3_600, s % 3_600 / 60),
            _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
        };
        format!("{since} ({ago} ago)")
    }
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
    #[error("reading the locks and marks in {dir}: {source}")]
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
    // From the file: the console runs in `orders serve`, whose own head misses appends
    // made by other processes.
    let head = events.last_seq().await?;
    let files = |source| StatusError::Lock {
        dir: data_dir.display().to_string(),
        source,
    };
    let replay_running = ReplayLock::running(data_dir).map_err(files)?;
    let replay_holder = ReplayLock::holder(data_dir).map_err(files)?;
    let in_use_by = crate::runtime::in_use_by(data_dir).map_err(files)?;
    let unfinished_seed_after = crate::seed::pending(data_dir).map_err(files)?;
    let mut checkpoints = read_models.checkpoints().await?;
    let mut generations = vec![];
    for g in read_models.generations().await? {
        let position = (g.status == "retired")
            .then(|| {
                let name = retired_checkpoint_name(g.projection, g.generation);
                checkpoints.iter().find(|(n, _)| *n == name).map(|c| c.1)
            })
            .flatten();
        generations.push(GenerationStatus {
            projection: g.projection.as_str(),
            generation: g.generation,
            orders: read_models.count_orders(g.projection, g.generation).await?,
            status: g.status,
            created_at: g.created_at.to_string(),
            position,
            behind: position.map(|p| head.saturating_sub(p)),
        });
    }
    // Retired generations' positions are listed with them, not as consumers.
    checkpoints.retain(|(name, _)| retired_checkpoint_target(name).is_none());
    let building = |p: &str, n: u32| {
        generations
            .iter()
            .any(|g| g.projection == p && g.generation == n && g.status == "building")
    };
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
        let behind = head.saturating_sub(position);
        // The next event's time; an undecodable one (it will be parked) says nothing.
        let oldest = match behind {
            0 => None,
            _ => events
                .read_stream(position, 1)
                .await?
                .into_iter()
                .next()
                .and_then(|row| row.envelope.ok())
                .map(|e| e.occurred_at),
        };
        consumers.push(Consumer {
            name,
            kind,
            position,
            behind,
            waiting_since: oldest.map(|t| t.to_string()),
            iterator_age_ms: oldest
                .map(|t| u64::try_from(SystemClock.now().millis() - t.millis()).unwrap_or(0)),
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
        replay_holder,
        in_use_by,
        unfinished_seed_after,
        read_models_file: read_models.space().await?,
        generations,
        consumers,
        dead_letters: DeadLetterCounts {
            total: by_source.values().sum(),
            by_source,
        },
    })
}

/// A size in megabytes, as the CLI and the console print it.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The size of `read_models.db` and, from a megabyte on, its free part and how to give it
/// back (the CLI after drops and replays, and the console).
pub fn free_space_line(space: FileSpace) -> Option<String> {
    // Below a megabyte it is not worth a line.
    (space.free_bytes >= 1_000_000).then(|| {
        format!(
            "read_models.db: {}, {} of it free (reused by the next replay; `orders projections compact`, with `orders serve` stopped, gives it back to the disk)",
            megabytes(space.bytes),
            megabytes(space.free_bytes)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_space_line_says_what_is_free_from_a_megabyte_on() {
        let line = |bytes, free_bytes| free_space_line(FileSpace { bytes, free_bytes });
        assert_eq!(line(5_000_000, 999_999), None);
        let said = line(885_800_960, 442_800_000).expect("a line");
        assert!(
            said.starts_with("read_models.db: 885.8 MB, 442.8 MB of it free"),
            "{said}"
        );
        assert!(said.contains("orders projections compact"), "{said}");
    }

    fn waiting(ms: Option<u64>) -> Consumer {
        Consumer {
            name: "projector".into(),
            kind: "live",
            position: 1,
            behind: u64::from(ms.is_some()),
            waiting_since: ms.map(|_| "2026-11-03T02:30:25.848Z".into()),
            iterator_age_ms: ms,
        }
    }

    #[test]
    fn the_oldest_waiting_event_reads_in_the_largest_useful_unit() {
        let at = "2026-11-03T02:30:25.848Z";
        assert_eq!(waiting(None).oldest_waiting(), "-");
        assert_eq!(
            waiting(Some(1_250)).oldest_waiting(),
            format!("{at} (1.2 s ago)")
        );
        assert_eq!(
            waiting(Some(125_000)).oldest_waiting(),
            format!("{at} (2m 5s ago)")
        );
        assert_eq!(
            waiting(Some(7_260_000)).oldest_waiting(),
            format!("{at} (2h 1m ago)")
        );
        assert_eq!(
            waiting(Some(2_170_000_000)).oldest_waiting(),
            format!("{at} (25d 2h ago)")
        );
    }
}
