//! The MQTT source: a persistent QoS 1 session (rumqttc) on
//! `{prefix}mines/+/telemetry`, `{prefix}mines/+/power` and
//! `{prefix}mines/+/seal`, with manual acknowledgements.
//!
//! Flow: the source's loop hands each message to a decoder thread over a
//! small bounded queue. There is one decoder thread per shard, and a
//! message goes to the one of its mine's shard, so one thread decodes all
//! of a mine's messages, in order. The decoder refuses what is bad (dead letters,
//! flushed), sends the good readings to the owning shard, and a
//! [`Completion`] tells the loop when they are safe: durable in the archive
//! journal (fsynced) when the archive is on, else applied by the shard. The
//! loop acknowledges messages to the broker strictly in the order they
//! arrived (MQTT 3.1.1 §4.6), many PUBACKs in one write, so a crash before
//! processing means redelivery, never loss. At most
//! `mqtt.max_inflight_messages` messages (of `mqtt.max_inflight_bytes`)
//! wait for their acknowledgement; then the socket is not read until
//! acknowledgements catch up, and the backlog stays with the broker.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, PubAck, Publish, QoS, Request, Subscribe,
    SubscribeFilter,
};
use tokio::sync::{mpsc, watch};

use crate::config::MqttConfig;
use crate::ingest::RejectReason;
use crate::ingest::deadletter::DeadLetters;
use crate::ingest::decode::Decoder;
use crate::metrics::Metrics;
use crate::pipeline::{AckSink, Batch, Clock, Completion, Payload, Router};

/// The source name in metrics and dead letters.
pub const SOURCE: &str = "mqtt";

/// The largest packet MQTT 3.1.1 can carry (its remaining length, §2.2.3):
/// 256 MiB.
pub const MQTT_MAX_PACKET: usize = 268_435_455;

/// Builds client options from the config (`client_id` suffix lets one
/// config run two sessions, e.g. ingest and alert publishing).
///
/// The client takes any packet the broker delivers, up to the protocol's
/// 256 MiB: a packet it refused would drop the connection, and the broker
/// would redeliver the same QoS 1 message for ever (nothing after it would
/// be received again). A payload over `mqtt.max_payload_bytes` is refused
/// by minewatch itself ([`MqttSource::run`]) as `payload_too_large`. The
/// cost: one message is read whole into memory before it is refused, so
/// the broker's own limit (Mosquitto's `message_size_limit`) bounds that
/// memory. What minewatch sends stays within `max_payload_bytes` + 64 KiB.
pub fn options(cfg: &MqttConfig, client_id: &str) -> anyhow::Result<MqttOptions> {
    let mut opts = MqttOptions::parse_url(format!("{}?client_id={client_id}", cfg.broker))
        .map_err(|e| {
            anyhow::anyhow!("mqtt.broker {:?}: {e}", crate::redact::secrets(&cfg.broker))
        })?;
    opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)));
    let outgoing = cfg.max_payload_bytes + 64 * 1024;
    opts.set_max_packet_size(MQTT_MAX_PACKET, outgoing);
    if matches!(opts.transport(), rumqttc::Transport::Tls(_)) {
        opts.set_transport(rumqttc::Transport::tls_with_config(tls_config(cfg)?));
    }
    Ok(opts)
}

/// The TLS settings of an `mqtts://` broker: its certificate must chain to
/// `ca_file` (or a system root) and name the host; with `client_cert` and
/// `client_key`, the client proves itself too. rustls with the `ring`
/// provider, as the HTTPS channels use.
pub fn tls_config(cfg: &MqttConfig) -> anyhow::Result<rumqttc::TlsConfiguration> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .with_context(|| {
                    format!(
                        "mqtt.ca_file {}: not a PEM certificate file",
                        path.display()
                    )
                })?;
            anyhow::ensure!(
                !certs.is_empty(),
                "mqtt.ca_file {}: no certificate in it",
                path.display()
            );
            for c in certs {
                roots.add(c).with_context(|| {
                    format!("mqtt.ca_file {}: unusable certificate", path.display())
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "mqtt.broker is mqtts:// but the system has no CA certificates; set mqtt.ca_file"
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS for MQTT")?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<_, _>>())
                .with_context(|| {
                    format!(
                        "mqtt.client_cert {}: not a PEM certificate file",
                        cert.display()
                    )
                })?;
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
                format!("mqtt.client_key {}: not a PEM private key", key.display())
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .context("mqtt.client_cert and mqtt.client_key do not fit together")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => anyhow::bail!("mqtt.client_cert and mqtt.client_key go together"),
    };
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(config)))
}

