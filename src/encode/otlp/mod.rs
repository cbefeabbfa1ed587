//! OTLP/HTTP protobuf: one `ExportMetricsServiceRequest` (opentelemetry-proto,
//! `collector/metrics/v1`) holding the whole store, cumulative, as an OpenTelemetry SDK
//! pushes it (feature `otlp`).
//!
//! The mapping follows OpenTelemetry's Prometheus compatibility specification, read from
//! Prometheus to OTLP:
//! * a counter is a monotonic cumulative `Sum`, named without `_total` (a receiver that
//!   names the Prometheus way adds it back); a gauge is a `Gauge`;
//! * a classic histogram is an explicit-bucket `Histogram` (bucket counts per bucket, not
//!   cumulative, `+Inf` last); a histogram configured native is an
//!   `ExponentialHistogram`: scale = schema, and OpenTelemetry's bucket `j` covering
//!   `(base^j, base^(j+1)]` is Prometheus' bucket `j + 1`, so offsets are one less;
//! * names and label keys are written as recorded (OpenTelemetry names have dots);
//! * a point starts at its series' start (created, or revived after expiry); points the
//!   store has no start for (self-metrics) start with the pipeline;
//! * an exemplar's `trace_id` and `span_id` labels, when hex of the right length, become
//!   its trace and span ids; other labels are its filtered attributes.
//!
//! The messages are derived with `prost` in [`messages`]. Points are
//! encoded one by one as the walk hands them over, and each metric is framed when its
//! family ends: no message tree of the whole store is built. Attributes are written from
//! the borrowed label text (see [`wire`]).

mod messages;

use prost::Message;

use super::{
    wire, Encoder, Exemplar as Exemplar_, FamilyHead, HistogramPoint, Labels, Sample, Window,
};
use crate::store::kind::Kind;
pub(crate) use messages::*;

/// The instrumentation scope every metric is reported under.
const SCOPE: &str = "porter-metrics";

/// The current family: its metric fields, and its points encoded so far.
struct Current {
    name: String,
    help: String,
    kind: Kind,
    /// For a histogram family: whether its points are exponential.
    exponential: bool,
}

/// The room an [`Otlp`] encoder works in, kept from push to push.
#[derive(Default)]
pub(crate) struct Buffers {
    /// Every finished `Metric`, as `ScopeMetrics` field 2.
    metrics: Vec<u8>,
    /// The current family's points, as field 1 of its `Sum`, `Gauge` or histogram.
    points: Vec<u8>,
    /// One point being encoded.
    scratch: Vec<u8>,
    /// A histogram point, its buckets refilled for each series.
    histogram: HistogramDataPoint,
}

/// Writes one `ExportMetricsServiceRequest`; see the module documentation.
pub(crate) struct Otlp<'a> {
    out: &'a mut Vec<u8>,
    buffers: &'a mut Buffers,
    resource: &'a [(String, String)],
    now_ns: u64,
    /// The start of points the store has no start for.
    default_start_ns: u64,
    window: Window,
    current: Option<Current>,
}

