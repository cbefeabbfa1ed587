//! Pushing as a fleet does, to real receivers with their default settings: a store far
//! larger than one request takes arrives whole (VictoriaMetrics, by Remote-Write 1.0 and by
//! OTLP); a Prometheus 3.5 without native histograms gets every counter and the classic
//! buckets of native histograms; after `stop()`, no pushed series is current any more.

mod common;

use std::time::Duration;

use common::prometheus::Prometheus;
use common::receivers::LIMIT;
use common::victoria::VictoriaMetrics;
use porter_metrics::{Builder, Collector, Limits, Matcher, NativeHistograms, PushTarget, Pusher};

/// Histogram series and counter series of the large store.
const HISTOGRAMS: usize = 100_000;
const COUNTERS: usize = 10_000;

/// A standalone pusher to `target` (pushing only at `stop()`), holding the large store:
/// every histogram series observed once (0.2 s), every counter at 3.
fn large_store(target: PushTarget, service: &str) -> Pusher {
    let target = target
        .interval(Duration::from_secs(3600))
        .and_then(|t| t.timeout(Duration::from_secs(300)))
        .expect("valid target");
    let pusher = Builder::new()
        .standalone()
        .limits(Limits::unlimited())
        .service_name(service)
        .push(target)
        .build_pusher()
        .expect("a pusher");
    pusher.start().expect("starts");
    let collector = pusher.collector();
    for i in 0..HISTOGRAMS {
        let user = format!("u{i}");
        collector.record_histogram("fleet_request_seconds", 0.2, &["user", &user]);
    }
    for i in 0..COUNTERS {
        let shard = format!("s{i}");
        collector.add_to_counter("fleet_jobs_total", 3, &["shard", &shard]);
    }
    pusher
}

/// The single value of `promql` at `vm`, once it is `want` (at most [`LIMIT`]).
fn converged(vm: &VictoriaMetrics, promql: &str, want: f64) -> Option<f64> {
    common::wait_for(LIMIT, || match vm.query(promql).as_slice() {
        [(_, value)] if *value == want => Some(*value),
        _ => None,
    })
}

/// Every series of the large store is at `vm`, with its value (their last values: stale
/// markers ended them at `stop()`).
fn assert_all_stored(vm: &VictoriaMetrics) {
    for (promql, want) in [
        (
            "count(last_over_time(fleet_request_seconds_count[1h]))",
            HISTOGRAMS,
        ),
        (
            "sum(last_over_time(fleet_request_seconds_count[1h]))",
            HISTOGRAMS,
        ),
        (
            "count(last_over_time(fleet_request_seconds_bucket{le=\"+Inf\"}[1h]))",
            HISTOGRAMS,
        ),
        (
            "sum(last_over_time(fleet_request_seconds_bucket{le=\"0.25\"}[1h]))",
            HISTOGRAMS,
        ),
        (
            "sum(last_over_time(fleet_request_seconds_bucket{le=\"0.1\"}[1h]))",
            0,
        ),
        (
            "count(last_over_time(fleet_request_seconds_sum[1h]))",
            HISTOGRAMS,
        ),
        ("count(last_over_time(fleet_jobs_total[1h]))", COUNTERS),
        ("sum(last_over_time(fleet_jobs_total[1h]))", 3 * COUNTERS),
    ] {
        let got = converged(vm, promql, want as f64);
        assert_eq!(got, Some(want as f64), "{promql}: {:?}", vm.query(promql));
    }
    // Every bucket of the series of users u1, u10 to u19, u100 to u199, ... (a ninth of
    // them, every bucket series of all of them would make a query too long to wait for).
    let users = "u1.*";
    let subset = (0..HISTOGRAMS)
        .filter(|i| i.to_string().starts_with('1'))
        .count();
    let buckets = vm.query(&format!(
        "count by (le) (last_over_time(fleet_request_seconds_bucket{{user=~\"{users}\"}}[1h]))"
    ));
    assert_eq!(
        buckets.len(),
        porter_metrics::DEFAULT_BUCKETS.len() + 1,
        "{buckets:?}"
    );
    assert!(
        buckets.iter().all(|(_, n)| *n == subset as f64),
        "{subset} of each: {buckets:?}"
    );
}

/// VictoriaMetrics with query limits above the large store's series.
fn victoria_metrics(extra: &[&str]) -> VictoriaMetrics {
    let mut args = vec!["-search.maxUniqueTimeseries=5000000"];
    args.extend_from_slice(extra);
    VictoriaMetrics::start(&args)
}

