//! The alert-handling API: alerts with their history, duty tasks, the
//! roster, calibration windows and the push outbox — read from the store,
//! changed through the lifecycle so that every action is recorded with who
//! and when and owes its pushes in the same transaction.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/alerts?active=&condition=&handling=&mine=&county=&city=&province=&kind=&reason=&from=&to=&limit=` | alerts, newest first, with their tasks |
//! | `GET /api/alerts/{id}` | one alert, its task and its whole history |
//! | `GET /api/alerts/summary?jurisdiction=&from=&to=` | counts by kind, severity and planned/unplanned |
//! | `POST /api/alerts/{id}/ack` `{by}` | acknowledge (签收) |
//! | `POST /api/alerts/{id}/dispose` `{by, note}` | record the disposal (处置) |
//! | `POST /api/alerts/{id}/close` `{by, contacted, cause, measures, result}` | close with feedback (闭环); the condition must have cleared |
//! | `GET /api/tasks?county=&assignee=&state=&overdue=&limit=` | duty tasks |
//! | `GET /api/tasks/{id}` | one task and its alert |
//! | `POST /api/tasks/{id}/ack` `{by}` | the inspector takes it |
//! | `POST /api/tasks/{id}/assign` `{by, inspector}` | give it to someone |
//! | `POST /api/tasks/{id}/close` `{by, contacted, cause, measures, result}` | close with the verification |
//! | `GET /api/roster`, `POST /api/roster`, `DELETE /api/roster/{id}` | who is on duty |
//! | `GET /api/calibrations?mine=`, `POST /api/calibrations` | declared calibration windows (planned alerts) |
//! | `GET /api/mines/{code}/status`, `PUT /api/mines/{code}/status` `{status, reason}` | a mine's declared status (停产 orders) and their history |
//! | `GET /api/outbox?state=&alert=&limit=` | pushes and their delivery |
//!
//! Refusals are JSON `{"error": …}`: 404 unknown id (or another
//! jurisdiction's), 403 a role that may not act, 409 not allowed in the
//! current state (acknowledging a closed alert), 422 something missing
//! (closing without feedback).
//!
//! Every handler takes the [`Caller`]: lists are cut to its jurisdiction,
//! objects outside it are 404. The actor recorded on a change is the
//! signed-in user; `by` in a body counts only from an API token
//! ([`Caller::actor`]).

// Handlers return `Result<_, Response>`: the error is the reply itself,
// sent at once; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::alert::{ActionError, Lifecycle};
use crate::auth::{Caller, Role, Scope};
use crate::model::{Alert, AlertKind, MineStatus, rfc3339};
use crate::store::alerts as q;
use crate::store::{AlertQuery, Calibration, RosterEntry, StatusDeclaration, TaskQuery};
use crate::tasks::{self, Feedback};

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn action_error(e: ActionError) -> Response {
    match e {
        ActionError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        ActionError::Conflict(m) => error(StatusCode::CONFLICT, m),
        ActionError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        ActionError::Store(e) => {
            tracing::error!(error = %format!("{e:#}"), "store failed during an alert action");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the alert store failed; try again",
            )
        }
    }
}

/// Runs store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ActionError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(action_error),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal: {e}"),
        )),
    }
}

/// Longest free text a request may carry in one field (a note, a cause,
/// measures taken, a reason), bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Longest name a request may carry in one field (a person, an inspector,
/// a label, a code), bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// 400 naming the first field longer than its cap; each is `(field, value,
/// cap in bytes)`.
pub(super) fn check_lengths(fields: &[(&str, &str, usize)]) -> Result<(), Response> {
    for (name, value, max) in fields {
        if value.len() > *max {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "`{name}` is {} bytes long; at most {max} are accepted",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Response> {
    body.map(|Json(b)| b).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("bad request body: {}", e.body_text()),
        )
    })
}

/// The alert filters of the list and the live feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveFilter {
    /// Mine code.
    pub mine: Option<String>,
    /// County, city or province code.
    pub jurisdiction: Option<String>,
    /// Kind.
    pub kind: Option<AlertKind>,
    /// Reason key.
    pub reason: Option<String>,
}

