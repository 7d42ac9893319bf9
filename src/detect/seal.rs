//! Electronic seals (电子封条) of one mine: the cameras at shaft mouths,
//! vehicle gates and the dispatch room. Catches a stopped mine at work, too
//! many people underground, and cameras that cannot be trusted.
//!
//! Rules (event time, each event judged against the newest event time of
//! the mine; heartbeats keep it moving):
//! - headcount: people in minus people out at the shaft cameras (never
//!   below 0); a `headcount` event (the seal system's own count) sets it;
//! - `overmanning` (any mine with an approved maximum): the headcount above
//!   `approved_headcount` for `people_hold_secs` (shift changes overlap
//!   briefly); it clears once back at or under;
//! - at a stopped (or closed) mine, each a `suspected_illegal_production`
//!   reason: `seal_people`, the headcount above the maintenance crew for
//!   `people_hold_secs`; `seal_vehicles`, `stopped_vehicles` vehicles out
//!   within `vehicle_window_secs`; `seal_hoist`, the hoist or a belt running
//!   for `hoist_running_secs`;
//! - per camera, each a `seal_alert` reason: a reported picture fault
//!   lasting `fault_hold_secs` (`camera_obstructed`, `camera_frozen`, …;
//!   until `fault_cleared`); `static_image`, the same picture digest for
//!   `static_image_secs` over `static_image_frames` events (a photo fed to
//!   the camera, whatever it reports); `dispatch_unattended`, from the
//!   dispatch camera until attended again;
//! - `seal_silent` (processing time, on ticks): a camera that sent nothing
//!   for 3½ × its heartbeat (three missed), except at a closed mine, while the whole mine
//!   is offline, and while the mine's monitoring has not been heard from
//!   since the camera's next heartbeat was due: the mine's uplink carries
//!   its seal events too, and when it fails the mine's own verdict comes
//!   first. Once the mine is heard from again the camera's silence counts
//!   from then (its connection comes back on its own, a little later).
//!
//! A picture that cannot be trusted is never read as "all quiet": while a
//! camera has a fault, a static picture or silence open, its "stopped"
//! events (hoist or belt stopped, dispatch attended) are ignored.
//!
//! Delivery is at least once, so an event equal in every field (time, kind,
//! count, picture digest) to one of the camera's last 16 is a redelivery
//! and is dropped (counted as a duplicate): nobody is counted in twice. A
//! seal system that reports two separate crossings at one camera with the
//! same millisecond and count would lose one; real ones sum them into one
//! event.

use std::collections::VecDeque;

use crate::config::MineMeta;
use crate::config::activity::ActivityConfig;
use crate::detect::{MineLink, OpenReasons};
use crate::model::{
    Activity, CameraFault, Finding, Millis, MineIdx, MineStatus, SealEvent, SealEventKind, Subject,
};

/// Vehicle departures remembered at most (more add nothing to the rule).
const VEHICLES_KEPT: usize = 256;

/// The state of one camera.
#[derive(Debug, Clone, Default)]
struct CameraState {
    /// Processing time of its last event (or of the start).
    last_arrival: Millis,
    /// Since when each reported fault lasts (event time), by
    /// [`CameraFault`] order.
    fault_since: [Option<Millis>; 7],
    /// Open reasons of this camera.
    open: OpenReasons,
    /// Last picture digest, since when, over how many events.
    frame: u64,
    frame_since: Millis,
    frame_events: u32,
    /// Fingerprints of its last [`RECENT`] events, to drop redeliveries.
    recent: [u64; RECENT],
    recent_pos: usize,
}

/// Events remembered per camera to recognise a redelivered one (an MQTT
/// QoS 1 resend, a gateway resending after reconnecting).
const RECENT: usize = 16;

/// A fingerprint of everything an event says (0 is kept free for "none");
/// kept in memory only, so a fixed-key hasher will do, and nothing is
/// allocated per event.
fn fingerprint(e: &SealEvent) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (e.ts, e.kind, e.count, e.frame).hash(&mut h);
    h.finish().max(1)
}

impl CameraState {
    fn untrusted(&self) -> bool {
        let picture = CameraFault::ALL.iter().fold(
            Activity::StaticImage.bit() | Activity::SealSilent.bit(),
            |b, f| b | f.activity().bit(),
        );
        self.open.any(picture) || self.fault_since.iter().any(Option::is_some)
    }
}

