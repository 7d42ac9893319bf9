//! The TOML configuration: its schema, defaults and validation.
//!
//! [`Config`] is what the file says; [`Registry`] is what the daemon runs on
//! (indices, effective limits, shard placement), built from a validated
//! config. [`load`] reports every semantic problem at once, each with its key
//! path and a hint; `minewatch check-config FILE` prints them.

pub mod activity;
pub mod alerting;
pub mod auth;
pub mod channels;
pub mod detect;
pub mod modbus;
pub mod registry;
pub mod rules;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::{LocationClass, MineStatus, SensorType};

pub use modbus::ModbusConfig;
pub use registry::{Limits, MineMeta, PointDef, PointMeta, Registry, SharedRegistry, Upsert};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The MQTT broker to ingest from and publish alerts to.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// The HTTP API.
    #[serde(default)]
    pub http: HttpConfig,
    /// Input validation limits.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The drop directory of national networking text files.
    #[serde(default)]
    pub netfile: NetfileConfig,
    /// Overrides of the safety-rule thresholds.
    #[serde(default)]
    pub rules: RulesConfig,
    /// The mines and their points.
    #[serde(default)]
    pub mines: Vec<MineConfig>,
    /// Modbus TCP/RTU devices to poll, with their register maps.
    #[serde(default)]
    pub modbus: modbus::ModbusConfig,
    /// The Parquet archive of accepted readings and rejected records.
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// Alert handling: store, escalation, routes, channels, roster.
    #[serde(default)]
    pub alerting: alerting::AlertingConfig,
    /// Sessions and sign-in limits.
    #[serde(default)]
    pub auth: auth::AuthConfig,
    /// Who may sign in (`[[users]]`).
    #[serde(default)]
    pub users: Vec<auth::UserConfig>,
    /// Data-anomaly and falsification detectors.
    #[serde(default)]
    pub detect: detect::DetectConfig,
    /// When `/readyz` says the daemon is degraded.
    #[serde(default)]
    pub health: HealthConfig,
    /// Electricity-use and electronic-seal detectors.
    #[serde(default)]
    pub activity: activity::ActivityConfig,
    /// Cluster mode over NATS JetStream (off: single node).
    #[serde(default)]
    pub cluster: crate::cluster::ClusterConfig,
}

/// The Parquet archive (`{dir}/readings/…`, `{dir}/rejected/…`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ArchiveConfig {
    /// Write the archive at all.
    pub enabled: bool,
    /// Root of the archive; none means `{daemon.data_dir}/archive`.
    pub dir: Option<PathBuf>,
    /// A partition's buffered rows are written out at the latest this long
    /// after the first of them arrived, seconds.
    pub flush_secs: u64,
    /// A partition's buffer is written out as a file once it holds this
    /// many rows.
    pub max_rows_per_file: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Unwritten rows (all streams) the writer holds at most: once the disk
    /// has refused enough writes to leave this many waiting, it takes no
    /// more until some are written, and the bounded queues behind it push
    /// back to ingest (nothing more is acknowledged) instead of the
    /// daemon's memory growing until it is killed.
    pub max_buffered_rows: usize,
    /// Memory the unwritten rows (all streams) may take, bytes: past it the
    /// writer writes out the largest partitions at once rather than
    /// waiting for `flush_secs`; if the disk refuses those writes, it takes
    /// no more rows (as at `max_buffered_rows`).
    pub max_buffered_bytes: usize,
    /// Hour partitions of `readings` and `rejected` entirely older than
    /// this many days are deleted (at start and hourly); 0 keeps everything.
    pub retain_days: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: true,
            dir: None,
            flush_secs: 60,
            max_rows_per_file: 1_000_000,
            row_group_rows: 131_072,
            max_buffered_rows: 4_000_000,
            max_buffered_bytes: 128 << 20,
            retain_days: 92,
        }
    }
}

impl ArchiveConfig {
    /// The archive root for a daemon whose data directory is `data_dir`.
    pub fn root(&self, data_dir: &std::path::Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("archive"))
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DaemonConfig {
    /// Where the daemon keeps its files (dead letters, later archives).
    pub data_dir: PathBuf,
    /// Detector shard threads; 0 means one per core.
    pub shards: usize,
    /// How often processing time is carried to the shards, ms.
    pub tick_ms: u64,
    /// Capacity of each shard's input queue, in batches.
    pub queue_batches: usize,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// How long a stop (SIGTERM, Ctrl-C) may take, seconds: the sources
    /// stop, the shards drain, the archive writes out; past this the
    /// process exits anyway with a clear message (what was not
    /// acknowledged is redelivered by the broker, what was acknowledged is
    /// in the archive journal).
    pub shutdown_timeout_secs: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            data_dir: PathBuf::from("data"),
            shards: 0,
            tick_ms: 1000,
            queue_batches: 1024,
            log_format: "text".into(),
            shutdown_timeout_secs: 30,
        }
    }
}

