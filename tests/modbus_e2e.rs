//! End-to-end test of the Modbus source through the whole daemon, against
//! the simulator's own Modbus TCP server (`simulators/modbus_server.rs`):
//! a methane value written into a holding register becomes an evacuation
//! alert in `/api/alerts`; the server going away becomes status-16
//! readings and a `mine_offline` alert; its return resolves it.

mod common;

use std::time::Duration;

use common::{eventually, start, test_province};
use minewatch::simulators::Scenario;
use minewatch::simulators::modbus_server::{
    ModbusServer, RegisterImages, ScenarioDriver, ServedMine, device_config,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_readings_raise_and_resolve_alerts_through_the_daemon() {
    // Mine 1 is polled over Modbus every 200 ms; its points poll "every
    // second", so silence of 3 s makes it offline.
    let mut config = test_province(2, 32, 1.0);
    let images = RegisterImages::new();
    let server = ModbusServer::start("127.0.0.1:0".parse().expect("addr"), images.clone())
        .await
        .expect("modbus server");
    let addr = server.addr;
    let mine = config.mines[1].clone();
    let mut device = device_config(&mine, "sim-1", &addr.to_string(), 7, 200);
    device.timeout_ms = 100;
    config.modbus.max_backoff_ms = 500;
    config.modbus.devices.push(device.clone());
    let mut driver = ScenarioDriver::new(
        &config,
        vec![ServedMine {
            mine: 1,
            unit: 7,
            device: device.clone(),
        }],
        Scenario::Normal,
        1,
        images.clone(),
    );
    driver.step(0.0);
    let h = start(config, "modbus-e2e").await;

    eventually(WAIT, "modbus readings are accepted", || async {
        h.metric("minewatch_readings_accepted_total{source=\"modbus\"}")
            .await
            >= 64.0
    })
    .await;

    // Face T1 methane (point 0, f32 ABCD) to 1.7 %: over the power-off line.
    let methane = &device.registers[0];
    assert_eq!(methane.point, mine.points[0].code);
    images.set_point(7, methane, 1.7, 0);
    eventually(WAIT, "an evacuation alert for the Modbus mine", || async {
        h.alerts("kind=evacuation&active=true").await.len() == 1
    })
    .await;
    let evac = &h.alerts("kind=evacuation").await[0];
    assert_eq!(evac["mine"], json!(mine.code));
    assert_eq!(evac["point"], json!(methane.point));
    assert_eq!(evac["value"], json!(1.7));
    images.set_point(7, methane, 0.3, 0);
    eventually(WAIT, "the evacuation resolves", || async {
        h.alerts("kind=evacuation&active=true").await.is_empty()
    })
    .await;

    // The substation goes away: readings keep coming, flagged 16, and the
    // offline detector takes the mine offline.
    server.stop().await;
    eventually(WAIT, "the Modbus mine goes offline", || async {
        h.alerts(&format!("kind=mine_offline&active=true&mine={}", mine.code))
            .await
            .len()
            == 1
    })
    .await;
    assert!(
        h.metric("minewatch_modbus_faults_total{device=\"sim-1\",reason=\"unreachable\"}")
            .await
            > 0.0
    );
    assert_eq!(
        h.metric("minewatch_modbus_connected{device=\"sim-1\"}")
            .await,
        0.0
    );

    // It comes back on the same address: the poller reconnects.
    let server = ModbusServer::start(addr, images.clone())
        .await
        .expect("restart on the same port");
    eventually(WAIT, "the mine is back online", || async {
        h.alerts(&format!("kind=mine_offline&active=true&mine={}", mine.code))
            .await
            .is_empty()
    })
    .await;
    assert_eq!(
        h.metric("minewatch_modbus_connected{device=\"sim-1\"}")
            .await,
        1.0
    );
    h.stop().await;
    server.stop().await;
}
