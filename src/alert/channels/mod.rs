//! Push channels: one [`Channel`] per `[[alerting.channels]]` entry, each
//! turning a [`Delivery`] (one message of one or more notifications) into a
//! request to its receiver and saying whether it arrived, should be tried
//! again, or never will.
//!
//! Channels only send; the dispatcher (`alert::dispatch`) decides what goes
//! into a message, when, and how often ([`rate`]).

pub mod dingtalk;
pub mod markdown;
pub mod mqtt;
pub mod rate;
pub mod smtp;
pub mod webhook;
pub mod wecom;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::outbox::Notification;
use crate::config::channels::{ChannelConfig, ChannelKind};

/// One message: the notifications it carries and its idempotency key (a
/// resend of the same message carries the same key).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// Idempotency key of the message.
    pub key: String,
    /// What the message tells, most severe first when the dispatcher made
    /// it (see [`severity_rank`]).
    pub items: Vec<Notification>,
}

/// Why a send did not arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// Try again later (throttled, receiver down, timeout); `after` is the
    /// wait the receiver asked for, if it did.
    Retry {
        /// Wait asked for by the receiver.
        after: Option<Duration>,
        /// What went wrong.
        reason: String,
    },
    /// The receiver refuses this for good (bad token, malformed request).
    Permanent(String),
}

impl SendError {
    /// A retry without a wait asked for.
    pub fn retry(reason: impl Into<String>) -> SendError {
        SendError::Retry {
            after: None,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retry {
                after: Some(a),
                reason,
            } => write!(f, "{reason} (retry after {} s)", a.as_secs()),
            SendError::Retry {
                after: None,
                reason,
            } => write!(f, "{reason}"),
            SendError::Permanent(reason) => write!(f, "{reason}"),
        }
    }
}

/// The future a send returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// A receiver of pushed notifications.
pub trait Channel: Send + Sync {
    /// The channel's name from the config.
    fn name(&self) -> &str;

    /// Sends one message. Resolves when the receiver has taken it (HTTP
    /// answer, MQTT PUBACK, SMTP `250` after the data).
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a>;

    /// How many of `items`, taken in order, fit into one message whole
    /// (at least 1: a single item too long for the receiver is cut).
    fn fits(&self, items: &[Notification]) -> usize {
        items.len()
    }

    /// Whether notifications of different mines may share a message (an
    /// MQTT topic per mine cannot).
    fn merges_mines(&self) -> bool {
        true
    }
}

/// Installs rustls's `ring` provider as the process default (once; later
/// calls do nothing). HTTPS and SMTP over TLS need it; [`build`] calls it.
pub fn install_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Builds the channel a config entry describes. `default_broker` is the
/// daemon's `[mqtt].broker`, used by MQTT channels that name none.
pub fn build(cfg: &ChannelConfig, default_broker: &str) -> anyhow::Result<Arc<dyn Channel>> {
    install_tls_provider();
    let timeout = Duration::from_millis(cfg.timeout_ms());
    Ok(match cfg.kind {
        ChannelKind::Webhook => Arc::new(webhook::Webhook::new(cfg, timeout)?),
        ChannelKind::Wecom => Arc::new(wecom::Wecom::new(cfg, timeout)?),
        ChannelKind::Dingtalk => Arc::new(dingtalk::Dingtalk::new(cfg, timeout)?),
        ChannelKind::Mqtt => Arc::new(mqtt::MqttChannel::new(cfg, default_broker)?),
        ChannelKind::Smtp => Arc::new(smtp::Smtp::new(cfg, timeout)?),
    })
}

/// Sort rank of a notification: evacuation first, then by severity, then
/// everything else (lower goes first).
pub fn severity_rank(n: &Notification) -> u8 {
    if n.kind == "evacuation" {
        return 0;
    }
    match n.severity.as_str() {
        "critical" => 1,
        "major" => 2,
        "minor" => 3,
        _ => 4,
    }
}

