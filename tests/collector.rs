//! The Collector interface: values, labels, timers, HELP text, composition.

use std::sync::Arc;

use porter_metrics::testing::{Capture, Exposition};
use porter_metrics::{
    Builder, Collector, LocalRecorder, Matcher, NoopCollector, PrometheusCollector, Timer,
    DEFAULT_BUCKETS,
};

fn scrape(capture: &Capture) -> Exposition {
    capture.exposition().expect("the exposition parses")
}

#[test]
fn counters_add_one_per_call() {
    let capture = Capture::new();
    let c = capture.collector();
    for _ in 0..5 {
        c.increment_counter("requests_total", &["method", "GET"]);
    }
    c.increment_counter("requests_total", &["method", "POST"]);
    let s = scrape(&capture);
    assert_eq!(s.value("requests_total", &["method", "GET"]), Some(5.0));
    assert_eq!(s.value("requests_total", &["method", "POST"]), Some(1.0));
    assert_eq!(s.kind("requests_total"), Some("counter"));
}

#[test]
fn gauges_set_and_keep_non_finite_values() {
    let capture = Capture::new();
    let c = capture.collector();
    c.record_gauge("queue_size", 42.0, &["queue", "default"]);
    c.record_gauge("queue_size", 7.5, &["queue", "default"]);
    c.record_gauge("ratio", f64::NAN, &[]);
    c.record_gauge("ceiling", f64::INFINITY, &[]);
    c.record_gauge("floor", f64::NEG_INFINITY, &[]);
    let s = scrape(&capture);
    assert_eq!(s.value("queue_size", &["queue", "default"]), Some(7.5));
    assert!(s.value("ratio", &[]).is_some_and(f64::is_nan));
    assert_eq!(s.value("ceiling", &[]), Some(f64::INFINITY));
    assert_eq!(s.value("floor", &[]), Some(f64::NEG_INFINITY));
}

#[test]
fn histograms_use_prometheus_default_buckets() {
    let capture = Capture::new();
    let c = capture.collector();
    for v in [0.003, 0.42, 0.42, 3.0, 99.0] {
        c.record_histogram("request_duration", v, &["endpoint", "/api/users"]);
    }
    let h = scrape(&capture)
        .histogram("request_duration", &["endpoint", "/api/users"])
        .expect("histogram series");
    let bounds: Vec<f64> = h.buckets.iter().map(|(le, _)| *le).collect();
    let mut expected = DEFAULT_BUCKETS.to_vec();
    expected.push(f64::INFINITY);
    assert_eq!(bounds, expected);
    assert_eq!(h.count, 5);
    assert!((h.sum - 102.843).abs() < 1e-9);
    assert_eq!(h.bucket(0.005), Some(1));
    assert_eq!(h.bucket(0.5), Some(3));
    assert_eq!(h.bucket(5.0), Some(4));
    assert_eq!(h.bucket(f64::INFINITY), Some(5));
}

#[test]
fn buckets_are_configurable_globally_and_per_metric() {
    let recorder = Builder::new()
        .buckets(&[1.0, 2.0])
        .unwrap()
        .buckets_for_metric(Matcher::Full("sizes".into()), &[10.0, 100.0])
        .unwrap()
        .build_local();
    let capture = Capture::with_recorder(recorder);
    let c = capture.collector();
    c.record_histogram("latency", 1.5, &[]);
    c.record_histogram("sizes", 50.0, &[]);
    let s = scrape(&capture);
    let latency = s.histogram("latency", &[]).unwrap();
    assert_eq!(
        latency.buckets,
        [(1.0, 0), (2.0, 1), (f64::INFINITY, 1)].to_vec()
    );
    let sizes = s.histogram("sizes", &[]).unwrap();
    assert_eq!(
        sizes.buckets,
        [(10.0, 0), (100.0, 1), (f64::INFINITY, 1)].to_vec()
    );
}

