//! A family: every series of one metric name, in one map from canonical label set to
//! series, as `prometheus-client`'s `Family` keeps them.
//!
//! The map decides everything about a series in one place: whether a label set is new,
//! whether it fits the limits or folds into the overflow series, and when it expires.
//! Expired series that somebody still holds (a thread cache, a kept `metrics` handle) wait
//! in `limbo` until they are written again (and come back) or let go.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use std::sync::atomic::AtomicU32;

use metrics::{CounterFn, GaugeFn, HistogramFn};

use super::exemplar;
use super::map::{Keyed, SeriesMap};
use super::self_metrics::DropReason;
use super::value::{add_f64, CounterValue, GaugeValue, HistogramValue, Layout, Snapshot, Value};
use super::Shared;

/// What a label set resolved to.
pub(crate) enum Outcome<V> {
    /// Its series (known, or new and counted).
    Series(Arc<Series<V>>),
    /// Past a limit: the family's overflow series.
    Overflow(Arc<Series<V>>),
}

/// See the module documentation.
pub(crate) struct Family<V> {
    /// The name the exposition prints (sanitized; `NAME_histogram` for a histogram whose
    /// name ends like one of its series).
    pub(crate) name: Box<str>,
    pub(crate) shared: Arc<Shared>,
    /// A copy of `shared.expiring()`, read on every update: the family's cache line is
    /// already at hand there, the store's is one more miss.
    pub(crate) expiring: AtomicBool,
    /// The HELP text, unescaped: the user's description, or the collector's default.
    help: Mutex<Option<Arc<str>>>,
    /// Whether `help` is set: read on lookups, so they take no lock for it.
    has_help: AtomicBool,
    /// A histogram family's buckets, once the pipeline is bound.
    pub(crate) layout: OnceLock<Layout>,
    series: RwLock<SeriesMap<Arc<Series<V>>>>,
    limbo: Mutex<Vec<Arc<Series<V>>>>,
    overflow: OnceLock<Arc<Series<V>>>,
    /// Samples folded into the overflow series.
    overflowed: AtomicU64,
}

/// The label set of the overflow series, as OpenTelemetry SDKs name it.
pub(crate) const OVERFLOW_LABELS: &str = "otel_metric_overflow=\"true\"";

impl<V: Value> Family<V> {
    pub(crate) fn new(name: String, shared: Arc<Shared>, help: Option<Arc<str>>) -> Self {
        Self {
            name: name.into_boxed_str(),
            expiring: AtomicBool::new(shared.expiring()),
            shared,
            has_help: AtomicBool::new(help.is_some()),
            help: Mutex::new(help),
            layout: OnceLock::new(),
            series: RwLock::new(SeriesMap::default()),
            limbo: Mutex::new(Vec::new()),
            overflow: OnceLock::new(),
            overflowed: AtomicU64::new(0),
        }
    }

