//! The registry: the validated config turned into what the pipeline runs on.
//!
//! Mines and points get dense indices; each point gets its effective
//! over-limit [`Limits`] (the rule for its location, or the mine's declared
//! levels where no rule applies) and its offline timeout; each mine gets the
//! shard that owns all of its state.
//!
//! Points can also be defined at run time (a mine's CDDY file): the registry
//! is then replaced copy-on-write through [`SharedRegistry`]. Indices only
//! ever grow, so a reader holding an older snapshot sees a valid prefix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::activity::{self, ActivityConfig, PowerMeta, SealMeta};
use crate::config::detect::DetectConfig;
use crate::config::rules::{self, CO_DEFAULT};
use crate::config::{Config, RulesConfig};
use crate::model::{Gas, LocationClass, MineIdx, MineStatus, PointIdx, SensorType, stable_hash};

/// Effective over-limit levels of one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Which gas.
    pub gas: Gas,
    /// Open an episode at or above this.
    pub alarm: f64,
    /// The power-off level, if any.
    pub power_off: Option<f64>,
    /// Close the episode below this.
    pub restore: f64,
    /// Raise an evacuation alert at or above this, if any.
    pub evacuate: Option<f64>,
    /// Values must stay below `restore` this long before the episode closes.
    pub hold_ms: i64,
    /// True when the levels come from the safety rules, false when from the
    /// mine's declaration (location class `other`).
    pub from_rule: bool,
    /// Above this a value is a sensor fault, not a concentration
    /// ([`fault_above`]): the over-limit detector does not take it (the
    /// data-anomaly range check reports it as `out_of_range`).
    pub fault_above: f64,
}

/// The highest concentration of `gas` there is: 100 % by volume (methane
/// in %, CO in ppm: 1,000,000 ppm).
pub fn physical_max(gas: Gas) -> f64 {
    match gas {
        Gas::Methane => 100.0,
        Gas::CarbonMonoxide => 1_000_000.0,
    }
}

/// The value above which a reading of a `gas` point with measuring `range`
/// is a sensor fault rather than gas: twice the top of the range (the top
/// plus the span, for a range that does not start at 0), and never above
/// the physical maximum ([`physical_max`]). A sensor cannot read that far
/// past its range; a value there (1.8e19, 1e300) comes from a broken
/// sensor, a broken transmission or a hostile sender, and must not raise
/// an evacuation on its own. Between the top of the range and this line a
/// value still counts (a sensor saturating just past its top is the worst
/// case, not a fault).
pub fn fault_above(gas: Gas, range: Option<[f64; 2]>) -> f64 {
    let physical = physical_max(gas);
    match range {
        Some([lo, hi]) if hi > lo => (hi + (hi - lo)).min(physical),
        _ => physical,
    }
}

/// A mine as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct MineMeta {
    /// 12-digit code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Province code.
    pub province: String,
    /// City code.
    pub city: String,
    /// County code.
    pub county: String,
    /// Declared status.
    pub status: MineStatus,
    /// Its points.
    pub points: Vec<PointIdx>,
    /// The shard that owns its state.
    pub shard: usize,
    /// Silence after which the whole mine is offline, ms (3 × its shortest
    /// polling period).
    pub offline_after_ms: i64,
    /// While the mine was heard from within this window, a silent point is
    /// its own fault, not the mine's (1.5 × its shortest polling period).
    pub alive_window_ms: i64,
    /// The approved maximum of people underground, if declared.
    pub approved_headcount: Option<u32>,
    /// Its electricity feed.
    pub power: PowerMeta,
    /// Its electronic seals.
    pub seal: SealMeta,
}

