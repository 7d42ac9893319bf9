//! Tests of the archive writer: partitions, file order, row groups,
//! atomic visibility, retries after a failed write, and reading the files
//! back with the parquet crate's own reader.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, Float64Array, StringArray, TimestampMillisecondArray, UInt16Array};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::*;
use crate::config::{Registry, parse};

fn registry() -> SharedRegistry {
    let (config, _) = parse(
        r#"
[[mines]]
code = "140121000002"
name = "b"
province = "140000"
city = "140100"
county = "140121"
points = [
  { code = "14012100000201MN0001001", sensor = "0001", location = "face_t1" },
  { code = "14012100000201MN0004002", sensor = "0004", location = "face_t2" },
]
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
points = [ { code = "14012100000101MN0001001", sensor = "0001", location = "face_t1" } ]
"#,
    )
    .expect("valid");
    SharedRegistry::from(Arc::new(Registry::build(&config, 1)))
}

/// 2026-11-23T16:00:00Z.
const H16: Millis = 1_795_449_600_000;
const HOUR: Millis = 3_600_000;

fn settings(root: &Path) -> ArchiveSettings {
    ArchiveSettings {
        root: root.to_path_buf(),
        flush_after: Duration::from_secs(60),
        max_rows_per_file: 1_000_000,
        row_group_rows: 131_072,
        max_buffered_rows: usize::MAX,
        max_buffered_bytes: usize::MAX,
        start: 1234,
        retain_days: 0,
    }
}

fn reading(point: u32, ts: Millis, value: f64, status: u16) -> Reading {
    Reading {
        point,
        ts,
        value,
        status,
    }
}

/// Puts a plain file where the `readings` folder of 2026-11-23 belongs
/// under `root`, so that every write of that day fails until the returned
/// path is removed.
fn block_readings_day(root: &Path) -> PathBuf {
    let blocker = root.join("readings/date=2026-11-23");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"in the way").unwrap();
    blocker
}

/// Every file below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    reader.map(|b| b.unwrap()).collect()
}

fn strings(b: &RecordBatch, col: &str) -> Vec<String> {
    let a = b
        .column_by_name(col)
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

fn times(b: &RecordBatch, col: &str) -> Vec<i64> {
    let a = b
        .column_by_name(col)
        .unwrap()
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    a.values().to_vec()
}

#[test]
fn readings_are_partitioned_by_event_hour_sorted_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let mut w = ArchiveWriter::new(settings(dir.path()), registry(), metrics.clone());
    let now = Instant::now();
    // Mine b (index 0) has points 0 and 1, mine a (index 1) point 2; the
    // file order is by code: mine a first.
    w.accept(
        ArchiveMsg::Readings {
            readings: vec![
                reading(1, H16 + 5_000, 3.0, 0),
                reading(0, H16 + 2_000, 0.42, 0),
                reading(2, H16 + 9_000, 1.6, 1),
                reading(0, H16 + 1_000, 0.40, 0),
                reading(1, H16 + HOUR + 10, f64::NAN, 128),
            ],
            arrival: H16 + HOUR + 500,
            source: "mqtt",
            done: None,
        },
        now,
    );
    w.accept(
        ArchiveMsg::Readings {
            readings: vec![reading(2, H16 + 1, 0.9, 4)],
            arrival: H16 + HOUR + 600,
            source: "modbus",
            done: None,
        },
        now,
    );
    assert_eq!((w.buffered_in(READINGS), w.buffered_in(REJECTED)), (6, 0));
    // Nothing is due yet: no file, not even a temporary one.
    w.flush(now, false);
    assert!(files(dir.path()).is_empty());
    w.flush(now, true);
    assert_eq!((w.buffered_in(READINGS), w.buffered_in(REJECTED)), (0, 0));
    let found = files(dir.path());
    assert_eq!(
        found,
        [
            PathBuf::from("readings/date=2026-11-23/hour=16/1234-000001.parquet"),
            PathBuf::from("readings/date=2026-11-23/hour=17/1234-000002.parquet"),
        ]
    );
    let batches = read(&dir.path().join(&found[0]));
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    assert_eq!(b.num_rows(), 5);
    assert_eq!(
        strings(b, "mine"),
        [
            "140121000001",
            "140121000001",
            "140121000002",
            "140121000002",
            "140121000002"
        ]
    );
    assert_eq!(
        strings(b, "point"),
        [
            "14012100000101MN0001001",
            "14012100000101MN0001001",
            "14012100000201MN0001001",
            "14012100000201MN0001001",
            "14012100000201MN0004002"
        ]
    );
    assert_eq!(
        strings(b, "sensor"),
        ["0001", "0001", "0001", "0001", "0004"]
    );
    assert_eq!(
        times(b, "ts"),
        [H16 + 1, H16 + 9_000, H16 + 1_000, H16 + 2_000, H16 + 5_000]
    );
    assert_eq!(
        times(b, "arrival"),
        [
            H16 + HOUR + 600,
            H16 + HOUR + 500,
            H16 + HOUR + 500,
            H16 + HOUR + 500,
            H16 + HOUR + 500
        ]
    );
    let values = b
        .column_by_name("value")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(values.values().to_vec(), [0.9, 1.6, 0.40, 0.42, 3.0]);
    assert_eq!(values.null_count(), 0);
    let status = b
        .column_by_name("status")
        .unwrap()
        .as_any()
        .downcast_ref::<UInt16Array>()
        .unwrap();
    assert_eq!(status.values().to_vec(), [4, 1, 0, 0, 0]);
    assert_eq!(
        strings(b, "source"),
        ["modbus", "mqtt", "mqtt", "mqtt", "mqtt"]
    );
    // The fault reading carried no value: null.
    let late = read(&dir.path().join(&found[1]));
    let values = late[0]
        .column_by_name("value")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!((values.len(), values.null_count()), (1, 1));
    assert_eq!(metrics.archive_rows.with_label_values(&[READINGS]).get(), 6);
    assert_eq!(
        metrics.archive_files.with_label_values(&[READINGS]).get(),
        2
    );
    // The timestamp columns say UTC, so other readers see instants.
    let schema = late[0].schema();
    assert_eq!(
        schema.field_with_name("ts").unwrap().data_type(),
        &arrow::datatypes::DataType::Timestamp(
            arrow::datatypes::TimeUnit::Millisecond,
            Some("UTC".into())
        )
    );
}

