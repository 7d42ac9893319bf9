//! A stand-in for a regulator's system that receives minewatch's webhook
//! pushes: the demo points its county and city channels here. It checks
//! each push's HMAC signature, honours `Idempotency-Key` (a key it has seen
//! is answered 200 and not counted again), prints one line per new
//! notification, and lists what it received at `GET /received`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// One notification as received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Received {
    /// Which receiver path (`county`, `city`, …).
    pub desk: String,
    /// The push's idempotency key.
    pub key: String,
    /// The signature matched.
    pub signed_ok: bool,
    /// The notification.
    pub item: Value,
}

#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<Received>>,
    keys: Mutex<HashSet<String>>,
    secret: String,
}

/// A running receiver.
pub struct WebhookReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl WebhookReceiver {
    /// Listens on `listen`; pushes to `http://ADDR/hook/{desk}` are checked
    /// against `secret`.
    pub async fn start(listen: SocketAddr, secret: &str) -> anyhow::Result<WebhookReceiver> {
        let inbox = Arc::new(Inbox {
            secret: secret.to_string(),
            ..Inbox::default()
        });
        let app = axum::Router::new()
            .route("/hook/{desk}", post(receive))
            .route("/received", get(list))
            .with_state(inbox);
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "demo webhook receiver stopped");
            }
        });
        Ok(WebhookReceiver { addr })
    }

    /// The URL of one desk.
    pub fn url(&self, desk: &str) -> String {
        format!("http://{}/hook/{desk}", self.addr)
    }
}

async fn list(State(inbox): State<Arc<Inbox>>) -> Json<Value> {
    let received = inbox.received.lock().map(|r| r.clone()).unwrap_or_default();
    Json(json!({ "count": received.len(), "received": received }))
}

fn signature_ok(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(header("x-minewatch-timestamp").as_bytes());
    mac.update(b".");
    mac.update(body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    header("x-minewatch-signature") == format!("sha256={want}")
}

async fn receive(
    State(inbox): State<Arc<Inbox>>,
    Path(desk): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let signed_ok = signature_ok(&inbox.secret, &headers, &body);
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let fresh = inbox
        .keys
        .lock()
        .map(|mut k| key.is_empty() || k.insert(key.clone()))
        .unwrap_or(true);
    if !fresh {
        return StatusCode::OK;
    }
    let items = doc["items"].as_array().cloned().unwrap_or_default();
    for item in items {
        println!(
            "  [webhook {desk}] {} — {}{}",
            item["title"].as_str().unwrap_or("?"),
            item["transition"].as_str().unwrap_or("?"),
            if signed_ok { "" } else { " (BAD SIGNATURE)" }
        );
        if let Ok(mut r) = inbox.received.lock() {
            r.push(Received {
                desk: desk.clone(),
                key: key.clone(),
                signed_ok,
                item,
            });
        }
    }
    StatusCode::OK
}
