//! The store's queries: alerts and their transitions, the outbox, duty
//! tasks and the roster. Every function takes the connection of a running
//! transaction ([`super::Store::tx`]) or read ([`super::Store::read`]).

use anyhow::Context;
use serde::Serialize;

use super::{Db, Store, Val};
use crate::alert::outbox::{Notification, OutboxRow, OutboxStore};
use crate::model::{Alert, rfc3339};

/// An alert with its handling state, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord {
    /// The alert itself (peak and resolution kept current).
    #[serde(flatten)]
    pub alert: Alert,
    /// `active` or `cleared`.
    pub condition: String,
    /// `unacknowledged`, `acknowledged`, `disposed` or `closed`.
    pub handling: String,
    /// Jurisdiction level it has reached: `county`, `city`, `province`.
    pub level: String,
    /// True when raised while the point was being calibrated or tested
    /// (计划内); regulators count those apart from unplanned alerts.
    pub planned: bool,
    /// When minewatch raised it, RFC 3339.
    pub raised_at: String,
    /// The duty task, if the alert has one.
    pub task: Option<TaskRecord>,
    /// Raised, ms.
    #[serde(skip)]
    pub raised_ms: i64,
    /// Cleared, ms.
    #[serde(skip)]
    pub cleared_ms: Option<i64>,
    /// Last push of a raise, re-notification or escalation, ms.
    #[serde(skip)]
    pub last_notified_ms: i64,
    /// When the alert reached its current level, ms.
    #[serde(skip)]
    pub level_since_ms: i64,
    /// Sequence number of its last transition.
    #[serde(skip)]
    pub seq: i64,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionRecord {
    /// 1, 2, … within the alert.
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    /// `raised`, `cleared`, `acknowledged`, `task_created`, …
    pub transition: String,
    /// Who: a user name, or `system`.
    pub actor: String,
    /// Details (feedback, level, reason), JSON.
    pub detail: serde_json::Value,
}

/// A transition to record.
#[derive(Debug, Clone)]
pub struct NewTransition<'a> {
    /// When, ms.
    pub at_ms: i64,
    /// What.
    pub transition: &'a str,
    /// Who.
    pub actor: &'a str,
    /// Details.
    pub detail: serde_json::Value,
}

/// A duty-inspector task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRecord {
    /// `T` + the alert id.
    pub id: String,
    /// The alert it is for.
    pub alert_id: String,
    /// County code.
    pub county: String,
    /// Mine code.
    pub mine: String,
    /// `open`, `acknowledged` or `closed`.
    pub state: String,
    /// The inspector's user name; none when nobody was on duty.
    pub assignee: Option<String>,
    /// What to do, one line.
    pub title: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub due_at: String,
    /// Past due without being closed.
    pub overdue: bool,
    /// RFC 3339.
    pub acknowledged_at: Option<String>,
    /// RFC 3339.
    pub closed_at: Option<String>,
    /// The verification recorded at closing.
    pub feedback: Option<serde_json::Value>,
    /// Due, ms.
    #[serde(skip)]
    pub due_ms: i64,
}

/// One roster line: who is on duty for a county in a shift.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RosterEntry {
    /// Row id (assigned by the store).
    #[serde(default)]
    pub id: i64,
    /// County code.
    pub county: String,
    /// The inspector's user name.
    pub inspector: String,
    /// Display name.
    pub name: String,
    /// Shift start, minutes after midnight Beijing time.
    pub start_min: i64,
    /// Shift end, minutes after midnight; before the start = overnight.
    pub end_min: i64,
    /// Days the shift starts on (`mon`…`sun`); empty = every day.
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// `config` or `api`.
    #[serde(default)]
    pub source: String,
}

/// Filters of `GET /api/alerts`.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// Mine code.
    pub mine: Option<String>,
    /// County, city or province code (any level).
    pub jurisdiction: Option<String>,
    /// The caller's jurisdiction (county, city or province code), applied
    /// on top of every other filter.
    pub scope: Option<String>,
    /// Alert kind key.
    pub kind: Option<String>,
    /// Reason key of data-anomaly / falsification alerts (`flat_line`, …).
    pub reason: Option<String>,
    /// `active` or `cleared`.
    pub condition: Option<String>,
    /// Handling state.
    pub handling: Option<String>,
    /// Raised at or after, ms; or still active then.
    pub from_ms: Option<i64>,
    /// Raised before, ms.
    pub to_ms: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// Filters of `GET /api/tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// County code.
    pub county: Option<String>,
    /// The caller's jurisdiction (county, city or province code of the
    /// task's alert).
    pub scope: Option<String>,
    /// Assignee.
    pub assignee: Option<String>,
    /// `open`, `acknowledged`, `closed`, or `pending` (not closed).
    pub state: Option<String>,
    /// Only overdue ones.
    pub overdue: Option<bool>,
    /// At most this many.
    pub limit: usize,
}

const ALERT_COLS: &str = "id, condition, handling, level, planned, raised_ms, cleared_ms, \
                          last_notified_ms, level_since_ms, peak, seq, body, reason";

