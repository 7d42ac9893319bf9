//! End-to-end tests of alert handling: an evacuation is stored, pushed to a
//! county's webhook (signed, with an idempotency key), given to the duty
//! inspector as a task, escalated to the city when nobody acknowledges it in
//! time (an injected clock), and closed through the API only with feedback;
//! and a push in flight when the daemon is killed (`kill -9`) is delivered
//! exactly once after the restart.
//!
//! The store is SQLite in the test's data directory, or a fresh schema in
//! the PostgreSQL at `MINEWATCH_TEST_PG` (`.ci/run` sets it).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::hook::{self, Plan};
use common::{Publisher, eventually, now_ms, start_with_clock, test_province};
use minewatch::config::alerting::AlertingConfig;
use minewatch::pipeline::ManualClock;
use minewatch::simulators::province::{mine_code, point_code};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "county-secret";

/// `[alerting]` with a county webhook (mine 0's county 140121), a city
/// webhook for escalations (140100) and a day-and-night roster.
fn alerting(county_url: &str, city_url: &str) -> AlertingConfig {
    toml::from_str(&format!(
        r#"
[[channels]]
name = "county-hook"
kind = "webhook"
url = "{county_url}"
secret = "{SECRET}"
group_wait_ms = 0

[[channels]]
name = "city-hook"
kind = "webhook"
url = "{city_url}"
secret = "{SECRET}"
group_wait_ms = 0

[[routes]]
name = "县局: 瓦斯/CO 超限与撤人, 即时"
jurisdiction = "140121"
kinds = ["evacuation", "overlimit"]
channels = ["county-hook"]

[[routes]]
name = "市局: 升级后"
jurisdiction = "140100"
channels = ["city-hook"]

[[roster]]
county = "140121"
inspector = "inspector-a"
name = "值班员甲"
"#
    ))
    .expect("alerting config")
}

