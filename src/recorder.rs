//! The recorder: resolves every call, of the [`Collector`](crate::Collector) and of the
//! `metrics` macros alike, into a series of the store, through this thread's cache
//! ([`crate::cache`]).
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

use crate::cache::{self, KeySlot, PairSlot, KEYS, PAIRS};
use crate::handle::{Bound, Target};
use crate::store::family::{Family, Found, Series, ANY_EMPTY};
use crate::store::kind::Kind;
use crate::store::labels::Canonical;
use crate::store::self_metrics::DropReason;
use crate::store::self_metrics::LabelDrop;
use crate::store::{Limits, Origin, Store};

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

/// A cached permutation's code for a pair with an empty value, not in the set.
const SKIP: u32 = 0xF;

/// The position of call pair `j` in a cached permutation.
#[inline]
fn cached(perm: u32) -> impl Fn(usize) -> Option<u32> {
    move |j| {
        let code = perm.checked_shr(4 * j as u32)? & 0xF;
        Some(if code == SKIP { ANY_EMPTY } else { code })
    }
}

/// The position of pair `j` of a canonical set: `j`.
fn in_order(j: usize) -> Option<u32> {
    u32::try_from(j).ok()
}

/// The permutation from a call's pairs to the canonical set's (see [`crate::cache`]), or
/// `None` when the set is not the call's pairs as given (renamed, cut, repeated).
fn permutation<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    set: &Canonical<'_>,
) -> Option<u32> {
    let mut perm = 0u32;
    let mut taken = 0u32;
    let mut matched = 0;
    for (j, (key, value)) in pairs.enumerate() {
        let code = match set.pairs().position(|p| p == (key, value)) {
            Some(p) if taken & 1 << p == 0 => {
                taken |= 1 << p;
                matched += 1;
                p as u32
            }
            None if value.is_empty() => SKIP,
            _ => return None,
        };
        perm |= code.checked_shl(4 * j as u32).filter(|_| j < 8)?;
    }
    (matched == set.pairs().len()).then_some(perm)
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
        let dangling = labels.len() % 2 == 1;
        if dangling {
            let metrics = &self.store.shared.self_metrics;
            metrics.count_label_drop(LabelDrop::DanglingKey, 1);
        }
        let pairs = || labels.chunks_exact(2).map(|p| (p[0], p[1]));
        let hash = cache::call_hash(self.seed(kind), name, labels.iter().copied());
        let hit = cache::with(&PAIRS, |t| t.get(hash).copied()).flatten();
        if let Some(slot) = hit {
            let family = self
                .store
                .family(slot.family)
                .filter(|f| is_named(f, kind, name));
            if let Some(series) =
                family.and_then(|f| f.check(slot.series, pairs(), cached(slot.perm)))
            {
                return op(Target::Series(series));
            }
            cache::with(&PAIRS, |t| t.miss());
        }
        self.miss(kind, name, labels, hash, dangling, op)
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
        dangling: bool,
        op: impl FnOnce(Target<'_>) -> T,
    ) -> T {
        let shared = &self.store.shared;
        if dangling {
            let message = "odd number of label strings; the last key has no value and was dropped";
            shared.self_metrics.warn_once("dangling_key", name, message);
        }
        let pairs = labels.chunks_exact(2).map(|p| (p[0], p[1]));
        let family = match self.store.family_of(name, kind, Origin::Collector) {
            Ok(family) => family,
            Err(reason) => return op(Target::Dropped(shared, reason)),
        };
        let set = self.canonical(family, pairs.clone());
        match self.series(family, &set, false) {
            Ok(series) => {
                if let Some(perm) = permutation(pairs, &set) {
                    let slot = PairSlot {
                        family: family.id,
                        series: series.index,
                        perm,
                        ..PairSlot::default()
                    };
                    cache::with(&PAIRS, |t| t.admit().then(|| t.put(hash, slot)));
                }
                op(Target::Series(series))
            }
            Err(Some(series)) => op(Target::Overflow(series)),
            Err(None) => op(Target::Dropped(shared, DropReason::InvalidName)),
        }
    }

    /// The canonical set of `pairs` in `family`, with what the rules changed counted.
    fn canonical<'a>(
        &self,
        family: &Family,
        pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Canonical<'a> {
        let shared = &self.store.shared;
        let (labels, bytes) = shared.label_limits();
        let (set, changes) = Canonical::of(pairs, family.kind, labels, bytes);
        let metrics = &shared.self_metrics;
        if changes.renamed > 0 {
            metrics.warn_once(
                "renamed_key",
                &family.key,
                "label keys renamed to be valid and distinct",
            );
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
        set
    }

    /// The series of `set` in `family` (pinned for a kept handle if `pin`), or `Err` with
    /// the overflow series past a limit (`None` if even that cannot be had).
    fn series<'f>(
        &self,
        family: &'f Family,
        set: &Canonical<'_>,
        pin: bool,
    ) -> Result<Series<'f>, Option<Series<'f>>> {
        let hash = set.hash(&self.store.shared.hasher);
        for _ in 0..TRIES {
            match family.find_or_create(set, hash, pin) {
                Found::Series(index) => {
                    let found = match pin {
                        true => family.pinned(index),
                        // Reclaimed meanwhile: again.
                        false => family.check(index, set.pairs(), in_order),
                    };
                    if let Some(series) = found {
                        return Ok(series);
                    }
                }
                Found::Overflow(index) => {
                    let message = "series limit reached; new label sets fold into the otel_metric_overflow series";
                    let metrics = &self.store.shared.self_metrics;
                    metrics.warn_once("overflow", &family.key, message);
                    return Err(family.pinned(index));
                }
            }
        }
        // Reclaimed under every try: fold it (counted) rather than lose it.
        Err(family.pinned(family.overflow_series()))
    }

    /// The handle of a macro call, or of a timer: the thread's own, found in its cache
    /// (by `hash`, of the call with this recorder's seed) or made and kept there.
    pub(crate) fn bound<'a>(
        &self,
        kind: Kind,
        name: &str,
        pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
        hash: u64,
        origin: Origin,
    ) -> Arc<Bound> {
        let hit = cache::with(&KEYS, |t| {
            t.get(hash).and_then(|s| Some((s.bound.clone()?, s.perm)))
        })
        .flatten();
        if let Some((bound, perm)) = hit {
            if let Bound::Series {
                recorder,
                family,
                index,
            } = &*bound
            {
                let mine = *recorder == self.id && is_named(family, kind, name);
                if mine && family.check(*index, pairs.clone(), cached(perm)).is_some() {
                    return bound;
                }
            }
            cache::with(&KEYS, |t| t.miss());
        }
        let shared = &self.store.shared;
        let family = match self.store.family_of(name, kind, origin) {
            Ok(family) => family,
            Err(reason) => {
                let shared = shared.clone();
                return Arc::new(Bound::Dropped { shared, reason });
            }
        };
        let set = self.canonical(family, pairs.clone());
        match self.series(family, &set, true) {
            Ok(series) => {
                let bound = Arc::new(Bound::Series {
                    recorder: self.id,
                    family: family.clone(),
                    index: series.index,
                });
                if let Some(perm) = permutation(pairs, &set) {
                    let slot = KeySlot {
                        perm,
                        bound: Some(bound.clone()),
                        ..KeySlot::default()
                    };
                    cache::with(&KEYS, |t| t.admit().then(|| t.put(hash, slot)));
                }
                bound
            }
            Err(Some(series)) => Arc::new(Bound::Overflow {
                family: family.clone(),
                index: series.index,
            }),
            Err(None) => Arc::new(Bound::Dropped {
                shared: shared.clone(),
                reason: DropReason::InvalidName,
            }),
        }
    }

    fn bound_key(&self, kind: Kind, key: &Key) -> Arc<Bound> {
        let pairs = key.labels().map(|l| (l.key(), l.value()));
        // The key's own hash, computed once for a static key, mixed with the seed.
        let hash = (key.get_hash() ^ self.seed(kind)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.bound(kind, key.name(), pairs, hash ^ hash >> 32, Origin::Macro)
    }

    /// The handle a timer of the histogram `name` records into.
    pub(crate) fn timer(&self, name: &str) -> Arc<Bound> {
        let hash = cache::call_hash(self.seed(Kind::Histogram), name, std::iter::empty());
        self.bound(
            Kind::Histogram,
            name,
            std::iter::empty(),
            hash,
            Origin::Collector,
        )
    }
}

impl metrics::Recorder for PorterRecorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.store
            .describe(key.as_str(), Kind::Counter, &description);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.store.describe(key.as_str(), Kind::Gauge, &description);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.store
            .describe(key.as_str(), Kind::Histogram, &description);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_map_call_pairs_to_the_sorted_set() {
        let call = [("method", "GET"), ("code", "200"), ("region", "")];
        let (set, _) = Canonical::of(call.into_iter(), Kind::Counter, 64, 4096);
        // code (0), method (1); region's empty value is skipped.
        assert_eq!(
            permutation(call.into_iter(), &set),
            Some(1 | SKIP << 8) // (the second pair, code, is at 0)
        );
        // A repeated pair is not the set as given.
        let twice = [("a", "1"), ("a", "1")];
        let (set, _) = Canonical::of(twice.into_iter(), Kind::Counter, 64, 4096);
        assert_eq!(permutation(twice.into_iter(), &set), None);
    }
}
