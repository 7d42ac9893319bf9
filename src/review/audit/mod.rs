//! `minewatch audit`: did this mine's monitoring data lie? Runs the same
//! detectors over the archive, in event time, as replay does (the same
//! [`replay::feed`]), and writes what an auditor shows in a hearing.
//!
//! 1. **Detect.** The selected hours are fed to one shard core; every
//!    data-anomaly and falsification episode is kept per reason and point
//!    (`FlagRaised` … `FlagCleared`; one still open at the end of the data
//!    is kept open), and every over-limit and evacuation episode is built
//!    by the live alert stage's rules ([`replay::EpisodeBuilder`]).
//! 2. **Evidence.** Each finding gets an evidence window: the episode and
//!    what its detector looked back at to raise it (the hugging window, the
//!    64 readings of the uniform-noise test, the 32 of a replayed window,
//!    the approach before a drop, the neighbours' comparison span). The
//!    readings of a chart window around it (a margin of a quarter of its
//!    length, at least 10 minutes, at most 6 hours, each side) are read
//!    again from the archive — for `neighbours_disagree` also those of the
//!    other points on the air path — and, for `replayed`, every earlier
//!    window of the archive is searched for the repeated values.
//! 3. **Strength.** [`strength::measure`] gives each finding a strength in
//!    [0, 1] from those readings; findings are ranked by it (then by
//!    duration) within each mine and point, points and mines by their
//!    strongest finding.
//! 4. **YCBJ.** The `exceptions` stream is read; at mines that owe
//!    exception reports (readings from national files, or any YCBJ record)
//!    each over-limit / evacuation episode is checked against the reports
//!    with [`ExceptionRecord::covers`], the rule `/api/exceptions/unreported`
//!    uses; the ones no 001/002 report covers are listed, with a chart.
//!
//! [`write_outputs`] then writes `report.html`, `findings.csv`,
//! `findings.json` and `unreported.csv` ([`html`], [`export`]). Nothing in
//! them comes from the wall clock: the same archive and options give the
//! same bytes. Files that cannot be read are skipped, listed in the report
//! and on stderr, and the audit goes on.

pub mod export;
pub mod html;
pub mod strength;
mod windows;
pub mod ycbj;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;

use super::replay::{self, ArchivedReading, EpisodeBuilder, ReplayOptions, SkippedFile};
use crate::config::{PointMeta, Registry};
use crate::ingest::netfile::ExceptionRecord;
use crate::ingest::netfile::exceptions::FEED_ABNORMAL_TYPE;
use crate::model::{AlertKind, Finding, Flag, LocationClass, Millis, PointIdx, stable_hash};
use strength::{Context, Measured, ReplaySource, Window};

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The archive, time range, mine and tick period (as for replay).
    pub replay: ReplayOptions,
    /// The config file the registry came from, as given (for the report
    /// header); none when the archive supplied the points.
    pub config: Option<String>,
}

/// One data-anomaly or falsification finding: one reason at one point from
/// its raise to its clear.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditFinding {
    /// `stable_hash(reason, mine, point, from)` as 16 hex digits.
    pub id: String,
    /// Rank within its mine and point (1 = strongest).
    pub rank: usize,
    /// Mine code.
    pub mine: String,
    /// Mine name.
    pub mine_name: String,
    /// Point code.
    pub point: String,
    /// Four-digit sensor type code.
    pub sensor: String,
    /// Location class (config name).
    pub location: &'static str,
    /// Install location in words.
    pub place: String,
    /// Unit of the values.
    pub unit: String,
    /// `data_anomaly` or `falsification_suspect`.
    pub kind: AlertKind,
    /// The rule (`hugging`, `replayed`, …).
    pub reason: &'static str,
    /// The rule in Chinese.
    pub reason_zh: &'static str,
    /// Raised at (event time).
    #[serde(serialize_with = "ser_time")]
    pub from: Millis,
    /// Cleared at (event time); none when still open at the end of the
    /// audited data.
    #[serde(serialize_with = "ser_opt_time")]
    pub to: Option<Millis>,
    /// `to` − `from` (to the point's last reading while open), seconds.
    pub duration_s: f64,
    /// Start of the evidence window the strength is computed over.
    #[serde(serialize_with = "ser_time")]
    pub window_from: Millis,
    /// End (excluded) of the evidence window.
    #[serde(serialize_with = "ser_time")]
    pub window_to: Millis,
    /// Strength in [0, 1] (see [`strength`]).
    pub strength: f64,
    /// Readings of the point in the evidence window.
    pub readings: usize,
    /// The value the detector raised it with, where one applies.
    pub value: Option<f64>,
    /// The point's alarm level, if it has one.
    pub alarm: Option<f64>,
    /// Its power-off level, if any.
    pub power_off: Option<f64>,
    /// Its restore level, if any.
    pub restore: Option<f64>,
    /// The figures behind the strength, in English.
    pub detail: String,
    /// The same, in Chinese.
    pub detail_zh: String,
    /// For an `interlock` finding at a mine that owes exception reports:
    /// whether a 003 (feed abnormal) report of the point covers it; else
    /// `not_applicable`.
    pub ycbj: Reported,
    /// Files of the 003 reports that cover it.
    pub reported_by: Vec<String>,
    /// Registry index of the point (not exported).
    #[serde(skip)]
    pub point_idx: PointIdx,
}

