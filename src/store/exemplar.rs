//! Exemplars: the most recent labelled observation per counter, or per histogram bucket.
//!
//! A series has no exemplar slots until its first exemplar; each slot keeps its text
//! buffers, so replacing an exemplar allocates nothing once the slot has held one as long.
//! A label set must be valid label names over at most 128 characters of names and values
//! together (OpenMetrics' limit); others are dropped and counted.

use std::sync::{Mutex, OnceLock, PoisonError};

use super::names::is_legacy_label;
use super::self_metrics::ExemplarDrop;

/// OpenMetrics' limit on an exemplar's label names and values, in characters.
pub(crate) const MAX_EXEMPLAR_CHARS: usize = 128;

/// Label pairs in one text buffer.
#[derive(Default, Debug, Clone)]
pub(crate) struct Pairs {
    text: String,
    /// Per pair: where its key ends, where its value ends.
    ends: Vec<(usize, usize)>,
}

impl Pairs {
    /// Pairs from flat strings `key, value, ...`.
    #[cfg(test)]
    pub(crate) fn from_flat(pairs: &[&str]) -> Self {
        let mut out = Self::default();
        out.set(pairs);
        out
    }

    fn set(&mut self, pairs: &[&str]) {
        self.text.clear();
        self.ends.clear();
        for pair in pairs.chunks_exact(2) {
            self.text.push_str(pair[0]);
            let key_end = self.text.len();
            self.text.push_str(pair[1]);
            self.ends.push((key_end, self.text.len()));
        }
    }

    fn copy_from(&mut self, other: &Pairs) {
        self.text.clone_from(&other.text);
        self.ends.clone_from(&other.ends);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|e| e.1));
        self.ends
            .iter()
            .zip(starts)
            .filter_map(|(&(key_end, end), start)| {
                Some((self.text.get(start..key_end)?, self.text.get(key_end..end)?))
            })
    }
}

/// One exemplar: its labels, the value it was recorded with, and when (Unix seconds).
#[derive(Default, Debug)]
struct Slot {
    labels: Pairs,
    value: f64,
    timestamp: f64,
    set: bool,
}

/// The exemplar slots of one series (one for a counter, one per bucket for a histogram).
#[derive(Default, Debug)]
pub(crate) struct Exemplars(OnceLock<Box<[Mutex<Slot>]>>);

/// Whether flat pairs make a usable exemplar label set.
pub(crate) fn check(pairs: &[&str]) -> Result<(), ExemplarDrop> {
    if pairs.len() % 2 == 1 || pairs.chunks_exact(2).any(|p| !is_legacy_label(p[0])) {
        return Err(ExemplarDrop::InvalidLabel);
    }
    let chars: usize = pairs.iter().map(|s| s.chars().count()).sum();
    if chars > MAX_EXEMPLAR_CHARS {
        return Err(ExemplarDrop::TooLong);
    }
    Ok(())
}

impl Exemplars {
    /// Keeps the exemplar `pairs` (checked by [`check`]) for slot `at` of `slots`.
    pub(crate) fn record(&self, slots: usize, at: usize, pairs: &[&str], value: f64) {
        let all = self
            .0
            .get_or_init(|| (0..slots).map(|_| Mutex::default()).collect());
        let Some(slot) = all.get(at) else { return };
        let timestamp = super::unix_now().as_secs_f64();
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.labels.set(pairs);
        slot.value = value;
        slot.timestamp = timestamp;
        slot.set = true;
    }

    /// Forgets every exemplar (the series is reused).
    pub(crate) fn clear(&self) {
        for slot in self.0.get().into_iter().flatten() {
            slot.lock().unwrap_or_else(PoisonError::into_inner).set = false;
        }
    }

    /// Whether any exemplar was ever kept.
    pub(crate) fn any(&self) -> bool {
        self.0.get().is_some()
    }

    /// Copies slot `at` into `out`; returns its value and timestamp.
    pub(crate) fn read(&self, at: usize, out: &mut Pairs) -> Option<(f64, f64)> {
        let slot = self.0.get()?.get(at)?;
        let slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.set {
            return None;
        }
        out.copy_from(&slot.labels);
        Some((slot.value, slot.timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_are_checked_and_kept_per_slot() {
        assert_eq!(check(&["trace_id", "abc"]), Ok(()));
        assert_eq!(check(&["trace-id", "abc"]), Err(ExemplarDrop::InvalidLabel));
        assert_eq!(check(&["trace_id"]), Err(ExemplarDrop::InvalidLabel));
        let long = "x".repeat(121);
        assert_eq!(check(&["trace_id", &long]), Err(ExemplarDrop::TooLong));
        let exemplars = Exemplars::default();
        assert!(!exemplars.any());
        exemplars.record(3, 1, &["trace_id", "a\"b", "span", "s"], 0.5);
        let mut out = Pairs::default();
        assert_eq!(exemplars.read(0, &mut out), None);
        assert!(exemplars
            .read(1, &mut out)
            .is_some_and(|(v, t)| v == 0.5 && t > 0.0));
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            [("trace_id", "a\"b"), ("span", "s")]
        );
        exemplars.clear();
        assert_eq!(exemplars.read(1, &mut out), None);
    }
}
