//! The rules of the Prometheus text format, and how any input is made to follow them.
//!
//! These are pure functions: the recorder layer ([`crate::layer`]) calls them to decide
//! whether a key can go to the exporter as it is, or must be rewritten first.
//!
//! * Metric names are sanitized exactly as `metrics-exporter-prometheus` does (every character
//!   outside `[a-zA-Z0-9_:]`, or a leading digit, becomes `_`), so the family name computed here
//!   is the name the exporter will print.
//! * Label keys are sanitized the same way (without `:`); reserved keys (`__` prefix), `le`
//!   on histograms and the empty key get the `exported_` prefix, as Prometheus does for
//!   clashing labels.
//! * Keys that collide after that are resolved deterministically: keys that needed no change
//!   keep their name, the others take the first free name among `key`, `key_1`, `key_2`, ...
//! * An empty label value means "no label" in Prometheus, so the label is removed.
//! * Backslashes in label values are doubled before they reach the exporter, whose escaping
//!   treats `\\` as an already-escaped backslash; this keeps every value printed exactly.

use std::borrow::Cow;

use metrics::Label;

/// The three kinds of metric the `metrics` facade knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The label OpenTelemetry SDKs put on the series that collects label sets past the limit.
pub(crate) const OVERFLOW_LABEL: &str = "otel_metric_overflow";

/// Metric names with this prefix belong to porter-metrics' own self-metrics.
pub(crate) const SELF_PREFIX: &str = "porter_metrics_";

/// Prefix Prometheus uses for a label that would clash with a reserved one.
const EXPORTED_PREFIX: &str = "exported_";

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_label_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn sanitize(raw: &str, start: fn(char) -> bool, rest: fn(char) -> bool) -> Cow<'_, str> {
    let valid = raw
        .chars()
        .enumerate()
        .all(|(i, c)| if i == 0 { start(c) } else { rest(c) });
    if valid {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(
        raw.chars()
            .enumerate()
            .map(|(i, c)| {
                let ok = if i == 0 { start(c) } else { rest(c) };
                if ok {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    )
}

/// The family name the exporter prints for a raw metric name (empty when unusable).
pub(crate) fn family_name(raw: &str) -> Cow<'_, str> {
    sanitize(raw, is_name_start, is_name_char)
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

fn key_is_clean(key: &str, kind: Kind) -> bool {
    let mut chars = key.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    is_label_start(first)
        && chars.all(is_label_char)
        && !key.starts_with("__")
        && !(kind == Kind::Histogram && key == "le")
}

/// Whether labels can reach the exporter untouched: valid, unreserved, distinct keys and
/// non-empty values free of backslashes. Cheap: no allocation, quadratic only in the (small)
/// number of labels.
pub(crate) fn labels_are_clean<'a>(
    labels: impl Iterator<Item = &'a Label> + Clone,
    kind: Kind,
) -> bool {
    for (i, label) in labels.clone().enumerate() {
        let value = label.value();
        if value.is_empty() || value.contains('\\') || !key_is_clean(label.key(), kind) {
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

/// What [`rewrite_labels`] had to do, for the one-time warning.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rewrites {
    /// Keys renamed (sanitized, reserved, empty, or colliding with another key).
    pub renamed_keys: u32,
}

/// Makes any labels valid for a metric of `kind`, deterministically and independently of
/// their order (see the module documentation for the rules).
pub(crate) fn rewrite_labels<'a>(
    labels: impl Iterator<Item = (&'a str, &'a str)>,
    kind: Kind,
) -> (Vec<Label>, Rewrites) {
    let mut rewrites = Rewrites::default();
    // (needs change, raw key, value, target key)
    let mut pending: Vec<(bool, &str, &str, String)> = Vec::new();
    for (key, value) in labels {
        if value.is_empty() {
            continue;
        }
        let sanitized = sanitize(key, is_label_start, is_label_char);
        // An empty key keeps its value, as `exported_`: nothing is lost.
        let reserved = sanitized.is_empty()
            || sanitized.starts_with("__")
            || (kind == Kind::Histogram && sanitized == "le");
        let target = if reserved {
            format!("{EXPORTED_PREFIX}{sanitized}")
        } else {
            sanitized.into_owned()
        };
        pending.push((target != key, key, value, target));
    }
    // Unchanged keys first, so a valid key keeps its name against a sanitized look-alike.
    pending.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));

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
            rewrites.renamed_keys += 1;
        }
        out.push(Label::new(name, escape_value(value).into_owned()));
    }
    out.sort_by(|a, b| a.key().cmp(b.key()));
    (out, rewrites)
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
        assert_eq!(family_name("é"), "_");
        assert_eq!(family_name(""), "");
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
        let (la, ra) = rewrite_labels(a.iter().copied(), Kind::Histogram);
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
        assert_eq!(ra.renamed_keys, 3);
    }

    #[test]
    fn empty_keys_are_exported_and_backslashes_doubled() {
        let (labels, r) = rewrite_labels([("", "v"), ("p", "a\\b")].into_iter(), Kind::Gauge);
        assert_eq!(
            pairs(&labels),
            [
                ("exported_".to_owned(), "v".to_owned()),
                ("p".to_owned(), "a\\\\b".to_owned())
            ]
        );
        assert_eq!(r.renamed_keys, 1);
    }
}
