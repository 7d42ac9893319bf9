//! Scoring of the detectors on the labelled scenarios: the data-anomaly and
//! falsification detectors on [`crate::simulators::labelled`] (readings),
//! the electricity-use and seal detectors on
//! [`crate::simulators::activity_labelled`] (power, seal and monitoring
//! messages). Each scenario goes, one record or message at a time in
//! arrival order, through the same [`ShardCore`] the daemon runs (no
//! broker, no clock: event time and the arrival times only); activity
//! messages are decoded by the daemon's own decoders first, and
//! `ShardCore::tick` is driven every second of arrival time (as the
//! daemon's `tick_ms` does) so the silence rules run. The episodes that
//! come out are matched to the labels.
//!
//! - An episode of detector D is the span between its raise and its clear
//!   for one subject (a point; a mine, its power feed or a camera): one
//!   alert episode per subject and reason. It is a true positive when it
//!   overlaps a label of D on that subject, with the label's end extended
//!   by [`SLACK_MS`] (rules that confirm over a window clear after the
//!   pattern ends).
//! - Precision: true-positive episodes / episodes of D on D's scenario.
//!   Recall: labels of D overlapped by an episode of D / labels of D.
//!   Time to detect: arrival time of the record (or tick) that raised the
//!   first matching episode minus the label's start (0 when raised
//!   earlier).
//! - On `normal` (readings) and `activity_normal` (messages) every episode
//!   is false: false alerts per mine-day are counted per detector and per
//!   alert kind the way the alert stage raises them (one alert per subject
//!   and kind while any reason is open), with over-limit, evacuation and
//!   offline alerts beside them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::alert::{Change, EpisodeTracker, subject_code};
use crate::config::{IngestConfig, Registry};
use crate::ingest::Decoder;
use crate::model::{Activity, AlertKind, Finding, Flag, Millis, MineIdx, Subject};
use crate::pipeline::{Payload, ShardCore};
use crate::simulators::activity_labelled::{
    ACTIVITY_SCENARIOS, ActivityGenerated, Feed, Message, generate as generate_activity,
};
use crate::simulators::labelled::{Generated, Label, SCENARIOS, Size, generate};

/// How long after a label's end an episode still matches it.
pub const SLACK_MS: Millis = 15 * 60_000;

/// The fixed seed of every scored scenario.
pub const SEED: u64 = 2026;

/// Processing-time step of the ticks driven along an activity scenario
/// (the daemon's default `daemon.tick_ms`).
pub const TICK_MS: Millis = 1000;

/// A scored rule: a data-anomaly / falsification flag or an
/// electricity-use / seal reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// A point detector's rule.
    Flag(Flag),
    /// A power or seal detector's rule.
    Activity(Activity),
}

impl Detector {
    /// Every detector: the flags, then the activity reasons.
    pub fn all() -> impl Iterator<Item = Detector> {
        Flag::ALL
            .into_iter()
            .map(Detector::Flag)
            .chain(Activity::ALL.into_iter().map(Detector::Activity))
    }

    /// The `reason` key, as labels and alerts name it.
    pub fn key(self) -> &'static str {
        match self {
            Detector::Flag(f) => f.key(),
            Detector::Activity(a) => a.key(),
        }
    }

    /// The alert kind it raises.
    pub fn kind(self) -> AlertKind {
        match self {
            Detector::Flag(f) => f.kind(),
            Detector::Activity(a) => a.kind(),
        }
    }

    /// The scenario that exercises it.
    pub fn scenario(self) -> &'static str {
        match self {
            Detector::Flag(f) => scenario_of(f),
            Detector::Activity(a) => activity_scenario_of(a),
        }
    }

    /// The scenario whose episodes count as false alerts for it.
    pub fn normal_scenario(self) -> &'static str {
        match self {
            Detector::Flag(_) => "normal",
            Detector::Activity(_) => "activity_normal",
        }
    }
}

/// One episode of one detector at one subject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    /// Mine.
    pub mine: MineIdx,
    /// What in the mine (a point for the flags).
    pub subject: Subject,
    /// Which rule.
    pub detector: Detector,
    /// Event time the episode starts at (processing time for silences).
    pub start: Millis,
    /// Event time it ended at (the scenario's end while still open).
    pub end: Millis,
    /// Arrival time of the record (or tick) that raised it.
    pub detected: Millis,
}

