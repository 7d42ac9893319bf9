//! Replayed-data detection (回放/拷贝数据): one shard-wide index of windows of
//! quantised values, fed by the rolling hash each point keeps in
//! [`crate::detect::falsify::PointFalsify`].
//!
//! Rule: a window of [`WINDOW`] quantised values of a point that repeats an
//! earlier window of the same point (ending at least a window's length
//! earlier) or of another point of the same shard is a replay. Windows with
//! fewer than `replay_min_changes` changes between successive values are
//! ignored (a steady value repeats naturally). Only windows whose hash falls
//! in one of `replay_sample` classes are looked up and indexed; the choice
//! is by content (winnowing), so a copy is sampled at the same places as
//! its original. The index is a fixed table of 2^`replay_table_bits`
//! slots of 16 bytes, allocated on first use; a new window overwrites whatever its slot
//! held, so the memory is bounded and the oldest windows are forgotten
//! first only on average (a known blind spot on very large shards).

use crate::config::detect::DetectConfig;
use crate::model::{Millis, PointIdx};

/// Readings per hashed window.
pub const WINDOW: usize = crate::config::detect::REPLAY_WINDOW;

const BASE: u64 = 0x0000_0100_0000_01b3;

/// BASE^WINDOW, to take the oldest value out of the rolling hash.
const BASE_POW: u64 = {
    let mut p: u64 = 1;
    let mut i = 0;
    while i < WINDOW {
        p = p.wrapping_mul(BASE);
        i += 1;
    }
    p
};

/// One indexed window (16 bytes).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    hash: u64,
    point: PointIdx,
    /// Event time of the window's last reading, seconds since 2020-01-01
    /// UTC (0 = empty).
    secs: u32,
}

/// 2020-01-01T00:00:00Z in ms: slot times count seconds from here.
const SLOT_EPOCH_MS: Millis = 1_577_836_800_000;

fn slot_secs(ts: Millis) -> u32 {
    ((ts - SLOT_EPOCH_MS).max(1000) / 1000).min(i64::from(u32::MAX)) as u32
}

/// The shard-wide index of windows.
#[derive(Debug, Default)]
pub struct ReplayIndex {
    slots: Vec<Slot>,
    bits: u32,
}

/// What a quantised value adds to the rolling hash.
const fn enc(v: i16) -> u64 {
    (v as i64 as u64).wrapping_add(0x9e37_79b9)
}

/// The hash of `values` worked out from scratch: what the rolling hash
/// equals once they are the last [`WINDOW`] values it took.
const fn window_hash(values: &[i16]) -> u64 {
    let mut h: u64 = 0;
    let mut i = 0;
    while i < values.len() {
        h = h.wrapping_mul(BASE).wrapping_add(enc(values[i]));
        i += 1;
    }
    h
}

fn mix(mut h: u64) -> u64 {
    // splitmix64 finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl ReplayIndex {
    /// An empty index sized by `cfg` (the table is allocated on first use).
    pub fn new(cfg: &DetectConfig) -> ReplayIndex {
        ReplayIndex {
            slots: Vec::new(),
            bits: cfg.replay_table_bits,
        }
    }

    /// The rolling hash after `new` enters and `old`, the value a window
    /// ago, leaves. A point starts from [`ReplayIndex::ZEROS`] with a ring
    /// of zeros, so there is always a value to take out.
    #[inline]
    pub fn roll(hash: u64, new: i16, old: i16) -> u64 {
        hash.wrapping_mul(BASE)
            .wrapping_add(enc(new))
            .wrapping_sub(enc(old).wrapping_mul(BASE_POW))
    }

    /// The hash of a window of [`WINDOW`] zeros. A point whose ring starts
    /// as zeros starts from it and always takes the value a window ago out:
    /// once it has taken a window of real values, its hash is
    /// `window_hash` of them (the zeros' terms cancel).
    pub const ZEROS: u64 = window_hash(&[0; WINDOW]);

    /// True when the window with this hash is one the index samples.
    #[inline]
    pub fn sampled(hash: u64, sample: u32) -> bool {
        // One multiply by an odd constant spreads the rolling hash (whose
        // high bits already depend on every value of the window) over its
        // top 32 bits; multiply-shift maps those onto 0..sample without a
        // division; class 0 is sampled. The full mix is kept for the
        // table's slot, which only sampled windows need.
        let spread = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        (spread * u64::from(sample.max(1))) >> 32 == 0
    }

    /// Looks the window up and indexes it; true when it repeats an earlier
    /// window of another point, or of the same point ending at least
    /// `min_gap_ms` earlier.
    pub fn check_and_insert(
        &mut self,
        hash: u64,
        point: PointIdx,
        ts: Millis,
        min_gap_ms: i64,
        cfg: &DetectConfig,
    ) -> bool {
        if self.slots.is_empty() {
            self.bits = cfg.replay_table_bits.clamp(8, 28);
            self.slots = vec![Slot::default(); 1 << self.bits];
        }
        let m = mix(hash ^ 0x5bd1_e995);
        let i = (m >> (64 - self.bits)) as usize;
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        let secs = slot_secs(ts);
        let repeat = slot.secs != 0
            && slot.hash == hash
            && (slot.point != point || i64::from(secs) - i64::from(slot.secs) >= min_gap_ms / 1000);
        if slot.hash == hash && slot.point == point && !repeat {
            // The same window seen again (a resend): keep the first time.
            return false;
        }
        if !repeat {
            *slot = Slot { hash, point, secs };
        }
        repeat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rolling hash after taking `values`, as a point does.
    fn rolled(values: &[i16]) -> u64 {
        let mut ring = [0i16; WINDOW];
        let mut h = ReplayIndex::ZEROS;
        for (i, v) in values.iter().enumerate() {
            h = ReplayIndex::roll(h, *v, ring[i % WINDOW]);
            ring[i % WINDOW] = *v;
        }
        h
    }

    #[test]
    fn starting_from_a_window_of_zeros_gives_the_same_hashes_once_full() {
        let a: Vec<i16> = (0..70).map(|i| (i * 11) % 17 - 5).collect();
        for n in WINDOW..=a.len() {
            assert_eq!(
                rolled(&a[..n]),
                window_hash(&a[n - WINDOW..n]),
                "after {n} values"
            );
        }
    }

    #[test]
    fn the_rolling_hash_depends_only_on_the_last_window() {
        let a: Vec<i16> = (0..40).map(|i| (i * 7) % 13).collect();
        let mut b: Vec<i16> = vec![99; 8];
        b.extend_from_slice(&a[8..]);
        assert_eq!(rolled(&a), rolled(&b));
        let mut c = a.clone();
        c[39] += 1;
        assert_ne!(rolled(&a), rolled(&c));
    }

    #[test]
    fn repeats_of_other_points_and_of_older_windows_are_found() {
        let cfg = DetectConfig {
            replay_table_bits: 10,
            ..DetectConfig::default()
        };
        let mut idx = ReplayIndex::new(&cfg);
        let t = 1_795_392_000_000;
        assert!(!idx.check_and_insert(42, 1, t + 1000, 160_000, &cfg));
        // The same point soon after (overlapping): not a repeat.
        assert!(!idx.check_and_insert(42, 1, t + 5000, 160_000, &cfg));
        // Another point: a repeat.
        assert!(idx.check_and_insert(42, 2, t + 6000, 160_000, &cfg));
        // The same point a day later: a repeat.
        assert!(idx.check_and_insert(42, 1, t + 86_400_000, 160_000, &cfg));
    }
}
