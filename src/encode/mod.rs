//! Exposition: one walk of the store ([`walk`]), written out by an [`Encoder`] per format.
//!
//! Six formats: for a scrape, the Prometheus text format ([`text::prometheus`]),
//! OpenMetrics 1.0 ([`text::openmetrics`]) and delimited protobuf `MetricFamily` messages
//! ([`protobuf`]), picked by [`negotiate`] with the escaping of names ([`escape`]); for a
//! push, OTLP ([`otlp`]) and Remote-Write 2.0 and 1.0 ([`remote_write`]). [`render`] is the
//! switch from a scrape's format to its encoder.
//!
//! What every encoder shares lives once: sample names and the `_total` rule ([`names`]),
//! the bucket walk and `le` values ([`histogram`]), exemplars and their timestamps
//! ([`exemplar`]), label order ([`Labels::in_order`]), gzip ([`gzip`]), the self-metrics
//! ([`self_metrics`]), series written alike ([`alike`]).

mod alike;
#[cfg(any(feature = "otlp", feature = "remote-write"))]
pub(crate) mod batch;
pub(crate) mod escape;
pub(crate) mod exemplar;
pub(crate) mod gzip;
pub(crate) mod histogram;
pub(crate) mod names;
pub(crate) mod negotiate;
#[cfg(feature = "otlp")]
pub(crate) mod otlp;
pub(crate) mod out;
pub(crate) mod protobuf;
#[cfg(feature = "remote-write")]
pub(crate) mod remote_write;
mod self_metrics;
#[cfg(any(feature = "otlp", feature = "remote-write"))]
pub(crate) mod stale;
pub(crate) mod text;
mod walk;
pub(crate) mod wire;

pub(crate) use escape::Escaping;
pub(crate) use exemplar::Exemplar;
#[cfg(any(feature = "otlp", feature = "remote-write"))]
pub(crate) use exemplar::Window;
pub(crate) use negotiate::{negotiate, Format, Negotiated};
pub(crate) use self_metrics::{ExtraFamily, Families, Rebuilt, SelfFamilies, Tally};
pub(crate) use walk::walk;

use crate::store::family::LabelsView;
use crate::store::kind::Kind;
use crate::store::names::is_legacy_label;
use crate::store::Store;
use out::Out;
use protobuf::Protobuf;
use text::openmetrics::OpenMetrics;
use text::prometheus::Text;
use walk::Keys;

/// How one render writes: the escaping of names, and whether OpenMetrics writes
/// `_created` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) escaping: Escaping,
    pub(crate) created: bool,
}

/// A family's head: its name as written (before suffixes), kind and HELP text.
pub(crate) struct FamilyHead<'a> {
    pub(crate) name: &'a str,
    pub(crate) kind: Kind,
    pub(crate) help: Option<&'a str>,
    /// The unit the metric was described with (`describe_histogram!(name, Unit::Seconds,
    /// ...)`): each format writes it where it has a place for it.
    pub(crate) unit: Option<metrics::Unit>,
}

/// A series' own labels, as the walk hands them to an encoder.
#[derive(Clone, Copy)]
enum Own<'a> {
    /// Read from the store; keys written as recorded.
    Plain(LabelsView<'a>),
    /// Read from the store; keys as the family's table writes them.
    Store(LabelsView<'a>, &'a Keys),
    /// Keys that clashed once escaped, renamed; or a series written alike, all its labels.
    Renamed(&'a [(String, String)]),
    Fixed(&'a [(&'a str, &'a str)]),
}

/// The labels of one series: its own, then the global ones it does not have. Keys are as
/// written (escaped), values as recorded.
#[derive(Clone, Copy)]
pub(crate) struct Labels<'a> {
    own: Own<'a>,
    global: &'a [(String, String)],
    /// Every key is a legacy label name (escaped, or given so): none needs quoting.
    pub(crate) legacy_keys: bool,
}

impl<'a> Labels<'a> {
    /// Labels given as they are written.
    pub(crate) fn fixed(own: &'a [(&'a str, &'a str)], global: &'a [(String, String)]) -> Self {
        Self {
            own: Own::Fixed(own),
            global,
            legacy_keys: own.iter().all(|(k, _)| is_legacy_label(k)),
        }
    }

    /// Runs `f` on each of the series' own labels.
    fn each_own(self, f: &mut impl FnMut(&'a str, &'a str)) {
        match self.own {
            Own::Plain(view) => view.iter().for_each(|(k, v)| f(k, v)),
            Own::Store(view, keys) => {
                for (j, (_, value)) in view.iter().enumerate() {
                    f(keys.written(j), value);
                }
            }
            Own::Renamed(renamed) => renamed.iter().for_each(|(k, v)| f(k, v)),
            Own::Fixed(fixed) => fixed.iter().for_each(|(k, v)| f(k, v)),
        }
    }

    /// Runs `f` on every label, `(key, value)`: the series' own, then the global ones it
    /// does not have.
    pub(crate) fn each(self, mut f: impl FnMut(&'a str, &'a str)) {
        self.each_own(&mut f);
        for (key, value) in self.global {
            let mut mine = false;
            self.each_own(&mut |k, _| mine |= k == key);
            if !mine {
                f(key, value);
            }
        }
    }

    /// Every label, `(key, value)`, collected.
    pub(crate) fn to_vec(self) -> Vec<(&'a str, &'a str)> {
        let mut out = Vec::new();
        self.each(|k, v| out.push((k, v)));
        out
    }

    /// Runs `f` on every label in key order: the order protobuf and Remote-Write ask for.
    /// Most label sets come sorted, and are only checked; the others are sorted in a copy.
    pub(crate) fn in_order(self, mut f: impl FnMut(&'a str, &'a str)) {
        let mut previous: Option<&str> = None;
        let mut sorted = true;
        self.each(|key, _| {
            sorted &= previous.is_none_or(|p| p <= key);
            previous = Some(key);
        });
        if sorted {
            return self.each(f);
        }
        let mut pairs = self.to_vec();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        pairs.into_iter().for_each(|(k, v)| f(k, v));
    }
}

/// One series as the encoders see it.
pub(crate) struct Sample<'a> {
    /// The family's name as written (before suffixes): Remote-Write 1.0 reads it.
    #[cfg_attr(not(feature = "remote-write"), expect(dead_code))]
    pub(crate) name: &'a str,
    pub(crate) labels: Labels<'a>,
    /// When a counter or histogram series started, in ms since the Unix epoch.
    pub(crate) start_ms: Option<u64>,
}

