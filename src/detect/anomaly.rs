//! Data-anomaly (数据异常) detectors of one point, in event time: out of
//! range, flat line, spike, impossible rate of change and timestamps.
//!
//! Rules (knobs in `[detect]`, see [`crate::config::detect::DetectConfig`]
//! and docs/DETECTORS.md):
//! - **out_of_range**: a value outside the measuring range (± 1 % of the
//!   span), negative or above 100 % by volume for a gas without a range,
//!   NaN/infinite, or a sensor-fault / over-range status. Ends after
//!   `range_clear_readings` good readings in a row. (A value past twice the
//!   top of the range is also no gas for the over-limit detector: see
//!   [`crate::config::registry::fault_above`].)
//! - **timestamp**: a duplicate timestamp with a different value (a resend
//!   with the same value is not an anomaly), a reading older than the
//!   point's newest by more than `allowed_lateness_secs`, one more than
//!   `max_future_secs` ahead of its arrival, or (when `grid_run` > 0) that
//!   many identical intervals in a row. Ends after `timestamp_quiet_secs`
//!   without another.
//! - **flat_line** (methane, CO): |Δ| ≤ `flat_epsilon` for at least
//!   `flat_min_readings` and longer than the point's own limit, while the
//!   mine is declared producing and the value is above `flat_min_*` (clean
//!   air legitimately reads a steady 0 ppm CO for hours). The limit is
//!   learned online: each point keeps a histogram of the lengths of its
//!   past flat runs in octave bins (16 counts, halved now and then so that
//!   recent days weigh most); a run is flagged beyond `flat_run_factor` ×
//!   the upper edge of the bin of its `flat_run_quantile`, and never before
//!   `flat_secs`. Real sensors in stable air sit on one value for hours,
//!   and how long depends on the sensor's resolution and the air: only a
//!   run far beyond what the point itself shows is suspect. With fewer
//!   than `flat_learn_runs` runs seen the limit is `flat_cold_secs`. A run
//!   that was flagged is not learned. Ends at the first change.
//! - **spike** (methane, CO): a run of at most `spike_max_readings` values
//!   more than `spike_k` robust deviations from a robust rolling baseline,
//!   followed by a return to within half that distance of it, out and back
//!   within 2 × `response_secs` (from the value before to the one back:
//!   faster than a sensor can follow a real change; at slower polling a
//!   one-reading excursion may be a real puff of gas and is left alone). The
//!   baseline is a Huber-clipped
//!   exponentially weighted level with an exponentially weighted mean
//!   absolute deviation (floored at `spike_floor_quanta` quanta): the O(1)
//!   stand-in for a rolling median/MAD. A longer run is a level change (a
//!   real event) and re-seeds the baseline.
//! - **rate** (methane, CO): |Δv|/Δt above span × 2.3 / `response_secs`,
//!   the steepest slope a first-order sensor with that T90 can show.
//!
//! Late-data rule: a reading not newer than the point's newest goes through
//! the stateless checks (range, status, timestamps) but never into the
//! flat-line, spike or rate state, which need event-time order; the shard
//! counts it as late. A reading from the far future does not advance the
//! point's clock.

use std::hint::select_unpredictable;

use crate::config::detect::{DetectConfig, DetectConsts};
use crate::model::{Finding, Flag, Gas, Millis, PointIdx, Reading, status};

/// Where a reading falls in its point's event-time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newer than every reading before it.
    InOrder,
    /// The same timestamp as the newest.
    Duplicate,
    /// Older than the newest, within the allowed lateness.
    Late,
    /// Older than the newest by more than the allowed lateness.
    TooLate,
    /// Too far ahead of its arrival.
    Future,
}

impl Order {
    /// True when the reading may enter the stateful detectors.
    pub fn in_order(self) -> bool {
        self == Order::InOrder
    }
}

/// What the anomaly checks need to know about a point, with the figures
/// they derive from its range and its gas's constants worked out once
/// ([`PointParams::new`]; the same operations in the same order, so the
/// same bits). Built from one [`DetectConsts`]: made again whenever the
/// knobs change (the shard does so when the registry changes).
#[derive(Debug, Clone, Copy)]
pub struct PointParams {
    /// The gas, for methane and CO points.
    pub gas: Option<Gas>,
    /// The mine is declared producing.
    pub producing: bool,
    /// The measuring range widened by its tolerance (1 % of the span):
    /// `[lo - tol, hi + tol]`.
    /// Without a range: `[0, 100 % by volume]` for a gas (no negative
    /// concentration, none above the whole atmosphere), `(-∞, ∞)`
    /// otherwise, so that one test serves every point.
    bounds: [f64; 2],
    /// span × 2.3, for the rate check; +∞ when the check does not run (no
    /// range, or a span of 0), which no finite change of value exceeds.
    span23: f64,
    /// The gas's `spike_floor` ([`crate::config::detect::GasConsts`]).
    spike_floor: f64,
    /// The gas's `rate_slack`.
    rate_slack: f64,
}

