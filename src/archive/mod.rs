//! The Parquet archive: every accepted reading and every rejected record,
//! kept as evidence for auditors.
//!
//! Shard workers hand each processed batch's `Vec<Reading>` (moved, not
//! copied) to one archive thread over a bounded queue — a full queue blocks
//! the shard (backpressure), nothing is dropped — and the dead-letter store
//! hands it every rejected record. The thread buffers rows per stream and
//! UTC hour partition of their own time, and writes a partition out as one
//! zstd Parquet file (`{root}/{stream}/date=YYYY-MM-DD/hour=HH/{start}-{seq}.parquet`,
//! sorted by mine, point and event time) when it holds `max_rows_per_file`
//! rows, when its oldest row has waited `flush_secs`, and on shutdown. A
//! file appears only complete (see [`file`]). A write that fails is logged,
//! counted, and retried later with the rows kept.
//!
//! Not yet here: the journal that makes buffered rows survive `kill -9`,
//! replay, audit and retention (issue #6, later slices).

pub mod file;
pub mod partition;
pub mod schema;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::config::{ArchiveConfig, SharedRegistry};
use crate::metrics::Metrics;
use crate::model::{Millis, Reading};

pub use partition::{Hour, partition_of};
pub use schema::{ReadingRow, RejectedRow};

/// Name of the stream of accepted readings (its folder and metric label).
pub const READINGS: &str = "readings";
/// Name of the stream of rejected records.
pub const REJECTED: &str = "rejected";

/// Tries to write out the buffers at shutdown, a second apart.
const SHUTDOWN_ATTEMPTS: u32 = 3;

/// What the archive thread receives.
pub enum ArchiveMsg {
    /// The readings of one processed batch.
    Readings {
        /// The readings, as the shard applied them.
        readings: Vec<Reading>,
        /// Processing time of receipt.
        arrival: Millis,
        /// Source name (`mqtt`, `modbus`, `netfile`).
        source: &'static str,
    },
    /// One rejected record.
    Rejected(RejectedRow),
    /// Write out everything buffered and stop.
    Finish,
}

/// The running settings of the archive thread.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    /// The archive root; streams are folders below it.
    pub root: PathBuf,
    /// Longest time a row waits in the buffer before its file is written.
    pub flush_after: Duration,
    /// Rows that make a partition's file be written at once.
    pub max_rows_per_file: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// First part of every file name (processing time at start, ms), so
    /// files of different runs never collide.
    pub start: Millis,
}

impl ArchiveSettings {
    /// Settings from the config, rooted under `data_dir` unless
    /// `archive.dir` says otherwise.
    pub fn build(config: &ArchiveConfig, data_dir: &std::path::Path, start: Millis) -> Self {
        ArchiveSettings {
            root: config.root(data_dir),
            flush_after: Duration::from_secs(config.flush_secs.max(1)),
            max_rows_per_file: config.max_rows_per_file.max(1),
            row_group_rows: config.row_group_rows.max(1),
            start,
        }
    }
}

/// The running archive thread and the sending end of its queue.
pub struct Archive {
    tx: Sender<ArchiveMsg>,
    thread: JoinHandle<()>,
}

impl Archive {
    /// Starts the archive thread with a queue of `capacity` messages.
    pub fn start(
        settings: ArchiveSettings,
        registry: SharedRegistry,
        metrics: Arc<Metrics>,
        capacity: usize,
    ) -> std::io::Result<Archive> {
        std::fs::create_dir_all(&settings.root)?;
        let (tx, rx) = bounded(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("archive".into())
            .spawn(move || ArchiveWriter::new(settings, registry, metrics).run(rx))?;
        Ok(Archive { tx, thread })
    }

    /// A sender for shards and the dead-letter store.
    pub fn sender(&self) -> Sender<ArchiveMsg> {
        self.tx.clone()
    }

    /// Writes out everything buffered and waits for the thread. Call it
    /// after every shard has drained.
    pub fn finish(self) {
        let _ = self.tx.send(ArchiveMsg::Finish);
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("the archive thread panicked");
        }
    }
}

