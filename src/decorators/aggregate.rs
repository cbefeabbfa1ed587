//! [`AggregatingCollector`]: running aggregates (count, sum, min, max, last) per name and
//! label set, exact under any number of threads, readable while recording goes on.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::collector::{Collector, NoopCollector, Timer};

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
#[non_exhaustive]
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
#[non_exhaustive]
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
                inner: NoopCollector,
                shards,
                hasher,
            };
            this.aggregate(&name, seconds, &[]);
        })
    }

    /// Aggregates `n` as one value (as `increment_counter` aggregates 1).
    fn add_to_counter(&self, name: &str, n: u64, labels: &[&str]) {
        self.aggregate(name, n as f64, labels);
        self.inner.add_to_counter(name, n, labels);
    }

    fn describe_counter(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        self.inner.describe_counter(name, unit, help);
    }

    fn describe_gauge(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        self.inner.describe_gauge(name, unit, help);
    }

    fn describe_histogram(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        self.inner.describe_histogram(name, unit, help);
    }

    /// Aggregates `delta` as one value.
    fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]) {
        self.aggregate(name, delta, labels);
        self.inner.add_to_gauge(name, delta, labels);
    }

    fn increment_counter_with_exemplar(&self, name: &str, labels: &[&str], exemplar: &[&str]) {
        self.aggregate(name, 1.0, labels);
        self.inner
            .increment_counter_with_exemplar(name, labels, exemplar);
    }

    fn record_histogram_with_exemplar(
        &self,
        name: &str,
        value: f64,
        labels: &[&str],
        exemplar: &[&str],
    ) {
        self.aggregate(name, value, labels);
        self.inner
            .record_histogram_with_exemplar(name, value, labels, exemplar);
    }
}
