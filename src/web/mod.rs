//! The HTTP side: `/healthz`, `/metrics`, the JSON API, the SSE alert feed
//! and a small live page at `/`.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness (always 200 while serving), with the readiness status and reasons and the MQTT session state (no sign-in) |
//! | `GET /readyz` | readiness: 200 `{"status":"ok"}` or 503 `{"status":"degraded","reasons":[…]}` (no sign-in; see [`crate::health`]) |
//! | `GET /metrics` | Prometheus text format (admins, the `http.metrics_token`, or anyone with `http.metrics_public`) |
//! | `GET /api/alerts/stream?mine=&county=&kind=&reason=` | Server-Sent Events: active alerts first, then every change; ends when its session or token does (checked at each event, at every sign-out or revocation, and every 5 s) |
//! | `GET /api/mines` | the mines, with their declared status now |
//! | `GET /api/rejects?limit=` | the most recent refused records, with reasons |
//! | `GET /api/points?mine=` | points with declared and effective levels |
//! | `GET /api/trend?mine=&hours=` | each point's latest reading and one-minute min/max/mean over the last hours |
//! | `GET /api/exceptions?mine=&limit=` | the mines' own exception reports (YCBJ) |
//! | `GET /api/exceptions/unreported?mine=` | over-limit alerts that a file-uploading mine never reported |
//!
//! Alerts, tasks, the roster and the outbox: see [`alerts`]. Sign-in,
//! sessions, tokens and the guard: see [`access`]; the table of every route
//! with who may use it is [`route_table`]. Every list is filtered to the
//! caller's jurisdiction; another jurisdiction's object asked for by id is a
//! 404, as if it did not exist.

pub mod access;
pub mod alerts;
pub mod client;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::alert::{AlertEvent, Lifecycle};
use crate::auth::{Caller, Scope};
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
    /// Sign-in settings and the failed-login counter.
    pub auth: Arc<access::AuthState>,
    /// The readiness rules.
    pub health: Arc<crate::health::Health>,
    /// Processing time.
    pub clock: Arc<dyn crate::pipeline::Clock>,
    /// Cluster mode: what this instance knows of the cluster.
    pub cluster: Option<Arc<crate::cluster::ClusterStatus>>,
}

/// Who may use a route. Every route but `/healthz`, `/readyz` and `/login`
/// needs a session or an API token; what a caller sees is then filtered by their
/// jurisdiction in the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// `/metrics`: admins and the `http.metrics_token` (it names every
    /// county); anyone when `http.metrics_public`.
    Metrics,
    /// Anyone signed in; filtered by jurisdiction.
    Read,
    /// The caller's own session (sign-out).
    Own,
    /// Acknowledge, dispose, close an alert: province desk, city and county
    /// regulators (their own mines), admin.
    AlertAction,
    /// Act on a task: the inspector it is assigned to, regulators (their own
    /// mines), admin.
    TaskAction,
    /// Change the roster, calibration windows or a mine's declared status:
    /// regulators (their own jurisdiction), admin.
    RosterWrite,
    /// Admin only (API tokens).
    Admin,
}

/// One route of the table.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: axum::http::Method,
    /// Path, with `{id}` parameters.
    pub path: &'static str,
    /// Who may use it.
    pub access: Access,
}

type Handler = axum::routing::MethodRouter<AppState>;

/// One table row: the handler is routed for exactly the method the row
/// names, so the table cannot say one thing and the router do another.
fn r<H, T>(
    method: axum::http::Method,
    path: &'static str,
    access: Access,
    h: H,
) -> (RouteSpec, Handler)
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    let filter = axum::routing::MethodFilter::try_from(method.clone())
        .unwrap_or_else(|_| panic!("route table: {method} {path}: not a routable method"));
    (
        RouteSpec {
            method,
            path,
            access,
        },
        axum::routing::on(filter, h),
    )
}

