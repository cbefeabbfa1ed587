//! Push mode, for batch jobs and short-lived processes.
//!
//! A [`MetricsServer`](crate::MetricsServer) built with
//! [`Builder::build_push`](crate::Builder::build_push) does not listen: from `start()` it
//! pushes the exposition to a Pushgateway every interval (HTTP `PUT`, which replaces the
//! job's group), and `stop()` pushes once more, so the last values of a batch job are never
//! lost, and reports whether that final push succeeded. Every push renders through the
//! pipeline, as a scrape does, so no histogram observation races it.
//!
//! The client is hyper with rustls (ring) and the system's root certificates, checked in
//! `start()`, which returns an error when they are unusable. A failed periodic push is
//! logged once and retried at the next interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

use crate::listener::{Render, CONTENT_TYPE};
use crate::Error;

/// How long one push may take.
pub(crate) const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how often to push.
#[derive(Clone, Debug)]
pub(crate) struct PushTarget {
    endpoint: String,
    uri: Uri,
    interval: Duration,
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
            uri,
            interval,
        })
    }
}

/// A running push loop; [`stop`](Pushing::stop) ends it with a final push.
pub(crate) struct Pushing {
    endpoint: String,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<Result<(), Error>>,
}

impl Pushing {
    /// Pushes every `target.interval` on a thread of its own, until stopped.
    pub(crate) fn start(target: PushTarget, render: Render) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let endpoint = target.endpoint.clone();
        let thread = thread::Builder::new()
            .name("porter-metrics-push".into())
            .spawn(move || {
                runtime.block_on(async {
                    let client = client().map_err(Error::Config)?;
                    let warned = AtomicBool::new(false);
                    let mut ticks = tokio::time::interval(target.interval);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticks.tick().await; // the first tick is immediate
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            _ = ticks.tick() => {}
                        }
                        if let Err(e) = push_once(&client, &target.uri, render()).await {
                            if !warned.swap(true, Ordering::Relaxed) {
                                tracing::warn!(endpoint = %target.endpoint, error = %e, "porter-metrics: push failed; retrying every interval");
                            }
                        }
                    }
                    push_once(&client, &target.uri, render()).await.map_err(Error::Push)
                })
            })
            .map_err(Error::Runtime)?;
        Ok(Self {
            endpoint,
            stop,
            thread,
        })
    }

    /// The Pushgateway URL.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stops the loop and pushes the final values; returns how that push went.
    pub(crate) fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_else(|_| {
            Err(Error::Push("the push thread ended unexpectedly".into()))
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

type PushClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client() -> Result<PushClient, String> {
    Ok(Client::builder(TokioExecutor::new()).build(connector()?))
}

/// Checks the TLS setup the client needs, so `start()` reports it.
pub(crate) fn prepare() -> Result<(), Error> {
    connector().map(|_| ()).map_err(Error::Config)
}

/// Pushes `body` once, with `PUT` (the job's group is replaced).
async fn push_once(client: &PushClient, uri: &Uri, body: String) -> Result<(), String> {
    let request = Request::put(uri.clone())
        .header("content-type", CONTENT_TYPE)
        .body(Full::from(body))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(PUSH_TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("no answer within {PUSH_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the Pushgateway answered {}", response.status()))
    }
}
