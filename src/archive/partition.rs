//! Where a row goes: the hour partition of an event time and the paths of
//! finished and in-progress files (`{stream}/date=YYYY-MM-DD/hour=HH/`).
//!
//! Partitions follow the row's own time (event time for readings, receipt
//! time for rejected records) in UTC, so an hour's data is in one folder
//! however late it arrived.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike};

use crate::model::Millis;

/// Milliseconds in one hour.
const HOUR_MS: i64 = 3_600_000;

/// One UTC hour: hours since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour(pub i64);

impl Hour {
    /// The hour that contains `ts` (floor, also before 1970).
    pub fn of(ts: Millis) -> Hour {
        Hour(ts.div_euclid(HOUR_MS))
    }

    /// The partition folder below a stream's root: `date=YYYY-MM-DD/hour=HH`.
    /// `None` for an hour chrono cannot represent (far outside ±262,000
    /// years), which the caller must map to a representable one.
    pub fn folder(self) -> Option<PathBuf> {
        let start = self.0.checked_mul(HOUR_MS)?;
        let t = DateTime::from_timestamp_millis(start)?;
        if !(0..=9999).contains(&t.year()) {
            return None;
        }
        Some(
            PathBuf::from(format!(
                "date={:04}-{:02}-{:02}",
                t.year(),
                t.month(),
                t.day()
            ))
            .join(format!("hour={:02}", t.hour())),
        )
    }
}

/// The partition of a row with time `ts`, falling back to the hour of
/// `fallback` (a processing time) when `ts` has no printable date.
///
/// Called once per archived row, so it compares with the printable range
/// rather than printing the folder.
pub fn partition_of(ts: Millis, fallback: Millis) -> Hour {
    if (PRINTABLE_FROM..PRINTABLE_UNTIL).contains(&ts) {
        Hour::of(ts)
    } else {
        Hour::of(fallback)
    }
}

/// 0000-01-01T00:00:00Z: the first time whose hour has a folder.
const PRINTABLE_FROM: Millis = -62_167_219_200_000;
/// 10000-01-01T00:00:00Z: the first time after those whose hour has one.
const PRINTABLE_UNTIL: Millis = 253_402_300_800_000;

/// The finished file `{root}/{stream}/date=…/hour=…/{start}-{seq}.parquet`
/// and its hidden temporary name in the same folder.
pub fn file_paths(
    root: &Path,
    stream: &str,
    hour: Hour,
    start: Millis,
    seq: u64,
) -> (PathBuf, PathBuf) {
    named_paths(root, stream, hour, &format!("{start}-{seq:06}"))
}

/// The finished file `{root}/{stream}/date=…/hour=…/{stem}.parquet` and its
/// hidden temporary name in the same folder.
pub fn named_paths(root: &Path, stream: &str, hour: Hour, stem: &str) -> (PathBuf, PathBuf) {
    let folder = root.join(stream).join(
        hour.folder()
            .unwrap_or_else(|| PathBuf::from("date=0000-00-00/hour=00")),
    );
    let name = format!("{stem}.parquet");
    let temp = format!(".{name}.tmp");
    (folder.join(name), folder.join(temp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_follow_utc_event_time() {
        // 2026-11-23T16:59:59.999Z and one millisecond later.
        let t = 1_795_453_199_999;
        assert_eq!(
            Hour::of(t).folder().unwrap(),
            PathBuf::from("date=2026-11-23/hour=16")
        );
        assert_eq!(
            Hour::of(t + 1).folder().unwrap(),
            PathBuf::from("date=2026-11-23/hour=17")
        );
        // Midnight rolls the date.
        let midnight = 1_795_478_400_000; // 2026-11-24T00:00:00Z
        assert_eq!(
            Hour::of(midnight - 1).folder().unwrap(),
            PathBuf::from("date=2026-11-23/hour=23")
        );
        assert_eq!(
            Hour::of(midnight).folder().unwrap(),
            PathBuf::from("date=2026-11-24/hour=00")
        );
        // Before the epoch the hour is the floor, not a truncation.
        assert_eq!(Hour::of(-1), Hour(-1));
        assert_eq!(
            Hour(-1).folder().unwrap(),
            PathBuf::from("date=1969-12-31/hour=23")
        );
    }

    #[test]
    fn the_printable_range_is_exactly_the_hours_with_a_folder() {
        for edge in [PRINTABLE_FROM, PRINTABLE_UNTIL] {
            for ts in [edge - HOUR_MS, edge - 1, edge, edge + 1, edge + HOUR_MS] {
                let printable = (PRINTABLE_FROM..PRINTABLE_UNTIL).contains(&ts);
                assert_eq!(Hour::of(ts).folder().is_some(), printable, "{ts}");
                assert_eq!(partition_of(ts, 0) == Hour::of(ts), printable, "{ts}");
            }
        }
    }

    #[test]
    fn unprintable_times_fall_back_to_the_arrival_hour() {
        let arrival = 1_795_453_199_999;
        assert_eq!(partition_of(i64::MAX, arrival), Hour::of(arrival));
        assert_eq!(partition_of(i64::MIN, arrival), Hour::of(arrival));
        assert_eq!(partition_of(0, arrival), Hour(0));
    }

    #[test]
    fn temporary_files_are_hidden_beside_the_finished_one() {
        let (done, temp) = file_paths(Path::new("/a"), "readings", Hour(0), 17, 3);
        assert_eq!(
            done,
            PathBuf::from("/a/readings/date=1970-01-01/hour=00/17-000003.parquet")
        );
        assert_eq!(temp.parent(), done.parent());
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with('.') && !name.ends_with(".parquet"),
            "{name}"
        );
    }
}
