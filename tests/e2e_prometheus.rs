//! End to end: a real Prometheus (Debian package `prometheus`) scrapes a standalone server
//! of ours, and its query API returns exactly what we recorded. Everything listens on and
//! talks to 127.0.0.1 only. (The Flight SQL example's own end-to-end test is in
//! `examples/flight-sql/tests/`.)

mod common;

use std::time::Duration;

use common::prometheus::Prometheus;
use porter_metrics::{Collector, MetricsServer};

/// Increments of the counter whose exact value Prometheus must show.
const KNOWN_INCREMENTS: u64 = 42;
/// Observations of 0.03 s in the histogram whose median Prometheus must estimate.
const KNOWN_OBSERVATIONS: usize = 100;
/// Real (microsecond) timers into the same histogram.
const TIMERS: usize = 3;

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn prometheus_scrapes_us_and_reads_exact_values() {
    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("listening");
    assert!(addr.ip().is_loopback());
    let collector = server.collector();

    // Known values: a counter recorded exactly 42 times, then never again, and a histogram
    // with 100 observations in the (0.025, 0.05] bucket plus a few tiny real timers.
    for _ in 0..KNOWN_INCREMENTS {
        collector.increment_counter("e2e_requests_total", &["method", "GET"]);
    }
    for _ in 0..KNOWN_OBSERVATIONS {
        collector.record_histogram("e2e_op_seconds", 0.03, &[]);
    }
    for _ in 0..TIMERS {
        let timer = collector.start_timer("e2e_op_seconds");
        timer.stop();
    }

    // Prometheus on a free loopback port, temporary storage, scraping us every second; the
    // guard kills it and removes its directory on drop, also when an assertion fails.
    let prometheus = Prometheus::start(&[addr]);
    let limit = Duration::from_secs(60);

    let up = prometheus.wait_until("up{job=\"porter\"}", limit, |v| v == 1.0);
    assert_eq!(up, Some(1.0), "Prometheus did not scrape us successfully");

    let known = prometheus.wait_until(
        "e2e_requests_total{job=\"porter\",method=\"GET\"}",
        limit,
        |v| v == KNOWN_INCREMENTS as f64,
    );
    assert_eq!(
        known,
        Some(KNOWN_INCREMENTS as f64),
        "last seen: {:?}",
        prometheus.query("e2e_requests_total")
    );

    let median = prometheus.wait_until(
        "histogram_quantile(0.5, e2e_op_seconds_bucket{job=\"porter\"})",
        limit,
        f64::is_finite,
    );
    let median = median.unwrap_or_else(|| {
        panic!(
            "no median; buckets: {:?}",
            prometheus.query("e2e_op_seconds_bucket")
        )
    });
    assert!(
        (0.025..=0.05).contains(&median),
        "median {median} outside the bucket of the known observations"
    );
    let count = prometheus.wait_until("e2e_op_seconds_count{job=\"porter\"}", limit, |v| {
        v == (KNOWN_OBSERVATIONS + TIMERS) as f64
    });
    assert_eq!(count, Some((KNOWN_OBSERVATIONS + TIMERS) as f64));

    drop(prometheus);
    server.stop().expect("stop");
}
