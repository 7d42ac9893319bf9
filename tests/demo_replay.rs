//! Replay of the demo's archive reproduces its live alerts: `minewatch
//! demo` runs its first script (a methane over-limit that escalates to
//! evacuation, a CO over-limit, a point and a whole mine going offline, a
//! data anomaly, a drop after approach, and the power and seal patterns:
//! every alert kind) and stops on its own; `minewatch replay --config {data}/replay.toml
//! --compare` over the archive it left finds the live alerts of every one
//! of those kinds and no difference. About 2.5 minutes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn replaying_the_demos_archive_finds_its_live_alerts_and_no_difference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .args(["demo", "--seconds", "150", "--data-dir"])
        .arg(&data)
        .args(["--modbus-port", "0"])
        .args(["--http-port", &free_port().to_string()])
        .args(["--hook-port", &free_port().to_string()])
        .args(["--mqtt-port", &free_port().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let deadline = Instant::now() + Duration::from_secs(260);
    let status = loop {
        if let Some(status) = demo.try_wait().expect("wait for the demo") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = demo.kill();
            let _ = demo.wait();
            panic!("the demo did not stop on its own within 260 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "the demo failed: {status}");

    let archive = data.join("archive");
    let replay = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_minewatch"))
            .args(["replay", "--format", "json", "--archive"])
            .arg(&archive)
            .arg("--config")
            .arg(data.join("replay.toml"))
            .args(extra)
            .output()
            .expect("run minewatch replay");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json: Vec<Value> = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("json from replay ({e}): {stderr}"));
        (out.status.code(), json, stderr)
    };
    let (code, episodes, stderr) = replay(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    for kind in minewatch::model::AlertKind::ALL.map(|k| k.key()) {
        assert!(
            episodes.iter().any(|e| e["kind"] == kind),
            "the demo's first script raises {kind}: {episodes:#?}"
        );
    }
    let (code, diffs, stderr) = replay(&["--compare"]);
    assert_eq!(diffs, Vec::<Value>::new(), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    let n = episodes.len();
    assert!(
        stderr.contains(&format!(
            "{n} replayed and {n} live episodes: no differences"
        )),
        "{stderr}"
    );
}
