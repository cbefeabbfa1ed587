//! The recorder layer: keeps every scrape valid, whatever is recorded.
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
//! Each distinct problem is logged once at `WARN`. The self-metrics are listed in
//! [`crate::self_metrics`].
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

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_util::layers::Layer;

use crate::cache::{self, Handle};
use crate::families::{Families, Family, Limits, Outcome};
use crate::histogram::{BufferedHistogram, DropCounters, Histograms};
use crate::policy::{self, Kind, OVERFLOW_LABEL, SELF_PREFIX};
use crate::self_metrics::{DropReason, SelfMetrics};

/// The `target` of the metadata [`PrometheusCollector`](crate::PrometheusCollector) registers
/// with: the layer gives the metrics it creates a default HELP text.
pub(crate) const COLLECTOR_TARGET: &str = "porter_metrics::collector";

static NEXT_LAYER: AtomicU64 = AtomicU64::new(1);

static DRAIN_METADATA: Metadata<'static> =
    Metadata::new("porter_metrics::drain", metrics::Level::INFO, Some(module_path!()));

/// Most user descriptions remembered (to let them win over the default HELP text).
const MAX_DESCRIBED: usize = 100_000;

/// A [`Layer`] that makes any recorder's exposition valid (see the module documentation).
///
/// ```
/// use metrics_exporter_prometheus::PrometheusBuilder;
/// use metrics_util::layers::Layer;
/// use porter_metrics::PorterLayer;
///
/// let exporter = PrometheusBuilder::new().build_recorder();
/// let handle = exporter.handle();
/// let recorder = PorterLayer::default().layer(exporter);
/// metrics::with_local_recorder(&recorder, || {
///     metrics::counter!("jobs", "a-b" => "1", "a_b" => "2").increment(1);
///     metrics::gauge!("jobs").set(1.0); // another kind for the same name: dropped, counted
/// });
/// let text = handle.render();
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
    /// let layer = PorterLayer::new(Limits { series_per_metric: 100, ..Limits::default() });
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

/// State shared by a layer and the histogram handles it hands out.
pub(crate) struct LayerState {
    /// Unique for the life of the process; keys this layer's entries in per-thread caches.
    pub(crate) id: u64,
    /// Bumped when cached decisions must be made again (limits or idle timeout changed).
    pub(crate) epoch: AtomicU64,
    /// Idle timeout in milliseconds, 0 for none.
    idle_ms: AtomicU64,
    started: Instant,
    pub(crate) families: Families,
    pub(crate) self_metrics: SelfMetrics,
    /// Sanitized names the user described: their text wins over the default.
    described: Mutex<HashSet<String>>,
    /// Coarse seconds, advanced by the pipeline's upkeep; used to expire idle series.
    clock: AtomicU32,
    /// Every buffered histogram series.
    histograms: Histograms,
    /// Held while the storage below is drained (see [`PorterRecorder::drained`]).
    drain_lock: Mutex<()>,
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
/// let text = recorder.inner().handle().render();
/// assert!(text.contains(r#"porter_metrics_dropped_samples_total{reason="invalid_name"} 1"#));
/// ```
pub struct PorterRecorder<R> {
    inner: R,
    state: Arc<LayerState>,
}

impl<R> std::fmt::Debug for PorterRecorder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (series, names) = self.state.families.counts();
        f.debug_struct("PorterRecorder")
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
        let state = Arc::new(LayerState {
            id: NEXT_LAYER.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
            idle_ms: AtomicU64::new(0),
            started: Instant::now(),
            families: Families::new(limits),
            self_metrics,
            described: Mutex::new(HashSet::new()),
            clock: AtomicU32::new(0),
            histograms: Histograms::new(drops),
            drain_lock: Mutex::new(()),
        });
        Self { inner, state }
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
    /// let handle = recorder.inner().handle(); // the exporter's handle, to render
    /// assert!(handle.render().contains("in_flight 2"));
    /// ```
    pub fn inner(&self) -> &R {
        &self.inner
    }

    pub(crate) fn state(&self) -> &LayerState {
        &self.state
    }

    /// The handle for a call: from this thread's cache when the same key was resolved
    /// recently, otherwise resolved by the policy and cached.
    fn handle(&self, key: &Key, kind: Kind, metadata: &Metadata<'_>) -> Handle {
        let state = &self.state;
        if metadata.target() == COLLECTOR_TARGET {
            // The collector caches the handle itself.
            return match self.resolve(key, kind, metadata) {
                Ok(handle) => handle,
                Err(reason) => Handle::dropped(kind, state.self_metrics.sink(reason)),
            };
        }
        let epoch = state.epoch.load(Ordering::Acquire);
        let (now, stale_before) = state.clock_ms();
        if let Some(handle) = cache::keyed_hit(state.id, epoch, kind, key, stale_before) {
            return handle;
        }
        match self.resolve(key, kind, metadata) {
            Ok(handle) => {
                cache::keyed_insert(state.id, epoch, kind, key, &handle, now);
                handle
            }
            Err(reason) => Handle::dropped(kind, state.self_metrics.sink(reason)),
        }
    }

