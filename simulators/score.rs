//! Scoring of the data-anomaly and falsification detectors on the labelled
//! scenarios ([`crate::simulators::labelled`]): each scenario's readings go,
//! one at a time in arrival order, through the same [`ShardCore`] the daemon
//! runs (no broker, no clock: event time and the readings' arrival times
//! only), and the flag episodes that come out are matched to the labels.
//!
//! - An episode of detector D is the span between its `FlagRaised` and
//!   `FlagCleared` for one point (one alert episode per point and reason).
//!   It is a true positive when it overlaps a label of D on that point,
//!   with the label's end extended by [`SLACK_MS`] (rules that confirm over
//!   a window clear after the pattern ends).
//! - Precision: true-positive episodes / episodes of D on D's scenario.
//!   Recall: labels of D overlapped by an episode of D / labels of D.
//!   Time to detect: arrival time of the reading that raised the first
//!   matching episode minus the label's start (0 when raised earlier).
//! - On `normal` every episode is false: false alerts per mine-day are
//!   counted per detector and per alert kind the way the alert stage
//!   raises them (one alert per point and kind while any reason is open),
//!   with over-limit and evacuation alerts beside them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::config::Registry;
use crate::model::{AlertKind, Finding, Flag, Millis, PointIdx};
use crate::pipeline::ShardCore;
use crate::simulators::labelled::{Generated, SCENARIOS, Size, generate};

/// How long after a label's end an episode still matches it.
pub const SLACK_MS: Millis = 15 * 60_000;

/// The fixed seed of every scored scenario.
pub const SEED: u64 = 2026;

/// One episode of one flag at one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    /// Point.
    pub point: PointIdx,
    /// Which rule.
    pub flag: Flag,
    /// Event time the episode starts at.
    pub start: Millis,
    /// Event time it ended at (the scenario's end while still open).
    pub end: Millis,
    /// Arrival time of the reading that raised it.
    pub detected: Millis,
}

/// What one scenario produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Flag episodes.
    pub episodes: Vec<Episode>,
    /// Alerts the alert stage would raise, by kind.
    pub alerts: HashMap<AlertKind, usize>,
    /// Readings processed.
    pub readings: usize,
}

/// Runs a generated scenario through one shard.
pub fn run(g: &Generated) -> Outcome {
    let registry = Arc::new(Registry::build(&g.province, 1));
    let first = g.readings.first().map_or(0, |d| d.arrival);
    let mut core = ShardCore::new(registry.clone(), 0, first);
    let mut out = Vec::new();
    let mut open: HashMap<(Flag, PointIdx), usize> = HashMap::new();
    let mut alert_bits: HashMap<(AlertKind, PointIdx), u16> = HashMap::new();
    let mut over_open: HashMap<(AlertKind, PointIdx), bool> = HashMap::new();
    let mut o = Outcome::default();
    let mut last = first;
    for d in &g.readings {
        out.clear();
        core.process(std::slice::from_ref(&d.reading), d.arrival, &mut out);
        last = last.max(d.reading.ts);
        for f in &out {
            match *f {
                Finding::FlagRaised {
                    point, ts, flag, ..
                } => {
                    if open.contains_key(&(flag, point)) {
                        continue;
                    }
                    open.insert((flag, point), o.episodes.len());
                    o.episodes.push(Episode {
                        point,
                        flag,
                        start: ts,
                        end: Millis::MAX,
                        detected: d.arrival,
                    });
                    let bits = alert_bits.entry((flag.kind(), point)).or_insert(0);
                    if *bits == 0 {
                        *o.alerts.entry(flag.kind()).or_insert(0) += 1;
                    }
                    *bits |= flag.bit();
                }
                Finding::FlagCleared { point, ts, flag } => {
                    if let Some(i) = open.remove(&(flag, point)) {
                        o.episodes[i].end = ts.max(o.episodes[i].start);
                    }
                    if let Some(bits) = alert_bits.get_mut(&(flag.kind(), point)) {
                        *bits &= !flag.bit();
                    }
                }
                Finding::OverLimitOpened { point, .. } => {
                    over_open.insert((AlertKind::Overlimit, point), true);
                    *o.alerts.entry(AlertKind::Overlimit).or_insert(0) += 1;
                }
                Finding::Evacuation { point, .. } => {
                    over_open.insert((AlertKind::Evacuation, point), true);
                    *o.alerts.entry(AlertKind::Evacuation).or_insert(0) += 1;
                }
                _ => {}
            }
        }
    }
    for e in &mut o.episodes {
        if e.end == Millis::MAX {
            e.end = last;
        }
    }
    o.readings = g.readings.len();
    o
}

