//! The handle caches never lose an update or send one to a series that is not rendered:
//! after idle expiry (a series hidden, then reclaimed), past a cardinality limit, and when
//! threads race on a new series.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use porter_metrics::self_metrics::HIDDEN_SERIES;
use porter_metrics::testing::{Capture, Exposition};
use porter_metrics::{Builder, Collector, Limits};

// Long enough that a render right after a write comes before expiry on a loaded machine.
const IDLE: Duration = Duration::from_secs(2);

fn idle_capture() -> Capture {
    Capture::with_recorder(Builder::new().idle_timeout(IDLE).build_local())
}

/// Renders until `name` is gone from the exposition (upkeep expired it); bounded.
fn wait_until_expired(capture: &Capture, name: &str) {
    let gone = common::wait_for(Duration::from_secs(20), || {
        let s = Exposition::parse(&capture.render()).ok()?;
        (s.count(name) == 0 && s.count(&format!("{name}_count")) == 0).then_some(())
    });
    assert!(gone.is_some(), "{name} was not expired");
}

#[test]
fn a_series_written_again_after_idle_expiry_comes_back_with_its_value() {
    let capture = idle_capture();
    let c = capture.collector();
    c.increment_counter("idle_total", &["k", "v"]);
    c.record_histogram("idle_seconds", 0.1, &[]);
    c.record_gauge("idle_gauge", 5.0, &[]);
    let s = capture.exposition().unwrap();
    assert_eq!(s.value("idle_total", &["k", "v"]), Some(1.0));

    wait_until_expired(&capture, "idle_total");
    wait_until_expired(&capture, "idle_seconds");
    let hidden = capture.exposition().unwrap().value(HIDDEN_SERIES, &[]);
    assert!(hidden >= Some(2.0), "hidden: {hidden:?}");

    // Hidden in place: the next write shows each series again, with what it held.
    c.increment_counter("idle_total", &["k", "v"]);
    c.record_histogram("idle_seconds", 0.2, &[]);
    c.record_gauge("idle_gauge", 6.0, &[]);
    let s = capture.exposition().unwrap();
    assert_eq!(s.value("idle_total", &["k", "v"]), Some(2.0));
    let h = s.histogram("idle_seconds", &[]).expect("shown again");
    assert_eq!(h.count, 2);
    assert!((h.sum - 0.3).abs() < 1e-9);
    assert_eq!(s.value("idle_gauge", &[]), Some(6.0));
}

#[test]
fn a_series_idle_for_two_timeouts_is_reclaimed_and_starts_afresh() {
    let capture = Capture::with_recorder(
        Builder::new()
            .idle_timeout(Duration::from_millis(200))
            .upkeep_interval(Duration::from_millis(10))
            .build_local(),
    );
    let c = capture.collector();
    c.add_to_counter("gone_total", 3, &["k", "v"]);
    wait_until_expired(&capture, "gone_total");
    // Hidden, then reclaimed: nothing holds it (the collector's cache owns nothing).
    let reclaimed = common::wait_for(Duration::from_secs(20), || {
        let s = Exposition::parse(&capture.render()).ok()?;
        (s.value(HIDDEN_SERIES, &[]) == Some(0.0)).then_some(())
    });
    assert!(reclaimed.is_some(), "the hidden series was not reclaimed");
    c.increment_counter("gone_total", &["k", "v"]);
    let s = capture.exposition().unwrap();
    assert_eq!(
        s.value("gone_total", &["k", "v"]),
        Some(1.0),
        "a new series, from zero"
    );
}

#[test]
fn macros_after_idle_expiry_keep_their_series() {
    let capture = idle_capture();
    capture.run(|| metrics::counter!("idle_macro_total").increment(1));
    wait_until_expired(&capture, "idle_macro_total");
    capture.run(|| metrics::counter!("idle_macro_total").increment(2));
    let s = capture.exposition().unwrap();
    assert_eq!(s.value("idle_macro_total", &[]), Some(3.0));
}

#[test]
fn a_timer_stopped_after_its_series_expired_is_rendered() {
    let capture = idle_capture();
    let c = capture.collector();
    c.record_histogram("slow_op_seconds", 0.1, &[]);
    let timer = c.start_timer("slow_op_seconds");
    wait_until_expired(&capture, "slow_op_seconds");
    let seconds = timer.stop();
    let h = capture
        .exposition()
        .unwrap()
        .histogram("slow_op_seconds", &[])
        .expect("recorded into a live series");
    // The timer held the series: it comes back with everything it held, nothing lost.
    assert_eq!(h.count, 2);
    assert!((h.sum - (0.1 + seconds)).abs() < 1e-9);
}

#[test]
fn cached_overflow_keeps_folding_and_counting() {
    let capture = Capture::with_recorder(
        Builder::new()
            .limits(Limits::default().with_series_per_metric(3))
            .build_local(),
    );
    let c = capture.collector();
    for round in 0..5 {
        for user in ["a", "b", "c", "d", "e"] {
            c.increment_counter("logins_total", &["user", user]);
        }
        capture.run(|| metrics::counter!("logins_total", "user" => "z").increment(1));
        let s = capture.exposition().unwrap();
        let folded = f64::from(3 * (round + 1));
        assert_eq!(
            s.value("logins_total", &["otel_metric_overflow", "true"]),
            Some(folded)
        );
        assert_eq!(
            s.value(
                "porter_metrics_overflow_samples_total",
                &["metric", "logins_total"]
            ),
            Some(folded)
        );
        assert_eq!(s.sum("logins_total"), f64::from(6 * (round + 1)));
    }
}

#[test]
fn threads_racing_on_a_new_series_lose_nothing() {
    const THREADS: usize = 8;
    const CALLS: u32 = 10_000;
    for attempt in 0..5 {
        let capture = Capture::new();
        let barrier = Arc::new(Barrier::new(THREADS));
        let name = format!("race_{attempt}_total");
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (barrier, c, name) = (barrier.clone(), capture.collector(), name.clone());
                let recorder = capture.recorder().clone();
                s.spawn(move || {
                    barrier.wait();
                    for _ in 0..CALLS {
                        if t % 2 == 0 {
                            c.increment_counter(&name, &["shard", "1", "zone", "a"]);
                        } else {
                            metrics::with_local_recorder(&recorder, || {
                                metrics::counter!(name.clone(), "zone" => "a", "shard" => "1")
                                    .increment(1);
                            });
                        }
                    }
                });
            }
        });
        let s = capture.exposition().unwrap();
        assert_eq!(s.count(&name), 1, "one series");
        assert_eq!(
            s.value(&name, &["shard", "1", "zone", "a"]),
            Some(f64::from(CALLS) * THREADS as f64)
        );
    }
}
