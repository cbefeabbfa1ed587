//! porter-metrics' own metrics, and the warn-once log.
//!
//! Every sample, label or series the recorder layer cannot pass on as given is accounted for
//! here, so nothing is lost silently:
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `porter_metrics_dropped_samples_total` | counter | `reason` | calls whose sample was dropped |
//! | `porter_metrics_dropped_labels_total` | counter | `reason` | labels removed from a call |
//! | `porter_metrics_overflow_samples_total` | counter | `metric` | calls folded into a metric's overflow series (a series without `metric` stays 0, so the metric is always present) |
//! | `porter_metrics_series` | gauge | | series currently tracked |
//! | `porter_metrics_metric_names` | gauge | | metric names currently tracked |
//!
//! Each distinct problem (a reason and a metric name) is logged once through `tracing` at
//! `WARN`, never once per call.
//!
//! ```
//! use porter_metrics::self_metrics::{
//!     DROPPED_LABELS, DROPPED_SAMPLES, METRIC_NAMES, OVERFLOW_SAMPLES, SERIES,
//! };
//!
//! let text = porter_metrics::LocalRecorder::new().render(); // nothing recorded yet
//! for name in [DROPPED_SAMPLES, DROPPED_LABELS, OVERFLOW_SAMPLES, SERIES, METRIC_NAMES] {
//!     assert!(text.contains(&format!("# TYPE {name} ")), "{name} is always exported");
//! }
//! ```

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, Label, Level, Metadata,
    Recorder, SharedString,
};

use crate::handle::{Handle, Kind};

/// Name of the counter of dropped samples.
///
/// ```
/// use porter_metrics::{self_metrics::DROPPED_SAMPLES, testing::Capture, Collector};
///
/// let capture = Capture::new();
/// capture.collector().increment_counter("", &[]); // no name: dropped
/// let scrape = capture.exposition().unwrap();
/// assert_eq!(scrape.value(DROPPED_SAMPLES, &["reason", "invalid_name"]), Some(1.0));
/// assert_eq!(scrape.value(DROPPED_SAMPLES, &["reason", "kind_conflict"]), Some(0.0));
/// ```
pub const DROPPED_SAMPLES: &str = "porter_metrics_dropped_samples_total";
/// Name of the counter of dropped labels.
///
/// ```
/// use porter_metrics::{self_metrics::DROPPED_LABELS, testing::Capture, Collector};
///
/// let capture = Capture::new();
/// capture.collector().increment_counter("jobs_total", &["queue", "a", "region"]); // dangling key
/// let scrape = capture.exposition().unwrap();
/// assert_eq!(scrape.value(DROPPED_LABELS, &["reason", "dangling_key"]), Some(1.0));
/// assert_eq!(scrape.value("jobs_total", &["queue", "a"]), Some(1.0));
/// ```
pub const DROPPED_LABELS: &str = "porter_metrics_dropped_labels_total";
/// Name of the counter of samples folded into overflow series.
///
/// ```
/// use porter_metrics::self_metrics::OVERFLOW_SAMPLES;
/// use porter_metrics::{testing::Capture, Builder, Collector, Limits};
///
/// let limits = Limits::default().with_series_per_metric(1);
/// let capture = Capture::with_recorder(Builder::new().limits(limits).build_local());
/// for user in ["1", "2", "3"] {
///     capture.collector().increment_counter("hits_total", &["user", user]);
/// }
/// let scrape = capture.exposition().unwrap();
/// assert_eq!(scrape.value(OVERFLOW_SAMPLES, &["metric", "hits_total"]), Some(2.0));
/// ```
pub const OVERFLOW_SAMPLES: &str = "porter_metrics_overflow_samples_total";
/// Name of the gauge of tracked series.
///
/// ```
/// use porter_metrics::{self_metrics::SERIES, testing::Capture, Collector};
///
/// let capture = Capture::new();
/// capture.collector().increment_counter("jobs_total", &["queue", "a"]);
/// capture.collector().increment_counter("jobs_total", &["queue", "b"]);
/// assert_eq!(capture.exposition().unwrap().value(SERIES, &[]), Some(2.0));
/// ```
pub const SERIES: &str = "porter_metrics_series";
/// Name of the gauge of tracked metric names.
///
/// ```
/// use porter_metrics::{self_metrics::METRIC_NAMES, testing::Capture, Collector};
///
/// let capture = Capture::new();
/// capture.collector().increment_counter("jobs_total", &["queue", "a"]);
/// capture.collector().record_gauge("queue_size", 3.0, &["queue", "a"]);
/// let scrape = capture.exposition().unwrap();
/// assert_eq!(scrape.kind(METRIC_NAMES), Some("gauge"));
/// assert_eq!(scrape.value(METRIC_NAMES, &[]), Some(2.0));
/// ```
pub const METRIC_NAMES: &str = "porter_metrics_metric_names";

