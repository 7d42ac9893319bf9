//! Electricity use (用电量) of one mine: catches "declared stopped, secretly
//! running" (明停暗开, 昼停夜开) from the power its meter reports, and a
//! power feed that falls silent.
//!
//! Samples are folded into one-minute means in event time; each completed
//! minute is judged by three rules, only while the mine is declared
//! stopped (or closed):
//! - `power_above_baseline`: the mean total load of the last
//!   `baseline_window_mins` exceeds the mine's declared maintenance load
//!   × `baseline_ratio` and by `baseline_min_excess_kw` (with at least half
//!   the window's minutes present); it clears once the mean has stayed at
//!   or under halfway between the baseline and that line for a whole window
//!   (drainage pumps cycle within one, and one dip is no end of the work),
//!   the episode ending when it first got there. Fans and pumps keep
//!   running at a stopped mine; production machinery adds on top.
//! - `production_load`: a production circuit (hoist, transport, face) above
//!   its idle level in at least `production_minutes` of the last
//!   `production_window_mins`; it clears at a quarter of that.
//! - `night_profile`: the mean load of the night so far (Beijing
//!   `night_hours`; drainage taken out where the meter reports it, since
//!   pumps are often run on the cheap night tariff) exceeds the last day
//!   window's mean × (1 + `night_ratio`) and by `night_min_kw`, once the
//!   night holds `night_min_minutes` of data. A raised episode lasts until
//!   a night ends whose whole mean does not exceed.
//!
//! A sample older than the minute being filled is late: counted by the
//! caller, never folded in (the windows need event-time order). Silence is
//! judged in processing time on ticks: a configured feed (or one heard
//! from once) that sends nothing for 3½ × its period (three samples
//! missed; exactly 3 periods is the gap two lost samples leave, and arrival
//! jitter would make that an alert half of the time) is `power_silent`,
//! except while the whole mine is offline (that alert stands for all) and
//! while the mine's monitoring has not been heard from since the feed's
//! next sample was due (one period after its last): a mine uplink that
//! fails takes every feed it carries down at once, and the mine's own
//! verdict comes first. Once the mine is heard from again, the feed's
//! silence counts from then (its connection comes back on its own, a
//! little later).

use crate::config::activity::{ActivityConfig, PowerMeta};
use crate::detect::{MineLink, OpenReasons};
use crate::model::{Activity, Circuit, Finding, Millis, MineIdx, MineStatus, PowerSample, Subject};

const MINUTE_MS: i64 = 60_000;

/// Minutes of history kept (the longest window is 60).
const HISTORY: usize = 64;

/// Beijing time is UTC+8 (no daylight saving).
const BEIJING_OFFSET_MIN: i64 = 8 * 60;

/// One completed minute.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MinuteLoad {
    /// Minute index (ms / 60 000); `i64::MIN` for an empty slot.
    minute: i64,
    /// Mean total load, kW (NaN when the minute had none).
    total: f32,
    /// A production circuit was above its idle level.
    production: bool,
}

const EMPTY: MinuteLoad = MinuteLoad {
    minute: i64::MIN,
    total: f32::NAN,
    production: false,
};

/// Sums of a day or night window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct WindowSum {
    /// Beijing day the window belongs to (a night: the day it starts on).
    day: i64,
    sum: f64,
    minutes: u32,
}

impl WindowSum {
    fn mean(&self) -> Option<f64> {
        (self.minutes > 0).then(|| self.sum / f64::from(self.minutes))
    }
}

/// How a sample was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerApplied {
    /// Folded into its minute.
    InOrder,
    /// Older than the minute being filled: not folded in.
    Late,
}

/// The electricity-use state of one mine.
#[derive(Debug, Clone)]
pub struct MinePower {
    mine: MineIdx,
    /// Minute being filled, or `i64::MIN` before the first sample.
    minute: i64,
    sum: [f64; crate::model::CIRCUITS],
    n: [u16; crate::model::CIRCUITS],
    history: [MinuteLoad; HISTORY],
    day: WindowSum,
    night: WindowSum,
    /// Mean of the last complete day window.
    last_day: Option<f64>,
    /// Open reasons (bits of [`Activity::bit`]).
    open: OpenReasons,
    /// Since when (event time) the baseline window's mean has been back at
    /// or under the clear line while `power_above_baseline` is open.
    baseline_low_since: Option<Millis>,
    /// Processing time of the last sample (or of the start).
    last_arrival: Millis,
    /// A sample arrived at least once.
    heard: bool,
    silent: bool,
}

