//! Replay: runs the detectors over the `readings` stream of an archive, in
//! event time, at full speed, and rebuilds the alert episodes the live
//! alert stage would have raised.
//!
//! Hour partitions outside `[from, to)` are not opened. Each remaining hour
//! is read whole (its files in name order; only the `point`, `ts`,
//! `arrival`, `value` and `status` columns, the point codes as Parquet
//! dictionaries), sorted into event-time order — by (ts, point, arrival,
//! value, status), a total order, so ties never depend on file order — and
//! fed to the same [`ShardCore`] the live shards run. The processing-time
//! clock is the archived arrival time (never decreasing); ticks fall on
//! every multiple of `tick_ms` it passes, so offline detection is replayed
//! too. Findings become [`AlertEpisode`]s by the live alert stage's rules:
//! one per (kind, mine, point) at a time, the id from
//! [`crate::alert::alert_id`]. The same archive and options give the same
//! episodes, in the same order, every time.
//!
//! Over-limit episodes follow event time only, so they match the live run
//! exactly. Offline episodes depend on when the live ticks fell; replay
//! finds the same silences, but their start can differ by up to one tick.
//!
//! The reading, sorting and feeding is one reusable piece: [`read_sorted`]
//! hands over each selected hour in replay order, [`feed`] runs the shard
//! core over it and shows its caller every batch with its findings;
//! [`replay`] builds episodes from them and `minewatch audit`
//! ([`super::audit`]) its findings. With `skip_unreadable` a file that
//! cannot be read (not Parquet, truncated, another schema) is skipped and
//! listed instead of ending the run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{
    Array, DictionaryArray, Float64Array, StringArray, TimestampMillisecondArray, UInt16Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use serde::Serialize;

use crate::alert::{Change, EpisodeTracker, Key, subject_code};
use crate::archive::partition::Hour;
use crate::archive::retention;
use crate::config::{Config, Registry};
use crate::model::{
    AlertKind, Finding, Millis, MineIdx, PointIdx, PowerSample, Reading, SealEvent, rfc3339,
};
use crate::pipeline::ShardCore;

const HOUR_MS: i64 = 3_600_000;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The archive root (the folder holding `readings/`).
    pub archive: PathBuf,
    /// First event time included.
    pub from: Option<Millis>,
    /// First event time excluded.
    pub to: Option<Millis>,
    /// Only this mine.
    pub mine: Option<String>,
    /// Period of processing-time ticks, ms (the daemon's `tick_ms`).
    pub tick_ms: i64,
    /// Skip (and list in the result) files that cannot be read instead of
    /// failing.
    pub skip_unreadable: bool,
    /// Note which mines have readings that came in national files
    /// (`source` = `netfile`; reads one more column).
    pub sources: bool,
}

impl ReplayOptions {
    /// Everything in `archive`, ticking every second.
    pub fn new(archive: impl Into<PathBuf>) -> ReplayOptions {
        ReplayOptions {
            archive: archive.into(),
            from: None,
            to: None,
            mine: None,
            tick_ms: 1000,
            skip_unreadable: false,
            sources: false,
        }
    }
}

/// One alert episode as replay rebuilt it: the fields by which it can be
/// compared with the live alert of the same id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEpisode {
    /// `stable_hash(kind, mine, point, started)`, as the live alert's id.
    pub alert_id: String,
    /// Kind.
    pub kind: AlertKind,
    /// Mine code.
    pub mine: String,
    /// Point code (none for a mine-level alert).
    pub point: Option<String>,
    /// Start: event time for over-limit kinds, processing time for offline.
    #[serde(serialize_with = "ser_time")]
    pub started_at: Millis,
    /// End, if it ended within the replayed data.
    #[serde(serialize_with = "ser_opt_time")]
    pub resolved_at: Option<Millis>,
    /// Highest value (over-limit kinds).
    pub peak: Option<f64>,
    /// The threshold crossed (over-limit kinds).
    pub threshold: Option<f64>,
    /// The reason key that raised a data-anomaly / falsification episode
    /// (the first of its flags, as the live alert's `reason`).
    pub reason: Option<String>,
}