#[test]
fn the_same_label_pairs_in_any_order_are_one_series() {
    let capture = Capture::new();
    let c = capture.collector();
    c.increment_counter("hits_total", &["a", "1", "b", "2", "c", "3"]);
    c.increment_counter("hits_total", &["c", "3", "a", "1", "b", "2"]);
    c.increment_counter("hits_total", &["b", "2", "c", "3", "a", "1"]);
    capture
        .run(|| metrics::counter!("hits_total", "c" => "3", "b" => "2", "a" => "1").increment(1));
    let s = scrape(&capture);
    assert_eq!(s.count("hits_total"), 1);
    assert_eq!(
        s.value("hits_total", &["a", "1", "b", "2", "c", "3"]),
        Some(4.0)
    );
}

#[test]
fn an_odd_label_count_drops_the_dangling_key_and_counts_it() {
    let capture = Capture::new();
    let c = capture.collector();
    c.increment_counter("odd_total", &["method", "GET", "dangling"]);
    c.increment_counter("odd_total", &["method", "GET", "dangling"]);
    c.record_gauge("odd_gauge", 1.0, &["lonely"]);
    let s = scrape(&capture);
    assert_eq!(s.value("odd_total", &["method", "GET"]), Some(2.0));
    assert_eq!(s.value("odd_gauge", &[]), Some(1.0));
    assert_eq!(
        s.value(
            "porter_metrics_dropped_labels_total",
            &["reason", "dangling_key"]
        ),
        Some(3.0)
    );
}

#[test]
fn a_stopped_timer_returns_the_elapsed_seconds_and_records_them_once() {
    let capture = Capture::new();
    let c = capture.collector();
    let timer = c.start_timer("operation_duration");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let seconds = timer.stop();
    // The timer's clock and the sleep's may disagree by a hair.
    assert!(seconds >= 0.02 * 0.999, "{seconds}");
    let h = scrape(&capture)
        .histogram("operation_duration", &[])
        .unwrap();
    assert_eq!(h.count, 1);
    assert!(
        (h.sum - seconds).abs() < 1e-9,
        "recorded {} returned {seconds}",
        h.sum
    );
}

#[test]
fn a_dropped_timer_records_at_drop_exactly_once() {
    let capture = Capture::new();
    let c = capture.collector();
    {
        let _scope = c.start_timer("scope_seconds");
    }
    let stopped = c.start_timer("scope_seconds");
    let _ = stopped.stop(); // stop consumes: the drop that follows records nothing more
    let s = scrape(&capture);
    assert_eq!(s.histogram("scope_seconds", &[]).unwrap().count, 2);
}

#[test]
fn collector_metrics_get_a_default_help_text() {
    let capture = Capture::new();
    let c = capture.collector();
    c.increment_counter("c_total", &[]);
    c.record_gauge("g", 1.0, &[]);
    c.record_histogram("h", 1.0, &[]);
    let s = scrape(&capture);
    assert_eq!(s.help("c_total"), Some("Counter for c_total"));
    assert_eq!(s.help("g"), Some("Gauge for g"));
    assert_eq!(s.help("h"), Some("Histogram for h"));
}

#[test]
fn undescribed_macro_metrics_get_the_same_default_help_text() {
    let capture = Capture::new();
    capture.run(|| {
        metrics::counter!("m_total").increment(1);
        metrics::gauge!("mg").set(1.0);
        metrics::describe_histogram!("mh", "Described.");
        metrics::histogram!("mh").record(1.0);
    });
    let s = scrape(&capture);
    assert_eq!(s.help("m_total"), Some("Counter for m_total"));
    assert_eq!(s.help("mg"), Some("Gauge for mg"));
    assert_eq!(s.help("mh"), Some("Described."));
}

#[test]
fn a_user_description_wins_over_the_default_in_either_order() {
    let capture = Capture::new();
    let c = capture.collector();
    capture.run(|| metrics::describe_counter!("first_total", "Described first."));
    c.increment_counter("first_total", &[]);
    c.increment_counter("then_total", &[]);
    capture.run(|| metrics::describe_counter!("then_total", "Described after use."));
    let s = scrape(&capture);
    assert_eq!(s.help("first_total"), Some("Described first."));
    assert_eq!(s.help("then_total"), Some("Described after use."));
}

