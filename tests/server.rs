//! The lifecycle rules of `MetricsServer`, over real HTTP on 127.0.0.1.
//!
//! Every test starts a standalone server of its own on port 0 (no global recorder, so they
//! run in parallel in one process), records through `server.collector()`, reads the scrape
//! with `Exposition`, and stops or drops the server at the end. Every loop is bounded in
//! count and time; nothing sleeps to synchronise.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, Error, MetricsServer, DEFAULT_BUCKETS};

/// A standalone server that will listen on a free loopback port.
fn standalone() -> MetricsServer {
    MetricsServer::builder().standalone().build("127.0.0.1:0")
}

/// A started standalone server and the address it listens on.
fn running() -> (MetricsServer, SocketAddr) {
    let server = standalone();
    server.start().expect("the server starts on 127.0.0.1:0");
    let addr = server
        .local_addr()
        .expect("a running server has an address");
    (server, addr)
}

/// Scrapes `addr` and parses the exposition strictly.
fn exposition(addr: SocketAddr) -> Exposition {
    let body = common::scrape(addr);
    Exposition::parse(&body).unwrap_or_else(|e| panic!("invalid exposition ({e}):\n{body}"))
}

/// A standalone server on a quiet port (see `common::quiet_port`), so a test can check that
/// the port is free after `stop()` without another test taking it meanwhile.
fn on_quiet_port() -> (MetricsServer, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], common::quiet_port()));
    let server = MetricsServer::builder()
        .standalone()
        .build(&addr.to_string());
    server.start().expect("the server starts on a quiet port");
    (server, addr)
}

/// Asserts `addr` can be bound right now (and releases it).
fn assert_port_free(addr: SocketAddr) {
    let listener = TcpListener::bind(addr)
        .unwrap_or_else(|e| panic!("{addr} cannot be bound again after stop: {e}"));
    drop(listener);
}

/// Reads one HTTP/1.1 response (status line, headers, body by Content-Length or chunked)
/// from a keep-alive connection; returns the status, the lower-cased headers and the body.
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>, String) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    for _ in 0..100 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header with a colon");
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(length) = header("content-length") {
        let length: usize = length.parse().expect("numeric Content-Length");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        String::from_utf8(body).expect("UTF-8 body")
    } else {
        assert_eq!(
            header("transfer-encoding").as_deref(),
            Some("chunked"),
            "a keep-alive response needs a length or chunks: {headers:?}"
        );
        let mut body = String::new();
        for _ in 0..100_000 {
            let mut size = String::new();
            reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("chunk");
            if size == 0 {
                break;
            }
            body.push_str(std::str::from_utf8(&chunk[..size]).expect("UTF-8 chunk"));
        }
        body
    };
    (status, headers, body)
}

#[test]
fn start_returns_once_listening_and_keeps_values_recorded_before() {
    let server = standalone();
    let collector = server.collector();
    collector.increment_counter("early_total", &["phase", "boot"]);
    collector.record_gauge("early_gauge", 7.0, &[]);

    server.start().expect("start");
    collector.increment_counter("early_total", &["phase", "boot"]);
    let addr = server.local_addr().expect("running");

    // No sleep, no retry: the socket listens once start() has returned.
    let response = common::get(addr, "/metrics").expect("GET right after start()");
    assert_eq!(response.status, 200);
    let scrape = Exposition::parse(&response.body).expect("valid exposition");
    assert_eq!(
        scrape.value("early_total", &["phase", "boot"]),
        Some(2.0),
        "one increment before start() and one after"
    );
    assert_eq!(scrape.value("early_gauge", &[]), Some(7.0));

    server.stop().expect("stop");
}

#[test]
fn port_zero_picks_a_port_and_local_addr_follows_the_lifecycle() {
    let server = standalone();
    assert_eq!(server.local_addr(), None, "before start");

    server.start().expect("start");
    let addr = server.local_addr().expect("Some while running");
    assert_ne!(addr.port(), 0, "port 0 is replaced by the port chosen");
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST);
    server.collector().increment_counter("port_zero_total", &[]);
    assert_eq!(exposition(addr).value("port_zero_total", &[]), Some(1.0));

    server.stop().expect("stop");
    assert_eq!(server.local_addr(), None, "after stop");
}

