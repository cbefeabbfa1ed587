//! The recorder: resolves every call, of the [`Collector`](crate::Collector) and of the
//! `metrics` macros alike, into a series of the store, and keeps the answer in the thread's
//! cache ([`crate::lookup`]).
//!
//! What it does with any input is the table *What porter-metrics does with any input* in the
//! crate documentation (one copy, in the README). Each distinct problem is logged once at
//! `WARN`; the self-metrics are listed in [`self_metrics`](crate::self_metrics).
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

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
    SharedString, Unit,
};

use crate::handle::{Counted, Handle};
use crate::key::PairsKey;
use crate::lookup::{self, KeyProbe, Now, PairsProbe, Resolved, ThreadCache};
use crate::store::family::Outcome;
use crate::store::family::Series;
use crate::store::kind::Kind;
use crate::store::self_metrics::{DropReason, LabelDrop};
use crate::store::value::{CounterValue, GaugeValue, HistogramValue, Value};
use crate::store::{labels, FamilyRef, Limits, Origin, Shared, Store};

static NEXT_RECORDER: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static PAIRS: RefCell<Option<ThreadCache<PairsKey>>> = const { RefCell::new(None) };
    static KEYS: RefCell<Option<ThreadCache<Key>>> = const { RefCell::new(None) };
}

/// The recorder of one pipeline; see the module documentation.
pub(crate) struct PorterRecorder {
    store: Store,
    /// Unique for the life of the process: keys this recorder's entries in thread caches.
    id: u64,
    /// Bumped when every cached decision must be made again (the limits changed).
    epoch: AtomicU64,
}

impl std::fmt::Debug for PorterRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (series, names) = self.store.counts();
        f.debug_struct("PorterRecorder")
            .field("id", &self.id)
            .field("series", &series)
            .field("metric_names", &names)
            .finish()
    }
}

