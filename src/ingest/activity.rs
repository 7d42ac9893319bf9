//! Decoding and validation of a mine's electricity-use samples
//! (`mines/{mine}/power`) and electronic-seal events (`mines/{mine}/seal`).
//!
//! ```json
//! {"ts": "2026-11-23T21:00:00+08:00",
//!  "samples": [{"total_kw": 1520.5, "circuits": {"hoist": 610.2, "ventilation": 560, "drainage": 300}}]}
//! {"ts": 1795453200000, "total_kw": 880.0}
//! {"ts": "2026-11-23T21:00:05+08:00",
//!  "events": [{"camera": "main-shaft", "event": "people_in", "count": 3},
//!             {"camera": "aux-shaft", "event": "fault", "fault": "frozen"},
//!             {"camera": "dispatch", "event": "heartbeat", "frame": "9f3a07c2"}]}
//! ```
//!
//! A power message is one sample (the object itself) or a batch
//! (`samples`); a seal message is a batch of `events`. Times follow the
//! telemetry rules ([`super::decode`]): RFC 3339 with a zone or epoch ms, a
//! record's own `ts` over the batch's, not too far ahead or behind. As with
//! readings, a bad record is refused on its own with its reason and the
//! rest of the message goes on; a bad message is refused whole.
//!
//! Power: `total_kw` and `circuits` (`hoist`, `transport`, `face`,
//! `ventilation`, `drainage`, `compressor`, `other`), kW, at least one
//! value; a negative total is `invalid_value` (a circuit may read negative:
//! a hoist braking feeds power back); an unknown circuit is
//! `unknown_circuit`. Seal: `camera` must be one of the mine's configured
//! cameras (`unknown_camera`), `event` a known kind (`unknown_event`);
//! counting events need a whole `count` ≥ 0 (`invalid_value`); `frame` is a
//! picture digest (text or number) kept as a 64-bit hash.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::RejectReason;
use super::decode::{Decoded, Decoder, Num, Ts, classify, quote_non_finite, resolve_ts};
use crate::config::Registry;
use crate::model::{
    CIRCUITS, Circuit, Millis, MineIdx, PowerSample, SealEvent, SealEventKind, stable_hash,
};

#[derive(Deserialize)]
struct RawPowerMessage<'a> {
    #[serde(default, borrow)]
    ts: Option<Ts<'a>>,
    #[serde(default, borrow)]
    samples: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    total_kw: Option<Num>,
    #[serde(default, borrow)]
    circuits: Option<BTreeMap<Cow<'a, str>, Num>>,
}

#[derive(Deserialize)]
struct RawPowerSample<'a> {
    #[serde(default, borrow)]
    ts: Option<Ts<'a>>,
    #[serde(default)]
    total_kw: Option<Num>,
    #[serde(default, borrow)]
    circuits: Option<BTreeMap<Cow<'a, str>, Num>>,
}

#[derive(Deserialize)]
struct RawSealMessage<'a> {
    #[serde(default, borrow)]
    ts: Option<Ts<'a>>,
    #[serde(default, borrow)]
    events: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct RawSealEvent<'a> {
    #[serde(default, borrow)]
    ts: Option<Ts<'a>>,
    #[serde(default, borrow)]
    camera: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    fault: Option<Cow<'a, str>>,
    #[serde(default)]
    count: Option<Num>,
    #[serde(default, borrow)]
    frame: Option<Frame<'a>>,
}

/// A picture digest as sent: text or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Frame<'a> {
    Number(u64),
    Text(#[serde(borrow)] Cow<'a, str>),
}

type Refusal = (RejectReason, String);

fn kw_of(num: &Num, what: &str) -> Result<f64, Refusal> {
    match num {
        Num::Finite(v) => Ok(*v),
        Num::NonFinite => Err((
            RejectReason::NonFiniteValue,
            format!("{what}: NaN or infinite"),
        )),
        Num::Text => Err((
            RejectReason::WrongType,
            format!("{what}: text; send a number of kW"),
        )),
    }
}

