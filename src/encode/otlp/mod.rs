//! OTLP/HTTP protobuf: `ExportMetricsServiceRequest`s (opentelemetry-proto,
//! `collector/metrics/v1`), cumulative, as an OpenTelemetry SDK pushes them (feature
//! `otlp`); a push is cut into requests bounded by data points and bytes
//! ([`batch`](super::batch)), each a whole request (resource, scope, metrics).
//!
//! The mapping follows OpenTelemetry's Prometheus compatibility specification, read from
//! Prometheus to OTLP:
//! * a counter is a monotonic cumulative `Sum`, named without `_total` (a receiver that
//!   names the Prometheus way adds it back); a gauge is a `Gauge`;
//! * a classic histogram is an explicit-bucket `Histogram` (bucket counts per bucket, not
//!   cumulative, `+Inf` last); a histogram configured native is an
//!   `ExponentialHistogram`: scale = schema, and OpenTelemetry's bucket `j` covering
//!   `(base^j, base^(j+1)]` is Prometheus' bucket `j + 1`, so offsets are one less (sent
//!   as its classic buckets to a receiver that refused native histograms);
//! * a histogram's `sum` is left out when it may include negative observations;
//! * names and label keys are written as recorded (OpenTelemetry names have dots), units
//!   in `unit` (UCUM);
//! * a point starts at its series' start (created, or revived after expiry); points the
//!   store has no start for (self-metrics) start with the pipeline;
//! * an exemplar's `trace_id` and `span_id` labels, when hex of the right length, become
//!   its trace and span ids; other labels are its filtered attributes;
//! * a stale marker is a point flagged `NO_RECORDED_VALUE`, without a value.
//!
//! The messages are derived with `prost` in [`messages`]. Points are encoded one by one as
//! the walk hands them over, and each metric is framed when its family (or its request)
//! ends: no message tree of the whole store is built. Attributes are written from the
//! borrowed label text (see [`wire`]).

mod convert;
mod messages;
#[cfg(test)]
mod tests;

use prost::Message;

use super::batch::{Cut, Marks, Sent};
use super::{
    wire, Encoder, Exemplar as Exemplar_, FamilyHead, HistogramPoint, Labels, Sample, Window,
};
use crate::store::kind::Kind;
pub(crate) use convert::rejected;
use convert::{dense, exemplar, sum, ucum};
pub(crate) use messages::*;

/// The instrumentation scope every metric is reported under.
const SCOPE: &str = "porter-metrics";

/// The current family: its metric fields.
struct Current {
    name: String,
    help: String,
    unit: &'static str,
    kind: Kind,
    /// For a histogram family: whether its points (in the current metric) are exponential.
    exponential: bool,
}

/// The room an [`Otlp`] encoder works in, kept from push to push.
#[derive(Default)]
pub(crate) struct Buffers {
    /// Every finished `Metric` of the current request, as `ScopeMetrics` field 2.
    metrics: Vec<u8>,
    /// The current family's points, as field 1 of its `Sum`, `Gauge` or histogram.
    points: Vec<u8>,
    /// One point being encoded.
    scratch: Vec<u8>,
    /// A histogram point, its buckets refilled for each series.
    histogram: HistogramDataPoint,
}

/// Writes `ExportMetricsServiceRequest`s; see the module documentation.
pub(crate) struct Otlp<'a> {
    out: &'a mut Vec<u8>,
    buffers: &'a mut Buffers,
    resource: &'a [(String, String)],
    now_ns: u64,
    /// The start of points the store has no start for.
    default_start_ns: u64,
    window: Window,
    cut: Cut<'a>,
    /// Whether points are written as ended (stale markers).
    stale: bool,
    /// Whether native histograms are written as exponential ones (not to a receiver that
    /// refused them).
    native: bool,
    current: Option<Current>,
    /// What the current request holds.
    sent: Sent,
}

