//! The settings a store is bound with, and which of them a histogram family gets.

use super::family::Layout;
use super::NativeHistograms;
use crate::matcher::Matcher;

/// The settings a store is bound with (by the first server that starts on it).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) buckets: Vec<f64>,
    pub(crate) overrides: Vec<(Matcher, Vec<f64>)>,
    /// Native buckets for every histogram, if set.
    pub(crate) native: Option<NativeHistograms>,
    /// Native buckets for the histograms a matcher matches.
    pub(crate) native_overrides: Vec<(Matcher, NativeHistograms)>,
    /// Global labels, `(key, value)`, on every series without that key.
    pub(crate) global: Vec<(String, String)>,
}

/// The setting of the best match for `name`: a full match, else a prefix, else a suffix.
fn best_match<'a, T>(overrides: &'a [(Matcher, T)], name: &str) -> Option<&'a T> {
    let rank = |m: &Matcher| match m {
        Matcher::Full(_) => 0,
        Matcher::Prefix(_) => 1,
        Matcher::Suffix(_) => 2,
    };
    overrides
        .iter()
        .filter(|(m, _)| m.matches(name))
        .min_by_key(|(m, _)| rank(m))
        .map(|(_, setting)| setting)
}

impl Settings {
    /// The buckets of the histogram family `name`: its matcher's, else the defaults.
    pub(super) fn layout_for(&self, name: &str) -> Layout {
        let bounds = best_match(&self.overrides, name).unwrap_or(&self.buckets);
        Layout {
            bounds: bounds.as_slice().into(),
            native: best_match(&self.native_overrides, name)
                .copied()
                .or(self.native),
        }
    }
}
