//! Exposition: one walk of the store, written out by an [`Encoder`] per format.
//!
//! [`walk`] visits the self-metrics, then every family in name order, then every series of
//! each family as the store's lock-free walk hands it over, and gives each value to the
//! encoder as it goes: no lock is held while anything is written, and nothing is allocated
//! per series. A format is one `Encoder`: [`text::Text`] (the Prometheus text format),
//! [`openmetrics::OpenMetrics`] (OpenMetrics 1.0) and [`protobuf::Protobuf`] (delimited
//! `io.prometheus.client.MetricFamily` messages); [`format`] picks one for a scrape, and
//! its escaping ([`escape`]) how names are written.
//!
//! Under an escaping that folds two recorded names into one (`a.b` and `a_b` under
//! `underscores`), the family whose name needed no escaping keeps it (else the first by
//! name), and the other is left out of that scrape and counted in
//! `porter_metrics_escaping_collisions_total{escaping}`: a scrape is always valid. The same
//! holds for two series written alike (keys `a-b` and `a_b`, or a key of a global label
//! given as the series' own): the first keeps the place, the other is left out and
//! counted.

#[cfg(any(feature = "otlp", feature = "remote-write"))]
pub(crate) mod batch;
pub(crate) mod escape;
pub(crate) mod format;
pub(crate) mod openmetrics;
#[cfg(feature = "otlp")]
pub(crate) mod otlp;
pub(crate) mod protobuf;
#[cfg(feature = "remote-write")]
pub(crate) mod remote_write;
mod self_metrics;
#[cfg(any(feature = "otlp", feature = "remote-write"))]
pub(crate) mod stale;
pub(crate) mod text;
pub(crate) mod wire;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) use escape::Escaping;
pub(crate) use format::{Format, Negotiated};

use crate::store::family::{Family, LabelsView, Scratch};
use crate::store::kind::Kind;
use crate::store::names::{is_legacy_label, suffixes};
use crate::store::value::Snapshot;
use crate::store::{Pairs, Store};

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

/// A family's label keys as written, worked out once per key and scrape (a series' keys
/// are looked up here, not escaped again).
#[derive(Default)]
struct Keys {
    /// (as recorded, as written).
    names: Vec<(String, String)>,
    /// Two keys are written alike: a series that has both is renamed (see [`renamed`]).
    clash: bool,
    /// The current series' keys, as indices into `names`.
    series: Vec<usize>,
}

impl Keys {
    /// Learns the keys of `view` not seen yet in this family (none to learn when names are
    /// written as recorded).
    fn learn(&mut self, view: LabelsView<'_>, escaping: Escaping) {
        self.series.clear();
        for (j, (key, _)) in view.iter().enumerate() {
            // Series of a family mostly share their keys, in order: try that one first.
            let same = |i: &usize| self.names.get(*i).is_some_and(|(raw, _)| raw == key);
            let at = match Some(j).filter(same) {
                Some(at) => at,
                None => match self.names.iter().position(|(raw, _)| raw == key) {
                    Some(at) => at,
                    None => {
                        let written = escaping.key(key).into_owned();
                        self.clash |= self.names.iter().any(|(_, w)| *w == written);
                        self.names.push((key.to_owned(), written));
                        self.names.len() - 1
                    }
                },
            };
            self.series.push(at);
        }
    }

    /// The written form of the current series' key `j`.
    fn written(&self, j: usize) -> &str {
        self.series
            .get(j)
            .and_then(|i| self.names.get(*i))
            .map_or("", |(_, written)| written)
    }
}

/// A series' own labels, as the walk hands them to an encoder.
#[derive(Clone, Copy)]
enum Own<'a> {
    /// Read from the store; keys as the family's table writes them.
    Store(LabelsView<'a>, &'a Keys),
    /// Keys that clashed once escaped, renamed (see [`renamed`]).
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
}

/// One series as the encoders see it.
pub(crate) struct Sample<'a> {
    /// The family's name as written (before suffixes).
    pub(crate) name: &'a str,
    pub(crate) labels: Labels<'a>,
    /// When a counter or histogram series started, in ms since the Unix epoch.
    pub(crate) start_ms: Option<u64>,
}

/// An exemplar: its labels (at most 128 characters of names and values), the value it was
/// recorded with, and when (seconds since the Unix epoch).
#[derive(Clone, Copy)]
pub(crate) struct Exemplar<'a> {
    pub(crate) labels: &'a Pairs,
    pub(crate) value: f64,
    pub(crate) timestamp: f64,
}

