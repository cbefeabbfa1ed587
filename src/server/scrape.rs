//! What a request gets, once its client passed the [guard](super::guard):
//!
//! | request | answer |
//! |---|---|
//! | without the web config's basic-auth credentials, when it has users | `401 Unauthorized` with `WWW-Authenticate: Basic`, counted in `porter_metrics_scrapes_refused_total{reason="no_credentials"}` or `{reason="bad_password"}` |
//! | `GET /metrics` | the exposition in the format `Accept` asks for (the text format 0.0.4 by default, OpenMetrics 1.0, or protobuf; see [`format`](crate::encode::format)), with its `Content-Type`, gzipped when `Accept-Encoding` allows it, `Vary: Accept, Accept-Encoding` |
//! | `GET /metrics` while [`MAX_RENDERS`] (4) renders are in flight for [`RENDER_WAIT`] (2 s) | `503 Service Unavailable` with `Retry-After: 1`, counted in `porter_metrics_scrapes_refused_total{reason="busy"}` |
//! | `HEAD /metrics` | the same headers, no body (nothing is rendered) |
//! | `GET` or `HEAD /health` | `200 OK` |
//! | `GET` or `HEAD /` | a small HTML page linking `/metrics` and `/health`, as exporters have |
//! | another method on those paths | `405 Method Not Allowed`, with `Allow: GET, HEAD` |
//! | any other path | `404 Not Found` |
//!
//! Every answer carries the web config's `http_server_config.headers`, if any.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::sync::Semaphore;

use super::body::{Started, Streamed};
use super::guard::Guard;
use super::stats::Reason;
use crate::encode::{self, Negotiated};

/// What renders the exposition as negotiated, gzipped if asked, handing it over in chunks
/// as it goes: the pipeline's render, streamed.
pub(crate) type Render = Arc<dyn Fn(Negotiated, bool, &mut dyn FnMut(Vec<u8>)) + Send + Sync>;

/// Renders in flight at once: each is CPU work, and holds an exposition in memory. A scrape
/// past it waits up to [`RENDER_WAIT`] for one to end, then gets `503 Service Unavailable`
/// with `Retry-After: 1`.
pub(crate) const MAX_RENDERS: usize = 4;

/// How long a scrape waits for a render to end, past [`MAX_RENDERS`].
pub(crate) const RENDER_WAIT: Duration = Duration::from_secs(2);

/// An answer: whole, or a scrape's body streamed as it is rendered.
pub(crate) type Answer = Response<Either<Full<Bytes>, Streamed>>;

/// The landing page at `/`.
const LANDING: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<title>porter-metrics</title></head>\n<body><h1>porter-metrics</h1>\n<ul>\
<li><a href=\"metrics\">Metrics</a> (<code>/metrics</code>)</li>\
<li><a href=\"health\">Health</a> (<code>/health</code>)</li></ul></body></html>\n";

/// What renders scrapes, at most [`MAX_RENDERS`] at once.
pub(crate) struct Scrapes {
    render: Render,
    /// One permit per render in flight, held by the render (not by the request's future)
    /// until it ends.
    renders: Arc<Semaphore>,
}

impl Scrapes {
    pub(crate) fn new(render: Render) -> Self {
        Self {
            render,
            renders: Arc::new(Semaphore::new(MAX_RENDERS)),
        }
    }
}

/// Gives a render's permit back when the render ends, however it ends.
struct Release(Arc<Semaphore>);

impl Drop for Release {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("porter-metrics: rendering failed");
        }
        self.0.add_permits(1);
    }
}

