//! A simulated province: mines spread over counties of two cities, each with
//! a realistic set of monitoring points (methane at faces, corners, returns
//! and headings; CO; air speed, temperature, O2, CO2, dust; fan and feed
//! switches) and an approved headcount; [`with_feeds`] adds an electricity
//! meter and five electronic-seal cameras to each. Every tenth mine (the
//! 10th, 20th, …) is declared stopped (停产): its fans and pumps keep
//! running, nothing else should.
//! The same spec always gives the same province, and it can be written out
//! as a daemon config (`minewatch simulate --write-config`).

use std::fmt::Write as _;

use crate::config::activity::{CameraConfig, MinePowerConfig, MineSealConfig};
use crate::config::{Config, MineConfig, PointConfig};
use crate::model::MineStatus;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProvinceSpec {
    /// Number of mines.
    pub mines: usize,
    /// Points per mine.
    pub points: usize,
    /// Polling period of every point, seconds.
    pub polling_secs: f64,
}

/// (province, city, county) division codes the simulated mines sit in.
const COUNTIES: [(&str, &str, &str); 5] = [
    ("140000", "140100", "140121"),
    ("140000", "140100", "140181"),
    ("140000", "140400", "140429"),
    ("140000", "140400", "140481"),
    ("140000", "140500", "140521"),
];

/// The point set of one mine: (sensor code, location class, place).
pub const POINT_TEMPLATE: [(&str, &str, &str); 32] = [
    ("0001", "face_t1", "1101工作面"),
    ("0001", "face_t0", "1101上隅角"),
    ("0001", "face_t2", "1101回风巷"),
    ("0001", "face_intake", "1101进风巷"),
    ("0004", "face_t2", "1101回风巷CO"),
    ("0004", "face_t0", "1101上隅角CO"),
    ("0001", "heading_t1", "2201掘进工作面"),
    ("0001", "heading_t2", "2201掘进回风"),
    ("0004", "heading_t2", "2201掘进回风CO"),
    ("0001", "face_t1", "1102工作面"),
    ("0001", "face_t0", "1102上隅角"),
    ("0001", "face_t2", "1102回风巷"),
    ("0004", "face_t2", "1102回风巷CO"),
    ("0001", "panel_return", "一采区回风"),
    ("0001", "main_return", "总回风"),
    ("0004", "main_return", "总回风CO"),
    ("0001", "shearer", "1101采煤机"),
    ("0001", "drainage_roadway", "专用排瓦斯巷"),
    ("0002", "other", "1101回风风速"),
    ("0002", "other", "2201回风风速"),
    ("0002", "other", "总回风风速"),
    ("0003", "other", "1101回风温度"),
    ("0003", "other", "2201温度"),
    ("0003", "other", "机电硐室温度"),
    ("0012", "other", "1101回风氧气"),
    ("0012", "other", "2201氧气"),
    ("0013", "other", "总回风二氧化碳"),
    ("0014", "other", "1101粉尘"),
    ("0014", "other", "2201粉尘"),
    ("1010", "other", "主要通风机"),
    ("1001", "other", "2201局部通风机"),
    ("1015", "other", "1101馈电"),
];

/// The seal cameras of every simulated mine: (id, place).
pub const CAMERAS: [(&str, &str); 5] = [
    ("main-shaft", "main_shaft"),
    ("aux-shaft", "aux_shaft"),
    ("vent-shaft", "vent_shaft"),
    ("coal-gate", "vehicle_gate"),
    ("dispatch", "dispatch_room"),
];

/// Seconds between two samples of a simulated power meter.
pub const POWER_POLLING_SECS: f64 = 15.0;

/// Seconds between two heartbeats of a simulated seal camera.
pub const SEAL_HEARTBEAT_SECS: f64 = 20.0;

/// True for the mines the province declares stopped (the 10th, 20th, …).
pub fn is_stopped(i: usize) -> bool {
    i % 10 == 9
}

/// The declared maintenance load of mine `i`, kW (fans, pumps,
/// compressors, lighting: 700–1 100 kW).
pub fn maintenance_kw(i: usize) -> f64 {
    700.0 + 100.0 * (i % 5) as f64
}

/// The approved headcount of mine `i` (120–200 people).
pub fn approved_headcount(i: usize) -> u32 {
    120 + 20 * (i % 5) as u32
}

/// The code of mine `i` of the province.
pub fn mine_code(i: usize) -> String {
    format!("{}{:06}", COUNTIES[i % COUNTIES.len()].2, i + 1)
}

/// The national point code of point `j` of mine `mine`.
pub fn point_code(mine: &str, j: usize) -> String {
    let (sensor, _, _) = POINT_TEMPLATE[j % POINT_TEMPLATE.len()];
    let value_type = if sensor.starts_with('1') { "KG" } else { "MN" };
    format!("{mine}01{value_type}{sensor}{:03}", j + 1)
}

/// Generates the province.
pub fn province(spec: ProvinceSpec) -> Config {
    let mines = (0..spec.mines)
        .map(|i| {
            let (province, city, county) = COUNTIES[i % COUNTIES.len()];
            let code = mine_code(i);
            let points = (0..spec.points)
                .map(|j| {
                    let (sensor, location, place) = POINT_TEMPLATE[j % POINT_TEMPLATE.len()];
                    PointConfig {
                        code: point_code(&code, j),
                        sensor: sensor.into(),
                        location: location.into(),
                        place: Some(place.into()),
                        unit: None,
                        range: None,
                        polling_secs: None,
                        offline_after_secs: None,
                        alarm: None,
                        power_off: None,
                        restore: None,
                        substation: None,
                        air_path: None,
                    }
                })
                .collect();
            MineConfig {
                code,
                name: format!("模拟{}号煤矿", i + 1),
                province: province.into(),
                city: city.into(),
                county: county.into(),
                status: if is_stopped(i) {
                    MineStatus::Stopped
                } else {
                    MineStatus::Producing
                },
                polling_secs: spec.polling_secs,
                points,
                approved_headcount: Some(approved_headcount(i)),
                power: None,
                seal: None,
            }
        })
        .collect();
    Config {
        mines,
        ..Config::default()
    }
}

