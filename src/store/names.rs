//! Metric names: which family a recorded name belongs to, and which names a family occupies.
//!
//! The store keeps names as recorded (`http.server.request.duration` stays dotted); the
//! encoder escapes them for a scraper that asks for legacy names. What holds in every
//! format is decided here:
//!
//! * A counter is one family whether it was recorded with or without `_total`, and its
//!   series are written with it (`jobs` and `jobs_total` both give `jobs_total`).
//! * A histogram whose name ends like one of its own series (`request_count`, `discount`)
//!   is written as `NAME_histogram`, so that no series is a bare `NAME`.
//! * A family occupies its series' names (a histogram's `_bucket`, `_sum`, `_count` and
//!   `_created`; a counter's `_total` and `_created`); two families never share one.

use super::kind::Kind;

/// Metric names with this prefix (once escaped) belong to porter-metrics' own self-metrics.
pub(crate) const SELF_PREFIX: &str = "porter_metrics_";

/// Whether `name` is a legacy metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`, which every
/// scraper reads unquoted.
pub(crate) fn is_legacy_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `key` is a legacy label name, `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_legacy_label(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The family a recorded name belongs to: a counter's without its `_total`.
pub(crate) fn family_key(raw: &str, kind: Kind) -> &str {
    match (kind, raw.strip_suffix("_total")) {
        (Kind::Counter, Some(base)) if !base.is_empty() => base,
        _ => raw,
    }
}

/// The base name a family's series are written with (before any suffix): a histogram
/// named like one of its own series gets `_histogram`.
pub(crate) fn series_base(key: &str, kind: Kind) -> String {
    let clashes = ["bucket", "sum", "count"].iter().any(|s| key.ends_with(s));
    if kind == Kind::Histogram && clashes {
        format!("{key}_histogram")
    } else {
        key.to_owned()
    }
}

/// The suffixes of a family's series names.
pub(crate) fn suffixes(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Counter => &["_total", "_created"],
        Kind::Gauge => &[""],
        Kind::Histogram => &["_bucket", "_sum", "_count", "_created"],
    }
}

/// Every name a family of `kind` keyed `key` occupies, in every format: its key, its base
/// and its series' names.
pub(crate) fn claims(key: &str, kind: Kind) -> Vec<String> {
    let base = series_base(key, kind);
    let mut names = vec![key.to_owned()];
    if base != key {
        names.push(base.clone());
    }
    names.extend(suffixes(kind).iter().map(|s| format!("{base}{s}")));
    names.dedup();
    names
}

/// Whether a recorded name is reserved for the self-metrics (in any escaping).
pub(crate) fn is_reserved(key: &str) -> bool {
    key.len() >= SELF_PREFIX.len()
        && key
            .bytes()
            .zip(SELF_PREFIX.bytes())
            .all(|(a, b)| a == b || (b == b'_' && !(a.is_ascii_alphanumeric() || a == b':')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_and_labels() {
        assert!(is_legacy_name("a:b_1") && is_legacy_name("_x") && !is_legacy_name("1a"));
        assert!(!is_legacy_name("") && !is_legacy_name("a.b") && !is_legacy_name("é"));
        assert!(is_legacy_label("le") && !is_legacy_label("a:b") && !is_legacy_label("9"));
    }

    #[test]
    fn counters_are_one_family_with_or_without_total() {
        assert_eq!(family_key("jobs_total", Kind::Counter), "jobs");
        assert_eq!(family_key("jobs", Kind::Counter), "jobs");
        assert_eq!(family_key("_total", Kind::Counter), "_total");
        assert_eq!(family_key("jobs_total", Kind::Gauge), "jobs_total");
        assert_eq!(
            claims("jobs", Kind::Counter),
            ["jobs", "jobs_total", "jobs_created"]
        );
        assert_eq!(claims("g", Kind::Gauge), ["g"]);
    }

    #[test]
    fn histograms_claim_their_series_names() {
        assert_eq!(
            claims("lat", Kind::Histogram),
            ["lat", "lat_bucket", "lat_sum", "lat_count", "lat_created"]
        );
        assert_eq!(
            series_base("req_count", Kind::Histogram),
            "req_count_histogram"
        );
        assert_eq!(
            claims("req_count", Kind::Histogram)[1],
            "req_count_histogram"
        );
        assert_eq!(series_base("req_count", Kind::Gauge), "req_count");
    }

    #[test]
    fn the_self_prefix_is_reserved_in_any_spelling() {
        assert!(is_reserved("porter_metrics_x") && is_reserved("porter.metrics.x"));
        assert!(!is_reserved("porter_metricsx") && !is_reserved("porter") && !is_reserved("app_x"));
    }
}