/// What one scenario produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Episodes of every detector.
    pub episodes: Vec<Episode>,
    /// Alerts the alert stage would raise, by kind.
    pub alerts: HashMap<AlertKind, usize>,
    /// Readings processed (point readings, or for an activity scenario
    /// messages).
    pub readings: usize,
    /// Records the decoders refused (activity scenarios).
    pub rejected: usize,
}

/// Turns findings into episodes and alert counts.
pub(crate) struct Recorder {
    registry: Arc<Registry>,
    open: HashMap<(Detector, MineIdx, Subject), usize>,
    tracker: EpisodeTracker,
    changes: Vec<Change>,
    o: Outcome,
}

impl Recorder {
    pub(crate) fn new(registry: Arc<Registry>) -> Recorder {
        Recorder {
            registry,
            open: HashMap::new(),
            tracker: EpisodeTracker::grouping(),
            changes: Vec::new(),
            o: Outcome::default(),
        }
    }

    /// Records the findings of something that arrived at `at`.
    pub(crate) fn record(&mut self, findings: &[Finding], at: Millis) {
        self.tracker.advance(&self.registry, at, &mut self.changes);
        for f in findings {
            // Alerts are counted by the live alert stage's own rules.
            self.tracker.apply(&self.registry, f, &mut self.changes);
            let (key, raised) = match *f {
                Finding::FlagRaised {
                    point, ts, flag, ..
                } => match self.registry.points.get(point as usize) {
                    Some(p) => (
                        (Detector::Flag(flag), p.mine, Subject::Point(point)),
                        Some(ts),
                    ),
                    None => continue,
                },
                Finding::FlagCleared { point, ts, flag } => {
                    match self.registry.points.get(point as usize) {
                        Some(p) => {
                            self.clear((Detector::Flag(flag), p.mine, Subject::Point(point)), ts);
                            continue;
                        }
                        None => continue,
                    }
                }
                Finding::ActivityRaised {
                    mine,
                    subject,
                    ts,
                    reason,
                    ..
                } => ((Detector::Activity(reason), mine, subject), Some(ts)),
                Finding::ActivityCleared {
                    mine,
                    subject,
                    ts,
                    reason,
                } => {
                    self.clear((Detector::Activity(reason), mine, subject), ts);
                    continue;
                }
                _ => continue,
            };
            if let Some(ts) = raised {
                if self.open.contains_key(&key) {
                    continue;
                }
                self.open.insert(key, self.o.episodes.len());
                self.o.episodes.push(Episode {
                    mine: key.1,
                    subject: key.2,
                    detector: key.0,
                    start: ts,
                    end: Millis::MAX,
                    detected: at,
                });
            }
        }
        for c in self.changes.drain(..) {
            if let Change::Open { key, .. } = c {
                *self.o.alerts.entry(key.0).or_insert(0) += 1;
            }
        }
    }

    fn clear(&mut self, key: (Detector, MineIdx, Subject), ts: Millis) {
        if let Some(i) = self.open.remove(&key) {
            self.o.episodes[i].end = ts.max(self.o.episodes[i].start);
        }
    }

    /// The outcome, episodes still open ending at `last`.
    pub(crate) fn finish(mut self, last: Millis) -> Outcome {
        for e in &mut self.o.episodes {
            if e.end == Millis::MAX {
                e.end = last;
            }
        }
        self.o
    }
}

/// Runs a generated readings scenario through one shard.
pub fn run(g: &Generated) -> Outcome {
    let registry = Arc::new(Registry::build(&g.province, 1));
    let first = g.readings.first().map_or(0, |d| d.arrival);
    let mut core = ShardCore::new(registry.clone(), 0, first);
    let mut out = Vec::new();
    let mut rec = Recorder::new(registry);
    let mut last = first;
    for d in &g.readings {
        out.clear();
        core.process(std::slice::from_ref(&d.reading), d.arrival, &mut out);
        last = last.max(d.reading.ts);
        rec.record(&out, d.arrival);
    }
    let mut o = rec.finish(last);
    o.readings = g.readings.len();
    o
}

/// Decodes one message of an activity scenario the way the daemon's MQTT
/// source would: the records, and how many were rejected.
pub fn decode_message(decoder: &Decoder, registry: &Registry, msg: &Message) -> (Payload, usize) {
    let code = &registry.mines[msg.mine].code;
    match msg.feed {
        Feed::Telemetry => {
            let d = decoder.decode_telemetry(code, &msg.payload, msg.arrival);
            (Payload::Readings(d.records), d.rejects.len())
        }
        Feed::Power => {
            let d = decoder.decode_power(code, &msg.payload, msg.arrival);
            (Payload::Power(d.records), d.rejects.len())
        }
        Feed::Seal => {
            let d = decoder.decode_seal(code, &msg.payload, msg.arrival);
            (Payload::Seal(d.records), d.rejects.len())
        }
    }
}

