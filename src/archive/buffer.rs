//! The writer thread's buffers: rows of one stream waiting, per hour
//! partition, for their Parquet file, with the journal segments that hold
//! them; and the file writer that turns a partition into a finished file
//! and counts the outcome. Written once for every [`Stream`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ArchiveSettings;
use super::journal::SegmentId;
use super::partition::{self, Hour};
use super::stream::{Stream, write_partition};
use crate::config::SharedRegistry;
use crate::metrics::Metrics;

/// Rows of one stream and hour waiting to be written.
pub(super) struct Pending<R> {
    /// The rows, in arrival order.
    pub rows: Vec<R>,
    /// Rows per journal segment that holds them.
    pub segments: BTreeMap<SegmentId, usize>,
    /// When the oldest buffered row arrived.
    since: Instant,
    /// After a failed write, no new attempt before this.
    retry_at: Option<Instant>,
    /// Heap bytes the rows own beyond their own size (strings of rejected
    /// records and the like; none for readings).
    heap: usize,
}

impl<R> Pending<R> {
    fn new(now: Instant) -> Self {
        Pending {
            rows: Vec::new(),
            segments: BTreeMap::new(),
            since: now,
            retry_at: None,
            heap: 0,
        }
    }

    /// Memory the rows take: the buffer as allocated, and what they own.
    fn bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<R>() + self.heap
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

/// The buffered rows of stream `S`, by hour partition.
pub(super) struct Buffer<S: Stream> {
    parts: BTreeMap<Hour, Pending<S::Row>>,
}

impl<S: Stream> Default for Buffer<S> {
    fn default() -> Self {
        Buffer {
            parts: BTreeMap::new(),
        }
    }
}

impl<S: Stream> Buffer<S> {
    /// Buffers one row made durable in `segment` (none: not journaled),
    /// counting it against the segment; `heap` is what the row owns beyond
    /// its own size (its strings).
    pub fn push(
        &mut self,
        row: S::Row,
        heap: usize,
        segment: Option<SegmentId>,
        now: Instant,
        outstanding: &mut BTreeMap<SegmentId, usize>,
    ) {
        let pending = self.partition(S::hour(&row), now);
        pending.rows.push(row);
        pending.heap += heap;
        if let Some(seg) = segment {
            *pending.segments.entry(seg).or_default() += 1;
            *outstanding.entry(seg).or_default() += 1;
        }
    }

    /// The partition of `hour`, created empty at `now` if new.
    pub fn partition(&mut self, hour: Hour, now: Instant) -> &mut Pending<S::Row> {
        self.parts.entry(hour).or_insert_with(|| Pending::new(now))
    }

    /// `n` rows of `segment` were buffered in the partition `hour` (the
    /// caller counted them against the segment's total).
    pub fn count(&mut self, hour: Hour, segment: Option<SegmentId>, n: usize) {
        if let Some(seg) = segment
            && let Some(pending) = self.parts.get_mut(&hour)
        {
            *pending.segments.entry(seg).or_default() += n;
        }
    }
}

/// What the writer does with every stream's buffer alike.
pub(super) trait Partitions {
    /// The stream's name.
    fn name(&self) -> &'static str;
    /// Rows buffered.
    fn rows(&self) -> usize;
    /// Memory the buffered rows take, bytes.
    fn bytes(&self) -> usize;
    /// True when a partition holds `max` rows and is not waiting to retry.
    fn any_full(&self, max: usize) -> bool;
    /// The partition that takes the most memory among those not waiting
    /// for a retry at `now` (any, with `None`): its bytes, when its oldest
    /// row came, its hour.
    fn largest(&self, now: Option<Instant>) -> Option<(usize, Instant, Hour)>;
    /// Partitions waiting for a retry after a failed write, and their rows.
    fn failed(&self) -> (usize, usize);
    /// Writes out partition `hour` now (see [`Partitions::flush`]); true
    /// when it was written.
    fn write_out(
        &mut self,
        hour: Hour,
        files: &mut FileWriter,
        now: Instant,
        released: &mut Vec<BTreeMap<SegmentId, usize>>,
    ) -> bool;
    /// Writes every partition that is due (all, retry delays ignored, when
    /// `finishing`); pushes the segment counts of the rows now in finished
    /// files to `released`. A partition that fails keeps its rows for a
    /// retry.
    fn flush(
        &mut self,
        files: &mut FileWriter,
        now: Instant,
        finishing: bool,
        released: &mut Vec<BTreeMap<SegmentId, usize>>,
    );
}

impl<S: Stream> Partitions for Buffer<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn rows(&self) -> usize {
        self.parts.values().map(|p| p.rows.len()).sum()
    }

