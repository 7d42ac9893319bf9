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

use super::partition::Hour;
use super::retention;
use crate::config::{Config, Registry};
use crate::model::{AlertKind, Finding, Millis, MineIdx, PointIdx, Reading, rfc3339};
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
    retention::partitions(&archive.join(super::READINGS))
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
fn partition_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
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

/// The `readings` schema with the code columns read as dictionaries.
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
        Field::new("source", DataType::Utf8, false),
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
    let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (_, folder) in partitions {
        for path in partition_files(folder)? {
            for batch in open(&path, &["mine", "point", "sensor"])? {
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

/// One reading in replay order.
#[derive(Debug, Clone, Copy)]
struct Row {
    ts: Millis,
    point: PointIdx,
    status: u16,
    arrival: Millis,
    value: f64,
}

/// Reads one hour's rows of the selected mine and time range.
fn read_hour(
    folder: &Path,
    registry: &Registry,
    opts: &ReplayOptions,
    mine: Option<MineIdx>,
    rows: &mut Vec<Row>,
    result: &mut ReplayResult,
) -> anyhow::Result<()> {
    let mut map: Vec<Option<PointIdx>> = Vec::new();
    for path in partition_files(folder)? {
        result.files += 1;
        for batch in open(&path, &["point", "ts", "arrival", "value", "status"])? {
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
            rows.reserve(batch.num_rows());
            for i in 0..batch.num_rows() {
                let Some(point) = map.get(keys[i] as usize).copied().flatten() else {
                    result.unknown_points += 1;
                    continue;
                };
                let t = ts[i];
                if opts.from.is_some_and(|f| t < f) || opts.to.is_some_and(|x| t >= x) {
                    continue;
                }
                rows.push(Row {
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
    }
    Ok(())
}

/// Key of an open episode, as the live alert stage keys its alerts.
type Key = (AlertKind, MineIdx, Option<PointIdx>);

/// Turns findings into episodes by the live alert stage's rules.
#[derive(Default)]
pub struct EpisodeBuilder {
    open: HashMap<Key, usize>,
    /// Reasons still open per data-anomaly / falsification episode: like
    /// the live stage, one episode per point and kind until all have ended.
    flags: HashMap<Key, u16>,
    episodes: Vec<AlertEpisode>,
}

impl EpisodeBuilder {
    /// Applies one finding.
    pub fn apply(&mut self, registry: &Registry, finding: &Finding) {
        let mine_of = |p: PointIdx| registry.points.get(p as usize).map(|p| p.mine);
        match *finding {
            Finding::OverLimitOpened {
                point,
                ts,
                value,
                threshold,
            } => self.raise(
                registry,
                AlertKind::Overlimit,
                mine_of(point),
                Some(point),
                ts,
                Some((value, threshold)),
            ),
            Finding::Evacuation {
                point,
                ts,
                value,
                threshold,
            } => self.raise(
                registry,
                AlertKind::Evacuation,
                mine_of(point),
                Some(point),
                ts,
                Some((value, threshold)),
            ),
            Finding::Peak { point, value, .. } => {
                let Some(mine) = mine_of(point) else { return };
                for kind in [AlertKind::Overlimit, AlertKind::Evacuation] {
                    if let Some(&i) = self.open.get(&(kind, mine, Some(point))) {
                        let e = &mut self.episodes[i];
                        if e.peak.is_none_or(|p| p < value) {
                            e.peak = Some(value);
                        }
                    }
                }
            }
            Finding::OverLimitClosed { point, ts, .. } => {
                let Some(mine) = mine_of(point) else { return };
                for kind in [AlertKind::Evacuation, AlertKind::Overlimit] {
                    self.resolve((kind, mine, Some(point)), ts);
                }
            }
            Finding::PointOffline { point, at, .. } => self.raise(
                registry,
                AlertKind::PointOffline,
                mine_of(point),
                Some(point),
                at,
                None,
            ),
            Finding::PointOnline { point, at } => {
                if let Some(mine) = mine_of(point) {
                    self.resolve((AlertKind::PointOffline, mine, Some(point)), at);
                }
            }
            Finding::MineOffline { mine, at, .. } => {
                self.raise(registry, AlertKind::MineOffline, Some(mine), None, at, None)
            }
            Finding::MineOnline { mine, at } => {
                self.resolve((AlertKind::MineOffline, mine, None), at)
            }
            Finding::FlagRaised {
                point,
                ts,
                flag,
                value,
            } => {
                let Some(mine) = mine_of(point) else { return };
                let key = (flag.kind(), mine, Some(point));
                *self.flags.entry(key).or_insert(0) |= flag.bit();
                let shown = value.is_finite().then_some((value, f64::NAN));
                self.raise(registry, flag.kind(), Some(mine), Some(point), ts, shown);
                self.note_reason(key, flag.key());
            }
            Finding::FlagCleared { point, ts, flag } => {
                let Some(mine) = mine_of(point) else { return };
                let key = (flag.kind(), mine, Some(point));
                let left = self.flags.get_mut(&key).map_or(0, |bits| {
                    *bits &= !flag.bit();
                    *bits
                });
                if left == 0 {
                    self.flags.remove(&key);
                    self.resolve(key, ts);
                }
            }
        }
    }

    fn raise(
        &mut self,
        registry: &Registry,
        kind: AlertKind,
        mine: Option<MineIdx>,
        point: Option<PointIdx>,
        started: Millis,
        value: Option<(f64, f64)>,
    ) {
        let Some(mine) = mine else { return };
        let key = (kind, mine, point);
        if self.open.contains_key(&key) {
            return;
        }
        let Some(m) = registry.mines.get(mine as usize) else {
            return;
        };
        let point_code = point
            .and_then(|p| registry.points.get(p as usize))
            .map(|p| p.code.clone());
        self.open.insert(key, self.episodes.len());
        self.episodes.push(AlertEpisode {
            alert_id: crate::alert::alert_id(kind, &m.code, point_code.as_deref(), started),
            kind,
            mine: m.code.clone(),
            point: point_code,
            started_at: started,
            resolved_at: None,
            peak: value.map(|v| v.0),
            threshold: value.map(|v| v.1).filter(|t| t.is_finite()),
            reason: None,
        });
    }

    /// Gives the open episode of `key` its reason, unless it has one: the
    /// flag that raised it, as live.
    fn note_reason(&mut self, key: Key, reason: &str) {
        if let Some(&i) = self.open.get(&key)
            && self.episodes[i].reason.is_none()
        {
            self.episodes[i].reason = Some(reason.to_string());
        }
    }

    fn resolve(&mut self, key: Key, at: Millis) {
        if let Some(i) = self.open.remove(&key) {
            self.episodes[i].resolved_at = Some(at);
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

/// Replays the archive with `registry` (see [`registry_from_archive`] when
/// there is no config), telling `progress` after every hour.
pub fn replay(
    opts: &ReplayOptions,
    registry: Registry,
    mut progress: impl FnMut(Progress),
) -> anyhow::Result<ReplayResult> {
    let partitions = select_partitions(&opts.archive, opts.from, opts.to);
    let registry = Arc::new(registry);
    let mine = match &opts.mine {
        Some(code) => Some(
            registry
                .mine(code)
                .with_context(|| format!("mine {code} is not in the registry"))?,
        ),
        None => None,
    };
    let tick = opts.tick_ms.max(1);
    let mut result = ReplayResult::default();
    let mut builder = EpisodeBuilder::default();
    let mut core: Option<ShardCore> = None;
    let mut clock = Millis::MIN;
    let mut next_tick = Millis::MIN;
    let mut rows = Vec::new();
    let mut batch: Vec<Reading> = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(64);
    let hours = partitions.len();
    for (done, (_, folder)) in partitions.iter().enumerate() {
        rows.clear();
        read_hour(folder, &registry, opts, mine, &mut rows, &mut result)?;
        rows.sort_unstable_by(|a, b| {
            (a.ts, a.point, a.arrival, a.value.to_bits(), a.status).cmp(&(
                b.ts,
                b.point,
                b.arrival,
                b.value.to_bits(),
                b.status,
            ))
        });
        let mut i = 0;
        while i < rows.len() {
            // A run of rows with the same event time and arrival is one batch.
            let (ts, arrival) = (rows[i].ts, rows[i].arrival);
            batch.clear();
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
            core.process(&batch, clock, &mut out);
            result.readings += batch.len() as u64;
            for f in out.drain(..) {
                builder.apply(&registry, &f);
            }
        }
        progress(Progress {
            hours_done: done + 1,
            hours,
            readings: result.readings,
        });
    }
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
