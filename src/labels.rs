//! Label-pair translation: the design's flat `"key", "value", ...` slices to `metrics` keys.
//!
//! Pairs are taken in order; an odd count leaves a dangling key, which is dropped (the
//! caller counts and warns). Validation of keys and values is the recorder layer's job
//! ([`crate::layer`]), so the collector and the macros follow the same rules.

use metrics::{Key, Label};

/// Builds the key for `name` and flat label `pairs`; reports whether a key dangled.
pub(crate) fn key_from_pairs(name: &str, pairs: &[&str]) -> (Key, bool) {
    let labels: Vec<Label> = pairs
        .chunks_exact(2)
        .map(|pair| Label::new(pair[0].to_owned(), pair[1].to_owned()))
        .collect();
    (
        Key::from_parts(name.to_owned(), labels),
        pairs.len() % 2 == 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_labels_and_a_dangling_key_is_reported() {
        let (key, dangling) = key_from_pairs("m", &["a", "1", "b", "2", "c"]);
        assert!(dangling);
        let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(labels, [("a", "1"), ("b", "2")]);
        let (swapped, dangling) = key_from_pairs("m", &["b", "2", "a", "1"]);
        assert!(!dangling);
        assert_eq!(key, swapped, "label order does not matter");
    }
}