/// A point as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct PointMeta {
    /// Point code.
    pub code: String,
    /// Its mine.
    pub mine: MineIdx,
    /// Sensor type.
    pub sensor: SensorType,
    /// Location class.
    pub location: LocationClass,
    /// Install location in words.
    pub place: String,
    /// Unit.
    pub unit: String,
    /// Measuring range.
    pub range: Option<[f64; 2]>,
    /// Polling period, ms.
    pub polling_ms: i64,
    /// Silence after which the point is offline, ms.
    pub offline_after_ms: i64,
    /// Effective over-limit levels; `None` where no over-limit rule runs.
    pub limits: Option<Limits>,
    /// The mine's declared (alarm, power-off, restore) levels.
    pub declared: (Option<f64>, Option<f64>, Option<f64>),
    /// Index of this point within its shard's state.
    pub local: usize,
    /// Substation (分站) code, when known (national files).
    pub substation: Option<String>,
    /// The air path (face or heading) the point sits on, taken from the
    /// leading number of its install location ("1101回风巷" → 1101); points
    /// of one mine with the same number are neighbours on one air path.
    pub air_path: Option<u32>,
}

/// The air path number at the start of an install location: its leading
/// run of at least three ASCII digits ("1101上隅角" → 1101), if any.
pub fn air_path_of(place: &str) -> Option<u32> {
    let digits: &str = &place[..place
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(place.len())];
    if digits.len() >= 3 && digits.len() <= 9 {
        digits.parse().ok()
    } else {
        None
    }
}

/// Air-path numbers for points joined only by a CDDY relation (no number in
/// any of their install locations) start here; a number read from an
/// install location has at most nine digits, so the two never meet.
pub const RELATED_PATH_BASE: u32 = 1_000_000_000;

/// The point codes a CDDY `relations` field names (关联关系: the points a
/// sensor works with, such as the feed sensor of the power it cuts), those
/// of mine `mine` only. Codes may be separated by commas (also `，`), `、`,
/// `&`, `|`, `/`, `+` or spaces.
pub fn related_codes(field: &str, mine: &str) -> Vec<String> {
    field
        .split(|c: char| {
            matches!(c, ',' | '，' | '、' | '&' | '|' | '/' | '+') || c.is_whitespace()
        })
        .filter(|t| t.len() > mine.len() && t.starts_with(mine))
        .map(str::to_string)
        .collect()
}

/// A point defined at run time (from a CDDY file).
#[derive(Debug, Clone, PartialEq)]
pub struct PointDef {
    /// Point code.
    pub code: String,
    /// Sensor type.
    pub sensor: SensorType,
    /// Location class (guessed from the install location when not given).
    pub location: LocationClass,
    /// Install location in words.
    pub place: String,
    /// Unit.
    pub unit: String,
    /// Measuring range.
    pub range: Option<[f64; 2]>,
    /// Declared (alarm, power-off, restore) levels.
    pub declared: (Option<f64>, Option<f64>, Option<f64>),
    /// Substation code.
    pub substation: Option<String>,
}

/// What [`Registry::upsert_point`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// A new point, with its index.
    Added(PointIdx),
    /// An existing point whose definition changed.
    Updated(PointIdx),
    /// An existing point, unchanged.
    Unchanged(PointIdx),
    /// The code belongs to a point of another mine; nothing was changed.
    OtherMine(PointIdx),
}

/// Everything the pipeline needs to know about mines and points.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Mines by index.
    pub mines: Vec<MineMeta>,
    /// Points by index.
    pub points: Vec<PointMeta>,
    /// Number of shards.
    pub shards: usize,
    /// The threshold rules (for points defined at run time).
    pub rules: RulesConfig,
    /// Knobs of the data-anomaly and falsification detectors.
    pub detect: DetectConfig,
    /// Knobs of the electricity-use and seal detectors.
    pub activity: ActivityConfig,
    /// Counts the changes [`SharedRegistry::update`] published (0 as
    /// built): a shard refreshes what it copied from the registry when it
    /// sees another number.
    pub generation: u64,
    /// Default polling period of each mine, ms (for points defined at run
    /// time).
    mine_polling_ms: Vec<i64>,
    /// Next free local index per shard.
    next_local: Vec<usize>,
    mine_by_code: CodeMap<MineIdx>,
    point_by_code: CodeMap<PointIdx>,
}

