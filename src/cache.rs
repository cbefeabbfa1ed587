//! How a call finds its series fast: a small per-thread table in front of the store.
//!
//! A collector call's entry is 24 bytes: the call's hash, and the family and series
//! indices with the series' state when the entry was made. It holds no key and no
//! reference. A hit is the call's 64-bit hash, keyed with a secret random per process (so
//! no one can aim a call at another's entry), and the family's name; it is checked against
//! the record's state, whose generation changes when a record is reclaimed, so an entry
//! for a series gone is a miss, never a wrong answer. A miss compares the call's pairs
//! with the family's series themselves. A macro's entry holds, in place of the indices,
//! the thread's own handle for the series (the `metrics` API returns one per call: cloning
//! a handle no other thread touches is no shared write).
//!
//! Each table is 4-way set-associative; it starts at [`MIN_SLOTS`] and doubles, up to
//! [`MAX_SLOTS`], while more than a quarter of its lookups miss. A full set loses the
//! first entry a CLOCK hand finds unused since it last passed; a thread whose working set
//! outgrows the largest table keeps only one miss in eight.

use std::cell::RefCell;
use std::sync::Arc;

use crate::handle::Bound;
use crate::store::arena::pack;

const WAYS: usize = 4;
/// Slots per table: where a thread starts, and how far it grows (24 bytes each).
pub(crate) const MIN_SLOTS: usize = 256;
pub(crate) const MAX_SLOTS: usize = 4096;
/// Lookups between two looks at a table's miss rate.
const WINDOW: u32 = 4096;

/// Bit 0 of a stored tag: used since the hand passed. Bit 1: occupied.
const USED: u64 = 1;
const TAKEN: u64 = 2;

/// A slot of a table: its tag, and what it finds.
#[derive(Default)]
pub(crate) struct Slot<T> {
    tag: u64,
    pub(crate) what: T,
}

/// What a collector call's entry finds: family, series, and the series' state then.
#[derive(Clone, Copy, Default)]
pub(crate) struct Indices {
    pub(crate) family: u32,
    pub(crate) series: u32,
    pub(crate) state: u32,
}

pub(crate) type PairSlot = Slot<Indices>;
/// A macro call's (or a timer's) entry: the thread's handle.
pub(crate) type KeySlot = Slot<Option<Arc<Bound>>>;

/// One thread's table; see the module documentation.
pub(crate) struct Table<S> {
    slots: Box<[S]>,
    hands: Box<[u8]>,
    lookups: u32,
    misses: u32,
    skipped: u8,
}

thread_local! {
    pub(crate) static PAIRS: RefCell<Option<Table<PairSlot>>> = const { RefCell::new(None) };
    pub(crate) static KEYS: RefCell<Option<Table<KeySlot>>> = const { RefCell::new(None) };
}

/// The stored form of a hash: the whole hash, but for its two lowest bits.
#[inline]
fn tag_of(hash: u64) -> u64 {
    hash | TAKEN
}

impl<T: Default> Table<Slot<T>> {
    fn with_slots(n: usize) -> Self {
        Self {
            slots: (0..n).map(|_| Slot::default()).collect(),
            hands: vec![0; n / WAYS].into_boxed_slice(),
            lookups: 0,
            misses: 0,
            skipped: 0,
        }
    }

    #[inline]
    fn set(&self, hash: u64) -> usize {
        ((hash >> 32) as usize & (self.slots.len() / WAYS - 1)) * WAYS
    }

    /// What the slot of `hash` finds, if there is one (marked used).
    #[inline]
    pub(crate) fn get(&mut self, hash: u64) -> Option<&T> {
        self.lookups = self.lookups.wrapping_add(1);
        let tag = tag_of(hash);
        let base = self.set(hash);
        let way = self.slots[base..base + WAYS]
            .iter()
            .position(|s| s.tag | USED == tag | USED);
        match way {
            Some(way) => {
                let slot = &mut self.slots[base + way];
                slot.tag |= USED;
                Some(&slot.what)
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
            if thrashing && self.slots.len() < MAX_SLOTS {
                self.grow();
                return true;
            }
        }
        if self.slots.len() < MAX_SLOTS || self.misses * 2 < self.lookups {
            return true;
        }
        self.skipped = self.skipped.wrapping_add(1);
        self.skipped % 8 == 0
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, Self::with_slots(self.slots.len() * 2));
        // The tags do not tell which set a slot came from: start empty.
        drop(old);
    }

