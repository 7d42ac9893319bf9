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
    /// Late readings older than their point's newest by more than
    /// `detect.allowed_lateness_secs` (also a timestamp anomaly).
    pub beyond_lateness: IntCounter,
    /// Readings with the same timestamp as their point's newest (resends).
    pub duplicates: IntCounter,
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
    /// Alerts raised, by county and kind (one series per county that has
    /// had an alert).
    pub alerts_by_county: IntCounterVec,
    /// Alerts active now, by kind.
    pub alerts_active: IntGaugeVec,
    /// Alert transitions recorded, by transition (raised, escalated, …).
    pub alert_transitions: IntCounterVec,
    /// Duty tasks created with nobody on duty for the county.
    pub tasks_unassigned: IntCounter,
    /// Store operations that failed, by operation.
    pub store_errors: IntCounterVec,
    /// Alert messages not published to MQTT because the publisher's queue
    /// was full (the alert is still in the API, the SSE feed and the log).
    pub alert_publish_dropped: IntCounter,
    /// 1 while the ingest MQTT session is connected and subscribed.
    pub mqtt_connected: IntGauge,
    /// MQTT connection errors (each followed by a reconnect with backoff).
    pub mqtt_connection_errors: IntCounter,
    /// MQTT messages received and not yet acknowledged (or, for QoS 0,
    /// not yet complete); at `mqtt.max_inflight_messages` the socket is not
    /// read.
    pub mqtt_unacked: IntGauge,
    /// Payload bytes of those messages (bounded by
    /// `mqtt.max_inflight_bytes`).
    pub mqtt_unacked_bytes: IntGauge,
    /// Ticks not delivered because a shard already had one waiting.
    pub ticks_coalesced: IntCounter,
    /// National files handled, by type and outcome.
    pub netfile_files: IntCounterVec,
    /// National file records accepted, by type.
    pub netfile_records: IntCounterVec,
    /// Points whose declared levels (CDDY) are looser than the rule.
    pub declared_looser: IntCounter,
    /// Modbus requests, by device and outcome (every attempt, retries
    /// included): `ok`, `exception`, `timeout`, `transport_error`,
    /// `protocol_error`.
    pub modbus_requests: IntCounterVec,
    /// Modbus readings sent without a value, by device and reason
    /// (`exception`, `unreachable`, `non_finite`, `bad_status`).
    pub modbus_faults: IntCounterVec,
    /// 1 while the device's link (TCP connection or serial port) is open.
    pub modbus_connected: IntGaugeVec,
    /// Failed attempts to open a device's link.
    pub modbus_connect_errors: IntCounterVec,
    /// Polls that started late because the previous ones overran (the
    /// schedule skipped ahead), by device.
    pub modbus_polls_late: IntCounterVec,
    /// Duration of one device poll (all of its requests), seconds.
    pub modbus_poll_seconds: Histogram,
    /// Rows written to finished archive files, by stream (`readings`,
    /// `rejected`).
    pub archive_rows: IntCounterVec,
    /// Archive files finished (written, fsynced and renamed), by stream.
    pub archive_files: IntCounterVec,
    /// Archive files that could not be written (their rows are kept and
    /// retried), by stream.
    pub archive_write_errors: IntCounterVec,
    /// Push messages delivered, by channel.
    pub push_sent: IntCounterVec,
    /// Push messages not delivered, by channel and reason (`retry`: tried
    /// again later; `permanent`: given up).
    pub push_failed: IntCounterVec,
    /// Outbox rows still to deliver.
    pub push_backlog: IntGauge,
    /// Time from an outbox row being written to its delivery, seconds.
    pub push_latency: Histogram,
    /// Journal commits (one write + fdatasync covering many batches).
    pub journal_commits: IntCounter,
    /// Bytes appended to the archive journal.
    pub journal_bytes: IntCounter,
    /// Journal writes or fsyncs that failed (the batches are retried in a
    /// new segment and acknowledged only once durable).
    pub journal_errors: IntCounter,
    /// Duration of one journal commit (write + fdatasync), seconds.
    pub journal_commit_seconds: Histogram,
    /// Rows recovered from journal segments into archive files at start,
    /// by stream.
    pub journal_recovered_rows: IntCounterVec,
    /// Torn or corrupt journal records dropped at recovery (never
    /// acknowledged: a record is acknowledged only after its fsync).
    pub journal_torn_records: IntCounter,
    /// Alert transitions committed to the store and not yet in a finished
    /// file of the `alerts` stream (as of the exporter's last look).
    pub archive_alerts_pending: IntGauge,
    /// 1 while the archive writer holds `archive.max_buffered_rows`
    /// unwritten rows and takes no more (the disk refuses writes).
    pub archive_writer_paused: IntGauge,
    /// Partitions written out early because the buffered rows reached
    /// `archive.max_buffered_bytes` or `max_buffered_rows`.
    pub archive_pressure_writes: IntCounter,
    /// 1 while the alert store refuses the alert stage's writes (changes
    /// wait in memory for it).
    pub store_refusing: IntGauge,
    /// Hour partitions deleted by retention, by stream.
    pub retention_partitions_removed: IntCounterVec,
    /// Files deleted by retention, by stream.
    pub retention_files_removed: IntCounterVec,
    /// Sign-in attempts, by outcome (`ok`, `bad_credentials`,
    /// `rate_limited`).
    pub logins: IntCounterVec,
    /// Requests refused, by reason (`unauthenticated`, `forbidden`,
    /// `csrf`).
    pub auth_refused: IntCounterVec,
}

