//! The drop directory of national files: each complete file is processed
//! exactly once, also across a restart, then moved to `done/`; a broken one
//! goes to `quarantine/` with a `.reason` file beside it, is counted and
//! dead-lettered, and the good files around it still flow.
//!
//! - Files are taken in the order of their name's time (CDDY before CDSS of
//!   the same time), woken by file-system events (notify) with a periodic
//!   rescan as the fallback.
//! - A file is ready when it ends with `||`; one that lacks it and has not
//!   changed for `netfile.settle_secs` is a truncated upload. A CDSS or
//!   FZSS file of a mine that has no points yet waits up to
//!   `netfile.cddy_wait_secs` for the mine's CDDY.
//! - A ledger (`{data_dir}/netfile-ledger.jsonl`, fsynced) remembers every
//!   processed name with a hash of its content, written once the file's
//!   readings have passed the detectors and before the file is moved: a
//!   file found again after a crash is recognised and not ingested twice;
//!   the same name with other content is a conflicting re-upload, kept in
//!   quarantine as evidence. A file is never quarantined over another of
//!   the same name: a later one is kept as `name.1`, `name.2`, … (each
//!   with its `.reason`).
//! - CDDY defines or updates the mine's points at run time (the mine needs
//!   no hand-written point list); CDSS gives readings; FZSS marks the points
//!   of a substation that lost communication as not read (status 16), which
//!   the offline detector treats as silence; YCBJ goes to the exception book.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Sender, bounded};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::registry::{related_codes, unit_of};
use crate::config::{NetfileConfig, PointDef, SharedRegistry, Upsert, registry::rule_limits};
use crate::ingest::decode::{Decoder, ValueIn};
use crate::ingest::netfile::exceptions::{ExceptionBook, ExceptionRecord};
use crate::ingest::netfile::format::{
    FileName, FileType, Records, decode_text, guess_location, is_complete, opt_number, parse_name,
    parse_time, split,
};
use crate::ingest::{DeadLetters, RejectReason};
use crate::metrics::Metrics;
use crate::model::{Millis, MineIdx, Reading, SensorType, stable_hash, status};
use crate::pipeline::{AckSink, Batch, Clock, Completion, Payload, Router};

/// The source name in metrics and dead letters.
pub const SOURCE: &str = "netfile";

/// One ledger line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerEntry {
    name: String,
    hash: String,
    at: Millis,
}

/// Names processed, with the hash of their content.
struct Ledger {
    path: PathBuf,
    seen: HashMap<String, (String, Millis)>,
    out: File,
}

impl Ledger {
    /// Loads the ledger, forgetting entries older than `keep_ms`, and
    /// rewrites it compacted.
    fn open(path: PathBuf, now: Millis, keep_ms: Millis) -> std::io::Result<Ledger> {
        let mut seen = HashMap::new();
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                // A torn last line (crash mid-write) is skipped.
                if let Ok(e) = serde_json::from_str::<LedgerEntry>(&line?)
                    && now - e.at <= keep_ms
                {
                    seen.insert(e.name, (e.hash, e.at));
                }
            }
        }
        let tmp = path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp)?;
            for (name, (hash, at)) in &seen {
                let e = LedgerEntry {
                    name: name.clone(),
                    hash: hash.clone(),
                    at: *at,
                };
                writeln!(
                    f,
                    "{}",
                    serde_json::to_string(&e).map_err(std::io::Error::other)?
                )?;
            }
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        let out = OpenOptions::new().append(true).open(&path)?;
        Ok(Ledger { path, seen, out })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.seen.get(name).map(|(h, _)| h.as_str())
    }

    /// Records a processed file durably.
    fn record(&mut self, name: &str, hash: &str, at: Millis) -> std::io::Result<()> {
        let e = LedgerEntry {
            name: name.into(),
            hash: hash.into(),
            at,
        };
        writeln!(
            self.out,
            "{}",
            serde_json::to_string(&e).map_err(std::io::Error::other)?
        )?;
        self.out.sync_data()?;
        self.seen.insert(name.into(), (hash.into(), at));
        Ok(())
    }
}

/// Waits for the shards to finish a file's readings.
struct FileDone(Sender<u64>);