impl<'a> Otlp<'a> {
    /// An encoder writing requests into `out`, with `resource`'s attributes, at `now_ns`
    /// (Unix nanoseconds); points without a start of their own start at
    /// `default_start_ns`. It carries the exemplars of `window` (an OpenTelemetry SDK
    /// exports those of the last interval), native histograms if `native`, and hands each
    /// request to `cut`.
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        buffers: &'a mut Buffers,
        resource: &'a [(String, String)],
        (now_ns, default_start_ns): (u64, u64),
        window: Window,
        native: bool,
        cut: Cut<'a>,
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
            cut,
            stale: false,
            native,
            current: None,
            sent: Sent::default(),
        }
    }

    fn start_ns(&self, sample: &Sample<'_>) -> u64 {
        sample
            .start_ms
            .map_or(self.default_start_ns, |ms| ms.saturating_mul(1_000_000))
    }

    fn flags(&self) -> u32 {
        if self.stale {
            NO_RECORDED_VALUE
        } else {
            0
        }
    }

    /// Writes the current family's points as a `Metric`, unless it has none yet.
    fn flush_metric(&mut self) {
        let Some(current) = &self.current else {
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
            name: current.name.clone(),
            description: current.help.clone(),
            unit: current.unit.to_owned(),
            data: None,
        };
        let body = header.encoded_len() + wire::message_len(tag, data);
        let metrics = &mut self.buffers.metrics;
        wire::head(2, body, metrics);
        let _ = header.encode(metrics); // a Vec never runs out of room
        wire::head(tag, data, metrics);
        metrics.extend_from_slice(&self.buffers.points);
        metrics.extend_from_slice(&rest);
        self.buffers.points.clear();
    }

    /// Ends the request (resource, scope, its metrics) and hands it on, if it holds
    /// anything.
    fn flush(&mut self) {
        self.flush_metric();
        if self.sent == Sent::default() {
            return;
        }
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
        self.cut.send(self.out, self.sent);
        self.out.clear();
        self.sent = Sent::default();
    }

    /// Adds one point: `attributes_tag` is the point message's attributes field, written
    /// from `labels`; `point` (its attributes empty) writes the rest. Cuts the request if
    /// it is full.
    fn point(&mut self, labels: Labels<'_>, attributes_tag: u32, point: &impl Message) {
        let Buffers {
            points, scratch, ..
        } = &mut *self.buffers;
        scratch.clear();
        labels.each(|key, value| wire::attribute(attributes_tag, key, value, scratch));
        let _ = point.encode(scratch);
        wire::head(1, scratch.len(), points);
        points.extend_from_slice(scratch);
        self.sent.samples += 1;
        let bytes = self.buffers.metrics.len() + self.buffers.points.len();
        if self.cut.full(&self.sent, bytes) {
            self.flush();
        }
    }

    /// The exemplars of `point` that go with this push.
    fn exemplars(&mut self, point: &HistogramPoint<'_>) -> Vec<Exemplar> {
        if self.stale {
            return Vec::new();
        }
        let exemplars: Vec<Exemplar> = point
            .exemplars
            .iter()
            .flatten()
            .filter(|e| self.window.holds(e))
            .map(|e| exemplar(e, self.now_ns))
            .collect();
        self.sent.exemplars += exemplars.len() as u64;
        exemplars
    }

    /// Adds one point of a sum (a counter), with its exemplar.
    fn sum(&mut self, sample: &Sample<'_>, value: Number, exemplar_: Option<&Exemplar_<'_>>) {
        if self.cut.closed() {
            return;
        }
        let exemplars: Vec<Exemplar> = exemplar_
            .filter(|e| !self.stale && self.window.holds(e))
            .map(|e| exemplar(e, self.now_ns))
            .into_iter()
            .collect();
        self.sent.exemplars += exemplars.len() as u64;
        let point = NumberDataPoint {
            attributes: Vec::new(),
            start_time_unix_nano: self.start_ns(sample),
            time_unix_nano: self.now_ns,
            value: (!self.stale).then_some(value),
            exemplars,
            flags: self.flags(),
        };
        self.point(sample.labels, 7, &point);
    }
}

