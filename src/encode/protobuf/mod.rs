//! The Prometheus protobuf format: one `io.prometheus.client.MetricFamily` message per
//! family, each prefixed by its length as a varint ("delimited"), as client_golang writes it.
//! The only format that carries native histograms.
//!
//! The messages are those of prometheus/client_model's `io/prometheus/client/metrics.proto`
//! (proto2), derived with `prost` in [`messages`] for the fields we write; field numbers are the
//! proto's. Repeated numbers are written packed, as the proto3 twin of that file in
//! prometheus/prometheus declares them; protobuf parsers read either form.
//!
//! A family's metrics are encoded one by one as they come, and the family is written out
//! when the next one starts: a family's series are never all held at once. A metric's label
//! pairs are encoded from the borrowed label text (as the derived `LabelPair` would encode
//! them); its value goes through the derived messages.

mod messages;
mod native;

use prost::Message;

use super::names::family_name;
use super::out::Out;
use super::{wire, Encoder, Exemplar as Exemplar_, FamilyHead, HistogramPoint, Labels, Sample};
use crate::store::kind::Kind;
pub(crate) use messages::*;
pub(crate) use native::spans_and_deltas;

/// The protobuf format's content type.
pub(crate) const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Writes delimited `MetricFamily` messages.
pub(crate) struct Protobuf<'o, 'a> {
    out: &'o mut Out<'a>,
    /// The current family's name, help and type (its metrics go to `body`).
    header: Option<MetricFamily>,
    /// The current family's metrics, encoded as its field 4.
    body: Vec<u8>,
    /// One metric being encoded.
    scratch: Vec<u8>,
}

