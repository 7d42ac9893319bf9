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

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// A one-line progress bar on stderr for long commands, drawn only when
/// stderr is a terminal (a log or a pipe gets the closing summary only).
pub struct ProgressBar {
    /// stderr is a terminal.
    tty: bool,
}

impl ProgressBar {
    /// A bar, silent unless stderr is a terminal.
    pub fn new() -> ProgressBar {
        ProgressBar {
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Redraws the bar: `done` of `total`, then `what`.
    pub fn show(&self, done: usize, total: usize, what: &str) {
        if !self.tty {
            return;
        }
        let width = 30;
        let filled = (done * width)
            .checked_div(total)
            .unwrap_or(width)
            .min(width);
        eprint!(
            "\r[{}{}] {done}/{total} {what}\x1b[K",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
    }

    /// The bar is drawn (stderr is a terminal).
    pub fn drawn(&self) -> bool {
        self.tty
    }

    /// Ends the bar's line.
    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

impl Default for ProgressBar {
    fn default() -> Self {
        ProgressBar::new()
    }
}

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
