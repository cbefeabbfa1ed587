//! How a call finds its series fast: a small per-thread table in front of the store.
//!
//! A collector call's entry is 16 bytes: a tag (from the hash of the call as given), the
//! family and series indices, and the permutation from the call's pairs to the series'
//! (sorted) ones. It holds no key and no reference: a hit is checked against the series'
//! own interned label strings, so an entry for a series reclaimed, or for another
//! recorder, is a miss, never a wrong answer. A macro's entry holds, in place of the
//! indices, the thread's own handle for the series (the `metrics` API returns one per call:
//! cloning a handle no other thread touches is no shared write).
//!
//! Each table is 4-way set-associative; it starts at [`MIN_SLOTS`] and doubles, up to
//! [`MAX_SLOTS`], while more than a quarter of its lookups miss. A full set loses the
//! first entry a CLOCK hand finds unused since it last passed; a thread whose working set
//! outgrows the largest table keeps only one miss in eight.

use std::cell::RefCell;
use std::sync::Arc;

use crate::handle::Bound;

const WAYS: usize = 4;
/// Slots per table: where a thread starts, and how far it grows (16 bytes each for the
/// collector's).
pub(crate) const MIN_SLOTS: usize = 256;
pub(crate) const MAX_SLOTS: usize = 4096;
/// Lookups between two looks at a table's miss rate.
const WINDOW: u32 = 4096;

/// Bit 0 of a stored tag: used since the hand passed. Bit 1: occupied.
const USED: u32 = 1;
const TAKEN: u32 = 2;

/// A slot of a table.
pub(crate) trait Slot: Default {
    fn tag(&self) -> u32;
    fn tag_mut(&mut self) -> &mut u32;
}

/// A collector call's entry.
#[derive(Clone, Copy, Default)]
pub(crate) struct PairSlot {
    pub(crate) tag: u32,
    pub(crate) family: u32,
    pub(crate) series: u32,
    pub(crate) perm: u32,
}

/// A macro call's (or a timer's) entry.
#[derive(Default)]
pub(crate) struct KeySlot {
    pub(crate) tag: u32,
    pub(crate) perm: u32,
    pub(crate) bound: Option<Arc<Bound>>,
}

impl Slot for PairSlot {
    fn tag(&self) -> u32 {
        self.tag
    }
    fn tag_mut(&mut self) -> &mut u32 {
        &mut self.tag
    }
}

impl Slot for KeySlot {
    fn tag(&self) -> u32 {
        self.tag
    }
    fn tag_mut(&mut self) -> &mut u32 {
        &mut self.tag
    }
}

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

/// The stored form of a hash's tag.
#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32 | TAKEN
}

impl<S: Slot> Table<S> {
    fn with_slots(n: usize) -> Self {
        Self {
            slots: (0..n).map(|_| S::default()).collect(),
            hands: vec![0; n / WAYS].into_boxed_slice(),
            lookups: 0,
            misses: 0,
            skipped: 0,
        }
    }

    #[inline]
    fn set(&self, hash: u64) -> usize {
        (hash as usize & (self.slots.len() / WAYS - 1)) * WAYS
    }

    /// The slot of `hash`, if any, marked used.
    #[inline]
    pub(crate) fn get(&mut self, hash: u64) -> Option<&S> {
        self.lookups = self.lookups.wrapping_add(1);
        let tag = tag_of(hash);
        let base = self.set(hash);
        let way = self.slots[base..base + WAYS]
            .iter()
            .position(|s| s.tag() | USED == tag | USED);
        match way {
            Some(way) => {
                let slot = &mut self.slots[base + way];
                *slot.tag_mut() |= USED;
                Some(slot)
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

    /// Puts `slot` in the set of `hash`: over a slot of the same tag, in a free one, or
    /// over the first the hand finds unused since it last passed.
    pub(crate) fn put(&mut self, hash: u64, mut slot: S) {
        let tag = tag_of(hash);
        *slot.tag_mut() = tag;
        let base = self.set(hash);
        let ways = &self.slots[base..base + WAYS];
        let way = match ways
            .iter()
            .position(|s| s.tag() | USED == tag | USED)
            .or_else(|| ways.iter().position(|s| s.tag() == 0))
        {
            Some(way) => base + way,
            None => {
                let hand = &mut self.hands[base / WAYS];
                loop {
                    let way = base + usize::from(*hand) % WAYS;
                    *hand = hand.wrapping_add(1);
                    let tag = self.slots[way].tag_mut();
                    let used = *tag & USED != 0;
                    *tag &= !USED;
                    if !used {
                        break way;
                    }
                }
            }
        };
        self.slots[way] = slot;
    }
}

/// Runs `f` on this thread's table of `key` (made on first use); `None` if the table is
/// busy (a recorder recording while it resolves) or gone (the thread is ending).
#[inline]
pub(crate) fn with<S: Slot, T>(
    key: &'static std::thread::LocalKey<RefCell<Option<Table<S>>>>,
    f: impl FnOnce(&mut Table<S>) -> T,
) -> Option<T> {
    key.try_with(|cell| {
        let mut table = cell.try_borrow_mut().ok()?;
        Some(f(table.get_or_insert_with(|| Table::with_slots(MIN_SLOTS))))
    })
    .ok()
    .flatten()
}

/// A fast seeded hash of a call as given: the seed (a recorder's), the kind, the name and
/// the label strings. Collisions only cost a miss: a hit is checked.
#[inline]
pub(crate) fn call_hash<'a>(seed: u64, name: &str, parts: impl Iterator<Item = &'a str>) -> u64 {
    const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;
    #[inline]
    fn mix(h: u64, word: u64) -> u64 {
        (h.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER)
    }
    #[inline]
    fn word(bytes: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        let n = bytes.len().min(8);
        w[..n].copy_from_slice(&bytes[..n]);
        u64::from_le_bytes(w)
    }
    #[inline]
    fn mix_bytes(mut h: u64, bytes: &[u8]) -> u64 {
        let n = bytes.len();
        let len = (n as u64) << 56;
        if n <= 8 {
            return mix(h, word(bytes) ^ len);
        }
        let mut at = 0;
        while at + 8 < n {
            h = mix(h, word(&bytes[at..]));
            at += 8;
        }
        mix(h, word(&bytes[n - 8..]) ^ len)
    }
    let mut h = mix_bytes(seed, name.as_bytes());
    for part in parts {
        h = mix_bytes(h, part.as_bytes());
    }
    h ^= h >> 29;
    h = h.wrapping_mul(MULTIPLIER);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_finds_what_it_keeps_and_replaces_unused_entries_first() {
        let mut table = Table::<PairSlot>::with_slots(MIN_SLOTS);
        let set_stride = (MIN_SLOTS / WAYS) as u64;
        // Five hashes in one set (same low bits), distinct tags.
        let hashes: Vec<u64> = (1..=5).map(|i| (i << 40) | set_stride).collect();
        for (i, &h) in hashes.iter().take(4).enumerate() {
            table.put(
                h,
                PairSlot {
                    series: i as u32,
                    ..PairSlot::default()
                },
            );
        }
        assert_eq!(table.get(hashes[2]).map(|s| s.series), Some(2));
        assert!(table.get(hashes[4]).is_none());
        // The fifth evicts one not used since the hand passed: not the one just read.
        table.put(
            hashes[4],
            PairSlot {
                series: 4,
                ..PairSlot::default()
            },
        );
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
        ];
        let distinct: std::collections::HashSet<u64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
        assert_ne!(call_hash(8, "m", ["k", "v"].into_iter()), all[0]);
    }
}
