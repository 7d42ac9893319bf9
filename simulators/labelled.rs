//! Labelled scenarios for scoring the data-anomaly and falsification
//! detectors: realistic normal traffic with one detector's pattern injected,
//! generated offline as readings (no broker) with ground-truth labels
//! `{mine, point, detector, from, to}`.
//!
//! Normal traffic everywhere: the province simulator's AR(1) drift and noise
//! per point, quantised (methane 0.01 %, CO 1 ppm), a diurnal swing of
//! ±10 %, timestamps jittered by up to 300 ms, delivery 1–3 s after the
//! measurement, and per mine a 5-minute outage every 6 hours whose readings
//! arrive in one burst at its end (before live readings resume, as a
//! store-and-forward substation drains its buffer first) together with
//! resends (same timestamp, same value) of the last readings before it.
//! The interlock acts normally: values at or above a point's power-off
//! level carry the alarm and power-off status bits, and the feed (馈电)
//! sensor of the point's air path reads 0 (power cut) meanwhile.
//!
//! Each scenario is deterministic for a seed. `normal` has no injected
//! fault, but genuine over-limits that recover (methane at a face, CO at a
//! return: rising over minutes, decaying over minutes), on which every
//! data-anomaly or falsification episode is false; every other scenario
//! is named after the detector it exercises (the `spike` scenario also
//! labels `rate` on its full-scale jumps).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::{Config, Registry};
use crate::model::{Millis, Reading, rfc3339, status};
use crate::simulators::province::{ProvinceSpec, province};
use crate::simulators::scenario::{Scenario, Simulation};

/// The labelled scenarios, `normal` first.
pub const SCENARIOS: [&str; 14] = [
    "normal",
    "out_of_range",
    "flat_line",
    "spike",
    "timestamp",
    "hugging",
    "drop_after_approach",
    "interlock",
    "uniform_noise",
    "replayed",
    "neighbours_disagree",
    "dither",
    "offset",
    "sensitivity",
];

/// Event time of the first reading (2026-11-23T00:00:00Z).
pub const START_MS: Millis = 1_795_392_000_000;

/// Polling period of every simulated point, ms.
pub const POLL_MS: i64 = 5_000;

/// One ground-truth label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    /// Mine code.
    pub mine: String,
    /// Point code.
    pub point: String,
    /// Detector (`reason` key).
    pub detector: String,
    /// Start, RFC 3339.
    pub from: String,
    /// End, RFC 3339.
    pub to: String,
    /// Start, ms.
    #[serde(skip)]
    pub from_ms: Millis,
    /// End, ms.
    #[serde(skip)]
    pub to_ms: Millis,
}

/// One reading with its arrival (processing) time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivered {
    /// When it reached minewatch.
    pub arrival: Millis,
    /// The reading.
    pub reading: Reading,
}

/// A generated scenario.
pub struct Generated {
    /// Scenario name.
    pub name: String,
    /// The simulated province.
    pub province: Config,
    /// Readings in arrival order.
    pub readings: Vec<Delivered>,
    /// Ground truth.
    pub labels: Vec<Label>,
    /// Mines × days of traffic.
    pub mine_days: f64,
}

/// Size of a generated scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    /// Mines.
    pub mines: usize,
    /// Hours of traffic.
    pub hours: f64,
}

impl Size {
    /// The size `minewatch score` uses: `normal` 10 mines × 48 h, the
    /// others 6 mines × 12 h.
    pub fn standard(name: &str) -> Size {
        if name == "normal" {
            Size {
                mines: 10,
                hours: 48.0,
            }
        } else {
            Size {
                mines: 6,
                hours: 12.0,
            }
        }
    }
}

/// One sample on the grid.
#[derive(Debug, Clone, Copy)]
struct Cell {
    value: f64,
    status: u16,
}

struct Grid {
    cells: Vec<Vec<Vec<Cell>>>,
    steps: usize,
    mines: usize,
    labels: Vec<Label>,
    extra: Vec<(usize, usize, usize, Reading, i64)>,
    codes: Vec<(String, Vec<String>)>,
}