/// How an event was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealApplied {
    /// Applied in order.
    InOrder,
    /// Older than the mine's newest event: counts applied, the time-based
    /// rules judged at the newest time.
    Late,
    /// The same event (time, kind, count, picture) as one of the camera's
    /// recent ones: a redelivery, ignored so that no one is counted twice.
    Duplicate,
}

/// The seal state of one mine.
#[derive(Debug, Clone)]
pub struct MineSeal {
    mine: MineIdx,
    /// Newest event time seen.
    newest: Millis,
    headcount: i64,
    over_approved_since: Option<Millis>,
    over_crew_since: Option<Millis>,
    vehicles: VecDeque<Millis>,
    hoist_since: Option<Millis>,
    belt_since: Option<Millis>,
    /// Open mine-level reasons (bits of [`Activity::bit`]).
    open: OpenReasons,
    cameras: Vec<CameraState>,
}

impl MineSeal {
    /// The state of mine `mine` with `cameras` cameras, all taken as heard
    /// from at `started`.
    pub fn new(mine: MineIdx, cameras: usize, started: Millis) -> MineSeal {
        MineSeal {
            mine,
            newest: Millis::MIN,
            headcount: 0,
            over_approved_since: None,
            over_crew_since: None,
            vehicles: VecDeque::new(),
            hoist_since: None,
            belt_since: None,
            open: OpenReasons::default(),
            cameras: vec![
                CameraState {
                    last_arrival: started,
                    ..CameraState::default()
                };
                cameras
            ],
        }
    }

    /// People underground as the seals count them.
    pub fn headcount(&self) -> i64 {
        self.headcount
    }

    /// True while the mine-level `reason` is open.
    pub fn is_open(&self, reason: Activity) -> bool {
        self.open.is_open(reason)
    }

    /// Applies one event that arrived at processing time `arrival`.
    pub fn apply(
        &mut self,
        cfg: &ActivityConfig,
        meta: &MineMeta,
        e: &SealEvent,
        arrival: Millis,
        out: &mut Vec<Finding>,
    ) -> SealApplied {
        let cam = usize::from(e.camera);
        if cam >= self.cameras.len() {
            self.cameras.resize(cam + 1, CameraState::default());
        }
        {
            let c = &mut self.cameras[cam];
            let print = fingerprint(e);
            if c.recent.contains(&print) {
                return SealApplied::Duplicate;
            }
            c.recent[c.recent_pos] = print;
            c.recent_pos = (c.recent_pos + 1) % RECENT;
        }
        let applied = if e.ts < self.newest {
            SealApplied::Late
        } else {
            self.newest = e.ts;
            SealApplied::InOrder
        };
        let now = self.newest;
        let mine = self.mine;
        let place = meta.seal.cameras.get(cam).map(|c| c.place);
        // Any event is a sign of life.
        {
            let c = &mut self.cameras[cam];
            c.last_arrival = c.last_arrival.max(arrival);
            c.open.close(
                mine,
                Subject::Camera(e.camera),
                Activity::SealSilent,
                arrival,
                out,
            );
        }
        let untrusted = self.cameras[cam].untrusted();
        let count = i64::from(e.count);
        match e.kind {
            SealEventKind::PeopleIn if place.is_some_and(|p| p.is_shaft()) => {
                self.headcount = self.headcount.saturating_add(count);
            }
            SealEventKind::PeopleOut if place.is_some_and(|p| p.is_shaft()) => {
                self.headcount = (self.headcount - count).max(0);
            }
            SealEventKind::Headcount => self.headcount = count,
            SealEventKind::VehicleOut => {
                for _ in 0..e.count.min(VEHICLES_KEPT as u32) {
                    if self.vehicles.len() == VEHICLES_KEPT {
                        self.vehicles.pop_front();
                    }
                    self.vehicles.push_back(e.ts);
                }
            }
            SealEventKind::HoistRunning => {
                self.hoist_since.get_or_insert(e.ts);
            }
            SealEventKind::HoistStopped if !untrusted => self.hoist_since = None,
            SealEventKind::BeltRunning => {
                self.belt_since.get_or_insert(e.ts);
            }
            SealEventKind::BeltStopped if !untrusted => self.belt_since = None,
            SealEventKind::DispatchUnattended => {
                self.camera_raise(e.camera, Activity::DispatchUnattended, e.ts, f64::NAN, out);
            }
            SealEventKind::DispatchAttended if !untrusted => {
                self.camera_close(e.camera, Activity::DispatchUnattended, e.ts, out);
            }
            SealEventKind::Fault(f) => {
                self.cameras[cam].fault_since[f as usize].get_or_insert(e.ts);
            }
            SealEventKind::FaultCleared => {
                self.cameras[cam].fault_since = [None; 7];
                for f in CameraFault::ALL {
                    self.camera_close(e.camera, f.activity(), e.ts, out);
                }
            }
            _ => {}
        }
        if e.frame != 0 {
            self.judge_frame(cfg, e.camera, e.frame, e.ts, out);
        }
        self.judge_faults(cfg, now, out);
        self.judge_mine(cfg, meta, now, out);
        applied
    }

