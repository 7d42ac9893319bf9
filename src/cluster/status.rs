//! What this instance knows of the cluster: which partitions it holds (the
//! fence the ingest path checks before every message), which of them are
//! warmed up (the offline detector watches only those mines), who owns the
//! others, lease ages, consumer backlog, takeovers — for `GET /api/cluster`
//! and the `minewatch_cluster_*` metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, atomic::AtomicU64};

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts};
use serde::Serialize;

use super::partition_of;
use crate::metrics::Metrics;

/// One partition as this instance sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PartitionView {
    /// Partition number.
    pub partition: u16,
    /// The lease holder, if any.
    pub owner: Option<String>,
    /// Age of the lease entry (time since its last renewal), ms.
    pub lease_age_ms: Option<i64>,
    /// Messages not yet delivered to the owner (JetStream `num_pending`),
    /// reported by the owner; `None` on other instances.
    pub pending: Option<u64>,
    /// Messages delivered and not yet acknowledged (owner only).
    pub ack_pending: Option<u64>,
    /// Held here and warmed up.
    pub live_here: bool,
    /// When this instance took it, ms since the epoch.
    pub acquired_ms: Option<i64>,
    /// Messages replayed to warm the detectors at the last take.
    pub warmup_messages: Option<u64>,
    /// From taking the lease to the first live message handed to the
    /// shards, ms (the last take).
    pub takeover_ms: Option<i64>,
}

/// An instance heard from.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// Its id.
    pub id: String,
    /// Time since its last heartbeat, ms.
    pub heartbeat_age_ms: i64,
}

/// The answer of `GET /api/cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// This instance.
    pub instance: String,
    /// True while connected to NATS.
    pub nats_connected: bool,
    /// True while this instance holds the leader lease (timers, pushes).
    pub leader: bool,
    /// Partitions in all.
    pub partitions: u16,
    /// Instances with a live heartbeat.
    pub instances: Vec<InstanceView>,
    /// Every partition.
    pub partition: Vec<PartitionView>,
    /// Partitions this instance took that had been consumed before.
    pub takeovers: u64,
    /// Leases this instance lost (not renewed in time, or taken).
    pub leases_lost: u64,
    /// Messages dropped unprocessed because their partition's lease was
    /// no longer held (fenced; redelivered to the new owner).
    pub fenced_messages: u64,
}

struct Gauges {
    held: IntGauge,
    leader: IntGauge,
    connected: IntGauge,
    takeovers: IntCounter,
    lost: IntCounter,
    fenced: IntCounter,
    warmup: IntCounter,
    pending: IntGaugeVec,
    takeover_ms: IntGauge,
}

/// Shared by the coordinator, the partition consumers, the decoder, the
/// shards (offline watch) and the API.
pub struct ClusterStatus {
    /// This instance's id.
    pub instance_id: String,
    /// Number of partitions.
    pub partitions: u16,
    /// Leader lease held: the lifecycle's timers and the outbox run here.
    pub leader: Arc<AtomicBool>,
    held: Vec<AtomicBool>,
    /// Held, warmed up and caught up with the stream: the silence of its
    /// mines is watched here.
    watching: Vec<AtomicBool>,
    fenced: AtomicU64,
    view: Mutex<ClusterView>,
    gauges: Gauges,
}

