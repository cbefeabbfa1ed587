//! What a series holds, by kind, inline: a counter is an `AtomicU64`, a gauge an
//! `AtomicU64` holding f64 bits, a histogram one count per bucket plus the sum. An update is
//! an atomic operation on them, never a buffer, so a scrape reading them loses nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::{Mutex, OnceLock, PoisonError};

use super::exemplar::Exemplars;
use super::native::{NativeHistograms, NativeState};

/// What a series of one kind holds.
pub(crate) trait Value: Send + Sync + Sized + 'static {
    /// A zero value for a new series (a histogram takes its buckets from `layout`, its
    /// family's once the pipeline is bound).
    fn new(layout: Option<&Layout>) -> Self;
    /// Moves everything `from` holds into `self`, leaving `from` empty: how a write through
    /// a handle of an expired series reaches the series that replaced it.
    fn absorb(&self, from: &Self);
}

/// A counter's value, and its exemplar.
#[derive(Default)]
pub(crate) struct CounterValue(pub(crate) AtomicU64, pub(crate) Exemplars);

impl Value for CounterValue {
    fn new(_: Option<&Layout>) -> Self {
        Self::default()
    }
    fn absorb(&self, from: &Self) {
        self.0
            .fetch_add(from.0.swap(0, Ordering::AcqRel), Ordering::AcqRel);
    }
}

/// A gauge's value: f64 bits.
pub(crate) struct GaugeValue(pub(crate) AtomicU64);

impl Value for GaugeValue {
    fn new(_: Option<&Layout>) -> Self {
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
pub(crate) fn add_f64(cell: &AtomicU64, delta: f64) {
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(current) + delta).to_bits();
        match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
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
pub(crate) struct Extra {
    native: Option<Mutex<NativeState>>,
    pub(crate) exemplars: Exemplars,
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
    pub(crate) fn extra(&self, layout: &Layout) -> &Extra {
        self.extra.get_or_init(|| {
            Box::new(Extra {
                native: layout.native.map(|n| Mutex::new(NativeState::new(&n))),
                exemplars: Exemplars::default(),
            })
        })
    }

    pub(crate) fn native(&self) -> Option<&Mutex<NativeState>> {
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
    pub(crate) fn count(&self, layout: &Layout, value: f64, n: u64) {
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
    fn new(layout: Option<&Layout>) -> Self {
        let value = Self {
            counts: OnceLock::new(),
            sum: AtomicU64::new(0f64.to_bits()),
            extra: OnceLock::new(),
        };
        if let Some(layout) = layout {
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
