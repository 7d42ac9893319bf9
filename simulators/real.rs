//! Scoring the detectors on a real background: a real methane series (a
//! CSV of values at a fixed period, such as the Polish longwall methane set
//! of the RuleKit "methane" data) played as methane points at one face,
//! first as it is (false alerts per point-day by kind), then with each
//! signature injected into it (recall and median time to detect).
//!
//! Every column whose header starts with `MM` (a methanometer) is a
//! `face_t1` methane point (alarm 1.0 %, power-off 1.5 %) of one producing
//! mine; row `i` is at `i` × the period. The mine's monitoring system is
//! taken to work: a value at or above the alarm line carries the alarm
//! status bit and one at or above the power-off level the power-off bit,
//! as a working interlock sets them. Readings arrive 2 s after their time,
//! one row at a time, through the same [`ShardCore`] and alert rules as
//! the simulator's scenarios ([`crate::simulators::score`]).
//!
//! Injections go where the pattern of a signature would: a few per point,
//! spread over the series after a day of history (the learned limits need
//! it), each quantised to the point's own resolution (a 0.1 %-step
//! sensor cannot show 0.01 % steps). A label matches an episode of its
//! detector at its point that overlaps it (its end extended by
//! [`SLACK_MS`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::Registry;
use crate::model::{AlertKind, Flag, Millis, Reading, Subject, status};
use crate::pipeline::ShardCore;
use crate::simulators::score::{Detector, Outcome, Recorder, SEED, SLACK_MS};

/// Event time of the first row (2026-11-23T00:00:00Z).
const START_MS: Millis = 1_795_392_000_000;

/// Delivery delay of every reading, ms.
const DELAY_MS: Millis = 2_000;

/// A private status marker: this over-limit cell must not get the
/// power-off bit (the interlock did not act).
const NO_POWER_OFF: u16 = 1 << 15;

/// A real series: one column of values per methane point.
#[derive(Debug, Clone, PartialEq)]
pub struct RealSeries {
    /// Column names (point codes).
    pub names: Vec<String>,
    /// Values per column, one per row.
    pub values: Vec<Vec<f64>>,
    /// Period between rows, ms.
    pub step_ms: Millis,
}

impl RealSeries {
    /// Parses a CSV with a header line; the `MM…` columns are kept. A
    /// cell that is not a number is an error naming its line.
    pub fn parse(text: &str, step_ms: Millis) -> anyhow::Result<RealSeries> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            anyhow::bail!("the CSV is empty");
        };
        let cols: Vec<(usize, String)> = header
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .enumerate()
            .filter(|(_, c)| c.starts_with("MM"))
            .collect();
        if cols.is_empty() {
            anyhow::bail!("no methanometer column (a header starting with MM) in {header:?}");
        }
        if step_ms <= 0 {
            anyhow::bail!("the period must be positive");
        }
        let mut values = vec![Vec::new(); cols.len()];
        for (n, line) in lines {
            let cells: Vec<&str> = line.split(',').collect();
            for (k, (i, name)) in cols.iter().enumerate() {
                let cell = cells.get(*i).map_or("", |c| c.trim());
                let v: f64 = cell.parse().map_err(|_| {
                    anyhow::anyhow!("line {}: column {name}: {cell:?} is not a number", n + 1)
                })?;
                values[k].push(v);
            }
        }
        if values[0].is_empty() {
            anyhow::bail!("the CSV has a header but no rows");
        }
        Ok(RealSeries {
            names: cols.into_iter().map(|(_, c)| c).collect(),
            values,
            step_ms,
        })
    }

    /// Reads and parses `path`.
    pub fn load(path: &std::path::Path, step_ms: Millis) -> anyhow::Result<RealSeries> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        RealSeries::parse(&text, step_ms).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
    }

    fn rows(&self) -> usize {
        self.values[0].len()
    }

    /// Point-days of the series.
    pub fn point_days(&self) -> f64 {
        (self.names.len() * self.rows()) as f64 * self.step_ms as f64 / 86_400_000.0
    }

    /// The resolution of column `k`: its smallest change between rows (at
    /// least 0.01).
    fn resolution(&self, k: usize) -> f64 {
        let q = |v: f64| (v * 100.0).round() as i64;
        self.values[k]
            .windows(2)
            .map(|w| (q(w[1]) - q(w[0])).abs())
            .filter(|&d| d > 0)
            .min()
            .map_or(0.01, |d| d as f64 / 100.0)
    }
}

