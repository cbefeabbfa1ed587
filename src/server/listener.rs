//! The HTTP listener of the [`MetricsServer`](crate::MetricsServer): a small hyper server of
//! ours that serves what the pipeline's encoder writes.
//!
//! | request | answer |
//! |---|---|
//! | a client outside the allowlist | `403 Forbidden` at once, without reading its request, then the connection closes; it never takes a slot |
//! | `GET /metrics` | the exposition in the format `Accept` asks for (the text format 0.0.4 by default, OpenMetrics 1.0, or protobuf; see [`format`](crate::encode::format)), with its `Content-Type`, gzipped when `Accept-Encoding` allows it, `Vary: Accept, Accept-Encoding` |
//! | `HEAD /metrics` | the same headers, no body (nothing is rendered) |
//! | `GET` or `HEAD /health` | `200 OK` |
//! | another method on those paths | `405 Method Not Allowed`, with `Allow: GET, HEAD` |
//! | any other path | `404 Not Found` |
//! | a malformed request, headers over 64 KiB | `400`, `431` (by hyper), then the connection closes |
//! | no complete request head within the header-read timeout (default 10 s), idle keep-alive included | the connection closes |
//!
//! The listener runs on a thread of its own with a single-threaded tokio runtime, so it works
//! whether or not the application uses tokio; renders run on that runtime's blocking pool,
//! so a slow scrape delays no other connection.
//!
//! No client can lock a scraper out by holding connections: at most [`MAX_CONNECTIONS`] are
//! served at once, and at that cap a newcomer is served while the connection idle the longest
//! (no request in flight: idle keep-alive, or a head not yet complete) is closed. One client
//! address holds at most [`MAX_PER_PEER`]; past it, its own longest-idle connection is closed.
//! A connection with a request in flight (until its response is flushed) is never closed for
//! a newcomer; when every candidate has one, the newcomer is closed instead. Refusals and
//! evictions are counted in [`ConnectionStats`].

use crate::encode::{format, ExtraFamily, Negotiated};
use crate::store::kind::Kind;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify, Semaphore};

use crate::Error;

/// Connections served at once; at the cap the longest-idle one makes room for a newcomer.
pub(crate) const MAX_CONNECTIONS: usize = 512;

/// Connections one client address may hold: half the slots, so one address can never hold
/// them all (as nginx's `limit_conn` bounds one address).
pub(crate) const MAX_PER_PEER: usize = MAX_CONNECTIONS / 2;

/// `403` answers to clients outside the allowlist being written at once; past it such a
/// client is closed without one. Bounds the sockets a flood of outsiders keeps open.
const MAX_FORBIDDEN_WRITERS: usize = 64;

/// Longest time spent answering a client outside the allowlist.
const FORBIDDEN_LINGER: Duration = Duration::from_secs(1);

/// The whole answer to a client outside the allowlist.
const FORBIDDEN: &[u8] =
    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Most bytes of a request head (hyper answers `431` past it).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long `stop` waits for scrapes in flight before closing their connections.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What renders the exposition as negotiated: the pipeline's render.
pub(crate) type Render = Arc<dyn Fn(Negotiated) -> Vec<u8> + Send + Sync>;

/// The listener's settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Clients allowed to scrape; everyone when empty.
    pub(crate) allowed: Vec<IpNet>,
    /// Time a client has to send a complete request head.
    pub(crate) header_read_timeout: Duration,
}

/// Connections the listener refused or closed to make room, for the self-metrics. One per
/// server, so the counts survive a stop and a start.
#[derive(Debug, Default)]
pub(crate) struct ConnectionStats {
    /// Clients outside the allowlist.
    refused_forbidden: AtomicU64,
    /// Newcomers closed because every slot they could take had a request in flight.
    refused_full: AtomicU64,
    /// Idle connections closed to make room at the cap.
    evicted_idle: AtomicU64,
    /// Idle connections closed because their address held [`MAX_PER_PEER`].
    evicted_per_peer: AtomicU64,
}

