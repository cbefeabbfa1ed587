//! Decorators: collectors that wrap any collector to add behaviour.
//!
//! The design's integration examples, as real types. Each wraps any [`Collector`], including
//! `Arc<dyn Collector>`, and is one itself, so they compose:
//! `FilteringCollector::deny(AggregatingCollector::new(PrometheusCollector::new()))`.
//!
//! * [`FilteringCollector`]: allows or denies calls by exact name, prefix or predicate. A
//!   denied call returns before reaching the wrapped collector; a denied timer measures but
//!   records nothing.
//! * [`AggregatingCollector`]: keeps running aggregates (count, sum, min, max, last) per name
//!   and label set, exact under any number of threads, readable while recording goes on.
//!
//! Writing your own is a matter of implementing [`Collector`] and forwarding:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use porter_metrics::{Collector, LocalRecorder, Timer};
//!
//! /// Counts every call, then forwards it (the design's `CustomCollector`).
//! struct CountingCollector<C> {
//!     inner: C,
//!     calls: AtomicU64,
//! }
//!
//! impl<C: Collector> Collector for CountingCollector<C> {
//!     fn increment_counter(&self, name: &str, labels: &[&str]) {
//!         self.calls.fetch_add(1, Ordering::Relaxed);
//!         self.inner.increment_counter(name, labels);
//!     }
//!     fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
//!         self.calls.fetch_add(1, Ordering::Relaxed);
//!         self.inner.record_histogram(name, value, labels);
//!     }
//!     fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
//!         self.calls.fetch_add(1, Ordering::Relaxed);
//!         self.inner.record_gauge(name, value, labels);
//!     }
//!     fn start_timer(&self, name: &str) -> Timer {
//!         self.calls.fetch_add(1, Ordering::Relaxed);
//!         self.inner.start_timer(name)
//!     }
//! }
//!
//! let recorder = LocalRecorder::new();
//! let counting = CountingCollector { inner: recorder.collector(), calls: AtomicU64::new(0) };
//! counting.increment_counter("requests_total", &["method", "GET"]);
//! assert_eq!(counting.calls.load(Ordering::Relaxed), 1);
//! assert!(recorder.render().contains(r#"requests_total{method="GET"} 1"#));
//! ```

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::{Collector, Timer};

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
}

/// Running aggregates of the values recorded for one name and label set.
///
/// ```
/// use porter_metrics::{AggregatingCollector, Collector, NoopCollector};
///
/// let aggregating = AggregatingCollector::new(NoopCollector);
/// aggregating.increment_counter("jobs_total", &[]);
/// aggregating.increment_counter("jobs_total", &[]);
/// let jobs = aggregating.get("jobs_total", &[]).unwrap();
/// assert_eq!((jobs.count, jobs.sum, jobs.last), (2, 2.0, 1.0)); // an increment counts as 1
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// Calls recorded.
    pub count: u64,
    /// Sum of the values (a counter increment counts as 1).
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Most recent value.
    pub last: f64,
}

impl Aggregate {
    fn first(value: f64) -> Self {
        Self {
            count: 1,
            sum: value,
            min: value,
            max: value,
            last: value,
        }
    }

    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.last = value;
    }

    /// The mean of the values (NaN before any).
    ///
    /// ```
    /// use porter_metrics::{AggregatingCollector, Collector, NoopCollector};
    ///
    /// let aggregating = AggregatingCollector::new(NoopCollector);
    /// aggregating.record_gauge("queue_size", 2.0, &[]);
    /// aggregating.record_gauge("queue_size", 4.0, &[]);
    /// assert_eq!(aggregating.get("queue_size", &[]).unwrap().mean(), 3.0);
    /// ```
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// One entry of an [`AggregatingCollector`] snapshot.
///
/// ```
/// use porter_metrics::{AggregatingCollector, Collector, NoopCollector};
///
/// let aggregating = AggregatingCollector::new(NoopCollector);
/// aggregating.record_gauge("queue_size", 5.0, &["region", "eu", "queue", "a"]);
/// let entry = &aggregating.snapshot()[0];
/// assert_eq!(entry.name, "queue_size");
/// let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
/// assert_eq!(entry.labels, [pair("queue", "a"), pair("region", "eu")]); // sorted by key
/// assert_eq!(entry.aggregate.last, 5.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateEntry {
    /// Metric name.
    pub name: String,
    /// Label pairs, sorted by key (a dangling key is dropped, as everywhere).
    pub labels: Vec<(String, String)>,
    /// The aggregates.
    pub aggregate: Aggregate,
}

/// Shards of the aggregate table: threads on different series rarely share a lock.
const SHARDS: usize = 16;

struct Stored {
    hash: u64,
    entry: AggregateEntry,
}

impl Stored {
    /// Whether this is the series of `name` and the ordered label `pairs`.
    fn is(&self, name: &str, pairs: &[(&str, &str)]) -> bool {
        self.entry.name == name
            && self.entry.labels.len() == pairs.len()
            && self
                .entry
                .labels
                .iter()
                .zip(pairs)
                .all(|((k, v), (pk, pv))| k == pk && v == pv)
    }
}

/// Aggregates every value per name and label set, then forwards the call; see the module
/// documentation.
///
/// ```
/// use porter_metrics::{AggregatingCollector, Collector, NoopCollector};
///
/// let aggregating = AggregatingCollector::new(NoopCollector);
/// for v in [0.1, 0.4, 0.2] {
///     aggregating.record_histogram("request_duration", v, &["endpoint", "/users"]);
/// }
/// let a = aggregating.get("request_duration", &["endpoint", "/users"]).unwrap();
/// assert_eq!((a.count, a.min, a.max, a.last), (3, 0.1, 0.4, 0.2));
/// assert!((a.sum - 0.7).abs() < 1e-12);
/// ```
pub struct AggregatingCollector<C> {
    inner: C,
    shards: Arc<[Mutex<HashTable<Stored>>]>,
    hasher: DefaultHashBuilder,
}

