//! Instructions per reading through [`minewatch::pipeline::ShardCore::process`],
//! for `valgrind --tool=callgrind`: the `detector_core` feed (the same
//! province, readings and batches) run for a fixed number of batches, so
//! that the count is repeatable whatever else the machine is doing.
//!
//! Run: `benches/callgrind.sh` builds this bench and prints, for each path
//! (`overlimit_only`, `full_suite`) and case (`with_episodes`,
//! `normal_only`), the instructions per reading inside `ShardCore::process`:
//! the difference between a run of 625 and one of 125 batches of 512,
//! each after one warm-up pass, divided by 500 × 512 readings.
//!
//! By hand: `detector_instructions PATH CASE BATCHES` under `valgrind
//! --tool=callgrind --toggle-collect='*ShardCore*process*'`. Without
//! arguments (as `cargo bench` runs every bench) it prints its usage.

#[path = "support/detector_feed.rs"]
mod feed;

use feed::{BATCH, Feed, registry};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [path, case, batches] = args.as_slice() else {
        eprintln!(
            "usage: detector_instructions overlimit_only|full_suite with_episodes|normal_only BATCHES \
             (see benches/callgrind.sh)"
        );
        return;
    };
    let suite = match path.as_str() {
        "overlimit_only" => false,
        "full_suite" => true,
        other => panic!("unknown path {other:?}"),
    };
    let episodes = match case.as_str() {
        "with_episodes" => true,
        "normal_only" => false,
        other => panic!("unknown case {other:?}"),
    };
    let batches: u64 = batches.parse().expect("BATCHES is a number");
    let reg = registry(suite);
    let mut feed = Feed::new(&reg, episodes);
    // One warm-up pass: every point's state made and its windows filled.
    feed.run((feed.readings.len() / BATCH) as u64);
    let (_, findings) = feed.run(batches);
    println!("{path}/{case}: {batches} batches, {findings} findings");
}