impl PointParams {
    /// True when the finite value `v` is inside the (widened) range, or,
    /// for a point without a range, not a negative gas value: what the
    /// range check lets pass.
    #[inline(always)]
    pub fn in_range(&self, v: f64) -> bool {
        let [lo, hi] = self.bounds;
        !(v < lo || v > hi)
    }

    /// A point of no gas without a range (a placeholder).
    pub const NONE: PointParams = PointParams {
        gas: None,
        producing: false,
        bounds: [f64::NEG_INFINITY, f64::INFINITY],
        span23: f64::INFINITY,
        spike_floor: 0.0,
        rate_slack: 0.0,
    };

    /// The parameters of a point of `gas` (if any) with measuring `range`,
    /// under the figures `k` of the `[detect]` knobs.
    pub fn new(
        k: &DetectConsts,
        gas: Option<Gas>,
        range: Option<[f64; 2]>,
        producing: bool,
    ) -> PointParams {
        let span = range.map_or(0.0, |[lo, hi]| (hi - lo).abs());
        // The stateful checks run for gases only; another point keeps
        // methane's figures, which it never reads.
        let g = k.gas(gas.unwrap_or(Gas::Methane));
        PointParams {
            gas,
            producing,
            bounds: match (range, gas) {
                (Some([lo, hi]), _) => {
                    let tol = 0.01 * (hi - lo).abs();
                    [lo - tol, hi + tol]
                }
                (None, Some(gas)) => [0.0, crate::config::registry::physical_max(gas)],
                (None, None) => [f64::NEG_INFINITY, f64::INFINITY],
            },
            span23: if span > 0.0 {
                span * 2.3
            } else {
                f64::INFINITY
            },
            spike_floor: g.spike_floor,
            rate_slack: g.rate_slack,
        }
    }
}

/// True when a reading has a finite value and no status bit but the
/// mine's own alarm and power-off flags: every detector takes its value as
/// it is (the shard's loop checks this once per reading).
#[inline(always)]
pub fn is_plain(r: &Reading) -> bool {
    r.status & !(status::ALARM | status::POWER_OFF) == 0 && r.value.is_finite()
}

/// The anomaly state of one point.
#[derive(Debug, Clone)]
pub struct PointAnomaly {
    newest: Option<Millis>,
    newest_value: f64,
    interval: i64,
    /// Intervals in a row equal to `interval` (64 bits: counted without
    /// saturating, it does not wrap in any lifetime).
    same_intervals: u64,
    good_run: u32,
    /// The timestamp and range episodes open ([`TS_OPEN`], [`RANGE_OPEN`]),
    /// as bits, so that the common case tests both at once.
    open: u8,
    ts_last_problem: Millis,
    flat_ref: f64,
    flat_since: Millis,
    /// Readings of the current flat run (64 bits, as `same_intervals`).
    flat_count: u64,
    flat_open: bool,
    /// The current run's limit, ms, once worked out (0 before).
    flat_limit_ms: i64,
    /// Past flat runs by length: bin b holds runs of [2^b, 2^(b+1)) s
    /// (the last bin, longer ones too).
    flat_runs: [u16; FLAT_BINS],
    base: f64,
    dev: f64,
    warm: u32,
    out_run: u32,
    out_since: Millis,
    /// Event time of the reading before the current outlier run.
    out_before: Millis,
    out_peak: f64,
    last: Option<(Millis, f64)>,
    rate_open: bool,
}

impl Default for PointAnomaly {
    fn default() -> Self {
        PointAnomaly {
            newest: None,
            newest_value: f64::NAN,
            interval: 0,
            same_intervals: 0,
            good_run: 0,
            open: 0,
            ts_last_problem: 0,
            flat_ref: f64::NAN,
            flat_since: 0,
            flat_count: 0,
            flat_open: false,
            flat_limit_ms: 0,
            flat_runs: [0; FLAT_BINS],
            base: 0.0,
            dev: 0.0,
            warm: 0,
            out_run: 0,
            out_since: 0,
            out_before: 0,
            out_peak: 0.0,
            last: None,
            rate_open: false,
        }
    }
}

/// [`PointAnomaly`]'s bit for an open timestamp episode.
const TS_OPEN: u8 = 1;
/// Its bit for an open out-of-range episode.
const RANGE_OPEN: u8 = 2;

/// Octave bins of the flat-run histogram (1 s to 9.1 h and beyond).
pub const FLAT_BINS: usize = 16;
/// The histogram's counts are halved when they reach this many runs in
/// all (older runs weigh less; a single long run is kept: a count of 1
/// stays 1).
const FLAT_HALVE_AT: u32 = 1024;

