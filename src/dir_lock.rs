//! Advisory locks on files in a data dir, saying which process uses it for what (a server,
//! a replay). The OS releases one when its process ends, `kill -9` included, so a lock
//! never needs clearing and never outlives its holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

/// An exclusive lock on one file, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

/// How often a busy lock is tried, 10 ms apart, before it counts as held: a probe
/// ([`DirLock::held`]) holds it for a moment only.
const PROBE_RETRIES: u32 = 10;

impl DirLock {
    /// The lock, or `None` when another process holds it.
    pub fn try_acquire(path: &Path) -> std::io::Result<Option<DirLock>> {
        let file = open(path)?;
        for _ in 0..PROBE_RETRIES {
            match file.try_lock() {
                Ok(()) => return Ok(Some(DirLock { file })),
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(10)),
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Whether a process holds the lock now (a shared lock taken and let go at once).
    pub fn held(path: &Path) -> std::io::Result<bool> {
        match open(path)?.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Writes who holds the lock, for the messages of those who find it taken.
    pub fn describe(&mut self, holder: &str) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(holder.as_bytes())?;
        self.file.flush()
    }

    /// What the holder wrote ([`describe`](Self::describe)), if it has yet.
    pub fn holder(path: &Path) -> Option<String> {
        let mut text = String::new();
        File::open(path).ok()?.read_to_string(&mut text).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_named_and_released_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.lock");
        let mut lock = DirLock::try_acquire(&path)
            .expect("lock file")
            .expect("free lock");
        lock.describe("pid 1, longer text first").expect("write");
        lock.describe("pid 1").expect("write");
        assert!(DirLock::held(&path).expect("probe"));
        assert!(DirLock::try_acquire(&path).expect("lock file").is_none());
        assert_eq!(DirLock::holder(&path).as_deref(), Some("pid 1"));
        drop(lock);
        assert!(!DirLock::held(&path).expect("probe"));
        assert!(DirLock::try_acquire(&path).expect("lock file").is_some());
    }
}
