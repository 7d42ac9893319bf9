//! Sign-in and the guard in front of every route: the login page, sessions
//! in the `mw_session` cookie, API tokens, the CSRF check, and the role a
//! route asks for ([`super::Access`]). What a caller may *see* (their
//! jurisdiction) is applied by each handler from the [`Caller`] this guard
//! puts on the request.
//!
//! | route | what |
//! |---|---|
//! | `GET /login` | the sign-in form |
//! | `POST /login` | form (`name`, `password`) → 303 to `/` with the cookie; JSON → the caller and its CSRF token |
//! | `POST /logout` | ends the session (CSRF token as `X-CSRF-Token` or form field `csrf`) |
//! | `GET /api/me` | name, role, jurisdiction and the session's CSRF token |
//! | `GET /api/tokens`, `POST /api/tokens` `{user, label}`, `DELETE /api/tokens/{id}` | API tokens (admin) |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::client::ClientIp;
use super::{Access, AppState};
use crate::auth::limit::{Limits, LoginLimiter};
use crate::auth::sessions;
use crate::auth::{Caller, Role, Scope, Users, Via, same_secret};
use crate::config::HttpConfig;
use crate::config::auth::{AuthConfig, UserConfig};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mw_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest form body read to find a CSRF field or a sign-in, bytes.
const FORM_LIMIT: usize = 64 * 1024;

/// What the guard needs besides the store.
pub struct AuthState {
    /// `[auth]`.
    pub config: AuthConfig,
    /// `http.metrics_public`.
    pub metrics_public: bool,
    /// `http.metrics_token`.
    metrics_token: Option<String>,
    /// The users of the running config: the only ones anyone acts for.
    pub users: Users,
    /// Who the client of a request is (`http.trusted_proxies`).
    pub client_ip: ClientIp,
    /// Sign-in attempts.
    pub limiter: LoginLimiter,
    /// Password checks running at once (each takes ~19 MiB and tens of
    /// milliseconds): a burst of sign-ins queues instead of exhausting
    /// memory, and one address may hold only a few of them.
    pub verify_slots: tokio::sync::Semaphore,
    /// Counts sessions ended and tokens revoked: open SSE streams check
    /// their credential again when it moves.
    pub ended: tokio::sync::watch::Sender<u64>,
}

/// Password checks allowed at once.
const VERIFY_SLOTS: usize = 4;
/// Sign-ins one client address may have in progress at once.
const CONCURRENT_PER_ADDRESS: usize = 2;

impl AuthState {
    /// From the config.
    pub fn new(config: &AuthConfig, http: &HttpConfig, users: &[UserConfig]) -> Arc<AuthState> {
        Arc::new(AuthState {
            config: config.clone(),
            metrics_public: http.metrics_public,
            metrics_token: http.metrics_token.clone().filter(|t| !t.is_empty()),
            users: Users::new(users),
            client_ip: ClientIp::new(&http.trusted_proxies, &http.client_ip_header),
            limiter: LoginLimiter::new(Limits {
                max_pair: config.login_max_failures,
                max_address: config.login_max_failures_per_address,
                window_secs: config.login_window_secs,
                max_delay: std::time::Duration::from_secs(config.login_max_delay_secs),
                concurrent_per_address: CONCURRENT_PER_ADDRESS,
            }),
            verify_slots: tokio::sync::Semaphore::new(VERIFY_SLOTS),
            ended: tokio::sync::watch::channel(0).0,
        })
    }

