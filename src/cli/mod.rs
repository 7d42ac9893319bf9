//! The bodies of the `minewatch` commands, one file each; `src/main.rs`
//! only parses the arguments and calls them.

pub mod audit;
pub mod check_config;
pub mod demo;
pub mod replay;
pub mod run;
pub mod score;
pub mod simulate;
pub mod users;

use std::process::ExitCode;
use std::time::Duration;

/// Logs at info by default. The embedded broker (rumqttd) logs every
/// ordinary disconnect as an error, so it is silent unless `RUST_LOG` asks.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rumqttd=off,rumqttc=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The exit status of a command that returned a result: 0, or 1 with the
/// error and its causes on stderr.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error may quote a URL from the config (store, broker).
            eprintln!("minewatch: {}", crate::redact::secrets(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C, on SIGTERM (how service managers stop daemons) or
/// after `seconds`.
pub async fn until_stopped(seconds: Option<u64>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let timer = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = timer => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
