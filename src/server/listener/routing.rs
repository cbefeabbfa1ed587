//! What a request gets: `/metrics` (rendered off the runtime's thread, gzipped when asked),
//! `/health`, `405` and `404` (see the table in the listener's documentation).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};

use std::sync::atomic::Ordering;

use super::{Shared, RENDER_WAIT};
use crate::encode;
use crate::pipeline::{Started, Streamed};

pub(super) type Answer = Response<Either<Full<Bytes>, Streamed>>;

pub(super) fn status(code: StatusCode) -> Answer {
    let mut response = Response::new(Either::Left(Full::default()));
    *response.status_mut() = code;
    response
}

pub(super) fn not_allowed() -> Answer {
    let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

pub(super) async fn respond(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Answer, Infallible> {
    let readable = matches!(*request.method(), Method::GET | Method::HEAD);
    Ok(match request.uri().path() {
        "/metrics" if readable => metrics(shared, request.method(), request.headers()).await,
        "/health" if readable => {
            let mut response = Response::new(Either::Left(Full::from("OK")));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        "/metrics" | "/health" => not_allowed(),
        _ => status(StatusCode::NOT_FOUND),
    })
}

pub(super) async fn metrics(shared: Arc<Shared>, method: &Method, headers: &HeaderMap) -> Answer {
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
        match tokio::time::timeout(RENDER_WAIT, shared.renders.acquire()).await {
            // Held by the render until it ends (below), not by this future.
            Ok(Ok(permit)) => permit.forget(),
            _ => {
                shared.stats.scrapes_busy.fetch_add(1, Ordering::Relaxed);
                if !shared.busy_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        max_renders = super::MAX_RENDERS,
                        "porter-metrics: too many scrapes at once, answering 503 \
                             (counted in porter_metrics_scrapes_refused_total; logged once)"
                    );
                }
                let mut busy = status(StatusCode::SERVICE_UNAVAILABLE);
                busy.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return busy;
            }
        };
        // Rendering is CPU work: off the runtime's thread, streamed to the socket as it
        // goes (gzipped there when asked).
        let (body, mut chunks) = Streamed::channel();
        let (render, release) = (shared.render.clone(), Release(shared.clone()));
        tokio::task::spawn_blocking(move || {
            let _release = release;
            render(negotiated, gzip, &mut |chunk| chunks.send(chunk));
            chunks.finish();
        });
        // A small exposition comes whole (with a `Content-Length`); a larger one streams.
        match body.start().await {
            Some(Started::Whole(all)) => Either::Left(Full::new(all)),
            Some(Started::Streamed(body)) => Either::Right(body),
            None => return status(StatusCode::INTERNAL_SERVER_ERROR),
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

/// Whether `Accept-Encoding` allows gzip: a `gzip` coding whose quality is not 0.
pub(super) fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
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

/// Gives a render's permit back when the render ends, however it ends.
struct Release(Arc<Shared>);

impl Drop for Release {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("porter-metrics: rendering failed");
        }
        self.0.renders.add_permits(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_past_the_bound_wait_then_get_503() {
        use std::sync::atomic::AtomicUsize;
        use std::time::Duration;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let rendering = Arc::new(AtomicUsize::new(0));
        let seen = rendering.clone();
        // Each render takes longer than a scrape waits for one.
        let render: crate::server::listener::Render = Arc::new(move |_, _, sink| {
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(crate::server::listener::RENDER_WAIT + Duration::from_millis(500));
            sink(b"x 1\n".to_vec());
        });
        let shared = Arc::new(Shared::new(Default::default(), render, Arc::default()));
        let statuses = runtime.block_on(async {
            let scrapes = (0..crate::server::listener::MAX_RENDERS + 2).map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    metrics(shared, &Method::GET, &HeaderMap::new())
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
        assert_eq!(
            (ok, busy),
            (crate::server::listener::MAX_RENDERS, 2),
            "{statuses:?}"
        );
        assert_eq!(
            rendering.load(Ordering::SeqCst),
            crate::server::listener::MAX_RENDERS
        );
        assert_eq!(shared.stats.scrapes_busy.load(Ordering::Relaxed), 2);
        // A HEAD renders nothing, and is never refused.
        let head = runtime.block_on(metrics(shared.clone(), &Method::HEAD, &HeaderMap::new()));
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