fn text(v: &Val) -> String {
    v.text().unwrap_or_default().to_string()
}

fn opt_ms(v: &Val) -> Option<i64> {
    v.int()
}

fn alert_from_row(r: &[Val]) -> anyhow::Result<AlertRecord> {
    let mut alert: Alert = serde_json::from_str(r[11].text().unwrap_or("{}"))
        .with_context(|| format!("alert {} has an unreadable body", text(&r[0])))?;
    alert.peak = r[9].real().or(alert.peak);
    alert.reason = r[12].text().map(str::to_string).or(alert.reason);
    let cleared_ms = opt_ms(&r[6]);
    alert.resolved_at = cleared_ms.map(rfc3339);
    let raised_ms = r[5].int().unwrap_or(0);
    Ok(AlertRecord {
        alert,
        condition: text(&r[1]),
        handling: text(&r[2]),
        level: text(&r[3]),
        planned: r[4].int().unwrap_or(0) != 0,
        raised_at: rfc3339(raised_ms),
        task: None,
        raised_ms,
        cleared_ms,
        last_notified_ms: r[7].int().unwrap_or(0),
        level_since_ms: r[8].int().unwrap_or(0),
        seq: r[10].int().unwrap_or(0),
    })
}

/// Inserts a new alert; false when one with its id exists already.
pub fn insert_alert(db: &mut dyn Db, rec: &AlertRecord) -> anyhow::Result<bool> {
    let a = &rec.alert;
    let body = serde_json::to_string(a)?;
    let n = db.execute(
        "INSERT INTO alerts (id, kind, severity, mine, county, city, province, point, condition, \
         handling, level, planned, started_ms, raised_ms, cleared_ms, last_notified_ms, \
         level_since_ms, peak, seq, body, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) ON CONFLICT (id) DO NOTHING",
        &[
            a.id.as_str().into(),
            a.kind.key().into(),
            a.severity.key().into(),
            a.mine.as_str().into(),
            a.county.as_str().into(),
            a.city.as_str().into(),
            a.province.as_str().into(),
            a.point.clone().into(),
            rec.condition.as_str().into(),
            rec.handling.as_str().into(),
            rec.level.as_str().into(),
            rec.planned.into(),
            parse_ms(&a.started_at).into(),
            rec.raised_ms.into(),
            rec.cleared_ms.into(),
            rec.last_notified_ms.into(),
            rec.level_since_ms.into(),
            a.peak.into(),
            rec.seq.into(),
            body.into(),
            a.reason.clone().into(),
        ],
    )?;
    Ok(n == 1)
}

/// Milliseconds of an RFC 3339 time (0 when unreadable).
pub fn parse_ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

/// The alert `id`, with its task.
pub fn get_alert(db: &mut dyn Db, id: &str) -> anyhow::Result<Option<AlertRecord>> {
    let rows = db.query(
        &format!("SELECT {ALERT_COLS} FROM alerts WHERE id = $1"),
        &[id.into()],
    )?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let mut rec = alert_from_row(r)?;
    rec.task = task_for_alert(db, id)?;
    Ok(Some(rec))
}

/// The active alert of this kind at this mine and point, if any.
pub fn find_active(
    db: &mut dyn Db,
    kind: &str,
    mine: &str,
    point: Option<&str>,
) -> anyhow::Result<Option<AlertRecord>> {
    let rows = match point {
        Some(p) => db.query(
            &format!(
                "SELECT {ALERT_COLS} FROM alerts WHERE condition = 'active' AND kind = $1 \
                 AND mine = $2 AND point = $3"
            ),
            &[kind.into(), mine.into(), p.into()],
        )?,
        None => db.query(
            &format!(
                "SELECT {ALERT_COLS} FROM alerts WHERE condition = 'active' AND kind = $1 \
                 AND mine = $2 AND point IS NULL"
            ),
            &[kind.into(), mine.into()],
        )?,
    };
    rows.first().map(|r| alert_from_row(r)).transpose()
}

/// Every active alert (for the SSE feed's first screen and for restart).
pub fn active_alerts(db: &mut dyn Db) -> anyhow::Result<Vec<AlertRecord>> {
    let rows = db.query(
        &format!("SELECT {ALERT_COLS} FROM alerts WHERE condition = 'active' ORDER BY raised_ms"),
        &[],
    )?;
    rows.iter().map(|r| alert_from_row(r)).collect()
}

