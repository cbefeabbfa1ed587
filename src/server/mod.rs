//! Exporting a pipeline: the [`MetricsServer`] serves it on our listener ([`listener`]),
//! and pushes it to the push targets of its builder, if any; the `Pusher` pushes it
//! without serving (`crate::push`, feature `push`).
//!
//! Lifecycle rules, the same for both:
//!
//! * `start` returns once exporting (for a server: once the socket listens); it does not
//!   block and works inside or outside a tokio runtime (each runs on a thread of its own). A
//!   bad address or a port in use is an `Err` naming the address; port 0 picks a free port,
//!   which [`local_addr`](MetricsServer::local_addr) tells.
//! * A global one (the default) installs porter-metrics as the `metrics` global recorder if
//!   nothing did yet, and exports it: the collector, the macros and the self-metrics all
//!   land in one exposition. A standalone one exports a pipeline of its own.
//! * `stop` is idempotent and `Ok` before `start`. A server closes its socket (the port is
//!   free when `stop` returns), lets scrapes in flight finish for at most
//!   [`SHUTDOWN_GRACE`](listener::SHUTDOWN_GRACE) (1 s), then closes every connection;
//!   each push target gets one final push. Recorded values stay in the pipeline.
//! * `start` after `stop` exports again, every value kept. Dropping a running one stops it.
//! * One at a time exports a pipeline: another one started meanwhile gets
//!   [`Error::AlreadyExported`]. The pipeline's settings (buckets, global labels, idle
//!   timeout, limits) are those of the first one that started on it: a later one built with
//!   others gets [`Error::ConflictingSettings`] from `start`.

mod admission;
mod body;
mod guard;
pub(crate) mod listener;
mod scrape;
mod stats;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::config::Config;
use crate::encode::ExtraFamily;
use crate::exporter::{Exported, Lifecycle};
#[cfg(feature = "push")]
use crate::push;
use crate::{Builder, Error, LocalRecorder, PrometheusCollector};
use listener::{Listener, Render};
use stats::ConnectionStats;

/// Serves the exposition over HTTP (the text format, OpenMetrics or protobuf, as the scrape's
/// `Accept` header asks); see the module documentation for the lifecycle.
///
/// ```
/// use porter_metrics::{Collector, MetricsServer};
///
/// # fn main() -> Result<(), porter_metrics::Error> {
/// let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
/// server.start()?;
/// let addr = server.local_addr().expect("running");
/// server.collector().increment_counter("requests_total", &["method", "GET"]);
/// # let _ = addr;
/// server.stop()?;
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a MetricsServer stops it"]
pub struct MetricsServer {
    address: String,
    exported: Exported,
    /// The listener's refusals and evictions, kept across a stop and a start.
    connections: Arc<ConnectionStats>,
    /// The push targets of its builder, and their counts.
    #[cfg(feature = "push")]
    targets: push::Targets,
    running: Lifecycle<Serving>,
}

/// A running server: its listener, and its pushes if it has targets.
struct Serving {
    listener: Listener,
    #[cfg(feature = "push")]
    pushing: Option<push::Pushing>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("address", &self.address)
            .field("local_addr", &self.local_addr())
            .field("standalone", &self.exported.is_standalone())
            .finish()
    }
}

impl MetricsServer {
    /// A global server with default settings that will listen on `address`.
    ///
    /// ```
    /// let server = porter_metrics::MetricsServer::new("127.0.0.1:9090");
    /// assert!(server.local_addr().is_none()); // not started yet
    /// ```
    pub fn new(address: &str) -> Self {
        Builder::new().build(address)
    }

    /// A [`Builder`] to configure a server.
    ///
    /// ```
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = porter_metrics::MetricsServer::builder()
    ///     .standalone()
    ///     .global_label("service", "api")?
    ///     .build("127.0.0.1:0");
    /// assert!(server.local_addr().is_none()); // built, not started
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn from_config(address: &str, config: Config) -> Self {
        Self {
            address: address.to_owned(),
            #[cfg(feature = "push")]
            targets: push::Targets::new(&config),
            exported: Exported::new(config),
            connections: Arc::default(),
            running: Lifecycle::default(),
        }
    }

