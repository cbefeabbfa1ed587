//! porter-metrics' own metrics, and the warn-once log.
//!
//! Every sample, label or series that cannot be recorded as given is accounted for here, so
//! nothing is lost silently. The metrics are listed in the [guide](crate::guide)
//! (*Self-metrics*, its one copy). Each distinct problem (a reason and a metric name) is
//! logged once through `tracing` at `WARN`, never once per call.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

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
/// Name of the gauge of series that idle expiry hid and has not reclaimed yet: written
/// again, they come back with their values; idle for another timeout (and held by no kept
/// handle), they are reclaimed.
///
/// ```
/// use porter_metrics::{self_metrics::HIDDEN_SERIES, testing::Capture};
///
/// assert_eq!(Capture::new().exposition().unwrap().value(HIDDEN_SERIES, &[]), Some(0.0));
/// ```
pub const HIDDEN_SERIES: &str = "porter_metrics_hidden_series";

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

/// Name of the counter of dropped exemplars.
///
/// ```
/// use porter_metrics::{self_metrics::DROPPED_EXEMPLARS, testing::Capture, Collector};
///
/// let capture = Capture::new();
/// let long = "x".repeat(200); // over OpenMetrics' 128 characters
/// capture.collector().increment_counter_with_exemplar("jobs_total", &[], &["trace_id", &long]);
/// let scrape = capture.exposition().unwrap();
/// assert_eq!(scrape.value("jobs_total", &[]), Some(1.0)); // the sample is kept
/// assert_eq!(scrape.value(DROPPED_EXEMPLARS, &["reason", "too_long"]), Some(1.0));
/// ```
pub const DROPPED_EXEMPLARS: &str = "porter_metrics_dropped_exemplars_total";

/// Name of the counter of families (and series) left out of a scrape because another was
/// written alike (`a.b` and `a_b` under `escaping=underscores`), by escaping.
///
/// ```
/// use porter_metrics::{self_metrics::ESCAPING_COLLISIONS, LocalRecorder};
///
/// let text = LocalRecorder::new().render();
/// assert!(text.contains(&format!("{ESCAPING_COLLISIONS}{{escaping=\"underscores\"}} 0")));
/// ```
pub const ESCAPING_COLLISIONS: &str = "porter_metrics_escaping_collisions_total";

/// How many distinct problems are logged before further warnings are suppressed.
const MAX_WARNINGS: usize = 1024;

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
    /// A histogram observation made before the pipeline was bound, past the bounded buffer.
    BufferFull,
    /// Histogram observations past 2^32 in one `record_many` call, or past 2^62 in one
    /// series: cut.
    CountOverflow,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 7] = [
        DropReason::InvalidName,
        DropReason::ReservedName,
        DropReason::KindConflict,
        DropReason::MetricLimit,
        DropReason::NonFinite,
        DropReason::BufferFull,
        DropReason::CountOverflow,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::InvalidName => "invalid_name",
            DropReason::ReservedName => "reserved_name",
            DropReason::KindConflict => "kind_conflict",
            DropReason::MetricLimit => "metric_limit",
            DropReason::NonFinite => "non_finite",
            DropReason::BufferFull => "buffer_full",
            DropReason::CountOverflow => "count_overflow",
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
            DropReason::BufferFull => {
                "histogram observations recorded before the server started exceed the buffer; sample dropped"
            }
            DropReason::CountOverflow => {
                "histogram observations past 2^32 in one call, or past 2^62 in one series, were cut"
            }
        }
    }
}

/// Why a label was removed or cut: the `reason` label of
/// `porter_metrics_dropped_labels_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LabelDrop {
    /// An odd number of label strings: the last key had no value.
    DanglingKey,
    /// Past the limit on pairs per series.
    TooMany,
    /// A key or value past the length limit, cut to it.
    TooLong,
}

