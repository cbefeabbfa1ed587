//! The HTTP listener of the [`MetricsServer`](crate::MetricsServer): a small hyper server of
//! ours that serves what the pipeline's encoder writes. This file binds the socket and runs
//! the accept loop; what a client must pass is in [`guard`](super::guard), the slots in
//! [`admission`](super::admission), the answers in [`scrape`](super::scrape).
//!
//! | connection | what happens |
//! |---|---|
//! | a client outside the allowlist | `403 Forbidden` at once, saying why, without reading its request, then the connection closes; it never takes a slot |
//! | with TLS (a web config, feature `tls`): plain HTTP | `400 Bad Request`, then the connection closes |
//! | with TLS: a handshake that fails (no or a refused client certificate, a SAN not allowed, no common version) | the connection closes |
//! | a malformed request, headers over 64 KiB | `400`, `431` (by hyper), then the connection closes |
//! | no TLS handshake, or no complete request head, within the header-read timeout (default 10 s), idle keep-alive included | the connection closes |
//!
//! Each refusal is counted by reason (`porter_metrics_connections_refused_total`) and
//! logged once.
//!
//! The listener runs on a thread of its own with a single-threaded tokio runtime
//! ([`exporter::thread`](crate::exporter::thread)), so it works whether or not the
//! application uses tokio; renders and bcrypt run on that runtime's blocking pool, so a
//! slow scrape delays no other connection.
//!
//! No client can lock a scraper out by holding connections: at most [`MAX_CONNECTIONS`] are
//! served at once, and at that cap a newcomer is served while the connection idle the longest
//! (no request in flight: idle keep-alive, a TLS handshake or a head not yet complete) is
//! closed. One client address holds at most [`MAX_PER_PEER`]; past it, its own longest-idle
//! connection is closed. A connection with a request in flight (until its response is
//! flushed) is never closed for a newcomer; when every candidate has one, the newcomer is
//! closed instead. Refusals and evictions are counted in [`ConnectionStats`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::admission::{Conn, Eviction, Slots, Tracked};
#[cfg(doc)]
use super::admission::{MAX_CONNECTIONS, MAX_PER_PEER};
use super::guard::Guard;
pub(crate) use super::scrape::Render;
use super::scrape::{respond, Scrapes};
use super::stats::{ConnectionStats, Reason};
use crate::Error;

/// Most bytes of a request head (hyper answers `431` past it).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long `stop` waits for scrapes in flight before closing their connections.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The listener's settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    /// Clients allowed to scrape; everyone when empty.
    pub(crate) allowed: Vec<IpNet>,
    /// Time a client has to finish its TLS handshake, and to send a complete request head.
    pub(crate) header_read_timeout: Duration,
    /// The web config (TLS, client certificates, basic auth, headers), if any.
    #[cfg(feature = "tls")]
    pub(crate) web: Option<Arc<crate::web_config::Checked>>,
}

/// Connections the kernel holds before we accept them. A burst beyond the queue is not
/// refused but retried by the client's TCP a second or more later, out of order; std's 128
/// is smaller than one flood the listener is built to survive.
const BACKLOG: u32 = 1024;

