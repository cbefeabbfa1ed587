//! The recorder: resolves every call, of the [`Collector`](crate::Collector) and of the
//! `metrics` macros alike, into a series of the store, through this thread's cache
//! ([`crate::cache`]).
//!
//! What it does with any input is the table *What porter-metrics does with any input* of
//! the [guide](crate::guide) (its one copy). Each distinct problem is logged once at
//! `WARN`; the self-metrics are listed in [`self_metrics`](crate::self_metrics).
//!
//! ```
//! use porter_metrics::{self_metrics::DROPPED_SAMPLES, testing::Capture};
//!
//! let capture = Capture::new();
//! capture.run(|| {
//!     metrics::counter!("jobs_total", "queue" => "a", "region" => "").increment(1);
//!     metrics::histogram!("latency_seconds").record(f64::NAN);
//! });
//! let scrape = capture.exposition().expect("always a valid scrape");
//! // the empty `region` removed:
//! assert_eq!(scrape.value("jobs_total", &["queue", "a"]), Some(1.0));
//! assert_eq!(scrape.value(DROPPED_SAMPLES, &["reason", "non_finite"]), Some(1.0));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

use crate::cache::{self, Indices, KEYS, PAIRS};
use crate::handle::{Bound, Target};
use crate::store::family::{Family, Found, Series};
use crate::store::kind::Kind;
use crate::store::labels::Canonical;
use crate::store::self_metrics::{DropReason, LabelDrop};
use crate::store::{Limits, Store};

static NEXT_RECORDER: AtomicU64 = AtomicU64::new(1);

/// Tries at a series that expiry may reclaim under a resolving call.
const TRIES: usize = 4;

/// The recorder of one pipeline; see the module documentation.
pub(crate) struct PorterRecorder {
    store: Store,
    /// Unique for the life of the process; seeds this recorder's cache tags.
    id: u64,
}

impl std::fmt::Debug for PorterRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (series, _, names) = self.store.counts();
        f.debug_struct("PorterRecorder")
            .field("id", &self.id)
            .field("series", &series)
            .field("metric_names", &names)
            .finish()
    }
}

/// Whether `name` names `family` (a counter with or without `_total`).
#[inline]
fn is_named(family: &Family, kind: Kind, name: &str) -> bool {
    let key = &*family.key;
    family.kind == kind
        && (name == key
            || kind == Kind::Counter
                && name.len() == key.len() + 6
                && name.starts_with(key)
                && name.ends_with("_total"))
}

/// What a call resolved to.
enum Resolved<'f> {
    Series(&'f Arc<Family>, Series<'f>),
    Overflow(&'f Arc<Family>, Series<'f>),
    Dropped(DropReason),
}

impl PorterRecorder {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            store: Store::new(limits),
            id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Unique for the life of the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Applies limits and the idle timeout.
    pub(crate) fn configure(&self, limits: Limits, idle: Option<Duration>) {
        self.store.configure(limits, idle);
    }

    fn seed(&self, kind: Kind) -> u64 {
        self.id << 2 | kind as u64
    }

