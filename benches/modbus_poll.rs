//! Modbus polling throughput: registers/s and points/s that the poller
//! reads from the simulator's Modbus TCP server on loopback, in one
//! process on this machine.
//!
//! Setup: simulated mines of 32 points each, served by
//! `simulators/modbus_server.rs` with the generated register map (per poll
//! of one mine: one holding request of 50 registers, one input request of
//! 29 status registers, one coil request of 3 bits; 32 readings). Every
//! device polls with `poll_ms = 1`, so the poller runs flat out (its
//! schedule skips ahead instead of bunching up). Readings are consumed
//! straight from the poller's queue (no shards, no detectors: those have
//! their own benches).
//!
//! Cases, 5 s each after a 1 s warm-up:
//! - `1 link × 1 device`: one connection, one request in flight — the
//!   round-trip bound;
//! - `1 link × 20 devices`: 20 unit ids behind one gateway address (still
//!   one request in flight);
//! - `4 links × 5 devices`: four servers, four connections polled in
//!   parallel.
//!
//! Run: `cargo bench --bench modbus_poll`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use minewatch::config::{Config, Registry};
use minewatch::ingest::modbus::ModbusSource;
use minewatch::metrics::Metrics;
use minewatch::pipeline::SystemClock;
use minewatch::simulators::modbus_server::{
    ModbusServer, RegisterImages, ScenarioDriver, ServedMine, device_config,
};
use minewatch::simulators::{ProvinceSpec, Scenario, province};
use tokio::sync::watch;

const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "{:<22} {:>12} {:>12} {:>12} {:>10} {:>14}",
        "case", "registers/s", "points/s", "requests/s", "polls/s", "mean poll µs"
    );
    for (links, per_link) in [(1, 1), (1, 20), (4, 5)] {
        match rt.block_on(case(links, per_link)) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("modbus_poll failed: {e:#}");
                std::process::exit(1);
            }
        }
    }
}

async fn case(links: usize, per_link: usize) -> anyhow::Result<String> {
    let mines = links * per_link;
    let mut config: Config = province(ProvinceSpec {
        mines,
        points: 32,
        polling_secs: 5.0,
    });
    let mut servers = Vec::new();
    let mut drivers = Vec::new();
    for l in 0..links {
        let images = RegisterImages::new();
        let server = ModbusServer::start("127.0.0.1:0".parse()?, images.clone()).await?;
        let mut served = Vec::new();
        for u in 0..per_link {
            let m = l * per_link + u;
            let unit = u as u8 + 1;
            let mut device = device_config(
                &config.mines[m],
                &format!("bench-{m}"),
                &server.addr.to_string(),
                unit,
                1,
            );
            device.timeout_ms = 1000;
            served.push(ServedMine {
                mine: m,
                unit,
                device: device.clone(),
            });
            config.modbus.devices.push(device);
        }
        let mut driver = ScenarioDriver::new(&config, served, Scenario::Normal, 7, images);
        driver.step(0.0);
        drivers.push(driver);
        servers.push(server);
    }
    let registry = Registry::build(&config, 1);
    let metrics = Arc::new(Metrics::new(1));
    let source = ModbusSource::build(
        &config.modbus,
        &registry,
        metrics.clone(),
        Arc::new(SystemClock),
    )?;
    let addresses: Vec<usize> = source
        .links()
        .iter()
        .flat_map(|l| l.devices.iter().map(|d| d.plan.addresses()))
        .collect();
    let requests_per_poll = source.links()[0].devices[0].plan.requests.len();
    let per_device = addresses[0];
    anyhow::ensure!(
        addresses.iter().all(|&a| a == per_device),
        "every device reads the same map"
    );
    let (stop, stop_rx) = watch::channel(false);
    let (mut rx, tasks) = source.spawn(stop_rx);
    let warm_until = Instant::now() + WARM_UP;
    while Instant::now() < warm_until {
        rx.recv().await;
    }
    let (mut polls, mut points, mut faulted) = (0u64, 0u64, 0u64);
    let hist = &metrics.modbus_poll_seconds;
    let (sum0, count0) = (hist.get_sample_sum(), hist.get_sample_count());
    let started = Instant::now();
    while started.elapsed() < MEASURE {
        let Some(p) = rx.recv().await else { break };
        polls += 1;
        points += p.readings.len() as u64;
        faulted += p.readings.iter().filter(|r| r.value.is_nan()).count() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    let (sum1, count1) = (hist.get_sample_sum(), hist.get_sample_count());
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    for s in servers {
        s.stop().await;
    }
    drop(drivers);
    anyhow::ensure!(faulted == 0, "{faulted} readings without a value");
    let mean_poll_us = (sum1 - sum0) / (count1 - count0).max(1) as f64 * 1e6;
    Ok(format!(
        "{:<22} {:>12.0} {:>12.0} {:>12.0} {:>10.0} {:>14.1}",
        format!("{links} link × {per_link} device"),
        polls as f64 * per_device as f64 / secs,
        points as f64 / secs,
        polls as f64 * requests_per_poll as f64 / secs,
        polls as f64 / secs,
        mean_poll_us
    ))
}
