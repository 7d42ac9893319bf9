//! Tests of the audit run: a small archive written with the archive
//! writer's own API — a point hugging the alarm line, two over-limit
//! episodes of which the mine reported one, a broken file — audited through
//! the library; ranking; bad input.

use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::archive::{ArchiveMsg, ArchiveSettings, ArchiveWriter, ExceptionRow};
use crate::config::{Config, SharedRegistry, parse};
use crate::metrics::Metrics;
use crate::model::{Reading, status};

const CONFIG: &str = r#"
[[mines]]
code = "140121000001"
name = "示例一矿"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 5
points = [
  { code = "P-HUG", sensor = "0001", location = "face_t1", place = "1101工作面" },
  { code = "P-GAS", sensor = "0001", location = "face_t1", place = "1201工作面" },
  { code = "P-REP", sensor = "0001", location = "face_t1", place = "1301工作面" },
]
"#;

/// 2026-11-23T00:00:00Z.
const T0: Millis = 1_795_392_000_000;
const POLL: Millis = 5_000;
const STEPS: i64 = 3 * 720; // three hours

fn config() -> Config {
    parse(CONFIG).expect("valid").0
}

fn noise(i: i64) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabcd;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn q2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// P-HUG hugs [0.90, 1.00) from 1 h to 2 h 30; P-GAS goes over the line at
/// 0:40 for 2 minutes, P-REP at 2:00 for 2 minutes (the mine reports
/// only P-REP's, and a disconnection of P-GAS).
fn value(point: u32, i: i64) -> (f64, u16) {
    let wobble = 0.3 + 0.04 * ((i as f64) / 50.0).sin() + 0.02 * noise(i * 3 + point as i64);
    let v = match point {
        0 if (720..1800).contains(&i) => 0.9 + 0.09 * noise(i),
        1 if (480..504).contains(&i) => 1.2,
        2 if (1440..1464).contains(&i) => 1.2,
        _ => wobble,
    };
    let v = q2(v);
    (v, if v >= 1.0 { status::ALARM } else { 0 })
}

fn report(point: &str, kind: &str, start: Millis, end: Option<Millis>) -> ExceptionRow {
    ExceptionRow {
        mine: "140121000001".into(),
        point: point.into(),
        kind: kind.into(),
        type_name: "甲烷".into(),
        place: String::new(),
        start,
        end,
        max: Some(1.2),
        cause: "放炮".into(),
        measures: "加强通风".into(),
        entered_by: "值班员".into(),
        file: format!("140121000001_YCBJ_{kind}.txt"),
        arrival: T0 + STEPS * POLL,
    }
}

fn write_archive(root: &std::path::Path) {
    let registry = SharedRegistry::from(Arc::new(Registry::build(&config(), 1)));
    let settings = ArchiveSettings {
        root: root.to_path_buf(),
        flush_after: std::time::Duration::from_secs(60),
        max_rows_per_file: 1_000_000,
        row_group_rows: 4096,
        max_buffered_rows: usize::MAX,
        max_buffered_bytes: usize::MAX,
        start: 7,
        retain_days: 0,
    };
    let mut w = ArchiveWriter::new(settings, registry, Arc::new(Metrics::new(1)));
    for i in 0..STEPS {
        let ts = T0 + i * POLL;
        let readings = (0..3)
            .map(|p| {
                let (value, status) = value(p, i);
                Reading {
                    point: p,
                    ts,
                    value,
                    status,
                }
            })
            .collect();
        w.accept(
            ArchiveMsg::Readings {
                readings,
                arrival: ts + 1500,
                source: "mqtt",
                done: None,
            },
            Instant::now(),
        );
    }
    let rep = T0 + 1440 * POLL;
    w.accept(
        ArchiveMsg::Exceptions {
            rows: vec![
                report("P-REP", "001", rep + 10_000, Some(rep + 130_000)),
                report("P-GAS", "004", T0 + 480 * POLL, None),
            ],
            done: None,
        },
        Instant::now(),
    );
    w.flush(Instant::now(), true);
}

fn options(root: &std::path::Path) -> AuditOptions {
    AuditOptions {
        replay: ReplayOptions::new(root),
        config: Some("audit-test.toml".into()),
    }
}

