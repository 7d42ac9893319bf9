//! One detector shard: the single owner of the state of every mine assigned
//! to it (all of a mine's points live in one shard, so mine-level detectors
//! need no coordination).
//!
//! [`ShardCore`] is the pure part (readings and ticks in, findings out) that
//! benches and replay drive directly; [`run_worker`] wraps it in a thread
//! fed by bounded queues, which also hands each processed batch's readings
//! to the archive.
//!
//! Every reading meets, in this order: the offline bookkeeping (arrival),
//! the over-limit state machine, then (with `detect.enabled`) the
//! data-anomaly checks, which also place it in its point's event-time
//! order. Only readings newer than their point's newest go on to the
//! falsification signatures, the shard-wide replay index and the air-path
//! minute series; late ones are counted (within or beyond
//! `detect.allowed_lateness_secs`) and still see the stateless checks.
//!
//! A mine's power samples and seal events go to its [`MinePower`] and
//! [`MineSeal`] state (made when the mine configures a feed or cameras, or
//! on its first sample or event); they are no sign of life of the mine's
//! monitoring system, which `mine_offline` is about.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select};

use crate::archive::ArchiveMsg;
use crate::archive::activity::{PowerRow, SealRow};
use crate::config::detect::DetectConsts;
use crate::config::{Registry, SharedRegistry};
use crate::detect::anomaly::is_plain;
use crate::detect::{
    Applied, FalsifyParams, MineOffline, MinePower, MineSeal, MinuteSeries, Order, OverLimit, Path,
    PointAnomaly, PointDetector, PointFalsify, PointParams, PowerApplied, ReplayIndex, SealApplied,
};
use crate::metrics::Metrics;
use crate::model::{Finding, Millis, MineIdx, PointIdx, PowerSample, Reading, SealEvent};
use crate::model::{LocationClass, MineStatus, status};
use crate::pipeline::{Batch, Emitted, Payload};

/// The state of one point.
#[derive(Debug, Clone)]
struct PointSlot {
    /// Index of its mine among the shard's mines.
    mine_slot: u32,
    /// Position in its mine's point list.
    pos: u32,
    /// Over-limit state.
    over: OverLimit,
    /// Data-anomaly state.
    anomaly: PointAnomaly,
    /// Falsification parameters and state: for methane and CO points with
    /// over-limit levels only, made when the shard's figures are worked
    /// out ([`ShardCore::refresh_suite`]; dropped if the point loses its
    /// levels), so that one test of it decides whether the signatures run.
    falsify: Option<Box<(FalsifyParams, PointFalsify)>>,
    /// One-minute means, for points on an air path.
    series: Option<Box<MinuteSeries>>,
    /// (path index within its mine) for points on an air path.
    path: Option<u32>,
    /// Its mine is declared producing (read when the shard takes the point,
    /// and again whenever the registry changes).
    producing: bool,
    /// What the suite reads of the point.
    suite: SuiteMeta,
}

/// What the data-anomaly and falsification checks read of a point, copied
/// from its [`PointMeta`](crate::config::PointMeta) and the `[detect]` knobs
/// of one registry snapshot (see [`ShardCore::process`]), so that a reading
/// does not chase them through the registry.
#[derive(Debug, Clone, Copy)]
struct SuiteMeta {
    /// The registry point these figures are of (`PointIdx::MAX`: none).
    point: PointIdx,
    params: PointParams,
    /// For a feed sensor on an air path: its index in its mine's feeds.
    feed: Option<u32>,
    air_path: Option<u32>,
}

impl SuiteMeta {
    const NONE: SuiteMeta = SuiteMeta {
        point: PointIdx::MAX,
        params: PointParams::NONE,
        feed: None,
        air_path: None,
    };

    fn of(
        k: &DetectConsts,
        meta: &crate::config::PointMeta,
        point: PointIdx,
        slot: &PointSlot,
        feeds: &[Vec<FeedSensor>],
    ) -> SuiteMeta {
        let gas = meta.sensor.gas();
        let feed = if meta.sensor.is_feed() {
            feeds
                .get(slot.mine_slot as usize)
                .and_then(|f| f.iter().position(|f| f.local == meta.local))
                .map(|i| i as u32)
        } else {
            None
        };
        SuiteMeta {
            point,
            params: PointParams::new(k, gas, meta.range, slot.producing),
            feed,
            air_path: meta.air_path,
        }
    }
}

impl PointSlot {
    fn empty() -> PointSlot {
        PointSlot {
            mine_slot: 0,
            pos: 0,
            over: OverLimit::default(),
            anomaly: PointAnomaly::default(),
            falsify: None,
            series: None,
            path: None,
            producing: false,
            suite: SuiteMeta::NONE,
        }
    }
}

/// Counts of how readings were applied, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedCounts {
    /// Readings older than the newest applied for their point.
    pub late: u64,
    /// Readings flagged calibration.
    pub calibration: u64,
    /// Readings without a value.
    pub no_value: u64,
    /// Late readings beyond the allowed lateness (a subset of `late`).
    pub beyond_lateness: u64,
    /// Readings with the same timestamp as their point's newest.
    pub duplicates: u64,
}

impl AppliedCounts {
    /// Counts how the over-limit state machine applied one reading (a
    /// reading without a value counts only at a point with levels).
    #[inline(always)]
    fn add(&mut self, applied: Applied, has_limits: bool) {
        match applied {
            Applied::Value => {}
            Applied::Late => self.late += 1,
            Applied::Calibration => self.calibration += 1,
            Applied::NoValue => {
                if has_limits {
                    self.no_value += 1;
                }
            }
        }
    }
}

/// A feed sensor (馈电, 1015) of a mine and what it last read, for the
/// interlock rule: power-off commanded on its air path while it still reads
/// the power live is feed abnormal (馈电异常).
#[derive(Debug, Clone)]
struct FeedSensor {
    /// The air path it watches (from its install location, "1101馈电").
    path: u32,
    /// Its point's index in the shard's state.
    local: usize,
    /// Event time of its newest reading with a value, and whether that
    /// read the power live (≥ 0.5).
    last: Option<(Millis, bool)>,
}

