//! Prints a digest of everything the detector core concludes over the
//! scored scenarios and a randomised stress feed: for checking that a
//! change meant to make the core faster (or tidier) leaves its output
//! bit-for-bit unchanged. Run it before and after the change and compare:
//!
//! ```text
//! cargo run --release --example findings_digest > before.txt
//! # … change …
//! cargo run --release --example findings_digest > after.txt && diff before.txt after.txt
//! ```
//!
//! Each line is one run: a source (a labelled or activity scenario at the
//! size `minewatch score` uses, or a stress seed), a batch size, a
//! `[detect]` variant, the number of findings and a hash of the `Debug`
//! text of every finding in order (shortest round-trip `f64`s, so the value
//! bits), of the applied counts of every batch and of the findings of the
//! ticks driven every second of arrival time.
//!
//! The stress feed mixes, per point and stretch of rounds, normal,
//! hugging, flat, uniform, replayed, approach-then-drop, over-limit and
//! silent behaviour, and per reading late, duplicate, far-future, NaN,
//! ±∞, negative and unknown-point readings and every status bit, on grid-
//! perfect or jittered timestamps.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use minewatch::config::{Config, IngestConfig, Registry};
use minewatch::ingest::Decoder;
use minewatch::model::{Finding, Millis, Reading, status};
use minewatch::pipeline::{Payload, ShardCore};
use minewatch::simulators::activity_labelled::{self, ACTIVITY_SCENARIOS};
use minewatch::simulators::labelled::{self, SCENARIOS, Size};
use minewatch::simulators::score::{SEED, decode_message};
use minewatch::simulators::{ProvinceSpec, province, with_feeds};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Arrival-time step of the ticks.
const TICK_MS: Millis = 1_000;

/// The running digest of one run.
struct Digest {
    hasher: DefaultHasher,
    findings: usize,
}

impl Digest {
    fn new() -> Digest {
        Digest {
            hasher: DefaultHasher::new(),
            findings: 0,
        }
    }

    fn findings(&mut self, out: &[Finding]) {
        for f in out {
            format!("{f:?}").hash(&mut self.hasher);
        }
        self.findings += out.len();
    }

    fn text(&mut self, t: impl std::fmt::Debug) {
        format!("{t:?}").hash(&mut self.hasher);
    }

    fn line(&self, source: &str, batch: usize, variant: &str) -> String {
        format!(
            "{source:<28} batch {batch:>3} {variant:<10} {:>8} findings  {:016x}",
            self.findings,
            self.hasher.finish()
        )
    }
}

/// A shard over `config`, ticking every second of arrival time.
struct Run {
    core: ShardCore,
    out: Vec<Finding>,
    tick: Millis,
    digest: Digest,
}

impl Run {
    fn new(config: &Config, first: Millis) -> (Run, Arc<Registry>) {
        let registry = Arc::new(Registry::build(config, 1));
        let run = Run {
            core: ShardCore::new(registry.clone(), 0, first),
            out: Vec::new(),
            tick: first + TICK_MS,
            digest: Digest::new(),
        };
        (run, registry)
    }

    fn tick_to(&mut self, arrival: Millis) {
        while self.tick <= arrival {
            self.out.clear();
            self.core.tick(self.tick, &mut self.out);
            self.digest.findings(&self.out);
            self.tick += TICK_MS;
        }
    }

    fn payload(&mut self, payload: &Payload, arrival: Millis) {
        self.tick_to(arrival);
        self.out.clear();
        let counts = self.core.process_payload(payload, arrival, &mut self.out);
        self.digest.findings(&self.out);
        self.digest.text(counts);
    }

    /// Readings in arrival order, `batch` at a time (a batch arrives with
    /// its last reading).
    fn readings(&mut self, readings: &[(Millis, Reading)], batch: usize) {
        for chunk in readings.chunks(batch) {
            let arrival = chunk[chunk.len() - 1].0;
            let rs: Vec<Reading> = chunk.iter().map(|(_, r)| *r).collect();
            self.payload(&Payload::Readings(rs), arrival);
        }
    }
}

