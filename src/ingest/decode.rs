//! Decoding and validation of the JSON telemetry batch published on
//! `mines/{mine}/telemetry`:
//!
//! ```json
//! {"ts": "2026-11-23T08:00:00+08:00",
//!  "readings": [{"point": "14012100000101MN0001001", "value": 0.42, "status": 0,
//!                "ts": 1795392000000}]}
//! ```
//!
//! `ts` is RFC 3339 with a zone, or epoch milliseconds; a reading's own `ts`
//! overrides the batch's. `status` is the national point-status bit mask
//! (default 0). `value` may be null only when the status says there is no
//! value (sensor fault, …).
//!
//! A bad reading is refused on its own; the good readings of the same batch
//! go on. A bad batch (not JSON, too large, unknown mine) is refused whole.
//! Bare `NaN` / `Infinity` tokens (which some encoders write, though JSON has
//! none) are read as non-finite values, so one NaN refuses one reading, not
//! the whole batch.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

use crate::config::{IngestConfig, Registry, SharedRegistry};
use crate::ingest::RejectReason;
use crate::model::{Millis, MineIdx, PointIdx, Reading, status};

/// One refused record.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Why.
    pub reason: RejectReason,
    /// The particulars.
    pub detail: String,
    /// The record (a reading's JSON, or the whole payload).
    pub record: Vec<u8>,
}

/// What one message decoded to: readings, or (see [`super::activity`])
/// power samples or seal events.
#[derive(Debug)]
pub struct Decoded<T = Reading> {
    /// The shard that owns the message's mine.
    pub shard: usize,
    /// Accepted records.
    pub records: Vec<T>,
    /// Refused records.
    pub rejects: Vec<Rejected>,
}

impl<T> Default for Decoded<T> {
    fn default() -> Self {
        Decoded {
            shard: 0,
            records: Vec::new(),
            rejects: Vec::new(),
        }
    }
}

impl<T> Decoded<T> {
    pub(super) fn reject(
        &mut self,
        reason: RejectReason,
        detail: impl Into<String>,
        record: &[u8],
    ) {
        self.rejects.push(Rejected {
            reason,
            detail: detail.into(),
            record: record.to_vec(),
        });
    }
}

/// Decodes telemetry batches against the registry.
#[derive(Clone)]
pub struct Decoder {
    pub(super) registry: SharedRegistry,
    pub(super) max_future_ms: i64,
    pub(super) max_past_ms: i64,
    pub(super) max_batch: usize,
    pub(super) max_payload: usize,
}

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(default, borrow)]
    ts: Option<Ts<'a>>,
    #[serde(default, borrow)]
    readings: Option<Vec<&'a RawValue>>,
}

/// A batch whose readings are parsed in the same pass (the fast path:
/// every reading well-formed).
#[derive(Deserialize)]
struct TypedBatch<'a> {
    #[serde(default, borrow)]
    ts: Option<Ts<'a>>,
    #[serde(default, borrow)]
    readings: Option<Vec<RawReading<'a>>>,
}

#[derive(Deserialize)]
struct RawReading<'a> {
    #[serde(default, borrow)]
    point: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<Num>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default, borrow)]
    ts: Option<Ts<'a>>,
}

