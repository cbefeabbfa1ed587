//! Push mode against a real Pushgateway on loopback: values pushed periodically are readable
//! from the Pushgateway's `/metrics`, and `stop()` pushes the final values.

mod common;

use std::time::Duration;

use common::prometheus::Pushgateway;
use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, Collector, Error, PushTarget, Pusher};

/// A standalone pusher to the Pushgateway group `endpoint`, every `interval`.
fn gateway_pusher(endpoint: &str, interval: Duration) -> Result<Pusher, Error> {
    let target = PushTarget::pushgateway(endpoint)?.interval(interval)?;
    Builder::new().standalone().push(target).build_pusher()
}

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
    let pusher = gateway_pusher(&endpoint, Duration::from_millis(200)).expect("valid endpoint");
    let collector = pusher.collector();
    for _ in 0..5 {
        collector.increment_counter("batch_rows_total", &["table", "orders"]);
    }
    collector.record_histogram("batch_step_seconds", 0.3, &[]);
    pusher.start().expect("pushing starts");
    assert_eq!(pusher.endpoints(), [endpoint.as_str()]);

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
    let pusher = gateway_pusher(
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
                gateway_pusher(bad, Duration::from_secs(1)),
                Err(Error::InvalidEndpoint { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        gateway_pusher("http://127.0.0.1:9091/metrics/job/x", Duration::ZERO),
        Err(Error::InvalidInterval)
    ));
}

