//! The dead-letter store: every rejected record with its reason, appended to
//! `deadletter.jsonl` in the data directory (rotated to `.1` past a size
//! limit) and kept in a bounded in-memory list for `GET /api/rejects`.
//!
//! Rejects are rare next to good readings, so a mutex here is off the hot
//! path; the file is flushed before the message that carried the rejects is
//! acknowledged. When the archive runs, each rejected record (up to 64
//! KiB, not the 2 KiB excerpt) also goes to its `rejected` stream as
//! evidence.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crossbeam_channel::Sender;
use serde::Serialize;

use crate::archive::{ArchiveMsg, RejectedRow};

use crate::ingest::RejectReason;
use crate::metrics::Metrics;
use crate::model::{Millis, rfc3339};

/// Longest part of an offending record that is kept.
pub const MAX_RECORD_BYTES: usize = 2048;

/// Longest part of an offending record that goes to the archive's
/// `rejected` stream: a burst of large hostile messages must not hold
/// hundreds of MB in the archive's queue and buffers.
pub const MAX_ARCHIVED_RECORD_BYTES: usize = 64 << 10;

/// Size past which the file is rotated.
const ROTATE_BYTES: u64 = 64 << 20;

/// One rejected record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetter {
    /// Processing time of receipt, RFC 3339.
    pub at: String,
    /// Source (`mqtt`, …).
    pub source: String,
    /// Topic or file it came in on.
    pub origin: String,
    /// Why it was refused (a metric label).
    pub reason: &'static str,
    /// The particulars, for a person.
    pub detail: String,
    /// The record itself (truncated to 2 KiB).
    pub record: String,
}

struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
}

/// Where rejected records go.
pub struct DeadLetters {
    file: Mutex<Option<FileSink>>,
    recent: Mutex<VecDeque<DeadLetter>>,
    keep: usize,
    /// The archive's queue, when the archive runs.
    archive: Option<Sender<ArchiveMsg>>,
}

/// Cuts `bytes` to at most [`MAX_RECORD_BYTES`] of (lossy) UTF-8.
pub fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_RECORD_BYTES)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > MAX_RECORD_BYTES {
        s.push_str("…(truncated)");
    }
    s
}

