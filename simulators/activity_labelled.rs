//! Labelled scenarios for scoring the electricity-use and electronic-seal
//! detectors: days of a simulated province's power and seal traffic
//! ([`MineTraffic`]) with one family of patterns injected at several mines
//! and times, generated offline as the JSON messages the mines publish
//! (`mines/{mine}/telemetry`, `/power`, `/seal`) with their arrival times,
//! and ground-truth labels `{mine, point, detector, from, to}` whose
//! `point` is the alert's subject code (`""` for the mine, `{mine}:power`,
//! `{mine}:seal:{camera}`; see [`crate::alert::subject_code`]).
//!
//! The province: every mine of [`province`] keeps its meter, its five
//! cameras and its approved headcount; its monitoring system is reduced to
//! the main-fan switch uploading every 30 s (so the mine is alive and its
//! uplink outages show); every other mine is declared stopped, so stopped
//! mines get as many mine-days as producing ones.
//!
//! The links, as real ones behave:
//! - every message arrives 1–5 s after its event time, in order per feed
//!   (one connection each: a late message holds up the ones behind it);
//! - the mine's uplink (monitoring and seals) fails for 5 minutes every
//!   6 hours; what was sent meanwhile arrives in a burst at its end; the
//!   power data come from the grid's metering over a link of their own;
//! - each link stalls for 5–20 s about once in four hours, then delivers
//!   what it held;
//! - one message in 300 is delivered twice, the copy 2–30 s after the
//!   first (a QoS 1 redelivery).
//!
//! The injected patterns are drawn at random (fixed seed) over sizes,
//! durations and times of day; see each scenario in [`generate`].

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::Config;
use crate::model::{CameraFault, Millis, MineStatus, rfc3339, stable_hash};
use crate::simulators::activity::{Injection, MineTraffic, Work, power_message, seal_message};
use crate::simulators::labelled::{Label, START_MS, Size};
use crate::simulators::province::{CAMERAS, POINT_TEMPLATE, ProvinceSpec, province, with_feeds};

/// The labelled activity scenarios, `activity_normal` first.
pub const ACTIVITY_SCENARIOS: [&str; 8] = [
    "activity_normal",
    "stopped_producing",
    "overmanning",
    "camera_faults",
    "static_image",
    "dispatch_unattended",
    "seal_silent",
    "power_silent",
];

/// Upload period of the monitoring system (the main-fan switch), seconds.
pub const MONITOR_POLL_SECS: f64 = 30.0;

const SECOND: Millis = 1000;
const MINUTE: Millis = 60 * SECOND;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;
const BEIJING: Millis = 8 * HOUR;

/// Camera positions in [`CAMERAS`].
const DISPATCH: usize = 4;

/// Which feed a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feed {
    /// `mines/{mine}/telemetry`: monitoring readings.
    Telemetry,
    /// `mines/{mine}/power`: meter samples.
    Power,
    /// `mines/{mine}/seal`: seal events.
    Seal,
}

impl Feed {
    /// The last part of the feed's topic.
    pub fn topic_suffix(self) -> &'static str {
        match self {
            Feed::Telemetry => "telemetry",
            Feed::Power => "power",
            Feed::Seal => "seal",
        }
    }
}

/// One message as it reached minewatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// When it arrived (processing time), ms.
    pub arrival: Millis,
    /// Index of its mine in the scenario's province.
    pub mine: usize,
    /// Its feed.
    pub feed: Feed,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// A generated activity scenario.
pub struct ActivityGenerated {
    /// Scenario name.
    pub name: String,
    /// The simulated province.
    pub province: Config,
    /// Messages in arrival order.
    pub messages: Vec<Message>,
    /// Ground truth.
    pub labels: Vec<Label>,
    /// Mines × days of traffic.
    pub mine_days: f64,
}

/// The size `minewatch score` uses for an activity scenario, `None` for
/// another name: `activity_normal` 12 mines × 7 days, `stopped_producing`
/// 12 × 6 days, the others 8 × 4 days.
pub fn standard_size(name: &str) -> Option<Size> {
    let (mines, days) = match name {
        "activity_normal" => (12, 7.0),
        "stopped_producing" => (12, 6.0),
        n if ACTIVITY_SCENARIOS.contains(&n) => (8, 4.0),
        _ => return None,
    };
    Some(Size {
        mines,
        hours: days * 24.0,
    })
}

