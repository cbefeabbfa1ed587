//! The recorder layer: keeps every scrape valid, whatever is recorded, and loses nothing.
//!
//! [`PorterLayer`] wraps any [`Recorder`] (in this crate, the exporter's `PrometheusRecorder`)
//! and sees every call of the `metrics` macros and of [`PrometheusCollector`] before it does:
//!
//! | input | what happens |
//! |---|---|
//! | empty metric name | sample dropped, counted as `invalid_name` |
//! | name starting with `porter_metrics_` | dropped, counted as `reserved_name` |
//! | name used earlier with another kind, or one of a histogram's `_bucket`/`_sum`/`_count` names | dropped, counted as `kind_conflict` (the first kind wins) |
//! | a new name past the metric-name limit | dropped, counted as `metric_limit` |
//! | invalid label key (`a-b`, `é`) | sanitized as the exporter does (`a_b`) |
//! | reserved key (`__x`), `le` on a histogram | renamed `exported___x`, `exported_le` |
//! | keys equal after that | the key that needed no change keeps the name; others become `key_1`, `key_2`, ... |
//! | empty label key | renamed `exported_` |
//! | empty label value | label removed (Prometheus treats it as absent) |
//! | names that sanitize alike (`a.b`, `a-b`, `a_b`) | one metric, `a_b` |
//! | the same labels in another order | the same series |
//! | a histogram name ending in `bucket`, `sum` or `count` (the exporter would print a bare `NAME` sample) | exported as `NAME_histogram` |
//! | NaN or ±Inf histogram observation | dropped, counted as `non_finite` |
//! | NaN or ±Inf gauge value | kept (valid in the exposition) |
//! | a new label set past the per-metric or total series limit | folded into the metric's `{otel_metric_overflow="true"}` series, counted in `porter_metrics_overflow_samples_total{metric}` |
//!
//! Each distinct problem is logged once at `WARN`; the self-metrics are listed in
//! [`self_metrics`]. Histogram observations wait in per-series buffers until a render
//! moves them into the recorder below ([`PorterRecorder::render`]), so none is lost to a
//! drain racing it. Calls find their handle in a per-thread cache, then in a shared index;
//! only a key new to the process goes through the rules.
//!
//! ```
//! use porter_metrics::{self_metrics::DROPPED_SAMPLES, testing::Capture};
//!
//! let capture = Capture::new();
//! capture.run(|| {
//!     metrics::counter!("jobs_total", "queue-name" => "a", "region" => "").increment(1);
//!     metrics::histogram!("latency_seconds").record(f64::NAN);
//! });
//! let scrape = capture.exposition().expect("always a valid scrape");
//! // `queue-name` sanitized, the empty `region` removed:
//! assert_eq!(scrape.value("jobs_total", &["queue_name", "a"]), Some(1.0));
//! assert_eq!(scrape.value(DROPPED_SAMPLES, &["reason", "non_finite"]), Some(1.0));
//! ```
//!
//! [`PrometheusCollector`]: crate::PrometheusCollector

mod histogram;
mod limits;
mod lookup;
pub(crate) mod rules;
pub mod self_metrics;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Level, Metadata,
    Recorder, SharedString, Unit,
};
use metrics_util::layers::Layer;

use crate::handle::{Handle, Kind};
use crate::key::{self, PairsKey};
use histogram::{BufferedHistogram, DropCounters, Histograms};
pub use limits::Limits;
use limits::{AdmittedFamily, Families, Outcome};
use lookup::{KeyProbe, Now, PairsProbe, Resolved, SharedIndex, ThreadCache};
use rules::{OVERFLOW_LABEL, SELF_PREFIX};
use self_metrics::{DropReason, LabelDrop, SelfMetrics};

static NEXT_LAYER: AtomicU64 = AtomicU64::new(1);

/// Most user descriptions remembered (to let them win over the default HELP text).
const MAX_DESCRIBED: usize = 100_000;

/// What the layer registers the collector's series with.
static COLLECTOR_METADATA: Metadata<'static> = Metadata::new(
    "porter_metrics::collector",
    Level::INFO,
    Some(module_path!()),
);
/// What the layer registers a series with again, after the exporter expired it.
static DRAIN_METADATA: Metadata<'static> =
    Metadata::new("porter_metrics::drain", Level::INFO, Some(module_path!()));

