//! The shared vocabulary of minewatch: sensor types, location classes, mine
//! status, readings, detector findings and alerts.
//!
//! Everything here is plain data. Readings and findings are small `Copy`
//! values that move through the pipeline without allocation; alerts are the
//! owned, serialisable records that leave it.

use serde::{Deserialize, Serialize};

/// Event time or processing time: milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Index of a mine in the [`crate::config::Registry`].
pub type MineIdx = u32;

/// Index of a point in the [`crate::config::Registry`].
pub type PointIdx = u32;

/// Point status bits of the national networking standard (a bit mask).
pub mod status {
    /// Normal reading.
    pub const NORMAL: u16 = 0;
    /// The mine's own system flags an alarm.
    pub const ALARM: u16 = 1;
    /// The mine's own system flags a power-off.
    pub const POWER_OFF: u16 = 2;
    /// The sensor is being calibrated (标校): the value must not raise alarms.
    pub const CALIBRATION: u16 = 4;
    /// The value is above the sensor's measuring range.
    pub const OVER_RANGE: u16 = 8;
    /// The substation reports a fault.
    pub const SUBSTATION_FAULT: u16 = 16;
    /// The point was not polled.
    pub const NOT_POLLED: u16 = 32;
    /// The point is paused.
    pub const PAUSED: u16 = 64;
    /// The sensor reports a fault: the value is not a measurement.
    pub const SENSOR_FAULT: u16 = 128;
    /// Bits that mean "there is no measured value in this reading".
    pub const NOT_A_VALUE: u16 = SUBSTATION_FAULT | NOT_POLLED | PAUSED | SENSOR_FAULT;
}

/// Sensor type, by the national four-digit code (docs/DOMAIN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensorType {
    /// 0001 ambient (low-range) methane, % CH4.
    Methane,
    /// 0011 high/low-range methane, % CH4.
    HighLowMethane,
    /// 0043 laser methane, % CH4.
    LaserMethane,
    /// 0022 methane in a drainage pipe (not an ambient safety limit).
    PipeMethane,
    /// 0004 carbon monoxide, ppm.
    CarbonMonoxide,
    /// Any other national code (air speed, temperature, switches, …).
    Other(u16),
}

impl SensorType {
    /// Parses a national code ("0001") or a name ("methane", "co").
    pub fn parse(text: &str) -> Option<SensorType> {
        let t = text.trim().to_ascii_lowercase();
        let named = match t.as_str() {
            "methane" | "ch4" => Some(SensorType::Methane),
            "highlow_methane" => Some(SensorType::HighLowMethane),
            "laser_methane" => Some(SensorType::LaserMethane),
            "pipe_methane" => Some(SensorType::PipeMethane),
            "co" | "carbon_monoxide" => Some(SensorType::CarbonMonoxide),
            "air_speed" => Some(SensorType::Other(2)),
            "temperature" => Some(SensorType::Other(3)),
            "o2" | "oxygen" => Some(SensorType::Other(12)),
            "co2" => Some(SensorType::Other(13)),
            "dust" => Some(SensorType::Other(14)),
            _ => None,
        };
        if named.is_some() {
            return named;
        }
        if t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse::<u16>().ok().map(SensorType::from_code);
        }
        None
    }

    /// Maps a national numeric code to a type.
    pub fn from_code(code: u16) -> SensorType {
        match code {
            1 => SensorType::Methane,
            11 => SensorType::HighLowMethane,
            43 => SensorType::LaserMethane,
            22 => SensorType::PipeMethane,
            4 => SensorType::CarbonMonoxide,
            other => SensorType::Other(other),
        }
    }

    /// The national numeric code.
    pub fn code(self) -> u16 {
        match self {
            SensorType::Methane => 1,
            SensorType::HighLowMethane => 11,
            SensorType::LaserMethane => 43,
            SensorType::PipeMethane => 22,
            SensorType::CarbonMonoxide => 4,
            SensorType::Other(c) => c,
        }
    }

    /// The four-digit code as text ("0001").
    pub fn code_text(self) -> String {
        format!("{:04}", self.code())
    }

    /// True for the ambient methane sensors that the methane rules govern.
    pub fn is_ambient_methane(self) -> bool {
        matches!(
            self,
            SensorType::Methane | SensorType::HighLowMethane | SensorType::LaserMethane
        )
    }

    /// A feed sensor (馈电, national code 1015): reads whether the power it
    /// watches is live (1) or cut (0).
    pub fn is_feed(self) -> bool {
        self == SensorType::Other(1015)
    }

    /// The substance the over-limit rules know for this type, if any.
    pub fn gas(self) -> Option<Gas> {
        if self.is_ambient_methane() {
            Some(Gas::Methane)
        } else if self == SensorType::CarbonMonoxide {
            Some(Gas::CarbonMonoxide)
        } else {
            None
        }
    }

    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            SensorType::Methane => "甲烷",
            SensorType::HighLowMethane => "高低浓甲烷",
            SensorType::LaserMethane => "激光甲烷",
            SensorType::PipeMethane => "管道甲烷",
            SensorType::CarbonMonoxide => "一氧化碳",
            SensorType::Other(2) => "风速",
            SensorType::Other(3) => "温度",
            SensorType::Other(12) => "氧气",
            SensorType::Other(13) => "二氧化碳",
            SensorType::Other(14) => "粉尘",
            SensorType::Other(_) => "其他",
        }
    }
}

