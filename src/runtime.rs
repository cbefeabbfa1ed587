//! Tokio runtime metrics (feature `runtime`): [`Builder::runtime_metrics`](crate::Builder::runtime_metrics).
//!
//! The tokio team's `tokio-metrics` measures; its `metrics` integration
//! (`RuntimeMetricsReporter`) records into the pipeline like any `metrics` macro. We only
//! run its reporter: on a thread of ours, once at bind and then every upkeep interval, so
//! the monitored runtime runs no task of ours and its request path is untouched. The
//! thread ends (within one interval) when the pipeline is dropped.
//!
//! On stable tokio (no `tokio_unstable`), the reporter records exactly these series:
//!
//! | name | type | what |
//! |---|---|---|
//! | `tokio_workers_count` | gauge | worker threads |
//! | `tokio_live_tasks_count` | gauge | tasks alive in the runtime |
//! | `tokio_global_queue_depth` | gauge | tasks waiting in the global (injection) queue |
//! | `tokio_total_busy_duration` | counter | microseconds the workers spent busy, all of them |
//! | `tokio_max_busy_duration`, `tokio_min_busy_duration` | counter | the busiest and idlest worker's busy microseconds, summed over refreshes |
//! | `tokio_busy_ratio` | gauge | busy time over wall time in the last interval, all workers (up to the worker count) |
//! | `tokio_total_park_count`, `tokio_max_park_count`, `tokio_min_park_count` | gauge | times the workers parked in the last interval (all, most, least) |

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
    // The reporter resolves its handles now, in the pipeline's recorder.
    let mut reporter = metrics::with_local_recorder(&**recorder, || {
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
