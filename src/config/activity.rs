//! Electricity use (用电量) and electronic seals (电子封条): a mine's
//! `power` and `seal` settings, the `[activity]` knobs of their detectors
//! with defaults and validation, and the running form the registry keeps
//! (`PowerMeta`, `SealMeta`). docs/DETECTORS.md describes each rule with
//! these knobs.

use serde::{Deserialize, Serialize};

use crate::config::{Issue, Level};
use crate::model::{CIRCUITS, CameraPlace, Circuit, Millis};

/// A mine's electricity feed (`[mines.power]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct MinePowerConfig {
    /// How often the meter sends a sample, seconds (default 60); the feed
    /// is offline after 3½ × this without one (three samples missed).
    #[serde(default)]
    pub polling_secs: Option<f64>,
    /// The load the mine declared for a stop: fans, pumps, compressors,
    /// lighting and monitoring, kW. Without it the baseline rule does not
    /// judge this mine.
    #[serde(default)]
    pub maintenance_kw: Option<f64>,
    /// A production circuit (`hoist`, `transport`, `face`) at or below
    /// this many kW counts as idle; defaults to `activity.idle_kw`.
    #[serde(default)]
    pub idle_kw: std::collections::BTreeMap<String, f64>,
}

/// One seal camera (`[[mines.seal.cameras]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CameraConfig {
    /// The camera's id as the seal system sends it (unique in the mine).
    pub id: String,
    /// Where it looks: `main_shaft`, `aux_shaft`, `vent_shaft`,
    /// `vehicle_gate`, `dispatch_room`.
    pub place: String,
}

/// A mine's electronic seals (`[mines.seal]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct MineSealConfig {
    /// Cameras send a heartbeat this often, seconds (default 60); a camera
    /// is silent after 3½ × this without any event (three heartbeats
    /// missed).
    #[serde(default)]
    pub heartbeat_secs: Option<f64>,
    /// People a stopped mine may have underground (its maintenance crew:
    /// ventilation, drainage, gas patrol); defaults to
    /// `activity.maintenance_crew`.
    #[serde(default)]
    pub maintenance_crew: Option<u32>,
    /// The cameras.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
}

/// Knobs of the electricity-use and seal detectors (`[activity]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct ActivityConfig {
    /// Baseline: the window of the mean total load, minutes.
    pub baseline_window_mins: u32,
    /// Baseline: flagged when the window's mean exceeds the declared
    /// maintenance load × this …
    pub baseline_ratio: f64,
    /// … and by at least this many kW.
    pub baseline_min_excess_kw: f64,
    /// Production load: the window, minutes.
    pub production_window_mins: u32,
    /// Production load: flagged when a production circuit is under load
    /// in at least this many minutes of the window (cleared at a quarter
    /// of it).
    pub production_minutes: u32,
    /// Production load: a production circuit at or below this is idle, kW
    /// (a mine's `power.idle_kw` overrides it per circuit).
    pub idle_kw: f64,
    /// Night profile: Beijing hours `[from, to)` of the day window.
    pub day_hours: [u32; 2],
    /// Night profile: Beijing hours `[from, to)` of the night window
    /// (wrapping past midnight).
    pub night_hours: [u32; 2],
    /// Night profile: flagged when the night's mean load so far exceeds the
    /// last day's mean × (1 + this) …
    pub night_ratio: f64,
    /// … and by at least this many kW …
    pub night_min_kw: f64,
    /// … once the night holds at least this many minutes of data.
    pub night_min_minutes: u32,
    /// Night profile: a day window counts with at least this many minutes
    /// of data.
    pub day_min_minutes: u32,
    /// Seals: people a stopped mine may have underground unless the mine
    /// says otherwise.
    pub maintenance_crew: u32,
    /// Seals: a headcount over the limit counts only after this long, s
    /// (shift changes overlap briefly).
    pub people_hold_secs: u64,
    /// Seals: vehicles leaving a stopped mine are counted over this
    /// window, seconds …
    pub vehicle_window_secs: u64,
    /// … and flagged from this many on.
    pub stopped_vehicles: u32,
    /// Seals: the hoist or a belt running this long at a stopped mine is
    /// flagged, seconds.
    pub hoist_running_secs: u64,
    /// Seals: a camera fault shorter than this raises nothing, seconds.
    pub fault_hold_secs: u64,
    /// Seals: the same picture digest for this long …
    pub static_image_secs: u64,
    /// … over at least this many events is a static picture.
    pub static_image_frames: u32,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            baseline_window_mins: 30,
            baseline_ratio: 1.3,
            baseline_min_excess_kw: 50.0,
            production_window_mins: 60,
            production_minutes: 20,
            idle_kw: 50.0,
            day_hours: [8, 18],
            night_hours: [20, 6],
            night_ratio: 0.3,
            night_min_kw: 100.0,
            night_min_minutes: 120,
            day_min_minutes: 360,
            maintenance_crew: 20,
            people_hold_secs: 600,
            vehicle_window_secs: 7200,
            stopped_vehicles: 2,
            hoist_running_secs: 900,
            fault_hold_secs: 60,
            static_image_secs: 600,
            static_image_frames: 5,
        }
    }
}

