//! The walk: the self-metrics, then every family in name order, then every series of each
//! family as the store's lock-free walk hands it over, each value given to the encoder as
//! it goes. No lock is held while anything is written, and nothing is allocated per series
//! (but in families whose series can be written alike: see [`alike`](super::alike)).
//!
//! Under an escaping that folds two recorded names into one (`a.b` and `a_b` under
//! `underscores`), the family whose name needed no escaping keeps it (else the first by
//! name), and the other is left out of that scrape and counted in
//! `porter_metrics_escaping_collisions_total{escaping}`: a scrape is always valid.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::alike::{self, Groups, Part};
use super::self_metrics::{self, SelfFamilies, Tally, SCHEMES};
use super::{
    Encoder, Escaping, Exemplar, FamilyHead, HistogramPoint, Labels, Native, Options, Own, Sample,
};
use crate::store::family::{Family, LabelsView, Scratch};
use crate::store::kind::Kind;
use crate::store::labels::numbered;
use crate::store::names::{claims, is_legacy_label};
use crate::store::value::Snapshot;
use crate::store::{Pairs, Store};

/// A family's label keys as written, worked out once per key and scrape (a series' keys
/// are looked up here, not escaped again).
#[derive(Default)]
pub(super) struct Keys {
    /// (as recorded, as written).
    names: Vec<(String, String)>,
    /// Two keys are written alike: a series that has both is renamed (see [`renamed`]).
    clash: bool,
    /// The current series' keys, as indices into `names`.
    series: Vec<usize>,
}

impl Keys {
    /// Learns the keys of `view` not seen yet in this family.
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
    pub(super) fn written(&self, j: usize) -> &str {
        self.series
            .get(j)
            .and_then(|i| self.names.get(*i))
            .map_or("", |(_, written)| written)
    }
}

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
            // What the family occupies, by the store's rule for recorded names.
            let occupied = claims(written, family.kind);
            if occupied.iter().any(|c| taken.contains(c)) {
                *name = None;
                left_out += 1;
            } else {
                taken.extend(occupied);
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
                name = numbered(key, n);
            }
            taken.insert(name.clone());
        }
        out.push((name, value.to_owned()));
    }
    true
}

/// Writes one series' value.
fn emit(encoder: &mut impl Encoder, sample: &Sample<'_>, part: Part<'_>) {
    match part {
        Part::Counter(n, exemplar) => encoder.counter(sample, n, exemplar),
        Part::Gauge(value) => encoder.gauge(sample, value),
        Part::Histogram(point) => encoder.histogram(sample, point),
    }
}

/// What a family's keys need, under one escaping: whether any is escaped when written,
/// whether any is a global label's key, whether all are legacy label names.
struct KeyNeeds {
    escaped: bool,
    global: bool,
    legacy: bool,
}

impl KeyNeeds {
    fn of(family: &Family, escaping: Escaping, global: &[(String, String)]) -> Self {
        let (non_legacy, global_key) = (Cell::new(false), Cell::new(false));
        let many = family.any_key(|k| {
            non_legacy.set(non_legacy.get() || !is_legacy_label(k));
            global_key.set(global_key.get() || global.iter().any(|(g, _)| g == k));
            false
        });
        // Past the keys a family remembers: assume the worst.
        let (non_legacy, global_key) = match many {
            true => (true, !global.is_empty()),
            false => (non_legacy.get(), global_key.get()),
        };
        Self {
            escaped: non_legacy && escaping != Escaping::AllowUtf8,
            global: global_key,
            legacy: !non_legacy || escaping != Escaping::AllowUtf8,
        }
    }
}

/// Walks `store`, with the families of `extra`, into `encoder` (see the module
/// documentation).
pub(crate) fn walk(
    store: &Store,
    extra: &dyn SelfFamilies,
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
    self_metrics::write(store, &families, &names, global, tally, extra, encoder);
    let mut state = State::default();
    let context = Context {
        escaping: options.escaping,
        global,
        tally,
        scheme,
    };
    for (family, name) in families.iter().zip(&names) {
        if let Some(name) = name {
            state.family(family, name, &context, encoder);
        }
    }
    encoder.finish();
}

/// What every family of one walk is written with.
struct Context<'a> {
    escaping: Escaping,
    global: &'a [(String, String)],
    tally: &'a Tally,
    /// `escaping`'s place in [`SCHEMES`].
    scheme: usize,
}