impl Grid {
    fn ts(&self, step: usize) -> Millis {
        START_MS + step as i64 * POLL_MS
    }

    fn label(&mut self, m: usize, j: usize, detector: &str, from: Millis, to: Millis) {
        self.labels.push(Label {
            mine: self.codes[m].0.clone(),
            point: self.codes[m].1[j].clone(),
            detector: detector.into(),
            from: rfc3339(from),
            to: rfc3339(to),
            from_ms: from,
            to_ms: to,
        });
    }

    /// Start step of episode `k` of `n` on mine `m`, lasting `len` steps,
    /// after a 2-hour warm-up (4 hours for replays).
    fn start(&self, m: usize, k: usize, n: usize, len: usize, warm_h: f64) -> usize {
        let warm = ((warm_h * 3_600_000.0) as i64 / POLL_MS) as usize;
        let room = self.steps.saturating_sub(warm + len + 200).max(1);
        warm + (room * (2 * k + 1)) / (2 * n) + (m * 37) % 90
    }
}

fn quantise(v: f64, step: f64) -> f64 {
    ((v / step).round() * step * 1e6).round() / 1e6
}

fn gauss(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Generates scenario `name`; `None` for an unknown name.
pub fn generate(name: &str, size: Size, seed: u64) -> Option<Generated> {
    if !SCENARIOS.contains(&name) {
        return None;
    }
    let province = province(ProvinceSpec {
        mines: size.mines,
        points: 32,
        polling_secs: POLL_MS as f64 / 1000.0,
    });
    let registry = Registry::build(&province, 1);
    let steps = ((size.hours * 3_600_000.0) as i64 / POLL_MS).max(1) as usize;
    let mut sim = Simulation::new(&province, Scenario::Normal, seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut cells = Vec::with_capacity(size.mines);
    for (m, mine) in province.mines.iter().enumerate() {
        let mut per_point = Vec::with_capacity(mine.points.len());
        for j in 0..mine.points.len() {
            per_point.push(Vec::with_capacity(steps));
            let _ = j;
        }
        cells.push(per_point);
        let _ = m;
    }
    for step in 0..steps {
        let t = step as f64 * POLL_MS as f64 / 1000.0;
        let diurnal = 1.0 + 0.1 * (std::f64::consts::TAU * t / 86_400.0).sin();
        for (m, mine) in cells.iter_mut().enumerate() {
            for (j, series) in mine.iter_mut().enumerate() {
                let s = sim
                    .sample(m, j, t)
                    .unwrap_or(crate::simulators::scenario::Sample {
                        value: 0.0,
                        status: status::NOT_POLLED,
                    });
                let p = &registry.points[registry.mines[m].points[j] as usize];
                let value = match p.sensor.gas() {
                    Some(crate::model::Gas::Methane) => quantise(s.value * diurnal, 0.01),
                    Some(crate::model::Gas::CarbonMonoxide) => quantise(s.value * diurnal, 1.0),
                    None => s.value,
                };
                series.push(Cell {
                    value,
                    status: s.status,
                });
            }
        }
    }
    let codes = province
        .mines
        .iter()
        .map(|m| {
            (
                m.code.clone(),
                m.points.iter().map(|p| p.code.clone()).collect(),
            )
        })
        .collect();
    let mut g = Grid {
        cells,
        steps,
        mines: size.mines,
        labels: Vec::new(),
        extra: Vec::new(),
        codes,
    };
    inject(name, &mut g, &mut rng);
    set_interlock_bits(&mut g, &registry, name);
    let readings = deliver(&g, &registry, &mut rng);
    Some(Generated {
        name: name.into(),
        province,
        readings,
        labels: g.labels,
        mine_days: size.mines as f64 * size.hours / 24.0,
    })
}

/// Point slots of the province template used below.
const FACE_T1: usize = 0;
const FACE_T0: usize = 1;
const FACE_T2: usize = 2;
const CO_RETURN: usize = 4;
const HEADING_T1: usize = 6;
const FACE2_T1: usize = 9;
const FACE2_T0: usize = 10;
const FACE2_T2: usize = 11;
const CO_RETURN2: usize = 12;

/// The shape of a genuine gas event at `i` steps from its start: a rise
/// over `rise` steps (smoothed), a hold of `hold` steps, then an
/// exponential decay with a time constant of `tau` steps (ventilation
/// dilutes gas over minutes; a real reading never falls from the line to
/// the background in one poll).
fn genuine(i: i64, rise: f64, hold: f64, tau: f64) -> f64 {
    let x = i as f64;
    if x < 0.0 {
        0.0
    } else if x < rise {
        let u = x / rise;
        u * u * (3.0 - 2.0 * u)
    } else if x < rise + hold {
        1.0
    } else {
        (-(x - rise - hold) / tau).exp()
    }
}

/// Genuine over-limits that recover, in `normal` traffic: per mine, a
/// methane event at face 1 (its T1 sensor up to 1.2–1.8 %, past the
/// power-off level on some; T0 and the return T2 rising with it a little
/// later, by a third of that, staying under their lines) and a CO event at a return (up to 26–45 ppm), each rising
/// over minutes and decaying with a time constant of 2–4 minutes. The
/// mine's own system sets the alarm and power-off bits and cuts the feed
/// as usual ([`set_interlock_bits`]). None of this is a data anomaly or a
/// falsification: every episode a detector raises on it is false.
fn genuine_over_limits(g: &mut Grid, rng: &mut SmallRng) {
    let per_min = (60_000 / POLL_MS) as f64;
    for m in 0..g.mines {
        // Methane at face 1.
        let len = (90.0 * per_min) as usize;
        let s = g.start(m, 0, 2, len, 2.0);
        let peak = rng.random_range(1.2..1.8);
        let (rise, hold, tau) = (
            rng.random_range(4.0..10.0) * per_min,
            rng.random_range(3.0..12.0) * per_min,
            rng.random_range(2.0..4.0) * per_min,
        );
        let base = g.cells[m][FACE_T1][s].value;
        for (j, share, lag) in [(FACE_T1, 1.0, 0), (FACE_T0, 0.3, 6), (FACE_T2, 0.35, 12)] {
            for i in 0..len.min(g.steps - s) {
                let f = genuine(i as i64 - lag, rise, hold, tau);
                let c = &mut g.cells[m][j][s + i];
                c.value = quantise(c.value + (peak - base) * share * f, 0.01);
            }
        }
        // CO at the return of face 1.
        let s = g.start(m, 1, 2, len, 2.0);
        let peak = rng.random_range(26.0..45.0_f64);
        let (rise, hold, tau) = (
            rng.random_range(2.0..6.0) * per_min,
            rng.random_range(2.0..10.0) * per_min,
            rng.random_range(2.0..4.0) * per_min,
        );
        let base = g.cells[m][CO_RETURN][s].value;
        for i in 0..len.min(g.steps - s) {
            let f = genuine(i as i64, rise, hold, tau);
            let c = &mut g.cells[m][CO_RETURN][s + i];
            c.value = quantise(c.value + (peak - base) * f, 1.0);
        }
    }
}

fn inject(name: &str, g: &mut Grid, rng: &mut SmallRng) {
    let mines = g.mines;
    match name {
        "normal" => genuine_over_limits(g, rng),
        "out_of_range" => {
            for m in 0..mines {
                for k in 0..4 {
                    let len = 12;
                    let s = g.start(m, k, 4, len, 2.0);
                    let (j, value, st) = match k {
                        0 => (FACE_T1, -0.5, 0),
                        1 => (CO_RETURN, f64::NAN, 0),
                        2 => (CO_RETURN2, 1200.0, 0),
                        _ => (FACE2_T1, 0.0, status::SENSOR_FAULT),
                    };
                    for step in s..s + len {
                        g.cells[m][j][step] = Cell { value, status: st };
                    }
                    let (from, to) = (g.ts(s), g.ts(s + len));
                    g.label(m, j, "out_of_range", from, to);
                }
            }
        }
        "flat_line" => {
            for m in 0..mines {
                let len = 1080; // 90 minutes
                let s = g.start(m, 0, 1, len, 2.0);
                let j = if m % 2 == 0 { FACE_T1 } else { FACE2_T0 };
                let v = g.cells[m][j][s].value.max(0.2);
                for step in s..s + len {
                    g.cells[m][j][step].value = v;
                }
                let (from, to) = (g.ts(s), g.ts(s + len));
                g.label(m, j, "flat_line", from, to);
                // A negative: CO in clean air reads a flat 0 ppm for 3 hours.
                let s2 = g
                    .start(m, 1, 2, 2160, 1.0)
                    .min(g.steps.saturating_sub(2160));
                for step in s2..(s2 + 2160).min(g.steps) {
                    g.cells[m][CO_RETURN2][step].value = 0.0;
                }
            }
        }
        "spike" => {
            for m in 0..mines {
                for k in 0..6 {
                    let s = g.start(m, k, 6, 4, 2.0);
                    let j = [
                        FACE_T1, CO_RETURN, FACE_T0, HEADING_T1, CO_RETURN2, FACE2_T2,
                    ][k];
                    let co = j == CO_RETURN || j == CO_RETURN2;
                    let len = 1 + k % 2;
                    let huge = k == 2 || k == 5;
                    for step in s..s + len {
                        let c = &mut g.cells[m][j][step];
                        c.value = if huge {
                            3.6
                        } else if co {
                            c.value + rng.random_range(15.0..20.0_f64).round()
                        } else {
                            quantise(c.value + rng.random_range(0.4..0.6), 0.01)
                        };
                    }
                    let (from, to) = (g.ts(s), g.ts(s + len));
                    g.label(m, j, "spike", from, to);
                    if huge {
                        g.label(m, j, "rate", from, to);
                    }
                }
            }
        }
        "timestamp" => {
            for m in 0..mines {
                for k in 0..3 {
                    let s = g.start(m, k, 3, 2, 2.0);
                    let j = [FACE_T1, 18, CO_RETURN][k];
                    let c = g.cells[m][j][s];
                    let ts = g.ts(s);
                    let (r_ts, value) = match k {
                        0 => (ts, c.value + 0.05),
                        1 => (ts - 20 * 60_000, c.value),
                        _ => (ts + 3_600_000, c.value),
                    };
                    let r = Reading {
                        point: 0,
                        ts: r_ts,
                        value,
                        status: c.status,
                    };
                    g.extra.push((m, j, s, r, ts + 1_500));
                    g.label(m, j, "timestamp", ts, ts + 600_000);
                }
            }
        }
        "hugging" => {
            for m in 0..mines {
                let len = 1440; // 2 hours
                let s = g.start(m, 0, 1, len, 2.0);
                let j = if m % 2 == 0 { FACE_T1 } else { FACE2_T1 };
                for step in s..s + len {
                    let wave = 0.03 * (step as f64 / 60.0).sin();
                    let v = (0.945 + wave + 0.01 * gauss(rng)).clamp(0.90, 0.99);
                    g.cells[m][j][step].value = quantise(v, 0.01);
                }
                let (from, to) = (g.ts(s), g.ts(s + len));
                g.label(m, j, "hugging", from, to);
            }
        }
        "drop_after_approach" => {
            for m in 0..mines {
                for k in 0..2 {
                    let (ramp, hold, drop) = (60, 12, 120);
                    let s = g.start(m, k, 2, ramp + hold + drop, 2.0);
                    let j = [FACE_T1, HEADING_T1, FACE2_T1][(m + k) % 3];
                    let base = g.cells[m][j][s].value;
                    for i in 0..ramp + hold {
                        let target = 0.88 + 0.01 * gauss(rng);
                        let f = (i as f64 / ramp as f64).min(1.0);
                        g.cells[m][j][s + i].value = quantise(base + (target - base) * f, 0.01);
                    }
                    let d = s + ramp + hold;
                    let variant = (m + k) % 3;
                    for step in d..d + drop {
                        g.cells[m][j][step] = match variant {
                            0 => Cell {
                                value: 0.0,
                                status: 0,
                            },
                            1 => Cell {
                                value: 2.0,
                                status: status::CALIBRATION,
                            },
                            _ => Cell {
                                value: 0.0,
                                status: status::NOT_POLLED,
                            },
                        };
                    }
                    let (from, to) = (g.ts(d), g.ts(d + drop));
                    g.label(m, j, "drop_after_approach", from, to);
                }
            }
        }
        "interlock" => {
            for m in 0..mines {
                for k in 0..2 {
                    let len = 24 + 60 + 24;
                    let s = g.start(m, k, 2, len, 2.0);
                    let j = if k == 0 { FACE_T1 } else { FACE2_T1 };
                    let base = g.cells[m][j][s].value;
                    let mut over: Option<(usize, usize)> = None;
                    for i in 0..len {
                        let f = if i < 24 {
                            i as f64 / 24.0
                        } else if i < 84 {
                            1.0
                        } else {
                            1.0 - (i - 84) as f64 / 24.0
                        };
                        let v = quantise(base + (1.7 - base) * f + 0.01 * gauss(rng), 0.01);
                        g.cells[m][j][s + i].value = v;
                        if v >= 1.5 {
                            over = Some((over.map_or(s + i, |o| o.0), s + i));
                        }
                    }
                    // Mines whose index and episode differ in parity lose
                    // their power-off status (the interlock did not act);
                    // every other of the rest on face 1 (which has a feed
                    // sensor) shows power-off while the feed stays live
                    // (feed abnormal, 馈电异常).
                    let marker = if (m + k) % 2 == 1 {
                        NO_POWER_OFF
                    } else if k == 0 && m % 4 == 2 {
                        FEED_STUCK
                    } else {
                        0
                    };
                    if marker != 0
                        && let Some((a, b)) = over
                    {
                        for step in a..=b {
                            g.cells[m][j][step].status |= marker;
                        }
                        let (from, to) = (g.ts(a), g.ts(b + 1));
                        g.label(m, j, "interlock", from, to);
                    }
                }
            }
        }
        "uniform_noise" => {
            for m in 0..mines {
                let len = 720; // 1 hour
                let s = g.start(m, 0, 1, len, 2.0);
                let co = m % 2 == 1;
                let j = if co { CO_RETURN } else { FACE_T0 };
                for step in s..s + len {
                    g.cells[m][j][step].value = if co {
                        quantise(rng.random_range(0.1..23.0), 1.0)
                    } else {
                        quantise(rng.random_range(0.1..1.0), 0.01)
                    };
                }
                let (from, to) = (g.ts(s), g.ts(s + len));
                g.label(m, j, "uniform_noise", from, to);
            }
        }
        "replayed" => {
            let back = (4 * 3_600_000 / POLL_MS) as usize;
            for m in 0..mines {
                let len = 480; // 40 minutes
                let s = g.start(m, 0, 1, len, 5.0);
                // Even mines replay the same point 4 hours back; odd mines
                // feed face 2 with face 1's values of 4 hours ago.
                let (src, dst) = if m % 2 == 0 {
                    (FACE_T1, FACE_T1)
                } else {
                    (FACE_T1, FACE2_T1)
                };
                for i in 0..len {
                    g.cells[m][dst][s + i] = g.cells[m][src][s + i - back];
                }
                let (from, to) = (g.ts(s), g.ts(s + len));
                g.label(m, dst, "replayed", from, to);
            }
        }
        "dither" => {
            for m in 0..mines {
                // A stuck sensor with a fake one-step dither for 20 min to
                // 2 h (v, v + 0.01, v, …), on a face or heading point.
                for k in 0..2 {
                    let len = [240, 1440][k];
                    let s = g.start(m, k, 2, len, 2.0);
                    let j = [FACE_T1, HEADING_T1, FACE2_T0][(m + k) % 3];
                    let v = g.cells[m][j][s].value;
                    for i in 0..len {
                        g.cells[m][j][s + i].value = quantise(v + 0.01 * (i % 2) as f64, 0.01);
                    }
                    let (from, to) = (g.ts(s), g.ts(s + len));
                    g.label(m, j, "dither", from, to);
                }
            }
        }
        "neighbours_disagree" => {
            for m in 0..mines {
                let (rise, hold, fall) = (120, 240, 120);
                let len = rise + hold + fall + 48;
                // Face 1: corner and return rise, the face sensor stays put.
                let s = g.start(m, 0, 2, len, 2.0);
                let shape = |i: i64| -> f64 {
                    let i = i.max(0) as usize;
                    if i < rise {
                        i as f64 / rise as f64
                    } else if i < rise + hold {
                        1.0
                    } else if i < rise + hold + fall {
                        1.0 - (i - rise - hold) as f64 / fall as f64
                    } else {
                        0.0
                    }
                };
                for i in 0..len {
                    for (j, lag) in [(FACE_T0, 0_i64), (FACE_T2, 24)] {
                        let c = &mut g.cells[m][j][s + i];
                        c.value = quantise(c.value + 0.5 * shape(i as i64 - lag), 0.01);
                    }
                }
                let (from, to) = (g.ts(s), g.ts(s + rise + hold + fall));
                g.label(m, FACE_T1, "neighbours_disagree", from, to);
                // Face 2: all three rise, each a little later (a negative).
                let s2 = g.start(m, 1, 2, len, 2.0);
                for i in 0..len {
                    for (j, lag) in [(FACE2_T1, 0_i64), (FACE2_T0, 12), (FACE2_T2, 36)] {
                        let c = &mut g.cells[m][j][s2 + i];
                        c.value = quantise(c.value + 0.5 * shape(i as i64 - lag), 0.01);
                    }
                }
            }
        }
        "offset" => {
            let per_min = (60_000 / POLL_MS) as usize;
            for m in 0..mines {
                // The upper-corner sensor of each face (the one whose level,
                // about 0.38 %, leaves room for the offset: a lower one
                // would read zero, not an offset) reads 0.2–0.3 % lower
                // for 1–3 h (its zero turned down), then is put right.
                for (k, j) in [FACE_T0, FACE2_T0].into_iter().enumerate() {
                    let len = rng.random_range(60..180) * per_min;
                    let s = g.start(m, k, 2, len, 2.0);
                    let off = rng.random_range(0.2..0.3);
                    for i in 0..len {
                        let c = &mut g.cells[m][j][s + i];
                        c.value = quantise((c.value - off).max(0.0), 0.01);
                    }
                    g.label(m, j, "offset", g.ts(s), g.ts(s + len));
                }
                // The heading (a negative): more air, both sensors of the
                // path read half at once and stay there.
                let s2 = g.start(m, 1, 2, 60 * per_min, 2.0);
                for j in [HEADING_T1, HEADING_T1 + 1] {
                    for i in s2..g.steps {
                        let c = &mut g.cells[m][j][i];
                        c.value = quantise(c.value * 0.5, 0.01);
                    }
                }
            }
        }
        "sensitivity" => {
            let per_min = (60_000 / POLL_MS) as f64;
            let step_of = |h: f64| (h * 60.0 * per_min) as usize;
            for m in 0..mines {
                // Gas events on both faces' paths (every sensor rising
                // with its share and lag), six before and three after
                // one sensor of face 1 has its sensitivity halved; face 2
                // (the same events, nothing turned down) is a negative.
                let j_cut = [FACE_T1, FACE_T0, FACE_T2][m % 3];
                let cut = (step_of(6.2) + (m * 37) % 90).min(g.steps);
                let cut_end = g.steps.min(step_of(11.5));
                let mut truth: Vec<f64> = g.cells[m][j_cut].iter().map(|c| c.value).collect();
                for (k, h) in [1.0, 1.8, 2.6, 3.4, 4.2, 5.0, 7.0, 8.4, 9.8]
                    .into_iter()
                    .enumerate()
                {
                    let s = step_of(h) + (m * 53) % 120;
                    if s >= g.steps {
                        break;
                    }
                    let peak = rng.random_range(1.2..1.6);
                    let (rise, hold, tau) = (
                        rng.random_range(6.0..10.0) * per_min,
                        rng.random_range(8.0..15.0) * per_min,
                        rng.random_range(3.0..5.0) * per_min,
                    );
                    let len = (rise + hold + 8.0 * tau) as usize;
                    for face in [[FACE_T1, FACE_T0, FACE_T2], [FACE2_T1, FACE2_T0, FACE2_T2]] {
                        let base = g.cells[m][face[0]][s].value;
                        for (j, share, lag) in
                            [(face[0], 1.0, 0_i64), (face[1], 0.8, 6), (face[2], 0.6, 12)]
                        {
                            for i in 0..len.min(g.steps - s) {
                                let f = genuine(i as i64 - lag, rise, hold, tau);
                                let add = (peak - base) * share * f;
                                let c = &mut g.cells[m][j][s + i];
                                c.value = quantise(c.value + add, 0.01);
                                if j == j_cut {
                                    truth[s + i] = c.value;
                                }
                            }
                        }
                    }
                    if k >= 6 {
                        let end = (s + (rise + hold + 3.0 * tau) as usize).min(g.steps - 1);
                        g.label(m, j_cut, "sensitivity", g.ts(s), g.ts(end));
                    }
                }
                for (i, v) in truth.iter().enumerate().take(cut_end).skip(cut) {
                    g.cells[m][j_cut][i].value = quantise(0.5 * v, 0.01);
                }
            }
        }
        _ => {}
    }
}

/// A private marker: this over-limit cell must not get the power-off bit.
const NO_POWER_OFF: u16 = 1 << 15;
/// A private marker: this cell's power-off must not cut its air path's
/// feed.
const FEED_STUCK: u16 = 1 << 14;

/// Sets the alarm and power-off bits the mine's own system would set, and
/// cuts the feed (馈电) sensors of an air path at every step one of its
/// points is at power-off (the interlock acting), unless that cell is
/// marked [`FEED_STUCK`].
fn set_interlock_bits(g: &mut Grid, registry: &Registry, _name: &str) {
    for m in 0..g.mines {
        let points = &registry.mines[m].points;
        // (air path, step) pairs whose power is cut.
        let mut cut: Vec<(u32, usize)> = Vec::new();
        for (j, &p) in points.iter().enumerate() {
            let meta = &registry.points[p as usize];
            let Some(limits) = meta.limits else {
                continue;
            };
            for (step, c) in g.cells[m][j].iter_mut().enumerate() {
                let broken = c.status & NO_POWER_OFF != 0;
                let stuck = c.status & FEED_STUCK != 0;
                c.status &= !(NO_POWER_OFF | FEED_STUCK);
                if c.status & status::NOT_A_VALUE != 0 || c.status & status::CALIBRATION != 0 {
                    continue;
                }
                if c.value >= limits.alarm {
                    c.status |= status::ALARM;
                }
                if !broken && limits.power_off.is_some_and(|po| c.value >= po) {
                    c.status |= status::POWER_OFF;
                    if let (false, Some(path)) = (stuck, meta.air_path) {
                        cut.push((path, step));
                    }
                }
            }
        }
        for (j, &p) in points.iter().enumerate() {
            let meta = &registry.points[p as usize];
            let (true, Some(path)) = (meta.sensor.is_feed(), meta.air_path) else {
                continue;
            };
            for &(_, step) in cut.iter().filter(|(q, _)| *q == path) {
                g.cells[m][j][step].value = 0.0;
            }
        }
    }
}

/// Turns the grid into delivered readings: jitter, delivery delay, outages
/// with burst delivery and resends, and the extra (timestamp) readings.
fn deliver(g: &Grid, registry: &Registry, rng: &mut SmallRng) -> Vec<Delivered> {
    let outage_every = (6 * 3_600_000 / POLL_MS) as usize;
    let outage_len = (5 * 60_000 / POLL_MS) as usize;
    let mut out = Vec::with_capacity(g.mines * 32 * g.steps + g.extra.len());
    for m in 0..g.mines {
        let offset = (m * 997) % outage_every;
        for (j, &p) in registry.mines[m].points.iter().enumerate() {
            for step in 0..g.steps {
                let c = g.cells[m][j][step];
                let ts = g.ts(step) + jitter(m, j, step);
                let phase = (step + offset) % outage_every;
                let mut arrival = ts + rng.random_range(1_000..3_000);
                if phase < outage_len {
                    // Buffered during the outage, delivered at its end
                    // before live readings resume (store and forward).
                    arrival = g.ts(step + outage_len - phase) + 500;
                }
                let reading = Reading {
                    point: p,
                    ts,
                    value: c.value,
                    status: c.status,
                };
                out.push(Delivered { arrival, reading });
                if phase + 3 >= outage_every {
                    // The last readings before an outage are resent after it.
                    let end = g.ts(step + (outage_every - phase) + outage_len) + 2_500;
                    out.push(Delivered {
                        arrival: end,
                        reading,
                    });
                }
            }
        }
    }
    for &(m, j, step, mut r, arrival) in &g.extra {
        // The extra reading's time is relative to its cell's (jittered) time.
        r.ts += jitter(m, j, step);
        r.point = registry.mines[m].points[j];
        out.push(Delivered {
            arrival,
            reading: r,
        });
    }
    out.sort_by_key(|d| (d.arrival, d.reading.ts, d.reading.point));
    out
}

/// The timestamp jitter of a cell, 0..300 ms (deterministic).
fn jitter(m: usize, j: usize, step: usize) -> i64 {
    let h = crate::model::stable_hash(&[
        &(m as u64).to_le_bytes(),
        &(j as u64).to_le_bytes(),
        &(step as u64).to_le_bytes(),
    ]);
    (h % 300) as i64
}

/// One reading as JSONL for `minewatch simulate --readings`.
#[derive(Debug, Serialize)]
pub struct ReadingLine<'a> {
    /// Scenario.
    pub scenario: &'a str,
    /// Point code.
    pub point: &'a str,
    /// Event time, ms.
    pub ts: Millis,
    /// Value (null for NaN).
    pub value: Option<f64>,
    /// Status bits.
    pub status: u16,
    /// Arrival time, ms.
    pub arrival: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Size = Size {
        mines: 2,
        hours: 8.0,
    };

    #[test]
    fn scenarios_are_deterministic_and_labelled() {
        for name in SCENARIOS {
            let a = generate(name, SMALL, 7).expect("known");
            let b = generate(name, SMALL, 7).expect("known");
            assert_eq!(a.readings.len(), b.readings.len(), "{name}");
            assert_eq!(a.labels, b.labels, "{name}");
            assert_eq!(a.labels.is_empty(), name == "normal", "{name}");
            assert!(a.labels.iter().all(|l| l.from_ms < l.to_ms), "{name}");
            assert!(
                a.readings.windows(2).all(|w| w[0].arrival <= w[1].arrival),
                "{name}"
            );
        }
        assert!(generate("nonsense", SMALL, 7).is_none());
    }

    #[test]
    fn normal_traffic_has_bursts_resends_and_genuine_over_limits_that_decay() {
        let g = generate("normal", SMALL, 7).expect("known");
        let reg = Registry::build(&g.province, 1);
        let late = g
            .readings
            .iter()
            .filter(|d| d.arrival - d.reading.ts > 60_000)
            .count();
        assert!(late > 0);
        // Per point in event time: the over-limit readings are only the
        // genuine events' (face 1's T1 methane and the return's CO), and
        // no reading falls by more than a fifth of the line in one poll.
        let mut by_point: std::collections::BTreeMap<u32, Vec<Reading>> = Default::default();
        for d in &g.readings {
            by_point.entry(d.reading.point).or_default().push(d.reading);
        }
        let mut over = std::collections::BTreeSet::new();
        for (p, mut rs) in by_point {
            let meta = &reg.points[p as usize];
            let Some(l) = meta.limits else { continue };
            rs.sort_by_key(|r| r.ts);
            rs.dedup_by_key(|r| r.ts);
            for w in rs.windows(2) {
                if w[1].value >= l.alarm {
                    over.insert(meta.code.clone());
                }
                assert!(
                    w[0].value - w[1].value < 0.2 * l.alarm,
                    "{} {} -> {}",
                    meta.code,
                    w[0].value,
                    w[1].value
                );
            }
        }
        let want: std::collections::BTreeSet<String> = (0..SMALL.mines)
            .flat_map(|m| [FACE_T1, CO_RETURN].map(|j| g.province.mines[m].points[j].code.clone()))
            .collect();
        assert_eq!(over, want);
    }
}