impl ActivityConfig {
    /// Checks the knobs; issues carry the key path and a hint.
    pub fn validate(&self, out: &mut Vec<Issue>) {
        let mut err = |key: &str, message: String, hint: &str| {
            out.push(Issue {
                level: Level::Error,
                path: format!("activity.{key}"),
                message,
                hint: hint.into(),
            })
        };
        for (key, v, usual) in [
            ("baseline_min_excess_kw", self.baseline_min_excess_kw, "50"),
            ("idle_kw", self.idle_kw, "50"),
            ("night_min_kw", self.night_min_kw, "100"),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                err(key, format!("{v} must be a number ≥ 0"), usual);
            }
        }
        if !(self.baseline_ratio.is_finite() && self.baseline_ratio > 1.0) {
            err(
                "baseline_ratio",
                format!("{} must be above 1", self.baseline_ratio),
                "1.3: 30 % over the declared maintenance load",
            );
        }
        if !(self.night_ratio.is_finite() && self.night_ratio > 0.0) {
            err(
                "night_ratio",
                format!("{} must be positive", self.night_ratio),
                "0.3: the night 30 % above the day",
            );
        }
        for (key, v, lo, hi) in [
            ("baseline_window_mins", self.baseline_window_mins, 1, 60),
            ("production_window_mins", self.production_window_mins, 1, 60),
            ("night_min_minutes", self.night_min_minutes, 1, 720),
            ("day_min_minutes", self.day_min_minutes, 1, 720),
        ] {
            if v < lo || v > hi {
                err(
                    key,
                    format!("{v} is out of range"),
                    &format!("use {lo}..={hi}"),
                );
            }
        }
        if self.production_minutes == 0 || self.production_minutes > self.production_window_mins {
            err(
                "production_minutes",
                format!(
                    "{} must lie in 1..=production_window_mins ({})",
                    self.production_minutes, self.production_window_mins
                ),
                "20 of 60 minutes",
            );
        }
        for (key, [a, b]) in [
            ("day_hours", self.day_hours),
            ("night_hours", self.night_hours),
        ] {
            if a > 23 || b > 24 || a == b {
                err(
                    key,
                    format!("[{a}, {b}] is not a window of Beijing hours"),
                    "write [from, to) in 0..=24, e.g. day [8, 18], night [20, 6]",
                );
            }
        }
        if self.vehicle_window_secs == 0 || self.stopped_vehicles == 0 {
            err(
                "vehicle_window_secs",
                "vehicle_window_secs and stopped_vehicles must be positive".into(),
                "2 vehicles in 7200 s",
            );
        }
        if self.static_image_frames < 2 || self.static_image_secs == 0 {
            err(
                "static_image_frames",
                "a static picture needs static_image_secs > 0 and at least 2 frames".into(),
                "600 s over 5 frames",
            );
        }
    }
}

/// Default meter period, seconds.
const DEFAULT_POWER_POLLING_SECS: f64 = 60.0;

/// Default camera heartbeat, seconds.
const DEFAULT_HEARTBEAT_SECS: f64 = 60.0;

/// A mine's electricity feed as the detectors use it.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerMeta {
    /// The feed was configured: it is watched for silence from the start
    /// (an unconfigured feed only from its first sample).
    pub configured: bool,
    /// The meter's period, ms.
    pub period_ms: Millis,
    /// Silence that makes the feed offline, ms.
    pub offline_after_ms: Millis,
    /// Declared maintenance load, kW.
    pub maintenance_kw: Option<f64>,
    /// Idle level per [`Circuit`], kW (only production circuits are read).
    pub idle_kw: [f64; CIRCUITS],
}

/// One seal camera as the detectors use it.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraMeta {
    /// Its id.
    pub id: String,
    /// Where it looks.
    pub place: CameraPlace,
}

