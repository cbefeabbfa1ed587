//! No cliff: the cost of a call as the number of series one thread cycles over grows.
//!
//! Run with `cargo bench --bench sweep`. One thread cycles
//! `increment_counter("sweep_total", &["user", v, "method", "GET"])` (and
//! `record_histogram("sweep_seconds", x, ...)`) over N distinct values of `v`, for N in
//! 100, 1 000, 2 000, 10 000 and 100 000, beside its peers in the same run:
//!
//! | id | what is timed |
//! |---|---|
//! | `ours` | `PrometheusCollector` of a `LocalRecorder` (limits raised so nothing folds) |
//! | `prometheus_design` | `prometheus` 0.14 in the design's Go shape: flat pairs split per call, name → vec map, `with_label_values` |
//! | `prometheus_client` | `prometheus-client` 0.26 `Family::get_or_create` with owned labels |
//! | `macro_porter` | `metrics` macros with runtime labels through our `LocalRecorder` (`with_local_recorder`) |
//! | `macro_exporter` | the same macros through the exporter's recorder alone |
//!
//! `sweep_*_2t` runs `ours` on 2 threads cycling over the same N series (from different
//! starting points): wall time per call per thread. The table printed at the end gives
//! ours / prometheus, ours at N / ours at 100, and the 2-thread aggregate throughput over
//! one thread's. Every series is registered before timing starts: the sweep measures
//! warm calls, not registration.
//!
//! Our histograms need no drain: an observation goes straight into atomic bucket counts.
//! The exporter buffers its histogram observations, so each of its timed chunks is
//! followed by an untimed `run_upkeep`.

#[path = "support/estimates.rs"]
mod estimates;
#[path = "support/peers.rs"]
mod peers;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion};
use metrics::Recorder;
use metrics_exporter_prometheus::PrometheusBuilder;
use peers::{
    client_histograms, parse_labels, prom_counter, prom_histogram, ClientCounters, PromShape,
};
use porter_metrics::{Builder, Collector, Limits, DEFAULT_BUCKETS};

const POINTS: [usize; 5] = [100, 1_000, 2_000, 10_000, 100_000];
/// Most calls between two drains of the exporter's buffered histogram observations.
const CHUNK: u64 = 1 << 22;

struct Fixture {
    counter: String,
    histogram: String,
    user: String,
    method: String,
    get: String,
    users: Vec<String>,
}

impl Fixture {
    fn new() -> Self {
        let own = |s: &str| black_box(s).to_owned();
        Self {
            counter: own("sweep_total"),
            histogram: own("sweep_seconds"),
            user: own("user"),
            method: own("method"),
            get: own("GET"),
            users: (0..POINTS[POINTS.len() - 1])
                .map(|i| format!("u{i}"))
                .collect(),
        }
    }

    #[inline]
    fn labels(&self, i: usize) -> [&str; 4] {
        [&self.user, &self.users[i], &self.method, &self.get]
    }

    #[inline]
    fn owned(&self, i: usize) -> Vec<(String, String)> {
        vec![
            (self.user.clone(), self.users[i].clone()),
            (self.method.clone(), self.get.clone()),
        ]
    }
}

#[inline]
fn value(i: usize) -> f64 {
    0.001 * (i % 1000 + 1) as f64
}

/// Times `iters` calls of `f(i)`, `i` cycling over `0..n`, in chunks with `drain` between
/// them (untimed), inside `with_local_recorder` when `local` is given. Every series is
/// touched once first.
fn cycle(
    b: &mut criterion::Bencher,
    n: usize,
    local: Option<&dyn Recorder>,
    drain: &dyn Fn(),
    f: &dyn Fn(usize),
) {
    let run = |go: &mut dyn FnMut()| match local {
        Some(recorder) => metrics::with_local_recorder(recorder, go),
        None => go(),
    };
    run(&mut || (0..n).for_each(f));
    drain();
    let mut i = 0usize;
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let chunk = (iters - done).min(CHUNK);
            run(&mut || {
                let start = Instant::now();
                for _ in 0..chunk {
                    i += 1;
                    if i == n {
                        i = 0;
                    }
                    f(i);
                }
                total += start.elapsed();
            });
            done += chunk;
            drain();
        }
        total
    });
}