impl AckSink for FileDone {
    fn complete(&self, token: u64) {
        let _ = self.0.send(token);
    }
}

/// Everything the national-file source needs.
pub struct NetfileSource {
    /// Settings.
    pub config: NetfileConfig,
    /// The drop directory.
    pub dir: PathBuf,
    /// Where the ledger lives.
    pub data_dir: PathBuf,
    /// Validates readings (and holds the registry snapshot source).
    pub decoder: Decoder,
    /// The registry, for CDDY updates.
    pub registry: SharedRegistry,
    /// Where readings go.
    pub router: Router,
    /// Refused records and files.
    pub dead: Arc<DeadLetters>,
    /// The mines' exception reports.
    pub exceptions: Arc<ExceptionBook>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Processing time.
    pub clock: Arc<dyn Clock>,
}

/// What became of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Not ready yet (still being written).
    Wait,
    /// Processed and moved to `done/`.
    Processed,
    /// Seen before with the same content: moved to `done/`, not ingested.
    Duplicate,
    /// Moved to `quarantine/`.
    Quarantined,
}

impl NetfileSource {
    /// Runs on its own thread until `shutdown` turns true.
    pub fn spawn(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        for sub in ["", "done", "quarantine"] {
            fs::create_dir_all(self.dir.join(sub))?;
        }
        let keep = self.config.ledger_days as i64 * 86_400_000;
        let ledger = Ledger::open(
            self.data_dir.join("netfile-ledger.jsonl"),
            self.clock.now_ms(),
            keep,
        )?;
        std::thread::Builder::new()
            .name("netfile".into())
            .spawn(move || self.run(ledger, shutdown))
    }

