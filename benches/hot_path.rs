//! Hot-path cost of one recording call, ours against its peers, and two-thread scaling.
//!
//! Run with `cargo bench --bench hot_path`. Every call records into one of 4 warm series
//! whose name and label strings were built at run time (the design's call shape:
//! `increment_counter(name, &["method", m, "endpoint", e])`). After criterion finishes, the
//! medians are read back from `target/criterion/hot_*/<bench>/new/estimates.json` and
//! compared with the targets of the issue.
//!
//! Peers, in every group (`hot_counter`, `hot_gauge`, `hot_histogram`, `hot_timer`):
//!
//! | id | what is timed |
//! |---|---|
//! | `ours_local` | `LocalRecorder::collector()` (a `PrometheusCollector` bound to a local pipeline) |
//! | `ours_expiring` | counters only: `ours_local` with idle expiry on (a timeout no series reaches) |
//! | `ours_global` | `PrometheusCollector::new()` through the global pipeline, exported by a running `MetricsServer` on `127.0.0.1:0` |
//! | `ours_native` | histograms only: `ours_local` with every histogram native as well as classic |
//! | `macro_static_exporter` | `metrics` macros, `'static` name and labels, through the exporter's `PrometheusRecorder` alone |
//! | `macro_runtime_exporter` | `metrics` macros, owned `String` name and labels, through the exporter's `PrometheusRecorder` alone |
//! | `macro_runtime_porter` | the same macros through our `LocalRecorder` (our recorder and store) |
//! | `prometheus_shape` | `prometheus` 0.14: `RwLock<HashMap<String, *Vec>>` by name, then `with_label_values(&[v1, v2])` with the values already split by the caller |
//! | `prometheus_design` | the same, from the design's flat pairs: names and values split on every call, as the Go design's `parseLabels` does |
//! | `prometheus_client` | `prometheus-client` 0.26: `Family::get_or_create(&owned labels)` |
//! | `exporter_handle` | the exporter's own registered `Counter`/`Gauge`/`Histogram` handle (no lookup) |
//! | `atomic_u64` | `AtomicU64::fetch_add` (counter only) |
//!
//! Timers (`hot_timer`) take a name only: ours is `start_timer(name).stop()`, the peers take
//! `std::time::Instant` around the same lookup and record the elapsed seconds.
//!
//! Our histograms need no drain (an observation goes straight into atomic bucket counts).
//! The exporter buffers histogram observations until its upkeep drains them, so every
//! benchmark runs in chunks of at most `CHUNK` calls, and the exporter's rows run its
//! `run_upkeep` between chunks, outside the timed region.
//!
//! `hot_threads` times `iters` counter calls on each of 1 or 2 threads started behind a
//! barrier (wall time from the first start to the last end, divided by `iters`: ns per call
//! per thread): ours on different series, ours on the same series, and the exporter's cached
//! handle on the same series.

#[path = "support/estimates.rs"]
mod estimates;
#[path = "support/peers.rs"]
mod peers;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Bencher, Criterion};
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use peers::{
    client_histograms, parse_labels, prom_counter, prom_gauge, prom_histogram, ClientCounters,
    ClientGauges, PromShape,
};
use porter_metrics::{
    Builder, Collector, LocalRecorder, MetricsServer, NoopCollector, PrometheusCollector,
    DEFAULT_BUCKETS,
};

/// Series each benchmark cycles over.
const SERIES: usize = 4;
/// Most calls between two drains of the exporter's buffered histogram observations.
const CHUNK: u64 = 1 << 20;

static META: Metadata<'static> = Metadata::new("hot_path", Level::INFO, None);

/// Runtime strings: names and label values are built at run time, never literals at the
/// call site.
struct Fixture {
    counter: String,
    gauge: String,
    histogram: String,
    timers: Vec<String>,
    keys: [String; 2],
    values: Vec<[String; 2]>,
}

