//! The mines' own exception reports (YCBJ), kept as evidence and related to
//! minewatch's own findings: an over-limit episode that a mine uploading
//! national files never reported is something an auditor must see.
//!
//! Records are appended to `{data_dir}/ycbj.jsonl`, the most recent ones
//! kept in memory for the API, and — when the archive runs — written to the
//! archive's `exceptions` stream (durable in its journal before the file
//! counts as processed). [`ExceptionRecord::covers`] is the one rule that
//! says whether a report accounts for an over-limit episode; the API's
//! unreported list and `minewatch audit` both use it.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crossbeam_channel::Sender;
use serde::Serialize;

use crate::archive::{ArchiveMsg, ExceptionRow};
use crate::model::{Alert, AlertKind, Millis};
use crate::pipeline::{AckSink, Completion};

/// Exception types that report an over-limit or a power-off.
const OVER_LIMIT_TYPES: [&str; 2] = ["001", "002"];

/// The exception type of a feed-abnormal report (馈电异常: power-off
/// commanded, the load still live — the mine's own account of a defeated
/// interlock).
pub const FEED_ABNORMAL_TYPE: &str = "003";

/// How far apart a report and an episode may be and still match, ms.
pub const MATCH_TOLERANCE_MS: Millis = 60_000;

/// Longest wait for the archive to make a file's reports durable.
const DURABLE_WAIT: Duration = Duration::from_secs(60);

/// One exception a mine reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExceptionRecord {
    /// Mine code.
    pub mine: String,
    /// Point code.
    pub point: String,
    /// Exception type code (001 over-limit, 002 power-off, 003 feed
    /// abnormal, 004 sensor disconnected, …).
    pub kind: String,
    /// Sensor type name as written.
    pub type_name: String,
    /// Install location as written.
    pub place: String,
    /// Start, epoch ms.
    pub start_ms: Millis,
    /// End, epoch ms (none while ongoing).
    pub end_ms: Option<Millis>,
    /// Maximum during the exception.
    pub max: Option<f64>,
    /// The mine's stated cause.
    pub cause: String,
    /// The mine's stated measures.
    pub measures: String,
    /// Who entered it.
    pub entered_by: String,
    /// The file it came in.
    pub file: String,
}

impl ExceptionRecord {
    /// True when this report accounts for an over-limit or evacuation
    /// episode at `point` from `start` to `end` (none while ongoing): it is
    /// of type 001 (over-limit) or 002 (power-off), for the same point, and
    /// its span overlaps the episode's, each widened by
    /// [`MATCH_TOLERANCE_MS`] (a report still open covers everything after
    /// its start).
    pub fn covers(&self, point: &str, start: Millis, end: Option<Millis>) -> bool {
        self.covers_as(&OVER_LIMIT_TYPES, point, start, end)
    }

    /// True when this report is of one of `kinds`, for `point`, and its
    /// span overlaps `start`..`end` (none while ongoing), each widened by
    /// [`MATCH_TOLERANCE_MS`].
    pub fn covers_as(
        &self,
        kinds: &[&str],
        point: &str,
        start: Millis,
        end: Option<Millis>,
    ) -> bool {
        let end = end.unwrap_or(Millis::MAX);
        self.point == point
            && kinds.contains(&self.kind.as_str())
            && self.start_ms <= end.saturating_add(MATCH_TOLERANCE_MS)
            && self.end_ms.unwrap_or(Millis::MAX) >= start.saturating_sub(MATCH_TOLERANCE_MS)
    }

    /// The archive row of this report, received at `arrival`.
    pub fn to_row(&self, arrival: Millis) -> ExceptionRow {
        ExceptionRow {
            mine: self.mine.clone(),
            point: self.point.clone(),
            kind: self.kind.clone(),
            type_name: self.type_name.clone(),
            place: self.place.clone(),
            start: self.start_ms,
            end: self.end_ms,
            max: self.max,
            cause: self.cause.clone(),
            measures: self.measures.clone(),
            entered_by: self.entered_by.clone(),
            file: self.file.clone(),
            arrival,
        }
    }
}

impl From<&ExceptionRow> for ExceptionRecord {
    fn from(row: &ExceptionRow) -> ExceptionRecord {
        ExceptionRecord {
            mine: row.mine.clone(),
            point: row.point.clone(),
            kind: row.kind.clone(),
            type_name: row.type_name.clone(),
            place: row.place.clone(),
            start_ms: row.start,
            end_ms: row.end,
            max: row.max,
            cause: row.cause.clone(),
            measures: row.measures.clone(),
            entered_by: row.entered_by.clone(),
            file: row.file.clone(),
        }
    }
}

/// Tells the waiting national-file thread that a file's reports are
/// durable in the archive journal.
struct Durable(Sender<u64>);

