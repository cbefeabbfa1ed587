//! OpenMetrics 1.0 text, as the OpenMetrics specification writes it.
//!
//! What differs from the Prometheus text format:
//!
//! * A counter family is named without `_total`, its samples with it: a counter `jobs`
//!   (or `jobs_total`) is the family `jobs` with the sample `jobs_total` (the store keeps
//!   any other family from taking those names).
//! * With `Builder::created_timestamps`, counters and histograms have a `_created` sample:
//!   when the series started, in seconds.
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

use super::text::{
    escape_into, join_labels, write_f64, write_family_name, write_sample, write_series, write_u64,
    Name,
};
use super::{Encoder, Exemplar, FamilyHead, HistogramPoint, LeLabels, Sample};
#[cfg(test)]
use crate::store::kind::Kind;

/// The OpenMetrics content type.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Writes OpenMetrics 1.0 text into a `String`.
pub(crate) struct OpenMetrics<'a> {
    out: &'a mut String,
    /// Whether counters and histograms get `_created` samples.
    created: bool,
    /// The current histogram family's `le` values, rendered once per family.
    les: LeLabels,
    /// The current series' labels, rendered once for all its lines.
    joined: String,
    /// Whether the current family's name is a legacy name.
    legacy: bool,
}

impl<'a> OpenMetrics<'a> {
    pub(crate) fn new(out: &'a mut String, created: bool) -> Self {
        Self {
            out,
            created,
            les: LeLabels::default(),
            joined: String::new(),
            legacy: true,
        }
    }

    /// The `_created` sample of a series, if asked for.
    fn created(&mut self, sample: &Sample<'_>) {
        if let (true, Some(ms)) = (self.created, sample.start_ms) {
            write_series(
                self.out,
                Name(sample.name, self.legacy),
                "_created",
                &self.joined,
                None,
            );
            write_f64(self.out, ms as f64 / 1000.0);
            self.out.push('\n');
        }
    }
}

