//! Readiness: whether the daemon is doing its job, not only alive.
//!
//! `GET /healthz` answers 200 as long as the process serves HTTP (liveness:
//! restart it when that fails); `GET /readyz` answers 200
//! `{"status":"ok"}` or 503 `{"status":"degraded","reasons":[…]}` (take it
//! out of a load balancer, page somebody). Both bodies carry the status and
//! the reasons. A reason is one of:
//!
//! - `mqtt_disconnected`: the ingest session has been down for more than
//!   `health.mqtt_down_secs`;
//! - `no_readings`: no reading from any mine has been accepted for
//!   `health.no_readings_secs` (only when points are configured, and
//!   counted from the start, which is the start grace);
//! - `archive_paused`: the archive writer takes no more rows: its
//!   unwritten rows reach `archive.max_buffered_bytes` or
//!   `max_buffered_rows` and the disk refuses their writes (ingest is held
//!   back);
//! - `store_refusing`: the alert store refused the alert stage's last
//!   write (changes wait in memory for it).
//!
//! The daemon samples the metrics every tick ([`Health::observe`]); the
//! verdict is worked out on each request from the last samples and the
//! current metrics.

use std::sync::Mutex;

use prometheus::core::Collector;
use serde::Serialize;

use crate::config::HealthConfig;
use crate::metrics::Metrics;
use crate::model::Millis;

/// What the health rules read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The ingest MQTT session is connected and subscribed.
    pub mqtt_connected: bool,
    /// Readings accepted so far, every source.
    pub readings: u64,
    /// The archive writer takes no more rows.
    pub archive_paused: bool,
    /// The alert store refused the last write.
    pub store_refusing: bool,
    /// Points configured (at run time too).
    pub points: usize,
}

impl Sample {
    /// Reads a sample from the metrics.
    pub fn of(metrics: &Metrics, points: usize) -> Sample {
        let readings = metrics
            .accepted
            .collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum();
        Sample {
            mqtt_connected: metrics.mqtt_connected.get() == 1,
            readings,
            archive_paused: metrics.archive_writer_paused.get() == 1,
            store_refusing: metrics.store_refusing.get() == 1,
            points,
        }
    }
}

/// One reason the daemon is degraded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// A stable key (`mqtt_disconnected`, `no_readings`, `archive_paused`,
    /// `store_refusing`).
    pub reason: &'static str,
    /// The particulars, for a person.
    pub detail: String,
}

/// The readiness verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// Why it is degraded (empty when ok).
    pub reasons: Vec<Reason>,
}

impl Verdict {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// What the rules remember between samples.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Processing time the MQTT session was first seen down, while it is.
    mqtt_down_since: Option<Millis>,
    /// The accepted count last seen, and when it last changed (the start
    /// until a first reading).
    readings: u64,
    readings_changed: Millis,
}

/// The readiness rules and their memory.
pub struct Health {
    mqtt_down_ms: i64,
    no_readings_ms: i64,
    seen: Mutex<Seen>,
}

impl Health {
    /// Rules of `cfg`, for a daemon started at processing time `started`.
    pub fn new(cfg: &HealthConfig, started: Millis) -> Health {
        Health {
            mqtt_down_ms: (cfg.mqtt_down_secs as i64).saturating_mul(1000),
            no_readings_ms: (cfg.no_readings_secs as i64).saturating_mul(1000),
            seen: Mutex::new(Seen {
                // Down from the start until the first connection.
                mqtt_down_since: Some(started),
                readings: 0,
                readings_changed: started,
            }),
        }
    }

