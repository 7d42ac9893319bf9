//! End to end through the daemon: access control by role and jurisdiction.
//!
//! Alerts, tasks, roster lines, calibration windows and refused records
//! exist for two counties (140121 and 140181); a county regulator of 140121
//! signs in and walks every route of [`minewatch::web::route_table`] — the
//! table the router is built from, so a new route cannot be missed — and no
//! body, the SSE feed's live events included, ever names the other county's
//! mine; the other county's objects by id are 404. An auditor gets 403 on
//! every action; without credentials everything but `/healthz`, `/readyz`
//! and `/login` is refused; a session POST without its CSRF token is refused;
//! and the 6th bad password in a row is a 429 with `Retry-After`.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Publisher, anonymous_client, eventually, now_ms, start, test_province};
use minewatch::config::auth::UserConfig;
use minewatch::simulators::province::{mine_code, point_code};
use minewatch::web::{Access, RouteSpec, route_table};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "正确的密码-pw";
const OURS: &str = "140121";
const THEIRS: &str = "140181";

fn user(name: &str, role: &str, j: Option<&str>) -> UserConfig {
    UserConfig {
        name: name.into(),
        role: role.into(),
        jurisdiction: j.map(str::to_string),
        password_hash: Some(minewatch::auth::hash_password_cheap(PASSWORD).expect("hash")),
    }
}

/// A signed-in browser: the session cookie and the CSRF token.
struct Session {
    web: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Session {
    async fn login(h: &Harness, name: &str) -> Session {
        let web = anonymous_client();
        let r = web
            .post(format!("{}/login", h.base))
            .json(&json!({ "name": name, "password": PASSWORD }))
            .send()
            .await
            .expect("http");
        assert_eq!(r.status().as_u16(), 200, "login {name}");
        let set = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("set-cookie")
            .to_string();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
        let cookie = set.split(';').next().expect("cookie").to_string();
        assert!(cookie.starts_with("mw_session="), "{cookie}");
        let me: Value = r.json().await.expect("json");
        assert_eq!(me["name"], name);
        Session {
            web,
            base: h.base.clone(),
            cookie,
            csrf: me["csrf_token"].as_str().expect("csrf").to_string(),
        }
    }

    /// Sends a request with the cookie (and the CSRF token when `csrf`).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        csrf: bool,
    ) -> (u16, String) {
        let mut r = self
            .web
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if csrf {
            r = r.header("x-csrf-token", &self.csrf);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.expect("http");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Reads the SSE feed until `until` appears in it or `within` passes;
    /// returns what was read. `during` runs once the feed is open.
    async fn stream(
        &self,
        until: &str,
        within: Duration,
        during: impl std::future::Future<Output = ()>,
    ) -> String {
        let mut resp = self
            .web
            .get(format!("{}/api/alerts/stream", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("http");
        assert_eq!(resp.status().as_u16(), 200);
        let mut seen = String::new();
        // The snapshot first.
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(3), resp.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        during.await;
        let deadline = Instant::now() + within;
        while !seen.contains(until) && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await {
                Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(_) => break,
                Err(_) => {}
            }
        }
        seen
    }
}

/// Ids of both counties' objects, found as the harness admin.
struct Ids {
    our_alert: String,
    their_alert: String,
    our_task: String,
    their_task: String,
    our_roster: i64,
    their_roster: i64,
}

async fn ids(h: &Harness) -> Ids {
    let alert = |county: &'static str| async move {
        h.alerts(&format!("county={county}&kind=overlimit")).await[0]["id"]
            .as_str()
            .expect("alert id")
            .to_string()
    };
    let task = |county: &'static str| async move {
        h.get(&format!("/api/tasks?county={county}")).await["tasks"][0]["id"]
            .as_str()
            .expect("task id")
            .to_string()
    };
    let roster = h.get("/api/roster").await;
    let roster_of = |county: &str| {
        roster["roster"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e["county"] == county))
            .and_then(|e| e["id"].as_i64())
            .expect("roster id")
    };
    Ids {
        our_alert: alert(OURS).await,
        their_alert: alert(THEIRS).await,
        our_task: task(OURS).await,
        their_task: task(THEIRS).await,
        our_roster: roster_of(OURS),
        their_roster: roster_of(THEIRS),
    }
}

