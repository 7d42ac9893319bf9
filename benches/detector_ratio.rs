//! The suite's cost over the over-limit-only path's, in wall time, measured
//! so that a machine whose speed drifts (a shared or virtual one) does not
//! skew the ratio: the two paths run in alternation, a short slice of
//! batches each, many times, in one process; each slice gives the time per
//! batch of 512 readings, and the ratio is taken of the medians (and of the
//! fastest slices) of the two paths, per case.
//!
//! The feed, province and batches are those of `detector_core`
//! (`benches/support/detector_feed.rs`). Run:
//! `cargo bench --bench detector_ratio` (a few seconds); with arguments
//! `SLICES BATCHES_PER_SLICE` to change the defaults (200 × 100).

use std::time::Duration;

#[path = "support/detector_feed.rs"]
mod feed;

use feed::{BATCH, Feed, registry};

/// Median of a non-empty list.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("SLICES BATCHES_PER_SLICE are numbers"))
        .collect();
    let slices = args.first().copied().unwrap_or(200);
    let per_slice = args.get(1).copied().unwrap_or(100);
    let (plain, suite) = (registry(false), registry(true));
    for (case, episodes) in [("with_episodes", true), ("normal_only", false)] {
        let mut feeds = [Feed::new(&plain, episodes), Feed::new(&suite, episodes)];
        // One warm-up pass each: every point's state made, windows filled.
        for f in &mut feeds {
            f.run((f.readings.len() / BATCH) as u64);
        }
        let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..slices {
            for (f, t) in feeds.iter_mut().zip(&mut times) {
                let (elapsed, _) = f.run(per_slice);
                t.push(elapsed.as_secs_f64() / per_slice as f64);
            }
        }
        let fastest = |t: &[f64]| t.iter().copied().fold(f64::INFINITY, f64::min);
        let us = |s: f64| Duration::from_secs_f64(s).as_nanos() as f64 / 1000.0;
        let (min_ol, min_fs) = (fastest(&times[0]), fastest(&times[1]));
        let (med_ol, med_fs) = (median(&mut times[0]), median(&mut times[1]));
        println!(
            "{case}: overlimit_only {:.2} µs, full_suite {:.2} µs per batch of {BATCH} (medians), \
             suite cost {:.2}x (fastest slices: {:.2} / {:.2} µs, {:.2}x)",
            us(med_ol),
            us(med_fs),
            med_fs / med_ol,
            us(min_ol),
            us(min_fs),
            min_fs / min_ol
        );
    }
}
