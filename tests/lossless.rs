//! Nothing recorded is lost: histogram observations stay exact while scrapes, upkeep and
//! pushes drain the exporter's storage concurrently.
//!
//! Observations are small integers, so every float sum is exact and `_sum` is compared with
//! `==`. Every loop is bounded in count and time.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, Collector, MetricsServer};

/// Observations per writer thread.
const PER_THREAD: u64 = 1_000_000;
/// Scrapes the scraper makes at least, while the writers run and after.
const MIN_SCRAPES: usize = 500;
/// A timer every this many observations.
const TIMER_EVERY: u64 = 1_000;

/// The integer value of the `i`-th observation (0 to 99).
fn value(i: u64) -> f64 {
    (i % 100) as f64
}

/// The exact sum of `value(0..n)`.
fn sum_of_values(n: u64) -> f64 {
    (0..n).map(value).sum()
}

/// Scrapes `addr` until `done` is set and at least `min` scrapes were made (or a minute
/// passed); every scrape must be a valid exposition. Returns the number of scrapes.
fn scrape_until(addr: SocketAddr, done: &AtomicBool, min: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut scrapes = 0;
    while (scrapes < min || !done.load(Ordering::Acquire)) && Instant::now() < deadline {
        let response = common::get(addr, "/metrics").expect("scrape");
        assert_eq!(response.status, 200);
        Exposition::parse(&response.body)
            .unwrap_or_else(|e| panic!("scrape {scrapes} does not parse: {e}"));
        scrapes += 1;
    }
    scrapes
}

