//! Which findings open, raise and close which alert: the rules the live
//! alert stage and replay share, so that both build the same episodes.
//!
//! An alert is keyed by its kind, its mine and its [`Subject`] (a point,
//! the mine, its power feed or a seal camera). At most one is open per key:
//! - over-limit: `OverLimitOpened` opens `overlimit`, `Evacuation` opens
//!   `evacuation` beside it, `Peak` raises the peak of both, and
//!   `OverLimitClosed` closes both. A tracker made by
//!   [`EpisodeTracker::grouping`] (the live alert stage's, and scoring's)
//!   keeps a point that flaps at its line one alert: the close waits
//!   `rules.regroup_secs`, and a re-opening within that time continues the
//!   alert with its crossing count raised ([`Change::Recrossed`]) instead of
//!   opening (and pushing) another; the close, once due
//!   ([`EpisodeTracker::advance`]), carries the end of the last crossing.
//!   The default tracker (the audit's episode list) keeps every crossing
//!   an episode of its own: the regulator counts each (超限次数);
//! - offline: `PointOffline`/`MineOffline` open, `PointOnline`/`MineOnline`
//!   close;
//! - reasons (data anomaly and falsification flags; power and seal
//!   activities): a reason opens the key's alert if none is open, and the
//!   alert closes when the last of its open reasons has ended.
//!
//! [`EpisodeTracker`] is pure: findings in, [`Change`]s out.

use std::collections::{HashMap, HashSet};

use crate::config::Registry;
use crate::model::{Activity, AlertKind, Finding, Millis, MineIdx, PointIdx, Subject};

/// Key of an alert: its kind, its mine and what in the mine it is about.
pub type Key = (AlertKind, MineIdx, Subject);

/// What one finding changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// An alert opens.
    Open {
        /// Its key.
        key: Key,
        /// Event time (processing time for offline and silence) it starts.
        started: Millis,
        /// The value that opened it, if any.
        value: Option<f64>,
        /// The line it crossed, if the finding names one.
        threshold: Option<f64>,
    },
    /// An open alert saw a new peak.
    Peak {
        /// Its key.
        key: Key,
        /// The value.
        value: f64,
    },
    /// An open over-limit alert's point crossed its line again within
    /// `rules.regroup_secs` of the end of its last crossing: one alert,
    /// one more crossing.
    Recrossed {
        /// Its key.
        key: Key,
        /// Crossings of the alert so far (2 at the first re-opening).
        crossings: u32,
    },
    /// An open alert closes.
    Close {
        /// Its key.
        key: Key,
        /// When its condition ended.
        at: Millis,
    },
}

/// The line an activity reason's value crossed, where it has one (the
/// approved headcount for `overmanning`, …), from the mine's settings and
/// the `[activity]` knobs: the same live and in replay.
pub fn activity_threshold(registry: &Registry, mine: MineIdx, reason: Activity) -> Option<f64> {
    let m = registry.mines.get(mine as usize)?;
    let knobs = &registry.activity;
    match reason {
        Activity::Overmanning => m.approved_headcount.map(f64::from),
        Activity::SealPeople => Some(f64::from(m.seal.maintenance_crew)),
        Activity::SealVehicles => Some(f64::from(knobs.stopped_vehicles)),
        Activity::PowerAboveBaseline => m.power.maintenance_kw.map(|b| b * knobs.baseline_ratio),
        Activity::ProductionLoad => Some(f64::from(knobs.production_minutes)),
        _ => None,
    }
}

/// The open alerts and their open reasons.
#[derive(Debug, Default, Clone)]
pub struct EpisodeTracker {
    open: HashSet<Key>,
    /// Open reasons per reason-driven alert (bits of `Flag::bit` or
    /// `Activity::bit`, by kind).
    reasons: HashMap<Key, u32>,
    /// Re-openings of a point's over-limit are grouped (see the module
    /// doc).
    group: bool,
    /// Open over-limit and evacuation alerts whose condition ended (event
    /// time), their close held back for `rules.regroup_secs`.
    closing: HashMap<Key, Millis>,
    /// Crossings of each open over-limit alert, while grouping.
    crossings: HashMap<Key, u32>,
}