impl Serialize for SensorType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.code_text())
    }
}

/// A gas that the over-limit rules govern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gas {
    /// Methane, % CH4.
    Methane,
    /// Carbon monoxide, ppm.
    CarbonMonoxide,
}

/// Where a sensor hangs, as the safety rules classify it (docs/DOMAIN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationClass {
    /// Longwall face upper corner (上隅角) T0.
    FaceT0,
    /// Longwall working face T1.
    FaceT1,
    /// Longwall face return airway T2.
    FaceT2,
    /// Intake airway of a face (T3) or series-ventilated intake (T4).
    FaceIntake,
    /// Heading (掘进) face T1.
    HeadingT1,
    /// Heading return T2.
    HeadingT2,
    /// Dedicated drainage roadway (专用排瓦斯巷).
    DrainageRoadway,
    /// Shearer-mounted sensor.
    Shearer,
    /// Trolley-locomotive haulage loading point.
    LoadingPoint,
    /// Panel (采区) return.
    PanelReturn,
    /// Wing or main return.
    MainReturn,
    /// Anything else: only the mine's declared thresholds apply.
    Other,
}

impl LocationClass {
    /// All classes, for listings and validation hints.
    pub const ALL: [LocationClass; 12] = [
        LocationClass::FaceT0,
        LocationClass::FaceT1,
        LocationClass::FaceT2,
        LocationClass::FaceIntake,
        LocationClass::HeadingT1,
        LocationClass::HeadingT2,
        LocationClass::DrainageRoadway,
        LocationClass::Shearer,
        LocationClass::LoadingPoint,
        LocationClass::PanelReturn,
        LocationClass::MainReturn,
        LocationClass::Other,
    ];

    /// The snake_case name used in config files.
    pub fn key(self) -> &'static str {
        match self {
            LocationClass::FaceT0 => "face_t0",
            LocationClass::FaceT1 => "face_t1",
            LocationClass::FaceT2 => "face_t2",
            LocationClass::FaceIntake => "face_intake",
            LocationClass::HeadingT1 => "heading_t1",
            LocationClass::HeadingT2 => "heading_t2",
            LocationClass::DrainageRoadway => "drainage_roadway",
            LocationClass::Shearer => "shearer",
            LocationClass::LoadingPoint => "loading_point",
            LocationClass::PanelReturn => "panel_return",
            LocationClass::MainReturn => "main_return",
            LocationClass::Other => "other",
        }
    }

    /// Parses the config name.
    pub fn parse(text: &str) -> Option<LocationClass> {
        LocationClass::ALL.into_iter().find(|c| c.key() == text)
    }
}

/// A mine's declared operating status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MineStatus {
    /// Producing (生产).
    Producing,
    /// Stopped or suspended (停产停建): monitoring must continue.
    Stopped,
    /// Under construction (建设).
    Building,
    /// Closed (关闭): no data expected; no offline alerts.
    Closed,
}

impl MineStatus {
    /// Every status.
    pub const ALL: [MineStatus; 4] = [
        MineStatus::Producing,
        MineStatus::Stopped,
        MineStatus::Building,
        MineStatus::Closed,
    ];

    /// The config and API name.
    pub fn key(self) -> &'static str {
        match self {
            MineStatus::Producing => "producing",
            MineStatus::Stopped => "stopped",
            MineStatus::Building => "building",
            MineStatus::Closed => "closed",
        }
    }

    /// Parses the config and API name.
    pub fn parse(text: &str) -> Option<MineStatus> {
        MineStatus::ALL.into_iter().find(|s| s.key() == text)
    }
}

/// One measured value of one point, as it moves through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The point, as an index into the registry.
    pub point: PointIdx,
    /// Event time: when the mine measured it.
    pub ts: Millis,
    /// The value in the point's unit. Meaningless when `status` has a
    /// [`status::NOT_A_VALUE`] bit.
    pub value: f64,
    /// National point status bits.
    pub status: u16,
}

