//! A family's interned strings and label lists, in words of atomics.
//!
//! Label keys and values are interned once per family: a series holds the offsets of its
//! pairs' strings, never the text. A string at offset `o` is a header word (its length in
//! bytes, and how many label lists use it) followed by its bytes, eight to a word. A label
//! list is a word with its length followed by one word per pair (key offset, value offset).
//!
//! Everything is written under the family's write lock ([`Space`] is what that lock
//! guards) and read without any lock: the words are atomics, so a reader racing a reuse of
//! freed space reads other bytes, never undefined ones. Readers check the series' state
//! before and after (see `family`), which tells them to discard such a read.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{fence, AtomicU64, Ordering};

use hashbrown::{HashMap, HashTable};

use super::hash::pack;
use super::slab::Segmented;

/// The words; the first segment holds 64.
#[derive(Default)]
pub(crate) struct Arena {
    words: Words,
}

type Words = Segmented<Box<[AtomicU64]>, 6>;

/// Words a string of `len` bytes takes, its header included.
fn words_for(len: usize) -> usize {
    1 + len.div_ceil(8)
}

impl Arena {
    /// `n` words from `at`: a block never spans two segments, so one look finds it (empty
    /// when out of range).
    #[inline]
    fn block(&self, at: u32, n: usize) -> &[AtomicU64] {
        let (k, offset) = Words::locate(at);
        self.words
            .segment(k)
            .and_then(|s| s.get(offset..offset + n))
            .unwrap_or(&[])
    }

    #[inline]
    fn word(&self, at: u32) -> u64 {
        self.block(at, 1)
            .first()
            .map_or(0, |w| w.load(Ordering::Relaxed))
    }

    fn set(&self, at: u32, word: u64) {
        if let Some(w) = self.block(at, 1).first() {
            w.store(word, Ordering::Relaxed);
        }
    }

    /// The length in bytes of the string `id`.
    #[inline]
    fn len(&self, id: u32) -> usize {
        self.word(id) as u32 as usize
    }

    /// The words of the string `id`, after its header: one look for both.
    #[inline]
    fn text(&self, id: u32) -> (usize, &[AtomicU64]) {
        let (k, offset) = Words::locate(id);
        let Some(segment) = self.words.segment(k) else {
            return (0, &[]);
        };
        let len = segment
            .get(offset)
            .map_or(0, |w| w.load(Ordering::Relaxed) as u32 as usize);
        let words = segment.get(offset + 1..offset + 1 + len.div_ceil(8));
        (len, words.unwrap_or(&[]))
    }

    /// Whether the string `id` is `s`.
    #[inline]
    pub(crate) fn eq(&self, id: u32, s: &str) -> bool {
        let bytes = s.as_bytes();
        let (len, words) = self.text(id);
        len == bytes.len()
            && words.len() == len.div_ceil(8)
            && bytes
                .chunks(8)
                .zip(words)
                .all(|(chunk, w)| w.load(Ordering::Relaxed) == pack(chunk))
    }

    /// Appends the bytes of the string `id` to `out`.
    pub(crate) fn read(&self, id: u32, out: &mut Vec<u8>) {
        let (len, words) = self.text(id);
        let end = out.len() + len;
        // Whole words, then the padding cut: fixed-size copies, no call per word.
        for w in words {
            out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        out.truncate(end);
    }

    /// The label list at `list`: its pairs, each (key, value) string ids.
    #[inline]
    pub(crate) fn list(&self, list: u32) -> impl ExactSizeIterator<Item = (u32, u32)> + Clone + '_ {
        let n = self.word(list) as u32 as usize;
        self.block(list + 1, n).iter().map(|w| {
            let word = w.load(Ordering::Relaxed);
            (word as u32, (word >> 32) as u32)
        })
    }

    /// The [hash](super::hash::text) of the string `id`, from its words.
    pub(crate) fn hash(&self, id: u32) -> u64 {
        let (len, words) = self.text(id);
        super::hash::words(len, words.iter().map(|w| w.load(Ordering::Relaxed)))
    }

    /// Feeds the string `id` to `h` as [`hash_text`] feeds its text.
    pub(crate) fn hash_into(&self, id: u32, h: &mut impl Hasher) {
        let (len, words) = self.text(id);
        h.write_usize(len);
        words
            .iter()
            .for_each(|w| h.write_u64(w.load(Ordering::Relaxed)));
    }

    fn hash_of(&self, hasher: &impl BuildHasher, id: u32) -> u64 {
        let mut h = hasher.build_hasher();
        self.hash_into(id, &mut h);
        h.finish()
    }
}

/// Feeds `s` to `h`, eight bytes at a time: as the arena hashes its copy.
pub(crate) fn hash_text(s: &str, h: &mut impl Hasher) {
    h.write_usize(s.len());
    for chunk in s.as_bytes().chunks(8) {
        h.write_u64(pack(chunk));
    }
}

fn hash_str(hasher: &impl BuildHasher, s: &str) -> u64 {
    let mut h = hasher.build_hasher();
    hash_text(s, &mut h);
    h.finish()
}

/// What the family's write lock guards in the arena: where free words are, and the
/// interner's index.
#[derive(Default)]
pub(crate) struct Space {
    /// The first word never used.
    next: u32,
    /// Freed blocks, by size in words.
    free: HashMap<u32, Vec<u32>>,
    /// Interned strings, by the hash of their text.
    strings: HashTable<u32>,
}