/// When `GET /readyz` answers 503 `degraded` (see [`crate::health`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// The ingest MQTT session down for longer than this, seconds.
    pub mqtt_down_secs: u64,
    /// No reading from any mine for longer than this (counted from the
    /// start, and only once points are configured), seconds.
    pub no_readings_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            mqtt_down_secs: 30,
            no_readings_secs: 300,
        }
    }
}

/// The MQTT connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MqttConfig {
    /// Broker URL: `mqtt://[user:password@]host:port`, or `mqtts://…`
    /// for TLS (port 8883 by default).
    pub broker: String,
    /// TLS: PEM file of the CA certificate(s) the broker's certificate must
    /// chain to; default: the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// TLS: PEM client certificate (chain) for brokers that require one;
    /// goes with `client_key`.
    pub client_cert: Option<std::path::PathBuf>,
    /// TLS: PEM private key of `client_cert`.
    pub client_key: Option<std::path::PathBuf>,
    /// Client id of the ingest session (persistent, so QoS 1 messages wait
    /// for us across a restart).
    pub client_id: String,
    /// Keep-alive interval, seconds.
    pub keep_alive_secs: u64,
    /// Largest payload accepted, bytes.
    pub max_payload_bytes: usize,
    /// Most messages received and not yet acknowledged: at this many the
    /// socket is not read until acknowledgements catch up (TCP
    /// backpressure; the broker keeps the backlog).
    pub max_inflight_messages: usize,
    /// Most payload bytes of messages received and not yet acknowledged
    /// (one message is always let in, whatever its size).
    pub max_inflight_bytes: usize,
    /// Publish alerts to `alerts/{county}/{mine}`.
    pub publish_alerts: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: "mqtt://127.0.0.1:1883".into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            client_id: "minewatch".into(),
            keep_alive_secs: 30,
            max_payload_bytes: 1 << 20,
            max_inflight_messages: 1024,
            max_inflight_bytes: 32 << 20,
            publish_alerts: true,
        }
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: String,
    /// Serve `/metrics` to anyone, without a token (it names every county:
    /// only for a listener nobody else can reach); default false.
    pub metrics_public: bool,
    /// A secret a scraper sends as `Authorization: Bearer …` to read
    /// `/metrics` (at least 16 characters); otherwise only admins may.
    pub metrics_token: Option<String>,
    /// Reverse proxies (IP addresses or CIDR blocks, e.g. `127.0.0.1`,
    /// `10.0.0.0/8`) whose `client_ip_header` names the client; the header
    /// of anyone else is ignored. Empty: the peer is the client.
    pub trusted_proxies: Vec<String>,
    /// The header a trusted proxy names the client in
    /// (`X-Forwarded-For`, or e.g. `X-Real-IP`).
    pub client_ip_header: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            metrics_public: false,
            metrics_token: None,
            trusted_proxies: Vec::new(),
            client_ip_header: "X-Forwarded-For".into(),
        }
    }
}

/// Input validation limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// A reading more than this far in the future (event time against
    /// arrival time) is rejected.
    pub max_future_secs: u64,
    /// A reading older than this is rejected (mines buffer and resend after
    /// an outage, so this is days, not minutes).
    pub max_past_secs: u64,
    /// Most readings in one message.
    pub max_batch_readings: usize,
    /// How many rejected records the API keeps in memory.
    pub dead_letter_keep: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_future_secs: 300,
            max_past_secs: 7 * 24 * 3600,
            max_batch_readings: 10_000,
            dead_letter_keep: 1000,
        }
    }
}

/// The national networking text files (CDDY/CDSS/FZSS/YCBJ) that mines
/// upload into a drop directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NetfileConfig {
    /// The drop directory; none means the source is off.
    pub dir: Option<PathBuf>,
    /// A file without its `||` terminator that has not grown for this long
    /// is a truncated upload and goes to quarantine.
    pub settle_secs: u64,
    /// Rescan interval when no file-system event arrives, ms.
    pub scan_ms: u64,
    /// A CDSS or FZSS file of a mine with no points defined yet waits this
    /// long for the mine's CDDY before it is read anyway.
    pub cddy_wait_secs: u64,
    /// How long the ledger of processed files remembers a name, days.
    pub ledger_days: u64,
}

impl Default for NetfileConfig {
    fn default() -> Self {
        NetfileConfig {
            dir: None,
            settle_secs: 60,
            scan_ms: 1000,
            cddy_wait_secs: 60,
            ledger_days: 8,
        }
    }
}

/// Overrides of the rule thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RulesConfig {
    /// Methane levels by location class key (`face_t1 = { alarm = 1.0, … }`).
    pub methane: std::collections::BTreeMap<String, rules::MethaneLevels>,
    /// CO levels.
    pub co: Option<rules::CoLevels>,
    /// An episode closes only after values stay below restore this long.
    pub restore_hold_secs: u64,
    /// A point's over-limit alert stays one alert while the point crosses
    /// its line again within this long after an episode ended (flapping
    /// at the line): the re-openings are counted on it, not pushed again.
    /// 0 turns grouping off.
    pub regroup_secs: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            methane: Default::default(),
            co: None,
            restore_hold_secs: 0,
            regroup_secs: 600,
        }
    }
}