/// A JSON value where a number belongs.
pub(super) enum Num {
    Finite(f64),
    NonFinite,
    Text,
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(if v.is_finite() {
                    Num::Finite(v)
                } else {
                    Num::NonFinite
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num::Finite(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num::Finite(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                Ok(match v {
                    "NaN" | "Infinity" | "-Infinity" => Num::NonFinite,
                    _ => Num::Text,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON value where a timestamp belongs.
pub(super) enum Ts<'a> {
    Ms(i64),
    Float(f64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Ts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ts<'a>, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Ts<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time or epoch milliseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ts<'a>, E> {
                Ok(Ts::Ms(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ts<'a>, E> {
                Ok(i64::try_from(v).map(Ts::Ms).unwrap_or(Ts::Float(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ts<'a>, E> {
                Ok(Ts::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Ts<'a>, E> {
                Ok(Ts::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ts<'a>, E> {
                Ok(Ts::Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Epoch milliseconds below this (early 1973) are most likely seconds.
const PLAUSIBLE_MS: i64 = 100_000_000_000;

pub(super) fn resolve_ts(ts: &Ts<'_>) -> Result<Millis, String> {
    let ms = match ts {
        Ts::Ms(v) => *v,
        Ts::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => *f as i64,
        Ts::Float(f) => return Err(format!("{f} is not a whole number of epoch milliseconds")),
        Ts::Text(s) => {
            return chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .map_err(|e| {
                    format!(
                        "{s:?} is not RFC 3339 ({e}); write a zone, e.g. 2026-11-23T08:00:00+08:00"
                    )
                });
        }
    };
    if (0..PLAUSIBLE_MS).contains(&ms) {
        return Err(format!(
            "{ms} looks like epoch seconds; send epoch milliseconds"
        ));
    }
    Ok(ms)
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` tokens outside strings
/// into strings, so that they refuse one value instead of the whole batch.
/// Borrows when there is nothing to rewrite.
pub fn quote_non_finite(payload: &[u8]) -> Cow<'_, [u8]> {
    let has = |needle: &[u8]| memchr::memmem::find(payload, needle).is_some();
    if !has(b"NaN") && !has(b"Infinity") {
        return Cow::Borrowed(payload);
    }
    let mut out = Vec::with_capacity(payload.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < payload.len() {
        let b = payload[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let rest = &payload[i..];
        let token: Option<&[u8]> = [&b"NaN"[..], b"-Infinity", b"Infinity"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push(b'"');
            out.extend_from_slice(t);
            out.push(b'"');
            i += t.len();
            continue;
        }
        if b == b'"' {
            in_string = true;
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

pub(super) fn classify(e: &serde_json::Error) -> RejectReason {
    let msg = e.to_string();
    if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        RejectReason::WrongType
    } else {
        RejectReason::MalformedRecord
    }
}

impl Decoder {
    /// A decoder for the registry's mines and points, with the limits of
    /// `ingest` and the largest payload `max_payload` bytes.
    pub fn new(
        registry: impl Into<SharedRegistry>,
        ingest: &IngestConfig,
        max_payload: usize,
    ) -> Decoder {
        Decoder {
            registry: registry.into(),
            max_future_ms: (ingest.max_future_secs as i64).saturating_mul(1000),
            max_past_ms: (ingest.max_past_secs as i64).saturating_mul(1000),
            max_batch: ingest.max_batch_readings,
            max_payload,
        }
    }

    /// The largest payload taken, bytes (`mqtt.max_payload_bytes`).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Decodes one telemetry message of mine `mine_code` that arrived at
    /// processing time `arrival`.
    pub fn decode_telemetry(&self, mine_code: &str, payload: &[u8], arrival: Millis) -> Decoded {
        let mut out = Decoded::default();
        let Some((registry, mine)) = self.begin(mine_code, payload, &mut out) else {
            return out;
        };
        let text = quote_non_finite(payload);
        if self.decode_fast(&registry, mine, &text, arrival, &mut out.records) {
            return out;
        }
        out.records.clear();
        let batch: RawBatch = match serde_json::from_slice(&text) {
            Ok(b) => b,
            Err(e) => {
                let reason = if e.is_data() {
                    classify(&e)
                } else {
                    RejectReason::MalformedJson
                };
                out.reject(reason, format!("not a telemetry batch: {e}"), payload);
                return out;
            }
        };
        let Some(readings) = batch.readings else {
            out.reject(RejectReason::MissingField, "no \"readings\" array", payload);
            return out;
        };
        if readings.is_empty() {
            out.reject(RejectReason::EmptyBatch, "\"readings\" is empty", payload);
            return out;
        }
        if readings.len() > self.max_batch {
            out.reject(
                RejectReason::BatchTooLarge,
                format!(
                    "{} readings, the limit is {} (ingest.max_batch_readings); split the batch",
                    readings.len(),
                    self.max_batch
                ),
                payload,
            );
            return out;
        }
        let batch_ts = batch.ts.as_ref().map(resolve_ts);
        out.records.reserve(readings.len());
        for raw in readings {
            match self.reading(&registry, mine, raw, batch_ts.as_ref(), arrival) {
                Ok(r) => out.records.push(r),
                Err((reason, detail)) => out.reject(reason, detail, raw.get().as_bytes()),
            }
        }
        out
    }

    /// The fast path of [`Decoder::decode_telemetry`]: one parsing pass
    /// over the whole batch, readings borrowed from the payload, codes
    /// resolved by one map lookup each. True when every reading was
    /// parsed and accepted (`records` holds them); false otherwise (the
    /// batch or a reading is bad, or the limits are exceeded), and the
    /// caller decodes the batch again reading by reading, to refuse each
    /// bad reading with its own record and reason.
    fn decode_fast(
        &self,
        registry: &Registry,
        mine: MineIdx,
        text: &[u8],
        arrival: Millis,
        records: &mut Vec<Reading>,
    ) -> bool {
        let Ok(batch) = serde_json::from_slice::<TypedBatch>(text) else {
            return false;
        };
        let Some(readings) = batch.readings else {
            return false;
        };
        if readings.is_empty() || readings.len() > self.max_batch {
            return false;
        }
        let batch_ts = batch.ts.as_ref().map(resolve_ts);
        records.reserve(readings.len());
        for r in readings {
            match self.typed_reading(registry, mine, r, batch_ts.as_ref(), arrival) {
                Ok(reading) => records.push(reading),
                Err(_) => return false,
            }
        }
        true
    }

    /// The checks every message of a mine starts with: its size and its
    /// mine. Returns the registry and the mine (with `out.shard` set), or
    /// `None` with the whole payload refused in `out`.
    pub(super) fn begin<T>(
        &self,
        mine_code: &str,
        payload: &[u8],
        out: &mut Decoded<T>,
    ) -> Option<(Arc<Registry>, MineIdx)> {
        if payload.len() > self.max_payload {
            out.reject(
                RejectReason::PayloadTooLarge,
                format!(
                    "{} bytes, the limit is {} (mqtt.max_payload_bytes); split the batch",
                    payload.len(),
                    self.max_payload
                ),
                payload,
            );
            return None;
        }
        let registry = self.registry.snapshot();
        let Some(mine) = registry.mine(mine_code) else {
            out.reject(
                RejectReason::UnknownMine,
                format!("mine {mine_code:?} is not configured"),
                payload,
            );
            return None;
        };
        out.shard = registry.mines[mine as usize].shard;
        Some((registry, mine))
    }

    fn reading(
        &self,
        registry: &Registry,
        mine: u32,
        raw: &RawValue,
        batch_ts: Option<&Result<Millis, String>>,
        arrival: Millis,
    ) -> Result<Reading, (RejectReason, String)> {
        let r: RawReading =
            serde_json::from_str(raw.get()).map_err(|e| (classify(&e), format!("reading: {e}")))?;
        self.typed_reading(registry, mine, r, batch_ts, arrival)
    }

    /// Validates one parsed reading (see [`Decoder::check`]).
    fn typed_reading(
        &self,
        registry: &Registry,
        mine: u32,
        r: RawReading<'_>,
        batch_ts: Option<&Result<Millis, String>>,
        arrival: Millis,
    ) -> Result<Reading, (RejectReason, String)> {
        let code = r.point.ok_or_else(|| {
            (
                RejectReason::MissingField,
                "reading has no \"point\"".to_string(),
            )
        })?;
        let value = match r.value {
            Some(Num::Finite(v)) => ValueIn::Number(v),
            Some(Num::NonFinite) => ValueIn::NonFinite,
            Some(Num::Text) => ValueIn::Text,
            None => ValueIn::Missing,
        };
        let ts = match (&r.ts, batch_ts) {
            (Some(ts), _) => Some(resolve_ts(ts)),
            (None, Some(batch)) => Some(batch.clone()),
            (None, None) => None,
        };
        let st = r.status.unwrap_or(status::NORMAL);
        self.check(registry, mine, &code, value, st, ts, arrival)
    }

    /// Validates one reading of mine `mine` as any source delivers it: the
    /// point must be configured and the mine's, the value finite (or absent
    /// where the status says there is none), the event time readable and
    /// neither too far ahead of `arrival` nor too old.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        registry: &Registry,
        mine: MineIdx,
        code: &str,
        value: ValueIn,
        st: u16,
        ts: Option<Result<Millis, String>>,
        arrival: Millis,
    ) -> Result<Reading, (RejectReason, String)> {
        let point: PointIdx = registry.point(code).ok_or_else(|| {
            (
                RejectReason::UnknownPoint,
                format!("point {code:?} is not configured"),
            )
        })?;
        let owner = registry.points[point as usize].mine;
        if owner != mine {
            return Err((
                RejectReason::PointMineMismatch,
                format!(
                    "point {code:?} belongs to mine {}, not to this mine",
                    registry.mines[owner as usize].code
                ),
            ));
        }
        let value = match value {
            ValueIn::Number(v) if v.is_finite() => v,
            ValueIn::Number(_) | ValueIn::NonFinite => {
                return Err((
                    RejectReason::NonFiniteValue,
                    format!("point {code:?}: value is NaN or infinite"),
                ));
            }
            ValueIn::Text => {
                return Err((
                    RejectReason::WrongType,
                    format!("point {code:?}: value is text; send a number"),
                ));
            }
            ValueIn::Missing if st & status::NOT_A_VALUE != 0 => f64::NAN,
            ValueIn::Missing => {
                return Err((
                    RejectReason::MissingField,
                    format!("point {code:?}: no value, and the status ({st}) says there is one"),
                ));
            }
        };
        let ts = self.event_time(ts, arrival, &PointName(code))?;
        Ok(Reading {
            point,
            ts,
            value,
            status: st,
        })
    }

    /// Checks the event time of a record (`what` names it in the detail):
    /// present, readable, not too far ahead of `arrival`, not too old.
    pub(super) fn event_time(
        &self,
        ts: Option<Result<Millis, String>>,
        arrival: Millis,
        what: &dyn fmt::Display,
    ) -> Result<Millis, (RejectReason, String)> {
        let ts = ts
            .ok_or_else(|| {
                (
                    RejectReason::MissingField,
                    format!("{what}: no timestamp on the record or the batch"),
                )
            })?
            .map_err(|e| (RejectReason::BadTimestamp, format!("{what}: {e}")))?;
        if ts > arrival.saturating_add(self.max_future_ms) {
            return Err((
                RejectReason::FutureTimestamp,
                format!(
                    "{what}: {} is {} s ahead of arrival; check the mine's clock",
                    crate::model::rfc3339(ts),
                    (ts - arrival) / 1000
                ),
            ));
        }
        if ts < arrival.saturating_sub(self.max_past_ms) {
            return Err((
                RejectReason::PastTimestamp,
                format!(
                    "{what}: {} is older than ingest.max_past_secs",
                    crate::model::rfc3339(ts)
                ),
            ));
        }
        Ok(ts)
    }

    /// The current registry.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.snapshot()
    }
}

/// How a refusal names a point (`point "A1"`): formatted only when a
/// reading is refused, never for an accepted one.
struct PointName<'a>(&'a str);

impl fmt::Display for PointName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "point {:?}", self.0)
    }
}

/// A value as a source delivered it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueIn {
    /// A number.
    Number(f64),
    /// NaN or infinity, spelled out.
    NonFinite,
    /// Text where a number belongs.
    Text,
    /// No value.
    Missing,
}

impl ValueIn {
    /// Reads a value written as text (national files): empty is missing.
    pub fn from_text(text: &str) -> ValueIn {
        match text {
            "" => ValueIn::Missing,
            "NaN" | "nan" | "Infinity" | "-Infinity" | "inf" | "-inf" => ValueIn::NonFinite,
            t => t.parse::<f64>().map_or(ValueIn::Text, ValueIn::Number),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use proptest::prelude::*;

    const NOW: Millis = 1_795_420_800_000; // 2026-11-23T08:00:00Z

    fn decoder() -> Decoder {
        let (config, _) = parse(
            r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
points = [
  { code = "A1", sensor = "0001", location = "face_t1" },
  { code = "A2", sensor = "0004", location = "face_t2" },
]
[[mines]]
code = "140121000002"
name = "b"
province = "140000"
city = "140100"
county = "140121"
points = [ { code = "B1", sensor = "0001", location = "face_t1" } ]
"#,
        )
        .expect("valid");
        let reg = Registry::build(&config, 2);
        let ingest = IngestConfig {
            max_batch_readings: 20,
            ..IngestConfig::default()
        };
        Decoder::new(reg, &ingest, 4096)
    }

    fn reasons(d: &Decoded) -> Vec<&'static str> {
        d.rejects.iter().map(|r| r.reason.key()).collect()
    }

    #[test]
    fn a_good_batch_decodes_with_batch_and_reading_timestamps() {
        let d = decoder().decode_telemetry(
            "140121000001",
            br#"{"ts":"2026-11-23T16:00:00+08:00","readings":[
                {"point":"A1","value":0.42},
                {"point":"A2","value":3,"status":4,"ts":1795420799000}]}"#,
            NOW,
        );
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert_eq!(
            d.records,
            [
                Reading {
                    point: 0,
                    ts: NOW,
                    value: 0.42,
                    status: 0
                },
                Reading {
                    point: 1,
                    ts: NOW - 1000,
                    value: 3.0,
                    status: 4
                }
            ]
        );
        assert_eq!(d.shard, 0);
    }

    #[test]
    fn bad_readings_are_refused_one_by_one_and_the_good_ones_kept() {
        let d = decoder().decode_telemetry(
            "140121000001",
            br#"{"ts":1795420800000,"readings":[
                {"point":"A1","value":NaN},
                {"point":"A1","value":"0.5"},
                {"point":"ZZ","value":0.5},
                {"point":"B1","value":0.5},
                {"point":"A1","value":1.5,"ts":"2026-11-23T08:10:00Z"}]}"#,
            NOW,
        );
        assert_eq!(
            reasons(&d),
            [
                "non_finite_value",
                "wrong_type",
                "unknown_point",
                "point_mine_mismatch",
                "future_timestamp"
            ]
        );
        assert!(d.records.is_empty());
        let d = decoder().decode_telemetry(
            "140121000001",
            br#"{"ts":1795420800000,"readings":[
                {"point":"A1","value":-Infinity},
                {"point":"A1","value":1.2},
                {"point":"A1","ts":1000,"value":1},
                {"point":"A1","ts":"2026-11-23 08:00:00","value":1},
                {"point":"A1","ts":1000000000000,"value":1},
                {"point":"A2"},
                {"point":"A2","status":128},
                {"value":1},
                {"point":7,"value":1},
                {"point":"A1","value":1,"status":-1}]}"#,
            NOW,
        );
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.records[0].value, 1.2);
        assert!(d.records[1].value.is_nan());
        assert_eq!(
            reasons(&d),
            [
                "non_finite_value",
                "bad_timestamp",
                "bad_timestamp",
                "past_timestamp",
                "missing_field",
                "missing_field",
                "wrong_type",
                "wrong_type"
            ]
        );
    }

    #[test]
    fn bad_batches_are_refused_whole() {
        let dec = decoder();
        let one = |topic_mine: &str, payload: &[u8]| {
            let d = dec.decode_telemetry(topic_mine, payload, NOW);
            assert!(d.records.is_empty());
            reasons(&d)
        };
        assert_eq!(one("140121000001", b"not json"), ["malformed_json"]);
        assert_eq!(
            one("140121000001", b"{\"readings\":[1,"),
            ["malformed_json"]
        );
        assert_eq!(one("140121000001", b"[1,2]"), ["wrong_type"]);
        assert_eq!(one("140121000001", b"{\"readings\":5}"), ["wrong_type"]);
        assert_eq!(one("140121000001", b"{}"), ["missing_field"]);
        assert_eq!(one("140121000001", b"{\"readings\":[]}"), ["empty_batch"]);
        assert_eq!(
            one(
                "140121000001",
                format!("{{\"readings\":[{}{{}}]}}", "{},".repeat(20)).as_bytes()
            ),
            ["batch_too_large"]
        );
        assert_eq!(
            one("999999999999", b"{\"readings\":[{}]}"),
            ["unknown_mine"]
        );
        assert_eq!(
            one("140121000001", &vec![b' '; 5000]),
            ["payload_too_large"]
        );
    }

    #[test]
    fn non_finite_tokens_are_quoted_only_outside_strings() {
        assert_eq!(
            quote_non_finite(br#"{"a":NaN,"b":"NaN x","c":[-Infinity,Infinity]}"#).as_ref(),
            br#"{"a":"NaN","b":"NaN x","c":["-Infinity","Infinity"]}"#
        );
        assert!(matches!(quote_non_finite(b"{\"a\":1}"), Cow::Borrowed(_)));
        assert_eq!(
            quote_non_finite(br#"{"s":"\"NaN","v":NaN}"#).as_ref(),
            br#"{"s":"\"NaN","v":"NaN"}"#
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let d = decoder().decode_telemetry("140121000001", &bytes, NOW);
            prop_assert!(d.records.len() + d.rejects.len() >= 1);
        }

        #[test]
        fn well_formed_batches_round_trip(
            values in proptest::collection::vec((0.0f64..100.0, 0u16..256, -60_000i64..60_000), 1..5)
        ) {
            let readings: Vec<String> = values
                .iter()
                .map(|(v, s, dt)| format!(r#"{{"point":"A1","value":{v},"status":{s},"ts":{}}}"#, NOW + dt))
                .collect();
            let payload = format!(r#"{{"readings":[{}]}}"#, readings.join(","));
            let d = decoder().decode_telemetry("140121000001", payload.as_bytes(), NOW);
            prop_assert!(d.rejects.is_empty());
            prop_assert_eq!(d.records.len(), values.len());
            for (r, (v, s, dt)) in d.records.iter().zip(&values) {
                prop_assert_eq!(r.value, *v);
                prop_assert_eq!(r.status, *s);
                prop_assert_eq!(r.ts, NOW + dt);
            }
        }

        #[test]
        fn arbitrary_json_in_readings_never_panics(s in "\\PC{0,64}") {
            let payload = format!(r#"{{"ts":1795420800000,"readings":[{}, {{"point":"A1","value":1}}]}}"#,
                serde_json::to_string(&s).unwrap());
            let d = decoder().decode_telemetry("140121000001", payload.as_bytes(), NOW);
            prop_assert_eq!(d.records.len(), 1);
            prop_assert_eq!(d.rejects.len(), 1);
        }
    }
}
