//! Leases on partitions in the NATS key-value bucket, and the rule that
//! spreads partitions over the live instances.
//!
//! A lease is the key `part-{p}` (or `leader`) holding its owner's id. It
//! is taken with `create` (succeeds only when the key is absent or
//! deleted) and renewed with `update` against the revision the owner last
//! wrote: both are compare-and-set in JetStream (expected last subject
//! sequence), so two instances can never both hold one key. The bucket's
//! `max_age` is the lease TTL: an entry not rewritten within it is removed
//! by the server, and the key is free for anyone's `create`. An owner that
//! cannot renew in time stops processing the partition on its own
//! (fencing by time, [`Held::fenced`]) before the entry can expire.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The key of a partition's lease.
pub fn partition_key(p: u16) -> String {
    format!("part-{p}")
}

/// The key of the leader lease.
pub const LEADER_KEY: &str = "leader";

/// The key of an instance's heartbeat.
pub fn instance_key(id: &str) -> String {
    format!("inst-{id}")
}

/// Prefix of the heartbeat keys.
pub const INSTANCE_PREFIX: &str = "inst-";

/// What a lease or heartbeat entry holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The owner's instance id.
    pub owner: String,
    /// When it was written, ms since the epoch (owner's clock).
    pub at_ms: i64,
}

impl LeaseValue {
    /// As stored.
    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self).unwrap_or_default().into()
    }

    /// From storage; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<LeaseValue> {
        serde_json::from_slice(b).ok()
    }
}

/// A lease this instance holds.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// Revision of our last write: the next renewal must match it.
    pub revision: u64,
    /// When our last write was sent (its entry expires TTL after it was
    /// stored, which is later).
    pub renewed: Instant,
}

impl Held {
    /// True once this lease may have expired on the server: the owner must
    /// stop processing before another can take it. The margin covers a
    /// renewal still on its way.
    pub fn fenced(&self, ttl: Duration, now: Instant) -> bool {
        now.duration_since(self.renewed) + fence_margin(ttl) >= ttl
    }
}

/// How long before the TTL an owner that could not renew stops.
pub fn fence_margin(ttl: Duration) -> Duration {
    (ttl / 4).max(Duration::from_millis(500))
}

/// What one round of the coordinator does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Partitions to hand back (after draining), highest first.
    pub release: Vec<u16>,
    /// Free partitions to try to take, in order.
    pub claim: Vec<u16>,
}

/// The fair share of `partitions` over `live` instances (rounded up).
pub fn fair_share(partitions: u16, live: usize) -> usize {
    let live = live.max(1);
    (usize::from(partitions)).div_ceil(live)
}

/// Plans a round: an instance over its fair share hands back its highest
/// partitions; one under it tries free ones, starting at `offset` (so that
/// instances that start together try different partitions first).
pub fn plan(
    partitions: u16,
    held: &BTreeSet<u16>,
    free: &BTreeSet<u16>,
    live: usize,
    offset: u16,
) -> Plan {
    let fair = fair_share(partitions, live);
    if held.len() > fair {
        return Plan {
            release: held.iter().rev().take(held.len() - fair).copied().collect(),
            claim: Vec::new(),
        };
    }
    let want = fair - held.len();
    let p = partitions.max(1);
    let claim = (0..p)
        .map(|i| (i + offset % p) % p)
        .filter(|x| free.contains(x) && !held.contains(x))
        .take(want)
        .collect();
    Plan {
        release: Vec::new(),
        claim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u16]) -> BTreeSet<u16> {
        v.iter().copied().collect()
    }

    #[test]
    fn a_lone_instance_takes_every_free_partition() {
        let p = plan(4, &set(&[]), &set(&[0, 1, 2, 3]), 1, 0);
        assert_eq!(p.claim, [0, 1, 2, 3]);
        assert!(p.release.is_empty());
    }

    #[test]
    fn a_joining_instance_makes_the_holder_hand_back_its_extra_share() {
        // Two live instances, 16 partitions: eight each.
        let p = plan(16, &(0..16).collect(), &set(&[]), 2, 0);
        assert_eq!(p.release, [15, 14, 13, 12, 11, 10, 9, 8]);
        let newcomer = plan(16, &set(&[]), &(8..16).collect(), 2, 3);
        assert_eq!(newcomer.claim, [8, 9, 10, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn survivors_take_a_dead_instances_partitions_up_to_their_share() {
        // Three instances had 6/6/4; one died; two remain: eight each.
        let a = plan(16, &(0..6).collect(), &(12..16).collect(), 2, 0);
        assert_eq!(a.claim, [12, 13]);
        let b = plan(16, &(6..12).collect(), &(12..16).collect(), 2, 5);
        assert_eq!(b.claim, [12, 13], "CAS decides who gets which");
        assert_eq!(fair_share(16, 3), 6);
        assert_eq!(fair_share(16, 0), 16);
    }

    #[test]
    fn an_owner_fences_itself_before_its_lease_can_expire() {
        let ttl = Duration::from_secs(6);
        let t0 = Instant::now();
        let h = Held {
            revision: 1,
            renewed: t0,
        };
        assert!(!h.fenced(ttl, t0 + Duration::from_secs(4)));
        assert!(h.fenced(ttl, t0 + Duration::from_millis(4500)));
        assert!(h.fenced(ttl, t0 + ttl));
    }

    #[test]
    fn lease_values_round_trip_and_junk_is_refused() {
        let v = LeaseValue {
            owner: "mw-1".into(),
            at_ms: 5,
        };
        assert_eq!(LeaseValue::decode(&v.encode()), Some(v));
        assert_eq!(LeaseValue::decode(b"junk"), None);
        assert_eq!(partition_key(3), "part-3");
        assert_eq!(instance_key("a"), "inst-a");
    }
}