#[test]
fn histograms_and_timers_stay_exact_under_concurrent_scrapes_and_upkeep() {
    let server = MetricsServer::builder()
        .standalone()
        .upkeep_interval(Duration::from_millis(10))
        .build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");

    let done = AtomicBool::new(false);
    let timed = AtomicU64::new(0);
    let barrier = Barrier::new(2);
    let scrapes = thread::scope(|s| {
        let scraper = s.spawn(|| scrape_until(addr, &done, MIN_SCRAPES));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (collector, barrier, timed) = (server.collector(), &barrier, &timed);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..PER_THREAD {
                        collector.record_histogram("exact_values", value(i), &["path", "/q"]);
                        if i % TIMER_EVERY == 0 {
                            let _ = collector.start_timer("exact_timer_seconds").stop();
                            timed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("a writer panicked");
        }
        done.store(true, Ordering::Release);
        scraper.join().expect("the scraper panicked")
    });
    assert!(scrapes >= MIN_SCRAPES, "only {scrapes} scrapes");

    let scrape = Exposition::parse(&common::scrape(addr)).expect("the final scrape parses");
    let exact = scrape
        .histogram("exact_values", &["path", "/q"])
        .expect("the histogram is exported");
    assert_eq!(
        exact.count,
        2 * PER_THREAD,
        "lost {} observations over {scrapes} scrapes",
        2 * PER_THREAD - exact.count
    );
    assert_eq!(exact.sum, 2.0 * sum_of_values(PER_THREAD));
    assert_eq!(exact.bucket(f64::INFINITY), Some(2 * PER_THREAD));
    let timers = scrape
        .histogram("exact_timer_seconds", &[])
        .expect("the timer histogram is exported");
    assert_eq!(timers.count, timed.load(Ordering::Relaxed));
    server.stop().expect("stop");
}

#[test]
fn the_macros_stay_exact_under_concurrent_scrapes() {
    let server = MetricsServer::builder()
        .standalone()
        .upkeep_interval(Duration::from_millis(10))
        .build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    let recorder = server.recorder().expect("a standalone recorder");
    let done = AtomicBool::new(false);
    const PER_MACRO_THREAD: u64 = PER_THREAD / 4;
    thread::scope(|s| {
        let scraper = s.spawn(|| scrape_until(addr, &done, MIN_SCRAPES / 5));
        let writers: Vec<_> = [true, false]
            .into_iter()
            .map(|held| {
                let recorder = recorder.clone();
                s.spawn(move || {
                    metrics::with_local_recorder(&recorder, || {
                        // One thread keeps its handle, the other resolves it every call.
                        let handle = metrics::histogram!("macro_values");
                        for i in 0..PER_MACRO_THREAD {
                            if held {
                                handle.record(value(i));
                            } else {
                                metrics::histogram!("macro_values").record(value(i));
                            }
                        }
                    })
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("a writer panicked");
        }
        done.store(true, Ordering::Release);
        scraper.join().expect("the scraper panicked");
    });
    let scrape = Exposition::parse(&common::scrape(addr)).expect("parses");
    let h = scrape.histogram("macro_values", &[]).expect("exported");
    assert_eq!(h.count, 2 * PER_MACRO_THREAD);
    assert_eq!(h.sum, 2.0 * sum_of_values(PER_MACRO_THREAD));
    server.stop().expect("stop");
}

#[test]
fn a_series_expired_for_idleness_and_written_again_loses_nothing() {
    let server = MetricsServer::builder()
        .standalone()
        // Long enough that the scrapes after each burst of writes come before the series
        // expires again, even on a loaded machine.
        .idle_timeout(Duration::from_secs(2))
        .upkeep_interval(Duration::from_millis(10))
        .build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    let recorder = server.recorder().expect("a standalone recorder");
    let collector = server.collector();
    // A handle kept by the caller across the expiry, and the collector.
    let held = metrics::with_local_recorder(&recorder, || metrics::histogram!("idle_held"));
    for i in 0..1_000 {
        held.record(value(i));
        collector.record_histogram("idle_values", value(i), &[]);
    }
    let first = Exposition::parse(&common::scrape(addr)).expect("parses");
    assert_eq!(
        first.histogram("idle_held", &[]).map(|h| h.count),
        Some(1_000)
    );
    assert_eq!(
        first.histogram("idle_values", &[]).map(|h| h.count),
        Some(1_000)
    );

    // Idle past the timeout: both series leave the exposition.
    let gone = common::wait_for(Duration::from_secs(20), || {
        let text = common::scrape(addr);
        (!text.contains("idle_held") && !text.contains("idle_values")).then_some(())
    });
    assert!(gone.is_some(), "idle series were not expired");

    // Written again while scrapes run: every new observation is there.
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let scraper = s.spawn(|| scrape_until(addr, &done, 1));
        for i in 0..10_000 {
            held.record(value(i));
            collector.record_histogram("idle_values", value(i), &[]);
        }
        done.store(true, Ordering::Release);
        scraper.join().expect("the scraper panicked");
    });
    let again = Exposition::parse(&common::scrape(addr)).expect("parses");
    // Hidden in place, both series come back with everything they held, through the kept
    // handle and through the collector alike.
    let total = sum_of_values(1_000) + sum_of_values(10_000);
    for (name, count, sum) in [("idle_values", 11_000, total), ("idle_held", 11_000, total)] {
        let h = again
            .histogram(name, &[])
            .unwrap_or_else(|| panic!("{name} is back"));
        assert_eq!(h.count, count, "{name}");
        assert_eq!(h.sum, sum, "{name}");
    }
    server.stop().expect("stop");
}

#[test]
#[ignore = "needs prometheus-pushgateway (run .ci/test)"]
fn pushes_every_10ms_lose_nothing() {
    let gateway = common::prometheus::Pushgateway::start();
    let endpoint = format!("http://{}/metrics/job/porter_exact", gateway.addr);
    let target = porter_metrics::PushTarget::pushgateway(&endpoint)
        .and_then(|t| t.interval(Duration::from_millis(10)))
        .expect("valid endpoint");
    let pusher = Builder::new()
        .standalone()
        .push(target)
        .build_pusher()
        .expect("a target");
    pusher.start().expect("pushing starts");
    const PER_PUSH_THREAD: u64 = PER_THREAD / 4;
    let collectors = [pusher.collector(), pusher.collector()];
    let pushing = Arc::new(Barrier::new(2));
    thread::scope(|s| {
        for collector in &collectors {
            let pushing = pushing.clone();
            s.spawn(move || {
                pushing.wait();
                for i in 0..PER_PUSH_THREAD {
                    collector.record_histogram("pushed_values", value(i), &[]);
                }
            });
        }
    });
    pusher.stop().expect("the final push succeeds");
    let body = common::get(gateway.addr, "/metrics").expect("gateway").body;
    let scrape = Exposition::parse(&body).expect("the Pushgateway's exposition parses");
    let h = scrape
        .histogram("pushed_values", &["instance", "", "job", "porter_exact"])
        .expect("pushed");
    assert_eq!(h.count, 2 * PER_PUSH_THREAD);
    assert_eq!(h.sum, 2.0 * sum_of_values(PER_PUSH_THREAD));
}
