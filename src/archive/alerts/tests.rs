//! Tests of the `alerts` stream: every committed transition exported once,
//! in the hour of its transition time, with its alert; the cursor resumed
//! from the saved file and from the finished files' names (a crash between
//! a rename and the cursor save exports nothing twice); other stores kept
//! apart; failed writes retried.

use std::collections::BTreeSet;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::sync::{Notify, broadcast};

use super::*;
use crate::alert::Lifecycle;
use crate::clock::ManualClock;
use crate::config::alerting::AlertingConfig;
use crate::model::{Alert, AlertKind, rfc3339};
use crate::store::testing;

/// 2026-11-23T00:00:00Z (08:00 Beijing time).
const T0: i64 = 1_795_392_000_000;
const HOUR: i64 = 3_600_000;

fn settings(root: &Path) -> ArchiveSettings {
    ArchiveSettings {
        root: root.to_path_buf(),
        flush_after: Duration::from_secs(60),
        max_rows_per_file: 1000,
        row_group_rows: 64,
        max_buffered_rows: usize::MAX,
        max_buffered_bytes: usize::MAX,
        start: 1,
        retain_days: 0,
    }
}

fn lifecycle(store: Arc<Store>, clock: Arc<ManualClock>) -> Lifecycle {
    let (events, _) = broadcast::channel(64);
    Lifecycle::new(
        store,
        AlertingConfig::default(),
        clock,
        events,
        Arc::new(Notify::new()),
        Arc::new(Metrics::new(1)),
    )
}

fn alert(kind: AlertKind, point: &str, started: i64, reason: Option<&str>) -> Alert {
    Alert {
        id: crate::alert::alert_id(kind, "140421000001", Some(point), started),
        kind,
        severity: kind.severity(),
        mine: "140421000001".into(),
        mine_name: "一号矿".into(),
        county: "140421".into(),
        city: "140400".into(),
        province: "140000".into(),
        point: Some(point.into()),
        sensor: Some("0001".into()),
        location: None,
        unit: Some("%".into()),
        value: Some(1.6),
        peak: Some(1.6),
        threshold: Some(1.0),
        rule: "≥1.0% 报警".into(),
        reason: reason.map(str::to_string),
        started_at: rfc3339(started),
        resolved_at: None,
        last_seen: None,
        crossings: None,
    }
}

/// One exported row, as read back with the parquet crate.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    transition_id: i64,
    alert_id: String,
    seq: i64,
    transition: String,
    at: i64,
    mine: String,
    point: Option<String>,
    kind: String,
    reason: Option<String>,
    peak: Option<f64>,
    resolved_at: Option<i64>,
    level: String,
    planned: bool,
}

/// Every row of every finished alerts file below `root`, file by file.
fn read_back(root: &Path) -> Vec<Vec<Row>> {
    let mut out = Vec::new();
    for (_, folder) in retention::partitions(&root.join(ALERTS)) {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            assert!(parse_file_name(&name).is_some(), "stray file {name}");
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
                .unwrap()
                .build()
                .unwrap();
            let mut rows = Vec::new();
            for b in reader {
                let b = b.unwrap();
                let s = |c: &str| {
                    b.column_by_name(c)
                        .unwrap()
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .unwrap()
                        .clone()
                };
                let i = |c: &str| {
                    b.column_by_name(c)
                        .unwrap()
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .clone()
                };
                let t = |c: &str| {
                    b.column_by_name(c)
                        .unwrap()
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .unwrap()
                        .clone()
                };
                let peak = b
                    .column_by_name("peak")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap()
                    .clone();
                let planned = b
                    .column_by_name("planned")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .unwrap()
                    .clone();
                let (id, alert_id, seq, transition, at) = (
                    i("transition_id"),
                    s("alert_id"),
                    i("seq"),
                    s("transition"),
                    t("at"),
                );
                let (mine, point, kind, reason, resolved, level) = (
                    s("mine"),
                    s("point"),
                    s("kind"),
                    s("reason"),
                    t("resolved_at"),
                    s("level"),
                );
                for r in 0..b.num_rows() {
                    let text = |a: &StringArray| (!a.is_null(r)).then(|| a.value(r).to_string());
                    rows.push(Row {
                        transition_id: id.value(r),
                        alert_id: alert_id.value(r).to_string(),
                        seq: seq.value(r),
                        transition: transition.value(r).to_string(),
                        at: at.value(r),
                        mine: mine.value(r).to_string(),
                        point: text(&point),
                        kind: kind.value(r).to_string(),
                        reason: text(&reason),
                        peak: (!peak.is_null(r)).then(|| peak.value(r)),
                        resolved_at: (!resolved.is_null(r)).then(|| resolved.value(r)),
                        level: level.value(r).to_string(),
                        planned: planned.value(r),
                    });
                }
            }
            out.push(rows);
        }
    }
    out
}