/// The `[detect]` variants every source runs under.
fn variants(base: &Config) -> Vec<(&'static str, Config)> {
    let mut on = base.clone();
    on.detect.enabled = true;
    let mut off = base.clone();
    off.detect.enabled = false;
    let mut tight = on.clone();
    tight.detect.grid_run = 20;
    tight.detect.replay_table_bits = 8;
    tight.detect.replay_sample = 1;
    vec![("on", on), ("off", off), ("tight", tight)]
}

fn labelled_scenarios(lines: &mut Vec<String>) {
    for name in SCENARIOS {
        let Some(g) = labelled::generate(name, Size::standard(name), SEED) else {
            continue;
        };
        let readings: Vec<(Millis, Reading)> =
            g.readings.iter().map(|d| (d.arrival, d.reading)).collect();
        let first = readings.first().map_or(0, |r| r.0);
        for (variant, config) in variants(&g.province).into_iter().take(2) {
            for batch in [1, 37] {
                let (mut run, _) = Run::new(&config, first);
                run.readings(&readings, batch);
                lines.push(run.digest.line(name, batch, variant));
            }
        }
    }
}

fn activity_scenarios(lines: &mut Vec<String>) {
    for name in ACTIVITY_SCENARIOS {
        let Some(size) = activity_labelled::standard_size(name) else {
            continue;
        };
        let Some(g) = activity_labelled::generate(name, size, SEED) else {
            continue;
        };
        let first = g.messages.first().map_or(0, |m| m.arrival);
        for (variant, config) in variants(&g.province).into_iter().take(2) {
            let (mut run, registry) = Run::new(&config, first);
            let decoder = Decoder::new(registry.clone(), &IngestConfig::default(), 1 << 20);
            for msg in &g.messages {
                let (payload, _) = decode_message(&decoder, &registry, msg);
                run.payload(&payload, msg.arrival);
            }
            lines.push(run.digest.line(name, 1, variant));
        }
    }
}

/// What a point does over a stretch of rounds in the stress feed.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Normal,
    Hug,
    Flat,
    Uniform,
    /// Replays the values of another point (or itself) from this many
    /// rounds ago.
    Replay(usize, usize),
    Approach,
    Over,
    Silent,
}

