//! The alert lifecycle: every change of an alert's condition (active →
//! cleared) and handling (unacknowledged → acknowledged → disposed →
//! closed), its escalation up the jurisdictions, its duty task, and the
//! outbox rows each change owes the channels — all written in one store
//! transaction before anything is pushed or shown.
//!
//! The alert stage calls [`Lifecycle::raise`], [`Lifecycle::clear`] and
//! [`Lifecycle::tick`] from its thread; the HTTP API calls the operator
//! actions (from `spawn_blocking`). Time comes from the injected clock, so
//! re-notification, escalation and overdue tasks are testable.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::{Notify, broadcast};

use super::AlertEvent;
use super::outbox::Notification;
use super::routing::{Routing, next_level};
use crate::config::alerting::AlertingConfig;
use crate::metrics::Metrics;
use crate::model::{Alert, AlertKind, rfc3339};
use crate::pipeline::Clock;
use crate::store::alerts::{self as q, AlertRecord, NewTransition, TaskRecord};
use crate::store::{Db, RosterEntry, Store};
use crate::tasks::{self, Feedback};

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No such alert or task.
    #[error("{0}")]
    NotFound(String),
    /// Not allowed in the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The request lacks something (422).
    #[error("{0}")]
    Invalid(String),
    /// The store failed (500).
    #[error("store: {0:#}")]
    Store(#[from] anyhow::Error),
}

/// The alert lifecycle.
pub struct Lifecycle {
    /// The store.
    pub store: Arc<Store>,
    routing: Routing,
    policy: AlertingConfig,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<Arc<AlertEvent>>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    started_ms: i64,
    /// Alerts from before the restart that a detector has confirmed since.
    confirmed: Mutex<HashSet<String>>,
    grace_done: Mutex<bool>,
    /// Cluster mode: the timers run only while this is true (this instance
    /// holds the leader lease), and the restart grace does not run.
    timer_gate: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Chinese name of an alert kind.
pub fn kind_zh(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Evacuation => "撤人",
        AlertKind::Overlimit => "超限报警",
        AlertKind::PointOffline => "测点断线",
        AlertKind::MineOffline => "全矿断网",
        AlertKind::DataAnomaly => "数据异常",
        AlertKind::FalsificationSuspect => "造假嫌疑",
        AlertKind::SuspectedIllegalProduction => "疑似违规生产 (明停暗开)",
        AlertKind::Overmanning => "超定员",
        AlertKind::SealAlert => "电子封条告警",
    }
}

fn transition_zh(t: &str) -> &'static str {
    match t {
        "raised" => "新报警",
        "renotified" => "未签收, 再次提醒",
        "escalated" => "超时未签收, 已升级",
        "cleared" => "已解除",
        "acknowledged" => "已签收",
        "disposed" => "已处置",
        "closed" => "已闭环",
        "task_overdue" => "核查任务超期",
        _ => "状态变化",
    }
}

fn level_zh(level: &str) -> &'static str {
    match level {
        "city" => "市级",
        "province" => "省级",
        _ => "县级",
    }
}

fn fmt_value(v: Option<f64>, unit: &Option<String>) -> String {
    match v {
        Some(v) => format!("{v:.2}{}", unit.as_deref().unwrap_or("")),
        None => "-".into(),
    }
}

