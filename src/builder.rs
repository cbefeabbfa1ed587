//! Configuration: one [`Builder`] for a server or a local recorder.
//!
//! Everything is checked when set, so a `Builder` that was built without error always
//! starts: buckets must be finite (they are sorted and de-duplicated), label keys valid and
//! not reserved, allowlist entries valid addresses or CIDR networks.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;

use ipnet::IpNet;

use crate::families::Limits;
use crate::listener;
use crate::{Error, LocalRecorder, MetricsServer};

/// Prometheus' default histogram buckets, in seconds.
///
/// ```
/// use porter_metrics::{testing::Capture, Collector, DEFAULT_BUCKETS};
///
/// let capture = Capture::new();
/// capture.collector().record_histogram("latency_seconds", 0.2, &[]);
/// let latency = capture.exposition().unwrap().histogram("latency_seconds", &[]).unwrap();
/// assert_eq!(latency.buckets.len(), DEFAULT_BUCKETS.len() + 1); // and +Inf
/// assert_eq!(latency.bucket(DEFAULT_BUCKETS[5]), Some(1)); // 0.25
/// ```
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram observations are drained into buckets when nobody scrapes.
const DEFAULT_UPKEEP: Duration = Duration::from_secs(5);

/// How long a client has to send a complete request head.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Validated settings, shared by the server and local recorders.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) buckets: Vec<f64>,
    pub(crate) bucket_overrides: Vec<(Matcher, Vec<f64>)>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) global_labels: Vec<(String, String)>,
    pub(crate) allowed: Vec<IpNet>,
    pub(crate) header_read_timeout: Duration,
    pub(crate) limits: Limits,
    pub(crate) upkeep: Duration,
    pub(crate) standalone: bool,
    #[cfg_attr(not(feature = "process"), allow(dead_code))]
    pub(crate) process: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            buckets: DEFAULT_BUCKETS.to_vec(),
            bucket_overrides: Vec::new(),
            idle_timeout: None,
            global_labels: Vec::new(),
            allowed: Vec::new(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            limits: Limits::default(),
            upkeep: DEFAULT_UPKEEP,
            standalone: false,
            process: false,
        }
    }
}

impl Config {
    /// How often the upkeep thread runs: often enough to expire idle series on time.
    pub(crate) fn upkeep_interval(&self) -> Duration {
        match self.idle_timeout {
            Some(idle) => self.upkeep.min(idle / 8).max(Duration::from_millis(50)),
            None => self.upkeep,
        }
    }

    /// The exporter's builder for these settings (listener or not is the caller's choice).
    pub(crate) fn exporter(&self) -> Result<PrometheusBuilder, Error> {
        let config_error =
            |e: metrics_exporter_prometheus::BuildError| Error::Config(e.to_string());
        let mut builder = PrometheusBuilder::new()
            .set_buckets(&self.buckets)
            .map_err(config_error)?
            // Our upkeep thread does this; the exporter's own task only lives with its runtime.
            .upkeep_timeout(Duration::from_secs(24 * 60 * 60));
        for (matcher, buckets) in &self.bucket_overrides {
            builder = builder
                .set_buckets_for_metric(matcher.clone(), buckets)
                .map_err(config_error)?;
        }
        if let Some(idle) = self.idle_timeout {
            builder = builder.idle_timeout(MetricKindMask::ALL, Some(idle));
        }
        for (key, value) in &self.global_labels {
            // Printed exactly, as label values recorded through the layer are.
            builder = builder.add_global_label(key, crate::policy::escape_value(value));
        }
        Ok(builder)
    }

    /// The listener's settings.
    pub(crate) fn listener(&self) -> listener::Settings {
        listener::Settings {
            allowed: self.allowed.clone(),
            header_read_timeout: self.header_read_timeout,
        }
    }
}

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
    config: Config,
}

fn check_buckets(values: &[f64]) -> Result<Vec<f64>, Error> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return Err(Error::Config(format!(
            "histogram buckets must be a non-empty list of finite numbers, got {values:?}"
        )));
    }
    let mut buckets = values.to_vec();
    buckets.sort_by(f64::total_cmp);
    buckets.dedup();
    Ok(buckets)
}

