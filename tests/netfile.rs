//! End-to-end tests of the national-file drop directory: hand-written
//! fixtures (good and broken, in `tests/fixtures/netfile/`) and a GBK file
//! go in; points are defined by CDDY, readings raise alerts, broken files go
//! to quarantine with their reason, and every file is processed exactly once,
//! also across a restart. A YCBJ file's reports reach the archive's
//! `exceptions` stream, durable in the journal before the file counts as
//! processed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, resume, start_with_clock};
use minewatch::config::{Config, MineConfig};
use minewatch::model::MineStatus;
use minewatch::pipeline::ManualClock;
use minewatch::simulators::netfile_writer;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const MINE: &str = "140121000001";
const FACE: &str = "14012100000101MN0001001";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/netfile")
}

fn config() -> Config {
    let mine = |code: &str, name: &str| MineConfig {
        code: code.into(),
        name: name.into(),
        province: "140000".into(),
        city: "140100".into(),
        county: "140121".into(),
        status: MineStatus::Producing,
        polling_secs: 30.0,
        points: Vec::new(),
        approved_headcount: None,
        power: None,
        seal: None,
    };
    let mut c = Config {
        mines: vec![mine(MINE, "示例一矿"), mine("140121000002", "示例二矿")],
        ..Config::default()
    };
    c.netfile.dir = Some(PathBuf::from("drop"));
    c.netfile.settle_secs = 1;
    c.netfile.scan_ms = 100;
    c
}