/// What a detector concluded. Findings are the only output of the core.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Finding {
    /// An over-limit episode opened at a point.
    OverLimitOpened {
        /// Point.
        point: PointIdx,
        /// Event time of the first reading at or above the alarm line.
        ts: Millis,
        /// That reading's value.
        value: f64,
        /// The alarm threshold it crossed.
        threshold: f64,
    },
    /// An open episode reached the evacuation level (撤人).
    Evacuation {
        /// Point.
        point: PointIdx,
        /// Event time of the first reading at the evacuation level.
        ts: Millis,
        /// That reading's value.
        value: f64,
        /// The evacuation threshold it crossed.
        threshold: f64,
    },
    /// An open episode saw a new peak.
    Peak {
        /// Point.
        point: PointIdx,
        /// Event time of the peak.
        ts: Millis,
        /// The new peak value.
        value: f64,
    },
    /// An over-limit episode closed (value back below the restore line).
    OverLimitClosed {
        /// Point.
        point: PointIdx,
        /// Event time of the reading that closed it.
        ts: Millis,
        /// That reading's value.
        value: f64,
    },
    /// A point has been silent longer than its timeout.
    PointOffline {
        /// Point.
        point: PointIdx,
        /// Processing time of detection.
        at: Millis,
        /// Processing time of the point's last reading.
        last_seen: Millis,
    },
    /// An offline point reported again.
    PointOnline {
        /// Point.
        point: PointIdx,
        /// Processing time of the returning reading.
        at: Millis,
    },
    /// Every point of a mine has been silent (断网).
    MineOffline {
        /// Mine.
        mine: MineIdx,
        /// Processing time of detection.
        at: Millis,
        /// Processing time of the mine's last reading.
        last_seen: Millis,
    },
    /// An offline mine reported again.
    MineOnline {
        /// Mine.
        mine: MineIdx,
        /// Processing time of the returning reading.
        at: Millis,
    },
    /// A data-anomaly or falsification episode opened at a point.
    FlagRaised {
        /// Point.
        point: PointIdx,
        /// Event time the episode starts at.
        ts: Millis,
        /// Which rule.
        flag: Flag,
        /// The value that shows it (NaN where none applies).
        value: f64,
    },
    /// A data-anomaly or falsification episode ended.
    FlagCleared {
        /// Point.
        point: PointIdx,
        /// Event time the episode ended at.
        ts: Millis,
        /// Which rule.
        flag: Flag,
    },
    /// An electricity-use or seal episode opened at a mine, its power
    /// feed or one of its cameras.
    ActivityRaised {
        /// Mine.
        mine: MineIdx,
        /// What it is about.
        subject: Subject,
        /// Event time the episode starts at (processing time for the
        /// silence reasons).
        ts: Millis,
        /// Which rule.
        reason: Activity,
        /// The value that shows it (kW, people, vehicles; NaN where none).
        value: f64,
    },
    /// An electricity-use or seal episode ended.
    ActivityCleared {
        /// Mine.
        mine: MineIdx,
        /// What it was about.
        subject: Subject,
        /// Event (or, for silences, processing) time it ended at.
        ts: Millis,
        /// Which rule.
        reason: Activity,
    },
}

/// The circuits of a mine's electricity feed (`mines/{mine}/power`), in
/// the order of [`PowerSample::kw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Circuit {
    /// The whole mine (总用电).
    Total,
    /// Main hoist (主提升): lifts coal; idle while a mine is stopped.
    Hoist,
    /// Belt conveyors and haulage (运输/皮带): idle while stopped.
    Transport,
    /// Coal faces and headings: shearers, roadheaders (采掘工作面): idle
    /// while stopped.
    Face,
    /// Main fans (主通风): run around the clock, stopped or not.
    Ventilation,
    /// Drainage pumps (排水): run as the sump needs, stopped or not.
    Drainage,
    /// Compressed air (压风).
    Compressor,
    /// Anything else the meter reports on its own.
    Other,
}

/// Number of [`Circuit`]s.
pub const CIRCUITS: usize = 8;

impl Circuit {
    /// Every circuit, in [`PowerSample::kw`] order.
    pub const ALL: [Circuit; CIRCUITS] = [
        Circuit::Total,
        Circuit::Hoist,
        Circuit::Transport,
        Circuit::Face,
        Circuit::Ventilation,
        Circuit::Drainage,
        Circuit::Compressor,
        Circuit::Other,
    ];

    /// The circuits whose load means coal is being produced.
    pub const PRODUCTION: [Circuit; 3] = [Circuit::Hoist, Circuit::Transport, Circuit::Face];

    /// The name in payloads, config and the archive (`hoist`, …).
    pub fn key(self) -> &'static str {
        match self {
            Circuit::Total => "total",
            Circuit::Hoist => "hoist",
            Circuit::Transport => "transport",
            Circuit::Face => "face",
            Circuit::Ventilation => "ventilation",
            Circuit::Drainage => "drainage",
            Circuit::Compressor => "compressor",
            Circuit::Other => "other",
        }
    }

    /// Parses a payload or config name.
    pub fn parse(text: &str) -> Option<Circuit> {
        Circuit::ALL.into_iter().find(|c| c.key() == text)
    }

    /// Position in [`PowerSample::kw`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One sample of a mine's electricity use: the mean load of each circuit
/// the meter reports, in kW (`NaN` where the sample has no value for it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerSample {
    /// The mine.
    pub mine: MineIdx,
    /// Event time: when the meter measured it.
    pub ts: Millis,
    /// Load per [`Circuit`], kW; `NaN` = not reported.
    pub kw: [f32; CIRCUITS],
}

impl PowerSample {
    /// The load of one circuit, if reported.
    pub fn get(&self, c: Circuit) -> Option<f64> {
        let v = self.kw[c.index()];
        v.is_finite().then_some(f64::from(v))
    }
}

