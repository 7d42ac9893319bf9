//! End to end through the daemon: the sign-in limits hold under parallel
//! requests and cannot be used to lock another person out; a client
//! address from `X-Forwarded-For` is believed only from a trusted proxy;
//! sessions and tokens act only for users of the running config, end when
//! the user's password hash changes, and take their open SSE streams with
//! them; `/metrics` is for admins and the metrics token only.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, anonymous_client, client_with_token, start, test_province};
use minewatch::config::auth::UserConfig;
use serde_json::{Value, json};

const PASSWORD: &str = "正确的密码-pw";
const METRICS_TOKEN: &str = "scrape-me-0123456789abcdef";

fn user(name: &str, role: &str, j: Option<&str>) -> UserConfig {
    UserConfig {
        name: name.into(),
        role: role.into(),
        jurisdiction: j.map(str::to_string),
        password_hash: Some(minewatch::auth::hash_password_cheap(PASSWORD).expect("hash")),
    }
}

/// `POST /login` as JSON, from `client` when given (sent as
/// `X-Forwarded-For`); the status.
async fn login(h: &Harness, name: &str, password: &str, client: Option<&str>) -> u16 {
    let mut r = anonymous_client()
        .post(format!("{}/login", h.base))
        .json(&json!({ "name": name, "password": password }));
    if let Some(c) = client {
        r = r.header("x-forwarded-for", c);
    }
    r.send().await.expect("http").status().as_u16()
}

