//! Retention: deleting archive partitions (of every stream) older than `archive.retain_days`
//! (default 92 days, the three months the rules ask raw values to be kept;
//! 0 keeps everything), and sweeping temporary files that an interrupted
//! write left behind.
//!
//! A partition `{stream}/date=YYYY-MM-DD/hour=HH` is deleted only when its
//! whole hour ended at or before the cut-off `now − retain_days`; the
//! current hour and future hours are never touched, whatever the setting.
//! Folders whose names do not parse are left alone. The archive runs a pass
//! at start and then every [`EVERY`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;

use super::partition::Hour;
use crate::model::Millis;

/// How often the running archive applies retention.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Every stream of the archive: retention and the sweep of temporary files
/// apply to each.
pub const STREAMS: [&str; 6] = [
    super::READINGS,
    super::REJECTED,
    super::ALERTS,
    super::EXCEPTIONS,
    super::activity::POWER,
    super::activity::SEAL,
];

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// What one pass removed from one stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Hour partitions deleted.
    pub partitions: usize,
    /// Files deleted in them.
    pub files: usize,
    /// Partitions that could not be deleted entirely (logged).
    pub failed: usize,
}

/// The hour a partition folder `date=YYYY-MM-DD/hour=HH` stands for.
pub fn parse_partition(date: &str, hour: &str) -> Option<Hour> {
    let day = NaiveDate::parse_from_str(date.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    let h: i64 = hour.strip_prefix("hour=")?.parse().ok()?;
    if !(0..24).contains(&h) {
        return None;
    }
    let midnight = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some(Hour::of(midnight + h * HOUR_MS))
}

/// Every hour partition folder of a stream, with its hour, oldest first.
pub fn partitions(stream_dir: &Path) -> Vec<(Hour, PathBuf)> {
    let mut out = Vec::new();
    let Ok(dates) = std::fs::read_dir(stream_dir) else {
        return out;
    };
    for date in dates.flatten() {
        let date_path = date.path();
        let Some(date_name) = date_path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Ok(hours) = std::fs::read_dir(&date_path) else {
            continue;
        };
        for hour in hours.flatten() {
            let hour_path = hour.path();
            let Some(hour_name) = hour_path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(h) = parse_partition(date_name, hour_name)
                && hour_path.is_dir()
            {
                out.push((h, hour_path));
            }
        }
    }
    out.sort();
    out
}

/// Deletes the partitions of `stream_dir` whose hour ended at or before
/// `now − retain_days` days (nothing when `retain_days` is 0), and date
/// folders left empty.
pub fn apply(stream_dir: &Path, now: Millis, retain_days: u64) -> Removed {
    let mut removed = Removed::default();
    if retain_days == 0 {
        return removed;
    }
    let keep = (retain_days as i64).saturating_mul(DAY_MS);
    let cutoff = now.saturating_sub(keep);
    let current = Hour::of(now);
    for (hour, path) in partitions(stream_dir) {
        let end = (hour.0 + 1).saturating_mul(HOUR_MS);
        if end > cutoff || hour >= current {
            continue;
        }
        let mut files = 0;
        let mut ok = true;
        if let Ok(entries) = std::fs::read_dir(&path) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_file() {
                    match std::fs::remove_file(&p) {
                        Ok(()) => files += 1,
                        Err(error) => {
                            ok = false;
                            tracing::warn!(%error, file = %p.display(), "retention: cannot delete");
                        }
                    }
                }
            }
        }
        removed.files += files;
        match std::fs::remove_dir(&path) {
            Ok(()) if ok => removed.partitions += 1,
            Ok(()) => removed.failed += 1,
            Err(error) => {
                removed.failed += 1;
                tracing::warn!(%error, partition = %path.display(), "retention: cannot delete the partition folder");
            }
        }
        if let Some(date) = path.parent() {
            // Fails (and is meant to) while other hours remain.
            let _ = std::fs::remove_dir(date);
        }
    }
    removed
}

