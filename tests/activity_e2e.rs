//! End-to-end tests of electricity use and electronic seals through a real
//! MQTT broker (the embedded one, or `MINEWATCH_TEST_MQTT`): power samples
//! and seal events published on `mines/{mine}/power` and `mines/{mine}/seal`
//! raise `suspected_illegal_production`, `overmanning`, `seal_alert` and a
//! power feed's `point_offline`, with duty tasks; bad records are refused
//! with their reasons while the good ones around them still count.

mod common;

use std::time::Duration;

use common::{Publisher, eventually, now_ms, start, test_province};
use minewatch::config::Config;
use minewatch::model::MineStatus;
use minewatch::simulators::province::{mine_code, point_code, with_feeds};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const MINUTE: i64 = 60_000;

/// Three mines with meters and seals: 0 producing, 1 stopped, 2 producing
/// with a 1 s meter and 1 s heartbeats (for silence). Mines 0 and 1 send
/// rarely enough that no silence interferes within the test.
fn config() -> Config {
    let mut c = with_feeds(test_province(3, 4, 30.0));
    c.mines[1].status = MineStatus::Stopped;
    for (i, m) in c.mines.iter_mut().enumerate() {
        let period = if i == 2 { 1.0 } else { 600.0 };
        if let Some(p) = m.power.as_mut() {
            p.polling_secs = Some(period);
        }
        if let Some(s) = m.seal.as_mut() {
            s.heartbeat_secs = Some(period);
        }
    }
    c
}

fn topic(prefix: &str, mine: &str, stream: &str) -> String {
    format!("{prefix}mines/{mine}/{stream}")
}

