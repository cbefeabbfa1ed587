//! A recording thread never waits for a scrape: the latency of `record_histogram` calls on
//! one thread while another thread renders 100 000 series in a loop, against the same with
//! no scraping.
//!
//! Run with `cargo bench --bench record_latency` (plain `main`, no criterion: the figures
//! are percentiles of single calls). Each scenario records for `SECONDS` into one histogram
//! series of a pipeline that holds 100 000 other series (counters and histograms), timing
//! every call with `std::time::Instant`; in both scenarios the upkeep thread scans the
//! series for idle expiry every 100 ms (idle timeout one hour: nothing expires). The table
//! gives p50, p99, p99.9 and the maximum, and how many renders ran meanwhile.
//!
//! Without `--bench` (e.g. `cargo test --benches`) it runs a short check.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use porter_metrics::{Builder, Collector, Limits, LocalRecorder};

/// Call latencies in ns: exact counts up to `EXACT_NS`, then the exact values beyond.
struct Latencies {
    counts: Vec<u64>,
    slow: Vec<u64>,
}

const EXACT_NS: usize = 100_000;

impl Latencies {
    fn new() -> Self {
        Self {
            counts: vec![0; EXACT_NS],
            slow: Vec::new(),
        }
    }

    fn add(&mut self, ns: u64) {
        match self.counts.get_mut(ns as usize) {
            Some(count) => *count += 1,
            None => self.slow.push(ns),
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.slow.len() as u64
    }

    fn percentile(&self, p: f64) -> u64 {
        let rank = ((self.total() as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (ns, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return ns as u64;
            }
        }
        let mut slow = self.slow.clone();
        slow.sort_unstable();
        slow.get((rank - seen).saturating_sub(1) as usize)
            .copied()
            .unwrap_or(u64::MAX)
    }

    fn max(&self) -> u64 {
        self.slow.iter().copied().max().unwrap_or_else(|| {
            self.counts
                .iter()
                .rposition(|c| *c > 0)
                .map_or(0, |ns| ns as u64)
        })
    }
}

fn pipeline(series: usize) -> LocalRecorder {
    let recorder = Builder::new()
        .limits(Limits::unlimited())
        .idle_timeout(Duration::from_secs(3600))
        .upkeep_interval(Duration::from_millis(100))
        .build_local();
    let collector = recorder.collector();
    for i in 0..series {
        let id = i.to_string();
        if i % 2 == 0 {
            collector.increment_counter("background_total", &["id", &id]);
        } else {
            collector.record_histogram("background_seconds", 0.1, &["id", &id]);
        }
    }
    recorder.render(); // a first render: the encoder's buffer sized
    recorder
}

/// Records for `seconds`, timing each call; with `scrape`, another thread renders in a
/// loop meanwhile. Returns the latencies and the number of renders.
fn run(recorder: &LocalRecorder, seconds: f64, scrape: bool) -> (Latencies, u64) {
    let collector = recorder.collector();
    let done = AtomicBool::new(false);
    let renders = AtomicU64::new(0);
    let mut latencies = Latencies::new();
    std::thread::scope(|s| {
        if scrape {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    black_box(recorder.render());
                    renders.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let labels = ["endpoint", "/probe"];
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let mut i = 0u64;
        while Instant::now() < until {
            for _ in 0..1000 {
                i += 1;
                let value = (i % 100) as f64 / 1000.0;
                let start = Instant::now();
                collector.record_histogram("probe_seconds", value, &labels);
                latencies.add(start.elapsed().as_nanos() as u64);
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    (latencies, renders.load(Ordering::Relaxed))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let (series, seconds) = if benching {
        (100_000, 5.0)
    } else {
        (1_000, 0.2)
    };
    let recorder = pipeline(series);
    let began = Instant::now();
    recorder.render();
    println!(
        "record_latency: one render of {series} series takes {:.1} ms",
        began.elapsed().as_secs_f64() * 1e3
    );
    println!();
    println!(
        "| record_histogram, ns per call | calls | p50 | p99 | p99.9 | max | renders meanwhile |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, scrape) in [
        ("no scraping", false),
        ("a thread rendering in a loop", true),
    ] {
        let (latencies, renders) = run(&recorder, seconds, scrape);
        println!(
            "| {label} | {} | {} | {} | {} | {} | {renders} |",
            latencies.total(),
            latencies.percentile(0.50),
            latencies.percentile(0.99),
            latencies.percentile(0.999),
            latencies.max(),
        );
    }
}
