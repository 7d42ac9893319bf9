//! The simulator's MQTT publisher: every `1/rate` seconds, one telemetry
//! batch per mine (all of its points that are not silent) on
//! `{prefix}mines/{mine}/telemetry`, at QoS 1, stamped with wall-clock event
//! time.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
use crate::simulators::scenario::{Scenario, Simulation};

/// What to publish.
pub struct PublishPlan {
    /// The mines and points.
    pub province: Config,
    /// The script.
    pub scenario: Scenario,
    /// Batches per mine per second.
    pub rate_hz: f64,
    /// Stop after this long (`None`: until shutdown).
    pub duration: Option<Duration>,
    /// Topic prefix.
    pub topic_prefix: String,
    /// RNG seed.
    pub seed: u64,
    /// Indices of mines not to publish (served another way, e.g. over
    /// Modbus).
    pub skip_mines: Vec<usize>,
}

#[derive(Serialize)]
struct WireReading<'a> {
    point: &'a str,
    value: f64,
    status: u16,
}

#[derive(Serialize)]
struct WireBatch<'a> {
    ts: i64,
    readings: Vec<WireReading<'a>>,
}

/// Publishing statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Messages sent.
    pub messages: u64,
    /// Readings sent.
    pub readings: u64,
}

/// Connects to `broker` (`mqtt://host:port`) and publishes the plan until
/// its duration ends or `shutdown` turns true.
pub async fn run(
    broker: &str,
    plan: PublishPlan,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Published> {
    let id = format!("minewatch-sim-{}", std::process::id());
    let mut opts = MqttOptions::parse_url(format!("{broker}?client_id={id}"))
        .map_err(|e| anyhow::anyhow!("broker {broker:?}: {e}; write mqtt://HOST:PORT"))?;
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    let closing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closing_seen = closing.clone();
    let pump = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                if closing_seen.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                tracing::warn!(error = %e, "simulator connection error; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let mut sim = Simulation::new(&plan.province, plan.scenario, plan.seed);
    let period = Duration::from_secs_f64(1.0 / plan.rate_hz.max(0.001));
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut stats = Published::default();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = every.tick() => {}
        }
        let elapsed = start.elapsed();
        if plan.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        let t = elapsed.as_secs_f64();
        let ts = chrono::Utc::now().timestamp_millis();
        for (m, mine) in plan.province.mines.iter().enumerate() {
            if plan.skip_mines.contains(&m) || sim.mine_silent(m, t) {
                continue;
            }
            let readings: Vec<WireReading> = mine
                .points
                .iter()
                .enumerate()
                .filter_map(|(j, p)| {
                    sim.sample(m, j, t).map(|s| WireReading {
                        point: &p.code,
                        value: s.value,
                        status: s.status,
                    })
                })
                .collect();
            if readings.is_empty() {
                continue;
            }
            stats.readings += readings.len() as u64;
            stats.messages += 1;
            let payload = serde_json::to_vec(&WireBatch { ts, readings })?;
            let topic = format!("{}mines/{}/telemetry", plan.topic_prefix, mine.code);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
        }
    }
    // Let the last publishes leave before the connection goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    closing.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    pump.abort();
    Ok(stats)
}