/// The province of the series: one producing mine, a `face_t1` methane
/// point per column on one air path (the real columns are each other's
/// neighbours); with `synthetic`, every column on an air path of its own
/// with a derived neighbour ([`SYNTHETIC_SUFFIX`], a `face_t2` point:
/// [`neighbour_of`]), listed after the real columns.
fn registry(series: &RealSeries, synthetic: bool) -> anyhow::Result<Registry> {
    let mut toml = String::from(
        "[[mines]]\ncode = \"140121000001\"\nname = \"real longwall\"\nprovince = \"140000\"\n\
         city = \"140100\"\ncounty = \"140121\"\nstatus = \"producing\"\n",
    );
    let _ = writeln!(toml, "polling_secs = {}", series.step_ms as f64 / 1000.0);
    toml.push_str("points = [\n");
    for (k, name) in series.names.iter().enumerate() {
        let path = if synthetic { 1101 + k } else { 1101 };
        let _ = writeln!(
            toml,
            "  {{ code = \"{name}\", sensor = \"0001\", location = \"face_t1\", place = \"{path}工作面\" }},"
        );
    }
    if synthetic {
        for (k, name) in series.names.iter().enumerate() {
            let _ = writeln!(
                toml,
                "  {{ code = \"{name}{SYNTHETIC_SUFFIX}\", sensor = \"0001\", location = \"face_t2\", place = \"{}回风巷\" }},",
                1101 + k
            );
        }
    }
    toml.push_str("]\n");
    let (config, _) = crate::config::parse(&toml)?;
    Ok(Registry::build(&config, 1))
}

/// The code suffix of a derived neighbour.
pub const SYNTHETIC_SUFFIX: &str = "-N";

/// Rows a derived neighbour lags its column by (one minute at 30 s).
const NEIGHBOUR_LAG_ROWS: usize = 2;

/// A derived neighbour of `truth` (a column's gas as it really was, before
/// any falsification, at the column's resolution `res`): what a second
/// sensor of the same kind on the same air path would read if it saw the
/// same gas [`NEIGHBOUR_LAG_ROWS`] later with its own noise of about
/// 0.01 %. It tracks the column far better than the
/// file's own two methanometers track each other, so scores with it are
/// an upper bound (see docs/DETECTORS.md).
fn neighbour_of(truth: &[f64], res: f64, rng: &mut SmallRng) -> Vec<f64> {
    (0..truth.len())
        .map(|i| {
            let v = truth[i.saturating_sub(NEIGHBOUR_LAG_ROWS)];
            // About 0.01 % of noise: one reading in four a step off at
            // 0.01 % steps, one in sixteen at 0.1 % steps.
            let noise = match rng.random_range(0..if res < 0.05 { 8 } else { 32 }) {
                0 => -res,
                1 => res,
                _ => 0.0,
            };
            quantise((v + noise).max(0.0), res)
        })
        .collect()
}

/// Runs values (and statuses, with private markers) through one shard;
/// the status bits a working monitoring system sets are added here.
fn run(
    series: &RealSeries,
    registry: &Arc<Registry>,
    values: &[Vec<f64>],
    statuses: &[Vec<u16>],
) -> Outcome {
    let mut core = ShardCore::new(registry.clone(), 0, START_MS);
    let mut rec = Recorder::new(registry.clone());
    let mut out = Vec::new();
    let mut batch = Vec::with_capacity(values.len());
    let mut last = START_MS;
    for row in 0..series.rows() {
        let ts = START_MS + row as i64 * series.step_ms;
        batch.clear();
        for (k, col) in values.iter().enumerate() {
            let point = registry.mines[0].points[k];
            let limits = registry.points[point as usize].limits;
            let v = col[row];
            let mut st = statuses[k][row];
            let broken = st & NO_POWER_OFF != 0;
            st &= !NO_POWER_OFF;
            if let Some(l) = limits
                && st & (status::NOT_A_VALUE | status::CALIBRATION) == 0
            {
                if v >= l.alarm {
                    st |= status::ALARM;
                }
                if !broken && l.power_off.is_some_and(|p| v >= p) {
                    st |= status::POWER_OFF;
                }
            }
            batch.push(Reading {
                point,
                ts,
                value: v,
                status: st,
            });
        }
        out.clear();
        core.process(&batch, ts + DELAY_MS, &mut out);
        rec.record(&out, ts + DELAY_MS);
        last = ts;
    }
    // Held-back over-limit closes are made at the end.
    rec.record(&[], Millis::MAX);
    let mut o = rec.finish(last);
    o.readings = series.rows() * values.len();
    o
}

