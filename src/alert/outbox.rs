//! The durable outbox's shape: what one notification carries, one row of the
//! outbox as the store keeps it, and the operations the dispatcher needs
//! from the store.
//!
//! The alert engine writes a row per (transition, channel) in the same
//! transaction as the transition itself, so a notification exists on disk
//! before anything is pushed; the dispatcher (`dispatch.rs`) drains due rows
//! through the channels and marks them delivered, to retry, or failed.

use serde::{Deserialize, Serialize};

/// One alert transition for one channel: what a receiver is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key of this notification: `{alert_id}:{seq}:{channel}`.
    /// The same transition pushed again (after a retry or a restart)
    /// carries the same key.
    pub key: String,
    /// The alert's id.
    pub alert_id: String,
    /// Sequence number of the transition within the alert's history.
    pub seq: i64,
    /// What happened: `raised`, `renotified`, `escalated`, `cleared`,
    /// `acknowledged`, `disposed`, `closed`, `task_overdue`.
    pub transition: String,
    /// When it happened, RFC 3339.
    pub at: String,
    /// Jurisdiction level the alert has reached: `county`, `city` or
    /// `province`.
    pub level: String,
    /// Alert kind (`evacuation`, `overlimit`, …).
    pub kind: String,
    /// `critical`, `major` or `minor`.
    pub severity: String,
    /// Mine code.
    pub mine: String,
    /// Mine name.
    pub mine_name: String,
    /// County code.
    pub county: String,
    /// One line in Chinese saying what happened, for chat and mail
    /// subjects (e.g. `【撤人】某某矿 回风巷 CH4 1.62% ≥ 1.50%`).
    pub title: String,
    /// Further lines in Chinese (rule, values, times, task, who acted).
    pub body: Vec<String>,
    /// The whole alert as the API shows it.
    pub alert: serde_json::Value,
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Row id, increasing in insertion order.
    pub id: i64,
    /// Channel name (`alerting.channels[].name`).
    pub channel: String,
    /// Mine code: rows of one mine are grouped into one message in a burst.
    pub mine: String,
    /// When the row was written, ms since the epoch.
    pub created_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Set once the row has been put into a batch that was (perhaps) sent:
    /// after a restart the same rows go out again as the same batch, with
    /// the same key.
    pub batch_key: Option<String>,
    /// What to push.
    pub notification: Notification,
}

/// What the dispatcher needs from the store. Calls block briefly (a local
/// database); async callers wrap them in `spawn_blocking`.
pub trait OutboxStore: Send + Sync + 'static {
    /// Rows not yet delivered nor failed whose next attempt is due at
    /// `now_ms`, oldest first, at most `limit`.
    fn due(&self, now_ms: i64, limit: usize) -> anyhow::Result<Vec<OutboxRow>>;
    /// Records that `ids` go out together under `batch_key`.
    fn assign_batch(&self, ids: &[i64], batch_key: &str) -> anyhow::Result<()>;
    /// Marks `ids` delivered at `at_ms`.
    fn delivered(&self, ids: &[i64], at_ms: i64) -> anyhow::Result<()>;
    /// Counts an attempt on `ids` and schedules the next at `next_ms`.
    fn retry_later(&self, ids: &[i64], next_ms: i64, error: &str) -> anyhow::Result<()>;
    /// Gives up on `ids` (a receiver that refuses for good, e.g. a 400 or
    /// a wrong token); they stay visible in `GET /api/outbox`.
    fn failed(&self, ids: &[i64], error: &str) -> anyhow::Result<()>;
    /// Rows still to deliver (backlog), for metrics.
    fn backlog(&self) -> anyhow::Result<u64>;
}
