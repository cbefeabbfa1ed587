//! `Builder::runtime_metrics` and `Builder::process_metrics`: the runtime's series (read by
//! tokio-metrics, stable metrics only) and the process' reach the pipeline, in base units,
//! typed as Prometheus' conventions want them, each with a HELP text of its own; `promtool
//! check metrics` (Prometheus 2 and 3) finds nothing to say about them.
#![cfg(feature = "runtime")]

mod common;

use std::time::{Duration, Instant};

use common::prometheus::{promtool_check, promtool_check_with};

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

/// A runtime of two workers.
fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn workers_alive_tasks_queue_busy_time_and_parks_are_exported() {
    let runtime = two_workers();
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
            && s.value("tokio_busy_seconds", &[]) > Some(0.0)
    });
    assert_eq!(scrape.value("tokio_workers", &[]), Some(2.0));
    assert_eq!(scrape.value("tokio_live_tasks", &[]), Some(3.0));
    // Seconds, not microseconds: the workers cannot have been busy longer than the test.
    let busy = scrape.value("tokio_busy_seconds", &[]).unwrap_or(0.0);
    assert!(busy > 0.0 && busy < 2.0 * 60.0, "{busy} s");
    for counter in ["tokio_busy_seconds", "tokio_parks"] {
        assert_eq!(scrape.kind(counter), Some("counter"), "{counter}");
    }
    for gauge in [
        "tokio_global_queue_depth",
        "tokio_busy_ratio",
        "tokio_max_busy_seconds",
        "tokio_min_busy_seconds",
        "tokio_max_parks",
        "tokio_min_parks",
    ] {
        assert_eq!(scrape.kind(gauge), Some("gauge"), "{gauge}");
        assert!(scrape.value(gauge, &[]).is_some(), "{gauge}");
    }
    let ratio = scrape.value("tokio_busy_ratio", &[]).unwrap_or(-1.0);
    assert!((0.0..=1.0).contains(&ratio), "busy ratio {ratio}");
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

/// Every family's HELP text: present, without rustdoc markup, not the placeholder, and no
/// two alike.
fn assert_described(scrape: &Exposition, prefix: &str) {
    let families: Vec<_> = scrape
        .families()
        .iter()
        .filter(|f| f.name.starts_with(prefix))
        .collect();
    assert!(!families.is_empty(), "{prefix} families");
    let mut texts = std::collections::HashSet::new();
    for family in families {
        let help = family.help.as_deref().unwrap_or_default();
        assert!(!help.is_empty(), "{} has a HELP text", family.name);
        assert!(
            !help.contains('`') && !help.contains('['),
            "{}: {help}",
            family.name
        );
        assert!(!help.starts_with("Counter for"), "{}: {help}", family.name);
        assert!(
            texts.insert(help.to_owned()),
            "{}: {help} twice",
            family.name
        );
    }
}

#[test]
fn runtime_and_process_series_are_described_each_in_its_own_words() {
    let runtime = two_workers();
    let recorder = Builder::new()
        .runtime_metrics(runtime.handle())
        .process_metrics()
        .build_local();
    let scrape = Exposition::parse(&recorder.render()).expect("a valid exposition");
    assert_described(&scrape, "tokio_");
    assert_described(&scrape, "process_");
}

#[cfg(target_os = "linux")]
#[test]
fn process_cpu_seconds_move_by_less_than_a_second_and_no_limit_is_minus_one() {
    let recorder = Builder::new().process_metrics().build_local();
    let cpu = || {
        Exposition::parse(&recorder.render())
            .expect("a valid exposition")
            .value("process_cpu_seconds_total", &[])
            .expect("CPU seconds")
    };
    let before = cpu();
    // Burn CPU until the counter moves (bounded: a clock tick is 10 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut spin = 0u64;
    let mut after = cpu();
    while after == before && Instant::now() < deadline {
        for i in 0..1_000_000u64 {
            spin = spin.wrapping_add(std::hint::black_box(i));
        }
        after = cpu();
    }
    std::hint::black_box(spin);
    assert!(after > before, "the counter moves");
    assert!(
        after - before < 1.0 || after.fract() != 0.0,
        "sub-second resolution: {before} then {after}"
    );
    let scrape = Exposition::parse(&recorder.render()).expect("a valid exposition");
    assert_eq!(scrape.kind("process_cpu_seconds"), Some("counter"));
    let max = scrape
        .value("process_virtual_memory_max_bytes", &[])
        .expect("the limit");
    let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
    let unlimited = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .is_some_and(|l| l.split_whitespace().nth(3) == Some("unlimited"));
    match unlimited {
        true => assert_eq!(max, -1.0),
        false => assert!(max > 0.0, "{max}"),
    }
}

#[test]
fn an_application_series_of_the_same_name_is_written_once() {
    let recorder = Builder::new().process_metrics().build_local();
    let collector = recorder.collector();
    porter_metrics::Collector::record_gauge(&collector, "process_open_fds", 3.0, &[]);
    let text = recorder.render();
    assert_eq!(
        text.matches("# TYPE process_open_fds ").count(),
        1,
        "{text}"
    );
    let scrape = Exposition::parse(&text).expect("a valid exposition");
    assert_eq!(scrape.value("process_open_fds", &[]), Some(3.0));
}

#[test]
#[ignore = "needs promtool (run .ci/test)"]
fn promtool_2_and_3_find_nothing_to_say_about_runtime_and_process_series() {
    let runtime = two_workers();
    let recorder = Builder::new()
        .runtime_metrics(runtime.handle())
        .process_metrics()
        .build_local();
    let text = recorder.render();
    assert!(
        text.contains("tokio_busy_seconds_total") && text.contains("process_cpu_seconds_total")
    );
    let (code, output) = promtool_check(&text);
    assert_eq!(code, 0, "promtool 2.42:\n{output}\n{text}");
    let (code, output) = promtool_check_with(&common::sid_binary("promtool"), &text);
    assert_eq!(code, 0, "promtool 3.5:\n{output}\n{text}");
}
