//! Series written alike: one series in the scrape, their values added up.
//!
//! The store keeps label keys as recorded, so under an escaping that folds two keys into
//! one (`a-b` and `a_b` under `underscores`; ` ¡` and the store's `exported___`, both
//! `exported___`), or with a global label given as a series' own, two series of a family
//! can be written with the same labels. A scrape cannot show both, and leaving one out
//! would lose what it counted: they are written as one series, as they were one series
//! when keys were escaped as recorded. A counter's values add up, and so do a
//! histogram's buckets, count and sum (native buckets at the coarser of their schemas);
//! the series starts when its first part did, and keeps each bucket's most recent
//! exemplar. A gauge's values do not add up (two temperatures are not one): the first
//! series keeps the place. Every series folded into another, or left out, is counted in
//! `porter_metrics_escaping_collisions_total`.
//!
//! Only families whose keys can be written alike come here (rare: keys that are not
//! legacy names, under an escaping; keys of global labels), and only they allocate per
//! series.

use std::collections::HashMap;

use super::{Exemplar, HistogramPoint, Native};
use crate::store::Pairs;

/// An exemplar, owned.
#[derive(Clone)]
pub(crate) struct Kept {
    labels: Pairs,
    value: f64,
    timestamp: f64,
}

impl Kept {
    pub(crate) fn of(exemplar: &Exemplar<'_>) -> Self {
        Self {
            labels: exemplar.labels.clone(),
            value: exemplar.value,
            timestamp: exemplar.timestamp,
        }
    }

    pub(crate) fn view(&self) -> Exemplar<'_> {
        Exemplar {
            labels: &self.labels,
            value: self.value,
            timestamp: self.timestamp,
        }
    }

    /// The more recent of `kept` and `other`.
    fn latest(kept: &mut Option<Kept>, other: Option<&Exemplar<'_>>) {
        if let Some(other) = other {
            if kept.as_ref().is_none_or(|k| other.timestamp > k.timestamp) {
                *kept = Some(Kept::of(other));
            }
        }
    }
}

/// A histogram's value, owned: the sum of its parts.
#[derive(Default)]
pub(crate) struct Histogram {
    pub(crate) counts: Vec<u64>,
    pub(crate) sum: f64,
    pub(crate) exemplars: Vec<Option<Kept>>,
    /// `(schema, zero threshold, zero count)`, with the buckets beside.
    pub(crate) native: Option<(i32, f64, u64)>,
    pub(crate) positive: Vec<(i32, u64)>,
    pub(crate) negative: Vec<(i32, u64)>,
}

impl Histogram {
    fn of(point: &HistogramPoint<'_>) -> Self {
        let mut out = Self {
            counts: point.counts.to_vec(),
            sum: point.sum,
            exemplars: Vec::new(),
            native: point
                .native
                .map(|n| (n.schema, n.zero_threshold, n.zero_count)),
            positive: point.native.map_or(Vec::new(), |n| n.positive.to_vec()),
            negative: point.native.map_or(Vec::new(), |n| n.negative.to_vec()),
        };
        out.take_exemplars(point);
        out
    }

    fn take_exemplars(&mut self, point: &HistogramPoint<'_>) {
        if self.exemplars.len() < point.exemplars.len() {
            self.exemplars.resize(point.exemplars.len(), None);
        }
        for (kept, other) in self.exemplars.iter_mut().zip(point.exemplars) {
            Kept::latest(kept, other.as_ref());
        }
    }

    fn add(&mut self, point: &HistogramPoint<'_>) {
        for (mine, theirs) in self.counts.iter_mut().zip(point.counts) {
            *mine = mine.wrapping_add(*theirs);
        }
        self.sum += point.sum;
        self.take_exemplars(point);
        if let (Some((schema, _, zero)), Some(other)) = (&mut self.native, point.native) {
            *zero = zero.wrapping_add(other.zero_count);
            let coarser = (*schema).min(other.schema);
            for (mine, theirs) in [
                (&mut self.positive, other.positive),
                (&mut self.negative, other.negative),
            ] {
                let mut all = std::mem::take(mine);
                reduce(&mut all, *schema - coarser);
                all.extend(
                    theirs
                        .iter()
                        .map(|&(i, n)| (at(i, other.schema - coarser), n)),
                );
                all.sort_unstable_by_key(|(i, _)| *i);
                for (i, n) in all {
                    match mine.last_mut() {
                        Some((last, count)) if *last == i => *count = count.wrapping_add(n),
                        _ => mine.push((i, n)),
                    }
                }
            }
            *schema = coarser;
        }
    }

    /// The point as the encoders see it; `exemplars` is filled with the views.
    pub(crate) fn point<'a>(
        &'a self,
        bounds: &'a [f64],
        exemplars: &'a mut Vec<Option<Exemplar<'a>>>,
    ) -> HistogramPoint<'a> {
        exemplars.clear();
        exemplars.extend(self.exemplars.iter().map(|e| e.as_ref().map(Kept::view)));
        HistogramPoint {
            bounds,
            counts: &self.counts,
            count: self.counts.iter().fold(0u64, |a, c| a.wrapping_add(*c)),
            sum: self.sum,
            exemplars,
            native: self
                .native
                .map(|(schema, zero_threshold, zero_count)| Native {
                    schema,
                    zero_threshold,
                    zero_count,
                    positive: &self.positive,
                    negative: &self.negative,
                }),
        }
    }
}

