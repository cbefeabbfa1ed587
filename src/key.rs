//! Keys: the design's flat label pairs turned into `metrics` keys (for a foreign recorder),
//! and the compact forms and hashes the thread caches use.
//!
//! * [`from_pairs`]: `"key", "value", ...` to a [`Key`]. Pairs are taken in order; an odd
//!   count leaves a dangling key, which is dropped (the caller counts and warns).
//!   Validating keys and values is the store's job, so the collector and the
//!   macros follow the same rules.
//! * [`PairsKey`]: a name and label strings packed into one buffer, inline when short, so a
//!   cached series costs no allocation; [`pairs_hash`] hashes the name and label values with
//!   a per-process random seed, so crafted values cannot aim at one bucket.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use hashbrown::DefaultHashBuilder;
use metrics::{Key, Label};

use crate::store::kind::Kind;

/// Builds the key for `name` and flat label `pairs`; reports whether a key dangled.
pub(crate) fn from_pairs(name: &str, pairs: &[&str]) -> (Key, bool) {
    let labels: Vec<Label> = pairs
        .chunks_exact(2)
        .map(|pair| Label::new(pair[0].to_owned(), pair[1].to_owned()))
        .collect();
    (
        Key::from_parts(name.to_owned(), labels),
        pairs.len() % 2 == 1,
    )
}

/// The process' random hash state.
fn hasher() -> &'static DefaultHashBuilder {
    static HASHER: OnceLock<DefaultHashBuilder> = OnceLock::new();
    HASHER.get_or_init(DefaultHashBuilder::default)
}

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER)
}

/// Reads `N` bytes at `at` as a little-endian word (0 if out of range, which the callers
/// rule out).
#[inline]
fn word<const N: usize>(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(src) = bytes.get(at..at + N) {
        w[..N].copy_from_slice(src);
    }
    u64::from_le_bytes(w)
}

/// Mixes a string in with as few loads as possible (overlapping reads, as wyhash does).
#[inline]
fn mix_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let len = (n as u64) << 56;
    if n > 8 {
        let mut at = 0;
        while at + 8 < n {
            h = mix(h, word::<8>(bytes, at));
            at += 8;
        }
        mix(h, word::<8>(bytes, n - 8) ^ len)
    } else if n >= 4 {
        mix(
            h,
            (word::<4>(bytes, 0) | word::<4>(bytes, n - 4) << 32) ^ len,
        )
    } else if n > 0 {
        let b = |i: usize| u64::from(bytes[i]);
        mix(h, b(0) | b(n / 2) << 8 | b(n - 1) << 16 | len)
    } else {
        mix(h, 0)
    }
}

/// Finishes a hash so both ends of the word are well mixed.
#[inline]
pub(crate) fn finish(mut h: u64) -> u64 {
    h ^= h >> 29;
    h = h.wrapping_mul(MULTIPLIER);
    h ^ (h >> 32)
}

/// A fast seeded hash of a collector call: the kind, the name and the label values (keys
/// rarely tell series apart; the full comparison on a hit does).
#[inline]
pub(crate) fn pairs_hash(kind: Kind, name: &str, labels: &[&str]) -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    let seed = *SEED.get_or_init(|| hasher().hash_one(0u8));
    let mut h = mix(seed, kind as u64 ^ ((labels.len() as u64) << 8));
    h = mix_bytes(h, name.as_bytes());
    for value in labels.iter().skip(1).step_by(2) {
        h = mix_bytes(h, value.as_bytes());
    }
    finish(h)
}

/// Equality of two byte strings; short ones (the usual label value) by two overlapping word
/// loads instead of a call to `memcmp`.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n > 16 || n != b.len() {
        return a == b;
    }
    if n >= 8 {
        word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8)
    } else if n >= 4 {
        word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4)
    } else {
        // 0 to 3 bytes: the first, middle and last cover them all.
        n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1])
    }
}

/// Bytes kept inline: most keys fit, so caching them allocates nothing.
const INLINE: usize = 126;