/// How many distinct problems are logged before further warnings are suppressed.
const MAX_WARNINGS: usize = 1024;

static SELF_METADATA: Metadata<'static> =
    Metadata::new("porter_metrics::self", Level::INFO, Some(module_path!()));

/// Why a sample was dropped: the `reason` label of `porter_metrics_dropped_samples_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum DropReason {
    /// The metric name is empty.
    InvalidName,
    /// The metric name uses porter-metrics' own `porter_metrics_` prefix.
    ReservedName,
    /// The name is already used by a metric of another kind, or by a histogram's series.
    KindConflict,
    /// The limit on the number of metric names was reached.
    MetricLimit,
    /// A histogram observation was NaN or infinite.
    NonFinite,
    /// Recorded before the exporter existed, past the bounded buffer.
    BufferFull,
    /// A `record_many` count past the batch limit (the first 65 536 are kept).
    BatchLimit,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 7] = [
        DropReason::InvalidName,
        DropReason::ReservedName,
        DropReason::KindConflict,
        DropReason::MetricLimit,
        DropReason::NonFinite,
        DropReason::BufferFull,
        DropReason::BatchLimit,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::InvalidName => "invalid_name",
            DropReason::ReservedName => "reserved_name",
            DropReason::KindConflict => "kind_conflict",
            DropReason::MetricLimit => "metric_limit",
            DropReason::NonFinite => "non_finite",
            DropReason::BufferFull => "buffer_full",
            DropReason::BatchLimit => "batch_limit",
        }
    }

    /// What the one-time warning says.
    pub(crate) fn message(self) -> &'static str {
        match self {
            DropReason::InvalidName => "empty metric name; sample dropped",
            DropReason::ReservedName => "the porter_metrics_ prefix is reserved; sample dropped",
            DropReason::KindConflict => {
                "name already used by another metric kind or histogram series; sample dropped"
            }
            DropReason::MetricLimit => "metric name limit reached; sample dropped",
            DropReason::NonFinite => "non-finite histogram observation dropped",
            DropReason::BufferFull => "pre-export buffer full; sample dropped",
            DropReason::BatchLimit => "record_many count above the batch limit; the rest dropped",
        }
    }
}

/// Why a label was removed: the `reason` label of `porter_metrics_dropped_labels_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LabelDrop {
    /// An odd number of label strings: the last key had no value.
    DanglingKey,
}

impl LabelDrop {
    const ALL: [LabelDrop; 1] = [LabelDrop::DanglingKey];

    fn as_str(self) -> &'static str {
        match self {
            LabelDrop::DanglingKey => "dangling_key",
        }
    }
}

/// The self-metric handles of one pipeline, registered once on the recorder below the layer.
pub(crate) struct SelfMetrics {
    dropped: Vec<Counter>,
    sinks: Vec<Arc<DropSink>>,
    labels: Vec<Counter>,
    series: Gauge,
    metric_names: Gauge,
    /// Hashes of (problem, metric) already logged; a collision only skips a warning.
    warned: Mutex<HashSet<u64>>,
    hasher: hashbrown::DefaultHashBuilder,
    suppressed: OnceLock<()>,
}

