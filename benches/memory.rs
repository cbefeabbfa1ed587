//! Heap bytes per series: ours against the exporter alone.
//!
//! Run with `cargo bench --bench memory` (plain `main`, no criterion). A counting global
//! allocator tracks live heap bytes (all threads). For 100k counter series (10 metric
//! names, 2 label pairs each, every series incremented once) it measures the live bytes
//! added by:
//!
//! * (a) the exporter alone: `PrometheusRecorder::register_counter(&key) + increment`, each
//!   key built from owned `String`s;
//! * (b) ours: `LocalRecorder` (limits raised) and `collector().increment_counter(name,
//!   &["method", m, "path", p])`; this includes our series store (one map per family,
//!   values inline) and this thread's lookup cache (bounded: at most 16k slots per table);
//! * (c) for information, the `metrics` macros with owned runtime keys through the same
//!   kind of `LocalRecorder` (the per-thread key cache is bounded the same way).
//!
//! The name and label strings of each series are built inside the measured region in every
//! case, and dropped by the caller when the recorder does not keep them. Each case is
//! measured after recording, after one render (its output dropped), and after the recorder
//! is dropped. Prints bytes per series and ours / exporter (target: at most 1.3).
//!
//! Without `--bench` (e.g. `cargo test --benches`) it runs a quick 1k-series check.

use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;
use porter_metrics::{Builder, Collector, Limits, LocalRecorder};

#[path = "../tests/common/counting.rs"]
mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

static META: Metadata<'static> = Metadata::new("memory", Level::INFO, None);

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

use counting::{allocations as allocs, live};

/// Series `i`: metric name, method, path, all owned.
fn series(i: usize) -> (String, String, String) {
    (
        format!("http_requests_{}_total", i % 10),
        METHODS[i % METHODS.len()].to_owned(),
        format!("/api/v1/resource/{i}"),
    )
}

fn unlimited() -> LocalRecorder {
    Builder::new()
        .limits(Limits::unlimited())
        .upkeep_interval(Duration::from_secs(3600))
        .build_local()
}

/// Live bytes after recording, after one render, after dropping; allocations while recording.
struct Measured {
    recorded: i64,
    rendered: i64,
    dropped: i64,
    allocations: u64,
    render_len: usize,
}

/// Runs `setup` (which records `n` series and returns what keeps them, plus a renderer),
/// measuring live bytes relative to before it.
fn measure<T>(setup: impl FnOnce() -> T, render: impl Fn(&T) -> String) -> Measured {
    let base = live();
    let allocs_before = allocs();
    let kept = setup();
    let allocations = allocs() - allocs_before;
    let recorded = live() - base;
    let text = render(&kept);
    let render_len = text.len();
    drop(text);
    let rendered = live() - base;
    drop(kept);
    // Let a pipeline's upkeep thread see its pipeline is gone and exit.
    std::thread::sleep(Duration::from_millis(50));
    let dropped = live() - base;
    Measured {
        recorded,
        rendered,
        dropped,
        allocations,
        render_len,
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = if benching { 100_000 } else { 1_000 };

    // Warm-up: the first use of the exporter, the collector and this thread's caches makes
    // one-time allocations (thread-locals, lazily initialised statics) that belong to none
    // of the cases.
    {
        let warm = unlimited();
        warm.collector()
            .increment_counter("warm_total", &["a", "b"]);
        metrics::with_local_recorder(&warm, || metrics::counter!("warm_macro_total").increment(1));
        let _ = warm.render();
        let exporter = PrometheusBuilder::new().build_recorder();
        exporter
            .register_counter(&Key::from_name("warm_total"), &META)
            .increment(1);
        let _ = exporter.handle().render();
    }
    std::thread::sleep(Duration::from_millis(50));

    let exporter = measure(
        || {
            let recorder = PrometheusBuilder::new().build_recorder();
            for i in 0..n {
                let (name, method, path) = series(i);
                let key = Key::from_parts(
                    name,
                    vec![
                        Label::new("method".to_owned(), method),
                        Label::new("path".to_owned(), path),
                    ],
                );
                recorder.register_counter(&key, &META).increment(1);
            }
            let handle = recorder.handle();
            (recorder, handle)
        },
        |(_, handle)| handle.render(),
    );

    let ours = measure(
        || {
            let local = unlimited();
            let collector = local.collector();
            for i in 0..n {
                let (name, method, path) = series(i);
                collector.increment_counter(&name, &["method", &method, "path", &path]);
            }
            local
        },
        LocalRecorder::render,
    );

    let macros = measure(
        || {
            let local = unlimited();
            metrics::with_local_recorder(&local, || {
                for i in 0..n {
                    let (name, method, path) = series(i);
                    metrics::counter!(name, "method" => method, "path" => path).increment(1);
                }
            });
            local
        },
        LocalRecorder::render,
    );

    let per = |bytes: i64| bytes as f64 / n as f64;
    println!("=== memory: {n} counter series, 2 label pairs each (live heap bytes) ===");
    println!(
        "{:<36}{:>10}{:>17}{:>15}{:>15}{:>15}",
        "", "B/series", "B/s. rendered", "B left on drop", "allocs/series", "render bytes"
    );
    for (label, m) in [
        ("(a) exporter alone", &exporter),
        ("(b) ours: LocalRecorder collector", &ours),
        ("(c) ours: macros via LocalRecorder", &macros),
    ] {
        println!(
            "{label:<36}{:>10.1}{:>17.1}{:>15}{:>15.2}{:>15}",
            per(m.recorded),
            per(m.rendered),
            m.dropped,
            m.allocations as f64 / n as f64,
            m.render_len
        );
    }
    let ratio = per(ours.recorded) / per(exporter.recorded);
    println!(
        "memory per series: ours / exporter = {ratio:.2} (target <= 1.3) {} [{:.1} B / {:.1} B]",
        if ratio <= 1.3 { "PASS" } else { "FAIL" },
        per(ours.recorded),
        per(exporter.recorded)
    );
    let ratio = per(ours.rendered) / per(exporter.rendered);
    println!(
        "memory per series after one render: ours / exporter = {ratio:.2} (target <= 1.3) {}",
        if ratio <= 1.3 { "PASS" } else { "FAIL" }
    );
    println!(
        "memory per series, macros via our recorder: ours / exporter = {:.2} (info)",
        per(macros.recorded) / per(exporter.recorded)
    );
}