/// True for the mines an activity province declares stopped.
pub fn is_stopped_here(i: usize) -> bool {
    i % 2 == 1
}

/// The province of the activity scenarios.
pub fn activity_province(mines: usize) -> Config {
    let mut c = with_feeds(province(ProvinceSpec {
        mines,
        points: POINT_TEMPLATE.len(),
        polling_secs: MONITOR_POLL_SECS,
    }));
    for (i, m) in c.mines.iter_mut().enumerate() {
        // The main-fan switch (主要通风机) stands for the monitoring system.
        m.points.retain(|p| p.sensor == "1010");
        m.status = if is_stopped_here(i) {
            MineStatus::Stopped
        } else {
            MineStatus::Producing
        };
    }
    c
}

/// What a scenario lays over the traffic besides [`Injection`]s: link
/// failures whose messages are held and delivered at their end.
struct Plan {
    labels: Vec<Label>,
    /// (mine, feed, from, to): the feed's link is down, messages held.
    held: Vec<(usize, Feed, Millis, Millis)>,
}

impl Plan {
    fn label(&mut self, t: &MineTraffic, point: String, detector: &str, from: Millis, to: Millis) {
        self.labels.push(Label {
            mine: t.code().to_string(),
            point,
            detector: detector.into(),
            from: rfc3339(from),
            to: rfc3339(to),
            from_ms: from,
            to_ms: to,
        });
    }
}

fn camera_code(t: &MineTraffic, camera: usize) -> String {
    format!("{}:seal:{}", t.code(), CAMERAS[camera].0)
}

fn power_code(t: &MineTraffic) -> String {
    format!("{}:power", t.code())
}

/// A duration drawn log-uniformly from `[lo, hi]`.
fn log_uniform(rng: &mut SmallRng, lo: Millis, hi: Millis) -> Millis {
    let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
    rng.random_range(a..=b).exp() as Millis
}

/// `k` disjoint episodes in `[from, to)`, one in each of `k` equal slots,
/// lasting log-uniformly `lo..=hi` (at most 80 % of a slot).
fn slots(
    rng: &mut SmallRng,
    from: Millis,
    to: Millis,
    k: usize,
    lo: Millis,
    hi: Millis,
) -> Vec<(Millis, Millis)> {
    let slot = (to - from) / k.max(1) as Millis;
    (0..k)
        .map(|i| {
            let len = log_uniform(rng, lo, hi).min(slot * 4 / 5);
            let start = from + i as Millis * slot + rng.random_range(0..=(slot - len).max(0));
            (start, start + len)
        })
        .collect()
}

/// Start of the Beijing day holding `ts`.
fn day_start(ts: Millis) -> Millis {
    (ts + BEIJING).div_euclid(DAY) * DAY - BEIJING
}

/// Generates scenario `name`; `None` for an unknown name.
pub fn generate(name: &str, size: Size, seed: u64) -> Option<ActivityGenerated> {
    if !ACTIVITY_SCENARIOS.contains(&name) {
        return None;
    }
    let province = activity_province(size.mines);
    let start = START_MS;
    let end = start + (size.hours * HOUR as f64) as Millis;
    let mut traffic: Vec<MineTraffic> = (0..size.mines)
        .map(|i| MineTraffic::new(&province, i))
        .collect();
    let mut rng = SmallRng::seed_from_u64(seed ^ stable_hash(&[name.as_bytes()]));
    let mut plan = Plan {
        labels: Vec::new(),
        held: Vec::new(),
    };
    inject(name, &mut traffic, &mut plan, &mut rng, start, end);
    let mut messages = Vec::new();
    for (m, t) in traffic.iter_mut().enumerate() {
        deliver(m, t, &province, &plan, &mut rng, start, end, &mut messages);
    }
    messages.sort_by_key(|msg| (msg.arrival, msg.mine, msg.feed));
    plan.labels.sort_by(|a, b| {
        (a.from_ms, &a.mine, &a.point, &a.detector).cmp(&(
            b.from_ms,
            &b.mine,
            &b.point,
            &b.detector,
        ))
    });
    Some(ActivityGenerated {
        name: name.into(),
        province,
        messages,
        labels: plan.labels,
        mine_days: size.mines as f64 * size.hours / 24.0,
    })
}