impl LiveFilter {
    /// True when `a` passes.
    pub fn matches(&self, a: &Alert) -> bool {
        self.mine.as_ref().is_none_or(|m| *m == a.mine)
            && self
                .jurisdiction
                .as_ref()
                .is_none_or(|j| *j == a.county || *j == a.city || *j == a.province)
            && self.kind.is_none_or(|k| k == a.kind)
            && self
                .reason
                .as_ref()
                .is_none_or(|r| a.reason.as_ref() == Some(r))
    }
}

fn parse_time(k: &str, v: &str) -> Result<i64, String> {
    v.parse::<i64>()
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|t| t.timestamp_millis())
        })
        .ok_or_else(|| format!("{k}={v:?}: use RFC 3339 (2026-11-23T08:00:00+08:00) or epoch ms"))
}

/// Parses the query of `GET /api/alerts` (and, with fewer names allowed, of
/// the SSE feed).
pub fn parse_alert_query(
    params: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<(AlertQuery, LiveFilter), String> {
    let mut aq = AlertQuery {
        limit: 500,
        ..AlertQuery::default()
    };
    let mut live = LiveFilter::default();
    for (k, v) in params {
        if !allowed.contains(&k.as_str()) {
            return Err(format!(
                "unknown parameter {k:?}; use: {}",
                allowed.join(", ")
            ));
        }
        match k.as_str() {
            "active" => {
                aq.condition = Some(match v.as_str() {
                    "true" | "1" => "active".into(),
                    "false" | "0" => "cleared".into(),
                    _ => return Err(format!("active={v:?}: use true or false")),
                })
            }
            "condition" => {
                if v != "active" && v != "cleared" {
                    return Err(format!("condition={v:?}: use active or cleared"));
                }
                aq.condition = Some(v.clone());
            }
            "handling" => {
                if !["unacknowledged", "acknowledged", "disposed", "closed"].contains(&v.as_str()) {
                    return Err(format!(
                        "handling={v:?}: use unacknowledged, acknowledged, disposed or closed"
                    ));
                }
                aq.handling = Some(v.clone());
            }
            "mine" => {
                aq.mine = Some(v.clone());
                live.mine = Some(v.clone());
            }
            "county" | "city" | "province" | "jurisdiction" => {
                aq.jurisdiction = Some(v.clone());
                live.jurisdiction = Some(v.clone());
            }
            "kind" => {
                let kind = AlertKind::parse(v).ok_or_else(|| {
                    format!("kind={v:?}: use overlimit, evacuation, point_offline or mine_offline")
                })?;
                aq.kind = Some(kind.key().to_string());
                live.kind = Some(kind);
            }
            "reason" => {
                // Any snake_case key: the detectors' flags today
                // (`flat_line`, …), other kinds' reasons as they come.
                let key = v.as_str();
                if key.is_empty()
                    || key.len() > 64
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    let keys: Vec<&str> = crate::model::Flag::ALL.iter().map(|f| f.key()).collect();
                    return Err(format!(
                        "reason={v:?}: use a snake_case reason key such as {}",
                        keys.join(", ")
                    ));
                }
                aq.reason = Some(key.to_string());
                live.reason = Some(key.to_string());
            }
            "since" | "from" => aq.from_ms = Some(parse_time(k, v)?),
            "to" => aq.to_ms = Some(parse_time(k, v)?),
            "limit" => {
                aq.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=10_000).contains(l))
                    .ok_or_else(|| format!("limit={v:?}: use 1..=10000"))?
            }
            _ => {}
        }
    }
    Ok((aq, live))
}

/// The names `GET /api/alerts` accepts.
pub const ALERT_PARAMS: &[&str] = &[
    "active",
    "condition",
    "handling",
    "mine",
    "county",
    "city",
    "province",
    "jurisdiction",
    "kind",
    "reason",
    "since",
    "from",
    "to",
    "limit",
];

pub(super) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (mut aq, _) = match parse_alert_query(&params, ALERT_PARAMS) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    aq.scope = caller.scope.code().map(str::to_string);
    let l = s.lifecycle.clone();
    match blocking(move || Ok(l.store.read(|db| q::list_alerts(db, &aq))?)).await {
        Ok(list) => Json(json!({ "count": list.len(), "alerts": list })).into_response(),
        Err(r) => r,
    }
}