/// What the archive keeps of a record: all of it up to
/// [`MAX_ARCHIVED_RECORD_BYTES`], else that much and a note of its size.
pub fn archived_record(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_ARCHIVED_RECORD_BYTES {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut s = String::from_utf8_lossy(&bytes[..MAX_ARCHIVED_RECORD_BYTES]).into_owned();
    s.push_str(&format!("…(truncated: {} bytes in all)", bytes.len()));
    s
}

impl DeadLetters {
    /// A store writing to `dir/deadletter.jsonl` (created if needed) and
    /// keeping the `keep` most recent records in memory.
    pub fn open(dir: &Path, keep: usize) -> std::io::Result<DeadLetters> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("deadletter.jsonl");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata()?.len();
        Ok(DeadLetters {
            file: Mutex::new(Some(FileSink {
                path,
                out: BufWriter::new(file),
                written,
            })),
            recent: Mutex::new(VecDeque::with_capacity(keep.min(4096))),
            keep,
            archive: None,
        })
    }

    /// A store that keeps records in memory only (benches).
    pub fn in_memory(keep: usize) -> DeadLetters {
        DeadLetters {
            file: Mutex::new(None),
            recent: Mutex::new(VecDeque::new()),
            keep,
            archive: None,
        }
    }

    /// Also sends every rejected record to the archive (waiting while its
    /// queue is full).
    pub fn with_archive(mut self, archive: Sender<ArchiveMsg>) -> DeadLetters {
        self.archive = Some(archive);
        self
    }

    /// Records one rejected record and counts it.
    #[allow(clippy::too_many_arguments)]
    pub fn reject(
        &self,
        metrics: &Metrics,
        at: Millis,
        source: &str,
        origin: &str,
        reason: RejectReason,
        detail: String,
        record: &[u8],
    ) {
        metrics.rejected.with_label_values(&[reason.key()]).inc();
        let letter = DeadLetter {
            at: rfc3339(at),
            source: source.to_string(),
            origin: origin.to_string(),
            reason: reason.key(),
            detail,
            record: excerpt(record),
        };
        tracing::debug!(reason = letter.reason, origin, detail = %letter.detail, "record rejected");
        if let Some(archive) = &self.archive {
            let row = RejectedRow {
                at,
                source: letter.source.clone(),
                origin: letter.origin.clone(),
                reason: letter.reason,
                detail: letter.detail.clone(),
                record: archived_record(record),
            };
            if archive.send(ArchiveMsg::Rejected(row)).is_err() {
                tracing::debug!(
                    "archive stopped; rejected record kept in the dead-letter file only"
                );
            }
        }
        if let Ok(mut guard) = self.file.lock()
            && let Some(sink) = guard.as_mut()
            && let Ok(line) = serde_json::to_string(&letter)
        {
            if let Err(e) = writeln!(sink.out, "{line}") {
                tracing::error!(path = %sink.path.display(), error = %e, "cannot write dead letter");
            }
            sink.written += line.len() as u64 + 1;
            if sink.written > ROTATE_BYTES {
                rotate(sink);
            }
        }
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() >= self.keep {
                recent.pop_front();
            }
            recent.push_back(letter);
        }
    }

    /// Flushes the file (called before the message is acknowledged).
    pub fn flush(&self) {
        if let Ok(mut guard) = self.file.lock()
            && let Some(sink) = guard.as_mut()
            && let Err(e) = sink.out.flush()
        {
            tracing::error!(path = %sink.path.display(), error = %e, "cannot flush dead letters");
        }
    }

    /// The most recent records, newest first.
    pub fn recent(&self, limit: usize) -> Vec<DeadLetter> {
        match self.recent.lock() {
            Ok(r) => r.iter().rev().take(limit).cloned().collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn rotate(sink: &mut FileSink) {
    let _ = sink.out.flush();
    let old = sink.path.with_extension("jsonl.1");
    if let Err(e) = std::fs::rename(&sink.path, &old) {
        tracing::error!(error = %e, "cannot rotate dead letters");
        return;
    }
    match OpenOptions::new()
        .create(true)
        .append(true)
        .open(&sink.path)
    {
        Ok(f) => {
            sink.out = BufWriter::new(f);
            sink.written = 0;
        }
        Err(e) => tracing::error!(error = %e, "cannot reopen dead letters"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_keeps_a_record_up_to_64_kib() {
        assert_eq!(archived_record(b"{bad"), "{bad");
        let exact = vec![b'x'; MAX_ARCHIVED_RECORD_BYTES];
        assert_eq!(archived_record(&exact).len(), MAX_ARCHIVED_RECORD_BYTES);
        let big = vec![b'x'; 200_000];
        let kept = archived_record(&big);
        assert!(kept.starts_with(&"x".repeat(MAX_ARCHIVED_RECORD_BYTES)));
        assert!(
            kept.ends_with("…(truncated: 200000 bytes in all)"),
            "{}",
            &kept[65_000..]
        );
    }

    #[test]
    fn rejects_are_counted_kept_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new(1);
        let dl = DeadLetters::open(dir.path(), 2).unwrap();
        for i in 0..3 {
            dl.reject(
                &metrics,
                0,
                "mqtt",
                "mines/x/telemetry",
                RejectReason::UnknownMine,
                format!("n{i}"),
                b"{}",
            );
        }
        dl.flush();
        let recent = dl.recent(10);
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].detail, "n2");
        let text = std::fs::read_to_string(dir.path().join("deadletter.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert_eq!(
            metrics.rejected.with_label_values(&["unknown_mine"]).get(),
            3
        );
    }

    #[test]
    fn rejects_go_to_the_archive_in_full() {
        let metrics = Metrics::new(1);
        let (tx, rx) = crossbeam_channel::bounded(4);
        let dl = DeadLetters::in_memory(4).with_archive(tx);
        let long = vec![b'x'; MAX_RECORD_BYTES + 10];
        dl.reject(
            &metrics,
            1_795_449_600_000,
            "mqtt",
            "mines/x/telemetry",
            RejectReason::UnknownMine,
            "no such mine".into(),
            &long,
        );
        let Ok(ArchiveMsg::Rejected(row)) = rx.try_recv() else {
            panic!("one rejected row expected");
        };
        assert_eq!(row.at, 1_795_449_600_000);
        assert_eq!(row.reason, "unknown_mine");
        assert_eq!(row.origin, "mines/x/telemetry");
        assert_eq!(row.detail, "no such mine");
        assert_eq!(row.record.len(), MAX_RECORD_BYTES + 10);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn long_records_are_truncated() {
        let long = vec![b'x'; MAX_RECORD_BYTES + 10];
        let e = excerpt(&long);
        assert!(e.ends_with("…(truncated)"));
        assert!(e.len() < MAX_RECORD_BYTES + 20);
    }
}
