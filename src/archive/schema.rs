//! The `readings` and `rejected` streams: their rows, Parquet schemas,
//! partition hours, file order, the conversion of buffered rows into Arrow
//! record batches, and the journal record of a rejected row.
//!
//! `readings`: mine, point, sensor (utf8), ts and arrival (timestamp ms,
//! UTC), value (float64, null when the reading carried no value), status
//! (uint16, the national status bits), source (utf8); partitioned by event
//! time (`ts`), sorted by (mine, point, ts).
//! `rejected`: at (timestamp ms, UTC), source, origin, reason, detail,
//! record (utf8); partitioned by receipt time (`at`), sorted by (at,
//! origin). docs/ARCHIVE.md documents both for readers.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt16Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::journal::{RecordBody, RecoveredReading, put_str32};
use super::partition::{Hour, partition_of};
use super::stream::{Journaled, Stream};
use crate::config::Registry;
use crate::model::{Millis, PointIdx};

/// The `readings` stream as the running archive buffers it: rows by point
/// index, codes looked up in the registry when the file is written.
pub struct Readings;

impl Stream for Readings {
    const NAME: &'static str = super::READINGS;
    type Row = ReadingRow;
    fn schema() -> SchemaRef {
        readings_schema()
    }
    fn hour(row: &ReadingRow) -> Hour {
        partition_of(row.ts, row.arrival)
    }
    fn sort(rows: &mut [ReadingRow], registry: &Registry) {
        sort_readings(rows, registry)
    }
    fn batch(rows: &[ReadingRow], registry: &Registry) -> Result<RecordBatch, ArrowError> {
        readings_batch(rows, registry)
    }
}

/// The `readings` stream as recovered from the journal: the same files,
/// but the codes come with each row (the segment's point definitions), so
/// recovery needs no config.
pub struct RecoveredReadings;

impl Stream for RecoveredReadings {
    const NAME: &'static str = super::READINGS;
    type Row = RecoveredReading;
    fn schema() -> SchemaRef {
        readings_schema()
    }
    fn hour(row: &RecoveredReading) -> Hour {
        partition_of(row.ts, row.arrival)
    }
    fn sort(rows: &mut [RecoveredReading], _: &Registry) {
        rows.sort_by(|a, b| {
            (&a.codes.mine, &a.codes.point, a.ts).cmp(&(&b.codes.mine, &b.codes.point, b.ts))
        });
    }
    fn batch(rows: &[RecoveredReading], _: &Registry) -> Result<RecordBatch, ArrowError> {
        let mut cols = ReadingColumns::with_capacity(rows.len());
        for r in rows {
            cols.push(
                &r.codes.mine,
                &r.codes.point,
                &r.codes.sensor,
                r.ts,
                r.arrival,
                r.value,
                r.status,
                &r.source,
            );
        }
        cols.finish()
    }
}

/// The `rejected` stream: every refused record, journaled one record each.
pub struct Rejected;

impl Stream for Rejected {
    const NAME: &'static str = super::REJECTED;
    type Row = RejectedRow;
    fn schema() -> SchemaRef {
        rejected_schema()
    }
    fn hour(row: &RejectedRow) -> Hour {
        partition_of(row.at, row.at)
    }
    fn sort(rows: &mut [RejectedRow], _: &Registry) {
        sort_rejected(rows)
    }
    fn batch(rows: &[RejectedRow], _: &Registry) -> Result<RecordBatch, ArrowError> {
        rejected_batch(rows)
    }
}

impl Journaled for Rejected {
    const KIND: u8 = 3;
    /// `at i64`, then source, origin, reason, detail and record (`u32`
    /// length + UTF-8 each).
    fn encode(row: &RejectedRow, b: &mut Vec<u8>) {
        b.extend_from_slice(&row.at.to_le_bytes());
        put_str32(b, &row.source);
        put_str32(b, &row.origin);
        put_str32(b, row.reason);
        put_str32(b, &row.detail);
        put_str32(b, &row.record);
    }
    fn decode(b: &mut RecordBody<'_>) -> Option<RejectedRow> {
        Some(RejectedRow {
            at: b.i64()?,
            source: b.str32()?.to_string(),
            origin: b.str32()?.to_string(),
            reason: reason_label(b.str32()?),
            detail: b.str32()?.to_string(),
            record: b.str32()?.to_string(),
        })
    }
}

