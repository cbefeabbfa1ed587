//! A family: every series of one metric, each a small record at a dense `u32` index.
//!
//! A series is a [`Record`] (its state, its label list, its idle clock and its start
//! timestamp: 16 bytes) and its value cells, `stride` atomics at the same index in the
//! segment's value array (one for a counter or gauge; count, sum and one per bucket for a
//! histogram). Label keys and values are interned in the family's [`Arena`]. The segments
//! never move and are read without any lock: a scrape walks the records in index order
//! while writers and creators carry on.
//!
//! Where things are: the index from label set to record and the making of series in
//! `index.rs`; writes in `write.rs` (through the [`protocol`](super::protocol)); idle
//! expiry and reuse in `expiry.rs`; the lock-free walk in `walk.rs`.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use metrics::Unit;

use super::arena::Arena;
use super::exemplar::Exemplars;
use super::kind::Kind;
use super::native::{NativeHistograms, NativeState};
use super::slab::Segmented;
use super::Shared;

mod expiry;
mod index;
mod walk;
mod write;

pub(crate) use index::Found;

use index::Index;
pub(crate) use walk::{LabelsView, Scratch};
#[cfg(doc)]
pub(crate) use write::MAX_BATCH;
pub(crate) use write::{batch, Op, Wrote};

/// The label set of the overflow series, as OpenTelemetry SDKs name it.
pub(crate) const OVERFLOW: (&str, &str) = ("otel_metric_overflow", "true");

/// One series' record; see the module documentation.
#[derive(Default)]
pub(crate) struct Record {
    /// Generation and flags: see the [`protocol`](super::protocol).
    pub(crate) state: AtomicU32,
    /// Offset of its label list in the arena.
    labels: AtomicU32,
    /// Upkeep's clock when it last found the series written (ms, wrapping); only upkeep
    /// writes it.
    touched: AtomicU32,
    /// When the series started, in tenths of a second since the store's epoch.
    pub(crate) start: AtomicU32,
}

/// What a family is described with: its HELP text and its unit.
#[derive(Default, Clone, Debug)]
pub(crate) struct Description {
    pub(crate) help: Option<Arc<str>>,
    pub(crate) unit: Option<Unit>,
    /// The design's placeholder text, which any description given by the user replaces.
    pub(crate) default: bool,
}

/// A histogram family's buckets: the classic bounds (without `+Inf`) and, if configured,
/// the native ones' settings.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) bounds: Arc<[f64]>,
    pub(crate) native: Option<NativeHistograms>,
}

/// What not every series needs, made on first use: native buckets, exemplars.
#[derive(Default)]
pub(crate) struct Extra {
    pub(crate) native: OnceLock<Mutex<NativeState>>,
    pub(crate) exemplars: Exemplars,
}

impl Extra {
    fn reset(&self) {
        if let Some(native) = self.native.get() {
            native
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        self.exemplars.clear();
    }
}

/// Records, their value cells and their extras, for one range of indices.
pub(crate) struct Segment {
    records: Box<[Record]>,
    /// `stride` cells per record; a histogram family's only once its buckets are known.
    values: OnceLock<Box<[AtomicU64]>>,
    extras: OnceLock<Box<[OnceLock<Box<Extra>>]>>,
}

/// Where item `at` of a segment of `len` items of `per_line` to a cache line sits: items
/// made one after the other (by different threads, often) are spread over different
/// lines, so that two threads writing their own series do not fight over one line.
/// Segments hold a power of two of items, 16 or more: a mask and a shift, not a division,
/// which would cost more than the rest of a warm call's lookup.
#[inline]
fn spread(at: usize, len: usize, per_line: usize) -> usize {
    debug_assert!(len.is_power_of_two() && len >= per_line * 2);
    let lines = len / per_line;
    (at & (lines - 1)) * per_line + (at >> lines.trailing_zeros())
}

impl Segment {
    fn new(n: usize) -> Self {
        Self {
            records: (0..n).map(|_| Record::default()).collect(),
            values: OnceLock::new(),
            extras: OnceLock::new(),
        }
    }

    /// Record `at`.
    #[inline]
    fn record(&self, at: usize) -> &Record {
        &self.records[spread(at, self.records.len(), 4)]
    }

