//! The pure half of the Modbus source: how a device's register map becomes
//! a short list of read requests, and how the answers (or the lack of them)
//! become readings. No I/O here, so every rule is tested with tables.
//!
//! - [`plan`] merges the registers and bits a device's points need into as
//!   few requests as the protocol allows: only *contiguous* addresses of one
//!   function are merged (reading across a gap could touch an address the
//!   device does not have and turn a good range into an exception), a value
//!   is never split across two requests, and no request asks for more than
//!   125 registers or 2000 bits.
//! - [`decode`] turns registers into a number for every type × byte/word
//!   order; a non-finite `f32` from the wire is a fault, never a value.
//! - [`Plan::readings`] applies the fault semantics agreed with the core: an
//!   exception for a range → its points read `NaN` with status
//!   [`status::SENSOR_FAULT`] (128); no answer (timeout or transport error
//!   after retries) → `NaN` with status [`status::SUBSTATION_FAULT`] (16),
//!   which the offline detector does not take as a sign of life.

use crate::config::modbus::{Function, ValueType, WordOrder};
use crate::model::{Millis, PointIdx, Reading, status};

/// One point's place in a device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    /// The point it feeds.
    pub point: PointIdx,
    /// Read function of the value.
    pub function: Function,
    /// First address of the value.
    pub address: u16,
    /// Encoding of the value.
    pub value_type: ValueType,
    /// Byte/word order of the value.
    pub order: WordOrder,
    /// value = raw × scale + offset.
    pub scale: f64,
    /// value = raw × scale + offset.
    pub offset: f64,
    /// Function and address of its status register, if any.
    pub status: Option<(Function, u16)>,
}

/// One read request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// Read function.
    pub function: Function,
    /// First address.
    pub start: u16,
    /// Number of registers or bits.
    pub count: u16,
}

/// Where a value or status sits in the answers of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of the request.
    pub request: usize,
    /// Offset of the first register or bit within that request's answer.
    pub offset: usize,
}

/// A field with the places of its data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedField {
    /// The field.
    pub field: Field,
    /// Its value.
    pub value: Slot,
    /// Its status register.
    pub status: Option<Slot>,
}

/// The requests one poll of a device sends, and how to read the answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Requests, in address order per function.
    pub requests: Vec<ReadRequest>,
    /// The fields, in the order given to [`plan`].
    pub fields: Vec<PlannedField>,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Registers (holding or input), as many as requested.
    Words(Vec<u16>),
    /// Bits (coils or discrete inputs), as many as requested.
    Bits(Vec<bool>),
    /// The device answered with a Modbus exception (its code).
    Exception(u8),
    /// No usable answer after every retry (timeout, transport or protocol
    /// error), or not sent because the link or device is backing off.
    Unreachable,
}

/// Why a reading of a polled point carries no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An exception answered the value's or status's range.
    Exception,
    /// The device could not be reached.
    Unreachable,
    /// The value decoded to NaN or ±∞.
    NonFinite,
    /// The status register holds bits outside the national status mask.
    BadStatus,
}

impl Fault {
    /// Every fault, for pre-registering metric labels.
    pub const ALL: [Fault; 4] = [
        Fault::Exception,
        Fault::Unreachable,
        Fault::NonFinite,
        Fault::BadStatus,
    ];

    /// The label used in metrics.
    pub fn key(self) -> &'static str {
        match self {
            Fault::Exception => "exception",
            Fault::Unreachable => "unreachable",
            Fault::NonFinite => "non_finite",
            Fault::BadStatus => "bad_status",
        }
    }
}

/// Status bits a national status register may carry (1 … 128).
const STATUS_MASK: u16 = 0x00FF;