/// One mine.
#[derive(Debug, Clone, Deserialize)]
pub struct MineConfig {
    /// 12-digit mine code.
    pub code: String,
    /// Mine name.
    pub name: String,
    /// 6-digit province code (XX0000).
    pub province: String,
    /// 6-digit city code (XXYY00).
    pub city: String,
    /// 6-digit county code (XXYYZZ).
    pub county: String,
    /// Declared operating status.
    #[serde(default = "default_status")]
    pub status: MineStatus,
    /// Default polling period of its points, seconds.
    #[serde(default = "default_polling")]
    pub polling_secs: f64,
    /// The points.
    #[serde(default)]
    pub points: Vec<PointConfig>,
    /// The approved maximum of people underground (核定井下人数); more is
    /// overmanning.
    #[serde(default)]
    pub approved_headcount: Option<u32>,
    /// The electricity feed (`mines/{mine}/power`).
    #[serde(default)]
    pub power: Option<activity::MinePowerConfig>,
    /// The electronic seals (`mines/{mine}/seal`).
    #[serde(default)]
    pub seal: Option<activity::MineSealConfig>,
}

fn default_status() -> MineStatus {
    MineStatus::Producing
}

fn default_polling() -> f64 {
    30.0
}

/// One point (测点).
#[derive(Debug, Clone, Deserialize)]
pub struct PointConfig {
    /// Point code (测点编码).
    pub code: String,
    /// Sensor type: national code ("0001") or name ("methane", "co").
    pub sensor: String,
    /// Location class key (`face_t1`, `heading_t2`, …).
    #[serde(default = "default_location")]
    pub location: String,
    /// Install location in words.
    #[serde(default)]
    pub place: Option<String>,
    /// Unit; defaults by sensor type.
    #[serde(default)]
    pub unit: Option<String>,
    /// Measuring range `[low, high]`.
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// Polling period, seconds; defaults to the mine's.
    #[serde(default)]
    pub polling_secs: Option<f64>,
    /// Silence that makes the point offline, seconds; defaults to 3 × polling.
    #[serde(default)]
    pub offline_after_secs: Option<f64>,
    /// The mine's declared alarm level.
    #[serde(default)]
    pub alarm: Option<f64>,
    /// The mine's declared power-off level.
    #[serde(default)]
    pub power_off: Option<f64>,
    /// The mine's declared restore level.
    #[serde(default)]
    pub restore: Option<f64>,
    /// Substation (分站) code.
    #[serde(default)]
    pub substation: Option<String>,
    /// The air path (face or heading) the point sits on, as a number:
    /// points of one mine with the same number are neighbours (T0/T1/T2)
    /// and share feed sensors. Default: the leading number of `place`
    /// ("1101回风巷" → 1101).
    #[serde(default)]
    pub air_path: Option<u32>,
}

fn default_location() -> String {
    "other".into()
}

/// How serious a config finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The daemon will not start.
    Error,
    /// The daemon starts; a person should look.
    Warning,
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// Error or warning.
    pub level: Level,
    /// Key path, e.g. `mines[2].points[5].alarm`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.path, self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// A config that cannot be used, with every reason found.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Every problem found (errors and warnings).
    pub issues: Vec<Issue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self
            .issues
            .iter()
            .filter(|i| i.level == Level::Error)
            .count();
        writeln!(
            f,
            "{}: {errors} error(s) in the configuration",
            self.file.display()
        )?;
        for issue in &self.issues {
            writeln!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates a config file. On success returns the config
/// and its warnings; on failure every issue found.
pub fn load(path: &Path) -> Result<(Config, Vec<Issue>), ConfigError> {
    let fail = |path_key: &str, message: String, hint: &str| ConfigError {
        file: path.to_path_buf(),
        issues: vec![Issue {
            level: Level::Error,
            path: path_key.into(),
            message,
            hint: hint.into(),
        }],
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(
            "(file)",
            format!("cannot read: {e}"),
            "check the path; `minewatch demo` needs no config file",
        )
    })?;
    parse(&text).map_err(|mut e| {
        e.file = path.to_path_buf();
        e
    })
}

