//! Our recorder's cost on the macro path, beside the exporter's.
//!
//! Run with `cargo bench --bench macro_path`. Every benchmark runs the `metrics` macros inside
//! `metrics::with_local_recorder`, with either the exporter's `PrometheusRecorder` alone
//! (`exporter_*`) or our pipeline (`ours_*`, a [`LocalRecorder`], which implements
//! `metrics::Recorder`):
//!
//! | group / id | what is timed |
//! |---|---|
//! | `macro_static/{exporter,ours}_1label` | `counter!("macro_static_total", "method" => "GET").increment(1)` (a warm, static key) |
//! | `macro_static/{exporter,ours}_2labels` | `counter!("macro_static2_total", "method" => "GET", "status" => "200").increment(1)` |
//! | `macro_static/{exporter,ours}_0labels` | `counter!("macro_static_plain_total").increment(1)` |
//! | `macro_new_series/{exporter,ours}` | `counter!("macro_new_total", "id" => value)` where every call's value is a new runtime `String` (registration of a new series); limits raised to `usize::MAX` |
//! | `macro_new_series/collector` | the same through `LocalRecorder::collector().increment_counter` (limits raised) |
//!
//! New-series benchmarks build a fresh recorder for every sample (untimed) and move a
//! pre-built value `String` into each call, so only registration is timed.
//!
//! After criterion finishes, prints ours / exporter ratios (target: at most 1.20 on the
//! static path).

#[path = "support/estimates.rs"]
mod estimates;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Bencher, Criterion, SamplingMode};
use metrics::Recorder;
use metrics_exporter_prometheus::PrometheusBuilder;
use porter_metrics::{Builder, Collector, Limits, LocalRecorder};

/// Times `iters` calls of `f` inside `with_local_recorder(recorder)`.
fn static_calls(b: &mut Bencher, recorder: &dyn Recorder, f: impl Fn()) {
    b.iter_custom(|iters| {
        metrics::with_local_recorder(recorder, || {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed()
        })
    });
}

/// `iters` fresh label values, built before timing.
fn fresh_values(iters: u64) -> Vec<String> {
    (0..iters).map(|i| format!("v{i:08}")).collect()
}

/// Times `iters` registrations of new series by macro, on a fresh `recorder()` per sample.
fn new_series<R: Recorder>(b: &mut Bencher, recorder: impl Fn() -> R) {
    b.iter_custom(|iters| {
        let recorder = recorder();
        let mut values = fresh_values(iters);
        let elapsed = metrics::with_local_recorder(&recorder, || {
            let start = Instant::now();
            for value in &mut values {
                metrics::counter!("macro_new_total", "id" => std::mem::take(value)).increment(1);
            }
            start.elapsed()
        });
        drop(black_box(recorder));
        elapsed
    });
}

fn bench(c: &mut Criterion) {
    let exporter = PrometheusBuilder::new().build_recorder();
    let ours = LocalRecorder::new();

    let mut g = c.benchmark_group("macro_static");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    let one = || metrics::counter!("macro_static_total", "method" => "GET").increment(1);
    let two = || {
        metrics::counter!("macro_static2_total", "method" => "GET", "status" => "200").increment(1)
    };
    let zero = || metrics::counter!("macro_static_plain_total").increment(1);
    g.bench_function("exporter_1label", |b| static_calls(b, &exporter, one));
    g.bench_function("ours_1label", |b| static_calls(b, &ours, one));
    g.bench_function("exporter_2labels", |b| static_calls(b, &exporter, two));
    g.bench_function("ours_2labels", |b| static_calls(b, &ours, two));
    g.bench_function("exporter_0labels", |b| static_calls(b, &exporter, zero));
    g.bench_function("ours_0labels", |b| static_calls(b, &ours, zero));
    g.finish();

    let mut g = c.benchmark_group("macro_new_series");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("exporter", |b| {
        new_series(b, || PrometheusBuilder::new().build_recorder())
    });
    g.bench_function("ours", |b| {
        new_series(b, || {
            Builder::new()
                .limits(Limits::unlimited())
                .upkeep_interval(Duration::from_secs(3600))
                .build_local()
        })
    });
    g.bench_function("collector", |b| {
        b.iter_custom(|iters| {
            let local = Builder::new()
                .limits(Limits::unlimited())
                .upkeep_interval(Duration::from_secs(3600))
                .build_local();
            let collector = local.collector();
            let values = fresh_values(iters);
            let name = black_box("collector_new_total");
            let start = Instant::now();
            for value in &values {
                collector.increment_counter(name, &["id", value]);
            }
            let elapsed = start.elapsed();
            drop(black_box(local));
            elapsed
        })
    });
    g.finish();
}

/// The median (ns) of `group/bench` written by this run, if any.
fn median(since: SystemTime, group: &str, bench: &str) -> Option<f64> {
    estimates::median(since, &[group, bench])
}

fn report(since: SystemTime) {
    println!();
    println!("=== macro_path: ours / exporter (median ns per call) ===");
    let line = |label: &str, group: &str, ours: &str, exporter: &str, target: Option<f64>| match (
        median(since, group, ours),
        median(since, group, exporter),
    ) {
        (Some(l), Some(e)) => {
            let r = l / e;
            let verdict = match target {
                Some(t) if r <= t => format!("(target <= {t}) PASS"),
                Some(t) => format!("(target <= {t}) FAIL"),
                None => "(info)".to_owned(),
            };
            println!("{label}: ours / exporter = {r:.2} {verdict} [{l:.1} ns / {e:.1} ns]");
        }
        _ => println!("{label}: n/a (not run)"),
    };
    line(
        "static counter!, 1 label pair",
        "macro_static",
        "ours_1label",
        "exporter_1label",
        Some(1.2),
    );
    line(
        "static counter!, 2 label pairs",
        "macro_static",
        "ours_2labels",
        "exporter_2labels",
        Some(1.2),
    );
    line(
        "static counter!, no labels",
        "macro_static",
        "ours_0labels",
        "exporter_0labels",
        Some(1.2),
    );
    line(
        "new series (registration)",
        "macro_new_series",
        "ours",
        "exporter",
        None,
    );
    if let (Some(c), Some(e)) = (
        median(since, "macro_new_series", "collector"),
        median(since, "macro_new_series", "exporter"),
    ) {
        println!(
            "new series via collector: collector / exporter macro = {:.2} (info) [{c:.1} ns / {e:.1} ns]",
            c / e
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let since = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    if benching {
        report(since);
    }
}