    /// Keeps `what` for `hash`: over a slot of the same tag, in a free one, or over the
    /// first the hand finds unused since it last passed.
    pub(crate) fn put(&mut self, hash: u64, what: T) {
        let tag = tag_of(hash);
        let base = self.set(hash);
        let ways = &self.slots[base..base + WAYS];
        let way = match ways
            .iter()
            .position(|s| s.tag | USED == tag | USED)
            .or_else(|| ways.iter().position(|s| s.tag == 0))
        {
            Some(way) => base + way,
            None => {
                let hand = &mut self.hands[base / WAYS];
                loop {
                    let way = base + usize::from(*hand) % WAYS;
                    *hand = hand.wrapping_add(1);
                    let tag = &mut self.slots[way].tag;
                    let used = *tag & USED != 0;
                    *tag &= !USED;
                    if !used {
                        break way;
                    }
                }
            }
        };
        self.slots[way] = Slot { tag, what };
    }
}

/// Runs `f` on this thread's table of `key` (made on first use); `None` if the table is
/// busy (a recorder recording while it resolves) or gone (the thread is ending).
#[inline]
pub(crate) fn with<W: Default, T>(
    key: &'static std::thread::LocalKey<RefCell<Option<Table<Slot<W>>>>>,
    f: impl FnOnce(&mut Table<Slot<W>>) -> T,
) -> Option<T> {
    key.try_with(|cell| {
        let mut table = cell.try_borrow_mut().ok()?;
        Some(f(table.get_or_insert_with(|| Table::with_slots(MIN_SLOTS))))
    })
    .ok()
    .flatten()
}

/// The process's secret key for call hashes, random per process.
fn key() -> [u64; 2] {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        let random = hashbrown::DefaultHashBuilder::default();
        [random.hash_one(1u8) | 1, random.hash_one(2u8) | 1]
    })
}

/// The high and low halves of a full 64 × 64 bit product, folded: each output bit
/// depends on every input bit (the mixing of foldhash and wyhash).
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ (product >> 64) as u64
}

/// The keyed hash of a call as given: `seed` (a recorder's, with the kind), the name and
/// the label strings, each with its length so that no two calls read alike.
#[inline]
pub(crate) fn call_hash<'a>(seed: u64, name: &str, parts: impl Iterator<Item = &'a str>) -> u64 {
    let [k0, k1] = key();
    let mut h = fold(seed ^ k0, k1);
    let mut mix = |part: &str| {
        let bytes = part.as_bytes();
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            h = fold(h ^ pack(word), k0);
        }
        // The length with the last word: no two splits of one text read alike.
        h = fold(h ^ pack(words.remainder()), k1 ^ (bytes.len() as u64) << 1);
    };
    mix(name);
    parts.for_each(mix);
    fold(h, k0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_finds_what_it_keeps_and_replaces_unused_entries_first() {
        let mut table = Table::<PairSlot>::with_slots(MIN_SLOTS);
        // Five hashes in one set (the bits that choose it are equal), distinct tags.
        let sets = (MIN_SLOTS / WAYS) as u64;
        let hashes: Vec<u64> = (1..=5).map(|i| ((i * sets) << 32) | (4 * i)).collect();
        let at = |series: u32| Indices {
            series,
            ..Indices::default()
        };
        for (i, &h) in hashes.iter().take(4).enumerate() {
            table.put(h, at(i as u32));
        }
        assert_eq!(table.get(hashes[2]).map(|s| s.series), Some(2));
        assert!(table.get(hashes[4]).is_none());
        // The fifth evicts one not used since the hand passed: not the one just read.
        table.put(hashes[4], at(4));
        assert_eq!(table.get(hashes[4]).map(|s| s.series), Some(4));
        assert_eq!(table.get(hashes[2]).map(|s| s.series), Some(2));
        let kept = hashes.iter().filter(|h| table.get(**h).is_some()).count();
        assert_eq!(kept, 4);
    }

    #[test]
    fn hashes_tell_calls_apart() {
        let h = |name: &str, parts: &[&str]| call_hash(7, name, parts.iter().copied());
        let all = [
            h("m", &["k", "v"]),
            h("m", &["k", "w"]),
            h("m", &["kv", ""]),
            h("mk", &["v"]),
            h("m", &["k", "abcdefghi"]),
            h("m", &["k", "abcdefghj"]),
            h("m", &["k", "abcdefgh", "i"]),
        ];
        let distinct: std::collections::HashSet<u64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
        assert_ne!(call_hash(8, "m", ["k", "v"].into_iter()), all[0]);
    }
}
