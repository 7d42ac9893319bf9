//! The embedded MQTT broker (rumqttd) used by `minewatch demo`, the tests
//! and the benches, so that none of them needs an outside broker.
//!
//! rumqttd's `start` blocks forever on its own runtimes and has no shutdown,
//! so it runs on a plain thread for the life of the process.
//!
//! [`start_embedded`] is open (anonymous, no topic rules): for tests and
//! benches on loopback. [`start_secured`] is what the demo runs: user names
//! and passwords and per-user topic rules. rumqttd 0.20 checks a user name
//! and password at CONNECT but has no hook on PUBLISH or SUBSCRIBE, so the
//! rules are enforced by [`acl`]: a small MQTT 3.1.1 relay in front of a
//! rumqttd that listens on another loopback port and admits only the relay
//! (a random password made at start).

pub mod acl;

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

/// Starts an open broker on `127.0.0.1:port` (0 picks a free port): no
/// user names, no topic rules — for tests and benches only; the demo runs
/// [`start_secured`]. Waits until it accepts connections and returns its
/// address.
pub fn start_embedded(port: u16) -> anyhow::Result<SocketAddr> {
    let listen = listen_addr(port)?;
    start_rumqttd(listen, None)?;
    wait_ready(listen, None)?;
    Ok(listen)
}

/// Starts a broker on `127.0.0.1:port` (0 picks a free port) that admits
/// only `users`, each publishing and subscribing only where its rules say
/// (see [`acl`]). Waits until it accepts connections and returns its
/// address.
pub fn start_secured(port: u16, users: Vec<acl::BrokerUser>) -> anyhow::Result<SocketAddr> {
    let listen = listen_addr(port)?;
    let inner: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let relay = acl::relay_login();
    start_rumqttd(
        inner,
        Some(HashMap::from([(
            relay.username.clone(),
            relay.password.clone(),
        )])),
    )?;
    wait_ready(inner, Some((&relay.username, &relay.password)))?;
    acl::start_relay(listen, inner, acl::Acl::new(users)?, relay)?;
    Ok(listen)
}

/// `127.0.0.1:port` (a free one for 0), refused when something answers
/// there already.
fn listen_addr(port: u16) -> anyhow::Result<SocketAddr> {
    let port = if port == 0 { free_port()? } else { port };
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
        anyhow::bail!(
            "port {port} is already in use; pick another with --mqtt-port (an outside broker \
             such as Mosquitto may own it)"
        );
    }
    Ok(listen)
}

/// Starts rumqttd on `listen`; with `auth`, it admits only those user
/// names and passwords.
fn start_rumqttd(listen: SocketAddr, auth: Option<HashMap<String, String>>) -> anyhow::Result<()> {
    let server = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 500,
            auth,
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
    Ok(())
}

/// Waits (10 s at most) until the broker on `addr` accepts a CONNECT.
fn wait_ready(addr: SocketAddr, login: Option<(&str, &str)>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if mqtt_handshake(addr, login).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("the embedded broker did not answer on {addr} within 10 s")
}

/// Connects with a minimal MQTT 3.1.1 CONNECT (with `login` when given),
/// expects an accepting CONNACK and disconnects cleanly (a bare TCP probe
/// would be logged by the broker as a failed connection).
fn mqtt_handshake(addr: SocketAddr, login: Option<(&str, &str)>) -> std::io::Result<()> {
    use std::io::{Read, Write};
    const ID: &[u8] = b"minewatch-probe";
    let mut body = vec![0, 4];
    body.extend_from_slice(b"MQTT");
    let flags = if login.is_some() { 0xC2 } else { 0x02 };
    body.extend_from_slice(&[4, flags, 0, 10]);
    let mut field = |b: &[u8]| {
        body.extend_from_slice(&(b.len() as u16).to_be_bytes());
        body.extend_from_slice(b);
    };
    field(ID);
    if let Some((user, password)) = login {
        field(user.as_bytes());
        field(password.as_bytes());
    }
    // Remaining length: one byte while under 128 (the probe always is).
    let mut connect = vec![0x10, body.len() as u8];
    connect.extend_from_slice(&body);
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