/// Whether an over-limit episode (or an `interlock` finding) was reported
/// in a YCBJ file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reported {
    /// A report covers it: 001/002 for an over-limit episode, 003 (feed
    /// abnormal) for an interlock finding.
    Reported,
    /// The mine owes reports and none covers it.
    Unreported,
    /// The mine sends no national files: no report is owed.
    NotApplicable,
}

/// One over-limit or evacuation episode and its YCBJ cross-check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverLimitEpisode {
    /// The live alert's id (`stable_hash(kind, mine, point, started)`).
    pub alert_id: String,
    /// `overlimit` or `evacuation`.
    pub kind: AlertKind,
    /// Mine code.
    pub mine: String,
    /// Point code.
    pub point: String,
    /// Start (event time of the first reading at the level).
    #[serde(serialize_with = "ser_time")]
    pub started_at: Millis,
    /// End, if it ended within the audited data.
    #[serde(serialize_with = "ser_opt_time")]
    pub resolved_at: Option<Millis>,
    /// `resolved_at` − `started_at` (to the point's last reading while
    /// open), seconds.
    pub duration_s: f64,
    /// Highest value.
    pub peak: Option<f64>,
    /// The level crossed.
    pub threshold: Option<f64>,
    /// The YCBJ cross-check.
    pub ycbj: Reported,
    /// Files of the reports that cover it.
    pub reported_by: Vec<String>,
    /// Registry index of the point (not exported).
    #[serde(skip)]
    pub point_idx: PointIdx,
}

/// A horizontal line drawn across a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// Label in Chinese.
    pub zh: &'static str,
    /// Label in English.
    pub en: &'static str,
    /// Where.
    pub value: f64,
}

/// One series of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Point code.
    pub label: String,
    /// The point's own readings (false: a neighbour drawn for comparison).
    pub main: bool,
    /// Readings, sorted by event time.
    pub readings: Vec<ArchivedReading>,
}

/// What a chart shows: a window of readings with its levels and spans.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Anchor id (a finding's id, or `e-` and an episode's alert id).
    pub id: String,
    /// The time axis `[from, to)`.
    pub from: Millis,
    /// End of the time axis.
    pub to: Millis,
    /// The suspicious span, shaded.
    pub shade: (Millis, Millis),
    /// The evidence window (lightly shaded where it reaches before the
    /// suspicious span).
    pub evidence: (Millis, Millis),
    /// Levels to draw.
    pub levels: Vec<Level>,
    /// Series to draw (the point's own first).
    pub series: Vec<Series>,
    /// Unit of the values.
    pub unit: String,
    /// Decimals of the value axis labels.
    pub decimals: usize,
}

