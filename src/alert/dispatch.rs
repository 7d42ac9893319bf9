//! The outbox dispatcher: drains due outbox rows through the push channels.
//!
//! Every ~250 ms, or when woken, it fetches the rows due now and plans at
//! most one message per idle channel:
//!
//! - rows already put into a batch (`batch_key` set: sent before, perhaps
//!   before a restart) go out again as exactly that batch under that key,
//!   so a receiver that honours the idempotency key sees one delivery;
//! - otherwise a channel's rows are grouped by mine, and a group is ready
//!   once its oldest row is `group_wait` old (a burst at one mine becomes
//!   one message); when the ready groups would need more messages than the
//!   rate limit has slots left, they are merged into summary messages
//!   across mines, most severe first, rather than waiting or dropping;
//! - a message holds at most `max_items` and what the channel's byte limit
//!   allows; the rest stays pending for the next message.
//!
//! The rows are recorded as a batch (`assign_batch`) before the send; then
//! the send's outcome marks them delivered, to retry (exponential backoff
//! from 1 s to `max_backoff`, or the receiver's `Retry-After` if longer)
//! or failed. Each channel has at most one send in flight (which keeps its
//! order) and channels never wait for each other. Times are wall-clock
//! (`chrono::Utc::now()`), like the `created_ms` the store writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::channels::rate::RateLimiter;
use super::channels::{self, Channel, Delivery, SendError, severity_rank};
use super::outbox::{OutboxRow, OutboxStore};
use crate::config::channels::ChannelConfig;
use crate::metrics::Metrics;

/// How often the outbox is polled when nothing wakes the dispatcher.
pub const POLL: Duration = Duration::from_millis(250);
/// Rows fetched per round at most.
pub const FETCH_LIMIT: usize = 5000;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long in-flight sends may finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A channel's sending limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Messages per `window` at most.
    pub per_window: u32,
    /// The rate window: a minute (tests shorten it).
    pub window: Duration,
    /// How long the first row of a burst at one mine waits for others.
    pub group_wait: Duration,
    /// Notifications per message at most.
    pub max_items: usize,
    /// Time allowed for one send.
    pub timeout: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Limits {
    /// The limits a channel's config sets (defaults by kind).
    pub fn from_config(cfg: &ChannelConfig) -> Limits {
        Limits {
            per_window: cfg.per_minute(),
            window: Duration::from_secs(60),
            group_wait: Duration::from_millis(cfg.group_wait_ms()),
            max_items: cfg.max_items().max(1),
            timeout: Duration::from_millis(cfg.timeout_ms().max(1)),
            max_backoff: Duration::from_secs(cfg.max_backoff_secs().max(1)),
        }
    }
}

/// The wait before the next attempt after `attempts` failed ones: 1 s
/// doubling up to `max`, or what the receiver asked for if longer.
pub fn backoff(attempts: u32, max: Duration, asked: Option<Duration>) -> Duration {
    let exp = Duration::from_secs(1u64 << attempts.min(30)).min(max);
    match asked {
        Some(a) => exp.max(a.min(MAX_RETRY_AFTER)),
        None => exp,
    }
}

