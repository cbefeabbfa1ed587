//! [`Builder`]: one way to configure a server, a pusher or a local recorder.
//!
//! Everything is checked when set, so a `Builder` that was built without error always
//! starts: buckets must be finite (they are sorted and de-duplicated), label keys valid and
//! not reserved, allowlist entries valid addresses or CIDR networks.

use std::time::Duration;

use crate::config::{self, Config};
use crate::store::Limits;
use crate::{Error, LocalRecorder, Matcher, MetricsServer, NativeHistograms};

/// Configures a [`MetricsServer`] or a [`LocalRecorder`].
///
/// ```
/// use std::time::Duration;
/// use porter_metrics::{Builder, Matcher};
///
/// # fn main() -> Result<(), porter_metrics::Error> {
/// let server = Builder::new()
///     .buckets(&[0.01, 0.1, 1.0])?
///     .buckets_for_metric(Matcher::Suffix("_bytes".into()), &[1e3, 1e6, 1e9])?
///     .idle_timeout(Duration::from_secs(300))
///     .global_label("service", "flight-sql")?
///     .allow("127.0.0.1")?
///     .build("127.0.0.1:0");
/// # let _ = server;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Builder {
    /// Also set by `Builder::web_config` (`src/web_config/`, feature `tls`).
    pub(crate) config: Config,
}

