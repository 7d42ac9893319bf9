//! Falsification signatures (造假嫌疑) of one methane or CO point, in event
//! time: hugging below the line, drop after approach, interlock not acting,
//! uniform noise, and the per-point half of replay detection (the rolling
//! hash; the shard-wide index of windows is [`crate::detect::replay`]).
//!
//! Rules (knobs in `[detect]`, docs/DETECTORS.md):
//! - **hugging**: over the last `hug_window_secs` (12 time buckets), at
//!   least `hug_min_readings` readings, at least `hug_share` of them in
//!   [`hug_band` × alarm, alarm) and none at or above the alarm line. Ends
//!   when the share falls below half of `hug_share` or a reading reaches
//!   the line.
//! - **drop_after_approach**: within `approach_secs` after the last of at
//!   least `approach_min_readings` values in a row at or above
//!   `approach_fraction` × alarm, a value at or below
//!   `drop_zero_fraction` × alarm, or a status switch to calibration, not
//!   polled or paused. Ends at the next ordinary reading above that floor.
//! - **interlock**: at or above the power-off level for
//!   `interlock_grace_secs` with no power-off status bit, or with the bit
//!   while a feed sensor (馈电, 1015) on the point's air path, read after
//!   the power-off began, still reads the power live (feed abnormal,
//!   馈电异常): the interlock did not act. Ends when the power-off bit
//!   shows with no such feed reading, or the value falls below the
//!   power-off level.
//! - **uniform_noise**: every 32 readings, the last 64 quantised values are
//!   tested (their moments are summed over the ring then, in one pass of
//!   exact integer arithmetic): kurtosis below `uniform_max_kurtosis` (uniform 1.8, a real
//!   sensor ≥ 3), |lag-1 autocorrelation| below `uniform_max_autocorr` (a
//!   real sensor drifts) and a span of at least `uniform_min_span_quanta`
//!   quanta. Two windows in a row open an episode; the first failing one
//!   ends it.
//!
//! Only readings in event-time order enter (see the late-data rule in
//! [`crate::detect::anomaly`]).

use crate::config::Limits;
use crate::config::detect::{DetectConfig, DetectConsts};
use crate::detect::replay::{ReplayIndex, WINDOW};
use crate::model::{Finding, Flag, Gas, Millis, PointIdx, Reading, status};

/// Quantised values kept per point (the uniform-noise window).
pub const RING: usize = 64;
/// The bits of [`PointFalsify::change_bits`] of the pairs within one
/// replay window (its `WINDOW - 1` neighbouring pairs).
const WINDOW_PAIRS: u32 = (1 << (WINDOW - 1)) - 1;
const _: () = assert!(WINDOW >= 2 && WINDOW <= 32 && WINDOW <= RING);
/// Readings between two uniform-noise tests (the first once the ring is
/// full). At most `RING - WINDOW`, so that once the ring has been full the
/// countdown never exceeds `RING - WINDOW`, which is how the replay check
/// knows a whole window is in (see [`PointFalsify::apply`]).
const UNIFORM_EVERY: u32 = 32;
const _: () = assert!(UNIFORM_EVERY >= 1 && UNIFORM_EVERY as usize <= RING - WINDOW);
/// Hugging buckets per window.
pub const BUCKETS: usize = crate::config::detect::HUG_BUCKETS;
/// Quantised values beyond this (far outside any range) are clamped for the
/// moments, which then stay exact in i64.
const MOMENT_CLAMP: i16 = 10_000;

/// Counts of one hugging bucket (16 bytes). Only in-order readings, at most
/// one per millisecond, are counted, and a bucket spans at most 50 400 000
/// ms (`hug_window_secs` ≤ 7 days), so no count can overflow.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Bucket number (event time / bucket length; < 2^31 for buckets of
    /// at least 5 s, which `hug_window_secs` ≥ 60 guarantees).
    epoch: i32,
    total: u32,
    band: u32,
    above: u32,
}