thread_local! {
    static PAIRS: RefCell<Option<ThreadCache<PairsKey>>> = const { RefCell::new(None) };
    static KEYS: RefCell<Option<ThreadCache<Key>>> = const { RefCell::new(None) };
}

/// A [`Layer`] that makes any recorder's exposition valid (see the module documentation).
///
/// ```
/// use metrics_exporter_prometheus::PrometheusBuilder;
/// use metrics_util::layers::Layer;
/// use porter_metrics::PorterLayer;
///
/// let recorder = PorterLayer::default().layer(PrometheusBuilder::new().build_recorder());
/// metrics::with_local_recorder(&recorder, || {
///     metrics::counter!("jobs", "a-b" => "1", "a_b" => "2").increment(1);
///     metrics::gauge!("jobs").set(1.0); // another kind for the same name: dropped, counted
/// });
/// let text = recorder.render();
/// assert!(text.contains(r#"jobs{a_b="2",a_b_1="1"} 1"#));
/// assert!(text.contains(r#"porter_metrics_dropped_samples_total{reason="kind_conflict"} 1"#));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PorterLayer {
    limits: Limits,
}

impl PorterLayer {
    /// A layer enforcing `limits`.
    ///
    /// ```
    /// use porter_metrics::{Limits, PorterLayer};
    /// let layer = PorterLayer::new(Limits::default().with_series_per_metric(100));
    /// # let _ = layer;
    /// ```
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }
}

impl<R: Recorder> Layer<R> for PorterLayer {
    type Output = PorterRecorder<R>;

    fn layer(&self, inner: R) -> PorterRecorder<R> {
        PorterRecorder::new(inner, self.limits)
    }
}

/// The recorder [`PorterLayer`] produces; see the module documentation.
///
/// ```
/// use metrics_exporter_prometheus::PrometheusBuilder;
/// use metrics_util::layers::Layer;
/// use porter_metrics::{PorterLayer, PorterRecorder};
///
/// let exporter = PrometheusBuilder::new().build_recorder();
/// let recorder: PorterRecorder<_> = PorterLayer::default().layer(exporter);
/// metrics::with_local_recorder(&recorder, || metrics::counter!("").increment(1));
/// let text = recorder.render();
/// assert!(text.contains(r#"porter_metrics_dropped_samples_total{reason="invalid_name"} 1"#));
/// ```
pub struct PorterRecorder<R> {
    inner: R,
    /// Unique for the life of the process: keys this layer's entries in thread caches.
    id: u64,
    /// Bumped when every cached decision must be made again (bound, reconfigured).
    epoch: AtomicU64,
    /// Idle timeout in ms, 0 for none.
    idle_ms: AtomicU64,
    clock: Clock,
    families: Families,
    self_metrics: SelfMetrics,
    /// Sanitized names the user described: their text wins over the default.
    described: Mutex<HashSet<String>>,
    histograms: Histograms,
    /// Held while the storage below is drained (see [`PorterRecorder::drained`]).
    drain_lock: Mutex<()>,
    /// Collector calls (flat pairs) and macro calls (keys) to their handles.
    pairs: SharedIndex<PairsKey>,
    keys: SharedIndex<Key>,
}

/// The layer's clock: milliseconds since it was created, precise or as of the last tick
/// (cheap to read on every call).
struct Clock {
    started: Instant,
    coarse_ms: AtomicU64,
}

impl Clock {
    fn precise_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn tick(&self) -> u64 {
        let now = self.precise_ms();
        self.coarse_ms.store(now, Ordering::Relaxed);
        now
    }
}

/// How many keys a shared index may hold: twice the series limit (keys that name the same
/// series in other ways count too).
fn index_cap(limits: Limits) -> usize {
    limits.series.saturating_mul(2).max(1024)
}

/// Where a call came from: the collector's metrics get a default HELP text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Collector,
    Macro,
}