/// Native bucket `i` at a schema `by` lower (each step joins bucket `i` into `ceil(i / 2)`).
fn at(i: i32, by: i32) -> i32 {
    match by {
        0 => i,
        by => ((i - 1) >> by.min(31)) + 1,
    }
}

/// `buckets` (ascending) at a schema `by` lower, merged where they now coincide.
fn reduce(buckets: &mut Vec<(i32, u64)>, by: i32) {
    if by == 0 {
        return;
    }
    let old = std::mem::take(buckets);
    for (i, n) in old {
        let i = at(i, by);
        match buckets.last_mut() {
            Some((last, count)) if *last == i => *count = count.wrapping_add(n),
            _ => buckets.push((i, n)),
        }
    }
}

/// One series of the scrape, and what its parts added up to.
pub(crate) enum Value {
    Counter(u64, Option<Kept>),
    Gauge(f64),
    Histogram(Histogram),
}

/// A series as written: its labels (in the first part's order), when it started, its value.
pub(crate) struct Group {
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) start_ms: Option<u64>,
    pub(crate) value: Value,
}

/// The series of one family, grouped by their labels as written.
#[derive(Default)]
pub(crate) struct Groups {
    /// Groups, in the order their first part came.
    pub(crate) groups: Vec<Group>,
    /// Label sets as written, sorted: which group they are.
    index: HashMap<Vec<(String, String)>, usize>,
    /// Series folded into another, or left out.
    pub(crate) folded: u64,
}

impl Groups {
    /// Adds a series written with `labels`, started at `start_ms`, worth `value`: a group
    /// of its own, or added to the one written alike.
    pub(crate) fn add(
        &mut self,
        labels: Vec<(String, String)>,
        start_ms: Option<u64>,
        value: Part<'_>,
    ) {
        let mut key = labels.clone();
        key.sort_unstable();
        let Some(&at) = self.index.get(&key) else {
            self.index.insert(key, self.groups.len());
            let value = match value {
                Part::Counter(n, e) => Value::Counter(n, e.map(Kept::of)),
                Part::Gauge(v) => Value::Gauge(v),
                Part::Histogram(point) => Value::Histogram(Histogram::of(point)),
            };
            self.groups.push(Group {
                labels,
                start_ms,
                value,
            });
            return;
        };
        self.folded += 1;
        let group = &mut self.groups[at];
        group.start_ms = match (group.start_ms, start_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (&mut group.value, value) {
            (Value::Counter(mine, kept), Part::Counter(n, e)) => {
                *mine = mine.wrapping_add(n);
                Kept::latest(kept, e);
            }
            (Value::Histogram(mine), Part::Histogram(point)) => mine.add(point),
            _ => {} // a gauge: the first keeps the place
        }
    }
}

/// One series' value, as the walk read it.
pub(crate) enum Part<'a> {
    Counter(u64, Option<&'a Exemplar<'a>>),
    Gauge(f64),
    Histogram(&'a HistogramPoint<'a>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point<'a>(counts: &'a [u64], native: Option<Native<'a>>) -> HistogramPoint<'a> {
        HistogramPoint {
            bounds: &[1.0],
            counts,
            count: counts.iter().sum(),
            sum: 1.5,
            exemplars: &[],
            native,
        }
    }

    #[test]
    fn parts_written_alike_add_up_in_order_of_arrival() {
        let mut groups = Groups::default();
        let labels = |k: &str| vec![(k.to_owned(), "x".to_owned()), ("b".into(), "y".into())];
        groups.add(labels("a"), Some(20), Part::Counter(2, None));
        groups.add(labels("c"), None, Part::Counter(1, None));
        let mut swapped = labels("a");
        swapped.reverse();
        groups.add(swapped, Some(10), Part::Counter(3, None));
        assert_eq!(groups.folded, 1);
        assert_eq!(groups.groups.len(), 2);
        let first = &groups.groups[0];
        assert_eq!(first.labels, labels("a"), "the first part's order");
        assert_eq!(first.start_ms, Some(10));
        assert!(matches!(first.value, Value::Counter(5, None)));
        // Gauges: the first keeps the place.
        groups.add(labels("g"), None, Part::Gauge(1.0));
        groups.add(labels("g"), None, Part::Gauge(7.0));
        assert!(matches!(groups.groups[2].value, Value::Gauge(v) if v == 1.0));
        assert_eq!(groups.folded, 2);
    }

    #[test]
    fn native_buckets_add_up_at_the_coarser_schema() {
        let fine = Native {
            schema: 1,
            zero_threshold: 0.0,
            zero_count: 1,
            // At schema 0: buckets 1 (from 1, 2), 2 (from 3), 0 (from -1, 0).
            positive: &[(-1, 1), (0, 1), (1, 1), (2, 1), (3, 1)],
            negative: &[],
        };
        let coarse = Native {
            schema: 0,
            zero_count: 2,
            positive: &[(1, 10), (5, 1)],
            negative: &[(0, 4)],
            ..fine
        };
        let mut sum = Histogram::of(&point(&[1, 2], Some(fine)));
        sum.add(&point(&[3, 0], Some(coarse)));
        assert_eq!(sum.counts, [4, 2]);
        assert_eq!(sum.sum, 3.0);
        assert_eq!(sum.native, Some((0, 0.0, 3)));
        assert_eq!(sum.positive, [(0, 2), (1, 12), (2, 1), (5, 1)]);
        assert_eq!(sum.negative, [(0, 4)]);
        let mut views = Vec::new();
        let bounds = [1.0];
        let read = sum.point(&bounds, &mut views);
        assert_eq!(read.count, 6);
    }
}
