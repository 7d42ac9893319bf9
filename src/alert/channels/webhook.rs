//! Generic HTTP webhook: POSTs the delivery as JSON `{"key", "items"}` with
//! an `Idempotency-Key` header and, when a secret is set, an HMAC-SHA256
//! signature over `"{timestamp}.{body}"`.

use std::time::Duration;

use anyhow::Context;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{Channel, Delivery, SendError, SendFuture};
use crate::config::channels::ChannelConfig;

/// Header carrying the message's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Header carrying the signing time, unix seconds.
pub const TIMESTAMP: &str = "X-Minewatch-Timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE: &str = "X-Minewatch-Signature";

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!(
        "sha256={}",
        super::hex(&super::hmac_sha256(secret.as_bytes(), &msg))
    )
}

/// A webhook channel.
pub struct Webhook {
    name: String,
    url: reqwest::Url,
    secret: Option<String>,
    headers: HeaderMap,
    client: reqwest::Client,
}

impl Webhook {
    /// Builds the channel from its config.
    pub fn new(cfg: &ChannelConfig, timeout: Duration) -> anyhow::Result<Webhook> {
        let url = cfg.url.as_deref().context("webhook channel without url")?;
        let url = reqwest::Url::parse(url)
            .with_context(|| format!("webhook url {:?}", crate::redact::secrets(url)))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).with_context(|| format!("header {k:?}"))?,
                HeaderValue::from_str(v).with_context(|| format!("header {k:?} value"))?,
            );
        }
        Ok(Webhook {
            name: cfg.name.clone(),
            url,
            secret: cfg.secret.clone().filter(|s| !s.is_empty()),
            headers,
            client: super::http_client(timeout)?,
        })
    }

    async fn post(&self, d: &Delivery) -> Result<(), SendError> {
        let body = serde_json::to_vec(d)
            .map_err(|e| SendError::Permanent(format!("cannot encode: {e}")))?;
        let ts = chrono::Utc::now().timestamp();
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, d.key.as_str())
            .header(TIMESTAMP, ts.to_string());
        if let Some(secret) = &self.secret {
            req = req.header(SIGNATURE, signature(secret, ts, &body));
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(super::transport_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp.headers().get(reqwest::header::RETRY_AFTER).cloned();
        let text = resp.text().await.unwrap_or_default();
        Err(super::status_error(status, retry_after.as_ref(), &text))
    }
}

impl Channel for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.post(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let a = signature("k", 1_700_000_000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature("k", 1_700_000_001, b"{}"));
        assert_ne!(a, signature("k", 1_700_000_000, b"{ }"));
        assert_ne!(a, signature("j", 1_700_000_000, b"{}"));
        let expect = super::super::hex(&super::super::hmac_sha256(b"k", b"1700000000.{}"));
        assert_eq!(a, format!("sha256={expect}"));
    }
}