impl Encoder for Otlp<'_> {
    fn family(&mut self, head: &FamilyHead<'_>) {
        self.flush_metric();
        self.current = Some(Current {
            name: head.name.to_owned(),
            help: head.help.unwrap_or_default().to_owned(),
            unit: ucum(head.unit),
            kind: head.kind,
            exponential: false,
        });
    }

    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar_: Option<&Exemplar_<'_>>) {
        let value = match i64::try_from(value) {
            Ok(int) => Number::AsInt(int),
            Err(_) => Number::AsDouble(value as f64),
        };
        self.sum(sample, value, exemplar_);
    }

    /// A whole value is an int, as `counter` writes it; a fraction a double.
    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        let number = match value.fract() == 0.0 && value.abs() < 9e15 {
            true => Number::AsInt(value as i64),
            false => Number::AsDouble(value),
        };
        self.sum(sample, number, None);
    }

    fn gauge(&mut self, sample: &Sample<'_>, value: f64) {
        if self.cut.closed() {
            return;
        }
        let point = NumberDataPoint {
            attributes: Vec::new(),
            start_time_unix_nano: 0,
            time_unix_nano: self.now_ns,
            value: (!self.stale).then_some(Number::AsDouble(value)),
            exemplars: Vec::new(),
            flags: self.flags(),
        };
        self.point(sample.labels, 7, &point);
    }

    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        if self.cut.closed() {
            return;
        }
        let exemplars = self.exemplars(point);
        let start = self.start_ns(sample);
        let native = point.native.filter(|_| self.native);
        if let Some(current) = &mut self.current {
            // A family is native or not as a whole (its layout), so the first point of a
            // metric decides.
            if self.buffers.points.is_empty() {
                current.exponential = native.is_some();
            }
        }
        let flags = self.flags();
        let counted = !self.stale;
        match native {
            Some(native) => {
                let data = ExponentialHistogramDataPoint {
                    attributes: Vec::new(),
                    start_time_unix_nano: start,
                    time_unix_nano: self.now_ns,
                    count: if counted { point.count } else { 0 },
                    sum: sum(point.sum, None, !native.negative.is_empty()),
                    scale: native.schema,
                    zero_count: if counted { native.zero_count } else { 0 },
                    positive: dense(native.positive).filter(|_| counted),
                    negative: dense(native.negative).filter(|_| counted),
                    exemplars,
                    zero_threshold: native.zero_threshold,
                    flags,
                };
                self.point(sample.labels, 1, &data);
            }
            None => {
                let mut data = std::mem::take(&mut self.buffers.histogram);
                data.start_time_unix_nano = start;
                data.time_unix_nano = self.now_ns;
                data.count = if counted { point.count } else { 0 };
                data.sum = sum(point.sum, point.bounds.first().copied(), false);
                data.bucket_counts.clear();
                data.bucket_counts.extend_from_slice(point.counts);
                if !counted {
                    data.bucket_counts.iter_mut().for_each(|c| *c = 0);
                }
                data.explicit_bounds.clear();
                data.explicit_bounds.extend_from_slice(point.bounds);
                data.exemplars = exemplars;
                data.flags = flags;
                self.point(sample.labels, 9, &data);
                self.buffers.histogram = data;
            }
        }
    }

    fn finish(&mut self) {
        self.flush();
    }

    fn wants_exemplars(&self) -> bool {
        !self.stale
    }

    fn wants_native(&self) -> bool {
        self.native
    }
}

impl Marks for Otlp<'_> {
    fn stale_from(&mut self, stamp_ms: i64) {
        self.stale = true;
        self.now_ns = u64::try_from(stamp_ms)
            .unwrap_or_default()
            .saturating_mul(1_000_000);
    }
}
