//! Tests of replay: event-time order across files and hours, episodes and
//! their ids, partition pruning, the registry taken from the archive, and
//! byte-identical output.

use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::archive::{ArchiveMsg, ArchiveSettings, ArchiveWriter};
use crate::config::{SharedRegistry, parse};
use crate::metrics::Metrics;

const CONFIG: &str = r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 10
points = [
  { code = "14012100000101MN0001001", sensor = "0001", location = "face_t1" },
  { code = "14012100000101MN0004002", sensor = "0004", location = "face_t2" },
]
[[mines]]
code = "140121000002"
name = "b"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 10
points = [ { code = "14012100000201MN0001001", sensor = "0001", location = "face_t1" } ]
"#;

/// 2026-11-23T16:00:00Z.
const H16: Millis = 1_795_449_600_000;

fn config() -> Config {
    parse(CONFIG).expect("valid").0
}

/// Writes an archive: every point every 10 s from 16:50 to 17:10; point 0
/// (mine a's methane) goes over 1.0 at 16:59:00, over 1.5 at 16:59:30,
/// peaks 2.0 and comes back below 1.0 at 17:01:00 — across the hour
/// boundary, and split over two files per hour (odd and even rounds).
fn archive(root: &std::path::Path) {
    let registry = SharedRegistry::from(Arc::new(Registry::build(&config(), 1)));
    let settings = ArchiveSettings {
        root: root.to_path_buf(),
        flush_after: std::time::Duration::from_secs(60),
        max_rows_per_file: 1_000_000,
        row_group_rows: 64,
        max_buffered_rows: usize::MAX,
        max_buffered_bytes: usize::MAX,
        start: 1,
        retain_days: 0,
    };
    let mut w = ArchiveWriter::new(settings, registry, Arc::new(Metrics::new(1)));
    let value = |p: u32, t: Millis| -> f64 {
        if p != 0 {
            return 0.2;
        }
        let s = (t - H16) / 1000;
        match s {
            3540..3570 => 1.2,
            3570..3590 => 1.6,
            3590..3600 => 2.0,
            3600..3660 => 1.1,
            _ => 0.3,
        }
    };
    let mut batches = Vec::new();
    for k in 0..120 {
        let t = H16 + 50 * 60_000 + k * 10_000;
        let readings: Vec<Reading> = (0..3)
            .map(|p| Reading {
                point: p,
                ts: t,
                value: value(p, t),
                status: 0,
            })
            .collect();
        batches.push((t, readings));
    }
    // Two files per hour: the odd rounds first, then the even ones.
    for parity in [1, 0] {
        for (t, readings) in batches.iter().skip(parity).step_by(2) {
            w.accept(
                ArchiveMsg::Readings {
                    readings: readings.clone(),
                    arrival: t + 150,
                    source: "mqtt",
                    done: None,
                },
                Instant::now(),
            );
        }
        w.flush(Instant::now(), true);
    }
}

#[test]
fn an_episode_across_hours_and_files_is_found_once_with_its_live_id() {
    let dir = tempfile::tempdir().unwrap();
    archive(dir.path());
    let result = load_episodes(&ReplayOptions::new(dir.path()), Some(&config())).unwrap();
    assert_eq!(result.readings, 360);
    assert_eq!(result.files, 4);
    type Summary<'a> = (
        AlertKind,
        &'a str,
        Millis,
        Option<Millis>,
        Option<f64>,
        Option<f64>,
    );
    let got: Vec<Summary> = result
        .episodes
        .iter()
        .map(|e| {
            (
                e.kind,
                e.point.as_deref().unwrap_or(""),
                e.started_at,
                e.resolved_at,
                e.peak,
                e.threshold,
            )
        })
        .collect();
    let p = "14012100000101MN0001001";
    assert_eq!(
        got,
        [
            (
                AlertKind::Overlimit,
                p,
                H16 + 3_540_000,
                Some(H16 + 3_660_000),
                Some(2.0),
                Some(1.0)
            ),
            (
                AlertKind::Evacuation,
                p,
                H16 + 3_570_000,
                Some(H16 + 3_660_000),
                Some(2.0),
                Some(1.5)
            ),
        ]
    );
    assert_eq!(
        result.episodes[0].alert_id,
        crate::alert::alert_id(
            AlertKind::Overlimit,
            "140121000001",
            Some(p),
            H16 + 3_540_000
        )
    );
}