/// Alerts matching `q`, newest first, each with its task.
pub fn list_alerts(db: &mut dyn Db, q: &AlertQuery) -> anyhow::Result<Vec<AlertRecord>> {
    let mut sql = format!("SELECT {ALERT_COLS} FROM alerts WHERE 1 = 1");
    let mut params: Vec<Val> = Vec::new();
    let push = |cond: &str, v: Val, params: &mut Vec<Val>, sql: &mut String| {
        params.push(v);
        sql.push_str(&cond.replace('?', &format!("${}", params.len())));
    };
    if let Some(m) = &q.mine {
        push(" AND mine = ?", m.as_str().into(), &mut params, &mut sql);
    }
    if let Some(j) = &q.jurisdiction {
        params.push(j.as_str().into());
        let n = params.len();
        sql.push_str(&format!(
            " AND (county = ${n} OR city = ${n} OR province = ${n})"
        ));
    }
    if let Some(j) = &q.scope {
        params.push(j.as_str().into());
        let n = params.len();
        sql.push_str(&format!(
            " AND (county = ${n} OR city = ${n} OR province = ${n})"
        ));
    }
    if let Some(k) = &q.kind {
        push(" AND kind = ?", k.as_str().into(), &mut params, &mut sql);
    }
    if let Some(r) = &q.reason {
        push(" AND reason = ?", r.as_str().into(), &mut params, &mut sql);
    }
    if let Some(c) = &q.condition {
        push(
            " AND condition = ?",
            c.as_str().into(),
            &mut params,
            &mut sql,
        );
    }
    if let Some(h) = &q.handling {
        push(
            " AND handling = ?",
            h.as_str().into(),
            &mut params,
            &mut sql,
        );
    }
    if let Some(f) = q.from_ms {
        params.push(f.into());
        let n = params.len();
        sql.push_str(&format!(
            " AND (raised_ms >= ${n} OR cleared_ms IS NULL OR cleared_ms >= ${n})"
        ));
    }
    if let Some(t) = q.to_ms {
        push(" AND raised_ms < ?", t.into(), &mut params, &mut sql);
    }
    params.push((q.limit.max(1) as i64).into());
    sql.push_str(&format!(
        " ORDER BY raised_ms DESC, id DESC LIMIT ${}",
        params.len()
    ));
    let rows = db.query(&sql, &params)?;
    let mut out = rows
        .iter()
        .map(|r| alert_from_row(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for rec in &mut out {
        rec.task = task_for_alert(db, &rec.alert.id)?;
    }
    Ok(out)
}

/// Records a transition of `alert_id`, with the alert's peak, end and
/// level as they stand in this transaction; returns its sequence number.
pub fn add_transition(db: &mut dyn Db, alert_id: &str, t: &NewTransition) -> anyhow::Result<i64> {
    db.execute(
        "UPDATE alerts SET seq = seq + 1 WHERE id = $1",
        &[alert_id.into()],
    )?;
    let rows = db.query(
        "SELECT seq, peak, cleared_ms, level FROM alerts WHERE id = $1",
        &[alert_id.into()],
    )?;
    let now = rows
        .first()
        .with_context(|| format!("no alert {alert_id}"))?;
    let seq = now[0]
        .int()
        .with_context(|| format!("alert {alert_id} has no sequence number"))?;
    db.execute(
        "INSERT INTO alert_transitions (alert_id, seq, at_ms, transition, actor, detail, peak, \
         cleared_ms, level) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            alert_id.into(),
            seq.into(),
            t.at_ms.into(),
            t.transition.into(),
            t.actor.into(),
            t.detail.to_string().into(),
            now[1].real().into(),
            now[2].int().into(),
            now[3].text().unwrap_or("county").into(),
        ],
    )?;
    Ok(seq)
}

/// One committed transition with its alert, as the archive's `alerts`
/// stream exports it (docs/ARCHIVE.md documents the columns).
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedTransition {
    /// Store-wide id, increasing in commit order (the export cursor).
    pub id: i64,
    /// The alert.
    pub alert_id: String,
    /// 1, 2, … within the alert.
    pub seq: i64,
    /// `raised`, `cleared`, `acknowledged`, `task_created`, …
    pub transition: String,
    /// When it was recorded, processing time, ms.
    pub at_ms: i64,
    /// A user name, or `system`.
    pub actor: String,
    /// Its details, JSON text as stored.
    pub detail: String,
    /// Alert kind key.
    pub kind: String,
    /// Severity key.
    pub severity: String,
    /// Reason key of data-anomaly / falsification alerts.
    pub reason: Option<String>,
    /// Mine code.
    pub mine: String,
    /// Mine name.
    pub mine_name: String,
    /// County code.
    pub county: String,
    /// City code.
    pub city: String,
    /// Province code.
    pub province: String,
    /// Point code (point alerts).
    pub point: Option<String>,
    /// Sensor type code (point alerts).
    pub sensor: Option<String>,
    /// Unit of value, peak and threshold.
    pub unit: Option<String>,
    /// The value that raised the alert.
    pub value: Option<f64>,
    /// The episode's peak as of this transition (the final peak on
    /// `cleared` and after).
    pub peak: Option<f64>,
    /// The threshold crossed.
    pub threshold: Option<f64>,
    /// The rule, in words.
    pub rule: String,
    /// Start of the condition, ms (event time for over-limit kinds).
    pub started_ms: i64,
    /// End of the condition as of this transition, ms.
    pub resolved_ms: Option<i64>,
    /// Jurisdiction level reached as of this transition.
    pub level: String,
    /// Raised inside a declared calibration window.
    pub planned: bool,
}

/// The largest transition id committed (0 when there is none).
pub fn max_transition_id(db: &mut dyn Db) -> anyhow::Result<i64> {
    let rows = db.query("SELECT MAX(id) FROM alert_transitions", &[])?;
    Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0))
}

