//! Push channels (`[[alerting.channels]]`): where alert notifications go —
//! an HTTP webhook, a WeCom or DingTalk group robot, an MQTT topic or mail —
//! with each channel's rate limit, burst grouping and retry knobs, and the
//! checks `minewatch check-config` runs on them.
//!
//! ```toml
//! [[alerting.channels]]
//! name = "county-wecom"
//! kind = "wecom"
//! url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"
//! # per_minute = 20, group_wait_ms = 1000, max_items = 20 by default
//!
//! [[alerting.channels]]
//! name = "city-dingtalk"
//! kind = "dingtalk"
//! url = "https://oapi.dingtalk.com/robot/send?access_token=…"
//! secret = "SEC…"
//!
//! [[alerting.channels]]
//! name = "duty-system"
//! kind = "webhook"
//! url = "https://duty.example.gov.cn/minewatch"
//! secret = "hmac key"
//! headers = { X-Api-Key = "…" }
//!
//! [[alerting.channels]]
//! name = "bus"
//! kind = "mqtt"
//! topic = "push/{county}/{mine}"   # broker: [mqtt].broker unless set
//!
//! [[alerting.channels]]
//! name = "duty-mail"
//! kind = "smtp"
//! host = "smtp.example.gov.cn"
//! tls = "starttls"                 # or "tls" (465), "none" (25)
//! from = "minewatch <alerts@example.gov.cn>"
//! to = ["duty@example.gov.cn"]
//! username = "alerts"
//! password = "…"
//! ```

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{Issue, Level};

/// What kind of receiver a channel pushes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// HTTP POST of JSON, optionally HMAC-signed.
    Webhook,
    /// WeCom (企业微信) group robot.
    Wecom,
    /// DingTalk (钉钉) custom robot.
    Dingtalk,
    /// MQTT publish at QoS 1.
    Mqtt,
    /// Mail over SMTP.
    Smtp,
}

impl ChannelKind {
    /// The name used in the config.
    pub fn key(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Wecom => "wecom",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Mqtt => "mqtt",
            ChannelKind::Smtp => "smtp",
        }
    }

    /// Messages per minute when `per_minute` is not set: the service's own
    /// limit for the chat robots (WeCom and DingTalk allow 20 a minute).
    pub fn default_per_minute(self) -> u32 {
        match self {
            ChannelKind::Webhook => 120,
            ChannelKind::Wecom => 20,
            ChannelKind::Dingtalk => 20,
            ChannelKind::Mqtt => 600,
            ChannelKind::Smtp => 30,
        }
    }

    /// Notifications per message when `max_items` is not set.
    pub fn default_max_items(self) -> usize {
        match self {
            ChannelKind::Webhook | ChannelKind::Mqtt => 100,
            ChannelKind::Wecom => 20,
            ChannelKind::Dingtalk => 50,
            ChannelKind::Smtp => 100,
        }
    }

    /// Largest message body the receiver takes, bytes, where it has one.
    pub fn max_bytes(self) -> Option<usize> {
        match self {
            ChannelKind::Wecom => Some(2048),
            ChannelKind::Dingtalk => Some(20_000),
            _ => None,
        }
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or a test receiver only).
    None,
    /// Plain connection upgraded with STARTTLS (required), port 587.
    #[default]
    Starttls,
    /// TLS from the first byte, port 465.
    Tls,
}

impl SmtpTls {
    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// One `[[alerting.channels]]` entry. Which of the per-kind keys apply
/// depends on `kind`; [`validate`] refuses keys set for another kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChannelConfig {
    /// Unique name; outbox rows and routes refer to it.
    pub name: String,
    /// What the channel pushes to.
    pub kind: ChannelKind,
    /// webhook, wecom, dingtalk: the URL to POST to (WeCom: the robot URL
    /// including `key=`; DingTalk: including `access_token=`).
    #[serde(default)]
    pub url: Option<String>,
    /// webhook: HMAC-SHA256 key for `X-Minewatch-Signature`; dingtalk: the
    /// robot's signing secret (加签, `SEC…`).
    #[serde(default)]
    pub secret: Option<String>,
    /// webhook: extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// mqtt: topic; `{county}` and `{mine}` are replaced.
    #[serde(default)]
    pub topic: Option<String>,
    /// mqtt: broker URL (`mqtt://host:port`); default: `[mqtt].broker`.
    #[serde(default)]
    pub broker: Option<String>,
    /// smtp: server host name.
    #[serde(default)]
    pub host: Option<String>,
    /// smtp: server port; default by `tls` (25, 587, 465).
    #[serde(default)]
    pub port: Option<u16>,
    /// smtp: sender address.
    #[serde(default)]
    pub from: Option<String>,
    /// smtp: recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// smtp: login name.
    #[serde(default)]
    pub username: Option<String>,
    /// smtp: password.
    #[serde(default)]
    pub password: Option<String>,
    /// smtp: `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// Messages per minute at most; default by kind.
    #[serde(default)]
    pub per_minute: Option<u32>,
    /// How long the first notification of a burst waits so that a burst
    /// at one mine becomes one message, ms; default 1000.
    #[serde(default)]
    pub group_wait_ms: Option<u64>,
    /// Notifications per message at most; default by kind.
    #[serde(default)]
    pub max_items: Option<usize>,
    /// Time allowed for one send, ms; default 10000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Longest wait between retries, s; default 300.
    #[serde(default)]
    pub max_backoff_secs: Option<u64>,
}

