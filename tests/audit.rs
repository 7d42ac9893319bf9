//! `minewatch audit` end to end: the labelled falsification scenarios
//! (`simulators/labelled.rs`) are written into archives with the archive
//! writer's own API, the real binary audits them, and every injected
//! pattern must come back as a finding of its reason at its point
//! overlapping its window, with a chart in the report; CSV and JSON must
//! agree; two runs must write the same bytes; and the YCBJ cross-check
//! must list an over-limit episode the mine never reported and leave out
//! one it did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minewatch::archive::{ArchiveMsg, ArchiveSettings, ArchiveWriter, ExceptionRow};
use minewatch::config::{Registry, SharedRegistry};
use minewatch::metrics::Metrics;
use minewatch::model::{AlertKind, Millis, Reading, rfc3339};
use minewatch::review::replay::{ReplayOptions, load_episodes};
use minewatch::simulators::labelled::{Generated, Size, generate};
use serde_json::Value;

/// The falsification scenarios, and flat_line for a data anomaly.
const SCENARIOS: [&str; 7] = [
    "hugging",
    "drop_after_approach",
    "interlock",
    "uniform_noise",
    "replayed",
    "neighbours_disagree",
    "flat_line",
];

/// Small enough for a debug build, large enough for every pattern (the
/// replayed copy needs 5 h of warm-up and 4 h of history).
const SIZE: Size = Size {
    mines: 2,
    hours: 10.0,
};

const SLACK_MS: Millis = 15 * 60_000;

/// Writes one scenario's readings into `root` as the daemon's archive
/// would hold them (one message per arrival time, source mqtt).
fn write_archive(g: &Generated, root: &Path) {
    let registry = SharedRegistry::from(Arc::new(Registry::build(&g.province, 1)));
    let settings = ArchiveSettings {
        root: root.to_path_buf(),
        flush_after: Duration::from_secs(3600),
        max_rows_per_file: 1_000_000,
        row_group_rows: 65_536,
        max_buffered_rows: usize::MAX,
        max_buffered_bytes: usize::MAX,
        start: 1,
        retain_days: 0,
    };
    let mut w = ArchiveWriter::new(settings, registry, Arc::new(Metrics::new(1)));
    let mut i = 0;
    while i < g.readings.len() {
        let arrival = g.readings[i].arrival;
        let mut readings: Vec<Reading> = Vec::new();
        while i < g.readings.len() && g.readings[i].arrival == arrival {
            readings.push(g.readings[i].reading);
            i += 1;
        }
        w.accept(
            ArchiveMsg::Readings {
                readings,
                arrival,
                source: "mqtt",
                done: None,
            },
            Instant::now(),
        );
    }
    w.flush(Instant::now(), true);
}

fn audit(archive: &Path, config: &Path, out: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .arg("audit")
        .arg("--archive")
        .arg(archive)
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run minewatch audit");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A CSV line split into fields (quotes and doubled quotes understood).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().expect("field").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().expect("field").push(c),
        }
    }
    out
}

/// Rows of a CSV file as maps from column to value.
fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header = csv_fields(lines.next().expect("header"));
    lines
        .map(|l| header.iter().cloned().zip(csv_fields(l)).collect())
        .collect()
}

fn ms(v: &Value) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.timestamp_millis())
}

struct Run {
    _dir: tempfile::TempDir,
    out: PathBuf,
    json: Value,
    html: String,
    csv: String,
}

fn run_scenario(name: &str) -> (Generated, Run) {
    let g = generate(name, SIZE, minewatch::simulators::score::SEED).expect("scenario");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    write_archive(&g, &archive);
    let config = dir.path().join("province.toml");
    std::fs::write(&config, minewatch::simulators::to_toml(&g.province, "")).expect("config");
    let out = dir.path().join("audit");
    let said = audit(&archive, &config, &out);
    assert!(said.contains("wrote"), "{said}");
    let read = |f: &str| std::fs::read_to_string(out.join(f)).expect(f);
    let json: Value = serde_json::from_str(&read("findings.json")).expect("json");
    let run = Run {
        html: read("report.html"),
        csv: read("findings.csv"),
        json,
        out,
        _dir: dir,
    };
    (g, run)
}

