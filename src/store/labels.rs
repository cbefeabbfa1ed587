//! Canonical label sets: any label pairs, in any order, to the one list that names their
//! series. The rules here hold in every format; escaping a key for an old scraper is the
//! encoder's business, when it writes.
//!
//! * A pair with an empty value is removed (Prometheus treats it as absent).
//! * Keys no format accepts are renamed as Prometheus renames a clashing label: the empty
//!   key and `__`-prefixed ones get the `exported_` prefix, and so does `le` on a histogram.
//! * The same pair given twice is one label. Keys that still collide are resolved
//!   deterministically, whatever the order: a key that needed no change keeps its name, the
//!   others take the first free name among `key_1`, `key_2`, ...
//! * Values (and keys) are cut to [`Limits::label_bytes`](super::Limits), and a set keeps
//!   at most [`Limits::labels`](super::Limits) pairs (the first by key); both are counted.
//!
//! The result is sorted by key. A clean call (the usual one) is sorted on the stack: no
//! allocation.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::hash::BuildHasher as _;

use hashbrown::{HashMap, HashTable};

use super::hash;
use super::kind::Kind;

/// Prefix Prometheus gives a label that would clash with a reserved one.
const EXPORTED: &str = "exported_";

/// Pairs sorted on the stack.
const INLINE: usize = 8;

/// A canonical label set; see the module documentation. It lives on the stack for the
/// length of one call: its size is the point.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Canonical<'a> {
    /// Every pair usable as given: only sorted.
    Clean([(&'a str, &'a str); INLINE], usize),
    /// Rewritten by the rules.
    Rewritten(Vec<(Cow<'a, str>, Cow<'a, str>)>),
}

/// What the rules changed, for the self-metrics.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Keys renamed to be valid or distinct.
    pub(crate) renamed: usize,
    /// Keys or values cut to the length limit.
    pub(crate) cut: u64,
    /// Pairs past the count limit, dropped.
    pub(crate) dropped: u64,
}

/// Whether `key` can be used as given on a metric of `kind`.
fn usable(key: &str, kind: Kind) -> bool {
    !(key.is_empty() || key.starts_with("__") || kind == Kind::Histogram && key == "le")
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A pair waiting to be named: (needs another name, key, value).
type Pending<'a> = (bool, Sorted<'a>, Sorted<'a>);

/// A text that sorts by its first 8 bytes as a big-endian number, then by the whole text:
/// the order of the text alone (a tie on the prefix falls through to the text), found
/// mostly without comparing the texts.
#[derive(PartialEq, Eq)]
struct Sorted<'a>(u64, Cow<'a, str>);

impl Ord for Sorted<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0).then_with(|| {
            // Up to 8 bytes, the same prefix means one text starts the other: the shorter
            // is first.
            if self.1.len() <= 8 && other.1.len() <= 8 {
                self.1.len().cmp(&other.1.len())
            } else {
                self.1.cmp(&other.1)
            }
        })
    }
}

impl PartialOrd for Sorted<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<'a> Sorted<'a> {
    fn of(text: Cow<'a, str>) -> Self {
        let mut first = [0u8; 8];
        let n = text.len().min(8);
        first[..n].copy_from_slice(&text.as_bytes()[..n]);
        Sorted(u64::from_be_bytes(first), text)
    }
}

/// `key_n`: the name a colliding `key` takes, here and where an encoder's escaping makes
/// two keys one; prefixed with `exported_` where it would start with the reserved `__`
/// (`_` + `_1`).
pub(crate) fn numbered(key: &str, n: u32) -> String {
    let mut name = String::with_capacity(EXPORTED.len() + key.len() + 11);
    name.push_str(key);
    name.push('_');
    let _ = write!(name, "{n}"); // a String takes every write
    if name.starts_with("__") {
        name.insert_str(0, EXPORTED);
    }
    name
}

impl<'a> Canonical<'a> {
    /// The canonical set of `pairs` on a metric of `kind`, within `max_labels` pairs of at
    /// most `max_bytes` bytes each.
    pub(crate) fn of(
        pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
        kind: Kind,
        max_labels: usize,
        max_bytes: usize,
    ) -> (Self, Changes) {
        let mut few = [("", ""); INLINE];
        let mut n = 0;
        let mut clean = true;
        for (key, value) in pairs.clone() {
            if n == INLINE || value.is_empty() || !usable(key, kind) {
                clean = false;
                break;
            }
            few[n] = (key, value);
            n += 1;
        }
        if clean && n <= max_labels {
            let sorted = &mut few[..n];
            sorted.sort_unstable();
            let distinct = sorted.windows(2).all(|w| w[0].0 != w[1].0);
            let short = sorted
                .iter()
                .all(|(k, v)| k.len() <= max_bytes && v.len() <= max_bytes);
            if distinct && short {
                return (Canonical::Clean(few, n), Changes::default());
            }
        }
        Self::rewrite(pairs, kind, max_labels, max_bytes)
    }