/// The falsification state of one methane or CO point. Laid out by hand
/// (`repr(C)`, on a cache line of its own): the scalars every reading
/// reads and writes fill the first two lines, then the ring (two lines),
/// then the hugging buckets (one of them per reading), so a reading
/// touches about five lines of it.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct PointFalsify {
    /// Event-time start of the current bucket (its slot is `slot`; it
    /// spans `hug_bucket_ms`).
    bucket_from: Millis,
    pos: usize,
    hash: u64,
    last_approach: Option<Millis>,
    unflagged_since: Option<Millis>,
    /// Start of the current run at or above the power-off level with the
    /// power-off bit (the cut was commanded then).
    cut_since: Option<Millis>,
    /// Readings of the window's buckets other than the current one (the
    /// current bucket counts its own; [`PointFalsify::total`] is the sum).
    others: u32,
    /// Readings of the current bucket (its `total` in `buckets` is
    /// written when a reading leaves it; its band and line counts there
    /// are kept as they come).
    cur_total: u32,
    band: u32,
    above: u32,
    approach_run: u32,
    /// One bit per neighbouring pair of the newest values (the newest
    /// pair in bit 0), set where the two differ.
    change_bits: u32,
    uniform_hits: u32,
    since_match: u32,
    /// Readings to go until the next uniform-noise test (the first once
    /// the ring is full, then every [`UNIFORM_EVERY`]).
    until_uniform: u32,
    /// The current bucket's index in `buckets`.
    slot: u32,
    hug_open: bool,
    drop_open: bool,
    interlock_open: bool,
    /// A value at or above the power-off level came since the last one
    /// below it: `cut_since`, `unflagged_since` or `interlock_open` may be
    /// set (all clear otherwise).
    interlock_dirty: bool,
    uniform_open: bool,
    replay_open: bool,
    ring: [i16; RING],
    buckets: [Bucket; BUCKETS],
}

impl Default for PointFalsify {
    fn default() -> Self {
        PointFalsify {
            buckets: [Bucket::default(); BUCKETS],
            bucket_from: 0,
            slot: 0,
            others: 0,
            cur_total: 0,
            band: 0,
            above: 0,
            hug_open: false,
            last_approach: None,
            approach_run: 0,
            drop_open: false,
            unflagged_since: None,
            cut_since: None,
            interlock_open: false,
            interlock_dirty: false,
            ring: [0; RING],
            until_uniform: RING as u32,
            pos: 0,
            hash: ReplayIndex::ZEROS,
            change_bits: 0,
            uniform_hits: 0,
            uniform_open: false,
            since_match: 0,
            replay_open: false,
        }
    }
}

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

/// [`PointFalsify::moments`] of `ring` (newest value before `pos`), each
/// value taken as `c` of it.
#[inline(always)]
fn sums(ring: &[i16; RING], pos: usize, c: impl Fn(i16) -> i64) -> [i64; 5] {
    let mut s = [0i64; 5];
    // All RING neighbouring pairs around the ring (the first is the last
    // slot's with the first), less the one from the newest value back to
    // the oldest.
    let mut before = c(ring[RING - 1]);
    let mut pairs = 0;
    for &q in ring {
        let x = c(q);
        let x2 = x * x;
        s[0] += x;
        s[1] += x2;
        s[2] += x2 * x;
        s[3] += x2 * x2;
        pairs += before * x;
        before = x;
    }
    s[4] = pairs - c(ring[(pos + RING - 1) % RING]) * c(ring[pos]);
    s
}

/// Status bits that hide a value the way a falsifier switches a sensor off.
const HIDING: u16 = status::CALIBRATION | status::NOT_POLLED | status::PAUSED;

/// What the signatures need to know about a point, with the lines they
/// derive from its limits and the `[detect]` knobs worked out once
/// ([`FalsifyParams::new`]; the same operations, so the same bits).
#[derive(Debug, Clone, Copy)]
pub struct FalsifyParams {
    /// The point's gas.
    pub gas: Gas,
    /// Its alarm line.
    pub alarm: f64,
    /// Its power-off level, if any.
    pub power_off: Option<f64>,
    /// `drop_zero_fraction` × alarm.
    drop_floor: f64,
    /// `approach_fraction` × alarm.
    approach_floor: f64,
    /// `hug_band` × alarm.
    hug_floor: f64,
    /// The lowest of `approach_floor`, the power-off level, `hug_floor`
    /// and the alarm line: below it a value starts no approach run, asks
    /// nothing of the interlock and is neither in the band nor above the
    /// line.
    quiet_below: f64,
    /// 1 / the gas's quantum.
    inv_quantum: f64,
    /// How far apart two windows of the point must end to count as a
    /// repeat, ms.
    min_gap_ms: i64,
}

