//! The over-limit detector: one state machine per methane or CO point, in
//! event time.
//!
//! Rule (docs/DOMAIN.md §1):
//! - an episode opens at the first reading at or above the alarm level;
//! - it escalates to evacuation (撤人) at the first reading at or above the
//!   evacuation level (methane: the power-off level; CO: 24 ppm);
//! - it closes at a reading below the restore level, after values have stayed
//!   below it for the hold time (0 by default); the episode ends at the first
//!   reading below restore;
//! - readings flagged calibration (status 4) never open, escalate or close an
//!   episode; readings flagged sensor fault, substation fault, not polled or
//!   paused carry no value and are skipped;
//! - an over-range reading (status 8) counts as at least the top of the
//!   measuring range: a methane sensor pegged at its top is the worst case,
//!   not a missing value;
//! - late data (older than the newest reading applied) may open an episode
//!   or raise its peak, but can never close one: late data can add an alarm,
//!   never remove one;
//! - a value above the point's `fault_above` line (twice the top of its
//!   measuring range, at most 100 % by volume: see
//!   [`crate::config::registry::fault_above`]) is a sensor fault, not gas: it
//!   never opens, escalates, peaks or closes an episode (the data-anomaly
//!   range check raises it as `out_of_range`).

use crate::config::{Limits, PointMeta};
use crate::detect::PointDetector;
use crate::model::{Finding, Millis, Reading, status};

/// An open over-limit episode.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Episode {
    /// Highest value seen.
    peak: f64,
    /// True once the evacuation level was reached.
    evacuated: bool,
    /// Event time of the first reading below restore in the current run of
    /// such readings (for the hold time).
    below_since: Option<Millis>,
}

/// The over-limit state of one point.
#[derive(Debug, Clone, Default)]
pub struct OverLimit {
    open: Option<Episode>,
    newest: Option<Millis>,
}

/// What one reading did to the state, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The value was used.
    Value,
    /// The value was used, but it was older than the newest one applied.
    Late,
    /// Flagged calibration: recorded, no alarm.
    Calibration,
    /// The reading carries no value (fault, not polled, paused).
    NoValue,
}

impl OverLimit {
    /// True while an episode is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Applies one reading against `limits`; findings go to `out`.
    pub fn apply(
        &mut self,
        limits: &Limits,
        range: Option<[f64; 2]>,
        point: u32,
        r: &Reading,
        out: &mut Vec<Finding>,
    ) -> Applied {
        self.apply_inlined(limits, range, point, r, out)
    }

    /// [`OverLimit::apply`], inlined into its caller: the shard's loop with
    /// the detect suite on calls it so (the call's register saves and
    /// restores cost more than the check itself in that larger loop).
    #[inline(always)]
    pub fn apply_inlined(
        &mut self,
        limits: &Limits,
        range: Option<[f64; 2]>,
        point: u32,
        r: &Reading,
        out: &mut Vec<Finding>,
    ) -> Applied {
        if r.status & status::NOT_A_VALUE != 0 || !r.value.is_finite() {
            return Applied::NoValue;
        }
        if r.status & status::CALIBRATION != 0 {
            return Applied::Calibration;
        }
        let mut v = r.value;
        if r.status & status::OVER_RANGE != 0
            && let Some([_, hi]) = range
        {
            v = v.max(hi);
        }
        self.apply_value(limits, point, r, v, out)
    }

