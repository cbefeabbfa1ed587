//! A recorder that keeps what is recorded before the exporter exists, then hands it over.
//!
//! The global pipeline exists from the first [`PrometheusCollector::new`] on, but its exporter
//! is built with the settings of the [`MetricsServer`](crate::MetricsServer) that starts it.
//! Anything recorded earlier lands here: counters and gauges keep their value, histograms
//! (which the layer's upkeep drains into this recorder) keep their observations up to a
//! bounded budget, descriptions are replayed. When the exporter arrives, every buffered
//! series is registered with it, its value moved over, and the handles already given out
//! forward to the exporter's from then on.
//!
//! [`PrometheusCollector::new`]: crate::PrometheusCollector::new

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Level, Metadata,
    Recorder, SharedString, Unit,
};

use crate::handle::Kind;

/// Histogram observations kept, across all series, before the exporter exists.
pub(crate) const MAX_BUFFERED_OBSERVATIONS: usize = 100_000;

static BIND_METADATA: Metadata<'static> =
    Metadata::new("porter_metrics::pending", Level::INFO, Some(module_path!()));

#[derive(Default)]
struct Buffer {
    counters: HashMap<Key, Arc<LateCounter>>,
    gauges: HashMap<Key, Arc<LateGauge>>,
    histograms: HashMap<Key, Arc<LateHistogram>>,
    descriptions: Vec<(Kind, KeyName, Option<Unit>, SharedString)>,
}

/// See the module documentation.
pub(crate) struct Pending<R> {
    target: OnceLock<R>,
    buffer: Mutex<Buffer>,
    budget: Arc<Budget>,
}

/// The shared bound on buffered histogram observations.
struct Budget {
    used: AtomicUsize,
    dropped: AtomicU64,
}

impl Budget {
    fn take(&self, count: usize) -> bool {
        let ok = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(count)
                    .filter(|n| *n <= MAX_BUFFERED_OBSERVATIONS)
            })
            .is_ok();
        if !ok && self.dropped.fetch_add(count as u64, Ordering::Relaxed) == 0 {
            tracing::warn!(
                "porter-metrics: {MAX_BUFFERED_OBSERVATIONS} histogram observations buffered before the exporter started; further ones are dropped and counted"
            );
        }
        ok
    }
}

impl<R: Recorder> Pending<R> {
    pub(crate) fn new() -> Self {
        Self {
            target: OnceLock::new(),
            buffer: Mutex::new(Buffer::default()),
            budget: Arc::new(Budget {
                used: AtomicUsize::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Hands everything buffered over to `target`. Returns it back if already bound.
    pub(crate) fn bind(&self, target: R) -> Result<(), R> {
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        self.target.set(target)?;
        let Some(target) = self.target.get() else {
            return Ok(());
        };
        let buffer = std::mem::take(&mut *buffer);
        for (kind, name, unit, text) in buffer.descriptions {
            match kind {
                Kind::Counter => target.describe_counter(name, unit, text),
                Kind::Gauge => target.describe_gauge(name, unit, text),
                Kind::Histogram => target.describe_histogram(name, unit, text),
            }
        }
        for (key, late) in buffer.counters {
            late.bind(target.register_counter(&key, &BIND_METADATA));
        }
        for (key, late) in buffer.gauges {
            late.bind(target.register_gauge(&key, &BIND_METADATA));
        }
        for (key, late) in buffer.histograms {
            late.bind(target.register_histogram(&key, &BIND_METADATA));
        }
        Ok(())
    }

    /// Observations dropped because the buffer was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.budget.dropped.load(Ordering::Relaxed)
    }

    /// Runs `direct` on the target if bound, else `buffered` on the buffer. Re-checks under
    /// the lock, so nothing is buffered after the hand-over.
    fn with<T>(&self, direct: impl FnOnce(&R) -> T, buffered: impl FnOnce(&mut Buffer) -> T) -> T {
        if let Some(target) = self.target.get() {
            return direct(target);
        }
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        match self.target.get() {
            Some(target) => {
                drop(buffer);
                direct(target)
            }
            None => buffered(&mut buffer),
        }
    }

    fn describe(&self, kind: Kind, name: KeyName, unit: Option<Unit>, text: SharedString) {
        self.with(
            |t| match kind {
                Kind::Counter => t.describe_counter(name.clone(), unit, text.clone()),
                Kind::Gauge => t.describe_gauge(name.clone(), unit, text.clone()),
                Kind::Histogram => t.describe_histogram(name.clone(), unit, text.clone()),
            },
            |b| {
                b.descriptions
                    .push((kind, name.clone(), unit, text.clone()))
            },
        );
    }
}

impl<R: Recorder> Recorder for Pending<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Counter, key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Gauge, key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Histogram, key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.with(
            |t| t.register_counter(key, metadata),
            |b| Counter::from_arc(b.counters.entry(key.clone()).or_default().clone()),
        )
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.with(
            |t| t.register_gauge(key, metadata),
            |b| Gauge::from_arc(b.gauges.entry(key.clone()).or_default().clone()),
        )
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.with(
            |t| t.register_histogram(key, metadata),
            |b| {
                let late = b.histograms.entry(key.clone()).or_insert_with(|| {
                    Arc::new(LateHistogram {
                        real: OnceLock::new(),
                        samples: Mutex::new(Vec::new()),
                        budget: self.budget.clone(),
                    })
                });
                Histogram::from_arc(late.clone())
            },
        )
    }
}

/// Applies `op` to the real handle once bound, else to the buffered state, under the lock
/// that [`bind`](LateCounter::bind) also takes, so no update is lost in the hand-over.
fn late_apply<H, S>(
    real: &OnceLock<H>,
    state: &Mutex<S>,
    direct: impl FnOnce(&H),
    buffered: impl FnOnce(&mut S),
) {
    if let Some(real) = real.get() {
        return direct(real);
    }
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    match real.get() {
        Some(real) => {
            drop(state);
            direct(real);
        }
        None => buffered(&mut state),
    }
}

#[derive(Default)]
struct LateCounter {
    real: OnceLock<Counter>,
    value: Mutex<u64>,
}

impl LateCounter {
    fn bind(&self, real: Counter) {
        let mut value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        real.increment(*value);
        *value = 0;
        let _ = self.real.set(real);
    }
}

impl CounterFn for LateCounter {
    fn increment(&self, v: u64) {
        late_apply(
            &self.real,
            &self.value,
            |c| c.increment(v),
            |s| *s = s.saturating_add(v),
        );
    }

