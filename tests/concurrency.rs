//! Concurrent recording into one series of a standalone server while a third thread scrapes
//! it over HTTP: no increment is lost, every scrape is a valid exposition, and what a scrape
//! shows never goes backwards.
//!
//! Histograms are checked exact from two threads with the scrape after the writers:
//! `metrics-util` 0.20.4's `AtomicBucket` (the exporter's histogram storage) can lose an
//! observation that is being pushed at the very moment a render drains the bucket, a race
//! upstream that no recorder layer can close (see the README's known limitations).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, MetricsServer};

/// Calls per writer thread.
const PER_THREAD: u64 = 100_000;

/// How long the scraper keeps going at most.
const SCRAPE_LIMIT: Duration = Duration::from_secs(60);

/// Scrapes `addr` until `done` is set (at least once, at most for `SCRAPE_LIMIT`); returns
/// what `read` found in each scrape, or the first problem.
fn scrape_until(
    addr: SocketAddr,
    done: &AtomicBool,
    read: impl Fn(&Exposition) -> f64,
) -> Result<Vec<f64>, String> {
    let deadline = Instant::now() + SCRAPE_LIMIT;
    let mut seen = Vec::new();
    loop {
        let finished = done.load(Ordering::Acquire);
        let response = common::get(addr, "/metrics").map_err(|e| format!("GET: {e}"))?;
        if response.status != 200 {
            return Err(format!("status {}", response.status));
        }
        let scrape = Exposition::parse(&response.body)
            .map_err(|e| format!("scrape {} does not parse: {e}", seen.len() + 1))?;
        let value = read(&scrape);
        if let Some(&last) = seen.last() {
            if value < last {
                return Err(format!(
                    "scrape {} went backwards: {last} then {value}",
                    seen.len() + 1
                ));
            }
        }
        seen.push(value);
        if finished || Instant::now() >= deadline {
            return Ok(seen);
        }
    }
}

/// Runs `writers` (each behind one barrier) while a scraper thread reads `read` from every
/// scrape; returns the intermediate values, checked valid and non-decreasing.
fn record_while_scraping(
    addr: SocketAddr,
    writers: Vec<Box<dyn FnOnce() + Send>>,
    read: impl Fn(&Exposition) -> f64 + Send + 'static,
) -> Vec<f64> {
    let done = Arc::new(AtomicBool::new(false));
    let scraper = {
        let done = done.clone();
        thread::spawn(move || scrape_until(addr, &done, read))
    };
    let barrier = Arc::new(Barrier::new(writers.len()));
    let handles: Vec<_> = writers
        .into_iter()
        .map(|write| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                write();
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("a writer panicked");
    }
    done.store(true, Ordering::Release);
    let seen = scraper
        .join()
        .expect("the scraper panicked")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!seen.is_empty());
    seen
}

#[test]
fn two_threads_counting_one_series_lose_nothing() {
    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");

    let labels: [&[&str]; 2] = [
        &["method", "GET", "code", "200"],
        &["code", "200", "method", "GET"],
    ];
    let writers: Vec<Box<dyn FnOnce() + Send>> = labels
        .into_iter()
        .map(|labels| {
            let collector = server.collector();
            Box::new(move || {
                for _ in 0..PER_THREAD {
                    collector.increment_counter("requests_total", labels);
                }
            }) as Box<dyn FnOnce() + Send>
        })
        .collect();
    let seen = record_while_scraping(addr, writers, |scrape| {
        scrape
            .value("requests_total", &["method", "GET", "code", "200"])
            .unwrap_or(0.0)
    });

    let body = common::scrape(addr);
    let scrape = Exposition::parse(&body).expect("the final scrape parses");
    assert_eq!(
        scrape.value("requests_total", &["code", "200", "method", "GET"]),
        Some(200_000.0),
        "intermediate scrapes: {} ending with {:?}",
        seen.len(),
        seen.last()
    );
    assert_eq!(
        scrape.count("requests_total"),
        1,
        "label order makes no other series"
    );
    assert!(seen.iter().all(|v| *v <= 200_000.0));

    server.stop().expect("stop");
}

