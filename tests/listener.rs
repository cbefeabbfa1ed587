//! What the listener answers, over real HTTP on 127.0.0.1: every route, method and encoding
//! rule, and hostile clients (malformed requests, huge headers, slow and idle connections)
//! that must get an error or a timeout without stopping the listener or delaying a scrape.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, Error, MetricsServer};

/// A raw HTTP/1.1 response.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as is (it should ask to close the connection) and reads the whole answer.
fn send(addr: SocketAddr, request: &[u8]) -> std::io::Result<Raw> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> std::io::Result<Raw> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunks"))?;
    }
    Ok(Raw {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let line = s.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&s[..line]).ok()?.trim(), 16).ok()?;
        s = &s[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(s.get(..size)?);
        s = s.get(size + 2..)?;
    }
    None
}

fn request(method: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: porter\r\nConnection: close\r\n{extra}\r\n")
        .into_bytes()
}

fn running() -> (MetricsServer, SocketAddr) {
    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    server
        .collector()
        .increment_counter("listener_total", &["k", "v"]);
    (server, addr)
}

/// A healthy scrape works and has the recorded value.
fn assert_scrape_works(addr: SocketAddr) {
    let scrape = Exposition::parse(&common::scrape(addr)).expect("valid exposition");
    assert_eq!(scrape.value("listener_total", &["k", "v"]), Some(1.0));
}

#[test]
fn get_metrics_is_the_exposition_with_its_content_type() {
    let (_server, addr) = running();
    let response = send(addr, &request("GET", "/metrics", "")).expect("GET");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(response.header("content-encoding"), None);
    let text = String::from_utf8(response.body).expect("UTF-8");
    let scrape = Exposition::parse(&text).expect("valid exposition");
    assert_eq!(scrape.value("listener_total", &["k", "v"]), Some(1.0));
}

#[test]
fn gzip_is_sent_when_accepted_and_decompresses_to_the_exposition() {
    let (_server, addr) = running();
    let response = send(
        addr,
        &request("GET", "/metrics", "Accept-Encoding: deflate, gzip\r\n"),
    )
    .expect("GET");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(response.header("vary"), Some("Accept, Accept-Encoding"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(response.body.as_slice())
        .read_to_string(&mut text)
        .expect("a gzip body");
    let scrape = Exposition::parse(&text).expect("valid exposition");
    assert_eq!(scrape.value("listener_total", &["k", "v"]), Some(1.0));

    let refused = send(
        addr,
        &request("GET", "/metrics", "Accept-Encoding: gzip;q=0\r\n"),
    )
    .expect("GET");
    assert_eq!(refused.header("content-encoding"), None);
    assert!(String::from_utf8(refused.body).is_ok_and(|t| t.contains("listener_total")));
}

#[test]
fn head_gets_the_headers_and_no_body() {
    let (_server, addr) = running();
    let response = send(
        addr,
        &request("HEAD", "/metrics", "Accept-Encoding: gzip\r\n"),
    )
    .expect("HEAD");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert!(
        response.body.is_empty(),
        "{} body bytes",
        response.body.len()
    );
}

#[test]
fn health_is_ok_the_landing_page_links_metrics_other_paths_are_404_other_methods_405() {
    let (_server, addr) = running();
    let health = send(addr, &request("GET", "/health", "")).expect("GET /health");
    assert_eq!((health.status, health.body.as_slice()), (200, &b"OK"[..]));
    assert_eq!(
        send(addr, &request("HEAD", "/health", ""))
            .expect("HEAD")
            .status,
        200
    );
    let landing = send(addr, &request("GET", "/", "")).expect("GET /");
    assert_eq!(landing.status, 200);
    assert_eq!(
        landing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = String::from_utf8_lossy(&landing.body);
    assert!(page.contains(r#"<a href="metrics">"#), "{page}");
    for path in [
        "/index.html",
        "/metricsx",
        "/metrics/",
        "/favicon.ico",
        "/health/x",
    ] {
        let response = send(addr, &request("GET", path, "")).expect("GET");
        assert_eq!(response.status, 404, "{path}");
    }
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO"] {
        for path in ["/metrics", "/health", "/"] {
            let response =
                send(addr, &request(method, path, "Content-Length: 0\r\n")).expect("request");
            assert_eq!(response.status, 405, "{method} {path}");
            assert_eq!(
                response.header("allow"),
                Some("GET, HEAD"),
                "{method} {path}"
            );
        }
    }
    assert_scrape_works(addr);
}

#[test]
fn a_client_outside_the_allowlist_gets_403_saying_why_on_every_path() -> Result<(), Error> {
    let server = MetricsServer::builder()
        .standalone()
        .allow("10.0.0.0/8")?
        .build("127.0.0.1:0");
    server.start()?;
    let addr = server.local_addr().expect("running");
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/health"),
        ("GET", "/x"),
        ("POST", "/metrics"),
    ] {
        let response =
            send(addr, &request(method, path, "Content-Length: 0\r\n")).expect("request");
        assert_eq!(response.status, 403, "{method} {path}");
        // The guide's `.allow("10.0.0.0/8")` pasted as is: a local curl learns why.
        let body = String::from_utf8_lossy(&response.body);
        assert!(
            body.contains("127.0.0.1 is not in this metrics endpoint's allowlist"),
            "{body:?}"
        );
    }
    server.stop()
}

#[test]
fn malformed_requests_and_huge_headers_get_an_error_and_the_listener_serves_on() {
    let (_server, addr) = running();
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let response = send(addr, garbage).expect("an answer");
        assert!(
            (400..500).contains(&response.status),
            "{garbage:?} got {}",
            response.status
        );
    }
    let huge = format!("X-Big: {}\r\n", "a".repeat(200 * 1024));
    let response = send(addr, &request("GET", "/metrics", &huge));
    // An error status, or the connection cut while the client was still sending.
    if let Ok(response) = response {
        assert!((400..500).contains(&response.status), "{}", response.status);
    }
    assert_scrape_works(addr);
}

#[test]
fn slow_and_idle_connections_time_out_and_do_not_delay_a_scrape() {
    let server = MetricsServer::builder()
        .standalone()
        .header_read_timeout(Duration::from_secs(2))
        .build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    server
        .collector()
        .increment_counter("listener_total", &["k", "v"]);

    // Idle connections, and connections stuck half way through their request head.
    let mut idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")
                .expect("half a head");
            s
        })
        .collect();
    assert_scrape_works(addr);

    // Each is closed by the server after the header-read timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    for stream in idle.iter_mut().chain(slow.iter_mut()) {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "a connection is still open 20 s later"
            ),
        }
    }
    assert_scrape_works(addr);
    server.stop().expect("stop");
}

#[test]
fn keep_alive_serves_several_scrapes_on_one_connection() {
    let (_server, addr) = running();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for _ in 0..3 {
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
            .expect("send");
        // Read one response: head, then Content-Length bytes.
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("head byte");
            raw.push(byte[0]);
        }
        let head = parse(&raw).expect("a head");
        assert_eq!(head.status, 200);
        let length: usize = head
            .header("content-length")
            .expect("a length")
            .parse()
            .expect("numeric");
        let mut body = vec![0; length];
        stream.read_exact(&mut body).expect("body");
        assert!(String::from_utf8(body).is_ok_and(|t| t.contains("listener_total")));
    }
}
