//! User names, passwords and topic rules for the embedded broker: an MQTT
//! 3.1.1 relay that every client talks to, in front of a rumqttd that
//! admits only the relay.
//!
//! What the relay enforces, per connection:
//! - CONNECT must carry a known user name and its password (compared in
//!   constant time); otherwise CONNACK 4 (bad user name or password) and
//!   the connection is closed. A will message must be on a topic the user
//!   may publish to (else CONNACK 5, not authorised).
//! - The client id is put under the user's name (`{user}:{client id}`), so
//!   one user can never take over another's session (and its queued
//!   messages) by reusing its client id.
//! - Every PUBLISH topic must match one of the user's `publish` filters and
//!   every SUBSCRIBE filter must lie wholly within one of its `subscribe`
//!   filters (`mines/+/telemetry` is not within `mines/m1/#`). A refused
//!   PUBLISH or SUBSCRIBE closes the connection (MQTT 3.1.1 has no way to
//!   refuse a publish; Mosquitto drops it silently, which hides the
//!   mistake), and is logged with the user and the topic.
//! - `%u` in a rule stands for the user's name: a mine's gateway named by
//!   its mine code gets `mines/%u/#`.
//!
//! Not enforced here: retained-message and `$SYS` specifics (the inner
//! broker keeps no `$SYS` tree) and MQTT 5 (the relay speaks 3.1.1 only,
//! a v5 CONNECT is refused). The inner rumqttd listens on loopback with a
//! random password made at start, so a local process cannot go around the
//! relay without that password.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, Publish, Subscribe,
};
use rumqttc::mqttbytes::{self, FixedHeader, PacketType};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::MAX_PAYLOAD;

/// Largest packet the relay frames (the broker's payload limit and room
/// for the topic and headers).
const MAX_PACKET: usize = MAX_PAYLOAD + 64 * 1024;
/// How long a new connection may take to send its CONNECT.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// One user of the broker and where it may publish and subscribe.
#[derive(Debug, Clone)]
pub struct BrokerUser {
    /// User name (MQTT CONNECT username).
    pub name: String,
    /// Password.
    pub password: String,
    /// Topic filters it may publish to; `%u` is its name.
    pub publish: Vec<String>,
    /// Topic filters its subscriptions must lie within; `%u` is its name.
    pub subscribe: Vec<String>,
}

impl BrokerUser {
    /// A mine's gateway: publishes under `{prefix}mines/{mine}/` only and
    /// subscribes to nothing.
    pub fn mine(name: &str, password: &str, prefix: &str, mines: &[&str]) -> BrokerUser {
        BrokerUser {
            name: name.into(),
            password: password.into(),
            publish: mines
                .iter()
                .map(|m| format!("{prefix}mines/{m}/#"))
                .collect(),
            subscribe: Vec::new(),
        }
    }

    /// Everything: the daemon itself (reads every mine, publishes alerts).
    pub fn daemon(name: &str, password: &str) -> BrokerUser {
        BrokerUser {
            name: name.into(),
            password: password.into(),
            publish: vec!["#".into()],
            subscribe: vec!["#".into()],
        }
    }

    /// Whether it may publish to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        mqttbytes::valid_topic(topic) && self.publish.iter().any(|p| within(topic, p))
    }

    /// Whether it may subscribe to `filter`.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        mqttbytes::valid_filter(filter) && self.subscribe.iter().any(|p| within(filter, p))
    }
}

/// True when every topic `filter` matches is matched by `rule` (for a
/// topic without wildcards: `rule` matches it). Topics starting with `$`
/// are matched only by rules naming them.
pub fn within(filter: &str, rule: &str) -> bool {
    if filter.starts_with('$') && !rule.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut r = rule.split('/');
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(_), Some("+")) => return false,
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The users of one broker, by name.
#[derive(Debug)]
pub struct Acl {
    users: Vec<BrokerUser>,
}

