//! Simulated electricity use and electronic-seal traffic of one mine, as a
//! mine's meter and seal system would send it on `mines/{mine}/power` and
//! `mines/{mine}/seal`, with patterns laid over it ([`Injection`]).
//!
//! Everything is a pure function of the mine, the event time and the
//! injections (noise comes from hashing them), so the live publisher,
//! stepping in wall-clock time, and the offline labelled scenarios, stepping
//! through days, produce the same traffic for the same times.
//!
//! Normal traffic (Beijing time):
//! - power: fans at 55 % of the declared maintenance load around the clock;
//!   drainage pumps cycling (25 min an hour by day, 45 at night on the cheap
//!   tariff); compressors, lighting and monitoring. A producing mine adds
//!   hoist, belts and faces over three shifts, lighter in the handover hour;
//!   a stopped mine's hoist stands by (12 kW) apart from two short cage runs
//!   a day for its maintenance crew.
//! - seals: a heartbeat per camera every `SEAL_HEARTBEAT_SECS` with a new
//!   picture digest; shift changes at 00:00, 08:00 and 16:00 at a producing
//!   mine (the next shift goes down in groups in the 40 minutes before, the
//!   last comes up in the 40 after: the overlap stays under the approved
//!   headcount), coal trucks leaving every 12 minutes by day; at a stopped
//!   mine a maintenance crew of 8 (08:10–16:20), a gas patrol of 2 at
//!   20:00–21:00 and one supply truck a day; the running hoist and belts of
//!   a producing mine reported once at the start; one 30-second signal
//!   glitch of one camera a day and, at night, a few seconds of headlight
//!   glare on the vehicle-gate camera. The first message also carries the
//!   seal system's own headcount, so a run that starts mid-shift starts
//!   right, and at 04:00 the seal system reconciles its count with the
//!   personnel-location system and reports it again.
//! - the cameras miscount: one group in 20 is counted one too many or one
//!   too few; the seal AI reports the hoist of a stopped mine running
//!   during its two cage runs; the meter misses one sample in a hundred;
//!   every third day or so the main fans are switched over (both running
//!   for 4–8 minutes) by day.
//! - a camera that cannot see (a reported fault, a fed-in still picture)
//!   reports nothing of what happens in front of it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::model::{CameraFault, Millis, stable_hash};
use crate::simulators::province::{
    CAMERAS, POWER_POLLING_SECS, SEAL_HEARTBEAT_SECS, approved_headcount, is_stopped,
    maintenance_kw,
};

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;
const BEIJING: Millis = 8 * HOUR;

/// Camera positions in [`CAMERAS`].
const MAIN: usize = 0;
const AUX: usize = 1;
const GATE: usize = 3;
const DISPATCH: usize = 4;

/// A stopped mine secretly at work: how big the work is and what of it
/// the meter and the seals see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Work {
    /// Start, ms.
    pub from: Millis,
    /// End, ms.
    pub to: Millis,
    /// Share of a full production load on hoist, belts and faces (1.0:
    /// every face cutting; 0.4: one heading).
    pub load: f64,
    /// People who go down for it (they go down over 10 minutes at `from`
    /// and come up over 10 minutes at `to`); 0 when none pass a seal.
    pub crew: u32,
    /// A coal truck leaves every this many minutes (0: the coal is kept
    /// on site).
    pub truck_every_mins: u32,
    /// The seal cameras see the hoist and belts start and stop.
    pub machinery_seen: bool,
    /// The load shows in the power feed (not when it is drawn from an
    /// unmetered line).
    pub power: bool,
}