/// Where an electronic-seal camera (电子封条) looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraPlace {
    /// Main shaft mouth (主井口).
    MainShaft,
    /// Auxiliary shaft mouth (副井口): people and materials.
    AuxShaft,
    /// Ventilation shaft mouth (风井口).
    VentShaft,
    /// Vehicle gate (车辆出入口): coal trucks.
    VehicleGate,
    /// Dispatch room (调度室).
    DispatchRoom,
}

impl CameraPlace {
    /// Every place.
    pub const ALL: [CameraPlace; 5] = [
        CameraPlace::MainShaft,
        CameraPlace::AuxShaft,
        CameraPlace::VentShaft,
        CameraPlace::VehicleGate,
        CameraPlace::DispatchRoom,
    ];

    /// The config name.
    pub fn key(self) -> &'static str {
        match self {
            CameraPlace::MainShaft => "main_shaft",
            CameraPlace::AuxShaft => "aux_shaft",
            CameraPlace::VentShaft => "vent_shaft",
            CameraPlace::VehicleGate => "vehicle_gate",
            CameraPlace::DispatchRoom => "dispatch_room",
        }
    }

    /// Parses the config name.
    pub fn parse(text: &str) -> Option<CameraPlace> {
        CameraPlace::ALL.into_iter().find(|c| c.key() == text)
    }

    /// True at a shaft mouth, where people going underground are counted.
    pub fn is_shaft(self) -> bool {
        matches!(
            self,
            CameraPlace::MainShaft | CameraPlace::AuxShaft | CameraPlace::VentShaft
        )
    }
}

/// A fault a seal camera reports about its own picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CameraFault {
    /// Lens covered (遮挡).
    Obstructed,
    /// Camera turned away (移位).
    Moved,
    /// The picture does not change (画面冻结): may be a photo fed in.
    Frozen,
    /// No video signal (信号丢失).
    LostSignal,
    /// Too dark to see (过暗).
    TooDark,
    /// Too bright to see (过亮).
    TooBright,
    /// The scene is not the one installed (场景变更).
    SceneChanged,
}

impl CameraFault {
    /// Every fault.
    pub const ALL: [CameraFault; 7] = [
        CameraFault::Obstructed,
        CameraFault::Moved,
        CameraFault::Frozen,
        CameraFault::LostSignal,
        CameraFault::TooDark,
        CameraFault::TooBright,
        CameraFault::SceneChanged,
    ];

    /// The payload name.
    pub fn key(self) -> &'static str {
        match self {
            CameraFault::Obstructed => "obstructed",
            CameraFault::Moved => "moved",
            CameraFault::Frozen => "frozen",
            CameraFault::LostSignal => "lost_signal",
            CameraFault::TooDark => "too_dark",
            CameraFault::TooBright => "too_bright",
            CameraFault::SceneChanged => "scene_changed",
        }
    }

    /// Parses the payload name.
    pub fn parse(text: &str) -> Option<CameraFault> {
        CameraFault::ALL.into_iter().find(|c| c.key() == text)
    }

    /// The reason this fault raises.
    pub fn activity(self) -> Activity {
        match self {
            CameraFault::Obstructed => Activity::CameraObstructed,
            CameraFault::Moved => Activity::CameraMoved,
            CameraFault::Frozen => Activity::CameraFrozen,
            CameraFault::LostSignal => Activity::CameraLostSignal,
            CameraFault::TooDark => Activity::CameraTooDark,
            CameraFault::TooBright => Activity::CameraTooBright,
            CameraFault::SceneChanged => Activity::CameraSceneChanged,
        }
    }
}

/// What one seal event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealEventKind {
    /// The camera is alive (periodic), perhaps with a frame digest.
    Heartbeat,
    /// `count` people went in (down the shaft).
    PeopleIn,
    /// `count` people came out.
    PeopleOut,
    /// The seal system's own count of people underground is `count`.
    Headcount,
    /// `count` vehicles came in.
    VehicleIn,
    /// `count` vehicles (coal trucks) left.
    VehicleOut,
    /// The hoist started running.
    HoistRunning,
    /// The hoist stopped.
    HoistStopped,
    /// A belt conveyor started running.
    BeltRunning,
    /// The belt stopped.
    BeltStopped,
    /// Nobody at the dispatch desk.
    DispatchUnattended,
    /// Somebody is back at the dispatch desk.
    DispatchAttended,
    /// The camera reports a fault of its picture.
    Fault(CameraFault),
    /// The camera's faults are over.
    FaultCleared,
}