impl Space {
    /// A block of `n` words, from the freed ones if one fits exactly.
    fn alloc(&mut self, arena: &Arena, n: usize) -> u32 {
        let size = u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(at) = self.free.get_mut(&size).and_then(Vec::pop) {
            return at;
        }
        loop {
            let (k, at) = Words::locate(self.next);
            let room = Words::size(k) - at;
            if room >= n {
                arena.words.reserve(self.next);
                let start = self.next;
                self.next += size;
                return start;
            }
            // A block never spans two segments: the tail is kept for a smaller one.
            if room > 0 {
                let tail = u32::try_from(room).unwrap_or(u32::MAX);
                self.free.entry(tail).or_default().push(self.next);
            }
            self.next = Words::start(k + 1);
        }
    }

    fn release_block(&mut self, at: u32, n: usize) {
        let size = u32::try_from(n).unwrap_or(u32::MAX);
        self.free.entry(size).or_default().push(at);
    }

    /// Writes words at `at`: a release fence first, so a reader that sees any of them also
    /// sees whatever made the old contents stale (see the module documentation).
    fn write(arena: &Arena, at: u32, words: impl Iterator<Item = u64>) {
        fence(Ordering::Release);
        for (i, word) in words.enumerate() {
            arena.set(at + i as u32, word);
        }
    }

    /// The id of `s`, interned if new; one more list uses it.
    pub(crate) fn intern(&mut self, arena: &Arena, hasher: &impl BuildHasher, s: &str) -> u32 {
        let hash = hash_str(hasher, s);
        if let Some(&id) = self.strings.find(hash, |&id| arena.eq(id, s)) {
            arena.set(id, arena.word(id) + (1 << 32));
            return id;
        }
        let id = self.alloc(arena, words_for(s.len()));
        let header = s.len() as u64 | 1 << 32;
        let bytes = s.as_bytes().chunks(8).map(pack);
        Self::write(arena, id, std::iter::once(header).chain(bytes));
        self.strings
            .insert_unique(hash, id, |&id| arena.hash_of(hasher, id));
        id
    }

    /// One list fewer uses the string `id`; the last one frees it.
    fn release(&mut self, arena: &Arena, hasher: &impl BuildHasher, id: u32) {
        let header = arena.word(id);
        if header >> 32 > 1 {
            arena.set(id, header - (1 << 32));
            return;
        }
        let hash = arena.hash_of(hasher, id);
        if let Ok(entry) = self.strings.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        self.release_block(id, words_for(arena.len(id)));
    }

    /// Writes a label list of interned `(key, value)` ids; returns its offset.
    pub(crate) fn list(&mut self, arena: &Arena, pairs: &[(u32, u32)]) -> u32 {
        let at = self.alloc(arena, 1 + pairs.len());
        let words = pairs
            .iter()
            .map(|&(k, v)| u64::from(k) | u64::from(v) << 32);
        Self::write(arena, at, std::iter::once(pairs.len() as u64).chain(words));
        at
    }

    /// Frees the label list at `list` and releases its strings.
    pub(crate) fn free_list(&mut self, arena: &Arena, hasher: &impl BuildHasher, list: u32) {
        let pairs: Vec<(u32, u32)> = arena.list(list).collect();
        for &(key, value) in &pairs {
            self.release(arena, hasher, key);
            self.release(arena, hasher, value);
        }
        self.release_block(list, 1 + pairs.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_interned_compared_and_reused_when_freed() {
        let arena = Arena::default();
        let hasher = hashbrown::DefaultHashBuilder::default();
        let mut space = Space::default();
        let long = "x".repeat(700); // past the first segment
                                    // Interned once per use in a list.
        let a = space.intern(&arena, &hasher, "GET");
        let b = space.intern(&arena, &hasher, &long);
        let c = space.intern(&arena, &hasher, "");
        assert_eq!(space.intern(&arena, &hasher, "GET"), a);
        assert!(arena.eq(a, "GET") && !arena.eq(a, "GETS") && !arena.eq(a, "PUT"));
        assert!(arena.eq(b, &long) && arena.eq(c, ""));
        let mut out = Vec::new();
        arena.read(b, &mut out);
        assert_eq!(out, long.as_bytes());
        let list = space.list(&arena, &[(a, b), (c, a)]);
        assert_eq!(arena.list(list).collect::<Vec<_>>(), [(a, b), (c, a)]);
        for s in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "é✓",
        ] {
            let mut word = [0u8; 8];
            let n = s.len().min(8);
            word[..n].copy_from_slice(&s.as_bytes()[..n]);
            assert_eq!(pack(s.as_bytes()), u64::from_le_bytes(word), "{s}");
        }
        // Another list keeps "GET" alive when the first is freed.
        let kept = space.intern(&arena, &hasher, "GET");
        space.free_list(&arena, &hasher, list);
        assert!(arena.eq(kept, "GET"));
        assert_ne!(space.intern(&arena, &hasher, "PUT"), a); // "GET" still holds its words
        let other = space.list(&arena, &[(kept, kept)]);
        space.intern(&arena, &hasher, "GET");
        space.free_list(&arena, &hasher, other);
        // Now freed (with the second list's block, of its size): the words are reused.
        let again = space.intern(&arena, &hasher, "PAT");
        assert!([a, other].contains(&again));
        assert!(arena.eq(again, "PAT"));
        assert_ne!(space.intern(&arena, &hasher, "GET"), again);
    }
}
