//! The Parquet archive: every accepted reading, every rejected record and
//! every alert transition, kept as evidence for auditors.
//!
//! Two threads. Shard workers hand each processed batch's `Vec<Reading>`
//! (moved, not copied) and its [`Completion`](crate::completion::Completion) to the **journal** thread over
//! a bounded queue (a full queue blocks the shard: backpressure, nothing is
//! dropped); the dead-letter store hands it every rejected record. The
//! journal thread appends whatever has queued up to the current segment of
//! the [`journal`] in one write and one `fdatasync` (group commit), and only
//! then completes the batches — which lets the source acknowledge them to
//! the broker — and passes the rows on to the **writer** thread. The writer
//! buffers rows per stream and UTC hour partition of their own time and
//! writes a partition out as one zstd Parquet file
//! (`{root}/{stream}/date=YYYY-MM-DD/hour=HH/{start}-{seq}.parquet`, in the
//! stream's file order) when it holds `max_rows_per_file` rows,
//! when its oldest row has waited `flush_secs`, and on shutdown. A file
//! appears only complete (see [`file`]). A journal segment is deleted once
//! it is sealed and every row it holds is in a finished (renamed, fsynced)
//! file. At start, leftover segments are turned into files first
//! ([`ArchiveWriter::recover`]). [`retention`] deletes old partitions.
//!
//! The `alerts` stream does not go through the journal: its source of
//! truth is the alert store, and [`alerts::AlertExport`] copies committed
//! transitions from it behind a cursor (see there).
//!
//! The detectors never wait for the disk: a shard hands the batch over
//! after its findings have left, and the acknowledgement — not the shard —
//! waits for the fsync.
//!
//! # Adding a stream
//!
//! A stream is one definition ([`stream::Stream`]: row, schema, partition
//! hour, file order; plus [`stream::Journaled`] — kind byte, encode,
//! decode — when its rows go through the journal), e.g. `schema::Rejected`.
//! Then, for a journaled stream `X` with rows `XRow`:
//!
//! 1. a variant `ArchiveMsg::X(XRow)` and its arm in
//!    `ArchiveMsg::journal_into` (`journal.add::<X>(row)`) and in
//!    `ArchiveWriter::buffer` (`self.buffers.x.push(…)`);
//! 2. a field `x: Buffer<X>` in `Buffers`, listed in `Buffers::all`;
//! 3. a `Vec<XRow>` in [`journal::SegmentContents`], its decode arm in
//!    `journal::read_record` and its count in
//!    `SegmentContents::rows_per_stream`, and a `write_hours::<X>` line in
//!    `ArchiveWriter::write_recovered`;
//! 4. its name in [`retention::STREAMS`], and its schema in docs/ARCHIVE.md.
//!
//! The compiler points at every `match` that lacks the new variant.

pub mod activity;
pub mod alerts;
pub mod buffer;
pub mod exceptions;
pub mod file;
pub mod gate;
pub mod journal;
pub mod partition;
pub mod retention;
pub mod schema;
pub mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::clock::{Clock, SystemClock};
use crate::completion::Completion;
use crate::config::{ArchiveConfig, Registry, SharedRegistry};
use crate::metrics::Metrics;
use crate::model::{Millis, Reading};

use activity::{Power, PowerRow, Seal, SealRow};
use buffer::{Buffer, FileWriter, Partitions};
use exceptions::Exceptions;
use gate::ByteGate;
use journal::{JournalWriter, SegmentId};
use schema::{Readings, RecoveredReadings, Rejected};

pub use exceptions::{EXCEPTIONS, ExceptionRow};
pub use partition::{Hour, partition_of};
pub use schema::{ReadingRow, RejectedRow};

/// Name of the stream of accepted readings (its folder and metric label).
pub const READINGS: &str = "readings";
/// Name of the stream of rejected records.
pub const REJECTED: &str = "rejected";
/// Name of the stream of alert transitions.
pub const ALERTS: &str = "alerts";

/// Tries to write out the buffers at shutdown, a second apart.
const SHUTDOWN_ATTEMPTS: u32 = 3;

/// A journal commit takes at most this many encoded bytes …
const GROUP_BYTES: usize = 8 << 20;
/// … and at most this many messages.
const GROUP_MESSAGES: usize = 4096;
/// A segment is sealed (and a new one begun) at this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Delay between tries of a journal commit that failed.
const JOURNAL_RETRY: Duration = Duration::from_secs(1);
/// How often a writer holding `max_buffered_rows` looks again.
const PAUSED_POLL: Duration = Duration::from_millis(100);
/// Most bytes of rows on their way from the journal thread to the writer
/// (made durable, not yet buffered): four journal groups, about a second
/// of saturated ingest, so that the journal goes on while a file is
/// written; or a quarter of `archive.max_buffered_bytes` if that is less.
pub fn writer_queue_bytes(max_buffered_bytes: usize) -> usize {
    (4 * GROUP_BYTES).min(max_buffered_bytes / 4).max(1)
}

