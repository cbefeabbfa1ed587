//! The Flight SQL example against the referees: a real Prometheus scrapes it (one process
//! in-process, then two processes of the example binary), `promtool check metrics` reads its
//! scrape, and every metric the operator's kit (alerts, dashboard) queries is one it
//! exports. Everything listens on and talks to 127.0.0.1 only.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod harness;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::prometheus::{promtool_check, promtool_check_with, Prometheus};
use harness::in_process;
use porter_flight_sql::{run_load, LoadConfig, Stop};
use porter_metrics::testing::Exposition;

const KIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../prometheus");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (run .ci/test)"]
async fn prometheus_ingests_the_example_and_agrees_with_the_clients() {
    let served = in_process().await;
    let prometheus = Prometheus::start(&[served.metrics.local_addr().expect("serving")]);
    let limit = Duration::from_secs(60);
    // The load runs for a few scrapes (1 s apart), so rates exist.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(run_load(
        served.flight,
        LoadConfig::default(),
        Stop::Signal(stopped),
    ));
    let errors = tokio::task::spawn_blocking(move || {
        let errors = prometheus.wait_until(
            "sum(rate(grpc_server_handled_total{job=\"porter\", grpc_code!=\"OK\"}[5s]))",
            limit,
            |v| v > 0.0,
        );
        let p90 = prometheus.wait_until(
            "histogram_quantile(0.9, sum by (le) (rate(grpc_server_handling_seconds_bucket{job=\"porter\"}[5s])))",
            limit,
            |v| v.is_finite() && v > 0.0,
        );
        (errors, p90, prometheus)
    });
    let (rate, p90, prometheus) = errors.await.expect("the queries run");
    let _ = stop.send(true);
    let tally = load
        .await
        .expect("the load task")
        .expect("the load connects");
    assert!(rate.is_some(), "no rate of non-OK gRPC codes");
    assert!(
        p90.is_some(),
        "no histogram_quantile of grpc_server_handling_seconds"
    );

    // Once the load stopped, Prometheus converges on exactly what the clients saw.
    let total = tally.total() as f64;
    let prometheus = tokio::task::spawn_blocking(move || {
        let seen = prometheus.wait_until("sum(flight_requests_total{job=\"porter\"})", limit, |v| v == total);
        assert_eq!(seen, Some(total), "flight_requests_total against the clients' {total}");
        for ((method, status), n) in &tally.requests {
            let promql = format!(
                "sum(flight_requests_total{{job=\"porter\", method=\"{method}\", status=\"{status}\"}})"
            );
            let seen = prometheus.wait_until(&promql, limit, |v| v == *n as f64);
            assert_eq!(seen, Some(*n as f64), "{method} {status}");
        }
        let handled = prometheus.wait_until("sum(grpc_server_handled_total{job=\"porter\"})", limit, |v| v >= total);
        assert!(handled.is_some_and(|h| h >= total), "every RPC handled: {handled:?}");
        prometheus
    })
    .await
    .expect("the queries run");
    drop(prometheus);
    let _ = served.stop.send(());
}