pub(super) async fn summary(
    State(s): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut jurisdiction = String::new();
    let now = chrono::Utc::now().timestamp_millis();
    let (mut from, mut to) = (now - 24 * 3_600_000, now + 1);
    for (k, v) in &params {
        let parsed = match k.as_str() {
            "jurisdiction" | "county" | "city" | "province" => {
                jurisdiction = v.clone();
                Ok(())
            }
            "from" => parse_time(k, v).map(|t| from = t),
            "to" => parse_time(k, v).map(|t| to = t),
            _ => Err(format!(
                "unknown parameter {k:?}; use: jurisdiction, from, to"
            )),
        };
        if let Err(e) = parsed {
            return error(StatusCode::BAD_REQUEST, e);
        }
    }
    // Counts over the part of the asked jurisdiction that is the caller's;
    // none when the two do not meet.
    let Some(j) = caller.scope.narrow(&jurisdiction) else {
        return Json(json!({
            "jurisdiction": jurisdiction,
            "from": crate::model::rfc3339(from),
            "to": crate::model::rfc3339(to),
            "counts": [],
        }))
        .into_response();
    };
    let l = s.lifecycle.clone();
    match blocking(move || Ok(l.store.read(|db| q::counts(db, &j, from, to))?)).await {
        Ok(rows) => Json(json!({
            "jurisdiction": jurisdiction,
            "from": crate::model::rfc3339(from),
            "to": crate::model::rfc3339(to),
            "counts": rows,
        }))
        .into_response(),
        Err(r) => r,
    }
}

pub(super) async fn one(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let l = s.lifecycle.clone();
    let r = blocking(move || {
        l.store
            .read(|db| {
                let Some(alert) = q::get_alert(db, &id)? else {
                    return Ok(None);
                };
                if !caller.scope.covers_alert(&alert.alert) {
                    return Ok(None);
                }
                let history = q::transitions(db, &id)?;
                let outbox = channel_internals_for(
                    &caller,
                    q::list_outbox(db, None, Some(&id), None, 1000)?,
                );
                Ok(Some(
                    json!({ "alert": alert, "history": history, "outbox": outbox }),
                ))
            })
            .map_err(ActionError::Store)
    })
    .await;
    match r {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such alert"),
        Err(r) => r,
    }
}

/// Body of acknowledge and assign and dispose.
#[derive(Debug, Deserialize)]
pub(super) struct ActBody {
    #[serde(default)]
    by: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    inspector: String,
}

/// Body of the closing actions.
#[derive(Debug, Deserialize)]
pub(super) struct CloseBody {
    #[serde(default)]
    by: String,
    #[serde(default)]
    contacted: String,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    measures: String,
    #[serde(default)]
    result: String,
}

impl CloseBody {
    fn feedback(&self) -> Feedback {
        Feedback {
            contacted: self.contacted.clone(),
            cause: self.cause.clone(),
            measures: self.measures.clone(),
            result: self.result.clone(),
        }
    }
}

