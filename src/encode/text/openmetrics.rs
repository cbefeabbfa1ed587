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
//!   escapes `"` as well as `\` and newlines. A family described with a unit its name ends
//!   with has a `# UNIT` line.
//! * Counter samples and histogram buckets carry their exemplar, when there is one:
//!   ` # {trace_id="abc"} 0.5 1700000000.123` (labels, value, timestamp in seconds).
//! * `le` values are canonical numbers (`1.0`, `0.005`, `1e+06`), as the specification
//!   requires for them.
//! * The exposition ends with `# EOF`.
//!
//! Native buckets have no OpenMetrics 1.0 text form: a native histogram is written with its
//! classic buckets only (protobuf carries the native ones).

use super::{escape_into, write_f64, write_family_name, write_u64, Lines, Suffix};
pub(crate) use crate::encode::histogram::write_canonical;
use crate::encode::out::Out;
use crate::encode::{Encoder, Exemplar, FamilyHead, HistogramPoint, Sample};

/// The OpenMetrics content type.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Writes OpenMetrics 1.0 text.
pub(crate) struct OpenMetrics<'o, 'a> {
    out: &'o mut Out<'a>,
    /// Whether counters and histograms get `_created` samples.
    created: bool,
    lines: Lines,
}

impl<'o, 'a> OpenMetrics<'o, 'a> {
    pub(crate) fn new(out: &'o mut Out<'a>, created: bool) -> Self {
        Self {
            out,
            created,
            lines: Lines::default(),
        }
    }

    /// The `_created` sample of the current series, if asked for.
    fn created(&mut self, sample: &Sample<'_>) {
        if let (true, Some(ms)) = (self.created, sample.start_ms) {
            let out = &mut self.out.buf;
            self.lines.line(out, Suffix::Created);
            write_f64(out, ms as f64 / 1000.0);
            out.push(b'\n');
        }
    }
}

/// Appends ` # {labels} value timestamp` for an exemplar, if there is one.
fn write_exemplar(out: &mut Vec<u8>, exemplar: Option<&Exemplar<'_>>) {
    if let Some(exemplar) = exemplar {
        out.extend_from_slice(b" # {");
        for (i, (key, value)) in exemplar.pairs().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"=\"");
            escape_into(out, value, true);
            out.push(b'"');
        }
        out.extend_from_slice(b"} ");
        write_f64(out, exemplar.value);
        if let Some(seconds) = exemplar.seconds() {
            out.push(b' ');
            write_f64(out, seconds);
        }
    }
}

/// Whether a family named `name` with `unit` has a `# UNIT` line: its name ends with it.
fn unit_of(name: &str, unit: Option<metrics::Unit>) -> Option<&'static str> {
    let unit = unit.filter(|u| *u != metrics::Unit::Count)?.as_str();
    let cut = name.len().checked_sub(unit.len() + 1)?;
    (name.ends_with(unit) && name.as_bytes().get(cut) == Some(&b'_')).then_some(unit)
}

