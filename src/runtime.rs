//! Tokio runtime metrics (feature `runtime`): [`Builder::runtime_metrics`](crate::Builder::runtime_metrics).
//!
//! The tokio team's `tokio-metrics` measures; its `metrics` integration
//! (`RuntimeMetricsReporter`) records into the pipeline like any `metrics` macro. We only
//! run its reporter: on a thread of ours, once at bind and then every upkeep interval, so
//! the monitored runtime runs no task of ours and its request path is untouched. The
//! thread ends (within one interval) when the pipeline is dropped.
//!
//! On stable tokio (no `tokio_unstable`), the reporter records exactly these series. Its
//! gauges named `..._count` are renamed (`_count` is a histogram's series, which linters
//! and Prometheus' own `promtool` flag on a gauge):
//!
//! | name | type | what |
//! |---|---|---|
//! | `tokio_workers` | gauge | worker threads (tokio-metrics' `tokio_workers_count`) |
//! | `tokio_live_tasks` | gauge | tasks alive in the runtime |
//! | `tokio_global_queue_depth` | gauge | tasks waiting in the global (injection) queue |
//! | `tokio_total_busy_duration_total` | counter | microseconds the workers spent busy, all of them |
//! | `tokio_max_busy_duration_total`, `tokio_min_busy_duration_total` | counter | the busiest and idlest worker's busy microseconds, summed over refreshes |
//! | `tokio_busy_ratio` | gauge | busy time over wall time in the last interval, all workers (up to the worker count) |
//! | `tokio_total_parks`, `tokio_max_parks`, `tokio_min_parks` | gauge | times the workers parked in the last interval (all, most, least) |

use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_metrics::{RuntimeMetricsReporterBuilder, RuntimeMonitor};

/// Which runtime to measure.
#[derive(Clone, Debug)]
pub(crate) struct RuntimeSettings {
    pub(crate) handle: Handle,
}

/// Starts reporting `settings`' runtime into `recorder` every `interval`, on a thread of
/// ours, for as long as `recorder` is alive. A thread that cannot start is logged, and the
/// pipeline works on without runtime metrics.
pub(crate) fn start<R>(settings: &RuntimeSettings, recorder: &Arc<R>, interval: Duration)
where
    R: metrics::Recorder + Send + Sync + 'static,
{
    let monitor = RuntimeMonitor::new(&settings.handle);
    // The reporter resolves its handles now, in the pipeline's recorder (its gauges renamed).
    let mut reporter = metrics::with_local_recorder(&Renamed(&**recorder), || {
        RuntimeMetricsReporterBuilder::default()
            .with_interval(interval)
            .describe()
            .build_with_monitor(monitor)
    });
    reporter.run_once();
    let alive: Weak<R> = Arc::downgrade(recorder);
    let spawned = thread::Builder::new()
        .name("porter-metrics-runtime".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            while alive.strong_count() > 0 {
                let left = next.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    thread::park_timeout(left);
                    continue;
                }
                next = Instant::now() + interval;
                reporter.run_once();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "porter-metrics: cannot start the runtime metrics thread");
    }
}

/// A recorder that renames tokio-metrics' `..._count` gauges (see the module
/// documentation) on their way to `R`.
struct Renamed<'a, R>(&'a R);

fn gauge_name(name: &str) -> String {
    match name.strip_suffix("_count") {
        Some(base) => match base.strip_suffix("_park") {
            Some(park) => format!("{park}_parks"),
            None => base.to_owned(),
        },
        None => name.to_owned(),
    }
}

impl<R: metrics::Recorder> metrics::Recorder for Renamed<'_, R> {
    fn describe_counter(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        text: metrics::SharedString,
    ) {
        self.0.describe_counter(key, unit, text);
    }
    fn describe_gauge(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        text: metrics::SharedString,
    ) {
        let key = metrics::KeyName::from(gauge_name(key.as_str()));
        self.0.describe_gauge(key, unit, text);
    }
    fn describe_histogram(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        text: metrics::SharedString,
    ) {
        self.0.describe_histogram(key, unit, text);
    }
    fn register_counter(
        &self,
        key: &metrics::Key,
        metadata: &metrics::Metadata<'_>,
    ) -> metrics::Counter {
        self.0.register_counter(key, metadata)
    }
    fn register_gauge(
        &self,
        key: &metrics::Key,
        metadata: &metrics::Metadata<'_>,
    ) -> metrics::Gauge {
        let labels: Vec<metrics::Label> = key.labels().cloned().collect();
        let renamed = metrics::Key::from_parts(gauge_name(key.name()), labels);
        self.0.register_gauge(&renamed, metadata)
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        metadata: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        self.0.register_histogram(key, metadata)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn count_gauges_lose_their_suffix() {
        assert_eq!(super::gauge_name("tokio_workers_count"), "tokio_workers");
        assert_eq!(
            super::gauge_name("tokio_total_park_count"),
            "tokio_total_parks"
        );
        assert_eq!(super::gauge_name("tokio_busy_ratio"), "tokio_busy_ratio");
    }
}
