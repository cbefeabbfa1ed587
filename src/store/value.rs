//! What a series' cells hold, and how they are written and read.
//!
//! A counter is one cell, a gauge one cell of f64 bits. A histogram is `count`, `sum` and
//! one cell per bucket (`+Inf` last). An observation adds to `count` first and to its
//! bucket last, with the sum between them; `_count` is the buckets' total.
//!
//! A scrape reads a histogram as of one moment, without stopping writers: it reads
//! `count`, the buckets and the sum, then `count` again. Equal counts that also equal the
//! buckets' total mean no observation was under way or began meanwhile, so the sum is of
//! exactly those observations. Writers that keep it from ever seeing that are stopped for
//! the length of one copy: the reader raises a gate bit in `count`, a writer that finds it
//! raised takes its count back and waits, and the reader copies once the observations
//! already counted are in their buckets. client_golang keeps two copies of every count for
//! the same guarantee; this keeps one, for one more atomic add per observation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;

use super::exemplar;
use super::family::{batch, Series};
use super::native::NativeState;
use super::self_metrics::DropReason;

/// Raised in a histogram's `count` while a reader copies it.
const GATE: u64 = 1 << 63;
/// A histogram's count stays under this: far from the gate, whatever the calls.
pub(crate) const MAX_COUNT: u64 = 1 << 62;
/// Optimistic reads before a reader raises the gate.
const TRIES: usize = 8;

/// Cells of a histogram before its buckets.
const COUNT: usize = 0;
const SUM: usize = 1;
const BUCKETS: usize = 2;

/// Adds `delta` to the f64 held in `cell`.
#[inline]
fn add_f64(cell: &AtomicU64, delta: f64, order: Ordering) {
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(current) + delta).to_bits();
        match cell.compare_exchange_weak(current, next, order, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// Where a histogram series is copied for the encoder; reused from series to series.
#[derive(Default, Debug)]
pub(crate) struct Snapshot {
    /// Per bucket, not cumulative; `+Inf` last.
    pub(crate) counts: Vec<u64>,
    pub(crate) sum: f64,
    /// `(schema, zero count)` when native buckets were copied.
    pub(crate) native: Option<(i32, u64)>,
    pub(crate) positive: Vec<(i32, u64)>,
    pub(crate) negative: Vec<(i32, u64)>,
}

/// Adds `n` observations to the bucket when dropped: the last step of an observation, so
/// that even a panic between the count and the bucket (in native buckets, say) leaves the
/// histogram whole, and no reader waits for the bucket forever.
struct BucketAdd<'a>(&'a AtomicU64, u64);

impl Drop for BucketAdd<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(self.1, Ordering::Release);
    }
}

