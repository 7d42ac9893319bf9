//! `kill -9` during ingest loses no reading and no alert transition: the
//! real `minewatch run` binary ingests a known set of readings over a
//! persistent QoS 1 session (early on, an over-limit episode whose alert
//! transitions are committed to the store but not yet exported to the
//! archive), is killed with SIGKILL while ingesting, is restarted on the
//! same data directory (it recovers its archive journal and resumes the
//! alert export), finishes, and is stopped with SIGTERM. Then every
//! published (point, ts) must be in the Parquet archive, every transition
//! the store committed must be in the `alerts` stream exactly once, and
//! every file there must be readable. Reading duplicates — messages
//! processed but not yet acknowledged when the process died, which the
//! broker redelivers — are allowed and counted.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array, StringArray};
use common::process::{Extra, archived_readings as archived, daemon_toml, files_below};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const MINES: [&str; 2] = ["140121000001", "140121000002"];
const POINTS_PER_MINE: usize = 10;
/// Messages per mine; each carries one reading of every point of its mine.
const MESSAGES_PER_MINE: usize = 600;
const WAIT: Duration = Duration::from_secs(60);

fn point(mine: &str, i: usize) -> String {
    format!("{mine}01MN0001{i:03}")
}

fn config(dir: &Path, client_id: &str) -> String {
    let mines: Vec<(String, Vec<String>)> = MINES
        .iter()
        .map(|m| {
            (
                m.to_string(),
                (0..POINTS_PER_MINE).map(|i| point(m, i)).collect(),
            )
        })
        .collect();
    let extra = Extra {
        sections: "[archive]\nflush_secs = 60\n\n[[users]]\nname = \"harness\"\nrole = \"admin\"\n",
        ..Extra::default()
    };
    daemon_toml(dir, client_id, &extra, &mines)
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    async fn text(&self, path: &str) -> Option<String> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        r.text().await.ok()
    }

    async fn connected(&self) -> bool {
        self.text("/healthz")
            .await
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["mqtt_connected"] == serde_json::json!(true))
    }

    async fn metric(&self, sample: &str) -> f64 {
        self.text("/metrics")
            .await
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn alerts(&self) -> serde_json::Value {
        self.text("/api/alerts")
            .await
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }
}