impl SealEventKind {
    /// The payload name (`people_in`, `fault`, …).
    pub fn key(self) -> &'static str {
        match self {
            SealEventKind::Heartbeat => "heartbeat",
            SealEventKind::PeopleIn => "people_in",
            SealEventKind::PeopleOut => "people_out",
            SealEventKind::Headcount => "headcount",
            SealEventKind::VehicleIn => "vehicle_in",
            SealEventKind::VehicleOut => "vehicle_out",
            SealEventKind::HoistRunning => "hoist_running",
            SealEventKind::HoistStopped => "hoist_stopped",
            SealEventKind::BeltRunning => "belt_running",
            SealEventKind::BeltStopped => "belt_stopped",
            SealEventKind::DispatchUnattended => "dispatch_unattended",
            SealEventKind::DispatchAttended => "dispatch_attended",
            SealEventKind::Fault(_) => "fault",
            SealEventKind::FaultCleared => "fault_cleared",
        }
    }

    /// Parses an event name and, for `fault`, the fault's name.
    pub fn parse(event: &str, fault: Option<&str>) -> Result<SealEventKind, String> {
        Ok(match event {
            "heartbeat" => SealEventKind::Heartbeat,
            "people_in" => SealEventKind::PeopleIn,
            "people_out" => SealEventKind::PeopleOut,
            "headcount" => SealEventKind::Headcount,
            "vehicle_in" => SealEventKind::VehicleIn,
            "vehicle_out" => SealEventKind::VehicleOut,
            "hoist_running" => SealEventKind::HoistRunning,
            "hoist_stopped" => SealEventKind::HoistStopped,
            "belt_running" => SealEventKind::BeltRunning,
            "belt_stopped" => SealEventKind::BeltStopped,
            "dispatch_unattended" => SealEventKind::DispatchUnattended,
            "dispatch_attended" => SealEventKind::DispatchAttended,
            "fault_cleared" => SealEventKind::FaultCleared,
            "fault" => {
                let name = fault.ok_or("a \"fault\" event needs a \"fault\" name")?;
                let f = CameraFault::parse(name).ok_or_else(|| {
                    format!(
                        "unknown fault {name:?}; one of {}",
                        CameraFault::ALL.map(|f| f.key()).join(", ")
                    )
                })?;
                SealEventKind::Fault(f)
            }
            other => {
                return Err(format!(
                    "unknown event {other:?}; one of heartbeat, people_in, people_out, headcount, \
                     vehicle_in, vehicle_out, hoist_running, hoist_stopped, belt_running, \
                     belt_stopped, dispatch_unattended, dispatch_attended, fault, fault_cleared"
                ));
            }
        })
    }

    /// True for the events that carry a count.
    pub fn has_count(self) -> bool {
        matches!(
            self,
            SealEventKind::PeopleIn
                | SealEventKind::PeopleOut
                | SealEventKind::Headcount
                | SealEventKind::VehicleIn
                | SealEventKind::VehicleOut
        )
    }
}

/// One event of an electronic-seal camera.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SealEvent {
    /// The mine.
    pub mine: MineIdx,
    /// The camera, as its index in the mine's camera list.
    pub camera: u16,
    /// Event time.
    pub ts: Millis,
    /// What happened.
    pub kind: SealEventKind,
    /// People or vehicles, for the events that count (else 0).
    pub count: u32,
    /// A digest of the current picture (0 = none sent): a live camera's
    /// picture always changes a little; the same digest for long is a
    /// frozen or fed-in picture.
    pub frame: u64,
}

/// What an alert or a mine-level finding is about, within its mine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// The mine as a whole.
    Mine,
    /// One monitoring point (the point detectors' findings name it
    /// directly; alerts are keyed by it).
    Point(PointIdx),
    /// The mine's electricity feed.
    Power,
    /// One seal camera (its index in the mine's camera list).
    Camera(u16),
}

/// The rules of the electricity-use and electronic-seal detectors; each is
/// one `reason` of its alert kind ([`Activity::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activity {
    /// A stopped mine draws more than its maintenance baseline.
    PowerAboveBaseline,
    /// Hoist, transport or face circuits under load at a stopped mine.
    ProductionLoad,
    /// A stopped mine uses more power at night than by day (昼停夜开).
    NightProfile,
    /// People underground at a stopped mine beyond its maintenance crew.
    SealPeople,
    /// Coal trucks leaving a stopped mine.
    SealVehicles,
    /// The hoist or a belt running at a stopped mine.
    SealHoist,
    /// More people underground than the mine's approved maximum (超定员).
    Overmanning,
    /// A camera reports its lens covered.
    CameraObstructed,
    /// A camera reports being turned away.
    CameraMoved,
    /// A camera reports a frozen picture.
    CameraFrozen,
    /// A camera reports no video signal.
    CameraLostSignal,
    /// A camera reports a picture too dark.
    CameraTooDark,
    /// A camera reports a picture too bright.
    CameraTooBright,
    /// A camera reports a changed scene.
    CameraSceneChanged,
    /// A camera's picture digest has not changed for long: a frozen or
    /// fed-in picture, whatever the camera says.
    StaticImage,
    /// A camera has sent nothing for longer than its timeout.
    SealSilent,
    /// Nobody at the dispatch desk.
    DispatchUnattended,
    /// The power feed has sent nothing for longer than its timeout.
    PowerSilent,
}

impl Activity {
    /// Every reason, for listings and scoring.
    pub const ALL: [Activity; 18] = [
        Activity::PowerAboveBaseline,
        Activity::ProductionLoad,
        Activity::NightProfile,
        Activity::SealPeople,
        Activity::SealVehicles,
        Activity::SealHoist,
        Activity::Overmanning,
        Activity::CameraObstructed,
        Activity::CameraMoved,
        Activity::CameraFrozen,
        Activity::CameraLostSignal,
        Activity::CameraTooDark,
        Activity::CameraTooBright,
        Activity::CameraSceneChanged,
        Activity::StaticImage,
        Activity::SealSilent,
        Activity::DispatchUnattended,
        Activity::PowerSilent,
    ];

