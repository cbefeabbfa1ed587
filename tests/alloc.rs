//! A warm call allocates nothing.
//!
//! The counting global allocator (`common::counting`) counts allocations per thread, so the
//! test harness's other threads do not interfere. After
//! one warm-up call on the same series, 1000 calls of each `Collector` method are counted.
//!
//! Nothing may allocate: counters, gauges, histogram observations (counted into their
//! buckets in place) and timers alike. The exporter's own histogram handle, which keeps
//! observations in blocks until a drain, is measured beside ours for comparison.

use std::hint::black_box;
use std::time::Duration;

use metrics::{Key, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;
use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, Collector, LocalRecorder, PrometheusCollector, DEFAULT_BUCKETS};

mod common;

use common::counting::thread_allocations as allocations;

#[global_allocator]
static GLOBAL: common::counting::Counting = common::counting::Counting;

const CALLS: usize = 1000;

static META: Metadata<'static> = Metadata::new("alloc", Level::INFO, None);

/// A local pipeline (no upkeep runs during a test).
fn local() -> LocalRecorder {
    Builder::new()
        .upkeep_interval(Duration::from_secs(3600))
        .build_local()
}

/// Runtime strings: a name and 2 label pairs, never literals at the call site.
struct Series {
    name: String,
    labels: [String; 4],
}

impl Series {
    fn new(name: &str) -> Self {
        let own = |s: &str| black_box(s).to_owned();
        Self {
            name: own(name),
            labels: [
                own("method"),
                own("GET"),
                own("endpoint"),
                own("/api/users"),
            ],
        }
    }

    fn labels(&self) -> [&str; 4] {
        [
            &self.labels[0],
            &self.labels[1],
            &self.labels[2],
            &self.labels[3],
        ]
    }
}

/// Allocations of the exporter's own histogram handle (registered once, one warm
/// observation) for `CALLS` observations: what the exporter's sample storage costs.
fn exporter_histogram_allocations() -> u64 {
    let exporter = PrometheusBuilder::new()
        .set_buckets(&DEFAULT_BUCKETS)
        .expect("buckets")
        .build_recorder();
    let key = Key::from_parts(
        black_box("exporter_seconds").to_owned(),
        vec![
            metrics::Label::new("method".to_owned(), "GET".to_owned()),
            metrics::Label::new("endpoint".to_owned(), "/api/users".to_owned()),
        ],
    );
    let histogram = exporter.register_histogram(&key, &META);
    histogram.record(0.5);
    allocations(|| {
        for i in 0..CALLS {
            histogram.record(0.001 * i as f64);
        }
    })
}

#[test]
fn the_counting_allocator_counts() {
    assert_eq!(
        allocations(|| drop(black_box(Vec::<u8>::with_capacity(8)))),
        1
    );
    assert_eq!(allocations(|| black_box(())), 0);
}

#[test]
fn warm_counter_calls_allocate_nothing() {
    let recorder = local();
    let collector = recorder.collector();
    let series = Series::new("requests_total");
    collector.increment_counter(&series.name, &series.labels());
    let n = allocations(|| {
        for _ in 0..CALLS {
            collector.increment_counter(&series.name, &series.labels());
        }
    });
    assert_eq!(
        n, 0,
        "{CALLS} warm increment_counter calls allocated {n} times"
    );
    let scrape = Exposition::parse(&recorder.render()).expect("the exposition parses");
    assert_eq!(
        scrape.value("requests_total", &series.labels()),
        Some((CALLS + 1) as f64)
    );
}

#[test]
fn warm_counter_calls_on_several_series_allocate_nothing() {
    let recorder = local();
    let collector = recorder.collector();
    let series: Vec<Series> = (0..4)
        .map(|i| Series {
            name: black_box("requests_total").to_owned(),
            labels: [
                "method".to_owned(),
                format!("M{i}"),
                "endpoint".to_owned(),
                format!("/e/{i}"),
            ],
        })
        .collect();
    for s in &series {
        collector.increment_counter(&s.name, &s.labels());
    }
    let n = allocations(|| {
        for i in 0..CALLS {
            let s = &series[i % series.len()];
            collector.increment_counter(&s.name, &s.labels());
        }
    });
    assert_eq!(
        n, 0,
        "{CALLS} warm increment_counter calls over 4 series allocated {n} times"
    );
}

