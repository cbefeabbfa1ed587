//! No one can lock Prometheus out of the listener, over real TCP on loopback: with hundreds
//! of idle connections or half-sent request heads held open, from one address or several,
//! a scrape is still served, and the self-metrics count what the listener closed. With an
//! allowlist, the flood comes from an address outside it (answered `403` at once, never
//! given a slot) and the scrape from another loopback address inside it (all of 127/8 is
//! loopback on Linux).
//!
//! File descriptors: client and server sides of every connection live in this process, so
//! each test raises its soft `RLIMIT_NOFILE` to the hard limit, and fails with a clear
//! message if even that is too low for the flood (the sizes are fixed by the issue, not
//! shrunk to fit).
#![cfg(unix)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, MetricsServer};

/// Connections the listener serves at once (`listener::MAX_CONNECTIONS`).
const MAX_CONNECTIONS: usize = 512;
/// Connections one address may hold (`listener::MAX_PER_PEER`).
const MAX_PER_PEER: usize = MAX_CONNECTIONS / 2;

/// A request head without its final blank line: the server waits for the rest.
const HALF_HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: porter\r\nUser-Agent: flood\r\n";

/// Every wait in these tests ends by then.
const PATIENCE: Duration = Duration::from_secs(30);

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; panics if that still allows fewer
/// than `needed` descriptors.
fn raise_fd_limit(needed: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `limit`, which outlives the call.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads `raised`, which outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    assert!(
        limit.rlim_cur >= needed,
        "the flood needs {needed} file descriptors, the hard limit allows {}: raise it \
         (ulimit -Hn) to run this test",
        limit.rlim_cur
    );
}

/// Descriptors for `flood` connections: the client sides, at most a slot's worth of server
/// sides, and room for the runtime, the scrape and the test harness.
fn descriptors_for(flood: usize) -> libc::rlim_t {
    (flood + MAX_CONNECTIONS + 256) as libc::rlim_t
}

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Connects to `addr` from `source` (std cannot choose the source address; tokio can).
fn connect_from(
    runtime: &tokio::runtime::Runtime,
    source: Ipv4Addr,
    addr: SocketAddr,
) -> std::io::Result<TcpStream> {
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddrV4::new(source, 0).into())?;
        let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
            .await
            .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connect"))??;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Opens `count` connections to `addr`, taking their source addresses in turn from
/// `sources`, each sending `first` (nothing for an idle one), and holds them.
fn flood(addr: SocketAddr, sources: &[Ipv4Addr], count: usize, first: &[u8]) -> Vec<TcpStream> {
    let runtime = client_runtime();
    (0..count)
        .map(|i| {
            let source = sources[i % sources.len()];
            let mut stream = connect_from(&runtime, source, addr)
                .unwrap_or_else(|e| panic!("flood connection {i} from {source}: {e}"));
            if !first.is_empty() {
                stream.write_all(first).expect("half a head");
            }
            stream
        })
        .collect()
}

/// Scrapes `/metrics` from `source` and parses the exposition, asserting a 200.
fn scrape_from(source: Ipv4Addr, addr: SocketAddr) -> Exposition {
    let stream = connect_from(&client_runtime(), source, addr).expect("the scrape connects");
    let response = common::get_on(stream, addr, "/metrics").expect("the scrape is answered");
    assert_eq!(response.status, 200, "scrape status");
    Exposition::parse(&response.body).expect("a valid exposition")
}

/// A standalone server on 127.0.0.1 with one recorded counter. The header-read timeout is
/// long, so that only eviction (not the timeout) can free a slot during a test.
fn running(allow: Option<&str>) -> (MetricsServer, SocketAddr) {
    let mut builder = MetricsServer::builder()
        .standalone()
        .header_read_timeout(Duration::from_secs(120));
    if let Some(allow) = allow {
        builder = builder.allow(allow).expect("a valid network");
    }
    let server = builder.build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    server.collector().increment_counter("flood_total", &[]);
    (server, addr)
}

fn count(scrape: &Exposition, name: &str, reason: &str) -> f64 {
    scrape
        .value(name, &["reason", reason])
        .unwrap_or_else(|| panic!("{name}{{reason={reason:?}}} is exported"))
}

