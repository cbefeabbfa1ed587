//! The self-metrics a render writes first: what the store dropped, cut, folded and left
//! out, and how many series and names it holds, each with its HELP text; then the families
//! the exporters keep (their [`SelfFamilies`]), through the same writer. Nothing here is
//! allocated per render but the name of a metric that overflowed.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::escape::Escaping;
use super::names::{base_of, sample_suffix};
use super::{Encoder, FamilyHead, Labels, Sample};
use crate::store::family::Family;
use crate::store::kind::Kind;
use crate::store::self_metrics::{
    DROPPED_EXEMPLARS, DROPPED_LABELS, DROPPED_SAMPLES, ESCAPING_COLLISIONS, HIDDEN_SERIES,
    METRIC_NAMES, OVERFLOW_SAMPLES, SERIES,
};
use crate::store::Store;

/// Families and series left out of scrapes because they were written alike, by escaping.
#[derive(Default)]
pub(crate) struct Tally {
    pub(super) left_out: [AtomicU64; 4],
}

pub(super) const SCHEMES: [Escaping; 4] = [
    Escaping::AllowUtf8,
    Escaping::Underscores,
    Escaping::Dots,
    Escaping::Values,
];

/// HELP texts of the self-metrics.
const SELF_HELP: [(&str, &str); 8] = [
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
        "Labels porter-metrics removed from a call or cut, by reason.",
    ),
    (
        OVERFLOW_SAMPLES,
        "Calls folded into a metric's otel_metric_overflow series, by metric.",
    ),
    (
        ESCAPING_COLLISIONS,
        "Families left out of a scrape, and series written as one, because they were written alike, by escaping.",
    ),
    (SERIES, "Series currently exported by porter-metrics."),
    (
        HIDDEN_SERIES,
        "Series idle expiry hid and has not reclaimed yet.",
    ),
    (
        METRIC_NAMES,
        "Metric names currently tracked by porter-metrics.",
    ),
];

/// Families kept outside the store (the listener's refusals, the pushers' outcomes),
/// written with the self-metrics at each render, straight from their counts: the one route
/// by which anything but the store reaches a render.
pub(crate) trait SelfFamilies: Send + Sync {
    /// Writes its families through `out`.
    fn write(&self, out: &mut Families<'_>);
}

/// No family.
impl SelfFamilies for () {
    fn write(&self, _: &mut Families<'_>) {}
}

/// A family kept outside the store, built whole for one render: a counter or a gauge, its
/// name as written (a counter's ending in `_total`), each sample's labels and value. Kept
/// for the exporters that build these at each read; implement [`SelfFamilies`] instead.
pub(crate) struct ExtraFamily {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl SelfFamilies for &[ExtraFamily] {
    fn write(&self, out: &mut Families<'_>) {
        for family in self.iter() {
            out.extra(family);
        }
    }
}

/// The families a function builds at each render (see [`ExtraFamily`]).
pub(crate) struct Rebuilt<F>(pub(crate) F);

impl<F: Fn() -> Vec<ExtraFamily> + Send + Sync> SelfFamilies for Rebuilt<F> {
    fn write(&self, out: &mut Families<'_>) {
        for family in (self.0)() {
            out.extra(&family);
        }
    }
}

/// Writes self-metric families into an encoder, with the pipeline's global labels.
pub(crate) struct Families<'e> {
    encoder: &'e mut dyn Encoder,
    global: &'e [(String, String)],
    /// The current family's base name.
    name: String,
}

impl Families<'_> {
    /// Starts the family `name` (a counter's may end in `_total`).
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.name.clear();
        self.name.push_str(base_of(name, kind));
        self.encoder.family(&FamilyHead {
            name: &self.name,
            kind,
            help: Some(help),
            unit: None,
        });
    }

    fn extra(&mut self, family: &ExtraFamily) {
        self.family(family.name, family.kind, family.help);
        for (labels, value) in &family.samples {
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match family.kind {
                Kind::Counter => self.counter_f64(&pairs, *value),
                _ => self.gauge(&pairs, *value),
            }
        }
    }

    /// A sample of the current counter family.
    pub(crate) fn counter(&mut self, labels: &[(&str, &str)], value: u64) {
        let sample = Sample {
            name: &self.name,
            labels: Labels::fixed(labels, self.global),
            start_ms: None,
        };
        self.encoder.counter(&sample, value, None);
    }

    /// A sample of the current counter family, read as a float.
    pub(crate) fn counter_f64(&mut self, labels: &[(&str, &str)], value: f64) {
        let sample = Sample {
            name: &self.name,
            labels: Labels::fixed(labels, self.global),
            start_ms: None,
        };
        self.encoder.counter_f64(&sample, value);
    }

    /// A sample of the current gauge family.
    pub(crate) fn gauge(&mut self, labels: &[(&str, &str)], value: f64) {
        let sample = Sample {
            name: &self.name,
            labels: Labels::fixed(labels, self.global),
            start_ms: None,
        };
        self.encoder.gauge(&sample, value);
    }
}

/// Writes the self-metrics: the store's counts, what it dropped, folded and left out; then
/// the families of `extra`.
pub(super) fn write(
    store: &Store,
    families: &[Arc<Family>],
    names: &[Option<Cow<'_, str>>],
    global: &[(String, String)],
    tally: &Tally,
    extra: &dyn SelfFamilies,
    encoder: &mut dyn Encoder,
) {
    let mut out = Families {
        encoder,
        global,
        name: String::new(),
    };
    let help = |name: &str| {
        SELF_HELP
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, h)| *h)
    };
    let metrics = &store.shared.self_metrics;
    for (name, counts) in [
        (
            DROPPED_SAMPLES,
            &mut metrics.dropped() as &mut dyn Iterator<Item = _>,
        ),
        (DROPPED_LABELS, &mut metrics.label_drops()),
        (DROPPED_EXEMPLARS, &mut metrics.exemplar_drops()),
    ] {
        out.family(name, Kind::Counter, help(name));
        for (reason, n) in counts {
            out.counter(&[("reason", reason)], n);
        }
    }
    // A zero series without `metric` keeps the metric present before any overflow. The
    // metric is named as its series are written.
    out.family(OVERFLOW_SAMPLES, Kind::Counter, help(OVERFLOW_SAMPLES));
    out.counter(&[], 0);
    let mut metric = String::new();
    for (family, name) in families.iter().zip(names) {
        if let (Some(name), Some(folded)) = (name, family.folded()) {
            metric.clear();
            metric.push_str(name);
            metric.push_str(sample_suffix(family.kind));
            out.counter(&[("metric", &metric)], folded);
        }
    }
    out.family(
        ESCAPING_COLLISIONS,
        Kind::Counter,
        help(ESCAPING_COLLISIONS),
    );
    for (scheme, n) in SCHEMES.iter().zip(&tally.left_out) {
        out.counter(&[("escaping", scheme.as_str())], n.load(Ordering::Relaxed));
    }
    let (series, hidden, count) = store.counts();
    for (name, value) in [
        (SERIES, series),
        (HIDDEN_SERIES, hidden),
        (METRIC_NAMES, count),
    ] {
        out.family(name, Kind::Gauge, help(name));
        out.gauge(&[], value as f64);
    }
    extra.write(&mut out);
}
