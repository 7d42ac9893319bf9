//! The mines' own exception reports (YCBJ), kept as evidence and related to
//! minewatch's own findings: an over-limit episode that a mine uploading
//! national files never reported is something an auditor must see.
//!
//! Records are appended to `{data_dir}/ycbj.jsonl` and the most recent ones
//! kept in memory for the API.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, RwLock};

use serde::Serialize;

use crate::model::{Alert, AlertKind, Millis};

/// Exception types that report an over-limit or a power-off.
const OVER_LIMIT_TYPES: [&str; 2] = ["001", "002"];

/// How far apart a report and an episode may be and still match, ms.
const MATCH_TOLERANCE_MS: Millis = 60_000;

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

/// The exception reports received, and which mines send national files.
pub struct ExceptionBook {
    records: RwLock<VecDeque<ExceptionRecord>>,
    reporting: RwLock<HashSet<String>>,
    file: Mutex<Option<BufWriter<File>>>,
    keep: usize,
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
        })
    }

    /// A book in memory only.
    pub fn in_memory(keep: usize) -> ExceptionBook {
        ExceptionBook {
            records: RwLock::new(VecDeque::new()),
            reporting: RwLock::new(HashSet::new()),
            file: Mutex::new(None),
            keep,
        }
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

    /// Adds records (and writes them to the file).
    pub fn add(&self, records: Vec<ExceptionRecord>) {
        if records.is_empty() {
            return;
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
                let end = a.resolved_at.as_deref().and_then(ms).unwrap_or(Millis::MAX);
                !book.iter().any(|r| {
                    Some(&r.point) == a.point.as_ref()
                        && OVER_LIMIT_TYPES.contains(&r.kind.as_str())
                        && r.start_ms <= end.saturating_add(MATCH_TOLERANCE_MS)
                        && r.end_ms.unwrap_or(Millis::MAX) >= start - MATCH_TOLERANCE_MS
                })
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
        book.add(vec![
            report("P1", "001", t + 30_000, Some(t + 300_000)),
            report("P2", "004", t, Some(t + 300_000)),
        ]);
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