impl Series<'_> {
    /// Adds `n` to a counter.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        if let Some(cells) = self.cells() {
            cells[0].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Raises a counter to at least `n`.
    pub(crate) fn absolute(&self, n: u64) {
        if let Some(cells) = self.cells() {
            cells[0].fetch_max(n, Ordering::Relaxed);
        }
    }

    /// Sets a gauge.
    #[inline]
    pub(crate) fn set(&self, value: f64) {
        if let Some(cells) = self.cells() {
            cells[0].store(value.to_bits(), Ordering::Relaxed);
        }
    }

    /// Adds `delta` to a gauge.
    #[inline]
    pub(crate) fn add_f64(&self, delta: f64) {
        if let Some(cells) = self.cells() {
            add_f64(&cells[0], delta, Ordering::Relaxed);
        }
    }

    /// Its samples: a counter's value, a histogram's count (a gauge has none).
    pub(crate) fn samples(&self) -> u64 {
        match (self.family.kind, self.cells()) {
            (super::kind::Kind::Counter, Some(cells)) => cells[0].load(Ordering::Relaxed),
            (super::kind::Kind::Histogram, Some(cells)) => {
                cells[COUNT].load(Ordering::Relaxed) & !GATE
            }
            _ => 0,
        }
    }

    /// A counter's value, or a gauge's bits.
    pub(crate) fn get(&self) -> u64 {
        self.cells().map_or(0, |c| c[0].load(Ordering::Relaxed))
    }

    /// Adds `n`, keeping `exemplar` (flat pairs) as the counter's exemplar.
    pub(crate) fn add_with_exemplar(&self, n: u64, pairs: &[&str]) {
        match exemplar::check(pairs) {
            Ok(()) => {
                if let Some(extra) = self.extra(true) {
                    extra.exemplars.record(1, 0, pairs, n as f64);
                }
            }
            Err(reason) => self.family.shared.self_metrics.count_exemplar_drop(reason),
        }
        self.add(n);
    }

    /// Observes `value` `n` times in a histogram: a non-finite value is dropped and
    /// counted; before the pipeline is bound, the observation waits in the store. At most
    /// [`MAX_BATCH`](super::family::MAX_BATCH) observations a call, and a histogram's count stays under
    /// [`MAX_COUNT`]: what is past either is cut and counted.
    #[inline]
    pub(crate) fn observe(&self, value: f64, n: u64) {
        if !value.is_finite() {
            self.family.shared.count_dropped(DropReason::NonFinite, n);
            return;
        }
        let (n, cut) = batch(n);
        self.family.count_cut(cut);
        match (self.cells(), self.family.layout.get()) {
            (Some(cells), Some(layout)) => {
                let at = layout.bounds.partition_point(|bound| *bound < value);
                // Counted first, in the bucket last: see the module documentation.
                let before = loop {
                    let before = cells[COUNT].fetch_add(n, Ordering::Relaxed);
                    if before & GATE == 0 {
                        break before;
                    }
                    cells[COUNT].fetch_sub(n, Ordering::Relaxed);
                    while cells[COUNT].load(Ordering::Relaxed) & GATE != 0 {
                        std::thread::yield_now();
                    }
                };
                if before + n >= MAX_COUNT {
                    cells[COUNT].fetch_sub(n, Ordering::Relaxed);
                    self.family.count_cut(n);
                    return;
                }
                let _bucket = BucketAdd(&cells[BUCKETS + at], n);
                add_f64(&cells[SUM], value * n as f64, Ordering::Release);
                if let Some(settings) = &layout.native {
                    if let Some(extra) = self.extra(true) {
                        let native = extra
                            .native
                            .get_or_init(|| std::sync::Mutex::new(NativeState::new(settings)));
                        native
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .observe(value, n, settings);
                    }
                }
            }
            _ => self.family.shared.keep_early(self, value, n),
        }
    }

    /// Takes back `n` observations of `value` (see `undo`): bucket first and count last,
    /// the reverse of [`observe`](Self::observe), so a reader never sees more in the
    /// buckets than in the count. Native buckets are not taken back.
    pub(crate) fn unobserve(&self, value: f64, n: u64) {
        let (n, _) = batch(n);
        if let (Some(cells), Some(layout), true) =
            (self.cells(), self.family.layout.get(), value.is_finite())
        {
            let at = layout.bounds.partition_point(|bound| *bound < value);
            cells[BUCKETS + at].fetch_sub(n, Ordering::Relaxed);
            add_f64(&cells[SUM], -(value * n as f64), Ordering::Relaxed);
            cells[COUNT].fetch_sub(n, Ordering::Release);
        }
    }

    /// Observes `value` once, keeping `exemplar` (flat pairs) for its bucket.
    pub(crate) fn observe_with_exemplar(&self, value: f64, pairs: &[&str]) {
        if let (Some(layout), true) = (self.family.layout.get(), value.is_finite()) {
            match exemplar::check(pairs) {
                Ok(()) => {
                    let at = layout.bounds.partition_point(|bound| *bound < value);
                    if let Some(extra) = self.extra(true) {
                        extra
                            .exemplars
                            .record(layout.bounds.len() + 1, at, pairs, value);
                    }
                }
                Err(reason) => self.family.shared.self_metrics.count_exemplar_drop(reason),
            }
        }
        self.observe(value, 1);
    }

    /// Copies a histogram as of one moment into `out` (see the module documentation), with
    /// its native buckets if `native`; `false` before its buckets are known.
    pub(crate) fn snapshot(&self, out: &mut Snapshot, native: bool) -> bool {
        let Some(cells) = self.cells() else {
            return false;
        };
        for _ in 0..TRIES {
            let before = cells[COUNT].load(Ordering::Acquire);
            if before & GATE == 0 && self.copy(cells, out, native) == before {
                std::sync::atomic::fence(Ordering::Acquire);
                if cells[COUNT].load(Ordering::Relaxed) == before {
                    return true;
                }
            }
            std::hint::spin_loop();
        }
        // Busy: close the gate, wait for the observations already counted, copy.
        while cells[COUNT].fetch_or(GATE, Ordering::AcqRel) & GATE != 0 {
            std::thread::yield_now(); // another reader holds it
        }
        loop {
            let counted = cells[COUNT].load(Ordering::Acquire) & !GATE;
            if self.copy(cells, out, native) == counted {
                break;
            }
            std::thread::yield_now();
        }
        cells[COUNT].fetch_and(!GATE, Ordering::Release);
        true
    }

    /// Copies buckets, sum and native buckets; returns the buckets' total.
    fn copy(&self, cells: &[AtomicU64], out: &mut Snapshot, native: bool) -> u64 {
        out.counts.clear();
        out.counts
            .extend(cells[BUCKETS..].iter().map(|c| c.load(Ordering::Acquire)));
        out.sum = f64::from_bits(cells[SUM].load(Ordering::Acquire));
        out.native = None;
        let settings = self.family.layout.get().and_then(|l| l.native.as_ref());
        if let (Some(settings), true) = (settings, native) {
            let (positive, negative) = (&mut out.positive, &mut out.negative);
            out.native = Some(match self.extra(false).and_then(|e| e.native.get()) {
                Some(state) => state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .copy_into(positive, negative),
                // Nothing observed yet: native, with no bucket.
                None => NativeState::new(settings).copy_into(positive, negative),
            });
        }
        out.counts.iter().fold(0u64, |a, c| a.wrapping_add(*c))
    }
}
