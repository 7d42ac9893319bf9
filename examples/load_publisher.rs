//! Load publisher for `benches/cpu/cpu_per_reading.sh`: reads a daemon's
//! config (as `minewatch simulate --write-config` writes it), pre-encodes
//! JSON batches of 500 readings of one mine each (one in `inject_every`
//! takes the mine's first face methane point to 1.2 %), publishes them at
//! QoS 1 as fast as the broker takes them, and counts the `raised`
//! `overlimit` alerts that come back on `alerts/#`.
//!
//! `cargo run --release --example load_publisher -- CONFIG PORT MESSAGES INJECT_EVERY`
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The part of the config this reads.
#[derive(serde::Deserialize)]
struct Cfg {
    mines: Vec<Mine>,
}
#[derive(serde::Deserialize)]
struct Mine {
    code: String,
    points: Vec<Point>,
}
#[derive(serde::Deserialize)]
struct Point {
    code: String,
    sensor: String,
    location: String,
}

const PER: usize = 500;
const POLL: i64 = 1000;

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let cfg: Cfg = toml::from_str(&std::fs::read_to_string(&a[1]).unwrap()).unwrap();
    let port: u16 = a[2].parse().unwrap();
    let count: usize = a[3].parse().unwrap();
    let inject_every: usize = a[4].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mines = cfg.mines.len();
    let rounds_total = (count * PER / mines) as i64 / cfg.mines[0].points.len() as i64 + 2;
    let start = now - rounds_total * POLL - 60_000;
    let mut cursor = vec![(0usize, 0i64); mines];
    let mut injected = 0u64;
    let mut msgs = Vec::with_capacity(count);
    let t0 = Instant::now();
    for i in 0..count {
        let m = i % mines;
        let pts = &cfg.mines[m].points;
        let n = pts.len();
        let inject = i % inject_every == inject_every - 1;
        // face methane point: sensor 0001 at face_t1
        let face = pts
            .iter()
            .position(|p| p.sensor == "0001" && p.location == "face_t1");
        let (mut pos, mut round) = cursor[m];
        let mut last_face = None;
        if let (true, Some(f)) = (inject, face) {
            last_face = (0..PER).rev().find(|k| (pos + k) % n == f);
        }
        if last_face.is_some() {
            injected += 1;
        }
        let mut out = String::with_capacity(PER * 80);
        let _ = write!(out, "{{\"ts\":{},\"readings\":[", start + round * POLL);
        for k in 0..PER {
            let ts = start + round * POLL;
            let methane = pts[pos].sensor == "0001";
            let w = ((m * 31 + pos * 7 + round as usize * 13) % 100) as f64 / 100.0;
            let v = if Some(k) == last_face {
                1.2
            } else if methane {
                0.2 + 0.2 * w
            } else {
                2.0 + 4.0 * w
            };
            if k > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"point\":\"{}\",\"value\":{v:.3},\"status\":0,\"ts\":{ts}}}",
                pts[pos].code
            );
            pos += 1;
            if pos == n {
                pos = 0;
                round += 1;
            }
        }
        out.push_str("]}");
        cursor[m] = (pos, round);
        msgs.push((
            format!("mines/{}/telemetry", cfg.mines[m].code),
            out.into_bytes(),
        ));
    }
    eprintln!(
        "encoded {count} messages in {:.2}s, {injected} crossings",
        t0.elapsed().as_secs_f64()
    );

    let alerts = Arc::new(AtomicU64::new(0));
    {
        let mut o = MqttOptions::new(
            format!("cpu-load-alerts-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (c, mut ev) = AsyncClient::new(o, 64);
        c.subscribe("alerts/#", QoS::AtLeastOnce).await.unwrap();
        let alerts = alerts.clone();
        tokio::spawn(async move {
            let _c = c;
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v = serde_json::from_slice::<serde_json::Value>(&p.payload)
                            .unwrap_or_default();
                        if v["event"] == "raised" && v["alert"]["kind"] == "overlimit" {
                            alerts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    let pubacks = Arc::new(AtomicU64::new(0));
    let mut o = MqttOptions::new(
        format!("cpu-load-pub-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    o.set_max_packet_size(4 << 20, 4 << 20);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(o, 256);
    {
        let pubacks = pubacks.clone();
        tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        pubacks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("pub: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    for (topic, payload) in msgs {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    while pubacks.load(Ordering::Relaxed) < count as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "published {count} msgs ({} readings) in {secs:.2}s = {:.0} readings/s (broker acks)",
        count * PER,
        (count * PER) as f64 / secs
    );
    // wait for alerts to trickle in (the caller waits for the daemon first)
    let wait: u64 = std::env::var("ALERT_WAIT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let deadline = Instant::now() + Duration::from_secs(wait);
    while Instant::now() < deadline && alerts.load(Ordering::Relaxed) < injected {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "crossings {injected}, raised overlimit alerts {}",
        alerts.load(Ordering::Relaxed)
    );
}
