//! The metrics server: our listener ([`crate::listener`]) or push loop ([`crate::push`]) over a
//! pipeline, started and stopped on demand.
//!
//! Lifecycle rules:
//!
//! * [`start`](MetricsServer::start) binds and returns once the socket listens; it does not
//!   block and works inside or outside a tokio runtime (the listener runs on a thread of its
//!   own). A bad address or a port in use is an `Err` naming the address. Port 0 picks a
//!   free port; [`local_addr`](MetricsServer::local_addr) tells which.
//! * A global server (the default) installs porter-metrics as the `metrics` global recorder
//!   if nothing did yet, and exports it: the collector, the macros and the self-metrics all
//!   land in one scrape.
//! * [`stop`](MetricsServer::stop) is idempotent and `Ok` before `start`. It closes the
//!   listening socket (the port is free when it returns), lets scrapes in flight finish for
//!   at most [`SHUTDOWN_GRACE`](crate::listener::SHUTDOWN_GRACE) (1 s), then closes every
//!   connection. Recorded values stay in the pipeline.
//! * `start` after `stop` serves again, every value kept.
//! * Dropping a running server stops it.
//! * One server at a time exports a pipeline: a second one started while the first runs
//!   gets [`Error::AlreadyExported`]. The exporter's settings (buckets, global labels, idle
//!   timeout, limits) are those of the first server that started on the pipeline.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};

use crate::builder::Config;
use crate::listener::{Listener, Render};
use crate::pipeline::{self, Pipeline};
use crate::{Builder, Error, LocalRecorder, PrometheusCollector};

/// Serves the text exposition over HTTP; see the module documentation for the lifecycle.
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
    target: Target,
    config: Config,
    /// The pipeline of a standalone server; `None` for the global one.
    own: Option<Arc<Pipeline>>,
    state: Mutex<Option<Running>>,
}

/// What the server does with the exposition.
#[derive(Clone, Debug)]
enum Target {
    /// Serve it on this address.
    Listen(String),
    /// Push it to a Pushgateway.
    #[cfg(feature = "push")]
    Push(crate::push::PushTarget),
}

struct Running {
    pipeline: Arc<Pipeline>,
    exporting: Exporting,
}

enum Exporting {
    Listening(Listener),
    #[cfg(feature = "push")]
    Pushing(crate::push::Pushing),
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("target", &self.target)
            .field("local_addr", &self.local_addr())
            .field("standalone", &self.own.is_some())
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
        Self::with_target(Target::Listen(address.to_owned()), config)
    }

    #[cfg(feature = "push")]
    pub(crate) fn pushing(push: crate::push::PushTarget, config: Config) -> Self {
        Self::with_target(Target::Push(push), config)
    }

    fn with_target(target: Target, config: Config) -> Self {
        let own = config.standalone.then(|| Pipeline::new(config.limits));
        Self {
            target,
            config,
            own,
            state: Mutex::new(None),
        }
    }

    /// Binds the address and starts serving (or starts pushing); returns once the socket
    /// listens. After [`stop`](Self::stop), starts again with every value kept.
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
    /// [`Error::InvalidAddress`], [`Error::Bind`] (port in use, permission), [`Error::AlreadyRunning`],
    /// [`Error::ForeignRecorder`] (a global server when another global recorder is
    /// installed), [`Error::AlreadyExported`] (another server exports the same pipeline right
    /// now), [`Error::Config`] (push mode without usable TLS roots), [`Error::Runtime`].
    pub fn start(&self) -> Result<(), Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = &*state {
            return Err(Error::AlreadyRunning {
                address: running.label(),
            });
        }
        let pipeline = match &self.own {
            Some(own) => own.clone(),
            None => pipeline::global()?.clone(),
        };
        if !pipeline.claim_export() {
            return Err(Error::AlreadyExported);
        }
        let exporting = match self.export(&pipeline) {
            Ok(exporting) => exporting,
            Err(e) => {
                pipeline.release_export();
                return Err(e);
            }
        };
        let running = Running {
            pipeline,
            exporting,
        };
        tracing::info!(target = %running.label(), "porter-metrics: exporting");
        *state = Some(running);
        Ok(())
    }

    /// Binds the pipeline to the exporter (once in its life), then listens or pushes.
    fn export(&self, pipeline: &Arc<Pipeline>) -> Result<Exporting, Error> {
        // Checked first: a server that cannot start leaves the pipeline as it was.
        let addr = match &self.target {
            Target::Listen(address) => resolve(address)?,
            #[cfg(feature = "push")]
            Target::Push(_) => {
                crate::push::prepare()?;
                SocketAddr::from(([0, 0, 0, 0], 0)) // unused
            }
        };
        if !pipeline.is_bound() {
            pipeline.bind(self.config.exporter()?.build_recorder(), &self.config)?;
        }
        let render: Render = {
            let pipeline = pipeline.clone();
            Arc::new(move || pipeline.render())
        };
        Ok(match &self.target {
            Target::Listen(_) => {
                Exporting::Listening(Listener::start(addr, self.config.listener(), render)?)
            }
            #[cfg(feature = "push")]
            Target::Push(push) => {
                Exporting::Pushing(crate::push::Pushing::start(push.clone(), render)?)
            }
        })
    }

    /// Stops serving: closes the socket, waits at most 1 s for scrapes in flight, closes the
    /// connections. In push mode, pushes the final values first.
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
    /// [`Error::Push`] if the final push failed (push mode only). The server is stopped
    /// either way.
    pub fn stop(&self) -> Result<(), Error> {
        let running = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(running) = running else {
            return Ok(());
        };
        let label = running.label();
        let outcome = match running.exporting {
            Exporting::Listening(listener) => {
                listener.stop();
                Ok(())
            }
            #[cfg(feature = "push")]
            Exporting::Pushing(pushing) => pushing.stop(),
        };
        running.pipeline.release_export();
        tracing::info!(target = %label, "porter-metrics: stopped exporting");
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
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(Running {
                exporting: Exporting::Listening(listener),
                ..
            }) => Some(listener.local_addr()),
            _ => None,
        }
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
        match &self.own {
            Some(own) => PrometheusCollector::for_pipeline(own.clone()),
            None => PrometheusCollector::new(),
        }
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
        self.own.clone().map(LocalRecorder::from_pipeline)
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl Running {
    /// The address or endpoint, for messages.
    fn label(&self) -> String {
        match &self.exporting {
            Exporting::Listening(listener) => listener.local_addr().to_string(),
            #[cfg(feature = "push")]
            Exporting::Pushing(pushing) => pushing.endpoint().to_owned(),
        }
    }
}

/// Parses `address`; `":PORT"` means every interface, as in Go.
fn resolve(address: &str) -> Result<SocketAddr, Error> {
    let invalid = |reason: String| Error::InvalidAddress {
        address: address.to_owned(),
        reason,
    };
    let trimmed = address.trim();
    let candidate = match trimmed.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => trimmed.to_owned(),
    };
    candidate
        .to_socket_addrs()
        .map_err(|e| invalid(e.to_string()))?
        .next()
        .ok_or_else(|| invalid("it resolves to no address".into()))
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn addresses_are_parsed_like_go_and_rust() {
        assert_eq!(resolve(":9090").unwrap().to_string(), "0.0.0.0:9090");
        assert_eq!(resolve("127.0.0.1:0").unwrap().port(), 0);
        assert_eq!(resolve("[::1]:80").unwrap().to_string(), "[::1]:80");
        for bad in ["", "127.0.0.1", "nonsense", "127.0.0.1:99999", ":x"] {
            assert!(resolve(bad).is_err(), "{bad:?}");
        }
    }
}