    pub(crate) fn help(&self) -> Option<Arc<str>> {
        self.help
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the HELP text; `default` only where there is none yet.
    pub(crate) fn set_help(&self, text: Arc<str>, default: bool) {
        let mut help = self.help.lock().unwrap_or_else(PoisonError::into_inner);
        if !default || help.is_none() {
            *help = Some(text);
            self.has_help.store(true, Ordering::Release);
        }
    }

    /// Whether the family has a HELP text yet.
    pub(crate) fn has_help(&self) -> bool {
        self.has_help.load(Ordering::Acquire)
    }

    fn hash(&self, labels: &str) -> u64 {
        self.shared.hash(labels)
    }

    /// The series of the canonical label set `labels`, creating it if the limits allow.
    pub(crate) fn resolve(self: &Arc<Self>, labels: &str) -> Outcome<V> {
        let hash = self.hash(labels);
        let found = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .find(hash, labels)
            .cloned();
        if let Some(series) = found {
            return Outcome::Series(series);
        }
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = map.find(hash, labels) {
            return Outcome::Series(series.clone());
        }
        if !self.shared.admit_series(map.len()) {
            drop(map);
            return Outcome::Overflow(self.overflow_series());
        }
        let series = Arc::new(Series::new(self.clone(), labels.into(), self.shared.now()));
        map.insert(series.clone(), |l| self.hash(l));
        Outcome::Series(series)
    }

    /// The series collecting label sets past the limits (made on first use).
    pub(crate) fn overflow_series(self: &Arc<Self>) -> Arc<Series<V>> {
        self.overflow
            .get_or_init(|| {
                Arc::new(Series::new(
                    self.clone(),
                    OVERFLOW_LABELS.into(),
                    self.shared.now(),
                ))
            })
            .clone()
    }

    /// Counts `n` samples folded into the overflow series.
    pub(crate) fn count_folded(&self, n: u64) {
        self.overflowed.fetch_add(n, Ordering::Relaxed);
    }

    /// Samples folded so far, if the overflow series exists.
    pub(crate) fn folded(&self) -> Option<u64> {
        self.overflow
            .get()
            .map(|_| self.overflowed.load(Ordering::Relaxed))
    }

    /// Puts back an expired series that was written to (see `Series::updated`): into the
    /// map if its label set is free, else into the series that took its place.
    #[cold]
    pub(crate) fn revive(&self, series: &Series<V>) {
        let hash = self.hash(&series.labels);
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = map.find(hash, &series.labels) {
            if !std::ptr::eq(&**current, series) {
                current.value.absorb(&series.value);
                current.touched.store(self.shared.now(), Ordering::SeqCst);
            }
            return;
        }
        let kept = {
            let mut limbo = self.limbo.lock().unwrap_or_else(PoisonError::into_inner);
            let at = limbo.iter().position(|s| std::ptr::eq(&**s, series));
            at.map(|at| limbo.swap_remove(at))
        };
        let Some(kept) = kept else {
            return; // the store is being dropped
        };
        if self.shared.admit_series(map.len()) {
            kept.live.store(true, Ordering::SeqCst);
            map.insert(kept, |l| self.hash(l));
        } else {
            drop(map);
            kept.family.overflow_series().value.absorb(&series.value);
            self.count_folded(1);
            // Stays dead: later writes through it are folded the same way.
            self.limbo
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(kept);
        }
    }

    /// Removes the series not updated for `idle_ms` (see the `series` module on why no
    /// update is lost); lets go of expired series nobody holds any more. Allocates nothing
    /// per series. Returns how many series were removed.
    pub(crate) fn expire(&self, now: u32, idle_ms: u32) -> usize {
        let idle = |touched: u32| now.wrapping_sub(touched) > idle_ms;
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let mut limbo = self.limbo.lock().unwrap_or_else(PoisonError::into_inner);
        let before = map.len();
        map.retain(
            |series| {
                if !idle(series.touched.load(Ordering::Relaxed)) {
                    return true;
                }
                series.live.store(false, Ordering::SeqCst);
                if !idle(series.touched.load(Ordering::SeqCst)) {
                    series.live.store(true, Ordering::SeqCst);
                    return true;
                }
                if Arc::strong_count(series) > 1 {
                    limbo.push(series.clone());
                }
                false
            },
            |l| self.hash(l),
        );
        limbo.retain(|series| Arc::strong_count(series) > 1);
        before - map.len()
    }

    /// Runs `f` on every exported series, under the map's read lock (`f` is the encoder's,
    /// never user code); the overflow series last.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Series<V>)) {
        {
            let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
            map.iter().for_each(|s| f(s));
        }
        if let Some(overflow) = self.overflow.get() {
            f(overflow);
        }
    }

    /// Whether the family has anything to export.
    pub(crate) fn is_empty(&self) -> bool {
        self.overflow.get().is_none()
            && self
                .series
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }

