//! Scrape render time with our store and encoder against the exporter alone.
//!
//! Run with `cargo bench --bench render`. For 1k, 10k and 100k counter series (10 metric
//! names, 2 label pairs each, every series incremented once):
//!
//! | id | what is timed |
//! |---|---|
//! | `render/exporter/<n>` | `PrometheusHandle::render()`, series registered through the exporter's `PrometheusRecorder` alone |
//! | `render/ours/<n>` | `LocalRecorder::render()`, series recorded with its collector (`Builder::new().limits(unlimited).build_local()`) |
//!
//! Our exposition also carries the pipeline's `porter_metrics_*` self-metrics and a default
//! `# HELP` line per metric name; both are part of what a scrape of ours costs.
//!
//! After criterion finishes, prints ours / exporter per size (target at 100k: at most 1.05).

#[path = "support/estimates.rs"]
mod estimates;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use porter_metrics::{Builder, Collector, Limits, LocalRecorder};

static META: Metadata<'static> = Metadata::new("render", Level::INFO, None);

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// Series `i`: its metric name, method and path.
fn series(i: usize) -> (String, &'static str, String) {
    (
        format!("http_requests_{}_total", i % 10),
        METHODS[i % METHODS.len()],
        format!("/api/v1/resource/{i}"),
    )
}

fn exporter_with(n: usize) -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    for i in 0..n {
        let (name, method, path) = series(i);
        let key = Key::from_parts(
            name,
            vec![
                Label::new("method".to_owned(), method.to_owned()),
                Label::new("path".to_owned(), path),
            ],
        );
        recorder.register_counter(&key, &META).increment(1);
    }
    (recorder, handle)
}

fn ours_with(n: usize) -> LocalRecorder {
    let local = Builder::new()
        .limits(Limits::unlimited())
        .upkeep_interval(Duration::from_secs(3600))
        .build_local();
    let collector = local.collector();
    for i in 0..n {
        let (name, method, path) = series(i);
        collector.increment_counter(&name, &["method", method, "path", &path]);
    }
    local
}

/// Sample lines (not comments) of an exposition.
fn samples(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

fn bench(c: &mut Criterion, sizes: &[usize]) {
    let mut g = c.benchmark_group("render");
    g.warm_up_time(Duration::from_secs(1));
    for &n in sizes {
        let (_exporter, handle) = exporter_with(n);
        let ours = ours_with(n);
        let (theirs_text, ours_text) = (handle.render(), ours.render());
        println!(
            "render {n}: exporter {} samples, {} bytes; ours {} samples, {} bytes",
            samples(&theirs_text),
            theirs_text.len(),
            samples(&ours_text),
            ours_text.len()
        );
        drop((theirs_text, ours_text));
        if n >= 100_000 {
            g.sample_size(10)
                .measurement_time(Duration::from_secs(3))
                .sampling_mode(SamplingMode::Flat);
        } else {
            g.sample_size(30)
                .measurement_time(Duration::from_secs(2))
                .sampling_mode(SamplingMode::Auto);
        }
        g.bench_with_input(BenchmarkId::new("exporter", n), &n, |b, _| {
            b.iter(|| black_box(handle.render()))
        });
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, _| {
            b.iter(|| black_box(ours.render()))
        });
    }
    g.finish();
}

/// The median (ns) of `group/bench/param` written by this run, if any.
fn median(since: SystemTime, group: &str, bench: &str, param: usize) -> Option<f64> {
    estimates::median(since, &[group, bench, &param.to_string()])
}

fn report(since: SystemTime, sizes: &[usize]) {
    println!();
    println!("=== render: ours / exporter (median time per render) ===");
    for &n in sizes {
        match (
            median(since, "render", "ours", n),
            median(since, "render", "exporter", n),
        ) {
            (Some(o), Some(e)) => {
                let r = o / e;
                let verdict = if n >= 100_000 {
                    format!(
                        "(target <= 1.05) {}",
                        if r <= 1.05 { "PASS" } else { "FAIL" }
                    )
                } else {
                    "(info)".to_owned()
                };
                println!(
                    "{n:>7} series: ours / exporter = {r:.3} {verdict} [{:.3} ms / {:.3} ms]",
                    o / 1e6,
                    e / 1e6
                );
            }
            _ => println!("{n:>7} series: n/a (not run)"),
        }
    }
}

/// `RENDER_PROFILE=counters|histograms`: renders 100 000 series of one kind in a loop, for
/// `perf record` or callgrind.
fn profile(kind: &str) {
    let local = Builder::new()
        .limits(Limits::unlimited())
        .upkeep_interval(Duration::from_secs(3600))
        .build_local();
    let collector = local.collector();
    let n = 100_000;
    for i in 0..n {
        let user = format!("u{i}");
        let labels = ["user", &user, "method", "GET"];
        match kind {
            "histograms" => collector.record_histogram(
                "scale_request_seconds",
                (i % 1000) as f64 / 100.0,
                &labels,
            ),
            _ => collector.increment_counter("scale_requests_total", &labels),
        }
    }
    let reps: usize = std::env::var("RENDER_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..reps {
        let start = std::time::Instant::now();
        bytes = black_box(local.render()).len();
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{kind}: median {:.2} ms, {bytes} bytes",
        times[times.len() / 2]
    );
}

fn main() {
    if let Ok(kind) = std::env::var("RENDER_PROFILE") {
        return profile(&kind);
    }
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    // A test run (`--test`, `cargo test --benches`) skips the slow 100k setup.
    let sizes: &[usize] = if benching {
        &[1_000, 10_000, 100_000]
    } else {
        &[1_000, 10_000]
    };
    let since = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, sizes);
    c.final_summary();
    if benching {
        report(since, sizes);
    }
}