/// Lays scenario `name`'s patterns over the traffic and labels them.
fn inject(
    name: &str,
    traffic: &mut [MineTraffic],
    plan: &mut Plan,
    rng: &mut SmallRng,
    start: Millis,
    end: Millis,
) {
    // Patterns start after an hour of traffic and end an hour before the
    // scenario does.
    let (from, to) = (start + HOUR, end - HOUR);
    let days = ((end - start) / DAY).max(1) as usize;
    match name {
        "stopped_producing" => {
            for t in traffic.iter_mut().filter(|t| t.is_stopped()) {
                // On about half the days the mine works, by day or by night,
                // never both on one day.
                for d in 0..days {
                    if !rng.random_bool(0.5) {
                        continue;
                    }
                    let day = day_start(start) + d as Millis * DAY;
                    let night = rng.random_bool(0.5);
                    let (a, b) = if night {
                        let a = day + 19 * HOUR + rng.random_range(0..=9 * 30) * MINUTE;
                        let b = (a + rng.random_range(3 * 60..=8 * 60) * MINUTE)
                            .min(day + DAY + 7 * HOUR);
                        (a, b)
                    } else {
                        let a = day + 7 * HOUR + rng.random_range(0..=6 * 30) * MINUTE;
                        let b =
                            (a + rng.random_range(3 * 60..=9 * 60) * MINUTE).min(day + 19 * HOUR);
                        (a, b)
                    };
                    if a < from || b > to {
                        continue;
                    }
                    let full = rng.random_bool(0.7);
                    let power = rng.random_bool(0.85);
                    let crew = if !power || rng.random_bool(0.85) {
                        rng.random_range(20..=60)
                    } else {
                        0
                    };
                    let w = Work {
                        from: a,
                        to: b,
                        load: if full {
                            rng.random_range(0.7..1.2)
                        } else {
                            rng.random_range(0.3..0.7)
                        },
                        crew,
                        truck_every_mins: if rng.random_bool(0.6) {
                            rng.random_range(8..=25)
                        } else {
                            0
                        },
                        machinery_seen: rng.random_bool(0.7),
                        power,
                    };
                    t.inject(Injection::Work(w));
                    if power {
                        plan.label(t, String::new(), "power_above_baseline", a, b);
                        plan.label(t, String::new(), "production_load", a, b);
                        if night {
                            plan.label(t, String::new(), "night_profile", a, b);
                        }
                    }
                    if crew > 0 {
                        plan.label(t, String::new(), "seal_people", a, b);
                    }
                    if w.truck_every_mins > 0 {
                        plan.label(t, String::new(), "seal_vehicles", a + 5 * MINUTE, b);
                    }
                    if w.machinery_seen {
                        plan.label(t, String::new(), "seal_hoist", a + 2 * MINUTE, b);
                    }
                }
            }
        }
        "overmanning" => {
            for t in traffic.iter_mut().filter(|t| !t.is_stopped()) {
                for (a, b) in slots(rng, from, to, days, 30 * MINUTE, 5 * HOUR) {
                    // Enough people go down to keep the mine 2–30 % over its
                    // approved maximum while they are down, whatever the
                    // shifts do meanwhile.
                    let approved = t.approved();
                    let excess = (f64::from(approved) * rng.random_range(0.02..0.30)).ceil() as u32;
                    let fewest = (a + 2 * MINUTE..b)
                        .step_by(MINUTE as usize)
                        .map(|ts| t.people_underground(ts))
                        .min()
                        .unwrap_or(0);
                    let people = (approved + excess).saturating_sub(fewest);
                    t.inject(Injection::Crowd {
                        from: a,
                        to: b,
                        people,
                    });
                    // Label what the truth shows: the spans over approved.
                    let mut over: Option<Millis> = None;
                    let mut ts = a;
                    while ts <= b + 3 * MINUTE {
                        let is_over = t.people_underground(ts) > approved;
                        match (over, is_over) {
                            (None, true) => over = Some(ts),
                            (Some(s), false) => {
                                plan.label(t, String::new(), "overmanning", s, ts);
                                over = None;
                            }
                            _ => {}
                        }
                        ts += 30 * SECOND;
                    }
                    if let Some(s) = over {
                        plan.label(t, String::new(), "overmanning", s, ts);
                    }
                }
            }
        }
        "camera_faults" => {
            // Every fault five times, each on a camera and at a time of its
            // own; one camera's faults never overlap.
            let n = traffic.len();
            let mut busy: Vec<Vec<(Millis, Millis)>> = vec![Vec::new(); n * CAMERAS.len()];
            for _ in 0..5 {
                for fault in CameraFault::ALL {
                    for _attempt in 0..20 {
                        let m = rng.random_range(0..n);
                        let cam = rng.random_range(0..CAMERAS.len());
                        let len = log_uniform(rng, 3 * MINUTE, 8 * HOUR);
                        let a = rng.random_range(from..to - len);
                        // Darkness and glare keep to the hours they happen in.
                        let a = match fault {
                            CameraFault::TooDark => align_hour(a, 18, 12),
                            CameraFault::TooBright => align_hour(a, 7, 10),
                            _ => a,
                        };
                        let b = a + len;
                        let taken = &mut busy[m * CAMERAS.len() + cam];
                        if b > to
                            || taken
                                .iter()
                                .any(|&(x, y)| a < y + 10 * MINUTE && b + 10 * MINUTE > x)
                        {
                            continue;
                        }
                        taken.push((a, b));
                        let t = &mut traffic[m];
                        t.inject(Injection::CameraFault {
                            camera: cam,
                            fault,
                            from: a,
                            to: b,
                        });
                        let code = camera_code(t, cam);
                        plan.label(t, code, fault.activity().key(), a, b);
                        break;
                    }
                }
            }
        }
        "static_image" => {
            for t in traffic.iter_mut() {
                for (a, b) in slots(rng, from, to, days, 15 * MINUTE, 10 * HOUR) {
                    let cam = rng.random_range(0..CAMERAS.len());
                    t.inject(Injection::StaticImage {
                        camera: cam,
                        from: a,
                        to: b,
                    });
                    let code = camera_code(t, cam);
                    plan.label(t, code, "static_image", a, b);
                }
            }
        }
        "dispatch_unattended" => {
            for t in traffic.iter_mut() {
                for (a, b) in slots(rng, from, to, days, 10 * MINUTE, 8 * HOUR) {
                    t.inject(Injection::Unattended { from: a, to: b });
                    let code = camera_code(t, DISPATCH);
                    plan.label(t, code, "dispatch_unattended", a, b);
                }
            }
        }
        "seal_silent" => {
            for (m, t) in traffic.iter_mut().enumerate() {
                for (i, (a, b)) in slots(rng, from, to, days, 2 * MINUTE, 6 * HOUR)
                    .into_iter()
                    .enumerate()
                {
                    if i == 0 && m % 2 == 0 {
                        // The seal platform's own link is down: every camera
                        // is silent, its events arrive at the end.
                        plan.held.push((m, Feed::Seal, a, b));
                        for cam in 0..CAMERAS.len() {
                            let code = camera_code(t, cam);
                            plan.label(t, code, "seal_silent", a, b);
                        }
                    } else {
                        let cam = rng.random_range(0..CAMERAS.len());
                        t.inject(Injection::CameraSilent {
                            camera: cam,
                            from: a,
                            to: b,
                        });
                        let code = camera_code(t, cam);
                        plan.label(t, code, "seal_silent", a, b);
                    }
                }
            }
        }
        "power_silent" => {
            for (m, t) in traffic.iter_mut().enumerate() {
                for (a, b) in slots(rng, from, to, days, 2 * MINUTE, 6 * HOUR) {
                    if rng.random_bool(0.5) {
                        t.inject(Injection::PowerSilent { from: a, to: b });
                    } else {
                        // The link is down; the meter's buffer arrives at
                        // the end.
                        plan.held.push((m, Feed::Power, a, b));
                    }
                    let code = power_code(t);
                    plan.label(t, code, "power_silent", a, b);
                }
            }
        }
        _ => {}
    }
}

