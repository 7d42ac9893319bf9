//! The `alerts` stream: every alert transition the lifecycle commits
//! (raised, cleared, renotified, escalated, acknowledged, disposed, closed,
//! task_*), with its alert, as Parquet under
//! `{archive}/alerts/date=…/hour=…/`, partitioned by transition time.
//!
//! The alert store is the source of truth, so this stream does not go
//! through the journal. An export cursor over the store's transition ids
//! (which increase in commit order: the store has one connection, and
//! every transition is written inside its alert's transaction) says what
//! is archived. [`AlertExport`] reads the transitions above the cursor in
//! id order, cuts them into runs of consecutive ids in one hour, writes
//! each run as one file named `{store}-{first id}-{last id}.parquet`
//! (write, fsync, rename, fsync the folder), and only then moves the
//! cursor past it and saves the cursor (`alerts/_cursor.json`, written the
//! same way). `store` is the store's identity (when its first migration
//! ran, ms), so ids of two different stores are never confused.
//!
//! At start the cursor is the larger of the saved one and the last id in
//! the finished files' names of the same store: a `kill -9` after a
//! file's rename and before the cursor was saved re-exports nothing. A
//! committed transition is in the store until it is in a finished file,
//! so `kill -9` at any moment loses none, and a file is either complete or
//! absent, so none is unreadable. Duplicates cannot arise from a crash;
//! a reader who merges archives of several runs of one store can still
//! key rows on (`alert_id`, `seq`).
//!
//! Files are written when the oldest unexported transition has waited
//! `flush_secs`, when `max_rows_per_file` are waiting, and at shutdown
//! (after the alert stage has stopped, so the last transitions are in).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use super::buffer::record_outcome;
use super::partition::{self, Hour, partition_of};
use super::stream::{Stream, write_partition};
use super::{ALERTS, ArchiveSettings, retention};
use crate::config::Registry;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::alerts::{self as q, CommittedTransition};

/// Transitions read from the store per query.
const PAGE: usize = 10_000;

/// How often the exporter looks at the store.
const POLL: Duration = Duration::from_secs(1);

/// Name of the cursor file in `{archive}/alerts/` (pyarrow and DuckDB skip
/// names starting with `_` when they scan the folder).
pub const CURSOR_FILE: &str = "_cursor.json";

/// The `alerts` stream's definition: rows are committed transitions.
pub struct Alerts;

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

