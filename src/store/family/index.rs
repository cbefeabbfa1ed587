//! Finding a label set's series, and making it: the family's index (under its lock), the
//! limits a new or revived series passes, and the overflow series.
//!
//! The index keeps each series' whole [hash](super::super::hash) beside its record number,
//! so growing it reads no label again. Making a series checks a match against the interned
//! labels, so the index never confuses two label sets; a call's miss that finds its series
//! by its hash alone ([`Family::find_flat`]) trusts the hash as a thread's cache does (a
//! wrong answer needs two label sets whose keyed 64-bit hashes are equal).

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use hashbrown::HashTable;

use super::super::arena::Space;
use super::super::labels::Canonical;
use super::super::self_metrics::LabelDrop;
use super::super::{hash, protocol};
use super::{Family, Problem, Records, Segment, OVERFLOW};

/// Label keys a family remembers by name.
const MAX_KEYS: usize = 64;

/// What the family's lock guards.
pub(super) struct Index {
    /// `(hash, record)`, placed by the hash.
    series: HashTable<(u64, u32)>,
    pub(super) space: Space,
    /// Records free to use now.
    pub(super) free: Vec<u32>,
    /// Records reclaimed, each with the epoch it was reclaimed in ([`PENDING`] until the
    /// store ends that epoch): reused once no write of that epoch runs.
    pub(super) retired: Vec<(u32, u64)>,
    /// The first record never used.
    next: u32,
    /// Label keys its series have used, up to [`MAX_KEYS`]; `None` past that.
    keys: Option<Vec<Box<str>>>,
}

/// The epoch of a record reclaimed in an epoch the store has not ended yet.
pub(super) const PENDING: u64 = u64::MAX;

impl Default for Index {
    fn default() -> Self {
        Self {
            series: HashTable::new(),
            space: Space::default(),
            free: Vec::new(),
            retired: Vec::new(),
            next: 0,
            keys: Some(Vec::new()),
        }
    }
}

/// What a label set resolved to: a series' record and generation, or the overflow series.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Found {
    Series(u32, u32),
    /// Past a limit: the family's overflow series.
    Overflow,
}

impl Index {
    fn find(&self, family: &Family, set: &Canonical<'_>, hash: u64) -> Option<u32> {
        self.series
            .find(hash, |&(h, i)| h == hash && family.holds(i, set))
            .map(|&(_, i)| i)
    }

    /// Forgets the series at `record` (reclaimed), of label-set hash `hash`.
    pub(super) fn remove(&mut self, record: u32, hash: u64) {
        if let Ok(found) = self.series.find_entry(hash, |&(_, i)| i == record) {
            found.remove();
        }
    }
}

impl Family {
    /// The series of label-set hash `hash` (a call's labels' hash: its canonical set's when
    /// the rules change nothing), if there is one: found by the hash alone, as a thread's
    /// cache finds it (see the module documentation). A call whose pairs the label rules
    /// change hashes otherwise, finds nothing, and goes the long way.
    pub(crate) fn find_hash(&self, hash: u64) -> Option<(u32, u32)> {
        let i = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            index
                .series
                .find(hash, |&(h, _)| h == hash)
                .map(|&(_, i)| i)?
        };
        match self.found(i) {
            Found::Series(i, generation) => Some((i, generation)),
            Found::Overflow => None,
        }
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

    /// The label-set hash of the record at `index`, computed again from its interned text.
    pub(super) fn hash_of(&self, index: u32) -> u64 {
        let Some((segment, at)) = self.slot(index) else {
            return 0;
        };
        let list = segment.record(at).labels.load(Ordering::Relaxed);
        self.arena.list(list).fold(0u64, |sum, (k, v)| {
            sum.wrapping_add(hash::pair(self.arena.hash(k), self.arena.hash(v)))
        })
    }