impl Acl {
    /// Checks the users (names unique and not empty, rules valid filters)
    /// and expands `%u`.
    pub fn new(users: Vec<BrokerUser>) -> anyhow::Result<Acl> {
        let mut out: Vec<BrokerUser> = Vec::with_capacity(users.len());
        for mut u in users {
            anyhow::ensure!(
                !u.name.is_empty() && !u.name.contains([':', '/', '+', '#', '$']),
                "broker user {:?}: a name is not empty and has none of : / + # $",
                u.name
            );
            anyhow::ensure!(
                !out.iter().any(|o| o.name == u.name),
                "broker user {:?} twice",
                u.name
            );
            anyhow::ensure!(
                !u.password.is_empty(),
                "broker user {:?} has no password",
                u.name
            );
            for rule in u.publish.iter_mut().chain(u.subscribe.iter_mut()) {
                *rule = rule.replace("%u", &u.name);
                anyhow::ensure!(
                    mqttbytes::valid_filter(rule),
                    "broker user {:?}: {rule:?} is not a topic filter",
                    u.name
                );
            }
            out.push(u);
        }
        Ok(Acl { users: out })
    }

    /// The user `name` if `password` is its password.
    pub fn check(&self, name: &str, password: &str) -> Option<&BrokerUser> {
        // Compare digests, every byte: the time does not tell how much of
        // a password was right.
        let given = Sha256::digest(password.as_bytes());
        let mut found = None;
        for u in &self.users {
            let want = Sha256::digest(u.password.as_bytes());
            let diff = want
                .iter()
                .zip(given.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if u.name == name && diff == 0 {
                found = Some(u);
            }
        }
        found
    }
}

/// The relay's own login to the inner broker: a random password.
pub fn relay_login() -> Login {
    Login {
        username: "minewatch-relay".into(),
        password: format!("{:032x}", rand::random::<u128>()),
    }
}

/// Listens on `listen` (bound before it returns) and relays every client,
/// checked against `acl`, to the broker on `inner` as `relay`.
pub fn start_relay(
    listen: SocketAddr,
    inner: SocketAddr,
    acl: Acl,
    relay: Login,
) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen for MQTT on {listen}"))?;
    listener.set_nonblocking(true)?;
    let acl = Arc::new(acl);
    let relay = Arc::new(relay);
    std::thread::Builder::new()
        .name("mqtt-relay".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the MQTT relay's runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot run the MQTT relay's listener");
                        return;
                    }
                };
                loop {
                    let (client, peer) = match listener.accept().await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "MQTT relay: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let (acl, relay) = (acl.clone(), relay.clone());
                    tokio::spawn(async move {
                        if let Err(e) = serve(client, inner, &acl, &relay).await {
                            tracing::warn!(%peer, error = %format!("{e:#}"), "MQTT client refused or dropped");
                        }
                    });
                }
            });
        })
        .context("cannot start the MQTT relay thread")?;
    Ok(())
}