/// Deletes temporary files (`.….parquet.tmp`) that a write interrupted by
/// a crash left in the partitions of every stream below `root`.
pub fn remove_temporaries(root: &Path) -> usize {
    let mut n = 0;
    for stream in STREAMS {
        for (_, folder) in partitions(&root.join(stream)) {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.')
                    && name.ends_with(".tmp")
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    n += 1;
                }
            }
        }
    }
    if n > 0 {
        tracing::info!(
            files = n,
            "archive: removed temporary files of writes interrupted by a crash"
        );
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::partition::file_paths;

    /// 2026-11-23T16:20:00Z.
    const NOW: Millis = 1_795_449_600_000 + 20 * 60_000;

    fn touch(root: &Path, hour: Hour, seq: u64) -> PathBuf {
        let (done, _) = file_paths(root, "readings", hour, 1, seq);
        std::fs::create_dir_all(done.parent().unwrap()).unwrap();
        std::fs::write(&done, b"x").unwrap();
        done
    }

    #[test]
    fn partition_names_parse_to_their_hour() {
        assert_eq!(
            parse_partition("date=2026-11-23", "hour=16"),
            Some(Hour::of(1_795_449_600_000))
        );
        assert_eq!(parse_partition("date=2026-11-23", "hour=24"), None);
        assert_eq!(parse_partition("date=2026-13-01", "hour=01"), None);
        assert_eq!(parse_partition("2026-11-23", "hour=01"), None);
    }

    #[test]
    fn only_hours_wholly_older_than_the_cutoff_go() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let now_hour = Hour::of(NOW);
        // 2 days kept: the cut-off is 2026-11-21T16:20Z.
        let gone_a = touch(root, Hour(now_hour.0 - 49), 1); // 11-21 15:00–16:00
        let gone_b = touch(root, Hour(now_hour.0 - 49), 2);
        let gone_c = touch(root, Hour(now_hour.0 - 24 * 10), 3);
        let kept_straddling = touch(root, Hour(now_hour.0 - 48), 4); // 16:00–17:00 holds the cut-off
        let kept_current = touch(root, now_hour, 5);
        let kept_future = touch(root, Hour(now_hour.0 + 5), 6);
        let stranger = root.join("readings/date=2026-11-01/not-an-hour");
        std::fs::create_dir_all(&stranger).unwrap();
        let removed = apply(&root.join("readings"), NOW, 2);
        assert_eq!(
            removed,
            Removed {
                partitions: 2,
                files: 3,
                failed: 0
            }
        );
        for p in [&gone_a, &gone_b, &gone_c] {
            assert!(!p.exists(), "{}", p.display());
        }
        for p in [&kept_straddling, &kept_current, &kept_future] {
            assert!(p.exists(), "{}", p.display());
        }
        // The emptied date folder of ten days ago is gone; the one with an
        // unparseable folder inside stays.
        assert!(!gone_c.parent().unwrap().parent().unwrap().exists());
        assert!(stranger.exists());
        // A second pass has nothing to do.
        assert_eq!(apply(&root.join("readings"), NOW, 2), Removed::default());
    }

    #[test]
    fn zero_keeps_everything_and_even_one_day_never_touches_now() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = touch(root, Hour(0), 1);
        assert_eq!(apply(&root.join("readings"), NOW, 0), Removed::default());
        assert!(old.exists());
        let current = touch(root, Hour::of(NOW), 2);
        let removed = apply(&root.join("readings"), NOW, 1);
        assert_eq!(removed.partitions, 1);
        assert!(!old.exists());
        assert!(current.exists());
    }

    #[test]
    fn temporaries_are_swept_and_finished_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (done, temp) = file_paths(dir.path(), "readings", Hour::of(NOW), 1, 1);
        std::fs::create_dir_all(done.parent().unwrap()).unwrap();
        std::fs::write(&done, b"x").unwrap();
        std::fs::write(&temp, b"half").unwrap();
        assert_eq!(remove_temporaries(dir.path()), 1);
        assert!(done.exists());
        assert!(!temp.exists());
    }
}
