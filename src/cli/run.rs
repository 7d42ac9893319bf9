//! `minewatch run`: the daemon on a config file, until Ctrl-C or SIGTERM,
//! then a stop bounded by `daemon.shutdown_timeout_secs`.

use std::path::PathBuf;
use std::time::Duration;

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
    let limit = config.daemon.shutdown_timeout_secs;
    let daemon = Daemon::start(config, DaemonOptions::default()).await?;
    tracing::info!(http = %daemon.http_addr, "minewatch running");
    until_stopped(None).await;
    tracing::info!(within_secs = limit, "stopping");
    if tokio::time::timeout(Duration::from_secs(limit), daemon.shutdown())
        .await
        .is_err()
    {
        // The runtime would wait for the stuck parts on its way out: leave
        // now. Nothing acknowledged is lost (it is in the archive journal,
        // replayed at the next start); what was not acknowledged is
        // redelivered by the broker.
        tracing::error!(
            within_secs = limit,
            "the stop did not finish within daemon.shutdown_timeout_secs; exiting anyway \
             (unacknowledged messages are redelivered by the broker, acknowledged ones are \
             in the archive journal)"
        );
        std::process::exit(1);
    }
    tracing::info!("stopped");
    Ok(())
}
