//! The detector-core feed shared by the `detector_core` (criterion, wall
//! time) and `detector_instructions` (a fixed number of batches, for
//! `valgrind --tool=callgrind`) benches: a simulated province of 20 mines ×
//! 32 points, 100 pre-built rounds of one reading per point, fed to one
//! [`ShardCore`] in batches of 512 (see `detector_core.rs` for the setup).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minewatch::config::Registry;
use minewatch::model::{Finding, LocationClass, Reading, SensorType, stable_hash, status};
use minewatch::pipeline::ShardCore;
use minewatch::simulators::{ProvinceSpec, province};

pub const BATCH: usize = 512;
const ROUNDS: usize = 100;
const POLL_MS: i64 = 5_000;
/// Event time of the first round (2026-11-23T00:00:00Z).
const START_MS: i64 = 1_795_392_000_000;

pub fn registry(suite: bool) -> Arc<Registry> {
    let mut config = province(ProvinceSpec {
        mines: 20,
        points: 32,
        polling_secs: 5.0,
    });
    config.detect.enabled = suite;
    Arc::new(Registry::build(&config, 1))
}

fn quantise(v: f64, step: f64) -> f64 {
    (v / step).round() * step
}

/// A normal value for a point: methane 0.2–0.4 %, CO a few ppm, plausible
/// figures for the rest; a slow drift shared by a mine's points (they sit
/// in the same air) plus hashed noise per point.
fn normal_value(sensor: SensorType, point: usize, round: usize, pass: usize, mine: usize) -> f64 {
    let t = (pass * ROUNDS + round) as f64;
    let drift = 0.5 + 0.5 * (t / 40.0 + mine as f64).sin();
    let h = stable_hash(&[
        &point.to_le_bytes(),
        &round.to_le_bytes(),
        &pass.to_le_bytes(),
    ]);
    let noise = (h % 1000) as f64 / 1000.0 - 0.5;
    let wobble = (drift + 0.1 * noise).clamp(0.0, 1.0);
    match sensor {
        SensorType::Methane
        | SensorType::HighLowMethane
        | SensorType::LaserMethane
        | SensorType::PipeMethane => quantise(0.2 + 0.2 * wobble, 0.01),
        SensorType::CarbonMonoxide => quantise(2.0 + 4.0 * wobble, 1.0),
        SensorType::Other(2) => 1.5 + wobble, // air speed, m/s
        SensorType::Other(3) => 22.0 + 4.0 * wobble, // temperature, ℃
        SensorType::Other(12) => 20.3 + 0.4 * wobble, // O2, %
        SensorType::Other(13) => 0.2 + 0.2 * wobble, // CO2, %
        SensorType::Other(14) => 2.0 + 3.0 * wobble, // dust, mg/m3
        SensorType::Other(_) => 1.0,          // switches: on
    }
}

/// `ROUNDS` rounds of one reading per point, mine by mine. With `episodes`,
/// the first face (T1) methane point of a mine goes over the limit in every
/// tenth round (staggered across mines) and is back to normal next round.
fn readings(reg: &Registry, episodes: bool, pass: usize) -> Vec<Reading> {
    let mut out = Vec::with_capacity(ROUNDS * reg.points.len());
    for round in 0..ROUNDS {
        let ts = START_MS + (pass * ROUNDS + round) as i64 * POLL_MS;
        for (m, mine) in reg.mines.iter().enumerate() {
            let mut face_done = false;
            for &p in &mine.points {
                let meta = &reg.points[p as usize];
                let mut value = normal_value(meta.sensor, p as usize, round, pass, m);
                let is_face = meta.sensor == SensorType::Methane
                    && meta.location == LocationClass::FaceT1
                    && !face_done;
                if is_face {
                    face_done = true;
                    if episodes && (round + m) % 10 == 0 {
                        value = if (round + m) % 50 == 0 { 1.6 } else { 1.2 };
                    }
                }
                // The mine's own system flags what it sees.
                let mut st = status::NORMAL;
                if let Some(l) = meta.limits {
                    if value >= l.alarm {
                        st |= status::ALARM;
                    }
                    if l.power_off.is_some_and(|po| value >= po) {
                        st |= status::POWER_OFF;
                    }
                }
                out.push(Reading {
                    point: p,
                    ts,
                    value,
                    status: st,
                });
            }
        }
    }
    out
}

/// A shard over the registry, the readings, and where the next batch starts.
pub struct Feed {
    core: ShardCore,
    reg: Arc<Registry>,
    episodes: bool,
    pass: usize,
    pub readings: Vec<Reading>,
    cursor: usize,
    pub out: Vec<Finding>,
}

impl Feed {
    pub fn new(reg: &Arc<Registry>, episodes: bool) -> Feed {
        Feed {
            core: ShardCore::new(reg.clone(), 0, START_MS),
            reg: reg.clone(),
            episodes,
            pass: 0,
            readings: readings(reg, episodes, 0),
            cursor: 0,
            out: Vec::with_capacity(256),
        }
    }

    /// Rebuilds the readings one full pass later in event time, with fresh
    /// noise.
    fn next_pass(&mut self) {
        self.pass += 1;
        self.readings = readings(&self.reg, self.episodes, self.pass);
        self.cursor = 0;
    }

    /// Processes `iters` batches; returns the time spent in `process` only.
    pub fn run(&mut self, iters: u64) -> (Duration, usize) {
        let mut elapsed = Duration::ZERO;
        let mut findings = 0;
        let mut left = iters;
        while left > 0 {
            if self.cursor + BATCH > self.readings.len() {
                self.next_pass();
            }
            let room = ((self.readings.len() - self.cursor) / BATCH) as u64;
            let n = room.min(left);
            let start = Instant::now();
            for _ in 0..n {
                let batch = &self.readings[self.cursor..self.cursor + BATCH];
                // Arrival: one second after the batch's last event time.
                let arrival = batch[BATCH - 1].ts + 1_000;
                self.out.clear();
                black_box(self.core.process(black_box(batch), arrival, &mut self.out));
                findings += self.out.len();
                self.cursor += BATCH;
            }
            elapsed += start.elapsed();
            left -= n;
        }
        (elapsed, findings)
    }
}