/// The path of a route with its `{id}` filled in, for our own or the other
/// county's object. Panics on a route it does not know: teach it.
fn fill(route: &RouteSpec, ids: &Ids, ours: bool) -> String {
    let pick = |a: &str, b: &str| if ours { a.to_string() } else { b.to_string() };
    let p = route.path;
    if !p.contains('{') {
        return p.to_string();
    }
    let id = if p.starts_with("/api/alerts/{id}") {
        pick(&ids.our_alert, &ids.their_alert)
    } else if p.starts_with("/api/tasks/{id}") {
        pick(&ids.our_task, &ids.their_task)
    } else if p == "/api/roster/{id}" {
        pick(&ids.our_roster.to_string(), &ids.their_roster.to_string())
    } else if p == "/api/tokens/{id}" {
        "1".to_string()
    } else if p == "/api/mines/{id}/status" {
        pick(&mine_code(0), &mine_code(1))
    } else {
        panic!(
            "the access test does not know route {} {}: add it to fill()",
            route.method, p
        )
    };
    p.replace("{id}", &id)
}

/// A body that the route accepts (so that refusals come from access, not
/// from a malformed request).
fn body(route: &RouteSpec, mine: &str, county: &str) -> Option<Value> {
    if route.method == Method::GET || route.method == Method::DELETE {
        return None;
    }
    Some(match route.path {
        "/api/roster" => {
            json!({"county": county, "inspector": "zs", "name": "张三", "start_min": 0, "end_min": 1440})
        }
        "/api/calibrations" => json!({
            "mine": mine, "from": "2026-01-01T08:00:00+08:00", "to": "2026-01-01T09:00:00+08:00",
            "note": "甲烷传感器调校",
        }),
        "/api/tokens" => json!({"user": "auditor", "label": "x"}),
        // As it is already: the walk must not change what the rest judges.
        "/api/mines/{id}/status" => json!({"status": "producing", "reason": "复产验收合格"}),
        "/login" => json!({"name": "county-140121", "password": PASSWORD}),
        _ => json!({
            "by": "someone", "note": "已通知矿方", "inspector": "inspector-140121",
            "contacted": "调度室", "cause": "瓦斯涌出", "measures": "撤人", "result": "已恢复",
        }),
    })
}

