//! What the two text formats share: one series writer ([`Lines`]), escaping, numbers.
//!
//! A line is written from pieces worked out once: per family, the start of each sample
//! name (`name_bucket{`, or `{"name.x_bucket"` for a name that is not a legacy one, which
//! is quoted inside the braces); per histogram family, each bucket's `le="..."} `; per
//! series, its labels (`k="v",...`, escaped), rendered once for all its lines. Then a line
//! is a few copies and a number: no formatting machinery per line.

pub(crate) mod openmetrics;
pub(crate) mod prometheus;

use std::io::Write as _;

use super::histogram::Les;
use super::out::Out;
use super::Labels;
use crate::store::names::{is_legacy_label, is_legacy_name};

/// The suffixes of sample names, in the order of [`Lines`]' heads.
#[derive(Clone, Copy)]
pub(crate) enum Suffix {
    None,
    Total,
    Bucket,
    Sum,
    Count,
    Created,
}

const SUFFIXES: [&str; 6] = ["", "_total", "_bucket", "_sum", "_count", "_created"];

/// The bytes a quoted string escapes: 1 for a backslash and a newline, 2 for `"`.
static SPECIAL: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'\\' as usize] = 1;
    table[b'\n' as usize] = 1;
    table[b'"' as usize] = 2;
    table
};

/// Appends `text` escaped for a quoted string: `\` → `\\`, `"` → `\"`, newline → `\n`
/// (without `"` when `quote` is false: HELP text in the text format).
pub(crate) fn escape_into(out: &mut Vec<u8>, text: &str, quote: bool) {
    let bytes = text.as_bytes();
    // One look-up a byte: most text has nothing to escape.
    let mask = if quote { 3 } else { 1 };
    if !bytes.iter().any(|b| SPECIAL[usize::from(*b)] & mask != 0) {
        return out.extend_from_slice(bytes);
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quote => out.extend_from_slice(b"\\\""),
            b => out.push(b),
        }
    }
}

/// Appends `name` as a comment line names a family: bare if it is a legacy name, else
/// quoted.
pub(crate) fn write_family_name(out: &mut Vec<u8>, name: &str, suffix: &str) {
    if is_legacy_name(name) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(suffix.as_bytes());
    } else {
        out.push(b'"');
        escape_into(out, name, true);
        out.extend_from_slice(suffix.as_bytes());
        out.push(b'"');
    }
}

/// Appends `labels` as `k="v",...`, after a comma if `after` (something precedes them
/// inside the braces); whether any was written.
pub(crate) fn write_labels(out: &mut Vec<u8>, labels: Labels<'_>, mut after: bool) -> bool {
    let start = out.len();
    labels.each(|key, value| {
        if after {
            out.push(b',');
        }
        after = true;
        if labels.legacy_keys || is_legacy_label(key) {
            out.extend_from_slice(key.as_bytes());
        } else {
            out.push(b'"');
            escape_into(out, key, true);
            out.push(b'"');
        }
        out.extend_from_slice(b"=\"");
        escape_into(out, value, true);
        out.push(b'"');
    });
    out.len() > start
}

