//! Scrape time per exposition format: a standalone `MetricsServer` on loopback, scraped over
//! HTTP with each format's `Accept` header (no gzip), for 100 000 counter series and for
//! 100 000 histogram series (12 buckets each: the defaults).
//!
//! Run with `cargo bench --bench encode`: prints, per series kind and format, the median of
//! 11 scrapes in milliseconds (render, encode and transfer, as a scraper sees them) and the
//! body's size. Without `--bench` (as `cargo test --benches` runs it) it checks the same
//! path once on 1 000 series, quickly.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use porter_metrics::{Collector, Limits, MetricsServer};

const FORMATS: [(&str, &str); 3] = [
    ("text", "text/plain;version=0.0.4"),
    ("openmetrics", "application/openmetrics-text;version=1.0.0"),
    (
        "protobuf",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
    ),
];

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// `GET /metrics` with `accept`; the response's body.
fn scrape(addr: SocketAddr, accept: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    assert!(raw.starts_with(b"HTTP/1.1 200"), "not a 200");
    raw.split_off(at + 4)
}

fn server(n: usize, histograms: bool) -> MetricsServer {
    let server = MetricsServer::builder()
        .standalone()
        .limits(Limits::unlimited())
        .upkeep_interval(Duration::from_secs(3600))
        .build("127.0.0.1:0");
    server.start().expect("start");
    let collector = server.collector();
    for i in 0..n {
        let path = format!("/api/v1/resource/{i}");
        let labels = ["method", METHODS[i % METHODS.len()], "path", &path];
        if histograms {
            let name = format!("http_request_duration_{}_seconds", i % 10);
            collector.record_histogram(&name, (i % 1000) as f64 / 100.0, &labels);
        } else {
            let name = format!("http_requests_{}_total", i % 10);
            collector.increment_counter(&name, &labels);
        }
    }
    server
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (n, runs) = if bench { (100_000, 11) } else { (1_000, 1) };
    println!("series  kind       format       median ms   body bytes");
    for histograms in [false, true] {
        let server = server(n, histograms);
        let addr = server.local_addr().expect("running");
        let kind = if histograms { "histogram" } else { "counter" };
        for (format, accept) in FORMATS {
            let size = scrape(addr, accept).len(); // warm-up
            let mut times: Vec<f64> = (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    let body = scrape(addr, accept);
                    let elapsed = start.elapsed().as_secs_f64() * 1e3;
                    std::hint::black_box(body);
                    elapsed
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!("{n:<7} {kind:<10} {format:<12} {median:>9.1}   {size:>10}");
        }
        server.stop().expect("stop");
    }
}