/// The native (sparse, exponential) buckets of a histogram: bucket `i` of schema `s`
/// counts observations in `(2^((i-1)/2^s), 2^(i/2^s)]`, negative ones mirrored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Native<'a> {
    pub(crate) schema: i32,
    pub(crate) zero_threshold: f64,
    /// Observations with `|v| <= zero_threshold`.
    pub(crate) zero_count: u64,
    /// `(index, count)`, ascending index, no zero count.
    pub(crate) positive: &'a [(i32, u64)],
    pub(crate) negative: &'a [(i32, u64)],
}

/// One histogram series as the encoders see it: a snapshot of one moment.
#[derive(Clone, Copy)]
pub(crate) struct HistogramPoint<'a> {
    /// Classic bucket bounds, without `+Inf`.
    pub(crate) bounds: &'a [f64],
    /// Per classic bucket, not cumulative; the last is `+Inf`'s own.
    pub(crate) counts: &'a [u64],
    /// Every observation: the classic counts' total.
    pub(crate) count: u64,
    pub(crate) sum: f64,
    /// The most recent exemplar of each classic bucket (as long as `counts`), or empty.
    pub(crate) exemplars: &'a [Option<Exemplar<'a>>],
    /// The native buckets of a histogram configured native, beside the classic ones.
    pub(crate) native: Option<Native<'a>>,
}

/// Writes one format; [`walk`] calls it in exposition order.
pub(crate) trait Encoder {
    /// A new family; its series follow.
    fn family(&mut self, head: &FamilyHead<'_>);
    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar: Option<&Exemplar<'_>>);
    /// A counter read as a float (process CPU seconds, a runtime's busy seconds): an extra
    /// family's. Provided: the whole part, for a format that has integer counters only.
    fn counter_f64(&mut self, sample: &Sample<'_>, value: f64) {
        self.counter(sample, value as u64, None);
    }
    fn gauge(&mut self, sample: &Sample<'_>, value: f64);
    fn histogram(&mut self, sample: &Sample<'_>, point: &HistogramPoint<'_>);
    /// After the last family.
    fn finish(&mut self) {}
    /// Whether the format carries exemplars (the walk reads them only then).
    fn wants_exemplars(&self) -> bool {
        false
    }
    /// Whether the format carries native buckets (the walk copies them only then).
    fn wants_native(&self) -> bool {
        false
    }
}

/// Renders what `store` holds, with the families of `extra`, in `format` into `out`: the
/// switch from a scrape's format to its encoder.
pub(crate) fn render(
    store: &Store,
    extra: &dyn SelfFamilies,
    options: Options,
    tally: &Tally,
    format: Format,
    out: &mut Out<'_>,
) {
    match format {
        Format::Text => walk(store, extra, options, tally, &mut Text::new(out)),
        Format::OpenMetrics => walk(
            store,
            extra,
            options,
            tally,
            &mut OpenMetrics::new(out, options.created),
        ),
        Format::Protobuf => walk(store, extra, options, tally, &mut Protobuf::new(out)),
    }
}