/// Codes to indexes. Looked up once per reading on the ingest path, so
/// with a fast hash (foldhash, seeded per process) rather than SipHash; its
/// keys come from the config, not from the network.
type CodeMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// The rule's levels for a sensor at a location (with `[rules]` overrides),
/// or `None` where the rules name none.
pub fn rule_limits(
    rules: &RulesConfig,
    sensor: SensorType,
    location: LocationClass,
) -> Option<rules::MethaneLevels> {
    match sensor.gas()? {
        Gas::Methane => rules
            .methane
            .get(location.key())
            .copied()
            .or_else(|| rules::methane_default(location)),
        Gas::CarbonMonoxide => {
            let co = rules.co.unwrap_or(CO_DEFAULT);
            Some(rules::MethaneLevels {
                alarm: co.alarm,
                power_off: None,
                restore: co.restore,
            })
        }
    }
}

fn default_unit(sensor: SensorType) -> &'static str {
    match sensor.gas() {
        Some(Gas::Methane) => "%",
        Some(Gas::CarbonMonoxide) => "ppm",
        None => match sensor {
            SensorType::PipeMethane => "%",
            SensorType::Other(2) => "m/s",
            SensorType::Other(3) => "℃",
            SensorType::Other(12) | SensorType::Other(13) => "%",
            SensorType::Other(14) => "mg/m3",
            _ => "",
        },
    }
}

fn default_range(sensor: SensorType) -> Option<[f64; 2]> {
    match sensor {
        SensorType::Methane => Some([0.0, 4.0]),
        SensorType::HighLowMethane | SensorType::LaserMethane | SensorType::PipeMethane => {
            Some([0.0, 100.0])
        }
        SensorType::CarbonMonoxide => Some([0.0, 1000.0]),
        _ => None,
    }
}

fn secs_to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

/// The effective limits of a point: the rule for its location, or the
/// declared levels where no rule applies.
pub fn effective_limits(
    rules: &RulesConfig,
    sensor: SensorType,
    location: LocationClass,
    declared: (Option<f64>, Option<f64>, Option<f64>),
    range: Option<[f64; 2]>,
) -> Option<Limits> {
    let hold_ms = secs_to_ms(rules.restore_hold_secs as f64);
    let co = rules.co.unwrap_or(CO_DEFAULT);
    let (alarm, power_off, restore) = declared;
    match (sensor.gas(), rule_limits(rules, sensor, location)) {
        (Some(gas), Some(rule)) => Some(Limits {
            gas,
            alarm: rule.alarm,
            power_off: rule.power_off,
            restore: rule.restore,
            evacuate: match gas {
                Gas::Methane => rule.power_off,
                Gas::CarbonMonoxide => Some(co.evacuate),
            },
            hold_ms,
            from_rule: true,
            fault_above: fault_above(gas, range),
        }),
        (Some(gas), None) => alarm.map(|alarm| Limits {
            gas,
            alarm,
            power_off,
            restore: restore.unwrap_or(alarm).min(alarm),
            evacuate: power_off,
            hold_ms,
            from_rule: false,
            fault_above: fault_above(gas, range),
        }),
        (None, _) => None,
    }
}

/// The unit a sensor type reports in, when none is given.
pub fn unit_of(sensor: SensorType) -> &'static str {
    default_unit(sensor)
}

