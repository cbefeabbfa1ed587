//! `/metrics` under load and faults: a bounded load from several keep-alive connections
//! while two threads record (no request may fail; latency percentiles are printed), and
//! 200 idle connections that must not keep a fresh scrape from being served.
//!
//! `cargo test --release --test load -- --nocapture` prints the percentiles.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, MetricsServer};

const CONNECTIONS: usize = 4;
const REQUESTS_PER_CONNECTION: usize = 250;
const SERIES: u32 = 2_000;

/// One keep-alive connection that sends `GET /metrics` and reads each response whole.
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// Returns the status and body of one scrape.
    fn scrape(&mut self) -> std::io::Result<(u16, String)> {
        self.reader
            .get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: porter\r\n\r\n")?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line)?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0;
        loop {
            let mut header = String::new();
            self.reader.read_line(&mut header)?;
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn a_bounded_load_on_metrics_while_recording_never_fails() {
    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().unwrap();
    let addr = server.local_addr().unwrap();
    let collector = server.collector();
    for i in 0..SERIES {
        collector.increment_counter("load_series_total", &["id", &i.to_string()]);
    }
    // The histogram exists before the first scrape, so every body must carry it.
    collector.record_histogram("load_seconds", 0.01, &[]);
    let recording = AtomicBool::new(true);
    let mut latencies: Vec<Duration> = Vec::new();
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let (collector, recording) = (collector.clone(), &recording);
                s.spawn(move || {
                    let ids: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
                    let mut calls = 0u64;
                    // Bounded by the readers' end, or 10 million calls.
                    while recording.load(Ordering::Relaxed) && calls < 10_000_000 {
                        let id = &ids[(calls as usize * 7 + t) % ids.len()];
                        collector.increment_counter("load_series_total", &["id", id]);
                        collector.record_histogram("load_seconds", 0.01, &[]);
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        let readers: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                s.spawn(move || {
                    let mut connection = KeepAlive::connect(addr).expect("connect");
                    let mut times = Vec::with_capacity(REQUESTS_PER_CONNECTION);
                    for request in 0..REQUESTS_PER_CONNECTION {
                        let started = Instant::now();
                        let (status, body) = connection.scrape().expect("a scrape");
                        times.push(started.elapsed());
                        assert_eq!(status, 200);
                        assert!(
                            body.contains("load_seconds_count"),
                            "a whole body at request {request}"
                        );
                        // Parsing is the slow part of this loop in debug builds: sample it.
                        if request % 25 == 0 {
                            let scrape = Exposition::parse(&body).expect("a valid scrape");
                            assert_eq!(scrape.count("load_series_total"), SERIES as usize);
                        }
                    }
                    times
                })
            })
            .collect();
        // Join every reader before judging, so a failed one cannot leave the writers
        // running to their bound.
        let results: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
        recording.store(false, Ordering::Relaxed);
        for result in results {
            latencies.extend(result.expect("no failed request"));
        }
        let calls: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        assert!(calls > 0);
    });
    latencies.sort();
    assert_eq!(latencies.len(), CONNECTIONS * REQUESTS_PER_CONNECTION);
    println!(
        "scrape latency over {} requests ({CONNECTIONS} keep-alive connections, {SERIES} series, 2 threads recording): p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    server.stop().unwrap();
}

#[test]
fn idle_connections_do_not_keep_a_fresh_scrape_from_being_served() {
    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().unwrap();
    let addr = server.local_addr().unwrap();
    server.collector().increment_counter("idle_test_total", &[]);
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect"))
        .collect();
    // Some of them half-way through a request, too.
    for stream in idle.iter().step_by(10) {
        let mut stream = stream;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    }
    let body = common::scrape(addr);
    let scrape = Exposition::parse(&body).unwrap();
    assert_eq!(scrape.value("idle_test_total", &[]), Some(1.0));

    // Stopping with all of them open stops the server.
    server.stop().unwrap();
    assert_eq!(server.local_addr(), None);
    drop(idle);
}
