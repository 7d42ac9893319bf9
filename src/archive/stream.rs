//! What an archive stream is: one small definition — the row it buffers,
//! the Arrow schema of its files, the hour a row is partitioned by, the
//! order of rows in a file and, for streams that go through the journal,
//! the encoding of one row as one journal record. The archive's buffers,
//! file writing, recovery and retention are written once, over these
//! definitions.
//!
//! `readings` ([`super::schema::Readings`]) is the one stream with a
//! journal encoding of its own (batches of readings by point index, with
//! point definitions; see [`super::journal`]); the others implement
//! [`Journaled`], or — like `alerts`, whose source of truth is the store —
//! only [`Stream`].

use std::path::Path;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::file;
use super::journal::RecordBody;
use super::partition::Hour;
use crate::config::Registry;

/// One archive stream.
pub trait Stream {
    /// Folder below the archive root, and the `stream` label of the
    /// archive's metrics.
    const NAME: &'static str;
    /// One row as the archive buffers it.
    type Row: Send + 'static;
    /// The schema of the stream's Parquet files.
    fn schema() -> SchemaRef;
    /// The UTC hour partition a row goes to: of its own time, or of a
    /// processing time when its own has no printable date
    /// ([`super::partition_of`]).
    fn hour(row: &Self::Row) -> Hour;
    /// Puts rows into file order.
    fn sort(rows: &mut [Self::Row], registry: &Registry);
    /// The rows, already in file order, as one record batch of
    /// [`Stream::schema`].
    fn batch(rows: &[Self::Row], registry: &Registry) -> Result<RecordBatch, ArrowError>;
}

/// A stream whose rows the journal carries, one record per row.
pub trait Journaled: Stream {
    /// The record's kind byte, unique in the journal (1 and 2 are the
    /// readings stream's, 3 is `rejected`).
    const KIND: u8;
    /// Appends the row's record body (after the kind byte).
    fn encode(row: &Self::Row, out: &mut Vec<u8>);
    /// Reads a row back from its record body; `None` when it does not
    /// parse (the record is then treated as torn).
    fn decode(body: &mut RecordBody<'_>) -> Option<Self::Row>;
}

/// Sorts `rows` into file order and writes them as one Parquet file at
/// `done`, through the hidden temporary `temp` ([`file::write_atomically`]).
pub fn write_partition<S: Stream>(
    done: &Path,
    temp: &Path,
    rows: &mut [S::Row],
    registry: &Registry,
    row_group_rows: usize,
) -> Result<(), String> {
    S::sort(rows, registry);
    let batch = S::batch(rows, registry).map_err(|e| e.to_string())?;
    file::write_atomically(done, temp, S::schema(), &batch, row_group_rows)
        .map_err(|e| e.to_string())
}