impl AckSink for Durable {
    fn complete(&self, token: u64) {
        let _ = self.0.send(token);
    }
}

/// The exception reports received, and which mines send national files.
pub struct ExceptionBook {
    records: RwLock<VecDeque<ExceptionRecord>>,
    reporting: RwLock<HashSet<String>>,
    file: Mutex<Option<BufWriter<File>>>,
    keep: usize,
    /// The archive's queue, when the archive runs.
    archive: Option<Sender<ArchiveMsg>>,
}

impl ExceptionBook {
    /// A book appending to `dir/ycbj.jsonl`, keeping `keep` records in
    /// memory.
    pub fn open(dir: &Path, keep: usize) -> std::io::Result<ExceptionBook> {
        std::fs::create_dir_all(dir)?;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("ycbj.jsonl"))?;
        Ok(ExceptionBook {
            records: RwLock::new(VecDeque::new()),
            reporting: RwLock::new(HashSet::new()),
            file: Mutex::new(Some(BufWriter::new(f))),
            keep,
            archive: None,
        })
    }

    /// A book in memory only.
    pub fn in_memory(keep: usize) -> ExceptionBook {
        ExceptionBook {
            records: RwLock::new(VecDeque::new()),
            reporting: RwLock::new(HashSet::new()),
            file: Mutex::new(None),
            keep,
            archive: None,
        }
    }

    /// Also writes every report to the archive's `exceptions` stream.
    pub fn with_archive(mut self, archive: Sender<ArchiveMsg>) -> ExceptionBook {
        self.archive = Some(archive);
        self
    }

    /// Notes that `mine` uploads national files (so it owes exception
    /// reports for its over-limit episodes).
    pub fn mark_reporting(&self, mine: &str) {
        if let Ok(mut r) = self.reporting.write()
            && !r.contains(mine)
        {
            r.insert(mine.to_string());
        }
    }

    /// Adds the records of one file, received at `arrival`: to the archive
    /// first (waiting, up to a minute, until its journal has made them
    /// durable), then to `ycbj.jsonl` and the in-memory list. Returns false
    /// when the archive runs and could not make them durable in time
    /// (logged; the records are kept in the file and list regardless).
    pub fn add(&self, records: Vec<ExceptionRecord>, arrival: Millis) -> bool {
        if records.is_empty() {
            return true;
        }
        let mut durable = true;
        if let Some(archive) = &self.archive {
            let rows = records.iter().map(|r| r.to_row(arrival)).collect();
            let (tx, rx) = crossbeam_channel::bounded(1);
            let done = Completion::new(1, 0, Arc::new(Durable(tx)));
            let sent = archive
                .send(ArchiveMsg::Exceptions {
                    rows,
                    done: Some(done),
                })
                .is_ok();
            durable = sent && rx.recv_timeout(DURABLE_WAIT).is_ok();
            if !durable {
                tracing::error!(
                    records = records.len(),
                    "exception reports not made durable in the archive within 60 s"
                );
            }
        }
        if let Ok(mut guard) = self.file.lock()
            && let Some(f) = guard.as_mut()
        {
            for r in &records {
                if let Ok(line) = serde_json::to_string(r) {
                    let _ = writeln!(f, "{line}");
                }
            }
            if let Err(e) = f.flush() {
                tracing::error!(error = %e, "cannot write ycbj.jsonl");
            }
        }
        if let Ok(mut book) = self.records.write() {
            for r in records {
                if book.len() >= self.keep {
                    book.pop_front();
                }
                book.push_back(r);
            }
        }
        durable
    }

    /// Records, newest first, optionally of one mine.
    pub fn list(&self, mine: Option<&str>, limit: usize) -> Vec<ExceptionRecord> {
        match self.records.read() {
            Ok(b) => b
                .iter()
                .rev()
                .filter(|r| mine.is_none_or(|m| m == r.mine))
                .take(limit)
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Of `alerts`, the over-limit and evacuation alerts of reporting mines
    /// that no exception report of type 001/002 for the same point covers.
    pub fn unreported(&self, alerts: &[Alert]) -> Vec<Alert> {
        let (Ok(book), Ok(reporting)) = (self.records.read(), self.reporting.read()) else {
            return Vec::new();
        };
        let ms = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_millis())
                .ok()
        };
        alerts
            .iter()
            .filter(|a| matches!(a.kind, AlertKind::Overlimit | AlertKind::Evacuation))
            .filter(|a| reporting.contains(&a.mine))
            .filter(|a| {
                let Some(start) = ms(&a.started_at) else {
                    return false;
                };
                let end = a.resolved_at.as_deref().and_then(ms);
                // An alert without a point is covered by no report.
                a.point
                    .as_deref()
                    .is_none_or(|point| !book.iter().any(|r| r.covers(point, start, end)))
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Severity, rfc3339};

    fn alert(
        kind: AlertKind,
        mine: &str,
        point: &str,
        start: Millis,
        end: Option<Millis>,
    ) -> Alert {
        Alert {
            id: format!("{point}{start}"),
            kind,
            severity: Severity::Major,
            mine: mine.into(),
            mine_name: String::new(),
            county: String::new(),
            city: String::new(),
            province: String::new(),
            point: Some(point.into()),
            sensor: None,
            location: None,
            unit: None,
            value: None,
            peak: None,
            threshold: None,
            rule: String::new(),
            reason: None,
            started_at: rfc3339(start),
            resolved_at: end.map(rfc3339),
            last_seen: None,
            crossings: None,
        }
    }

    fn report(point: &str, kind: &str, start: Millis, end: Option<Millis>) -> ExceptionRecord {
        ExceptionRecord {
            mine: "m".into(),
            point: point.into(),
            kind: kind.into(),
            type_name: "甲烷".into(),
            place: String::new(),
            start_ms: start,
            end_ms: end,
            max: Some(1.2),
            cause: "放炮".into(),
            measures: "加强通风".into(),
            entered_by: "值班员".into(),
            file: "f".into(),
        }
    }

    #[test]
    fn episodes_without_a_matching_report_are_listed() {
        let book = ExceptionBook::in_memory(100);
        book.mark_reporting("m");
        let t = 1_795_420_800_000;
        book.add(
            vec![
                report("P1", "001", t + 30_000, Some(t + 300_000)),
                report("P2", "004", t, Some(t + 300_000)),
            ],
            t + 400_000,
        );
        let alerts = vec![
            alert(AlertKind::Overlimit, "m", "P1", t, Some(t + 200_000)),
            alert(
                AlertKind::Evacuation,
                "m",
                "P1",
                t + 20_000,
                Some(t + 100_000),
            ),
            alert(AlertKind::Overlimit, "m", "P2", t, None),
            alert(AlertKind::Overlimit, "m", "P3", t + 900_000, None),
            alert(AlertKind::Overlimit, "other", "P9", t, None),
            alert(AlertKind::PointOffline, "m", "P4", t, None),
        ];
        let missing: Vec<String> = book
            .unreported(&alerts)
            .into_iter()
            .filter_map(|a| a.point)
            .collect();
        // P2 was reported, but as a disconnection, not an over-limit; P9's
        // mine uploads no files; offline alerts owe no YCBJ.
        assert_eq!(missing, ["P2", "P3"]);
        assert_eq!(book.list(Some("m"), 10).len(), 2);
        assert_eq!(book.list(Some("x"), 10).len(), 0);
    }
}

#[cfg(test)]
mod archive_tests {
    use super::*;

    fn report(kind: &str, start: Millis, end: Option<Millis>) -> ExceptionRecord {
        ExceptionRecord {
            mine: "m".into(),
            point: "P1".into(),
            kind: kind.into(),
            type_name: "甲烷".into(),
            place: "1101工作面".into(),
            start_ms: start,
            end_ms: end,
            max: None,
            cause: String::new(),
            measures: String::new(),
            entered_by: String::new(),
            file: "f".into(),
        }
    }

    #[test]
    fn a_report_covers_an_episode_of_its_point_within_a_minute() {
        let t = 1_795_420_800_000;
        let r = report("001", t, Some(t + 100_000));
        assert!(r.covers("P1", t + 50_000, Some(t + 60_000)));
        assert!(r.covers("P1", t + 160_000, None), "within the tolerance");
        assert!(!r.covers("P1", t + 160_001, None));
        assert!(r.covers("P1", t - 200_000, Some(t - 60_000)));
        assert!(!r.covers("P1", t - 200_000, Some(t - 60_001)));
        assert!(!r.covers("P2", t, None), "another point");
        assert!(!report("004", t, None).covers("P1", t, None), "not 001/002");
        assert!(report("002", t, None).covers("P1", t + 86_400_000, None));
    }

    #[test]
    fn reports_go_to_the_archive_and_wait_until_journaled() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let book = ExceptionBook::in_memory(10).with_archive(tx);
        let t = 1_795_420_800_000;
        // A stand-in journal: takes the message, then tells it done.
        let journal = std::thread::spawn(move || match rx.recv() {
            Ok(ArchiveMsg::Exceptions { rows, done }) => {
                if let Some(d) = done {
                    d.part_done();
                }
                rows
            }
            _ => Vec::new(),
        });
        assert!(book.add(vec![report("001", t, None)], t + 30_000));
        let rows = journal.join().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].start, rows[0].arrival), (t, t + 30_000));
        assert_eq!(ExceptionRecord::from(&rows[0]), report("001", t, None));
        assert_eq!(book.list(None, 10).len(), 1);
    }
}