impl ConnectionStats {
    /// The counts as counter families, zeros included.
    pub(crate) fn families(&self) -> [ExtraFamily; 2] {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let reason = |r: &'static str| vec![("reason", r.to_owned())];
        [
            ExtraFamily {
                name: "porter_metrics_connections_refused_total",
                help: "Connections the metrics listener refused, by reason.",
                kind: Kind::Counter,
                samples: vec![
                    (reason("forbidden"), count(&self.refused_forbidden)),
                    (reason("full"), count(&self.refused_full)),
                ],
            },
            ExtraFamily {
                name: "porter_metrics_connections_evicted_total",
                help: "Idle connections the metrics listener closed to make room, by reason.",
                kind: Kind::Counter,
                samples: vec![
                    (reason("idle"), count(&self.evicted_idle)),
                    (reason("per_peer"), count(&self.evicted_per_peer)),
                ],
            },
        ]
    }
}

/// A running listener; [`stop`](Listener::stop) ends it.
pub(crate) struct Listener {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and serves on it; returns once the socket listens.
    pub(crate) fn start(
        addr: SocketAddr,
        settings: Settings,
        render: Render,
        stats: Arc<ConnectionStats>,
    ) -> Result<Self, Error> {
        let bind_error = move |source| Error::Bind {
            address: addr.to_string(),
            source,
        };
        let socket = StdListener::bind(addr).map_err(bind_error)?;
        let local = socket.local_addr().map_err(bind_error)?;
        socket.set_nonblocking(true).map_err(bind_error)?;
        let (stop, stopped) = oneshot::channel();
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let shared = Arc::new(Shared {
            settings,
            render,
            stats,
        });
        // The runtime is built, and dropped, on the listener's own thread: dropping one is
        // not allowed inside the caller's async code.
        let thread = thread::Builder::new()
            .name("porter-metrics-listener".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => return drop(ready.send(Err(Error::Runtime(e)))),
                };
                let socket = {
                    let _entered = runtime.enter();
                    tokio::net::TcpListener::from_std(socket).map_err(bind_error)
                };
                let socket = match socket {
                    Ok(socket) => socket,
                    Err(e) => return drop(ready.send(Err(e))),
                };
                let _ = ready.send(Ok(()));
                let deadline = runtime.block_on(serve(socket, shared, stopped));
                // Connections still open past the grace period are dropped with the runtime.
                runtime.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
            })
            .map_err(Error::Runtime)?;
        let outcome = started.recv().unwrap_or_else(|_| {
            Err(Error::Runtime(std::io::Error::other(
                "the listener thread ended before it was ready",
            )))
        });
        if let Err(e) = outcome {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Self {
            addr: local,
            stop,
            thread,
        })
    }

    /// The address the socket is bound to (the port chosen, for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the socket, lets scrapes in flight finish for at most [`SHUTDOWN_GRACE`], then
    /// closes every connection. The port is free when this returns.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

struct Shared {
    settings: Settings,
    render: Render,
    stats: Arc<ConnectionStats>,
}

impl Shared {
    fn allows(&self, peer: IpAddr) -> bool {
        // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        self.settings.allowed.is_empty() || self.settings.allowed.iter().any(|n| n.contains(&peer))
    }
}

/// A served connection's state, as the slot table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// No request in flight: a head not yet complete, or idle keep-alive. Evictable.
    Idle = 0,
    /// A request is being answered.
    Busy = 1,
    /// The response is returned and not yet flushed to the socket.
    Responded = 2,
}

/// One served connection in the slot table.
struct Conn {
    peer: IpAddr,
    state: AtomicU8,
    /// When it last became idle (accepted, or its last response flushed), in nanoseconds
    /// since the table's epoch.
    idle_since: AtomicU64,
    /// Told to close when evicted.
    evict: Notify,
    epoch: Instant,
}

