//! DingTalk (钉钉) custom robot: a markdown message (`title` + `text`, at
//! most 20,000 bytes), signed when the robot has a secret (加签): the URL
//! gets `&timestamp=<ms>&sign=<urlencoded base64 HMAC-SHA256(secret,
//! "{timestamp}\n{secret}")>`. errcode 0 is delivered; 130101 (too fast —
//! DingTalk then blocks the robot for 10 minutes) is retried after 10
//! minutes; other errcodes are permanent.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;

use super::{Channel, Delivery, SendError, SendFuture, markdown};
use crate::alert::outbox::Notification;
use crate::config::channels::ChannelConfig;

/// Largest markdown text DingTalk takes, bytes.
pub const MAX_BYTES: usize = 20_000;
/// DingTalk's "sending too fast" errcode.
pub const ERR_TOO_FAST: i64 = 130101;
/// How long DingTalk blocks a robot that went too fast.
pub const THROTTLE_WAIT: Duration = Duration::from_secs(600);

/// The `sign` parameter (before URL encoding) for `timestamp_ms`.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let msg = format!("{timestamp_ms}\n{secret}");
    base64::engine::general_purpose::STANDARD
        .encode(super::hmac_sha256(secret.as_bytes(), msg.as_bytes()))
}

/// `url` with `timestamp` and `sign` appended.
pub fn signed_url(url: &reqwest::Url, secret: &str, timestamp_ms: i64) -> reqwest::Url {
    let mut u = url.clone();
    u.query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &sign(secret, timestamp_ms));
    u
}

/// The request body for `d`.
pub fn body(d: &Delivery) -> serde_json::Value {
    let r = markdown::render(d, MAX_BYTES);
    serde_json::json!({
        "msgtype": "markdown",
        "markdown": { "title": r.title, "text": r.text },
    })
}

/// A DingTalk robot channel.
pub struct Dingtalk {
    name: String,
    url: reqwest::Url,
    secret: Option<String>,
    client: reqwest::Client,
}

impl Dingtalk {
    /// Builds the channel from its config.
    pub fn new(cfg: &ChannelConfig, timeout: Duration) -> anyhow::Result<Dingtalk> {
        let url = cfg.url.as_deref().context("dingtalk channel without url")?;
        Ok(Dingtalk {
            name: cfg.name.clone(),
            url: reqwest::Url::parse(url)
                .with_context(|| format!("dingtalk url {:?}", crate::redact::secrets(url)))?,
            secret: cfg.secret.clone().filter(|s| !s.is_empty()),
            client: super::http_client(timeout)?,
        })
    }

    async fn post(&self, d: &Delivery) -> Result<(), SendError> {
        let url = match &self.secret {
            Some(s) => signed_url(&self.url, s, chrono::Utc::now().timestamp_millis()),
            None => self.url.clone(),
        };
        let resp = self
            .client
            .post(url)
            .json(&body(d))
            .send()
            .await
            .map_err(super::transport_error)?;
        super::robot_answer(resp, "DingTalk", &[ERR_TOO_FAST], THROTTLE_WAIT).await
    }
}