    /// The same digest for long is a static picture; a new one ends it.
    fn judge_frame(
        &mut self,
        cfg: &ActivityConfig,
        camera: u16,
        frame: u64,
        ts: Millis,
        out: &mut Vec<Finding>,
    ) {
        let c = &mut self.cameras[usize::from(camera)];
        if c.frame == frame {
            c.frame_events = c.frame_events.saturating_add(1);
            let since = c.frame_since;
            if !c.open.is_open(Activity::StaticImage)
                && c.frame_events >= cfg.static_image_frames
                && ts - since >= secs(cfg.static_image_secs)
            {
                self.camera_raise(camera, Activity::StaticImage, since, f64::NAN, out);
            }
        } else {
            c.frame = frame;
            c.frame_since = ts;
            c.frame_events = 1;
            self.camera_close(camera, Activity::StaticImage, ts, out);
        }
    }

    /// Reported faults that lasted `fault_hold_secs` raise their reason.
    fn judge_faults(&mut self, cfg: &ActivityConfig, now: Millis, out: &mut Vec<Finding>) {
        for cam in 0..self.cameras.len() {
            for f in CameraFault::ALL {
                let Some(since) = self.cameras[cam].fault_since[f as usize] else {
                    continue;
                };
                let reason = f.activity();
                if !self.cameras[cam].open.is_open(reason)
                    && now - since >= secs(cfg.fault_hold_secs)
                {
                    self.camera_raise(cam as u16, reason, since, f64::NAN, out);
                }
            }
        }
    }

    fn judge_mine(
        &mut self,
        cfg: &ActivityConfig,
        meta: &MineMeta,
        now: Millis,
        out: &mut Vec<Finding>,
    ) {
        let hold = secs(cfg.people_hold_secs);
        let headcount = self.headcount;
        // Overmanning, at any mine that declared its maximum.
        let over = meta
            .approved_headcount
            .is_some_and(|max| headcount > i64::from(max));
        self.held(
            Activity::Overmanning,
            over,
            now,
            hold,
            headcount as f64,
            out,
        );
        let stopped = matches!(meta.status, MineStatus::Stopped | MineStatus::Closed);
        let crew = stopped && headcount > i64::from(meta.seal.maintenance_crew);
        self.held(Activity::SealPeople, crew, now, hold, headcount as f64, out);
        // Vehicles leaving a stopped mine.
        let window = secs(cfg.vehicle_window_secs);
        while self.vehicles.front().is_some_and(|&t| now - t > window) {
            self.vehicles.pop_front();
        }
        let trucks = self.vehicles.len() as u32;
        let reason = Activity::SealVehicles;
        if stopped && trucks >= cfg.stopped_vehicles {
            if !self.is_open(reason) {
                let first = self.vehicles.front().copied().unwrap_or(now);
                self.mine_raise(reason, first, f64::from(trucks), out);
            }
        } else {
            self.mine_close(reason, now, out);
        }
        // The hoist or a belt running at a stopped mine.
        let running = [self.hoist_since, self.belt_since]
            .into_iter()
            .flatten()
            .min();
        let reason = Activity::SealHoist;
        match running {
            Some(since) if stopped => {
                if !self.is_open(reason) && now - since >= secs(cfg.hoist_running_secs) {
                    self.mine_raise(reason, since, f64::NAN, out);
                }
            }
            _ => self.mine_close(reason, now, out),
        }
    }

