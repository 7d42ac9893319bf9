//! Tests of `replay --compare`: pairing by id and then by overlap, each
//! kind of difference, the one-tick tolerance of offline kinds, episodes
//! cut by the range, live episodes read back from an exported `alerts`
//! stream, and stable output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast};

use super::*;
use crate::alert::{Lifecycle, alert_id};
use crate::archive::ArchiveSettings;
use crate::archive::alerts::Exporter;
use crate::config::alerting::AlertingConfig;
use crate::metrics::Metrics;
use crate::model::Alert;
use crate::pipeline::ManualClock;
use crate::store::testing;

/// 2026-11-23T16:00:00Z.
const H16: Millis = 1_795_449_600_000;
const MINE: &str = "140121000001";

fn episode(
    kind: AlertKind,
    point: &str,
    start: Millis,
    end: Option<Millis>,
    peak: Option<f64>,
) -> AlertEpisode {
    AlertEpisode {
        alert_id: alert_id(kind, MINE, Some(point), start),
        kind,
        mine: MINE.into(),
        point: Some(point.into()),
        started_at: start,
        resolved_at: end,
        peak,
        threshold: None,
        reason: None,
    }
}

fn opts() -> CompareOptions {
    CompareOptions {
        tick_ms: 1000,
        ..CompareOptions::default()
    }
}

fn whats(diffs: &[Difference]) -> Vec<(DifferenceKind, String)> {
    diffs
        .iter()
        .map(|d| {
            let e = d.episode().expect("an episode");
            (d.what, e.point.clone().unwrap_or_default())
        })
        .collect()
}

#[test]
fn episodes_that_agree_show_no_difference() {
    let list = vec![
        episode(
            AlertKind::Overlimit,
            "a",
            H16,
            Some(H16 + 60_000),
            Some(1.4),
        ),
        episode(
            AlertKind::Evacuation,
            "a",
            H16 + 10_000,
            Some(H16 + 60_000),
            Some(1.7),
        ),
        episode(AlertKind::Overlimit, "b", H16 + 5_000, None, Some(1.1)),
    ];
    assert!(compare(&list, &list, &opts()).is_empty());
    // An open live episode's peak may lag: not compared.
    let mut live = list.clone();
    live[2].peak = Some(1.05);
    assert!(compare(&list, &live, &opts()).is_empty());
}

#[test]
fn each_kind_of_difference_is_listed_once() {
    let replayed = vec![
        episode(
            AlertKind::Overlimit,
            "only-replay",
            H16,
            Some(H16 + 1),
            None,
        ),
        episode(
            AlertKind::Overlimit,
            "start",
            H16 + 5_000,
            Some(H16 + 60_000),
            Some(1.2),
        ),
        episode(
            AlertKind::Overlimit,
            "end",
            H16,
            Some(H16 + 60_000),
            Some(1.2),
        ),
        episode(
            AlertKind::Overlimit,
            "peak",
            H16,
            Some(H16 + 60_000),
            Some(1.2),
        ),
    ];
    let live = vec![
        episode(AlertKind::Overlimit, "only-live", H16, None, None),
        // Starts 4 s earlier, overlapping: the same episode, started apart.
        episode(
            AlertKind::Overlimit,
            "start",
            H16 + 1_000,
            Some(H16 + 60_000),
            Some(1.2),
        ),
        episode(
            AlertKind::Overlimit,
            "end",
            H16,
            Some(H16 + 61_000),
            Some(1.2),
        ),
        episode(
            AlertKind::Overlimit,
            "peak",
            H16,
            Some(H16 + 60_000),
            Some(1.3),
        ),
    ];
    let diffs = compare(&replayed, &live, &opts());
    let mut got = whats(&diffs);
    got.sort();
    assert_eq!(
        got,
        [
            (DifferenceKind::OnlyReplay, "only-replay".to_string()),
            (DifferenceKind::OnlyLive, "only-live".to_string()),
            (DifferenceKind::Start, "start".to_string()),
            (DifferenceKind::End, "end".to_string()),
            (DifferenceKind::Peak, "peak".to_string()),
        ]
    );
    let start = diffs
        .iter()
        .find(|d| d.what == DifferenceKind::Start)
        .unwrap();
    assert_ne!(
        start.replay.as_ref().unwrap().alert_id,
        start.live.as_ref().unwrap().alert_id
    );
    // One ended, the other did not: an end difference, not a peak one.
    let open = vec![episode(AlertKind::Evacuation, "x", H16, None, Some(2.0))];
    let ended = vec![episode(
        AlertKind::Evacuation,
        "x",
        H16,
        Some(H16 + 9),
        Some(2.0),
    )];
    assert_eq!(
        whats(&compare(&ended, &open, &opts())),
        [(DifferenceKind::End, "x".to_string())]
    );
    // Another point, or another kind, is never a partner.
    let other = vec![episode(
        AlertKind::Evacuation,
        "y",
        H16,
        Some(H16 + 9),
        Some(2.0),
    )];
    assert_eq!(compare(&ended, &other, &opts()).len(), 2);
}