    /// Lets every series go (the store is dropped): breaks the series → family cycle.
    pub(crate) fn clear(&self) {
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.limbo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Family<HistogramValue> {
    /// Gives the family its buckets, and every series it has so far its counts: when the
    /// pipeline binds. Returns the series, by address, to replay early observations into.
    pub(crate) fn bind_buckets(
        &self,
        layout: Layout,
        out: &mut Vec<(usize, Arc<Series<HistogramValue>>)>,
    ) {
        let map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let layout = self.layout.get_or_init(|| layout);
        let limbo = self.limbo.lock().unwrap_or_else(PoisonError::into_inner);
        for series in map.iter().chain(limbo.iter()).chain(self.overflow.get()) {
            series.value.with_buckets(layout);
            out.push((address(series), series.clone()));
        }
    }

    /// Keeps an observation made before the buckets were known (see `Shared::keep_early`).
    #[cold]
    pub(crate) fn early(&self, series: &Series<HistogramValue>, value: f64, n: u64) {
        let ready = || series.value.counts.get().is_some() && self.layout.get().is_some();
        if self.shared.keep_early(address(series), value, n, ready) {
            series.replay(value, n);
            series.updated();
        }
    }
}

impl<V> Keyed for Arc<Series<V>> {
    fn key(&self) -> &str {
        &self.labels
    }
}

/// A series' identity while it lives: its address.
pub(crate) fn address<V>(series: &Series<V>) -> usize {
    series as *const Series<V> as usize
}

// ---- One series: its canonical labels, its value inline, and its idle clock. ----
//
// With idle expiry on, every update also stamps the series' clock and then checks that the
// series is still live. Expiry marks a series dead *before* it reads the stamp once more
// (both sides sequentially consistent), so either the update sees the mark and puts the
// series back (`Family::revive`), or expiry sees the stamp and keeps the series. No update
// can land in a series nobody will export again.

/// One series of a family; see the module documentation.
pub(crate) struct Series<V> {
    pub(crate) family: Arc<Family<V>>,
    /// The canonical label set, rendered as the text format prints it (`a="1",b="2"`, keys
    /// sorted, values escaped): the map key, and what the encoder copies.
    pub(crate) labels: Box<str>,
    /// When last updated (the store's coarse clock, ms, wrapping); with idle expiry only.
    pub(crate) touched: AtomicU32,
    /// False once idle expiry removed the series from its family.
    pub(crate) live: AtomicBool,
    pub(crate) value: V,
}

impl<V: Value> Series<V> {
    pub(crate) fn new(family: Arc<Family<V>>, labels: Box<str>, now: u32) -> Self {
        let value = V::new(family.layout.get());
        Self {
            family,
            labels,
            touched: AtomicU32::new(now),
            live: AtomicBool::new(true),
            value,
        }
    }

    /// After every update: with idle expiry, stamp the clock and make sure the update is
    /// exported (see the module documentation).
    #[inline]
    pub(crate) fn updated(&self) {
        if self.family.expiring.load(Ordering::Relaxed) {
            self.touched
                .store(self.family.shared.now(), Ordering::SeqCst);
            if !self.live.load(Ordering::SeqCst) {
                self.family.revive(self);
            }
        }
    }
}

impl Series<CounterValue> {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.value.0.fetch_add(n, Ordering::Relaxed);
        self.updated();
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.0.load(Ordering::Relaxed)
    }

    /// Adds `n`, keeping `exemplar` (flat pairs) as the counter's exemplar.
    pub(crate) fn add_with_exemplar(&self, n: u64, exemplar: &[&str]) {
        match exemplar::check(exemplar) {
            Ok(()) => self.value.1.record(1, 0, exemplar, n as f64),
            Err(reason) => self.family.shared.self_metrics.count_exemplar_drop(reason),
        }
        self.add(n);
    }
}

impl Series<GaugeValue> {
    #[inline]
    pub(crate) fn set(&self, value: f64) {
        self.value.0.store(value.to_bits(), Ordering::Relaxed);
        self.updated();
    }

