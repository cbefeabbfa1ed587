//! Push mode: the exporter's Pushgateway client, for batch jobs and short-lived processes.
//!
//! A [`MetricsServer`](crate::MetricsServer) built with
//! [`Builder::build_push`](crate::Builder::build_push) does not listen: from `start()` it
//! pushes the exposition to a Pushgateway every interval (HTTP `PUT`, which replaces the
//! job's group), and `stop()` pushes once more, so the last values of a batch job are never
//! lost, and reports whether that final push succeeded.
//!
//! The exporter's client needs a process-wide rustls crypto provider and the system's root
//! certificates, and panics without them; they are checked (and the provider installed) in
//! `start()`, which returns an error instead.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::Error;

/// How long the final push at `stop()` may take.
pub(crate) const FINAL_PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how often to push.
#[derive(Clone, Debug)]
pub(crate) struct PushTarget {
    pub(crate) endpoint: String,
    pub(crate) interval: Duration,
}

impl PushTarget {
    pub(crate) fn new(endpoint: &str, interval: Duration) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidAddress {
            address: endpoint.to_owned(),
            reason,
        };
        let uri: Uri = endpoint.parse().map_err(|e| invalid(format!("{e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(invalid(
                "a Pushgateway URL looks like http://host:9091/metrics/job/NAME".into(),
            ));
        }
        if interval.is_zero() {
            return Err(Error::Config("the push interval must not be zero".into()));
        }
        Ok(Self {
            endpoint: endpoint.to_owned(),
            interval,
        })
    }

    pub(crate) fn uri(&self) -> Result<Uri, Error> {
        self.endpoint.parse().map_err(|e| Error::InvalidAddress {
            address: self.endpoint.clone(),
            reason: format!("{e}"),
        })
    }
}

fn connector(
) -> Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, String>
{
    // The exporter takes the process-wide provider; install ours unless one is set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .ok_or("no rustls crypto provider")?;
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("no usable root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build())
}

/// Checks what the exporter's push client would otherwise panic on.
pub(crate) fn prepare() -> Result<(), Error> {
    connector().map(|_| ()).map_err(Error::Config)
}

/// Pushes `body` once, with `PUT` as the exporter does.
pub(crate) async fn push_once(uri: Uri, body: String) -> Result<(), String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector()?);
    let request = Request::put(uri)
        .header("content-type", "text/plain; version=0.0.4")
        .body(Full::from(body))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(FINAL_PUSH_TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("no answer within {FINAL_PUSH_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the Pushgateway answered {}", response.status()))
    }
}