/// With native histograms and exemplar storage on, Prometheus negotiates protobuf: the
/// example's `grpc_server_handling_seconds` is native (only a native histogram answers
/// `histogram_count`), and its exemplars are trace ids the load generator sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (run .ci/test)"]
async fn prometheus_gets_native_histograms_and_the_load_generators_trace_ids() {
    let served = in_process().await;
    let prometheus = Prometheus::start_with(
        &[served.metrics.local_addr().expect("serving")],
        &["native-histograms", "exemplar-storage"],
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(run_load(
        served.flight,
        LoadConfig::default(),
        Stop::Signal(stopped),
    ));
    let limit = Duration::from_secs(60);
    let (count, exemplars) = tokio::task::spawn_blocking(move || {
        let count = prometheus.wait_until(
            "sum(histogram_count(rate(grpc_server_handling_seconds{job=\"porter\"}[1m])))",
            limit,
            |v| v > 0.0,
        );
        let exemplars = prometheus.trace_ids("grpc_server_handling_seconds", limit);
        (count, exemplars)
    })
    .await
    .expect("the queries run");
    let _ = stop.send(true);
    load.await
        .expect("the load task")
        .expect("the load connects");
    assert!(
        count.is_some(),
        "histogram_count() of the native histogram had no value"
    );
    let ids = exemplars.expect("exemplars of grpc_server_handling_seconds");
    let sent = porter_flight_sql::sent_trace_ids();
    assert!(
        ids.iter().all(|id| sent.contains(id)),
        "exemplars {ids:?} are trace ids the load generator sent"
    );
    let _ = served.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (run .ci/test)"]
async fn the_example_scrape_passes_promtool() {
    common::require_binary("promtool", "prometheus");
    let served = in_process().await;
    let tally = served.load(500).await;
    assert!(tally.total() >= 500);
    let addr = served.metrics.local_addr().expect("serving");
    let body = tokio::task::spawn_blocking(move || common::scrape(addr))
        .await
        .expect("scrape");
    let (code, output) = promtool_check(&body);
    assert_ne!(code, 1, "promtool found a parse error:\n{output}\n{body}");
    assert!(!output.contains("parsing error"), "promtool: {output}");
    // Prometheus 3.5's promtool: no error, and no lint complaint either (every counter's
    // series end in `_total`, the runtime's included).
    let (code, output) = promtool_check_with(&common::sid_binary("promtool"), &body);
    assert_eq!(code, 0, "promtool 3.5:\n{output}");
    let _ = served.stop.send(());
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
    let text = std::fs::read_to_string(Path::new(KIT).join("grafana-dashboard.json"))
        .expect("the dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in json["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_query_names_metrics_the_example_exports() {
    // A push target (never reached: its interval is an hour) brings the push self-metrics.
    let target = porter_metrics::PushTarget::otlp("http://127.0.0.1:1/v1/metrics")
        .and_then(|t| t.interval(Duration::from_secs(3600)))
        .and_then(|t| t.timeout(Duration::from_millis(100)))
        .expect("valid target");
    let served = harness::in_process_with(|b| b.push(target)).await;
    served.load(1000).await;
    let scrape = served.scrape();
    let exported: BTreeSet<&str> = scrape.samples().iter().map(|s| s.name.as_str()).collect();

    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "the dashboard has its panels: {}",
        queries.len()
    );
    let mut wanted = BTreeSet::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "no metric found in {query:?}");
        wanted.extend(names);
    }
    let alerts = std::fs::read_to_string(Path::new(KIT).join("alerts.yml")).expect("alerts");
    // `up` is Prometheus' own.
    wanted.extend(metric_names(&alerts).into_iter().filter(|n| n != "up"));

    // A native histogram is queried by its family name (no `_bucket`).
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| {
            !exported.contains(name.as_str()) && scrape.kind(name.as_str()) != Some("histogram")
        })
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    for expected in [
        "flight_requests_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "porter_metrics_dropped_samples_total",
        "process_resident_memory_bytes",
        "grpc_client_handled_total",
        "tokio_busy_seconds_total",
        "tokio_live_tasks",
        "tokio_global_queue_depth",
        "porter_metrics_push_failures_total",
        "porter_metrics_push_last_success_timestamp_seconds",
    ] {
        assert!(wanted.contains(expected), "the kit covers {expected}");
    }
    let _ = served.stop.send(());
}

/// The example binary `cargo test` built for this crate.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = dir.join("examples").join("server");
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test` (which builds the examples)",
        binary.display()
    );
    binary
}

/// One process of the example: a bounded load, then it serves until killed (on drop).
struct Instance {
    child: Child,
    metrics: SocketAddr,
}

impl Instance {
    fn start(requests: u64) -> Self {
        let mut child = Command::new(example_binary())
            .args(["--flight", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .args(["--requests", &requests.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // It prints `flight: ADDR`, then `metrics: ADDR`.
        let metrics = lines
            .by_ref()
            .take(2)
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("metrics: ").and_then(|a| a.parse().ok()))
            .expect("the example prints its metrics address");
        Instance { child, metrics }
    }

    fn requests_served(&self) -> Option<f64> {
        let body = common::get(self.metrics, "/metrics").ok()?.body;
        Some(Exposition::parse(&body).ok()?.sum("flight_requests_total"))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn a_sum_across_two_example_processes_equals_the_sum_of_each() {
    const REQUESTS: u64 = 300;
    let instances = [Instance::start(REQUESTS), Instance::start(REQUESTS)];
    // Each stops its load after REQUESTS (a started operation finishes: a few more).
    for instance in &instances {
        common::wait_for(Duration::from_secs(60), || {
            instance.requests_served().filter(|n| *n >= REQUESTS as f64)
        })
        .expect("the load finished");
    }
    let prometheus = Prometheus::start(&[instances[0].metrics, instances[1].metrics]);
    let limit = Duration::from_secs(60);
    // The instances' own totals, read again on every poll: an operation still in flight
    // when the load stopped may add a request after any earlier reading.
    let totals = || -> Option<Vec<f64>> { instances.iter().map(|i| i.requests_served()).collect() };
    let mut last = None;
    let sum = prometheus.wait_until("sum(flight_requests_total{job=\"porter\"})", limit, |v| {
        last = totals();
        last.as_ref().is_some_and(|t| v == t.iter().sum::<f64>())
    });
    let expected = last.as_ref().map(|t| t.iter().sum::<f64>());
    assert_eq!(sum, expected, "each served {last:?}");
    let up = prometheus.wait_until("count(up{job=\"porter\"} == 1)", limit, |v| v == 2.0);
    assert_eq!(up, Some(2.0));
}