impl Channel for Dingtalk {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.post(d))
    }

    fn fits(&self, items: &[Notification]) -> usize {
        markdown::fits(items, MAX_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::channels::tests::note;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_signature_is_url_encoded_base64_of_the_hmac() {
        let url = reqwest::Url::parse("https://oapi.dingtalk.com/robot/send?access_token=t")
            .expect("url");
        let u = signed_url(&url, "SECxyz", 1_700_000_000_123);
        let q: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        assert_eq!(q[0], ("access_token".into(), "t".into()));
        assert_eq!(q[1], ("timestamp".into(), "1700000000123".into()));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&q[2].1)
            .expect("base64");
        assert_eq!(
            raw,
            super::super::hmac_sha256(b"SECxyz", b"1700000000123\nSECxyz")
        );
        // In the URL itself, base64's + / = are percent-encoded.
        let query = u.query().unwrap_or_default();
        let encoded = query.split("sign=").nth(1).unwrap_or_default();
        assert!(!encoded.contains(['+', '/', '=']), "{encoded}");
    }

    /// A local stand-in for DingTalk: verifies the token and signature
    /// (independently of `sign`) and answers with errcodes from `script`
    /// first, then 0; a bad signature gets 310000 as from DingTalk.
    async fn fake_dingtalk(
        secret: &'static str,
        script: Vec<i64>,
    ) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        use hmac::Mac;
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let (b2, s2) = (bodies.clone(), script.clone());
        let app = axum::Router::new().route(
            "/robot/send",
            axum::routing::post(
                move |q: axum::extract::Query<std::collections::HashMap<String, String>>,
                      body: axum::Json<serde_json::Value>| {
                    let (b2, s2) = (b2.clone(), s2.clone());
                    async move {
                        let answer = |code: i64, msg: &str| {
                            axum::Json(serde_json::json!({"errcode": code, "errmsg": msg}))
                        };
                        if q.get("access_token").map(String::as_str) != Some("T") {
                            return answer(300001, "token is not exist");
                        }
                        let (Some(ts), Some(sign)) = (q.get("timestamp"), q.get("sign")) else {
                            return answer(310000, "sign not match");
                        };
                        let Ok(mut mac) =
                            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                        else {
                            return answer(310000, "sign not match");
                        };
                        mac.update(format!("{ts}\n{secret}").as_bytes());
                        let expected = base64::engine::general_purpose::STANDARD
                            .encode(mac.finalize().into_bytes());
                        if &expected != sign {
                            return answer(310000, "sign not match");
                        }
                        let text = body["markdown"]["text"].as_str().unwrap_or_default();
                        if body["msgtype"] != "markdown"
                            || body["markdown"]["title"].as_str().is_none()
                            || text.len() > MAX_BYTES
                        {
                            return answer(40035, "bad body");
                        }
                        let code = s2.lock().expect("lock").pop_front().unwrap_or(0);
                        if code == 0 {
                            b2.lock().expect("lock").push(body.0.clone());
                        }
                        answer(code, if code == 0 { "ok" } else { "send too fast" })
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/robot/send?access_token=T"), bodies)
    }

    fn channel(url: &str, secret: &str) -> Dingtalk {
        let mut cfg = ChannelConfig::new("ding", crate::config::channels::ChannelKind::Dingtalk);
        cfg.url = Some(url.into());
        cfg.secret = Some(secret.into());
        Dingtalk::new(&cfg, Duration::from_secs(5)).expect("channel")
    }

    #[tokio::test]
    async fn a_signed_markdown_message_is_delivered_and_too_fast_is_retried() {
        let (url, bodies) = fake_dingtalk("SECgood", vec![ERR_TOO_FAST]).await;
        let ch = channel(&url, "SECgood");
        let d = Delivery {
            key: "k".into(),
            items: vec![
                note(1, "m1", "overlimit", "minor"),
                note(2, "m2", "evacuation", "critical"),
            ],
        };
        match ch.send(&d).await {
            Err(SendError::Retry { after, .. }) => assert_eq!(after, Some(THROTTLE_WAIT)),
            other => panic!("{other:?}"),
        }
        ch.send(&d).await.expect("delivered");
        let got = bodies.lock().expect("lock").clone();
        assert_eq!(got.len(), 1);
        let title = got[0]["markdown"]["title"].as_str().unwrap_or_default();
        assert!(title.starts_with("【撤人】m2号煤矿"), "{title}");
        let text = got[0]["markdown"]["text"].as_str().unwrap_or_default();
        assert!(text.contains("**【撤人】** m2号煤矿"));

        // A wrong secret is refused for good.
        let wrong = channel(&url, "SECwrong");
        match wrong.send(&d).await {
            Err(SendError::Permanent(m)) => assert!(m.contains("310000"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
