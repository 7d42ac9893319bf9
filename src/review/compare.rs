//! `minewatch replay --compare`: the alert episodes replay rebuilt against
//! the ones the live daemon raised, as its archived `alerts` stream
//! records them, and the differences between the two.
//!
//! Live episodes come from the alert transitions (one episode per
//! `alert_id`; its end and peak from its last transition — the final peak
//! once it has cleared). Episodes are paired by id first (the id is a hash
//! of kind, mine, point and start, so equal ids mean equal starts), then,
//! among what is left, by kind, mine and point where their times overlap
//! or their starts lie within the tolerance. Then:
//!
//! - `only_replay` / `only_live`: no partner;
//! - `start`: starts differ by more than the tolerance;
//! - `end`: one ended and the other did not, or ends differ by more than
//!   the tolerance (a live end at or after `--to` counts as "not ended
//!   within the replayed range");
//! - `peak`: both ended and their peaks differ (a live episode still open
//!   carries the peak of its last transition, which may lag: peaks are
//!   compared on ended episodes only);
//! - `threshold`: the thresholds crossed differ (the live daemon ran on
//!   other point definitions than the replay's config: a threshold raised
//!   in the mine's CDDY is a known falsification);
//! - `reason`: the reasons that raised a data-anomaly / falsification /
//!   activity episode differ.
//!
//! The tolerance is 0 for the event-time kinds (over-limit, evacuation,
//! data anomaly, falsification) and two ticks for the offline kinds, whose
//! start and end are processing time: live, they follow the daemon's
//! ticks, in their own phase; replayed, the archived arrival times and
//! ticks on multiples of `tick_ms` (up to one tick apart). And live, a tick
//! can reach a shard before readings that arrived just before it, still
//! queued behind the decoder when the daemon is busy, which replay (in
//! arrival order) applies first: up to one more tick under load.
//!
//! Live episodes that started before `--from` and did not end before it
//! are cut by the range: they are paired if they can be, and never listed
//! as `only_live`, nor is the start compared.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use super::replay::{AlertEpisode, Format};
use crate::archive::{ALERTS, retention};
use crate::model::{AlertKind, Millis, rfc3339};

const HOUR_MS: i64 = 3_600_000;

/// Transitions are read from this long before `--from`: an alert's
/// transitions fall at or after its start (processing time ≥ event time,
/// give or take the mine's clock).
const LOOKBACK_MS: i64 = 24 * HOUR_MS;

/// What to compare.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// First event time replayed.
    pub from: Option<Millis>,
    /// First event time not replayed.
    pub to: Option<Millis>,
    /// Only this mine.
    pub mine: Option<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<AlertKind>,
    /// The tick period, ms: the tolerance for offline kinds.
    pub tick_ms: i64,
}

/// The live episodes in the archive's `alerts` stream.
#[derive(Debug, Clone, Default)]
pub struct LiveEpisodes {
    /// Episodes of the selected mine and kinds that overlap the range,
    /// sorted by (start, mine, point, kind, id).
    pub episodes: Vec<AlertEpisode>,
    /// Transition rows read.
    pub transitions: u64,
    /// Files read.
    pub files: usize,
    /// Alerts of kinds this minewatch does not know (skipped).
    pub unknown_kinds: u64,
}

/// One transition row, as far as comparing needs it.
struct TransitionRow {
    /// 1, 2, … within the alert.
    seq: i64,
    /// Alert kind key.
    kind: String,
    /// Mine code.
    mine: String,
    /// Point code.
    point: Option<String>,
    /// Start of the condition.
    started_at: Millis,
    /// End of the condition as of this transition.
    resolved_at: Option<Millis>,
    /// Peak as of this transition.
    peak: Option<f64>,
    /// Threshold crossed.
    threshold: Option<f64>,
    /// Reason key.
    reason: Option<String>,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> anyhow::Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .with_context(|| format!("column {name} missing or of another type"))
}

