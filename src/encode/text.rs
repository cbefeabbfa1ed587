//! The Prometheus text format 0.0.4, as client_golang writes it.

use std::fmt::Write as _;

use super::{Encoder, Exemplar, HistogramPoint, Labels, LeLabels};
use crate::store::kind::Kind;

/// The text format's content type.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes the text format into a `String`.
pub(crate) struct Text<'a> {
    out: &'a mut String,
    /// The current histogram family's `le` values, rendered once per family.
    les: LeLabels,
    /// The current histogram series' labels, joined once for its 14 or so lines.
    joined: String,
}

impl<'a> Text<'a> {
    pub(crate) fn new(out: &'a mut String) -> Self {
        Self {
            out,
            les: LeLabels::default(),
            joined: String::new(),
        }
    }

    fn series(&mut self, name: &str, suffix: &str, labels: Labels<'_>, extra: Option<&str>) {
        write_series(self.out, name, suffix, labels, extra);
    }
}

/// Writes `name{labels[,extra]} ` (braces only when there is a label): the sample's name and
/// labels as the text format and OpenMetrics both print them.
pub(super) fn write_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: Labels<'_>,
    extra: Option<&str>,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut first = true;
    let mut put = |out: &mut String, part: &str| {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(part);
    };
    if !labels.series.is_empty() {
        put(out, labels.series);
    }
    for pair in labels.global() {
        put(out, pair);
    }
    if let Some(extra) = extra {
        put(out, extra);
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
}

/// Writes an f64 as Prometheus parses it: `NaN`, `+Inf`, `-Inf`, or the shortest decimal
/// that reads back exactly (with an exponent only at extreme magnitudes).
pub(crate) fn write_f64(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value != 0.0 && !(1e-9..1e15).contains(&value.abs()) {
        let _ = write!(out, "{value:e}");
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Writes a `u64` in decimal, without the formatting machinery (a scrape writes one per
/// sample).
pub(crate) fn write_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
}

/// Escapes a HELP text: `\` → `\\`, newline → `\n`.
fn escape_help(out: &mut String, help: &str) {
    let mut rest = help;
    while let Some(at) = rest.find(['\\', '\n']) {
        out.push_str(&rest[..at]);
        out.push_str(if rest.as_bytes()[at] == b'\\' {
            "\\\\"
        } else {
            "\\n"
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

impl Encoder for Text<'_> {
    fn family(&mut self, name: &str, kind: Kind, help: Option<&str>) {
        if let Some(help) = help {
            self.out.push_str("# HELP ");
            self.out.push_str(name);
            self.out.push(' ');
            escape_help(self.out, help);
            self.out.push('\n');
        }
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// Exemplars are an OpenMetrics feature: the text format 0.0.4 has none.
    fn counter(&mut self, name: &str, labels: Labels<'_>, value: u64, _: Option<Exemplar<'_>>) {
        self.series(name, "", labels, None);
        write_u64(self.out, value);
        self.out.push('\n');
    }

    fn gauge(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.series(name, "", labels, None);
        write_f64(self.out, value);
        self.out.push('\n');
    }

    /// The classic buckets only (native ones need protobuf).
    fn histogram(&mut self, name: &str, labels: Labels<'_>, point: &HistogramPoint<'_>) {
        let (bounds, counts, sum) = (point.bounds, point.counts, point.sum);
        // The series' labels, joined once: each of its lines copies them.
        self.joined.clear();
        for part in (!labels.series.is_empty())
            .then_some(labels.series)
            .into_iter()
            .chain(labels.global())
        {
            if !self.joined.is_empty() {
                self.joined.push(',');
            }
            self.joined.push_str(part);
        }
        let out = &mut *self.out;
        let mut total = 0u64;
        for (count, le) in counts.iter().zip(self.les.of(bounds, write_f64)) {
            total = total.wrapping_add(*count);
            out.push_str(name);
            out.push_str("_bucket{");
            if !self.joined.is_empty() {
                out.push_str(&self.joined);
                out.push(',');
            }
            out.push_str(le);
            out.push_str("} ");
            write_u64(out, total);
            out.push('\n');
        }
        for (suffix, value) in [("_sum", None), ("_count", Some(total))] {
            out.push_str(name);
            out.push_str(suffix);
            if !self.joined.is_empty() {
                out.push('{');
                out.push_str(&self.joined);
                out.push('}');
            }
            out.push(' ');
            match value {
                Some(total) => write_u64(out, total),
                None => write_f64(out, sum),
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_prometheus_reads_them() {
        let text = |v: f64| {
            let mut out = String::new();
            write_f64(&mut out, v);
            out
        };
        assert_eq!(text(f64::NAN), "NaN");
        assert_eq!(text(f64::INFINITY), "+Inf");
        assert_eq!(text(f64::NEG_INFINITY), "-Inf");
        assert_eq!(text(0.25), "0.25");
        assert_eq!(text(42.0), "42");
        assert_eq!(text(1e300), "1e300");
        assert_eq!(text(-2.5e-12), "-2.5e-12");
        for v in [0, 7, 10, 1234567890, u64::MAX] {
            let mut out = String::new();
            write_u64(&mut out, v);
            assert_eq!(out, v.to_string());
        }
        for v in [0.1, 1e-9, 123456.789, f64::MAX, f64::MIN_POSITIVE] {
            assert_eq!(text(v).parse::<f64>().ok(), Some(v));
        }
    }

    #[test]
    fn help_is_escaped() {
        let mut out = String::new();
        Text::new(&mut out).family("m", Kind::Gauge, Some("a\\b\nc"));
        assert_eq!(out, "# HELP m a\\\\b\\nc\n# TYPE m gauge\n");
    }
}