#[test]
fn files_are_cut_by_row_count_and_age_with_row_groups_of_the_set_size() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let mut s = settings(dir.path());
    s.max_rows_per_file = 250;
    s.row_group_rows = 100;
    let mut w = ArchiveWriter::new(s, registry(), metrics);
    let now = Instant::now();
    let batch = |n: usize, base: Millis| ArchiveMsg::Readings {
        readings: (0..n)
            .map(|i| reading((i % 3) as u32, base + i as Millis, i as f64, 0))
            .collect(),
        arrival: base,
        source: "mqtt",
        done: None,
    };
    w.accept(batch(260, H16), now);
    w.accept(batch(10, H16 + HOUR), now);
    // The full partition is due at once; the small one is not.
    w.flush(now, false);
    assert_eq!((w.buffered_in(READINGS), w.buffered_in(REJECTED)), (10, 0));
    let found = files(dir.path());
    assert_eq!(found.len(), 1);
    let reader =
        SerializedFileReader::new(File::open(dir.path().join(&found[0])).unwrap()).unwrap();
    let groups: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups, [100, 100, 60]);
    // The small one is written once its oldest row has waited flush_after.
    w.flush(now + Duration::from_secs(59), false);
    assert_eq!((w.buffered_in(READINGS), w.buffered_in(REJECTED)), (10, 0));
    w.flush(now + Duration::from_secs(60), false);
    assert_eq!((w.buffered_in(READINGS), w.buffered_in(REJECTED)), (0, 0));
    assert_eq!(files(dir.path()).len(), 2);
}

#[test]
fn a_failed_write_leaves_nothing_visible_is_counted_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let mut w = ArchiveWriter::new(settings(dir.path()), registry(), metrics.clone());
    let blocker = block_readings_day(dir.path());
    let now = Instant::now();
    w.accept(
        ArchiveMsg::Readings {
            readings: vec![reading(0, H16, 0.5, 0), reading(2, H16 + 1, 0.6, 0)],
            arrival: H16,
            source: "mqtt",
            done: None,
        },
        now,
    );
    let later = now + Duration::from_secs(60);
    w.flush(later, false);
    assert_eq!(
        metrics
            .archive_write_errors
            .with_label_values(&[READINGS])
            .get(),
        1
    );
    assert_eq!(
        (w.buffered_in(READINGS), w.buffered_in(REJECTED)),
        (2, 0),
        "rows are kept for a retry"
    );
    // Not retried before the retry delay.
    w.flush(later + Duration::from_secs(1), false);
    assert_eq!(
        metrics
            .archive_write_errors
            .with_label_values(&[READINGS])
            .get(),
        1
    );
    // The disk is fixed; the next flush writes the rows.
    std::fs::remove_file(&blocker).unwrap();
    w.flush(later + Duration::from_secs(5), false);
    assert_eq!((w.buffered_in(READINGS), w.buffered_in(REJECTED)), (0, 0));
    let found = files(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(read(&dir.path().join(&found[0]))[0].num_rows(), 2);
    assert_eq!(metrics.archive_rows.with_label_values(&[READINGS]).get(), 2);
}