    fn bytes(&self) -> usize {
        self.parts.values().map(Pending::bytes).sum()
    }

    fn any_full(&self, max: usize) -> bool {
        self.parts
            .values()
            .any(|p| p.rows.len() >= max && p.retry_at.is_none())
    }

    fn largest(&self, now: Option<Instant>) -> Option<(usize, Instant, Hour)> {
        self.parts
            .iter()
            .filter(|(_, p)| {
                !p.rows.is_empty() && now.is_none_or(|now| p.retry_at.is_none_or(|t| now >= t))
            })
            .map(|(h, p)| (p.bytes(), p.since, *h))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
    }

    fn failed(&self) -> (usize, usize) {
        self.parts
            .values()
            .filter(|p| p.retry_at.is_some())
            .fold((0, 0), |(n, rows), p| (n + 1, rows + p.rows.len()))
    }

    fn write_out(
        &mut self,
        hour: Hour,
        files: &mut FileWriter,
        now: Instant,
        released: &mut Vec<BTreeMap<SegmentId, usize>>,
    ) -> bool {
        let retry_delay = files.settings.flush_after.min(Duration::from_secs(5));
        let Some(mut pending) = self.parts.remove(&hour) else {
            return false;
        };
        match files.write::<S>(hour, &mut pending.rows) {
            Ok(()) => {
                released.push(pending.segments);
                true
            }
            Err(()) => {
                pending.retry_at = Some(now + retry_delay);
                self.parts.insert(hour, pending);
                false
            }
        }
    }

    fn flush(
        &mut self,
        files: &mut FileWriter,
        now: Instant,
        finishing: bool,
        released: &mut Vec<BTreeMap<SegmentId, usize>>,
    ) {
        let due: Vec<Hour> = self
            .parts
            .iter()
            .filter(|(_, p)| p.due(now, &files.settings, finishing))
            .map(|(h, _)| *h)
            .collect();
        for hour in due {
            self.write_out(hour, files, now, released);
        }
    }
}

/// Writes partitions as finished files and counts the outcome per stream.
pub(super) struct FileWriter {
    /// The archive's settings.
    pub settings: ArchiveSettings,
    /// Point codes for the `readings` stream.
    pub registry: SharedRegistry,
    /// Where outcomes are counted.
    pub metrics: Arc<Metrics>,
    /// Sequence number of the last file name handed out.
    seq: u64,
}

impl FileWriter {
    /// A writer whose first file is number 1.
    pub fn new(settings: ArchiveSettings, registry: SharedRegistry, metrics: Arc<Metrics>) -> Self {
        FileWriter {
            settings,
            registry,
            metrics,
            seq: 0,
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

    /// Writes one partition of stream `S` as one file.
    pub fn write<S: Stream>(&mut self, hour: Hour, rows: &mut [S::Row]) -> Result<(), ()> {
        let registry = self.registry.snapshot();
        let (done, temp) = self.next_paths(S::NAME, hour);
        let result =
            write_partition::<S>(&done, &temp, rows, &registry, self.settings.row_group_rows);
        record_outcome(&self.metrics, S::NAME, &done, rows.len(), result)
    }

    /// Writes rows of stream `S` (recovered from the journal) as one file
    /// per hour; true when every file was written.
    pub fn write_hours<S: Stream>(&mut self, rows: Vec<S::Row>) -> bool {
        let mut by_hour: BTreeMap<Hour, Vec<S::Row>> = BTreeMap::new();
        for r in rows {
            by_hour.entry(S::hour(&r)).or_default().push(r);
        }
        let mut ok = true;
        for (hour, mut rows) in by_hour {
            ok &= self.write::<S>(hour, &mut rows).is_ok();
        }
        ok
    }
}

/// Counts and logs the outcome of writing `rows` rows of `stream` to `done`.
pub(super) fn record_outcome(
    metrics: &Metrics,
    stream: &'static str,
    done: &std::path::Path,
    rows: usize,
    result: Result<(), String>,
) -> Result<(), ()> {
    match result {
        Ok(()) => {
            metrics
                .archive_rows
                .with_label_values(&[stream])
                .inc_by(rows as u64);
            metrics.archive_files.with_label_values(&[stream]).inc();
            tracing::debug!(stream, rows, file = %done.display(), "archive file written");
            Ok(())
        }
        Err(error) => {
            metrics
                .archive_write_errors
                .with_label_values(&[stream])
                .inc();
            tracing::error!(stream, rows, %error, "archive: cannot write file; rows kept for a retry");
            Err(())
        }
    }
}