    /// Applies the policy to a call: which family, which key, which series.
    fn resolve(
        &self,
        key: &Key,
        kind: Kind,
        metadata: &Metadata<'_>,
    ) -> Result<Handle, DropReason> {
        let family = match self.state.families.family(key.name(), kind) {
            Ok(family) => family,
            Err(reason) => {
                self.state.warn_dropped(reason, key.name(), kind);
                return Err(reason);
            }
        };
        // Raw names that sanitize alike must reach the exporter as one name: it keys series
        // by raw name but prints them by sanitized name, and would let one overwrite another.
        let clean = policy::labels_are_clean(key.labels(), kind);
        let exported = if clean && key.name() == family.exported_name() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(self.rewrite(key, kind, clean, family.exported_name()))
        };
        let now = self.state.clock.load(Ordering::Relaxed);
        let hash = self.state.families.series_hash(&exported);
        match self.state.families.admit(&family, hash, now) {
            Outcome::Known => {}
            Outcome::New => {
                if metadata.target() == COLLECTOR_TARGET {
                    self.default_help(&family, key.name(), kind);
                }
                self.state.publish_counts();
            }
            Outcome::Overflow => {
                let (overflow, counter) = family.overflow.get_or_init(|| {
                    let key = Key::from_parts(
                        family.exported_name().to_owned(),
                        vec![metrics::Label::new(OVERFLOW_LABEL, "true")],
                    );
                    let counter = SelfMetrics::overflow_counter(&self.inner, &family.name);
                    (key, counter)
                });
                let overflow_hash = self.state.families.series_hash(overflow);
                self.state.self_metrics.warn_once(
                    "overflow",
                    &family.name,
                    "series limit reached; new label sets fold into the otel_metric_overflow series",
                );
                let folded = counter.clone();
                return Ok(match kind {
                    Kind::Histogram => {
                        let inner = self.buffered(overflow, overflow_hash, metadata, &family);
                        Handle::Histogram(Histogram::from_arc(Arc::new(Folded { inner, folded })))
                    }
                    _ => Folded::wrap(
                        self.register(overflow, overflow_hash, kind, metadata, &family),
                        folded,
                    ),
                });
            }
        }
        Ok(self.register(&exported, hash, kind, metadata, &family))
    }

    /// The handle of the exported series `key` (series hash `hash`). Histograms get the
    /// series' lossless buffer (see [`crate::histogram`]), never the exporter's storage.
    fn register(
        &self,
        key: &Key,
        hash: u64,
        kind: Kind,
        metadata: &Metadata<'_>,
        family: &Arc<Family>,
    ) -> Handle {
        match kind {
            Kind::Counter => Handle::Counter(self.inner.register_counter(key, metadata)),
            Kind::Gauge => Handle::Gauge(self.inner.register_gauge(key, metadata)),
            Kind::Histogram => {
                Handle::Histogram(Histogram::from_arc(self.buffered(key, hash, metadata, family)))
            }
        }
    }

    fn buffered(
        &self,
        key: &Key,
        hash: u64,
        metadata: &Metadata<'_>,
        family: &Arc<Family>,
    ) -> Arc<BufferedHistogram> {
        self.state.histograms.get_or_insert(hash, key, family, || {
            self.inner.register_histogram(key, metadata)
        })
    }

    /// Runs `f` on the recorder below once every buffered histogram observation has been
    /// moved into it, under the layer's drain lock: the one place where the storage below is
    /// drained, so no observation can race a drain (see [`crate::histogram`]).
    pub(crate) fn drained<T>(&self, f: impl FnOnce(&R) -> T) -> T {
        let _drain = self
            .state
            .drain_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = self.state.now_ms();
        // With idle expiry, a series fed longer ago than half the timeout may have been
        // expired by the exporter: register it again before feeding it.
        let refresh_before = self
            .state
            .idle_timeout()
            .map(|idle| now.saturating_sub(u64::try_from(idle.as_millis() / 2).unwrap_or(u64::MAX)));
        self.state.histograms.drain(now, refresh_before, &|key| {
            self.inner.register_histogram(key, &DRAIN_METADATA)
        });
        f(&self.inner)
    }

    /// A key named `name`, with valid labels (rewritten unless `clean` says they are).
    fn rewrite(&self, key: &Key, kind: Kind, clean: bool, name: &str) -> Key {
        let name = name.to_owned();
        if clean {
            return Key::from_parts(name, key.labels().cloned().collect::<Vec<_>>());
        }
        let (labels, rewrites) =
            policy::rewrite_labels(key.labels().map(|l| (l.key(), l.value())), kind);
        if rewrites.renamed_keys > 0 {
            self.state.self_metrics.warn_once(
                "renamed_key",
                key.name(),
                "label keys renamed to be valid and distinct",
            );
        }
        Key::from_parts(name, labels)
    }

    fn default_help(&self, family: &Family, raw: &str, kind: Kind) {
        if family.has_help.swap(true, Ordering::AcqRel) {
            return;
        }
        let described = self
            .state
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
        let help = SharedString::from(policy::escape_value(&format!("{text} {raw}")).into_owned());
        let name = KeyName::from(family.export.clone().unwrap_or_else(|| raw.to_owned()));
        match kind {
            Kind::Counter => self.inner.describe_counter(name, None, help),
            Kind::Gauge => self.inner.describe_gauge(name, None, help),
            Kind::Histogram => self.inner.describe_histogram(name, None, help),
        }
    }

    /// Records the user's description; returns the escaped text to forward, if any.
    fn describe(&self, name: &KeyName, description: &SharedString) -> Option<SharedString> {
        let family = policy::family_name(name.as_str());
        if family.is_empty() || family.starts_with(SELF_PREFIX) {
            return None;
        }
        let mut described = self
            .state
            .described
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if described.len() < MAX_DESCRIBED {
            described.insert(family.into_owned());
        }
        Some(SharedString::from(
            policy::escape_value(description).into_owned(),
        ))
    }
}

