//! The scenario engine: realistic sensor values for every point of a
//! simulated province, and scripted events laid over them.
//!
//! Normal values are a slow AR(1) drift around a level typical for the
//! sensor and its location, plus measurement noise, quantised to the
//! sensor's resolution (a live sensor always shows some noise).
//!
//! The `demo` scenario repeats every 180 s, each cycle on other mines:
//! - 5–70 s: a methane rise at a face (over-limit ≈ 13 s, evacuation
//!   ≈ 19 s, resolved ≈ 34 s as it decays exponentially), flagged alarm /
//!   power-off by the mine;
//! - 10–175 s: a CO rise to about 40 ppm at a return over 50 s, decaying
//!   with a time constant of 25 s (over-limit and evacuation ≈ 40–100 s):
//!   a genuine over-limit that ends, no falsification;
//! - 20–100 s: one point falls silent (point offline);
//! - 30–110 s: a whole mine falls silent (mine offline);
//! - 50–60 s: a methane sensor is calibrated with 2 % test gas, flagged
//!   status 4 (must raise nothing);
//! - 60–90 s: a CO sensor reads −30 ppm (a data anomaly: out of range);
//! - 70–100 s: a corner methane sensor climbs to 0.9 % and then reads 0.00
//!   (a falsification suspect: drop after approaching the limit).
//!
//! The power and seal patterns of each cycle are in
//! [`crate::simulators::activity::demo_injections`].

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::model::{LocationClass, SensorType, status};

/// Which script to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Normal traffic only.
    Normal,
    /// The demo events (see the module doc).
    Demo,
}

impl Scenario {
    /// Parses a scenario name.
    pub fn parse(name: &str) -> Option<Scenario> {
        match name {
            "normal" => Some(Scenario::Normal),
            "demo" => Some(Scenario::Demo),
            _ => None,
        }
    }
}

/// Length of one demo cycle, seconds.
pub const DEMO_CYCLE: f64 = 180.0;

/// One simulated sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Value in the point's unit.
    pub value: f64,
    /// National status bits.
    pub status: u16,
}

#[derive(Debug, Clone)]
struct PointSim {
    level: f64,
    sigma_drift: f64,
    sigma_noise: f64,
    step: f64,
    drift: f64,
    switch: bool,
}

/// The slots of a mine's points that the demo script uses.
#[derive(Debug, Clone, Copy, Default)]
struct Slots {
    face_methane: Option<usize>,
    corner_methane: Option<usize>,
    co: Option<usize>,
    quiet: Option<usize>,
    /// The feed sensor (馈电) on the face methane point's air path.
    feed: Option<usize>,
}

/// Values for every point of every mine.
pub struct Simulation {
    scenario: Scenario,
    points: Vec<Vec<PointSim>>,
    slots: Vec<Slots>,
    /// Per mine: the face methane point's power-off has cut the power of
    /// its air path (its feed sensor reads 0 until the point reads normal).
    cut: Vec<bool>,
    rng: SmallRng,
}

fn typical(sensor: SensorType, location: LocationClass) -> (f64, f64, f64, f64) {
    // (level, drift sigma, noise sigma, resolution)
    match (sensor.gas(), sensor) {
        (Some(crate::model::Gas::Methane), _) => {
            let level = match location {
                LocationClass::FaceT0 => 0.38,
                LocationClass::FaceT1 | LocationClass::Shearer => 0.26,
                LocationClass::FaceT2 => 0.24,
                LocationClass::FaceIntake | LocationClass::LoadingPoint => 0.04,
                LocationClass::HeadingT1 => 0.2,
                LocationClass::HeadingT2 => 0.17,
                LocationClass::PanelReturn => 0.2,
                LocationClass::MainReturn => 0.16,
                LocationClass::DrainageRoadway => 0.9,
                LocationClass::Other => 0.1,
            };
            (level, level * 0.04, 0.006, 0.01)
        }
        (Some(crate::model::Gas::CarbonMonoxide), _) => {
            let level = if location == LocationClass::FaceT0 {
                5.0
            } else {
                2.0
            };
            (level, 0.3, 0.4, 1.0)
        }
        (None, SensorType::Other(2)) => (2.4, 0.05, 0.03, 0.01),
        (None, SensorType::Other(3)) => (24.5, 0.05, 0.04, 0.1),
        (None, SensorType::Other(12)) => (20.7, 0.02, 0.03, 0.1),
        (None, SensorType::Other(13)) => (0.22, 0.01, 0.008, 0.01),
        (None, SensorType::Other(14)) => (4.0, 0.3, 0.4, 0.1),
        _ => (0.2, 0.01, 0.01, 0.01),
    }
}

