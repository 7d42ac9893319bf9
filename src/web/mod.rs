//! The HTTP side: `/healthz`, `/metrics`, the JSON API, the SSE alert feed
//! and a small live page at `/`.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness and the MQTT session state |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /api/alerts/stream?mine=&county=&kind=` | Server-Sent Events: active alerts first, then every change |
//! | `GET /api/mines` | the configured mines |
//! | `GET /api/rejects?limit=` | the most recent refused records, with reasons |
//! | `GET /api/points?mine=` | points with declared and effective levels |
//! | `GET /api/trend?mine=&hours=` | each point's latest reading and one-minute min/max/mean over the last hours |
//! | `GET /api/exceptions?mine=&limit=` | the mines' own exception reports (YCBJ) |
//! | `GET /api/exceptions/unreported?mine=` | over-limit alerts that a file-uploading mine never reported |
//!
//! Alerts, tasks, the roster and the outbox: see [`alerts`].

pub mod alerts;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::alert::{AlertEvent, Lifecycle};
use crate::config::SharedRegistry;
use crate::ingest::DeadLetters;
use crate::ingest::netfile::ExceptionBook;
use crate::ingest::netfile::watch::looser_than_rule;
use crate::metrics::Metrics;
use crate::model::MineStatus;
use crate::store::alerts as stored;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Alerts, tasks and their store.
    pub lifecycle: Arc<Lifecycle>,
    /// Recent values per point, for the trend charts.
    pub trends: Arc<crate::pipeline::trend::Trends>,
    /// Alert changes, for SSE.
    pub events: broadcast::Sender<Arc<AlertEvent>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Refused records.
    pub dead: Arc<DeadLetters>,
    /// Mines and points.
    pub registry: SharedRegistry,
    /// The mines' exception reports.
    pub exceptions: Arc<ExceptionBook>,
    /// Start of the daemon.
    pub started: Instant,
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/alerts", get(alerts::list))
        .route("/api/alerts/stream", get(alert_stream))
        .route("/api/alerts/summary", get(alerts::summary))
        .route("/api/alerts/{id}", get(alerts::one))
        .route("/api/alerts/{id}/ack", post(alerts::ack))
        .route("/api/alerts/{id}/dispose", post(alerts::dispose))
        .route("/api/alerts/{id}/close", post(alerts::close))
        .route("/api/tasks", get(alerts::task_list))
        .route("/api/tasks/{id}", get(alerts::task_one))
        .route("/api/tasks/{id}/ack", post(alerts::task_ack))
        .route("/api/tasks/{id}/assign", post(alerts::task_assign))
        .route("/api/tasks/{id}/close", post(alerts::task_close))
        .route("/api/roster", get(alerts::roster).post(alerts::roster_add))
        .route("/api/roster/{id}", delete(alerts::roster_delete))
        .route(
            "/api/calibrations",
            get(alerts::calibration_list).post(alerts::calibration_add),
        )
        .route("/api/outbox", get(alerts::outbox))
        .route("/api/mines", get(mines))
        .route("/api/rejects", get(rejects))
        .route("/api/points", get(points))
        .route("/api/trend", get(trend))
        .route("/api/exceptions", get(exceptions))
        .route("/api/exceptions/unreported", get(unreported))
        .with_state(state)
}

/// A 400 with a JSON body saying what was wrong.
fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn healthz(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "mqtt_connected": s.metrics.mqtt_connected.get() == 1,
        "uptime_secs": s.started.elapsed().as_secs(),
        "mines": s.registry.snapshot().mines.len(),
        "points": s.registry.snapshot().points.len(),
    }))
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

fn sse_event(ev: &AlertEvent) -> Event {
    Event::default()
        .event("alert")
        .id(ev.alert.alert.id.clone())
        .json_data(ev)
        .unwrap_or_else(|_| Event::default().comment("unencodable alert"))
}

async fn alert_stream(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter =
        match alerts::parse_alert_query(&q, &["mine", "county", "city", "province", "kind"]) {
            Ok((_, f)) => f,
            Err(e) => return bad_request(e),
        };
    // Subscribe before taking the snapshot, so nothing falls between them.
    let live = BroadcastStream::new(s.events.subscribe());
    let l = s.lifecycle.clone();
    let active = tokio::task::spawn_blocking(move || l.store.read(stored::active_alerts))
        .await
        .ok()
        .and_then(|r| {
            r.map_err(|e| tracing::error!(error = %format!("{e:#}"), "cannot read active alerts"))
                .ok()
        })
        .unwrap_or_default();
    let snapshot: Vec<Event> = active
        .into_iter()
        .filter(|a| filter.matches(&a.alert))
        .map(|alert| {
            sse_event(&AlertEvent {
                event: "active".into(),
                alert,
            })
        })
        .collect();
    let live_filter = filter.clone();
    let live = live.filter_map(move |item| {
        let out = match item {
            Ok(ev) if live_filter.matches(&ev.alert.alert) => Some(sse_event(&ev)),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(
                Event::default()
                    .event("lagged")
                    .data(format!("{n} alert events were skipped; reload /api/alerts")),
            ),
        };
        async move { out.map(Ok::<Event, Infallible>) }
    });
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream::iter(snapshot.into_iter().map(Ok)).chain(live));
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Serialize)]
struct MineView<'a> {
    code: &'a str,
    name: &'a str,
    province: &'a str,
    city: &'a str,
    county: &'a str,
    status: MineStatus,
    points: usize,
}