/// A receiver on loopback that answers every request with `status` (or, with `None`,
/// never answers), counting the requests (and noting when each came) and the connections.
struct Receiver {
    addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    arrivals: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl Receiver {
    fn start(status: Option<u16>) -> Self {
        use std::io::{BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (seen, opened, noted) = (requests.clone(), connections.clone(), arrivals.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                opened.fetch_add(1, Ordering::SeqCst);
                let (seen, noted) = (seen.clone(), noted.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut body = Vec::new();
                        if !common::request::read_request(&mut reader, &mut body) {
                            return;
                        }
                        if let Ok(mut noted) = noted.lock() {
                            noted.push(std::time::Instant::now());
                        }
                        seen.fetch_add(1, Ordering::SeqCst);
                        let Some(status) = status else {
                            // Never answer; hold the connection until the client gives up.
                            let _ = reader.read_to_end(&mut Vec::new());
                            return;
                        };
                        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            connections,
            arrivals,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(feature = "remote-write")]
#[test]
fn a_dead_receiver_costs_one_request_in_flight_never_a_queue() {
    use porter_metrics::PushTarget;
    let receiver = Receiver::start(None);
    let target = PushTarget::remote_write(&format!("http://{}/api/v1/write", receiver.addr))
        .and_then(|t| t.interval(Duration::from_millis(20)))
        .and_then(|t| t.timeout(Duration::from_secs(3)))
        .expect("valid target");
    let pusher = Builder::new()
        .standalone()
        .push(target)
        .build_pusher()
        .expect("a target");
    pusher.start().expect("starts");
    let collector = pusher.collector();
    let first = common::wait_for(Duration::from_secs(10), || {
        (receiver.requests() >= 1).then_some(())
    });
    assert!(first.is_some(), "the first push was sent");
    // Fifty intervals pass; writers are never blocked, and no second request starts.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        collector.increment_counter("written_total", &[]);
    }
    assert_eq!(receiver.requests(), 1, "one request in flight at a time");
    assert_eq!(
        receiver
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // The final push is bounded by the timeout too: stop() returns (with the failure)
    // well within this test's deadline.
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(matches!(pusher.stop(), Err(Error::Push { .. })));
    });
    let failed = stopped
        .recv_timeout(Duration::from_secs(20))
        .expect("stop() returns, bounded by the 3 s timeout");
    assert!(failed, "the final push found nobody answering");
}

#[cfg(feature = "remote-write")]
#[test]
fn a_failing_receiver_is_retried_with_backoff_within_the_interval() {
    use porter_metrics::PushTarget;
    let receiver = Receiver::start(Some(503));
    let target = PushTarget::remote_write(&format!("http://{}/api/v1/write", receiver.addr))
        .and_then(|t| t.interval(Duration::from_secs(1)))
        .expect("valid target");
    let server = Builder::new()
        .standalone()
        .push(target)
        .build("127.0.0.1:0");
    server.start().expect("starts");
    let addr = server.local_addr().expect("serving");
    // The first push comes after one interval, then retries back off (50 ms, 100 ms,
    // 200 ms, ... each with jitter) until the interval is over.
    let retried = common::wait_for(Duration::from_secs(10), || {
        (receiver.requests() >= 4).then_some(())
    });
    assert!(retried.is_some(), "503 is retried");
    let arrivals = receiver.arrivals.lock().expect("arrivals").clone();
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[2] > gaps[0],
        "the waits between attempts grow: {gaps:?}"
    );
    let scrape = Exposition::parse(&common::scrape(addr)).expect("valid");
    let failed = scrape
        .value(
            "porter_metrics_push_failures_total",
            &[
                "endpoint",
                &receiver.addr.to_string(),
                "protocol",
                "remote_write",
                "reason",
                "server_error",
            ],
        )
        .unwrap_or_default();
    assert!(failed >= 3.0, "each failed attempt is counted: {failed}");
    assert!(
        matches!(server.stop(), Err(Error::Push { .. })),
        "the final push failed, and stop() says so"
    );
}

#[test]
fn a_pusher_needs_a_target_and_a_target_valid_settings() {
    assert!(matches!(
        Builder::new().standalone().build_pusher(),
        Err(Error::NoPushTarget)
    ));
    let target = porter_metrics::PushTarget::pushgateway("http://127.0.0.1:9091/metrics/job/x")
        .expect("valid");
    assert!(matches!(
        target.clone().timeout(Duration::ZERO),
        Err(Error::InvalidInterval)
    ));
    assert!(matches!(
        target.header("bad header", "x"),
        Err(Error::InvalidHeader { .. })
    ));
}

/// Each request body a receiver got, and the status it answered.
type Log = std::sync::Arc<std::sync::Mutex<Vec<(Vec<u8>, u16)>>>;

/// A Remote-Write 2.0 receiver on loopback that refuses request number `fail` (the first
/// is number one) with a `503`, once, and takes every other (answering with the 2.0
/// `-Written` headers); each request body and the status it got, in arrival order.
#[cfg(feature = "remote-write")]
fn flaky_receiver(fail: usize) -> (std::net::SocketAddr, Log) {
    use std::io::{BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut body = Vec::new();
                    if !common::request::read_request(&mut reader, &mut body) {
                        return;
                    }
                    let status = {
                        let mut log = log.lock().expect("the log");
                        let status = if log.len() + 1 == fail { 503 } else { 204 };
                        log.push((body, status));
                        status
                    };
                    let written = "x-prometheus-remote-write-samples-written: 1000000\r\nx-prometheus-remote-write-histograms-written: 1000000\r\n";
                    let answer =
                        format!("HTTP/1.1 {status} X\r\n{written}content-length: 0\r\n\r\n");
                    if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[cfg(feature = "remote-write")]
#[test]
fn a_refused_request_is_sent_again_alone_and_none_taken_is_sent_twice() {
    use porter_metrics::PushTarget;
    let (addr, seen) = flaky_receiver(2);
    let target = PushTarget::remote_write(&format!("http://{addr}/api/v1/write"))
        .and_then(|t| t.interval(Duration::from_secs(3600)))
        .and_then(|t| t.max_request_size(10, 1 << 20))
        .and_then(|t| t.requests_in_flight(1))
        .expect("valid target");
    let pusher = Builder::new()
        .standalone()
        .push(target)
        .build_pusher()
        .expect("a pusher");
    pusher.start().expect("starts");
    for i in 0..50 {
        let shard = format!("s{i}");
        pusher
            .collector()
            .increment_counter("cut_jobs_total", &["shard", &shard]);
    }
    pusher.stop().expect("every request is taken in the end");
    let seen = seen.lock().expect("the log").clone();
    let refused: Vec<&Vec<u8>> = seen
        .iter()
        .filter(|(_, status)| *status == 503)
        .map(|(body, _)| body)
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(seen[1].1, 503, "the second request was refused");
    assert_eq!(
        &seen[2].0, refused[0],
        "it was sent again, alone, before the next request"
    );
    let mut taken: Vec<&Vec<u8>> = seen
        .iter()
        .filter(|(_, status)| *status == 204)
        .map(|(body, _)| body)
        .collect();
    let all = taken.len();
    assert!(
        all >= 12,
        "the final push and its stale markers, cut: {all}"
    );
    taken.sort();
    taken.dedup();
    assert_eq!(taken.len(), all, "no request taken twice");
}