impl Simulation {
    /// A simulation of every point of `province`, with a fixed seed.
    pub fn new(province: &Config, scenario: Scenario, seed: u64) -> Simulation {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut points = Vec::new();
        let mut slots = Vec::new();
        for mine in &province.mines {
            let mut sims = Vec::new();
            let mut s = Slots::default();
            for (j, p) in mine.points.iter().enumerate() {
                let sensor = SensorType::parse(&p.sensor).unwrap_or(SensorType::Other(0));
                let location = LocationClass::parse(&p.location).unwrap_or(LocationClass::Other);
                let switch = sensor.code() >= 1000;
                let (level, sd, sn, step) = typical(sensor, location);
                let jitter = 1.0 + rng.random_range(-0.15..0.15);
                sims.push(PointSim {
                    level: level * jitter,
                    sigma_drift: sd,
                    sigma_noise: sn,
                    step,
                    drift: 0.0,
                    switch,
                });
                match (sensor.gas(), location) {
                    (Some(crate::model::Gas::Methane), LocationClass::FaceT1) => {
                        s.face_methane.get_or_insert(j);
                    }
                    (Some(crate::model::Gas::Methane), LocationClass::FaceT0) => {
                        s.corner_methane.get_or_insert(j);
                    }
                    (Some(crate::model::Gas::CarbonMonoxide), _) => {
                        s.co.get_or_insert(j);
                    }
                    (None, _) if !switch => s.quiet = Some(j),
                    _ => {}
                }
            }
            let path_of = |j: usize| {
                mine.points[j]
                    .place
                    .as_deref()
                    .and_then(crate::config::registry::air_path_of)
            };
            if let Some(face) = s.face_methane.and_then(path_of) {
                s.feed = mine.points.iter().enumerate().position(|(j, p)| {
                    SensorType::parse(&p.sensor).is_some_and(SensorType::is_feed)
                        && path_of(j) == Some(face)
                });
            }
            points.push(sims);
            slots.push(s);
        }
        Simulation {
            scenario,
            cut: vec![false; points.len()],
            points,
            slots,
            rng,
        }
    }

    /// True when mine `m` publishes nothing at `t` seconds into the run.
    pub fn mine_silent(&self, m: usize, t: f64) -> bool {
        self.scenario == Scenario::Demo && {
            let (cycle, u) = split(t);
            m == demo_mine(cycle, 3, self.points.len()) && (30.0..110.0).contains(&u)
        }
    }

    /// The next sample of point `j` of mine `m` at `t` seconds into the run,
    /// or `None` when the scenario keeps it silent.
    pub fn sample(&mut self, m: usize, j: usize, t: f64) -> Option<Sample> {
        let s = self.slots[m];
        let mut sample = self.scripted(m, j, t);
        if s.face_methane == Some(j) {
            // The mine's interlock acts: power-off cuts the path's power,
            // which its feed sensor shows; it comes back once the point
            // reads no power-off.
            self.cut[m] = sample.is_some_and(|x| x.status & status::POWER_OFF != 0);
        }
        if s.feed == Some(j)
            && self.cut[m]
            && let Some(x) = &mut sample
        {
            x.value = 0.0;
        }
        sample
    }