/// The key of a message: a single notification's own key, or for several
/// `b-` and a hash of their sorted keys (the same rows give the same key).
pub fn batch_key(keys: &[&str]) -> String {
    if let [one] = keys {
        return (*one).to_string();
    }
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for k in sorted {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    format!("b-{}", &channels::hex(&h.finalize())[..32])
}

/// One channel's state in the dispatcher.
struct Lane {
    channel: Arc<dyn Channel>,
    limits: Limits,
    rate: RateLimiter,
    /// A send is in flight.
    busy: bool,
    /// The receiver asked us to wait (throttled) until then.
    paused_until: Option<Instant>,
}

/// A message planned for one channel.
struct Plan {
    ids: Vec<i64>,
    created_ms: Vec<i64>,
    attempts: u32,
    /// The rows were assigned to this batch before (a resend).
    resend: bool,
    delivery: Delivery,
}

/// What a finished send tells the loop.
struct Done {
    channel: String,
    /// Pause the channel (the receiver throttled us) for this long.
    pause: Option<Duration>,
}

/// Drains the outbox through the channels.
pub struct Dispatcher {
    lanes: BTreeMap<String, Lane>,
    metrics: Arc<Metrics>,
    /// The channel of each send task in flight.
    tasks: HashMap<tokio::task::Id, String>,
}

impl Dispatcher {
    /// A dispatcher over `channels`, each with its limits.
    pub fn new(channels: Vec<(Arc<dyn Channel>, Limits)>, metrics: Arc<Metrics>) -> Dispatcher {
        let mut lanes = BTreeMap::new();
        for (channel, limits) in channels {
            metrics.register_push_channel(channel.name());
            lanes.insert(
                channel.name().to_string(),
                Lane {
                    rate: RateLimiter::new(limits.per_window, limits.window),
                    channel,
                    limits,
                    busy: false,
                    paused_until: None,
                },
            );
        }
        Dispatcher {
            lanes,
            metrics,
            tasks: HashMap::new(),
        }
    }

    /// Builds every configured channel and a dispatcher over them.
    /// `default_broker` is `[mqtt].broker`.
    pub fn from_config(
        cfgs: &[ChannelConfig],
        default_broker: &str,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Dispatcher> {
        let mut channels = Vec::with_capacity(cfgs.len());
        for cfg in cfgs {
            let ch = channels::build(cfg, default_broker)
                .map_err(|e| e.context(format!("alerting channel {:?}", cfg.name)))?;
            channels.push((ch, Limits::from_config(cfg)));
        }
        Ok(Dispatcher::new(channels, metrics))
    }

    /// Runs until `shutdown` turns true. Sends still in flight then get a
    /// few seconds to finish; one cut off stays in its batch and goes out
    /// again, with the same key, on the next start.
    pub async fn run(
        mut self,
        store: Arc<dyn OutboxStore>,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut inflight: JoinSet<Done> = JoinSet::new();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_backlog: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    self.finished(done);
                }
                _ = wake.notified() => {}
                _ = tick.tick() => {}
            }
            self.round(&store, &mut inflight).await;
            if last_backlog.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_backlog = Some(Instant::now());
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.backlog()).await {
                    Ok(Ok(n)) => self
                        .metrics
                        .push_backlog
                        .set(i64::try_from(n).unwrap_or(i64::MAX)),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot count the outbox backlog"),
                    Err(e) => tracing::warn!(error = %e, "outbox backlog task failed"),
                }
            }
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while inflight.join_next().await.is_some() {}
        })
        .await;
    }

    fn finished(&mut self, done: Result<Done, tokio::task::JoinError>) {
        let (channel, pause) = match done {
            Ok(done) => {
                self.tasks.retain(|_, c| *c != done.channel);
                (Some(done.channel), done.pause)
            }
            Err(e) => {
                // A send task panicked (a bug): free its channel and go on.
                let channel = self.tasks.remove(&e.id());
                tracing::error!(channel = ?channel, error = %e, "push send task failed");
                (channel, None)
            }
        };
        if let Some(lane) = channel.and_then(|c| self.lanes.get_mut(&c)) {
            lane.busy = false;
            if let Some(p) = pause {
                lane.paused_until = Some(Instant::now() + p);
            }
        }
    }

    /// One round: fetch due rows and start a send on each idle channel
    /// that has something to send.
    async fn round(&mut self, store: &Arc<dyn OutboxStore>, inflight: &mut JoinSet<Done>) {
        let now = Instant::now();
        let idle = self
            .lanes
            .values()
            .any(|l| !l.busy && l.paused_until.is_none_or(|p| p <= now));
        if !idle && !self.lanes.is_empty() {
            return;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let s = store.clone();
        let rows = match tokio::task::spawn_blocking(move || s.due(now_ms, FETCH_LIMIT)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox read task failed");
                return;
            }
        };
        let mut by_channel: HashMap<String, Vec<OutboxRow>> = HashMap::new();
        for row in rows {
            by_channel.entry(row.channel.clone()).or_default().push(row);
        }
        for (name, rows) in by_channel {
            let Some(lane) = self.lanes.get_mut(&name) else {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let reason = format!("channel {name:?} is not configured");
                tracing::warn!(channel = %name, rows = ids.len(), "{reason}; rows marked failed");
                self.metrics
                    .push_failed
                    .with_label_values(&[name.as_str(), "permanent"])
                    .inc();
                let s = store.clone();
                let result = tokio::task::spawn_blocking(move || s.failed(&ids, &reason)).await;
                if !matches!(result, Ok(Ok(()))) {
                    tracing::warn!(channel = %name, "cannot mark rows of an unknown channel failed");
                }
                continue;
            };
            if lane.busy || lane.paused_until.is_some_and(|p| p > now) {
                continue;
            }
            lane.paused_until = None;
            let Some(plan) = plan(lane, &rows, now_ms, now) else {
                continue;
            };
            lane.busy = true;
            let handle = inflight.spawn(send(
                store.clone(),
                lane.channel.clone(),
                lane.limits.clone(),
                plan,
                self.metrics.clone(),
            ));
            self.tasks.insert(handle.id(), name);
        }
    }
}