/// What the walk reuses from series to series.
#[derive(Default)]
struct State {
    scratch: Scratch,
    snapshot: Snapshot,
    renames: Vec<(String, String)>,
    /// Exemplar labels, copied out of their slots: one buffer per bucket, reused.
    texts: Vec<Pairs>,
    found: Vec<Option<(f64, f64)>>,
}

impl State {
    fn family(
        &mut self,
        family: &Family,
        name: &str,
        context: &Context<'_>,
        encoder: &mut impl Encoder,
    ) {
        let (escaping, global) = (context.escaping, context.global);
        let layout = family.layout.get();
        if family.kind == Kind::Histogram && layout.is_none() {
            return; // not bound yet: nothing is exported before a server starts
        }
        let help = family.help();
        let head = FamilyHead {
            name,
            kind: family.kind,
            help: help.as_deref(),
            unit: family.unit(),
        };
        let needs = KeyNeeds::of(family, escaping, global);
        // Series that could be written alike: grouped by their labels as written, and each
        // group written as one series (see `alike`).
        let alike = needs.escaped || needs.global;
        let (exemplars, native) = (encoder.wants_exemplars(), encoder.wants_native());
        let mut started = false;
        let mut groups = Groups::default();
        let mut keys = Keys::default();
        let Self {
            scratch,
            snapshot,
            renames,
            texts,
            found,
        } = self;
        family.for_each(scratch, |series, view| {
            let own = match needs.escaped {
                false => Own::Plain(view),
                true => {
                    keys.learn(view, escaping);
                    match renamed(view, &keys, renames) {
                        true => Own::Renamed(renames),
                        false => Own::Store(view, &keys),
                    }
                }
            };
            let labels = Labels {
                own,
                global,
                legacy_keys: needs.legacy,
            };
            let start = series.record.start.load(Ordering::Relaxed);
            let sample = Sample {
                name,
                labels,
                start_ms: (family.kind != Kind::Gauge).then(|| family.shared.start_ms(start)),
            };
            let mut write = |part: Part<'_>| {
                if alike {
                    let mut set = Vec::new();
                    labels.each(|k, v| set.push((k.to_owned(), v.to_owned())));
                    groups.add(set, sample.start_ms, part);
                    return;
                }
                if !started {
                    encoder.family(&head);
                    started = true;
                }
                emit(encoder, &sample, part);
            };
            match family.kind {
                Kind::Counter => {
                    let kept = series.extra(false).filter(|_| exemplars);
                    if kept.is_some() {
                        texts.resize_with(1, Pairs::default);
                    }
                    let exemplar = kept
                        .zip(texts.first_mut())
                        .and_then(|(e, text)| e.exemplars.read(0, text).map(|read| (read, text)))
                        .map(|((value, timestamp), labels)| Exemplar {
                            labels,
                            value,
                            timestamp,
                        });
                    write(Part::Counter(series.get(), exemplar.as_ref()));
                }
                Kind::Gauge => write(Part::Gauge(f64::from_bits(series.get()))),
                Kind::Histogram => {
                    let Some(layout) = layout else { return };
                    if !series.snapshot(snapshot, native)
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
                        .zip(texts.iter())
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
                    write(Part::Histogram(&point));
                }
            }
        });
        context.tally.left_out[context.scheme].fetch_add(groups.folded, Ordering::Relaxed);
        let bounds = layout.map_or(&[][..], |l| &l.bounds[..]);
        for group in &groups.groups {
            if !started {
                encoder.family(&head);
                started = true;
            }
            let sample = Sample {
                name,
                labels: Labels {
                    own: Own::Renamed(&group.labels),
                    global: &[],
                    legacy_keys: needs.legacy,
                },
                start_ms: group.start_ms,
            };
            let mut views = Vec::new();
            match &group.value {
                alike::Value::Counter(n, kept) => {
                    let exemplar = kept.as_ref().map(alike::Kept::view);
                    emit(encoder, &sample, Part::Counter(*n, exemplar.as_ref()));
                }
                alike::Value::Gauge(v) => emit(encoder, &sample, Part::Gauge(*v)),
                alike::Value::Histogram(h) => {
                    let point = h.point(bounds, &mut views);
                    emit(encoder, &sample, Part::Histogram(&point));
                }
            }
        }
    }
}
