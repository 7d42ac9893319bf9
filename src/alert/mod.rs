//! The alert stage: turns findings into alerts — one per episode and kind,
//! never one per reading — and hands every change to the lifecycle
//! ([`lifecycle::Lifecycle`]), which writes it and the pushes it owes to the
//! durable store before anything is shown or sent. The SSE feed and MQTT
//! `alerts/{county}/{mine}` follow the store's broadcast of committed
//! changes; chat, webhook and mail pushes go through the outbox.
//!
//! It runs on one thread; a finding the store cannot take (disk full, the
//! database down) is kept and retried every tick, never dropped.

pub mod channels;
pub mod dispatch;
pub mod episodes;
pub mod lifecycle;
pub mod outbox;
pub mod routing;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::config::rules::{CO_RULE_TEXT, EVACUATION_RULE_TEXT, methane_rule_text};
use crate::config::{Registry, SharedRegistry};
use crate::metrics::Metrics;
use crate::model::{
    Alert, AlertKind, Finding, Gas, Millis, MineIdx, Subject, rfc3339, stable_hash,
};
use crate::pipeline::Emitted;
use crate::store::AlertRecord;

pub use lifecycle::{ActionError, Lifecycle};

/// One change of one alert, as the SSE feed and MQTT carry it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// `raised`, `updated`, `resolved`, `renotified`, `escalated`,
    /// `acknowledged`, `disposed`, `closed`, `task_…`.
    pub event: String,
    /// The alert after the change, with its handling state and task.
    pub alert: AlertRecord,
}

/// How often an active alert's peak is written and broadcast at most.
const UPDATE_EVERY: Duration = Duration::from_secs(1);

/// How often re-notification, escalation and overdue tasks are checked.
const TICK_EVERY: Duration = Duration::from_secs(1);

/// Findings kept for retry while the store refuses them, at most.
const RETRY_KEEP: usize = 100_000;

