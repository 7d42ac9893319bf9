//! The air-path rules: methane points on one air path (face T0 / T1 /
//! return T2, heading T1 / T2 with the same air-path number, see
//! [`crate::config::registry::air_path_of`]) move together, each a few
//! minutes behind the one upstream. Three rules compare a member with the
//! others, once a minute:
//!
//! - **neighbours_disagree** (相邻测点不一致, paths of three or more): one
//!   staying flat or falling while the others rise — wrapped, moved into
//!   fresh air or fed fake values.
//!   - a member *rises* when its 3-minute mean ending at M exceeds the one
//!     `neighbours_window_mins` earlier by at least `neighbours_rise`;
//!   - with at least two risers, every other member is compared with them:
//!     its lag behind the risers is found by aligning the curves (the lag
//!     in 0..=`neighbours_max_lag_mins` that maximises the correlation of
//!     its minute-to-minute changes with theirs; with no clear correlation
//!     the largest lag is assumed); if the risers had already risen by the
//!     same amount at M − lag while the member's own change up to M is at
//!     most a quarter of `neighbours_rise`, it is flagged.
//!
//!   The episode opens after two judgements in a row flag the member and
//!   ends at the first judgement that does not.
//! - **offset** (零点偏移, paths of two or more): a change-point test on
//!   the member's level against the path's. Each member learns, as
//!   exponentially weighted means over `offset_learn_mins`, its own level
//!   and the mean level of the others; their ratio g scales the path's
//!   3-minute mean into what the member should read, and the residual is
//!   what it reads less that (0 on average, by construction). A fall of
//!   the residual by at least `offset_min` from the 3 minutes before a
//!   minute to the 3 after it, from where
//!   the point tracked its path (the residual within `offset_min` of 0 over
//!   the 3 minutes before and the 3 before those: not the end of
//!   a rise of its own) and with a fall of the member's own 3-minute mean
//!   by as much, is a candidate; it is dropped when the residual is back
//!   above −½ `offset_min` two minutes in a row, and raised when it has
//!   held `offset_confirm_mins` minutes with its mean at or below
//!   −`offset_min`. The episode ends when the residual is back above
//!   −½ `offset_min`. Learning stops while a candidate or an episode
//!   is open.
//! - **sensitivity** (灵敏度调低, paths of two or more): a *path rise* is a
//!   span in which the mean of the others' 3-minute means exceeds the one
//!   `neighbours_window_mins` earlier by at least `neighbours_rise`; over
//!   it the largest rise of the path and of the member are kept. At its
//!   end the member learns its share (own ÷ path) as an exponentially
//!   weighted mean (weight ¼) with its mean absolute deviation. A member
//!   that has followed at least `sensitivity_learn_events` rises with a
//!   steady share (deviation at most `sensitivity_max_spread` of it, share
//!   at least 0.2) is judged on rises of at least `sensitivity_min_rise`
//!   once `neighbours_max_lag_mins` have passed: flagged when its own
//!   rise is at most `sensitivity_fraction` × share × the path's. Two
//!   judgements in a row open the episode; it ends with the path rise or
//!   at the first judgement that does not flag it. Not learned: a rise in
//!   which it was flagged, one that came in one step (3 minutes: a sensor
//!   put back, not gas), one during an offset candidate or episode of the
//!   member. A member with an offset candidate or episode open, or one
//!   that ended within the window, is no reference for the others.
//!
//! The mine state lives in the shard, which owns all of a mine's points.

use crate::config::detect::DetectConfig;
use crate::model::{Finding, Flag, Millis, PointIdx};

/// Minutes of history per member.
pub const MINUTES: usize = 32;

/// Judgements in a row a member must be flagged by before its episode
/// opens (a real disagreement persists; a drift coincidence does not).
pub const CONFIRM: u8 = 2;