    /// The cells of record `at`, `stride` of them (a counter's or gauge's spread as the
    /// records are).
    #[inline]
    fn cells(&self, at: usize, stride: Option<usize>) -> Option<&[AtomicU64]> {
        let (values, stride) = (self.values.get()?, stride?);
        let first = match stride {
            1 => spread(at, self.records.len(), 8),
            _ => at * stride,
        };
        values.get(first..first + stride)
    }

    /// The extras of record `at`, made if `make` and not yet there.
    fn extra(&self, at: usize, make: bool) -> Option<&Extra> {
        let extras = match make {
            true => self
                .extras
                .get_or_init(|| (0..self.records.len()).map(|_| OnceLock::new()).collect()),
            false => self.extras.get()?,
        };
        let slot = extras.get(at)?;
        match make {
            true => Some(slot.get_or_init(Box::default)),
            false => slot.get().map(|e| &**e),
        }
    }
}

type Records = Segmented<Box<Segment>, 4>;

/// See the module documentation.
pub(crate) struct Family {
    /// Its index in the store.
    pub(crate) id: u32,
    /// The name it was created with (a counter's without `_total`).
    pub(crate) key: Box<str>,
    /// The name its series are written with, before suffixes.
    pub(crate) base: Box<str>,
    pub(crate) kind: Kind,
    pub(crate) shared: Arc<Shared>,
    /// A histogram family's buckets, once the pipeline is bound.
    pub(crate) layout: OnceLock<Layout>,
    description: Mutex<Description>,
    records: Records,
    pub(crate) arena: Arena,
    /// Taken to make, reclaim or reuse a record; a lookup reads it.
    index: RwLock<Index>,
    /// Records ever used: a walk stops there.
    len: AtomicU32,
    /// Series exported now (the overflow series aside): the limits count these.
    visible: AtomicU32,
    overflow: OnceLock<u32>,
    /// Samples folded into the overflow series.
    folded: AtomicU64,
    /// Bumped whenever room is made (a series hidden or reclaimed): a thread's cached
    /// "over the limit" answer holds only while it is unchanged.
    room: AtomicU32,
    /// The problems already logged for this family (a bit each): a call past a limit
    /// checks a bit, not the store's log.
    warned: AtomicU8,
}

/// A problem a family logs once.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Problem {
    RenamedKey,
    TooMany,
    TooLong,
    Overflow,
}

impl Problem {
    fn what(self) -> (&'static str, &'static str) {
        match self {
            Problem::RenamedKey => ("renamed_key", "label keys renamed to be valid and distinct"),
            Problem::TooMany => (
                "too_many",
                "more label pairs than the limit; the last (by key) were dropped",
            ),
            Problem::TooLong => (
                "too_long",
                "label key or value longer than the limit; cut to it",
            ),
            Problem::Overflow => (
                "overflow",
                "series limit reached; new label sets fold into the otel_metric_overflow series",
            ),
        }
    }
}

/// A series as a walk or a write found it: its record and its cells, and its state then.
pub(crate) struct Series<'a> {
    pub(crate) family: &'a Family,
    pub(crate) index: u32,
    pub(crate) record: &'a Record,
    segment: &'a Segment,
    at: usize,
    state: u32,
}

impl Family {
    pub(crate) fn new(id: u32, key: &str, base: String, kind: Kind, shared: Arc<Shared>) -> Self {
        Self {
            id,
            key: key.into(),
            base: base.into(),
            kind,
            shared,
            layout: OnceLock::new(),
            description: Mutex::default(),
            records: Records::default(),
            arena: Arena::default(),
            index: RwLock::default(),
            len: AtomicU32::new(0),
            visible: AtomicU32::new(0),
            overflow: OnceLock::new(),
            folded: AtomicU64::new(0),
            room: AtomicU32::new(0),
            warned: AtomicU8::new(0),
        }
    }

    /// Logs `problem` once for this family (the store's log keeps it once too).
    #[inline]
    pub(crate) fn warn_once(&self, problem: Problem) {
        let bit = 1u8 << problem as u8;
        if self.warned.load(Ordering::Relaxed) & bit == 0
            && self.warned.fetch_or(bit, Ordering::Relaxed) & bit == 0
        {
            let (id, message) = problem.what();
            self.shared.self_metrics.warn_once(id, &self.key, message);
        }
    }

