//! Prometheus 3.5 (Debian sid's, the 3.5 LTS) and 2.42 scraping one process that records
//! OpenTelemetry semantic-convention names, through the macros and the collector:
//!
//! * a: 3.5 with its defaults (OpenMetrics, `escaping=allow-utf-8`);
//! * b: 3.5 with `native-histograms,created-timestamp-zero-ingestion` (protobuf);
//! * c: 3.5 with the text formats only;
//! * d: 2.42 (no `escaping`: legacy names).
//!
//! a, b and c store the names as recorded, each counter's series with `_total`, from every
//! format; d stores them escaped. b starts a counter from a stored 0 at its start
//! timestamp, so `increase()` counts what was recorded before the first scrape.

mod common;

use std::time::Duration;

use common::prometheus::{promtool_check, promtool_check_with, Prometheus};
use porter_metrics::{Builder, Collector};

const WAIT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn prometheus_3_keeps_opentelemetry_names_whole_in_every_format() {
    let server = Builder::new().standalone().build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    let collector = server.collector();
    let recorder = server.recorder().expect("standalone");
    // Recorded before any scrape.
    for _ in 0..5 {
        collector.increment_counter("app.jobs.done", &["job.kind", "export"]);
    }
    metrics::with_local_recorder(&recorder, || {
        metrics::histogram!("http.server.request.duration", "http.route" => "/users/{id}")
            .record(0.2);
        metrics::counter!("db.client.operation.count", "db.system.name" => "postgresql")
            .increment(3);
    });

    let text_only = "    scrape_protocols: [PrometheusText1.0.0, PrometheusText0.0.4]\n";
    let servers = [
        ("3.5 defaults", Prometheus::start_v3(&[addr], &[], "", &[])),
        (
            "3.5 protobuf",
            Prometheus::start_v3(
                &[addr],
                &["native-histograms", "created-timestamp-zero-ingestion"],
                "",
                &[],
            ),
        ),
        (
            "3.5 text",
            Prometheus::start_v3(&[addr], &[], text_only, &[]),
        ),
    ];
    for (which, prometheus) in &servers {
        let jobs = prometheus.wait_until(
            r#"{"app.jobs.done_total","job.kind"="export"}"#,
            WAIT,
            |v| v == 5.0,
        );
        assert_eq!(
            jobs,
            Some(5.0),
            "{which}: the counter by its recorded name, with _total"
        );
        let db = r#"{"db.client.operation.count_total","db.system.name"="postgresql"}"#;
        assert_eq!(
            prometheus.wait_until(db, WAIT, |v| v == 3.0),
            Some(3.0),
            "{which}"
        );
        let buckets =
            r#"sum({"http.server.request.duration_bucket","http.route"="/users/{id}",le="+Inf"})"#;
        assert_eq!(
            prometheus.wait_until(buckets, WAIT, |v| v == 1.0),
            Some(1.0),
            "{which}"
        );
        // No escaped twin anywhere.
        assert!(
            prometheus.query("app_jobs_done_total").is_empty(),
            "{which}"
        );
    }
    // Created timestamps: b stored a 0 at the counter's start, before its first value.
    let (_, b) = &servers[1];
    let samples = b.samples(r#"{"app.jobs.done_total"}[10m]"#);
    let first = samples
        .first()
        .and_then(|(_, points)| points.first().copied());
    assert_eq!(
        first.map(|p| p.1),
        Some(0.0),
        "the zero at the start timestamp: {samples:?}"
    );
    let increase = b.wait_until(r#"max_over_time({"app.jobs.done_total"}[10m]) - min_over_time({"app.jobs.done_total"}[10m])"#, WAIT, |v| v == 5.0);
    assert_eq!(
        increase,
        Some(5.0),
        "what was recorded before the first scrape counts"
    );
    // The defaults' server has no zero: it starts from the first scraped value.
    let (_, a) = &servers[0];
    let first = a.samples(r#"{"app.jobs.done_total"}[10m]"#);
    assert_eq!(
        first.first().and_then(|(_, p)| p.first()).map(|p| p.1),
        Some(5.0)
    );

    // 2.42 never names an escaping: it gets legacy names, as before.
    let old = Prometheus::start(&[addr]);
    assert_eq!(
        old.wait_until(r#"app_jobs_done_total{job_kind="export"}"#, WAIT, |v| v
            == 5.0),
        Some(5.0)
    );
    assert_eq!(
        old.wait_until(
            r#"db_client_operation_count_total{db_system_name="postgresql"}"#,
            WAIT,
            |v| v == 3.0
        ),
        Some(3.0)
    );
    let old_buckets =
        r#"sum(http_server_request_duration_bucket{http_route="/users/{id}",le="+Inf"})"#;
    assert_eq!(old.wait_until(old_buckets, WAIT, |v| v == 1.0), Some(1.0));
    server.stop().expect("stop");
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn promtool_3_accepts_the_default_scrape_without_a_complaint() {
    let recorder = Builder::new().build_local();
    let collector = recorder.collector();
    collector.increment_counter("app.jobs.done", &["job.kind", "export"]);
    collector.increment_counter("requests", &["code", "200"]);
    collector.record_histogram("latency_seconds", 0.2, &[]);
    collector.record_gauge("queue_size", 3.0, &[]);
    let text = recorder.render();
    let promtool = common::sid_binary("promtool");
    let (code, output) = promtool_check_with(&promtool, &text);
    assert_eq!(code, 0, "promtool 3.5:\n{output}\n{text}");
    // And 2.42's, too.
    let (code, output) = promtool_check(&text);
    assert_eq!(code, 0, "promtool 2.42:\n{output}\n{text}");
}