impl Fixture {
    fn new() -> Self {
        let own = |s: &str| black_box(s).to_owned();
        let methods = ["GET", "POST", "PUT", "DELETE"];
        let endpoints = ["/api/users", "/api/orders", "/api/items", "/healthz"];
        Self {
            counter: own("requests_total"),
            gauge: own("queue_depth"),
            histogram: own("request_size_bytes"),
            timers: (0..SERIES).map(|i| format!("op{i}_seconds")).collect(),
            keys: [own("method"), own("endpoint")],
            values: (0..SERIES)
                .map(|i| [own(methods[i]), own(endpoints[i])])
                .collect(),
        }
    }

    /// The `&[k1, v1, k2, v2]` of series `i`.
    #[inline]
    fn labels(&self, i: usize) -> [&str; 4] {
        [
            &self.keys[0],
            &self.values[i][0],
            &self.keys[1],
            &self.values[i][1],
        ]
    }

    /// The values of series `i`, for `with_label_values`.
    #[inline]
    fn values(&self, i: usize) -> [&str; 2] {
        [&self.values[i][0], &self.values[i][1]]
    }

    /// Owned label pairs of series `i`, as `prometheus-client` families take them.
    #[inline]
    fn owned(&self, i: usize) -> Vec<(String, String)> {
        vec![
            (self.keys[0].clone(), self.values[i][0].clone()),
            (self.keys[1].clone(), self.values[i][1].clone()),
        ]
    }

    fn key(&self, name: &str, i: usize) -> Key {
        Key::from_parts(
            name.to_owned(),
            vec![
                Label::new(self.keys[0].clone(), self.values[i][0].clone()),
                Label::new(self.keys[1].clone(), self.values[i][1].clone()),
            ],
        )
    }
}

/// Observation value for call `i`: varies, stays in the bucket range.
#[inline]
fn value(i: usize) -> f64 {
    0.001 * (i + 1) as f64
}

/// The exporter's recorder with the same buckets as ours.
fn exporter() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&DEFAULT_BUCKETS)
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

/// Times `iters` calls of `f(series)`, in chunks of at most [`CHUNK`], running `drain`
/// between chunks (untimed) and, if `local` is given, inside `with_local_recorder`.
fn calls<F: FnMut(usize)>(
    b: &mut Bencher,
    local: Option<&dyn Recorder>,
    drain: &dyn Fn(),
    mut f: F,
) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        let mut done = 0;
        let mut i = 0usize;
        while done < iters {
            let n = (iters - done).min(CHUNK);
            let mut run = || {
                let start = Instant::now();
                for _ in 0..n {
                    i = (i + 1) % SERIES;
                    f(i);
                }
                start.elapsed()
            };
            total += match local {
                Some(recorder) => metrics::with_local_recorder(recorder, run),
                None => run(),
            };
            done += n;
            drain();
        }
        total
    });
}

fn no_drain() {}

/// Calls `f(thread)` `iters` times on each of `threads` threads released together; returns
/// the wall time from the first start to the last end.
fn threaded<F: Fn(usize) + Sync>(b: &mut Bencher, threads: usize, f: &F) {
    b.iter_custom(|iters| {
        let barrier = Barrier::new(threads);
        let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        f(t); // warm this thread's caches
                        barrier.wait();
                        let start = Instant::now();
                        for _ in 0..iters {
                            f(t);
                        }
                        (start, Instant::now())
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("worker"))
                .collect()
        });
        let start = spans.iter().map(|s| s.0).min().expect("spans");
        let end = spans.iter().map(|s| s.1).max().expect("spans");
        end - start
    });
}

const PROM_LABELS: [&str; 2] = ["method", "endpoint"];

/// The global pipeline, exported by a running server (so it records as in production).
struct Global {
    collector: PrometheusCollector,
    /// Keeps the export running.
    _server: MetricsServer,
}

impl Global {
    fn start() -> Self {
        let server = MetricsServer::new("127.0.0.1:0");
        if let Err(e) = server.start() {
            eprintln!(
                "hot_path: cannot start the global MetricsServer ({e}); `ours_global` records into the pre-export buffer"
            );
        }
        Self {
            collector: PrometheusCollector::new(),
            _server: server,
        }
    }
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    group
}