/// Up to `limit` committed transitions with an id above `after`, in id
/// order. Transitions recorded before schema version 3 carry no peak, end
/// or level of their own: the alert's current ones stand in.
pub fn transitions_after(
    db: &mut dyn Db,
    after: i64,
    limit: usize,
) -> anyhow::Result<Vec<CommittedTransition>> {
    let rows = db.query(
        "SELECT t.id, t.alert_id, t.seq, t.at_ms, t.transition, t.actor, t.detail, t.peak, \
         t.cleared_ms, t.level, a.body, a.peak, a.cleared_ms, a.level, a.planned, a.reason, \
         a.started_ms, a.kind, a.severity, a.mine, a.county, a.city, a.province, a.point \
         FROM alert_transitions t LEFT JOIN alerts a ON a.id = t.alert_id \
         WHERE t.id > $1 ORDER BY t.id LIMIT $2",
        &[after.into(), (limit.max(1) as i64).into()],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id = r[0].int().context("a transition without an id")?;
        // An unreadable body still exports the columns kept outside it.
        let alert: Option<Alert> = r[10].text().and_then(|b| serde_json::from_str(b).ok());
        let own_snapshot = !matches!(r[9], Val::Null);
        let (peak, resolved_ms, level) = if own_snapshot {
            (r[7].real(), r[8].int(), text(&r[9]))
        } else {
            (r[11].real(), r[12].int(), text(&r[13]))
        };
        let a = alert.as_ref();
        out.push(CommittedTransition {
            id,
            alert_id: text(&r[1]),
            seq: r[2].int().unwrap_or(0),
            at_ms: r[3].int().unwrap_or(0),
            transition: text(&r[4]),
            actor: text(&r[5]),
            detail: text(&r[6]),
            kind: text(&r[17]),
            severity: text(&r[18]),
            reason: r[15]
                .text()
                .map(str::to_string)
                .or_else(|| a.and_then(|a| a.reason.clone())),
            mine: text(&r[19]),
            mine_name: a.map(|a| a.mine_name.clone()).unwrap_or_default(),
            county: text(&r[20]),
            city: text(&r[21]),
            province: text(&r[22]),
            point: r[23].text().map(str::to_string),
            sensor: a.and_then(|a| a.sensor.clone()),
            unit: a.and_then(|a| a.unit.clone()),
            value: a.and_then(|a| a.value),
            peak,
            threshold: a.and_then(|a| a.threshold),
            rule: a.map(|a| a.rule.clone()).unwrap_or_default(),
            started_ms: r[16].int().unwrap_or(0),
            resolved_ms,
            level,
            planned: r[14].int().unwrap_or(0) != 0,
        });
    }
    Ok(out)
}

/// The store's identity: when its first migration ran, ms. Transition ids
/// are only comparable within one store; the archive keeps its export
/// cursor per identity.
pub fn store_identity(db: &mut dyn Db) -> anyhow::Result<i64> {
    db.query(
        "SELECT applied_ms FROM schema_migrations WHERE version = 1",
        &[],
    )?
    .first()
    .and_then(|r| r[0].int())
    .context("the store has no record of its first migration")
}

/// Every transition of `alert_id`, oldest first.
pub fn transitions(db: &mut dyn Db, alert_id: &str) -> anyhow::Result<Vec<TransitionRecord>> {
    let rows = db.query(
        "SELECT seq, at_ms, transition, actor, detail FROM alert_transitions \
         WHERE alert_id = $1 ORDER BY seq",
        &[alert_id.into()],
    )?;
    Ok(rows
        .iter()
        .map(|r| TransitionRecord {
            seq: r[0].int().unwrap_or(0),
            at: rfc3339(r[1].int().unwrap_or(0)),
            transition: text(&r[2]),
            actor: text(&r[3]),
            detail: serde_json::from_str(r[4].text().unwrap_or("null"))
                .unwrap_or(serde_json::Value::Null),
        })
        .collect())
}

/// Sets one column of an alert. `column` is one of the store's own names,
/// never user input.
pub fn set_alert(db: &mut dyn Db, id: &str, column: &str, v: Val) -> anyhow::Result<()> {
    debug_assert!(
        [
            "condition",
            "handling",
            "level",
            "last_notified_ms",
            "level_since_ms",
            "cleared_ms",
            "peak"
        ]
        .contains(&column)
    );
    db.execute(
        &format!("UPDATE alerts SET {column} = $1 WHERE id = $2"),
        &[v, id.into()],
    )?;
    Ok(())
}