async fn act<T: serde::Serialize + Send + 'static>(
    l: Arc<Lifecycle>,
    f: impl FnOnce(&Lifecycle) -> Result<T, ActionError> + Send + 'static,
) -> Response {
    match blocking(move || f(&l)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// What an action acts on, checked against the caller's jurisdiction.
#[derive(Debug, Clone, Copy)]
enum Target {
    Alert,
    Task,
}

/// A request body that may name the acting user (`by`).
trait ActorBody {
    fn by(&self) -> &str;
    /// Its text fields with their caps.
    fn lengths(&self) -> Vec<(&'static str, &str, usize)>;
}

impl ActorBody for ActBody {
    fn by(&self) -> &str {
        &self.by
    }
    fn lengths(&self) -> Vec<(&'static str, &str, usize)> {
        vec![
            ("by", &self.by, MAX_NAME_BYTES),
            ("inspector", &self.inspector, MAX_NAME_BYTES),
            ("note", &self.note, MAX_TEXT_BYTES),
        ]
    }
}

impl ActorBody for CloseBody {
    fn by(&self) -> &str {
        &self.by
    }
    fn lengths(&self) -> Vec<(&'static str, &str, usize)> {
        vec![
            ("by", &self.by, MAX_NAME_BYTES),
            ("contacted", &self.contacted, MAX_TEXT_BYTES),
            ("cause", &self.cause, MAX_TEXT_BYTES),
            ("measures", &self.measures, MAX_TEXT_BYTES),
            ("result", &self.result, MAX_TEXT_BYTES),
        ]
    }
}

/// What every action handler does: reads the JSON body, answers 404 for an
/// id outside the caller's jurisdiction, names the actor, and runs `f` on
/// the lifecycle off the async workers.
async fn perform<B, T>(
    s: AppState,
    caller: Caller,
    id: String,
    target: Target,
    body: Result<Json<B>, JsonRejection>,
    f: impl FnOnce(&Lifecycle, &str, &str, B) -> Result<T, ActionError> + Send + 'static,
) -> Response
where
    B: ActorBody + Send + 'static,
    T: serde::Serialize + Send + 'static,
{
    let b = match json_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_lengths(&b.lengths()) {
        return r;
    }
    let in_scope = match target {
        Target::Alert => alert_in_scope(&s.lifecycle, &id, &caller).await,
        Target::Task => task_in_scope(&s.lifecycle, &id, &caller).await,
    };
    if let Err(r) = in_scope {
        return r;
    }
    let by = caller.actor(b.by());
    act(s.lifecycle, move |l| f(l, &id, &by, b)).await
}

/// 404 unless alert `id` exists and is in the caller's jurisdiction.
async fn alert_in_scope(l: &Arc<Lifecycle>, id: &str, caller: &Caller) -> Result<(), Response> {
    let (l, id2, scope) = (l.clone(), id.to_string(), caller.scope.clone());
    let found = blocking(move || Ok(l.store.read(|db| q::get_alert(db, &id2))?)).await?;
    match found {
        Some(a) if scope.covers_alert(&a.alert) => Ok(()),
        _ => Err(error(StatusCode::NOT_FOUND, format!("no alert {id}"))),
    }
}

/// 404 unless task `id` exists and is in the caller's jurisdiction; 403
/// when the caller is an inspector and the task is someone else's (an
/// unassigned task may be taken).
async fn task_in_scope(l: &Arc<Lifecycle>, id: &str, caller: &Caller) -> Result<(), Response> {
    let (l, id2) = (l.clone(), id.to_string());
    let found = blocking(move || {
        Ok(l.store.read(|db| {
            let Some(task) = q::get_task(db, &id2)? else {
                return Ok(None);
            };
            let alert = q::get_alert(db, &task.alert_id)?;
            Ok(Some((task, alert)))
        })?)
    })
    .await?;
    let Some((task, alert)) = found else {
        return Err(error(StatusCode::NOT_FOUND, format!("no task {id}")));
    };
    let in_scope = match &alert {
        Some(a) => caller.scope.covers_alert(&a.alert),
        None => caller.scope.covers_county(&task.county),
    };
    if !in_scope {
        return Err(error(StatusCode::NOT_FOUND, format!("no task {id}")));
    }
    if caller.role == Role::Inspector && task.assignee.as_deref().is_some_and(|a| a != caller.name)
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            "this task is assigned to another inspector",
        ));
    }
    Ok(())
}

pub(super) async fn ack(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ActBody>, JsonRejection>,
) -> Response {
    perform(s, caller, id, Target::Alert, body, |l, id, by, _| {
        l.acknowledge(id, by)
    })
    .await
}

pub(super) async fn dispose(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ActBody>, JsonRejection>,
) -> Response {
    perform(s, caller, id, Target::Alert, body, |l, id, by, b| {
        l.dispose(id, by, &b.note)
    })
    .await
}

pub(super) async fn close(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<CloseBody>, JsonRejection>,
) -> Response {
    perform(s, caller, id, Target::Alert, body, |l, id, by, b| {
        l.close(id, by, &b.feedback())
    })
    .await
}

