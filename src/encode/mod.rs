//! Exposition: one walk of the store, written out by an [`Encoder`] per format.
//!
//! [`walk`] visits the self-metrics, then every family in name order, then every series of
//! each family under that family's read lock, and hands each value to the encoder as it
//! goes: no snapshot maps, and nothing allocated per series. A format is one `Encoder`:
//! [`text::Text`] (the Prometheus text format 0.0.4), [`openmetrics::OpenMetrics`]
//! (OpenMetrics 1.0 text) and [`protobuf::Protobuf`] (delimited
//! `io.prometheus.client.MetricFamily` messages); [`format`] picks one for a scrape.

pub(crate) mod format;
pub(crate) mod openmetrics;
pub(crate) mod protobuf;
pub(crate) mod text;

use std::fmt::Write as _;

use crate::store::family::Family;
use crate::store::kind::Kind;
use crate::store::self_metrics::{
    DROPPED_EXEMPLARS, DROPPED_LABELS, DROPPED_SAMPLES, METRIC_NAMES, OVERFLOW_SAMPLES, SERIES,
};
use crate::store::value::{Snapshot, Value};
use crate::store::{labels, FamilyRef, Store};

/// An exposition format a scrape can ask for (see [`format::negotiate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    /// The Prometheus text format 0.0.4: the default.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Delimited protobuf `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => text::CONTENT_TYPE,
            Format::OpenMetrics => openmetrics::CONTENT_TYPE,
            Format::Protobuf => protobuf::CONTENT_TYPE,
        }
    }
}

/// The labels of one series: its own (rendered, canonical) and the global ones it does
/// not override.
#[derive(Clone, Copy)]
pub(crate) struct Labels<'a> {
    pub(crate) series: &'a str,
    /// `(key, rendered key="value")`.
    pub(crate) global: &'a [(String, String)],
}

impl<'a> Labels<'a> {
    /// The global labels to print beside the series' own (rendered `key="value"`).
    pub(crate) fn global(&self) -> impl Iterator<Item = &'a str> + 'a {
        let series = self.series;
        self.global
            .iter()
            .filter(move |(key, _)| series.is_empty() || !labels::has_key(series, key))
            .map(|(_, pair)| pair.as_str())
    }

    /// Every label, the series' own then the global ones, as `(key, value)` with the value
    /// unescaped (for formats that do not print the text form).
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&'a str, std::borrow::Cow<'a, str>)> + 'a {
        labels::parse(self.series).chain(self.global().flat_map(labels::parse))
    }
}

/// An exemplar: a label set (rendered, canonical, at most 128 characters of names and
/// values), the value it was recorded with, and when (seconds since the Unix epoch).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exemplar<'a> {
    pub(crate) labels: &'a str,
    pub(crate) value: f64,
    pub(crate) timestamp: f64,
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

/// One histogram series as the encoders see it: a consistent snapshot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HistogramPoint<'a> {
    /// Classic bucket bounds, without `+Inf`.
    pub(crate) bounds: &'a [f64],
    /// Per classic bucket, not cumulative; the last is `+Inf`'s own.
    pub(crate) counts: &'a [u64],
    /// Every observation: the classic counts' total (and the native buckets').
    pub(crate) count: u64,
    pub(crate) sum: f64,
    /// The most recent exemplar of each classic bucket (as long as `counts`), or empty.
    pub(crate) exemplars: &'a [Option<Exemplar<'a>>],
    /// The native buckets of a histogram configured native, beside the classic ones.
    pub(crate) native: Option<Native<'a>>,
}

/// The `le="..."` labels of a histogram family's buckets (`+Inf` last), rendered once per
/// family, not once per line: text encoders keep one.
#[derive(Default)]
pub(crate) struct LeLabels {
    of: Vec<f64>,
    les: Vec<String>,
}