/// A pattern laid over a mine's normal traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Injection {
    /// The mine produces in `[from, to)`: hoist, belts and faces under
    /// load (with `power`) and, with `seal`, a shift of 45 going down, the
    /// hoist and belts running and coal trucks leaving every 15 minutes.
    Production {
        /// Start, ms.
        from: Millis,
        /// End, ms.
        to: Millis,
        /// Show it in the power feed.
        power: bool,
        /// Show it to the seals.
        seal: bool,
    },
    /// A stopped mine at work, in detail ([`Work`]).
    Work(Work),
    /// `people` more go down at `from` and come up at `to`.
    Crowd {
        /// Start, ms.
        from: Millis,
        /// End, ms.
        to: Millis,
        /// How many.
        people: u32,
    },
    /// A camera reports a fault over `[from, to)`.
    CameraFault {
        /// Camera position.
        camera: usize,
        /// Which fault.
        fault: CameraFault,
        /// Start, ms.
        from: Millis,
        /// End, ms.
        to: Millis,
    },
    /// A camera is fed a still picture over `[from, to)` (its digest does
    /// not change) and reports nothing wrong.
    StaticImage {
        /// Camera position.
        camera: usize,
        /// Start, ms.
        from: Millis,
        /// End, ms.
        to: Millis,
    },
    /// Nobody at the dispatch desk over `[from, to)`.
    Unattended {
        /// Start, ms.
        from: Millis,
        /// End, ms.
        to: Millis,
    },
    /// A camera sends nothing over `[from, to)`.
    CameraSilent {
        /// Camera position.
        camera: usize,
        /// Start, ms.
        from: Millis,
        /// End, ms.
        to: Millis,
    },
    /// The power meter sends nothing over `[from, to)`.
    PowerSilent {
        /// Start, ms.
        from: Millis,
        /// End, ms.
        to: Millis,
    },
}

/// One power sample as the meter publishes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WirePower {
    /// Event time, epoch ms.
    pub ts: Millis,
    /// Whole-mine load, kW.
    pub total_kw: f64,
    /// Load per circuit, kW.
    pub circuits: BTreeMap<&'static str, f64>,
}

/// One seal event as the seal system publishes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireSeal {
    /// Event time, epoch ms.
    pub ts: Millis,
    /// Camera id.
    pub camera: &'static str,
    /// Event name.
    pub event: &'static str,
    /// People or vehicles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Fault name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
    /// Picture digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
}

/// The power and seal traffic of one mine.
#[derive(Debug, Clone)]
pub struct MineTraffic {
    code: String,
    index: usize,
    stopped: bool,
    maintenance: f64,
    approved: u32,
    injections: Vec<Injection>,
    started: bool,
}

/// Uniform in [0, 1) from the parts.
fn unit(parts: &[&[u8]]) -> f64 {
    (stable_hash(parts) >> 11) as f64 / (1u64 << 53) as f64
}

fn beijing_hour(ts: Millis) -> i64 {
    (ts + BEIJING).rem_euclid(DAY) / HOUR
}

