//! Canonical label sets: any label pairs, in any order, to the one text that names their
//! series, rendered as the text format prints it (`a="1",b="2"`, keys sorted, values
//! escaped). The same pairs in another order give the same text, so the text is the key
//! of a family's map and what the encoder copies out.

use std::borrow::Cow;

use super::kind::Kind;
use super::rules;

/// Appends `value` escaped for a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub(crate) fn escape_into(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(at) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Renders one `key="value"` pair.
pub(crate) fn pair(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}

/// The canonical label set of `pairs` on a metric of `kind`, and how many keys had to be
/// renamed (see [`rules::rewrite_labels`]). Empty values are dropped.
pub(crate) fn canonical<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    kind: Kind,
) -> (String, usize) {
    let size: usize = pairs.clone().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = String::with_capacity(size);
    if rules::pairs_are_clean(pairs.clone(), kind) {
        // Sorted on the stack when there are few (the usual case), else in a vector.
        let mut few = [("", ""); 8];
        let mut many = Vec::new();
        let sorted: &mut [(&str, &str)] = match pairs.clone().count() {
            n if n <= few.len() => {
                for (slot, p) in few.iter_mut().zip(pairs) {
                    *slot = p;
                }
                &mut few[..n]
            }
            _ => {
                many.extend(pairs);
                &mut many
            }
        };
        sorted.sort_unstable_by_key(|(key, _)| *key);
        for (i, (key, value)) in sorted.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            pair(&mut out, key, value);
        }
        return (out, 0);
    }
    let (labels, renamed) = rules::rewrite_labels(pairs, kind);
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        pair(&mut out, key, value);
    }
    (out, renamed)
}

/// Whether a rendered label set has a label `key`. Values are escaped, so `key="` after a
/// comma cannot appear inside one. Allocates nothing.
pub(crate) fn has_key(labels: &str, key: &str) -> bool {
    labels.match_indices(key).any(|(at, _)| {
        (at == 0 || labels.as_bytes()[at - 1] == b',')
            && labels[at + key.len()..].starts_with("=\"")
    })
}

/// The `(key, value)` pairs of a rendered label set, values unescaped. The text is one this
/// module rendered, so it is well formed; anything else ends the iteration.
pub(crate) fn parse(rendered: &str) -> impl Iterator<Item = (&str, Cow<'_, str>)> + '_ {
    let mut rest = rendered;
    std::iter::from_fn(move || {
        let (key, after) = rest.split_once("=\"")?;
        // The closing quote: the first one not escaped (an escape takes the next byte).
        let mut at = 0;
        loop {
            let found = at + after.get(at..)?.find(['"', '\\'])?;
            if after.as_bytes()[found] == b'"' {
                at = found;
                break;
            }
            at = found + 2;
        }
        let raw = after.get(..at)?;
        rest = after.get(at + 1..)?.strip_prefix(',').unwrap_or_default();
        let value = if raw.contains('\\') {
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match (c, c == '\\') {
                    (_, true) => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some(other) => out.push(other),
                        None => {}
                    },
                    (c, false) => out.push(c),
                }
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(raw)
        };
        Some((key, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_exactly() {
        let mut out = String::new();
        escape_into(&mut out, "a\\b\"c\nd\\");
        assert_eq!(out, r#"a\\b\"c\nd\\"#);
        let mut plain = String::new();
        escape_into(&mut plain, "GET");
        assert_eq!(plain, "GET");
    }

    #[test]
    fn the_same_pairs_in_any_order_are_one_label_set() {
        let a = canonical([("b", "2"), ("a", "1")].into_iter(), Kind::Counter);
        let b = canonical([("a", "1"), ("b", "2")].into_iter(), Kind::Counter);
        assert_eq!(a, b);
        assert_eq!(a.0, r#"a="1",b="2""#);
        let (dirty, renamed) = canonical(
            [("a-b", "1"), ("a_b", "2"), ("e", "")].into_iter(),
            Kind::Counter,
        );
        assert_eq!((dirty.as_str(), renamed), (r#"a_b="2",a_b_1="1""#, 1));
        assert!(has_key(&dirty, "a_b_1") && has_key(&dirty, "a_b") && !has_key(&dirty, "b"));
    }

    #[test]
    fn rendered_sets_parse_back() {
        let pairs = [("a", "x\\y\"z\nw"), ("b", ""), ("c", "a,b=\"c\"")];
        let mut rendered = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                rendered.push(',');
            }
            pair(&mut rendered, k, v);
        }
        let back: Vec<(&str, String)> =
            parse(&rendered).map(|(k, v)| (k, v.into_owned())).collect();
        let want: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        assert_eq!(back, want);
        assert_eq!(parse("").count(), 0);
    }
}