    fn scripted(&mut self, m: usize, j: usize, t: f64) -> Option<Sample> {
        let normal = self.normal(m, j);
        if self.scenario == Scenario::Normal {
            return Some(normal);
        }
        let n = self.points.len();
        let (cycle, u) = split(t);
        let s = self.slots[m];
        let noise = normal.value - self.points[m][j].level;
        if m == demo_mine(cycle, 0, n) && s.face_methane == Some(j) && (5.0..70.0).contains(&u) {
            // Up over 23 s, then diluted by the ventilation: an
            // exponential decay back towards the point's level.
            let level = self.points[m][j].level;
            let v = if u < 28.0 {
                ramp(u, &[(5.0, 0.3), (15.0, 1.2), (22.0, 1.8), (28.0, 1.8)])
            } else {
                level + (1.8 - level) * (-(u - 28.0) / 8.0).exp()
            };
            let value = quantise(v + noise, 0.01);
            // The mine's own system flags the alarm and cuts power.
            let mut st = status::NORMAL;
            if value >= 1.0 {
                st |= status::ALARM;
            }
            if value >= 1.5 {
                st |= status::POWER_OFF;
            }
            return Some(Sample { value, status: st });
        }
        if m == demo_mine(cycle, 1, n) && s.co == Some(j) && (10.0..175.0).contains(&u) {
            // Up over 50 s, held 20 s, then diluted over minutes (time
            // constant 25 s, squeezed into the demo's 3-minute cycle): a
            // genuine over-limit that ends passes every value between.
            let level = self.points[m][j].level;
            let v = if u < 80.0 {
                ramp(u, &[(10.0, level), (60.0, 40.0), (80.0, 40.0)])
            } else {
                level + (40.0 - level) * (-(u - 80.0) / 25.0).exp()
            };
            return Some(Sample {
                value: quantise(v + noise, 1.0),
                status: status::NORMAL,
            });
        }
        if m == demo_mine(cycle, 2, n) && s.quiet == Some(j) && (20.0..100.0).contains(&u) {
            return None;
        }
        if m == demo_mine(cycle, 4, n) && s.corner_methane == Some(j) && (50.0..60.0).contains(&u) {
            return Some(Sample {
                value: 2.0,
                status: status::CALIBRATION,
            });
        }
        if m == demo_mine(cycle, 5, n) && s.co == Some(j) && (60.0..90.0).contains(&u) {
            return Some(Sample {
                value: -30.0,
                status: status::NORMAL,
            });
        }
        if m == demo_mine(cycle, 6, n) && s.corner_methane == Some(j) && (70.0..100.0).contains(&u)
        {
            let value = if u < 88.0 {
                quantise(
                    ramp(u, &[(70.0, 0.5), (76.0, 0.9), (88.0, 0.93)]) + noise,
                    0.01,
                )
            } else {
                0.0
            };
            return Some(Sample {
                value,
                status: status::NORMAL,
            });
        }
        Some(normal)
    }

    fn normal(&mut self, m: usize, j: usize) -> Sample {
        let rng = &mut self.rng;
        let p = &mut self.points[m][j];
        if p.switch {
            return Sample {
                value: 1.0,
                status: status::NORMAL,
            };
        }
        p.drift = 0.97 * p.drift + p.sigma_drift * gauss(rng);
        let v = (p.level + p.drift + p.sigma_noise * gauss(rng)).max(0.0);
        Sample {
            value: quantise(v, p.step),
            status: status::NORMAL,
        }
    }
}

fn split(t: f64) -> (u64, f64) {
    let cycle = (t / DEMO_CYCLE).floor();
    (cycle as u64, t - cycle * DEMO_CYCLE)
}

/// The mine playing role `role` in demo cycle `cycle`.
fn demo_mine(cycle: u64, role: usize, mines: usize) -> usize {
    if mines == 0 {
        return usize::MAX;
    }
    (role * 4 + 3 + cycle as usize * 5) % mines
}

fn ramp(u: f64, knots: &[(f64, f64)]) -> f64 {
    for w in knots.windows(2) {
        let ((t0, v0), (t1, v1)) = (w[0], w[1]);
        if u <= t1 {
            return v0 + (v1 - v0) * ((u - t0) / (t1 - t0)).clamp(0.0, 1.0);
        }
    }
    knots.last().map_or(0.0, |k| k.1)
}

fn quantise(v: f64, step: f64) -> f64 {
    ((v / step).round() * step * 1e6).round() / 1e6
}