/// Every route with its access and handler: the router is built from this
/// table, and the access test walks it, so a new route cannot be left out.
fn routes() -> Vec<(RouteSpec, Handler)> {
    use Access::*;
    use axum::http::Method as M;
    vec![
        r(M::GET, "/", Read, page),
        r(M::GET, "/page.js", Read, page_js),
        r(M::GET, "/healthz", Public, healthz),
        r(M::GET, "/readyz", Public, readyz),
        r(M::GET, "/metrics", Metrics, metrics),
        r(M::GET, "/login", Public, access::login_form),
        r(M::POST, "/login", Public, access::login),
        r(M::POST, "/logout", Own, access::logout),
        r(M::GET, "/api/me", Read, access::me),
        r(M::GET, "/api/tokens", Admin, access::tokens),
        r(M::POST, "/api/tokens", Admin, access::token_create),
        r(M::DELETE, "/api/tokens/{id}", Admin, access::token_revoke),
        r(M::GET, "/api/alerts", Read, alerts::list),
        r(M::GET, "/api/alerts/stream", Read, alert_stream),
        r(M::GET, "/api/alerts/summary", Read, alerts::summary),
        r(M::GET, "/api/alerts/{id}", Read, alerts::one),
        r(M::POST, "/api/alerts/{id}/ack", AlertAction, alerts::ack),
        r(
            M::POST,
            "/api/alerts/{id}/dispose",
            AlertAction,
            alerts::dispose,
        ),
        r(
            M::POST,
            "/api/alerts/{id}/close",
            AlertAction,
            alerts::close,
        ),
        r(M::GET, "/api/tasks", Read, alerts::task_list),
        r(M::GET, "/api/tasks/{id}", Read, alerts::task_one),
        r(M::POST, "/api/tasks/{id}/ack", TaskAction, alerts::task_ack),
        r(
            M::POST,
            "/api/tasks/{id}/assign",
            TaskAction,
            alerts::task_assign,
        ),
        r(
            M::POST,
            "/api/tasks/{id}/close",
            TaskAction,
            alerts::task_close,
        ),
        r(M::GET, "/api/roster", Read, alerts::roster),
        r(M::POST, "/api/roster", RosterWrite, alerts::roster_add),
        r(
            M::DELETE,
            "/api/roster/{id}",
            RosterWrite,
            alerts::roster_delete,
        ),
        r(M::GET, "/api/calibrations", Read, alerts::calibration_list),
        r(
            M::POST,
            "/api/calibrations",
            RosterWrite,
            alerts::calibration_add,
        ),
        r(M::GET, "/api/outbox", Read, alerts::outbox),
        r(M::GET, "/api/mines", Read, mines),
        r(
            M::GET,
            "/api/mines/{id}/status",
            Read,
            alerts::mine_status_history,
        ),
        r(
            M::PUT,
            "/api/mines/{id}/status",
            RosterWrite,
            alerts::mine_status_set,
        ),
        r(M::GET, "/api/rejects", Read, rejects),
        r(M::GET, "/api/points", Read, points),
        r(M::GET, "/api/trend", Read, trend),
        r(M::GET, "/api/exceptions", Read, exceptions),
        r(M::GET, "/api/exceptions/unreported", Read, unreported),
        r(M::GET, "/api/cluster", Read, cluster),
    ]
}

/// Every route and who may use it (for tests and docs).
pub fn route_table() -> Vec<RouteSpec> {
    routes().into_iter().map(|(spec, _)| spec).collect()
}

/// The page's Content-Security-Policy: scripts only from this server (the
/// page has no inline script), no framing, no plugins, forms and
/// connections only to this server. Inline style stays allowed: the page
/// colours cells with `style` attributes.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Security headers on every answer, page and API alike.
async fn security_headers(mut r: Response) -> Response {
    use axum::http::HeaderValue;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it Chromium sends `Origin: null` on the
    // sign-in form's POST, which the login-CSRF check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// The router with every route, each behind its access guard.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (spec, handler) in routes() {
        let access = spec.access;
        let guarded = handler.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            move |State(s): State<AppState>,
                  req: axum::extract::Request,
                  next: axum::middleware::Next| { access::guard(access, s, req, next) },
        ));
        router = router.route(spec.path, guarded);
    }
    router
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// `GET /api/cluster`: instances, partitions and their owners, lease ages,
/// backlog, takeovers (cluster mode); 404 in single-node mode.
async fn cluster(State(s): State<AppState>) -> Response {
    match &s.cluster {
        Some(c) => Json(c.view()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "cluster mode is off ([cluster] enabled = false)" })),
        )
            .into_response(),
    }
}

/// A 400 with a JSON body saying what was wrong.
fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn page_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("page.js"),
    )
        .into_response()
}

/// The readiness verdict now.
fn verdict(s: &AppState) -> crate::health::Verdict {
    let points = s.registry.snapshot().points.len();
    let sample = crate::health::Sample::of(&s.metrics, points);
    s.health.verdict(sample, s.clock.now_ms())
}

/// Liveness: 200 while the process serves HTTP, with the readiness status
/// and its reasons in the body (see [`crate::health`]).
async fn healthz(State(s): State<AppState>) -> Json<serde_json::Value> {
    let v = verdict(&s);
    let registry = s.registry.snapshot();
    Json(json!({
        "status": v.status,
        "reasons": v.reasons,
        "mqtt_connected": s.metrics.mqtt_connected.get() == 1,
        "uptime_secs": s.started.elapsed().as_secs(),
        "mines": registry.mines.len(),
        "points": registry.points.len(),
    }))
}

