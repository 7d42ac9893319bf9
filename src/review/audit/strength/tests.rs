//! Tests of the strength measures: each on a table of readings whose
//! answer is known, and the look-alikes that must score low.

use super::*;
use crate::config::{Registry, parse};

const T0: Millis = 1_795_392_000_000;
const POLL: Millis = 5_000;

fn registry() -> Registry {
    let (config, _) = parse(
        r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 5
points = [
  { code = "P-T1", sensor = "0001", location = "face_t1" },
  { code = "P-CO", sensor = "0004", location = "face_t2" },
]
"#,
    )
    .expect("valid");
    Registry::build(&config, 1)
}

fn r(i: i64, value: f64, status: u16) -> ArchivedReading {
    ArchivedReading {
        ts: T0 + i * POLL,
        point: 0,
        status,
        arrival: T0 + i * POLL + 1500,
        value,
    }
}

fn series(values: &[f64]) -> Vec<ArchivedReading> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| r(i as i64, *v, 0))
        .collect()
}

fn at(i: i64) -> Millis {
    T0 + i * POLL
}

/// A deterministic number in [0, 1) for step `i`.
fn noise(i: i64) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234_5678;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn q2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn run(flag: Flag, rs: &[ArchivedReading], evidence: (i64, i64), episode: (i64, i64)) -> Measured {
    run_with(flag, rs, evidence, episode, Context::None)
}

fn run_with(
    flag: Flag,
    rs: &[ArchivedReading],
    evidence: (i64, i64),
    episode: (i64, i64),
    context: Context<'_>,
) -> Measured {
    let reg = registry();
    let w = Window {
        readings: rs,
        evidence: (at(evidence.0), at(evidence.1)),
        episode: (at(episode.0), at(episode.1)),
    };
    measure(flag, &reg.points[0], &reg.detect, &w, context)
}

#[test]
fn sat_is_a_half_at_the_reference_and_durations_read_well() {
    assert_eq!(sat(1800.0, 1800.0), 0.5);
    assert_eq!(sat(5400.0, 1800.0), 0.75);
    assert_eq!(sat(0.0, 1.0), 0.0);
    assert_eq!(sat(f64::NAN, 1.0), 0.0);
    assert_eq!(sat(1.0, 0.0), 0.0);
    assert_eq!(duration_text(45_000), "45 s");
    assert_eq!(duration_text(5_400_000), "1 h 30 min");
    assert_eq!(duration_text(3_600_000), "1 h");
    assert_eq!(duration_text(2 * 86_400_000 + 3 * 3_600_000), "2 d 3 h");
    assert_eq!(duration_zh(5_400_000), "1 小时 30 分钟");
    assert_eq!(round3(0.123_456), 0.123);
    assert_eq!(round3(1.7), 1.0);
}

#[test]
fn hugging_is_the_share_in_the_band_less_the_share_above() {
    // 100 readings: 80 in [0.90, 1.00), 20 at 0.5.
    let vals: Vec<f64> = (0..100)
        .map(|i| {
            if i % 5 == 0 {
                0.5
            } else {
                q2(0.9 + 0.09 * noise(i))
            }
        })
        .collect();
    let rs = series(&vals);
    let m = run(Flag::Hugging, &rs, (0, 100), (50, 100));
    assert_eq!(m.strength, 0.8);
    assert_eq!(m.readings, 100);
    assert!(m.detail.contains("80 % of 100 readings"), "{}", m.detail);
    assert!(m.detail_zh.contains("80 %"), "{}", m.detail_zh);
    // Ten of the in-band readings over the line instead.
    let mut vals = vals;
    for v in vals.iter_mut().skip(1).step_by(10) {
        *v = 1.05;
    }
    let m = run(Flag::Hugging, &series(&vals), (0, 100), (50, 100));
    assert!((m.strength - 0.7 * 0.9).abs() < 1e-9, "{}", m.strength);
}

#[test]
fn a_flat_line_is_measured_by_its_longest_unchanged_run() {
    // 5 min of noise, 90 min flat at 0.23, 5 min of noise.
    let mut vals: Vec<f64> = (0..60).map(|i| q2(0.3 + 0.05 * noise(i))).collect();
    vals.extend(std::iter::repeat_n(0.23, 1081));
    vals.extend((0..60).map(|i| q2(0.3 + 0.05 * noise(i + 99))));
    let rs = series(&vals);
    let m = run(Flag::FlatLine, &rs, (60, 1141), (60, 1141));
    // 1080 intervals of 5 s = 90 min against the rule's 30 min.
    assert_eq!(m.strength, 0.75);
    assert!(
        m.detail.contains("1 h 30 min (1081 readings)"),
        "{}",
        m.detail
    );
    // The same length flat but only the rule's 30 min: a half.
    let rs = series(&[vec![0.23; 361], vec![0.5]].concat());
    assert_eq!(run(Flag::FlatLine, &rs, (0, 362), (0, 362)).strength, 0.5);
}

