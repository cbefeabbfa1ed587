//! Native histograms and exemplars, ingested by a real Prometheus (Debian's 2.42) on
//! loopback: one with `--enable-feature=native-histograms,exemplar-storage` (it negotiates
//! protobuf), one with no flags (it negotiates OpenMetrics and ingests the classic buckets),
//! both scraping the same server while it records.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::prometheus::Prometheus;
use porter_metrics::{Builder, Collector, Matcher, NativeHistograms};

/// The trace ids the "load" sends, one per observation, cycling.
fn trace_id(i: u64) -> String {
    format!("{:032x}", 0xabc0_0000_u64 + i % 50)
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn prometheus_ingests_native_histograms_and_exemplars() {
    let server = Builder::new()
        .standalone()
        .native_histograms_for_metric(
            Matcher::Suffix("_seconds".into()),
            NativeHistograms::default(),
        )
        .expect("valid settings")
        .build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    let collector = server.collector();
    let native = Prometheus::start_with(&[addr], &["native-histograms", "exemplar-storage"]);
    let classic = Prometheus::start(&[addr]);

    let done = AtomicBool::new(false);
    thread::scope(|s| {
        // Load: observations spread from 1 ms to 1 s, each with a trace id, until done.
        s.spawn(|| {
            let mut i = 0u64;
            while !done.load(Ordering::Acquire) && i < 50_000_000 {
                let value = 0.001 * (1 + (i * 7919) % 1000) as f64;
                let trace = trace_id(i);
                collector.record_histogram_with_exemplar(
                    "request_seconds",
                    value,
                    &["route", "/users"],
                    &["trace_id", &trace],
                );
                i += 1;
                if i.is_multiple_of(200) {
                    thread::sleep(Duration::from_millis(2));
                }
            }
        });

        // Only a native histogram answers histogram_count().
        let count = native.wait_until(
            "histogram_count(rate(request_seconds[1m]))",
            Duration::from_secs(90),
            |v| v > 0.0,
        );
        // The classic buckets reach the Prometheus without native support.
        let classic_count = classic.wait_until(
            "sum(rate(request_seconds_bucket{le=\"+Inf\"}[1m]))",
            Duration::from_secs(90),
            |v| v > 0.0,
        );
        // Exemplars: trace ids the load sent.
        let exemplars = native.trace_ids("request_seconds", Duration::from_secs(60));
        // The same quantile from both, within the classic bucket that holds it.
        let q_native = native.wait_until(
            "histogram_quantile(0.9, rate(request_seconds[1m]))",
            Duration::from_secs(60),
            f64::is_finite,
        );
        let q_classic = classic.wait_until(
            "histogram_quantile(0.9, sum by (le) (rate(request_seconds_bucket[1m])))",
            Duration::from_secs(60),
            f64::is_finite,
        );
        done.store(true, Ordering::Release);

        assert!(count.is_some(), "histogram_count() had no value");
        assert!(
            classic_count.is_some(),
            "the classic buckets were not ingested"
        );
        let ids = exemplars.expect("exemplars were stored");
        let sent: Vec<String> = (0..50).map(trace_id).collect();
        assert!(ids.iter().all(|id| sent.contains(id)), "{ids:?}");
        let (q_native, q_classic) = (
            q_native.expect("native quantile"),
            q_classic.expect("classic quantile"),
        );
        // The 0.9 quantile (~0.9 s) falls in the classic bucket (0.5, 1]: both must agree
        // within that bucket's width.
        assert!(
            (q_native - q_classic).abs() <= 0.5,
            "native {q_native} vs classic {q_classic}"
        );
    });
    server.stop().expect("stop");
}