fn rule_reason(a: &Value) -> String {
    a["rule"]
        .as_str()
        .and_then(|r| r.split(':').next())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_and_seals_raise_their_alerts_and_bad_records_are_refused() {
    let h = start(config(), "activity").await;
    let publisher = Publisher::connect("activity-pub").await;
    let (producing, stopped, quick) = (mine_code(0), mine_code(1), mine_code(2));
    let now = now_ms();
    let start = now - 70 * MINUTE;

    // The stopped mine (maintenance load 800 kW) hoists coal for the last
    // 40 minutes: one sample a minute, in event time.
    let samples: Vec<Value> = (0..70)
        .map(|k| {
            let working = k >= 30;
            let hoist = if working { 600.0 } else { 12.0 };
            let face = if working { 450.0 } else { 0.0 };
            json!({"ts": start + k * MINUTE, "total_kw": 900.0 + hoist + face,
                   "circuits": {"hoist": hoist, "face": face, "ventilation": 440, "drainage": 300}})
        })
        .collect();
    publisher
        .raw(
            &topic(&h.prefix, &stopped, "power"),
            json!({ "samples": samples }).to_string(),
        )
        .await;
    // Its seals see a shift of 40 go down 20 minutes ago; the cameras beat.
    let mut events = vec![
        json!({"ts": now - 20 * MINUTE, "camera": "main-shaft", "event": "people_in", "count": 40}),
        // Bad records beside the good ones.
        json!({"ts": now - 19 * MINUTE, "camera": "roof-cam", "event": "heartbeat"}),
        json!({"ts": now - 19 * MINUTE, "camera": "aux-shaft", "event": "people_out", "count": -3}),
        json!({"ts": now - 19 * MINUTE, "camera": "aux-shaft", "event": "teleport"}),
    ];
    for k in 0..=20 {
        events.push(
            json!({"ts": now - (20 - k) * MINUTE, "camera": "vent-shaft",
                           "event": "heartbeat", "frame": format!("f{k}")}),
        );
    }
    publisher
        .raw(
            &topic(&h.prefix, &stopped, "seal"),
            json!({ "events": events }).to_string(),
        )
        .await;
    // The producing mine (approved 120) has 150 underground for 15 minutes,
    // and its aux-shaft camera has shown a frozen picture for 5.
    let mut events = vec![
        json!({"ts": now - 15 * MINUTE, "camera": "main-shaft", "event": "people_in", "count": 150}),
        json!({"ts": now - 5 * MINUTE, "camera": "aux-shaft", "event": "fault", "fault": "frozen"}),
    ];
    for k in 0..=15 {
        events.push(
            json!({"ts": now - (15 - k) * MINUTE, "camera": "dispatch", "event": "heartbeat"}),
        );
    }
    publisher
        .raw(
            &topic(&h.prefix, &producing, "seal"),
            json!({ "events": events }).to_string(),
        )
        .await;
    // Messages that are refused whole.
    publisher
        .raw(&topic(&h.prefix, &producing, "power"), "{not json")
        .await;
    publisher
        .raw(
            &topic(&h.prefix, "140121999999", "seal"),
            json!({"events": [{"ts": now, "camera": "x", "event": "heartbeat"}]}).to_string(),
        )
        .await;
    // The quick mine's meter reports once, then falls silent, while its
    // monitoring system goes on reporting (a silent feed of a mine that is
    // itself silent is the mine's outage, not the feed's).
    publisher
        .raw(
            &topic(&h.prefix, &quick, "power"),
            json!({"ts": now, "total_kw": 3000.0}).to_string(),
        )
        .await;
    let monitoring = {
        let publisher = Publisher::connect("activity-monitoring").await;
        let topic = h.topic(&quick);
        let point = point_code(&quick, 0);
        tokio::spawn(async move {
            loop {
                publisher.batch(&topic, now_ms(), &[(&point, 0.3, 0)]).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    eventually(WAIT, "each kind is raised", || async {
        let kinds: Vec<String> = h
            .alerts("limit=100")
            .await
            .iter()
            .map(|a| a["kind"].as_str().unwrap_or("").to_string())
            .collect();
        [
            "suspected_illegal_production",
            "overmanning",
            "seal_alert",
            "point_offline",
        ]
        .iter()
        .all(|k| kinds.iter().any(|x| x == k))
    })
    .await;
    monitoring.abort();

    let illegal = h.alerts("kind=suspected_illegal_production").await;
    assert_eq!(illegal.len(), 1, "one alert for the mine: {illegal:?}");
    let a = &illegal[0];
    assert_eq!(a["mine"], json!(stopped));
    assert!(a["point"].is_null(), "a mine-level alert: {a}");
    assert_eq!(a["severity"], "major");
    assert!(
        ["production_load", "power_above_baseline", "seal_people"]
            .contains(&rule_reason(a).as_str()),
        "{a}"
    );
    let over = h.alerts("kind=overmanning").await;
    assert_eq!(over.len(), 1, "{over:?}");
    assert_eq!(over[0]["mine"], json!(producing));
    assert_eq!(over[0]["value"], json!(150.0));
    assert_eq!(over[0]["threshold"], json!(120.0));
    let seal = h.alerts("kind=seal_alert").await;
    assert!(
        seal.iter().any(
            |a| a["point"] == json!(format!("{producing}:seal:aux-shaft"))
                && rule_reason(a) == "camera_frozen"
        ),
        "{seal:?}"
    );
    let silent = h.alerts("kind=point_offline").await;
    assert!(
        silent
            .iter()
            .any(|a| a["point"] == json!(format!("{quick}:power"))
                && rule_reason(a) == "power_silent"),
        "{silent:?}"
    );
    // The quick mine's cameras never sent anything: silent too.
    assert!(
        seal.iter()
            .chain(h.alerts("kind=seal_alert").await.iter())
            .any(|a| a["mine"] == json!(quick)),
        "{seal:?}"
    );

    // Suspected illegal production and overmanning are duty tasks.
    let tasks = h.get("/api/tasks").await;
    let task_alerts: Vec<&str> = tasks["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["alert_id"].as_str())
        .collect();
    assert!(
        task_alerts.contains(&a["id"].as_str().unwrap_or("-")),
        "{tasks}"
    );

    // Refusals, by reason.
    for (reason, n) in [
        ("unknown_camera", 1.0),
        ("invalid_value", 1.0),
        ("unknown_event", 1.0),
        ("malformed_json", 1.0),
        ("unknown_mine", 1.0),
    ] {
        let got = h
            .metric(&format!(
                "minewatch_records_rejected_total{{reason=\"{reason}\"}}"
            ))
            .await;
        assert_eq!(got, n, "{reason}");
    }
    let accepted = h
        .metric("minewatch_readings_accepted_total{source=\"mqtt\"}")
        .await;
    assert!(
        accepted >= 70.0 + 22.0 + 18.0,
        "the good records count: {accepted}"
    );
    h.stop().await;
}

/// A regulator's 停产 order declared through the API is in force at once: a
/// mine producing by config, declared stopped, is then judged as stopped
/// (its hoisting is `suspected_illegal_production`); the declaration is
/// stored, listed, and still stands after a restart; another county's
/// regulator cannot see or change it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mine_declared_stopped_at_run_time_is_judged_as_stopped() {
    let mut c = config();
    c.users.push(minewatch::config::auth::UserConfig {
        name: "county-140181".into(),
        role: "county_regulator".into(),
        jurisdiction: Some("140181".into()),
        password_hash: None,
    });
    let h = start(c, "declare").await;
    let mine = mine_code(0);
    assert_eq!(mine_status(&h, &mine).await, "producing");
    let url = format!("{}/api/mines/{mine}/status", h.base);
    let put = |body: Value| {
        let (http, url) = (h.http.clone(), url.clone());
        async move {
            let r = http.put(url).json(&body).send().await.expect("http");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Refused with reasons.
    let (status, body) = put(json!({"status": "paused", "reason": "x"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = put(json!({"status": "stopped", "reason": " "})).await;
    assert_eq!(status, 422, "{body}");
    // Declared.
    let (status, body) =
        put(json!({"status": "stopped", "reason": "县局停产整顿通知 (2026-12-01)"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous"], "producing");
    assert_eq!(body["declaration"]["status"], "stopped");
    assert_eq!(mine_status(&h, &mine).await, "stopped");

    // It hoists for 40 minutes: judged as a stopped mine.
    let publisher = Publisher::connect("declare-pub").await;
    let start_ts = now_ms() - 70 * MINUTE;
    let samples: Vec<Value> = (0..70)
        .map(|k| {
            let hoist = if k >= 30 { 600.0 } else { 12.0 };
            json!({"ts": start_ts + k * MINUTE, "total_kw": 900.0 + hoist,
                   "circuits": {"hoist": hoist, "ventilation": 440, "drainage": 300}})
        })
        .collect();
    publisher
        .raw(
            &topic(&h.prefix, &mine, "power"),
            json!({ "samples": samples }).to_string(),
        )
        .await;
    eventually(
        WAIT,
        "the declared-stopped mine's hoisting is caught",
        || async {
            h.alerts("kind=suspected_illegal_production")
                .await
                .iter()
                .any(|a| a["mine"] == json!(mine))
        },
    )
    .await;

    // Listed, and standing after a restart.
    let history = h.get(&format!("/api/mines/{mine}/status")).await;
    assert_eq!(history["count"], 1, "{history}");
    assert_eq!(
        history["declarations"][0]["reason"],
        "县局停产整顿通知 (2026-12-01)"
    );
    assert_eq!(history["declarations"][0]["by"], "harness");
    let h = common::resume(h.stop().await).await;
    assert_eq!(mine_status(&h, &mine).await, "stopped");

    // Another county's regulator: as if the mine did not exist.
    let url = format!("{}/api/mines/{mine}/status", h.base);
    let other = common::client_with_token(&common::api_token(&h.daemon, "county-140181").await);
    for r in [
        other.get(&url).send().await.expect("http"),
        other
            .put(&url)
            .json(&json!({"status": "producing", "reason": "x"}))
            .send()
            .await
            .expect("http"),
    ] {
        assert_eq!(r.status().as_u16(), 404);
    }
    assert_eq!(mine_status(&h, &mine).await, "stopped");
    h.stop().await;
}

async fn mine_status(h: &common::Harness, mine: &str) -> String {
    h.get("/api/mines").await["mines"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["code"] == json!(mine)).cloned())
        .and_then(|m| m["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}
