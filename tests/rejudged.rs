//! Names refused under the limits of the global pipeline before a server binds it with
//! higher ones are judged again under those: in a process of its own (this test binary),
//! since the `metrics` global recorder is per process.

mod common;

use porter_metrics::self_metrics::DROPPED_SAMPLES;
use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, Limits, MetricsServer, PrometheusCollector};

#[test]
fn a_name_refused_before_the_server_binds_is_judged_again_under_its_limits() {
    // The global pipeline, installed by the collector, has the default limits until bound.
    let collector = PrometheusCollector::new();
    let names = Limits::default().metric_names;
    for i in 0..names {
        collector.increment_counter(&format!("m{i}_total"), &[]);
    }
    // One name too many, twice: refused, and the refusal cached by this thread.
    collector.increment_counter("late_total", &[]);
    collector.increment_counter("late_total", &[]);

    let server = MetricsServer::builder()
        .limits(Limits::default().with_metric_names(names + 10))
        .build("127.0.0.1:0");
    server.start().expect("the global server starts");
    let addr = server.local_addr().expect("listening");
    collector.increment_counter("late_total", &[]);

    let scrape = Exposition::parse(&common::scrape(addr)).expect("a valid scrape");
    assert_eq!(scrape.value("late_total", &[]), Some(1.0));
    assert_eq!(
        scrape.value(DROPPED_SAMPLES, &["reason", "metric_limit"]),
        Some(2.0)
    );
    server.stop().expect("stops");
}