async fn post(h: &common::Harness, path: &str, body: Value) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}{path}", h.base))
        .json(&body)
        .send()
        .await
        .expect("http");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evacuation_is_pushed_tasked_escalated_and_closed_with_feedback() {
    let (county_url, county) = hook::start(SECRET).await;
    let (city_url, city) = hook::start(SECRET).await;
    // Polling 10 min: nothing goes offline while the clock jumps minutes.
    let mut config = test_province(2, 8, 600.0);
    config.alerting = alerting(&county_url, &city_url);
    let t0 = now_ms();
    let clock = Arc::new(ManualClock::at(t0));
    let h = start_with_clock(config, "handling", clock.clone()).await;

    let publisher = Publisher::connect("handling-pub").await;
    let mine = mine_code(0);
    let other = mine_code(1); // county 140181: not this county's business
    let point = point_code(&mine, 0); // face T1 methane: alarm 1.0, power-off 1.5
    for (i, v) in [0.3, 1.2, 1.7, 1.8].iter().enumerate() {
        let ts = t0 + i as i64 * 1000;
        publisher
            .batch(&h.topic(&mine), ts, &[(&point, *v, 0)])
            .await;
        publisher
            .batch(&h.topic(&other), ts, &[(&point_code(&other, 0), *v, 0)])
            .await;
    }

    // The county hears of its own mine's over-limit and evacuation at once,
    // signed and keyed; never of the other county's mine.
    let got = common::within(WAIT, || async {
        county
            .items()
            .iter()
            .any(|i| i["kind"] == "evacuation" && i["transition"] == "raised")
    })
    .await;
    assert!(
        got,
        "the county webhook never got the evacuation;\nalerts: {}\noutbox: {}\nhits: {:?}",
        h.get("/api/alerts").await,
        h.get("/api/outbox").await,
        county.hits()
    );
    let hits = county.hits();
    assert!(hits.iter().all(|h| h.signed_ok), "every push is signed");
    assert!(
        hits.iter().all(|h| !h.key.is_empty()),
        "every push has a key"
    );
    assert!(
        county.items().iter().all(|i| i["mine"] == json!(mine)),
        "only the county's own mine: {:?}",
        county.items()
    );
    assert!(
        city.hits().is_empty(),
        "the city is not told before escalation"
    );

    let evac = h.alerts(&format!("kind=evacuation&mine={mine}")).await;
    assert_eq!(evac.len(), 1);
    let id = evac[0]["id"].as_str().expect("id").to_string();
    assert_eq!(evac[0]["handling"], "unacknowledged");
    assert_eq!(evac[0]["level"], "county");
    let task = &evac[0]["task"];
    assert_eq!(task["assignee"], "inspector-a");
    let task_id = task["id"].as_str().expect("task id").to_string();
    let tasks = h.get("/api/tasks?county=140121&state=open").await;
    assert!(
        tasks["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .any(|t| t["id"] == json!(task_id))
    );

    // Nobody acknowledges for 5 minutes: the evacuation escalates to the
    // city, whose route hears only of escalated alerts.
    clock.advance(301_000);
    eventually(WAIT, "the city webhook gets the escalation", || async {
        city.items()
            .iter()
            .any(|i| i["alert_id"] == json!(id) && i["transition"] == "escalated")
    })
    .await;
    assert_eq!(
        h.get(&format!("/api/alerts/{id}")).await["alert"]["level"],
        "city"
    );

    // The inspector takes the task; closing without feedback is refused.
    let (s, t) = post(
        &h,
        &format!("/api/tasks/{task_id}/ack"),
        json!({"by": "inspector-a"}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let (s, e) = post(
        &h,
        &format!("/api/tasks/{task_id}/close"),
        json!({"by": "inspector-a", "cause": "放炮后瓦斯涌出"}),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["error"].as_str().unwrap_or("").contains("measures"),
        "{e}"
    );
    // Closing the alert while the gas is still high is refused too.
    let feedback = json!({
        "by": "inspector-a",
        "contacted": "电话联系矿调度室 王工",
        "cause": "回采工作面放炮后瓦斯涌出",
        "measures": "停电撤人, 加大风量",
        "result": "瓦斯降至 0.3%, 恢复送电",
    });
    let (s, e) = post(&h, &format!("/api/alerts/{id}/close"), feedback.clone()).await;
    assert_eq!(s, 409, "{e}");

    // The gas falls back; the episode clears.
    for i in 0..10 {
        let ts = t0 + 5_000 + i * 1000;
        publisher
            .batch(&h.topic(&mine), ts, &[(&point, 0.3, 0)])
            .await;
    }
    eventually(WAIT, "the evacuation clears", || async {
        h.get(&format!("/api/alerts/{id}")).await["alert"]["condition"] == "cleared"
    })
    .await;
    let (s, t) = post(&h, &format!("/api/tasks/{task_id}/close"), feedback).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["state"], "closed");

    let doc = h.get(&format!("/api/alerts/{id}")).await;
    assert_eq!(doc["alert"]["handling"], "closed");
    assert_eq!(doc["alert"]["task"]["state"], "closed");
    let history: Vec<String> = doc["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|t| t["transition"].as_str().unwrap_or("").to_string())
        .collect();
    for step in [
        "raised",
        "task_created",
        "escalated",
        "task_acknowledged",
        "acknowledged",
        "cleared",
        "task_closed",
        "closed",
    ] {
        assert!(
            history.contains(&step.to_string()),
            "{step} missing: {history:?}"
        );
    }
    let ack = doc["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|t| t["transition"] == "acknowledged")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ack["actor"], "inspector-a");

    // A closed alert cannot be acknowledged.
    let (s, e) = post(&h, &format!("/api/alerts/{id}/ack"), json!({"by": "desk"})).await;
    assert_eq!(s, 409, "{e}");
    // Every push the county got went out once per key.
    let keys: Vec<String> = county.delivered().into_iter().map(|h| h.key).collect();
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(keys.len(), distinct.len(), "{keys:?}");
    h.stop().await;
}

/// Writes a config file for the binary.
fn write_config(
    dir: &std::path::Path,
    county_url: &str,
    client_id: &str,
    http: &str,
) -> std::path::PathBuf {
    let province = test_province(1, 8, 600.0);
    let header = format!(
        r#"[daemon]
data_dir = "{data}"
shards = 1
tick_ms = 200

[mqtt]
broker = "mqtt://{broker}"
client_id = "{client_id}"

[http]
listen = "{http}"

[alerting]
store = {store}

[[alerting.channels]]
name = "county-hook"
kind = "webhook"
url = "{county_url}"
secret = "{SECRET}"
group_wait_ms = 0
max_backoff_secs = 1

[[alerting.routes]]
jurisdiction = "140121"
kinds = ["evacuation"]
channels = ["county-hook"]

[[users]]
name = "harness"
role = "admin"
"#,
        data = dir.join("data").display(),
        broker = common::broker(),
        store = match std::env::var("MINEWATCH_TEST_PG") {
            Ok(pg) if !pg.is_empty() => format!(
                "{:?}",
                minewatch::store::fresh_schema(&pg, client_id).expect("schema")
            ),
            _ => format!(
                "{:?}",
                format!("sqlite:{}", dir.join("data/minewatch.db").display())
            ),
        },
    );
    let text = minewatch::simulators::province::to_toml(&province, &header);
    let file = dir.join("minewatch.toml");
    std::fs::write(&file, text).expect("write config");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_in_flight_at_kill_9_is_delivered_exactly_once_after_restart() {
    minewatch::alert::channels::install_tls_provider();
    let (url, county) = hook::start(SECRET).await;
    // First a 500 (retried), then a delivery the receiver takes but answers
    // only after 30 s: the daemon is killed while waiting.
    county.plan(&[
        Plan::Status(500),
        Plan::AcceptSlowly(Duration::from_secs(30)),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let client_id = common::unique("kill9");
    let config = write_config(dir.path(), &url, &client_id, "127.0.0.1:0");
    // The API needs a token: made with the CLI before the daemon starts.
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .args(["create-token", "--config", config.to_str().expect("utf-8")])
        .args(["--user", "harness", "--label", "kill9"])
        .output()
        .expect("minewatch create-token");
    assert!(made.status.success(), "{made:?}");
    let token = String::from_utf8_lossy(&made.stdout).trim().to_string();
    let data = dir.path().join("data");
    let mut daemon = common::DaemonProcess::start(&config, &data, &dir.path().join("run1.log"));
    let base = daemon.base().await;
    let web = common::client_with_token(&token);
    eventually(WAIT, "the daemon is up", || async {
        match web.get(format!("{base}/healthz")).send().await {
            Ok(r) => r
                .json::<Value>()
                .await
                .is_ok_and(|v| v["mqtt_connected"] == json!(true)),
            Err(_) => false,
        }
    })
    .await;

    let publisher = Publisher::connect("kill9-pub").await;
    let mine = mine_code(0);
    let topic = format!("mines/{mine}/telemetry");
    let point = point_code(&mine, 0);
    let t0 = now_ms();
    for (i, v) in [0.3, 1.7, 1.8].iter().enumerate() {
        publisher
            .batch(&topic, t0 + i as i64 * 1000, &[(&point, *v, 0)])
            .await;
    }
    eventually(WAIT, "the receiver holds a delivery in flight", || async {
        county.hits().len() >= 2
    })
    .await;
    let first = county.hits();
    assert_eq!(first[0].status, 500);
    assert_eq!(first[0].key, first[1].key, "a retry carries the same key");
    daemon.kill();

    let mut daemon = common::DaemonProcess::start(&config, &data, &dir.path().join("run2.log"));
    let base = daemon.base().await;
    eventually(
        Duration::from_secs(30),
        "the push is sent again after the restart",
        || async { county.hits().len() >= 3 },
    )
    .await;
    eventually(WAIT, "the restarted daemon serves HTTP", || async {
        web.get(format!("{base}/healthz")).send().await.is_ok()
    })
    .await;
    let hits = county.hits();
    assert!(
        hits[2].duplicate,
        "the resend carries the key already delivered"
    );
    assert_eq!(hits[2].key, first[1].key);
    // One delivery of the raise, and one evacuation alert (the episode the
    // detector finds again after the restart continues the stored alert).
    let raised: Vec<_> = county
        .items()
        .into_iter()
        .filter(|i| i["transition"] == "raised")
        .collect();
    assert_eq!(raised.len(), 1, "{raised:?}");
    let alerts: Value = web
        .get(format!("{base}/api/alerts?kind=evacuation"))
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json");
    assert_eq!(alerts["count"], 1, "{alerts}");
    let outbox: Value = web
        .get(format!("{base}/api/outbox?state=delivered"))
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json");
    assert!(outbox["count"].as_u64().unwrap_or(0) >= 1, "{outbox}");
    daemon.kill();
}
