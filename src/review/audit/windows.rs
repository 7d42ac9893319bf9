//! The audit's second and third passes over the archive: the readings of
//! each finding's chart window (its own point and, for
//! `neighbours_disagree`, the other points of its air path), and for each
//! `replayed` finding the earlier windows its values repeat.
//!
//! Both read through [`replay::read_sorted`], so they see exactly the rows,
//! order and skipped files the detectors saw. The replay search hashes
//! every window of [`WINDOW`] quantised values of the finding's evidence
//! (those with at least `replay_min_changes` changes, like the detector)
//! and then rolls a hash over every methane / CO point of the archive up to
//! the finding's end: a window of another point ending no later, or of the
//! same point ending at least [`WINDOW`] polling periods earlier, that has
//! the same hash is a repeat. Unlike the detector (which samples one window
//! in `replay_sample` and forgets old ones), this looks at every window, so
//! it measures how long the copied run really is.

use std::collections::{BTreeMap, HashMap};

use crate::archive::partition::Hour;
use crate::config::Registry;
use crate::detect::replay::WINDOW;
use crate::model::{Millis, PointIdx, status};
use crate::review::replay::{
    self, ArchivedReading, ReplayHour, ReplayOptions, ReplayResult, SkippedFile,
};

use super::strength::ReplaySource;

const HOUR_MS: i64 = 3_600_000;

/// The readings of one point in `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The point.
    pub point: PointIdx,
    /// First event time.
    pub from: Millis,
    /// First event time not wanted.
    pub to: Millis,
}

/// Reads the readings each request asks for (sorted by event time), and
/// the files that could not be read.
pub fn collect(
    opts: &ReplayOptions,
    registry: &Registry,
    requests: &[Request],
) -> anyhow::Result<(Vec<Vec<ArchivedReading>>, Vec<SkippedFile>)> {
    let mut out = vec![Vec::new(); requests.len()];
    if requests.is_empty() {
        return Ok((out, Vec::new()));
    }
    let partitions: Vec<(Hour, std::path::PathBuf)> =
        replay::select_partitions(&opts.archive, opts.from, opts.to)
            .into_iter()
            .filter(|(h, _)| {
                let (a, b) = (h.0 * HOUR_MS, (h.0 + 1) * HOUR_MS);
                requests.iter().any(|r| r.from < b && r.to > a)
            })
            .collect();
    let mut by_point: HashMap<PointIdx, Vec<usize>> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        by_point.entry(r.point).or_default().push(i);
    }
    let mut result = ReplayResult::default();
    replay::read_sorted(
        opts,
        registry,
        &ReplayHour::readings_only(&partitions),
        &mut result,
        |_, rows, _| {
            for r in rows {
                if let Some(ids) = by_point.get(&r.point) {
                    for &i in ids {
                        if r.ts >= requests[i].from && r.ts < requests[i].to {
                            out[i].push(*r);
                        }
                    }
                }
            }
            Ok(())
        },
    )?;
    Ok((out, result.skipped))
}

/// A replayed finding whose repeated windows are looked for.
#[derive(Debug, Clone)]
pub struct ReplayTarget {
    /// The finding's position (the key of the answer).
    pub finding: usize,
    /// Its point.
    pub point: PointIdx,
    /// The point's readings in the finding's evidence window, sorted.
    pub readings: Vec<ArchivedReading>,
}

const BASE: u64 = 0x0000_0100_0000_01b3;

fn base_pow() -> u64 {
    (0..WINDOW).fold(1u64, |p, _| p.wrapping_mul(BASE))
}

fn enc(q: i16) -> u64 {
    (q as i64 as u64).wrapping_add(0x9e37_79b9)
}

/// A value in quanta, rounded half away from zero (as the detector does).
fn quantise(v: f64, quantum: f64) -> i16 {
    let x = (v / quantum).clamp(-30_000.0, 30_000.0);
    (x + 0.5f64.copysign(x)) as i16
}

