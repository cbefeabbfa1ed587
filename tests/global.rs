//! The global install path, in a process of its own (this test binary): a collector and the
//! macros used before the server starts, then the server, then everything in one scrape.
//!
//! One test function on purpose: the `metrics` global recorder is per process.

mod common;

use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, Error, MetricsServer, PrometheusCollector};

#[test]
fn nothing_recorded_before_the_server_starts_is_lost() {
    // 1. A collector first: it installs porter-metrics as the global recorder and buffers.
    let collector = PrometheusCollector::new();
    collector.increment_counter("early_total", &["phase", "boot"]);
    collector.record_gauge("early_gauge", 3.0, &[]);
    collector.record_histogram("early_seconds", 0.2, &[]);
    let early_timer = collector.start_timer("early_timer_seconds");
    // 2. Macros after that land in the same buffer.
    metrics::counter!("early_macro_total").increment(5);
    metrics::describe_counter!("early_macro_total", "Counted by a macro before start.");

    // 3. The server installs nothing new: it exports the pipeline already installed.
    let server = MetricsServer::new("127.0.0.1:0");
    server.start().expect("the global server starts");
    let addr = server.local_addr().expect("listening");
    let _ = early_timer.stop(); // a timer started before start() records after it

    // 4. Recording after start, through clones and new collectors alike.
    collector.increment_counter("early_total", &["phase", "boot"]);
    PrometheusCollector::new().increment_counter("late_total", &[]);
    metrics::gauge!("late_gauge").set(1.5);

    let scrape = Exposition::parse(&common::scrape(addr)).expect("valid scrape");
    assert_eq!(scrape.value("early_total", &["phase", "boot"]), Some(2.0));
    assert_eq!(scrape.value("early_gauge", &[]), Some(3.0));
    assert_eq!(
        scrape.histogram("early_seconds", &[]).map(|h| h.count),
        Some(1)
    );
    assert_eq!(
        scrape
            .histogram("early_timer_seconds", &[])
            .map(|h| h.count),
        Some(1)
    );
    assert_eq!(scrape.value("early_macro_total", &[]), Some(5.0));
    assert_eq!(
        scrape.help("early_macro_total"),
        Some("Counted by a macro before start.")
    );
    assert_eq!(scrape.help("early_total"), Some("Counter for early_total"));
    assert_eq!(scrape.value("late_total", &[]), Some(1.0));
    assert_eq!(scrape.value("late_gauge", &[]), Some(1.5));
    assert_eq!(
        scrape.value(
            "porter_metrics_dropped_samples_total",
            &["reason", "buffer_full"]
        ),
        Some(0.0)
    );

    // 5. A second global server cannot export the same pipeline while the first runs.
    let second = MetricsServer::new("127.0.0.1:0");
    assert!(matches!(second.start(), Err(Error::AlreadyExported)));

    // 6. After stop, recording still works, and a restart serves every value kept.
    server.stop().expect("stop");
    collector.increment_counter("early_total", &["phase", "boot"]);
    server.start().expect("a stopped server starts again");
    let addr = server.local_addr().expect("listening again");
    let scrape = Exposition::parse(&common::scrape(addr)).expect("valid scrape");
    assert_eq!(scrape.value("early_total", &["phase", "boot"]), Some(3.0));
    assert_eq!(scrape.value("early_macro_total", &[]), Some(5.0));
    server.stop().expect("stop");

    // 7. With the first one stopped, another global server may export the pipeline.
    second.start().expect("the second global server starts");
    let scrape = Exposition::parse(&common::scrape(second.local_addr().expect("listening")))
        .expect("valid scrape");
    assert_eq!(scrape.value("early_total", &["phase", "boot"]), Some(3.0));
    second.stop().expect("stop");

    // 8. A server built with other pipeline settings says so, rather than being ignored.
    let other = MetricsServer::builder()
        .buckets(&[1.0, 2.0])
        .expect("valid buckets")
        .build("127.0.0.1:0");
    assert!(matches!(
        other.start(),
        Err(Error::ConflictingSettings { setting: "buckets" })
    ));
    assert!(other.local_addr().is_none(), "it did not start");
    second.start().expect("the pipeline was left as it was");
    second.stop().expect("stop");
}