fn evicted(scrape: &Exposition, reason: &str) -> f64 {
    count(scrape, "porter_metrics_connections_evicted_total", reason)
}

fn refused(scrape: &Exposition, reason: &str) -> f64 {
    count(scrape, "porter_metrics_connections_refused_total", reason)
}

/// Reads what the server sent on `stream` until it closes, within the deadline; `None` if
/// it is still open then.
fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let left = deadline.saturating_duration_since(Instant::now());
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .expect("timeout");
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => Some(got),
        // Closed with a reset (a half-sent head the server never read): closed too.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Some(got),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("reading a flood connection: {e}"),
    }
}

/// Whether the server still holds `stream` open: nothing to read for a short while.
fn still_open(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    matches!(
        stream.read(&mut byte),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    )
}

#[test]
fn idle_connections_from_many_addresses_make_room_for_a_scrape() {
    const FLOOD: usize = 900;
    raise_fd_limit(descriptors_for(FLOOD));
    let (_server, addr) = running(None);
    // Four addresses, 225 connections each: under the per-address limit, over the cap.
    let sources: Vec<Ipv4Addr> = (10..14).map(loopback).collect();
    let mut held = flood(addr, &sources, FLOOD, b"");

    // Accepted after the whole flood (the accept queue is first in, first out).
    let scrape = scrape_from(loopback(1), addr);
    assert_eq!(scrape.value("flood_total", &[]), Some(1.0));
    // Every connection past the cap, and the scrape, made room for itself.
    assert_eq!(
        evicted(&scrape, "idle"),
        (FLOOD + 1 - MAX_CONNECTIONS) as f64
    );
    assert_eq!(evicted(&scrape, "per_peer"), 0.0);
    assert_eq!(refused(&scrape, "full"), 0.0);

    // The longest idle went first; the newest are still served.
    let deadline = Instant::now() + PATIENCE;
    assert!(
        read_until_closed(&mut held[0], deadline).is_some_and(|got| got.is_empty()),
        "the oldest connection is closed, without an answer"
    );
    assert!(still_open(&mut held[FLOOD - 1]), "the newest is still open");
    // And scrapes go on being served while the flood holds its connections.
    scrape_from(loopback(1), addr);
}

#[test]
fn idle_connections_from_the_scrapers_own_address_make_room_for_a_scrape() {
    const FLOOD: usize = 900;
    raise_fd_limit(descriptors_for(FLOOD));
    let (_server, addr) = running(None);
    let mut held = flood(addr, &[loopback(1)], FLOOD, b"");

    let scrape = scrape_from(loopback(1), addr);
    assert_eq!(scrape.value("flood_total", &[]), Some(1.0));
    // One address holds at most its share: each connection past it evicted its own oldest.
    assert_eq!(
        evicted(&scrape, "per_peer"),
        (FLOOD + 1 - MAX_PER_PEER) as f64
    );
    assert_eq!(evicted(&scrape, "idle"), 0.0);
    assert_eq!(refused(&scrape, "full"), 0.0);
    let deadline = Instant::now() + PATIENCE;
    assert!(read_until_closed(&mut held[0], deadline).is_some());
    assert!(still_open(&mut held[FLOOD - 1]));
}

#[test]
fn half_sent_request_heads_make_room_for_a_scrape() {
    const FLOOD: usize = 600;
    raise_fd_limit(descriptors_for(FLOOD));
    let (_server, addr) = running(None);
    // Three addresses, 200 heads each: under the per-address limit, over the cap.
    let sources: Vec<Ipv4Addr> = (20..23).map(loopback).collect();
    let mut held = flood(addr, &sources, FLOOD, HALF_HEAD);

    let scrape = scrape_from(loopback(1), addr);
    assert_eq!(scrape.value("flood_total", &[]), Some(1.0));
    assert_eq!(
        evicted(&scrape, "idle"),
        (FLOOD + 1 - MAX_CONNECTIONS) as f64
    );
    assert_eq!(refused(&scrape, "full"), 0.0);
    // An evicted head gets no answer: the connection just closes.
    let deadline = Instant::now() + PATIENCE;
    assert!(read_until_closed(&mut held[0], deadline).is_some_and(|got| got.is_empty()));
    assert!(still_open(&mut held[FLOOD - 1]));
}