pub(super) async fn task_list(
    State(s): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut tq = TaskQuery {
        limit: 500,
        scope: caller.scope.code().map(str::to_string),
        ..TaskQuery::default()
    };
    for (k, v) in &params {
        match k.as_str() {
            "county" => tq.county = Some(v.clone()),
            "assignee" => tq.assignee = Some(v.clone()),
            "state" => {
                if !["open", "acknowledged", "closed", "pending"].contains(&v.as_str()) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("state={v:?}: use open, acknowledged, closed or pending"),
                    );
                }
                tq.state = Some(v.clone());
            }
            "overdue" => {
                tq.overdue = match v.as_str() {
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("overdue={v:?}: use true or false"),
                        );
                    }
                }
            }
            "limit" => match v.parse::<usize>() {
                Ok(l) if (1..=10_000).contains(&l) => tq.limit = l,
                _ => return error(StatusCode::BAD_REQUEST, "limit: use 1..=10000"),
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown parameter {k:?}; use: county, assignee, state, overdue, limit"
                    ),
                );
            }
        }
    }
    let l = s.lifecycle.clone();
    match blocking(move || Ok(l.store.read(|db| q::list_tasks(db, &tq))?)).await {
        Ok(list) => Json(json!({ "count": list.len(), "tasks": list })).into_response(),
        Err(r) => r,
    }
}

pub(super) async fn task_one(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let l = s.lifecycle.clone();
    let r = blocking(move || {
        l.store
            .read(|db| {
                let Some(task) = q::get_task(db, &id)? else {
                    return Ok(None);
                };
                let alert = q::get_alert(db, &task.alert_id)?;
                let in_scope = match &alert {
                    Some(a) => caller.scope.covers_alert(&a.alert),
                    None => caller.scope.covers_county(&task.county),
                };
                if !in_scope {
                    return Ok(None);
                }
                Ok(Some(json!({ "task": task, "alert": alert })))
            })
            .map_err(ActionError::Store)
    })
    .await;
    match r {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such task"),
        Err(r) => r,
    }
}

pub(super) async fn task_ack(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ActBody>, JsonRejection>,
) -> Response {
    perform(s, caller, id, Target::Task, body, |l, id, by, _| {
        l.task_acknowledge(id, by)
    })
    .await
}

pub(super) async fn task_assign(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ActBody>, JsonRejection>,
) -> Response {
    let auth = s.auth.clone();
    perform(s, caller, id, Target::Task, body, move |l, id, by, b| {
        let county = l
            .store
            .read(|db| q::get_task(db, id))?
            .map(|t| t.county)
            .ok_or_else(|| ActionError::NotFound(format!("no task {id}")))?;
        let roster = l.roster()?;
        assignable(&auth.users, &roster, &county, b.inspector.trim())
            .map_err(ActionError::Invalid)?;
        l.task_assign(id, by, &b.inspector)
    })
    .await
}

/// Whether a task of `county` may be given to `inspector`: a configured
/// user must be an inspector of that county; any other name must be on the
/// county's roster. `Err` says why not.
fn assignable(
    users: &crate::auth::Users,
    roster: &[RosterEntry],
    county: &str,
    inspector: &str,
) -> Result<(), String> {
    if inspector.is_empty() {
        return Err("`inspector` must not be empty".into());
    }
    match users.get(inspector) {
        Some(u) if u.role == Role::Inspector.key() && u.jurisdiction.as_deref() == Some(county) => {
            Ok(())
        }
        Some(_) => Err(format!(
            "{inspector:?} is not a duty inspector of county {county}"
        )),
        None if roster
            .iter()
            .any(|e| e.county == county && e.inspector == inspector) =>
        {
            Ok(())
        }
        None => Err(format!(
            "{inspector:?} is on no roster of county {county}; add them to the roster first"
        )),
    }
}

pub(super) async fn task_close(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<CloseBody>, JsonRejection>,
) -> Response {
    perform(s, caller, id, Target::Task, body, |l, id, by, b| {
        l.task_close(id, by, &b.feedback())
    })
    .await
}

pub(super) async fn roster(State(s): State<AppState>, caller: Caller) -> Response {
    let l = s.lifecycle.clone();
    match blocking(move || Ok(l.roster()?)).await {
        Ok(list) => {
            let list: Vec<RosterEntry> = list
                .into_iter()
                .filter(|e| caller.scope.covers_county(&e.county))
                .collect();
            Json(json!({ "count": list.len(), "roster": list })).into_response()
        }
        Err(r) => r,
    }
}