/// Plans the requests for `fields` (see the module doc for the rules).
pub fn plan(fields: &[Field]) -> Plan {
    // Spans (function, start, end exclusive) of every value and status.
    let mut spans: Vec<(Function, u32, u32)> = Vec::with_capacity(fields.len() * 2);
    for f in fields {
        let start = u32::from(f.address);
        spans.push((f.function, start, start + u32::from(f.value_type.width())));
        if let Some((sf, sa)) = f.status {
            spans.push((sf, u32::from(sa), u32::from(sa) + 1));
        }
    }
    spans.sort_unstable();
    spans.dedup();
    let mut requests: Vec<(Function, u32, u32)> = Vec::new();
    for (function, start, end) in spans {
        let max = u32::from(function.max_per_request());
        match requests.last_mut() {
            Some((f, rs, re)) if *f == function && start <= *re && end.max(*re) - *rs <= max => {
                *re = end.max(*re);
            }
            _ => requests.push((function, start, end)),
        }
    }
    let requests: Vec<ReadRequest> = requests
        .into_iter()
        .map(|(function, start, end)| ReadRequest {
            function,
            start: start as u16,
            count: (end - start) as u16,
        })
        .collect();
    let find = |function: Function, address: u16, width: u16| -> Slot {
        let (a, w) = (u32::from(address), u32::from(width));
        let request = requests
            .iter()
            .position(|r| {
                r.function == function
                    && u32::from(r.start) <= a
                    && a + w <= u32::from(r.start) + u32::from(r.count)
            })
            .expect("every span lies in the request built from it");
        Slot {
            request,
            offset: (address - requests[request].start) as usize,
        }
    };
    let fields = fields
        .iter()
        .map(|&field| PlannedField {
            field,
            value: find(field.function, field.address, field.value_type.width()),
            status: field.status.map(|(f, a)| find(f, a, 1)),
        })
        .collect();
    Plan { requests, fields }
}

/// Decodes a register value: `words` holds the value's registers as read
/// (one for 16-bit types, two for 32-bit ones). `None` when the value is
/// not a finite number (an `f32` NaN or infinity from the wire).
pub fn decode(value_type: ValueType, order: WordOrder, words: &[u16]) -> Option<f64> {
    let fix = |w: u16| {
        if order.swaps_bytes() {
            w.swap_bytes()
        } else {
            w
        }
    };
    let v = match value_type {
        ValueType::Bool => f64::from(*words.first()? != 0),
        ValueType::U16 => f64::from(fix(*words.first()?)),
        ValueType::I16 => f64::from(fix(*words.first()?) as i16),
        ValueType::U32 | ValueType::I32 | ValueType::F32 => {
            let (first, second) = (*words.first()?, *words.get(1)?);
            let (hi, lo) = if order.swaps_words() {
                (second, first)
            } else {
                (first, second)
            };
            let bits = (u32::from(fix(hi)) << 16) | u32::from(fix(lo));
            match value_type {
                ValueType::U32 => f64::from(bits),
                ValueType::I32 => f64::from(bits as i32),
                _ => shortest_f64(f32::from_bits(bits)),
            }
        }
    };
    v.is_finite().then_some(v)
}

/// The `f64` with the shortest decimal form that reads back as the same
/// `f32`: a sensor sending 1.76 as `f32` means 1.76, not
/// 1.7599999904632568. Non-finite input gives NaN.
fn shortest_f64(f: f32) -> f64 {
    use std::io::Write as _;
    if !f.is_finite() {
        return f64::NAN;
    }
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if write!(cursor, "{f}").is_err() {
        return f64::from(f);
    }
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::from(f))
}

/// Encodes a value into registers: the inverse of [`decode`], for the
/// simulator's server and for tests. Integers are rounded and saturated to
/// the type's range.
pub fn encode(value_type: ValueType, order: WordOrder, value: f64) -> Vec<u16> {
    let fix = |w: u16| {
        if order.swaps_bytes() {
            w.swap_bytes()
        } else {
            w
        }
    };
    let bits32 = |bits: u32| {
        let (hi, lo) = (fix((bits >> 16) as u16), fix(bits as u16));
        if order.swaps_words() {
            vec![lo, hi]
        } else {
            vec![hi, lo]
        }
    };
    match value_type {
        ValueType::Bool => vec![u16::from(value != 0.0)],
        ValueType::U16 => vec![fix(value.round().clamp(0.0, 65_535.0) as u16)],
        ValueType::I16 => vec![fix(value.round().clamp(-32_768.0, 32_767.0) as i16 as u16)],
        ValueType::U32 => bits32(value.round().clamp(0.0, u32::MAX as f64) as u32),
        ValueType::I32 => {
            bits32(value.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32 as u32)
        }
        ValueType::F32 => bits32((value as f32).to_bits()),
    }
}

impl Plan {
    /// Number of registers and bits one poll reads.
    pub fn addresses(&self) -> usize {
        self.requests.iter().map(|r| usize::from(r.count)).sum()
    }

