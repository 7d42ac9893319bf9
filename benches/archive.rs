//! Archive throughput: the journal's group commit, writing Parquet files,
//! and replaying an archive through the detectors.
//!
//! - `journal_commit/{batches}x32`: encode `batches` batches of 32 readings
//!   into the journal and make them durable with one write + `fdatasync`
//!   (the archive's group commit). `thrpt` is readings/s.
//! - `archive_write/1M`: sort, encode, zstd-compress and fsync one
//!   partition of 1 000 000 rows as one file (what the archive thread does
//!   per file). `thrpt` is rows/s.
//! - `archive_encoding/…`: the parts of a file write without the disk, in
//!   CPU time of the bench thread (what the archive thread spends):
//!   `sort_and_batch` puts 1 000 000 rows into file order and builds the
//!   record batch; `zstd{N}` encodes that batch as Parquet in memory at
//!   zstd level N (dictionaries for the text columns only, as the archive
//!   writes), `zstd3_all_columns_dictionary` as the archive wrote before
//!   (every column tried as a dictionary). Each case prints its size in
//!   bytes per row. `thrpt` is rows per CPU-second.
//! - `replay/episodes`: `minewatch::review::replay::replay` over an
//!   archive of 3 200 methane points (100 mines × 32, all longwall face T1:
//!   alarm and restore 1.0 %, evacuation 1.5 %) read every 5 s for two
//!   hours (4 608 000 readings in 6 files), with over-limit episodes: read
//!   Parquet, sort each hour into event time, run the detectors, build the
//!   alert episodes. `thrpt` is readings/s.
//!
//! - `alerts_export/10k`: the `alerts` stream's exporter copying 10 002
//!   committed alert transitions (3 334 over-limit alerts raised, given a
//!   task and cleared through the lifecycle, in an in-memory SQLite store)
//!   to Parquet: read them from the store by id, cut them into hour runs,
//!   write, fsync, rename, save the cursor. `thrpt` is transitions/s.
//!
//! The replay archive is written once to `$TMPDIR/minewatch-bench-archive`
//! and kept, with `episodes-minewatch.csv` (the over-limit episodes replay
//! found), so that `benches/episodes_duckdb.py` can time DuckDB computing
//! the same episodes from the same files and check that they agree.
//!
//! Run: `cargo bench --bench archive`, then
//! `.venv/bin/python benches/episodes_duckdb.py $TMPDIR/minewatch-bench-archive`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use minewatch::archive::schema::{readings_batch, readings_schema, sort_readings};
use minewatch::archive::{ArchiveMsg, ArchiveSettings, ArchiveWriter, ReadingRow, file, journal};
use minewatch::config::{Config, Registry, SharedRegistry, parse};
use minewatch::metrics::Metrics;
use minewatch::model::{AlertKind, Reading, rfc3339};
use minewatch::review::replay::{ReplayOptions, replay};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

const MINES: usize = 100;
const POINTS: usize = 32;
const ROUNDS: usize = 1440;
const POLL_MS: i64 = 5_000;
/// 2026-11-23T00:00:00Z.
const START_MS: i64 = 1_795_392_000_000;

fn config() -> Config {
    let mut text = String::new();
    for m in 0..MINES {
        let code = format!("1401{:02}{:06}", 21 + m % 50, m + 1);
        let _ = write!(
            text,
            "[[mines]]\ncode = \"{code}\"\nname = \"m{m}\"\nprovince = \"140000\"\ncity = \"140100\"\ncounty = \"{}\"\npolling_secs = 5\npoints = [\n",
            &code[..6]
        );
        for p in 0..POINTS {
            let _ = writeln!(
                text,
                "  {{ code = \"{code}01MN0001{p:03}\", sensor = \"0001\", location = \"face_t1\" }},"
            );
        }
        text.push_str("]\n");
    }
    match parse(&text) {
        Ok((c, _)) => c,
        Err(e) => panic!("bench config: {e}"),
    }
}