pub(super) async fn roster_add(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<RosterEntry>, JsonRejection>,
) -> Response {
    let e = match json_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_lengths(&[
        ("county", &e.county, MAX_NAME_BYTES),
        ("inspector", &e.inspector, MAX_NAME_BYTES),
        ("name", &e.name, MAX_NAME_BYTES),
    ]) {
        return r;
    }
    if let Err(m) = tasks::check_entry(&e) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, m);
    }
    if !caller.scope.covers_county(&e.county) {
        return super::access::forbidden(
            &s,
            &format!("county {} is outside your jurisdiction", e.county),
        );
    }
    let l = s.lifecycle.clone();
    match blocking(move || Ok(l.store.tx(|db| q::add_roster(db, &e, "api"))?)).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(r) => r,
    }
}

pub(super) async fn roster_delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Response {
    let l = s.lifecycle.clone();
    let scope = caller.scope.clone();
    let r = blocking(move || {
        Ok(l.store.tx(|db| {
            // Another jurisdiction's line is as good as absent.
            let ours = q::roster(db)?
                .iter()
                .any(|e| e.id == id && scope.covers_county(&e.county));
            if !ours {
                return Ok(false);
            }
            q::delete_roster(db, id)
        })?)
    })
    .await;
    match r {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no roster line {id}")),
        Err(r) => r,
    }
}

/// True when mine `code` is configured and in the caller's jurisdiction.
fn mine_in_scope(s: &AppState, scope: &Scope, code: &str) -> bool {
    s.registry
        .snapshot()
        .mines
        .iter()
        .any(|m| m.code == code && scope.covers(&m.province, &m.city, &m.county))
}

pub(super) async fn calibration_list(
    State(s): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mine = params.get("mine").cloned().unwrap_or_default();
    let l = s.lifecycle.clone();
    // A jurisdiction's windows are picked from all of them: few are declared.
    let fetch = if caller.scope == Scope::All {
        1000
    } else {
        100_000
    };
    match blocking(move || Ok(l.store.read(|db| q::calibrations(db, &mine, fetch))?)).await {
        Ok(list) => {
            let list: Vec<Calibration> = list
                .into_iter()
                .filter(|c| caller.scope == Scope::All || mine_in_scope(&s, &caller.scope, &c.mine))
                .take(1000)
                .collect();
            Json(json!({ "count": list.len(), "calibrations": list })).into_response()
        }
        Err(r) => r,
    }
}

pub(super) async fn calibration_add(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<Calibration>, JsonRejection>,
) -> Response {
    let mut c = match json_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_lengths(&[
        ("mine", &c.mine, MAX_NAME_BYTES),
        ("point", c.point.as_deref().unwrap_or(""), MAX_NAME_BYTES),
        ("from", &c.from, MAX_NAME_BYTES),
        ("to", &c.to, MAX_NAME_BYTES),
        ("note", &c.note, MAX_TEXT_BYTES),
        ("by", &c.by, MAX_NAME_BYTES),
    ]) {
        return r;
    }
    c.by = caller.actor(&c.by);
    let (from, to) = (q::parse_ms(&c.from), q::parse_ms(&c.to));
    if from == 0 || to == 0 || to <= from {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "from and to must be RFC 3339 times with to after from",
        );
    }
    let max_ms = (s.lifecycle.config().max_calibration_hours as i64).saturating_mul(3_600_000);
    if to - from > max_ms {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "a calibration window may last at most {} hours (alerting.max_calibration_hours); \
                 declare a longer outage as a mine status instead",
                max_ms / 3_600_000
            ),
        );
    }
    if c.by.trim().is_empty() || c.note.trim().is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "by and note must not be empty",
        );
    }
    // Another jurisdiction's mine is as unknown as a mine that does not exist.
    if !mine_in_scope(&s, &caller.scope, &c.mine) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("unknown mine {:?}", c.mine),
        );
    }
    let l = s.lifecycle.clone();
    let now = chrono::Utc::now().timestamp_millis();
    let audit = c.clone();
    match blocking(move || Ok(l.store.tx(|db| q::add_calibration(db, &c, now))?)).await {
        Ok(id) => {
            // Who declared which window, and when, is kept in the store
            // (`actor`, `created_ms`) and listed; the log says it too.
            tracing::info!(
                id,
                mine = ?audit.mine,
                point = ?audit.point,
                from = ?audit.from,
                to = ?audit.to,
                by = ?audit.by,
                "calibration window declared"
            );
            (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
        }
        Err(r) => r,
    }
}