fn status(code: StatusCode) -> Answer {
    let mut response = Response::new(Either::Left(Full::default()));
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

fn page(body: &'static str, content_type: &'static str) -> Answer {
    let mut response = Response::new(Either::Left(Full::from(body)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The answer to `request`, once `guard` let it through.
pub(crate) async fn respond(
    guard: &Guard,
    scrapes: &Scrapes,
    request: Request<Incoming>,
) -> Result<Answer, Infallible> {
    let mut answer = match guard.authorize(request.headers()).await {
        Err(reason) => refused(reason),
        Ok(()) => route(guard, scrapes, &request).await,
    };
    guard.decorate(answer.headers_mut());
    Ok(answer)
}

/// The answer to a request `guard` refused: `401` asking for basic auth, or `503`.
fn refused(reason: Reason) -> Answer {
    if reason != Reason::NoCredentials && reason != Reason::BadPassword {
        return busy();
    }
    let mut refused = Answer::new(Either::Left(Full::from("401 Unauthorized\n")));
    *refused.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = refused.headers_mut();
    headers.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"metrics\", charset=\"UTF-8\""),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    refused
}

/// `503` with `Retry-After: 1`.
fn busy() -> Answer {
    let mut busy = status(StatusCode::SERVICE_UNAVAILABLE);
    busy.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    busy
}

async fn route(guard: &Guard, scrapes: &Scrapes, request: &Request<Incoming>) -> Answer {
    let readable = matches!(*request.method(), Method::GET | Method::HEAD);
    match request.uri().path() {
        "/metrics" if readable => {
            metrics(guard, scrapes, request.method(), request.headers()).await
        }
        "/health" if readable => page("OK", "text/plain"),
        "/" if readable => page(LANDING, "text/html; charset=utf-8"),
        "/metrics" | "/health" | "/" => not_allowed(),
        _ => status(StatusCode::NOT_FOUND),
    }
}

async fn metrics(guard: &Guard, scrapes: &Scrapes, method: &Method, headers: &HeaderMap) -> Answer {
    let gzip = accepts_gzip(headers.get_all(header::ACCEPT_ENCODING));
    let negotiated = encode::negotiate(
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let body = if method == Method::HEAD {
        Either::Left(Full::default())
    } else {
        // At most MAX_RENDERS at once; past it, wait a little, then answer 503.
        match tokio::time::timeout(RENDER_WAIT, scrapes.renders.acquire()).await {
            // Held by the render until it ends (below), not by this future.
            Ok(Ok(permit)) => permit.forget(),
            _ => {
                guard.refuse(Reason::Busy, || {
                    format!("too many scrapes at once ({MAX_RENDERS} renders), answering 503")
                });
                return busy();
            }
        };
        match body(scrapes, negotiated, gzip).await {
            Ok(body) => body,
            Err(failed) => return failed,
        }
    };
    let mut response = Response::new(body);
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

/// A scrape's body: the exposition as negotiated, gzipped if `gzip`, rendered on the
/// blocking pool (it is CPU work) and streamed to the socket as it goes; a small one comes
/// whole, with a `Content-Length`. The one place a body is made. `Err` is the answer when
/// the render failed before anything was sent.
async fn body(
    scrapes: &Scrapes,
    negotiated: Negotiated,
    gzip: bool,
) -> Result<Either<Full<Bytes>, Streamed>, Answer> {
    let (body, mut chunks) = Streamed::channel();
    let (render, release) = (scrapes.render.clone(), Release(scrapes.renders.clone()));
    tokio::task::spawn_blocking(move || {
        let _release = release;
        render(negotiated, gzip, &mut |chunk| chunks.send(chunk));
        chunks.finish();
    });
    match body.start().await {
        Some(Started::Whole(all)) => Ok(Either::Left(Full::new(all))),
        Some(Started::Streamed(body)) => Ok(Either::Right(body)),
        None => Err(status(StatusCode::INTERNAL_SERVER_ERROR)),
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::*;
    use crate::server::stats::ConnectionStats;

    #[test]
    fn renders_past_the_bound_wait_then_get_503() {
        use std::sync::atomic::AtomicUsize;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let rendering = Arc::new(AtomicUsize::new(0));
        let seen = rendering.clone();
        // Each render takes longer than a scrape waits for one.
        let render: Render = Arc::new(move |_, _, sink| {
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(RENDER_WAIT + Duration::from_millis(500));
            sink(b"x 1\n".to_vec());
        });
        let stats = Arc::new(ConnectionStats::default());
        let shared = Arc::new((Guard::new(Vec::new(), stats.clone()), Scrapes::new(render)));
        let statuses = runtime.block_on(async {
            let scrapes = (0..MAX_RENDERS + 2).map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    metrics(&shared.0, &shared.1, &Method::GET, &HeaderMap::new())
                        .await
                        .status()
                })
            });
            let mut statuses = Vec::new();
            for scrape in scrapes.collect::<Vec<_>>() {
                statuses.push(scrape.await.expect("the scrape task"));
            }
            statuses
        });
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let busy = statuses
            .iter()
            .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
            .count();
        assert_eq!((ok, busy), (MAX_RENDERS, 2), "{statuses:?}");
        assert_eq!(rendering.load(Ordering::SeqCst), MAX_RENDERS);
        assert_eq!(stats.get(Reason::Busy), 2);
        // A HEAD renders nothing, and is never refused.
        let head = runtime.block_on(metrics(
            &shared.0,
            &shared.1,
            &Method::HEAD,
            &HeaderMap::new(),
        ));
        assert_eq!(head.status(), StatusCode::OK);
    }

    #[test]
    fn gzip_is_negotiated_as_client_golang_does() {
        let accepts = |v: &'static str| accepts_gzip([&HeaderValue::from_static(v)]);
        assert!(accepts("gzip"));
        assert!(accepts("deflate, GZIP;q=0.5"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("identity"));
        assert!(!accepts_gzip([]));
    }
}