impl LeLabels {
    /// The labels of `bounds`, each number written by `write`.
    pub(crate) fn of(&mut self, bounds: &[f64], write: fn(&mut String, f64)) -> &[String] {
        if self.of != bounds || self.les.is_empty() {
            self.of.clear();
            self.of.extend_from_slice(bounds);
            self.les.clear();
            for bound in bounds.iter().copied().chain([f64::INFINITY]) {
                let mut le = String::from("le=\"");
                write(&mut le, bound);
                le.push('"');
                self.les.push(le);
            }
        }
        &self.les
    }
}

/// Writes one format; [`walk`] calls it in exposition order.
pub(crate) trait Encoder {
    /// A new family; its series follow.
    fn family(&mut self, name: &str, kind: Kind, help: Option<&str>);
    fn counter(
        &mut self,
        name: &str,
        labels: Labels<'_>,
        value: u64,
        exemplar: Option<Exemplar<'_>>,
    );
    fn gauge(&mut self, name: &str, labels: Labels<'_>, value: f64);
    fn histogram(&mut self, name: &str, labels: Labels<'_>, point: &HistogramPoint<'_>);
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

/// A counter family kept outside the store (the listener's connection counts), printed
/// with the self-metrics.
pub(crate) struct CounterFamily {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    /// `(rendered label set, value)`.
    pub(crate) samples: Vec<(&'static str, u64)>,
}

/// HELP texts of the self-metrics.
const SELF_HELP: [(&str, &str); 6] = [
    (
        DROPPED_EXEMPLARS,
        "Exemplars porter-metrics dropped (their samples kept), by reason.",
    ),
    (
        DROPPED_SAMPLES,
        "Calls whose sample porter-metrics dropped, by reason.",
    ),
    (
        DROPPED_LABELS,
        "Labels porter-metrics removed from a call, by reason.",
    ),
    (
        OVERFLOW_SAMPLES,
        "Calls folded into a metric's otel_metric_overflow series, by metric.",
    ),
    (SERIES, "Series currently tracked by porter-metrics."),
    (
        METRIC_NAMES,
        "Metric names currently tracked by porter-metrics.",
    ),
];

/// Walks `store`, with `extra` families, into `encoder` (see the module documentation).
pub(crate) fn walk(store: &Store, extra: &[CounterFamily], encoder: &mut impl Encoder) {
    let global: Vec<(String, String)> = store
        .settings()
        .map(|s| {
            s.global
                .iter()
                .map(|(key, value)| {
                    let mut pair = String::new();
                    labels::pair(&mut pair, key, value);
                    (key.clone(), pair)
                })
                .collect()
        })
        .unwrap_or_default();
    let global = global.as_slice();
    let families = store.families();
    self_metrics(store, &families, global, encoder);
    for family in extra {
        encoder.family(family.name, Kind::Counter, Some(family.help));
        for (series, value) in &family.samples {
            encoder.counter(family.name, Labels { series, global }, *value, None);
        }
    }
    let (exemplars, native) = (encoder.wants_exemplars(), encoder.wants_native());
    let mut snapshot = Snapshot::default();
    // Exemplar label sets, copied out of their slots: one buffer per bucket, reused.
    let mut texts: Vec<String> = Vec::new();
    let mut found: Vec<Option<(f64, f64)>> = Vec::new();
    let mut counter_text = String::new();
    for family in &families {
        match family {
            FamilyRef::Counter(f) => series_of(f, Kind::Counter, encoder, |e, name, s| {
                let labels = Labels {
                    series: &s.labels,
                    global,
                };
                let exemplar = exemplars
                    .then(|| s.value.1.read(0, &mut counter_text))
                    .flatten()
                    .map(|(value, timestamp)| Exemplar {
                        labels: &counter_text,
                        value,
                        timestamp,
                    });
                e.counter(name, labels, s.get(), exemplar);
            }),
            FamilyRef::Gauge(f) => series_of(f, Kind::Gauge, encoder, |e, name, s| {
                e.gauge(
                    name,
                    Labels {
                        series: &s.labels,
                        global,
                    },
                    s.get(),
                );
            }),
            FamilyRef::Histogram(f) => {
                let Some(layout) = f.layout.get() else {
                    continue; // not bound yet: nothing is exported before a server starts
                };
                series_of(f, Kind::Histogram, encoder, |e, name, s| {
                    if !s.snapshot(&mut snapshot, native)
                        || snapshot.counts.len() != layout.bounds.len() + 1
                    {
                        return;
                    }
                    found.clear();
                    if let Some(kept) = s.value.exemplars().filter(|e| exemplars && e.any()) {
                        texts.resize_with(snapshot.counts.len(), String::new);
                        for (at, text) in texts.iter_mut().enumerate() {
                            found.push(kept.read(at, text));
                        }
                    }
                    // Allocated only for a series with exemplars, in a format that has them.
                    let bucket_exemplars: Vec<Option<Exemplar<'_>>> = found
                        .iter()
                        .zip(&texts)
                        .map(|(f, labels)| {
                            f.map(|(value, timestamp)| Exemplar {
                                labels,
                                value,
                                timestamp,
                            })
                        })
                        .collect();
                    let native = snapshot.native.zip(layout.native).map(
                        |((schema, zero_count), settings)| Native {
                            schema,
                            zero_threshold: settings.zero_threshold,
                            zero_count,
                            positive: &snapshot.positive,
                            negative: &snapshot.negative,
                        },
                    );
                    let point = HistogramPoint {
                        bounds: &layout.bounds,
                        counts: &snapshot.counts,
                        count: snapshot.counts.iter().fold(0u64, |a, c| a.wrapping_add(*c)),
                        sum: snapshot.sum,
                        exemplars: &bucket_exemplars,
                        native,
                    };
                    e.histogram(
                        name,
                        Labels {
                            series: &s.labels,
                            global,
                        },
                        &point,
                    );
                });
            }
        }
    }
    encoder.finish();
}

fn series_of<V: Value, E: Encoder>(
    family: &Family<V>,
    kind: Kind,
    encoder: &mut E,
    mut each: impl FnMut(&mut E, &str, &crate::store::family::Series<V>),
) {
    if family.is_empty() {
        return;
    }
    encoder.family(&family.name, kind, family.help().as_deref());
    family.for_each(|series| each(encoder, &family.name, series));
}

fn self_metrics(
    store: &Store,
    families: &[FamilyRef],
    global: &[(String, String)],
    encoder: &mut impl Encoder,
) {
    let help = |name: &str| SELF_HELP.iter().find(|(n, _)| *n == name).map(|(_, h)| *h);
    let metrics = &store.shared.self_metrics;
    let mut set = String::new();
    for (name, counts) in [
        (DROPPED_SAMPLES, metrics.dropped().collect::<Vec<_>>()),
        (DROPPED_LABELS, metrics.label_drops().collect()),
        (DROPPED_EXEMPLARS, metrics.exemplar_drops().collect()),
    ] {
        encoder.family(name, Kind::Counter, help(name));
        for (reason, n) in counts {
            set.clear();
            let _ = write!(set, "reason=\"{reason}\"");
            encoder.counter(
                name,
                Labels {
                    series: &set,
                    global,
                },
                n,
                None,
            );
        }
    }
    encoder.family(OVERFLOW_SAMPLES, Kind::Counter, help(OVERFLOW_SAMPLES));
    // A zero series without `metric` keeps the metric present before any overflow.
    encoder.counter(OVERFLOW_SAMPLES, Labels { series: "", global }, 0, None);
    for family in families {
        let (name, folded) = match family {
            FamilyRef::Counter(f) => (&f.name, f.folded()),
            FamilyRef::Gauge(f) => (&f.name, f.folded()),
            FamilyRef::Histogram(f) => (&f.name, f.folded()),
        };
        if let Some(folded) = folded {
            set.clear();
            labels::pair(&mut set, "metric", name);
            encoder.counter(
                OVERFLOW_SAMPLES,
                Labels {
                    series: &set,
                    global,
                },
                folded,
                None,
            );
        }
    }
    let (series, names) = store.counts();
    for (name, value) in [(SERIES, series), (METRIC_NAMES, names)] {
        encoder.family(name, Kind::Gauge, help(name));
        encoder.gauge(name, Labels { series: "", global }, value as f64);
    }
}