impl PorterRecorder {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            store: Store::new(limits),
            id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Unique for the life of the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Applies limits and the idle timeout; every cached decision is made again.
    pub(crate) fn configure(&self, limits: Limits, idle: Option<Duration>) {
        self.store.configure(limits, idle);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    #[inline]
    fn now(&self) -> Now {
        Now {
            layer: self.id,
            epoch: self.epoch.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` on the handle of a collector call (flat label pairs).
    #[inline]
    pub(crate) fn with_pairs<T>(
        &self,
        kind: Kind,
        name: &str,
        labels: &[&str],
        f: impl Fn(&Handle) -> T,
    ) -> T {
        let probe = PairsProbe::new(kind, name, labels);
        let resolve = || {
            let dangling = labels.len() % 2 == 1;
            if dangling {
                self.store.shared.self_metrics.warn_once(
                    "dangling_key",
                    name,
                    "odd number of label strings; the last key has no value and was dropped",
                );
            }
            let pairs = labels.chunks_exact(2).map(|p| (p[0], p[1]));
            Resolved {
                handle: self.resolve(kind, name, pairs, Origin::Collector),
                dangling,
            }
        };
        lookup::find(&PAIRS, &self.now(), &probe, resolve, |r| {
            if r.dangling {
                self.store
                    .shared
                    .self_metrics
                    .count_label_drop(LabelDrop::DanglingKey);
            }
            f(&r.handle)
        })
    }

    /// The handle of a macro call.
    fn handle(&self, key: &Key, kind: Kind) -> Handle {
        let probe = KeyProbe { kind, key };
        let resolve = || {
            let pairs = key.labels().map(|l| (l.key(), l.value()));
            Resolved {
                handle: self.resolve(kind, key.name(), pairs, Origin::Macro),
                dangling: false,
            }
        };
        lookup::find(&KEYS, &self.now(), &probe, resolve, |r| r.handle.clone())
    }

    /// Applies the rules to a call: which family, which label set, which series.
    fn resolve<'a>(
        &self,
        kind: Kind,
        name: &str,
        pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
        origin: Origin,
    ) -> Handle {
        let shared = &self.store.shared;
        let family = match self.store.family(name, kind, origin) {
            Ok(family) => family,
            Err(reason) => return dropped(shared, kind, reason),
        };
        let (set, renamed) = labels::canonical(pairs, kind);
        if renamed > 0 {
            shared.self_metrics.warn_once(
                "renamed_key",
                name,
                "label keys renamed to be valid and distinct",
            );
        }
        let warn_overflow = |family: &str| {
            shared.self_metrics.warn_once(
                "overflow",
                family,
                "series limit reached; new label sets fold into the otel_metric_overflow series",
            );
        };
        match family {
            FamilyRef::Counter(f) => match f.resolve(&set) {
                Outcome::Series(s) => Handle::Counter(s),
                Outcome::Overflow(s) => {
                    warn_overflow(&f.name);
                    Handle::Counted(Counted::Counter(Counter::from_arc(Arc::new(Folded(s)))))
                }
            },
            FamilyRef::Gauge(f) => match f.resolve(&set) {
                Outcome::Series(s) => Handle::Gauge(s),
                Outcome::Overflow(s) => {
                    warn_overflow(&f.name);
                    Handle::Counted(Counted::Gauge(Gauge::from_arc(Arc::new(Folded(s)))))
                }
            },
            FamilyRef::Histogram(f) => match f.resolve(&set) {
                Outcome::Series(s) => Handle::Histogram(s),
                Outcome::Overflow(s) => {
                    warn_overflow(&f.name);
                    Handle::Counted(Counted::Histogram(Histogram::from_arc(Arc::new(Folded(s)))))
                }
            },
        }
    }
}

/// A handle standing in for a dropped metric's: every use is one dropped sample.
fn dropped(shared: &Arc<Shared>, kind: Kind, reason: DropReason) -> Handle {
    let sink = Arc::new(DropSink {
        shared: shared.clone(),
        reason,
    });
    Handle::Counted(match kind {
        Kind::Counter => Counted::Counter(Counter::from_arc(sink)),
        Kind::Gauge => Counted::Gauge(Gauge::from_arc(sink)),
        Kind::Histogram => Counted::Histogram(Histogram::from_arc(sink)),
    })
}

struct DropSink {
    shared: Arc<Shared>,
    reason: DropReason,
}

impl DropSink {
    fn drop_samples(&self, n: u64) {
        self.shared.count_dropped(self.reason, n);
    }
}

impl CounterFn for DropSink {
    fn increment(&self, _: u64) {
        self.drop_samples(1);
    }
    fn absolute(&self, _: u64) {
        self.drop_samples(1);
    }
}

impl GaugeFn for DropSink {
    fn increment(&self, _: f64) {
        self.drop_samples(1);
    }
    fn decrement(&self, _: f64) {
        self.drop_samples(1);
    }
    fn set(&self, _: f64) {
        self.drop_samples(1);
    }
}

impl HistogramFn for DropSink {
    fn record(&self, _: f64) {
        self.drop_samples(1);
    }
    fn record_many(&self, _: f64, count: usize) {
        self.drop_samples(count as u64);
    }
}

/// A call folded into its family's overflow series: each use also counts one folded
/// sample in `porter_metrics_overflow_samples_total{metric}`.
struct Folded<V>(Arc<Series<V>>);

impl<V: Value> Folded<V> {
    fn fold(&self, n: u64) {
        self.0.family.count_folded(n);
    }
}

impl CounterFn for Folded<CounterValue> {
    fn increment(&self, value: u64) {
        self.fold(1);
        self.0.add(value);
    }
    fn absolute(&self, value: u64) {
        self.fold(1);
        CounterFn::absolute(&*self.0, value);
    }
}

impl GaugeFn for Folded<GaugeValue> {
    fn increment(&self, value: f64) {
        self.fold(1);
        self.0.add(value);
    }
    fn decrement(&self, value: f64) {
        self.fold(1);
        self.0.add(-value);
    }
    fn set(&self, value: f64) {
        self.fold(1);
        self.0.set(value);
    }
}

impl HistogramFn for Folded<HistogramValue> {
    fn record(&self, value: f64) {
        self.record_many(value, 1);
    }
    fn record_many(&self, value: f64, count: usize) {
        // A non-finite value is dropped (and counted) by the series, not folded.
        if value.is_finite() {
            self.fold(count as u64);
        }
        self.0.record_many(value, count);
    }
}

impl metrics::Recorder for PorterRecorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.store.describe(key.as_str(), &description);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.store.describe(key.as_str(), &description);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.store.describe(key.as_str(), &description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.handle(key, Kind::Counter).into_counter()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.handle(key, Kind::Gauge).into_gauge()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.handle(key, Kind::Histogram).into_histogram()
    }
}
