//! End-to-end load test: MQTT in, detectors, alerts out, in one process on
//! this machine.
//!
//! It starts the embedded broker and a daemon (200 mines × 32 points,
//! polling 5 s, default shard count = one per core), then publishes
//! pre-encoded JSON telemetry batches (500 readings per message, one mine
//! per message, per-reading event time, QoS 1) on
//! `mines/{mine}/telemetry`, in two phases:
//!
//! 1. saturation, three runs: 4 M readings each, as fast as the publisher
//!    can send them; throughput = readings sent / time from the first
//!    publish until the daemon's
//!    `minewatch_readings_accepted_total{source="mqtt"}` has grown by that
//!    count (i.e. every reading has passed the detectors);
//! 2. paced, for latency without a standing backlog: 10 s at the target
//!    rate (300 k readings/s), then 10 s at half the median saturation
//!    rate.
//!
//! Every so often (1 message in 199 in phase 1, 1 in 51 in phase 2) a
//! message takes one of its mine's face (T1) methane points (alarm 1.0 %;
//! any earlier episode there has closed) to 1.2 %; the mine's next message
//! brings it back. A second MQTT client subscribed to
//! `alerts/#` times publish → receipt of the `raised` `overlimit` alert for
//! that point (hdrhistogram). The daemon's own detector-latency and
//! alert-latency histograms (receipt → detectors done, receipt → alert
//! raised) are read per phase from its Prometheus metrics; their quantiles
//! are interpolated within buckets, so they are approximate. Per-thread CPU
//! time (from /proc) shows where the time goes.
//!
//! Run: `cargo bench --bench e2e_load` (about 40 s; stops by itself).
//! Target (issue): ≥ 300 k readings/s end to end on this 2-core machine.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram as Hdr;
use minewatch::config::Config;
use minewatch::daemon::{Daemon, DaemonOptions};
use minewatch::model::{LocationClass, SensorType};
use minewatch::simulators::{ProvinceSpec, province};
use prometheus::core::Collector;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::Notify;

const MINES: usize = 200;
const POINTS: usize = 32;
const PER_MESSAGE: usize = 500;
/// Phase 1: messages (× `PER_MESSAGE` readings) per run.
const SATURATION_MESSAGES: usize = 8_000;
/// Phase 1: runs (each on the same daemon, after the previous one drained).
const SATURATION_RUNS: usize = 3;
/// Phase 2: how long each paced run lasts; the rates are the target
/// and a fraction of the median saturation rate.
const PACED_FOR: Duration = Duration::from_secs(10);
const TARGET_RATE: f64 = 300_000.0;
const PACED_FRACTION: f64 = 0.5;
const INJECT_EVERY_SATURATION: usize = 199;
const INJECT_EVERY_PACED: usize = 51;
const POLL_MS: i64 = 5_000;
/// Longest wait, after the last phase, for alerts that had not come 2 s
/// after their phase; one still missing then fails the bench.
const LATE_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for the daemon to catch up after a phase's last publish.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    // `cargo bench` passes `--bench` (and maybe a filter): nothing to read.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(run());
    rt.shutdown_timeout(Duration::from_secs(2));
    if let Err(e) = result {
        eprintln!("e2e_load failed: {e:#}");
        std::process::exit(1);
    }
}

/// One pre-encoded message.
struct Message {
    mine: usize,
    payload: Vec<u8>,
    /// The point this message takes over the limit, if any.
    overlimit: Option<String>,
}

/// Produces telemetry batches: each mine cycles through its points, event
/// time advancing one polling period per full cycle.
struct Generator {
    codes: Vec<Vec<String>>,
    methane: Vec<Vec<bool>>,
    /// Positions of the face (T1) methane points of each mine.
    faces: Vec<Vec<usize>>,
    /// How many episodes each mine's face points have had.
    faces_used: Vec<usize>,
    /// Messages generated so far: mine = count % mines.
    count: usize,
    /// Per mine: (next point position, round).
    cursor: Vec<(usize, i64)>,
    start_ms: i64,
}

