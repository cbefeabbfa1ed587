//! Histogram observations do not pile up when nobody scrapes: the pipeline's upkeep thread
//! drains them into buckets. Measured with a counting allocator (this binary only).

mod common;

use std::time::{Duration, Instant};

use porter_metrics::{Builder, Collector};

#[global_allocator]
static ALLOCATOR: common::counting::Counting = common::counting::Counting;

/// Bytes the exporter keeps per undrained observation (value and timestamp).
const BYTES_PER_OBSERVATION: i64 = 16;

#[test]
#[ignore = "soak test: heap over time (run .ci/test)"]
fn upkeep_drains_histograms_without_scrapes() {
    let recorder = Builder::new()
        .upkeep_interval(Duration::from_millis(20))
        .build_local();
    let collector = recorder.collector();
    collector.record_histogram("unscraped_seconds", 0.1, &[]);
    let before = common::counting::live();
    let started = Instant::now();
    let (mut observations, mut peak) = (1u64, 0i64);
    // Record for a bounded time, spanning many upkeep intervals, and watch the heap.
    while started.elapsed() < Duration::from_secs(3) && observations < 5_000_000 {
        for i in 0..10_000u32 {
            collector.record_histogram("unscraped_seconds", f64::from(i % 100) / 100.0, &[]);
        }
        observations += 10_000;
        peak = peak.max(common::counting::live() - before);
    }
    let undrained = observations as i64 * BYTES_PER_OBSERVATION;
    assert!(
        observations >= 100_000,
        "too few observations to conclude: {observations}"
    );
    assert!(
        peak < undrained / 4,
        "heap grew {peak} bytes for {observations} observations ({undrained} bytes if never drained)"
    );
    // Nothing was lost: every observation is in the buckets.
    let scrape = porter_metrics::testing::Exposition::parse(&recorder.render()).unwrap();
    assert_eq!(
        scrape.histogram("unscraped_seconds", &[]).unwrap().count,
        observations
    );
}
