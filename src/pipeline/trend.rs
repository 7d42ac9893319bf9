//! Recent values per point for the patrol-desk page: each point's latest
//! reading and its last hours as one-minute buckets (min, max, mean), so a
//! mine's trend chart and current values need no archive scan.
//!
//! Each shard writes only its own part, once per batch (one uncontended
//! lock per batch, none per reading); the HTTP side reads a mine's points
//! now and then. Memory is bounded: `keep_minutes` buckets per point.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::model::{Millis, PointIdx, Reading, status};

/// One minute of one point.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    minute: i64,
    min: f64,
    max: f64,
    sum: f64,
    n: u32,
}

/// The latest reading of a point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Last {
    /// Event time, RFC 3339.
    #[serde(serialize_with = "as_rfc3339")]
    pub ts: Millis,
    /// The value; none when the status says it is not a value.
    pub value: Option<f64>,
    /// Status bits.
    pub status: u16,
}

fn as_rfc3339<S: serde::Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::model::rfc3339(*ms))
}

#[derive(Debug, Default)]
struct PointTrend {
    buckets: VecDeque<Bucket>,
    last: Option<Last>,
}

/// A point's series as the API returns it: parallel arrays, one entry a
/// minute that has readings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    /// Start of each minute, ms.
    pub t: Vec<i64>,
    /// Lowest value in the minute.
    pub min: Vec<f64>,
    /// Highest value in the minute.
    pub max: Vec<f64>,
    /// Mean of the minute.
    pub avg: Vec<f64>,
    /// The latest reading.
    pub last: Option<Last>,
}

/// The trends of every point, one part per shard.
pub struct Trends {
    shards: Vec<Mutex<HashMap<PointIdx, PointTrend>>>,
    keep_minutes: i64,
}

impl Trends {
    /// Trends for `shards` shards keeping `keep_minutes` of buckets.
    pub fn new(shards: usize, keep_minutes: i64) -> Trends {
        Trends {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            keep_minutes: keep_minutes.max(1),
        }
    }

    /// Adds a processed batch of shard `shard`.
    pub fn record(&self, shard: usize, readings: &[Reading]) {
        let Some(part) = self.shards.get(shard) else {
            return;
        };
        let mut part = part.lock().unwrap_or_else(|p| p.into_inner());
        for r in readings {
            let trend = part.entry(r.point).or_default();
            let is_value = r.status & status::NOT_A_VALUE == 0 && r.value.is_finite();
            if trend.last.is_none_or(|l| r.ts >= l.ts) {
                trend.last = Some(Last {
                    ts: r.ts,
                    value: is_value.then_some(r.value),
                    status: r.status,
                });
            }
            if !is_value {
                continue;
            }
            let minute = r.ts.div_euclid(60_000) * 60_000;
            match trend.buckets.iter_mut().rev().find(|b| b.minute == minute) {
                Some(b) => {
                    b.min = b.min.min(r.value);
                    b.max = b.max.max(r.value);
                    b.sum += r.value;
                    b.n += 1;
                }
                None => {
                    let bucket = Bucket {
                        minute,
                        min: r.value,
                        max: r.value,
                        sum: r.value,
                        n: 1,
                    };
                    // Late readings of an older minute go in order.
                    let at = trend
                        .buckets
                        .iter()
                        .rposition(|b| b.minute < minute)
                        .map_or(0, |i| i + 1);
                    trend.buckets.insert(at, bucket);
                }
            }
            let newest = trend.buckets.back().map_or(minute, |b| b.minute);
            while trend
                .buckets
                .front()
                .is_some_and(|b| b.minute <= newest - self.keep_minutes * 60_000)
            {
                trend.buckets.pop_front();
            }
        }
    }

    /// The series of `point` (owned by `shard`) since `since` (event time).
    pub fn series(&self, shard: usize, point: PointIdx, since: Millis) -> Series {
        let Some(part) = self.shards.get(shard) else {
            return Series::default();
        };
        let part = part.lock().unwrap_or_else(|p| p.into_inner());
        let Some(trend) = part.get(&point) else {
            return Series::default();
        };
        let mut s = Series {
            last: trend.last,
            ..Series::default()
        };
        for b in trend.buckets.iter().filter(|b| b.minute + 60_000 > since) {
            s.t.push(b.minute);
            s.min.push(b.min);
            s.max.push(b.max);
            s.avg.push(b.sum / f64::from(b.n));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(point: PointIdx, ts: Millis, value: f64, status: u16) -> Reading {
        Reading {
            point,
            ts,
            value,
            status,
        }
    }

    #[test]
    fn minutes_hold_min_max_and_mean_and_the_last_reading() {
        let t = Trends::new(2, 60);
        t.record(
            1,
            &[r(7, 0, 0.2, 0), r(7, 20_000, 0.6, 0), r(7, 61_000, 1.0, 0)],
        );
        let s = t.series(1, 7, 0);
        assert_eq!(s.t, vec![0, 60_000]);
        assert_eq!(s.min, vec![0.2, 1.0]);
        assert_eq!(s.max, vec![0.6, 1.0]);
        assert!((s.avg[0] - 0.4).abs() < 1e-12);
        assert_eq!(s.last.map(|l| l.value), Some(Some(1.0)));
        // Another shard's part knows nothing of it.
        assert_eq!(t.series(0, 7, 0), Series::default());
    }

    #[test]
    fn faults_update_the_last_reading_but_not_the_curve_and_late_minutes_sort_in() {
        let t = Trends::new(1, 60);
        t.record(0, &[r(1, 120_000, 0.3, 0)]);
        t.record(0, &[r(1, 150_000, 9.9, status::SENSOR_FAULT)]);
        t.record(0, &[r(1, 10_000, 0.1, 0)]);
        let s = t.series(0, 1, 0);
        assert_eq!(s.t, vec![0, 120_000]);
        assert_eq!(
            s.last.map(|l| (l.value, l.status)),
            Some((None, status::SENSOR_FAULT))
        );
    }

    #[test]
    fn old_minutes_are_dropped_and_since_filters() {
        let t = Trends::new(1, 3);
        for m in 0..10 {
            t.record(0, &[r(2, m * 60_000, m as f64, 0)]);
        }
        let s = t.series(0, 2, 0);
        assert_eq!(s.t, vec![420_000, 480_000, 540_000]);
        assert_eq!(t.series(0, 2, 500_000).t, vec![480_000, 540_000]);
    }
}
