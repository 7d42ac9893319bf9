//! Helpers shared by the end-to-end tests: a broker (the embedded one, or
//! the one named by `MINEWATCH_TEST_MQTT=host:port`), a daemon on a
//! throwaway data directory and topic prefix, a telemetry publisher, and
//! waiting for a condition with a deadline (never a bare sleep).

#![allow(dead_code)]

pub mod hook;
pub mod process;

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use minewatch::config::Config;
use minewatch::daemon::{Daemon, DaemonOptions};
use minewatch::pipeline::{Clock, SystemClock};
use minewatch::simulators::{ProvinceSpec, province};
use rumqttc::{AsyncClient, EventLoop, MqttOptions, QoS};
use serde_json::{Value, json};
use std::sync::Arc;

/// The broker the tests talk to, as `host:port`.
pub fn broker() -> String {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER
        .get_or_init(|| match std::env::var("MINEWATCH_TEST_MQTT") {
            Ok(addr) if !addr.is_empty() => addr,
            _ => minewatch::broker::start_embedded(0)
                .expect("embedded broker")
                .to_string(),
        })
        .clone()
}

/// A prefix no other test (or earlier run on a shared broker) uses.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The admin machine user every harness adds to its config.
pub const HARNESS_USER: &str = "harness";

/// A new API token for `user` (who must be in the config's `[[users]]`).
pub async fn api_token(daemon: &Daemon, user: &str) -> String {
    let store = daemon.lifecycle.store.clone();
    let user = user.to_string();
    tokio::task::spawn_blocking(move || {
        store.tx(|db| {
            minewatch::auth::sessions::create_token(db, &user, "test", "harness", now_ms())
        })
    })
    .await
    .expect("token task")
    .expect("an API token")
    .1
}

/// An HTTP client that sends `Authorization: Bearer {token}`.
pub fn client_with_token(token: &str) -> reqwest::Client {
    // reqwest has rustls without a default provider.
    minewatch::alert::channels::install_tls_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("http client")
}

/// A plain HTTP client: no credentials, no redirects followed.
pub fn anonymous_client() -> reqwest::Client {
    minewatch::alert::channels::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// A running daemon and what a test needs around it.
pub struct Harness {
    pub daemon: Daemon,
    pub config: Config,
    pub prefix: String,
    pub base: String,
    /// Sends the harness admin's API token on every request.
    pub http: reqwest::Client,
    /// That token.
    pub token: String,
    _dir: tempfile::TempDir,
    clock: Arc<dyn Clock>,
}

/// A province of `mines` × `points` polled every `polling_secs`.
pub fn test_province(mines: usize, points: usize, polling_secs: f64) -> Config {
    province(ProvinceSpec {
        mines,
        points,
        polling_secs,
    })
}

/// Starts a daemon on `config` with a fresh data dir, client id and prefix.
pub async fn start(config: Config, tag: &str) -> Harness {
    start_with_clock(config, tag, Arc::new(SystemClock)).await
}

/// [`start`] with a given processing clock. `config.netfile.dir`, when
/// relative, is taken inside the data dir.
pub async fn start_with_clock(mut config: Config, tag: &str, clock: Arc<dyn Clock>) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique(tag);
    config.mqtt.broker = format!("mqtt://{}", broker());
    config.mqtt.client_id = id.clone();
    config.http.listen = "127.0.0.1:0".into();
    config.daemon.data_dir = dir.path().to_path_buf();
    config.daemon.shards = 2;
    config.daemon.tick_ms = 200;
    // These tests follow an episode's alert to its end as soon as it ends;
    // grouping re-crossings (rules.regroup_secs, ten minutes by default)
    // would hold every close back that long. It is tested in the alert
    // stage's own tests.
    config.rules.regroup_secs = 0;
    // The alert store: SQLite in the data dir, or a fresh schema in the
    // PostgreSQL named by MINEWATCH_TEST_PG.
    if let Ok(pg) = std::env::var("MINEWATCH_TEST_PG")
        && !pg.is_empty()
        && config.alerting.store.is_none()
    {
        config.alerting.store =
            Some(minewatch::store::fresh_schema(&pg, &id).expect("a PostgreSQL test schema"));
    }
    if let Some(drop) = &config.netfile.dir
        && drop.is_relative()
    {
        config.netfile.dir = Some(dir.path().join(drop));
    }
    // The harness's own machine user: the HTTP client sends its token.
    if !config.users.iter().any(|u| u.name == HARNESS_USER) {
        config.users.push(minewatch::config::auth::UserConfig {
            name: HARNESS_USER.into(),
            role: "admin".into(),
            jurisdiction: None,
            password_hash: None,
        });
    }
    resume(Stopped {
        config,
        prefix: format!("{id}/"),
        dir,
        clock,
    })
    .await
}

/// A daemon that was stopped, with what it needs to start again as the same
/// MQTT session.
pub struct Stopped {
    pub config: Config,
    pub prefix: String,
    dir: tempfile::TempDir,
    clock: Arc<dyn Clock>,
}

/// Starts a daemon again with the same config, session and data dir.
pub async fn resume(stopped: Stopped) -> Harness {
    let Stopped {
        config,
        prefix,
        dir,
        clock,
    } = stopped;
    let daemon = Daemon::start(
        config.clone(),
        DaemonOptions {
            topic_prefix: prefix.clone(),
            clock: clock.clone(),
        },
    )
    .await
    .expect("daemon starts");
    let base = format!("http://{}", daemon.http_addr);
    let token = api_token(&daemon, HARNESS_USER).await;
    let h = Harness {
        daemon,
        config,
        prefix,
        base,
        http: client_with_token(&token),
        token,
        _dir: dir,
        clock,
    };
    h.wait_connected().await;
    h
}

