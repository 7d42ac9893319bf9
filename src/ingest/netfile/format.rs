//! The national networking text format (MT/T 1201.1-2023 style,
//! docs/DOMAIN.md §3): file names, text encoding, records and typed fields. Pure functions;
//! the drop-directory handling lives in `watch.rs`. [`write`] makes such
//! files (for the simulator, the tests and the benches).
//!
//! - Name: `<12-digit mine code>_<TYPE>_<yyyyMMddHHmmss>.txt`.
//! - UTF-8 (a BOM is dropped), or GBK/GB18030 for older systems.
//! - Records end with `~`, fields are separated by `;`, the batch ends with
//!   `||`; the first record is a header whose first field is the mine code.
//! - Times carry no zone: Beijing time (UTC+8).

use std::borrow::Cow;

use chrono::{FixedOffset, NaiveDateTime, TimeZone};

use crate::model::{LocationClass, Millis};

/// The file types minewatch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// Point definitions (测点定义).
    Cddy,
    /// Substation real-time state (分站实时).
    Fzss,
    /// Real-time values (测点实时).
    Cdss,
    /// The mine's own exception reports (异常报警).
    Ycbj,
    /// Five-minute statistics (统计数据): recognised, not yet ingested.
    Tjsj,
}

impl FileType {
    /// The type as written in file names.
    pub fn key(self) -> &'static str {
        match self {
            FileType::Cddy => "CDDY",
            FileType::Fzss => "FZSS",
            FileType::Cdss => "CDSS",
            FileType::Ycbj => "YCBJ",
            FileType::Tjsj => "TJSJ",
        }
    }

    /// Parses the type of a file name.
    pub fn parse(text: &str) -> Option<FileType> {
        [
            FileType::Cddy,
            FileType::Fzss,
            FileType::Cdss,
            FileType::Ycbj,
            FileType::Tjsj,
        ]
        .into_iter()
        .find(|t| t.key().eq_ignore_ascii_case(text))
    }

    /// Fields a data record of this type has at least.
    pub fn fields(self) -> usize {
        match self {
            FileType::Cddy => 24,
            FileType::Cdss => 7,
            FileType::Fzss => 4,
            FileType::Ycbj => 17,
            FileType::Tjsj => 12,
        }
    }
}

/// What a file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// The mine code.
    pub mine: String,
    /// The file type.
    pub kind: FileType,
    /// The upload time, epoch ms.
    pub stamp: Millis,
}

/// Beijing time, which the files use without saying so.
fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// Parses `<mine>_<TYPE>_<yyyyMMddHHmmss>.txt`.
pub fn parse_name(name: &str) -> Result<FileName, String> {
    let stem = name
        .strip_suffix(".txt")
        .or_else(|| name.strip_suffix(".TXT"))
        .ok_or_else(|| format!("{name:?} does not end in .txt"))?;
    let mut parts = stem.split('_');
    let (Some(mine), Some(kind), Some(stamp), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "{name:?} is not <mine code>_<TYPE>_<yyyyMMddHHmmss>.txt"
        ));
    };
    if mine.len() != 12 || !mine.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name:?}: {mine:?} is not a 12-digit mine code"));
    }
    let kind = FileType::parse(kind)
        .ok_or_else(|| format!("{name:?}: unknown type {kind:?} (CDDY, CDSS, FZSS, YCBJ, TJSJ)"))?;
    let stamp = NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S")
        .ok()
        .and_then(|t| beijing().from_local_datetime(&t).single())
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("{name:?}: {stamp:?} is not yyyyMMddHHmmss"))?;
    Ok(FileName {
        mine: mine.to_string(),
        kind,
        stamp,
    })
}

/// Decodes file bytes: UTF-8 (without a BOM), else GB18030 (a superset of
/// GBK). Returns the text and whether it was GBK.
pub fn decode_text(bytes: &[u8]) -> Result<(Cow<'_, str>, bool), String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok((Cow::Borrowed(text), false));
    }
    let (text, _, had_errors) = encoding_rs::GB18030.decode(bytes);
    if had_errors {
        return Err("neither UTF-8 nor GBK text".into());
    }
    Ok((text, true))
}

/// True when the text ends with the batch terminator `||` (so the upload
/// is complete).
pub fn is_complete(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    bytes[..end].ends_with(b"||")
}

/// A file split into its header and records of fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Records<'a> {
    /// The header's fields.
    pub header: Vec<&'a str>,
    /// The data records' fields.
    pub records: Vec<Vec<&'a str>>,
}

