//! The offline detector (断线 / 断网): silence of a point or of a whole mine,
//! in processing time — the one detector that uses it, through the `now`
//! that ticks carry (docs/DESIGN.md, "Detectors are pure").
//!
//! Rule:
//! - a point is offline when nothing arrived for it for longer than its
//!   timeout (default 3 × its polling period) *while its mine is still heard
//!   from* (something arrived from the mine within 1.5 × the mine's shortest
//!   polling period);
//! - a mine is offline when nothing arrived from any of its points for 3 × its
//!   shortest polling period; one `mine_offline` alert then stands for all of
//!   its points, rather than a flood of `point_offline` alerts;
//! - a reading is a sign of life and resolves the point's and the mine's
//!   offline state, unless it is flagged substation fault (16) or not polled
//!   (32): then the station could not read the sensor, and the silence goes
//!   on (a Modbus device that times out reports its points this way);
//! - closed mines are not watched; every other mine, stopped ones included,
//!   must keep reporting;
//! - [`MineLink`] tells the power and seal silence rules what the mine's own
//!   link is doing (offline, last heard, heard again after going quiet), so
//!   that an uplink outage is one `mine_offline`, not a silence per feed.

use crate::config::{MineMeta, Registry};
use crate::model::{Finding, Millis, MineIdx, MineStatus, PointIdx, status};

/// Status bits that mean the station could not read the sensor at all.
pub const NOT_ALIVE: u16 = status::SUBSTATION_FAULT | status::NOT_POLLED;

/// True when a reading with this status shows that the point is reachable.
pub fn is_sign_of_life(st: u16) -> bool {
    st & NOT_ALIVE == 0
}

/// Last sign of life of a point or a mine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Liveness {
    last: Millis,
    offline: bool,
}

/// What a shard knows, at a tick, of a mine's own monitoring link; the
/// power and seal silence rules defer to it (a mine's uplink usually carries
/// its seal events too, so an uplink outage silences both at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MineLink {
    /// The mine is offline: its `mine_offline` alert stands for every feed.
    pub offline: bool,
    /// Processing time of the mine's last sign of life.
    pub last_heard: Millis,
    /// Processing time the mine was heard from again after it last went
    /// quiet (`Millis::MIN` if it never did): the feeds it carries come
    /// back over their own connections a little later.
    pub resumed: Millis,
}

impl MineLink {
    /// A mine heard from at `now` that never went quiet: nothing to defer
    /// to.
    pub fn up(now: Millis) -> MineLink {
        MineLink {
            offline: false,
            last_heard: now,
            resumed: Millis::MIN,
        }
    }

    /// The processing time a feed last heard from at `last` counts as
    /// silent since: not before the mine came back.
    pub fn silent_since(&self, last: Millis) -> Millis {
        last.max(self.resumed)
    }

    /// True when the mine is online and was heard from after `due`: its
    /// link worked then, so a feed whose next message was due by `due` and
    /// has not come is silent on its own.
    pub fn heard_after(&self, due: Millis) -> bool {
        !self.offline && self.last_heard > due
    }
}

/// The offline state of one mine and its points.
#[derive(Debug, Clone)]
pub struct MineOffline {
    mine: MineIdx,
    live: Liveness,
    /// The mine went quiet (silent beyond its alive window) and has not
    /// been heard from since.
    quiet: bool,
    /// When it was heard from again after it last went quiet.
    resumed: Millis,
    /// Per point, in the order of the mine's `points` list.
    points: Vec<Liveness>,
}

impl MineOffline {
    /// A mine whose points are all taken as heard from at `started` (so that
    /// a mine that never reports goes offline after its timeout).
    pub fn new(mine: MineIdx, n_points: usize, started: Millis) -> MineOffline {
        let fresh = Liveness {
            last: started,
            offline: false,
        };
        MineOffline {
            mine,
            live: fresh,
            quiet: false,
            resumed: Millis::MIN,
            points: vec![fresh; n_points],
        }
    }