impl Harness {
    /// Stops the daemon, keeping what is needed to resume its session.
    pub async fn stop(self) -> Stopped {
        self.daemon.shutdown().await;
        Stopped {
            config: self.config,
            prefix: self.prefix,
            dir: self._dir,
            clock: self.clock,
        }
    }

    /// GET a JSON document.
    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("http")
            .json()
            .await
            .expect("json")
    }

    /// GET /metrics as text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("http")
            .text()
            .await
            .expect("text")
    }

    /// The value of one metric sample line (`name{labels}`), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn wait_connected(&self) {
        eventually(
            Duration::from_secs(15),
            "the daemon connects to the broker",
            || async { self.get("/healthz").await["mqtt_connected"] == json!(true) },
        )
        .await;
    }

    /// Alerts matching a query string (e.g. `kind=evacuation`).
    pub async fn alerts(&self, query: &str) -> Vec<Value> {
        self.get(&format!("/api/alerts?{query}")).await["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Topic of a mine's telemetry.
    pub fn topic(&self, mine: &str) -> String {
        format!("{}mines/{mine}/telemetry", self.prefix)
    }
}

/// Polls `check` until it holds or `within` passes (then panics with `what`).
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it holds (true) or `within` passes (false), for a
/// caller that wants to say more than [`eventually`] when it fails.
pub async fn within<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An MQTT client whose event loop runs in the background.
pub struct Publisher {
    pub client: AsyncClient,
    pump: tokio::task::JoinHandle<()>,
    acked: std::sync::Arc<AtomicU64>,
}

impl Publisher {
    /// Connects a publisher.
    pub async fn connect(tag: &str) -> Publisher {
        let (client, eventloop) = client(tag);
        let acked = std::sync::Arc::new(AtomicU64::new(0));
        let pump = tokio::spawn(drive(eventloop, None, Some(acked.clone())));
        Publisher {
            client,
            pump,
            acked,
        }
    }

    /// Waits until the broker has acknowledged `n` publishes.
    pub async fn wait_acked(&self, n: u64) {
        eventually(
            Duration::from_secs(10),
            "the broker acknowledges",
            || async { self.acked.load(Ordering::SeqCst) >= n },
        )
        .await;
    }

    /// Publishes raw bytes at QoS 1.
    pub async fn raw(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish");
    }

    /// Publishes one telemetry batch of (point, value, status) at event time `ts`.
    pub async fn batch(&self, topic: &str, ts: i64, readings: &[(&str, f64, u16)]) {
        let readings: Vec<Value> = readings
            .iter()
            .map(|(p, v, s)| json!({"point": p, "value": v, "status": s}))
            .collect();
        self.raw(topic, json!({"ts": ts, "readings": readings}).to_string())
            .await;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

fn client(tag: &str) -> (AsyncClient, EventLoop) {
    let (host, port) = broker()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.parse::<u16>().expect("port")))
        .expect("host:port");
    let mut opts = MqttOptions::new(unique(tag), host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(8 << 20, 8 << 20);
    AsyncClient::new(opts, 1024)
}

async fn drive(
    mut eventloop: EventLoop,
    sink: Option<tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>>,
    acked: Option<std::sync::Arc<AtomicU64>>,
) {
    loop {
        match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                if let Some(a) = &acked {
                    a.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                if let Some(s) = &sink {
                    let _ = s.send((p.topic.clone(), p.payload.to_vec()));
                }
            }
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                if let Some(s) = &sink {
                    let _ = s.send((SUBACK.to_string(), Vec::new()));
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

const SUBACK: &str = "$suback";

/// Subscribes to `filter`, waits for the broker's acknowledgement, and
/// returns received (topic, payload) pairs.
pub async fn subscribe(
    tag: &str,
    filter: &str,
) -> (
    AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    let (client, eventloop) = client(tag);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(drive(eventloop, Some(tx), None));
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let mut rx = rx;
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some((topic, _)) = rx.recv().await {
            if topic == SUBACK {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(acked, Ok(true), "the broker acknowledges the subscription");
    (client, rx)
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A `minewatch run --config FILE` child process whose stdout and stderr go
/// to a log file; when the test panics while it is alive, the log's tail is
/// printed (a daemon's own account of why the test's wait timed out).
///
/// Give it `http.listen = "127.0.0.1:0"`: the daemon binds a port the system
/// chooses and writes it to `{data_dir}/http.addr` ([`DaemonProcess::base`]).
/// A port picked by the test and released before the daemon binds it can be
/// taken in between by another test's listener, whose `/healthz` then
/// answers for a daemon that never started.
pub struct DaemonProcess {
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
    addr_file: std::path::PathBuf,
}

impl DaemonProcess {
    /// Starts the daemon on `config` (whose `daemon.data_dir` is
    /// `data_dir`), logging to `log`.
    pub fn start(
        config: &std::path::Path,
        data_dir: &std::path::Path,
        log: &std::path::Path,
    ) -> DaemonProcess {
        // An earlier run's address is not this one's.
        let addr_file = data_dir.join(minewatch::daemon::HTTP_ADDR_FILE);
        let _ = std::fs::remove_file(&addr_file);
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_minewatch"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,rumqttd=off,rumqttc=warn")
            .stdout(std::process::Stdio::from(out))
            .stderr(std::process::Stdio::from(err))
            .spawn()
            .expect("start minewatch");
        DaemonProcess {
            child,
            log: log.to_path_buf(),
            addr_file,
        }
    }

    /// `http://{addr}` of this process's HTTP API, once it has bound it.
    pub async fn base(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.addr_file) {
                return format!("http://{}", text.trim());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the daemon exited with {status}:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not bind its HTTP port:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// The last 40 lines of the log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} (last 40 lines)\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 40 lines of a log file.
pub fn log_tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
