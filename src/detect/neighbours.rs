//! Neighbours disagree (相邻测点不一致): methane points on one air path
//! (face T0 / T1 / return T2, heading T1 / T2 with the same air-path number,
//! see [`crate::config::registry::air_path_of`]) move together, each a few
//! minutes behind the one upstream. One staying flat or falling while the
//! others rise is a sign it was wrapped, moved into fresh air or fed fake
//! values.
//!
//! Each member keeps one-minute means of the last 32 minutes (event time).
//! When a member completes a minute M, its path is judged once for M:
//! - a member *rises* when its 3-minute mean ending at M exceeds the one
//!   `neighbours_window_mins` earlier by at least `neighbours_rise`;
//! - with at least two risers, every other member is compared with them:
//!   its lag behind the risers is found by aligning the curves (the lag in
//!   0..=`neighbours_max_lag_mins` that maximises the correlation of its
//!   minute-to-minute changes with theirs; with no clear correlation the
//!   largest lag is assumed); if the risers had already risen by the same
//!   amount at M − lag while the member's own change up to M is at most a
//!   quarter of `neighbours_rise`, it is flagged.
//!
//! The episode opens after two judgements in a row flag the member and ends
//! at the first judgement that does not. The mine
//! state lives in the shard, which owns all of a mine's points.

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

/// One air path of a mine.
#[derive(Debug, Clone, Default)]
pub struct Path {
    /// Members: (shard-local slot, registry point).
    pub members: Vec<(usize, PointIdx)>,
    /// Which members have an open episode.
    pub open: Vec<bool>,
    /// Judgements in a row that flagged each member.
    pub streak: Vec<u8>,
    /// The last minute judged.
    pub judged: i64,
}

impl Path {
    /// A path over these members.
    pub fn new(members: Vec<(usize, PointIdx)>) -> Path {
        Path {
            open: vec![false; members.len()],
            streak: vec![0; members.len()],
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
}