/// Everything an audit found.
#[derive(Debug, Clone)]
pub struct Audit {
    /// The archive root, as given.
    pub archive: String,
    /// First event time audited, if limited.
    pub from: Option<Millis>,
    /// First event time not audited, if limited.
    pub to: Option<Millis>,
    /// The mine audited, if limited.
    pub mine: Option<String>,
    /// The config file, as given.
    pub config: Option<String>,
    /// Readings fed to the detectors.
    pub readings: u64,
    /// Parquet files of `readings` read.
    pub files: usize,
    /// Readings of points the registry does not know.
    pub unknown_points: u64,
    /// First and last event time seen.
    pub span: Option<(Millis, Millis)>,
    /// Files that could not be read (skipped), by path.
    pub skipped: Vec<SkippedFile>,
    /// Mines audited (code, name), in code order.
    pub mines: Vec<(String, String)>,
    /// Findings, ranked: mines by strongest finding, then their points,
    /// then the point's findings.
    pub findings: Vec<AuditFinding>,
    /// Over-limit and evacuation episodes, by (mine, start, point, kind).
    pub episodes: Vec<OverLimitEpisode>,
    /// Mines that owe YCBJ reports.
    pub owing: BTreeSet<String>,
    /// YCBJ records read from the `exceptions` stream.
    pub exceptions: usize,
    /// Charts by id.
    pub charts: BTreeMap<String, Chart>,
}

impl Audit {
    /// The episodes no report covers.
    pub fn unreported(&self) -> impl Iterator<Item = &OverLimitEpisode> {
        self.episodes
            .iter()
            .filter(|e| e.ycbj == Reported::Unreported)
    }
}

