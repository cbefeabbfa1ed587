//! What securing the endpoint costs a scrape, and what a flood of wrong passwords costs a
//! verified scraper: a standalone server with 1 000 counter series on 127.0.0.1, scraped
//! on a new connection each time (the worst case: Prometheus keeps its connection).
//!
//! Per case, the median of 31 scrapes (on a loaded 2-core machine the absolute times swing;
//! the ratios less):
//! * **plain**: HTTP, no web config;
//! * **tls + auth**: TLS 1.3 with a verified client certificate and a remembered basic-auth
//!   password (bcrypt cost 10);
//! * **tls + auth, flood**: the same while 8 threads send wrong passwords non-stop;
//! * **first password check**: a new password's first scrape (bcrypt at cost 10).
//!
//! It prints each as a time (ms) and as a ratio to **plain**. Run with
//! `cargo bench --bench tls`; without `--bench` (as `cargo test --benches` runs it) it
//! checks each path once.

#[path = "../tests/tls_support/mod.rs"]
mod tls_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use porter_metrics::{Collector, MetricsServer};
use tls_support::{https_get, Pki, PASSWORD};

fn plain_get(addr: SocketAddr) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 31 } else { 1 };
    let pki = Pki::new("bench");
    let web = pki.web_config(bcrypt::DEFAULT_COST);
    let serve = |secured: bool| {
        let builder = MetricsServer::builder().standalone();
        let builder = match secured {
            true => builder.web_config_file(&web).expect("web config"),
            false => builder,
        };
        let server = builder.build("127.0.0.1:0");
        server.start().expect("starts");
        for i in 0..1_000 {
            let user = format!("u{i}");
            server
                .collector()
                .increment_counter("bench_requests_total", &["user", &user]);
        }
        let addr = server.local_addr().expect("running");
        (server, addr)
    };

    let (_plain, plain_addr) = serve(false);
    let plain = median_ms(runs, || assert_eq!(plain_get(plain_addr), 200));

    let (_secured, addr) = serve(true);
    let good = pki.client_config(Some(&pki.client));
    let scrape = |password: &str| {
        let answer = https_get(addr, &good, "/metrics", Some(("prometheus", password)));
        answer.map(|a| a.status).unwrap_or(0)
    };
    let secured = median_ms(runs, || assert_eq!(scrape(PASSWORD), 200));

    let flooding = Arc::new(AtomicBool::new(true));
    let flood: Vec<_> = (0..8)
        .map(|t| {
            let (flooding, config) = (flooding.clone(), good.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while flooding.load(Ordering::Relaxed) {
                    let password = format!("wrong-{t}-{i}");
                    let _ = https_get(addr, &config, "/metrics", Some(("prometheus", &password)));
                    i += 1;
                }
                i
            })
        })
        .collect();
    let under_flood = median_ms(runs, || assert_eq!(scrape(PASSWORD), 200));
    flooding.store(false, Ordering::Relaxed);
    let wrong: u64 = flood.into_iter().map(|t| t.join().unwrap_or(0)).sum();

    // A new password each time: a user of its own, so that nothing is remembered.
    let first_check = {
        let hash = bcrypt::hash("first", bcrypt::DEFAULT_COST).expect("bcrypt");
        let mut times = Vec::new();
        for n in 0..runs.min(5) {
            let users = format!("basic_auth_users:\n  user{n}: {hash}\n");
            let server = MetricsServer::builder()
                .standalone()
                .web_config(porter_metrics::WebConfig::from_yaml(&users, ".").expect("web"))
                .expect("web config")
                .build("127.0.0.1:0");
            server.start().expect("starts");
            let addr = server.local_addr().expect("running");
            let start = Instant::now();
            let status = basic_get(addr, &format!("user{n}"), "first");
            times.push(start.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 200);
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };

    println!();
    println!("=== a scrape on a new connection, 1 000 series (median) ===");
    for (case, ms) in [
        ("plain", plain),
        ("tls + auth", secured),
        ("tls + auth, flood", under_flood),
        ("first password check", first_check),
    ] {
        println!("{case:>22}: {ms:8.2} ms  ({:5.1}x plain)", ms / plain);
    }
    println!("{:>22}: {wrong} wrong passwords sent meanwhile", "flood");
}

/// `GET /metrics` over plain HTTP with basic auth; the status.
fn basic_get(addr: SocketAddr, user: &str, password: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let credentials = tls_support::base64(&format!("{user}:{password}"));
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {credentials}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