/// What the archive (its journal thread) receives from shards and the
/// dead-letter store.
pub enum ArchiveMsg {
    /// The readings of one processed batch.
    Readings {
        /// The readings, as the shard applied them.
        readings: Vec<Reading>,
        /// Processing time of receipt.
        arrival: Millis,
        /// Source name (`mqtt`, `modbus`, `netfile`).
        source: &'static str,
        /// Told once the readings are durable in the journal (dropped
        /// untold when they cannot be made durable: the source then does
        /// not acknowledge them).
        done: Option<Arc<Completion>>,
    },
    /// One rejected record.
    Rejected(RejectedRow),
    /// The exception reports of one YCBJ file.
    Exceptions {
        /// The reports, as accepted.
        rows: Vec<ExceptionRow>,
        /// Told once they are durable in the journal (dropped untold when
        /// they cannot be made durable).
        done: Option<Arc<Completion>>,
    },
    /// The power samples of one processed batch.
    Power {
        /// The samples.
        rows: Vec<PowerRow>,
        /// Told once they are durable (as for readings).
        done: Option<Arc<Completion>>,
    },
    /// The seal events of one processed batch.
    Seal {
        /// The events.
        rows: Vec<SealRow>,
        /// Told once they are durable (as for readings).
        done: Option<Arc<Completion>>,
    },
    /// Commit the journal, write out everything buffered and stop.
    Finish,
}

impl ArchiveMsg {
    /// Roughly the bytes its journal records take (a rejected record's
    /// text; 32 bytes a reading or row otherwise).
    fn approx_bytes(&self) -> usize {
        match self {
            ArchiveMsg::Readings { readings, .. } => readings.len() * 32,
            ArchiveMsg::Rejected(row) => 64 + row.record.len() + row.detail.len(),
            ArchiveMsg::Exceptions { rows, .. } => rows.len() * 128,
            ArchiveMsg::Power { rows, .. } => rows.len() * 32,
            ArchiveMsg::Seal { rows, .. } => rows.len() * 32,
            ArchiveMsg::Finish => 0,
        }
    }

    /// The memory the message holds, bytes (its buffers as allocated and
    /// the strings its rows own).
    fn mem_bytes(&self) -> usize {
        use std::mem::size_of;
        match self {
            ArchiveMsg::Readings { readings, .. } => readings.capacity() * size_of::<Reading>(),
            ArchiveMsg::Rejected(row) => size_of::<RejectedRow>() + rejected_heap(row),
            ArchiveMsg::Exceptions { rows, .. } => {
                rows.capacity() * size_of::<ExceptionRow>()
                    + rows.iter().map(exception_heap).sum::<usize>()
            }
            ArchiveMsg::Power { rows, .. } => {
                rows.capacity() * size_of::<PowerRow>() + rows.iter().map(power_heap).sum::<usize>()
            }
            ArchiveMsg::Seal { rows, .. } => {
                rows.capacity() * size_of::<SealRow>() + rows.iter().map(seal_heap).sum::<usize>()
            }
            ArchiveMsg::Finish => 0,
        }
    }

    /// Encodes the message's journal records.
    fn journal_into(&self, journal: &mut JournalWriter, registry: &Registry) {
        match self {
            ArchiveMsg::Readings {
                readings,
                arrival,
                source,
                ..
            } => journal.add_readings(registry, readings, *arrival, source),
            ArchiveMsg::Rejected(row) => journal.add::<Rejected>(row),
            ArchiveMsg::Exceptions { rows, .. } => {
                rows.iter().for_each(|r| journal.add::<Exceptions>(r))
            }
            ArchiveMsg::Power { rows, .. } => rows.iter().for_each(|r| journal.add::<Power>(r)),
            ArchiveMsg::Seal { rows, .. } => rows.iter().for_each(|r| journal.add::<Seal>(r)),
            ArchiveMsg::Finish => {}
        }
    }

    /// The completion to tell once the message is durable, taken out.
    fn take_done(&mut self) -> Option<Arc<Completion>> {
        match self {
            ArchiveMsg::Readings { done, .. }
            | ArchiveMsg::Exceptions { done, .. }
            | ArchiveMsg::Power { done, .. }
            | ArchiveMsg::Seal { done, .. } => done.take(),
            ArchiveMsg::Rejected(_) | ArchiveMsg::Finish => None,
        }
    }
}

/// Heap bytes a rejected row owns.
fn rejected_heap(r: &RejectedRow) -> usize {
    r.source.capacity() + r.origin.capacity() + r.detail.capacity() + r.record.capacity()
}