fn bench_counter(c: &mut Criterion, fx: &Fixture, global: &Global) {
    let local = LocalRecorder::new();
    let ours = local.collector();
    // Idle expiry on (a timeout no series reaches while timed): writes pay what expiry asks.
    let expiring = Builder::new()
        .idle_timeout(Duration::from_secs(3600))
        .build_local();
    let ours_expiring = expiring.collector();
    let (exporter, _handle) = exporter();
    let handles: Vec<metrics::Counter> = (0..SERIES)
        .map(|i| exporter.register_counter(&fx.key(&fx.counter, i), &META))
        .collect();
    let prom = PromShape::new(prom_counter);
    let client = ClientCounters::default();
    let atomics: Vec<AtomicU64> = (0..SERIES).map(|_| AtomicU64::new(0)).collect();
    let name = fx.counter.as_str();

    let mut g = configure(c, "hot_counter");
    g.bench_function("ours_local", |b| {
        calls(b, None, &no_drain, |i| {
            ours.increment_counter(name, &fx.labels(i))
        })
    });
    g.bench_function("ours_expiring", |b| {
        calls(b, None, &no_drain, |i| {
            ours_expiring.increment_counter(name, &fx.labels(i))
        })
    });
    g.bench_function("ours_global", |b| {
        calls(b, None, &no_drain, |i| {
            global.collector.increment_counter(name, &fx.labels(i))
        })
    });
    g.bench_function("macro_static_exporter", |b| {
        calls(b, Some(&exporter), &no_drain, |i| match i {
            0 => metrics::counter!("requests_total", "method" => "GET", "endpoint" => "/api/users")
                .increment(1),
            1 => {
                metrics::counter!("requests_total", "method" => "POST", "endpoint" => "/api/orders")
                    .increment(1)
            }
            2 => metrics::counter!("requests_total", "method" => "PUT", "endpoint" => "/api/items")
                .increment(1),
            _ => {
                metrics::counter!("requests_total", "method" => "DELETE", "endpoint" => "/healthz")
                    .increment(1)
            }
        })
    });
    let runtime_macro = |i: usize| {
        metrics::counter!(
            fx.counter.clone(),
            fx.keys[0].clone() => fx.values[i][0].clone(),
            fx.keys[1].clone() => fx.values[i][1].clone()
        )
        .increment(1)
    };
    g.bench_function("macro_runtime_exporter", |b| {
        calls(b, Some(&exporter), &no_drain, runtime_macro)
    });
    g.bench_function("macro_runtime_porter", |b| {
        calls(b, Some(&local), &no_drain, runtime_macro)
    });
    g.bench_function("prometheus_shape", |b| {
        calls(b, None, &no_drain, |i| {
            prom.with(name, &PROM_LABELS, |v| {
                v.with_label_values(&fx.values(i)).inc()
            })
        })
    });
    g.bench_function("prometheus_design", |b| {
        calls(b, None, &no_drain, |i| {
            let (names, values) = parse_labels(&fx.labels(i));
            debug_assert_eq!(names, PROM_LABELS);
            prom.with(name, &PROM_LABELS, |v| v.with_label_values(&values).inc())
        })
    });
    g.bench_function("prometheus_client", |b| {
        calls(b, None, &no_drain, |i| {
            client.get_or_create(&fx.owned(i)).inc();
        })
    });
    g.bench_function("exporter_handle", |b| {
        calls(b, None, &no_drain, |i| handles[i].increment(1))
    });
    g.bench_function("atomic_u64", |b| {
        calls(b, None, &no_drain, |i| {
            atomics[i].fetch_add(1, Ordering::Relaxed);
        })
    });
    g.bench_function("noop_collector", |b| {
        let noop: &dyn Collector = &NoopCollector;
        calls(b, None, &no_drain, |i| {
            black_box(noop).increment_counter(&fx.counter, &fx.labels(i))
        })
    });
    g.finish();
}

