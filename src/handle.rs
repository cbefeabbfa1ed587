//! What a call resolves to: a series of the store, or a handle that counts each use.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, HistogramFn};

use crate::store::family::Series;
use crate::store::value::{CounterValue, GaugeValue, HistogramValue};

/// What a call resolved to: a series of the store, or a handle that counts each use
/// (folded into an overflow series, or dropped).
#[derive(Clone)]
pub(crate) enum Handle {
    Counter(Arc<Series<CounterValue>>),
    Gauge(Arc<Series<GaugeValue>>),
    Histogram(Arc<Series<HistogramValue>>),
    /// Folded or dropped: the `metrics` handle does the counting.
    Counted(Counted),
}

/// A handle that counts each use; see [`Handle::Counted`].
#[derive(Clone)]
pub(crate) enum Counted {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Handle {
    /// Whether a thread cache may keep using it: not a series idle expiry removed.
    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        match self {
            Handle::Counter(s) => s.live.load(Ordering::Relaxed),
            Handle::Gauge(s) => s.live.load(Ordering::Relaxed),
            Handle::Histogram(s) => s.live.load(Ordering::Relaxed),
            Handle::Counted(_) => true,
        }
    }

    #[inline]
    pub(crate) fn increment(&self, n: u64) {
        match self {
            Handle::Counter(s) => s.add(n),
            Handle::Counted(Counted::Counter(c)) => c.increment(n),
            _ => {}
        }
    }

    #[inline]
    pub(crate) fn set(&self, value: f64) {
        match self {
            Handle::Gauge(s) => s.set(value),
            Handle::Counted(Counted::Gauge(g)) => g.set(value),
            _ => {}
        }
    }

    #[inline]
    pub(crate) fn add(&self, delta: f64) {
        match self {
            Handle::Gauge(s) => s.add(delta),
            Handle::Counted(Counted::Gauge(g)) => g.increment(delta),
            _ => {}
        }
    }

    #[inline]
    pub(crate) fn record(&self, value: f64) {
        match self {
            Handle::Histogram(s) => s.record(value),
            Handle::Counted(Counted::Histogram(h)) => h.record(value),
            _ => {}
        }
    }

    /// Adds `n`, with an exemplar when the handle is a series (a folded or dropped call has
    /// no series to keep it in).
    pub(crate) fn increment_with_exemplar(&self, n: u64, exemplar: &[&str]) {
        match self {
            Handle::Counter(s) => s.add_with_exemplar(n, exemplar),
            other => other.increment(n),
        }
    }

    /// Observes `value`, with an exemplar when the handle is a series.
    pub(crate) fn record_with_exemplar(&self, value: f64, exemplar: &[&str]) {
        match self {
            Handle::Histogram(s) if value.is_finite() => s.observe_with_exemplar(value, exemplar),
            other => other.record(value),
        }
    }

    pub(crate) fn into_counter(self) -> Counter {
        match self {
            Handle::Counter(s) => Counter::from_arc(s),
            Handle::Counted(Counted::Counter(c)) => c,
            _ => Counter::noop(),
        }
    }

    pub(crate) fn into_gauge(self) -> Gauge {
        match self {
            Handle::Gauge(s) => Gauge::from_arc(s),
            Handle::Counted(Counted::Gauge(g)) => g,
            _ => Gauge::noop(),
        }
    }

    pub(crate) fn into_histogram(self) -> Histogram {
        match self {
            Handle::Histogram(s) => Histogram::from_arc(s),
            Handle::Counted(Counted::Histogram(h)) => h,
            _ => Histogram::noop(),
        }
    }
}