/// The scenario that exercises a detector.
pub fn scenario_of(flag: Flag) -> &'static str {
    match flag {
        Flag::Rate => "spike",
        other => other.key(),
    }
}

/// One row of the score table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The detector (reason key).
    pub flag: Flag,
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
    /// Its false episodes per mine-day on `normal` (None when `normal`
    /// was not run).
    pub normal_per_mine_day: Option<f64>,
}

/// The whole score.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One row per detector whose scenario ran.
    pub rows: Vec<Row>,
    /// On `normal`: mine-days, and alerts by kind.
    pub normal: Option<(f64, HashMap<AlertKind, usize>, usize)>,
    /// Readings scored, all scenarios.
    pub readings: usize,
}

fn overlaps(e: &Episode, from: Millis, to: Millis) -> bool {
    e.start <= to + SLACK_MS && e.end >= from
}

/// Scores detector `flag` on its scenario's outcome.
fn row(flag: Flag, g: &Generated, o: &Outcome, registry: &Registry) -> Row {
    let labels: Vec<_> = g
        .labels
        .iter()
        .filter(|l| l.detector == flag.key())
        .filter_map(|l| registry.point(&l.point).map(|p| (p, l.from_ms, l.to_ms)))
        .collect();
    let eps: Vec<&Episode> = o.episodes.iter().filter(|e| e.flag == flag).collect();
    let tp = eps
        .iter()
        .filter(|e| {
            labels
                .iter()
                .any(|&(p, from, to)| p == e.point && overlaps(e, from, to))
        })
        .count();
    let mut ttd = Vec::new();
    let mut found = 0;
    for &(p, from, to) in &labels {
        let first = eps
            .iter()
            .filter(|e| e.point == p && overlaps(e, from, to))
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
        flag,
        labels: labels.len(),
        episodes: eps.len(),
        precision: (!eps.is_empty()).then(|| tp as f64 / eps.len() as f64),
        recall: (!labels.is_empty()).then(|| found as f64 / labels.len() as f64),
        median_ttd_s: median,
        normal_per_mine_day: None,
    }
}

/// Scores the named scenarios (`all` for every one), each at `size(name)`.
pub fn score(which: &str, size: impl Fn(&str) -> Size) -> anyhow::Result<Report> {
    let names: Vec<&str> = if which == "all" {
        SCENARIOS.to_vec()
    } else if SCENARIOS.contains(&which) {
        vec![which]
    } else {
        anyhow::bail!(
            "unknown scenario {which:?}; use all or one of {}",
            SCENARIOS.join(", ")
        );
    };
    let mut report = Report::default();
    let mut normal_flags: Option<(f64, HashMap<Flag, usize>)> = None;
    for name in &names {
        let Some(g) = generate(name, size(name), SEED) else {
            continue;
        };
        let o = run(&g);
        report.readings += o.readings;
        if *name == "normal" {
            let mut by_flag = HashMap::new();
            for e in &o.episodes {
                *by_flag.entry(e.flag).or_insert(0) += 1;
            }
            normal_flags = Some((g.mine_days, by_flag));
            report.normal = Some((g.mine_days, o.alerts.clone(), o.readings));
            continue;
        }
        let registry = Registry::build(&g.province, 1);
        for flag in Flag::ALL {
            if scenario_of(flag) == *name {
                report.rows.push(row(flag, &g, &o, &registry));
            }
        }
    }
    if let Some((days, by_flag)) = &normal_flags {
        if report.rows.is_empty() {
            for flag in Flag::ALL {
                report.rows.push(Row {
                    flag,
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
            r.normal_per_mine_day = Some(by_flag.get(&r.flag).copied().unwrap_or(0) as f64 / days);
        }
    }
    Ok(report)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The report as a Markdown table and a summary of `normal`.
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
            row.flag.key(),
            row.flag.kind().key(),
            if row.labels == 0 && row.episodes == 0 {
                "–"
            } else {
                scenario_of(row.flag)
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
        let spike = r.rows.iter().find(|r| r.flag == Flag::Spike).expect("row");
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
        assert_eq!(n(AlertKind::Evacuation), 0.0, "{}", to_markdown(&r));
        assert!(
            (n(AlertKind::DataAnomaly) + n(AlertKind::FalsificationSuspect)) / days <= 1.0,
            "{}",
            to_markdown(&r)
        );
    }

    #[test]
    fn the_table_is_spliced_between_the_markers() {
        let doc = format!("a\n{BEGIN}\nold\n{END}\nb\n");
        let got = splice(&doc, "new\n").expect("markers");
        assert_eq!(got, format!("a\n{BEGIN}\n\nnew\n\n{END}\nb\n"));
        assert!(splice("no markers", "x").is_err());
    }
}
