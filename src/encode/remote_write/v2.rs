//! Remote-Write 2.0: `io.prometheus.write.v2.Request`s.
//!
//! A 2.0 request interns every string once in its symbol table and refers to it by index:
//! that is what makes it the compact one. Each request has a table of its own, so a family
//! cut across two requests is interned again in the second. Each series carries its
//! metadata (type, HELP, unit) and start timestamp. A histogram configured native is sent
//! twice: its classic series, and one native histogram under its own name (only the
//! classic ones to a receiver that refused native histograms). Exemplars ride on the
//! series they were recorded with: a counter's, a classic bucket's, a native histogram's.
//!
//! Start timestamps: Prometheus 3.0 to 3.7 read `TimeSeries.created_timestamp` (field 6);
//! 3.8 and later read `Sample.start_timestamp` and `Histogram.start_timestamp` (and
//! reserve 6). Both are written: each side skips the field it does not know.
//!
//! Series are encoded one at a time into a reused message and appended to the request, the
//! symbol table after them (protobuf reads repeated fields in any order): no message tree
//! of the whole store is built.

use super::{
    each_label, exemplar_labels, metric_type, sample_name, unit, value, varint, Exemplar,
    Histogram, Metadata, Sample2, Symbols, TimeSeries, STALE_NAN,
};
use crate::encode::batch::{Cut, Marks, Sent};
use crate::encode::{
    protobuf, wire, Encoder, Exemplar as Exemplar_, FamilyHead, HistogramPoint, Sample, Window,
};
use crate::store::kind::Kind;

/// The 2.0 request's content type.
pub(crate) const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// The suffixes of a family's series, in [`RemoteWriteV2::names`].
const SUFFIXES: [&str; 5] = ["", "_total", "_bucket", "_sum", "_count"];
const BASE: usize = 0;
const TOTAL: usize = 1;
const BUCKET: usize = 2;
const SUM: usize = 3;
const COUNT: usize = 4;

/// The current family, kept to be interned again in each request.
#[derive(Default)]
struct Head {
    name: String,
    kind: Option<Kind>,
    help: Option<String>,
    unit: Option<&'static str>,
}

/// Writes 2.0 requests; see the module documentation.
pub(crate) struct RemoteWriteV2<'a> {
    out: &'a mut Vec<u8>,
    symbols: &'a mut Symbols,
    identity: &'a [(String, String)],
    now_ms: i64,
    window: Window,
    cut: Cut<'a>,
    /// Whether series are written as ended (stale markers).
    stale: bool,
    /// Whether native histograms are written (not to a receiver that refused them).
    native: bool,
    head: Head,
    /// The current family's metadata, in the current request's symbols.
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
    /// What the current request holds.
    pub(crate) sent: Sent,
}

impl<'a> RemoteWriteV2<'a> {
    /// One sample of a counter series, whole or fractional.
    fn counter_value(&mut self, sample: &Sample<'_>, value: f64, exemplar: Option<&Exemplar_<'_>>) {
        if self.cut.closed() {
            return;
        }
        self.take(sample);
        self.begin(TOTAL, None, sample.start_ms);
        self.sample(value, sample.start_ms);
        if let Some(exemplar) = exemplar {
            self.exemplar(exemplar);
        }
        self.end();
        self.check();
    }