impl Conn {
    fn state(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// Moves `from` → `to`; `false` when it was in another state.
    fn advance(&self, from: State, to: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn request_started(&self) {
        self.advance(State::Idle, State::Busy);
    }

    fn response_returned(&self) {
        self.advance(State::Busy, State::Responded);
    }

    /// The socket accepted every byte written so far: a returned response is out.
    fn flushed(&self) {
        if self.state() == State::Responded as u8 {
            self.idle_since
                .store(nanos_since(self.epoch), Ordering::Relaxed);
            self.advance(State::Responded, State::Idle);
        }
    }
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Why a connection was closed to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Eviction {
    /// The cap was reached.
    Idle,
    /// Its address held [`MAX_PER_PEER`] connections.
    PerPeer,
}

/// The served connections: at most [`MAX_CONNECTIONS`], at most [`MAX_PER_PEER`] per address.
struct Slots {
    epoch: Instant,
    table: Mutex<Table>,
}

impl Default for Slots {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            table: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_peer: HashMap<IpAddr, usize>,
}

impl Table {
    /// The connection idle the longest among those `of` selects.
    fn longest_idle(&self, of: impl Fn(&Conn) -> bool) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| c.state() == State::Idle as u8 && of(c))
            .min_by_key(|(id, c)| (c.idle_since.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id)
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let conn = self.conns.remove(&id)?;
        if let Some(held) = self.per_peer.get_mut(&conn.peer) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.per_peer.remove(&conn.peer);
            }
        }
        Some(conn)
    }
}

/// What [`Slots::admit`] decided.
struct Admission {
    /// The newcomer's slot; `None` when it is refused.
    slot: Option<Slot>,
    /// A connection closed to make room for it.
    evicted: Option<Eviction>,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `peer` a slot, closing the longest-idle connection of that address (at its
    /// limit) or of anyone (at the cap) if needed.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Admission {
        let mut table = self.lock();
        let held = table.per_peer.get(&peer).copied().unwrap_or(0);
        let (victim, reason) = if held >= MAX_PER_PEER {
            (table.longest_idle(|c| c.peer == peer), Eviction::PerPeer)
        } else if table.conns.len() >= MAX_CONNECTIONS {
            (table.longest_idle(|_| true), Eviction::Idle)
        } else {
            return Admission {
                slot: Some(self.insert(&mut table, peer)),
                evicted: None,
            };
        };
        let Some(victim) = victim.and_then(|id| table.remove(id)) else {
            return Admission {
                slot: None,
                evicted: None,
            };
        };
        // Its task drops the connection, closing the socket, when next polled.
        victim.evict.notify_one();
        Admission {
            slot: Some(self.insert(&mut table, peer)),
            evicted: Some(reason),
        }
    }

    fn insert(self: &Arc<Self>, table: &mut Table, peer: IpAddr) -> Slot {
        let id = table.next_id;
        table.next_id += 1;
        let conn = Arc::new(Conn {
            peer,
            state: AtomicU8::new(State::Idle as u8),
            idle_since: AtomicU64::new(nanos_since(self.epoch)),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        table.conns.insert(id, conn.clone());
        *table.per_peer.entry(peer).or_default() += 1;
        Slot {
            slots: self.clone(),
            id,
            conn,
        }
    }
}

/// A served connection's place in the table; freed on drop (unless it was evicted).
struct Slot {
    slots: Arc<Slots>,
    id: u64,
    conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.slots.lock().remove(self.id);
    }
}

/// The socket of a served connection, telling its slot when a response is flushed.
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // hyper flushes the socket once its own buffer is empty: a response returned before
        // is then wholly in the kernel, and closing the socket no longer cuts it.
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.conn.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts until told to stop; returns the deadline for the connections still open.
async fn serve(
    socket: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) -> Instant {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Slots::default());
    let forbidden_writers = Arc::new(Semaphore::new(MAX_FORBIDDEN_WRITERS));
    let accept_warned = AtomicBool::new(false);
    let flood_warned = AtomicBool::new(false);
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: back off a little instead of spinning.
                if !accept_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "porter-metrics: cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let peer = peer.ip().to_canonical();
        if !shared.allows(peer) {
            shared
                .stats
                .refused_forbidden
                .fetch_add(1, Ordering::Relaxed);
            forbid(stream, &forbidden_writers);
            continue;
        }
        let admission = slots.admit(peer);
        let counter = match (admission.evicted, &admission.slot) {
            (Some(Eviction::Idle), _) => Some(&shared.stats.evicted_idle),
            (Some(Eviction::PerPeer), _) => Some(&shared.stats.evicted_per_peer),
            (None, None) => Some(&shared.stats.refused_full),
            (None, Some(_)) => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if counter.is_some() && !flood_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_connections = MAX_CONNECTIONS,
                max_per_peer = MAX_PER_PEER,
                "porter-metrics: the listener is at its connection limit, closing idle \
                 connections (counted in porter_metrics_connections_evicted_total and \
                 porter_metrics_connections_refused_total; logged once)"
            );
        }
        let Some(slot) = admission.slot else {
            continue; // every candidate has a request in flight: this one closes now
        };
        let _ = stream.set_nodelay(true);
        let conn = slot.conn.clone();
        let timeout = shared.settings.header_read_timeout;
        let shared = shared.clone();
        let service = service_fn(move |request| {
            let shared = shared.clone();
            let conn = conn.clone();
            async move {
                conn.request_started();
                let answer = respond(shared, request).await;
                conn.response_returned();
                answer
            }
        });
        let io = Tracked {
            stream,
            conn: slot.conn.clone(),
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                // Evicted: dropping the connection closes the socket.
                () = slot.conn.evict.notified() => {}
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(error = %e, "porter-metrics: connection ended with an error");
                }
            }
            drop(slot);
        });
        if admission.evicted.is_some() {
            // Let the evicted connection's task close its socket before the next accept:
            // open sockets stay within the cap under a flood.
            tokio::task::yield_now().await;
        }
    }
    drop(socket); // the port is free from here on
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    deadline
}