impl Lifecycle {
    /// A lifecycle over `store`.
    pub fn new(
        store: Arc<Store>,
        policy: AlertingConfig,
        clock: Arc<dyn Clock>,
        events: broadcast::Sender<Arc<AlertEvent>>,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Lifecycle {
        let started_ms = clock.now_ms();
        Lifecycle {
            store,
            routing: Routing::build(&policy),
            policy,
            clock,
            events,
            wake,
            metrics,
            started_ms,
            confirmed: Mutex::new(HashSet::new()),
            grace_done: Mutex::new(false),
            timer_gate: None,
        }
    }

    /// Cluster mode: re-notification, escalation and overdue tasks run
    /// only while `gate` is true (one instance, the leader, runs them for
    /// the whole cluster), and alerts from before this instance started
    /// are not cleared after the restart grace (they may be another
    /// instance's; their owner's detectors clear them).
    pub fn run_timers_only_when(&mut self, gate: Arc<std::sync::atomic::AtomicBool>) {
        self.timer_gate = Some(gate);
    }

    /// Replaces the config lines of the roster.
    pub fn load_roster(&self) -> anyhow::Result<()> {
        let entries = tasks::roster_from_config(&self.policy.roster);
        self.store.tx(|db| q::replace_config_roster(db, &entries))
    }

    /// The alert events of the live feed.
    pub fn events(&self) -> &broadcast::Sender<Arc<AlertEvent>> {
        &self.events
    }

    /// The lifecycle's clock (processing time), ms.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Records `transition` of `rec` and queues its pushes; returns the
    /// transition's sequence number.
    fn record(
        &self,
        db: &mut dyn Db,
        rec: &AlertRecord,
        transition: &str,
        actor: &str,
        detail: serde_json::Value,
        at_ms: i64,
    ) -> anyhow::Result<i64> {
        let seq = q::add_transition(
            db,
            &rec.alert.id,
            &NewTransition {
                at_ms,
                transition,
                actor,
                detail: detail.clone(),
            },
        )?;
        let channels = self
            .routing
            .channels(&rec.alert, &rec.level, rec.planned, transition);
        if !channels.is_empty() {
            let base = self.notification(rec, transition, seq, actor, &detail, at_ms);
            // The outbox runs on wall-clock time (its dispatcher does I/O,
            // not detection), whatever clock the transition was stamped by.
            let queued = chrono::Utc::now().timestamp_millis();
            for ch in channels {
                let mut n = base.clone();
                n.key = format!("{}:{}:{}", rec.alert.id, seq, ch);
                q::enqueue(db, &ch, queued, &n)?;
            }
        }
        Ok(seq)
    }

    fn notification(
        &self,
        rec: &AlertRecord,
        transition: &str,
        seq: i64,
        actor: &str,
        detail: &serde_json::Value,
        at_ms: i64,
    ) -> Notification {
        let a = &rec.alert;
        let what = match (a.kind, &a.point) {
            (AlertKind::Evacuation | AlertKind::Overlimit, Some(p)) => format!(
                "{p} {} ≥ {}",
                fmt_value(a.value, &a.unit),
                fmt_value(a.threshold, &a.unit)
            ),
            (
                AlertKind::DataAnomaly
                | AlertKind::FalsificationSuspect
                | AlertKind::SealAlert
                | AlertKind::SuspectedIllegalProduction
                | AlertKind::Overmanning,
                Some(p),
            ) => format!("{p} {}", a.rule),
            (
                AlertKind::SuspectedIllegalProduction
                | AlertKind::Overmanning
                | AlertKind::SealAlert,
                None,
            ) => match a.value {
                Some(_) => format!("{} ({})", a.rule, fmt_value(a.value, &a.unit)),
                None => a.rule.clone(),
            },
            (_, Some(p)) => format!("{p} 无数据"),
            (_, None) => "全矿无数据".to_string(),
        };
        let title = format!("【{}】{} {}", kind_zh(a.kind), a.mine_name, what);
        let mut body = vec![
            format!("{}: {}", transition_zh(transition), rfc3339(at_ms)),
            format!(
                "矿井: {} ({}), 县 {} / 市 {}",
                a.mine_name,
                a.mine,
                self.jurisdiction_name(&a.county),
                self.jurisdiction_name(&a.city)
            ),
            format!("依据: {}", a.rule),
            format!(
                "开始: {}; 峰值: {}",
                a.started_at,
                fmt_value(a.peak, &a.unit)
            ),
            format!(
                "级别: {}{}",
                level_zh(&rec.level),
                if rec.planned {
                    " (计划内调校)"
                } else {
                    ""
                }
            ),
        ];
        if actor != "system" {
            body.push(format!("操作人: {actor}"));
        }
        if !detail.is_null() && detail.as_object().is_some_and(|o| !o.is_empty()) {
            body.push(format!("详情: {detail}"));
        }
        Notification {
            key: String::new(),
            alert_id: a.id.clone(),
            seq,
            transition: transition.to_string(),
            at: rfc3339(at_ms),
            level: rec.level.clone(),
            kind: a.kind.key().to_string(),
            severity: a.severity.key().to_string(),
            mine: a.mine.clone(),
            mine_name: a.mine_name.clone(),
            county: a.county.clone(),
            title,
            body,
            alert: serde_json::to_value(rec).unwrap_or(serde_json::Value::Null),
        }
    }

    fn jurisdiction_name(&self, code: &str) -> String {
        match self.policy.jurisdictions.get(code) {
            Some(n) => format!("{n}({code})"),
            None => code.to_string(),
        }
    }

    fn publish(&self, event: &str, id: &str) {
        match self.store.read(|db| q::get_alert(db, id)) {
            Ok(Some(rec)) => {
                let _ = self.events.send(Arc::new(AlertEvent {
                    event: event.to_string(),
                    alert: rec,
                }));
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %format!("{e:#}"), id, "cannot read alert back"),
        }
        self.wake.notify_one();
    }

    /// A detector found a new episode. Returns the id of the alert that
    /// stands for it — a new one, or the one still active from before a
    /// restart for the same kind, mine and point — and whether it is new.
    pub fn raise(&self, alert: Alert) -> anyhow::Result<(String, bool)> {
        let now = self.now();
        let kind = alert.kind;
        let existing = self
            .store
            .read(|db| q::find_active(db, kind.key(), &alert.mine, alert.point.as_deref()))?;
        if let Some(rec) = existing {
            if rec.raised_ms < self.started_ms {
                tracing::info!(id = %rec.alert.id, "alert from before the restart confirmed");
            }
            self.confirmed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(rec.alert.id.clone());
            return Ok((rec.alert.id, false));
        }
        let id = alert.id.clone();
        let created = self.store.tx(|db| {
            let started = q::parse_ms(&alert.started_at);
            let planned = q::in_calibration(db, &alert.mine, alert.point.as_deref(), started)?;
            let rec = AlertRecord {
                alert: alert.clone(),
                condition: "active".into(),
                handling: "unacknowledged".into(),
                level: "county".into(),
                planned,
                raised_at: rfc3339(now),
                task: None,
                raised_ms: now,
                cleared_ms: None,
                last_notified_ms: now,
                level_since_ms: now,
                seq: 0,
            };
            if !q::insert_alert(db, &rec)? {
                // The same episode id exists, cleared: a detector re-raised
                // an episode with the same start. Nothing new.
                return Ok(false);
            }
            self.record(
                db,
                &rec,
                "raised",
                "system",
                json!({ "value": alert.value, "threshold": alert.threshold }),
                now,
            )?;
            if tasks::needs_task(kind) {
                let roster = q::roster(db)?;
                let who = tasks::on_duty(&roster, &alert.county, now).map(|e| e.inspector.clone());
                let due = now + 1000 * self.policy.task_due_secs.get(alert.severity) as i64;
                let title = format!(
                    "核查{}: {} {}",
                    kind_zh(kind),
                    alert.mine_name,
                    alert.point.as_deref().unwrap_or("")
                );
                let task = q::insert_task(db, &alert, who.as_deref(), title.trim_end(), now, due)?;
                q::add_transition(
                    db,
                    &alert.id,
                    &NewTransition {
                        at_ms: now,
                        transition: "task_created",
                        actor: "system",
                        detail: json!({ "task": task.id, "assignee": task.assignee, "due_at": task.due_at }),
                    },
                )?;
                if task.assignee.is_none() {
                    self.metrics.tasks_unassigned.inc();
                    tracing::warn!(county = %alert.county, task = %task.id, "no inspector on duty for the county; task unassigned");
                }
            }
            Ok(true)
        })?;
        if created {
            self.publish("raised", &id);
        }
        Ok((id, created))
    }

    /// The episode's peak grew.
    pub fn update_peak(&self, id: &str, peak: f64) -> anyhow::Result<()> {
        if !peak.is_finite() {
            return Ok(());
        }
        let changed = self.store.tx(|db| {
            db.execute(
                "UPDATE alerts SET peak = $1 WHERE id = $2 AND condition = 'active' \
                 AND (peak IS NULL OR peak < $1)",
                &[crate::store::Val::Real(peak), id.into()],
            )
        })?;
        if changed > 0 {
            self.publish("updated", id);
        }
        Ok(())
    }

    /// The active over-limit alert `id` stands for `crossings` crossings of
    /// its line (its point re-crossed within `rules.regroup_secs`): the
    /// count is written into its body and the feed told; nothing is pushed
    /// (the alert's raise was).
    pub fn recrossed(&self, id: &str, crossings: u32) -> anyhow::Result<()> {
        let changed = self.store.tx(|db| {
            let Some(mut rec) = crate::store::alerts::get_alert(db, id)? else {
                return Ok(0);
            };
            if rec.condition != "active" {
                return Ok(0);
            }
            rec.alert.crossings = Some(crossings);
            let body = serde_json::to_string(&rec.alert)?;
            db.execute(
                "UPDATE alerts SET body = $1 WHERE id = $2 AND condition = 'active'",
                &[crate::store::Val::Text(body), id.into()],
            )
        })?;
        if changed > 0 {
            self.publish("updated", id);
        }
        Ok(())
    }

    /// The condition ended at `at_ms` (event time), for `reason`.
    pub fn clear(&self, id: &str, at_ms: i64, reason: &str) -> anyhow::Result<bool> {
        let now = self.now();
        let cleared = self.store.tx(|db| {
            let Some(rec) = q::get_alert(db, id)? else {
                return Ok(false);
            };
            if rec.condition != "active" {
                return Ok(false);
            }
            q::set_alert(db, id, "condition", "cleared".into())?;
            q::set_alert(db, id, "cleared_ms", at_ms.into())?;
            let mut rec = rec;
            rec.condition = "cleared".into();
            rec.cleared_ms = Some(at_ms);
            rec.alert.resolved_at = Some(rfc3339(at_ms));
            self.record(
                db,
                &rec,
                "cleared",
                "system",
                json!({ "reason": reason, "peak": rec.alert.peak }),
                now,
            )?;
            if rec.task.as_ref().is_some_and(|t| t.state == "closed") && rec.handling != "closed" {
                self.close_in(db, &rec, "system", None, now)?;
            }
            Ok(true)
        })?;
        if cleared {
            self.publish("resolved", id);
        }
        Ok(cleared)
    }

    fn close_in(
        &self,
        db: &mut dyn Db,
        rec: &AlertRecord,
        actor: &str,
        feedback: Option<&Feedback>,
        now: i64,
    ) -> anyhow::Result<()> {
        q::set_alert(db, &rec.alert.id, "handling", "closed".into())?;
        let mut rec = rec.clone();
        rec.handling = "closed".into();
        let detail = match feedback {
            Some(f) => json!({ "feedback": f }),
            None => json!({ "reason": "task closed with feedback and condition cleared" }),
        };
        self.record(db, &rec, "closed", actor, detail, now)?;
        Ok(())
    }

    /// Processing time moved on: re-notifies unacknowledged active alerts,
    /// escalates unacknowledged ones (active or not), marks overdue tasks, and after the restart grace
    /// clears alerts from before the restart that no detector confirmed.
    pub fn tick(&self) -> anyhow::Result<()> {
        let now = self.now();
        if let Some(gate) = &self.timer_gate {
            if !gate.load(std::sync::atomic::Ordering::Acquire) {
                return Ok(());
            }
        } else {
            self.restart_grace(now)?;
        }
        // Escalation follows the handling, not the condition: an evacuation
        // nobody acknowledged escalates even if the gas has already fallen.
        // Re-notification is for alerts still active.
        let open = self.store.read(|db| {
            q::list_alerts(
                db,
                &q::AlertQuery {
                    handling: Some("unacknowledged".into()),
                    limit: 100_000,
                    ..Default::default()
                },
            )
        })?;
        for rec in open {
            let sev = rec.alert.severity;
            let esc = 1000 * self.policy.escalate_after_secs.get(sev) as i64;
            let again = 1000 * self.policy.renotify_secs.get(sev) as i64;
            if esc > 0
                && now - rec.level_since_ms >= esc
                && let Some(up) = next_level(&rec.level)
            {
                self.escalate(&rec, up, "unacknowledged", now)?;
            } else if again > 0 && rec.condition == "active" && now - rec.last_notified_ms >= again
            {
                let id = rec.alert.id.clone();
                self.store.tx(|db| {
                    q::set_alert(db, &id, "last_notified_ms", now.into())?;
                    let waited = (now - rec.raised_ms) / 1000;
                    self.record(
                        db,
                        &rec,
                        "renotified",
                        "system",
                        json!({ "unacknowledged_secs": waited }),
                        now,
                    )
                })?;
                self.metrics
                    .alert_transitions
                    .with_label_values(&["renotified"])
                    .inc();
                self.publish("renotified", &id);
            }
        }
        let due = self.store.read(|db| q::tasks_falling_due(db, now))?;
        for task in due {
            self.task_overdue(&task, now)?;
        }
        Ok(())
    }

    fn escalate(&self, rec: &AlertRecord, up: &str, why: &str, now: i64) -> anyhow::Result<()> {
        let id = rec.alert.id.clone();
        self.store.tx(|db| {
            q::set_alert(db, &id, "level", up.into())?;
            q::set_alert(db, &id, "level_since_ms", now.into())?;
            q::set_alert(db, &id, "last_notified_ms", now.into())?;
            let mut r = rec.clone();
            let from = std::mem::replace(&mut r.level, up.to_string());
            self.record(
                db,
                &r,
                "escalated",
                "system",
                json!({ "from": from, "to": up, "why": why }),
                now,
            )
        })?;
        self.metrics
            .alert_transitions
            .with_label_values(&["escalated"])
            .inc();
        tracing::warn!(id = %id, level = up, why, "alert escalated");
        self.publish("escalated", &id);
        Ok(())
    }

    fn task_overdue(&self, task: &TaskRecord, now: i64) -> anyhow::Result<()> {
        let Some(rec) = self.store.read(|db| q::get_alert(db, &task.alert_id))? else {
            return Ok(());
        };
        let up = next_level(&rec.level);
        self.store.tx(|db| {
            q::mark_task_overdue(db, &task.id)?;
            let mut r = rec.clone();
            if let Some(up) = up {
                q::set_alert(db, &r.alert.id, "level", up.into())?;
                q::set_alert(db, &r.alert.id, "level_since_ms", now.into())?;
                r.level = up.to_string();
            }
            self.record(
                db,
                &r,
                "task_overdue",
                "system",
                json!({ "task": task.id, "assignee": task.assignee, "due_at": task.due_at, "level": r.level }),
                now,
            )
        })?;
        self.metrics
            .alert_transitions
            .with_label_values(&["task_overdue"])
            .inc();
        tracing::warn!(task = %task.id, alert = %task.alert_id, "duty task overdue; escalated");
        self.publish("task_overdue", &task.alert_id);
        Ok(())
    }

    fn restart_grace(&self, now: i64) -> anyhow::Result<()> {
        {
            let mut done = self.grace_done.lock().unwrap_or_else(|p| p.into_inner());
            if *done || now < self.started_ms + 1000 * self.policy.restart_grace_secs as i64 {
                return Ok(());
            }
            *done = true;
        }
        let active = self.store.read(q::active_alerts)?;
        let confirmed = self
            .confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for rec in active {
            if rec.raised_ms < self.started_ms && !confirmed.contains(&rec.alert.id) {
                tracing::info!(id = %rec.alert.id, "alert from before the restart not confirmed; cleared");
                self.clear(&rec.alert.id, now, "unconfirmed_after_restart")?;
            }
        }
        Ok(())
    }

    fn load(&self, db: &mut dyn Db, id: &str) -> Result<AlertRecord, ActionError> {
        q::get_alert(db, id)?.ok_or_else(|| ActionError::NotFound(format!("no alert {id}")))
    }

    fn actor(by: &str) -> Result<&str, ActionError> {
        let by = by.trim();
        if by.is_empty() {
            return Err(ActionError::Invalid(
                "`by` (who acts) must not be empty".into(),
            ));
        }
        Ok(by)
    }

    /// Refuses feedback with empty fields, naming them.
    fn complete(feedback: &Feedback, what: &str) -> Result<(), ActionError> {
        let missing = feedback.missing();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ActionError::Invalid(format!(
            "{what} cannot close without the verification feedback; missing: {}",
            missing.join(", ")
        )))
    }

