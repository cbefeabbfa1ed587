//! The HTTP listener of the [`MetricsServer`](crate::MetricsServer): a small hyper server of
//! ours that serves what the pipeline's encoder writes.
//!
//! | request | answer |
//! |---|---|
//! | a client outside the allowlist | `403 Forbidden` at once, without reading its request, then the connection closes; it never takes a slot |
//! | `GET /metrics` | the exposition in the format `Accept` asks for (the text format 0.0.4 by default, OpenMetrics 1.0, or protobuf; see [`format`](crate::encode::format)), with its `Content-Type`, gzipped when `Accept-Encoding` allows it, `Vary: Accept, Accept-Encoding` |
//! | `GET /metrics` while [`MAX_RENDERS`] (4) renders are in flight for [`RENDER_WAIT`] (2 s) | `503 Service Unavailable` with `Retry-After: 1`, counted in `porter_metrics_scrapes_refused_total{reason="busy"}` |
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
//!
//! Each concern has its file: [`admission`] (the slots: the cap, eviction, per-address
//! limits), [`forbidden`] (the `403` of the allowlist), [`routing`] (paths, methods,
//! renders and gzip); this file binds the socket and runs the accept loop over them.

mod admission;
mod forbidden;
mod routing;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::sync::{oneshot, Semaphore};

use crate::encode::{ExtraFamily, Negotiated};
use crate::store::kind::Kind;
use crate::Error;
use admission::{Eviction, Slots, Tracked};
pub(crate) use admission::{MAX_CONNECTIONS, MAX_PER_PEER};
use forbidden::{forbid, MAX_FORBIDDEN_WRITERS};
use routing::respond;

/// Most bytes of a request head (hyper answers `431` past it).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Renders in flight at once: each is CPU work, and holds an exposition in memory. A scrape
/// past it waits up to [`RENDER_WAIT`] for one to end, then gets `503 Service Unavailable`
/// with `Retry-After: 1`.
pub(crate) const MAX_RENDERS: usize = 4;

/// How long a scrape waits for a render to end, past [`MAX_RENDERS`].
pub(crate) const RENDER_WAIT: Duration = Duration::from_secs(2);

/// How long `stop` waits for scrapes in flight before closing their connections.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What renders the exposition as negotiated, gzipped if asked, handing it over in chunks
/// as it goes: the pipeline's render, streamed.
pub(crate) type Render = Arc<dyn Fn(Negotiated, bool, &mut dyn FnMut(Vec<u8>)) + Send + Sync>;

/// The listener's settings.
#[derive(Clone, Debug, Default)]
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
    /// Scrapes answered `503`: [`MAX_RENDERS`] renders were in flight for too long.
    scrapes_busy: AtomicU64,
}

impl ConnectionStats {
    /// The counts as counter families, zeros included.
    pub(crate) fn families(&self) -> [ExtraFamily; 3] {
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
            ExtraFamily {
                name: "porter_metrics_scrapes_refused_total",
                help: "Scrapes the metrics listener answered 503, by reason.",
                kind: Kind::Counter,
                samples: vec![(reason("busy"), count(&self.scrapes_busy))],
            },
        ]
    }
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
        let (stop, stopped) = oneshot::channel();
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let shared = Arc::new(Shared::new(settings, render, stats));
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
                let bound = {
                    let _entered = runtime.enter();
                    bind(addr).and_then(|s| Ok((s.local_addr()?, s)))
                };
                let socket = match bound {
                    Ok((local, socket)) => {
                        let _ = ready.send(Ok(local));
                        socket
                    }
                    Err(e) => return drop(ready.send(Err(bind_error(e)))),
                };
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
        let local = match outcome {
            Ok(local) => local,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
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
    /// One permit per render in flight.
    renders: Semaphore,
    /// Whether a scrape was refused for it (and logged).
    busy_warned: AtomicBool,
}

impl Shared {
    fn new(settings: Settings, render: Render, stats: Arc<ConnectionStats>) -> Self {
        Self {
            settings,
            render,
            stats,
            renders: Semaphore::new(MAX_RENDERS),
            busy_warned: AtomicBool::new(false),
        }
    }

    fn allows(&self, peer: IpAddr) -> bool {
        // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        self.settings.allowed.is_empty() || self.settings.allowed.iter().any(|n| n.contains(&peer))
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
                let mut answer = respond(shared, request).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_matches_networks_and_mapped_addresses() {
        let render: Render = Arc::new(|_, _, _| {});
        let settings = Settings {
            allowed: vec!["10.0.0.0/8".parse().unwrap()],
            header_read_timeout: Duration::from_secs(1),
        };
        let shared = Shared::new(settings, render, Arc::default());
        assert!(shared.allows("10.1.2.3".parse().unwrap()));
        assert!(shared.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!shared.allows("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn the_counts_are_families_zeros_included() {
        let stats = ConnectionStats::default();
        stats.evicted_idle.fetch_add(3, Ordering::Relaxed);
        let [refused, evicted, busy] = stats.families();
        assert_eq!(busy.samples[0].1, 0.0);
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
