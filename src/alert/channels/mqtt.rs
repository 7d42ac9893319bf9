//! MQTT channel: publishes the delivery's JSON (`{"key", "items"}`, as the
//! webhook sends it) at QoS 1 to the configured topic, with `{county}` and
//! `{mine}` replaced. A send is delivered when the broker's PUBACK for that
//! publish arrives — the broker then holds the message for its
//! subscribers; what they do with it is theirs.
//!
//! The session is clean (nothing is republished from an old session after
//! a reconnect): a publish cut off by a lost connection is reported as a
//! retry and the dispatcher sends it again, with the same key.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{OnceCell, oneshot};

use super::{Channel, Delivery, SendError, SendFuture};
use crate::config::channels::ChannelConfig;

/// The publish waiting for its PUBACK: its packet id once it has gone out.
type Waiting = Option<(Option<u16>, oneshot::Sender<Result<(), String>>)>;

/// An MQTT channel.
pub struct MqttChannel {
    name: String,
    topic: String,
    opts: MqttOptions,
    conn: OnceCell<Conn>,
    /// One publish at a time, so a PUBACK is matched to its publish.
    one: tokio::sync::Mutex<()>,
}

struct Conn {
    client: AsyncClient,
    waiting: std::sync::Arc<Mutex<Waiting>>,
    pump: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// `topic` with `{county}` and `{mine}` replaced from the items (`all`
/// when the items differ).
pub fn topic_for(topic: &str, d: &Delivery) -> String {
    let same = |f: fn(&crate::alert::outbox::Notification) -> &str| -> String {
        match d.items.first() {
            Some(first) if d.items.iter().all(|i| f(i) == f(first)) => f(first).to_string(),
            _ => "all".into(),
        }
    };
    let mut t = topic.to_string();
    if t.contains("{county}") {
        t = t.replace("{county}", &same(|n| n.county.as_str()));
    }
    if t.contains("{mine}") {
        t = t.replace("{mine}", &same(|n| n.mine.as_str()));
    }
    t
}

impl MqttChannel {
    /// Builds the channel; it connects on its first send.
    pub fn new(cfg: &ChannelConfig, default_broker: &str) -> anyhow::Result<MqttChannel> {
        let topic = cfg.topic.clone().context("mqtt channel without topic")?;
        let broker = cfg.broker.as_deref().unwrap_or(default_broker);
        let client_id: String = format!("minewatch-push-{}", cfg.name)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut opts =
            MqttOptions::parse_url(format!("{broker}?client_id={client_id}")).map_err(|e| {
                anyhow::anyhow!("mqtt broker {:?}: {e}", crate::redact::secrets(broker))
            })?;
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        opts.set_max_packet_size(8 << 20, 8 << 20);
        Ok(MqttChannel {
            name: cfg.name.clone(),
            topic,
            opts,
            conn: OnceCell::new(),
            one: tokio::sync::Mutex::new(()),
        })
    }

    fn connect(&self) -> Conn {
        let (client, eventloop) = AsyncClient::new(self.opts.clone(), 16);
        let waiting = std::sync::Arc::new(Mutex::new(None));
        let pump = tokio::spawn(pump(eventloop, waiting.clone(), self.name.clone()));
        Conn {
            client,
            waiting,
            pump,
        }
    }

    async fn publish(&self, d: &Delivery) -> Result<(), SendError> {
        let payload = serde_json::to_vec(d)
            .map_err(|e| SendError::Permanent(format!("cannot encode: {e}")))?;
        let conn = self.conn.get_or_init(|| async { self.connect() }).await;
        let _one = self.one.lock().await;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = conn.waiting.lock() {
            *w = Some((None, tx));
        }
        conn.client
            .publish(topic_for(&self.topic, d), QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| SendError::retry(format!("cannot queue the publish: {e}")))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(SendError::retry(reason)),
            Err(_) => Err(SendError::retry("the MQTT connection task stopped")),
        }
    }
}

/// Drives the connection: matches the PUBACK to the waiting publish and
/// fails it when the connection drops.
async fn pump(mut eventloop: EventLoop, waiting: std::sync::Arc<Mutex<Waiting>>, name: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => backoff = Duration::from_millis(100),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Ok(mut w) = waiting.lock()
                    && let Some((id @ None, _)) = w.as_mut()
                {
                    *id = Some(pkid);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Ok(mut w) = waiting.lock()
                    && matches!(w.as_ref(), Some((Some(id), _)) if *id == ack.pkid)
                    && let Some((_, tx)) = w.take()
                {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(_) => {}
            Err(e) => {
                if let Ok(mut w) = waiting.lock()
                    && let Some((_, tx)) = w.take()
                {
                    let _ = tx.send(Err(format!("MQTT connection error: {e}")));
                }
                tracing::warn!(channel = %name, error = %e, "push mqtt connection error");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl Channel for MqttChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.publish(d))
    }

    fn merges_mines(&self) -> bool {
        !(self.topic.contains("{mine}") || self.topic.contains("{county}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::channels::tests::note;
    use crate::config::channels::ChannelKind;

    #[test]
    fn placeholders_take_the_items_values() {
        let mut d = Delivery {
            key: "k".into(),
            items: vec![note(1, "m1", "overlimit", "major")],
        };
        assert_eq!(topic_for("push/{county}/{mine}", &d), "push/140121/m1");
        d.items.push(note(2, "m2", "overlimit", "major"));
        assert_eq!(topic_for("push/{county}/{mine}", &d), "push/140121/all");
        assert_eq!(topic_for("push/x", &d), "push/x");
    }

    #[tokio::test]
    async fn a_publish_is_delivered_when_the_broker_acknowledges_it() {
        let addr = crate::broker::start_embedded(0).expect("broker");
        let broker = format!("mqtt://{addr}");
        let mut cfg = ChannelConfig::new("bus", ChannelKind::Mqtt);
        cfg.topic = Some("pushtest/{county}/{mine}".into());
        let ch = MqttChannel::new(&cfg, &broker).expect("channel");
        assert!(!ch.merges_mines());

        // A subscriber that reports what arrives.
        let opts = MqttOptions::parse_url(format!("{broker}?client_id=push-sub")).expect("opts");
        let (sub, mut ev) = AsyncClient::new(opts, 16);
        let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
        let (subbed_tx, subbed_rx) = oneshot::channel();
        let mut subbed_tx = Some(subbed_tx);
        tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.subscribe("pushtest/#", QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(t) = subbed_tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = got_tx.send((p.topic, p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subbed_rx)
            .await
            .expect("subscribed in time")
            .expect("subscribed");

        let d = Delivery {
            key: "a1:1:bus".into(),
            items: vec![note(1, "m1", "evacuation", "critical")],
        };
        tokio::time::timeout(Duration::from_secs(10), ch.send(&d))
            .await
            .expect("acknowledged in time")
            .expect("delivered");
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(10), got_rx.recv())
            .await
            .expect("received in time")
            .expect("received");
        assert_eq!(topic, "pushtest/140121/m1");
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        assert_eq!(v["key"], "a1:1:bus");
        assert_eq!(v["items"][0]["mine"], "m1");
    }
}
