//! The Prometheus text format, as client_golang writes it.
//!
//! A counter's series end in `_total` here as in every format (its family is `NAME_total`).
//! A name that is not a legacy name (possible only under `escaping=allow-utf-8`) is quoted
//! inside the braces, and so is a label name: `{"http.server.duration_bucket","http.route"="/",le="0.1"} 3`.

use std::fmt::Write as _;

use super::{Encoder, Exemplar, FamilyHead, HistogramPoint, Labels, LeLabels, Sample};
use crate::store::kind::Kind;
use crate::store::names::{is_legacy_label, is_legacy_name};

/// The text format's content type.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes the text format into a `String`.
pub(crate) struct Text<'a> {
    out: &'a mut String,
    /// The current histogram family's `le` values, rendered once per family.
    les: LeLabels,
    /// The current series' labels, rendered once for all its lines.
    joined: String,
    /// Whether the current family's name is a legacy name.
    legacy: bool,
}

impl<'a> Text<'a> {
    pub(crate) fn new(out: &'a mut String) -> Self {
        Self {
            out,
            les: LeLabels::default(),
            joined: String::new(),
            legacy: true,
        }
    }
}

/// Appends `text` escaped for a quoted string: `\` → `\\`, `"` → `\"`, newline → `\n`
/// (without `"` when `quote` is false: HELP text in the text format).
pub(crate) fn escape_into(out: &mut String, text: &str, quote: bool) {
    let plain = !text
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'));
    if plain {
        return out.push_str(text);
    }
    let mut rest = text;
    let special = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    while let Some(at) = rest.find(special) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Appends `name` as a comment line names a family: bare if it is a legacy name, else
/// quoted.
pub(crate) fn write_family_name(out: &mut String, name: &str, suffix: &str) {
    if is_legacy_name(name) {
        out.push_str(name);
        out.push_str(suffix);
    } else {
        out.push('"');
        escape_into(out, name, true);
        out.push_str(suffix);
        out.push('"');
    }
}

/// Renders `labels` as `k="v",...` into `out` (cleared first).
pub(crate) fn join_labels(out: &mut String, labels: Labels<'_>) {
    out.clear();
    append_labels(out, labels, false);
}

/// Appends `labels` as `k="v",...` to `out`, after a comma if `after` (something precedes
/// them inside the braces).
fn append_labels(out: &mut String, labels: Labels<'_>, mut after: bool) {
    labels.each(|key, value| {
        if after {
            out.push(',');
        }
        after = true;
        if labels.legacy_keys || is_legacy_label(key) {
            out.push_str(key);
        } else {
            out.push('"');
            escape_into(out, key, true);
            out.push('"');
        }
        out.push_str("=\"");
        escape_into(out, value, true);
        out.push('"');
    });
}

/// Writes `name+suffix{joined[,le="extra"]} `: the sample's name and labels as the text
/// format and OpenMetrics both print them (a non-legacy name first inside the braces).
pub(crate) fn write_series(
    out: &mut String,
    name: Name<'_>,
    suffix: &str,
    joined: &str,
    le: Option<&str>,
) {
    let Name(name, legacy) = name;
    let mut open = false;
    let part = |out: &mut String, open: &mut bool| {
        out.push(if *open { ',' } else { '{' });
        *open = true;
    };
    if legacy {
        out.push_str(name);
        out.push_str(suffix);
    } else {
        part(out, &mut open);
        out.push('"');
        escape_into(out, name, true);
        out.push_str(suffix);
        out.push('"');
    }
    if !joined.is_empty() {
        part(out, &mut open);
        out.push_str(joined);
    }
    if let Some(le) = le {
        part(out, &mut open);
        out.push_str("le=\"");
        out.push_str(le);
        out.push('"');
    }
    if open {
        out.push('}');
    }
    out.push(' ');
}

/// A family's name as written, and whether it is a legacy name (written bare): worked
/// out once per family, not once per line.
#[derive(Clone, Copy)]
pub(crate) struct Name<'a>(pub(crate) &'a str, pub(crate) bool);

impl<'a> Name<'a> {
    pub(crate) fn of(name: &'a str) -> Self {
        Self(name, is_legacy_name(name))
    }
}