/// Every (alert_id, seq) the store holds.
fn committed(store: &Store) -> BTreeSet<(String, i64)> {
    store
        .read(|db| db.query("SELECT alert_id, seq FROM alert_transitions", &[]))
        .unwrap()
        .iter()
        .map(|r| (r[0].text().unwrap().to_string(), r[1].int().unwrap()))
        .collect()
}

fn exported(root: &Path) -> Vec<(String, i64)> {
    read_back(root)
        .into_iter()
        .flatten()
        .map(|r| (r.alert_id, r.seq))
        .collect()
}

#[test]
fn every_committed_transition_is_exported_once_in_its_hour_with_its_alert() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(testing::store("alerts_export_all"));
    let clock = Arc::new(ManualClock::at(T0 + 10 * 60_000));
    let life = lifecycle(store.clone(), clock.clone());
    let metrics = Arc::new(Metrics::new(1));
    let mut x = Exporter::open(settings(dir.path()), store.clone(), metrics.clone()).unwrap();
    assert_eq!(x.cursor(), 0);

    let over = alert(AlertKind::Overlimit, "p1", T0, None);
    let (over_id, _) = life.raise(over).unwrap();
    clock.advance(60_000);
    let flat = alert(AlertKind::DataAnomaly, "p2", T0 + 60_000, Some("flat_line"));
    let (flat_id, _) = life.raise(flat).unwrap();
    life.update_peak(&over_id, 2.25).unwrap();
    // The clearing falls in the next hour.
    clock.set(T0 + HOUR + 5 * 60_000);
    assert!(
        life.clear(&over_id, T0 + HOUR + 60_000, "condition_ended")
            .unwrap()
    );
    life.acknowledge(&flat_id, "县局值班员").unwrap();

    // Not due before flush_secs, unless finishing.
    let now = Instant::now();
    assert_eq!(x.poll(now, false).unwrap(), 0);
    assert!(read_back(dir.path()).is_empty());
    let all = committed(&store);
    assert_eq!(x.poll(now, true).unwrap(), all.len());
    assert_eq!(metrics.archive_alerts_pending.get(), 0);

    let files = read_back(dir.path());
    let hours = exported_files(dir.path());
    assert_eq!(hours.len(), 2, "{hours:?}");
    let (h0, h1) = (Hour::of(T0), Hour::of(T0 + HOUR));
    assert!(hours.contains_key(&h0) && hours.contains_key(&h1));
    // Each file is a run of consecutive ids, named by them, in one hour.
    for (hour, names) in &hours {
        for (store_id, first, last) in names {
            assert_eq!(*store_id, store.read(q::store_identity).unwrap());
            assert!(first <= last, "{hour:?}");
        }
    }
    for rows in &files {
        let keys: Vec<_> = rows
            .iter()
            .map(|r| (r.mine.clone(), r.point.clone(), r.at, r.transition_id))
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] <= w[1]),
            "file order: {keys:?}"
        );
        assert!(rows.iter().all(|r| Hour::of(r.at) == Hour::of(rows[0].at)));
    }
    let got = exported(dir.path());
    assert_eq!(got.len(), all.len(), "no duplicates");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), all);

    let rows: Vec<Row> = files.into_iter().flatten().collect();
    let of = |id: &str, t: &str| {
        rows.iter()
            .find(|r| r.alert_id == id && r.transition == t)
            .unwrap_or_else(|| panic!("{id} {t} in {rows:?}"))
            .clone()
    };
    let raised = of(&over_id, "raised");
    assert_eq!((raised.peak, raised.resolved_at), (Some(1.6), None));
    assert_eq!(raised.kind, "overlimit");
    assert_eq!(raised.reason, None);
    assert_eq!((raised.level.as_str(), raised.planned), ("county", false));
    let cleared = of(&over_id, "cleared");
    assert_eq!(cleared.peak, Some(2.25), "the final peak");
    assert_eq!(cleared.resolved_at, Some(T0 + HOUR + 60_000));
    assert_eq!(cleared.at, T0 + HOUR + 5 * 60_000);
    let ack = of(&flat_id, "acknowledged");
    assert_eq!(ack.reason.as_deref(), Some("flat_line"));
    assert_eq!(ack.point.as_deref(), Some("p2"));
    assert_eq!(of(&flat_id, "raised").seq, 1);

    // Nothing new: no new file.
    assert_eq!(x.poll(Instant::now(), true).unwrap(), 0);
    assert_eq!(exported(dir.path()).len(), all.len());
}