/// One-minute means of one member.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct MinuteSeries {
    // The fields every reading writes come first, so that a reading
    // touches one cache line of the series (`repr(C)` keeps this order).
    /// The current minute's span in event time, ms: `[from, to)` (empty
    /// before the first value).
    from: Millis,
    to: Millis,
    sum: f64,
    count: u32,
    current: i64,
    /// Means by minute number modulo [`MINUTES`].
    means: [f32; MINUTES],
    /// The minute number each slot holds (`i64::MIN` = none).
    minute: [i64; MINUTES],
}

impl Default for MinuteSeries {
    fn default() -> Self {
        MinuteSeries {
            means: [0.0; MINUTES],
            minute: [i64::MIN; MINUTES],
            current: i64::MIN,
            from: Millis::MAX,
            to: Millis::MIN,
            sum: 0.0,
            count: 0,
        }
    }
}

impl MinuteSeries {
    /// Adds an in-order value; returns the minute just completed, if any.
    pub fn push(&mut self, ts: Millis, v: f64) -> Option<i64> {
        let mut done = None;
        // Division only when the reading leaves the current minute.
        let same = ts >= self.from && ts < self.to;
        if !same {
            let m = ts.div_euclid(60_000);
            if self.count > 0 {
                let slot = self.current.rem_euclid(MINUTES as i64) as usize;
                self.means[slot] = (self.sum / f64::from(self.count)) as f32;
                self.minute[slot] = self.current;
                done = Some(self.current);
            }
            self.current = m;
            self.from = m.wrapping_mul(60_000);
            self.to = m.wrapping_add(1).wrapping_mul(60_000);
            self.sum = 0.0;
            self.count = 0;
        }
        self.sum += v;
        self.count += 1;
        done
    }

    fn at(&self, m: i64) -> Option<f64> {
        let slot = m.rem_euclid(MINUTES as i64) as usize;
        (self.minute[slot] == m).then(|| f64::from(self.means[slot]))
    }

    /// Mean of minutes m-2..=m, if all three are there.
    fn mean3(&self, m: i64) -> Option<f64> {
        Some((self.at(m)? + self.at(m - 1)? + self.at(m - 2)?) / 3.0)
    }

    fn change(&self, end: i64, window: i64) -> Option<f64> {
        Some(self.mean3(end)? - self.mean3(end - window)?)
    }
}

/// What the offset and sensitivity rules keep of one member (learned
/// levels and shares, an open candidate or rise): fixed size.
#[derive(Debug, Clone, Copy)]
pub struct Track {
    /// Learned level of the member and of the rest of its path (EW means
    /// of their 3-minute means, %).
    lvl_own: f32,
    lvl_path: f32,
    /// Minutes learned (saturating).
    learned: u32,
    /// The residual just before the step of an open candidate or episode.
    b0: f32,
    /// The minute its last offset episode ended.
    offset_end: i64,
    /// Minutes an offset candidate has held (0: none), and the sum of its
    /// residuals.
    cand_mins: u16,
    cand_sum: f32,
    /// Minutes in a row the candidate's residual was back up.
    cand_back: u8,
    offset_open: bool,
    sens_open: bool,
    /// Judgements in a row that flagged the member's sensitivity.
    sens_streak: u8,
    /// The current path rise was flagged at the member (not learned).
    event_flagged: bool,
    /// Minutes into the current path rise (0: none).
    event_mins: u16,
    /// Largest rise of the path and of the member in it, and the path's
    /// largest 3-minute step in it, %.
    event_path: f32,
    event_own: f32,
    event_step: f32,
    /// Weighted sums of the member's and the path's rises (their ratio is
    /// the member's learned share, big rises weighing most) and of the
    /// deviation |own − share × path| (over `sum_path`, the spread).
    sum_own: f32,
    sum_path: f32,
    spread: f32,
    /// Path rises learned (saturating).
    events: u16,
}

