//! Interop test of the Parquet archive: a daemon ingests known readings
//! (among them an over-limit episode) and refused records over MQTT and
//! shuts down; the archive it leaves — readings, rejected records and the
//! alert transitions — is read back with the parquet crate here and with
//! pyarrow and DuckDB (readers not written by us) from
//! `tests/fixtures/archive_read.py`.
//!
//! The pyarrow/DuckDB part needs `MINEWATCH_PYTHON` = a Python with both
//! (`.ci/run` makes one in `.venv`); without it that part prints
//! `skipped: …` and the rest of the test still runs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arrow::array::{
    Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray, UInt16Array,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use common::{Publisher, eventually, now_ms, start, test_province};

/// Every file below `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// (point, ts, value or None, status, mine, sensor, source) per row, read
/// with the parquet crate.
type Row = (String, i64, Option<f64>, u16, String, String, String);

/// One published batch: (mine, event time, (point, value, status)…).
type Sent = (String, i64, Vec<(String, f64, u16)>);

fn read_rows(path: &Path) -> Vec<Row> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open"))
        .expect("parquet")
        .build()
        .expect("reader");
    let mut out = Vec::new();
    for b in reader {
        let b = b.expect("batch");
        let s = |c: &str| {
            b.column_by_name(c)
                .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                .expect(c)
                .clone()
        };
        let (mine, point, sensor, source) = (s("mine"), s("point"), s("sensor"), s("source"));
        let ts = b
            .column_by_name("ts")
            .and_then(|a| a.as_any().downcast_ref::<TimestampMillisecondArray>())
            .expect("ts")
            .clone();
        let value = b
            .column_by_name("value")
            .and_then(|a| a.as_any().downcast_ref::<Float64Array>())
            .expect("value")
            .clone();
        let status = b
            .column_by_name("status")
            .and_then(|a| a.as_any().downcast_ref::<UInt16Array>())
            .expect("status")
            .clone();
        for i in 0..b.num_rows() {
            out.push((
                point.value(i).to_string(),
                ts.value(i),
                (!value.is_null(i)).then(|| value.value(i)),
                status.value(i),
                mine.value(i).to_string(),
                sensor.value(i).to_string(),
                source.value(i).to_string(),
            ));
        }
    }
    out
}

/// (alert_id, seq, transition, kind, peak, resolved_at) of one row of an
/// alerts file.
type Transition = (String, i64, String, String, Option<f64>, Option<i64>);

/// Every row of an alerts file, read with the parquet crate.
fn read_transitions(path: &Path) -> Vec<Transition> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open"))
        .unwrap_or_else(|e| panic!("{} is not readable Parquet: {e}", path.display()))
        .build()
        .expect("reader");
    let mut out = Vec::new();
    for b in reader {
        let b = b.expect("batch");
        let s = |c: &str| {
            b.column_by_name(c)
                .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                .expect(c)
                .clone()
        };
        let (alert_id, transition, kind) = (s("alert_id"), s("transition"), s("kind"));
        let seq = b
            .column_by_name("seq")
            .and_then(|a| a.as_any().downcast_ref::<Int64Array>())
            .expect("seq")
            .clone();
        let peak = b
            .column_by_name("peak")
            .and_then(|a| a.as_any().downcast_ref::<Float64Array>())
            .expect("peak")
            .clone();
        let resolved = b
            .column_by_name("resolved_at")
            .and_then(|a| a.as_any().downcast_ref::<TimestampMillisecondArray>())
            .expect("resolved_at")
            .clone();
        for i in 0..b.num_rows() {
            out.push((
                alert_id.value(i).to_string(),
                seq.value(i),
                transition.value(i).to_string(),
                kind.value(i).to_string(),
                (!peak.is_null(i)).then(|| peak.value(i)),
                (!resolved.is_null(i)).then(|| resolved.value(i)),
            ));
        }
    }
    out
}