fn valued(r: &ArchivedReading) -> bool {
    r.status & (status::NOT_A_VALUE | status::CALIBRATION) == 0 && r.value.is_finite()
}

/// The rolling window of one point while the archive streams past.
struct Rolling {
    q: Vec<i16>,
    ts: Vec<Millis>,
    hash: u64,
    changes: u32,
    last_ts: Millis,
}

impl Rolling {
    fn new() -> Rolling {
        Rolling {
            q: Vec::with_capacity(WINDOW + 1),
            ts: Vec::with_capacity(WINDOW + 1),
            hash: 0,
            changes: 0,
            last_ts: Millis::MIN,
        }
    }

    /// Adds one value; returns the hash and change count once the window
    /// is full.
    fn push(&mut self, q: i16, ts: Millis, pow: u64) -> Option<(u64, u32)> {
        if let Some(&prev) = self.q.last()
            && prev != q
        {
            self.changes += 1;
        }
        self.hash = self.hash.wrapping_mul(BASE).wrapping_add(enc(q));
        self.q.push(q);
        self.ts.push(ts);
        if self.q.len() > WINDOW {
            let old = self.q.remove(0);
            self.ts.remove(0);
            self.hash = self.hash.wrapping_sub(enc(old).wrapping_mul(pow));
            if self.q[0] != old {
                self.changes -= 1;
            }
        }
        (self.q.len() == WINDOW).then_some((self.hash, self.changes))
    }
}

/// One window of a target that may repeat an earlier one.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    target: usize,
    pos: usize,
    end: Millis,
}

