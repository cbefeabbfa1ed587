//! What a scrape shows is what was recorded, as of one moment, whatever runs meanwhile:
//! histograms (classic and native) scraped while they are written, series expired and
//! written again while scrapes and upkeep run, and observations made while the pipeline
//! binds.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use common::proto;
use porter_metrics::self_metrics::HIDDEN_SERIES;
use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, Collector, Limits, Matcher, NativeHistograms};

const WRITERS: usize = 3;
const SCRAPES: usize = 300;

#[test]
fn every_scrape_shows_a_histogram_as_of_one_moment() {
    let server = Builder::new()
        .standalone()
        .native_histograms_for_metric(
            Matcher::Full("native_seconds".into()),
            NativeHistograms::default(),
        )
        .expect("settings")
        .build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    let collector = server.collector();
    let recorder = server.recorder().expect("standalone");
    let done = AtomicBool::new(false);
    let observed = AtomicU64::new(0);
    let mut inconsistent = Vec::new();
    thread::scope(|s| {
        for w in 0..WRITERS {
            let (collector, recorder, done, observed) = (&collector, &recorder, &done, &observed);
            s.spawn(move || {
                // One writer keeps a handle; the others go through the collector.
                let kept = metrics::with_local_recorder(recorder, || {
                    metrics::histogram!("classic_seconds")
                });
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) && n < 50_000_000 {
                    match w {
                        0 => kept.record(1.0),
                        _ => collector.record_histogram("classic_seconds", 1.0, &[]),
                    }
                    collector.record_histogram("native_seconds", 1.0, &[]);
                    n += 1;
                }
                observed.fetch_add(n, Ordering::Relaxed);
            });
        }
        for i in 0..SCRAPES {
            let families = proto::families(&common::scrape_as(addr, proto::ACCEPT_PROTOBUF));
            for family in families
                .iter()
                .filter(|f| f.name.as_deref().is_some_and(|n| n.ends_with("_seconds")))
            {
                let h = family.metric[0].histogram.clone().expect("a histogram");
                let count = h.sample_count.unwrap_or(0);
                let inf = h.bucket.last().and_then(|b| b.cumulative_count);
                let native = h.schema.is_some().then(|| h.native_count());
                if inf != Some(count)
                    || h.sample_sum != Some(count as f64)
                    || native.is_some_and(|n| n != count)
                {
                    inconsistent.push(format!(
                        "{:?}: count {count}, +Inf {inf:?}, sum {:?}, native {native:?}",
                        family.name, h.sample_sum
                    ));
                }
            }
            // The text format reads the same cells.
            if i % 10 == 0 {
                let text = String::from_utf8(common::scrape_as(addr, "text/plain")).expect("UTF-8");
                let h = Exposition::parse(&text)
                    .expect("valid")
                    .histogram("classic_seconds", &[]);
                if let Some(h) = h
                    .filter(|h| h.sum != h.count as f64 || h.bucket(f64::INFINITY) != Some(h.count))
                {
                    inconsistent.push(format!("text: {h:?}"));
                }
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    assert!(
        inconsistent.is_empty(),
        "{} of {SCRAPES} scrapes: {:?}",
        inconsistent.len(),
        &inconsistent[..inconsistent.len().min(5)]
    );
    // And nothing was lost.
    let text = String::from_utf8(common::scrape_as(addr, "text/plain")).expect("UTF-8");
    let scrape = Exposition::parse(&text).expect("valid");
    let total = observed.load(Ordering::Relaxed);
    let classic = scrape
        .histogram("classic_seconds", &[])
        .expect("classic")
        .count;
    let native = scrape
        .histogram("native_seconds", &[])
        .expect("native")
        .count;
    assert_eq!((classic, native), (total, total));
    server.stop().expect("stop");
}

/// Waits (bounded) until idle expiry has hidden at least `n` series.
fn wait_hidden(recorder: &porter_metrics::LocalRecorder, n: f64) {
    let hidden = common::wait_for(Duration::from_secs(30), || {
        let scrape = Exposition::parse(&recorder.render()).ok()?;
        (scrape.value(HIDDEN_SERIES, &[]) >= Some(n)).then_some(())
    });
    assert!(hidden.is_some(), "idle series were not hidden");
}

#[test]
fn writes_across_idle_expiry_stay_exact() {
    const ROUNDS: u64 = 4;
    const USERS: u64 = 20; // past the limit of 8 series per metric: some fold
    let recorder = Builder::new()
        .idle_timeout(Duration::from_secs(1))
        .upkeep_interval(Duration::from_millis(10))
        .limits(Limits::default().with_series_per_metric(8))
        .build_local();
    let collector = recorder.collector();
    let (counter, gauge, histogram) = metrics::with_local_recorder(&recorder, || {
        (
            metrics::counter!("kept_total"),
            metrics::gauge!("kept_gauge"),
            metrics::histogram!("kept_seconds"),
        )
    });
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        // A scraper, all along: every scrape valid.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let text = recorder.render();
                Exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            }
        });
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (collector, recorder, barrier, counter, gauge, histogram) = (
                    &collector, &recorder, &barrier, &counter, &gauge, &histogram,
                );
                s.spawn(move || {
                    for _ in 0..ROUNDS {
                        for i in 0..1_000u64 {
                            counter.increment(1);
                            gauge.increment(1.0);
                            gauge.decrement(if i % 2 == 0 { 1.0 } else { 0.0 });
                            histogram.record(0.5);
                            let user = (i % USERS).to_string();
                            collector.increment_counter("users_total", &["user", &user]);
                            metrics::with_local_recorder(recorder, || {
                                metrics::counter!("macro_total", "w" => "x").increment(1)
                            });
                        }
                        // Both writers done: idle, until upkeep has hidden the series.
                        if barrier.wait().is_leader() {
                            wait_hidden(recorder, 3.0);
                        }
                        barrier.wait();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("a writer panicked");
        }
        done.store(true, Ordering::Relaxed);
    });
    // Written again after the last expiry: every series is shown, with all it held.
    counter.increment(1);
    gauge.increment(0.0);
    histogram.record(0.5);
    for user in 0..USERS {
        collector.add_to_counter("users_total", 0, &["user", &user.to_string()]);
    }
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("macro_total", "w" => "x").increment(0)
    });
    let scrape = Exposition::parse(&recorder.render()).expect("valid");
    let writes = 2 * ROUNDS * 1_000;
    assert_eq!(scrape.value("kept_total", &[]), Some((writes + 1) as f64));
    assert_eq!(scrape.value("kept_gauge", &[]), Some((writes / 2) as f64));
    assert_eq!(
        scrape.histogram("kept_seconds", &[]).map(|h| h.count),
        Some(writes + 1)
    );
    assert_eq!(
        scrape.value("macro_total", &["w", "x"]),
        Some(writes as f64)
    );
    // The family's total, across its series and its overflow series.
    assert_eq!(scrape.sum("users_total"), writes as f64);
}

#[test]
fn observations_made_while_the_pipeline_binds_are_kept() {
    for _ in 0..20 {
        let server = Builder::new()
            .standalone()
            .limits(Limits::default().with_series_per_metric(4))
            .build("127.0.0.1:0");
        let collector = server.collector();
        let recorder = server.recorder().expect("standalone");
        let recorded = AtomicU64::new(0);
        thread::scope(|s| {
            s.spawn(|| {
                // Many label sets: past the limit, new ones fold into the overflow series,
                // made while the buckets are being bound.
                for i in 0..2_000u64 {
                    collector.record_histogram(
                        "early_seconds",
                        0.1,
                        &["user", &(i % 64).to_string()],
                    );
                    recorded.fetch_add(1, Ordering::Relaxed);
                }
            });
            server.start().expect("start");
        });
        let scrape = Exposition::parse(&recorder.render()).expect("valid");
        assert_eq!(
            scrape.sum("early_seconds_count"),
            recorded.load(Ordering::Relaxed) as f64
        );
        server.stop().expect("stop");
    }
}