#[test]
fn a_rename_that_fails_removes_the_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry().snapshot();
    let rows = [ReadingRow {
        point: 0,
        ts: H16,
        arrival: H16,
        value: 1.0,
        status: 0,
        source: "mqtt",
    }];
    let batch = schema::readings_batch(&rows, &reg).unwrap();
    // The final name is taken by a non-empty folder: the rename fails after
    // the temporary file was written in full.
    let done = dir.path().join("x.parquet");
    std::fs::create_dir_all(done.join("occupied")).unwrap();
    let temp = dir.path().join(".x.parquet.tmp");
    let err = file::write_atomically(&done, &temp, schema::readings_schema(), &batch, 10);
    assert!(err.is_err());
    assert!(!temp.exists());
    assert!(done.is_dir());
    // And a successful write leaves exactly the finished file.
    let done = dir.path().join("y.parquet");
    let temp = dir.path().join(".y.parquet.tmp");
    file::write_atomically(&done, &temp, schema::readings_schema(), &batch, 10).unwrap();
    assert!(done.is_file() && !temp.exists());
    assert_eq!(read(&done)[0].num_rows(), 1);
}

#[test]
fn odd_input_is_archived_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let mut w = ArchiveWriter::new(settings(dir.path()), registry(), metrics);
    w.accept(
        ArchiveMsg::Readings {
            // A point the registry does not know and a time with no date.
            readings: vec![reading(99, H16, 1.0, 0), reading(0, i64::MAX, 2.0, 0)],
            arrival: H16 + 1,
            source: "mqtt",
            done: None,
        },
        Instant::now(),
    );
    w.flush(Instant::now(), true);
    let found = files(dir.path());
    assert_eq!(
        found,
        [PathBuf::from(
            "readings/date=2026-11-23/hour=16/1234-000001.parquet"
        )]
    );
    let b = &read(&dir.path().join(&found[0]))[0];
    assert_eq!(strings(b, "point"), ["#99", "14012100000201MN0001001"]);
    assert_eq!(strings(b, "mine"), ["", "140121000002"]);
    assert_eq!(times(b, "ts"), [H16, i64::MAX]);
}

#[test]
fn rejected_records_have_their_own_stream() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let archive = Archive::start(settings(dir.path()), registry(), metrics.clone(), 4).unwrap();
    let tx = archive.sender();
    for (i, at) in [H16 + 20, H16 + 10].into_iter().enumerate() {
        tx.send(ArchiveMsg::Rejected(RejectedRow {
            at,
            source: "mqtt".into(),
            origin: "mines/140121000001/telemetry".into(),
            reason: "non_finite_value",
            detail: format!("reading {i}"),
            record: "{\"value\": NaN}".into(),
        }))
        .unwrap();
    }
    archive.finish();
    let found = files(dir.path());
    assert_eq!(
        found,
        [PathBuf::from(
            "rejected/date=2026-11-23/hour=16/1234-000001.parquet"
        )]
    );
    let b = &read(&dir.path().join(&found[0]))[0];
    assert_eq!(times(b, "at"), [H16 + 10, H16 + 20]);
    assert_eq!(strings(b, "detail"), ["reading 1", "reading 0"]);
    assert_eq!(strings(b, "reason"), ["non_finite_value"; 2]);
    assert_eq!(strings(b, "record")[0], "{\"value\": NaN}");
    assert_eq!(metrics.archive_rows.with_label_values(&[REJECTED]).get(), 2);
}