/// Heap bytes an exception report owns.
fn exception_heap(r: &ExceptionRow) -> usize {
    r.mine.capacity()
        + r.point.capacity()
        + r.kind.capacity()
        + r.type_name.capacity()
        + r.place.capacity()
        + r.cause.capacity()
}

/// Heap bytes a power sample owns.
fn power_heap(r: &PowerRow) -> usize {
    r.mine.capacity()
}

/// Heap bytes a seal event owns.
fn seal_heap(r: &SealRow) -> usize {
    r.mine.capacity() + r.camera.capacity() + r.place.capacity()
}

/// What the writer thread receives from the journal thread.
enum WriterMsg {
    /// A message's rows, made durable in `segment` (none: not journaled),
    /// and the room they took in the writer's [`ByteGate`]. A readings
    /// batch's completion has been told (or dropped) already.
    Rows(ArchiveMsg, Option<SegmentId>, usize),
    /// No more rows will be added to this segment.
    Sealed(SegmentId),
    /// Write out everything and stop.
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
    /// Unwritten rows the writer holds before it takes no more (see
    /// `archive.max_buffered_rows`).
    pub max_buffered_rows: usize,
    /// Memory the unwritten rows may take before the largest partitions
    /// are written out at once (see `archive.max_buffered_bytes`).
    pub max_buffered_bytes: usize,
    /// First part of every file name (processing time at start, ms), so
    /// files of different runs never collide.
    pub start: Millis,
    /// Hour partitions entirely older than this many days are deleted
    /// (0 keeps everything).
    pub retain_days: u64,
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
            max_buffered_rows: config.max_buffered_rows.max(1),
            max_buffered_bytes: config.max_buffered_bytes.max(1),
            start,
            retain_days: config.retain_days,
        }
    }

    /// The journal folder, `{root}/journal`.
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }
}