pub use episodes::{Change, EpisodeTracker, Key, subject_code};

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
    lifecycle: Arc<Lifecycle>,
) {
    let mut stage = AlertStage::new(registry.snapshot(), metrics, lifecycle);
    let mut next_tick = Instant::now() + TICK_EVERY;
    // Findings taken off the queue that may wait for the urgent ones.
    let mut later: VecDeque<Emitted> = VecDeque::new();
    let mut hung_up = false;
    loop {
        // Everything queued now: over-limit findings are applied at once,
        // the rest wait here (up to LATER_KEEP; then the queue fills and
        // the shards wait). Each store write costs an fsync, so a burst of
        // other alerts would otherwise hold a methane alert back for
        // seconds. The over-limit family's episodes are keyed apart from
        // every other kind's, so no change overtakes one of its own key.
        let mut took = false;
        while !hung_up && later.len() < LATER_KEEP {
            let next = if later.is_empty() && !took {
                let wait = next_tick.saturating_duration_since(Instant::now());
                findings.recv_timeout(wait)
            } else {
                findings.try_recv().map_err(|e| match e {
                    crossbeam_channel::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    crossbeam_channel::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            };
            match next {
                Ok(e) => {
                    took = true;
                    // Points defined at run time (CDDY) appear in newer
                    // snapshots.
                    stage.registry = registry.snapshot();
                    if is_urgent(&e.finding) {
                        stage.apply(&e);
                    } else {
                        later.push_back(e);
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => hung_up = true,
            }
        }
        if let Some(e) = later.pop_front() {
            stage.apply(&e);
        } else if hung_up {
            break;
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + TICK_EVERY;
            stage.retry_pending();
            stage.advance();
            stage.flush_peaks();
            let tick = stage.lifecycle.tick();
            if let Err(e) = &tick {
                stage
                    .metrics
                    .store_errors
                    .with_label_values(&["tick"])
                    .inc();
                tracing::error!(error = %format!("{e:#}"), "alert tick failed; retried next second");
            }
            // The store refuses while changes wait for it or its last
            // tick failed (for `/readyz`).
            let refusing = tick.is_err() || !stage.retry.is_empty();
            stage.metrics.store_refusing.set(i64::from(refusing));
        }
    }
    stage.retry_pending();
}

/// Findings held back behind urgent ones, at most.
const LATER_KEEP: usize = 4096;

/// The findings of the over-limit family (methane and CO over the limit,
/// evacuation, their peaks and ends): applied before any other finding
/// waiting with them.
fn is_urgent(finding: &Finding) -> bool {
    matches!(
        finding,
        Finding::OverLimitOpened { .. }
            | Finding::Evacuation { .. }
            | Finding::Peak { .. }
            | Finding::OverLimitClosed { .. }
    )
}

/// A change the store has not taken yet, with the finding that caused it.
#[derive(Debug, Clone, Copy)]
struct Pending {
    change: Change,
    finding: Finding,
    received: Option<Instant>,
}

struct AlertStage {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    /// Which findings open and close which alert (shared with replay).
    tracker: EpisodeTracker,
    /// Alert id of each active episode written to the store.
    active: HashMap<Key, String>,
    last_update: HashMap<Key, Instant>,
    /// Peaks seen since the last write, per active episode.
    unwritten_peak: HashMap<Key, f64>,
    /// Changes the store could not take yet, in order.
    retry: VecDeque<Pending>,
    /// Scratch buffer of the tracker's changes.
    changes: Vec<Change>,
}

impl AlertStage {
    fn new(registry: Arc<Registry>, metrics: Arc<Metrics>, lifecycle: Arc<Lifecycle>) -> Self {
        AlertStage {
            registry,
            metrics,
            lifecycle,
            tracker: EpisodeTracker::grouping(),
            active: HashMap::new(),
            last_update: HashMap::new(),
            unwritten_peak: HashMap::new(),
            retry: VecDeque::new(),
            changes: Vec::new(),
        }
    }

    /// Applies one finding: the tracker decides what changes, then each
    /// change is written. A change the store refuses waits, and every later
    /// one waits behind it — a clear never overtakes its raise.
    fn apply(&mut self, e: &Emitted) {
        let mut changes = std::mem::take(&mut self.changes);
        self.tracker.apply(&self.registry, &e.finding, &mut changes);
        for change in changes.drain(..) {
            let p = Pending {
                change,
                finding: e.finding,
                received: e.received,
            };
            if self.retry.is_empty() {
                if let Err(error) = self.execute(&p) {
                    self.metrics
                        .store_errors
                        .with_label_values(&["apply"])
                        .inc();
                    self.metrics.store_refusing.set(1);
                    tracing::error!(error = %format!("{error:#}"), "the store refused an alert change; kept for retry");
                    self.wait_behind(p);
                }
            } else {
                self.wait_behind(p);
            }
        }
        self.changes = changes;
    }

    /// Closes the over-limit alerts whose regroup interval has passed (on
    /// the lifecycle's clock), as [`AlertStage::apply`] writes changes.
    fn advance(&mut self) {
        let mut changes = std::mem::take(&mut self.changes);
        let now = self.lifecycle.now();
        self.tracker.advance(&self.registry, now, &mut changes);
        for change in changes.drain(..) {
            let Change::Close { key, at } = change else {
                continue;
            };
            let Subject::Point(point) = key.2 else {
                continue;
            };
            let p = Pending {
                change,
                finding: Finding::OverLimitClosed {
                    point,
                    ts: at,
                    value: f64::NAN,
                },
                received: None,
            };
            if self.retry.is_empty() {
                if let Err(error) = self.execute(&p) {
                    self.metrics
                        .store_errors
                        .with_label_values(&["apply"])
                        .inc();
                    tracing::error!(error = %format!("{error:#}"), "the store refused an alert change; kept for retry");
                    self.wait_behind(p);
                }
            } else {
                self.wait_behind(p);
            }
        }
        self.changes = changes;
    }

    /// Queues a change behind those waiting for the store. Memory is
    /// finite: past `RETRY_KEEP` the oldest waiting change is dropped and
    /// counted — the one place a change can be lost, after the store has
    /// refused writes for a long time.
    fn wait_behind(&mut self, p: Pending) {
        if self.retry.len() >= RETRY_KEEP {
            self.metrics
                .store_errors
                .with_label_values(&["retry_overflow"])
                .inc();
            self.retry.pop_front();
        }
        self.retry.push_back(p);
    }

    fn retry_pending(&mut self) {
        while let Some(p) = self.retry.front().copied() {
            if let Err(error) = self.execute(&p) {
                // Still failing: keep order, try again next tick.
                self.metrics
                    .store_errors
                    .with_label_values(&["retry"])
                    .inc();
                tracing::debug!(error = %format!("{error:#}"), "alert change still refused");
                break;
            }
            self.retry.pop_front();
        }
    }

    fn execute(&mut self, p: &Pending) -> anyhow::Result<()> {
        match p.change {
            Change::Open {
                key,
                started,
                value,
                threshold,
            } => {
                let alert = self.opened_alert(key, &p.finding, started, value, threshold);
                self.raise(key, alert, p.received)
            }
            Change::Peak { key, value } => self.update_peak(key, value),
            Change::Recrossed { key, crossings } => match self.active.get(&key) {
                Some(id) => self.lifecycle.recrossed(id, crossings),
                None => Ok(()),
            },
            Change::Close { key, at } => self.resolve(key, at),
        }
    }

    /// The alert that `finding` opens under `key`.
    fn opened_alert(
        &self,
        key: Key,
        finding: &Finding,
        started: Millis,
        value: Option<f64>,
        threshold: Option<f64>,
    ) -> Alert {
        let (kind, mine, subject) = key;
        let mut alert = self.new_alert(kind, mine, subject, started);
        alert.value = value;
        alert.peak = value;
        alert.threshold = threshold;
        match *finding {
            Finding::OverLimitOpened { point, .. } | Finding::Evacuation { point, .. } => {
                let meta = &self.registry.points[point as usize];
                alert.rule = match (kind, meta.limits.map(|l| l.gas)) {
                    (AlertKind::Evacuation, _) => EVACUATION_RULE_TEXT.to_string(),
                    (_, Some(Gas::CarbonMonoxide)) => CO_RULE_TEXT.to_string(),
                    (_, _) if meta.limits.is_some_and(|l| !l.from_rule) => {
                        "矿方申报的报警值 (该位置无规程默认值)".to_string()
                    }
                    _ => methane_rule_text(meta.location),
                };
            }
            Finding::PointOffline {
                point, last_seen, ..
            } => {
                alert.last_seen = Some(rfc3339(last_seen));
                let timeout = self.registry.points[point as usize].offline_after_ms / 1000;
                alert.rule = format!("测点 {timeout} s 无数据 (断线)");
            }
            Finding::MineOffline {
                mine, last_seen, ..
            } => {
                alert.last_seen = Some(rfc3339(last_seen));
                let timeout = self.registry.mines[mine as usize].offline_after_ms / 1000;
                alert.rule = format!("全矿 {timeout} s 无数据 (断网); 系统故障须立即上报");
            }
            Finding::FlagRaised { flag, .. } => {
                alert.rule = format!("{}: {}", flag.key(), flag.zh());
                alert.reason = Some(flag.key().to_string());
            }
            Finding::ActivityRaised { reason, .. } => {
                alert.unit = reason.unit().map(str::to_string).or(alert.unit);
                alert.rule = format!("{}: {}", reason.key(), reason.zh());
                alert.reason = Some(reason.key().to_string());
            }
            _ => {}
        }
        alert
    }

    fn new_alert(
        &self,
        kind: AlertKind,
        mine: MineIdx,
        subject: Subject,
        started: Millis,
    ) -> Alert {
        let m = &self.registry.mines[mine as usize];
        let p = match subject {
            Subject::Point(p) => Some(&self.registry.points[p as usize]),
            _ => None,
        };
        let code = subject_code(&self.registry, mine, subject);
        let (sensor, unit) = match subject {
            Subject::Point(_) => (p.map(|p| p.sensor.code_text()), p.map(|p| p.unit.clone())),
            Subject::Power => (Some("power".to_string()), Some("kW".to_string())),
            Subject::Camera(_) => (Some("seal".to_string()), None),
            Subject::Mine => (None, None),
        };
        Alert {
            id: alert_id(kind, &m.code, code.as_deref(), started),
            kind,
            severity: kind.severity(),
            mine: m.code.clone(),
            mine_name: m.name.clone(),
            county: m.county.clone(),
            city: m.city.clone(),
            province: m.province.clone(),
            point: code,
            sensor,
            location: p.map(|p| p.location),
            unit,
            value: None,
            peak: None,
            threshold: None,
            rule: String::new(),
            reason: None,
            started_at: rfc3339(started),
            resolved_at: None,
            last_seen: None,
            crossings: None,
        }
    }

    fn raise(&mut self, key: Key, alert: Alert, received: Option<Instant>) -> anyhow::Result<()> {
        if self.active.contains_key(&key) {
            tracing::debug!(kind = key.0.key(), "alert already active; finding ignored");
            return Ok(());
        }
        let kind = alert.kind;
        let log = alert.clone();
        let (id, created) = self.lifecycle.raise(alert)?;
        self.active.insert(key, id.clone());
        self.metrics
            .alerts_active
            .with_label_values(&[kind.key()])
            .inc();
        if !created {
            return Ok(());
        }
        self.metrics
            .alerts_raised
            .with_label_values(&[kind.key()])
            .inc();
        self.metrics
            .alerts_by_county
            .with_label_values(&[&log.county, kind.key()])
            .inc();
        self.metrics
            .alert_transitions
            .with_label_values(&["raised"])
            .inc();
        if let Some(r) = received {
            self.metrics
                .alert_latency
                .observe(r.elapsed().as_secs_f64());
        }
        tracing::warn!(
            target: "minewatch::alert",
            event = "raised",
            id = %id,
            kind = kind.key(),
            mine = %log.mine,
            county = %log.county,
            point = log.point.as_deref().unwrap_or(""),
            value = log.value.unwrap_or(f64::NAN),
            threshold = log.threshold.unwrap_or(f64::NAN),
            started_at = %log.started_at,
            "alert raised"
        );
        Ok(())
    }

    /// Keeps the episode's peak; writes it (and tells the feed) at most
    /// once a second per alert, and always before the episode clears.
    fn update_peak(&mut self, key: Key, value: f64) -> anyhow::Result<()> {
        if !self.active.contains_key(&key) {
            return Ok(());
        }
        let peak = self.unwritten_peak.entry(key).or_insert(value);
        *peak = peak.max(value);
        let now = Instant::now();
        let due = self
            .last_update
            .get(&key)
            .is_none_or(|t| now.duration_since(*t) >= UPDATE_EVERY);
        if due {
            self.write_peak(key)?;
            self.last_update.insert(key, now);
        }
        Ok(())
    }

    fn write_peak(&mut self, key: Key) -> anyhow::Result<()> {
        let (Some(id), Some(peak)) = (self.active.get(&key), self.unwritten_peak.get(&key)) else {
            return Ok(());
        };
        self.lifecycle.update_peak(id, *peak)?;
        self.unwritten_peak.remove(&key);
        Ok(())
    }

    fn flush_peaks(&mut self) {
        let keys: Vec<Key> = self.unwritten_peak.keys().copied().collect();
        for key in keys {
            if let Err(e) = self.write_peak(key) {
                self.metrics.store_errors.with_label_values(&["peak"]).inc();
                tracing::error!(error = %format!("{e:#}"), "cannot write an alert's peak; retried next second");
            }
        }
    }

    fn resolve(&mut self, key: Key, at: Millis) -> anyhow::Result<()> {
        let Some(id) = self.active.get(&key).cloned() else {
            return Ok(());
        };
        self.write_peak(key)?;
        self.lifecycle.clear(&id, at, "condition_ended")?;
        self.active.remove(&key);
        self.last_update.remove(&key);
        self.metrics
            .alerts_active
            .with_label_values(&[key.0.key()])
            .dec();
        self.metrics
            .alert_transitions
            .with_label_values(&["cleared"])
            .inc();
        tracing::info!(
            target: "minewatch::alert",
            event = "resolved",
            id = %id,
            kind = key.0.key(),
            resolved_at = %rfc3339(at),
            "alert resolved"
        );
        Ok(())
    }
}

/// An alert message for the MQTT publisher.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `alerts/{county}/{mine}`.
    pub topic: String,
    /// The [`AlertEvent`] as JSON.
    pub payload: Vec<u8>,
}

/// Publishes committed alert changes (all but peak updates) at QoS 1 to
/// `{prefix}alerts/{county}/{mine}` until shutdown. A subscriber that falls
/// behind the broadcast counts what it missed in
/// `minewatch_alert_publish_dropped_total`; the alert itself is in the
/// store and in the outbox of every routed channel.
pub async fn run_mqtt_publisher(
    opts: rumqttc::MqttOptions,
    mut events: broadcast::Receiver<Arc<AlertEvent>>,
    topic_prefix: String,
    metrics: Arc<Metrics>,
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
        let ev = tokio::select! {
            _ = shutdown.changed() => break,
            m = events.recv() => m,
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                metrics.alert_publish_dropped.inc_by(n);
                tracing::warn!(
                    missed = n,
                    "alert publisher fell behind; changes not published to MQTT"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        if ev.event == "updated" {
            continue;
        }
        let topic = format!(
            "{topic_prefix}alerts/{}/{}",
            ev.alert.alert.county, ev.alert.alert.mine
        );
        let payload = match serde_json::to_vec(&*ev) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode alert");
                continue;
            }
        };
        if let Err(e) = client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .await
        {
            metrics.alert_publish_dropped.inc();
            tracing::warn!(error = %e, "cannot queue alert for MQTT");
        }
    }
    // Let queued publishes go out before stopping.
    tokio::time::sleep(Duration::from_millis(200)).await;
    pump.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alerting::AlertingConfig;
    use crate::model::Flag;
    use crate::pipeline::ManualClock;
    use crate::simulators::{ProvinceSpec, province};
    use tokio::sync::Notify;

    const T0: Millis = 1_795_392_000_000;

    fn stage() -> (AlertStage, broadcast::Receiver<Arc<AlertEvent>>) {
        stage_on("alert_stage_flags", Arc::new(ManualClock::at(T0)))
    }

    fn stage_on(
        store: &str,
        clock: Arc<ManualClock>,
    ) -> (AlertStage, broadcast::Receiver<Arc<AlertEvent>>) {
        let config = province(ProvinceSpec {
            mines: 1,
            points: 32,
            polling_secs: 5.0,
        });
        let (events, rx) = broadcast::channel(64);
        let metrics = Arc::new(Metrics::new(1));
        let lifecycle = Lifecycle::new(
            Arc::new(crate::store::testing::store(store)),
            AlertingConfig::default(),
            clock,
            events,
            Arc::new(Notify::new()),
            metrics.clone(),
        );
        let stage = AlertStage::new(
            Arc::new(Registry::build(&config, 1)),
            metrics,
            Arc::new(lifecycle),
        );
        (stage, rx)
    }

    fn emit(s: &mut AlertStage, finding: Finding) {
        let e = Emitted {
            finding,
            received: None,
        };
        s.apply(&e);
        assert!(s.retry.is_empty(), "the store took every change");
    }

    #[test]
    fn flags_raise_one_alert_per_point_and_kind_until_every_reason_ends() {
        let (mut s, mut rx) = stage();
        let raised = |flag, ts| Finding::FlagRaised {
            point: 0,
            ts,
            flag,
            value: 0.95,
        };
        emit(&mut s, raised(Flag::Hugging, T0));
        emit(&mut s, raised(Flag::Replayed, T0 + 5_000));
        emit(&mut s, raised(Flag::Spike, T0 + 6_000));
        emit(
            &mut s,
            Finding::FlagCleared {
                point: 0,
                ts: T0 + 10_000,
                flag: Flag::Hugging,
            },
        );
        assert!(
            s.active
                .contains_key(&(AlertKind::FalsificationSuspect, 0, Subject::Point(0)))
        );
        emit(
            &mut s,
            Finding::FlagCleared {
                point: 0,
                ts: T0 + 20_000,
                flag: Flag::Replayed,
            },
        );
        assert!(
            !s.active
                .contains_key(&(AlertKind::FalsificationSuspect, 0, Subject::Point(0)))
        );
        assert!(
            s.active
                .contains_key(&(AlertKind::DataAnomaly, 0, Subject::Point(0)))
        );
        let mut seen = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            seen.push((
                ev.event.clone(),
                ev.alert.alert.kind.key(),
                ev.alert.alert.rule.clone(),
                ev.alert.alert.severity.key(),
                ev.alert.alert.reason.clone(),
            ));
        }
        let raised: Vec<_> = seen.iter().filter(|e| e.0 == "raised").collect();
        assert_eq!(raised.len(), 2, "{seen:?}");
        assert_eq!(raised[0].1, "falsification_suspect");
        assert!(raised[0].2.starts_with("hugging: "), "{seen:?}");
        assert_eq!(raised[0].4.as_deref(), Some("hugging"), "{seen:?}");
        assert_eq!(raised[1].4.as_deref(), Some("spike"), "{seen:?}");
        assert_eq!(raised[0].3, "major");
        assert_eq!(raised[1].1, "data_anomaly");
        assert_eq!(raised[1].3, "minor");
        assert_eq!(
            seen.iter()
                .filter(|e| e.0 == "cleared" || e.0 == "resolved")
                .count(),
            1,
            "{seen:?}"
        );
        // The store keeps the reason in a column of its own: the API filters on it.
        let by_reason = |reason: &str| {
            s.lifecycle
                .store
                .read(|db| {
                    crate::store::alerts::list_alerts(
                        db,
                        &crate::store::AlertQuery {
                            reason: Some(reason.into()),
                            limit: 10,
                            ..Default::default()
                        },
                    )
                })
                .unwrap()
                .into_iter()
                .map(|r| (r.alert.kind, r.alert.reason))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            by_reason("spike"),
            [(AlertKind::DataAnomaly, Some("spike".to_string()))]
        );
        assert_eq!(by_reason("replayed"), []);
    }

    #[test]
    fn a_flapping_point_is_one_alert_with_its_crossings_resolved_after_the_interval() {
        let clock = Arc::new(ManualClock::at(T0));
        let (mut s, mut rx) = stage_on("alert_stage_regroup", clock.clone());
        // Three crossings of 1.0 % within a minute, 30 s apart.
        for k in 0..3 {
            let ts = T0 + k * 30_000;
            emit(
                &mut s,
                Finding::OverLimitOpened {
                    point: 0,
                    ts,
                    value: 1.1,
                    threshold: 1.0,
                },
            );
            emit(
                &mut s,
                Finding::OverLimitClosed {
                    point: 0,
                    ts: ts + 10_000,
                    value: 0.9,
                },
            );
        }
        let key = (AlertKind::Overlimit, 0, Subject::Point(0));
        // Within the interval the alert stays active.
        clock.set(T0 + 70_000 + 600_000);
        s.advance();
        assert!(s.active.contains_key(&key));
        clock.set(T0 + 70_000 + 600_001);
        s.advance();
        assert!(!s.active.contains_key(&key));
        let mut events = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            events.push((
                ev.event.clone(),
                ev.alert.alert.crossings,
                ev.alert.alert.resolved_at.clone(),
            ));
        }
        let raised = events.iter().filter(|e| e.0 == "raised").count();
        assert_eq!(raised, 1, "{events:?}");
        let last = events.last().expect("events");
        assert_eq!(last.1, Some(3), "{events:?}");
        assert_eq!(
            last.2.as_deref(),
            Some(rfc3339(T0 + 70_000).as_str()),
            "{events:?}"
        );
    }
}
