//! The daemon's Prometheus metrics, in one registry per daemon (so tests and
//! benches can run several daemons in one process), served at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::ingest::RejectReason;
use crate::model::AlertKind;

/// Every metric minewatch exports.
pub struct Metrics {
    /// The registry the metrics live in.
    pub registry: Registry,
    /// Messages received, by source.
    pub messages: IntCounterVec,
    /// Readings accepted into the pipeline, by source.
    pub accepted: IntCounterVec,
    /// Records rejected, by reason.
    pub rejected: IntCounterVec,
    /// Readings older than the newest already applied for their point.
    pub late: IntCounter,
    /// Readings flagged calibration (recorded, no alarm).
    pub calibration: IntCounter,
    /// Readings without a value (fault, not polled, paused).
    pub no_value: IntCounter,
    /// Batches waiting in each shard's queue.
    pub queue_depth: IntGaugeVec,
    /// Time from receipt of a message to its readings having passed the
    /// detectors, seconds.
    pub detector_latency: Histogram,
    /// Time from receipt of the reading that raised an alert to the alert
    /// being raised, seconds.
    pub alert_latency: Histogram,
    /// Alerts raised, by kind.
    pub alerts_raised: IntCounterVec,
    /// Alerts active now, by kind.
    pub alerts_active: IntGaugeVec,
    /// Alert messages not published to MQTT because the publisher's queue
    /// was full (the alert is still in the API, the SSE feed and the log).
    pub alert_publish_dropped: IntCounter,
    /// 1 while the ingest MQTT session is connected and subscribed.
    pub mqtt_connected: IntGauge,
    /// MQTT connection errors (each followed by a reconnect with backoff).
    pub mqtt_connection_errors: IntCounter,
    /// Ticks not delivered because a shard already had one waiting.
    pub ticks_coalesced: IntCounter,
    /// National files handled, by type and outcome.
    pub netfile_files: IntCounterVec,
    /// National file records accepted, by type.
    pub netfile_records: IntCounterVec,
    /// Points whose declared levels (CDDY) are looser than the rule.
    pub declared_looser: IntCounter,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Metrics {
    /// Creates and registers every metric; label values known in advance
    /// (reasons, kinds) are pre-set to 0 so dashboards see them.
    pub fn new(shards: usize) -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge_vec = |name: &str, help: &str, label: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let m = Metrics {
            messages: counter_vec(
                "minewatch_messages_received_total",
                "Messages received, by source",
                "source",
            ),
            accepted: counter_vec(
                "minewatch_readings_accepted_total",
                "Readings accepted into the pipeline, by source",
                "source",
            ),
            rejected: counter_vec(
                "minewatch_records_rejected_total",
                "Records (readings, or whole messages that could not be split) rejected, by reason",
                "reason",
            ),
            late: counter(
                "minewatch_readings_late_total",
                "Readings older than the newest already applied for their point",
            ),
            calibration: counter(
                "minewatch_readings_calibration_total",
                "Readings flagged calibration (recorded, no alarm)",
            ),
            no_value: counter(
                "minewatch_readings_without_value_total",
                "Readings flagged sensor fault, substation fault, not polled or paused",
            ),
            queue_depth: gauge_vec(
                "minewatch_shard_queue_depth",
                "Batches waiting in a detector shard's queue",
                "shard",
            ),
            detector_latency: histogram(
                "minewatch_detector_latency_seconds",
                "From receipt of a message to its readings having passed the detectors",
            ),
            alert_latency: histogram(
                "minewatch_alert_latency_seconds",
                "From receipt of the reading that raised an alert to the alert being raised",
            ),
            alerts_raised: counter_vec(
                "minewatch_alerts_raised_total",
                "Alerts raised, by kind",
                "kind",
            ),
            alerts_active: gauge_vec(
                "minewatch_alerts_active",
                "Alerts active now, by kind",
                "kind",
            ),
            alert_publish_dropped: counter(
                "minewatch_alert_publish_dropped_total",
                "Alert messages not published to MQTT because the publisher queue was full",
            ),
            mqtt_connected: {
                let g = IntGauge::new(
                    "minewatch_mqtt_connected",
                    "1 while the ingest MQTT session is connected and subscribed",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            mqtt_connection_errors: counter(
                "minewatch_mqtt_connection_errors_total",
                "MQTT connection errors, each followed by a reconnect with backoff",
            ),
            ticks_coalesced: counter(
                "minewatch_ticks_coalesced_total",
                "Ticks not delivered because a shard already had one waiting",
            ),
            netfile_files: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "minewatch_netfile_files_total",
                        "National files handled, by type and outcome",
                    ),
                    &["type", "outcome"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            netfile_records: counter_vec(
                "minewatch_netfile_records_total",
                "National file records accepted, by type",
                "type",
            ),
            declared_looser: counter(
                "minewatch_declared_looser_than_rule_total",
                "Point definitions (CDDY) whose declared levels are looser than the rule",
            ),
            registry,
        };
        for reason in RejectReason::ALL {
            m.rejected.with_label_values(&[reason.key()]);
        }
        for kind in [
            AlertKind::Overlimit,
            AlertKind::Evacuation,
            AlertKind::PointOffline,
            AlertKind::MineOffline,
        ] {
            m.alerts_raised.with_label_values(&[kind.key()]);
            m.alerts_active.with_label_values(&[kind.key()]);
        }
        for shard in 0..shards {
            m.queue_depth.with_label_values(&[&shard.to_string()]);
        }
        m.accepted.with_label_values(&["mqtt"]);
        m.accepted.with_label_values(&["netfile"]);
        for t in ["CDDY", "CDSS", "FZSS", "YCBJ", "TJSJ"] {
            m.netfile_records.with_label_values(&[t]);
            for outcome in ["processed", "duplicate", "quarantined"] {
                m.netfile_files.with_label_values(&[t, outcome]);
            }
        }
        m.messages.with_label_values(&["mqtt"]);
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reject_reason_and_kind_is_exported_from_the_start() {
        let m = Metrics::new(2);
        let text = m.render();
        for reason in RejectReason::ALL {
            assert!(
                text.contains(&format!("reason=\"{}\"", reason.key())),
                "{}",
                reason.key()
            );
        }
        assert!(text.contains("minewatch_alerts_active{kind=\"evacuation\"} 0"));
        assert!(text.contains("minewatch_shard_queue_depth{shard=\"1\"} 0"));
    }
}