    /// A condition that must hold `hold` ms before its reason opens; the
    /// reason closes as soon as the condition ends.
    fn held(
        &mut self,
        reason: Activity,
        holds: bool,
        now: Millis,
        hold: Millis,
        value: f64,
        out: &mut Vec<Finding>,
    ) {
        let since = match reason {
            Activity::Overmanning => &mut self.over_approved_since,
            _ => &mut self.over_crew_since,
        };
        if !holds {
            *since = None;
            self.mine_close(reason, now, out);
            return;
        }
        let start = *since.get_or_insert(now);
        if !self.is_open(reason) && now - start >= hold {
            self.mine_raise(reason, start, value, out);
        }
    }

    fn mine_raise(&mut self, reason: Activity, ts: Millis, value: f64, out: &mut Vec<Finding>) {
        self.open
            .raise(self.mine, Subject::Mine, reason, ts, value, out);
    }

    fn mine_close(&mut self, reason: Activity, ts: Millis, out: &mut Vec<Finding>) {
        self.open.close(self.mine, Subject::Mine, reason, ts, out);
    }

    fn camera_raise(
        &mut self,
        camera: u16,
        reason: Activity,
        ts: Millis,
        value: f64,
        out: &mut Vec<Finding>,
    ) {
        let subject = Subject::Camera(camera);
        self.cameras[usize::from(camera)]
            .open
            .raise(self.mine, subject, reason, ts, value, out);
    }

    fn camera_close(&mut self, camera: u16, reason: Activity, ts: Millis, out: &mut Vec<Finding>) {
        let subject = Subject::Camera(camera);
        self.cameras[usize::from(camera)]
            .open
            .close(self.mine, subject, reason, ts, out);
    }

    /// Processing time has reached `now`; `mine` is what the shard knows
    /// of the mine's own monitoring link.
    pub fn on_tick(
        &mut self,
        meta: &MineMeta,
        now: Millis,
        mine: MineLink,
        out: &mut Vec<Finding>,
    ) {
        if meta.status == MineStatus::Closed || mine.offline {
            return;
        }
        // A camera's next heartbeat was due one period after its last
        // event.
        let period = meta.seal.heartbeat_ms;
        let n = meta.seal.cameras.len().min(self.cameras.len());
        for cam in 0..n {
            let c = &self.cameras[cam];
            let since = mine.silent_since(c.last_arrival);
            if !c.open.is_open(Activity::SealSilent)
                && now - since > meta.seal.silent_after_ms
                && mine.heard_after(since + period)
            {
                self.camera_raise(cam as u16, Activity::SealSilent, now, f64::NAN, out);
            }
        }
    }
}