#[test]
fn interlock_weighs_how_long_and_how_far_above_power_off() {
    // 60 readings at 1.7 % without the power-off bit (5 min), then 1.7 %
    // with it: only the unflagged ones count.
    let mut rs: Vec<ArchivedReading> = (0..60).map(|i| r(i, 1.7, status::ALARM)).collect();
    rs.extend((60..80).map(|i| r(i, 1.7, status::ALARM | status::POWER_OFF)));
    let m = run(Flag::Interlock, &rs, (0, 80), (0, 80));
    let lasted = 60.0 * 5_000.0;
    let expect = 0.5 * (lasted / (lasted + 40_000.0)) + 0.5 * (0.2 / (0.2 + 0.15));
    assert!(
        (m.strength - round3(expect)).abs() < 1e-9,
        "{} {expect}",
        m.strength
    );
    assert!(m.detail.contains("60 readings"), "{}", m.detail);
    // All of it with the bit: the detector found the air path's feed
    // still live (feed abnormal); the same weighing, said so.
    let feed: Vec<ArchivedReading> = (0..60)
        .map(|i| r(i, 1.7, status::ALARM | status::POWER_OFF))
        .collect();
    let m = run(Flag::Interlock, &feed, (0, 60), (0, 60));
    assert!(
        (m.strength - round3(expect)).abs() < 1e-9,
        "{} {expect}",
        m.strength
    );
    assert!(m.detail.contains("feed abnormal"), "{}", m.detail);
    // Nothing at or above power-off: nothing to show.
    let low: Vec<ArchivedReading> = (0..60).map(|i| r(i, 1.2, status::ALARM)).collect();
    assert_eq!(run(Flag::Interlock, &low, (0, 60), (0, 60)).strength, 0.0);
}

#[test]
fn uniform_noise_scores_high_and_a_drifting_sensor_low() {
    let uniform: Vec<f64> = (0..720).map(|i| q2(0.1 + 0.9 * noise(i))).collect();
    let m = run(Flag::UniformNoise, &series(&uniform), (0, 720), (64, 720));
    assert!(m.strength > 0.75, "{} {}", m.strength, m.detail);
    assert!(m.detail.starts_with("kurtosis 1.7"), "{}", m.detail);
    // AR(1) drift plus a little noise: bell-shaped and autocorrelated.
    let mut x = 0.0;
    let drifting: Vec<f64> = (0..720)
        .map(|i| {
            x = 0.98 * x + 0.02 * (noise(i) - 0.5) * 10.0;
            q2(0.4 + 0.05 * x + 0.005 * noise(i + 7))
        })
        .collect();
    let m = run(Flag::UniformNoise, &series(&drifting), (0, 720), (64, 720));
    assert!(m.strength < 0.2, "{} {}", m.strength, m.detail);
}

#[test]
fn a_drop_after_approach_is_the_approach_times_the_hidden_share() {
    // Approach to 0.88 for 2 minutes, then 24 readings: 18 at 0, 6 normal.
    let mut rs: Vec<ArchivedReading> = (0..24).map(|i| r(i, 0.88, 0)).collect();
    rs.extend((24..42).map(|i| r(i, 0.0, 0)));
    rs.extend((42..48).map(|i| r(i, 0.3, 0)));
    let m = run(Flag::DropAfterApproach, &rs, (0, 48), (24, 48));
    assert!((m.strength - 0.88 * 0.75).abs() < 1e-9, "{}", m.strength);
    // Hidden by status counts like a zero.
    let mut hidden: Vec<ArchivedReading> = (0..24).map(|i| r(i, 0.95, 0)).collect();
    hidden.extend((24..48).map(|i| r(i, 2.0, status::CALIBRATION)));
    assert_eq!(
        run(Flag::DropAfterApproach, &hidden, (0, 48), (24, 48)).strength,
        0.95
    );
}

#[test]
fn out_of_range_is_the_share_of_bad_readings() {
    let mut rs: Vec<ArchivedReading> = (0..9).map(|i| r(i, -0.5, 0)).collect();
    rs.push(r(9, 0.0, status::SENSOR_FAULT));
    rs.extend((10..12).map(|i| r(i, 0.3, 0)));
    rs.push(r(12, f64::NAN, status::NOT_POLLED)); // no value: not out of range
    let m = run(Flag::OutOfRange, &rs, (0, 13), (0, 13));
    assert_eq!(m.strength, round3(10.0 / 13.0));
    assert!(m.detail.contains("10 of 13"), "{}", m.detail);
}

