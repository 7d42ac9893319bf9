//! The peer benchmark's load: one MQTT publisher that every system under
//! test (minewatch, Node-RED, a paho-mqtt script) receives the same
//! traffic from. Run by `benches/peers/run.py`; built with
//! `cargo build --release --example peer_publisher`.
//!
//! `peer_publisher prepare DIR --mines M --points P` writes what the
//! systems need to know about the province: `DIR/minewatch.toml` (the
//! mines and points, for minewatch) and `DIR/points.json` (point code →
//! `[alarm, restore]` of every gas point, for the peers, with the levels
//! minewatch applies).
//!
//! `peer_publisher send --port N --mines M --points P --messages K` sends
//! K pre-encoded JSON batches (`{"ts", "readings": [{"point", "value",
//! "status", "ts"}]}`, `--per-message` readings, one mine per message,
//! mines in turn) at QoS 1 on `mines/{mine}/telemetry`, event time one
//! second a round of a mine's points and ending before now. One message in
//! `--cross-every` takes one of its mine's face (T1) methane points to
//! 1.2 % (alarm 1.0 %) at its last reading in the message; its next reading
//! is back at 0.2–0.4 %, so each such crossing must raise exactly one
//! over-limit alert. The last message of every mine carries a crossing too:
//! its alert tells the harness that the system has read the mine to the end.
//! It prints the crossings per point as a JSON line before the first
//! publish (`{"plan": {...}}`), and one more at the end: messages,
//! readings, crossings, and the publish start/end and last PUBACK times
//! (Unix ms).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use minewatch::config::Config;
use minewatch::config::registry::effective_limits;
use minewatch::model::{LocationClass, SensorType};
use minewatch::simulators::{ProvinceSpec, province, to_toml};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

/// The one over-limit value; the face (T1) alarm line is 1.0 %.
const CROSSING: f64 = 1.2;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `--name value` from the arguments, parsed, or the default.
fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> anyhow::Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            let v = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| anyhow::anyhow!("{name}: cannot read {v:?}"))
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("prepare") => prepare(&args),
        Some("send") => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("tokio runtime")
            .and_then(|rt| rt.block_on(send(&args))),
        _ => Err(anyhow::anyhow!(
            "usage: peer_publisher prepare DIR [--mines M --points P] | \
             send --port N [--mines M --points P --messages K --per-message R --cross-every C]"
        )),
    };
    if let Err(e) = result {
        eprintln!("peer_publisher: {e:#}");
        std::process::exit(1);
    }
}

fn the_province(args: &[String]) -> anyhow::Result<Config> {
    let mines = arg(args, "--mines", 20usize)?;
    let points = arg(args, "--points", 32usize)?;
    if mines == 0 || points == 0 {
        bail!("--mines and --points must be at least 1");
    }
    Ok(province(ProvinceSpec {
        mines,
        points,
        polling_secs: 1.0,
    }))
}

fn prepare(args: &[String]) -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(args.get(1).context("prepare DIR")?);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = the_province(args)?;
    std::fs::write(dir.join("minewatch.toml"), to_toml(&config, ""))?;
    let mut levels = BTreeMap::new();
    for m in &config.mines {
        for p in &m.points {
            let (Some(sensor), Some(location)) = (
                SensorType::parse(&p.sensor),
                LocationClass::parse(&p.location),
            ) else {
                continue;
            };
            if let Some(l) = effective_limits(
                &config.rules,
                sensor,
                location,
                (p.alarm, p.power_off, p.restore),
                p.range,
            ) {
                levels.insert(p.code.clone(), [l.alarm, l.restore]);
            }
        }
    }
    std::fs::write(dir.join("points.json"), serde_json::to_vec(&levels)?)?;
    Ok(())
}

/// The traffic of one run, encoded before the first publish.
struct Traffic {
    /// (mine code, payload) in sending order.
    messages: Vec<(String, Vec<u8>)>,
    readings: usize,
    /// Crossings per point code.
    crossings: BTreeMap<String, usize>,
}

