//! A scrape over HTTP per exposition format, beside the peers' in-process encode, in one
//! run: issue 31's "scrape at memory speed" targets.
//!
//! Run with `cargo bench --bench encode`. One family of N = 100 000 series
//! `NAME{user="u<i>",method="GET"}` (as `benches/scale.rs` records them): counters
//! `scale_requests_total`, then histograms `scale_request_seconds` (Prometheus' 11 default
//! buckets). Ours: a standalone `MetricsServer` on 127.0.0.1, `GET /metrics` over a fresh
//! connection (HTTP/1.1, `Connection: close`), connect to last byte, read by a plain
//! blocking `TcpStream` (chunked bodies are read as they come), for each format's
//! `Accept`, and text with `Accept-Encoding: gzip`. Peers: prometheus-client 0.26's text
//! `encode` into a `String`, and `measured` 0.0.25's `BufferedTextEncoder`, of the same
//! series, in process (no HTTP at all). Medians of `RUNS`.
//!
//! Prints a table per kind: milliseconds, body bytes, MB/s of body, and ours (HTTP) /
//! prometheus-client (target: at most 0.3 for the text scrape, counters and histograms).
//! Without `--bench` (as `cargo test --benches` runs it) it checks the same path once on
//! 1 000 series.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use measured::text::BufferedTextEncoder;
use measured::MetricGroup;
use porter_metrics::{Collector, Limits, MetricsServer, DEFAULT_BUCKETS};
use prometheus_client::metrics::counter::Counter as ClientCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram as ClientHistogram;
use prometheus_client::registry::Registry;

#[path = "support/measured.rs"]
mod peer_measured;

use peer_measured::{MeasuredCounters, MeasuredHistograms, Scale};

const FORMATS: [(&str, &str, bool); 4] = [
    ("text", "text/plain;version=0.0.4", false),
    ("text+gzip", "text/plain;version=0.0.4", true),
    ("openmetrics", "application/openmetrics-text;version=1.0.0", false),
    (
        "protobuf",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
        false,
    ),
];

const COUNTER: &str = "scale_requests_total";
const HISTOGRAM: &str = "scale_request_seconds";

/// `GET /metrics` with `accept` (and gzip if `gzip`); the body's bytes as sent.
fn scrape(addr: SocketAddr, accept: &str, gzip: bool, capacity: usize) -> usize {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\n{encoding}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::with_capacity(capacity + 4096);
    stream.read_to_end(&mut raw).expect("read");
    assert!(raw.starts_with(b"HTTP/1.1 200"), "not a 200");
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    raw.len() - at - 4
}

fn server(users: &[String], histograms: bool) -> MetricsServer {
    let server = MetricsServer::builder()
        .standalone()
        .limits(Limits::unlimited())
        .upkeep_interval(Duration::from_secs(3600))
        .build("127.0.0.1:0");
    server.start().expect("start");
    let collector = server.collector();
    for (i, user) in users.iter().enumerate() {
        let labels = ["user", user.as_str(), "method", "GET"];
        match histograms {
            true => collector.record_histogram(HISTOGRAM, (i % 1000) as f64 / 100.0, &labels),
            false => collector.increment_counter(COUNTER, &labels),
        }
    }
    server
}

/// The median of `runs` timings of `f`, in ms, and the size it returned.
fn median(runs: usize, mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut size = 0;
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            size = std::hint::black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], size)
}

fn owned(user: &str) -> Vec<(String, String)> {
    vec![
        ("user".to_owned(), user.to_owned()),
        ("method".to_owned(), "GET".to_owned()),
    ]
}

/// prometheus-client's and measured's encodes of the same series: (ms, bytes) each.
fn peers(users: &[String], histograms: bool, runs: usize) -> [(f64, usize); 2] {
    let mut registry = Registry::default();
    match histograms {
        false => {
            let family = Family::<Vec<(String, String)>, ClientCounter>::default();
            users.iter().for_each(|u| {
                family.get_or_create(&owned(u)).inc();
            });
            registry.register("scale_requests", "Requests", family);
        }
        true => {
            let family = Family::<Vec<(String, String)>, ClientHistogram, _>::new_with_constructor(
                (|| ClientHistogram::new(DEFAULT_BUCKETS)) as fn() -> ClientHistogram,
            );
            for (i, u) in users.iter().enumerate() {
                family
                    .get_or_create(&owned(u))
                    .observe((i % 1000) as f64 / 100.0);
            }
            registry.register(HISTOGRAM, "Request latency", family);
        }
    }
    let client = median(runs, || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text.len()
    });
    let mut encoder = BufferedTextEncoder::new();
    let measured = match histograms {
        false => {
            let group = MeasuredCounters::new();
            for u in users {
                group.scale_requests_total.inc(Scale {
                    user: u,
                    method: "GET",
                });
            }
            median(runs, || {
                group.collect_group_into(&mut encoder).expect("encode");
                encoder.finish().len()
            })
        }
        true => {
            let group = MeasuredHistograms::new();
            for (i, u) in users.iter().enumerate() {
                let labels = Scale {
                    user: u,
                    method: "GET",
                };
                group
                    .scale_request_seconds
                    .observe(labels, (i % 1000) as f64 / 100.0);
            }
            median(runs, || {
                group.collect_group_into(&mut encoder).expect("encode");
                encoder.finish().len()
            })
        }
    };
    [client, measured]
}

fn mb_per_s(ms: f64, bytes: usize) -> f64 {
    bytes as f64 / 1e6 / (ms / 1e3)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (n, runs) = if bench { (100_000, 11) } else { (1_000, 1) };
    let users: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    for histograms in [false, true] {
        let kind = if histograms { "histograms" } else { "counters" };
        let server = server(&users, histograms);
        let addr = server.local_addr().expect("running");
        let mut rows = Vec::new();
        for (format, accept, gzip) in FORMATS {
            let size = scrape(addr, accept, gzip, 0); // warm-up
            let (ms, bytes) = median(runs, || scrape(addr, accept, gzip, size));
            rows.push((format!("ours, {format} (HTTP)"), ms, bytes));
        }
        server.stop().expect("stop");
        drop(server);
        let [client, measured] = peers(&users, histograms, runs);
        rows.push(("prometheus-client encode".into(), client.0, client.1));
        rows.push(("measured encode".into(), measured.0, measured.1));
        println!("\n{n} {kind}, median of {runs}:");
        println!("| scrape | ms | body bytes | MB/s | / prometheus-client |");
        println!("|---|---|---|---|---|");
        for (what, ms, bytes) in &rows {
            println!(
                "| {what} | {ms:.1} | {bytes} | {:.0} | {:.2} |",
                mb_per_s(*ms, *bytes),
                ms / client.0
            );
        }
        let text = rows[0].1 / client.0;
        let verdict = if text <= 0.3 { "PASS" } else { "FAIL" };
        println!(
            "ours text scrape / prometheus-client encode = {text:.2} (target <= 0.3) {verdict}"
        );
    }
}