/// The signatures injected into the real background.
pub const SIGNATURES: [Flag; 11] = [
    Flag::OutOfRange,
    Flag::FlatLine,
    Flag::Spike,
    Flag::Hugging,
    Flag::DropAfterApproach,
    Flag::Interlock,
    Flag::UniformNoise,
    Flag::Replayed,
    Flag::Dither,
    Flag::Offset,
    Flag::Sensitivity,
];

/// Whether `flag` is scored with derived neighbours (the air-path rules
/// need a neighbour that tracks the point; see [`neighbour_of`]).
fn with_neighbours(flag: Flag) -> bool {
    matches!(flag, Flag::Offset | Flag::Sensitivity)
}

/// One injected pattern: column and rows `[from, to)`.
#[derive(Debug, Clone, Copy)]
struct Injected {
    column: usize,
    from: usize,
    to: usize,
}

fn quantise(v: f64, step: f64) -> f64 {
    ((v / step).round() * step * 1e6).round() / 1e6
}

/// The shape of a genuine gas event `j` rows from its start (rows of
/// `step_ms`): a smooth rise over 8 minutes, 15 minutes held, then an
/// exponential decay with a time constant of 4 minutes.
fn gas_event(j: usize, step_ms: Millis) -> f64 {
    let t = j as f64 * step_ms as f64 / 60_000.0;
    if t < 8.0 {
        let u = t / 8.0;
        u * u * (3.0 - 2.0 * u)
    } else if t < 23.0 {
        1.0
    } else {
        (-(t - 23.0) / 4.0).exp()
    }
}