impl<'a> Otlp<'a> {
    /// An encoder writing into `out`, with `resource`'s attributes, at `now_ns` (Unix
    /// nanoseconds); points without a start of their own start at `default_start_ns`. It
    /// carries the exemplars of `window` (an OpenTelemetry SDK exports those of the last
    /// interval).
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        buffers: &'a mut Buffers,
        resource: &'a [(String, String)],
        now_ns: u64,
        default_start_ns: u64,
        window: Window,
    ) -> Self {
        buffers.metrics.clear();
        buffers.points.clear();
        Self {
            out,
            buffers,
            resource,
            now_ns,
            default_start_ns,
            window,
            current: None,
        }
    }

    fn start_ns(&self, sample: &Sample<'_>) -> u64 {
        sample
            .start_ms
            .map_or(self.default_start_ns, |ms| ms.saturating_mul(1_000_000))
    }

    /// Writes the current family as a `Metric`, unless it had no point.
    fn flush(&mut self) {
        let Some(current) = self.current.take() else {
            return;
        };
        if self.buffers.points.is_empty() {
            return;
        }
        // The data message without its points (temporality, monotonicity), then the points.
        let (tag, rest) = match current.kind {
            Kind::Counter => (
                7,
                Sum {
                    data_points: Vec::new(),
                    aggregation_temporality: CUMULATIVE,
                    is_monotonic: true,
                }
                .encode_to_vec(),
            ),
            Kind::Gauge => (5, Vec::new()),
            Kind::Histogram => {
                let rest = Histogram {
                    data_points: Vec::new(),
                    aggregation_temporality: CUMULATIVE,
                }
                .encode_to_vec();
                (if current.exponential { 10 } else { 9 }, rest)
            }
        };
        let data = self.buffers.points.len() + rest.len();
        let header = Metric {
            name: current.name,
            description: current.help,
            unit: String::new(),
            data: None,
        };
        let body = header.encoded_len() + wire::message_len(tag, data);
        wire::head(2, body, &mut self.buffers.metrics);
        let _ = header.encode(&mut self.buffers.metrics); // a Vec never runs out of room
        wire::head(tag, data, &mut self.buffers.metrics);
        self.buffers.metrics.extend_from_slice(&self.buffers.points);
        self.buffers.metrics.extend_from_slice(&rest);
        self.buffers.points.clear();
    }

    /// Adds one point: `attributes_tag` is the point message's attributes field, written
    /// from `labels`; `point` (its attributes empty) writes the rest.
    fn point(&mut self, labels: Labels<'_>, attributes_tag: u32, point: &impl Message) {
        let Buffers {
            points, scratch, ..
        } = &mut *self.buffers;
        scratch.clear();
        labels.each(|key, value| wire::attribute(attributes_tag, key, value, scratch));
        let _ = point.encode(scratch);
        wire::head(1, scratch.len(), points);
        points.extend_from_slice(scratch);
    }

    /// Adds one point of a sum (a counter), with its exemplar.
    fn sum(&mut self, sample: &Sample<'_>, value: Number, exemplar_: Option<&Exemplar_<'_>>) {
        let point = NumberDataPoint {
            attributes: Vec::new(),
            start_time_unix_nano: self.start_ns(sample),
            time_unix_nano: self.now_ns,
            value: Some(value),
            exemplars: exemplar_
                .filter(|e| self.window.holds(e))
                .map(|e| exemplar(e, self.now_ns))
                .into_iter()
                .collect(),
        };
        self.point(sample.labels, 7, &point);
    }
}

/// Bytes of a lowercase or uppercase hex id of exactly `len` bytes, not all zero (an
/// invalid id in OpenTelemetry).
fn hex_id(text: &str, len: usize) -> Option<Vec<u8>> {
    if text.len() != len * 2 || !text.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..len)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect();
    bytes.filter(|b| b.iter().any(|x| *x != 0))
}

