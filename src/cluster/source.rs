//! The JetStream source of one instance: a task per partition held, and one
//! decoder thread that hands their messages to the shards.
//!
//! Taking a partition: read the ack floor of its durable consumer `p{n}`
//! (every message at or below it is durable in some owner's journal);
//! replay the acknowledged messages of the last `cluster.warmup_secs` up to
//! the floor through an ephemeral consumer as warm-up batches (detectors
//! only: not archived again, not acknowledged, no dead letters); then
//! recreate `p{n}` to deliver from the floor + 1 — at once, in order,
//! rather than after the old owner's unacknowledged messages time out —
//! and process live.
//!
//! Live messages are acknowledged as the MQTT source does: each carries a
//! [`Completion`] that fires once its readings are durable in the journal
//! (with the archive on) or applied (without it), and the partition task
//! acknowledges in delivery order, so the consumer's ack floor only passes
//! messages that are durable. The decoder drops any message whose
//! partition is no longer held (fencing): never acknowledged here, it is
//! redelivered to the new owner.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::status::ClusterStatus;
use super::{parse_subject, partition_filter, partition_of};
use crate::ingest::RejectReason;
use crate::ingest::deadletter::DeadLetters;
use crate::ingest::decode::{Decoder, Rejected};
use crate::ingest::mqtt::{InOrderAcks, Stream};
use crate::metrics::Metrics;
use crate::pipeline::{AckSink, Batch, Clock, Completion, Payload, Router, WARM_UP_SOURCE};

/// The source name in metrics and dead letters.
pub const SOURCE: &str = "nats";

/// How long a delivered message may stay unacknowledged before JetStream
/// delivers it again (the journal's fsync is far quicker).
const ACK_WAIT: Duration = Duration::from_secs(60);

/// Messages in flight per partition.
const MAX_ACK_PENDING: i64 = 1024;

/// A live message stored this recently (ms) shows that the partition's
/// backlog has been worked through.
const CAUGHT_UP_MS: i64 = 1000;

/// How often an owner reads its consumer's backlog.
const PENDING_EVERY: Duration = Duration::from_secs(2);

/// A message on its way to the decoder thread.
pub struct Inbound {
    /// Its partition.
    pub part: u16,
    /// Its subject, `part.{p}.mines.{mine}.{stream}`.
    pub subject: String,
    /// Its payload.
    pub payload: Bytes,
    /// When JetStream stored it, ms since the epoch: the reading's
    /// processing time of arrival, the same for every owner that sees it.
    pub arrival: i64,
    /// When this instance received it.
    pub received: Instant,
    /// The token and sink to complete; `None` for a warm-up message.
    pub ack: Option<(u64, Arc<dyn AckSink>)>,
}

/// What the decoder thread needs.
pub struct DecoderParts {
    /// Decodes payloads.
    pub decoder: Decoder,
    /// Routes to the shards.
    pub router: Router,
    /// Refused records.
    pub dead: Arc<DeadLetters>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The fence and the takeover figures.
    pub status: Arc<ClusterStatus>,
    /// Processing time.
    pub clock: Arc<dyn Clock>,
}

/// Starts the decoder thread; it stops when every sender is dropped.
pub fn spawn_decoder(
    parts: DecoderParts,
    input: mpsc::Receiver<Inbound>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("nats-decode".into())
        .spawn(move || run_decoder(parts, input))
}

fn reject(reason: RejectReason, detail: String, payload: &[u8]) -> Rejected {
    Rejected {
        reason,
        detail,
        record: payload.to_vec(),
    }
}