impl Registry {
    /// Builds the registry from a config that [`crate::config::validate`]
    /// accepted. `shards` is the number of detector shards (at least 1).
    pub fn build(config: &Config, shards: usize) -> Registry {
        let shards = shards.max(1);
        let mut mine_polling_ms = Vec::with_capacity(config.mines.len());
        let mut mines = Vec::with_capacity(config.mines.len());
        // Sized once: grown by doubling, 600,000 points' definitions took
        // up to 1.7 times their size (≈ 200 bytes a point more).
        let configured: usize = config.mines.iter().map(|m| m.points.len()).sum();
        let mut points = Vec::with_capacity(configured);
        let mut mine_by_code =
            CodeMap::with_capacity_and_hasher(config.mines.len(), Default::default());
        let mut point_by_code = CodeMap::with_capacity_and_hasher(configured, Default::default());
        let mut next_local = vec![0usize; shards];
        for (mi, mc) in config.mines.iter().enumerate() {
            let shard = mi % shards;
            let mut mine = MineMeta {
                code: mc.code.clone(),
                name: mc.name.clone(),
                province: mc.province.clone(),
                city: mc.city.clone(),
                county: mc.county.clone(),
                status: mc.status,
                points: Vec::with_capacity(mc.points.len()),
                shard,
                offline_after_ms: 0,
                alive_window_ms: 0,
                approved_headcount: mc.approved_headcount,
                power: activity::power_meta(mc.power.as_ref(), &config.activity),
                seal: activity::seal_meta(mc.seal.as_ref(), &config.activity),
            };
            let mut min_polling = i64::MAX;
            for pc in &mc.points {
                let (Some(sensor), Some(location)) = (
                    SensorType::parse(&pc.sensor),
                    LocationClass::parse(&pc.location),
                ) else {
                    continue;
                };
                let polling_ms = secs_to_ms(pc.polling_secs.unwrap_or(mc.polling_secs));
                min_polling = min_polling.min(polling_ms);
                let offline_after_ms = pc
                    .offline_after_secs
                    .map(secs_to_ms)
                    .unwrap_or(3 * polling_ms);
                let range = pc.range.or_else(|| default_range(sensor));
                let limits = effective_limits(
                    &config.rules,
                    sensor,
                    location,
                    (pc.alarm, pc.power_off, pc.restore),
                    range,
                );
                let idx = points.len() as PointIdx;
                point_by_code.insert(pc.code.clone(), idx);
                mine.points.push(idx);
                points.push(PointMeta {
                    code: pc.code.clone(),
                    mine: mi as MineIdx,
                    sensor,
                    location,
                    place: pc.place.clone().unwrap_or_default(),
                    unit: pc
                        .unit
                        .clone()
                        .unwrap_or_else(|| default_unit(sensor).to_string()),
                    range,
                    polling_ms,
                    offline_after_ms,
                    limits,
                    declared: (pc.alarm, pc.power_off, pc.restore),
                    local: next_local[shard],
                    substation: pc.substation.clone(),
                    air_path: pc
                        .air_path
                        .or_else(|| pc.place.as_deref().and_then(air_path_of)),
                });
                next_local[shard] += 1;
            }
            if min_polling == i64::MAX {
                min_polling = secs_to_ms(mc.polling_secs);
            }
            mine.offline_after_ms = 3 * min_polling;
            mine.alive_window_ms = min_polling + min_polling / 2;
            mine_by_code.insert(mc.code.clone(), mi as MineIdx);
            mine_polling_ms.push(secs_to_ms(mc.polling_secs));
            mines.push(mine);
        }
        Registry {
            mines,
            points,
            shards,
            rules: config.rules.clone(),
            detect: config.detect.clone(),
            activity: config.activity.clone(),
            generation: 0,
            mine_polling_ms,
            next_local,
            mine_by_code,
            point_by_code,
        }
    }

