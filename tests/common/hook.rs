//! A local HTTP receiver for the push tests: it records every request,
//! honours `Idempotency-Key` the way a careful receiver does (a key seen
//! before is answered 200 and not counted again), checks the HMAC
//! signature, and can be told to answer the next requests with an error
//! status or to accept one slowly (to kill the daemon mid-delivery).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// What to do with the next request.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Answer this status (and do not count the delivery).
    Status(u16),
    /// Count the delivery, then answer 200 only after this long.
    AcceptSlowly(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// `Idempotency-Key`.
    pub key: String,
    /// The JSON body.
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// The key had been accepted before.
    pub duplicate: bool,
    /// The signature header matched the body and secret.
    pub signed_ok: bool,
}

/// The receiver's memory.
#[derive(Default)]
pub struct Hooks {
    pub hits: Mutex<Vec<Hit>>,
    accepted: Mutex<HashSet<String>>,
    plan: Mutex<VecDeque<Plan>>,
    secret: String,
}

impl Hooks {
    /// Queues plans for the next requests.
    pub fn plan(&self, plans: &[Plan]) {
        self.plan.lock().unwrap().extend(plans.iter().cloned());
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Accepted (first-time, 2xx) deliveries.
    pub fn delivered(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| (200..300).contains(&h.status) && !h.duplicate)
            .collect()
    }

    /// The notifications inside accepted deliveries.
    pub fn items(&self) -> Vec<Value> {
        self.delivered()
            .into_iter()
            .flat_map(|h| h.body["items"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// Starts a receiver; returns its URL (`http://127.0.0.1:PORT/hook`).
pub async fn start(secret: &str) -> (String, Arc<Hooks>) {
    let hooks = Arc::new(Hooks {
        secret: secret.to_string(),
        ..Hooks::default()
    });
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), hooks)
}

async fn receive(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let key = header("idempotency-key");
    let ts = header("x-minewatch-timestamp");
    let sig = header("x-minewatch-signature");
    let signed_ok = {
        let mut mac = Hmac::<Sha256>::new_from_slice(h.secret.as_bytes()).expect("key");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(&body);
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sig == format!("sha256={want}")
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let plan = h.plan.lock().unwrap().pop_front();
    let record = |status: u16, duplicate: bool| {
        h.hits.lock().unwrap().push(Hit {
            key: key.clone(),
            body: json.clone(),
            status,
            duplicate,
            signed_ok,
        })
    };
    match plan {
        Some(Plan::Status(s)) => {
            record(s, false);
            StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Some(Plan::AcceptSlowly(d)) => {
            let dup = !h.accepted.lock().unwrap().insert(key.clone());
            record(200, dup);
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
        None => {
            let dup = !h.accepted.lock().unwrap().insert(key.clone());
            record(200, dup);
            StatusCode::OK
        }
    }
}