/// Chooses the next message for a channel from its due rows, taking a
/// rate-limit slot for it; `None` when nothing is ready or no slot is free.
fn plan(lane: &mut Lane, rows: &[OutboxRow], now_ms: i64, now: Instant) -> Option<Plan> {
    // A batch sent before goes out again as it was.
    if let Some(key) = rows.iter().find_map(|r| r.batch_key.clone()) {
        if !lane.rate.try_take(now) {
            return None;
        }
        let mut batch: Vec<&OutboxRow> = rows
            .iter()
            .filter(|r| r.batch_key.as_deref() == Some(key.as_str()))
            .collect();
        batch.sort_by_key(|r| (severity_rank(&r.notification), r.created_ms, r.id));
        return Some(make_plan(&batch, key, true));
    }

    let group_wait = i64::try_from(lane.limits.group_wait.as_millis()).unwrap_or(i64::MAX);
    let mut groups: BTreeMap<&str, Vec<&OutboxRow>> = BTreeMap::new();
    for r in rows {
        groups.entry(r.mine.as_str()).or_default().push(r);
    }
    let mut ready: Vec<Vec<&OutboxRow>> = groups
        .into_values()
        .filter(|g| {
            g.iter()
                .map(|r| r.created_ms)
                .min()
                .is_some_and(|oldest| now_ms.saturating_sub(oldest) >= group_wait)
        })
        .collect();
    if ready.is_empty() {
        return None;
    }
    let slots = lane.rate.available(now);
    if slots == 0 {
        return None;
    }
    let key_of = |r: &&OutboxRow| (severity_rank(&r.notification), r.created_ms, r.id);
    for g in &mut ready {
        g.sort_by_key(key_of);
    }
    // Most severe group first, then the oldest.
    ready.sort_by_key(|g| g.first().map(key_of));

    let max_items = lane.limits.max_items.max(1);
    let channel = lane.channel.clone();
    let take = |candidates: &[&OutboxRow]| -> usize {
        let n = candidates.len().min(max_items);
        let notes: Vec<_> = candidates[..n]
            .iter()
            .map(|r| r.notification.clone())
            .collect();
        channel.fits(&notes).clamp(1, n.max(1))
    };
    // Messages needed if every mine went on its own.
    let needed: usize = ready
        .iter()
        .map(|g| {
            let mut rest: &[&OutboxRow] = g;
            let mut n = 0;
            while !rest.is_empty() {
                rest = &rest[take(rest)..];
                n += 1;
            }
            n
        })
        .sum();
    let candidates: Vec<&OutboxRow> = if needed > slots && lane.channel.merges_mines() {
        let mut all: Vec<&OutboxRow> = ready.into_iter().flatten().collect();
        all.sort_by_key(key_of);
        all
    } else {
        ready.into_iter().next().unwrap_or_default()
    };
    if candidates.is_empty() {
        return None;
    }
    let n = take(&candidates);
    let chosen = &candidates[..n];
    let keys: Vec<&str> = chosen.iter().map(|r| r.notification.key.as_str()).collect();
    let key = batch_key(&keys);
    if !lane.rate.try_take(now) {
        return None;
    }
    Some(make_plan(chosen, key, false))
}

fn make_plan(rows: &[&OutboxRow], key: String, resend: bool) -> Plan {
    Plan {
        ids: rows.iter().map(|r| r.id).collect(),
        created_ms: rows.iter().map(|r| r.created_ms).collect(),
        attempts: rows.iter().map(|r| r.attempts).max().unwrap_or(0),
        resend,
        delivery: Delivery {
            key,
            items: rows.iter().map(|r| r.notification.clone()).collect(),
        },
    }
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("store task failed: {e}"))?
}

