//! Pushing to real receivers on loopback: OTLP to VictoriaMetrics, Remote-Write 2.0 to
//! Prometheus 3.5, Remote-Write to VictoriaMetrics (a 1.0 receiver: the fallback), an
//! outage of the receiver in the middle of a run, and OpenTelemetry's own Python SDK as
//! the reference of the OTLP mapping. Every value a receiver stores must equal the
//! process's own scrape once the final push is in.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::prometheus::Prometheus;
use common::receivers::{converge, label_set, normal, LabelSet, LIMIT};
use common::victoria::VictoriaMetrics;
use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, Collector, Matcher, MetricsServer, NativeHistograms, PushTarget};

/// Records a little of everything: counters with a dotted name and an exemplar, a gauge,
/// a classic and a native histogram.
fn record(collector: &impl Collector, round: u64) {
    for _ in 0..round {
        collector.increment_counter("jobs_total", &["kind", "a"]);
    }
    collector.increment_counter_with_exemplar(
        "jobs_total",
        &["kind", "b"],
        &["trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"],
    );
    collector.increment_counter("app.jobs.done", &["job.kind", "export"]);
    collector.record_gauge("queue_depth", round as f64, &[]);
    collector.record_histogram("latency_seconds", 0.2 * round as f64, &["path", "/"]);
    collector.record_histogram_with_exemplar(
        "native_seconds",
        0.3,
        &[],
        &["trace_id", "0af7651916cd43dd8448eb211c80319c"],
    );
}

fn server(target: PushTarget, service: &str) -> MetricsServer {
    Builder::new()
        .standalone()
        .service_name(service)
        .service_instance_id("i-1")
        .resource_attribute("deployment.environment", "test")
        .native_histograms_for_metric(
            Matcher::Full("native_seconds".into()),
            NativeHistograms::default(),
        )
        .expect("valid settings")
        .push(target)
        .build("127.0.0.1:0")
}

/// What the recorder holds after the final push (the push self-metrics are the
/// server's: see [`live_scrape`]).
fn final_scrape(server: &MetricsServer) -> Exposition {
    let text = server.recorder().expect("standalone").render();
    Exposition::parse(&text).expect("a valid exposition")
}