#[test]
fn shutdown_retries_a_failed_write_before_giving_up() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let blocker = block_readings_day(dir.path());
    let archive = Archive::start(settings(dir.path()), registry(), metrics.clone(), 4).unwrap();
    archive
        .sender()
        .send(ArchiveMsg::Readings {
            readings: vec![reading(0, H16, 0.5, 0)],
            arrival: H16,
            source: "mqtt",
            done: None,
        })
        .unwrap();
    let finishing = std::thread::spawn(move || archive.finish());
    // The first attempt at shutdown fails; the file system recovers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics
        .archive_write_errors
        .with_label_values(&[READINGS])
        .get()
        == 0
    {
        assert!(Instant::now() < deadline, "no failed attempt seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_file(&blocker).unwrap();
    finishing.join().unwrap();
    let found = files(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(read(&dir.path().join(&found[0]))[0].num_rows(), 1);
}

/// An archive (files due after 1 s, at most `max_buffered_rows` held, queues
/// of `capacity`) whose readings folder for 2026-11-23 is a plain file, so
/// every write of that day fails until the returned blocker is removed.
fn refusing_archive(
    max_buffered_rows: usize,
    capacity: usize,
) -> (tempfile::TempDir, PathBuf, Arc<Metrics>, Archive) {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let blocker = block_readings_day(dir.path());
    let mut s = settings(dir.path());
    s.flush_after = Duration::from_secs(1);
    s.max_buffered_rows = max_buffered_rows;
    let archive = Archive::start(s, registry(), metrics.clone(), capacity).unwrap();
    (dir, blocker, metrics, archive)
}

fn wait_until_paused(metrics: &Metrics) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.archive_writer_paused.get() == 0 {
        assert!(Instant::now() < deadline, "the writer never held back");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_disk_that_refuses_writes_holds_ingest_back_instead_of_filling_memory() {
    let (dir, blocker, metrics, archive) = refusing_archive(10, 2);
    // 50 batches of 5 readings from a "shard" that blocks when the
    // archive's queue is full.
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let feeder = {
        let (tx, sent) = (archive.sender(), sent.clone());
        std::thread::spawn(move || {
            for i in 0..50 {
                let readings = (0..5)
                    .map(|k| reading(0, H16 + i * 10 + k, 0.5, 0))
                    .collect();
                tx.send(ArchiveMsg::Readings {
                    readings,
                    arrival: H16,
                    source: "mqtt",
                    done: None,
                })
                .unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    wait_until_paused(&metrics);
    // Held back once the disk has refused the rows it holds: the writer
    // keeps its 10 rows and the bounded queues a few batches more; the
    // feeder waits. (A negative can only be watched for a while: a second,
    // past several retries.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics
        .archive_write_errors
        .with_label_values(&[READINGS])
        .get()
        == 0
    {
        assert!(Instant::now() < deadline, "no write was refused");
        std::thread::sleep(Duration::from_millis(10));
    }
    let held = sent.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sent.load(Ordering::SeqCst), held, "the feeder is blocked");
    assert!(
        held < 20,
        "{held} of 50 batches taken while the disk refuses"
    );
    assert_eq!(metrics.archive_writer_paused.get(), 1);
    // The disk recovers: everything goes through.
    std::fs::remove_file(&blocker).unwrap();
    feeder.join().unwrap();
    archive.finish();
    assert_eq!(metrics.archive_writer_paused.get(), 0);
    let rows: usize = files(dir.path())
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .map(|f| {
            read(&dir.path().join(f))
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(rows, 250, "every row written once the disk is back");
}

#[test]
fn shutdown_is_not_held_back_by_a_disk_that_never_recovers() {
    let (dir, _blocker, metrics, archive) = refusing_archive(2, 1);
    for i in 0..3 {
        archive
            .sender()
            .send(ArchiveMsg::Readings {
                readings: vec![reading(0, H16 + i, 0.5, 0)],
                arrival: H16,
                source: "mqtt",
                done: None,
            })
            .unwrap();
    }
    wait_until_paused(&metrics);
    // finish() returns (after its tries) and leaves the rows in the journal.
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        archive.finish();
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(30)).is_ok(),
        "finish() waited on the disk"
    );
    let segments = journal_files(dir.path());
    assert!(
        !segments.is_empty(),
        "the unwritten rows stay in the journal"
    );
}

struct Acks(std::sync::Mutex<Vec<u64>>);
impl crate::completion::AckSink for Acks {
    fn complete(&self, token: u64) {
        self.0.lock().unwrap().push(token);
    }
}

fn journal_files(root: &Path) -> Vec<PathBuf> {
    journal::segments(&root.join("journal")).unwrap()
}

#[test]
fn a_batch_completes_only_once_journaled_and_finished_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let archive = Archive::start(settings(dir.path()), registry(), metrics.clone(), 4).unwrap();
    let acks = Arc::new(Acks(std::sync::Mutex::new(Vec::new())));
    for token in 1..=3 {
        let done = crate::completion::Completion::new(1, token, acks.clone());
        archive
            .sender()
            .send(ArchiveMsg::Readings {
                readings: vec![reading(0, H16 + token as i64, 0.5, 0)],
                arrival: H16,
                source: "mqtt",
                done: Some(done),
            })
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while acks.0.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "batches never completed");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Completed means durable: the rows are in the journal, and not yet in
    // a file (flush_after is a minute).
    assert!(metrics.journal_commits.get() >= 1);
    let segs = journal_files(dir.path());
    assert_eq!(segs.len(), 1);
    let contents = journal::read_segment(&std::fs::read(&segs[0]).unwrap());
    assert_eq!(contents.readings.len(), 3);
    assert!(files(&dir.path().join("readings")).is_empty());
    archive.finish();
    assert_eq!(files(&dir.path().join("readings")).len(), 1);
    assert!(journal_files(dir.path()).is_empty(), "the segment is gone");
}

#[test]
fn leftover_segments_become_files_a_torn_tail_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let reg = registry().snapshot();
    // A run that died: two segments, the second ending in half a record.
    let mut j = journal::JournalWriter::create(&jdir, 99).unwrap();
    j.add_readings(
        &reg,
        &[reading(0, H16, 0.5, 0), reading(2, H16 + HOUR, 1.2, 0)],
        H16 + HOUR,
        "mqtt",
    );
    j.add_rejected(&RejectedRow {
        at: H16,
        source: "mqtt".into(),
        origin: "mines/x/telemetry".into(),
        reason: "malformed_json",
        detail: "d".into(),
        record: "{".into(),
    });
    j.commit().unwrap();
    j.rotate().unwrap();
    j.add_readings(&reg, &[reading(1, H16 + 7, 3.0, 0)], H16, "modbus");
    j.commit().unwrap();
    let second = j.path_of(j.segment());
    drop(j);
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&second)
        .unwrap();
    std::io::Write::write_all(&mut torn, &[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(torn);
    // And a temporary file of an interrupted Parquet write.
    let (_, temp) = partition::file_paths(dir.path(), READINGS, Hour::of(H16), 5, 5);
    std::fs::create_dir_all(temp.parent().unwrap()).unwrap();
    std::fs::write(&temp, b"PAR1 half").unwrap();

    let metrics = Arc::new(Metrics::new(1));
    // A registry that no longer knows the points: the journal carries the codes.
    let empty = SharedRegistry::new(Registry::build(&parse("").unwrap().0, 1));
    let mut w = ArchiveWriter::new(settings(dir.path()), empty, metrics.clone());
    let report = w.recover(&jdir);
    assert_eq!(
        report,
        Recovery {
            segments: 2,
            removed: 2,
            rows: [(READINGS, 3), (REJECTED, 1)].into_iter().collect(),
            torn: 1
        }
    );
    assert_eq!(metrics.journal_torn_records.get(), 1);
    assert!(journal::segments(&jdir).unwrap().is_empty());
    assert!(!temp.exists());
    let found = files(&dir.path().join("readings"));
    assert_eq!(found.len(), 3, "{found:?}"); // segment 1: two hours; segment 2: one
    let mut points = Vec::new();
    for f in &found {
        for b in read(&dir.path().join("readings").join(f)) {
            points.extend(strings(&b, "point"));
            assert_eq!(strings(&b, "mine").len(), b.num_rows());
        }
    }
    points.sort();
    assert_eq!(
        points,
        [
            "14012100000101MN0001001",
            "14012100000201MN0001001",
            "14012100000201MN0004002"
        ]
    );
    assert_eq!(files(&dir.path().join("rejected")).len(), 1);
}

#[test]
fn a_segment_that_cannot_be_written_is_kept_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let reg = registry().snapshot();
    let mut j = journal::JournalWriter::create(&jdir, 99).unwrap();
    j.add_readings(&reg, &[reading(0, H16, 0.5, 0)], H16, "mqtt");
    j.commit().unwrap();
    drop(j);
    let blocker = block_readings_day(dir.path());
    let metrics = Arc::new(Metrics::new(1));
    let mut w = ArchiveWriter::new(settings(dir.path()), registry(), metrics.clone());
    assert_eq!(w.recover(&jdir).removed, 0);
    assert_eq!(journal::segments(&jdir).unwrap().len(), 1);
    std::fs::remove_file(&blocker).unwrap();
    let mut w = ArchiveWriter::new(settings(dir.path()), registry(), metrics);
    assert_eq!(w.recover(&jdir).rows_of(READINGS), 1);
    assert!(journal::segments(&jdir).unwrap().is_empty());
}

#[test]
fn a_segment_goes_only_when_every_hour_holding_its_rows_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let mut s = settings(dir.path());
    s.max_rows_per_file = 3;
    let mut j = journal::JournalWriter::create(&jdir, s.start).unwrap();
    let first = j.rotate().unwrap();
    let mut w = ArchiveWriter::new(s, registry(), Arc::new(Metrics::new(1)));
    w.journal = Some(jdir.clone());
    let now = Instant::now();
    // Hour 16 gets 3 rows (full, written at the next flush), hour 17 one.
    w.accept_durable(
        WriterMsg::Rows(
            ArchiveMsg::Readings {
                readings: vec![
                    reading(0, H16, 0.1, 0),
                    reading(1, H16 + 1, 0.1, 0),
                    reading(2, H16 + HOUR, 0.1, 0),
                    reading(0, H16 + 2, 0.1, 0),
                ],
                arrival: H16,
                source: "mqtt",
                done: None,
            },
            Some(first),
            0,
        ),
        now,
    );
    w.accept_durable(WriterMsg::Sealed(first), now);
    w.flush(now, false);
    assert_eq!((w.buffered_in(READINGS), w.buffered_in(REJECTED)), (1, 0));
    assert!(
        j.path_of(first).exists(),
        "hour 17's row is only in the journal"
    );
    w.flush(now, true);
    assert_eq!((w.buffered_in(READINGS), w.buffered_in(REJECTED)), (0, 0));
    assert!(!j.path_of(first).exists());
    assert!(j.path_of(j.segment()).exists(), "the open segment stays");
}

#[test]
fn the_readings_and_rejected_files_keep_their_schemas() {
    use arrow::datatypes::{DataType, TimeUnit};
    let fields = |schema: arrow::datatypes::SchemaRef| -> Vec<(String, DataType, bool)> {
        schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect()
    };
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let t = |n: &str, ty: &DataType, null: bool| (n.to_string(), ty.clone(), null);
    let text = DataType::Utf8;
    assert_eq!(
        fields(schema::readings_schema()),
        [
            t("mine", &text, false),
            t("point", &text, false),
            t("sensor", &text, false),
            t("ts", &ts, false),
            t("arrival", &ts, false),
            t("value", &DataType::Float64, true),
            t("status", &DataType::UInt16, false),
            t("source", &text, false),
        ]
    );
    assert_eq!(
        fields(schema::rejected_schema()),
        [
            t("at", &ts, false),
            t("source", &text, false),
            t("origin", &text, false),
            t("reason", &text, false),
            t("detail", &text, false),
            t("record", &text, false),
        ]
    );
    // The stream definitions use exactly these.
    use stream::Stream;
    assert_eq!(Readings::schema(), schema::readings_schema());
    assert_eq!(RecoveredReadings::schema(), schema::readings_schema());
    assert_eq!(Rejected::schema(), schema::rejected_schema());
}

#[test]
fn power_and_seal_rows_are_journaled_completed_and_recovered() {
    use super::activity::{PowerRow, SealRow};
    let dir = tempfile::tempdir().unwrap();
    let mut kw = [f32::NAN; crate::model::CIRCUITS];
    kw[0] = 880.0;
    let power = |ts| PowerRow {
        mine: "140121000001".into(),
        ts,
        arrival: ts + 1000,
        kw,
        source: "mqtt",
    };
    let seal = |ts| SealRow {
        mine: "140121000001".into(),
        camera: "main-shaft".into(),
        place: "main_shaft".into(),
        ts,
        arrival: ts + 1000,
        event: "people_in",
        fault: None,
        count: Some(4),
        frame: 0,
        source: "mqtt",
    };
    // Live: a batch of each completes once journaled, and ends up in files.
    let metrics = Arc::new(Metrics::new(1));
    let archive = Archive::start(settings(dir.path()), registry(), metrics, 4).unwrap();
    let acks = Arc::new(Acks(std::sync::Mutex::new(Vec::new())));
    let done = |t| Some(crate::completion::Completion::new(1, t, acks.clone()));
    let tx = archive.sender();
    tx.send(ArchiveMsg::Power {
        rows: vec![power(H16), power(H16 + 60_000)],
        done: done(1),
    })
    .unwrap();
    tx.send(ArchiveMsg::Seal {
        rows: vec![seal(H16 + HOUR)],
        done: done(2),
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while acks.0.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "batches never completed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let segs = journal_files(dir.path());
    let contents = journal::read_segment(&std::fs::read(&segs[0]).unwrap());
    assert_eq!((contents.power.len(), contents.seal.len()), (2, 1));
    archive.finish();
    assert_eq!(files(&dir.path().join("power")).len(), 1);
    assert_eq!(files(&dir.path().join("seal")).len(), 1);

    // After a crash: a leftover segment's rows become files.
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let mut j = journal::JournalWriter::create(&jdir, 7).unwrap();
    j.add::<super::activity::Power>(&power(H16));
    j.add::<super::activity::Seal>(&seal(H16));
    j.add::<super::activity::Seal>(&seal(H16 + 5));
    j.commit().unwrap();
    drop(j);
    let empty = SharedRegistry::new(Registry::build(&parse("").unwrap().0, 1));
    let mut w = ArchiveWriter::new(settings(dir.path()), empty, Arc::new(Metrics::new(1)));
    let report = w.recover(&jdir);
    assert_eq!(report.rows_of("power"), 1);
    assert_eq!(report.rows_of("seal"), 2);
    let found = files(&dir.path().join("seal"));
    assert_eq!(found.len(), 1);
    let b = &read(&dir.path().join("seal").join(&found[0]))[0];
    assert_eq!(strings(b, "camera"), ["main-shaft", "main-shaft"]);
    assert_eq!(strings(b, "event"), ["people_in", "people_in"]);
}

fn exception(start: Millis, end: Option<Millis>, arrival: Millis) -> ExceptionRow {
    ExceptionRow {
        mine: "140121000001".into(),
        point: "14012100000101MN0001001".into(),
        kind: "001".into(),
        type_name: "甲烷".into(),
        place: "1101工作面".into(),
        start,
        end,
        max: end.map(|_| 1.32),
        cause: "放炮后瓦斯涌出".into(),
        measures: "加强通风".into(),
        entered_by: "张三".into(),
        file: "140121000001_YCBJ_20261123170030.txt".into(),
        arrival,
    }
}

#[test]
fn exception_reports_have_their_own_stream_by_start_hour_and_complete_once_journaled() {
    use super::exceptions::{exceptions_from_batch, exceptions_schema};
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let archive = Archive::start(settings(dir.path()), registry(), metrics.clone(), 4).unwrap();
    let acks = Arc::new(Acks(std::sync::Mutex::new(Vec::new())));
    let done = crate::completion::Completion::new(1, 7, acks.clone());
    // Reported together at 18:00; one started at 16:59, one at 17:10
    // and is still going on.
    let rows = vec![
        exception(H16 + HOUR + 600_000, None, H16 + 2 * HOUR),
        exception(H16 + 59 * 60_000, Some(H16 + HOUR + 60_000), H16 + 2 * HOUR),
    ];
    archive
        .sender()
        .send(ArchiveMsg::Exceptions {
            rows: rows.clone(),
            done: Some(done),
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while acks.0.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the reports never completed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let segs = journal_files(dir.path());
    let contents = journal::read_segment(&std::fs::read(&segs[0]).unwrap());
    assert_eq!(contents.exceptions, rows, "durable before completion");
    archive.finish();
    let found = files(&dir.path().join("exceptions"));
    assert_eq!(found.len(), 2, "one file per start hour: {found:?}");
    assert!(found[0].starts_with("date=2026-11-23/hour=16"), "{found:?}");
    assert!(found[1].starts_with("date=2026-11-23/hour=17"), "{found:?}");
    let mut back = Vec::new();
    for f in &found {
        for b in read(&dir.path().join("exceptions").join(f)) {
            assert_eq!(b.schema().fields(), exceptions_schema().fields());
            back.extend(exceptions_from_batch(&b).unwrap());
        }
    }
    assert_eq!(back, [rows[1].clone(), rows[0].clone()]);
    assert_eq!(back[1].end, None);
    assert_eq!(back[1].max, None);
    assert_eq!(
        metrics.archive_rows.with_label_values(&[EXCEPTIONS]).get(),
        2
    );
    assert!(journal_files(dir.path()).is_empty());

    // After a crash a leftover segment's reports become a file too.
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let mut j = journal::JournalWriter::create(&jdir, 3).unwrap();
    j.add::<super::exceptions::Exceptions>(&exception(H16 + HOUR + 5, None, H16 + 2 * HOUR));
    j.commit().unwrap();
    drop(j);
    let metrics = Arc::new(Metrics::new(1));
    let mut w = ArchiveWriter::new(settings(dir.path()), registry(), metrics.clone());
    assert_eq!(w.recover(&jdir).rows_of(EXCEPTIONS), 1);
    let found = files(&dir.path().join("exceptions"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        metrics
            .journal_recovered_rows
            .with_label_values(&[EXCEPTIONS])
            .get(),
        1
    );
}

/// Readings of `n` consecutive hours from `first`, `per_hour` each, one
/// message per hour.
fn spread_over_hours(first: Millis, hours: i64, per_hour: i64) -> Vec<ArchiveMsg> {
    (0..hours)
        .map(|h| ArchiveMsg::Readings {
            readings: (0..per_hour)
                .map(|k| reading(0, first + h * HOUR + k, 0.5, 0))
                .collect(),
            arrival: first,
            source: "mqtt",
            done: None,
        })
        .collect()
}

fn parquet_rows(root: &Path) -> usize {
    files(root)
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .map(|f| {
            read(&root.join(f))
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
        })
        .sum()
}

#[test]
fn many_open_hours_are_written_out_under_memory_pressure_not_held_for_the_timer() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let mut s = settings(dir.path());
    // The timer alone would hold every hour a minute.
    s.flush_after = Duration::from_secs(60);
    s.max_buffered_bytes = 64 * 1024;
    s.max_buffered_rows = 3_000;
    let mut w = ArchiveWriter::new(s, registry(), metrics.clone());
    let now = Instant::now();
    let mut most = (0, 0);
    for msg in spread_over_hours(H16, 40, 500) {
        w.accept(msg, now);
        most = (most.0.max(w.buffered()), most.1.max(w.buffered_bytes()));
        assert!(
            !w.over_bound(),
            "{} rows, {} bytes",
            w.buffered(),
            w.buffered_bytes()
        );
    }
    assert!(
        most.0 <= 3_000 && most.1 <= 64 * 1024 + 500 * 64,
        "{most:?}"
    );
    assert!(metrics.archive_pressure_writes.get() > 0);
    // What was written is written, and the rest goes at the end.
    let early = parquet_rows(dir.path());
    assert!(
        early >= 30 * 500,
        "only {early} rows written before the timer"
    );
    w.flush(now, true);
    assert_eq!(parquet_rows(dir.path()), 40 * 500);
}

#[test]
fn a_full_buffer_says_whether_the_disk_refused_and_what_waits() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let _blocker = block_readings_day(dir.path());
    let mut s = settings(dir.path());
    s.max_buffered_rows = 100;
    let mut w = ArchiveWriter::new(s, registry(), metrics.clone());
    let now = Instant::now();
    // Two hours of 2026-11-23 (refused), then one of the next day (fine).
    for msg in spread_over_hours(H16, 2, 60) {
        w.accept(msg, now);
    }
    assert!(w.over_bound());
    let why = w.why_full();
    assert!(
        why.starts_with("the disk refuses writes: 2 partition(s) of 120 rows failed"),
        "{why}"
    );
    assert_eq!(
        metrics
            .archive_write_errors
            .with_label_values(&[READINGS])
            .get(),
        2
    );
}

#[test]
fn a_stop_out_of_time_leaves_the_rows_to_the_journal_and_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(1));
    let archive = Archive::start(settings(dir.path()), registry(), metrics.clone(), 8).unwrap();
    let acks = Arc::new(Acks(std::sync::Mutex::new(Vec::new())));
    for (token, mut msg) in spread_over_hours(H16, 5, 100).into_iter().enumerate() {
        if let ArchiveMsg::Readings { done, .. } = &mut msg {
            *done = Some(crate::completion::Completion::new(
                1,
                token as u64,
                acks.clone(),
            ));
        }
        archive.sender().send(msg).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while acks.0.lock().unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "batches never completed");
        std::thread::sleep(Duration::from_millis(5));
    }
    // No time left at all: nothing is written, everything acknowledged is
    // in the journal.
    let started = Instant::now();
    archive.finish_by(Some(Instant::now()));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(parquet_rows(dir.path()), 0);
    assert!(!journal_files(dir.path()).is_empty());
    // The next start turns it into files.
    let mut s = settings(dir.path());
    s.start = 5678;
    let again = Archive::start(s, registry(), metrics, 8).unwrap();
    again.finish();
    assert_eq!(parquet_rows(dir.path()), 500);
    assert!(journal_files(dir.path()).is_empty());
}

proptest::proptest! {
    /// The archive's sort (counting sort by point rank, then time) puts
    /// rows in the order of a plain stable sort by (mine code, point
    /// code, point index, time), unknown points included.
    #[test]
    fn the_file_order_is_a_stable_sort_by_codes_and_time(
        raw in proptest::collection::vec((0u32..5, 0i64..20, 0u16..4), 0..200)
    ) {
        let reg = registry().snapshot();
        let mut rows: Vec<ReadingRow> = raw
            .iter()
            .enumerate()
            .map(|(i, (point, t, status))| ReadingRow {
                point: *point,
                ts: H16 + t * 1000,
                arrival: i as Millis,
                value: 0.0,
                status: *status,
                source: "mqtt",
            })
            .collect();
        let mut expected = rows.clone();
        let key = |r: &ReadingRow| {
            let p = reg.points.get(r.point as usize);
            let mine = p
                .and_then(|p| reg.mines.get(p.mine as usize))
                .map_or("", |m| m.code.as_str());
            (mine, p.map(|p| p.code.as_str()), r.point, r.ts)
        };
        expected.sort_by(|a, b| key(a).cmp(&key(b)));
        schema::sort_readings(&mut rows, &reg);
        proptest::prop_assert_eq!(rows, expected);
    }
}

#[test]
fn only_the_text_columns_are_dictionary_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ArchiveWriter::new(settings(dir.path()), registry(), Arc::new(Metrics::new(1)));
    let readings = (0..300)
        .map(|i| reading(i % 3, H16 + i as Millis * 1000, f64::from(i), 0))
        .collect();
    w.accept(
        ArchiveMsg::Readings {
            readings,
            arrival: H16 + 400_000,
            source: "mqtt",
            done: None,
        },
        Instant::now(),
    );
    w.flush(Instant::now(), true);
    let file = files(dir.path())
        .into_iter()
        .find(|f| f.to_string_lossy().ends_with(".parquet"))
        .expect("a readings file");
    let reader = SerializedFileReader::new(File::open(dir.path().join(file)).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    for (i, column) in group.columns().iter().enumerate() {
        let name = column.column_descr().name();
        let text = matches!(name, "mine" | "point" | "sensor" | "source");
        assert_eq!(
            column.dictionary_page_offset().is_some(),
            text,
            "column {i} {name}"
        );
    }
}
