//! The `exceptions` archive stream: every exception report (YCBJ record) a
//! mine uploaded in its national files, journaled one record each (kind 4)
//! so that a YCBJ file counts as processed only once its reports are
//! durable, and written as Parquet partitioned by the exception's own start
//! (UTC). Auditors read it back ([`exceptions_from_batch`]) to find
//! over-limit episodes the mine never reported.
//!
//! Columns: mine, point, kind (3-digit exception type), type_name, place
//! (utf8), start (timestamp ms, UTC), end (timestamp, nullable), max
//! (float64, nullable), cause, measures, entered_by, file (utf8), arrival
//! (timestamp ms, UTC); sorted by (mine, point, start, arrival, kind, file).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, StringArray, StringBuilder,
    TimestampMillisecondArray, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::journal::{RecordBody, put_str32};
use super::partition::{Hour, partition_of};
use super::stream::{Journaled, Stream};
use crate::config::Registry;
use crate::model::Millis;

/// Name of the stream of the mines' exception reports (YCBJ).
pub const EXCEPTIONS: &str = "exceptions";

/// One exception report (YCBJ record) a mine uploaded, as the archive keeps
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExceptionRow {
    /// Mine code.
    pub mine: String,
    /// Point code.
    pub point: String,
    /// Three-digit exception type (001 over-limit, 002 power-off, 003 feed
    /// abnormal, 004 sensor disconnected, …).
    pub kind: String,
    /// Sensor type name as written.
    pub type_name: String,
    /// Install location as written.
    pub place: String,
    /// Start of the exception, epoch ms (Beijing time in the file, stored
    /// as UTC).
    pub start: Millis,
    /// End, epoch ms; none while the mine reported it ongoing.
    pub end: Option<Millis>,
    /// Maximum during the exception, if the mine gave one.
    pub max: Option<f64>,
    /// The mine's stated cause.
    pub cause: String,
    /// The mine's stated measures.
    pub measures: String,
    /// Who entered the report.
    pub entered_by: String,
    /// The national file it came in.
    pub file: String,
    /// Processing time of receipt.
    pub arrival: Millis,
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Schema of the `exceptions` stream.
pub fn exceptions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("mine", DataType::Utf8, false),
        Field::new("point", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("type_name", DataType::Utf8, false),
        Field::new("place", DataType::Utf8, false),
        Field::new("start", utc_ms(), false),
        Field::new("end", utc_ms(), true),
        Field::new("max", DataType::Float64, true),
        Field::new("cause", DataType::Utf8, false),
        Field::new("measures", DataType::Utf8, false),
        Field::new("entered_by", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("arrival", utc_ms(), false),
    ]))
}

/// Sorts exception reports by (mine, point, start, arrival, kind, file), the
/// file order.
pub fn sort_exceptions(rows: &mut [ExceptionRow]) {
    rows.sort_by(|a, b| {
        (&a.mine, &a.point, a.start, a.arrival, &a.kind, &a.file)
            .cmp(&(&b.mine, &b.point, b.start, b.arrival, &b.kind, &b.file))
    });
}

