//! The limits on what a store admits; the store's one map per family enforces them.

/// Limits on what one pipeline tracks. Past them, data is folded or dropped, and counted.
///
/// ```
/// let limits = porter_metrics::Limits::default();
/// assert_eq!((limits.series_per_metric, limits.metric_names, limits.series), (2000, 10_000, 500_000));
/// assert_eq!((limits.labels, limits.label_bytes), (64, 4096));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Series per metric name; further label sets fold into the metric's overflow series,
    /// labelled `otel_metric_overflow="true"`. Default 2000, as the OpenTelemetry SDKs.
    pub series_per_metric: usize,
    /// Distinct metric names; calls for further names are dropped. Default 10 000.
    pub metric_names: usize,
    /// Series across all metrics; further label sets fold into their metric's overflow
    /// series. Default 500 000.
    pub series: usize,
    /// Label pairs per series; past it, the pairs after the first `labels` (by key) are
    /// dropped and counted (`porter_metrics_dropped_labels_total{reason="too_many"}`).
    /// Default 64.
    pub labels: usize,
    /// Bytes of a label key or value; a longer one is cut (at a character boundary) and
    /// counted (`reason="too_long"`). Default 4096.
    pub label_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            series_per_metric: 2000,
            metric_names: 10_000,
            series: 500_000,
            labels: 64,
            label_bytes: 4096,
        }
    }
}

impl Limits {
    /// These limits with another per-metric series limit.
    ///
    /// ```
    /// let limits = porter_metrics::Limits::default().with_series_per_metric(100);
    /// assert_eq!((limits.series_per_metric, limits.series), (100, 500_000));
    /// ```
    #[must_use]
    pub fn with_series_per_metric(mut self, series: usize) -> Self {
        self.series_per_metric = series;
        self
    }

    /// These limits with another metric-name limit.
    ///
    /// ```
    /// let limits = porter_metrics::Limits::default().with_metric_names(50);
    /// assert_eq!(limits.metric_names, 50);
    /// ```
    #[must_use]
    pub fn with_metric_names(mut self, names: usize) -> Self {
        self.metric_names = names;
        self
    }

    /// These limits with another total series limit.
    ///
    /// ```
    /// let limits = porter_metrics::Limits::default().with_series(1_000);
    /// assert_eq!(limits.series, 1_000);
    /// ```
    #[must_use]
    pub fn with_series(mut self, series: usize) -> Self {
        self.series = series;
        self
    }

    /// These limits with another cap on label pairs per series and on the bytes of a label
    /// key or value.
    ///
    /// ```
    /// let limits = porter_metrics::Limits::default().with_labels(8, 256);
    /// assert_eq!((limits.labels, limits.label_bytes), (8, 256));
    /// ```
    #[must_use]
    pub fn with_labels(mut self, labels: usize, bytes: usize) -> Self {
        self.labels = labels;
        self.label_bytes = bytes;
        self
    }

    /// No limit at all (for benchmarks and tests that want every series).
    ///
    /// ```
    /// assert_eq!(porter_metrics::Limits::unlimited().series, usize::MAX);
    /// ```
    pub fn unlimited() -> Self {
        Self {
            series_per_metric: usize::MAX,
            metric_names: usize::MAX,
            series: usize::MAX,
            labels: usize::MAX,
            label_bytes: usize::MAX,
        }
    }
}
