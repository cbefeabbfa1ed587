//! The admission rules: how any name and labels are made valid for the Prometheus text
//! format. Pure functions, each rule written once; the layer applies them, the builder and
//! the testing parser check with them.
//!
//! * Metric names and label keys are sanitized by `metrics-exporter-prometheus`' own
//!   `formatting::sanitize_metric_name` and `sanitize_label_key` (every invalid character
//!   becomes `_`): our names are the names the exporter would print.
//! * Reserved label keys (`__` prefix), `le` on histograms and the empty key get the
//!   `exported_` prefix, as Prometheus does for clashing labels.
//! * The same pair given twice is one label. Keys that collide after that are resolved
//!   deterministically: keys that needed no change keep their name, the others take the
//!   first free name among `key`, `key_1`, `key_2`, ... (the exporter would keep only the
//!   last value and lose the others).
//! * An empty label value means "no label" in Prometheus, so the label is removed.

use std::borrow::Cow;

use metrics_exporter_prometheus::formatting::{sanitize_label_key, sanitize_metric_name};

use super::kind::Kind;

/// Metric names with this prefix belong to porter-metrics' own self-metrics.
pub(crate) const SELF_PREFIX: &str = "porter_metrics_";

/// Prefix Prometheus uses for a label that would clash with a reserved one.
const EXPORTED_PREFIX: &str = "exported_";

/// `Cow::Borrowed` when sanitizing changed nothing.
fn keep_if_same(raw: &str, sanitized: String) -> Cow<'_, str> {
    if sanitized == raw {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(sanitized)
    }
}

/// The family name the exporter prints for a raw metric name (empty when unusable).
pub(crate) fn family_name(raw: &str) -> Cow<'_, str> {
    keep_if_same(raw, sanitize_metric_name(raw))
}

/// Whether `name` is a valid metric name as it stands.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) fn is_metric_name(name: &str) -> bool {
    !name.is_empty() && sanitize_metric_name(name) == name
}

/// Whether `key` is a valid label key that needs no renaming on a metric of `kind`:
/// non-empty, sanitized already, not reserved (`__`), not `le` on a histogram.
pub(crate) fn is_label_key(key: &str, kind: Kind) -> bool {
    let reserved = key.starts_with("__") || (kind == Kind::Histogram && key == "le");
    !key.is_empty() && !reserved && sanitize_label_key(key) == key
}

/// The name a histogram family must be exported under, when it cannot keep its own.
///
/// The exporter appends `_bucket`, `_sum` and `_count` only when the name does not already
/// end with `bucket`, `sum` or `count`: a histogram named `request_count` (or `discount`)
/// would print its count as a bare `request_count` sample, which Prometheus rejects. Such
/// histograms are exported as `NAME_histogram`.
pub(crate) fn histogram_export_name(family: &str) -> Option<String> {
    ["bucket", "sum", "count"]
        .iter()
        .any(|suffix| family.ends_with(suffix))
        .then(|| format!("{family}_histogram"))
}

/// Every name a family of `kind` occupies in any format: its own name; for a counter, the
/// name with or without `_total`; for a histogram, its export name and the `_bucket`,
/// `_sum` and `_count` series. Two families may not share any.
pub(crate) fn claimed_names(family: &str, kind: Kind) -> Vec<String> {
    match kind {
        // OpenMetrics prints a counter as family `x` with samples `x_total`, whichever of
        // the two it was named: both names are its.
        Kind::Counter => match family.strip_suffix("_total") {
            Some(base) if !base.is_empty() => vec![family.to_owned(), base.to_owned()],
            _ => vec![family.to_owned(), format!("{family}_total")],
        },
        Kind::Gauge => vec![family.to_owned()],
        Kind::Histogram => {
            let base = histogram_export_name(family).unwrap_or_else(|| family.to_owned());
            let mut names = vec![family.to_owned()];
            if base != family {
                names.push(base.clone());
            }
            names.extend(
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{base}{s}")),
            );
            names
        }
    }
}

/// Whether label pairs can be used as they are: valid, unreserved, distinct keys and
/// non-empty values.
pub(crate) fn pairs_are_clean<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    kind: Kind,
) -> bool {
    for (i, (key, value)) in pairs.clone().enumerate() {
        if value.is_empty() || !is_label_key(key, kind) {
            return false;
        }
        if pairs.clone().take(i).any(|(earlier, _)| earlier == key) {
            return false;
        }
    }
    true
}

