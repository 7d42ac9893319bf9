//! The `power` and `seal` archive streams: every accepted electricity-use
//! sample and electronic-seal event, journaled one record each (kinds 5 and
//! 6) so that they are durable before their message is acknowledged, and
//! written as Parquet like the other streams.
//!
//! `power`: mine (utf8), ts and arrival (timestamp ms, UTC), `total_kw`,
//! `hoist_kw`, `transport_kw`, `face_kw`, `ventilation_kw`, `drainage_kw`,
//! `compressor_kw`, `other_kw` (float64, null where the sample had none),
//! source; sorted by (mine, ts).
//! `seal`: mine, camera (its id), place (`main_shaft` …), ts, arrival,
//! event (`people_in` …), fault (the fault's name for `fault` events),
//! count (uint32, for counting events), frame (the 64-bit hash of the
//! picture digest as 16 hex digits), source; sorted by (mine, camera, ts).
//! A row carries its own codes (not registry indices), so a journal segment
//! is readable whatever the config says at recovery.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, StringArray, StringBuilder,
    TimestampMillisecondArray, TimestampMillisecondBuilder, UInt32Array, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::journal::{RecordBody, put_str32};
use super::partition::{Hour, partition_of};
use super::stream::{Journaled, Stream};
use crate::config::Registry;
use crate::model::{CIRCUITS, CameraFault, Circuit, Millis, PowerSample, SealEvent, SealEventKind};

/// Name of the stream of power samples.
pub const POWER: &str = "power";
/// Name of the stream of seal events.
pub const SEAL: &str = "seal";

/// One power sample as the archive keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerRow {
    /// Mine code.
    pub mine: String,
    /// Event time.
    pub ts: Millis,
    /// Processing time of receipt.
    pub arrival: Millis,
    /// Load per [`Circuit`], kW (`NaN` = not reported).
    pub kw: [f32; CIRCUITS],
    /// Source name.
    pub source: &'static str,
}

/// One seal event as the archive keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SealRow {
    /// Mine code.
    pub mine: String,
    /// Camera id.
    pub camera: String,
    /// Where the camera looks (`main_shaft`, …; empty when unknown).
    pub place: String,
    /// Event time.
    pub ts: Millis,
    /// Processing time of receipt.
    pub arrival: Millis,
    /// The event's name (`people_in`, `fault`, …).
    pub event: &'static str,
    /// The fault's name, for `fault` events.
    pub fault: Option<&'static str>,
    /// People or vehicles, for the counting events.
    pub count: Option<u32>,
    /// Picture digest hash (0 = none sent).
    pub frame: u64,
    /// Source name.
    pub source: &'static str,
}

impl PowerRow {
    /// The row of a sample that arrived at `arrival` from `source`.
    pub fn of(registry: &Registry, s: &PowerSample, arrival: Millis, source: &'static str) -> Self {
        PowerRow {
            mine: mine_code(registry, s.mine),
            ts: s.ts,
            arrival,
            kw: s.kw,
            source,
        }
    }

    /// The sample again, for replay (`None` when the registry does not know
    /// the mine).
    pub fn sample(&self, registry: &Registry) -> Option<PowerSample> {
        Some(PowerSample {
            mine: registry.mine(&self.mine)?,
            ts: self.ts,
            kw: self.kw,
        })
    }
}

impl SealRow {
    /// The row of an event that arrived at `arrival` from `source`.
    pub fn of(registry: &Registry, e: &SealEvent, arrival: Millis, source: &'static str) -> Self {
        let cam = registry
            .mines
            .get(e.mine as usize)
            .and_then(|m| m.seal.cameras.get(usize::from(e.camera)));
        SealRow {
            mine: mine_code(registry, e.mine),
            camera: cam.map_or_else(|| format!("#{}", e.camera), |c| c.id.clone()),
            place: cam.map_or_else(String::new, |c| c.place.key().to_string()),
            ts: e.ts,
            arrival,
            event: e.kind.key(),
            fault: match e.kind {
                SealEventKind::Fault(f) => Some(f.key()),
                _ => None,
            },
            count: e.kind.has_count().then_some(e.count),
            frame: e.frame,
            source,
        }
    }

    /// The event again, for replay (`None` when the registry does not know
    /// the mine or camera, or the event name).
    pub fn event(&self, registry: &Registry) -> Option<SealEvent> {
        let mine = registry.mine(&self.mine)?;
        let camera = registry
            .mines
            .get(mine as usize)?
            .seal
            .camera(&self.camera)?;
        Some(SealEvent {
            mine,
            camera,
            ts: self.ts,
            kind: SealEventKind::parse(self.event, self.fault).ok()?,
            count: self.count.unwrap_or(0),
            frame: self.frame,
        })
    }
}