    /// Binds the address and starts serving; returns once the socket listens. After
    /// [`stop`](Self::stop), starts again with every value kept.
    ///
    /// ```
    /// use porter_metrics::{Collector, Error, MetricsServer};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    /// server.start()?; // listening when it returns
    /// server.collector().increment_counter("jobs_total", &[]);
    /// assert!(matches!(server.start(), Err(Error::AlreadyRunning { .. })));
    /// server.stop()?;
    /// server.start()?; // serves again, the counter kept
    /// assert!(server.recorder().unwrap().render().contains("jobs_total 1"));
    /// server.stop()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidAddress`], [`Error::Bind`] (port in use, permission),
    /// [`Error::AlreadyRunning`], [`Error::ForeignRecorder`] (a global server when another
    /// global recorder is installed), [`Error::AlreadyExported`] (another server exports the
    /// same pipeline right now), [`Error::Runtime`]; with a web config (feature `tls`),
    /// `Error::WebConfig` if a certificate, key or CA file it names cannot be read or used;
    /// with push targets, `Error::InvalidPushSetting` (an interval not shorter than the idle
    /// timeout), `Error::Tls`, `Error::PushTls`, `Error::PushRuntime`.
    pub fn start(&self) -> Result<(), Error> {
        let busy = |running: Option<&Serving>| Error::AlreadyRunning {
            address: running.map_or(self.address.clone(), |r| {
                r.listener.local_addr().to_string()
            }),
        };
        self.running.start(busy, || {
            // Checked first: a server that cannot start leaves the pipeline as it was.
            let addr = resolve(&self.address)?;
            #[cfg(feature = "push")]
            self.targets.check(&self.exported.config)?;
            let connections = self.connections.clone();
            #[cfg(feature = "push")]
            let targets = self.targets.clone();
            // The listener's refusals and evictions, and the pushes, are written with the
            // self-metrics.
            let extra = move || {
                let families = connections.families().into_iter();
                #[cfg(feature = "push")]
                let families = families.chain(targets.families());
                families.collect::<Vec<ExtraFamily>>()
            };
            let (claim, source) = self.exported.claim(extra)?;
            let config = &self.exported.config;
            let settings = listener::Settings {
                allowed: config.allowed.clone(),
                header_read_timeout: config.header_read_timeout,
                #[cfg(feature = "tls")]
                web: config.web.clone(),
            };
            let render: Render = {
                let source = source.clone();
                Arc::new(move |negotiated, gzip, sink| source.stream(negotiated, gzip, sink))
            };
            let listener = Listener::start(addr, settings, render, self.connections.clone())?;
            #[cfg(feature = "push")]
            let pushing = match self.targets.is_empty() {
                true => None,
                false => match push::Pushing::start(&self.targets, source) {
                    Ok(pushing) => Some(pushing),
                    Err(e) => {
                        listener.stop();
                        return Err(e);
                    }
                },
            };
            let serving = Serving {
                listener,
                #[cfg(feature = "push")]
                pushing,
            };
            Ok((claim, serving))
        })?;
        if let Some(address) = self.local_addr() {
            tracing::info!(%address, "porter-metrics: serving");
        }
        Ok(())
    }

    /// Stops serving: closes the socket, waits at most 1 s for scrapes in flight, closes the
    /// connections; then pushes once more to each push target. Idempotent.
    ///
    /// ```
    /// use porter_metrics::MetricsServer;
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    /// server.start()?;
    /// server.stop()?;
    /// server.stop()?; // idempotent
    /// assert!(server.local_addr().is_none());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Push`] if a final push failed (feature `push`, with push targets). The
    /// server is stopped either way.
    pub fn stop(&self) -> Result<(), Error> {
        let Some((claim, serving)) = self.running.stop() else {
            return Ok(());
        };
        let addr = serving.listener.local_addr();
        serving.listener.stop();
        #[cfg(feature = "push")]
        let outcome = serving.pushing.map_or(Ok(()), push::Pushing::stop);
        #[cfg(not(feature = "push"))]
        let outcome = Ok(());
        drop(claim);
        tracing::info!(address = %addr, "porter-metrics: stopped serving");
        outcome
    }

    /// The address the server listens on while running.
    ///
    /// ```
    /// use std::io::{Read, Write};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = porter_metrics::MetricsServer::builder().standalone().build("127.0.0.1:0");
    /// server.start()?;
    /// let mut http = std::net::TcpStream::connect(server.local_addr().expect("running"))?;
    /// http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    /// let mut response = String::new();
    /// http.read_to_string(&mut response)?;
    /// assert!(response.contains("porter_metrics_series"));
    /// server.stop()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.with(|serving| serving.listener.local_addr())
    }

    /// A collector recording into what this server exports.
    ///
    /// For a global server this is the global collector ([`PrometheusCollector::new`]).
    ///
    /// ```
    /// use porter_metrics::{Collector, MetricsServer};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    /// server.start()?;
    /// server.collector().increment_counter("jobs_total", &["queue", "a"]);
    /// let text = server.recorder().expect("standalone").render();
    /// assert!(text.contains(r#"jobs_total{queue="a"} 1"#));
    /// server.stop()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn collector(&self) -> PrometheusCollector {
        self.exported.collector()
    }

    /// The recorder of a standalone server, to use with `metrics::with_local_recorder`;
    /// `None` for a global server (its recorder is the global one).
    ///
    /// ```
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = porter_metrics::MetricsServer::builder().standalone().build("127.0.0.1:0");
    /// server.start()?;
    /// let recorder = server.recorder().expect("standalone");
    /// metrics::with_local_recorder(&recorder, || metrics::gauge!("in_flight").set(2.0));
    /// assert!(recorder.render().contains("in_flight 2"));
    /// server.stop()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn recorder(&self) -> Option<LocalRecorder> {
        self.exported.recorder()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Parses `address`; `":PORT"` means every interface, as in Go.
fn resolve(address: &str) -> Result<SocketAddr, Error> {
    let invalid = |source| Error::InvalidAddress {
        address: address.to_owned(),
        source,
    };
    let trimmed = address.trim();
    let candidate = match trimmed.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => trimmed.to_owned(),
    };
    candidate
        .to_socket_addrs()
        .map_err(invalid)?
        .next()
        .ok_or_else(|| {
            invalid(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "it resolves to no address",
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn addresses_are_parsed_like_go_and_rust() {
        let port = |a: &str| resolve(a).map(|a| a.to_string()).ok();
        assert_eq!(port(":9090").as_deref(), Some("0.0.0.0:9090"));
        assert_eq!(port("127.0.0.1:0").as_deref(), Some("127.0.0.1:0"));
        assert_eq!(port("[::1]:80").as_deref(), Some("[::1]:80"));
        for bad in ["", "127.0.0.1", "nonsense", "127.0.0.1:99999", ":x"] {
            assert!(resolve(bad).is_err(), "{bad:?}");
        }
    }
}
