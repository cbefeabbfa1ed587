//! Prometheus Remote-Write 1.0: one `prometheus.WriteRequest`, for receivers that do not
//! take 2.0 (VictoriaMetrics' `/api/v1/write`, Prometheus 2.x, most proxies).
//!
//! The series are 2.0's, without what 1.0 cannot carry: native histograms and start
//! timestamps. Label pairs are written straight from the borrowed text; metadata (type,
//! HELP) goes once per family, in the request's `metadata` field, as Prometheus sends it.

use prost::Message;

use super::{each_label, metric_type, ms, sample_name};
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

/// Writes one 1.0 `WriteRequest`; see the module documentation.
pub(crate) struct RemoteWriteV1<'a> {
    out: &'a mut Vec<u8>,
    identity: &'a [(String, String)],
    now_ms: i64,
    window: Window,
    /// Every family's metadata, written after the series.
    metadata: Vec<u8>,
    name: String,
    /// One series being encoded.
    scratch: Vec<u8>,
    /// Samples written.
    pub(crate) written: u64,
}

impl<'a> RemoteWriteV1<'a> {
    /// An encoder writing into `out` (emptied), adding `identity`'s labels, stamping
    /// samples `now_ms`, carrying the exemplars of `window`.
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        identity: &'a [(String, String)],
        now_ms: i64,
        window: Window,
    ) -> Self {
        out.clear();
        Self {
            out,
            identity,
            now_ms,
            window,
            metadata: Vec::new(),
            name: String::new(),
            scratch: Vec::new(),
            written: 0,
        }
    }

    /// Writes one series: its labels sorted, one sample, maybe an exemplar.
    fn series(
        &mut self,
        sample: &Sample<'_>,
        suffix: &str,
        extra: Option<(&str, &str)>,
        value: f64,
        exemplar: Option<&Exemplar_<'_>>,
    ) {
        let name = sample_name(sample.name, suffix, &mut self.name);
        let mut labels: Vec<(&str, &str)> = vec![("__name__", name)];
        each_label(sample.labels, self.identity, |k, v| labels.push((k, v)));
        labels.extend(extra);
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let scratch = &mut self.scratch;
        scratch.clear();
        for (k, v) in &labels {
            wire::pair(1, k, v, scratch);
        }
        let sample = Sample1 {
            value,
            timestamp: self.now_ms,
        };
        prost::encoding::message::encode(2, &sample, scratch);
        if let Some(exemplar) = exemplar.filter(|e| self.window.holds(e)) {
            let exemplar = Exemplar {
                labels: exemplar
                    .labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.to_owned(),
                        value: value.to_owned(),
                    })
                    .collect(),
                value: exemplar.value,
                timestamp: if exemplar.timestamp.is_finite() {
                    ms(exemplar.timestamp)
                } else {
                    self.now_ms
                },
            };
            prost::encoding::message::encode(3, &exemplar, scratch);
        }
        wire::head(1, scratch.len(), self.out);
        self.out.extend_from_slice(scratch);
        self.written += 1;
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
            unit: String::new(),
        };
        prost::encoding::message::encode(3, &metadata, &mut self.metadata);
    }

    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar: Option<&Exemplar_<'_>>) {
        self.series(sample, "_total", None, value as f64, exemplar);
    }

    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        self.series(sample, "_total", None, value, None);
    }

    fn gauge(&mut self, sample: &Sample<'_>, value: f64) {
        self.series(sample, "", None, value, None);
    }

    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        let mut cumulative = 0u64;
        let mut le = String::new();
        let bounds = point.bounds.iter().copied().chain([f64::INFINITY]);
        for (i, (count, bound)) in point.counts.iter().zip(bounds).enumerate() {
            cumulative = cumulative.wrapping_add(*count);
            le.clear();
            crate::encode::openmetrics::write_canonical(&mut le, bound);
            let exemplar = point.exemplars.get(i).and_then(Option::as_ref);
            self.series(
                sample,
                "_bucket",
                Some(("le", &le)),
                cumulative as f64,
                exemplar,
            );
        }
        self.series(sample, "_sum", None, point.sum, None);
        self.series(sample, "_count", None, point.count as f64, None);
    }

    fn finish(&mut self) {
        self.out.extend_from_slice(&self.metadata);
    }

    fn wants_exemplars(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Labels;

    #[test]
    fn series_carry_sorted_labels_and_families_their_metadata() {
        let mut out = Vec::new();
        let identity = [("job".to_owned(), "api".to_owned())];
        let mut rw = RemoteWriteV1::new(&mut out, &identity, 42, Window::ALL);
        rw.family(&FamilyHead {
            name: "size",
            kind: Kind::Histogram,
            help: Some("Sizes."),
            unit: None,
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
        rw.finish();
        assert_eq!(rw.written, 4);
        let request = WriteRequest::decode(out.as_slice()).expect("valid");
        assert_eq!(request.timeseries.len(), 4);
        let first = &request.timeseries[0];
        let keys: Vec<&str> = first.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(keys, ["__name__", "job", "le", "path"]);
        assert_eq!(first.labels[2].value, "1.0");
        assert_eq!(first.samples[0].timestamp, 42);
        assert_eq!(request.timeseries[1].samples[0].value, 3.0, "cumulative");
        assert_eq!(request.metadata[0].metric_family_name, "size");
        assert_eq!(request.metadata[0].r#type, 3);
    }
}