fn is_action(a: Access) -> bool {
    matches!(
        a,
        Access::AlertAction | Access::TaskAction | Access::RosterWrite | Access::Admin
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_county_regulator_sees_only_its_county_and_auditors_never_act() {
    let mut config = test_province(2, 8, 600.0);
    config.users = vec![
        user("county-140121", "county_regulator", Some(OURS)),
        user("inspector-140121", "inspector", Some(OURS)),
        user("auditor", "auditor", None),
    ];
    config.alerting = toml::from_str(
        r#"
[[roster]]
county = "140121"
inspector = "inspector-140121"
name = "本县值班员"

[[roster]]
county = "140181"
inspector = "inspector-140181"
name = "邻县值班员"
"#,
    )
    .expect("alerting");
    let h = start(config, "access").await;
    let (ours, theirs) = (mine_code(0), mine_code(1));
    assert!(ours.starts_with(OURS) && theirs.starts_with(THEIRS));

    // Over-limit and evacuation in both counties; a refused record from the
    // other county's mine; a calibration window there.
    let publisher = Publisher::connect("access-pub").await;
    let t0 = now_ms();
    for (i, v) in [0.3, 1.2, 1.7, 1.8].iter().enumerate() {
        for mine in [&ours, &theirs] {
            publisher
                .batch(
                    &h.topic(mine),
                    t0 + i as i64 * 1000,
                    &[(&point_code(mine, 0), *v, 0)],
                )
                .await;
        }
    }
    publisher.raw(&h.topic(&theirs), "not json").await;
    let h = &h;
    let count = |path: String| async move { h.get(&path).await["count"].as_u64().unwrap_or(0) };
    eventually(WAIT, "alerts and tasks in both counties", || async move {
        let mut all = true;
        for county in [OURS, THEIRS] {
            all &= count(format!("/api/alerts?kind=overlimit&county={county}")).await > 0;
            all &= count(format!("/api/tasks?county={county}")).await > 0;
        }
        all
    })
    .await;
    eventually(WAIT, "the refused record is listed", || async {
        h.get("/api/rejects").await.to_string().contains(&theirs)
    })
    .await;
    let r = h
        .http
        .post(format!("{}/api/calibrations", h.base))
        .json(&body(
            &route(Method::POST, "/api/calibrations"),
            &theirs,
            THEIRS,
        ))
        .send()
        .await
        .expect("http");
    assert_eq!(
        r.status().as_u16(),
        201,
        "the admin declares a window there"
    );
    // The admin sees the other county everywhere it should be.
    for path in [
        "/api/alerts",
        "/api/tasks",
        "/api/roster",
        "/api/calibrations",
        "/api/mines",
        "/api/points",
        "/api/rejects",
        "/api/outbox",
    ] {
        let text = h.get(path).await.to_string();
        if path != "/api/outbox" {
            assert!(
                text.contains(&theirs) || text.contains(THEIRS),
                "admin {path}: {text}"
            );
        }
    }
    let ids = ids(h).await;

    // ---- an inspector acts on the county's tasks, not on alerts ----
    let inspector = Session::login(h, "inspector-140121").await;
    let (status, text) = inspector
        .send(
            Method::POST,
            &format!("/api/tasks/{}/ack", ids.our_task),
            Some(&json!({})),
            true,
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let (status, _) = inspector
        .send(
            Method::POST,
            &format!("/api/tasks/{}/ack", ids.their_task),
            Some(&json!({})),
            true,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = inspector
        .send(
            Method::POST,
            &format!("/api/alerts/{}/ack", ids.our_alert),
            Some(&json!({})),
            true,
        )
        .await;
    assert_eq!(status, 403);

    // ---- the county regulator walks every route ----
    let county = Session::login(h, "county-140121").await;
    let table = route_table();
    let mut walked = 0;
    for route in table.iter().filter(|r| r.path != "/logout") {
        for own in [true, false] {
            if !route.path.contains('{') && !own {
                // Routes without an id: the other county's mine in the body.
                if route.method == Method::POST
                    && matches!(route.path, "/api/roster" | "/api/calibrations")
                {
                    let (status, text) = county
                        .send(
                            route.method.clone(),
                            route.path,
                            body(route, &theirs, THEIRS).as_ref(),
                            true,
                        )
                        .await;
                    assert!(
                        status == 403 || status == 422,
                        "{} {} for the other county: {status} {text}",
                        route.method,
                        route.path
                    );
                }
                continue;
            }
            let path = fill(route, &ids, own);
            let (status, text) = if route.path == "/api/alerts/stream" {
                (
                    200,
                    county
                        .stream("\n\n", Duration::from_secs(2), async {})
                        .await,
                )
            } else {
                county
                    .send(
                        route.method.clone(),
                        &path,
                        body(route, &ours, OURS).as_ref(),
                        true,
                    )
                    .await
            };
            walked += 1;
            assert!(status < 500, "{} {path}: {status} {text}", route.method);
            assert!(
                !text.contains(&theirs),
                "{} {path} shows the other county's mine {theirs}: {text}",
                route.method
            );
            if route.access == Access::Admin {
                assert_eq!(status, 403, "{} {path}: {text}", route.method);
            } else if !own {
                assert_eq!(
                    status, 404,
                    "{} {path} of the other county: {text}",
                    route.method
                );
            }
        }
    }
    assert!(
        walked >= table.len() - 2,
        "walked {walked} of {} routes",
        table.len()
    );
    // Asking for the other county by name in a query changes nothing.
    for route in table.iter().filter(|r| {
        r.method == Method::GET && !r.path.contains('{') && r.path != "/api/alerts/stream"
    }) {
        for q in [
            format!("mine={theirs}"),
            format!("county={THEIRS}"),
            format!("jurisdiction={THEIRS}"),
            format!("alert={}", ids.their_alert),
        ] {
            let path = format!("{}?{q}", route.path);
            let (status, text) = county.send(Method::GET, &path, None, false).await;
            assert!(status < 500, "GET {path}: {status} {text}");
            assert!(!text.contains(&theirs), "GET {path} shows {theirs}: {text}");
        }
    }
    // What the county sees, it sees: its own mine is there.
    let (_, alerts) = county.send(Method::GET, "/api/alerts", None, false).await;
    assert!(alerts.contains(&ours), "{alerts}");
    let (_, mines) = county.send(Method::GET, "/api/mines", None, false).await;
    assert!(mines.contains(&ours) && !mines.contains(&theirs), "{mines}");
    // A summary asked for the whole city counts only the county.
    let (_, summary) = county
        .send(
            Method::GET,
            "/api/alerts/summary?jurisdiction=140100",
            None,
            false,
        )
        .await;
    let raised: i64 = serde_json::from_str::<Value>(&summary).expect("json")["counts"]
        .as_array()
        .map(|c| c.iter().filter_map(|r| r["raised"].as_i64()).sum())
        .unwrap_or(0);
    let all: i64 = h.get("/api/alerts/summary?jurisdiction=140100").await["counts"]
        .as_array()
        .map(|c| c.iter().filter_map(|r| r["raised"].as_i64()).sum())
        .unwrap_or(0);
    assert!(
        raised > 0 && raised < all,
        "county {raised}, city {all}: {summary}"
    );

    // Live SSE events are filtered too: new over-limits in both counties
    // while the feed is open; ours arrives, theirs never does.
    let t1 = now_ms();
    let feed = county
        .stream(&point_code(&ours, 1), WAIT, async {
            for (i, v) in [1.2, 1.3].iter().enumerate() {
                for mine in [&theirs, &ours] {
                    publisher
                        .batch(
                            &h.topic(mine),
                            t1 + i as i64 * 1000,
                            &[(&point_code(mine, 1), *v, 0)],
                        )
                        .await;
                }
            }
        })
        .await;
    assert!(
        feed.contains(&point_code(&ours, 1)),
        "our live alert: {feed}"
    );
    assert!(
        !feed.contains(&theirs),
        "the other county leaked into the feed: {feed}"
    );

    // A task goes only to an inspector of its county: not to the other
    // county's (on that county's roster), not to a regulator.
    for who in ["inspector-140181", "county-140121"] {
        let (status, text) = county
            .send(
                Method::POST,
                &format!("/api/tasks/{}/assign", ids.our_task),
                Some(&json!({ "inspector": who })),
                true,
            )
            .await;
        assert_eq!(status, 422, "assigned to {who}: {text}");
    }

    // A session POST without its CSRF token is refused, with it accepted.
    let ack = format!("/api/alerts/{}/ack", ids.our_alert);
    let (status, text) = county
        .send(Method::POST, &ack, Some(&json!({})), false)
        .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("CSRF"), "{text}");
    let (status, text) = county
        .send(Method::POST, &ack, Some(&json!({})), true)
        .await;
    assert!(status == 200 || status == 409, "{status} {text}");

    // The actor is the signed-in user, whatever the body says.
    let doc = h.get(&format!("/api/alerts/{}", ids.our_alert)).await;
    let actors: Vec<&str> = doc["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|t| t["actor"].as_str()).collect())
        .unwrap_or_default();
    assert!(actors.contains(&"county-140121"), "{actors:?}");
    assert!(!actors.contains(&"someone"), "{actors:?}");

    // ---- an auditor reads everything and changes nothing ----
    let auditor = Session::login(h, "auditor").await;
    let (_, all_alerts) = auditor.send(Method::GET, "/api/alerts", None, false).await;
    assert!(all_alerts.contains(&theirs) && all_alerts.contains(&ours));
    for route in table.iter().filter(|r| is_action(r.access)) {
        for own in [true, false] {
            let path = fill(route, &ids, own);
            let (status, text) = auditor
                .send(
                    route.method.clone(),
                    &path,
                    body(route, &ours, OURS).as_ref(),
                    true,
                )
                .await;
            assert_eq!(status, 403, "auditor {} {path}: {text}", route.method);
        }
    }

    // ---- without credentials ----
    let anon = anonymous_client();
    for route in &table {
        let path = fill(route, &ids, true);
        let mut r = anon.request(route.method.clone(), format!("{}{path}", h.base));
        if let Some(b) = body(route, &ours, OURS) {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("http");
        let status = resp.status().as_u16();
        match (route.access, route.path) {
            (Access::Public, "/login") if route.method == Method::POST => {
                assert_eq!(status, 200, "signing in is open")
            }
            (Access::Public, _) => assert_eq!(status, 200, "{} {path}", route.method),
            (_, "/") => {
                assert_eq!(status, 303, "the page sends to the login");
                assert_eq!(
                    resp.headers().get("location").and_then(|v| v.to_str().ok()),
                    Some("/login")
                );
            }
            _ => assert_eq!(status, 401, "{} {path}", route.method),
        }
    }
    let (status, text) = {
        let r = anon
            .get(format!("{}/login", h.base))
            .send()
            .await
            .expect("http");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    assert_eq!(status, 200);
    assert!(
        text.contains("登录") && text.contains("name=\"password\""),
        "{text}"
    );
    // A bad token is refused, not ignored.
    let r = anon
        .get(format!("{}/api/alerts", h.base))
        .header("authorization", "Bearer mwt_nope")
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 401);

    // ---- signing out ends the session ----
    let (status, _) = county.send(Method::POST, "/logout", None, false).await;
    assert_eq!(status, 403, "sign-out needs the CSRF token too");
    let (status, _) = county.send(Method::POST, "/logout", None, true).await;
    assert_eq!(status, 303);
    let (status, _) = county.send(Method::GET, "/api/me", None, false).await;
    assert_eq!(status, 401);

    // ---- the 6th bad password is a 429 (last: it blocks this address) ----
    let bad = |password: &'static str| {
        let (anon, base) = (anon.clone(), h.base.clone());
        async move {
            anon.post(format!("{base}/login"))
                .json(&json!({ "name": "county-140121", "password": password }))
                .send()
                .await
                .expect("http")
        }
    };
    for i in 0..5 {
        assert_eq!(
            bad("wrong").await.status().as_u16(),
            401,
            "attempt {}",
            i + 1
        );
    }
    let sixth = bad("wrong").await;
    assert_eq!(sixth.status().as_u16(), 429);
    let retry: u64 = sixth
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry > 0 && retry <= 900, "{retry}");
    // Even the right password waits now.
    assert_eq!(bad(PASSWORD).await.status().as_u16(), 429);
    assert!(
        h.metric("minewatch_login_attempts_total{outcome=\"rate_limited\"}")
            .await
            >= 2.0
    );
    assert!(
        h.metric("minewatch_login_attempts_total{outcome=\"bad_credentials\"}")
            .await
            >= 5.0
    );
}

fn route(method: Method, path: &str) -> RouteSpec {
    route_table()
        .into_iter()
        .find(|r| r.method == method && r.path == path)
        .expect("route")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_the_form_sign_in_and_public_metrics() {
    let mut config = test_province(1, 4, 600.0);
    config.users = vec![
        user("county-140121", "county_regulator", Some(OURS)),
        UserConfig {
            name: "scraper".into(),
            role: "auditor".into(),
            jurisdiction: None,
            password_hash: None,
        },
    ];
    config.http.metrics_public = true;
    let h = start(config, "access-tokens").await;
    let anon = anonymous_client();

    // /metrics is public here; the API is not.
    let r = anon
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.text()
            .await
            .unwrap_or_default()
            .contains("minewatch_login_attempts_total")
    );
    let r = anon
        .get(format!("{}/api/alerts", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 401);

    // The admin makes a token for a machine user; it reads, cannot act, and
    // stops working once revoked. Its secret is never listed.
    let made: Value = h
        .http
        .post(format!("{}/api/tokens", h.base))
        .json(&json!({"user": "scraper", "label": "prometheus"}))
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json");
    let token = made["token"].as_str().expect("token").to_string();
    let id = made["id"].as_i64().expect("id");
    let bot = common::client_with_token(&token);
    let me: Value = bot
        .get(format!("{}/api/me", h.base))
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json");
    assert_eq!(me["name"], "scraper");
    assert_eq!(me["via"], "token");
    let r = bot
        .post(format!("{}/api/roster", h.base))
        .json(&json!({"county": OURS, "inspector": "x", "name": "x", "start_min": 0, "end_min": 1440}))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 403, "an auditor's token cannot write");
    let listed = h.get("/api/tokens").await.to_string();
    assert!(
        listed.contains("prometheus") && !listed.contains(&token),
        "{listed}"
    );
    let r = h
        .http
        .delete(format!("{}/api/tokens/{id}", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 204);
    let r = bot
        .get(format!("{}/api/me", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 401, "a revoked token is refused");
    let r = h
        .http
        .post(format!("{}/api/tokens", h.base))
        .json(&json!({"user": "nobody"}))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 422);

    // The HTML form: a wrong password shows the page again with a message,
    // the right one redirects to the page with the cookie; the form's
    // sign-out carries the CSRF token as a field.
    let form = |body: String| {
        anon.post(format!("{}/login", h.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = form("name=county-140121&password=wrong".into())
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.text()
            .await
            .unwrap_or_default()
            .contains("用户名或密码错误")
    );
    let encoded: String = PASSWORD.bytes().map(|b| format!("%{b:02X}")).collect();
    let r = form(format!("name=county-140121&password={encoded}"))
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/")
    );
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("cookie")
        .to_string();
    let page = anon
        .get(format!("{}/", h.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("http");
    assert_eq!(page.status().as_u16(), 200, "signed in, the page is served");
    let me: Value = anon
        .get(format!("{}/api/me", h.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json");
    assert_eq!(me["jurisdiction"]["code"], OURS);
    let csrf = me["csrf_token"].as_str().expect("csrf").to_string();
    let out = anon
        .post(format!("{}/logout", h.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("http");
    assert_eq!(out.status().as_u16(), 303);
    let r = anon
        .get(format!("{}/", h.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("http");
    assert_eq!(
        r.status().as_u16(),
        303,
        "signed out, the page sends to the login"
    );
    // A sign-in posted from another site is refused.
    let r = anon
        .post(format!("{}/login", h.base))
        .header("origin", "https://evil.example")
        .json(&json!({"name": "county-140121", "password": PASSWORD}))
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 403);
}