impl EpisodeTracker {
    /// A tracker that groups a point's over-limit re-openings within
    /// `rules.regroup_secs` into one alert (the live alert stage's).
    pub fn grouping() -> EpisodeTracker {
        EpisodeTracker {
            group: true,
            ..EpisodeTracker::default()
        }
    }

    /// Closes every held-back over-limit alert whose regroup interval has
    /// passed by `now` (the clock of the caller: processing time live,
    /// arrival time when scoring), with the end of its last crossing.
    pub fn advance(&mut self, registry: &Registry, now: Millis, out: &mut Vec<Change>) {
        if self.closing.is_empty() {
            return;
        }
        let regroup = regroup_ms(registry);
        let mut due: Vec<(Key, Millis)> = self
            .closing
            .iter()
            .filter(|&(_, &at)| now.saturating_sub(at) > regroup)
            .map(|(k, at)| (*k, *at))
            .collect();
        // Evacuation before over-limit, as an ungrouped close does.
        due.sort_by_key(|(k, at)| (*at, k.0 != AlertKind::Evacuation, k.1, k.2));
        for (key, at) in due {
            self.closing.remove(&key);
            self.crossings.remove(&key);
            self.close(key, at, out);
        }
    }

    /// A finding of `kind` at `point` (event time `ts`) opens or continues
    /// its over-limit alert: a held-back close within the regroup interval
    /// is taken back (a re-crossing); one past it is made first.
    #[allow(clippy::too_many_arguments)]
    fn open_over_limit(
        &mut self,
        registry: &Registry,
        mine: Option<MineIdx>,
        kind: AlertKind,
        point: PointIdx,
        ts: Millis,
        value: f64,
        threshold: f64,
        out: &mut Vec<Change>,
    ) {
        let Some(m) = mine else { return };
        let key = (kind, m, Subject::Point(point));
        if let Some(at) = self.closing.get(&key).copied() {
            if ts.saturating_sub(at) <= regroup_ms(registry) {
                self.closing.remove(&key);
                if kind == AlertKind::Overlimit {
                    let n = self.crossings.entry(key).or_insert(1);
                    *n = n.saturating_add(1);
                    out.push(Change::Recrossed { key, crossings: *n });
                }
                return;
            }
            self.closing.remove(&key);
            self.crossings.remove(&key);
            self.close(key, at, out);
        }
        if self.group && kind == AlertKind::Overlimit && !self.open.contains(&key) {
            self.crossings.insert(key, 1);
        }
        self.open(
            mine,
            kind,
            Subject::Point(point),
            ts,
            Some(value),
            Some(threshold),
            out,
        );
    }

    /// True while the alert of `key` is open.
    pub fn is_open(&self, key: &Key) -> bool {
        self.open.contains(key)
    }