/// For each target whose values repeat earlier windows of the archive: the
/// longest repeated run and its source. Also the files that could not be
/// read.
pub fn match_replays(
    opts: &ReplayOptions,
    registry: &Registry,
    targets: &[ReplayTarget],
) -> anyhow::Result<(HashMap<usize, ReplaySource>, Vec<SkippedFile>)> {
    let cfg = &registry.detect;
    let pow = base_pow();
    let quantum = |p: PointIdx| {
        registry
            .points
            .get(p as usize)
            .and_then(|m| m.sensor.gas())
            .map(|g| cfg.quantum(g))
    };
    // Every window of every target, by hash.
    let mut wanted: HashMap<u64, Vec<Wanted>> = HashMap::new();
    let mut lengths = Vec::with_capacity(targets.len());
    let mut until = Millis::MIN;
    for (t, target) in targets.iter().enumerate() {
        let Some(quantum) = quantum(target.point) else {
            lengths.push(0);
            continue;
        };
        let mut roll = Rolling::new();
        let mut n = 0;
        for r in target.readings.iter().filter(|r| valued(r)) {
            if r.ts <= roll.last_ts {
                continue;
            }
            roll.last_ts = r.ts;
            if let Some((hash, changes)) = roll.push(quantise(r.value, quantum), r.ts, pow)
                && changes >= cfg.replay_min_changes
            {
                wanted.entry(hash).or_default().push(Wanted {
                    target: t,
                    pos: n + 1 - WINDOW,
                    end: r.ts,
                });
            }
            n += 1;
            until = until.max(r.ts);
        }
        lengths.push(n);
    }
    if wanted.is_empty() {
        return Ok((HashMap::new(), Vec::new()));
    }
    // Stream the archive up to the last target's end.
    let partitions = replay::select_partitions(
        &opts.archive,
        opts.from,
        Some(opts.to.map_or(until + 1, |t| t.min(until + 1))),
    );
    let mut covered: Vec<Vec<bool>> = lengths.iter().map(|&n| vec![false; n]).collect();
    // (target, source point) → offsets of its matches.
    let mut offsets: BTreeMap<(usize, PointIdx), Vec<Millis>> = BTreeMap::new();
    let mut rolling: HashMap<PointIdx, Rolling> = HashMap::new();
    let mut result = ReplayResult::default();
    replay::read_sorted(
        opts,
        registry,
        &ReplayHour::readings_only(&partitions),
        &mut result,
        |_, rows, _| {
            for r in rows {
                let Some(q) = quantum(r.point) else { continue };
                if !valued(r) {
                    continue;
                }
                let roll = rolling.entry(r.point).or_insert_with(Rolling::new);
                if r.ts <= roll.last_ts {
                    continue;
                }
                roll.last_ts = r.ts;
                let Some((hash, changes)) = roll.push(quantise(r.value, q), r.ts, pow) else {
                    continue;
                };
                if changes < cfg.replay_min_changes {
                    continue;
                }
                let Some(list) = wanted.get(&hash) else {
                    continue;
                };
                for w in list {
                    let target = &targets[w.target];
                    let gap = if r.point == target.point {
                        WINDOW as i64
                            * registry
                                .points
                                .get(target.point as usize)
                                .map_or(1000, |m| m.polling_ms.max(1))
                    } else {
                        0
                    };
                    if r.ts <= w.end - gap {
                        covered[w.target][w.pos] = true;
                        offsets
                            .entry((w.target, r.point))
                            .or_default()
                            .push(w.end - r.ts);
                    }
                }
            }
            Ok(())
        },
    )?;
    let mut found = HashMap::new();
    for (t, target) in targets.iter().enumerate() {
        // Readings covered by a repeated window, and the longest run.
        let n = lengths[t];
        let mut by_reading = vec![false; n];
        for (pos, _) in covered[t].iter().enumerate().filter(|(_, c)| **c) {
            for c in by_reading.iter_mut().skip(pos).take(WINDOW) {
                *c = true;
            }
        }
        let (mut run, mut best) = (0, 0);
        for c in by_reading {
            run = if c { run + 1 } else { 0 };
            best = best.max(run);
        }
        if best == 0 {
            continue;
        }
        let Some(((_, src), offs)) = offsets
            .iter()
            .filter(|((tt, _), _)| *tt == t)
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.1.cmp(&a.0.1)))
        else {
            continue;
        };
        let mut offs = offs.clone();
        offs.sort_unstable();
        let offset_ms = offs[offs.len() / 2];
        let source = registry
            .points
            .get(*src as usize)
            .map_or(format!("#{src}"), |m| m.code.clone());
        found.insert(
            target.finding,
            ReplaySource {
                run: best,
                source,
                offset_ms,
            },
        );
    }
    Ok((found, result.skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rolling_hash_and_changes_depend_only_on_the_window() {
        let pow = base_pow();
        let series: Vec<i16> = (0..80).map(|i| ((i * 7) % 13) as i16).collect();
        let mut a = Rolling::new();
        let mut b = Rolling::new();
        let mut last_a = None;
        for (i, q) in series.iter().enumerate() {
            last_a = a.push(*q, i as i64, pow);
        }
        // b starts elsewhere and then sees the same last window.
        for q in [99i16, 98, 97] {
            b.push(q, 0, pow);
        }
        let mut last_b = None;
        for (i, q) in series[80 - WINDOW..].iter().enumerate() {
            last_b = b.push(*q, i as i64, pow);
        }
        assert_eq!(last_a, last_b);
        let changes = series[80 - WINDOW..]
            .windows(2)
            .filter(|p| p[0] != p[1])
            .count() as u32;
        assert_eq!(last_a.map(|x| x.1), Some(changes));
    }

    #[test]
    fn values_quantise_half_away_from_zero() {
        assert_eq!(quantise(0.946, 0.01), 95);
        assert_eq!(quantise(0.944, 0.01), 94);
        assert_eq!(quantise(-0.005, 0.01), -1);
        assert_eq!(quantise(23.4, 1.0), 23);
        assert_eq!(quantise(1e9, 1.0), 30_000);
    }
}