#[test]
fn every_injected_pattern_is_found_ranked_and_charted() {
    for name in SCENARIOS {
        let (g, run) = run_scenario(name);
        let findings = run.json["findings"].as_array().expect("findings");
        assert!(!g.labels.is_empty(), "{name}");
        for label in &g.labels {
            let hit = findings.iter().find(|f| {
                let from = ms(&f["from"]).unwrap_or(Millis::MAX);
                let to = ms(&f["to"]).or_else(|| ms(&f["window_to"])).unwrap_or(0);
                f["reason"] == label.detector.as_str()
                    && f["mine"] == label.mine.as_str()
                    && f["point"] == label.point.as_str()
                    && from <= label.to_ms + SLACK_MS
                    && to >= label.from_ms
            });
            let Some(hit) = hit else {
                panic!(
                    "{name}: no {} finding at {} {} overlapping {} – {}; findings: {}",
                    label.detector,
                    label.mine,
                    label.point,
                    label.from,
                    label.to,
                    serde_json::to_string_pretty(findings).unwrap_or_default()
                );
            };
            let id = hit["id"].as_str().expect("id");
            assert!(
                run.html.contains(&format!("data-chart=\"{id}\"")),
                "{name}: no chart for {id}"
            );
            let strength = hit["strength"].as_f64().expect("strength");
            assert!(
                strength > 0.3,
                "{name}: an injected pattern is weak ({strength}): {}",
                hit["detail"]
            );
        }
        // CSV and JSON list the same findings, in the same order, with
        // the same fields.
        let rows = csv_rows(&run.csv);
        assert_eq!(rows.len(), findings.len(), "{name}");
        for (row, f) in rows.iter().zip(findings) {
            for (k, v) in f.as_object().expect("object") {
                let text = match v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    // A list (reported_by) is one `;`-separated cell.
                    Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(";"),
                    other => other.to_string(),
                };
                assert_eq!(row.get(k), Some(&text), "{name}: column {k}");
            }
        }
        // Ranked: within a point by strength, ranks counting from 1.
        for w in findings.windows(2) {
            if w[0]["mine"] == w[1]["mine"] && w[0]["point"] == w[1]["point"] {
                assert!(w[0]["strength"].as_f64() >= w[1]["strength"].as_f64());
                assert_eq!(w[1]["rank"].as_u64(), w[0]["rank"].as_u64().map(|r| r + 1));
            } else {
                assert_eq!(w[1]["rank"], 1);
            }
        }
        // Self-contained: nothing from the network.
        assert!(!run.html.contains("<script"), "{name}");
        assert_eq!(
            run.html.matches("http").count(),
            run.html
                .matches("xmlns=\"http://www.w3.org/2000/svg\"")
                .count(),
            "{name}: no address but the SVG namespace"
        );
        assert!(run.out.join("unreported.csv").is_file());
    }
}

/// Adds exception reports to an archive (a second writer, as a later run
/// of the daemon would).
fn add_reports(root: &Path, rows: Vec<ExceptionRow>, province: &minewatch::config::Config) {
    let registry = SharedRegistry::from(Arc::new(Registry::build(province, 1)));
    let settings = ArchiveSettings {
        root: root.to_path_buf(),
        flush_after: Duration::from_secs(60),
        max_rows_per_file: 1_000,
        row_group_rows: 1_000,
        max_buffered_rows: usize::MAX,
        max_buffered_bytes: usize::MAX,
        start: 2,
        retain_days: 0,
    };
    let mut w = ArchiveWriter::new(settings, registry, Arc::new(Metrics::new(1)));
    w.accept(ArchiveMsg::Exceptions { rows, done: None }, Instant::now());
    w.flush(Instant::now(), true);
}

