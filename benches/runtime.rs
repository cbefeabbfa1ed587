//! What one refresh of the runtime metrics costs: `tokio-metrics`' reporter reading a
//! 2-worker runtime (with 1 000 tasks alive) and recording its series into our pipeline,
//! which is all the runtime-metrics thread does every upkeep interval.
//!
//! Run with `cargo bench --bench runtime`. The refresh runs on the reporter's thread: its
//! time is that thread's CPU time (it never waits), spent once per interval, never on the
//! runtime's request path.

use std::time::Duration;

use criterion::Criterion;
use porter_metrics::LocalRecorder;
use tokio_metrics::{RuntimeMetricsReporterBuilder, RuntimeMonitor};

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
    let recorder = LocalRecorder::new();
    let mut reporter = metrics::with_local_recorder(&recorder, || {
        RuntimeMetricsReporterBuilder::default()
            .describe()
            .build_with_monitor(RuntimeMonitor::new(runtime.handle()))
    });
    let mut group = c.benchmark_group("runtime_metrics");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("refresh", |b| b.iter(|| reporter.run_once()));
    group.finish();
    let _ = release.send(true);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
