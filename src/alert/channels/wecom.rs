//! WeCom (企业微信) group robot: a markdown message of at most 2,048 bytes.
//! WeCom answers HTTP 200 with `{"errcode":0}`; errcode 45009 (frequency
//! limit, 20 messages a minute) is retried, other errcodes are permanent.

use std::time::Duration;

use anyhow::Context;

use super::{Channel, Delivery, SendError, SendFuture, markdown};
use crate::alert::outbox::Notification;
use crate::config::channels::{ChannelConfig, ChannelKind};

/// Largest markdown content WeCom takes, bytes.
pub const MAX_BYTES: usize = 2048;
/// WeCom's "too many messages" errcode.
pub const ERR_FREQUENCY: i64 = 45009;
/// How long to wait after 45009: the limit is per minute.
pub const THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// The request body for `d`.
pub fn body(d: &Delivery) -> serde_json::Value {
    let r = markdown::render(d, MAX_BYTES);
    serde_json::json!({ "msgtype": "markdown", "markdown": { "content": r.text } })
}

/// A WeCom robot channel.
pub struct Wecom {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
}

impl Wecom {
    /// Builds the channel from its config.
    pub fn new(cfg: &ChannelConfig, timeout: Duration) -> anyhow::Result<Wecom> {
        let url = cfg.url.as_deref().context("wecom channel without url")?;
        Ok(Wecom {
            name: cfg.name.clone(),
            url: reqwest::Url::parse(url)
                .with_context(|| format!("wecom url {:?}", crate::redact::secrets(url)))?,
            client: super::http_client(timeout)?,
        })
    }

    async fn post(&self, d: &Delivery) -> Result<(), SendError> {
        let resp = self
            .client
            .post(self.url.clone())
            .json(&body(d))
            .send()
            .await
            .map_err(super::transport_error)?;
        super::robot_answer(resp, "WeCom", &[ERR_FREQUENCY], THROTTLE_WAIT).await
    }
}

impl Channel for Wecom {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.post(d))
    }

    fn fits(&self, items: &[Notification]) -> usize {
        markdown::fits(items, ChannelKind::Wecom.max_bytes().unwrap_or(MAX_BYTES))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::alert::channels::tests::note;
    use std::sync::{Arc, Mutex};

    #[test]
    fn body_is_markdown_within_the_limit() {
        let d = Delivery {
            key: "k".into(),
            items: (0..50)
                .map(|i| note(i, "m1", "overlimit", "major"))
                .collect(),
        };
        let b = body(&d);
        assert_eq!(b["msgtype"], "markdown");
        let content = b["markdown"]["content"].as_str().expect("content");
        assert!(content.len() <= MAX_BYTES);
        assert!(content.contains("另有"));
    }

    /// A local stand-in for WeCom: checks the key and the body's shape and
    /// answers with errcodes from `script` first, then 0.
    pub(crate) async fn fake_wecom(script: Vec<i64>) -> (String, Arc<Mutex<Vec<String>>>) {
        let contents = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let (c2, s2) = (contents.clone(), script.clone());
        let app = axum::Router::new().route(
            "/cgi-bin/webhook/send",
            axum::routing::post(
                move |q: axum::extract::Query<std::collections::HashMap<String, String>>,
                      body: axum::Json<serde_json::Value>| {
                    let (c2, s2) = (c2.clone(), s2.clone());
                    async move {
                        if q.get("key").map(String::as_str) != Some("K") {
                            return axum::Json(
                                serde_json::json!({"errcode": 93000, "errmsg": "invalid webhook url"}),
                            );
                        }
                        let content = body["markdown"]["content"].as_str().unwrap_or_default();
                        if body["msgtype"] != "markdown" || content.len() > 2048 {
                            return axum::Json(
                                serde_json::json!({"errcode": 40058, "errmsg": "bad content"}),
                            );
                        }
                        let code = s2.lock().expect("lock").pop_front().unwrap_or(0);
                        if code == 0 {
                            c2.lock().expect("lock").push(content.to_string());
                        }
                        axum::Json(serde_json::json!({"errcode": code, "errmsg": "x"}))
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
        (format!("http://{addr}/cgi-bin/webhook/send"), contents)
    }

    fn channel(url: &str) -> Wecom {
        let mut cfg = ChannelConfig::new("wx", ChannelKind::Wecom);
        cfg.url = Some(url.into());
        Wecom::new(&cfg, Duration::from_secs(5)).expect("channel")
    }

    #[tokio::test]
    async fn wecom_errcodes_map_to_delivered_retry_or_permanent() {
        let (url, contents) = fake_wecom(vec![ERR_FREQUENCY]).await;
        let ch = channel(&format!("{url}?key=K"));
        let d = Delivery {
            key: "k".into(),
            items: vec![note(1, "m1", "evacuation", "critical")],
        };
        match ch.send(&d).await {
            Err(SendError::Retry { after, .. }) => assert_eq!(after, Some(THROTTLE_WAIT)),
            other => panic!("{other:?}"),
        }
        ch.send(&d).await.expect("delivered");
        let got = contents.lock().expect("lock").clone();
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("**【撤人】** m1号煤矿"), "{}", got[0]);

        let wrong = channel(&format!("{url}?key=WRONG"));
        match wrong.send(&d).await {
            Err(SendError::Permanent(m)) => assert!(m.contains("93000"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_robot_fails_without_its_key_in_the_error() {
        let port = crate::broker::free_port().expect("port");
        let ch = channel(&format!(
            "http://127.0.0.1:{port}/cgi-bin/webhook/send?key=robot-key-5e1d"
        ));
        let d = Delivery {
            key: "k".into(),
            items: vec![note(1, "m1", "evacuation", "critical")],
        };
        match ch.send(&d).await {
            Err(SendError::Retry { reason, .. }) => {
                assert!(reason.starts_with("cannot connect"), "{reason}");
                assert!(!reason.contains("robot-key-5e1d"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_large_burst_goes_out_in_messages_within_the_limit_without_losing_items() {
        let (url, contents) = fake_wecom(vec![]).await;
        let ch = channel(&format!("{url}?key=K"));
        let items: Vec<Notification> = (0..45)
            .map(|i| note(i, "m1", "overlimit", "major"))
            .collect();
        let mut rest: &[Notification] = &items;
        while !rest.is_empty() {
            let n = ch.fits(rest);
            let d = Delivery {
                key: format!("k{}", rest.len()),
                items: rest[..n].to_vec(),
            };
            ch.send(&d).await.expect("delivered");
            rest = &rest[n..];
        }
        let got = contents.lock().expect("lock").clone();
        assert!(got.len() > 1);
        let marks: usize = got.iter().map(|c| c.matches("**【较重】**").count()).sum();
        assert_eq!(marks, 45);
        assert!(
            got.iter()
                .all(|c| c.len() <= MAX_BYTES && !c.contains("另有"))
        );
    }
}
