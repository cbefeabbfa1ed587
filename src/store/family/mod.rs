//! A family: every series of one metric, each a small record at a dense `u32` index.
//!
//! A series is a [`Record`] (its state, its label list, its idle clock and its start
//! timestamp: 16 bytes) and its value cells, `stride` atomics at the same index in the
//! segment's value array (one for a counter or gauge; count, sum and one per bucket for a
//! histogram). Label keys and values are interned in the family's [`Arena`]. A hash table
//! of indices, keyed by the label set, finds a series on a miss; the segments are read
//! without any lock, so a scrape walks the records in index order while writers and
//! creators carry on.
//!
//! A record's state word holds a generation, `LIVE` (it holds a series) and `VISIBLE` (it
//! is exported). Idle expiry hides a series in place and its next write shows it again,
//! with everything it held; a series hidden for another idle timeout, that no kept handle
//! pins, is reclaimed: its index goes back to the free list and its strings to the arena.
//!
//! Writes and expiry meet as in Dekker's algorithm. With expiry on, a writer stamps the
//! record's clock before it reads the state, and expiry changes the state before it reads
//! the clock (all sequentially consistent): either expiry sees the fresh stamp and backs
//! off, or the writer sees the change. No write lands in a reclaimed record, and none is
//! left hidden.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use hashbrown::{HashMap, HashTable};
use metrics::Unit;

use super::arena::{Arena, Space};
use super::exemplar::Exemplars;
use super::kind::Kind;
use super::labels::Canonical;
use super::native::{NativeHistograms, NativeState};
use super::slab::Segmented;
use super::Shared;

mod expiry;
mod walk;

pub(crate) use walk::{LabelsView, Scratch};

/// The state word: `LIVE`, `VISIBLE`, and the generation above them.
pub(crate) const LIVE: u32 = 1;
pub(crate) const VISIBLE: u32 = 2;
const GENERATION: u32 = 4;

/// The label set of the overflow series, as OpenTelemetry SDKs name it.
pub(crate) const OVERFLOW: (&str, &str) = ("otel_metric_overflow", "true");

/// One series' record; see the module documentation.
#[derive(Default)]
pub(crate) struct Record {
    pub(crate) state: AtomicU32,
    /// Offset of its label list in the arena.
    labels: AtomicU32,
    /// When last written (the store's coarse clock, ms, wrapping); with expiry only.
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
}

type Records = Segmented<Box<Segment>, 4>;

/// What the family's write lock guards.
struct Index {
    /// Record indices, by the hash of their label set.
    series: HashTable<u32>,
    space: Space,
    /// Reclaimed indices, reused first.
    free: Vec<u32>,
    /// The first index never used.
    next: u32,
    /// Label keys its series have used, up to [`MAX_KEYS`]; `None` past that.
    keys: Option<Vec<Box<str>>>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            series: HashTable::new(),
            space: Space::default(),
            free: Vec::new(),
            next: 0,
            keys: Some(Vec::new()),
        }
    }
}

/// Label keys a family remembers by name.
const MAX_KEYS: usize = 64;

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
    /// A copy of the store's expiry flag, read on every write: the family's line is at hand.
    pub(crate) expiring: AtomicBool,
    records: Records,
    pub(crate) arena: Arena,
    index: RwLock<Index>,
    /// Kept handles per index: a pinned series is never reclaimed.
    pins: Mutex<HashMap<u32, u32>>,
    /// Records ever used: a walk stops there.
    len: AtomicU32,
    /// Series exported now (the overflow series aside): the limits count these.
    visible: AtomicU32,
    overflow: OnceLock<u32>,
    /// Samples folded into the overflow series.
    folded: AtomicU64,
}

/// A series found: its record and its cells, and the state it was found in.
pub(crate) struct Series<'a> {
    pub(crate) family: &'a Family,
    pub(crate) index: u32,
    pub(crate) record: &'a Record,
    segment: &'a Segment,
    at: usize,
    state: u32,
}

/// What a label set resolved to: a series' index and the state it was found in.
pub(crate) enum Found {
    Series(u32, u32),
    /// Past a limit: the family's overflow series.
    Overflow(u32),
}

