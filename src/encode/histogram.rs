//! The rules every encoder of histograms shares: the cumulative bucket walk, which
//! histograms have classic buckets at all, and the `le` values, rendered once per family.

use std::fmt::Write as _;

use super::HistogramPoint;

impl HistogramPoint<'_> {
    /// The classic buckets, cumulative: `(index, upper bound, count up to it)`, `+Inf` last.
    pub(crate) fn cumulative(&self) -> impl Iterator<Item = (usize, f64, u64)> + '_ {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        self.counts
            .iter()
            .zip(bounds)
            .enumerate()
            .scan(0u64, |total, (i, (count, bound))| {
                *total = total.wrapping_add(*count);
                Some((i, bound, *total))
            })
    }

    /// Whether a format that carries native buckets writes classic ones too: a native
    /// histogram without classic bounds has none (its lone `+Inf` bucket would only repeat
    /// the count, and make it a classic histogram as well).
    pub(crate) fn has_classic(&self) -> bool {
        !(self.native.is_some() && self.bounds.is_empty())
    }
}

/// The `le` values of a histogram family's buckets (`+Inf` last), rendered once per
/// family by `write` and kept while the next family has the same bounds.
#[derive(Default)]
pub(crate) struct Les {
    of: Vec<f64>,
    texts: Vec<String>,
}

impl Les {
    /// The texts of `bounds` and `+Inf`.
    pub(crate) fn of(&mut self, bounds: &[f64], write: fn(&mut String, f64)) -> &[String] {
        if self.of != bounds || self.texts.is_empty() {
            self.of.clear();
            self.of.extend_from_slice(bounds);
            self.texts.clear();
            for bound in bounds.iter().copied().chain([f64::INFINITY]) {
                let mut le = String::new();
                write(&mut le, bound);
                self.texts.push(le);
            }
        }
        &self.texts
    }
}

/// Writes `value` as a canonical number (OpenMetrics' `le` values, Remote-Write's): Go's
/// shortest `%g` rendering, with `.0` appended when it has neither a point nor an exponent.
pub(crate) fn write_canonical(out: &mut String, value: f64) {
    if value.is_nan() {
        return out.push_str("NaN");
    }
    if value.is_infinite() {
        return out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Native;

    #[test]
    fn buckets_add_up_to_inf_and_native_only_ones_have_no_classic() {
        let point = HistogramPoint {
            bounds: &[0.5, 1.0],
            counts: &[2, 1, 4],
            count: 7,
            sum: 1.0,
            exemplars: &[],
            native: None,
        };
        let walked: Vec<_> = point.cumulative().collect();
        assert_eq!(walked, [(0, 0.5, 2), (1, 1.0, 3), (2, f64::INFINITY, 7)]);
        assert!(point.has_classic());
        let native = Native {
            schema: 0,
            zero_threshold: 0.0,
            zero_count: 0,
            positive: &[],
            negative: &[],
        };
        let native_only = HistogramPoint {
            bounds: &[],
            counts: &[7],
            native: Some(native),
            ..point
        };
        assert!(!native_only.has_classic());
        let mut les = Les::default();
        assert_eq!(les.of(&[0.5], write_canonical), ["0.5", "+Inf"]);
    }

    #[test]
    fn le_values_are_canonical_numbers() {
        let canonical = |v: f64| {
            let mut out = String::new();
            write_canonical(&mut out, v);
            out
        };
        // The OpenMetrics specification's examples.
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
}
