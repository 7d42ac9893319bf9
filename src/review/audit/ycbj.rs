//! The audit's view of the `exceptions` stream: every YCBJ report the
//! archive holds (of one mine with `--mine`), whatever its time — a report
//! that started before the audited range can still cover an episode in it.
//! Files that cannot be read are skipped and listed like unreadable
//! readings files.

use std::fs::File;
use std::path::Path;

use anyhow::Context;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::archive::exceptions::{ExceptionRow, exceptions_from_batch, sort_exceptions};
use crate::archive::{EXCEPTIONS, retention};
use crate::review::replay::{SkippedFile, partition_files};

/// Reads one exceptions file.
fn read_file(path: &Path) -> anyhow::Result<Vec<ExceptionRow>> {
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not an exceptions file", path.display()))?
        .build()
        .with_context(|| format!("{}", path.display()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("{}", path.display()))?;
        rows.extend(exceptions_from_batch(&batch).with_context(|| format!("{}", path.display()))?);
    }
    Ok(rows)
}

/// Every report under `{archive}/exceptions/` (of `mine`, when given),
/// sorted by (mine, point, start, arrival, kind, file); unreadable files go
/// to `skipped`.
pub fn read(
    archive: &Path,
    mine: Option<&str>,
    skipped: &mut Vec<SkippedFile>,
) -> Vec<ExceptionRow> {
    let mut rows = Vec::new();
    for (_, folder) in retention::partitions(&archive.join(EXCEPTIONS)) {
        let files = match partition_files(&folder) {
            Ok(f) => f,
            Err(e) => {
                skipped.push(SkippedFile {
                    path: folder.display().to_string(),
                    error: format!("{e:#}"),
                });
                continue;
            }
        };
        for path in files {
            match read_file(&path) {
                Ok(r) => rows.extend(r.into_iter().filter(|r| mine.is_none_or(|m| m == r.mine))),
                Err(e) => skipped.push(SkippedFile {
                    path: path.display().to_string(),
                    error: format!("{e:#}"),
                }),
            }
        }
    }
    sort_exceptions(&mut rows);
    rows
}
