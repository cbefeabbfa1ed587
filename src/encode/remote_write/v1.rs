//! Prometheus Remote-Write 1.0: `prometheus.WriteRequest`s, for receivers that do not
//! take 2.0 (VictoriaMetrics' `/api/v1/write`, Prometheus 2.x, most proxies).
//!
//! The series are 2.0's, without what 1.0 cannot carry: native histograms and start
//! timestamps. Label pairs are written straight from the borrowed text; metadata (type,
//! HELP, unit) goes once per family and request, in the request's `metadata` field, as
//! Prometheus sends it.

use prost::Message;

use super::{each_label, exemplar_labels, metric_type, sample_name, unit, value};
use crate::encode::batch::{Cut, Marks, Sent};
use crate::encode::histogram::{write_canonical, Les};
use crate::encode::{
    wire, Encoder, Exemplar as Exemplar_, FamilyHead, HistogramPoint, Sample, Window,
};
use crate::store::kind::Kind;

/// `prometheus.WriteRequest` (for reading one back: the encoder streams it).
#[cfg_attr(not(test), allow(dead_code))] // read back in tests
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub(crate) timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`, without native histograms (field 4, never written).
#[cfg_attr(not(test), allow(dead_code))] // read back in tests
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub(crate) labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) samples: Vec<Sample1>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) exemplars: Vec<Exemplar>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Label {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, Message)]
pub(crate) struct Sample1 {
    #[prost(double, tag = "1")]
    pub(crate) value: f64,
    #[prost(int64, tag = "2")]
    pub(crate) timestamp: i64,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub(crate) labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub(crate) value: f64,
    #[prost(int64, tag = "3")]
    pub(crate) timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct MetricMetadata {
    #[prost(int32, tag = "1")]
    pub(crate) r#type: i32,
    #[prost(string, tag = "2")]
    pub(crate) metric_family_name: String,
    #[prost(string, tag = "4")]
    pub(crate) help: String,
    #[prost(string, tag = "5")]
    pub(crate) unit: String,
}

/// Writes 1.0 requests; see the module documentation.
pub(crate) struct RemoteWriteV1<'a> {
    out: &'a mut Vec<u8>,
    identity: &'a [(String, String)],
    now_ms: i64,
    window: Window,
    cut: Cut<'a>,
    /// Whether series are written as ended (stale markers).
    stale: bool,
    /// The metadata of the families in the current request, written after its series.
    metadata: Vec<u8>,
    /// The current family's metadata, encoded; and whether the request has it.
    family: Vec<u8>,
    family_written: bool,
    name: String,
    /// The current sample's labels, encoded: before `__name__`, before `le`, after.
    parts: [Vec<u8>; 3],
    les: Les,
    /// One series being encoded.
    scratch: Vec<u8>,
    /// What the current request holds.
    pub(crate) sent: Sent,
}

impl<'a> RemoteWriteV1<'a> {
    /// One sample of a counter series (`name_total`), whole or fractional.
    fn counter_value(&mut self, sample: &Sample<'_>, value: f64, exemplar: Option<&Exemplar_<'_>>) {
        if self.cut.closed() {
            return;
        }
        self.take(sample);
        let mut name = std::mem::take(&mut self.name);
        self.series(
            sample_name(sample.name, "_total", &mut name),
            None,
            value,
            exemplar,
        );
        self.name = name;
        self.check();
    }

    /// An encoder writing requests into `out` (emptied), adding `identity`'s labels,
    /// stamping samples `now_ms`, carrying the exemplars of `window`; each request goes to
    /// `cut`.
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        identity: &'a [(String, String)],
        now_ms: i64,
        window: Window,
        cut: Cut<'a>,
    ) -> Self {
        out.clear();
        Self {
            out,
            identity,
            now_ms,
            window,
            cut,
            stale: false,
            metadata: Vec::new(),
            family: Vec::new(),
            family_written: false,
            name: String::new(),
            parts: Default::default(),
            les: Les::default(),
            scratch: Vec::new(),
            sent: Sent::default(),
        }
    }

    /// Takes a sample's labels (its own, global, the pusher's): sorted once, encoded once
    /// into the parts around `__name__` and `le`, for each of its series.
    fn take(&mut self, sample: &Sample<'_>) {
        let mut labels: Vec<(&str, &str)> = Vec::new();
        each_label(sample.labels, self.identity, |k, v| labels.push((k, v)));
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.parts.iter_mut().for_each(Vec::clear);
        for (k, v) in labels {
            let part = match k {
                k if k < "__name__" => 0,
                k if k < "le" => 1,
                _ => 2,
            };
            wire::pair(1, k, v, &mut self.parts[part]);
        }
    }

    /// Writes one series of the taken sample: named `name`, with `le` if given, one sample,
    /// maybe an exemplar.
    fn series(
        &mut self,
        name: &str,
        le: Option<&str>,
        sample_value: f64,
        exemplar: Option<&Exemplar_<'_>>,
    ) {
        if !self.family_written {
            self.metadata.extend_from_slice(&self.family);
            self.family_written = true;
        }
        let scratch = &mut self.scratch;
        scratch.clear();
        scratch.extend_from_slice(&self.parts[0]);
        wire::pair(1, "__name__", name, scratch);
        scratch.extend_from_slice(&self.parts[1]);
        if let Some(le) = le {
            wire::pair(1, "le", le, scratch);
        }
        scratch.extend_from_slice(&self.parts[2]);
        let point = Sample1 {
            value: value(sample_value, self.stale),
            timestamp: self.now_ms,
        };
        prost::encoding::message::encode(2, &point, scratch);
        let window = self.window;
        if let Some(exemplar) = exemplar.filter(|e| !self.stale && window.holds(e)) {
            let exemplar = Exemplar {
                labels: exemplar_labels(exemplar)
                    .into_iter()
                    .map(|(name, value)| Label {
                        name: name.to_owned(),
                        value: value.to_owned(),
                    })
                    .collect(),
                value: exemplar.value,
                timestamp: exemplar.ms_or(self.now_ms),
            };
            prost::encoding::message::encode(3, &exemplar, scratch);
            self.sent.exemplars += 1;
        }
        wire::head(1, scratch.len(), self.out);
        self.out.extend_from_slice(scratch);
        self.sent.samples += 1;
    }

    /// Ends the request (the metadata of its families after its series) and hands it on,
    /// if it holds anything.
    fn flush(&mut self) {
        if self.sent == Sent::default() {
            return;
        }
        self.out.extend_from_slice(&self.metadata);
        self.cut.send(self.out, self.sent);
        self.out.clear();
        self.metadata.clear();
        self.family_written = false;
        self.sent = Sent::default();
    }

    /// After a whole series: cuts the request if it is full.
    fn check(&mut self) {
        if self
            .cut
            .full(&self.sent, self.out.len() + self.metadata.len())
        {
            self.flush();
        }
    }
}

impl Encoder for RemoteWriteV1<'_> {
    fn family(&mut self, head: &FamilyHead<'_>) {
        // Named as the text format's TYPE line names it.
        let suffix = if head.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        let metadata = MetricMetadata {
            r#type: metric_type(head.kind),
            metric_family_name: format!("{}{suffix}", head.name),
            help: head.help.unwrap_or_default().to_owned(),
            unit: unit(head.unit).unwrap_or_default().to_owned(),
        };
        self.family.clear();
        prost::encoding::message::encode(3, &metadata, &mut self.family);
        self.family_written = false;
    }

    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar: Option<&Exemplar_<'_>>) {
        self.counter_value(sample, value as f64, exemplar);
    }

    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        self.counter_value(sample, value, None);
    }

    fn gauge(&mut self, sample: &Sample<'_>, value: f64) {
        if self.cut.closed() {
            return;
        }
        self.take(sample);
        self.series(sample.name, None, value, None);
        self.check();
    }

    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        if self.cut.closed() {
            return;
        }
        self.take(sample);
        // Rendered once per family, and the names once per series, taken out while the
        // series borrow the encoder.
        let (mut les, mut name) = (
            std::mem::take(&mut self.les),
            std::mem::take(&mut self.name),
        );
        let written = les.of(point.bounds, write_canonical);
        let bucket = sample_name(sample.name, "_bucket", &mut name);
        for ((i, _, cumulative), le) in point.cumulative().zip(written) {
            let exemplar = point.exemplars.get(i).and_then(Option::as_ref);
            self.series(bucket, Some(le), cumulative as f64, exemplar);
        }
        let sum = sample_name(sample.name, "_sum", &mut name);
        self.series(sum, None, point.sum, None);
        let count = sample_name(sample.name, "_count", &mut name);
        self.series(count, None, point.count as f64, None);
        (self.les, self.name) = (les, name);
        self.check();
    }

    fn finish(&mut self) {
        self.flush();
    }

    fn wants_exemplars(&self) -> bool {
        !self.stale
    }
}

impl Marks for RemoteWriteV1<'_> {
    fn stale_from(&mut self, stamp_ms: i64) {
        self.stale = true;
        self.now_ms = stamp_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::batch::Limits;
    use crate::encode::Labels;

    #[test]
    fn series_carry_sorted_labels_and_families_their_metadata() {
        let mut out = Vec::new();
        let mut bodies = Vec::new();
        let mut sink = |body: &[u8], _: Sent| {
            bodies.push(body.to_vec());
            true
        };
        let identity = [("job".to_owned(), "api".to_owned())];
        let cut = Cut::new(Limits::NONE, &mut sink);
        let mut rw = RemoteWriteV1::new(&mut out, &identity, 42, Window::ALL, cut);
        rw.family(&FamilyHead {
            name: "size",
            kind: Kind::Histogram,
            help: Some("Sizes."),
            unit: Some(metrics::Unit::Bytes),
        });
        let pairs = [("path", "/")];
        let sample = Sample {
            name: "size",
            labels: Labels::fixed(&pairs, &[]),
            start_ms: None,
        };
        let point = HistogramPoint {
            bounds: &[1.0],
            counts: &[2, 1],
            count: 3,
            sum: 2.5,
            exemplars: &[],
            native: None,
        };
        rw.histogram(&sample, &point);
        assert_eq!(rw.sent.samples, 4);
        rw.finish();
        assert_eq!(bodies.len(), 1);
        let request = WriteRequest::decode(bodies[0].as_slice()).expect("valid");
        assert_eq!(request.timeseries.len(), 4);
        let first = &request.timeseries[0];
        let keys: Vec<&str> = first.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(keys, ["__name__", "job", "le", "path"]);
        assert_eq!(first.labels[2].value, "1.0");
        assert_eq!(first.samples[0].timestamp, 42);
        assert_eq!(request.timeseries[1].samples[0].value, 3.0, "cumulative");
        assert_eq!(request.metadata[0].metric_family_name, "size");
        assert_eq!(request.metadata[0].r#type, 3);
        assert_eq!(request.metadata[0].unit, "bytes");
    }

    #[test]
    fn each_request_carries_the_metadata_of_its_families_and_stale_markers_end_series() {
        let mut out = Vec::new();
        let mut bodies = Vec::new();
        let mut sink = |body: &[u8], sent: Sent| {
            bodies.push((body.to_vec(), sent));
            true
        };
        let limits = Limits {
            samples: 2,
            bytes: usize::MAX,
        };
        let cut = Cut::new(limits, &mut sink);
        let mut rw = RemoteWriteV1::new(&mut out, &[], 7, Window::ALL, cut);
        rw.family(&FamilyHead {
            name: "jobs",
            kind: Kind::Counter,
            help: None,
            unit: None,
        });
        for (i, kind) in ["a", "b", "c"].into_iter().enumerate() {
            let pairs = [("kind", kind)];
            let sample = Sample {
                name: "jobs",
                labels: Labels::fixed(&pairs, &[]),
                start_ms: None,
            };
            if i == 2 {
                rw.stale_from(8);
            }
            rw.counter(&sample, 1, None);
        }
        rw.finish();
        assert_eq!(bodies.len(), 2, "cut after two samples");
        for (body, sent) in &bodies {
            let request = WriteRequest::decode(body.as_slice()).expect("valid");
            assert_eq!(request.metadata.len(), 1, "each request has its metadata");
            assert_eq!(request.timeseries.len() as u64, sent.samples);
        }
        let last = WriteRequest::decode(bodies[1].0.as_slice()).expect("valid");
        let marker = last.timeseries[0].samples[0];
        assert_eq!(
            marker.value.to_bits(),
            crate::encode::remote_write::STALE_NAN
        );
        assert_eq!(marker.timestamp, 8);
    }
}