fn ser_time<S: serde::Serializer>(t: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::model::rfc3339(*t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crate::model::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// One reason's episode at one point as the detectors raised it.
#[derive(Debug, Clone, Copy)]
struct Raised {
    point: PointIdx,
    flag: Flag,
    from: Millis,
    to: Option<Millis>,
    value: f64,
}

/// Keeps data-anomaly and falsification episodes per (point, reason).
#[derive(Default)]
struct FlagEpisodes {
    open: HashMap<(PointIdx, Flag), usize>,
    all: Vec<Raised>,
}

impl FlagEpisodes {
    fn apply(&mut self, f: &Finding) {
        match *f {
            Finding::FlagRaised {
                point,
                ts,
                flag,
                value,
            } => {
                if let std::collections::hash_map::Entry::Vacant(e) = self.open.entry((point, flag))
                {
                    e.insert(self.all.len());
                    self.all.push(Raised {
                        point,
                        flag,
                        from: ts,
                        to: None,
                        value,
                    });
                }
            }
            Finding::FlagCleared { point, ts, flag } => {
                if let Some(i) = self.open.remove(&(point, flag)) {
                    self.all[i].to = Some(ts.max(self.all[i].from));
                }
            }
            _ => {}
        }
    }
}

const MINUTE: Millis = 60_000;

/// How far before the raise a detector looked, for the evidence window.
fn lookback(flag: Flag, meta: &PointMeta, cfg: &crate::config::detect::DetectConfig) -> Millis {
    let poll = meta.polling_ms.max(1000);
    match flag {
        Flag::Hugging => 1000 * cfg.hug_window_secs as i64,
        Flag::UniformNoise => crate::detect::falsify::RING as i64 * poll,
        Flag::Replayed => crate::detect::replay::WINDOW as i64 * poll,
        Flag::DropAfterApproach => 1000 * cfg.approach_secs as i64,
        Flag::NeighboursDisagree => {
            i64::from(cfg.neighbours_window_mins + cfg.neighbours_max_lag_mins + 3) * MINUTE
        }
        Flag::Spike => strength::BASELINE_MS,
        Flag::Rate => 2 * poll,
        Flag::Dither => i64::from(cfg.dither_min_readings) * poll,
        Flag::Offset => i64::from(cfg.offset_confirm_mins + 10) * MINUTE,
        Flag::Sensitivity => {
            i64::from(cfg.neighbours_window_mins + cfg.neighbours_max_lag_mins + 3) * MINUTE
        }
        Flag::OutOfRange | Flag::FlatLine | Flag::Timestamp | Flag::Interlock => 0,
    }
}

/// The margin drawn each side of a window of `len` ms.
fn margin(len: Millis) -> Millis {
    (len / 4).clamp(10 * MINUTE, 360 * MINUTE)
}

/// The other methane points on `point`'s air path (as the shard groups
/// them: face T0/T1/T2 and heading T1/T2 points of one mine with the same
/// path number, paths of three or more).
fn neighbours_of(registry: &Registry, point: PointIdx) -> Vec<PointIdx> {
    let on_path = |m: &PointMeta| {
        matches!(
            m.location,
            LocationClass::FaceT0
                | LocationClass::FaceT1
                | LocationClass::FaceT2
                | LocationClass::HeadingT1
                | LocationClass::HeadingT2
        ) && m.sensor.is_ambient_methane()
            && m.air_path.is_some()
    };
    let Some(meta) = registry.points.get(point as usize) else {
        return Vec::new();
    };
    if !on_path(meta) {
        return Vec::new();
    }
    let Some(mine) = registry.mines.get(meta.mine as usize) else {
        return Vec::new();
    };
    let members: Vec<PointIdx> = mine
        .points
        .iter()
        .copied()
        .filter(|&p| {
            let m = &registry.points[p as usize];
            on_path(m) && m.air_path == meta.air_path
        })
        .collect();
    if members.len() < 3 {
        return Vec::new();
    }
    members.into_iter().filter(|&p| p != point).collect()
}

/// Runs the audit over `registry` (from the config, or see
/// [`replay::registry_from_archive`]). `skipped` are files already found
/// unreadable (while building the registry). Fails on an empty range.
pub fn run(
    opts: &AuditOptions,
    registry: Registry,
    skipped: Vec<SkippedFile>,
) -> anyhow::Result<Audit> {
    let mut ropts = opts.replay.clone();
    ropts.skip_unreadable = true;
    ropts.sources = true;
    let registry = Arc::new(registry);
    let cfg = registry.detect.clone();

    // 1. Detect.
    let mut flags = FlagEpisodes::default();
    let mut builder = EpisodeBuilder::default();
    let mut last_ts: Vec<Millis> = vec![Millis::MIN; registry.points.len()];
    let fed = replay::feed(
        &ropts,
        registry.clone(),
        |_| {},
        |batch| {
            for r in batch.readings {
                if let Some(t) = last_ts.get_mut(r.point as usize) {
                    *t = (*t).max(r.ts);
                }
            }
            for f in batch.findings {
                flags.apply(f);
                builder.apply(&registry, f);
            }
        },
    )?;
    if fed.readings == 0 {
        let range = match (opts.replay.from, opts.replay.to) {
            (None, None) => "at all".to_string(),
            (f, t) => format!(
                "between {} and {}",
                f.map_or("the start".into(), crate::model::rfc3339),
                t.map_or("the end".into(), crate::model::rfc3339)
            ),
        };
        let mine = opts
            .replay
            .mine
            .as_ref()
            .map_or(String::new(), |m| format!(" of mine {m}"));
        anyhow::bail!(
            "the archive {} holds no readings{mine} {range}: nothing to audit; check --archive, --from/--to (RFC 3339, a UTC date or epoch ms) and --mine",
            opts.replay.archive.display()
        );
    }
    let mut skipped_all = skipped;
    skipped_all.extend(fed.skipped.iter().cloned());
    let end_of = |p: PointIdx, from: Millis| -> Millis {
        last_ts
            .get(p as usize)
            .copied()
            .unwrap_or(from)
            .max(from)
            .saturating_add(1)
    };

    // Over-limit episodes.
    let mut episodes: Vec<OverLimitEpisode> = builder
        .finish()
        .into_iter()
        .filter(|e| matches!(e.kind, AlertKind::Overlimit | AlertKind::Evacuation))
        .filter_map(|e| {
            let point = e.point.clone()?;
            let idx = registry.point(&point)?;
            let end = e
                .resolved_at
                .unwrap_or_else(|| end_of(idx, e.started_at) - 1);
            Some(OverLimitEpisode {
                alert_id: e.alert_id,
                kind: e.kind,
                mine: e.mine,
                point,
                started_at: e.started_at,
                resolved_at: e.resolved_at,
                duration_s: (end - e.started_at) as f64 / 1000.0,
                peak: e.peak,
                threshold: e.threshold,
                ycbj: Reported::NotApplicable,
                reported_by: Vec::new(),
                point_idx: idx,
            })
        })
        .collect();
    episodes.sort_by(|a, b| {
        (&a.mine, a.started_at, &a.point, a.kind, &a.alert_id).cmp(&(
            &b.mine,
            b.started_at,
            &b.point,
            b.kind,
            &b.alert_id,
        ))
    });

    // 4. YCBJ (before reading windows: unreported episodes get charts).
    let reports = ycbj::read(
        &opts.replay.archive,
        opts.replay.mine.as_deref(),
        &mut skipped_all,
    );
    let mut owing: BTreeSet<String> = fed
        .netfile_mines
        .iter()
        .filter_map(|m| registry.mines.get(*m as usize).map(|m| m.code.clone()))
        .collect();
    owing.extend(reports.iter().map(|r| r.mine.clone()));
    let records: Vec<ExceptionRecord> = reports.iter().map(ExceptionRecord::from).collect();
    for e in &mut episodes {
        if !owing.contains(&e.mine) {
            continue;
        }
        let mut by: Vec<String> = records
            .iter()
            .filter(|r| r.covers(&e.point, e.started_at, e.resolved_at))
            .map(|r| r.file.clone())
            .collect();
        by.sort();
        by.dedup();
        e.ycbj = if by.is_empty() {
            Reported::Unreported
        } else {
            Reported::Reported
        };
        e.reported_by = by;
    }

    // 2. Evidence windows and the readings around them.
    struct Pending {
        raised: Raised,
        end: Millis,
        evidence: (Millis, Millis),
        chart: (Millis, Millis),
        neighbours: Vec<PointIdx>,
    }
    let mut pending = Vec::new();
    for r in &flags.all {
        let Some(meta) = registry.points.get(r.point as usize) else {
            continue;
        };
        let end = r.to.unwrap_or_else(|| end_of(r.point, r.from));
        let wf = r.from - lookback(r.flag, meta, &cfg);
        let m = margin(end - wf);
        let neighbours = if matches!(
            r.flag,
            Flag::NeighboursDisagree | Flag::Offset | Flag::Sensitivity
        ) {
            neighbours_of(&registry, r.point)
        } else {
            Vec::new()
        };
        pending.push(Pending {
            raised: *r,
            end,
            evidence: (wf, end),
            chart: (wf - m, end + m),
            neighbours,
        });
    }
    let mut requests = Vec::new();
    // Each finding's own request; its neighbours' follow it.
    let mut index = Vec::with_capacity(pending.len());
    for p in &pending {
        index.push(requests.len());
        requests.push(windows::Request {
            point: p.raised.point,
            from: p.chart.0,
            to: p.chart.1,
        });
        for &n in &p.neighbours {
            requests.push(windows::Request {
                point: n,
                from: p.chart.0,
                to: p.chart.1,
            });
        }
    }
    let unreported: Vec<usize> = episodes
        .iter()
        .enumerate()
        .filter(|(_, e)| e.ycbj == Reported::Unreported)
        .map(|(i, _)| i)
        .collect();
    let episode_span = |e: &OverLimitEpisode| {
        let end = e
            .resolved_at
            .unwrap_or_else(|| end_of(e.point_idx, e.started_at));
        let m = margin(end - e.started_at);
        (e.started_at, end, e.started_at - m, end + m)
    };
    for &i in &unreported {
        let (_, _, cf, ct) = episode_span(&episodes[i]);
        requests.push(windows::Request {
            point: episodes[i].point_idx,
            from: cf,
            to: ct,
        });
    }
    let (mut collected, more_skipped) = windows::collect(&ropts, &registry, &requests)?;
    skipped_all.extend(more_skipped);

    // Replayed findings: search the archive for the repeated windows.
    let targets: Vec<windows::ReplayTarget> = pending
        .iter()
        .enumerate()
        .filter(|(_, p)| p.raised.flag == Flag::Replayed)
        .map(|(i, p)| windows::ReplayTarget {
            finding: i,
            point: p.raised.point,
            readings: collected[index[i]]
                .iter()
                .filter(|r| r.ts >= p.evidence.0 && r.ts < p.evidence.1)
                .copied()
                .collect(),
        })
        .collect();
    let sources: HashMap<usize, ReplaySource> = if targets.is_empty() {
        HashMap::new()
    } else {
        let (found, more) = windows::match_replays(&ropts, &registry, &targets)?;
        skipped_all.extend(more);
        found
    };

    // 3. Strength, charts.
    let mut findings = Vec::new();
    let mut charts = BTreeMap::new();
    for (i, p) in pending.iter().enumerate() {
        let r = p.raised;
        let meta = &registry.points[r.point as usize];
        let Some(mine) = registry.mines.get(meta.mine as usize) else {
            continue;
        };
        let own = std::mem::take(&mut collected[index[i]]);
        let neighbour_readings: Vec<(String, Vec<ArchivedReading>)> = p
            .neighbours
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                (
                    registry.points[n as usize].code.clone(),
                    std::mem::take(&mut collected[index[i] + 1 + k]),
                )
            })
            .collect();
        let context = match r.flag {
            Flag::NeighboursDisagree => Context::Neighbours(&neighbour_readings),
            Flag::Replayed => Context::Replay(sources.get(&i)),
            _ => Context::None,
        };
        let window = Window {
            readings: &own,
            evidence: p.evidence,
            episode: (r.from, p.end),
        };
        let Measured {
            strength,
            detail,
            detail_zh,
            readings,
        } = strength::measure(r.flag, meta, &cfg, &window, context);
        let id = format!(
            "{:016x}",
            stable_hash(&[
                r.flag.key().as_bytes(),
                mine.code.as_bytes(),
                meta.code.as_bytes(),
                &r.from.to_le_bytes(),
            ])
        );
        let shown_end = r.to.unwrap_or(p.end - 1);
        // A defeated interlock the mine itself reported (003) or kept quiet.
        let (ycbj, reported_by) = if r.flag == Flag::Interlock && owing.contains(&mine.code) {
            let mut by: Vec<String> = records
                .iter()
                .filter(|x| x.covers_as(&[FEED_ABNORMAL_TYPE], &meta.code, r.from, r.to))
                .map(|x| x.file.clone())
                .collect();
            by.sort();
            by.dedup();
            let reported = if by.is_empty() {
                Reported::Unreported
            } else {
                Reported::Reported
            };
            (reported, by)
        } else {
            (Reported::NotApplicable, Vec::new())
        };
        findings.push(AuditFinding {
            id: id.clone(),
            rank: 0,
            mine: mine.code.clone(),
            mine_name: mine.name.clone(),
            point: meta.code.clone(),
            sensor: meta.sensor.code_text(),
            location: meta.location.key(),
            place: meta.place.clone(),
            unit: meta.unit.clone(),
            kind: r.flag.kind(),
            reason: r.flag.key(),
            reason_zh: r.flag.zh(),
            from: r.from,
            to: r.to,
            duration_s: (shown_end - r.from) as f64 / 1000.0,
            window_from: p.evidence.0,
            window_to: p.evidence.1,
            strength,
            readings,
            value: r.value.is_finite().then_some(r.value),
            alarm: meta.limits.map(|l| l.alarm),
            power_off: meta.limits.and_then(|l| l.power_off),
            restore: meta.limits.map(|l| l.restore),
            detail,
            detail_zh,
            ycbj,
            reported_by,
            point_idx: r.point,
        });
        let mut series = vec![Series {
            label: meta.code.clone(),
            main: true,
            readings: own,
        }];
        for (label, readings) in neighbour_readings {
            series.push(Series {
                label,
                main: false,
                readings,
            });
        }
        charts.insert(
            id.clone(),
            Chart {
                id,
                from: p.chart.0,
                to: p.chart.1,
                shade: (r.from, p.end),
                evidence: p.evidence,
                levels: levels(meta, r.flag, &cfg),
                series,
                unit: meta.unit.clone(),
                decimals: strength::decimals(meta, &cfg),
            },
        );
    }
    let base = requests.len() - unreported.len();
    for (k, &i) in unreported.iter().enumerate() {
        let e = &episodes[i];
        let meta = &registry.points[e.point_idx as usize];
        let (from, end, cf, ct) = episode_span(e);
        let id = format!("e-{}", e.alert_id);
        charts.insert(
            id.clone(),
            Chart {
                id,
                from: cf,
                to: ct,
                shade: (from, end),
                evidence: (from, end),
                levels: levels(meta, Flag::Interlock, &cfg),
                series: vec![Series {
                    label: meta.code.clone(),
                    main: true,
                    readings: std::mem::take(&mut collected[base + k]),
                }],
                unit: meta.unit.clone(),
                decimals: strength::decimals(meta, &cfg),
            },
        );
    }
    rank(&mut findings);

    skipped_all.sort_by(|a, b| a.path.cmp(&b.path));
    skipped_all.dedup_by(|a, b| a.path == b.path);
    let mines = registry
        .mines
        .iter()
        .filter(|m| opts.replay.mine.as_ref().is_none_or(|x| *x == m.code))
        .map(|m| (m.code.clone(), m.name.clone()))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    Ok(Audit {
        archive: opts.replay.archive.display().to_string(),
        from: opts.replay.from,
        to: opts.replay.to,
        mine: opts.replay.mine.clone(),
        config: opts.config.clone(),
        readings: fed.readings,
        files: fed.files,
        unknown_points: fed.unknown_points,
        span: fed.span,
        skipped: skipped_all,
        mines,
        findings,
        episodes,
        owing,
        exceptions: reports.len(),
        charts,
    })
}

