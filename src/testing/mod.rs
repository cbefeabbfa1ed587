//! Testing helpers (feature `testing`): capture what code records, and read values back.
//!
//! The Go design's tests read values with client_golang's `testutil.ToFloat64` and
//! `CollectAndCount`. Here, a [`Capture`] records into a pipeline of its own (no global state,
//! so parallel tests do not interfere), through its collector and through the `metrics`
//! macros, and [`Exposition`] parses the text it renders (strictly: a scrape Prometheus
//! would reject is an error) and answers by metric name and label pairs, in any order.
//!
//! ```
//! use porter_metrics::Collector;
//! use porter_metrics::testing::Capture;
//!
//! let capture = Capture::new();
//! let collector = capture.collector();
//! capture.run(|| {
//!     collector.increment_counter("requests_total", &["method", "GET", "code", "200"]);
//!     metrics::counter!("requests_total", "code" => "200", "method" => "GET").increment(1);
//!     collector.record_histogram("latency_seconds", 0.2, &[]);
//! });
//! let scrape = capture.exposition().expect("valid exposition");
//! assert_eq!(scrape.value("requests_total", &["code", "200", "method", "GET"]), Some(2.0));
//! let latency = scrape.histogram("latency_seconds", &[]).unwrap();
//! assert_eq!((latency.count, latency.sum), (1, 0.2));
//! assert_eq!(latency.bucket(0.25), Some(1));
//! assert_eq!(latency.bucket(0.1), Some(0));
//! ```

mod exposition;

use crate::{LocalRecorder, PrometheusCollector};

/// What a push to `target` would send now from `recorder` (feature `push`), in one
/// request whatever its size: the body, compressed as the protocol sends it (gzip for
/// OTLP, snappy for Remote-Write, the Pushgateway's text as is), every exemplar recorded so
/// far included. For benchmarks, and for tests that look at a push without a receiver;
/// [`PushEncoder::bodies`] gives the requests a push sends.
///
/// ```
/// use porter_metrics::{Builder, Collector, PushTarget};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let recorder = Builder::new().build_local();
/// recorder.collector().increment_counter("jobs_total", &[]);
/// let target = PushTarget::pushgateway("http://127.0.0.1:9091/metrics/job/x")?;
/// let body = porter_metrics::testing::push_body(&recorder, &target)?;
/// assert!(String::from_utf8_lossy(&body).contains("jobs_total 1"));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`PushError::Request`](crate::PushError::Request) if the body cannot be compressed.
#[cfg(feature = "push")]
pub fn push_body(
    recorder: &LocalRecorder,
    target: &crate::PushTarget,
) -> Result<Vec<u8>, crate::PushError> {
    PushEncoder::new(recorder, target).body()
}

/// Encodes push after push to one target as a push loop does, its buffers reused from one
/// to the next (feature `push`): [`push_body`] for benchmarks of the steady state.
///
/// ```
/// use porter_metrics::{testing::PushEncoder, Builder, Collector, PushTarget};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let recorder = Builder::new().build_local();
/// let target = PushTarget::pushgateway("http://127.0.0.1:9091/metrics/job/x")?;
/// let mut encoder = PushEncoder::new(&recorder, &target);
/// recorder.collector().increment_counter("jobs_total", &[]);
/// assert!(String::from_utf8_lossy(&encoder.body()?).contains("jobs_total 1"));
/// recorder.collector().increment_counter("jobs_total", &[]);
/// assert!(String::from_utf8_lossy(&encoder.body()?).contains("jobs_total 2"));
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "push")]
pub struct PushEncoder(crate::push::Encoder);

#[cfg(feature = "push")]
impl std::fmt::Debug for PushEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushEncoder").finish_non_exhaustive()
    }
}

#[cfg(feature = "push")]
impl PushEncoder {
    /// An encoder of what `recorder` holds, for `target`'s protocol.
    pub fn new(recorder: &LocalRecorder, target: &crate::PushTarget) -> Self {
        Self(crate::push::Encoder::new(recorder.pipeline(), target))
    }

    /// The next push in one request whatever its size, compressed as [`push_body`] says
    /// (the series' values; stale markers for series idle expiry hid, if any, follow in a
    /// request of their own).
    ///
    /// # Errors
    /// [`PushError::Request`](crate::PushError::Request) if the body cannot be compressed.
    pub fn body(&mut self) -> Result<Vec<u8>, crate::PushError> {
        let mut batching = self.0.batching();
        (batching.samples, batching.bytes) = (usize::MAX, usize::MAX);
        let bodies = self.0.bodies(batching)?;
        Ok(bodies.into_iter().next().unwrap_or_default())
    }

    /// The requests the next push sends, each body compressed, cut as the target says
    /// (`PushTarget::max_request_size`).
    ///
    /// ```
    /// use porter_metrics::{testing::PushEncoder, Builder, Collector, PushTarget};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let recorder = Builder::new().build_local();
    /// for user in ["a", "b", "c"] {
    ///     recorder.collector().increment_counter("logins_total", &["user", user]);
    /// }
    /// let target = PushTarget::otlp("http://127.0.0.1:4318")?.max_request_size(2, 1 << 20)?;
    /// let requests = PushEncoder::new(&recorder, &target).bodies()?;
    /// assert!(requests.len() >= 2); // two points a request, and the self-metrics
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`PushError::Request`](crate::PushError::Request) if a body cannot be compressed.
    pub fn bodies(&mut self) -> Result<Vec<Vec<u8>>, crate::PushError> {
        let batching = self.0.batching();
        self.0.bodies(batching)
    }
}
pub use exposition::{Exposition, Family, HistogramValue, ParseError, Sample};