/// Start of the Beijing day holding `ts`, epoch ms.
fn day_start(ts: Millis) -> Millis {
    (ts + BEIJING).div_euclid(DAY) * DAY - BEIJING
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

impl MineTraffic {
    /// The traffic of mine `index` of a simulated `province`.
    pub fn new(province: &Config, index: usize) -> MineTraffic {
        let m = &province.mines[index];
        MineTraffic {
            code: m.code.clone(),
            index,
            stopped: matches!(
                m.status,
                crate::model::MineStatus::Stopped | crate::model::MineStatus::Closed
            ),
            maintenance: m
                .power
                .as_ref()
                .and_then(|p| p.maintenance_kw)
                .unwrap_or_else(|| maintenance_kw(index)),
            approved: m
                .approved_headcount
                .unwrap_or_else(|| approved_headcount(index)),
            injections: Vec::new(),
            started: false,
        }
    }

    /// The mine code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// True when the mine is declared stopped (or closed).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The approved maximum of people underground.
    pub fn approved(&self) -> u32 {
        self.approved
    }

    /// Lays a pattern over the traffic.
    pub fn inject(&mut self, i: Injection) {
        self.injections.push(i);
    }

    /// The injections laid so far.
    pub fn injections(&self) -> &[Injection] {
        &self.injections
    }

    fn noise(&self, what: &str, t: Millis) -> f64 {
        unit(&[self.code.as_bytes(), what.as_bytes(), &t.to_le_bytes()])
    }

    /// The secret work of the injections (`Production` as a full-size
    /// [`Work`]).
    fn works(&self) -> impl Iterator<Item = Work> + '_ {
        self.injections.iter().filter_map(|i| match *i {
            Injection::Work(w) => Some(w),
            Injection::Production {
                from,
                to,
                power,
                seal,
            } => Some(Work {
                from,
                to,
                load: 1.0,
                crew: if seal { 45 } else { 0 },
                truck_every_mins: if seal { 15 } else { 0 },
                machinery_seen: seal,
                power,
            }),
            _ => None,
        })
    }

    /// The load share of the metered secret work going on at `ts`.
    fn metered_work_at(&self, ts: Millis) -> Option<f64> {
        self.works()
            .filter(|w| w.power && (w.from..w.to).contains(&ts))
            .map(|w| w.load)
            .reduce(f64::max)
    }

    /// The sample the meter takes at `ts`, or `None` while it is silent
    /// (and for the one sample in a hundred it misses).
    pub fn power(&self, ts: Millis) -> Option<WirePower> {
        if self
            .injections
            .iter()
            .any(|i| matches!(i, Injection::PowerSilent { from, to } if (*from..*to).contains(&ts)))
            || self.noise("missed", ts) < 0.01
        {
            return None;
        }
        let b = self.maintenance;
        let hour = beijing_hour(ts);
        let minute_of_hour = (ts + BEIJING).rem_euclid(HOUR) / MINUTE;
        let phase = (self.index as i64 * 7) % 60;
        let night = !(6..22).contains(&hour);
        let pump_minutes = if night { 45 } else { 25 };
        let pumps_on = (minute_of_hour + phase) % 60 < pump_minutes;
        let n = |what: &str| 1.0 + 0.04 * (self.noise(what, ts / 1000) - 0.5);
        let mut ventilation = 0.55 * b * n("fan");
        // Main-fan switchover (倒机) every third day or so, by day: the
        // standby fan runs up before the running one stops.
        let day = day_start(ts);
        if self.noise("switchover-day", day) < 0.35 {
            let at =
                day + 9 * HOUR + (self.noise("switchover-at", day) * 7.0 * HOUR as f64) as Millis;
            let len =
                4 * MINUTE + (self.noise("switchover-len", day) * 4.0 * MINUTE as f64) as Millis;
            if (at..at + len).contains(&ts) {
                ventilation *= 2.0;
            }
        }
        let drainage = if pumps_on { 0.35 * b } else { 0.02 * b } * n("pump");
        let secret = self.metered_work_at(ts);
        let working = !self.stopped || secret.is_some();
        let share = if self.stopped {
            secret.unwrap_or(0.0)
        } else {
            1.0
        };
        let handover = !self.stopped && matches!(hour, 7 | 15 | 23);
        let (mut hoist, transport, face, compressor) = if working && !handover {
            (
                550.0 * (0.7 + 0.6 * self.noise("hoist", ts / 1000)) * share,
                280.0 * n("belt") * share,
                420.0 * (0.8 + 0.4 * self.noise("face", ts / 60_000)) * share,
                (30.0 + 90.0 * share) * n("air"),
            )
        } else if working {
            (
                100.0 * n("hoist"),
                80.0 * n("belt"),
                50.0 * n("face"),
                100.0 * n("air"),
            )
        } else {
            (12.0 * n("hoist"), 3.0 * n("belt"), 0.0, 30.0 * n("air"))
        };
        // A stopped mine's cage runs for its crew: 5 minutes at 08:05 and
        // 16:15.
        let of_day = (ts + BEIJING).rem_euclid(DAY);
        if self.stopped
            && secret.is_none()
            && CAGE_RUNS
                .iter()
                .any(|&s| (s..s + 5 * MINUTE).contains(&of_day))
        {
            hoist = 150.0 * n("cage");
        }
        let other = 40.0 * n("other");
        let circuits: BTreeMap<&'static str, f64> = [
            ("hoist", hoist),
            ("transport", transport),
            ("face", face),
            ("ventilation", ventilation),
            ("drainage", drainage),
            ("compressor", compressor),
            ("other", other),
        ]
        .into_iter()
        .map(|(k, v)| (k, round1(v)))
        .collect();
        let total = round1(circuits.values().sum());
        Some(WirePower {
            ts,
            total_kw: total,
            circuits,
        })
    }

    /// Event times of the meter's samples in `[from, to)`.
    pub fn power_times(&self, from: Millis, to: Millis) -> impl Iterator<Item = Millis> {
        let period = (POWER_POLLING_SECS * 1000.0) as Millis;
        let offset = (self.index as Millis * 997) % period;
        let first = (from - offset).div_euclid(period) * period + offset;
        let first = if first < from { first + period } else { first };
        (0..)
            .map(move |k| first + k * period)
            .take_while(move |&t| t < to)
    }

    /// People underground at `ts` in truth (what a perfect count shows):
    /// the shifts or the maintenance crew and patrol, plus the injected
    /// crowds and secret crews.
    pub fn people_underground(&self, ts: Millis) -> u32 {
        let mut n: i64 = 0;
        let today = day_start(ts);
        if self.stopped {
            let at = |h: Millis, m: Millis| today + h * HOUR + m * MINUTE;
            n += i64::from(passed(8, at(8, 10), MINUTE, ts));
            n -= i64::from(passed(8, at(16, 20), MINUTE, ts));
            n += i64::from(passed(2, at(20, 0), MINUTE, ts));
            n -= i64::from(passed(2, at(21, 0), MINUTE, ts));
        } else {
            // Each shift goes down in the 40 minutes before its change
            // and comes up after the next change; shifts wholly before
            // `ts` add nothing.
            let mut change = today - 16 * HOUR;
            while change <= today + DAY {
                let size = self.shift_size(change);
                n += i64::from(passed(size, change - 40 * MINUTE, 30 * MINUTE, ts));
                n -= i64::from(passed(
                    size,
                    change + 8 * HOUR + 10 * MINUTE,
                    30 * MINUTE,
                    ts,
                ));
                change += 8 * HOUR;
            }
        }
        for i in &self.injections {
            if let Injection::Crowd { from, to, people } = *i {
                n += i64::from(passed(people, from, 2 * MINUTE, ts));
                n -= i64::from(passed(people, to, 2 * MINUTE, ts));
            }
        }
        for w in self.works() {
            n += i64::from(passed(w.crew, w.from, 10 * MINUTE, ts));
            n -= i64::from(passed(w.crew, w.to, 10 * MINUTE, ts));
        }
        n.max(0) as u32
    }

    /// Size of the shift that goes down for the change at `change` (ms).
    fn shift_size(&self, change: Millis) -> u32 {
        let base = (f64::from(self.approved) * 0.42).round() as u32;
        let var = (self.noise("shift", change / HOUR) * 9.0) as u32;
        (base + var).saturating_sub(4)
    }

    /// Every seal event of `[from, to)`, in event-time order.
    pub fn seal(&mut self, from: Millis, to: Millis) -> Vec<WireSeal> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(self.event(MAIN, from, "headcount", Some(self.people_underground(from))));
            if !self.stopped {
                out.push(self.event(MAIN, from, "hoist_running", None));
                out.push(self.event(MAIN, from, "belt_running", None));
            }
        }
        self.heartbeats(from, to, &mut out);
        let mut seen = Vec::new();
        // A day's events reach from 40 minutes before it (the descent for
        // its 00:00 change) to 04:00 after it (night glare).
        let mut day = day_start(from) - DAY;
        while day - HOUR < to {
            self.day_events(day, from, to, &mut seen);
            day += DAY;
        }
        self.injected_events(from, to, &mut seen);
        for e in &mut seen {
            // One group in twenty is miscounted by one.
            if matches!(e.event, "people_in" | "people_out")
                && let Some(c) = e.count.as_mut()
            {
                let u = self.noise(e.camera, e.ts ^ 0x6d69_7363);
                if u < 0.025 {
                    *c += 1;
                } else if u < 0.05 {
                    *c = c.saturating_sub(1);
                }
            }
        }
        // A camera that cannot see reports nothing of what happens in
        // front of it (it still reports its own faults).
        seen.retain(|e| {
            matches!(e.event, "fault" | "fault_cleared") || !self.blind(e.camera, e.ts)
        });
        out.extend(seen);
        out.retain(|e| !self.silent(e.camera, e.ts));
        out.sort_by_key(|e| e.ts);
        out
    }

    fn event(
        &self,
        camera: usize,
        ts: Millis,
        event: &'static str,
        count: Option<u32>,
    ) -> WireSeal {
        WireSeal {
            ts,
            camera: CAMERAS[camera].0,
            event,
            count,
            fault: None,
            frame: None,
        }
    }

    fn silent(&self, camera: &str, ts: Millis) -> bool {
        self.injections.iter().any(|i| {
            matches!(i, Injection::CameraSilent { camera: c, from, to }
                if CAMERAS[*c].0 == camera && (*from..*to).contains(&ts))
        })
    }

    /// True while camera `camera` has an injected fault or still picture.
    fn blind(&self, camera: &str, ts: Millis) -> bool {
        self.injections.iter().any(|i| match *i {
            Injection::CameraFault {
                camera: c,
                from,
                to,
                ..
            }
            | Injection::StaticImage {
                camera: c,
                from,
                to,
            } => CAMERAS[c].0 == camera && (from..to).contains(&ts),
            _ => false,
        })
    }

    fn heartbeats(&self, from: Millis, to: Millis, out: &mut Vec<WireSeal>) {
        let period = (SEAL_HEARTBEAT_SECS * 1000.0) as Millis;
        for cam in 0..CAMERAS.len() {
            let offset = ((self.index * 5 + cam) as Millis * 3_001) % period;
            let mut t = (from - offset).div_euclid(period) * period + offset;
            if t < from {
                t += period;
            }
            while t < to {
                // A still picture fed in, or a frozen one: the digest
                // stays what it was when it began.
                let still = self.injections.iter().find_map(|i| match *i {
                    Injection::StaticImage {
                        camera,
                        from: a,
                        to: b,
                    }
                    | Injection::CameraFault {
                        camera,
                        fault: CameraFault::Frozen,
                        from: a,
                        to: b,
                    } if camera == cam && (a..b).contains(&t) => Some(a),
                    _ => None,
                });
                let digest = match still {
                    Some(since) => stable_hash(&[
                        self.code.as_bytes(),
                        &[cam as u8],
                        b"still",
                        &since.to_le_bytes(),
                    ]),
                    None => stable_hash(&[self.code.as_bytes(), &[cam as u8], &t.to_le_bytes()]),
                };
                let mut e = self.event(cam, t, "heartbeat", None);
                e.frame = Some(format!("{digest:016x}"));
                out.push(e);
                t += period;
            }
        }
    }

    /// Groups of people through a shaft: `n` people in groups of about 6,
    /// spread over `[start, start + span)`.
    fn groups(
        &self,
        n: u32,
        start: Millis,
        span: Millis,
        event: &'static str,
        window: (Millis, Millis),
        out: &mut Vec<WireSeal>,
    ) {
        for (j, t, size) in group_times(n, start, span) {
            if (window.0..window.1).contains(&t) && size > 0 {
                let cam = if j % 2 == 0 { MAIN } else { AUX };
                out.push(self.event(cam, t, event, Some(size)));
            }
        }
    }

    fn day_events(&self, day: Millis, from: Millis, to: Millis, out: &mut Vec<WireSeal>) {
        let w = (from, to);
        let inside = |t: Millis| (from..to).contains(&t);
        let at = |h: Millis, m: Millis| day + h * HOUR + m * MINUTE;
        if self.stopped {
            self.groups(8, at(8, 10), MINUTE, "people_in", w, out);
            self.groups(8, at(16, 20), MINUTE, "people_out", w, out);
            self.groups(2, at(20, 0), MINUTE, "people_in", w, out);
            self.groups(2, at(21, 0), MINUTE, "people_out", w, out);
            for (t, e) in [(at(10, 0), "vehicle_in"), (at(10, 40), "vehicle_out")] {
                if inside(t) {
                    out.push(self.event(GATE, t, e, Some(1)));
                }
            }
            // The seal AI sees the cage run for the crew.
            for s in CAGE_RUNS {
                let (a, b) = (day + s, day + s + 5 * MINUTE);
                if self.works().any(|w| w.from < b && w.to > a) {
                    continue;
                }
                for (t, e) in [(a, "hoist_running"), (b, "hoist_stopped")] {
                    if inside(t) {
                        out.push(self.event(MAIN, t, e, None));
                    }
                }
            }
        } else {
            for h in [0, 8, 16] {
                let change = at(h, 0);
                self.groups(
                    self.shift_size(change),
                    change - 40 * MINUTE,
                    30 * MINUTE,
                    "people_in",
                    w,
                    out,
                );
                let last = change - 8 * HOUR;
                self.groups(
                    self.shift_size(last),
                    change + 10 * MINUTE,
                    30 * MINUTE,
                    "people_out",
                    w,
                    out,
                );
            }
            let mut t = at(7, 0);
            while t < at(19, 0) {
                if inside(t) {
                    out.push(self.event(GATE, t, "vehicle_out", Some(1)));
                }
                t += 12 * MINUTE;
            }
        }
        // The seal system reconciles its count with personnel location.
        let t = at(4, 0);
        if inside(t) {
            out.push(self.event(MAIN, t, "headcount", Some(self.people_underground(t))));
        }
        // One short signal glitch a day on one camera.
        let cam = (self.noise("glitch-cam", day / DAY) * CAMERAS.len() as f64) as usize;
        let t = day + (self.noise("glitch", day / DAY) * (DAY - MINUTE) as f64) as Millis;
        if inside(t) {
            let mut e = self.event(cam, t, "fault", None);
            e.fault = Some(CameraFault::LostSignal.key());
            out.push(e);
        }
        if inside(t + 30_000) {
            out.push(self.event(cam, t + 30_000, "fault_cleared", None));
        }
        // Headlights in the vehicle-gate camera at night: a few seconds
        // too bright.
        let t = day + 19 * HOUR + (self.noise("glare", day / DAY) * 9.0 * HOUR as f64) as Millis;
        let len = 5_000 + (self.noise("glare-len", day / DAY) * 35_000.0) as Millis;
        if inside(t) {
            let mut e = self.event(GATE, t, "fault", None);
            e.fault = Some(CameraFault::TooBright.key());
            out.push(e);
        }
        if inside(t + len) {
            out.push(self.event(GATE, t + len, "fault_cleared", None));
        }
    }

    fn injected_events(&self, from: Millis, to: Millis, out: &mut Vec<WireSeal>) {
        let w = (from, to);
        let inside = |t: Millis| (from..to).contains(&t);
        for wk in self.works() {
            let (a, b) = (wk.from, wk.to);
            self.groups(wk.crew, a, 10 * MINUTE, "people_in", w, out);
            self.groups(wk.crew, b, 10 * MINUTE, "people_out", w, out);
            if wk.machinery_seen {
                for (t, e) in [
                    (a + 2 * MINUTE, "hoist_running"),
                    (a + 3 * MINUTE, "belt_running"),
                    (b, "hoist_stopped"),
                    (b, "belt_stopped"),
                ] {
                    if inside(t) {
                        out.push(self.event(MAIN, t, e, None));
                    }
                }
            }
            if wk.truck_every_mins > 0 {
                let every = Millis::from(wk.truck_every_mins) * MINUTE;
                let mut t = a + 5 * MINUTE;
                while t < b {
                    if inside(t) {
                        out.push(self.event(GATE, t, "vehicle_out", Some(1)));
                    }
                    t += every;
                }
            }
        }
        for i in &self.injections {
            match *i {
                Injection::Crowd {
                    from: a,
                    to: b,
                    people,
                } => {
                    self.groups(people, a, 2 * MINUTE, "people_in", w, out);
                    self.groups(people, b, 2 * MINUTE, "people_out", w, out);
                }
                Injection::CameraFault {
                    camera,
                    fault,
                    from: a,
                    to: b,
                } => {
                    if inside(a) {
                        let mut e = self.event(camera, a, "fault", None);
                        e.fault = Some(fault.key());
                        out.push(e);
                    }
                    if inside(b) {
                        out.push(self.event(camera, b, "fault_cleared", None));
                    }
                }
                Injection::Unattended { from: a, to: b } => {
                    if inside(a) {
                        out.push(self.event(DISPATCH, a, "dispatch_unattended", None));
                    }
                    if inside(b) {
                        out.push(self.event(DISPATCH, b, "dispatch_attended", None));
                    }
                }
                _ => {}
            }
        }
    }
}