/// Queues `n` for `channel`; false when that key is queued already.
pub fn enqueue(
    db: &mut dyn Db,
    channel: &str,
    created_ms: i64,
    n: &Notification,
) -> anyhow::Result<bool> {
    let inserted = db.execute(
        "INSERT INTO outbox (key, alert_id, channel, mine, created_ms, next_ms, attempts, state, \
         payload) VALUES ($1, $2, $3, $4, $5, $5, 0, 'pending', $6) ON CONFLICT (key) DO NOTHING",
        &[
            n.key.as_str().into(),
            n.alert_id.as_str().into(),
            channel.into(),
            n.mine.as_str().into(),
            created_ms.into(),
            serde_json::to_string(n)?.into(),
        ],
    )?;
    Ok(inserted == 1)
}

/// One outbox row as `GET /api/outbox` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxView {
    /// Row id.
    pub id: i64,
    /// Idempotency key.
    pub key: String,
    /// Channel.
    pub channel: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Last error (credentials masked; the API shows it to admins only:
    /// it tells about receivers and their failures).
    pub last_error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub delivered_at: Option<String>,
}

/// Outbox rows, newest first, optionally of one state or alert, and only
/// of alerts in jurisdiction `scope` when given.
pub fn list_outbox(
    db: &mut dyn Db,
    state: Option<&str>,
    alert_id: Option<&str>,
    scope: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<OutboxView>> {
    let rows = db.query(
        "SELECT id, key, channel, state, attempts, last_error, created_ms, delivered_ms \
         FROM outbox WHERE ($1 = '' OR state = $1) AND ($2 = '' OR alert_id = $2) \
         AND ($4 = '' OR EXISTS (SELECT 1 FROM alerts a WHERE a.id = outbox.alert_id \
         AND (a.county = $4 OR a.city = $4 OR a.province = $4))) \
         ORDER BY id DESC LIMIT $3",
        &[
            state.unwrap_or("").into(),
            alert_id.unwrap_or("").into(),
            (limit.max(1) as i64).into(),
            scope.unwrap_or("").into(),
        ],
    )?;
    Ok(rows
        .iter()
        .map(|r| OutboxView {
            id: r[0].int().unwrap_or(0),
            key: text(&r[1]),
            channel: text(&r[2]),
            state: text(&r[3]),
            attempts: r[4].int().unwrap_or(0),
            // Rows written before redaction existed may still hold a key.
            last_error: r[5].text().map(crate::redact::secrets),
            created_at: rfc3339(r[6].int().unwrap_or(0)),
            delivered_at: r[7].int().map(rfc3339),
        })
        .collect())
}

fn ids_list(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl OutboxStore for Store {
    fn due(&self, now_ms: i64, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT id, channel, mine, created_ms, attempts, batch_key, payload FROM outbox \
                 WHERE state = 'pending' AND next_ms <= $1 ORDER BY id LIMIT $2",
                &[now_ms.into(), (limit.max(1) as i64).into()],
            )
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id = r[0].int().unwrap_or(0);
            let notification: Notification = match serde_json::from_str(r[6].text().unwrap_or("")) {
                Ok(n) => n,
                Err(e) => {
                    self.failed(&[id], &format!("unreadable payload: {e}"))?;
                    continue;
                }
            };
            out.push(OutboxRow {
                id,
                channel: text(&r[1]),
                mine: text(&r[2]),
                created_ms: r[3].int().unwrap_or(0),
                attempts: r[4].int().unwrap_or(0).max(0) as u32,
                batch_key: r[5].text().map(str::to_string),
                notification,
            });
        }
        Ok(out)
    }

    fn assign_batch(&self, ids: &[i64], batch_key: &str) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.tx(|db| {
            db.execute(
                &format!(
                    "UPDATE outbox SET batch_key = $1 WHERE id IN ({})",
                    ids_list(ids)
                ),
                &[batch_key.into()],
            )
        })?;
        Ok(())
    }

    fn delivered(&self, ids: &[i64], at_ms: i64) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.tx(|db| {
            db.execute(
                &format!(
                    "UPDATE outbox SET state = 'delivered', delivered_ms = $1, \
                     attempts = attempts + 1 WHERE id IN ({})",
                    ids_list(ids)
                ),
                &[at_ms.into()],
            )
        })?;
        Ok(())
    }

    fn retry_later(&self, ids: &[i64], next_ms: i64, error: &str) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.tx(|db| {
            db.execute(
                &format!(
                    "UPDATE outbox SET next_ms = $1, last_error = $2, attempts = attempts + 1 \
                     WHERE id IN ({})",
                    ids_list(ids)
                ),
                &[next_ms.into(), crate::redact::secrets(error).into()],
            )
        })?;
        Ok(())
    }

    fn failed(&self, ids: &[i64], error: &str) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.tx(|db| {
            db.execute(
                &format!(
                    "UPDATE outbox SET state = 'failed', last_error = $1, attempts = attempts + 1 \
                     WHERE id IN ({})",
                    ids_list(ids)
                ),
                &[crate::redact::secrets(error).into()],
            )
        })?;
        Ok(())
    }

    fn backlog(&self) -> anyhow::Result<u64> {
        let rows =
            self.read(|db| db.query("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", &[]))?;
        Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0).max(0) as u64)
    }
}