/// The electricity-use and seal state of one mine.
#[derive(Debug, Clone)]
struct MineActivity {
    power: MinePower,
    seal: MineSeal,
}

/// The pure detector state of one shard.
pub struct ShardCore {
    registry: SharedRegistry,
    shard: usize,
    points: Vec<PointSlot>,
    mines: Vec<MineOffline>,
    /// Position of each registry mine among this shard's mines.
    mine_slot: Vec<Option<u32>>,
    /// Air paths of each of this shard's mines.
    paths: Vec<Vec<Path>>,
    /// Feed sensors of each of this shard's mines (those on an air path).
    feeds: Vec<Vec<FeedSensor>>,
    /// Windows of values seen, for replay detection.
    replay: ReplayIndex,
    /// Power and seal state of each of this shard's mines, once it has any.
    activity: Vec<Option<Box<MineActivity>>>,
    /// Processing time the shard started at (new feeds count as heard
    /// from then).
    started: Millis,
    /// The [`Registry::generation`] the slots' status, the paths and the
    /// points' [`SuiteMeta`] were taken from (only
    /// [`SharedRegistry::update`] publishes a snapshot, and it counts up).
    generation: u64,
    /// The mines whose silence this shard watches; all when `None`.
    watched: Option<crate::pipeline::WatchedMines>,
}

/// Bytes of detector state a shard keeps per point: every point's slot
/// (over-limit, data anomalies, the suite's figures), the boxed
/// falsification state of a methane or CO point with over-limit levels,
/// and the boxed one-minute series of a point on an air path (with its
/// offset and sensitivity state, kept in its path). Fixed sizes:
/// nothing grows with time or readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointStateBytes {
    /// Every point.
    pub slot: usize,
    /// Methane and CO points with over-limit levels, besides.
    pub falsify: usize,
    /// Points on an air path, besides.
    pub series: usize,
}

impl PointStateBytes {
    /// The sizes of this build.
    pub fn of_build() -> PointStateBytes {
        PointStateBytes {
            slot: std::mem::size_of::<PointSlot>(),
            falsify: std::mem::size_of::<(FalsifyParams, PointFalsify)>(),
            series: std::mem::size_of::<MinuteSeries>() + crate::detect::neighbours::TRACK_BYTES,
        }
    }

    /// The most a gas point on an air path holds.
    pub fn gas_point_on_a_path(&self) -> usize {
        self.slot + self.falsify + self.series
    }
}

impl ShardCore {
    /// The state for `shard`, with every mine taken as heard from at
    /// `started` (processing time).
    pub fn new(registry: impl Into<SharedRegistry>, shard: usize, started: Millis) -> ShardCore {
        let registry: SharedRegistry = registry.into();
        let snapshot = registry.snapshot();
        let mut mine_slot = vec![None; snapshot.mines.len()];
        let mut mines = Vec::new();
        for (slot, mine) in snapshot.mines_of_shard(shard).enumerate() {
            let meta = &snapshot.mines[mine as usize];
            mine_slot[mine as usize] = Some(slot as u32);
            mines.push(MineOffline::new(mine, meta.points.len(), started));
        }
        let paths = vec![Vec::new(); mines.len()];
        let feeds = vec![Vec::new(); mines.len()];
        let activity = mines
            .iter()
            .map(|m| {
                let meta = &snapshot.mines[m.mine() as usize];
                (meta.power.configured || !meta.seal.cameras.is_empty())
                    .then(|| MineActivity::boxed(m.mine(), meta, started))
            })
            .collect();
        let mut core = ShardCore {
            replay: ReplayIndex::new(&snapshot.detect),
            registry,
            shard,
            points: Vec::new(),
            mines,
            mine_slot,
            paths,
            feeds,
            activity,
            started,
            generation: snapshot.generation,
            watched: None,
        };
        core.grow(&snapshot);
        core.refresh_suite(&snapshot);
        core
    }

    /// Makes room for the points of this shard's mines that the registry
    /// has and this state has not yet (all of them at start; those a CDDY
    /// file defined later).
    fn grow(&mut self, registry: &Registry) {
        let wanted = registry.points_of_shard(self.shard);
        if wanted <= self.points.len() {
            return;
        }
        let old = self.points.len();
        self.points.resize_with(wanted, PointSlot::empty);
        for mine in registry.mines_of_shard(self.shard) {
            let Some(slot) = self.mine_slot.get(mine as usize).copied().flatten() else {
                continue;
            };
            for (pos, &p) in registry.mines[mine as usize].points.iter().enumerate() {
                let local = registry.points[p as usize].local;
                if local >= old
                    && let Some(s) = self.points.get_mut(local)
                {
                    s.mine_slot = slot;
                    s.pos = pos as u32;
                    s.producing = registry.mines[mine as usize].status == MineStatus::Producing;
                }
            }
            self.build_paths(registry, mine, slot);
        }
    }

    /// Takes again what the slots copy from the registry: a mine's declared
    /// status, its air paths and feed sensors, and a point's definition can
    /// change at run time (an API declaration, a CDDY file). Rare: kept out
    /// of line, so that the reading loops are laid out as without it.
    #[cold]
    #[inline(never)]
    fn refresh(&mut self, registry: &Registry) {
        self.generation = registry.generation;
        for mine in registry.mines_of_shard(self.shard) {
            let meta = &registry.mines[mine as usize];
            let producing = meta.status == MineStatus::Producing;
            for &p in &meta.points {
                if let Some(s) = self.points.get_mut(registry.points[p as usize].local) {
                    s.producing = producing;
                }
            }
            if let Some(slot) = self.mine_slot.get(mine as usize).copied().flatten() {
                self.build_paths(registry, mine, slot);
            }
        }
        // Last: the suite's figures are made from the status and feeds.
        self.refresh_suite(registry);
    }