/// The `&'static` reason label for a recovered rejected record.
fn reason_label(text: &str) -> &'static str {
    crate::ingest::RejectReason::ALL
        .iter()
        .map(|r| r.key())
        .find(|k| *k == text)
        .unwrap_or("unrecognised")
}

/// One accepted reading as the archive buffers it (codes are looked up when
/// the file is written).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadingRow {
    /// The point, as a registry index.
    pub point: PointIdx,
    /// Event time.
    pub ts: Millis,
    /// Processing time of receipt.
    pub arrival: Millis,
    /// The value; `NaN` when the reading carried none.
    pub value: f64,
    /// National status bits.
    pub status: u16,
    /// Source name (`mqtt`, `modbus`, `netfile`).
    pub source: &'static str,
}

/// One rejected record.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    /// Processing time of receipt.
    pub at: Millis,
    /// Source (`mqtt`, …).
    pub source: String,
    /// Topic or file it came in on.
    pub origin: String,
    /// Why it was refused (the metric label).
    pub reason: &'static str,
    /// The particulars, for a person.
    pub detail: String,
    /// The record as received (invalid UTF-8 replaced by U+FFFD).
    pub record: String,
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Schema of the `readings` stream.
pub fn readings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("mine", DataType::Utf8, false),
        Field::new("point", DataType::Utf8, false),
        Field::new("sensor", DataType::Utf8, false),
        Field::new("ts", utc_ms(), false),
        Field::new("arrival", utc_ms(), false),
        Field::new("value", DataType::Float64, true),
        Field::new("status", DataType::UInt16, false),
        Field::new("source", DataType::Utf8, false),
    ]))
}

/// Schema of the `rejected` stream.
pub fn rejected_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("at", utc_ms(), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("origin", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, false),
    ]))
}

/// The (mine, point, sensor) codes of one point as written.
type Codes<'a> = (&'a str, Cow<'a, str>, String);

/// Codes of a point for the archive: (mine, point, sensor). A point the
/// registry does not know (it never shrinks, so this means a bug upstream)
/// is written as mine `""`, point `#<index>`, sensor `""` rather than lost.
fn codes(registry: &Registry, point: PointIdx) -> Codes<'_> {
    match registry.points.get(point as usize) {
        Some(p) => (
            registry
                .mines
                .get(p.mine as usize)
                .map_or("", |m| m.code.as_str()),
            Cow::Borrowed(p.code.as_str()),
            p.sensor.code_text(),
        ),
        None => ("", Cow::Owned(format!("#{point}")), String::new()),
    }
}