/// Default of `group_wait_ms`.
pub const DEFAULT_GROUP_WAIT_MS: u64 = 1000;
/// Default of `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default of `max_backoff_secs`.
pub const DEFAULT_MAX_BACKOFF_SECS: u64 = 300;

impl ChannelConfig {
    /// A channel of `kind` named `name` with nothing else set.
    pub fn new(name: &str, kind: ChannelKind) -> ChannelConfig {
        ChannelConfig {
            name: name.into(),
            kind,
            url: None,
            secret: None,
            headers: BTreeMap::new(),
            topic: None,
            broker: None,
            host: None,
            port: None,
            from: None,
            to: Vec::new(),
            username: None,
            password: None,
            tls: None,
            per_minute: None,
            group_wait_ms: None,
            max_items: None,
            timeout_ms: None,
            max_backoff_secs: None,
        }
    }

    /// `per_minute` or the kind's default.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
            .unwrap_or_else(|| self.kind.default_per_minute())
    }

    /// `group_wait_ms` or its default.
    pub fn group_wait_ms(&self) -> u64 {
        self.group_wait_ms.unwrap_or(DEFAULT_GROUP_WAIT_MS)
    }

    /// `max_items` or the kind's default.
    pub fn max_items(&self) -> usize {
        self.max_items
            .unwrap_or_else(|| self.kind.default_max_items())
    }

    /// `timeout_ms` or its default.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    /// `max_backoff_secs` or its default.
    pub fn max_backoff_secs(&self) -> u64 {
        self.max_backoff_secs.unwrap_or(DEFAULT_MAX_BACKOFF_SECS)
    }

    /// `tls` or its default.
    pub fn smtp_tls(&self) -> SmtpTls {
        self.tls.unwrap_or_default()
    }

    /// `port` or the default for `tls`.
    pub fn smtp_port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.smtp_tls().default_port())
    }

    /// The per-kind keys that are set, with the kinds that use them.
    fn kind_keys(&self) -> Vec<(&'static str, &'static [ChannelKind])> {
        use ChannelKind::*;
        let mut set: Vec<(&'static str, &'static [ChannelKind])> = Vec::new();
        let mut add = |present: bool, key: &'static str, kinds: &'static [ChannelKind]| {
            if present {
                set.push((key, kinds));
            }
        };
        add(self.url.is_some(), "url", &[Webhook, Wecom, Dingtalk]);
        add(self.secret.is_some(), "secret", &[Webhook, Dingtalk]);
        add(!self.headers.is_empty(), "headers", &[Webhook]);
        add(self.topic.is_some(), "topic", &[Mqtt]);
        add(self.broker.is_some(), "broker", &[Mqtt]);
        add(self.host.is_some(), "host", &[Smtp]);
        add(self.port.is_some(), "port", &[Smtp]);
        add(self.from.is_some(), "from", &[Smtp]);
        add(!self.to.is_empty(), "to", &[Smtp]);
        add(self.username.is_some(), "username", &[Smtp]);
        add(self.password.is_some(), "password", &[Smtp]);
        add(self.tls.is_some(), "tls", &[Smtp]);
        set
    }
}