fn exemplar(exemplar: &Exemplar_<'_>, now_ns: u64) -> Exemplar {
    let mut out = Exemplar {
        filtered_attributes: Vec::new(),
        time_unix_nano: if exemplar.timestamp.is_finite() && exemplar.timestamp > 0.0 {
            (exemplar.timestamp * 1e9) as u64
        } else {
            now_ns
        },
        value: Some(ExemplarNumber::AsDouble(exemplar.value)),
        span_id: Vec::new(),
        trace_id: Vec::new(),
    };
    for (key, value) in exemplar.labels.iter() {
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
fn dense(buckets: &[(i32, u64)]) -> Option<Buckets> {
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

impl Encoder for Otlp<'_> {
    fn family(&mut self, head: &FamilyHead<'_>) {
        self.flush();
        self.current = Some(Current {
            name: head.name.to_owned(),
            help: head.help.unwrap_or_default().to_owned(),
            kind: head.kind,
            exponential: false,
        });
    }

    /// A whole value is an int, as `counter` writes it; a fraction a double.
    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        let number = match value.fract() == 0.0 && value.abs() < 9e15 {
            true => Number::AsInt(value as i64),
            false => Number::AsDouble(value),
        };
        self.sum(sample, number, None);
    }

    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar_: Option<&Exemplar_<'_>>) {
        let value = match i64::try_from(value) {
            Ok(int) => Number::AsInt(int),
            Err(_) => Number::AsDouble(value as f64),
        };
        self.sum(sample, value, exemplar_);
    }

    fn gauge(&mut self, sample: &Sample<'_>, value: f64) {
        let point = NumberDataPoint {
            attributes: Vec::new(),
            start_time_unix_nano: 0,
            time_unix_nano: self.now_ns,
            value: Some(Number::AsDouble(value)),
            exemplars: Vec::new(),
        };
        self.point(sample.labels, 7, &point);
    }

    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        let exemplars: Vec<Exemplar> = point
            .exemplars
            .iter()
            .flatten()
            .filter(|e| self.window.holds(e))
            .map(|e| exemplar(e, self.now_ns))
            .collect();
        let start = self.start_ns(sample);
        let exponential = point.native.is_some();
        if let Some(current) = &mut self.current {
            // A family is native or not as a whole (its layout), so its first point decides.
            if self.buffers.points.is_empty() {
                current.exponential = exponential;
            }
        }
        match point.native {
            Some(native) => {
                let data = ExponentialHistogramDataPoint {
                    attributes: Vec::new(),
                    start_time_unix_nano: start,
                    time_unix_nano: self.now_ns,
                    count: point.count,
                    sum: Some(point.sum),
                    scale: native.schema,
                    zero_count: native.zero_count,
                    positive: dense(native.positive),
                    negative: dense(native.negative),
                    exemplars,
                    zero_threshold: native.zero_threshold,
                };
                self.point(sample.labels, 1, &data);
            }
            None => {
                let mut data = std::mem::take(&mut self.buffers.histogram);
                data.start_time_unix_nano = start;
                data.time_unix_nano = self.now_ns;
                data.count = point.count;
                data.sum = Some(point.sum);
                data.bucket_counts.clear();
                data.bucket_counts.extend_from_slice(point.counts);
                data.explicit_bounds.clear();
                data.explicit_bounds.extend_from_slice(point.bounds);
                data.exemplars = exemplars;
                self.point(sample.labels, 9, &data);
                self.buffers.histogram = data;
            }
        }
    }

    fn finish(&mut self) {
        self.flush();
        let resource = Resource {
            attributes: self
                .resource
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: Some(AnyValue {
                        string_value: Some(value.clone()),
                    }),
                })
                .collect(),
        };
        let scope = InstrumentationScope {
            name: SCOPE.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let scope_body = wire::message_len(1, scope.encoded_len()) + self.buffers.metrics.len();
        let resource_body =
            wire::message_len(1, resource.encoded_len()) + wire::message_len(2, scope_body);
        let out = &mut *self.out;
        out.clear();
        out.reserve(wire::message_len(1, resource_body));
        wire::head(1, resource_body, out);
        prost::encoding::message::encode(1, &resource, out);
        wire::head(2, scope_body, out);
        prost::encoding::message::encode(1, &scope, out);
        out.extend_from_slice(&self.buffers.metrics);
        self.buffers.metrics.clear();
    }

    fn wants_exemplars(&self) -> bool {
        true
    }

    fn wants_native(&self) -> bool {
        true
    }
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
    use crate::encode::Native;
    use crate::store::Pairs;

    fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> Labels<'a> {
        Labels::fixed(pairs, &[])
    }

    fn decode(out: &[u8]) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest::decode(out).expect("a valid request")
    }

    #[test]
    fn counters_are_monotonic_cumulative_sums_named_without_total() {
        let (mut out, mut buffers) = (Vec::new(), Buffers::default());
        let resource = [("service.name".to_owned(), "api".to_owned())];
        let mut otlp = Otlp::new(
            &mut out,
            &mut buffers,
            &resource,
            2_000_000_000,
            5,
            Window::ALL,
        );
        otlp.family(&FamilyHead {
            name: "app.jobs.done",
            kind: Kind::Counter,
            help: Some("Jobs."),
            unit: None,
        });
        let pairs = [("job.kind", "export")];
        let trace = Pairs::from_flat(&["trace_id", "4bf92f3577b34da6a3ce929d0e0e4736", "x", "y"]);
        let sample = Sample {
            name: "app.jobs.done",
            labels: labels(&pairs),
            start_ms: Some(1_000),
        };
        let exemplar_ = Exemplar_ {
            labels: &trace,
            value: 1.0,
            timestamp: 1.5,
        };
        otlp.counter(&sample, 3, Some(&exemplar_));
        otlp.finish();
        let request = decode(&out);
        let rm = &request.resource_metrics[0];
        let attributes = &rm.resource.as_ref().expect("resource").attributes;
        assert_eq!(attributes[0].key, "service.name");
        let scope = &rm.scope_metrics[0];
        assert_eq!(scope.scope.as_ref().map(|s| s.name.as_str()), Some(SCOPE));
        let metric = &scope.metrics[0];
        assert_eq!(
            (metric.name.as_str(), metric.description.as_str()),
            ("app.jobs.done", "Jobs.")
        );
        let Some(Data::Sum(sum)) = &metric.data else {
            panic!("a sum: {metric:?}")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, CUMULATIVE);
        let point = &sum.data_points[0];
        assert_eq!(point.value, Some(Number::AsInt(3)));
        assert_eq!(point.start_time_unix_nano, 1_000_000_000);
        assert_eq!(point.time_unix_nano, 2_000_000_000);
        assert_eq!(point.attributes[0].key, "job.kind");
        let exemplar = &point.exemplars[0];
        assert_eq!(exemplar.trace_id.len(), 16);
        assert_eq!(exemplar.trace_id[0], 0x4b);
        assert_eq!(
            exemplar.filtered_attributes.len(),
            1,
            "x stays an attribute"
        );
        assert_eq!(exemplar.time_unix_nano, 1_500_000_000);
    }

    #[test]
    fn native_histograms_are_exponential_with_offsets_one_less() {
        let (mut out, mut buffers) = (Vec::new(), Buffers::default());
        let mut otlp = Otlp::new(&mut out, &mut buffers, &[], 10, 5, Window::ALL);
        otlp.family(&FamilyHead {
            name: "latency",
            kind: Kind::Histogram,
            help: None,
            unit: None,
        });
        let positive = [(0, 2), (2, 1)];
        let point = HistogramPoint {
            bounds: &[],
            counts: &[4],
            count: 4,
            sum: 3.0,
            exemplars: &[],
            native: Some(Native {
                schema: 3,
                zero_threshold: 1e-128,
                zero_count: 1,
                positive: &positive,
                negative: &[],
            }),
        };
        let sample = Sample {
            name: "latency",
            labels: labels(&[]),
            start_ms: None,
        };
        otlp.histogram(&sample, &point);
        otlp.finish();
        let request = decode(&out);
        let metric = &request.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(Data::ExponentialHistogram(histogram)) = &metric.data else {
            panic!("exponential: {metric:?}")
        };
        let point = &histogram.data_points[0];
        assert_eq!((point.scale, point.count, point.zero_count), (3, 4, 1));
        assert_eq!(point.start_time_unix_nano, 5, "the default start");
        let positive = point.positive.as_ref().expect("positive buckets");
        assert_eq!(positive.offset, -1);
        assert_eq!(positive.bucket_counts, [2, 0, 1]);
        assert!(point.negative.is_none());
    }

    #[test]
    fn classic_histograms_are_explicit_buckets_and_empty_families_are_left_out() {
        let (mut out, mut buffers) = (Vec::new(), Buffers::default());
        let mut otlp = Otlp::new(&mut out, &mut buffers, &[], 10, 5, Window::ALL);
        otlp.family(&FamilyHead {
            name: "empty",
            kind: Kind::Gauge,
            help: None,
            unit: None,
        });
        otlp.family(&FamilyHead {
            name: "size",
            kind: Kind::Histogram,
            help: None,
            unit: None,
        });
        let point = HistogramPoint {
            bounds: &[1.0, 2.0],
            counts: &[1, 0, 2],
            count: 3,
            sum: 9.0,
            exemplars: &[],
            native: None,
        };
        let pairs = [("k", "v")];
        let sample = Sample {
            name: "size",
            labels: labels(&pairs),
            start_ms: Some(7),
        };
        otlp.histogram(&sample, &point);
        otlp.finish();
        let request = decode(&out);
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 1, "a family without points is not a metric");
        let Some(Data::Histogram(histogram)) = &metrics[0].data else {
            panic!("explicit: {:?}", metrics[0])
        };
        let point = &histogram.data_points[0];
        assert_eq!(point.bucket_counts, [1, 0, 2]);
        assert_eq!(point.explicit_bounds, [1.0, 2.0]);
        assert_eq!((point.count, point.sum), (3, Some(9.0)));
    }

    #[test]
    fn ids_are_hex_of_the_right_length() {
        assert_eq!(hex_id("00f067aa0ba902b7", 8).map(|b| b.len()), Some(8));
        assert_eq!(hex_id("0000000000000000", 8), None, "all zero is invalid");
        assert_eq!(hex_id("abc", 8), None);
        assert_eq!(hex_id("zzf067aa0ba902b7", 8), None);
        assert_eq!(hex_id("éé", 1), None);
        assert!(rejected(&[]).is_none());
    }
}