    /// Adds a point to mine `mine`, or updates its definition. A point
    /// first configured in the file keeps its location class and polling
    /// period; its declared levels, unit, range, place and substation follow
    /// the definition.
    pub fn upsert_point(&mut self, mine: MineIdx, def: PointDef) -> Upsert {
        if let Some(idx) = self.point(&def.code) {
            let rules = &self.rules;
            let p = &mut self.points[idx as usize];
            if p.mine != mine {
                return Upsert::OtherMine(idx);
            }
            let mut next = p.clone();
            next.sensor = def.sensor;
            next.place = def.place;
            next.air_path = air_path_of(&next.place).or(next.air_path);
            next.unit = def.unit;
            next.range = def.range.or(next.range);
            next.declared = def.declared;
            next.substation = def.substation;
            next.limits =
                effective_limits(rules, next.sensor, next.location, next.declared, next.range);
            if next.sensor == p.sensor
                && next.place == p.place
                && next.unit == p.unit
                && next.range == p.range
                && next.declared == p.declared
                && next.substation == p.substation
            {
                return Upsert::Unchanged(idx);
            }
            *p = next;
            return Upsert::Updated(idx);
        }
        let m = &mut self.mines[mine as usize];
        let polling_ms = self.mine_polling_ms[mine as usize];
        let idx = self.points.len() as PointIdx;
        let local = self.next_local[m.shard];
        self.next_local[m.shard] += 1;
        m.points.push(idx);
        if m.points.len() == 1 || 3 * polling_ms < m.offline_after_ms {
            m.offline_after_ms = 3 * polling_ms;
            m.alive_window_ms = polling_ms + polling_ms / 2;
        }
        self.point_by_code.insert(def.code.clone(), idx);
        let range = def.range.or_else(|| default_range(def.sensor));
        self.points.push(PointMeta {
            limits: effective_limits(&self.rules, def.sensor, def.location, def.declared, range),
            code: def.code,
            mine,
            sensor: def.sensor,
            location: def.location,
            unit: def.unit,
            range,
            polling_ms,
            offline_after_ms: 3 * polling_ms,
            declared: def.declared,
            local,
            substation: def.substation,
            air_path: air_path_of(&def.place),
            place: def.place,
        });
        Upsert::Added(idx)
    }

    /// Puts point `code` of mine `mine` and the known points of that mine
    /// it names as `related` on one air path, so that the neighbours and
    /// feed-interlock rules see them together: the path of the first of
    /// them that has one (from its install location or the config), else
    /// one made from the smallest of their codes ([`RELATED_PATH_BASE`] and
    /// up). Only points without a path get it. True when one changed.
    pub fn relate(&mut self, mine: MineIdx, code: &str, related: &[String]) -> bool {
        let Some(first) = self.point(code) else {
            return false;
        };
        let mut group = vec![first];
        for c in related {
            if let Some(p) = self.point(c)
                && self.points[p as usize].mine == mine
                && !group.contains(&p)
            {
                group.push(p);
            }
        }
        if group.len() < 2 || self.points[first as usize].mine != mine {
            return false;
        }
        let path = group
            .iter()
            .find_map(|&p| self.points[p as usize].air_path)
            .unwrap_or_else(|| {
                let smallest = group
                    .iter()
                    .map(|&p| self.points[p as usize].code.as_str())
                    .min()
                    .unwrap_or(code);
                let span = u64::from(u32::MAX - RELATED_PATH_BASE);
                RELATED_PATH_BASE + (stable_hash(&[smallest.as_bytes()]) % span) as u32
            });
        let mut changed = false;
        for &p in &group {
            let meta = &mut self.points[p as usize];
            if meta.air_path.is_none() {
                meta.air_path = Some(path);
                changed = true;
            }
        }
        changed
    }

    /// The mine with this code.
    pub fn mine(&self, code: &str) -> Option<MineIdx> {
        self.mine_by_code.get(code).copied()
    }

    /// Sets the declared status of the mine with this code; true when it
    /// changed (false also for an unknown mine).
    pub fn set_mine_status(&mut self, code: &str, status: MineStatus) -> bool {
        match self.mine(code).and_then(|m| self.mines.get_mut(m as usize)) {
            Some(m) if m.status != status => {
                m.status = status;
                true
            }
            _ => false,
        }
    }

    /// The point with this code.
    pub fn point(&self, code: &str) -> Option<PointIdx> {
        self.point_by_code.get(code).copied()
    }