impl Stream for Alerts {
    const NAME: &'static str = ALERTS;
    type Row = CommittedTransition;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("mine", DataType::Utf8, false),
            Field::new("point", DataType::Utf8, true),
            Field::new("at", utc_ms(), false),
            Field::new("alert_id", DataType::Utf8, false),
            Field::new("seq", DataType::Int64, false),
            Field::new("transition", DataType::Utf8, false),
            Field::new("actor", DataType::Utf8, false),
            Field::new("detail", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("severity", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, true),
            Field::new("mine_name", DataType::Utf8, false),
            Field::new("county", DataType::Utf8, false),
            Field::new("city", DataType::Utf8, false),
            Field::new("province", DataType::Utf8, false),
            Field::new("sensor", DataType::Utf8, true),
            Field::new("unit", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
            Field::new("peak", DataType::Float64, true),
            Field::new("threshold", DataType::Float64, true),
            Field::new("rule", DataType::Utf8, false),
            Field::new("started_at", utc_ms(), false),
            Field::new("resolved_at", utc_ms(), true),
            Field::new("level", DataType::Utf8, false),
            Field::new("planned", DataType::Boolean, false),
            Field::new("transition_id", DataType::Int64, false),
        ]))
    }

    fn hour(row: &CommittedTransition) -> Hour {
        partition_of(row.at_ms, row.at_ms)
    }

    fn sort(rows: &mut [CommittedTransition], _: &Registry) {
        rows.sort_by(|a, b| {
            (&a.mine, &a.point, a.at_ms, a.id).cmp(&(&b.mine, &b.point, b.at_ms, b.id))
        });
    }

    fn batch(rows: &[CommittedTransition], _: &Registry) -> Result<RecordBatch, ArrowError> {
        let n = rows.len();
        let text = || StringBuilder::with_capacity(n, n * 16);
        let time = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let (mut mine, mut point, mut at, mut alert_id) = (text(), text(), time(), text());
        let mut seq = Int64Builder::with_capacity(n);
        let (mut transition, mut actor, mut detail) = (text(), text(), text());
        let (mut kind, mut severity, mut reason, mut mine_name) = (text(), text(), text(), text());
        let (mut county, mut city, mut province) = (text(), text(), text());
        let (mut sensor, mut unit) = (text(), text());
        let num = || Float64Builder::with_capacity(n);
        let (mut value, mut peak, mut threshold) = (num(), num(), num());
        let (mut rule, mut started_at, mut resolved_at, mut level) =
            (text(), time(), time(), text());
        let mut planned = BooleanBuilder::with_capacity(n);
        let mut transition_id = Int64Builder::with_capacity(n);
        for r in rows {
            mine.append_value(&r.mine);
            point.append_option(r.point.as_deref());
            at.append_value(r.at_ms);
            alert_id.append_value(&r.alert_id);
            seq.append_value(r.seq);
            transition.append_value(&r.transition);
            actor.append_value(&r.actor);
            detail.append_value(&r.detail);
            kind.append_value(&r.kind);
            severity.append_value(&r.severity);
            reason.append_option(r.reason.as_deref());
            mine_name.append_value(&r.mine_name);
            county.append_value(&r.county);
            city.append_value(&r.city);
            province.append_value(&r.province);
            sensor.append_option(r.sensor.as_deref());
            unit.append_option(r.unit.as_deref());
            value.append_option(r.value.filter(|v| v.is_finite()));
            peak.append_option(r.peak.filter(|v| v.is_finite()));
            threshold.append_option(r.threshold.filter(|v| v.is_finite()));
            rule.append_value(&r.rule);
            started_at.append_value(r.started_ms);
            resolved_at.append_option(r.resolved_ms);
            level.append_value(&r.level);
            planned.append_value(r.planned);
            transition_id.append_value(r.id);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(mine.finish()),
            Arc::new(point.finish()),
            Arc::new(at.finish()),
            Arc::new(alert_id.finish()),
            Arc::new(seq.finish()),
            Arc::new(transition.finish()),
            Arc::new(actor.finish()),
            Arc::new(detail.finish()),
            Arc::new(kind.finish()),
            Arc::new(severity.finish()),
            Arc::new(reason.finish()),
            Arc::new(mine_name.finish()),
            Arc::new(county.finish()),
            Arc::new(city.finish()),
            Arc::new(province.finish()),
            Arc::new(sensor.finish()),
            Arc::new(unit.finish()),
            Arc::new(value.finish()),
            Arc::new(peak.finish()),
            Arc::new(threshold.finish()),
            Arc::new(rule.finish()),
            Arc::new(started_at.finish()),
            Arc::new(resolved_at.finish()),
            Arc::new(level.finish()),
            Arc::new(planned.finish()),
            Arc::new(transition_id.finish()),
        ];
        RecordBatch::try_new(Alerts::schema(), columns)
    }
}

/// The saved export cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SavedCursor {
    /// Identity of the store the ids belong to.
    store: i64,
    /// Every transition of that store with an id up to this is archived.
    transition_id: i64,
}

/// The (store, first id, last id) of a finished alerts file's name.
pub fn parse_file_name(name: &str) -> Option<(i64, i64, i64)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut parts = stem.split('-');
    let store = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((store, first, last))
}

/// The last transition id in the names of the finished alerts files of
/// `store` below `stream_dir` (0 when there is none).
fn last_exported_in_names(stream_dir: &Path, store: i64) -> i64 {
    let mut last = 0;
    for (_, folder) in retention::partitions(stream_dir) {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.flatten() {
            if let Some((s, _, l)) = e.file_name().to_str().and_then(parse_file_name)
                && s == store
            {
                last = last.max(l);
            }
        }
    }
    last
}

