//! The one hash of names and label sets: keyed with a secret random per process (so no one
//! can aim two label sets at one value), and blind to the order of the pairs.
//!
//! A label set hashes to the wrapping sum of its pairs' hashes, so a call's pairs hash as
//! their canonical (sorted) set does without being sorted: a clean call's hash is its
//! series' hash, and the thread caches, the family's index and growth all use it, computed
//! once per call. A string hashes by the eight-byte words the arena stores it in, so a hash
//! is computed again from an interned copy without its text.

use super::arena::pack;

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

/// The hash of a string of `len` bytes stored as `words` (little-endian, zero-padded).
#[inline]
pub(crate) fn words(len: usize, words: impl Iterator<Item = u64>) -> u64 {
    let [k0, k1, ..] = secret();
    let len = len as u64;
    let mut h = k1 ^ len;
    for word in words {
        h = fold(h ^ word, k0);
    }
    fold(h, k1 ^ len << 1)
}

/// The hash of a string.
#[inline]
pub(crate) fn text(s: &str) -> u64 {
    words(s.len(), s.as_bytes().chunks(8).map(pack))
}

/// A label pair's hash, from its key's and value's.
#[inline]
pub(crate) fn pair(key: u64, value: u64) -> u64 {
    let [.., k2, k3] = secret();
    fold(key ^ k2, value ^ k3)
}

/// The hash of a label set: the sum of its pairs', in any order.
#[inline]
pub(crate) fn labels<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    pairs.fold(0u64, |sum, (k, v)| sum.wrapping_add(pair(text(k), text(v))))
}

/// A call's hash: `seed` (a recorder's, with the kind), the name, and its labels' hash.
#[inline]
pub(crate) fn call(seed: u64, name: u64, labels: u64) -> u64 {
    let [k0, k1, ..] = secret();
    fold(name ^ seed.wrapping_mul(k1), labels ^ k0)
}

/// A `metrics` key's own hash made a call's: keyed by `seed`. (The key's hash is not
/// secret, so a hit on it is checked against the key itself.)
#[inline]
pub(crate) fn of_key(seed: u64, key_hash: u64) -> u64 {
    let [k0, k1, ..] = secret();
    fold(key_hash ^ k0, seed ^ k1)
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
        let name = |s| call(7, text(s), 0);
        assert_ne!(name("m"), name("n"));
        assert_ne!(call(7, text("m"), 0), call(8, text("m"), 0));
    }

    #[test]
    fn a_string_hashes_alike_from_its_text_and_from_its_words() {
        for s in ["", "a", "abcdefgh", "abcdefghi", "é✓ and more text"] {
            let stored: Vec<u64> = s.as_bytes().chunks(8).map(pack).collect();
            assert_eq!(words(s.len(), stored.into_iter()), text(s), "{s:?}");
        }
    }
}
