//! The simulator's MQTT publisher: every `1/rate` seconds, one telemetry
//! batch per mine (all of its points that are not silent) on
//! `{prefix}mines/{mine}/telemetry`, and the meter samples and seal events
//! that fell due since the last round ([`crate::simulators::activity`]) on
//! `{prefix}mines/{mine}/power` and `{prefix}mines/{mine}/seal`, at QoS 1,
//! stamped with wall-clock event time. In the demo scenario each cycle also
//! lays the demo's power and seal patterns over the traffic. What it
//! reports as delivered is what the broker acknowledged (PUBACK), not what
//! it handed to the client.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
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
    /// Messages handed to the MQTT client.
    pub messages: u64,
    /// Readings handed to the MQTT client.
    pub readings: u64,
    /// Power samples and seal events handed to the MQTT client.
    pub activity: u64,
    /// Messages the broker acknowledged.
    pub acked_messages: u64,
    /// Readings in the messages the broker acknowledged.
    pub acked_readings: u64,
}

/// How long the publisher waits for the broker's first answer before it
/// gives up with an error.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the publisher waits at the end for the acknowledgements of
/// what it sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the broker has acknowledged, kept up by the event-loop task.
#[derive(Default)]
struct Delivery {
    /// Readings of each publish handed to the client, in order, until the
    /// client sends it and its packet id is known.
    queued: VecDeque<u64>,
    /// Sent and waiting for PUBACK: readings by packet id.
    inflight: HashMap<u16, u64>,
    /// Messages acknowledged.
    acked_messages: u64,
    /// Readings acknowledged.
    acked_readings: u64,
    /// The broker has answered a CONNECT at least once.
    connected: bool,
    /// The last connection error, for the message when nothing arrives.
    last_error: Option<String>,
}

impl Delivery {
    /// Applies one event of the client's event loop.
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => self.connected = true,
            // A packet id already in flight is a retransmission after a
            // reconnect, not a new publish.
            Event::Outgoing(Outgoing::Publish(pkid)) if !self.inflight.contains_key(pkid) => {
                if let Some(readings) = self.queued.pop_front() {
                    self.inflight.insert(*pkid, readings);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(readings) = self.inflight.remove(&ack.pkid) {
                    self.acked_messages += 1;
                    self.acked_readings += readings;
                }
            }
            _ => {}
        }
    }

    /// Nothing is waiting for an acknowledgement.
    fn settled(&self) -> bool {
        self.queued.is_empty() && self.inflight.is_empty()
    }
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
    let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closing_seen = closing.clone();
    let delivery = Arc::new(Mutex::new(Delivery::default()));
    let seen = delivery.clone();
    let pump = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(event) => seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .on_event(&event),
                Err(e) => {
                    if closing_seen.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    tracing::warn!(error = %e, "simulator connection error; retrying");
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .last_error = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    let lock = || delivery.lock().unwrap_or_else(PoisonError::into_inner);
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
        if elapsed >= CONNECT_TIMEOUT {
            let d = lock();
            if !d.connected {
                closing.store(true, std::sync::atomic::Ordering::SeqCst);
                pump.abort();
                anyhow::bail!(
                    "the broker at {} did not answer in {} s{}; is it running? \
                     name another with --broker mqtt://HOST:PORT",
                    crate::redact::secrets(broker),
                    CONNECT_TIMEOUT.as_secs(),
                    d.last_error
                        .as_deref()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                );
            }
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
                lock().queued.push_back(0);
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
            lock().queued.push_back(readings.len() as u64);
            let payload = serde_json::to_vec(&WireBatch { ts, readings })?;
            let topic = format!("{}mines/{}/telemetry", plan.topic_prefix, mine.code);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
        }
        last_ms = ts;
    }
    // Wait for the acknowledgements of what was sent (bounded).
    let drained = Instant::now();
    while !lock().settled() && drained.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let d = lock();
        stats.acked_messages = d.acked_messages;
        stats.acked_readings = d.acked_readings;
    }
    closing.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    pump.abort();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use rumqttc::{ConnAck, ConnectReturnCode, PubAck};

    use super::*;

    #[test]
    fn only_acknowledged_publishes_count_and_a_retransmission_is_not_new() {
        let mut d = Delivery::default();
        d.queued.extend([32, 0, 32]);
        d.on_event(&Event::Incoming(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        ))));
        assert!(d.connected);
        d.on_event(&Event::Outgoing(Outgoing::Publish(1)));
        d.on_event(&Event::Outgoing(Outgoing::Publish(2)));
        // The connection drops; the client sends packet 1 again.
        d.on_event(&Event::Outgoing(Outgoing::Publish(1)));
        d.on_event(&Event::Incoming(Packet::PubAck(PubAck::new(1))));
        d.on_event(&Event::Incoming(Packet::PubAck(PubAck::new(1))));
        assert_eq!((d.acked_messages, d.acked_readings), (1, 32));
        assert!(!d.settled());
        d.on_event(&Event::Outgoing(Outgoing::Publish(3)));
        d.on_event(&Event::Incoming(Packet::PubAck(PubAck::new(3))));
        d.on_event(&Event::Incoming(Packet::PubAck(PubAck::new(2))));
        assert_eq!((d.acked_messages, d.acked_readings), (3, 64));
        assert!(d.settled());
    }
}