/// Runs a generated activity scenario through the decoders and one shard,
/// ticking it every [`TICK_MS`] of arrival time.
pub fn run_messages(g: &ActivityGenerated) -> Outcome {
    let registry = Arc::new(Registry::build(&g.province, 1));
    let decoder = Decoder::new(registry.clone(), &IngestConfig::default(), 1 << 20);
    let first = g.messages.first().map_or(0, |m| m.arrival);
    let mut core = ShardCore::new(registry.clone(), 0, first);
    let mut out = Vec::new();
    let mut rec = Recorder::new(registry.clone());
    let mut rejected = 0;
    let mut tick = first + TICK_MS;
    let mut last = first;
    for msg in &g.messages {
        while tick <= msg.arrival {
            out.clear();
            core.tick(tick, &mut out);
            rec.record(&out, tick);
            tick += TICK_MS;
        }
        let (payload, rejects) = decode_message(&decoder, &registry, msg);
        rejected += rejects;
        out.clear();
        core.process_payload(&payload, msg.arrival, &mut out);
        rec.record(&out, msg.arrival);
        last = last.max(msg.arrival);
    }
    let mut o = rec.finish(last);
    o.readings = g.messages.len();
    o.rejected = rejected;
    o
}

/// The scenario that exercises a flag.
pub fn scenario_of(flag: Flag) -> &'static str {
    match flag {
        Flag::Rate => "spike",
        other => other.key(),
    }
}

/// The scenario that exercises a power or seal reason.
pub fn activity_scenario_of(reason: Activity) -> &'static str {
    match reason {
        Activity::PowerAboveBaseline
        | Activity::ProductionLoad
        | Activity::NightProfile
        | Activity::SealPeople
        | Activity::SealVehicles
        | Activity::SealHoist => "stopped_producing",
        Activity::Overmanning => "overmanning",
        Activity::CameraObstructed
        | Activity::CameraMoved
        | Activity::CameraFrozen
        | Activity::CameraLostSignal
        | Activity::CameraTooDark
        | Activity::CameraTooBright
        | Activity::CameraSceneChanged => "camera_faults",
        Activity::StaticImage => "static_image",
        Activity::SealSilent => "seal_silent",
        Activity::DispatchUnattended => "dispatch_unattended",
        Activity::PowerSilent => "power_silent",
    }
}

/// The size `minewatch score` uses for scenario `name`
/// ([`Size::standard`], or the activity scenarios' own).
pub fn standard_size(name: &str) -> Size {
    crate::simulators::activity_labelled::standard_size(name)
        .unwrap_or_else(|| Size::standard(name))
}

/// One row of the score table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The detector.
    pub detector: Detector,
    /// Labels on its scenario.
    pub labels: usize,
    /// Its episodes on its scenario.
    pub episodes: usize,
    /// Precision on its scenario (None without episodes).
    pub precision: Option<f64>,
    /// Recall on its scenario (None without labels).
    pub recall: Option<f64>,
    /// Median time to detect, seconds.
    pub median_ttd_s: Option<f64>,
    /// Its false episodes per mine-day on its normal scenario (None when
    /// that was not run).
    pub normal_per_mine_day: Option<f64>,
}

/// What a normal scenario showed: mine-days, alerts by kind, records.
pub type NormalSummary = (f64, HashMap<AlertKind, usize>, usize);

/// The whole score.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One row per detector whose scenario ran.
    pub rows: Vec<Row>,
    /// On `normal`: mine-days, alerts by kind, readings.
    pub normal: Option<NormalSummary>,
    /// On `activity_normal`: mine-days, alerts by kind, messages.
    pub activity_normal: Option<NormalSummary>,
    /// Readings scored, all readings scenarios.
    pub readings: usize,
    /// Messages scored, all activity scenarios.
    pub messages: usize,
    /// Records the decoders refused, all activity scenarios (0 unless the
    /// simulator writes something the decoders do not take).
    pub rejected: usize,
}

fn overlaps(e: &Episode, from: Millis, to: Millis) -> bool {
    e.start <= to + SLACK_MS && e.end >= from
}