/// The running archive: its journal and writer threads and the sending end
/// of the journal's queue.
pub struct Archive {
    tx: Sender<ArchiveMsg>,
    journal: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// Set by [`Archive::finish`]: a writer held back by
    /// `max_buffered_rows` takes what is left, so that shutdown cannot wait
    /// on a disk that never comes back.
    stopping: Arc<AtomicBool>,
    /// Until when the writer may write files at shutdown (set by
    /// [`Archive::finish_by`]); what is left then stays in the journal.
    deadline: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Archive {
    /// Recovers what an earlier run left in the journal (into archive
    /// files), applies retention, and starts the journal and writer
    /// threads, each with a queue of `capacity` messages.
    pub fn start(
        settings: ArchiveSettings,
        registry: SharedRegistry,
        metrics: Arc<Metrics>,
        capacity: usize,
    ) -> std::io::Result<Archive> {
        Archive::start_with_clock(settings, registry, metrics, capacity, Arc::new(SystemClock))
    }

    /// [`Archive::start`] with the processing clock retention follows.
    pub fn start_with_clock(
        settings: ArchiveSettings,
        registry: SharedRegistry,
        metrics: Arc<Metrics>,
        capacity: usize,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Archive> {
        std::fs::create_dir_all(&settings.root)?;
        let journal_dir = settings.journal_dir();
        let mut writer = ArchiveWriter::new(settings.clone(), registry.clone(), metrics.clone());
        writer.clock = clock;
        writer.recover(&journal_dir);
        writer.apply_retention(writer.clock.now_ms());
        let journal = JournalWriter::create(&journal_dir, settings.start)?;
        writer.journal = Some(journal_dir);
        let (tx, rx) = bounded(capacity.max(1));
        // Bounded in messages, and in bytes by the gate.
        let (wtx, wrx) = bounded(capacity.max(1));
        let gate = Arc::new(ByteGate::new(writer_queue_bytes(
            settings.max_buffered_bytes,
        )));
        let rotate_after = settings.flush_after;
        let stopping = Arc::new(AtomicBool::new(false));
        let deadline = Arc::new(std::sync::Mutex::new(None));
        let writer = {
            let (stopping, deadline, gate) = (stopping.clone(), deadline.clone(), gate.clone());
            std::thread::Builder::new()
                .name("archive".into())
                .spawn(move || {
                    writer.run(wrx, &gate, &stopping, &deadline);
                    gate.close();
                })?
        };
        let journal = std::thread::Builder::new()
            .name("archive-journal".into())
            .spawn(move || {
                run_journal(journal, registry, metrics, rx, (wtx, gate), rotate_after)
            })?;
        Ok(Archive {
            tx,
            journal,
            writer,
            stopping,
            deadline,
        })
    }

    /// A sender for shards and the dead-letter store.
    pub fn sender(&self) -> Sender<ArchiveMsg> {
        self.tx.clone()
    }

    /// Says shutdown has begun: a writer held back by `max_buffered_rows`
    /// takes rows again, so that the shards and sources blocked behind it
    /// can drain before [`Archive::finish`].
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Commits the journal, writes out everything buffered and waits for
    /// both threads. Call it after every shard has drained.
    pub fn finish(self) {
        self.finish_by(None)
    }

    /// [`Archive::finish`], writing files only until `deadline`: rows not
    /// written by then are durable in the journal already and become files
    /// at the next start ([`ArchiveWriter::recover`]).
    pub fn finish_by(self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = deadline;
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.tx.send(ArchiveMsg::Finish);
        drop(self.tx);
        if self.journal.join().is_err() {
            tracing::error!("the archive journal thread panicked");
        }
        if self.writer.join().is_err() {
            tracing::error!("the archive thread panicked");
        }
    }
}

/// The journal thread: group commits, then completions, then rows to the
/// writer. Runs until [`ArchiveMsg::Finish`] or until every sender is gone.
fn run_journal(
    mut journal: JournalWriter,
    registry: SharedRegistry,
    metrics: Arc<Metrics>,
    rx: Receiver<ArchiveMsg>,
    (writer, gate): (Sender<WriterMsg>, Arc<ByteGate>),
    rotate_after: Duration,
) {
    let mut group: Vec<ArchiveMsg> = Vec::new();
    let mut finishing = false;
    loop {
        // The group's size in bytes, roughly: what its encoding will take.
        let mut bytes = 0;
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(ArchiveMsg::Finish) | Err(RecvTimeoutError::Disconnected) => finishing = true,
            Ok(msg) => {
                bytes += msg.approx_bytes();
                group.push(msg);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Everything that queued up meanwhile joins this commit, up to
        // GROUP_BYTES (large rejected records would otherwise make one
        // commit, and the journal's buffer, hundreds of MB).
        while !finishing && group.len() < GROUP_MESSAGES && bytes < GROUP_BYTES {
            match rx.try_recv() {
                Ok(ArchiveMsg::Finish) => finishing = true,
                Ok(msg) => {
                    bytes += msg.approx_bytes();
                    group.push(msg);
                }
                Err(_) => break,
            }
        }
        if !group.is_empty() {
            let durable = commit_group(&mut journal, &registry, &metrics, &group, finishing);
            let segment = durable.then(|| journal.segment());
            for mut msg in group.drain(..) {
                if let ArchiveMsg::Finish = msg {
                    continue;
                }
                if let Some(done) = msg.take_done()
                    && durable
                {
                    done.part_done();
                }
                // Waits while the rows on their way to the writer take
                // `writer_queue_bytes`: the writer is behind (a file being
                // written), and this thread's own queue fills meanwhile.
                let bytes = msg.mem_bytes();
                if !gate.enter(bytes) || writer.send(WriterMsg::Rows(msg, segment, bytes)).is_err()
                {
                    tracing::error!("the archive writer has stopped; rows stay in the journal");
                }
            }
        }
        if finishing {
            let _ = writer.send(WriterMsg::Sealed(journal.segment()));
            let _ = writer.send(WriterMsg::Finish);
            return;
        }
        let holds_records = journal.segment_bytes() > journal::MAGIC.len() as u64;
        if journal.segment_bytes() >= SEGMENT_BYTES
            || (holds_records && journal.segment_opened().elapsed() >= rotate_after)
        {
            match journal.rotate() {
                Ok(sealed) => {
                    let _ = writer.send(WriterMsg::Sealed(sealed));
                }
                Err(error) => {
                    metrics.journal_errors.inc();
                    tracing::error!(%error, "archive journal: cannot start a new segment");
                }
            }
        }
    }
}

/// Encodes and commits one group, retrying in a fresh segment after a
/// failure: forever while running (the queue fills and the sources slow
/// down; nothing is acknowledged meanwhile), a few times when finishing.
/// Returns whether the group is durable.
fn commit_group(
    journal: &mut JournalWriter,
    registry: &SharedRegistry,
    metrics: &Metrics,
    group: &[ArchiveMsg],
    finishing: bool,
) -> bool {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let snapshot = registry.snapshot();
        for msg in group {
            msg.journal_into(journal, &snapshot);
        }
        let started = Instant::now();
        match journal.commit() {
            Ok(bytes) => {
                metrics.journal_commits.inc();
                metrics.journal_bytes.inc_by(bytes as u64);
                metrics
                    .journal_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                return true;
            }
            Err(error) => {
                metrics.journal_errors.inc();
                tracing::error!(%error, attempt, "archive journal: commit failed; batches not acknowledged, retrying in a new segment");
                if finishing && attempt >= SHUTDOWN_ATTEMPTS {
                    tracing::error!(
                        "archive journal: giving up at shutdown; the broker redelivers what was not acknowledged"
                    );
                    return false;
                }
                std::thread::sleep(JOURNAL_RETRY);
                if let Err(error) = journal.abandon() {
                    tracing::error!(%error, "archive journal: cannot start a new segment");
                }
            }
        }
    }
}

/// What [`ArchiveWriter::recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segments found.
    pub segments: usize,
    /// Segments turned into files and deleted.
    pub removed: usize,
    /// Rows written to archive files, per stream.
    pub rows: BTreeMap<&'static str, usize>,
    /// Torn or corrupt records dropped (with everything after them in
    /// their segment).
    pub torn: usize,
}

impl Recovery {
    /// Rows of `stream` written to archive files.
    pub fn rows_of(&self, stream: &str) -> usize {
        self.rows.get(stream).copied().unwrap_or(0)
    }
}

/// The buffers of every journaled stream.
#[derive(Default)]
struct Buffers {
    /// Accepted readings.
    readings: Buffer<Readings>,
    /// Rejected records.
    rejected: Buffer<Rejected>,
    /// The mines' exception reports.
    exceptions: Buffer<Exceptions>,
    /// Power samples.
    power: Buffer<Power>,
    /// Seal events.
    seal: Buffer<Seal>,
}

impl Buffers {
    /// Every stream's buffer, for what is done to all alike.
    fn all(&mut self) -> [&mut dyn Partitions; 5] {
        [
            &mut self.readings,
            &mut self.rejected,
            &mut self.exceptions,
            &mut self.power,
            &mut self.seal,
        ]
    }

