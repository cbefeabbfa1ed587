//! How a call finds its series fast: a small per-thread table in front of the store.
//!
//! A collector call's entry is 24 bytes: the call's 64-bit hash and what the call resolved
//! to (a series' family, record and generation; the family's overflow series, with the
//! family's room stamp; or a refusal, with the store's configuration stamp). It holds no
//! key and no reference. An answer is checked before it is used: a series' generation
//! against its record (a series reclaimed, its record reused, fails), an overflow against
//! the family's room, a refusal against the configuration. A hit trusts the hash: two
//! calls share an entry only if their hashes, keyed with a secret random per process
//! ([`hash`](crate::store::hash)), are equal in all 64 bits.
//!
//! A macro's entry holds, in place of the indices, the thread's own handle for the key
//! (the `metrics` API returns a handle per call; cloning one that no other thread touches
//! writes no shared line). Its tag is the key's own hash, which is not secret, so a hit is
//! checked against the key the handle was made for.
//!
//! Each table is 4-way set-associative; it starts at [`MIN_SLOTS`] and doubles, up to
//! [`MAX_SLOTS`], while more than a quarter of its lookups miss: at most 96 KiB for
//! collector calls and 64 KiB (with the handles) for macro keys per thread. A full set
//! loses the first entry a CLOCK hand finds unused since it last passed; a thread whose
//! working set outgrows the largest table keeps only one miss in eight.

use std::cell::RefCell;
use std::sync::Arc;

use crate::handle::Bound;
use crate::store::self_metrics::DropReason;

const WAYS: usize = 4;
/// Slots per table: where a thread starts, and how far it grows.
pub(crate) const MIN_SLOTS: usize = 256;
pub(crate) const MAX_SLOTS: usize = 4096;
/// The largest macro-key table (its handles are larger than an answer).
const MAX_KEY_SLOTS: usize = 2048;
/// Lookups between two looks at a table's miss rate.
const WINDOW: u32 = 4096;

/// What a collector call resolved to.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Answer {
    #[default]
    None,
    /// A series: its family, record and generation.
    Series {
        family: u32,
        index: u32,
        generation: u32,
    },
    /// The family's overflow series, while the family's room stamp is `room`.
    Overflow { family: u32, room: u32 },
    /// Refused, while the store's configuration stamp is `config`.
    Dropped { reason: DropReason, config: u32 },
}

/// A slot of a table: its tag (the whole hash), and what it finds.
#[derive(Default)]
pub(crate) struct Slot<T> {
    tag: u64,
    what: T,
}

pub(crate) type PairSlot = Slot<Answer>;
/// A macro call's (or a timer's) entry: the thread's handle.
pub(crate) type KeySlot = Slot<Option<Arc<Bound>>>;

/// One thread's table; see the module documentation.
pub(crate) struct Table<S> {
    slots: Box<[S]>,
    /// Per set: bits 0–3 say which ways are taken, bits 4–7 which were used since the hand
    /// passed, bits 8–9 where the hand is.
    sets: Box<[u16]>,
    lookups: u32,
    misses: u32,
    skipped: u8,
    max: usize,
}

/// Families remembered per thread, by the keyed hash of a recorder, kind and name: a miss
/// finds its family without the store's table. Ids never change meaning (a family is
/// never removed), so an entry is never wrong.
const FAMILY_SLOTS: usize = 64;

thread_local! {
    pub(crate) static PAIRS: RefCell<Option<Table<PairSlot>>> = const { RefCell::new(None) };
    pub(crate) static KEYS: RefCell<Option<Table<KeySlot>>> = const { RefCell::new(None) };
    /// `(tag, family id + 1)`, direct-mapped; 0 is empty.
    static FAMILIES: RefCell<[(u64, u32); FAMILY_SLOTS]> =
        const { RefCell::new([(0, 0); FAMILY_SLOTS]) };
}

/// The family this thread found for `tag` before, if it remembers it.
#[inline]
pub(crate) fn family(tag: u64) -> Option<u32> {
    FAMILIES
        .try_with(|f| {
            let (kept, id) = f.try_borrow().ok()?[tag as usize % FAMILY_SLOTS];
            (kept == tag && id != 0).then(|| id - 1)
        })
        .ok()
        .flatten()
}

/// Remembers that `tag` is the family `id`.
pub(crate) fn keep_family(tag: u64, id: u32) {
    let _ = FAMILIES.try_with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            f[tag as usize % FAMILY_SLOTS] = (tag, id.saturating_add(1));
        }
    });
}

const USED_SHIFT: u16 = 4;
const HAND_SHIFT: u16 = 8;

impl<T: Default> Table<Slot<T>> {
    fn with_slots(n: usize, max: usize) -> Self {
        Self {
            slots: (0..n).map(|_| Slot::default()).collect(),
            sets: vec![0; n / WAYS].into_boxed_slice(),
            lookups: 0,
            misses: 0,
            skipped: 0,
            max,
        }
    }

    #[inline]
    fn set(&self, hash: u64) -> usize {
        (hash >> 32) as usize & (self.sets.len() - 1)
    }

