//! OpenMetrics 1.0 text, as the OpenMetrics specification writes it.
//!
//! What differs from the Prometheus text format:
//!
//! * A counter family is named without `_total`, its samples with it: a counter `jobs` is
//!   the family `jobs` with the sample `jobs_total`; a counter `requests_total` is the
//!   family `requests` with the sample `requests_total` (the store keeps any other family
//!   from taking those names).
//! * `# TYPE` comes before `# HELP` (the order the specification recommends), and HELP
//!   escapes `"` as well as `\` and newlines.
//! * Counter samples and histogram buckets carry their exemplar, when there is one:
//!   ` # {trace_id="abc"} 0.5 1700000000.123` (labels, value, timestamp in seconds).
//! * `le` values are canonical numbers (`1.0`, `0.005`, `1e+06`), as the specification
//!   requires for them.
//! * The exposition ends with `# EOF`.
//!
//! Native buckets have no OpenMetrics 1.0 text form: a native histogram is written with its
//! classic buckets only (protobuf carries the native ones).

use std::fmt::Write as _;

use super::text::{write_f64, write_series, write_u64};
use super::{Encoder, Exemplar, HistogramPoint, Labels, LeLabels};
use crate::store::kind::Kind;
use crate::store::labels;

/// The OpenMetrics content type.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Writes OpenMetrics 1.0 text into a `String`.
pub(crate) struct OpenMetrics<'a> {
    out: &'a mut String,
    /// The current histogram family's `le` values, rendered once per family.
    les: LeLabels,
}

impl<'a> OpenMetrics<'a> {
    pub(crate) fn new(out: &'a mut String) -> Self {
        Self {
            out,
            les: LeLabels::default(),
        }
    }
}

/// Appends ` # {labels} value timestamp` for an exemplar, if there is one.
fn write_exemplar(out: &mut String, exemplar: Option<&Exemplar<'_>>) {
    if let Some(exemplar) = exemplar {
        out.push_str(" # {");
        out.push_str(exemplar.labels);
        out.push_str("} ");
        write_f64(out, exemplar.value);
        if exemplar.timestamp.is_finite() {
            out.push(' ');
            write_f64(out, exemplar.timestamp);
        }
    }
}

/// The family name of a metric: a counter's without its `_total`.
fn family_name(name: &str, kind: Kind) -> &str {
    match (kind, name.strip_suffix("_total")) {
        (Kind::Counter, Some(family)) if !family.is_empty() => family,
        _ => name,
    }
}

/// Writes `value` as a canonical number (for `le` values): Go's shortest `%g` rendering,
/// with `.0` appended when it has neither a point nor an exponent.
pub(crate) fn write_canonical(out: &mut String, value: f64) {
    if !value.is_finite() {
        return write_f64(out, value);
    }
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        });
        return;
    }
    // The shortest digits that read back exactly, and the decimal exponent.
    let mut scientific = String::new();
    let _ = write!(scientific, "{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..6).contains(&exponent) {
        let start = out.len();
        let _ = write!(out, "{value}");
        if !out[start..].contains('.') {
            out.push_str(".0");
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.unsigned_abs());
    }
}