#[test]
fn a_bad_address_is_an_invalid_address_error_naming_it() {
    for bad in ["nonsense", "127.0.0.1", "127.0.0.1:99999"] {
        let server = MetricsServer::builder().standalone().build(bad);
        let err = server.start().expect_err(bad);
        assert!(
            matches!(&err, Error::InvalidAddress { address, .. } if address == bad),
            "{bad:?}: expected InvalidAddress naming it, got {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(bad),
            "the message {message:?} does not name {bad:?}"
        );
        assert_eq!(server.local_addr(), None, "{bad:?}");
        server.stop().expect("stop after a failed start");
    }
}

#[test]
fn a_port_in_use_is_a_bind_error_and_the_server_can_start_afterwards() {
    let blocker = TcpListener::bind(("127.0.0.1", common::quiet_port())).expect("bind a blocker");
    let taken = blocker.local_addr().expect("blocker address");

    let server = MetricsServer::builder()
        .standalone()
        .build(&taken.to_string());
    let err = server.start().expect_err("a port in use cannot be bound");
    assert!(
        matches!(&err, Error::Bind { address, .. } if *address == taken.to_string()),
        "expected Bind on {taken} (in use), got {err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&taken.to_string()),
        "the message {message:?} does not name {taken}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the operating system's error is the source"
    );
    assert_eq!(server.local_addr(), None);

    // Another server starts on another address after such an error...
    let (other, other_addr) = running();
    other
        .collector()
        .increment_counter("after_bind_error_total", &[]);
    assert_eq!(
        exposition(other_addr).value("after_bind_error_total", &[]),
        Some(1.0)
    );
    other.stop().expect("stop");

    // ...and the server that failed is not left broken: once the port is free it starts.
    drop(blocker);
    server.collector().increment_counter("retried_total", &[]);
    server.start().expect("start once the port is free");
    let addr = server.local_addr().expect("running");
    assert_eq!(addr, taken);
    assert_eq!(exposition(addr).value("retried_total", &[]), Some(1.0));
    server.stop().expect("stop");
}

#[test]
fn a_second_start_is_already_running_and_the_first_listener_still_serves() {
    let (server, addr) = running();
    server
        .collector()
        .increment_counter("twice_total", &["k", "v"]);

    let err = server.start().expect_err("a second start");
    assert!(
        matches!(&err, Error::AlreadyRunning { address } if *address == addr.to_string()),
        "expected AlreadyRunning on {addr}, got {err:?}"
    );
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    assert_eq!(server.local_addr(), Some(addr), "still on the same address");
    assert_eq!(
        exposition(addr).value("twice_total", &["k", "v"]),
        Some(1.0)
    );
    server.stop().expect("stop");
}

#[test]
fn stop_is_idempotent_and_frees_the_address_at_once() {
    let server = standalone();
    server.stop().expect("stop before start is Ok");
    assert_eq!(server.local_addr(), None);

    let (server, addr) = on_quiet_port();
    server
        .collector()
        .increment_counter("stop_twice_total", &[]);
    assert_eq!(exposition(addr).value("stop_twice_total", &[]), Some(1.0));

    server.stop().expect("first stop");
    server.stop().expect("second stop");

    // The listening socket is closed before stop() returns: no retry, no wait.
    assert_port_free(addr);
}

#[test]
fn start_after_stop_serves_again_with_every_value_kept() {
    let (server, addr) = on_quiet_port();
    let collector = server.collector();
    collector.increment_counter("restarted_total", &["k", "v"]);
    collector.record_histogram("restarted_seconds", 2.0, &[]);
    server.stop().expect("stop");
    assert_eq!(server.local_addr(), None);

    collector.increment_counter("restarted_total", &["k", "v"]); // while stopped
    server.start().expect("start after stop, on the same port");
    let again = server.local_addr().expect("running again");
    assert_eq!(again, addr);
    collector.record_histogram("restarted_seconds", 3.0, &[]);
    let scrape = exposition(again);
    assert_eq!(scrape.value("restarted_total", &["k", "v"]), Some(2.0));
    let h = scrape.histogram("restarted_seconds", &[]).expect("kept");
    assert_eq!((h.count, h.sum), (2, 5.0));
    server.stop().expect("stop");
}

