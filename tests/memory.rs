//! Memory after a hostile burst: the real `minewatch run` binary is sent a
//! burst of large malformed messages (each refused, dead-lettered and kept
//! in the archive's `rejected` stream); once they are all counted and
//! written, its resident memory (`VmRSS` in `/proc/<pid>/status`) must
//! come back near its idle figure, not stay at the burst's peak.

mod common;

use common::process::{Extra, daemon_toml};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
/// Messages in the burst, and the size of each.
const BURST: usize = 1500;
const SIZE: usize = 200_000;

fn config(dir: &Path, client_id: &str) -> String {
    let mines = [(
        "140121000001".to_string(),
        vec!["14012100000101MN0001001".to_string()],
    )];
    let extra = Extra {
        mqtt: "max_payload_bytes = 262144",
        http: "metrics_public = true",
        sections: "[archive]\nflush_secs = 2\n",
        ..Extra::default()
    };
    daemon_toml(dir, client_id, &extra, &mines)
}

/// `VmRSS` (or another field) of a process, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

async fn metric(http: &reqwest::Client, base: &str, sample: &str) -> f64 {
    let Ok(r) = http.get(format!("{base}/metrics")).send().await else {
        return 0.0;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_comes_back_after_a_hostile_burst() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("minewatch.toml");
    std::fs::write(&config_path, config(dir.path(), &common::unique("mem"))).expect("config");
    let data = dir.path().join("data");
    let mut daemon = common::DaemonProcess::start(&config_path, &data, &dir.path().join("run.log"));
    let base = daemon.base().await;
    let pid = daemon.child.id();
    let http = common::anonymous_client();
    common::eventually(WAIT, "the daemon connects", || async {
        metric(&http, &base, "minewatch_mqtt_connected").await == 1.0
    })
    .await;
    // Idle: after a first small refusal, so that every path has run once.
    let publisher = common::Publisher::connect("mem-pub").await;
    let topic = "mines/140121000001/telemetry";
    publisher.raw(topic, "not json").await;
    let malformed = "minewatch_records_rejected_total{reason=\"malformed_json\"}";
    common::eventually(WAIT, "the first refusal is counted", || async {
        metric(&http, &base, malformed).await == 1.0
    })
    .await;
    let idle = status_kib(pid, "VmRSS");

    let junk = "{".repeat(SIZE);
    for _ in 0..BURST {
        publisher.raw(topic, junk.clone()).await;
    }
    common::eventually(WAIT, "the burst is counted", || async {
        metric(&http, &base, malformed).await == (BURST + 1) as f64
    })
    .await;
    common::eventually(WAIT, "the burst is in the archive", || async {
        metric(
            &http,
            &base,
            "minewatch_archive_rows_written_total{stream=\"rejected\"}",
        )
        .await
            >= (BURST + 1) as f64
    })
    .await;
    let peak = status_kib(pid, "VmHWM");
    // Near idle: within 64 MiB of it (the burst moved ~300 MB through).
    let near = idle + 64 * 1024;
    let back = common::within(Duration::from_secs(30), || async {
        status_kib(pid, "VmRSS") <= near
    })
    .await;
    let after = status_kib(pid, "VmRSS");
    eprintln!(
        "RSS: idle {} MiB, peak {} MiB, after the burst {} MiB",
        idle / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        back,
        "RSS stayed at {} MiB after the burst (idle {} MiB, peak {} MiB)",
        after / 1024,
        idle / 1024,
        peak / 1024
    );
    daemon.kill();
}