impl<R> std::fmt::Debug for PorterRecorder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (series, names) = self.families.counts();
        f.debug_struct("PorterRecorder")
            .field("id", &self.id)
            .field("series", &series)
            .field("metric_names", &names)
            .finish_non_exhaustive()
    }
}

impl<R: Recorder> PorterRecorder<R> {
    pub(crate) fn new(inner: R, limits: Limits) -> Self {
        let self_metrics = SelfMetrics::register(&inner);
        let drops = DropCounters {
            non_finite: self_metrics.dropped(DropReason::NonFinite).clone(),
            batch_limit: self_metrics.dropped(DropReason::BatchLimit).clone(),
        };
        Self {
            inner,
            id: NEXT_LAYER.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
            idle_ms: AtomicU64::new(0),
            clock: Clock {
                started: Instant::now(),
                coarse_ms: AtomicU64::new(0),
            },
            families: Families::new(limits),
            self_metrics,
            described: Mutex::new(HashSet::new()),
            histograms: Histograms::new(drops),
            drain_lock: Mutex::new(()),
            pairs: SharedIndex::new(index_cap(limits)),
            keys: SharedIndex::new(index_cap(limits)),
        }
    }

    /// The recorder below this layer.
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use metrics_util::layers::Layer;
    ///
    /// let exporter = PrometheusBuilder::new().build_recorder();
    /// let recorder = porter_metrics::PorterLayer::default().layer(exporter);
    /// metrics::with_local_recorder(&recorder, || metrics::gauge!("in_flight").set(2.0));
    /// let handle = recorder.inner().handle(); // the exporter's handle
    /// assert!(handle.render().contains("in_flight 2"));
    /// ```
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Unique for the life of the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// What lookups check entries against now.
    #[inline]
    fn now(&self) -> Now {
        let idle = self.idle_ms.load(Ordering::Relaxed);
        let ms = if idle == 0 {
            0
        } else {
            self.clock.coarse_ms.load(Ordering::Relaxed)
        };
        Now {
            layer: self.id,
            epoch: self.epoch.load(Ordering::Relaxed),
            ms,
            stale_before: if idle == 0 {
                0
            } else {
                ms.saturating_sub(idle / 2)
            },
        }
    }

    /// Runs `f` on the handle of a collector call (the collector's one way in).
    #[inline]
    pub(crate) fn with_pairs<T>(
        &self,
        kind: Kind,
        name: &str,
        labels: &[&str],
        f: impl Fn(&Handle) -> T,
    ) -> T {
        let probe = PairsProbe::new(kind, name, labels);
        let now = self.now();
        let resolve = || {
            let (key, dangling) = key::from_pairs(name, labels);
            if dangling {
                self.self_metrics.warn_once(
                    "dangling_key",
                    name,
                    "odd number of label strings; the last key has no value and was dropped",
                );
            }
            let (handle, keep) = self.resolve(&key, kind, &COLLECTOR_METADATA, Origin::Collector);
            (Resolved { handle, dangling }, keep)
        };
        lookup::find(&PAIRS, &self.pairs, &now, &probe, resolve, |r| {
            if r.dangling {
                self.self_metrics
                    .dropped_labels(LabelDrop::DanglingKey)
                    .increment(1);
            }
            f(&r.handle)
        })
    }

    /// The handle of a macro call.
    fn handle(&self, key: &Key, kind: Kind, metadata: &Metadata<'_>) -> Handle {
        let probe = KeyProbe { kind, key };
        let resolve = || {
            let (handle, keep) = self.resolve(key, kind, metadata, Origin::Macro);
            (
                Resolved {
                    handle,
                    dangling: false,
                },
                keep,
            )
        };
        let now = self.now();
        lookup::find(&KEYS, &self.keys, &now, &probe, resolve, |r| {
            r.handle.clone()
        })
    }

