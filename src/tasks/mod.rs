//! Duty-inspector tasks: who is on duty (the roster), which alerts need a
//! task, when a task is due, and what an inspector must record to close one.
//! The task rows themselves live in the store and change in the same
//! transactions as their alerts (`alert::lifecycle`).

use chrono::{Datelike, Timelike};
use serde::{Deserialize, Serialize};

use crate::config::alerting::{RosterConfig, parse_shift};
use crate::model::AlertKind;
use crate::store::RosterEntry;

/// Alerts that need someone to act get a task (falsification suspects,
/// suspected illegal production, overmanning and seal alerts included:
/// someone must verify them with the mine); a single silent point or a data
/// anomaly does not (a maintenance matter for the mine).
pub fn needs_task(kind: AlertKind) -> bool {
    matches!(
        kind,
        AlertKind::Evacuation
            | AlertKind::Overlimit
            | AlertKind::MineOffline
            | AlertKind::FalsificationSuspect
            | AlertKind::SuspectedIllegalProduction
            | AlertKind::Overmanning
            | AlertKind::SealAlert
    )
}

/// What an inspector records when closing a task (核查反馈): without every
/// field the task cannot close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// How it was verified: who at the mine was called, or the visit.
    pub contacted: String,
    /// The cause found.
    pub cause: String,
    /// The measures the mine took.
    pub measures: String,
    /// The result (e.g. gas back below the limit, people withdrawn).
    pub result: String,
}

impl Feedback {
    /// The names of the fields left empty.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("contacted", &self.contacted),
            ("cause", &self.cause),
            ("measures", &self.measures),
            ("result", &self.result),
        ]
        .into_iter()
        .filter(|(_, v)| v.trim().is_empty())
        .map(|(k, _)| k)
        .collect()
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Roster lines from config, in order.
pub fn roster_from_config(cfg: &[RosterConfig]) -> Vec<RosterEntry> {
    cfg.iter()
        .map(|r| {
            let (start_min, end_min) = r
                .shift
                .as_deref()
                .and_then(parse_shift)
                .unwrap_or((0, 1440));
            RosterEntry {
                id: 0,
                county: r.county.clone(),
                inspector: r.inspector.clone(),
                name: r.name.clone().unwrap_or_else(|| r.inspector.clone()),
                start_min,
                end_min,
                weekdays: r.days.clone(),
                source: "config".into(),
            }
        })
        .collect()
}

/// Checks a roster line given through the API; the error says what to fix.
pub fn check_entry(e: &RosterEntry) -> Result<(), String> {
    if e.county.len() != 6 || !e.county.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("county {:?} is not a six-digit code", e.county));
    }
    if e.inspector.trim().is_empty() {
        return Err("inspector must not be empty".into());
    }
    if !(0..=1440).contains(&e.start_min) || !(0..=1440).contains(&e.end_min) {
        return Err("start_min and end_min are minutes after midnight, 0..=1440".into());
    }
    if let Some(d) = e.weekdays.iter().find(|d| !DAYS.contains(&d.as_str())) {
        return Err(format!("unknown day {d:?}; use mon…sun"));
    }
    Ok(())
}

/// The first roster line on duty for `county` at `now_ms` (Beijing time).
pub fn on_duty<'a>(
    roster: &'a [RosterEntry],
    county: &str,
    now_ms: i64,
) -> Option<&'a RosterEntry> {
    let t = chrono::DateTime::from_timestamp_millis(now_ms)?
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600)?);
    let minute = i64::from(t.hour() * 60 + t.minute());
    let today = t.weekday().num_days_from_monday() as usize;
    let yesterday = (today + 6) % 7;
    let starts_on = |e: &RosterEntry, day: usize| {
        e.weekdays.is_empty() || e.weekdays.iter().any(|d| d == DAYS[day])
    };
    roster.iter().filter(|e| e.county == county).find(|e| {
        if e.start_min < e.end_min {
            starts_on(e, today) && (e.start_min..e.end_min).contains(&minute)
        } else if e.start_min > e.end_min {
            (starts_on(e, today) && minute >= e.start_min)
                || (starts_on(e, yesterday) && minute < e.end_min)
        } else {
            // Start = end: a whole day from that minute.
            starts_on(e, today)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(county: &str, who: &str, start: i64, end: i64, days: &[&str]) -> RosterEntry {
        RosterEntry {
            id: 0,
            county: county.into(),
            inspector: who.into(),
            name: who.into(),
            start_min: start,
            end_min: end,
            weekdays: days.iter().map(|d| d.to_string()).collect(),
            source: "config".into(),
        }
    }

    /// Beijing wall time 2026-11-23 (a Monday) HH:MM as epoch ms.
    fn bj(day: u32, h: u32, m: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(2026, 11, day)
            .and_then(|d| d.and_hms_opt(h, m, 0))
            .map(|t| t.and_utc().timestamp_millis() - 8 * 3600 * 1000)
            .unwrap()
    }

    #[test]
    fn day_and_night_shifts_cover_the_clock() {
        let roster = vec![
            entry("140421", "day", 8 * 60, 20 * 60, &[]),
            entry("140421", "night", 20 * 60, 8 * 60, &[]),
            entry("140422", "other", 0, 1440, &[]),
        ];
        let who = |ms| on_duty(&roster, "140421", ms).map(|e| e.inspector.as_str());
        assert_eq!(who(bj(23, 8, 0)), Some("day"));
        assert_eq!(who(bj(23, 19, 59)), Some("day"));
        assert_eq!(who(bj(23, 20, 0)), Some("night"));
        assert_eq!(who(bj(24, 3, 0)), Some("night"));
        assert_eq!(who(bj(24, 7, 59)), Some("night"));
        assert_eq!(on_duty(&roster, "140499", bj(23, 9, 0)), None);
    }

    #[test]
    fn an_overnight_shift_belongs_to_the_day_it_starts() {
        // Only Monday nights: Tuesday 03:00 is covered, Monday 03:00 is not.
        let roster = vec![entry("140421", "mon-night", 20 * 60, 8 * 60, &["mon"])];
        assert!(on_duty(&roster, "140421", bj(24, 3, 0)).is_some());
        assert!(on_duty(&roster, "140421", bj(23, 3, 0)).is_none());
        assert!(on_duty(&roster, "140421", bj(23, 21, 0)).is_some());
    }

    #[test]
    fn feedback_names_what_is_missing() {
        let f = Feedback {
            contacted: "调度室 王工".into(),
            cause: " ".into(),
            measures: "停电撤人".into(),
            result: String::new(),
        };
        assert_eq!(f.missing(), vec!["cause", "result"]);
    }

    #[test]
    fn bad_roster_lines_are_refused_with_the_reason() {
        assert!(check_entry(&entry("14042", "x", 0, 60, &[])).is_err());
        assert!(check_entry(&entry("140421", "", 0, 60, &[])).is_err());
        assert!(check_entry(&entry("140421", "x", 0, 1500, &[])).is_err());
        assert!(check_entry(&entry("140421", "x", 0, 60, &["monday"])).is_err());
        assert!(check_entry(&entry("140421", "x", 0, 60, &["mon"])).is_ok());
    }

    #[test]
    fn only_alerts_that_need_action_get_tasks() {
        assert!(needs_task(AlertKind::Evacuation));
        assert!(needs_task(AlertKind::MineOffline));
        assert!(!needs_task(AlertKind::PointOffline));
        assert!(needs_task(AlertKind::FalsificationSuspect));
        assert!(!needs_task(AlertKind::DataAnomaly));
    }
}