/// A randomised feed over `mines` mines: (arrival, reading) in arrival order.
fn stress_feed(config: &Config, seed: u64, rounds: usize) -> Vec<(Millis, Reading)> {
    let registry = Registry::build(config, 1);
    let n = registry.points.len();
    let mut rng = SmallRng::seed_from_u64(seed);
    let start: Millis = labelled::START_MS;
    let mut modes = vec![Mode::Normal; n];
    let mut history: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); n];
    let mut feed = Vec::with_capacity(rounds * n);
    let grid: Vec<bool> = registry
        .mines
        .iter()
        .map(|_| rng.random_bool(0.5))
        .collect();
    for round in 0..rounds {
        for (m, mine) in registry.mines.iter().enumerate() {
            for &p in &mine.points {
                let i = p as usize;
                let meta = &registry.points[i];
                if round % 150 == 0 {
                    modes[i] = match rng.random_range(0..12) {
                        0 => Mode::Hug,
                        1 => Mode::Flat,
                        2 => Mode::Uniform,
                        3 if round >= 100 => {
                            Mode::Replay(rng.random_range(0..n), rng.random_range(40..100))
                        }
                        4 => Mode::Approach,
                        5 => Mode::Over,
                        6 => Mode::Silent,
                        _ => Mode::Normal,
                    };
                }
                let alarm = meta.limits.map_or(1.0, |l| l.alarm);
                let phase = round % 150;
                let mut value = match modes[i] {
                    Mode::Normal => {
                        alarm * (0.3 + 0.1 * ((round as f64) / 30.0).sin())
                            + rng.random_range(-0.02..0.02)
                    }
                    Mode::Hug => alarm * rng.random_range(0.9..0.999),
                    Mode::Flat => alarm * 0.4,
                    Mode::Uniform => alarm * rng.random_range(0.1..0.5),
                    Mode::Replay(of, back) => {
                        let h = &history[of];
                        let at = round.saturating_sub(back).min(h.len().saturating_sub(1));
                        h.get(at).copied().unwrap_or(alarm * 0.3)
                    }
                    Mode::Approach if phase < 20 => alarm * rng.random_range(0.85..0.99),
                    Mode::Approach if phase < 24 => 0.0,
                    Mode::Approach => alarm * 0.3 + rng.random_range(-0.02..0.02),
                    Mode::Over if phase < 40 => alarm * rng.random_range(1.0..1.8),
                    Mode::Over => alarm * 0.3,
                    Mode::Silent => {
                        history[i].push(f64::NAN);
                        continue;
                    }
                };
                if meta.sensor.is_feed() {
                    value = if rng.random_bool(0.8) { 1.0 } else { 0.0 };
                }
                value = (value * 100.0).round() / 100.0;
                history[i].push(value);
                let mut st = status::NORMAL;
                if let Some(l) = meta.limits {
                    if value >= l.alarm && rng.random_bool(0.95) {
                        st |= status::ALARM;
                    }
                    if l.power_off.is_some_and(|po| value >= po) && rng.random_bool(0.8) {
                        st |= status::POWER_OFF;
                    }
                }
                let jitter = if grid[m] { 0 } else { rng.random_range(0..400) };
                let mut ts = start + round as i64 * 5_000 + jitter;
                let mut point = p;
                match rng.random_range(0..400) {
                    0 => ts -= rng.random_range(1..900) * 1_000,
                    1 => ts += 86_400_000,
                    2 => value = f64::NAN,
                    3 => value = f64::INFINITY,
                    4 => value = f64::NEG_INFINITY,
                    5 => value = -rng.random_range(0.01..5.0),
                    6 => point = (n + rng.random_range(0..5)) as u32,
                    7 => st |= status::CALIBRATION,
                    8 => st |= status::SENSOR_FAULT,
                    9 => st |= status::OVER_RANGE,
                    10 => st |= status::NOT_POLLED,
                    11 => st |= status::PAUSED,
                    12 => st |= status::SUBSTATION_FAULT,
                    13 => st |= status::POWER_OFF,
                    _ => {}
                }
                let arrival = start + round as i64 * 5_000 + 1_000 + rng.random_range(0..3_000);
                let r = Reading {
                    point,
                    ts,
                    value,
                    status: st,
                };
                feed.push((arrival, r));
                if rng.random_range(0..300) == 0 {
                    // A resend, with the same or another value.
                    let mut again = r;
                    if rng.random_bool(0.5) {
                        again.value += 0.05;
                    }
                    feed.push((arrival, again));
                }
            }
        }
    }
    // Arrival order (stable: readings of one arrival keep their order).
    feed.sort_by_key(|(a, _)| *a);
    feed
}

fn stress(lines: &mut Vec<String>) {
    for (seed, mines) in [(1u64, 2usize), (2, 3), (3, 5)] {
        let base = with_feeds(province(ProvinceSpec {
            mines,
            points: 32,
            polling_secs: 5.0,
        }));
        let feed = stress_feed(&base, seed, 3_000);
        let first = feed.first().map_or(0, |r| r.0);
        for (variant, config) in variants(&base) {
            for batch in [1, 37, 512] {
                let (mut run, _) = Run::new(&config, first);
                run.readings(&feed, batch);
                lines.push(
                    run.digest
                        .line(&format!("stress seed {seed}"), batch, variant),
                );
            }
        }
    }
}

fn main() {
    let mut lines = Vec::new();
    stress(&mut lines);
    labelled_scenarios(&mut lines);
    activity_scenarios(&mut lines);
    for l in &lines {
        println!("{l}");
    }
    let mut all = DefaultHasher::new();
    lines.hash(&mut all);
    println!("all {:016x}", all.finish());
}