fn traffic(config: &Config, messages: usize, per_message: usize, cross_every: usize) -> Traffic {
    let mines = config.mines.len();
    let is = |p: &minewatch::config::PointConfig, s: SensorType, l: LocationClass| {
        SensorType::parse(&p.sensor) == Some(s) && LocationClass::parse(&p.location) == Some(l)
    };
    let faces: Vec<Vec<usize>> = config
        .mines
        .iter()
        .map(|m| {
            (0..m.points.len())
                .filter(|&j| is(&m.points[j], SensorType::Methane, LocationClass::FaceT1))
                .collect()
        })
        .collect();
    let methane: Vec<Vec<bool>> = config
        .mines
        .iter()
        .map(|m| {
            m.points
                .iter()
                .map(|p| SensorType::parse(&p.sensor) == Some(SensorType::Methane))
                .collect()
        })
        .collect();
    // Rounds each mine goes through, so that event time ends before now.
    let per_mine = messages.div_ceil(mines);
    let points = config.mines[0].points.len();
    let rounds = (per_mine * per_message).div_ceil(points) as i64 + 1;
    let start_ms = now_ms() - (rounds + 60) * 1000;
    let mut cursor = vec![(0usize, 0i64); mines];
    let mut faces_used = vec![0usize; mines];
    let mut out = Traffic {
        messages: Vec::with_capacity(messages),
        readings: 0,
        crossings: BTreeMap::new(),
    };
    for i in 0..messages {
        let mine = i % mines;
        let last_of_mine = i + mines >= messages;
        let inject = (cross_every > 0 && i % cross_every == cross_every - 1) || last_of_mine;
        let m = &config.mines[mine];
        let n = m.points.len();
        let face = (inject && !faces[mine].is_empty()).then(|| {
            faces_used[mine] += 1;
            faces[mine][(faces_used[mine] - 1) % faces[mine].len()]
        });
        let (mut pos, mut round) = cursor[mine];
        let last_face = face.and_then(|f| (0..per_message).rev().find(|k| (pos + k) % n == f));
        let mut body = String::with_capacity(per_message * 80 + 32);
        let _ = write!(body, "{{\"ts\":{},\"readings\":[", start_ms + round * 1000);
        for k in 0..per_message {
            let value = if Some(k) == last_face {
                CROSSING
            } else {
                let wobble = ((mine * 31 + pos * 7 + round as usize * 13) % 100) as f64 / 100.0;
                if methane[mine][pos] {
                    0.2 + 0.2 * wobble
                } else {
                    2.0 + 4.0 * wobble
                }
            };
            if k > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                "{{\"point\":\"{}\",\"value\":{value:.3},\"status\":0,\"ts\":{}}}",
                m.points[pos].code,
                start_ms + round * 1000
            );
            pos += 1;
            if pos == n {
                pos = 0;
                round += 1;
            }
        }
        body.push_str("]}");
        cursor[mine] = (pos, round);
        if let (Some(f), Some(_)) = (face, last_face) {
            *out.crossings.entry(m.points[f].code.clone()).or_default() += 1;
        }
        out.readings += per_message;
        out.messages.push((m.code.clone(), body.into_bytes()));
    }
    out
}

async fn send(args: &[String]) -> anyhow::Result<()> {
    let config = the_province(args)?;
    let port = arg(args, "--port", 1883u16)?;
    let messages = arg(args, "--messages", 20_000usize)?;
    let per_message = arg(args, "--per-message", 500usize)?;
    let cross_every = arg(args, "--cross-every", 47usize)?;
    let inflight = arg(args, "--inflight", 200u16)?;
    if per_message < config.mines[0].points.len() {
        bail!("--per-message must cover every point of a mine at least once");
    }
    let t = traffic(&config, messages, per_message, cross_every);
    // The harness learns what to expect before the first publish.
    println!("{}", serde_json::json!({ "plan": t.crossings }));

    let mut o = MqttOptions::new(
        format!("peer-publisher-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    o.set_max_packet_size(64 << 20, 64 << 20);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(inflight);
    let (client, mut events) = AsyncClient::new(o, 1024);
    let total = t.messages.len();
    let sender = tokio::spawn({
        let client = client.clone();
        let msgs = t.messages;
        async move {
            for (mine, payload) in msgs {
                client
                    .publish(
                        format!("mines/{mine}/telemetry"),
                        QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .await?;
            }
            anyhow::Ok(())
        }
    });
    let (mut first, mut last_publish, mut acked) = (0i64, 0i64, 0usize);
    let mut sent = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while acked < total {
        let ev = tokio::time::timeout_at(deadline, events.poll())
            .await
            .context("no PUBACK for 10 minutes")?;
        match ev {
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                sent += 1;
                if first == 0 {
                    first = now_ms();
                }
                if sent == total {
                    last_publish = now_ms();
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => bail!("MQTT connection to 127.0.0.1:{port}: {e}"),
        }
    }
    let last_ack = now_ms();
    sender.await.context("publisher task")??;
    let _ = client.disconnect().await;
    let summary = serde_json::json!({
        "messages": total,
        "readings": t.readings,
        "crossings": t.crossings.values().sum::<usize>(),
        "per_point": t.crossings,
        "first_publish_ms": first,
        "last_publish_ms": last_publish,
        "last_puback_ms": last_ack,
    });
    println!("{summary}");
    Ok(())
}