    /// Tells open streams that a session or token has ended.
    fn something_ended(&self) {
        self.ended.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// 403, counted.
pub fn forbidden(s: &AppState, message: &str) -> Response {
    s.metrics
        .auth_refused
        .with_label_values(&["forbidden"])
        .inc();
    json_error(StatusCode::FORBIDDEN, message)
}

/// The value of cookie `name`, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The client address of a request (see [`ClientIp`]).
fn client_ip(s: &AppState, req: &Request) -> String {
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(c) => s
            .auth
            .client_ip
            .resolve(c.0.ip(), req.headers())
            .to_string(),
        None => "unknown".into(),
    }
}

/// Who is calling, from an API token or the session cookie; `Err` when a
/// credential was sent but is not valid (or the store failed).
pub(super) async fn authenticate(s: &AppState, headers: &HeaderMap) -> Result<Option<Caller>, ()> {
    enum Cred {
        Token(String),
        Session(String),
    }
    let cred = if let Some(t) = bearer(headers) {
        Cred::Token(t.to_string())
    } else if let Some(c) = cookie(headers, SESSION_COOKIE) {
        Cred::Session(c.to_string())
    } else {
        return Ok(None);
    };
    let (store, auth) = (s.lifecycle.store.clone(), s.auth.clone());
    let now = now_ms();
    let found = tokio::task::spawn_blocking(move || match cred {
        // No transaction: a lookup, and at most once a minute a one-row
        // update of when the token was last used.
        Cred::Token(t) => store.read(|db| sessions::token_caller(db, &t, now, &auth.users)),
        Cred::Session(c) => store.read(|db| sessions::session_caller(db, &c, now, &auth.users)),
    })
    .await;
    match found {
        Ok(Ok(Some(c))) => Ok(Some(c)),
        Ok(Ok(None)) => Err(()),
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "cannot look up a session or token");
            Err(())
        }
        Err(_) => Err(()),
    }
}