/// A pipeline of its own for one test; see the module documentation.
///
/// ```
/// use porter_metrics::{testing::Capture, Collector};
///
/// let capture = Capture::new();
/// capture.collector().record_gauge("queue_size", 3.0, &["queue", "default"]);
/// let scrape = capture.exposition().unwrap();
/// assert_eq!(scrape.value("queue_size", &["queue", "default"]), Some(3.0));
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Capture {
    recorder: LocalRecorder,
}

impl Capture {
    /// A capture with default settings.
    ///
    /// ```
    /// use porter_metrics::testing::Capture;
    ///
    /// let (a, b) = (Capture::new(), Capture::new());
    /// a.run(|| metrics::counter!("jobs_total").increment(1));
    /// assert_eq!(a.exposition().unwrap().value("jobs_total", &[]), Some(1.0));
    /// assert_eq!(b.exposition().unwrap().value("jobs_total", &[]), None); // a pipeline of its own
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A capture over a recorder built with other settings.
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Builder};
    /// let capture = Capture::with_recorder(Builder::new().buckets(&[1.0, 2.0]).unwrap().build_local());
    /// # let _ = capture;
    /// ```
    pub fn with_recorder(recorder: LocalRecorder) -> Self {
        Self { recorder }
    }

    /// Runs `f` with this capture as the `metrics` recorder of the current thread, so the
    /// macros record here (a [`PrometheusCollector`] records where it was bound: use
    /// [`collector`](Self::collector)).
    ///
    /// ```
    /// let capture = porter_metrics::testing::Capture::new();
    /// capture.run(|| metrics::gauge!("temperature").set(21.5));
    /// assert_eq!(capture.exposition().unwrap().value("temperature", &[]), Some(21.5));
    /// ```
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// A collector recording into this capture, from any thread.
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Collector};
    ///
    /// let capture = Capture::new();
    /// let collector = capture.collector();
    /// std::thread::spawn(move || collector.increment_counter("jobs_total", &[])).join().unwrap();
    /// assert_eq!(capture.exposition().unwrap().value("jobs_total", &[]), Some(1.0));
    /// ```
    pub fn collector(&self) -> PrometheusCollector {
        self.recorder.collector()
    }

    /// The recorder behind this capture.
    ///
    /// ```
    /// let capture = porter_metrics::testing::Capture::new();
    /// metrics::with_local_recorder(capture.recorder(), || metrics::gauge!("in_flight").set(1.0));
    /// assert!(capture.recorder().render().contains("in_flight 1"));
    /// ```
    pub fn recorder(&self) -> &LocalRecorder {
        &self.recorder
    }

    /// The text exposition as a scrape would get it.
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Collector};
    ///
    /// let capture = Capture::new();
    /// capture.collector().increment_counter("jobs_total", &[]);
    /// assert!(capture.render().contains("# TYPE jobs_total counter\njobs_total 1\n"));
    /// ```
    pub fn render(&self) -> String {
        self.recorder.render()
    }

    /// The parsed exposition.
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Collector};
    ///
    /// # fn main() -> Result<(), porter_metrics::testing::ParseError> {
    /// let capture = Capture::new();
    /// capture.collector().increment_counter("jobs_total", &["queue", "a"]);
    /// capture.collector().increment_counter("jobs_total", &["queue", "b"]);
    /// let scrape = capture.exposition()?;
    /// assert_eq!((scrape.count("jobs_total"), scrape.sum("jobs_total")), (2, 2.0));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ParseError`] if the text is not a valid exposition (a bug worth a failing test).
    pub fn exposition(&self) -> Result<Exposition, ParseError> {
        Exposition::parse(&self.render())
    }

    /// Counter increments and histogram observations that idle expiry keeps out of the
    /// exposition: those of hidden series, and those of series it reclaimed. With what the
    /// exposition shows, they account for every one recorded: a test of exactness under
    /// idle expiry adds the two, with upkeep held still ([`pause_upkeep`](Self::pause_upkeep))
    /// so that both are of one moment.
    ///
    /// ```
    /// use std::time::Duration;
    /// use porter_metrics::{testing::Capture, Builder, Collector};
    ///
    /// let capture = Capture::with_recorder(
    ///     Builder::new().idle_timeout(Duration::from_secs(60)).build_local(),
    /// );
    /// capture.collector().increment_counter("jobs_total", &[]);
    /// assert_eq!(capture.unexported_samples(), 0); // not idle yet
    /// ```
    pub fn unexported_samples(&self) -> u64 {
        let store = self.recorder.pipeline().recorder().store();
        let hidden: u64 = store.families().iter().map(|f| f.hidden_samples()).sum();
        store.shared.expired() + hidden
    }

    /// Holds idle expiry still until the guard is dropped: scrapes and
    /// [`unexported_samples`](Self::unexported_samples) made meanwhile are of one moment.
    ///
    /// ```
    /// let capture = porter_metrics::testing::Capture::new();
    /// let still = capture.pause_upkeep();
    /// let _scrape = capture.render();
    /// drop(still);
    /// ```
    #[must_use = "upkeep is held only while the guard lives"]
    pub fn pause_upkeep(&self) -> impl Drop + '_ {
        self.recorder.pipeline().recorder().store().pause_upkeep()
    }
}