/// Splits text into records and fields. Fails when the `||` terminator is
/// missing (a truncated upload) or there is no header.
pub fn split(text: &str) -> Result<Records<'_>, String> {
    let body = text.trim_end();
    let body = body
        .strip_suffix("||")
        .ok_or("no `||` at the end: the file is truncated or still being written")?;
    let mut records = body
        .split('~')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.split(';').map(str::trim).collect::<Vec<&str>>());
    let header = records.next().ok_or("no header record")?;
    Ok(Records {
        header,
        records: records.collect(),
    })
}

/// Parses a national time (`yyyy-MM-dd HH:mm:ss`, Beijing) to epoch ms.
pub fn parse_time(text: &str) -> Result<Millis, String> {
    [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y/%m/%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .and_then(|t| beijing().from_local_datetime(&t).single())
    .map(|t| t.timestamp_millis())
    .ok_or_else(|| format!("{text:?} is not yyyy-MM-dd HH:mm:ss"))
}

/// Formats epoch ms as a national time (Beijing).
pub fn format_time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&beijing())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

/// Formats epoch ms for a file name (Beijing).
pub fn format_stamp(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&beijing())
                .format("%Y%m%d%H%M%S")
                .to_string()
        })
        .unwrap_or_default()
}

/// An optional number field (empty means none).
pub fn opt_number(text: &str) -> Result<Option<f64>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Err(format!("{text:?} is not a finite number")),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}

/// Guesses the rules' location class from an install location written in
/// words, by keywords (upper corner 上隅角, return 回风, heading 掘进, …).
/// Unknown places are [`LocationClass::Other`]: only declared levels apply.
pub fn guess_location(place: &str) -> LocationClass {
    let has = |k: &str| place.contains(k);
    if has("上隅角") {
        LocationClass::FaceT0
    } else if has("排瓦斯") || has("排放巷") {
        LocationClass::DrainageRoadway
    } else if has("采煤机") {
        LocationClass::Shearer
    } else if has("装煤点") || has("装载点") {
        LocationClass::LoadingPoint
    } else if has("总回风") || has("翼回风") || has("主回风") {
        LocationClass::MainReturn
    } else if has("采区回风") || has("盘区回风") {
        LocationClass::PanelReturn
    } else if has("掘进") || has("掘") && has("工作面") {
        if has("回风") {
            LocationClass::HeadingT2
        } else {
            LocationClass::HeadingT1
        }
    } else if has("进风") {
        LocationClass::FaceIntake
    } else if has("回风") {
        LocationClass::FaceT2
    } else if has("工作面") {
        LocationClass::FaceT1
    } else {
        LocationClass::Other
    }
}

/// Writes national files, as a mine's monitoring system would (used by the
/// simulator, the tests and the benches).
pub mod write {
    use super::{format_stamp, format_time};
    use crate::model::Millis;

    /// A file name for `mine`, `kind` (CDDY, CDSS, …) at `at`.
    pub fn name(mine: &str, kind: &str, at: Millis) -> String {
        format!("{mine}_{kind}_{}.txt", format_stamp(at))
    }

    /// A whole file: the header, the records and the terminator.
    pub fn file(header: &[String], records: &[Vec<String>]) -> String {
        let mut out = header.join(";");
        out.push('~');
        for r in records {
            out.push_str(&r.join(";"));
            out.push('~');
        }
        out.push_str("||");
        out
    }

    /// The CDSS (or FZSS, YCBJ) header: mine code, name, upload time.
    pub fn header(mine: &str, mine_name: &str, at: Millis) -> Vec<String> {
        vec![mine.to_string(), mine_name.to_string(), format_time(at)]
    }

    /// One CDSS record.
    pub fn cdss(
        point: &str,
        type_name: &str,
        place: &str,
        value: f64,
        unit: &str,
        status: u16,
        at: Millis,
    ) -> Vec<String> {
        vec![
            point.to_string(),
            type_name.to_string(),
            place.to_string(),
            format!("{value}"),
            unit.to_string(),
            status.to_string(),
            format_time(at),
        ]
    }

    /// One CDDY record with the declared upper alarm / power-off / restore.
    #[allow(clippy::too_many_arguments)]
    pub fn cddy(
        point: &str,
        substation: &str,
        sensor: &str,
        unit: &str,
        range: [f64; 2],
        alarm: Option<f64>,
        power_off: Option<f64>,
        restore: Option<f64>,
        place: &str,
        at: Millis,
    ) -> Vec<String> {
        let o = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
        let value_type = if sensor.starts_with('1') { "KG" } else { "MN" };
        vec![
            point.to_string(),
            "01".into(),
            substation.to_string(),
            sensor.to_string(),
            value_type.into(),
            unit.to_string(),
            format!("{}", range[1]),
            format!("{}", range[0]),
            o(alarm),
            o(restore),
            String::new(),
            String::new(),
            o(power_off),
            o(restore),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            place.to_string(),
            "0".into(),
            "0".into(),
            "0".into(),
            String::new(),
            format_time(at),
        ]
    }

