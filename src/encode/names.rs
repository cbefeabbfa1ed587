//! How a family's samples are named, in every format: the one copy of the `_total` rule.
//!
//! A counter's samples end in `_total` in every format (the store keeps its family without
//! it: `jobs` and `jobs_total` are one counter). The text format and protobuf name the
//! family as its samples (`jobs_total`); OpenMetrics and OTLP name it without (`jobs`).

use crate::store::kind::Kind;

/// The suffix of a counter's samples.
pub(crate) const TOTAL: &str = "_total";

/// The suffix of a one-line sample of `kind`: `_total` for a counter, none otherwise.
pub(crate) fn sample_suffix(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => TOTAL,
        Kind::Gauge | Kind::Histogram => "",
    }
}

/// The name a family is given where a format names it as its samples (`# TYPE` of the text
/// format, protobuf's `MetricFamily.name`, Remote-Write 1.0's metadata): `base` with a
/// counter's `_total`.
pub(crate) fn family_name(base: &str, kind: Kind) -> String {
    let mut name = String::with_capacity(base.len() + TOTAL.len());
    name.push_str(base);
    name.push_str(sample_suffix(kind));
    name
}

/// A family's base name from a name that may carry a counter's `_total` (the self-metrics'
/// constants do).
pub(crate) fn base_of(name: &str, kind: Kind) -> &str {
    match kind {
        Kind::Counter => name.strip_suffix(TOTAL).unwrap_or(name),
        Kind::Gauge | Kind::Histogram => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_the_others_as_they_are() {
        assert_eq!(family_name("jobs", Kind::Counter), "jobs_total");
        assert_eq!(family_name("temp", Kind::Gauge), "temp");
        assert_eq!(base_of("jobs_total", Kind::Counter), "jobs");
        assert_eq!(base_of("x_total", Kind::Gauge), "x_total");
        assert_eq!(sample_suffix(Kind::Histogram), "");
    }
}