    /// Applies one finding; its changes are appended to `out`.
    pub fn apply(&mut self, registry: &Registry, finding: &Finding, out: &mut Vec<Change>) {
        let mine_of = |p: PointIdx| registry.points.get(p as usize).map(|m| m.mine);
        match *finding {
            Finding::OverLimitOpened {
                point,
                ts,
                value,
                threshold,
            } => self.open_over_limit(
                registry,
                mine_of(point),
                AlertKind::Overlimit,
                point,
                ts,
                value,
                threshold,
                out,
            ),
            Finding::Evacuation {
                point,
                ts,
                value,
                threshold,
            } => self.open_over_limit(
                registry,
                mine_of(point),
                AlertKind::Evacuation,
                point,
                ts,
                value,
                threshold,
                out,
            ),
            Finding::Peak { point, value, .. } => {
                let Some(mine) = mine_of(point) else { return };
                for kind in [AlertKind::Overlimit, AlertKind::Evacuation] {
                    let key = (kind, mine, Subject::Point(point));
                    if self.open.contains(&key) {
                        out.push(Change::Peak { key, value });
                    }
                }
            }
            Finding::OverLimitClosed { point, ts, .. } => {
                let Some(mine) = mine_of(point) else { return };
                let group = self.group && regroup_ms(registry) > 0;
                for kind in [AlertKind::Evacuation, AlertKind::Overlimit] {
                    let key = (kind, mine, Subject::Point(point));
                    if !group {
                        self.close(key, ts, out);
                    } else if self.open.contains(&key) {
                        // Held back; an evacuation that ended earlier in
                        // the group keeps its own end.
                        self.closing.entry(key).or_insert(ts);
                    }
                }
            }
            Finding::PointOffline { point, at, .. } => self.open(
                mine_of(point),
                AlertKind::PointOffline,
                Subject::Point(point),
                at,
                None,
                None,
                out,
            ),
            Finding::PointOnline { point, at } => {
                if let Some(mine) = mine_of(point) {
                    self.close(
                        (AlertKind::PointOffline, mine, Subject::Point(point)),
                        at,
                        out,
                    );
                }
            }
            Finding::MineOffline { mine, at, .. } => self.open(
                Some(mine),
                AlertKind::MineOffline,
                Subject::Mine,
                at,
                None,
                None,
                out,
            ),
            Finding::MineOnline { mine, at } => {
                self.close((AlertKind::MineOffline, mine, Subject::Mine), at, out)
            }
            Finding::FlagRaised {
                point,
                ts,
                flag,
                value,
            } => {
                let Some(mine) = mine_of(point) else { return };
                let key = (flag.kind(), mine, Subject::Point(point));
                self.open_reason(key, flag.bit(), ts, value, None, out);
            }
            Finding::FlagCleared { point, ts, flag } => {
                let Some(mine) = mine_of(point) else { return };
                self.end_reason(
                    (flag.kind(), mine, Subject::Point(point)),
                    flag.bit(),
                    ts,
                    out,
                );
            }
            Finding::ActivityRaised {
                mine,
                subject,
                ts,
                reason,
                value,
            } => self.open_reason(
                (reason.kind(), mine, subject),
                reason.bit(),
                ts,
                value,
                activity_threshold(registry, mine, reason),
                out,
            ),
            Finding::ActivityCleared {
                mine,
                subject,
                ts,
                reason,
            } => self.end_reason((reason.kind(), mine, subject), reason.bit(), ts, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        mine: Option<MineIdx>,
        kind: AlertKind,
        subject: Subject,
        started: Millis,
        value: Option<f64>,
        threshold: Option<f64>,
        out: &mut Vec<Change>,
    ) {
        let Some(mine) = mine else { return };
        let key = (kind, mine, subject);
        if self.open.insert(key) {
            out.push(Change::Open {
                key,
                started,
                value,
                threshold,
            });
        }
    }

    fn close(&mut self, key: Key, at: Millis, out: &mut Vec<Change>) {
        if self.open.remove(&key) {
            out.push(Change::Close { key, at });
        }
    }

    fn open_reason(
        &mut self,
        key: Key,
        bit: u32,
        ts: Millis,
        value: f64,
        threshold: Option<f64>,
        out: &mut Vec<Change>,
    ) {
        *self.reasons.entry(key).or_insert(0) |= bit;
        let value = value.is_finite().then_some(value);
        self.open(Some(key.1), key.0, key.2, ts, value, threshold, out);
    }

    fn end_reason(&mut self, key: Key, bit: u32, ts: Millis, out: &mut Vec<Change>) {
        let left = self.reasons.get_mut(&key).map_or(0, |bits| {
            *bits &= !bit;
            *bits
        });
        if left == 0 {
            self.reasons.remove(&key);
            self.close(key, ts, out);
        }
    }
}

/// `rules.regroup_secs` in ms.
fn regroup_ms(registry: &Registry) -> Millis {
    i64::try_from(registry.rules.regroup_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

/// The code an alert carries in its `point` field: the point's national
/// code, `{mine}:power` for the electricity feed, `{mine}:seal:{camera}`
/// for a seal camera, none for the mine as a whole.
pub fn subject_code(registry: &Registry, mine: MineIdx, subject: Subject) -> Option<String> {
    let m = registry.mines.get(mine as usize)?;
    match subject {
        Subject::Mine => None,
        Subject::Point(p) => registry.points.get(p as usize).map(|p| p.code.clone()),
        Subject::Power => Some(format!("{}:power", m.code)),
        Subject::Camera(c) => {
            let id = m
                .seal
                .cameras
                .get(usize::from(c))
                .map_or("?", |c| c.id.as_str());
            Some(format!("{}:seal:{id}", m.code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activity, Flag};
    use crate::simulators::{ProvinceSpec, province};

    fn registry() -> Registry {
        let config = province(ProvinceSpec {
            mines: 2,
            points: 32,
            polling_secs: 5.0,
        });
        Registry::build(&config, 1)
    }

    fn changes(t: &mut EpisodeTracker, reg: &Registry, findings: &[Finding]) -> Vec<Change> {
        let mut out = Vec::new();
        for f in findings {
            t.apply(reg, f, &mut out);
        }
        out
    }

    #[test]
    fn over_limit_opens_both_kinds_and_closes_them_together() {
        let reg = registry();
        let mut t = EpisodeTracker::default();
        let out = changes(
            &mut t,
            &reg,
            &[
                Finding::OverLimitOpened {
                    point: 0,
                    ts: 10,
                    value: 1.1,
                    threshold: 1.0,
                },
                Finding::Evacuation {
                    point: 0,
                    ts: 20,
                    value: 1.6,
                    threshold: 1.5,
                },
                Finding::Peak {
                    point: 0,
                    ts: 30,
                    value: 1.9,
                },
                Finding::OverLimitClosed {
                    point: 0,
                    ts: 40,
                    value: 0.5,
                },
            ],
        );
        let over = (AlertKind::Overlimit, 0, Subject::Point(0));
        let evac = (AlertKind::Evacuation, 0, Subject::Point(0));
        assert_eq!(
            out,
            [
                Change::Open {
                    key: over,
                    started: 10,
                    value: Some(1.1),
                    threshold: Some(1.0)
                },
                Change::Open {
                    key: evac,
                    started: 20,
                    value: Some(1.6),
                    threshold: Some(1.5)
                },
                Change::Peak {
                    key: over,
                    value: 1.9
                },
                Change::Peak {
                    key: evac,
                    value: 1.9
                },
                Change::Close { key: evac, at: 40 },
                Change::Close { key: over, at: 40 },
            ]
        );
    }

    /// The over-limit findings of a table of (seconds, value) readings of
    /// point 0 (alarm 1.0 %, evacuation 1.5 %), as the detector makes them.
    fn flapping(table: &[(i64, f64)]) -> Vec<Finding> {
        let limits = crate::config::Limits {
            gas: crate::model::Gas::Methane,
            alarm: 1.0,
            power_off: Some(1.5),
            restore: 1.0,
            evacuate: Some(1.5),
            hold_ms: 0,
            from_rule: true,
            fault_above: 8.0,
        };
        let mut s = crate::detect::OverLimit::default();
        let mut out = Vec::new();
        for &(t, value) in table {
            let r = crate::model::Reading {
                point: 0,
                ts: t * 1000,
                value,
                status: 0,
            };
            s.apply(&limits, Some([0.0, 4.0]), 0, &r, &mut out);
        }
        out
    }

    #[test]
    fn a_point_flapping_at_its_line_is_one_alert_with_a_crossing_count() {
        // MM116-like: 0.1 % steps across 1.0 % every 30 s to a few minutes,
        // once up to evacuation, then quiet for longer than the interval,
        // then a new episode.
        let table = [
            (0, 0.9),
            (30, 1.0),
            (60, 0.9),
            (90, 1.0),
            (120, 1.1),
            (150, 0.9),
            (400, 1.6),
            (430, 0.9),
            (700, 1.0),
            (730, 0.8),
            (2000, 0.7),
            (3000, 1.1),
            (3030, 0.9),
        ];
        let findings = flapping(&table);
        let reg = registry();
        assert_eq!(reg.rules.regroup_secs, 600);
        // Every crossing is a detector episode (what the audit counts).
        let opened = |f: &&Finding| matches!(f, Finding::OverLimitOpened { .. });
        assert_eq!(findings.iter().filter(opened).count(), 5);
        let ungrouped = changes(&mut EpisodeTracker::default(), &reg, &findings);
        let opens = |c: &[Change]| {
            c.iter()
                .filter(|c| matches!(c, Change::Open { key, .. } if key.0 == AlertKind::Overlimit))
                .count()
        };
        assert_eq!(opens(&ungrouped), 5);
        // Grouped: one alert (one push) for the first four crossings, the
        // count on it, closed with the end of the last once 600 s passed.
        let mut t = EpisodeTracker::grouping();
        let mut out = Vec::new();
        for f in &findings {
            let ts = match *f {
                Finding::OverLimitOpened { ts, .. }
                | Finding::Evacuation { ts, .. }
                | Finding::Peak { ts, .. }
                | Finding::OverLimitClosed { ts, .. } => ts,
                _ => unreachable!(),
            };
            t.advance(&reg, ts, &mut out);
            t.apply(&reg, f, &mut out);
        }
        t.advance(&reg, 3_030_000 + 601_000, &mut out);
        let over = (AlertKind::Overlimit, 0, Subject::Point(0));
        let evac = (AlertKind::Evacuation, 0, Subject::Point(0));
        let brief: Vec<String> = out
            .iter()
            .filter_map(|c| match c {
                Change::Open { key, started, .. } => {
                    Some(format!("open {:?}@{}", key.0, started / 1000))
                }
                Change::Recrossed { key, crossings } => {
                    assert_eq!(*key, over);
                    Some(format!("again {crossings}"))
                }
                Change::Close { key, at } => Some(format!("close {:?}@{}", key.0, at / 1000)),
                Change::Peak { .. } => None,
            })
            .collect();
        assert_eq!(
            brief,
            [
                "open Overlimit@30",
                "again 2",
                "again 3",
                "open Evacuation@400",
                "again 4",
                "close Evacuation@430",
                "close Overlimit@730",
                "open Overlimit@3000",
                "close Overlimit@3030",
            ]
        );
        assert!(!t.is_open(&over) && !t.is_open(&evac));
    }

    #[test]
    fn reasons_share_one_alert_until_the_last_ends() {
        let reg = registry();
        let mut t = EpisodeTracker::default();
        let raise = |reason, ts| Finding::ActivityRaised {
            mine: 1,
            subject: Subject::Mine,
            ts,
            reason,
            value: 1200.0,
        };
        let clear = |reason, ts| Finding::ActivityCleared {
            mine: 1,
            subject: Subject::Mine,
            ts,
            reason,
        };
        let out = changes(
            &mut t,
            &reg,
            &[
                raise(Activity::ProductionLoad, 100),
                raise(Activity::SealPeople, 150),
                clear(Activity::ProductionLoad, 200),
                // A flag of the same bit number at a point is another alert.
                Finding::FlagRaised {
                    point: 32,
                    ts: 210,
                    flag: Flag::OutOfRange,
                    value: f64::NAN,
                },
                clear(Activity::SealPeople, 300),
            ],
        );
        let key = (AlertKind::SuspectedIllegalProduction, 1, Subject::Mine);
        assert_eq!(
            out,
            [
                Change::Open {
                    key,
                    started: 100,
                    value: Some(1200.0),
                    // The line it crossed, live and in replay alike.
                    threshold: Some(f64::from(reg.activity.production_minutes))
                },
                Change::Open {
                    key: (AlertKind::DataAnomaly, 1, Subject::Point(32)),
                    started: 210,
                    value: None,
                    threshold: None
                },
                Change::Close { key, at: 300 },
            ]
        );
    }

    #[test]
    fn subjects_have_codes_of_their_own() {
        let reg = registry();
        assert_eq!(subject_code(&reg, 0, Subject::Mine), None);
        assert_eq!(
            subject_code(&reg, 0, Subject::Power).as_deref(),
            Some("140121000001:power")
        );
        assert_eq!(
            subject_code(&reg, 0, Subject::Point(0)),
            Some(reg.points[0].code.clone())
        );
    }
}