#[test]
fn warm_gauge_calls_allocate_nothing() {
    let recorder = local();
    let collector = recorder.collector();
    let series = Series::new("queue_depth");
    collector.record_gauge(&series.name, 1.0, &series.labels());
    let n = allocations(|| {
        for i in 0..CALLS {
            collector.record_gauge(&series.name, i as f64, &series.labels());
        }
    });
    assert_eq!(n, 0, "{CALLS} warm record_gauge calls allocated {n} times");
}

#[test]
fn warm_histogram_calls_allocate_nothing() {
    let recorder = local();
    let collector = recorder.collector();
    let series = Series::new("request_seconds");
    collector.record_histogram(&series.name, 0.5, &series.labels());
    let ours = allocations(|| {
        for i in 0..CALLS {
            collector.record_histogram(&series.name, 0.001 * i as f64, &series.labels());
        }
    });
    let exporter = exporter_histogram_allocations();
    eprintln!("{CALLS} warm record_histogram: ours {ours} allocations, exporter handle {exporter}");
    assert_eq!(
        ours, 0,
        "{CALLS} warm record_histogram calls allocated {ours} times"
    );
}

#[test]
fn observations_racing_scrapes_allocate_nothing() {
    let recorder = local();
    let collector = recorder.collector();
    let series = Series::new("steady_seconds");
    collector.record_histogram(&series.name, 0.5, &series.labels());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let n = std::thread::scope(|s| {
        // Scrapes run on another thread: only the recording thread is counted.
        s.spawn(|| {
            let mut scrapes = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) && scrapes < 100_000 {
                black_box(recorder.render());
                scrapes += 1;
            }
        });
        let n = allocations(|| {
            for i in 0..5 * CALLS {
                collector.record_histogram(&series.name, 0.001 * i as f64, &series.labels());
            }
        });
        stop.store(true, std::sync::atomic::Ordering::Release);
        n
    });
    assert_eq!(n, 0, "{} observations racing scrapes", 5 * CALLS);
    let scrape = Exposition::parse(&recorder.render()).expect("the exposition parses");
    assert_eq!(
        scrape.value(
            "steady_seconds_count",
            &["method", "GET", "endpoint", "/api/users"]
        ),
        Some((5 * CALLS + 1) as f64)
    );
}

#[test]
fn warm_timers_allocate_nothing() {
    let recorder = local();
    let collector = recorder.collector();
    let name = black_box("op_seconds").to_owned();
    black_box(collector.start_timer(&name).stop());
    let ours = allocations(|| {
        for _ in 0..CALLS {
            black_box(collector.start_timer(&name).stop());
        }
    });
    let exporter = exporter_histogram_allocations();
    eprintln!(
        "{CALLS} warm start_timer + stop: ours {ours} allocations, exporter handle {exporter}"
    );
    assert_eq!(
        ours, 0,
        "{CALLS} warm start_timer + stop allocated {ours} times"
    );
    let scrape = Exposition::parse(&recorder.render()).expect("the exposition parses");
    assert_eq!(
        scrape.value("op_seconds_count", &[]),
        Some((CALLS + 1) as f64)
    );
}

#[test]
fn warm_global_collector_counter_calls_allocate_nothing() {
    let collector = PrometheusCollector::new();
    let series = Series::new("global_requests_total");
    collector.increment_counter(&series.name, &series.labels());
    let n = allocations(|| {
        for _ in 0..CALLS {
            collector.increment_counter(&series.name, &series.labels());
        }
    });
    assert_eq!(
        n, 0,
        "{CALLS} warm global increment_counter calls allocated {n} times"
    );
}

#[test]
fn warm_static_macros_allocate_nothing() {
    let run = |recorder: &dyn Recorder| {
        metrics::with_local_recorder(recorder, || {
            metrics::counter!("macro_total", "method" => "GET").increment(1);
            allocations(|| {
                for _ in 0..CALLS {
                    metrics::counter!("macro_total", "method" => "GET").increment(1);
                }
            })
        })
    };
    let exporter = run(&PrometheusBuilder::new().build_recorder());
    let ours = run(&local());
    eprintln!("{CALLS} warm static counter!: ours {ours} allocations, exporter alone {exporter}");
    assert_eq!(
        ours, 0,
        "{CALLS} warm static counter! calls allocated {ours} times"
    );
}
