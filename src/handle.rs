//! What a call resolves to: a series of the store, the family's overflow series (each use
//! also counted as folded), or nothing (each use counted as dropped).
//!
//! [`Target`] is a collector call's, for the length of the call. [`Bound`] is what the
//! `metrics` handles of the macros and the timers hold: it pins its series, so a kept handle
//! never writes into a series reclaimed meanwhile (idle expiry only hides a pinned one).

use std::sync::Arc;

use metrics::{CounterFn, GaugeFn, HistogramFn};

use crate::store::family::{Family, Series};
use crate::store::self_metrics::DropReason;
use crate::store::Shared;

/// A collector call's series, or why it has none.
pub(crate) enum Target<'a> {
    Series(Series<'a>),
    /// Past a limit: each use is counted as folded.
    Overflow(Series<'a>),
    Dropped(&'a Shared, DropReason),
}

impl Target<'_> {
    /// The series to write, counting a use of the overflow series or a drop of `n`.
    #[inline]
    fn series(&self, n: u64) -> Option<&Series<'_>> {
        match self {
            Target::Series(series) => Some(series),
            Target::Overflow(series) => {
                series.family.count_folded(n);
                Some(series)
            }
            Target::Dropped(shared, reason) => {
                shared.count_dropped(*reason, n);
                None
            }
        }
    }

    #[inline]
    pub(crate) fn increment(&self, n: u64) {
        if let Some(s) = self.series(1) {
            s.add(n);
        }
    }

    #[inline]
    pub(crate) fn set(&self, value: f64) {
        if let Some(s) = self.series(1) {
            s.set(value);
        }
    }

    #[inline]
    pub(crate) fn add(&self, delta: f64) {
        if let Some(s) = self.series(1) {
            s.add_f64(delta);
        }
    }

    #[inline]
    pub(crate) fn record(&self, value: f64) {
        // A non-finite value is dropped (and counted) by the series, never folded.
        let n = u64::from(value.is_finite() || !matches!(self, Target::Overflow(_)));
        if let Some(s) = self.series(n) {
            s.observe(value, 1);
        }
    }

    /// Adds `n`, with an exemplar when the call has a series of its own.
    pub(crate) fn increment_with_exemplar(&self, n: u64, exemplar: &[&str]) {
        match self {
            Target::Series(s) => s.add_with_exemplar(n, exemplar),
            other => other.increment(n),
        }
    }

    /// Observes `value`, with an exemplar when the call has a series of its own.
    pub(crate) fn record_with_exemplar(&self, value: f64, exemplar: &[&str]) {
        match self {
            Target::Series(s) => s.observe_with_exemplar(value, exemplar),
            other => other.record(value),
        }
    }
}

/// See the module documentation.
pub(crate) enum Bound {
    Series {
        /// The recorder it belongs to.
        recorder: u64,
        family: Arc<Family>,
        index: u32,
    },
    Overflow {
        family: Arc<Family>,
        index: u32,
    },
    Dropped {
        shared: Arc<Shared>,
        reason: DropReason,
    },
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Bound::Series { family, index, .. } = self {
            family.pin(*index, -1);
        }
    }
}

impl Bound {
    /// Runs `f` on the series, counting a fold or a drop of `n` uses.
    #[inline]
    fn with(&self, n: u64, f: impl FnOnce(&Series<'_>)) {
        match self {
            Bound::Series { family, index, .. } => {
                if let Some(series) = family.pinned(*index) {
                    f(&series);
                }
            }
            Bound::Overflow { family, index } => {
                if let Some(series) = family.pinned(*index) {
                    family.count_folded(n);
                    f(&series);
                }
            }
            Bound::Dropped { shared, reason } => shared.count_dropped(*reason, n),
        }
    }
}

impl CounterFn for Bound {
    fn increment(&self, value: u64) {
        self.with(1, |s| s.add(value));
    }
    fn absolute(&self, value: u64) {
        self.with(1, |s| s.absolute(value));
    }
}

impl GaugeFn for Bound {
    fn increment(&self, value: f64) {
        self.with(1, |s| s.add_f64(value));
    }
    fn decrement(&self, value: f64) {
        self.with(1, |s| s.add_f64(-value));
    }
    fn set(&self, value: f64) {
        self.with(1, |s| s.set(value));
    }
}

impl HistogramFn for Bound {
    fn record(&self, value: f64) {
        self.record_many(value, 1);
    }
    fn record_many(&self, value: f64, count: usize) {
        let n = count as u64;
        // A non-finite value is dropped (and counted) by the series, never folded.
        let uses = if value.is_finite() || !matches!(self, Bound::Overflow { .. }) {
            n
        } else {
            0
        };
        self.with(uses, |s| s.observe(value, n));
    }
}
