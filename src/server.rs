//! The metrics server: the exporter's HTTP listener, started and stopped on demand.
//!
//! Lifecycle rules:
//!
//! * [`start`](MetricsServer::start) binds and returns once the socket listens; it does not
//!   block and works inside or outside a tokio runtime (the listener runs on a thread of its
//!   own with a single-threaded runtime). A bad address or a port in use is an `Err` naming
//!   the address. Port 0 picks a free port; [`local_addr`](MetricsServer::local_addr) tells it.
//! * A global server (the default) installs porter-metrics as the `metrics` global recorder
//!   if nothing did yet, and exports it: the collector, the macros and the self-metrics all
//!   land in one scrape.
//! * [`stop`](MetricsServer::stop) is idempotent and `Ok` before `start`. It closes the
//!   listening socket before returning (the address can be bound again at once) and ends
//!   every connection task with the runtime. Recorded values stay in the pipeline, whose
//!   upkeep thread keeps running while it exists.
//! * A stopped server does not serve again: `start` after `stop` is [`Error::Stopped`]. The
//!   exporter's listener is built together with the recorder that holds the values, so a
//!   listener cannot be re-attached to them; keep the server for the life of the process.
//! * Dropping a running server stops it.
//! * Every path answers with the text exposition (`GET /metrics`), except `/health`.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tokio::sync::oneshot;

use crate::builder::Config;
use crate::pipeline::{self, Pipeline};
use crate::{Builder, Error, LocalRecorder, PrometheusCollector};

/// How long `stop` waits for in-flight renders before leaving them to finish on their own.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Attempts at finding a free port when asked for port 0.
const PORT_ATTEMPTS: usize = 8;

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
    state: Mutex<State>,
}

enum State {
    Idle,
    Running(Running),
    Stopped,
}

/// What the exporter does with the exposition.
#[derive(Clone, Debug)]
enum Target {
    /// Serve it on this address.
    Listen(String),
    /// Push it to a Pushgateway.
    #[cfg(feature = "push")]
    Push(crate::push::PushTarget),
}

