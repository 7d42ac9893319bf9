//! National-file ingest speed: records/s of a CDSS file parsed into
//! validated readings (decode, split, per-record check), and the same
//! through the detector core of one shard.
//!
//! Run: `cargo bench --bench netfile_ingest` (figures in BENCHMARKS.md).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minewatch::config::{IngestConfig, Registry, SharedRegistry};
use minewatch::ingest::Decoder;
use minewatch::ingest::netfile::format::write;
use minewatch::ingest::netfile::format::{decode_text, split};
use minewatch::ingest::netfile::watch::cdss_readings;
use minewatch::model::SensorType;
use minewatch::pipeline::ShardCore;
use minewatch::simulators::{ProvinceSpec, province};

/// 2026-11-23 16:00:00 Beijing.
const AT: i64 = 1_795_420_800_000;

fn bench(c: &mut Criterion) {
    // One mine with 512 points: one CDSS file of 512 records.
    let config = province(ProvinceSpec {
        mines: 1,
        points: 512,
        polling_secs: 30.0,
    });
    let registry = SharedRegistry::new(Registry::build(&config, 1));
    let decoder = Decoder::new(registry.clone(), &IngestConfig::default(), 1 << 20);
    let mine = &config.mines[0];
    let records: Vec<Vec<String>> = mine
        .points
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let sensor = SensorType::parse(&p.sensor).unwrap_or(SensorType::Other(0));
            let value = 0.2 + (j % 17) as f64 * 0.01;
            write::cdss(
                &p.code,
                sensor.name(),
                p.place.as_deref().unwrap_or(""),
                value,
                "%",
                0,
                AT,
            )
        })
        .collect();
    let text = write::file(&write::header(&mine.code, &mine.name, AT), &records);
    let bytes = text.into_bytes();
    let n = records.len() as u64;

    let mut g = c.benchmark_group("netfile");
    g.throughput(Throughput::Elements(n));
    g.bench_function("cdss_parse_and_validate", |b| {
        b.iter(|| {
            let (text, _) = decode_text(black_box(&bytes)).expect("utf-8");
            let r = split(&text).expect("records");
            let (readings, refused) = cdss_readings(&decoder, 0, &r, AT + 1000);
            assert!(refused.is_empty());
            black_box(readings.len())
        })
    });
    let mut core = ShardCore::new(registry.clone(), 0, AT);
    let mut out = Vec::new();
    let mut arrival = AT;
    g.bench_function("cdss_parse_validate_and_detect", |b| {
        b.iter(|| {
            arrival += 1000;
            let (text, _) = decode_text(black_box(&bytes)).expect("utf-8");
            let r = split(&text).expect("records");
            let (readings, _) = cdss_readings(&decoder, 0, &r, arrival);
            out.clear();
            core.process(&readings, arrival, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