    /// Acknowledges alert `id` (签收).
    pub fn acknowledge(&self, id: &str, by: &str) -> Result<AlertRecord, ActionError> {
        let by = Self::actor(by)?;
        let now = self.now();
        self.store
            .tx(|db| {
                let rec = self.load(db, id)?;
                match rec.handling.as_str() {
                    "unacknowledged" => {}
                    "closed" => {
                        return Err(ActionError::Conflict(format!(
                            "alert {id} is closed; a closed alert cannot be acknowledged"
                        ))
                        .into());
                    }
                    h => {
                        return Err(
                            ActionError::Conflict(format!("alert {id} is already {h}")).into()
                        );
                    }
                }
                self.ack_in(db, &rec, by, now)?;
                Ok(())
            })
            .map_err(unwrap_action)?;
        self.after_action("acknowledged", id)
    }

    fn ack_in(&self, db: &mut dyn Db, rec: &AlertRecord, by: &str, now: i64) -> anyhow::Result<()> {
        q::set_alert(db, &rec.alert.id, "handling", "acknowledged".into())?;
        let mut r = rec.clone();
        r.handling = "acknowledged".into();
        self.record(db, &r, "acknowledged", by, json!({}), now)?;
        Ok(())
    }

    /// Records the disposal of alert `id` (处置): what was done.
    pub fn dispose(&self, id: &str, by: &str, note: &str) -> Result<AlertRecord, ActionError> {
        let by = Self::actor(by)?;
        if note.trim().is_empty() {
            return Err(ActionError::Invalid(
                "`note` must say what was done to dispose of the alert".into(),
            ));
        }
        let now = self.now();
        self.store
            .tx(|db| {
                let rec = self.load(db, id)?;
                match rec.handling.as_str() {
                    "unacknowledged" | "acknowledged" => {}
                    h => {
                        return Err(
                            ActionError::Conflict(format!("alert {id} is already {h}")).into()
                        );
                    }
                }
                if rec.handling == "unacknowledged" {
                    self.ack_in(db, &rec, by, now)?;
                }
                q::set_alert(db, id, "handling", "disposed".into())?;
                let mut r = rec.clone();
                r.handling = "disposed".into();
                self.record(db, &r, "disposed", by, json!({ "note": note }), now)?;
                Ok(())
            })
            .map_err(unwrap_action)?;
        self.after_action("disposed", id)
    }

