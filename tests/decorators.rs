//! The design's decorators as real types: filtering, aggregating, custom wrappers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use porter_metrics::testing::Capture;
use porter_metrics::{
    AggregatingCollector, Collector, FilteringCollector, NoopCollector, PrometheusCollector, Timer,
};

#[test]
fn deny_rules_match_exact_names_prefixes_and_predicates() {
    let capture = Capture::new();
    let c = FilteringCollector::deny(capture.collector())
        .name("secret_total")
        .prefix("internal_")
        .predicate(|n| n.ends_with("_debug"));
    c.increment_counter("secret_total", &[]);
    c.record_gauge("internal_queue", 1.0, &[]);
    c.record_histogram("parse_debug", 1.0, &[]);
    c.increment_counter("public_total", &[]);
    c.increment_counter("secret_total_2", &[]); // not an exact match: allowed
    let s = capture.exposition().unwrap();
    assert_eq!(s.value("public_total", &[]), Some(1.0));
    assert_eq!(s.value("secret_total_2", &[]), Some(1.0));
    for denied in ["secret_total", "internal_queue", "parse_debug_count"] {
        assert_eq!(s.count(denied), 0, "{denied} reached the recorder");
    }
}

#[test]
fn allow_rules_pass_only_matching_names() {
    let capture = Capture::new();
    let c = FilteringCollector::allow(capture.collector()).prefix("flight_");
    c.increment_counter("flight_requests_total", &["method", "DoGet"]);
    c.increment_counter("other_total", &[]);
    let s = capture.exposition().unwrap();
    assert_eq!(
        s.value("flight_requests_total", &["method", "DoGet"]),
        Some(1.0)
    );
    assert_eq!(s.count("other_total"), 0);
}

#[test]
fn a_denied_timer_measures_but_records_nothing() {
    let capture = Capture::new();
    let c = FilteringCollector::deny(capture.collector()).name("hidden_seconds");
    let timer = c.start_timer("hidden_seconds");
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert!(
        timer.stop() >= 0.002 * 0.999,
        "a denied timer still measures"
    );
    drop(c.start_timer("hidden_seconds"));
    let s = capture.exposition().unwrap();
    assert!(s.histogram("hidden_seconds", &[]).is_none());
}

#[test]
fn aggregates_are_exact_under_two_threads_and_readable_meanwhile() {
    let aggregating = Arc::new(AggregatingCollector::new(NoopCollector));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (aggregating, done) = (aggregating.clone(), done.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            let mut snapshots = 0;
            // Bounded: stops when the writers finish, or after 100k snapshots.
            while !done.load(Ordering::Acquire) && snapshots < 100_000 {
                if let Some(a) = aggregating.get("latency", &["op", "read"]) {
                    assert!(a.count >= last, "counts never go back");
                    assert!(a.min >= 0.0 && a.max <= 2.0);
                    last = a.count;
                }
                let snapshot = aggregating.snapshot();
                assert!(
                    snapshot.len() <= 2,
                    "one entry per series: {}",
                    snapshot.len()
                );
                snapshots += 1;
            }
        })
    };
    std::thread::scope(|s| {
        for t in 0..2 {
            let aggregating = &aggregating;
            s.spawn(move || {
                for i in 0..100_000u32 {
                    let labels: &[&str] = if t == 0 {
                        &["op", "read", "shard", "a"]
                    } else {
                        &["shard", "a", "op", "read"]
                    };
                    aggregating.increment_counter("calls_total", labels);
                    aggregating.record_histogram("latency", f64::from(i % 3), &["op", "read"]);
                }
            });
        }
    });
    done.store(true, Ordering::Release);
    reader.join().unwrap();

    let calls = aggregating
        .get("calls_total", &["shard", "a", "op", "read"])
        .unwrap();
    assert_eq!(calls.count, 200_000);
    assert_eq!(calls.sum, 200_000.0);
    let latency = aggregating.get("latency", &["op", "read"]).unwrap();
    assert_eq!(latency.count, 200_000);
    // i % 3 over 0..100_000 sums to 99_999 per thread.
    assert_eq!(latency.sum, 2.0 * 99_999.0);
    assert_eq!((latency.min, latency.max), (0.0, 2.0));
    assert_eq!(aggregating.snapshot().len(), 2);
}

#[test]
fn aggregated_timers_record_in_both_places_once() {
    let capture = Capture::new();
    let aggregating = AggregatingCollector::new(capture.collector());
    let seconds = aggregating.start_timer("op_seconds").stop();
    {
        let _scoped = aggregating.start_timer("op_seconds");
    }
    let a = aggregating.get("op_seconds", &[]).unwrap();
    assert_eq!(a.count, 2);
    assert!(a.sum >= seconds);
    let h = capture
        .exposition()
        .unwrap()
        .histogram("op_seconds", &[])
        .unwrap();
    assert_eq!(h.count, 2);
    assert!((h.sum - a.sum).abs() < 1e-9);
}