    /// The `reason` name used in alerts, labels and docs.
    pub fn key(self) -> &'static str {
        match self {
            Activity::PowerAboveBaseline => "power_above_baseline",
            Activity::ProductionLoad => "production_load",
            Activity::NightProfile => "night_profile",
            Activity::SealPeople => "seal_people",
            Activity::SealVehicles => "seal_vehicles",
            Activity::SealHoist => "seal_hoist",
            Activity::Overmanning => "overmanning",
            Activity::CameraObstructed => "camera_obstructed",
            Activity::CameraMoved => "camera_moved",
            Activity::CameraFrozen => "camera_frozen",
            Activity::CameraLostSignal => "camera_lost_signal",
            Activity::CameraTooDark => "camera_too_dark",
            Activity::CameraTooBright => "camera_too_bright",
            Activity::CameraSceneChanged => "camera_scene_changed",
            Activity::StaticImage => "static_image",
            Activity::SealSilent => "seal_silent",
            Activity::DispatchUnattended => "dispatch_unattended",
            Activity::PowerSilent => "power_silent",
        }
    }

    /// Parses a `reason` name.
    pub fn parse(text: &str) -> Option<Activity> {
        Activity::ALL.into_iter().find(|a| a.key() == text)
    }

    /// The alert kind this reason raises.
    pub fn kind(self) -> AlertKind {
        match self {
            Activity::PowerAboveBaseline
            | Activity::ProductionLoad
            | Activity::NightProfile
            | Activity::SealPeople
            | Activity::SealVehicles
            | Activity::SealHoist => AlertKind::SuspectedIllegalProduction,
            Activity::Overmanning => AlertKind::Overmanning,
            Activity::PowerSilent => AlertKind::PointOffline,
            _ => AlertKind::SealAlert,
        }
    }

    /// A bit of its own, for sets of open reasons.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The unit of the value a finding of this reason carries.
    pub fn unit(self) -> Option<&'static str> {
        match self {
            Activity::PowerAboveBaseline | Activity::NightProfile => Some("kW"),
            Activity::ProductionLoad => Some("min"),
            Activity::SealPeople | Activity::Overmanning => Some("人"),
            Activity::SealVehicles => Some("辆"),
            _ => None,
        }
    }

    /// The reason in Chinese, for alert texts.
    pub fn zh(self) -> &'static str {
        match self {
            Activity::PowerAboveBaseline => "停产煤矿用电量超出维护基线",
            Activity::ProductionLoad => "停产煤矿提升/运输/采掘回路有负荷",
            Activity::NightProfile => "停产煤矿夜间用电明显高于白天 (昼停夜开)",
            Activity::SealPeople => "停产煤矿井下人数超出维护人员",
            Activity::SealVehicles => "停产煤矿有运煤车辆出矿",
            Activity::SealHoist => "停产煤矿提升机/皮带运行",
            Activity::Overmanning => "井下人数超过核定人数 (超定员)",
            Activity::CameraObstructed => "电子封条摄像头被遮挡",
            Activity::CameraMoved => "电子封条摄像头移位",
            Activity::CameraFrozen => "电子封条画面冻结",
            Activity::CameraLostSignal => "电子封条视频信号丢失",
            Activity::CameraTooDark => "电子封条画面过暗",
            Activity::CameraTooBright => "电子封条画面过亮",
            Activity::CameraSceneChanged => "电子封条场景变更",
            Activity::StaticImage => "电子封条画面长时间不变 (疑似静态图片)",
            Activity::SealSilent => "电子封条无数据上传",
            Activity::DispatchUnattended => "调度室无人值守",
            Activity::PowerSilent => "用电监测无数据上传 (断线)",
        }
    }
}

/// The rules of the data-anomaly (数据异常) and falsification (造假嫌疑)
/// detectors; each is one `reason` sub-kind of its alert kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// Value outside the measuring range, negative, NaN, or a sensor-fault /
    /// over-range status.
    OutOfRange,
    /// The same value for longer than a window while the mine produces.
    FlatLine,
    /// An isolated outlier against the robust rolling baseline.
    Spike,
    /// A change faster than the sensor can physically respond.
    Rate,
    /// Timestamps: conflicting duplicates, far out of order, in the future,
    /// or on a perfect grid.
    Timestamp,
    /// Many readings just under the alarm line and none at or above it.
    Hugging,
    /// A drop to zero or to calibration / not polled / paused right after
    /// values approached the limit.
    DropAfterApproach,
    /// Over the power-off level with no power-off status: the interlock
    /// did not act.
    Interlock,
    /// Values look drawn uniformly between two bounds.
    UniformNoise,
    /// A window of values repeats an earlier window (same or other point).
    Replayed,
    /// Flat or falling while its neighbours on the air path rise.
    NeighboursDisagree,
    /// Alternating between two adjacent values reading after reading: a
    /// stuck sensor with a fake one-step dither.
    Dither,
    /// Reads a fixed amount lower than its air path says from one moment
    /// on: a zero offset.
    Offset,
    /// Rises by a fraction of what its air path's gas events have always
    /// shown: its sensitivity was turned down.
    Sensitivity,
}