/// Cuts a payload over `limit` bytes to the excerpt its dead letter keeps
/// (a copy, so that the large buffer is freed at once); returns its size
/// as received, or `None` for a payload within the limit.
fn cut_oversized(publish: &mut Publish, limit: usize) -> Option<usize> {
    let size = publish.payload.len();
    if size <= limit {
        return None;
    }
    let keep = size.min(crate::ingest::deadletter::MAX_RECORD_BYTES);
    publish.payload = publish.payload[..keep].to_vec().into();
    Some(size)
}

/// Tells the source's loop that a message is complete (any order); one
/// notice per message received, so the queue holds at most
/// `mqtt.max_inflight_messages` of them.
struct MqttAcks(mpsc::UnboundedSender<u64>);

impl AckSink for MqttAcks {
    fn complete(&self, token: u64) {
        let _ = self.0.send(token);
    }
}

/// A message on its way to the decoder.
struct Inbound {
    seq: u64,
    publish: Publish,
    /// Size as received of a payload over `mqtt.max_payload_bytes` (its
    /// `publish` then holds only the excerpt kept as evidence).
    oversized: Option<usize>,
    arrival: i64,
    received: Instant,
}

/// Everything the MQTT source needs.
pub struct MqttSource {
    /// Connection settings.
    pub config: MqttConfig,
    /// Topic prefix (empty in production; tests isolate themselves with it).
    pub topic_prefix: String,
    /// Decoder for telemetry batches.
    pub decoder: Decoder,
    /// Where readings go.
    pub router: Router,
    /// Where refused records go.
    pub dead: Arc<DeadLetters>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Processing time.
    pub clock: Arc<dyn Clock>,
}