    /// The HELP text: the user's description, else the design's placeholder.
    pub(crate) fn help(&self) -> Option<Arc<str>> {
        self.lock_description().help.clone()
    }

    /// The unit the user described the metric with, if any.
    pub(crate) fn unit(&self) -> Option<Unit> {
        self.lock_description().unit
    }

    fn lock_description(&self) -> std::sync::MutexGuard<'_, Description> {
        self.description
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `description`, unless it is a placeholder and the family has one already.
    pub(crate) fn describe(&self, description: Description) {
        let mut current = self.lock_description();
        if !description.default || current.help.is_none() {
            let unit = description.unit.or(current.unit);
            *current = Description {
                unit,
                ..description
            };
        }
    }

    /// Value cells per series: one for a counter or gauge; count, sum and the buckets
    /// (`+Inf` last) for a histogram, once its buckets are known.
    #[inline]
    pub(crate) fn stride(&self) -> Option<usize> {
        match self.kind {
            Kind::Counter | Kind::Gauge => Some(1),
            Kind::Histogram => self.layout.get().map(|l| l.bounds.len() + 3),
        }
    }

    /// Samples folded so far, if the overflow series exists.
    pub(crate) fn folded(&self) -> Option<u64> {
        self.overflow
            .get()
            .map(|_| self.folded.load(Ordering::Relaxed))
    }

    pub(crate) fn count_folded(&self, n: u64) {
        self.folded.fetch_add(n, Ordering::Relaxed);
    }

    /// The room stamp: changes whenever a series is hidden or reclaimed.
    #[inline]
    pub(crate) fn room(&self) -> u32 {
        self.room.load(Ordering::Acquire)
    }

    /// Gives the family its buckets, and every series so far its cells (the pipeline is
    /// being bound).
    pub(crate) fn bind(&self, layout: Layout) {
        let _index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        self.layout.get_or_init(|| layout);
        for (_, segment) in self.records.allocated() {
            self.fill(segment);
        }
    }

    /// The cells of a segment, once the stride is known.
    fn fill(&self, segment: &Segment) {
        let Some(stride) = self.stride() else { return };
        segment.values.get_or_init(|| {
            (0..segment.records.len() * stride)
                .map(|_| AtomicU64::new(0))
                .collect()
        });
    }

    #[inline]
    fn slot(&self, index: u32) -> Option<(&Segment, usize)> {
        let (k, at) = Records::locate(index);
        let segment = self.records.segment(k)?;
        (at < segment.records.len()).then_some((segment, at))
    }

    /// The series at `index` as it stands, whatever its state.
    #[inline]
    fn series_at(&self, index: u32) -> Option<Series<'_>> {
        let (segment, at) = self.slot(index)?;
        let record = segment.record(at);
        Some(Series {
            family: self,
            index,
            record,
            segment,
            at,
            state: record.state.load(Ordering::Acquire),
        })
    }
}

impl<'a> Series<'a> {
    /// The state it was found in.
    pub(crate) fn state(&self) -> u32 {
        self.state
    }

    /// The series' cells, once its family's stride is known.
    #[inline]
    pub(crate) fn cells(&self) -> Option<&'a [AtomicU64]> {
        self.segment.cells(self.at, self.family.stride())
    }

    /// Its extras, made if `make` and not yet there.
    pub(crate) fn extra(&self, make: bool) -> Option<&'a Extra> {
        self.segment.extra(self.at, make)
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    #[test]
    fn a_record_stays_small() {
        assert_eq!(std::mem::size_of::<Record>(), 16);
    }

    #[test]
    fn spread_places_every_item_once_and_neighbours_on_different_lines() {
        for k in 0..8 {
            let len = 16 << k;
            for per_line in [4, 8] {
                let places: Vec<usize> = (0..len).map(|at| spread(at, len, per_line)).collect();
                let mut sorted = places.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..len).collect::<Vec<_>>(), "len {len}");
                let lines: Vec<usize> = places.iter().map(|p| p / per_line).collect();
                assert!(lines.windows(2).all(|w| w[0] != w[1]), "len {len}");
            }
        }
    }
}
