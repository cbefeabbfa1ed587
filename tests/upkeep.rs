//! Histogram observations take no memory of their own: each one is counted into its bucket
//! at once, scraped or not, so nothing piles up between scrapes and nothing needs draining.
//! Measured with a counting allocator (this binary only).

mod common;

use std::time::{Duration, Instant};

use porter_metrics::{Builder, Collector};

#[global_allocator]
static ALLOCATOR: common::counting::Counting = common::counting::Counting;

#[test]
#[ignore = "soak test: heap over time (run .ci/test)"]
fn unscraped_histograms_do_not_grow_the_heap() {
    let recorder = Builder::new().build_local();
    let collector = recorder.collector();
    collector.record_histogram("unscraped_seconds", 0.1, &[]);
    let before = common::counting::live();
    let started = Instant::now();
    let (mut observations, mut peak) = (1u64, 0i64);
    // Record for a bounded time and watch the heap.
    while started.elapsed() < Duration::from_secs(3) && observations < 5_000_000 {
        for i in 0..10_000u32 {
            collector.record_histogram("unscraped_seconds", f64::from(i % 100) / 100.0, &[]);
        }
        observations += 10_000;
        peak = peak.max(common::counting::live() - before);
    }
    assert!(
        observations >= 100_000,
        "too few observations to conclude: {observations}"
    );
    // The old buffers kept 16 bytes per observation until a drain.
    assert!(
        peak < 4096,
        "heap grew {peak} bytes for {observations} observations"
    );
    // Nothing was lost: every observation is in the buckets.
    let scrape = porter_metrics::testing::Exposition::parse(&recorder.render()).unwrap();
    assert_eq!(
        scrape.histogram("unscraped_seconds", &[]).unwrap().count,
        observations
    );
}