    fn run(self, mut ledger: Ledger, shutdown: watch::Receiver<bool>) {
        let (wake_tx, wake_rx) = bounded::<()>(1);
        let watcher = {
            use notify::Watcher;
            let tx = wake_tx.clone();
            notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
                let _ = tx.try_send(());
            })
            .and_then(|mut w| {
                w.watch(&self.dir, notify::RecursiveMode::NonRecursive)
                    .map(|()| w)
            })
        };
        if let Err(e) = &watcher {
            tracing::warn!(dir = %self.dir.display(), error = %e, "no file-system events; polling only");
        }
        let every = Duration::from_millis(self.config.scan_ms);
        tracing::info!(dir = %self.dir.display(), "watching for national files");
        while !*shutdown.borrow() {
            self.scan(&mut ledger, &shutdown);
            let _ = wake_rx.recv_timeout(every);
        }
        drop(watcher);
    }

    /// Handles every ready file in the drop directory once.
    fn scan(&self, ledger: &mut Ledger, shutdown: &watch::Receiver<bool>) {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the drop directory");
                return;
            }
        };
        let mut files: Vec<(Option<FileName>, String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                // Hidden files are uploads in progress by convention.
                (!name.starts_with('.')).then(|| (parse_name(&name).ok(), name, e.path()))
            })
            .collect();
        files.sort_by(|a, b| {
            let key =
                |f: &(Option<FileName>, String, PathBuf)| f.0.as_ref().map(|n| (n.stamp, n.kind));
            key(a).cmp(&key(b)).then_with(|| a.1.cmp(&b.1))
        });
        for (parsed, name, path) in files {
            if *shutdown.borrow() {
                return;
            }
            let kind = parsed.as_ref().map_or("unknown", |n| n.kind.key());
            let outcome = self.handle(ledger, parsed, &name, &path);
            let label = match outcome {
                Outcome::Wait => continue,
                Outcome::Processed => "processed",
                Outcome::Duplicate => "duplicate",
                Outcome::Quarantined => "quarantined",
            };
            self.metrics
                .netfile_files
                .with_label_values(&[kind, label])
                .inc();
        }
    }

    fn handle(
        &self,
        ledger: &mut Ledger,
        parsed: Option<FileName>,
        name: &str,
        path: &Path,
    ) -> Outcome {
        let now = self.clock.now_ms();
        let Ok(bytes) = fs::read(path) else {
            return Outcome::Wait;
        };
        let idle = fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        if !is_complete(&bytes) {
            if idle < Duration::from_secs(self.config.settle_secs) {
                return Outcome::Wait;
            }
            let detail = format!(
                "no `||` at the end after {} s without change: a truncated upload",
                self.config.settle_secs
            );
            return self.quarantine(path, name, RejectReason::TruncatedFile, detail, &bytes);
        }
        let hash = format!("{:016x}", stable_hash(&[&bytes]));
        match ledger.get(name) {
            Some(h) if h == hash => {
                self.move_to(path, "done", name);
                return Outcome::Duplicate;
            }
            Some(_) => {
                let detail = "this name was processed before with other content".to_string();
                return self.quarantine(
                    path,
                    name,
                    RejectReason::ConflictingReupload,
                    detail,
                    &bytes,
                );
            }
            None => {}
        }
        let file = match parsed
            .ok_or(())
            .or_else(|()| parse_name(name).map_err(Some))
        {
            Ok(f) => f,
            Err(e) => {
                let detail = e.unwrap_or_else(|| format!("{name:?} is not a national file name"));
                return self.quarantine(path, name, RejectReason::MisnamedFile, detail, &bytes);
            }
        };
        let registry = self.decoder.registry();
        let Some(mine) = registry.mine(&file.mine) else {
            let detail = format!("mine {} is not configured", file.mine);
            return self.quarantine(path, name, RejectReason::UnknownMine, detail, &bytes);
        };
        if matches!(file.kind, FileType::Cdss | FileType::Fzss)
            && registry.mines[mine as usize].points.is_empty()
            && idle < Duration::from_secs(self.config.cddy_wait_secs)
        {
            // Its points are not defined yet: give the CDDY time to arrive.
            return Outcome::Wait;
        }
        let text = match decode_text(&bytes) {
            Ok((t, _)) => t,
            Err(e) => return self.quarantine(path, name, RejectReason::UndecodableFile, e, &bytes),
        };
        let records = match split(&text) {
            Ok(r) => r,
            Err(e) => return self.quarantine(path, name, RejectReason::MalformedRecord, e, &bytes),
        };
        if records.header.first().copied() != Some(file.mine.as_str()) {
            let detail = format!(
                "the header names mine {:?}, the file name {}",
                records.header.first().copied().unwrap_or(""),
                file.mine
            );
            return self.quarantine(path, name, RejectReason::HeaderMismatch, detail, &bytes);
        }
        self.exceptions.mark_reporting(&file.mine);
        let accepted = match file.kind {
            FileType::Cddy => self.define_points(mine, &file, name, &records, now),
            FileType::Cdss => self.readings(mine, name, &records, now),
            FileType::Fzss => self.substations(mine, &file, name, &records, now),
            FileType::Ycbj => self.exception_reports(&file, name, &records, now),
            FileType::Tjsj => 0,
        };
        self.metrics
            .netfile_records
            .with_label_values(&[file.kind.key()])
            .inc_by(accepted as u64);
        if let Err(e) = ledger.record(name, &hash, now) {
            // Without the ledger entry, a restart would ingest it again:
            // leave the file where it is and try again on the next scan.
            tracing::error!(path = %ledger.path.display(), error = %e, "cannot write the netfile ledger");
            return Outcome::Wait;
        }
        self.move_to(path, "done", name);
        Outcome::Processed
    }

    fn reject(
        &self,
        now: Millis,
        name: &str,
        reason: RejectReason,
        detail: String,
        record: &[&str],
    ) {
        self.dead.reject(
            &self.metrics,
            now,
            SOURCE,
            name,
            reason,
            detail,
            record.join(";").as_bytes(),
        );
    }

    /// CDDY: defines or updates the mine's points, and joins the points a
    /// record's relations name onto its air path.
    fn define_points(
        &self,
        mine: MineIdx,
        file: &FileName,
        name: &str,
        records: &Records<'_>,
        now: Millis,
    ) -> usize {
        let mut defs = Vec::new();
        for rec in &records.records {
            match point_def(&file.mine, rec) {
                Ok(d) => defs.push((d, rec)),
                Err((reason, detail)) => self.reject(now, name, reason, detail, rec),
            }
        }
        let results = self.registry.update(|r| {
            let results: Vec<Upsert> = defs
                .iter()
                .map(|(d, _)| r.upsert_point(mine, d.clone()))
                .collect();
            let mut changed = results
                .iter()
                .any(|u| matches!(u, Upsert::Added(_) | Upsert::Updated(_)));
            // Relations once every point of the file is known (a methane
            // sensor may name the feed sensor defined after it).
            for (d, rec) in &defs {
                if let Some(field) = rec.get(CDDY_RELATIONS) {
                    let related = related_codes(field, &file.mine);
                    changed |= r.relate(mine, &d.code, &related);
                }
            }
            (results, changed)
        });
        let registry = self.registry.snapshot();
        let mut accepted = 0;
        for ((def, rec), result) in defs.iter().zip(results) {
            match result {
                Upsert::OtherMine(p) => {
                    let owner = &registry.mines[registry.points[p as usize].mine as usize].code;
                    let detail = format!("point {} belongs to mine {owner}", def.code);
                    self.reject(now, name, RejectReason::PointMineMismatch, detail, rec);
                }
                Upsert::Added(p) | Upsert::Updated(p) => {
                    accepted += 1;
                    let meta = &registry.points[p as usize];
                    if let Some(looser) = looser_than_rule(&registry.rules, meta) {
                        self.metrics.declared_looser.inc();
                        tracing::warn!(mine = %file.mine, point = %def.code, file = name, "{looser}");
                    }
                }
                Upsert::Unchanged(_) => accepted += 1,
            }
        }
        accepted
    }

    /// CDSS: readings.
    fn readings(&self, mine: MineIdx, name: &str, records: &Records<'_>, now: Millis) -> usize {
        let (readings, refused) = cdss_readings(&self.decoder, mine, records, now);
        for (i, reason, detail) in refused {
            self.reject(now, name, reason, detail, &records.records[i]);
        }
        self.send(mine, readings, now)
    }

    /// FZSS: substations that lost communication make their points not read.
    fn substations(
        &self,
        mine: MineIdx,
        file: &FileName,
        name: &str,
        records: &Records<'_>,
        now: Millis,
    ) -> usize {
        let registry = self.decoder.registry();
        let mut readings = Vec::new();
        let mut accepted = 0;
        for rec in &records.records {
            if rec.len() < FileType::Fzss.fields() {
                let detail = format!("{} fields, an FZSS record has 4", rec.len());
                self.reject(now, name, RejectReason::MalformedRecord, detail, rec);
                continue;
            }
            let (sub, state) = (rec[0], rec[1]);
            let ts = match parse_time(rec[3]) {
                Ok(ts) => ts,
                Err(e) => {
                    self.reject(now, name, RejectReason::BadTimestamp, e, rec);
                    continue;
                }
            };
            let Ok(state) = state.parse::<u8>() else {
                let detail = format!("run state {state:?} is not 0, 1, 2 or 9");
                self.reject(now, name, RejectReason::WrongType, detail, rec);
                continue;
            };
            accepted += 1;
            if state == 0 {
                continue;
            }
            tracing::warn!(mine = %file.mine, substation = sub, state, "substation not communicating");
            for &p in &registry.mines[mine as usize].points {
                let meta = &registry.points[p as usize];
                if meta.substation.as_deref() == Some(sub) {
                    match self.decoder.check(
                        &registry,
                        mine,
                        &meta.code,
                        ValueIn::Missing,
                        status::SUBSTATION_FAULT,
                        Some(Ok(ts)),
                        now,
                    ) {
                        Ok(r) => readings.push(r),
                        Err((reason, detail)) => self.reject(now, name, reason, detail, rec),
                    }
                }
            }
        }
        self.send(mine, readings, now);
        accepted
    }

    /// YCBJ: the mine's exception reports.
    fn exception_reports(
        &self,
        file: &FileName,
        name: &str,
        records: &Records<'_>,
        now: Millis,
    ) -> usize {
        let mut out = Vec::new();
        for rec in &records.records {
            match exception_record(&file.mine, name, rec) {
                Ok(r) => out.push(r),
                Err((reason, detail)) => self.reject(now, name, reason, detail, rec),
            }
        }
        let n = out.len();
        self.exceptions.add(out, now);
        n
    }

    /// Hands readings to the mine's shard and waits until they have passed
    /// the detectors. Returns how many there were.
    fn send(&self, mine: MineIdx, readings: Vec<Reading>, now: Millis) -> usize {
        let n = readings.len();
        if n == 0 {
            return 0;
        }
        let shard = self.decoder.registry().mines[mine as usize].shard;
        let (tx, rx) = bounded(1);
        let done = Completion::new(1, 0, Arc::new(FileDone(tx)));
        let batch = Batch {
            payload: Payload::Readings(readings),
            arrival: now,
            received: Instant::now(),
            source: SOURCE,
            done: Some(done),
        };
        if !self.router.send(shard, batch) {
            return 0;
        }
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            tracing::error!("a national file's readings were not processed within 60 s");
        }
        n
    }

    fn move_to(&self, path: &Path, sub: &str, name: &str) {
        let to = self.dir.join(sub).join(name);
        if let Err(e) = fs::rename(path, &to) {
            tracing::error!(from = %path.display(), to = %to.display(), error = %e, "cannot move a national file");
        }
    }

    fn quarantine(
        &self,
        path: &Path,
        name: &str,
        reason: RejectReason,
        detail: String,
        bytes: &[u8],
    ) -> Outcome {
        let now = self.clock.now_ms();
        // An earlier file of the same name stays: each is evidence.
        let kept = free_quarantine_name(&self.dir.join("quarantine"), name);
        tracing::warn!(file = name, kept_as = %kept, reason = reason.key(), detail = %detail, "national file quarantined");
        let note = self.dir.join("quarantine").join(format!("{kept}.reason"));
        if let Err(e) = fs::write(&note, format!("{}: {detail}\n", reason.key())) {
            tracing::error!(path = %note.display(), error = %e, "cannot write the quarantine note");
        }
        self.move_to(path, "quarantine", &kept);
        self.dead
            .reject(&self.metrics, now, SOURCE, name, reason, detail, bytes);
        self.dead.flush();
        Outcome::Quarantined
    }
}

