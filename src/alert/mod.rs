//! The alert stage: turns findings into alerts — one per episode and kind,
//! never one per reading — and sends every change to the sinks: the alert
//! book behind `GET /api/alerts`, the SSE broadcast, MQTT
//! `alerts/{county}/{mine}` and a structured log line.
//!
//! It runs on one thread that owns the book's writes; the HTTP side only
//! reads it. Until the durable outbox arrives (issue #5), an alert that the
//! MQTT publisher cannot queue is counted in
//! `minewatch_alert_publish_dropped_total` and stays in the API, SSE and log.

pub mod book;
pub mod outbox;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::config::rules::{CO_RULE_TEXT, EVACUATION_RULE_TEXT, methane_rule_text};
use crate::config::{Registry, SharedRegistry};
use crate::metrics::Metrics;
use crate::model::{
    Alert, AlertKind, Finding, Gas, Millis, MineIdx, PointIdx, rfc3339, stable_hash,
};
use crate::pipeline::Emitted;

pub use book::{AlertBook, AlertFilter};

/// One change of one alert, as the SSE feed and MQTT carry it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// `raised`, `updated` or `resolved`.
    pub event: &'static str,
    /// The alert after the change.
    pub alert: Alert,
}

/// An alert message for the MQTT publisher.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `alerts/{county}/{mine}`.
    pub topic: String,
    /// The [`AlertEvent`] as JSON.
    pub payload: Vec<u8>,
}

/// How often an active alert's peak updates are broadcast at most.
const UPDATE_EVERY: Duration = Duration::from_secs(1);

/// Key of an active alert.
type Key = (AlertKind, MineIdx, Option<PointIdx>);

/// The alert stage's sinks.
pub struct AlertSinks {
    /// The book the API reads.
    pub book: Arc<RwLock<AlertBook>>,
    /// SSE subscribers.
    pub events: broadcast::Sender<Arc<AlertEvent>>,
    /// The MQTT publisher, if alerts are published.
    pub mqtt: Option<mpsc::Sender<Outgoing>>,
    /// MQTT topic prefix.
    pub topic_prefix: String,
}

/// The id of the alert of `kind` at `mine` (and `point`) that started at
/// `started` (event time for over-limit kinds, processing time for offline
/// kinds): the same episode gets the same id in every run and in replay.
pub fn alert_id(kind: AlertKind, mine: &str, point: Option<&str>, started: Millis) -> String {
    let id = stable_hash(&[
        kind.key().as_bytes(),
        mine.as_bytes(),
        point.map(str::as_bytes).unwrap_or_default(),
        &started.to_le_bytes(),
    ]);
    format!("{id:016x}")
}

/// Runs the alert stage until every shard has hung up.
pub fn run_alert_stage(
    findings: Receiver<Emitted>,
    registry: SharedRegistry,
    metrics: Arc<Metrics>,
    sinks: AlertSinks,
) {
    let mut stage = AlertStage {
        registry: registry.snapshot(),
        metrics,
        sinks,
        last_update: HashMap::new(),
    };
    while let Ok(e) = findings.recv() {
        // Points defined at run time (CDDY) appear in newer snapshots.
        stage.registry = registry.snapshot();
        stage.apply(e);
    }
}

struct AlertStage {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    sinks: AlertSinks,
    last_update: HashMap<Key, Instant>,
}

