//! The design's three integration examples, in Rust: a custom collector, metric
//! aggregation and metric filtering, stacked over the Prometheus collector.
//!
//! Run with `cargo run --example decorators`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use porter_metrics::{AggregatingCollector, Collector, FilteringCollector, LocalRecorder, Timer};

/// Custom Collector: wraps another collector and adds behaviour (here, counting calls).
struct CustomCollector {
    inner: Arc<dyn Collector>,
    calls: AtomicU64,
}

impl Collector for CustomCollector {
    fn increment_counter(&self, name: &str, labels: &[&str]) {
        self.calls.fetch_add(1, Ordering::Relaxed); // custom logic
        self.inner.increment_counter(name, labels);
    }
    fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.record_histogram(name, value, labels);
    }
    fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.record_gauge(name, value, labels);
    }
    fn start_timer(&self, name: &str) -> Timer {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.start_timer(name)
    }
    fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.add_to_gauge(name, delta, labels);
    }
}

fn main() {
    // A local pipeline keeps the example self-contained; `PrometheusCollector::new()` with a
    // running `MetricsServer` works the same way.
    let recorder = LocalRecorder::new();
    let prometheus: Arc<dyn Collector> = Arc::new(recorder.collector());

    // Metric Aggregation: running aggregates per name and label set, thread-safe.
    let aggregating = Arc::new(AggregatingCollector::new(prometheus.clone()));

    // Metric Filtering: only the allowed names go through.
    let filtering = FilteringCollector::allow(aggregating.clone())
        .name("request_duration")
        .prefix("requests_");

    // Custom Collector on top of everything.
    let custom = CustomCollector {
        inner: Arc::new(filtering),
        calls: AtomicU64::new(0),
    };

    for (endpoint, seconds) in [
        ("/api/users", 0.12),
        ("/api/users", 0.31),
        ("/api/orders", 0.05),
    ] {
        custom.increment_counter("requests_total", &["endpoint", endpoint]);
        custom.record_histogram("request_duration", seconds, &["endpoint", endpoint]);
        custom.increment_counter("debug_events_total", &[]); // filtered out
    }

    println!(
        "calls seen by the custom collector: {}",
        custom.calls.load(Ordering::Relaxed)
    );
    for entry in aggregating.snapshot() {
        let a = entry.aggregate;
        println!(
            "{} {:?}: count={} sum={:.2} min={:.2} max={:.2} last={:.2}",
            entry.name, entry.labels, a.count, a.sum, a.min, a.max, a.last
        );
    }
    let scrape = recorder.render();
    assert!(
        !scrape.contains("debug_events_total"),
        "filtered metrics never reach Prometheus"
    );
    println!(
        "\n{}",
        scrape
            .lines()
            .filter(|l| l.starts_with("requests_total") || l.starts_with("request_duration_count"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
