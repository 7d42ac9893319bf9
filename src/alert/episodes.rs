//! Which findings open, raise and close which alert: the rules the live
//! alert stage and replay share, so that both build the same episodes.
//!
//! An alert is keyed by its kind, its mine and its [`Subject`] (a point,
//! the mine, its power feed or a seal camera). At most one is open per key:
//! - over-limit: `OverLimitOpened` opens `overlimit`, `Evacuation` opens
//!   `evacuation` beside it, `Peak` raises the peak of both, and
//!   `OverLimitClosed` closes both;
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
}

impl EpisodeTracker {
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
            } => self.open(
                mine_of(point),
                AlertKind::Overlimit,
                Subject::Point(point),
                ts,
                Some(value),
                Some(threshold),
                out,
            ),
            Finding::Evacuation {
                point,
                ts,
                value,
                threshold,
            } => self.open(
                mine_of(point),
                AlertKind::Evacuation,
                Subject::Point(point),
                ts,
                Some(value),
                Some(threshold),
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
                for kind in [AlertKind::Evacuation, AlertKind::Overlimit] {
                    self.close((kind, mine, Subject::Point(point)), ts, out);
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
