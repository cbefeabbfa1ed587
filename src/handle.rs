//! What the `metrics` handles of the macros and the timers hold: a series of the store, the
//! family's overflow series (each use also counted as folded), or nothing (each use
//! counted as dropped).
//!
//! A [`Bound`] holds no claim on its series: idle expiry may reclaim it like any other. It
//! keeps its key, so a write through a handle whose series was reclaimed finds (or makes)
//! the series of that key again, and the handle records on; nothing written is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{CounterFn, GaugeFn, HistogramFn, Key};

use crate::store::epoch;
use crate::store::family::{Family, Found, Op, Wrote};
use crate::store::kind::Kind;
use crate::store::self_metrics::DropReason;
use crate::store::Shared;

/// Tries at a series that expiry reclaims under a write, before the write is folded.
pub(crate) const TRIES: usize = 4;

/// See the module documentation.
pub(crate) struct Bound {
    /// The recorder it belongs to.
    pub(crate) recorder: u64,
    pub(crate) kind: Kind,
    /// The key it was made for: a cached handle answers only it, and a series handle
    /// finds its series again by it.
    pub(crate) key: Key,
    pub(crate) target: Target,
}

/// Where a handle's writes go.
pub(crate) enum Target {
    Series {
        family: Arc<Family>,
        /// Its series: record, and generation in the high half.
        at: AtomicU64,
    },
    Overflow {
        family: Arc<Family>,
        /// The family's room stamp when it was made: a cached handle is made again once
        /// room is made.
        room: u32,
    },
    Dropped {
        shared: Arc<Shared>,
        reason: DropReason,
        /// The store's configuration stamp when it was made.
        config: u32,
    },
}

/// A series' record and generation, packed.
pub(crate) fn pack(index: u32, generation: u32) -> u64 {
    u64::from(index) | u64::from(generation) << 32
}

impl Bound {
    /// Whether a thread's cache may keep answering with it: a series handle always (it
    /// finds its series again itself), an overflow or a refusal while nothing changed that
    /// could change the answer.
    #[inline]
    pub(crate) fn current(&self) -> bool {
        match &self.target {
            Target::Series { .. } => true,
            Target::Overflow { family, room } => family.room() == *room,
            Target::Dropped { shared, config, .. } => shared.config() == *config,
        }
    }

    /// Applies `op`: to its series, found again if reclaimed; folded if the limits keep
    /// it out; counted if dropped.
    #[inline]
    fn write(&self, op: Op<'_>) {
        match &self.target {
            Target::Series { family, at } => {
                let pin = epoch::pin();
                for _ in 0..TRIES {
                    let now = at.load(Ordering::Relaxed);
                    match family.write(&pin, now as u32, (now >> 32) as u32, &op) {
                        Wrote::Done => return,
                        Wrote::Refused => break,
                        Wrote::Gone => {
                            let pairs = self.key.labels().map(|l| (l.key(), l.value()));
                            match family.series_of(pairs, None) {
                                Found::Series(index, generation) => {
                                    at.store(pack(index, generation), Ordering::Relaxed);
                                }
                                Found::Overflow => break,
                            }
                        }
                    }
                }
                // Past the limits, or reclaimed under every try: folded, and counted.
                family.write_overflow(&op);
            }
            Target::Overflow { family, .. } => family.write_overflow(&op),
            Target::Dropped { shared, reason, .. } => {
                let reason = if op.is_non_finite() {
                    DropReason::NonFinite
                } else {
                    *reason
                };
                shared.count_dropped(reason, op.samples());
            }
        }
    }
}

impl CounterFn for Bound {
    fn increment(&self, value: u64) {
        self.write(Op::Add(value));
    }
    fn absolute(&self, value: u64) {
        self.write(Op::Absolute(value));
    }
}

impl GaugeFn for Bound {
    fn increment(&self, value: f64) {
        self.write(Op::AddF64(value));
    }
    fn decrement(&self, value: f64) {
        self.write(Op::AddF64(-value));
    }
    fn set(&self, value: f64) {
        self.write(Op::Set(value));
    }
}

impl HistogramFn for Bound {
    fn record(&self, value: f64) {
        self.write(Op::Observe(value, 1));
    }
    fn record_many(&self, value: f64, count: usize) {
        self.write(Op::Observe(value, count as u64));
    }
}