    /// Mines owned by one shard, in index order.
    pub fn mines_of_shard(&self, shard: usize) -> impl Iterator<Item = MineIdx> + '_ {
        self.mines
            .iter()
            .enumerate()
            .filter(move |(_, m)| m.shard == shard)
            .map(|(i, _)| i as MineIdx)
    }

    /// Number of points owned by one shard.
    pub fn points_of_shard(&self, shard: usize) -> usize {
        self.mines_of_shard(shard)
            .map(|m| self.mines[m as usize].points.len())
            .sum()
    }
}

/// The registry as the running daemon shares it: readers take a snapshot
/// (lock-free) per batch; the rare writer (a CDDY file) replaces it whole.
#[derive(Clone)]
pub struct SharedRegistry {
    current: Arc<ArcSwap<Registry>>,
    writer: Arc<Mutex<()>>,
}

impl SharedRegistry {
    /// Shares `registry`.
    pub fn new(registry: Registry) -> SharedRegistry {
        SharedRegistry {
            current: Arc::new(ArcSwap::from_pointee(registry)),
            writer: Arc::new(Mutex::new(())),
        }
    }

    /// The current registry.
    pub fn snapshot(&self) -> Arc<Registry> {
        self.current.load_full()
    }

    /// Applies `change` to a copy of the registry and publishes the copy
    /// when `change` reports that it changed something.
    pub fn update<R>(&self, change: impl FnOnce(&mut Registry) -> (R, bool)) -> R {
        let _one_writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Registry::clone(&self.current.load());
        let (result, changed) = change(&mut next);
        if changed {
            next.generation += 1;
            self.current.store(Arc::new(next));
        }
        result
    }
}

impl From<Registry> for SharedRegistry {
    fn from(r: Registry) -> SharedRegistry {
        SharedRegistry::new(r)
    }
}