impl MqttSource {
    /// Runs until `shutdown` turns true. Unacknowledged messages stay with
    /// the broker and are redelivered to the next session.
    ///
    /// One loop drives the connection: it reads the socket (rumqttc's
    /// [`EventLoop`]) only while fewer than `mqtt.max_inflight_messages`
    /// messages, of fewer than `mqtt.max_inflight_bytes` payload bytes, wait
    /// for their acknowledgement; past that it waits for completions alone,
    /// so TCP backpressure and the broker's own flow control keep the
    /// backlog on the broker. Completions are turned into PUBACKs in arrival
    /// order and written to the socket together, one flush for all that
    /// are ready (rumqttc's request queue would send one per turn of its
    /// loop, behind every read: acknowledgements fell ten times behind
    /// the messages read).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        // The broker URL as logged: never its password.
        let shown = crate::redact::secrets(&self.config.broker);
        let mut opts = options(&self.config, &self.config.client_id)?;
        opts.set_clean_session(false).set_manual_acks(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let filters: Vec<SubscribeFilter> = Stream::ALL
            .iter()
            .map(|s| {
                SubscribeFilter::new(
                    format!("{}mines/+/{}", self.topic_prefix, s.suffix()),
                    QoS::AtLeastOnce,
                )
            })
            .collect();

        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let MqttSource {
            config,
            topic_prefix,
            decoder,
            router,
            dead,
            metrics,
            clock,
        } = self;
        let limit = Inflight {
            messages: config.max_inflight_messages.max(1),
            bytes: config.max_inflight_bytes.max(1),
        };
        // One decoder thread per shard, each fed the messages of the mines
        // of its shard: the messages of one mine are decoded by one thread,
        // in arrival order.
        let decoders = router.shards().max(1);
        let mut inputs = Vec::with_capacity(decoders);
        let mut decoder_threads = Vec::with_capacity(decoders);
        for k in 0..decoders {
            let (in_tx, in_rx) = mpsc::channel::<Inbound>((DECODE_QUEUE / decoders).max(1));
            let sink: Arc<dyn AckSink> = Arc::new(MqttAcks(done_tx.clone()));
            let prefix = topic_prefix.clone();
            // The routers move to the decoder threads: once those have
            // stopped, this source holds no sender of the shards' queues,
            // so the shards can stop.
            let (decoder, router, dead, metrics) = (
                decoder.clone(),
                router.clone(),
                dead.clone(),
                metrics.clone(),
            );
            decoder_threads.push(
                std::thread::Builder::new()
                    .name(format!("mqtt-decode-{k}"))
                    .spawn(move || {
                        run_decoder(in_rx, prefix, decoder, router, dead, metrics, sink)
                    })?,
            );
            inputs.push(in_tx);
        }
        drop(router);
        let messages = metrics.messages.with_label_values(&[SOURCE]);

        let mut acks: InOrderAcks<u16> = InOrderAcks::default();
        let mut seq: u64 = 0;
        let mut backoff = Duration::from_millis(100);
        let mut ready = Vec::new();
        loop {
            let room = acks.has_room(limit);
            let event = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(first) = done_rx.recv() => {
                    acks.done_with_queued(first, &mut done_rx, &mut ready);
                    send_acks(&mut eventloop, &mut ready).await;
                    acks.publish(&metrics);
                    continue;
                }
                e = eventloop.poll(), if room => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    tracing::info!(broker = %shown, session_present = ack.session_present, "mqtt connected");
                    // Subscribe on every connect: a broker that lost our
                    // session (restart without persistence) forgets it.
                    if let Err(e) = subscribe(&mut eventloop, &filters).await {
                        tracing::error!(error = %e, "cannot subscribe");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    // Connected and subscribed: ready to receive.
                    metrics.mqtt_connected.set(1);
                }
                Ok(Event::Incoming(Packet::Publish(mut publish))) => {
                    seq += 1;
                    messages.inc();
                    let k = decoder_of(&decoder, &topic_prefix, &publish.topic, decoders);
                    let oversized = cut_oversized(&mut publish, config.max_payload_bytes);
                    let ack = (publish.qos != QoS::AtMostOnce).then_some(publish.pkid);
                    acks.received(seq, ack, publish.payload.len() + publish.topic.len());
                    acks.publish(&metrics);
                    let inbound = Inbound {
                        seq,
                        publish,
                        oversized,
                        arrival: clock.now_ms(),
                        received: Instant::now(),
                    };
                    // Waiting here is backpressure too: the socket is not
                    // read until the decoder has room.
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        sent = inputs[k].send(inbound) => if sent.is_err() { break },
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    metrics.mqtt_connected.set(0);
                    metrics.mqtt_connection_errors.inc();
                    // Packet ids of earlier messages mean nothing on the
                    // next connection (the broker redelivers those
                    // messages); they still count against the limit until
                    // complete, as they still take memory.
                    acks.reset();
                    tracing::warn!(broker = %shown, error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt connection error");
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        metrics.mqtt_connected.set(0);
        drop(inputs);
        let _ = tokio::task::spawn_blocking(move || {
            for t in decoder_threads {
                let _ = t.join();
            }
        })
        .await;
        // Acknowledge what completes within a moment (the shards and the
        // journal are still running), then leave: what is not acknowledged
        // is redelivered by the broker.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while !acks.is_empty() {
                let Some(first) = done_rx.recv().await else {
                    break;
                };
                acks.done_with_queued(first, &mut done_rx, &mut ready);
                send_acks(&mut eventloop, &mut ready).await;
            }
        })
        .await;
        acks.reset();
        acks.publish(&metrics);
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
        Ok(())
    }
}

/// Subscribes to `filters` on the current connection, written directly to
/// the socket (see [`send_acks`]).
async fn subscribe(
    eventloop: &mut rumqttc::EventLoop,
    filters: &[SubscribeFilter],
) -> Result<(), rumqttc::StateError> {
    let request = Request::Subscribe(Subscribe::new_many(filters.iter().cloned()));
    let Some(network) = eventloop.network.as_mut() else {
        return Ok(());
    };
    if let Some(packet) = eventloop.state.handle_outgoing_packet(request)? {
        network.write(packet).await?;
    }
    network.flush().await
}