/// Writes an f64 as Prometheus parses it: `NaN`, `+Inf`, `-Inf`, or the shortest decimal
/// that reads back exactly (with an exponent only at extreme magnitudes).
pub(crate) fn write_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if value.fract() == 0.0
        && value.abs() < 1e15
        && !(value == 0.0 && value.is_sign_negative())
    {
        // Whole numbers (counts, most gauges) without the formatting machinery.
        if value < 0.0 {
            out.push(b'-');
        }
        write_u64(out, value.abs() as u64);
    } else if write_short_decimal(out, value) {
        // A decimal of at most six places (most sums and gauges), without the machinery.
    } else if value != 0.0 && !(1e-9..1e15).contains(&value.abs()) {
        let _ = write!(out, "{value:e}");
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Writes `value` as `int.frac` with the fewest places (one to six) that read back exactly,
/// if there are so few; whether it did.
fn write_short_decimal(out: &mut Vec<u8>, value: f64) -> bool {
    let magnitude = value.abs();
    if !(1e-6..1e9).contains(&magnitude) {
        return false;
    }
    let (mut scale, mut places) = (1u64, 0usize);
    while places < 6 {
        scale *= 10;
        places += 1;
        let scaled = (magnitude * scale as f64).round();
        // Both exact integers below 2^53: the quotient is the decimal's nearest f64, which
        // is what a reader parses the decimal to.
        if scaled / scale as f64 == magnitude {
            let scaled = scaled as u64;
            if value < 0.0 {
                out.push(b'-');
            }
            write_u64(out, scaled / scale);
            out.push(b'.');
            let (mut fraction, mut digits) = (scaled % scale, [b'0'; 6]);
            for digit in digits[..places].iter_mut().rev() {
                *digit = b'0' + (fraction % 10) as u8;
                fraction /= 10;
            }
            out.extend_from_slice(&digits[..places]);
            return true;
        }
    }
    false
}

/// [`write_f64`] into a `String` (an `le` value).
pub(crate) fn push_f64(out: &mut String, value: f64) {
    let mut bytes = Vec::new();
    write_f64(&mut bytes, value);
    out.extend(bytes.iter().map(|b| char::from(*b)));
}

/// Writes a `u64` in decimal, two digits at a time.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839404142434445464748495051525354555657585960\
        6162636465666768697071727374757677787980818283848586878889909192939495969798\
        99";
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while value >= 100 {
        let pair = (value % 100) as usize * 2;
        value /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if value >= 10 {
        let pair = value as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + value as u8;
    }
    out.extend_from_slice(&digits[at..]);
}

/// One family's sample lines: see the module documentation.
#[derive(Default)]
pub(crate) struct Lines {
    /// Each suffix's head: `name_s{`, or `{"name_s"` (quoted); where each ends.
    heads: Vec<u8>,
    ends: [usize; 6],
    quoted: bool,
    /// The current series' labels, `k="v",...`.
    labels: Vec<u8>,
    /// What follows a head before a bucket's `le`, and before the value of another line.
    with_le: Vec<u8>,
    close: Vec<u8>,
    /// A legacy name without labels: `name_s ` (no braces).
    bare: bool,
    /// The bounds' `le` values, and each bucket's `le="..."} `.
    les: Les,
    tails: Vec<Vec<u8>>,
    tails_of: Vec<f64>,
}

impl Lines {
    /// A new family, named `name` (before suffixes).
    pub(crate) fn family(&mut self, name: &str) {
        self.quoted = !is_legacy_name(name);
        self.heads.clear();
        for (end, suffix) in self.ends.iter_mut().zip(SUFFIXES) {
            match self.quoted {
                false => {
                    self.heads.extend_from_slice(name.as_bytes());
                    self.heads.extend_from_slice(suffix.as_bytes());
                    self.heads.push(b'{');
                }
                true => {
                    self.heads.extend_from_slice(b"{\"");
                    escape_into(&mut self.heads, name, true);
                    self.heads.extend_from_slice(suffix.as_bytes());
                    self.heads.push(b'"');
                }
            }
            *end = self.heads.len();
        }
    }

    fn head(&self, suffix: Suffix) -> &[u8] {
        let at = suffix as usize;
        let start = if at == 0 { 0 } else { self.ends[at - 1] };
        &self.heads[start..self.ends[at]]
    }

    /// Writes a one-line sample's name and labels, rendered in place, ready for its value.
    pub(crate) fn sample(&self, out: &mut Vec<u8>, suffix: Suffix, labels: Labels<'_>) {
        let head = self.head(suffix);
        out.extend_from_slice(head);
        if write_labels(out, labels, self.quoted) || self.quoted {
            out.extend_from_slice(b"} ");
        } else {
            out.pop(); // a legacy name without labels: no braces
            out.push(b' ');
        }
    }

    /// Writes a whole one-line float sample (a counter's or gauge's, in both text formats)
    /// and flushes `out` if it is full.
    pub(crate) fn f64_sample(
        &self,
        out: &mut Out<'_>,
        suffix: Suffix,
        labels: Labels<'_>,
        value: f64,
    ) {
        self.sample(&mut out.buf, suffix, labels);
        write_f64(&mut out.buf, value);
        out.buf.push(b'\n');
        out.flush_if_full();
    }

    /// Renders the current series' labels, for [`line`](Self::line) and
    /// [`bucket`](Self::bucket).
    pub(crate) fn series(&mut self, labels: Labels<'_>) {
        self.labels.clear();
        let any = write_labels(&mut self.labels, labels, false);
        self.with_le.clear();
        self.close.clear();
        self.bare = !self.quoted && !any;
        if self.quoted && any {
            self.with_le.push(b',');
            self.close.push(b',');
        }
        self.with_le.extend_from_slice(&self.labels);
        self.close.extend_from_slice(&self.labels);
        if any || self.quoted {
            self.with_le.push(b',');
        }
        self.close.extend_from_slice(b"} ");
    }

    /// Writes a line of the current series, ready for its value.
    #[inline]
    pub(crate) fn line(&self, out: &mut Vec<u8>, suffix: Suffix) {
        let head = self.head(suffix);
        match self.bare {
            true => {
                out.extend_from_slice(&head[..head.len() - 1]);
                out.push(b' ');
            }
            false => {
                out.extend_from_slice(head);
                out.extend_from_slice(&self.close);
            }
        }
    }

    /// The current series' labels alone (an exemplar's line needs none of them).
    #[inline]
    pub(crate) fn bucket(&self, out: &mut Vec<u8>, tail: &[u8]) {
        out.extend_from_slice(self.head(Suffix::Bucket));
        out.extend_from_slice(&self.with_le);
        out.extend_from_slice(tail);
    }

    /// Each bucket's `le="..."} ` for `bounds` (and `+Inf`), each number by `write`.
    pub(crate) fn tails(&mut self, bounds: &[f64], write: fn(&mut String, f64)) -> Vec<Vec<u8>> {
        if self.tails_of != bounds || self.tails.is_empty() {
            self.tails_of.clear();
            self.tails_of.extend_from_slice(bounds);
            self.tails = self
                .les
                .of(bounds, write)
                .iter()
                .map(|le| format!("le=\"{le}\"}} ").into_bytes())
                .collect();
        }
        std::mem::take(&mut self.tails)
    }

    /// Gives back what [`tails`](Self::tails) lent.
    pub(crate) fn keep_tails(&mut self, tails: Vec<Vec<u8>>) {
        self.tails = tails;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn numbers_are_written_as_prometheus_reads_them() {
        let f = |v: f64| text(|o| write_f64(o, v));
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(0.25), "0.25");
        assert_eq!(f(42.0), "42");
        assert_eq!(f(-3.0), "-3");
        assert_eq!(f(-0.0), "-0");
        assert_eq!(f(1e300), "1e300");
        assert_eq!(f(-2.5e-12), "-2.5e-12");
        for v in [0, 7, 10, 99, 100, 1234567890, u64::MAX] {
            assert_eq!(text(|o| write_u64(o, v)), v.to_string());
        }
        for v in [
            0.1,
            1e-9,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e15,
            999e12,
        ] {
            assert_eq!(f(v).parse::<f64>().ok(), Some(v), "{v}");
        }
        let mut s = String::new();
        push_f64(&mut s, 0.5);
        assert_eq!(s, "0.5");
    }

    #[test]
    fn lines_are_written_from_their_pieces() {
        let own = [("a", "x\"y")];
        let mut lines = Lines::default();
        lines.family("m");
        let labels = Labels::fixed(&own, &[]);
        assert_eq!(
            text(|o| lines.sample(o, Suffix::Total, labels)),
            "m_total{a=\"x\\\"y\"} "
        );
        assert_eq!(
            text(|o| lines.sample(o, Suffix::None, Labels::fixed(&[], &[]))),
            "m "
        );
        lines.series(labels);
        assert_eq!(text(|o| lines.line(o, Suffix::Sum)), "m_sum{a=\"x\\\"y\"} ");
        let tails = lines.tails(&[0.5], push_f64);
        assert_eq!(
            text(|o| lines.bucket(o, &tails[1])),
            "m_bucket{a=\"x\\\"y\",le=\"+Inf\"} "
        );
        lines.keep_tails(tails);
        lines.series(Labels::fixed(&[], &[]));
        assert_eq!(text(|o| lines.line(o, Suffix::Count)), "m_count ");
        lines.family("a.b");
        lines.series(Labels::fixed(&[], &[]));
        assert_eq!(text(|o| lines.line(o, Suffix::Count)), "{\"a.b_count\"} ");
        let tails = lines.tails(&[0.5], push_f64);
        assert_eq!(
            text(|o| lines.bucket(o, &tails[0])),
            "{\"a.b_bucket\",le=\"0.5\"} "
        );
        lines.series(labels);
        assert_eq!(
            text(|o| lines.bucket(o, &tails[0])),
            "{\"a.b_bucket\",a=\"x\\\"y\",le=\"0.5\"} "
        );
    }
}
