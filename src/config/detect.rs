//! The `[detect]` section: the knobs of the data-anomaly (数据异常) and
//! falsification (造假嫌疑) detectors, with their defaults and validation,
//! and [`DetectConsts`], the figures the per-reading checks derive from
//! them (converted once per batch, not once per reading).
//! docs/DETECTORS.md describes each rule with these knobs.

use serde::Deserialize;

use crate::config::{Issue, Level};
use crate::model::Gas;

/// The longest hugging window, seconds (7 days): a twelfth of it, in ms,
/// bounds the in-order readings one bucket can count well inside `u32`.
pub const MAX_HUG_WINDOW_SECS: u64 = 7 * 86_400;

/// Buckets the hugging window is cut into (the falsification detector's
/// `BUCKETS`): the detectors read their sizes from here, so that the
/// config depends on no detector.
pub const HUG_BUCKETS: usize = 12;

/// Readings per hashed window of the replayed-window check (the replay
/// index's `WINDOW`).
pub const REPLAY_WINDOW: usize = 32;

/// Knobs of the data-anomaly and falsification detectors.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct DetectConfig {
    /// Run these detectors at all (over-limit and offline always run).
    pub enabled: bool,
    /// A reading older than its point's newest by at most this much is
    /// applied as late (counted); older still, it is also a timestamp
    /// anomaly. Either way it never enters the windows of the stateful
    /// detectors, which need event-time order. Seconds.
    pub allowed_lateness_secs: u64,
    /// A timestamp more than this far ahead of its arrival is an anomaly.
    /// Seconds.
    pub max_future_secs: u64,
    /// A timestamp anomaly ends after this long (event time) without
    /// another. Seconds.
    pub timestamp_quiet_secs: u64,
    /// Flag intervals identical to the millisecond over this many readings
    /// in a row (a perfect grid); 0 = off (national files and many
    /// gateways stamp on a grid by construction).
    pub grid_run: u32,
    /// An out-of-range episode ends after this many good readings in a row.
    pub range_clear_readings: u32,
    /// Flat line: |Δ| ≤ this counts as "unchanged".
    pub flat_epsilon: f64,
    /// Flat line: unchanged for at least this long (event time), seconds:
    /// the floor under the point's own learned limit.
    pub flat_secs: u64,
    /// Flat line: a run is flagged only beyond this many times the
    /// point's own `flat_run_quantile` of its past flat runs (as the upper
    /// edge of its octave bin).
    pub flat_run_factor: f64,
    /// Flat line: the quantile of the point's past flat-run lengths that
    /// `flat_run_factor` multiplies (in (0, 1]).
    pub flat_run_quantile: f64,
    /// Flat line: past runs a point needs before its own history is used;
    /// until then the limit is `flat_cold_secs`.
    pub flat_learn_runs: u32,
    /// Flat line: the limit of a point with too little history, seconds.
    pub flat_cold_secs: u64,
    /// Flat line: and over at least this many readings.
    pub flat_min_readings: u32,
    /// Flat line: only above this methane level, % (a sensor in clean air
    /// legitimately reads a steady value near zero).
    pub flat_min_methane: f64,
    /// Flat line: only above this CO level, ppm (clean air reads 0 ppm
    /// for hours).
    pub flat_min_co: f64,
    /// Quantisation step of methane values, % (hashes and noise tests).
    pub quantum_methane: f64,
    /// Quantisation step of CO values, ppm.
    pub quantum_co: f64,
    /// Spike: a value more than this many robust deviations from the
    /// baseline is an outlier.
    pub spike_k: f64,
    /// Spike: the deviation used is at least this many quanta.
    pub spike_floor_quanta: f64,
    /// Spike: an outlier run back to baseline within this many readings
    /// is a spike; a longer one is a level change (a real event).
    pub spike_max_readings: u32,
    /// Rate: the sensor's T90 response time, seconds. A change faster than
    /// span × 2.3 / T90 per second (the steepest slope of a first-order
    /// sensor seeing a full-scale step) is impossible.
    pub response_secs: f64,
    /// Hugging: the window, seconds (60 to [`MAX_HUG_WINDOW_SECS`]).
    pub hug_window_secs: u64,
    /// Hugging: the band starts at this fraction of the alarm level.
    pub hug_band: f64,
    /// Hugging: at least this share of the window's readings in the band.
    pub hug_share: f64,
    /// Hugging: and at least this many readings in the window.
    pub hug_min_readings: u32,
    /// Hugging: the band must hold at least this many steps of the point's
    /// learned resolution (a 0.1 %-step sensor has one value in a 0.1 %
    /// band, where it sits as any quantised walk does); a coarser point is
    /// not judged.
    pub hug_min_levels: u32,
    /// Drop after approach: "approaching" is at or above this fraction of
    /// the alarm level.
    pub approach_fraction: f64,
    /// Drop after approach: the approach must last this many readings in
    /// a row (a one- or two-reading spike is not an approach).
    pub approach_min_readings: u32,
    /// Drop after approach: the drop must follow within this long, s.
    pub approach_secs: u64,
    /// Drop after approach: "a drop to zero" is at or below this fraction
    /// of the alarm level.
    pub drop_zero_fraction: f64,
    /// Dither: this many readings in a row, each differing from the one
    /// before by the point's resolution and equal to the one two before,
    /// are a stuck sensor with a fake one-step dither (a real sensor's
    /// longest such run on the longwall file is 7).
    pub dither_min_readings: u32,
    /// Interlock: at or above the power-off level without a power-off
    /// status for this long, seconds (remote power-off ≤ 40 s).
    pub interlock_grace_secs: u64,
    /// Uniform noise: kurtosis below this (uniform 1.8, normal 3).
    pub uniform_max_kurtosis: f64,
    /// Uniform noise: |lag-1 autocorrelation| below this (real sensors
    /// drift, so successive values are correlated).
    pub uniform_max_autocorr: f64,
    /// Uniform noise: the window spans at least this many quanta.
    pub uniform_min_span_quanta: f64,
    /// Replay: a copied window must show at least this many changes
    /// between successive quantised values (of 31) to count.
    pub replay_min_changes: u32,
    /// Replay: one window in this many (chosen by content) is indexed.
    pub replay_sample: u32,
    /// Replay: the shard's window index has 2^this slots (16 bytes each).
    pub replay_table_bits: u32,
    /// Neighbours: the window over which rises are compared, minutes.
    pub neighbours_window_mins: u32,
    /// Neighbours: a rise is at least this much methane, %.
    pub neighbours_rise: f64,
    /// Neighbours: the largest lag searched between points, minutes.
    pub neighbours_max_lag_mins: u32,
    /// Offset: a step of at least this much methane, %, down against the
    /// point's air path (zero offsets of 0.2–0.3 % are the pattern).
    pub offset_min: f64,
    /// Offset: the step must hold this many minutes before it is raised
    /// (a real dip comes back).
    pub offset_confirm_mins: u32,
    /// Offset: the time constant, minutes, over which a point learns its
    /// level and its path's (the ratio a step is judged against).
    pub offset_learn_mins: u32,
    /// Sensitivity: flagged when the point rises by at most this fraction
    /// of what its learned share of its path's rises says.
    pub sensitivity_fraction: f64,
    /// Sensitivity: judged only on path rises of at least this much
    /// methane, % (smaller ones are learned from, not judged).
    pub sensitivity_min_rise: f64,
    /// Sensitivity: path rises a point must have followed before it is
    /// judged.
    pub sensitivity_learn_events: u32,
    /// Sensitivity: judged only while the learned share is steady: its
    /// mean absolute deviation at most this fraction of it (a point that
    /// follows its path now and then cannot be judged).
    pub sensitivity_max_spread: f64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            enabled: true,
            allowed_lateness_secs: 600,
            max_future_secs: 300,
            timestamp_quiet_secs: 600,
            grid_run: 0,
            range_clear_readings: 3,
            flat_epsilon: 1e-4,
            flat_secs: 1800,
            flat_run_factor: 4.0,
            flat_run_quantile: 0.999,
            flat_learn_runs: 50,
            flat_cold_secs: 6 * 3600,
            flat_min_readings: 20,
            flat_min_methane: 0.10,
            flat_min_co: 5.0,
            quantum_methane: 0.01,
            quantum_co: 1.0,
            spike_k: 6.0,
            spike_floor_quanta: 2.0,
            spike_max_readings: 2,
            response_secs: 20.0,
            hug_window_secs: 3600,
            hug_band: 0.9,
            hug_share: 0.5,
            hug_min_readings: 60,
            hug_min_levels: 2,
            approach_fraction: 0.8,
            approach_min_readings: 3,
            approach_secs: 120,
            drop_zero_fraction: 0.05,
            dither_min_readings: 40,
            interlock_grace_secs: 40,
            uniform_max_kurtosis: 2.2,
            uniform_max_autocorr: 0.3,
            uniform_min_span_quanta: 15.0,
            replay_min_changes: 16,
            replay_sample: 32,
            replay_table_bits: 21,
            neighbours_window_mins: 15,
            neighbours_rise: 0.15,
            neighbours_max_lag_mins: 5,
            offset_min: 0.15,
            offset_confirm_mins: 30,
            offset_learn_mins: 240,
            sensitivity_fraction: 0.7,
            sensitivity_min_rise: 0.3,
            sensitivity_learn_events: 5,
            sensitivity_max_spread: 0.25,
        }
    }
}

