//! Push mode against a real Pushgateway on loopback: values pushed periodically are readable
//! from the Pushgateway's `/metrics`, and `stop()` pushes the final values.

mod common;

use std::time::Duration;

use common::prometheus::Pushgateway;
use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, Collector, Error};

/// The value of `name{job="porter_batch",...labels}` as the Pushgateway serves it.
fn pushed(gateway: &Pushgateway, name: &str, labels: &[&str]) -> Option<f64> {
    let body = common::get(gateway.addr, "/metrics").ok()?.body;
    let scrape = Exposition::parse(&body).expect("the Pushgateway's exposition parses");
    let mut all = vec!["instance", "", "job", "porter_batch"];
    all.extend_from_slice(labels);
    scrape.value(name, &all)
}

#[test]
#[ignore = "needs prometheus-pushgateway (run .ci/test)"]
fn pushed_values_are_readable_from_the_pushgateway_and_stop_pushes_the_last() {
    let gateway = Pushgateway::start();
    let endpoint = format!("http://{}/metrics/job/porter_batch", gateway.addr);
    let pusher = Builder::new()
        .standalone()
        .build_push(&endpoint, Duration::from_millis(200))
        .expect("valid endpoint");
    let collector = pusher.collector();
    for _ in 0..5 {
        collector.increment_counter("batch_rows_total", &["table", "orders"]);
    }
    collector.record_histogram("batch_step_seconds", 0.3, &[]);
    pusher.start().expect("pushing starts");
    assert_eq!(pusher.endpoint(), endpoint);

    let seen = common::wait_for(Duration::from_secs(30), || {
        pushed(&gateway, "batch_rows_total", &["table", "orders"]).filter(|v| *v == 5.0)
    });
    assert_eq!(seen, Some(5.0), "the periodic push reached the Pushgateway");
    assert_eq!(pushed(&gateway, "batch_step_seconds_count", &[]), Some(1.0));

    // The last values of a batch job go out with stop(), whatever the interval.
    for _ in 0..3 {
        collector.increment_counter("batch_rows_total", &["table", "orders"]);
    }
    pusher.stop().expect("the final push succeeds");
    assert_eq!(
        pushed(&gateway, "batch_rows_total", &["table", "orders"]),
        Some(8.0)
    );
}

#[test]
fn a_failed_final_push_is_reported_by_stop() {
    // Port 1 (tcpmux): nothing listens there, and no test binds it.
    let port = 1;
    let pusher = Builder::new()
        .standalone()
        .build_push(
            &format!("http://127.0.0.1:{port}/metrics/job/nobody"),
            Duration::from_secs(3600),
        )
        .unwrap();
    pusher.start().unwrap();
    pusher.collector().increment_counter("lost_total", &[]);
    let err = pusher.stop().expect_err("nothing listens there");
    assert!(
        matches!(&err, Error::Push { endpoint, .. } if endpoint.contains(&port.to_string())),
        "{err:?}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the cause is kept"
    );
    assert!(pusher.stop().is_ok(), "stop stays idempotent");
}

#[test]
fn push_endpoints_and_intervals_are_checked() {
    for bad in [
        "",
        "not a url",
        "ftp://127.0.0.1/metrics/job/x",
        "127.0.0.1:9091",
    ] {
        assert!(
            matches!(
                Builder::new().build_push(bad, Duration::from_secs(1)),
                Err(Error::InvalidEndpoint { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        Builder::new().build_push("http://127.0.0.1:9091/metrics/job/x", Duration::ZERO),
        Err(Error::InvalidInterval)
    ));
}