impl MinePower {
    /// The state of mine `mine`, taken as heard from at `started`.
    pub fn new(mine: MineIdx, started: Millis) -> MinePower {
        MinePower {
            mine,
            minute: i64::MIN,
            sum: [0.0; crate::model::CIRCUITS],
            n: [0; crate::model::CIRCUITS],
            history: [EMPTY; HISTORY],
            day: WindowSum::default(),
            night: WindowSum::default(),
            last_day: None,
            open: OpenReasons::default(),
            baseline_low_since: None,
            last_arrival: started,
            heard: false,
            silent: false,
        }
    }

    /// True while `reason` is open.
    pub fn is_open(&self, reason: Activity) -> bool {
        self.open.is_open(reason)
    }

    /// Applies one sample that arrived at processing time `arrival`.
    pub fn apply(
        &mut self,
        cfg: &ActivityConfig,
        meta: &PowerMeta,
        status: MineStatus,
        s: &PowerSample,
        arrival: Millis,
        out: &mut Vec<Finding>,
    ) -> PowerApplied {
        self.heard = true;
        self.last_arrival = self.last_arrival.max(arrival);
        if self.silent {
            self.silent = false;
            out.push(Finding::ActivityCleared {
                mine: self.mine,
                subject: Subject::Power,
                ts: arrival,
                reason: Activity::PowerSilent,
            });
        }
        let minute = s.ts.div_euclid(MINUTE_MS);
        if minute < self.minute {
            return PowerApplied::Late;
        }
        if minute > self.minute {
            if self.minute != i64::MIN {
                self.complete_minute(cfg, meta, status, out);
            }
            self.minute = minute;
            self.sum = [0.0; crate::model::CIRCUITS];
            self.n = [0; crate::model::CIRCUITS];
        }
        for (i, kw) in s.kw.iter().enumerate() {
            if kw.is_finite() {
                self.sum[i] += f64::from(*kw);
                self.n[i] = self.n[i].saturating_add(1);
            }
        }
        PowerApplied::InOrder
    }

    fn mean(&self, c: Circuit) -> Option<f64> {
        let i = c.index();
        (self.n[i] > 0).then(|| self.sum[i] / f64::from(self.n[i]))
    }

    /// The minute being filled is complete: record it and judge.
    fn complete_minute(
        &mut self,
        cfg: &ActivityConfig,
        meta: &PowerMeta,
        status: MineStatus,
        out: &mut Vec<Finding>,
    ) {
        let minute = self.minute;
        let total = self.mean(Circuit::Total);
        let production = Circuit::PRODUCTION
            .iter()
            .any(|&c| self.mean(c).is_some_and(|kw| kw > meta.idle_kw[c.index()]));
        self.history[minute.rem_euclid(HISTORY as i64) as usize] = MinuteLoad {
            minute,
            total: total.map_or(f32::NAN, |t| t as f32),
            production,
        };
        // Event time of the judgement: the end of the completed minute.
        let ts = (minute + 1) * MINUTE_MS;
        let stopped = matches!(status, MineStatus::Stopped | MineStatus::Closed);
        if !stopped {
            for reason in [
                Activity::PowerAboveBaseline,
                Activity::ProductionLoad,
                Activity::NightProfile,
            ] {
                self.close(reason, ts, out);
            }
            return;
        }
        self.judge_baseline(cfg, meta, ts, out);
        self.judge_production(cfg, ts, out);
        let net = match (total, self.mean(Circuit::Drainage)) {
            (Some(t), Some(d)) => Some((t - d).max(0.0)),
            (t, _) => t,
        };
        if let Some(net) = net {
            self.judge_night(cfg, minute, net, ts, out);
        }
    }

    /// The completed minutes within the last `window` minutes.
    fn recent(&self, window: u32) -> impl Iterator<Item = &MinuteLoad> {
        let newest = self.minute;
        self.history
            .iter()
            .filter(move |m| m.minute != i64::MIN && newest - m.minute < i64::from(window))
    }