#[test]
fn a_spike_counts_robust_deviations_from_the_baseline_before() {
    // 10 minutes of 0.30 ± 0.01, then one reading at 3.60.
    let mut vals: Vec<f64> = (0..120)
        .map(|i| if i % 2 == 0 { 0.30 } else { 0.31 })
        .collect();
    vals.push(3.6);
    vals.push(0.3);
    let rs = series(&vals);
    let m = run(Flag::Spike, &rs, (0, 121), (120, 121));
    // Median 0.305, deviation floored at 2 quanta = 0.02: z ≈ 164.75.
    let z = (3.6 - 0.305) / 0.02;
    assert!(
        (m.strength - round3(z / (z + 6.0))).abs() < 1e-9,
        "{}",
        m.detail
    );
}

#[test]
fn rate_compares_the_steepest_change_with_the_sensor() {
    // 0.3 → 3.6 in 5 s on a 0–4 % sensor with T90 = 20 s: the sensor can
    // move 4 × 2.3 / 20 × 5 = 2.3 % (+ 2 quanta) in that time.
    let rs = series(&[0.3, 0.3, 3.6, 0.3]);
    let m = run(Flag::Rate, &rs, (0, 4), (2, 3));
    let ratio = 3.3 / (2.3 + 0.02);
    assert!(
        (m.strength - round3(ratio / (ratio + 1.0))).abs() < 1e-9,
        "{}",
        m.detail
    );
}

#[test]
fn timestamps_count_conflicts_and_far_late_or_future_readings() {
    let mut rs = series(&[0.3, 0.3, 0.3]);
    // The same time again with another value, and one from the future.
    rs.insert(2, r(1, 0.35, 0));
    let mut future = r(3, 0.3, 0);
    future.arrival = future.ts - 3_600_000;
    rs.push(future);
    let m = run(Flag::Timestamp, &rs, (0, 4), (0, 4));
    assert_eq!(m.strength, round3(sat(2.0, 1.0)));
    assert!(
        m.detail.starts_with("1 reading(s) repeating"),
        "{}",
        m.detail
    );
}

#[test]
fn replayed_is_the_length_of_the_repeated_run() {
    let rs = series(&[0.3; 10]);
    let src = ReplaySource {
        run: 480,
        source: "P-T1".into(),
        offset_ms: 4 * 3_600_000,
    };
    let m = run_with(
        Flag::Replayed,
        &rs,
        (0, 10),
        (0, 10),
        Context::Replay(Some(&src)),
    );
    assert_eq!(m.strength, round3(480.0 / 544.0));
    assert!(m.detail.contains("from 4 h earlier"), "{}", m.detail);
    let m = run_with(Flag::Replayed, &rs, (0, 10), (0, 10), Context::Replay(None));
    assert_eq!(m.strength, 0.0);
}

#[test]
fn neighbours_rising_while_the_point_stays_put_is_strong() {
    // 40 minutes; the neighbours rise by 0.5 % from minute 10 to 20.
    let n = 480;
    let flat: Vec<f64> = (0..n).map(|i| q2(0.3 + 0.01 * noise(i))).collect();
    let rise = |lag: i64| -> Vec<ArchivedReading> {
        (0..n)
            .map(|i| {
                let m = (i - 120 - lag).clamp(0, 120) as f64 / 120.0;
                r(i, q2(0.3 + 0.5 * m), 0)
            })
            .collect()
    };
    let neighbours = vec![("T0".to_string(), rise(0)), ("T2".to_string(), rise(24))];
    let own = series(&flat);
    let m = run_with(
        Flag::NeighboursDisagree,
        &own,
        (0, n),
        (240, n),
        Context::Neighbours(&neighbours),
    );
    assert!(m.strength > 0.9, "{} {}", m.strength, m.detail);
    assert!(m.detail.contains("T0, T2"), "{}", m.detail);
    // The point rising with them: nothing to see.
    let m = run_with(
        Flag::NeighboursDisagree,
        &rise(12),
        (0, n),
        (240, n),
        Context::Neighbours(&neighbours),
    );
    assert!(m.strength < 0.1, "{} {}", m.strength, m.detail);
}

#[test]
fn resends_of_the_same_time_are_counted_once() {
    let mut rs = series(&[0.95; 10]);
    let again = rs[3];
    rs.insert(4, again);
    let m = run(Flag::Hugging, &rs, (0, 10), (0, 10));
    assert_eq!(m.readings, 10);
    assert_eq!(m.strength, 1.0);
}
