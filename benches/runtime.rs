//! What the runtime metrics cost: one reading of a 2-worker runtime (with 1 000 tasks
//! alive) by `tokio-metrics`, which is all the runtime-metrics thread does every upkeep
//! interval, and the render of a recorder holding only the runtime's families (what a
//! scrape adds for them).
//!
//! Run with `cargo bench --bench runtime`. The reading runs on the runtime-metrics thread:
//! its time is that thread's CPU time (it never waits), spent once per interval, never on
//! the runtime's request path.

use std::time::Duration;

use criterion::Criterion;
use porter_metrics::Builder;
use tokio_metrics::RuntimeMonitor;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (release, released) = tokio::sync::watch::channel(false);
    for _ in 0..1_000 {
        let mut released = released.clone();
        runtime.spawn(async move {
            let _ = released.wait_for(|go| *go).await;
        });
    }
    let mut intervals = RuntimeMonitor::new(runtime.handle()).intervals();
    let recorder = Builder::new()
        .runtime_metrics(runtime.handle())
        .build_local();
    let mut group = c.benchmark_group("runtime_metrics");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("read", |b| b.iter(|| intervals.next()));
    group.bench_function("render", |b| b.iter(|| recorder.render()));
    group.finish();
    let _ = release.send(true);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