    fn judge_baseline(
        &mut self,
        cfg: &ActivityConfig,
        meta: &PowerMeta,
        ts: Millis,
        out: &mut Vec<Finding>,
    ) {
        let Some(base) = meta.maintenance_kw else {
            return;
        };
        let (mut sum, mut n) = (0.0, 0u32);
        for m in self.recent(cfg.baseline_window_mins) {
            if m.total.is_finite() {
                sum += f64::from(m.total);
                n += 1;
            }
        }
        if n == 0 {
            return;
        }
        let mean = sum / f64::from(n);
        let reason = Activity::PowerAboveBaseline;
        if !self.is_open(reason) {
            if 2 * n >= cfg.baseline_window_mins
                && mean > base * cfg.baseline_ratio
                && mean - base >= cfg.baseline_min_excess_kw
            {
                self.baseline_low_since = None;
                self.raise(reason, ts, mean, out);
            }
        } else if mean <= base * (1.0 + (cfg.baseline_ratio - 1.0) / 2.0) {
            // Back under the clear line for a whole window: pumps cycle on
            // and off within one, and one dip is no end of the work.
            let since = *self.baseline_low_since.get_or_insert(ts);
            if ts - since >= i64::from(cfg.baseline_window_mins) * MINUTE_MS {
                self.baseline_low_since = None;
                self.close(reason, since, out);
            }
        } else {
            self.baseline_low_since = None;
        }
    }

    fn judge_production(&mut self, cfg: &ActivityConfig, ts: Millis, out: &mut Vec<Finding>) {
        let busy = self
            .recent(cfg.production_window_mins)
            .filter(|m| m.production)
            .count() as u32;
        let reason = Activity::ProductionLoad;
        if !self.is_open(reason) {
            if busy >= cfg.production_minutes {
                self.raise(reason, ts, f64::from(busy), out);
            }
        } else if busy <= cfg.production_minutes / 4 {
            self.close(reason, ts, out);
        }
    }

    fn judge_night(
        &mut self,
        cfg: &ActivityConfig,
        minute: i64,
        net: f64,
        ts: Millis,
        out: &mut Vec<Finding>,
    ) {
        let local = minute + BEIJING_OFFSET_MIN;
        let day = local.div_euclid(24 * 60);
        let hour = (local.rem_euclid(24 * 60) / 60) as u32;
        if in_hours(hour, cfg.day_hours) {
            if self.day.day != day && self.day.minutes > 0 {
                self.end_day(cfg);
            }
            if self.day.minutes == 0 {
                self.day = WindowSum {
                    day,
                    sum: 0.0,
                    minutes: 0,
                };
            }
            self.day.sum += net;
            self.day.minutes += 1;
        } else if self.day.minutes > 0 {
            self.end_day(cfg);
        }
        if in_hours(hour, cfg.night_hours) {
            // A night belongs to the day it starts on.
            let [from, _] = cfg.night_hours;
            let night_day = if hour >= from { day } else { day - 1 };
            if self.night.day != night_day && self.night.minutes > 0 {
                self.end_night(cfg, ts, out);
            }
            if self.night.minutes == 0 {
                self.night = WindowSum {
                    day: night_day,
                    sum: 0.0,
                    minutes: 0,
                };
            }
            self.night.sum += net;
            self.night.minutes += 1;
            let reason = Activity::NightProfile;
            if !self.is_open(reason)
                && self.night.minutes >= cfg.night_min_minutes
                && let Some(mean) = self.night.mean()
                && self.night_exceeds(cfg, mean)
            {
                self.raise(reason, ts, mean, out);
            }
        } else if self.night.minutes > 0 {
            self.end_night(cfg, ts, out);
        }
    }

    fn night_exceeds(&self, cfg: &ActivityConfig, night_mean: f64) -> bool {
        self.last_day.is_some_and(|d| {
            night_mean > d * (1.0 + cfg.night_ratio) && night_mean - d >= cfg.night_min_kw
        })
    }

    fn end_day(&mut self, cfg: &ActivityConfig) {
        if self.day.minutes >= cfg.day_min_minutes {
            self.last_day = self.day.mean();
        }
        self.day.minutes = 0;
    }

    /// A night is over: an open episode lasts while whole nights exceed.
    fn end_night(&mut self, cfg: &ActivityConfig, ts: Millis, out: &mut Vec<Finding>) {
        let mean = self.night.mean();
        self.night.minutes = 0;
        if self.is_open(Activity::NightProfile) && !mean.is_some_and(|m| self.night_exceeds(cfg, m))
        {
            self.close(Activity::NightProfile, ts, out);
        }
    }

    fn raise(&mut self, reason: Activity, ts: Millis, value: f64, out: &mut Vec<Finding>) {
        self.open
            .raise(self.mine, Subject::Mine, reason, ts, value, out);
    }