fn mine_code(registry: &Registry, mine: u32) -> String {
    registry
        .mines
        .get(mine as usize)
        .map_or_else(|| format!("#{mine}"), |m| m.code.clone())
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Column name of a circuit's load in the `power` stream.
pub fn kw_column(c: Circuit) -> String {
    format!("{}_kw", c.key())
}

/// Schema of the `power` stream.
pub fn power_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("mine", DataType::Utf8, false),
        Field::new("ts", utc_ms(), false),
        Field::new("arrival", utc_ms(), false),
    ];
    for c in Circuit::ALL {
        fields.push(Field::new(kw_column(c), DataType::Float64, true));
    }
    fields.push(Field::new("source", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Schema of the `seal` stream.
pub fn seal_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("mine", DataType::Utf8, false),
        Field::new("camera", DataType::Utf8, false),
        Field::new("place", DataType::Utf8, false),
        Field::new("ts", utc_ms(), false),
        Field::new("arrival", utc_ms(), false),
        Field::new("event", DataType::Utf8, false),
        Field::new("fault", DataType::Utf8, true),
        Field::new("count", DataType::UInt32, true),
        Field::new("frame", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, false),
    ]))
}

/// The `power` stream.
pub struct Power;

impl Stream for Power {
    const NAME: &'static str = POWER;
    type Row = PowerRow;
    fn schema() -> SchemaRef {
        power_schema()
    }
    fn hour(row: &PowerRow) -> Hour {
        partition_of(row.ts, row.arrival)
    }
    fn sort(rows: &mut [PowerRow], _: &Registry) {
        rows.sort_by(|a, b| (&a.mine, a.ts, a.arrival).cmp(&(&b.mine, b.ts, b.arrival)));
    }
    fn batch(rows: &[PowerRow], _: &Registry) -> Result<RecordBatch, ArrowError> {
        let mut mine = StringBuilder::new();
        let mut ts = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut arrival = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut kw: Vec<Float64Builder> = (0..CIRCUITS).map(|_| Float64Builder::new()).collect();
        let mut source = StringBuilder::new();
        for r in rows {
            mine.append_value(&r.mine);
            ts.append_value(r.ts);
            arrival.append_value(r.arrival);
            for (b, v) in kw.iter_mut().zip(r.kw) {
                b.append_option(v.is_finite().then_some(f64::from(v)));
            }
            source.append_value(r.source);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(mine.finish()),
            Arc::new(ts.finish()),
            Arc::new(arrival.finish()),
        ];
        for mut b in kw {
            cols.push(Arc::new(b.finish()));
        }
        cols.push(Arc::new(source.finish()));
        RecordBatch::try_new(power_schema(), cols)
    }
}

impl Journaled for Power {
    const KIND: u8 = 5;
    /// mine (`u32` length + UTF-8), ts and arrival `i64`, 8 × `f64` kW
    /// (NaN = none), source.
    fn encode(row: &PowerRow, b: &mut Vec<u8>) {
        put_str32(b, &row.mine);
        b.extend_from_slice(&row.ts.to_le_bytes());
        b.extend_from_slice(&row.arrival.to_le_bytes());
        for v in row.kw {
            b.extend_from_slice(&f64::from(v).to_le_bytes());
        }
        put_str32(b, row.source);
    }
    fn decode(b: &mut RecordBody<'_>) -> Option<PowerRow> {
        let mine = b.str32()?.to_string();
        let ts = b.i64()?;
        let arrival = b.i64()?;
        let mut kw = [f32::NAN; CIRCUITS];
        for v in &mut kw {
            *v = b.f64()? as f32;
        }
        Some(PowerRow {
            mine,
            ts,
            arrival,
            kw,
            source: source_label(b.str32()?),
        })
    }
}

/// The `seal` stream.
pub struct Seal;