/// Copies committed transitions from the store to the `alerts` stream.
pub struct Exporter {
    /// Where files go, and when they are due.
    settings: ArchiveSettings,
    /// The source of truth.
    store: Arc<Store>,
    /// Where outcomes and the backlog are counted.
    metrics: Arc<Metrics>,
    /// The store's identity.
    identity: i64,
    /// Every transition with an id up to this is in a finished file.
    cursor: i64,
    /// When a transition above the cursor was first seen.
    pending_since: Option<Instant>,
    /// After a failed write, no new attempt before this.
    retry_at: Option<Instant>,
    /// The stream's rows carry their codes: an empty registry stands in.
    no_points: Registry,
}

impl Exporter {
    /// Finds the cursor: the saved one or the finished files' names,
    /// whichever is further.
    pub fn open(
        settings: ArchiveSettings,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Exporter> {
        let identity = store.read(q::store_identity)?;
        let dir = settings.root.join(ALERTS);
        let saved = read_cursor(&dir.join(CURSOR_FILE));
        let from_file = match saved {
            Some(c) if c.store == identity => c.transition_id,
            Some(c) => {
                tracing::warn!(
                    saved_store = c.store,
                    store = identity,
                    "archive alerts: the export cursor belongs to another alert store (alerting.store changed?); \
                     this store's transitions are exported from its first"
                );
                0
            }
            None => 0,
        };
        let cursor = from_file.max(last_exported_in_names(&dir, identity));
        let newest = store.read(q::max_transition_id)?;
        if cursor > newest {
            tracing::warn!(
                cursor,
                newest,
                "archive alerts: the archive holds transition ids the store does not; nothing is exported again"
            );
        }
        tracing::info!(cursor, newest, "archive alerts: export resumes");
        Ok(Exporter {
            settings,
            store,
            metrics,
            identity,
            cursor,
            pending_since: None,
            retry_at: None,
            no_points: Registry::build(&crate::config::Config::default(), 1),
        })
    }

    /// Every transition with an id up to this is in a finished file.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Looks at the store and exports what is due (everything when
    /// `finishing`); returns the transitions exported.
    pub fn poll(&mut self, now: Instant, finishing: bool) -> anyhow::Result<usize> {
        let newest = self.store.read(q::max_transition_id)?;
        self.metrics
            .archive_alerts_pending
            .set((newest - self.cursor).max(0));
        if newest <= self.cursor {
            self.pending_since = None;
            return Ok(0);
        }
        let since = *self.pending_since.get_or_insert(now);
        let waiting = (newest - self.cursor) as usize;
        let due = finishing
            || now.duration_since(since) >= self.settings.flush_after
            || waiting >= self.settings.max_rows_per_file;
        if !due || (!finishing && self.retry_at.is_some_and(|t| now < t)) {
            return Ok(0);
        }
        let exported = self.export(now);
        let newest = self.store.read(q::max_transition_id)?;
        self.metrics
            .archive_alerts_pending
            .set((newest - self.cursor).max(0));
        if newest <= self.cursor {
            self.pending_since = None;
        }
        exported
    }

    /// Exports every transition above the cursor, file by file; stops at
    /// the first file that cannot be written (retried later).
    fn export(&mut self, now: Instant) -> anyhow::Result<usize> {
        let mut exported = 0;
        loop {
            let rows = self
                .store
                .read(|db| q::transitions_after(db, self.cursor, PAGE))?;
            if rows.is_empty() {
                return Ok(exported);
            }
            let full = rows.len() == PAGE;
            for run in runs(rows, self.settings.max_rows_per_file) {
                let n = run.len();
                if self.write_run(run).is_err() {
                    self.retry_at =
                        Some(now + self.settings.flush_after.min(Duration::from_secs(5)));
                    return Ok(exported);
                }
                exported += n;
            }
            self.retry_at = None;
            if !full {
                return Ok(exported);
            }
        }
    }

    /// Writes one run (consecutive ids, one hour) as one file, then moves
    /// the cursor past it and saves it.
    fn write_run(&mut self, mut run: Vec<CommittedTransition>) -> Result<(), ()> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        let (first_id, last_id) = (first.id, last.id);
        let hour = Alerts::hour(first);
        let stem = format!("{}-{first_id:012}-{last_id:012}", self.identity);
        let (done, temp) = partition::named_paths(&self.settings.root, ALERTS, hour, &stem);
        let result = write_partition::<Alerts>(
            &done,
            &temp,
            &mut run,
            &self.no_points,
            self.settings.row_group_rows,
        );
        record_outcome(&self.metrics, ALERTS, &done, run.len(), result)?;
        self.cursor = last_id;
        let saved = SavedCursor {
            store: self.identity,
            transition_id: last_id,
        };
        if let Err(error) = save_cursor(&self.settings.root.join(ALERTS), &saved) {
            // The file's name carries the cursor too: nothing is exported
            // twice even if this never succeeds.
            tracing::warn!(%error, "archive alerts: cannot save the export cursor; the file names carry it");
        }
        Ok(())
    }
}