/// Exception reports as one record batch (in the given order); a `NaN`
/// maximum is written as null.
pub fn exceptions_batch(rows: &[ExceptionRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let text = || StringBuilder::with_capacity(n, n * 16);
    let (mut mine, mut point, mut kind, mut type_name, mut place) =
        (text(), text(), text(), text(), text());
    let (mut cause, mut measures, mut entered_by, mut file) = (text(), text(), text(), text());
    let time = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut start, mut end, mut arrival) = (time(), time(), time());
    let mut max = Float64Builder::with_capacity(n);
    for r in rows {
        mine.append_value(&r.mine);
        point.append_value(&r.point);
        kind.append_value(&r.kind);
        type_name.append_value(&r.type_name);
        place.append_value(&r.place);
        start.append_value(r.start);
        end.append_option(r.end);
        max.append_option(r.max.filter(|m| !m.is_nan()));
        cause.append_value(&r.cause);
        measures.append_value(&r.measures);
        entered_by.append_value(&r.entered_by);
        file.append_value(&r.file);
        arrival.append_value(r.arrival);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(mine.finish()),
        Arc::new(point.finish()),
        Arc::new(kind.finish()),
        Arc::new(type_name.finish()),
        Arc::new(place.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(max.finish()),
        Arc::new(cause.finish()),
        Arc::new(measures.finish()),
        Arc::new(entered_by.finish()),
        Arc::new(file.finish()),
        Arc::new(arrival.finish()),
    ];
    RecordBatch::try_new(exceptions_schema(), columns)
}

/// Exception reports read back from one record batch of the `exceptions`
/// schema (the inverse of [`exceptions_batch`]).
pub fn exceptions_from_batch(batch: &RecordBatch) -> Result<Vec<ExceptionRow>, ArrowError> {
    fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, ArrowError> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| {
                ArrowError::SchemaError(format!("column {name} missing or of another type"))
            })
    }
    let text = |name| col::<StringArray>(batch, name);
    let time = |name| col::<TimestampMillisecondArray>(batch, name);
    let (mine, point, kind, type_name, place) = (
        text("mine")?,
        text("point")?,
        text("kind")?,
        text("type_name")?,
        text("place")?,
    );
    let (cause, measures, entered_by, file) = (
        text("cause")?,
        text("measures")?,
        text("entered_by")?,
        text("file")?,
    );
    let (start, end, arrival) = (time("start")?, time("end")?, time("arrival")?);
    let max = col::<Float64Array>(batch, "max")?;
    Ok((0..batch.num_rows())
        .map(|i| ExceptionRow {
            mine: mine.value(i).to_string(),
            point: point.value(i).to_string(),
            kind: kind.value(i).to_string(),
            type_name: type_name.value(i).to_string(),
            place: place.value(i).to_string(),
            start: start.value(i),
            end: end.is_valid(i).then(|| end.value(i)),
            max: max.is_valid(i).then(|| max.value(i)),
            cause: cause.value(i).to_string(),
            measures: measures.value(i).to_string(),
            entered_by: entered_by.value(i).to_string(),
            file: file.value(i).to_string(),
            arrival: arrival.value(i),
        })
        .collect())
}

/// The `exceptions` stream.
pub struct Exceptions;

impl Stream for Exceptions {
    const NAME: &'static str = EXCEPTIONS;
    type Row = ExceptionRow;
    fn schema() -> SchemaRef {
        exceptions_schema()
    }
    fn hour(row: &ExceptionRow) -> Hour {
        partition_of(row.start, row.arrival)
    }
    fn sort(rows: &mut [ExceptionRow], _: &Registry) {
        sort_exceptions(rows)
    }
    fn batch(rows: &[ExceptionRow], _: &Registry) -> Result<RecordBatch, ArrowError> {
        exceptions_batch(rows)
    }
}

impl Journaled for Exceptions {
    const KIND: u8 = 4;
    /// `arrival i64`, `start i64`, end and max (a `u8` 0/1 presence flag,
    /// then `i64` / `f64` bits when present), then mine, point, kind, type
    /// name, place, cause, measures, entered by and file (`u32` length +
    /// UTF-8 each).
    fn encode(row: &ExceptionRow, b: &mut Vec<u8>) {
        b.extend_from_slice(&row.arrival.to_le_bytes());
        b.extend_from_slice(&row.start.to_le_bytes());
        match row.end {
            Some(end) => {
                b.push(1);
                b.extend_from_slice(&end.to_le_bytes());
            }
            None => b.push(0),
        }
        match row.max {
            Some(max) => {
                b.push(1);
                b.extend_from_slice(&max.to_bits().to_le_bytes());
            }
            None => b.push(0),
        }
        for text in [
            &row.mine,
            &row.point,
            &row.kind,
            &row.type_name,
            &row.place,
            &row.cause,
            &row.measures,
            &row.entered_by,
            &row.file,
        ] {
            put_str32(b, text);
        }
    }
    fn decode(b: &mut RecordBody<'_>) -> Option<ExceptionRow> {
        let arrival = b.i64()?;
        let start = b.i64()?;
        let end = match b.u8()? {
            0 => None,
            1 => Some(b.i64()?),
            _ => return None,
        };
        let max = match b.u8()? {
            0 => None,
            1 => Some(f64::from_bits(b.i64()? as u64)),
            _ => return None,
        };
        let mut text = || b.str32().map(str::to_string);
        let row = ExceptionRow {
            mine: text()?,
            point: text()?,
            kind: text()?,
            type_name: text()?,
            place: text()?,
            cause: text()?,
            measures: text()?,
            entered_by: text()?,
            file: text()?,
            start,
            end,
            max,
            arrival,
        };
        (b.remaining() == 0).then_some(row)
    }
}