impl ClusterStatus {
    /// A status with nothing held; metrics registered in `metrics`.
    pub fn new(instance_id: &str, partitions: u16, metrics: &Metrics) -> Arc<ClusterStatus> {
        let r = &metrics.registry;
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let pending = IntGaugeVec::new(
            Opts::new(
                "minewatch_cluster_pending",
                "JetStream messages not yet delivered, per partition held here",
            ),
            &["partition"],
        )
        .expect("valid metric");
        r.register(Box::new(pending.clone()))
            .expect("unique metric");
        let gauges = Gauges {
            held: gauge(
                "minewatch_cluster_partitions_held",
                "Partitions whose lease this instance holds",
            ),
            leader: gauge(
                "minewatch_cluster_leader",
                "1 while this instance holds the leader lease",
            ),
            connected: gauge(
                "minewatch_nats_connected",
                "1 while connected to NATS and the stream and bucket are ready",
            ),
            takeovers: counter(
                "minewatch_cluster_takeovers_total",
                "Partitions taken over that had been consumed before",
            ),
            lost: counter(
                "minewatch_cluster_leases_lost_total",
                "Leases lost: not renewed in time or taken by another instance",
            ),
            fenced: counter(
                "minewatch_cluster_fenced_messages_total",
                "Messages dropped unprocessed because their lease was no longer held",
            ),
            warmup: counter(
                "minewatch_cluster_warmup_messages_total",
                "Acknowledged messages replayed to warm the detectors after a take",
            ),
            pending,
            takeover_ms: gauge(
                "minewatch_cluster_last_takeover_ms",
                "From taking a lease to the first live message handed to the shards, last take",
            ),
        };
        let n = usize::from(partitions);
        Arc::new(ClusterStatus {
            instance_id: instance_id.to_string(),
            partitions,
            leader: Arc::new(AtomicBool::new(false)),
            held: (0..n).map(|_| AtomicBool::new(false)).collect(),
            watching: (0..n).map(|_| AtomicBool::new(false)).collect(),
            fenced: AtomicU64::new(0),
            view: Mutex::new(ClusterView {
                instance: instance_id.to_string(),
                nats_connected: false,
                leader: false,
                partitions,
                instances: Vec::new(),
                partition: (0..partitions)
                    .map(|p| PartitionView {
                        partition: p,
                        ..PartitionView::default()
                    })
                    .collect(),
                takeovers: 0,
                leases_lost: 0,
                fenced_messages: 0,
            }),
            gauges,
        })
    }