/// The name a file `name` is kept under in the quarantine folder `dir`:
/// `name` itself, or, when a file (or its `.reason`) of that name is
/// already there, `name.1`, `name.2`, … — the first that is free, so that
/// no quarantined file or note is ever overwritten.
pub fn free_quarantine_name(dir: &Path, name: &str) -> String {
    let taken = |n: &str| dir.join(n).exists() || dir.join(format!("{n}.reason")).exists();
    if !taken(name) {
        return name.to_string();
    }
    let mut n: u64 = 1;
    loop {
        let candidate = format!("{name}.{n}");
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

/// Says how a point's declared levels are looser than the rule, if they are.
pub fn looser_than_rule(
    rules: &crate::config::RulesConfig,
    meta: &crate::config::PointMeta,
) -> Option<String> {
    let rule = rule_limits(rules, meta.sensor, meta.location)?;
    let (alarm, power_off, restore) = meta.declared;
    let mut parts = Vec::new();
    if let Some(a) = alarm.filter(|a| *a > rule.alarm + 1e-9) {
        parts.push(format!("alarm {a} > {}", rule.alarm));
    }
    if let (Some(p), Some(r)) = (power_off, rule.power_off)
        && p > r + 1e-9
    {
        parts.push(format!("power-off {p} > {r}"));
    }
    if let Some(x) = restore.filter(|x| *x > rule.restore + 1e-9) {
        parts.push(format!("restore {x} > {}", rule.restore));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "declared levels looser than the rule for {}: {}",
            meta.location.key(),
            parts.join(", ")
        )
    })
}

