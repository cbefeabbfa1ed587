//! Prometheus Remote-Write 2.0: one `io.prometheus.write.v2.Request` holding the whole
//! store (feature `remote-write`); [`v1`] writes the 1.0 `prometheus.WriteRequest` that
//! older receivers take.
//!
//! Series are named as a scrape names them (`x_total`, `x_bucket{le}`, `x_sum`, `x_count`),
//! with the labels the pusher adds (`job`, `instance`) where a series has none of its own.
//! Every label set is sorted by name, without empty values, as the specification asks.
//!
//! A 2.0 request interns every string once in its symbol table (`symbols[0]` is the empty
//! string) and refers to it by index: that is what makes it the compact one. Each series
//! carries its metadata (type, HELP) and start timestamp. A histogram configured native is
//! sent twice: its classic series, and one native histogram under its own name. Exemplars
//! ride on the series they were recorded with: a counter's, a classic bucket's, a native
//! histogram's.
//!
//! Start timestamps: Prometheus 3.0 to 3.7 read `TimeSeries.created_timestamp` (field 6);
//! 3.8 and later read `Sample.start_timestamp` and `Histogram.start_timestamp` (and
//! reserve 6). Both are written: each side skips the field it does not know.
//!
//! Series are encoded one at a time into a reused message and appended to the request, the
//! symbol table after them (protobuf reads repeated fields in any order): no message tree
//! of the whole store is built.

mod messages;
pub(crate) mod v1;

use hashbrown::HashTable;

use super::{Encoder, Exemplar as Exemplar_, FamilyHead, HistogramPoint, Labels, Sample, Window};
use crate::store::kind::Kind;
pub(crate) use messages::*;

/// The 2.0 request's content type.
pub(crate) const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// The metric types of `Metadata.type` (2.0) and `MetricMetadata.type` (1.0), which number
/// them alike.
pub(crate) fn metric_type(kind: Kind) -> i32 {
    match kind {
        Kind::Counter => 1,
        Kind::Gauge => 2,
        Kind::Histogram => 3,
    }
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

/// Writes `value` as a varint.
fn varint(mut value: u64, buf: &mut Vec<u8>) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Milliseconds since the Unix epoch of a time in seconds.
pub(crate) fn ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// The symbol table: every string once, in one buffer, found by hash.
#[derive(Default)]
pub(crate) struct Symbols {
    text: String,
    /// Where each symbol ends in `text`.
    ends: Vec<usize>,
    index: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// The symbols of strings seen lately, by address: the store hands out the same `&str`
    /// for a label key or value each time, so most lookups skip hashing (the text is still
    /// compared).
    recent: Vec<(usize, u32)>,
}

/// Slots of [`Symbols::recent`].
const RECENT: usize = 1024;

impl Symbols {
    /// Empties the table, keeping its room; interns `""` as symbol 0.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.index.clear();
        self.recent.clear();
        self.recent.resize(RECENT, (0, 0));
        self.intern("");
    }

    /// [`intern`](Self::intern), through the cache of recent addresses.
    fn intern_at(&mut self, text: &str) -> u32 {
        let address = text.as_ptr() as usize;
        let slot = ((address >> 3) ^ text.len()) % RECENT;
        match self.recent.get(slot) {
            Some(&(seen, at)) if seen == address && self.get(at) == text => at,
            _ => {
                let at = self.intern(text);
                if let Some(recent) = self.recent.get_mut(slot) {
                    *recent = (address, at);
                }
                at
            }
        }
    }

    fn get(&self, at: u32) -> &str {
        let at = at as usize;
        let start = if at == 0 { 0 } else { self.ends[at - 1] };
        &self.text[start..self.ends[at]]
    }

    /// The reference of `text`, interning it if new.
    pub(crate) fn intern(&mut self, text: &str) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(text);
        let Self {
            text: all,
            ends,
            index,
            hasher,
            ..
        } = self;
        let symbol = |at: u32| {
            let at = at as usize;
            let start = if at == 0 { 0 } else { ends[at - 1] };
            &all[start..ends[at]]
        };
        if let Some(at) = index.find(hash, |at| symbol(*at) == text) {
            return *at;
        }
        let at = ends.len() as u32;
        all.push_str(text);
        ends.push(all.len());
        let (all, ends) = (&*all, &*ends);
        index.insert_unique(hash, at, |at| {
            let at = *at as usize;
            let start = if at == 0 { 0 } else { ends[at - 1] };
            hasher.hash_one(&all[start..ends[at]])
        });
        at
    }

    /// Writes every symbol as `Request` field 4.
    fn write(&self, out: &mut Vec<u8>) {
        for at in 0..self.ends.len() {
            super::wire::string(4, self.get(at as u32), out);
        }
    }
}

