//! Routing: which channels hear of which alert transition. Built once from
//! `[[alerting.routes]]`; pure, so the lifecycle and the tests share it.
//!
//! A route matches an alert when the alert's mine lies in the route's
//! jurisdiction (its county, city or province code, or `*`), its kind and
//! sensor are listed (or the lists are empty), and the transition is one the
//! route pushes. A route `when = "escalated"` hears of an alert only once it
//! has escalated to the route's own level: a city desk is told when the
//! county has not acknowledged in time, the province after the city.

use std::collections::BTreeSet;

use crate::config::alerting::{AlertingConfig, DEFAULT_TRANSITIONS};
use crate::model::{Alert, AlertKind, SensorType};

/// Jurisdiction levels, lowest first.
pub const LEVELS: [&str; 3] = ["county", "city", "province"];

/// The rank of a level name (county 0, city 1, province 2).
pub fn level_rank(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(0)
}

/// The level above `level`, if any.
pub fn next_level(level: &str) -> Option<&'static str> {
    LEVELS.get(level_rank(level) + 1).copied()
}

#[derive(Debug, Clone)]
struct Route {
    name: String,
    jurisdiction: String,
    kinds: Vec<AlertKind>,
    sensors: Vec<u16>,
    transitions: Vec<String>,
    escalated_only: bool,
    planned: bool,
    channels: Vec<String>,
}

/// The routes.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    routes: Vec<Route>,
}

/// The level of a jurisdiction code for an alert: county, city or province.
fn rank_of(code: &str, alert: &Alert) -> usize {
    if code == alert.county {
        0
    } else if code == alert.city {
        1
    } else {
        2
    }
}