    /// The mine this state watches.
    pub fn mine(&self) -> MineIdx {
        self.mine
    }

    /// True while the whole mine is offline.
    pub fn mine_offline(&self) -> bool {
        self.live.offline
    }

    /// The mine's own link as the power and seal silence rules see it.
    pub fn link(&self) -> MineLink {
        MineLink {
            offline: self.live.offline,
            last_heard: self.live.last,
            resumed: self.resumed,
        }
    }

    /// Something arrived at processing time `at` for the point at position
    /// `slot` of the mine (its index in the registry is `point`).
    #[inline]
    pub fn on_arrival(&mut self, slot: usize, point: PointIdx, at: Millis, out: &mut Vec<Finding>) {
        self.live.last = self.live.last.max(at);
        if self.quiet {
            self.quiet = false;
            self.resumed = at;
            if self.live.offline {
                self.live.offline = false;
                out.push(Finding::MineOnline {
                    mine: self.mine,
                    at,
                });
            }
        }
        if slot >= self.points.len() {
            self.grow(slot, at);
        }
        if let Some(p) = self.points.get_mut(slot) {
            p.last = p.last.max(at);
            if p.offline {
                p.offline = false;
                out.push(Finding::PointOnline { point, at });
            }
        }
    }

    /// Makes room for a point defined after start (CDDY). Kept out of line
    /// so that the per-reading path stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, slot: usize, at: Millis) {
        self.points.resize(
            slot + 1,
            Liveness {
                last: at,
                offline: false,
            },
        );
    }

    /// Processing time has reached `now`.
    pub fn on_tick(&mut self, registry: &Registry, now: Millis, out: &mut Vec<Finding>) {
        let meta: &MineMeta = &registry.mines[self.mine as usize];
        if meta.status == MineStatus::Closed || self.live.offline {
            return;
        }
        if self.points.len() < meta.points.len() {
            // Points defined after start are watched from now on.
            self.points.resize(
                meta.points.len(),
                Liveness {
                    last: now,
                    offline: false,
                },
            );
        }
        let silent = now - self.live.last;
        if silent > meta.offline_after_ms {
            self.live.offline = true;
            self.quiet = true;
            out.push(Finding::MineOffline {
                mine: self.mine,
                at: now,
                last_seen: self.live.last,
            });
            return;
        }
        if silent > meta.alive_window_ms {
            // The mine itself is going quiet: its verdict comes first.
            self.quiet = true;
            return;
        }
        for (p, &point) in self.points.iter_mut().zip(&meta.points) {
            let timeout = registry.points[point as usize].offline_after_ms;
            if !p.offline && now - p.last > timeout {
                p.offline = true;
                out.push(Finding::PointOffline {
                    point,
                    at: now,
                    last_seen: p.last,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    /// One mine, polling 10 s: mine offline after 30 s of silence, alive
    /// window 15 s; points 0 and 1 time out after 30 s, point 2 after 60 s.
    fn registry() -> Registry {
        let (config, _) = parse(
            r#"
[[mines]]
code = "140121000001"
name = "m"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 10
points = [
  { code = "p0", sensor = "0001", location = "face_t1" },
  { code = "p1", sensor = "0004", location = "face_t2" },
  { code = "p2", sensor = "0002", offline_after_secs = 60 },
]
"#,
        )
        .expect("valid");
        Registry::build(&config, 1)
    }

    fn s(secs: i64) -> Millis {
        secs * 1000
    }

    #[test]
    fn a_silent_point_of_a_live_mine_goes_offline_and_returns() {
        let reg = registry();
        let mut m = MineOffline::new(0, 3, 0);
        let mut out = Vec::new();
        for t in (0..=40).step_by(10) {
            m.on_arrival(0, 0, s(t), &mut out);
            m.on_arrival(2, 2, s(t), &mut out);
            m.on_tick(&reg, s(t) + 500, &mut out);
        }
        assert_eq!(
            out,
            [Finding::PointOffline {
                point: 1,
                at: s(30) + 500,
                last_seen: 0
            }]
        );
        out.clear();
        m.on_arrival(1, 1, s(45), &mut out);
        assert_eq!(
            out,
            [Finding::PointOnline {
                point: 1,
                at: s(45)
            }]
        );
    }

    #[test]
    fn the_link_shows_when_the_mine_went_quiet_and_came_back() {
        let reg = registry();
        let mut m = MineOffline::new(0, 3, 0);
        let mut out = Vec::new();
        m.on_arrival(0, 0, s(10), &mut out);
        m.on_tick(&reg, s(20), &mut out);
        assert_eq!(
            m.link(),
            MineLink {
                offline: false,
                last_heard: s(10),
                resumed: Millis::MIN
            }
        );
        // Quiet beyond the 15 s alive window, not yet offline; then back.
        m.on_tick(&reg, s(26), &mut out);
        m.on_arrival(0, 0, s(28), &mut out);
        assert!(out.is_empty(), "{out:?}");
        let link = m.link();
        assert_eq!((link.last_heard, link.resumed), (s(28), s(28)));
        assert!(link.heard_after(s(27)) && !link.heard_after(s(28)));
        assert_eq!(link.silent_since(s(5)), s(28));
        assert_eq!(link.silent_since(s(30)), s(30));
        // An arrival within the window does not move `resumed`.
        m.on_tick(&reg, s(30), &mut out);
        m.on_arrival(0, 0, s(31), &mut out);
        assert_eq!(m.link().resumed, s(28));
    }

    #[test]
    fn a_silent_mine_raises_one_mine_alert_not_one_per_point() {
        let reg = registry();
        let mut m = MineOffline::new(0, 3, 0);
        let mut out = Vec::new();
        for slot in 0..3 {
            m.on_arrival(slot, slot as PointIdx, s(10), &mut out);
        }
        for t in 11..=100 {
            m.on_tick(&reg, s(t), &mut out);
        }
        assert_eq!(
            out,
            [Finding::MineOffline {
                mine: 0,
                at: s(41),
                last_seen: s(10)
            }]
        );
        out.clear();
        // The mine comes back, but point 1 stays silent: it alone goes offline.
        for t in (101..=140).step_by(5) {
            m.on_arrival(0, 0, s(t), &mut out);
            m.on_arrival(2, 2, s(t), &mut out);
            m.on_tick(&reg, s(t), &mut out);
        }
        assert_eq!(
            out,
            [
                Finding::MineOnline {
                    mine: 0,
                    at: s(101)
                },
                Finding::PointOffline {
                    point: 1,
                    at: s(101),
                    last_seen: s(10)
                }
            ]
        );
    }

    #[test]
    fn a_mine_that_never_reports_goes_offline_after_its_timeout() {
        let reg = registry();
        let mut m = MineOffline::new(0, 3, s(1000));
        let mut out = Vec::new();
        m.on_tick(&reg, s(1030), &mut out);
        assert!(out.is_empty());
        m.on_tick(&reg, s(1031), &mut out);
        assert!(matches!(out[..], [Finding::MineOffline { .. }]));
        assert!(m.mine_offline());
    }

    #[test]
    fn unreachable_readings_are_no_sign_of_life() {
        assert!(is_sign_of_life(status::NORMAL));
        assert!(is_sign_of_life(status::SENSOR_FAULT | status::CALIBRATION));
        assert!(!is_sign_of_life(status::SUBSTATION_FAULT));
        assert!(!is_sign_of_life(status::NOT_POLLED | status::ALARM));
    }

    #[test]
    fn closed_mines_are_not_watched() {
        let mut reg = registry();
        reg.mines[0].status = MineStatus::Closed;
        let mut m = MineOffline::new(0, 3, 0);
        let mut out = Vec::new();
        m.on_tick(&reg, s(10_000), &mut out);
        assert!(out.is_empty());
    }
}