impl Flag {
    /// Every flag, for listings and scoring.
    pub const ALL: [Flag; 14] = [
        Flag::OutOfRange,
        Flag::FlatLine,
        Flag::Spike,
        Flag::Rate,
        Flag::Timestamp,
        Flag::Hugging,
        Flag::DropAfterApproach,
        Flag::Interlock,
        Flag::UniformNoise,
        Flag::Replayed,
        Flag::NeighboursDisagree,
        Flag::Dither,
        Flag::Offset,
        Flag::Sensitivity,
    ];

    /// The `reason` name used in alerts, labels and docs.
    pub fn key(self) -> &'static str {
        match self {
            Flag::OutOfRange => "out_of_range",
            Flag::FlatLine => "flat_line",
            Flag::Spike => "spike",
            Flag::Rate => "rate",
            Flag::Timestamp => "timestamp",
            Flag::Hugging => "hugging",
            Flag::DropAfterApproach => "drop_after_approach",
            Flag::Interlock => "interlock",
            Flag::UniformNoise => "uniform_noise",
            Flag::Replayed => "replayed",
            Flag::NeighboursDisagree => "neighbours_disagree",
            Flag::Dither => "dither",
            Flag::Offset => "offset",
            Flag::Sensitivity => "sensitivity",
        }
    }

    /// Parses a `reason` name.
    pub fn parse(text: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.key() == text)
    }

    /// The alert kind this flag raises.
    pub fn kind(self) -> AlertKind {
        match self {
            Flag::OutOfRange | Flag::FlatLine | Flag::Spike | Flag::Rate | Flag::Timestamp => {
                AlertKind::DataAnomaly
            }
            _ => AlertKind::FalsificationSuspect,
        }
    }

    /// A bit of its own, for sets of open flags.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The reason in Chinese, for alert texts.
    pub fn zh(self) -> &'static str {
        match self {
            Flag::OutOfRange => "超出量程/负值/无效值或传感器故障",
            Flag::FlatLine => "数据长时间不变 (直线)",
            Flag::Spike => "孤立跳变",
            Flag::Rate => "变化速率超出传感器响应能力",
            Flag::Timestamp => "时间戳异常",
            Flag::Hugging => "数据长期贴近报警线以下",
            Flag::DropAfterApproach => "接近报警值后突降为零或转为标校/未巡检/暂停",
            Flag::Interlock => "达到断电值无断电状态 (闭锁未动作)",
            Flag::UniformNoise => "数据呈均匀随机分布 (疑似程序生成)",
            Flag::Replayed => "数据片段与历史数据重复 (疑似回放)",
            Flag::NeighboursDisagree => "同一风路相邻测点变化不一致",
            Flag::Dither => "数据在相邻两值间逐次交替 (卡死后伪造抖动)",
            Flag::Offset => "读数较同一风路测点突然整体偏低 (零点偏移)",
            Flag::Sensitivity => "同一风路瓦斯上升时本测点仅升一部分 (灵敏度被调低)",
        }
    }
}

/// The kinds of alert minewatch raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Gas or CO at or above the alarm line (超限报警).
    Overlimit,
    /// Stop work, cut power, withdraw people (撤人).
    Evacuation,
    /// One point silent (断线).
    PointOffline,
    /// A whole mine silent (断网).
    MineOffline,
    /// Implausible data (数据异常): range, flat line, spikes, timestamps.
    DataAnomaly,
    /// A falsification signature (造假嫌疑).
    FalsificationSuspect,
    /// A stopped mine shows signs of production (明停暗开): power use or
    /// seal events.
    SuspectedIllegalProduction,
    /// More people underground than approved (超定员).
    Overmanning,
    /// An electronic seal camera is faulty, silent or sees an unattended
    /// dispatch desk (电子封条告警).
    SealAlert,
}

impl AlertKind {
    /// The snake_case name used in the API and in metrics.
    pub fn key(self) -> &'static str {
        match self {
            AlertKind::Overlimit => "overlimit",
            AlertKind::Evacuation => "evacuation",
            AlertKind::PointOffline => "point_offline",
            AlertKind::MineOffline => "mine_offline",
            AlertKind::DataAnomaly => "data_anomaly",
            AlertKind::FalsificationSuspect => "falsification_suspect",
            AlertKind::SuspectedIllegalProduction => "suspected_illegal_production",
            AlertKind::Overmanning => "overmanning",
            AlertKind::SealAlert => "seal_alert",
        }
    }

    /// Every kind.
    pub const ALL: [AlertKind; 9] = [
        AlertKind::Overlimit,
        AlertKind::Evacuation,
        AlertKind::PointOffline,
        AlertKind::MineOffline,
        AlertKind::DataAnomaly,
        AlertKind::FalsificationSuspect,
        AlertKind::SuspectedIllegalProduction,
        AlertKind::Overmanning,
        AlertKind::SealAlert,
    ];

    /// Parses the API name.
    pub fn parse(text: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.key() == text)
    }

    /// The severity an alert of this kind starts with.
    pub fn severity(self) -> Severity {
        match self {
            AlertKind::Evacuation => Severity::Critical,
            AlertKind::Overlimit
            | AlertKind::MineOffline
            | AlertKind::FalsificationSuspect
            | AlertKind::SuspectedIllegalProduction
            | AlertKind::Overmanning
            | AlertKind::SealAlert => Severity::Major,
            AlertKind::PointOffline | AlertKind::DataAnomaly => Severity::Minor,
        }
    }
}

