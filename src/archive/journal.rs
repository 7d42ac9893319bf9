//! The archive's write-ahead journal: every batch of readings (and every
//! rejected record) is appended here and fsynced before its message is
//! acknowledged, so rows that wait in memory for their Parquet file survive
//! `kill -9` and a power cut.
//!
//! A journal is a folder of segments `{start:013}-{seq:06}.wal`, each
//! `MAGIC` followed by records framed as
//! `[len: u32 LE][crc32 of body: u32 LE][body: len bytes]`. A body is one of
//!
//! * `1` point: `idx u32`, then mine, point and sensor codes (`u16` length +
//!   UTF-8 each) — written once per segment before the first reading of
//!   that point, so a segment is readable without the config that wrote it;
//! * `2` readings: `arrival i64`, source (`u16` length + UTF-8), `n u32`,
//!   then `n` × (`idx u32`, `ts i64`, `value f64` bits, `status u16`);
//! * `3` rejected: `at i64`, then source, origin, reason, detail and record
//!   (`u32` length + UTF-8 each).
//! * `4` exception report (YCBJ): see [`super::exceptions`];
//! * `5` power sample, `6` seal event: see [`super::activity`].
//!
//! Kinds 4–6 were added after the first release; segments written before
//! them hold only kinds 1–3 and recover unchanged (the magic did not
//! change).
//!
//! Kinds 1 and 2 are the readings stream's own; every other kind is one row
//! of a stream that implements [`Journaled`] (its `KIND` byte, then its
//! `encode`d row), so a new stream adds its record here without touching
//! the framing. Kinds already used are never reused for something else:
//! old segments must recover.
//!
//! All integers little-endian. Many batches go into one write and one
//! `fdatasync` (group commit). Recovery reads records in order and stops at
//! the first that is incomplete, fails its checksum or does not parse: a
//! write torn by a crash can only be the tail, and a torn record was never
//! acknowledged (acknowledgement follows the fsync), so dropping it loses
//! nothing that was promised.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::config::Registry;
use crate::model::{Millis, Reading};

use super::activity::{Power, PowerRow, Seal, SealRow};
use super::exceptions::{ExceptionRow, Exceptions};
use super::schema::{Rejected, RejectedRow};
use super::stream::Journaled;

/// First bytes of every segment (format version in the last two).
pub const MAGIC: &[u8; 8] = b"MWJRNL01";

const KIND_POINT: u8 = 1;
const KIND_READINGS: u8 = 2;

/// Bytes of a record's frame header (length and checksum).
const FRAME: usize = 8;

/// A record longer than this is taken for corruption at recovery.
const MAX_RECORD: usize = 1 << 30;

/// File name extension of segments.
pub const SEGMENT_EXT: &str = "wal";

/// A segment's sequence number within one run of the daemon.
pub type SegmentId = u64;

/// The path of segment `seq` of the run that started at `start`.
pub fn segment_path(dir: &Path, start: Millis, seq: SegmentId) -> PathBuf {
    dir.join(format!("{start:013}-{seq:06}.{SEGMENT_EXT}"))
}

/// Every segment file in `dir`, oldest first (names sort by start time,
/// then sequence). A missing folder has none.
pub fn segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == SEGMENT_EXT) && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Fsyncs a folder so that creations, renames and deletions in it are
/// durable (best effort where folders cannot be opened).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(_) => Ok(()),
    }
}

/// The encoding buffer's capacity kept between commits, bytes.
const BUF_KEEP: usize = 1 << 20;

