//! Limits that hold: under churn with idle expiry (a hidden series written again passes
//! the limits like a new one), for any `record_many` count, and for calls past a limit made
//! again and again (answered from the thread's cache, still counted).

use std::time::{Duration, Instant};

use porter_metrics::self_metrics::{DROPPED_SAMPLES, OVERFLOW_SAMPLES};
use porter_metrics::testing::Capture;
use porter_metrics::{Builder, Collector, Limits};

/// Polls `f` until it holds, for at most ten seconds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_hidden_series_written_again_passes_the_series_limit() {
    let capture = Capture::with_recorder(
        Builder::new()
            .idle_timeout(Duration::from_millis(100))
            .limits(Limits::default().with_series_per_metric(6))
            .build_local(),
    );
    let collector = capture.collector();
    let write = |set: &str, users: std::ops::Range<u32>| {
        for user in users {
            collector.increment_counter("logins_total", &["set", set, "user", &user.to_string()]);
        }
    };
    write("first", 0..6);
    eventually("the first six hidden", || {
        capture.exposition().unwrap().count("logins_total") == 0
    });
    write("second", 0..6);
    // The first six again: no room for them while the second six are shown.
    write("first", 0..6);
    let scrape = capture.exposition().unwrap();
    assert_eq!(
        scrape.count("logins_total"),
        7,
        "six series and the overflow series"
    );
    assert_eq!(
        scrape.value("logins_total", &["otel_metric_overflow", "true"]),
        Some(6.0)
    );
    assert_eq!(
        scrape.value(OVERFLOW_SAMPLES, &["metric", "logins_total"]),
        Some(6.0)
    );
    // Made again and again, from this thread's cache: still folded, still counted.
    for _ in 0..1000 {
        write("first", 0..6);
    }
    let scrape = capture.exposition().unwrap();
    assert_eq!(scrape.count("logins_total"), 7);
    assert_eq!(
        scrape.value("logins_total", &["otel_metric_overflow", "true"]),
        Some(6006.0)
    );
}

#[test]
fn calls_past_the_metric_name_limit_are_dropped_and_counted_every_time() {
    let capture = Capture::with_recorder(
        Builder::new()
            .limits(Limits::default().with_metric_names(1))
            .build_local(),
    );
    let collector = capture.collector();
    collector.increment_counter("kept_total", &[]);
    for _ in 0..500 {
        collector.increment_counter("refused_total", &["a", "b"]);
    }
    let scrape = capture.exposition().unwrap();
    assert_eq!(scrape.value("kept_total", &[]), Some(1.0));
    assert_eq!(scrape.count("refused_total"), 0);
    assert_eq!(
        scrape.value(DROPPED_SAMPLES, &["reason", "metric_limit"]),
        Some(500.0)
    );
}

#[test]
fn record_many_takes_any_count_and_keeps_the_histogram_whole() {
    let capture = Capture::new();
    capture.run(|| {
        let h = metrics::histogram!("batch_seconds");
        h.record_many(1.0, 0);
        h.record_many(1.0, 3);
        h.record_many(1.0, 1 << 63);
        h.record_many(1.0, usize::MAX);
        h.record(2.0);
    });
    // Every later scrape returns, and every later write lands.
    let scrape = capture.exposition().unwrap();
    let h = scrape.histogram("batch_seconds", &[]).expect("exported");
    let cap = 1u64 << 32; // per call
    assert_eq!(h.count, 3 + 2 * cap + 1);
    assert_eq!(h.sum, (3 + 2 * cap) as f64 + 2.0);
    assert_eq!(
        h.buckets.last().map(|b| b.1),
        Some(h.count),
        "+Inf is the count"
    );
    // Cut: 2^63 - 2^32, then 2^64 - 1 - 2^32: more than a counter holds, so it stays at
    // its greatest value rather than wrap (which a scraper would take for a reset).
    let dropped = scrape
        .value(DROPPED_SAMPLES, &["reason", "count_overflow"])
        .expect("counted");
    assert_eq!(dropped, u64::MAX as f64);
}