impl<C> std::fmt::Debug for AggregatingCollector<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let series: usize = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum();
        f.debug_struct("AggregatingCollector")
            .field("series", &series)
            .finish_non_exhaustive()
    }
}

/// Label pairs in key order (a dangling key is dropped).
fn ordered_pairs<'a>(labels: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut pairs: Vec<(&str, &str)> = labels.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
    pairs.sort_unstable();
    pairs
}

impl<C: Collector> AggregatingCollector<C> {
    /// Wraps `inner`.
    ///
    /// ```
    /// use porter_metrics::{AggregatingCollector, Collector, LocalRecorder};
    ///
    /// let recorder = LocalRecorder::new();
    /// let aggregating = AggregatingCollector::new(recorder.collector());
    /// aggregating.record_gauge("queue_size", 7.0, &[]);
    /// assert_eq!(aggregating.get("queue_size", &[]).map(|a| a.last), Some(7.0));
    /// assert!(recorder.render().contains("queue_size 7")); // forwarded too
    /// ```
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The wrapped collector.
    ///
    /// ```
    /// use porter_metrics::{AggregatingCollector, Collector, LocalRecorder};
    ///
    /// let recorder = LocalRecorder::new();
    /// let aggregating = AggregatingCollector::new(recorder.collector());
    /// aggregating.inner().increment_counter("jobs_total", &[]); // not aggregated
    /// assert!(aggregating.get("jobs_total", &[]).is_none());
    /// assert!(recorder.render().contains("jobs_total 1"));
    /// ```
    pub fn inner(&self) -> &C {
        &self.inner
    }

    fn hash(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        let mut h = self.hasher.build_hasher();
        name.hash(&mut h);
        pairs.hash(&mut h);
        h.finish()
    }

    fn aggregate(&self, name: &str, value: f64, labels: &[&str]) {
        let pairs = ordered_pairs(labels);
        let hash = self.hash(name, &pairs);
        let mut shard = self.shards[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match shard.find_mut(hash, |s| s.is(name, &pairs)) {
            Some(stored) => stored.entry.aggregate.add(value),
            None => {
                let entry = AggregateEntry {
                    name: name.to_owned(),
                    labels: pairs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    aggregate: Aggregate::first(value),
                };
                shard.insert_unique(hash, Stored { hash, entry }, |s| s.hash);
            }
        }
    }

    /// The aggregates of `name` with these label pairs (any order).
    ///
    /// ```
    /// use porter_metrics::{AggregatingCollector, Collector, NoopCollector};
    ///
    /// let aggregating = AggregatingCollector::new(NoopCollector);
    /// aggregating.record_histogram("latency_seconds", 0.5, &["method", "GET", "code", "200"]);
    /// let a = aggregating.get("latency_seconds", &["code", "200", "method", "GET"]);
    /// assert_eq!(a.map(|a| a.max), Some(0.5));
    /// assert!(aggregating.get("latency_seconds", &["code", "500"]).is_none());
    /// ```
    pub fn get(&self, name: &str, labels: &[&str]) -> Option<Aggregate> {
        let pairs = ordered_pairs(labels);
        let hash = self.hash(name, &pairs);
        let shard = self.shards[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .find(hash, |s| s.is(name, &pairs))
            .map(|s| s.entry.aggregate)
    }

    /// Every aggregate, sorted by name then labels. Each series is read atomically; the
    /// snapshot is taken shard by shard while recording goes on.
    ///
    /// ```
    /// use porter_metrics::{AggregatingCollector, Collector, NoopCollector};
    ///
    /// let aggregating = AggregatingCollector::new(NoopCollector);
    /// aggregating.increment_counter("b_total", &[]);
    /// aggregating.increment_counter("a_total", &["k", "2"]);
    /// aggregating.increment_counter("a_total", &["k", "1"]);
    /// let snapshot = aggregating.snapshot();
    /// let order: Vec<(&str, Option<&str>)> = snapshot
    ///     .iter()
    ///     .map(|e| (e.name.as_str(), e.labels.first().map(|(_, v)| v.as_str())))
    ///     .collect();
    /// assert_eq!(order, [("a_total", Some("1")), ("a_total", Some("2")), ("b_total", None)]);
    /// ```
    pub fn snapshot(&self) -> Vec<AggregateEntry> {
        let mut out: Vec<AggregateEntry> = self
            .shards
            .iter()
            .flat_map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .map(|s| s.entry.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        out
    }
}

impl<C: Collector> Collector for AggregatingCollector<C> {
    fn increment_counter(&self, name: &str, labels: &[&str]) {
        self.aggregate(name, 1.0, labels);
        self.inner.increment_counter(name, labels);
    }

    fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
        self.aggregate(name, value, labels);
        self.inner.record_histogram(name, value, labels);
    }

    fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
        self.aggregate(name, value, labels);
        self.inner.record_gauge(name, value, labels);
    }

    /// The timer records into the wrapped collector's timer and into the aggregates.
    fn start_timer(&self, name: &str) -> Timer {
        let inner = self.inner.start_timer(name);
        let shards = self.shards.clone();
        let hasher = self.hasher.clone();
        let name = name.to_owned();
        Timer::with_callback(move |_| {
            let seconds = inner.stop();
            let this = AggregatingCollector {
                inner: crate::NoopCollector,
                shards,
                hasher,
            };
            this.aggregate(&name, seconds, &[]);
        })
    }
}