/// Writes a PUBACK for each packet id in `ready` (in order) and flushes
/// once. They go to the socket directly rather than through the client's
/// request queue, which the event loop serves one request per turn and
/// only between reads. Without a connection, or when the write fails, they
/// are dropped: the broker redelivers those messages.
async fn send_acks(eventloop: &mut rumqttc::EventLoop, ready: &mut Vec<u16>) {
    if ready.is_empty() {
        return;
    }
    let result = async {
        let Some(network) = eventloop.network.as_mut() else {
            return Ok(());
        };
        for pkid in ready.iter() {
            let request = Request::PubAck(PubAck::new(*pkid));
            if let Some(packet) = eventloop.state.handle_outgoing_packet(request)? {
                network.write(packet).await?;
            }
        }
        network.flush().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, messages = ready.len(), "cannot acknowledge; the broker will redeliver");
    }
    ready.clear();
}

/// Messages waiting for the decoder threads, all of them together (each
/// thread's queue holds its share).
const DECODE_QUEUE: usize = 64;

/// The decoder thread (of `decoders`) for a message on `topic`: the one of
/// its mine's shard, so that one thread decodes all of a mine's messages
/// in order; thread 0 for a topic or mine minewatch does not know (the
/// message is refused there).
fn decoder_of(decoder: &Decoder, prefix: &str, topic: &str, decoders: usize) -> usize {
    mine_of_topic(prefix, topic)
        .and_then(|(mine, _)| {
            let registry = decoder.registry();
            let m = registry.mine(mine)?;
            Some(registry.mines[m as usize].shard % decoders)
        })
        .unwrap_or(0)
}

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `mines/{mine}/telemetry`: readings of monitoring points.
    Telemetry,
    /// `mines/{mine}/power`: electricity-use samples.
    Power,
    /// `mines/{mine}/seal`: electronic-seal events.
    Seal,
}

impl Stream {
    /// Every stream minewatch subscribes to.
    pub const ALL: [Stream; 3] = [Stream::Telemetry, Stream::Power, Stream::Seal];

    /// The last topic level.
    pub fn suffix(self) -> &'static str {
        match self {
            Stream::Telemetry => "telemetry",
            Stream::Power => "power",
            Stream::Seal => "seal",
        }
    }
}

/// Extracts the mine code and the stream from `{prefix}mines/{mine}/{stream}`.
pub fn mine_of_topic<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, Stream)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix("mines/")?;
    let (mine, suffix) = rest.rsplit_once('/')?;
    let stream = Stream::ALL.into_iter().find(|s| s.suffix() == suffix)?;
    (!mine.is_empty() && !mine.contains('/')).then_some((mine, stream))
}

/// Decodes one message by its stream: the shard, the records and the
/// refusals.
fn decode_message(
    decoder: &Decoder,
    mine: &str,
    stream: Stream,
    payload: &[u8],
    arrival: i64,
) -> (usize, Payload, Vec<crate::ingest::decode::Rejected>) {
    match stream {
        Stream::Telemetry => {
            let d = decoder.decode_telemetry(mine, payload, arrival);
            (d.shard, Payload::Readings(d.records), d.rejects)
        }
        Stream::Power => {
            let d = decoder.decode_power(mine, payload, arrival);
            (d.shard, Payload::Power(d.records), d.rejects)
        }
        Stream::Seal => {
            let d = decoder.decode_seal(mine, payload, arrival);
            (d.shard, Payload::Seal(d.records), d.rejects)
        }
    }
}