/// Records the batch, sends it and records the outcome.
async fn send(
    store: Arc<dyn OutboxStore>,
    channel: Arc<dyn Channel>,
    limits: Limits,
    plan: Plan,
    metrics: Arc<Metrics>,
) -> Done {
    let name = channel.name().to_string();
    let mut done = Done {
        channel: name.clone(),
        pause: None,
    };
    let ids = plan.ids.clone();
    if !plan.resend {
        let (s, ids, key) = (store.clone(), ids.clone(), plan.delivery.key.clone());
        if let Err(e) = blocking(move || s.assign_batch(&ids, &key)).await {
            // Not sent; the rows are still due and planned again.
            tracing::warn!(channel = %name, error = %e, "cannot record the push batch");
            return done;
        }
    }
    let outcome = match tokio::time::timeout(limits.timeout, channel.send(&plan.delivery)).await {
        Ok(r) => r,
        Err(_) => Err(SendError::retry(format!(
            "no answer within {} ms",
            limits.timeout.as_millis()
        ))),
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let key = plan.delivery.key.as_str();
    let recorded = match outcome {
        Ok(()) => {
            metrics.push_sent.with_label_values(&[name.as_str()]).inc();
            for c in &plan.created_ms {
                metrics
                    .push_latency
                    .observe(now_ms.saturating_sub(*c).max(0) as f64 / 1000.0);
            }
            tracing::debug!(channel = %name, key, items = ids.len(), "pushed");
            let s = store.clone();
            blocking(move || s.delivered(&ids, now_ms)).await
        }
        Err(SendError::Retry { after, reason }) => {
            // Kept in the store and shown: never a receiver's key.
            let reason = crate::redact::secrets(&reason);
            metrics
                .push_failed
                .with_label_values(&[name.as_str(), "retry"])
                .inc();
            let wait = backoff(plan.attempts, limits.max_backoff, after);
            if after.is_some() {
                done.pause = Some(wait);
            }
            tracing::warn!(channel = %name, key, error = %reason, retry_in_s = wait.as_secs_f64(), "push not delivered; will retry");
            let next_ms =
                now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
            let s = store.clone();
            blocking(move || s.retry_later(&ids, next_ms, &reason)).await
        }
        Err(SendError::Permanent(reason)) => {
            let reason = crate::redact::secrets(&reason);
            metrics
                .push_failed
                .with_label_values(&[name.as_str(), "permanent"])
                .inc();
            tracing::error!(channel = %name, key, error = %reason, "push refused for good; rows marked failed");
            let s = store.clone();
            blocking(move || s.failed(&ids, &reason)).await
        }
    };
    if let Err(e) = recorded {
        // The rows stay due in their batch and go out again with the same
        // key; a receiver honouring the key ignores the repeat.
        tracing::warn!(channel = %name, key, error = %e, "cannot record the push outcome");
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::channels::tests::note;
    use crate::alert::outbox::Notification;
    use crate::config::channels::ChannelKind;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use hmac::Mac;
    use std::collections::{HashSet, VecDeque};
    use std::sync::Mutex;

    // ---- an in-memory outbox ----

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum St {
        Pending,
        Delivered,
        Failed,
    }

    struct MemRow {
        row: OutboxRow,
        state: St,
        next_ms: i64,
        error: Option<String>,
    }

    #[derive(Default)]
    struct MemStore {
        rows: Mutex<Vec<MemRow>>,
        /// (ids, next_ms, when) of every retry_later.
        retries: Mutex<Vec<(Vec<i64>, i64, i64)>>,
    }

    impl MemStore {
        fn add(&self, channel: &str, n: Notification, created_ms: i64) {
            let mut rows = self.rows.lock().expect("lock");
            let id = rows.len() as i64 + 1;
            rows.push(MemRow {
                row: OutboxRow {
                    id,
                    channel: channel.into(),
                    mine: n.mine.clone(),
                    created_ms,
                    attempts: 0,
                    batch_key: None,
                    notification: n,
                },
                state: St::Pending,
                next_ms: 0,
                error: None,
            });
        }

        fn count(&self, st: St) -> usize {
            let rows = self.rows.lock().expect("lock");
            rows.iter().filter(|r| r.state == st).count()
        }

        fn all_in(&self, st: St) -> bool {
            let rows = self.rows.lock().expect("lock");
            rows.iter().all(|r| r.state == st)
        }

        fn set(&self, ids: &[i64], f: impl Fn(&mut MemRow)) {
            let mut rows = self.rows.lock().expect("lock");
            for r in rows.iter_mut().filter(|r| ids.contains(&r.row.id)) {
                f(r);
            }
        }
    }

    impl OutboxStore for MemStore {
        fn due(&self, now_ms: i64, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
            let rows = self.rows.lock().expect("lock");
            Ok(rows
                .iter()
                .filter(|r| r.state == St::Pending && r.next_ms <= now_ms)
                .take(limit)
                .map(|r| r.row.clone())
                .collect())
        }
        fn assign_batch(&self, ids: &[i64], batch_key: &str) -> anyhow::Result<()> {
            self.set(ids, |r| r.row.batch_key = Some(batch_key.into()));
            Ok(())
        }
        fn delivered(&self, ids: &[i64], _at_ms: i64) -> anyhow::Result<()> {
            self.set(ids, |r| r.state = St::Delivered);
            Ok(())
        }
        fn retry_later(&self, ids: &[i64], next_ms: i64, error: &str) -> anyhow::Result<()> {
            self.retries.lock().expect("lock").push((
                ids.to_vec(),
                next_ms,
                chrono::Utc::now().timestamp_millis(),
            ));
            self.set(ids, |r| {
                r.row.attempts += 1;
                r.next_ms = next_ms;
                r.error = Some(error.into());
            });
            Ok(())
        }
        fn failed(&self, ids: &[i64], error: &str) -> anyhow::Result<()> {
            self.set(ids, |r| {
                r.state = St::Failed;
                r.error = Some(error.into());
            });
            Ok(())
        }
        fn backlog(&self) -> anyhow::Result<u64> {
            Ok(self.count(St::Pending) as u64)
        }
    }

    // ---- a webhook receiver ----

    const SECRET: &str = "s3cret";

    /// What the first requests are answered with; later ones get 200.
    #[derive(Debug, Clone, Copy)]
    enum Answer {
        TooMany,
        ServerError,
        BadRequest,
        Hang,
    }

    /// One request: (idempotency key, item keys, mines).
    type Seen = (String, Vec<String>, HashSet<String>);

    #[derive(Default)]
    struct Receiver {
        script: Mutex<VecDeque<Answer>>,
        /// Every request: (idempotency key, item keys, mines).
        requests: Mutex<Vec<Seen>>,
        /// Accepted messages by key (repeats of a key are not counted).
        accepted: Mutex<BTreeMap<String, Vec<String>>>,
        bad_signatures: Mutex<usize>,
    }

    fn unhex(s: &str) -> Option<Vec<u8>> {
        (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect()
    }

    /// Checks the signature without the code under test.
    fn signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(sig)) = (get("x-minewatch-timestamp"), get("x-minewatch-signature"))
        else {
            return false;
        };
        let Some(mac_bytes) = sig.strip_prefix("sha256=").and_then(unhex) else {
            return false;
        };
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()) else {
            return false;
        };
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&mac_bytes).is_ok()
    }

    async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
        if !signature_ok(&headers, &body) {
            *r.bad_signatures.lock().expect("lock") += 1;
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let items: Vec<String> = v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["key"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mines: HashSet<String> = v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["mine"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            v["key"].as_str(),
            Some(key.as_str()),
            "body key = header key"
        );
        r.requests
            .lock()
            .expect("lock")
            .push((key.clone(), items.clone(), mines));
        let scripted = r.script.lock().expect("lock").pop_front();
        match scripted {
            Some(Answer::TooMany) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response(),
            Some(Answer::ServerError) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            Some(Answer::BadRequest) => (StatusCode::BAD_REQUEST, "no").into_response(),
            Some(Answer::Hang) => {
                tokio::time::sleep(Duration::from_secs(120)).await;
                StatusCode::OK.into_response()
            }
            None => {
                // Honour the idempotency key: a repeat is acknowledged
                // and ignored.
                r.accepted.lock().expect("lock").entry(key).or_insert(items);
                StatusCode::OK.into_response()
            }
        }
    }

    async fn receiver(script: &[Answer]) -> (String, Arc<Receiver>) {
        let r = Arc::new(Receiver::default());
        r.script
            .lock()
            .expect("lock")
            .extend(script.iter().copied());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/hook"), r)
    }

    fn webhook(url: &str) -> ChannelConfig {
        let mut cfg = ChannelConfig::new("hook", ChannelKind::Webhook);
        cfg.url = Some(url.into());
        cfg.secret = Some(SECRET.into());
        cfg
    }

    fn limits(group_wait_ms: u64) -> Limits {
        Limits {
            per_window: 120,
            window: Duration::from_secs(60),
            group_wait: Duration::from_millis(group_wait_ms),
            max_items: 100,
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        }
    }

    struct Running {
        task: tokio::task::JoinHandle<()>,
        wake: Arc<Notify>,
        stop: watch::Sender<bool>,
        metrics: Arc<Metrics>,
    }

    fn start(cfg: &ChannelConfig, lim: Limits, store: &Arc<MemStore>) -> Running {
        let metrics = Arc::new(Metrics::new(1));
        let ch = channels::build(cfg, "mqtt://127.0.0.1:1").expect("channel");
        let d = Dispatcher::new(vec![(ch, lim)], metrics.clone());
        let wake = Arc::new(Notify::new());
        let (stop, rx) = watch::channel(false);
        let store: Arc<dyn OutboxStore> = store.clone();
        let task = tokio::spawn(d.run(store, wake.clone(), rx));
        Running {
            task,
            wake,
            stop,
            metrics,
        }
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    // ---- pure parts ----

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap_or_what_was_asked() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(0, max, None), Duration::from_secs(1));
        assert_eq!(backoff(1, max, None), Duration::from_secs(2));
        assert_eq!(backoff(5, max, None), Duration::from_secs(32));
        assert_eq!(backoff(9, max, None), max);
        assert_eq!(backoff(200, max, None), max);
        assert_eq!(
            backoff(0, max, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(
            backoff(3, max, Some(Duration::from_secs(2))),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn batch_keys_are_stable_and_order_free() {
        assert_eq!(batch_key(&["a:1:c"]), "a:1:c");
        let k = batch_key(&["a:1:c", "b:1:c"]);
        assert!(k.starts_with("b-") && k.len() == 34, "{k}");
        assert_eq!(k, batch_key(&["b:1:c", "a:1:c"]));
        assert_ne!(k, batch_key(&["a:1:c", "b:2:c"]));
    }

    // ---- the dispatcher against a receiver ----

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_at_one_mine_is_one_message_and_a_lone_item_keeps_its_key() {
        let (url, recv) = receiver(&[]).await;
        let store = Arc::new(MemStore::default());
        let t = now_ms();
        for i in 0..5 {
            store.add("hook", note(i, "m1", "overlimit", "major"), t);
        }
        store.add("hook", note(9, "m2", "evacuation", "critical"), t);
        let run = start(&webhook(&url), limits(300), &store);
        run.wake.notify_one();
        wait_for("every row is delivered", || store.all_in(St::Delivered)).await;
        let accepted = recv.accepted.lock().expect("lock").clone();
        assert_eq!(accepted.len(), 2, "{accepted:?}");
        assert_eq!(accepted.get("a9:1:ch"), Some(&vec!["a9:1:ch".to_string()]));
        let (key, items) = accepted
            .iter()
            .find(|(k, _)| k.starts_with("b-"))
            .expect("a batch of m1");
        assert_eq!(items.len(), 5);
        let keys: Vec<&str> = items.iter().map(String::as_str).collect();
        assert_eq!(key, &batch_key(&keys));
        assert_eq!(*recv.bad_signatures.lock().expect("lock"), 0);
        assert_eq!(run.metrics.push_sent.with_label_values(&["hook"]).get(), 2);
        assert_eq!(run.metrics.push_latency.get_sample_count(), 6);
        let _ = run.stop.send(true);
        let _ = run.task.await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_restart_the_batch_goes_out_again_under_the_same_key_once() {
        // The first request is taken but never answered; the dispatcher is
        // then dropped, as in a crash after assign_batch and the send.
        let (url, recv) = receiver(&[Answer::Hang]).await;
        let store = Arc::new(MemStore::default());
        let t = now_ms();
        for i in 0..3 {
            store.add("hook", note(i, "m1", "overlimit", "major"), t);
        }
        let mut lim = limits(0);
        lim.timeout = Duration::from_secs(60);
        let first = start(&webhook(&url), lim.clone(), &store);
        wait_for("the first send reaches the receiver", || {
            recv.requests.lock().expect("lock").len() == 1
        })
        .await;
        first.task.abort();
        let _ = first.task.await;
        let sent_key = recv.requests.lock().expect("lock")[0].0.clone();
        {
            let rows = store.rows.lock().expect("lock");
            assert!(rows.iter().all(|r| r.state == St::Pending));
            assert!(
                rows.iter()
                    .all(|r| r.row.batch_key.as_deref() == Some(sent_key.as_str()))
            );
        }
        assert!(recv.accepted.lock().expect("lock").is_empty());

        // Add a newer row: it must not join the old batch.
        store.add("hook", note(7, "m1", "overlimit", "major"), now_ms());
        let second = start(&webhook(&url), lim, &store);
        wait_for("every row is delivered", || store.all_in(St::Delivered)).await;
        let requests = recv.requests.lock().expect("lock").clone();
        assert_eq!(requests[1].0, sent_key, "the resend carries the same key");
        assert_eq!(requests[1].1, requests[0].1, "and the same items");
        let accepted = recv.accepted.lock().expect("lock").clone();
        // Each notification reached the receiver under exactly one key.
        let mut seen = HashSet::new();
        for items in accepted.values() {
            for k in items {
                assert!(seen.insert(k.clone()), "{k} delivered twice");
            }
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(accepted[&sent_key].len(), 3);
        assert_eq!(accepted.get("a7:1:ch"), Some(&vec!["a7:1:ch".to_string()]));
        let _ = second.stop.send(true);
        let _ = second.task.await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn throttling_and_server_errors_delay_delivery_and_lose_nothing() {
        let (url, recv) =
            receiver(&[Answer::TooMany, Answer::ServerError, Answer::ServerError]).await;
        let store = Arc::new(MemStore::default());
        let t = now_ms();
        store.add("hook", note(1, "m1", "overlimit", "major"), t);
        store.add("hook", note(2, "m2", "overlimit", "minor"), t);
        store.add("hook", note(3, "m1", "overlimit", "major"), t);
        store.add("hook", note(4, "m3", "evacuation", "critical"), t);
        let run = start(&webhook(&url), limits(0), &store);
        wait_for("every row is delivered", || store.all_in(St::Delivered)).await;

        let accepted = recv.accepted.lock().expect("lock").clone();
        let mut items: Vec<String> = accepted.values().flatten().cloned().collect();
        items.sort();
        assert_eq!(items, ["a1:1:ch", "a2:1:ch", "a3:1:ch", "a4:1:ch"]);
        assert_eq!(
            run.metrics
                .push_failed
                .with_label_values(&["hook", "retry"])
                .get(),
            3
        );
        // Every retry was scheduled at least a second out (Retry-After: 1,
        // or the first backoff step).
        let retries = store.retries.lock().expect("lock").clone();
        assert_eq!(retries.len(), 3);
        for (_, next, at) in &retries {
            assert!(next - at >= 900, "{next} - {at}");
        }
        // Rows that failed carry their attempts.
        assert!(
            store
                .rows
                .lock()
                .expect("lock")
                .iter()
                .any(|r| r.row.attempts >= 1)
        );
        let requests = recv.requests.lock().expect("lock").clone();
        assert_eq!(requests.len(), 3 + accepted.len());
        // The evacuation alarm went first.
        assert_eq!(requests[0].1, ["a4:1:ch"]);
        let _ = run.stop.send(true);
        let _ = run.task.await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusal_fails_the_rows_and_unknown_channels_fail_too() {
        let (url, _recv) = receiver(&[Answer::BadRequest]).await;
        let store = Arc::new(MemStore::default());
        let t = now_ms();
        store.add("hook", note(1, "m1", "overlimit", "major"), t);
        store.add("gone", note(2, "m1", "overlimit", "major"), t);
        let run = start(&webhook(&url), limits(0), &store);
        wait_for("both rows fail", || store.count(St::Failed) == 2).await;
        let errors: Vec<String> = store
            .rows
            .lock()
            .expect("lock")
            .iter()
            .map(|r| r.error.clone().unwrap_or_default())
            .collect();
        assert!(errors[0].contains("400"), "{errors:?}");
        assert!(errors[1].contains("not configured"), "{errors:?}");
        assert_eq!(
            run.metrics
                .push_failed
                .with_label_values(&["hook", "permanent"])
                .get(),
            1
        );
        let _ = run.stop.send(true);
        let _ = run.task.await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_500_at_20_mines_fits_the_rate_limit_and_every_item_arrives() {
        let (url, recv) = receiver(&[]).await;
        let store = Arc::new(MemStore::default());
        let t = now_ms();
        // Uneven: one mine has 120 notifications, 19 have 20; some
        // evacuations among them.
        let mut i = 0;
        for m in 0..20 {
            let n = if m == 0 { 120 } else { 20 };
            for j in 0..n {
                let kind = if j % 17 == 0 {
                    "evacuation"
                } else {
                    "overlimit"
                };
                store.add("hook", note(i, &format!("m{m}"), kind, "major"), t);
                i += 1;
            }
        }
        assert_eq!(i, 500);
        let mut lim = limits(200);
        // 20 messages, and the window is so long that no slot frees up
        // during the test: every item must arrive in those 20.
        lim.per_window = 20;
        lim.window = Duration::from_secs(3600);
        lim.max_items = 30;
        let run = start(&webhook(&url), lim, &store);
        wait_for("every row is delivered", || store.all_in(St::Delivered)).await;
        let requests = recv.requests.lock().expect("lock").clone();
        assert!(requests.len() <= 20, "{} messages", requests.len());
        let mut seen = HashSet::new();
        for (_, items, _) in &requests {
            assert!(items.len() <= 30);
            for k in items {
                assert!(seen.insert(k.clone()), "{k} sent twice");
            }
        }
        assert_eq!(seen.len(), 500);
        assert!(
            requests.iter().any(|(_, _, mines)| mines.len() > 1),
            "the burst was merged into summaries across mines"
        );
        let _ = run.stop.send(true);
        let _ = run.task.await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_channel_does_not_hold_up_another() {
        let (slow_url, _slow) = receiver(&[Answer::Hang]).await;
        let (fast_url, fast) = receiver(&[]).await;
        let store = Arc::new(MemStore::default());
        let t = now_ms();
        store.add("slow", note(1, "m1", "overlimit", "major"), t);
        store.add("fast", note(2, "m1", "overlimit", "major"), t);
        store.add("fast", note(3, "m2", "overlimit", "major"), t + 1);
        let mut slow = webhook(&slow_url);
        slow.name = "slow".into();
        let mut fast_cfg = webhook(&fast_url);
        fast_cfg.name = "fast".into();
        let metrics = Arc::new(Metrics::new(1));
        let mut lim = limits(0);
        lim.timeout = Duration::from_secs(60);
        let d = Dispatcher::new(
            vec![
                (channels::build(&slow, "").expect("slow"), lim.clone()),
                (channels::build(&fast_cfg, "").expect("fast"), lim),
            ],
            metrics,
        );
        let (stop, rx) = watch::channel(false);
        let dyn_store: Arc<dyn OutboxStore> = store.clone();
        let task = tokio::spawn(d.run(dyn_store, Arc::new(Notify::new()), rx));
        wait_for("the fast channel delivers both", || {
            fast.accepted.lock().expect("lock").len() == 2
        })
        .await;
        assert_eq!(store.count(St::Pending), 1);
        let _ = stop.send(true);
        task.abort();
        let _ = task.await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wecom_burst_is_merged_into_few_messages_within_2048_bytes() {
        let (url, contents) = crate::alert::channels::wecom::tests::fake_wecom(vec![]).await;
        let mut cfg = ChannelConfig::new("wx", ChannelKind::Wecom);
        cfg.url = Some(format!("{url}?key=K"));
        let store = Arc::new(MemStore::default());
        let t = now_ms();
        // 30 mines, 4 notifications each, one evacuation: more mines
        // than messages allowed.
        for i in 0..120 {
            let kind = if i == 57 { "evacuation" } else { "overlimit" };
            store.add("wx", note(i, &format!("m{}", i % 30), kind, "major"), t);
        }
        let mut lim = Limits::from_config(&cfg);
        lim.group_wait = Duration::from_millis(200);
        // 20 messages for the whole test (no slot frees up in an hour).
        lim.window = Duration::from_secs(3600);
        assert_eq!(lim.per_window, 20);
        let run = start(&cfg, lim, &store);
        wait_for("every row is delivered", || store.all_in(St::Delivered)).await;
        let got = contents.lock().expect("lock").clone();
        assert!(got.len() <= 20, "{} messages", got.len());
        assert!(got.iter().all(|c| c.len() <= 2048 && !c.contains("另有")));
        let marks: usize = got
            .iter()
            .map(|c| c.matches("**【较重】**").count() + c.matches("**【撤人】**").count())
            .sum();
        assert_eq!(marks, 120, "every notification appears once");
        assert!(
            got.iter()
                .any(|c| c.contains("个矿）") && !c.contains("（1 个矿）")),
            "summaries across mines"
        );
        // The evacuation leads the first message.
        assert!(got[0].contains("含撤人 1 条"), "{}", got[0]);
        assert!(
            got[0]
                .split("\n\n")
                .nth(1)
                .is_some_and(|b| b.starts_with("**【撤人】**")),
            "{}",
            got[0]
        );
        let _ = run.stop.send(true);
        let _ = run.task.await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_the_window_is_used_up_the_rest_waits_for_it_and_arrives() {
        let (url, recv) = receiver(&[]).await;
        let store = Arc::new(MemStore::default());
        let t = now_ms();
        for i in 0..6 {
            store.add("hook", note(i, &format!("m{i}"), "overlimit", "major"), t);
        }
        let mut lim = limits(0);
        lim.per_window = 2;
        lim.window = Duration::from_secs(1);
        lim.max_items = 1;
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let run = start(&webhook(&url), lim, &store);
        wait_for("every row is delivered", || {
            let n = recv.requests.lock().expect("lock").len();
            let mut a = arrivals.lock().expect("lock");
            while a.len() < n {
                a.push(Instant::now());
            }
            store.all_in(St::Delivered)
        })
        .await;
        assert_eq!(recv.accepted.lock().expect("lock").len(), 6);
        // At most 2 a second: the 1st and 3rd (2nd and 4th, …) sends are
        // a window apart. Observed here with generous slack for delays
        // between taking a slot and the request arriving.
        let a = arrivals.lock().expect("lock").clone();
        assert_eq!(a.len(), 6);
        for i in 0..4 {
            let gap = a[i + 2].saturating_duration_since(a[i]);
            assert!(
                gap >= Duration::from_millis(500),
                "sends {i} and {}: {gap:?}",
                i + 2
            );
        }
        let _ = run.stop.send(true);
        let _ = run.task.await;
    }
}