impl SelfMetrics {
    /// Describes and registers every self-metric on `inner`, so they all render from the start
    /// (a zero is a useful baseline for alerts).
    pub(crate) fn register(inner: &dyn Recorder) -> Self {
        let text = SharedString::const_str;
        inner.describe_counter(
            DROPPED_SAMPLES.into(),
            None,
            text("Calls whose sample porter-metrics dropped, by reason."),
        );
        inner.describe_counter(
            DROPPED_LABELS.into(),
            None,
            text("Labels porter-metrics removed from a call, by reason."),
        );
        inner.describe_counter(
            OVERFLOW_SAMPLES.into(),
            None,
            text("Calls folded into a metric's otel_metric_overflow series, by metric."),
        );
        inner.describe_gauge(
            SERIES.into(),
            None,
            text("Series currently tracked by porter-metrics."),
        );
        inner.describe_gauge(
            METRIC_NAMES.into(),
            None,
            text("Metric names currently tracked by porter-metrics."),
        );
        let counter = |name: &'static str, reason: &'static str| {
            let key = Key::from_parts(name, vec![Label::new("reason", reason)]);
            inner.register_counter(&key, &SELF_METADATA)
        };
        let gauge = |name: &'static str| {
            let gauge = inner.register_gauge(&Key::from_static_name(name), &SELF_METADATA);
            gauge.set(0.0);
            gauge
        };
        let dropped: Vec<Counter> = DropReason::ALL
            .iter()
            .map(|r| counter(DROPPED_SAMPLES, r.as_str()))
            .collect();
        // A zero series without `metric` keeps the overflow metric present before any
        // overflow, for dashboards and `absent()` alerts.
        let _ = inner.register_counter(&Key::from_static_name(OVERFLOW_SAMPLES), &SELF_METADATA);
        Self {
            sinks: dropped
                .iter()
                .map(|c| Arc::new(DropSink(c.clone())))
                .collect(),
            dropped,
            labels: LabelDrop::ALL
                .iter()
                .map(|r| counter(DROPPED_LABELS, r.as_str()))
                .collect(),
            series: gauge(SERIES),
            metric_names: gauge(METRIC_NAMES),
            warned: Mutex::new(HashSet::new()),
            hasher: hashbrown::DefaultHashBuilder::default(),
            suppressed: OnceLock::new(),
        }
    }

    /// The counter of samples dropped for `reason`.
    pub(crate) fn dropped(&self, reason: DropReason) -> &Counter {
        &self.dropped[DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0)]
    }

    /// A handle of `kind` to give out instead of a dropped metric's: each use counts one
    /// drop, whether the handle is used once (a macro call) or kept and reused.
    pub(crate) fn dropped_handle(&self, kind: Kind, reason: DropReason) -> Handle {
        let sink = self.sinks[DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0)]
        .clone();
        match kind {
            Kind::Counter => Handle::Counter(Counter::from_arc(sink)),
            Kind::Gauge => Handle::Gauge(Gauge::from_arc(sink)),
            Kind::Histogram => Handle::Histogram(Histogram::from_arc(sink)),
        }
    }

    /// The counter of labels removed for `reason`.
    pub(crate) fn dropped_labels(&self, reason: LabelDrop) -> &Counter {
        &self.labels[LabelDrop::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0)]
    }

    /// Registers the overflow counter of one metric.
    pub(crate) fn overflow_counter(inner: &dyn Recorder, family: &str) -> Counter {
        let key = Key::from_parts(
            OVERFLOW_SAMPLES,
            vec![Label::new("metric", family.to_owned())],
        );
        inner.register_counter(&key, &SELF_METADATA)
    }

    pub(crate) fn set_series(&self, series: usize, metric_names: usize) {
        self.series.set(series as f64);
        self.metric_names.set(metric_names as f64);
    }

    /// Logs `message` the first time `problem` is seen for `metric`.
    pub(crate) fn warn_once(&self, problem: &'static str, metric: &str, message: &str) {
        let id = self.hasher.hash_one((problem, metric));
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.contains(&id) {
            return;
        }
        if warned.len() >= MAX_WARNINGS {
            if self.suppressed.set(()).is_ok() {
                tracing::warn!(
                    "porter-metrics: {MAX_WARNINGS} distinct problems logged; further ones are only counted in the porter_metrics_* self-metrics"
                );
            }
            return;
        }
        warned.insert(id);
        tracing::warn!(metric, problem, "porter-metrics: {message}");
    }
}

/// Stands in for the handle of a dropped metric: every use of it is one dropped sample.
struct DropSink(Counter);

impl CounterFn for DropSink {
    fn increment(&self, _: u64) {
        self.0.increment(1);
    }
    fn absolute(&self, _: u64) {
        self.0.increment(1);
    }
}

impl GaugeFn for DropSink {
    fn increment(&self, _: f64) {
        self.0.increment(1);
    }
    fn decrement(&self, _: f64) {
        self.0.increment(1);
    }
    fn set(&self, _: f64) {
        self.0.increment(1);
    }
}

impl HistogramFn for DropSink {
    fn record(&self, _: f64) {
        self.0.increment(1);
    }
    fn record_many(&self, _: f64, count: usize) {
        self.0.increment(count as u64);
    }
}