impl From<Arc<Registry>> for SharedRegistry {
    fn from(r: Arc<Registry>) -> SharedRegistry {
        SharedRegistry {
            current: Arc::new(ArcSwap::new(r)),
            writer: Arc::new(Mutex::new(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn point_definitions_take_their_size_not_a_doubled_buffer() {
        // 2,100 points: a buffer grown by doubling would hold 4,096.
        let spec = crate::simulators::ProvinceSpec {
            mines: 70,
            points: 30,
            polling_secs: 5.0,
        };
        let config = crate::simulators::province(spec);
        let r = Registry::build(&config, 2);
        let n = r.points.len();
        assert_eq!(n, 2_100);
        let strings: usize = r
            .points
            .iter()
            .map(|p| p.code.capacity() + p.place.capacity() + p.unit.capacity())
            .sum();
        let table = r.point_by_code.capacity() * (std::mem::size_of::<(String, PointIdx)>() + 1);
        let keys: usize = r.point_by_code.keys().map(String::capacity).sum();
        let bytes = r.points.capacity() * std::mem::size_of::<PointMeta>() + strings + table + keys;
        let per_point = bytes / n;
        eprintln!("registry: {per_point} bytes a point");
        // Measured: 406 bytes a point; in buffers grown by doubling, 680.
        assert!(per_point <= 480, "{per_point} bytes a point");
    }

    #[test]
    fn the_fault_line_is_twice_the_range_top_and_never_past_100_percent() {
        let table: [(Gas, Option<[f64; 2]>, f64); 7] = [
            (Gas::Methane, Some([0.0, 4.0]), 8.0),
            (Gas::Methane, Some([0.0, 10.0]), 20.0),
            (Gas::Methane, Some([0.0, 100.0]), 100.0),
            (Gas::Methane, None, 100.0),
            (Gas::CarbonMonoxide, Some([0.0, 1000.0]), 2000.0),
            (Gas::CarbonMonoxide, Some([5.0, 500.0]), 995.0),
            (Gas::CarbonMonoxide, None, 1_000_000.0),
        ];
        for (gas, range, line) in table {
            assert_eq!(fault_above(gas, range), line, "{gas:?} {range:?}");
        }
        // An empty or upside-down range gives the physical bound.
        assert_eq!(fault_above(Gas::Methane, Some([4.0, 4.0])), 100.0);
        // The registry gives every gas point its line.
        let rules = RulesConfig::default();
        let l = effective_limits(
            &rules,
            SensorType::Methane,
            LocationClass::Other,
            (Some(1.0), Some(1.5), None),
            Some([0.0, 4.0]),
        );
        assert_eq!(l.map(|l| l.fault_above), Some(8.0));
    }

    fn def(
        code: &str,
        sensor: SensorType,
        declared: (Option<f64>, Option<f64>, Option<f64>),
    ) -> PointDef {
        PointDef {
            code: code.into(),
            sensor,
            location: LocationClass::Other,
            place: "x".into(),
            unit: "%".into(),
            range: None,
            declared,
            substation: Some("01".into()),
        }
    }

    #[test]
    fn points_can_be_added_and_updated_at_run_time() {
        let (config, _) = parse(
            r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 30
[[mines]]
code = "140121000002"
name = "b"
province = "140000"
city = "140100"
county = "140121"
points = [ { code = "B1", sensor = "0001", location = "face_t1" } ]
"#,
        )
        .expect("valid");
        let shared = SharedRegistry::new(Registry::build(&config, 2));
        let before = shared.snapshot();
        let got = shared.update(|r| {
            let u = r.upsert_point(
                0,
                def("A1", SensorType::Methane, (Some(0.8), Some(1.2), None)),
            );
            (u, true)
        });
        assert_eq!(got, Upsert::Added(1));
        let r = shared.snapshot();
        assert_eq!(before.points.len(), 1, "old snapshots are untouched");
        assert_eq!(r.point("A1"), Some(1));
        assert_eq!(r.points[1].local, 0, "first point of shard 0");
        assert_eq!(r.points[1].offline_after_ms, 90_000);
        assert_eq!(r.mines[0].offline_after_ms, 90_000);
        let l = r.points[1].limits.expect("declared limits");
        assert_eq!((l.alarm, l.restore, l.evacuate), (0.8, 0.8, Some(1.2)));
        let mut r = Registry::clone(&r);
        assert_eq!(
            r.upsert_point(
                0,
                def("A1", SensorType::Methane, (Some(0.8), Some(1.2), None))
            ),
            Upsert::Unchanged(1)
        );
        assert_eq!(
            r.upsert_point(
                0,
                def("A1", SensorType::Methane, (Some(0.9), Some(1.2), None))
            ),
            Upsert::Updated(1)
        );
        assert_eq!(r.points[1].limits.expect("limits").alarm, 0.9);
        assert_eq!(
            r.upsert_point(0, def("B1", SensorType::Methane, (None, None, None))),
            Upsert::OtherMine(0)
        );
        // A configured point keeps its location class: the rule still governs.
        assert_eq!(
            r.upsert_point(1, def("B1", SensorType::Methane, (Some(2.0), None, None))),
            Upsert::Updated(0)
        );
        assert_eq!(r.points[0].limits.expect("rule").alarm, 1.0);
    }

    #[test]
    fn air_paths_come_from_the_config_the_place_or_cddy_relations() {
        let (config, _) = parse(
            r#"
[[mines]]
code = "140121000001"
name = "a"
province = "140000"
city = "140100"
county = "140121"
points = [
  { code = "14012100000101MN0001001", sensor = "0001", location = "face_t1", place = "1101工作面" },
  { code = "14012100000101MN0001002", sensor = "0001", location = "face_t2", place = "回风巷", air_path = 1101 },
  { code = "14012100000101MN0001003", sensor = "0001", location = "face_t0", place = "上隅角" },
]
"#,
        )
        .expect("valid");
        let mut r = Registry::build(&config, 1);
        assert_eq!(r.points[0].air_path, Some(1101), "from the place");
        assert_eq!(r.points[1].air_path, Some(1101), "from the config");
        assert_eq!(r.points[2].air_path, None);
        // CDDY: the upper corner names the face sensor and a feed sensor
        // (defined in the same file): both join the face's path.
        let mut feed = def(
            "14012100000101KG1015009",
            SensorType::Other(1015),
            (None, None, None),
        );
        feed.place = "馈电".into();
        r.upsert_point(0, feed);
        let related = related_codes(
            "14012100000101MN0001001，14012100000101KG1015009 140121000002XX",
            "140121000001",
        );
        assert_eq!(related.len(), 2, "codes of this mine only: {related:?}");
        assert!(r.relate(0, "14012100000101MN0001003", &related));
        assert_eq!(r.points[2].air_path, Some(1101));
        assert_eq!(r.points[3].air_path, Some(1101));
        assert!(
            !r.relate(0, "14012100000101MN0001003", &related),
            "nothing new"
        );
        // Two points on no numbered path: a path of their own, the same
        // whichever names the other.
        let mut a = def(
            "14012100000101MN0001010",
            SensorType::Methane,
            (None, None, None),
        );
        a.place = "掘进工作面".into();
        let mut b = def(
            "14012100000101MN0001011",
            SensorType::Methane,
            (None, None, None),
        );
        b.place = "掘进回风".into();
        r.upsert_point(0, a);
        r.upsert_point(0, b);
        let mut other = r.clone();
        assert!(r.relate(
            0,
            "14012100000101MN0001010",
            &["14012100000101MN0001011".into()]
        ));
        assert!(other.relate(
            0,
            "14012100000101MN0001011",
            &["14012100000101MN0001010".into()]
        ));
        let path = r.points[4].air_path.expect("a path");
        assert!(path >= RELATED_PATH_BASE);
        assert_eq!(r.points[5].air_path, Some(path));
        assert_eq!(other.points[4].air_path, Some(path));
        // An unknown or foreign code relates nothing.
        assert!(!r.relate(0, "nope", &["14012100000101MN0001001".into()]));
        assert!(!r.relate(0, "14012100000101MN0001001", &["nope".into()]));
    }

    #[test]
    fn limits_follow_rules_and_declarations() {
        let (config, _) = parse(
            r#"
[rules]
restore_hold_secs = 5
[rules.methane.face_intake]
alarm = 0.4
power_off = 0.4
restore = 0.4

[[mines]]
code = "140121000001"
name = "m"
province = "140000"
city = "140100"
county = "140121"
points = [
  { code = "14012100000101MN0001001", sensor = "0001", location = "face_t1" },
  { code = "14012100000101MN0001002", sensor = "0001", location = "face_intake" },
  { code = "14012100000101MN0004003", sensor = "0004", location = "face_t2" },
  { code = "14012100000101MN0001004", sensor = "0001", location = "other", alarm = 0.8, power_off = 1.2 },
  { code = "14012100000101MN0003005", sensor = "0003", location = "other", polling_secs = 5 },
]
"#,
        )
        .expect("valid");
        let r = Registry::build(&config, 2);
        let l = |i: usize| r.points[i].limits;
        let t1 = l(0).unwrap();
        assert_eq!((t1.alarm, t1.evacuate, t1.hold_ms), (1.0, Some(1.5), 5000));
        assert_eq!(l(1).unwrap().alarm, 0.4);
        let co = l(2).unwrap();
        assert_eq!(
            (co.alarm, co.evacuate, co.gas),
            (24.0, Some(24.0), Gas::CarbonMonoxide)
        );
        let declared = l(3).unwrap();
        assert!(!declared.from_rule);
        assert_eq!(
            (declared.alarm, declared.restore, declared.evacuate),
            (0.8, 0.8, Some(1.2))
        );
        assert_eq!(l(4), None);
        assert_eq!(r.points[4].offline_after_ms, 15_000);
        assert_eq!(r.points[0].offline_after_ms, 90_000);
        assert_eq!(r.mines[0].offline_after_ms, 15_000);
        assert_eq!(r.point("14012100000101MN0004003"), Some(2));
        assert_eq!(r.mine("140121000001"), Some(0));
        assert_eq!(r.points_of_shard(0), 5);
        assert_eq!(r.points_of_shard(1), 0);
    }
}