fn secs(s: u64) -> Millis {
    (s as Millis).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Registry, parse};

    const T0: Millis = 1_795_392_000_000;

    fn registry(status: &str) -> Registry {
        let text = format!(
            r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
status = "{status}"
approved_headcount = 100
points = [ {{ code = "a1", sensor = "0001", location = "face_t1" }} ]
[mines.seal]
heartbeat_secs = 60
maintenance_crew = 10
cameras = [
  {{ id = "main", place = "main_shaft" }},
  {{ id = "aux", place = "aux_shaft" }},
  {{ id = "gate", place = "vehicle_gate" }},
  {{ id = "desk", place = "dispatch_room" }},
]
"#
        );
        let (config, _): (Config, _) = parse(&text).expect("valid");
        Registry::build(&config, 1)
    }

    fn ev(camera: u16, ts: Millis, kind: SealEventKind, count: u32) -> SealEvent {
        SealEvent {
            mine: 0,
            camera,
            ts,
            kind,
            count,
            frame: 0,
        }
    }

    /// Applies events, each arriving 1 s after its time.
    fn feed(s: &mut MineSeal, reg: &Registry, events: &[SealEvent]) -> Vec<Finding> {
        let cfg = ActivityConfig::default();
        let mut out = Vec::new();
        for e in events {
            s.apply(&cfg, &reg.mines[0], e, e.ts + 1000, &mut out);
        }
        out
    }

    /// Heartbeats of every camera each minute over `[from, to)`.
    fn heartbeats(from: Millis, to: Millis) -> Vec<SealEvent> {
        let mut v = Vec::new();
        let mut t = from;
        while t < to {
            for cam in 0..4 {
                v.push(SealEvent {
                    frame: (t / 1000) as u64 * 4 + u64::from(cam) + 1,
                    ..ev(cam, t, SealEventKind::Heartbeat, 0)
                });
            }
            t += 60_000;
        }
        v
    }

    fn reasons(out: &[Finding]) -> Vec<(Activity, bool)> {
        out.iter()
            .filter_map(|f| match f {
                Finding::ActivityRaised { reason, .. } => Some((*reason, true)),
                Finding::ActivityCleared { reason, .. } => Some((*reason, false)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_shift_overlap_is_not_overmanning_but_a_standing_excess_is() {
        let reg = registry("producing");
        let mut s = MineSeal::new(0, 4, T0);
        let mut events = vec![ev(0, T0, SealEventKind::PeopleIn, 90)];
        // The next shift goes down before the last comes up: 160 for 5 min.
        events.push(ev(1, T0 + 60_000, SealEventKind::PeopleIn, 70));
        events.push(ev(0, T0 + 360_000, SealEventKind::PeopleOut, 85));
        events.extend(heartbeats(T0, T0 + 1_200_000));
        events.sort_by_key(|e| e.ts);
        let out = feed(&mut s, &reg, &events);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(s.headcount(), 75);
        // 40 more go down and stay: over 100 for 10 minutes.
        let t = T0 + 1_200_000;
        let mut events = vec![ev(1, t, SealEventKind::PeopleIn, 40)];
        events.extend(heartbeats(t, t + 700_000));
        let out = feed(&mut s, &reg, &events);
        assert_eq!(reasons(&out), [(Activity::Overmanning, true)]);
        let Finding::ActivityRaised { ts, value, .. } = out[0] else {
            unreachable!()
        };
        assert_eq!((ts, value), (t, 115.0));
        let out = feed(
            &mut s,
            &reg,
            &[ev(0, t + 800_000, SealEventKind::PeopleOut, 20)],
        );
        assert_eq!(reasons(&out), [(Activity::Overmanning, false)]);
    }

    #[test]
    fn a_stopped_mine_with_people_trucks_and_hoist_is_flagged() {
        let reg = registry("stopped");
        let mut s = MineSeal::new(0, 4, T0);
        // The maintenance crew of 8 goes down: quiet.
        let mut events = vec![ev(1, T0, SealEventKind::PeopleIn, 8)];
        events.extend(heartbeats(T0, T0 + 900_000));
        assert!(feed(&mut s, &reg, &events).is_empty());
        // One truck leaves: not yet.
        let t = T0 + 900_000;
        assert!(feed(&mut s, &reg, &[ev(2, t, SealEventKind::VehicleOut, 1)]).is_empty());
        // A second within the window.
        let out = feed(
            &mut s,
            &reg,
            &[ev(2, t + 1_800_000, SealEventKind::VehicleOut, 1)],
        );
        assert_eq!(reasons(&out), [(Activity::SealVehicles, true)]);
        // A production shift of 60 goes down, the hoist runs.
        let t = t + 1_800_000;
        let mut events = vec![
            ev(0, t, SealEventKind::PeopleIn, 60),
            ev(0, t, SealEventKind::HoistRunning, 0),
        ];
        events.extend(heartbeats(t, t + 1_000_000));
        let out = feed(&mut s, &reg, &events);
        assert_eq!(
            reasons(&out),
            [(Activity::SealPeople, true), (Activity::SealHoist, true)]
        );
        // Two hours after the last truck the vehicle reason ends.
        let out = feed(&mut s, &reg, &heartbeats(t + 1_000_000, t + 7_300_000));
        assert_eq!(reasons(&out), [(Activity::SealVehicles, false)]);
    }

    #[test]
    fn a_producing_mine_may_run_its_hoist_and_trucks() {
        let reg = registry("producing");
        let mut s = MineSeal::new(0, 4, T0);
        let mut events = vec![
            ev(0, T0, SealEventKind::PeopleIn, 80),
            ev(0, T0, SealEventKind::HoistRunning, 0),
            ev(2, T0 + 60_000, SealEventKind::VehicleOut, 12),
        ];
        events.extend(heartbeats(T0, T0 + 3_600_000));
        assert!(feed(&mut s, &reg, &events).is_empty());
    }

    #[test]
    fn faults_hold_before_raising_and_a_frozen_camera_cannot_say_stopped() {
        let reg = registry("stopped");
        let mut s = MineSeal::new(0, 4, T0);
        // A 30 s glitch of the signal raises nothing.
        let mut events = vec![
            ev(0, T0, SealEventKind::Fault(CameraFault::LostSignal), 0),
            ev(0, T0 + 30_000, SealEventKind::FaultCleared, 0),
        ];
        events.extend(heartbeats(T0, T0 + 300_000));
        events.sort_by_key(|e| e.ts);
        assert!(feed(&mut s, &reg, &events).is_empty());
        // Frozen for good; then the hoist starts and the frozen camera
        // "sees" it stop: that is ignored.
        let t = T0 + 300_000;
        let mut events = vec![
            ev(0, t, SealEventKind::Fault(CameraFault::Frozen), 0),
            ev(1, t + 10_000, SealEventKind::HoistRunning, 0),
            ev(0, t + 200_000, SealEventKind::HoistStopped, 0),
        ];
        events.extend(heartbeats(t, t + 1_200_000));
        events.sort_by_key(|e| e.ts);
        let out = feed(&mut s, &reg, &events);
        assert_eq!(
            reasons(&out),
            [(Activity::CameraFrozen, true), (Activity::SealHoist, true)]
        );
        let out = feed(
            &mut s,
            &reg,
            &[ev(0, t + 1_300_000, SealEventKind::FaultCleared, 0)],
        );
        assert_eq!(reasons(&out), [(Activity::CameraFrozen, false)]);
        // Now trusted again, its "stopped" ends the hoist reason.
        let out = feed(
            &mut s,
            &reg,
            &[ev(0, t + 1_400_000, SealEventKind::HoistStopped, 0)],
        );
        assert_eq!(reasons(&out), [(Activity::SealHoist, false)]);
    }

    #[test]
    fn the_same_picture_for_ten_minutes_is_a_static_image() {
        let reg = registry("producing");
        let mut s = MineSeal::new(0, 4, T0);
        let same: Vec<SealEvent> = (0..12)
            .map(|k| SealEvent {
                frame: 0xfeed,
                ..ev(3, T0 + k * 60_000, SealEventKind::Heartbeat, 0)
            })
            .collect();
        let out = feed(&mut s, &reg, &same);
        assert_eq!(reasons(&out), [(Activity::StaticImage, true)]);
        let Finding::ActivityRaised { ts, subject, .. } = out[0] else {
            unreachable!()
        };
        assert_eq!((ts, subject), (T0, Subject::Camera(3)));
        let next = SealEvent {
            frame: 0xbeef,
            ..ev(3, T0 + 13 * 60_000, SealEventKind::Heartbeat, 0)
        };
        assert_eq!(
            reasons(&feed(&mut s, &reg, &[next])),
            [(Activity::StaticImage, false)]
        );
    }

    #[test]
    fn the_dispatch_desk_and_silent_cameras() {
        let reg = registry("producing");
        let mut s = MineSeal::new(0, 4, T0);
        let out = feed(
            &mut s,
            &reg,
            &[ev(3, T0, SealEventKind::DispatchUnattended, 0)],
        );
        assert_eq!(reasons(&out), [(Activity::DispatchUnattended, true)]);
        let out = feed(
            &mut s,
            &reg,
            &[ev(3, T0 + 60_000, SealEventKind::DispatchAttended, 0)],
        );
        assert_eq!(reasons(&out), [(Activity::DispatchUnattended, false)]);
        // Silence: 3½ × 60 s after the last event of each camera.
        let mut out = Vec::new();
        s.on_tick(
            &reg.mines[0],
            T0 + 210_000,
            MineLink::up(T0 + 210_000),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        let offline = MineLink {
            offline: true,
            last_heard: T0,
            resumed: Millis::MIN,
        };
        s.on_tick(&reg.mines[0], T0 + 211_001, offline, &mut out);
        assert!(out.is_empty(), "the mine-offline alert stands for all");
        // The mine's monitoring went quiet with the cameras (an uplink
        // outage): its own verdict comes first.
        let quiet = MineLink {
            offline: false,
            last_heard: T0 + 30_000,
            resumed: Millis::MIN,
        };
        s.on_tick(&reg.mines[0], T0 + 211_001, quiet, &mut out);
        assert!(out.is_empty(), "the mine's verdict comes first");
        s.on_tick(
            &reg.mines[0],
            T0 + 211_001,
            MineLink::up(T0 + 211_001),
            &mut out,
        );
        // Cameras 0–2 were last heard at the start; camera 3 at T0+61 s.
        assert_eq!(
            out.iter()
                .map(|f| match f {
                    Finding::ActivityRaised { subject, .. } => *subject,
                    _ => Subject::Mine,
                })
                .collect::<Vec<_>>(),
            [Subject::Camera(0), Subject::Camera(1), Subject::Camera(2)]
        );
        let out = feed(
            &mut s,
            &reg,
            &[ev(1, T0 + 220_000, SealEventKind::Heartbeat, 0)],
        );
        assert_eq!(reasons(&out), [(Activity::SealSilent, false)]);
    }

    #[test]
    fn a_camera_gets_its_whole_timeout_once_its_mine_is_back() {
        let reg = registry("producing");
        let mut s = MineSeal::new(0, 4, T0);
        let mut out = Vec::new();
        // The uplink was down 5 minutes: the mine is heard again at
        // T0 + 300 s, the seal connection is not back yet.
        let back = MineLink {
            offline: false,
            last_heard: T0 + 301_000,
            resumed: T0 + 300_000,
        };
        s.on_tick(&reg.mines[0], T0 + 301_000, back, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // 3½ × 60 s after the mine came back, the cameras are silent.
        let later = MineLink {
            last_heard: T0 + 511_000,
            ..back
        };
        s.on_tick(&reg.mines[0], T0 + 510_000, later, &mut out);
        assert!(out.is_empty(), "{out:?}");
        s.on_tick(&reg.mines[0], T0 + 511_000, later, &mut out);
        assert_eq!(out.len(), 4, "{out:?}");
    }

    #[test]
    fn late_events_still_count_people() {
        let reg = registry("producing");
        let mut s = MineSeal::new(0, 4, T0);
        let cfg = ActivityConfig::default();
        let mut out = Vec::new();
        let m = &reg.mines[0];
        s.apply(
            &cfg,
            m,
            &ev(0, T0 + 60_000, SealEventKind::PeopleIn, 5),
            T0,
            &mut out,
        );
        let late = s.apply(
            &cfg,
            m,
            &ev(0, T0, SealEventKind::PeopleIn, 3),
            T0,
            &mut out,
        );
        assert_eq!(late, SealApplied::Late);
        assert_eq!(s.headcount(), 8);
        // People counted at the vehicle gate are not underground.
        s.apply(
            &cfg,
            m,
            &ev(2, T0 + 61_000, SealEventKind::PeopleIn, 4),
            T0,
            &mut out,
        );
        assert_eq!(s.headcount(), 8);
    }

    #[test]
    fn a_redelivered_event_is_not_counted_twice() {
        let reg = registry("producing");
        let mut s = MineSeal::new(0, 4, T0);
        let cfg = ActivityConfig::default();
        let mut out = Vec::new();
        let m = &reg.mines[0];
        let first = ev(0, T0 + 1_000, SealEventKind::PeopleIn, 5);
        assert_eq!(s.apply(&cfg, m, &first, T0, &mut out), SealApplied::InOrder);
        let other = ev(0, T0 + 2_000, SealEventKind::PeopleIn, 5);
        s.apply(&cfg, m, &other, T0, &mut out);
        // The first message again (a QoS 1 resend), after the second.
        assert_eq!(
            s.apply(&cfg, m, &first, T0, &mut out),
            SealApplied::Duplicate
        );
        assert_eq!(s.headcount(), 10);
        // The same crossing at another camera is another event.
        s.apply(
            &cfg,
            m,
            &ev(1, T0 + 1_000, SealEventKind::PeopleIn, 5),
            T0,
            &mut out,
        );
        assert_eq!(s.headcount(), 15);
    }
}
