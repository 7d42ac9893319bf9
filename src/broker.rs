//! The embedded MQTT broker (rumqttd) used by `minewatch demo`, the tests
//! and the benches, so that none of them needs an outside broker.
//!
//! rumqttd's `start` blocks forever on its own runtimes and has no shutdown,
//! so it runs on a plain thread for the life of the process.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Largest payload the embedded broker accepts, bytes.
pub const MAX_PAYLOAD: usize = 4 << 20;

/// A free loopback port (bound and released; racy only against other
/// programs picking ports at the same moment).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a broker on `127.0.0.1:port` (0 picks a free port) and waits until
/// it accepts connections. Returns its address.
pub fn start_embedded(port: u16) -> anyhow::Result<SocketAddr> {
    let port = if port == 0 { free_port()? } else { port };
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
        anyhow::bail!(
            "port {port} is already in use; pick another with --mqtt-port (an outside broker \
             such as Mosquitto may own it)"
        );
    }
    let server = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 500,
            max_segment_size: 64 << 20,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .context("cannot start the broker thread")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if mqtt_handshake(listen).is_ok() {
            return Ok(listen);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("the embedded broker did not answer on {listen} within 10 s")
}

/// Connects with a minimal MQTT 3.1.1 CONNECT, expects an accepting CONNACK
/// and disconnects cleanly (a bare TCP probe would be logged by the broker
/// as a failed connection).
fn mqtt_handshake(addr: SocketAddr) -> std::io::Result<()> {
    use std::io::{Read, Write};
    const ID: &[u8] = b"minewatch-probe";
    let mut connect = vec![0x10, (12 + ID.len()) as u8, 0, 4];
    connect.extend_from_slice(b"MQTT");
    connect.extend_from_slice(&[4, 0x02, 0, 10, 0, ID.len() as u8]);
    connect.extend_from_slice(ID);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(&connect)?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack)?;
    s.write_all(&[0xE0, 0x00])?;
    if connack == [0x20, 0x02, 0x00, 0x00] {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected CONNACK {connack:?}"
        )))
    }
}
