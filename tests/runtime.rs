//! `Builder::runtime_metrics`: the tokio-metrics reporter's series reach the pipeline, for
//! the runtime given, with the stable metrics only.
#![cfg(feature = "runtime")]

use std::time::{Duration, Instant};

use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, LocalRecorder};

/// The first scrape for which `ready` holds, or the last one after 10 s.
fn scrape_when(recorder: &LocalRecorder, ready: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = Exposition::parse(&recorder.render()).expect("a valid exposition");
        if ready(&scrape) || Instant::now() > deadline {
            return scrape;
        }
        // Polling, bounded by the deadline: the reporter refreshes every 20 ms.
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn workers_alive_tasks_queue_busy_time_and_parks_are_exported() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let recorder = Builder::new()
        .runtime_metrics(runtime.handle())
        .upkeep_interval(Duration::from_millis(20))
        .build_local();

    // Three tasks wait on a signal: alive, not queued.
    let (release, released) = tokio::sync::watch::channel(false);
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let mut released = released.clone();
            runtime.spawn(async move {
                let _ = released.wait_for(|go| *go).await;
            })
        })
        .collect();
    let scrape = scrape_when(&recorder, |s| {
        s.value("tokio_live_tasks", &[]) == Some(3.0)
            && s.value("tokio_total_busy_duration", &[]) > Some(0.0)
    });
    assert_eq!(scrape.value("tokio_workers", &[]), Some(2.0));
    assert_eq!(scrape.value("tokio_live_tasks", &[]), Some(3.0));
    assert!(scrape.value("tokio_total_busy_duration", &[]) > Some(0.0));
    assert_eq!(scrape.kind("tokio_total_busy_duration"), Some("counter"));
    for gauge in [
        "tokio_global_queue_depth",
        "tokio_busy_ratio",
        "tokio_total_parks",
        "tokio_max_parks",
        "tokio_min_parks",
    ] {
        assert_eq!(scrape.kind(gauge), Some("gauge"), "{gauge}");
        assert!(scrape.value(gauge, &[]).is_some(), "{gauge}");
    }
    for counter in ["tokio_max_busy_duration", "tokio_min_busy_duration"] {
        assert_eq!(scrape.kind(counter), Some("counter"), "{counter}");
    }
    // Stable tokio only: nothing that needs `tokio_unstable`.
    let unstable = [
        "tokio_total_steal_count",
        "tokio_total_polls_count",
        "tokio_mean_poll_duration",
    ];
    for name in unstable {
        assert_eq!(scrape.kind(name), None, "{name}");
    }

    // The tasks end: the gauge follows.
    release.send(true).expect("the tasks wait");
    for task in waiting {
        runtime.block_on(task).expect("no panic");
    }
    let scrape = scrape_when(&recorder, |s| s.value("tokio_live_tasks", &[]) == Some(0.0));
    assert_eq!(scrape.value("tokio_live_tasks", &[]), Some(0.0));
}

#[test]
fn a_recorder_without_the_call_has_no_runtime_series() {
    let recorder = Builder::new().build_local();
    recorder.run_upkeep();
    assert!(!recorder.render().contains("tokio_"));
}