const TASK_COLS: &str = "id, alert_id, county, mine, state, assignee, created_ms, due_ms, overdue, \
                         acknowledged_ms, closed_ms, feedback, title";

fn task_from_row(r: &[Val]) -> TaskRecord {
    let due_ms = r[7].int().unwrap_or(0);
    TaskRecord {
        id: text(&r[0]),
        alert_id: text(&r[1]),
        county: text(&r[2]),
        mine: text(&r[3]),
        state: text(&r[4]),
        assignee: r[5].text().map(str::to_string),
        created_at: rfc3339(r[6].int().unwrap_or(0)),
        due_at: rfc3339(due_ms),
        overdue: r[8].int().unwrap_or(0) != 0,
        acknowledged_at: r[9].int().map(rfc3339),
        closed_at: r[10].int().map(rfc3339),
        feedback: r[11].text().and_then(|t| serde_json::from_str(t).ok()),
        title: text(&r[12]),
        due_ms,
    }
}

/// Creates a task.
#[allow(clippy::too_many_arguments)]
pub fn insert_task(
    db: &mut dyn Db,
    alert: &Alert,
    assignee: Option<&str>,
    title: &str,
    created_ms: i64,
    due_ms: i64,
) -> anyhow::Result<TaskRecord> {
    let id = format!("T{}", alert.id);
    db.execute(
        "INSERT INTO tasks (id, alert_id, county, mine, state, assignee, created_ms, due_ms, \
         overdue, title) VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, 0, $8) \
         ON CONFLICT (id) DO NOTHING",
        &[
            id.as_str().into(),
            alert.id.as_str().into(),
            alert.county.as_str().into(),
            alert.mine.as_str().into(),
            assignee.map(str::to_string).into(),
            created_ms.into(),
            due_ms.into(),
            title.into(),
        ],
    )?;
    get_task(db, &id)?.with_context(|| format!("task {id} vanished"))
}

/// The task `id`.
pub fn get_task(db: &mut dyn Db, id: &str) -> anyhow::Result<Option<TaskRecord>> {
    let rows = db.query(
        &format!("SELECT {TASK_COLS} FROM tasks WHERE id = $1"),
        &[id.into()],
    )?;
    Ok(rows.first().map(|r| task_from_row(r)))
}

/// The task of `alert_id`.
pub fn task_for_alert(db: &mut dyn Db, alert_id: &str) -> anyhow::Result<Option<TaskRecord>> {
    let rows = db.query(
        &format!("SELECT {TASK_COLS} FROM tasks WHERE alert_id = $1"),
        &[alert_id.into()],
    )?;
    Ok(rows.first().map(|r| task_from_row(r)))
}

/// Tasks matching `q`, newest first.
pub fn list_tasks(db: &mut dyn Db, q: &TaskQuery) -> anyhow::Result<Vec<TaskRecord>> {
    let state = q.state.clone().unwrap_or_default();
    let rows = db.query(
        &format!(
            "SELECT {TASK_COLS} FROM tasks WHERE ($1 = '' OR county = $1) \
             AND ($2 = '' OR assignee = $2) \
             AND ($3 = '' OR state = $3 OR ($3 = 'pending' AND state <> 'closed')) \
             AND ($4 < 0 OR overdue = $4) \
             AND ($6 = '' OR EXISTS (SELECT 1 FROM alerts a WHERE a.id = tasks.alert_id \
             AND (a.county = $6 OR a.city = $6 OR a.province = $6))) \
             ORDER BY created_ms DESC, id DESC LIMIT $5"
        ),
        &[
            q.county.clone().unwrap_or_default().into(),
            q.assignee.clone().unwrap_or_default().into(),
            state.into(),
            q.overdue.map_or(-1, |o| o as i64).into(),
            (q.limit.max(1) as i64).into(),
            q.scope.clone().unwrap_or_default().into(),
        ],
    )?;
    Ok(rows.iter().map(|r| task_from_row(r)).collect())
}

/// Tasks not closed and due at or before `now_ms` that are not yet marked
/// overdue.
pub fn tasks_falling_due(db: &mut dyn Db, now_ms: i64) -> anyhow::Result<Vec<TaskRecord>> {
    let rows = db.query(
        &format!(
            "SELECT {TASK_COLS} FROM tasks WHERE state <> 'closed' AND overdue = 0 \
             AND due_ms <= $1 ORDER BY due_ms"
        ),
        &[now_ms.into()],
    )?;
    Ok(rows.iter().map(|r| task_from_row(r)).collect())
}

