//! SIGTERM while the real `minewatch run` binary is under QoS 1 load: the
//! process stops within `daemon.shutdown_timeout_secs`, and cleanly (the
//! sources stop, the shards drain, the archive writes out), with nothing
//! left spinning.

mod common;

use common::process::{Extra, daemon_toml};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MINES: usize = 20;
const POINTS: usize = 20;
const WAIT: Duration = Duration::from_secs(60);
/// `daemon.shutdown_timeout_secs` of the test's daemon.
const LIMIT_SECS: u64 = 15;

fn mine(m: usize) -> String {
    format!("1401210{m:05}")
}

fn point(m: usize, i: usize) -> String {
    format!("{}01MN0001{i:03}", mine(m))
}

fn config(dir: &Path, client_id: &str) -> String {
    let mines: Vec<(String, Vec<String>)> = (0..MINES)
        .map(|m| (mine(m), (0..POINTS).map(|i| point(m, i)).collect()))
        .collect();
    let daemon = format!("shutdown_timeout_secs = {LIMIT_SECS}");
    let extra = Extra {
        daemon: &daemon,
        http: "metrics_public = true",
        ..Extra::default()
    };
    daemon_toml(dir, client_id, &extra, &mines)
}

async fn accepted(http: &reqwest::Client, base: &str) -> f64 {
    let Ok(r) = http.get(format!("{base}/metrics")).send().await else {
        return 0.0;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("minewatch_readings_accepted_total{source=\"mqtt\"}")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_stops_within_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client_id = common::unique("sigterm");
    let config_path = dir.path().join("minewatch.toml");
    std::fs::write(&config_path, config(dir.path(), &client_id)).expect("config");
    let data = dir.path().join("data");
    let log = dir.path().join("run.log");
    let mut daemon = common::DaemonProcess::start(&config_path, &data, &log);
    let base = daemon.base().await;
    let http = common::anonymous_client();
    common::eventually(WAIT, "the daemon connects", || async {
        let Ok(r) = http.get(format!("{base}/healthz")).send().await else {
            return false;
        };
        r.json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["mqtt_connected"] == serde_json::json!(true))
    })
    .await;

    // Load: every mine's points once per second of event time, a round of
    // messages every millisecond or so, until the test ends (at most
    // 20,000 rounds: far longer than the test needs).
    let publisher = common::Publisher::connect("sigterm-pub").await;
    let client = publisher.client.clone();
    let t0 = common::now_ms() - 6 * 3_600_000;
    let load = tokio::spawn(async move {
        for k in 0..20_000i64 {
            for m in 0..MINES {
                let readings: Vec<serde_json::Value> = (0..POINTS)
                    .map(|i| serde_json::json!({"point": point(m, i), "value": 0.3, "status": 0}))
                    .collect();
                let payload =
                    serde_json::json!({"ts": t0 + k * 1000, "readings": readings}).to_string();
                let topic = format!("mines/{}/telemetry", mine(m));
                if client
                    .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    common::eventually(WAIT, "the daemon is ingesting", || async {
        accepted(&http, &base).await >= 20_000.0
    })
    .await;
    assert!(!load.is_finished(), "the load ended before the stop");

    let pid = daemon.child.id().to_string();
    let asked = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    // The bound, with room for a loaded machine to schedule the exit.
    let deadline = asked + Duration::from_secs(LIMIT_SECS + 10);
    let status = loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    load.abort();
    let took = asked.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some(),
        "still running {} s after SIGTERM:\n{}",
        took.as_secs(),
        common::log_tail(&log)
    );
    assert!(
        status.is_some_and(|s| s.success())
            && text.lines().any(|l| l.trim_end().ends_with("stopped")),
        "not a clean stop ({status:?}) within {LIMIT_SECS} s:\n{}",
        common::log_tail(&log)
    );
    eprintln!("stopped {} ms after SIGTERM under load", took.as_millis());
}