/// Body of `PUT /api/mines/{code}/status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusBody {
    /// `producing`, `stopped`, `building` or `closed`.
    status: String,
    /// The order or notice that declares it.
    reason: String,
    /// Who declared it (counts only from an API token).
    #[serde(default)]
    by: String,
}

/// A regulator declares a mine's status (a 停产整顿 order, its lifting, a
/// closure): stored first, then in force for the detectors at once (the
/// electricity-use and seal rules judge a stopped mine; flat lines count
/// only while producing). It stands over the config's `status`, also
/// after a restart, until the next declaration.
pub(super) async fn mine_status_set(
    State(s): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    body: Result<Json<StatusBody>, JsonRejection>,
) -> Response {
    // Another jurisdiction's mine is as unknown as a mine that does not exist.
    if !mine_in_scope(&s, &caller.scope, &code) {
        return error(StatusCode::NOT_FOUND, "no such mine");
    }
    let b = match json_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_lengths(&[
        ("status", &b.status, MAX_NAME_BYTES),
        ("reason", &b.reason, MAX_TEXT_BYTES),
        ("by", &b.by, MAX_NAME_BYTES),
    ]) {
        return r;
    }
    let Some(status) = MineStatus::parse(b.status.trim()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "status {:?}: use producing, stopped, building or closed",
                b.status
            ),
        );
    };
    if b.reason.trim().is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason must not be empty: name the order or notice that declares it",
        );
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut d = StatusDeclaration {
        id: 0,
        mine: code.clone(),
        status,
        reason: b.reason.trim().to_string(),
        by: caller.actor(&b.by),
        at: rfc3339(now),
    };
    let l = s.lifecycle.clone();
    let stored = d.clone();
    d.id = match blocking(move || Ok(l.store.tx(|db| q::declare_status(db, &stored, now))?)).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let previous = s.registry.update(|r| {
        let previous = r.mine(&code).map(|m| r.mines[m as usize].status);
        (previous, r.set_mine_status(&code, status))
    });
    tracing::info!(
        mine = %code,
        status = status.key(),
        previous = previous.map(MineStatus::key),
        reason = ?d.reason,
        by = ?d.by,
        "mine status declared"
    );
    Json(json!({ "declaration": d, "previous": previous })).into_response()
}

/// A mine's status now and every declaration of it, newest first.
pub(super) async fn mine_status_history(
    State(s): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> Response {
    if !mine_in_scope(&s, &caller.scope, &code) {
        return error(StatusCode::NOT_FOUND, "no such mine");
    }
    let registry = s.registry.snapshot();
    let status = registry
        .mine(&code)
        .map(|m| registry.mines[m as usize].status);
    let l = s.lifecycle.clone();
    let mine = code.clone();
    match blocking(move || Ok(l.store.read(|db| q::status_declarations(db, &mine, 1000))?)).await {
        Ok(list) => Json(json!({
            "mine": code,
            "status": status,
            "count": list.len(),
            "declarations": list,
        }))
        .into_response(),
        Err(r) => r,
    }
}

pub(super) async fn outbox(
    State(s): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let scope = caller.scope.code().map(str::to_string);
    let state = params.get("state").cloned();
    if let Some(st) = &state
        && !["pending", "delivered", "failed"].contains(&st.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("state={st:?}: use pending, delivered or failed"),
        );
    }
    let alert = params.get("alert").cloned();
    let limit = match params.get("limit").map(|v| v.parse::<usize>()) {
        None => 500,
        Some(Ok(l)) if (1..=10_000).contains(&l) => l,
        Some(_) => return error(StatusCode::BAD_REQUEST, "limit: use 1..=10000"),
    };
    let l = s.lifecycle.clone();
    let r = blocking(move || {
        let list = l.store.read(|db| {
            q::list_outbox(
                db,
                state.as_deref(),
                alert.as_deref(),
                scope.as_deref(),
                limit,
            )
        })?;
        Ok(channel_internals_for(&caller, list))
    })
    .await;
    match r {
        Ok(list) => Json(json!({ "count": list.len(), "outbox": list })).into_response(),
        Err(r) => r,
    }
}