/// Moves `ts` into the Beijing hours `[from_h, from_h + span_h)` of its day
/// (or the next), keeping the minute offset.
fn align_hour(ts: Millis, from_h: i64, span_h: i64) -> Millis {
    let day = day_start(ts);
    let of_day = ts - day;
    let lo = from_h * HOUR;
    if of_day >= lo && of_day < lo + span_h * HOUR {
        ts
    } else if of_day < lo {
        day + lo + of_day % (span_h * HOUR / 2)
    } else {
        day + DAY + lo + of_day % (span_h * HOUR / 2)
    }
}

/// The link a feed travels over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// The mine's uplink: monitoring and seals.
    Uplink,
    /// The grid's metering link: power.
    Metering,
}

fn link_of(feed: Feed) -> Link {
    match feed {
        Feed::Telemetry | Feed::Seal => Link::Uplink,
        Feed::Power => Link::Metering,
    }
}

/// The messages of mine `m` with their arrival times.
#[allow(clippy::too_many_arguments)]
fn deliver(
    m: usize,
    t: &mut MineTraffic,
    province: &Config,
    plan: &Plan,
    rng: &mut SmallRng,
    start: Millis,
    end: Millis,
    out: &mut Vec<Message>,
) {
    // (event time, feed, payload) in event-time order per feed.
    let mut sent: Vec<(Millis, Feed, Vec<u8>)> = Vec::new();
    let poll = (MONITOR_POLL_SECS * 1000.0) as Millis;
    let point = province.mines[m]
        .points
        .first()
        .map(|p| p.code.clone())
        .unwrap_or_default();
    let offset = (m as Millis * 7_919) % poll;
    let mut ts = start + offset;
    while ts < end {
        let payload = serde_json::json!({
            "readings": [{"point": point, "value": 1, "status": 0, "ts": ts}]
        });
        sent.push((ts, Feed::Telemetry, payload.to_string().into_bytes()));
        ts += poll;
    }
    for ts in t.power_times(start, end) {
        if let Some(s) = t.power(ts) {
            sent.push((ts, Feed::Power, power_message(std::slice::from_ref(&s))));
        }
    }
    let events = t.seal(start, end);
    let mut i = 0;
    while i < events.len() {
        let ts = events[i].ts;
        let mut j = i;
        while j < events.len() && events[j].ts == ts {
            j += 1;
        }
        sent.push((ts, Feed::Seal, seal_message(&events[i..j])));
        i = j;
    }
    sent.sort_by_key(|s| (s.0, s.1));
    // Link failures: the scheduled uplink outages, short stalls of each
    // link, and the scenario's own.
    let mut holds: Vec<(Link, Option<Feed>, Millis, Millis)> = Vec::new();
    let every = 6 * HOUR;
    let mut a = start + (m as Millis * 997 * SECOND) % every;
    while a < end {
        holds.push((Link::Uplink, None, a, a + 5 * MINUTE));
        a += every;
    }
    for link in [Link::Uplink, Link::Metering] {
        let mut h = start;
        while h < end {
            if rng.random_bool(0.25) {
                let a = h + rng.random_range(0..HOUR);
                holds.push((
                    link,
                    None,
                    a,
                    a + rng.random_range(5 * SECOND..=20 * SECOND),
                ));
            }
            h += HOUR;
        }
    }
    for &(pm, feed, a, b) in &plan.held {
        if pm == m {
            holds.push((link_of(feed), Some(feed), a, b));
        }
    }
    // In order per feed: each is one connection (monitoring and seals share
    // the uplink, not the connection).
    let mut last = [Millis::MIN; 3];
    for (ts, feed, payload) in sent {
        let link = link_of(feed);
        // Held until the link is up (a stall may run into an outage).
        let held = |mut arrival: Millis, rng: &mut SmallRng| {
            while let Some(&(_, _, _, b)) = holds.iter().find(|&&(l, f, a, b)| {
                l == link && f.is_none_or(|f| f == feed) && (a..b).contains(&arrival)
            }) {
                arrival = b + rng.random_range(50..500);
            }
            arrival
        };
        let mut arrival = held(ts + rng.random_range(SECOND..=5 * SECOND), rng);
        let slot = &mut last[feed as usize];
        arrival = arrival.max(*slot);
        *slot = arrival;
        if rng.random_bool(1.0 / 300.0) {
            let again = held(arrival + rng.random_range(2 * SECOND..=30 * SECOND), rng);
            out.push(Message {
                arrival: again,
                mine: m,
                feed,
                payload: payload.clone(),
            });
        }
        out.push(Message {
            arrival,
            mine: m,
            feed,
            payload,
        });
    }
}