/// Figures of one gas that the per-reading checks derive from the knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GasConsts {
    /// The quantisation step.
    pub quantum: f64,
    /// `1.0 / quantum`.
    pub inv_quantum: f64,
    /// The spike baseline's deviation floor: `spike_floor_quanta × quantum`.
    pub spike_floor: f64,
    /// The rate check's allowance: `2.0 × quantum × t90_ms`.
    pub rate_slack: f64,
    /// The level at or below which a flat line is not flagged.
    pub flat_min: f64,
}

/// What the data-anomaly and falsification checks derive from the knobs:
/// seconds as milliseconds and the per-gas figures, each computed by the
/// very expression the checks used to evaluate per reading (same
/// operations in the same order, so the same bits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectConsts {
    /// `allowed_lateness_secs`, ms.
    pub allowed_lateness_ms: i64,
    /// `max_future_secs`, ms.
    pub max_future_ms: i64,
    /// `timestamp_quiet_secs`, ms.
    pub timestamp_quiet_ms: i64,
    /// `flat_secs`, ms.
    pub flat_ms: i64,
    /// `flat_cold_secs`, ms.
    pub flat_cold_ms: i64,
    /// `response_secs`, ms (the sensor's T90).
    pub t90_ms: f64,
    /// `0.5 × spike_k`: a run ends back within this many deviations.
    pub half_spike_k: f64,
    /// 2 × the T90, ms: a spike goes out and back faster than this.
    pub spike_span_ms: i64,
    /// `approach_secs`, ms.
    pub approach_ms: i64,
    /// `interlock_grace_secs`, ms.
    pub interlock_grace_ms: i64,
    /// One hugging bucket (a twelfth of `hug_window_secs`), ms, at least 1.
    pub hug_bucket_ms: i64,
    /// `hug_share / 2.0`: a hugging episode ends below this share.
    pub hug_share_end: f64,
    /// The fewest values in the band with which a hugging episode can
    /// open: 1, or 0 under a `hug_share` ≤ 0 (a share of 0 then opens).
    pub hug_min_band: u32,
    /// Readings without a replay hit after which a replay episode ends.
    pub replay_quiet: usize,
    /// Methane's figures.
    pub methane: GasConsts,
    /// Carbon monoxide's figures.
    pub co: GasConsts,
}