/// A standard normal draw (Box–Muller).
fn gauss(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulators::province::{ProvinceSpec, province};

    fn sim(scenario: Scenario) -> Simulation {
        let p = province(ProvinceSpec {
            mines: 20,
            points: 32,
            polling_secs: 5.0,
        });
        Simulation::new(&p, scenario, 7)
    }

    #[test]
    fn normal_traffic_stays_below_every_alarm_line() {
        let mut s = sim(Scenario::Normal);
        for step in 0..600 {
            for m in 0..20 {
                for j in 0..18 {
                    let v = s.sample(m, j, step as f64).unwrap().value;
                    let limit = if [4, 5, 8, 12, 15].contains(&j) {
                        24.0
                    } else if j == 3 {
                        0.5
                    } else if j == 14 {
                        0.75
                    } else if j == 17 {
                        2.5
                    } else {
                        1.0
                    };
                    assert!(v >= 0.0 && v < limit * 0.8, "mine {m} point {j}: {v}");
                }
            }
        }
    }

    #[test]
    fn the_demo_script_plays_each_event_on_its_mine() {
        let mut s = sim(Scenario::Demo);
        // Cycle 0: methane at mine 3, CO at mine 7, quiet point at mine 11,
        // silent mine 15, calibration at mine 19.
        assert!(s.sample(3, 0, 22.0).unwrap().value > 1.7);
        assert!(s.sample(7, 4, 70.0).unwrap().value >= 38.0);
        assert_eq!(s.sample(11, 28, 50.0), None);
        assert!(s.mine_silent(15, 60.0));
        assert!(!s.mine_silent(15, 120.0));
        assert_eq!(s.sample(19, 1, 55.0).unwrap().status, status::CALIBRATION);
        // Role 5 (mine 3): CO below zero; role 6 (mine 7): corner methane
        // near the line, then zero.
        assert_eq!(s.sample(3, 4, 70.0).unwrap().value, -30.0);
        assert!(s.sample(7, 1, 80.0).unwrap().value >= 0.85);
        assert_eq!(s.sample(7, 1, 95.0).unwrap().value, 0.0);
        assert!(s.sample(3, 0, 45.0).unwrap().value < 1.0);
        // The next cycle moves to other mines.
        assert!(s.sample(8, 0, DEMO_CYCLE + 22.0).unwrap().value > 1.7);
    }

    #[test]
    fn the_demo_s_genuine_over_limits_raise_no_falsification_and_its_fakes_do() {
        use crate::config::Registry;
        use crate::model::{AlertKind, Finding, Flag, Reading};
        use crate::pipeline::ShardCore;
        use std::sync::Arc;
        let p = crate::simulators::with_feeds(province(ProvinceSpec {
            mines: 20,
            points: 32,
            polling_secs: 5.0,
        }));
        let registry = Arc::new(Registry::build(&p, 1));
        let mut s = Simulation::new(&p, Scenario::Demo, 7);
        let t0: i64 = 1_795_392_000_000;
        let mut core = ShardCore::new(registry.clone(), 0, t0);
        let mut out = Vec::new();
        let mut raised: Vec<(String, Flag, u64)> = Vec::new();
        // Two cycles at one sample a second (`simulate --rate 1`).
        for step in 0..(2 * DEMO_CYCLE as i64) {
            let t = step as f64;
            let mut batch = Vec::new();
            for (m, mine) in p.mines.iter().enumerate() {
                if s.mine_silent(m, t) {
                    continue;
                }
                for j in 0..mine.points.len() {
                    let Some(x) = s.sample(m, j, t) else { continue };
                    batch.push(Reading {
                        point: registry.mines[m].points[j],
                        ts: t0 + step * 1000,
                        value: x.value,
                        status: x.status,
                    });
                }
            }
            out.clear();
            core.process(&batch, t0 + step * 1000 + 500, &mut out);
            for f in &out {
                if let Finding::FlagRaised { point, flag, .. } = f
                    && flag.kind() == AlertKind::FalsificationSuspect
                {
                    let code = registry.points[*point as usize].code.clone();
                    raised.push((code, *flag, split(step as f64).0));
                }
            }
        }
        // Per cycle: the corner point of role 6 falls from 0.93 % to 0
        // (drop after approach); the face methane (role 0) and the CO
        // rise to 40 ppm (role 1) end as gas does, raising nothing.
        let mut want = Vec::new();
        for cycle in 0..2 {
            let m = demo_mine(cycle, 6, 20);
            let j = s.slots[m].corner_methane.expect("a corner point");
            want.push((
                p.mines[m].points[j].code.clone(),
                Flag::DropAfterApproach,
                cycle,
            ));
        }
        assert_eq!(raised, want);
    }

    #[test]
    fn ramps_interpolate_and_hold_their_ends() {
        let k = [(0.0, 0.0), (10.0, 1.0)];
        assert_eq!(ramp(5.0, &k), 0.5);
        assert_eq!(ramp(20.0, &k), 1.0);
        assert_eq!(quantise(0.123456, 0.01), 0.12);
    }
}