/// Readiness: 200 `{"status":"ok"}`, or 503 with the reasons.
async fn readyz(State(s): State<AppState>) -> Response {
    let v = verdict(&s);
    let code = if v.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(v)).into_response()
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

/// How often an open SSE stream checks that its session or token still
/// stands (it also checks at once whenever one ends in this daemon).
const STREAM_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);
/// An event is sent only if the stream's credential was found standing at
/// most this long ago (else it is checked first).
const STREAM_EVENT_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves when the credential in `headers` no longer stands for `name`:
/// signed out, revoked, expired, or its user gone from the config. Checked
/// whenever a session or token ends here, and every [`STREAM_RECHECK`].
async fn credential_ended(s: AppState, headers: axum::http::HeaderMap, name: String) {
    let mut ended = s.auth.ended.subscribe();
    let mut tick = tokio::time::interval(STREAM_RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = ended.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        match access::authenticate(&s, &headers).await {
            Ok(Some(c)) if c.name == name => {}
            _ => return,
        }
    }
}

async fn alert_stream(
    State(s): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = match alerts::parse_alert_query(
        &q,
        &["mine", "county", "city", "province", "kind", "reason"],
    ) {
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
        .filter(|a| filter.matches(&a.alert) && caller.scope.covers_alert(&a.alert))
        .map(|alert| {
            sse_event(&AlertEvent {
                event: "active".into(),
                alert,
            })
        })
        .collect();
    let live_filter = filter.clone();
    let scope = caller.scope.clone();
    let live = live.filter_map(move |item| {
        let out = match item {
            Ok(ev)
                if live_filter.matches(&ev.alert.alert) && scope.covers_alert(&ev.alert.alert) =>
            {
                Some(sse_event(&ev))
            }
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(
                Event::default()
                    .event("lagged")
                    .data(format!("{n} alert events were skipped; reload /api/alerts")),
            ),
        };
        async move { out.map(Ok::<Event, Infallible>) }
    });
    // At each event: the credential is checked again when the last check
    // is older than STREAM_EVENT_RECHECK; a failed check ends the stream.
    let checked = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (s2, headers2, name2) = (s.clone(), headers.clone(), caller.name.clone());
    let live = live.take_while(move |_| {
        let (s, headers, name, checked) =
            (s2.clone(), headers2.clone(), name2.clone(), checked.clone());
        async move {
            let due = checked
                .lock()
                .map(|t| t.elapsed() >= STREAM_EVENT_RECHECK)
                .unwrap_or(true);
            if !due {
                return true;
            }
            let stands = matches!(
                access::authenticate(&s, &headers).await,
                Ok(Some(c)) if c.name == name
            );
            if stands && let Ok(mut t) = checked.lock() {
                *t = Instant::now();
            }
            stands
        }
    });
    let until = credential_ended(s.clone(), headers, caller.name.clone());
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(
        stream::iter(snapshot.into_iter().map(Ok))
            .chain(live)
            .take_until(Box::pin(until)),
    );
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

async fn mines(State(s): State<AppState>, caller: Caller) -> Json<serde_json::Value> {
    let registry = s.registry.snapshot();
    let list: Vec<MineView> = registry
        .mines
        .iter()
        .filter(|m| caller.scope.covers(&m.province, &m.city, &m.county))
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
    // Names of the jurisdictions the caller's mines lie in, and no others.
    let names: std::collections::BTreeMap<&String, &String> = s
        .lifecycle
        .jurisdiction_names()
        .iter()
        .filter(|(code, _)| {
            list.iter()
                .any(|m| m.county == *code || m.city == *code || m.province == *code)
        })
        .collect();
    Json(json!({
        "count": list.len(),
        "mines": list,
        "jurisdictions": names,
    }))
}

async fn rejects(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match limit_of(&q, 100) {
        Ok(l) => l,
        Err(e) => return bad_request(e),
    };
    let list = match caller.scope {
        Scope::All => s.dead.recent(limit),
        // A refused record is shown to a jurisdiction when the mine it came
        // from (by topic or file name) is theirs; one whose mine cannot be
        // told is shown only to those who see every mine.
        Scope::Within(_) => {
            let registry = s.registry.snapshot();
            let ours: HashSet<&str> = registry
                .mines
                .iter()
                .filter(|m| caller.scope.covers(&m.province, &m.city, &m.county))
                .map(|m| m.code.as_str())
                .collect();
            s.dead
                .recent(usize::MAX)
                .into_iter()
                .filter(|d| mine_of_origin(&d.origin).is_some_and(|m| ours.contains(m)))
                .take(limit)
                .collect()
        }
    };
    Json(json!({ "count": list.len(), "rejects": list })).into_response()
}

/// The mine a refused record came from: the `{mine}` of an MQTT topic
/// `…mines/{mine}/…`, or the first field of a national file name
/// `{mine}_{TYPE}_{time}.txt`.
fn mine_of_origin(origin: &str) -> Option<&str> {
    if let Some(i) = origin.find("mines/") {
        return origin[i + 6..].split('/').next().filter(|m| !m.is_empty());
    }
    let file = origin.rsplit(['/', '\\']).next()?;
    file.split_once('_')
        .map(|(m, _)| m)
        .filter(|m| !m.is_empty())
}

/// The `limit` parameter: 1..=10000, `default` when absent.
fn limit_of(q: &HashMap<String, String>, default: usize) -> Result<usize, String> {
    match q.get("limit").map(|v| v.parse::<usize>()) {
        None => Ok(default),
        Some(Ok(l)) if (1..=10_000).contains(&l) => Ok(l),
        Some(_) => Err("limit: use 1..=10000".into()),
    }
}

async fn points(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let registry = s.registry.snapshot();
    let mine = q.get("mine");
    let list: Vec<serde_json::Value> = registry
        .points
        .iter()
        .filter(|p| {
            let m = &registry.mines[p.mine as usize];
            mine.is_none_or(|code| *code == m.code)
                && caller.scope.covers(&m.province, &m.city, &m.county)
        })
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
                "air_path": p.air_path,
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
async fn trend(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(mine) = q.get("mine") else {
        return bad_request("mine= is required".into());
    };
    let hours = match q.get("hours").map(|h| h.parse::<i64>()) {
        None => 6,
        Some(Ok(h)) if (1..=6).contains(&h) => h,
        Some(_) => return bad_request("hours: use 1..=6".into()),
    };
    let registry = s.registry.snapshot();
    let Some(m) = registry
        .mines
        .iter()
        .find(|m| m.code == *mine && caller.scope.covers(&m.province, &m.city, &m.county))
    else {
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
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match limit_of(&q, 500) {
        Ok(l) => l,
        Err(e) => return bad_request(e),
    };
    let list = match caller.scope {
        Scope::All => s.exceptions.list(q.get("mine").map(String::as_str), limit),
        Scope::Within(_) => {
            let registry = s.registry.snapshot();
            let ours: HashSet<&str> = registry
                .mines
                .iter()
                .filter(|m| caller.scope.covers(&m.province, &m.city, &m.county))
                .map(|m| m.code.as_str())
                .collect();
            s.exceptions
                .list(q.get("mine").map(String::as_str), usize::MAX)
                .into_iter()
                .filter(|e| ours.contains(e.mine.as_str()))
                .take(limit)
                .collect()
        }
    };
    Json(json!({ "count": list.len(), "exceptions": list })).into_response()
}

async fn unreported(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let query = crate::store::AlertQuery {
        mine: q.get("mine").cloned(),
        scope: caller.scope.code().map(str::to_string),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_health_checks_and_the_sign_in_are_open() {
        let table = route_table();
        let open: Vec<String> = table
            .iter()
            .filter(|r| r.access == Access::Public)
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            open,
            ["GET /healthz", "GET /readyz", "GET /login", "POST /login"]
        );
        let mut seen = HashSet::new();
        for r in &table {
            assert!(
                seen.insert((r.method.clone(), r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            if r.method != axum::http::Method::GET && r.path.starts_with("/api/") {
                assert_ne!(
                    r.access,
                    Access::Read,
                    "{} {} changes state",
                    r.method,
                    r.path
                );
            }
        }
    }

    #[test]
    fn the_page_runs_no_inline_script() {
        let page = include_str!("page.html");
        let tags: Vec<&str> = page
            .match_indices("<script")
            .map(|(i, _)| &page[i..])
            .collect();
        assert!(!tags.is_empty());
        for tag in tags {
            let open = &tag[..tag.find('>').expect("tag end") + 1];
            assert!(open.contains("src=\"/page.js\""), "inline script: {open}");
            assert!(
                tag[open.len()..].starts_with("</script>"),
                "script tag with a body"
            );
        }
        assert!(!page.contains(" onclick=") && !page.contains("javascript:"));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn refused_records_are_traced_to_their_mine() {
        assert_eq!(
            mine_of_origin("p-1/mines/140121000001/telemetry"),
            Some("140121000001")
        );
        assert_eq!(
            mine_of_origin("/srv/drop/140121000001_CDSS_20261123080000.txt"),
            Some("140121000001")
        );
        assert_eq!(mine_of_origin("mines//telemetry"), None);
        assert_eq!(mine_of_origin("garbage"), None);
    }
}