/// Parses and validates config text (see [`load`]). Every unknown key is
/// reported together with every other error, in one pass: a typo must not
/// fall back to a default silently, and three typos must not take three
/// runs to find.
pub fn parse(text: &str) -> Result<(Config, Vec<Issue>), ConfigError> {
    let syntax = |e: toml::de::Error, hint: &str| ConfigError {
        file: PathBuf::from("(text)"),
        issues: vec![Issue {
            level: Level::Error,
            path: e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!("line {line}, column {column}")
                })
                .unwrap_or_else(|| "(file)".into()),
            message: e.message().to_string(),
            hint: hint.into(),
        }],
    };
    let de = toml::Deserializer::parse(text)
        .map_err(|e| syntax(e, "fix the TOML syntax at that place"))?;
    let mut unknown = Vec::new();
    let config: Config = serde_ignored::deserialize(de, |path| unknown.push(key_path(&path)))
        .map_err(|e| {
            syntax(
                e,
                "the value at that place has the wrong type or is not one of the allowed \
                 values; config/example.toml shows each key with its type",
            )
        })?;
    let mut issues: Vec<Issue> = unknown
        .into_iter()
        .map(|path| Issue {
            level: Level::Error,
            path,
            message: "unknown key".into(),
            hint: "check its spelling and section against config/example.toml; unknown keys \
                   are refused so that a typo cannot silently fall back to a default"
                .into(),
        })
        .collect();
    issues.extend(validate(&config));
    if issues.iter().any(|i| i.level == Level::Error) {
        return Err(ConfigError {
            file: PathBuf::from("(text)"),
            issues,
        });
    }
    Ok((config, issues))
}

