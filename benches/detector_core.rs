//! Detector-core throughput on one core: readings per second through
//! [`minewatch::pipeline::ShardCore::process`] (the offline detector's
//! arrival bookkeeping plus the over-limit state machine of every point),
//! with no queues, threads, decoding or alert stage around it.
//!
//! Setup: a simulated province of 20 mines × 32 points (640 points, polling
//! 5 s), one shard, and 100 pre-built rounds of one reading per point (64 000
//! readings, event time advancing 5 s per round), fed in batches of 512.
//!
//! - `with_episodes`: about 0.3 % of the readings take a face methane point
//!   over its alarm line (1.2 %, every fifth of them 1.6 %, which also
//!   reaches the evacuation line) and the next round brings it back, so the
//!   episode open/evacuate/close path and finding output run.
//! - `normal_only`: the same readings with every value normal: no findings.
//!
//! Each case runs twice: `overlimit_only` with `[detect] enabled = false`
//! (the offline bookkeeping and the over-limit state machine) and
//! `full_suite` with every data-anomaly and falsification detector on (range, timestamps, flat line, spike, rate,
//! hugging, drop after approach, interlock, uniform noise, the replay
//! index and the air-path minute series).
//!
//! Values are realistic enough for the suite: a slow sine drift plus a
//! little hashed noise per point, quantised (methane 0.01 %, CO 1 ppm), so
//! nothing is flat, uniform or repeated. Each time the pre-built readings
//! wrap around they are rebuilt (outside the timed region) one pass later
//! in event time with fresh noise, so no reading is ever late and no window
//! repeats.
//!
//! Run: `cargo bench --bench detector_core` (criterion reports `thrpt` in
//! elements, i.e. readings, per second). Aims: ≥ 10 M readings/s per
//! core; the full suite no more than 3× the over-limit-only cost.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/detector_feed.rs"]
mod feed;

use feed::{BATCH, Feed, registry};

fn bench(c: &mut Criterion) {
    for (suite, path) in [(false, "overlimit_only"), (true, "full_suite")] {
        let reg = registry(suite);
        // Sanity: three passes of each feed produce what they are meant
        // to; normal traffic raises nothing, not even with the full suite.
        for (episodes, want_findings) in [(true, true), (false, false)] {
            let mut feed = Feed::new(&reg, episodes);
            let batches = 3 * (feed.readings.len() / BATCH) as u64;
            let (_, findings) = feed.run(batches);
            assert_eq!(
                findings > 0,
                want_findings,
                "{path} episodes={episodes}: {:?}",
                feed.out
            );
            if episodes {
                eprintln!(
                    "{path}/with_episodes: {findings} findings per {} readings",
                    batches as usize * BATCH
                );
            }
        }
        let mut group = c.benchmark_group(format!("detector_core/{path}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        for (name, episodes) in [("with_episodes", true), ("normal_only", false)] {
            let mut feed = Feed::new(&reg, episodes);
            group.bench_function(name, |b| b.iter_custom(|iters| feed.run(iters).0));
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
