//! Writing one Parquet file so that it is either complete or invisible:
//! rows go to a hidden temporary name in the partition folder, the file is
//! fsynced, renamed to its final name, and the folder is fsynced so the
//! rename itself survives a power cut.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file system refused (disk full, permissions, …).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Arrow or Parquet refused the data.
    #[error("{path}: {source}")]
    Parquet {
        /// The file concerned.
        path: String,
        /// The cause.
        source: parquet::errors::ParquetError,
    },
}

/// The zstd level of archive files, chosen by measurement (BENCHMARKS.md,
/// "Archive encoding"): level 3 took no more CPU per row than level 1 and
/// wrote 8 % fewer bytes; 6 and 9 saved a few per cent more for 25–45 %
/// more CPU.
pub const ZSTD_LEVEL: i32 = 3;

/// Writer settings for files of `schema`: zstd at `zstd_level`, row groups
/// of `row_group_rows` rows, and dictionary encoding for the text columns
/// only (codes, sources, reasons repeat; times and values rarely do, and
/// trying a dictionary on them costs a hash per value for nothing).
pub fn properties(schema: &Schema, row_group_rows: usize, zstd_level: i32) -> WriterProperties {
    let level = ZstdLevel::try_new(zstd_level).unwrap_or_default();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_created_by(format!("minewatch {}", env!("CARGO_PKG_VERSION")));
    for field in schema.fields() {
        if field.data_type() != &DataType::Utf8 {
            builder = builder
                .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    builder.build()
}

/// Writes `batch` (already in file order) to `done` through `temp`, in
/// row groups of `row_group_rows`. On error the temporary file is removed
/// and `done` does not exist.
pub fn write_atomically(
    done: &Path,
    temp: &Path,
    schema: SchemaRef,
    batch: &RecordBatch,
    row_group_rows: usize,
) -> Result<(), WriteError> {
    let result = write_then_rename(done, temp, schema, batch, row_group_rows);
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn write_then_rename(
    done: &Path,
    temp: &Path,
    schema: SchemaRef,
    batch: &RecordBatch,
    row_group_rows: usize,
) -> Result<(), WriteError> {
    let folder = done.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(io(folder))?;
    let file = File::create(temp).map_err(io(temp))?;
    let pq = |source| WriteError::Parquet {
        path: temp.display().to_string(),
        source,
    };
    let props = properties(&schema, row_group_rows, ZSTD_LEVEL);
    let mut writer =
        ArrowWriter::try_new(BufWriter::with_capacity(1 << 20, file), schema, Some(props))
            .map_err(pq)?;
    // Slices of one row group each, so every row group is full-sized.
    let step = row_group_rows.max(1);
    let mut offset = 0;
    while offset < batch.num_rows() {
        let len = step.min(batch.num_rows() - offset);
        writer.write(&batch.slice(offset, len)).map_err(pq)?;
        writer.flush().map_err(pq)?;
        offset += len;
    }
    let buffered = writer.into_inner().map_err(pq)?;
    let file = buffered
        .into_inner()
        .map_err(|e| io(temp)(e.into_error()))?;
    file.sync_all().map_err(io(temp))?;
    drop(file);
    std::fs::rename(temp, done).map_err(io(done))?;
    // Make the rename durable: fsync the folder (best effort where the
    // platform cannot open folders).
    if let Ok(dir) = File::open(folder) {
        dir.sync_all().map_err(io(folder))?;
    }
    Ok(())
}