/// Calls per timed iteration on 2 threads: waking the threads for each chunk costs tens of
/// microseconds, so an iteration is this many calls and the time is scaled back per call.
const CALLS_2T: u64 = 1024;

/// Times `iters` calls of `f(i)` on each of 2 threads over the same `n` series (starting
/// half-way apart), released together per chunk: wall time, drains untimed between chunks.
/// Timing starts once both threads have warmed their caches over the `n` series (criterion
/// calls this once per sample: the warm-up is never in a timed chunk).
fn cycle_2t(b: &mut criterion::Bencher, n: usize, drain: &dyn Fn(), f: &(dyn Fn(usize) + Sync)) {
    let start = Barrier::new(3);
    let end = Barrier::new(3);
    let ready = Barrier::new(3);
    let chunk_len = AtomicU64::new(0);
    (0..n).for_each(f);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|t| {
                let (start, end, ready, chunk_len) = (&start, &end, &ready, &chunk_len);
                s.spawn(move || {
                    let mut i = t * n / 2;
                    (0..n).for_each(f); // this thread's caches, warm
                    ready.wait();
                    loop {
                        start.wait();
                        let len = chunk_len.load(Ordering::Acquire);
                        if len == 0 {
                            return;
                        }
                        for _ in 0..len {
                            i += 1;
                            if i >= n {
                                i = 0;
                            }
                            f(i);
                        }
                        end.wait();
                    }
                })
            })
            .collect();
        ready.wait();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            let iters = iters * CALLS_2T;
            while done < iters {
                let len = (iters - done).min(CHUNK);
                chunk_len.store(len, Ordering::Release);
                let began = Instant::now();
                start.wait();
                end.wait();
                total += began.elapsed();
                done += len;
                drain();
            }
            total / CALLS_2T as u32
        });
        chunk_len.store(0, Ordering::Release);
        start.wait();
        for w in workers {
            w.join().expect("worker");
        }
    });
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    group
}

fn exporter() -> metrics_exporter_prometheus::PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets(&DEFAULT_BUCKETS)
        .expect("buckets")
        .build_recorder()
}

fn sweep_counter(c: &mut Criterion, fx: &Fixture, points: &[usize]) {
    let local = Builder::new().limits(Limits::unlimited()).build_local();
    let ours = local.collector();
    let exporter = exporter();
    let prom = PromShape::new(prom_counter);
    let client = ClientCounters::default();
    let name = fx.counter.as_str();
    let no_drain = || {};
    let mut g = configure(c, "sweep_counter");
    for &n in points {
        let ours_call = |i: usize| ours.increment_counter(name, &fx.labels(i));
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, &n| {
            cycle(b, n, None, &no_drain, &ours_call)
        });
        g.bench_with_input(BenchmarkId::new("prometheus_design", n), &n, |b, &n| {
            cycle(b, n, None, &no_drain, &|i| {
                let (names, values) = parse_labels(&fx.labels(i));
                prom.with(name, &names, |v| v.with_label_values(&values).inc())
            })
        });
        g.bench_with_input(BenchmarkId::new("prometheus_client", n), &n, |b, &n| {
            cycle(b, n, None, &no_drain, &|i| {
                client.get_or_create(&fx.owned(i)).inc();
            })
        });
        let runtime_macro = |i: usize| {
            metrics::counter!(
                fx.counter.clone(),
                fx.user.clone() => fx.users[i].clone(),
                fx.method.clone() => fx.get.clone()
            )
            .increment(1)
        };
        g.bench_with_input(BenchmarkId::new("macro_porter", n), &n, |b, &n| {
            cycle(b, n, Some(&local), &no_drain, &runtime_macro)
        });
        g.bench_with_input(BenchmarkId::new("macro_exporter", n), &n, |b, &n| {
            cycle(b, n, Some(&exporter), &no_drain, &runtime_macro)
        });
    }
    g.finish();
    let mut g = configure(c, "sweep_counter_2t");
    for &n in points {
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, &n| {
            cycle_2t(b, n, &no_drain, &|i| {
                ours.increment_counter(name, &fx.labels(i))
            })
        });
    }
    g.finish();
}