impl Default for Track {
    fn default() -> Self {
        Track {
            lvl_own: 0.0,
            lvl_path: 0.0,
            learned: 0,
            b0: 0.0,
            offset_end: i64::MIN / 2,
            cand_mins: 0,
            cand_sum: 0.0,
            cand_back: 0,
            offset_open: false,
            sens_open: false,
            sens_streak: 0,
            event_flagged: false,
            event_mins: 0,
            event_path: 0.0,
            event_own: 0.0,
            event_step: 0.0,
            sum_own: 0.0,
            sum_path: 0.0,
            spread: 0.0,
            events: 0,
        }
    }
}

/// A path rise whose largest 3-minute step is more than this share of it
/// came in one step — a sensor put back or re-set, not gas, which builds
/// up over minutes — and is neither judged nor learned.
const STEP_SHARE: f64 = 0.8;

impl Track {
    /// The learned share of the path's rises.
    fn share(&self) -> f64 {
        if self.sum_path > 0.0 {
            f64::from(self.sum_own) / f64::from(self.sum_path)
        } else {
            0.0
        }
    }

    /// The learned deviation from that share, as a share of the path's
    /// rise.
    fn spread_share(&self) -> f64 {
        if self.sum_path > 0.0 {
            f64::from(self.spread) / f64::from(self.sum_path)
        } else {
            f64::INFINITY
        }
    }
}

/// Bytes of offset and sensitivity state per member of a path.
pub const TRACK_BYTES: usize = std::mem::size_of::<Track>();

/// One air path of a mine.
#[derive(Debug, Clone, Default)]
pub struct Path {
    /// Members: (shard-local slot, registry point).
    pub members: Vec<(usize, PointIdx)>,
    /// Which members have an open episode.
    pub open: Vec<bool>,
    /// Judgements in a row that flagged each member.
    pub streak: Vec<u8>,
    /// Offset and sensitivity state of each member.
    pub track: Vec<Track>,
    /// The last minute judged.
    pub judged: i64,
}

impl Path {
    /// A path over these members.
    pub fn new(members: Vec<(usize, PointIdx)>) -> Path {
        Path {
            open: vec![false; members.len()],
            streak: vec![0; members.len()],
            track: vec![Track::default(); members.len()],
            members,
            judged: i64::MIN,
        }
    }