    fn with_view<T>(&self, f: impl FnOnce(&mut ClusterView) -> T) -> T {
        f(&mut self.view.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// True while this instance holds partition `p`'s lease.
    pub fn holds(&self, p: u16) -> bool {
        self.held
            .get(usize::from(p))
            .is_some_and(|h| h.load(Ordering::Acquire))
    }

    /// True when the mine's partition is held here, warmed up and caught
    /// up with the stream: its silence is this instance's to watch. (While
    /// a new owner works through the backlog, the last arrivals it has
    /// seen are older than the mines' real last messages.)
    pub fn watches_mine(&self, code: &str) -> bool {
        let p = usize::from(partition_of(code, self.partitions));
        self.watching
            .get(p)
            .is_some_and(|l| l.load(Ordering::Acquire))
    }

    /// Partition `p` taken (`before`: it had been consumed before).
    pub fn acquired(&self, p: u16, now_ms: i64, before: bool) {
        if let Some(h) = self.held.get(usize::from(p)) {
            h.store(true, Ordering::Release);
        }
        self.gauges.held.inc();
        if before {
            self.gauges.takeovers.inc();
        }
        self.with_view(|v| {
            if before {
                v.takeovers += 1;
            }
            if let Some(pv) = v.partition.get_mut(usize::from(p)) {
                pv.owner = Some(self.instance_id.clone());
                pv.acquired_ms = Some(now_ms);
                pv.takeover_ms = None;
                pv.warmup_messages = None;
            }
        });
    }

    /// Partition `p` warmed up with `messages` replayed: live from now.
    pub fn warmed(&self, p: u16, messages: u64) {
        self.gauges.warmup.inc_by(messages);
        self.with_view(|v| {
            if let Some(pv) = v.partition.get_mut(usize::from(p)) {
                pv.live_here = true;
                pv.warmup_messages = Some(messages);
            }
        });
    }

    /// The first live message of partition `p` since it was taken reached
    /// the shards at `now_ms`.
    pub fn first_live(&self, p: u16, now_ms: i64) {
        self.with_view(|v| {
            if let Some(pv) = v.partition.get_mut(usize::from(p))
                && pv.takeover_ms.is_none()
                && let Some(a) = pv.acquired_ms
            {
                pv.takeover_ms = Some(now_ms - a);
                self.gauges.takeover_ms.set(now_ms - a);
            }
        });
    }

    /// Partition `p` no longer held (`lost`: not handed back on purpose).
    pub fn released(&self, p: u16, lost: bool) {
        let i = usize::from(p);
        if let Some(h) = self.held.get(i) {
            h.store(false, Ordering::Release);
        }
        if let Some(l) = self.watching.get(i) {
            l.store(false, Ordering::Release);
        }
        self.gauges.held.dec();
        if lost {
            self.gauges.lost.inc();
        }
        let _ = self.gauges.pending.remove_label_values(&[&p.to_string()]);
        self.with_view(|v| {
            if lost {
                v.leases_lost += 1;
            }
            if let Some(pv) = v.partition.get_mut(i) {
                pv.live_here = false;
                pv.pending = None;
                pv.ack_pending = None;
            }
        });
    }

    /// The leader lease was taken (true) or is no longer held (false).
    pub fn set_leader(&self, on: bool) {
        self.leader.store(on, Ordering::Release);
        self.gauges.leader.set(i64::from(on));
        self.with_view(|v| v.leader = on);
    }

    /// Connected to NATS (and the stream and bucket are ready), or not.
    pub fn set_connected(&self, on: bool) {
        self.gauges.connected.set(i64::from(on));
        self.with_view(|v| v.nats_connected = on);
    }

    /// Partition `p` has caught up: the silence of its mines is watched
    /// from now on (until it is released).
    pub fn caught_up(&self, p: u16) {
        if self.holds(p)
            && let Some(w) = self.watching.get(usize::from(p))
        {
            w.store(true, Ordering::Release);
        }
    }

    /// The owner's view of partition `p`'s consumer backlog; with nothing
    /// left to deliver nor in flight (a quiet partition), it has caught up.
    pub fn set_pending(&self, p: u16, pending: u64, ack_pending: u64) {
        if pending == 0 && ack_pending == 0 {
            self.caught_up(p);
        }
        self.gauges
            .pending
            .with_label_values(&[&p.to_string()])
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.with_view(|v| {
            if let Some(pv) = v.partition.get_mut(usize::from(p)) {
                pv.pending = Some(pending);
                pv.ack_pending = Some(ack_pending);
            }
        });
    }

    /// What the last round read from the bucket: every partition's owner
    /// and lease age, and the live instances.
    pub fn set_owners(
        &self,
        owners: Vec<(Option<String>, Option<i64>)>,
        instances: Vec<InstanceView>,
    ) {
        self.with_view(|v| {
            for (pv, (owner, age)) in v.partition.iter_mut().zip(owners) {
                pv.owner = owner;
                pv.lease_age_ms = age;
            }
            v.instances = instances;
        });
    }

    /// A message of a partition no longer held was dropped.
    pub fn fenced_message(&self) {
        self.fenced.fetch_add(1, Ordering::Relaxed);
        self.gauges.fenced.inc();
    }

    /// Everything, for `GET /api/cluster`.
    pub fn view(&self) -> ClusterView {
        let mut v = self.with_view(|v| v.clone());
        v.fenced_messages = self.fenced.load(Ordering::Relaxed);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_warming_and_releasing_show_in_the_view_and_the_fence() {
        let m = Metrics::new(1);
        let s = ClusterStatus::new("mw-1", 16, &m);
        let mine = "140121000001"; // partition 1
        assert!(!s.holds(1) && !s.watches_mine(mine));
        s.acquired(1, 1000, true);
        assert!(s.holds(1));
        assert!(!s.watches_mine(mine), "not watched before its warm-up");
        s.warmed(1, 42);
        s.set_pending(1, 10, 0);
        s.set_pending(1, 0, 3);
        assert!(!s.watches_mine(mine), "not while messages are in flight");
        s.set_pending(1, 0, 0);
        assert!(s.watches_mine(mine), "a quiet partition has caught up");
        s.first_live(1, 1700);
        s.first_live(1, 9000);
        let v = s.view();
        assert_eq!(v.takeovers, 1);
        assert_eq!(
            v.partition[1].takeover_ms,
            Some(700),
            "the first live message counts"
        );
        assert_eq!(v.partition[1].warmup_messages, Some(42));
        s.released(1, true);
        assert!(!s.holds(1) && !s.watches_mine(mine));
        assert_eq!(s.view().leases_lost, 1);
        assert!(m.render().contains("minewatch_cluster_takeovers_total 1"));
    }
}