    /// Closes alert `id` (闭环) with the verification feedback; the
    /// condition must have cleared. Closes its task too.
    pub fn close(
        &self,
        id: &str,
        by: &str,
        feedback: &Feedback,
    ) -> Result<AlertRecord, ActionError> {
        let by = Self::actor(by)?;
        Self::complete(feedback, "an alert")?;
        let now = self.now();
        self.store
            .tx(|db| {
                let rec = self.load(db, id)?;
                if rec.handling == "closed" {
                    return Err(
                        ActionError::Conflict(format!("alert {id} is already closed")).into(),
                    );
                }
                if rec.condition == "active" {
                    return Err(ActionError::Conflict(format!(
                        "alert {id} is still active; it can close once the condition has cleared"
                    ))
                    .into());
                }
                if let Some(t) = rec.task.as_ref().filter(|t| t.state != "closed") {
                    self.close_task_in(db, t, by, feedback, now)?;
                }
                self.close_in(db, &rec, by, Some(feedback), now)?;
                Ok(())
            })
            .map_err(unwrap_action)?;
        self.after_action("closed", id)
    }

    fn after_action(&self, event: &str, id: &str) -> Result<AlertRecord, ActionError> {
        self.metrics
            .alert_transitions
            .with_label_values(&[event])
            .inc();
        self.publish(event, id);
        self.store
            .read(|db| q::get_alert(db, id))?
            .ok_or_else(|| ActionError::NotFound(format!("no alert {id}")))
    }