/// Outbox rows as `caller` may see them: a push's last error tells about
/// the receiving channel (its address, its answers), which only an admin
/// needs; everyone else sees the state and the attempts.
fn channel_internals_for(caller: &Caller, mut rows: Vec<q::OutboxView>) -> Vec<q::OutboxView> {
    if caller.role != crate::auth::Role::Admin {
        for r in &mut rows {
            r.last_error = None;
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tasks_go_only_to_inspectors_of_their_county() {
        use crate::config::auth::UserConfig;
        let u = |name: &str, role: &str, j: Option<&str>| UserConfig {
            name: name.into(),
            role: role.into(),
            jurisdiction: j.map(str::to_string),
            password_hash: None,
        };
        let users = crate::auth::Users::new(&[
            u("duty-140121", "inspector", Some("140121")),
            u("duty-140181", "inspector", Some("140181")),
            u("county-140121", "county_regulator", Some("140121")),
            u("admin", "admin", None),
        ]);
        let line = |county: &str, inspector: &str| RosterEntry {
            id: 1,
            county: county.into(),
            inspector: inspector.into(),
            name: "值班员".into(),
            start_min: 0,
            end_min: 1440,
            weekdays: Vec::new(),
            source: "config".into(),
        };
        let roster = [
            line("140121", "zhangsan"),
            line("140181", "lisi"),
            // A roster line cannot make another county's inspector ours.
            line("140121", "duty-140181"),
        ];
        let ok = |who: &str| assignable(&users, &roster, "140121", who);
        assert_eq!(ok("duty-140121"), Ok(()));
        assert_eq!(ok("zhangsan"), Ok(()));
        for refused in [
            "duty-140181",
            "lisi",
            "county-140121",
            "admin",
            "nobody",
            "",
        ] {
            assert!(ok(refused).is_err(), "{refused:?} took a task of 140121");
        }
    }

    #[test]
    fn each_text_field_has_its_own_cap() {
        let long_name = "名".repeat(50);
        let long_text = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(check_lengths(&[("by", "张三", MAX_NAME_BYTES)]).is_ok());
        assert!(check_lengths(&[("note", &"x".repeat(MAX_TEXT_BYTES), MAX_TEXT_BYTES)]).is_ok());
        for (field, value, max) in [
            ("by", long_name.as_str(), MAX_NAME_BYTES),
            ("cause", long_text.as_str(), MAX_TEXT_BYTES),
        ] {
            let r = check_lengths(&[("ok", "", 1), (field, value, max)]).expect_err(field);
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        }
        let body = CloseBody {
            by: String::new(),
            contacted: String::new(),
            cause: String::new(),
            measures: long_text.clone(),
            result: String::new(),
        };
        assert!(
            body.lengths()
                .iter()
                .any(|(f, v, max)| *f == "measures" && v.len() > *max)
        );
    }

    #[test]
    fn alert_filters_parse_and_refuse_clearly() {
        let (aq, live) = parse_alert_query(
            &q(&[
                ("active", "true"),
                ("kind", "evacuation"),
                ("since", "2026-11-23T08:00:00+08:00"),
                ("county", "140421"),
                ("limit", "5"),
            ]),
            ALERT_PARAMS,
        )
        .unwrap();
        assert_eq!(aq.condition.as_deref(), Some("active"));
        assert_eq!(aq.kind.as_deref(), Some("evacuation"));
        assert_eq!(aq.from_ms, Some(1_795_392_000_000));
        assert_eq!(aq.limit, 5);
        assert_eq!(live.jurisdiction.as_deref(), Some("140421"));
        let (aq, live) = parse_alert_query(&q(&[("reason", "flat_line")]), ALERT_PARAMS).unwrap();
        assert_eq!(aq.reason.as_deref(), Some("flat_line"));
        assert_eq!(live.reason.as_deref(), Some("flat_line"));
        for bad in [
            ("kind", "gas"),
            ("reason", "Flat Line"),
            ("active", "yes"),
            ("since", "yesterday"),
            ("limit", "0"),
            ("handling", "done"),
            ("colour", "red"),
        ] {
            let e = parse_alert_query(&q(&[bad]), ALERT_PARAMS).unwrap_err();
            assert!(e.contains(bad.0), "{e}");
        }
    }
}
