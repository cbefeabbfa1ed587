//! [`FilteringCollector`]: allows or denies calls by exact name, prefix or predicate.

use std::collections::HashSet;

use hashbrown::DefaultHashBuilder;

use crate::collector::{Collector, Timer};

type Predicate = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Allows or denies calls by metric name; see the module documentation.
///
/// ```
/// use porter_metrics::{Collector, FilteringCollector, LocalRecorder};
///
/// let recorder = LocalRecorder::new();
/// let filtered = FilteringCollector::deny(recorder.collector())
///     .name("debug_events_total")
///     .prefix("internal_");
/// filtered.increment_counter("debug_events_total", &[]); // denied
/// filtered.increment_counter("internal_cache_hits", &[]); // denied
/// filtered.increment_counter("requests_total", &[]); // allowed
/// let text = recorder.render();
/// assert!(text.contains("requests_total 1"));
/// assert!(!text.contains("debug_events_total"));
/// ```
pub struct FilteringCollector<C> {
    inner: C,
    /// `true`: only matching names pass; `false`: matching names are dropped.
    allow: bool,
    names: HashSet<String, DefaultHashBuilder>,
    prefixes: Vec<String>,
    predicates: Vec<Predicate>,
}

impl<C> std::fmt::Debug for FilteringCollector<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilteringCollector")
            .field("mode", &if self.allow { "allow" } else { "deny" })
            .field("names", &self.names)
            .field("prefixes", &self.prefixes)
            .field("predicates", &self.predicates.len())
            .finish_non_exhaustive()
    }
}

impl<C: Collector> FilteringCollector<C> {
    /// Passes only the calls whose name matches one of the rules added next.
    ///
    /// ```
    /// use porter_metrics::{FilteringCollector, NoopCollector};
    /// let only_flight = FilteringCollector::allow(NoopCollector).prefix("flight_");
    /// assert!(only_flight.permits("flight_requests_total"));
    /// assert!(!only_flight.permits("gc_pauses_total"));
    /// ```
    pub fn allow(inner: C) -> Self {
        Self::new(inner, true)
    }

    /// Drops the calls whose name matches one of the rules added next.
    ///
    /// ```
    /// use porter_metrics::{FilteringCollector, NoopCollector};
    /// let quiet = FilteringCollector::deny(NoopCollector).predicate(|name| name.contains("debug"));
    /// assert!(!quiet.permits("debug_total"));
    /// assert!(quiet.permits("requests_total"));
    /// ```
    pub fn deny(inner: C) -> Self {
        Self::new(inner, false)
    }

    fn new(inner: C, allow: bool) -> Self {
        Self {
            inner,
            allow,
            names: HashSet::default(),
            prefixes: Vec::new(),
            predicates: Vec::new(),
        }
    }

    /// A rule matching exactly `name`.
    #[must_use]
    ///
    /// ```
    /// use porter_metrics::{FilteringCollector, NoopCollector};
    /// let filter = FilteringCollector::deny(NoopCollector).name("debug_total");
    /// assert!(!filter.permits("debug_total"));
    /// assert!(filter.permits("debug_total_2")); // exact names only
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.names.insert(name.into());
        self
    }

    /// A rule matching names that start with `prefix`.
    #[must_use]
    ///
    /// ```
    /// use porter_metrics::{FilteringCollector, NoopCollector};
    /// let filter = FilteringCollector::allow(NoopCollector).prefix("http_").prefix("grpc_");
    /// assert!(filter.permits("http_requests_total"));
    /// assert!(filter.permits("grpc_requests_total"));
    /// assert!(!filter.permits("db_queries_total"));
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// A rule matching names for which `predicate` is true.
    #[must_use]
    ///
    /// ```
    /// use porter_metrics::{FilteringCollector, NoopCollector};
    /// let filter = FilteringCollector::deny(NoopCollector).predicate(|name| name.len() > 20);
    /// assert!(!filter.permits("a_rather_long_metric_name_total"));
    /// assert!(filter.permits("jobs_total"));
    /// ```
    pub fn predicate(mut self, predicate: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.predicates.push(Box::new(predicate));
        self
    }

    /// Whether a call for `name` passes.
    #[inline]
    ///
    /// ```
    /// use porter_metrics::{FilteringCollector, NoopCollector};
    /// let filter = FilteringCollector::allow(NoopCollector).name("up").prefix("app_");
    /// assert!(filter.permits("up") && filter.permits("app_jobs_total"));
    /// assert!(!filter.permits("upkeep_runs_total")); // neither the name nor the prefix
    /// ```
    pub fn permits(&self, name: &str) -> bool {
        let matched = self.names.contains(name)
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
            || self.predicates.iter().any(|p| p(name));
        matched == self.allow
    }

    /// The wrapped collector.
    ///
    /// ```
    /// use porter_metrics::{Collector, FilteringCollector, LocalRecorder};
    ///
    /// let recorder = LocalRecorder::new();
    /// let filtered = FilteringCollector::allow(recorder.collector()).prefix("app_");
    /// filtered.increment_counter("other_total", &[]); // filtered out
    /// filtered.inner().increment_counter("other_total", &[]); // bypasses the filter
    /// assert!(recorder.render().contains("other_total 1"));
    /// ```
    pub fn inner(&self) -> &C {
        &self.inner
    }
}

impl<C: Collector> Collector for FilteringCollector<C> {
    fn increment_counter(&self, name: &str, labels: &[&str]) {
        if self.permits(name) {
            self.inner.increment_counter(name, labels);
        }
    }

    fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
        if self.permits(name) {
            self.inner.record_histogram(name, value, labels);
        }
    }

    fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
        if self.permits(name) {
            self.inner.record_gauge(name, value, labels);
        }
    }

    fn start_timer(&self, name: &str) -> Timer {
        if self.permits(name) {
            self.inner.start_timer(name)
        } else {
            Timer::unrecorded()
        }
    }

    fn add_to_counter(&self, name: &str, n: u64, labels: &[&str]) {
        if self.permits(name) {
            self.inner.add_to_counter(name, n, labels);
        }
    }

    fn describe_counter(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        if self.permits(name) {
            self.inner.describe_counter(name, unit, help);
        }
    }

    fn describe_gauge(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        if self.permits(name) {
            self.inner.describe_gauge(name, unit, help);
        }
    }

    fn describe_histogram(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        if self.permits(name) {
            self.inner.describe_histogram(name, unit, help);
        }
    }

    fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]) {
        if self.permits(name) {
            self.inner.add_to_gauge(name, delta, labels);
        }
    }

    fn increment_counter_with_exemplar(&self, name: &str, labels: &[&str], exemplar: &[&str]) {
        if self.permits(name) {
            self.inner
                .increment_counter_with_exemplar(name, labels, exemplar);
        }
    }

    fn record_histogram_with_exemplar(
        &self,
        name: &str,
        value: f64,
        labels: &[&str],
        exemplar: &[&str],
    ) {
        if self.permits(name) {
            self.inner
                .record_histogram_with_exemplar(name, value, labels, exemplar);
        }
    }
}