fn bench_gauge(c: &mut Criterion, fx: &Fixture, global: &Global) {
    let local = LocalRecorder::new();
    let ours = local.collector();
    let (exporter, _handle) = exporter();
    let handles: Vec<metrics::Gauge> = (0..SERIES)
        .map(|i| exporter.register_gauge(&fx.key(&fx.gauge, i), &META))
        .collect();
    let prom = PromShape::new(prom_gauge);
    let client = ClientGauges::default();
    let name = fx.gauge.as_str();

    let mut g = configure(c, "hot_gauge");
    g.bench_function("ours_local", |b| {
        calls(b, None, &no_drain, |i| {
            ours.record_gauge(name, value(i), &fx.labels(i))
        })
    });
    g.bench_function("ours_global", |b| {
        calls(b, None, &no_drain, |i| {
            global.collector.record_gauge(name, value(i), &fx.labels(i))
        })
    });
    g.bench_function("macro_static_exporter", |b| {
        calls(b, Some(&exporter), &no_drain, |i| match i {
            0 => metrics::gauge!("queue_depth", "method" => "GET", "endpoint" => "/api/users")
                .set(value(i)),
            1 => metrics::gauge!("queue_depth", "method" => "POST", "endpoint" => "/api/orders")
                .set(value(i)),
            2 => metrics::gauge!("queue_depth", "method" => "PUT", "endpoint" => "/api/items")
                .set(value(i)),
            _ => metrics::gauge!("queue_depth", "method" => "DELETE", "endpoint" => "/healthz")
                .set(value(i)),
        })
    });
    let runtime_macro = |i: usize| {
        metrics::gauge!(
            fx.gauge.clone(),
            fx.keys[0].clone() => fx.values[i][0].clone(),
            fx.keys[1].clone() => fx.values[i][1].clone()
        )
        .set(value(i))
    };
    g.bench_function("macro_runtime_exporter", |b| {
        calls(b, Some(&exporter), &no_drain, runtime_macro)
    });
    g.bench_function("macro_runtime_porter", |b| {
        calls(b, Some(&local), &no_drain, runtime_macro)
    });
    g.bench_function("prometheus_shape", |b| {
        calls(b, None, &no_drain, |i| {
            prom.with(name, &PROM_LABELS, |v| {
                v.with_label_values(&fx.values(i)).set(value(i))
            })
        })
    });
    g.bench_function("prometheus_design", |b| {
        calls(b, None, &no_drain, |i| {
            let (names, values) = parse_labels(&fx.labels(i));
            debug_assert_eq!(names, PROM_LABELS);
            prom.with(name, &PROM_LABELS, |v| {
                v.with_label_values(&values).set(value(i))
            })
        })
    });
    g.bench_function("prometheus_client", |b| {
        calls(b, None, &no_drain, |i| {
            client.get_or_create(&fx.owned(i)).set(value(i));
        })
    });
    g.bench_function("exporter_handle", |b| {
        calls(b, None, &no_drain, |i| handles[i].set(value(i)))
    });
    g.finish();
}