/// Cuts transitions (in id order) into runs of one hour, at most `max`
/// each.
fn runs(rows: Vec<CommittedTransition>, max: usize) -> Vec<Vec<CommittedTransition>> {
    let mut out: Vec<Vec<CommittedTransition>> = Vec::new();
    let mut hour = None;
    for r in rows {
        let h = Alerts::hour(&r);
        match out.last_mut() {
            Some(run) if hour == Some(h) && run.len() < max.max(1) => run.push(r),
            _ => {
                hour = Some(h);
                out.push(vec![r]);
            }
        }
    }
    out
}

fn read_cursor(path: &Path) -> Option<SavedCursor> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(c) => Some(c),
        Err(error) => {
            tracing::warn!(%error, file = %path.display(), "archive alerts: unreadable export cursor; the file names are used");
            None
        }
    }
}

/// Writes the cursor file so that it is either the old one or the new one.
fn save_cursor(dir: &Path, cursor: &SavedCursor) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let done = dir.join(CURSOR_FILE);
    let temp: PathBuf = dir.join(format!(".{CURSOR_FILE}.tmp"));
    let mut f = std::fs::File::create(&temp)?;
    f.write_all(serde_json::to_string(cursor)?.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&temp, &done)?;
    super::journal::sync_dir(dir)
}

/// The running exporter: a thread of its own.
pub struct AlertExport {
    /// Tells the thread to export what is left and stop.
    stop: Sender<()>,
    /// The exporter's thread.
    thread: JoinHandle<()>,
}

impl AlertExport {
    /// Finds the cursor and starts exporting.
    pub fn start(
        settings: ArchiveSettings,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<AlertExport> {
        let exporter = Exporter::open(settings, store, metrics)?;
        let (stop, stopped) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("archive-alerts".into())
            .spawn(move || run(exporter, stopped))?;
        Ok(AlertExport { stop, thread })
    }

    /// Exports everything committed so far and stops. Call it after the
    /// alert stage has stopped.
    pub fn finish(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("the archive's alert exporter panicked");
        }
    }
}

fn run(mut exporter: Exporter, stopped: Receiver<()>) {
    loop {
        let finishing = match stopped.recv_timeout(POLL) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        if let Err(error) = exporter.poll(Instant::now(), finishing) {
            tracing::error!(error = %format!("{error:#}"), "archive alerts: cannot read the store; retried");
        }
        if finishing {
            let left = exporter
                .store
                .read(q::max_transition_id)
                .map(|newest| newest - exporter.cursor)
                .unwrap_or(0);
            if left > 0 {
                tracing::error!(
                    transitions = left,
                    "archive alerts: not all transitions could be exported before shutdown; they stay in the store and are exported at the next start"
                );
            }
            return;
        }
    }
}

/// The (store, first id, last id) of every finished alerts file below the
/// archive `root`, by partition hour, each hour's in name order.
pub fn exported_files(root: &Path) -> BTreeMap<Hour, Vec<(i64, i64, i64)>> {
    let mut out: BTreeMap<Hour, Vec<(i64, i64, i64)>> = BTreeMap::new();
    for (hour, folder) in retention::partitions(&root.join(ALERTS)) {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.flatten() {
            if let Some(ids) = e.file_name().to_str().and_then(parse_file_name) {
                out.entry(hour).or_default().push(ids);
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

#[cfg(test)]
mod tests;
