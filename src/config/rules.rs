//! The over-limit rules of 《煤矿安全规程》 as data: default alarm, power-off
//! and restore levels for methane by sensor location, and the CO limit
//! (docs/DOMAIN.md §1). A config file may override any of them under `[rules]`.

use serde::Deserialize;

use crate::model::LocationClass;

/// One location's methane levels, % CH4.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct MethaneLevels {
    /// Alarm at or above this.
    pub alarm: f64,
    /// Cut power (and withdraw people) at or above this; `None` where the
    /// rules set an alarm only.
    #[serde(default)]
    pub power_off: Option<f64>,
    /// The episode ends (power may be restored) below this.
    pub restore: f64,
}

/// The CO levels, ppm.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct CoLevels {
    /// Alarm at or above this (art. 135: 0.0024 % = 24 ppm).
    pub alarm: f64,
    /// The episode ends below this.
    pub restore: f64,
    /// Withdraw people at or above this.
    pub evacuate: f64,
}

/// The default CO levels.
pub const CO_DEFAULT: CoLevels = CoLevels {
    alarm: 24.0,
    restore: 24.0,
    evacuate: 24.0,
};

/// The rules table's methane levels for a location class; `None` for
/// [`LocationClass::Other`], where only a mine's declared levels apply.
pub fn methane_default(class: LocationClass) -> Option<MethaneLevels> {
    let l = |alarm: f64, power_off: Option<f64>, restore: f64| {
        Some(MethaneLevels {
            alarm,
            power_off,
            restore,
        })
    };
    match class {
        LocationClass::FaceT0 | LocationClass::FaceT1 => l(1.0, Some(1.5), 1.0),
        LocationClass::FaceT2 => l(1.0, Some(1.0), 1.0),
        LocationClass::FaceIntake => l(0.5, Some(0.5), 0.5),
        LocationClass::HeadingT1 => l(1.0, Some(1.5), 1.0),
        LocationClass::HeadingT2 => l(1.0, Some(1.0), 1.0),
        LocationClass::DrainageRoadway => l(2.5, Some(2.5), 2.5),
        LocationClass::Shearer => l(1.0, Some(1.5), 1.0),
        LocationClass::LoadingPoint => l(0.5, Some(0.5), 0.5),
        // Panel return power-off level: unconfirmed (docs/DOMAIN.md §1).
        LocationClass::PanelReturn => l(1.0, Some(1.0), 1.0),
        // Wing / main return: alarm only (unconfirmed, docs/DOMAIN.md §1).
        LocationClass::MainReturn => l(0.75, None, 0.75),
        LocationClass::Other => None,
    }
}

/// The article a methane alert cites, in words.
pub fn methane_rule_text(class: LocationClass) -> String {
    format!(
        "《煤矿安全规程》甲烷浓度限值（{}）: 报警/断电/复电按传感器位置设定",
        class.key()
    )
}

/// The article a CO alert cites, in words.
pub const CO_RULE_TEXT: &str = "《煤矿安全规程》第135条: CO 最高允许浓度 0.0024% (24 ppm)";

/// The article an evacuation alert cites, in words.
pub const EVACUATION_RULE_TEXT: &str =
    "《煤矿安全规程》: 达到断电浓度时停止作业、切断电源、撤出人员";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ruled_location_has_restore_at_or_below_alarm() {
        for class in LocationClass::ALL {
            if let Some(l) = methane_default(class) {
                assert!(l.restore <= l.alarm, "{class:?}");
                if let Some(p) = l.power_off {
                    assert!(p >= l.alarm, "{class:?}");
                }
            }
        }
    }

    #[test]
    fn face_and_return_levels_match_the_rules_table() {
        let t1 = methane_default(LocationClass::FaceT1).unwrap();
        assert_eq!((t1.alarm, t1.power_off, t1.restore), (1.0, Some(1.5), 1.0));
        let t2 = methane_default(LocationClass::FaceT2).unwrap();
        assert_eq!(t2.power_off, Some(1.0));
        let intake = methane_default(LocationClass::FaceIntake).unwrap();
        assert_eq!(intake.alarm, 0.5);
        assert_eq!(methane_default(LocationClass::Other), None);
        assert_eq!(CO_DEFAULT.alarm, 24.0);
    }
}