/// The refusal for a request without valid credentials: a redirect to the
/// login page for a page, 401 JSON for the API, 401 text otherwise.
fn unauthenticated(s: &AppState, path: &str) -> Response {
    s.metrics
        .auth_refused
        .with_label_values(&["unauthenticated"])
        .inc();
    if path.starts_with("/api/") {
        let mut r = json_error(
            StatusCode::UNAUTHORIZED,
            "sign in (POST /login) or send Authorization: Bearer <token>",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    } else if path == "/" {
        Redirect::to("/login").into_response()
    } else {
        let mut r = (StatusCode::UNAUTHORIZED, "sign in or send a bearer token\n").into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// Checks the CSRF token of a session request that changes state; gives the
/// request back (its body re-assembled when a form field was read).
async fn check_csrf(expected: &str, req: Request) -> Result<Request, ()> {
    if let Some(h) = req.headers().get(CSRF_HEADER) {
        return match h.to_str() {
            Ok(v) if same_secret(v, expected) => Ok(req),
            _ => Err(()),
        };
    }
    if !is_form(req.headers()) {
        return Err(());
    }
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, FORM_LIMIT).await.map_err(|_| ())?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|_| ())?;
    let ok = fields
        .iter()
        .any(|(k, v)| k == "csrf" && same_secret(v, expected));
    if ok {
        Ok(Request::from_parts(parts, Body::from(bytes)))
    } else {
        Err(())
    }
}

/// True when the caller's role may use a route of this access at all
/// (scope and task ownership are checked by the handler).
pub fn role_allows(access: Access, role: Role) -> bool {
    match access {
        Access::Public | Access::Read | Access::Own => true,
        Access::Metrics => role == Role::Admin,
        Access::AlertAction => role.handles_alerts(),
        Access::TaskAction => role.handles_any_task() || role == Role::Inspector,
        Access::RosterWrite => role.writes_roster(),
        Access::Admin => role == Role::Admin,
    }
}

/// The guard of one route: authenticates, checks the CSRF token and the
/// role, and hands the [`Caller`] to the handler.
pub async fn guard(access: Access, s: AppState, mut req: Request, next: Next) -> Response {
    if access == Access::Public || (access == Access::Metrics && s.auth.metrics_public) {
        return next.run(req).await;
    }
    if access == Access::Metrics
        && let (Some(want), Some(got)) = (&s.auth.metrics_token, bearer(req.headers()))
        && same_secret(got, want)
    {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let caller = match authenticate(&s, req.headers()).await {
        Ok(Some(c)) => c,
        Ok(None) | Err(()) => return unauthenticated(&s, &path),
    };
    if let Via::Session { csrf } = &caller.via
        && changes_state(req.method())
    {
        req = match check_csrf(csrf, req).await {
            Ok(r) => r,
            Err(()) => {
                s.metrics.auth_refused.with_label_values(&["csrf"]).inc();
                return json_error(
                    StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token: send the X-CSRF-Token header (GET /api/me gives it)",
                );
            }
        };
    }
    if !role_allows(access, caller.role) {
        return forbidden(&s, &format!("a {} may not do this", caller.role));
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Response> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| json_error(StatusCode::UNAUTHORIZED, "not signed in"))
    }
}

const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>minewatch 登录</title>
<style>
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;background:#1b1f24;color:#e6e6e6;display:flex;justify-content:center;padding-top:12vh}
form{background:#262b31;padding:2em 2.5em;border-radius:8px;min-width:18em}
h1{font-size:1.3em;margin:0 0 1em}
label{display:block;margin:.8em 0 .3em}
input{width:100%;padding:.5em;box-sizing:border-box;border:1px solid #555;border-radius:4px;background:#111;color:#eee}
button{margin-top:1.4em;width:100%;padding:.6em;border:0;border-radius:4px;background:#c0392b;color:#fff;font-size:1em}
.err{color:#ff7b6b;margin-top:1em}
</style></head><body>
<form method="post" action="/login">
<h1>煤矿安全监测预警 · 登录</h1>
<label for="name">用户名</label><input id="name" name="name" autocomplete="username" required autofocus>
<label for="password">密码</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">登录</button>
<!--ERROR-->
</form></body></html>
"#;

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let page = match error {
        // Only fixed messages are shown: nothing from the request is echoed.
        Some(e) => LOGIN_PAGE.replace("<!--ERROR-->", &format!("<p class=\"err\">{e}</p>")),
        None => LOGIN_PAGE.to_string(),
    };
    (status, Html(page)).into_response()
}

/// `GET /login`.
pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// True when the request's `Origin`, if any, is this server (a sign-in
/// posted from another site is refused: login CSRF).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("mw_session=; Path=/; Max-Age=0"))
}

/// Logs a failed sign-in. The name is the caller's, unchecked: Debug
/// formatting quotes and escapes it, so a name with line breaks or
/// terminal escapes cannot forge log lines.
fn log_failed_sign_in(name: &str, ip: &str) {
    tracing::warn!(name = ?name, client = %ip, "failed sign-in");
}

/// `POST /login`: a form (then a redirect to the page) or JSON (then the
/// caller as JSON); both set the session cookie.
pub async fn login(State(s): State<AppState>, req: Request) -> Response {
    let ip = client_ip(&s, &req);
    let form = is_form(req.headers());
    if !same_origin(req.headers()) {
        return forbidden(&s, "sign-in from another site is refused");
    }
    let bytes = match to_bytes(req.into_body(), FORM_LIMIT).await {
        Ok(b) => b,
        Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let body: Result<LoginBody, String> = if form {
        serde_urlencoded::from_bytes(&bytes).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let refuse = |status: StatusCode, page_msg: &str, api_msg: &str| {
        if form {
            login_page(status, Some(page_msg))
        } else {
            json_error(status, api_msg)
        }
    };
    let body = match body {
        Ok(b) if !b.name.is_empty() && b.name.len() <= 64 && b.password.len() <= 1024 => b,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "请输入用户名和密码。",
                "send name and password (form or JSON)",
            );
        }
    };
    // The attempt counts from here, before the password is checked: parallel
    // attempts beyond the limit are refused at once.
    let now = now_ms();
    let attempt = match s.auth.limiter.begin(&body.name, &ip, now) {
        Ok(a) => a,
        Err(wait) => {
            s.metrics.logins.with_label_values(&["rate_limited"]).inc();
            let mut r = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "登录失败次数过多，请稍后再试。",
                "too many sign-in attempts; wait for Retry-After seconds",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return r;
        }
    };
    // A name failing from many addresses slows down, for everyone.
    if !attempt.delay().is_zero() {
        tokio::time::sleep(attempt.delay()).await;
    }
    let Ok(_slot) = s.auth.verify_slots.acquire().await else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let (store, auth) = (s.lifecycle.store.clone(), s.auth.clone());
    let ttl = s.auth.config.session_ttl_secs;
    let (name, ip_for_session) = (body.name.clone(), ip.clone());
    let outcome = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<_>> {
        if !auth.users.verify(&name, &body.password) {
            return Ok(None);
        }
        let session =
            store.tx(|db| sessions::create_session(db, &name, &ip_for_session, now, ttl))?;
        let via = Via::Session {
            csrf: session.csrf.clone(),
        };
        Ok(auth.users.caller(&name, via).map(|c| (session, c)))
    })
    .await;
    let (session, caller) = match outcome {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => {
            s.metrics
                .logins
                .with_label_values(&["bad_credentials"])
                .inc();
            log_failed_sign_in(&body.name, &ip);
            return refuse(
                StatusCode::UNAUTHORIZED,
                "用户名或密码错误。",
                "wrong name or password",
            );
        }
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "sign-in failed in the store");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed; try again",
            );
        }
        Err(_) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    attempt.succeeded();
    s.metrics.logins.with_label_values(&["ok"]).inc();
    tracing::info!(name = %caller.name, role = %caller.role, client = %ip, "signed in");
    let cookie = session_cookie(&session.token, ttl, s.auth.config.secure_cookie);
    let mut r = if form {
        Redirect::to("/").into_response()
    } else {
        Json(me_json(&caller)).into_response()
    };
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

/// `POST /logout`.
pub async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE).map(str::to_string) {
        let store = s.lifecycle.store.clone();
        let _ =
            tokio::task::spawn_blocking(move || store.tx(|db| sessions::end_session(db, &token)))
                .await;
        s.auth.something_ended();
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, s.auth.config.secure_cookie),
    );
    r
}

