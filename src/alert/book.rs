//! The alert book: every active alert and the most recent resolved ones,
//! newest first, with the filters of `GET /api/alerts`.
//!
//! Written only by the alert stage; read by the HTTP handlers. Resolved
//! alerts beyond the capacity are forgotten oldest first (the durable store
//! of issue #5 keeps them all); active alerts are never dropped.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Alert, AlertKind, Millis, MineIdx, PointIdx};

type Key = (AlertKind, MineIdx, Option<PointIdx>);

struct Entry {
    alert: Alert,
    started_ms: Millis,
    resolved_ms: Option<Millis>,
}

/// Active and recent alerts.
pub struct AlertBook {
    entries: BTreeMap<u64, Entry>,
    active: HashMap<Key, u64>,
    next: u64,
    capacity: usize,
}

/// What `GET /api/alerts` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Only active (`true`) or only resolved (`false`) alerts.
    pub active: Option<bool>,
    /// Only this mine code.
    pub mine: Option<String>,
    /// Only this county code.
    pub county: Option<String>,
    /// Only this kind.
    pub kind: Option<AlertKind>,
    /// Only alerts that were active at some time at or after this.
    pub since: Option<Millis>,
    /// At most this many.
    pub limit: usize,
}

impl AlertFilter {
    /// True when `alert` passes every condition but `since` and `limit`.
    pub fn matches(&self, alert: &Alert) -> bool {
        self.active.is_none_or(|a| a == alert.is_active())
            && self.mine.as_ref().is_none_or(|m| *m == alert.mine)
            && self.county.as_ref().is_none_or(|c| *c == alert.county)
            && self.kind.is_none_or(|k| k == alert.kind)
    }
}

