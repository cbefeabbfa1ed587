//! The collector that records into the Prometheus pipeline.
//!
//! [`PrometheusCollector::new`] records through the `metrics` recorder in scope, exactly as the
//! macros do: porter-metrics' global pipeline (installed on first use, so nothing recorded
//! before the server starts is lost: it is buffered and handed over), or a recorder set with
//! `metrics::with_local_recorder`. A collector from [`LocalRecorder::collector`] or
//! [`MetricsServer::collector`](crate::MetricsServer::collector) records into that pipeline
//! only. Either way, warm calls go through the per-thread handle cache
//! ([`crate::cache`]) and cost a hash and an atomic update.
//!
//! [`LocalRecorder::collector`]: crate::LocalRecorder::collector

use std::sync::Arc;

use metrics::Histogram;

use crate::cache::{self, Handle};
use crate::pipeline::{self, Pipeline};
use crate::policy::Kind;
use crate::{Collector, Timer};

/// A [`Collector`] over the `metrics` facade, exported by the [`MetricsServer`](crate::MetricsServer).
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
    /// Whatever recorder is in scope, as for the macros.
    Scoped,
    /// One pipeline.
    Pipeline(Arc<Pipeline>),
}

impl std::fmt::Debug for PrometheusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::Scoped => "scoped".to_owned(),
            Target::Pipeline(p) => format!("pipeline {}", p.id),
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
    /// no recorder is installed yet. If another crate's recorder is, records go to that one.
    ///
    /// ```
    /// use porter_metrics::{Collector, PrometheusCollector};
    /// let collector = PrometheusCollector::new();
    /// collector.increment_counter("requests_total", &["method", "GET"]);
    /// ```
    pub fn new() -> Self {
        if pipeline::global().is_err() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "porter-metrics: another global metrics recorder is installed; PrometheusCollector records through it"
                );
            });
        }
        Self {
            target: Target::Scoped,
        }
    }

    pub(crate) fn for_pipeline(pipeline: Arc<Pipeline>) -> Self {
        Self {
            target: Target::Pipeline(pipeline),
        }
    }

    fn with_handle<T>(
        &self,
        kind: Kind,
        name: &str,
        labels: &[&str],
        f: impl Fn(&Handle) -> T,
    ) -> T {
        match &self.target {
            Target::Pipeline(pipeline) => cache::with_handle(pipeline, kind, name, labels, f),
            Target::Scoped => metrics::with_recorder(|recorder| {
                match pipeline::installed().filter(|_| pipeline::is_global(recorder)) {
                    Some(global) => cache::with_handle(global, kind, name, labels, f),
                    None => cache::uncached(recorder, kind, name, labels, f),
                }
            }),
        }
    }

    fn histogram(&self, name: &str) -> Histogram {
        self.with_handle(Kind::Histogram, name, &[], |handle| match handle {
            Handle::Histogram(h) => h.clone(),
            _ => Histogram::noop(),
        })
    }
}

impl Collector for PrometheusCollector {
    fn increment_counter(&self, name: &str, labels: &[&str]) {
        self.with_handle(Kind::Counter, name, labels, |handle| {
            if let Handle::Counter(counter) = handle {
                counter.increment(1);
            }
        });
    }

    fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
        self.with_handle(Kind::Histogram, name, labels, |handle| {
            if let Handle::Histogram(histogram) = handle {
                histogram.record(value);
            }
        });
    }

    fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
        self.with_handle(Kind::Gauge, name, labels, |handle| {
            if let Handle::Gauge(gauge) = handle {
                gauge.set(value);
            }
        });
    }

    /// Starts a timer recording into the histogram `name` (its buffer survives the
    /// exporter's idle expiry, so a long timer loses nothing).
    fn start_timer(&self, name: &str) -> Timer {
        Timer::recording_into(self.histogram(name))
    }
}