impl Generator {
    fn new(config: &Config, start_ms: i64) -> Generator {
        let kind = |sensor: &str, location: &str| {
            let s = SensorType::parse(sensor);
            let l = LocationClass::parse(location);
            (
                s == Some(SensorType::Methane),
                l == Some(LocationClass::FaceT1),
            )
        };
        let mut g = Generator {
            codes: Vec::new(),
            methane: Vec::new(),
            faces: Vec::new(),
            faces_used: vec![0; config.mines.len()],
            count: 0,
            cursor: vec![(0, 0); config.mines.len()],
            start_ms,
        };
        for m in &config.mines {
            g.codes
                .push(m.points.iter().map(|p| p.code.clone()).collect());
            g.methane.push(
                m.points
                    .iter()
                    .map(|p| kind(&p.sensor, &p.location).0)
                    .collect(),
            );
            g.faces.push(
                m.points
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| {
                        let (ch4, face) = kind(&p.sensor, &p.location);
                        ch4 && face
                    })
                    .map(|(j, _)| j)
                    .collect(),
            );
        }
        g
    }

    /// The next `count` messages, mines in turn; one in `inject_every`
    /// takes a face methane point over the limit.
    fn messages(&mut self, count: usize, inject_every: usize) -> Vec<Message> {
        (0..count)
            .map(|_| {
                let i = self.count;
                self.count += 1;
                self.next(i % self.codes.len(), i % inject_every == inject_every - 1)
            })
            .collect()
    }

    /// The next message of `mine`; with `inject`, one of its face methane
    /// points (in turn; the mine's previous message has closed any earlier
    /// episode there) goes to 1.2 % at its last reading in the message.
    fn next(&mut self, mine: usize, inject: bool) -> Message {
        let n = self.codes[mine].len();
        let faces = &self.faces[mine];
        let face = (inject && !faces.is_empty()).then(|| {
            self.faces_used[mine] += 1;
            faces[(self.faces_used[mine] - 1) % faces.len()]
        });
        let (mut pos, mut round) = self.cursor[mine];
        // The index (within this message) of the face point's last reading.
        let last_face = face.map(|f| {
            let mut last = None;
            for k in 0..PER_MESSAGE {
                if (pos + k) % n == f {
                    last = Some(k);
                }
            }
            last.expect("500 readings cover every point")
        });
        let batch_ts = self.start_ms + round * POLL_MS;
        let mut out = String::with_capacity(PER_MESSAGE * 80 + 64);
        let _ = write!(out, "{{\"ts\":{batch_ts},\"readings\":[");
        for k in 0..PER_MESSAGE {
            let ts = self.start_ms + round * POLL_MS;
            let value = if Some(k) == last_face {
                1.2
            } else {
                normal_value(self.methane[mine][pos], mine, pos, round)
            };
            if k > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"point\":\"{}\",\"value\":{value:.3},\"status\":0,\"ts\":{ts}}}",
                self.codes[mine][pos]
            );
            pos += 1;
            if pos == n {
                pos = 0;
                round += 1;
            }
        }
        out.push_str("]}");
        self.cursor[mine] = (pos, round);
        Message {
            mine,
            payload: out.into_bytes(),
            overlimit: face.map(|f| self.codes[mine][f].clone()),
        }
    }
}

/// Methane 0.2–0.4 %, anything else a plausible small figure.
fn normal_value(methane: bool, mine: usize, pos: usize, round: i64) -> f64 {
    let wobble = ((mine * 31 + pos * 7 + round as usize * 13) % 100) as f64 / 100.0;
    if methane {
        0.2 + 0.2 * wobble
    } else {
        2.0 + 4.0 * wobble
    }
}

/// A snapshot of a Prometheus histogram: (upper bound, cumulative count).
#[derive(Clone)]
struct Buckets(Vec<(f64, u64)>, u64);

fn buckets(h: &prometheus::Histogram) -> Buckets {
    let families = h.collect();
    let metric = &families[0].get_metric()[0];
    let hist = metric.get_histogram();
    let b = hist
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    Buckets(b, hist.get_sample_count())
}

/// Quantile `q` of the observations between two snapshots, interpolated
/// linearly within the bucket (as Prometheus' `histogram_quantile` does).
fn bucket_quantile(before: &Buckets, after: &Buckets, q: f64) -> Option<f64> {
    let total = after.1 - before.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = 0.0;
    let mut below = 0u64;
    for (a, b) in after.0.iter().zip(&before.0) {
        let count = a.1 - b.1;
        if count as f64 >= rank {
            let inside = (count - below) as f64;
            let frac = if inside > 0.0 {
                (rank - below as f64) / inside
            } else {
                1.0
            };
            return Some(lower + (a.0 - lower) * frac);
        }
        lower = a.0;
        below = count;
    }
    Some(f64::INFINITY)
}

/// CPU seconds per thread name (summed over threads of the same name).
fn thread_cpu() -> HashMap<String, f64> {
    const TICK: f64 = 100.0; // USER_HZ on Linux
    let mut out: HashMap<String, f64> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
            *out.entry(name).or_default() += (u + s) / TICK;
        }
    }
    out
}

