//! A pipeline the caller holds: no listener, no global install.
//!
//! Tests running in parallel in one process each build their own [`LocalRecorder`], record
//! through its [`collector`](LocalRecorder::collector) or, for the macros, inside
//! `metrics::with_local_recorder`, and read the exposition with
//! [`render`](LocalRecorder::render). It applies the same layer, limits and buckets as a
//! server, and its upkeep thread ends when the last clone is dropped.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::{Builder, PrometheusCollector};

/// A metrics pipeline held by the caller; see the module documentation.
///
/// ```
/// use porter_metrics::{Collector, LocalRecorder};
///
/// let recorder = LocalRecorder::new();
/// recorder.collector().record_gauge("in_flight", 3.0, &[]);
/// metrics::with_local_recorder(&recorder, || metrics::counter!("macro_total").increment(2));
/// let text = recorder.render();
/// assert!(text.contains("in_flight 3"));
/// assert!(text.contains("macro_total 2"));
/// ```
#[derive(Clone)]
pub struct LocalRecorder {
    pipeline: Arc<Pipeline>,
}

impl std::fmt::Debug for LocalRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRecorder")
            .field("layer", self.pipeline.recorder())
            .finish()
    }
}

impl Default for LocalRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalRecorder {
    /// A local recorder with default settings (see [`Builder::build_local`] for others).
    ///
    /// ```
    /// let recorder = porter_metrics::LocalRecorder::new();
    /// // The self-metrics are there from the start:
    /// assert!(recorder.render().contains("porter_metrics_series 0"));
    /// ```
    pub fn new() -> Self {
        Builder::new().build_local()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let pipeline = Pipeline::new(config.limits);
        pipeline.bind(&config);
        Self { pipeline }
    }

    pub(crate) fn from_pipeline(pipeline: Arc<Pipeline>) -> Self {
        Self { pipeline }
    }

    /// Its pipeline.
    #[cfg(feature = "testing")]
    pub(crate) fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// A collector recording into this pipeline.
    ///
    /// ```
    /// use porter_metrics::{Collector, LocalRecorder};
    ///
    /// let recorder = LocalRecorder::new();
    /// let collector = recorder.collector();
    /// std::thread::spawn(move || collector.increment_counter("jobs_total", &[])).join().unwrap();
    /// assert!(recorder.render().contains("jobs_total 1"));
    /// ```
    pub fn collector(&self) -> PrometheusCollector {
        PrometheusCollector::for_pipeline(self.pipeline.clone())
    }

    /// The text exposition of everything recorded so far (empty for a standalone server's
    /// pipeline before it starts).
    ///
    /// ```
    /// use porter_metrics::{testing::Exposition, Collector, LocalRecorder};
    ///
    /// let recorder = LocalRecorder::new();
    /// recorder.collector().record_gauge("queue_size", 4.0, &["queue", "default"]);
    /// let text = recorder.render();
    /// assert!(text.contains("# TYPE queue_size gauge"));
    /// let scrape = Exposition::parse(&text).expect("a valid exposition");
    /// assert_eq!(scrape.value("queue_size", &["queue", "default"]), Some(4.0));
    /// ```
    pub fn render(&self) -> String {
        self.pipeline.render_text(&[])
    }

    /// Runs upkeep now, as the upkeep thread does periodically: expires idle series and
    /// refreshes process metrics. Histograms need none: an observation is in its bucket at
    /// once.
    ///
    /// ```
    /// use porter_metrics::{Collector, LocalRecorder};
    ///
    /// let recorder = LocalRecorder::new();
    /// recorder.collector().record_histogram("latency_seconds", 0.3, &[]);
    /// assert!(recorder.render().contains(r#"latency_seconds_bucket{le="0.5"} 1"#));
    /// recorder.run_upkeep(); // nothing to expire: no idle timeout
    /// assert!(recorder.render().contains(r#"latency_seconds_bucket{le="0.5"} 1"#));
    /// ```
    pub fn run_upkeep(&self) {
        self.pipeline.run_upkeep();
    }
}

/// Forwards to the pipeline's layer.
impl Recorder for LocalRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.pipeline
            .recorder()
            .describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.pipeline
            .recorder()
            .describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.pipeline
            .recorder()
            .describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.pipeline.recorder().register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.pipeline.recorder().register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.pipeline.recorder().register_histogram(key, metadata)
    }
}