/// The suffixes of a family's series, in [`RemoteWriteV2::names`].
const SUFFIXES: [&str; 5] = ["", "_total", "_bucket", "_sum", "_count"];
const BASE: usize = 0;
const TOTAL: usize = 1;
const BUCKET: usize = 2;
const SUM: usize = 3;
const COUNT: usize = 4;

/// Writes one 2.0 `Request`; see the module documentation.
pub(crate) struct RemoteWriteV2<'a> {
    out: &'a mut Vec<u8>,
    symbols: &'a mut Symbols,
    identity: &'a [(String, String)],
    now_ms: i64,
    window: Window,
    /// The current family's metadata.
    metadata: Metadata,
    /// The current family's series names, with each of [`SUFFIXES`].
    names: [u32; 5],
    /// The `le` values of the current family's buckets (`+Inf` last), and their bounds.
    les: Vec<u32>,
    bounds: Vec<f64>,
    /// `__name__` and `le`.
    keys: [u32; 2],
    /// The current sample's labels, `(key, value)`, as taken, then sorted by key; and where
    /// `__name__` and `le` go among them.
    taken: Vec<(u32, u32)>,
    labels: Vec<(u32, u32)>,
    at: [usize; 2],
    /// The last order by key: positions in `taken`, and the keys found there.
    order: Vec<usize>,
    order_keys: Vec<u32>,
    /// One series, reused; and its encoding.
    series: TimeSeries,
    scratch: Vec<u8>,
    /// What [`Encoder`] calls wrote: samples, histograms, exemplars.
    pub(crate) written: [u64; 3],
}