    fn close(&mut self, reason: Activity, ts: Millis, out: &mut Vec<Finding>) {
        self.open.close(self.mine, Subject::Mine, reason, ts, out);
    }

    /// Processing time has reached `now`; `mine` is what the shard knows
    /// of the mine's own monitoring link.
    pub fn on_tick(
        &mut self,
        meta: &PowerMeta,
        status: MineStatus,
        now: Millis,
        mine: MineLink,
        out: &mut Vec<Finding>,
    ) {
        let watched = (meta.configured || self.heard) && status != MineStatus::Closed;
        // The next sample was due one period after the last; the silence
        // is the feed's own only if the mine was heard from after that.
        let since = mine.silent_since(self.last_arrival);
        let due = since + meta.period_ms;
        if watched && !self.silent && mine.heard_after(due) && now - since > meta.offline_after_ms {
            self.silent = true;
            out.push(Finding::ActivityRaised {
                mine: self.mine,
                subject: Subject::Power,
                ts: now,
                reason: Activity::PowerSilent,
                value: f64::NAN,
            });
        }
    }
}

/// True when Beijing hour `hour` lies in `[from, to)`, wrapping past
/// midnight when `from > to`.
fn in_hours(hour: u32, [from, to]: [u32; 2]) -> bool {
    if from < to {
        hour >= from && hour < to
    } else {
        hour >= from || hour < to
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::activity::{MinePowerConfig, power_meta};
    use crate::model::CIRCUITS;

    /// 2026-11-23T00:00:00+08:00 (Beijing midnight).
    const MIDNIGHT: Millis = 1_795_392_000_000 - 8 * 3_600_000;

    fn meta(maintenance: Option<f64>) -> PowerMeta {
        power_meta(
            Some(&MinePowerConfig {
                polling_secs: Some(30.0),
                maintenance_kw: maintenance,
                idle_kw: Default::default(),
            }),
            &ActivityConfig::default(),
        )
    }

    fn sample(ts: Millis, total: f64, hoist: f64, drainage: f64) -> PowerSample {
        let mut kw = [f32::NAN; CIRCUITS];
        kw[Circuit::Total.index()] = total as f32;
        kw[Circuit::Hoist.index()] = hoist as f32;
        kw[Circuit::Drainage.index()] = drainage as f32;
        PowerSample { mine: 0, ts, kw }
    }

    /// Feeds one sample every 30 s from `from` for `minutes`, the load
    /// given by `load(minute)`; returns the findings.
    fn run(
        p: &mut MinePower,
        meta: &PowerMeta,
        status: MineStatus,
        from: Millis,
        minutes: i64,
        load: impl Fn(i64) -> (f64, f64, f64),
    ) -> Vec<Finding> {
        let cfg = ActivityConfig::default();
        let mut out = Vec::new();
        for k in 0..minutes * 2 {
            let ts = from + k * 30_000;
            let (t, h, d) = load(k / 2);
            p.apply(
                &cfg,
                meta,
                status,
                &sample(ts, t, h, d),
                ts + 1000,
                &mut out,
            );
        }
        out
    }

    fn raised(out: &[Finding]) -> Vec<(Activity, Millis)> {
        out.iter()
            .filter_map(|f| match f {
                Finding::ActivityRaised { reason, ts, .. } => Some((*reason, *ts)),
                _ => None,
            })
            .collect()
    }

    fn cleared(out: &[Finding]) -> Vec<Activity> {
        out.iter()
            .filter_map(|f| match f {
                Finding::ActivityCleared { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stopped_mine_over_its_baseline_is_flagged_and_cleared() {
        let m = meta(Some(800.0));
        let mut p = MinePower::new(0, MIDNIGHT);
        let start = MIDNIGHT + 9 * 3_600_000;
        // 60 min at the baseline (pumps cycling), then production on top.
        let out = run(&mut p, &m, MineStatus::Stopped, start, 60, |k| {
            (if k % 20 < 8 { 820.0 } else { 600.0 }, 20.0, 200.0)
        });
        assert!(raised(&out).is_empty(), "{out:?}");
        let out = run(
            &mut p,
            &m,
            MineStatus::Stopped,
            start + 60 * MINUTE_MS,
            60,
            |_| (1900.0, 20.0, 200.0),
        );
        let r = raised(&out);
        assert_eq!(r.len(), 1, "{out:?}");
        assert_eq!(r[0].0, Activity::PowerAboveBaseline);
        // Within about a third of the window of the rise.
        assert!(r[0].1 - (start + 60 * MINUTE_MS) <= 15 * MINUTE_MS, "{r:?}");
        // A half-hour lull (the cutters stop) takes the window's mean under
        // the clear line for ten minutes: no end of the episode.
        let out = run(
            &mut p,
            &m,
            MineStatus::Stopped,
            start + 120 * MINUTE_MS,
            70,
            |k| (if k < 30 { 700.0 } else { 1900.0 }, 20.0, 200.0),
        );
        assert!(out.is_empty(), "{out:?}");
        // Back to the baseline: the window's mean is under the clear line
        // (920 kW) 25 minutes later; after a whole window there, the
        // episode ends at that time.
        let back = start + 190 * MINUTE_MS;
        let out = run(&mut p, &m, MineStatus::Stopped, back, 50, |_| {
            (700.0, 20.0, 200.0)
        });
        assert!(out.is_empty(), "{out:?}");
        let out = run(
            &mut p,
            &m,
            MineStatus::Stopped,
            back + 50 * MINUTE_MS,
            10,
            |_| (700.0, 20.0, 200.0),
        );
        assert_eq!(cleared(&out), [Activity::PowerAboveBaseline]);
        assert!(
            matches!(out[..], [Finding::ActivityCleared { ts, .. }]
                if (back + 24 * MINUTE_MS..=back + 26 * MINUTE_MS).contains(&ts)),
            "{out:?}"
        );
    }

    #[test]
    fn a_producing_mine_is_never_judged_by_the_stop_rules() {
        let m = meta(Some(800.0));
        let mut p = MinePower::new(0, MIDNIGHT);
        let out = run(&mut p, &m, MineStatus::Producing, MIDNIGHT, 180, |_| {
            (4000.0, 900.0, 200.0)
        });
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn hoisting_at_a_stopped_mine_is_production_load() {
        let m = meta(None);
        let mut p = MinePower::new(0, MIDNIGHT);
        let start = MIDNIGHT + 10 * 3_600_000;
        // Short cage runs for the maintenance crew: 5 minutes an hour.
        let out = run(&mut p, &m, MineStatus::Stopped, start, 120, |k| {
            (900.0, if k % 60 < 5 { 180.0 } else { 15.0 }, 200.0)
        });
        assert!(raised(&out).is_empty(), "{out:?}");
        // Skip hoisting: the hoist under load 2 minutes in 3.
        let out = run(
            &mut p,
            &m,
            MineStatus::Stopped,
            start + 120 * MINUTE_MS,
            60,
            |k| (1500.0, if k % 3 < 2 { 600.0 } else { 15.0 }, 200.0),
        );
        let r = raised(&out);
        assert_eq!(r.len(), 1, "{out:?}");
        assert_eq!(r[0].0, Activity::ProductionLoad);
        let out = run(
            &mut p,
            &m,
            MineStatus::Stopped,
            start + 180 * MINUTE_MS,
            60,
            |_| (900.0, 15.0, 200.0),
        );
        assert_eq!(cleared(&out), [Activity::ProductionLoad]);
    }

    #[test]
    fn more_power_by_night_than_by_day_is_a_night_profile() {
        let m = meta(None);
        let mut p = MinePower::new(0, MIDNIGHT);
        // Day 1, 06:00 → day 2, 08:00: quiet by day, 1400 kW from 21:00.
        // Pumps run at night on the cheap tariff in every case.
        let from = MIDNIGHT + 6 * 3_600_000;
        let out = run(&mut p, &m, MineStatus::Stopped, from, 26 * 60, |k| {
            let hour = (6 + k / 60) % 24;
            let pumps = if !(6..22).contains(&hour) {
                400.0
            } else {
                50.0
            };
            let work = if (21..24).contains(&hour) || hour < 5 {
                700.0
            } else {
                0.0
            };
            (700.0 + pumps + work, 15.0, pumps)
        });
        let r = raised(&out);
        assert_eq!(
            r.iter().map(|r| r.0).collect::<Vec<_>>(),
            [Activity::NightProfile]
        );
        // Raised on the first night, after its minimum of data (22:00).
        let night_start = MIDNIGHT + 20 * 3_600_000;
        assert_eq!(r[0].1, night_start + 120 * MINUTE_MS, "{r:?}");
        // The night exceeded as a whole: still open in the morning.
        assert!(p.is_open(Activity::NightProfile));
        // The next night is quiet (pumps only): the episode ends with it.
        let out = run(
            &mut p,
            &m,
            MineStatus::Stopped,
            from + 26 * 60 * MINUTE_MS,
            24 * 60,
            |k| {
                let hour = (8 + k / 60) % 24;
                let pumps = if !(6..22).contains(&hour) {
                    400.0
                } else {
                    50.0
                };
                (700.0 + pumps, 15.0, pumps)
            },
        );
        assert!(raised(&out).is_empty(), "{out:?}");
        assert_eq!(cleared(&out), [Activity::NightProfile]);
    }

    #[test]
    fn pumping_at_night_alone_is_not_a_night_profile() {
        let m = meta(None);
        let mut p = MinePower::new(0, MIDNIGHT);
        let out = run(
            &mut p,
            &m,
            MineStatus::Stopped,
            MIDNIGHT,
            3 * 24 * 60,
            |k| {
                let hour = (k / 60) % 24;
                let pumps = if !(6..22).contains(&hour) {
                    600.0
                } else {
                    50.0
                };
                (700.0 + pumps, 15.0, pumps)
            },
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn late_samples_are_not_folded_in() {
        let m = meta(Some(500.0));
        let cfg = ActivityConfig::default();
        let mut p = MinePower::new(0, MIDNIGHT);
        let mut out = Vec::new();
        let t = MIDNIGHT + 5 * MINUTE_MS;
        assert_eq!(
            p.apply(
                &cfg,
                &m,
                MineStatus::Stopped,
                &sample(t, 400.0, 0.0, 0.0),
                t,
                &mut out
            ),
            PowerApplied::InOrder
        );
        let late = sample(t - 2 * MINUTE_MS, 9000.0, 0.0, 0.0);
        assert_eq!(
            p.apply(&cfg, &m, MineStatus::Stopped, &late, t, &mut out),
            PowerApplied::Late
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_silent_feed_goes_offline_and_returns() {
        let m = meta(None);
        let cfg = ActivityConfig::default();
        let mut p = MinePower::new(3, 0);
        let mut out = Vec::new();
        p.on_tick(
            &m,
            MineStatus::Stopped,
            105_000,
            MineLink::up(105_000),
            &mut out,
        );
        assert!(out.is_empty(), "not yet: 3½ × 30 s");
        // While the whole mine is offline that alert stands for the feed.
        let offline = MineLink {
            offline: true,
            last_heard: 0,
            resumed: Millis::MIN,
        };
        p.on_tick(&m, MineStatus::Stopped, 106_000, offline, &mut out);
        assert!(out.is_empty());
        // While the mine itself has not been heard from since the feed's
        // next sample was due (30 s), the mine's verdict comes first.
        let quiet = MineLink {
            offline: false,
            last_heard: 30_000,
            resumed: Millis::MIN,
        };
        p.on_tick(&m, MineStatus::Stopped, 106_000, quiet, &mut out);
        assert!(out.is_empty());
        p.on_tick(
            &m,
            MineStatus::Stopped,
            106_000,
            MineLink::up(106_000),
            &mut out,
        );
        assert!(
            matches!(
                out[..],
                [Finding::ActivityRaised {
                    mine: 3,
                    subject: Subject::Power,
                    ts: 106_000,
                    reason: Activity::PowerSilent,
                    value,
                }] if value.is_nan()
            ),
            "{out:?}"
        );
        // Once silent, it is not raised again.
        p.on_tick(
            &m,
            MineStatus::Stopped,
            110_000,
            MineLink::up(110_000),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        out.clear();
        p.apply(
            &cfg,
            &m,
            MineStatus::Stopped,
            &sample(120_000, 500.0, 0.0, 0.0),
            120_500,
            &mut out,
        );
        assert_eq!(
            out,
            [Finding::ActivityCleared {
                mine: 3,
                subject: Subject::Power,
                ts: 120_500,
                reason: Activity::PowerSilent,
            }]
        );
        // An unconfigured feed is watched only once heard from.
        let unconfigured = power_meta(None, &cfg);
        let mut q = MinePower::new(4, 0);
        out.clear();
        q.on_tick(
            &unconfigured,
            MineStatus::Producing,
            10_000_000,
            MineLink::up(10_000_000),
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn beijing_hours_wrap_past_midnight() {
        assert!(in_hours(23, [20, 6]));
        assert!(in_hours(2, [20, 6]));
        assert!(!in_hours(6, [20, 6]));
        assert!(in_hours(8, [8, 18]));
        assert!(!in_hours(18, [8, 18]));
    }
}
