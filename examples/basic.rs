//! The design's "Basic Usage" and "Metrics Server" sections, line by line, in Rust.
//!
//! Run with `cargo run --example basic`; it prints the scrape and exits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use porter_metrics::{Collector, MetricsServer, PrometheusCollector};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ### Basic Usage

    // Create a Prometheus collector
    //   collector := metrics.NewPrometheusCollector()
    let collector = PrometheusCollector::new();

    // Record metrics
    //   collector.IncrementCounter("requests_total", "method", "GET")
    //   collector.RecordGauge("queue_size", 42.0, "queue", "default")
    //   collector.RecordHistogram("request_duration", 0.42, "endpoint", "/api/users")
    collector.increment_counter("requests_total", &["method", "GET"]);
    collector.record_gauge("queue_size", 42.0, &["queue", "default"]);
    collector.record_histogram("request_duration", 0.42, &["endpoint", "/api/users"]);

    // ### Label Support: "key1", "value1", "key2", "value2", ...
    collector.increment_counter(
        "requests_total",
        &[
            "method",
            "GET",
            "endpoint",
            "/api/v1/users",
            "status",
            "200",
        ],
    );

    // Time an operation
    //   timer := collector.StartTimer("operation_duration")
    //   // ... perform operation ...
    //   duration := timer.Stop()
    let timer = collector.start_timer("operation_duration");
    std::thread::sleep(Duration::from_millis(20)); // ... perform operation ...
    let duration = timer.stop(); // unlike Go's, it also records the duration
    println!("operation took {duration:.3} s");

    // ### Metrics Server

    // Create and start metrics server
    //   server := metrics.NewMetricsServer(":9090")
    //   go server.Start()
    // `start` returns once the socket listens (no goroutine needed). Port 0 picks a free port
    // so the example never collides with a real server; use ":9090" to listen like the Go code.
    // What the collector recorded above was buffered and is now exported.
    let server = MetricsServer::new("127.0.0.1:0");
    server.start()?;
    let addr = server
        .local_addr()
        .expect("a started server has an address");
    println!("serving http://{addr}/metrics\n");

    // What Prometheus would scrape.
    print!("{}", scrape(addr)?);

    // Stop server when done
    //   defer server.Stop()
    // Dropping the server stops it too; stopping explicitly reports errors.
    server.stop()?;
    Ok(())
}

/// `GET /metrics` over HTTP/1.0 (no chunked encoding), returning the body.
fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!("scrape failed: {head}")));
    }
    Ok(body.to_owned())
}