/// Appends ` # {labels} value timestamp` for an exemplar, if there is one.
fn write_exemplar(out: &mut String, exemplar: Option<&Exemplar<'_>>) {
    if let Some(exemplar) = exemplar {
        out.push_str(" # {");
        for (i, (key, value)) in exemplar.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            escape_into(out, value, true);
            out.push('"');
        }
        out.push_str("} ");
        write_f64(out, exemplar.value);
        if exemplar.timestamp.is_finite() {
            out.push(' ');
            write_f64(out, exemplar.timestamp);
        }
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
    fn family(&mut self, head: &FamilyHead<'_>) {
        self.legacy = Name::of(head.name).1;
        self.out.push_str("# TYPE ");
        write_family_name(self.out, head.name, "");
        self.out.push(' ');
        self.out.push_str(head.kind.as_str());
        self.out.push('\n');
        if let Some(help) = head.help {
            self.out.push_str("# HELP ");
            write_family_name(self.out, head.name, "");
            self.out.push(' ');
            escape_into(self.out, help, true);
            self.out.push('\n');
        }
        // OpenMetrics: a family's name ends with its unit, or it has none.
        let unit = head
            .unit
            .filter(|u| *u != metrics::Unit::Count)
            .map(|u| u.as_str());
        if let Some(unit) = unit.filter(|u| {
            head.name.len() > u.len() && head.name.ends_with(u) && {
                let cut = head.name.len() - u.len();
                head.name[..cut].ends_with('_')
            }
        }) {
            self.out.push_str("# UNIT ");
            write_family_name(self.out, head.name, "");
            self.out.push(' ');
            self.out.push_str(unit);
            self.out.push('\n');
        }
    }

    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar: Option<&Exemplar<'_>>) {
        join_labels(&mut self.joined, sample.labels);
        write_series(
            self.out,
            Name(sample.name, self.legacy),
            "_total",
            &self.joined,
            None,
        );
        write_u64(self.out, value);
        write_exemplar(self.out, exemplar);
        self.out.push('\n');
        self.created(sample);
    }

    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        super::text::write_float_counter(self.out, sample, self.legacy, value);
    }

    fn gauge(&mut self, sample: &Sample<'_>, value: f64) {
        write_sample(self.out, Name(sample.name, self.legacy), "", sample.labels);
        write_f64(self.out, value);
        self.out.push('\n');
    }

    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        join_labels(&mut self.joined, sample.labels);
        let (bounds, counts, sum) = (point.bounds, point.counts, point.sum);
        let mut total = 0u64;
        let les = self.les.of(bounds, write_canonical);
        for (i, (count, le)) in counts.iter().zip(les).enumerate() {
            total = total.wrapping_add(*count);
            write_series(
                self.out,
                Name(sample.name, self.legacy),
                "_bucket",
                &self.joined,
                Some(le),
            );
            write_u64(self.out, total);
            write_exemplar(self.out, point.exemplars.get(i).and_then(Option::as_ref));
            self.out.push('\n');
        }
        write_series(
            self.out,
            Name(sample.name, self.legacy),
            "_count",
            &self.joined,
            None,
        );
        write_u64(self.out, total);
        self.out.push('\n');
        // The sum is a counter to OpenMetrics: it MUST NOT be negative or NaN, and a histogram
        // with a negative bucket threshold MUST NOT have one. Such a point is written without
        // its `_sum`, which keeps it valid (the sum is optional) instead of failing the scrape.
        let negative_bounds = bounds.first().is_some_and(|b| *b < 0.0);
        if !(sum.is_nan() || sum < 0.0 || negative_bounds) {
            write_series(
                self.out,
                Name(sample.name, self.legacy),
                "_sum",
                &self.joined,
                None,
            );
            write_f64(self.out, sum);
            self.out.push('\n');
        }
        self.created(sample);
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
    use crate::encode::{Labels, Native};
    use crate::store::Pairs;

    fn sample<'a>(name: &'a str, own: &'a [(&'a str, &'a str)]) -> Sample<'a> {
        Sample {
            name,
            labels: Labels::fixed(own, &[]),
            start_ms: Some(1_700_000_000_500),
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
        let mut om = OpenMetrics::new(&mut out, false);
        om.family(&FamilyHead {
            name: "jobs",
            kind: Kind::Counter,
            help: Some("Jobs \"done\"\\\nnext"),
            unit: None,
        });
        om.counter(&sample("jobs", &[("queue", "a")]), 3, None);
        let labels = Pairs::from_flat(&["trace_id", "abc"]);
        let exemplar = Exemplar {
            labels: &labels,
            value: 1.0,
            timestamp: 1_700_000_000.125,
        };
        om.counter(&sample("jobs", &[("queue", "b")]), 7, Some(&exemplar));
        om.family(&FamilyHead {
            name: "temperature",
            kind: Kind::Gauge,
            help: None,
            unit: None,
        });
        om.gauge(&sample("temperature", &[]), -1.5);
        om.finish();
        assert_eq!(
            out,
            "# TYPE jobs counter\n\
             # HELP jobs Jobs \\\"done\\\"\\\\\\nnext\n\
             jobs_total{queue=\"a\"} 3\n\
             jobs_total{queue=\"b\"} 7 # {trace_id=\"abc\"} 1 1700000000.125\n\
             # TYPE temperature gauge\n\
             temperature -1.5\n\
             # EOF\n"
        );
    }

    #[test]
    fn created_samples_follow_counters_and_histograms_when_asked() {
        let mut out = String::new();
        let mut om = OpenMetrics::new(&mut out, true);
        om.counter(&sample("jobs", &[]), 3, None);
        om.gauge(&sample("temperature", &[]), 1.0);
        assert_eq!(
            out,
            "jobs_total 3\njobs_created 1700000000.5\ntemperature 1\n"
        );
    }

    #[test]
    fn histograms_have_canonical_buckets_exemplars_and_a_valid_sum() {
        let labels = Pairs::from_flat(&["trace_id", "t\"1"]);
        let exemplar = Exemplar {
            labels: &labels,
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
        let mut om = OpenMetrics::new(&mut out, false);
        om.family(&FamilyHead {
            name: "latency_seconds",
            kind: Kind::Histogram,
            help: Some("Latency."),
            unit: None,
        });
        om.histogram(&sample("latency_seconds", &[("path", "/")]), &point);
        // A negative sum (negative observations) is left out, and so is a NaN one.
        let negative = HistogramPoint {
            sum: -2.0,
            exemplars: &[],
            native: None,
            ..point
        };
        om.histogram(&sample("latency_seconds", &[("path", "/x")]), &negative);
        let nan = HistogramPoint {
            sum: f64::NAN,
            ..negative
        };
        om.histogram(&sample("latency_seconds", &[("path", "/y")]), &nan);
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
        OpenMetrics::new(&mut out, false).histogram(&sample("h", &[]), &point);
        assert!(!out.contains("h_sum"), "{out}");
        assert!(out.contains("h_bucket{le=\"-1.0\"} 0\n"), "{out}");
    }

    #[test]
    fn global_labels_follow_the_series_own_unless_it_has_them() {
        let global = [
            ("env".to_owned(), "prod".to_owned()),
            ("queue".to_owned(), "x".to_owned()),
        ];
        let mut out = String::new();
        let own = [("queue", "a")];
        let sample = Sample {
            name: "jobs",
            labels: Labels::fixed(&own, &global),
            start_ms: None,
        };
        OpenMetrics::new(&mut out, false).counter(&sample, 1, None);
        assert_eq!(out, "jobs_total{queue=\"a\",env=\"prod\"} 1\n");
    }
}