    fn load_task(&self, db: &mut dyn Db, id: &str) -> Result<TaskRecord, ActionError> {
        q::get_task(db, id)?.ok_or_else(|| ActionError::NotFound(format!("no task {id}")))
    }

    /// The inspector takes task `id` (接收).
    pub fn task_acknowledge(&self, id: &str, by: &str) -> Result<TaskRecord, ActionError> {
        let by = Self::actor(by)?;
        let now = self.now();
        let alert_id = self
            .store
            .tx(|db| {
                let t = self.load_task(db, id)?;
                if t.state != "open" {
                    return Err(
                        ActionError::Conflict(format!("task {id} is already {}", t.state)).into(),
                    );
                }
                let assignee = t.assignee.clone().unwrap_or_else(|| by.to_string());
                q::update_task(
                    db,
                    id,
                    "acknowledged",
                    Some(&assignee),
                    Some(now),
                    None,
                    None,
                )?;
                q::add_transition(
                    db,
                    &t.alert_id,
                    &NewTransition {
                        at_ms: now,
                        transition: "task_acknowledged",
                        actor: by,
                        detail: json!({ "task": id }),
                    },
                )?;
                let rec = self.load(db, &t.alert_id)?;
                if rec.handling == "unacknowledged" {
                    self.ack_in(db, &rec, by, now)?;
                }
                Ok(t.alert_id)
            })
            .map_err(unwrap_action)?;
        self.after_task("task_acknowledged", id, &alert_id)
    }

    /// Gives task `id` to `inspector` (指派).
    pub fn task_assign(
        &self,
        id: &str,
        by: &str,
        inspector: &str,
    ) -> Result<TaskRecord, ActionError> {
        let by = Self::actor(by)?;
        if inspector.trim().is_empty() {
            return Err(ActionError::Invalid("`inspector` must not be empty".into()));
        }
        let now = self.now();
        let alert_id = self
            .store
            .tx(|db| {
                let t = self.load_task(db, id)?;
                if t.state == "closed" {
                    return Err(ActionError::Conflict(format!("task {id} is closed")).into());
                }
                q::update_task(
                    db,
                    id,
                    &t.state,
                    Some(inspector.trim()),
                    t.acknowledged_at.as_deref().map(q::parse_ms),
                    None,
                    None,
                )?;
                q::add_transition(
                    db,
                    &t.alert_id,
                    &NewTransition {
                        at_ms: now,
                        transition: "task_assigned",
                        actor: by,
                        detail: json!({ "task": id, "from": t.assignee, "to": inspector.trim() }),
                    },
                )?;
                Ok(t.alert_id)
            })
            .map_err(unwrap_action)?;
        self.after_task("task_assigned", id, &alert_id)
    }

    /// Closes task `id` with the inspector's verification (核查反馈). The
    /// alert is disposed with the same feedback, and closed if its
    /// condition has cleared (otherwise it closes when it clears).
    pub fn task_close(
        &self,
        id: &str,
        by: &str,
        feedback: &Feedback,
    ) -> Result<TaskRecord, ActionError> {
        let by = Self::actor(by)?;
        Self::complete(feedback, "a task")?;
        let now = self.now();
        let alert_id = self
            .store
            .tx(|db| {
                let t = self.load_task(db, id)?;
                if t.state == "closed" {
                    return Err(
                        ActionError::Conflict(format!("task {id} is already closed")).into(),
                    );
                }
                self.close_task_in(db, &t, by, feedback, now)?;
                let rec = self.load(db, &t.alert_id)?;
                if matches!(rec.handling.as_str(), "unacknowledged" | "acknowledged") {
                    if rec.handling == "unacknowledged" {
                        self.ack_in(db, &rec, by, now)?;
                    }
                    q::set_alert(db, &rec.alert.id, "handling", "disposed".into())?;
                    let mut r = rec.clone();
                    r.handling = "disposed".into();
                    self.record(db, &r, "disposed", by, json!({ "feedback": feedback }), now)?;
                }
                let rec = self.load(db, &t.alert_id)?;
                if rec.condition == "cleared" && rec.handling != "closed" {
                    self.close_in(db, &rec, by, Some(feedback), now)?;
                }
                Ok(t.alert_id)
            })
            .map_err(unwrap_action)?;
        self.after_task("task_closed", id, &alert_id)
    }

    fn close_task_in(
        &self,
        db: &mut dyn Db,
        t: &TaskRecord,
        by: &str,
        feedback: &Feedback,
        now: i64,
    ) -> anyhow::Result<()> {
        let fb = serde_json::to_value(feedback)?;
        let acked = t.acknowledged_at.as_deref().map(q::parse_ms).or(Some(now));
        let assignee = t.assignee.clone().unwrap_or_else(|| by.to_string());
        q::update_task(
            db,
            &t.id,
            "closed",
            Some(&assignee),
            acked,
            Some(now),
            Some(&fb),
        )?;
        q::add_transition(
            db,
            &t.alert_id,
            &NewTransition {
                at_ms: now,
                transition: "task_closed",
                actor: by,
                detail: json!({ "task": t.id, "feedback": fb }),
            },
        )?;
        Ok(())
    }