    /// What the slot of `hash` finds, if there is one (marked used).
    #[inline]
    pub(crate) fn get(&mut self, hash: u64) -> Option<&T> {
        self.lookups = self.lookups.wrapping_add(1);
        let set = self.set(hash);
        let flags = self.sets[set];
        let base = set * WAYS;
        let way = (0..WAYS).find(|&w| flags & 1 << w != 0 && self.slots[base + w].tag == hash);
        match way {
            Some(way) => {
                self.sets[set] = flags | 1 << (USED_SHIFT + way as u16);
                Some(&self.slots[base + way].what)
            }
            None => {
                self.miss();
                None
            }
        }
    }

    /// Counts a miss (a hit that failed its check is one).
    pub(crate) fn miss(&mut self) {
        self.misses = self.misses.wrapping_add(1);
    }

    /// Whether a miss should be kept: always, but at the largest size while most lookups
    /// miss, only one in eight (growing first if the table is thrashing).
    pub(crate) fn admit(&mut self) -> bool {
        if self.lookups >= WINDOW {
            let thrashing = self.misses * 4 > self.lookups;
            self.lookups = 0;
            self.misses = 0;
            if thrashing && self.slots.len() < self.max {
                *self = Self::with_slots(self.slots.len() * 2, self.max);
                return true;
            }
        }
        if self.slots.len() < self.max || self.misses * 2 < self.lookups {
            return true;
        }
        self.skipped = self.skipped.wrapping_add(1);
        self.skipped.is_multiple_of(8)
    }

    /// Keeps `what` for `hash`: over a slot of the same tag, in a free one, or over the
    /// first the hand finds unused since it last passed.
    pub(crate) fn put(&mut self, hash: u64, what: T) {
        let set = self.set(hash);
        let base = set * WAYS;
        let mut flags = self.sets[set];
        let same = (0..WAYS).find(|&w| flags & 1 << w != 0 && self.slots[base + w].tag == hash);
        let way = match same.or_else(|| (0..WAYS).find(|&w| flags & 1 << w == 0)) {
            Some(way) => way,
            None => loop {
                let hand = usize::from(flags >> HAND_SHIFT & 3);
                flags = flags & !(3 << HAND_SHIFT) | ((hand as u16 + 1) & 3) << HAND_SHIFT;
                let used = 1 << (USED_SHIFT + hand as u16);
                if flags & used == 0 {
                    break hand;
                }
                flags &= !used;
            },
        };
        self.sets[set] = flags | 1 << way;
        self.slots[base + way] = Slot { tag: hash, what };
    }
}

/// Runs `f` on this thread's collector table (made on first use); `None` if the table is
/// busy (a recorder recording while it resolves) or gone (the thread is ending).
#[inline]
pub(crate) fn pairs<T>(f: impl FnOnce(&mut Table<PairSlot>) -> T) -> Option<T> {
    with(&PAIRS, MAX_SLOTS, f)
}

/// Runs `f` on this thread's macro-key table, as [`pairs`] does.
#[inline]
pub(crate) fn keys<T>(f: impl FnOnce(&mut Table<KeySlot>) -> T) -> Option<T> {
    with(&KEYS, MAX_KEY_SLOTS, f)
}

#[inline]
fn with<W: Default, T>(
    key: &'static std::thread::LocalKey<RefCell<Option<Table<Slot<W>>>>>,
    max: usize,
    f: impl FnOnce(&mut Table<Slot<W>>) -> T,
) -> Option<T> {
    key.try_with(|cell| {
        let mut table = cell.try_borrow_mut().ok()?;
        Some(f(
            table.get_or_insert_with(|| Table::with_slots(MIN_SLOTS, max))
        ))
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_finds_what_it_keeps_and_replaces_unused_entries_first() {
        let mut table = Table::<PairSlot>::with_slots(MIN_SLOTS, MAX_SLOTS);
        // Five hashes in one set (the bits that choose it are equal), distinct tags.
        let sets = (MIN_SLOTS / WAYS) as u64;
        let hashes: Vec<u64> = (1..=5).map(|i| ((i * sets) << 32) | i).collect();
        let at = |index: u32| Answer::Series {
            family: 0,
            index,
            generation: 0,
        };
        let index_of = |a: &Answer| match *a {
            Answer::Series { index, .. } => index,
            _ => u32::MAX,
        };
        for (i, &h) in hashes.iter().take(4).enumerate() {
            table.put(h, at(i as u32));
        }
        assert_eq!(table.get(hashes[2]).map(index_of), Some(2));
        assert!(table.get(hashes[4]).is_none());
        // The fifth evicts one not used since the hand passed: not the one just read.
        table.put(hashes[4], at(4));
        assert_eq!(table.get(hashes[4]).map(index_of), Some(4));
        assert_eq!(table.get(hashes[2]).map(index_of), Some(2));
        let kept = hashes.iter().filter(|h| table.get(**h).is_some()).count();
        assert_eq!(kept, 4);
        // Tags are whole hashes: the lowest bits tell two calls apart too.
        assert!(table.get(hashes[2] ^ 1).is_none());
    }

    #[test]
    fn a_slot_stays_small() {
        assert_eq!(std::mem::size_of::<PairSlot>(), 24);
    }
}
