//! Prometheus Remote-Write (feature `remote-write`): [`v2`] writes
//! `io.prometheus.write.v2.Request`s, [`v1`] the 1.0 `prometheus.WriteRequest`s older
//! receivers take. A push is cut into requests bounded by samples and bytes
//! ([`batch`](super::batch)).
//!
//! Series are named as a scrape names them (`x_total`, `x_bucket{le}`, `x_sum`, `x_count`),
//! with the labels the pusher adds (`job`, `instance`) where a series has none of its own.
//! Every label set is sorted by name, without empty values, as the specification asks;
//! so are an exemplar's labels.
//!
//! A push's stale markers (at `stop()`, and for series idle expiry hid) are samples of
//! value StaleNaN, and a native histogram whose sum is StaleNaN, as Prometheus writes them.

mod messages;
mod symbols;
#[cfg(test)]
mod tests;
pub(crate) mod v1;
pub(crate) mod v2;

use super::{Exemplar as Exemplar_, Labels};
use crate::store::kind::Kind;
pub(crate) use messages::*;
pub(crate) use symbols::Symbols;

/// Prometheus' stale marker: the NaN a series' last sample carries when it ends.
pub(crate) const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// The metric types of `Metadata.type` (2.0) and `MetricMetadata.type` (1.0), which number
/// them alike.
pub(crate) fn metric_type(kind: Kind) -> i32 {
    match kind {
        Kind::Counter => 1,
        Kind::Gauge => 2,
        Kind::Histogram => 3,
    }
}

/// The unit a family's metadata carries: OpenMetrics' name of it (`seconds`, `bytes`), as
/// Prometheus keeps it; none for a count.
pub(crate) fn unit(unit: Option<metrics::Unit>) -> Option<&'static str> {
    unit.filter(|u| *u != metrics::Unit::Count)
        .map(|u| u.as_str())
}

/// A series' name, with the suffix of the sample it carries.
pub(crate) fn sample_name<'a>(base: &'a str, suffix: &str, buf: &'a mut String) -> &'a str {
    if suffix.is_empty() {
        return base;
    }
    buf.clear();
    buf.push_str(base);
    buf.push_str(suffix);
    buf
}

/// Runs `f` on each label a pushed series carries, `(key, value)`, in no order: its own and
/// global labels, then each of `identity` it has no label of, without empty values.
pub(crate) fn each_label<'a>(
    labels: Labels<'a>,
    identity: &'a [(String, String)],
    mut f: impl FnMut(&'a str, &'a str),
) {
    // Which of `identity` the series has (a pusher's identity is two labels).
    let mut has = 0u64;
    labels.each(|k, v| {
        if !v.is_empty() {
            f(k, v);
            for (i, (key, _)) in identity.iter().enumerate().take(64) {
                if k == key {
                    has |= 1 << i;
                }
            }
        }
    });
    for (i, (key, value)) in identity.iter().enumerate().take(64) {
        if has & (1 << i) == 0 && !value.is_empty() {
            f(key, value);
        }
    }
}

/// An exemplar's labels, sorted by name (the specification asks it of every label set).
pub(crate) fn exemplar_labels<'a>(exemplar: &'a Exemplar_<'_>) -> Vec<(&'a str, &'a str)> {
    let mut labels: Vec<(&str, &str)> = exemplar.pairs().collect();
    labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    labels
}

/// A sample's value, or the stale marker when the series is written as ended.
fn value(value: f64, stale: bool) -> f64 {
    if stale {
        f64::from_bits(STALE_NAN)
    } else {
        value
    }
}

/// Writes `value` as a varint.
fn varint(mut value: u64, buf: &mut Vec<u8>) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}