/// Rows of one stream and hour waiting to be written.
struct Pending<R> {
    rows: Vec<R>,
    /// When the oldest buffered row arrived.
    since: Instant,
    /// After a failed write, no new attempt before this.
    retry_at: Option<Instant>,
}

impl<R> Pending<R> {
    fn new(now: Instant) -> Self {
        Pending {
            rows: Vec::new(),
            since: now,
            retry_at: None,
        }
    }

    fn due(&self, now: Instant, settings: &ArchiveSettings, finishing: bool) -> bool {
        if finishing {
            return true;
        }
        if self.retry_at.is_some_and(|t| now < t) {
            return false;
        }
        self.rows.len() >= settings.max_rows_per_file
            || now.duration_since(self.since) >= settings.flush_after
    }
}

/// The archive thread's state: buffers per stream and partition.
pub struct ArchiveWriter {
    settings: ArchiveSettings,
    registry: SharedRegistry,
    metrics: Arc<Metrics>,
    readings: BTreeMap<Hour, Pending<ReadingRow>>,
    rejected: BTreeMap<Hour, Pending<RejectedRow>>,
    seq: u64,
}

impl ArchiveWriter {
    /// A writer with empty buffers.
    pub fn new(settings: ArchiveSettings, registry: SharedRegistry, metrics: Arc<Metrics>) -> Self {
        ArchiveWriter {
            settings,
            registry,
            metrics,
            readings: BTreeMap::new(),
            rejected: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Receives until [`ArchiveMsg::Finish`] or until every sender is gone,
    /// writing files as they fall due; then writes out everything.
    pub fn run(mut self, rx: Receiver<ArchiveMsg>) {
        let poll = self.settings.flush_after.min(Duration::from_secs(1));
        let mut last_check = Instant::now();
        loop {
            match rx.recv_timeout(poll) {
                Ok(ArchiveMsg::Finish) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(msg) => self.accept(msg, Instant::now()),
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now.duration_since(last_check) >= Duration::from_millis(200) || self.any_full() {
                self.flush(now, false);
                last_check = now;
            }
        }
        // Shutdown: everything out, with a few tries for a file system that
        // is briefly unwell.
        for attempt in 1..=SHUTDOWN_ATTEMPTS {
            self.flush(Instant::now(), true);
            if self.buffered() == (0, 0) {
                return;
            }
            if attempt < SHUTDOWN_ATTEMPTS {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let (readings, rejected) = self.buffered();
        tracing::error!(
            readings,
            rejected,
            "archive: rows could not be written before shutdown and are lost"
        );
    }

    /// Buffers one message.
    pub fn accept(&mut self, msg: ArchiveMsg, now: Instant) {
        match msg {
            ArchiveMsg::Readings {
                readings,
                arrival,
                source,
            } => {
                for r in readings {
                    let hour = partition_of(r.ts, arrival);
                    self.readings
                        .entry(hour)
                        .or_insert_with(|| Pending::new(now))
                        .rows
                        .push(ReadingRow {
                            point: r.point,
                            ts: r.ts,
                            arrival,
                            value: r.value,
                            status: r.status,
                            source,
                        });
                }
            }
            ArchiveMsg::Rejected(row) => {
                let hour = partition_of(row.at, row.at);
                self.rejected
                    .entry(hour)
                    .or_insert_with(|| Pending::new(now))
                    .rows
                    .push(row);
            }
            ArchiveMsg::Finish => {}
        }
    }

    fn any_full(&self) -> bool {
        let max = self.settings.max_rows_per_file;
        self.readings
            .values()
            .any(|p| p.rows.len() >= max && p.retry_at.is_none())
            || self
                .rejected
                .values()
                .any(|p| p.rows.len() >= max && p.retry_at.is_none())
    }

    /// Rows buffered and not yet in a finished file, per stream.
    pub fn buffered(&self) -> (usize, usize) {
        (
            self.readings.values().map(|p| p.rows.len()).sum(),
            self.rejected.values().map(|p| p.rows.len()).sum(),
        )
    }

    /// Writes every partition that is due (all of them, retry delays
    /// ignored, when `finishing`). A partition that fails keeps its rows and
    /// is retried later.
    pub fn flush(&mut self, now: Instant, finishing: bool) {
        let retry_delay = self.settings.flush_after.min(Duration::from_secs(5));
        let due: Vec<Hour> = self
            .readings
            .iter()
            .filter(|(_, p)| p.due(now, &self.settings, finishing))
            .map(|(h, _)| *h)
            .collect();
        for hour in due {
            let Some(mut pending) = self.readings.remove(&hour) else {
                continue;
            };
            match self.write_readings(hour, &mut pending.rows) {
                Ok(()) => {}
                Err(()) => {
                    pending.retry_at = Some(now + retry_delay);
                    self.readings.insert(hour, pending);
                }
            }
        }
        let due: Vec<Hour> = self
            .rejected
            .iter()
            .filter(|(_, p)| p.due(now, &self.settings, finishing))
            .map(|(h, _)| *h)
            .collect();
        for hour in due {
            let Some(mut pending) = self.rejected.remove(&hour) else {
                continue;
            };
            match self.write_rejected(hour, &mut pending.rows) {
                Ok(()) => {}
                Err(()) => {
                    pending.retry_at = Some(now + retry_delay);
                    self.rejected.insert(hour, pending);
                }
            }
        }
    }

    fn next_paths(&mut self, stream: &str, hour: Hour) -> (PathBuf, PathBuf) {
        self.seq += 1;
        partition::file_paths(
            &self.settings.root,
            stream,
            hour,
            self.settings.start,
            self.seq,
        )
    }

    fn write_readings(&mut self, hour: Hour, rows: &mut [ReadingRow]) -> Result<(), ()> {
        let registry = self.registry.snapshot();
        schema::sort_readings(rows, &registry);
        let (done, temp) = self.next_paths(READINGS, hour);
        let result = schema::readings_batch(rows, &registry)
            .map_err(|e| e.to_string())
            .and_then(|batch| {
                file::write_atomically(
                    &done,
                    &temp,
                    schema::readings_schema(),
                    &batch,
                    self.settings.row_group_rows,
                )
                .map_err(|e| e.to_string())
            });
        self.outcome(READINGS, &done, rows.len(), result)
    }

    fn write_rejected(&mut self, hour: Hour, rows: &mut [RejectedRow]) -> Result<(), ()> {
        schema::sort_rejected(rows);
        let (done, temp) = self.next_paths(REJECTED, hour);
        let result = schema::rejected_batch(rows)
            .map_err(|e| e.to_string())
            .and_then(|batch| {
                file::write_atomically(
                    &done,
                    &temp,
                    schema::rejected_schema(),
                    &batch,
                    self.settings.row_group_rows,
                )
                .map_err(|e| e.to_string())
            });
        self.outcome(REJECTED, &done, rows.len(), result)
    }

    fn outcome(
        &self,
        stream: &'static str,
        done: &std::path::Path,
        rows: usize,
        result: Result<(), String>,
    ) -> Result<(), ()> {
        match result {
            Ok(()) => {
                self.metrics
                    .archive_rows
                    .with_label_values(&[stream])
                    .inc_by(rows as u64);
                self.metrics
                    .archive_files
                    .with_label_values(&[stream])
                    .inc();
                tracing::debug!(stream, rows, file = %done.display(), "archive file written");
                Ok(())
            }
            Err(error) => {
                self.metrics
                    .archive_write_errors
                    .with_label_values(&[stream])
                    .inc();
                tracing::error!(stream, rows, %error, "archive: cannot write file; rows kept for a retry");
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