fn parse_failure(e: &serde_json::Error) -> RejectReason {
    if e.is_data() {
        classify(e)
    } else {
        RejectReason::MalformedJson
    }
}

impl Decoder {
    /// The batch-size checks shared by both message kinds.
    fn batch_size<T>(&self, n: usize, what: &str, payload: &[u8], out: &mut Decoded<T>) -> bool {
        if n == 0 {
            out.reject(
                RejectReason::EmptyBatch,
                format!("\"{what}\" is empty"),
                payload,
            );
            return false;
        }
        if n > self.max_batch {
            out.reject(
                RejectReason::BatchTooLarge,
                format!(
                    "{n} {what}, the limit is {} (ingest.max_batch_readings); split the batch",
                    self.max_batch
                ),
                payload,
            );
            return false;
        }
        true
    }

    /// Decodes one power message of mine `mine_code` that arrived at
    /// processing time `arrival`.
    pub fn decode_power(
        &self,
        mine_code: &str,
        payload: &[u8],
        arrival: Millis,
    ) -> Decoded<PowerSample> {
        let mut out = Decoded::default();
        let Some((_, mine)) = self.begin(mine_code, payload, &mut out) else {
            return out;
        };
        let text = quote_non_finite(payload);
        let msg: RawPowerMessage = match serde_json::from_slice(&text) {
            Ok(m) => m,
            Err(e) => {
                out.reject(
                    parse_failure(&e),
                    format!("not a power message: {e}"),
                    payload,
                );
                return out;
            }
        };
        let batch_ts = msg.ts.as_ref().map(resolve_ts);
        match msg.samples {
            Some(samples) => {
                if !self.batch_size(samples.len(), "samples", payload, &mut out) {
                    return out;
                }
                for raw in samples {
                    let sample = serde_json::from_str::<RawPowerSample>(raw.get())
                        .map_err(|e| (classify(&e), format!("sample: {e}")))
                        .and_then(|s| self.power_sample(mine, s, batch_ts.as_ref(), arrival));
                    match sample {
                        Ok(s) => out.records.push(s),
                        Err((reason, detail)) => out.reject(reason, detail, raw.get().as_bytes()),
                    }
                }
            }
            None => {
                let one = RawPowerSample {
                    ts: None,
                    total_kw: msg.total_kw,
                    circuits: msg.circuits,
                };
                match self.power_sample(mine, one, batch_ts.as_ref(), arrival) {
                    Ok(s) => out.records.push(s),
                    Err((reason, detail)) => out.reject(reason, detail, payload),
                }
            }
        }
        out
    }

    fn power_sample(
        &self,
        mine: MineIdx,
        raw: RawPowerSample<'_>,
        batch_ts: Option<&Result<Millis, String>>,
        arrival: Millis,
    ) -> Result<PowerSample, Refusal> {
        let mut kw = [f32::NAN; CIRCUITS];
        let mut any = false;
        if let Some(total) = &raw.total_kw {
            let v = kw_of(total, "total_kw")?;
            if v < 0.0 {
                return Err((
                    RejectReason::InvalidValue,
                    format!("total_kw {v} is negative; send the load drawn"),
                ));
            }
            kw[Circuit::Total.index()] = v as f32;
            any = true;
        }
        for (name, value) in raw.circuits.iter().flatten() {
            let circuit = Circuit::parse(name)
                .filter(|c| *c != Circuit::Total)
                .ok_or_else(|| {
                    (
                        RejectReason::UnknownCircuit,
                        format!(
                            "circuit {name:?} is not one of hoist, transport, face, ventilation, \
                             drainage, compressor, other"
                        ),
                    )
                })?;
            kw[circuit.index()] = kw_of(value, &format!("circuits.{name}"))? as f32;
            any = true;
        }
        if !any {
            return Err((
                RejectReason::MissingField,
                "a power sample needs \"total_kw\" or \"circuits\"".into(),
            ));
        }
        let ts = match (&raw.ts, batch_ts) {
            (Some(ts), _) => Some(resolve_ts(ts)),
            (None, Some(batch)) => Some(batch.clone()),
            (None, None) => None,
        };
        let ts = self.event_time(ts, arrival, &"power sample")?;
        Ok(PowerSample { mine, ts, kw })
    }

