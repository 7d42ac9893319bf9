//! End-to-end tests of the live pipeline through a real MQTT broker: the
//! embedded rumqttd by default, or the broker named by
//! `MINEWATCH_TEST_MQTT=host:port` (`.ci/run` points it at Mosquitto).
//! Readings go in as JSON batches; alerts come out on the API, the SSE feed
//! and MQTT; bad input is counted and kept while good input still alerts.

mod common;

use std::time::Duration;

use common::{Publisher, eventually, now_ms, start, subscribe, test_province};
use minewatch::model::rfc3339;
use minewatch::simulators::province::{mine_code, point_code};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// The JSON `data:` payloads of an SSE text.
fn sse_data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evacuation_reaches_the_api_the_sse_feed_and_mqtt() {
    // Polling 30 s: no offline alert can interfere within the test.
    let h = start(test_province(3, 20, 30.0), "evac").await;
    let (_sub, mut mqtt_alerts) = subscribe("evac-sub", &format!("{}alerts/#", h.prefix)).await;
    let mut sse = h
        .http
        .get(format!("{}/api/alerts/stream", h.base))
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.headers()["content-type"], "text/event-stream");

    let publisher = Publisher::connect("evac-pub").await;
    let mine = mine_code(0);
    let point = point_code(&mine, 0); // face T1 methane: alarm 1.0, power-off 1.5
    let co = point_code(&mine, 4); // CO at the face return
    let t0 = now_ms();
    let methane = [0.3, 0.8, 1.2, 1.4, 1.7, 1.6, 1.1, 0.6];
    for (i, v) in methane.iter().enumerate() {
        let ts = t0 + i as i64 * 1000;
        publisher
            .batch(&h.topic(&mine), ts, &[(&point, *v, 0), (&co, 3.0, 0)])
            .await;
    }

    eventually(
        WAIT,
        "the evacuation alert is raised and resolved",
        || async {
            let a = h.alerts("kind=evacuation").await;
            a.len() == 1 && !a[0]["resolved_at"].is_null()
        },
    )
    .await;
    let evac = &h.alerts("kind=evacuation").await[0];
    assert_eq!(evac["mine"], json!(mine));
    assert_eq!(evac["county"], json!("140121"));
    assert_eq!(evac["point"], json!(point));
    assert_eq!(evac["severity"], json!("critical"));
    assert_eq!(evac["value"], json!(1.7));
    assert_eq!(evac["peak"], json!(1.7));
    assert_eq!(evac["threshold"], json!(1.5));
    assert_eq!(evac["started_at"], json!(rfc3339(t0 + 4000)));
    assert_eq!(evac["resolved_at"], json!(rfc3339(t0 + 7000)));
    let over = h.alerts("kind=overlimit").await;
    assert_eq!(over.len(), 1, "one alert per episode, not one per reading");
    assert_eq!(over[0]["value"], json!(1.2));
    assert_eq!(over[0]["peak"], json!(1.7));
    assert_eq!(over[0]["started_at"], json!(rfc3339(t0 + 2000)));
    // The fixture's 0.5 %/s steps are faster than a sensor with a 20 s T90
    // can move: a `data_anomaly` (rate) may stay active; nothing else may.
    let active = h.alerts("active=true").await;
    assert!(
        active.iter().all(|a| a["kind"] == "data_anomaly"),
        "{active:?}"
    );
    assert!(h.alerts("county=140181").await.is_empty());
    assert!(h.alerts(&format!("mine={mine}&kind=overlimit")).await.len() == 1);

    // The SSE feed carried the raise and the resolution.
    let mut text = String::new();
    let _ = tokio::time::timeout(WAIT, async {
        while let Ok(Some(chunk)) = sse.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            let events = sse_data(&text);
            if events
                .iter()
                .any(|e| e["event"] == "resolved" && e["alert"]["kind"] == "evacuation")
            {
                break;
            }
        }
    })
    .await;
    let events = sse_data(&text);
    assert!(text.contains("event: alert"), "{text}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "raised" && e["alert"]["kind"] == "evacuation"),
        "{text}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "resolved" && e["alert"]["kind"] == "evacuation"),
        "{text}"
    );

    // MQTT out: alerts/{county}/{mine}, raised then resolved.
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        while let Some((topic, payload)) = mqtt_alerts.recv().await {
            let v: Value = serde_json::from_slice(&payload).expect("alert json");
            seen.push((topic, v["event"].clone(), v["alert"]["kind"].clone()));
            if seen.iter().filter(|s| s.2 == "evacuation").count() == 2 {
                break;
            }
        }
    })
    .await;
    let topic = format!("{}alerts/140121/{mine}", h.prefix);
    assert!(
        seen.contains(&(topic.clone(), json!("raised"), json!("evacuation"))),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(topic, json!("resolved"), json!("evacuation"))),
        "{seen:?}"
    );
    assert!(
        h.metric("minewatch_alerts_raised_total{kind=\"evacuation\"}")
            .await
            >= 1.0
    );
    assert_eq!(
        h.metric("minewatch_readings_accepted_total{source=\"mqtt\"}")
            .await,
        16.0
    );
    h.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_and_kept_while_good_input_still_alerts() {
    let h = start(test_province(3, 20, 30.0), "bad").await;
    let publisher = Publisher::connect("bad-pub").await;
    let (m0, m1, m2) = (mine_code(0), mine_code(1), mine_code(2));
    let (p0, p1, p2) = (point_code(&m0, 0), point_code(&m1, 0), point_code(&m2, 0));
    let t0 = now_ms();
    let topic = h.topic(&m0);
    let reading = |point: &str, value: &str, ts: i64| {
        format!(r#"{{"ts":{ts},"readings":[{{"point":"{point}","value":{value}}}]}}"#)
    };
    publisher.raw(&topic, "not json at all").await;
    publisher.raw(&topic, reading(&p0, "NaN", t0)).await;
    publisher.raw(&topic, reading(&p0, "\"0.5\"", t0)).await;
    publisher
        .raw(&topic, reading("NO-SUCH-POINT", "0.5", t0))
        .await;
    publisher.raw(&topic, reading(&p1, "0.5", t0)).await; // another mine's point
    publisher
        .raw(&topic, reading(&p0, "0.5", t0 + 600_000))
        .await;
    publisher
        .raw(&topic, reading(&p0, "0.5", t0 - 30 * 86_400_000))
        .await;
    publisher.raw(&topic, r#"{"ts":1,"readings":[]}"#).await;
    let huge: Vec<Value> = (0..10_001)
        .map(|_| json!({"point": p0, "value": 0.2}))
        .collect();
    publisher
        .raw(&topic, json!({"ts": t0, "readings": huge}).to_string())
        .await;
    publisher
        .raw(&h.topic("999999999999"), reading(&p0, "0.5", t0))
        .await;
    // Good data in its own message and beside a bad reading in the same one.
    publisher.batch(&h.topic(&m1), t0, &[(&p1, 1.3, 0)]).await;
    publisher
        .raw(
            &h.topic(&m2),
            format!(
                r#"{{"ts":{t0},"readings":[{{"point":"{p2}","value":NaN}},{{"point":"{p2}","value":2.0}}]}}"#
            ),
        )
        .await;

    eventually(
        WAIT,
        "both good over-limit readings raise alerts",
        || async { h.alerts("kind=overlimit").await.len() == 2 },
    )
    .await;
    let expected = [
        "malformed_json",
        "non_finite_value",
        "wrong_type",
        "unknown_point",
        "point_mine_mismatch",
        "future_timestamp",
        "past_timestamp",
        "empty_batch",
        "batch_too_large",
        "unknown_mine",
    ];
    eventually(WAIT, "every reject is counted", || async {
        let mut all = true;
        for reason in expected {
            let n = h
                .metric(&format!(
                    "minewatch_records_rejected_total{{reason=\"{reason}\"}}"
                ))
                .await;
            all &= n >= 1.0;
        }
        all
    })
    .await;
    assert_eq!(
        h.metric("minewatch_records_rejected_total{reason=\"non_finite_value\"}")
            .await,
        2.0
    );
    let rejects = h.get("/api/rejects?limit=100").await;
    let reasons: Vec<&str> = rejects["rejects"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    for reason in expected {
        assert!(
            reasons.contains(&reason),
            "{reason} missing from {reasons:?}"
        );
    }
    let future = rejects["rejects"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["reason"] == "future_timestamp")
        .expect("future reject");
    assert!(future["detail"].as_str().unwrap_or("").contains("clock"));
    assert!(future["record"].as_str().unwrap_or("").contains(&p0));
    let file = std::fs::read_to_string(h.config.daemon.data_dir.join("deadletter.jsonl"))
        .expect("dead-letter file");
    assert_eq!(file.lines().count(), 11);
    // The daemon is still up, and the good readings were accepted.
    assert_eq!(h.get("/healthz").await["status"], json!("ok"));
    assert_eq!(
        h.metric("minewatch_readings_accepted_total{source=\"mqtt\"}")
            .await,
        2.0
    );
    let bad_query = h
        .http
        .get(format!("{}/api/alerts?kind=gas", h.base))
        .send()
        .await
        .expect("http");
    assert_eq!(bad_query.status(), 400);
    h.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_point_and_a_silent_mine_go_offline_and_come_back() {
    // Polling 1 s: a point is offline after 3 s, a mine after 3 s.
    let h = start(test_province(3, 8, 1.0), "offline").await;
    let publisher = Publisher::connect("offline-pub").await;
    let mines: Vec<String> = (0..3).map(mine_code).collect();
    let points: Vec<Vec<String>> = mines
        .iter()
        .map(|m| (0..8).map(|j| point_code(m, j)).collect())
        .collect();
    let send = |mine: usize, skip: Option<usize>| {
        let readings: Vec<(&str, f64, u16)> = points[mine]
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != skip)
            .map(|(_, p)| (p.as_str(), 0.2, 0))
            .collect();
        let topic = h.topic(&mines[mine]);
        let publisher = &publisher;
        async move { publisher.batch(&topic, now_ms(), &readings).await }
    };
    // Mine 0 never sends point 5; mine 1 falls silent; mine 2 is healthy.
    let mut waited = 0;
    while waited < 120 {
        send(0, Some(5)).await;
        send(2, None).await;
        let kinds: Vec<Value> = h
            .alerts("active=true")
            .await
            .iter()
            .map(|a| json!([a["kind"], a["mine"], a["point"]]))
            .collect();
        if kinds.contains(&json!(["point_offline", mines[0], points[0][5]]))
            && kinds.contains(&json!(["mine_offline", mines[1], null]))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        waited += 1;
    }
    let active = h.alerts("active=true").await;
    let summary: Vec<Value> = active
        .iter()
        .map(|a| json!([a["kind"], a["mine"], a["point"]]))
        .collect();
    assert_eq!(summary.len(), 2, "{summary:?}");
    assert!(summary.contains(&json!(["point_offline", mines[0], points[0][5]])));
    assert!(summary.contains(&json!(["mine_offline", mines[1], null])));
    assert!(h.alerts(&format!("mine={}", mines[2])).await.is_empty());
    let mine_alert = active
        .iter()
        .find(|a| a["kind"] == "mine_offline")
        .expect("mine alert");
    assert!(!mine_alert["last_seen"].is_null());

    // Data returns: both resolve.
    eventually(WAIT, "both offline alerts resolve", || async {
        send(0, None).await;
        send(1, None).await;
        send(2, None).await;
        h.alerts("active=true").await.is_empty()
    })
    .await;
    assert_eq!(h.alerts("kind=mine_offline").await.len(), 1);
    assert_eq!(
        h.alerts("kind=point_offline").await.len(),
        1,
        "the silent mine's points are covered by its mine alert"
    );
    h.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_the_daemon_is_down_are_processed_after_restart() {
    let h = start(test_province(2, 8, 30.0), "restart").await;
    let mine = mine_code(0);
    let point = point_code(&mine, 0);
    let topic = h.topic(&mine);
    let stopped = h.stop().await;
    // The broker holds QoS 1 messages for the persistent session.
    let publisher = Publisher::connect("restart-pub").await;
    let t0 = now_ms();
    publisher.batch(&topic, t0, &[(&point, 1.6, 0)]).await;
    publisher
        .batch(&topic, t0 + 1000, &[(&point, 0.3, 0)])
        .await;
    publisher.wait_acked(2).await;
    let h = common::resume(stopped).await;
    eventually(WAIT, "the queued over-limit is processed", || async {
        let a = h.alerts("kind=evacuation").await;
        a.len() == 1 && !a[0]["resolved_at"].is_null()
    })
    .await;
    h.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_and_ingest_goes_on() {
    // A QoS 1 message well over `mqtt.max_payload_bytes` + 64 KiB (the
    // client's packet limit before) and within what the broker delivers
    // (the embedded broker's limit is 4 MiB), then the same at QoS 0.
    let mut config = test_province(2, 8, 30.0);
    config.mqtt.max_payload_bytes = 4096;
    let h = start(config, "oversize").await;
    let publisher = Publisher::connect("oversize-pub").await;
    let mine = mine_code(0);
    let point = point_code(&mine, 0);
    let topic = h.topic(&mine);
    let big = |n: usize| format!(r#"{{"ts":1,"readings":[],"pad":"{}"}}"#, "x".repeat(n));
    let too_large = "minewatch_records_rejected_total{reason=\"payload_too_large\"}";
    let accepted = "minewatch_readings_accepted_total{source=\"mqtt\"}";
    publisher.raw(&topic, big(200_000)).await;
    let t0 = now_ms();
    publisher.batch(&topic, t0, &[(&point, 0.3, 0)]).await;
    eventually(
        WAIT,
        "the oversized QoS 1 message is refused and the next one accepted",
        || async { h.metric(too_large).await == 1.0 && h.metric(accepted).await == 1.0 },
    )
    .await;
    publisher
        .client
        .publish(&topic, rumqttc::QoS::AtMostOnce, false, big(300_000))
        .await
        .expect("publish");
    publisher
        .batch(&topic, t0 + 1000, &[(&point, 0.3, 0)])
        .await;
    eventually(
        WAIT,
        "the oversized QoS 0 message is counted and the next one accepted",
        || async { h.metric(too_large).await == 2.0 && h.metric(accepted).await == 2.0 },
    )
    .await;
    assert_eq!(
        h.metric("minewatch_mqtt_connection_errors_total").await,
        0.0
    );
    let rejects = h.get("/api/rejects?limit=10").await;
    let refused: Vec<&Value> = rejects["rejects"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|r| r["reason"] == "payload_too_large")
        .collect();
    assert_eq!(refused.len(), 2, "{rejects}");
    assert!(
        refused[1]["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("200"),
        "{rejects}"
    );

    // The refused message was acknowledged: a new session of the same
    // client gets the next message, not the old one again (the broker
    // delivers in order, so a redelivery would come first).
    let stopped = h.stop().await;
    let h = common::resume(stopped).await;
    publisher
        .batch(&topic, t0 + 2000, &[(&point, 0.3, 0)])
        .await;
    eventually(WAIT, "the next message is accepted", || async {
        h.metric(accepted).await == 1.0
    })
    .await;
    assert_eq!(h.metric(too_large).await, 0.0, "redelivered");
    h.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_degraded_with_its_reason_while_no_reading_comes() {
    let mut config = test_province(2, 8, 30.0);
    config.health.no_readings_secs = 1;
    let h = start(config, "ready").await;
    let ready = || async {
        let r = h
            .http
            .get(format!("{}/readyz", h.base))
            .send()
            .await
            .expect("http");
        let code = r.status().as_u16();
        (code, r.json::<Value>().await.expect("json"))
    };
    eventually(WAIT, "readiness notices the silence", || async {
        ready().await.0 == 503
    })
    .await;
    let (_, body) = ready().await;
    assert_eq!(body["status"], json!("degraded"), "{body}");
    assert_eq!(body["reasons"][0]["reason"], json!("no_readings"), "{body}");
    // Liveness stays 200 and carries the same verdict.
    let live = anonymous_get(&h, "/healthz").await;
    assert_eq!(live.0, 200);
    assert_eq!(live.1["status"], json!("degraded"), "{}", live.1);
    assert_eq!(live.1["reasons"][0]["reason"], json!("no_readings"));

    // A reading: ready again.
    let publisher = Publisher::connect("ready-pub").await;
    let mine = mine_code(0);
    let point = point_code(&mine, 0);
    publisher
        .batch(&h.topic(&mine), now_ms(), &[(&point, 0.3, 0)])
        .await;
    eventually(WAIT, "readiness is back", || async {
        let (code, body) = ready().await;
        code == 200 && body["status"] == json!("ok")
    })
    .await;
    h.daemon.shutdown().await;
}

/// GET without credentials: (status, JSON body).
async fn anonymous_get(h: &common::Harness, path: &str) -> (u16, Value) {
    let r = common::anonymous_client()
        .get(format!("{}{path}", h.base))
        .send()
        .await
        .expect("http");
    (r.status().as_u16(), r.json().await.expect("json"))
}