    /// The same, to look at.
    fn all_ref(&self) -> [&dyn Partitions; 5] {
        [
            &self.readings,
            &self.rejected,
            &self.exceptions,
            &self.power,
            &self.seal,
        ]
    }
}

/// The writer thread's state: buffers per stream and partition.
pub struct ArchiveWriter {
    /// Writes partitions as files and counts the outcome.
    files: FileWriter,
    /// Rows waiting for their files, per stream and hour.
    buffers: Buffers,
    /// The journal folder whose segments this writer deletes.
    journal: Option<PathBuf>,
    /// Rows per segment not yet in a finished file.
    outstanding: BTreeMap<SegmentId, usize>,
    /// Segments that receive no more rows.
    sealed: BTreeSet<SegmentId>,
    /// Next retention pass.
    retention_due: Option<Instant>,
    /// Processing time, for retention.
    clock: Arc<dyn Clock>,
}

impl ArchiveWriter {
    /// A writer with empty buffers.
    pub fn new(settings: ArchiveSettings, registry: SharedRegistry, metrics: Arc<Metrics>) -> Self {
        ArchiveWriter {
            files: FileWriter::new(settings, registry, metrics),
            buffers: Buffers::default(),
            journal: None,
            outstanding: BTreeMap::new(),
            sealed: BTreeSet::new(),
            retention_due: None,
            clock: Arc::new(SystemClock),
        }
    }

    fn settings(&self) -> &ArchiveSettings {
        &self.files.settings
    }

