//! Exemplars as every encoder sees them, and their rules: which timestamp one carries
//! (its own when finite, else the time of the push), and which exemplars a push carries.

use crate::store::Pairs;

/// An exemplar: its labels (at most 128 characters of names and values), the value it was
/// recorded with, and when (seconds since the Unix epoch).
#[derive(Clone, Copy)]
pub(crate) struct Exemplar<'a> {
    pub(crate) labels: &'a Pairs,
    pub(crate) value: f64,
    pub(crate) timestamp: f64,
}

impl Exemplar<'_> {
    /// Its labels, `(name, value)`.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.labels.iter()
    }

    /// When it was recorded, in seconds since the Unix epoch, if that is known (finite).
    pub(crate) fn seconds(&self) -> Option<f64> {
        self.timestamp.is_finite().then_some(self.timestamp)
    }

    /// When it was recorded in ms since the Unix epoch, else `now_ms`.
    #[cfg(feature = "remote-write")]
    pub(crate) fn ms_or(&self, now_ms: i64) -> i64 {
        self.seconds()
            .map_or(now_ms, |s| (s * 1000.0).round() as i64)
    }

    /// When it was recorded in ns since the Unix epoch (after it), else `now_ns`.
    #[cfg(feature = "otlp")]
    pub(crate) fn ns_or(&self, now_ns: u64) -> u64 {
        self.seconds()
            .filter(|s| *s > 0.0)
            .map_or(now_ns, |s| (s * 1e9) as u64)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_is_its_own_when_finite_else_now() {
        let labels = Pairs::from_flat(&["trace_id", "a"]);
        let at = |timestamp| Exemplar {
            labels: &labels,
            value: 1.0,
            timestamp,
        };
        assert_eq!(at(1.5).ms_or(7), 1500);
        assert_eq!(at(f64::NAN).ms_or(7), 7);
        assert_eq!(at(2.0).ns_or(9), 2_000_000_000);
        assert_eq!(at(f64::INFINITY).ns_or(9), 9);
        assert_eq!(at(f64::NAN).seconds(), None);
        assert_eq!(at(1.0).pairs().collect::<Vec<_>>(), [("trace_id", "a")]);
    }
}
