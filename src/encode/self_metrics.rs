//! The self-metrics a render writes first: what the store dropped, cut, folded and left
//! out, and how many series and names it holds, each with its HELP text.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Encoder, FamilyHead, Labels, Sample, Tally, SCHEMES};
use crate::store::family::Family;
use crate::store::kind::Kind;
use crate::store::self_metrics::{
    DROPPED_EXEMPLARS, DROPPED_LABELS, DROPPED_SAMPLES, ESCAPING_COLLISIONS, HIDDEN_SERIES,
    METRIC_NAMES, OVERFLOW_SAMPLES, SERIES,
};
use crate::store::Store;

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

/// Writes the self-metrics: the store's counts, what it dropped, folded and left out.
pub(super) fn write<E: Encoder>(
    store: &Store,
    families: &[Arc<Family>],
    names: &[Option<Cow<'_, str>>],
    global: &[(String, String)],
    tally: &Tally,
    encoder: &mut E,
) {
    let help = |name: &str| SELF_HELP.iter().find(|(n, _)| *n == name).map(|(_, h)| *h);
    let counter = |encoder: &mut E, name: &'static str, samples: &[(&str, &str, u64)]| {
        let base = name.trim_end_matches("_total");
        write_family(encoder, base, Kind::Counter, help(name));
        for (key, value, n) in samples {
            let pair = [(*key, *value)];
            let own: &[(&str, &str)] = if key.is_empty() { &[] } else { &pair };
            let sample = Sample {
                name: base,
                labels: Labels::fixed(own, global),
                start_ms: None,
            };
            Encoder::counter(encoder, &sample, *n, None);
        }
    };
    let metrics = &store.shared.self_metrics;
    let reasons = |counts: Vec<(&'static str, u64)>| -> Vec<(&str, &str, u64)> {
        counts.into_iter().map(|(r, n)| ("reason", r, n)).collect()
    };
    counter(
        encoder,
        DROPPED_SAMPLES,
        &reasons(metrics.dropped().collect()),
    );
    counter(
        encoder,
        DROPPED_LABELS,
        &reasons(metrics.label_drops().collect()),
    );
    counter(
        encoder,
        DROPPED_EXEMPLARS,
        &reasons(metrics.exemplar_drops().collect()),
    );
    // A zero series without `metric` keeps the metric present before any overflow. The
    // metric is named as its series are written.
    let overflowed: Vec<(String, u64)> = families
        .iter()
        .zip(names)
        .filter_map(|(f, name)| {
            let suffix = if f.kind == Kind::Counter {
                "_total"
            } else {
                ""
            };
            Some((format!("{}{suffix}", name.as_ref()?), f.folded()?))
        })
        .collect();
    let mut folded = vec![("", "", 0)];
    folded.extend(
        overflowed
            .iter()
            .map(|(name, n)| ("metric", name.as_str(), *n)),
    );
    counter(encoder, OVERFLOW_SAMPLES, &folded);
    let collisions: Vec<(&str, &str, u64)> = SCHEMES
        .iter()
        .zip(&tally.left_out)
        .map(|(s, n)| ("escaping", s.as_str(), n.load(Ordering::Relaxed)))
        .collect();
    counter(encoder, ESCAPING_COLLISIONS, &collisions);
    let (series, hidden, names) = store.counts();
    for (name, value) in [
        (SERIES, series),
        (HIDDEN_SERIES, hidden),
        (METRIC_NAMES, names),
    ] {
        write_family(encoder, name, Kind::Gauge, help(name));
        let sample = Sample {
            name,
            labels: Labels::fixed(&[], global),
            start_ms: None,
        };
        encoder.gauge(&sample, value as f64);
    }
}

fn write_family(encoder: &mut impl Encoder, name: &str, kind: Kind, help: Option<&str>) {
    encoder.family(&FamilyHead {
        name,
        kind,
        help,
        unit: None,
    });
}