/// Delivers a file atomically (hidden name, then rename), as uploads should.
fn put(dir: &Path, name: &str, bytes: &[u8]) {
    netfile_writer::put(dir, name, bytes).expect("deliver a file");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// 2026-11-23 16:01:00 Beijing: the fixtures' times are a minute old.
fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at(1_795_420_860_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_files_define_points_raise_alerts_and_quarantine_what_is_broken() {
    let h = start_with_clock(config(), "netfile", clock()).await;
    let drop = h.config.netfile.dir.clone().expect("drop dir");
    // A GBK file from an older system, later than the fixtures' readings.
    let (gbk, _, _) = encoding_rs::GBK.encode(
        "140121000001;示例一矿;2026-11-23 16:00:25~\
         14012100000101MN0001002;甲烷;1101上隅角;0.36;%CH4;0;2026-11-23 16:00:25~||",
    );
    put(&drop, "140121000001_CDSS_20261123160025.txt", &gbk);
    for f in names(&fixtures())
        .into_iter()
        .filter(|n| n.ends_with(".txt"))
    {
        let bytes = std::fs::read(fixtures().join(&f)).expect("fixture");
        put(&drop, &f, &bytes);
    }

    eventually(WAIT, "every file is handled", || async {
        names(&drop).is_empty()
    })
    .await;
    assert_eq!(
        names(&drop.join("done")),
        [
            "140121000001_CDDY_20261123160000.txt",
            "140121000001_CDSS_20261123160010.txt",
            "140121000001_CDSS_20261123160020.txt",
            "140121000001_CDSS_20261123160025.txt",
            "140121000001_FZSS_20261123160020.txt",
            "140121000001_YCBJ_20261123160030.txt",
        ]
    );
    let quarantined = names(&drop.join("quarantine"));
    for (file, reason) in [
        ("140121000001_CDSS_20261123160040.txt", "truncated_file"),
        ("140121000001_CDSS_20261123160050.txt", "header_mismatch"),
        ("140121999999_CDSS_20261123160000.txt", "unknown_mine"),
        ("notes.txt", "misnamed_file"),
    ] {
        assert!(quarantined.contains(&file.to_string()), "{quarantined:?}");
        let why = std::fs::read_to_string(drop.join("quarantine").join(format!("{file}.reason")))
            .expect("reason file");
        assert!(why.starts_with(reason), "{file}: {why}");
    }

    // CDDY defined the points; the looser declaration is pointed out.
    let points = h.get(&format!("/api/points?mine={MINE}")).await;
    assert_eq!(points["count"], json!(4), "{points}");
    let corner = points["points"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["code"] == "14012100000101MN0001002")
        .expect("corner point");
    assert_eq!(corner["location"], json!("face_t0"));
    assert_eq!(
        corner["air_path"],
        json!(1101),
        "from its place, 1101上隅角"
    );
    assert_eq!(corner["effective"]["alarm"], json!(1.0), "the rule governs");
    assert!(
        corner["looser_than_rule"]
            .as_str()
            .unwrap_or("")
            .contains("alarm 1.5 > 1")
    );
    assert_eq!(
        h.metric("minewatch_declared_looser_than_rule_total").await,
        1.0
    );

    // The CDSS over-limit raised and resolved an evacuation.
    eventually(WAIT, "the evacuation is raised and resolved", || async {
        let a = h.alerts("kind=evacuation").await;
        a.len() == 1 && !a[0]["resolved_at"].is_null()
    })
    .await;
    let evac = &h.alerts("kind=evacuation").await[0];
    assert_eq!(evac["point"], json!(FACE));
    assert_eq!(evac["value"], json!(1.62));
    assert_eq!(evac["started_at"], json!("2026-11-23T08:00:10.000Z"));
    assert_eq!(evac["resolved_at"], json!("2026-11-23T08:00:20.000Z"));

    // Refused records and files are counted by reason.
    for reason in [
        "unknown_point",
        "wrong_type",
        "point_mine_mismatch",
        "truncated_file",
        "header_mismatch",
        "unknown_mine",
        "misnamed_file",
    ] {
        let n = h
            .metric(&format!(
                "minewatch_records_rejected_total{{reason=\"{reason}\"}}"
            ))
            .await;
        assert!(n >= 1.0, "{reason}");
    }
    assert_eq!(
        h.metric("minewatch_netfile_files_total{outcome=\"processed\",type=\"CDSS\"}")
            .await,
        3.0
    );
    // 4 good CDSS readings + 2 + 1 (GBK), and substation 02's two points
    // marked not read by FZSS.
    assert_eq!(
        h.metric("minewatch_readings_accepted_total{source=\"netfile\"}")
            .await,
        9.0
    );

    // The mine reported the CO disconnection but never the methane episode.
    let ex = h.get(&format!("/api/exceptions?mine={MINE}")).await;
    assert_eq!(ex["count"], json!(1));
    assert_eq!(ex["exceptions"][0]["cause"], json!("分站通讯中断"));
    let unreported = h.get("/api/exceptions/unreported").await;
    let kinds: Vec<&str> = unreported["alerts"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert_eq!(kinds.len(), 2, "{unreported}");
    assert!(kinds.contains(&"overlimit") && kinds.contains(&"evacuation"));

    // Exactly once across a restart: the same file again is a duplicate,
    // the same name with other content is quarantined as evidence.
    let stopped = h.stop().await;
    let done = drop.join("done");
    let again = std::fs::read(done.join("140121000001_CDSS_20261123160010.txt")).expect("done");
    put(&drop, "140121000001_CDSS_20261123160010.txt", &again);
    put(
        &drop,
        "140121000001_CDSS_20261123160020.txt",
        "140121000001;示例一矿;2026-11-23 16:00:20~\
         14012100000101MN0001001;甲烷;1101工作面;0.10;%CH4;0;2026-11-23 16:00:20~||"
            .as_bytes(),
    );
    let h = resume(stopped).await;
    eventually(WAIT, "the re-uploads are handled", || async {
        names(&drop).is_empty()
    })
    .await;
    assert_eq!(
        h.metric("minewatch_netfile_files_total{outcome=\"duplicate\",type=\"CDSS\"}")
            .await,
        1.0
    );
    assert!(
        names(&drop.join("quarantine")).contains(&"140121000001_CDSS_20261123160020.txt".into())
    );
    assert_eq!(
        h.metric("minewatch_records_rejected_total{reason=\"conflicting_reupload\"}")
            .await,
        1.0
    );
    // Two more conflicting re-uploads of that name: each is kept with its
    // reason, none overwrites another.
    let conflicting = |value: &str| {
        format!(
            "140121000001;示例一矿;2026-11-23 16:00:20~\
             14012100000101MN0001001;甲烷;1101工作面;{value};%CH4;0;2026-11-23 16:00:20~||"
        )
    };
    let name = "140121000001_CDSS_20261123160020.txt";
    for (n, value) in ["0.11", "0.12"].into_iter().enumerate() {
        put(&drop, name, conflicting(value).as_bytes());
        eventually(WAIT, "the re-upload is handled", || async {
            names(&drop).is_empty()
                && h.metric("minewatch_records_rejected_total{reason=\"conflicting_reupload\"}")
                    .await
                    == n as f64 + 2.0
        })
        .await;
    }
    let q = drop.join("quarantine");
    let kept = names(&q);
    for (file, value) in [
        (name.to_string(), "0.10"),
        (format!("{name}.1"), "0.11"),
        (format!("{name}.2"), "0.12"),
    ] {
        let text = std::fs::read_to_string(q.join(&file)).expect("kept");
        assert!(text.contains(&format!(";{value};")), "{file}: {text}");
        assert!(kept.contains(&format!("{file}.reason")), "{file}: {kept:?}");
    }
    assert_eq!(
        h.metric("minewatch_readings_accepted_total{source=\"netfile\"}")
            .await,
        0.0,
        "nothing was ingested twice"
    );
    h.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_ycbj_file_reaches_the_exceptions_stream_durably() {
    use minewatch::archive::journal;
    let h = start_with_clock(config(), "netfile-ycbj", clock()).await;
    let drop = h.config.netfile.dir.clone().expect("drop dir");
    let name = "140121000001_YCBJ_20261123160030.txt";
    let bytes = std::fs::read(fixtures().join(name)).expect("fixture");
    put(&drop, name, &bytes);
    eventually(WAIT, "the YCBJ file is processed", || async {
        names(&drop.join("done")).contains(&name.to_string())
    })
    .await;
    // Processed means durable: the report is in the archive journal now,
    // long before its Parquet file is due (flush_secs is a minute).
    let archive = h.config.daemon.data_dir.join("archive");
    let mut journaled = Vec::new();
    for seg in journal::segments(&archive.join("journal")).expect("journal") {
        let bytes = std::fs::read(&seg).expect("segment");
        journaled.extend(journal::read_segment(&bytes).exceptions);
    }
    assert_eq!(journaled.len(), 1, "{journaled:?}");
    let stopped = h.stop().await;

    // Shutdown wrote the file, in the hour of the exception's start (UTC).
    let hour = stopped
        .config
        .daemon
        .data_dir
        .join("archive/exceptions/date=2026-11-23/hour=08");
    let files: Vec<PathBuf> = std::fs::read_dir(&hour)
        .expect("the exceptions partition of 08:00 UTC")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&files[0]).expect("open"),
    )
    .expect("parquet")
    .build()
    .expect("reader");
    let mut rows = Vec::new();
    for batch in reader {
        rows.extend(
            minewatch::archive::exceptions::exceptions_from_batch(&batch.expect("batch"))
                .expect("schema"),
        );
    }
    assert_eq!(rows, journaled);
    let r = &rows[0];
    assert_eq!(
        (r.mine.as_str(), r.point.as_str(), r.kind.as_str()),
        (MINE, "14012100000101MN0004003", "004")
    );
    assert_eq!(
        (r.type_name.as_str(), r.place.as_str()),
        ("一氧化碳", "1101回风巷")
    );
    // 2026-11-23 16:00:20 Beijing time.
    assert_eq!(r.start, 1_795_420_820_000);
    assert_eq!((r.end, r.max), (None, None));
    assert_eq!(
        (r.cause.as_str(), r.measures.as_str()),
        ("分站通讯中断", "派人检修")
    );
    assert_eq!(r.entered_by, "值班员");
    assert_eq!(r.file, name);
    assert_eq!(
        r.arrival, 1_795_420_860_000,
        "the daemon's clock at receipt"
    );
}