#[test]
fn an_audit_finds_the_hugging_ranks_it_and_lists_the_unreported_episode() {
    let dir = tempfile::tempdir().unwrap();
    write_archive(dir.path());
    let audit = run(
        &options(dir.path()),
        Registry::build(&config(), 1),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(audit.readings, 3 * STEPS as u64);
    assert!(audit.skipped.is_empty(), "{:?}", audit.skipped);
    let hugging: Vec<&AuditFinding> = audit
        .findings
        .iter()
        .filter(|f| f.reason == "hugging")
        .collect();
    assert_eq!(hugging.len(), 1, "{:#?}", audit.findings);
    let h = hugging[0];
    assert_eq!((h.point.as_str(), h.rank), ("P-HUG", 1));
    assert!(h.from > T0 + 720 * POLL && h.from < T0 + 1800 * POLL);
    assert!(h.strength > 0.5, "{} {}", h.strength, h.detail);
    assert_eq!(h.window_from, h.from - 3_600_000);
    assert_eq!((h.alarm, h.power_off), (Some(1.0), Some(1.5)));
    // Nothing is flagged on the points that only went over the line.
    assert!(
        audit.findings.iter().all(|f| f.point == "P-HUG"),
        "{:#?}",
        audit.findings
    );
    let chart = &audit.charts[&h.id];
    assert!(chart.from < h.window_from && chart.to > h.window_to);
    assert!(chart.series[0].readings.len() > 720);
    assert!(
        chart
            .levels
            .iter()
            .any(|l| l.en == "alarm" && l.value == 1.0)
    );

    // YCBJ: the mine sends reports, so it owes them; P-REP's is covered,
    // P-GAS's (reported only as a disconnection) is not.
    assert!(audit.owing.contains("140121000001"));
    assert_eq!(audit.exceptions, 2);
    let ycbj: Vec<(&str, Reported)> = audit
        .episodes
        .iter()
        .map(|e| (e.point.as_str(), e.ycbj))
        .collect();
    assert_eq!(
        ycbj,
        [
            ("P-GAS", Reported::Unreported),
            ("P-REP", Reported::Reported)
        ]
    );
    assert_eq!(audit.episodes[1].reported_by, ["140121000001_YCBJ_001.txt"]);
    assert_eq!(audit.episodes[0].duration_s, 120.0);
    let unreported = &audit.episodes[0];
    assert!(
        audit
            .charts
            .contains_key(&format!("e-{}", unreported.alert_id))
    );

    // Outputs: the same bytes twice; CSV and JSON agree.
    let (one, two) = (dir.path().join("out1"), dir.path().join("out2"));
    let written = write_outputs(&audit, &one).unwrap();
    assert_eq!(written.len(), 4);
    let again = run(
        &options(dir.path()),
        Registry::build(&config(), 1),
        Vec::new(),
    )
    .unwrap();
    write_outputs(&again, &two).unwrap();
    for name in [
        "report.html",
        "findings.csv",
        "findings.json",
        "unreported.csv",
    ] {
        assert_eq!(
            std::fs::read(one.join(name)).unwrap(),
            std::fs::read(two.join(name)).unwrap(),
            "{name}"
        );
    }
    let csv = std::fs::read_to_string(one.join("findings.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + audit.findings.len());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(one.join("findings.json")).unwrap()).unwrap();
    assert_eq!(json["findings"][0]["id"], h.id);
    assert_eq!(json["findings"][0]["strength"], h.strength);
    assert_eq!(json["unreported"][0]["point"], "P-GAS");
    assert_eq!(json["mines"][0]["unreported"], 1);
    // The report: self-contained, a chart for the finding and the
    // unreported episode.
    let html = std::fs::read_to_string(one.join("report.html")).unwrap();
    assert!(html.contains(&format!("data-chart=\"{}\"", h.id)));
    assert!(html.contains(&format!("data-chart=\"e-{}\"", unreported.alert_id)));
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("@import"));
    assert_eq!(
        html.matches("http").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "no address but the SVG namespace"
    );
    let unreported_csv = std::fs::read_to_string(one.join("unreported.csv")).unwrap();
    assert_eq!(unreported_csv.lines().count(), 2);
    assert!(unreported_csv.contains(",overlimit,140121000001,P-GAS,"));
}

#[test]
fn a_broken_file_is_skipped_and_said_and_bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_archive(dir.path());
    let hour = dir.path().join("readings/date=2026-11-23/hour=01");
    std::fs::write(hour.join("9-000001.parquet"), b"PAR1 cut short").unwrap();
    let audit = run(
        &options(dir.path()),
        Registry::build(&config(), 1),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(audit.skipped.len(), 1);
    assert!(audit.skipped[0].path.ends_with("9-000001.parquet"));
    assert_eq!(
        audit.readings,
        3 * STEPS as u64,
        "the good files are all read"
    );
    let html = html::render(&audit);
    assert!(html.contains("9-000001.parquet"));
    assert!(html.contains("could not be read"));

    // An empty range.
    let mut opts = options(dir.path());
    opts.replay.from = Some(T0 + 86_400_000);
    let e = run(&opts, Registry::build(&config(), 1), Vec::new()).unwrap_err();
    assert!(format!("{e:#}").contains("holds no readings"), "{e:#}");
    // An output folder that cannot be made.
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").unwrap();
    let e = write_outputs(&audit, &blocker.join("out")).unwrap_err();
    assert!(
        format!("{e:#}").contains("cannot create the output folder"),
        "{e:#}"
    );
}

fn finding(mine: &str, point: &str, strength: f64, duration_s: f64, from: Millis) -> AuditFinding {
    AuditFinding {
        id: format!("{mine}{point}{from}"),
        rank: 0,
        mine: mine.into(),
        mine_name: String::new(),
        point: point.into(),
        sensor: "0001".into(),
        location: "face_t1",
        place: String::new(),
        unit: "%".into(),
        kind: AlertKind::FalsificationSuspect,
        reason: "hugging",
        reason_zh: "",
        from,
        to: None,
        duration_s,
        window_from: from,
        window_to: from,
        strength,
        readings: 0,
        value: None,
        alarm: None,
        power_off: None,
        restore: None,
        detail: String::new(),
        detail_zh: String::new(),
        ycbj: Reported::NotApplicable,
        reported_by: Vec::new(),
        point_idx: 0,
    }
}

#[test]
fn ranking_orders_mines_and_points_by_their_strongest_finding() {
    let mut f = vec![
        finding("A", "a1", 0.4, 10.0, 1),
        finding("B", "b1", 0.6, 10.0, 1),
        finding("A", "a2", 0.9, 10.0, 1),
        finding("A", "a1", 0.4, 50.0, 2),
        finding("A", "a1", 0.5, 10.0, 3),
        finding("B", "b2", 0.6, 10.0, 0),
    ];
    rank(&mut f);
    let got: Vec<(&str, &str, f64, f64, usize)> = f
        .iter()
        .map(|f| {
            (
                f.mine.as_str(),
                f.point.as_str(),
                f.strength,
                f.duration_s,
                f.rank,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("A", "a2", 0.9, 10.0, 1),
            ("A", "a1", 0.5, 10.0, 1),
            ("A", "a1", 0.4, 50.0, 2),
            ("A", "a1", 0.4, 10.0, 3),
            ("B", "b1", 0.6, 10.0, 1),
            ("B", "b2", 0.6, 10.0, 1),
        ]
    );
}

#[test]
fn flag_episodes_are_kept_per_point_and_reason() {
    let mut e = FlagEpisodes::default();
    let raise = |point, ts, flag| Finding::FlagRaised {
        point,
        ts,
        flag,
        value: 0.9,
    };
    e.apply(&raise(1, 10, Flag::Hugging));
    e.apply(&raise(1, 20, Flag::UniformNoise));
    e.apply(&raise(1, 30, Flag::Hugging)); // already open: ignored
    e.apply(&Finding::FlagCleared {
        point: 1,
        ts: 40,
        flag: Flag::Hugging,
    });
    e.apply(&raise(2, 50, Flag::Hugging));
    let got: Vec<(PointIdx, Flag, Millis, Option<Millis>)> = e
        .all
        .iter()
        .map(|r| (r.point, r.flag, r.from, r.to))
        .collect();
    assert_eq!(
        got,
        [
            (1, Flag::Hugging, 10, Some(40)),
            (1, Flag::UniformNoise, 20, None),
            (2, Flag::Hugging, 50, None),
        ]
    );
}
