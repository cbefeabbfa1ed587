//! The Flight SQL workload through a standalone server, scraped over HTTP, checked by
//! `promtool check metrics` (Debian package `prometheus`): no parse error, and the values
//! the workload recorded read back from the scrape.

mod common;
#[path = "../examples/support/workload.rs"]
mod workload;

use std::sync::Arc;

use common::prometheus::promtool_check;
use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, MetricsServer};
use workload::Workload;

const STEPS: u64 = 2000;

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn the_workload_scrape_passes_promtool_and_reads_back() {
    // Fail early, with the install hint, if promtool is missing.
    common::require_binary("promtool", "prometheus");

    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("listening");
    let recorder = server
        .recorder()
        .expect("a standalone server has a recorder");
    let collector: Arc<dyn Collector> = Arc::new(server.collector());
    let mut workload = Workload::new(collector, 42);
    // The macros (bytes sent) land in the server's pipeline too.
    metrics::with_local_recorder(&recorder, || workload.run(STEPS));
    let tally = workload.tally().clone();

    let body = common::scrape(addr);
    let (code, output) = promtool_check(&body);
    assert_ne!(code, 1, "promtool found a parse error:\n{output}\n{body}");
    assert!(
        !output.contains("parsing error"),
        "promtool: {output}\n{body}"
    );

    let scrape = Exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));

    // Every request counted once, by method and status.
    assert_eq!(scrape.kind(workload::REQUESTS), Some("counter"));
    assert_eq!(scrape.sum(workload::REQUESTS), STEPS as f64);
    for (&(method, status), &n) in &tally.requests {
        assert_eq!(
            scrape.value(workload::REQUESTS, &["method", method, "status", status]),
            Some(n as f64),
            "{method} {status}"
        );
    }
    let methods_seen = workload::METHODS
        .iter()
        .filter(|(m, _)| tally.requests_of(m) > 0)
        .count();
    assert_eq!(methods_seen, workload::METHODS.len(), "every method ran");

    // Errors, with every label shape present in one family.
    assert!(tally.errors > 0 && tally.errors_code_only > 0 && tally.errors_with_table > 0);
    assert_eq!(scrape.sum(workload::ERRORS), tally.errors as f64);
    assert_eq!(
        scrape.value(workload::ERRORS, &["code", "UNAUTHENTICATED"]),
        Some(tally.errors_code_only as f64)
    );
    let with_table: f64 = scrape
        .samples()
        .iter()
        .filter(|s| s.name == workload::ERRORS && s.labels.iter().any(|(k, _)| k == "table"))
        .map(|s| s.value)
        .sum();
    assert_eq!(with_table, tally.errors_with_table as f64);

    // Histograms: the simulated durations by method, and both kinds of timers.
    let mut count = 0;
    let mut sum = 0.0;
    for (method, _) in workload::METHODS {
        let h = scrape
            .histogram(workload::REQUEST_DURATION, &["method", method])
            .unwrap_or_else(|| panic!("no {method} durations"));
        assert_eq!(h.count, tally.requests_of(method), "{method}");
        assert_eq!(h.buckets.last().map(|b| b.1), Some(h.count), "+Inf = count");
        count += h.count;
        sum += h.sum;
    }
    assert_eq!(count, STEPS);
    assert!(
        (sum - tally.simulated_seconds).abs() < 1e-6 * tally.simulated_seconds,
        "{sum} vs {}",
        tally.simulated_seconds
    );
    let queries = scrape
        .histogram(workload::QUERY_DURATION, &[])
        .expect("stopped timers");
    assert_eq!(queries.count, tally.queries);
    let handlers = scrape
        .histogram(workload::HANDLER_DURATION, &[])
        .expect("dropped timers");
    assert_eq!(handlers.count, STEPS);

    // Gauges and the macro counter.
    assert_eq!(scrape.kind(workload::IN_FLIGHT), Some("gauge"));
    assert_eq!(scrape.value(workload::IN_FLIGHT, &[]), Some(0.0));
    assert_eq!(
        scrape.value(workload::CACHE_ENTRIES, &[]),
        Some(workload.cache_entries() as f64)
    );
    assert_eq!(scrape.kind(workload::BYTES_SENT), Some("counter"));
    for (method, &bytes) in &tally.bytes_sent {
        assert_eq!(
            scrape.value(workload::BYTES_SENT, &["method", method]),
            Some(bytes as f64),
            "{method}"
        );
    }
    assert_eq!(scrape.sum(workload::BYTES_SENT), tally.bytes_total() as f64);

    server.stop().expect("stop");
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn concurrent_workload_streams_add_up_and_pass_promtool() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 500;
    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("listening");
    let recorder = server
        .recorder()
        .expect("a standalone server has a recorder");
    let first = Workload::new(Arc::new(server.collector()), 1);
    let tallies: Vec<workload::Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let mut stream = first.fork(100 + i);
                let recorder = recorder.clone();
                s.spawn(move || {
                    metrics::with_local_recorder(&recorder, || stream.run(PER_THREAD));
                    stream.tally().clone()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let body = common::scrape(addr);
    let (code, output) = promtool_check(&body);
    assert_ne!(code, 1, "promtool found a parse error:\n{output}\n{body}");
    assert!(!output.contains("parsing error"), "promtool: {output}");
    let scrape = Exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));

    let steps = THREADS * PER_THREAD;
    assert_eq!(scrape.sum(workload::REQUESTS), steps as f64);
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    assert_eq!(scrape.sum(workload::ERRORS), errors as f64);
    let bytes: u64 = tallies.iter().map(|t| t.bytes_total()).sum();
    assert_eq!(scrape.sum(workload::BYTES_SENT), bytes as f64);
    let queries: u64 = tallies.iter().map(|t| t.queries).sum();
    assert_eq!(
        scrape
            .histogram(workload::QUERY_DURATION, &[])
            .map(|h| h.count),
        Some(queries)
    );
    assert_eq!(
        scrape
            .histogram(workload::HANDLER_DURATION, &[])
            .map(|h| h.count),
        Some(steps)
    );
    assert_eq!(scrape.value(workload::IN_FLIGHT, &[]), Some(0.0));
    assert_eq!(
        scrape.value(workload::CACHE_ENTRIES, &[]),
        Some(first.cache_entries() as f64)
    );
    server.stop().expect("stop");
}