fn sweep_histogram(c: &mut Criterion, fx: &Fixture, points: &[usize]) {
    let local = Builder::new().limits(Limits::unlimited()).build_local();
    let ours = local.collector();
    let exporter = exporter();
    let handle = exporter.handle();
    let prom = PromShape::new(prom_histogram);
    let client = client_histograms();
    let name = fx.histogram.as_str();
    let (no_drain, drain_exporter) = (|| {}, || handle.run_upkeep());
    let mut g = configure(c, "sweep_histogram");
    for &n in points {
        let ours_call = |i: usize| ours.record_histogram(name, value(i), &fx.labels(i));
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, &n| {
            cycle(b, n, None, &no_drain, &ours_call)
        });
        g.bench_with_input(BenchmarkId::new("prometheus_design", n), &n, |b, &n| {
            cycle(b, n, None, &no_drain, &|i| {
                let (names, values) = parse_labels(&fx.labels(i));
                prom.with(name, &names, |v| {
                    v.with_label_values(&values).observe(value(i))
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("prometheus_client", n), &n, |b, &n| {
            cycle(b, n, None, &no_drain, &|i| {
                client.get_or_create(&fx.owned(i)).observe(value(i));
            })
        });
        let runtime_macro = |i: usize| {
            metrics::histogram!(
                fx.histogram.clone(),
                fx.user.clone() => fx.users[i].clone(),
                fx.method.clone() => fx.get.clone()
            )
            .record(value(i))
        };
        g.bench_with_input(BenchmarkId::new("macro_porter", n), &n, |b, &n| {
            cycle(b, n, Some(&local), &no_drain, &runtime_macro)
        });
        g.bench_with_input(BenchmarkId::new("macro_exporter", n), &n, |b, &n| {
            cycle(b, n, Some(&exporter), &drain_exporter, &runtime_macro)
        });
    }
    g.finish();
    let mut g = configure(c, "sweep_histogram_2t");
    for &n in points {
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, &n| {
            cycle_2t(b, n, &no_drain, &|i| {
                ours.record_histogram(name, value(i), &fx.labels(i))
            })
        });
    }
    g.finish();
}

fn report(since: SystemTime, points: &[usize]) {
    let m =
        |group: &str, id: &str, n: usize| estimates::median(since, &[group, id, &n.to_string()]);
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "-".to_owned(),
    };
    for kind in ["counter", "histogram"] {
        let group = format!("sweep_{kind}");
        let group_2t = format!("sweep_{kind}_2t");
        println!();
        println!("=== sweep: {kind}, ns per call (median) ===");
        println!(
            "| series per thread | ours | prometheus design | prometheus-client | macros, ours | macros, exporter | ours / prometheus (≤ 0.5) | ours / ours at {} (≤ 3) | 2 threads / 1 (≥ 1.6) |",
            points[0]
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let base = m(&group, "ours", points[0]);
        for &n in points {
            let ours = m(&group, "ours", n);
            let two = m(&group_2t, "ours", n);
            let scaling = match (ours, two) {
                (Some(one), Some(two)) => format!("{:.2}", 2.0 * one / two),
                _ => "-".to_owned(),
            };
            println!(
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {scaling} |",
                cell(ours),
                cell(m(&group, "prometheus_design", n)),
                cell(m(&group, "prometheus_client", n)),
                cell(m(&group, "macro_porter", n)),
                cell(m(&group, "macro_exporter", n)),
                ratio(ours, m(&group, "prometheus_design", n)),
                ratio(ours, base),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    // `--test` (cargo test --benches) checks that each benchmark runs, on the small points.
    let points: &[usize] = if benching { &POINTS } else { &POINTS[..2] };
    let since = SystemTime::now();
    let fx = Fixture::new();
    let mut c = Criterion::default().configure_from_args();
    sweep_counter(&mut c, &fx, points);
    sweep_histogram(&mut c, &fx, points);
    c.final_summary();
    if benching {
        report(since, points);
    }
}