fn me_json(c: &Caller) -> serde_json::Value {
    json!({
        "name": c.name,
        "role": c.role,
        "jurisdiction": match &c.scope {
            Scope::All => serde_json::Value::Null,
            Scope::Within(j) => json!({ "code": j.code, "level": j.level }),
        },
        "csrf_token": match &c.via {
            Via::Session { csrf } => json!(csrf),
            Via::Token { .. } => serde_json::Value::Null,
        },
        "via": match c.via { Via::Session { .. } => "session", Via::Token { .. } => "token" },
    })
}

/// `GET /api/me`.
pub async fn me(caller: Caller) -> Json<serde_json::Value> {
    Json(me_json(&caller))
}

fn store_failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "token store failed");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the store failed; try again",
    )
}

/// `GET /api/tokens` (admin).
pub async fn tokens(State(s): State<AppState>) -> Response {
    let store = s.lifecycle.store.clone();
    match tokio::task::spawn_blocking(move || store.read(sessions::list_tokens)).await {
        Ok(Ok(list)) => Json(json!({ "count": list.len(), "tokens": list })).into_response(),
        Ok(Err(e)) => store_failed(format!("{e:#}")),
        Err(e) => store_failed(e),
    }
}

/// Body of `POST /api/tokens`.
#[derive(Deserialize)]
pub struct NewToken {
    user: String,
    #[serde(default)]
    label: String,
}

/// `POST /api/tokens` `{user, label}` (admin): the secret is in this answer
/// only.
pub async fn token_create(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(b)) = body else {
        return json_error(StatusCode::BAD_REQUEST, "send {\"user\": …, \"label\": …}");
    };
    use super::alerts::{MAX_NAME_BYTES, check_lengths};
    if let Err(r) = check_lengths(&[
        ("user", &b.user, MAX_NAME_BYTES),
        ("label", &b.label, MAX_NAME_BYTES),
    ]) {
        return r;
    }
    let store = s.lifecycle.store.clone();
    let now = now_ms();
    let (user, label) = (b.user.clone(), b.label.clone());
    // Only for a user of the running config.
    if s.auth.users.get(&user).is_none() {
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("no user {:?}", b.user),
        );
    }
    let made = tokio::task::spawn_blocking(move || {
        store.tx(|db| {
            if sessions::user(db, &user)?.is_none() {
                return Ok(None);
            }
            sessions::create_token(db, &user, &label, &caller.name, now).map(Some)
        })
    })
    .await;
    match made {
        Ok(Ok(Some((id, token)))) => (
            StatusCode::CREATED,
            Json(json!({ "id": id, "user": b.user, "label": b.label, "token": token })),
        )
            .into_response(),
        Ok(Ok(None)) => json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("no user {:?}", b.user),
        ),
        Ok(Err(e)) => store_failed(format!("{e:#}")),
        Err(e) => store_failed(e),
    }
}