/// The exemplars a push carries: those recorded in `[from, to)`, in seconds since the Unix
/// epoch. Consecutive pushes take consecutive windows, so each exemplar goes out once and
/// a receiver gets a series' exemplars in time order (Prometheus refuses an older one).
#[cfg(any(feature = "otlp", feature = "remote-write"))]
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Window {
    pub(crate) from: f64,
    pub(crate) to: f64,
}

#[cfg(any(feature = "otlp", feature = "remote-write"))]
impl Window {
    /// Every exemplar.
    #[cfg(test)]
    pub(crate) const ALL: Window = Window {
        from: f64::NEG_INFINITY,
        to: f64::INFINITY,
    };

    pub(crate) fn holds(&self, exemplar: &Exemplar<'_>) -> bool {
        exemplar.timestamp >= self.from && exemplar.timestamp < self.to
    }
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

/// The `le="..."` values of a histogram family's buckets (`+Inf` last), rendered once per
/// family, not once per line: text encoders keep one.
#[derive(Default)]
pub(crate) struct LeLabels {
    of: Vec<f64>,
    les: Vec<String>,
}

impl LeLabels {
    /// The values of `bounds`, each number written by `write`.
    pub(crate) fn of(&mut self, bounds: &[f64], write: fn(&mut String, f64)) -> &[String] {
        if self.of != bounds || self.les.is_empty() {
            self.of.clear();
            self.of.extend_from_slice(bounds);
            self.les.clear();
            for bound in bounds.iter().copied().chain([f64::INFINITY]) {
                let mut le = String::new();
                write(&mut le, bound);
                self.les.push(le);
            }
        }
        &self.les
    }
}

/// Writes one format; [`walk`] calls it in exposition order.
pub(crate) trait Encoder {
    /// A new family; its series follow.
    fn family(&mut self, head: &FamilyHead<'_>);
    fn counter(&mut self, sample: &Sample<'_>, value: u64, exemplar: Option<&Exemplar<'_>>);
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

/// A family kept outside the store (the listener's connection counts, the pushers'
/// outcomes), written with the self-metrics: a counter or a gauge, its name as written
/// (a counter's ending in `_total`), each sample's labels and value.
pub(crate) struct ExtraFamily {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// Families left out of scrapes because their escaped name was taken, by escaping.
#[derive(Default)]
pub(crate) struct Tally {
    left_out: [AtomicU64; 4],
}

const SCHEMES: [Escaping; 4] = [
    Escaping::AllowUtf8,
    Escaping::Underscores,
    Escaping::Dots,
    Escaping::Values,
];

/// Each family's name as written under `escaping`, or `None` when another family took it
/// (see the module documentation); and how many were left out.
fn written_names(families: &[Arc<Family>], escaping: Escaping) -> (Vec<Option<Cow<'_, str>>>, u64) {
    let mut names: Vec<Option<Cow<'_, str>>> = families
        .iter()
        .map(|f| Some(escaping.name(&f.base)))
        .collect();
    if escaping == Escaping::AllowUtf8 {
        return (names, 0); // the store keeps recorded names apart
    }
    let mut taken: HashSet<String> = HashSet::new();
    let mut left_out = 0;
    // Names that needed no escaping first: they keep them.
    for escaped in [false, true] {
        for (family, name) in families.iter().zip(names.iter_mut()) {
            let Some(written) = name else { continue };
            if matches!(written, Cow::Owned(_)) != escaped {
                continue;
            }
            let claims: Vec<String> = std::iter::once(written.to_string())
                .chain(
                    suffixes(family.kind)
                        .iter()
                        .map(|s| format!("{written}{s}")),
                )
                .collect();
            if claims.iter().any(|c| taken.contains(c)) {
                *name = None;
                left_out += 1;
            } else {
                taken.extend(claims);
            }
        }
    }
    (names, left_out)
}

/// Whether the written keys of `view` clash; if so, fills `out` with them renamed (the
/// keys that needed no escaping keep their names, the others take `_1`, `_2`, ...).
fn renamed(view: LabelsView<'_>, keys: &Keys, out: &mut Vec<(String, String)>) -> bool {
    if !keys.clash {
        return false;
    }
    let written: Vec<&str> = (0..keys.series.len()).map(|j| keys.written(j)).collect();
    let unique: HashSet<&str> = written.iter().copied().collect();
    if unique.len() == written.len() {
        return false;
    }
    out.clear();
    let mut taken: HashSet<String> = view
        .iter()
        .filter(|(k, _)| is_legacy_label(k))
        .map(|(k, _)| k.to_owned())
        .collect();
    for ((raw, value), key) in view.iter().zip(written) {
        let mut name = key.to_owned();
        if !is_legacy_label(raw) {
            let mut n = 0;
            while taken.contains(&name) {
                n += 1;
                name = format!("{key}_{n}");
                // `_` + `_1` would start with the reserved `__`.
                if name.starts_with("__") {
                    name.insert_str(0, "exported_");
                }
            }
            taken.insert(name.clone());
        }
        out.push((name, value.to_owned()));
    }
    true
}

/// Walks `store`, with `extra` families, into `encoder` (see the module documentation).
pub(crate) fn walk(
    store: &Store,
    extra: &[ExtraFamily],
    options: Options,
    tally: &Tally,
    encoder: &mut impl Encoder,
) {
    let global = store.settings().map_or(&[][..], |s| &s.global[..]);
    let families = store.families();
    let (names, left_out) = written_names(&families, options.escaping);
    let scheme = SCHEMES
        .iter()
        .position(|s| *s == options.escaping)
        .unwrap_or(0);
    tally.left_out[scheme].fetch_add(left_out, Ordering::Relaxed);
    self_metrics::write(store, &families, &names, global, tally, encoder);
    for family in extra {
        let head = FamilyHead {
            name: family.name.trim_end_matches("_total"),
            kind: family.kind,
            help: Some(family.help),
            unit: None,
        };
        encoder.family(&head);
        for (labels, value) in &family.samples {
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let sample = Sample {
                name: head.name,
                labels: Labels::fixed(&pairs, global),
                start_ms: None,
            };
            match family.kind {
                Kind::Counter => encoder.counter(&sample, *value as u64, None),
                _ => encoder.gauge(&sample, *value),
            }
        }
    }
    let (exemplars, native) = (encoder.wants_exemplars(), encoder.wants_native());
    let mut scratch = Scratch::default();
    let mut snapshot = Snapshot::default();
    let mut renames = Vec::new();
    // Exemplar labels, copied out of their slots: one buffer per bucket, reused.
    let mut texts: Vec<Pairs> = Vec::new();
    let mut found: Vec<Option<(f64, f64)>> = Vec::new();
    for (family, name) in families.iter().zip(&names) {
        let Some(name) = name else { continue };
        let layout = family.layout.get();
        if family.kind == Kind::Histogram && layout.is_none() {
            continue; // not bound yet: nothing is exported before a server starts
        }
        let help = family.help();
        let head = FamilyHead {
            name,
            kind: family.kind,
            help: help.as_deref(),
            unit: family.unit(),
        };
        let mut started = false;
        // Series that could be written alike: their label sets, as written, are checked.
        let escaping = options.escaping;
        let alike = family.any_key(|k| {
            (escaping != Escaping::AllowUtf8 && !is_legacy_label(k))
                || global.iter().any(|(g, _)| g == k)
        });
        let mut written: HashSet<Vec<(String, String)>> = HashSet::new();
        let mut keys = Keys::default();
        family.for_each(&mut scratch, |series, view| {
            keys.learn(view, escaping);
            let own = match renamed(view, &keys, &mut renames) {
                true => Own::Renamed(&renames),
                false => Own::Store(view, &keys),
            };
            let legacy_keys = escaping != Escaping::AllowUtf8;
            let labels = Labels {
                own,
                global,
                legacy_keys,
            };
            if alike {
                let mut set: Vec<(String, String)> = Vec::new();
                labels.each(|k, v| set.push((k.to_owned(), v.to_owned())));
                set.sort();
                if !written.insert(set) {
                    tally.left_out[scheme].fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            if !started {
                encoder.family(&head);
                started = true;
            }
            let start = series.record.start.load(Ordering::Relaxed);
            let sample = Sample {
                name,
                labels,
                start_ms: (family.kind != Kind::Gauge).then(|| family.shared.start_ms(start)),
            };
            match family.kind {
                Kind::Counter => {
                    texts.resize_with(1, Pairs::default);
                    let kept = series.extra(false).filter(|_| exemplars);
                    let exemplar = kept.and_then(|e| e.exemplars.read(0, &mut texts[0])).map(
                        |(value, timestamp)| Exemplar {
                            labels: &texts[0],
                            value,
                            timestamp,
                        },
                    );
                    encoder.counter(&sample, series.get(), exemplar.as_ref());
                }
                Kind::Gauge => encoder.gauge(&sample, f64::from_bits(series.get())),
                Kind::Histogram => {
                    let Some(layout) = layout else { return };
                    if !series.snapshot(&mut snapshot, native)
                        || snapshot.counts.len() != layout.bounds.len() + 1
                    {
                        return;
                    }
                    found.clear();
                    if let Some(kept) = series
                        .extra(false)
                        .map(|e| &e.exemplars)
                        .filter(|e| exemplars && e.any())
                    {
                        texts.resize_with(snapshot.counts.len(), Pairs::default);
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
                    encoder.histogram(&sample, &point);
                }
            }
        });
    }
    encoder.finish();
}