    fn absolute(&self, v: u64) {
        late_apply(
            &self.real,
            &self.value,
            |c| c.absolute(v),
            |s| *s = (*s).max(v),
        );
    }
}

#[derive(Default)]
struct LateGauge {
    real: OnceLock<Gauge>,
    value: Mutex<f64>,
}

impl LateGauge {
    fn bind(&self, real: Gauge) {
        let value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        real.set(*value);
        let _ = self.real.set(real);
    }
}

impl GaugeFn for LateGauge {
    fn increment(&self, v: f64) {
        late_apply(&self.real, &self.value, |g| g.increment(v), |s| *s += v);
    }

    fn decrement(&self, v: f64) {
        late_apply(&self.real, &self.value, |g| g.decrement(v), |s| *s -= v);
    }

    fn set(&self, v: f64) {
        late_apply(&self.real, &self.value, |g| g.set(v), |s| *s = v);
    }
}

struct LateHistogram {
    real: OnceLock<Histogram>,
    samples: Mutex<Vec<(f64, usize)>>,
    budget: Arc<Budget>,
}

impl LateHistogram {
    fn bind(&self, real: Histogram) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        for (value, count) in samples.drain(..) {
            real.record_many(value, count);
        }
        let _ = self.real.set(real);
    }
}

impl HistogramFn for LateHistogram {
    fn record(&self, value: f64) {
        self.record_many(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        late_apply(
            &self.real,
            &self.samples,
            |h| h.record_many(value, count),
            |s| {
                if self.budget.take(count) {
                    s.push((value, count));
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::DebuggingRecorder;

    #[test]
    fn values_recorded_before_binding_are_handed_over() {
        let pending = Pending::new();
        let key = Key::from_name("c");
        let counter = pending.register_counter(&key, &BIND_METADATA);
        counter.increment(3);
        counter.absolute(2);
        let gauge = pending.register_gauge(&Key::from_name("g"), &BIND_METADATA);
        gauge.set(5.0);
        gauge.decrement(1.5);
        let histogram = pending.register_histogram(&Key::from_name("h"), &BIND_METADATA);
        histogram.record(0.5);
        histogram.record_many(1.5, 2);

        let debugging = DebuggingRecorder::new();
        let snapshotter = debugging.snapshotter();
        assert!(pending.bind(debugging).is_ok());
        counter.increment(1);

        let snapshot = snapshotter.snapshot().into_hashmap();
        let value = |name: &str| {
            snapshot
                .iter()
                .find(|(k, _)| k.key().name() == name)
                .map(|(_, (_, _, v))| format!("{v:?}"))
                .unwrap_or_default()
        };
        assert_eq!(value("c"), "Counter(4)");
        assert_eq!(value("g"), "Gauge(3.5)");
        assert_eq!(value("h"), "Histogram([0.5, 1.5, 1.5])");
        assert!(pending.bind(DebuggingRecorder::new()).is_err());
    }
}