#[test]
fn a_crash_between_a_rename_and_the_cursor_save_exports_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(testing::store("alerts_export_crash"));
    let clock = Arc::new(ManualClock::at(T0));
    let life = lifecycle(store.clone(), clock.clone());
    let metrics = Arc::new(Metrics::new(1));
    let mut x = Exporter::open(settings(dir.path()), store.clone(), metrics.clone()).unwrap();
    let (id, _) = life
        .raise(alert(AlertKind::Evacuation, "p1", T0, None))
        .unwrap();
    x.poll(Instant::now(), true).unwrap();
    let first = x.cursor();
    assert!(first > 0);
    // The process died after the rename, before the cursor was saved: the
    // saved cursor is older (here: gone, or stale).
    let cursor_file = dir.path().join(ALERTS).join(CURSOR_FILE);
    for stale in [None, Some(0)] {
        match stale {
            None => std::fs::remove_file(&cursor_file).unwrap(),
            Some(n) => std::fs::write(
                &cursor_file,
                serde_json::to_string(&SavedCursor {
                    store: store.read(q::store_identity).unwrap(),
                    transition_id: n,
                })
                .unwrap(),
            )
            .unwrap(),
        }
        let x = Exporter::open(settings(dir.path()), store.clone(), metrics.clone()).unwrap();
        assert_eq!(x.cursor(), first, "the file names carry the cursor");
    }
    clock.advance(30_000);
    life.clear(&id, T0 + 30_000, "condition_ended").unwrap();
    let mut x = Exporter::open(settings(dir.path()), store.clone(), metrics).unwrap();
    assert_eq!(x.poll(Instant::now(), true).unwrap(), 1);
    let got = exported(dir.path());
    assert_eq!(got.len(), committed(&store).len(), "{got:?}");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), committed(&store));
    // And the cursor file is current again.
    let saved: SavedCursor =
        serde_json::from_str(&std::fs::read_to_string(&cursor_file).unwrap()).unwrap();
    assert_eq!(saved.transition_id, x.cursor());
}

#[test]
fn the_saved_cursor_outlives_retention_and_another_stores_ids_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(testing::store("alerts_export_a"));
    let clock = Arc::new(ManualClock::at(T0));
    let life = lifecycle(store.clone(), clock.clone());
    let metrics = Arc::new(Metrics::new(1));
    life.raise(alert(AlertKind::Overlimit, "p1", T0, None))
        .unwrap();
    let mut x = Exporter::open(settings(dir.path()), store.clone(), metrics.clone()).unwrap();
    x.poll(Instant::now(), true).unwrap();
    let cursor = x.cursor();
    // Retention deleted every partition: the saved cursor still says where
    // the export stands, so nothing is exported again.
    for (_, folder) in retention::partitions(&dir.path().join(ALERTS)) {
        std::fs::remove_dir_all(folder).unwrap();
    }
    let mut x = Exporter::open(settings(dir.path()), store.clone(), metrics.clone()).unwrap();
    assert_eq!(x.cursor(), cursor);
    assert_eq!(x.poll(Instant::now(), true).unwrap(), 0);

    // Another store (alerting.store changed) behind the same archive: its
    // ids start again at 1, under its own name, and are all exported.
    let identity = store.read(q::store_identity).unwrap();
    while chrono::Utc::now().timestamp_millis() <= identity {
        std::thread::yield_now();
    }
    let other = Arc::new(testing::store("alerts_export_b"));
    assert_ne!(other.read(q::store_identity).unwrap(), identity);
    let life = lifecycle(other.clone(), clock);
    life.raise(alert(AlertKind::Overlimit, "p9", T0, None))
        .unwrap();
    let mut y = Exporter::open(settings(dir.path()), other.clone(), metrics).unwrap();
    assert_eq!(y.cursor(), 0);
    assert_eq!(
        y.poll(Instant::now(), true).unwrap(),
        committed(&other).len()
    );
    let names: Vec<(i64, i64, i64)> = exported_files(dir.path()).into_values().flatten().collect();
    assert!(
        names
            .iter()
            .all(|n| n.0 == other.read(q::store_identity).unwrap())
    );
    assert_eq!(names[0].1, 1);
}