/// A name and label strings packed as `[count][lengths...][bytes...]` (u32 little-endian
/// numbers), inline when short.
pub(crate) enum PairsKey {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

/// Packs a length; one over 4 GiB saturates, and then never matches (never cached).
fn packed_len(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

impl PairsKey {
    pub(crate) fn new(name: &str, labels: &[&str]) -> Self {
        let parts = || std::iter::once(name).chain(labels.iter().copied());
        let size = 4 + 4 * (labels.len() + 1) + parts().map(str::len).sum::<usize>();
        let fill = |out: &mut [u8]| {
            let mut at = 0;
            let mut put = |bytes: &[u8]| {
                if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                    dst.copy_from_slice(bytes);
                }
                at += bytes.len();
            };
            put(&packed_len(labels.len() + 1));
            parts().for_each(|p| put(&packed_len(p.len())));
            parts().for_each(|p| put(p.as_bytes()));
        };
        match u8::try_from(size) {
            Ok(len) if size <= INLINE => {
                let mut buf = [0u8; INLINE];
                fill(&mut buf);
                PairsKey::Inline { len, buf }
            }
            _ => {
                let mut heap = vec![0u8; size].into_boxed_slice();
                fill(&mut heap);
                PairsKey::Heap(heap)
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            PairsKey::Inline { len, buf } => &buf[..usize::from(*len)],
            PairsKey::Heap(bytes) => bytes,
        }
    }

    #[inline]
    pub(crate) fn matches(&self, name: &str, labels: &[&str]) -> bool {
        let packed = self.bytes();
        let count = labels.len() + 1;
        if word::<4>(packed, 0) != count as u64 {
            return false;
        }
        let mut len_at = 4;
        let mut offset = 4 + 4 * count;
        let mut same = |part: &str| {
            let len = word::<4>(packed, len_at) as usize;
            len_at += 4;
            let stored = packed.get(offset..offset + len);
            offset += len;
            part.len() == len && stored.is_some_and(|stored| same_bytes(stored, part.as_bytes()))
        };
        same(name) && labels.iter().all(|part| same(part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_labels_and_a_dangling_key_is_reported() {
        let (key, dangling) = from_pairs("m", &["a", "1", "b", "2", "c"]);
        assert!(dangling);
        let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(labels, [("a", "1"), ("b", "2")]);
        let (swapped, dangling) = from_pairs("m", &["b", "2", "a", "1"]);
        assert!(!dangling);
        assert_eq!(key, swapped, "label order does not matter");
    }

    #[test]
    fn packed_keys_match_exactly_inline_and_on_the_heap() {
        let long = "x".repeat(200);
        for (name, labels) in [
            ("m", &["k", "v"][..]),
            ("requests_total", &["method", "GET", "endpoint", "/api"][..]),
            (long.as_str(), &["k", long.as_str()][..]),
            ("", &[][..]),
        ] {
            let key = PairsKey::new(name, labels);
            assert!(key.matches(name, labels));
            assert!(!key.matches(name, &[labels, &["extra"]].concat()));
            assert!(!key.matches(&format!("{name}_"), labels));
            if let Some((last, rest)) = labels.split_last() {
                let changed = format!("{last}!");
                let other: Vec<&str> = rest.iter().copied().chain([changed.as_str()]).collect();
                assert!(!key.matches(name, &other));
            }
        }
        // Parts that run into each other differently are different keys.
        assert!(!PairsKey::new("ab", &["c"]).matches("a", &["bc"]));
        assert!(matches!(
            PairsKey::new("m", &["k", "v"]),
            PairsKey::Inline { .. }
        ));
        assert!(matches!(PairsKey::new(&long, &[]), PairsKey::Heap(_)));
    }

    #[test]
    fn hashes_tell_short_values_apart() {
        let h = |v: &str| pairs_hash(Kind::Counter, "m", &["k", v]);
        let values = [
            "",
            "1",
            "11",
            "111",
            "1111",
            "u1",
            "u11",
            "abcdefgh",
            "abcdefghi",
        ];
        let hashes: std::collections::HashSet<u64> = values.iter().map(|v| h(v)).collect();
        assert_eq!(hashes.len(), values.len());
        assert!(same_bytes(b"abc", b"abc") && !same_bytes(b"abc", b"abd"));
        assert!(same_bytes(b"0123456789", b"0123456789"));
        assert!(!same_bytes(b"0123456789", b"0123456788"));
    }
}
