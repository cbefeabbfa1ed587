//! From Prometheus' terms to OpenTelemetry's: exemplars (trace and span ids), native
//! buckets (dense, offset one less), units (UCUM), and the `sum` rule.

use prost::Message;

use super::messages::*;
use crate::encode::Exemplar as Exemplar_;

/// Bytes of a lowercase or uppercase hex id of exactly `len` bytes, not all zero (an
/// invalid id in OpenTelemetry).
pub(super) fn hex_id(text: &str, len: usize) -> Option<Vec<u8>> {
    if text.len() != len * 2 || !text.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..len)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect();
    bytes.filter(|b| b.iter().any(|x| *x != 0))
}

/// An exemplar: its `trace_id` and `span_id` labels, when hex of the right length, as its
/// trace and span ids; its other labels as filtered attributes.
pub(super) fn exemplar(exemplar: &Exemplar_<'_>, now_ns: u64) -> Exemplar {
    let mut out = Exemplar {
        filtered_attributes: Vec::new(),
        time_unix_nano: exemplar.ns_or(now_ns),
        value: Some(ExemplarNumber::AsDouble(exemplar.value)),
        span_id: Vec::new(),
        trace_id: Vec::new(),
    };
    for (key, value) in exemplar.pairs() {
        let id = match key {
            "trace_id" if out.trace_id.is_empty() => hex_id(value, 16).map(|id| out.trace_id = id),
            "span_id" if out.span_id.is_empty() => hex_id(value, 8).map(|id| out.span_id = id),
            _ => None,
        };
        if id.is_none() {
            out.filtered_attributes.push(KeyValue {
                key: key.to_owned(),
                value: Some(AnyValue {
                    string_value: Some(value.to_owned()),
                }),
            });
        }
    }
    out
}

/// Prometheus native buckets `(index, count)`, ascending, as OpenTelemetry's dense
/// buckets (offset one less, gaps filled with zeros).
pub(super) fn dense(buckets: &[(i32, u64)]) -> Option<Buckets> {
    let (first, _) = *buckets.first()?;
    let mut out = Buckets {
        offset: first.saturating_sub(1),
        bucket_counts: Vec::new(),
    };
    for &(index, count) in buckets {
        let at = usize::try_from(i64::from(index) - i64::from(first)).unwrap_or(0);
        if out.bucket_counts.len() <= at {
            out.bucket_counts.resize(at + 1, 0);
        }
        out.bucket_counts[at] = count;
    }
    Some(out)
}

/// A metric's `unit`: the UCUM code of the unit it was described with (as OpenTelemetry's
/// semantic conventions write them); empty without one.
pub(super) fn ucum(unit: Option<metrics::Unit>) -> &'static str {
    use metrics::Unit;
    match unit {
        None => "",
        Some(Unit::Count) => "1",
        Some(Unit::Percent) => "%",
        Some(Unit::Seconds) => "s",
        Some(Unit::Milliseconds) => "ms",
        Some(Unit::Microseconds) => "us",
        Some(Unit::Nanoseconds) => "ns",
        Some(Unit::Tebibytes) => "TiBy",
        Some(Unit::Gibibytes) => "GiBy",
        Some(Unit::Mebibytes) => "MiBy",
        Some(Unit::Kibibytes) => "KiBy",
        Some(Unit::Bytes) => "By",
        Some(Unit::TerabitsPerSecond) => "Tbit/s",
        Some(Unit::GigabitsPerSecond) => "Gbit/s",
        Some(Unit::MegabitsPerSecond) => "Mbit/s",
        Some(Unit::KilobitsPerSecond) => "kbit/s",
        Some(Unit::BitsPerSecond) => "bit/s",
        Some(Unit::CountPerSecond) => "1/s",
    }
}

/// A histogram's `sum`, unless it may include negative observations: metrics.proto says a
/// sum "should not be filled out" then. It may when it is negative, when the classic
/// buckets start below zero, or when native buckets below zero hold observations.
pub(super) fn sum(sum: f64, lowest_bound: Option<f64>, negative_buckets: bool) -> Option<f64> {
    let negative = sum < 0.0 || lowest_bound.is_some_and(|b| b < 0.0) || negative_buckets;
    (!negative).then_some(sum)
}

/// Reads the rejected points of an OTLP response body, if it says any were rejected.
pub(crate) fn rejected(body: &[u8]) -> Option<(i64, String)> {
    let response = ExportMetricsServiceResponse::decode(body).ok()?;
    let partial = response.partial_success?;
    (partial.rejected_data_points > 0 || !partial.error_message.is_empty())
        .then_some((partial.rejected_data_points, partial.error_message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_of_the_right_length() {
        assert_eq!(hex_id("00f067aa0ba902b7", 8).map(|b| b.len()), Some(8));
        assert_eq!(hex_id("0000000000000000", 8), None, "all zero is invalid");
        assert_eq!(hex_id("abc", 8), None);
        assert_eq!(hex_id("zzf067aa0ba902b7", 8), None);
        assert_eq!(hex_id("éé", 1), None);
        assert!(rejected(&[]).is_none());
    }

    #[test]
    fn a_sum_that_may_hold_negative_observations_is_left_out() {
        assert_eq!(sum(3.0, Some(0.5), false), Some(3.0));
        assert_eq!(sum(3.0, None, false), Some(3.0));
        assert_eq!(sum(-1.0, Some(0.5), false), None);
        assert_eq!(sum(3.0, Some(-1.0), false), None);
        assert_eq!(sum(3.0, None, true), None);
        assert_eq!(ucum(Some(metrics::Unit::Seconds)), "s");
        assert_eq!(ucum(Some(metrics::Unit::Bytes)), "By");
        assert_eq!(ucum(None), "");
    }
}