/// A key's place as the other issues name it: `mines[3].points[0].code`.
fn key_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => match key_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks a parsed config. Returns every issue found (errors and warnings).
pub fn validate(config: &Config) -> Vec<Issue> {
    let mut out = Vec::new();
    let mut err = |path: String, message: String, hint: &str| {
        out.push(Issue {
            level: Level::Error,
            path,
            message,
            hint: hint.into(),
        })
    };
    let d = &config.daemon;
    if d.tick_ms == 0 || d.tick_ms > 60_000 {
        err(
            "daemon.tick_ms".into(),
            format!("{} is out of range", d.tick_ms),
            "use 100..=60000; 1000 is usual",
        );
    }
    if d.queue_batches == 0 {
        err(
            "daemon.queue_batches".into(),
            "must be at least 1".into(),
            "1024 is usual",
        );
    }
    let h = &config.health;
    if h.mqtt_down_secs == 0 || h.mqtt_down_secs > 86_400 {
        err(
            "health.mqtt_down_secs".into(),
            format!("{} is out of range", h.mqtt_down_secs),
            "use 1..=86400; 30 is usual",
        );
    }
    if h.no_readings_secs == 0 || h.no_readings_secs > 86_400 {
        err(
            "health.no_readings_secs".into(),
            format!("{} is out of range", h.no_readings_secs),
            "use 1..=86400; 300 is usual (longer than the slowest mine's polling)",
        );
    }
    if d.shutdown_timeout_secs == 0 || d.shutdown_timeout_secs > 3600 {
        err(
            "daemon.shutdown_timeout_secs".into(),
            format!("{} is out of range", d.shutdown_timeout_secs),
            "use 1..=3600; 30 is usual",
        );
    }
    let a = &config.archive;
    if a.flush_secs == 0 || a.flush_secs > 3600 {
        err(
            "archive.flush_secs".into(),
            format!("{} is out of range", a.flush_secs),
            "use 1..=3600; 60 is usual",
        );
    }
    if a.max_rows_per_file == 0 {
        err(
            "archive.max_rows_per_file".into(),
            "must be at least 1".into(),
            "1000000 is usual",
        );
    }
    if a.max_buffered_rows < a.max_rows_per_file.max(1) {
        err(
            "archive.max_buffered_rows".into(),
            format!(
                "{} is less than archive.max_rows_per_file ({})",
                a.max_buffered_rows, a.max_rows_per_file
            ),
            "4000000 is usual (a few hundred MB of rows)",
        );
    }
    if a.max_buffered_bytes < 1 << 20 {
        err(
            "archive.max_buffered_bytes".into(),
            format!("{} is less than 1 MiB", a.max_buffered_bytes),
            "134217728 (128 MiB) is usual",
        );
    }
    if a.row_group_rows == 0 {
        err(
            "archive.row_group_rows".into(),
            "must be at least 1".into(),
            "131072 is usual (row groups sized for scans)",
        );
    }
    if d.log_format != "text" && d.log_format != "json" {
        err(
            "daemon.log_format".into(),
            format!("unknown format {:?}", d.log_format),
            "use \"text\" or \"json\"",
        );
    }
    if let Err(e) = rumqttc::MqttOptions::parse_url(format!(
        "{}?client_id={}",
        config.mqtt.broker, config.mqtt.client_id
    )) {
        err(
            "mqtt.broker".into(),
            format!(
                "{:?} is not a broker URL: {e}",
                crate::redact::secrets(&config.mqtt.broker)
            ),
            "write it as mqtt://HOST:PORT, or mqtts://HOST:8883 for TLS",
        );
    }
    if config.mqtt.max_inflight_messages == 0 || config.mqtt.max_inflight_messages > 65_535 {
        err(
            "mqtt.max_inflight_messages".into(),
            format!("{} is out of range", config.mqtt.max_inflight_messages),
            "use 1..=65535 (MQTT packet ids); 1024 is usual",
        );
    }
    if config.mqtt.max_inflight_bytes < 64 * 1024 {
        err(
            "mqtt.max_inflight_bytes".into(),
            format!("{} is less than 64 KiB", config.mqtt.max_inflight_bytes),
            "33554432 (32 MiB) is usual; it bounds the memory of unacknowledged messages",
        );
    }
    let tls =
        config.mqtt.broker.starts_with("mqtts://") || config.mqtt.broker.starts_with("ssl://");
    for (key, file) in [
        ("ca_file", &config.mqtt.ca_file),
        ("client_cert", &config.mqtt.client_cert),
        ("client_key", &config.mqtt.client_key),
    ] {
        let Some(file) = file else { continue };
        if !tls {
            err(
                format!("mqtt.{key}"),
                "is set but mqtt.broker is not an mqtts:// URL".into(),
                "write the broker as mqtts://HOST:8883, or leave the TLS files out",
            );
        } else if !file.is_file() {
            err(
                format!("mqtt.{key}"),
                format!("{} is not a readable file", file.display()),
                "give the path of a PEM file",
            );
        }
    }
    if config.mqtt.client_cert.is_some() != config.mqtt.client_key.is_some() {
        err(
            "mqtt.client_cert".into(),
            "client_cert and client_key go together".into(),
            "set both (PEM certificate and its private key) or neither",
        );
    }
    if config.mqtt.client_id.is_empty() {
        err(
            "mqtt.client_id".into(),
            "must not be empty".into(),
            "a persistent session needs a stable client id",
        );
    }
    if config.http.listen.parse::<std::net::SocketAddr>().is_err() {
        err(
            "http.listen".into(),
            format!("{:?} is not an address", config.http.listen),
            "write it as IP:PORT, e.g. 127.0.0.1:8080",
        );
    }
    for (i, p) in config.http.trusted_proxies.iter().enumerate() {
        if crate::web::client::parse_net(p).is_none() {
            err(
                format!("http.trusted_proxies[{i}]"),
                format!("{p:?} is not an IP address or CIDR block"),
                "write e.g. \"127.0.0.1\" or \"10.0.0.0/8\"",
            );
        }
    }
    if axum::http::HeaderName::from_bytes(config.http.client_ip_header.as_bytes()).is_err() {
        err(
            "http.client_ip_header".into(),
            format!("{:?} is not a header name", config.http.client_ip_header),
            "use X-Forwarded-For or X-Real-IP",
        );
    }
    if let Some(t) = &config.http.metrics_token
        && (t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        err(
            "http.metrics_token".into(),
            "must be at least 16 characters without spaces".into(),
            "make one with e.g. `openssl rand -hex 24`",
        );
    }
    if config.netfile.scan_ms == 0 || config.netfile.scan_ms > 60_000 {
        err(
            "netfile.scan_ms".into(),
            format!("{} is out of range", config.netfile.scan_ms),
            "use 100..=60000; 1000 is usual",
        );
    }
    if config.netfile.ledger_days == 0 {
        err(
            "netfile.ledger_days".into(),
            "must be at least 1".into(),
            "the ledger must outlive re-uploads; 8 days covers ingest.max_past_secs",
        );
    }
    if config.ingest.max_batch_readings == 0 {
        err(
            "ingest.max_batch_readings".into(),
            "must be at least 1".into(),
            "10000 is usual",
        );
    }
    for (key, levels) in &config.rules.methane {
        let path = format!("rules.methane.{key}");
        if LocationClass::parse(key).is_none() {
            err(
                path.clone(),
                format!("unknown location class {key:?}"),
                &location_hint(),
            );
        }
        check_levels(
            &mut err,
            &path,
            Some(levels.alarm),
            levels.power_off,
            Some(levels.restore),
        );
    }
    if let Some(co) = &config.rules.co {
        check_levels(
            &mut err,
            "rules.co",
            Some(co.alarm),
            Some(co.evacuate),
            Some(co.restore),
        );
    }

    let mut mine_codes = HashSet::new();
    let mut point_codes = HashSet::new();
    let mut warnings = Vec::new();
    let mut mine_sections = Vec::new();
    for (mi, mine) in config.mines.iter().enumerate() {
        let mp = format!("mines[{mi}]");
        activity::validate_mine(
            &mp,
            mine.power.as_ref(),
            mine.seal.as_ref(),
            &mut mine_sections,
        );
        if !is_digits(&mine.code, 12) {
            err(
                format!("{mp}.code"),
                format!("{:?} is not a 12-digit mine code", mine.code),
                "mine codes are 12 digits (6-digit county code + 6-digit serial)",
            );
        }
        if !mine_codes.insert(mine.code.as_str()) {
            err(
                format!("{mp}.code"),
                format!("mine {} is listed twice", mine.code),
                "merge the two entries",
            );
        }
        for (key, code, n) in [
            ("province", &mine.province, 2),
            ("city", &mine.city, 4),
            ("county", &mine.county, 6),
        ] {
            if !is_digits(code, 6) {
                err(
                    format!("{mp}.{key}"),
                    format!("{code:?} is not a 6-digit division code"),
                    "use the GB/T 2260 code, e.g. province 140000, city 140100, county 140121",
                );
            } else if key != "county" && !code[n..].bytes().all(|b| b == b'0') {
                err(
                    format!("{mp}.{key}"),
                    format!("{code:?} is not a {key}-level code"),
                    "a province code ends in 0000 and a city code in 00",
                );
            }
        }
        if is_digits(&mine.city, 6)
            && is_digits(&mine.province, 6)
            && mine.city[..2] != mine.province[..2]
        {
            err(
                format!("{mp}.city"),
                format!("city {} is not in province {}", mine.city, mine.province),
                "a city code starts with its province's first two digits",
            );
        }
        if is_digits(&mine.county, 6)
            && is_digits(&mine.city, 6)
            && mine.county[..4] != mine.city[..4]
        {
            err(
                format!("{mp}.county"),
                format!("county {} is not in city {}", mine.county, mine.city),
                "a county code starts with its city's first four digits",
            );
        }
        if !(mine.polling_secs.is_finite()
            && mine.polling_secs > 0.0
            && mine.polling_secs <= 3600.0)
        {
            err(
                format!("{mp}.polling_secs"),
                format!("{} is out of range", mine.polling_secs),
                "use a period in (0, 3600] seconds; the rules ask for ≤ 25 s polling",
            );
        }
        if mine.points.is_empty() && mine.status != MineStatus::Closed {
            warnings.push(Issue {
                level: Level::Warning,
                path: format!("{mp}.points"),
                message: format!("mine {} has no points", mine.code),
                hint: "nothing is watched until points are listed here or arrive in the mine's \
                       CDDY file; a closed mine needs none"
                    .into(),
            });
        }
        for (pi, point) in mine.points.iter().enumerate() {
            let pp = format!("{mp}.points[{pi}]");
            if point.code.trim().is_empty() {
                err(
                    format!("{pp}.code"),
                    "empty point code".into(),
                    "use the national point code",
                );
            } else if !point_codes.insert(point.code.as_str()) {
                err(
                    format!("{pp}.code"),
                    format!("point {} is listed twice", point.code),
                    "point codes must be unique across all mines",
                );
            } else if !point.code.starts_with(&mine.code) {
                warnings.push(Issue {
                    level: Level::Warning,
                    path: format!("{pp}.code"),
                    message: format!(
                        "point {} does not start with its mine code {}",
                        point.code, mine.code
                    ),
                    hint: "national point codes start with the 12-digit mine code".into(),
                });
            }
            let sensor = SensorType::parse(&point.sensor);
            if sensor.is_none() {
                err(
                    format!("{pp}.sensor"),
                    format!("unknown sensor type {:?}", point.sensor),
                    "use a national 4-digit code such as \"0001\" (methane) or \"0004\" (CO), \
                     or a name: methane, co, laser_methane, …",
                );
            }
            let location = LocationClass::parse(&point.location);
            if location.is_none() {
                err(
                    format!("{pp}.location"),
                    format!("unknown location class {:?}", point.location),
                    &location_hint(),
                );
            }
            if let Some([lo, hi]) = point.range
                && !(lo.is_finite() && hi.is_finite() && lo < hi)
            {
                err(
                    format!("{pp}.range"),
                    format!("[{lo}, {hi}] is not a range"),
                    "write [low, high] with low < high, e.g. [0, 4] for low-range methane",
                );
            }
            for (key, v) in [
                ("polling_secs", point.polling_secs),
                ("offline_after_secs", point.offline_after_secs),
            ] {
                if let Some(v) = v
                    && !(v.is_finite() && v > 0.0 && v <= 86_400.0)
                {
                    err(
                        format!("{pp}.{key}"),
                        format!("{v} is out of range"),
                        "use a positive number of seconds",
                    );
                }
            }
            check_levels(&mut err, &pp, point.alarm, point.power_off, point.restore);
            if let (Some(sensor), Some(location)) = (sensor, location) {
                warnings.extend(compare_with_rules(config, &pp, point, sensor, location));
            }
        }
    }
    out.extend(mine_sections);
    out.extend(warnings);
    out.extend(modbus::validate(config));
    alerting::validate(&config.alerting, &config.mines, &mut out);
    auth::validate(&config.auth, &config.users, &mut out);
    config.detect.validate(&mut out);
    config.activity.validate(&mut out);
    config.cluster.validate(&mut out);
    if config.cluster.enabled
        && !config
            .alerting
            .store
            .as_deref()
            .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
    {
        out.push(Issue {
            level: Level::Error,
            path: "alerting.store".into(),
            message: "cluster mode needs the shared PostgreSQL store".into(),
            hint: "set alerting.store = \"postgres://…\" on every instance (docs/CLUSTER.md)"
                .into(),
        });
    }
    out
}