impl DetectConsts {
    /// The figures of `cfg`.
    pub fn of(cfg: &DetectConfig) -> DetectConsts {
        let t90_ms = 1000.0 * cfg.response_secs;
        let gas = |gas: Gas| {
            let q = cfg.quantum(gas);
            GasConsts {
                quantum: q,
                inv_quantum: 1.0 / q,
                spike_floor: cfg.spike_floor_quanta * q,
                rate_slack: 2.0 * q * t90_ms,
                flat_min: cfg.flat_min(gas),
            }
        };
        DetectConsts {
            allowed_lateness_ms: 1000 * cfg.allowed_lateness_secs as i64,
            max_future_ms: 1000 * cfg.max_future_secs as i64,
            timestamp_quiet_ms: 1000 * cfg.timestamp_quiet_secs as i64,
            flat_ms: 1000 * cfg.flat_secs as i64,
            flat_cold_ms: 1000 * cfg.flat_cold_secs as i64,
            t90_ms,
            half_spike_k: 0.5 * cfg.spike_k,
            spike_span_ms: (2.0 * t90_ms) as i64,
            approach_ms: 1000 * cfg.approach_secs as i64,
            interlock_grace_ms: 1000 * cfg.interlock_grace_secs as i64,
            hug_bucket_ms: (1000 * cfg.hug_window_secs as i64 / HUG_BUCKETS as i64).max(1),
            hug_share_end: cfg.hug_share / 2.0,
            hug_min_band: if 0.0 >= cfg.hug_share { 0 } else { 1 },
            replay_quiet: (4 * cfg.replay_sample as usize).max(REPLAY_WINDOW),
            methane: gas(Gas::Methane),
            co: gas(Gas::CarbonMonoxide),
        }
    }

