//! Replay agrees with the live daemon: a daemon ingests an over-limit and
//! evacuation episode over MQTT and archives it; replaying that archive —
//! through the library with the daemon's config, and through
//! `minewatch replay` without one — lists the same alert ids, starts and
//! ends as the live `/api/alerts`, and two runs of the binary print the
//! same bytes. `minewatch replay --compare` reads the live alert
//! transitions the daemon archived and finds no difference, and lists
//! every episode as `only_replay` (exit 1) when they are gone.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{Publisher, eventually, now_ms, start, test_province};
use minewatch::model::rfc3339;
use minewatch::review::replay::{ReplayOptions, load_episodes};
use minewatch::simulators::province::{mine_code, point_code};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

type Episode = (String, String, String, Option<String>);

fn live(alerts: &[Value]) -> BTreeSet<Episode> {
    alerts
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_string(),
                a["kind"].as_str().unwrap_or_default().to_string(),
                a["started_at"].as_str().unwrap_or_default().to_string(),
                a["resolved_at"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Runs `minewatch replay --compare --format json` with `extra`
/// arguments: (exit code, differences, stderr).
fn compare_binary(archive: &std::path::Path, extra: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .args(["replay", "--compare", "--format", "json", "--archive"])
        .arg(archive)
        .args(extra)
        .output()
        .expect("run minewatch replay --compare");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let diffs: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("json differences ({e}): {stderr}"));
    (out.status.code(), diffs, stderr)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        let target = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).expect("copy");
        }
    }
}

fn replay_binary(archive: &std::path::Path) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .args(["replay", "--format", "json", "--archive"])
        .arg(archive)
        .output()
        .expect("run minewatch replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "quiet when not on a terminal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_finds_the_live_alerts_with_the_same_ids_and_times() {
    // Polling 30 s: no offline alert within the test.
    let h = start(test_province(2, 8, 30.0), "replay").await;
    let publisher = Publisher::connect("replay-pub").await;
    let mine = mine_code(0);
    let point = point_code(&mine, 0); // face T1 methane: alarm 1.0, power-off 1.5
    let co = point_code(&mine, 4);
    let t0 = now_ms() - 60_000;
    let methane = [0.3, 0.8, 1.2, 1.4, 1.7, 1.6, 1.1, 0.6, 0.4];
    for (i, v) in methane.iter().enumerate() {
        let ts = t0 + i as i64 * 1000;
        publisher
            .batch(&h.topic(&mine), ts, &[(&point, *v, 0), (&co, 3.0, 0)])
            .await;
    }
    // Over-limit and evacuation both raised and resolved. (Steps of 0.5 %
    // a second are faster than a methane sensor can follow: the rate rule
    // may raise a data anomaly too, which replay must find as well.)
    eventually(WAIT, "both alerts are raised and resolved", || async {
        let a = h.alerts("").await;
        let gas: Vec<_> = a
            .iter()
            .filter(|a| a["kind"] == "overlimit" || a["kind"] == "evacuation")
            .collect();
        gas.len() == 2 && gas.iter().all(|a| !a["resolved_at"].is_null())
    })
    .await;
    let live = live(&h.alerts("").await);
    let stopped = h.stop().await;
    let archive = stopped.config.daemon.data_dir.join("archive");

    // The library, with the daemon's config.
    let result =
        load_episodes(&ReplayOptions::new(&archive), Some(&stopped.config)).expect("replay");
    assert_eq!(result.readings, 2 * methane.len() as u64);
    let replayed: BTreeSet<Episode> = result
        .episodes
        .iter()
        .map(|e| {
            (
                e.alert_id.clone(),
                e.kind.key().to_string(),
                rfc3339(e.started_at),
                e.resolved_at.map(rfc3339),
            )
        })
        .collect();
    assert_eq!(replayed, live);
    let evac = result
        .episodes
        .iter()
        .find(|e| e.kind.key() == "evacuation")
        .expect("evacuation");
    assert_eq!((evac.peak, evac.threshold), (Some(1.7), Some(1.5)));

    // The binary, without a config: the same alerts, the same bytes twice.
    let one = replay_binary(&archive);
    let two = replay_binary(&archive);
    assert_eq!(one, two, "two replays print the same bytes");
    let printed: Vec<Value> = serde_json::from_slice(&one).expect("json");
    let printed: BTreeSet<Episode> = printed
        .iter()
        .map(|a| {
            (
                a["alert_id"].as_str().unwrap_or_default().to_string(),
                a["kind"].as_str().unwrap_or_default().to_string(),
                a["started_at"].as_str().unwrap_or_default().to_string(),
                a["resolved_at"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(printed, live);

    // --compare: the live alerts, as the daemon archived their
    // transitions, are the replayed ones.
    let (code, diffs, stderr) = compare_binary(&archive, &["--kind", "overlimit,evacuation"]);
    assert_eq!(diffs, Vec::<Value>::new(), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("2 replayed and 2 live episodes: no differences"),
        "{stderr}"
    );
    let (code, diffs, stderr) = compare_binary(&archive, &[]);
    let gas: Vec<&Value> = diffs
        .iter()
        .filter(|d| d["kind"] == "overlimit" || d["kind"] == "evacuation")
        .collect();
    assert!(gas.is_empty(), "{gas:?}\n{stderr}");
    assert_eq!(code, Some(if diffs.is_empty() { 0 } else { 1 }), "{stderr}");
    // Without the live transitions every replayed episode is only in replay.
    let bare = tempfile::tempdir().expect("tempdir");
    copy_dir(&archive, bare.path());
    std::fs::remove_dir_all(bare.path().join("alerts")).expect("rm alerts");
    std::fs::create_dir(bare.path().join("alerts")).expect("mkdir alerts");
    let (code, diffs, stderr) = compare_binary(bare.path(), &["--kind", "overlimit,evacuation"]);
    assert_eq!(code, Some(1), "{stderr}");
    let only: Vec<(&str, &str)> = diffs
        .iter()
        .map(|d| {
            (
                d["difference"].as_str().unwrap_or_default(),
                d["kind"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        only,
        [("only_replay", "overlimit"), ("only_replay", "evacuation")]
    );
    // No alerts/ stream at all: an error, exit 2.
    std::fs::remove_dir_all(bare.path().join("alerts")).expect("rm alerts");
    let out = Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .args(["replay", "--compare", "--archive"])
        .arg(bare.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("alerts/"));
}