/// Decodes one message: the shard, the records, the refusals.
fn decode(decoder: &Decoder, partitions: u16, msg: &Inbound) -> (usize, Payload, Vec<Rejected>) {
    let payload = &msg.payload[..];
    let empty = Payload::Readings(Vec::new());
    if payload.len() > decoder.max_payload() {
        let detail = format!(
            "{} bytes, the limit is {} (mqtt.max_payload_bytes); split the batch",
            payload.len(),
            decoder.max_payload()
        );
        let cut = &payload[..payload
            .len()
            .min(crate::ingest::deadletter::MAX_RECORD_BYTES)];
        return (
            0,
            empty,
            vec![reject(RejectReason::PayloadTooLarge, detail, cut)],
        );
    }
    let Some((p, mine, stream)) = parse_subject(&msg.subject) else {
        let detail = format!(
            "subject {:?} is not part.{{p}}.mines.{{mine}}.telemetry, .power or .seal",
            msg.subject
        );
        return (
            0,
            empty,
            vec![reject(RejectReason::UnknownTopic, detail, payload)],
        );
    };
    let expected = partition_of(mine, partitions);
    if p != msg.part || expected != p {
        let detail = format!(
            "subject {:?} puts mine {mine} in partition {p}, but with cluster.partitions = \
             {partitions} it belongs to {expected}: nats-server's {{{{partition(P,1)}}}} \
             mapping must use P = cluster.partitions",
            msg.subject
        );
        return (
            0,
            empty,
            vec![reject(RejectReason::UnknownTopic, detail, payload)],
        );
    }
    match stream {
        Stream::Telemetry => {
            let d = decoder.decode_telemetry(mine, payload, msg.arrival);
            (d.shard, Payload::Readings(d.records), d.rejects)
        }
        Stream::Power => {
            let d = decoder.decode_power(mine, payload, msg.arrival);
            (d.shard, Payload::Power(d.records), d.rejects)
        }
        Stream::Seal => {
            let d = decoder.decode_seal(mine, payload, msg.arrival);
            (d.shard, Payload::Seal(d.records), d.rejects)
        }
    }
}

fn run_decoder(parts: DecoderParts, mut input: mpsc::Receiver<Inbound>) {
    let DecoderParts {
        decoder,
        router,
        dead,
        metrics,
        status,
        clock,
    } = parts;
    let messages = metrics.messages.with_label_values(&[SOURCE]);
    while let Some(msg) = input.blocking_recv() {
        if !status.holds(msg.part) {
            // Fenced: the lease is gone; the new owner gets it again.
            status.fenced_message();
            continue;
        }
        let warm = msg.ack.is_none();
        let (shard, payload, rejects) = decode(&decoder, status.partitions, &msg);
        if !warm {
            messages.inc();
            for r in &rejects {
                dead.reject(
                    &metrics,
                    msg.arrival,
                    SOURCE,
                    &msg.subject,
                    r.reason,
                    r.detail.clone(),
                    &r.record,
                );
            }
            if !rejects.is_empty() {
                dead.flush();
            }
        }
        let done = msg
            .ack
            .as_ref()
            .map(|(token, sink)| Completion::new(2, *token, sink.clone()));
        if payload.is_empty() {
            if let Some(d) = &done {
                d.part_done();
            }
        } else {
            let batch = Batch {
                payload,
                arrival: msg.arrival,
                received: msg.received,
                source: if warm { WARM_UP_SOURCE } else { SOURCE },
                done: done.clone(),
            };
            if !router.send(shard, batch) {
                return;
            }
        }
        if let Some(d) = &done {
            d.part_done();
            let now = clock.now_ms();
            status.first_live(msg.part, now);
            // A message stored within the last second has reached the
            // shards: this partition's backlog is behind it.
            if now - msg.arrival <= CAUGHT_UP_MS {
                status.caught_up(msg.part);
            }
        }
    }
}

/// Tells a partition task which of its messages are complete.
struct PartAcks(mpsc::UnboundedSender<u64>);

impl AckSink for PartAcks {
    fn complete(&self, token: u64) {
        let _ = self.0.send(token);
    }
}

