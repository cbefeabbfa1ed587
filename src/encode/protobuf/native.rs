//! Native buckets on the wire: spans and count deltas, as protobuf and Remote-Write 2.0
//! carry them.

use super::BucketSpan;
#[cfg(test)]
use super::Timestamp;

/// Native buckets `(index, count)`, ascending, as spans and count deltas: consecutive
/// indices share a span; the first span's offset is its first index, a later one's the gap
/// after the span before; each delta is the count minus the previous bucket's.
pub(crate) fn spans_and_deltas(
    buckets: &[(i32, u64)],
    spans: &mut Vec<BucketSpan>,
    deltas: &mut Vec<i64>,
) {
    let mut previous: Option<(i32, i64)> = None;
    for &(index, count) in buckets {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        match (previous, spans.last_mut()) {
            (Some((before, _)), Some(span)) if i64::from(index) == i64::from(before) + 1 => {
                span.length = Some(span.length.unwrap_or(0) + 1);
            }
            (Some((before, _)), _) => spans.push(BucketSpan {
                offset: Some(
                    i32::try_from(i64::from(index) - i64::from(before) - 1).unwrap_or(i32::MAX),
                ),
                length: Some(1),
            }),
            (None, _) => spans.push(BucketSpan {
                offset: Some(index),
                length: Some(1),
            }),
        }
        let last = previous.map_or(0, |(_, count)| count);
        deltas.push(count.wrapping_sub(last));
        previous = Some((index, count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_into_seconds_and_nanos() {
        let t = Timestamp::from_seconds(1_700_000_000.999_999_999_9);
        assert!(t.nanos < 1_000_000_000);
        assert_eq!(
            Timestamp::from_seconds(-0.5),
            Timestamp {
                seconds: -1,
                nanos: 500_000_000
            }
        );
    }

    #[test]
    fn consecutive_indices_share_a_span() {
        let (mut spans, mut deltas) = (Vec::new(), Vec::new());
        spans_and_deltas(&[(-1, 2), (0, 2), (3, 5)], &mut spans, &mut deltas);
        let read: Vec<(i32, u32)> = spans
            .iter()
            .map(|s| (s.offset.unwrap_or(0), s.length.unwrap_or(0)))
            .collect();
        assert_eq!(read, [(-1, 2), (2, 1)]);
        assert_eq!(deltas, [2, 0, 3]);
    }
}
