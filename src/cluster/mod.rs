//! Cluster mode: several minewatch instances share one province through
//! NATS JetStream (docs/CLUSTER.md).
//!
//! Mines publish MQTT QoS 1 to `mines/{mine}/{telemetry,power,seal}` into
//! nats-server's MQTT listener; a server-side subject mapping puts each
//! message on `part.{p}.mines.{mine}.{stream}`, where `p` is the FNV-1a
//! hash of the mine code modulo the number of partitions (nats-server's
//! `{{partition(P,1)}}`, which [`partition_of`] computes the same way). A
//! JetStream stream keeps those subjects; each partition has one owner at a
//! time, held by a lease in a JetStream key-value bucket whose entries
//! expire after the lease TTL ([`lease`]). The owner pulls the partition's
//! messages through a durable consumer with explicit acknowledgement and
//! acknowledges a message only once its readings are durable in its journal
//! ([`source`]). A new owner first replays the partition's recent,
//! already-acknowledged history to warm its detectors (not archived again;
//! alerts it finds are continued in the shared store by their stable ids).
//!
//! The holder of the `leader` lease runs the cluster-wide timers
//! (re-notification, escalation, overdue tasks) and drains the push outbox,
//! so those happen once, not once per instance.

pub mod config;
pub mod coordinator;
pub mod lease;
pub mod source;
pub mod status;

pub use config::ClusterConfig;
pub use status::ClusterStatus;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::alert::outbox::{OutboxRow, OutboxStore};
use crate::ingest::mqtt::Stream;

/// The subjects the stream keeps: `part.{p}.mines.{mine}.{stream}`.
pub const STREAM_SUBJECTS: &str = "part.*.mines.*.*";

/// The partition of a mine: FNV-1a (32 bit) of its code modulo
/// `partitions`, as nats-server's `{{partition(P,1)}}` mapping computes it.
pub fn partition_of(mine: &str, partitions: u16) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in mine.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % u32::from(partitions.max(1))) as u16
}

/// The subject filter of one partition's consumer.
pub fn partition_filter(partition: u16) -> String {
    format!("part.{partition}.mines.*.*")
}

/// Splits `part.{p}.mines.{mine}.{stream}` into its partition, mine and
/// stream; `None` for any other subject.
pub fn parse_subject(subject: &str) -> Option<(u16, &str, Stream)> {
    let rest = subject.strip_prefix("part.")?;
    let (p, rest) = rest.split_once('.')?;
    let p: u16 = p.parse().ok()?;
    let rest = rest.strip_prefix("mines.")?;
    let (mine, suffix) = rest.split_once('.')?;
    let stream = Stream::ALL.into_iter().find(|s| s.suffix() == suffix)?;
    (!mine.is_empty()).then_some((p, mine, stream))
}

/// The push outbox as the dispatcher of one instance sees it: empty unless
/// this instance holds the `leader` lease, so that only one instance in
/// the cluster pushes. The backlog is the shared one.
pub struct LeaderOutbox {
    /// The shared store.
    pub store: Arc<dyn OutboxStore>,
    /// True while this instance holds the `leader` lease.
    pub leader: Arc<AtomicBool>,
}

impl OutboxStore for LeaderOutbox {
    fn due(&self, now_ms: i64, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        if !self.leader.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        self.store.due(now_ms, limit)
    }
    fn assign_batch(&self, ids: &[i64], batch_key: &str) -> anyhow::Result<()> {
        self.store.assign_batch(ids, batch_key)
    }
    fn delivered(&self, ids: &[i64], at_ms: i64) -> anyhow::Result<()> {
        self.store.delivered(ids, at_ms)
    }
    fn retry_later(&self, ids: &[i64], next_ms: i64, error: &str) -> anyhow::Result<()> {
        self.store.retry_later(ids, next_ms, error)
    }
    fn failed(&self, ids: &[i64], error: &str) -> anyhow::Result<()> {
        self.store.failed(ids, error)
    }
    fn backlog(&self) -> anyhow::Result<u64> {
        self.store.backlog()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_match_nats_servers_mapping() {
        // Checked against nats-server 2.9.10 with the mapping
        // "mines.*.*" -> "part.{{partition(16,1)}}.mines.{{wildcard(1)}}.{{wildcard(2)}}".
        assert_eq!(partition_of("140121000001", 16), 1);
        assert_eq!(partition_of("X2", 16), 15);
        assert_eq!(partition_of("anything", 1), 0);
        for code in ["a", "b", "140121000002", "140121000003"] {
            assert!(partition_of(code, 16) < 16);
        }
    }

    #[test]
    fn subjects_name_their_partition_mine_and_stream() {
        assert_eq!(
            parse_subject("part.3.mines.140121000001.telemetry"),
            Some((3, "140121000001", Stream::Telemetry))
        );
        assert_eq!(
            parse_subject("part.15.mines.m.seal"),
            Some((15, "m", Stream::Seal))
        );
        assert_eq!(parse_subject("part.x.mines.m.seal"), None);
        assert_eq!(parse_subject("part.1.mines.m.status"), None);
        assert_eq!(parse_subject("part.1.mines..power"), None);
        assert_eq!(parse_subject("mines.m.telemetry"), None);
        assert_eq!(partition_filter(7), "part.7.mines.*.*");
    }

    struct Rows;
    impl OutboxStore for Rows {
        fn due(&self, _: i64, _: usize) -> anyhow::Result<Vec<OutboxRow>> {
            anyhow::bail!("read")
        }
        fn assign_batch(&self, _: &[i64], _: &str) -> anyhow::Result<()> {
            Ok(())
        }
        fn delivered(&self, _: &[i64], _: i64) -> anyhow::Result<()> {
            Ok(())
        }
        fn retry_later(&self, _: &[i64], _: i64, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
        fn failed(&self, _: &[i64], _: &str) -> anyhow::Result<()> {
            Ok(())
        }
        fn backlog(&self) -> anyhow::Result<u64> {
            Ok(7)
        }
    }

    #[test]
    fn only_the_leader_reads_the_outbox() {
        let leader = Arc::new(AtomicBool::new(false));
        let o = LeaderOutbox {
            store: Arc::new(Rows),
            leader: leader.clone(),
        };
        assert!(o.due(0, 10).expect("not read").is_empty());
        assert_eq!(o.backlog().expect("backlog"), 7);
        leader.store(true, Ordering::Release);
        assert!(o.due(0, 10).is_err(), "the leader reads the store");
    }
}
