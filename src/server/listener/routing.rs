//! What a request gets: `/metrics` (rendered off the runtime's thread, gzipped when asked),
//! `/health`, `405` and `404` (see the table in the listener's documentation).

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};

use std::sync::atomic::Ordering;

use super::{Shared, RENDER_WAIT};
use crate::encode::format;

pub(super) type Answer = Response<Full<Bytes>>;

pub(super) fn status(code: StatusCode) -> Answer {
    let mut response = Response::new(Full::default());
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

pub(super) async fn metrics(shared: Arc<Shared>, method: &Method, headers: &HeaderMap) -> Answer {
    let gzip = accepts_gzip(headers.get_all(header::ACCEPT_ENCODING));
    let negotiated = format::negotiate(
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        // At most MAX_RENDERS at once; past it, wait a little, then answer 503.
        let permit = match tokio::time::timeout(RENDER_WAIT, shared.renders.acquire()).await {
            Ok(Ok(permit)) => permit,
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
        drop(permit);
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

pub(super) fn compress(bytes: &[u8]) -> Vec<u8> {
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
        let render: crate::server::listener::Render = Arc::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(crate::server::listener::RENDER_WAIT + Duration::from_millis(500));
            b"x 1\n".to_vec()
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
