//! `[alerting]`: where alerts are stored, how long an unacknowledged alert
//! waits before it is pushed again or escalated, the jurisdiction names, the
//! routes that say who is told what, and the duty roster.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{Issue, Level};

/// Seconds by alert severity.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct BySeverity {
    /// Evacuation (撤人).
    pub critical: u64,
    /// Over-limit, mine offline.
    pub major: u64,
    /// Point offline.
    pub minor: u64,
}

impl BySeverity {
    /// The value for `s`.
    pub fn get(&self, s: crate::model::Severity) -> u64 {
        match s {
            crate::model::Severity::Critical => self.critical,
            crate::model::Severity::Major => self.major,
            crate::model::Severity::Minor => self.minor,
        }
    }
}

/// Alert handling.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AlertingConfig {
    /// The store: `sqlite:PATH` or `postgres://user@host/db`; none means
    /// `sqlite:{daemon.data_dir}/minewatch.db`.
    pub store: Option<String>,
    /// An active, unacknowledged alert is pushed again this often, seconds
    /// (0 = never).
    pub renotify_secs: BySeverity,
    /// An active alert unacknowledged this long at one level escalates to
    /// the next (county → city → province), seconds (0 = never).
    pub escalate_after_secs: BySeverity,
    /// A duty task is due this long after its alert, seconds.
    pub task_due_secs: BySeverity,
    /// Alerts still active when the daemon stopped continue if a detector
    /// confirms them within this long after start; otherwise they are
    /// cleared as `unconfirmed_after_restart`, seconds.
    pub restart_grace_secs: u64,
    /// Names of jurisdictions by code (`"140400" = "长治市"`).
    pub jurisdictions: BTreeMap<String, String>,
    /// Who is told what.
    pub routes: Vec<RouteConfig>,
    /// Who is on duty.
    pub roster: Vec<RosterConfig>,
    /// Where pushes go.
    pub channels: Vec<super::channels::ChannelConfig>,
    /// The longest calibration window (`POST /api/calibrations`) a
    /// regulator may declare, hours: alerts starting inside one are graded
    /// planned, so a long one would hide real alerts.
    pub max_calibration_hours: u64,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            store: None,
            renotify_secs: BySeverity {
                critical: 300,
                major: 900,
                minor: 0,
            },
            escalate_after_secs: BySeverity {
                critical: 300,
                major: 1800,
                minor: 0,
            },
            task_due_secs: BySeverity {
                critical: 1800,
                major: 7200,
                minor: 86_400,
            },
            restart_grace_secs: 300,
            jurisdictions: BTreeMap::new(),
            routes: Vec::new(),
            roster: Vec::new(),
            channels: Vec::new(),
            max_calibration_hours: 7 * 24,
        }
    }
}

impl AlertingConfig {
    /// The store URL for a daemon whose data directory is `data_dir`.
    pub fn store_url(&self, data_dir: &Path) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", data_dir.join("minewatch.db").display()))
    }
}

/// One route: alerts of some kinds in a jurisdiction go to some channels.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteConfig {
    /// A name for logs.
    #[serde(default)]
    pub name: Option<String>,
    /// A county, city or province code, or `*` for every mine.
    pub jurisdiction: String,
    /// Alert kinds (`evacuation`, `overlimit`, `mine_offline`,
    /// `point_offline`); empty = all.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Sensor types (`methane`, `co`, or national codes); empty = all. Mine
    /// alerts have no sensor and pass only an empty list.
    #[serde(default)]
    pub sensors: Vec<String>,
    /// Transitions to push; empty = `raised`, `renotified`, `escalated`,
    /// `cleared`, `task_overdue`.
    #[serde(default)]
    pub transitions: Vec<String>,
    /// `at_once` (from the raise on) or `escalated` (only once the alert has
    /// escalated to this route's level). Default: `at_once` for a county,
    /// `escalated` for a city or province, `at_once` for `*`.
    #[serde(default)]
    pub when: Option<String>,
    /// Include planned (declared calibration) alerts; default true.
    #[serde(default = "yes")]
    pub planned: bool,
    /// Channel names.
    pub channels: Vec<String>,
}

fn yes() -> bool {
    true
}

/// One roster line.
#[derive(Debug, Clone, Deserialize)]
pub struct RosterConfig {
    /// County code.
    pub county: String,
    /// The inspector's user name.
    pub inspector: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Shift, Beijing time, `HH:MM-HH:MM` (an end before the start runs
    /// overnight); default all day.
    #[serde(default)]
    pub shift: Option<String>,
    /// Days the shift starts on (`mon`…`sun`); empty = every day.
    #[serde(default)]
    pub days: Vec<String>,
}

/// The transitions a route may name.
pub const TRANSITIONS: &[&str] = &[
    "raised",
    "renotified",
    "escalated",
    "cleared",
    "acknowledged",
    "disposed",
    "closed",
    "task_overdue",
];

/// Transitions pushed when a route names none.
pub const DEFAULT_TRANSITIONS: &[&str] = &[
    "raised",
    "renotified",
    "escalated",
    "cleared",
    "task_overdue",
];

const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses `HH:MM-HH:MM` into minutes after midnight.
pub fn parse_shift(s: &str) -> Option<(i64, i64)> {
    let (a, b) = s.split_once('-')?;
    let min = |t: &str| -> Option<i64> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
        ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 1440).then_some(h * 60 + m)
    };
    Some((min(a)?, min(b)?))
}