/// Reasons of `minewatch_auth_refused_total`.
pub const AUTH_REFUSALS: [&str; 3] = ["unauthenticated", "forbidden", "csrf"];

/// Outcomes of `minewatch_login_attempts_total`.
pub const LOGIN_OUTCOMES: [&str; 3] = ["ok", "bad_credentials", "rate_limited"];

/// Reasons of `minewatch_push_failed_total`.
pub const PUSH_FAILURES: [&str; 2] = ["retry", "permanent"];

const PUSH_LATENCY_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Outcomes of one Modbus request, for `minewatch_modbus_requests_total`.
pub const MODBUS_OUTCOMES: [&str; 5] = [
    "ok",
    "exception",
    "timeout",
    "transport_error",
    "protocol_error",
];

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
        let counter_vec2 = |name: &str, help: &str, labels: [&str; 2]| {
            let c = IntCounterVec::new(Opts::new(name, help), &labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
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
            beyond_lateness: counter(
                "minewatch_readings_beyond_lateness_total",
                "Late readings older than their point's newest by more than the allowed lateness",
            ),
            duplicates: counter(
                "minewatch_readings_duplicate_total",
                "Readings with the same timestamp as their point's newest, and seal events equal to a recent one of their camera (resends)",
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
            alerts_by_county: counter_vec2(
                "minewatch_alerts_raised_by_county_total",
                "Alerts raised, by county and kind",
                ["county", "kind"],
            ),
            alerts_active: gauge_vec(
                "minewatch_alerts_active",
                "Alerts active now, by kind",
                "kind",
            ),
            alert_transitions: counter_vec(
                "minewatch_alert_transitions_total",
                "Alert transitions recorded, by transition",
                "transition",
            ),
            tasks_unassigned: counter(
                "minewatch_tasks_unassigned_total",
                "Duty tasks created while nobody was on duty for the county",
            ),
            store_errors: counter_vec(
                "minewatch_store_errors_total",
                "Store operations that failed, by operation",
                "op",
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
            mqtt_unacked: {
                let g = IntGauge::new(
                    "minewatch_mqtt_unacked_messages",
                    "MQTT messages received and not yet acknowledged (the socket is not read at mqtt.max_inflight_messages)",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            mqtt_unacked_bytes: {
                let g = IntGauge::new(
                    "minewatch_mqtt_unacked_bytes",
                    "Payload bytes of the MQTT messages not yet acknowledged (bounded by mqtt.max_inflight_bytes)",
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
            netfile_files: counter_vec2(
                "minewatch_netfile_files_total",
                "National files handled, by type and outcome",
                ["type", "outcome"],
            ),
            netfile_records: counter_vec(
                "minewatch_netfile_records_total",
                "National file records accepted, by type",
                "type",
            ),
            declared_looser: counter(
                "minewatch_declared_looser_than_rule_total",
                "Point definitions (CDDY) whose declared levels are looser than the rule",
            ),
            modbus_requests: counter_vec2(
                "minewatch_modbus_requests_total",
                "Modbus requests (every attempt, retries included), by device and outcome",
                ["device", "outcome"],
            ),
            modbus_faults: counter_vec2(
                "minewatch_modbus_faults_total",
                "Modbus readings sent without a value, by device and reason",
                ["device", "reason"],
            ),
            modbus_connected: gauge_vec(
                "minewatch_modbus_connected",
                "1 while the device's link (TCP connection or serial port) is open",
                "device",
            ),
            modbus_connect_errors: counter_vec(
                "minewatch_modbus_connect_errors_total",
                "Failed attempts to open a Modbus device's link",
                "device",
            ),
            modbus_polls_late: counter_vec(
                "minewatch_modbus_polls_late_total",
                "Modbus polls skipped because earlier polls of the device overran its period",
                "device",
            ),
            modbus_poll_seconds: histogram(
                "minewatch_modbus_poll_seconds",
                "Duration of one Modbus device poll (all of its requests)",
            ),
            archive_rows: counter_vec(
                "minewatch_archive_rows_written_total",
                "Rows written to finished archive files, by stream",
                "stream",
            ),
            archive_files: counter_vec(
                "minewatch_archive_files_total",
                "Archive files finished (written, fsynced, renamed), by stream",
                "stream",
            ),
            archive_write_errors: counter_vec(
                "minewatch_archive_write_errors_total",
                "Archive files that could not be written (rows kept and retried), by stream",
                "stream",
            ),
            push_sent: counter_vec(
                "minewatch_push_sent_total",
                "Push messages delivered, by channel",
                "channel",
            ),
            push_failed: counter_vec2(
                "minewatch_push_failed_total",
                "Push messages not delivered, by channel and reason (retry, permanent)",
                ["channel", "reason"],
            ),
            push_backlog: {
                let g = IntGauge::new("minewatch_push_backlog", "Outbox rows still to deliver")
                    .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            push_latency: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "minewatch_push_latency_seconds",
                        "From an outbox row being written to its delivery",
                    )
                    .buckets(PUSH_LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric");
                registry
                    .register(Box::new(h.clone()))
                    .expect("unique metric");
                h
            },
            journal_commits: counter(
                "minewatch_archive_journal_commits_total",
                "Archive journal commits (one write + fdatasync for many batches)",
            ),
            journal_bytes: counter(
                "minewatch_archive_journal_bytes_total",
                "Bytes appended to the archive journal",
            ),
            journal_errors: counter(
                "minewatch_archive_journal_errors_total",
                "Archive journal writes or fsyncs that failed (retried in a new segment)",
            ),
            journal_commit_seconds: histogram(
                "minewatch_archive_journal_commit_seconds",
                "Duration of one archive journal commit (write + fdatasync)",
            ),
            journal_recovered_rows: counter_vec(
                "minewatch_archive_journal_recovered_rows_total",
                "Rows recovered from journal segments into archive files at start, by stream",
                "stream",
            ),
            journal_torn_records: counter(
                "minewatch_archive_journal_torn_records_total",
                "Torn or corrupt journal records dropped at recovery (never acknowledged)",
            ),
            archive_alerts_pending: {
                let g = IntGauge::new(
                    "minewatch_archive_alerts_pending",
                    "Alert transitions committed to the store and not yet in the archive's alerts stream",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            archive_pressure_writes: counter(
                "minewatch_archive_pressure_writes_total",
                "Archive partitions written out before flush_secs because the buffered rows reached archive.max_buffered_bytes or max_buffered_rows",
            ),
            archive_writer_paused: {
                let g = IntGauge::new(
                    "minewatch_archive_writer_paused",
                    "1 while the archive writer takes no more rows: its unwritten rows reach archive.max_buffered_bytes or max_buffered_rows and the disk refuses their writes",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            store_refusing: {
                let g = IntGauge::new(
                    "minewatch_store_refusing",
                    "1 while the alert store refuses the alert stage's writes (changes wait in memory)",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            retention_partitions_removed: counter_vec(
                "minewatch_archive_retention_partitions_removed_total",
                "Archive hour partitions deleted by retention, by stream",
                "stream",
            ),
            retention_files_removed: counter_vec(
                "minewatch_archive_retention_files_removed_total",
                "Archive files deleted by retention, by stream",
                "stream",
            ),
            logins: counter_vec(
                "minewatch_login_attempts_total",
                "Sign-in attempts, by outcome (ok, bad_credentials, rate_limited)",
                "outcome",
            ),
            auth_refused: counter_vec(
                "minewatch_auth_refused_total",
                "Requests refused, by reason: unauthenticated (401), forbidden (403), csrf (403)",
                "reason",
            ),
            registry,
        };
        for outcome in LOGIN_OUTCOMES {
            m.logins.with_label_values(&[outcome]);
        }
        for reason in AUTH_REFUSALS {
            m.auth_refused.with_label_values(&[reason]);
        }
        for stream in crate::archive::retention::STREAMS {
            m.archive_rows.with_label_values(&[stream]);
            m.archive_files.with_label_values(&[stream]);
            m.archive_write_errors.with_label_values(&[stream]);
            m.journal_recovered_rows.with_label_values(&[stream]);
            m.retention_partitions_removed.with_label_values(&[stream]);
            m.retention_files_removed.with_label_values(&[stream]);
        }
        for reason in RejectReason::ALL {
            m.rejected.with_label_values(&[reason.key()]);
        }
        for kind in AlertKind::ALL {
            m.alerts_raised.with_label_values(&[kind.key()]);
            m.alerts_active.with_label_values(&[kind.key()]);
        }
        for shard in 0..shards {
            m.queue_depth.with_label_values(&[&shard.to_string()]);
        }
        for source in ["mqtt", "modbus", "netfile"] {
            m.accepted.with_label_values(&[source]);
        }
        for source in ["mqtt", "modbus"] {
            m.messages.with_label_values(&[source]);
        }
        for t in ["CDDY", "CDSS", "FZSS", "YCBJ", "TJSJ"] {
            m.netfile_records.with_label_values(&[t]);
            for outcome in ["processed", "duplicate", "quarantined"] {
                m.netfile_files.with_label_values(&[t, outcome]);
            }
        }
        m
    }

    /// Pre-registers every label of the Modbus metrics for one device, so
    /// dashboards see zeros rather than gaps.
    pub fn register_modbus_device(&self, device: &str) {
        for outcome in MODBUS_OUTCOMES {
            self.modbus_requests.with_label_values(&[device, outcome]);
        }
        for fault in crate::ingest::modbus_map::Fault::ALL {
            self.modbus_faults.with_label_values(&[device, fault.key()]);
        }
        self.modbus_connected.with_label_values(&[device]);
        self.modbus_connect_errors.with_label_values(&[device]);
        self.modbus_polls_late.with_label_values(&[device]);
    }

    /// Pre-registers every label of the push metrics for one channel.
    pub fn register_push_channel(&self, channel: &str) {
        self.push_sent.with_label_values(&[channel]);
        for reason in PUSH_FAILURES {
            self.push_failed.with_label_values(&[channel, reason]);
        }
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
        assert!(text.contains("minewatch_readings_accepted_total{source=\"modbus\"} 0"));
        for stream in ["readings", "rejected", "exceptions"] {
            for name in [
                "minewatch_archive_rows_written_total",
                "minewatch_archive_files_total",
                "minewatch_archive_write_errors_total",
                "minewatch_archive_journal_recovered_rows_total",
                "minewatch_archive_retention_partitions_removed_total",
                "minewatch_archive_retention_files_removed_total",
            ] {
                assert!(
                    text.contains(&format!("{name}{{stream=\"{stream}\"}} 0")),
                    "{name} {stream}"
                );
            }
        }
    }

    #[test]
    fn modbus_devices_are_exported_from_the_start() {
        let m = Metrics::new(1);
        m.register_modbus_device("sub-1");
        let text = m.render();
        for outcome in MODBUS_OUTCOMES {
            assert!(
                text.contains(&format!(
                    "minewatch_modbus_requests_total{{device=\"sub-1\",outcome=\"{outcome}\"}} 0"
                )),
                "{outcome}"
            );
        }
        assert!(
            text.contains(
                "minewatch_modbus_faults_total{device=\"sub-1\",reason=\"unreachable\"} 0"
            )
        );
        assert!(text.contains("minewatch_modbus_connected{device=\"sub-1\"} 0"));
    }

    #[test]
    fn push_channels_are_exported_from_the_start() {
        let m = Metrics::new(1);
        m.register_push_channel("county-wecom");
        let text = m.render();
        assert!(text.contains("minewatch_push_sent_total{channel=\"county-wecom\"} 0"));
        for reason in PUSH_FAILURES {
            assert!(text.contains(&format!(
                "minewatch_push_failed_total{{channel=\"county-wecom\",reason=\"{reason}\"}} 0"
            )));
        }
        assert!(text.contains("minewatch_push_backlog 0"));
        assert!(text.contains("minewatch_push_latency_seconds_count 0"));
    }
}
