//! Detector-core throughput on one core: readings per second through
//! [`minewatch::pipeline::ShardCore::process`] (the offline detector's
//! arrival bookkeeping plus the over-limit state machine of every point),
//! with no queues, threads, decoding or alert stage around it.
//!
//! Setup: a simulated province of 20 mines × 32 points (640 points, polling
//! 5 s), one shard, and 100 pre-built rounds of one reading per point (64 000
//! readings, event time advancing 5 s per round), fed in batches of 512.
//!
//! - `with_episodes`: about 0.3 % of the readings take a face methane point
//!   over its alarm line (1.2 %, every fifth of them 1.6 %, which also
//!   reaches the evacuation line) and the next round brings it back, so the
//!   episode open/evacuate/close path and finding output run.
//! - `normal_only`: the same readings with every value normal: no findings.
//!
//! Timestamps are shifted forward (outside the timed region) each time the
//! pre-built readings wrap around, so no reading is ever "late".
//!
//! Run: `cargo bench --bench detector_core` (criterion reports `thrpt` in
//! elements, i.e. readings, per second). Target (issue): ≥ 10 M readings/s
//! per core.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minewatch::config::Registry;
use minewatch::model::{Finding, LocationClass, Reading, SensorType, status};
use minewatch::pipeline::ShardCore;
use minewatch::simulators::{ProvinceSpec, province};

const BATCH: usize = 512;
const ROUNDS: usize = 100;
const POLL_MS: i64 = 5_000;
/// Event time of the first round (2026-11-23T00:00:00Z).
const START_MS: i64 = 1_795_392_000_000;

fn registry() -> Arc<Registry> {
    let config = province(ProvinceSpec {
        mines: 20,
        points: 32,
        polling_secs: 5.0,
    });
    Arc::new(Registry::build(&config, 1))
}

/// A normal value for a point: methane 0.2–0.4 %, CO a few ppm, plausible
/// figures for the rest, varying by point and round.
fn normal_value(sensor: SensorType, point: usize, round: usize) -> f64 {
    let wobble = ((point * 7 + round * 13) % 100) as f64 / 100.0;
    match sensor {
        SensorType::Methane
        | SensorType::HighLowMethane
        | SensorType::LaserMethane
        | SensorType::PipeMethane => 0.2 + 0.2 * wobble,
        SensorType::CarbonMonoxide => 2.0 + 4.0 * wobble,
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
fn readings(reg: &Registry, episodes: bool) -> Vec<Reading> {
    let mut out = Vec::with_capacity(ROUNDS * reg.points.len());
    for round in 0..ROUNDS {
        let ts = START_MS + round as i64 * POLL_MS;
        for (m, mine) in reg.mines.iter().enumerate() {
            let mut face_done = false;
            for &p in &mine.points {
                let meta = &reg.points[p as usize];
                let mut value = normal_value(meta.sensor, p as usize, round);
                let is_face = meta.sensor == SensorType::Methane
                    && meta.location == LocationClass::FaceT1
                    && !face_done;
                if is_face {
                    face_done = true;
                    if episodes && (round + m) % 10 == 0 {
                        value = if (round + m) % 50 == 0 { 1.6 } else { 1.2 };
                    }
                }
                out.push(Reading {
                    point: p,
                    ts,
                    value,
                    status: status::NORMAL,
                });
            }
        }
    }
    out
}

/// A shard over the registry, the readings, and where the next batch starts.
struct Feed {
    core: ShardCore,
    readings: Vec<Reading>,
    cursor: usize,
    out: Vec<Finding>,
}

impl Feed {
    fn new(reg: &Arc<Registry>, episodes: bool) -> Feed {
        Feed {
            core: ShardCore::new(reg.clone(), 0, START_MS),
            readings: readings(reg, episodes),
            cursor: 0,
            out: Vec::with_capacity(256),
        }
    }

    /// Moves every reading one full pass later in event time.
    fn next_pass(&mut self) {
        let span = ROUNDS as i64 * POLL_MS;
        for r in &mut self.readings {
            r.ts += span;
        }
        self.cursor = 0;
    }

    /// Processes `iters` batches; returns the time spent in `process` only.
    fn run(&mut self, iters: u64) -> (Duration, usize) {
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

fn bench(c: &mut Criterion) {
    let reg = registry();

    // Sanity: one pass of each feed produces what it is meant to.
    for (episodes, want_findings) in [(true, true), (false, false)] {
        let mut feed = Feed::new(&reg, episodes);
        let batches = (feed.readings.len() / BATCH) as u64;
        let (_, findings) = feed.run(batches);
        assert_eq!(findings > 0, want_findings, "episodes={episodes}");
        if episodes {
            eprintln!(
                "with_episodes: {findings} findings per {} readings",
                batches as usize * BATCH
            );
        }
    }

    let mut group = c.benchmark_group("detector_core");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, episodes) in [("with_episodes", true), ("normal_only", false)] {
        let mut feed = Feed::new(&reg, episodes);
        group.bench_function(name, |b| b.iter_custom(|iters| feed.run(iters).0));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