    #[inline]
    pub(crate) fn add(&self, delta: f64) {
        add_f64(&self.value.0, delta);
        self.updated();
    }

    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.value.0.load(Ordering::Relaxed))
    }
}

impl Series<HistogramValue> {
    /// Observes `value` `n` times. Non-finite values are the caller's to filter.
    #[inline]
    pub(crate) fn observe(&self, value: f64, n: u64) {
        match (self.value.counts.get(), self.family.layout.get()) {
            (Some(_), Some(layout)) => {
                self.value.count(layout, value, n);
                self.updated();
            }
            _ => self.family.early(self, value, n),
        }
    }

    /// Observes `value` once, keeping `exemplar` (flat pairs) for its bucket.
    pub(crate) fn observe_with_exemplar(&self, value: f64, exemplar: &[&str]) {
        if let Some(layout) = self.family.layout.get() {
            match exemplar::check(exemplar) {
                Ok(()) => {
                    let at = layout.bounds.partition_point(|bound| *bound < value);
                    let slots = layout.bounds.len() + 1;
                    let extra = self.value.extra(layout);
                    extra.exemplars.record(slots, at, exemplar, value);
                }
                Err(reason) => self.family.shared.self_metrics.count_exemplar_drop(reason),
            }
        }
        self.observe(value, 1);
    }

    /// Applies observations kept from before the buckets were known.
    pub(crate) fn replay(&self, value: f64, n: u64) {
        if let Some(layout) = self.family.layout.get() {
            self.value.count(layout, value, n);
        }
    }

    /// A consistent snapshot into `out`: classic counts (per bucket), the sum, and the
    /// native buckets when `native` is asked for and the family has them. `false` before
    /// the buckets are known.
    pub(crate) fn snapshot(&self, out: &mut Snapshot, native: bool) -> bool {
        let Some(counts) = self.value.counts.get() else {
            return false;
        };
        let state = self
            .value
            .native()
            .map(|n| n.lock().unwrap_or_else(PoisonError::into_inner));
        out.counts.clear();
        out.counts
            .extend(counts.iter().map(|c| c.load(Ordering::Relaxed)));
        out.sum = f64::from_bits(self.value.sum.load(Ordering::Relaxed));
        out.native = None;
        if let (Some(state), true) = (state, native) {
            out.positive.clear();
            out.positive
                .extend(state.positive.iter().map(|(i, c)| (*i, *c)));
            out.negative.clear();
            out.negative
                .extend(state.negative.iter().map(|(i, c)| (*i, *c)));
            out.native = Some((state.schema, state.zero_count));
        }
        true
    }
}

// The `metrics` handles of the macros are the series themselves: no allocation per handle.

impl CounterFn for Series<CounterValue> {
    fn increment(&self, value: u64) {
        self.add(value);
    }
    fn absolute(&self, value: u64) {
        self.value.0.fetch_max(value, Ordering::Relaxed);
        self.updated();
    }
}

impl GaugeFn for Series<GaugeValue> {
    fn increment(&self, value: f64) {
        self.add(value);
    }
    fn decrement(&self, value: f64) {
        self.add(-value);
    }
    fn set(&self, value: f64) {
        Series::<GaugeValue>::set(self, value);
    }
}

impl HistogramFn for Series<HistogramValue> {
    fn record(&self, value: f64) {
        self.record_many(value, 1);
    }
    fn record_many(&self, value: f64, count: usize) {
        if value.is_finite() {
            self.observe(value, count as u64);
        } else {
            self.family
                .shared
                .count_dropped(DropReason::NonFinite, count as u64);
        }
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    #[test]
    fn series_stay_small() {
        // Inside their `Arc`: the labels' text and a histogram's counts are one allocation
        // each beside it.
        assert_eq!(std::mem::size_of::<Series<CounterValue>>(), 56);
        assert_eq!(std::mem::size_of::<Series<GaugeValue>>(), 40);
        assert_eq!(std::mem::size_of::<Series<HistogramValue>>(), 80);
    }
}
