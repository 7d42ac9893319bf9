//! How strong each audit finding is: a number in [0, 1] computed again
//! from the archived readings of the finding's evidence window (not taken
//! from the detector's state), with a sentence in English and Chinese that
//! gives the figures it came from.
//!
//! Most measures compare a quantity with the detector's own threshold
//! through `sat(x, ref) = x / (x + ref)`: 0.5 when the quantity is exactly
//! at the threshold, 0.75 at three times it, 0.9 at nine times. Shares are
//! used as they are. docs/ARCHIVE.md ("Audit") lists every measure; in short:
//!
//! | reason | strength |
//! |---|---|
//! | `out_of_range` | share of the episode's readings out of range (or fault / over-range status) |
//! | `flat_line` | `sat(longest unchanged run, flat_secs)` |
//! | `spike` | `sat(z, spike_k)`, z = peak distance from the median of the 10 minutes before, in robust deviations |
//! | `rate` | `sat(r, 1)`, r = the steepest change / the steepest a sensor with T90 = `response_secs` can show |
//! | `timestamp` | `sat(n, 1)`, n = readings with conflicting duplicates, beyond the allowed lateness or from the future |
//! | `hugging` | share in [`hug_band` × alarm, alarm) × (1 − share at or above alarm) over the window |
//! | `drop_after_approach` | min(1, highest value before / alarm) × share of the episode hidden or at zero |
//! | `interlock` | ½ `sat(time over power-off without its status — or, feed abnormal, with it, interlock_grace_secs)` + ½ `sat(peak − power-off, 0.1 × power-off)` |
//! | `uniform_noise` | clamp((3 − kurtosis) / 1.2) × (1 − abs(lag-1 autocorrelation)) |
//! | `replayed` | `sat(longest run repeating an earlier window, 64 readings)` |
//! | `neighbours_disagree` | clamp(1 − own rise / neighbours' rise) × min(1, neighbours' rise / (2 × neighbours_rise)) |
//! | `offset` | `sat(neighbours' change of mean − own change of mean, 2 × offset_min)`, means over the evidence before the episode and over the episode |
//! | `sensitivity` | as `neighbours_disagree`: clamp(1 − own rise / neighbours' rise) × min(1, neighbours' rise / (2 × neighbours_rise)) |
//!
//! Everything is computed in a fixed order from sorted readings, so the
//! same archive gives the same strengths to the last bit.

use crate::config::PointMeta;
use crate::config::detect::DetectConfig;
use crate::model::{Flag, Millis, status};
use crate::review::replay::ArchivedReading;

/// What a measure concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Strength in [0, 1], rounded to three decimals.
    pub strength: f64,
    /// The figures, in English.
    pub detail: String,
    /// The same, in Chinese.
    pub detail_zh: String,
    /// Readings of the point in the evidence window.
    pub readings: usize,
}

/// The readings a measure sees and the spans that matter.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// Readings of the point, sorted by event time (a margin around the
    /// evidence window included).
    pub readings: &'a [ArchivedReading],
    /// The evidence window `[from, to)`: the episode and what the detector
    /// looked back at to raise it.
    pub evidence: (Millis, Millis),
    /// The episode `[from, to)` (to: its clearing reading, or just after
    /// the point's last reading while still open).
    pub episode: (Millis, Millis),
}

/// Where a replayed window's values were found earlier.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaySource {
    /// Longest run of readings (in the evidence window) covered by
    /// windows that repeat an earlier window.
    pub run: usize,
    /// Point code of the source most runs came from.
    pub source: String,
    /// How much earlier, ms.
    pub offset_ms: Millis,
}