#[test]
fn a_raised_threshold_or_another_reason_is_a_difference() {
    // Live ran on a point definition whose alarm was raised to 1.2 %;
    // replay, on the rules' 1.0 %, finds the same episode.
    let mut replayed = vec![
        episode(
            AlertKind::Overlimit,
            "t",
            H16,
            Some(H16 + 60_000),
            Some(1.3),
        ),
        episode(AlertKind::DataAnomaly, "r", H16, None, None),
    ];
    replayed[0].threshold = Some(1.0);
    replayed[1].reason = Some("flat_line".into());
    let mut live = replayed.clone();
    live[0].threshold = Some(1.2);
    live[1].reason = Some("spike".into());
    let diffs = compare(&replayed, &live, &opts());
    assert_eq!(
        whats(&diffs),
        [
            (DifferenceKind::Reason, "r".to_string()),
            (DifferenceKind::Threshold, "t".to_string()),
        ]
    );
    let csv = render(&diffs, Format::Csv);
    assert!(csv.contains(",1,1.2,,\n"), "{csv}");
    assert!(csv.contains(",,,flat_line,spike\n"), "{csv}");
    // Equal thresholds and reasons: nothing.
    assert!(compare(&replayed, &replayed, &opts()).is_empty());
}

#[test]
fn offline_kinds_may_differ_by_two_ticks() {
    let replayed = vec![episode(
        AlertKind::PointOffline,
        "p",
        H16 + 30_000,
        Some(H16 + 90_000),
        None,
    )];
    // Live ticks fell 600 ms later: another id, within a tick.
    let live = vec![episode(
        AlertKind::PointOffline,
        "p",
        H16 + 30_600,
        Some(H16 + 90_400),
        None,
    )];
    assert!(compare(&replayed, &live, &opts()).is_empty());
    // Up to two ticks: the tick's phase, and a tick that overtook queued
    // readings on a busy daemon.
    let busy = vec![episode(
        AlertKind::PointOffline,
        "p",
        H16 + 32_000,
        Some(H16 + 90_000),
        None,
    )];
    assert!(compare(&replayed, &busy, &opts()).is_empty());
    // More is a difference.
    let far = vec![episode(
        AlertKind::PointOffline,
        "p",
        H16 + 32_001,
        Some(H16 + 90_000),
        None,
    )];
    assert_eq!(
        whats(&compare(&replayed, &far, &opts())),
        [(DifferenceKind::Start, "p".to_string())]
    );
    // Over-limit kinds have no tolerance.
    let a = vec![episode(
        AlertKind::Overlimit,
        "p",
        H16,
        Some(H16 + 500),
        None,
    )];
    let b = vec![episode(
        AlertKind::Overlimit,
        "p",
        H16,
        Some(H16 + 600),
        None,
    )];
    assert_eq!(
        whats(&compare(&a, &b, &opts())),
        [(DifferenceKind::End, "p".to_string())]
    );
}

