//! The Grafana dashboards in `dashboards/` query only metrics minewatch
//! exports: every dashboard JSON is parsed, every `minewatch_*` name in a
//! panel's `expr` (and in a template variable's query) is looked up in the
//! text that `Metrics::render` produces once every labelled family has a
//! series. A dashboard asking for a metric that was renamed or never
//! existed fails here, not on a wall screen at night.

use std::collections::BTreeSet;
use std::path::PathBuf;

use minewatch::metrics::Metrics;
use serde_json::Value;

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            out.push((path, v));
        }
    }
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

/// Every PromQL expression in a dashboard: panel targets (rows nest
/// panels) and template variable queries.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    ("query" | "definition", Value::String(q)) if q.contains("minewatch_") => {
                        out.push(q.clone())
                    }
                    _ => expressions(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| expressions(x, out)),
        _ => {}
    }
}

/// The metric names in one PromQL expression: every identifier that starts
/// with `minewatch_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("minewatch_") {
        let start = i + at;
        let preceded = start > 0 && {
            let b = bytes[start - 1];
            b.is_ascii_alphanumeric() || b == b'_' || b == b':'
        };
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
        {
            end += 1;
        }
        if !preceded {
            names.insert(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

/// The exposition with a series in every labelled family.
fn exported() -> BTreeSet<String> {
    let m = Metrics::new(2);
    m.register_modbus_device("sub-1");
    m.register_push_channel("county-hook");
    m.store_errors.with_label_values(&["raise"]);
    m.alerts_by_county
        .with_label_values(&["140121", "overlimit"]);
    m.alert_transitions.with_label_values(&["raised"]);
    m.render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn names_are_read_from_promql() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(minewatch_detector_latency_seconds_bucket{instance=~\"$i\"}[5m]))) / minewatch_x:y",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["minewatch_detector_latency_seconds_bucket", "minewatch_x:y"]
    );
    assert!(metric_names("rate(not_minewatch_total[1m])").is_empty());
}

#[test]
fn every_metric_a_dashboard_queries_is_exported() {
    let exported = exported();
    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for (path, dash) in dashboards() {
        assert!(dash["title"].is_string(), "{}: no title", path.display());
        let mut exprs = Vec::new();
        expressions(&dash, &mut exprs);
        assert!(!exprs.is_empty(), "{}: no queries", path.display());
        for e in &exprs {
            let names = metric_names(e);
            assert!(
                !names.is_empty(),
                "{}: a query without a minewatch metric: {e}",
                path.display()
            );
            for n in names {
                if !exported.contains(&n) {
                    missing.push(format!("{}: {n} (in {e})", path.display()));
                }
                used.insert(n);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not exported:\n{}",
        missing.join("\n")
    );
    // The list is covered.
    for needed in [
        "minewatch_readings_accepted_total",
        "minewatch_records_rejected_total",
        "minewatch_shard_queue_depth",
        "minewatch_detector_latency_seconds_bucket",
        "minewatch_alert_latency_seconds_bucket",
        "minewatch_alerts_raised_total",
        "minewatch_alerts_raised_by_county_total",
        "minewatch_alert_transitions_total",
        "minewatch_push_backlog",
        "minewatch_push_sent_total",
        "minewatch_push_failed_total",
        "minewatch_archive_rows_written_total",
        "minewatch_archive_write_errors_total",
        "minewatch_modbus_requests_total",
    ] {
        assert!(used.contains(needed), "no dashboard shows {needed}");
    }
}

#[test]
fn the_example_scrape_config_sends_a_bearer_token() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards/prometheus.yml"),
    )
    .expect("dashboards/prometheus.yml");
    assert!(text.contains("metrics_path: /metrics"), "{text}");
    assert!(text.contains("type: Bearer"), "{text}");
    assert!(text.contains("credentials_file:"), "{text}");
}