    /// Judges minute `m`; `series(i)` gives member i's series.
    pub fn judge<'a>(
        &mut self,
        cfg: &DetectConfig,
        m: i64,
        series: impl Fn(usize) -> Option<&'a MinuteSeries>,
        out: &mut Vec<Finding>,
    ) {
        if m <= self.judged {
            return;
        }
        self.judged = m;
        let w = i64::from(cfg.neighbours_window_mins);
        let max_lag = i64::from(cfg.neighbours_max_lag_mins);
        let n = self.members.len();
        let mut rising = [false; 8];
        let mut risers = 0;
        for (i, r) in rising.iter_mut().enumerate().take(n.min(8)) {
            let Some(s) = series(self.members[i].0) else {
                continue;
            };
            if s.change(m, w).is_some_and(|c| c >= cfg.neighbours_rise) {
                *r = true;
                risers += 1;
            }
        }
        let ts = (m + 1) * 60_000;
        for j in 0..n.min(8) {
            self.levels(cfg, j, m, ts, &series, out);
        }
        if n < 3 {
            return;
        }
        for j in 0..n.min(8) {
            let mut flagged = false;
            if !rising[j] && risers >= 2 {
                flagged = self.lagging_flat(cfg, j, &rising, m, w, max_lag, &series);
            }
            self.streak[j] = if flagged {
                self.streak[j].saturating_add(1)
            } else {
                0
            };
            if self.streak[j] >= CONFIRM && !self.open[j] {
                self.open[j] = true;
                out.push(Finding::FlagRaised {
                    point: self.members[j].1,
                    ts,
                    flag: Flag::NeighboursDisagree,
                    value: f64::NAN,
                });
            } else if !flagged && self.open[j] {
                self.open[j] = false;
                out.push(Finding::FlagCleared {
                    point: self.members[j].1,
                    ts,
                    flag: Flag::NeighboursDisagree,
                });
            }
        }
    }

    /// The offset and sensitivity rules for member `j` at minute `m`.
    fn levels<'a>(
        &mut self,
        cfg: &DetectConfig,
        j: usize,
        m: i64,
        ts: Millis,
        series: &impl Fn(usize) -> Option<&'a MinuteSeries>,
        out: &mut Vec<Finding>,
    ) {
        let Some(sj) = series(self.members[j].0) else {
            return;
        };
        let w = i64::from(cfg.neighbours_window_mins);
        // The mean of the other members' 3-minute means now, 4 minutes
        // ago (the 3 minutes before a step in the minute between) and a
        // window ago (over the members that have all three).
        let (mut nb, mut nb_b, mut nb_bb, mut nb_w, mut k) = (0.0, 0.0, 0.0, 0.0, 0u32);
        for (i, &(local, _)) in self.members.iter().enumerate() {
            // A member reading low against the path, or put right within
            // the window, is no reference: its step back up is no gas.
            let ti = &self.track[i];
            if i == j || ti.offset_open || ti.cand_mins > 0 || m - ti.offset_end < w {
                continue;
            }
            let Some(s) = series(local) else { continue };
            if let (Some(a), Some(b), Some(bb), Some(c)) =
                (s.mean3(m), s.mean3(m - 4), s.mean3(m - 8), s.mean3(m - w))
            {
                nb += a;
                nb_b += b;
                nb_bb += bb;
                nb_w += c;
                k += 1;
            }
        }
        let (Some(own), Some(own_b), Some(own_bb), true) =
            (sj.mean3(m), sj.mean3(m - 4), sj.mean3(m - 8), k > 0)
        else {
            return;
        };
        let kf = f64::from(k);
        let (nb, nb_b, nb_bb, nb_w) = (nb / kf, nb_b / kf, nb_bb / kf, nb_w / kf);
        let point = self.members[j].1;
        let t = &mut self.track[j];

        // Offset.
        let off = cfg.offset_min;
        let learn = f64::from(cfg.offset_learn_mins);
        if t.learned > 0 && f64::from(t.lvl_path) >= 0.05 {
            let g = f64::from(t.lvl_own) / f64::from(t.lvl_path);
            let e = own - g * nb;
            if t.offset_open {
                if e > f64::from(t.b0) - off / 2.0 {
                    t.offset_open = false;
                    t.offset_end = m;
                    out.push(Finding::FlagCleared {
                        point,
                        ts,
                        flag: Flag::Offset,
                    });
                }
            } else if t.cand_mins > 0 {
                let back = e > f64::from(t.b0) - off / 2.0;
                t.cand_back = if back { t.cand_back + 1 } else { 0 };
                if t.cand_back >= 2 {
                    // Back where it was: a dip, not an offset.
                    t.cand_mins = 0;
                } else {
                    t.cand_mins = t.cand_mins.saturating_add(1);
                    t.cand_sum += e as f32;
                    if u32::from(t.cand_mins) >= cfg.offset_confirm_mins {
                        let mean = f64::from(t.cand_sum) / f64::from(t.cand_mins);
                        t.cand_mins = 0;
                        if mean <= f64::from(t.b0) - off {
                            t.offset_open = true;
                            out.push(Finding::FlagRaised {
                                point,
                                ts,
                                flag: Flag::Offset,
                                value: own,
                            });
                        }
                    }
                }
            } else if f64::from(t.learned) >= learn / 4.0 {
                // A step down of its own, not explained by the path's,
                // from where the point tracked its path (not from a rise
                // of its own, which may end in such a step): the 3 minutes
                // now against the 3 before the minute before them, the
                // residual near 0 over those and the 3 before them.
                let e_b = own_b - g * nb_b;
                let e_bb = own_bb - g * nb_bb;
                if own - own_b <= -off && e - e_b <= -off && e_b.abs() <= off && e_bb.abs() <= off {
                    t.cand_mins = 1;
                    t.cand_back = 0;
                    t.cand_sum = e as f32;
                    t.b0 = 0.0;
                }
            }
        }
        if t.cand_mins == 0 && !t.offset_open {
            // The running mean at first, then exponentially weighted.
            let a = 1.0 / (f64::from(t.learned) + 1.0).min(learn);
            t.lvl_own += (a * (own - f64::from(t.lvl_own))) as f32;
            t.lvl_path += (a * (nb - f64::from(t.lvl_path))) as f32;
            t.learned = t.learned.saturating_add(1);
        }

        // Sensitivity.
        let path_rise = nb - nb_w;
        let own_rise = sj.change(m, w).unwrap_or(0.0);
        if path_rise >= cfg.neighbours_rise {
            t.event_mins = t.event_mins.saturating_add(1);
            t.event_path = t.event_path.max(path_rise as f32);
            t.event_own = t.event_own.max(own_rise as f32);
            t.event_step = t.event_step.max((nb - nb_b) as f32);
            let share = t.share();
            let judged = u32::from(t.events) >= cfg.sensitivity_learn_events
                && share >= 0.2
                && t.spread_share() <= cfg.sensitivity_max_spread * share
                && f64::from(t.event_path) >= cfg.sensitivity_min_rise
                && f64::from(t.event_step) <= STEP_SHARE * f64::from(t.event_path)
                && i64::from(t.event_mins) > i64::from(cfg.neighbours_max_lag_mins);
            let flagged = judged
                && f64::from(t.event_own)
                    <= cfg.sensitivity_fraction * share * f64::from(t.event_path);
            t.sens_streak = if flagged {
                t.sens_streak.saturating_add(1)
            } else {
                0
            };
            if flagged {
                t.event_flagged = true;
            }
            if t.sens_streak >= CONFIRM && !t.sens_open {
                t.sens_open = true;
                out.push(Finding::FlagRaised {
                    point,
                    ts,
                    flag: Flag::Sensitivity,
                    value: own,
                });
            } else if !flagged && t.sens_open {
                t.sens_open = false;
                out.push(Finding::FlagCleared {
                    point,
                    ts,
                    flag: Flag::Sensitivity,
                });
            }
        } else if t.event_mins > 0 && path_rise < cfg.neighbours_rise / 2.0 {
            if t.sens_open {
                t.sens_open = false;
                out.push(Finding::FlagCleared {
                    point,
                    ts,
                    flag: Flag::Sensitivity,
                });
            }
            let stepped = t.event_step > STEP_SHARE as f32 * t.event_path;
            let reading_low = t.offset_open || t.cand_mins > 0;
            if !t.event_flagged && !stepped && !reading_low && t.event_path > 0.0 {
                // Weighted sums, ¼ per rise (running sums over the first
                // four). The deviation starts at half the first rise (little
                // trust yet): a point earns its judgement with steady
                // rises (four at the least with the defaults).
                let (own, path) = (t.event_own.max(0.0), t.event_path);
                let a = 1.0 / f32::from(t.events.saturating_add(1).min(4));
                let dev = if t.events == 0 {
                    own / 2.0
                } else {
                    (own - t.share() as f32 * path).abs()
                };
                if t.events == 0 {
                    t.spread = dev;
                } else {
                    t.spread += (dev - t.spread) / 4.0;
                }
                t.sum_own += a * (own - t.sum_own);
                t.sum_path += a * (path - t.sum_path);
                t.events = t.events.saturating_add(1);
            }
            t.event_mins = 0;
            t.event_path = 0.0;
            t.event_own = 0.0;
            t.event_step = 0.0;
            t.event_flagged = false;
            t.sens_streak = 0;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn lagging_flat<'a>(
        &self,
        cfg: &DetectConfig,
        j: usize,
        rising: &[bool; 8],
        m: i64,
        w: i64,
        max_lag: i64,
        series: &impl Fn(usize) -> Option<&'a MinuteSeries>,
    ) -> bool {
        let Some(sj) = series(self.members[j].0) else {
            return false;
        };
        let Some(own) = sj.change(m, w) else {
            return false;
        };
        if own > cfg.neighbours_rise / 4.0 {
            return false;
        }
        // The risers' mean minute-to-minute change, and the lag of j.
        let risers: Vec<&MinuteSeries> = (0..self.members.len().min(8))
            .filter(|&i| rising[i])
            .filter_map(|i| series(self.members[i].0))
            .collect();
        let span = w + max_lag;
        let diff = |s: &MinuteSeries, k: i64| Some(s.at(k)? - s.at(k - 1)?);
        let mut best = (0.3, max_lag);
        for lag in 0..=max_lag {
            let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
            for k in (m - span + lag + 1)..=m {
                let Some(y) = diff(sj, k) else { continue };
                let mut x = 0.0;
                let mut ok = true;
                for s in &risers {
                    match diff(s, k - lag) {
                        Some(d) => x += d,
                        None => ok = false,
                    }
                }
                if ok {
                    sxy += x * y;
                    sxx += x * x;
                    syy += y * y;
                }
            }
            if sxx > 0.0 && syy > 0.0 {
                let corr = sxy / (sxx * syy).sqrt();
                if corr > best.0 {
                    best = (corr, lag);
                }
            }
        }
        let lag = best.1;
        risers.iter().all(|s| {
            s.change(m - lag, w)
                .is_some_and(|c| c >= cfg.neighbours_rise)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut MinuteSeries, minute: i64, v: f64) -> Option<i64> {
        let mut done = None;
        for k in 0..6 {
            done = done.or(s.push(minute * 60_000 + k * 10_000, v));
        }
        done
    }

    fn rise(m: i64, start: i64) -> f64 {
        0.3 + (0.05 * (m - start) as f64).clamp(0.0, 0.5)
    }

    #[test]
    fn one_flat_while_two_rise_is_flagged_and_a_lagging_follower_is_not() {
        let cfg = DetectConfig::default();
        let mut s = [
            MinuteSeries::default(),
            MinuteSeries::default(),
            MinuteSeries::default(),
        ];
        let mut path = Path::new(vec![(0, 10), (1, 11), (2, 12)]);
        let mut out = Vec::new();
        for m in 0..60 {
            // 0 rises at minute 20, 2 follows 3 minutes later, 1 stays flat.
            let vals = [rise(m, 20), 0.3 + 0.01 * (m % 2) as f64, rise(m, 23)];
            let mut done = None;
            for (i, v) in vals.iter().enumerate() {
                done = feed(&mut s[i], m, *v).or(done);
            }
            if let Some(d) = done {
                path.judge(&cfg, d, |i| s.get(i), &mut out);
            }
        }
        let flagged: Vec<PointIdx> = out
            .iter()
            .filter_map(|f| match f {
                Finding::FlagRaised { point, .. } => Some(*point),
                _ => None,
            })
            .collect();
        assert_eq!(flagged, [11], "{out:?}");
    }

    #[test]
    fn all_rising_together_is_quiet() {
        let cfg = DetectConfig::default();
        let mut s = [MinuteSeries::default(), MinuteSeries::default()];
        let mut s3 = MinuteSeries::default();
        let mut path = Path::new(vec![(0, 10), (1, 11), (2, 12)]);
        let mut out = Vec::new();
        for m in 0..60 {
            let mut done = feed(&mut s[0], m, rise(m, 20));
            done = feed(&mut s[1], m, rise(m, 21)).or(done);
            done = feed(&mut s3, m, rise(m, 24)).or(done);
            if let Some(d) = done {
                let all = [&s[0], &s[1], &s3];
                path.judge(&cfg, d, |i| all.get(i).copied(), &mut out);
            }
        }
        assert!(out.is_empty(), "{out:?}");
    }

    /// Runs a two-member path over `minutes`, member values from `vals`;
    /// returns the findings as `+key@minute` / `-key@minute`.
    fn run_pair(minutes: i64, vals: impl Fn(i64) -> [f64; 2]) -> Vec<String> {
        let cfg = DetectConfig::default();
        let mut s = [MinuteSeries::default(), MinuteSeries::default()];
        let mut path = Path::new(vec![(0, 10), (1, 11)]);
        let mut out = Vec::new();
        for m in 0..minutes {
            let v = vals(m);
            let mut done = None;
            for (i, x) in v.iter().enumerate() {
                done = feed(&mut s[i], m, (x * 100.0).round() / 100.0).or(done);
            }
            if let Some(d) = done {
                path.judge(&cfg, d, |i| s.get(i), &mut out);
            }
        }
        out.iter()
            .map(|f| match f {
                Finding::FlagRaised {
                    point, ts, flag, ..
                } => format!("+{}{point}@{}", flag.key(), ts / 60_000),
                Finding::FlagCleared { point, ts, flag } => {
                    format!("-{}{point}@{}", flag.key(), ts / 60_000)
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// A slow common wander of the path's gas.
    fn gas(m: i64) -> f64 {
        0.05 * ((m as f64) / 37.0).sin() + 0.03 * ((m as f64) / 11.0).cos()
    }

    #[test]
    fn a_zero_offset_is_found_and_a_change_of_the_whole_path_is_not() {
        // Member 10 reads 0.25 % low from minute 200 to 320.
        let out = run_pair(400, |m| {
            let off = if (200..320).contains(&m) { 0.25 } else { 0.0 };
            [0.5 + gas(m) - off, 0.35 + 0.7 * gas(m)]
        });
        assert_eq!(out, ["+offset10@231", "-offset10@323"], "{out:?}");
        // More air from minute 200: both read half, at once.
        let out = run_pair(400, |m| {
            let f = if m >= 200 { 0.5 } else { 1.0 };
            [f * (0.5 + gas(m)), f * (0.35 + 0.7 * gas(m))]
        });
        assert!(out.is_empty(), "{out:?}");
        // A point that comes back from a rise of its own is no offset.
        let out = run_pair(400, |m| {
            let up = if (200..230).contains(&m) { 0.6 } else { 0.0 };
            [0.5 + gas(m) + up, 0.35 + 0.7 * gas(m)]
        });
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_sensitivity_turned_down_is_found_after_steady_rises() {
        // Gas events every 60 minutes (a 10-minute rise by 0.8 %, 15
        // minutes held, a 10-minute fall); member 10 reads half of
        // everything from minute 560 on.
        let event = |m: i64| {
            let k = m % 60;
            let f = if k < 10 {
                k as f64 / 10.0
            } else if k < 25 {
                1.0
            } else if k < 35 {
                1.0 - (k - 25) as f64 / 10.0
            } else {
                0.0
            };
            0.8 * f
        };
        let out = run_pair(700, |m| {
            let g = if m >= 560 { 0.5 } else { 1.0 };
            [g * (0.4 + gas(m) + event(m)), 0.3 + gas(m) + event(m - 1)]
        });
        let raised: Vec<&String> = out.iter().filter(|f| f.starts_with('+')).collect();
        assert!(!raised.is_empty(), "{out:?}");
        assert!(
            raised
                .iter()
                .all(|f| f.starts_with("+sensitivity10@6") || f.starts_with("+offset10@")),
            "{out:?}"
        );
        // The same without turning it down: nothing.
        let out = run_pair(700, |m| {
            [0.4 + gas(m) + event(m), 0.3 + gas(m) + event(m - 1)]
        });
        assert!(out.is_empty(), "{out:?}");
    }
}