fn opt_text(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

fn opt_num(a: &Float64Array, i: usize) -> Option<f64> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// The finished files of the `alerts` stream that can hold transitions of
/// episodes starting at or after `from`.
fn alert_files(archive: &Path, from: Option<Millis>) -> anyhow::Result<Vec<PathBuf>> {
    let dir = archive.join(ALERTS);
    anyhow::ensure!(
        dir.is_dir(),
        "{} has no alerts/ stream: --compare needs an archive written by a daemon that exports alert transitions",
        archive.display()
    );
    let earliest = from.map(|f| f.saturating_sub(LOOKBACK_MS));
    let mut out = Vec::new();
    for (hour, folder) in retention::partitions(&dir) {
        let end = hour.0.saturating_add(1).saturating_mul(HOUR_MS);
        if earliest.is_some_and(|e| end <= e) {
            continue;
        }
        let mut names = Vec::new();
        for e in std::fs::read_dir(&folder).with_context(|| format!("{}", folder.display()))? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.ends_with(".parquet") && !name.starts_with('.') {
                names.push(p);
            }
        }
        names.sort();
        out.extend(names);
    }
    Ok(out)
}

/// Reads the live episodes of `opts.mine` and `opts.kinds` that overlap
/// `[opts.from, opts.to)` from the archive's `alerts` stream.
pub fn load_live(archive: &Path, opts: &CompareOptions) -> anyhow::Result<LiveEpisodes> {
    let mut result = LiveEpisodes::default();
    // alert_id → seq → row (a row seen twice counts once).
    let mut by_alert: BTreeMap<String, BTreeMap<i64, TransitionRow>> = BTreeMap::new();
    let wanted = [
        "alert_id",
        "seq",
        "kind",
        "mine",
        "point",
        "started_at",
        "resolved_at",
        "peak",
        "threshold",
        "reason",
    ];
    for path in alert_files(archive, opts.from)? {
        result.files += 1;
        let file = File::open(&path).with_context(|| format!("{}", path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("{} is not a Parquet file", path.display()))?;
        let mask = ProjectionMask::columns(builder.parquet_schema(), wanted);
        let reader = builder
            .with_projection(mask)
            .build()
            .with_context(|| format!("{}", path.display()))?;
        for batch in reader {
            let b = batch.with_context(|| format!("{}", path.display()))?;
            let mut read = || -> anyhow::Result<()> {
                let alert_id = column::<StringArray>(&b, "alert_id")?;
                let seq = column::<Int64Array>(&b, "seq")?;
                let kind = column::<StringArray>(&b, "kind")?;
                let mine = column::<StringArray>(&b, "mine")?;
                let point = column::<StringArray>(&b, "point")?;
                let started = column::<TimestampMillisecondArray>(&b, "started_at")?;
                let resolved = column::<TimestampMillisecondArray>(&b, "resolved_at")?;
                let peak = column::<Float64Array>(&b, "peak")?;
                let threshold = column::<Float64Array>(&b, "threshold")?;
                let reason = column::<StringArray>(&b, "reason")?;
                for i in 0..b.num_rows() {
                    let m = mine.value(i);
                    if opts.mine.as_deref().is_some_and(|x| x != m) {
                        continue;
                    }
                    by_alert
                        .entry(alert_id.value(i).to_string())
                        .or_default()
                        .insert(
                            seq.value(i),
                            TransitionRow {
                                seq: seq.value(i),
                                kind: kind.value(i).to_string(),
                                mine: m.to_string(),
                                point: opt_text(point, i),
                                started_at: started.value(i),
                                resolved_at: (!resolved.is_null(i)).then(|| resolved.value(i)),
                                peak: opt_num(peak, i),
                                threshold: opt_num(threshold, i),
                                reason: opt_text(reason, i),
                            },
                        );
                }
                Ok(())
            };
            read().with_context(|| format!("{} is not an alerts file", path.display()))?;
            result.transitions += b.num_rows() as u64;
        }
    }
    for (alert_id, rows) in by_alert {
        // The last transition holds the latest end and peak.
        let Some(last) = rows.values().max_by_key(|r| r.seq) else {
            continue;
        };
        let Some(kind) = AlertKind::parse(&last.kind) else {
            result.unknown_kinds += 1;
            continue;
        };
        if !opts.kinds.is_empty() && !opts.kinds.contains(&kind) {
            continue;
        }
        let episode = AlertEpisode {
            alert_id,
            kind,
            mine: last.mine.clone(),
            point: last.point.clone(),
            started_at: last.started_at,
            resolved_at: last.resolved_at,
            peak: last.peak,
            threshold: last.threshold,
            reason: last.reason.clone(),
        };
        let starts_before_end = opts.to.is_none_or(|t| episode.started_at < t);
        let ends_after_start = opts
            .from
            .is_none_or(|f| episode.started_at >= f || episode.resolved_at.is_none_or(|e| e > f));
        if starts_before_end && ends_after_start {
            result.episodes.push(episode);
        }
    }
    result.episodes.sort_by(|a, b| {
        (a.started_at, &a.mine, &a.point, a.kind, &a.alert_id).cmp(&(
            b.started_at,
            &b.mine,
            &b.point,
            b.kind,
            &b.alert_id,
        ))
    });
    Ok(result)
}

/// How a replayed and a live episode differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Replay found it, the live daemon did not.
    OnlyReplay,
    /// The live daemon raised it, replay did not find it.
    OnlyLive,
    /// Both have it, starting at different times.
    Start,
    /// Both have it, ending differently.
    End,
    /// Both ended, with different peaks.
    Peak,
    /// Both have it, crossing different thresholds.
    Threshold,
    /// Both have it, raised for different reasons.
    Reason,
}