    /// Applies the rules to a call: which family, which key, which series. Says whether
    /// the handle may be shared by every call of this key (not a folded or dropped one).
    fn resolve(
        &self,
        key: &Key,
        kind: Kind,
        metadata: &Metadata<'_>,
        origin: Origin,
    ) -> (Handle, bool) {
        let family = match self.families.family(key.name(), kind) {
            Ok(family) => family,
            Err(reason) => {
                self.warn_dropped(reason, key.name(), kind);
                return (self.self_metrics.dropped_handle(kind, reason), false);
            }
        };
        // Raw names that sanitize alike must reach the exporter as one name: it keys series
        // by raw name but prints them by sanitized name, and would let one overwrite another.
        let clean = rules::labels_are_clean(key.labels(), kind);
        let exported = if clean && key.name() == family.exported_name() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(self.rewrite(key, kind, clean, family.exported_name()))
        };
        let hash = key::series_hash(&exported);
        match self
            .families
            .admit(&family, hash, self.clock.coarse_ms.load(Ordering::Relaxed))
        {
            Outcome::Known => {}
            Outcome::New => {
                if origin == Origin::Collector {
                    self.default_help(&family, key.name(), kind);
                }
                self.publish_counts();
            }
            Outcome::Overflow => return (self.folded(&family, kind, metadata), false),
        }
        (
            self.register(&exported, hash, kind, metadata, &family),
            true,
        )
    }

    /// The handle of a call folded into its family's overflow series: each use also counts
    /// one folded sample in `porter_metrics_overflow_samples_total{metric}`.
    fn folded(&self, family: &Arc<AdmittedFamily>, kind: Kind, metadata: &Metadata<'_>) -> Handle {
        let (overflow, counter) = family.overflow.get_or_init(|| {
            let key = Key::from_parts(
                family.exported_name().to_owned(),
                vec![metrics::Label::new(OVERFLOW_LABEL, "true")],
            );
            (
                key,
                SelfMetrics::overflow_counter(&self.inner, &family.name),
            )
        });
        self.self_metrics.warn_once(
            "overflow",
            &family.name,
            "series limit reached; new label sets fold into the otel_metric_overflow series",
        );
        let folded = counter.clone();
        let hash = key::series_hash(overflow);
        match kind {
            Kind::Counter => {
                let inner = self.inner.register_counter(overflow, metadata);
                Handle::Counter(Counter::from_arc(Arc::new(Folded { inner, folded })))
            }
            Kind::Gauge => {
                let inner = self.inner.register_gauge(overflow, metadata);
                Handle::Gauge(Gauge::from_arc(Arc::new(Folded { inner, folded })))
            }
            Kind::Histogram => {
                let inner = self.buffered(overflow, hash, metadata, family);
                Handle::Histogram(Histogram::from_arc(Arc::new(Folded { inner, folded })))
            }
        }
    }

    /// The handle of the exported series `key` (series hash `hash`). Histograms get the
    /// series' lossless buffer, never the storage below.
    fn register(
        &self,
        key: &Key,
        hash: u64,
        kind: Kind,
        metadata: &Metadata<'_>,
        family: &Arc<AdmittedFamily>,
    ) -> Handle {
        match kind {
            Kind::Counter => Handle::Counter(self.inner.register_counter(key, metadata)),
            Kind::Gauge => Handle::Gauge(self.inner.register_gauge(key, metadata)),
            Kind::Histogram => Handle::Histogram(Histogram::from_arc(
                self.buffered(key, hash, metadata, family),
            )),
        }
    }

    fn buffered(
        &self,
        key: &Key,
        hash: u64,
        metadata: &Metadata<'_>,
        family: &Arc<AdmittedFamily>,
    ) -> Arc<BufferedHistogram> {
        self.histograms.get_or_insert(hash, key, family, || {
            self.inner.register_histogram(key, metadata)
        })
    }

    /// A key named `name`, with valid labels (rewritten unless `clean` says they are).
    fn rewrite(&self, key: &Key, kind: Kind, clean: bool, name: &str) -> Key {
        let name = name.to_owned();
        if clean {
            return Key::from_parts(name, key.labels().cloned().collect::<Vec<_>>());
        }
        let (labels, renamed) =
            rules::rewrite_labels(key.labels().map(|l| (l.key(), l.value())), kind);
        if renamed > 0 {
            self.self_metrics.warn_once(
                "renamed_key",
                key.name(),
                "label keys renamed to be valid and distinct",
            );
        }
        Key::from_parts(name, labels)
    }

    fn default_help(&self, family: &AdmittedFamily, raw: &str, kind: Kind) {
        if family.has_help.swap(true, Ordering::AcqRel) {
            return;
        }
        let described = self
            .described
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&family.name);
        if described {
            return;
        }
        let text = match kind {
            Kind::Counter => "Counter for",
            Kind::Gauge => "Gauge for",
            Kind::Histogram => "Histogram for",
        };
        let help = SharedString::from(rules::escape_value(&format!("{text} {raw}")).into_owned());
        let name = KeyName::from(family.export.clone().unwrap_or_else(|| raw.to_owned()));
        match kind {
            Kind::Counter => self.inner.describe_counter(name, None, help),
            Kind::Gauge => self.inner.describe_gauge(name, None, help),
            Kind::Histogram => self.inner.describe_histogram(name, None, help),
        }
    }

    /// Records the user's description; returns the escaped text to forward, if any.
    fn describe(&self, name: &KeyName, description: &SharedString) -> Option<SharedString> {
        let family = rules::family_name(name.as_str());
        if family.is_empty() || family.starts_with(SELF_PREFIX) {
            return None;
        }
        let mut described = self
            .described
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if described.len() < MAX_DESCRIBED {
            described.insert(family.into_owned());
        }
        Some(SharedString::from(
            rules::escape_value(description).into_owned(),
        ))
    }

    /// Warns once about a dropped metric; its handle counts each use.
    fn warn_dropped(&self, reason: DropReason, name: &str, kind: Kind) {
        self.self_metrics.warn_once(
            reason.as_str(),
            name,
            &format!("{} ({})", reason.message(), kind.as_str()),
        );
    }

    /// Counts `n` samples dropped for `reason`.
    pub(crate) fn count_dropped(&self, reason: DropReason, n: u64) {
        self.self_metrics.dropped(reason).increment(n);
    }

    fn publish_counts(&self) {
        let (series, names) = self.families.counts();
        self.self_metrics.set_series(series, names);
    }

    /// Applies a pipeline's settings; every cached decision is made again.
    pub(crate) fn configure(&self, limits: Limits, idle: Option<Duration>) {
        self.families.set_limits(limits);
        self.pairs.set_cap(index_cap(limits));
        self.keys.set_cap(index_cap(limits));
        let idle_ms = idle.map_or(0, |t| {
            u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.idle_ms.store(idle_ms, Ordering::Relaxed);
        self.clock.tick();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The idle timeout in effect, if any.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Periodic work: advances the clock, forgets idle series and keys, publishes counts.
    pub(crate) fn upkeep(&self) {
        let now = self.clock.tick();
        if let Some(idle) = self.idle_timeout() {
            // The exporter removes a series idle for the timeout; forget it then too (plus a
            // second of slack). Entries in use are resolved again every half timeout, so a
            // series in use is never forgotten.
            let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
            let before = now.saturating_sub(idle.saturating_add(1000));
            self.families.forget_idle(before);
            self.pairs.forget_before(before);
            self.keys.forget_before(before);
        }
        self.publish_counts();
    }

    /// Runs `f` on the recorder below once every buffered histogram observation has been
    /// moved into it, under the layer's drain lock: the one place where the storage below is
    /// drained, so no observation can race a drain.
    pub(crate) fn drained<T>(&self, f: impl FnOnce(&R) -> T) -> T {
        let _drain = self
            .drain_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.precise_ms();
        // With idle expiry, a series fed longer ago than half the timeout may have been
        // expired by the exporter: register it again before feeding it.
        let refresh_before = self.idle_timeout().map(|idle| {
            now.saturating_sub(u64::try_from(idle.as_millis() / 2).unwrap_or(u64::MAX))
        });
        self.histograms.drain(now, refresh_before, &|key| {
            self.inner.register_histogram(key, &DRAIN_METADATA)
        });
        f(&self.inner)
    }

    /// Keys in the shared indexes (collector calls, macro calls).
    #[cfg(test)]
    fn indexed(&self) -> (usize, usize) {
        (self.pairs.len(), self.keys.len())
    }
}

impl PorterRecorder<metrics_exporter_prometheus::PrometheusRecorder> {
    /// The exporter's text exposition of everything recorded, histogram observations
    /// included: they wait in the layer's buffers until a render moves them into the
    /// exporter (render through this method, not through the exporter's own handle).
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use metrics_util::layers::Layer;
    ///
    /// let recorder = porter_metrics::PorterLayer::default().layer(PrometheusBuilder::new().build_recorder());
    /// metrics::with_local_recorder(&recorder, || metrics::histogram!("latency_seconds").record(0.2));
    /// assert!(recorder.render().contains("latency_seconds_count 1"));
    /// ```
    pub fn render(&self) -> String {
        self.drained(|exporter| exporter.handle().render())
    }
}

impl<R: Recorder> Recorder for PorterRecorder<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(description) = self.describe(&key, &description) {
            self.inner.describe_counter(key, unit, description);
        }
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(description) = self.describe(&key, &description) {
            self.inner.describe_gauge(key, unit, description);
        }
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(description) = self.describe(&key, &description) {
            let key = match rules::histogram_export_name(&rules::family_name(key.as_str())) {
                Some(export) => KeyName::from(export),
                None => key,
            };
            self.inner.describe_histogram(key, unit, description);
        }
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.handle(key, Kind::Counter, metadata).into_counter()
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.handle(key, Kind::Gauge, metadata).into_gauge()
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.handle(key, Kind::Histogram, metadata).into_histogram()
    }
}