#[test]
fn two_threads_observing_one_histogram_lose_nothing() {
    // No drain may run while the writers do: no scrape, and an upkeep far away.
    let server = MetricsServer::builder()
        .standalone()
        .upkeep_interval(Duration::from_secs(3600))
        .build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");

    let barrier = Barrier::new(2);
    thread::scope(|s| {
        for labels in [
            ["endpoint", "/api", "method", "POST"],
            ["method", "POST", "endpoint", "/api"],
        ] {
            let (collector, barrier) = (server.collector(), &barrier);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..PER_THREAD {
                    collector.record_histogram("latency_seconds", 0.5, &labels);
                }
            });
        }
    });

    let scrape = Exposition::parse(&common::scrape(addr)).expect("the scrape parses");
    let histogram = scrape
        .histogram("latency_seconds", &["method", "POST", "endpoint", "/api"])
        .expect("the histogram");
    assert_eq!(histogram.count, 200_000);
    assert_eq!(histogram.sum, 100_000.0, "0.5 × 200 000, exact in f64");
    assert_eq!(histogram.bucket(0.25), Some(0));
    assert_eq!(histogram.bucket(0.5), Some(200_000));
    assert_eq!(histogram.bucket(f64::INFINITY), Some(200_000));
    assert_eq!(scrape.count("latency_seconds_count"), 1);

    server.stop().expect("stop");
}

#[test]
fn macros_and_the_collector_on_one_series_lose_nothing() {
    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    let recorder = server
        .recorder()
        .expect("a standalone server has a recorder");

    let mut writers: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    // Two threads with the macros, labels in either order...
    for reversed in [false, true] {
        let recorder = recorder.clone();
        writers.push(Box::new(move || {
            metrics::with_local_recorder(&recorder, || {
                for _ in 0..PER_THREAD {
                    if reversed {
                        metrics::counter!("mixed_total", "code" => "200", "method" => "GET")
                            .increment(1);
                        metrics::histogram!("mixed_seconds", "code" => "200", "method" => "GET")
                            .record(0.5);
                    } else {
                        metrics::counter!("mixed_total", "method" => "GET", "code" => "200")
                            .increment(1);
                        metrics::histogram!("mixed_seconds", "method" => "GET", "code" => "200")
                            .record(0.5);
                    }
                }
            });
        }));
    }
    // ...and two with the collector, on the same series.
    for labels in [
        ["method", "GET", "code", "200"],
        ["code", "200", "method", "GET"],
    ] {
        let collector = server.collector();
        writers.push(Box::new(move || {
            for _ in 0..PER_THREAD {
                collector.increment_counter("mixed_total", &labels);
                collector.record_histogram("mixed_seconds", 0.5, &labels);
            }
        }));
    }
    let seen = record_while_scraping(addr, writers, |scrape| {
        scrape
            .value("mixed_total", &["method", "GET", "code", "200"])
            .unwrap_or(0.0)
    });

    let scrape = Exposition::parse(&common::scrape(addr)).expect("the final scrape parses");
    assert_eq!(
        scrape.value("mixed_total", &["code", "200", "method", "GET"]),
        Some(400_000.0),
        "intermediate scrapes: {} ending with {:?}",
        seen.len(),
        seen.last()
    );
    assert_eq!(scrape.count("mixed_total"), 1);
    // One series for all four writers, its observations valid (their exact count is
    // checked without concurrent scrapes above: see the module documentation).
    let histogram = scrape
        .histogram("mixed_seconds", &["code", "200", "method", "GET"])
        .expect("the histogram");
    assert!(histogram.count <= 400_000 && histogram.count > 0);
    assert_eq!(histogram.sum, 0.5 * histogram.count as f64);
    assert_eq!(scrape.count("mixed_seconds_count"), 1);

    server.stop().expect("stop");
}