fn ser_time<S: serde::Serializer>(t: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// What a replay found.
#[derive(Debug, Clone, Default)]
pub struct ReplayResult {
    /// Episodes, sorted by (start, mine, point, kind, id).
    pub episodes: Vec<AlertEpisode>,
    /// Readings fed to the detectors.
    pub readings: u64,
    /// Readings skipped: point unknown to the registry.
    pub unknown_points: u64,
    /// Files read.
    pub files: usize,
    /// Files skipped because they could not be read (with
    /// `skip_unreadable`).
    pub skipped: Vec<SkippedFile>,
    /// Mines with readings from national files (with `sources`).
    pub netfile_mines: BTreeSet<MineIdx>,
    /// Earliest and latest event time fed, if any.
    pub span: Option<(Millis, Millis)>,
}

/// A file that could not be read and was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedFile {
    /// Its path.
    pub path: String,
    /// Why it could not be read.
    pub error: String,
}

/// How far a replay has got, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Hour partitions done.
    pub hours_done: usize,
    /// Hour partitions to do.
    pub hours: usize,
    /// Readings fed so far.
    pub readings: u64,
}

/// Parses `--from`/`--to`: RFC 3339 (`2026-11-23T16:00:00Z`,
/// `2026-11-23T16:00:00+08:00`), a UTC date (`2026-11-23`), or epoch ms.
pub fn parse_time(text: &str) -> Option<Millis> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    let day = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// The hour partitions of `readings` that can hold rows in `[from, to)`.
pub fn select_partitions(
    archive: &Path,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Vec<(Hour, PathBuf)> {
    stream_partitions(archive, crate::archive::READINGS, from, to)
}

/// The hour partitions of `stream` that hold event times in `[from, to)`.
fn stream_partitions(
    archive: &Path,
    stream: &str,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Vec<(Hour, PathBuf)> {
    retention::partitions(&archive.join(stream))
        .into_iter()
        .filter(|(h, _)| {
            let start = h.0.saturating_mul(HOUR_MS);
            let end = start.saturating_add(HOUR_MS);
            from.is_none_or(|f| end > f) && to.is_none_or(|t| start < t)
        })
        .collect()
}

/// The `.parquet` files of one partition folder, in name order (hidden
/// temporaries excluded).
pub fn partition_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(folder).with_context(|| format!("{}", folder.display()))? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".parquet") && !name.starts_with('.') {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The `readings` schema with the code (and source) columns read as
/// dictionaries.
fn dictionary_schema() -> SchemaRef {
    let dict = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let utc = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("mine", dict(), false),
        Field::new("point", dict(), false),
        Field::new("sensor", dict(), false),
        Field::new("ts", utc(), false),
        Field::new("arrival", utc(), false),
        Field::new("value", DataType::Float64, true),
        Field::new("status", DataType::UInt16, false),
        Field::new("source", dict(), false),
    ]))
}

/// Opens a readings file, reading only `columns`.
fn open(
    path: &Path,
    columns: &[&str],
) -> anyhow::Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let options = ArrowReaderOptions::new().with_schema(dictionary_schema());
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .with_context(|| format!("{} is not a readings file", path.display()))?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .with_context(|| format!("{}", path.display()))
}

fn dict_column<'a>(
    batch: &'a arrow::record_batch::RecordBatch,
    name: &str,
) -> anyhow::Result<(&'a DictionaryArray<Int32Type>, &'a StringArray)> {
    let d = batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<DictionaryArray<Int32Type>>())
        .with_context(|| format!("column {name} missing"))?;
    let values = d
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .with_context(|| format!("column {name} is not text"))?;
    Ok((d, values))
}

fn column<'a, T: 'static>(
    batch: &'a arrow::record_batch::RecordBatch,
    name: &str,
) -> anyhow::Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .with_context(|| format!("column {name} missing or of another type"))
}