    /// Groups the methane points of a mine by air path (face T0/T1/T2,
    /// heading T1/T2); a point alone on its path is not judged (the
    /// offset and sensitivity rules need one neighbour,
    /// `neighbours_disagree` two).
    fn build_paths(&mut self, registry: &Registry, mine: u32, slot: u32) {
        let mut groups: Vec<(u32, Vec<(usize, PointIdx)>)> = Vec::new();
        for &p in &registry.mines[mine as usize].points {
            let meta = &registry.points[p as usize];
            let on_path = matches!(
                meta.location,
                LocationClass::FaceT0
                    | LocationClass::FaceT1
                    | LocationClass::FaceT2
                    | LocationClass::HeadingT1
                    | LocationClass::HeadingT2
            );
            let (Some(path), true, true) =
                (meta.air_path, on_path, meta.sensor.is_ambient_methane())
            else {
                continue;
            };
            match groups.iter_mut().find(|(k, _)| *k == path) {
                Some((_, g)) => g.push((meta.local, p)),
                None => groups.push((path, vec![(meta.local, p)])),
            }
        }
        // Points that left a path (a definition changed) are on none.
        for &p in &registry.mines[mine as usize].points {
            if let Some(s) = self.points.get_mut(registry.points[p as usize].local) {
                s.path = None;
            }
        }
        // A path whose members are unchanged keeps its state.
        let mut old = self
            .paths
            .get_mut(slot as usize)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut paths = Vec::new();
        for (_, members) in groups {
            if members.len() < 2 {
                continue;
            }
            let idx = paths.len() as u32;
            for &(local, _) in &members {
                if let Some(s) = self.points.get_mut(local) {
                    s.path = Some(idx);
                    if s.series.is_none() {
                        s.series = Some(Box::default());
                    }
                }
            }
            match old.iter().position(|p| p.members == members) {
                Some(i) => paths.push(old.swap_remove(i)),
                None => paths.push(Path::new(members)),
            }
        }
        if let Some(p) = self.paths.get_mut(slot as usize) {
            *p = paths;
        }
        self.build_feeds(registry, mine, slot);
    }

    /// Lists the feed sensors of a mine that sit on an air path, keeping
    /// what those already known last read.
    fn build_feeds(&mut self, registry: &Registry, mine: u32, slot: u32) {
        let Some(known) = self.feeds.get_mut(slot as usize) else {
            return;
        };
        let mut feeds = Vec::new();
        for &p in &registry.mines[mine as usize].points {
            let meta = &registry.points[p as usize];
            let (true, Some(path)) = (meta.sensor.is_feed(), meta.air_path) else {
                continue;
            };
            let last = known
                .iter()
                .find(|f| f.local == meta.local)
                .and_then(|f| f.last);
            feeds.push(FeedSensor {
                path,
                local: meta.local,
                last,
            });
        }
        *known = feeds;
    }

    /// Applies readings that arrived at processing time `arrival`.
    pub fn process(
        &mut self,
        readings: &[Reading],
        arrival: Millis,
        out: &mut Vec<Finding>,
    ) -> AppliedCounts {
        let registry = self.registry.snapshot();
        if registry.generation != self.generation {
            self.refresh(&registry);
        }
        if registry.detect.enabled {
            self.readings_suite(&registry, readings, arrival, out)
        } else {
            self.readings_plain(&registry, readings, arrival, out)
        }
    }

    /// [`ShardCore::process`] with `[detect]` off: the offline bookkeeping
    /// and the over-limit state machine only. Not inlined, nor is the
    /// suite's loop: each path is compiled (registers, spills) on its own.
    #[inline(never)]
    fn readings_plain(
        &mut self,
        registry: &Registry,
        readings: &[Reading],
        arrival: Millis,
        out: &mut Vec<Finding>,
    ) -> AppliedCounts {
        let mut counts = AppliedCounts::default();
        for r in readings {
            let Some(meta) = registry.points.get(r.point as usize) else {
                continue;
            };
            if meta.local >= self.points.len() {
                self.grow(registry);
            }
            let Some(slot) = self.points.get_mut(meta.local) else {
                continue;
            };
            if crate::detect::offline::is_sign_of_life(r.status)
                && let Some(mine) = self.mines.get_mut(slot.mine_slot as usize)
            {
                mine.on_arrival(slot.pos as usize, r.point as PointIdx, arrival, out);
            }
            let applied = slot.over.on_reading(meta, r.point, r, out);
            counts.add(applied, meta.limits.is_some());
        }
        counts
    }

    /// Works out each point's [`SuiteMeta`] from `registry` (at start, after
    /// the registry changed, or when the shard took new points).
    #[cold]
    #[inline(never)]
    fn refresh_suite(&mut self, registry: &Registry) {
        let k = DetectConsts::of(&registry.detect);
        for mine in registry.mines_of_shard(self.shard) {
            for &p in &registry.mines[mine as usize].points {
                let meta = &registry.points[p as usize];
                if let Some(s) = self.points.get(meta.local) {
                    let m = SuiteMeta::of(&k, meta, p, s, &self.feeds);
                    let s = &mut self.points[meta.local];
                    s.suite = m;
                    match (&meta.limits, meta.sensor.gas()) {
                        (Some(limits), Some(gas)) => {
                            let params = FalsifyParams::new(
                                &registry.detect,
                                &k,
                                limits,
                                gas,
                                meta.polling_ms,
                            );
                            match &mut s.falsify {
                                Some(f) => f.0 = params,
                                None => {
                                    s.falsify = Some(Box::new((params, PointFalsify::default())))
                                }
                            }
                        }
                        _ => s.falsify = None,
                    }
                }
            }
        }
    }