    /// The rest of [`OverLimit::apply`] for a reading known to carry the
    /// finite value `v` (over-range already applied) and no calibration
    /// flag: the shard's loop with the detect suite on has checked the
    /// status once for every detector.
    #[inline(always)]
    pub fn apply_value(
        &mut self,
        limits: &Limits,
        point: u32,
        r: &Reading,
        v: f64,
        out: &mut Vec<Finding>,
    ) -> Applied {
        let late = matches!(self.newest, Some(n) if r.ts < n);
        let evacuate_at = limits.evacuate;
        // A value above `fault_above` is a sensor fault, not gas: it
        // carries no value here (tested only on the rare paths, at or above
        // the alarm level or within an episode).
        match &mut self.open {
            None => {
                if v >= limits.alarm {
                    if v > limits.fault_above {
                        return Applied::NoValue;
                    }
                    out.push(Finding::OverLimitOpened {
                        point,
                        ts: r.ts,
                        value: v,
                        threshold: limits.alarm,
                    });
                    let evacuated = matches!(evacuate_at, Some(e) if v >= e);
                    if let Some(e) = evacuate_at.filter(|_| evacuated) {
                        out.push(Finding::Evacuation {
                            point,
                            ts: r.ts,
                            value: v,
                            threshold: e,
                        });
                    }
                    self.open = Some(Episode {
                        peak: v,
                        evacuated,
                        below_since: None,
                    });
                }
            }
            Some(ep) => {
                if v > limits.fault_above {
                    return Applied::NoValue;
                }
                if v > ep.peak {
                    ep.peak = v;
                    out.push(Finding::Peak {
                        point,
                        ts: r.ts,
                        value: v,
                    });
                }
                if !ep.evacuated
                    && let Some(e) = evacuate_at
                    && v >= e
                {
                    ep.evacuated = true;
                    out.push(Finding::Evacuation {
                        point,
                        ts: r.ts,
                        value: v,
                        threshold: e,
                    });
                }
                if v >= limits.restore {
                    ep.below_since = None;
                } else if !late {
                    let since = *ep.below_since.get_or_insert(r.ts);
                    if r.ts - since >= limits.hold_ms {
                        out.push(Finding::OverLimitClosed {
                            point,
                            ts: since,
                            value: v,
                        });
                        self.open = None;
                    }
                }
            }
        }
        if late {
            Applied::Late
        } else {
            self.newest = Some(r.ts);
            Applied::Value
        }
    }
}

