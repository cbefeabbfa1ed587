//! What a call resolves to: a registered `metrics` handle of one of the three kinds.

use metrics::{Counter, Gauge, Histogram};

/// The three kinds of metric the `metrics` facade knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A registered handle.
#[derive(Clone)]
pub(crate) enum Handle {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Handle {
    pub(crate) fn into_counter(self) -> Counter {
        match self {
            Handle::Counter(c) => c,
            _ => Counter::noop(),
        }
    }

    pub(crate) fn into_gauge(self) -> Gauge {
        match self {
            Handle::Gauge(g) => g,
            _ => Gauge::noop(),
        }
    }

    pub(crate) fn into_histogram(self) -> Histogram {
        match self {
            Handle::Histogram(h) => h,
            _ => Histogram::noop(),
        }
    }
}