/// A handle folded into its metric's overflow series; see [`PorterRecorder::folded`].
struct Folded<H> {
    inner: H,
    folded: Counter,
}

impl CounterFn for Folded<Counter> {
    fn increment(&self, value: u64) {
        self.folded.increment(1);
        self.inner.increment(value);
    }
    fn absolute(&self, value: u64) {
        self.folded.increment(1);
        self.inner.absolute(value);
    }
}

impl GaugeFn for Folded<Gauge> {
    fn increment(&self, value: f64) {
        self.folded.increment(1);
        self.inner.increment(value);
    }
    fn decrement(&self, value: f64) {
        self.folded.increment(1);
        self.inner.decrement(value);
    }
    fn set(&self, value: f64) {
        self.folded.increment(1);
        self.inner.set(value);
    }
}

impl HistogramFn for Folded<Arc<BufferedHistogram>> {
    fn record(&self, value: f64) {
        // A non-finite value is dropped (and counted) by the buffer, not folded.
        if self.inner.observe(value, 1) {
            self.folded.increment(1);
        }
    }
    fn record_many(&self, value: f64, count: usize) {
        if self.inner.observe(value, count) {
            self.folded.increment(count as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    fn layer() -> PorterRecorder<metrics_exporter_prometheus::PrometheusRecorder> {
        PorterLayer::new(Limits::unlimited()).layer(PrometheusBuilder::new().build_recorder())
    }

    #[test]
    fn every_key_is_resolved_once_and_shared_by_every_thread() {
        let recorder = layer();
        let labels: Vec<String> = (0..3 * lookup::MIN_THREAD_ENTRIES)
            .map(|i| i.to_string())
            .collect();
        let record = || {
            for _ in 0..2 {
                for value in &labels {
                    recorder.with_pairs(Kind::Counter, "shared_total", &["i", value], |h| {
                        if let Handle::Counter(c) = h {
                            c.increment(1);
                        }
                    });
                    metrics::with_local_recorder(&recorder, || {
                        metrics::counter!("shared_macro_total", "i" => value.clone()).increment(1);
                    });
                }
            }
        };
        std::thread::scope(|s| {
            s.spawn(record);
            s.spawn(record);
        });
        // One index entry per key, however many threads and cache evictions.
        assert_eq!(recorder.indexed(), (labels.len(), labels.len()));
        let text = recorder.render();
        assert!(text.contains(r#"shared_total{i="0"} 4"#), "{text}");
        assert!(text.contains(r#"shared_macro_total{i="3071"} 4"#));
        assert!(text.contains(&format!("porter_metrics_series {}", 2 * labels.len())));
    }
}
