//! End to end through the daemon: what it keeps and shows holds no secret
//! and nobody else can read it.
//!
//! - WeCom and DingTalk robots that cannot be reached: the push errors in
//!   the store and in `/api/outbox` and `/api/alerts/{id}` never contain
//!   the robot's `key=` or `access_token=`, and a county regulator does not
//!   see the push errors at all.
//! - After a run, the data directory is `0700` and every file in it
//!   (SQLite store and its `-wal`/`-shm`, dead letters, archive) `0600`.

mod common;

use std::time::Duration;

use common::{Publisher, api_token, client_with_token, eventually, now_ms, start, test_province};
use minewatch::config::auth::UserConfig;
use minewatch::simulators::province::{mine_code, point_code};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const WECOM_KEY: &str = "wecom-robot-key-7f3a";
const DING_TOKEN: &str = "dingtalk-access-token-91c2";

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url)
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json")
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        if entry.is_file() {
            out.extend(std::fs::read(&entry).unwrap_or_default());
        }
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_chat_robots_leak_no_key_and_county_users_see_no_push_errors() {
    // A port nobody listens on: every push fails to connect.
    let closed = minewatch::broker::free_port().expect("port");
    let mut config = test_province(1, 8, 600.0);
    config.alerting = toml::from_str(&format!(
        r#"
[[channels]]
name = "wx"
kind = "wecom"
url = "http://127.0.0.1:{closed}/cgi-bin/webhook/send?key={WECOM_KEY}"
group_wait_ms = 0

[[channels]]
name = "ding"
kind = "dingtalk"
url = "http://127.0.0.1:{closed}/robot/send?access_token={DING_TOKEN}"
secret = "SECding"
group_wait_ms = 0

[[routes]]
jurisdiction = "140121"
kinds = ["evacuation", "overlimit"]
channels = ["wx", "ding"]
"#
    ))
    .expect("alerting config");
    config.users.push(UserConfig {
        name: "county-140121".into(),
        role: "county_regulator".into(),
        jurisdiction: Some("140121".into()),
        password_hash: None,
    });
    let h = start(config, "secrets").await;
    let county = client_with_token(&api_token(&h.daemon, "county-140121").await);

    let publisher = Publisher::connect("secrets-pub").await;
    let mine = mine_code(0);
    let point = point_code(&mine, 0);
    let t0 = now_ms();
    for (i, v) in [0.3, 1.2, 1.7, 1.8].iter().enumerate() {
        publisher
            .batch(&h.topic(&mine), t0 + i as i64 * 1000, &[(&point, *v, 0)])
            .await;
    }

    // Both channels have failed at least once, as the admin sees.
    eventually(WAIT, "both robots' pushes have failed", || async {
        let o = h.get("/api/outbox").await;
        let failed = |ch: &str| {
            o["outbox"].as_array().is_some_and(|rows| {
                rows.iter()
                    .any(|r| r["channel"] == ch && r["last_error"].is_string())
            })
        };
        failed("wx") && failed("ding")
    })
    .await;
    let admin_view = h.get("/api/outbox").await;
    let text = admin_view.to_string();
    assert!(!text.contains(WECOM_KEY), "{text}");
    assert!(!text.contains(DING_TOKEN), "{text}");
    assert!(
        text.contains("cannot connect"),
        "the admin still sees why: {text}"
    );

    // The county regulator: the pushes and their state, not their errors.
    let alert_id = admin_view["outbox"][0]["key"]
        .as_str()
        .and_then(|k| k.split(':').next())
        .expect("an outbox key")
        .to_string();
    let theirs = get(&county, format!("{}/api/outbox", h.base)).await;
    let rows = theirs["outbox"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{theirs}");
    assert!(rows.iter().all(|r| r["last_error"].is_null()), "{theirs}");
    let one = get(&county, format!("{}/api/alerts/{alert_id}", h.base)).await;
    let pushes = one["outbox"].as_array().expect("the alert's pushes");
    assert!(!pushes.is_empty(), "{one}");
    assert!(pushes.iter().all(|r| r["last_error"].is_null()), "{one}");
    let admin_one = h.get(&format!("/api/alerts/{alert_id}")).await.to_string();
    assert!(!admin_one.contains(WECOM_KEY) && !admin_one.contains(DING_TOKEN));

    // Nor in the store on disk (the SQLite file and its WAL).
    let data = h.config.daemon.data_dir.clone();
    h.daemon.shutdown().await;
    if std::env::var("MINEWATCH_TEST_PG").map_or(true, |v| v.is_empty()) {
        let bytes = all_bytes(&data);
        assert!(!bytes.is_empty());
        assert!(!contains(&bytes, WECOM_KEY), "the WeCom key is on disk");
        assert!(
            !contains(&bytes, DING_TOKEN),
            "the DingTalk token is on disk"
        );
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_run_the_data_directory_and_its_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().expect("tempdir");
    let mut config = test_province(1, 4, 600.0);
    // A data directory the daemon creates itself, inside an open parent.
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = parent.path().join("data");
    config.daemon.data_dir = data.clone();
    config.alerting.store = Some(format!("sqlite:{}", data.join("minewatch.db").display()));
    config.mqtt.broker = format!("mqtt://{}", common::broker());
    config.mqtt.client_id = common::unique("modes");
    config.http.listen = "127.0.0.1:0".into();
    let prefix = format!("{}/", config.mqtt.client_id);
    let daemon = minewatch::daemon::Daemon::start(
        config,
        minewatch::daemon::DaemonOptions {
            topic_prefix: prefix.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("daemon starts");
    // A good batch (archive) and a bad one (dead letters).
    let publisher = Publisher::connect("modes-pub").await;
    let mine = mine_code(0);
    let topic = format!("{prefix}mines/{mine}/telemetry");
    publisher
        .batch(&topic, now_ms(), &[(&point_code(&mine, 0), 0.3, 0)])
        .await;
    publisher.raw(&topic, "not json").await;
    let dead = data.join("deadletter.jsonl");
    eventually(WAIT, "the bad batch is a dead letter", || async {
        std::fs::metadata(&dead).is_ok_and(|m| m.len() > 0)
    })
    .await;
    daemon.shutdown().await;

    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    let entries = walk(&data);
    let names: Vec<String> = entries
        .iter()
        .map(|p| p.strip_prefix(&data).unwrap_or(p).display().to_string())
        .collect();
    for needed in ["minewatch.db", "archive"] {
        assert!(names.iter().any(|n| n.starts_with(needed)), "{names:?}");
    }
    for p in &entries {
        let m = mode(p);
        assert_eq!(
            m & 0o077,
            0,
            "{} is {:o}, readable by others",
            p.display(),
            m
        );
    }
}

/// The example config with `replace` applied, written into `dir`.
fn example_config(dir: &std::path::Path, replace: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(format!(
        "{}/config/example.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("example config");
    for (from, to) in replace {
        assert!(text.contains(from), "{from} not in the example");
        text = text.replacen(from, to, 1);
    }
    let file = dir.join("config.toml");
    std::fs::write(&file, text).expect("write config");
    file
}

#[test]
fn the_broker_password_is_never_logged_on_connect_errors() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = minewatch::broker::free_port().expect("port");
    let data = dir.path().join("data");
    let broker = format!("broker = \"mqtt://ingest:hunter2-pw@127.0.0.1:{closed}\"");
    let data_line = format!("data_dir = \"{}\"", data.display());
    let file = example_config(
        dir.path(),
        &[
            ("broker = \"mqtt://127.0.0.1:1883\"", &broker),
            ("data_dir = \"data\"", &data_line),
            ("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\""),
        ],
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .args(["run", "--config", file.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run minewatch");
    let (tx, rx) = std::sync::mpsc::channel();
    for out in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + WAIT;
    let mut lines = Vec::new();
    let mut retried = false;
    while !retried && std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                retried = l.contains("mqtt connection error");
                lines.push(l);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    assert!(retried, "no connection error logged:\n{log}");
    assert!(
        !log.contains("hunter2-pw"),
        "the password is in the log:\n{log}"
    );
    assert!(log.contains("ingest:***@127.0.0.1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_does_not_print_the_store_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = minewatch::broker::free_port().expect("port");
    for store in [
        format!("postgres://mw:hunter2-pw@127.0.0.1:{closed}/mw"),
        format!("postgres://mw@127.0.0.1:{closed}/mw?password=hunter2-pw&sslmode=disable"),
    ] {
        let mut config = test_province(1, 4, 600.0);
        config.daemon.data_dir = dir.path().join("data");
        config.http.listen = "127.0.0.1:0".into();
        config.alerting.store = Some(store.clone());
        let e = match minewatch::daemon::Daemon::start(config, Default::default()).await {
            Ok(_) => panic!("a daemon started on {store}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains("cannot open the alert store"), "{e}");
        assert!(!e.contains("hunter2-pw"), "{e}");
    }
}
