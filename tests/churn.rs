//! Label churn: about 1 000 new series a second. With an idle timeout the series count and
//! the heap level off (idle series are hidden, then reclaimed); without one, the
//! cardinality limits cap them.
//! Heap is measured with a counting allocator (this binary only).
//!
//! `cargo test --release --test churn -- --nocapture` prints the plateaus.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, Collector, Limits, LocalRecorder};

#[global_allocator]
static ALLOCATOR: common::counting::Counting = common::counting::Counting;

/// New series per second.
const RATE: u64 = 1_000;

/// How long past the idle timeout a series may stay: the expiry's coarse clock and its
/// upkeep interval (a quarter second here), plus a loaded machine's delay of the upkeep.
const SLACK: Duration = Duration::from_secs(2);

/// One second of the run: tracked series, rendered churn series, live heap bytes, and the
/// series created in the last `window` (the most that may still be alive).
#[derive(Debug, Clone, Copy)]
struct Sample {
    tracked: f64,
    rendered: usize,
    heap: i64,
    recent: u64,
}

/// Records `RATE` new label sets a second for `seconds`, sampling once a second. A stalled
/// test thread catches up in a burst, so the samples count what was created in the last
/// `window` by the clock rather than assume the rate.
fn churn(recorder: &LocalRecorder, seconds: u64, window: Duration) -> Vec<Sample> {
    let collector = recorder.collector();
    let started = Instant::now();
    let mut next_id = 0u64;
    // When each batch began, and the first id it created.
    let mut batches: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut samples = Vec::new();
    for second in 0..seconds {
        // Ten batches a second, paced against the clock, never ahead of it.
        for batch in 0..10 {
            batches.push_back((Instant::now(), next_id));
            for _ in 0..RATE / 10 {
                collector.increment_counter("churn_total", &["session", &next_id.to_string()]);
                next_id += 1;
            }
            let due = Duration::from_millis(second * 1000 + (batch + 1) * 100);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait); // pacing the load, not synchronising
            }
        }
        let scrape = Exposition::parse(&recorder.render()).expect("valid");
        // Batches that began before the window can have no series left, but the newest
        // such batch may have been running across its start: it counts.
        let since = Instant::now().checked_sub(window).unwrap_or(started);
        while batches.len() > 1 && batches[1].0 <= since {
            batches.pop_front();
        }
        samples.push(Sample {
            tracked: scrape.value("porter_metrics_series", &[]).unwrap_or(-1.0),
            rendered: scrape.count("churn_total"),
            heap: common::counting::live(),
            recent: next_id - batches.front().map_or(0, |b| b.1),
        });
    }
    samples
}

fn max_heap(samples: &[Sample]) -> i64 {
    samples.iter().map(|s| s.heap).max().unwrap_or(0)
}

#[test]
#[ignore = "soak test: heap over time (run .ci/test)"]
fn churn_levels_off_with_an_idle_timeout_and_is_capped_without_one() {
    // With an idle timeout of 2 s: 30 s of churn.
    let idle = Duration::from_secs(2);
    // Limits far above the churn: only the expiry may hold the count.
    let recorder = Builder::new()
        .idle_timeout(idle)
        .limits(
            Limits::default()
                .with_series_per_metric(1_000_000)
                .with_series(1_000_000),
        )
        .build_local();
    // A series is shown until idle for the timeout, then kept hidden (in place, its memory
    // still held) until idle for as long again: the series of that window may be alive.
    let samples = churn(&recorder, 30, 2 * idle + SLACK);
    let (middle, last) = (&samples[10..20], &samples[20..30]);
    // A series stays until it has been idle for the timeout, and the count of tracked
    // series is the store's own: both are bounded by the series created since then.
    for s in &samples[5..] {
        assert!(s.rendered as u64 <= s.recent, "{s:?}");
        assert!(s.tracked <= s.recent as f64, "{s:?}");
    }
    // Leveled off: over the last ten seconds the heap grows by less than a kept series
    // would cost (a record, its value, its label strings and index slots: 60 bytes or
    // more) for each series created then. Memory grows in doubling steps as the count of
    // live series reaches a new high, which a burst after a stall can do at any time: one
    // step is less than that.
    let created_last: u64 = 10 * RATE;
    let growth = max_heap(last) - max_heap(middle);
    assert!(
        growth < 40 * created_last as i64,
        "the heap keeps growing: {} then {} bytes ({} per series created meanwhile)",
        max_heap(middle),
        max_heap(last),
        growth / created_last as i64,
    );
    println!(
        "idle timeout {idle:?}, {RATE} new series/s for 30 s: plateau {} rendered series, {} tracked, heap {} KiB (10-20 s) and {} KiB (20-30 s)",
        last.iter().map(|s| s.rendered).max().unwrap_or(0),
        last.iter().map(|s| s.tracked as u64).max().unwrap_or(0),
        max_heap(middle) / 1024,
        max_heap(last) / 1024,
    );
    drop(recorder);

    // Without one: the per-metric limit caps the series; the rest folds into one.
    let recorder = Builder::new()
        .limits(Limits::default().with_series_per_metric(2_000))
        .build_local();
    let samples = churn(&recorder, 10, Duration::ZERO);
    for s in &samples {
        assert!(s.rendered <= 2_001, "{s:?}");
    }
    let scrape = Exposition::parse(&recorder.render()).unwrap();
    assert_eq!(
        scrape.sum("churn_total"),
        (10 * RATE) as f64,
        "totals stay right"
    );
    let (middle, last) = (&samples[3..6], &samples[6..10]);
    assert!(
        max_heap(last) as f64 <= 1.25 * max_heap(middle) as f64,
        "the heap keeps growing past the limit: {} then {} bytes",
        max_heap(middle),
        max_heap(last)
    );
    println!(
        "no idle timeout, limit 2000 series per metric, {RATE} new label sets/s for 10 s: {} rendered series, heap {} KiB (3-6 s) and {} KiB (6-10 s)",
        last.iter().map(|s| s.rendered).max().unwrap_or(0),
        max_heap(middle) / 1024,
        max_heap(last) / 1024,
    );
}
