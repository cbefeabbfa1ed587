//! The Prometheus text format, as client_golang writes it.
//!
//! A counter's series end in `_total` here as in every format (its family is `NAME_total`).
//! A name that is not a legacy name (possible only under `escaping=allow-utf-8`) is quoted
//! inside the braces, and so is a label name: `{"http.server.duration_bucket","http.route"="/",le="0.1"} 3`.

use super::{escape_into, push_f64, write_f64, write_family_name, write_u64, Lines, Suffix};
use crate::encode::names::sample_suffix;
use crate::encode::out::Out;
use crate::encode::{Encoder, Exemplar, FamilyHead, HistogramPoint, Sample};

/// The text format's content type.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes the text format.
pub(crate) struct Text<'o, 'a> {
    out: &'o mut Out<'a>,
    lines: Lines,
}

impl<'o, 'a> Text<'o, 'a> {
    pub(crate) fn new(out: &'o mut Out<'a>) -> Self {
        Self {
            out,
            lines: Lines::default(),
        }
    }
}

impl Encoder for Text<'_, '_> {
    fn family(&mut self, head: &FamilyHead<'_>) {
        self.lines.family(head.name);
        let out = &mut self.out.buf;
        let suffix = sample_suffix(head.kind);
        if let Some(help) = head.help {
            out.extend_from_slice(b"# HELP ");
            write_family_name(out, head.name, suffix);
            out.push(b' ');
            escape_into(out, help, false);
            out.push(b'\n');
        }
        out.extend_from_slice(b"# TYPE ");
        write_family_name(out, head.name, suffix);
        out.push(b' ');
        out.extend_from_slice(head.kind.as_str().as_bytes());
        out.push(b'\n');
    }

    /// Exemplars are an OpenMetrics feature: the text format has none.
    fn counter(&mut self, sample: &Sample<'_>, value: u64, _: Option<&Exemplar<'_>>) {
        let out = &mut self.out.buf;
        self.lines.sample(out, Suffix::Total, sample.labels);
        write_u64(out, value);
        out.push(b'\n');
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

    /// The classic buckets only (native ones need protobuf).
    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        self.lines.series(sample.labels);
        let tails = self.lines.tails(point.bounds, push_f64);
        let out = &mut self.out.buf;
        let mut total = 0;
        for ((_, _, cumulative), tail) in point.cumulative().zip(&tails) {
            self.lines.bucket(out, tail);
            write_u64(out, cumulative);
            out.push(b'\n');
            total = cumulative;
        }
        self.lines.keep_tails(tails);
        self.lines.line(out, Suffix::Sum);
        write_f64(out, point.sum);
        out.push(b'\n');
        self.lines.line(out, Suffix::Count);
        write_u64(out, total);
        out.push(b'\n');
        self.out.flush_if_full();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Labels;
    use crate::store::kind::Kind;

    fn render(f: impl FnOnce(&mut Text<'_, '_>)) -> String {
        let mut out = Out::whole(0);
        f(&mut Text::new(&mut out));
        String::from_utf8(out.finish()).expect("utf-8")
    }

    #[test]
    fn help_is_escaped_and_counters_end_in_total() {
        let head = FamilyHead {
            name: "m",
            kind: Kind::Counter,
            help: Some("a\\b\nc\""),
            unit: None,
        };
        assert_eq!(
            render(|t| t.family(&head)),
            "# HELP m_total a\\\\b\\nc\"\n# TYPE m_total counter\n"
        );
    }

    #[test]
    fn utf8_names_are_quoted_inside_the_braces() {
        let own = [("http.route", "/a\"b"), ("code", "200")];
        let text = render(|text| {
            let sample = Sample {
                name: "http.requests",
                labels: Labels::fixed(&own, &[]),
                start_ms: None,
            };
            text.family(&FamilyHead {
                name: "http.requests",
                kind: Kind::Counter,
                help: None,
                unit: None,
            });
            text.counter(&sample, 3, None);
            let bare = Sample {
                name: "up",
                labels: Labels::fixed(&[], &[]),
                start_ms: None,
            };
            text.family(&FamilyHead {
                name: "up",
                kind: Kind::Gauge,
                help: None,
                unit: None,
            });
            text.gauge(&bare, 1.0);
        });
        assert_eq!(
            text,
            "# TYPE \"http.requests_total\" counter\n\
             {\"http.requests_total\",\"http.route\"=\"/a\\\"b\",code=\"200\"} 3\n\
             # TYPE up gauge\n\
             up 1\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let point = HistogramPoint {
            bounds: &[0.5, 1.0],
            counts: &[1, 0, 2],
            count: 3,
            sum: 4.25,
            exemplars: &[],
            native: None,
        };
        let text = render(|text| {
            text.family(&FamilyHead {
                name: "h",
                kind: Kind::Histogram,
                help: None,
                unit: None,
            });
            let own = [("p", "/")];
            let sample = Sample {
                name: "h",
                labels: Labels::fixed(&own, &[]),
                start_ms: None,
            };
            text.histogram(&sample, &point);
        });
        assert_eq!(
            text,
            "# TYPE h histogram\n\
             h_bucket{p=\"/\",le=\"0.5\"} 1\n\
             h_bucket{p=\"/\",le=\"1\"} 1\n\
             h_bucket{p=\"/\",le=\"+Inf\"} 3\n\
             h_sum{p=\"/\"} 4.25\n\
             h_count{p=\"/\"} 3\n"
        );
    }
}
