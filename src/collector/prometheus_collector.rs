//! The collector that records into a porter-metrics pipeline.
//!
//! [`PrometheusCollector::new`] binds to the global pipeline (installing it as the `metrics`
//! global recorder on first use, so nothing recorded before the server starts is lost). A
//! collector from [`LocalRecorder::collector`](crate::LocalRecorder::collector) or
//! [`MetricsServer::collector`](crate::MetricsServer::collector) records into that pipeline.
//! Either way a call goes straight to the pipeline's layer, which finds the handle in this
//! thread's cache or its shared index: a warm call costs a hash and an atomic update.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use metrics::{Histogram, Key, Label};

use crate::pipeline::{self, Pipeline};
use crate::store::family::Op;
use crate::store::kind::Kind;
use crate::{Collector, Timer};

/// A [`Collector`] exported by the [`MetricsServer`](crate::MetricsServer).
///
/// Cloning is cheap; clones share everything.
///
/// ```
/// use porter_metrics::{Collector, LocalRecorder};
///
/// let recorder = LocalRecorder::new();
/// let collector = recorder.collector();
/// collector.increment_counter("requests_total", &["method", "GET"]);
/// collector.increment_counter("requests_total", &["method", "GET"]);
/// assert!(recorder.render().contains(r#"requests_total{method="GET"} 2"#));
/// ```
#[derive(Clone)]
pub struct PrometheusCollector {
    target: Destination,
}

#[derive(Clone)]
enum Destination {
    Pipeline(Arc<Pipeline>),
    /// Another crate's global recorder was installed first: record through it.
    Foreign,
}

impl std::fmt::Debug for PrometheusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Destination::Pipeline(p) => format!("pipeline {}", p.recorder().id()),
            Destination::Foreign => "a foreign global recorder".to_owned(),
        };
        f.debug_struct("PrometheusCollector")
            .field("target", &target)
            .finish()
    }
}

impl Default for PrometheusCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusCollector {
    /// The collector of the global pipeline; installs it as the `metrics` global recorder if
    /// no recorder is installed yet. If another crate's recorder is, records go to that one
    /// (uncached, through `metrics::with_recorder`), and a warning is logged once.
    ///
    /// ```
    /// use porter_metrics::{Collector, PrometheusCollector};
    /// let collector = PrometheusCollector::new();
    /// collector.increment_counter("requests_total", &["method", "GET"]);
    /// ```
    pub fn new() -> Self {
        let target = match pipeline::global() {
            Ok(global) => Destination::Pipeline(global.clone()),
            Err(_) => {
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "porter-metrics: another global metrics recorder is installed; PrometheusCollector records through it"
                    );
                }
                Destination::Foreign
            }
        };
        Self { target }
    }

    pub(crate) fn for_pipeline(pipeline: Arc<Pipeline>) -> Self {
        Self {
            target: Destination::Pipeline(pipeline),
        }
    }

    /// Runs `op` on the series of a call, in the pipeline; through the foreign recorder,
    /// calls `foreign` with the call's `metrics` key instead.
    #[inline]
    fn record(
        &self,
        kind: Kind,
        name: &str,
        labels: &[&str],
        op: Op<'_>,
        foreign: impl FnOnce(&dyn metrics::Recorder, &Key),
    ) {
        match &self.target {
            Destination::Pipeline(pipeline) => {
                pipeline.recorder().write_pairs(kind, name, labels, op)
            }
            Destination::Foreign => through_foreign(name, labels, foreign),
        }
    }
}

static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new("porter_metrics::collector", metrics::Level::INFO, None);

/// Registers afresh with whatever recorder `metrics` has in scope (not ours).
#[cold]
fn through_foreign(name: &str, labels: &[&str], f: impl FnOnce(&dyn metrics::Recorder, &Key)) {
    if labels.len() % 2 == 1 {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(metric = name, "porter-metrics: odd number of label strings; the last key has no value and was dropped");
        }
    }
    let labels: Vec<Label> = labels
        .chunks_exact(2)
        .map(|pair| Label::new(pair[0].to_owned(), pair[1].to_owned()))
        .collect();
    let key = Key::from_parts(name.to_owned(), labels);
    metrics::with_recorder(|recorder| f(recorder, &key));
}

impl PrometheusCollector {
    /// Runs `describe` with the recorder this collector records into.
    fn describe(&self, describe: impl FnOnce(&dyn metrics::Recorder)) {
        match &self.target {
            Destination::Pipeline(pipeline) => describe(&**pipeline.recorder()),
            Destination::Foreign => metrics::with_recorder(|r| describe(r)),
        }
    }
}

impl Collector for PrometheusCollector {
    fn describe_counter(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        let (name, help) = (name.to_owned(), help.to_owned());
        self.describe(|r| r.describe_counter(name.into(), unit, help.into()));
    }

    fn describe_gauge(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        let (name, help) = (name.to_owned(), help.to_owned());
        self.describe(|r| r.describe_gauge(name.into(), unit, help.into()));
    }

    fn describe_histogram(&self, name: &str, unit: Option<metrics::Unit>, help: &str) {
        let (name, help) = (name.to_owned(), help.to_owned());
        self.describe(|r| r.describe_histogram(name.into(), unit, help.into()));
    }

    fn increment_counter(&self, name: &str, labels: &[&str]) {
        self.add_to_counter(name, 1, labels);
    }

    fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
        self.record(
            Kind::Histogram,
            name,
            labels,
            Op::Observe(value, 1),
            |r, key| r.register_histogram(key, &METADATA).record(value),
        );
    }

    fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
        self.record(Kind::Gauge, name, labels, Op::Set(value), |r, key| {
            r.register_gauge(key, &METADATA).set(value)
        });
    }

    /// Starts a timer recording into the histogram `name` (a long timer loses nothing to
    /// idle expiry: its series stays for it).
    fn start_timer(&self, name: &str) -> Timer {
        let histogram = match &self.target {
            Destination::Pipeline(pipeline) => Histogram::from_arc(pipeline.recorder().timer(name)),
            Destination::Foreign => {
                let mut histogram = Histogram::noop();
                through_foreign(name, &[], |r, key| {
                    histogram = r.register_histogram(key, &METADATA)
                });
                histogram
            }
        };
        Timer::recording_into(histogram)
    }

    fn add_to_counter(&self, name: &str, n: u64, labels: &[&str]) {
        self.record(Kind::Counter, name, labels, Op::Add(n), |r, key| {
            r.register_counter(key, &METADATA).increment(n)
        });
    }

    fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]) {
        self.record(Kind::Gauge, name, labels, Op::AddF64(delta), |r, key| {
            r.register_gauge(key, &METADATA).increment(delta)
        });
    }

    fn increment_counter_with_exemplar(&self, name: &str, labels: &[&str], exemplar: &[&str]) {
        self.record(
            Kind::Counter,
            name,
            labels,
            Op::AddWithExemplar(1, exemplar),
            |r, key| r.register_counter(key, &METADATA).increment(1),
        );
    }

    fn record_histogram_with_exemplar(
        &self,
        name: &str,
        value: f64,
        labels: &[&str],
        exemplar: &[&str],
    ) {
        self.record(
            Kind::Histogram,
            name,
            labels,
            Op::ObserveWithExemplar(value, exemplar),
            |r, key| r.register_histogram(key, &METADATA).record(value),
        );
    }
}