    /// Receives until told to finish or until every sender is gone,
    /// writing files as they fall due and deleting journal segments whose
    /// rows are all in files; then writes out everything (until the
    /// deadline [`Archive::finish_by`] sets, if any).
    ///
    /// Buffered rows are bounded twice: when they take
    /// `max_buffered_bytes` of memory or number `max_buffered_rows`, the
    /// largest partitions are written out at once (not waiting for
    /// `flush_secs`) until half of that is left. Only when that cannot
    /// bring them under the bound — the disk refuses the writes — does it
    /// receive nothing and only retry: the queues behind it fill, and
    /// ingest stops acknowledging rather than the daemon's memory growing.
    /// `stopping` lifts the hold for shutdown.
    fn run(
        mut self,
        rx: Receiver<WriterMsg>,
        gate: &ByteGate,
        stopping: &AtomicBool,
        deadline: &std::sync::Mutex<Option<Instant>>,
    ) {
        let poll = self.settings().flush_after.min(Duration::from_secs(1));
        let mut last_check = Instant::now();
        let mut paused = false;
        self.retention_due = Some(Instant::now() + retention::EVERY);
        loop {
            let full = self.over_bound() && !stopping.load(Ordering::SeqCst);
            if full != paused {
                paused = full;
                self.files
                    .metrics
                    .archive_writer_paused
                    .set(i64::from(full));
                if full {
                    let why = self.why_full();
                    tracing::error!(
                        rows = self.buffered(),
                        bytes = self.buffered_bytes(),
                        "archive: {why}; taking no more rows (ingest is held back) until they are written"
                    );
                } else {
                    tracing::info!(
                        rows = self.buffered(),
                        bytes = self.buffered_bytes(),
                        "archive: the buffered rows are under archive.max_buffered_bytes and max_buffered_rows again; taking rows"
                    );
                }
            }
            if paused {
                std::thread::sleep(PAUSED_POLL);
            } else {
                match rx.recv_timeout(poll) {
                    Ok(WriterMsg::Finish) | Err(RecvTimeoutError::Disconnected) => break,
                    Ok(msg) => {
                        let bytes = match &msg {
                            WriterMsg::Rows(_, _, bytes) => *bytes,
                            _ => 0,
                        };
                        self.accept_durable(msg, Instant::now());
                        gate.leave(bytes);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            let now = Instant::now();
            if now.duration_since(last_check) >= Duration::from_millis(200) || self.any_full() {
                self.flush(now, false);
                last_check = now;
            }
            if self.retention_due.is_some_and(|t| now >= t) {
                self.apply_retention(self.clock.now_ms());
                self.retention_due = Some(now + retention::EVERY);
            }
        }
        let deadline = *deadline.lock().unwrap_or_else(|p| p.into_inner());
        // Shutdown: everything out, with a few tries for a file system that
        // is briefly unwell, as long as the deadline allows.
        for attempt in 1..=SHUTDOWN_ATTEMPTS {
            if !self.write_out_by(deadline) {
                break;
            }
            if self.buffered() == 0 {
                return;
            }
            if attempt < SHUTDOWN_ATTEMPTS && deadline.is_none_or(|d| Instant::now() < d) {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        for b in self.buffers.all_ref() {
            if b.rows() > 0 {
                tracing::warn!(
                    stream = b.name(),
                    rows = b.rows(),
                    "archive: rows not written to files before the stop (out of time, or the disk refused); they are durable in the journal and become files at the next start"
                );
            }
        }
    }

    /// True when the buffered rows take `max_buffered_bytes` or number
    /// `max_buffered_rows`.
    fn over_bound(&self) -> bool {
        let s = self.settings();
        self.buffered() >= s.max_buffered_rows || self.buffered_bytes() >= s.max_buffered_bytes
    }

    /// Why the buffer is full, for a person: failed writes waiting for a
    /// retry, or (no write having failed) the bound itself.
    fn why_full(&self) -> String {
        let (parts, rows) = self
            .buffers
            .all_ref()
            .iter()
            .map(|b| b.failed())
            .fold((0, 0), |(p, r), (bp, br)| (p + bp, r + br));
        let s = self.settings();
        if parts > 0 {
            format!(
                "the disk refuses writes: {parts} partition(s) of {rows} rows failed to be written and wait for a retry,                  and the buffered rows reach archive.max_buffered_bytes ({}) or max_buffered_rows ({})",
                s.max_buffered_bytes, s.max_buffered_rows
            )
        } else {
            format!(
                "the buffered rows reach archive.max_buffered_bytes ({}) or max_buffered_rows ({}) although no write failed                  (no partition could be written out: each holds too little); raise the bound",
                s.max_buffered_bytes, s.max_buffered_rows
            )
        }
    }

    /// Writes out the largest partitions (by memory; the oldest first
    /// among equals) until the buffered rows are down to half the bounds,
    /// or no partition is left to try (the rest wait for a retry after a
    /// failed write).
    fn relieve(&mut self, now: Instant) {
        let (max_bytes, max_rows) = (
            self.settings().max_buffered_bytes,
            self.settings().max_buffered_rows,
        );
        let mut released = Vec::new();
        while self.buffered_bytes() > max_bytes / 2 || self.buffered() > max_rows / 2 {
            let Some((i, _, hour)) = self
                .buffers
                .all_ref()
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    b.largest(Some(now))
                        .map(|(bytes, since, h)| (i, (bytes, since), h))
                })
                .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))
            else {
                break;
            };
            self.files.metrics.archive_pressure_writes.inc();
            self.buffers.all()[i].write_out(hour, &mut self.files, now, &mut released);
        }
        for segments in &released {
            self.release(segments);
        }
        if !released.is_empty() {
            self.collect_segments();
        }
    }

    /// Writes out every partition, the largest first per stream, retry
    /// delays ignored, until `deadline`; false once the deadline has
    /// passed with rows left.
    fn write_out_by(&mut self, deadline: Option<Instant>) -> bool {
        let mut released = Vec::new();
        let mut in_time = true;
        'streams: for b in self.buffers.all() {
            while let Some((_, _, hour)) = b.largest(None) {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    in_time = false;
                    break 'streams;
                }
                if !b.write_out(hour, &mut self.files, Instant::now(), &mut released) {
                    // Failed: the next attempt comes after a pause.
                    continue 'streams;
                }
            }
        }
        for segments in &released {
            self.release(segments);
        }
        if !released.is_empty() {
            self.collect_segments();
        }
        in_time
    }