impl Family {
    pub(crate) fn new(id: u32, key: &str, base: String, kind: Kind, shared: Arc<Shared>) -> Self {
        Self {
            id,
            key: key.into(),
            base: base.into(),
            kind,
            expiring: AtomicBool::new(shared.expiring()),
            shared,
            layout: OnceLock::new(),
            description: Mutex::default(),
            records: Records::default(),
            arena: Arena::default(),
            index: RwLock::default(),
            pins: Mutex::default(),
            len: AtomicU32::new(0),
            visible: AtomicU32::new(0),
            overflow: OnceLock::new(),
            folded: AtomicU64::new(0),
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

    /// One more (or one fewer) series exported, in the family and the store; with
    /// `hidden`, one fewer (or one more) hidden.
    fn shown(&self, n: i32, hidden: bool) {
        match n {
            1 => self.visible.fetch_add(1, Ordering::Relaxed),
            _ => self.visible.fetch_sub(1, Ordering::Relaxed),
        };
        self.shared.count_series(n, if hidden { -n } else { 0 });
    }

    pub(crate) fn count_folded(&self, n: u64) {
        self.folded.fetch_add(n, Ordering::Relaxed);
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

    /// The cells (and, for native histograms, the extras) of a segment, once the stride
    /// is known.
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

    /// The series at `index` as it stands, or `None` if it holds none.
    fn series_at(&self, index: u32) -> Option<Series<'_>> {
        let (segment, at) = self.slot(index)?;
        let record = &segment.record(at);
        if self.expiring.load(Ordering::Relaxed) {
            record.touched.store(self.shared.now(), Ordering::SeqCst);
        }
        let state = record.state.load(Ordering::SeqCst);
        (state & LIVE != 0).then_some(Series {
            family: self,
            index,
            record,
            segment,
            at,
            state,
        })
    }

    /// The series at `index` if it still holds the label set it held in `state` (the
    /// state a lookup found it in: the generation tells a reused record).
    #[inline]
    pub(crate) fn at(&self, index: u32, state: u32) -> Option<Series<'_>> {
        self.series_at(index)
            .filter(|s| s.state | VISIBLE == state | VISIBLE)
    }

    /// The series at `index`, which a kept handle pins (so it is live).
    pub(crate) fn pinned(&self, index: u32) -> Option<Series<'_>> {
        self.series_at(index)
    }

    /// Whether the record at `index` holds the canonical label set `set`.
    fn holds(&self, index: u32, set: &Canonical<'_>) -> bool {
        let Some((segment, at)) = self.slot(index) else {
            return false;
        };
        let list = self
            .arena
            .list(segment.record(at).labels.load(Ordering::Relaxed));
        list.len() == set.pairs().len()
            && list
                .zip(set.pairs())
                .all(|((k, v), (key, value))| self.arena.eq(k, key) && self.arena.eq(v, value))
    }