impl DifferenceKind {
    /// The name printed.
    pub fn key(self) -> &'static str {
        match self {
            DifferenceKind::OnlyReplay => "only_replay",
            DifferenceKind::OnlyLive => "only_live",
            DifferenceKind::Start => "start",
            DifferenceKind::End => "end",
            DifferenceKind::Peak => "peak",
            DifferenceKind::Threshold => "threshold",
            DifferenceKind::Reason => "reason",
        }
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// What differs.
    pub what: DifferenceKind,
    /// The replayed episode.
    pub replay: Option<AlertEpisode>,
    /// The live episode.
    pub live: Option<AlertEpisode>,
}

impl Difference {
    /// The replayed episode, else the live one (every difference has one
    /// or both).
    pub fn episode(&self) -> Option<&AlertEpisode> {
        self.replay.as_ref().or(self.live.as_ref())
    }

    /// (start, mine, point, kind, what): the order differences are listed in.
    fn order(
        &self,
    ) -> (
        Millis,
        &str,
        Option<&str>,
        Option<AlertKind>,
        DifferenceKind,
    ) {
        let e = self.episode();
        (
            e.map_or(Millis::MIN, |e| e.started_at),
            e.map_or("", |e| e.mine.as_str()),
            e.and_then(|e| e.point.as_deref()),
            e.map(|e| e.kind),
            self.what,
        )
    }
}

/// Milliseconds between two times.
fn apart(a: Millis, b: Millis) -> u64 {
    a.abs_diff(b)
}

/// The tolerance for `kind`'s start and end, ms (see the module's text).
pub fn tolerance(kind: AlertKind, tick_ms: i64) -> u64 {
    match kind {
        AlertKind::PointOffline | AlertKind::MineOffline => 2 * tick_ms.max(0) as u64,
        _ => 0,
    }
}

fn overlaps(a: &AlertEpisode, b: &AlertEpisode, tol: u64) -> bool {
    let end = |e: &AlertEpisode| e.resolved_at.unwrap_or(Millis::MAX);
    apart(a.started_at, b.started_at) <= tol || (a.started_at < end(b) && b.started_at < end(a))
}