/// Turns the records of a CDSS file of mine `mine` into readings; refused
/// records come back with their index, reason and detail.
pub fn cdss_readings(
    decoder: &Decoder,
    mine: MineIdx,
    records: &Records<'_>,
    now: Millis,
) -> (Vec<Reading>, Vec<(usize, RejectReason, String)>) {
    let registry = decoder.registry();
    let mut readings = Vec::with_capacity(records.records.len());
    let mut refused = Vec::new();
    // The records of one file nearly always share one time: parse it once.
    let mut last_time: Option<(&str, Result<Millis, String>)> = None;
    for (i, rec) in records.records.iter().enumerate() {
        let r = if rec.len() < FileType::Cdss.fields() {
            Err((
                RejectReason::MalformedRecord,
                format!(
                    "{} fields, a CDSS record has {}",
                    rec.len(),
                    FileType::Cdss.fields()
                ),
            ))
        } else {
            let ts = match &last_time {
                Some((text, ts)) if *text == rec[6] => ts.clone(),
                _ => {
                    let ts = parse_time(rec[6]);
                    last_time = Some((rec[6], ts.clone()));
                    ts
                }
            };
            match rec[5].parse::<u16>() {
                Ok(st) => decoder.check(
                    &registry,
                    mine,
                    rec[0],
                    ValueIn::from_text(rec[3]),
                    st,
                    Some(ts),
                    now,
                ),
                Err(_) => Err((
                    RejectReason::WrongType,
                    format!("status {:?} is not a status code", rec[5]),
                )),
            }
        };
        match r {
            Ok(r) => readings.push(r),
            Err((reason, detail)) => refused.push((i, reason, detail)),
        }
    }
    (readings, refused)
}