    /// An encoder writing requests into `out` (emptied), with `symbols`, adding
    /// `identity`'s labels, stamping samples `now_ms`, carrying the exemplars of `window`
    /// (and native histograms if `native`); each request goes to `cut`.
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        symbols: &'a mut Symbols,
        identity: &'a [(String, String)],
        now_ms: i64,
        window: Window,
        native: bool,
        cut: Cut<'a>,
    ) -> Self {
        out.clear();
        let mut encoder = Self {
            out,
            symbols,
            identity,
            now_ms,
            window,
            cut,
            stale: false,
            native,
            head: Head::default(),
            metadata: Metadata::default(),
            names: [0; 5],
            les: Vec::new(),
            bounds: Vec::new(),
            keys: [0; 2],
            taken: Vec::new(),
            labels: Vec::new(),
            at: [0; 2],
            order: Vec::new(),
            order_keys: Vec::new(),
            series: TimeSeries::default(),
            scratch: Vec::new(),
            sent: Sent::default(),
        };
        encoder.begin_request();
        encoder
    }

    /// Starts a request: a new symbol table, the current family's strings interned in it.
    fn begin_request(&mut self) {
        self.symbols.clear();
        self.keys = [self.symbols.intern("__name__"), self.symbols.intern("le")];
        self.order.clear();
        self.order_keys.clear();
        self.intern_head();
    }

    /// Interns the current family's strings in the current request: its metadata, its
    /// series names; its `le` values when first needed.
    fn intern_head(&mut self) {
        self.les.clear();
        self.bounds.clear();
        let Self {
            head,
            symbols,
            metadata,
            names,
            ..
        } = self;
        let Some(kind) = head.kind else { return };
        *metadata = Metadata {
            r#type: metric_type(kind),
            help_ref: head.help.as_deref().map_or(0, |h| symbols.intern(h)),
            unit_ref: head.unit.map_or(0, |u| symbols.intern(u)),
        };
        let mut name = String::new();
        for (at, suffix) in SUFFIXES.iter().enumerate() {
            names[at] = symbols.intern(sample_name(&head.name, suffix, &mut name));
        }
    }

    /// Ends the request (its symbol table after its series) and hands it on, if it holds
    /// anything.
    fn flush(&mut self) {
        if self.sent == Sent::default() {
            return;
        }
        self.symbols.write(self.out);
        self.cut.send(self.out, self.sent);
        self.out.clear();
        self.sent = Sent::default();
        self.begin_request();
    }

    /// After a whole series: cuts the request if it is full.
    fn check(&mut self) {
        if self
            .cut
            .full(&self.sent, self.out.len() + self.symbols.size())
        {
            self.flush();
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
        let created = self.start(start_ms);
        let series = &mut self.series;
        series.samples.clear();
        series.histograms.clear();
        series.exemplars.clear();
        series.metadata = Some(self.metadata);
        series.created_timestamp = created;
    }

    /// The start timestamp written: none on a stale marker.
    fn start(&self, start_ms: Option<u64>) -> i64 {
        match (self.stale, start_ms) {
            (false, Some(ms)) => ms as i64,
            _ => 0,
        }
    }

    fn sample(&mut self, sample: f64, start_ms: Option<u64>) {
        self.series.samples.push(Sample2 {
            value: value(sample, self.stale),
            timestamp: self.now_ms,
            start_timestamp: self.start(start_ms),
        });
        self.sent.samples += 1;
    }

    fn exemplar(&mut self, exemplar: &Exemplar_<'_>) {
        if self.stale || !self.window.holds(exemplar) {
            return;
        }
        let mut labels_refs = Vec::new();
        for (k, v) in exemplar_labels(exemplar) {
            labels_refs.extend([self.symbols.intern(k), self.symbols.intern(v)]);
        }
        self.series.exemplars.push(Exemplar {
            labels_refs,
            value: exemplar.value,
            timestamp: exemplar.ms_or(self.now_ms),
        });
        self.sent.exemplars += 1;
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
        wire::head(1, refs, body);
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
            wire::head(2, size, body);
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
        wire::head(5, body.len(), self.out);
        self.out.extend_from_slice(body);
    }

    /// The `le` values of `bounds` (and `+Inf`), interned once per family and request.
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
            crate::encode::histogram::write_canonical(&mut le, bound);
            self.les.push(self.symbols.intern(&le));
        }
    }

    /// The native histogram of `point`, or its stale marker.
    fn native(&self, point: &HistogramPoint<'_>, start: Option<u64>) -> Option<Histogram> {
        let native = point.native.filter(|_| self.native)?;
        let mut histogram = Histogram {
            schema: native.schema,
            zero_threshold: native.zero_threshold,
            timestamp: self.now_ms,
            start_timestamp: self.start(start),
            ..Histogram::default()
        };
        if self.stale {
            histogram.sum = f64::from_bits(STALE_NAN);
            return Some(histogram);
        }
        histogram.count_int = point.count;
        histogram.sum = point.sum;
        histogram.zero_count_int = native.zero_count;
        protobuf::spans_and_deltas(
            native.positive,
            &mut histogram.positive_spans,
            &mut histogram.positive_deltas,
        );
        protobuf::spans_and_deltas(
            native.negative,
            &mut histogram.negative_spans,
            &mut histogram.negative_deltas,
        );
        Some(histogram)
    }
}

impl Encoder for RemoteWriteV2<'_> {
    fn family(&mut self, head: &FamilyHead<'_>) {
        let own = &mut self.head;
        own.name.clear();
        own.name.push_str(head.name);
        own.kind = Some(head.kind);
        own.help = head.help.map(str::to_owned);
        own.unit = unit(head.unit);
        self.intern_head();
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
        self.begin(BASE, None, None);
        self.sample(value, None);
        self.end();
        self.check();
    }

    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>) {
        if self.cut.closed() {
            return;
        }
        let start = sample.start_ms;
        let native = self.native(point, start);
        self.take(sample);
        // Classic series, unless the histogram is native only and sent so.
        if native.is_none() || point.has_classic() {
            self.les(point.bounds);
            for (i, _, cumulative) in point.cumulative() {
                let le = self.les.get(i).copied();
                self.begin(BUCKET, le, start);
                self.sample(cumulative as f64, start);
                if let Some(Some(exemplar)) = point.exemplars.get(i).filter(|_| native.is_none()) {
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
        if let Some(histogram) = native {
            self.begin(BASE, None, start);
            self.series.histograms.push(histogram);
            self.sent.histograms += 1;
            for exemplar in point.exemplars.iter().flatten() {
                self.exemplar(exemplar);
            }
            self.end();
        }
        self.check();
    }

    fn finish(&mut self) {
        self.flush();
    }

    fn wants_exemplars(&self) -> bool {
        !self.stale
    }

    fn wants_native(&self) -> bool {
        // Stale markers too: a native series gets one of its own.
        self.native
    }
}

impl Marks for RemoteWriteV2<'_> {
    fn stale_from(&mut self, stamp_ms: i64) {
        self.stale = true;
        self.now_ms = stamp_ms;
    }
}