impl Encoder for OpenMetrics<'_> {
    fn family(&mut self, name: &str, kind: Kind, help: Option<&str>) {
        let family = family_name(name, kind);
        let _ = writeln!(self.out, "# TYPE {family} {}", kind.as_str());
        if let Some(help) = help {
            self.out.push_str("# HELP ");
            self.out.push_str(family);
            self.out.push(' ');
            labels::escape_into(self.out, help);
            self.out.push('\n');
        }
    }

    fn counter(
        &mut self,
        name: &str,
        labels: Labels<'_>,
        value: u64,
        exemplar: Option<Exemplar<'_>>,
    ) {
        let suffix = if name.ends_with("_total") {
            ""
        } else {
            "_total"
        };
        write_series(self.out, name, suffix, labels, None);
        write_u64(self.out, value);
        write_exemplar(self.out, exemplar.as_ref());
        self.out.push('\n');
    }

    fn gauge(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        write_series(self.out, name, "", labels, None);
        write_f64(self.out, value);
        self.out.push('\n');
    }

    fn histogram(&mut self, name: &str, labels: Labels<'_>, point: &HistogramPoint<'_>) {
        let (bounds, counts, sum) = (point.bounds, point.counts, point.sum);
        let mut total = 0u64;
        let les = self.les.of(bounds, write_canonical);
        for (i, (count, le)) in counts.iter().zip(les).enumerate() {
            total = total.wrapping_add(*count);
            write_series(self.out, name, "_bucket", labels, Some(le));
            write_u64(self.out, total);
            let exemplar = point.exemplars.get(i).and_then(Option::as_ref);
            write_exemplar(self.out, exemplar);
            self.out.push('\n');
        }
        write_series(self.out, name, "_count", labels, None);
        write_u64(self.out, total);
        self.out.push('\n');
        // The sum is a counter to OpenMetrics: it MUST NOT be negative or NaN, and a histogram
        // with a negative bucket threshold MUST NOT have one. Such a point is written without
        // its `_sum`, which keeps it valid (the sum is optional) instead of failing the scrape.
        let negative_bounds = bounds.first().is_some_and(|b| *b < 0.0);
        if !(sum.is_nan() || sum < 0.0 || negative_bounds) {
            write_series(self.out, name, "_sum", labels, None);
            write_f64(self.out, sum);
            self.out.push('\n');
        }
    }

    fn finish(&mut self) {
        self.out.push_str("# EOF\n");
    }

    fn wants_exemplars(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Native;

    const NO_GLOBAL: &[(String, String)] = &[];

    fn labels(series: &str) -> Labels<'_> {
        Labels {
            series,
            global: NO_GLOBAL,
        }
    }

    #[test]
    fn le_values_are_canonical_numbers() {
        let canonical = |v: f64| {
            let mut out = String::new();
            write_canonical(&mut out, v);
            out
        };
        // The specification's examples.
        let examples = [
            (0.0, "0.0"),
            (0.001, "0.001"),
            (0.002, "0.002"),
            (0.01, "0.01"),
            (0.1, "0.1"),
            (0.9, "0.9"),
            (0.95, "0.95"),
            (0.99, "0.99"),
            (0.999, "0.999"),
            (1.0, "1.0"),
            (1.7, "1.7"),
            (10.0, "10.0"),
            (1e-10, "1e-10"),
            (1e-9, "1e-09"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1e10, "1e+10"),
            (1.1e23, "1.1e+23"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, text) in examples {
            assert_eq!(canonical(value), text, "{value}");
        }
        for v in [0.005, 0.025, 2.5, 123456.0, 1.234567e300, 5e-324] {
            assert_eq!(canonical(v).parse::<f64>().ok(), Some(v));
        }
    }

    #[test]
    fn counters_are_families_without_total_and_samples_with_it() {
        let mut out = String::new();
        let mut om = OpenMetrics::new(&mut out);
        om.family("jobs", Kind::Counter, Some("Jobs \"done\"\\\nnext"));
        om.counter("jobs", labels("queue=\"a\""), 3, None);
        om.family("requests_total", Kind::Counter, None);
        let exemplar = Exemplar {
            labels: "trace_id=\"abc\"",
            value: 1.0,
            timestamp: 1_700_000_000.125,
        };
        om.counter("requests_total", labels(""), 7, Some(exemplar));
        om.family("temperature", Kind::Gauge, None);
        om.gauge("temperature", labels(""), -1.5);
        om.finish();
        assert_eq!(
            out,
            "# TYPE jobs counter\n\
             # HELP jobs Jobs \\\"done\\\"\\\\\\nnext\n\
             jobs_total{queue=\"a\"} 3\n\
             # TYPE requests counter\n\
             requests_total 7 # {trace_id=\"abc\"} 1 1700000000.125\n\
             # TYPE temperature gauge\n\
             temperature -1.5\n\
             # EOF\n"
        );
    }

    #[test]
    fn histograms_have_canonical_buckets_exemplars_and_a_valid_sum() {
        let exemplar = Exemplar {
            labels: "trace_id=\"t\\\"1\"",
            value: 0.3,
            timestamp: 1_700_000_000.5,
        };
        let exemplars = [None, Some(exemplar), None];
        let point = HistogramPoint {
            bounds: &[0.25, 1.0],
            counts: &[1, 2, 0],
            count: 3,
            sum: 1.0,
            exemplars: &exemplars,
            native: Some(Native {
                schema: 3,
                zero_threshold: 0.0,
                zero_count: 0,
                positive: &[(-8, 1), (0, 2)],
                negative: &[],
            }),
        };
        let mut out = String::new();
        let mut om = OpenMetrics::new(&mut out);
        om.family("latency_seconds", Kind::Histogram, Some("Latency."));
        om.histogram("latency_seconds", labels("path=\"/\""), &point);
        // A negative sum (negative observations) is left out.
        let negative = HistogramPoint {
            sum: -2.0,
            exemplars: &[],
            native: None,
            ..point
        };
        om.histogram("latency_seconds", labels("path=\"/x\""), &negative);
        let nan = HistogramPoint {
            sum: f64::NAN,
            ..negative
        };
        om.histogram("latency_seconds", labels("path=\"/y\""), &nan);
        om.finish();
        assert_eq!(
            out,
            "# TYPE latency_seconds histogram\n\
             # HELP latency_seconds Latency.\n\
             latency_seconds_bucket{path=\"/\",le=\"0.25\"} 1\n\
             latency_seconds_bucket{path=\"/\",le=\"1.0\"} 3 # {trace_id=\"t\\\"1\"} 0.3 1700000000.5\n\
             latency_seconds_bucket{path=\"/\",le=\"+Inf\"} 3\n\
             latency_seconds_count{path=\"/\"} 3\n\
             latency_seconds_sum{path=\"/\"} 1\n\
             latency_seconds_bucket{path=\"/x\",le=\"0.25\"} 1\n\
             latency_seconds_bucket{path=\"/x\",le=\"1.0\"} 3\n\
             latency_seconds_bucket{path=\"/x\",le=\"+Inf\"} 3\n\
             latency_seconds_count{path=\"/x\"} 3\n\
             latency_seconds_bucket{path=\"/y\",le=\"0.25\"} 1\n\
             latency_seconds_bucket{path=\"/y\",le=\"1.0\"} 3\n\
             latency_seconds_bucket{path=\"/y\",le=\"+Inf\"} 3\n\
             latency_seconds_count{path=\"/y\"} 3\n\
             # EOF\n"
        );
    }

    #[test]
    fn negative_thresholds_drop_the_sum() {
        let point = HistogramPoint {
            bounds: &[-1.0, 1.0],
            counts: &[0, 1, 0],
            count: 1,
            sum: 0.5,
            exemplars: &[],
            native: None,
        };
        let mut out = String::new();
        OpenMetrics::new(&mut out).histogram("h", labels(""), &point);
        assert!(!out.contains("h_sum"), "{out}");
        assert!(out.contains("h_bucket{le=\"-1.0\"} 0\n"), "{out}");
    }

    #[test]
    fn global_labels_follow_the_series_own() {
        let global = [("env".to_owned(), "env=\"prod\"".to_owned())];
        let mut out = String::new();
        OpenMetrics::new(&mut out).counter(
            "jobs",
            Labels {
                series: "queue=\"a\"",
                global: &global,
            },
            1,
            None,
        );
        assert_eq!(out, "jobs_total{queue=\"a\",env=\"prod\"} 1\n");
    }
}
