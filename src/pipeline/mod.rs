//! The pipeline between the sources and the sinks: decoded readings are
//! routed by mine to N shard threads over bounded `crossbeam-channel` queues
//! (a full queue blocks the sender: backpressure, never a drop), ticks carry
//! processing time to the shards, and findings leave on one queue to the
//! alert stage.
//!
//! A message is complete when every shard it touched has applied its
//! readings and — with the archive on — the archive journal has made them
//! durable; its [`Completion`] then tells the source, which acknowledges it
//! to the broker.

pub mod shard;
pub mod trend;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::archive::ArchiveMsg;
use crate::config::SharedRegistry;
use crate::metrics::Metrics;
use crate::model::{Finding, Millis, PowerSample, Reading, SealEvent};

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::completion::{AckSink, Completion};
pub use shard::{PointStateBytes, ShardCore};

/// What one batch carries: monitoring readings, a mine's power samples or
/// its seal events.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Readings of monitoring points (gas, CO, air, switches …).
    Readings(Vec<Reading>),
    /// Electricity-use samples of one mine.
    Power(Vec<PowerSample>),
    /// Electronic-seal events of one mine.
    Seal(Vec<SealEvent>),
}

impl Payload {
    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Payload::Readings(r) => r.len(),
            Payload::Power(p) => p.len(),
            Payload::Seal(s) => s.len(),
        }
    }

    /// True when it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The source name of warm-up batches: readings already durable in some
/// instance's archive, replayed so that a new owner of a cluster partition
/// starts with warm detectors. The shard applies them and passes their
/// findings on (the store continues an alert it already holds), but
/// neither archives them again nor shows them in the trends.
pub const WARM_UP_SOURCE: &str = "warm-up";

/// Which mines' silence this instance watches (cluster mode: those of the
/// partitions it holds); every mine's when none is given.
pub type WatchedMines = Arc<dyn Fn(&crate::config::MineMeta) -> bool + Send + Sync>;

/// The records of one message for one shard.
pub struct Batch {
    /// The records, all of mines owned by the receiving shard.
    pub payload: Payload,
    /// Processing time of receipt.
    pub arrival: Millis,
    /// Instant of receipt, for latency metrics.
    pub received: Instant,
    /// Source name for metrics (`mqtt`, …).
    pub source: &'static str,
    /// Told when this batch has been processed.
    pub done: Option<Arc<Completion>>,
}

/// A finding on its way to the alert stage.
#[derive(Debug, Clone, Copy)]
pub struct Emitted {
    /// What the detector concluded.
    pub finding: Finding,
    /// Receipt of the message that caused it (none for ticks).
    pub received: Option<Instant>,
}

/// Sends batches to the shard that owns their mines. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inputs: Vec<Sender<Batch>>,
}

impl Router {
    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.inputs.len()
    }

    /// Sends a batch to a shard, waiting while its queue is full. Returns
    /// false when the pipeline has shut down.
    pub fn send(&self, shard: usize, batch: Batch) -> bool {
        self.inputs[shard].send(batch).is_ok()
    }
}

/// How the shards start.
pub struct ShardSetup {
    /// Batches each shard's input queue holds.
    pub queue_batches: usize,
    /// Processing time at start (new feeds count as heard from then).
    pub started: Millis,
    /// With it, the silence detectors look only at the mines it accepts.
    pub watched: Option<WatchedMines>,
}

/// The running shards.
pub struct Pipeline {
    router: Router,
    ticks: Vec<Sender<Millis>>,
    workers: Vec<JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    /// Starts one thread per shard of `registry`; findings go to `findings`,
    /// each processed batch's readings to `trends` (when given) and, when an
    /// archive runs, to `archive`.
    pub fn start(
        registry: SharedRegistry,
        metrics: Arc<Metrics>,
        findings: Sender<Emitted>,
        archive: Option<Sender<ArchiveMsg>>,
        trends: Option<Arc<trend::Trends>>,
        setup: ShardSetup,
    ) -> std::io::Result<Pipeline> {
        let ShardSetup {
            queue_batches,
            started,
            watched,
        } = setup;
        let mut inputs = Vec::new();
        let mut ticks = Vec::new();
        let mut workers = Vec::new();
        for shard in 0..registry.snapshot().shards {
            let (tx, rx): (Sender<Batch>, Receiver<Batch>) = bounded(queue_batches);
            let (tick_tx, tick_rx) = bounded(1);
            let mut core = ShardCore::new(registry.clone(), shard, started);
            if let Some(w) = &watched {
                core.watch_only(w.clone());
            }
            let findings = findings.clone();
            let metrics = metrics.clone();
            let archive = archive.clone();
            let sinks = shard::WorkerSinks {
                findings,
                archive,
                trends: trends.clone().map(|t| (t, shard)),
            };
            let handle = std::thread::Builder::new()
                .name(format!("shard-{shard}"))
                .spawn(move || shard::run_worker(core, rx, tick_rx, sinks, metrics))?;
            inputs.push(tx);
            ticks.push(tick_tx);
            workers.push(handle);
        }
        Ok(Pipeline {
            router: Router { inputs },
            ticks,
            workers,
            metrics,
        })
    }

    /// A router for sources.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Carries processing time `now` to every shard, and samples queue
    /// depths. A shard that still has a tick waiting keeps that one (the
    /// next tick carries a later time).
    pub fn tick(&self, now: Millis) {
        for (shard, tx) in self.ticks.iter().enumerate() {
            match tx.try_send(now) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => self.metrics.ticks_coalesced.inc(),
            }
            self.metrics
                .queue_depth
                .with_label_values(&[&shard.to_string()])
                .set(self.router.inputs[shard].len() as i64);
        }
    }

    /// Closes the queues and waits for every shard to drain.
    pub fn shutdown(self) {
        drop(self.router);
        drop(self.ticks);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<u64>>);
    impl AckSink for Recorder {
        fn complete(&self, token: u64) {
            self.0.lock().unwrap().push(token);
        }
    }

    #[test]
    fn a_completion_fires_once_after_its_last_part() {
        let sink = Arc::new(Recorder(Mutex::new(Vec::new())));
        let c = Completion::new(3, 42, sink.clone());
        c.part_done();
        c.part_done();
        assert!(sink.0.lock().unwrap().is_empty());
        c.part_done();
        assert_eq!(*sink.0.lock().unwrap(), [42]);
    }
}