/// One partition held by this instance.
pub struct PartitionRun {
    /// JetStream.
    pub js: jetstream::Context,
    /// The plain client (acknowledgements).
    pub client: async_nats::Client,
    /// Stream name.
    pub stream: String,
    /// The partition.
    pub part: u16,
    /// How much acknowledged history to replay, seconds.
    pub warmup_secs: u64,
    /// The fence and the figures.
    pub status: Arc<ClusterStatus>,
    /// To the decoder thread.
    pub to_decoder: mpsc::Sender<Inbound>,
}

fn published_ms(info: &jetstream::message::Info<'_>) -> i64 {
    i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

impl PartitionRun {
    /// Warms up, then consumes live until `stop` turns true or the lease
    /// is gone; then acknowledges what completes within a short grace.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .with_context(|| format!("stream {}", self.stream))?;
        let durable = format!("p{}", self.part);
        let (floor, before) = match stream.consumer_info(&durable).await {
            Ok(info) => (info.ack_floor.stream_sequence, true),
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => (0, false),
            Err(e) => return Err(e).with_context(|| format!("consumer {durable}")),
        };
        self.status
            .acquired(self.part, chrono::Utc::now().timestamp_millis(), before);
        let warmed = if floor > 0 {
            self.warm_up(&stream, floor, &mut stop).await?
        } else {
            0
        };
        if *stop.borrow() {
            return Ok(());
        }
        // Recreate the durable consumer at floor + 1: the old owner's
        // unacknowledged messages come at once and in order, and its
        // pulls end.
        let _ = stream.delete_consumer(&durable).await;
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: partition_filter(self.part),
            deliver_policy: if floor == 0 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: floor + 1,
                }
            },
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        let live = stream
            .create_consumer(config)
            .await
            .with_context(|| format!("cannot create consumer {durable}"))?;
        self.status.warmed(self.part, warmed);
        tracing::info!(
            partition = self.part,
            from_sequence = floor + 1,
            warmup_messages = warmed,
            "partition live"
        );
        let mut messages = live
            .messages()
            .await
            .with_context(|| format!("cannot pull from consumer {durable}"))?;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
        let sink: Arc<dyn AckSink> = Arc::new(PartAcks(done_tx));
        let mut acks: InOrderAcks<async_nats::Subject> = InOrderAcks::default();
        let mut token: u64 = 0;
        let mut pending_every = tokio::time::interval(PENDING_EVERY);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                Some(t) = done_rx.recv() => self.ack(acks.done(t)).await,
                _ = pending_every.tick() => {
                    if let Ok(info) = live.get_info().await {
                        self.status.set_pending(self.part, info.num_pending, info.num_ack_pending as u64);
                    }
                }
                next = messages.next() => match next {
                    Some(Ok(m)) => {
                        let Ok(info) = m.info() else { continue };
                        let arrival = published_ms(&info);
                        token += 1;
                        acks.received(token, m.message.reply.clone(), m.message.payload.len());
                        let inbound = Inbound {
                            part: self.part,
                            subject: m.message.subject.to_string(),
                            payload: m.message.payload.clone(),
                            arrival,
                            received: Instant::now(),
                            ack: Some((token, sink.clone())),
                        };
                        tokio::select! {
                            _ = stop.changed() => break,
                            sent = self.to_decoder.send(inbound) => if sent.is_err() { break },
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(partition = self.part, error = %e, "pulling from JetStream failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    None => anyhow::bail!("consumer {durable}: the message stream ended"),
                }
            }
        }
        // Acknowledge what completes within a short grace, so that a
        // partition handed back is taken over without redelivery.
        let grace = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(grace);
        while !acks.is_empty() {
            tokio::select! {
                _ = &mut grace => break,
                t = done_rx.recv() => match t {
                    Some(t) => self.ack(acks.done(t)).await,
                    None => break,
                },
            }
        }
        let _ = self.client.flush().await;
        Ok(())
    }

    async fn ack(&self, ready: Vec<async_nats::Subject>) {
        for reply in ready {
            if let Err(e) = self
                .client
                .publish(reply, Bytes::from_static(b"+ACK"))
                .await
            {
                tracing::warn!(partition = self.part, error = %e, "cannot acknowledge; JetStream will redeliver");
            }
        }
    }

    /// Replays the acknowledged messages of the last `warmup_secs` (up to
    /// stream sequence `floor`) as warm-up batches; returns how many.
    async fn warm_up(
        &self,
        stream: &jetstream::stream::Stream,
        floor: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<u64> {
        let start = time::OffsetDateTime::now_utc() - Duration::from_secs(self.warmup_secs);
        let config = consumer::pull::Config {
            filter_subject: partition_filter(self.part),
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: start },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        };
        let warm = stream
            .create_consumer(config)
            .await
            .context("cannot create the warm-up consumer")?;
        let name = warm.cached_info().name.clone();
        let mut n = 0u64;
        'outer: loop {
            let mut batch = warm
                .batch()
                .max_messages(512)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .context("warm-up pull")?;
            let mut got = 0;
            while let Some(m) = batch.next().await {
                let m = m.map_err(|e| anyhow::anyhow!("warm-up pull: {e}"))?;
                let Ok(info) = m.info() else { continue };
                if info.stream_sequence > floor {
                    break 'outer;
                }
                got += 1;
                let inbound = Inbound {
                    part: self.part,
                    subject: m.message.subject.to_string(),
                    payload: m.message.payload.clone(),
                    arrival: published_ms(&info),
                    received: Instant::now(),
                    ack: None,
                };
                tokio::select! {
                    _ = stop.changed() => break 'outer,
                    sent = self.to_decoder.send(inbound) => if sent.is_err() { break 'outer },
                }
                n += 1;
            }
            if got == 0 {
                break;
            }
        }
        let _ = stream.delete_consumer(&name).await;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IngestConfig, Registry, parse};

    fn decoder() -> Decoder {
        let (config, _) = parse(
            r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
points = [ { code = "A1", sensor = "0001", location = "face_t1" } ]
"#,
        )
        .expect("valid");
        Decoder::new(Registry::build(&config, 2), &IngestConfig::default(), 4096)
    }

    fn inbound(part: u16, subject: &str, payload: &str) -> Inbound {
        Inbound {
            part,
            subject: subject.into(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            arrival: 1_795_420_800_000,
            received: Instant::now(),
            ack: None,
        }
    }

    #[test]
    fn messages_decode_by_subject_and_a_wrong_partition_is_refused_with_the_fix() {
        let d = decoder();
        let body = r#"{"ts":1795420800000,"readings":[{"point":"A1","value":0.3,"status":0}]}"#;
        // 140121000001 is partition 1 of 16.
        let (_, payload, rejects) = decode(
            &d,
            16,
            &inbound(1, "part.1.mines.140121000001.telemetry", body),
        );
        assert!(rejects.is_empty(), "{rejects:?}");
        assert_eq!(payload.len(), 1);

        // With P = 5 it is partition 3: nats-server's mapping disagrees.
        let (_, payload, rejects) = decode(
            &d,
            5,
            &inbound(1, "part.1.mines.140121000001.telemetry", body),
        );
        assert!(payload.is_empty());
        assert_eq!(rejects[0].reason, RejectReason::UnknownTopic);
        assert!(
            rejects[0].detail.contains("cluster.partitions = 5"),
            "{}",
            rejects[0].detail
        );

        let (_, payload, rejects) = decode(&d, 16, &inbound(1, "mines.140121000001.x", body));
        assert!(payload.is_empty());
        assert_eq!(rejects[0].reason, RejectReason::UnknownTopic);

        let big = "x".repeat(5000);
        let (_, _, rejects) = decode(
            &d,
            16,
            &inbound(1, "part.1.mines.140121000001.telemetry", &big),
        );
        assert_eq!(rejects[0].reason, RejectReason::PayloadTooLarge);
    }
}