    /// [`ShardCore::process`] with `[detect]` on: also the data-anomaly and
    /// falsification checks, the replay index and the air-path series.
    #[inline(never)]
    fn readings_suite(
        &mut self,
        registry: &Registry,
        readings: &[Reading],
        arrival: Millis,
        out: &mut Vec<Finding>,
    ) -> AppliedCounts {
        let mut counts = AppliedCounts::default();
        // What the suite derives from its knobs, once per batch; what it
        // reads of each point is kept up to date by `refresh`.
        let cfg = &registry.detect;
        let k = DetectConsts::of(cfg);
        for r in readings {
            let Some(meta) = registry.points.get(r.point as usize) else {
                continue;
            };
            if meta.local >= self.points.len() {
                self.grow(registry);
                self.refresh_suite(registry);
            }
            let Some(slot) = self.points.get_mut(meta.local) else {
                continue;
            };
            if crate::detect::offline::is_sign_of_life(r.status)
                && let Some(mine) = self.mines.get_mut(slot.mine_slot as usize)
            {
                mine.on_arrival(slot.pos as usize, r.point as PointIdx, arrival, out);
            }
            // The status and value checked once for every detector.
            let plain = is_plain(r);
            let applied = match &meta.limits {
                Some(limits) if plain => slot.over.apply_value(limits, r.point, r, r.value, out),
                Some(limits) => slot.over.apply_inlined(limits, meta.range, r.point, r, out),
                None => Applied::NoValue,
            };
            counts.add(applied, meta.limits.is_some());
            // A slot holds the figures of the registry point it belongs
            // to; a reading of another shard's point at the same index
            // (never routed here by the pipeline) gets its own for the
            // anomaly checks, and stops after them: the falsification,
            // feed and series state of a slot are its own point's.
            let other;
            let own = slot.suite.point == r.point;
            let params = if own {
                &slot.suite.params
            } else {
                other = PointParams::new(&k, meta.sensor.gas(), meta.range, slot.producing);
                &other
            };
            match slot
                .anomaly
                .apply(cfg, &k, params, r.point, r, arrival, plain, out)
            {
                Order::InOrder => {}
                Order::Duplicate => {
                    counts.duplicates += 1;
                    continue;
                }
                Order::TooLate => {
                    counts.beyond_lateness += 1;
                    continue;
                }
                Order::Late | Order::Future => continue,
            }
            if !own {
                continue;
            }
            let s = &slot.suite;
            let valid = plain
                || r.status & (status::NOT_A_VALUE | status::CALIBRATION) == 0
                    && r.value.is_finite();
            if let Some(i) = s.feed
                && valid
                && let Some(f) = self
                    .feeds
                    .get_mut(slot.mine_slot as usize)
                    .and_then(|f| f.get_mut(i as usize))
            {
                f.last = Some((r.ts, r.value >= 0.5));
            }
            if let Some(f) = &mut slot.falsify {
                let (fp, f) = &mut **f;
                // Only a reading over the power-off level with the bit set
                // asks whether the path's feed still reads live.
                let feed_live_at = if r.status & status::POWER_OFF != 0
                    && fp.power_off.is_some_and(|po| r.value >= po)
                    && let (Some(path), Some(feeds)) =
                        (s.air_path, self.feeds.get(slot.mine_slot as usize))
                {
                    feeds
                        .iter()
                        .filter(|f| f.path == path)
                        .filter_map(|f| f.last.and_then(|(ts, live)| live.then_some(ts)))
                        .max()
                } else {
                    None
                };
                f.apply(
                    cfg,
                    &k,
                    fp,
                    &mut self.replay,
                    r.point,
                    r,
                    valid,
                    feed_live_at,
                    out,
                );
            }
            if let (Some(series), Some(path), true) = (&mut slot.series, slot.path, valid)
                && let Some(done) = series.push(r.ts, r.value)
            {
                let mine = slot.mine_slot as usize;
                if let Some(path) = self
                    .paths
                    .get_mut(mine)
                    .and_then(|p| p.get_mut(path as usize))
                {
                    let points = &self.points;
                    // Judge the minute before: every member has completed it
                    // by now (the one just completed may still be open at
                    // the others).
                    path.judge(
                        cfg,
                        done - 1,
                        |local| points.get(local).and_then(|s| s.series.as_deref()),
                        out,
                    );
                }
            }
        }
        counts
    }