/// HMAC-SHA256 of `message` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The HTTP client a channel uses.
pub(crate) fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    install_tls_provider();
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("minewatch/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Classifies a transport error: everything reqwest reports (connection
/// refused, reset, timeout, bad TLS) may clear up, so it is retried. The
/// URL is dropped from the text: chat robots carry their key in it.
pub(crate) fn transport_error(e: reqwest::Error) -> SendError {
    let e = e.without_url();
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    SendError::retry(crate::redact::secrets(&text))
}

/// Classifies a non-2xx HTTP status: 429 and 5xx are retried (honouring
/// `Retry-After`), other statuses are permanent.
pub(crate) fn status_error(
    status: reqwest::StatusCode,
    retry_after: Option<&reqwest::header::HeaderValue>,
    body: &str,
) -> SendError {
    let mut snippet: String = body.chars().take(200).collect();
    if snippet.len() < body.len() {
        snippet.push('…');
    }
    let reason = format!("HTTP {status}: {snippet}");
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        SendError::Retry {
            after: retry_after
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, chrono::Utc::now())),
            reason,
        }
    } else {
        SendError::Permanent(reason)
    }
}

/// Parses `Retry-After`: delay seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (at.timestamp_millis() - now.timestamp_millis()).max(0);
    Some(Duration::from_millis(ms as u64))
}

/// Reads a chat robot's `{"errcode":…, "errmsg":…}` answer; `retry_codes`
/// are the codes that mean "too fast", retried after `after`.
pub(crate) async fn robot_answer(
    resp: reqwest::Response,
    service: &str,
    retry_codes: &[i64],
    after: Duration,
) -> Result<(), SendError> {
    let status = resp.status();
    let retry_after = resp.headers().get(reqwest::header::RETRY_AFTER).cloned();
    let body = resp.text().await.map_err(transport_error)?;
    if !status.is_success() {
        return Err(status_error(status, retry_after.as_ref(), &body));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        errcode: Option<i64>,
        #[serde(default)]
        errmsg: String,
    }
    let answer: Answer = serde_json::from_str(&body).map_err(|e| {
        SendError::retry(format!(
            "{service} answered HTTP {status} with an unreadable body ({e}): {}",
            body.chars().take(200).collect::<String>()
        ))
    })?;
    match answer.errcode {
        Some(0) => Ok(()),
        Some(code) if retry_codes.contains(&code) => Err(SendError::Retry {
            after: Some(after),
            reason: format!("{service} errcode {code}: {}", answer.errmsg),
        }),
        Some(code) => Err(SendError::Permanent(format!(
            "{service} errcode {code}: {}",
            answer.errmsg
        ))),
        None => Err(SendError::retry(format!(
            "{service} answered without errcode: {}",
            body.chars().take(200).collect::<String>()
        ))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A notification for tests.
    pub fn note(i: usize, mine: &str, kind: &str, severity: &str) -> Notification {
        Notification {
            key: format!("a{i}:1:ch"),
            alert_id: format!("a{i}"),
            seq: 1,
            transition: "raised".into(),
            at: "2026-11-23T08:00:00+08:00".into(),
            level: "county".into(),
            kind: kind.into(),
            severity: severity.into(),
            mine: mine.into(),
            mine_name: format!("{mine}号煤矿"),
            county: "140121".into(),
            title: if kind == "evacuation" {
                format!("【撤人】{mine}号煤矿 回风巷 CH4 1.62% ≥ 1.50%")
            } else {
                format!("{mine}号煤矿 工作面 CH4 0.9{i}% ≥ 0.80%")
            },
            body: vec![
                "规则：掘进工作面 CH4 报警 0.80%".into(),
                "测点：14012100000101MN0001001".into(),
            ],
            alert: serde_json::json!({"id": format!("a{i}")}),
        }
    }

    #[test]
    fn status_codes_map_to_retry_or_permanent() {
        use reqwest::StatusCode;
        let ra = reqwest::header::HeaderValue::from_static("7");
        match status_error(StatusCode::TOO_MANY_REQUESTS, Some(&ra), "") {
            SendError::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(7))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, None, ""),
            SendError::Retry { after: None, .. }
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_REQUEST, None, "nope"),
            SendError::Permanent(_)
        ));
        assert!(matches!(
            status_error(StatusCode::UNAUTHORIZED, None, ""),
            SendError::Permanent(_)
        ));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