impl Stream for Seal {
    const NAME: &'static str = SEAL;
    type Row = SealRow;
    fn schema() -> SchemaRef {
        seal_schema()
    }
    fn hour(row: &SealRow) -> Hour {
        partition_of(row.ts, row.arrival)
    }
    fn sort(rows: &mut [SealRow], _: &Registry) {
        rows.sort_by(|a, b| {
            (&a.mine, &a.camera, a.ts, a.arrival).cmp(&(&b.mine, &b.camera, b.ts, b.arrival))
        });
    }
    fn batch(rows: &[SealRow], _: &Registry) -> Result<RecordBatch, ArrowError> {
        let mut mine = StringBuilder::new();
        let mut camera = StringBuilder::new();
        let mut place = StringBuilder::new();
        let mut ts = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut arrival = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut event = StringBuilder::new();
        let mut fault = StringBuilder::new();
        let mut count = UInt32Builder::new();
        let mut frame = StringBuilder::new();
        let mut source = StringBuilder::new();
        for r in rows {
            mine.append_value(&r.mine);
            camera.append_value(&r.camera);
            place.append_value(&r.place);
            ts.append_value(r.ts);
            arrival.append_value(r.arrival);
            event.append_value(r.event);
            fault.append_option(r.fault);
            count.append_option(r.count);
            frame.append_option((r.frame != 0).then(|| format!("{:016x}", r.frame)));
            source.append_value(r.source);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(mine.finish()),
            Arc::new(camera.finish()),
            Arc::new(place.finish()),
            Arc::new(ts.finish()),
            Arc::new(arrival.finish()),
            Arc::new(event.finish()),
            Arc::new(fault.finish()),
            Arc::new(count.finish()),
            Arc::new(frame.finish()),
            Arc::new(source.finish()),
        ];
        RecordBatch::try_new(seal_schema(), cols)
    }
}

impl Journaled for Seal {
    const KIND: u8 = 6;
    /// mine, camera, place (`u32` length + UTF-8 each), ts and arrival
    /// `i64`, event, fault (empty = none), count (`u32`, `u32::MAX` = none
    /// — never a count, which the decoder bounds below it), frame `i64`,
    /// source.
    fn encode(row: &SealRow, b: &mut Vec<u8>) {
        put_str32(b, &row.mine);
        put_str32(b, &row.camera);
        put_str32(b, &row.place);
        b.extend_from_slice(&row.ts.to_le_bytes());
        b.extend_from_slice(&row.arrival.to_le_bytes());
        put_str32(b, row.event);
        put_str32(b, row.fault.unwrap_or(""));
        b.extend_from_slice(&row.count.unwrap_or(u32::MAX).to_le_bytes());
        b.extend_from_slice(&(row.frame as i64).to_le_bytes());
        put_str32(b, row.source);
    }
    fn decode(b: &mut RecordBody<'_>) -> Option<SealRow> {
        let mine = b.str32()?.to_string();
        let camera = b.str32()?.to_string();
        let place = b.str32()?.to_string();
        let ts = b.i64()?;
        let arrival = b.i64()?;
        let event = b.str32()?;
        let fault = b.str32()?;
        let fault = if fault.is_empty() {
            None
        } else {
            Some(CameraFault::parse(fault)?.key())
        };
        let kind = SealEventKind::parse(event, fault).ok()?;
        let count = b.u32()?;
        let frame = b.i64()? as u64;
        Some(SealRow {
            mine,
            camera,
            place,
            ts,
            arrival,
            event: kind.key(),
            fault,
            count: (count != u32::MAX).then_some(count),
            frame,
            source: source_label(b.str32()?),
        })
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} missing or of another type")))
}

/// Power rows read back from one record batch of the `power` schema.
pub fn power_from_batch(batch: &RecordBatch) -> Result<Vec<PowerRow>, ArrowError> {
    let mine = column::<StringArray>(batch, "mine")?;
    let ts = column::<TimestampMillisecondArray>(batch, "ts")?;
    let arrival = column::<TimestampMillisecondArray>(batch, "arrival")?;
    let source = column::<StringArray>(batch, "source")?;
    let kw = Circuit::ALL
        .iter()
        .map(|c| column::<Float64Array>(batch, &kw_column(*c)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let mut row_kw = [f32::NAN; CIRCUITS];
            for (v, col) in row_kw.iter_mut().zip(&kw) {
                if col.is_valid(i) {
                    *v = col.value(i) as f32;
                }
            }
            PowerRow {
                mine: mine.value(i).to_string(),
                ts: ts.value(i),
                arrival: arrival.value(i),
                kw: row_kw,
                source: source_label(source.value(i)),
            }
        })
        .collect())
}