/// Checks the channels; appends errors (the daemon will not start) and
/// warnings to `issues`, with key paths like `alerting.channels[2].url`.
pub fn validate(channels: &[ChannelConfig], issues: &mut Vec<Issue>) {
    let mut names = HashSet::new();
    for (i, c) in channels.iter().enumerate() {
        let at = |key: &str| format!("alerting.channels[{i}].{key}");
        if c.name.trim().is_empty() {
            push(
                issues,
                Level::Error,
                at("name"),
                "must not be empty".into(),
                "name the channel, e.g. \"county-wecom\"; routes refer to it",
            );
        } else if !names.insert(c.name.as_str()) {
            push(
                issues,
                Level::Error,
                at("name"),
                format!("{:?} is used by an earlier channel", c.name),
                "channel names must be unique",
            );
        }
        for (key, kinds) in c.kind_keys() {
            if !kinds.contains(&c.kind) {
                let users: Vec<&str> = kinds.iter().map(|k| k.key()).collect();
                push(
                    issues,
                    Level::Error,
                    at(key),
                    format!("is not used by a {} channel", c.kind.key()),
                    &format!(
                        "`{key}` applies to {}; remove it or fix `kind`",
                        users.join(", ")
                    ),
                );
            }
        }
        check_kind(c, i, issues);
        check_knobs(c, i, issues);
    }
}

fn push(issues: &mut Vec<Issue>, level: Level, path: String, message: String, hint: &str) {
    issues.push(Issue {
        level,
        path,
        message,
        hint: hint.into(),
    });
}

fn check_kind(c: &ChannelConfig, i: usize, issues: &mut Vec<Issue>) {
    let at = |key: &str| format!("alerting.channels[{i}].{key}");
    let err = |issues: &mut Vec<Issue>, key: &str, message: String, hint: &str| {
        push(issues, Level::Error, at(key), message, hint)
    };
    match c.kind {
        ChannelKind::Webhook | ChannelKind::Wecom | ChannelKind::Dingtalk => {
            let Some(url) = &c.url else {
                err(
                    issues,
                    "url",
                    format!("a {} channel needs a url", c.kind.key()),
                    url_hint(c.kind),
                );
                return;
            };
            let parsed = match reqwest::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => u,
                Ok(u) => {
                    err(
                        issues,
                        "url",
                        format!("scheme {:?} is not http or https", u.scheme()),
                        url_hint(c.kind),
                    );
                    return;
                }
                Err(e) => {
                    err(
                        issues,
                        "url",
                        format!("{url:?} is not a URL: {e}"),
                        url_hint(c.kind),
                    );
                    return;
                }
            };
            let has = |name: &str| {
                parsed
                    .query_pairs()
                    .any(|(k, v)| k == name && !v.is_empty())
            };
            if c.kind == ChannelKind::Wecom && !has("key") {
                err(
                    issues,
                    "url",
                    "the WeCom robot URL has no key= parameter".into(),
                    url_hint(c.kind),
                );
            }
            if c.kind == ChannelKind::Dingtalk && !has("access_token") {
                err(
                    issues,
                    "url",
                    "the DingTalk robot URL has no access_token= parameter".into(),
                    url_hint(c.kind),
                );
            }
            if c.kind == ChannelKind::Dingtalk && c.secret.is_none() {
                push(
                    issues,
                    Level::Warning,
                    at("secret"),
                    "no signing secret".into(),
                    "unless the robot uses keywords or an IP allow-list, DingTalk refuses \
                     unsigned messages; copy the robot's 加签 secret (SEC…) here",
                );
            }
            if parsed.scheme() == "http" && c.kind != ChannelKind::Webhook {
                push(
                    issues,
                    Level::Warning,
                    at("url"),
                    "plain http to a chat service".into(),
                    "the robot's key travels in the URL; use https",
                );
            }
            for name in c.headers.keys() {
                let bad = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err();
                if bad {
                    err(
                        issues,
                        "headers",
                        format!("{name:?} is not a header name"),
                        "header names are ASCII tokens such as X-Api-Key",
                    );
                }
            }
            for (name, value) in &c.headers {
                if reqwest::header::HeaderValue::from_str(value).is_err() {
                    err(
                        issues,
                        "headers",
                        format!("the value of {name:?} is not a valid header value"),
                        "header values are visible ASCII",
                    );
                }
            }
            if c.secret.as_deref() == Some("") {
                err(
                    issues,
                    "secret",
                    "must not be empty".into(),
                    "remove it or set the key",
                );
            }
        }
        ChannelKind::Mqtt => {
            match &c.topic {
                None => err(
                    issues,
                    "topic",
                    "an mqtt channel needs a topic".into(),
                    "e.g. \"alerts/{county}/{mine}\"",
                ),
                Some(t) if t.is_empty() || t.contains(['+', '#', '\0']) => err(
                    issues,
                    "topic",
                    format!("{t:?} is not a topic to publish to"),
                    "no wildcards (+, #); {county} and {mine} are replaced",
                ),
                Some(t) => {
                    let rest = t.replace("{county}", "").replace("{mine}", "");
                    if rest.contains(['{', '}']) {
                        err(
                            issues,
                            "topic",
                            format!("{t:?} has an unknown placeholder"),
                            "only {county} and {mine} are replaced",
                        );
                    }
                }
            }
            if let Some(b) = &c.broker
                && rumqttc::MqttOptions::parse_url(format!("{b}?client_id=check")).is_err()
            {
                err(
                    issues,
                    "broker",
                    format!("{:?} is not a broker URL", crate::redact::secrets(b)),
                    "write it as mqtt://HOST:PORT, or leave it out to use [mqtt].broker",
                );
            }
        }
        ChannelKind::Smtp => {
            match c.host.as_deref() {
                None | Some("") => err(
                    issues,
                    "host",
                    "an smtp channel needs a host".into(),
                    "the mail server, e.g. \"smtp.example.gov.cn\"",
                ),
                Some(_) => {}
            }
            if c.port == Some(0) {
                err(
                    issues,
                    "port",
                    "0 is not a port".into(),
                    "587 (starttls), 465 (tls) or 25 (none)",
                );
            }
            match &c.from {
                None => err(
                    issues,
                    "from",
                    "an smtp channel needs a sender".into(),
                    "e.g. \"minewatch <alerts@example.gov.cn>\"",
                ),
                Some(f) if f.parse::<lettre::message::Mailbox>().is_err() => err(
                    issues,
                    "from",
                    format!("{f:?} is not a mail address"),
                    "e.g. \"minewatch <alerts@example.gov.cn>\"",
                ),
                Some(_) => {}
            }
            if c.to.is_empty() {
                err(
                    issues,
                    "to",
                    "an smtp channel needs at least one recipient".into(),
                    "a list, e.g. [\"duty@example.gov.cn\"]",
                );
            }
            for (j, t) in c.to.iter().enumerate() {
                if t.parse::<lettre::message::Mailbox>().is_err() {
                    err(
                        issues,
                        &format!("to[{j}]"),
                        format!("{t:?} is not a mail address"),
                        "e.g. \"duty@example.gov.cn\"",
                    );
                }
            }
            if c.username.is_some() != c.password.is_some() {
                err(
                    issues,
                    if c.username.is_some() {
                        "password"
                    } else {
                        "username"
                    },
                    "username and password go together".into(),
                    "set both, or neither for a relay that needs no login",
                );
            }
            if c.smtp_tls() == SmtpTls::None && c.password.is_some() {
                push(
                    issues,
                    Level::Warning,
                    at("tls"),
                    "the password would cross the network in clear".into(),
                    "use tls = \"starttls\" or \"tls\"",
                );
            }
        }
    }
}