fn run_decoder(
    mut input: mpsc::Receiver<Inbound>,
    prefix: String,
    decoder: Decoder,
    router: Router,
    dead: Arc<DeadLetters>,
    metrics: Arc<Metrics>,
    sink: Arc<dyn AckSink>,
) {
    while let Some(msg) = input.blocking_recv() {
        let topic = msg.publish.topic.as_str();
        let payload = &msg.publish.payload[..];
        let (shard, payload, rejects) = if let Some(size) = msg.oversized {
            let reject = crate::ingest::decode::Rejected {
                reason: RejectReason::PayloadTooLarge,
                detail: format!(
                    "{size} bytes, the limit is {} (mqtt.max_payload_bytes); split the batch \
                     (the record kept is its first {} bytes)",
                    decoder.max_payload(),
                    payload.len()
                ),
                record: payload.to_vec(),
            };
            (0, Payload::Readings(Vec::new()), vec![reject])
        } else {
            match mine_of_topic(&prefix, topic) {
                Some((mine, stream)) => {
                    decode_message(&decoder, mine, stream, payload, msg.arrival)
                }
                None => {
                    let reject = crate::ingest::decode::Rejected {
                        reason: RejectReason::UnknownTopic,
                        detail: format!(
                            "topic {topic:?} is not {prefix}mines/{{mine}}/telemetry, /power or /seal"
                        ),
                        record: payload.to_vec(),
                    };
                    (0, Payload::Readings(Vec::new()), vec![reject])
                }
            }
        };
        for r in &rejects {
            dead.reject(
                &metrics,
                msg.arrival,
                SOURCE,
                topic,
                r.reason,
                r.detail.clone(),
                &r.record,
            );
        }
        if !rejects.is_empty() {
            dead.flush();
        }
        let done = Completion::new(2, msg.seq, sink.clone());
        if !payload.is_empty() {
            let batch = Batch {
                payload,
                arrival: msg.arrival,
                received: msg.received,
                source: SOURCE,
                done: Some(done.clone()),
            };
            if !router.send(shard, batch) {
                return;
            }
        } else {
            done.part_done();
        }
        done.part_done();
    }
}

/// How many received messages may wait for their acknowledgement
/// (`mqtt.max_inflight_messages`, `mqtt.max_inflight_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflight {
    /// Messages.
    pub messages: usize,
    /// Payload (and topic) bytes; one message is let in whatever its size.
    pub bytes: usize,
}

/// Which messages may be acknowledged: complete ones, in arrival order
/// (MQTT 3.1.1 §4.6 wants PUBACKs in the order the PUBLISHes came); and
/// how many messages, of how many bytes, are received and not complete.
#[derive(Debug)]
pub struct InOrderAcks<T> {
    /// (seq, what to acknowledge, bytes, complete), in arrival order.
    pending: VecDeque<(u64, Option<T>, usize, bool)>,
    /// Bytes of the pending messages.
    bytes: usize,
}