impl<'a> RemoteWriteV2<'a> {
    /// An encoder writing into `out` (emptied), with `symbols` (emptied), adding
    /// `identity`'s labels, stamping samples `now_ms`, carrying the exemplars of `window`.
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        symbols: &'a mut Symbols,
        identity: &'a [(String, String)],
        now_ms: i64,
        window: Window,
    ) -> Self {
        out.clear();
        symbols.clear();
        let keys = [symbols.intern("__name__"), symbols.intern("le")];
        Self {
            out,
            symbols,
            identity,
            now_ms,
            window,
            metadata: Metadata::default(),
            names: [0; 5],
            les: Vec::new(),
            bounds: Vec::new(),
            keys,
            taken: Vec::new(),
            labels: Vec::new(),
            at: [0; 2],
            order: Vec::new(),
            order_keys: Vec::new(),
            series: TimeSeries::default(),
            scratch: Vec::new(),
            written: [0; 3],
        }
    }

    /// Takes a sample's labels: interned once, sorted by key, for each of its series.
    fn take(&mut self, sample: &Sample<'_>) {
        let Self {
            symbols,
            taken,
            labels,
            ..
        } = self;
        taken.clear();
        each_label(sample.labels, self.identity, |k, v| {
            taken.push((symbols.intern_at(k), symbols.intern_at(v)));
        });
        // The series of a family mostly have the same keys in the same order: their order
        // by key, and where `__name__` and `le` go, are worked out once.
        let same = self.order.len() == taken.len()
            && self
                .order
                .iter()
                .zip(&self.order_keys)
                .all(|(at, key)| taken.get(*at).is_some_and(|(k, _)| k == key));
        if !same {
            self.order.clear();
            self.order.extend(0..taken.len());
            self.order
                .sort_unstable_by(|a, b| symbols.get(taken[*a].0).cmp(symbols.get(taken[*b].0)));
            self.order_keys.clear();
            self.order_keys
                .extend(self.order.iter().map(|at| taken[*at].0));
            for (at, key) in self.at.iter_mut().zip(["__name__", "le"]) {
                *at = self.order_keys.partition_point(|k| symbols.get(*k) < key);
            }
        }
        labels.clear();
        labels.extend(self.order.iter().map(|at| taken[*at]));
    }

    /// Starts a series of the taken sample: named `names[name]`, with `le` if given.
    fn begin(&mut self, name: usize, le: Option<u32>, start_ms: Option<u64>) {
        let refs = &mut self.series.labels_refs;
        refs.clear();
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i == self.at[0] {
                refs.extend([self.keys[0], self.names[name]]);
            }
            if let (Some(le), true) = (le, i == self.at[1]) {
                refs.extend([self.keys[1], le]);
            }
            refs.extend([*k, *v]);
        }
        if self.at[0] == self.labels.len() {
            refs.extend([self.keys[0], self.names[name]]);
        }
        if let (Some(le), true) = (le, self.at[1] == self.labels.len()) {
            refs.extend([self.keys[1], le]);
        }
        let series = &mut self.series;
        series.samples.clear();
        series.histograms.clear();
        series.exemplars.clear();
        series.metadata = Some(self.metadata);
        series.created_timestamp = start_ms.map_or(0, |ms| ms as i64);
    }

    fn sample(&mut self, value: f64, start_ms: Option<u64>) {
        self.series.samples.push(Sample2 {
            value,
            timestamp: self.now_ms,
            start_timestamp: start_ms.map_or(0, |ms| ms as i64),
        });
        self.written[0] += 1;
    }

    fn exemplar(&mut self, exemplar: &Exemplar_<'_>) {
        if !self.window.holds(exemplar) {
            return;
        }
        let mut labels_refs = Vec::new();
        for (k, v) in exemplar.labels.iter() {
            labels_refs.extend([self.symbols.intern(k), self.symbols.intern(v)]);
        }
        let timestamp = if exemplar.timestamp.is_finite() {
            ms(exemplar.timestamp)
        } else {
            self.now_ms
        };
        self.series.exemplars.push(Exemplar {
            labels_refs,
            value: exemplar.value,
            timestamp,
        });
        self.written[2] += 1;
    }

    /// Writes the series as `Request` field 5: by hand, as the derived [`TimeSeries`]
    /// encodes it, since it is most of a push's work; native histograms and exemplars go
    /// through their derived messages.
    fn end(&mut self) {
        use prost::encoding::encoded_len_varint as len;
        // In time order (then by value), as Prometheus appends a series' exemplars.
        self.series.exemplars.sort_by(|a, b| {
            (a.timestamp, a.value)
                .partial_cmp(&(b.timestamp, b.value))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let series = &self.series;
        let body = &mut self.scratch;
        body.clear();
        let refs: usize = series.labels_refs.iter().map(|r| len(u64::from(*r))).sum();
        super::wire::head(1, refs, body);
        series
            .labels_refs
            .iter()
            .for_each(|r| varint(u64::from(*r), body));
        for sample in &series.samples {
            let fields = [(2, sample.timestamp), (3, sample.start_timestamp)];
            let size = 9 + fields
                .iter()
                .filter(|(_, v)| *v != 0)
                .map(|(_, v)| 1 + len(*v as u64))
                .sum::<usize>();
            super::wire::head(2, size, body);
            body.push(0x09); // field 1, 64-bit
            body.extend_from_slice(&sample.value.to_le_bytes());
            for (tag, value) in fields.into_iter().filter(|(_, v)| *v != 0) {
                body.push(tag << 3);
                varint(value as u64, body);
            }
        }
        for histogram in &series.histograms {
            prost::encoding::message::encode(3, histogram, body);
        }
        for exemplar in &series.exemplars {
            prost::encoding::message::encode(4, exemplar, body);
        }
        if let Some(metadata) = &series.metadata {
            prost::encoding::message::encode(5, metadata, body);
        }
        if series.created_timestamp != 0 {
            body.push(6 << 3);
            varint(series.created_timestamp as u64, body);
        }
        super::wire::head(5, body.len(), self.out);
        self.out.extend_from_slice(body);
    }

    /// The `le` values of `bounds` (and `+Inf`), interned once per family.
    fn les(&mut self, bounds: &[f64]) {
        if self.bounds == bounds && !self.les.is_empty() {
            return;
        }
        self.bounds.clear();
        self.bounds.extend_from_slice(bounds);
        self.les.clear();
        let mut le = String::new();
        for bound in bounds.iter().copied().chain([f64::INFINITY]) {
            le.clear();
            super::openmetrics::write_canonical(&mut le, bound);
            self.les.push(self.symbols.intern(&le));
        }
    }
}

impl Encoder for RemoteWriteV2<'_> {
    fn family(&mut self, head: &FamilyHead<'_>) {
        self.metadata = Metadata {
            r#type: metric_type(head.kind),
            help_ref: head.help.map_or(0, |h| self.symbols.intern(h)),
            unit_ref: 0,
        };
        let mut name = String::new();
        for (at, suffix) in SUFFIXES.iter().enumerate() {
            self.names[at] = self
                .symbols
                .intern(sample_name(head.name, suffix, &mut name));
        }
        self.les.clear();
    }

    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar: Option<&Exemplar_<'_>>) {
        self.take(sample);
        self.begin(TOTAL, None, sample.start_ms);
        self.sample(value as f64, sample.start_ms);
        if let Some(exemplar) = exemplar {
            self.exemplar(exemplar);
        }
        self.end();
    }

    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        self.take(sample);
        self.begin(TOTAL, None, sample.start_ms);
        self.sample(value, sample.start_ms);
        self.end();
    }

    fn gauge(&mut self, sample: &Sample<'_>, value: f64) {
        self.take(sample);
        self.begin(BASE, None, None);
        self.sample(value, None);
        self.end();
    }

    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        let start = sample.start_ms;
        self.take(sample);
        // Classic series, unless the histogram is native only.
        if !(point.native.is_some() && point.bounds.is_empty()) {
            self.les(point.bounds);
            let mut cumulative = 0u64;
            for (i, count) in point.counts.iter().enumerate() {
                cumulative = cumulative.wrapping_add(*count);
                let le = self.les.get(i).copied();
                self.begin(BUCKET, le, start);
                self.sample(cumulative as f64, start);
                if let Some(Some(exemplar)) =
                    point.exemplars.get(i).filter(|_| point.native.is_none())
                {
                    self.exemplar(exemplar);
                }
                self.end();
            }
            self.begin(SUM, None, start);
            self.sample(point.sum, start);
            self.end();
            self.begin(COUNT, None, start);
            self.sample(point.count as f64, start);
            self.end();
        }
        if let Some(native) = point.native {
            self.begin(BASE, None, start);
            let mut histogram = Histogram {
                count_int: point.count,
                sum: point.sum,
                schema: native.schema,
                zero_threshold: native.zero_threshold,
                zero_count_int: native.zero_count,
                timestamp: self.now_ms,
                start_timestamp: start.map_or(0, |ms| ms as i64),
                ..Histogram::default()
            };
            super::protobuf::spans_and_deltas(
                native.positive,
                &mut histogram.positive_spans,
                &mut histogram.positive_deltas,
            );
            super::protobuf::spans_and_deltas(
                native.negative,
                &mut histogram.negative_spans,
                &mut histogram.negative_deltas,
            );
            self.series.histograms.push(histogram);
            self.written[1] += 1;
            for exemplar in point.exemplars.iter().flatten() {
                self.exemplar(exemplar);
            }
            self.end();
        }
    }

    fn finish(&mut self) {
        self.symbols.write(self.out);
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
    use prost::Message;

    fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> Labels<'a> {
        Labels::fixed(pairs, &[])
    }

    /// A series read back: its labels, resolved, and its samples' values.
    type Read = (Vec<(String, String)>, Vec<f64>);

    /// The request, and each of its series read back.
    fn read(out: &[u8]) -> (Request, Vec<Read>) {
        let request = Request::decode(out).expect("a valid request");
        let symbol = |r: &u32| request.symbols[*r as usize].clone();
        let series = request
            .timeseries
            .iter()
            .map(|ts| {
                let labels = ts
                    .labels_refs
                    .chunks(2)
                    .map(|p| (symbol(&p[0]), symbol(&p[1])))
                    .collect();
                (labels, ts.samples.iter().map(|s| s.value).collect())
            })
            .collect();
        (request, series)
    }

    #[test]
    fn series_are_named_as_scraped_with_sorted_labels_and_identity() {
        let (mut out, mut symbols) = (Vec::new(), Symbols::default());
        let identity = [
            ("job".to_owned(), "api".to_owned()),
            ("instance".to_owned(), "h:1".to_owned()),
        ];
        let mut rw = RemoteWriteV2::new(&mut out, &mut symbols, &identity, 1_000, Window::ALL);
        rw.family(&FamilyHead {
            name: "app.jobs.done",
            kind: Kind::Counter,
            help: Some("Jobs."),
            unit: None,
        });
        let pairs = [("zone", "b"), ("Area", "x"), ("job", "mine"), ("empty", "")];
        let sample = Sample {
            name: "app.jobs.done",
            labels: labels(&pairs),
            start_ms: Some(500),
        };
        let trace = Pairs::from_flat(&["trace_id", "abc"]);
        let exemplar = Exemplar_ {
            labels: &trace,
            value: 1.0,
            timestamp: 0.9,
        };
        rw.counter(&sample, 7, Some(&exemplar));
        rw.finish();
        assert_eq!(rw.written, [1, 0, 1]);
        let (request, series) = read(&out);
        assert_eq!(request.symbols[0], "");
        let (labels, values) = &series[0];
        let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["Area", "__name__", "instance", "job", "zone"]);
        assert!(labels.contains(&("__name__".into(), "app.jobs.done_total".into())));
        assert!(
            labels.contains(&("job".into(), "mine".into())),
            "its own job wins"
        );
        assert_eq!(values, &[7.0]);
        let ts = &request.timeseries[0];
        assert_eq!(ts.created_timestamp, 500);
        assert_eq!(ts.samples[0].start_timestamp, 500);
        assert_eq!(ts.samples[0].timestamp, 1_000);
        let metadata = ts.metadata.expect("metadata");
        assert_eq!(metadata.r#type, 1);
        assert_eq!(request.symbols[metadata.help_ref as usize], "Jobs.");
        assert_eq!(ts.exemplars[0].timestamp, 900);
        let unique: std::collections::HashSet<&String> = request.symbols.iter().collect();
        assert_eq!(unique.len(), request.symbols.len(), "each symbol once");
    }

    #[test]
    fn a_native_histogram_is_sent_beside_its_classic_series() {
        let (mut out, mut symbols) = (Vec::new(), Symbols::default());
        let mut rw = RemoteWriteV2::new(&mut out, &mut symbols, &[], 1_000, Window::ALL);
        rw.family(&FamilyHead {
            name: "lat",
            kind: Kind::Histogram,
            help: None,
            unit: None,
        });
        let positive = [(1, 2), (3, 1)];
        let point = HistogramPoint {
            bounds: &[0.5],
            counts: &[1, 2],
            count: 3,
            sum: 4.5,
            exemplars: &[],
            native: Some(Native {
                schema: 0,
                zero_threshold: 0.0,
                zero_count: 0,
                positive: &positive,
                negative: &[],
            }),
        };
        let sample = Sample {
            name: "lat",
            labels: labels(&[]),
            start_ms: None,
        };
        rw.histogram(&sample, &point);
        rw.finish();
        assert_eq!(rw.written, [4, 1, 0]);
        let (request, series) = read(&out);
        let names: Vec<&str> = series
            .iter()
            .map(|(l, _)| {
                l.iter()
                    .find(|(k, _)| k == "__name__")
                    .map_or("", |(_, v)| v.as_str())
            })
            .collect();
        assert_eq!(
            names,
            ["lat_bucket", "lat_bucket", "lat_sum", "lat_count", "lat"]
        );
        assert_eq!(series[1].1, [3.0], "cumulative");
        assert!(series[1].0.contains(&("le".into(), "+Inf".into())));
        let native = &request.timeseries[4].histograms[0];
        assert_eq!((native.count_int, native.schema), (3, 0));
        assert_eq!(native.positive_deltas, [2, -1]);
        assert_eq!(native.positive_spans.len(), 2);
    }

    #[test]
    fn exemplars_outside_the_window_stay_home_and_the_rest_go_in_time_order() {
        let (mut out, mut symbols) = (Vec::new(), Symbols::default());
        let window = Window { from: 1.0, to: 3.0 };
        let mut rw = RemoteWriteV2::new(&mut out, &mut symbols, &[], 1_000, window);
        rw.family(&FamilyHead {
            name: "lat",
            kind: Kind::Histogram,
            help: None,
            unit: None,
        });
        let trace = Pairs::from_flat(&["trace_id", "t"]);
        let at = |timestamp| {
            Some(Exemplar_ {
                labels: &trace,
                value: 1.0,
                timestamp,
            })
        };
        // Per bucket: too old, in, too new, in (older than the one before).
        let exemplars = [at(0.5), at(2.5), at(3.0), at(1.5)];
        let point = HistogramPoint {
            bounds: &[],
            counts: &[4],
            count: 4,
            sum: 4.0,
            exemplars: &exemplars,
            native: Some(Native {
                schema: 0,
                zero_threshold: 0.0,
                zero_count: 0,
                positive: &[(1, 4)],
                negative: &[],
            }),
        };
        let sample = Sample {
            name: "lat",
            labels: labels(&[]),
            start_ms: None,
        };
        rw.histogram(&sample, &point);
        rw.finish();
        let request = Request::decode(out.as_slice()).expect("valid");
        let times: Vec<i64> = request.timeseries[0]
            .exemplars
            .iter()
            .map(|e| e.timestamp)
            .collect();
        assert_eq!(times, [1_500, 2_500]);
    }

    #[test]
    fn symbols_are_interned_once_and_cleared() {
        let mut symbols = Symbols::default();
        symbols.clear();
        let a = symbols.intern("a");
        assert_eq!(symbols.intern("a"), a);
        assert_ne!(symbols.intern("b"), a);
        assert_eq!(symbols.intern(""), 0);
        symbols.clear();
        assert_eq!(symbols.intern("b"), 1);
    }
}