    fn rewrite(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
        kind: Kind,
        max_labels: usize,
        max_bytes: usize,
    ) -> (Self, Changes) {
        let mut changes = Changes::default();
        // (needs another name, key, value), then sorted so that the result does not depend
        // on the order given, and unchanged keys come first. Each text sorts by its first
        // bytes as a number before the whole text (the same order, mostly without a
        // `memcmp`: a hostile call brings thousands of pairs).
        let mut pending: Vec<Pending<'a>> = Vec::with_capacity(pairs.size_hint().0);
        for (key, value) in pairs.filter(|(_, v)| !v.is_empty()) {
            let (key_cut, value_cut) = (cut(key, max_bytes), cut(value, max_bytes));
            changes.cut +=
                u64::from(key_cut.len() < key.len()) + u64::from(value_cut.len() < value.len());
            let key: Cow<'a, str> = if usable(key_cut, kind) {
                Cow::Borrowed(key_cut)
            } else {
                Cow::Owned(format!("{EXPORTED}{key_cut}"))
            };
            pending.push((
                matches!(key, Cow::Owned(_)),
                Sorted::of(key),
                Sorted::of(Cow::Borrowed(value_cut)),
            ));
        }
        pending.sort_unstable();
        pending.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
        if pending.iter().all(|p| !p.0) && pending.windows(2).all(|w| w[0].1 != w[1].1) {
            // No key changed, none repeated: the keys are the names, already in order.
            if pending.len() > max_labels {
                changes.dropped = (pending.len() - max_labels) as u64;
                pending.truncate(max_labels);
            }
            let out = pending.into_iter().map(|(_, k, v)| (k.1, v.1)).collect();
            return (Canonical::Rewritten(out), changes);
        }
        let pending: Vec<(bool, Cow<'a, str>, Cow<'a, str>)> = pending
            .into_iter()
            .map(|(changed, key, value)| (changed, key.1, value.1))
            .collect();
        // Linear: each name is checked against the names taken (tables of indices into
        // `out` and `pending`, so no name is copied), and a key's next suffix to try is
        // remembered (a thousand pairs of one key make a thousand names).
        let build = hashbrown::DefaultHashBuilder::default();
        let hash_of = |name: &str| build.hash_one(name);
        let mut given: HashTable<usize> = HashTable::with_capacity(pending.len());
        for (at, (_, key, _)) in pending.iter().enumerate() {
            let h = hash_of(key);
            if given.find(h, |&i| pending[i].1 == *key).is_none() {
                given.insert_unique(h, at, |&i| hash_of(&pending[i].1));
            }
        }
        let mut taken: HashTable<usize> = HashTable::with_capacity(pending.len());
        let mut suffix: HashMap<&str, u32> = HashMap::new();
        let mut out: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::with_capacity(pending.len());
        for (changed, key, value) in &pending {
            let mut name = key.clone();
            let mut n = 0u32;
            let h = loop {
                let h = hash_of(&name);
                let clash = taken.find(h, |&i| out[i].0 == name).is_some()
                    || (n > 0 && given.find(h, |&i| pending[i].1 == name).is_some());
                if !clash {
                    break h;
                }
                n = n.max(suffix.get(&**key).copied().unwrap_or(0)) + 1;
                name = Cow::Owned(numbered(key, n));
            };
            if n > 0 {
                suffix.insert(key, n);
            }
            changes.renamed += usize::from(*changed || n > 0);
            taken.insert_unique(h, out.len(), |&i| hash_of(&out[i].0));
            out.push((name, value.clone()));
        }
        // Where nothing was renamed, `pending`'s order is already the result's. (Names are
        // distinct: the name alone orders the pairs.)
        if !out.is_sorted() {
            let mut named: Vec<_> = out.into_iter().map(|(n, v)| (Sorted::of(n), v)).collect();
            named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            out = named.into_iter().map(|(n, v)| (n.1, v)).collect();
        }
        if out.len() > max_labels {
            changes.dropped = (out.len() - max_labels) as u64;
            out.truncate(max_labels);
        }
        (Canonical::Rewritten(out), changes)
    }

    /// The pairs, sorted by key.
    pub(crate) fn pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone + '_ {
        let (clean, rewritten) = match self {
            Canonical::Clean(few, n) => (&few[..*n], &[][..]),
            Canonical::Rewritten(all) => (&[][..], all.as_slice()),
        };
        CanonicalPairs {
            clean: clean.iter(),
            rewritten: rewritten.iter(),
        }
    }

    /// Whether it is the call's pairs as given (in some order): then its hash is the
    /// call's labels' hash.
    pub(crate) fn is_clean(&self) -> bool {
        matches!(self, Canonical::Clean(..))
    }

    /// The set's [hash](hash::labels).
    pub(crate) fn hash(&self) -> u64 {
        hash::labels(self.pairs())
    }
}