/// Makes any labels valid for a metric of `kind`, deterministically and independently of
/// their order (see the module documentation); returns them sorted by key, and how many
/// keys were renamed.
pub(crate) fn rewrite_labels<'a>(
    labels: impl Iterator<Item = (&'a str, &'a str)>,
    kind: Kind,
) -> (Vec<(String, &'a str)>, usize) {
    // (needs change, raw key, value, target key)
    let mut pending: Vec<(bool, &str, &str, String)> = Vec::new();
    for (key, value) in labels {
        if value.is_empty() {
            continue;
        }
        let sanitized = sanitize_label_key(key);
        // An empty key keeps its value, as `exported_`: nothing is lost.
        let reserved = sanitized.is_empty()
            || sanitized.starts_with("__")
            || (kind == Kind::Histogram && sanitized == "le");
        let target = if reserved {
            format!("{EXPORTED_PREFIX}{sanitized}")
        } else {
            sanitized
        };
        pending.push((target != key, key, value, target));
    }
    // Unchanged keys first, so a valid key keeps its name against a sanitized look-alike.
    pending.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    // The same pair given twice is one label.
    pending.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);

    let mut renamed = 0;
    let mut out: Vec<(String, &str)> = Vec::with_capacity(pending.len());
    for (changed, _, value, target) in pending {
        let mut n = 0u32;
        let name = loop {
            let candidate = match n {
                0 => target.clone(),
                _ => format!("{target}_{n}"),
            };
            // `_` + `_1` would start with the reserved `__`.
            let candidate = if candidate.starts_with("__") {
                format!("{EXPORTED_PREFIX}{candidate}")
            } else {
                candidate
            };
            if !out.iter().any(|(key, _)| *key == candidate) {
                break candidate;
            }
            n += 1;
        };
        if changed || n > 0 {
            renamed += 1;
        }
        out.push((name, value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (out, renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(labels: &[(String, &str)]) -> Vec<(String, String)> {
        labels
            .iter()
            .map(|(k, v)| (k.clone(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn family_names_match_the_exporter() {
        assert_eq!(family_name("http.requests"), "http_requests");
        assert_eq!(family_name("9lives"), "_lives");
        assert_eq!(family_name("ok:name_1"), "ok:name_1");
        assert!(matches!(family_name("ok"), Cow::Borrowed(_)));
        assert_eq!(family_name("é"), "_");
        assert_eq!(family_name(""), "");
        assert!(is_metric_name("a:b_1") && !is_metric_name("1a") && !is_metric_name(""));
    }

    #[test]
    fn histograms_claim_their_series_names() {
        assert_eq!(
            claimed_names("lat", Kind::Histogram),
            ["lat", "lat_bucket", "lat_sum", "lat_count"]
        );
        assert_eq!(claimed_names("c", Kind::Counter), ["c", "c_total"]);
        assert_eq!(claimed_names("c_total", Kind::Counter), ["c_total", "c"]);
        assert_eq!(claimed_names("g", Kind::Gauge), ["g"]);
        assert_eq!(
            claimed_names("req_count", Kind::Histogram),
            [
                "req_count",
                "req_count_histogram",
                "req_count_histogram_bucket",
                "req_count_histogram_sum",
                "req_count_histogram_count"
            ]
        );
        assert_eq!(
            histogram_export_name("discount").as_deref(),
            Some("discount_histogram")
        );
        assert_eq!(histogram_export_name("lat"), None);
    }

    #[test]
    fn clean_labels_are_recognised() {
        let ok = [("method", "GET"), ("code", "200")];
        assert!(pairs_are_clean(ok.into_iter(), Kind::Histogram));
        assert!(pairs_are_clean([("le", "1")].into_iter(), Kind::Counter));
        assert!(!pairs_are_clean([("le", "1")].into_iter(), Kind::Histogram));
        for bad in [("a-b", "1"), ("__name__", "1"), ("a", ""), ("", "v")] {
            assert!(
                !pairs_are_clean([bad].into_iter(), Kind::Counter),
                "{bad:?}"
            );
        }
        assert!(pairs_are_clean([("a", "x\\y")].into_iter(), Kind::Counter));
        let dup = [("a", "1"), ("a", "2")];
        assert!(!pairs_are_clean(dup.into_iter(), Kind::Counter));
    }

    #[test]
    fn collisions_resolve_the_same_in_any_order() {
        let a = [
            ("a-b", "1"),
            ("a_b", "2"),
            ("__x", "3"),
            ("le", "4"),
            ("e", ""),
        ];
        let mut b = a;
        b.reverse();
        let (la, renamed) = rewrite_labels(a.iter().copied(), Kind::Histogram);
        let (lb, _) = rewrite_labels(b.iter().copied(), Kind::Histogram);
        assert_eq!(pairs(&la), pairs(&lb));
        assert_eq!(
            pairs(&la),
            [
                ("a_b".to_owned(), "2".to_owned()),
                ("a_b_1".to_owned(), "1".to_owned()),
                ("exported___x".to_owned(), "3".to_owned()),
                ("exported_le".to_owned(), "4".to_owned()),
            ]
        );
        assert_eq!(renamed, 3);
    }

    #[test]
    fn empty_keys_are_exported_and_values_kept() {
        let (labels, renamed) = rewrite_labels([("", "v"), ("p", "a\\b")].into_iter(), Kind::Gauge);
        assert_eq!(
            pairs(&labels),
            [
                ("exported_".to_owned(), "v".to_owned()),
                ("p".to_owned(), "a\\b".to_owned())
            ]
        );
        assert_eq!(renamed, 1);
    }
}