    /// The registry snapshot this shard runs on now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.snapshot()
    }

    /// The power and seal state of `mine`, made on first use; `None` for
    /// a mine this shard does not own.
    fn activity_of(&mut self, registry: &Registry, mine: MineIdx) -> Option<&mut MineActivity> {
        let slot = self.mine_slot.get(mine as usize).copied().flatten()? as usize;
        let meta = registry.mines.get(mine as usize)?;
        let started = self.started;
        let a = self.activity.get_mut(slot)?;
        Some(a.get_or_insert_with(|| MineActivity::boxed(mine, meta, started)))
    }

    /// Hands each record of a mine's feed to `apply` with the mine's
    /// activity state and metadata; records of mines this shard does not
    /// own are skipped.
    fn each_of_mine<T>(
        &mut self,
        records: &[T],
        mine_of: impl Fn(&T) -> MineIdx,
        mut apply: impl FnMut(&mut MineActivity, &Registry, &crate::config::MineMeta, &T),
    ) {
        let registry = self.registry.snapshot();
        for rec in records {
            let mine = mine_of(rec);
            let Some(meta) = registry.mines.get(mine as usize) else {
                continue;
            };
            if let Some(a) = self.activity_of(&registry, mine) {
                apply(a, &registry, meta, rec);
            }
        }
    }

    /// Applies a mine's power samples that arrived at processing time
    /// `arrival`.
    pub fn process_power(
        &mut self,
        samples: &[PowerSample],
        arrival: Millis,
        out: &mut Vec<Finding>,
    ) -> AppliedCounts {
        let mut counts = AppliedCounts::default();
        self.each_of_mine(
            samples,
            |s| s.mine,
            |a, registry, meta, s| {
                let applied = a.power.apply(
                    &registry.activity,
                    &meta.power,
                    meta.status,
                    s,
                    arrival,
                    out,
                );
                if applied == PowerApplied::Late {
                    counts.late += 1;
                }
            },
        );
        counts
    }

    /// Applies a mine's seal events that arrived at processing time
    /// `arrival`.
    pub fn process_seal(
        &mut self,
        events: &[SealEvent],
        arrival: Millis,
        out: &mut Vec<Finding>,
    ) -> AppliedCounts {
        let mut counts = AppliedCounts::default();
        self.each_of_mine(
            events,
            |e| e.mine,
            |a, registry, meta, e| match a.seal.apply(&registry.activity, meta, e, arrival, out) {
                SealApplied::InOrder => {}
                SealApplied::Late => counts.late += 1,
                SealApplied::Duplicate => counts.duplicates += 1,
            },
        );
        counts
    }

    /// Applies one batch's records of any kind.
    pub fn process_payload(
        &mut self,
        payload: &Payload,
        arrival: Millis,
        out: &mut Vec<Finding>,
    ) -> AppliedCounts {
        match payload {
            Payload::Readings(r) => self.process(r, arrival, out),
            Payload::Power(p) => self.process_power(p, arrival, out),
            Payload::Seal(s) => self.process_seal(s, arrival, out),
        }
    }

    /// Watches the silence only of the mines `watched` accepts (cluster
    /// mode: the mines of the partitions this instance holds; another
    /// instance watches the rest).
    pub fn watch_only(&mut self, watched: crate::pipeline::WatchedMines) {
        self.watched = Some(watched);
    }

    /// Processing time has reached `now`.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Finding>) {
        let registry = self.registry.snapshot();
        for (mine, activity) in self.mines.iter_mut().zip(&mut self.activity) {
            if let Some(w) = &self.watched
                && !w(&registry.mines[mine.mine() as usize])
            {
                continue;
            }
            mine.on_tick(&registry, now, out);
            if let Some(a) = activity {
                let meta = &registry.mines[mine.mine() as usize];
                let link = mine.link();
                a.power.on_tick(&meta.power, meta.status, now, link, out);
                a.seal.on_tick(meta, now, link, out);
            }
        }
    }
}

impl MineActivity {
    fn boxed(mine: MineIdx, meta: &crate::config::MineMeta, started: Millis) -> Box<MineActivity> {
        Box::new(MineActivity {
            power: MinePower::new(mine, started),
            seal: MineSeal::new(mine, meta.seal.cameras.len(), started),
        })
    }
}

/// Where a shard's output goes.
pub struct WorkerSinks {
    /// Findings, to the alert stage.
    pub findings: Sender<Emitted>,
    /// Processed batches, to the archive (journal first), when it runs.
    pub archive: Option<Sender<ArchiveMsg>>,
    /// The page's trends and this shard's index in them.
    pub trends: Option<(Arc<crate::pipeline::trend::Trends>, usize)>,
}

/// Runs one shard until its input queue or its tick queue is closed. After
/// a batch has passed the detectors its readings `Vec` and its completion
/// move (no copy) to `archive`, waiting while that queue is full: a slow
/// disk slows ingest down rather than losing readings. With an archive, the
/// archive's journal completes the batch once it is durable; without one,
/// the shard completes it after the detectors.
///
/// [`Pipeline::shutdown`](crate::pipeline::Pipeline::shutdown) closes the
/// input queues, then the tick queues. A closed tick queue therefore means
/// shutdown: the shard applies the batches already queued and stops, even
/// when a source still holds a sender of its input (a source stuck on a
/// full queue then sees the queue closed; its message, never acknowledged,
/// is redelivered by the broker).
pub fn run_worker(
    core: ShardCore,
    input: Receiver<Batch>,
    ticks: Receiver<Millis>,
    sinks: WorkerSinks,
    metrics: Arc<Metrics>,
) {
    let mut worker = Worker {
        core,
        sinks,
        metrics,
        out: Vec::with_capacity(64),
        accepted: Vec::new(),
    };
    loop {
        select! {
            recv(input) -> msg => {
                let Ok(batch) = msg else { return };
                if !worker.batch(batch) {
                    return;
                }
            }
            recv(ticks) -> msg => {
                let Ok(now) = msg else { break };
                if !worker.tick(now) {
                    return;
                }
            }
        }
    }
    // The ticks closed: apply what is queued now (a bounded number, even if
    // a sender still adds more), then stop.
    let queued = input.len();
    for _ in 0..queued {
        let Ok(batch) = input.try_recv() else { break };
        if !worker.batch(batch) {
            return;
        }
    }
}

