//! Helpers shared by the integration tests: a minimal HTTP/1.1 client over loopback and
//! bounded waiting. Every network call here talks to 127.0.0.1 only.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An HTTP response: status code and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on `addr` with `Connection: close`; bounded by a 10 s timeout.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    get_on(stream, addr, path)
}

/// `GET path` with `Connection: close` on a connected `stream`; bounded by a 10 s timeout.
pub fn get_on(mut stream: TcpStream, addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response: {text:?}"),
        )
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body).ok_or_else(bad)?
    } else {
        body.to_owned()
    };
    Ok(Response { status, body })
}

/// The body of a chunked response (`None` if it is cut short).
pub fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        s = rest.get(size + 2..)?;
    }
}

/// Scrapes `/metrics` and returns the body, asserting a 200.
pub fn scrape(addr: SocketAddr) -> String {
    let response = get(addr, "/metrics").expect("scrape");
    assert_eq!(response.status, 200, "scrape status");
    response.body
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most 60 s) until the server process `child` answers `200` on `/-/ready` at
/// `addr`; why not if it exits first or never does.
pub fn wait_ready(child: &mut std::process::Child, addr: SocketAddr) -> Result<(), String> {
    wait_for(Duration::from_secs(60), || {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(Err(format!("exited: {status}")));
        }
        match get(addr, "/-/ready") {
            Ok(r) if r.status == 200 => Some(Ok(())),
            _ => None,
        }
    })
    .unwrap_or_else(|| Err("not ready within 60 s".into()))
}

/// A free loopback port outside the range the system hands out for port 0, so no other
/// test's server can take it between a test's `stop()` and its check that the port is free.
/// Each call in a process gets another port.
pub fn quiet_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id() % 5000;
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((offset + n * 7) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// The path of a binary from Debian's packages, or a failure that says how to install it.
pub fn require_binary(name: &str, package: &str) -> std::path::PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let path = std::path::Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("`{name}` is missing: install the Debian package `{package}` (apt-get install -y {package}), or run .ci/test");
}

/// A binary of Debian sid's packages (Prometheus 3.5, its promtool, VictoriaMetrics), as
/// `.ci/install-deps` unpacks them, or a failure that says how to get them.
pub fn sid_binary(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("PORTER_SID_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::Path::new(&h).join(".cache/porter-metrics/sid"))
        })
        .unwrap_or_default();
    let path = dir.join("usr/bin").join(name);
    assert!(
        path.exists(),
        "`{}` is missing: run .ci/install-deps (it unpacks Debian sid's packages there)",
        path.display()
    );
    path
}

pub mod counting;
pub mod prometheus;
pub mod proto;
pub mod receivers;
pub mod request;
pub mod victoria;

/// `GET path` on `addr` with `Accept: accept` over HTTP/1.0 (no gzip); the body's bytes,
/// asserting a 200. Bounded by a 10 s timeout.
pub fn scrape_as(addr: SocketAddr, accept: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET /metrics HTTP/1.0\r\nAccept: {accept}\r\n\r\n").expect("request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("response");
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&raw[..at]);
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    raw.split_off(at + 4)
}