/// The mine and subject a label names: its `point` is a point code, or the
/// alert's subject code (`""` for the mine, `{mine}:power`,
/// `{mine}:seal:{camera}`).
fn subject_of(registry: &Registry, l: &Label) -> Option<(MineIdx, Subject)> {
    if let Some(p) = registry.point(&l.point) {
        return Some((registry.points[p as usize].mine, Subject::Point(p)));
    }
    let mine = registry.mine(&l.mine)?;
    if l.point.is_empty() {
        return Some((mine, Subject::Mine));
    }
    let meta = &registry.mines[mine as usize];
    let candidates = std::iter::once(Subject::Power)
        .chain((0..meta.seal.cameras.len() as u16).map(Subject::Camera));
    candidates
        .into_iter()
        .find(|&s| subject_code(registry, mine, s).as_deref() == Some(l.point.as_str()))
        .map(|s| (mine, s))
}

/// Scores `detector` on its scenario's labels and outcome.
fn row(detector: Detector, labels: &[Label], o: &Outcome, registry: &Registry) -> Row {
    let labels: Vec<_> = labels
        .iter()
        .filter(|l| l.detector == detector.key())
        .filter_map(|l| subject_of(registry, l).map(|s| (s, l.from_ms, l.to_ms)))
        .collect();
    let eps: Vec<&Episode> = o
        .episodes
        .iter()
        .filter(|e| e.detector == detector)
        .collect();
    let on = |e: &Episode, s: (MineIdx, Subject)| e.mine == s.0 && e.subject == s.1;
    let tp = eps
        .iter()
        .filter(|e| {
            labels
                .iter()
                .any(|&(s, from, to)| on(e, s) && overlaps(e, from, to))
        })
        .count();
    let mut ttd = Vec::new();
    let mut found = 0;
    for &(s, from, to) in &labels {
        let first = eps
            .iter()
            .filter(|e| on(e, s) && overlaps(e, from, to))
            .map(|e| e.detected)
            .min();
        if let Some(t) = first {
            found += 1;
            ttd.push(((t - from).max(0)) as f64 / 1000.0);
        }
    }
    ttd.sort_by(f64::total_cmp);
    let median = match ttd.len() {
        0 => None,
        n if n % 2 == 1 => Some(ttd[n / 2]),
        n => Some((ttd[n / 2 - 1] + ttd[n / 2]) / 2.0),
    };
    Row {
        detector,
        labels: labels.len(),
        episodes: eps.len(),
        precision: (!eps.is_empty()).then(|| tp as f64 / eps.len() as f64),
        recall: (!labels.is_empty()).then(|| found as f64 / labels.len() as f64),
        median_ttd_s: median,
        normal_per_mine_day: None,
    }
}

/// Every scenario name `score` and `simulate --labels` take.
pub fn all_scenarios() -> impl Iterator<Item = &'static str> {
    SCENARIOS.into_iter().chain(ACTIVITY_SCENARIOS)
}

/// Scores the named scenarios (`all` for every one), each at `size(name)`.
pub fn score(which: &str, size: impl Fn(&str) -> Size) -> anyhow::Result<Report> {
    score_with(which, size, |_, _, _| {})
}