#[test]
fn output_is_the_same_bytes_every_time_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    archive(dir.path());
    for format in [Format::Table, Format::Json, Format::Csv] {
        let one = render(
            &load_episodes(&ReplayOptions::new(dir.path()), Some(&config()))
                .unwrap()
                .episodes,
            format,
        );
        let two = render(
            &load_episodes(&ReplayOptions::new(dir.path()), None)
                .unwrap()
                .episodes,
            format,
        );
        assert_eq!(one, two, "{format:?}");
    }
    let csv = render(
        &load_episodes(&ReplayOptions::new(dir.path()), None)
            .unwrap()
            .episodes,
        Format::Csv,
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "alert_id,kind,mine,point,started_at,resolved_at,peak,threshold,reason"
    );
    assert!(
        lines[1].ends_with(
            ",overlimit,140121000001,14012100000101MN0001001,2026-11-23T16:59:00.000Z,2026-11-23T17:01:00.000Z,2,1,"
        ),
        "{csv}"
    );
}

#[test]
fn from_to_and_mine_select_what_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    archive(dir.path());
    // From 17:00 only: the point is then at 1.1, above the alarm line, so
    // an over-limit opens at 17:00:00 and closes at 17:01:00.
    let mut opts = ReplayOptions::new(dir.path());
    opts.from = Some(H16 + 3_600_000);
    let r = load_episodes(&opts, Some(&config())).unwrap();
    assert_eq!(r.files, 2, "hour 16 is not opened");
    assert_eq!(r.readings, 180);
    assert_eq!(r.episodes.len(), 1);
    assert_eq!(r.episodes[0].started_at, H16 + 3_600_000);
    // Up to 16:59:10 (excluded): only the over-limit, still open.
    let mut opts = ReplayOptions::new(dir.path());
    opts.to = Some(H16 + 3_550_000);
    let r = load_episodes(&opts, Some(&config())).unwrap();
    assert_eq!(r.episodes.len(), 1);
    assert_eq!(r.episodes[0].resolved_at, None);
    // Mine b alone has nothing to say.
    let mut opts = ReplayOptions::new(dir.path());
    opts.mine = Some("140121000002".into());
    let r = load_episodes(&opts, None).unwrap();
    assert_eq!(r.readings, 120);
    assert!(r.episodes.is_empty());
}

#[test]
fn without_a_config_the_archive_supplies_the_points_and_rule_defaults() {
    let dir = tempfile::tempdir().unwrap();
    archive(dir.path());
    let reg = registry_from_archive(&select_partitions(dir.path(), None, None), None).unwrap();
    assert_eq!(reg.mines.len(), 2);
    assert_eq!(reg.points.len(), 3);
    let methane = reg.point("14012100000101MN0001001").unwrap();
    let limits = reg.points[methane as usize].limits.unwrap();
    assert_eq!((limits.alarm, limits.evacuate), (1.0, Some(1.5)));
    let co = reg.point("14012100000101MN0004002").unwrap();
    assert_eq!(reg.points[co as usize].limits.unwrap().alarm, 24.0);
}

#[test]
fn times_parse_in_three_spellings() {
    assert_eq!(parse_time("2026-11-23T16:00:00Z"), Some(H16));
    assert_eq!(parse_time("2026-11-24T00:00:00+08:00"), Some(H16));
    assert_eq!(parse_time("2026-11-23"), Some(H16 - 16 * 3_600_000));
    assert_eq!(parse_time("1795449600000"), Some(H16));
    assert_eq!(parse_time("yesterday"), None);
}

