//! The HTTP listener of the [`MetricsServer`](crate::MetricsServer): a small hyper server of
//! ours that serves what the pipeline's encoder writes.
//!
//! | request | answer |
//! |---|---|
//! | a client outside the allowlist | `403 Forbidden` |
//! | `GET /metrics` | the text exposition, `text/plain; version=0.0.4; charset=utf-8`, gzipped when `Accept-Encoding` allows it |
//! | `HEAD /metrics` | the same headers, no body (nothing is rendered) |
//! | `GET` or `HEAD /health` | `200 OK` |
//! | another method on those paths | `405 Method Not Allowed`, with `Allow: GET, HEAD` |
//! | any other path | `404 Not Found` |
//! | a malformed request, headers over 64 KiB | `400`, `431` (by hyper), then the connection closes |
//! | no complete request head within the header-read timeout (default 10 s), idle keep-alive included | the connection closes |
//!
//! The listener runs on a thread of its own with a single-threaded tokio runtime, so it works
//! whether or not the application uses tokio; renders run on that runtime's blocking pool,
//! so a slow scrape delays no other connection. At most [`MAX_CONNECTIONS`] connections are
//! served at once; further ones are closed as soon as they are accepted.

use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
use tokio::sync::{oneshot, Semaphore};

use crate::Error;

pub(crate) use crate::encode::text::CONTENT_TYPE;

/// Connections served at once; more are closed on accept.
pub(crate) const MAX_CONNECTIONS: usize = 512;

/// Most bytes of a request head (hyper answers `431` past it).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long `stop` waits for scrapes in flight before closing their connections.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What renders the exposition: the pipeline's render.
pub(crate) type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The listener's settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Clients allowed to scrape; everyone when empty.
    pub(crate) allowed: Vec<IpNet>,
    /// Time a client has to send a complete request head.
    pub(crate) header_read_timeout: Duration,
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
        let shared = Arc::new(Shared { settings, render });
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
}

impl Shared {
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let warned = AtomicBool::new(false);
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: back off a little instead of spinning.
                if !warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "porter-metrics: cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // too many connections: this one closes now
        };
        let _ = stream.set_nodelay(true);
        let allowed = shared.allows(peer.ip());
        let timeout = shared.settings.header_read_timeout;
        let shared = shared.clone();
        let service = service_fn(move |request| respond(shared.clone(), allowed, request));
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "porter-metrics: connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(socket); // the port is free from here on
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    deadline
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

async fn respond(
    shared: Arc<Shared>,
    allowed: bool,
    request: Request<Incoming>,
) -> Result<Answer, Infallible> {
    if !allowed {
        return Ok(status(StatusCode::FORBIDDEN));
    }
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
    let body = if request.method() == Method::HEAD {
        Bytes::new()
    } else {
        // Rendering is CPU work (about 200 ms for 100 000 series): off the runtime's thread.
        let render = shared.render.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let text = render();
            if gzip {
                compress(text.as_bytes())
            } else {
                text.into_bytes()
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
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
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
        let render: Render = Arc::new(String::new);
        let shared = Shared {
            settings: Settings {
                allowed: vec!["10.0.0.0/8".parse().unwrap()],
                header_read_timeout: Duration::from_secs(1),
            },
            render,
        };
        assert!(shared.allows("10.1.2.3".parse().unwrap()));
        assert!(shared.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!shared.allows("127.0.0.1".parse().unwrap()));
    }
}
