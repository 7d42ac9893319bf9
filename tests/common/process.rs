//! Helpers of the tests that run the real `minewatch run` binary (crash
//! recovery, shutdown, memory, the fault campaign): the config they start
//! it on, and what they read back from its Parquet archive.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, StringArray, TimestampMillisecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// What a test adds to the config [`daemon_toml`] writes: lines inside
/// `[daemon]`, `[mqtt]` and `[http]`, and whole sections after them.
#[derive(Default)]
pub struct Extra<'a> {
    /// Lines inside `[daemon]`.
    pub daemon: &'a str,
    /// Lines inside `[mqtt]`.
    pub mqtt: &'a str,
    /// Lines inside `[http]`.
    pub http: &'a str,
    /// Whole sections (`[archive]`, `[[users]]` …).
    pub sections: &'a str,
}

/// A config for a daemon on `dir/data`, the test broker with `client_id`,
/// HTTP on a port the system picks, two shards and a 200 ms tick, and
/// `mines` (code, point codes) of county 140121 with face methane points
/// polled every 30 s.
pub fn daemon_toml(
    dir: &Path,
    client_id: &str,
    extra: &Extra,
    mines: &[(String, Vec<String>)],
) -> String {
    let mut toml = format!(
        "[daemon]\ndata_dir = \"{data}\"\nshards = 2\ntick_ms = 200\n{daemon}\n\n\
         [mqtt]\nbroker = \"mqtt://{broker}\"\nclient_id = \"{client_id}\"\n{mqtt}\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n{http}\n\n{sections}\n",
        data = dir.join("data").display(),
        broker = super::broker(),
        daemon = extra.daemon,
        mqtt = extra.mqtt,
        http = extra.http,
        sections = extra.sections,
    );
    for (mine, points) in mines {
        toml.push_str(&format!(
            "\n[[mines]]\ncode = \"{mine}\"\nname = \"m\"\nprovince = \"140000\"\ncity = \"140100\"\ncounty = \"140121\"\npolling_secs = 30\npoints = [\n"
        ));
        for p in points {
            toml.push_str(&format!(
                "  {{ code = \"{p}\", sensor = \"0001\", location = \"face_t1\" }},\n"
            ));
        }
        toml.push_str("]\n");
    }
    toml
}

/// Every file below `dir`, into `out`.
pub fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_below(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every (point, ts) in the archive's `readings` stream under `root`, and
/// the number of rows. Every file there must be finished, readable Parquet.
pub fn archived_readings(root: &Path) -> (BTreeSet<(String, i64)>, usize) {
    let mut files = Vec::new();
    files_below(&root.join("readings"), &mut files);
    let mut seen = BTreeSet::new();
    let mut rows = 0;
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            name.ends_with(".parquet") && !name.starts_with('.'),
            "a stray file in the archive: {}",
            f.display()
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).expect("open"))
            .unwrap_or_else(|e| panic!("{} is not readable Parquet: {e}", f.display()))
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let points = batch
                .column_by_name("point")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .expect("point column");
            let ts = batch
                .column_by_name("ts")
                .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
                .expect("ts column");
            for i in 0..batch.num_rows() {
                seen.insert((points.value(i).to_string(), ts.value(i)));
            }
            rows += batch.num_rows();
        }
    }
    (seen, rows)
}