impl AlertStage {
    fn apply(&mut self, e: Emitted) {
        match e.finding {
            Finding::OverLimitOpened {
                point,
                ts,
                value,
                threshold,
            } => self.raise_point(
                AlertKind::Overlimit,
                point,
                ts,
                Some(value),
                threshold,
                e.received,
            ),
            Finding::Evacuation {
                point,
                ts,
                value,
                threshold,
            } => self.raise_point(
                AlertKind::Evacuation,
                point,
                ts,
                Some(value),
                threshold,
                e.received,
            ),
            Finding::Peak { point, value, .. } => {
                let mine = self.mine_of(point);
                for kind in [AlertKind::Overlimit, AlertKind::Evacuation] {
                    self.update_peak((kind, mine, Some(point)), value);
                }
            }
            Finding::OverLimitClosed { point, ts, .. } => {
                let mine = self.mine_of(point);
                for kind in [AlertKind::Evacuation, AlertKind::Overlimit] {
                    self.resolve((kind, mine, Some(point)), ts);
                }
            }
            Finding::PointOffline {
                point,
                at,
                last_seen,
            } => {
                let mine = self.mine_of(point);
                let mut alert = self.new_alert(AlertKind::PointOffline, mine, Some(point), at);
                alert.last_seen = Some(rfc3339(last_seen));
                let timeout = self.registry.points[point as usize].offline_after_ms / 1000;
                alert.rule = format!("测点 {timeout} s 无数据 (断线)");
                self.raise((AlertKind::PointOffline, mine, Some(point)), alert, None);
            }
            Finding::PointOnline { point, at } => {
                let mine = self.mine_of(point);
                self.resolve((AlertKind::PointOffline, mine, Some(point)), at);
            }
            Finding::MineOffline {
                mine,
                at,
                last_seen,
            } => {
                let mut alert = self.new_alert(AlertKind::MineOffline, mine, None, at);
                alert.last_seen = Some(rfc3339(last_seen));
                let timeout = self.registry.mines[mine as usize].offline_after_ms / 1000;
                alert.rule = format!("全矿 {timeout} s 无数据 (断网); 系统故障须立即上报");
                self.raise((AlertKind::MineOffline, mine, None), alert, None);
            }
            Finding::MineOnline { mine, at } => {
                self.resolve((AlertKind::MineOffline, mine, None), at);
            }
        }
    }

    fn mine_of(&self, point: PointIdx) -> MineIdx {
        self.registry.points[point as usize].mine
    }

    fn new_alert(
        &self,
        kind: AlertKind,
        mine: MineIdx,
        point: Option<PointIdx>,
        started: Millis,
    ) -> Alert {
        let m = &self.registry.mines[mine as usize];
        let p = point.map(|p| &self.registry.points[p as usize]);
        Alert {
            id: alert_id(kind, &m.code, p.map(|p| p.code.as_str()), started),
            kind,
            severity: kind.severity(),
            mine: m.code.clone(),
            mine_name: m.name.clone(),
            county: m.county.clone(),
            city: m.city.clone(),
            province: m.province.clone(),
            point: p.map(|p| p.code.clone()),
            sensor: p.map(|p| p.sensor.code_text()),
            location: p.map(|p| p.location),
            unit: p.map(|p| p.unit.clone()),
            value: None,
            peak: None,
            threshold: None,
            rule: String::new(),
            started_at: rfc3339(started),
            resolved_at: None,
            last_seen: None,
        }
    }

    fn raise_point(
        &mut self,
        kind: AlertKind,
        point: PointIdx,
        ts: Millis,
        value: Option<f64>,
        threshold: f64,
        received: Option<Instant>,
    ) {
        let mine = self.mine_of(point);
        let meta = &self.registry.points[point as usize];
        let mut alert = self.new_alert(kind, mine, Some(point), ts);
        alert.value = value;
        alert.peak = value;
        alert.threshold = Some(threshold);
        alert.rule = match (kind, meta.limits.map(|l| l.gas)) {
            (AlertKind::Evacuation, _) => EVACUATION_RULE_TEXT.to_string(),
            (_, Some(Gas::CarbonMonoxide)) => CO_RULE_TEXT.to_string(),
            (_, _) if meta.limits.is_some_and(|l| !l.from_rule) => {
                "矿方申报的报警值 (该位置无规程默认值)".to_string()
            }
            _ => methane_rule_text(meta.location),
        };
        self.raise((kind, mine, Some(point)), alert, received);
    }