impl FalsifyParams {
    /// The parameters of a point of `gas` with over-limit `limits`, polled
    /// every `polling_ms`, under the knobs `cfg` and their figures `k`.
    pub fn new(
        cfg: &DetectConfig,
        k: &DetectConsts,
        limits: &Limits,
        gas: Gas,
        polling_ms: i64,
    ) -> FalsifyParams {
        let alarm = limits.alarm;
        let hug_floor = cfg.hug_band * alarm;
        FalsifyParams {
            gas,
            alarm,
            power_off: limits.power_off,
            drop_floor: cfg.drop_zero_fraction * alarm,
            approach_floor: cfg.approach_fraction * alarm,
            hug_floor,
            quiet_below: [cfg.approach_fraction * alarm, hug_floor, alarm]
                .into_iter()
                .chain(limits.power_off)
                .fold(f64::INFINITY, f64::min),
            inv_quantum: k.gas(gas).inv_quantum,
            min_gap_ms: WINDOW as i64 * polling_ms,
        }
    }
}

impl PointFalsify {
    /// Applies one in-order reading of a point with parameters `p`; `k`
    /// holds what the checks derive from `cfg` ([`DetectConsts::of`]);
    /// `has_value` says the reading carries a finite value that is no
    /// calibration; `feed_live_at` is the event time of the newest reading
    /// of a feed sensor on the point's air path, when that reading says the
    /// power is live (see [`crate::pipeline::ShardCore`]).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn apply(
        &mut self,
        cfg: &DetectConfig,
        k: &DetectConsts,
        p: &FalsifyParams,
        replay: &mut ReplayIndex,
        point: PointIdx,
        r: &Reading,
        has_value: bool,
        feed_live_at: Option<Millis>,
        out: &mut Vec<Finding>,
    ) {
        let hiding = r.status & HIDING != 0;

        // Drop after approach.
        let recent = self
            .last_approach
            .is_some_and(|t| r.ts - t <= k.approach_ms);
        let floor = p.drop_floor;
        if recent && !self.drop_open && (hiding || (has_value && r.value <= floor)) {
            self.drop_open = true;
            raise(out, point, r.ts, Flag::DropAfterApproach, r.value);
        } else if self.drop_open && has_value && r.value > floor && r.status & status::ALARM == 0 {
            self.drop_open = false;
            clear(out, point, r.ts, Flag::DropAfterApproach);
        }
        if !has_value {
            return;
        }
        let v = r.value;

        // The hugging bucket of the reading (no finding comes of it, so it
        // is found before the checks that may raise one). It is found by
        // division only when the reading leaves the current one: one
        // unsigned comparison, as a reading before the bucket's start wraps
        // to a huge offset (the initial bucket, epoch 0 from 0, is a real
        // one).
        let bucket_ms = k.hug_bucket_ms;
        if r.ts.wrapping_sub(self.bucket_from) as u64 >= bucket_ms as u64 {
            self.enter_bucket(r.ts, bucket_ms);
        }
        self.cur_total += 1;

        if v < p.quiet_below {
            // Below the approach floor, the power-off level and the hugging
            // band (nearly every reading): no approach run, no cut
            // commanded and nothing unflagged (the feed need not be asked),
            // nothing to count in the band.
            self.approach_run = 0;
            if self.interlock_dirty {
                self.below_power_off(point, r.ts, out);
            }
        } else {
            if v >= p.approach_floor {
                self.approach_run = self.approach_run.saturating_add(1);
                if self.approach_run >= cfg.approach_min_readings {
                    self.last_approach = Some(r.ts);
                }
            } else {
                self.approach_run = 0;
            }

            // Interlock.
            if let Some(power_off) = p.power_off {
                if v < power_off {
                    self.below_power_off(point, r.ts, out);
                } else {
                    self.interlock_dirty = true;
                    let commanded = r.status & status::POWER_OFF != 0;
                    let cut_since = if commanded {
                        *self.cut_since.get_or_insert(r.ts)
                    } else {
                        self.cut_since = None;
                        Millis::MAX
                    };
                    // A feed reading taken after the power-off began that
                    // still reads live: the command did not cut the load.
                    let feed_abnormal = feed_live_at.is_some_and(|t| t > cut_since);
                    if !commanded || feed_abnormal {
                        let since = *self.unflagged_since.get_or_insert(r.ts);
                        if !self.interlock_open && r.ts - since >= k.interlock_grace_ms {
                            self.interlock_open = true;
                            raise(out, point, since, Flag::Interlock, v);
                        }
                    } else {
                        self.interlock_acted(point, r.ts, out);
                    }
                }
            }

            // Hugging below the line: the band and the line.
            let b = &mut self.buckets[self.slot as usize];
            if v >= p.alarm {
                b.above += 1;
                self.above += 1;
            } else if v >= p.hug_floor {
                b.band += 1;
                self.band += 1;
            }
        }
        // The share is divided out only when it can matter: with no value
        // in the band it is exactly 0.
        let share = |band: u32, total: u32| f64::from(band) / f64::from(total.max(1));
        if !self.hug_open {
            // With no value in the band the share is 0, which opens only
            // under a `hug_share` of 0 (worked out once, `hug_min_band`):
            // the common case is decided by the band count alone.
            if self.band >= k.hug_min_band
                && self.above == 0
                && self.total() >= cfg.hug_min_readings
                && (self.band == 0 || share(self.band, self.total()) >= cfg.hug_share)
            {
                self.hug_open = true;
                raise(out, point, r.ts, Flag::Hugging, v);
            }
        } else if self.above > 0 || share(self.band, self.total()) < k.hug_share_end {
            self.hug_open = false;
            clear(out, point, r.ts, Flag::Hugging);
        }

        // The ring of quantised values, its rolling hash and change count.
        // Round half away from zero by a truncating cast (no libm call),
        // which saturates at the ends of i16 (±327 % methane, ±32 767 ppm
        // CO: far outside any range, every such value the same quantum).
        let x = v * p.inv_quantum;
        let qv = (x + 0.5f64.copysign(x)) as i16;
        // Whether a value differs from its neighbour (data, as likely as
        // not) is shifted in as a bit, not branched on; the changes of a
        // window are counted only when it is sampled.
        // The first value's bit (against the ring's initial 0) has left the
        // `WINDOW_PAIRS` of every window counted (the first is counted
        // once `WINDOW` values are in), so it needs no test of its own.
        let prev = self.ring[(self.pos + RING - 1) % RING];
        self.change_bits = (self.change_bits << 1) | u32::from(qv != prev);
        // The hash starts from a window of zeros (the ring's initial
        // values), so the value a window ago always leaves it.
        let old = self.ring[(self.pos + RING - WINDOW) % RING];
        self.hash = ReplayIndex::roll(self.hash, qv, old);
        self.ring[self.pos % RING] = qv;
        self.pos = (self.pos + 1) % RING;
        self.until_uniform -= 1;

        // Replay: look the window up, then index it. Sampling first:
        // whether a window is sampled is predictable (one in
        // `replay_sample`); whether the ring holds a whole window yet (it
        // does once `until_uniform` has counted down the first `WINDOW`
        // of its `RING` values, and from then on it stays at or below
        // `RING - WINDOW`: `UNIFORM_EVERY` is no more) and whether it has
        // enough changes (as likely as not) are tested only for sampled
        // windows.
        if ReplayIndex::sampled(self.hash, cfg.replay_sample)
            && self.until_uniform as usize <= RING - WINDOW
            && (self.change_bits & WINDOW_PAIRS).count_ones() >= cfg.replay_min_changes
            && replay.check_and_insert(self.hash, point, r.ts, p.min_gap_ms, cfg)
        {
            self.since_match = 0;
            if !self.replay_open {
                self.replay_open = true;
                raise(out, point, r.ts, Flag::Replayed, v);
            }
        } else if self.replay_open {
            // Counted only while an episode is open (the count is read
            // only then, and the hit that opens one starts it at 0). Hits
            // come about one sampled window in `replay_sample` apart: the
            // episode ends after four times that without one (at least a
            // window: `replay_quiet` ≥ 1).
            self.since_match = self.since_match.saturating_add(1);
            if self.since_match as usize >= k.replay_quiet {
                self.replay_open = false;
                clear(out, point, r.ts, Flag::Replayed);
            }
        }

        // Uniform noise, every 32 readings over the last 64 (the first
        // once the ring is full).
        if self.until_uniform == 0 {
            self.until_uniform = UNIFORM_EVERY;
            let uniform = self.looks_uniform(cfg);
            if uniform {
                self.uniform_hits += 1;
                if self.uniform_hits >= 2 && !self.uniform_open {
                    self.uniform_open = true;
                    raise(out, point, r.ts, Flag::UniformNoise, v);
                }
            } else {
                self.uniform_hits = 0;
                if self.uniform_open {
                    self.uniform_open = false;
                    clear(out, point, r.ts, Flag::UniformNoise);
                }
            }
        }
    }

    /// Makes the bucket of event time `ts` (buckets of `bucket_ms`) the
    /// current one.
    #[cold]
    #[inline(never)]
    fn enter_bucket(&mut self, ts: Millis, bucket_ms: i64) {
        let epoch = ts.div_euclid(bucket_ms);
        self.bucket_from = epoch * bucket_ms;
        // The bucket left takes its count and joins the others; the one
        // entered leaves them (it counts itself).
        self.buckets[self.slot as usize].total = self.cur_total;
        self.others += self.cur_total;
        self.slot = epoch.rem_euclid(BUCKETS as i64) as u32;
        // Buckets older than the window (a gap in the data) and the one
        // this bucket reuses are emptied.
        for (i, b) in self.buckets.iter_mut().enumerate() {
            let old = i64::from(b.epoch);
            if (i == self.slot as usize && old != epoch)
                || (epoch - old >= BUCKETS as i64 && b.total > 0)
            {
                self.others -= b.total;
                self.band -= b.band;
                self.above -= b.above;
                *b = Bucket::default();
            }
        }
        let b = &mut self.buckets[self.slot as usize];
        b.epoch = epoch as i32;
        self.others -= b.total;
        self.cur_total = b.total;
    }

    /// A value below the power-off level at `ts`: no cut commanded,
    /// nothing unflagged, an interlock episode ends; the interlock state is
    /// clean again.
    fn below_power_off(&mut self, point: PointIdx, ts: Millis, out: &mut Vec<Finding>) {
        self.cut_since = None;
        self.interlock_dirty = false;
        self.interlock_acted(point, ts, out);
    }

    /// Readings of the hugging window (the current bucket's and the
    /// others').
    fn total(&self) -> u32 {
        self.others + self.cur_total
    }

    /// Nothing over the power-off level goes unflagged at `ts` (the value
    /// is below it, or the cut was commanded and no feed reads live): an
    /// interlock episode ends.
    #[inline(always)]
    fn interlock_acted(&mut self, point: PointIdx, ts: Millis, out: &mut Vec<Finding>) {
        self.unflagged_since = None;
        if self.interlock_open {
            self.interlock_open = false;
            clear(out, point, ts, Flag::Interlock);
        }
    }

    /// Sums over the full ring of q, q², q³, q⁴ and of q·q_next over its
    /// 63 neighbouring pairs in event-time order (q clamped to ±10 000
    /// quanta, so exact in i64: the same integers whatever the order of
    /// summation). One pass; the clamp only when a value needs it (`lo`
    /// and `hi` are the ring's smallest and largest values).
    fn moments(&self, lo: i16, hi: i16) -> [i64; 5] {
        if lo >= -MOMENT_CLAMP && hi <= MOMENT_CLAMP {
            sums(&self.ring, self.pos, i64::from)
        } else {
            sums(&self.ring, self.pos, |q| {
                i64::from(q.clamp(-MOMENT_CLAMP, MOMENT_CLAMP))
            })
        }
    }

    /// Span, kurtosis and lag-1 autocorrelation of the full ring. The span
    /// comes first: the cheapest of the three (a vectorised min/max), and
    /// what most real windows already fail; the moments only for the rest.
    fn looks_uniform(&self, cfg: &DetectConfig) -> bool {
        let lo = self.ring.iter().copied().fold(i16::MAX, i16::min);
        let hi = self.ring.iter().copied().fold(i16::MIN, i16::max);
        let wide = f64::from(hi) - f64::from(lo) >= cfg.uniform_min_span_quanta;
        if !wide {
            return false;
        }
        let n = RING as f64;
        let [s1, s2, s3, s4, s11] = self.moments(lo, hi).map(|v| v as f64);
        let mu = s1 / n;
        let m2 = s2 / n - mu * mu;
        if m2 <= 1e-9 {
            return false;
        }
        let m4 = s4 / n - 4.0 * mu * s3 / n + 6.0 * mu * mu * s2 / n - 3.0 * mu.powi(4);
        let kurtosis = m4 / (m2 * m2);
        // Σ (q_i − μ)(q_{i+1} − μ) over the n − 1 neighbouring pairs: the
        // oldest and newest values enter the cross sums once.
        let clamp = |q: i16| f64::from(q.clamp(-MOMENT_CLAMP, MOMENT_CLAMP));
        let oldest = clamp(self.ring[self.pos]);
        let newest = clamp(self.ring[(self.pos + RING - 1) % RING]);
        let c1 = s11 - mu * (2.0 * s1 - oldest - newest) + (n - 1.0) * mu * mu;
        let r1 = c1 / (n * m2);
        kurtosis < cfg.uniform_max_kurtosis && r1.abs() < cfg.uniform_max_autocorr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: Limits = Limits {
        gas: Gas::Methane,
        alarm: 1.0,
        power_off: Some(1.5),
        restore: 1.0,
        evacuate: Some(1.5),
        hold_ms: 0,
        from_rule: true,
        fault_above: 8.0,
    };

    struct Run {
        s: PointFalsify,
        idx: ReplayIndex,
        out: Vec<Finding>,
        cfg: DetectConfig,
        /// What the air path's feed sensor reads (live) for the next readings.
        feed_live: bool,
    }

    impl Run {
        fn new() -> Run {
            let cfg = DetectConfig {
                replay_table_bits: 12,
                ..DetectConfig::default()
            };
            Run {
                s: PointFalsify::default(),
                idx: ReplayIndex::new(&cfg),
                out: Vec::new(),
                cfg,
                feed_live: false,
            }
        }

        fn feed(&mut self, point: PointIdx, t: i64, value: f64, st: u16) {
            let r = Reading {
                point,
                ts: t * 1000,
                value,
                status: st,
            };
            let k = DetectConsts::of(&self.cfg);
            let p = FalsifyParams::new(&self.cfg, &k, &T1, Gas::Methane, 5000);
            let has_value =
                st & (status::NOT_A_VALUE | status::CALIBRATION) == 0 && value.is_finite();
            self.s.apply(
                &self.cfg,
                &k,
                &p,
                &mut self.idx,
                point,
                &r,
                has_value,
                self.feed_live.then_some(r.ts),
                &mut self.out,
            );
        }

        fn text(&self) -> Vec<String> {
            self.out
                .iter()
                .map(|f| match f {
                    Finding::FlagRaised { ts, flag, .. } => {
                        format!("+{}@{}", flag.key(), ts / 1000)
                    }
                    Finding::FlagCleared { ts, flag, .. } => {
                        format!("-{}@{}", flag.key(), ts / 1000)
                    }
                    other => format!("{other:?}"),
                })
                .collect()
        }
    }

    /// A deterministic pseudo-random number in [0, 1) for step `i`.
    fn noise(i: i64) -> f64 {
        let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef;
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 32;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A drifting, noisy methane series (not periodic: a real sensor never
    /// repeats itself).
    fn wobble(i: i64, level: f64) -> f64 {
        let drift = 0.05 * ((i as f64) / 40.0).sin();
        ((level + drift + 0.02 * (noise(i) - 0.5)) * 100.0).round() / 100.0
    }

    #[test]
    fn normal_traffic_raises_nothing() {
        let mut r = Run::new();
        for i in 0..5000 {
            r.feed(1, i * 5, wobble(i, 0.3), 0);
        }
        assert!(r.text().is_empty(), "{:?}", r.text());
    }

    #[test]
    fn hugging_below_the_line() {
        let mut r = Run::new();
        for i in 0..1000 {
            let v = ((0.9 + 0.09 * noise(i)) * 100.0).round() / 100.0;
            r.feed(1, i * 5, v, 0);
        }
        r.feed(1, 5000, 1.05, 0);
        assert_eq!(r.text(), ["+hugging@295", "-hugging@5000"]);
    }

    #[test]
    fn drop_to_zero_or_calibration_after_approach() {
        let mut r = Run::new();
        r.feed(1, 0, 0.82, 0);
        r.feed(1, 1, 0.83, 0);
        r.feed(1, 3, 0.84, 0);
        r.feed(1, 5, 0.85, 0);
        r.feed(1, 10, 0.0, 0);
        r.feed(1, 15, 0.0, 0);
        r.feed(1, 20, 0.4, 0);
        r.feed(1, 21, 0.9, 0);
        r.feed(1, 23, 0.9, 0);
        r.feed(1, 25, 0.9, 0);
        r.feed(1, 30, 2.0, status::CALIBRATION);
        // A one-reading spike is not an approach.
        r.feed(1, 300, 0.3, 0);
        r.feed(1, 305, 0.95, 0);
        r.feed(1, 310, 0.0, 0);
        // Long after an approach, a drop is not suspicious.
        r.feed(1, 400, 0.3, 0);
        r.feed(1, 403, 0.3, 0);
        r.feed(1, 405, 0.3, 0);
        r.feed(1, 410, 0.0, 0);
        assert_eq!(
            r.text(),
            [
                "+drop_after_approach@10",
                "-drop_after_approach@20",
                "+drop_after_approach@30",
                "-drop_after_approach@300"
            ]
        );
    }

    #[test]
    fn over_power_off_without_power_off_status() {
        let mut r = Run::new();
        for t in (0..100).step_by(5) {
            r.feed(1, t, 1.6, status::ALARM | status::POWER_OFF);
        }
        assert!(r.text().is_empty());
        for t in (100..200).step_by(5) {
            r.feed(1, t, 1.6, status::ALARM);
        }
        r.feed(1, 200, 0.5, 0);
        assert_eq!(r.text(), ["+interlock@100", "-interlock@200"]);
    }

    #[test]
    fn power_off_status_with_the_feed_still_live_is_feed_abnormal() {
        let mut r = Run::new();
        // Power-off commanded and the feed cut: the interlock acted.
        for t in (0..100).step_by(5) {
            r.feed(1, t, 1.6, status::ALARM | status::POWER_OFF);
        }
        assert!(r.text().is_empty());
        // The status still says power-off but the feed reads live; a
        // moment inside the grace is not yet a finding.
        r.feed_live = true;
        for t in (100..135).step_by(5) {
            r.feed(1, t, 1.6, status::ALARM | status::POWER_OFF);
        }
        assert!(r.text().is_empty());
        r.feed_live = false;
        r.feed(1, 135, 1.6, status::ALARM | status::POWER_OFF);
        r.feed_live = true;
        for t in (140..250).step_by(5) {
            r.feed(1, t, 1.6, status::ALARM | status::POWER_OFF);
        }
        // The feed goes dead: the episode ends.
        r.feed_live = false;
        r.feed(1, 250, 1.6, status::ALARM | status::POWER_OFF);
        assert_eq!(r.text(), ["+interlock@140", "-interlock@250"]);
    }

    #[test]
    fn the_moments_are_those_of_the_last_64_values_in_order() {
        let mut r = Run::new();
        let mut seen = Vec::new();
        for i in 0..300 {
            // Some values beyond the clamp, some negative.
            let v = match i % 37 {
                0 => 250.0,
                1 => -180.0,
                _ => wobble(i, 0.3) + 0.01 * (i % 5) as f64,
            };
            r.feed(1, i * 5, v, 0);
            let q = (v * 100.0).round().clamp(-10_000.0, 10_000.0) as i64;
            seen.push(q);
            if seen.len() >= RING {
                let w = &seen[seen.len() - RING..];
                let want = [
                    w.iter().sum::<i64>(),
                    w.iter().map(|x| x * x).sum(),
                    w.iter().map(|x| x * x * x).sum(),
                    w.iter().map(|x| x * x * x * x).sum(),
                    w.windows(2).map(|p| p[0] * p[1]).sum(),
                ];
                let lo = r.s.ring.iter().copied().min().unwrap();
                let hi = r.s.ring.iter().copied().max().unwrap();
                assert_eq!(r.s.moments(lo, hi), want, "after {i}");
            }
        }
    }

    #[test]
    fn uniform_noise_is_told_from_a_drifting_sensor() {
        let mut r = Run::new();
        // A linear congruential generator stands in for the fake feed.
        let mut x: u64 = 12345;
        for i in 0..400 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            r.feed(1, i * 5, ((0.1 + 0.9 * u) * 100.0).round() / 100.0, 0);
        }
        assert!(
            r.text().iter().any(|t| t.starts_with("+uniform_noise")),
            "{:?}",
            r.text()
        );
    }

    #[test]
    fn a_replayed_window_is_found_in_the_same_and_another_point() {
        let mut r = Run::new();
        let series: Vec<f64> = (0..200).map(|i| wobble(i * 3 + i / 7, 0.3)).collect();
        for (i, v) in series.iter().enumerate() {
            r.feed(1, i as i64 * 5, *v, 0);
        }
        assert!(r.text().is_empty(), "{:?}", r.text());
        // Point 2 plays the same values an hour later.
        let mut other = PointFalsify::default();
        std::mem::swap(&mut r.s, &mut other);
        for (i, v) in series.iter().enumerate() {
            r.feed(2, 3600 + i as i64 * 5, *v, 0);
        }
        assert!(
            r.text().iter().any(|t| t.starts_with("+replayed")),
            "{:?}",
            r.text()
        );
    }

    #[test]
    fn the_hugging_window_counts_the_readings_of_its_buckets() {
        let mut r = Run::new();
        let bucket_ms = DetectConsts::of(&r.cfg).hug_bucket_ms;
        let mut seen: Vec<i64> = Vec::new();
        let mut t = 0;
        for i in 0..3000i64 {
            // Steady polling with now and then a gap: a bucket's worth, a
            // few buckets, more than the whole window.
            t += match i % 401 {
                100 => 2 * bucket_ms / 1000,
                250 => 5 * bucket_ms / 1000,
                400 => 20 * bucket_ms / 1000,
                _ => 5,
            };
            r.feed(1, t, wobble(i, 0.3), 0);
            seen.push(t * 1000);
            let epoch = (t * 1000).div_euclid(bucket_ms);
            let want = seen
                .iter()
                .filter(|&&ts| epoch - ts.div_euclid(bucket_ms) < BUCKETS as i64)
                .count();
            assert_eq!(r.s.total() as usize, want, "after {i} at {t} s");
        }
    }

    #[test]
    fn a_value_below_the_power_off_level_restarts_the_grace() {
        let mut r = Run::new();
        // 35 s over the level unflagged (the grace is 40 s), then below it.
        for t in (0..40).step_by(5) {
            r.feed(1, t, 1.6, status::ALARM);
        }
        r.feed(1, 40, 0.5, 0);
        // Over it again: 35 s is still inside the grace counted anew.
        for t in (45..85).step_by(5) {
            r.feed(1, t, 1.6, status::ALARM);
        }
        assert!(r.text().is_empty(), "{:?}", r.text());
        r.feed(1, 85, 1.6, status::ALARM);
        r.feed(1, 90, 0.3, 0);
        assert_eq!(r.text(), ["+interlock@45", "-interlock@90"]);
    }

    #[test]
    fn values_beyond_the_ring_s_range_saturate() {
        let mut r = Run::new();
        r.feed(1, 0, 1e9, 0);
        r.feed(1, 5, -1e9, 0);
        r.feed(1, 10, 400.0, 0);
        assert_eq!(&r.s.ring[..3], &[i16::MAX, i16::MIN, i16::MAX]);
    }
}