#[test]
fn a_file_that_cannot_be_written_keeps_the_cursor_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(testing::store("alerts_export_retry"));
    let clock = Arc::new(ManualClock::at(T0));
    let life = lifecycle(store.clone(), clock);
    life.raise(alert(AlertKind::Overlimit, "p1", T0, None))
        .unwrap();
    let blocker = dir.path().join(ALERTS).join("date=2026-11-23");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"in the way").unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let mut x = Exporter::open(settings(dir.path()), store.clone(), metrics.clone()).unwrap();
    assert_eq!(x.poll(Instant::now(), true).unwrap(), 0);
    assert_eq!(x.cursor(), 0);
    assert_eq!(
        metrics
            .archive_write_errors
            .with_label_values(&[ALERTS])
            .get(),
        1
    );
    assert!(metrics.archive_alerts_pending.get() > 0);
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(
        x.poll(Instant::now(), true).unwrap(),
        committed(&store).len()
    );
    assert_eq!(exported(dir.path()).len(), committed(&store).len());
    assert_eq!(
        metrics.archive_rows.with_label_values(&[ALERTS]).get(),
        committed(&store).len() as u64
    );
}

#[test]
fn transitions_are_cut_into_runs_of_one_hour_and_at_most_max_rows() {
    let row = |id: i64, at: i64| CommittedTransition {
        id,
        alert_id: "a".into(),
        seq: id,
        transition: "raised".into(),
        at_ms: at,
        actor: "system".into(),
        detail: "{}".into(),
        kind: "overlimit".into(),
        severity: "major".into(),
        reason: None,
        mine: "m".into(),
        mine_name: String::new(),
        county: String::new(),
        city: String::new(),
        province: String::new(),
        point: None,
        sensor: None,
        unit: None,
        value: None,
        peak: None,
        threshold: None,
        rule: String::new(),
        started_ms: at,
        resolved_ms: None,
        level: "county".into(),
        planned: false,
    };
    // Ids 1–3 in hour 0, 4 in hour 1, 5 back in hour 0 (a clock set back),
    // 6–8 in hour 1.
    let rows = vec![
        row(1, T0),
        row(2, T0 + 1),
        row(3, T0 + 2),
        row(4, T0 + HOUR),
        row(5, T0 + 3),
        row(6, T0 + HOUR + 1),
        row(7, T0 + HOUR + 2),
        row(8, T0 + HOUR + 3),
    ];
    let cut: Vec<Vec<i64>> = runs(rows, 2)
        .iter()
        .map(|r| r.iter().map(|t| t.id).collect())
        .collect();
    assert_eq!(
        cut,
        vec![vec![1, 2], vec![3], vec![4], vec![5], vec![6, 7], vec![8]]
    );
}

#[test]
fn file_names_carry_store_and_id_range() {
    assert_eq!(
        parse_file_name("1795392000000-000000000001-000000000042.parquet"),
        Some((1_795_392_000_000, 1, 42))
    );
    assert_eq!(parse_file_name("1795392000000-000001.parquet"), None);
    assert_eq!(parse_file_name("a-b-c.parquet"), None);
    assert_eq!(parse_file_name("1-2-3.parquet.tmp"), None);
}
