//! `report.html`: one self-contained file an auditor can open anywhere
//! and show in a hearing — inline CSS, inline SVG charts, no script, no
//! font or image from the network. Labels are in Chinese and English;
//! times are shown in Beijing time (UTC+8), the time the mines' own
//! records use (the CSV and JSON keep UTC).
//!
//! For each mine (strongest finding first) and each of its points: the
//! findings ranked by strength, each with its figures and a chart of its
//! window — a margin before and after, the alarm / power-off / restore
//! lines drawn and labelled, the suspicious span shaded (and the part of
//! the evidence window before it lightly), readings without a value marked
//! along the bottom, neighbours on the air path drawn in grey. Then the
//! mine's over-limit episodes with their YCBJ cross-check, the episodes
//! no report covers (with charts), the files that could not be read, and
//! how each strength is computed.

use std::fmt::Write;

use super::export::mine_order;
use super::{Audit, AuditFinding, Chart, OverLimitEpisode, Reported, strength};
use crate::model::{Flag, Millis, status};
use crate::review::replay::ArchivedReading;

const BEIJING_MS: Millis = 8 * 3_600_000;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time in Beijing time, `2026-11-23 16:00:10`.
pub fn beijing(ms: Millis) -> String {
    match chrono::DateTime::from_timestamp_millis(ms + BEIJING_MS) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("({ms})"),
    }
}

fn hhmm(ms: Millis, with_date: bool) -> String {
    match chrono::DateTime::from_timestamp_millis(ms + BEIJING_MS) {
        Some(t) if with_date => t.format("%m-%d %H:%M").to_string(),
        Some(t) => t.format("%H:%M").to_string(),
        None => String::new(),
    }
}