/// `DELETE /api/tokens/{id}` (admin).
pub async fn token_revoke(State(s): State<AppState>, Path(id): Path<i64>) -> Response {
    let store = s.lifecycle.store.clone();
    let now = now_ms();
    match tokio::task::spawn_blocking(move || store.tx(|db| sessions::revoke_token(db, id, now)))
        .await
    {
        Ok(Ok(true)) => {
            s.auth.something_ended();
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok(false)) => json_error(StatusCode::NOT_FOUND, "no such live token"),
        Ok(Err(e)) => store_failed(format!("{e:#}")),
        Err(e) => store_failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn credentials_are_read_from_the_cookie_or_the_bearer_header() {
        let h = headers(&[(header::COOKIE, "a=1; mw_session=mws_x ; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("mws_x"));
        assert_eq!(
            cookie(&headers(&[(header::COOKIE, "mw_session=")]), SESSION_COOKIE),
            None
        );
        let h = headers(&[(header::AUTHORIZATION, "Bearer mwt_abc")]);
        assert_eq!(bearer(&h), Some("mwt_abc"));
        assert_eq!(
            bearer(&headers(&[(header::AUTHORIZATION, "Basic x")])),
            None
        );
    }

    #[tokio::test]
    async fn state_changes_need_the_sessions_csrf_token() {
        let post = |h: Option<&str>, ct: Option<&str>, body: &'static str| {
            let mut b = Request::builder().method(Method::POST).uri("/api/x");
            if let Some(h) = h {
                b = b.header(CSRF_HEADER, h);
            }
            if let Some(ct) = ct {
                b = b.header(header::CONTENT_TYPE, ct);
            }
            b.body(Body::from(body)).unwrap()
        };
        assert!(
            check_csrf("mwc_good", post(Some("mwc_good"), None, ""))
                .await
                .is_ok()
        );
        assert!(
            check_csrf("mwc_good", post(Some("mwc_bad"), None, ""))
                .await
                .is_err()
        );
        assert!(
            check_csrf("mwc_good", post(None, None, "{}"))
                .await
                .is_err()
        );
        let form = Some("application/x-www-form-urlencoded");
        let ok = check_csrf("mwc_good", post(None, form, "a=1&csrf=mwc_good"))
            .await
            .expect("form field");
        // The body is still there for the handler.
        let body = to_bytes(ok.into_body(), 100).await.unwrap();
        assert_eq!(&body[..], b"a=1&csrf=mwc_good");
        assert!(
            check_csrf("mwc_good", post(None, form, "csrf=mwc_bad"))
                .await
                .is_err()
        );
        // A header that is present but wrong is not rescued by the form.
        assert!(
            check_csrf("mwc_good", post(Some("x"), form, "csrf=mwc_good"))
                .await
                .is_err()
        );
    }

    #[test]
    fn a_sign_in_name_cannot_forge_log_lines() {
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            log_failed_sign_in(
                "zs\n2026-12-07T00:00:00Z  INFO signed in name=admin role=admin\u{1b}[2J",
                "10.0.0.1",
            );
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains(r#"name="zs\n2026"#), "{text}");
    }

    #[test]
    fn sign_in_from_another_site_is_refused() {
        assert!(same_origin(&headers(&[(header::HOST, "desk:8080")])));
        assert!(same_origin(&headers(&[
            (header::HOST, "desk:8080"),
            (header::ORIGIN, "http://desk:8080")
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "desk:8080"),
            (header::ORIGIN, "https://evil.example")
        ])));
    }

    #[test]
    fn auditors_may_read_but_never_act() {
        for a in [
            Access::AlertAction,
            Access::TaskAction,
            Access::RosterWrite,
            Access::Admin,
        ] {
            assert!(!role_allows(a, Role::Auditor), "{a:?}");
        }
        assert!(role_allows(Access::Read, Role::Auditor));
        assert!(role_allows(Access::TaskAction, Role::Inspector));
        assert!(!role_allows(Access::AlertAction, Role::Inspector));
        assert!(role_allows(Access::AlertAction, Role::ProvinceDesk));
        assert!(!role_allows(Access::RosterWrite, Role::ProvinceDesk));
        assert!(!role_allows(Access::Admin, Role::CountyRegulator));
    }
}