impl PointDetector for OverLimit {
    fn on_reading(
        &mut self,
        meta: &PointMeta,
        point: u32,
        r: &Reading,
        out: &mut Vec<Finding>,
    ) -> Applied {
        match &meta.limits {
            Some(limits) => self.apply(limits, meta.range, point, r, out),
            None => Applied::NoValue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Gas;

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

    /// Runs a table of (ts seconds, value, status) through a fresh state and
    /// returns the findings in a compact textual form.
    fn run(limits: Limits, table: &[(i64, f64, u16)]) -> Vec<String> {
        let mut s = OverLimit::default();
        let mut out = Vec::new();
        for &(t, value, st) in table {
            let r = Reading {
                point: 7,
                ts: t * 1000,
                value,
                status: st,
            };
            s.apply(&limits, Some([0.0, 4.0]), 7, &r, &mut out);
        }
        out.iter()
            .map(|f| match f {
                Finding::OverLimitOpened { ts, value, .. } => format!("open@{}={value}", ts / 1000),
                Finding::Evacuation { ts, value, .. } => format!("evac@{}={value}", ts / 1000),
                Finding::Peak { ts, value, .. } => format!("peak@{}={value}", ts / 1000),
                Finding::OverLimitClosed { ts, .. } => format!("close@{}", ts / 1000),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn below_the_alarm_line_nothing_happens() {
        assert!(run(T1, &[(0, 0.2, 0), (1, 0.99, 0), (2, 0.5, 0)]).is_empty());
    }

    #[test]
    fn an_episode_opens_escalates_peaks_and_closes_once() {
        let got = run(
            T1,
            &[
                (0, 0.5, 0),
                (1, 1.0, 0),
                (2, 1.2, 0),
                (3, 1.1, 0),
                (4, 1.6, 0),
                (5, 1.4, 0),
                (6, 1.0, 0),
                (7, 0.99, 0),
                (8, 0.5, 0),
            ],
        );
        assert_eq!(
            got,
            [
                "open@1=1",
                "peak@2=1.2",
                "peak@4=1.6",
                "evac@4=1.6",
                "close@7"
            ]
        );
    }

    #[test]
    fn a_jump_straight_to_power_off_raises_both_at_once() {
        assert_eq!(
            run(T1, &[(0, 2.0, 0), (1, 0.1, 0)]),
            ["open@0=2", "evac@0=2", "close@1"]
        );
    }

    #[test]
    fn calibration_readings_raise_nothing_and_close_nothing() {
        let cal = status::CALIBRATION;
        assert!(run(T1, &[(0, 2.0, cal), (1, 3.0, cal)]).is_empty());
        assert_eq!(
            run(T1, &[(0, 1.2, 0), (1, 0.1, cal), (2, 1.1, 0)]),
            ["open@0=1.2"]
        );
    }

    #[test]
    fn fault_statuses_are_not_values() {
        for st in [
            status::SENSOR_FAULT,
            status::NOT_POLLED,
            status::PAUSED,
            status::SUBSTATION_FAULT,
        ] {
            assert!(run(T1, &[(0, 9.0, st)]).is_empty(), "status {st}");
            assert_eq!(run(T1, &[(0, 1.2, 0), (1, 0.0, st)]), ["open@0=1.2"]);
        }
        assert!(run(T1, &[(0, f64::NAN, 0)]).is_empty());
    }

    #[test]
    fn over_range_counts_as_the_top_of_the_range() {
        assert_eq!(
            run(T1, &[(0, 0.0, status::OVER_RANGE)]),
            ["open@0=4", "evac@0=4"]
        );
    }

    #[test]
    fn late_data_can_open_but_never_close() {
        // A late high reading opens an episode; a late low one cannot close it.
        assert_eq!(
            run(T1, &[(10, 0.3, 0), (5, 1.3, 0), (4, 0.1, 0), (11, 0.2, 0)]),
            ["open@5=1.3", "close@11"]
        );
    }

    #[test]
    fn the_hold_time_keeps_a_flapping_episode_open() {
        let held = Limits {
            hold_ms: 5000,
            ..T1
        };
        let got = run(
            held,
            &[
                (0, 1.1, 0),
                (1, 0.9, 0),
                (2, 1.05, 0),
                (3, 0.9, 0),
                (6, 0.8, 0),
                (8, 0.7, 0),
            ],
        );
        assert_eq!(got, ["open@0=1.1", "close@3"]);
    }

    #[test]
    fn a_value_past_the_fault_line_is_a_fault_not_gas() {
        // (value, what it does to a fresh point, what it does within an
        // episode opened at 1.2): T1's range is 0–4 %, its fault line 8 %.
        let table: [(f64, &[&str], &[&str]); 7] = [
            (8.0, &["open@1=8", "evac@1=8"], &["peak@1=8", "evac@1=8"]),
            (8.000001, &[], &[]),
            (1.8e19, &[], &[]),
            (1e300, &[], &[]),
            (f64::MAX, &[], &[]),
            (
                4.5,
                &["open@1=4.5", "evac@1=4.5"],
                &["peak@1=4.5", "evac@1=4.5"],
            ),
            (1.2, &["open@1=1.2"], &[]),
        ];
        for (value, fresh, open) in table {
            let got = run(T1, &[(0, 0.3, 0), (1, value, 0)]);
            assert_eq!(got, fresh, "{value} at a fresh point");
            let mut got = run(T1, &[(0, 1.2, 0), (1, value, 0)]);
            assert_eq!(got.remove(0), "open@0=1.2");
            assert_eq!(got, open, "{value} within an episode");
        }
        // An over-range flag on an absurd value does not make it gas.
        assert!(run(T1, &[(0, 1.8e19, status::OVER_RANGE)]).is_empty());
        // A fault value neither closes an episode nor moves its clock: a
        // good reading at an earlier time still closes it.
        assert_eq!(
            run(T1, &[(0, 1.2, 0), (5, 1e300, 0), (3, 0.5, 0)]),
            ["open@0=1.2", "close@3"]
        );
        // Through the applied count: a fault reading carries no value.
        let mut s = OverLimit::default();
        let r = Reading {
            point: 7,
            ts: 0,
            value: 1.8e19,
            status: 0,
        };
        assert_eq!(
            s.apply(&T1, Some([0.0, 4.0]), 7, &r, &mut Vec::new()),
            Applied::NoValue
        );
    }

    #[test]
    fn co_evacuates_at_its_limit() {
        let co = Limits {
            gas: Gas::CarbonMonoxide,
            alarm: 24.0,
            power_off: None,
            restore: 24.0,
            evacuate: Some(24.0),
            hold_ms: 0,
            from_rule: true,
            fault_above: 2000.0,
        };
        assert_eq!(
            run(co, &[(0, 5.0, 0), (1, 24.0, 0), (2, 30.0, 0), (3, 23.0, 0)]),
            ["open@1=24", "evac@1=24", "peak@2=30", "close@3"]
        );
    }

    #[test]
    fn a_return_without_power_off_level_never_evacuates() {
        let main_return = Limits {
            alarm: 0.75,
            power_off: None,
            restore: 0.75,
            evacuate: None,
            ..T1
        };
        assert_eq!(
            run(main_return, &[(0, 3.0, 0), (1, 0.5, 0)]),
            ["open@0=3", "close@1"]
        );
    }
}