/// Writes `name+suffix{labels} ` for a one-line sample, the labels rendered in place.
pub(crate) fn write_sample(out: &mut String, name: Name<'_>, suffix: &str, labels: Labels<'_>) {
    let Name(name, legacy) = name;
    if legacy {
        out.push_str(name);
        out.push_str(suffix);
        let start = out.len();
        out.push('{');
        append_labels(out, labels, false);
        if out.len() == start + 1 {
            out.truncate(start); // no label: no braces
        } else {
            out.push('}');
        }
    } else {
        out.push_str("{\"");
        escape_into(out, name, true);
        out.push_str(suffix);
        out.push('"');
        append_labels(out, labels, true);
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

/// A counter read as a float, `name_total{labels} value` (text and OpenMetrics alike).
pub(crate) fn write_float_counter(out: &mut String, sample: &Sample<'_>, legacy: bool, value: f64) {
    write_sample(out, Name(sample.name, legacy), "_total", sample.labels);
    write_f64(out, value);
    out.push('\n');
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

impl Encoder for Text<'_> {
    fn family(&mut self, head: &FamilyHead<'_>) {
        self.legacy = is_legacy_name(head.name);
        let suffix = if head.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        if let Some(help) = head.help {
            self.out.push_str("# HELP ");
            write_family_name(self.out, head.name, suffix);
            self.out.push(' ');
            escape_into(self.out, help, false);
            self.out.push('\n');
        }
        self.out.push_str("# TYPE ");
        write_family_name(self.out, head.name, suffix);
        self.out.push(' ');
        self.out.push_str(head.kind.as_str());
        self.out.push('\n');
    }

    /// Exemplars are an OpenMetrics feature: the text format has none.
    fn counter(&mut self, sample: &Sample<'_>, value: u64, _: Option<&Exemplar<'_>>) {
        write_sample(
            self.out,
            Name(sample.name, self.legacy),
            "_total",
            sample.labels,
        );
        write_u64(self.out, value);
        self.out.push('\n');
    }

    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        write_float_counter(self.out, sample, self.legacy, value);
    }

    fn gauge(&mut self, sample: &Sample<'_>, value: f64) {
        write_sample(self.out, Name(sample.name, self.legacy), "", sample.labels);
        write_f64(self.out, value);
        self.out.push('\n');
    }

    /// The classic buckets only (native ones need protobuf).
    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        join_labels(&mut self.joined, sample.labels);
        let out = &mut *self.out;
        let mut total = 0u64;
        for (count, le) in point
            .counts
            .iter()
            .zip(self.les.of(point.bounds, write_f64))
        {
            total = total.wrapping_add(*count);
            write_series(
                out,
                Name(sample.name, self.legacy),
                "_bucket",
                &self.joined,
                Some(le),
            );
            write_u64(out, total);
            out.push('\n');
        }
        write_series(
            out,
            Name(sample.name, self.legacy),
            "_sum",
            &self.joined,
            None,
        );
        write_f64(out, point.sum);
        out.push('\n');
        write_series(
            out,
            Name(sample.name, self.legacy),
            "_count",
            &self.joined,
            None,
        );
        write_u64(out, total);
        out.push('\n');
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
    fn help_is_escaped_and_counters_end_in_total() {
        let mut out = String::new();
        let head = FamilyHead {
            name: "m",
            kind: Kind::Counter,
            help: Some("a\\b\nc\""),
            unit: None,
        };
        Text::new(&mut out).family(&head);
        assert_eq!(out, "# HELP m_total a\\\\b\\nc\"\n# TYPE m_total counter\n");
    }

    #[test]
    fn utf8_names_are_quoted_inside_the_braces() {
        let mut out = String::new();
        let own = [("http.route", "/a\"b"), ("code", "200")];
        let sample = Sample {
            name: "http.requests",
            labels: Labels::fixed(&own, &[]),
            start_ms: None,
        };
        let mut text = Text::new(&mut out);
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
        assert_eq!(
            out,
            "# TYPE \"http.requests_total\" counter\n\
             {\"http.requests_total\",\"http.route\"=\"/a\\\"b\",code=\"200\"} 3\n\
             # TYPE up gauge\n\
             up 1\n"
        );
    }
}
