//! `minewatch run`: the daemon on a config file, until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use crate::config::{self, Level};
use crate::daemon::{Daemon, DaemonOptions};

use super::{init_logging, until_stopped};

/// `minewatch run --config FILE`.
pub async fn run(path: PathBuf, json: bool) -> anyhow::Result<()> {
    let (config, warnings) = config::load(&path)?;
    init_logging(json || config.daemon.log_format == "json");
    for w in warnings.iter().filter(|w| w.level == Level::Warning) {
        tracing::warn!("{}", w.to_string().replace('\n', " "));
    }
    let daemon = Daemon::start(config, DaemonOptions::default()).await?;
    tracing::info!(http = %daemon.http_addr, "minewatch running");
    until_stopped(None).await;
    tracing::info!("stopping");
    daemon.shutdown().await;
    Ok(())
}
