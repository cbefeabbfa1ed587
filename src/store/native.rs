//! Native histograms: sparse exponential buckets, as client_golang keeps them.
//!
//! Bucket `i` of schema `s` counts the observations `v` with
//! `2^((i-1)/2^s) < |v| <= 2^(i/2^s)` (negative ones in buckets of their own), and a zero
//! bucket those with `|v| <= zero_threshold`. A histogram holds only the buckets it has
//! seen; past `max_buckets` it halves its resolution (schema - 1, merging pairs), as
//! client_golang does, down to schema -4.

use std::collections::BTreeMap;

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

/// The native buckets of one series.
#[derive(Debug)]
pub(crate) struct NativeState {
    pub(crate) schema: i32,
    pub(crate) zero_count: u64,
    pub(crate) positive: BTreeMap<i32, u64>,
    pub(crate) negative: BTreeMap<i32, u64>,
}

impl NativeState {
    pub(crate) fn new(settings: &NativeHistograms) -> Self {
        Self {
            schema: settings.schema(),
            zero_count: 0,
            positive: BTreeMap::new(),
            negative: BTreeMap::new(),
        }
    }

    /// Counts `value` (finite) `n` times; halves the resolution while over the limit.
    pub(crate) fn observe(&mut self, value: f64, n: u64, settings: &NativeHistograms) {
        let magnitude = value.abs();
        if magnitude <= settings.zero_threshold {
            self.zero_count += n;
            return;
        }
        let index = bucket_index(magnitude, self.schema);
        let buckets = if value > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        *buckets.entry(index).or_insert(0) += n;
        while self.positive.len() + self.negative.len() > settings.max_buckets as usize
            && self.schema > -4
        {
            self.halve();
        }
    }

    /// Schema - 1: bucket `i` joins bucket `ceil(i / 2)`.
    fn halve(&mut self) {
        self.schema -= 1;
        for buckets in [&mut self.positive, &mut self.negative] {
            let old = std::mem::take(buckets);
            for (index, count) in old {
                *buckets.entry((index + 1).div_euclid(2)).or_insert(0) += count;
            }
        }
    }

    /// Moves every count of `from` into `self`, at the coarser of the two schemas.
    pub(crate) fn absorb(&mut self, from: &mut NativeState) {
        while self.schema > from.schema {
            self.halve();
        }
        while from.schema > self.schema {
            from.halve();
        }
        self.zero_count += std::mem::take(&mut from.zero_count);
        for (to, from) in [
            (&mut self.positive, &mut from.positive),
            (&mut self.negative, &mut from.negative),
        ] {
            for (index, count) in std::mem::take(from) {
                *to.entry(index).or_insert(0) += count;
            }
        }
    }

    /// Every observation counted here.
    #[cfg(test)]
    fn count(&self) -> u64 {
        self.zero_count + self.positive.values().sum::<u64>() + self.negative.values().sum::<u64>()
    }
}

/// The bucket of a positive, finite magnitude above the zero threshold.
fn bucket_index(magnitude: f64, schema: i32) -> i32 {
    let scaled = magnitude.log2() * 2f64.powi(schema);
    // Clamped: magnitudes span about ±1075 powers of two, times 2^8 at most.
    scaled.ceil().clamp(-(1 << 20) as f64, (1 << 20) as f64) as i32
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
        assert!(state.positive.len() + state.negative.len() <= 4);
        assert!(state.schema < 3);
        assert_eq!(state.count(), 16);
        assert_eq!(state.zero_count, 2);
    }
}