#[test]
fn the_range_cuts_episodes_at_its_ends() {
    let mut o = opts();
    o.from = Some(H16);
    o.to = Some(H16 + 3_600_000);
    // Live ended after --to; replay saw no end within the range.
    let replayed = vec![episode(AlertKind::Overlimit, "a", H16 + 60_000, None, None)];
    let live = vec![episode(
        AlertKind::Overlimit,
        "a",
        H16 + 60_000,
        Some(H16 + 3_700_000),
        Some(1.5),
    )];
    assert!(compare(&replayed, &live, &o).is_empty());
    // Live started before --from and lasted into it: replay starts it at
    // --from. Paired, start not compared; alone, not listed.
    let replayed = vec![episode(
        AlertKind::Overlimit,
        "b",
        H16,
        Some(H16 + 60_000),
        Some(1.2),
    )];
    let live = vec![episode(
        AlertKind::Overlimit,
        "b",
        H16 - 60_000,
        Some(H16 + 60_000),
        Some(1.3),
    )];
    assert_eq!(
        whats(&compare(&replayed, &live, &o)),
        [(DifferenceKind::Peak, "b".to_string())],
        "the peak before --from was not replayed, and is listed"
    );
    assert!(compare(&[], &live, &o).is_empty());
    // Without a range, the same is a start difference.
    assert!(
        whats(&compare(&replayed, &live, &opts())).contains(&(DifferenceKind::Start, "b".into()))
    );
}

#[test]
fn kinds_select_what_is_compared() {
    let replayed = vec![
        episode(AlertKind::Overlimit, "a", H16, None, None),
        episode(AlertKind::DataAnomaly, "a", H16, None, None),
    ];
    let mut o = opts();
    o.kinds = vec![AlertKind::Overlimit];
    let live = vec![episode(AlertKind::Overlimit, "a", H16, None, None)];
    assert!(compare(&replayed, &live, &o).is_empty());
    assert_eq!(compare(&replayed, &live, &opts()).len(), 1);
}

fn alert(kind: AlertKind, point: &str, started: Millis) -> Alert {
    Alert {
        id: alert_id(kind, MINE, Some(point), started),
        kind,
        severity: kind.severity(),
        mine: MINE.into(),
        mine_name: "a".into(),
        county: "140121".into(),
        city: "140100".into(),
        province: "140000".into(),
        point: Some(point.into()),
        sensor: Some("0001".into()),
        location: None,
        unit: Some("%".into()),
        value: Some(1.2),
        peak: Some(1.2),
        threshold: Some(1.0),
        rule: String::new(),
        reason: (kind == AlertKind::DataAnomaly).then(|| "spike".to_string()),
        started_at: rfc3339(started),
        resolved_at: None,
        last_seen: None,
        crossings: None,
    }
}