/// Compares replayed episodes with live ones; the differences, sorted by
/// (start, mine, point, kind, what). `replayed` is filtered by
/// `opts.kinds` here; `live` is taken as [`load_live`] selected it.
pub fn compare(
    replayed: &[AlertEpisode],
    live: &[AlertEpisode],
    opts: &CompareOptions,
) -> Vec<Difference> {
    let replayed: Vec<&AlertEpisode> = replayed
        .iter()
        .filter(|e| opts.kinds.is_empty() || opts.kinds.contains(&e.kind))
        .collect();
    let mut live_by_id: HashMap<&str, &AlertEpisode> =
        live.iter().map(|e| (e.alert_id.as_str(), e)).collect();
    let mut pairs: Vec<(&AlertEpisode, &AlertEpisode)> = Vec::new();
    let mut lone_replay: Vec<&AlertEpisode> = Vec::new();
    for r in replayed {
        match live_by_id.remove(r.alert_id.as_str()) {
            Some(l) => pairs.push((r, l)),
            None => lone_replay.push(r),
        }
    }
    let mut lone_live: Vec<&AlertEpisode> = live
        .iter()
        .filter(|e| live_by_id.contains_key(e.alert_id.as_str()))
        .collect();
    let mut out = Vec::new();
    for r in lone_replay {
        let tol = tolerance(r.kind, opts.tick_ms);
        let partner = lone_live
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                (l.kind, &l.mine, &l.point) == (r.kind, &r.mine, &r.point) && overlaps(r, l, tol)
            })
            .min_by_key(|(_, l)| apart(l.started_at, r.started_at))
            .map(|(i, _)| i);
        match partner {
            Some(i) => pairs.push((r, lone_live.remove(i))),
            None => out.push(Difference {
                what: DifferenceKind::OnlyReplay,
                replay: Some(r.clone()),
                live: None,
            }),
        }
    }
    let cut_at_start = |l: &AlertEpisode| opts.from.is_some_and(|f| l.started_at < f);
    for l in lone_live {
        if !cut_at_start(l) {
            out.push(Difference {
                what: DifferenceKind::OnlyLive,
                replay: None,
                live: Some(l.clone()),
            });
        }
    }
    for (r, l) in pairs {
        let tol = tolerance(r.kind, opts.tick_ms);
        let mut differs = Vec::new();
        if !cut_at_start(l) && apart(r.started_at, l.started_at) > tol {
            differs.push(DifferenceKind::Start);
        }
        // A live end at or after the range's end was not replayed.
        let live_end = l.resolved_at.filter(|e| opts.to.is_none_or(|t| *e < t));
        let ends_agree = match (r.resolved_at, live_end) {
            (None, None) => true,
            (Some(a), Some(b)) => apart(a, b) <= tol,
            _ => false,
        };
        if !ends_agree {
            differs.push(DifferenceKind::End);
        }
        if r.resolved_at.is_some() && live_end.is_some() && r.peak != l.peak {
            differs.push(DifferenceKind::Peak);
        }
        if r.threshold.map(f64::to_bits) != l.threshold.map(f64::to_bits) {
            differs.push(DifferenceKind::Threshold);
        }
        if r.reason != l.reason {
            differs.push(DifferenceKind::Reason);
        }
        for what in differs {
            out.push(Difference {
                what,
                replay: Some(r.clone()),
                live: Some(l.clone()),
            });
        }
    }
    out.sort_by(|a, b| a.order().cmp(&b.order()));
    out
}

/// One difference as printed.
#[derive(Debug, Clone, Serialize)]
struct DifferenceRow {
    /// [`DifferenceKind::key`].
    difference: &'static str,
    /// Alert kind key.
    kind: &'static str,
    /// Mine code.
    mine: String,
    /// Point code.
    point: Option<String>,
    /// The replayed episode's id.
    replay_id: Option<String>,
    /// The live alert's id.
    live_id: Option<String>,
    /// Replayed start, RFC 3339.
    replay_start: Option<String>,
    /// Live start, RFC 3339.
    live_start: Option<String>,
    /// Replayed end, RFC 3339.
    replay_end: Option<String>,
    /// Live end, RFC 3339.
    live_end: Option<String>,
    /// Replayed peak.
    replay_peak: Option<f64>,
    /// Live peak.
    live_peak: Option<f64>,
    /// Replayed threshold.
    replay_threshold: Option<f64>,
    /// Live threshold.
    live_threshold: Option<f64>,
    /// Replayed reason key.
    replay_reason: Option<String>,
    /// Live reason key.
    live_reason: Option<String>,
}