/// Injects `flag`'s pattern into `values` / `statuses`, a few times per
/// column; returns where, and each column's gas as it really was (with
/// any genuine event injected, before the falsification) for
/// [`neighbour_of`].
fn inject(
    flag: Flag,
    series: &RealSeries,
    values: &mut [Vec<f64>],
    statuses: &mut [Vec<u16>],
    rng: &mut SmallRng,
) -> (Vec<Injected>, Vec<Vec<f64>>) {
    let per_h = (3_600_000 / series.step_ms).max(1) as usize;
    let rows = series.rows();
    let (len, per_column) = match flag {
        Flag::OutOfRange => (10, 4),
        Flag::FlatLine => (12 * per_h, 2),
        Flag::Spike => (1, 4),
        Flag::Hugging | Flag::UniformNoise => (2 * per_h, 3),
        Flag::DropAfterApproach => (34, 4),
        Flag::Interlock => (22, 4),
        // Two hours: the rule indexes one window in 32, so it needs copies
        // of ~96 readings or more (40 minutes at 5 s, not at 30 s).
        Flag::Replayed => (2 * per_h, 3),
        Flag::Dither => (per_h, 4),
        Flag::Offset => (3 * per_h, 3),
        Flag::Sensitivity => (3 * per_h, 3),
        _ => (1, 0),
    };
    let warm = 24 * per_h;
    let mut done = Vec::new();
    let mut truths = values.to_vec();
    if rows <= warm + len + 1 {
        return (done, truths);
    }
    let room = rows - warm - len - 1;
    let columns = values.len();
    let start = |i: usize, k: usize| {
        let slot = i * columns + k;
        warm + room * (2 * slot + 1) / (2 * per_column * columns)
    };
    // Sensitivity: a genuine gas event an hour into each turned-down span
    // (0.7 % more gas: MM31's 0.4 % to 1.1 %, past the line), the same in
    // the truth.
    let event_at = |s: usize| s + per_h;
    let event_len = ((45 * 60_000) / series.step_ms).max(1) as usize;
    if flag == Flag::Sensitivity {
        for (k, col) in values.iter_mut().enumerate() {
            let res = series.resolution(k);
            for i in 0..per_column {
                let e = event_at(start(i, k));
                for j in 0..event_len.min(rows - e) {
                    let add = 0.7 * gas_event(j, series.step_ms);
                    col[e + j] = quantise(col[e + j] + add, res);
                }
            }
            truths[k] = col.clone();
        }
    }
    for (k, col) in values.iter_mut().enumerate() {
        let res = series.resolution(k);
        let st = &mut statuses[k];
        // Hugging at a point whose steps leave one value in the band
        // (0.1 % at a 1.0 % line) is that value held, which such a sensor
        // shows on its own for hours: no instance of the signature there.
        if flag == Flag::Hugging && res > 0.05 {
            continue;
        }
        for i in 0..per_column {
            let s = start(i, k);
            let mut at = Injected {
                column: k,
                from: s,
                to: s + len,
            };
            match flag {
                Flag::Offset => {
                    let off = rng.random_range(0.2..0.3);
                    for c in &mut col[s..s + len] {
                        *c = quantise((*c - off).max(0.0), res);
                    }
                }
                Flag::Sensitivity => {
                    for c in &mut col[s..s + len] {
                        *c = quantise(0.5 * *c, res);
                    }
                    // Labelled over the event (rise, hold, 3 time constants).
                    let e = event_at(s);
                    at.from = e;
                    at.to = e + ((35 * 60_000) / series.step_ms) as usize;
                }
                Flag::OutOfRange => col[s..s + len].fill(-0.5),
                Flag::FlatLine => {
                    let v = col[s];
                    col[s..s + len].fill(v);
                }
                Flag::Spike => col[s] = quantise(col[s] + 0.5, res),
                Flag::Hugging => {
                    for (j, c) in col[s..s + len].iter_mut().enumerate() {
                        let wave = 0.03 * (j as f64 / 12.0).sin();
                        let v = (0.945 + wave + 0.01 * rng.random_range(-1.5..1.5_f64))
                            .clamp(0.90, 0.99);
                        *c = quantise(v, res).min(1.0 - res);
                    }
                }
                Flag::UniformNoise => {
                    for c in &mut col[s..s + len] {
                        *c = quantise(rng.random_range(0.1..1.0), res);
                    }
                }
                Flag::DropAfterApproach => {
                    let base = col[s];
                    for j in 0..14 {
                        let f = (j as f64 / 10.0).min(1.0);
                        col[s + j] = quantise(base + (0.88 - base) * f, res);
                    }
                    for j in 14..len {
                        match i % 3 {
                            0 => col[s + j] = 0.0,
                            1 => {
                                col[s + j] = 2.0;
                                st[s + j] = status::CALIBRATION;
                            }
                            _ => {
                                col[s + j] = 0.0;
                                st[s + j] = status::NOT_POLLED;
                            }
                        }
                    }
                    at.from = s + 14;
                }
                Flag::Interlock => {
                    let base = col[s];
                    let mut over: Option<(usize, usize)> = None;
                    for j in 0..len {
                        let f = if j < 6 {
                            j as f64 / 6.0
                        } else if j < 16 {
                            1.0
                        } else {
                            1.0 - (j - 16) as f64 / 6.0
                        };
                        let v = quantise(base + (1.7 - base) * f, res);
                        col[s + j] = v;
                        if v >= 1.5 {
                            st[s + j] |= NO_POWER_OFF;
                            over = Some((over.map_or(s + j, |o| o.0), s + j));
                        }
                    }
                    let Some((a, b)) = over else { continue };
                    at.from = a;
                    at.to = b + 1;
                }
                Flag::Dither => {
                    let v = col[s];
                    for (j, c) in col[s..s + len].iter_mut().enumerate() {
                        *c = quantise(v + res * (j % 2) as f64, res);
                    }
                }
                Flag::Replayed => {
                    let back = 12 * per_h;
                    for j in 0..len {
                        col[s + j] = col[s + j - back];
                    }
                }
                _ => continue,
            }
            done.push(at);
        }
    }
    (done, truths)
}

/// Which neighbours an air-path signature was scored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Neighbours {
    /// Not an air-path rule.
    None,
    /// Each column with a neighbour derived from it ([`neighbour_of`]).
    Derived,
    /// The file's columns as each other's neighbours.
    RealPair,
}

