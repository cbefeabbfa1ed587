//! One series: its canonical labels, its value inline, and its idle clock.
//!
//! A value is a few atomics: a counter is an `AtomicU64`, a gauge an `AtomicU64` holding
//! f64 bits, a histogram one count per bucket plus the sum. An update is an atomic
//! operation on them, never a buffer, so a scrape reading them loses nothing.
//!
//! With idle expiry on, every update also stamps the series' clock and then checks that the
//! series is still live. Expiry marks a series dead *before* it reads the stamp once more
//! (both sides sequentially consistent), so either the update sees the mark and puts the
//! series back ([`Family::revive`]), or expiry sees the stamp and keeps the series. No
//! update can land in a series nobody will export again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{CounterFn, GaugeFn, HistogramFn};

use super::exemplar::{self, Exemplars};
use super::family::Family;
use super::native::{NativeHistograms, NativeState};
use super::self_metrics::DropReason;

/// The three kinds of metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// What a series of one kind holds.
pub(crate) trait Value: Send + Sync + Sized + 'static {
    /// A zero value for a new series of `family` (a histogram takes its buckets from it).
    fn new(family: &Family<Self>) -> Self;
    /// Moves everything `from` holds into `self`, leaving `from` empty: how a write through
    /// a handle of an expired series reaches the series that replaced it.
    fn absorb(&self, from: &Self);
}

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
        let value = V::new(&family);
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

/// A counter's value, and its exemplar.
#[derive(Default)]
pub(crate) struct CounterValue(pub(crate) AtomicU64, pub(crate) Exemplars);

impl Value for CounterValue {
    fn new(_: &Family<Self>) -> Self {
        Self::default()
    }
    fn absorb(&self, from: &Self) {
        self.0
            .fetch_add(from.0.swap(0, Ordering::AcqRel), Ordering::AcqRel);
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

/// A gauge's value: f64 bits.
pub(crate) struct GaugeValue(pub(crate) AtomicU64);

impl Value for GaugeValue {
    fn new(_: &Family<Self>) -> Self {
        Self(AtomicU64::new(0f64.to_bits()))
    }
    fn absorb(&self, from: &Self) {
        // A gauge's last value wins: the handle's write is the newest.
        self.0
            .store(from.0.load(Ordering::Acquire), Ordering::Release);
    }
}

/// Adds `delta` to the f64 held in `cell`.
#[inline]
fn add_f64(cell: &AtomicU64, delta: f64) {
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(current) + delta).to_bits();
        match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
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

/// A histogram's value: a count per bucket (the last one is `+Inf`) and the sum. The count
/// is the buckets' total, so `_count` and the `+Inf` bucket always agree.
pub(crate) struct HistogramValue {
    /// Set when the family's buckets are known: at creation once the pipeline is bound,
    /// otherwise when it binds (observations wait in the store until then).
    pub(crate) counts: OnceLock<Box<[AtomicU64]>>,
    pub(crate) sum: AtomicU64,
    /// What not every histogram needs, in one word until needed: native buckets and
    /// exemplars.
    extra: OnceLock<Box<Extra>>,
}

/// The native buckets (of a family configured native) and the exemplars of a histogram.
/// The native lock also covers the classic counts and the sum, so a scrape reads all of
/// them as of one moment.
struct Extra {
    native: Option<Mutex<NativeState>>,
    exemplars: Exemplars,
}

impl HistogramValue {
    /// Gives the series its buckets (once): `layout`'s classic ones, and native ones if
    /// the family is configured native.
    pub(crate) fn with_buckets(&self, layout: &Layout) {
        let _ = self.counts.set(
            (0..=layout.bounds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        );
        if layout.native.is_some() {
            self.extra(layout);
        }
    }

    /// The extra part, made with the native buckets `layout` asks for.
    fn extra(&self, layout: &Layout) -> &Extra {
        self.extra.get_or_init(|| {
            Box::new(Extra {
                native: layout.native.map(|n| Mutex::new(NativeState::new(&n))),
                exemplars: Exemplars::default(),
            })
        })
    }

    fn native(&self) -> Option<&Mutex<NativeState>> {
        self.extra.get().and_then(|e| e.native.as_ref())
    }

    /// The exemplars, if any was ever kept.
    pub(crate) fn exemplars(&self) -> Option<&Exemplars> {
        self.extra.get().map(|e| &e.exemplars)
    }

    fn classic(&self, bounds: &[f64], value: f64, n: u64) {
        if let Some(counts) = self.counts.get() {
            // The first bucket whose bound is at least `value` (`le` is inclusive).
            let at = bounds.partition_point(|bound| *bound < value);
            if let Some(count) = counts.get(at) {
                count.fetch_add(n, Ordering::Relaxed);
            }
            add_f64(&self.sum, value * n as f64);
        }
    }

    /// Counts `value` `n` times, classic and native.
    fn count(&self, layout: &Layout, value: f64, n: u64) {
        match (&layout.native, self.native()) {
            (Some(settings), Some(native)) => {
                let mut native = native.lock().unwrap_or_else(PoisonError::into_inner);
                native.observe(value, n, settings);
                self.classic(&layout.bounds, value, n);
            }
            _ => self.classic(&layout.bounds, value, n),
        }
    }
}

/// A histogram family's buckets: the classic bounds (without `+Inf`) and, if configured,
/// the native ones' settings.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) bounds: Arc<[f64]>,
    pub(crate) native: Option<NativeHistograms>,
}

impl Value for HistogramValue {
    fn new(family: &Family<Self>) -> Self {
        let value = Self {
            counts: OnceLock::new(),
            sum: AtomicU64::new(0f64.to_bits()),
            extra: OnceLock::new(),
        };
        if let Some(layout) = family.layout.get() {
            value.with_buckets(layout);
        }
        value
    }
    fn absorb(&self, from: &Self) {
        let _native = from
            .native()
            .map(|n| n.lock().unwrap_or_else(PoisonError::into_inner));
        if let (Some(to), Some(counts)) = (self.counts.get(), from.counts.get()) {
            for (to, from) in to.iter().zip(counts.iter()) {
                to.fetch_add(from.swap(0, Ordering::AcqRel), Ordering::AcqRel);
            }
        }
        let sum = f64::from_bits(from.sum.swap(0f64.to_bits(), Ordering::AcqRel));
        add_f64(&self.sum, sum);
        // Native buckets move too (same schema: one family, one layout).
        if let (Some(to), Some(mut from)) = (self.native(), _native) {
            let mut to = to.lock().unwrap_or_else(PoisonError::into_inner);
            to.absorb(&mut from);
        }
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

/// Where a histogram series is copied for the encoder; reused from series to series.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub(crate) counts: Vec<u64>,
    pub(crate) sum: f64,
    /// `(schema, zero count)` when native buckets were copied.
    pub(crate) native: Option<(i32, u64)>,
    pub(crate) positive: Vec<(i32, u64)>,
    pub(crate) negative: Vec<(i32, u64)>,
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
