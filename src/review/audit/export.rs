//! The audit's findings for other tools: `findings.csv` (one line per
//! finding), `findings.json` (the run, the mines, the findings, the
//! over-limit episodes with their YCBJ cross-check, the unreported ones)
//! and `unreported.csv`. Field names are stable and documented in
//! docs/ARCHIVE.md ("Audit"); CSV and JSON write every number with the same digits.

use serde::Serialize;

use super::{Audit, AuditFinding, OverLimitEpisode, Reported};
use crate::model::rfc3339;
use crate::review::replay::SkippedFile;

/// Columns of `findings.csv`, in order (the JSON finding's fields).
pub const FINDING_COLUMNS: [&str; 27] = [
    "id",
    "rank",
    "mine",
    "mine_name",
    "point",
    "sensor",
    "location",
    "place",
    "unit",
    "kind",
    "reason",
    "reason_zh",
    "from",
    "to",
    "duration_s",
    "window_from",
    "window_to",
    "strength",
    "readings",
    "value",
    "alarm",
    "power_off",
    "restore",
    "detail",
    "detail_zh",
    "ycbj",
    "reported_by",
];

/// Columns of `unreported.csv`, in order.
pub const UNREPORTED_COLUMNS: [&str; 9] = [
    "alert_id",
    "kind",
    "mine",
    "point",
    "started_at",
    "resolved_at",
    "duration_s",
    "peak",
    "threshold",
];

/// A CSV field, quoted when it must be.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A number as JSON writes it.
fn num(v: f64) -> String {
    serde_json::to_string(&v).unwrap_or_default()
}

fn opt_num(v: Option<f64>) -> String {
    v.map_or(String::new(), num)
}

fn line(cells: &[String]) -> String {
    let mut s: String = cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(",");
    s.push('\n');
    s
}

/// The cells of one finding, in [`FINDING_COLUMNS`] order.
pub fn finding_cells(f: &AuditFinding) -> Vec<String> {
    vec![
        f.id.clone(),
        f.rank.to_string(),
        f.mine.clone(),
        f.mine_name.clone(),
        f.point.clone(),
        f.sensor.clone(),
        f.location.to_string(),
        f.place.clone(),
        f.unit.clone(),
        f.kind.key().to_string(),
        f.reason.to_string(),
        f.reason_zh.to_string(),
        rfc3339(f.from),
        f.to.map(rfc3339).unwrap_or_default(),
        num(f.duration_s),
        rfc3339(f.window_from),
        rfc3339(f.window_to),
        num(f.strength),
        f.readings.to_string(),
        opt_num(f.value),
        opt_num(f.alarm),
        opt_num(f.power_off),
        opt_num(f.restore),
        f.detail.clone(),
        f.detail_zh.clone(),
        reported_key(f.ycbj).to_string(),
        f.reported_by.join(";"),
    ]
}

/// [`Reported`] as the CSV and JSON name it.
fn reported_key(r: Reported) -> &'static str {
    match r {
        Reported::Reported => "reported",
        Reported::Unreported => "unreported",
        Reported::NotApplicable => "not_applicable",
    }
}

/// `findings.csv`: a header line, then the findings in ranked order.
pub fn findings_csv(findings: &[AuditFinding]) -> String {
    let mut s = line(&FINDING_COLUMNS.map(String::from));
    for f in findings {
        s.push_str(&line(&finding_cells(f)));
    }
    s
}

/// `unreported.csv`: the over-limit and evacuation episodes no YCBJ
/// report covers, at mines that owe reports.
pub fn unreported_csv(audit: &Audit) -> String {
    let mut s = line(&UNREPORTED_COLUMNS.map(String::from));
    for e in audit.unreported() {
        s.push_str(&line(&[
            e.alert_id.clone(),
            e.kind.key().to_string(),
            e.mine.clone(),
            e.point.clone(),
            rfc3339(e.started_at),
            e.resolved_at.map(rfc3339).unwrap_or_default(),
            num(e.duration_s),
            opt_num(e.peak),
            opt_num(e.threshold),
        ]));
    }
    s
}

/// The run, as `findings.json` describes it.
#[derive(Serialize)]
struct Run<'a> {
    archive: &'a str,
    from: Option<String>,
    to: Option<String>,
    mine: Option<&'a str>,
    config: Option<&'a str>,
    readings: u64,
    files: usize,
    unknown_points: u64,
    data_from: Option<String>,
    data_to: Option<String>,
    exception_reports: usize,
    skipped_files: &'a [SkippedFile],
}

/// One mine's summary in `findings.json`.
#[derive(Serialize)]
struct MineSummary<'a> {
    mine: &'a str,
    name: &'a str,
    findings: usize,
    strongest: Option<f64>,
    owes_ycbj: bool,
    overlimit_episodes: usize,
    unreported: usize,
}

#[derive(Serialize)]
struct Document<'a> {
    audit: Run<'a>,
    mines: Vec<MineSummary<'a>>,
    findings: &'a [AuditFinding],
    overlimit_episodes: &'a [OverLimitEpisode],
    unreported: Vec<&'a OverLimitEpisode>,
}

/// Mines in report order: by strongest finding, then code; mines without
/// findings last.
pub fn mine_order(audit: &Audit) -> Vec<(&str, &str)> {
    let mut mines: Vec<(&str, &str, f64)> = audit
        .mines
        .iter()
        .map(|(code, name)| {
            let best = audit
                .findings
                .iter()
                .filter(|f| &f.mine == code)
                .map(|f| f.strength)
                .fold(f64::NEG_INFINITY, f64::max);
            (code.as_str(), name.as_str(), best)
        })
        .collect();
    mines.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(b.0)));
    mines.into_iter().map(|(c, n, _)| (c, n)).collect()
}

/// `findings.json`, pretty-printed, ending in a newline.
pub fn json(audit: &Audit) -> String {
    let mines = mine_order(audit)
        .into_iter()
        .map(|(code, name)| {
            let findings: Vec<&AuditFinding> =
                audit.findings.iter().filter(|f| f.mine == code).collect();
            let episodes: Vec<&OverLimitEpisode> =
                audit.episodes.iter().filter(|e| e.mine == code).collect();
            MineSummary {
                mine: code,
                name,
                findings: findings.len(),
                strongest: findings.iter().map(|f| f.strength).reduce(f64::max),
                owes_ycbj: audit.owing.contains(code),
                overlimit_episodes: episodes.len(),
                unreported: episodes
                    .iter()
                    .filter(|e| e.ycbj == Reported::Unreported)
                    .count(),
            }
        })
        .collect();
    let doc = Document {
        audit: Run {
            archive: &audit.archive,
            from: audit.from.map(rfc3339),
            to: audit.to.map(rfc3339),
            mine: audit.mine.as_deref(),
            config: audit.config.as_deref(),
            readings: audit.readings,
            files: audit.files,
            unknown_points: audit.unknown_points,
            data_from: audit.span.map(|s| rfc3339(s.0)),
            data_to: audit.span.map(|s| rfc3339(s.1)),
            exception_reports: audit.exceptions,
            skipped_files: &audit.skipped,
        },
        mines,
        findings: &audit.findings,
        overlimit_episodes: &audit.episodes,
        unreported: audit.unreported().collect(),
    };
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