const CSS: &str = "
body{font-family:'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',sans-serif;margin:2em auto;max-width:1000px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;border-bottom:3px solid #8b1a1a;padding-bottom:.3em}
h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #bbb;padding-bottom:.2em}
h3{font-size:1.1em;margin-top:1.5em}
h4{font-size:1em;margin:.2em 0}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}
.num{text-align:right;font-variant-numeric:tabular-nums}
.finding{border:1px solid #ddd;border-left:5px solid #8b1a1a;padding:.6em .8em;margin:1em 0;page-break-inside:avoid}
.finding.data_anomaly{border-left-color:#c78a00}
.bar{display:inline-block;width:120px;height:.8em;background:#eee;vertical-align:middle;margin-right:.4em}
.bar span{display:block;height:100%;background:#8b1a1a}
.warn{background:#fff4e5;border:1px solid #e0a040;padding:.5em .8em}
.bad{color:#8b1a1a;font-weight:bold}
.muted{color:#666;font-size:.9em}
svg{display:block;margin:.4em 0;max-width:100%;height:auto}
svg text{font-size:11px;fill:#333}
";

/// The whole report.
pub fn render(audit: &Audit) -> String {
    let mut h = String::with_capacity(1 << 20);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>监测数据审计报告 / Monitoring data audit — {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&audit.mine.clone().unwrap_or_else(|| "all mines".into()))
    );
    h.push_str("<h1>煤矿安全监控数据审计报告<br><small>Coal-mine monitoring data audit report</small></h1>\n");
    run_table(&mut h, audit);
    if !audit.skipped.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"warn\">⚠ {} 个文件无法读取, 已跳过 (见文末) / {} file(s) could not be read and were skipped (listed at the end).</p>",
            audit.skipped.len(),
            audit.skipped.len()
        );
    }
    summary(&mut h, audit);
    // Mines with nothing to show share one line instead of a section each.
    let mut quiet = Vec::new();
    for (code, name) in mine_order(audit) {
        if audit.findings.iter().any(|f| f.mine == code)
            || audit.episodes.iter().any(|e| e.mine == code)
        {
            mine_section(&mut h, audit, code, name);
        } else {
            quiet.push(format!(
                "<span id=\"m-{c}\">{c} {}</span>",
                esc(name),
                c = esc(code)
            ));
        }
    }
    if !quiet.is_empty() {
        let _ = writeln!(
            h,
            "<h2>其他矿井 / Other mines</h2>\n<p>{} 个矿井无数据异常、无造假嫌疑、无超限事件 / {} mine(s) with no finding and no over-limit episode: {}</p>",
            quiet.len(),
            quiet.len(),
            quiet.join(", ")
        );
    }
    unreported_section(&mut h, audit);
    if !audit.skipped.is_empty() {
        h.push_str("<h2 id=\"skipped\">无法读取的文件 / Files that could not be read</h2>\n<table><tr><th>文件 / file</th><th>原因 / error</th></tr>\n");
        for s in &audit.skipped {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&s.path),
                esc(&s.error)
            );
        }
        h.push_str("</table>\n");
    }
    methods(&mut h);
    let _ = write!(
        h,
        "<p class=\"muted\">minewatch {} · 同一归档与参数总生成相同内容 / the same archive and options always give this same report.</p>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    h
}

fn run_table(h: &mut String, a: &Audit) {
    let rows: Vec<(&str, String)> = vec![
        ("归档 / archive", esc(&a.archive)),
        ("审计范围 / range", range_text(a.from, a.to)),
        (
            "矿井 / mine",
            esc(a.mine.as_deref().unwrap_or("全部 / all")),
        ),
        (
            "配置 / config",
            esc(a.config.as_deref().unwrap_or(
                "无, 测点与规程默认值取自归档 / none: points from the archive, rule defaults",
            )),
        ),
        (
            "数据时间 / data from … to",
            a.span.map_or("-".into(), |(f, t)| {
                format!("{} — {}", beijing(f), beijing(t))
            }),
        ),
        (
            "读数 / readings",
            format!(
                "{} ({} 个文件 / files{})",
                a.readings,
                a.files,
                if a.unknown_points > 0 {
                    format!(
                        "; {} 个未知测点读数未计 / readings of unknown points skipped",
                        a.unknown_points
                    )
                } else {
                    String::new()
                }
            ),
        ),
        (
            "异常报告 (YCBJ) / exception reports",
            a.exceptions.to_string(),
        ),
        ("时间 / times", "北京时间 (UTC+8) / Beijing time".into()),
    ];
    h.push_str("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table>\n");
}

/// The audited range as asked for: both ends, one, or the whole archive.
fn range_text(from: Option<Millis>, to: Option<Millis>) -> String {
    match (from, to) {
        (None, None) => "整个归档 (未限定时间) / the whole archive (no --from or --to)".into(),
        (Some(f), None) => format!(
            "{} 起, 至归档末 / from {0} to the end of the archive",
            beijing(f)
        ),
        (None, Some(t)) => format!(
            "归档始至 {} (不含) / from the start of the archive until {0}",
            beijing(t)
        ),
        (Some(f), Some(t)) => format!("{} — {}", beijing(f), beijing(t)),
    }
}

fn strength_bar(s: f64) -> String {
    format!(
        "<span class=\"bar\"><span style=\"width:{:.0}%\"></span></span>{s:.3}",
        s * 100.0
    )
}

fn summary(h: &mut String, a: &Audit) {
    h.push_str("<h2>概要 / Summary</h2>\n<table>\n<tr><th>矿井 / mine</th><th>名称 / name</th><th>发现 / findings</th><th>最强 / strongest</th><th>超限事件 / over-limit episodes</th><th>未报告 / unreported</th><th>需报 YCBJ / owes YCBJ</th></tr>\n");
    for (code, name) in mine_order(a) {
        let findings: Vec<&AuditFinding> = a.findings.iter().filter(|f| f.mine == code).collect();
        let best = findings.iter().map(|f| f.strength).reduce(f64::max);
        let episodes = a.episodes.iter().filter(|e| e.mine == code).count();
        let unreported = a.unreported().filter(|e| e.mine == code).count();
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#m-{c}\">{c}</a></td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{episodes}</td><td class=\"num{}\">{unreported}</td><td>{}</td></tr>",
            esc(name),
            findings.len(),
            best.map_or("-".into(), strength_bar),
            if unreported > 0 { " bad" } else { "" },
            if a.owing.contains(code) {
                "是 / yes"
            } else {
                "否 / no"
            },
            c = esc(code),
        );
    }
    h.push_str("</table>\n");
}

fn mine_section(h: &mut String, a: &Audit, code: &str, name: &str) {
    let _ = writeln!(
        h,
        "<h2 id=\"m-{c}\">矿井 / Mine {c} {}</h2>",
        esc(name),
        c = esc(code)
    );
    let findings: Vec<&AuditFinding> = a.findings.iter().filter(|f| f.mine == code).collect();
    if findings.is_empty() {
        h.push_str("<p>未发现数据异常或造假嫌疑 / No data anomaly or falsification finding.</p>\n");
    }
    let mut i = 0;
    while i < findings.len() {
        let point = &findings[i].point;
        let j = findings[i..]
            .iter()
            .position(|f| &f.point != point)
            .map_or(findings.len(), |k| i + k);
        point_section(h, a, &findings[i..j]);
        i = j;
    }
    let episodes: Vec<&OverLimitEpisode> = a.episodes.iter().filter(|e| e.mine == code).collect();
    if !episodes.is_empty() {
        let _ = writeln!(
            h,
            "<h3>超限/撤人事件 / Over-limit and evacuation episodes ({})</h3>",
            episodes.len()
        );
        episode_table(h, &episodes);
    }
}

fn point_section(h: &mut String, a: &Audit, findings: &[&AuditFinding]) {
    let f0 = findings[0];
    let _ = writeln!(
        h,
        "<h3>测点 / Point {} <span class=\"muted\">{} · 传感器 / sensor {} · {}</span></h3>",
        esc(&f0.point),
        esc(&f0.place),
        esc(&f0.sensor),
        esc(f0.location)
    );
    h.push_str("<table>\n<tr><th>#</th><th>原因 / reason</th><th>强度 / strength</th><th>开始 / from</th><th>结束 / to</th><th>持续 / duration</th></tr>\n");
    for f in findings {
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td><a href=\"#f-{}\">{}</a><br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.rank,
            esc(&f.id),
            esc(f.reason_zh),
            esc(f.reason),
            strength_bar(f.strength),
            beijing(f.from),
            f.to.map_or("进行中 / still open".into(), beijing),
            strength::duration_zh((f.duration_s * 1000.0) as Millis)
        );
    }
    h.push_str("</table>\n");
    for f in findings {
        let _ = writeln!(
            h,
            "<div class=\"finding {kind}\" id=\"f-{id}\">\n<h4>#{} {} <span class=\"muted\">/ {} · {}</span></h4>",
            f.rank,
            esc(f.reason_zh),
            esc(f.reason),
            esc(f.kind.key()),
            kind = esc(f.kind.key()),
            id = esc(&f.id)
        );
        let _ = writeln!(
            h,
            "<p>强度 / strength {} · {} — {} · 持续 / lasting {} / {} · 窗口读数 / readings in window {}</p>",
            strength_bar(f.strength),
            beijing(f.from),
            f.to.map_or("进行中 / still open".into(), beijing),
            strength::duration_zh((f.duration_s * 1000.0) as Millis),
            strength::duration_text((f.duration_s * 1000.0) as Millis),
            f.readings
        );
        let _ = writeln!(
            h,
            "<p>{}<br><span class=\"muted\">{}</span></p>",
            esc(&f.detail_zh),
            esc(&f.detail)
        );
        match f.ycbj {
            Reported::Reported => {
                let _ = writeln!(
                    h,
                    "<p>矿方已报馈电异常 (003) / the mine reported it as feed abnormal (003): {}</p>",
                    esc(&f.reported_by.join(", "))
                );
            }
            Reported::Unreported => h.push_str(
                "<p class=\"bad\">矿方未报馈电异常 (003) / the mine never reported it as feed abnormal (003)</p>\n",
            ),
            Reported::NotApplicable => {}
        }
        match a.charts.get(&f.id) {
            Some(c) => h.push_str(&chart_svg(c)),
            None => h.push_str("<p class=\"warn\">无图表数据 / no readings to chart</p>\n"),
        }
        let _ = writeln!(h, "<p class=\"muted\">id {}</p>\n</div>", esc(&f.id));
    }
}

fn episode_table(h: &mut String, episodes: &[&OverLimitEpisode]) {
    h.push_str("<table>\n<tr><th>类型 / kind</th><th>测点 / point</th><th>开始 / start</th><th>结束 / end</th><th>峰值 / peak</th><th>阈值 / threshold</th><th>YCBJ</th></tr>\n");
    for e in episodes {
        let ycbj = match e.ycbj {
            Reported::Reported => format!("已报告 / reported ({})", esc(&e.reported_by.join(", "))),
            Reported::Unreported => format!(
                "<a class=\"bad\" href=\"#e-{}\">未报告 / NOT REPORTED</a>",
                esc(&e.alert_id)
            ),
            Reported::NotApplicable => "不适用 / not applicable".into(),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{ycbj}</td></tr>",
            if e.kind == crate::model::AlertKind::Evacuation {
                "撤人 / evacuation"
            } else {
                "超限 / over-limit"
            },
            esc(&e.point),
            beijing(e.started_at),
            e.resolved_at.map_or("进行中 / open".into(), beijing),
            e.peak.map_or(String::new(), |p| format!("{p}")),
            e.threshold.map_or(String::new(), |p| format!("{p}")),
        );
    }
    h.push_str("</table>\n");
}

fn unreported_section(h: &mut String, a: &Audit) {
    h.push_str("<h2 id=\"ycbj\">YCBJ 核对: 未报告的超限 / YCBJ cross-check: over-limit episodes never reported</h2>\n");
    if a.owing.is_empty() {
        h.push_str("<p>没有上传联网文件的矿井, 无需核对 / No mine in the audit uploads national files: no exception reports are owed.</p>\n");
        return;
    }
    let _ = writeln!(
        h,
        "<p>需上报异常报告的矿井 / mines that owe exception reports: {}. 规则: 同一测点的 001 (超限) 或 002 (断电) 报告与事件时间重叠 (容差 1 分钟) 即视为已报告 / an episode counts as reported when a 001 (over-limit) or 002 (power-off) report of the same point overlaps it (1 minute tolerance).</p>",
        esc(&a.owing.iter().cloned().collect::<Vec<_>>().join(", "))
    );
    let list: Vec<&OverLimitEpisode> = a.unreported().collect();
    if list.is_empty() {
        h.push_str("<p>每个超限事件都有对应报告 / Every over-limit episode was reported.</p>\n");
        return;
    }
    episode_table(h, &list);
    for e in list {
        let _ = writeln!(
            h,
            "<div class=\"finding\" id=\"e-{id}\">\n<h4>未报告 / Not reported: {} {} {}</h4>",
            esc(&e.mine),
            esc(&e.point),
            beijing(e.started_at),
            id = esc(&e.alert_id)
        );
        if let Some(c) = a.charts.get(&format!("e-{}", e.alert_id)) {
            h.push_str(&chart_svg(c));
        }
        h.push_str("</div>\n");
    }
}

fn methods(h: &mut String) {
    h.push_str("<h2>强度如何计算 / How strength is computed</h2>\n<p>每项发现的强度取值 0–1, 由其证据窗口内的归档读数重新计算. sat(x, r) = x/(x+r): 恰在规则阈值时为 0.5. / Each finding's strength in [0, 1] is computed again from the archived readings of its evidence window; sat(x, r) = x/(x+r) is 0.5 exactly at the rule's threshold.</p>\n<table><tr><th>原因 / reason</th><th>强度 / strength</th></tr>\n");
    let rows: [(Flag, &str); 14] = [
        (
            Flag::OutOfRange,
            "超量程/无效读数占事件读数的比例 / share of the episode's readings out of range, invalid or flagged fault / over range",
        ),
        (
            Flag::FlatLine,
            "sat(最长不变时长, flat_secs) / sat(longest unchanged run, flat_secs)",
        ),
        (
            Flag::Spike,
            "sat(z, spike_k), z = 峰值偏离前 10 分钟中位数的稳健偏差倍数 / z = the peak's distance from the median of the 10 minutes before, in robust deviations",
        ),
        (
            Flag::Rate,
            "sat(最大变化/传感器可能的最大变化, 1) / sat(steepest change ÷ steepest a T90 sensor can show, 1)",
        ),
        (
            Flag::Timestamp,
            "sat(时间戳异常读数个数, 1) / sat(readings with conflicting, far-late or future times, 1)",
        ),
        (
            Flag::Hugging,
            "窗口内位于 [0.9×报警, 报警) 的比例 × (1 − 达到报警的比例) / share in [hug_band × alarm, alarm) × (1 − share at or above alarm)",
        ),
        (
            Flag::DropAfterApproach,
            "min(1, 之前最高值/报警值) × 事件中降为零或被隐藏读数的比例 / min(1, highest value before ÷ alarm) × share of the episode at zero or hidden",
        ),
        (
            Flag::Interlock,
            "½ sat(超断电值无断电状态时长, 40 s) + ½ sat(峰值 − 断电值, 0.1×断电值) / ½ sat(time over power-off without its status, grace) + ½ sat(peak − power-off, 0.1 × power-off)",
        ),
        (
            Flag::UniformNoise,
            "clamp((3 − 峰度)/1.2) × (1 − |一阶自相关|) / clamp((3 − kurtosis) / 1.2) × (1 − |lag-1 autocorrelation|)",
        ),
        (
            Flag::Replayed,
            "sat(与更早窗口相同的最长连续读数, 64) / sat(longest run repeating an earlier window, 64 readings)",
        ),
        (
            Flag::Dither,
            "sat(相邻两值逐次交替的最长读数, dither_min_readings) / sat(longest run alternating one step, dither_min_readings)",
        ),
        (
            Flag::Offset,
            "sat(相邻测点均值变化 − 本测点均值变化, 2×offset_min) / sat(neighbours' change of mean − own change of mean, 2 × offset_min)",
        ),
        (
            Flag::Sensitivity,
            "clamp(1 − 本测点上升/相邻测点上升) × min(1, 相邻上升/(2×0.15 %)) / clamp(1 − own rise ÷ neighbours' rise) × min(1, neighbours' rise ÷ (2 × neighbours_rise))",
        ),
        (
            Flag::NeighboursDisagree,
            "clamp(1 − 本测点上升/相邻测点上升) × min(1, 相邻上升/(2×0.15 %)) / clamp(1 − own rise ÷ neighbours' rise) × min(1, neighbours' rise ÷ (2 × neighbours_rise))",
        ),
    ];
    for (flag, text) in rows {
        let _ = writeln!(
            h,
            "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td></tr>",
            esc(flag.zh()),
            flag.key(),
            esc(text)
        );
    }
    h.push_str("</table>\n<p class=\"muted\">图中: 深色阴影为可疑时段, 浅色为检测规则回看的窗口; 虚线为报警/断电/复电值; 底部橙色刻度为无值或标校/未巡检/暂停的读数; 灰线为同一风路的相邻测点. / In the charts: dark shading is the suspicious span, light shading the part of the window the rule looked back at; dashed lines are the alarm / power-off / restore levels; orange ticks along the bottom are readings without a value or marked calibration / not polled / paused; grey lines are neighbours on the air path.</p>\n");
}

// Chart geometry.
const W: f64 = 900.0;
const H: f64 = 300.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 78.0;

fn valued(r: &ArchivedReading) -> bool {
    r.status & (status::NOT_A_VALUE | status::CALIBRATION) == 0 && r.value.is_finite()
}

/// A "nice" step of about `span / n`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Time-axis steps, ms.
const TIME_STEPS: [Millis; 14] = [
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
];

/// A pixel column being gathered: (column, first, lowest, highest, last)
/// as (x, value).
type Column = (i64, (f64, f64), (f64, f64), (f64, f64), (f64, f64));

/// Points of one series, at most two per horizontal pixel (the lowest and
/// highest of each pixel column, in time order), broken into runs at
/// readings without a value and at gaps of more than five median
/// intervals.
fn runs(rs: &[ArchivedReading], x: &dyn Fn(Millis) -> f64) -> Vec<Vec<(f64, f64)>> {
    let mut intervals: Vec<Millis> = rs
        .windows(2)
        .map(|p| p[1].ts - p[0].ts)
        .filter(|d| *d > 0)
        .collect();
    intervals.sort_unstable();
    let gap = intervals
        .get(intervals.len() / 2)
        .copied()
        .unwrap_or(60_000)
        .max(1000)
        * 5;
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let mut col: Option<Column> = None;
    let mut last_ts: Option<Millis> = None;
    let flush = |col: &mut Option<Column>, cur: &mut Vec<(f64, f64)>| {
        if let Some((_, first, lo, hi, last)) = col.take() {
            let mut pts = vec![first, lo, hi, last];
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts.dedup();
            cur.extend(pts);
        }
    };
    for r in rs {
        let broken = !valued(r) || last_ts.is_some_and(|t| r.ts - t > gap);
        if broken {
            flush(&mut col, &mut cur);
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
        if !valued(r) {
            last_ts = None;
            continue;
        }
        last_ts = Some(r.ts);
        let p = (x(r.ts), r.value);
        let c = p.0.floor() as i64;
        match &mut col {
            Some((cc, _, lo, hi, last)) if *cc == c => {
                if p.1 < lo.1 {
                    *lo = p;
                }
                if p.1 > hi.1 {
                    *hi = p;
                }
                *last = p;
            }
            _ => {
                flush(&mut col, &mut cur);
                col = Some((c, p, p, p, p));
            }
        }
    }
    flush(&mut col, &mut cur);
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One chart as inline SVG.
pub fn chart_svg(c: &Chart) -> String {
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let span = (c.to - c.from).max(1) as f64;
    let x = |t: Millis| LEFT + ((t - c.from) as f64 / span * pw).clamp(0.0, pw);
    // Value range: every valued reading and every level.
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for s in &c.series {
        for r in s.readings.iter().filter(|r| valued(r)) {
            lo = lo.min(r.value);
            hi = hi.max(r.value);
        }
    }
    for l in &c.levels {
        lo = lo.min(l.value);
        hi = hi.max(l.value);
    }
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.06;
    let (lo, hi) = (lo - pad, hi + pad);
    let y = |v: f64| TOP + ph - ((v - lo) / (hi - lo) * ph).clamp(-4.0, ph + 4.0);
    let mut s = String::with_capacity(16 << 10);
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" data-chart=\"{id}\" role=\"img\" aria-label=\"{label}\">",
        id = esc(&c.id),
        label = esc(&c.series.first().map_or(String::new(), |s| s.label.clone()))
    );
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"#fff\" stroke=\"#999\"/>"
    );
    // Spans: the evidence before the suspicious span, then the span.
    let (ef, _) = c.evidence;
    let (sf, st) = c.shade;
    if ef < sf {
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{ph}\" fill=\"#f6e0e0\"/>",
            x(ef),
            (x(sf) - x(ef)).max(0.5)
        );
    }
    let _ = writeln!(
        s,
        "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{ph}\" fill=\"#e8b4b4\" fill-opacity=\"0.6\"><title>可疑时段 / suspicious span {} — {}</title></rect>",
        x(sf),
        (x(st) - x(sf)).max(1.0),
        beijing(sf),
        beijing(st)
    );
    // Value axis.
    let step = nice_step(hi - lo, 5.0);
    let d = c.decimals.max(if step < 1.0 {
        (-step.log10()).ceil() as usize
    } else {
        0
    });
    let mut v = (lo / step).ceil() * step;
    while v <= hi + 1e-12 {
        // No "-0.00" at zero.
        let v0 = if v.abs() < step * 1e-6 { 0.0 } else { v };
        let yy = y(v0);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v0:.d$}</text>",
            LEFT + pw,
            LEFT - 4.0,
            yy + 4.0
        );
        v += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"6\" y=\"{:.1}\" transform=\"rotate(-90 6 {:.1})\" text-anchor=\"middle\" dy=\"8\">{}</text>",
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(&c.unit)
    );
    // Time axis, Beijing time.
    let tstep = TIME_STEPS
        .iter()
        .copied()
        .find(|st| (c.to - c.from) / st <= 8)
        .unwrap_or(604_800_000);
    let mut t = (c.from + BEIJING_MS).div_euclid(tstep) * tstep - BEIJING_MS;
    if t < c.from {
        t += tstep;
    }
    let mut first = true;
    while t <= c.to {
        let xx = x(t);
        let day = (t + BEIJING_MS).rem_euclid(86_400_000) == 0;
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#999\"/><text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + ph,
            TOP + ph + 4.0,
            TOP + ph + 16.0,
            hhmm(t, first || day)
        );
        first = false;
        t += tstep;
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"muted\">北京时间 / Beijing time · {} — {}</text>",
        LEFT + pw / 2.0,
        H - 6.0,
        beijing(c.from),
        beijing(c.to)
    );
    // Levels.
    let mut label_y: Vec<f64> = Vec::new();
    for l in &c.levels {
        let yy = y(l.value);
        let colour = match l.en {
            "alarm" => "#d08000",
            "power-off" => "#c00000",
            "restore" => "#2a7a2a",
            _ => "#777",
        };
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"{colour}\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"/>",
            LEFT + pw
        );
        // Labels on the right, nudged apart when levels are close.
        let mut ly = yy + 4.0;
        while label_y.iter().any(|o| (o - ly).abs() < 12.0) {
            ly += 12.0;
        }
        label_y.push(ly);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{ly:.1}\" fill=\"{colour}\" style=\"fill:{colour}\">{} {} {:.d$}</text>",
            LEFT + pw + 6.0,
            l.zh,
            l.en,
            l.value,
            d = c.decimals
        );
    }
    // Series: neighbours first (under), the point's own on top.
    for (k, series) in c.series.iter().enumerate().rev() {
        let (colour, width) = if series.main {
            ("#1f4e9c", 1.4)
        } else {
            (["#9a9a9a", "#b8b8b8", "#7a7a7a"][k % 3], 1.0)
        };
        for run in runs(&series.readings, &x) {
            let mut pts = String::with_capacity(run.len() * 14);
            for (px, v) in run {
                let _ = write!(pts, "{px:.1},{:.1} ", y(v));
            }
            let _ = writeln!(
                s,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\" points=\"{}\"/>",
                pts.trim_end()
            );
        }
    }
    // Readings without a value of the point itself, along the bottom.
    if let Some(main) = c.series.iter().find(|s| s.main) {
        let mut marks = String::new();
        let mut last_x = f64::NEG_INFINITY;
        for r in main.readings.iter().filter(|r| !valued(r)) {
            let xx = x(r.ts);
            if xx - last_x < 1.0 {
                continue;
            }
            last_x = xx;
            let _ = write!(marks, "M{xx:.1} {:.1}v-6", TOP + ph);
        }
        if !marks.is_empty() {
            let _ = writeln!(
                s,
                "<path d=\"{marks}\" stroke=\"#e07000\" stroke-width=\"1.5\"><title>无值或标校/未巡检/暂停 / no value, calibration, not polled or paused</title></path>"
            );
        }
    }
    // Legend.
    let mut ly = TOP + ph + 32.0;
    let mut lx = LEFT;
    for series in &c.series {
        let colour = if series.main { "#1f4e9c" } else { "#9a9a9a" };
        let text = if series.main {
            format!("{} (本测点 / this point)", series.label)
        } else {
            format!("{} (相邻 / neighbour)", series.label)
        };
        let width = 30.0
            + text
                .chars()
                .map(|ch| if ch.is_ascii() { 6.4 } else { 11.5 })
                .sum::<f64>();
        if lx > LEFT && lx + width > W - 10.0 {
            // One more line, at most.
            lx = LEFT;
            ly += 14.0;
        }
        let _ = writeln!(
            s,
            "<line x1=\"{lx:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{}</text>",
            ly - 4.0,
            lx + 16.0,
            ly - 4.0,
            lx + 20.0,
            esc(&text)
        );
        lx += width;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests;