/// The levels drawn on a chart of `flag` at `meta`: alarm, power-off and
/// restore where the point has them; the hugging band's lower edge for
/// hugging.
fn levels(meta: &PointMeta, flag: Flag, cfg: &crate::config::detect::DetectConfig) -> Vec<Level> {
    let mut out = Vec::new();
    if let Some(l) = meta.limits {
        out.push(Level {
            zh: "报警",
            en: "alarm",
            value: l.alarm,
        });
        if let Some(p) = l.power_off {
            out.push(Level {
                zh: "断电",
                en: "power-off",
                value: p,
            });
        }
        if (l.restore - l.alarm).abs() > 1e-9 {
            out.push(Level {
                zh: "复电",
                en: "restore",
                value: l.restore,
            });
        }
        if flag == Flag::Hugging {
            out.push(Level {
                zh: "贴线带下沿",
                en: "hugging band",
                value: cfg.hug_band * l.alarm,
            });
        }
    }
    out
}

/// Orders findings: mines by their strongest finding, their points by
/// theirs, each point's findings by strength, then duration, then start;
/// numbers the ranks within each point.
pub fn rank(findings: &mut [AuditFinding]) {
    let key = |f: &AuditFinding| (f.mine.clone(), f.point.clone());
    let mut best_point: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut best_mine: BTreeMap<String, f64> = BTreeMap::new();
    for f in findings.iter() {
        let p = best_point.entry(key(f)).or_insert(f64::MIN);
        *p = p.max(f.strength);
        let m = best_mine.entry(f.mine.clone()).or_insert(f64::MIN);
        *m = m.max(f.strength);
    }
    findings.sort_by(|a, b| {
        let (ma, mb) = (best_mine[&a.mine], best_mine[&b.mine]);
        let (pa, pb) = (best_point[&key(a)], best_point[&key(b)]);
        mb.total_cmp(&ma)
            .then_with(|| a.mine.cmp(&b.mine))
            .then_with(|| pb.total_cmp(&pa))
            .then_with(|| a.point.cmp(&b.point))
            .then_with(|| b.strength.total_cmp(&a.strength))
            .then_with(|| b.duration_s.total_cmp(&a.duration_s))
            .then_with(|| a.from.cmp(&b.from))
            .then_with(|| a.reason.cmp(b.reason))
    });
    let mut last: Option<(String, String)> = None;
    let mut n = 0;
    for f in findings.iter_mut() {
        let k = key(f);
        if last.as_ref() != Some(&k) {
            n = 0;
            last = Some(k);
        }
        n += 1;
        f.rank = n;
    }
}

/// Writes `report.html`, `findings.csv`, `findings.json` and
/// `unreported.csv` into `out` (created if needed); returns their paths.
pub fn write_outputs(audit: &Audit, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let files = [
        ("report.html", html::render(audit)),
        ("findings.csv", export::findings_csv(&audit.findings)),
        ("findings.json", export::json(audit)),
        ("unreported.csv", export::unreported_csv(audit)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = out.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}; is --out writable?", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