/// The cage runs of a stopped mine's crew, ms after Beijing midnight.
const CAGE_RUNS: [Millis; 2] = [8 * HOUR + 5 * MINUTE, 16 * HOUR + 15 * MINUTE];

/// The groups `n` people pass a shaft in over `[start, start + span)`:
/// (group number, time, size), about 6 a group.
fn group_times(n: u32, start: Millis, span: Millis) -> impl Iterator<Item = (u32, Millis, u32)> {
    let k = n.div_ceil(6).max(1);
    let mut left = n;
    (0..k).map(move |j| {
        let size = left.min(n.div_ceil(k));
        left -= size;
        (j, start + span * Millis::from(j) / Millis::from(k), size)
    })
}

/// How many of `n` people passing over `[start, start + span)` have
/// passed by `ts` (inclusive).
fn passed(n: u32, start: Millis, span: Millis, ts: Millis) -> u32 {
    group_times(n, start, span)
        .filter(|&(_, t, _)| t <= ts)
        .map(|(_, _, size)| size)
        .sum()
}

/// The power message of one sample.
pub fn power_message(samples: &[WirePower]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Msg<'a> {
        samples: &'a [WirePower],
    }
    serde_json::to_vec(&Msg { samples }).unwrap_or_default()
}

/// The seal message of some events.
pub fn seal_message(events: &[WireSeal]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Msg<'a> {
        events: &'a [WireSeal],
    }
    serde_json::to_vec(&Msg { events }).unwrap_or_default()
}