#[test]
fn a_flag_episode_carries_the_reason_that_raised_it() {
    use crate::model::Flag;
    let registry = Registry::build(&config(), 1);
    let mut b = EpisodeBuilder::default();
    let raised = |flag, ts| Finding::FlagRaised {
        point: 0,
        ts,
        flag,
        value: 0.95,
    };
    let cleared = |flag, ts| Finding::FlagCleared { point: 0, ts, flag };
    b.apply(&registry, &raised(Flag::Hugging, H16));
    b.apply(&registry, &raised(Flag::Replayed, H16 + 5_000));
    b.apply(&registry, &raised(Flag::FlatLine, H16 + 6_000));
    b.apply(&registry, &cleared(Flag::Hugging, H16 + 10_000));
    b.apply(&registry, &cleared(Flag::Replayed, H16 + 20_000));
    let got: Vec<_> = b
        .finish()
        .into_iter()
        .map(|e| (e.kind, e.reason, e.resolved_at))
        .collect();
    assert_eq!(
        got,
        [
            (
                AlertKind::FalsificationSuspect,
                Some("hugging".to_string()),
                Some(H16 + 20_000)
            ),
            (AlertKind::DataAnomaly, Some("flat_line".to_string()), None),
        ]
    );
}

#[test]
fn an_unreadable_file_fails_a_replay_or_is_skipped_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    archive(dir.path());
    // A truncated copy of a real file, and a file that is not Parquet.
    let hour17 = dir.path().join("readings/date=2026-11-23/hour=17");
    let good = partition_files(&hour17).unwrap()[0].clone();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(hour17.join("9-000001.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(hour17.join("9-000002.parquet"), b"not parquet").unwrap();
    let opts = ReplayOptions::new(dir.path());
    assert!(load_episodes(&opts, Some(&config())).is_err());
    let mut opts = ReplayOptions::new(dir.path());
    opts.skip_unreadable = true;
    opts.sources = true;
    let r = load_episodes(&opts, Some(&config())).unwrap();
    assert_eq!(r.readings, 360, "everything readable is still replayed");
    let names: Vec<&str> = r
        .skipped
        .iter()
        .map(|s| s.path.rsplit('/').next().unwrap_or(""))
        .collect();
    assert_eq!(names, ["9-000001.parquet", "9-000002.parquet"]);
    assert!(r.skipped.iter().all(|s| !s.error.is_empty()));
    assert_eq!(r.episodes.len(), 2);
    // The archive came over MQTT: no mine sends national files.
    assert!(r.netfile_mines.is_empty());
    assert_eq!(
        r.span,
        Some((H16 + 50 * 60_000, H16 + 50 * 60_000 + 119 * 10_000))
    );
    // The registry taken from the archive skips them too.
    let mut skipped = Vec::new();
    let reg = registry_from_archive_skipping(
        &select_partitions(dir.path(), None, None),
        None,
        &mut skipped,
    )
    .unwrap();
    assert_eq!((reg.points.len(), skipped.len()), (3, 2));
}

#[test]
fn readings_from_national_files_mark_their_mine() {
    let dir = tempfile::tempdir().unwrap();
    let registry = SharedRegistry::from(Arc::new(Registry::build(&config(), 1)));
    let settings = ArchiveSettings {
        root: dir.path().to_path_buf(),
        flush_after: std::time::Duration::from_secs(60),
        max_rows_per_file: 1_000_000,
        row_group_rows: 64,
        max_buffered_rows: usize::MAX,
        max_buffered_bytes: usize::MAX,
        start: 1,
        retain_days: 0,
    };
    let mut w = ArchiveWriter::new(settings, registry, Arc::new(Metrics::new(1)));
    for (point, source) in [(0, "mqtt"), (2, "netfile")] {
        w.accept(
            ArchiveMsg::Readings {
                readings: vec![Reading {
                    point,
                    ts: H16,
                    value: 0.2,
                    status: 0,
                }],
                arrival: H16 + 100,
                source,
                done: None,
            },
            Instant::now(),
        );
    }
    w.flush(Instant::now(), true);
    let mut opts = ReplayOptions::new(dir.path());
    opts.sources = true;
    let r = load_episodes(&opts, Some(&config())).unwrap();
    let reg = Registry::build(&config(), 1);
    let mines: Vec<&str> = r
        .netfile_mines
        .iter()
        .map(|m| reg.mines[*m as usize].code.as_str())
        .collect();
    assert_eq!(mines, ["140121000002"]);
}