    /// Buffers one message (rows not journaled: tests and tools).
    pub fn accept(&mut self, msg: ArchiveMsg, now: Instant) {
        self.accept_durable(WriterMsg::Rows(msg, None, 0), now);
    }

    fn accept_durable(&mut self, msg: WriterMsg, now: Instant) {
        match msg {
            WriterMsg::Rows(msg, segment, _) => {
                self.buffer(msg, segment, now);
                if self.over_bound() {
                    self.relieve(now);
                }
            }
            WriterMsg::Sealed(seg) => {
                self.sealed.insert(seg);
                self.collect_segments();
            }
            WriterMsg::Finish => {}
        }
    }

    /// Buffers the rows of one message made durable in `segment`.
    fn buffer(&mut self, msg: ArchiveMsg, segment: Option<SegmentId>, now: Instant) {
        match msg {
            ArchiveMsg::Readings {
                readings,
                arrival,
                source,
                ..
            } => {
                if let Some(seg) = segment {
                    *self.outstanding.entry(seg).or_default() += readings.len();
                }
                // Rows per hour of this batch (usually one hour), counted
                // against the segment once per hour rather than per row.
                let buffer = &mut self.buffers.readings;
                let mut run: Option<(Hour, usize)> = None;
                for r in readings {
                    let row = ReadingRow {
                        point: r.point,
                        ts: r.ts,
                        arrival,
                        value: r.value,
                        status: r.status,
                        source,
                    };
                    let hour = <Readings as stream::Stream>::hour(&row);
                    if let Some((h, n)) = run
                        && h != hour
                    {
                        buffer.count(h, segment, n);
                        run = None;
                    }
                    run = Some((hour, run.map_or(1, |(_, n)| n + 1)));
                    buffer.partition(hour, now).rows.push(row);
                }
                if let Some((h, n)) = run {
                    buffer.count(h, segment, n);
                }
            }
            ArchiveMsg::Rejected(row) => {
                let heap = rejected_heap(&row);
                self.buffers
                    .rejected
                    .push(row, heap, segment, now, &mut self.outstanding)
            }
            ArchiveMsg::Exceptions { rows, .. } => {
                for row in rows {
                    let heap = exception_heap(&row);
                    self.buffers
                        .exceptions
                        .push(row, heap, segment, now, &mut self.outstanding);
                }
            }
            ArchiveMsg::Power { rows, .. } => {
                for row in rows {
                    let heap = power_heap(&row);
                    self.buffers
                        .power
                        .push(row, heap, segment, now, &mut self.outstanding);
                }
            }
            ArchiveMsg::Seal { rows, .. } => {
                for row in rows {
                    let heap = seal_heap(&row);
                    self.buffers
                        .seal
                        .push(row, heap, segment, now, &mut self.outstanding);
                }
            }
            ArchiveMsg::Finish => {}
        }
    }

    /// Rows of these segments are now in finished files.
    fn release(&mut self, segments: &BTreeMap<SegmentId, usize>) {
        for (seg, n) in segments {
            if let Some(left) = self.outstanding.get_mut(seg) {
                *left = left.saturating_sub(*n);
                if *left == 0 {
                    self.outstanding.remove(seg);
                }
            }
        }
    }