    /// The series of the canonical label set `set` (of hash `hash`), created if the limits
    /// allow, else the overflow series. With `pin`, a kept handle pins it.
    pub(crate) fn find_or_create(&self, set: &Canonical<'_>, hash: u64, pin: bool) -> Found {
        {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(&i) = index.series.find(hash, |&i| self.holds(i, set)) {
                return self.found(i, pin);
            }
        }
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&i) = index.series.find(hash, |&i| self.holds(i, set)) {
            return self.found(i, pin);
        }
        let visible = self.visible.load(Ordering::Relaxed) as usize;
        if !self.shared.admit_series(visible) {
            drop(index);
            return Found::Overflow(self.overflow_series());
        }
        let i = self.create(&mut index, set.pairs(), hash);
        self.shown(1, false);
        self.found(i, pin)
    }

    /// The series at `i`, pinned if `pin` (under the lock: it cannot be reclaimed first).
    fn found(&self, i: u32, pin: bool) -> Found {
        if pin {
            self.pin(i, 1);
        }
        let state = self
            .slot(i)
            .map_or(0, |(s, at)| s.record(at).state.load(Ordering::Acquire));
        Found::Series(i, state)
    }

    /// A new record for `pairs` (under the write lock).
    fn create<'p>(
        &self,
        index: &mut Index,
        pairs: impl Iterator<Item = (&'p str, &'p str)>,
        hash: u64,
    ) -> u32 {
        let hasher = &self.shared.hasher;
        let ids: Vec<(u32, u32)> = pairs
            .map(|(k, v)| {
                if let Some(keys) = &mut index.keys {
                    if !keys.iter().any(|known| **known == *k) {
                        keys.push(k.into());
                    }
                }
                let key = index.space.intern(&self.arena, hasher, k);
                (key, index.space.intern(&self.arena, hasher, v))
            })
            .collect();
        if index.keys.as_ref().is_some_and(|k| k.len() > MAX_KEYS) {
            index.keys = None;
        }
        let list = index.space.list(&self.arena, &ids);
        let i = index.free.pop().unwrap_or_else(|| {
            index.next += 1;
            index.next - 1
        });
        let (k, _) = Records::locate(i);
        let segment = self.records.segment_or_init(k, |n| {
            Box::new(Segment {
                records: (0..n).map(|_| Record::default()).collect(),
                values: OnceLock::new(),
                extras: OnceLock::new(),
            })
        });
        if let Some(segment) = segment {
            self.fill(segment);
        }
        let Some((segment, at)) = self.slot(i) else {
            return i; // past every segment: u32::MAX series; never reached
        };
        let record = &segment.record(at);
        let generation = record.state.load(Ordering::Relaxed) & !(LIVE | VISIBLE);
        // A reused record starts from zero.
        for cell in segment.cells(at, self.stride()).unwrap_or_default() {
            cell.store(0, Ordering::Relaxed);
        }
        if let Some(extra) = segment.extras.get().and_then(|e| e[at].get()) {
            extra.reset();
        }
        record.labels.store(list, Ordering::Relaxed);
        record.touched.store(self.shared.now(), Ordering::Relaxed);
        record.start.store(self.shared.tenths(), Ordering::Relaxed);
        record
            .state
            .store(generation | LIVE | VISIBLE, Ordering::Release);
        let arena = &self.arena;
        let records = &self.records;
        index
            .series
            .insert_unique(hash, i, |&j| rehash(records, arena, hasher, j));
        self.len.fetch_max(i + 1, Ordering::Release);
        i
    }

    /// Whether any label key its series have used satisfies `test` (`true` when it has used
    /// too many to remember).
    pub(crate) fn any_key(&self, test: impl Fn(&str) -> bool) -> bool {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index
            .keys
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| test(k)))
    }

    /// The series collecting label sets past the limits (made on first use; never hidden).
    pub(crate) fn overflow_series(&self) -> u32 {
        *self.overflow.get_or_init(|| {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            let set = Canonical::of([OVERFLOW].into_iter(), self.kind, 1, usize::MAX).0;
            let hash = set.hash(&self.shared.hasher);
            match index.series.find(hash, |&i| self.holds(i, &set)) {
                Some(&i) => i,
                None => self.create(&mut index, set.pairs(), hash),
            }
        })
    }

    /// Adds `n` kept handles to the series at `index` (negative: lets go of them).
    pub(crate) fn pin(&self, index: u32, n: i32) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        let count = pins.entry(index).or_insert(0);
        *count = count.saturating_add_signed(n);
        if *count == 0 {
            pins.remove(&index);
        }
    }
}

/// The hash of the label set of the record at `i`, as [`Canonical::hash`] hashes it.
fn rehash(records: &Records, arena: &Arena, hasher: &impl std::hash::BuildHasher, i: u32) -> u64 {
    use std::hash::Hasher;
    let (k, at) = Records::locate(i);
    let Some(record) = records
        .segment(k)
        .filter(|s| at < s.records.len())
        .map(|s| s.record(at))
    else {
        return 0;
    };
    let mut h = hasher.build_hasher();
    for (key, value) in arena.list(record.labels.load(Ordering::Relaxed)) {
        arena.hash_into(key, &mut h);
        arena.hash_into(value, &mut h);
    }
    h.finish()
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
        let extras = match make {
            true => self.segment.extras.get_or_init(|| {
                (0..self.segment.records.len())
                    .map(|_| OnceLock::new())
                    .collect()
            }),
            false => self.segment.extras.get()?,
        };
        let slot = extras.get(self.at)?;
        match make {
            true => Some(slot.get_or_init(Box::default)),
            false => slot.get().map(|e| &**e),
        }
    }

    /// After a write: a hidden series is shown again (see the module documentation).
    #[inline]
    pub(crate) fn written(&self) {
        if self.state & VISIBLE == 0 {
            let shown = self.state | VISIBLE;
            if self
                .record
                .state
                .compare_exchange(self.state, shown, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                self.family.shown(1, true);
            }
        }
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
