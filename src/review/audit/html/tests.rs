//! Tests of the report rendering: escaping, Beijing time, the chart's
//! levels, spans and series, decimation, and that nothing reaches for the
//! network.

use super::*;
use crate::review::audit::{Level, Series};

const T0: Millis = 1_795_392_000_000; // 2026-11-23T00:00:00Z

fn reading(i: i64, value: f64, status: u16) -> ArchivedReading {
    ArchivedReading {
        ts: T0 + i * 5_000,
        point: 0,
        status,
        arrival: T0 + i * 5_000 + 1_000,
        value,
    }
}

fn chart(n: i64) -> Chart {
    let mut readings: Vec<ArchivedReading> = (0..n)
        .map(|i| reading(i, 0.9 + 0.0001 * (i % 90) as f64, 0))
        .collect();
    readings[10].status = status::CALIBRATION;
    Chart {
        id: "abc<1>".into(),
        from: T0,
        to: T0 + n * 5_000,
        shade: (T0 + n * 2_000, T0 + n * 4_000),
        evidence: (T0 + n * 1_000, T0 + n * 4_000),
        levels: vec![
            Level {
                zh: "报警",
                en: "alarm",
                value: 1.0,
            },
            Level {
                zh: "断电",
                en: "power-off",
                value: 1.5,
            },
        ],
        series: vec![Series {
            label: "P<1>".into(),
            main: true,
            readings,
        }],
        unit: "%".into(),
        decimals: 2,
    }
}

#[test]
fn text_is_escaped_and_times_are_beijing_time() {
    assert_eq!(
        esc("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
    assert_eq!(beijing(T0), "2026-11-23 08:00:00");
    assert_eq!(hhmm(T0 + 90 * 60_000, false), "09:30");
    assert_eq!(hhmm(T0, true), "11-23 08:00");
}

#[test]
fn a_chart_draws_its_levels_spans_series_and_hidden_readings() {
    let svg = chart_svg(&chart(720));
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("data-chart=\"abc&lt;1&gt;\""));
    assert!(svg.contains(">报警 alarm 1.00</text>"), "{svg}");
    assert!(svg.contains(">断电 power-off 1.50</text>"));
    assert_eq!(svg.matches("stroke-dasharray").count(), 2);
    // The suspicious span and the evidence before it.
    assert!(svg.contains("fill=\"#e8b4b4\""));
    assert!(svg.contains("fill=\"#f6e0e0\""));
    assert!(svg.contains("suspicious span 2026-11-23 08:24:00 — 2026-11-23 08:48:00"));
    // The calibration reading breaks the line and is marked below it.
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert!(svg.contains("stroke=\"#e07000\""));
    assert!(svg.contains("P&lt;1&gt; (本测点 / this point)"));
    assert!(svg.contains("北京时间 / Beijing time"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg,
        chart_svg(&chart(720)),
        "the same chart, the same bytes"
    );
}

#[test]
fn a_long_window_is_drawn_with_at_most_four_points_per_pixel_column() {
    let svg = chart_svg(&chart(20_000));
    let points: usize = svg
        .split("points=\"")
        .skip(1)
        .map(|p| p.split('"').next().unwrap_or("").split(' ').count())
        .sum();
    let width = (W - LEFT - RIGHT) as usize + 2;
    assert!(points <= 4 * width, "{points}");
    assert!(points >= width, "{points}");
}

#[test]
fn value_axis_steps_are_round() {
    assert_eq!(nice_step(1.0, 5.0), 0.2);
    assert_eq!(nice_step(23.0, 5.0), 5.0);
    assert_eq!(nice_step(0.07, 5.0), 0.02);
}

#[test]
fn quiet_mines_share_one_line_and_an_open_range_says_so() {
    let audit = Audit {
        archive: "data/demo/archive".into(),
        from: None,
        to: None,
        mine: None,
        config: None,
        readings: 0,
        files: 0,
        unknown_points: 0,
        span: None,
        skipped: Vec::new(),
        mines: vec![
            ("140121000001".into(), "一号矿".into()),
            ("140121000002".into(), "二号矿".into()),
        ],
        findings: Vec::new(),
        episodes: Vec::new(),
        owing: Default::default(),
        exceptions: 0,
        charts: Default::default(),
    };
    let html = render(&audit);
    assert!(
        html.contains("the whole archive (no --from or --to)"),
        "{html}"
    );
    assert!(!html.contains("开始 / start"), "{html}");
    assert!(html.contains("2 mine(s) with no finding"), "{html}");
    // The summary's links still land on each mine.
    assert!(html.contains("<span id=\"m-140121000001\">"), "{html}");
    assert!(!html.contains("<h2 id=\"m-"), "{html}");
    assert!(range_text(Some(T0), None).contains("to the end of the archive"));
    assert!(range_text(None, Some(T0)).contains("from the start of the archive"));
    assert_eq!(
        range_text(Some(T0), Some(T0 + 3_600_000)),
        "2026-11-23 08:00:00 — 2026-11-23 09:00:00"
    );
}
