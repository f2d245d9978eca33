//! SQLite adapters for the ports, and the clock and id adapters.
//!
//! Two files under the data directory: `events.db` (the log, written by the API) and
//! `read_models.db` (projections, checkpoints, dead letters, written by the projector),
//! so the projector never contends with API appends for a write lock.

pub mod bulk;
pub mod compare;
pub mod events;
pub mod projection;
pub mod read_models;
pub(crate) mod sqlite;

pub use bulk::{BadRow, BulkControl, BulkDone, BulkError, BulkRead};
pub use compare::{Compared, DayDiff, FieldDiff, Repaired, RowDiff};
pub use events::{MAX_EVENTS_PER_APPEND, SqliteEventStore, StreamRow, StreamSummary};
pub use projection::{FoldedBatch, OrderFold, Targets};
pub use read_models::{BulkEnd, DeadLetter, NewDeadLetter, SqliteReadModels};

use orders_domain::ports::{ReadModelError, StoreError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl OpenError {
    fn checkpoint(path: &Path, e: crate::checkpoint::CheckpointError) -> Self {
        let path = path.to_path_buf();
        match e {
            crate::checkpoint::CheckpointError::Sqlite(source) => {
                OpenError::Sqlite { path, source }
            }
            crate::checkpoint::CheckpointError::Thread(source) => OpenError::Io { path, source },
            other => OpenError::Corrupt {
                path,
                reason: other.to_string(),
            },
        }
    }

    fn migrate(path: &Path, e: sqlite::MigrateError) -> Self {
        match e {
            sqlite::MigrateError::Sqlite(source) => OpenError::Sqlite {
                path: path.to_path_buf(),
                source,
            },
            other => OpenError::Corrupt {
                path: path.to_path_buf(),
                reason: other.to_string(),
            },
        }
    }
}

/// Both stores of one data directory.
#[derive(Debug, Clone)]
pub struct LocalStores {
    pub events: SqliteEventStore,
    pub read_models: SqliteReadModels,
}

impl LocalStores {
    /// Creates `data_dir` if needed and opens (creating and migrating) both databases.
    /// Blocking; call it before serving or from `spawn_blocking`.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Self, OpenError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(LocalStores {
            events: SqliteEventStore::open(dir)?,
            read_models: SqliteReadModels::open(dir)?,
        })
    }
}

// The clock and id adapters are shared with the Lambda binaries.
pub use orders_handlers::system::{SystemClock, UlidIds};

/// Failures inside blocking SQLite work, converted to each port's error at its boundary.
#[derive(Debug)]
pub(crate) enum DbError {
    Sql(rusqlite::Error),
    Store(StoreError),
    ReadModel(ReadModelError),
    Corrupt(String),
    /// The blocking task panicked or the runtime is shutting down.
    Task(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sql(e)
    }
}

impl From<StoreError> for DbError {
    fn from(e: StoreError) -> Self {
        DbError::Store(e)
    }
}

impl From<ReadModelError> for DbError {
    fn from(e: ReadModelError) -> Self {
        DbError::ReadModel(e)
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Sql(e) => StoreError::Unavailable(e.to_string()),
            DbError::Store(e) => e,
            DbError::ReadModel(e) => StoreError::Unavailable(e.to_string()),
            DbError::Corrupt(reason) => StoreError::Corrupt(reason),
            DbError::Task(reason) => StoreError::Unavailable(reason),
        }
    }
}

impl From<DbError> for ReadModelError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Sql(e) => ReadModelError::Unavailable(e.to_string()),
            DbError::Store(e) => ReadModelError::Unavailable(e.to_string()),
            DbError::ReadModel(e) => e,
            DbError::Corrupt(reason) => ReadModelError::Corrupt(reason),
            DbError::Task(reason) => ReadModelError::Unavailable(reason),
        }
    }
}

/// Runs SQLite work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DbError::Task(format!("database task failed: {e}")))?
}