/// One signature's result on the real background.
#[derive(Debug, Clone, PartialEq)]
pub struct RealRow {
    /// The detector.
    pub flag: Flag,
    /// The neighbours it had.
    pub neighbours: Neighbours,
    /// Per column: (injected, found).
    pub per_column: Vec<(usize, usize)>,
    /// Median time to detect, seconds.
    pub median_ttd_s: Option<f64>,
    /// Episodes of the detector that matched no injection.
    pub unmatched: usize,
}

/// What `minewatch score --real` found.
#[derive(Debug, Clone)]
pub struct RealReport {
    /// Column names.
    pub names: Vec<String>,
    /// Point-days of the series.
    pub point_days: f64,
    /// Readings of one pass.
    pub readings: usize,
    /// As it is: alerts by kind.
    pub alerts: HashMap<AlertKind, usize>,
    /// As it is: episodes by detector, per column.
    pub episodes: Vec<(Flag, Vec<usize>)>,
    /// As it is: each episode's detector, column and start (hours into
    /// the series).
    pub starts: Vec<(Flag, usize, f64)>,
    /// Each signature injected.
    pub rows: Vec<RealRow>,
    /// Data-anomaly and falsification episodes with a derived neighbour
    /// per column and nothing injected.
    pub derived_as_is: usize,
}

/// Scores the detectors on `series`: as it is, then each signature.
pub fn score_real(series: &RealSeries) -> anyhow::Result<RealReport> {
    let synthetic = Arc::new(registry(series, true)?);
    let registry = Arc::new(registry(series, false)?);
    let columns = series.names.len();
    let clean_status = vec![vec![0u16; series.rows()]; columns];
    let o = run(series, &registry, &series.values, &clean_status);
    let column_of = |s: Subject| match s {
        Subject::Point(p) => registry.mines[0].points.iter().position(|&q| q == p),
        _ => None,
    };
    let mut episodes = Vec::new();
    for flag in Flag::ALL {
        let mut per = vec![0; columns];
        for e in o
            .episodes
            .iter()
            .filter(|e| e.detector == Detector::Flag(flag))
        {
            if let Some(k) = column_of(e.subject) {
                per[k] += 1;
            }
        }
        if per.iter().any(|&n| n > 0) {
            episodes.push((flag, per));
        }
    }
    let mut starts = Vec::new();
    for e in &o.episodes {
        if let (Detector::Flag(f), Some(k)) = (e.detector, column_of(e.subject)) {
            starts.push((f, k, (e.start - START_MS) as f64 / 3_600_000.0));
        }
    }
    let with_derived = |values: &mut Vec<Vec<f64>>,
                        statuses: &mut Vec<Vec<u16>>,
                        truths: &[Vec<f64>],
                        rng: &mut SmallRng| {
        for (k, t) in truths.iter().enumerate() {
            values.push(neighbour_of(t, series.resolution(k), rng));
            statuses.push(vec![0u16; series.rows()]);
        }
    };
    // As it is, each column with a derived neighbour.
    let derived_as_is = {
        let mut rng = SmallRng::seed_from_u64(SEED);
        let (mut values, mut statuses) = (series.values.clone(), clean_status.clone());
        with_derived(&mut values, &mut statuses, &series.values, &mut rng);
        let o = run(series, &synthetic, &values, &statuses);
        o.episodes
            .iter()
            .filter(|e| matches!(e.detector, Detector::Flag(f) if f.kind() == AlertKind::FalsificationSuspect || f.kind() == AlertKind::DataAnomaly))
            .count()
    };
    let mut rows = Vec::new();
    let variants = SIGNATURES
        .iter()
        .map(|&f| (f, with_neighbours(f)))
        .chain([(Flag::Offset, false)]);
    for (flag, derived) in variants {
        let mut rng = SmallRng::seed_from_u64(SEED ^ flag.bit() as u64);
        let mut values = series.values.clone();
        let mut statuses = clean_status.clone();
        let (injected, truths) = inject(flag, series, &mut values, &mut statuses, &mut rng);
        let reg = if derived {
            with_derived(&mut values, &mut statuses, &truths, &mut rng);
            &synthetic
        } else {
            &registry
        };
        let o = run(series, reg, &values, &statuses);
        let column_of = |s: Subject| match s {
            Subject::Point(p) => reg.mines[0].points.iter().position(|&q| q == p),
            _ => None,
        };
        let ts = |row: usize| START_MS + row as i64 * series.step_ms;
        let eps: Vec<_> = o
            .episodes
            .iter()
            .filter(|e| e.detector == Detector::Flag(flag))
            .collect();
        let mut per_column = vec![(0, 0); columns];
        let mut ttd = Vec::new();
        for inj in &injected {
            per_column[inj.column].0 += 1;
            let (from, to) = (ts(inj.from), ts(inj.to));
            let first = eps
                .iter()
                .filter(|e| column_of(e.subject) == Some(inj.column))
                .filter(|e| e.start <= to + SLACK_MS && e.end >= from)
                .map(|e| e.detected)
                .min();
            if let Some(t) = first {
                per_column[inj.column].1 += 1;
                ttd.push((t - from).max(0) as f64 / 1000.0);
            }
        }
        let unmatched = eps
            .iter()
            .filter(|e| {
                !injected.iter().any(|inj| {
                    column_of(e.subject) == Some(inj.column)
                        && e.start <= ts(inj.to) + SLACK_MS
                        && e.end >= ts(inj.from)
                })
            })
            .count();
        ttd.sort_by(f64::total_cmp);
        let median = match ttd.len() {
            0 => None,
            n if n % 2 == 1 => Some(ttd[n / 2]),
            n => Some((ttd[n / 2 - 1] + ttd[n / 2]) / 2.0),
        };
        rows.push(RealRow {
            flag,
            neighbours: match (with_neighbours(flag), derived) {
                (false, _) => Neighbours::None,
                (true, true) => Neighbours::Derived,
                (true, false) => Neighbours::RealPair,
            },
            per_column,
            median_ttd_s: median,
            unmatched,
        });
    }
    Ok(RealReport {
        names: series.names.clone(),
        point_days: series.point_days(),
        readings: o.readings,
        alerts: o.alerts,
        episodes,
        starts,
        rows,
        derived_as_is,
    })
}