#[test]
fn ycbj_lists_the_episode_never_reported_and_omits_the_reported_one_byte_identically() {
    let g = generate("interlock", SIZE, minewatch::simulators::score::SEED).expect("scenario");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    write_archive(&g, &archive);
    let config = dir.path().join("province.toml");
    std::fs::write(&config, minewatch::simulators::to_toml(&g.province, "")).expect("config");
    // The over-limit episodes as replay finds them; mine 0 reports its
    // first one (type 001) and a disconnection (004) at its second.
    let episodes = load_episodes(&ReplayOptions::new(&archive), Some(&g.province)).expect("replay");
    let mine0 = &g.province.mines[0].code;
    let over: Vec<_> = episodes
        .episodes
        .iter()
        .filter(|e| e.kind == AlertKind::Overlimit && &e.mine == mine0)
        .collect();
    assert!(over.len() >= 2, "{over:?}");
    let (reported, silent) = (over[0], over[1]);
    let row = |e: &minewatch::review::replay::AlertEpisode, kind: &str| ExceptionRow {
        mine: e.mine.clone(),
        point: e.point.clone().unwrap_or_default(),
        kind: kind.into(),
        type_name: "甲烷".into(),
        place: "1101工作面".into(),
        start: e.started_at + 20_000,
        end: e.resolved_at,
        max: e.peak,
        cause: "放炮后瓦斯涌出".into(),
        measures: "停电撤人".into(),
        entered_by: "值班员".into(),
        file: format!("{}_YCBJ_{}.txt", e.mine, e.started_at),
        arrival: e.resolved_at.unwrap_or(e.started_at) + 60_000,
    };
    // And its first defeated interlock as feed abnormal (003).
    let interlocks: Vec<_> = episodes
        .episodes
        .iter()
        .filter(|e| e.reason.as_deref() == Some("interlock") && &e.mine == mine0)
        .collect();
    assert!(!interlocks.is_empty(), "{:?}", episodes.episodes);
    let admitted = interlocks[0];
    add_reports(
        &archive,
        vec![
            row(reported, "001"),
            row(silent, "004"),
            row(admitted, "003"),
        ],
        &g.province,
    );

    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    audit(&archive, &config, &one);
    audit(&archive, &config, &two);
    for f in [
        "report.html",
        "findings.csv",
        "findings.json",
        "unreported.csv",
    ] {
        let (a, b) = (
            std::fs::read(one.join(f)).expect(f),
            std::fs::read(two.join(f)).expect(f),
        );
        assert!(a == b, "{f} differs between two runs");
    }
    let json: Value =
        serde_json::from_slice(&std::fs::read(one.join("findings.json")).expect("json"))
            .expect("json");
    let listed: Vec<(String, String)> = json["unreported"]
        .as_array()
        .expect("unreported")
        .iter()
        .map(|e| {
            (
                e["alert_id"].as_str().unwrap_or_default().to_string(),
                e["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        listed.contains(&(silent.alert_id.clone(), "overlimit".into())),
        "the unreported episode is listed: {listed:?}"
    );
    assert!(
        !listed.iter().any(|(id, _)| id == &reported.alert_id),
        "the reported one is not: {listed:?}"
    );
    // Mine 1 sends no national files and no reports: it owes none.
    let mine1 = &g.province.mines[1].code;
    assert!(
        json["unreported"]
            .as_array()
            .expect("list")
            .iter()
            .all(|e| e["mine"] != mine1.as_str())
    );
    let all = json["overlimit_episodes"].as_array().expect("episodes");
    let of = |id: &str| all.iter().find(|e| e["alert_id"] == id).cloned();
    assert_eq!(
        of(&reported.alert_id).expect("reported")["ycbj"],
        "reported"
    );
    assert_eq!(
        of(&reported.alert_id).expect("reported")["reported_by"][0],
        format!("{}_YCBJ_{}.txt", reported.mine, reported.started_at)
    );
    assert!(
        all.iter()
            .filter(|e| e["mine"] == mine1.as_str())
            .all(|e| e["ycbj"] == "not_applicable")
    );
    // Interlock findings: the one the mine reported as feed abnormal says
    // so; its others at this mine are unreported; mine 1 owes nothing.
    let findings = json["findings"].as_array().expect("findings");
    let mut seen = 0;
    for f in findings.iter().filter(|f| f["reason"] == "interlock") {
        let expected = if f["mine"] != mine0.as_str() {
            "not_applicable"
        } else if f["from"] == rfc3339(admitted.started_at).as_str() {
            seen += 1;
            assert_eq!(
                f["reported_by"][0],
                format!("{}_YCBJ_{}.txt", admitted.mine, admitted.started_at)
            );
            "reported"
        } else {
            "unreported"
        };
        assert_eq!(f["ycbj"], expected, "{f}");
    }
    assert_eq!(seen, 1, "the admitted interlock is among the findings");
    assert!(
        findings
            .iter()
            .filter(|f| f["reason"] != "interlock")
            .all(|f| f["ycbj"] == "not_applicable")
    );
    let html = std::fs::read_to_string(one.join("report.html")).expect("html");
    assert!(html.contains("the mine reported it as feed abnormal (003)"));

    // The CSV says the same, and the report charts it.
    let csv = std::fs::read_to_string(one.join("unreported.csv")).expect("csv");
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), listed.len());
    assert!(
        rows.iter()
            .any(|r| r["alert_id"] == silent.alert_id
                && r["started_at"] == rfc3339(silent.started_at))
    );
    assert!(html.contains(&format!("data-chart=\"e-{}\"", silent.alert_id)));
    assert!(!html.contains(&format!("data-chart=\"e-{}\"", reported.alert_id)));
}

#[test]
fn bad_input_is_a_clear_error_and_a_broken_file_is_skipped() {
    let bin = env!("CARGO_BIN_EXE_minewatch");
    let dir = tempfile::tempdir().expect("tempdir");
    // No archive.
    let o = Command::new(bin)
        .args(["audit", "--archive"])
        .arg(dir.path().join("nowhere"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a folder"));

    // A small archive with a broken file; an empty range; an out that is a file.
    let g = generate(
        "hugging",
        Size {
            mines: 1,
            hours: 5.0,
        },
        7,
    )
    .expect("scenario");
    let archive = dir.path().join("archive");
    write_archive(&g, &archive);
    let hour = archive.join("readings/date=2026-11-23/hour=01");
    std::fs::write(hour.join("0-000001.parquet"), b"PAR1 truncated").expect("write");
    let out = dir.path().join("out");
    let o = Command::new(bin)
        .args(["audit", "--archive"])
        .arg(&archive)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("skipped") && stderr.contains("0-000001.parquet"),
        "{stderr}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(html.contains("0-000001.parquet"));
    let o = Command::new(bin)
        .args(["audit", "--from", "2030-01-01", "--archive"])
        .arg(&archive)
        .arg("--out")
        .arg(dir.path().join("empty"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no readings"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!dir.path().join("empty").exists(), "nothing written");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").expect("write");
    let o = Command::new(bin)
        .args(["audit", "--archive"])
        .arg(&archive)
        .arg("--out")
        .arg(&blocker)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot create the output folder"));
    let o = Command::new(bin)
        .args(["audit", "--from", "yesterday", "--archive"])
        .arg(&archive)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--from \"yesterday\""));
}