impl Builder {
    /// Default settings: Prometheus' default buckets, no idle expiry, default [`crate::Limits`].
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Builder, Collector};
    ///
    /// let capture = Capture::with_recorder(Builder::new().build_local());
    /// capture.collector().record_histogram("latency_seconds", 0.2, &[]);
    /// let latency = capture.exposition().unwrap().histogram("latency_seconds", &[]).unwrap();
    /// assert_eq!((latency.bucket(0.1), latency.bucket(0.25)), (Some(0), Some(1)));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Buckets (upper bounds) for every histogram without a per-metric override.
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Builder, Collector};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let recorder = Builder::new().buckets(&[1.0, 0.1, 1.0])?.build_local();
    /// let capture = Capture::with_recorder(recorder);
    /// capture.collector().record_histogram("latency_seconds", 0.5, &[]);
    /// let latency = capture.exposition().unwrap().histogram("latency_seconds", &[]).unwrap();
    /// // sorted and deduplicated:
    /// assert_eq!(latency.buckets, [(0.1, 0), (1.0, 1), (f64::INFINITY, 1)]);
    /// assert!(Builder::new().buckets(&[f64::NAN]).is_err());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidBuckets`] if `values` is empty or holds NaN or an infinity (`+Inf` is
    /// implicit).
    pub fn buckets(mut self, values: &[f64]) -> Result<Self, Error> {
        self.config.buckets = config::buckets(values)?;
        Ok(self)
    }

    /// Buckets for the histograms whose name `matcher` matches (full name first, then prefix,
    /// then suffix).
    ///
    /// ```
    /// use porter_metrics::{Builder, Collector, Matcher};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let recorder = Builder::new()
    ///     .buckets_for_metric(Matcher::Suffix("_bytes".into()), &[1e3, 1e6])?
    ///     .build_local();
    /// recorder.collector().record_histogram("response_bytes", 512.0, &[]);
    /// let text = recorder.render();
    /// assert!(text.contains(r#"response_bytes_bucket{le="1000"} 1"#));
    /// assert!(text.contains(r#"response_bytes_bucket{le="1000000"} 1"#));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidBuckets`] as for [`buckets`](Self::buckets).
    pub fn buckets_for_metric(mut self, matcher: Matcher, values: &[f64]) -> Result<Self, Error> {
        let buckets = config::buckets(values)?;
        self.config.bucket_overrides.push((matcher, buckets));
        Ok(self)
    }

    /// Makes every histogram native as well (sparse exponential buckets, as client_golang's
    /// `HistogramOpts` sets them), beside its classic buckets. Protobuf scrapes carry both in
    /// one message; the text formats carry the classic buckets, so a Prometheus without
    /// native histograms loses nothing.
    ///
    /// ```
    /// use porter_metrics::{Builder, NativeHistograms};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = Builder::new()
    ///     .native_histograms(NativeHistograms::default().with_max_buckets(100))?
    ///     .build("127.0.0.1:0");
    /// # let _ = server;
    /// assert!(Builder::new().native_histograms(NativeHistograms::default().with_bucket_factor(1.0)).is_err());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidNativeHistograms`] unless the factor is finite and above 1, the zero
    /// threshold finite and at least 0, and `max_buckets` at least 1.
    pub fn native_histograms(mut self, settings: NativeHistograms) -> Result<Self, Error> {
        self.config.native = Some(config::native(settings)?);
        Ok(self)
    }

    /// Makes the histograms `matcher` matches native as well (see
    /// [`native_histograms`](Self::native_histograms)); a full match wins over a prefix,
    /// and a prefix over a suffix.
    ///
    /// ```
    /// use porter_metrics::{Builder, Matcher, NativeHistograms};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let builder = Builder::new()
    ///     .native_histograms_for_metric(Matcher::Suffix("_seconds".into()), NativeHistograms::default())?;
    /// # let _ = builder;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidNativeHistograms`] as for [`native_histograms`](Self::native_histograms).
    pub fn native_histograms_for_metric(
        mut self,
        matcher: Matcher,
        settings: NativeHistograms,
    ) -> Result<Self, Error> {
        let settings = config::native(settings)?;
        self.config.native_overrides.push((matcher, settings));
        Ok(self)
    }

    /// Removes series not updated for `timeout` from the exposition. Off by default (and a
    /// zero timeout turns it off).
    ///
    /// An idle series is hidden; recorded again, through any handle or call, it comes back
    /// with its values. Idle for another `timeout`, it is reclaimed with its values; a later
    /// write (a kept handle's too) starts it again from zero, as a new series. Nothing
    /// written is lost to expiry: a write that meets the reclaiming of its series goes to
    /// the live series (proven by `tests/model.rs`).
    ///
    /// The timeout is at least [`MIN_IDLE_TIMEOUT`](crate::MIN_IDLE_TIMEOUT) (100 ms): a
    /// shorter one is raised to it. Upkeep then runs at least twice per timeout (every
    /// eighth of it, between 50 ms and [`upkeep_interval`](Self::upkeep_interval)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use porter_metrics::{Builder, Collector};
    ///
    /// let recorder = Builder::new().idle_timeout(Duration::from_millis(100)).build_local();
    /// recorder.collector().record_gauge("temperature", 21.0, &[]);
    /// assert!(recorder.render().contains("temperature 21"));
    /// // Idle for the timeout, it is removed (at the next upkeep).
    /// let deadline = std::time::Instant::now() + Duration::from_secs(10);
    /// while recorder.render().contains("temperature") {
    ///     assert!(std::time::Instant::now() < deadline, "not removed");
    ///     std::thread::sleep(Duration::from_millis(5));
    /// }
    /// recorder.collector().record_gauge("temperature", 22.0, &[]); // back
    /// assert!(recorder.render().contains("temperature 22"));
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout)
            .filter(|t| !t.is_zero())
            .map(|t| t.max(crate::MIN_IDLE_TIMEOUT));
        self
    }

    /// Adds a label to every series (a label of the same key on the series wins).
    ///
    /// ```
    /// use porter_metrics::{Builder, Collector};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let recorder = Builder::new().global_label("service", "checkout")?.build_local();
    /// recorder.collector().record_gauge("queue_size", 3.0, &[]);
    /// assert!(recorder.render().contains(r#"queue_size{service="checkout"} 3"#));
    /// assert!(Builder::new().global_label("le", "x").is_err()); // reserved
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidLabelKey`] if `key` is not a valid, unreserved label key.
    pub fn global_label(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, Error> {
        let key = key.into();
        config::label_key(&key)?;
        self.config.global_labels.retain(|(k, _)| *k != key);
        self.config.global_labels.push((key, value.into()));
        Ok(self)
    }

    /// Allows scrapes from this IP address or CIDR network only (repeat to allow several);
    /// other clients get `403 Forbidden` as soon as they connect, and never take one of the
    /// listener's connection slots. Everyone is allowed by default.
    ///
    /// ```
    /// use porter_metrics::{Builder, Error};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let builder = Builder::new().allow("10.0.0.0/8")?.allow("127.0.0.1")?.allow("::1")?;
    /// let refused = Builder::new().allow("prometheus.internal");
    /// assert!(matches!(refused, Err(Error::InvalidNetwork { .. })));
    /// # let _ = builder;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidNetwork`] if `address` is neither an IP address nor a network.
    pub fn allow(mut self, address: &str) -> Result<Self, Error> {
        self.config.allowed.push(config::network(address)?);
        Ok(self)
    }

    /// How long a client has to send a complete request head (default 10 s); a connection
    /// that sends none in time, idle keep-alive connections included, is closed.
    ///
    /// ```
    /// use std::time::Duration;
    /// let server = porter_metrics::Builder::new()
    ///     .header_read_timeout(Duration::from_secs(5))
    ///     .build("127.0.0.1:0");
    /// # let _ = server;
    /// ```
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.config.header_read_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Limits on metric names and series; see [`crate::Limits`].
    ///
    /// ```
    /// use porter_metrics::self_metrics::OVERFLOW_SAMPLES;
    /// use porter_metrics::{testing::Capture, Builder, Collector, Limits};
    ///
    /// let limits = Limits::default().with_series_per_metric(1);
    /// let capture = Capture::with_recorder(Builder::new().limits(limits).build_local());
    /// capture.collector().increment_counter("hits_total", &["user", "1"]);
    /// capture.collector().increment_counter("hits_total", &["user", "2"]); // past the limit
    /// let scrape = capture.exposition().unwrap();
    /// assert_eq!(scrape.value("hits_total", &["otel_metric_overflow", "true"]), Some(1.0));
    /// assert_eq!(scrape.value(OVERFLOW_SAMPLES, &["metric", "hits_total"]), Some(1.0));
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// How often upkeep runs (default 5 s): it expires idle series (at least every eighth
    /// of the idle timeout), and the runtime metrics are read as often. Without either,
    /// there is no upkeep at all: histograms need none, and process metrics are read when
    /// a scrape or a push reads the pipeline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use porter_metrics::{Builder, Collector};
    ///
    /// let recorder = Builder::new().upkeep_interval(Duration::from_secs(1)).build_local();
    /// recorder.collector().record_histogram("latency_seconds", 0.2, &[]);
    /// assert!(recorder.render().contains("latency_seconds_count 1")); // at once
    /// ```
    pub fn upkeep_interval(mut self, interval: Duration) -> Self {
        self.config.upkeep = interval.max(Duration::from_millis(10));
        self
    }

    /// Writes a `_created` sample after each counter and histogram in OpenMetrics scrapes:
    /// when the series started (was created, or came back after idle expiry as a new
    /// series), in seconds. Off by default, as in client_golang; protobuf scrapes always
    /// carry it (`created_timestamp`), which Prometheus 3 reads with
    /// `--enable-feature=created-timestamp-zero-ingestion`.
    ///
    /// ```
    /// let server = porter_metrics::Builder::new().created_timestamps().build("127.0.0.1:0");
    /// # let _ = server;
    /// ```
    pub fn created_timestamps(mut self) -> Self {
        self.config.created_timestamps = true;
        self
    }

    /// Makes the server export its own pipeline instead of installing the global recorder:
    /// record into it through [`MetricsServer::collector`] and [`MetricsServer::recorder`].
    /// Several standalone servers can run in one process (parallel tests, for one).
    ///
    /// ```
    /// use porter_metrics::{Builder, Collector};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let (a, b) = (Builder::new().standalone(), Builder::new().standalone());
    /// let (a, b) = (a.build("127.0.0.1:0"), b.build("127.0.0.1:0"));
    /// a.start()?;
    /// b.start()?; // both run: each exports a pipeline of its own
    /// a.collector().increment_counter("jobs_total", &[]);
    /// assert!(a.recorder().unwrap().render().contains("jobs_total 1"));
    /// assert!(!b.recorder().unwrap().render().contains("jobs_total"));
    /// a.stop()?;
    /// b.stop()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn standalone(mut self) -> Self {
        self.config.standalone = true;
        self
    }

    /// Exports the process metrics client_golang exports by default
    /// (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
    /// `process_max_fds`, `process_start_time_seconds`, `process_virtual_memory_bytes`,
    /// `process_virtual_memory_max_bytes`) and `process_threads`, read at each scrape or
    /// push (feature `process`; the table is in the guide).
    ///
    /// ```
    /// let recorder = porter_metrics::Builder::new().process_metrics().build_local();
    /// assert!(recorder.render().contains("process_resident_memory_bytes"));
    /// ```
    #[cfg(feature = "process")]
    pub fn process_metrics(mut self) -> Self {
        self.config.process = true;
        self
    }

    /// Exports the metrics of the tokio runtime `handle` belongs to (feature `runtime`):
    /// `tokio_workers`, `tokio_live_tasks`, `tokio_global_queue_depth`,
    /// `tokio_busy_seconds_total`, `tokio_busy_ratio`, the busiest and idlest worker's busy
    /// seconds and the park counts, as the tokio team's `tokio-metrics` measures them on
    /// stable tokio (the table is in the guide).
    ///
    /// A thread of the pipeline's reads the runtime once when the pipeline is bound and
    /// then every [`upkeep_interval`](Self::upkeep_interval) (5 s by default): the runtime
    /// runs no task of ours, and nothing is added to its request path. One runtime per
    /// pipeline (the last call wins).
    ///
    /// ```
    /// use porter_metrics::Builder;
    ///
    /// let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    /// let recorder = Builder::new().runtime_metrics(runtime.handle()).build_local();
    /// assert!(recorder.render().contains("tokio_workers 2"));
    /// ```
    #[cfg(feature = "runtime")]
    pub fn runtime_metrics(mut self, handle: &tokio::runtime::Handle) -> Self {
        self.config.runtime = Some(crate::runtime::RuntimeSettings {
            handle: handle.clone(),
        });
        self
    }

    /// A server that will listen on `address` (`"127.0.0.1:9090"`, `"[::1]:0"`,
    /// `"localhost:9090"`, or `":9090"` for every interface, as in Go).
    ///
    /// ```
    /// use porter_metrics::{Builder, Error};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let server = Builder::new().standalone().build("127.0.0.1:0");
    /// server.start()?;
    /// assert_ne!(server.local_addr().unwrap().port(), 0); // port 0: a free port was picked
    /// server.stop()?;
    /// let bad = Builder::new().standalone().build("no-port");
    /// assert!(matches!(bad.start(), Err(Error::InvalidAddress { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self, address: &str) -> MetricsServer {
        MetricsServer::from_config(address, self.config)
    }

    /// A recorder the caller holds, with no listener and no global install; see
    /// [`LocalRecorder`]. It pushes nothing: push targets are for [`build`](Self::build)
    /// and `build_pusher` (a builder with targets logs a warning here, once per process).
    ///
    /// ```
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let recorder = porter_metrics::Builder::new().global_label("env", "test")?.build_local();
    /// metrics::with_local_recorder(&recorder, || metrics::counter!("events_total").increment(2));
    /// assert!(recorder.render().contains(r#"events_total{env="test"} 2"#));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_local(self) -> LocalRecorder {
        #[cfg(feature = "push")]
        if !self.config.push.targets.is_empty() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!("porter-metrics: a local recorder pushes nothing; its builder's push targets are ignored (use build or build_pusher)");
            });
        }
        LocalRecorder::from_config(self.config)
    }
}