fn bench_histogram(c: &mut Criterion, fx: &Fixture, global: &Global) {
    let local = LocalRecorder::new();
    let ours = local.collector();
    // The same calls into histograms that are native as well as classic.
    let native_local = porter_metrics::Builder::new()
        .native_histograms(porter_metrics::NativeHistograms::default())
        .expect("valid settings")
        .build_local();
    let native = native_local.collector();
    let (exporter, handle) = exporter();
    let handles: Vec<metrics::Histogram> = (0..SERIES)
        .map(|i| exporter.register_histogram(&fx.key(&fx.histogram, i), &META))
        .collect();
    let prom = PromShape::new(prom_histogram);
    let client = client_histograms();
    let name = fx.histogram.as_str();
    let drain_exporter = || handle.run_upkeep();

    let mut g = configure(c, "hot_histogram");
    g.bench_function("ours_local", |b| {
        calls(b, None, &no_drain, |i| {
            ours.record_histogram(name, value(i), &fx.labels(i))
        })
    });
    g.bench_function("ours_native", |b| {
        calls(b, None, &no_drain, |i| {
            native.record_histogram(name, value(i), &fx.labels(i))
        })
    });
    g.bench_function("ours_global", |b| {
        calls(b, None, &no_drain, |i| {
            global
                .collector
                .record_histogram(name, value(i), &fx.labels(i))
        })
    });
    g.bench_function("macro_static_exporter", |b| {
        calls(b, Some(&exporter), &drain_exporter, |i| match i {
            0 => metrics::histogram!("request_size_bytes", "method" => "GET", "endpoint" => "/api/users")
                .record(value(i)),
            1 => metrics::histogram!("request_size_bytes", "method" => "POST", "endpoint" => "/api/orders")
                .record(value(i)),
            2 => metrics::histogram!("request_size_bytes", "method" => "PUT", "endpoint" => "/api/items")
                .record(value(i)),
            _ => metrics::histogram!("request_size_bytes", "method" => "DELETE", "endpoint" => "/healthz")
                .record(value(i)),
        })
    });
    let runtime_macro = |i: usize| {
        metrics::histogram!(
            fx.histogram.clone(),
            fx.keys[0].clone() => fx.values[i][0].clone(),
            fx.keys[1].clone() => fx.values[i][1].clone()
        )
        .record(value(i))
    };
    g.bench_function("macro_runtime_exporter", |b| {
        calls(b, Some(&exporter), &drain_exporter, runtime_macro)
    });
    g.bench_function("macro_runtime_porter", |b| {
        calls(b, Some(&local), &no_drain, runtime_macro)
    });
    g.bench_function("prometheus_shape", |b| {
        calls(b, None, &no_drain, |i| {
            prom.with(name, &PROM_LABELS, |v| {
                v.with_label_values(&fx.values(i)).observe(value(i))
            })
        })
    });
    g.bench_function("prometheus_design", |b| {
        calls(b, None, &no_drain, |i| {
            let (names, values) = parse_labels(&fx.labels(i));
            debug_assert_eq!(names, PROM_LABELS);
            prom.with(name, &PROM_LABELS, |v| {
                v.with_label_values(&values).observe(value(i))
            })
        })
    });
    g.bench_function("prometheus_client", |b| {
        calls(b, None, &no_drain, |i| {
            client.get_or_create(&fx.owned(i)).observe(value(i));
        })
    });
    g.bench_function("exporter_handle", |b| {
        calls(b, None, &drain_exporter, |i| handles[i].record(value(i)))
    });
    g.finish();
}

fn bench_timer(c: &mut Criterion, fx: &Fixture, global: &Global) {
    let local = LocalRecorder::new();
    let ours = local.collector();
    let (exporter, handle) = exporter();
    let handles: Vec<metrics::Histogram> = fx
        .timers
        .iter()
        .map(|name| exporter.register_histogram(&Key::from_name(name.clone()), &META))
        .collect();
    let prom = PromShape::new(prom_histogram);
    let client = client_histograms();
    let timer_key = black_box("timer").to_owned();
    let drain_exporter = || handle.run_upkeep();

    let mut g = configure(c, "hot_timer");
    g.bench_function("noop_collector", |b| {
        let noop: &dyn Collector = &NoopCollector;
        calls(b, None, &no_drain, |i| {
            black_box(black_box(noop).start_timer(&fx.timers[i]).stop());
        })
    });
    g.bench_function("ours_local", |b| {
        calls(b, None, &no_drain, |i| {
            black_box(ours.start_timer(&fx.timers[i]).stop());
        })
    });
    g.bench_function("ours_global", |b| {
        calls(b, None, &no_drain, |i| {
            black_box(global.collector.start_timer(&fx.timers[i]).stop());
        })
    });
    g.bench_function("macro_static_exporter", |b| {
        calls(b, Some(&exporter), &drain_exporter, |i| {
            let start = Instant::now();
            let h = match i {
                0 => metrics::histogram!("op0_seconds"),
                1 => metrics::histogram!("op1_seconds"),
                2 => metrics::histogram!("op2_seconds"),
                _ => metrics::histogram!("op3_seconds"),
            };
            h.record(start.elapsed().as_secs_f64());
        })
    });
    let runtime_macro = |i: usize| {
        let start = Instant::now();
        metrics::histogram!(fx.timers[i].clone()).record(start.elapsed().as_secs_f64());
    };
    g.bench_function("macro_runtime_exporter", |b| {
        calls(b, Some(&exporter), &drain_exporter, runtime_macro)
    });
    g.bench_function("macro_runtime_porter", |b| {
        calls(b, Some(&local), &no_drain, runtime_macro)
    });
    g.bench_function("prometheus_shape", |b| {
        calls(b, None, &no_drain, |i| {
            prom.with(&fx.timers[i], &[], |v| {
                v.with_label_values::<&str>(&[])
                    .start_timer()
                    .observe_duration()
            })
        })
    });
    g.bench_function("prometheus_client", |b| {
        calls(b, None, &no_drain, |i| {
            let start = Instant::now();
            client
                .get_or_create(&vec![(timer_key.clone(), fx.timers[i].clone())])
                .observe(start.elapsed().as_secs_f64());
        })
    });
    g.bench_function("exporter_handle", |b| {
        calls(b, None, &drain_exporter, |i| {
            let start = Instant::now();
            handles[i].record(start.elapsed().as_secs_f64());
        })
    });
    g.finish();
}