impl DifferenceRow {
    fn of(d: &Difference) -> DifferenceRow {
        let e = d.episode();
        DifferenceRow {
            difference: d.what.key(),
            kind: e.map_or("", |e| e.kind.key()),
            mine: e.map(|e| e.mine.clone()).unwrap_or_default(),
            point: e.and_then(|e| e.point.clone()),
            replay_id: d.replay.as_ref().map(|r| r.alert_id.clone()),
            live_id: d.live.as_ref().map(|l| l.alert_id.clone()),
            replay_start: d.replay.as_ref().map(|r| rfc3339(r.started_at)),
            live_start: d.live.as_ref().map(|l| rfc3339(l.started_at)),
            replay_end: d.replay.as_ref().and_then(|r| r.resolved_at.map(rfc3339)),
            live_end: d.live.as_ref().and_then(|l| l.resolved_at.map(rfc3339)),
            replay_peak: d.replay.as_ref().and_then(|r| r.peak),
            live_peak: d.live.as_ref().and_then(|l| l.peak),
            replay_threshold: d.replay.as_ref().and_then(|r| r.threshold),
            live_threshold: d.live.as_ref().and_then(|l| l.threshold),
            replay_reason: d.replay.as_ref().and_then(|r| r.reason.clone()),
            live_reason: d.live.as_ref().and_then(|l| l.reason.clone()),
        }
    }

    fn cells(&self) -> [String; COLUMNS] {
        let t = |s: &Option<String>| s.clone().unwrap_or_default();
        let n = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        [
            self.difference.to_string(),
            self.kind.to_string(),
            self.mine.clone(),
            t(&self.point),
            t(&self.replay_id),
            t(&self.live_id),
            t(&self.replay_start),
            t(&self.live_start),
            t(&self.replay_end),
            t(&self.live_end),
            n(self.replay_peak),
            n(self.live_peak),
            n(self.replay_threshold),
            n(self.live_threshold),
            t(&self.replay_reason),
            t(&self.live_reason),
        ]
    }
}

const COLUMNS: usize = 16;

const HEADER: [&str; COLUMNS] = [
    "difference",
    "kind",
    "mine",
    "point",
    "replay_id",
    "live_id",
    "replay_start",
    "live_start",
    "replay_end",
    "live_end",
    "replay_peak",
    "live_peak",
    "replay_threshold",
    "live_threshold",
    "replay_reason",
    "live_reason",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Renders differences; the same differences always give the same bytes.
pub fn render(diffs: &[Difference], format: Format) -> String {
    let rows: Vec<DifferenceRow> = diffs.iter().map(DifferenceRow::of).collect();
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into());
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut s = HEADER.join(",");
            s.push('\n');
            for r in &rows {
                let cells: Vec<String> = r.cells().iter().map(|c| csv_field(c)).collect();
                s.push_str(&cells.join(","));
                s.push('\n');
            }
            s
        }
        Format::Table => {
            let cells: Vec<[String; COLUMNS]> = rows.iter().map(DifferenceRow::cells).collect();
            let mut width = HEADER.map(|h| h.chars().count());
            for r in &cells {
                for (w, c) in width.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cols: &[String]| {
                let mut s = String::new();
                for (c, w) in cols.iter().zip(width) {
                    s.push_str(c);
                    s.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
                s.trim_end().to_string() + "\n"
            };
            let mut s = line(&HEADER.map(String::from));
            for r in &cells {
                s.push_str(&line(r));
            }
            s
        }
    }
}

/// A one-line account of a comparison, for stderr.
pub fn summary(replayed: usize, live: usize, diffs: &[Difference]) -> String {
    let mut counts: BTreeMap<DifferenceKind, usize> = BTreeMap::new();
    for d in diffs {
        *counts.entry(d.what).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{} {n}", k.key()))
        .collect();
    if diffs.is_empty() {
        format!("{replayed} replayed and {live} live episodes: no differences")
    } else {
        format!(
            "{replayed} replayed and {live} live episodes: {} differences ({})",
            diffs.len(),
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests;