    /// Deletes every sealed segment none of whose rows wait in a buffer.
    fn collect_segments(&mut self) {
        let Some(dir) = self.journal.clone() else {
            self.sealed.clear();
            return;
        };
        let done: Vec<SegmentId> = self
            .sealed
            .iter()
            .filter(|s| !self.outstanding.contains_key(s))
            .copied()
            .collect();
        if done.is_empty() {
            return;
        }
        for seg in done {
            let path = journal::segment_path(&dir, self.settings().start, seg);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.sealed.remove(&seg);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.sealed.remove(&seg);
                }
                Err(error) => {
                    tracing::warn!(%error, segment = %path.display(), "archive journal: cannot delete a finished segment; will retry");
                }
            }
        }
        if let Err(error) = journal::sync_dir(&dir) {
            tracing::warn!(%error, "archive journal: cannot fsync the journal folder");
        }
    }

    /// Turns the segments an earlier run left in `dir` into archive files
    /// and deletes them. A segment whose rows cannot all be written stays
    /// for the next start. Leftover temporary files of interrupted writes
    /// are deleted too.
    pub fn recover(&mut self, dir: &std::path::Path) -> Recovery {
        let mut report = Recovery::default();
        retention::remove_temporaries(&self.settings().root);
        let found = match journal::segments(dir) {
            Ok(f) => f,
            Err(error) => {
                tracing::error!(%error, dir = %dir.display(), "archive journal: cannot list segments");
                return report;
            }
        };
        report.segments = found.len();
        for path in found {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(error) => {
                    tracing::error!(%error, segment = %path.display(), "archive journal: cannot read a segment; kept");
                    continue;
                }
            };
            let contents = journal::read_segment(&bytes);
            drop(bytes);
            if let Some(torn) = &contents.torn {
                report.torn += 1;
                self.files.metrics.journal_torn_records.inc();
                tracing::warn!(
                    segment = %path.display(),
                    offset = torn.offset,
                    dropped_bytes = torn.dropped,
                    why = torn.why,
                    kept_records = contents.records,
                    "archive journal: torn tail dropped (never acknowledged); everything before it is kept"
                );
            }
            let counts = contents.rows_per_stream();
            if self.write_recovered(contents) {
                for (stream, n) in counts.into_iter().filter(|c| c.1 > 0) {
                    *report.rows.entry(stream).or_default() += n;
                    self.files
                        .metrics
                        .journal_recovered_rows
                        .with_label_values(&[stream])
                        .inc_by(n as u64);
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => report.removed += 1,
                    Err(error) => {
                        tracing::error!(%error, segment = %path.display(), "archive journal: cannot delete a recovered segment (its rows may be archived twice)")
                    }
                }
            } else {
                tracing::error!(segment = %path.display(), "archive journal: a recovered segment could not be written; kept for the next start");
            }
        }
        if report.segments > 0 {
            let _ = journal::sync_dir(dir);
            tracing::info!(
                segments = report.segments,
                rows = ?report.rows,
                torn = report.torn,
                "archive journal recovered"
            );
        }
        report
    }

    /// Deletes partitions older than `retain_days` at processing time `now`,
    /// logging and counting what went.
    pub fn apply_retention(&mut self, now: Millis) {
        if self.settings().retain_days == 0 {
            return;
        }
        for stream in retention::STREAMS {
            let removed = retention::apply(
                &self.settings().root.join(stream),
                now,
                self.settings().retain_days,
            );
            if removed.partitions + removed.failed > 0 {
                self.files
                    .metrics
                    .retention_partitions_removed
                    .with_label_values(&[stream])
                    .inc_by(removed.partitions as u64);
                self.files
                    .metrics
                    .retention_files_removed
                    .with_label_values(&[stream])
                    .inc_by(removed.files as u64);
                tracing::info!(
                    stream,
                    partitions = removed.partitions,
                    files = removed.files,
                    failed = removed.failed,
                    retain_days = self.settings().retain_days,
                    "archive retention: old partitions deleted"
                );
            }
        }
    }

    /// Writes one segment's rows as files, one per stream and hour.
    fn write_recovered(&mut self, contents: journal::SegmentContents) -> bool {
        let mut ok = true;
        ok &= self
            .files
            .write_hours::<RecoveredReadings>(contents.readings);
        ok &= self.files.write_hours::<Rejected>(contents.rejected);
        ok &= self.files.write_hours::<Exceptions>(contents.exceptions);
        ok &= self.files.write_hours::<Power>(contents.power);
        ok &= self.files.write_hours::<Seal>(contents.seal);
        ok
    }

    fn any_full(&self) -> bool {
        let max = self.settings().max_rows_per_file;
        self.buffers.all_ref().iter().any(|b| b.any_full(max))
    }

    /// Rows buffered and not yet in a finished file, all streams.
    pub fn buffered(&self) -> usize {
        self.buffers.all_ref().iter().map(|b| b.rows()).sum()
    }

    /// Memory the buffered rows take, bytes, all streams.
    pub fn buffered_bytes(&self) -> usize {
        self.buffers.all_ref().iter().map(|b| b.bytes()).sum()
    }

    /// Rows of `stream` buffered and not yet in a finished file.
    pub fn buffered_in(&self, stream: &str) -> usize {
        self.buffers
            .all_ref()
            .iter()
            .filter(|b| b.name() == stream)
            .map(|b| b.rows())
            .sum()
    }

    /// Writes every partition that is due (all of them, retry delays
    /// ignored, when `finishing`). A partition that fails keeps its rows and
    /// is retried later.
    pub fn flush(&mut self, now: Instant, finishing: bool) {
        let mut released = Vec::new();
        for b in self.buffers.all() {
            b.flush(&mut self.files, now, finishing, &mut released);
        }
        if released.is_empty() {
            return;
        }
        for segments in &released {
            self.release(segments);
        }
        self.collect_segments();
    }
}

#[cfg(test)]
mod tests;