/// A methane value: 0.2–0.5 % normally; each point has an episode about
/// every 12 minutes lasting 30–60 s, some of them past 1.5 %.
fn value(point: usize, round: usize) -> f64 {
    let phase = (round + point * 37) % 144;
    let wobble = ((point * 7 + round * 13) % 100) as f64 / 100.0;
    match phase {
        0..=5 => 1.05 + 0.1 * wobble,
        6..=8 if point.is_multiple_of(3) => 1.55 + 0.2 * wobble,
        _ => 0.2 + 0.3 * wobble,
    }
}

fn settings(root: &Path, start: i64) -> ArchiveSettings {
    ArchiveSettings {
        root: root.to_path_buf(),
        flush_after: Duration::from_secs(3600),
        max_rows_per_file: 1_000_000,
        row_group_rows: 131_072,
        max_buffered_rows: usize::MAX,
        max_buffered_bytes: usize::MAX,
        start,
        retain_days: 0,
    }
}

fn rounds(reg: &Registry, from: usize, to: usize) -> Vec<(i64, Vec<Reading>)> {
    (from..to)
        .flat_map(|round| {
            let ts = START_MS + round as i64 * POLL_MS;
            reg.mines
                .iter()
                .map(move |mine| {
                    let readings = mine
                        .points
                        .iter()
                        .map(|&p| Reading {
                            point: p,
                            ts,
                            value: value(p as usize, round),
                            status: 0,
                        })
                        .collect();
                    (ts, readings)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Writes the replay archive once (kept between runs).
fn replay_archive(reg: &Arc<Registry>) -> PathBuf {
    let dir = std::env::temp_dir().join("minewatch-bench-archive");
    let marker = dir.join("complete");
    if marker.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = ArchiveWriter::new(
        settings(&dir, 1),
        SharedRegistry::from(reg.clone()),
        Arc::new(Metrics::new(1)),
    );
    let step = 240;
    for from in (0..ROUNDS).step_by(step) {
        for (ts, readings) in rounds(reg, from, (from + step).min(ROUNDS)) {
            w.accept(
                ArchiveMsg::Readings {
                    readings,
                    arrival: ts + 200,
                    source: "mqtt",
                    done: None,
                },
                Instant::now(),
            );
        }
        w.flush(Instant::now(), false);
    }
    w.flush(Instant::now(), true);
    if let Err(e) = std::fs::write(&marker, b"") {
        panic!("{}: {e}", marker.display());
    }
    dir
}

fn bench_journal(c: &mut Criterion) {
    let reg = Registry::build(&config(), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut j = journal::JournalWriter::create(dir.path(), 1).expect("journal");
    let batch: Vec<Reading> = (0..32)
        .map(|p| Reading {
            point: p,
            ts: START_MS,
            value: 0.3,
            status: 0,
        })
        .collect();
    let mut g = c.benchmark_group("journal_commit");
    for batches in [1usize, 16, 256] {
        g.throughput(Throughput::Elements((batches * 32) as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{batches}x32")),
            &batches,
            |b, &n| {
                b.iter(|| {
                    for _ in 0..n {
                        j.add_readings(&reg, &batch, START_MS, "mqtt");
                    }
                    black_box(j.commit().expect("commit"));
                    if j.segment_bytes() > 64 << 20 {
                        let sealed = j.rotate().expect("rotate");
                        let _ = std::fs::remove_file(j.path_of(sealed));
                    }
                })
            },
        );
    }
    g.finish();
}

fn bench_write(c: &mut Criterion) {
    let reg = Arc::new(Registry::build(&config(), 1));
    let dir = tempfile::tempdir().expect("tempdir");
    // 1 000 000 rows of one hour, in arrival order (the writer sorts).
    let data = rounds(&reg, 0, 1_000_000 / (MINES * POINTS) + 1);
    let mut g = c.benchmark_group("archive_write");
    g.sample_size(10);
    let rows: usize = data
        .iter()
        .map(|(_, r)| r.len())
        .sum::<usize>()
        .min(1_000_000);
    g.throughput(Throughput::Elements(rows as u64));
    let mut run = 0;
    g.bench_function("1M", |b| {
        b.iter_batched(
            || {
                run += 1;
                let mut w = ArchiveWriter::new(
                    settings(&dir.path().join(run.to_string()), run),
                    SharedRegistry::from(reg.clone()),
                    Arc::new(Metrics::new(1)),
                );
                let mut left = rows;
                for (ts, readings) in &data {
                    let take = readings.len().min(left);
                    left -= take;
                    w.accept(
                        ArchiveMsg::Readings {
                            readings: readings[..take].to_vec(),
                            arrival: ts + 200,
                            source: "mqtt",
                            done: None,
                        },
                        Instant::now(),
                    );
                }
                w
            },
            |mut w| {
                w.flush(Instant::now(), true);
                assert_eq!(w.buffered(), 0);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Writes `batch` as Parquet into memory; returns the bytes.
fn encode(batch: &RecordBatch, props: WriterProperties) -> usize {
    let mut out = Vec::with_capacity(16 << 20);
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("writer");
    w.write(batch).expect("write");
    w.close().expect("close");
    out.len()
}

/// The encoding alone (sorted rows to Parquet bytes in memory, no disk),
/// per zstd level and dictionary choice, timed in CPU time of the bench
/// thread; bytes per row are printed once per case.
fn bench_encoding(c: &mut Criterion) {
    let reg = Registry::build(&config(), 1);
    let mut rows: Vec<ReadingRow> = rounds(&reg, 0, 1_000_000 / (MINES * POINTS) + 1)
        .into_iter()
        .flat_map(|(ts, readings)| {
            readings.into_iter().map(move |r| ReadingRow {
                point: r.point,
                ts: r.ts,
                arrival: ts + 200,
                value: r.value,
                status: r.status,
                source: "mqtt",
            })
        })
        .take(1_000_000)
        .collect();
    let schema = readings_schema();
    // Sorting and building the record batch, before the encoding.
    let mut g = c.benchmark_group("archive_encoding");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("sort_and_batch", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let mut copy = rows.clone();
                let t = thread_cpu();
                sort_readings(&mut copy, &reg);
                black_box(readings_batch(&copy, &reg).expect("batch"));
                spent += thread_cpu() - t;
            }
            spent
        })
    });
    sort_readings(&mut rows, &reg);
    let batch = readings_batch(&rows, &reg).expect("batch");
    let all_dictionaries = |level| {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(level).expect("level")))
            .set_max_row_group_row_count(Some(131_072))
            .build()
    };
    let mut cases: Vec<(String, WriterProperties)> =
        vec![("zstd3_all_columns_dictionary".into(), all_dictionaries(3))];
    for level in [1, 3, 6, 9] {
        cases.push((
            format!("zstd{level}"),
            file::properties(&schema, 131_072, level),
        ));
    }
    for (name, props) in cases {
        let bytes = encode(&batch, props.clone());
        println!(
            "archive_encoding/{name}: {bytes} bytes, {:.2} bytes per row",
            bytes as f64 / rows.len() as f64
        );
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let t = thread_cpu();
                for _ in 0..iters {
                    black_box(encode(&batch, props.clone()));
                }
                thread_cpu() - t
            })
        });
    }
    g.finish();
}

fn bench_replay(c: &mut Criterion) {
    let config = config();
    let reg = Arc::new(Registry::build(&config, 1));
    let dir = replay_archive(&reg);
    let opts = ReplayOptions::new(&dir);
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements((MINES * POINTS * ROUNDS) as u64));
    g.bench_function("episodes", |b| {
        b.iter(|| {
            let r = replay(&opts, Registry::build(&config, 1), |_| {}).expect("replay");
            assert_eq!(r.readings, (MINES * POINTS * ROUNDS) as u64);
            black_box(r.episodes.len())
        })
    });
    g.finish();
    // The over-limit episodes, for the DuckDB comparison.
    let started = Instant::now();
    let r = replay(&opts, Registry::build(&config, 1), |_| {}).expect("replay");
    let took = started.elapsed();
    let mut csv = String::from("point,started_at,resolved_at,peak\n");
    let mut episodes: Vec<_> = r
        .episodes
        .iter()
        .filter(|e| e.kind == AlertKind::Overlimit)
        .collect();
    episodes.sort_by(|a, b| (&a.point, a.started_at).cmp(&(&b.point, b.started_at)));
    for e in &episodes {
        let _ = writeln!(
            csv,
            "{},{},{},{}",
            e.point.as_deref().unwrap_or(""),
            rfc3339(e.started_at),
            e.resolved_at.map(rfc3339).unwrap_or_default(),
            e.peak.unwrap_or(f64::NAN)
        );
    }
    let out = dir.join("episodes-minewatch.csv");
    if let Err(e) = std::fs::write(&out, csv) {
        panic!("{}: {e}", out.display());
    }
    println!(
        "replay: {} readings, {} over-limit episodes ({} episodes of all kinds) in {:.3} s; written to {}",
        r.readings,
        episodes.len(),
        r.episodes.len(),
        took.as_secs_f64(),
        out.display()
    );
}

fn bench_alerts_export(c: &mut Criterion) {
    use minewatch::alert::{Lifecycle, alert_id};
    use minewatch::archive::alerts::Exporter;
    use minewatch::model::{Alert, Millis};
    let store = Arc::new(minewatch::store::Store::open("sqlite::memory:").expect("store"));
    let clock = Arc::new(minewatch::pipeline::ManualClock::at(START_MS));
    let (events, _) = tokio::sync::broadcast::channel(16);
    let life = Lifecycle::new(
        store.clone(),
        minewatch::config::alerting::AlertingConfig::default(),
        clock.clone(),
        events,
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(Metrics::new(1)),
    );
    let alert = |i: usize, started: Millis| {
        let mine = format!("1401{:02}{:06}", 21 + i % 50, i % MINES + 1);
        let point = format!("{mine}01MN0001{:03}", i % POINTS);
        Alert {
            id: alert_id(AlertKind::Overlimit, &mine, Some(&point), started),
            kind: AlertKind::Overlimit,
            severity: AlertKind::Overlimit.severity(),
            county: mine[..6].to_string(),
            city: "140100".into(),
            province: "140000".into(),
            mine_name: format!("m{i}"),
            mine,
            point: Some(point),
            sensor: Some("0001".into()),
            location: None,
            unit: Some("%".into()),
            value: Some(1.1),
            peak: Some(1.1),
            threshold: Some(1.0),
            rule: "≥1.0% 报警".into(),
            reason: None,
            started_at: rfc3339(started),
            resolved_at: None,
            last_seen: None,
            crossings: None,
        }
    };
    let mut made = 0;
    for i in 0.. {
        let started = START_MS + i as i64 * 1000;
        clock.set(started);
        let (id, _) = life.raise(alert(i, started)).expect("raise");
        clock.set(started + 500);
        life.clear(&id, started + 400, "condition_ended")
            .expect("clear");
        made += 3; // raised, task_created, cleared
        if made >= 10_000 {
            break;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("alerts_export");
    g.sample_size(10);
    g.throughput(Throughput::Elements(made as u64));
    let mut run = 0;
    g.bench_function("10k", |b| {
        b.iter_batched(
            || {
                run += 1;
                let mut s = settings(&dir.path().join(run.to_string()), run);
                s.flush_after = Duration::from_secs(60);
                Exporter::open(s, store.clone(), Arc::new(Metrics::new(1))).expect("exporter")
            },
            |mut x| {
                let n = x.poll(Instant::now(), true).expect("export");
                assert_eq!(n, made);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_journal,
    bench_write,
    bench_encoding,
    bench_replay,
    bench_alerts_export
);
criterion_main!(benches);