#[test]
fn live_episodes_are_read_back_from_the_exported_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(testing::store("compare_load_live"));
    let clock = Arc::new(ManualClock::at(H16 + 1_000));
    let (events, _) = broadcast::channel(64);
    let metrics = Arc::new(Metrics::new(1));
    let life = Lifecycle::new(
        store.clone(),
        AlertingConfig::default(),
        clock.clone(),
        events,
        Arc::new(Notify::new()),
        metrics.clone(),
    );
    let (over, _) = life.raise(alert(AlertKind::Overlimit, "p1", H16)).unwrap();
    let (spike, _) = life
        .raise(alert(AlertKind::DataAnomaly, "p2", H16 + 500))
        .unwrap();
    life.update_peak(&over, 1.9).unwrap();
    clock.advance(120_000);
    life.clear(&over, H16 + 100_000, "condition_ended").unwrap();
    life.acknowledge(&over, "x").unwrap();
    // A later peak of an open alert is not a transition: the archive keeps
    // the peak of its last transition.
    life.update_peak(&spike, 7.0).unwrap();
    let settings = ArchiveSettings {
        root: dir.path().to_path_buf(),
        flush_after: Duration::from_secs(60),
        max_rows_per_file: 1000,
        row_group_rows: 64,
        max_buffered_rows: usize::MAX,
        max_buffered_bytes: usize::MAX,
        start: 1,
        retain_days: 0,
    };
    let mut x = Exporter::open(settings, store, metrics).unwrap();
    x.poll(Instant::now(), true).unwrap();

    let live = load_live(dir.path(), &opts()).unwrap();
    assert!(live.files >= 1);
    assert_eq!(live.unknown_kinds, 0);
    let got: Vec<_> = live
        .episodes
        .iter()
        .map(|e| {
            (
                e.alert_id.clone(),
                e.kind,
                e.point.clone(),
                e.started_at,
                e.resolved_at,
                e.peak,
                e.threshold,
                e.reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                over.clone(),
                AlertKind::Overlimit,
                Some("p1".to_string()),
                H16,
                Some(H16 + 100_000),
                Some(1.9),
                Some(1.0),
                None
            ),
            (
                spike,
                AlertKind::DataAnomaly,
                Some("p2".to_string()),
                H16 + 500,
                None,
                Some(1.2),
                Some(1.0),
                Some("spike".to_string())
            ),
        ]
    );
    // Mine, kind and range select.
    let mut o = opts();
    o.kinds = vec![AlertKind::DataAnomaly];
    assert_eq!(load_live(dir.path(), &o).unwrap().episodes.len(), 1);
    let mut o = opts();
    o.mine = Some("140121000009".into());
    assert!(load_live(dir.path(), &o).unwrap().episodes.is_empty());
    let mut o = opts();
    o.from = Some(H16 + 200_000);
    let after: Vec<String> = load_live(dir.path(), &o)
        .unwrap()
        .episodes
        .into_iter()
        .map(|e| e.alert_id)
        .collect();
    assert_eq!(after.len(), 1, "the over-limit ended before --from");
    assert_ne!(after[0], over);
    // An archive without the stream is refused with the reason.
    let empty = tempfile::tempdir().unwrap();
    let err = load_live(empty.path(), &opts()).unwrap_err();
    assert!(err.to_string().contains("alerts/"), "{err}");
}

#[test]
fn output_is_stable_in_every_format() {
    let replayed = vec![episode(
        AlertKind::Overlimit,
        "a",
        H16,
        Some(H16 + 1_000),
        Some(1.2),
    )];
    let live = vec![episode(
        AlertKind::Overlimit,
        "a",
        H16,
        Some(H16 + 2_000),
        Some(1.2),
    )];
    let diffs = compare(&replayed, &live, &opts());
    for format in [Format::Table, Format::Json, Format::Csv] {
        assert_eq!(render(&diffs, format), render(&diffs, format));
    }
    let csv = render(&diffs, Format::Csv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "difference,kind,mine,point,replay_id,live_id,replay_start,live_start,replay_end,live_end,replay_peak,live_peak,replay_threshold,live_threshold,replay_reason,live_reason"
    );
    assert!(
        lines[1].starts_with("end,overlimit,140121000001,a,"),
        "{csv}"
    );
    assert!(
        lines[1].ends_with(",2026-11-23T16:00:01.000Z,2026-11-23T16:00:02.000Z,1.2,1.2,,,,"),
        "{csv}"
    );
    let json: serde_json::Value = serde_json::from_str(&render(&diffs, Format::Json)).unwrap();
    assert_eq!(json[0]["difference"], "end");
    assert_eq!(render(&[], Format::Json), "[]\n");
    assert_eq!(
        summary(1, 1, &diffs),
        "1 replayed and 1 live episodes: 1 differences (end 1)"
    );
}