/// What some measures need beyond the point's own readings.
#[derive(Debug, Clone, Copy)]
pub enum Context<'a> {
    /// Nothing more.
    None,
    /// The other points on the same air path: (code, readings).
    Neighbours(&'a [(String, Vec<ArchivedReading>)]),
    /// The earlier windows found for a replayed finding (none: no match in
    /// the archive read).
    Replay(Option<&'a ReplaySource>),
}

/// `x / (x + reference)`: 0.5 at the reference, towards 1 above it.
pub fn sat(x: f64, reference: f64) -> f64 {
    if x.is_nan() || reference.is_nan() || x <= 0.0 || reference <= 0.0 {
        return 0.0;
    }
    x / (x + reference)
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        ((x.clamp(0.0, 1.0)) * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// A duration for people: "45 s", "12 min", "1 h 30 min", "2 d 3 h".
pub fn duration_text(ms: Millis) -> String {
    let s = (ms.max(0) + 500) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => match (s % 86_400) / 3600 {
            0 => format!("{} d", s / 86_400),
            h => format!("{} d {h} h", s / 86_400),
        },
    }
}

/// The same in Chinese: "45 秒", "12 分钟", "1 小时 30 分钟", "2 天 3 小时".
pub fn duration_zh(ms: Millis) -> String {
    duration_text(ms)
        .replace(" min", " 分钟")
        .replace(" s", " 秒")
        .replace(" h", " 小时")
        .replace(" d", " 天")
}

/// Decimals to show a point's values with (methane 2, CO 0, others 2).
pub fn decimals(meta: &PointMeta, cfg: &DetectConfig) -> usize {
    match meta.sensor.gas() {
        Some(g) => {
            let q = cfg.quantum(g);
            if q >= 1.0 {
                0
            } else {
                ((-q.log10()).ceil().max(0.0) as usize).min(4)
            }
        }
        None => 2,
    }
}

/// Readings of `rs` with event time in `[from, to)`, a resend of the same
/// time skipped (the detectors ignore it too).
fn span(rs: &[ArchivedReading], from: Millis, to: Millis) -> Vec<ArchivedReading> {
    let start = rs.partition_point(|r| r.ts < from);
    let mut out: Vec<ArchivedReading> = Vec::new();
    for r in &rs[start..] {
        if r.ts >= to {
            break;
        }
        if out.last().is_some_and(|l| l.ts == r.ts) {
            continue;
        }
        out.push(*r);
    }
    out
}

/// True when a reading carries a measured value.
fn valued(r: &ArchivedReading) -> bool {
    r.status & (status::NOT_A_VALUE | status::CALIBRATION) == 0 && r.value.is_finite()
}

fn values(rs: &[ArchivedReading]) -> Vec<f64> {
    rs.iter().filter(|r| valued(r)).map(|r| r.value).collect()
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn pct(x: f64) -> String {
    format!("{:.0} %", 100.0 * x)
}

/// Measures one finding of `flag` at the point `meta`.
pub fn measure(
    flag: Flag,
    meta: &PointMeta,
    cfg: &DetectConfig,
    w: &Window<'_>,
    context: Context<'_>,
) -> Measured {
    let evidence = span(w.readings, w.evidence.0, w.evidence.1);
    let episode = span(w.readings, w.episode.0, w.episode.1);
    let d = decimals(meta, cfg);
    let unit = meta.unit.as_str();
    let v = |x: f64| format!("{x:.d$} {unit}");
    let (strength, detail, detail_zh) = match flag {
        Flag::OutOfRange => out_of_range(meta, &episode, &v),
        Flag::FlatLine => flat_line(cfg, &evidence, &v),
        Flag::Spike => spike(meta, cfg, w, &episode, &v),
        Flag::Rate => rate(meta, cfg, w, &v),
        Flag::Timestamp => timestamp(cfg, w),
        Flag::Hugging => hugging(meta, cfg, &evidence, &v),
        Flag::DropAfterApproach => drop_after_approach(meta, cfg, w, &episode, &v),
        Flag::Interlock => interlock(meta, cfg, &episode, &v),
        Flag::UniformNoise => uniform_noise(&evidence, &v),
        Flag::Replayed => replayed(&context),
        Flag::NeighboursDisagree => neighbours(cfg, w, &context, &v),
        Flag::Dither => dither(cfg, &evidence, &v),
        Flag::Offset => offset(cfg, w, &context, &v),
        Flag::Sensitivity => neighbours(cfg, w, &context, &v),
    };
    Measured {
        strength: round3(strength),
        detail,
        detail_zh,
        readings: evidence.len(),
    }
}

type Judged = (f64, String, String);

fn out_of_range(
    meta: &PointMeta,
    episode: &[ArchivedReading],
    v: &dyn Fn(f64) -> String,
) -> Judged {
    let bad = |r: &ArchivedReading| {
        if r.status & (status::SENSOR_FAULT | status::OVER_RANGE) != 0 {
            return true;
        }
        if r.status & status::NOT_A_VALUE != 0 {
            return false;
        }
        if !r.value.is_finite() {
            return true;
        }
        match meta.range {
            Some([lo, hi]) => {
                let slack = 0.01 * (hi - lo).abs();
                r.value < lo - slack || r.value > hi + slack
            }
            None => meta.sensor.gas().is_some() && r.value < 0.0,
        }
    };
    let n = episode.len();
    let k = episode.iter().filter(|r| bad(r)).count();
    let share = if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let range = meta.range.map_or("none".to_string(), |[lo, hi]| {
        format!("{} to {}", v(lo), v(hi))
    });
    (
        share,
        format!(
            "{k} of {n} readings out of range, invalid or flagged fault / over range; measuring range {range}"
        ),
        format!("{n} 个读数中 {k} 个超出量程、无效或标记为故障/超量程; 量程 {range}"),
    )
}

fn flat_line(
    cfg: &DetectConfig,
    evidence: &[ArchivedReading],
    v: &dyn Fn(f64) -> String,
) -> Judged {
    // Longest run of valued readings each within flat_epsilon of the
    // run's first value.
    let vals: Vec<&ArchivedReading> = evidence.iter().filter(|r| valued(r)).collect();
    let (mut best, mut best_n, mut best_v) = (0i64, 0usize, f64::NAN);
    let mut i = 0;
    while i < vals.len() {
        let mut j = i + 1;
        while j < vals.len() && (vals[j].value - vals[i].value).abs() <= cfg.flat_epsilon {
            j += 1;
        }
        let len = vals[j - 1].ts - vals[i].ts;
        if len > best {
            (best, best_n, best_v) = (len, j - i, vals[i].value);
        }
        i = j;
    }
    let rule = 1000 * cfg.flat_secs as i64;
    (
        sat(best as f64, rule as f64),
        format!(
            "unchanged at {} for {} ({best_n} readings); the rule flags runs beyond the point's own limit, at least {}",
            v(best_v),
            duration_text(best),
            duration_text(rule)
        ),
        format!(
            "数值保持 {} 不变达 {} ({best_n} 个读数); 规则阈值为该测点自身的限值, 至少 {}",
            v(best_v),
            duration_zh(best),
            duration_zh(rule)
        ),
    )
}

fn dither(cfg: &DetectConfig, evidence: &[ArchivedReading], v: &dyn Fn(f64) -> String) -> Judged {
    // Longest run of valued readings each differing from the one before
    // and equal to the one two before (two values, alternating).
    let vals: Vec<f64> = values(evidence);
    let (mut run, mut best, mut pair) = (0usize, 0usize, (f64::NAN, f64::NAN));
    for i in 2..vals.len() {
        let alternates = vals[i] != vals[i - 1] && vals[i] == vals[i - 2];
        run = if alternates { run + 1 } else { 0 };
        if run > best {
            best = run;
            pair = (vals[i].min(vals[i - 1]), vals[i].max(vals[i - 1]));
        }
    }
    let rule = f64::from(cfg.dither_min_readings);
    (
        sat(best as f64, rule),
        format!(
            "{best} readings in a row alternating between {} and {}; the rule flags {} and more",
            v(pair.0),
            v(pair.1),
            cfg.dither_min_readings
        ),
        format!(
            "连续 {best} 个读数在 {} 与 {} 之间逐次交替; 规则阈值 {} 个",
            v(pair.0),
            v(pair.1),
            cfg.dither_min_readings
        ),
    )
}

fn spike(
    meta: &PointMeta,
    cfg: &DetectConfig,
    w: &Window<'_>,
    episode: &[ArchivedReading],
    v: &dyn Fn(f64) -> String,
) -> Judged {
    let before = span(w.readings, w.episode.0 - BASELINE_MS, w.episode.0);
    let base = sorted(values(&before));
    let m = median(&base);
    let mad = median(&sorted(base.iter().map(|x| (x - m).abs()).collect()));
    let q = meta.sensor.gas().map_or(0.01, |g| cfg.quantum(g));
    let dev = (1.4826 * mad).max(cfg.spike_floor_quanta * q);
    let peak = values(episode)
        .into_iter()
        .max_by(|a, b| (a - m).abs().total_cmp(&(b - m).abs()))
        .unwrap_or(f64::NAN);
    let z = if m.is_finite() && peak.is_finite() {
        (peak - m).abs() / dev
    } else {
        0.0
    };
    (
        sat(z, cfg.spike_k),
        format!(
            "peak {} against a median of {} (robust deviation {}) over the 10 minutes before: {z:.1} deviations; the rule needs {}",
            v(peak),
            v(m),
            v(dev),
            cfg.spike_k
        ),
        format!(
            "峰值 {}, 之前 10 分钟中位数 {} (稳健偏差 {}): 偏离 {z:.1} 倍; 规则阈值 {} 倍",
            v(peak),
            v(m),
            v(dev),
            cfg.spike_k
        ),
    )
}

/// Baseline before a spike, ms.
pub const BASELINE_MS: Millis = 600_000;

fn rate(meta: &PointMeta, cfg: &DetectConfig, w: &Window<'_>, v: &dyn Fn(f64) -> String) -> Judged {
    // The change into the episode's first reading counts: start one
    // polling period (and a bit) earlier.
    let from = w.episode.0 - 2 * meta.polling_ms.max(1000);
    let vals: Vec<ArchivedReading> = span(w.readings, from, w.episode.1)
        .into_iter()
        .filter(valued)
        .collect();
    let span_v = meta.range.map_or(0.0, |[lo, hi]| (hi - lo).abs());
    let q = meta.sensor.gas().map_or(0.01, |g| cfg.quantum(g));
    let (mut ratio, mut jump, mut dt) = (0.0f64, 0.0, 0);
    for p in vals.windows(2) {
        let dt_ms = p[1].ts - p[0].ts;
        if dt_ms <= 0 || span_v <= 0.0 {
            continue;
        }
        let allowed = span_v * 2.3 * dt_ms as f64 / (1000.0 * cfg.response_secs) + 2.0 * q;
        let r = (p[1].value - p[0].value).abs() / allowed;
        if r > ratio {
            (ratio, jump, dt) = (r, p[1].value - p[0].value, dt_ms);
        }
    }
    let slope = span_v * 2.3 / cfg.response_secs;
    (
        sat(ratio, 1.0),
        format!(
            "changed {} in {}: {ratio:.1} × the steepest change a sensor with T90 = {} s can show ({}/s)",
            v(jump),
            duration_text(dt),
            cfg.response_secs,
            v(slope)
        ),
        format!(
            "{} 内变化 {}: 为 T90 = {} 秒传感器最大可能变化 ({}/秒) 的 {ratio:.1} 倍",
            duration_zh(dt),
            v(jump),
            cfg.response_secs,
            v(slope)
        ),
    )
}

fn timestamp(cfg: &DetectConfig, w: &Window<'_>) -> Judged {
    // The readings as archived, resends included: a second reading of the
    // same time with another value is a conflict.
    let start = w.readings.partition_point(|r| r.ts < w.evidence.0);
    let raw: Vec<&ArchivedReading> = w.readings[start..]
        .iter()
        .take_while(|r| r.ts < w.evidence.1)
        .collect();
    let late = 1000 * cfg.allowed_lateness_secs as i64;
    let ahead = 1000 * cfg.max_future_secs as i64;
    let (mut future, mut beyond, mut conflicts) = (0usize, 0usize, 0usize);
    for (i, r) in raw.iter().enumerate() {
        if r.ts - r.arrival > ahead {
            future += 1;
        } else if r.arrival - r.ts > late {
            beyond += 1;
        }
        if i > 0
            && raw[i - 1].ts == r.ts
            && valued(r)
            && valued(raw[i - 1])
            && (raw[i - 1].value - r.value).abs() > cfg.flat_epsilon
        {
            conflicts += 1;
        }
    }
    let n = future + beyond + conflicts;
    (
        sat(n as f64, 1.0),
        format!(
            "{conflicts} reading(s) repeating a time with another value, {future} stamped more than {} ahead of their arrival, {beyond} arriving more than {} after their time",
            duration_text(ahead),
            duration_text(late)
        ),
        format!(
            "{conflicts} 个读数与同一时间的读数数值不同, {future} 个读数时间早于到达时间超过 {}, {beyond} 个读数晚到超过 {}",
            duration_zh(ahead),
            duration_zh(late)
        ),
    )
}

fn hugging(
    meta: &PointMeta,
    cfg: &DetectConfig,
    evidence: &[ArchivedReading],
    v: &dyn Fn(f64) -> String,
) -> Judged {
    let Some(limits) = meta.limits else {
        return (0.0, "no alarm level".into(), "无报警值".into());
    };
    let alarm = limits.alarm;
    let vals = values(evidence);
    let n = vals.len();
    let band = vals
        .iter()
        .filter(|x| **x >= cfg.hug_band * alarm && **x < alarm)
        .count();
    let above = vals.iter().filter(|x| **x >= alarm).count();
    let (bs, ab) = if n == 0 {
        (0.0, 0.0)
    } else {
        (band as f64 / n as f64, above as f64 / n as f64)
    };
    (
        bs * (1.0 - ab),
        format!(
            "{} of {n} readings in [{}, {}), {above} at or above the alarm line",
            pct(bs),
            v(cfg.hug_band * alarm),
            v(alarm)
        ),
        format!(
            "{n} 个读数中 {} 位于 [{}, {}), {above} 个达到或超过报警值",
            pct(bs),
            v(cfg.hug_band * alarm),
            v(alarm)
        ),
    )
}

fn drop_after_approach(
    meta: &PointMeta,
    cfg: &DetectConfig,
    w: &Window<'_>,
    episode: &[ArchivedReading],
    v: &dyn Fn(f64) -> String,
) -> Judged {
    let Some(limits) = meta.limits else {
        return (0.0, "no alarm level".into(), "无报警值".into());
    };
    let alarm = limits.alarm;
    let before = span(
        w.readings,
        w.episode.0 - 1000 * cfg.approach_secs as i64,
        w.episode.0,
    );
    let high = values(&before).into_iter().fold(f64::NAN, f64::max);
    // How far the value reached, as a share of the line (over 100 % for
    // a value over it, as the text says); the strength caps it at 1.
    let reached = if high.is_finite() { high / alarm } else { 0.0 };
    let approach = reached.min(1.0);
    let floor = cfg.drop_zero_fraction * alarm;
    let hiding = status::CALIBRATION | status::NOT_POLLED | status::PAUSED;
    let n = episode.len();
    let hidden = episode
        .iter()
        .filter(|r| r.status & hiding != 0 || (valued(r) && r.value <= floor))
        .count();
    let share = if n == 0 {
        0.0
    } else {
        hidden as f64 / n as f64
    };
    (
        approach.max(0.0) * share,
        format!(
            "reached {} ({} of the {} alarm line) within {} before; then {hidden} of {n} readings at or below {} or marked calibration / not polled / paused",
            v(high),
            pct(reached),
            v(alarm),
            duration_text(1000 * cfg.approach_secs as i64),
            v(floor)
        ),
        format!(
            "之前 {} 内达到 {} (报警值 {} 的 {}); 随后 {n} 个读数中 {hidden} 个降至 {} 以下或标记为标校/未巡检/暂停",
            duration_zh(1000 * cfg.approach_secs as i64),
            v(high),
            v(alarm),
            pct(reached),
            v(floor)
        ),
    )
}

fn interlock(
    meta: &PointMeta,
    cfg: &DetectConfig,
    episode: &[ArchivedReading],
    v: &dyn Fn(f64) -> String,
) -> Judged {
    let Some(power_off) = meta.limits.and_then(|l| l.power_off) else {
        return (0.0, "no power-off level".into(), "无断电值".into());
    };
    let mut over: Vec<&ArchivedReading> = episode
        .iter()
        .filter(|r| valued(r) && r.value >= power_off && r.status & status::POWER_OFF == 0)
        .collect();
    // Every reading carried the power-off status: the detector found the
    // air path's feed sensor still reading the power live (feed abnormal).
    let feed = over.is_empty();
    if feed {
        over = episode
            .iter()
            .filter(|r| valued(r) && r.value >= power_off)
            .collect();
    }
    let (Some(first), Some(last)) = (over.first(), over.last()) else {
        return (
            0.0,
            format!(
                "no reading at or above the {} power-off level without its status",
                v(power_off)
            ),
            format!("无达到断电值 {} 且无断电状态的读数", v(power_off)),
        );
    };
    let lasted = last.ts - first.ts + meta.polling_ms.max(0);
    let peak = over.iter().map(|r| r.value).fold(f64::NAN, f64::max);
    let grace = 1000 * cfg.interlock_grace_secs as i64;
    let s = 0.5 * sat(lasted as f64, grace as f64) + 0.5 * sat(peak - power_off, 0.1 * power_off);
    if feed {
        return (
            s,
            format!(
                "{} readings at or above the {} power-off level with the power-off status (2) while the air path's feed sensor still read the power live (feed abnormal) for {} (allowed {}), peak {}",
                over.len(),
                v(power_off),
                duration_text(lasted),
                duration_text(grace),
                v(peak)
            ),
            format!(
                "{} 个读数达到断电值 {} 且有断电状态 (2), 但同一风路的馈电传感器仍显示有电 (馈电异常), 持续 {} (允许 {}), 峰值 {}",
                over.len(),
                v(power_off),
                duration_zh(lasted),
                duration_zh(grace),
                v(peak)
            ),
        );
    }
    (
        s,
        format!(
            "{} readings at or above the {} power-off level without the power-off status (2) for {} (allowed {}), peak {}",
            over.len(),
            v(power_off),
            duration_text(lasted),
            duration_text(grace),
            v(peak)
        ),
        format!(
            "{} 个读数达到断电值 {} 但无断电状态 (2), 持续 {} (允许 {}), 峰值 {}",
            over.len(),
            v(power_off),
            duration_zh(lasted),
            duration_zh(grace),
            v(peak)
        ),
    )
}

/// Kurtosis and lag-1 autocorrelation of a series (NaN when too short or
/// constant).
pub fn shape(vals: &[f64]) -> (f64, f64) {
    let n = vals.len() as f64;
    if vals.len() < 4 {
        return (f64::NAN, f64::NAN);
    }
    let mean = vals.iter().sum::<f64>() / n;
    let m2 = vals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    if m2 <= 1e-12 {
        return (f64::NAN, f64::NAN);
    }
    let m4 = vals.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
    let c1 = vals
        .windows(2)
        .map(|p| (p[0] - mean) * (p[1] - mean))
        .sum::<f64>();
    (m4 / (m2 * m2), c1 / (n * m2))
}

fn uniform_noise(evidence: &[ArchivedReading], v: &dyn Fn(f64) -> String) -> Judged {
    let vals = values(evidence);
    let (k, r1) = shape(&vals);
    let lo = vals.iter().copied().fold(f64::NAN, f64::min);
    let hi = vals.iter().copied().fold(f64::NAN, f64::max);
    let s = if k.is_finite() && r1.is_finite() {
        ((3.0 - k) / 1.2).clamp(0.0, 1.0) * (1.0 - r1.abs().min(1.0))
    } else {
        0.0
    };
    (
        s,
        format!(
            "kurtosis {k:.2} (uniform 1.80, a real sensor 3 or more) and lag-1 autocorrelation {r1:.2} (a real sensor drifts: near 1) over {} readings between {} and {}",
            vals.len(),
            v(lo),
            v(hi)
        ),
        format!(
            "{} 个读数 ({} 至 {}) 峰度 {k:.2} (均匀分布 1.80, 真实传感器不低于 3), 一阶自相关 {r1:.2} (真实数据缓慢漂移, 接近 1)",
            vals.len(),
            v(lo),
            v(hi)
        ),
    )
}

fn replayed(context: &Context<'_>) -> Judged {
    match context {
        Context::Replay(Some(m)) => (
            sat(m.run as f64, 64.0),
            format!(
                "{} readings in a row repeat the values of point {} from {} earlier",
                m.run,
                m.source,
                duration_text(m.offset_ms)
            ),
            format!(
                "连续 {} 个读数与测点 {} {}前的数据相同",
                m.run,
                m.source,
                duration_zh(m.offset_ms)
            ),
        ),
        _ => (
            0.0,
            "the repeated window was not found again in the archive read (it may lie outside --from/--to or --mine)".into(),
            "在所读取的归档范围内未找到被重复的原始数据 (可能在 --from/--to 或 --mine 之外)".into(),
        ),
    }
}

/// Minute means of a series: (minute number, mean).
fn minute_means(rs: &[ArchivedReading]) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64, u32)> = Vec::new();
    for r in rs.iter().filter(|r| valued(r)) {
        let m = r.ts.div_euclid(60_000);
        match out.last_mut() {
            Some((lm, sum, n)) if *lm == m => {
                *sum += r.value;
                *n += 1;
            }
            _ => out.push((m, r.value, 1)),
        }
    }
    out.into_iter()
        .map(|(m, s, n)| (m, s / f64::from(n)))
        .collect()
}

/// Largest rise of a series at the minutes of `[from, to)`: the mean of
/// three minutes against the mean of three minutes `window` minutes
/// earlier.
fn largest_rise(rs: &[ArchivedReading], from: Millis, to: Millis, window: i64) -> f64 {
    let means = minute_means(rs);
    let at = |m: i64| -> Option<f64> {
        let xs: Vec<f64> = means
            .iter()
            .filter(|(k, _)| (m - 2..=m).contains(k))
            .map(|(_, x)| *x)
            .collect();
        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
    };
    let mut best = f64::NAN;
    for m in from.div_euclid(60_000)..=(to - 1).div_euclid(60_000) {
        if let (Some(now), Some(then)) = (at(m), at(m - window)) {
            best = best.max(now - then);
        }
    }
    best
}

fn neighbours(
    cfg: &DetectConfig,
    w: &Window<'_>,
    context: &Context<'_>,
    v: &dyn Fn(f64) -> String,
) -> Judged {
    let window = i64::from(cfg.neighbours_window_mins.max(1));
    let (from, to) = w.episode;
    let own = largest_rise(w.readings, from, to, window);
    let mut nb = f64::NAN;
    let mut risers = Vec::new();
    if let Context::Neighbours(list) = context {
        for (code, rs) in *list {
            let r = largest_rise(rs, from, to, window);
            if r >= cfg.neighbours_rise {
                risers.push(code.as_str());
            }
            nb = nb.max(r);
        }
    }
    let s = if nb > 0.0 {
        let own = if own.is_finite() { own.max(0.0) } else { 0.0 };
        (1.0 - own / nb).clamp(0.0, 1.0) * (nb / (2.0 * cfg.neighbours_rise)).min(1.0)
    } else {
        0.0
    };
    let who = if risers.is_empty() {
        "-".to_string()
    } else {
        risers.join(", ")
    };
    (
        s,
        format!(
            "neighbours on the air path rose by up to {} in {window} min ({who}) while this point changed by {}",
            v(nb),
            v(own)
        ),
        format!(
            "同一风路相邻测点 {window} 分钟内上升最多 {} ({who}), 本测点变化 {}",
            v(nb),
            v(own)
        ),
    )
}

/// Offset: how far the point's mean fell against its neighbours' from
/// the evidence before the episode to the episode, against twice the
/// rule's step.
fn offset(
    cfg: &DetectConfig,
    w: &Window<'_>,
    context: &Context<'_>,
    v: &dyn Fn(f64) -> String,
) -> Judged {
    let (from, to) = w.episode;
    let before = |rs: &[ArchivedReading]| mean_of(&values(&span(rs, w.evidence.0, from)));
    let during = |rs: &[ArchivedReading]| mean_of(&values(&span(rs, from, to)));
    let own = during(w.readings) - before(w.readings);
    let mut nb = Vec::new();
    if let Context::Neighbours(list) = context {
        for (_, rs) in *list {
            let d = during(rs) - before(rs);
            if d.is_finite() {
                nb.push(d);
            }
        }
    }
    let path = mean_of(&nb);
    let path = if path.is_finite() { path } else { 0.0 };
    let drop = if own.is_finite() { path - own } else { 0.0 };
    (
        sat(drop.max(0.0), 2.0 * cfg.offset_min),
        format!(
            "this point's mean changed by {} from before the step, its neighbours' by {}",
            v(own),
            v(path)
        ),
        format!(
            "本测点均值较阶跃前变化 {}, 相邻测点变化 {}",
            v(own),
            v(path)
        ),
    )
}

fn mean_of(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

#[cfg(test)]
mod tests;
