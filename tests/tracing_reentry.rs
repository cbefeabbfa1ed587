//! A `tracing` subscriber that records a metric on every event, as a metrics bridge of a
//! logging stack does: porter-metrics logs (once per problem, on start and stop) and
//! records, and the subscriber records back into it, from the same thread. No lock of ours
//! is held when we log, so nothing deadlocks. The whole API surface runs on a thread of
//! its own, with a deadline.

use std::sync::mpsc;
use std::time::Duration;

use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, Collector, Limits, MetricsServer, PrometheusCollector};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every event into the global pipeline: through the collector and a macro.
struct Recording;

impl Subscriber for Recording {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let level = event.metadata().level().as_str();
        PrometheusCollector::new().increment_counter("log_events_total", &["level", level]);
        metrics::counter!("log_events_macro_total", "level" => level).increment(1);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Everything that logs, or records while something logs.
fn surface() -> f64 {
    let server = MetricsServer::new("127.0.0.1:0");
    server.start().expect("the global server starts (and logs)");
    let addr = server.local_addr().expect("running");
    let collector = PrometheusCollector::new();
    // Every kind of problem, each logged once, from the recording thread.
    collector.increment_counter("", &[]);
    collector.increment_counter("porter_metrics_mine", &[]);
    collector.record_gauge("twice_kind", 1.0, &[]);
    collector.increment_counter("twice_kind", &[]);
    collector.increment_counter("dangling_total", &["a"]);
    collector.increment_counter("renamed_total", &["__x", "1"]);
    collector.increment_counter_with_exemplar("ex_total", &[], &["bad-key", "v"]);
    let long = "v".repeat(5000);
    collector.increment_counter("long_total", &["k", &long]);
    metrics::histogram!("nan_seconds").record(f64::NAN);
    // Limits and overflow, on a pipeline of its own, with idle expiry and upkeep.
    let local = Builder::new()
        .limits(Limits::default().with_series_per_metric(2))
        .idle_timeout(Duration::from_millis(50))
        .upkeep_interval(Duration::from_millis(10))
        .build_local();
    for user in 0..10 {
        local
            .collector()
            .increment_counter("users_total", &["user", &user.to_string()]);
    }
    local.run_upkeep();
    let text = local.render();
    Exposition::parse(&text).expect("valid");
    // A second start (an error), a scrape, a stop and a start again.
    assert!(server.start().is_err());
    let body = std::net::TcpStream::connect(addr).map(|_| ()).is_ok();
    assert!(body);
    server.stop().expect("stop (and log)");
    server.start().expect("start again");
    let scrape = Exposition::parse(&porter_metrics::LocalRecorder::new().render()).map(|_| ());
    assert!(scrape.is_ok());
    // A push that fails, and logs.
    let target = porter_metrics::PushTarget::pushgateway("http://127.0.0.1:9/metrics/job/x")
        .and_then(|t| t.interval(Duration::from_millis(20)))
        .expect("a target");
    let pusher = Builder::new()
        .standalone()
        .push(target)
        .build_pusher()
        .expect("a pusher");
    pusher.start().expect("start pushing");
    pusher.collector().increment_counter("pushed_total", &[]);
    let _ = pusher.stop();
    // What the subscriber recorded while we logged.
    let text = {
        let mut stream =
            std::net::TcpStream::connect(server.local_addr().expect("running")).expect("connect");
        use std::io::{Read, Write};
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    };
    server.stop().expect("stop");
    let scrape = Exposition::parse(&text).expect("valid");
    scrape
        .sum("log_events_total")
        .min(scrape.sum("log_events_macro_total"))
}

#[test]
fn a_subscriber_that_records_on_every_event_never_deadlocks() {
    tracing::subscriber::set_global_default(Recording).expect("the only subscriber");
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(surface());
    });
    let events = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("the API surface finished: no deadlock");
    assert!(events >= 5.0, "the subscriber recorded {events} events");
}