#[test]
fn stop_ends_keep_alive_connections() {
    let (server, addr) = running();
    server
        .collector()
        .increment_counter("kept_alive_total", &[]);

    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    let mut reader = BufReader::new(stream);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");

    // Two requests on one connection: it is kept alive.
    for round in 1..=2 {
        reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send request");
        let (status, headers, body) = read_response(&mut reader);
        assert_eq!(status, 200, "round {round}");
        assert!(
            !headers
                .iter()
                .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close")),
            "the server closes a keep-alive connection on its own: {headers:?}"
        );
        let scrape = Exposition::parse(&body).expect("valid exposition");
        assert_eq!(scrape.value("kept_alive_total", &[]), Some(1.0));
    }

    let began = Instant::now();
    server.stop().expect("stop");
    let stop_took = began.elapsed();

    let mut byte = [0u8; 1];
    match reader.get_mut().read(&mut byte) {
        Ok(0) => {}
        Ok(n) => panic!("{n} unexpected bytes on the connection after stop"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
            "the connection is still open 5 s after stop() (stop took {stop_took:?}): \
             stop must end connection tasks"
        ),
        Err(_) => {} // reset: closed as well
    }
}

#[test]
fn stop_with_scrapes_in_flight_frees_the_port_and_closes_every_connection() {
    let (server, addr) = on_quiet_port();
    let collector = server.collector();
    // Enough series that a render takes a moment.
    for i in 0..2_000 {
        collector.increment_counter("in_flight_total", &["series", &i.to_string()]);
    }

    // A client that stalls half way through its request headers.
    let mut stalled = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: porter\r\n")
        .expect("half a request");

    let (first_tx, first_rx) = mpsc::channel();
    let scraper = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0u32;
        for _ in 0..10_000 {
            if Instant::now() >= deadline {
                break;
            }
            match common::get(addr, "/metrics") {
                Ok(response) if response.status == 200 => {
                    served += 1;
                    if served == 1 {
                        let _ = first_tx.send(());
                    }
                }
                // Refused, reset or cut short: the server stopped.
                _ => break,
            }
        }
        served
    });
    first_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the scraper got a first response");

    server.stop().expect("stop");
    assert_port_free(addr);

    let served = scraper.join().expect("the scraper does not panic");
    assert!(served >= 1);
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut rest = Vec::new();
    let read = stalled.read_to_end(&mut rest);
    assert!(
        !matches!(&read, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the stalled connection is still open after stop: {read:?}"
    );
}