#[test]
fn filtering_over_aggregating_over_prometheus_composes() {
    let capture = Capture::new();
    let stack =
        FilteringCollector::deny(AggregatingCollector::new(capture.collector())).prefix("debug_");
    stack.record_histogram("request_duration", 0.25, &["endpoint", "/users"]);
    stack.record_histogram("debug_duration", 0.25, &[]);
    stack.increment_counter("requests_total", &["method", "GET"]);
    let aggregates = stack.inner();
    assert_eq!(
        aggregates
            .get("request_duration", &["endpoint", "/users"])
            .map(|a| a.count),
        Some(1)
    );
    assert!(aggregates.get("debug_duration", &[]).is_none());
    let s = capture.exposition().unwrap();
    assert_eq!(s.value("requests_total", &["method", "GET"]), Some(1.0));
    assert_eq!(
        s.histogram("request_duration", &["endpoint", "/users"])
            .map(|h| h.count),
        Some(1)
    );
    assert_eq!(s.count("debug_duration_count"), 0);
}

#[test]
fn decorators_wrap_trait_objects() {
    let capture = Capture::new();
    let shared: Arc<dyn Collector> = Arc::new(capture.collector());
    let filtered: Box<dyn Collector> =
        Box::new(FilteringCollector::deny(shared.clone()).name("dropped_total"));
    filtered.increment_counter("kept_total", &[]);
    filtered.increment_counter("dropped_total", &[]);
    let s = capture.exposition().unwrap();
    assert_eq!(s.value("kept_total", &[]), Some(1.0));
    assert_eq!(s.count("dropped_total"), 0);
}

/// The design's `CustomCollector`: wrap a collector, add behaviour, forward.
struct LabelledCollector<C> {
    inner: C,
    region: &'static str,
}

impl<C: Collector> LabelledCollector<C> {
    fn with_region<'a>(&self, labels: &[&'a str]) -> Vec<&'a str>
    where
        'static: 'a,
    {
        let mut all = labels.to_vec();
        all.extend(["region", self.region]);
        all
    }
}

impl<C: Collector> Collector for LabelledCollector<C> {
    fn increment_counter(&self, name: &str, labels: &[&str]) {
        self.inner
            .increment_counter(name, &self.with_region(labels));
    }
    fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
        self.inner
            .record_histogram(name, value, &self.with_region(labels));
    }
    fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
        self.inner
            .record_gauge(name, value, &self.with_region(labels));
    }
    fn start_timer(&self, name: &str) -> Timer {
        self.inner.start_timer(name)
    }
    fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]) {
        self.inner
            .add_to_gauge(name, delta, &self.with_region(labels));
    }
}

#[test]
fn a_custom_collector_adds_behaviour_and_forwards() {
    let capture = Capture::new();
    let custom = LabelledCollector {
        inner: capture.collector(),
        region: "eu-west",
    };
    custom.increment_counter("requests_total", &["method", "GET"]);
    let s = capture.exposition().unwrap();
    assert_eq!(
        s.value("requests_total", &["method", "GET", "region", "eu-west"]),
        Some(1.0)
    );
    // The global collector composes the same way.
    let global = FilteringCollector::allow(AggregatingCollector::new(PrometheusCollector::new()))
        .prefix("composed_");
    global.increment_counter("composed_total", &[]);
    assert_eq!(
        global.inner().get("composed_total", &[]).map(|a| a.count),
        Some(1)
    );
}

#[test]
fn descriptions_pass_through_the_decorators_and_a_filter_keeps_its_rules() {
    let capture = Capture::new();
    let c = AggregatingCollector::new(
        FilteringCollector::deny(capture.collector()).prefix("internal_"),
    );
    c.describe_counter("jobs_total", None, "Jobs finished.");
    c.describe_gauge("internal_depth", None, "Hidden.");
    c.describe_histogram(
        "job_seconds",
        Some(porter_metrics::metrics::Unit::Seconds),
        "Seconds per job.",
    );
    c.increment_counter("jobs_total", &[]);
    c.record_histogram("job_seconds", 0.5, &[]);
    // Recorded past the filter, the denied name is described nowhere.
    capture.collector().record_gauge("internal_depth", 1.0, &[]);
    let s = capture.exposition().unwrap();
    assert_eq!(s.help("jobs_total"), Some("Jobs finished."));
    assert_eq!(s.help("job_seconds"), Some("Seconds per job."));
    assert_eq!(s.help("internal_depth"), Some("Gauge for internal_depth"));
}