/// Binds and listens on `addr` (inside the listener's runtime).
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's bind does: a restarted server can take its port back at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// A running listener; [`stop`](Listener::stop) ends it.
pub(crate) struct Listener {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and serves on it; returns once the socket listens.
    ///
    /// # Errors
    /// [`Error::Bind`], [`Error::Runtime`]; [`Error::WebConfig`] if the web config's
    /// certificates cannot be loaded.
    pub(crate) fn start(
        addr: SocketAddr,
        settings: Settings,
        render: Render,
        stats: Arc<ConnectionStats>,
    ) -> Result<Self, Error> {
        let (stop, stopped) = oneshot::channel();
        let timeout = settings.header_read_timeout;
        #[cfg(feature = "tls")]
        let guard = match &settings.web {
            Some(web) => Guard::secured(settings.allowed, stats.clone(), web)?,
            None => Guard::new(settings.allowed, stats.clone()),
        };
        #[cfg(not(feature = "tls"))]
        let guard = Guard::new(settings.allowed, stats.clone());
        let shared = Arc::new(Shared::new(guard, render, timeout));
        let (local, thread) = crate::exporter::thread::start(
            "porter-metrics-listener",
            Error::Runtime,
            move |runtime, ready| {
                let bound = {
                    let _entered = runtime.enter();
                    bind(addr).and_then(|s| Ok((s.local_addr()?, s)))
                };
                let socket = match bound {
                    Ok((local, socket)) => {
                        ready.send(Ok(local));
                        socket
                    }
                    Err(source) => {
                        let address = addr.to_string();
                        return ready.send(Err(Error::Bind { address, source }));
                    }
                };
                let deadline = runtime.block_on(serve(socket, shared, stopped));
                // Connections still open past the grace period are dropped with the runtime.
                runtime.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
            },
        )?;
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

/// What every connection of a running listener shares.
struct Shared {
    guard: Guard,
    scrapes: Scrapes,
    /// Time a client has for its TLS handshake, and for each request head.
    timeout: Duration,
}

impl Shared {
    fn new(guard: Guard, render: Render, timeout: Duration) -> Self {
        Self {
            guard,
            scrapes: Scrapes::new(render),
            timeout,
        }
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
    let accept_warned = std::sync::atomic::AtomicBool::new(false);
    #[cfg(feature = "tls")]
    let _rotation = shared.guard.tls.as_ref().map(|tls| tls.watch());
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: back off a little instead of spinning.
                if !accept_warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(error = %e, "porter-metrics: cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let peer = peer.ip().to_canonical();
        let Some(stream) = shared.guard.admit(stream, peer) else {
            continue;
        };
        let admission = slots.admit(peer);
        let crowded = match (admission.evicted, &admission.slot) {
            (Some(Eviction::Idle), _) => Some(Reason::EvictedIdle),
            (Some(Eviction::PerPeer), _) => Some(Reason::EvictedPerPeer),
            (None, None) => Some(Reason::Full),
            (None, Some(_)) => None,
        };
        if let Some(reason) = crowded {
            shared.guard.crowded(reason);
        }
        let Some(slot) = admission.slot else {
            continue; // every candidate has a request in flight: this one closes now
        };
        let _ = stream.set_nodelay(true);
        let io = Tracked {
            stream,
            conn: slot.conn.clone(),
        };
        let (shared, watcher) = (shared.clone(), graceful.watcher());
        tokio::spawn(async move {
            tokio::select! {
                // Evicted: dropping the connection closes the socket.
                () = slot.conn.evict.notified() => {}
                () = connection(io, shared, slot.conn.clone(), watcher) => {}
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

/// Serves one admitted connection: over TLS when the guard has it, after its handshake.
async fn connection(io: Tracked, shared: Arc<Shared>, conn: Arc<Conn>, watcher: Watcher) {
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.guard.tls {
        if let Some(secured) = tls.handshake(io, &shared.guard, shared.timeout).await {
            http(secured, shared, conn, watcher).await;
        }
        return;
    }
    http(io, shared, conn, watcher).await;
}

/// Serves HTTP/1.1 on `io` until the client or a shutdown closes it.
async fn http<I>(io: I, shared: Arc<Shared>, conn: Arc<Conn>, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.timeout;
    let service = service_fn(move |request| {
        let (shared, conn) = (shared.clone(), conn.clone());
        async move {
            conn.request_started();
            let mut answer = respond(&shared.guard, &shared.scrapes, request).await;
            // A streamed body is returned when its last chunk is handed to hyper.
            match answer.as_mut().map(|a| a.body_mut()) {
                Ok(http_body_util::Either::Right(streamed)) => {
                    streamed.when_done(Box::new(move || conn.response_returned()));
                }
                _ => conn.response_returned(),
            }
            answer
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "porter-metrics: connection ended with an error");
    }
}