/// One message as JSONL for `minewatch simulate --messages`.
#[derive(Debug, Serialize)]
pub struct MessageLine<'a> {
    /// Scenario.
    pub scenario: &'a str,
    /// MQTT topic, `mines/{mine}/{feed}`.
    pub topic: String,
    /// Arrival time, ms.
    pub arrival: Millis,
    /// The payload, as published.
    pub payload: &'a serde_json::value::RawValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two mines (one producing, one stopped) for two days.
    const SMALL: Size = Size {
        mines: 2,
        hours: 48.0,
    };

    #[test]
    fn scenarios_are_deterministic_and_labelled() {
        for name in ACTIVITY_SCENARIOS {
            let a = generate(name, SMALL, 7).expect("known");
            assert_eq!(a.labels.is_empty(), name == "activity_normal", "{name}");
            assert!(a.labels.iter().all(|l| l.from_ms < l.to_ms), "{name}");
            assert!(
                a.messages.windows(2).all(|w| w[0].arrival <= w[1].arrival),
                "{name}"
            );
            for l in &a.labels {
                let expected = match l.detector.as_str() {
                    "power_silent" => format!("{}:power", l.mine),
                    d if d.starts_with("camera_")
                        || ["static_image", "seal_silent", "dispatch_unattended"].contains(&d) =>
                    {
                        assert!(l.point.starts_with(&format!("{}:seal:", l.mine)), "{l:?}");
                        continue;
                    }
                    _ => String::new(),
                };
                assert_eq!(l.point, expected, "{l:?}");
            }
            if matches!(name, "activity_normal" | "camera_faults") {
                let b = generate(name, SMALL, 7).expect("known");
                assert_eq!(a.labels, b.labels, "{name}");
                assert_eq!(a.messages, b.messages, "{name}");
            }
        }
        assert!(generate("normal", SMALL, 7).is_none());
    }

    #[test]
    fn links_delay_hold_and_duplicate_messages() {
        let g = generate("activity_normal", SMALL, 7).expect("known");
        let delay = |m: &Message| -> Millis {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
            let first = ["readings", "samples", "events"]
                .iter()
                .find_map(|k| v.get(k).and_then(|a| a.get(0)))
                .expect("one record");
            m.arrival - first["ts"].as_i64().expect("ts")
        };
        let delays: Vec<Millis> = g.messages.iter().map(delay).collect();
        assert!(delays.iter().all(|&d| d >= SECOND), "never early");
        let usual = delays.iter().filter(|&&d| d <= 5 * SECOND).count();
        assert!(usual * 100 > delays.len() * 95, "most arrive within 5 s");
        // The uplink outages hold monitoring and seals for minutes.
        assert!(
            g.messages
                .iter()
                .zip(&delays)
                .any(|(m, &d)| m.feed == Feed::Seal && d > 4 * MINUTE)
        );
        assert!(
            g.messages
                .iter()
                .zip(&delays)
                .all(|(m, &d)| m.feed != Feed::Power || d < MINUTE),
            "the metering link has no outages in normal traffic"
        );
        let mut payloads: Vec<(&[u8], usize)> = g
            .messages
            .iter()
            .map(|m| (m.payload.as_slice(), m.mine))
            .collect();
        payloads.sort();
        let dups = payloads.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(dups > 0 && dups * 100 < payloads.len(), "{dups}");
    }

    #[test]
    fn the_province_has_stopped_and_producing_mines_with_one_point() {
        let p = activity_province(4);
        assert_eq!(p.mines[1].status, MineStatus::Stopped);
        assert_eq!(p.mines[2].status, MineStatus::Producing);
        assert!(p.mines.iter().all(|m| m.points.len() == 1));
        assert!(crate::config::validate(&p).is_empty());
    }
}
