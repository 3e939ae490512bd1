//! The commands of `soc-runtime`, one module each: its arguments and what it does. They read
//! the configuration through [`load_config`], once per command.

pub(crate) mod approvers;
pub(crate) mod backtest;
pub(crate) mod bench;
pub(crate) mod case;
pub(crate) mod llm;
pub(crate) mod memory;
pub(crate) mod report;
pub(crate) mod run;

use std::path::{Path, PathBuf};

use clap::Args;
use soc_runtime::app::config::Config;

/// The configuration: the file (or the embedded defaults), then the `SOC_*` variables on top.
/// The one place a command reads it.
pub(crate) fn load_config(file: Option<&Path>) -> anyhow::Result<Config> {
    let mut config = Config::load(file)?;
    config.apply_env(|k| std::env::var(k).ok())?;
    Ok(config)
}

/// Where the store is.
#[derive(Args)]
pub(crate) struct StoreArgs {
    /// Data directory holding the store (default from the config).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Config file (for data_dir).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Opens the store of the configured (or given) data directory, which must exist.
pub(crate) async fn open_store(args: StoreArgs) -> anyhow::Result<soc_runtime::store::Store> {
    let cfg = load_config(args.config.as_deref())?;
    let dir = args.data_dir.unwrap_or(cfg.data_dir);
    // The Redis-backed store, or else the last in-memory run's.
    let mut path = dir.join(soc_runtime::store::FILE);
    if !path.exists() {
        path = dir.join(soc_runtime::store::MEMORY_FILE);
    }
    if !path.exists() {
        anyhow::bail!(
            "no store at {}: run the SOC first, or point --data-dir at its data directory",
            path.display()
        );
    }
    Ok(soc_runtime::store::Store::open(&path).await?)
}