fn check_label_key(key: &str) -> Result<(), Error> {
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with("__")
        && key != "le"
        && key != "quantile";
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{key:?} is not a usable label key (it must match [a-zA-Z_][a-zA-Z0-9_]*, not start with __, not be le or quantile)"
        )))
    }
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
    /// [`Error::Config`] if `values` is empty or holds NaN or an infinity (`+Inf` is implicit).
    pub fn buckets(mut self, values: &[f64]) -> Result<Self, Error> {
        self.config.buckets = check_buckets(values)?;
        Ok(self)
    }

    /// Buckets for the histograms whose name `matcher` matches (full name first, then prefix,
    /// then suffix).
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Builder, Collector, Matcher};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let recorder = Builder::new()
    ///     .buckets_for_metric(Matcher::Suffix("_bytes".into()), &[1e3, 1e6])?
    ///     .build_local();
    /// let capture = Capture::with_recorder(recorder);
    /// capture.collector().record_histogram("response_bytes", 512.0, &[]);
    /// let sizes = capture.exposition().unwrap().histogram("response_bytes", &[]).unwrap();
    /// assert_eq!(sizes.buckets, [(1e3, 1), (1e6, 1), (f64::INFINITY, 1)]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] as for [`buckets`](Self::buckets).
    pub fn buckets_for_metric(mut self, matcher: Matcher, values: &[f64]) -> Result<Self, Error> {
        let buckets = check_buckets(values)?;
        self.config.bucket_overrides.push((matcher, buckets));
        Ok(self)
    }

    /// Removes series not updated for `timeout` from the exposition (they come back when
    /// recorded again). Off by default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use porter_metrics::{Builder, Collector};
    ///
    /// let recorder = Builder::new().idle_timeout(Duration::from_millis(50)).build_local();
    /// recorder.collector().record_gauge("temperature", 21.0, &[]);
    /// assert!(recorder.render().contains("temperature 21"));
    /// // Idle for the timeout, it is removed (the exporter checks at each render).
    /// let deadline = std::time::Instant::now() + Duration::from_secs(10);
    /// while recorder.render().contains("temperature") {
    ///     assert!(std::time::Instant::now() < deadline, "not removed");
    ///     std::thread::yield_now();
    /// }
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout).filter(|t| !t.is_zero());
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
    /// [`Error::Config`] if `key` is not a valid, unreserved label key.
    pub fn global_label(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, Error> {
        let key = key.into();
        check_label_key(&key)?;
        self.config.global_labels.retain(|(k, _)| *k != key);
        self.config.global_labels.push((key, value.into()));
        Ok(self)
    }

    /// Allows scrapes from this IP address or CIDR network only (repeat to allow several);
    /// other clients get `403 Forbidden`. Everyone is allowed by default.
    ///
    /// ```
    /// use porter_metrics::{Builder, Error};
    ///
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let builder = Builder::new().allow("10.0.0.0/8")?.allow("127.0.0.1")?.allow("::1")?;
    /// assert!(matches!(Builder::new().allow("prometheus.internal"), Err(Error::Config(_))));
    /// # let _ = builder;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] if `address` is neither an IP address nor a network.
    pub fn allow(mut self, address: &str) -> Result<Self, Error> {
        let trimmed = address.trim();
        // A bare address is a network of one.
        let network = match trimmed.parse::<std::net::IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => trimmed
                .parse::<IpNet>()
                .map_err(|e| Error::Config(format!("allowlist entry {address:?}: {e}")))?,
        };
        self.config.allowed.push(network);
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
    /// let limits = Limits { series_per_metric: 1, ..Limits::default() };
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

    /// How often histogram observations are drained into buckets (default 5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use porter_metrics::{Builder, Collector};
    ///
    /// let recorder = Builder::new().upkeep_interval(Duration::from_secs(1)).build_local();
    /// recorder.collector().record_histogram("latency_seconds", 0.2, &[]);
    /// assert!(recorder.render().contains("latency_seconds_count 1"));
    /// ```
    pub fn upkeep_interval(mut self, interval: Duration) -> Self {
        self.config.upkeep = interval.max(Duration::from_millis(10));
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
    /// `process_threads`), refreshed at every upkeep (feature `process`).
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

    /// A server that pushes to a Pushgateway every `interval` instead of listening, and once
    /// more at `stop()` (feature `push`). `endpoint` is the group URL, such as
    /// `http://127.0.0.1:9091/metrics/job/nightly_import`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let pusher = porter_metrics::Builder::new()
    ///     .standalone()
    ///     .build_push("http://127.0.0.1:9091/metrics/job/nightly_import", Duration::from_secs(10))?;
    /// # let _ = pusher;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] if `endpoint` is not an http(s) URL; [`Error::Config`] if
    /// `interval` is zero.
    #[cfg(feature = "push")]
    pub fn build_push(self, endpoint: &str, interval: Duration) -> Result<MetricsServer, Error> {
        let target = crate::push::PushTarget::new(endpoint, interval)?;
        Ok(MetricsServer::pushing(target, self.config))
    }

    /// A recorder the caller holds, with no listener and no global install; see
    /// [`LocalRecorder`].
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
        LocalRecorder::from_config(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_checked_sorted_and_deduplicated() {
        assert_eq!(check_buckets(&[1.0, 0.5, 1.0]).unwrap(), [0.5, 1.0]);
        assert!(check_buckets(&[]).is_err());
        assert!(check_buckets(&[f64::NAN]).is_err());
        assert!(check_buckets(&[f64::INFINITY]).is_err());
    }

    #[test]
    fn global_label_keys_are_checked() {
        assert!(Builder::new().global_label("service", "x").is_ok());
        for bad in ["", "__x", "le", "a-b", "9a"] {
            assert!(Builder::new().global_label(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn allowlist_entries_are_checked() {
        assert!(Builder::new().allow("10.0.0.0/8").is_ok());
        assert!(Builder::new().allow("127.0.0.1").is_ok());
        assert!(Builder::new().allow("::1").is_ok());
        assert!(Builder::new().allow("not-an-ip").is_err());
    }
}
