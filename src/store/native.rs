//! Native histograms: sparse exponential buckets, as client_golang keeps them.
//!
//! Bucket `i` of schema `s` counts the observations `v` with
//! `2^((i-1)/2^s) < |v| <= 2^(i/2^s)` (negative ones in buckets of their own), and a zero
//! bucket those with `|v| <= zero_threshold`. A series holds the range of buckets it has
//! seen, densely; past `max_buckets` buckets in use it halves its resolution (schema - 1,
//! merging pairs), as client_golang does, down to schema -4.

use std::sync::OnceLock;

/// Settings of native histograms, in the shape of client_golang's `HistogramOpts`.
///
/// ```
/// use porter_metrics::NativeHistograms;
///
/// let native = NativeHistograms::default(); // factor 1.1: schema 3
/// assert_eq!((native.bucket_factor, native.max_buckets), (1.1, 160));
/// let coarse = NativeHistograms::default().with_bucket_factor(2.0).with_max_buckets(40);
/// assert_eq!(coarse.max_buckets, 40);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct NativeHistograms {
    /// Growth from one bucket to the next, at most: 1.1 gives schema 3 (each power of two
    /// split into 8 buckets, 9 % apart). Must be above 1.
    pub bucket_factor: f64,
    /// Buckets a series holds, at most, before its resolution is halved. At least 1.
    pub max_buckets: u32,
    /// Observations with an absolute value at most this go to the zero bucket.
    pub zero_threshold: f64,
}

impl Default for NativeHistograms {
    fn default() -> Self {
        Self {
            bucket_factor: 1.1,
            max_buckets: 160,
            // client_golang's DefNativeHistogramZeroThreshold.
            zero_threshold: 2f64.powi(-128),
        }
    }
}

impl NativeHistograms {
    /// These settings with another bucket factor.
    #[must_use]
    pub fn with_bucket_factor(mut self, factor: f64) -> Self {
        self.bucket_factor = factor;
        self
    }

    /// These settings with another bucket limit.
    #[must_use]
    pub fn with_max_buckets(mut self, max_buckets: u32) -> Self {
        self.max_buckets = max_buckets;
        self
    }

    /// These settings with another zero threshold.
    #[must_use]
    pub fn with_zero_threshold(mut self, threshold: f64) -> Self {
        self.zero_threshold = threshold;
        self
    }

    /// Whether they can be used: a finite factor above 1, a finite threshold of at least
    /// 0, at least one bucket.
    pub(crate) fn is_valid(&self) -> bool {
        self.bucket_factor.is_finite()
            && self.bucket_factor > 1.0
            && self.zero_threshold.is_finite()
            && self.zero_threshold >= 0.0
            && self.max_buckets > 0
    }

    /// The schema whose buckets grow by at most the factor (client_golang's rule).
    pub(crate) fn schema(&self) -> i32 {
        let floor = self.bucket_factor.log2().log2().floor();
        if floor <= -8.0 {
            8
        } else if floor >= 4.0 {
            -4
        } else {
            -(floor as i32)
        }
    }
}

/// One sign's buckets: counts from index `first` on.
#[derive(Debug, Default)]
struct Buckets {
    first: i32,
    counts: Vec<u64>,
}

impl Buckets {
    /// Adds `n` to bucket `i`; says whether the bucket was empty.
    fn add(&mut self, i: i32, n: u64) -> bool {
        if self.counts.is_empty() {
            self.first = i;
        } else if i < self.first {
            let missing = (self.first - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, missing));
            self.first = i;
        }
        let at = (i - self.first) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += n;
        self.counts[at] == n
    }

    fn used(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        (self.first..)
            .zip(self.counts.iter().copied())
            .filter(|(_, c)| *c > 0)
    }

    /// Schema - 1: bucket `i` joins bucket `ceil(i / 2)`.
    fn halve(&mut self) {
        let old = std::mem::take(self);
        for (i, count) in old.used() {
            self.add((i + 1).div_euclid(2), count);
        }
    }
}

/// The native buckets of one series.
#[derive(Debug)]
pub(crate) struct NativeState {
    schema: i32,
    initial: i32,
    zero_count: u64,
    /// Buckets in use, both signs.
    used: usize,
    positive: Buckets,
    negative: Buckets,
}

impl NativeState {
    pub(crate) fn new(settings: &NativeHistograms) -> Self {
        let schema = settings.schema();
        Self {
            schema,
            initial: schema,
            zero_count: 0,
            used: 0,
            positive: Buckets::default(),
            negative: Buckets::default(),
        }
    }

    /// Back to empty (a reclaimed record is reused).
    pub(crate) fn clear(&mut self) {
        *self = Self {
            schema: self.initial,
            initial: self.initial,
            zero_count: 0,
            used: 0,
            positive: Buckets::default(),
            negative: Buckets::default(),
        };
    }