/// Reads one CDDY record.
fn point_def(mine: &str, rec: &[&str]) -> Result<PointDef, (RejectReason, String)> {
    let need = FileType::Cddy.fields();
    if rec.len() < need {
        return Err((
            RejectReason::MalformedRecord,
            format!("{} fields, a CDDY record has {need}", rec.len()),
        ));
    }
    let code = rec[0];
    if !code.starts_with(mine) {
        return Err((
            RejectReason::PointMineMismatch,
            format!("point {code:?} does not start with the mine code {mine}"),
        ));
    }
    let sensor_code = rec[3];
    let sensor = (sensor_code.len() == 4)
        .then(|| SensorType::parse(sensor_code))
        .flatten()
        .ok_or_else(|| {
            (
                RejectReason::WrongType,
                format!("sensor type {sensor_code:?} is not a 4-digit national code"),
            )
        })?;
    let num = |i: usize| {
        opt_number(rec[i]).map_err(|e| (RejectReason::WrongType, format!("field {}: {e}", i + 1)))
    };
    let (high, low) = (num(6)?, num(7)?);
    let (alarm, alarm_clear, power_off, restore) = (num(8)?, num(9)?, num(12)?, num(13)?);
    let place = rec[18].to_string();
    Ok(PointDef {
        code: code.to_string(),
        sensor,
        location: guess_location(&place),
        unit: if rec[5].is_empty() {
            unit_of(sensor).to_string()
        } else {
            rec[5].to_string()
        },
        range: match (low, high) {
            (Some(lo), Some(hi)) if lo < hi => Some([lo, hi]),
            _ => None,
        },
        declared: (alarm, power_off, alarm_clear.or(restore)),
        substation: (!rec[2].is_empty()).then(|| rec[2].to_string()),
        place,
    })
}

/// Index of the `relations` field (关联关系) in a CDDY record.
const CDDY_RELATIONS: usize = 22;