fn location_hint() -> String {
    let names: Vec<&str> = LocationClass::ALL.iter().map(|c| c.key()).collect();
    format!("use one of: {}", names.join(", "))
}

fn check_levels(
    err: &mut impl FnMut(String, String, &str),
    path: &str,
    alarm: Option<f64>,
    power_off: Option<f64>,
    restore: Option<f64>,
) {
    for (key, v) in [
        ("alarm", alarm),
        ("power_off", power_off),
        ("restore", restore),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            err(
                format!("{path}.{key}"),
                format!("{v} is not a level"),
                "use a finite, non-negative number in the point's unit",
            );
        }
    }
    if let (Some(a), Some(p)) = (alarm, power_off)
        && p < a
    {
        err(
            format!("{path}.power_off"),
            format!("power-off level {p} is below the alarm level {a}"),
            "power is cut at or above the alarm level",
        );
    }
    if let (Some(a), Some(r)) = (alarm, restore)
        && r > a
    {
        err(
            format!("{path}.restore"),
            format!("restore level {r} is above the alarm level {a}"),
            "an episode ends below the restore level, which is at most the alarm level",
        );
    }
}

/// Warns where a point's declared levels are looser than the rules.
fn compare_with_rules(
    config: &Config,
    path: &str,
    point: &PointConfig,
    sensor: SensorType,
    location: LocationClass,
) -> Vec<Issue> {
    let rule = registry::rule_limits(&config.rules, sensor, location);
    let mut out = Vec::new();
    let Some(rule) = rule else {
        if sensor.gas().is_some() && point.alarm.is_none() {
            out.push(Issue {
                level: Level::Warning,
                path: format!("{path}.location"),
                message: format!(
                    "{} point {} has no rule for location {:?} and no declared alarm level",
                    sensor.name(),
                    point.code,
                    point.location
                ),
                hint: "no over-limit detection will run: give a location class or an alarm level"
                    .into(),
            });
        }
        return out;
    };
    let looser = |key: &str, declared: Option<f64>, ruled: Option<f64>| match (declared, ruled) {
        (Some(d), Some(r)) if d > r + 1e-9 => Some(Issue {
            level: Level::Warning,
            path: format!("{path}.{key}"),
            message: format!(
                "declared {key} {d} is looser than the rule's {r} for {}",
                location.key()
            ),
            hint: "minewatch alerts at the rule's level; a mine raising its own thresholds \
                       is a falsification pattern worth a look"
                .into(),
        }),
        _ => None,
    };
    out.extend(looser("alarm", point.alarm, Some(rule.alarm)));
    out.extend(looser("power_off", point.power_off, rule.power_off));
    out.extend(looser("restore", point.restore, Some(rule.restore)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
shards = 2

[[mines]]
code = "140121000001"
name = "示例煤矿"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 10
points = [
  { code = "14012100000101MN0001001", sensor = "0001", location = "face_t1", range = [0, 4] },
  { code = "14012100000101MN0004002", sensor = "co", location = "face_t2", range = [0, 1000] },
]
"#;

    #[test]
    fn a_good_config_loads_without_issues() {
        let (config, warnings) = parse(GOOD).expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.mines.len(), 1);
        assert_eq!(config.mines[0].points.len(), 2);
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_path() {
        let text = GOOD
            .replace("\"140121000001\"", "\"14012\"")
            .replace("\"face_t1\"", "\"face\"")
            .replace("\"co\"", "\"gas\"")
            .replace("polling_secs = 10", "polling_secs = -1");
        let err = parse(&text).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"mines[0].code"), "{paths:?}");
        assert!(paths.contains(&"mines[0].points[0].location"), "{paths:?}");
        assert!(paths.contains(&"mines[0].points[1].sensor"), "{paths:?}");
        assert!(paths.contains(&"mines[0].polling_secs"), "{paths:?}");
        assert!(err.issues.iter().all(|i| !i.hint.is_empty()));
    }

    #[test]
    fn mqtt_tls_files_need_mqtts_an_existing_file_and_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").expect("write");
        let with =
            |broker: &str, files: &str| format!("{GOOD}\n[mqtt]\nbroker = \"{broker}\"\n{files}\n");
        let ca_line = format!("ca_file = {:?}", ca.display().to_string());
        let (config, _) = parse(&with("mqtts://u:p@broker:8883", &ca_line)).expect("valid");
        assert_eq!(config.mqtt.ca_file.as_deref(), Some(ca.as_path()));
        let paths = |text: String| -> Vec<String> {
            parse(&text)
                .unwrap_err()
                .issues
                .iter()
                .map(|i| i.path.clone())
                .collect()
        };
        assert_eq!(
            paths(with("mqtt://broker:1883", &ca_line)),
            ["mqtt.ca_file"]
        );
        assert_eq!(
            paths(with("mqtts://broker", "ca_file = \"/nonexistent/ca.pem\"")),
            ["mqtt.ca_file"]
        );
        let cert_only = format!("client_cert = {:?}", ca.display().to_string());
        assert_eq!(
            paths(with("mqtts://broker", &cert_only)),
            ["mqtt.client_cert"]
        );
    }

    #[test]
    fn the_archive_is_on_by_default_under_the_data_dir_and_checked() {
        let (config, _) = parse(GOOD).expect("valid");
        assert!(config.archive.enabled);
        assert_eq!(config.archive.flush_secs, 60);
        assert_eq!(
            config.archive.root(std::path::Path::new("/d")),
            PathBuf::from("/d/archive")
        );
        let text = format!(
            "{GOOD}\n[archive]\nflush_secs = 0\nmax_rows_per_file = 0\nrow_group_rows = 0\n"
        );
        let err = parse(&text).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "archive.flush_secs",
                "archive.max_rows_per_file",
                "archive.row_group_rows"
            ]
        );
        let text = format!("{GOOD}\n[archive]\nmax_rows_per_file = 100\nmax_buffered_rows = 99\n");
        let err = parse(&text).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["archive.max_buffered_rows"]);
        let text = format!(
            "{GOOD}\n[archive]\nmax_buffered_bytes = 1000\n[mqtt]\nmax_inflight_messages = 0\nmax_inflight_bytes = 10\n"
        );
        let err = parse(&text).unwrap_err();
        let mut paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "archive.max_buffered_bytes",
                "mqtt.max_inflight_bytes",
                "mqtt.max_inflight_messages"
            ]
        );
        let text = format!("{GOOD}\n[archive]\nenabled = false\ndir = \"/srv/a\"\n");
        let (config, _) = parse(&text).expect("valid");
        assert!(!config.archive.enabled);
        assert_eq!(
            config.archive.root(std::path::Path::new("/d")),
            PathBuf::from("/srv/a")
        );
    }

    #[test]
    fn unknown_keys_are_refused_all_at_once_with_the_other_errors() {
        let text = GOOD
            .replace("shards = 2", "shard = 2")
            .replace("polling_secs = 10", "polling_secs = -1\npolling = 10")
            .replace("range = [0, 1000] }", "range = [0, 1000], alram = 2 }")
            + "\n[mqtt]\nbrokr = \"mqtt://x\"\n";
        let err = parse(&text).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        for unknown in [
            "daemon.shard",
            "mines[0].polling",
            "mines[0].points[1].alram",
            "mqtt.brokr",
        ] {
            let issue = err.issues.iter().find(|i| i.path == unknown);
            let issue = issue.unwrap_or_else(|| panic!("{unknown} not in {paths:?}"));
            assert_eq!(issue.message, "unknown key");
            assert!(issue.hint.contains("config/example.toml"));
        }
        // The semantic error is in the same report.
        assert!(paths.contains(&"mines[0].polling_secs"), "{paths:?}");
    }

    #[test]
    fn a_syntax_error_names_its_place_and_talks_about_syntax() {
        let err = parse(&GOOD.replace("shards = 2", "shards = = 2")).unwrap_err();
        assert_eq!(err.issues.len(), 1);
        assert!(err.issues[0].path.starts_with("line 3,"), "{}", err);
        assert!(err.issues[0].hint.contains("syntax"), "{}", err);
        assert!(!err.issues[0].hint.contains("unknown"), "{}", err);
    }

    #[test]
    fn jurisdiction_codes_must_nest() {
        let err = parse(&GOOD.replace("county = \"140121\"", "county = \"150121\"")).unwrap_err();
        assert_eq!(err.issues[0].path, "mines[0].county");
    }

    #[test]
    fn looser_declared_thresholds_are_warned_about() {
        let text = GOOD.replace(
            "location = \"face_t1\", range = [0, 4]",
            "location = \"face_t1\", range = [0, 4], alarm = 1.5, power_off = 2.0",
        );
        let (_, warnings) = parse(&text).expect("warnings only");
        let paths: Vec<&str> = warnings.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["mines[0].points[0].alarm", "mines[0].points[0].power_off"]
        );
    }

    #[test]
    fn inconsistent_levels_are_errors() {
        let text = GOOD.replace(
            "location = \"face_t1\", range = [0, 4]",
            "location = \"face_t1\", alarm = 1.0, power_off = 0.8, restore = 1.2",
        );
        let err = parse(&text).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"mines[0].points[0].power_off"));
        assert!(paths.contains(&"mines[0].points[0].restore"));
    }

    #[test]
    fn duplicate_points_are_errors() {
        let text = GOOD.replace("14012100000101MN0004002", "14012100000101MN0001001");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.issues[0].path, "mines[0].points[1].code");
    }
}