async fn mines(State(s): State<AppState>) -> Json<serde_json::Value> {
    let registry = s.registry.snapshot();
    let list: Vec<MineView> = registry
        .mines
        .iter()
        .map(|m| MineView {
            code: &m.code,
            name: &m.name,
            province: &m.province,
            city: &m.city,
            county: &m.county,
            status: m.status,
            points: m.points.len(),
        })
        .collect();
    Json(json!({
        "count": list.len(),
        "mines": list,
        "jurisdictions": s.lifecycle.jurisdiction_names(),
    }))
}

async fn rejects(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit = match limit_of(&q, 100) {
        Ok(l) => l,
        Err(e) => return bad_request(e),
    };
    let list = s.dead.recent(limit);
    Json(json!({ "count": list.len(), "rejects": list })).into_response()
}

/// The `limit` parameter: 1..=10000, `default` when absent.
fn limit_of(q: &HashMap<String, String>, default: usize) -> Result<usize, String> {
    match q.get("limit").map(|v| v.parse::<usize>()) {
        None => Ok(default),
        Some(Ok(l)) if (1..=10_000).contains(&l) => Ok(l),
        Some(_) => Err("limit: use 1..=10000".into()),
    }
}

async fn points(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let registry = s.registry.snapshot();
    let mine = q.get("mine");
    let list: Vec<serde_json::Value> = registry
        .points
        .iter()
        .filter(|p| mine.is_none_or(|m| *m == registry.mines[p.mine as usize].code))
        .map(|p| {
            json!({
                "code": p.code,
                "mine": registry.mines[p.mine as usize].code,
                "sensor": p.sensor.code_text(),
                "location": p.location,
                "place": p.place,
                "unit": p.unit,
                "range": p.range,
                "polling_secs": p.polling_ms as f64 / 1000.0,
                "offline_after_secs": p.offline_after_ms as f64 / 1000.0,
                "substation": p.substation,
                "declared": {"alarm": p.declared.0, "power_off": p.declared.1, "restore": p.declared.2},
                "effective": p.limits.map(|l| json!({
                    "alarm": l.alarm, "power_off": l.power_off, "restore": l.restore,
                    "evacuate": l.evacuate, "from_rule": l.from_rule,
                })),
                "looser_than_rule": looser_than_rule(&registry.rules, p),
            })
        })
        .collect();
    Json(json!({ "count": list.len(), "points": list })).into_response()
}

/// `GET /api/trend?mine=&hours=`: each point of a mine with its latest
/// reading and its one-minute buckets over the last `hours` (1..=6) of
/// event time.
async fn trend(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(mine) = q.get("mine") else {
        return bad_request("mine= is required".into());
    };
    let hours = match q.get("hours").map(|h| h.parse::<i64>()) {
        None => 6,
        Some(Ok(h)) if (1..=6).contains(&h) => h,
        Some(_) => return bad_request("hours: use 1..=6".into()),
    };
    let registry = s.registry.snapshot();
    let Some(m) = registry.mines.iter().find(|m| m.code == *mine) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such mine" })),
        )
            .into_response();
    };
    let since = chrono::Utc::now().timestamp_millis() - hours * 3_600_000;
    let points: serde_json::Map<String, serde_json::Value> = m
        .points
        .iter()
        .map(|&p| {
            let series = s.trends.series(m.shard, p, since);
            (
                registry.points[p as usize].code.clone(),
                serde_json::to_value(series).unwrap_or_default(),
            )
        })
        .collect();
    Json(json!({ "mine": mine, "hours": hours, "points": points })).into_response()
}

async fn exceptions(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match limit_of(&q, 500) {
        Ok(l) => l,
        Err(e) => return bad_request(e),
    };
    let list = s.exceptions.list(q.get("mine").map(String::as_str), limit);
    Json(json!({ "count": list.len(), "exceptions": list })).into_response()
}

async fn unreported(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let query = crate::store::AlertQuery {
        mine: q.get("mine").cloned(),
        limit: 100_000,
        ..Default::default()
    };
    let l = s.lifecycle.clone();
    let found =
        tokio::task::spawn_blocking(move || l.store.read(|db| stored::list_alerts(db, &query)))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
    let alerts: Vec<crate::model::Alert> = match found {
        Ok(list) => list.into_iter().map(|r| r.alert).collect(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot read alerts");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": "the alert store failed" })),
            )
                .into_response();
        }
    };
    let list = s.exceptions.unreported(&alerts);
    Json(json!({ "count": list.len(), "alerts": list })).into_response()
}