/// Updates a task's state columns.
pub fn update_task(
    db: &mut dyn Db,
    id: &str,
    state: &str,
    assignee: Option<&str>,
    acknowledged_ms: Option<i64>,
    closed_ms: Option<i64>,
    feedback: Option<&serde_json::Value>,
) -> anyhow::Result<()> {
    db.execute(
        "UPDATE tasks SET state = $1, assignee = $2, acknowledged_ms = $3, closed_ms = $4, \
         feedback = $5 WHERE id = $6",
        &[
            state.into(),
            assignee.map(str::to_string).into(),
            acknowledged_ms.into(),
            closed_ms.into(),
            feedback.map(|f| f.to_string()).into(),
            id.into(),
        ],
    )?;
    Ok(())
}

/// Marks a task overdue.
pub fn mark_task_overdue(db: &mut dyn Db, id: &str) -> anyhow::Result<()> {
    db.execute("UPDATE tasks SET overdue = 1 WHERE id = $1", &[id.into()])?;
    Ok(())
}

fn roster_from_row(r: &[Val]) -> RosterEntry {
    RosterEntry {
        id: r[0].int().unwrap_or(0),
        county: text(&r[1]),
        inspector: text(&r[2]),
        name: text(&r[3]),
        start_min: r[4].int().unwrap_or(0),
        end_min: r[5].int().unwrap_or(0),
        weekdays: r[6]
            .text()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        source: text(&r[7]),
    }
}

/// The roster, config lines first, each in the order added.
pub fn roster(db: &mut dyn Db) -> anyhow::Result<Vec<RosterEntry>> {
    let rows = db.query(
        "SELECT id, county, inspector, name, start_min, end_min, weekdays, source FROM roster \
         ORDER BY CASE WHEN source = 'config' THEN 0 ELSE 1 END, id",
        &[],
    )?;
    Ok(rows.iter().map(|r| roster_from_row(r)).collect())
}

/// Adds a roster line; returns its id.
pub fn add_roster(db: &mut dyn Db, e: &RosterEntry, source: &str) -> anyhow::Result<i64> {
    db.execute(
        "INSERT INTO roster (county, inspector, name, start_min, end_min, weekdays, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            e.county.as_str().into(),
            e.inspector.as_str().into(),
            e.name.as_str().into(),
            e.start_min.into(),
            e.end_min.into(),
            e.weekdays.join(",").into(),
            source.into(),
        ],
    )?;
    let rows = db.query("SELECT MAX(id) FROM roster", &[])?;
    Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0))
}

/// Replaces the roster lines that came from config.
pub fn replace_config_roster(db: &mut dyn Db, entries: &[RosterEntry]) -> anyhow::Result<()> {
    db.execute("DELETE FROM roster WHERE source = 'config'", &[])?;
    for e in entries {
        add_roster(db, e, "config")?;
    }
    Ok(())
}

/// Removes roster line `id`; false when there was none.
pub fn delete_roster(db: &mut dyn Db, id: i64) -> anyhow::Result<bool> {
    Ok(db.execute("DELETE FROM roster WHERE id = $1", &[id.into()])? == 1)
}

/// A declared calibration or test window (调校计划): alerts that start inside
/// it are graded planned.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Row id.
    #[serde(default)]
    pub id: i64,
    /// Mine code.
    pub mine: String,
    /// Point code; none = every point of the mine.
    #[serde(default)]
    pub point: Option<String>,
    /// Start, RFC 3339.
    pub from: String,
    /// End, RFC 3339.
    pub to: String,
    /// What is done (e.g. 甲烷传感器调校).
    pub note: String,
    /// Who declared it.
    #[serde(default)]
    pub by: String,
    /// When it was declared, RFC 3339 (set by the store; with `by`, the
    /// audit of who hid which alerts as planned).
    #[serde(default, skip_deserializing)]
    pub declared_at: Option<String>,
}

/// Records a calibration window; returns its id.
pub fn add_calibration(db: &mut dyn Db, c: &Calibration, now_ms: i64) -> anyhow::Result<i64> {
    db.execute(
        "INSERT INTO calibrations (mine, point, from_ms, to_ms, note, actor, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            c.mine.as_str().into(),
            c.point.clone().into(),
            parse_ms(&c.from).into(),
            parse_ms(&c.to).into(),
            c.note.as_str().into(),
            c.by.as_str().into(),
            now_ms.into(),
        ],
    )?;
    let rows = db.query("SELECT MAX(id) FROM calibrations", &[])?;
    Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0))
}

/// Calibration windows of `mine` (all mines when empty), newest first.
pub fn calibrations(db: &mut dyn Db, mine: &str, limit: usize) -> anyhow::Result<Vec<Calibration>> {
    let rows = db.query(
        "SELECT id, mine, point, from_ms, to_ms, note, actor, created_ms FROM calibrations \
         WHERE ($1 = '' OR mine = $1) ORDER BY from_ms DESC, id DESC LIMIT $2",
        &[mine.into(), (limit.max(1) as i64).into()],
    )?;
    Ok(rows
        .iter()
        .map(|r| Calibration {
            id: r[0].int().unwrap_or(0),
            mine: text(&r[1]),
            point: r[2].text().map(str::to_string),
            from: rfc3339(r[3].int().unwrap_or(0)),
            to: rfc3339(r[4].int().unwrap_or(0)),
            note: text(&r[5]),
            by: text(&r[6]),
            declared_at: r[7].int().map(rfc3339),
        })
        .collect())
}

