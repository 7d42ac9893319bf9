//! Memory of the real `minewatch run` binary (`VmRSS` and its peak
//! `VmHWM` in `/proc/<pid>/status`):
//!
//! - after a hostile burst of large malformed messages (each refused,
//!   dead-lettered and kept in the archive's `rejected` stream), once they
//!   are all counted and written, it comes back near its idle figure;
//! - under overload (a publisher far faster than the daemon, readings
//!   spread over many event-time hours so that many archive partitions are
//!   open at once) its peak stays within what docs/OPERATIONS.md derives
//!   from the config's queue and buffer bounds.

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

/// Overload: messages of `PER_MESSAGE` readings, each in another of
/// `HOURS` event-time hours.
const OVERLOAD_MESSAGES: usize = 6_000;
const PER_MESSAGE: usize = 500;
const HOURS: i64 = 120;
const POINTS: usize = 32;
/// The bounds the overload runs under (small, so that the growth they
/// allow is small next to what an unbounded queue takes).
const INFLIGHT_BYTES: u64 = 4 << 20;
const BUFFERED_BYTES: u64 = 16 << 20;

/// What docs/OPERATIONS.md ("Memory") says the daemon may grow by, over
/// its idle figure, at saturation with these bounds and 2 shards:
/// unacknowledged messages (payload, then decoded: 1.5 × the in-flight
/// bytes), rows on their way to the archive writer (a quarter of its
/// buffer), the buffer itself, the file being encoded (3 × the buffer) and
/// the journal's group buffer (2 × 8 MiB); plus 25 % for the allocator.
fn overload_bound() -> u64 {
    let parts = INFLIGHT_BYTES * 3 / 2
        + BUFFERED_BYTES / 4
        + BUFFERED_BYTES
        + 3 * BUFFERED_BYTES
        + 2 * (8 << 20);
    parts * 5 / 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_the_configured_bounds_under_overload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("minewatch.toml");
    let mine = "140121000001".to_string();
    let points: Vec<String> = (1..=POINTS)
        .map(|i| format!("14012100000101MN0001{i:03}"))
        .collect();
    let mqtt = format!("max_inflight_messages = 256\nmax_inflight_bytes = {INFLIGHT_BYTES}");
    let sections = format!("[archive]\nmax_buffered_bytes = {BUFFERED_BYTES}\n");
    let extra = Extra {
        mqtt: &mqtt,
        http: "metrics_public = true",
        sections: &sections,
        ..Extra::default()
    };
    let toml = daemon_toml(
        dir.path(),
        &common::unique("over"),
        &extra,
        &[(mine.clone(), points.clone())],
    );
    std::fs::write(&config_path, toml).expect("config");
    let data = dir.path().join("data");
    let mut daemon = common::DaemonProcess::start(&config_path, &data, &dir.path().join("run.log"));
    let base = daemon.base().await;
    let pid = daemon.child.id();
    let http = common::anonymous_client();
    common::eventually(WAIT, "the daemon connects", || async {
        metric(&http, &base, "minewatch_mqtt_connected").await == 1.0
    })
    .await;
    let publisher = common::Publisher::connect("over-pub").await;
    let topic = format!("mines/{mine}/telemetry");
    let now = common::now_ms();
    let first_hour = (now / 3_600_000 - HOURS - 1) * 3_600_000;
    let message = |n: usize| {
        let hour = first_hour + (n as i64 % HOURS) * 3_600_000;
        let round = (n as i64 / HOURS) * PER_MESSAGE as i64;
        let mut out = String::from("{\"readings\":[");
        for i in 0..PER_MESSAGE {
            if i > 0 {
                out.push(',');
            }
            // Distinct times within the hour: the detectors see every one.
            let ts = hour + ((round + i as i64) * 7) % 3_600_000;
            out.push_str(&format!(
                "{{\"point\":\"{}\",\"ts\":{ts},\"value\":0.3,\"status\":0}}",
                points[i % POINTS]
            ));
        }
        out.push_str("]}");
        out
    };
    // Idle, after a first message has been through every stage.
    publisher.raw(&topic, message(0)).await;
    let accepted = "minewatch_readings_accepted_total{source=\"mqtt\"}";
    common::eventually(WAIT, "the first message is accepted", || async {
        metric(&http, &base, accepted).await == PER_MESSAGE as f64
    })
    .await;
    let idle = status_kib(pid, "VmRSS") * 1024;

    let started = std::time::Instant::now();
    for n in 1..OVERLOAD_MESSAGES {
        publisher.raw(&topic, message(n)).await;
    }
    let total = (OVERLOAD_MESSAGES * PER_MESSAGE) as f64;
    common::eventually(
        Duration::from_secs(300),
        "every reading is accepted",
        || async { metric(&http, &base, accepted).await >= total },
    )
    .await;
    let took = started.elapsed();
    let peak = status_kib(pid, "VmHWM") * 1024;
    let paused_log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    let bound = overload_bound();
    eprintln!(
        "overload: {total} readings over {HOURS} event hours in {took:?}; RSS idle {} MiB, \
         peak {} MiB (growth {} MiB, bound {} MiB)",
        idle >> 20,
        peak >> 20,
        peak.saturating_sub(idle) >> 20,
        bound >> 20
    );
    assert!(
        !paused_log.contains("taking no more rows"),
        "the archive held ingest back although no write failed"
    );
    assert!(
        peak.saturating_sub(idle) <= bound,
        "RSS grew by {} MiB under overload; the config allows {} MiB",
        peak.saturating_sub(idle) >> 20,
        bound >> 20
    );
    daemon.kill();
}