/// Sorts rows by (mine code, point code, event time), the file order
/// (stable: rows of one point and time keep their arrival order).
///
/// The codes are compared once per distinct point, not once per row
/// comparison: the points present are ranked in file order, the rows
/// placed by rank (a counting sort), and each point's rows — nearly in
/// time order already, as they arrived — sorted by time.
pub fn sort_readings(rows: &mut [ReadingRow], registry: &Registry) {
    let slots = rows.iter().map(|r| r.point as usize + 1).max().unwrap_or(0);
    let mut rank = vec![u32::MAX; slots];
    let mut present = Vec::new();
    for r in rows.iter() {
        let slot = &mut rank[r.point as usize];
        if *slot == u32::MAX {
            *slot = 0;
            present.push(r.point);
        }
    }
    let key = |point: PointIdx| {
        let p = registry.points.get(point as usize);
        let mine = p
            .and_then(|p| registry.mines.get(p.mine as usize))
            .map_or("", |m| m.code.as_str());
        (mine, p.map(|p| p.code.as_str()), point)
    };
    present.sort_by(|a, b| key(*a).cmp(&key(*b)));
    for (i, p) in present.iter().enumerate() {
        rank[*p as usize] = i as u32;
    }
    // Where each rank's rows begin, then every row to its place.
    let mut start = vec![0usize; present.len() + 1];
    for r in rows.iter() {
        start[rank[r.point as usize] as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let bounds = start.clone();
    let arrived = rows.to_vec();
    for r in arrived {
        let at = &mut start[rank[r.point as usize] as usize];
        rows[*at] = r;
        *at += 1;
    }
    for w in bounds.windows(2) {
        rows[w[0]..w[1]].sort_by_key(|r| r.ts);
    }
}

/// Column builders of the `readings` schema, filled one row at a time.
pub struct ReadingColumns {
    mine: StringBuilder,
    point: StringBuilder,
    sensor: StringBuilder,
    ts: TimestampMillisecondBuilder,
    arrival: TimestampMillisecondBuilder,
    value: Float64Builder,
    status: UInt16Builder,
    source: StringBuilder,
}

impl ReadingColumns {
    /// Builders with room for `n` rows.
    pub fn with_capacity(n: usize) -> ReadingColumns {
        ReadingColumns {
            mine: StringBuilder::with_capacity(n, n * 12),
            point: StringBuilder::with_capacity(n, n * 24),
            sensor: StringBuilder::with_capacity(n, n * 4),
            ts: TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC"),
            arrival: TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC"),
            value: Float64Builder::with_capacity(n),
            status: UInt16Builder::with_capacity(n),
            source: StringBuilder::with_capacity(n, n * 6),
        }
    }

    /// Appends one row; a `NaN` value is written as null.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        mine: &str,
        point: &str,
        sensor: &str,
        ts: Millis,
        arrival: Millis,
        value: f64,
        status: u16,
        source: &str,
    ) {
        self.mine.append_value(mine);
        self.point.append_value(point);
        self.sensor.append_value(sensor);
        self.ts.append_value(ts);
        self.arrival.append_value(arrival);
        if value.is_nan() {
            self.value.append_null();
        } else {
            self.value.append_value(value);
        }
        self.status.append_value(status);
        self.source.append_value(source);
    }

    /// The record batch of the rows pushed.
    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.mine.finish()),
            Arc::new(self.point.finish()),
            Arc::new(self.sensor.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.arrival.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.source.finish()),
        ];
        RecordBatch::try_new(readings_schema(), columns)
    }
}

/// Readings as one record batch (in the given order). The codes of a
/// point are looked up once per run of its rows (the file order keeps a
/// point's rows together), not once per row.
pub fn readings_batch(rows: &[ReadingRow], registry: &Registry) -> Result<RecordBatch, ArrowError> {
    let mut cols = ReadingColumns::with_capacity(rows.len());
    let mut current: Option<(PointIdx, Codes<'_>)> = None;
    for r in rows {
        if current.as_ref().is_none_or(|(p, _)| *p != r.point) {
            current = Some((r.point, codes(registry, r.point)));
        }
        if let Some((_, (m, p, s))) = &current {
            cols.push(m, p, s, r.ts, r.arrival, r.value, r.status, r.source);
        }
    }
    cols.finish()
}

/// Sorts rejected records by (receipt time, origin).
pub fn sort_rejected(rows: &mut [RejectedRow]) {
    rows.sort_by(|a, b| (a.at, &a.origin).cmp(&(b.at, &b.origin)));
}

/// Rejected records as one record batch (in the given order).
pub fn rejected_batch(rows: &[RejectedRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut at = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut source = StringBuilder::new();
    let mut origin = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut detail = StringBuilder::new();
    let mut record = StringBuilder::new();
    for r in rows {
        at.append_value(r.at);
        source.append_value(&r.source);
        origin.append_value(&r.origin);
        reason.append_value(r.reason);
        detail.append_value(&r.detail);
        record.append_value(&r.record);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(at.finish()),
        Arc::new(source.finish()),
        Arc::new(origin.finish()),
        Arc::new(reason.finish()),
        Arc::new(detail.finish()),
        Arc::new(record.finish()),
    ];
    RecordBatch::try_new(rejected_schema(), columns)
}