    /// One FZSS record.
    pub fn fzss(substation: &str, run_state: u8, at: Millis) -> Vec<String> {
        vec![
            substation.to_string(),
            run_state.to_string(),
            "0".into(),
            format_time(at),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_parse_and_refuse_clearly() {
        let n = parse_name("140121000001_CDSS_20261123160000.txt").expect("valid");
        assert_eq!(n.mine, "140121000001");
        assert_eq!(n.kind, FileType::Cdss);
        assert_eq!(n.stamp, 1_795_420_800_000, "16:00 Beijing = 08:00 UTC");
        for bad in [
            "140121000001_CDSS_20261123160000.csv",
            "140121000001_CDSS.txt",
            "1401_CDSS_20261123160000.txt",
            "140121000001_XXXX_20261123160000.txt",
            "140121000001_CDSS_2026112316.txt",
            "140121000001_CDSS_20261323160000.txt",
            "140121000001_CDSS_20261123160000_2.txt",
        ] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn utf8_with_bom_and_gbk_decode() {
        let (t, gbk) = decode_text("\u{feff}甲烷~||".as_bytes()).expect("utf-8");
        assert_eq!((t.as_ref(), gbk), ("甲烷~||", false));
        let (bytes, _, _) = encoding_rs::GBK.encode("1101工作面;甲烷~||");
        let (t, gbk) = decode_text(&bytes).expect("gbk");
        assert_eq!((t.as_ref(), gbk), ("1101工作面;甲烷~||", true));
        assert!(decode_text(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn records_split_with_or_without_line_breaks() {
        let text = "140121000001;矿;2026-11-23 16:00:00~\r\nP1;甲烷;面;0.42;%;0;2026-11-23 16:00:00~\nP2;CO;面;3;ppm;0;2026-11-23 16:00:00~||\n";
        let r = split(text).expect("valid");
        assert_eq!(r.header, ["140121000001", "矿", "2026-11-23 16:00:00"]);
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[1][3], "3");
        assert!(split("H~P1;1~").is_err(), "truncated");
        assert!(split("||").is_err(), "no header");
        assert!(is_complete(b"H~R~||\r\n"));
        assert!(!is_complete(b"H~R~|"));
    }

    #[test]
    fn times_are_beijing() {
        assert_eq!(parse_time("2026-11-23 16:00:00"), Ok(1_795_420_800_000));
        assert_eq!(format_time(1_795_420_800_000), "2026-11-23 16:00:00");
        assert_eq!(format_stamp(1_795_420_800_000), "20261123160000");
        assert!(parse_time("23/11/2026").is_err());
        assert_eq!(opt_number(""), Ok(None));
        assert_eq!(opt_number("1.5"), Ok(Some(1.5)));
        assert!(opt_number("NaN").is_err());
        assert!(opt_number("abc").is_err());
    }

    #[test]
    fn locations_are_guessed_from_words() {
        use LocationClass::*;
        for (text, class) in [
            ("1101工作面", FaceT1),
            ("1101上隅角", FaceT0),
            ("1101回风巷", FaceT2),
            ("1101进风巷", FaceIntake),
            ("2201掘进工作面", HeadingT1),
            ("2201掘进回风", HeadingT2),
            ("一采区回风", PanelReturn),
            ("总回风", MainReturn),
            ("专用排瓦斯巷", DrainageRoadway),
            ("1101采煤机", Shearer),
            ("水泵房", Other),
        ] {
            assert_eq!(guess_location(text), class, "{text}");
        }
    }

    proptest! {
        #[test]
        fn splitting_arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = split(&s);
            let _ = parse_name(&s);
            let _ = parse_time(&s);
            let _ = decode_text(s.as_bytes());
        }

        #[test]
        fn records_round_trip(fields in proptest::collection::vec(
            proptest::collection::vec("[^;~|\\s][^;~|]{0,8}[^;~|\\s]", 1..6), 1..8)) {
            let text: String = fields.iter().map(|r| format!("{}~", r.join(";"))).collect::<String>() + "||";
            let parsed = split(&text).expect("valid");
            prop_assert_eq!(parsed.records.len() + 1, fields.len());
            prop_assert_eq!(&parsed.header, &fields[0].iter().map(String::as_str).collect::<Vec<_>>());
            for (got, want) in parsed.records.iter().zip(&fields[1..]) {
                prop_assert_eq!(got, &want.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
    }
}
