//! The HTTP client of every push: hyper with rustls (ring) and the system's root
//! certificates; one request at a time, bounded by a timeout, its answer read whole up to
//! a small limit.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::rt::TokioExecutor;

use crate::{Error, PushError};

/// How much of an answer's body is read (an OTLP partial success, an error message).
const ANSWER_LIMIT: usize = 64 * 1024;

/// See the module documentation.
pub(crate) type Client = Hyper<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client with the system's root certificates, checked now.
pub(crate) fn client() -> Result<Client, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(Error::Tls)?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Hyper::builder(TokioExecutor::new()).build(connector))
}

/// A receiver's answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// At most [`ANSWER_LIMIT`] bytes; empty if longer or unreadable.
    pub(crate) body: Bytes,
}

/// Sends `request` and reads the answer, all within `timeout`.
pub(crate) async fn send(
    client: &Client,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Answer, PushError> {
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| PushError::Request(e.into()))?;
        let (parts, body) = response.into_parts();
        let body = match Limited::new(body, ANSWER_LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| PushError::Timeout(timeout))?
}