    /// Runs `op` on the series of a collector call (flat label pairs).
    #[inline]
    pub(crate) fn with_pairs<T>(
        &self,
        kind: Kind,
        name: &str,
        labels: &[&str],
        op: impl FnOnce(Target<'_>) -> T,
    ) -> T {
        if labels.len() % 2 == 1 {
            let metrics = &self.store.shared.self_metrics;
            metrics.count_label_drop(LabelDrop::DanglingKey, 1);
        }
        let hash = cache::call_hash(self.seed(kind), name, labels.iter().copied());
        let hit = cache::with(&PAIRS, |t| t.get(hash).copied()).flatten();
        if let Some(at) = hit {
            let family = self
                .store
                .family(at.family)
                .filter(|f| is_named(f, kind, name));
            if let Some(series) = family.and_then(|f| f.at(at.series, at.state)) {
                return op(Target::Series(series));
            }
            cache::with(&PAIRS, |t| t.miss());
        }
        self.miss(kind, name, labels, hash, op)
    }

    /// The slow path, out of line: the store, then the thread's cache keeps the answer.
    #[cold]
    #[inline(never)]
    fn miss<T>(
        &self,
        kind: Kind,
        name: &str,
        labels: &[&str],
        hash: u64,
        op: impl FnOnce(Target<'_>) -> T,
    ) -> T {
        let shared = &self.store.shared;
        if labels.len() % 2 == 1 {
            let drop = LabelDrop::DanglingKey;
            shared
                .self_metrics
                .warn_once(drop.as_str(), name, drop.message());
        }
        let pairs = labels.chunks_exact(2).map(|p| (p[0], p[1]));
        match self.resolve(kind, name, pairs, false) {
            Resolved::Series(family, series) => {
                let at = Indices {
                    family: family.id,
                    series: series.index,
                    state: series.state(),
                };
                cache::with(&PAIRS, |t| t.admit().then(|| t.put(hash, at)));
                op(Target::Series(series))
            }
            Resolved::Overflow(_, series) => op(Target::Overflow(series)),
            Resolved::Dropped(reason) => op(Target::Dropped(shared, reason)),
        }
    }

    /// Resolves a call in the store: its family, its canonical label set, its series
    /// (pinned for a kept handle if `pin`). Counts what the rules changed.
    fn resolve<'a>(
        &self,
        kind: Kind,
        name: &str,
        pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
        pin: bool,
    ) -> Resolved<'_> {
        let shared = &self.store.shared;
        let family = match self.store.family_of(name, kind) {
            Ok(family) => family,
            Err(reason) => return Resolved::Dropped(reason),
        };
        let (labels, bytes) = shared.label_limits();
        let (set, changes) = Canonical::of(pairs, kind, labels, bytes);
        let metrics = &shared.self_metrics;
        if changes.renamed > 0 {
            let message = "label keys renamed to be valid and distinct";
            metrics.warn_once("renamed_key", &family.key, message);
        }
        for (reason, n) in [
            (LabelDrop::TooMany, changes.dropped),
            (LabelDrop::TooLong, changes.cut),
        ] {
            if n > 0 {
                metrics.count_label_drop(reason, n);
                metrics.warn_once(reason.as_str(), &family.key, reason.message());
            }
        }
        let hash = set.hash(&shared.hasher);
        for _ in 0..TRIES {
            match family.find_or_create(&set, hash, pin) {
                Found::Series(index, state) => {
                    // Reclaimed meanwhile (a pinned one cannot be): again.
                    if let Some(series) = family.at(index, state) {
                        return Resolved::Series(family, series);
                    }
                }
                Found::Overflow(index) => {
                    let message = "series limit reached; new label sets fold into the otel_metric_overflow series";
                    metrics.warn_once("overflow", &family.key, message);
                    if let Some(series) = family.pinned(index) {
                        return Resolved::Overflow(family, series);
                    }
                }
            }
        }
        // Reclaimed under every try: fold it (counted) rather than lose it.
        match family.pinned(family.overflow_series()) {
            Some(series) => Resolved::Overflow(family, series),
            None => Resolved::Dropped(DropReason::InvalidName),
        }
    }

    /// The handle of a macro call, or of a timer: the thread's own, found in its cache
    /// (by `hash`, of the call with this recorder's seed) or made and kept there.
    pub(crate) fn bound<'a>(
        &self,
        kind: Kind,
        name: &str,
        pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
        hash: u64,
    ) -> Arc<Bound> {
        let hit = cache::with(&KEYS, |t| t.get(hash).cloned().flatten()).flatten();
        if let Some(bound) = hit {
            if let Bound::Series {
                recorder, family, ..
            } = &*bound
            {
                if *recorder == self.id && is_named(family, kind, name) {
                    return bound; // pinned: the series is its own still
                }
            }
            cache::with(&KEYS, |t| t.miss());
        }
        let shared = &self.store.shared;
        match self.resolve(kind, name, pairs, true) {
            Resolved::Series(family, series) => {
                let bound = Arc::new(Bound::Series {
                    recorder: self.id,
                    family: family.clone(),
                    index: series.index,
                });
                cache::with(&KEYS, |t| {
                    t.admit().then(|| t.put(hash, Some(bound.clone())))
                });
                bound
            }
            Resolved::Overflow(family, series) => Arc::new(Bound::Overflow {
                family: family.clone(),
                index: series.index,
            }),
            Resolved::Dropped(reason) => Arc::new(Bound::Dropped {
                shared: shared.clone(),
                reason,
            }),
        }
    }

    fn bound_key(&self, kind: Kind, key: &Key) -> Arc<Bound> {
        let pairs = key.labels().map(|l| (l.key(), l.value()));
        let parts = key.labels().flat_map(|l| [l.key(), l.value()]);
        let hash = cache::call_hash(self.seed(kind), key.name(), parts);
        self.bound(kind, key.name(), pairs, hash)
    }

    /// The handle a timer of the histogram `name` records into.
    pub(crate) fn timer(&self, name: &str) -> Arc<Bound> {
        let hash = cache::call_hash(self.seed(Kind::Histogram), name, std::iter::empty());
        self.bound(Kind::Histogram, name, std::iter::empty(), hash)
    }
}

impl metrics::Recorder for PorterRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.store
            .describe(key.as_str(), Kind::Counter, unit, &description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.store
            .describe(key.as_str(), Kind::Gauge, unit, &description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.store
            .describe(key.as_str(), Kind::Histogram, unit, &description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.bound_key(Kind::Counter, key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.bound_key(Kind::Gauge, key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.bound_key(Kind::Histogram, key))
    }
}