/// A mine's seals as the detectors use them.
#[derive(Debug, Clone, PartialEq)]
pub struct SealMeta {
    /// The cameras' heartbeat period, ms.
    pub heartbeat_ms: Millis,
    /// Silence that makes a camera silent, ms.
    pub silent_after_ms: Millis,
    /// People a stopped mine may have underground.
    pub maintenance_crew: u32,
    /// The cameras; events name them by id, the state by position.
    pub cameras: Vec<CameraMeta>,
}

impl SealMeta {
    /// The position of camera `id`.
    pub fn camera(&self, id: &str) -> Option<u16> {
        self.cameras
            .iter()
            .position(|c| c.id == id)
            .map(|i| i as u16)
    }
}

fn secs_ms(secs: f64) -> Millis {
    (secs * 1000.0).round() as Millis
}

/// The silence after which a feed sending every `period` ms is silent:
/// three periods missed, plus half a period. A timeout of exactly 3 periods
/// sits on the gap that two missed messages leave, so arrival jitter would
/// make two lost samples in a row an alert half of the time.
fn silence_timeout(period: Millis) -> Millis {
    3 * period + period / 2
}

/// The running form of a mine's `power` section (`None` = not configured).
pub fn power_meta(cfg: Option<&MinePowerConfig>, knobs: &ActivityConfig) -> PowerMeta {
    let mut idle_kw = [knobs.idle_kw; CIRCUITS];
    if let Some(c) = cfg {
        for (name, kw) in &c.idle_kw {
            if let Some(circuit) = Circuit::parse(name) {
                idle_kw[circuit.index()] = *kw;
            }
        }
    }
    let polling = cfg
        .and_then(|c| c.polling_secs)
        .unwrap_or(DEFAULT_POWER_POLLING_SECS);
    PowerMeta {
        configured: cfg.is_some(),
        period_ms: secs_ms(polling),
        offline_after_ms: silence_timeout(secs_ms(polling)),
        maintenance_kw: cfg.and_then(|c| c.maintenance_kw),
        idle_kw,
    }
}

