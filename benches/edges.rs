//! The edges of the hot path: calls past a limit, made again and again (answered from the
//! thread's cache: about a hit's cost, no lock), and hostile label sets on their first call
//! (each within 1 ms).
//!
//! Run with `cargo bench --bench edges`; after criterion, the medians are read back and
//! compared with the targets of issue 28.
//!
//! | group / id | what is timed |
//! |---|---|
//! | `edge_over_limit/hit` | `increment_counter` on one of 4 warm series |
//! | `edge_over_limit/overflow` | the same on a metric at its series limit (folded into its overflow series) |
//! | `edge_over_limit/dropped` | the same on a name past the metric-name limit (dropped, counted) |
//! | `edge_first_call/pairs_5000` | the first call of a recorder with 5 000 distinct pairs |
//! | `edge_first_call/repeated_key_2000` | the first call with 2 000 pairs of one key |
//! | `edge_first_call/value_1mib` | the first call with one 1 MiB value |

#[path = "support/estimates.rs"]
mod estimates;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion};
use porter_metrics::{Builder, Collector, Limits, LocalRecorder};

const SERIES: usize = 4;

fn labels(values: &[String], i: usize) -> [&str; 4] {
    ["user", &values[i], "region", "eu"]
}

fn over_limit(c: &mut Criterion) {
    let values: Vec<String> = (0..2 * SERIES).map(|i| format!("user-{i}")).collect();
    let limits = Limits::default()
        .with_series_per_metric(SERIES)
        .with_metric_names(2);
    let recorder = Builder::new().limits(limits).build_local();
    let collector = recorder.collector();
    for i in 0..SERIES {
        collector.increment_counter("hits_total", &labels(&values, i));
        collector.increment_counter("full_total", &labels(&values, i));
    }
    let mut g = c.benchmark_group("edge_over_limit");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    let mut i = 0usize;
    g.bench_function("hit", |b| {
        b.iter(|| {
            i = (i + 1) % SERIES;
            collector.increment_counter(black_box("hits_total"), &labels(&values, i));
        })
    });
    g.bench_function("overflow", |b| {
        b.iter(|| {
            i = (i + 1) % SERIES;
            let user = SERIES + i; // past the limit of 4
            collector.increment_counter(black_box("full_total"), &labels(&values, user));
        })
    });
    g.bench_function("dropped", |b| {
        b.iter(|| {
            i = (i + 1) % SERIES;
            collector.increment_counter(black_box("third_total"), &labels(&values, i));
        })
    });
    g.finish();
}

fn first_calls(c: &mut Criterion) {
    let many: Vec<String> = (0..5_000)
        .flat_map(|i| [format!("k{i}"), format!("v{i}")])
        .collect();
    let repeated: Vec<String> = (0..2_000)
        .flat_map(|i| ["k".to_owned(), format!("v{i}")])
        .collect();
    let huge = vec!["k".to_owned(), "x".repeat(1 << 20)];
    let mut g = c.benchmark_group("edge_first_call");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for (id, strings) in [
        ("pairs_5000", &many),
        ("repeated_key_2000", &repeated),
        ("value_1mib", &huge),
    ] {
        let labels: Vec<&str> = strings.iter().map(String::as_str).collect();
        g.bench_function(id, |b| {
            b.iter_batched(
                LocalRecorder::new,
                |recorder| {
                    recorder
                        .collector()
                        .increment_counter("hostile_total", black_box(&labels));
                    recorder // dropped outside the timed call
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn report(since: SystemTime) {
    let m = |group: &str, id: &str| estimates::median(since, &[group, id]);
    println!();
    println!("=== edges: medians and targets (issue 28) ===");
    let hit = m("edge_over_limit", "hit");
    for id in ["overflow", "dropped"] {
        match (m("edge_over_limit", id), hit) {
            (Some(v), Some(h)) => println!(
                "over the limit, {id}: {v:.1} ns = {:.2}x a hit ({h:.1} ns) (target: about 1x, no lock)",
                v / h
            ),
            _ => println!("over the limit, {id}: n/a (not run)"),
        }
    }
    for id in ["pairs_5000", "repeated_key_2000", "value_1mib"] {
        match m("edge_first_call", id) {
            Some(v) => println!(
                "first call, {id}: {:.3} ms (target <= 1 ms) {}",
                v / 1e6,
                if v <= 1e6 { "PASS" } else { "FAIL" }
            ),
            None => println!("first call, {id}: n/a (not run)"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let since = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    over_limit(&mut c);
    first_calls(&mut c);
    c.final_summary();
    if benching {
        report(since);
    }
}
