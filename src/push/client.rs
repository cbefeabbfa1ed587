//! The HTTP client of a push target: hyper with rustls, with the target's TLS settings
//! (the system's roots unless set); each request bounded by a timeout, its answer read
//! whole up to a small limit.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::rt::TokioExecutor;

use super::target::PushTarget;
use crate::{Error, PushError};

/// How much of an answer's body is read (an OTLP partial success, an error message).
const ANSWER_LIMIT: usize = 64 * 1024;

/// See the module documentation.
pub(crate) type Client = Hyper<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client of `target`, its TLS settings checked now (the system's roots loaded).
pub(crate) fn client(target: &PushTarget) -> Result<Client, Error> {
    let config = target.tls.config()?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let connector = match &target.tls.server_name {
        Some(name) => connector
            .with_server_name_resolver(FixedServerNameResolver::new(name.clone()))
            .enable_http1()
            .build(),
        None => connector.enable_http1().build(),
    };
    Ok(Hyper::builder(TokioExecutor::new()).build(connector))
}

/// A receiver's answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// At most [`ANSWER_LIMIT`] bytes; empty if longer or unreadable.
    pub(crate) body: Bytes,
}

impl Answer {
    /// The start of the answer's body, as text: the receiver's message.
    pub(crate) fn message(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .trim()
            .chars()
            .take(256)
            .collect()
    }
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
