//! Exemplars: the most recent labelled observation per counter, or per histogram bucket.
//!
//! A series has no exemplar slots until its first exemplar; each slot keeps its label
//! text buffer, so replacing an exemplar allocates nothing once the slot has held one as
//! long. A label set must be valid label names over at most 128 characters of names and
//! values together (OpenMetrics' limit); others are dropped and counted.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::kind::Kind;
use super::labels;
use super::rules;
use super::self_metrics::ExemplarDrop;

/// OpenMetrics' limit on an exemplar's label names and values, in characters.
pub(crate) const MAX_EXEMPLAR_CHARS: usize = 128;

/// One exemplar: its rendered label set, the value, and when (Unix seconds).
#[derive(Default, Debug)]
pub(crate) struct Slot {
    pub(crate) labels: String,
    pub(crate) value: f64,
    pub(crate) timestamp: f64,
    pub(crate) set: bool,
}

/// The exemplar slots of one series (one for a counter, one per bucket for a histogram):
/// one word in the series until the first exemplar.
#[derive(Default, Debug)]
pub(crate) struct Exemplars(OnceLock<Box<Slots>>);

#[derive(Debug)]
struct Slots(Box<[Mutex<Slot>]>);

/// Whether flat pairs make a usable exemplar label set.
pub(crate) fn check(pairs: &[&str]) -> Result<(), ExemplarDrop> {
    if pairs.len() % 2 == 1
        || pairs
            .chunks_exact(2)
            .any(|p| !rules::is_label_key(p[0], Kind::Counter))
    {
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
            .get_or_init(|| Box::new(Slots((0..slots).map(|_| Mutex::default()).collect())));
        let Some(slot) = all.0.get(at) else { return };
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.labels.clear();
        for (i, pair) in pairs.chunks_exact(2).enumerate() {
            if i > 0 {
                slot.labels.push(',');
            }
            labels::pair(&mut slot.labels, pair[0], pair[1]);
        }
        slot.value = value;
        slot.timestamp = timestamp;
        slot.set = true;
    }

    /// Whether any exemplar was ever kept.
    pub(crate) fn any(&self) -> bool {
        self.0.get().is_some()
    }

    /// Copies slot `at` into `out`'s label buffer; returns its value and timestamp.
    pub(crate) fn read(&self, at: usize, out: &mut String) -> Option<(f64, f64)> {
        let slot = self.0.get()?.0.get(at)?;
        let slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.set {
            return None;
        }
        out.clear();
        out.push_str(&slot.labels);
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
        exemplars.record(3, 1, &["trace_id", "a\"b"], 0.5);
        let mut out = String::new();
        assert_eq!(exemplars.read(0, &mut out), None);
        assert!(exemplars
            .read(1, &mut out)
            .is_some_and(|(v, t)| v == 0.5 && t > 0.0));
        assert_eq!(out, r#"trace_id="a\"b""#);
    }
}