struct Running {
    /// The bound address (none when pushing).
    addr: Option<SocketAddr>,
    /// The address or endpoint, for messages.
    label: String,
    stop: oneshot::Sender<()>,
    /// The outcome of the final push (always `Ok` when listening).
    done: mpsc::Receiver<Result<(), String>>,
    thread: JoinHandle<()>,
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
            state: Mutex::new(State::Idle),
        }
    }

    /// Binds the address and starts serving (or starts pushing); returns once the socket
    /// listens.
    ///
    /// ```
    /// use porter_metrics::{Error, MetricsServer};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    /// server.start()?; // listening when it returns
    /// assert!(server.local_addr().is_some());
    /// assert!(matches!(server.start(), Err(Error::AlreadyRunning { .. })));
    /// server.stop()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidAddress`], [`Error::Bind`] (port in use, permission), [`Error::AlreadyRunning`],
    /// [`Error::Stopped`], [`Error::ForeignRecorder`] (a global server when another global
    /// recorder is installed), [`Error::AlreadyExported`] (another server exports the same
    /// pipeline), [`Error::Config`] (push mode without usable TLS roots), [`Error::Runtime`].
    pub fn start(&self) -> Result<(), Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &*state {
            State::Idle => {}
            State::Running(running) => {
                return Err(Error::AlreadyRunning {
                    address: running.label.clone(),
                })
            }
            State::Stopped => return Err(Error::Stopped),
        }
        let pipeline = match &self.own {
            Some(own) => own.clone(),
            None => pipeline::global()?.clone(),
        };
        if pipeline.is_bound() {
            return Err(Error::AlreadyExported);
        }
        let (running, recorder) = match &self.target {
            Target::Listen(address) => self.listen(resolve(address)?)?,
            #[cfg(feature = "push")]
            Target::Push(push) => {
                crate::push::prepare()?;
                let uri = push.uri()?;
                let exporter = self
                    .config
                    .exporter()?
                    .with_push_gateway(&push.endpoint, push.interval, None, None, false)
                    .map_err(|e| Error::Config(e.to_string()))?;
                spawn_exporter(exporter, None, push.endpoint.clone(), Some(uri))?
            }
        };
        if let Err(e) = pipeline.bind(recorder, &self.config) {
            let _ = running.shut_down();
            return Err(e);
        }
        tracing::info!(target = %running.label, "porter-metrics: exporting");
        *state = State::Running(running);
        Ok(())
    }

    /// Binds `requested` (trying again on another free port if port 0 was asked and the one
    /// found was taken in between) and starts the listener's thread.
    fn listen(&self, requested: SocketAddr) -> Result<(Running, PrometheusRecorder), Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Binding here first gives the caller the operating system's error, and the port
            // chosen for port 0, which the exporter does not report.
            let addr = TcpListener::bind(requested)
                .and_then(|probe| probe.local_addr())
                .map_err(|source| Error::Bind {
                    address: requested.to_string(),
                    source,
                })?;
            let exporter = self.config.exporter()?.with_http_listener(addr);
            match spawn_exporter(exporter, Some(addr), addr.to_string(), None) {
                Err(Error::Bind { .. }) if requested.port() == 0 && attempt < PORT_ATTEMPTS => {}
                other => return other,
            }
        }
    }

    /// Stops serving: closes the socket and ends the listener's connections. In push mode,
    /// pushes the final values first.
    ///
    /// ```
    /// use porter_metrics::{Error, MetricsServer};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    /// server.start()?;
    /// server.stop()?;
    /// server.stop()?; // idempotent
    /// assert!(server.local_addr().is_none());
    /// assert!(matches!(server.start(), Err(Error::Stopped))); // does not serve again
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Push`] if the final push failed (push mode only). The server is stopped
    /// either way.
    pub fn stop(&self) -> Result<(), Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let State::Running(_) = &*state {
            if let State::Running(running) = std::mem::replace(&mut *state, State::Stopped) {
                let label = running.label.clone();
                let outcome = running.shut_down();
                tracing::info!(target = %label, "porter-metrics: stopped exporting");
                return outcome.map_err(Error::Push);
            }
        }
        Ok(())
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
            State::Running(running) => running.addr,
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
    /// Stops the exporter's thread; returns the outcome of the final push, if any.
    fn shut_down(self) -> Result<(), String> {
        let _ = self.stop.send(());
        let outcome = self
            .done
            .recv()
            .unwrap_or_else(|_| Err("the exporter thread ended unexpectedly".into()));
        let _ = self.thread.join();
        outcome
    }
}

/// Starts the exporter's thread with its own single-threaded runtime; returns once the
/// exporter is built (for a listener: bound to `addr`).
fn spawn_exporter(
    exporter: PrometheusBuilder,
    addr: Option<SocketAddr>,
    label: String,
    final_push: Option<FinalPush>,
) -> Result<(Running, PrometheusRecorder), Error> {
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread_label = label.clone();
    let thread = thread::Builder::new()
        .name("porter-metrics-exporter".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Runtime(e)));
                    return;
                }
            };
            let built = {
                let _guard = runtime.enter();
                exporter.build()
            };
            let (recorder, serve) = match built {
                Ok(built) => built,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Bind {
                        address: thread_label,
                        source: std::io::Error::other(e.to_string()),
                    }));
                    return;
                }
            };
            let handle = recorder.handle();
            runtime.spawn(serve);
            let _ = ready_tx.send(Ok(recorder));
            runtime.block_on(async {
                let _ = stop_rx.await;
            });
            let outcome = match final_push {
                #[cfg(feature = "push")]
                Some(uri) => runtime.block_on(crate::push::push_once(uri, handle.render())),
                #[cfg(not(feature = "push"))]
                Some(never) => match never {},
                None => {
                    let _ = handle;
                    Ok(())
                }
            };
            // Drops the listening socket and every connection task.
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
            let _ = done_tx.send(outcome);
        })
        .map_err(Error::Runtime)?;
    match ready_rx.recv() {
        Ok(Ok(recorder)) => Ok((
            Running {
                addr,
                label,
                stop: stop_tx,
                done: done_rx,
                thread,
            },
            recorder,
        )),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(Error::Runtime(std::io::Error::other(
                "the exporter thread ended before it was ready",
            )))
        }
    }
}

/// Where the final push goes.
#[cfg(feature = "push")]
type FinalPush = hyper::Uri;
/// Push mode is compiled out: there is never a final push.
#[cfg(not(feature = "push"))]
type FinalPush = std::convert::Infallible;

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