    /// The series of `pairs` (canonical, within the label limits; what the rules changed is
    /// counted and warned about once), made if the limits allow. `labels_hash` is the
    /// pairs' [hash](super::super::hash::labels), if the caller has it.
    pub(crate) fn series_of<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
        labels_hash: Option<u64>,
    ) -> Found {
        let shared = &self.shared;
        let (labels, bytes) = shared.label_limits();
        let (set, changes) = Canonical::of(pairs, self.kind, labels, bytes);
        let metrics = &shared.self_metrics;
        if changes.renamed > 0 {
            self.warn_once(Problem::RenamedKey);
        }
        for (reason, problem, n) in [
            (LabelDrop::TooMany, Problem::TooMany, changes.dropped),
            (LabelDrop::TooLong, Problem::TooLong, changes.cut),
        ] {
            if n > 0 {
                metrics.count_label_drop(reason, n);
                self.warn_once(problem);
            }
        }
        // A clean call's pairs are its canonical set: their hash is the set's.
        let hash = match labels_hash {
            Some(hash) if set.is_clean() => hash,
            _ => set.hash(),
        };
        let found = self.find_or_create(&set, hash);
        if let Found::Overflow = found {
            self.warn_once(Problem::Overflow);
        }
        found
    }

    /// The series of the canonical label set `set` (of hash `hash`), made if the limits
    /// allow, else the overflow series.
    pub(crate) fn find_or_create(&self, set: &Canonical<'_>, hash: u64) -> Found {
        {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(i) = index.find(self, set, hash) {
                return self.found(i);
            }
        }
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = index.find(self, set, hash) {
            return self.found(i);
        }
        if !self.reserve() {
            drop(index);
            self.overflow_series();
            return Found::Overflow;
        }
        let i = self.create(&mut index, set.pairs(), hash);
        self.found(i)
    }

    fn found(&self, i: u32) -> Found {
        let state = self
            .slot(i)
            .map_or(0, |(s, at)| s.record(at).state.load(Ordering::Acquire));
        Found::Series(i, protocol::generation(state))
    }

    /// Takes room for one more exported series, in the family and in the store; `false`
    /// past either limit.
    pub(super) fn reserve(&self) -> bool {
        let per_metric = self.shared.series_per_metric();
        let room = |v: u32| (v as usize) < per_metric;
        if self
            .visible
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                room(v).then(|| v + 1)
            })
            .is_err()
        {
            return false;
        }
        if !self.shared.reserve_series() {
            self.visible.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back the room of one exported series (hidden, or a reservation unused).
    pub(super) fn release(&self) {
        self.visible.fetch_sub(1, Ordering::AcqRel);
        self.shared.release_series();
        self.room.fetch_add(1, Ordering::AcqRel);
    }

    /// A new record for `pairs` (under the lock): a free one, or one never used.
    fn create<'p>(
        &self,
        index: &mut Index,
        pairs: impl Iterator<Item = (&'p str, &'p str)>,
        hash: u64,
    ) -> u32 {
        let hasher = &self.shared.hasher;
        let mut ids: Vec<(u32, u32)> = Vec::new();
        for (k, v) in pairs {
            if let Some(keys) = &mut index.keys {
                if !keys.iter().any(|known| **known == *k) {
                    keys.push(k.into());
                }
            }
            let key = index.space.intern(&self.arena, hasher, k);
            ids.push((key, index.space.intern(&self.arena, hasher, v)));
        }
        if index.keys.as_ref().is_some_and(|k| k.len() > MAX_KEYS) {
            index.keys = None;
        }
        let list = index.space.list(&self.arena, &ids);
        let i = index.free.pop().unwrap_or_else(|| {
            index.next += 1;
            index.next - 1
        });
        let (k, _) = Records::locate(i);
        if let Some(segment) = self
            .records
            .segment_or_init(k, |n| Box::new(Segment::new(n)))
        {
            self.fill(segment);
        }
        let Some((segment, at)) = self.slot(i) else {
            return i; // past every segment: u32::MAX series; never reached
        };
        let record = segment.record(at);
        // A reused record starts from zero: no write of its last series runs any more.
        for cell in segment.cells(at, self.stride()).unwrap_or_default() {
            cell.store(0, Ordering::Relaxed);
        }
        if let Some(extra) = segment.extra(at, false) {
            extra.reset();
        }
        record.labels.store(list, Ordering::Relaxed);
        record.touched.store(self.shared.now(), Ordering::Relaxed);
        record.start.store(self.shared.tenths(), Ordering::Relaxed);
        let state = record.state.load(Ordering::Relaxed);
        record
            .state
            .store(protocol::fresh(state), Ordering::Release);
        index.series.insert_unique(hash, (hash, i), |&(h, _)| h);
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

    /// The series collecting label sets past the limits (made on first use; never hidden
    /// nor reclaimed).
    pub(crate) fn overflow_series(&self) -> u32 {
        *self.overflow.get_or_init(|| {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            let set = Canonical::of([OVERFLOW].into_iter(), self.kind, 1, usize::MAX).0;
            let hash = set.hash();
            match index.find(self, &set, hash) {
                Some(i) => i,
                None => self.create(&mut index, set.pairs(), hash),
            }
        })
    }
}
