//! The admission rules: how any name and labels are made valid for the Prometheus text
//! format. Pure functions, each rule written once; the layer applies them, the builder and
//! the testing parser check with them.
//!
//! * Metric names and label keys are sanitized by the exporter's own
//!   `formatting::sanitize_metric_name` and `sanitize_label_key` (every invalid character
//!   becomes `_`), so the family name computed here is the name the exporter prints.
//! * Reserved label keys (`__` prefix), `le` on histograms and the empty key get the
//!   `exported_` prefix, as Prometheus does for clashing labels.
//! * Keys that collide after that are resolved deterministically: keys that needed no change
//!   keep their name, the others take the first free name among `key`, `key_1`, `key_2`, ...
//! * An empty label value means "no label" in Prometheus, so the label is removed.
//! * Backslashes in label values are doubled before they reach the exporter, whose escaping
//!   treats `\\` as an already-escaped backslash; this keeps every value printed exactly.

use std::borrow::Cow;

use metrics::Label;
use metrics_exporter_prometheus::formatting::{sanitize_label_key, sanitize_metric_name};

use crate::handle::Kind;

/// The label OpenTelemetry SDKs put on the series that collects label sets past the limit.
pub(crate) const OVERFLOW_LABEL: &str = "otel_metric_overflow";

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

/// Every name a family of `kind` occupies in the exposition: its own name and, for a
/// histogram, its export name and the `_bucket`, `_sum` and `_count` series. Two families
/// may not share any.
pub(crate) fn claimed_names(family: &str, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Counter | Kind::Gauge => vec![family.to_owned()],
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

/// Whether labels can reach the exporter untouched: valid, unreserved, distinct keys and
/// non-empty values free of backslashes.
pub(crate) fn labels_are_clean<'a>(
    labels: impl Iterator<Item = &'a Label> + Clone,
    kind: Kind,
) -> bool {
    for (i, label) in labels.clone().enumerate() {
        let value = label.value();
        if value.is_empty() || value.contains('\\') || !is_label_key(label.key(), kind) {
            return false;
        }
        if labels
            .clone()
            .take(i)
            .any(|earlier| earlier.key() == label.key())
        {
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
) -> (Vec<Label>, usize) {
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

    let mut renamed = 0;
    let mut out: Vec<Label> = Vec::with_capacity(pending.len());
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
            if !out.iter().any(|l| l.key() == candidate) {
                break candidate;
            }
            n += 1;
        };
        if changed || n > 0 {
            renamed += 1;
        }
        out.push(Label::new(name, escape_value(value).into_owned()));
    }
    out.sort_by(|a, b| a.key().cmp(b.key()));
    (out, renamed)
}

/// Doubles backslashes, which the exporter's escaping would otherwise treat as escapes.
pub(crate) fn escape_value(value: &str) -> Cow<'_, str> {
    if value.contains('\\') {
        Cow::Owned(value.replace('\\', "\\\\"))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(labels: &[Label]) -> Vec<(String, String)> {
        labels
            .iter()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
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
        assert_eq!(claimed_names("c", Kind::Counter), ["c"]);
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
        let ok = [Label::new("method", "GET"), Label::new("code", "200")];
        assert!(labels_are_clean(ok.iter(), Kind::Histogram));
        let le = [Label::new("le", "1")];
        assert!(labels_are_clean(le.iter(), Kind::Counter));
        assert!(!labels_are_clean(le.iter(), Kind::Histogram));
        for bad in [
            [Label::new("a-b", "1")],
            [Label::new("__name__", "1")],
            [Label::new("a", "")],
            [Label::new("a", "x\\y")],
            [Label::new("", "v")],
        ] {
            assert!(!labels_are_clean(bad.iter(), Kind::Counter), "{bad:?}");
        }
        let dup = [Label::new("a", "1"), Label::new("a", "2")];
        assert!(!labels_are_clean(dup.iter(), Kind::Counter));
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
    fn empty_keys_are_exported_and_backslashes_doubled() {
        let (labels, renamed) = rewrite_labels([("", "v"), ("p", "a\\b")].into_iter(), Kind::Gauge);
        assert_eq!(
            pairs(&labels),
            [
                ("exported_".to_owned(), "v".to_owned()),
                ("p".to_owned(), "a\\\\b".to_owned())
            ]
        );
        assert_eq!(renamed, 1);
    }
}
