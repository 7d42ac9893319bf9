//! The simulator's MQTT publisher: every `1/rate` seconds, one telemetry
//! batch per mine (all of its points that are not silent) on
//! `{prefix}mines/{mine}/telemetry`, and the meter samples and seal events
//! that fell due since the last round ([`crate::simulators::activity`]) on
//! `{prefix}mines/{mine}/power` and `{prefix}mines/{mine}/seal`, at QoS 1,
//! stamped with wall-clock event time. In the demo scenario each cycle also
//! lays the demo's power and seal patterns over the traffic.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
use crate::simulators::activity::{self, MineTraffic};
use crate::simulators::scenario::{DEMO_CYCLE, Scenario, Simulation};

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
    /// Indices of mines whose telemetry is not published (served another
    /// way, e.g. over Modbus); their power and seal traffic still is.
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
    /// Power samples and seal events sent.
    pub activity: u64,
}

/// Connects to `broker` (`mqtt://host:port`) and publishes the plan until
/// its duration ends or `shutdown` turns true.
pub async fn run(
    broker: &str,
    plan: PublishPlan,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Published> {
    let id = format!("minewatch-sim-{}", std::process::id());
    let mut opts = MqttOptions::parse_url(format!("{broker}?client_id={id}")).map_err(|e| {
        anyhow::anyhow!(
            "broker {:?}: {e}; write mqtt://HOST:PORT",
            crate::redact::secrets(broker)
        )
    })?;
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
    let start_ms = chrono::Utc::now().timestamp_millis();
    let mut traffic: Vec<MineTraffic> = (0..plan.province.mines.len())
        .map(|m| MineTraffic::new(&plan.province, m))
        .collect();
    let mut last_ms = start_ms;
    let mut cycles_laid = 0u64;
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
        if plan.scenario == Scenario::Demo {
            let cycle_ms = (DEMO_CYCLE * 1000.0) as i64;
            while cycles_laid * cycle_ms as u64 <= (ts - start_ms).max(0) as u64 {
                let begin = start_ms + cycles_laid as i64 * cycle_ms;
                for (m, i) in
                    activity::demo_injections(&plan.province, cycles_laid, begin, cycle_ms)
                {
                    traffic[m].inject(i);
                }
                cycles_laid += 1;
            }
        }
        for (m, mine) in plan.province.mines.iter().enumerate() {
            if sim.mine_silent(m, t) {
                continue;
            }
            let samples: Vec<_> = traffic[m]
                .power_times(last_ms, ts)
                .filter_map(|at| traffic[m].power(at))
                .collect();
            let events = traffic[m].seal(last_ms, ts);
            for (suffix, n, payload) in [
                ("power", samples.len(), activity::power_message(&samples)),
                ("seal", events.len(), activity::seal_message(&events)),
            ] {
                if n == 0 {
                    continue;
                }
                stats.activity += n as u64;
                stats.messages += 1;
                let topic = format!("{}mines/{}/{suffix}", plan.topic_prefix, mine.code);
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await?;
            }
            if plan.skip_mines.contains(&m) {
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
        last_ms = ts;
    }
    // Let the last publishes leave before the connection goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    closing.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    pump.abort();
    Ok(stats)
}
