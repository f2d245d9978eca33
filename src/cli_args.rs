//! Arguments several commands take the same way.

use std::path::{Path, PathBuf};

pub const DEFAULT: &str = ".orders";
/// Fills `--data-dir` for every command, so that one `export` points `orders serve` and the
/// commands that read its files (replay, events, projections, mail…) at the same place.
pub const ENV: &str = "ORDERS_DATA_DIR";

#[derive(Debug, Clone, clap::Args)]
pub struct DataDir {
    /// The local data directory (the one `orders serve` keeps its stores in).
    #[arg(long, default_value = DEFAULT, env = ENV, global = true)]
    pub data_dir: PathBuf,
}

impl DataDir {
    /// Refuses a `--data-dir` typed next to `--aws`: one reads AWS, the other a local dir.
    /// The variable does not count (not a clap conflict, which would count it): exported
    /// for the local commands, it must not turn an `--aws` form into an error.
    pub fn refuse_with_aws(&self, aws: bool) -> anyhow::Result<()> {
        let from_env = std::env::var_os(ENV).map(PathBuf::from);
        let typed =
            self.data_dir != Path::new(DEFAULT) && Some(&self.data_dir) != from_env.as_ref();
        anyhow::ensure!(
            !(aws && typed),
            "--aws reads AWS and --data-dir a local data dir: give one of them"
        );
        Ok(())
    }
}

/// `--limit` of the list commands: 1 or more (0 meant "all" locally and "none" on AWS).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("a number of 1 or more".to_string()),
    }
}
