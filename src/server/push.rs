//! Push mode, for batch jobs and short-lived processes (feature `push`).
//!
//! A [`Pusher`] does not listen: from `start()` it pushes the exposition to a Pushgateway
//! every interval (HTTP `PUT`, which replaces the job's group), and `stop()` pushes once
//! more, so the last values of a batch job are never lost, and reports whether that final
//! push succeeded. Every push renders through the pipeline, as a scrape does, so no
//! histogram observation races it.
//!
//! The client is hyper with rustls (ring) and the system's root certificates, checked in
//! `start()`. A failed periodic push is logged once and retried at the next interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

use super::lifecycle::Lifecycle;
use super::listener::Render;
use super::Exported;
use crate::config::Config;
use crate::encode::{Format, Negotiated};
use crate::{Error, LocalRecorder, PrometheusCollector, PushError};

/// How long one push may take.
pub(crate) const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

type PushClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Pushes the exposition to a Pushgateway; see the module documentation.
///
/// ```no_run
/// use std::time::Duration;
/// use porter_metrics::{Builder, Collector};
///
/// # fn main() -> Result<(), porter_metrics::Error> {
/// let pusher = Builder::new().build_push(
///     "http://127.0.0.1:9091/metrics/job/nightly_import",
///     Duration::from_secs(10),
/// )?;
/// pusher.start()?;
/// pusher.collector().increment_counter("rows_imported_total", &["table", "orders"]);
/// pusher.stop()?; // pushes the final values
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a Pusher stops it"]
pub struct Pusher {
    endpoint: String,
    uri: Uri,
    interval: Duration,
    exported: Exported,
    running: Lifecycle<Pushing>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("endpoint", &self.endpoint)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Pusher {
    pub(crate) fn new(endpoint: &str, interval: Duration, config: Config) -> Result<Self, Error> {
        let invalid = |source| Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            source,
        };
        let uri: Uri = endpoint.parse().map_err(|e| invalid(Some(e)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(invalid(None));
        }
        if interval.is_zero() {
            return Err(Error::InvalidInterval);
        }
        Ok(Self {
            endpoint: endpoint.to_owned(),
            uri,
            interval,
            exported: Exported::new(config),
            running: Lifecycle::default(),
        })
    }

    /// Starts pushing every interval, from a thread of its own.
    ///
    /// # Errors
    /// [`Error::AlreadyRunning`], [`Error::Tls`] (no usable root certificates),
    /// [`Error::ForeignRecorder`], [`Error::AlreadyExported`],
    /// [`Error::Runtime`].
    pub fn start(&self) -> Result<(), Error> {
        let busy = |_: Option<&Pushing>| Error::AlreadyRunning {
            address: self.endpoint.clone(),
        };
        self.running.start(busy, || {
            let client = client()?;
            let (claim, render) = self.exported.claim(Vec::new)?;
            Ok((claim, Pushing::start(self, client, render)?))
        })?;
        tracing::info!(endpoint = %self.endpoint, "porter-metrics: pushing");
        Ok(())
    }

    /// Stops pushing, after one last push of the final values. Idempotent.
    ///
    /// # Errors
    /// [`Error::Push`] if the final push failed. The pusher is stopped either way.
    pub fn stop(&self) -> Result<(), Error> {
        let Some((claim, pushing)) = self.running.stop() else {
            return Ok(());
        };
        let outcome = pushing.stop().map_err(|source| Error::Push {
            endpoint: self.endpoint.clone(),
            source,
        });
        drop(claim);
        tracing::info!(endpoint = %self.endpoint, "porter-metrics: stopped pushing");
        outcome
    }

    /// The Pushgateway URL.
    ///
    /// ```
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let url = "http://127.0.0.1:9091/metrics/job/x";
    /// let pusher = porter_metrics::Builder::new().build_push(url, std::time::Duration::from_secs(1))?;
    /// assert_eq!(pusher.endpoint(), url);
    /// # Ok(())
    /// # }
    /// ```
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A collector recording into what this pusher pushes.
    ///
    /// ```
    /// use porter_metrics::Collector;
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let url = "http://127.0.0.1:9091/metrics/job/x";
    /// let pusher = porter_metrics::Builder::new().standalone().build_push(url, std::time::Duration::from_secs(1))?;
    /// pusher.collector().increment_counter("rows_total", &[]); // pushed from start() on
    /// # Ok(())
    /// # }
    /// ```
    pub fn collector(&self) -> PrometheusCollector {
        self.exported.collector()
    }

    /// The recorder of a standalone pusher, to use with `metrics::with_local_recorder`;
    /// `None` for a global one.
    pub fn recorder(&self) -> Option<LocalRecorder> {
        self.exported.recorder()
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The push loop, on a thread of its own.
struct Pushing {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<Result<(), PushError>>,
}

impl Pushing {
    fn start(pusher: &Pusher, client: PushClient, render: Render) -> Result<Self, Error> {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let (uri, interval, endpoint) =
            (pusher.uri.clone(), pusher.interval, pusher.endpoint.clone());
        // The runtime is built, and dropped, on the push thread: dropping one is not allowed
        // inside the caller's async code.
        let thread = thread::Builder::new()
            .name("porter-metrics-push".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(Error::Runtime(e)));
                        return Ok(());
                    }
                };
                let _ = ready.send(Ok(()));
                runtime.block_on(async {
                    let warned = AtomicBool::new(false);
                    let mut ticks = tokio::time::interval(interval);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticks.tick().await; // the first tick is immediate
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            _ = ticks.tick() => {}
                        }
                        if let Err(e) = push_once(&client, &uri, render(Negotiated::of(Format::Text))).await {
                            if !warned.swap(true, Ordering::Relaxed) {
                                tracing::warn!(%endpoint, error = %e, "porter-metrics: push failed; retrying every interval");
                            }
                        }
                    }
                    push_once(&client, &uri, render(Negotiated::of(Format::Text))).await
                })
            })
            .map_err(Error::Runtime)?;
        let outcome = started.recv().unwrap_or_else(|_| {
            Err(Error::Runtime(std::io::Error::other(
                "the push thread ended before it was ready",
            )))
        });
        if let Err(e) = outcome {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Self { stop, thread })
    }

    /// Stops the loop; returns how the final push went.
    fn stop(self) -> Result<(), PushError> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_else(|_| {
            Err(PushError::Request(
                "the push thread ended unexpectedly".into(),
            ))
        })
    }
}

/// A client with the system's root certificates, checked now.
fn client() -> Result<PushClient, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(Error::Tls)?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Pushes `body` (the text format) once, with `PUT` (the job's group is replaced).
async fn push_once(client: &PushClient, uri: &Uri, body: Vec<u8>) -> Result<(), PushError> {
    let request = Request::put(uri.clone())
        .header("content-type", Negotiated::of(Format::Text).content_type())
        .body(Full::from(body))
        .map_err(|e| PushError::Request(e.into()))?;
    let response = tokio::time::timeout(PUSH_TIMEOUT, client.request(request))
        .await
        .map_err(|_| PushError::Timeout(PUSH_TIMEOUT))?
        .map_err(|e| PushError::Request(e.into()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(PushError::Status(response.status().as_u16()))
    }
}
