//! The one hash of names and label sets: keyed with a secret random per process (so no one
//! can aim two label sets at one value), and blind to the order of the pairs.
//!
//! A label set hashes to the wrapping sum of its pairs' hashes, so a call's pairs hash as
//! their canonical (sorted) set does without being sorted: a clean call's hash is its
//! series' hash, and the thread caches, the family's index and growth all use it, computed
//! once per call. A string hashes by the eight-byte words the arena stores it in, so a hash
//! is computed again from an interned copy without its text.

/// Up to eight bytes as a little-endian word, zero-padded: two overlapping loads, without
/// a call to `memcpy` (a hit hashes a few short strings).
#[inline]
pub(crate) fn pack(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let word = |at: usize, w: usize| -> u64 {
        match w {
            8 => bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes),
            4 => bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b| u32::from_le_bytes(b).into()),
            _ => bytes
                .get(at..at + 2)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b| u16::from_le_bytes(b).into()),
        }
    };
    match n {
        8.. => word(0, 8),
        4..=7 => word(0, 4) | word(n - 4, 4) << (8 * (n - 4)),
        2..=3 => word(0, 2) | word(n - 2, 2) << (8 * (n - 2)),
        1 => u64::from(bytes[0]),
        0 => 0,
    }
}

/// The process's secret, random per process.
fn secret() -> [u64; 4] {
    use std::hash::BuildHasher;
    static SECRET: std::sync::OnceLock<[u64; 4]> = std::sync::OnceLock::new();
    *SECRET.get_or_init(|| {
        let random = hashbrown::DefaultHashBuilder::default();
        std::array::from_fn(|i| random.hash_one(i) | 1)
    })
}

/// The high and low halves of a full 64 × 64 bit product, folded: each output bit depends
/// on every input bit (the mixing of foldhash and wyhash).
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ (product >> 64) as u64
}

/// The secret, read once for a call's several hashes.
#[derive(Clone, Copy)]
pub(crate) struct Keys([u64; 4]);

/// The process's keys.
#[inline]
pub(crate) fn keys() -> Keys {
    Keys(secret())
}

impl Keys {
    /// The hash of a string of `len` bytes stored as `words` (little-endian, zero-padded):
    /// one folded product per sixteen bytes.
    #[inline]
    pub(crate) fn words(self, len: usize, mut words: impl Iterator<Item = u64>) -> u64 {
        let [k0, k1, ..] = self.0;
        let mut h = k1 ^ len as u64;
        while let Some(first) = words.next() {
            let second = words.next().unwrap_or(0);
            h = fold(first ^ h ^ k0, second ^ k1);
        }
        h
    }

    /// The hash of a string: as [`words`](Self::words) of its eight-byte words.
    #[inline(always)]
    pub(crate) fn text(self, s: &str) -> u64 {
        let bytes = s.as_bytes();
        let [k0, k1, ..] = self.0;
        let h = k1 ^ bytes.len() as u64;
        // Most names, keys and values are short: one product, no loop.
        match bytes.len() {
            0 => h,
            1..=8 => fold(pack(bytes) ^ h ^ k0, k1),
            9..=16 => {
                let (first, rest) = bytes.split_at(8);
                let first = first.try_into().map_or(0, u64::from_le_bytes);
                fold(first ^ h ^ k0, pack(rest) ^ k1)
            }
            len => self.words(len, bytes.chunks(8).map(pack)),
        }
    }

    /// A label pair's hash, from its key's and value's.
    #[inline]
    pub(crate) fn pair(self, key: u64, value: u64) -> u64 {
        let [.., k2, k3] = self.0;
        fold(key ^ k2, value ^ k3)
    }

    /// The hash of a label set: the sum of its pairs', in any order.
    #[inline]
    pub(crate) fn labels<'a>(self, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
        pairs.fold(0u64, |sum, (k, v)| {
            sum.wrapping_add(self.pair(self.text(k), self.text(v)))
        })
    }

    /// A call's hash: `seed` (a recorder's, with the kind), the name's hash, and its labels'.
    #[inline]
    pub(crate) fn call(self, seed: u64, name: u64, labels: u64) -> u64 {
        let [k0, k1, ..] = self.0;
        fold(name ^ seed.wrapping_mul(k1), labels ^ k0)
    }

    /// A `metrics` key's own hash made a call's: keyed by `seed`. (The key's hash is not
    /// secret, so a hit on it is checked against the key itself.)
    #[inline]
    pub(crate) fn of_key(self, seed: u64, key_hash: u64) -> u64 {
        let [k0, k1, ..] = self.0;
        fold(key_hash ^ k0, seed ^ k1)
    }
}

/// The hash of a string stored as words (see [`Keys::words`]).
pub(crate) fn words(len: usize, words: impl Iterator<Item = u64>) -> u64 {
    keys().words(len, words)
}

/// A label pair's hash (see [`Keys::pair`]).
pub(crate) fn pair(key: u64, value: u64) -> u64 {
    keys().pair(key, value)
}

/// The hash of a label set (see [`Keys::labels`]).
pub(crate) fn labels<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    keys().labels(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_hash_alike_in_any_order_and_apart_otherwise() {
        let set = |pairs: &[(&str, &str)]| labels(pairs.iter().copied());
        assert_eq!(
            set(&[("a", "1"), ("b", "2")]),
            set(&[("b", "2"), ("a", "1")])
        );
        let all = [
            set(&[("a", "1"), ("b", "2")]),
            set(&[("a", "2"), ("b", "1")]),
            set(&[("a", "12"), ("b", "")]),
            set(&[("a1", ""), ("b", "2")]),
            set(&[("b", "1"), ("a", "2")]),
            set(&[("k", "abcdefgh"), ("k", "i")]),
            set(&[("k", "abcdefghi")]),
            set(&[]),
        ];
        let distinct: std::collections::HashSet<u64> = all.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            all.len() - 1,
            "the second and fifth are one set"
        );
        let k = keys();
        let name = |s| k.call(7, k.text(s), 0);
        assert_ne!(name("m"), name("n"));
        assert_ne!(k.call(7, k.text("m"), 0), k.call(8, k.text("m"), 0));
    }

    #[test]
    fn a_string_hashes_alike_from_its_text_and_from_its_words() {
        for s in ["", "a", "abcdefgh", "abcdefghi", "é✓ and more text"] {
            let stored: Vec<u64> = s.as_bytes().chunks(8).map(pack).collect();
            assert_eq!(words(s.len(), stored.into_iter()), keys().text(s), "{s:?}");
        }
    }
}
