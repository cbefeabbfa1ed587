//! The operator's kit in `examples/prometheus/`: the Prometheus config and alert rules are
//! valid and their unit tests pass under `promtool`, and every metric the dashboard and the
//! alerts query is one the example really exports.

mod common;

#[path = "../examples/support/workload.rs"]
mod workload;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, MetricsServer};

const KIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prometheus");

fn promtool(args: &[&str]) {
    let promtool = common::require_binary("promtool", "prometheus");
    let out = Command::new(promtool)
        .args(args)
        .current_dir(KIT)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn the_prometheus_config_and_rules_are_valid_and_their_unit_tests_pass() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
}

/// Metric names in PromQL text: identifiers written right before a `{` selector (the kit
/// always writes one), skipping Grafana's `{{label}}` legends.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let bytes = promql.as_bytes();
    let mut names = BTreeSet::new();
    for (i, _) in promql.match_indices('{') {
        if i + 1 < bytes.len() && bytes[i + 1] == b'{' || i > 0 && bytes[i - 1] == b'{' {
            continue;
        }
        let start = promql[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        let name = &promql[start..i];
        if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
            names.insert(name.to_owned());
        }
    }
    names
}

fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(KIT).join("grafana-dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in json["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

/// Everything the example exports after a realistic run, process metrics included.
fn example_scrape() -> Exposition {
    let server = MetricsServer::builder()
        .standalone()
        .process_metrics()
        .build("127.0.0.1:0");
    server.start().unwrap();
    let collector: Arc<dyn Collector> = Arc::new(server.collector());
    let recorder = server.recorder().unwrap();
    metrics::with_local_recorder(&recorder, || {
        workload::Workload::new(collector, 7).run(3000);
    });
    let body = common::scrape(server.local_addr().unwrap());
    server.stop().unwrap();
    Exposition::parse(&body).unwrap()
}

#[test]
fn every_dashboard_and_alert_query_names_metrics_the_example_exports() {
    let scrape = example_scrape();
    let exported: BTreeSet<&str> = scrape.samples().iter().map(|s| s.name.as_str()).collect();

    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "the dashboard has its panels");
    let mut wanted = BTreeSet::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "no metric found in {query:?}");
        wanted.extend(names);
    }
    let alerts = std::fs::read_to_string(Path::new(KIT).join("alerts.yml")).unwrap();
    // `up` is Prometheus' own.
    wanted.extend(metric_names(&alerts).into_iter().filter(|n| n != "up"));

    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !exported.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    for expected in [
        "flight_requests_total",
        "flight_request_duration_seconds_bucket",
        "porter_metrics_dropped_samples_total",
        "process_resident_memory_bytes",
    ] {
        assert!(wanted.contains(expected), "the kit covers {expected}");
    }
}