    /// Turns the answers to [`Plan::requests`] (same order, same length)
    /// into one reading per field at event time `ts`, appended to `out`.
    /// `on_fault` hears every reading that carries no value, with why.
    pub fn readings(
        &self,
        answers: &[Answer],
        ts: Millis,
        out: &mut Vec<Reading>,
        mut on_fault: impl FnMut(PointIdx, Fault),
    ) {
        for pf in &self.fields {
            let (value, st) = match read_field(pf, answers) {
                Ok(v) => v,
                Err(fault) => {
                    on_fault(pf.field.point, fault);
                    let st = match fault {
                        Fault::Unreachable => status::SUBSTATION_FAULT,
                        _ => status::SENSOR_FAULT,
                    };
                    (f64::NAN, st)
                }
            };
            out.push(Reading {
                point: pf.field.point,
                ts,
                value,
                status: st,
            });
        }
    }
}

/// The value and status of one field, or why there is none.
fn read_field(pf: &PlannedField, answers: &[Answer]) -> Result<(f64, u16), Fault> {
    let answer = |slot: Slot| answers.get(slot.request).unwrap_or(&Answer::Unreachable);
    let status_answer = pf.status.map(|s| (s, answer(s)));
    // No answer at all outranks an exception: the point is not reachable.
    let value_answer = answer(pf.value);
    for a in std::iter::once(value_answer).chain(status_answer.map(|(_, a)| a)) {
        if *a == Answer::Unreachable {
            return Err(Fault::Unreachable);
        }
    }
    for a in std::iter::once(value_answer).chain(status_answer.map(|(_, a)| a)) {
        if matches!(a, Answer::Exception(_)) {
            return Err(Fault::Exception);
        }
    }
    let st = match status_answer {
        None => status::NORMAL,
        Some((slot, Answer::Words(w))) => {
            let raw = *w.get(slot.offset).ok_or(Fault::Unreachable)?;
            if raw & !STATUS_MASK != 0 {
                return Err(Fault::BadStatus);
            }
            raw
        }
        Some(_) => return Err(Fault::Unreachable),
    };
    let f = &pf.field;
    let width = usize::from(f.value_type.width());
    let raw = match value_answer {
        Answer::Words(w) => {
            let words = w
                .get(pf.value.offset..pf.value.offset + width)
                .ok_or(Fault::Unreachable)?;
            decode(f.value_type, f.order, words)
        }
        Answer::Bits(b) => {
            let bit = *b.get(pf.value.offset).ok_or(Fault::Unreachable)?;
            Some(f64::from(bit))
        }
        _ => return Err(Fault::Unreachable),
    };
    let value = raw.map(|r| r * f.scale + f.offset);
    match value {
        // The device says the value is not a measurement: keep its status,
        // drop the number.
        _ if st & status::NOT_A_VALUE != 0 => Ok((f64::NAN, st)),
        Some(v) if v.is_finite() => Ok((v, st)),
        _ => Err(Fault::NonFinite),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ORDERS: [WordOrder; 4] = [
        WordOrder::Abcd,
        WordOrder::Cdab,
        WordOrder::Badc,
        WordOrder::Dcba,
    ];

    /// The bytes A B C D of a 32-bit value laid out as each order puts
    /// them on the wire, written by hand.
    fn wire32(bits: u32, order: WordOrder) -> [u16; 2] {
        let [a, b, c, d] = bits.to_be_bytes();
        let w = |x: u8, y: u8| u16::from_be_bytes([x, y]);
        match order {
            WordOrder::Abcd => [w(a, b), w(c, d)],
            WordOrder::Cdab => [w(c, d), w(a, b)],
            WordOrder::Badc => [w(b, a), w(d, c)],
            WordOrder::Dcba => [w(d, c), w(b, a)],
        }
    }

    #[test]
    fn every_32_bit_type_decodes_in_every_order() {
        for order in ORDERS {
            let f = wire32(1.25f32.to_bits(), order);
            assert_eq!(decode(ValueType::F32, order, &f), Some(1.25), "{order:?}");
            let f = wire32((-3.5f32).to_bits(), order);
            assert_eq!(decode(ValueType::F32, order, &f), Some(-3.5), "{order:?}");
            let u = wire32(3_000_000_000, order);
            assert_eq!(
                decode(ValueType::U32, order, &u),
                Some(3_000_000_000.0),
                "{order:?}"
            );
            let i = wire32((-100_000i32) as u32, order);
            assert_eq!(
                decode(ValueType::I32, order, &i),
                Some(-100_000.0),
                "{order:?}"
            );
            let i = wire32((-1i32) as u32, order);
            assert_eq!(decode(ValueType::I32, order, &i), Some(-1.0), "{order:?}");
        }
        // The classic example: 0x41200000 = 10.0 as ABCD, and word-swapped.
        assert_eq!(
            decode(ValueType::F32, WordOrder::Abcd, &[0x4120, 0x0000]),
            Some(10.0)
        );
        assert_eq!(
            decode(ValueType::F32, WordOrder::Cdab, &[0x0000, 0x4120]),
            Some(10.0)
        );
        assert_eq!(
            decode(ValueType::U32, WordOrder::Badc, &[0x3412, 0x7856]),
            Some(f64::from(0x1234_5678u32))
        );
        assert_eq!(
            decode(ValueType::U32, WordOrder::Dcba, &[0x7856, 0x3412]),
            Some(f64::from(0x1234_5678u32))
        );
    }

    #[test]
    fn every_16_bit_type_decodes_in_every_order() {
        for order in ORDERS {
            let swap = order.swaps_bytes();
            let w = |x: u16| if swap { x.swap_bytes() } else { x };
            assert_eq!(decode(ValueType::U16, order, &[w(54_321)]), Some(54_321.0));
            assert_eq!(
                decode(ValueType::I16, order, &[w((-1234i16) as u16)]),
                Some(-1234.0)
            );
            assert_eq!(decode(ValueType::I16, order, &[w(0x8000)]), Some(-32_768.0));
            assert_eq!(decode(ValueType::I16, order, &[w(0x7FFF)]), Some(32_767.0));
        }
        assert_eq!(
            decode(ValueType::U16, WordOrder::Badc, &[0x3412]),
            Some(f64::from(0x1234u16))
        );
    }

    #[test]
    fn non_finite_floats_from_the_wire_are_refused() {
        for order in ORDERS {
            for bits in [
                f32::NAN.to_bits(),
                0x7FC0_0001, // another NaN
                0xFFFF_FFFF, // negative NaN
                f32::INFINITY.to_bits(),
                f32::NEG_INFINITY.to_bits(),
            ] {
                assert_eq!(
                    decode(ValueType::F32, order, &wire32(bits, order)),
                    None,
                    "{order:?} {bits:#x}"
                );
            }
        }
        // An f32 reads as the decimal the device meant.
        let w = encode(ValueType::F32, WordOrder::Abcd, 1.76);
        assert_eq!(decode(ValueType::F32, WordOrder::Abcd, &w), Some(1.76));
        let w = encode(ValueType::F32, WordOrder::Abcd, f64::from(f32::MAX));
        assert_eq!(
            decode(ValueType::F32, WordOrder::Abcd, &w).map(|v| v as f32),
            Some(f32::MAX)
        );
        // Too few registers is no value either.
        assert_eq!(decode(ValueType::F32, WordOrder::Abcd, &[0x4120]), None);
    }

    proptest! {
        #[test]
        fn encode_is_the_inverse_of_decode(bits in any::<u32>(), o in 0usize..4) {
            let order = ORDERS[o];
            let words = wire32(bits, order);
            prop_assert_eq!(encode(ValueType::U32, order, f64::from(bits)), words.to_vec());
            let i = bits as i32;
            prop_assert_eq!(encode(ValueType::I32, order, f64::from(i)), words.to_vec());
            let f = f32::from_bits(bits);
            if f.is_finite() {
                let back = decode(ValueType::F32, order, &encode(ValueType::F32, order, f64::from(f)));
                prop_assert_eq!(back.map(|v| v as f32), Some(f));
            }
            let h = bits as u16;
            prop_assert_eq!(decode(ValueType::U16, order, &encode(ValueType::U16, order, f64::from(h))), Some(f64::from(h)));
            prop_assert_eq!(decode(ValueType::I16, order, &encode(ValueType::I16, order, f64::from(h as i16))), Some(f64::from(h as i16)));
        }
    }

    fn field(point: PointIdx, function: Function, address: u16, ty: ValueType) -> Field {
        Field {
            point,
            function,
            address,
            value_type: ty,
            order: WordOrder::Abcd,
            scale: 1.0,
            offset: 0.0,
            status: None,
        }
    }

    fn req(function: Function, start: u16, count: u16) -> ReadRequest {
        ReadRequest {
            function,
            start,
            count,
        }
    }

    #[test]
    fn contiguous_registers_merge_and_gaps_split() {
        use Function::*;
        let fields = [
            field(0, Holding, 0, ValueType::F32),
            field(1, Holding, 2, ValueType::U16),
            field(2, Holding, 3, ValueType::I32),
            // gap at 5
            field(3, Holding, 6, ValueType::U16),
            // another function, same addresses: never merged with holding
            field(4, Input, 0, ValueType::U16),
            field(5, Input, 1, ValueType::U16),
            field(6, Coil, 0, ValueType::Bool),
            field(7, Coil, 1, ValueType::Bool),
            field(8, Discrete, 7, ValueType::Bool),
        ];
        let p = plan(&fields);
        assert_eq!(
            p.requests,
            [
                req(Coil, 0, 2),
                req(Discrete, 7, 1),
                req(Holding, 0, 5),
                req(Holding, 6, 1),
                req(Input, 0, 2),
            ]
        );
        assert_eq!(
            p.fields[2].value,
            Slot {
                request: 2,
                offset: 3
            }
        );
        assert_eq!(
            p.fields[3].value,
            Slot {
                request: 3,
                offset: 0
            }
        );
        assert_eq!(
            p.fields[5].value,
            Slot {
                request: 4,
                offset: 1
            }
        );
        assert_eq!(
            p.fields[7].value,
            Slot {
                request: 0,
                offset: 1
            }
        );
        assert_eq!(p.addresses(), 11);
    }

    #[test]
    fn requests_stay_within_125_registers_and_never_split_a_value() {
        // 100 f32 values back to back: 200 registers.
        let fields: Vec<Field> = (0..100)
            .map(|i| field(i, Function::Holding, 2 * i as u16, ValueType::F32))
            .collect();
        let p = plan(&fields);
        // 62 values (124 registers) fit in the first; the 63rd would make 126.
        assert_eq!(
            p.requests,
            [
                req(Function::Holding, 0, 124),
                req(Function::Holding, 124, 76)
            ]
        );
        assert_eq!(
            p.fields[62].value,
            Slot {
                request: 1,
                offset: 0
            }
        );
        // Exactly 125 single registers fit in one request.
        let fields: Vec<Field> = (0..126)
            .map(|i| field(i, Function::Input, 1000 + i as u16, ValueType::U16))
            .collect();
        let p = plan(&fields);
        assert_eq!(
            p.requests,
            [
                req(Function::Input, 1000, 125),
                req(Function::Input, 1125, 1)
            ]
        );
        // Bits go up to 2000.
        let fields: Vec<Field> = (0..2001)
            .map(|i| field(i, Function::Coil, i as u16, ValueType::Bool))
            .collect();
        let p = plan(&fields);
        assert_eq!(
            p.requests,
            [req(Function::Coil, 0, 2000), req(Function::Coil, 2000, 1)]
        );
        // The top of the address space.
        let p = plan(&[field(0, Function::Holding, 65_534, ValueType::U32)]);
        assert_eq!(p.requests, [req(Function::Holding, 65_534, 2)]);
    }

    #[test]
    fn status_registers_are_planned_and_may_be_shared() {
        let mut a = field(0, Function::Holding, 0, ValueType::F32);
        a.status = Some((Function::Input, 100));
        let mut b = field(1, Function::Holding, 2, ValueType::F32);
        b.status = Some((Function::Input, 100));
        let mut c = field(2, Function::Holding, 4, ValueType::U16);
        c.status = Some((Function::Input, 101));
        let p = plan(&[a, b, c]);
        assert_eq!(
            p.requests,
            [req(Function::Holding, 0, 5), req(Function::Input, 100, 2)]
        );
        assert_eq!(
            p.fields[1].status,
            Some(Slot {
                request: 1,
                offset: 0
            })
        );
        assert_eq!(
            p.fields[2].status,
            Some(Slot {
                request: 1,
                offset: 1
            })
        );
    }

    /// (value, status) per field, and the faults reported.
    type Outcome = (Vec<(f64, u16)>, Vec<(PointIdx, Fault)>);

    fn run(p: &Plan, answers: &[Answer]) -> Outcome {
        let mut out = Vec::new();
        let mut faults = Vec::new();
        p.readings(answers, 42, &mut out, |pt, f| faults.push((pt, f)));
        assert!(out.iter().all(|r| r.ts == 42));
        (out.iter().map(|r| (r.value, r.status)).collect(), faults)
    }

    #[test]
    fn answers_become_readings_and_faults_never_become_values() {
        let mut gas = field(0, Function::Holding, 0, ValueType::F32);
        gas.status = Some((Function::Holding, 10));
        let mut temp = field(1, Function::Holding, 2, ValueType::I16);
        temp.scale = 0.1;
        temp.offset = 1.0;
        let fan = field(2, Function::Coil, 0, ValueType::Bool);
        let p = plan(&[gas, temp, fan]);
        assert_eq!(
            p.requests,
            [
                req(Function::Coil, 0, 1),
                req(Function::Holding, 0, 3),
                req(Function::Holding, 10, 1)
            ]
        );
        let f = encode(ValueType::F32, WordOrder::Abcd, 0.42);
        let good = |st: u16| {
            vec![
                Answer::Bits(vec![true]),
                Answer::Words(vec![f[0], f[1], (-250i16) as u16]),
                Answer::Words(vec![st]),
            ]
        };
        let (r, faults) = run(&p, &good(status::CALIBRATION));
        assert_eq!(r[0], (0.42, status::CALIBRATION));
        assert!((r[1].0 - -24.0).abs() < 1e-9 && r[1].1 == 0, "{:?}", r[1]);
        assert_eq!(r[2], (1.0, 0));
        assert!(faults.is_empty());

        // The device flags a sensor fault itself: the status stays, the
        // number goes.
        let (r, _) = run(&p, &good(status::SENSOR_FAULT));
        assert!(r[0].0.is_nan() && r[0].1 == status::SENSOR_FAULT);

        // A status word with bits outside the national mask is garbage.
        let (r, faults) = run(&p, &good(0x0100));
        assert!(r[0].0.is_nan() && r[0].1 == status::SENSOR_FAULT);
        assert_eq!(faults, [(0, Fault::BadStatus)]);

        // An exception on the status range faults only the gas point.
        let mut a = good(0);
        a[2] = Answer::Exception(2);
        let (r, faults) = run(&p, &a);
        assert!(r[0].0.is_nan() && r[0].1 == status::SENSOR_FAULT);
        assert_eq!(r[2], (1.0, 0));
        assert_eq!(faults, [(0, Fault::Exception)]);

        // An exception on the value range faults both register points,
        // never with a value of 0.
        let mut a = good(0);
        a[1] = Answer::Exception(2);
        let (r, faults) = run(&p, &a);
        for x in &r[..2] {
            assert!(x.0.is_nan() && x.1 == status::SENSOR_FAULT, "{x:?}");
        }
        assert_eq!(faults, [(0, Fault::Exception), (1, Fault::Exception)]);

        // No answer: substation fault (no sign of life), also where the
        // status was unreachable but the value was read.
        let mut a = good(0);
        a[2] = Answer::Unreachable;
        let (r, _) = run(&p, &a);
        assert!(r[0].0.is_nan() && r[0].1 == status::SUBSTATION_FAULT);
        let (r, faults) = run(
            &p,
            &[
                Answer::Unreachable,
                Answer::Unreachable,
                Answer::Unreachable,
            ],
        );
        assert!(
            r.iter()
                .all(|x| x.0.is_nan() && x.1 == status::SUBSTATION_FAULT)
        );
        assert_eq!(faults.len(), 3);

        // A NaN on the wire is a sensor fault.
        let nan = encode(ValueType::F32, WordOrder::Abcd, f64::NAN);
        let mut a = good(0);
        a[1] = Answer::Words(vec![nan[0], nan[1], 0]);
        let (r, faults) = run(&p, &a);
        assert!(r[0].0.is_nan() && r[0].1 == status::SENSOR_FAULT);
        assert_eq!(faults, [(0, Fault::NonFinite)]);

        // A short answer is treated as no answer.
        let mut a = good(0);
        a[1] = Answer::Words(vec![f[0]]);
        let (r, _) = run(&p, &a);
        assert_eq!(r[0].1, status::SUBSTATION_FAULT);
        assert_eq!(r[1].1, status::SUBSTATION_FAULT);
    }
}
