//! Writes: an update checked against the record before and after (the
//! [`protocol`](super::super::protocol)), inside the caller's epoch pin.

use std::sync::atomic::Ordering;

use super::super::epoch::Pin;
use super::super::protocol::{self, Check, Confirm};
use super::super::self_metrics::DropReason;
use super::{Family, Series};

/// One update of a series.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op<'e> {
    /// Adds to a counter.
    Add(u64),
    /// Raises a counter to at least this.
    Absolute(u64),
    /// Sets a gauge.
    Set(f64),
    /// Adds to a gauge.
    AddF64(f64),
    /// Observes a value this many times.
    Observe(f64, u64),
    /// Adds to a counter, keeping an exemplar (flat label pairs).
    AddWithExemplar(u64, &'e [&'e str]),
    /// Observes a value once, keeping an exemplar (flat label pairs).
    ObserveWithExemplar(f64, &'e [&'e str]),
}

impl Op<'_> {
    /// The samples it counts, when dropped or folded: a histogram's observations.
    pub(crate) fn samples(&self) -> u64 {
        match *self {
            Op::Observe(_, n) => n,
            _ => 1,
        }
    }

    /// The same update without its exemplar.
    pub(crate) fn plain(&self) -> Self {
        match *self {
            Op::AddWithExemplar(n, _) => Op::Add(n),
            Op::ObserveWithExemplar(v, _) => Op::Observe(v, 1),
            other => other,
        }
    }

    /// Whether a histogram drops it whatever the series (a value that is not finite):
    /// never folded into the overflow series.
    pub(crate) fn is_non_finite(&self) -> bool {
        matches!(*self, Op::Observe(v, _) | Op::ObserveWithExemplar(v, _) if !v.is_finite())
    }
}

/// What became of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// In the series.
    Done,
    /// Nothing written: the series is hidden, and the limits do not let it be shown again
    /// (the caller folds the update into the overflow series).
    Refused,
    /// Nothing written, or written into a record reclaimed meanwhile: the series is not
    /// there any more; resolve its labels again.
    Gone,
}

impl Family {
    /// Applies `op` to the series at `index`, of generation `generation`. A hidden series
    /// is shown again if the limits let it.
    #[inline(always)]
    pub(crate) fn write(&self, _pin: &Pin, index: u32, generation: u32, op: &Op<'_>) -> Wrote {
        let Some((segment, at)) = self.slot(index) else {
            return Wrote::Gone;
        };
        let record = segment.record(at);
        let seen = match protocol::check(&record.state, generation) {
            Check::Ready(seen) => seen,
            Check::Stale => return Wrote::Gone,
            Check::Hidden => match self.revive(index, generation) {
                true => match protocol::check(&record.state, generation) {
                    Check::Ready(seen) => seen,
                    // Hidden again at once, or reclaimed: resolved again.
                    _ => return Wrote::Gone,
                },
                false => return Wrote::Refused,
            },
        };
        let series = Series {
            family: self,
            index,
            record,
            segment,
            at,
            state: seen,
        };
        series.apply(op);
        match protocol::confirm(&record.state, seen) {
            Confirm::Done => Wrote::Done,
            // In a dead record, which no write of its next series can see yet: taken back
            // (so the record holds what its series had when it was reclaimed), and done
            // again by the caller on the live series.
            Confirm::Moved => {
                series.undo(op);
                Wrote::Gone
            }
            // Hidden between the check and the update: shown again, or taken back.
            Confirm::Hidden if self.revive(index, generation) => Wrote::Done,
            Confirm::Hidden => {
                series.undo(op);
                Wrote::Refused
            }
        }
    }

    /// Applies `op` to the overflow series (never hidden nor reclaimed), counting a fold;
    /// without its exemplar (the overflow series keeps none). A value that is not finite is
    /// dropped and counted by the histogram, never folded.
    pub(crate) fn write_overflow(&self, op: &Op<'_>) {
        let index = self.overflow_series();
        if let Some(series) = self.series_at(index) {
            if !op.is_non_finite() {
                self.count_folded(op.samples());
            }
            series.apply(&op.plain());
        }
    }

    /// Shows the hidden series at `index` again if the limits let it; `true` if it is
    /// exported now.
    fn revive(&self, index: u32, generation: u32) -> bool {
        let Some((segment, at)) = self.slot(index) else {
            return false;
        };
        let state = &segment.record(at).state;
        if !self.reserve() {
            return false;
        }
        if protocol::show(state, generation) {
            self.shared.count_hidden(-1);
            return true;
        }
        // Shown by another writer meanwhile (or reclaimed): the room was theirs to take.
        self.release();
        matches!(protocol::check(state, generation), Check::Ready(_))
    }

    /// Replays an observation kept before the buckets were known.
    pub(crate) fn replay(&self, pin: &Pin, index: u32, generation: u32, value: f64, n: u64) {
        let op = Op::Observe(value, n);
        if self.write(pin, index, generation, &op) != Wrote::Done {
            // Nothing reclaims a series before the pipeline is bound: never reached, but
            // never lost either.
            self.write_overflow(&op);
        }
    }
}

impl Series<'_> {
    /// Applies `op` to the cells.
    #[inline(always)]
    fn apply(&self, op: &Op<'_>) {
        match *op {
            Op::Add(n) => self.add(n),
            Op::Absolute(n) => self.absolute(n),
            Op::Set(v) => self.set(v),
            Op::AddF64(v) => self.add_f64(v),
            Op::Observe(v, n) => self.observe(v, n),
            Op::AddWithExemplar(n, pairs) => self.add_with_exemplar(n, pairs),
            Op::ObserveWithExemplar(v, pairs) => self.observe_with_exemplar(v, pairs),
        }
    }

    /// Takes `op` back (a series hidden under the write that the limits do not let back):
    /// counters and histograms exactly; a gauge's `set`, a counter's `absolute` and
    /// exemplars stay in the hidden series, which nothing exports.
    fn undo(&self, op: &Op<'_>) {
        match *op {
            Op::Add(n) | Op::AddWithExemplar(n, _) => {
                if let Some(cells) = self.cells() {
                    cells[0].fetch_sub(n, Ordering::Relaxed);
                }
            }
            Op::AddF64(v) => self.add_f64(-v),
            Op::Observe(v, n) => self.unobserve(v, n),
            Op::ObserveWithExemplar(v, _) => self.unobserve(v, 1),
            Op::Set(_) | Op::Absolute(_) => {}
        }
    }
}

/// Observations of one call past [`MAX_BATCH`] are cut (and counted as dropped).
pub(crate) const MAX_BATCH: u64 = 1 << 32;

/// The observations of `n` kept by one call, and those cut.
pub(crate) fn batch(n: u64) -> (u64, u64) {
    (n.min(MAX_BATCH), n.saturating_sub(MAX_BATCH))
}

impl Family {
    /// Counts observations cut from a call (past [`MAX_BATCH`], or past a histogram's
    /// greatest count), warning once.
    pub(crate) fn count_cut(&self, n: u64) {
        if n > 0 {
            let reason = DropReason::CountOverflow;
            self.shared.count_dropped(reason, n);
            self.shared
                .self_metrics
                .warn_once(reason.as_str(), &self.key, reason.message());
        }
    }
}