fn bench_threads(c: &mut Criterion, fx: &Fixture) {
    let local = LocalRecorder::new();
    let ours = local.collector();
    let (exporter, _handle) = exporter();
    let handle = exporter.register_counter(&fx.key(&fx.counter, 0), &META);
    let name = fx.counter.as_str();
    let different = |t: usize| ours.increment_counter(name, &fx.labels(t));
    let same = |_t: usize| ours.increment_counter(name, &fx.labels(0));
    let exporter_same = |_t: usize| handle.increment(1);

    let mut g = c.benchmark_group("hot_threads");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    g.bench_function("ours_1t", |b| threaded(b, 1, &different));
    g.bench_function("ours_diff_2t", |b| threaded(b, 2, &different));
    g.bench_function("ours_same_2t", |b| threaded(b, 2, &same));
    g.bench_function("exporter_handle_1t", |b| threaded(b, 1, &exporter_same));
    g.bench_function("exporter_handle_same_2t", |b| {
        threaded(b, 2, &exporter_same)
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// The table of targets, from criterion's estimates.

/// The median (ns) of `group/bench` written by this run, if any.
fn median(since: SystemTime, group: &str, bench: &str) -> Option<f64> {
    estimates::median(since, &[group, bench])
}

fn fmt_ns(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} ns"))
}

fn verdict(value: f64, ok: bool) -> String {
    format!("{value:.2} {}", if ok { "PASS" } else { "FAIL" })
}

fn report(since: SystemTime) {
    let m = |group: &str, bench: &str| median(since, group, bench);
    println!();
    println!("=== hot_path: medians (ns per call) ===");
    let groups = ["hot_counter", "hot_gauge", "hot_histogram", "hot_timer"];
    let peers = [
        "ours_local",
        "ours_expiring",
        "ours_global",
        "macro_static_exporter",
        "macro_runtime_exporter",
        "macro_runtime_porter",
        "prometheus_shape",
        "prometheus_design",
        "prometheus_client",
        "exporter_handle",
        "atomic_u64",
        "noop_collector",
    ];
    print!("{:<24}", "");
    for g in groups {
        print!("{:>16}", g.trim_start_matches("hot_"));
    }
    println!();
    for peer in peers {
        print!("{peer:<24}");
        for g in groups {
            print!(
                "{:>16}",
                m(g, peer).map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
            );
        }
        println!();
    }

    println!();
    println!("=== hot_path: targets ===");
    let ratio =
        |label: &str, num: Option<f64>, den: Option<f64>, target: Option<f64>| match (num, den) {
            (Some(n), Some(d)) => {
                let r = n / d;
                match target {
                    Some(t) => println!(
                        "{label} = {} (target <= {t}) [{} / {}]",
                        verdict(r, r <= t),
                        fmt_ns(num),
                        fmt_ns(den)
                    ),
                    None => println!(
                        "{label} = {r:.2} (info) [{} / {}]",
                        fmt_ns(num),
                        fmt_ns(den)
                    ),
                }
            }
            _ => println!("{label} = n/a (not run)"),
        };
    for (group, kind, target) in [
        ("hot_counter", "counter", Some(0.25)),
        ("hot_histogram", "histogram", Some(0.25)),
        ("hot_gauge", "gauge", None),
    ] {
        for ours in ["ours_local", "ours_global"] {
            // The target is against "the design's Go shape in Rust": the Go code
            // splits the flat pairs on every call (prometheus_design). The same lookup with
            // values pre-split by the caller (prometheus_shape) is shown beside it.
            ratio(
                &format!("{kind}: {ours} / prometheus-design"),
                m(group, ours),
                m(group, "prometheus_design"),
                target,
            );
            ratio(
                &format!("{kind}: {ours} / prometheus-shape (values pre-split)"),
                m(group, ours),
                m(group, "prometheus_shape"),
                None,
            );
        }
        for peer in [
            "macro_runtime_exporter",
            "prometheus_client",
            "exporter_handle",
        ] {
            ratio(
                &format!("{kind}: ours_local / {peer}"),
                m(group, "ours_local"),
                m(group, peer),
                None,
            );
        }
    }
    ratio(
        "histogram: ours_native / ours_local (native and classic at once, against classic alone)",
        m("hot_histogram", "ours_native"),
        m("hot_histogram", "ours_local"),
        None,
    );
    ratio(
        "counter: idle expiry on / off (ours_expiring / ours_local)",
        m("hot_counter", "ours_expiring"),
        m("hot_counter", "ours_local"),
        Some(1.15),
    );
    ratio(
        "counter: ours_local / atomic_u64",
        m("hot_counter", "ours_local"),
        m("hot_counter", "atomic_u64"),
        None,
    );
    for ours in ["ours_local", "ours_global"] {
        match m("hot_timer", ours) {
            Some(v) => println!(
                "timer: {ours} start_timer + stop = {v:.1} ns (target <= 150 ns) {}",
                if v <= 150.0 { "PASS" } else { "FAIL" }
            ),
            None => println!("timer: {ours} start_timer + stop = n/a (not run)"),
        }
    }
    println!(
        "noop: increment_counter through dyn Collector = {}, start_timer + stop = {} (the timer still reads the clock)",
        fmt_ns(m("hot_counter", "noop_collector")),
        fmt_ns(m("hot_timer", "noop_collector")),
    );

    let t = |bench: &str| m("hot_threads", bench);
    match (t("ours_1t"), t("ours_diff_2t")) {
        (Some(one), Some(two)) => {
            let scaling = 2.0 * one / two;
            println!(
                "threads: ours 2 threads / 1 thread aggregate throughput, different series = {} (target >= 1.6) [1t {} per call, 2t {} per call per thread]",
                verdict(scaling, scaling >= 1.6),
                fmt_ns(Some(one)),
                fmt_ns(Some(two))
            );
        }
        _ => println!("threads: different-series scaling = n/a (not run)"),
    }
    ratio(
        "threads: same series, 2 threads: ours / exporter cached handle",
        t("ours_same_2t"),
        t("exporter_handle_same_2t"),
        Some(1.5),
    );
    if let (Some(one), Some(two)) = (t("exporter_handle_1t"), t("exporter_handle_same_2t")) {
        println!(
            "threads: exporter handle same series, 2 threads / 1 thread aggregate throughput = {:.2} (info)",
            2.0 * one / two
        );
    }
    if let (Some(one), Some(two)) = (t("ours_1t"), t("ours_same_2t")) {
        println!(
            "threads: ours same series, 2 threads / 1 thread aggregate throughput = {:.2} (info)",
            2.0 * one / two
        );
    }
}

fn main() {
    // Criterion only writes estimates in `--bench` mode; `--test` (and `cargo test --benches`)
    // runs each benchmark once to check it works.
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let since = SystemTime::now();
    let fx = Fixture::new();
    let global = Global::start();
    let mut c = Criterion::default().configure_from_args();
    bench_counter(&mut c, &fx, &global);
    bench_gauge(&mut c, &fx, &global);
    bench_histogram(&mut c, &fx, &global);
    bench_timer(&mut c, &fx, &global);
    bench_threads(&mut c, &fx);
    c.final_summary();
    if benching {
        report(since);
    }
}