/// A registry for an archive replayed without a config: every (mine,
/// point, sensor) seen in the selected partitions; methane sensors
/// (0001/0011/0043) as at a longwall face T1 (alarm 1.0 %, evacuation
/// 1.5 %, restore below 1.0 %), CO (0004) with the CO rule (24 ppm), other
/// types without limits; polling and offline timeouts at the defaults.
pub fn registry_from_archive(
    partitions: &[(Hour, PathBuf)],
    mine: Option<&str>,
) -> anyhow::Result<Registry> {
    scan_registry(partitions, mine, None)
}

/// [`registry_from_archive`], skipping files that cannot be read (each
/// listed in `skipped`) instead of failing.
pub fn registry_from_archive_skipping(
    partitions: &[(Hour, PathBuf)],
    mine: Option<&str>,
    skipped: &mut Vec<SkippedFile>,
) -> anyhow::Result<Registry> {
    scan_registry(partitions, mine, Some(skipped))
}

/// The (mine, point, sensor) codes of one file.
fn file_codes(
    path: &Path,
    mine: Option<&str>,
    seen: &mut BTreeSet<(String, String, String)>,
) -> anyhow::Result<()> {
    for batch in open(path, &["mine", "point", "sensor"])? {
        let batch = batch.with_context(|| format!("{}", path.display()))?;
        let (mk, mv) = dict_column(&batch, "mine")?;
        let (pk, pv) = dict_column(&batch, "point")?;
        let (sk, sv) = dict_column(&batch, "sensor")?;
        let mut keys: BTreeSet<(i32, i32, i32)> = BTreeSet::new();
        for i in 0..batch.num_rows() {
            keys.insert((mk.keys().value(i), pk.keys().value(i), sk.keys().value(i)));
        }
        for (m, p, s) in keys {
            let m = mv.value(m as usize);
            if mine.is_some_and(|x| x != m) {
                continue;
            }
            seen.insert((
                m.to_string(),
                pv.value(p as usize).to_string(),
                sv.value(s as usize).to_string(),
            ));
        }
    }
    Ok(())
}

fn scan_registry(
    partitions: &[(Hour, PathBuf)],
    mine: Option<&str>,
    mut skipped: Option<&mut Vec<SkippedFile>>,
) -> anyhow::Result<Registry> {
    let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (_, folder) in partitions {
        for path in partition_files(folder)? {
            let mut codes = BTreeSet::new();
            match (file_codes(&path, mine, &mut codes), skipped.as_deref_mut()) {
                (Ok(()), _) => seen.extend(codes),
                (Err(e), Some(skipped)) => skipped.push(SkippedFile {
                    path: path.display().to_string(),
                    error: format!("{e:#}"),
                }),
                (Err(e), None) => return Err(e),
            }
        }
    }
    let mut mines: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (m, p, s) in &seen {
        mines.entry(m).or_default().push((p, s));
    }
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = String::new();
    for (mine, points) in &mines {
        let digits = |n: usize, pad: &str| match mine.get(..n) {
            Some(p) if mine.bytes().all(|b| b.is_ascii_digit()) => format!("{p}{pad}"),
            _ => "000000".to_string(),
        };
        text.push_str(&format!(
            "[[mines]]\ncode = {}\nname = {}\nprovince = \"{}\"\ncity = \"{}\"\ncounty = \"{}\"\npoints = [\n",
            q(mine),
            q(mine),
            digits(2, "0000"),
            digits(4, "00"),
            digits(6, ""),
        ));
        for (point, sensor) in points {
            let location = match crate::model::SensorType::parse(sensor) {
                Some(t) if t.is_ambient_methane() => "face_t1",
                _ => "other",
            };
            let sensor = if crate::model::SensorType::parse(sensor).is_some() {
                sensor
            } else {
                "9999"
            };
            text.push_str(&format!(
                "  {{ code = {}, sensor = {}, location = \"{location}\" }},\n",
                q(point),
                q(sensor)
            ));
        }
        text.push_str("]\n");
    }
    let config: Config = toml::from_str(&text).context("building a registry from the archive")?;
    Ok(Registry::build(&config, 1))
}