/// With an allowlist of 127.0.0.2 only, `flood` connections from 127.0.0.1, each sending
/// `first`: every one is answered 403 and closed, none takes a slot, and a scrape from
/// 127.0.0.2 is served.
fn outsiders_are_answered_at_once_and_take_no_slot(flood_size: usize, first: &[u8]) {
    raise_fd_limit(descriptors_for(flood_size));
    let (_server, addr) = running(Some("127.0.0.2/32"));
    let mut held = flood(addr, &[loopback(1)], flood_size, first);

    let scrape = scrape_from(loopback(2), addr);
    assert_eq!(scrape.value("flood_total", &[]), Some(1.0));
    assert_eq!(refused(&scrape, "forbidden"), flood_size as f64);
    // They never held a slot, so nothing had to make room.
    assert_eq!(evicted(&scrape, "idle"), 0.0);
    assert_eq!(evicted(&scrape, "per_peer"), 0.0);
    assert_eq!(refused(&scrape, "full"), 0.0);

    // Each was answered 403 and closed, without the server waiting for its request.
    let deadline = Instant::now() + PATIENCE;
    for (i, stream) in held.iter_mut().enumerate() {
        let got = read_until_closed(stream, deadline)
            .unwrap_or_else(|| panic!("outsider {i} is still connected"));
        assert!(
            got.starts_with(b"HTTP/1.1 403 Forbidden\r\n"),
            "outsider {i} got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[test]
fn idle_connections_from_outside_the_allowlist_never_stop_a_scrape() {
    outsiders_are_answered_at_once_and_take_no_slot(900, b"");
}

#[test]
fn half_sent_heads_from_outside_the_allowlist_never_stop_a_scrape() {
    outsiders_are_answered_at_once_and_take_no_slot(300, HALF_HEAD);
}

#[test]
fn a_response_still_being_written_is_never_evicted() {
    const FLOOD: usize = 600;
    raise_fd_limit(descriptors_for(FLOOD));
    let (server, addr) = running(None);
    // An exposition of about 6 MB: more than the kernel buffers between the server and a
    // client that reads nothing, so the server is still writing it during the flood.
    let collector = server.collector();
    let padding = "p".repeat(120);
    for metric in 0..30 {
        for series in 0..1500 {
            collector.increment_counter(
                &format!("big_{metric}_total"),
                &["k", &format!("{padding}{series}")],
            );
        }
    }
    let runtime = client_runtime();
    let mut slow = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(4096)?;
            socket.bind(SocketAddrV4::new(loopback(1), 0).into())?;
            let stream = socket.connect(addr).await?.into_std()?;
            stream.set_nonblocking(false)?;
            Ok::<_, std::io::Error>(stream)
        })
        .expect("the slow client connects");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: porter\r\nConnection: close\r\n\r\n")
        .expect("request");
    // The response has begun: the request is in flight.
    slow.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut first = [0u8; 1];
    assert_eq!(slow.peek(&mut first).expect("the response begins"), 1);

    // From the slow client's own address: it is that address's oldest connection, first in
    // line for eviction were its request not in flight.
    let _held = flood(addr, &[loopback(1)], FLOOD, b"");
    let scrape = scrape_from(loopback(3), addr);
    assert_eq!(
        evicted(&scrape, "per_peer"),
        (FLOOD + 1 - MAX_PER_PEER) as f64
    );

    let mut raw = Vec::new();
    slow.read_to_end(&mut raw).expect("the whole response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // A large exposition streams (chunked): whole when its last chunk came.
    let body = &raw[split + 4..];
    let length = match head.contains("transfer-encoding: chunked") {
        true => common::dechunk(&String::from_utf8_lossy(body))
            .expect("the response is whole")
            .len(),
        false => {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a content length");
            assert_eq!(body.len(), length, "the response is whole");
            length
        }
    };
    assert!(length > 5_000_000, "the exposition is {length} bytes");
}