/// A declaration of a mine's status by a regulator (a 停产 order, its
/// lifting, a closure), as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StatusDeclaration {
    /// Row id.
    #[serde(default)]
    pub id: i64,
    /// Mine code.
    #[serde(default)]
    pub mine: String,
    /// The status declared from now on.
    pub status: crate::model::MineStatus,
    /// Why (the order, e.g. 县局停产整顿通知 2026-12-01).
    pub reason: String,
    /// Who declared it.
    #[serde(default)]
    pub by: String,
    /// When, RFC 3339.
    #[serde(default)]
    pub at: String,
}

/// Records a declaration made at `now_ms`; returns its id.
pub fn declare_status(db: &mut dyn Db, d: &StatusDeclaration, now_ms: i64) -> anyhow::Result<i64> {
    db.execute(
        "INSERT INTO mine_status (mine, status, reason, actor, at_ms) VALUES ($1, $2, $3, $4, $5)",
        &[
            d.mine.as_str().into(),
            d.status.key().into(),
            d.reason.as_str().into(),
            d.by.as_str().into(),
            now_ms.into(),
        ],
    )?;
    let rows = db.query("SELECT MAX(id) FROM mine_status", &[])?;
    Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0))
}

fn declaration(r: &[Val]) -> Option<StatusDeclaration> {
    Some(StatusDeclaration {
        id: r[0].int().unwrap_or(0),
        mine: text(&r[1]),
        status: crate::model::MineStatus::parse(r[2].text()?)?,
        reason: text(&r[3]),
        by: text(&r[4]),
        at: rfc3339(r[5].int().unwrap_or(0)),
    })
}

/// The declarations of `mine` (all mines when empty), newest first.
pub fn status_declarations(
    db: &mut dyn Db,
    mine: &str,
    limit: usize,
) -> anyhow::Result<Vec<StatusDeclaration>> {
    let rows = db.query(
        "SELECT id, mine, status, reason, actor, at_ms FROM mine_status \
         WHERE ($1 = '' OR mine = $1) ORDER BY id DESC LIMIT $2",
        &[mine.into(), (limit.max(1) as i64).into()],
    )?;
    Ok(rows.iter().filter_map(|r| declaration(r)).collect())
}

/// The newest declaration of every mine that has one, by mine code: what
/// stands now, over the config's `status`.
pub fn standing_declarations(db: &mut dyn Db) -> anyhow::Result<Vec<StatusDeclaration>> {
    let rows = db.query(
        "SELECT id, mine, status, reason, actor, at_ms FROM mine_status m \
         WHERE id = (SELECT MAX(id) FROM mine_status n WHERE n.mine = m.mine) ORDER BY mine",
        &[],
    )?;
    Ok(rows.iter().filter_map(|r| declaration(r)).collect())
}

/// True when a declared window covers `at_ms` for this mine and point.
pub fn in_calibration(
    db: &mut dyn Db,
    mine: &str,
    point: Option<&str>,
    at_ms: i64,
) -> anyhow::Result<bool> {
    let rows = db.query(
        "SELECT COUNT(*) FROM calibrations WHERE mine = $1 AND from_ms <= $2 AND to_ms > $2 \
         AND (point IS NULL OR point = $3)",
        &[mine.into(), at_ms.into(), point.unwrap_or("").into()],
    )?;
    Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0) > 0)
}

/// Alert counts by kind, severity and planned, as regulators report them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountRow {
    /// Alert kind.
    pub kind: String,
    /// Severity.
    pub severity: String,
    /// Planned (declared calibration) or not.
    pub planned: bool,
    /// Alerts raised in the period.
    pub raised: i64,
    /// Of those, still active.
    pub active: i64,
    /// Of those, closed with feedback.
    pub closed: i64,
}

/// Counts of alerts raised in `[from_ms, to_ms)` within a jurisdiction
/// (empty = all).
pub fn counts(
    db: &mut dyn Db,
    jurisdiction: &str,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<Vec<CountRow>> {
    let rows = db.query(
        "SELECT kind, severity, planned, COUNT(*), \
         SUM(CASE WHEN condition = 'active' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN handling = 'closed' THEN 1 ELSE 0 END) FROM alerts \
         WHERE raised_ms >= $1 AND raised_ms < $2 \
         AND ($3 = '' OR county = $3 OR city = $3 OR province = $3) \
         GROUP BY kind, severity, planned ORDER BY kind, severity, planned",
        &[from_ms.into(), to_ms.into(), jurisdiction.into()],
    )?;
    Ok(rows
        .iter()
        .map(|r| CountRow {
            kind: text(&r[0]),
            severity: text(&r[1]),
            planned: r[2].int().unwrap_or(0) != 0,
            raised: r[3].int().unwrap_or(0),
            active: r[4].int().unwrap_or(0),
            closed: r[5].int().unwrap_or(0),
        })
        .collect())
}
