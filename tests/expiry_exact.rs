//! Idle expiry at the smallest settings the builder accepts (a 100 ms timeout, upkeep every
//! 50 ms) under writers that pause long enough for their series to be hidden and reclaimed,
//! and resume at any moment: kept `metrics` handles (some folded into the overflow series),
//! the macros, and collector calls, counters and histograms (`record_many` too).
//!
//! Every increment and observation is accounted for: what the exposition shows, plus what
//! expiry keeps out of it (hidden series, and series it reclaimed with their values).
//! 0.4 lost thousands of increments in runs like this one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use porter_metrics::testing::{Capture, Exposition};
use porter_metrics::{Builder, Collector, Limits};

const THREADS: usize = 4;
/// Label sets per thread and way of recording; past the per-metric limit some fold.
const SETS: usize = 6;
const LIMIT: usize = 12;
const RUN: Duration = Duration::from_secs(3);

/// A small, fast, deterministic generator (xorshift), so that every run pauses differently
/// per thread without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The samples of `names` in a scrape (counters' values, histograms' `_count`s).
fn exported(scrape: &Exposition, names: &[&str]) -> u64 {
    names.iter().map(|name| scrape.sum(name) as u64).sum()
}

#[test]
fn nothing_written_is_lost_to_idle_expiry_at_its_smallest_settings() {
    let capture = Capture::with_recorder(
        Builder::new()
            .idle_timeout(Duration::from_millis(1))
            .upkeep_interval(Duration::from_millis(1))
            .limits(Limits::default().with_series_per_metric(LIMIT))
            .build_local(),
    );
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (capture, written, stop) = (capture.clone(), written.clone(), stop.clone());
            std::thread::spawn(move || {
                let collector = capture.collector();
                let thread = t.to_string();
                let sets: Vec<String> = (0..SETS).map(|i| i.to_string()).collect();
                // Kept for the whole run: 24 label sets against a limit of 12.
                let (kept, kept_histograms): (Vec<_>, Vec<_>) = capture.run(|| {
                    sets.iter()
                        .map(|i| {
                            let labels = [("t", thread.clone()), ("set", i.clone())];
                            (
                                metrics::counter!("kept_total", &labels),
                                metrics::histogram!("kept_seconds", &labels),
                            )
                        })
                        .unzip()
                });
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                let mut mine = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let i = rng.next() as usize % SETS;
                    let n = 1 + rng.next() % 3;
                    kept[i].increment(n);
                    kept_histograms[i].record_many(0.5, n as usize);
                    capture.run(|| {
                        metrics::counter!("macro_total", "t" => thread.clone(), "set" => sets[i].clone())
                            .increment(n);
                    });
                    collector.add_to_counter("collector_total", n, &["t", &thread, "set", &sets[i]]);
                    collector.record_histogram("collector_seconds", 0.1, &["t", &thread, "set", &sets[i]]);
                    mine += 4 * n + 1;
                    // Now and then a pause of up to 300 ms: three idle timeouts, long enough to
                    // be hidden and reclaimed, resumed at any point of that.
                    if rng.next().is_multiple_of(64) {
                        std::thread::sleep(Duration::from_millis(rng.next() % 300));
                    }
                }
                written.fetch_add(mine, Ordering::Relaxed);
            })
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < RUN {
        std::thread::sleep(Duration::from_millis(20)); // the length of the run, not a sync
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("a writer ends");
    }
    // Both readings of one moment: expiry held still.
    let still = capture.pause_upkeep();
    let scrape = capture.exposition().expect("a valid exposition");
    let families = [
        "kept_total",
        "kept_seconds_count",
        "macro_total",
        "collector_total",
        "collector_seconds_count",
    ];
    let shown = exported(&scrape, &families);
    let kept_out = capture.unexported_samples();
    drop(still);
    let written = written.load(Ordering::Relaxed);
    assert_eq!(
        shown + kept_out,
        written,
        "shown {shown} + kept out by expiry {kept_out}"
    );
    // Expiry did its work meanwhile (else this test proves nothing).
    assert!(kept_out > 0, "nothing was ever hidden or reclaimed");
    // The limit held: at most LIMIT series per metric, and the overflow series.
    for name in families {
        assert!(
            scrape.count(name) <= LIMIT + 1,
            "{name}: {}",
            scrape.count(name)
        );
    }
}