impl Encoder for OpenMetrics<'_, '_> {
    fn family(&mut self, head: &FamilyHead<'_>) {
        self.lines.family(head.name);
        let out = &mut self.out.buf;
        out.extend_from_slice(b"# TYPE ");
        write_family_name(out, head.name, "");
        out.push(b' ');
        out.extend_from_slice(head.kind.as_str().as_bytes());
        out.push(b'\n');
        if let Some(help) = head.help {
            out.extend_from_slice(b"# HELP ");
            write_family_name(out, head.name, "");
            out.push(b' ');
            escape_into(out, help, true);
            out.push(b'\n');
        }
        if let Some(unit) = unit_of(head.name, head.unit) {
            out.extend_from_slice(b"# UNIT ");
            write_family_name(out, head.name, "");
            out.push(b' ');
            out.extend_from_slice(unit.as_bytes());
            out.push(b'\n');
        }
    }

    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar: Option<&Exemplar<'_>>) {
        let out = &mut self.out.buf;
        match self.created {
            true => {
                self.lines.series(sample.labels);
                self.lines.line(out, Suffix::Total);
            }
            false => self.lines.sample(out, Suffix::Total, sample.labels),
        }
        write_u64(out, value);
        write_exemplar(out, exemplar);
        out.push(b'\n');
        self.created(sample);
        self.out.flush_if_full();
    }

    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        self.lines
            .f64_sample(self.out, Suffix::Total, sample.labels, value);
    }

    fn gauge(&mut self, sample: &Sample<'_>, value: f64) {
        self.lines
            .f64_sample(self.out, Suffix::None, sample.labels, value);
    }

    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        self.lines.series(sample.labels);
        let tails = self.lines.tails(point.bounds, write_canonical);
        let out = &mut self.out.buf;
        let mut total = 0;
        for ((i, _, cumulative), tail) in point.cumulative().zip(&tails) {
            self.lines.bucket(out, tail);
            write_u64(out, cumulative);
            write_exemplar(out, point.exemplars.get(i).and_then(Option::as_ref));
            out.push(b'\n');
            total = cumulative;
        }
        self.lines.keep_tails(tails);
        self.lines.line(out, Suffix::Count);
        write_u64(out, total);
        out.push(b'\n');
        // The sum is a counter to OpenMetrics: it MUST NOT be negative or NaN, and a histogram
        // with a negative bucket threshold MUST NOT have one. Such a point is written without
        // its `_sum`, which keeps it valid (the sum is optional) instead of failing the scrape.
        let sum = point.sum;
        let negative_bounds = point.bounds.first().is_some_and(|b| *b < 0.0);
        if !(sum.is_nan() || sum < 0.0 || negative_bounds) {
            self.lines.line(out, Suffix::Sum);
            write_f64(out, sum);
            out.push(b'\n');
        }
        self.created(sample);
        self.out.flush_if_full();
    }

    fn finish(&mut self) {
        self.out.buf.extend_from_slice(b"# EOF\n");
    }

    fn wants_exemplars(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Labels, Native};
    use crate::store::kind::Kind;
    use crate::store::Pairs;

    /// What `f` writes through an encoder with `created`, its family named `name` of `kind`.
    fn om(created: bool, f: impl FnOnce(&mut OpenMetrics<'_, '_>)) -> String {
        let mut out = Out::whole(0);
        f(&mut OpenMetrics::new(&mut out, created));
        String::from_utf8(out.finish()).expect("utf-8")
    }

    fn head(name: &str, kind: Kind) -> FamilyHead<'_> {
        FamilyHead {
            name,
            kind,
            help: None,
            unit: None,
        }
    }

    fn sample<'a>(name: &'a str, own: &'a [(&'a str, &'a str)]) -> Sample<'a> {
        Sample {
            name,
            labels: Labels::fixed(own, &[]),
            start_ms: Some(1_700_000_000_500),
        }
    }

    #[test]
    fn counters_are_families_without_total_and_samples_with_it() {
        let out = om(false, |om| {
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
        });
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
        let out = om(true, |om| {
            om.family(&head("jobs", Kind::Counter));
            om.counter(&sample("jobs", &[]), 3, None);
            om.family(&head("temperature", Kind::Gauge));
            om.gauge(&sample("temperature", &[]), 1.0);
        });
        assert_eq!(
            out,
            "# TYPE jobs counter\njobs_total 3\njobs_created 1700000000.5\n\
             # TYPE temperature gauge\ntemperature 1\n"
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
        let out = om(false, |om| {
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
        });
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
        let out = om(false, |om| {
            om.family(&head("h", Kind::Histogram));
            om.histogram(&sample("h", &[]), &point);
        });
        assert!(!out.contains("h_sum"), "{out}");
        assert!(out.contains("h_bucket{le=\"-1.0\"} 0\n"), "{out}");
    }

    #[test]
    fn global_labels_follow_the_series_own_unless_it_has_them() {
        let global = [
            ("env".to_owned(), "prod".to_owned()),
            ("queue".to_owned(), "x".to_owned()),
        ];
        let own = [("queue", "a")];
        let sample = Sample {
            name: "jobs",
            labels: Labels::fixed(&own, &global),
            start_ms: None,
        };
        let out = om(false, |om| {
            om.family(&head("jobs", Kind::Counter));
            om.counter(&sample, 1, None);
        });
        assert_eq!(
            out,
            "# TYPE jobs counter\njobs_total{queue=\"a\",env=\"prod\"} 1\n"
        );
    }
}