fn parse_ms(rfc3339: &str) -> Millis {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

impl AlertBook {
    /// A book keeping up to `capacity` resolved alerts.
    pub fn new(capacity: usize) -> AlertBook {
        AlertBook {
            entries: BTreeMap::new(),
            active: HashMap::new(),
            next: 0,
            capacity,
        }
    }

    /// Adds an alert under `key`; false when one is already active there.
    pub fn raise(&mut self, key: Key, alert: Alert) -> bool {
        if self.active.contains_key(&key) {
            return false;
        }
        self.next += 1;
        self.active.insert(key, self.next);
        let started_ms = parse_ms(&alert.started_at);
        self.entries.insert(
            self.next,
            Entry {
                alert,
                started_ms,
                resolved_ms: None,
            },
        );
        self.evict();
        true
    }

    /// Raises the peak of the active alert under `key`; returns it when the
    /// peak grew.
    pub fn update_peak(&mut self, key: &Key, value: f64) -> Option<Alert> {
        let seq = self.active.get(key)?;
        let entry = self.entries.get_mut(seq)?;
        if entry.alert.peak.is_some_and(|p| p >= value) {
            return None;
        }
        entry.alert.peak = Some(value);
        Some(entry.alert.clone())
    }

    /// Resolves the active alert under `key` at `at` (RFC 3339).
    pub fn resolve(&mut self, key: &Key, at: String) -> Option<Alert> {
        let seq = self.active.remove(key)?;
        let entry = self.entries.get_mut(&seq)?;
        entry.resolved_ms = Some(parse_ms(&at));
        entry.alert.resolved_at = Some(at);
        Some(entry.alert.clone())
    }

    /// Alerts matching `filter`, newest first.
    pub fn query(&self, filter: &AlertFilter) -> Vec<Alert> {
        self.entries
            .values()
            .rev()
            .filter(|e| filter.matches(&e.alert))
            .filter(|e| {
                filter
                    .since
                    .is_none_or(|s| e.started_ms >= s || e.resolved_ms.is_none_or(|r| r >= s))
            })
            .take(filter.limit)
            .map(|e| e.alert.clone())
            .collect()
    }

    /// Active alerts, newest first.
    pub fn active(&self) -> Vec<Alert> {
        self.query(&AlertFilter {
            active: Some(true),
            limit: usize::MAX,
            ..AlertFilter::default()
        })
    }

    /// Number of alerts held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no alert is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn evict(&mut self) {
        let resolved = self.entries.len() - self.active.len();
        if resolved <= self.capacity {
            return;
        }
        let mut excess = resolved - self.capacity;
        let old: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.resolved_ms.is_some())
            .map(|(k, _)| *k)
            .take_while(|_| {
                let go = excess > 0;
                excess = excess.saturating_sub(1);
                go
            })
            .collect();
        for k in old {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

    fn alert(kind: AlertKind, mine: &str, started: &str) -> Alert {
        Alert {
            id: format!("{mine}-{started}"),
            kind,
            severity: Severity::Major,
            mine: mine.into(),
            mine_name: String::new(),
            county: "140121".into(),
            city: "140100".into(),
            province: "140000".into(),
            point: None,
            sensor: None,
            location: None,
            unit: None,
            value: Some(1.0),
            peak: Some(1.0),
            threshold: None,
            rule: String::new(),
            started_at: started.into(),
            resolved_at: None,
            last_seen: None,
        }
    }

    #[test]
    fn one_alert_per_key_until_resolved() {
        let mut b = AlertBook::new(10);
        let k = (AlertKind::Overlimit, 0, Some(1));
        assert!(b.raise(k, alert(AlertKind::Overlimit, "m", "2026-11-23T00:00:00Z")));
        assert!(!b.raise(k, alert(AlertKind::Overlimit, "m", "2026-11-23T00:00:01Z")));
        assert_eq!(b.update_peak(&k, 1.5).unwrap().peak, Some(1.5));
        assert!(b.update_peak(&k, 1.2).is_none());
        let r = b.resolve(&k, "2026-11-23T00:01:00Z".into()).unwrap();
        assert_eq!(r.resolved_at.as_deref(), Some("2026-11-23T00:01:00Z"));
        assert!(b.resolve(&k, "x".into()).is_none());
        assert!(b.raise(k, alert(AlertKind::Overlimit, "m", "2026-11-23T00:02:00Z")));
        assert_eq!(b.len(), 2);
        assert_eq!(b.active().len(), 1);
    }

    #[test]
    fn filters_and_newest_first() {
        let mut b = AlertBook::new(10);
        b.raise(
            (AlertKind::Overlimit, 0, Some(0)),
            alert(AlertKind::Overlimit, "a", "2026-11-23T00:00:00Z"),
        );
        b.raise(
            (AlertKind::MineOffline, 1, None),
            alert(AlertKind::MineOffline, "b", "2026-11-23T01:00:00Z"),
        );
        b.resolve(
            &(AlertKind::Overlimit, 0, Some(0)),
            "2026-11-23T00:30:00Z".into(),
        );
        let all = AlertFilter {
            limit: 100,
            ..Default::default()
        };
        let got: Vec<String> = b.query(&all).into_iter().map(|a| a.mine).collect();
        assert_eq!(got, ["b", "a"]);
        let q = |f: AlertFilter| b.query(&f).len();
        assert_eq!(
            q(AlertFilter {
                active: Some(true),
                ..all.clone()
            }),
            1
        );
        assert_eq!(
            q(AlertFilter {
                mine: Some("a".into()),
                ..all.clone()
            }),
            1
        );
        assert_eq!(
            q(AlertFilter {
                county: Some("999999".into()),
                ..all.clone()
            }),
            0
        );
        assert_eq!(
            q(AlertFilter {
                kind: Some(AlertKind::MineOffline),
                ..all.clone()
            }),
            1
        );
        let since = parse_ms("2026-11-23T00:45:00Z");
        assert_eq!(
            q(AlertFilter {
                since: Some(since),
                ..all.clone()
            }),
            1
        );
        assert_eq!(q(AlertFilter { limit: 1, ..all }), 1);
    }

    #[test]
    fn old_resolved_alerts_are_evicted_active_ones_never() {
        let mut b = AlertBook::new(2);
        b.raise(
            (AlertKind::MineOffline, 9, None),
            alert(AlertKind::MineOffline, "keep", "2026-11-23T00:00:00Z"),
        );
        for i in 0..5 {
            let k = (AlertKind::Overlimit, 0, Some(i));
            b.raise(
                k,
                alert(
                    AlertKind::Overlimit,
                    &format!("m{i}"),
                    "2026-11-23T00:00:00Z",
                ),
            );
            b.resolve(&k, "2026-11-23T00:00:01Z".into());
        }
        b.raise(
            (AlertKind::Overlimit, 0, Some(99)),
            alert(AlertKind::Overlimit, "new", "2026-11-23T00:00:00Z"),
        );
        let mines: Vec<String> = b
            .query(&AlertFilter {
                limit: 100,
                ..Default::default()
            })
            .into_iter()
            .map(|a| a.mine)
            .collect();
        assert_eq!(mines, ["new", "m4", "m3", "keep"]);
    }
}