impl<T> Default for InOrderAcks<T> {
    fn default() -> Self {
        InOrderAcks {
            pending: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<T> InOrderAcks<T> {
    /// Message `seq` of `bytes` bytes arrived (seqs increase by one); `ack`
    /// is `None` for a message that needs no acknowledgement (QoS 0).
    pub fn received(&mut self, seq: u64, ack: Option<T>, bytes: usize) {
        self.pending.push_back((seq, ack, bytes, false));
        self.bytes += bytes;
    }

    /// Message `seq` is complete; returns what can be acknowledged now.
    pub fn done(&mut self, seq: u64) -> Vec<T> {
        let mut ready = Vec::new();
        self.done_into(seq, &mut ready);
        ready
    }

    /// Message `seq` is complete; adds what can be acknowledged now to
    /// `ready`.
    pub fn done_into(&mut self, seq: u64, ready: &mut Vec<T>) {
        if let Some(front) = self.pending.front().map(|p| p.0)
            && seq >= front
            && let Some(entry) = self.pending.get_mut((seq - front) as usize)
            && entry.0 == seq
        {
            entry.3 = true;
        }
        while self.pending.front().is_some_and(|p| p.3) {
            if let Some((_, ack, bytes, _)) = self.pending.pop_front() {
                self.bytes -= bytes;
                ready.extend(ack);
            }
        }
    }

    /// Message `first` and every completion already queued behind it on
    /// `queued` are complete; adds what can be acknowledged now to `ready`
    /// (one write of PUBACKs for all of them).
    pub fn done_with_queued(
        &mut self,
        first: u64,
        queued: &mut mpsc::UnboundedReceiver<u64>,
        ready: &mut Vec<T>,
    ) {
        self.done_into(first, ready);
        while let Ok(seq) = queued.try_recv() {
            self.done_into(seq, ready);
        }
    }

    /// Forgets what to acknowledge of every pending message: after a
    /// reconnect their packet ids may name other messages, and the broker
    /// redelivers them anyway. They still count (they take memory until
    /// they are complete).
    pub fn reset(&mut self) {
        for p in &mut self.pending {
            p.1 = None;
        }
    }

    /// True while another message may be received under `limit`.
    pub fn has_room(&self, limit: Inflight) -> bool {
        self.pending.is_empty() || (self.pending.len() < limit.messages && self.bytes < limit.bytes)
    }

    /// Messages received and not yet complete (or, before them, an
    /// earlier one).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Their bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Shows the figures in the metrics.
    fn publish(&self, metrics: &Metrics) {
        metrics.mqtt_unacked.set(self.len() as i64);
        metrics.mqtt_unacked_bytes.set(self.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_wait_for_every_earlier_message() {
        let mut a = InOrderAcks::default();
        a.received(1, Some("m1"), 10);
        a.received(2, None, 10); // QoS 0: completes, never acknowledged
        a.received(3, Some("m3"), 10);
        a.received(4, Some("m4"), 10);
        assert!(a.done(3).is_empty(), "3 waits for 1 and 2");
        assert!(a.done(2).is_empty());
        assert_eq!(a.done(1), ["m1", "m3"]);
        assert_eq!(a.len(), 1);
        assert!(a.done(99).is_empty(), "an unknown message changes nothing");
        assert_eq!(a.done(4), ["m4"]);
        assert!(a.is_empty());
    }

    #[test]
    fn a_dropped_connection_forgets_what_was_pending() {
        let mut a = InOrderAcks::default();
        a.received(1, Some("old1"), 10);
        a.received(2, Some("old2"), 10);
        a.reset();
        a.received(3, Some("new3"), 10);
        assert_eq!(a.len(), 3, "the old ones still take memory");
        assert!(a.done(3).is_empty(), "in order, behind the old ones");
        assert!(
            a.done(1).is_empty(),
            "no ack for a dead connection's message"
        );
        assert_eq!(a.done(2), ["new3"]);
        assert!(a.is_empty());
    }

    #[test]
    fn the_room_for_messages_is_bounded_in_count_and_bytes() {
        let limit = Inflight {
            messages: 3,
            bytes: 1000,
        };
        let mut a = InOrderAcks::default();
        assert!(a.has_room(limit));
        a.received(1, Some(1u16), 5000);
        assert!(!a.has_room(limit), "one large message fills the bytes");
        assert_eq!(a.done(1), [1]);
        assert!(a.has_room(limit) && a.bytes() == 0);
        for seq in 2..=4 {
            assert!(a.has_room(limit));
            a.received(seq, Some(seq as u16), 10);
        }
        assert!(!a.has_room(limit), "three messages wait");
        assert!(a.done(3).is_empty());
        assert!(!a.has_room(limit), "3 is complete but waits behind 2");
        assert_eq!(a.done(2), [2, 3]);
        assert!(a.has_room(limit));
        assert_eq!((a.len(), a.bytes()), (1, 10));
    }

    #[test]
    fn an_oversized_payload_is_cut_to_its_excerpt() {
        let mut p = Publish::new("mines/m/telemetry", QoS::AtLeastOnce, vec![b'x'; 100_000]);
        p.pkid = 7;
        assert_eq!(cut_oversized(&mut p, 100_000), None, "at the limit: taken");
        assert_eq!(cut_oversized(&mut p, 99_999), Some(100_000));
        assert_eq!(p.payload.len(), crate::ingest::deadletter::MAX_RECORD_BYTES);
    }

    #[test]
    fn the_client_takes_any_packet_mqtt_can_carry() {
        let cfg = MqttConfig::default();
        let o = options(&cfg, "x").expect("options");
        assert_eq!(o.max_packet_size(), MQTT_MAX_PACKET);
    }

    #[test]
    fn topics_name_their_mine() {
        assert_eq!(
            mine_of_topic("", "mines/140121000001/telemetry").map(|m| m.0),
            Some("140121000001")
        );
        assert_eq!(
            mine_of_topic("t1/", "t1/mines/m/telemetry"),
            Some(("m", Stream::Telemetry))
        );
        assert_eq!(mine_of_topic("", "mines//telemetry"), None);
        assert_eq!(mine_of_topic("", "mines/a/b/telemetry"), None);
        assert_eq!(mine_of_topic("", "mines/a/seal"), Some(("a", Stream::Seal)));
        assert_eq!(
            mine_of_topic("", "mines/a/power"),
            Some(("a", Stream::Power))
        );
        assert_eq!(mine_of_topic("", "mines/a/status"), None);
        assert_eq!(mine_of_topic("x/", "mines/a/telemetry"), None);
    }
}