/// Appends one framed record whose body `body` writes.
fn frame(buf: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = buf.len();
    buf.extend_from_slice(&[0; FRAME]);
    body(buf);
    let len = (buf.len() - at - FRAME) as u32;
    let crc = crc32fast::hash(&buf[at + FRAME..]);
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends `s` with a `u16` length; a longer text is cut at a character
/// boundary (codes and names are short).
pub fn put_str16(buf: &mut Vec<u8>, s: &str) {
    // Codes are short; a longer one is cut at a character boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.extend_from_slice(&(end as u16).to_le_bytes());
    buf.extend_from_slice(&s.as_bytes()[..end]);
}

/// Appends `s` with a `u32` length.
pub fn put_str32(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The appending side: encodes batches into the current segment, commits
/// them with one write and one `fdatasync`, and starts new segments.
pub struct JournalWriter {
    dir: PathBuf,
    start: Millis,
    seq: SegmentId,
    file: File,
    opened: Instant,
    /// Bytes in the current segment (committed).
    size: u64,
    /// Points whose codes the current segment (including `buf`) holds.
    defined: Vec<bool>,
    /// Encoded records not yet written.
    buf: Vec<u8>,
}

impl JournalWriter {
    /// Opens the first segment of a run in `dir` (created if needed).
    pub fn create(dir: &Path, start: Millis) -> io::Result<JournalWriter> {
        std::fs::create_dir_all(dir)?;
        let (seq, file) = open_segment(dir, start, 1)?;
        Ok(JournalWriter {
            dir: dir.to_path_buf(),
            start,
            seq,
            file,
            opened: Instant::now(),
            size: MAGIC.len() as u64,
            defined: Vec::new(),
            buf: Vec::with_capacity(BUF_KEEP),
        })
    }

    /// The segment being appended to.
    pub fn segment(&self) -> SegmentId {
        self.seq
    }

    /// Path of segment `seq` of this run.
    pub fn path_of(&self, seq: SegmentId) -> PathBuf {
        segment_path(&self.dir, self.start, seq)
    }

    /// Bytes encoded and not yet committed.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes committed to the current segment.
    pub fn segment_bytes(&self) -> u64 {
        self.size
    }

    /// When the current segment was opened.
    pub fn segment_opened(&self) -> Instant {
        self.opened
    }

    /// Encodes one batch of readings (codes of points new to this segment
    /// first).
    pub fn add_readings(
        &mut self,
        registry: &Registry,
        readings: &[Reading],
        arrival: Millis,
        source: &str,
    ) {
        for r in readings {
            let idx = r.point as usize;
            if self.defined.get(idx).copied().unwrap_or(false) {
                continue;
            }
            if idx >= self.defined.len() {
                self.defined.resize(idx + 1, false);
            }
            self.defined[idx] = true;
            let (mine, point, sensor) = match registry.points.get(idx) {
                Some(p) => (
                    registry
                        .mines
                        .get(p.mine as usize)
                        .map_or(String::new(), |m| m.code.clone()),
                    p.code.clone(),
                    p.sensor.code_text(),
                ),
                None => (String::new(), format!("#{idx}"), String::new()),
            };
            frame(&mut self.buf, |b| {
                b.push(KIND_POINT);
                b.extend_from_slice(&r.point.to_le_bytes());
                put_str16(b, &mine);
                put_str16(b, &point);
                put_str16(b, &sensor);
            });
        }
        frame(&mut self.buf, |b| {
            b.reserve(19 + readings.len() * 22);
            b.push(KIND_READINGS);
            b.extend_from_slice(&arrival.to_le_bytes());
            put_str16(b, source);
            b.extend_from_slice(&(readings.len() as u32).to_le_bytes());
            for r in readings {
                b.extend_from_slice(&r.point.to_le_bytes());
                b.extend_from_slice(&r.ts.to_le_bytes());
                b.extend_from_slice(&r.value.to_bits().to_le_bytes());
                b.extend_from_slice(&r.status.to_le_bytes());
            }
        });
    }

    /// Encodes one row of a journaled stream as one record.
    pub fn add<S: Journaled>(&mut self, row: &S::Row) {
        frame(&mut self.buf, |b| {
            b.push(S::KIND);
            S::encode(row, b);
        });
    }

    /// Encodes one rejected record.
    pub fn add_rejected(&mut self, row: &RejectedRow) {
        self.add::<Rejected>(row);
    }

    /// Writes what is encoded and waits for `fdatasync`. Returns the bytes
    /// made durable. On error the segment must not be appended to again:
    /// call [`JournalWriter::abandon`] and encode the batches anew.
    pub fn commit(&mut self) -> io::Result<usize> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        self.file.write_all(&self.buf)?;
        self.file.sync_data()?;
        let n = self.buf.len();
        self.size += n as u64;
        self.buf.clear();
        // A commit larger than usual (large rejected records) does not
        // keep its buffer for the life of the process.
        self.buf.shrink_to(BUF_KEEP);
        Ok(n)
    }

    /// Forgets what is encoded and not committed, and continues in a new
    /// segment (after a failed commit the old one may end in a torn
    /// record). Returns the segment left behind.
    pub fn abandon(&mut self) -> io::Result<SegmentId> {
        self.buf.clear();
        self.defined.clear();
        self.rotate()
    }

    /// Starts a new segment; returns the one sealed. Commit first: what is
    /// still encoded is dropped.
    pub fn rotate(&mut self) -> io::Result<SegmentId> {
        let (seq, file) = open_segment(&self.dir, self.start, self.seq + 1)?;
        let sealed = self.seq;
        self.seq = seq;
        self.file = file;
        self.opened = Instant::now();
        self.size = MAGIC.len() as u64;
        self.defined.clear();
        self.buf.clear();
        Ok(sealed)
    }
}

/// Creates segment `seq` (or the next free number) with its magic, durable.
fn open_segment(dir: &Path, start: Millis, mut seq: SegmentId) -> io::Result<(SegmentId, File)> {
    loop {
        let path = segment_path(dir, start, seq);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(MAGIC)?;
                f.sync_all()?;
                sync_dir(dir)?;
                return Ok((seq, f));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => seq += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Codes of one point as a segment recorded them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointCodes {
    /// Mine code.
    pub mine: String,
    /// Point code.
    pub point: String,
    /// Four-digit sensor type code.
    pub sensor: String,
}

/// One reading read back from a segment.
#[derive(Debug, Clone)]
pub struct RecoveredReading {
    /// Its point's codes.
    pub codes: Arc<PointCodes>,
    /// Event time.
    pub ts: Millis,
    /// Processing time of receipt.
    pub arrival: Millis,
    /// The value (`NaN` when none).
    pub value: f64,
    /// National status bits.
    pub status: u16,
    /// Source name.
    pub source: Arc<str>,
}

/// Where and why reading a segment stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Offset of the first record not kept.
    pub offset: usize,
    /// Bytes dropped from there to the end.
    pub dropped: usize,
    /// What was wrong with it.
    pub why: &'static str,
}

/// What one segment holds.
#[derive(Debug, Default)]
pub struct SegmentContents {
    /// Readings, in journal order.
    pub readings: Vec<RecoveredReading>,
    /// Rejected records, in journal order.
    pub rejected: Vec<RejectedRow>,
    /// Exception reports, in journal order.
    pub exceptions: Vec<ExceptionRow>,
    /// Power samples, in journal order.
    pub power: Vec<PowerRow>,
    /// Seal events, in journal order.
    pub seal: Vec<SealRow>,
    /// Records read (all kinds).
    pub records: usize,
    /// The unreadable tail, if any.
    pub torn: Option<TornTail>,
}

impl SegmentContents {
    /// Rows recovered, per stream.
    pub fn rows_per_stream(&self) -> [(&'static str, usize); 5] {
        [
            (super::READINGS, self.readings.len()),
            (super::REJECTED, self.rejected.len()),
            (super::EXCEPTIONS, self.exceptions.len()),
            (super::activity::POWER, self.power.len()),
            (super::activity::SEAL, self.seal.len()),
        ]
    }
}

/// A cursor over a record body (after its kind byte), for
/// [`Journaled::decode`]: every read is `None` past the end or on invalid
/// UTF-8, which makes the record unreadable.
pub struct RecordBody<'a>(&'a [u8]);

impl<'a> RecordBody<'a> {
    /// A cursor over `body`.
    pub fn new(body: &'a [u8]) -> Self {
        RecordBody(body)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.0.len()
    }
    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    /// A little-endian `i64`.
    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// An `f64` from its little-endian bits.
    pub fn f64(&mut self) -> Option<f64> {
        Some(f64::from_bits(self.i64()? as u64))
    }
    /// Text with a `u16` length ([`put_str16`]).
    pub fn str16(&mut self) -> Option<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    /// Text with a `u32` length ([`put_str32`]).
    pub fn str32(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Reads a segment's bytes: every record up to the first unreadable one.
pub fn read_segment(bytes: &[u8]) -> SegmentContents {
    let mut out = SegmentContents::default();
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        if !bytes.is_empty() {
            out.torn = Some(TornTail {
                offset: 0,
                dropped: bytes.len(),
                why: "no journal header",
            });
        }
        return out;
    }
    let mut points: Vec<Option<Arc<PointCodes>>> = Vec::new();
    let mut sources: Vec<Arc<str>> = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let why = match read_record(&bytes[at..], &mut points, &mut sources, &mut out) {
            Ok(len) => {
                out.records += 1;
                at += len;
                continue;
            }
            Err(why) => why,
        };
        out.torn = Some(TornTail {
            offset: at,
            dropped: bytes.len() - at,
            why,
        });
        break;
    }
    out
}

/// Reads the record at the start of `bytes`; returns its framed length.
fn read_record(
    bytes: &[u8],
    points: &mut Vec<Option<Arc<PointCodes>>>,
    sources: &mut Vec<Arc<str>>,
    out: &mut SegmentContents,
) -> Result<usize, &'static str> {
    let header = bytes.get(..FRAME).ok_or("incomplete record header")?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_RECORD {
        return Err("impossible record length");
    }
    let body = bytes
        .get(FRAME..FRAME + len)
        .ok_or("record cut short (torn write)")?;
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch");
    }
    let mut b = RecordBody(body);
    let bad = "record does not parse";
    match b.u8().ok_or(bad)? {
        KIND_POINT => {
            let idx = b.u32().ok_or(bad)? as usize;
            let codes = PointCodes {
                mine: b.str16().ok_or(bad)?.to_string(),
                point: b.str16().ok_or(bad)?.to_string(),
                sensor: b.str16().ok_or(bad)?.to_string(),
            };
            if idx >= points.len() {
                points.resize(idx + 1, None);
            }
            points[idx] = Some(Arc::new(codes));
        }
        KIND_READINGS => {
            let arrival = b.i64().ok_or(bad)?;
            let source = b.str16().ok_or(bad)?;
            let source = match sources.iter().find(|s| &***s == source) {
                Some(s) => s.clone(),
                None => {
                    let s: Arc<str> = Arc::from(source);
                    sources.push(s.clone());
                    s
                }
            };
            let n = b.u32().ok_or(bad)? as usize;
            if b.remaining() != n * 22 {
                return Err(bad);
            }
            let first = out.readings.len();
            out.readings.reserve(n);
            for _ in 0..n {
                let idx = b.u32().ok_or(bad)? as usize;
                let ts = b.i64().ok_or(bad)?;
                let value = b.f64().ok_or(bad)?;
                let status = b.u16().ok_or(bad)?;
                let Some(Some(codes)) = points.get(idx) else {
                    out.readings.truncate(first);
                    return Err("reading of a point the segment never defined");
                };
                out.readings.push(RecoveredReading {
                    codes: codes.clone(),
                    ts,
                    arrival,
                    value,
                    status,
                    source: source.clone(),
                });
            }
        }
        Rejected::KIND => out.rejected.push(Rejected::decode(&mut b).ok_or(bad)?),
        Exceptions::KIND => out.exceptions.push(Exceptions::decode(&mut b).ok_or(bad)?),
        Power::KIND => out.power.push(Power::decode(&mut b).ok_or(bad)?),
        Seal::KIND => out.seal.push(Seal::decode(&mut b).ok_or(bad)?),
        _ => return Err("unknown record kind"),
    }
    Ok(FRAME + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn registry() -> Registry {
        let (config, _) = parse(
            r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
points = [
  { code = "p-methane", sensor = "0001", location = "face_t1" },
  { code = "p-co", sensor = "0004", location = "face_t2" },
]
"#,
        )
        .expect("valid");
        Registry::build(&config, 1)
    }

    fn reading(point: u32, ts: Millis, value: f64) -> Reading {
        Reading {
            point,
            ts,
            value,
            status: 0,
        }
    }

    fn rejected() -> RejectedRow {
        RejectedRow {
            at: 77,
            source: "mqtt".into(),
            origin: "mines/x/telemetry".into(),
            reason: "malformed_json",
            detail: "expected value at line 1".into(),
            record: "{oops".into(),
        }
    }

    fn written(dir: &Path) -> (JournalWriter, Vec<u8>) {
        let reg = registry();
        let mut j = JournalWriter::create(dir, 42).unwrap();
        j.add_readings(
            &reg,
            &[reading(0, 1000, 0.5), reading(1, 1000, 3.0)],
            1500,
            "mqtt",
        );
        j.add_rejected(&rejected());
        j.add_readings(&reg, &[reading(0, 2000, f64::NAN)], 2500, "netfile");
        assert!(j.commit().unwrap() > 0);
        let bytes = std::fs::read(j.path_of(j.segment())).unwrap();
        (j, bytes)
    }

    #[test]
    fn a_committed_segment_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (_, bytes) = written(dir.path());
        let c = read_segment(&bytes);
        assert_eq!(c.torn, None);
        // Two point definitions, two reading batches, one rejected record.
        assert_eq!(c.records, 5);
        let got: Vec<(&str, &str, &str, i64, i64, u16, &str)> = c
            .readings
            .iter()
            .map(|r| {
                (
                    r.codes.mine.as_str(),
                    r.codes.point.as_str(),
                    r.codes.sensor.as_str(),
                    r.ts,
                    r.arrival,
                    r.status,
                    &*r.source,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("140121000001", "p-methane", "0001", 1000, 1500, 0, "mqtt"),
                ("140121000001", "p-co", "0004", 1000, 1500, 0, "mqtt"),
                (
                    "140121000001",
                    "p-methane",
                    "0001",
                    2000,
                    2500,
                    0,
                    "netfile"
                ),
            ]
        );
        assert_eq!(c.readings[1].value, 3.0);
        assert!(c.readings[2].value.is_nan());
        assert_eq!(c.rejected, [rejected()]);
    }

    #[test]
    fn every_torn_tail_keeps_every_whole_record_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_, bytes) = written(dir.path());
        let whole = read_segment(&bytes);
        // Record boundaries: cut the file at every length and check that
        // what is read back is a prefix of the whole, and that the cut is
        // reported unless it falls on a boundary.
        for cut in 0..bytes.len() {
            let c = read_segment(&bytes[..cut]);
            assert!(c.records <= whole.records);
            assert!(c.readings.len() <= whole.readings.len());
            for (a, b) in c.readings.iter().zip(&whole.readings) {
                assert_eq!((a.ts, &a.codes), (b.ts, &b.codes));
            }
            if cut > 0 {
                let kept = c.torn.as_ref().map_or(cut, |t| t.offset);
                assert_eq!(c.torn.as_ref().map_or(0, |t| t.dropped), cut - kept);
            }
        }
        // A flipped bit in the last record: everything before it is kept.
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x40;
        let c = read_segment(&bad);
        assert_eq!(c.torn.as_ref().map(|t| t.why), Some("checksum mismatch"));
        assert_eq!(c.readings.len(), 2);
        assert_eq!(c.rejected.len(), 1);
        // A tail of zeros (a file extended but never written) is torn too.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 64]);
        let c = read_segment(&zeros);
        assert_eq!(c.readings.len(), 3);
        assert_eq!(c.torn.map(|t| t.dropped), Some(64));
    }

    #[test]
    fn a_new_segment_defines_its_points_again() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry();
        let (mut j, _) = written(dir.path());
        let first = j.segment();
        assert_eq!(j.rotate().unwrap(), first);
        j.add_readings(&reg, &[reading(1, 9000, 4.0)], 9500, "mqtt");
        j.commit().unwrap();
        let c = read_segment(&std::fs::read(j.path_of(j.segment())).unwrap());
        assert_eq!(c.torn, None);
        assert_eq!(c.readings.len(), 1);
        assert_eq!(c.readings[0].codes.point, "p-co");
        assert_eq!(segments(dir.path()).unwrap().len(), 2);
        // After a failed commit the writer moves on; uncommitted bytes are
        // never written to the old segment.
        j.add_readings(&reg, &[reading(0, 9000, 4.0)], 9500, "mqtt");
        let before = std::fs::read(j.path_of(j.segment())).unwrap();
        j.abandon().unwrap();
        assert_eq!(std::fs::read(j.path_of(j.segment() - 1)).unwrap(), before);
        assert_eq!(j.pending_bytes(), 0);
    }

    /// The segment format as documented (and as every earlier minewatch
    /// wrote it), spelled out byte by byte without the writer: the writer
    /// must still produce exactly these bytes and recovery must read them.
    #[test]
    fn segments_keep_the_documented_byte_format() {
        fn framed(body: Vec<u8>) -> Vec<u8> {
            let mut out = (body.len() as u32).to_le_bytes().to_vec();
            out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            out.extend(body);
            out
        }
        fn s16(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        fn s32(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let mut expected = b"MWJRNL01".to_vec();
        for (idx, point, sensor) in [(0u32, "p-methane", "0001"), (1, "p-co", "0004")] {
            let mut b = vec![1u8];
            b.extend_from_slice(&idx.to_le_bytes());
            s16(&mut b, "140121000001");
            s16(&mut b, point);
            s16(&mut b, sensor);
            expected.extend(framed(b));
        }
        let mut b = vec![2u8];
        b.extend_from_slice(&1500i64.to_le_bytes());
        s16(&mut b, "mqtt");
        b.extend_from_slice(&2u32.to_le_bytes());
        for (idx, ts, value) in [(0u32, 1000i64, 0.5f64), (1, 1000, 3.0)] {
            b.extend_from_slice(&idx.to_le_bytes());
            b.extend_from_slice(&ts.to_le_bytes());
            b.extend_from_slice(&value.to_bits().to_le_bytes());
            b.extend_from_slice(&0u16.to_le_bytes());
        }
        expected.extend(framed(b));
        let mut b = vec![3u8];
        b.extend_from_slice(&77i64.to_le_bytes());
        for text in [
            "mqtt",
            "mines/x/telemetry",
            "malformed_json",
            "expected value at line 1",
            "{oops",
        ] {
            s32(&mut b, text);
        }
        expected.extend(framed(b));

        let dir = tempfile::tempdir().unwrap();
        let mut j = JournalWriter::create(dir.path(), 42).unwrap();
        j.add_readings(
            &registry(),
            &[reading(0, 1000, 0.5), reading(1, 1000, 3.0)],
            1500,
            "mqtt",
        );
        j.add_rejected(&rejected());
        j.commit().unwrap();
        let written = std::fs::read(j.path_of(j.segment())).unwrap();
        assert_eq!(written, expected, "the journal format changed");
        let c = read_segment(&expected);
        assert_eq!((c.records, &c.torn), (4, &None));
        assert_eq!(c.readings.len(), 2);
        assert_eq!(c.readings[1].codes.point, "p-co");
        assert_eq!(c.rejected, [rejected()]);
        assert_eq!(
            c.rows_per_stream(),
            [
                ("readings", 2),
                ("rejected", 1),
                ("exceptions", 0),
                ("power", 0),
                ("seal", 0)
            ]
        );
    }

    #[test]
    fn a_segment_without_records_is_empty_and_garbage_is_not_a_segment() {
        assert_eq!(read_segment(MAGIC).records, 0);
        assert_eq!(read_segment(MAGIC).torn, None);
        assert_eq!(read_segment(b"").torn, None);
        assert_eq!(
            read_segment(b"PAR1garbage").torn.map(|t| t.why),
            Some("no journal header")
        );
    }
}