/// The report as Markdown: alerts per point-day as it is, then a row per
/// injected signature.
pub fn real_markdown(r: &RealReport) -> String {
    let mut s = String::new();
    let n = |k: AlertKind| r.alerts.get(&k).copied().unwrap_or(0);
    let _ = writeln!(
        s,
        "As it is ({:.1} point-days, {} readings, points {}): {} data_anomaly alerts \
         ({:.3} per point-day), {} falsification_suspect alerts ({:.3} per point-day), \
         {} overlimit and {} evacuation alerts ({:.2} and {:.2} per point-day).",
        r.point_days,
        r.readings,
        r.names.join(", "),
        n(AlertKind::DataAnomaly),
        n(AlertKind::DataAnomaly) as f64 / r.point_days,
        n(AlertKind::FalsificationSuspect),
        n(AlertKind::FalsificationSuspect) as f64 / r.point_days,
        n(AlertKind::Overlimit),
        n(AlertKind::Evacuation),
        n(AlertKind::Overlimit) as f64 / r.point_days,
        n(AlertKind::Evacuation) as f64 / r.point_days,
    );
    if r.episodes.is_empty() {
        s.push_str("\nNo data-anomaly or falsification episode.\n");
    } else {
        s.push_str("\nEpisodes as it is, by detector and point: ");
        let parts: Vec<String> = r
            .episodes
            .iter()
            .map(|(f, per)| {
                let cols: Vec<String> = per
                    .iter()
                    .zip(&r.names)
                    .map(|(n, name)| format!("{name} {n}"))
                    .collect();
                format!("{} ({})", f.key(), cols.join(", "))
            })
            .collect();
        let _ = writeln!(s, "{}.", parts.join("; "));
        let at: Vec<String> = r
            .starts
            .iter()
            .map(|(f, k, h)| format!("{} {} at {h:.2} h", f.key(), r.names[*k]))
            .collect();
        let _ = writeln!(s, "\nStarts: {}.", at.join(", "));
    }
    let _ = writeln!(
        s,
        "\nWith a derived neighbour per column (see the air-path rows below) and nothing \
         injected: {} data-anomaly or falsification episodes.",
        r.derived_as_is
    );
    s.push_str(
        "\n| signature injected | alert kind | injected | found | recall | per point (found / injected) | \
         median time to detect | other episodes |\n|---|---|---|---|---|---|---|---|\n",
    );
    for row in &r.rows {
        let (inj, found) = row
            .per_column
            .iter()
            .fold((0, 0), |(a, b), &(i, f)| (a + i, b + f));
        let per: Vec<String> = row
            .per_column
            .iter()
            .zip(&r.names)
            .map(|(&(i, f), name)| format!("{name} {f}/{i}"))
            .collect();
        let recall = if inj == 0 {
            "–".to_string()
        } else {
            format!("{:.2}", found as f64 / inj as f64)
        };
        let label = match row.neighbours {
            Neighbours::None => row.flag.key().to_string(),
            Neighbours::Derived => format!("{} (derived neighbour)", row.flag.key()),
            Neighbours::RealPair => format!("{} (the two columns as neighbours)", row.flag.key()),
        };
        let _ = writeln!(
            s,
            "| {label} | {} | {inj} | {found} | {recall} | {} | {} | {} |",
            row.flag.kind().key(),
            per.join(", "),
            row.median_ttd_s.map_or("–".into(), |t| format!("{t:.0} s")),
            row.unmatched,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small series: a drifting 0.01 %-step column and a 0.1 %-step one
    /// that crosses 1.0 % back and forth, at 30 s.
    fn small(rows: usize) -> String {
        let mut s = String::from("row,MM1,MM2,PD\n");
        let mut rng = SmallRng::seed_from_u64(3);
        let (mut a, mut b) = (0.3f64, 0.8f64);
        for i in 0..rows {
            a = (a + 0.01 * rng.random_range(-1.0..1.0_f64).round()).clamp(0.2, 0.6);
            if rng.random_range(0.0..1.0) < 0.1 {
                b = (b + 0.1
                    * if rng.random_range(0.0..1.0) < 0.5 {
                        -1.0
                    } else {
                        1.0
                    })
                .clamp(0.6, 1.1);
            }
            let _ = writeln!(s, "{i},{:.2},{:.1},1", a, b);
        }
        s
    }

    #[test]
    fn the_csv_keeps_the_methanometers_and_names_a_bad_cell() {
        let s = RealSeries::parse("row,MM31,MM116,PD\n0,0.46,1.3,1\n1,0.45,1.2,0\n", 30_000)
            .expect("valid");
        assert_eq!(s.names, ["MM31", "MM116"]);
        assert_eq!(s.values, [vec![0.46, 0.45], vec![1.3, 1.2]]);
        assert_eq!(s.resolution(1), 0.1);
        let e = RealSeries::parse("row,MM31\n0,0.4\n1,x\n", 30_000).unwrap_err();
        assert!(format!("{e}").contains("line 3"), "{e}");
        assert!(RealSeries::parse("row,PD\n0,1\n", 30_000).is_err());
        assert!(RealSeries::parse("", 30_000).is_err());
    }

    #[test]
    fn a_flapping_point_is_few_alerts_and_injections_are_found() {
        let series = RealSeries::parse(&small(2 * 2880 + 1000), 30_000).expect("valid");
        let r = score_real(&series).expect("scored");
        let n = |k: AlertKind| r.alerts.get(&k).copied().unwrap_or(0);
        // MM2 crosses 1.0 % many times; grouped, far fewer alerts.
        let crossings = series.values[1]
            .windows(2)
            .filter(|w| w[0] < 1.0 && w[1] >= 1.0)
            .count();
        assert!(crossings > 20, "{crossings}");
        assert!(n(AlertKind::Overlimit) < crossings, "{:?}", r.alerts);
        // The two columns wander on their own (a random walk is no air
        // path: a walk that falls 0.2 % and stays is an offset to the
        // rule), so only the rules of one point are held to silence here;
        // the air-path rules are held to it on the real file.
        let own_rules = r
            .episodes
            .iter()
            .filter(|(f, _)| f.kind() == AlertKind::FalsificationSuspect && !with_neighbours(*f))
            .count();
        assert_eq!(own_rules, 0, "{:?}", r.episodes);
        let row = |f: Flag| r.rows.iter().find(|x| x.flag == f).expect("scored");
        for f in [Flag::OutOfRange, Flag::Interlock, Flag::DropAfterApproach] {
            let (i, found) = row(f)
                .per_column
                .iter()
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            assert!(i > 0 && found == i, "{f:?}: {found} of {i}");
        }
        assert!(real_markdown(&r).contains("| interlock | falsification_suspect |"));
    }
}
