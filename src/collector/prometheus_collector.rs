//! The collector that records into a porter-metrics pipeline.
//!
//! [`PrometheusCollector::new`] binds to the global pipeline (installing it as the `metrics`
//! global recorder on first use, so nothing recorded before the server starts is lost). A
//! collector from [`LocalRecorder::collector`](crate::LocalRecorder::collector) or
//! [`MetricsServer::collector`](crate::MetricsServer::collector) records into that pipeline.
//! Either way a call goes straight to the pipeline's layer, which finds the handle in this
//! thread's cache or its shared index: a warm call costs a hash and an atomic update.

use std::sync::Arc;

use metrics::Histogram;

use crate::handle::Handle;
use crate::pipeline::{self, Pipeline};
use crate::store::kind::Kind;
use crate::{key, Collector, Timer};

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
    target: Target,
}

#[derive(Clone)]
enum Target {
    Pipeline(Arc<Pipeline>),
    /// Another crate's global recorder was installed first: record through it.
    Foreign,
}

impl std::fmt::Debug for PrometheusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::Pipeline(p) => format!("pipeline {}", p.recorder().id()),
            Target::Foreign => "a foreign global recorder".to_owned(),
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
            Ok(global) => Target::Pipeline(global.clone()),
            Err(_) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "porter-metrics: another global metrics recorder is installed; PrometheusCollector records through it"
                    );
                });
                Target::Foreign
            }
        };
        Self { target }
    }

    pub(crate) fn for_pipeline(pipeline: Arc<Pipeline>) -> Self {
        Self {
            target: Target::Pipeline(pipeline),
        }
    }

    #[inline]
    fn with_handle<T>(
        &self,
        kind: Kind,
        name: &str,
        labels: &[&str],
        f: impl Fn(&Handle) -> T,
    ) -> T {
        match &self.target {
            Target::Pipeline(pipeline) => pipeline.recorder().with_pairs(kind, name, labels, f),
            Target::Foreign => foreign(kind, name, labels, f),
        }
    }

    fn histogram(&self, name: &str) -> Histogram {
        self.with_handle(Kind::Histogram, name, &[], |handle| {
            handle.clone().into_histogram()
        })
    }
}

/// Registers afresh with whatever recorder `metrics` has in scope (not ours).
#[cold]
fn foreign<T>(kind: Kind, name: &str, labels: &[&str], f: impl Fn(&Handle) -> T) -> T {
    use crate::handle::Counted;
    let (key, dangling) = key::from_pairs(name, labels);
    if dangling {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(metric = name, "porter-metrics: odd number of label strings; the last key has no value and was dropped");
        });
    }
    static METADATA: metrics::Metadata<'static> =
        metrics::Metadata::new("porter_metrics::collector", metrics::Level::INFO, None);
    metrics::with_recorder(|recorder| {
        let handle = Handle::Counted(match kind {
            Kind::Counter => Counted::Counter(recorder.register_counter(&key, &METADATA)),
            Kind::Gauge => Counted::Gauge(recorder.register_gauge(&key, &METADATA)),
            Kind::Histogram => Counted::Histogram(recorder.register_histogram(&key, &METADATA)),
        });
        f(&handle)
    })
}

impl Collector for PrometheusCollector {
    fn increment_counter(&self, name: &str, labels: &[&str]) {
        self.with_handle(Kind::Counter, name, labels, |handle| handle.increment(1));
    }

    fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
        self.with_handle(Kind::Histogram, name, labels, |handle| handle.record(value));
    }

    fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
        self.with_handle(Kind::Gauge, name, labels, |handle| handle.set(value));
    }

    /// Starts a timer recording into the histogram `name` (a long timer loses nothing to
    /// idle expiry: its series comes back when it records).
    fn start_timer(&self, name: &str) -> Timer {
        Timer::recording_into(self.histogram(name))
    }

    fn add_to_counter(&self, name: &str, n: u64, labels: &[&str]) {
        self.with_handle(Kind::Counter, name, labels, |handle| handle.increment(n));
    }

    fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]) {
        self.with_handle(Kind::Gauge, name, labels, |handle| handle.add(delta));
    }

    fn increment_counter_with_exemplar(&self, name: &str, labels: &[&str], exemplar: &[&str]) {
        self.with_handle(Kind::Counter, name, labels, |handle| {
            handle.increment_with_exemplar(1, exemplar)
        });
    }

    fn record_histogram_with_exemplar(
        &self,
        name: &str,
        value: f64,
        labels: &[&str],
        exemplar: &[&str],
    ) {
        self.with_handle(Kind::Histogram, name, labels, |handle| {
            handle.record_with_exemplar(value, exemplar)
        });
    }
}