/// Checks `[alerting]` against the mines; pushes what it finds.
pub fn validate(a: &AlertingConfig, mines: &[super::MineConfig], out: &mut Vec<Issue>) {
    let mut err = |path: String, message: String, hint: &str| {
        out.push(Issue {
            level: Level::Error,
            path,
            message,
            hint: hint.into(),
        })
    };
    if a.max_calibration_hours == 0 || a.max_calibration_hours > 90 * 24 {
        err(
            "alerting.max_calibration_hours".into(),
            format!("{} is out of range", a.max_calibration_hours),
            "use 1..=2160; 168 (7 days) is usual",
        );
    }
    if let Some(url) = &a.store
        && !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
    {
        err(
            "alerting.store".into(),
            format!(
                "{:?} is neither a SQLite nor a PostgreSQL URL",
                crate::redact::secrets(url)
            ),
            "write sqlite:PATH or postgres://USER@HOST:5432/DB",
        );
    }
    super::channels::validate(&a.channels, out);
    let mut err = |path: String, message: String, hint: &str| {
        out.push(Issue {
            level: Level::Error,
            path,
            message,
            hint: hint.into(),
        })
    };
    let known: std::collections::HashSet<&str> = mines
        .iter()
        .flat_map(|m| [m.county.as_str(), m.city.as_str(), m.province.as_str()])
        .collect();
    let channels: std::collections::HashSet<&str> =
        a.channels.iter().map(|c| c.name.as_str()).collect();
    for (i, r) in a.routes.iter().enumerate() {
        let p = format!("alerting.routes[{i}]");
        if r.jurisdiction != "*" && !known.contains(r.jurisdiction.as_str()) {
            err(
                format!("{p}.jurisdiction"),
                format!(
                    "{:?} is no county, city or province of a configured mine",
                    r.jurisdiction
                ),
                "use a code from [[mines]] (county, city or province) or \"*\"",
            );
        }
        for k in &r.kinds {
            if crate::model::AlertKind::parse(k).is_none() {
                err(
                    format!("{p}.kinds"),
                    format!("unknown alert kind {k:?}"),
                    "use evacuation, overlimit, mine_offline or point_offline",
                );
            }
        }
        for s in &r.sensors {
            if crate::model::SensorType::parse(s).is_none() {
                err(
                    format!("{p}.sensors"),
                    format!("unknown sensor type {s:?}"),
                    "use methane, co or a four-digit national code",
                );
            }
        }
        for t in &r.transitions {
            if !TRANSITIONS.contains(&t.as_str()) {
                err(
                    format!("{p}.transitions"),
                    format!("unknown transition {t:?}"),
                    "use raised, renotified, escalated, cleared, acknowledged, disposed, closed or task_overdue",
                );
            }
        }
        if let Some(w) = &r.when
            && w != "at_once"
            && w != "escalated"
        {
            err(
                format!("{p}.when"),
                format!("unknown {w:?}"),
                "use \"at_once\" or \"escalated\"",
            );
        }
        if r.channels.is_empty() {
            err(
                format!("{p}.channels"),
                "a route needs at least one channel".into(),
                "name channels from [[alerting.channels]]",
            );
        }
        for c in &r.channels {
            if !channels.contains(c.as_str()) {
                err(
                    format!("{p}.channels"),
                    format!("no channel named {c:?}"),
                    "define it under [[alerting.channels]]",
                );
            }
        }
    }
    for (i, r) in a.roster.iter().enumerate() {
        let p = format!("alerting.roster[{i}]");
        if !mines.iter().any(|m| m.county == r.county) {
            out.push(Issue {
                level: Level::Warning,
                path: format!("{p}.county"),
                message: format!("no configured mine is in county {:?}", r.county),
                hint: "check the code; mines defined by national files at run time are fine".into(),
            });
        }
        if r.inspector.trim().is_empty() {
            out.push(Issue {
                level: Level::Error,
                path: format!("{p}.inspector"),
                message: "must not be empty".into(),
                hint: "the inspector's user name".into(),
            });
        }
        if let Some(s) = &r.shift
            && parse_shift(s).is_none()
        {
            out.push(Issue {
                level: Level::Error,
                path: format!("{p}.shift"),
                message: format!("{s:?} is not a shift"),
                hint: "write HH:MM-HH:MM in Beijing time, e.g. 08:00-20:00 or 20:00-08:00".into(),
            });
        }
        for d in &r.days {
            if !WEEKDAYS.contains(&d.as_str()) {
                out.push(Issue {
                    level: Level::Error,
                    path: format!("{p}.days"),
                    message: format!("unknown day {d:?}"),
                    hint: "use mon, tue, wed, thu, fri, sat, sun".into(),
                });
            }
        }
    }
    if a.restart_grace_secs == 0 {
        out.push(Issue {
            level: Level::Warning,
            path: "alerting.restart_grace_secs".into(),
            message: "0 clears every alert still active at start at once".into(),
            hint: "300 is usual: detectors need a few polls to confirm".into(),
        });
    }
}
