//! A hostile sequence of calls (every input the exporter alone renders invalid), then the
//! referees: `promtool check metrics` must report no parse error, and a real Prometheus
//! server must ingest the scrape (`up == 1`) with a valid counter at its exact value.

mod common;

use std::time::Duration;

use common::prometheus::{promtool_check, Prometheus};
use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, Limits, MetricsServer};

fn hostile_sequence(collector: &impl Collector) {
    // Empty names, from both paths.
    collector.increment_counter("", &[]);
    metrics::counter!("").increment(1);
    // One name, two kinds.
    collector.increment_counter("jobs", &["queue", "a"]);
    collector.record_gauge("jobs", 1.0, &["queue", "a"]);
    metrics::histogram!("jobs").record(1.0);
    // Label keys that sanitize alike, reserved keys, `le` on a histogram.
    metrics::counter!("labels_total", "a-b" => "1", "a_b" => "2").increment(1);
    collector.increment_counter("labels_total", &["__name__", "x", "__meta", "y"]);
    collector.record_histogram("latency_seconds", 0.1, &["le", "x"]);
    metrics::histogram!("latency_seconds", "le" => "0.5").record(0.2);
    // A counter that collides with a histogram's own series, in both orders.
    collector.record_histogram("lat", 0.3, &[]);
    collector.increment_counter("lat_count", &[]);
    collector.increment_counter("rpc_sum", &[]);
    collector.record_histogram("rpc", 0.3, &[]);
    // Histograms the exporter cannot name, and names that sanitize alike.
    collector.record_histogram("request_count", 2.0, &[]);
    metrics::histogram!("discount").record(0.5);
    collector.increment_counter("a.b", &[]);
    metrics::counter!("a_b").increment(1);
    // Non-finite observations and gauge values.
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        collector.record_histogram("latency_seconds", v, &[]);
        metrics::histogram!("latency_seconds").record(v);
        collector.record_gauge("temperature", v, &["sensor", "x"]);
    }
    // Hostile label values and keys.
    collector.increment_counter(
        "values_total",
        &[
            "v",
            "back\\slash \"quote\"\nnewline",
            "é",
            "ü",
            "",
            "empty key",
        ],
    );
    metrics::counter!("values_total", "v" => "\\\\").increment(1);
    metrics::counter!("values_total", "v" => "\\").increment(1);
    // Our own prefix, an odd label count, and cardinality past the limit.
    collector.increment_counter("porter_metrics_series", &[]);
    collector.increment_counter("odd_total", &["k", "v", "dangling"]);
    for i in 0..40 {
        collector.increment_counter("users_total", &["user", &format!("u{i}")]);
    }
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn a_hostile_scrape_passes_promtool_and_is_ingested_by_prometheus() {
    let server = MetricsServer::builder()
        .standalone()
        .limits(Limits::default().with_series_per_metric(10))
        .build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("listening");
    let collector = server.collector();
    let recorder = server.recorder().expect("standalone");
    metrics::with_local_recorder(&recorder, || hostile_sequence(&collector));
    for _ in 0..7 {
        collector.increment_counter("valid_requests_total", &["method", "GET"]);
    }

    let body = common::scrape(addr);
    let scrape = Exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(
        scrape.value("valid_requests_total", &["method", "GET"]),
        Some(7.0)
    );
    assert_eq!(
        scrape.value("users_total", &["otel_metric_overflow", "true"]),
        Some(30.0)
    );
    let (code, output) = promtool_check(&body);
    assert_ne!(code, 1, "promtool found a parse error:\n{output}\n{body}");
    assert!(!output.contains("parsing error"), "{output}");

    let prometheus = Prometheus::start(&[addr]);
    let up = prometheus.wait_until("up{job=\"porter\"}", Duration::from_secs(60), |v| v == 1.0);
    assert_eq!(up, Some(1.0), "Prometheus did not ingest the scrape");
    let valid = prometheus.wait_until(
        "valid_requests_total{method=\"GET\"}",
        Duration::from_secs(30),
        |v| v == 7.0,
    );
    assert_eq!(valid, Some(7.0));
    let dropped = prometheus.wait_until(
        "sum(porter_metrics_dropped_samples_total)",
        Duration::from_secs(30),
        |v| v > 0.0,
    );
    assert!(dropped.is_some(), "the self-metrics are ingested too");
    server.stop().expect("stop");
}