    /// Counts `value` (finite) `n` times; halves the resolution while over the limit.
    pub(crate) fn observe(&mut self, value: f64, n: u64, settings: &NativeHistograms) {
        let magnitude = value.abs();
        if magnitude <= settings.zero_threshold {
            self.zero_count += n;
            return;
        }
        let buckets = if value > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        self.used += usize::from(buckets.add(bucket_index(magnitude, self.schema), n));
        // The dense range is bounded too, so that two far-apart values cannot make it huge.
        let limit = settings.max_buckets as usize;
        let cap = limit.max(64) * 4;
        while self.schema > -4 {
            let width = self.positive.counts.len() + self.negative.counts.len();
            if self.used <= limit && (width <= cap || self.used < 2) {
                break;
            }
            self.schema -= 1;
            self.positive.halve();
            self.negative.halve();
            self.used = self.positive.used().count() + self.negative.used().count();
        }
    }

    /// Copies the buckets in use into `positive` and `negative`; gives the schema and the
    /// zero bucket's count.
    pub(crate) fn copy_into(
        &self,
        positive: &mut Vec<(i32, u64)>,
        negative: &mut Vec<(i32, u64)>,
    ) -> (i32, u64) {
        positive.clear();
        positive.extend(self.positive.used());
        negative.clear();
        negative.extend(self.negative.used());
        (self.schema, self.zero_count)
    }
}

/// The bounds within one power of two for schema `s` (1 to 8): `2^(m / 2^s - 1)` for
/// `m` from 0, as client_golang tabulates them.
fn bounds(schema: i32) -> &'static [f64] {
    static TABLES: [OnceLock<Box<[f64]>>; 8] = [const { OnceLock::new() }; 8];
    TABLES[(schema - 1) as usize].get_or_init(|| {
        let n = 1 << schema;
        (0..n)
            .map(|m| 2f64.powf(f64::from(m) / f64::from(n) - 1.0))
            .collect()
    })
}

/// The bucket of a positive, finite magnitude above the zero threshold.
fn bucket_index(magnitude: f64, schema: i32) -> i32 {
    let bits = magnitude.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: rare enough for the slow way.
        return (magnitude.log2() * 2f64.powi(schema)).ceil() as i32;
    }
    // magnitude = frac * 2^exp, frac in [0.5, 1).
    let exp = biased - 1022;
    let frac = f64::from_bits((bits & ((1 << 52) - 1)) | (1022 << 52));
    if schema > 0 {
        let m = bounds(schema).partition_point(|b| *b < frac) as i32;
        (exp - 1) * (1 << schema) + m
    } else {
        let key = if frac == 0.5 { exp - 1 } else { exp };
        let offset = (1 << -schema) - 1;
        (key + offset) >> -schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_follow_client_golang() {
        let schema = |f: f64| NativeHistograms::default().with_bucket_factor(f).schema();
        assert_eq!(schema(1.1), 3);
        assert_eq!(schema(2.0), 0);
        assert_eq!(schema(1.00271), 8);
        assert_eq!(schema(1.0001), 8);
        assert_eq!(schema(65536.0), -4);
        assert_eq!(schema(4.0), -1);
    }

    #[test]
    fn buckets_are_upper_inclusive_powers() {
        assert_eq!(bucket_index(1.0, 0), 0);
        assert_eq!(bucket_index(2.0, 0), 1);
        assert_eq!(bucket_index(2.1, 0), 2);
        assert_eq!(bucket_index(0.5, 0), -1);
        assert_eq!(bucket_index(8.0, -1), 2); // (4, 16]
        assert_eq!(bucket_index(2f64.sqrt() * 1.0001, 1), 2);
        assert_eq!(bucket_index(1.0, 3), 0);
        assert_eq!(bucket_index(1.05, 3), 1);
        assert_eq!(bucket_index(f64::MIN_POSITIVE / 4.0, 0), -1024);
        // Every value lies in its bucket, at every schema.
        for schema in -4..=8 {
            for v in [0.001, 0.3, 1.0, 1.5, 3.0, 1000.0, 123456.789] {
                let i = bucket_index(v, schema);
                let scale = 2f64.powi(-schema);
                let (low, high) = (
                    2f64.powf(f64::from(i - 1) * scale),
                    2f64.powf(f64::from(i) * scale),
                );
                assert!(
                    low < v * 1.000001 && v <= high * 1.000001,
                    "{v} in {i} at {schema}"
                );
            }
        }
    }

    #[test]
    fn past_the_limit_resolution_halves_and_nothing_is_lost() {
        let settings = NativeHistograms::default()
            .with_bucket_factor(1.1)
            .with_max_buckets(4);
        let mut state = NativeState::new(&settings);
        for v in [0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 100.0, -7.0] {
            state.observe(v, 2, &settings);
        }
        let (mut positive, mut negative) = (Vec::new(), Vec::new());
        state.copy_into(&mut positive, &mut negative);
        assert!(positive.len() + negative.len() <= 4);
        assert!(state.schema < 3);
        let total: u64 = positive.iter().chain(&negative).map(|b| b.1).sum();
        assert_eq!(total + state.zero_count, 16);
        assert_eq!(state.zero_count, 2);
        // Far-apart values halve until the range is small.
        let mut wide = NativeState::new(&NativeHistograms::default());
        wide.observe(1e-300, 1, &NativeHistograms::default());
        wide.observe(1e300, 1, &NativeHistograms::default());
        assert!(wide.positive.counts.len() <= 640);
        state.clear();
        assert_eq!(state.copy_into(&mut positive, &mut negative), (3, 0));
        assert!(positive.is_empty() && negative.is_empty());
    }
}