/// The running form of a mine's `seal` section.
pub fn seal_meta(cfg: Option<&MineSealConfig>, knobs: &ActivityConfig) -> SealMeta {
    let heartbeat = cfg
        .and_then(|c| c.heartbeat_secs)
        .unwrap_or(DEFAULT_HEARTBEAT_SECS);
    SealMeta {
        heartbeat_ms: secs_ms(heartbeat),
        silent_after_ms: silence_timeout(secs_ms(heartbeat)),
        maintenance_crew: cfg
            .and_then(|c| c.maintenance_crew)
            .unwrap_or(knobs.maintenance_crew),
        cameras: cfg
            .map(|c| {
                c.cameras
                    .iter()
                    .filter_map(|cam| {
                        Some(CameraMeta {
                            id: cam.id.clone(),
                            place: CameraPlace::parse(&cam.place)?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Checks one mine's `power` and `seal` sections (`mp` is the mine's key
/// path, `mines[3]`).
pub fn validate_mine(
    mp: &str,
    power: Option<&MinePowerConfig>,
    seal: Option<&MineSealConfig>,
    out: &mut Vec<Issue>,
) {
    let mut err = |key: String, message: String, hint: &str| {
        out.push(Issue {
            level: Level::Error,
            path: key,
            message,
            hint: hint.into(),
        })
    };
    let period_ok = |v: f64| v.is_finite() && v > 0.0 && v <= 3600.0;
    if let Some(p) = power {
        if let Some(v) = p.polling_secs
            && !period_ok(v)
        {
            err(
                format!("{mp}.power.polling_secs"),
                format!("{v} is out of range"),
                "a period in (0, 3600] seconds; meters usually send every 15–60 s",
            );
        }
        if let Some(v) = p.maintenance_kw
            && !(v.is_finite() && v > 0.0)
        {
            err(
                format!("{mp}.power.maintenance_kw"),
                format!("{v} must be a positive load in kW"),
                "the load the mine declared for its stop (fans, pumps, compressors)",
            );
        }
        for (name, kw) in &p.idle_kw {
            match Circuit::parse(name) {
                Some(c) if Circuit::PRODUCTION.contains(&c) => {
                    if !(kw.is_finite() && *kw >= 0.0) {
                        err(
                            format!("{mp}.power.idle_kw.{name}"),
                            format!("{kw} must be a number ≥ 0"),
                            "the circuit's standby load in kW, e.g. 40",
                        );
                    }
                }
                _ => err(
                    format!("{mp}.power.idle_kw.{name}"),
                    format!("{name:?} is not a production circuit"),
                    "idle levels are for hoist, transport and face",
                ),
            }
        }
    }
    if let Some(s) = seal {
        if let Some(v) = s.heartbeat_secs
            && !period_ok(v)
        {
            err(
                format!("{mp}.seal.heartbeat_secs"),
                format!("{v} is out of range"),
                "a period in (0, 3600] seconds; 60 is usual",
            );
        }
        let mut ids = std::collections::HashSet::new();
        for (i, cam) in s.cameras.iter().enumerate() {
            let cp = format!("{mp}.seal.cameras[{i}]");
            if cam.id.trim().is_empty() {
                err(
                    format!("{cp}.id"),
                    "empty camera id".into(),
                    "the id the seal system sends",
                );
            } else if !ids.insert(cam.id.as_str()) {
                err(
                    format!("{cp}.id"),
                    format!("camera {:?} is listed twice", cam.id),
                    "camera ids are unique within a mine",
                );
            }
            if CameraPlace::parse(&cam.place).is_none() {
                err(
                    format!("{cp}.place"),
                    format!("unknown camera place {:?}", cam.place),
                    "one of main_shaft, aux_shaft, vent_shaft, vehicle_gate, dispatch_room",
                );
            }
        }
        if s.cameras.len() > usize::from(u16::MAX) {
            err(
                format!("{mp}.seal.cameras"),
                format!("{} cameras", s.cameras.len()),
                "at most 65535 cameras a mine",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let mut out = Vec::new();
        ActivityConfig::default().validate(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn bad_knobs_are_named_with_a_hint() {
        let c = ActivityConfig {
            baseline_ratio: 0.9,
            production_minutes: 90,
            night_hours: [25, 6],
            ..ActivityConfig::default()
        };
        let mut out = Vec::new();
        c.validate(&mut out);
        let paths: Vec<&str> = out.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "activity.baseline_ratio",
                "activity.production_minutes",
                "activity.night_hours"
            ]
        );
        assert!(out.iter().all(|i| !i.hint.is_empty()));
    }

    #[test]
    fn mine_sections_are_checked_with_key_paths() {
        let power = MinePowerConfig {
            polling_secs: Some(0.0),
            maintenance_kw: Some(-5.0),
            idle_kw: [("ventilation".to_string(), 10.0), ("hoist".into(), 40.0)]
                .into_iter()
                .collect(),
        };
        let seal = MineSealConfig {
            heartbeat_secs: None,
            maintenance_crew: None,
            cameras: vec![
                CameraConfig {
                    id: "a".into(),
                    place: "main_shaft".into(),
                },
                CameraConfig {
                    id: "a".into(),
                    place: "roof".into(),
                },
            ],
        };
        let mut out = Vec::new();
        validate_mine("mines[0]", Some(&power), Some(&seal), &mut out);
        let paths: Vec<&str> = out.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "mines[0].power.polling_secs",
                "mines[0].power.maintenance_kw",
                "mines[0].power.idle_kw.ventilation",
                "mines[0].seal.cameras[1].id",
                "mines[0].seal.cameras[1].place",
            ]
        );
    }

    #[test]
    fn running_forms_take_defaults_and_overrides() {
        let knobs = ActivityConfig::default();
        let p = power_meta(None, &knobs);
        assert!(!p.configured);
        assert_eq!(p.offline_after_ms, 210_000);
        assert_eq!(p.idle_kw[Circuit::Hoist.index()], 50.0);
        let cfg = MinePowerConfig {
            polling_secs: Some(15.0),
            maintenance_kw: Some(600.0),
            idle_kw: [("hoist".to_string(), 35.0)].into_iter().collect(),
        };
        let p = power_meta(Some(&cfg), &knobs);
        assert!(p.configured);
        assert_eq!((p.period_ms, p.offline_after_ms), (15_000, 52_500));
        assert_eq!(p.maintenance_kw, Some(600.0));
        assert_eq!(p.idle_kw[Circuit::Hoist.index()], 35.0);
        assert_eq!(p.idle_kw[Circuit::Face.index()], 50.0);
        let s = seal_meta(
            Some(&MineSealConfig {
                heartbeat_secs: Some(30.0),
                maintenance_crew: Some(8),
                cameras: vec![CameraConfig {
                    id: "gate".into(),
                    place: "vehicle_gate".into(),
                }],
            }),
            &knobs,
        );
        assert_eq!((s.heartbeat_ms, s.silent_after_ms), (30_000, 105_000));
        assert_eq!(s.maintenance_crew, 8);
        assert_eq!(s.camera("gate"), Some(0));
        assert_eq!(s.camera("other"), None);
    }
}