/// A shard thread's state around its [`ShardCore`].
struct Worker {
    core: ShardCore,
    sinks: WorkerSinks,
    metrics: Arc<Metrics>,
    out: Vec<Finding>,
    /// Counter handles per source, resolved once (label lookup takes a lock
    /// inside prometheus; the shard loop takes none).
    accepted: Vec<(&'static str, prometheus::IntCounter)>,
}

impl Worker {
    /// Sends the findings in `out` to the alert stage; false once it has
    /// stopped.
    fn forward(&mut self, received: Option<Instant>) -> bool {
        for finding in self.out.drain(..) {
            if self
                .sinks
                .findings
                .send(Emitted { finding, received })
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Carries processing time to the detectors; false once the alert
    /// stage has stopped.
    fn tick(&mut self, now: Millis) -> bool {
        self.core.tick(now, &mut self.out);
        self.forward(None)
    }

    /// Applies one batch and passes it on; false once the alert stage has
    /// stopped.
    fn batch(&mut self, batch: Batch) -> bool {
        let counts = self
            .core
            .process_payload(&batch.payload, batch.arrival, &mut self.out);
        if !self.forward(Some(batch.received)) {
            return false;
        }
        let metrics = &*self.metrics;
        if counts.late > 0 {
            metrics.late.inc_by(counts.late);
        }
        if counts.calibration > 0 {
            metrics.calibration.inc_by(counts.calibration);
        }
        if counts.no_value > 0 {
            metrics.no_value.inc_by(counts.no_value);
        }
        if counts.beyond_lateness > 0 {
            metrics.beyond_lateness.inc_by(counts.beyond_lateness);
        }
        if counts.duplicates > 0 {
            metrics.duplicates.inc_by(counts.duplicates);
        }
        let accepted = &mut self.accepted;
        let counter = match accepted.iter().position(|(s, _)| *s == batch.source) {
            Some(i) => &accepted[i].1,
            None => {
                let c = metrics.accepted.with_label_values(&[batch.source]);
                accepted.push((batch.source, c));
                &accepted[accepted.len() - 1].1
            }
        };
        counter.inc_by(batch.payload.len() as u64);
        metrics
            .detector_latency
            .observe(batch.received.elapsed().as_secs_f64());
        let Batch {
            payload,
            arrival,
            source,
            done,
            ..
        } = batch;
        // Warm-up readings are in some instance's archive already.
        let warm_up = source == crate::pipeline::WARM_UP_SOURCE;
        if let (Some((trends, shard)), Payload::Readings(r), false) =
            (&self.sinks.trends, &payload, warm_up)
        {
            trends.record(*shard, r);
        }
        match &self.sinks.archive {
            Some(archive) if !payload.is_empty() && !warm_up => {
                // The archive's journal completes the batch once its
                // records are durable; the shard goes on at once.
                let msg = match payload {
                    Payload::Readings(readings) => ArchiveMsg::Readings {
                        readings,
                        arrival,
                        source,
                        done,
                    },
                    Payload::Power(p) => {
                        let registry = self.core.registry();
                        let rows = p
                            .iter()
                            .map(|s| PowerRow::of(&registry, s, arrival, source));
                        ArchiveMsg::Power {
                            rows: rows.collect(),
                            done,
                        }
                    }
                    Payload::Seal(e) => {
                        let registry = self.core.registry();
                        let rows = e.iter().map(|e| SealRow::of(&registry, e, arrival, source));
                        ArchiveMsg::Seal {
                            rows: rows.collect(),
                            done,
                        }
                    }
                };
                if archive.send(msg).is_err() {
                    tracing::error!(
                        "archive queue closed; this batch is neither archived nor acknowledged"
                    );
                }
            }
            _ => {
                if let Some(done) = &done {
                    done.part_done();
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn per_point_state_is_small_and_fixed() {
        let b = super::PointStateBytes::of_build();
        // A budget, not a measurement of speed: 600,000 gas points on air
        // paths stay under 1.2 GB of detector state.
        assert!(b.gas_point_on_a_path() <= 2_000, "{b:?}");
        assert!(b.slot <= 512, "{b:?}");
    }

    use super::*;
    use crate::config::parse;

    fn registry() -> Arc<Registry> {
        let (config, _) = parse(
            r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 10
points = [
  { code = "a1", sensor = "0001", location = "face_t1" },
  { code = "a2", sensor = "0004", location = "face_t2" },
]
[[mines]]
code = "140121000002"
name = "b"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 10
points = [ { code = "b1", sensor = "0001", location = "face_t1" } ]
[[mines]]
code = "140121000003"
name = "c"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 10
points = [ { code = "c1", sensor = "0001", location = "heading_t1" } ]
"#,
        )
        .expect("valid");
        Arc::new(Registry::build(&config, 2))
    }

    fn r(point: PointIdx, ts: Millis, value: f64) -> Reading {
        Reading {
            point,
            ts,
            value,
            status: 0,
        }
    }

    #[test]
    fn each_shard_owns_its_mines_points() {
        let reg = registry();
        // Mines 0 and 2 go to shard 0, mine 1 to shard 1.
        let mut s0 = ShardCore::new(reg.clone(), 0, 0);
        let mut out = Vec::new();
        s0.process(&[r(0, 1000, 1.6), r(3, 1000, 1.2)], 1000, &mut out);
        let opened: Vec<PointIdx> = out
            .iter()
            .filter_map(|f| match f {
                Finding::OverLimitOpened { point, .. } => Some(*point),
                _ => None,
            })
            .collect();
        assert_eq!(opened, [0, 3]);
        assert!(
            out.iter()
                .any(|f| matches!(f, Finding::Evacuation { point: 0, .. }))
        );
        // Mine 2 (only point 3) has reported, mine 0's CO point has not:
        // after 30 s mine 0 is alive only through point 0.
        out.clear();
        s0.process(&[r(0, 25_000, 0.3), r(3, 25_000, 0.3)], 25_000, &mut out);
        s0.tick(31_000, &mut out);
        assert!(out.contains(&Finding::PointOffline {
            point: 1,
            at: 31_000,
            last_seen: 0
        }));
        let s1 = ShardCore::new(reg, 1, 0);
        assert_eq!(s1.points.len(), 1);
    }

    #[test]
    fn a_status_declared_at_run_time_reaches_the_points_slots() {
        use crate::config::SharedRegistry;
        let shared = SharedRegistry::from(registry());
        shared.update(|r| ((), r.set_mine_status("140121000001", MineStatus::Stopped)));
        // A point without history waits `flat_cold_secs`; this one is
        // judged by the 30-minute floor.
        shared.update(|r| {
            r.detect.flat_cold_secs = r.detect.flat_secs;
            ((), true)
        });
        let mut s0 = ShardCore::new(shared.clone(), 0, 0);
        // Point 0 reads a steady 0.50 % every 10 s: a flat line only while
        // the mine is declared producing.
        let mut out = Vec::new();
        let flat = |core: &mut ShardCore, from: i64, out: &mut Vec<Finding>| {
            for k in 0..240 {
                let ts = from + k * 10_000;
                core.process(&[r(0, ts, 0.5)], ts, out);
            }
        };
        flat(&mut s0, 10_000, &mut out);
        let flats = |out: &[Finding]| {
            out.iter()
                .filter(|f| {
                    matches!(
                        f,
                        Finding::FlagRaised {
                            flag: crate::model::Flag::FlatLine,
                            ..
                        }
                    )
                })
                .count()
        };
        assert_eq!(flats(&out), 0, "stopped: no flat line");
        // Declared producing again: the same shard sees it at its next batch.
        shared.update(|r| ((), r.set_mine_status("140121000001", MineStatus::Producing)));
        out.clear();
        flat(&mut s0, 2_410_000, &mut out);
        assert_eq!(flats(&out), 1, "producing: the flat line is raised");
    }

    #[test]
    fn silence_is_watched_only_for_the_mines_given() {
        let reg = registry();
        let mut out = Vec::new();
        let mut watched = ShardCore::new(reg.clone(), 0, 0);
        let mut unwatched = ShardCore::new(reg, 0, 0);
        unwatched.watch_only(Arc::new(|_: &crate::config::MineMeta| false));
        for t in (10..=600).step_by(10) {
            watched.tick(t * 1000, &mut out);
        }
        assert!(
            out.iter().any(|f| matches!(f, Finding::MineOffline { .. })),
            "a mine that never reports goes offline: {out:?}"
        );
        out.clear();
        for t in (10..=600).step_by(10) {
            unwatched.tick(t * 1000, &mut out);
        }
        assert!(out.is_empty(), "another instance watches it: {out:?}");
    }

    #[test]
    fn points_defined_after_start_are_watched() {
        use crate::config::{PointDef, SharedRegistry};
        use crate::model::{LocationClass, SensorType};
        let shared = SharedRegistry::from(registry());
        let mut s0 = ShardCore::new(shared.clone(), 0, 0);
        let new = shared.update(|r| {
            let def = PointDef {
                code: "a9".into(),
                sensor: SensorType::Methane,
                location: LocationClass::FaceT1,
                place: "new face".into(),
                unit: "%".into(),
                range: None,
                declared: (None, None, None),
                substation: None,
            };
            (r.upsert_point(0, def), true)
        });
        let crate::config::Upsert::Added(p) = new else {
            panic!("{new:?}")
        };
        let mut out = Vec::new();
        s0.process(&[r(p, 1000, 1.2)], 1000, &mut out);
        assert!(matches!(out[..], [Finding::OverLimitOpened { point, .. }] if point == p));
        // Mine 0 keeps reporting through its old points; the new one falls
        // silent and goes offline after its timeout (3 × 10 s).
        out.clear();
        for t in (2..=40).step_by(2) {
            s0.process(
                &[
                    r(0, t * 1000, 0.2),
                    r(1, t * 1000, 1.0),
                    r(3, t * 1000, 0.2),
                ],
                t * 1000,
                &mut out,
            );
            s0.tick(t * 1000, &mut out);
        }
        assert!(
            out.contains(&Finding::PointOffline {
                point: p,
                at: 32_000,
                last_seen: 1000
            }),
            "{out:?}"
        );
    }

    #[test]
    fn power_off_with_the_paths_feed_still_live_is_an_interlock_finding() {
        let (config, _) = parse(
            r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 5
points = [
  { code = "t1", sensor = "0001", location = "face_t1", place = "1101工作面" },
  { code = "u1", sensor = "0001", location = "face_t1", place = "1102工作面" },
  { code = "f1", sensor = "1015", location = "other", place = "1101馈电" },
]
"#,
        )
        .expect("valid");
        let reg = Arc::new(Registry::build(&config, 1));
        // Two minutes at 1.7 % with the mine's power-off status on both
        // faces; the 1101 feed reads `feed` throughout.
        let run = |feed: f64| {
            let mut core = ShardCore::new(reg.clone(), 0, 0);
            let mut out = Vec::new();
            for i in 0..24 {
                let ts = 1_000_000 + i * 5_000;
                let over = |point| Reading {
                    status: status::ALARM | status::POWER_OFF,
                    ..r(point, ts, 1.7)
                };
                core.process(
                    &[over(0), over(1), r(2, ts + 100, feed)],
                    ts + 1_000,
                    &mut out,
                );
            }
            out.iter()
                .filter_map(|f| match f {
                    Finding::FlagRaised { point, flag, .. } => Some((*point, *flag)),
                    _ => None,
                })
                .filter(|(_, flag)| *flag == crate::model::Flag::Interlock)
                .collect::<Vec<_>>()
        };
        // The feed cut: the interlock acted on 1101; 1102 has no feed
        // sensor, so its status is taken as it is.
        assert!(run(0.0).is_empty());
        // The feed still live after the power-off: feed abnormal on 1101.
        assert_eq!(run(1.0), [(0, crate::model::Flag::Interlock)]);
    }

    #[test]
    fn an_absurd_methane_value_is_a_fault_never_an_evacuation() {
        // Point 0 is face methane (range 0–4 %, fault line 8 %); with the
        // detect suite on and off.
        for detect in [true, false] {
            let mut reg = (*registry()).clone();
            reg.detect.enabled = detect;
            let mut s0 = ShardCore::new(Arc::new(reg), 0, 0);
            let mut out = Vec::new();
            let readings = [
                r(0, 1000, 0.3),
                r(0, 2000, 1.8e19),
                r(0, 3000, 1e300),
                r(0, 4000, f64::MAX),
            ];
            let c = s0.process(&readings, 4000, &mut out);
            assert_eq!(c.no_value, 3, "detect {detect}");
            assert!(
                !out.iter().any(|f| matches!(
                    f,
                    Finding::OverLimitOpened { .. } | Finding::Evacuation { .. }
                )),
                "detect {detect}: {out:?}"
            );
            assert_eq!(
                out.iter().any(|f| matches!(
                    f,
                    Finding::FlagRaised {
                        point: 0,
                        flag: crate::model::Flag::OutOfRange,
                        ..
                    }
                )),
                detect,
                "{out:?}"
            );
            // Just past the top of the range is still gas.
            out.clear();
            s0.process(&[r(0, 5000, 4.5)], 5000, &mut out);
            assert!(
                out.iter()
                    .any(|f| matches!(f, Finding::Evacuation { point: 0, .. })),
                "{out:?}"
            );
        }
    }

    #[test]
    fn counts_report_late_calibration_and_valueless_readings() {
        let reg = registry();
        let mut s0 = ShardCore::new(reg, 0, 0);
        let mut out = Vec::new();
        let readings = [
            r(0, 5000, 0.2),
            r(0, 4000, 0.2),
            Reading {
                status: 4,
                ..r(0, 6000, 0.2)
            },
            Reading {
                status: 128,
                ..r(1, 6000, 0.0)
            },
        ];
        let c = s0.process(&readings, 6000, &mut out);
        assert_eq!(
            c,
            AppliedCounts {
                late: 1,
                calibration: 1,
                no_value: 1,
                beyond_lateness: 0,
                duplicates: 0,
            }
        );
    }

    struct Acks(std::sync::Mutex<Vec<u64>>);
    impl crate::pipeline::AckSink for Acks {
        fn complete(&self, token: u64) {
            self.0.lock().unwrap().push(token);
        }
    }

    /// Runs one batch through a worker; returns what the archive queue got.
    fn through_worker(archive: bool, acks: Arc<Acks>) -> Vec<ArchiveMsg> {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let (_tick_tx, tick_rx) = crossbeam_channel::bounded(1);
        let (find_tx, _find_rx) = crossbeam_channel::bounded(64);
        let (arch_tx, arch_rx) = crossbeam_channel::bounded(4);
        let core = ShardCore::new(registry(), 0, 0);
        let metrics = Arc::new(Metrics::new(1));
        let trends = Arc::new(crate::pipeline::trend::Trends::new(1, 60));
        let seen = trends.clone();
        let worker = std::thread::spawn(move || {
            let sinks = WorkerSinks {
                findings: find_tx,
                archive: archive.then_some(arch_tx),
                trends: Some((trends, 0)),
            };
            run_worker(core, rx, tick_rx, sinks, metrics)
        });
        tx.send(Batch {
            payload: Payload::Readings(vec![r(0, 1000, 0.3)]),
            arrival: 1000,
            received: Instant::now(),
            source: "mqtt",
            done: Some(crate::pipeline::Completion::new(1, 7, acks)),
        })
        .unwrap();
        drop(tx);
        worker.join().unwrap();
        // The page's trend saw the batch too.
        let last = seen.series(0, 0, 0).last.and_then(|l| l.value);
        assert_eq!(last, Some(0.3));
        arch_rx.try_iter().collect()
    }

    #[test]
    fn with_an_archive_the_journal_completes_the_batch_not_the_shard() {
        let acks = Arc::new(Acks(std::sync::Mutex::new(Vec::new())));
        let sent = through_worker(true, acks.clone());
        assert!(acks.0.lock().unwrap().is_empty(), "not durable yet");
        let Some(ArchiveMsg::Readings {
            done: Some(done), ..
        }) = sent.into_iter().next()
        else {
            panic!("the batch and its completion go to the archive")
        };
        done.part_done();
        assert_eq!(*acks.0.lock().unwrap(), [7]);
        // Without an archive the shard completes it after the detectors.
        let acks = Arc::new(Acks(std::sync::Mutex::new(Vec::new())));
        assert!(through_worker(false, acks.clone()).is_empty());
        assert_eq!(*acks.0.lock().unwrap(), [7]);
    }

    #[test]
    fn a_closed_tick_queue_stops_the_worker_after_what_is_queued() {
        // Shutdown closes the ticks; a source may still hold a sender of
        // the input (stuck, or slow to stop). The worker must not spin.
        let (tx, rx) = crossbeam_channel::bounded(4);
        let (tick_tx, tick_rx) = crossbeam_channel::bounded(1);
        let (find_tx, _find_rx) = crossbeam_channel::bounded(64);
        let metrics = Arc::new(Metrics::new(1));
        let (ended_tx, ended) = crossbeam_channel::bounded(1);
        let core = ShardCore::new(registry(), 0, 0);
        let acks = Arc::new(Acks(std::sync::Mutex::new(Vec::new())));
        let worker_metrics = metrics.clone();
        std::thread::spawn(move || {
            let sinks = WorkerSinks {
                findings: find_tx,
                archive: None,
                trends: None,
            };
            run_worker(core, rx, tick_rx, sinks, worker_metrics);
            let _ = ended_tx.send(());
        });
        // A batch queued before the ticks close is still applied.
        tx.send(Batch {
            payload: Payload::Readings(vec![r(0, 1000, 0.3)]),
            arrival: 1000,
            received: Instant::now(),
            source: "mqtt",
            done: Some(crate::pipeline::Completion::new(1, 9, acks.clone())),
        })
        .unwrap();
        drop(tick_tx);
        assert!(
            ended
                .recv_timeout(std::time::Duration::from_secs(10))
                .is_ok(),
            "the worker stops on a closed tick queue while an input sender lives"
        );
        assert_eq!(*acks.0.lock().unwrap(), [9], "the queued batch was applied");
        // The input's receiver is gone: a source still sending learns it.
        let late = Batch {
            payload: Payload::Readings(vec![r(0, 2000, 0.3)]),
            arrival: 2000,
            received: Instant::now(),
            source: "mqtt",
            done: None,
        };
        assert!(tx.send(late).is_err());
    }
}