    /// The figures of `gas`.
    #[inline]
    pub fn gas(&self, gas: Gas) -> &GasConsts {
        match gas {
            Gas::Methane => &self.methane,
            Gas::CarbonMonoxide => &self.co,
        }
    }
}

impl DetectConfig {
    /// The quantisation step of a gas.
    pub fn quantum(&self, gas: Gas) -> f64 {
        match gas {
            Gas::Methane => self.quantum_methane,
            Gas::CarbonMonoxide => self.quantum_co,
        }
    }

    /// The level at or below which a flat line is not flagged.
    pub fn flat_min(&self, gas: Gas) -> f64 {
        match gas {
            Gas::Methane => self.flat_min_methane,
            Gas::CarbonMonoxide => self.flat_min_co,
        }
    }

    /// Checks the knobs; issues carry the key path and a hint.
    pub fn validate(&self, out: &mut Vec<Issue>) {
        let mut err = |key: &str, message: String, hint: &str| {
            out.push(Issue {
                level: Level::Error,
                path: format!("detect.{key}"),
                message,
                hint: hint.into(),
            })
        };
        let positive = [
            (
                "flat_epsilon",
                self.flat_epsilon,
                "1e-4 (docs/DOMAIN.md §5)",
            ),
            ("quantum_methane", self.quantum_methane, "0.01 %"),
            ("quantum_co", self.quantum_co, "1 ppm"),
            ("spike_k", self.spike_k, "6"),
            ("spike_floor_quanta", self.spike_floor_quanta, "2"),
            ("response_secs", self.response_secs, "20 s (catalytic T90)"),
            ("uniform_max_kurtosis", self.uniform_max_kurtosis, "2.2"),
            (
                "uniform_min_span_quanta",
                self.uniform_min_span_quanta,
                "15",
            ),
            ("neighbours_rise", self.neighbours_rise, "0.15 %"),
            ("flat_run_factor", self.flat_run_factor, "4"),
            ("offset_min", self.offset_min, "0.15 %"),
            ("sensitivity_min_rise", self.sensitivity_min_rise, "0.3 %"),
        ];
        for (key, v, usual) in positive {
            if !(v.is_finite() && v > 0.0) {
                err(key, format!("{v} must be a positive number"), usual);
            }
        }
        let fractions = [
            ("hug_band", self.hug_band, "0.9"),
            ("hug_share", self.hug_share, "0.5"),
            ("approach_fraction", self.approach_fraction, "0.8"),
            ("drop_zero_fraction", self.drop_zero_fraction, "0.05"),
            ("uniform_max_autocorr", self.uniform_max_autocorr, "0.3"),
            ("sensitivity_fraction", self.sensitivity_fraction, "0.7"),
            (
                "sensitivity_max_spread",
                self.sensitivity_max_spread,
                "0.25",
            ),
        ];
        for (key, v, usual) in fractions {
            if !(v.is_finite() && v > 0.0 && v < 1.0) {
                err(key, format!("{v} must lie in (0, 1)"), usual);
            }
        }
        if !(self.flat_run_quantile > 0.0 && self.flat_run_quantile <= 1.0) {
            err(
                "flat_run_quantile",
                format!("{} must lie in (0, 1]", self.flat_run_quantile),
                "0.999",
            );
        }
        if self.flat_min_methane < 0.0 || self.flat_min_co < 0.0 {
            err(
                "flat_min_methane",
                "flat-line floors must not be negative".into(),
                "0.10 % methane, 5 ppm CO",
            );
        }
        let counts = [
            ("range_clear_readings", self.range_clear_readings, 1, 1000),
            ("flat_min_readings", self.flat_min_readings, 2, 100_000),
            ("spike_max_readings", self.spike_max_readings, 1, 8),
            ("hug_min_readings", self.hug_min_readings, 1, 100_000),
            ("hug_min_levels", self.hug_min_levels, 1, 100),
            ("dither_min_readings", self.dither_min_readings, 8, 100_000),
            ("flat_learn_runs", self.flat_learn_runs, 1, 60_000),
            ("approach_min_readings", self.approach_min_readings, 1, 1000),
            ("replay_min_changes", self.replay_min_changes, 0, 31),
            ("replay_sample", self.replay_sample, 1, 1024),
            ("replay_table_bits", self.replay_table_bits, 8, 28),
            ("neighbours_window_mins", self.neighbours_window_mins, 3, 30),
            (
                "neighbours_max_lag_mins",
                self.neighbours_max_lag_mins,
                0,
                10,
            ),
            ("offset_confirm_mins", self.offset_confirm_mins, 1, 1440),
            ("offset_learn_mins", self.offset_learn_mins, 10, 10_080),
            (
                "sensitivity_learn_events",
                self.sensitivity_learn_events,
                1,
                1000,
            ),
        ];
        for (key, v, lo, hi) in counts {
            if v < lo || v > hi {
                err(
                    key,
                    format!("{v} is out of range"),
                    &format!("use {lo}..={hi}"),
                );
            }
        }
        if self.neighbours_window_mins + self.neighbours_max_lag_mins > 31 {
            err(
                "neighbours_window_mins",
                "window plus lag exceeds the 32-minute history".into(),
                "keep neighbours_window_mins + neighbours_max_lag_mins ≤ 31",
            );
        }
        if self.flat_secs == 0 || self.approach_secs == 0 {
            err(
                "flat_secs",
                "flat_secs, approach_secs must be positive".into(),
                "defaults: flat_secs 1800, approach_secs 120",
            );
        }
        if !(60..=MAX_HUG_WINDOW_SECS).contains(&self.hug_window_secs) {
            err(
                "hug_window_secs",
                format!(
                    "{} s is outside 60 to {MAX_HUG_WINDOW_SECS} s (7 days)",
                    self.hug_window_secs
                ),
                "default 3600 (one hour)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let mut out = Vec::new();
        DetectConfig::default().validate(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn bad_knobs_are_named_with_a_hint() {
        let c = DetectConfig {
            hug_share: 1.5,
            replay_table_bits: 40,
            spike_k: f64::NAN,
            ..DetectConfig::default()
        };
        let mut out = Vec::new();
        c.validate(&mut out);
        let paths: Vec<&str> = out.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "detect.spike_k",
                "detect.hug_share",
                "detect.replay_table_bits"
            ]
        );
        assert!(out.iter().all(|i| !i.hint.is_empty()));
    }

    #[test]
    fn the_hugging_window_is_bounded_both_ways() {
        for secs in [59, MAX_HUG_WINDOW_SECS + 1] {
            let mut out = Vec::new();
            DetectConfig {
                hug_window_secs: secs,
                ..DetectConfig::default()
            }
            .validate(&mut out);
            assert_eq!(out.len(), 1, "{secs}: {out:?}");
            assert_eq!(out[0].path, "detect.hug_window_secs");
        }
        let mut out = Vec::new();
        DetectConfig {
            hug_window_secs: MAX_HUG_WINDOW_SECS,
            ..DetectConfig::default()
        }
        .validate(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