/// The pairs of a [`Canonical`] set (one of the two slices is empty).
#[derive(Clone)]
struct CanonicalPairs<'s, 'a> {
    clean: std::slice::Iter<'s, (&'a str, &'a str)>,
    rewritten: std::slice::Iter<'s, (Cow<'a, str>, Cow<'a, str>)>,
}

impl<'s> Iterator for CanonicalPairs<'s, '_> {
    type Item = (&'s str, &'s str);
    fn next(&mut self) -> Option<Self::Item> {
        match self.clean.next() {
            Some((k, v)) => Some((k, v)),
            None => self.rewritten.next().map(|(k, v)| (&**k, &**v)),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.clean.len() + self.rewritten.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for CanonicalPairs<'_, '_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)], kind: Kind) -> (Vec<(String, String)>, Changes) {
        let (c, changes) = Canonical::of(pairs.iter().copied(), kind, 64, 4096);
        let out = c
            .pairs()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        (out, changes)
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn clean_pairs_are_only_sorted() {
        let (c, _) = Canonical::of(
            [("b", "2"), ("a", "1")].into_iter(),
            Kind::Counter,
            64,
            4096,
        );
        assert!(c.is_clean());
        let (d, _) = Canonical::of(
            [("a", "1"), ("b", "2")].into_iter(),
            Kind::Counter,
            64,
            4096,
        );
        assert_eq!(c.hash(), d.hash());
        // Keys are kept as recorded: escaping is for the encoder.
        let (out, changes) = set(&[("http.route", "/a"), ("a-b", "1")], Kind::Counter);
        assert_eq!(out, owned(&[("a-b", "1"), ("http.route", "/a")]));
        assert_eq!(changes, Changes::default());
    }

    #[test]
    fn the_rules_apply_whatever_the_order() {
        let a = [
            ("__x", "3"),
            ("le", "4"),
            ("e", ""),
            ("k", "1"),
            ("k", "1"),
            ("k", "2"),
            ("", "v"),
        ];
        let mut b = a;
        b.reverse();
        let (la, changes) = set(&a, Kind::Histogram);
        assert_eq!(la, set(&b, Kind::Histogram).0);
        assert_eq!(
            la,
            owned(&[
                ("exported_", "v"),
                ("exported___x", "3"),
                ("exported_le", "4"),
                ("k", "1"),
                ("k_1", "2"),
            ])
        );
        assert_eq!(changes.renamed, 4);
        // `le` is a key like any other on a counter.
        assert_eq!(set(&[("le", "1")], Kind::Counter).0, owned(&[("le", "1")]));
    }

    #[test]
    fn an_unchanged_key_keeps_its_name_against_a_renamed_one() {
        let (out, _) = set(&[("exported_le", "a"), ("le", "b")], Kind::Histogram);
        assert_eq!(out, owned(&[("exported_le", "a"), ("exported_le_1", "b")]));
    }

    #[test]
    fn many_pairs_of_one_key_are_renamed_in_linear_time() {
        let values: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
        let pairs = values.iter().map(|v| ("k", v.as_str()));
        // Quadratic renaming took minutes here; linear takes milliseconds (the time is
        // measured by benches/hostile.rs).
        let (c, changes) = Canonical::of(pairs, Kind::Counter, 64, 4096);
        assert_eq!(changes.renamed, 19_999);
        assert_eq!(
            c.pairs().map(|p| p.0).take(3).collect::<Vec<_>>(),
            ["k", "k_1", "k_10"]
        );
        assert_eq!(c.pairs().len(), 64);
    }

    #[test]
    fn texts_sort_by_prefix_as_they_sort_by_text() {
        let texts = [
            "",
            "\0",
            "a",
            "a\0",
            "a\0\0",
            "ab",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefgg",
            "abcdefgh1",
            "b",
            "é",
            "k_10",
            "k_1",
            "k_2",
            "k_100",
            "k_1000000000",
        ];
        for a in texts {
            for b in texts {
                let sorted = |t: &'static str| Sorted::of(Cow::Borrowed(t));
                assert_eq!(sorted(a).cmp(&sorted(b)), a.cmp(b), "{a:?} against {b:?}");
            }
        }
    }

    #[test]
    fn lengths_and_counts_are_capped_and_counted() {
        let long = "é".repeat(10); // 20 bytes
        let (c, changes) = Canonical::of([("k", long.as_str())].into_iter(), Kind::Counter, 64, 5);
        assert_eq!(c.pairs().next(), Some(("k", "éé")));
        assert_eq!(changes.cut, 1);
        let many: Vec<(String, String)> =
            (0..10).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        let (c, changes) = Canonical::of(
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            Kind::Gauge,
            3,
            64,
        );
        assert_eq!(
            c.pairs().map(|p| p.0).collect::<Vec<_>>(),
            ["k0", "k1", "k2"]
        );
        assert_eq!(changes.dropped, 7);
    }
}