/// The patterns the demo lays over cycle `cycle` (of `cycle_ms`, starting
/// at `start`): a stopped mine at work, a crowd underground, an obstructed
/// camera, a still picture, an empty dispatch desk and a silent power
/// meter, each on a mine of its own. Returns (mine index, injection).
pub fn demo_injections(
    province: &Config,
    cycle: u64,
    start: Millis,
    cycle_ms: Millis,
) -> Vec<(usize, Injection)> {
    let n = province.mines.len();
    if n == 0 {
        return Vec::new();
    }
    let s = |secs: i64| start + secs * 1000;
    let stopped: Vec<usize> = (0..n).filter(|&i| is_stopped(i)).collect();
    let producing: Vec<usize> = (0..n).filter(|&i| !is_stopped(i)).collect();
    // Distinct mines for distinct roles while there are enough.
    let pick = |role: usize| producing[(role + 1 + cycle as usize * 7) % producing.len()];
    let mut v = Vec::new();
    if !stopped.is_empty() {
        let m = stopped[cycle as usize % stopped.len()];
        v.push((
            m,
            Injection::Production {
                from: s(40),
                to: s(150),
                power: true,
                seal: true,
            },
        ));
    }
    if producing.is_empty() {
        return v;
    }
    let crowd = pick(0);
    v.push((
        crowd,
        Injection::Crowd {
            from: s(20),
            to: s(110),
            people: approved_headcount(crowd),
        },
    ));
    v.push((
        pick(1),
        Injection::CameraFault {
            camera: MAIN,
            fault: CameraFault::Obstructed,
            from: s(30),
            to: s(120),
        },
    ));
    v.push((
        pick(2),
        Injection::StaticImage {
            camera: AUX,
            from: s(10),
            to: s(cycle_ms / 1000 - 10),
        },
    ));
    v.push((
        pick(3),
        Injection::Unattended {
            from: s(60),
            to: s(130),
        },
    ));
    v.push((
        pick(4),
        Injection::PowerSilent {
            from: s(20),
            to: s(110),
        },
    ));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IngestConfig, Registry};
    use crate::detect::{MineLink, MinePower, MineSeal};
    use crate::ingest::Decoder;
    use crate::model::{Finding, MineStatus};
    use crate::simulators::{ProvinceSpec, province, with_feeds};
    use std::sync::Arc;

    /// 2026-11-23T00:00:00+08:00.
    const T0: Millis = 1_795_392_000_000 - 8 * HOUR;

    fn setup() -> (Config, Arc<Registry>, Decoder) {
        let p = with_feeds(province(ProvinceSpec {
            mines: 10,
            points: 4,
            polling_secs: 5.0,
        }));
        let reg = Arc::new(Registry::build(&p, 1));
        let ingest = IngestConfig {
            max_past_secs: 400 * 86_400,
            ..IngestConfig::default()
        };
        let dec = Decoder::new(reg.clone(), &ingest, 1 << 20);
        (p, reg, dec)
    }

    /// Runs `days` of mine `m`'s traffic through the real decoder and the
    /// power and seal detectors; returns the findings.
    fn run(m: usize, days: i64, traffic: &mut MineTraffic) -> Vec<Finding> {
        let (_, reg, dec) = setup();
        let meta = &reg.mines[m];
        let cfg = &reg.activity;
        let mut power = MinePower::new(m as u32, T0);
        let mut seal = MineSeal::new(m as u32, meta.seal.cameras.len(), T0);
        let mut out = Vec::new();
        let step = 5 * MINUTE;
        let mut t = T0;
        while t < T0 + days * DAY {
            let samples: Vec<WirePower> = traffic
                .power_times(t, t + step)
                .filter_map(|ts| traffic.power(ts))
                .collect();
            let arrival = t + step + 1000;
            if !samples.is_empty() {
                let d = dec.decode_power(traffic.code(), &power_message(&samples), arrival);
                assert!(d.rejects.is_empty(), "{:?}", d.rejects);
                for s in &d.records {
                    power.apply(cfg, &meta.power, meta.status, s, arrival, &mut out);
                }
            }
            let events = traffic.seal(t, t + step);
            if !events.is_empty() {
                let d = dec.decode_seal(traffic.code(), &seal_message(&events), arrival);
                assert!(d.rejects.is_empty(), "{:?}", d.rejects);
                for e in &d.records {
                    seal.apply(cfg, meta, e, arrival, &mut out);
                }
            }
            power.on_tick(
                &meta.power,
                meta.status,
                arrival,
                MineLink::up(arrival),
                &mut out,
            );
            seal.on_tick(meta, arrival, MineLink::up(arrival), &mut out);
            t += step;
        }
        out
    }

    #[test]
    fn normal_days_are_quiet_at_producing_and_stopped_mines() {
        let (p, reg, _) = setup();
        assert_eq!(reg.mines[9].status, MineStatus::Stopped);
        for m in [0, 4, 9] {
            let mut traffic = MineTraffic::new(&p, m);
            let out = run(m, 3, &mut traffic);
            assert!(out.is_empty(), "mine {m}: {out:?}");
        }
    }

    #[test]
    fn injected_patterns_are_seen() {
        let (p, _, _) = setup();
        let mut traffic = MineTraffic::new(&p, 9);
        traffic.inject(Injection::Production {
            from: T0 + 22 * HOUR,
            to: T0 + 29 * HOUR,
            power: true,
            seal: true,
        });
        traffic.inject(Injection::StaticImage {
            camera: 2,
            from: T0 + 30 * HOUR,
            to: T0 + 32 * HOUR,
        });
        let out = run(9, 2, &mut traffic);
        let mut reasons: Vec<&str> = out
            .iter()
            .filter_map(|f| match f {
                Finding::ActivityRaised { reason, .. } => Some(reason.key()),
                _ => None,
            })
            .collect();
        reasons.sort_unstable();
        assert_eq!(
            reasons,
            [
                "night_profile",
                "power_above_baseline",
                "production_load",
                "seal_hoist",
                "seal_people",
                "seal_vehicles",
                "static_image"
            ]
        );
    }

    #[test]
    fn the_seal_count_follows_the_people_underground() {
        let (p, reg, dec) = setup();
        let cfg = &reg.activity;
        for m in [0, 3, 9] {
            let meta = &reg.mines[m];
            let mut traffic = MineTraffic::new(&p, m);
            traffic.inject(Injection::Crowd {
                from: T0 + 30 * HOUR,
                to: T0 + 33 * HOUR,
                people: 40,
            });
            let mut seal = MineSeal::new(m as u32, meta.seal.cameras.len(), T0);
            let mut out = Vec::new();
            let mut worst = 0;
            let mut peak = 0;
            // Start mid-shift (05:00 Beijing), check every 10 minutes.
            let mut t = T0 + 5 * HOUR;
            while t < T0 + 53 * HOUR {
                let events = traffic.seal(t, t + 10 * MINUTE);
                let d = dec.decode_seal(traffic.code(), &seal_message(&events), t + 10 * MINUTE);
                for e in &d.records {
                    seal.apply(cfg, meta, e, t + 10 * MINUTE, &mut out);
                }
                t += 10 * MINUTE;
                let truth = i64::from(traffic.people_underground(t - 1));
                worst = worst.max((seal.headcount() - truth).abs());
                peak = peak.max(truth);
            }
            // Miscounts of one now and then, reconciled at 04:00.
            assert!(worst <= 4, "mine {m}: off by {worst}");
            assert!(peak >= 40, "mine {m}: the crowd shows ({peak})");
        }
    }

    #[test]
    fn traffic_does_not_depend_on_the_step() {
        let (p, _, _) = setup();
        let mut a = MineTraffic::new(&p, 2);
        let mut b = MineTraffic::new(&p, 2);
        // Across midnight: the next day's first shift goes down before it.
        let (from, to) = (T0 + 22 * HOUR, T0 + 26 * HOUR);
        let coarse = a.seal(from, to);
        let mut fine = Vec::new();
        let mut t = from;
        while t < to {
            fine.extend(b.seal(t, (t + 7_000).min(to)));
            t += 7_000;
        }
        assert_eq!(coarse.len(), fine.len());
        if let Some(i) = (0..coarse.len()).find(|&i| coarse[i] != fine[i]) {
            panic!("differ at {i}: {:?} vs {:?}", coarse[i], fine[i]);
        }
        assert_eq!(a.power(T0 + 12_345), b.power(T0 + 12_345));
    }

    #[test]
    fn the_demo_lays_each_pattern_once_a_cycle() {
        let (p, _, _) = setup();
        let v = demo_injections(&p, 0, T0, 180_000);
        assert_eq!(v.len(), 6);
        assert!(matches!(v[0], (9, Injection::Production { .. })));
        let mines: std::collections::HashSet<usize> = v.iter().map(|x| x.0).collect();
        assert_eq!(mines.len(), 6, "one mine each: {v:?}");
    }
}