/// Seal rows read back from one record batch of the `seal` schema (rows
/// whose event or fault name is unknown are left out).
pub fn seal_from_batch(batch: &RecordBatch) -> Result<Vec<SealRow>, ArrowError> {
    let text = |name| column::<StringArray>(batch, name);
    let (mine, camera, place, event, fault, frame, source) = (
        text("mine")?,
        text("camera")?,
        text("place")?,
        text("event")?,
        text("fault")?,
        text("frame")?,
        text("source")?,
    );
    let ts = column::<TimestampMillisecondArray>(batch, "ts")?;
    let arrival = column::<TimestampMillisecondArray>(batch, "arrival")?;
    let count = column::<UInt32Array>(batch, "count")?;
    Ok((0..batch.num_rows())
        .filter_map(|i| {
            let fault = fault
                .is_valid(i)
                .then(|| CameraFault::parse(fault.value(i)).map(CameraFault::key))
                .flatten();
            let kind = SealEventKind::parse(event.value(i), fault).ok()?;
            Some(SealRow {
                mine: mine.value(i).to_string(),
                camera: camera.value(i).to_string(),
                place: place.value(i).to_string(),
                ts: ts.value(i),
                arrival: arrival.value(i),
                event: kind.key(),
                fault,
                count: count.is_valid(i).then(|| count.value(i)),
                frame: if frame.is_valid(i) {
                    u64::from_str_radix(frame.value(i), 16).unwrap_or(0)
                } else {
                    0
                },
                source: source_label(source.value(i)),
            })
        })
        .collect())
}

/// The `&'static` source label of a recovered row.
fn source_label(text: &str) -> &'static str {
    ["mqtt", "modbus", "netfile", "replay"]
        .into_iter()
        .find(|s| *s == text)
        .unwrap_or("unrecognised")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::build(&crate::config::parse("").expect("valid").0, 1)
    }

    fn power() -> PowerRow {
        let mut kw = [f32::NAN; CIRCUITS];
        kw[0] = 1520.5;
        kw[1] = -12.25;
        PowerRow {
            mine: "140121000001".into(),
            ts: 1_795_420_800_000,
            arrival: 1_795_420_801_000,
            kw,
            source: "mqtt",
        }
    }

    fn seal(fault: Option<&'static str>, count: Option<u32>) -> SealRow {
        SealRow {
            mine: "140121000001".into(),
            camera: "main-shaft".into(),
            place: "main_shaft".into(),
            ts: 1_795_420_800_000,
            arrival: 1_795_420_801_000,
            event: if fault.is_some() {
                "fault"
            } else {
                "people_in"
            },
            fault,
            count,
            frame: 0xfeed_beef_0000_0001,
            source: "mqtt",
        }
    }

    fn round_trip<S: Journaled>(row: &S::Row) -> Option<S::Row> {
        let mut b = Vec::new();
        S::encode(row, &mut b);
        S::decode(&mut RecordBody::new(&b))
    }

    #[test]
    fn rows_survive_the_journal() {
        let p = round_trip::<Power>(&power()).expect("decodes");
        assert_eq!(p.mine, "140121000001");
        assert_eq!(p.kw[0], 1520.5);
        assert_eq!(p.kw[1], -12.25);
        assert!(p.kw[2].is_nan());
        for row in [seal(None, Some(3)), seal(Some("frozen"), None)] {
            assert_eq!(round_trip::<Seal>(&row), Some(row));
        }
        // A cut record does not decode.
        let mut b = Vec::new();
        Seal::encode(&seal(None, Some(3)), &mut b);
        b.truncate(b.len() - 3);
        assert_eq!(Seal::decode(&mut RecordBody::new(&b)), None);
    }

    #[test]
    fn batches_follow_the_schemas() {
        let b = Power::batch(&[power()], &registry()).expect("batch");
        assert_eq!(b.num_columns(), 3 + CIRCUITS + 1);
        assert_eq!(b.schema().field(3).name(), "total_kw");
        assert_eq!(b.column(5).null_count(), 1, "transport_kw not reported");
        let b = Seal::batch(
            &[seal(None, Some(3)), seal(Some("frozen"), None)],
            &registry(),
        )
        .expect("batch");
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(6).null_count(), 1);
        assert_eq!(b.column(7).null_count(), 1);
        // And back.
        assert_eq!(
            seal_from_batch(&b).expect("rows"),
            [seal(None, Some(3)), seal(Some("frozen"), None)]
        );
        let p =
            power_from_batch(&Power::batch(&[power()], &registry()).expect("batch")).expect("rows");
        assert_eq!(p[0].kw[1], -12.25);
        assert!(p[0].kw[3].is_nan());
    }
}