    fn after_task(
        &self,
        event: &str,
        task: &str,
        alert_id: &str,
    ) -> Result<TaskRecord, ActionError> {
        self.metrics
            .alert_transitions
            .with_label_values(&[event])
            .inc();
        self.publish(event, alert_id);
        self.store
            .read(|db| q::get_task(db, task))?
            .ok_or_else(|| ActionError::NotFound(format!("no task {task}")))
    }

    /// The `[alerting]` config.
    pub fn config(&self) -> &AlertingConfig {
        &self.policy
    }

    /// Names of jurisdictions by code, from config.
    pub fn jurisdiction_names(&self) -> &std::collections::BTreeMap<String, String> {
        &self.policy.jurisdictions
    }

    /// The roster as stored (config lines first).
    pub fn roster(&self) -> anyhow::Result<Vec<RosterEntry>> {
        self.store.read(q::roster)
    }
}

/// Turns an action error carried through `anyhow` back into itself.
fn unwrap_action(e: anyhow::Error) -> ActionError {
    match e.downcast::<ActionError>() {
        Ok(a) => a,
        Err(e) => ActionError::Store(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alerting::{RosterConfig, RouteConfig};
    use crate::model::Severity;
    use crate::pipeline::ManualClock;
    use crate::store::testing;

    const T0: i64 = 1_795_392_000_000; // 2026-11-23T08:00+08:00

    fn alert(kind: AlertKind, point: Option<&str>, started: i64) -> Alert {
        Alert {
            id: format!("{}-{}-{started}", kind.key(), point.unwrap_or("mine")),
            kind,
            severity: kind.severity(),
            mine: "140421000001".into(),
            mine_name: "一号矿".into(),
            county: "140421".into(),
            city: "140400".into(),
            province: "140000".into(),
            point: point.map(str::to_string),
            sensor: point.map(|_| "0001".into()),
            location: None,
            unit: Some("%".into()),
            value: Some(1.6),
            peak: Some(1.6),
            threshold: Some(1.5),
            rule: "回风巷 ≥1.0% 报警".into(),
            reason: None,
            started_at: rfc3339(started),
            resolved_at: None,
            last_seen: None,
            crossings: None,
        }
    }

    fn route(j: &str, ch: &str) -> RouteConfig {
        RouteConfig {
            name: None,
            jurisdiction: j.into(),
            kinds: Vec::new(),
            sensors: Vec::new(),
            transitions: Vec::new(),
            when: None,
            planned: true,
            channels: vec![ch.into()],
        }
    }

    struct World {
        life: Lifecycle,
        clock: Arc<ManualClock>,
    }

    fn world(name: &str) -> World {
        world_on(
            Arc::new(testing::store(name)),
            Arc::new(ManualClock::at(T0)),
        )
    }

    fn world_on(store: Arc<Store>, clock: Arc<ManualClock>) -> World {
        let policy = AlertingConfig {
            routes: vec![
                route("140421", "county"),
                route("140400", "city"),
                route("140000", "province"),
            ],
            roster: vec![RosterConfig {
                county: "140421".into(),
                inspector: "zhangsan".into(),
                name: Some("张三".into()),
                shift: Some("08:00-20:00".into()),
                days: Vec::new(),
            }],
            ..AlertingConfig::default()
        };
        let (events, _) = broadcast::channel(64);
        let life = Lifecycle::new(
            store,
            policy,
            clock.clone(),
            events,
            Arc::new(Notify::new()),
            Arc::new(Metrics::new(1)),
        );
        life.load_roster().unwrap();
        World { life, clock }
    }

    fn outbox(w: &World, id: &str) -> Vec<(String, String)> {
        w.life
            .store
            .read(|db| {
                let rows = db.query(
                    "SELECT channel, payload FROM outbox WHERE alert_id = $1 ORDER BY id",
                    &[id.into()],
                )?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let n: Notification = serde_json::from_str(r[1].text().unwrap()).unwrap();
                        (r[0].text().unwrap().to_string(), n.transition)
                    })
                    .collect())
            })
            .unwrap()
    }

    fn history(w: &World, id: &str) -> Vec<String> {
        w.life
            .store
            .read(|db| q::transitions(db, id))
            .unwrap()
            .into_iter()
            .map(|t| t.transition)
            .collect()
    }

    fn feedback() -> Feedback {
        Feedback {
            contacted: "电话联系调度室 王工".into(),
            cause: "回采工作面放炮后瓦斯涌出".into(),
            measures: "停电撤人, 加强通风".into(),
            result: "瓦斯降至 0.4%, 恢复生产".into(),
        }
    }

    #[test]
    fn a_raise_is_stored_with_its_task_and_owes_the_county_a_push() {
        let w = world("raise");
        let a = alert(AlertKind::Evacuation, Some("p1"), T0);
        let (id, new) = w.life.raise(a.clone()).unwrap();
        assert!(new);
        // Raising the same episode again changes nothing.
        assert_eq!(w.life.raise(a).unwrap(), (id.clone(), false));
        let rec = w
            .life
            .store
            .read(|db| q::get_alert(db, &id))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                rec.condition.as_str(),
                rec.handling.as_str(),
                rec.level.as_str()
            ),
            ("active", "unacknowledged", "county")
        );
        let task = rec.task.unwrap();
        assert_eq!(task.assignee.as_deref(), Some("zhangsan"));
        assert_eq!(task.due_ms, T0 + 1800 * 1000);
        assert_eq!(history(&w, &id), vec!["raised", "task_created"]);
        assert_eq!(
            outbox(&w, &id),
            vec![("county".to_string(), "raised".to_string())]
        );
    }

    #[test]
    fn in_a_cluster_only_the_leader_runs_the_timers_and_nobody_clears_on_restart() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut w = world("cluster_gate");
        let gate = Arc::new(AtomicBool::new(false));
        w.life.run_timers_only_when(gate.clone());
        let (id, _) = w
            .life
            .raise(alert(AlertKind::Overlimit, Some("p1"), T0))
            .unwrap();
        // Past re-notification and the restart grace: not the leader, so
        // nothing happens.
        w.clock.advance(1_000_000);
        w.life.tick().unwrap();
        assert_eq!(outbox(&w, &id).len(), 1, "only the raise");
        gate.store(true, Ordering::Release);
        w.life.tick().unwrap();
        assert_eq!(outbox(&w, &id)[1], ("county".into(), "renotified".into()));
        let rec = w
            .life
            .store
            .read(|db| q::get_alert(db, &id))
            .unwrap()
            .unwrap();
        assert_eq!(rec.condition, "active", "no restart-grace clearing");
    }

    #[test]
    fn unacknowledged_alerts_are_renotified_then_escalated_up_to_the_province() {
        let w = world("escalate");
        let (id, _) = w
            .life
            .raise(alert(AlertKind::Overlimit, Some("p1"), T0))
            .unwrap();
        // Major: re-notify every 900 s, escalate after 1800 s per level.
        w.clock.advance(899_000);
        w.life.tick().unwrap();
        assert_eq!(outbox(&w, &id).len(), 1);
        w.clock.advance(1_000);
        w.life.tick().unwrap();
        assert_eq!(outbox(&w, &id)[1], ("county".into(), "renotified".into()));
        w.clock.advance(900_000);
        w.life.tick().unwrap();
        let rec = w
            .life
            .store
            .read(|db| q::get_alert(db, &id))
            .unwrap()
            .unwrap();
        assert_eq!(rec.level, "city");
        let pushes = outbox(&w, &id);
        assert!(
            pushes.contains(&("city".into(), "escalated".into())),
            "{pushes:?}"
        );
        assert!(!pushes.iter().any(|(c, _)| c == "province"));
        w.clock.advance(1_800_000);
        w.life.tick().unwrap();
        assert!(outbox(&w, &id).contains(&("province".into(), "escalated".into())));
        // No level above the province.
        w.clock.advance(1_800_000);
        w.life.tick().unwrap();
        let rec = w
            .life
            .store
            .read(|db| q::get_alert(db, &id))
            .unwrap()
            .unwrap();
        assert_eq!(rec.level, "province");
    }

    #[test]
    fn an_evacuation_nobody_acknowledged_escalates_even_once_cleared_but_is_not_renotified() {
        let w = world("cleared_escalates");
        let (id, _) = w
            .life
            .raise(alert(AlertKind::Evacuation, Some("p1"), T0))
            .unwrap();
        w.clock.advance(20_000);
        w.life.clear(&id, T0 + 20_000, "condition_ended").unwrap();
        w.clock.advance(280_000);
        w.life.tick().unwrap();
        let h = history(&w, &id);
        assert!(h.contains(&"escalated".to_string()), "{h:?}");
        assert!(!h.contains(&"renotified".to_string()), "{h:?}");
    }

    #[test]
    fn an_acknowledged_alert_is_neither_renotified_nor_escalated() {
        let w = world("ack");
        let (id, _) = w
            .life
            .raise(alert(AlertKind::Evacuation, Some("p1"), T0))
            .unwrap();
        w.clock.advance(60_000);
        let rec = w.life.acknowledge(&id, "县局值班员").unwrap();
        assert_eq!(rec.handling, "acknowledged");
        w.clock.advance(3_600_000);
        w.life.tick().unwrap();
        assert_eq!(rec.level, "county");
        let h = w.life.store.read(|db| q::transitions(db, &id)).unwrap();
        let ack = h.iter().find(|t| t.transition == "acknowledged").unwrap();
        assert_eq!(ack.actor, "县局值班员");
        assert!(
            !h.iter()
                .any(|t| t.transition == "escalated" || t.transition == "renotified")
        );
        assert!(matches!(
            w.life.acknowledge(&id, "x"),
            Err(ActionError::Conflict(_))
        ));
    }

    #[test]
    fn invalid_actions_are_refused_with_the_reason() {
        let w = world("invalid");
        let (id, _) = w
            .life
            .raise(alert(AlertKind::Evacuation, Some("p1"), T0))
            .unwrap();
        assert!(matches!(
            w.life.acknowledge("nope", "x"),
            Err(ActionError::NotFound(_))
        ));
        assert!(matches!(
            w.life.acknowledge(&id, " "),
            Err(ActionError::Invalid(_))
        ));
        assert!(matches!(
            w.life.dispose(&id, "x", ""),
            Err(ActionError::Invalid(_))
        ));
        let mut partial = feedback();
        partial.cause.clear();
        match w.life.close(&id, "x", &partial) {
            Err(ActionError::Invalid(m)) => assert!(m.contains("cause"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Still active: cannot close yet.
        assert!(matches!(
            w.life.close(&id, "x", &feedback()),
            Err(ActionError::Conflict(_))
        ));
        w.life.clear(&id, T0 + 60_000, "condition_ended").unwrap();
        w.life.close(&id, "x", &feedback()).unwrap();
        match w.life.acknowledge(&id, "x") {
            Err(ActionError::Conflict(m)) => assert!(m.contains("closed"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Closing the alert closed its task with the same feedback.
        let task = w
            .life
            .store
            .read(|db| q::task_for_alert(db, &id))
            .unwrap()
            .unwrap();
        assert_eq!(task.state, "closed");
        assert_eq!(task.feedback.unwrap()["cause"], "回采工作面放炮后瓦斯涌出");
    }

    #[test]
    fn closing_the_task_disposes_the_alert_and_its_clearing_closes_it() {
        let w = world("task_close");
        let (id, _) = w
            .life
            .raise(alert(AlertKind::Overlimit, Some("p1"), T0))
            .unwrap();
        let tid = format!("T{id}");
        let t = w.life.task_acknowledge(&tid, "zhangsan").unwrap();
        assert_eq!(t.state, "acknowledged");
        assert!(matches!(
            w.life.task_close(
                &tid,
                "zhangsan",
                &Feedback {
                    result: String::new(),
                    ..feedback()
                }
            ),
            Err(ActionError::Invalid(_))
        ));
        let t = w.life.task_close(&tid, "zhangsan", &feedback()).unwrap();
        assert_eq!(t.state, "closed");
        let rec = w
            .life
            .store
            .read(|db| q::get_alert(db, &id))
            .unwrap()
            .unwrap();
        assert_eq!(rec.handling, "disposed");
        w.life.clear(&id, T0 + 120_000, "condition_ended").unwrap();
        let rec = w
            .life
            .store
            .read(|db| q::get_alert(db, &id))
            .unwrap()
            .unwrap();
        assert_eq!(
            (rec.condition.as_str(), rec.handling.as_str()),
            ("cleared", "closed")
        );
        assert_eq!(
            history(&w, &id),
            vec![
                "raised",
                "task_created",
                "task_acknowledged",
                "acknowledged",
                "task_closed",
                "disposed",
                "cleared",
                "closed"
            ]
        );
        assert!(matches!(
            w.life.task_close(&tid, "zhangsan", &feedback()),
            Err(ActionError::Conflict(_))
        ));
    }

    #[test]
    fn an_overdue_task_escalates_its_alert() {
        let w = world("overdue");
        let (id, _) = w
            .life
            .raise(alert(AlertKind::MineOffline, None, T0))
            .unwrap();
        let tid = format!("T{id}");
        w.life.acknowledge(&id, "zhangsan").unwrap();
        w.clock.advance(7_200_000);
        w.life.tick().unwrap();
        let t = w
            .life
            .store
            .read(|db| q::get_task(db, &tid))
            .unwrap()
            .unwrap();
        assert!(t.overdue);
        let rec = w
            .life
            .store
            .read(|db| q::get_alert(db, &id))
            .unwrap()
            .unwrap();
        assert_eq!(rec.level, "city");
        assert!(outbox(&w, &id).contains(&("city".into(), "task_overdue".into())));
        // Once only.
        w.clock.advance(60_000);
        w.life.tick().unwrap();
        assert_eq!(
            history(&w, &id)
                .iter()
                .filter(|t| *t == "task_overdue")
                .count(),
            1
        );
    }

    #[test]
    fn a_task_is_unassigned_when_nobody_is_on_duty() {
        let w = world("night");
        w.clock.set(T0 + 13 * 3_600_000); // 21:00 Beijing time
        let (id, _) = w
            .life
            .raise(alert(AlertKind::Overlimit, Some("p1"), T0))
            .unwrap();
        let task = w
            .life
            .store
            .read(|db| q::task_for_alert(db, &id))
            .unwrap()
            .unwrap();
        assert_eq!(task.assignee, None);
        let t = w.life.task_assign(&task.id, "desk", "lisi").unwrap();
        assert_eq!(t.assignee.as_deref(), Some("lisi"));
    }

    #[test]
    fn after_a_restart_confirmed_alerts_continue_and_the_rest_clear() {
        let store = Arc::new(testing::store("restart"));
        let clock = Arc::new(ManualClock::at(T0));
        let w = world_on(store.clone(), clock.clone());
        let (kept, _) = w
            .life
            .raise(alert(AlertKind::Overlimit, Some("p1"), T0))
            .unwrap();
        let (gone, _) = w
            .life
            .raise(alert(AlertKind::Overlimit, Some("p2"), T0))
            .unwrap();
        drop(w);
        clock.advance(60_000);
        let w = world_on(store, clock.clone());
        // The detector sees p1 still over the limit: a new episode start,
        // but the stored alert continues.
        let (id, new) = w
            .life
            .raise(alert(AlertKind::Overlimit, Some("p1"), T0 + 60_000))
            .unwrap();
        assert_eq!((id.as_str(), new), (kept.as_str(), false));
        clock.advance(300_000);
        w.life.tick().unwrap();
        let g = w
            .life
            .store
            .read(|db| q::get_alert(db, &gone))
            .unwrap()
            .unwrap();
        assert_eq!(g.condition, "cleared");
        let k = w
            .life
            .store
            .read(|db| q::get_alert(db, &kept))
            .unwrap()
            .unwrap();
        assert_eq!(k.condition, "active");
        let h = w.life.store.read(|db| q::transitions(db, &gone)).unwrap();
        assert_eq!(
            h.last().unwrap().detail["reason"],
            "unconfirmed_after_restart"
        );
    }

    #[test]
    fn an_alert_in_a_declared_calibration_window_is_planned() {
        let w = world("planned");
        w.life
            .store
            .tx(|db| {
                q::add_calibration(
                    db,
                    &q::Calibration {
                        id: 0,
                        mine: "140421000001".into(),
                        point: Some("p1".into()),
                        from: rfc3339(T0 - 60_000),
                        to: rfc3339(T0 + 600_000),
                        note: "甲烷传感器调校".into(),
                        by: "矿调度".into(),
                        declared_at: None,
                    },
                    T0,
                )
            })
            .unwrap();
        let (a, _) = w
            .life
            .raise(alert(AlertKind::Overlimit, Some("p1"), T0))
            .unwrap();
        let (b, _) = w
            .life
            .raise(alert(AlertKind::Overlimit, Some("p2"), T0))
            .unwrap();
        let planned = |id: &str| {
            w.life
                .store
                .read(|db| q::get_alert(db, id))
                .unwrap()
                .unwrap()
                .planned
        };
        assert!(planned(&a));
        assert!(!planned(&b));
        assert_eq!(Severity::Major, AlertKind::Overlimit.severity());
    }
}