    /// Decodes one seal message of mine `mine_code` that arrived at
    /// processing time `arrival`.
    pub fn decode_seal(
        &self,
        mine_code: &str,
        payload: &[u8],
        arrival: Millis,
    ) -> Decoded<SealEvent> {
        let mut out = Decoded::default();
        let Some((registry, mine)) = self.begin(mine_code, payload, &mut out) else {
            return out;
        };
        let text = quote_non_finite(payload);
        let msg: RawSealMessage = match serde_json::from_slice(&text) {
            Ok(m) => m,
            Err(e) => {
                out.reject(
                    parse_failure(&e),
                    format!("not a seal message: {e}"),
                    payload,
                );
                return out;
            }
        };
        let Some(events) = msg.events else {
            out.reject(RejectReason::MissingField, "no \"events\" array", payload);
            return out;
        };
        if !self.batch_size(events.len(), "events", payload, &mut out) {
            return out;
        }
        let batch_ts = msg.ts.as_ref().map(resolve_ts);
        for raw in events {
            let event = serde_json::from_str::<RawSealEvent>(raw.get())
                .map_err(|e| (classify(&e), format!("event: {e}")))
                .and_then(|e| self.seal_event(&registry, mine, e, batch_ts.as_ref(), arrival));
            match event {
                Ok(e) => out.records.push(e),
                Err((reason, detail)) => out.reject(reason, detail, raw.get().as_bytes()),
            }
        }
        out
    }