impl LayerState {
    /// Warns once about a dropped metric; its handle counts each use (see `DropSink`).
    fn warn_dropped(&self, reason: DropReason, name: &str, kind: Kind) {
        let message = match reason {
            DropReason::InvalidName => "empty metric name; sample dropped",
            DropReason::ReservedName => "the porter_metrics_ prefix is reserved; sample dropped",
            DropReason::KindConflict => {
                "name already used by another metric kind or histogram series; sample dropped"
            }
            DropReason::MetricLimit => "metric name limit reached; sample dropped",
            DropReason::NonFinite => "non-finite histogram observation dropped",
            DropReason::BufferFull => "pre-export buffer full; sample dropped",
            DropReason::BatchLimit => "record_many count above the batch limit; the rest dropped",
        };
        self.self_metrics.warn_once(
            reason.as_str(),
            name,
            &format!("{message} ({})", kind.as_str()),
        );
    }

    pub(crate) fn publish_counts(&self) {
        let (series, names) = self.families.counts();
        self.self_metrics.set_series(series, names);
    }

    /// Advances the coarse clock used to expire idle series.
    pub(crate) fn tick(&self, seconds: u32) {
        self.clock.store(seconds, Ordering::Relaxed);
    }

    /// Applies a pipeline's settings; decisions cached under the old ones are made again.
    pub(crate) fn configure(&self, limits: Limits, idle: Option<Duration>) {
        self.families.set_limits(limits);
        let idle_ms = idle.map_or(0, |t| {
            u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.idle_ms.store(idle_ms, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The idle timeout in effect, if any.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Milliseconds since the layer was created.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `(now, stale_before)` in milliseconds since the layer was created, in one read of the
    /// idle setting: cached handles resolved before `stale_before` are resolved again, as
    /// the exporter may have removed their series. Zeros without an idle timeout.
    #[inline]
    pub(crate) fn clock_ms(&self) -> (u64, u64) {
        match self.idle_ms.load(Ordering::Relaxed) {
            0 => (0, 0),
            idle => {
                let now = self.now_ms();
                (now, now.saturating_sub(idle / 2))
            }
        }
    }
}

/// The handle of a call folded into its metric's overflow series: each use also counts one
/// folded sample in `porter_metrics_overflow_samples_total{metric}`.
struct Folded<H> {
    inner: H,
    folded: Counter,
}

impl Folded<()> {
    fn wrap(handle: Handle, folded: Counter) -> Handle {
        match handle {
            Handle::Counter(inner) => {
                Handle::Counter(Counter::from_arc(Arc::new(Folded { inner, folded })))
            }
            Handle::Gauge(inner) => {
                Handle::Gauge(Gauge::from_arc(Arc::new(Folded { inner, folded })))
            }
            // Histograms fold through their buffer (see `resolve`).
            Handle::Histogram(inner) => Handle::Histogram(inner),
        }
    }
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
            let key = match policy::histogram_export_name(&policy::family_name(key.as_str())) {
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