/// One after the other: each VictoriaMetrics indexes 1.3 million new series, which takes
/// the machine.
#[test]
#[ignore = "needs victoria-metrics (run .ci/test)"]
fn a_large_store_arrives_whole_at_victoria_metrics_by_remote_write_and_otlp() {
    let vm = victoria_metrics(&[]);
    let target = PushTarget::remote_write(&vm.url("/api/v1/write")).expect("valid target");
    let pusher = large_store(target, "fleet-rw");
    pusher.stop().expect("the final push arrives whole");
    assert_all_stored(&vm);
    // VictoriaMetrics takes 1.0: the first 2.0 request taught the target so.
    let fallbacks =
        "last_over_time(porter_metrics_push_fallbacks_total{reason=\"remote_write_v1\"}[1h])";
    assert_eq!(converged(&vm, fallbacks, 1.0), Some(1.0));
    drop(vm);

    let vm = victoria_metrics(&["-opentelemetry.usePrometheusNaming"]);
    let target = PushTarget::otlp(&vm.url("/opentelemetry/v1/metrics")).expect("valid target");
    let pusher = large_store(target, "fleet-otlp");
    pusher.stop().expect("the final push arrives whole");
    assert_all_stored(&vm);
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn prometheus_without_native_histograms_gets_every_counter_and_the_classic_buckets() {
    // Prometheus 3.5 with its default flags, but for the receiver.
    let prometheus = Prometheus::start_v3(&[], &[], "", &["--web.enable-remote-write-receiver"]);
    let url = format!("http://{}/api/v1/write", prometheus.addr);
    let target = PushTarget::remote_write(&url)
        .and_then(|t| t.interval(Duration::from_millis(200)))
        .expect("valid target");
    let server = Builder::new()
        .standalone()
        .service_name("fleet-native")
        .native_histograms_for_metric(
            Matcher::Full("fleet_native_seconds".into()),
            NativeHistograms::default(),
        )
        .expect("valid settings")
        .push(target)
        .build("127.0.0.1:0");
    server.start().expect("starts");
    let collector = server.collector();
    for i in 0..100 {
        let shard = format!("s{i}");
        collector.increment_counter("fleet_native_jobs_total", &["shard", &shard]);
        collector.record_histogram("fleet_native_seconds", 0.2, &["shard", &shard]);
    }
    let counters = prometheus.wait_until("count(fleet_native_jobs_total)", LIMIT, |v| v == 100.0);
    assert_eq!(counters, Some(100.0), "every counter arrived");
    let buckets = prometheus.wait_until(
        "sum(fleet_native_seconds_bucket{le=\"+Inf\"})",
        LIMIT,
        |v| v == 100.0,
    );
    assert_eq!(buckets, Some(100.0), "the classic buckets arrived");
    let scrape = porter_metrics::testing::Exposition::parse(&common::scrape(
        server.local_addr().expect("serving"),
    ))
    .expect("a valid scrape");
    let fallbacks = scrape.value(
        "porter_metrics_push_fallbacks_total",
        &[
            "endpoint",
            &prometheus.addr.to_string(),
            "protocol",
            "remote_write",
            "reason",
            "classic_histograms",
        ],
    );
    assert_eq!(fallbacks, Some(1.0), "learnt once");
    server.stop().expect("the final push succeeds");
    // Stale markers end every series pushed: an instant query finds none.
    let pushed = "{job=\"fleet-native\"}";
    let ended = common::wait_for(LIMIT, || prometheus.query(pushed).is_empty().then_some(()));
    assert!(
        ended.is_some(),
        "still current: {:?}",
        prometheus.query(pushed)
    );
    let last = prometheus.query("count(last_over_time(fleet_native_jobs_total[1h]))");
    assert_eq!(last.first().map(|(_, v)| *v), Some(100.0), "{last:?}");
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn a_series_idle_expiry_hides_ends_with_a_stale_marker_while_pushing_goes_on() {
    let (prometheus, url) = Prometheus::remote_write_receiver();
    let target = PushTarget::remote_write(&url)
        .and_then(|t| t.interval(Duration::from_millis(200)))
        .expect("valid target");
    let server = Builder::new()
        .standalone()
        .service_name("fleet-expiry")
        .idle_timeout(Duration::from_secs(2))
        .push(target)
        .build("127.0.0.1:0");
    server.start().expect("starts");
    let collector = server.collector();
    collector.record_gauge("fleet_idle_depth", 7.0, &["queue", "gone"]);
    let seen = prometheus.wait_until("fleet_idle_depth", LIMIT, |v| v == 7.0);
    assert_eq!(seen, Some(7.0), "pushed while recorded");
    // Nothing records it any more: expiry hides it, a push marks it stale, and an instant
    // query finds it no more (without a marker it would stay for Prometheus' 5 minutes).
    let ended = common::wait_for(LIMIT, || {
        prometheus
            .query("fleet_idle_depth")
            .is_empty()
            .then_some(())
    });
    assert!(
        ended.is_some(),
        "still current: {:?}",
        prometheus.query("fleet_idle_depth")
    );
    let last = prometheus.query("last_over_time(fleet_idle_depth[1h])");
    assert_eq!(
        last.first().map(|(_, v)| *v),
        Some(7.0),
        "its last value kept"
    );
    // The pushes went on: other series are current.
    let pushes = prometheus.query("porter_metrics_pushes_total{job=\"fleet-expiry\"}");
    assert!(!pushes.is_empty(), "pushing goes on");
    server.stop().expect("the final push succeeds");
}

#[test]
fn an_interval_not_shorter_than_the_idle_timeout_is_refused() {
    let target = PushTarget::remote_write("http://127.0.0.1:9/api/v1/write")
        .and_then(|t| t.interval(Duration::from_secs(10)))
        .expect("valid target");
    let built = Builder::new()
        .standalone()
        .idle_timeout(Duration::from_secs(10))
        .push(target.clone())
        .build_pusher();
    assert!(
        matches!(
            built,
            Err(porter_metrics::Error::InvalidPushSetting {
                setting: "interval",
                ..
            })
        ),
        "{built:?}"
    );
    let server = Builder::new()
        .standalone()
        .idle_timeout(Duration::from_secs(5))
        .push(target)
        .build("127.0.0.1:0");
    assert!(matches!(
        server.start(),
        Err(porter_metrics::Error::InvalidPushSetting { .. })
    ));
    // A Pushgateway keeps a group: it marks nothing stale, any interval goes.
    let gateway = PushTarget::pushgateway("http://127.0.0.1:9/metrics/job/x")
        .and_then(|t| t.interval(Duration::from_secs(60)))
        .expect("valid target");
    let pusher = Builder::new()
        .standalone()
        .idle_timeout(Duration::from_secs(5))
        .push(gateway)
        .build_pusher();
    assert!(pusher.is_ok());
}