fn cpu_report(before: &HashMap<String, f64>, after: &HashMap<String, f64>, wall: f64) {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    println!(
        "  CPU by thread over {wall:.1} s wall ({total:.1} CPU-s = {:.2} cores busy):",
        total / wall
    );
    for (name, secs) in rows.iter().take(10) {
        println!(
            "    {name:<18} {secs:6.2} s  {:5.1} % of one core",
            100.0 * secs / wall
        );
    }
}

/// Alerts seen by the `alerts/#` subscriber.
#[derive(Default)]
struct AlertWatch {
    /// Point code → publish instant of the message that took it over.
    pending: HashMap<String, Instant>,
    /// Episodes whose alert had not come 2 s after their phase drained:
    /// point code → (publish instant, phase name). An alert that comes
    /// later is counted as late, not missing.
    overdue: HashMap<String, (Instant, String)>,
    /// Late alerts: (phase, publish → alert).
    late: Vec<(String, Duration)>,
    /// Publish → alert receipt, µs.
    latency: Option<Hdr<u64>>,
    raised_overlimit: u64,
}

fn hdr() -> Hdr<u64> {
    Hdr::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn fmt_s(v: Option<f64>) -> String {
    match v {
        Some(s) if s.is_finite() => format!("{:.2} ms", s * 1000.0),
        Some(_) => "> 10 s".into(),
        None => "n/a".into(),
    }
}

struct PhaseResult {
    name: String,
    readings: u64,
    publish_secs: f64,
    total_secs: f64,
    done: bool,
    detector: (Option<f64>, Option<f64>),
    alert_internal: (Option<f64>, Option<f64>),
    alerts: Hdr<u64>,
}

async fn run() -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let spec = ProvinceSpec {
        mines: MINES,
        points: POINTS,
        polling_secs: 5.0,
    };
    let mut config = province(spec);

    // Event time starts a day back (the whole run spans a few hours of it
    // and must not run into the future).
    let now_ms = chrono_now_ms();
    let mut generator = Generator::new(&config, now_ms - 24 * 3600 * 1000);
    let topics: Vec<String> = config
        .mines
        .iter()
        .map(|m| format!("mines/{}/telemetry", m.code))
        .collect();

    // Broker and daemon.
    let addr = minewatch::broker::start_embedded(0)?;
    let data = tempfile::tempdir()?;
    let tag = format!("{}-{}", std::process::id(), now_ms);
    config.mqtt.broker = format!("mqtt://{addr}");
    config.mqtt.client_id = format!("bench-daemon-{tag}");
    config.http.listen = "127.0.0.1:0".into();
    config.daemon.data_dir = data.path().to_path_buf();
    let daemon = Daemon::start(config, DaemonOptions::default()).await?;
    let metrics = daemon.metrics.clone();
    let accepted = metrics.accepted.with_label_values(&["mqtt"]);

    // The alert subscriber.
    let watch = Arc::new(Mutex::new(AlertWatch::default()));
    let subscribed = Arc::new(Notify::new());
    {
        let mut o = MqttOptions::new(format!("bench-alerts-{tag}"), "127.0.0.1", addr.port());
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(o, 64);
        client.subscribe("alerts/#", QoS::AtLeastOnce).await?;
        let (watch, subscribed) = (watch.clone(), subscribed.clone());
        tokio::spawn(async move {
            let _client = client;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => subscribed.notify_one(),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                            continue;
                        };
                        if v["event"] != "raised" || v["alert"]["kind"] != "overlimit" {
                            continue;
                        }
                        let mut w = watch.lock().expect("alert watch");
                        w.raised_overlimit += 1;
                        let point = v["alert"]["point"].as_str().unwrap_or_default();
                        if let Some(sent) = w.pending.remove(point)
                            && let Some(h) = w.latency.as_mut()
                        {
                            h.saturating_record(at.duration_since(sent).as_micros() as u64);
                        } else if let Some((sent, phase)) = w.overdue.remove(point) {
                            w.late.push((phase, at.duration_since(sent)));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }

    // The publisher.
    let connected = Arc::new(Notify::new());
    let pubacks = Arc::new(AtomicU64::new(0));
    let client = {
        let mut o = MqttOptions::new(format!("bench-pub-{tag}"), "127.0.0.1", addr.port());
        o.set_max_packet_size(4 << 20, 4 << 20);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(o, 64);
        let (connected, pubacks) = (connected.clone(), pubacks.clone());
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => connected.notify_one(),
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        pubacks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client
    };
    tokio::time::timeout(Duration::from_secs(10), connected.notified()).await?;
    tokio::time::timeout(Duration::from_secs(10), subscribed.notified()).await?;

    // Warm up: until the daemon's subscription is in place, messages are
    // dropped by the broker; send small batches until one gets through.
    let warm_deadline = Instant::now() + Duration::from_secs(20);
    let warm_topic = topics[0].clone();
    loop {
        // Event time before the generated data, so no reading becomes late.
        let ts = generator.start_ms - POLL_MS;
        let payload = format!(
            "{{\"ts\":{ts},\"readings\":[{{\"point\":\"{}\",\"value\":0.3}}]}}",
            generator.codes[0][2]
        );
        client
            .publish(warm_topic.clone(), QoS::AtLeastOnce, false, payload)
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if accepted.get() > 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < warm_deadline,
            "the daemon accepted nothing within 20 s of warm-up"
        );
    }
    println!(
        "daemon up: http {}, broker {addr}, {cpus} CPUs",
        daemon.http_addr
    );

    // Payloads are encoded before each phase, outside its timing (the
    // daemon is idle meanwhile, for less than its 15 s offline timeout).
    let mut results = Vec::new();
    let mut rates = Vec::new();
    for run in 1..=SATURATION_RUNS {
        let messages = encode(&mut generator, SATURATION_MESSAGES, INJECT_EVERY_SATURATION);
        let name = format!("saturation #{run}");
        let r = run_phase(name, messages, None, &client, &topics, &daemon, &watch).await;
        rates.push(r.readings as f64 / r.total_secs);
        results.push(r);
        // Let the run's last alerts arrive before the next one starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rates.sort_by(f64::total_cmp);
    let sat_rate = rates[rates.len() / 2];
    let paced = [
        ("paced at target".to_string(), TARGET_RATE),
        (
            format!("paced {:.0} % of saturation", PACED_FRACTION * 100.0),
            (sat_rate * PACED_FRACTION).max(1000.0),
        ),
    ];
    for (name, rate) in paced {
        let count = (rate * PACED_FOR.as_secs_f64() / PER_MESSAGE as f64).ceil() as usize;
        let messages = encode(&mut generator, count, INJECT_EVERY_PACED);
        let name = format!("{name} ({rate:.0}/s)");
        results.push(
            run_phase(
                name,
                messages,
                Some(rate),
                &client,
                &topics,
                &daemon,
                &watch,
            )
            .await,
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Summary table.
    println!();
    println!(
        "| phase | readings | publish s | end-to-end s | readings/s | detector p50 / p99 | alert raised p50 / p99 (daemon) | publish→alert p50 / p99 / max (n) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &results {
        let a = &r.alerts;
        let alerts = if a.is_empty() {
            "n/a (0)".to_string()
        } else {
            format!(
                "{:.1} / {:.1} / {:.1} ms ({})",
                ms(a.value_at_quantile(0.5)),
                ms(a.value_at_quantile(0.99)),
                ms(a.max()),
                a.len()
            )
        };
        println!(
            "| {}{} | {} | {:.2} | {:.2} | {:.0} | {} / {} | {} / {} | {} |",
            r.name,
            if r.done { "" } else { " (INCOMPLETE)" },
            r.readings,
            r.publish_secs,
            r.total_secs,
            r.readings as f64 / r.total_secs,
            fmt_s(r.detector.0),
            fmt_s(r.detector.1),
            fmt_s(r.alert_internal.0),
            fmt_s(r.alert_internal.1),
            alerts,
        );
    }
    let rejected: u64 = minewatch::ingest::RejectReason::ALL
        .iter()
        .map(|r| metrics.rejected.with_label_values(&[r.key()]).get())
        .sum();
    println!(
        "\nrejected records: {rejected}; late readings: {}; alert MQTT drops: {}; overlimit alerts seen: {}; publisher PUBACKs: {}",
        metrics.late.get(),
        metrics.alert_publish_dropped.get(),
        watch.lock().expect("alert watch").raised_overlimit,
        pubacks.load(Ordering::Relaxed)
    );
    println!(
        "target: ≥ 300000 readings/s end to end; saturation measured {sat_rate:.0} readings/s (median of {SATURATION_RUNS})"
    );

    // Every over-limit episode must have raised its alert: the late ones
    // are reported, a missing one fails the bench.
    let deadline = Instant::now() + LATE_LIMIT;
    while Instant::now() < deadline && !watch.lock().expect("alert watch").overdue.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (late, missing) = {
        let w = watch.lock().expect("alert watch");
        let mut missing: Vec<(String, String)> = w
            .overdue
            .iter()
            .map(|(point, (_, phase))| (phase.clone(), point.clone()))
            .collect();
        missing.sort();
        (w.late.clone(), missing)
    };
    for (phase, took) in &late {
        println!(
            "late alert: [{phase}] raised {:.2} s after its publish",
            took.as_secs_f64()
        );
    }

    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), daemon.shutdown()).await;
    anyhow::ensure!(
        missing.is_empty(),
        "{} over-limit episodes never raised their alert (waited {} s more): {missing:?}",
        missing.len(),
        LATE_LIMIT.as_secs()
    );
    Ok(())
}

/// Encodes the next `count` messages and says how long it took.
fn encode(generator: &mut Generator, count: usize, inject_every: usize) -> Vec<Message> {
    let start = Instant::now();
    let messages = generator.messages(count, inject_every);
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
    println!(
        "\nencoded {count} messages of {PER_MESSAGE} readings ({:.0} bytes each) in {:.2} s",
        bytes as f64 / count.max(1) as f64,
        start.elapsed().as_secs_f64()
    );
    messages
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Publishes `messages` (as fast as possible, or at `rate` readings/s), then
/// waits until the daemon has accepted them all.
async fn run_phase(
    name: String,
    messages: Vec<Message>,
    rate: Option<f64>,
    client: &AsyncClient,
    topics: &[String],
    daemon: &Daemon,
    watch: &Arc<Mutex<AlertWatch>>,
) -> PhaseResult {
    let metrics = &daemon.metrics;
    let accepted = metrics.accepted.with_label_values(&["mqtt"]);
    let base = accepted.get();
    let det_before = buckets(&metrics.detector_latency);
    let alert_before = buckets(&metrics.alert_latency);
    watch.lock().expect("alert watch").latency = Some(hdr());
    let cpu_before = thread_cpu();
    let interval = rate.map(|r| Duration::from_secs_f64(PER_MESSAGE as f64 / r));

    let start = Instant::now();
    let mut sent = 0u64;
    for (i, msg) in messages.into_iter().enumerate() {
        if let Some(every) = interval {
            tokio::time::sleep_until((start + every * i as u32).into()).await;
        }
        let topic = topics[msg.mine].clone();
        if let Some(point) = msg.overlimit {
            watch
                .lock()
                .expect("alert watch")
                .pending
                .insert(point, Instant::now());
        }
        if client
            .publish(topic, QoS::AtLeastOnce, false, msg.payload)
            .await
            .is_err()
        {
            break;
        }
        sent += PER_MESSAGE as u64;
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let target = base + sent;
    let deadline = Instant::now() + DRAIN_LIMIT;
    while accepted.get() < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let total_secs = start.elapsed().as_secs_f64();
    let cpu_after = thread_cpu();
    let done = accepted.get() >= target;
    // Alerts still in flight.
    let wait = Instant::now() + Duration::from_secs(2);
    while Instant::now() < wait && !watch.lock().expect("alert watch").pending.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let det_after = buckets(&metrics.detector_latency);
    let alert_after = buckets(&metrics.alert_latency);
    let (alerts, missing) = {
        let mut w = watch.lock().expect("alert watch");
        let missing = w.pending.len();
        let overdue: Vec<(String, Instant)> = w.pending.drain().collect();
        for (point, sent) in overdue {
            w.overdue.insert(point, (sent, name.clone()));
        }
        (w.latency.take().unwrap_or_else(hdr), missing)
    };
    let readings = accepted.get() - base;
    println!(
        "\n[{name}] sent {sent} readings in {publish_secs:.2} s; daemon accepted {readings} after {total_secs:.2} s{}",
        if done { "" } else { " (gave up waiting)" }
    );
    if missing > 0 {
        println!(
            "  {missing} over-limit episodes without a raised alert within 2 s (waited for at the end)"
        );
    }
    cpu_report(&cpu_before, &cpu_after, total_secs);
    PhaseResult {
        name,
        readings,
        publish_secs,
        total_secs,
        done,
        detector: (
            bucket_quantile(&det_before, &det_after, 0.5),
            bucket_quantile(&det_before, &det_after, 0.99),
        ),
        alert_internal: (
            bucket_quantile(&alert_before, &alert_after, 0.5),
            bucket_quantile(&alert_before, &alert_after, 0.99),
        ),
        alerts,
    }
}