/// Signs in; the session cookie and the CSRF token.
async fn session(h: &Harness, name: &str) -> (String, String) {
    let r = anonymous_client()
        .post(format!("{}/login", h.base))
        .json(&json!({ "name": name, "password": PASSWORD }))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 200, "login {name}");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("cookie")
        .to_string();
    let me: Value = r.json().await.expect("json");
    (cookie, me["csrf_token"].as_str().expect("csrf").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_sign_ins_are_counted_and_nobody_is_locked_out_from_elsewhere() {
    let mut config = test_province(1, 2, 600.0);
    // The production argon2 parameters: a password check takes long enough
    // that the parallel attempts all arrive while the first are checked.
    let mut duty = user("duty-140121", "inspector", Some("140121"));
    duty.password_hash = Some(minewatch::auth::hash_password(PASSWORD).expect("hash"));
    config.users = vec![
        duty,
        user("county-140121", "county_regulator", Some("140121")),
    ];
    config.auth.login_max_delay_secs = 1;
    config.http.trusted_proxies = vec!["127.0.0.1".into()];
    let h = start(config, "access-limits").await;
    let max = h.config.auth.login_max_failures as f64;

    // ---- 60 bad sign-ins at once from one address for one name ----
    let web = anonymous_client();
    let flood: Vec<_> = (0..60)
        .map(|_| {
            let r = web
                .post(format!("{}/login", h.base))
                .header("x-forwarded-for", "203.0.113.1")
                .json(&json!({ "name": "duty-140121", "password": "wrong" }));
            tokio::spawn(async move { r.send().await.expect("http").status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for f in flood {
        statuses.push(f.await.expect("task"));
    }
    let refused = statuses.iter().filter(|s| **s == 429).count();
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    assert!(refused > 0, "no 429 among {statuses:?}");
    assert_eq!(refused + wrong, 60, "{statuses:?}");
    let verified = h
        .metric("minewatch_login_attempts_total{outcome=\"bad_credentials\"}")
        .await;
    assert!(
        verified <= max,
        "{verified} passwords were checked, more than the limit {max}"
    );
    // Guessing on one at a time: refused once the limit is used up, and
    // then even the right password is.
    let mut tries = 0;
    while login(&h, "duty-140121", "wrong", Some("203.0.113.1")).await != 429 {
        tries += 1;
        assert!(tries <= 5, "more than the limit of guesses");
    }
    let verified = h
        .metric("minewatch_login_attempts_total{outcome=\"bad_credentials\"}")
        .await;
    assert!(verified <= max, "{verified} guesses checked, limit {max}");
    assert_eq!(
        login(&h, "duty-140121", PASSWORD, Some("203.0.113.1")).await,
        429
    );

    // ---- the real user at another address is not locked out ----
    assert_eq!(
        login(&h, "duty-140121", PASSWORD, Some("198.51.100.7")).await,
        200,
        "failures from another address locked the user out"
    );
    // Nor is another user behind the guesser's address.
    assert_eq!(
        login(&h, "county-140121", PASSWORD, Some("203.0.113.1")).await,
        200,
        "one name's failures locked the whole address"
    );

    // ---- a client cannot choose the address it is counted under ----
    // The proxy appends the peer it saw: whatever a client writes first,
    // the last untrusted hop counts. 203.0.113.1 is still refused.
    assert_eq!(
        login(&h, "duty-140121", "wrong", Some("192.0.2.99, 203.0.113.1")).await,
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_tokens_end_with_their_user_and_take_their_streams() {
    let mut config = test_province(1, 2, 600.0);
    config.users = vec![
        user("county-140121", "county_regulator", Some("140121")),
        user("duty-140121", "inspector", Some("140121")),
        UserConfig {
            name: "bot".into(),
            role: "auditor".into(),
            jurisdiction: None,
            password_hash: None,
        },
    ];
    config.http.metrics_token = Some(METRICS_TOKEN.into());
    let h = start(config, "access-ends").await;
    let web = anonymous_client();

    // ---- /metrics: admins and the metrics token only ----
    let metrics = |cred: Option<(&'static str, String)>| {
        let (web, base) = (web.clone(), h.base.clone());
        async move {
            let mut r = web.get(format!("{base}/metrics"));
            if let Some((k, v)) = cred {
                r = r.header(k, v);
            }
            r.send().await.expect("http").status().as_u16()
        }
    };
    let (county_cookie, county_csrf) = session(&h, "county-140121").await;
    let (duty_cookie, _) = session(&h, "duty-140121").await;
    assert_eq!(metrics(Some(("cookie", county_cookie.clone()))).await, 403);
    assert_eq!(metrics(Some(("cookie", duty_cookie.clone()))).await, 403);
    assert_eq!(metrics(None).await, 401);
    assert_eq!(
        metrics(Some(("authorization", format!("Bearer {METRICS_TOKEN}")))).await,
        200
    );
    assert_eq!(
        metrics(Some(("authorization", "Bearer wrong-token".into()))).await,
        401
    );
    let admin = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(admin.status().as_u16(), 200, "the admin reads metrics");
    // The metrics token opens nothing else.
    let r = client_with_token(METRICS_TOKEN)
        .get(format!("{}/api/alerts", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 401);

    // ---- security headers on the page and the API; no inline script ----
    for path in ["/login", "/api/me", "/", "/page.js"] {
        let r = web
            .get(format!("{}{path}", h.base))
            .header("cookie", &county_cookie)
            .send()
            .await
            .expect("http");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let header = |k: &str| {
            r.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let csp = header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("script-src 'self' 'unsafe-inline'"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
        if path == "/page.js" {
            assert!(header("content-type").starts_with("text/javascript"));
        }
        let body = r.text().await.unwrap_or_default();
        if path == "/" {
            assert!(
                body.contains("<script src=\"/page.js\"></script>"),
                "{body}"
            );
        }
    }

    // ---- calibration windows are capped; each text field too ----
    let mine = minewatch::simulators::province::mine_code(0);
    let calibrate = |from: &str, to: &str, note: String| {
        let (http, base) = (h.http.clone(), h.base.clone());
        let body = json!({"mine": mine, "from": from, "to": to, "note": note});
        async move {
            let r = http
                .post(format!("{base}/api/calibrations"))
                .json(&body)
                .send()
                .await
                .expect("http");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let (status, text) = calibrate(
        "2026-01-01T08:00:00+08:00",
        "2036-01-01T08:00:00+08:00",
        "调校".into(),
    )
    .await;
    assert_eq!(status, 422, "a ten-year window: {text}");
    assert!(text.contains("max_calibration_hours"), "{text}");
    let (status, text) = calibrate(
        "2026-01-01T08:00:00+08:00",
        "2026-01-01T09:00:00+08:00",
        "长".repeat(2000),
    )
    .await;
    assert_eq!(status, 400, "a 6000-byte note: {text}");
    assert!(text.contains("`note`") && text.contains("4096"), "{text}");
    let (status, text) = calibrate(
        "2026-01-01T08:00:00+08:00",
        "2026-01-01T09:00:00+08:00",
        "甲烷传感器调校".into(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    // Who declared it and when is kept and listed.
    let listed = h.get("/api/calibrations").await;
    let c = &listed["calibrations"][0];
    assert_eq!(c["by"], common::HARNESS_USER, "{listed}");
    assert!(
        c["declared_at"].as_str().is_some_and(|t| t.len() > 10),
        "{listed}"
    );

    let r = h
        .http
        .post(format!("{}/api/tokens", h.base))
        .json(&json!({"user": "bot", "label": "标".repeat(50)}))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 400, "a 150-byte token label");

    // ---- an open stream ends when its session is signed out ----
    let stream = web
        .get(format!("{}/api/alerts/stream", h.base))
        .header("cookie", &county_cookie)
        .send()
        .await
        .expect("http");
    assert_eq!(stream.status().as_u16(), 200);
    let out = web
        .post(format!("{}/logout", h.base))
        .header("cookie", &county_cookie)
        .header("x-csrf-token", &county_csrf)
        .send()
        .await
        .expect("http");
    assert_eq!(out.status().as_u16(), 303);
    assert!(
        ends_within(stream, Duration::from_secs(15)).await,
        "the stream outlived its session"
    );

    // ---- and when its token is revoked ----
    let made: Value = h
        .http
        .post(format!("{}/api/tokens", h.base))
        .json(&json!({"user": "bot", "label": "wall screen"}))
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json");
    let (token, id) = (
        made["token"].as_str().expect("token").to_string(),
        made["id"].as_i64().expect("id"),
    );
    let stream = client_with_token(&token)
        .get(format!("{}/api/alerts/stream", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(stream.status().as_u16(), 200);
    let r = h
        .http
        .delete(format!("{}/api/tokens/{id}", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 204);
    assert!(
        ends_within(stream, Duration::from_secs(15)).await,
        "the stream outlived its token"
    );

    // ---- a token for a user the running config does not define ----
    // Another config's `create-token` on the same store wrote user "ghost"
    // (an admin) and a token for them while this daemon runs.
    let store = h.daemon.lifecycle.store.clone();
    let mut other = h.config.users.clone();
    other.push(UserConfig {
        name: "ghost".into(),
        role: "admin".into(),
        jurisdiction: None,
        password_hash: None,
    });
    let ghost = tokio::task::spawn_blocking(move || {
        let now = common::now_ms();
        minewatch::auth::sessions::sync_config_users(&store, &other, now)?;
        store.tx(|db| minewatch::auth::sessions::create_token(db, "ghost", "x", "cli", now))
    })
    .await
    .expect("task")
    .expect("a token for ghost")
    .1;
    let r = client_with_token(&ghost)
        .get(format!("{}/api/me", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(
        r.status().as_u16(),
        401,
        "a token acted for a user this config does not define"
    );

    // ---- a changed password hash ends the user's sessions and tokens ----
    let duty_token: Value = h
        .http
        .post(format!("{}/api/tokens", h.base))
        .json(&json!({"user": "duty-140121", "label": "phone"}))
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json");
    let duty_token = duty_token["token"].as_str().expect("token").to_string();
    let me = |cookie: Option<String>, token: Option<String>, base: String| async move {
        let mut r = anonymous_client().get(format!("{base}/api/me"));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.send().await.expect("http").status().as_u16()
    };
    assert_eq!(
        me(Some(duty_cookie.clone()), None, h.base.clone()).await,
        200
    );
    assert_eq!(
        me(None, Some(duty_token.clone()), h.base.clone()).await,
        200
    );
    let mut stopped = h.stop().await;
    for u in &mut stopped.config.users {
        if u.name == "duty-140121" {
            u.password_hash =
                Some(minewatch::auth::hash_password_cheap("另一个新密码-pw-2").expect("hash"));
        }
    }
    let h = common::resume(stopped).await;
    assert_eq!(
        me(Some(duty_cookie), None, h.base.clone()).await,
        401,
        "the old password's session lives on"
    );
    assert_eq!(
        me(None, Some(duty_token), h.base.clone()).await,
        401,
        "the old password's token lives on"
    );
}

/// True when the response body ends (the server closes the stream) within
/// `within`.
async fn ends_within(mut resp: reqwest::Response, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await {
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None)) | Ok(Err(_)) => return true,
        }
    }
    false
}