/// Alert grade, as regulators count them (level 1 is the most urgent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Level 1: people must be withdrawn.
    Critical,
    /// Level 2: over the limit, or a mine off the network.
    Major,
    /// Level 3: a single point off the network.
    Minor,
}

impl Severity {
    /// The snake_case name used in the API.
    pub fn key(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
        }
    }
}

/// An alert: one per episode and kind, never one per reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id, derived from kind, mine, point and start time.
    pub id: String,
    /// What happened.
    pub kind: AlertKind,
    /// How urgent.
    pub severity: Severity,
    /// Mine code.
    pub mine: String,
    /// Mine name.
    pub mine_name: String,
    /// County code (the jurisdiction that must be told).
    pub county: String,
    /// City code.
    pub city: String,
    /// Province code.
    pub province: String,
    /// Point code, for point alerts.
    pub point: Option<String>,
    /// Sensor type code, for point alerts.
    pub sensor: Option<String>,
    /// Location class, for point alerts.
    pub location: Option<LocationClass>,
    /// Unit of `value`, `peak` and `threshold`.
    pub unit: Option<String>,
    /// The value that raised the alert.
    pub value: Option<f64>,
    /// The highest value seen during the episode.
    pub peak: Option<f64>,
    /// The threshold that was crossed.
    pub threshold: Option<f64>,
    /// The rule the alert enforces, in words.
    pub rule: String,
    /// The reason key that raised a data-anomaly or falsification alert
    /// ([`Flag::key`]: `flat_line`, `replayed`, …); `None` for the other
    /// kinds. Bodies stored before the field existed read as `None`.
    #[serde(default)]
    pub reason: Option<String>,
    /// When the condition began (event time for over-limit, detection time
    /// for offline), RFC 3339.
    pub started_at: String,
    /// When the condition ended, RFC 3339; `None` while active.
    pub resolved_at: Option<String>,
    /// For offline alerts: when the point or mine was last heard from.
    pub last_seen: Option<String>,
    /// For over-limit alerts: the crossings of the line it stands for (a
    /// point flapping at its line re-opens within `rules.regroup_secs`;
    /// every crossing counts for statistics, one alert is pushed). `None`
    /// for one crossing and for other kinds; bodies stored before the
    /// field existed read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossings: Option<u32>,
}

impl Alert {
    /// True while the condition lasts.
    pub fn is_active(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// Formats event or processing time as RFC 3339 in UTC with milliseconds.
pub fn rfc3339(ms: Millis) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => format!("invalid-time({ms})"),
    }
}

/// A stable 64-bit FNV-1a hash, used for alert ids (the same input gives the
/// same id on every run and every machine).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_types_parse_codes_and_names() {
        assert_eq!(SensorType::parse("0001"), Some(SensorType::Methane));
        assert_eq!(SensorType::parse("CO"), Some(SensorType::CarbonMonoxide));
        assert_eq!(SensorType::parse("0004"), Some(SensorType::CarbonMonoxide));
        assert_eq!(SensorType::parse("0002"), Some(SensorType::Other(2)));
        assert_eq!(SensorType::parse("12"), None);
        assert_eq!(SensorType::parse("gas"), None);
        assert_eq!(SensorType::Methane.code_text(), "0001");
        assert_eq!(SensorType::PipeMethane.gas(), None);
        assert_eq!(SensorType::LaserMethane.gas(), Some(Gas::Methane));
    }

    #[test]
    fn location_classes_round_trip() {
        for c in LocationClass::ALL {
            assert_eq!(LocationClass::parse(c.key()), Some(c));
        }
        assert_eq!(LocationClass::parse("face"), None);
    }

    #[test]
    fn stable_hash_separates_parts() {
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[b"x"]), stable_hash(&[b"x"]));
    }

    #[test]
    fn flags_round_trip_and_map_to_their_kinds() {
        for f in Flag::ALL {
            assert_eq!(Flag::parse(f.key()), Some(f));
        }
        assert_eq!(Flag::Spike.kind(), AlertKind::DataAnomaly);
        assert_eq!(Flag::Replayed.kind(), AlertKind::FalsificationSuspect);
        assert_eq!(AlertKind::DataAnomaly.severity(), Severity::Minor);
        assert_eq!(AlertKind::FalsificationSuspect.severity(), Severity::Major);
        assert_eq!(
            AlertKind::parse("falsification_suspect"),
            Some(AlertKind::FalsificationSuspect)
        );
    }

    #[test]
    fn rfc3339_is_utc_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