/// Waits for the child to exit on its own within `within`.
fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_ingesting_loses_no_acknowledged_reading() {
    minewatch::alert::channels::install_tls_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let client_id = common::unique("crash");
    let config_path = dir.path().join("minewatch.toml");
    std::fs::write(&config_path, config(dir.path(), &client_id)).expect("config");
    // The API needs a token: made with the CLI before the daemon starts.
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .args([
            "create-token",
            "--config",
            config_path.to_str().expect("utf-8"),
        ])
        .args(["--user", "harness", "--label", "crash"])
        .output()
        .expect("minewatch create-token");
    assert!(made.status.success(), "{made:?}");
    let token = String::from_utf8_lossy(&made.stdout).trim().to_string();
    let mut http = Http {
        base: String::new(),
        client: common::client_with_token(&token),
    };
    let log1 = dir.path().join("run1.log");
    let data = dir.path().join("data");
    let mut first = common::DaemonProcess::start(&config_path, &data, &log1);
    http.base = first.base().await;
    common::eventually(WAIT, "the first daemon connects", || http.connected()).await;

    // The readings: every point of every mine once per second of event
    // time, one message per mine and second, published at a steady pace so
    // that the daemon is busy ingesting when it is killed.
    let t0 = common::now_ms() - 3_600_000;
    let publisher = common::Publisher::connect("crash-pub").await;
    let mut expected = BTreeSet::new();
    let publishing = {
        let client = publisher.client.clone();
        let mut plan = Vec::new();
        for k in 0..MESSAGES_PER_MINE {
            for mine in MINES {
                let ts = t0 + k as i64 * 1000;
                let readings: Vec<serde_json::Value> = (0..POINTS_PER_MINE)
                    .map(|i| {
                        expected.insert((point(mine, i), ts));
                        // Point 1 over the power-off level for five
                        // seconds: two alerts raised and cleared early.
                        let value = if i == 1 && (5..10).contains(&k) {
                            2.5
                        } else {
                            0.25
                        };
                        serde_json::json!({"point": point(mine, i), "value": value, "status": 0})
                    })
                    .collect();
                let payload = serde_json::json!({"ts": ts, "readings": readings}).to_string();
                plan.push((format!("mines/{mine}/telemetry"), payload));
            }
        }
        // Last, on every mine's topic, an over-limit reading: once the
        // restarted daemon has raised its alert, everything published
        // before it on that topic has been processed (MQTT keeps a topic's
        // order).
        let sentinel_ts = t0 + MESSAGES_PER_MINE as i64 * 1000;
        for mine in MINES {
            expected.insert((point(mine, 0), sentinel_ts));
            let payload = serde_json::json!({"ts": sentinel_ts, "readings": [
                {"point": point(mine, 0), "value": 2.5, "status": 0}
            ]})
            .to_string();
            plan.push((format!("mines/{mine}/telemetry"), payload));
        }
        tokio::spawn(async move {
            for (topic, payload) in plan {
                client
                    .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                    .await
                    .expect("publish");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let total_messages = (MESSAGES_PER_MINE + 1) * MINES.len();

    // Kill it in the middle of ingest, with the early alerts' transitions
    // committed and not yet exported (flush_secs = 60).
    let quarter = (expected.len() / 4) as f64;
    common::eventually(
        WAIT,
        "the first daemon has ingested a quarter and committed alert transitions",
        || async {
            http.metric("minewatch_readings_accepted_total{source=\"mqtt\"}")
                .await
                >= quarter
                && http.metric("minewatch_archive_alerts_pending").await >= 4.0
        },
    )
    .await;
    let before_kill = http
        .metric("minewatch_readings_accepted_total{source=\"mqtt\"}")
        .await;
    first.kill();
    assert!(
        (before_kill as usize) < expected.len(),
        "killed after ingest had finished; the test proves nothing"
    );

    // Everything is published (the broker holds the rest for the session).
    publishing.await.expect("publisher");
    publisher.wait_acked(total_messages as u64).await;

    // Restart on the same data directory and session.
    let log2 = dir.path().join("run2.log");
    let mut second = common::DaemonProcess::start(&config_path, &data, &log2);
    http.base = second.base().await;
    common::eventually(WAIT, "the second daemon connects", || http.connected()).await;
    let recovered = http
        .metric("minewatch_archive_journal_recovered_rows_total{stream=\"readings\"}")
        .await;
    common::eventually(WAIT, "both sentinel alerts are raised", || async {
        let alerts = http.alerts().await;
        let n = alerts["alerts"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|a| a["kind"] == "evacuation" || a["kind"] == "overlimit")
                .filter(|a| {
                    let mine = a["mine"].as_str().unwrap_or_default();
                    a["point"].as_str() == Some(point(mine, 0).as_str())
                })
                .map(|a| a["mine"].as_str().unwrap_or_default().to_string())
                .collect::<BTreeSet<_>>()
                .len()
        });
        n == MINES.len()
    })
    .await;

    // A graceful stop writes every buffered row out.
    let pid = second.child.id().to_string();
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let status = wait_exit(&mut second.child, WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "the daemon did not stop cleanly: {status:?}\n{}",
        common::log_tail(&log2)
    );

    let root = dir.path().join("data/archive");
    let (seen, rows) = archived(&root);
    let missing: Vec<_> = expected.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} published readings are not in the archive, e.g. {missing:?}\nfirst run:\n{}\nsecond run:\n{}",
        expected.difference(&seen).count(),
        expected.len(),
        common::log_tail(&log1),
        common::log_tail(&log2)
    );
    assert_eq!(seen.len(), expected.len(), "nothing but what was published");
    let journal = root.join("journal");
    let mut left = Vec::new();
    files_below(&journal, &mut left);
    assert!(left.is_empty(), "a clean stop leaves no journal: {left:?}");
    assert!(
        recovered > 0.0,
        "the restart recovered the killed run's journal (flush_secs = 60 keeps every row there)"
    );
    // Every committed alert transition is in the alerts stream, once.
    let store = minewatch::store::Store::open(&format!(
        "sqlite:{}",
        dir.path().join("data/minewatch.db").display()
    ))
    .expect("the daemon's store");
    let committed: BTreeSet<(String, i64)> = store
        .read(|db| db.query("SELECT alert_id, seq FROM alert_transitions", &[]))
        .expect("transitions")
        .iter()
        .map(|r| {
            (
                r[0].text().unwrap_or_default().to_string(),
                r[1].int().unwrap_or(0),
            )
        })
        .collect();
    let transitions = archived_transitions(&root);
    let once: BTreeSet<(String, i64)> = transitions.iter().cloned().collect();
    assert!(
        committed.len() >= 8,
        "two early alerts per mine, raised and cleared: {committed:?}"
    );
    assert_eq!(
        once, committed,
        "the alerts stream holds exactly the committed transitions"
    );
    assert_eq!(transitions.len(), once.len(), "none twice");
    eprintln!(
        "published {} readings; killed after {before_kill} accepted; {recovered} recovered from the journal; {rows} rows archived ({} duplicates from redelivery); {} alert transitions archived",
        expected.len(),
        rows - seen.len(),
        transitions.len()
    );
}

/// (alert_id, seq) of every row of the `alerts` stream; every file there
/// must be a finished, readable Parquet file (or the export cursor).
fn archived_transitions(root: &Path) -> Vec<(String, i64)> {
    let mut files = Vec::new();
    files_below(&root.join("alerts"), &mut files);
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == minewatch::archive::alerts::CURSOR_FILE {
            continue;
        }
        assert!(
            minewatch::archive::alerts::parse_file_name(name).is_some(),
            "a stray file in the alerts stream: {}",
            f.display()
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).expect("open"))
            .unwrap_or_else(|e| panic!("{} is not readable Parquet: {e}", f.display()))
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let ids = batch
                .column_by_name("alert_id")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .expect("alert_id column");
            let seqs = batch
                .column_by_name("seq")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .expect("seq column");
            for i in 0..batch.num_rows() {
                out.push((ids.value(i).to_string(), seqs.value(i)));
            }
        }
    }
    out
}