/// A Python with pyarrow and duckdb, or why not.
fn python() -> Result<String, String> {
    let py =
        std::env::var("MINEWATCH_PYTHON").map_err(|_| "MINEWATCH_PYTHON is not set".to_string())?;
    let ok = Command::new(&py)
        .args(["-c", "import pyarrow, duckdb"])
        .output()
        .map_err(|e| format!("cannot run {py}: {e}"))?;
    if !ok.status.success() {
        return Err(format!(
            "{py} lacks pyarrow or duckdb: {}",
            String::from_utf8_lossy(&ok.stderr).trim()
        ));
    }
    Ok(py)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_holds_every_reading_and_refusal_and_others_can_read_it() {
    let config = test_province(2, 4, 1.0);
    let m0 = config.mines[0].code.clone();
    let m1 = config.mines[1].code.clone();
    let p = |m: usize, j: usize| config.mines[m].points[j].code.clone();
    let sensor = |m: usize, j: usize| config.mines[m].points[j].sensor.clone();
    let h = start(config.clone(), "archive").await;
    let publisher = Publisher::connect("archive-pub").await;

    // Two hours of event time, so two partitions; one fault reading with no
    // value; readings of one point out of order.
    let now = now_ms();
    let t0 = now - 2 * 3_600_000;
    let t1 = now - 3_600_000;
    let mut expected: BTreeMap<String, Vec<(i64, Option<f64>, u16)>> = BTreeMap::new();
    let sends: Vec<Sent> = vec![
        (m0.clone(), t1, vec![(p(0, 0), 0.31, 0), (p(0, 1), 0.12, 0)]),
        (
            m0.clone(),
            t0,
            vec![(p(0, 0), 0.25, 0), (p(0, 2), f64::NAN, 128)],
        ),
        (
            m1.clone(),
            t0 + 500,
            vec![(p(1, 0), 0.5, 4), (p(1, 3), 17.0, 0)],
        ),
        (m1.clone(), t1 + 500, vec![(p(1, 0), 0.45, 0)]),
        // Methane at mine 0's face over the power-off level, then back:
        // an over-limit and an evacuation alert, raised and cleared.
        (m0.clone(), t1 + 1_000, vec![(p(0, 0), 1.6, 0)]),
        (m0.clone(), t1 + 2_000, vec![(p(0, 0), 0.2, 0)]),
    ];
    for (mine, ts, readings) in &sends {
        let borrowed: Vec<(&str, f64, u16)> = readings
            .iter()
            .map(|(p, v, s)| (p.as_str(), *v, *s))
            .collect();
        publisher.batch(&h.topic(mine), *ts, &borrowed).await;
        for (point, v, s) in readings {
            expected
                .entry(point.clone())
                .or_default()
                .push((*ts, (!v.is_nan()).then_some(*v), *s));
        }
    }
    for v in expected.values_mut() {
        v.sort_by_key(|r| r.0);
    }
    let total: usize = expected.values().map(Vec::len).sum();
    // Refused: an unknown point inside a good batch, and a message that is
    // not JSON.
    publisher
        .batch(
            &h.topic(&m0),
            t1,
            &[("NOT-A-POINT", 0.1, 0), (&p(0, 3), 0.2, 0)],
        )
        .await;
    expected
        .entry(p(0, 3))
        .or_default()
        .push((t1, Some(0.2), 0));
    let total = total + 1;
    publisher.raw(&h.topic(&m1), "{not json").await;
    publisher.wait_acked(8).await;
    eventually(
        Duration::from_secs(15),
        "every reading is accepted",
        || async {
            h.metric("minewatch_readings_accepted_total{source=\"mqtt\"}")
                .await as usize
                == total
        },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "both refusals are counted",
        || async {
            h.metric("minewatch_records_rejected_total{reason=\"unknown_point\"}")
                .await
                == 1.0
                && h.metric("minewatch_records_rejected_total{reason=\"malformed_json\"}")
                    .await
                    == 1.0
        },
    )
    .await;
    // (Mine 1's 17.0 at an intake methane point raises alerts too, which
    // stay active.)
    let face = p(0, 0);
    eventually(
        Duration::from_secs(15),
        "the face's over-limit and evacuation alerts are raised and cleared",
        || async {
            let a = h.alerts("").await;
            let gas: Vec<&Value> = a
                .iter()
                .filter(|a| a["point"] == face.as_str())
                .filter(|a| a["kind"] == "overlimit" || a["kind"] == "evacuation")
                .collect();
            gas.len() == 2 && gas.iter().all(|a| !a["resolved_at"].is_null())
        },
    )
    .await;
    // flush_secs is 60: nothing is written before the shutdown.
    let stopped = h.stop().await;
    let root = stopped.config.daemon.data_dir.join("archive");

    let all = files(&root);
    let cursor = root
        .join("alerts")
        .join(minewatch::archive::alerts::CURSOR_FILE);
    assert!(
        all.iter().all(|f| *f == cursor
            || (f.extension().is_some_and(|e| e == "parquet")
                && !f.file_name().unwrap().to_string_lossy().starts_with('.'))),
        "only finished files (and the alerts export cursor) are left: {all:?}"
    );
    let readings: Vec<&PathBuf> = all
        .iter()
        .filter(|f| f.starts_with(root.join("readings")))
        .collect();
    assert_eq!(readings.len(), 2, "one file per event hour: {readings:?}");
    let mut got: BTreeMap<String, Vec<(i64, Option<f64>, u16)>> = BTreeMap::new();
    for f in &readings {
        let rows = read_rows(f);
        // Sorted by (mine, point, ts) within the file.
        let keys: Vec<(&str, &str, i64)> = rows
            .iter()
            .map(|r| (r.4.as_str(), r.0.as_str(), r.1))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
        for r in rows {
            let (m, j) = if r.0.starts_with(&m0) {
                (0, &m0)
            } else {
                (1, &m1)
            };
            assert_eq!(&r.4, j);
            let idx = config.mines[m]
                .points
                .iter()
                .position(|pc| pc.code == r.0)
                .expect("known point");
            assert_eq!(r.5, sensor(m, idx));
            assert_eq!(r.6, "mqtt");
            got.entry(r.0).or_default().push((r.1, r.2, r.3));
        }
    }
    for v in got.values_mut() {
        v.sort_by_key(|r| r.0);
    }
    assert_eq!(got, expected);
    let rejected: Vec<&PathBuf> = all
        .iter()
        .filter(|f| f.starts_with(root.join("rejected")))
        .collect();
    assert!(!rejected.is_empty(), "{all:?}");

    // The alerts stream holds every transition the store committed, once.
    let store = minewatch::store::Store::open(
        &stopped
            .config
            .alerting
            .store_url(&stopped.config.daemon.data_dir),
    )
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
    let mut archived: Vec<(String, i64)> = Vec::new();
    let mut cleared: Vec<(String, Option<f64>, Option<i64>)> = Vec::new();
    for f in all
        .iter()
        .filter(|f| f.starts_with(root.join("alerts")) && **f != cursor)
    {
        for (alert_id, seq, transition, kind, peak, resolved) in read_transitions(f) {
            if transition == "cleared" {
                cleared.push((kind, peak, resolved));
            }
            archived.push((alert_id, seq));
        }
    }
    assert!(
        committed.len() >= 4,
        "raised and cleared, twice: {committed:?}"
    );
    assert_eq!(archived.len(), committed.len(), "each transition once");
    assert_eq!(archived.iter().cloned().collect::<BTreeSet<_>>(), committed);
    cleared.retain(|c| c.0 == "overlimit" || c.0 == "evacuation");
    cleared.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        cleared,
        [
            ("evacuation".to_string(), Some(1.6), Some(t1 + 2_000)),
            ("overlimit".to_string(), Some(1.6), Some(t1 + 2_000)),
        ],
        "the final peak and the end on clearing"
    );

    // pyarrow and DuckDB.
    let py = match python() {
        Ok(py) => py,
        Err(why) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: pyarrow/DuckDB part of the archive interop test ({why}); \
                 python3 -m venv .venv && .venv/bin/pip install pyarrow duckdb; \
                 MINEWATCH_PYTHON=$PWD/.venv/bin/python cargo test --test archive_interop"
            );
            return;
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive_read.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(&root)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "archive_read.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("json from python");

    let pa = &seen["pyarrow"];
    assert_eq!(pa["rows"], total);
    assert_eq!(pa["null_values"], 1);
    assert_eq!(pa["types"]["ts"], "timestamp[ms, tz=UTC]");
    assert_eq!(pa["types"]["arrival"], "timestamp[ms, tz=UTC]");
    assert_eq!(pa["types"]["value"], "double");
    assert_eq!(pa["types"]["status"], "uint16");
    assert_eq!(pa["types"]["mine"], "string");
    assert_eq!(pa["partitions"].as_array().map(Vec::len), Some(2));
    for (point, rows) in &expected {
        let theirs = pa["rows_by_point"][point].as_array().expect(point);
        assert_eq!(theirs.len(), rows.len(), "{point}");
        for (mine_row, (ts, v, s)) in theirs.iter().zip(rows) {
            assert_eq!(mine_row[0], *ts, "{point}");
            match v {
                Some(v) => assert_eq!(mine_row[1].as_f64(), Some(*v), "{point}"),
                None => assert!(mine_row[1].is_null(), "{point}"),
            }
            assert_eq!(mine_row[2], *s, "{point}");
            assert_eq!(mine_row[5], "mqtt");
        }
    }
    assert_eq!(
        pa["rejected"],
        serde_json::json!(["malformed_json", "unknown_point"])
    );

    let pa_alerts = &pa["alerts"];
    assert_eq!(pa_alerts["rows"], committed.len());
    for col in ["at", "started_at", "resolved_at"] {
        assert_eq!(pa_alerts["types"][col], "timestamp[ms, tz=UTC]", "{col}");
    }
    assert_eq!(pa_alerts["types"]["seq"], "int64");
    assert_eq!(pa_alerts["types"]["transition_id"], "int64");
    assert_eq!(pa_alerts["types"]["peak"], "double");
    assert_eq!(pa_alerts["types"]["planned"], "bool");
    assert_eq!(pa_alerts["types"]["reason"], "string");
    let pa_keys: BTreeSet<(String, i64)> = pa_alerts["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k[0].as_str().unwrap_or_default().to_string(),
                k[1].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(pa_keys, committed);
    let pa_gas: Vec<&Value> = pa_alerts["cleared"]
        .as_array()
        .expect("cleared")
        .iter()
        .filter(|c| c[0] == "overlimit" || c[0] == "evacuation")
        .collect();
    assert_eq!(
        pa_gas,
        [
            &serde_json::json!(["evacuation", 1.6, t1 + 2_000, m0]),
            &serde_json::json!(["overlimit", 1.6, t1 + 2_000, m0]),
        ]
    );
    assert!(
        !pa_alerts["partitions"]
            .as_array()
            .expect("partitions")
            .is_empty()
    );

    let duck = &seen["duckdb"];
    let duck_alerts = &duck["alerts"];
    assert_eq!(duck_alerts["rows"], committed.len());
    assert_eq!(duck_alerts["distinct_transition_ids"], committed.len());
    assert_eq!(duck_alerts["at_type"], "TIMESTAMP WITH TIME ZONE");
    let duck_gas: Vec<&Value> = duck_alerts["cleared"]
        .as_array()
        .expect("cleared")
        .iter()
        .filter(|c| c[0] == "overlimit" || c[0] == "evacuation")
        .collect();
    assert_eq!(duck_gas, pa_gas);
    assert_eq!(duck["rows"], total);
    assert_eq!(duck["null_values"], 1);
    assert_eq!(duck["mines"], 2);
    assert_eq!(duck["min_ts"], t0);
    assert_eq!(duck["ts_type"], "TIMESTAMP WITH TIME ZONE");
    let sum: f64 = expected.values().flatten().filter_map(|r| r.1).sum();
    let theirs = duck["sum_value"].as_f64().expect("sum");
    assert!((theirs - sum).abs() < 1e-9, "{theirs} vs {sum}");
    let per_point = duck["per_point"].as_array().expect("per point");
    assert_eq!(per_point.len(), expected.len());
    for row in per_point {
        let point = row[0].as_str().expect("point");
        let rows = &expected[point];
        assert_eq!(row[1], rows.len(), "{point}");
        let max_status = rows.iter().map(|r| r.2).max().unwrap_or(0);
        assert_eq!(row[3], max_status, "{point}");
    }
    assert_eq!(
        duck["rejected"],
        serde_json::json!([["malformed_json", "mqtt", 1], ["unknown_point", "mqtt", 1]])
    );
}