/// Start, scrape (on a blocking thread) and stop from async code.
async fn lifecycle_in_async_code(name: &'static str) {
    let (server, addr) = on_quiet_port();
    server
        .collector()
        .increment_counter(name, &["runtime", "tokio"]);

    let body = tokio::task::spawn_blocking(move || common::scrape(addr))
        .await
        .expect("the scrape task does not panic");
    let scrape = Exposition::parse(&body).expect("valid exposition");
    assert_eq!(scrape.value(name, &["runtime", "tokio"]), Some(1.0));

    server.stop().expect("stop inside a tokio runtime");
    assert_eq!(server.local_addr(), None);
    assert_port_free(addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_a_multi_thread_tokio_runtime() {
    lifecycle_in_async_code("multi_thread_total").await;
}

#[tokio::test(flavor = "current_thread")]
async fn works_inside_a_current_thread_tokio_runtime() {
    lifecycle_in_async_code("current_thread_total").await;
}

#[test]
fn dropping_a_running_server_stops_it() {
    let (server, addr) = on_quiet_port();
    server.collector().increment_counter("dropped_total", &[]);
    assert_eq!(exposition(addr).value("dropped_total", &[]), Some(1.0));

    drop(server);
    assert_port_free(addr);
}

#[test]
fn metrics_body_is_a_valid_exposition_with_default_buckets_and_help() {
    let (server, addr) = running();
    let collector = server.collector();
    collector.increment_counter("requests_total", &["method", "GET", "code", "200"]);
    collector.increment_counter("requests_total", &["code", "200", "method", "GET"]);
    collector.record_gauge("queue_size", 42.0, &["queue", "default"]);
    for value in [0.003, 0.2, 7.0, 20.0] {
        collector.record_histogram("request_duration_seconds", value, &["endpoint", "/a"]);
    }
    let seconds = collector.start_timer("operation_seconds").stop();

    let body = common::scrape(addr);
    let scrape = Exposition::parse(&body).unwrap_or_else(|e| panic!("{e}:\n{body}"));

    assert_eq!(
        scrape.value("requests_total", &["method", "GET", "code", "200"]),
        Some(2.0)
    );
    assert_eq!(scrape.kind("requests_total"), Some("counter"));
    assert_eq!(
        scrape.value("queue_size", &["queue", "default"]),
        Some(42.0)
    );
    assert_eq!(scrape.kind("queue_size"), Some("gauge"));

    assert_eq!(scrape.kind("request_duration_seconds"), Some("histogram"));
    for series in ["_bucket{", "_sum{", "_count{"] {
        assert!(
            body.contains(&format!("request_duration_seconds{series}")),
            "no request_duration_seconds{series} in:\n{body}"
        );
    }
    let histogram = scrape
        .histogram("request_duration_seconds", &["endpoint", "/a"])
        .expect("the histogram");
    let bounds: Vec<f64> = histogram.buckets.iter().map(|(le, _)| *le).collect();
    let mut expected = DEFAULT_BUCKETS.to_vec();
    expected.push(f64::INFINITY);
    assert_eq!(bounds, expected, "Prometheus' default buckets and +Inf");
    assert_eq!(
        DEFAULT_BUCKETS,
        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    );
    assert_eq!(histogram.count, 4);
    assert!(
        (histogram.sum - 27.203).abs() < 1e-9,
        "sum {}",
        histogram.sum
    );
    let cumulative: Vec<u64> = histogram.buckets.iter().map(|(_, c)| *c).collect();
    assert_eq!(cumulative, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 4]);

    let timer = scrape
        .histogram("operation_seconds", &[])
        .expect("the timer's histogram");
    assert_eq!(timer.count, 1);
    assert_eq!(timer.sum, seconds, "the timer records what stop() returned");

    assert_eq!(
        scrape.help("requests_total"),
        Some("Counter for requests_total")
    );
    assert_eq!(scrape.help("queue_size"), Some("Gauge for queue_size"));
    assert_eq!(
        scrape.help("request_duration_seconds"),
        Some("Histogram for request_duration_seconds")
    );
    assert_eq!(
        scrape.help("operation_seconds"),
        Some("Histogram for operation_seconds")
    );

    server.stop().expect("stop");
}

#[test]
fn the_allowlist_forbids_other_clients_and_serves_allowed_ones() -> Result<(), Error> {
    let denied = MetricsServer::builder()
        .standalone()
        .allow("10.1.2.3")?
        .build("127.0.0.1:0");
    denied.start()?;
    let denied_addr = denied.local_addr().expect("running");
    denied.collector().increment_counter("secret_total", &[]);
    let response = common::get(denied_addr, "/metrics").expect("GET");
    assert_eq!(response.status, 403, "a loopback client is not 10.1.2.3");
    assert!(
        !response.body.contains("secret_total"),
        "a forbidden client got the exposition"
    );

    let allowed = MetricsServer::builder()
        .standalone()
        .allow("127.0.0.1")?
        .build("127.0.0.1:0");
    allowed.start()?;
    let allowed_addr = allowed.local_addr().expect("running");
    allowed.collector().increment_counter("open_total", &[]);
    let response = common::get(allowed_addr, "/metrics").expect("GET");
    assert_eq!(response.status, 200);
    let scrape = Exposition::parse(&response.body).expect("valid exposition");
    assert_eq!(scrape.value("open_total", &[]), Some(1.0));

    denied.stop()?;
    allowed.stop()?;
    Ok(())
}