/// One hour replay reads: its partitions of `readings`, `power` and `seal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayHour {
    /// The UTC hour.
    pub hour: Hour,
    /// Its `readings` folder, if any.
    pub readings: Option<PathBuf>,
    /// Its `power` folder, if any.
    pub power: Option<PathBuf>,
    /// Its `seal` folder, if any.
    pub seal: Option<PathBuf>,
}

impl ReplayHour {
    /// Hours of readings partitions only (no power or seal).
    pub fn readings_only(partitions: &[(Hour, PathBuf)]) -> Vec<ReplayHour> {
        partitions
            .iter()
            .map(|(hour, folder)| ReplayHour {
                hour: *hour,
                readings: Some(folder.clone()),
                power: None,
                seal: None,
            })
            .collect()
    }
}

/// Every hour in `[from, to)` that holds readings, power samples or seal
/// events, in order.
pub fn replay_hours(archive: &Path, from: Option<Millis>, to: Option<Millis>) -> Vec<ReplayHour> {
    let mut hours: BTreeMap<Hour, ReplayHour> = BTreeMap::new();
    let streams = [
        crate::archive::READINGS,
        crate::archive::activity::POWER,
        crate::archive::activity::SEAL,
    ];
    for (k, stream) in streams.into_iter().enumerate() {
        for (hour, folder) in stream_partitions(archive, stream, from, to) {
            let h = hours.entry(hour).or_insert_with(|| ReplayHour {
                hour,
                readings: None,
                power: None,
                seal: None,
            });
            match k {
                0 => h.readings = Some(folder),
                1 => h.power = Some(folder),
                _ => h.seal = Some(folder),
            }
        }
    }
    hours.into_values().collect()
}

/// A power sample or seal event in replay order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArchivedActivity {
    /// A power sample and its arrival.
    Power(PowerSample, Millis),
    /// A seal event and its arrival.
    Seal(SealEvent, Millis),
}

impl ArchivedActivity {
    /// (event time, arrival): its place among the readings.
    pub fn order(&self) -> (Millis, Millis) {
        match self {
            ArchivedActivity::Power(p, a) => (p.ts, *a),
            ArchivedActivity::Seal(e, a) => (e.ts, *a),
        }
    }

    /// A total order key among activities of one (ts, arrival).
    fn key(&self) -> (Millis, Millis, u8, u32, u16, u64) {
        match self {
            ArchivedActivity::Power(p, a) => (p.ts, *a, 0, p.mine, 0, 0),
            ArchivedActivity::Seal(e, a) => (e.ts, *a, 1, e.mine, e.camera, e.frame),
        }
    }
}