/// Reads one whole packet into a frame (`buf` keeps what follows it).
async fn read_frame(
    from: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
) -> anyhow::Result<Option<(FixedHeader, Bytes)>> {
    loop {
        match mqttbytes::check(buf.iter(), MAX_PACKET) {
            Ok(h) => return Ok(Some((h, buf.split_to(h.frame_length()).freeze()))),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => anyhow::bail!("malformed packet: {e}"),
        }
        if from.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn refuse(client: &mut TcpStream, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    if (ConnAck {
        session_present: false,
        code,
    })
    .write(&mut out)
    .is_ok()
    {
        let _ = client.write_all(&out).await;
    }
}

/// One client: checks its CONNECT, then relays it, checking every PUBLISH
/// and SUBSCRIBE it sends.
async fn serve(
    mut client: TcpStream,
    inner: SocketAddr,
    acl: &Acl,
    relay: &Login,
) -> anyhow::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(CONNECT_WITHIN, read_frame(&mut client, &mut buf))
        .await
        .context("no CONNECT in time")??;
    let Some((header, frame)) = first else {
        return Ok(());
    };
    anyhow::ensure!(
        header.packet_type().ok() == Some(PacketType::Connect),
        "the first packet is not a CONNECT"
    );
    let mut connect = match Connect::read(header, frame) {
        Ok(c) => c,
        Err(e) => {
            refuse(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
            anyhow::bail!("unreadable CONNECT (only MQTT 3.1.1 is spoken): {e}");
        }
    };
    let name = connect.login.as_ref().map(|l| l.username.clone());
    let Some(user) = connect
        .login
        .as_ref()
        .and_then(|l| acl.check(&l.username, &l.password))
    else {
        refuse(&mut client, ConnectReturnCode::BadUserNamePassword).await;
        anyhow::bail!("bad user name or password (user {name:?})");
    };
    if let Some(will) = &connect.last_will
        && !user.may_publish(&will.topic)
    {
        refuse(&mut client, ConnectReturnCode::NotAuthorized).await;
        anyhow::bail!(
            "user {:?} may not publish its will to {:?}",
            user.name,
            will.topic
        );
    }
    if !connect.client_id.is_empty() {
        connect.client_id = format!("{}:{}", user.name, connect.client_id);
    }
    connect.login = Some(relay.clone());
    let mut upstream = TcpStream::connect(inner)
        .await
        .context("cannot reach the inner broker")?;
    let mut out = BytesMut::new();
    Packet::Connect(connect)
        .write(&mut out, MAX_PACKET)
        .context("cannot write the CONNECT")?;
    upstream.write_all(&out).await?;

    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut up_rx, mut up_tx) = upstream.into_split();
    let down = tokio::io::copy(&mut up_rx, &mut client_tx);
    let up = async {
        loop {
            let Some((header, frame)) = read_frame(&mut client_rx, &mut buf).await? else {
                return Ok(());
            };
            match header.packet_type() {
                Ok(PacketType::Publish) => {
                    let topic = Publish::read(header, frame.clone())
                        .map_err(|e| anyhow::anyhow!("unreadable PUBLISH: {e}"))?
                        .topic;
                    anyhow::ensure!(
                        user.may_publish(&topic),
                        "user {:?} may not publish to {topic:?}; disconnected",
                        user.name
                    );
                }
                Ok(PacketType::Subscribe) => {
                    let sub = Subscribe::read(header, frame.clone())
                        .map_err(|e| anyhow::anyhow!("unreadable SUBSCRIBE: {e}"))?;
                    if let Some(f) = sub.filters.iter().find(|f| !user.may_subscribe(&f.path)) {
                        anyhow::bail!(
                            "user {:?} may not subscribe to {:?}; disconnected",
                            user.name,
                            f.path
                        );
                    }
                }
                Ok(PacketType::Connect) => anyhow::bail!("a second CONNECT"),
                _ => {}
            }
            up_tx.write_all(&frame).await?;
        }
    };
    tokio::select! {
        r = down => { r?; }
        r = up => { r?; }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cover_topics_and_only_narrower_filters() {
        assert!(within("mines/m1/telemetry", "mines/m1/#"));
        assert!(within("mines/m1", "mines/m1/#"));
        assert!(within("mines/m1/+", "mines/m1/#"));
        assert!(within("mines/m1/#", "mines/m1/#"));
        assert!(within("mines/m2/telemetry", "mines/+/telemetry"));
        assert!(!within("mines/m2/telemetry", "mines/m1/#"));
        assert!(!within("mines/+/telemetry", "mines/m1/#"));
        assert!(!within("mines/#", "mines/m1/#"));
        assert!(!within("#", "mines/m1/#"));
        assert!(!within("alerts/140121/m1", "mines/m1/#"));
        assert!(!within("mines/m1/telemetry/x", "mines/+/telemetry"));
        assert!(within("alerts/140121/m1", "#"));
        assert!(!within("$SYS/broker", "#"));
    }

    #[test]
    fn users_are_checked_by_name_password_and_rules() {
        let acl = Acl::new(vec![
            BrokerUser {
                name: "m1".into(),
                password: "pw1".into(),
                publish: vec!["mines/%u/#".into()],
                subscribe: vec![],
            },
            BrokerUser::daemon("daemon", "pwd"),
        ])
        .expect("acl");
        assert!(acl.check("m1", "pw2").is_none());
        assert!(acl.check("m2", "pw1").is_none());
        assert!(acl.check("daemon", "pw1").is_none());
        let m1 = acl.check("m1", "pw1").expect("m1");
        assert!(m1.may_publish("mines/m1/telemetry"));
        assert!(!m1.may_publish("mines/m2/telemetry"));
        assert!(!m1.may_publish("alerts/140121/m1"));
        assert!(!m1.may_publish("mines/m1/+"), "not a topic");
        assert!(!m1.may_subscribe("mines/m1/telemetry"));
        let d = acl.check("daemon", "pwd").expect("daemon");
        assert!(d.may_subscribe("mines/+/telemetry") && d.may_publish("alerts/1/m1"));

        assert!(Acl::new(vec![BrokerUser::daemon("a", "")]).is_err());
        assert!(
            Acl::new(vec![
                BrokerUser::daemon("a", "x"),
                BrokerUser::daemon("a", "y")
            ])
            .is_err()
        );
    }

    use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, QoS};

    fn client(addr: SocketAddr, id: &str, login: Option<(&str, &str)>) -> (AsyncClient, EventLoop) {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(5));
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        AsyncClient::new(o, 16)
    }

    /// Polls until the connection ends (returns its error) or 10 s pass.
    async fn until_dropped(ev: &mut EventLoop) -> Option<ConnectionError> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Err(e) = ev.poll().await {
                    return e;
                }
            }
        })
        .await
        .ok()
    }

    /// Polls until CONNACK; returns whether the broker had a session.
    async fn connected(ev: &mut EventLoop) -> bool {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(rumqttc::Packet::ConnAck(a))) => return a.session_present,
                    Ok(_) => {}
                    Err(e) => panic!("not connected: {e}"),
                }
            }
        })
        .await
        .expect("connected within 10 s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_secured_broker_refuses_strangers_and_holds_mines_to_their_topics() {
        let addr = super::super::start_secured(
            0,
            vec![
                BrokerUser::daemon("daemon", "d-pw"),
                BrokerUser::mine("gw-m1", "m1-pw", "", &["m1"]),
            ],
        )
        .expect("broker");

        // No credentials, a wrong password: refused at CONNECT.
        for login in [None, Some(("gw-m1", "wrong")), Some(("nobody", "m1-pw"))] {
            let (_c, mut ev) = client(addr, "stranger", login);
            match until_dropped(&mut ev).await {
                Some(ConnectionError::ConnectionRefused(code)) => {
                    assert_eq!(code, rumqttc::ConnectReturnCode::BadUserNamePassword)
                }
                other => panic!("{login:?}: {other:?}"),
            }
        }

        // The daemon reads every mine.
        let (daemon, mut dev) = client(addr, "daemon", Some(("daemon", "d-pw")));
        connected(&mut dev).await;
        daemon
            .subscribe("mines/+/telemetry", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(ev) = dev.poll().await {
                if let Event::Incoming(rumqttc::Packet::SubAck(_)) = ev {
                    let _ = tx.send(String::from("suback"));
                }
                if let Event::Incoming(rumqttc::Packet::Publish(p)) = ev {
                    let _ = tx.send(p.topic);
                }
            }
        });
        assert_eq!(rx.recv().await.as_deref(), Some("suback"));

        // A mine may publish its own telemetry...
        let (m1, mut mev) = client(addr, "gw", Some(("gw-m1", "m1-pw")));
        connected(&mut mev).await;
        m1.publish("mines/m1/telemetry", QoS::AtLeastOnce, false, "own")
            .await
            .expect("publish");
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                tokio::select! {
                    t = rx.recv() => return t,
                    e = mev.poll() => { e.expect("the mine stays connected"); }
                }
            }
        })
        .await;
        assert_eq!(got.ok().flatten().as_deref(), Some("mines/m1/telemetry"));
        // ...but not another mine's: it is disconnected, nothing arrives.
        m1.publish("mines/m2/telemetry", QoS::AtLeastOnce, false, "forged")
            .await
            .expect("publish");
        assert!(until_dropped(&mut mev).await.is_some());

        // Nor may it listen to alerts or other mines.
        for filter in ["alerts/#", "mines/+/telemetry", "#"] {
            let (m1, mut mev) = client(addr, "gw", Some(("gw-m1", "m1-pw")));
            connected(&mut mev).await;
            m1.subscribe(filter, QoS::AtMostOnce)
                .await
                .expect("subscribe");
            loop {
                match tokio::time::timeout(Duration::from_secs(10), mev.poll()).await {
                    Ok(Ok(Event::Incoming(rumqttc::Packet::SubAck(_)))) => {
                        panic!("{filter} was granted")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => break,
                    Err(_) => panic!("{filter}: neither refused nor granted"),
                }
            }
        }
        // The forged message never reached the daemon.
        let late = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        assert!(late.is_err(), "{late:?}");

        // The same from Mosquitto's own client, as an outside tester would.
        let port = addr.port().to_string();
        let anonymous = std::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "mines/m1/telemetry",
                "-m",
                "x",
            ])
            .output();
        match anonymous {
            Ok(out) => assert!(
                !out.status.success(),
                "an anonymous mosquitto_pub was accepted"
            ),
            Err(_) => eprintln!("mosquitto_pub is not installed: its part of the test is skipped"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mine_cannot_take_the_daemons_session_or_leave_a_will_elsewhere() {
        let addr = super::super::start_secured(
            0,
            vec![
                BrokerUser::daemon("daemon", "d-pw"),
                BrokerUser::mine("gw-m1", "m1-pw", "", &["m1"]),
            ],
        )
        .expect("broker");
        let persistent = |login: (&str, &str)| {
            let mut o = MqttOptions::new("minewatch", addr.ip().to_string(), addr.port());
            o.set_keep_alive(Duration::from_secs(5));
            o.set_clean_session(false);
            o.set_credentials(login.0, login.1);
            AsyncClient::new(o, 16)
        };
        // The daemon's persistent session, subscribed to every mine.
        let (daemon, mut ev) = persistent(("daemon", "d-pw"));
        connected(&mut ev).await;
        daemon
            .subscribe("mines/+/telemetry", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ev.poll()).await {
                Ok(Ok(Event::Incoming(rumqttc::Packet::SubAck(_)))) => break,
                Ok(Ok(_)) => {}
                other => panic!("no SUBACK: {other:?}"),
            }
        }
        daemon.disconnect().await.expect("disconnect");
        while ev.poll().await.is_ok() {}

        // A mine with the same client id gets a session of its own, not
        // the daemon's (with its subscriptions and queued messages).
        let (_m1, mut mev) = persistent(("gw-m1", "m1-pw"));
        assert!(
            !connected(&mut mev).await,
            "the mine got the daemon's session"
        );

        // A will on a topic the mine may not publish to is refused.
        let mut o = MqttOptions::new("gw-will", addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(5));
        o.set_credentials("gw-m1", "m1-pw");
        o.set_last_will(rumqttc::LastWill::new(
            "alerts/140121/m1",
            "forged",
            QoS::AtLeastOnce,
            false,
        ));
        let (_c, mut wev) = AsyncClient::new(o, 4);
        match until_dropped(&mut wev).await {
            Some(ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized)
            }
            other => panic!("{other:?}"),
        }
    }
}