/// Reads one YCBJ record.
fn exception_record(
    mine: &str,
    file: &str,
    rec: &[&str],
) -> Result<ExceptionRecord, (RejectReason, String)> {
    let need = FileType::Ycbj.fields();
    if rec.len() < need {
        return Err((
            RejectReason::MalformedRecord,
            format!("{} fields, a YCBJ record has {need}", rec.len()),
        ));
    }
    let start = parse_time(rec[5]).map_err(|e| (RejectReason::BadTimestamp, e))?;
    let end = if rec[6].is_empty() {
        None
    } else {
        Some(parse_time(rec[6]).map_err(|e| (RejectReason::BadTimestamp, e))?)
    };
    Ok(ExceptionRecord {
        mine: mine.to_string(),
        point: rec[0].to_string(),
        kind: rec[4].to_string(),
        type_name: rec[1].to_string(),
        place: rec[2].to_string(),
        start_ms: start,
        end_ms: end,
        max: opt_number(rec[7]).map_err(|e| (RejectReason::WrongType, e))?,
        cause: rec[12].to_string(),
        measures: rec[13].to_string(),
        entered_by: rec[15].to_string(),
        file: file.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::netfile::format;

    #[test]
    fn a_quarantined_file_of_a_name_already_kept_gets_a_suffix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = dir.path();
        let name = "140121000001_CDSS_20261123160020.txt";
        assert_eq!(free_quarantine_name(q, name), name);
        fs::write(q.join(name), "first").expect("write");
        assert_eq!(free_quarantine_name(q, name), format!("{name}.1"));
        // A note left without its file still holds the name.
        fs::write(q.join(format!("{name}.1.reason")), "x").expect("write");
        assert_eq!(free_quarantine_name(q, name), format!("{name}.2"));
        assert_eq!(free_quarantine_name(q, "other.txt"), "other.txt");
    }

    #[test]
    fn cddy_records_become_point_definitions() {
        let rec = format::write::cddy(
            "14012100000101MN0001001",
            "03",
            "0001",
            "%",
            [0.0, 4.0],
            Some(1.0),
            Some(1.5),
            Some(1.0),
            "1101上隅角",
            0,
        );
        let rec: Vec<&str> = rec.iter().map(String::as_str).collect();
        let d = point_def("140121000001", &rec).expect("valid");
        assert_eq!(d.sensor, SensorType::Methane);
        assert_eq!(d.location, crate::model::LocationClass::FaceT0);
        assert_eq!(d.range, Some([0.0, 4.0]));
        assert_eq!(d.declared, (Some(1.0), Some(1.5), Some(1.0)));
        assert_eq!(d.substation.as_deref(), Some("03"));
        assert_eq!(
            point_def("140121000002", &rec).unwrap_err().0,
            RejectReason::PointMineMismatch
        );
        let mut bad = rec.clone();
        bad[3] = "methane";
        assert_eq!(
            point_def("140121000001", &bad).unwrap_err().0,
            RejectReason::WrongType
        );
        bad = rec.clone();
        bad[8] = "high";
        assert_eq!(
            point_def("140121000001", &bad).unwrap_err().0,
            RejectReason::WrongType
        );
        assert_eq!(
            point_def("140121000001", &rec[..10]).unwrap_err().0,
            RejectReason::MalformedRecord
        );
    }

    #[test]
    fn ycbj_records_keep_cause_and_measures() {
        let rec = [
            "P1",
            "甲烷",
            "1101工作面",
            "%",
            "001",
            "2026-11-23 16:00:00",
            "2026-11-23 16:05:00",
            "1.32",
            "2026-11-23 16:02:00",
            "0.4",
            "2026-11-23 16:05:00",
            "0.9",
            "放炮后瓦斯涌出",
            "加强通风, 撤出人员",
            "2026-11-23 16:30:00",
            "张三",
            "2026-11-23 16:30:00",
        ];
        let r = exception_record("140121000001", "f.txt", &rec).expect("valid");
        assert_eq!((r.kind.as_str(), r.max), ("001", Some(1.32)));
        assert_eq!(r.end_ms.map(|e| e - r.start_ms), Some(300_000));
        assert_eq!(r.measures, "加强通风, 撤出人员");
        let mut open = rec;
        open[6] = "";
        assert_eq!(
            exception_record("m", "f", &open).expect("ongoing").end_ms,
            None
        );
        open[5] = "yesterday";
        assert_eq!(
            exception_record("m", "f", &open).unwrap_err().0,
            RejectReason::BadTimestamp
        );
    }

    #[test]
    fn the_writer_produces_what_the_parser_reads() {
        let text = format::write::file(
            &format::write::header("140121000001", "矿", 0),
            &[format::write::cdss("P1", "甲烷", "面", 0.42, "%", 0, 0)],
        );
        let r = format::split(&text).expect("valid");
        assert_eq!(r.header[0], "140121000001");
        assert_eq!(r.records[0][3], "0.42");
        assert!(
            format::write::name("140121000001", "CDSS", 1_795_420_800_000)
                .ends_with("_CDSS_20261123160000.txt")
        );
    }
}