#[test]
fn macros_and_the_collector_land_in_one_scrape() {
    let capture = Capture::new();
    let c = capture.collector();
    c.increment_counter("shared_total", &["path", "/"]);
    capture.run(|| {
        metrics::counter!("shared_total", "path" => "/").increment(2);
        metrics::gauge!("macro_gauge").set(3.0);
        // A global collector is bound to the global pipeline, whatever the scope.
        PrometheusCollector::new().increment_counter("global_only_total", &[]);
    });
    let s = scrape(&capture);
    assert_eq!(s.value("shared_total", &["path", "/"]), Some(3.0));
    assert_eq!(s.value("macro_gauge", &[]), Some(3.0));
    assert_eq!(s.value("global_only_total", &[]), None);
}

#[test]
fn collectors_work_behind_every_kind_of_pointer() {
    let recorder = LocalRecorder::new();
    let base = recorder.collector();
    let arc: Arc<dyn Collector> = Arc::new(base.clone());
    let boxed: Box<dyn Collector> = Box::new(base.clone());
    let by_ref: &dyn Collector = &base;
    fn use_it(c: impl Collector) {
        c.increment_counter("pointers_total", &[]);
    }
    use_it(&base);
    use_it(arc.clone());
    use_it(boxed);
    use_it(by_ref);
    use_it(Arc::new(base));
    let s = Exposition::parse(&recorder.render()).unwrap();
    assert_eq!(s.value("pointers_total", &[]), Some(5.0));
}

#[test]
fn the_noop_collector_records_nothing_but_times() {
    let c = NoopCollector;
    c.increment_counter("x", &["a", "b"]);
    c.record_gauge("x", 1.0, &[]);
    c.record_histogram("x", 1.0, &[]);
    let timer = c.start_timer("x");
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(timer.stop() >= 0.005 * 0.999);
}

#[test]
fn custom_timers_record_once_through_their_callback() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    drop(Timer::with_callback(move |s| sink.lock().unwrap().push(s)));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn collectors_are_usable_from_many_threads() {
    let capture = Capture::new();
    let c = capture.collector();
    std::thread::scope(|s| {
        for t in 0..4 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..1000 {
                    c.increment_counter("threads_total", &["t", &(t % 2).to_string()]);
                    c.record_histogram("threads_seconds", f64::from(i % 3), &[]);
                }
            });
        }
    });
    let s = scrape(&capture);
    assert_eq!(s.value("threads_total", &["t", "0"]), Some(2000.0));
    assert_eq!(s.value("threads_total", &["t", "1"]), Some(2000.0));
    assert_eq!(s.histogram("threads_seconds", &[]).unwrap().count, 4000);
}

#[test]
fn label_sets_past_the_per_metric_limit_fold_into_the_overflow_series() {
    let recorder = Builder::new()
        .limits(porter_metrics::Limits::default().with_series_per_metric(10))
        .build_local();
    let capture = Capture::with_recorder(recorder);
    let c = capture.collector();
    // Short values like "u1" and "u11" must count as distinct series.
    for i in 0..40 {
        c.increment_counter("users_total", &["user", &format!("u{i}")]);
    }
    let s = scrape(&capture);
    assert_eq!(s.count("users_total"), 11);
    assert_eq!(s.sum("users_total"), 40.0);
    assert_eq!(
        s.value("users_total", &["otel_metric_overflow", "true"]),
        Some(30.0)
    );
    assert_eq!(
        s.value(
            "porter_metrics_overflow_samples_total",
            &["metric", "users_total"]
        ),
        Some(30.0)
    );
}

#[test]
fn global_labels_are_on_every_series_and_printed_exactly() {
    let recorder = Builder::new()
        .global_label("service", "flight\\sql \"eu\"")
        .unwrap()
        .build_local();
    let capture = Capture::with_recorder(recorder);
    let c = capture.collector();
    c.increment_counter("requests_total", &["method", "GET"]);
    c.increment_counter("requests_total", &["service", "override"]);
    let s = scrape(&capture);
    assert_eq!(
        s.value(
            "requests_total",
            &["method", "GET", "service", "flight\\sql \"eu\""]
        ),
        Some(1.0)
    );
    // A label of the same key on the series wins.
    assert_eq!(
        s.value("requests_total", &["service", "override"]),
        Some(1.0)
    );
}