    fn seal_event(
        &self,
        registry: &Registry,
        mine: MineIdx,
        raw: RawSealEvent<'_>,
        batch_ts: Option<&Result<Millis, String>>,
        arrival: Millis,
    ) -> Result<SealEvent, Refusal> {
        let meta = &registry.mines[mine as usize];
        let id = raw.camera.ok_or((
            RejectReason::MissingField,
            "seal event has no \"camera\"".into(),
        ))?;
        let camera = meta.seal.camera(&id).ok_or_else(|| {
            let known: Vec<&str> = meta.seal.cameras.iter().map(|c| c.id.as_str()).collect();
            (
                RejectReason::UnknownCamera,
                if known.is_empty() {
                    format!(
                        "camera {id:?}: mine {} has no seal cameras configured ([mines.seal] cameras)",
                        meta.code
                    )
                } else {
                    format!("camera {id:?} is not one of {}", known.join(", "))
                },
            )
        })?;
        let name = raw.event.ok_or((
            RejectReason::MissingField,
            format!("camera {id:?}: seal event has no \"event\""),
        ))?;
        let kind = SealEventKind::parse(&name, raw.fault.as_deref()).map_err(|e| {
            let reason = if name == "fault" && raw.fault.is_none() {
                RejectReason::MissingField
            } else {
                RejectReason::UnknownEvent
            };
            (reason, format!("camera {id:?}: {e}"))
        })?;
        let count = if kind.has_count() {
            let n = match raw.count {
                Some(Num::Finite(v)) => v,
                Some(Num::NonFinite) => {
                    return Err((
                        RejectReason::NonFiniteValue,
                        format!("camera {id:?}: {name} count is NaN or infinite"),
                    ));
                }
                Some(Num::Text) => {
                    return Err((
                        RejectReason::WrongType,
                        format!("camera {id:?}: {name} count is text; send a number"),
                    ));
                }
                None => {
                    return Err((
                        RejectReason::MissingField,
                        format!("camera {id:?}: {name} needs a \"count\""),
                    ));
                }
            };
            if n < 0.0 || n.fract() != 0.0 || n > f64::from(u32::MAX) {
                return Err((
                    RejectReason::InvalidValue,
                    format!("camera {id:?}: {name} count {n} is not a whole number ≥ 0"),
                ));
            }
            n as u32
        } else {
            0
        };
        let frame = match &raw.frame {
            None => 0,
            Some(Frame::Number(n)) => stable_hash(&[&n.to_le_bytes()]).max(1),
            Some(Frame::Text(t)) => stable_hash(&[t.as_bytes()]).max(1),
        };
        let ts = match (&raw.ts, batch_ts) {
            (Some(ts), _) => Some(resolve_ts(ts)),
            (None, Some(batch)) => Some(batch.clone()),
            (None, None) => None,
        };
        let ts = self.event_time(ts, arrival, &format!("camera {id:?}"))?;
        Ok(SealEvent {
            mine,
            camera,
            ts,
            kind,
            count,
            frame,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IngestConfig, parse};
    use crate::model::CameraFault;
    use proptest::prelude::*;
    use std::sync::Arc;

    const NOW: Millis = 1_795_420_800_000;

    fn decoder() -> Decoder {
        let (config, _) = parse(
            r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
status = "stopped"
points = [ { code = "a1", sensor = "0001", location = "face_t1" } ]
seal = { cameras = [ { id = "main-shaft", place = "main_shaft" }, { id = "desk", place = "dispatch_room" } ] }
[[mines]]
code = "140121000002"
name = "b"
province = "140000"
city = "140100"
county = "140121"
points = [ { code = "b1", sensor = "0001", location = "face_t1" } ]
"#,
        )
        .expect("valid");
        let registry = Arc::new(Registry::build(&config, 2));
        Decoder::new(registry, &IngestConfig::default(), 1 << 20)
    }

    fn reasons<T>(d: &Decoded<T>) -> Vec<&'static str> {
        d.rejects.iter().map(|r| r.reason.key()).collect()
    }

    #[test]
    fn a_single_power_sample_and_a_batch_decode() {
        let dec = decoder();
        let d = dec.decode_power(
            "140121000001",
            br#"{"ts": 1795420790000, "total_kw": 880.5, "circuits": {"hoist": 12, "drainage": 300}}"#,
            NOW,
        );
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        let s = d.records[0];
        assert_eq!(s.ts, 1_795_420_790_000);
        assert_eq!(s.get(Circuit::Total), Some(880.5));
        assert_eq!(s.get(Circuit::Hoist), Some(12.0));
        assert_eq!(s.get(Circuit::Face), None);
        let d = dec.decode_power(
            "140121000001",
            br#"{"ts": "2026-11-23T16:00:00+08:00", "samples": [
                {"total_kw": 900},
                {"ts": 1795420795000, "circuits": {"hoist": -20.5}},
                {"total_kw": -1},
                {"circuits": {"shearer": 5}},
                {"total_kw": NaN},
                {"ts": 1795999999000, "total_kw": 1},
                {}
            ]}"#,
            NOW,
        );
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.records[0].ts, 1_795_420_800_000);
        assert_eq!(d.records[1].get(Circuit::Hoist), Some(-20.5));
        assert_eq!(
            reasons(&d),
            [
                "invalid_value",
                "unknown_circuit",
                "non_finite_value",
                "future_timestamp",
                "missing_field"
            ]
        );
    }

    #[test]
    fn bad_power_messages_are_refused_whole() {
        let dec = decoder();
        for (mine, payload, reason) in [
            ("140121000009", &br#"{"total_kw": 1}"#[..], "unknown_mine"),
            ("140121000001", b"not json", "malformed_json"),
            ("140121000001", br#"{"samples": []}"#, "empty_batch"),
            ("140121000001", br#"{"samples": 3}"#, "wrong_type"),
            ("140121000001", br#"{"total_kw": 5}"#, "missing_field"),
        ] {
            let d = dec.decode_power(mine, payload, NOW);
            assert!(d.records.is_empty());
            assert_eq!(
                reasons(&d),
                [reason],
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn seal_events_decode_and_bad_ones_are_refused_one_by_one() {
        let dec = decoder();
        let d = dec.decode_seal(
            "140121000001",
            br#"{"ts": 1795420790000, "events": [
                {"camera": "main-shaft", "event": "people_in", "count": 3},
                {"camera": "main-shaft", "event": "fault", "fault": "frozen", "ts": 1795420791000},
                {"camera": "desk", "event": "heartbeat", "frame": "9f3a07c2"},
                {"camera": "desk", "event": "heartbeat", "frame": 42},
                {"camera": "roof", "event": "heartbeat"},
                {"camera": "desk", "event": "dance"},
                {"camera": "desk", "event": "fault", "fault": "melted"},
                {"camera": "desk", "event": "fault"},
                {"camera": "main-shaft", "event": "people_out", "count": -2},
                {"camera": "main-shaft", "event": "people_out", "count": 1.5},
                {"camera": "main-shaft", "event": "people_out"},
                {"event": "heartbeat"},
                {"camera": "desk", "event": "heartbeat", "ts": 1},
                7
            ]}"#,
            NOW,
        );
        assert_eq!(d.records.len(), 4, "{:?}", d.rejects);
        assert_eq!(d.records[0].kind, SealEventKind::PeopleIn);
        assert_eq!(d.records[0].count, 3);
        assert_eq!(d.records[0].camera, 0);
        assert_eq!(d.records[1].kind, SealEventKind::Fault(CameraFault::Frozen));
        assert_eq!(d.records[1].ts, 1_795_420_791_000);
        assert_eq!(d.records[2].camera, 1);
        assert_ne!(d.records[2].frame, 0);
        assert_ne!(d.records[3].frame, d.records[2].frame);
        assert_eq!(
            reasons(&d),
            [
                "unknown_camera",
                "unknown_event",
                "unknown_event",
                "missing_field",
                "invalid_value",
                "invalid_value",
                "missing_field",
                "missing_field",
                "bad_timestamp",
                "wrong_type"
            ]
        );
        // A mine without cameras says so.
        let d = dec.decode_seal(
            "140121000002",
            br#"{"ts": 1795420790000, "events": [{"camera": "x", "event": "heartbeat"}]}"#,
            NOW,
        );
        assert!(d.rejects[0].detail.contains("no seal cameras configured"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let dec = decoder();
            let p = dec.decode_power("140121000001", &bytes, NOW);
            prop_assert!(p.records.len() + p.rejects.len() >= 1);
            let s = dec.decode_seal("140121000001", &bytes, NOW);
            prop_assert!(s.records.len() + s.rejects.len() >= 1);
        }

        #[test]
        fn well_formed_power_samples_round_trip(
            kws in proptest::collection::vec((0.0f64..5000.0, -100.0f64..2000.0), 1..20)
        ) {
            let dec = decoder();
            let samples: Vec<String> = kws
                .iter()
                .enumerate()
                .map(|(i, (t, h))| format!(
                    r#"{{"ts": {}, "total_kw": {t}, "circuits": {{"hoist": {h}}}}}"#,
                    NOW - 1000 * i as i64
                ))
                .collect();
            let payload = format!(r#"{{"samples": [{}]}}"#, samples.join(","));
            let d = dec.decode_power("140121000001", payload.as_bytes(), NOW);
            prop_assert!(d.rejects.is_empty());
            prop_assert_eq!(d.records.len(), kws.len());
            for (s, (t, h)) in d.records.iter().zip(&kws) {
                prop_assert_eq!(s.kw[0], *t as f32);
                prop_assert_eq!(s.kw[1], *h as f32);
            }
        }

        #[test]
        fn arbitrary_event_json_never_panics(s in "\\PC{0,64}") {
            let dec = decoder();
            let payload = format!(r#"{{"ts": {NOW}, "events": [{s}]}}"#);
            let _ = dec.decode_seal("140121000001", payload.as_bytes(), NOW);
        }
    }
}