/// Readings a fresh baseline needs before spikes are judged.
const WARM_UP: u32 = 16;
/// Weight of a new value in the baseline.
const ALPHA: f64 = 1.0 / 16.0;

fn raise(out: &mut Vec<Finding>, point: PointIdx, ts: Millis, flag: Flag, value: f64) {
    out.push(Finding::FlagRaised {
        point,
        ts,
        flag,
        value,
    });
}

fn clear(out: &mut Vec<Finding>, point: PointIdx, ts: Millis, flag: Flag) {
    out.push(Finding::FlagCleared { point, ts, flag });
}

impl PointAnomaly {
    /// Applies one reading that arrived at processing time `arrival`;
    /// returns where it fell in event-time order. `k` holds what the
    /// checks derive from `cfg` ([`DetectConsts::of`]); `plain` is
    /// [`is_plain`] of the reading.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn apply(
        &mut self,
        cfg: &DetectConfig,
        k: &DetectConsts,
        p: &PointParams,
        point: PointIdx,
        r: &Reading,
        arrival: Millis,
        plain: bool,
        out: &mut Vec<Finding>,
    ) -> Order {
        // The common case, decided before anything changes: in order, not
        // from the future, no status bit but the mine's own alarm and
        // power-off flags, a finite value in range, no timestamp or range
        // episode open and no grid run reached. Then the timestamp and
        // range checks have nothing to raise or end, and only the
        // interval run (grid rule on), the newest reading and the stateful
        // checks move (what the general path below does in that case, with
        // fewer branches).
        if plain
            && let Some(n) = self.newest
            && r.ts > n
            && r.ts <= arrival + k.max_future_ms
            && self.open == 0
            && p.in_range(r.value)
        {
            // The interval run is kept only while the grid rule is on (it
            // is off by default): switched on, it counts from then.
            let grid_quiet = cfg.grid_run == 0 || {
                let interval = r.ts - n;
                let same = if interval == self.interval {
                    self.same_intervals + 1
                } else {
                    0
                };
                // A run that reaches the rule is left to the general path,
                // which counts this interval itself.
                let quiet = same < u64::from(cfg.grid_run);
                if quiet {
                    self.interval = interval;
                    self.same_intervals = same;
                }
                quiet
            };
            if grid_quiet {
                self.newest = Some(r.ts);
                self.newest_value = r.value;
                if p.gas.is_some() {
                    self.stateful(cfg, k, p, point, r, out);
                }
                return Order::InOrder;
            }
        }
        self.apply_general(cfg, k, p, point, r, arrival, out)
    }

    /// [`PointAnomaly::apply`] for every reading the common case leaves.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn apply_general(
        &mut self,
        cfg: &DetectConfig,
        k: &DetectConsts,
        p: &PointParams,
        point: PointIdx,
        r: &Reading,
        arrival: Millis,
        out: &mut Vec<Finding>,
    ) -> Order {
        let has_value = r.status & status::NOT_A_VALUE == 0;
        let order = match self.newest {
            _ if r.ts > arrival + k.max_future_ms => Order::Future,
            None => Order::InOrder,
            Some(n) if r.ts > n => Order::InOrder,
            Some(n) if r.ts == n => Order::Duplicate,
            Some(n) if n - r.ts <= k.allowed_lateness_ms => Order::Late,
            Some(_) => Order::TooLate,
        };

        // Timestamps.
        let mut ts_bad = matches!(order, Order::Future | Order::TooLate);
        if order == Order::Duplicate
            && has_value
            && self.newest_value.is_finite()
            && (r.value - self.newest_value).abs() > cfg.flat_epsilon
        {
            ts_bad = true;
        }
        if order == Order::InOrder {
            if let Some(n) = self.newest {
                let interval = r.ts - n;
                if interval == self.interval {
                    self.same_intervals += 1;
                } else {
                    self.interval = interval;
                    self.same_intervals = 0;
                }
                if cfg.grid_run > 0 && self.same_intervals >= u64::from(cfg.grid_run) {
                    ts_bad = true;
                }
            }
            self.newest = Some(r.ts);
            self.newest_value = if has_value { r.value } else { f64::NAN };
        }
        let clock = self.newest.unwrap_or(r.ts.min(arrival));
        if ts_bad {
            if self.open & TS_OPEN == 0 {
                self.open |= TS_OPEN;
                raise(out, point, clock.min(r.ts), Flag::Timestamp, r.value);
            }
            self.ts_last_problem = clock;
        } else if self.open & TS_OPEN != 0
            && order == Order::InOrder
            && r.ts - self.ts_last_problem >= k.timestamp_quiet_ms
        {
            self.open &= !TS_OPEN;
            clear(out, point, r.ts, Flag::Timestamp);
        }

        // Range, NaN and status: stateless, for every reading.
        let mut bad = r.status & (status::SENSOR_FAULT | status::OVER_RANGE) != 0;
        if has_value && !bad {
            let v = r.value;
            bad = !v.is_finite() || !p.in_range(v);
        }
        if bad {
            self.good_run = 0;
            if self.open & RANGE_OPEN == 0 {
                self.open |= RANGE_OPEN;
                raise(out, point, r.ts, Flag::OutOfRange, r.value);
            }
        } else if self.open & RANGE_OPEN != 0 && has_value {
            self.good_run += 1;
            if self.good_run >= cfg.range_clear_readings {
                self.open &= !RANGE_OPEN;
                clear(out, point, r.ts, Flag::OutOfRange);
            }
        }

        // Stateful checks: methane and CO values, in order, not calibration.
        if p.gas.is_none() {
            return order;
        }
        if order != Order::InOrder || bad || !has_value || r.status & status::CALIBRATION != 0 {
            return order;
        }
        self.stateful(cfg, k, p, point, r, out);
        order
    }

    /// Ends an open flat-line episode at `ts` unless the value repeated.
    #[cold]
    #[inline(never)]
    fn flat_line_ends(&mut self, same: bool, point: PointIdx, ts: Millis, out: &mut Vec<Finding>) {
        if !same {
            self.flat_open = false;
            clear(out, point, ts, Flag::FlatLine);
        }
    }

    /// The flat run that started at `flat_since` ended at `ts` (the value
    /// changed): its length enters the histogram, unless it was flagged.
    #[inline(always)]
    fn flat_run_ended(&mut self, ts: Millis) {
        if self.flat_count == 0 || self.flat_open {
            return;
        }
        let secs = ((ts - self.flat_since) / 1000).max(1) as u64;
        let bin = (63 - secs.leading_zeros() as usize).min(FLAT_BINS - 1);
        self.flat_runs[bin] = self.flat_runs[bin].saturating_add(1);
        if self.flat_runs[bin] as u32 >= FLAT_HALVE_AT / 4 {
            self.flat_runs_halve();
        }
    }

    /// Halves the histogram when it holds [`FLAT_HALVE_AT`] runs (checked
    /// only when a bin is large).
    #[cold]
    #[inline(never)]
    fn flat_runs_halve(&mut self) {
        let total: u32 = self.flat_runs.iter().map(|&c| u32::from(c)).sum();
        if total >= FLAT_HALVE_AT {
            for c in &mut self.flat_runs {
                *c -= *c / 2;
            }
        }
    }

    /// The limit of the current flat run, ms: `flat_run_factor` × the upper
    /// edge of the bin of the `flat_run_quantile` of the point's past runs,
    /// at least `flat_secs`; `flat_cold_secs` (at least `flat_secs`) with
    /// fewer than `flat_learn_runs` past runs.
    #[cold]
    #[inline(never)]
    fn flat_limit(&self, cfg: &DetectConfig, k: &DetectConsts) -> i64 {
        let total: u32 = self.flat_runs.iter().map(|&c| u32::from(c)).sum();
        if total < cfg.flat_learn_runs {
            return k.flat_ms.max(k.flat_cold_ms);
        }
        let need = (f64::from(total) * cfg.flat_run_quantile).ceil() as u32;
        let mut seen = 0;
        let mut bin = FLAT_BINS - 1;
        for (b, &c) in self.flat_runs.iter().enumerate() {
            seen += u32::from(c);
            if seen >= need.max(1) {
                bin = b;
                break;
            }
        }
        let edge_ms = 1000.0 * (1u64 << (bin + 1)) as f64;
        k.flat_ms
            .max((cfg.flat_run_factor * edge_ms).min(i64::MAX as f64 / 2.0) as i64)
    }

    /// The octave-bin histogram of the point's past flat runs.
    pub fn flat_runs(&self) -> &[u16; FLAT_BINS] {
        &self.flat_runs
    }

    /// Flat line, rate and spike: an in-order methane or CO reading with a
    /// value in range, no calibration.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn stateful(
        &mut self,
        cfg: &DetectConfig,
        k: &DetectConsts,
        p: &PointParams,
        point: PointIdx,
        r: &Reading,
        out: &mut Vec<Finding>,
    ) {
        let v = r.value;

        // Flat line. Whether a value repeats the one before is data, as
        // likely as not on a quantised sensor: the state moves by selects
        // rather than a branch the CPU would mispredict half the time, and
        // only the rare episode edges branch.
        let same = (v - self.flat_ref).abs() <= cfg.flat_epsilon;
        if !same {
            self.flat_run_ended(r.ts);
        }
        if self.flat_open {
            // Out of line, so that the compiler cannot fold `!same` into
            // this (predictable) test.
            self.flat_line_ends(same, point, r.ts, out);
        }
        self.flat_count = select_unpredictable(same, self.flat_count + 1, 1);
        self.flat_ref = select_unpredictable(same, self.flat_ref, v);
        self.flat_since = select_unpredictable(same, self.flat_since, r.ts);
        self.flat_limit_ms = select_unpredictable(same, self.flat_limit_ms, 0);
        // A count of 2 or more means this value repeated the one before,
        // so `same` (data) is not tested again.
        debug_assert_eq!(self.flat_count >= 2, same);
        if !self.flat_open
            && self.flat_count >= u64::from(cfg.flat_min_readings.max(2))
            && p.producing
            && self.flat_ref > k.gas(p.gas.unwrap_or(Gas::Methane)).flat_min
            && r.ts - self.flat_since >= k.flat_ms
        {
            // Past the floor: the point's own limit, worked out once a run.
            if self.flat_limit_ms == 0 {
                self.flat_limit_ms = self.flat_limit(cfg, k);
            }
            if r.ts - self.flat_since >= self.flat_limit_ms {
                self.flat_open = true;
                raise(out, point, self.flat_since, Flag::FlatLine, v);
            }
        }

        // The reading before this one (for the spike's span).
        let before = self.last.map_or(r.ts, |(t, _)| t);
        // Rate of change.
        if let Some((lt, lv)) = self.last {
            // |Δv| > span × 2.3 / T90 × Δt + 2 quanta, without a division:
            // both sides times T90 in ms.
            // Only in-order readings get here and `last` is an earlier one
            // of them (the newest never goes back), so Δt > 0.
            debug_assert!(r.ts > lt);
            let dt_ms = (r.ts - lt) as f64;
            // Without the check, span23 is +∞ and no finite change exceeds
            // it (Δt > 0).
            let too_fast = (v - lv).abs() * k.t90_ms > p.span23 * dt_ms + p.rate_slack;
            if too_fast && !self.rate_open {
                self.rate_open = true;
                raise(out, point, r.ts, Flag::Rate, v);
            } else if !too_fast && self.rate_open {
                self.rate_open = false;
                clear(out, point, r.ts, Flag::Rate);
            }
        }
        self.last = Some((r.ts, v));

        // Spike against the robust baseline.
        let floor = p.spike_floor;
        if self.warm < WARM_UP {
            self.warm += 1;
            if self.warm == 1 {
                self.base = v;
                self.dev = floor;
            } else {
                let d = v - self.base;
                self.base += d / self.warm as f64;
                self.dev += (d.abs() - self.dev) / self.warm as f64;
            }
            return;
        }
        // `dev.max(floor)` and `min` below as plain comparisons (the same
        // values: the deviation, floor and d are finite).
        let scale = if self.dev > floor { self.dev } else { floor };
        let d = v - self.base;
        let out_now = d.abs() > cfg.spike_k * scale;
        // A run ends only back within half the threshold (hysteresis): a
        // trend that steps over the line and stays near it is a level
        // change, not a spike.
        let back = d.abs() <= k.half_spike_k * scale;
        // `|` and `&`, not `||` and `&&`: whether a value is back within
        // the band is data; the combined test is nearly always false.
        if out_now | ((self.out_run > 0) & !back) {
            if self.out_run == 0 {
                self.out_since = r.ts;
                self.out_before = before;
                self.out_peak = v;
            } else if (v - self.base).abs() > (self.out_peak - self.base).abs() {
                self.out_peak = v;
            }
            self.out_run += 1;
            if self.out_run > cfg.spike_max_readings {
                // A level change, not a spike: start again from here.
                self.base = v;
                self.dev = floor;
                self.out_run = 0;
            }
        } else {
            // Out and back faster than a first-order sensor can follow a
            // real change (2 × T90 from the last value before to the first
            // one back): a glitch. A slower excursion (any one at slow
            // polling) may be a real puff of gas.
            if self.out_run > 0 {
                if r.ts - self.out_before < k.spike_span_ms {
                    raise(out, point, self.out_since, Flag::Spike, self.out_peak);
                    clear(out, point, r.ts, Flag::Spike);
                }
                self.out_run = 0;
            }
            // `d.clamp(-lim, lim)` without its bounds assertion (scale is
            // a finite deviation ≥ 0, so -lim ≤ lim).
            let lim = 3.0 * scale;
            let clipped = if d < -lim {
                -lim
            } else if d > lim {
                lim
            } else {
                d
            };
            self.base += ALPHA * clipped;
            let dist = d.abs();
            self.dev += ALPHA * ((if dist < lim { dist } else { lim }) - self.dev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters of a point under the default knobs (what every
    /// test here runs with, bar `grid_run`, which they do not depend on).
    fn params(gas: Option<Gas>, range: Option<[f64; 2]>, producing: bool) -> PointParams {
        let k = DetectConsts::of(&DetectConfig::default());
        PointParams::new(&k, gas, range, producing)
    }

    fn ch4() -> PointParams {
        params(Some(Gas::Methane), Some([0.0, 4.0]), true)
    }

    /// Runs (ts seconds, value, status) through a fresh state (arrival =
    /// event time) and returns the findings as text.
    fn run_with(cfg: &DetectConfig, p: PointParams, table: &[(i64, f64, u16)]) -> Vec<String> {
        let mut s = PointAnomaly::default();
        let mut out = Vec::new();
        for &(t, value, st) in table {
            let r = Reading {
                point: 1,
                ts: t * 1000,
                value,
                status: st,
            };
            let k = DetectConsts::of(cfg);
            s.apply(cfg, &k, &p, 1, &r, t * 1000, is_plain(&r), &mut out);
        }
        out.iter()
            .map(|f| match f {
                Finding::FlagRaised { ts, flag, .. } => format!("+{}@{}", flag.key(), ts / 1000),
                Finding::FlagCleared { ts, flag, .. } => format!("-{}@{}", flag.key(), ts / 1000),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn run(table: &[(i64, f64, u16)]) -> Vec<String> {
        run_with(&DetectConfig::default(), ch4(), table)
    }

    /// Normal methane around `level` with a deterministic ±1-quantum wobble.
    fn normal(from: i64, n: i64, level: f64) -> Vec<(i64, f64, u16)> {
        (0..n)
            .map(|i| {
                let w = [0.0, 0.01, 0.0, -0.01, 0.02, 0.0, -0.01][(i % 7) as usize];
                (from + 5 * i, level + w, 0)
            })
            .collect()
    }

    #[test]
    fn normal_wobble_raises_nothing() {
        assert!(run(&normal(0, 2000, 0.3)).is_empty());
    }

    #[test]
    fn out_of_range_nan_negative_and_fault_status() {
        let mut t = normal(0, 20, 0.3);
        t.push((100, -0.5, 0));
        t.extend(normal(105, 5, 0.3));
        t.push((200, f64::NAN, 0));
        t.push((205, 0.3, status::SENSOR_FAULT));
        t.extend(normal(210, 3, 0.3));
        assert_eq!(
            run(&t),
            [
                "+out_of_range@100",
                "-out_of_range@115",
                "+out_of_range@200",
                "-out_of_range@220"
            ]
        );
        // Slightly negative zero drift is within tolerance.
        assert!(run(&[(0, -0.01, 0)]).is_empty());
    }

    #[test]
    fn absurd_finite_values_are_out_of_range() {
        // (gas, range, value): each is out of range, with or without a
        // declared range.
        let table: [(Gas, Option<[f64; 2]>, f64); 8] = [
            (Gas::Methane, Some([0.0, 4.0]), 1.8e19),
            (Gas::Methane, Some([0.0, 4.0]), 1e300),
            (Gas::Methane, Some([0.0, 100.0]), f64::MAX),
            (Gas::Methane, None, 100.5),
            (Gas::Methane, None, 1.8e19),
            (Gas::CarbonMonoxide, Some([0.0, 1000.0]), 1e300),
            (Gas::CarbonMonoxide, None, 1_000_001.0),
            (Gas::CarbonMonoxide, None, 1.8e19),
        ];
        let cfg = DetectConfig::default();
        for (gas, range, value) in table {
            let t = [(0, 0.3, 0), (5, value, 0)];
            assert_eq!(
                run_with(&cfg, params(Some(gas), range, true), &t),
                ["+out_of_range@5"],
                "{gas:?} {range:?} {value}"
            );
        }
        // 100 % methane and 1,000,000 ppm CO exist, in a range-less point.
        for (gas, value) in [(Gas::Methane, 100.0), (Gas::CarbonMonoxide, 1e6)] {
            let t = [(0, value, 0)];
            assert!(run_with(&cfg, params(Some(gas), None, true), &t).is_empty());
        }
    }

    #[test]
    fn without_a_range_a_gas_must_not_go_negative_and_other_values_pass() {
        let cfg = DetectConfig::default();
        let gas = params(Some(Gas::Methane), None, true);
        let t = [(0, 0.3, 0), (5, -0.01, 0), (10, 0.3, 0), (15, 0.0, 0)];
        assert_eq!(run_with(&cfg, gas, &t), ["+out_of_range@5"]);
        // Any finite value of a point of no gas without a range passes
        // (a temperature below zero, a large count); NaN does not.
        let other = params(None, None, true);
        let t = [(0, -12.5, 0), (5, 1e9, 0), (10, f64::NAN, 0)];
        assert_eq!(run_with(&cfg, other, &t), ["+out_of_range@10"]);
    }

    #[test]
    fn flat_line_needs_production_and_a_value_above_zero() {
        // A lively history first (a point with too little has the cold
        // limit), then the stuck value.
        let mut flat = normal(0, 200, 0.3);
        flat.extend((0..400).map(|i| (1000 + i * 5, 0.3, 0)));
        assert_eq!(run(&flat), ["+flat_line@1000"]);
        let co_zero: Vec<_> = (0..4000).map(|i| (i * 5, 0.0, 0)).collect();
        let co = params(Some(Gas::CarbonMonoxide), Some([0.0, 1000.0]), true);
        assert!(run_with(&DetectConfig::default(), co, &co_zero).is_empty());
        let stopped = params(Some(Gas::Methane), Some([0.0, 4.0]), false);
        assert!(run_with(&DetectConfig::default(), stopped, &flat).is_empty());
        let mut ends = flat.clone();
        ends.push((3000, 0.31, 0));
        assert_eq!(run(&ends), ["+flat_line@1000", "-flat_line@3000"]);
        // Without history: the cold limit (6 h), not the 30-minute floor.
        let cold: Vec<_> = (0..5000).map(|i| (i * 5, 0.3, 0)).collect();
        assert_eq!(run(&cold), ["+flat_line@0"]);
        assert!(run(&cold[..4000]).is_empty());
    }

    #[test]
    fn a_point_that_sits_for_hours_is_judged_by_its_own_runs() {
        // A 0.1 %-step sensor in stable air at 30 s polling: 60 runs of
        // 1 to 2 hours (the longest in bin [4096, 8192) s: its limit is
        // 4 × 8192 s, 9.1 h).
        let mut history = Vec::new();
        let mut ts = 0;
        for k in 0..60 {
            let v = if k % 2 == 0 { 0.4 } else { 0.5 };
            let len = 120 + (k * 7) % 120;
            for _ in 0..len {
                history.push((ts, v, 0));
                ts += 30;
            }
        }
        let cfg = DetectConfig::default();
        let k = DetectConsts::of(&cfg);
        let feed = |t: &[(i64, f64, u16)]| {
            let mut s = PointAnomaly::default();
            let mut out = Vec::new();
            for &(t, value, st) in t {
                let r = Reading {
                    point: 1,
                    ts: t * 1000,
                    value,
                    status: st,
                };
                s.apply(&cfg, &k, &ch4(), 1, &r, r.ts, is_plain(&r), &mut out);
            }
            (s, out.len())
        };
        let sitting = |hours: i64| {
            let mut t = history.clone();
            for i in 0..hours * 120 {
                t.push((ts + 30 * i, 0.4, 0));
            }
            t.push((ts + 30 * hours * 120, 0.5, 0));
            t
        };
        // Sitting 7 hours (three times its longest so far): not flagged,
        // and learned.
        let seven = sitting(7);
        assert!(run(&seven).is_empty(), "{:?}", run(&seven));
        let (s, _) = feed(&seven);
        assert_eq!(s.flat_runs()[14], 1);
        assert_eq!(s.flat_runs().iter().map(|&c| u32::from(c)).sum::<u32>(), 61);
        // Stuck 10 hours: beyond its limit; the flagged run is not learned.
        let ten = sitting(10);
        assert_eq!(
            run(&ten),
            [
                format!("+flat_line@{ts}"),
                format!("-flat_line@{}", ts + 36_000)
            ]
        );
        let (s, _) = feed(&ten);
        assert_eq!(s.flat_runs()[15], 0);
        assert_eq!(s.flat_runs().iter().map(|&c| u32::from(c)).sum::<u32>(), 60);
    }

    #[test]
    fn an_isolated_outlier_is_a_spike_and_a_level_change_is_not() {
        let mut t = normal(0, 40, 0.3);
        t.push((200, 0.9, 0));
        t.extend(normal(205, 40, 0.3));
        assert_eq!(run(&t), ["+spike@200", "-spike@205"]);
        // A real rise that stays up is not a spike.
        let mut rise = normal(0, 40, 0.3);
        rise.extend(normal(200, 40, 1.2));
        assert!(run(&rise).is_empty(), "{:?}", run(&rise));
    }

    #[test]
    fn a_drifting_value_that_steps_up_and_stays_near_is_not_a_spike() {
        // A drainage roadway drifting from 0.9 upwards: one step of 0.14
        // over the lagging baseline, then values stay close to it.
        let mut t = normal(0, 40, 0.9);
        for (i, v) in [0.99, 1.13, 1.0, 1.01, 1.0, 1.02, 1.01].iter().enumerate() {
            t.push((200 + 5 * i as i64, *v, 0));
        }
        t.extend(normal(240, 40, 1.01));
        assert!(run(&t).is_empty(), "{:?}", run(&t));
    }

    #[test]
    fn at_slow_polling_a_one_reading_excursion_may_be_a_real_puff() {
        // 30 s averages while a shearer cuts (the longwall file, MM31 at
        // 17.2 h): 0.53 -> 0.71 -> 0.55. Out and back takes 60 s, longer
        // than a sensor needs to follow real gas (2 × T90 = 40 s).
        let mut t: Vec<_> = (0..40)
            .map(|i| (i * 30, [0.5, 0.51, 0.52][i as usize % 3], 0))
            .collect();
        for (i, v) in [0.53, 0.71, 0.55, 0.56, 0.54].iter().enumerate() {
            t.push((1200 + 30 * i as i64, *v, 0));
        }
        assert!(run(&t).is_empty(), "{:?}", run(&t));
        // The same excursion polled every 5 s is a glitch.
        let fast: Vec<_> = t.iter().map(|&(ts, v, st)| (ts / 6, v, st)).collect();
        assert_eq!(run(&fast), ["+spike@205", "-spike@210"]);
    }

    #[test]
    fn a_jump_faster_than_the_sensor_can_respond_is_a_rate_anomaly() {
        let mut t = normal(0, 40, 0.3);
        t.push((200, 3.8, 0));
        t.extend(normal(205, 40, 0.3));
        let got = run(&t);
        assert!(got.contains(&"+rate@200".to_string()), "{got:?}");
        assert!(got.contains(&"+spike@200".to_string()), "{got:?}");
        // Without a range (no span to judge a rate by) the same jump is a
        // spike only.
        let cfg = DetectConfig::default();
        let got = run_with(&cfg, params(Some(Gas::Methane), None, true), &t);
        assert!(!got.iter().any(|f| f.contains("rate")), "{got:?}");
        assert!(got.contains(&"+spike@200".to_string()), "{got:?}");
    }

    #[test]
    fn timestamps_conflicting_duplicates_too_late_and_future() {
        let cfg = DetectConfig::default();
        // A resend with the same value is fine; a different value is not.
        assert!(run(&[(0, 0.3, 0), (0, 0.3, 0)]).is_empty());
        assert_eq!(run(&[(0, 0.3, 0), (0, 0.5, 0)]), ["+timestamp@0"]);
        // Late within the allowed lateness: fine; beyond it: an anomaly.
        assert!(run(&[(1000, 0.3, 0), (700, 0.3, 0)]).is_empty());
        assert_eq!(run(&[(1000, 0.3, 0), (100, 0.3, 0)]), ["+timestamp@100"]);
        // The future: judged against arrival.
        let mut s = PointAnomaly::default();
        let mut out = Vec::new();
        let r = Reading {
            point: 1,
            ts: 10_000_000,
            value: 0.3,
            status: 0,
        };
        let k = DetectConsts::of(&cfg);
        assert_eq!(
            s.apply(&cfg, &k, &ch4(), 1, &r, 0, is_plain(&r), &mut out),
            Order::Future
        );
        assert_eq!(out.len(), 1);
        // The episode ends after the quiet time.
        let mut t = vec![(0, 0.3, 0), (0, 0.5, 0)];
        t.extend(normal(5, 200, 0.3));
        assert_eq!(run(&t), ["+timestamp@0", "-timestamp@600"]);
    }

    #[test]
    fn a_perfect_grid_is_flagged_only_when_asked() {
        let t: Vec<_> = normal(0, 50, 0.3);
        assert!(run(&t).is_empty());
        let cfg = DetectConfig {
            grid_run: 20,
            ..DetectConfig::default()
        };
        assert_eq!(run_with(&cfg, ch4(), &t), ["+timestamp@105"]);
    }

    #[test]
    fn the_grid_rule_switched_on_counts_from_then() {
        let off = DetectConfig::default();
        let on = DetectConfig {
            grid_run: 20,
            ..DetectConfig::default()
        };
        let p = ch4();
        let mut s = PointAnomaly::default();
        let mut out = Vec::new();
        for i in 0..100 {
            let cfg = if i < 50 { &off } else { &on };
            let k = DetectConsts::of(cfg);
            let r = Reading {
                point: 1,
                ts: i * 5000,
                value: 0.3 + 0.01 * (i % 3) as f64,
                status: 0,
            };
            s.apply(cfg, &k, &p, 1, &r, r.ts, is_plain(&r), &mut out);
            // Off, nothing; on, the run starts from the first interval it
            // sees (reading 49 -> 50) and reaches 20 at reading 70.
            let raised = out.iter().any(|f| {
                matches!(
                    f,
                    Finding::FlagRaised {
                        flag: Flag::Timestamp,
                        ..
                    }
                )
            });
            assert_eq!(raised, i >= 70, "reading {i}: {out:?}");
        }
    }
}