/// The running server's scrape, push self-metrics included.
fn live_scrape(server: &MetricsServer) -> Exposition {
    let text = common::scrape(server.local_addr().expect("serving"));
    Exposition::parse(&text).expect("a valid exposition")
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn otlp_to_victoria_metrics_equals_the_scrape() {
    let vm = VictoriaMetrics::start(&["-opentelemetry.usePrometheusNaming"]);
    let target = PushTarget::otlp(&vm.url("/opentelemetry/v1/metrics"))
        .and_then(|t| t.interval(Duration::from_millis(200)))
        .expect("valid target");
    let server = server(target, "otlp-test");
    server.start().expect("starts");
    let collector = server.collector();
    record(&collector, 2);
    let query = |promql: &str| vm.query(promql);
    let periodic = common::wait_for(LIMIT, || {
        query("jobs_total{kind=\"a\"}")
            .first()
            .filter(|(_, v)| *v == 2.0)
            .map(|(metric, _)| metric.clone())
    })
    .expect("a periodic push arrived");
    // The resource attributes arrive as labels.
    assert_eq!(periodic["service_name"], "otlp-test");
    assert_eq!(periodic["service_instance_id"], "i-1");
    assert_eq!(periodic["deployment_environment"], "test");
    let pushes = live_scrape(&server).value(
        "porter_metrics_pushes_total",
        &["endpoint", &vm.addr.to_string(), "protocol", "otlp"],
    );
    assert!(pushes.is_some_and(|n| n >= 1.0), "{pushes:?}");
    record(&collector, 3);
    server.stop().expect("the final push succeeds");

    let scrape = final_scrape(&server);
    let resource = [
        "service_name",
        "service_instance_id",
        "deployment_environment",
        "scope_name",
        "scope_version",
    ];
    let names = [
        "jobs_total",
        "app_jobs_done_total",
        "queue_depth",
        "latency_seconds_count",
        "latency_seconds_sum",
        "latency_seconds_bucket",
        "native_seconds_count",
        "native_seconds_sum",
    ];
    // The scrape names the dotted counter as recorded only under UTF-8 escaping; a
    // receiver naming the Prometheus way stores the escaped name.
    let text = server.recorder().expect("standalone").render();
    assert!(
        text.contains("app_jobs_done_total{job_kind=\"export\"} 2"),
        "{text}"
    );
    // After stop(), every series ended with a stale marker (points flagged
    // NO_RECORDED_VALUE): an instant query finds none, their last values are read over a
    // range.
    let ended = common::wait_for(LIMIT, || query("jobs_total").is_empty().then_some(()));
    assert!(ended.is_some(), "still current: {:?}", query("jobs_total"));
    let last = |promql: &str| vm.query(&format!("last_over_time({promql}[1h])"));
    let differences = converge(&last, &scrape, &names, &resource);
    assert!(differences.is_empty(), "{differences:#?}");
    // Native histograms arrive as exponential ones: VictoriaMetrics keeps their buckets as
    // `vmrange` ranges, queryable.
    let ranges = last("native_seconds_bucket");
    assert!(
        ranges
            .iter()
            .any(|(m, v)| m["vmrange"].is_string() && *v == 2.0),
        "{ranges:?}"
    );
    let median = query("histogram_quantile(0.5, last_over_time(latency_seconds_bucket[1h]))");
    assert!(
        median
            .first()
            .is_some_and(|(_, v)| v.is_finite() && *v > 0.0),
        "{median:?}"
    );
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn remote_write_2_to_prometheus_3_carries_native_histograms_and_exemplars() {
    let (prometheus, url) = Prometheus::remote_write_receiver();
    let target = PushTarget::remote_write(&url)
        .and_then(|t| t.interval(Duration::from_millis(200)))
        .expect("valid target");
    let server = server(target, "rw-test");
    server.start().expect("starts");
    let collector = server.collector();
    record(&collector, 2);
    let seen = prometheus.wait_until(
        "jobs_total{kind=\"a\",job=\"rw-test\",instance=\"i-1\"}",
        LIMIT,
        |v| v == 2.0,
    );
    assert_eq!(
        seen,
        Some(2.0),
        "a periodic push arrived, with job and instance"
    );
    let unsupported = live_scrape(&server).value(
        "porter_metrics_push_failures_total",
        &[
            "endpoint",
            &prometheus.addr.to_string(),
            "protocol",
            "remote_write",
            "reason",
            "unsupported",
        ],
    );
    assert_eq!(unsupported, Some(0.0), "Prometheus 3.5 takes 2.0");
    record(&collector, 3);
    server.stop().expect("the final push succeeds");

    // Every series pushed ended with a stale marker: an instant query finds none.
    let pushed = "{job=\"rw-test\"}";
    let ended = common::wait_for(LIMIT, || prometheus.query(pushed).is_empty().then_some(()));
    assert!(
        ended.is_some(),
        "still there: {:?}",
        prometheus.query(pushed)
    );
    // Their last values are read over a range.
    let scrape = final_scrape(&server);
    let last = |promql: &str| prometheus.query(&format!("last_over_time({promql}[1h])"));
    let names = [
        "jobs_total",
        "queue_depth",
        "latency_seconds_count",
        "latency_seconds_sum",
        "latency_seconds_bucket",
        "native_seconds_count",
    ];
    let differences = converge(&last, &scrape, &names, &["job", "instance"]);
    assert!(differences.is_empty(), "{differences:#?}");
    // The dotted name arrives whole (Remote-Write 2.0 carries UTF-8 names).
    let dotted = prometheus.wait_until(
        "last_over_time({\"app.jobs.done_total\", \"job.kind\"=\"export\"}[1h])",
        LIMIT,
        |v| v == 2.0,
    );
    assert_eq!(dotted, Some(2.0));
    let native = prometheus.wait_until(
        "histogram_count(last_over_time(native_seconds[1h]))",
        LIMIT,
        |v| v == 2.0,
    );
    assert_eq!(native, Some(2.0), "the native histogram arrived");
    let exemplars = prometheus.trace_ids("jobs_total", LIMIT);
    let ids = exemplars.expect("exemplars of jobs_total");
    assert!(
        ids.iter()
            .all(|id| id == "4bf92f3577b34da6a3ce929d0e0e4736"),
        "{ids:?}"
    );
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn remote_write_falls_back_to_1_0_at_victoria_metrics() {
    let vm = VictoriaMetrics::start(&[]);
    let target = PushTarget::remote_write(&vm.url("/api/v1/write"))
        .and_then(|t| t.interval(Duration::from_millis(200)))
        .expect("valid target");
    let server = server(target, "rw1-test");
    server.start().expect("starts");
    let collector = server.collector();
    record(&collector, 4);
    let query = |promql: &str| vm.query(promql);
    let arrived = common::wait_for(LIMIT, || {
        query("jobs_total{kind=\"a\"}")
            .first()
            .filter(|(_, v)| *v == 4.0)
            .map(|_| ())
    });
    assert!(arrived.is_some(), "a periodic push arrived");
    let unsupported = live_scrape(&server).value(
        "porter_metrics_push_failures_total",
        &[
            "endpoint",
            &vm.addr.to_string(),
            "protocol",
            "remote_write",
            "reason",
            "unsupported",
        ],
    );
    assert_eq!(unsupported, Some(1.0), "one 2.0 push, then 1.0 for good");
    record(&collector, 1);
    server.stop().expect("the final push succeeds");
    let scrape = final_scrape(&server);
    let names = [
        "jobs_total",
        "latency_seconds_count",
        "latency_seconds_bucket",
    ];
    let last = |promql: &str| vm.query(&format!("last_over_time({promql}[1h])"));
    let differences = converge(&last, &scrape, &names, &["job", "instance"]);
    assert!(differences.is_empty(), "{differences:#?}");
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn an_outage_loses_nothing_a_cumulative_value_carries() {
    let mut vm = VictoriaMetrics::start(&["-opentelemetry.usePrometheusNaming"]);
    let target = PushTarget::otlp(&vm.url("/opentelemetry/v1/metrics"))
        .and_then(|t| t.interval(Duration::from_millis(200)))
        .and_then(|t| t.timeout(Duration::from_millis(500)))
        .expect("valid target");
    let server = Builder::new()
        .standalone()
        .service_name("outage")
        .push(target)
        .build("127.0.0.1:0");
    server.start().expect("starts");
    let collector = server.collector();
    let failures = || {
        live_scrape(&server)
            .samples()
            .iter()
            .filter(|s| s.name == "porter_metrics_push_failures_total")
            .map(|s| s.value)
            .sum::<f64>()
    };
    let mut total = 0u64;
    let mut bump = |n: u64| {
        for _ in 0..n {
            collector.increment_counter("orders_total", &[]);
        }
        total += n;
    };
    bump(100);
    let arrived = common::wait_for(LIMIT, || {
        vm.query("orders_total")
            .first()
            .filter(|(_, v)| *v == 100.0)
            .map(|_| ())
    });
    assert!(arrived.is_some(), "pushes arrive before the outage");
    vm.kill();
    // Recording goes on while every push fails.
    let failed = common::wait_for(LIMIT, || {
        bump(10);
        (failures() >= 3.0).then_some(())
    });
    assert!(failed.is_some(), "the failures are counted: {}", failures());
    vm.restart();
    bump(7);
    server.stop().expect("the final push succeeds");
    let stored = common::wait_for(LIMIT, || {
        vm.query("last_over_time(orders_total[1h])")
            .first()
            .filter(|(_, v)| *v == total as f64)
            .map(|(_, v)| *v)
    });
    assert_eq!(
        stored,
        Some(total as f64),
        "every increment made during the outage arrived"
    );
}

/// The OpenTelemetry Python SDK's interpreter: `$PORTER_PYTHON`, or the virtualenv
/// `.ci/install-deps` makes.
fn python() -> std::path::PathBuf {
    let path = std::env::var_os("PORTER_PYTHON")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::Path::new(&h).join(".cache/porter-metrics/py/bin/python"))
        })
        .unwrap_or_default();
    assert!(
        path.exists(),
        "`{}` is missing: run .ci/install-deps (it installs opentelemetry-sdk there)",
        path.display()
    );
    path
}

/// What OpenTelemetry's Python SDK pushes for the same recordings as ours below.
const PYTHON_SDK: &str = r#"
import sys
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import View, ExplicitBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

url, version, buckets = sys.argv[1], sys.argv[2], [float(b) for b in sys.argv[3].split(",")]
reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=url), export_interval_millis=3600000)
views = [View(instrument_name="latency_seconds", aggregation=ExplicitBucketHistogramAggregation(buckets))]
resource = Resource.create({"service.name": "python-sdk", "service.instance.id": "py-1"})
provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
meter = provider.get_meter("porter-metrics", version)
meter.create_counter("jobs").add(3, {"kind": "a"})
meter.create_counter("app.jobs.done").add(2, {"job.kind": "export"})
meter.create_gauge("queue_depth").set(7)
meter.create_histogram("latency_seconds").record(0.2, {"http.route": "/users/{id}"})
provider.force_flush()
provider.shutdown()
"#;

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn the_otlp_mapping_matches_opentelemetrys_python_sdk() {
    let vm = VictoriaMetrics::start(&["-opentelemetry.usePrometheusNaming"]);
    let url = vm.url("/opentelemetry/v1/metrics");
    let buckets: Vec<String> = porter_metrics::DEFAULT_BUCKETS
        .iter()
        .map(f64::to_string)
        .collect();
    let status = std::process::Command::new(python())
        .args([
            "-c",
            PYTHON_SDK,
            &url,
            env!("CARGO_PKG_VERSION"),
            &buckets.join(","),
        ])
        .status()
        .expect("python runs");
    assert!(status.success(), "the Python SDK pushed");

    let target = PushTarget::otlp(&url).expect("valid target");
    let server = Builder::new()
        .standalone()
        .service_name("porter")
        .service_instance_id("rs-1")
        .push(target)
        .build("127.0.0.1:0");
    server.start().expect("starts");
    let collector = server.collector();
    for _ in 0..3 {
        collector.increment_counter("jobs_total", &["kind", "a"]);
    }
    collector.add_to_counter("app.jobs.done", 2, &["job.kind", "export"]);
    collector.record_gauge("queue_depth", 7.0, &[]);
    collector.record_histogram("latency_seconds", 0.2, &["http.route", "/users/{id}"]);
    server.stop().expect("the final push succeeds");

    // Everything but who pushed (and the SDK's own description of itself) must agree.
    let ignored = [
        "service_name",
        "service_instance_id",
        "telemetry_sdk_language",
        "telemetry_sdk_name",
        "telemetry_sdk_version",
    ];
    let series = |service: &str| -> BTreeMap<(String, LabelSet), f64> {
        vm.query(&format!(
            "last_over_time({{service_name=\"{service}\", __name__!~\"porter_metrics_.*\"}}[1h]) keep_metric_names"
        ))
        .into_iter()
        .map(|(metric, value)| {
            let name = metric["__name__"].as_str().unwrap_or_default().to_owned();
            let labels = label_set(&metric, &ignored)
                .into_iter()
                .map(|(k, v)| {
                    let v = normal(&k, &v);
                    (k, v)
                })
                .collect();
            ((name, labels), value)
        })
        .collect()
    };
    let agree = common::wait_for(LIMIT, || {
        let (python, ours) = (series("python-sdk"), series("porter"));
        (!python.is_empty() && python == ours).then_some(())
    });
    assert!(
        agree.is_some(),
        "the Python SDK's series:\n{:#?}\nours:\n{:#?}",
        series("python-sdk"),
        series("porter")
    );
}