/// [`score`], telling `progress` (scenarios done, scenarios in all, the
/// one starting) before each scenario.
pub fn score_with(
    which: &str,
    size: impl Fn(&str) -> Size,
    mut progress: impl FnMut(usize, usize, &str),
) -> anyhow::Result<Report> {
    let names: Vec<&str> = if which == "all" {
        all_scenarios().collect()
    } else if let Some(n) = all_scenarios().find(|n| *n == which) {
        vec![n]
    } else {
        anyhow::bail!(
            "unknown scenario {which:?}; use all or one of {}",
            all_scenarios().collect::<Vec<_>>().join(", ")
        );
    };
    let mut report = Report::default();
    // Per normal scenario: mine-days and false episodes by detector.
    let mut normal_eps: HashMap<&str, (f64, HashMap<Detector, usize>)> = HashMap::new();
    for (k, name) in names.iter().enumerate() {
        progress(k, names.len(), name);
        let (labels, o, registry, mine_days) = if SCENARIOS.contains(name) {
            let Some(g) = generate(name, size(name), SEED) else {
                continue;
            };
            let o = run(&g);
            report.readings += o.readings;
            (g.labels, o, Registry::build(&g.province, 1), g.mine_days)
        } else {
            let Some(g) = generate_activity(name, size(name), SEED) else {
                continue;
            };
            let o = run_messages(&g);
            report.messages += o.readings;
            report.rejected += o.rejected;
            (g.labels, o, Registry::build(&g.province, 1), g.mine_days)
        };
        if *name == "normal" || *name == "activity_normal" {
            let mut by = HashMap::new();
            for e in &o.episodes {
                *by.entry(e.detector).or_insert(0) += 1;
            }
            normal_eps.insert(name, (mine_days, by));
            let summary = Some((mine_days, o.alerts.clone(), o.readings));
            if *name == "normal" {
                report.normal = summary;
            } else {
                report.activity_normal = summary;
            }
            continue;
        }
        for d in Detector::all() {
            if d.scenario() == *name {
                report.rows.push(row(d, &labels, &o, &registry));
            }
        }
    }
    // A normal scenario run alone: a row for each of its detectors.
    if let ([name], true) = (names.as_slice(), report.rows.is_empty())
        && normal_eps.contains_key(name)
    {
        for d in Detector::all().filter(|d| d.normal_scenario() == *name) {
            report.rows.push(Row {
                detector: d,
                labels: 0,
                episodes: 0,
                precision: None,
                recall: None,
                median_ttd_s: None,
                normal_per_mine_day: None,
            });
        }
    }
    for r in &mut report.rows {
        if let Some((days, by)) = normal_eps.get(r.detector.normal_scenario()) {
            r.normal_per_mine_day = Some(by.get(&r.detector).copied().unwrap_or(0) as f64 / days);
        }
    }
    Ok(report)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The report as a Markdown table and a summary of each normal scenario.
pub fn to_markdown(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(
        "| detector | alert kind | scenario | labels | episodes | precision | recall | \
         median time to detect | false / mine-day on normal |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for row in &r.rows {
        let ttd = row.median_ttd_s.map_or("–".into(), |t| format!("{t:.0} s"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.detector.key(),
            row.detector.kind().key(),
            if row.labels == 0 && row.episodes == 0 {
                "–"
            } else {
                row.detector.scenario()
            },
            row.labels,
            row.episodes,
            opt(row.precision, 2),
            opt(row.recall, 2),
            ttd,
            opt(row.normal_per_mine_day, 3),
        );
    }
    if let Some((days, alerts, readings)) = &r.normal {
        let n = |k: AlertKind| alerts.get(&k).copied().unwrap_or(0);
        let _ = write!(
            s,
            "\nOn `normal` ({days:.0} mine-days, {readings} readings): \
             {} data_anomaly alerts ({:.3} per mine-day), {} falsification_suspect alerts \
             ({:.3} per mine-day), {} overlimit and {} evacuation alerts.\n",
            n(AlertKind::DataAnomaly),
            n(AlertKind::DataAnomaly) as f64 / days,
            n(AlertKind::FalsificationSuspect),
            n(AlertKind::FalsificationSuspect) as f64 / days,
            n(AlertKind::Overlimit),
            n(AlertKind::Evacuation),
        );
    }
    if let Some((days, alerts, messages)) = &r.activity_normal {
        let n = |k: AlertKind| alerts.get(&k).copied().unwrap_or(0);
        let per = |k: AlertKind| n(k) as f64 / days;
        let _ = write!(
            s,
            "\nOn `activity_normal` ({days:.0} mine-days, {messages} messages): \
             {} suspected_illegal_production alerts ({:.3} per mine-day), {} overmanning \
             ({:.3}), {} seal_alert ({:.3}), {} point_offline ({:.3}: power feeds silent); \
             {} mine_offline alerts (the uplink outages, 4 a mine-day by design).\n",
            n(AlertKind::SuspectedIllegalProduction),
            per(AlertKind::SuspectedIllegalProduction),
            n(AlertKind::Overmanning),
            per(AlertKind::Overmanning),
            n(AlertKind::SealAlert),
            per(AlertKind::SealAlert),
            n(AlertKind::PointOffline),
            per(AlertKind::PointOffline),
            n(AlertKind::MineOffline),
        );
    }
    s
}

/// Marks the generated table in docs/DETECTORS.md.
pub const BEGIN: &str = "<!-- score:begin (written by `minewatch score --write-docs`) -->";
/// End marker.
pub const END: &str = "<!-- score:end -->";

/// Replaces the text between the markers of `doc` with `table`.
pub fn splice(doc: &str, table: &str) -> anyhow::Result<String> {
    let (Some(a), Some(b)) = (doc.find(BEGIN), doc.find(END)) else {
        anyhow::bail!("the markers {BEGIN:?} and {END:?} are missing");
    };
    anyhow::ensure!(a < b, "the score markers are out of order");
    Ok(format!("{}{BEGIN}\n\n{table}\n{}", &doc[..a], &doc[b..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(_: &str) -> Size {
        Size {
            mines: 2,
            hours: 8.0,
        }
    }

    #[test]
    fn the_score_of_a_small_scenario_is_stable_and_good() {
        let a = to_markdown(&score("spike", small).expect("known"));
        let b = to_markdown(&score("spike", small).expect("known"));
        assert_eq!(a, b);
        let r = score("spike", small).expect("known");
        let spike = r
            .rows
            .iter()
            .find(|r| r.detector == Detector::Flag(Flag::Spike))
            .expect("row");
        assert_eq!(spike.labels, 12);
        assert!(spike.recall.unwrap_or(0.0) >= 0.95, "{a}");
        assert!(spike.precision.unwrap_or(0.0) >= 0.9, "{a}");
    }

    #[test]
    fn normal_traffic_stays_under_the_false_alert_aim() {
        let r = score("normal", |_| Size {
            mines: 2,
            hours: 24.0,
        })
        .expect("known");
        let (days, alerts, _) = r.normal.clone().expect("normal ran");
        let n = |k| alerts.get(&k).copied().unwrap_or(0) as f64;
        // The only evacuations are the genuine over-limits of normal
        // traffic (at most a face's methane and a return's CO per mine).
        assert!(n(AlertKind::Evacuation) <= 4.0, "{}", to_markdown(&r));
        assert!(n(AlertKind::Overlimit) >= 2.0, "{}", to_markdown(&r));
        assert!(
            (n(AlertKind::DataAnomaly) + n(AlertKind::FalsificationSuspect)) / days <= 1.0,
            "{}",
            to_markdown(&r)
        );
    }

    #[test]
    fn activity_normal_traffic_stays_quiet() {
        let r = score("activity_normal", |_| Size {
            mines: 4,
            hours: 48.0,
        })
        .expect("known");
        let md = to_markdown(&r);
        assert_eq!(r.rejected, 0, "the decoders take every simulated record");
        let (days, alerts, _) = r.activity_normal.clone().expect("activity_normal ran");
        let n = |k| alerts.get(&k).copied().unwrap_or(0) as f64;
        for k in [
            AlertKind::SuspectedIllegalProduction,
            AlertKind::Overmanning,
            AlertKind::SealAlert,
        ] {
            assert_eq!(n(k), 0.0, "{k:?}\n{md}");
        }
        assert!(n(AlertKind::PointOffline) / days <= 1.0, "{md}");
        // The uplink outages are the mine's own alert, one each.
        assert_eq!(n(AlertKind::MineOffline), 4.0 * days, "{md}");
        assert_eq!(r.rows.len(), Activity::ALL.len());
        assert!(r.rows.iter().all(|r| r.normal_per_mine_day.is_some()));
    }

    #[test]
    fn small_activity_scenarios_score_well_through_the_decoders() {
        let size = |_: &str| Size {
            mines: 2,
            hours: 48.0,
        };
        for (name, reason) in [
            ("dispatch_unattended", Activity::DispatchUnattended),
            ("power_silent", Activity::PowerSilent),
        ] {
            let g = generate_activity(name, size(name), SEED).expect("known");
            let r = score(name, size).expect("known");
            let md = to_markdown(&r);
            let row = r
                .rows
                .iter()
                .find(|r| r.detector == Detector::Activity(reason))
                .expect("row");
            assert_eq!(row.labels, g.labels.len(), "every label names a subject");
            assert!(row.labels >= 4, "{md}");
            assert!(row.recall.unwrap_or(0.0) >= 0.95, "{md}");
            assert!(row.precision.unwrap_or(0.0) >= 0.9, "{md}");
            assert_eq!(r.rejected, 0);
        }
        assert!(score("no_such_scenario", size).is_err());
    }

    #[test]
    fn the_table_is_spliced_between_the_markers() {
        let doc = format!("a\n{BEGIN}\nold\n{END}\nb\n");
        let got = splice(&doc, "new\n").expect("markers");
        assert_eq!(got, format!("a\n{BEGIN}\n\nnew\n\n{END}\nb\n"));
        assert!(splice("no markers", "x").is_err());
    }
}
