//! The Flight SQL example pushing while it serves: OTLP to a real VictoriaMetrics,
//! Remote-Write 2.0 to a real Prometheus 3.5. Once its load ends and the final push is in,
//! every `grpc_server_handled_total` series and each histogram's `_count` the receiver
//! stores equal the example's own scrape. Everything listens on 127.0.0.1 only.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod harness;

use std::time::Duration;

use common::prometheus::Prometheus;
use common::receivers::{converge, LIMIT};
use common::victoria::VictoriaMetrics;
use harness::{in_process_with, InProcess};
use porter_metrics::testing::Exposition;
use porter_metrics::PushTarget;

/// Runs a bounded load, stops the metrics server (its final push), and gives its scrape
/// then: what every receiver must hold.
async fn load_then_stop(served: &InProcess, requests: u64) -> Exposition {
    let tally = served.load(requests).await;
    assert!(tally.total() >= requests);
    served.metrics.stop().expect("the final push succeeds");
    let text = served.metrics.recorder().expect("standalone").render();
    Exposition::parse(&text).expect("a valid exposition")
}

/// The handled counts and every histogram's `_count`, the series compared.
fn compared(scrape: &Exposition) -> Vec<String> {
    let mut names = vec!["grpc_server_handled_total".to_owned()];
    names.extend(
        scrape
            .families()
            .iter()
            .filter(|f| f.kind == "histogram")
            .map(|f| format!("{}_count", f.name)),
    );
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (run .ci/test)"]
async fn the_example_pushes_otlp_to_victoria_metrics() {
    let vm = VictoriaMetrics::start(&["-opentelemetry.usePrometheusNaming"]);
    let target = PushTarget::otlp(&vm.url("/opentelemetry/v1/metrics"))
        .and_then(|t| t.interval(Duration::from_millis(500)))
        .expect("valid target");
    let served = in_process_with(|b| b.service_name("flight-sql").push(target)).await;
    let scrape = load_then_stop(&served, 300).await;
    let names = compared(&scrape);
    assert!(names.len() > 3, "{names:?}");
    let vm = tokio::task::spawn_blocking(move || {
        let query = |promql: &str| vm.query(promql);
        // stop() ended every series with a stale marker: their last values, over a range.
        let last = |promql: &str| vm.query(&format!("last_over_time({promql}[1h])"));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let resource = [
            "service_name",
            "service_instance_id",
            "scope_name",
            "scope_version",
        ];
        let differences = converge(&last, &scrape, &names, &resource);
        assert!(differences.is_empty(), "{differences:#?}");
        // The resource attributes arrive as labels.
        let handled = last("grpc_server_handled_total");
        assert!(
            handled
                .iter()
                .all(|(m, _)| m["service_name"] == "flight-sql"
                    && m["service_instance_id"]
                        .as_str()
                        .is_some_and(|i| !i.is_empty())),
            "{handled:?}"
        );
        // The latency histograms are native, so exponential in OTLP: VictoriaMetrics keeps
        // their buckets as `vmrange` ranges, and quantiles come from them.
        let p90 = query(
            "histogram_quantile(0.9, sum by (vmrange) (last_over_time(grpc_server_handling_seconds_bucket[1h])))",
        );
        assert!(
            p90.first().is_some_and(|(_, v)| v.is_finite() && *v > 0.0),
            "{p90:?}"
        );
        vm
    })
    .await
    .expect("the queries run");
    drop(vm);
    let _ = served.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (run .ci/test)"]
async fn the_example_pushes_remote_write_2_to_prometheus_3() {
    let (prometheus, url) = Prometheus::remote_write_receiver();
    let target = PushTarget::remote_write(&url)
        .and_then(|t| t.interval(Duration::from_millis(500)))
        .expect("valid target");
    let served = in_process_with(|b| b.service_name("flight-sql").push(target)).await;
    let scrape = load_then_stop(&served, 300).await;
    let names = compared(&scrape);
    let prometheus = tokio::task::spawn_blocking(move || {
        let query = |promql: &str| prometheus.query(promql);
        // stop() ended every series with a stale marker: their last values, over a range.
        let last = |promql: &str| prometheus.query(&format!("last_over_time({promql}[1h])"));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let differences = converge(&last, &scrape, &names, &["job", "instance"]);
        assert!(differences.is_empty(), "{differences:#?}");
        let jobs = query("count by (job) (last_over_time(grpc_server_handled_total[1h]))");
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].0["job"], "flight-sql");
        // The native histogram beside the classic series: the same count.
        let classic = scrape
            .samples()
            .iter()
            .filter(|s| s.name == "grpc_server_handling_seconds_count")
            .map(|s| s.value)
            .sum::<f64>();
        let native = prometheus.wait_until(
            "sum(histogram_count(last_over_time(grpc_server_handling_seconds[1h])))",
            LIMIT,
            |v| v == classic,
        );
        assert_eq!(
            native,
            Some(classic),
            "histogram_count() of the native histogram"
        );
        let exemplars = prometheus.trace_ids("grpc_server_handling_seconds", LIMIT);
        let ids = exemplars.expect("exemplars of grpc_server_handling_seconds");
        let sent = porter_flight_sql::sent_trace_ids();
        assert!(
            ids.iter().all(|id| sent.contains(id)),
            "exemplars {ids:?} are trace ids the load generator sent"
        );
        prometheus
    })
    .await
    .expect("the queries run");
    drop(prometheus);
    let _ = served.stop.send(());
}