    /// Takes a sample at processing time `now`.
    pub fn observe(&self, s: Sample, now: Millis) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if s.mqtt_connected {
            seen.mqtt_down_since = None;
        } else if seen.mqtt_down_since.is_none() {
            seen.mqtt_down_since = Some(now);
        }
        if s.readings != seen.readings {
            seen.readings = s.readings;
            seen.readings_changed = now;
        }
    }

    /// Samples `s` at `now`, then judges.
    pub fn verdict(&self, s: Sample, now: Millis) -> Verdict {
        self.observe(s, now);
        let seen = match self.seen.lock() {
            Ok(g) => *g,
            Err(_) => {
                return Verdict {
                    status: "degraded",
                    reasons: vec![Reason {
                        reason: "internal",
                        detail: "the health state is poisoned".into(),
                    }],
                };
            }
        };
        let mut reasons = Vec::new();
        if let Some(since) = seen.mqtt_down_since
            && now - since > self.mqtt_down_ms
        {
            reasons.push(Reason {
                reason: "mqtt_disconnected",
                detail: format!(
                    "the MQTT broker has been disconnected for {} s (health.mqtt_down_secs = {})",
                    (now - since) / 1000,
                    self.mqtt_down_ms / 1000
                ),
            });
        }
        if s.points > 0 && now - seen.readings_changed > self.no_readings_ms {
            reasons.push(Reason {
                reason: "no_readings",
                detail: format!(
                    "no reading from any mine for {} s (health.no_readings_secs = {})",
                    (now - seen.readings_changed) / 1000,
                    self.no_readings_ms / 1000
                ),
            });
        }
        if s.archive_paused {
            reasons.push(Reason {
                reason: "archive_paused",
                detail: "the archive writer takes no more rows: its unwritten rows reach \
                         archive.max_buffered_bytes or max_buffered_rows and the disk refuses \
                         their writes; ingest is held back"
                    .into(),
            });
        }
        if s.store_refusing {
            reasons.push(Reason {
                reason: "store_refusing",
                detail: "the alert store refused the last write; alert changes wait in memory"
                    .into(),
            });
        }
        Verdict {
            status: if reasons.is_empty() { "ok" } else { "degraded" },
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        let cfg = HealthConfig {
            mqtt_down_secs: 30,
            no_readings_secs: 120,
        };
        Health::new(&cfg, 0)
    }

    fn sample(mqtt: bool, readings: u64) -> Sample {
        Sample {
            mqtt_connected: mqtt,
            readings,
            archive_paused: false,
            store_refusing: false,
            points: 10,
        }
    }

    fn keys(v: &Verdict) -> Vec<&'static str> {
        v.reasons.iter().map(|r| r.reason).collect()
    }

    #[test]
    fn a_broker_down_for_longer_than_the_limit_degrades() {
        let h = health();
        assert!(h.verdict(sample(false, 0), 10_000).is_ok(), "start grace");
        assert!(h.verdict(sample(true, 1), 20_000).is_ok());
        h.observe(sample(false, 2), 40_000);
        assert!(
            h.verdict(sample(false, 3), 70_000).is_ok(),
            "30 s: not more"
        );
        let v = h.verdict(sample(false, 4), 70_001);
        assert_eq!(keys(&v), ["mqtt_disconnected"]);
        assert_eq!(v.status, "degraded");
        assert!(v.reasons[0].detail.contains("30 s"), "{v:?}");
        assert!(h.verdict(sample(true, 5), 71_000).is_ok(), "back");
        // Never connected since the start counts from the start.
        let h = health();
        assert_eq!(
            keys(&h.verdict(sample(false, 0), 31_000)),
            ["mqtt_disconnected"]
        );
    }

    #[test]
    fn no_reading_for_longer_than_the_limit_degrades_once_points_exist() {
        let h = health();
        assert!(h.verdict(sample(true, 0), 120_000).is_ok(), "start grace");
        assert_eq!(keys(&h.verdict(sample(true, 0), 120_001)), ["no_readings"]);
        assert!(h.verdict(sample(true, 7), 130_000).is_ok());
        assert!(h.verdict(sample(true, 7), 250_000).is_ok());
        assert_eq!(keys(&h.verdict(sample(true, 7), 250_001)), ["no_readings"]);
        // Without points, silence is expected.
        let quiet = Sample {
            points: 0,
            ..sample(true, 7)
        };
        assert!(h.verdict(quiet, 900_000).is_ok());
    }

    #[test]
    fn a_paused_archive_and_a_refusing_store_degrade_at_once() {
        let h = health();
        let s = Sample {
            archive_paused: true,
            store_refusing: true,
            ..sample(true, 1)
        };
        assert_eq!(
            keys(&h.verdict(s, 1000)),
            ["archive_paused", "store_refusing"]
        );
    }
}