    fn raise(&mut self, key: Key, alert: Alert, received: Option<Instant>) {
        let kind = alert.kind;
        let inserted = match self.sinks.book.write() {
            Ok(mut book) => book.raise(key, alert.clone()),
            Err(_) => false,
        };
        if !inserted {
            tracing::debug!(kind = kind.key(), "alert already active; finding ignored");
            return;
        }
        self.metrics
            .alerts_raised
            .with_label_values(&[kind.key()])
            .inc();
        self.metrics
            .alerts_active
            .with_label_values(&[kind.key()])
            .inc();
        if let Some(r) = received {
            self.metrics
                .alert_latency
                .observe(r.elapsed().as_secs_f64());
        }
        tracing::warn!(
            target: "minewatch::alert",
            event = "raised",
            id = %alert.id,
            kind = kind.key(),
            mine = %alert.mine,
            county = %alert.county,
            point = alert.point.as_deref().unwrap_or(""),
            value = alert.value.unwrap_or(f64::NAN),
            threshold = alert.threshold.unwrap_or(f64::NAN),
            started_at = %alert.started_at,
            "alert raised"
        );
        self.emit("raised", alert);
    }

    fn update_peak(&mut self, key: Key, value: f64) {
        let updated = match self.sinks.book.write() {
            Ok(mut book) => book.update_peak(&key, value),
            Err(_) => None,
        };
        let Some(alert) = updated else { return };
        let now = Instant::now();
        let due = self
            .last_update
            .get(&key)
            .is_none_or(|t| now.duration_since(*t) >= UPDATE_EVERY);
        if due {
            self.last_update.insert(key, now);
            self.emit("updated", alert);
        }
    }

    fn resolve(&mut self, key: Key, at: Millis) {
        let resolved = match self.sinks.book.write() {
            Ok(mut book) => book.resolve(&key, rfc3339(at)),
            Err(_) => None,
        };
        self.last_update.remove(&key);
        let Some(alert) = resolved else { return };
        self.metrics
            .alerts_active
            .with_label_values(&[alert.kind.key()])
            .dec();
        tracing::info!(
            target: "minewatch::alert",
            event = "resolved",
            id = %alert.id,
            kind = alert.kind.key(),
            mine = %alert.mine,
            county = %alert.county,
            point = alert.point.as_deref().unwrap_or(""),
            peak = alert.peak.unwrap_or(f64::NAN),
            resolved_at = alert.resolved_at.as_deref().unwrap_or(""),
            "alert resolved"
        );
        self.emit("resolved", alert);
    }

    fn emit(&mut self, event: &'static str, alert: Alert) {
        let topic = format!(
            "{}alerts/{}/{}",
            self.sinks.topic_prefix, alert.county, alert.mine
        );
        let ev = Arc::new(AlertEvent { event, alert });
        if let Some(tx) = &self.sinks.mqtt
            && event != "updated"
        {
            match serde_json::to_vec(&*ev) {
                Ok(payload) => {
                    if tx.try_send(Outgoing { topic, payload }).is_err() {
                        self.metrics.alert_publish_dropped.inc();
                        tracing::warn!(id = %ev.alert.id, "alert publisher queue full; alert not published to MQTT");
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot encode alert"),
            }
        }
        // No subscriber is not an error.
        let _ = self.sinks.events.send(ev);
    }
}

/// Publishes alert messages at QoS 1 until the channel closes.
pub async fn run_mqtt_publisher(
    opts: rumqttc::MqttOptions,
    mut rx: mpsc::Receiver<Outgoing>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 1024);
    let pump = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "alert publisher connection error");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => break,
            m = rx.recv() => m,
        };
        let Some(msg) = msg else { break };
        if let Err(e) = client
            .publish(msg.topic, rumqttc::QoS::AtLeastOnce, false, msg.payload)
            .await
        {
            tracing::warn!(error = %e, "cannot queue alert for MQTT");
        }
    }
    // Let queued publishes go out before stopping.
    tokio::time::sleep(Duration::from_millis(200)).await;
    pump.abort();
}