impl<'o, 'a> Protobuf<'o, 'a> {
    pub(crate) fn new(out: &'o mut Out<'a>) -> Self {
        Self {
            out,
            header: None,
            body: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Writes out the current family, if any: its length, its header fields, its metrics.
    fn flush(&mut self) {
        if let Some(header) = self.header.take() {
            let len = header.encoded_len() + self.body.len();
            prost::encoding::encode_varint(len as u64, &mut self.out.buf);
            // Encoding into a `Vec` cannot run out of room.
            let _ = header.encode(&mut self.out.buf);
            self.out.append(&mut self.body);
        }
    }

    /// Encodes one `Metric` into the family: `labels` as its field 1 (sorted by name, as
    /// client_golang sorts them), then what `value` writes.
    ///
    /// The label pairs are written straight from the borrowed strings, as the derived
    /// [`LabelPair`] encodes them: no `String` per label, the cost of most series.
    fn metric(&mut self, labels: Labels<'_>, value: impl FnOnce(&mut Vec<u8>)) {
        let scratch = &mut self.scratch;
        scratch.clear();
        labels.in_order(|name, value| wire::pair(1, name, value, scratch));
        value(scratch);
        wire::head(4, scratch.len(), &mut self.body);
        self.body.extend_from_slice(scratch);
    }

    fn counter_with(&mut self, sample: &Sample<'_>, value: f64, exemplar: Option<&Exemplar_<'_>>) {
        let counter = Counter {
            value: Some(value),
            exemplar: exemplar.map(self::exemplar),
            created_timestamp: sample.start_ms.map(Timestamp::from_ms),
        };
        self.metric(sample.labels, |out| {
            prost::encoding::message::encode(3, &counter, out)
        });
    }
}

fn exemplar(exemplar: &Exemplar_<'_>) -> Exemplar {
    Exemplar {
        label: exemplar
            .pairs()
            .map(|(name, value)| LabelPair {
                name: Some(name.to_owned()),
                value: Some(value.to_owned()),
            })
            .collect(),
        value: Some(exemplar.value),
        timestamp: exemplar.seconds().map(Timestamp::from_seconds),
    }
}

impl Encoder for Protobuf<'_, '_> {
    fn family(&mut self, head: &FamilyHead<'_>) {
        self.flush();
        let name = family_name(head.name, head.kind);
        let kind = match head.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        };
        self.header = Some(MetricFamily {
            name: Some(name),
            help: head.help.map(str::to_owned),
            r#type: Some(kind as i32),
            metric: Vec::new(),
            unit: None,
        });
    }

    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar: Option<&Exemplar_<'_>>) {
        self.counter_with(sample, value as f64, exemplar);
    }

    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        self.counter_with(sample, value, None);
    }

    fn gauge(&mut self, sample: &Sample<'_>, value: f64) {
        let gauge = Gauge { value: Some(value) };
        self.metric(sample.labels, |out| {
            prost::encoding::message::encode(2, &gauge, out)
        });
    }

    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        let mut histogram = Histogram {
            sample_count: Some(point.count),
            sample_sum: Some(point.sum),
            created_timestamp: sample.start_ms.map(Timestamp::from_ms),
            ..Histogram::default()
        };
        let bucket_exemplar = |i: usize| point.exemplars.get(i).and_then(Option::as_ref);
        if point.has_classic() {
            for (i, bound, cumulative) in point.cumulative() {
                histogram.bucket.push(Bucket {
                    cumulative_count: Some(cumulative),
                    upper_bound: Some(bound),
                    exemplar: bucket_exemplar(i).map(exemplar),
                    ..Bucket::default()
                });
            }
        }
        if let Some(native) = point.native {
            histogram.schema = Some(native.schema);
            histogram.zero_threshold = Some(native.zero_threshold);
            histogram.zero_count = Some(native.zero_count);
            spans_and_deltas(
                native.positive,
                &mut histogram.positive_span,
                &mut histogram.positive_delta,
            );
            spans_and_deltas(
                native.negative,
                &mut histogram.negative_span,
                &mut histogram.negative_delta,
            );
            // Without any of these, a native histogram reads as a classic one: a no-op span
            // marks it native (as the proto asks).
            if histogram.positive_span.is_empty()
                && histogram.negative_span.is_empty()
                && native.zero_threshold == 0.0
                && native.zero_count == 0
            {
                histogram.positive_span.push(BucketSpan {
                    offset: Some(0),
                    length: Some(0),
                });
            }
            // Native histograms take their exemplars here, each with its timestamp.
            histogram.exemplars = point
                .exemplars
                .iter()
                .flatten()
                .filter(|e| e.seconds().is_some())
                .map(exemplar)
                .collect();
        }
        self.metric(sample.labels, |out| {
            prost::encoding::message::encode(7, &histogram, out);
        });
    }

    fn finish(&mut self) {
        self.flush();
    }

    fn wants_exemplars(&self) -> bool {
        true
    }

    fn wants_native(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Native;
    use crate::store::Pairs;

    fn head<'a>(name: &'a str, kind: Kind, help: Option<&'static str>) -> FamilyHead<'a> {
        FamilyHead {
            name,
            kind,
            help,
            unit: None,
        }
    }

    fn bare(name: &str) -> Sample<'_> {
        Sample {
            name,
            labels: Labels::fixed(&[], &[]),
            start_ms: None,
        }
    }

    /// Every message of a delimited stream.
    fn decode(mut bytes: &[u8]) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        while !bytes.is_empty() {
            families.push(MetricFamily::decode_length_delimited(&mut bytes).expect("a message"));
        }
        families
    }

    fn pair(name: &str, value: &str) -> LabelPair {
        LabelPair {
            name: Some(name.into()),
            value: Some(value.into()),
        }
    }

    #[test]
    fn families_are_delimited_messages_with_unescaped_labels() {
        let global = [("env".to_owned(), "a\"b".to_owned())];
        let own = [("path", "/a\\b\n"), ("code", "200")];
        let sample = Sample {
            name: "requests",
            labels: Labels::fixed(&own, &global),
            start_ms: Some(1_500),
        };
        let mut out = Out::whole(0);
        let mut proto = Protobuf::new(&mut out);
        proto.family(&head(
            "requests",
            Kind::Counter,
            Some("Requests \"served\"."),
        ));
        let labels = Pairs::from_flat(&["trace_id", "x"]);
        let e = Exemplar_ {
            labels: &labels,
            value: 2.0,
            timestamp: 1_700_000_000.25,
        };
        proto.counter(&sample, 5, Some(&e));
        proto.counter(&bare("requests"), 0, None);
        proto.family(&head("temperature", Kind::Gauge, None));
        proto.gauge(&bare("temperature"), -3.5);
        proto.finish();
        let families = decode(&out.finish());
        assert_eq!(families.len(), 2);
        let requests = &families[0];
        assert_eq!(requests.name.as_deref(), Some("requests_total"));
        assert_eq!(requests.help.as_deref(), Some("Requests \"served\"."));
        assert_eq!(requests.r#type, Some(MetricType::Counter as i32));
        assert_eq!(requests.metric.len(), 2);
        let first = &requests.metric[0];
        assert_eq!(
            first.label,
            [
                pair("code", "200"),
                pair("env", "a\"b"),
                pair("path", "/a\\b\n")
            ]
        );
        let counter = first.counter.as_ref().unwrap();
        assert_eq!(counter.value, Some(5.0));
        assert_eq!(
            counter.created_timestamp,
            Some(Timestamp {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        let exemplar = counter.exemplar.as_ref().unwrap();
        assert_eq!(exemplar.label, [pair("trace_id", "x")]);
        assert_eq!(exemplar.value, Some(2.0));
        assert_eq!(
            exemplar.timestamp,
            Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000
            })
        );
        assert!(requests.metric[1].label.is_empty());
        let temperature = &families[1];
        assert_eq!(temperature.help, None);
        assert_eq!(temperature.r#type, Some(MetricType::Gauge as i32));
        assert_eq!(
            temperature.metric[0].gauge,
            Some(Gauge { value: Some(-3.5) })
        );
    }

    #[test]
    fn an_empty_family_is_still_a_message() {
        let mut out = Out::whole(0);
        let mut proto = Protobuf::new(&mut out);
        proto.family(&head("a", Kind::Counter, None));
        proto.family(&head("b", Kind::Gauge, None));
        proto.finish();
        let families = decode(&out.finish());
        assert_eq!(families.len(), 2);
        assert!(families[0].metric.is_empty());
    }

    #[test]
    fn classic_buckets_are_cumulative_with_inf_and_exemplars() {
        let labels = Pairs::from_flat(&["trace_id", "t"]);
        let e = Exemplar_ {
            labels: &labels,
            value: 0.7,
            timestamp: 1.5,
        };
        let exemplars = [None, Some(e), None];
        let point = HistogramPoint {
            bounds: &[0.5, 1.0],
            counts: &[2, 1, 4],
            count: 7,
            sum: 12.5,
            exemplars: &exemplars,
            native: None,
        };
        let mut out = Out::whole(0);
        let mut proto = Protobuf::new(&mut out);
        proto.family(&head("h", Kind::Histogram, None));
        proto.histogram(&bare("h"), &point);
        proto.finish();
        let families = decode(&out.finish());
        assert_eq!(families[0].r#type, Some(MetricType::Histogram as i32));
        let h = families[0].metric[0].histogram.as_ref().unwrap();
        assert_eq!((h.sample_count, h.sample_sum), (Some(7), Some(12.5)));
        let buckets: Vec<(u64, f64)> = h
            .bucket
            .iter()
            .map(|b| (b.cumulative_count.unwrap(), b.upper_bound.unwrap()))
            .collect();
        assert_eq!(buckets, [(2, 0.5), (3, 1.0), (7, f64::INFINITY)]);
        assert!(h.bucket[0].exemplar.is_none());
        assert_eq!(h.bucket[1].exemplar.as_ref().unwrap().value, Some(0.7));
        // Classic only: nothing native.
        assert_eq!(h.schema, None);
        assert!(h.positive_span.is_empty() && h.exemplars.is_empty());
    }

    #[test]
    fn native_buckets_are_spans_and_deltas() {
        let labels = Pairs::from_flat(&["trace_id", "n"]);
        let e = Exemplar_ {
            labels: &labels,
            value: 3.0,
            timestamp: 10.0,
        };
        let exemplars = [Some(e)];
        let point = HistogramPoint {
            bounds: &[],
            counts: &[12],
            count: 12,
            sum: 20.0,
            exemplars: &exemplars,
            native: Some(Native {
                schema: 1,
                zero_threshold: 1e-9,
                zero_count: 1,
                // Spans [-2, -1], [1], [4, 5, 6].
                positive: &[(-2, 3), (-1, 1), (1, 1), (4, 2), (5, 2), (6, 1)],
                negative: &[(0, 1), (3, 1)],
            }),
        };
        let mut out = Out::whole(0);
        let mut proto = Protobuf::new(&mut out);
        proto.family(&head("n", Kind::Histogram, None));
        proto.histogram(&bare("n"), &point);
        proto.finish();
        let h = decode(&out.finish())[0].metric[0]
            .histogram
            .clone()
            .unwrap();
        let spans = |s: &[BucketSpan]| -> Vec<(i32, u32)> {
            s.iter()
                .map(|s| (s.offset.unwrap(), s.length.unwrap()))
                .collect()
        };
        assert_eq!(h.schema, Some(1));
        assert_eq!((h.zero_threshold, h.zero_count), (Some(1e-9), Some(1)));
        assert_eq!(spans(&h.positive_span), [(-2, 2), (1, 1), (2, 3)]);
        assert_eq!(h.positive_delta, [3, -2, 0, 1, 0, -1]);
        assert_eq!(spans(&h.negative_span), [(0, 1), (2, 1)]);
        assert_eq!(h.negative_delta, [1, 0]);
        // No classic bounds: no classic buckets; the exemplar goes to the histogram.
        assert!(h.bucket.is_empty());
        assert_eq!(h.exemplars.len(), 1);
        assert_eq!(
            h.exemplars[0].timestamp,
            Some(Timestamp {
                seconds: 10,
                nanos: 0
            })
        );
        // The counts read back from spans and deltas.
        let mut index = 0;
        let mut count = 0;
        let mut read = Vec::new();
        let mut deltas = h.positive_delta.iter();
        for (i, span) in h.positive_span.iter().enumerate() {
            index += span.offset.unwrap();
            if i == 0 {
                index -= 1;
            }
            for _ in 0..span.length.unwrap() {
                index += 1;
                count += deltas.next().unwrap();
                read.push((index, count as u64));
            }
        }
        assert_eq!(read, native_positive(&point));
    }

    fn native_positive(point: &HistogramPoint<'_>) -> Vec<(i32, u64)> {
        point.native.unwrap().positive.to_vec()
    }

    #[test]
    fn an_empty_native_histogram_has_a_no_op_span_and_classic_buckets_beside() {
        let point = HistogramPoint {
            bounds: &[1.0],
            counts: &[0, 0],
            count: 0,
            sum: 0.0,
            exemplars: &[],
            native: Some(Native {
                schema: 3,
                zero_threshold: 0.0,
                zero_count: 0,
                positive: &[],
                negative: &[],
            }),
        };
        let mut out = Out::whole(0);
        let mut proto = Protobuf::new(&mut out);
        proto.family(&head("e", Kind::Histogram, None));
        proto.histogram(&bare("e"), &point);
        proto.finish();
        let h = decode(&out.finish())[0].metric[0]
            .histogram
            .clone()
            .unwrap();
        assert_eq!(
            h.positive_span,
            [BucketSpan {
                offset: Some(0),
                length: Some(0)
            }]
        );
        assert!(h.positive_delta.is_empty());
        assert_eq!(h.schema, Some(3));
        assert_eq!(h.bucket.len(), 2);
        // With a zero threshold, the no-op span is not needed.
        let with_threshold = HistogramPoint {
            native: Some(Native {
                zero_threshold: 1e-9,
                ..point.native.unwrap()
            }),
            ..point
        };
        let mut out = Out::whole(0);
        let mut proto = Protobuf::new(&mut out);
        proto.family(&head("e", Kind::Histogram, None));
        proto.histogram(&bare("e"), &with_threshold);
        proto.finish();
        let h = decode(&out.finish())[0].metric[0]
            .histogram
            .clone()
            .unwrap();
        assert!(h.positive_span.is_empty());
    }
}