impl LabelDrop {
    const ALL: [LabelDrop; 3] = [
        LabelDrop::DanglingKey,
        LabelDrop::TooMany,
        LabelDrop::TooLong,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LabelDrop::DanglingKey => "dangling_key",
            LabelDrop::TooMany => "too_many",
            LabelDrop::TooLong => "too_long",
        }
    }

    /// What the one-time warning says.
    pub(crate) fn message(self) -> &'static str {
        match self {
            LabelDrop::DanglingKey => {
                "odd number of label strings; the last key has no value and was dropped"
            }
            LabelDrop::TooMany => "more label pairs than the limit; the last (by key) were dropped",
            LabelDrop::TooLong => "label key or value longer than the limit; cut to it",
        }
    }
}

/// Why an exemplar was dropped: the `reason` label of `porter_metrics_dropped_exemplars_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ExemplarDrop {
    /// Its label names and values exceed OpenMetrics' 128 characters.
    TooLong,
    /// An odd number of strings, or a label name that is not valid.
    InvalidLabel,
}

impl ExemplarDrop {
    const ALL: [ExemplarDrop; 2] = [ExemplarDrop::TooLong, ExemplarDrop::InvalidLabel];

    fn as_str(self) -> &'static str {
        match self {
            ExemplarDrop::TooLong => "too_long",
            ExemplarDrop::InvalidLabel => "invalid_label",
        }
    }
}

/// The self-metrics' counts and the warn-once log of one store. The encoder prints them
/// (zeros included, so alerts have a baseline).
pub(crate) struct SelfMetrics {
    dropped: [AtomicU64; DropReason::ALL.len()],
    labels: [AtomicU64; LabelDrop::ALL.len()],
    exemplars: [AtomicU64; ExemplarDrop::ALL.len()],
    /// Hashes of (problem, metric) already logged; a collision only skips a warning.
    warned: Mutex<HashSet<u64>>,
    hasher: hashbrown::DefaultHashBuilder,
    suppressed: AtomicBool,
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self {
            dropped: Default::default(),
            labels: Default::default(),
            exemplars: Default::default(),
            warned: Mutex::new(HashSet::new()),
            hasher: hashbrown::DefaultHashBuilder::default(),
            suppressed: AtomicBool::new(false),
        }
    }
}

impl SelfMetrics {
    /// Counts `n` samples dropped for `reason`.
    /// Counts `n` dropped samples; the count stops at its greatest value rather than wrap
    /// (a scraper would take a wrap for a reset).
    pub(crate) fn count_dropped(&self, reason: DropReason, n: u64) {
        let _ =
            self.dropped[reason as usize].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_add(n))
            });
    }

    /// Samples dropped so far, by reason.
    pub(crate) fn dropped(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|r| {
            (
                r.as_str(),
                self.dropped[*r as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// Counts `n` labels removed or cut for `reason`.
    pub(crate) fn count_label_drop(&self, reason: LabelDrop, n: u64) {
        self.labels[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Labels removed so far, by reason.
    pub(crate) fn label_drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        LabelDrop::ALL
            .iter()
            .map(|r| (r.as_str(), self.labels[*r as usize].load(Ordering::Relaxed)))
    }

    /// Counts one exemplar dropped for `reason` (the sample itself is kept).
    pub(crate) fn count_exemplar_drop(&self, reason: ExemplarDrop) {
        self.exemplars[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Exemplars dropped so far, by reason.
    pub(crate) fn exemplar_drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ExemplarDrop::ALL.iter().map(|r| {
            (
                r.as_str(),
                self.exemplars[*r as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// Logs `message` the first time `problem` is seen for `metric`. Takes the log's own
    /// lock only to decide, and calls `tracing` after releasing it: a subscriber that
    /// records a metric cannot deadlock here.
    pub(crate) fn warn_once(&self, problem: &'static str, metric: &str, message: &str) {
        let id = self.hasher.hash_one((problem, metric));
        let first = {
            let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
            if warned.len() >= MAX_WARNINGS {
                None
            } else {
                Some(warned.insert(id))
            }
        };
        match first {
            Some(true) => tracing::warn!(metric, problem, "porter-metrics: {message}"),
            Some(false) => {}
            None => {
                if !self.suppressed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "porter-metrics: {MAX_WARNINGS} distinct problems logged; further ones are only counted in the porter_metrics_* self-metrics"
                    );
                }
            }
        }
    }
}
