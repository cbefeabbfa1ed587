//! End to end: a real Prometheus (Debian package `prometheus`) scrapes a standalone server
//! of ours while the Flight SQL workload runs, and its query API returns what we recorded.
//! Everything listens on and talks to 127.0.0.1 only.

mod common;
#[path = "../examples/support/workload.rs"]
mod workload;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::prometheus::Prometheus;
use porter_metrics::{Collector, MetricsServer};
use workload::Workload;

/// Increments of the counter whose exact value Prometheus must show.
const KNOWN_INCREMENTS: u64 = 42;
/// Observations of 0.03 s in the histogram whose median Prometheus must estimate.
const KNOWN_OBSERVATIONS: usize = 100;
/// Real (microsecond) timers into the same histogram.
const TIMERS: usize = 3;

/// Stops the background workload and joins it, even when an assertion fails.
struct Background {
    running: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<workload::Tally>>,
}

impl Background {
    fn stop(&mut self) -> workload::Tally {
        self.running.store(false, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("workload thread"))
            .unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn prometheus_scrapes_the_workload_and_reads_exact_values() {
    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("listening");
    assert!(addr.ip().is_loopback());
    let collector = server.collector();
    let recorder = server
        .recorder()
        .expect("a standalone server has a recorder");

    // The workload runs in the background (a step every 10 ms) while Prometheus scrapes.
    let running = Arc::new(AtomicBool::new(true));
    let mut background = Background {
        running: running.clone(),
        thread: Some({
            let collector: Arc<dyn Collector> = Arc::new(collector.clone());
            thread::spawn(move || {
                let mut workload = Workload::new(collector, 7);
                metrics::with_local_recorder(&recorder, || {
                    while running.load(Ordering::Relaxed) {
                        workload.step();
                        thread::sleep(Duration::from_millis(10));
                    }
                });
                workload.tally().clone()
            })
        }),
    };

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
        assert!(timer.stop() < 0.025, "a timer around nothing is fast");
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

    // The workload's metrics are ingested while it runs, every label shape of the errors
    // counter included.
    let rate = prometheus.wait_until(
        "sum(rate(flight_requests_total{job=\"porter\"}[5s]))",
        limit,
        |v| v > 0.0,
    );
    assert!(rate.is_some(), "no request rate");
    for (promql, what) in [
        ("sum(flight_errors_total{method=\"\"})", "errors with {code} only"),
        ("sum(flight_errors_total{table!=\"\"})", "errors with a table"),
        (
            "sum(flight_errors_total{method!=\"\",table=\"\"})",
            "errors with {method, code}",
        ),
        (
            "histogram_quantile(0.5, sum by (le) (rate(flight_request_duration_seconds_bucket[5s])))",
            "a median request duration",
        ),
        ("sum(flight_bytes_sent_total)", "bytes sent through the macros"),
    ] {
        let seen = prometheus.wait_until(promql, limit, |v| v.is_finite() && v > 0.0);
        assert!(seen.is_some(), "{what}: {promql}");
    }

    // Stop the workload: Prometheus converges on exactly what it recorded.
    let tally = background.stop();
    assert!(tally.steps > 0);
    let requests = prometheus.wait_until("sum(flight_requests_total)", limit, |v| {
        v == tally.steps as f64
    });
    assert_eq!(
        requests,
        Some(tally.steps as f64),
        "requests: last seen {:?}",
        prometheus.query("sum(flight_requests_total)")
    );
    let errors = prometheus.wait_until("sum(flight_errors_total)", limit, |v| {
        v == tally.errors as f64
    });
    assert_eq!(errors, Some(tally.errors as f64));
    let bytes = prometheus.wait_until("sum(flight_bytes_sent_total)", limit, |v| {
        v == tally.bytes_total() as f64
    });
    assert_eq!(bytes, Some(tally.bytes_total() as f64));
    let in_flight = prometheus.wait_until("flight_requests_in_flight", limit, |v| v == 0.0);
    assert_eq!(in_flight, Some(0.0));

    drop(prometheus);
    server.stop().expect("stop");
}