/// Answers a client outside the allowlist `403` and closes its connection, without waiting
/// for its request; past [`MAX_FORBIDDEN_WRITERS`] answers at once, just closes it.
fn forbid(stream: TcpStream, writers: &Arc<Semaphore>) {
    let Ok(writer) = writers.clone().try_acquire_owned() else {
        // A fresh socket's send buffer is empty: the answer goes out without waiting.
        let _ = stream.try_write(FORBIDDEN);
        return;
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(FORBIDDEN_LINGER, answer_forbidden(stream)).await;
        drop(writer);
    });
}

async fn answer_forbidden(mut stream: TcpStream) {
    let mut rest = FORBIDDEN;
    while !rest.is_empty() {
        if stream.writable().await.is_err() {
            return;
        }
        match stream.try_write(rest) {
            Ok(written) => rest = rest.get(written..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    // The end of the answer; then read what the client sent until it closes: closing with
    // unread bytes would send a reset, which can destroy the answer before it is read.
    let _ = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
    let mut sink = [0u8; 4096];
    let mut budget = MAX_HEAD_BYTES;
    while budget > 0 {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut sink) {
            Ok(0) => return,
            Ok(read) => budget = budget.saturating_sub(read),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

type Answer = Response<Full<Bytes>>;

fn status(code: StatusCode) -> Answer {
    let mut response = Response::new(Full::default());
    *response.status_mut() = code;
    response
}

fn not_allowed() -> Answer {
    let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

async fn respond(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Answer, Infallible> {
    let readable = matches!(*request.method(), Method::GET | Method::HEAD);
    Ok(match request.uri().path() {
        "/metrics" if readable => metrics(shared, &request).await,
        "/health" if readable => {
            let mut response = Response::new(Full::from("OK"));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        "/metrics" | "/health" => not_allowed(),
        _ => status(StatusCode::NOT_FOUND),
    })
}

async fn metrics(shared: Arc<Shared>, request: &Request<Incoming>) -> Answer {
    let gzip = accepts_gzip(request.headers().get_all(header::ACCEPT_ENCODING));
    let negotiated = format::negotiate(
        request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let body = if request.method() == Method::HEAD {
        Bytes::new()
    } else {
        // Rendering is CPU work (about 200 ms for 100 000 series): off the runtime's thread.
        let render = shared.render.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let exposition = render(negotiated);
            if gzip {
                compress(&exposition)
            } else {
                exposition
            }
        })
        .await;
        match rendered {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                tracing::error!(error = %e, "porter-metrics: rendering failed");
                return status(StatusCode::INTERNAL_SERVER_ERROR);
            }
        }
    };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    if let Ok(content_type) = HeaderValue::from_str(&negotiated.content_type()) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Whether `Accept-Encoding` allows gzip: a `gzip` coding whose quality is not 0.
fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    values
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a `Vec` cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_negotiated_as_client_golang_does() {
        let accepts = |v: &'static str| accepts_gzip([&HeaderValue::from_static(v)]);
        assert!(accepts("gzip"));
        assert!(accepts("deflate, GZIP;q=0.5"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("identity"));
        assert!(!accepts_gzip([]));
    }

    #[test]
    fn the_allowlist_matches_networks_and_mapped_addresses() {
        let render: Render = Arc::new(|_| Vec::new());
        let shared = Shared {
            settings: Settings {
                allowed: vec!["10.0.0.0/8".parse().unwrap()],
                header_read_timeout: Duration::from_secs(1),
            },
            render,
            stats: Arc::default(),
        };
        assert!(shared.allows("10.1.2.3".parse().unwrap()));
        assert!(shared.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!shared.allows("127.0.0.1".parse().unwrap()));
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room_never_a_busy_one() {
        let slots = Arc::new(Slots::default());
        // Spread over addresses so that no one reaches its own limit.
        let mut held: Vec<Slot> = (0..MAX_CONNECTIONS)
            .map(|i| slots.admit(ip((i % 4) as u8)).slot.expect("a free slot"))
            .collect();
        // The oldest one has a request in flight, the second one's response is not flushed.
        held[0].conn.request_started();
        held[1].conn.request_started();
        held[1].conn.response_returned();
        let admitted = slots.admit(ip(9));
        assert_eq!(admitted.evicted, Some(Eviction::Idle));
        assert!(admitted.slot.is_some());
        assert_eq!(slots.lock().conns.len(), MAX_CONNECTIONS);
        // The third oldest went: the two before it were not idle.
        assert!(!slots.lock().conns.contains_key(&held[2].id));
        assert!(slots.lock().conns.contains_key(&held[0].id));
        assert!(slots.lock().conns.contains_key(&held[1].id));
        // Once flushed, the second one is idle again, since now.
        held[1].conn.flushed();
        assert_eq!(held[1].conn.state(), State::Idle as u8);

        // Every one busy: the newcomer is refused.
        for slot in slots.lock().conns.values() {
            slot.request_started();
        }
        let refused = slots.admit(ip(9));
        assert!(refused.slot.is_none() && refused.evicted.is_none());
        // A slot freed by its connection ending is taken without evicting anyone.
        drop(held.pop());
        let admitted = slots.admit(ip(9));
        assert!(admitted.slot.is_some() && admitted.evicted.is_none());
    }

    #[test]
    fn one_address_holds_at_most_its_share_and_evicts_its_own() {
        let slots = Arc::new(Slots::default());
        let other = slots.admit(ip(2)).slot.expect("a free slot");
        let held: Vec<Slot> = (0..MAX_PER_PEER)
            .map(|_| slots.admit(ip(1)).slot.expect("a free slot"))
            .collect();
        let admitted = slots.admit(ip(1));
        assert_eq!(admitted.evicted, Some(Eviction::PerPeer));
        // Its own oldest went, not the other address's older connection.
        assert!(!slots.lock().conns.contains_key(&held[0].id));
        assert!(slots.lock().conns.contains_key(&other.id));
        assert_eq!(slots.lock().per_peer.get(&ip(1)), Some(&MAX_PER_PEER));
        // Another address is served at once.
        assert_eq!(slots.admit(ip(3)).evicted, None);
    }

    #[test]
    fn the_counts_are_families_zeros_included() {
        let stats = ConnectionStats::default();
        stats.evicted_idle.fetch_add(3, Ordering::Relaxed);
        let [refused, evicted] = stats.families();
        assert_eq!(refused.name, "porter_metrics_connections_refused_total");
        let counts = |f: &ExtraFamily| -> Vec<(String, f64)> {
            f.samples
                .iter()
                .map(|(l, n)| (l[0].1.clone(), *n))
                .collect()
        };
        let pair = |r: &str, n: f64| (r.to_owned(), n);
        assert_eq!(
            counts(&refused),
            [pair("forbidden", 0.0), pair("full", 0.0)]
        );
        assert_eq!(evicted.name, "porter_metrics_connections_evicted_total");
        assert_eq!(counts(&evicted), [pair("idle", 3.0), pair("per_peer", 0.0)]);
    }
}
