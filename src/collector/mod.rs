//! The `Collector` interface of the design, and the collector that records nothing.
//!
//! Labels are flat pairs, `&["key1", "value1", "key2", "value2"]`. The same pairs in another
//! order name the same series. An odd count drops the dangling key: it is counted in
//! `porter_metrics_dropped_labels_total{reason="dangling_key"}` and warned about once per
//! metric name.
//!
//! `Collector` is object safe: wrap collectors in `Arc<dyn Collector>` or `Box<dyn Collector>`
//! and pass them around; `&C`, `Arc<C>` and `Box<C>` are collectors too.

mod prometheus_collector;
mod timer;

use std::sync::Arc;

pub use prometheus_collector::PrometheusCollector;
pub use timer::Timer;

/// Records counters, gauges, histograms and timers with flat label pairs.
///
/// ```
/// use std::sync::Arc;
/// use porter_metrics::{Collector, LocalRecorder};
///
/// let recorder = LocalRecorder::new();
/// let collector: Arc<dyn Collector> = Arc::new(recorder.collector());
/// collector.increment_counter("requests_total", &["method", "GET", "endpoint", "/api/v1/users"]);
/// collector.record_gauge("queue_size", 42.0, &["queue", "default"]);
/// collector.record_histogram("request_duration", 0.42, &["endpoint", "/api/users"]);
/// let seconds = collector.start_timer("operation_duration").stop();
/// let text = recorder.render();
/// assert!(text.contains(r#"queue_size{queue="default"} 42"#));
/// assert!(text.contains(&format!("operation_duration_sum {seconds}")));
/// ```
pub trait Collector: Send + Sync {
    /// Adds 1 to the counter `name` with these label pairs.
    ///
    /// ```
    /// # use porter_metrics::{testing::Capture, Collector};
    /// # let capture = Capture::new();
    /// # let collector = capture.collector();
    /// collector.increment_counter("requests_total", &["method", "GET", "code", "200"]);
    /// # let scrape = capture.exposition().unwrap();
    /// # assert_eq!(scrape.value("requests_total", &["code", "200", "method", "GET"]), Some(1.0));
    /// ```
    fn increment_counter(&self, name: &str, labels: &[&str]);
    /// Observes `value` in the histogram `name` with these label pairs.
    ///
    /// ```
    /// # use porter_metrics::{testing::Capture, Collector};
    /// # let capture = Capture::new();
    /// # let collector = capture.collector();
    /// collector.record_histogram("request_duration_seconds", 0.42, &["endpoint", "/users"]);
    /// # let scrape = capture.exposition().unwrap();
    /// # let h = scrape.histogram("request_duration_seconds", &["endpoint", "/users"]).unwrap();
    /// # assert_eq!((h.count, h.sum), (1, 0.42));
    /// ```
    fn record_histogram(&self, name: &str, value: f64, labels: &[&str]);
    /// Sets the gauge `name` with these label pairs to `value`.
    ///
    /// ```
    /// # use porter_metrics::{testing::Capture, Collector};
    /// # let capture = Capture::new();
    /// # let collector = capture.collector();
    /// collector.record_gauge("queue_size", 42.0, &["queue", "default"]);
    /// # let scrape = capture.exposition().unwrap();
    /// # assert_eq!(scrape.value("queue_size", &["queue", "default"]), Some(42.0));
    /// ```
    fn record_gauge(&self, name: &str, value: f64, labels: &[&str]);
    /// Starts timing into the histogram `name` (in seconds); see [`Timer`].
    ///
    /// ```
    /// # use porter_metrics::{testing::Capture, Collector};
    /// # let capture = Capture::new();
    /// # let collector = capture.collector();
    /// let seconds = collector.start_timer("operation_duration_seconds").stop();
    /// # let scrape = capture.exposition().unwrap();
    /// # let h = scrape.histogram("operation_duration_seconds", &[]).unwrap();
    /// # assert_eq!((h.count, h.sum), (1, seconds));
    /// ```
    fn start_timer(&self, name: &str) -> Timer;

    /// Adds `n` to the counter `name` with these label pairs.
    ///
    /// Provided: `n` calls of [`increment_counter`](Self::increment_counter), so every
    /// collector supports it. The collectors of this crate override it with one update.
    ///
    /// ```
    /// # use porter_metrics::{testing::Capture, Collector};
    /// # let capture = Capture::new();
    /// # let collector = capture.collector();
    /// collector.add_to_counter("bytes_sent_total", 1500, &["peer", "a"]);
    /// # let scrape = capture.exposition().unwrap();
    /// # assert_eq!(scrape.value("bytes_sent_total", &["peer", "a"]), Some(1500.0));
    /// ```
    fn add_to_counter(&self, name: &str, n: u64, labels: &[&str]) {
        for _ in 0..n {
            self.increment_counter(name, labels);
        }
    }

    /// Adds 1 to the counter `name`, keeping `exemplar` (flat label pairs, such as
    /// `["trace_id", id]`) as its exemplar: OpenMetrics and protobuf scrapes show the most
    /// recent one. An exemplar over OpenMetrics' 128 characters, or with an invalid label
    /// name, is dropped (the increment is kept) and counted in
    /// `porter_metrics_dropped_exemplars_total`.
    ///
    /// Provided: the increment without the exemplar, so every collector supports it.
    ///
    /// ```
    /// # use porter_metrics::{testing::Capture, Collector};
    /// # let capture = Capture::new();
    /// # let collector = capture.collector();
    /// collector.increment_counter_with_exemplar("requests_total", &["code", "200"], &["trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"]);
    /// # assert_eq!(capture.exposition().unwrap().value("requests_total", &["code", "200"]), Some(1.0));
    /// ```
    fn increment_counter_with_exemplar(&self, name: &str, labels: &[&str], exemplar: &[&str]) {
        let _ = exemplar;
        self.increment_counter(name, labels);
    }