fn url_hint(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Wecom => {
            "copy the robot's webhook address: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"
        }
        ChannelKind::Dingtalk => {
            "copy the robot's webhook address: https://oapi.dingtalk.com/robot/send?access_token=…"
        }
        _ => "an http(s) URL that accepts a JSON POST",
    }
}

fn check_knobs(c: &ChannelConfig, i: usize, issues: &mut Vec<Issue>) {
    let at = |key: &str| format!("alerting.channels[{i}].{key}");
    if c.per_minute == Some(0) {
        push(
            issues,
            Level::Error,
            at("per_minute"),
            "must be at least 1".into(),
            &format!(
                "{} is the default for {}",
                c.kind.default_per_minute(),
                c.kind.key()
            ),
        );
    } else if let Some(n) = c.per_minute
        && matches!(c.kind, ChannelKind::Wecom | ChannelKind::Dingtalk)
        && n > c.kind.default_per_minute()
    {
        push(
            issues,
            Level::Warning,
            at("per_minute"),
            format!("{n} is above the service's limit of 20 a minute"),
            "the robot will refuse (DingTalk then blocks it for 10 minutes); keep 20 or less",
        );
    }
    if let Some(ms) = c.group_wait_ms
        && ms > 60_000
    {
        push(
            issues,
            Level::Warning,
            at("group_wait_ms"),
            format!("{ms} ms holds every first notification of a burst for over a minute"),
            "1000 is usual; an evacuation alarm waits this long before it is pushed",
        );
    }
    if c.max_items == Some(0) {
        push(
            issues,
            Level::Error,
            at("max_items"),
            "must be at least 1".into(),
            &format!(
                "{} is the default for {}",
                c.kind.default_max_items(),
                c.kind.key()
            ),
        );
    }
    if c.timeout_ms == Some(0) || c.timeout_ms.is_some_and(|t| t > 300_000) {
        push(
            issues,
            Level::Error,
            at("timeout_ms"),
            format!("{} is out of range", c.timeout_ms()),
            "use 1..=300000; 10000 is usual",
        );
    }
    if c.max_backoff_secs == Some(0) || c.max_backoff_secs.is_some_and(|t| t > 86_400) {
        push(
            issues,
            Level::Error,
            at("max_backoff_secs"),
            format!("{} is out of range", c.max_backoff_secs()),
            "use 1..=86400; 300 is usual",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Alerting {
        channels: Vec<ChannelConfig>,
    }

    fn parse(text: &str) -> Vec<ChannelConfig> {
        toml::from_str::<Alerting>(text).expect("parses").channels
    }

    fn issues(channels: &[ChannelConfig]) -> Vec<Issue> {
        let mut out = Vec::new();
        validate(channels, &mut out);
        out
    }

    const GOOD: &str = r#"
[[channels]]
name = "county-wecom"
kind = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc"

[[channels]]
name = "city-ding"
kind = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=t"
secret = "SECabc"

[[channels]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9000/alerts"
secret = "k"
headers = { X-Api-Key = "v" }
per_minute = 60

[[channels]]
name = "bus"
kind = "mqtt"
topic = "push/{county}/{mine}"

[[channels]]
name = "mail"
kind = "smtp"
host = "smtp.example.gov.cn"
from = "minewatch <alerts@example.gov.cn>"
to = ["duty@example.gov.cn"]
username = "alerts"
password = "pw"
tls = "tls"
"#;

    #[test]
    fn a_good_channel_list_has_no_issues_and_kind_defaults_apply() {
        let ch = parse(GOOD);
        assert!(issues(&ch).is_empty(), "{:?}", issues(&ch));
        assert_eq!(ch[0].per_minute(), 20);
        assert_eq!(ch[1].per_minute(), 20);
        assert_eq!(ch[2].per_minute(), 60);
        assert_eq!(ch[3].per_minute(), 600);
        assert_eq!(ch[4].per_minute(), 30);
        assert_eq!(ch[4].smtp_port(), 465);
        assert_eq!(ch[0].group_wait_ms(), 1000);
        assert_eq!(ch[0].max_backoff_secs(), 300);
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        let text = "[[alerting.channels]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://x\"\nsecrte = \"k\"\n";
        let err = crate::config::parse(text).unwrap_err();
        assert!(
            err.issues
                .iter()
                .any(|i| i.path == "alerting.channels[0].secrte" && i.message == "unknown key"),
            "{err}"
        );
        let text = "[[channels]]\nname = \"a\"\nkind = \"feishu\"\n";
        assert!(toml::from_str::<Alerting>(text).is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut ch = parse(GOOD);
        ch[1].name = "county-wecom".into();
        ch[0].url = Some("https://qyapi.weixin.qq.com/cgi-bin/webhook/send".into());
        ch[2].topic = Some("x".into());
        ch[3].topic = Some("push/#".into());
        ch[4].to = vec!["not an address".into()];
        ch[4].password = None;
        ch[2].max_items = Some(0);
        let found = issues(&ch);
        let errors: Vec<&str> = found
            .iter()
            .filter(|i| i.level == Level::Error)
            .map(|i| i.path.as_str())
            .collect();
        for path in [
            "alerting.channels[1].name",
            "alerting.channels[0].url",
            "alerting.channels[2].topic",
            "alerting.channels[3].topic",
            "alerting.channels[4].to[0]",
            "alerting.channels[4].password",
            "alerting.channels[2].max_items",
        ] {
            assert!(errors.contains(&path), "{path} missing from {errors:?}");
        }
        assert!(found.iter().all(|i| !i.hint.is_empty()));
    }

    #[test]
    fn missing_required_keys_and_risky_settings() {
        let mut ding = ChannelConfig::new("d", ChannelKind::Dingtalk);
        ding.url = Some("https://oapi.dingtalk.com/robot/send?access_token=t".into());
        ding.per_minute = Some(40);
        let mail = ChannelConfig::new("m", ChannelKind::Smtp);
        let found = issues(&[ding, mail]);
        let has =
            |level: Level, path: &str| found.iter().any(|i| i.level == level && i.path == path);
        assert!(has(Level::Warning, "alerting.channels[0].secret"));
        assert!(has(Level::Warning, "alerting.channels[0].per_minute"));
        assert!(has(Level::Error, "alerting.channels[1].host"));
        assert!(has(Level::Error, "alerting.channels[1].from"));
        assert!(has(Level::Error, "alerting.channels[1].to"));
    }
}