/// Gives every mine of a simulated province its electricity meter
/// (`POWER_POLLING_SECS`, its declared maintenance load) and its five seal
/// cameras (`SEAL_HEARTBEAT_SECS`): what the demo, `simulate` and the power
/// and seal scenarios run with. Without them (as [`province`] makes it) no
/// power or seal feed is expected.
pub fn with_feeds(mut config: Config) -> Config {
    for (i, m) in config.mines.iter_mut().enumerate() {
        m.power = Some(MinePowerConfig {
            polling_secs: Some(POWER_POLLING_SECS),
            maintenance_kw: Some(maintenance_kw(i)),
            idle_kw: Default::default(),
        });
        m.seal = Some(MineSealConfig {
            heartbeat_secs: Some(SEAL_HEARTBEAT_SECS),
            maintenance_crew: None,
            cameras: CAMERAS
                .iter()
                .map(|(id, place)| CameraConfig {
                    id: (*id).into(),
                    place: (*place).into(),
                })
                .collect(),
        });
    }
    config
}

/// Writes the mines of `config` as a config file (the other sections are
/// written as `header`, verbatim).
pub fn to_toml(config: &Config, header: &str) -> String {
    let mut out = String::from(header);
    for m in &config.mines {
        let status = match m.status {
            MineStatus::Producing => "producing",
            MineStatus::Stopped => "stopped",
            MineStatus::Building => "building",
            MineStatus::Closed => "closed",
        };
        let _ = write!(
            out,
            "\n[[mines]]\ncode = \"{}\"\nname = \"{}\"\nprovince = \"{}\"\ncity = \"{}\"\n\
             county = \"{}\"\nstatus = \"{status}\"\npolling_secs = {}\npoints = [\n",
            m.code, m.name, m.province, m.city, m.county, m.polling_secs
        );
        for p in &m.points {
            let path = p
                .air_path
                .map_or(String::new(), |n| format!(", air_path = {n}"));
            let _ = writeln!(
                out,
                "  {{ code = \"{}\", sensor = \"{}\", location = \"{}\", place = \"{}\"{path} }},",
                p.code,
                p.sensor,
                p.location,
                p.place.as_deref().unwrap_or("")
            );
        }
        out.push_str("]\n");
        if let Some(n) = m.approved_headcount {
            let _ = writeln!(out, "approved_headcount = {n}");
        }
        if let Some(p) = &m.power {
            let mut fields = Vec::new();
            if let Some(v) = p.polling_secs {
                fields.push(format!("polling_secs = {v}"));
            }
            if let Some(v) = p.maintenance_kw {
                fields.push(format!("maintenance_kw = {v}"));
            }
            if !p.idle_kw.is_empty() {
                let idle: Vec<String> = p
                    .idle_kw
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                fields.push(format!("idle_kw = {{ {} }}", idle.join(", ")));
            }
            let _ = writeln!(out, "power = {{ {} }}", fields.join(", "));
        }
        if let Some(s) = &m.seal {
            let _ = writeln!(out, "[mines.seal]");
            if let Some(v) = s.heartbeat_secs {
                let _ = writeln!(out, "heartbeat_secs = {v}");
            }
            if let Some(v) = s.maintenance_crew {
                let _ = writeln!(out, "maintenance_crew = {v}");
            }
            out.push_str("cameras = [\n");
            for c in &s.cameras {
                let _ = writeln!(out, "  {{ id = \"{}\", place = \"{}\" }},", c.id, c.place);
            }
            out.push_str("]\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, validate};

    #[test]
    fn the_province_is_valid_and_spread_over_counties() {
        let c = province(ProvinceSpec {
            mines: 20,
            points: 32,
            polling_secs: 5.0,
        });
        let issues = validate(&c);
        assert!(issues.is_empty(), "{issues:?}");
        let counties: std::collections::BTreeSet<&str> =
            c.mines.iter().map(|m| m.county.as_str()).collect();
        assert_eq!(counties.len(), 5);
        assert_eq!(c.mines[0].points[0].code, "14012100000101MN0001001");
        assert_eq!(c.mines[0].points[29].code, "14012100000101KG1010030");
    }

    #[test]
    fn written_config_parses_back_to_the_same_mines() {
        let c = with_feeds(province(ProvinceSpec {
            mines: 3,
            points: 40,
            polling_secs: 2.5,
        }));
        let text = to_toml(&c, "");
        let (back, warnings) = parse(&text).expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(back.mines.len(), 3);
        assert_eq!(back.mines[2].points.len(), 40);
        assert_eq!(back.mines[2].points[39].code, c.mines[2].points[39].code);
        assert_eq!(back.mines[2].power, c.mines[2].power);
        assert_eq!(back.mines[2].seal, c.mines[2].seal);
        assert_eq!(back.mines[2].approved_headcount, Some(160));
        assert_eq!(back.mines[1].polling_secs, 2.5);
    }
}
