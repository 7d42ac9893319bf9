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

/// Sensor type, by the national four-digit code (domain.md §3).
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

/// Where a sensor hangs, as the safety rules classify it (domain.md §2).
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
}

impl Flag {
    /// Every flag, for listings and scoring.
    pub const ALL: [Flag; 11] = [
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
    pub fn bit(self) -> u16 {
        1 << (self as u16)
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
        }
    }

    /// Parses the API name.
    pub fn parse(text: &str) -> Option<AlertKind> {
        [
            AlertKind::Overlimit,
            AlertKind::Evacuation,
            AlertKind::PointOffline,
            AlertKind::MineOffline,
            AlertKind::DataAnomaly,
            AlertKind::FalsificationSuspect,
        ]
        .into_iter()
        .find(|k| k.key() == text)
    }

    /// The severity an alert of this kind starts with.
    pub fn severity(self) -> Severity {
        match self {
            AlertKind::Evacuation => Severity::Critical,
            AlertKind::Overlimit | AlertKind::MineOffline | AlertKind::FalsificationSuspect => {
                Severity::Major
            }
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