    /// Observes `value` in the histogram `name`, keeping `exemplar` (flat label pairs) as
    /// the exemplar of the bucket it falls in (the most recent one per bucket), with the
    /// same rules as [`increment_counter_with_exemplar`](Self::increment_counter_with_exemplar).
    ///
    /// Provided: the observation without the exemplar.
    ///
    /// ```
    /// # use porter_metrics::{testing::Capture, Collector};
    /// # let capture = Capture::new();
    /// # let collector = capture.collector();
    /// collector.record_histogram_with_exemplar("latency_seconds", 0.2, &[], &["trace_id", "abc"]);
    /// # assert_eq!(capture.exposition().unwrap().histogram("latency_seconds", &[]).map(|h| h.count), Some(1));
    /// ```
    fn record_histogram_with_exemplar(
        &self,
        name: &str,
        value: f64,
        labels: &[&str],
        exemplar: &[&str],
    ) {
        let _ = exemplar;
        self.record_histogram(name, value, labels);
    }

    /// Adds `delta` (negative to subtract) to the gauge `name` with these label pairs.
    ///
    /// Required: the design's four methods can only *set* a gauge, so no default could
    /// apply a delta; a collector that forwards to another forwards this too, and one that
    /// cannot support it says so in its own way.
    ///
    /// ```
    /// # use porter_metrics::{testing::Capture, Collector};
    /// # let capture = Capture::new();
    /// # let collector = capture.collector();
    /// collector.add_to_gauge("in_flight", 1.0, &["route", "/users"]);
    /// collector.add_to_gauge("in_flight", 1.0, &["route", "/users"]);
    /// collector.add_to_gauge("in_flight", -1.0, &["route", "/users"]);
    /// # let scrape = capture.exposition().unwrap();
    /// # assert_eq!(scrape.value("in_flight", &["route", "/users"]), Some(1.0));
    /// ```
    fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]);

    /// Gives the counter `name` a HELP text (and a unit), as `metrics::describe_counter!`
    /// does: it wins over the placeholder `Counter for <name>` of an undescribed metric.
    ///
    /// Provided: nothing, for a collector with nowhere to keep it.
    ///
    /// ```
    /// # use porter_metrics::{testing::Capture, Collector};
    /// # let capture = Capture::new();
    /// # let collector = capture.collector();
    /// collector.describe_counter("jobs_total", None, "Jobs finished.");
    /// collector.increment_counter("jobs_total", &[]);
    /// # assert_eq!(capture.exposition().unwrap().help("jobs_total"), Some("Jobs finished."));
    /// ```
    fn describe_counter(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        let _ = (name, unit, help);
    }

    /// Gives the gauge `name` a HELP text (and a unit); see
    /// [`describe_counter`](Self::describe_counter).
    fn describe_gauge(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        let _ = (name, unit, help);
    }

    /// Gives the histogram `name` a HELP text (and a unit); see
    /// [`describe_counter`](Self::describe_counter).
    fn describe_histogram(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        let _ = (name, unit, help);
    }
}

macro_rules! forward_collector {
    ($($ty:ty),*) => {$(
        impl<C: Collector + ?Sized> Collector for $ty {
            fn increment_counter(&self, name: &str, labels: &[&str]) {
                (**self).increment_counter(name, labels)
            }
            fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
                (**self).record_histogram(name, value, labels)
            }
            fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
                (**self).record_gauge(name, value, labels)
            }
            fn start_timer(&self, name: &str) -> Timer {
                (**self).start_timer(name)
            }
            fn add_to_counter(&self, name: &str, n: u64, labels: &[&str]) {
                (**self).add_to_counter(name, n, labels)
            }
            fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]) {
                (**self).add_to_gauge(name, delta, labels)
            }
            fn increment_counter_with_exemplar(&self, name: &str, labels: &[&str], exemplar: &[&str]) {
                (**self).increment_counter_with_exemplar(name, labels, exemplar)
            }
            fn record_histogram_with_exemplar(&self, name: &str, value: f64, labels: &[&str], exemplar: &[&str]) {
                (**self).record_histogram_with_exemplar(name, value, labels, exemplar)
            }
            fn describe_counter(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
                (**self).describe_counter(name, unit, help)
            }
            fn describe_gauge(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
                (**self).describe_gauge(name, unit, help)
            }
            fn describe_histogram(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
                (**self).describe_histogram(name, unit, help)
            }
        }
    )*};
}

forward_collector!(&C, Arc<C>, Box<C>);

/// A collector that records nothing; its timers still measure.
///
/// ```
/// use porter_metrics::{Collector, NoopCollector};
///
/// let collector = NoopCollector;
/// collector.increment_counter("ignored", &["a", "b"]);
/// let timer = collector.start_timer("ignored_seconds");
/// std::thread::sleep(std::time::Duration::from_millis(2));
/// assert!(timer.stop() >= 0.002); // it still measures
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoopCollector;

impl Collector for NoopCollector {
    #[inline]
    fn increment_counter(&self, _name: &str, _labels: &[&str]) {}
    #[inline]
    fn record_histogram(&self, _name: &str, _value: f64, _labels: &[&str]) {}
    #[inline]
    fn record_gauge(&self, _name: &str, _value: f64, _labels: &[&str]) {}
    #[inline]
    fn start_timer(&self, _name: &str) -> Timer {
        Timer::unrecorded()
    }
    #[inline]
    fn add_to_counter(&self, _name: &str, _n: u64, _labels: &[&str]) {}
    #[inline]
    fn add_to_gauge(&self, _name: &str, _delta: f64, _labels: &[&str]) {}
}