/// Reads one hour's power samples and seal events of the selected mine
/// and time range; rows of mines or cameras the registry does not know are
/// counted as unknown.
fn read_activity(
    hour: &ReplayHour,
    registry: &Registry,
    opts: &ReplayOptions,
    mine: Option<MineIdx>,
    out: &mut Vec<ArchivedActivity>,
    result: &mut ReplayResult,
) -> anyhow::Result<()> {
    let in_range = |t: Millis| opts.from.is_none_or(|f| t >= f) && opts.to.is_none_or(|x| t < x);
    let wanted = |m: MineIdx| mine.is_none_or(|x| x == m);
    for (folder, is_power) in [(&hour.power, true), (&hour.seal, false)] {
        let Some(folder) = folder else { continue };
        let files = match partition_files(folder) {
            Ok(f) => f,
            Err(e) if opts.skip_unreadable => {
                result.skipped.push(SkippedFile {
                    path: folder.display().to_string(),
                    error: format!("{e:#}"),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        for path in files {
            result.files += 1;
            let before = out.len();
            let read = (|| -> anyhow::Result<()> {
                let file = File::open(&path).with_context(|| format!("{}", path.display()))?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .with_context(|| format!("{} is not a Parquet file", path.display()))?
                    .build()?;
                for batch in reader {
                    let batch = batch.with_context(|| format!("{}", path.display()))?;
                    if is_power {
                        for r in crate::archive::activity::power_from_batch(&batch)? {
                            match r.sample(registry) {
                                Some(s) if wanted(s.mine) && in_range(s.ts) => {
                                    out.push(ArchivedActivity::Power(s, r.arrival))
                                }
                                Some(_) => {}
                                None => result.unknown_points += 1,
                            }
                        }
                    } else {
                        for r in crate::archive::activity::seal_from_batch(&batch)? {
                            match r.event(registry) {
                                Some(e) if wanted(e.mine) && in_range(e.ts) => {
                                    out.push(ArchivedActivity::Seal(e, r.arrival))
                                }
                                Some(_) => {}
                                None => result.unknown_points += 1,
                            }
                        }
                    }
                }
                Ok(())
            })();
            match read {
                Ok(()) => {}
                Err(e) if opts.skip_unreadable => {
                    out.truncate(before);
                    result.skipped.push(SkippedFile {
                        path: path.display().to_string(),
                        error: format!("{e:#}"),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// One archived reading in replay order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchivedReading {
    /// Event time.
    pub ts: Millis,
    /// The point, as a registry index.
    pub point: PointIdx,
    /// National status bits.
    pub status: u16,
    /// Processing time of receipt.
    pub arrival: Millis,
    /// The value (`NaN` when the file holds none).
    pub value: f64,
}

/// Reads one hour's rows of the selected mine and time range.
fn read_hour(
    folder: &Path,
    registry: &Registry,
    opts: &ReplayOptions,
    mine: Option<MineIdx>,
    rows: &mut Vec<ArchivedReading>,
    result: &mut ReplayResult,
) -> anyhow::Result<()> {
    let files = match partition_files(folder) {
        Ok(f) => f,
        Err(e) if opts.skip_unreadable => {
            result.skipped.push(SkippedFile {
                path: folder.display().to_string(),
                error: format!("{e:#}"),
            });
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for path in files {
        result.files += 1;
        let before = rows.len();
        let mut netfile = BTreeSet::new();
        let read = read_file(&path, registry, opts, mine, rows, &mut netfile, result);
        match read {
            Ok(()) => result.netfile_mines.extend(netfile),
            Err(e) if opts.skip_unreadable => {
                // Nothing of a file that cannot be read whole is used.
                rows.truncate(before);
                result.skipped.push(SkippedFile {
                    path: path.display().to_string(),
                    error: format!("{e:#}"),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The reason key a finding opens an alert with, as the live stage sets
/// `Alert::reason`.
fn reason_of(finding: &Finding) -> Option<&'static str> {
    match finding {
        Finding::FlagRaised { flag, .. } => Some(flag.key()),
        Finding::ActivityRaised { reason, .. } => Some(reason.key()),
        _ => None,
    }
}

/// Reads one file's rows of the selected mine and time range.
fn read_file(
    path: &Path,
    registry: &Registry,
    opts: &ReplayOptions,
    mine: Option<MineIdx>,
    rows: &mut Vec<ArchivedReading>,
    netfile: &mut BTreeSet<MineIdx>,
    result: &mut ReplayResult,
) -> anyhow::Result<()> {
    let mut map: Vec<Option<PointIdx>> = Vec::new();
    let mut columns = vec!["point", "ts", "arrival", "value", "status"];
    if opts.sources {
        columns.push("source");
    }
    let mut unknown = 0;
    for batch in open(path, &columns)? {
        let batch = batch.with_context(|| format!("{}", path.display()))?;
        let (pk, pv) = dict_column(&batch, "point")?;
        let ts = column::<TimestampMillisecondArray>(&batch, "ts")?;
        let arrival = column::<TimestampMillisecondArray>(&batch, "arrival")?;
        let value = column::<Float64Array>(&batch, "value")?;
        let status = column::<UInt16Array>(&batch, "status")?;
        // Dictionary entry → point, once per batch.
        map.clear();
        map.extend((0..pv.len()).map(|i| {
            let idx = registry.point(pv.value(i))?;
            let p = registry.points.get(idx as usize)?;
            mine.is_none_or(|m| p.mine == m).then_some(idx)
        }));
        let (keys, ts, arrival, status) = (
            pk.keys().values(),
            ts.values(),
            arrival.values(),
            status.values(),
        );
        let values = value.values();
        let nulls = value.nulls();
        // The dictionary key of `netfile` in the source column, if any.
        let from_files = if opts.sources {
            let (sk, sv) = dict_column(&batch, "source")?;
            (0..sv.len())
                .find(|&i| sv.value(i) == crate::ingest::netfile::watch::SOURCE)
                .map(|k| (sk.keys().values(), k as i32))
        } else {
            None
        };
        rows.reserve(batch.num_rows());
        for i in 0..batch.num_rows() {
            let Some(point) = map.get(keys[i] as usize).copied().flatten() else {
                unknown += 1;
                continue;
            };
            let t = ts[i];
            if opts.from.is_some_and(|f| t < f) || opts.to.is_some_and(|x| t >= x) {
                continue;
            }
            if let Some((source, k)) = from_files
                && source[i] == k
                && let Some(p) = registry.points.get(point as usize)
            {
                netfile.insert(p.mine);
            }
            rows.push(ArchivedReading {
                ts: t,
                point,
                status: status[i],
                arrival: arrival[i],
                value: if nulls.is_some_and(|n| n.is_null(i)) {
                    f64::NAN
                } else {
                    values[i]
                },
            });
        }
    }
    result.unknown_points += unknown;
    Ok(())
}

/// The registry index of `opts.mine`, if one is asked for.
pub fn mine_filter(opts: &ReplayOptions, registry: &Registry) -> anyhow::Result<Option<MineIdx>> {
    match &opts.mine {
        Some(code) => {
            Ok(Some(registry.mine(code).with_context(|| {
                format!("mine {code} is not in the registry")
            })?))
        }
        None => Ok(None),
    }
}

/// Reads `partitions` one hour at a time, sorts each hour into replay
/// order — (ts, point, arrival, value, status), a total order — and hands
/// it to `each_hour` with its position among the hours, together with the
/// hour's power samples and seal events in (ts, arrival, …) order. Counts
/// go to `result`.
pub fn read_sorted(
    opts: &ReplayOptions,
    registry: &Registry,
    hours: &[ReplayHour],
    result: &mut ReplayResult,
    mut each_hour: impl FnMut(usize, &[ArchivedReading], &[ArchivedActivity]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mine = mine_filter(opts, registry)?;
    let mut rows = Vec::new();
    let mut activity = Vec::new();
    for (done, hour) in hours.iter().enumerate() {
        rows.clear();
        activity.clear();
        if let Some(folder) = &hour.readings {
            read_hour(folder, registry, opts, mine, &mut rows, result)?;
        }
        read_activity(hour, registry, opts, mine, &mut activity, result)?;
        activity.sort_unstable_by_key(ArchivedActivity::key);
        rows.sort_unstable_by(|a, b| {
            (a.ts, a.point, a.arrival, a.value.to_bits(), a.status).cmp(&(
                b.ts,
                b.point,
                b.arrival,
                b.value.to_bits(),
                b.status,
            ))
        });
        each_hour(done, &rows, &activity)?;
    }
    Ok(())
}

/// One batch as [`feed`] applied it.
pub struct Fed<'a> {
    /// The readings of the batch (one event time, one arrival).
    pub readings: &'a [Reading],
    /// The processing-time clock when it was applied.
    pub clock: Millis,
    /// What the detectors concluded from it and from the ticks before it.
    pub findings: &'a [Finding],
}

/// Turns findings into episodes by the live alert stage's rules (the same
/// [`EpisodeTracker`]).
#[derive(Default)]
pub struct EpisodeBuilder {
    tracker: EpisodeTracker,
    open: HashMap<Key, usize>,
    changes: Vec<Change>,
    episodes: Vec<AlertEpisode>,
}

impl EpisodeBuilder {
    /// Applies one finding.
    pub fn apply(&mut self, registry: &Registry, finding: &Finding) {
        self.tracker.apply(registry, finding, &mut self.changes);
        for change in self.changes.drain(..) {
            match change {
                Change::Open {
                    key,
                    started,
                    value,
                    threshold,
                } => {
                    let (kind, mine, subject) = key;
                    let Some(m) = registry.mines.get(mine as usize) else {
                        continue;
                    };
                    let point = subject_code(registry, mine, subject);
                    self.open.insert(key, self.episodes.len());
                    self.episodes.push(AlertEpisode {
                        alert_id: crate::alert::alert_id(kind, &m.code, point.as_deref(), started),
                        kind,
                        mine: m.code.clone(),
                        point,
                        started_at: started,
                        resolved_at: None,
                        peak: value,
                        threshold,
                        reason: reason_of(finding).map(str::to_string),
                    });
                }
                Change::Peak { key, value } => {
                    if let Some(&i) = self.open.get(&key) {
                        let e = &mut self.episodes[i];
                        if e.peak.is_none_or(|p| p < value) {
                            e.peak = Some(value);
                        }
                    }
                }
                Change::Close { key, at } => {
                    if let Some(i) = self.open.remove(&key) {
                        self.episodes[i].resolved_at = Some(at);
                    }
                }
            }
        }
    }

    /// Every episode, sorted by (start, mine, point, kind, id).
    pub fn finish(mut self) -> Vec<AlertEpisode> {
        self.episodes.sort_by(|a, b| {
            (a.started_at, &a.mine, &a.point, a.kind, &a.alert_id).cmp(&(
                b.started_at,
                &b.mine,
                &b.point,
                b.kind,
                &b.alert_id,
            ))
        });
        self.episodes
    }
}

/// Feeds the selected hours of the archive, in event time, to one
/// [`ShardCore`] over `registry` (all mines in one shard), with the
/// archived arrival as the processing clock and a tick at every multiple
/// of `tick_ms` it passes; `sink` sees every batch with its findings,
/// `progress` every hour done. The result holds the counts; its
/// `episodes` are left empty.
pub fn feed(
    opts: &ReplayOptions,
    registry: Arc<Registry>,
    mut progress: impl FnMut(Progress),
    mut sink: impl FnMut(Fed<'_>),
) -> anyhow::Result<ReplayResult> {
    let partitions = replay_hours(&opts.archive, opts.from, opts.to);
    let tick = opts.tick_ms.max(1);
    let mut result = ReplayResult::default();
    let mut core: Option<ShardCore> = None;
    let mut clock = Millis::MIN;
    let mut next_tick = Millis::MIN;
    let mut batch: Vec<Reading> = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(64);
    let mut fed: u64 = 0;
    let mut span: Option<(Millis, Millis)> = None;
    let hours = partitions.len();
    read_sorted(
        opts,
        &registry,
        &partitions,
        &mut result,
        |done, rows, activity| {
            let (mut i, mut k) = (0, 0);
            while i < rows.len() || k < activity.len() {
                // The next thing in (ts, arrival) order: a power sample or seal
                // event, or a run of readings with one event time and arrival
                // (one batch); readings first on a tie.
                let next_reading = rows.get(i).map(|r| (r.ts, r.arrival));
                let next_activity = activity.get(k).map(ArchivedActivity::order);
                let take_activity = match (next_reading, next_activity) {
                    (Some(r), Some(a)) => a < r,
                    (None, Some(_)) => true,
                    _ => false,
                };
                let (ts, arrival) = if take_activity {
                    activity[k].order()
                } else {
                    (rows[i].ts, rows[i].arrival)
                };
                let core = core.get_or_insert_with(|| {
                    clock = arrival;
                    next_tick = (arrival.div_euclid(tick) + 1) * tick;
                    ShardCore::new(registry.clone(), 0, arrival)
                });
                if arrival > clock {
                    clock = arrival;
                    // Every tick the live daemon would have had meanwhile.
                    while next_tick <= clock {
                        core.tick(next_tick, &mut out);
                        next_tick += tick;
                    }
                }
                batch.clear();
                if take_activity {
                    match &activity[k] {
                        ArchivedActivity::Power(p, _) => {
                            core.process_power(std::slice::from_ref(p), clock, &mut out)
                        }
                        ArchivedActivity::Seal(e, _) => {
                            core.process_seal(std::slice::from_ref(e), clock, &mut out)
                        }
                    };
                    k += 1;
                } else {
                    while i < rows.len() && rows[i].ts == ts && rows[i].arrival == arrival {
                        let r = rows[i];
                        batch.push(Reading {
                            point: r.point,
                            ts: r.ts,
                            value: r.value,
                            status: r.status,
                        });
                        i += 1;
                    }
                    core.process(&batch, clock, &mut out);
                    fed += batch.len() as u64;
                }
                span = Some(span.map_or((ts, ts), |(a, b)| (a.min(ts), b.max(ts))));
                sink(Fed {
                    readings: &batch,
                    clock,
                    findings: &out,
                });
                out.clear();
            }
            progress(Progress {
                hours_done: done + 1,
                hours,
                readings: fed,
            });
            Ok(())
        },
    )?;
    result.readings = fed;
    result.span = span;
    Ok(result)
}

/// Replays the archive with `registry` (see [`registry_from_archive`] when
/// there is no config), telling `progress` after every hour.
pub fn replay(
    opts: &ReplayOptions,
    registry: Registry,
    progress: impl FnMut(Progress),
) -> anyhow::Result<ReplayResult> {
    let registry = Arc::new(registry);
    let mut builder = EpisodeBuilder::default();
    let mut result = feed(opts, registry.clone(), progress, |fed| {
        for f in fed.findings {
            builder.apply(&registry, f);
        }
    })?;
    result.episodes = builder.finish();
    Ok(result)
}

/// Loads a replay's episodes: the registry from `config` when given (its
/// points and thresholds), else from the archive itself.
pub fn load_episodes(
    opts: &ReplayOptions,
    config: Option<&Config>,
) -> anyhow::Result<ReplayResult> {
    let registry = match config {
        Some(c) => Registry::build(c, 1),
        None => registry_from_archive(
            &select_partitions(&opts.archive, opts.from, opts.to),
            opts.mine.as_deref(),
        )?,
    };
    replay(opts, registry, |_| {})
}

/// Output format of `minewatch replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a person.
    Table,
    /// A JSON array of episodes.
    Json,
    /// CSV with a header line.
    Csv,
}

fn opt_num(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Renders episodes; the same episodes always give the same bytes.
pub fn render(episodes: &[AlertEpisode], format: Format) -> String {
    let header = [
        "alert_id",
        "kind",
        "mine",
        "point",
        "started_at",
        "resolved_at",
        "peak",
        "threshold",
        "reason",
    ];
    let cells = |e: &AlertEpisode| -> [String; 9] {
        [
            e.alert_id.clone(),
            e.kind.key().to_string(),
            e.mine.clone(),
            e.point.clone().unwrap_or_default(),
            rfc3339(e.started_at),
            e.resolved_at.map(rfc3339).unwrap_or_default(),
            opt_num(e.peak),
            opt_num(e.threshold),
            e.reason.clone().unwrap_or_default(),
        ]
    };
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(episodes).unwrap_or_else(|_| "[]".into());
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut s = header.join(",");
            s.push('\n');
            for e in episodes {
                let row: Vec<String> = cells(e).iter().map(|c| csv_field(c)).collect();
                s.push_str(&row.join(","));
                s.push('\n');
            }
            s
        }
        Format::Table => {
            let rows: Vec<[String; 9]> = episodes.iter().map(cells).collect();
            let mut width = header.map(|h| h.chars().count());
            for r in &rows {
                for (w, c) in width.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cols: &[String]| {
                let mut s = String::new();
                for (i, (c, w)) in cols.iter().zip(width).enumerate() {
                    if i + 1 == cols.len() {
                        s.push_str(c);
                    } else {
                        s.push_str(c);
                        s.push_str(&" ".repeat(w - c.chars().count() + 2));
                    }
                }
                s.trim_end().to_string() + "\n"
            };
            let mut s = line(&header.map(String::from));
            for r in &rows {
                s.push_str(&line(r));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests;