impl Routing {
    /// Routing from a validated config.
    pub fn build(cfg: &AlertingConfig) -> Routing {
        let routes = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // A six-digit code ending 0000 is a province, 00 a city.
                let is_county = r.jurisdiction.len() == 6 && !r.jurisdiction.ends_with("00");
                let escalated_only = match r.when.as_deref() {
                    Some("escalated") => true,
                    Some(_) => false,
                    None => r.jurisdiction != "*" && !is_county,
                };
                Route {
                    name: r.name.clone().unwrap_or_else(|| format!("routes[{i}]")),
                    jurisdiction: r.jurisdiction.clone(),
                    kinds: r.kinds.iter().filter_map(|k| AlertKind::parse(k)).collect(),
                    sensors: r
                        .sensors
                        .iter()
                        .filter_map(|s| SensorType::parse(s))
                        .map(SensorType::code)
                        .collect(),
                    transitions: if r.transitions.is_empty() {
                        DEFAULT_TRANSITIONS.iter().map(|t| t.to_string()).collect()
                    } else {
                        r.transitions.clone()
                    },
                    escalated_only,
                    planned: r.planned,
                    channels: r.channels.clone(),
                }
            })
            .collect();
        Routing { routes }
    }

    /// The channels that hear of `transition` of `alert`, which stands at
    /// `level` and is `planned` or not; each channel once, in name order.
    pub fn channels(
        &self,
        alert: &Alert,
        level: &str,
        planned: bool,
        transition: &str,
    ) -> BTreeSet<String> {
        let reached = level_rank(level);
        let mut out = BTreeSet::new();
        for r in &self.routes {
            let inside = r.jurisdiction == "*"
                || r.jurisdiction == alert.county
                || r.jurisdiction == alert.city
                || r.jurisdiction == alert.province;
            if !inside || !r.transitions.iter().any(|t| t == transition) {
                continue;
            }
            if !r.kinds.is_empty() && !r.kinds.contains(&alert.kind) {
                continue;
            }
            if !r.sensors.is_empty() {
                let code = alert
                    .sensor
                    .as_deref()
                    .and_then(SensorType::parse)
                    .map(SensorType::code);
                if !code.is_some_and(|c| r.sensors.contains(&c)) {
                    continue;
                }
            }
            if planned && !r.planned {
                continue;
            }
            if r.escalated_only {
                let own = if r.jurisdiction == "*" {
                    2
                } else {
                    rank_of(&r.jurisdiction, alert)
                };
                if reached < own {
                    continue;
                }
            }
            tracing::trace!(route = %r.name, alert = %alert.id, transition, "route matches");
            out.extend(r.channels.iter().cloned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alerting::RouteConfig;
    use crate::model::Severity;

    fn alert(kind: AlertKind, sensor: Option<&str>) -> Alert {
        Alert {
            id: "a1".into(),
            kind,
            severity: Severity::Major,
            mine: "140421000001".into(),
            mine_name: "一号矿".into(),
            county: "140421".into(),
            city: "140400".into(),
            province: "140000".into(),
            point: sensor.map(|_| "p1".into()),
            sensor: sensor.map(str::to_string),
            location: None,
            unit: None,
            value: None,
            peak: None,
            threshold: None,
            rule: String::new(),
            reason: None,
            started_at: "2026-11-23T00:00:00.000Z".into(),
            resolved_at: None,
            last_seen: None,
            crossings: None,
        }
    }

    fn route(j: &str, kinds: &[&str], sensors: &[&str], ch: &str) -> RouteConfig {
        RouteConfig {
            name: None,
            jurisdiction: j.into(),
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            sensors: sensors.iter().map(|s| s.to_string()).collect(),
            transitions: Vec::new(),
            when: None,
            planned: true,
            channels: vec![ch.into()],
        }
    }

    fn routing(routes: Vec<RouteConfig>) -> Routing {
        Routing::build(&AlertingConfig {
            routes,
            ..AlertingConfig::default()
        })
    }

    #[test]
    fn a_county_hears_of_its_own_mines_at_once_and_of_no_other() {
        let r = routing(vec![
            route(
                "140421",
                &["overlimit", "evacuation"],
                &["methane", "co"],
                "lucheng",
            ),
            route("140422", &[], &[], "other-county"),
        ]);
        let a = alert(AlertKind::Overlimit, Some("0001"));
        assert_eq!(
            r.channels(&a, "county", false, "raised")
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["lucheng"]
        );
        // A point going silent is not what this county route asked for.
        let off = alert(AlertKind::PointOffline, Some("0001"));
        assert!(r.channels(&off, "county", false, "raised").is_empty());
        // Acknowledgements are not pushed unless named.
        assert!(r.channels(&a, "county", false, "acknowledged").is_empty());
    }

    #[test]
    fn a_city_hears_only_once_escalated_and_the_province_desk_hears_everything() {
        let r = routing(vec![
            route("140400", &[], &[], "city"),
            route("*", &[], &[], "desk"),
        ]);
        let a = alert(AlertKind::Evacuation, Some("0001"));
        let at = |level| r.channels(&a, level, false, "raised");
        assert_eq!(at("county").into_iter().collect::<Vec<_>>(), vec!["desk"]);
        assert_eq!(
            r.channels(&a, "city", false, "escalated")
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["city", "desk"]
        );
        assert_eq!(at("province").len(), 2);
    }

    #[test]
    fn a_city_route_can_ask_to_hear_at_once() {
        let mut c = route("140400", &["mine_offline"], &[], "city");
        c.when = Some("at_once".into());
        let r = routing(vec![c]);
        let a = alert(AlertKind::MineOffline, None);
        assert_eq!(r.channels(&a, "county", false, "raised").len(), 1);
    }

    #[test]
    fn sensor_lists_exclude_mine_alerts_and_other_gases() {
        let r = routing(vec![route("140421", &[], &["co"], "co-only")]);
        assert!(
            r.channels(
                &alert(AlertKind::Overlimit, Some("0001")),
                "county",
                false,
                "raised"
            )
            .is_empty()
        );
        assert_eq!(
            r.channels(
                &alert(AlertKind::Overlimit, Some("0004")),
                "county",
                false,
                "raised"
            )
            .len(),
            1
        );
        assert!(
            r.channels(
                &alert(AlertKind::MineOffline, None),
                "county",
                false,
                "raised"
            )
            .is_empty()
        );
    }

    #[test]
    fn planned_alerts_skip_routes_that_exclude_them() {
        let mut c = route("140421", &[], &[], "c");
        c.planned = false;
        let r = routing(vec![c]);
        let a = alert(AlertKind::Overlimit, Some("0001"));
        assert!(r.channels(&a, "county", true, "raised").is_empty());
        assert_eq!(r.channels(&a, "county", false, "raised").len(), 1);
    }

    #[test]
    fn two_routes_to_one_channel_give_one_push() {
        let r = routing(vec![
            route("140421", &[], &[], "same"),
            route("*", &[], &[], "same"),
        ]);
        let a = alert(AlertKind::Overlimit, Some("0001"));
        assert_eq!(r.channels(&a, "county", false, "raised").len(), 1);
    }

    #[test]
    fn levels_step_up_to_the_province_and_stop() {
        assert_eq!(next_level("county"), Some("city"));
        assert_eq!(next_level("city"), Some("province"));
        assert_eq!(next_level("province"), None);
    }
}
