//! The README's first command, run for real: `minewatch demo` starts the
//! embedded broker, the simulated province, the daemon and the stand-in
//! regulator webhook receiver; an evacuation reaches the county desk's
//! webhook, creates a task for the county's duty inspector, escalates to the
//! city when left alone (60 s in the demo), and is closed with feedback by
//! the county's duty inspector, signed in with the demo password (session
//! cookie and CSRF token). Then, signed in as the province desk, every
//! alert kind minewatch has must have shown within the demo's first cycle.
//! About 3 minutes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::eventually;
use serde_json::{Value, json};

/// Signs `name` in with the demo password; its session cookie
/// (`name=value`) and the sign-in answer.
async fn sign_in(web: &reqwest::Client, api: &str, name: &str) -> (String, Value) {
    let login = web
        .post(format!("{api}/login"))
        .json(&json!({ "name": name, "password": "minewatch-demo" }))
        .send()
        .await
        .expect("http");
    assert_eq!(login.status().as_u16(), 200);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    let me: Value = login.json().await.expect("json");
    (cookie, me)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get(web: &reqwest::Client, url: &str) -> Value {
    match web.get(url).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pushes_tasks_escalates_and_closes_an_evacuation() {
    minewatch::alert::channels::install_tls_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, hook) = (free_port(), free_port());
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_minewatch"))
            .args([
                "demo",
                "--seconds",
                "240",
                "--data-dir",
                dir.path().to_str().expect("utf-8"),
                "--http-port",
                &http.to_string(),
                "--hook-port",
                &hook.to_string(),
                "--mqtt-port",
                &free_port().to_string(),
                "--modbus-port",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo"),
    );
    let web = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{http}");
    let received = format!("http://127.0.0.1:{hook}/received");
    let evacuation_at = |desk: &'static str, transition: &'static str| {
        let (web, received) = (web.clone(), received.clone());
        async move {
            get(&web, &received).await["received"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .find(|r| {
                    r["desk"] == desk
                        && r["signed_ok"] == json!(true)
                        && r["item"]["kind"] == "evacuation"
                        && r["item"]["transition"] == transition
                })
        }
    };

    eventually(
        Duration::from_secs(90),
        "the county desk gets an evacuation",
        || async { evacuation_at("county", "raised").await.is_some() },
    )
    .await;
    let raised = evacuation_at("county", "raised").await.unwrap_or_default();
    let id = raised["item"]["alert_id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let county = raised["item"]["county"].as_str().unwrap_or("").to_string();
    // Unsigned, the API refuses; the duty inspector signs in.
    let anonymous = web
        .get(format!("{api}/api/alerts/{id}"))
        .send()
        .await
        .expect("http");
    assert_eq!(anonymous.status().as_u16(), 401);
    let by = format!("duty-{county}");
    let (cookie, me) = sign_in(&web, &api, &by).await;
    assert_eq!(me["role"], "inspector", "{me}");
    let csrf = me["csrf_token"].as_str().expect("csrf token").to_string();
    let web = {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("cookie", cookie.parse().expect("cookie header"));
        h.insert("x-csrf-token", csrf.parse().expect("csrf header"));
        reqwest::Client::builder()
            .default_headers(h)
            .build()
            .expect("client")
    };
    let doc = get(&web, &format!("{api}/api/alerts/{id}")).await;
    let task = doc["alert"]["task"].clone();
    assert_eq!(task["assignee"], json!(format!("duty-{county}")), "{doc}");

    eventually(
        Duration::from_secs(100),
        "the city desk gets the escalation",
        || async { evacuation_at("city", "escalated").await.is_some() },
    )
    .await;

    let task_id = task["id"].as_str().unwrap_or("").to_string();
    let close = |body: Value| {
        let (web, url) = (web.clone(), format!("{api}/api/tasks/{task_id}/close"));
        async move {
            let r = web.post(url).json(&body).send().await.expect("http");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, _) = close(json!({ "by": by, "cause": "瓦斯涌出" })).await;
    assert_eq!(status, 422, "closing without feedback is refused");
    let (status, body) = close(json!({
        "by": by,
        "contacted": "电话联系矿调度室",
        "cause": "掘进工作面瓦斯涌出",
        "measures": "停电撤人, 加强通风",
        "result": "瓦斯降至 0.3%",
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    // The closing is recorded as the signed-in inspector's.
    let history = get(&web, &format!("{api}/api/alerts/{id}")).await["history"].clone();
    assert!(
        history
            .as_array()
            .is_some_and(|h| h.iter().any(|t| t["actor"] == json!(by))),
        "{history}"
    );
    eventually(Duration::from_secs(60), "the alert is closed", || async {
        get(&web, &format!("{api}/api/alerts/{id}")).await["alert"]["handling"] == "closed"
    })
    .await;

    // The province desk sees every kind within the first cycle (180 s).
    let (cookie, _) = sign_in(&reqwest::Client::new(), &api, "desk").await;
    let desk = {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("cookie", cookie.parse().expect("cookie header"));
        reqwest::Client::builder()
            .default_headers(h)
            .build()
            .expect("client")
    };
    let missing = || {
        let (desk, url) = (desk.clone(), format!("{api}/api/alerts?limit=1000"));
        async move {
            let seen: Vec<String> = get(&desk, &url).await["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["kind"].as_str().map(str::to_string))
                .collect();
            minewatch::model::AlertKind::ALL
                .iter()
                .map(|k| k.key())
                .filter(|k| !seen.iter().any(|s| s == k))
                .collect::<Vec<_>>()
        }
    };
    let within = common::within(Duration::from_secs(150), || async {
        missing().await.is_empty()
    })
    .await;
    assert!(within, "kinds the demo never showed: {:?}", missing().await);
}
