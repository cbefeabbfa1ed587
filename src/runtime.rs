//! Tokio runtime metrics (feature `runtime`): [`Builder::runtime_metrics`](crate::Builder::runtime_metrics).
//!
//! The tokio team's `tokio-metrics` measures the runtime, interval by interval, on stable
//! tokio (no `tokio_unstable`). A thread of ours reads one interval at bind and then every
//! upkeep interval, so the monitored runtime runs no task of ours and its request path is
//! untouched; a scrape or a push writes what the last reading found, as families of their
//! own beside the store's. The thread ends (within one interval) when the pipeline is
//! dropped.
//!
//! | name | type | what |
//! |---|---|---|
//! | `tokio_workers` | gauge | worker threads |
//! | `tokio_live_tasks` | gauge | tasks alive in the runtime |
//! | `tokio_global_queue_depth` | gauge | tasks waiting in the global (injection) queue |
//! | `tokio_busy_seconds_total` | counter | seconds the workers spent busy, all of them together |
//! | `tokio_max_busy_seconds`, `tokio_min_busy_seconds` | gauge | the busiest and the idlest worker's busy seconds in the last interval |
//! | `tokio_busy_ratio` | gauge | the workers' busy time over their time in the last interval, 0 to 1 |
//! | `tokio_parks_total` | counter | times the workers parked (ran out of work), all of them together |
//! | `tokio_max_parks`, `tokio_min_parks` | gauge | the most and the fewest times one worker parked in the last interval |
//!
//! Tokio credits a worker's busy time when the worker parks or yields, so an interval can
//! be credited time spent in the one before: `tokio_busy_ratio` divides by the workers'
//! time (interval × workers) and is capped at 1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_metrics::{RuntimeIntervals, RuntimeMetrics, RuntimeMonitor};

use crate::encode::ExtraFamily;
use crate::store::kind::Kind;

/// Which runtime to measure.
#[derive(Clone, Debug)]
pub(crate) struct RuntimeSettings {
    pub(crate) handle: Handle,
}

/// What the last reading found: written by the runtime-metrics thread, read by renders.
/// Each value is an `f64`'s bits.
#[derive(Default)]
pub(crate) struct RuntimeStats {
    values: [AtomicU64; FAMILIES.len()],
}

/// Each family's name, HELP text and kind, in the order of [`RuntimeStats::values`].
const FAMILIES: [(&str, &str, Kind); 10] = [
    ("tokio_workers", "Worker threads of the tokio runtime.", Kind::Gauge),
    ("tokio_live_tasks", "Tasks alive in the tokio runtime.", Kind::Gauge),
    (
        "tokio_global_queue_depth",
        "Tasks waiting in the tokio runtime's global (injection) queue.",
        Kind::Gauge,
    ),
    (
        "tokio_busy_seconds_total",
        "Seconds the tokio workers spent busy, all of them together.",
        Kind::Counter,
    ),
    (
        "tokio_max_busy_seconds",
        "Busy seconds of the busiest tokio worker in the last interval.",
        Kind::Gauge,
    ),
    (
        "tokio_min_busy_seconds",
        "Busy seconds of the idlest tokio worker in the last interval.",
        Kind::Gauge,
    ),
    (
        "tokio_busy_ratio",
        "Busy time of the tokio workers over their time (interval times workers) in the last interval, 0 to 1.",
        Kind::Gauge,
    ),
    (
        "tokio_parks_total",
        "Times the tokio workers parked (ran out of work), all of them together.",
        Kind::Counter,
    ),
    (
        "tokio_max_parks",
        "Times the tokio worker that parked most parked in the last interval.",
        Kind::Gauge,
    ),
    (
        "tokio_min_parks",
        "Times the tokio worker that parked least parked in the last interval.",
        Kind::Gauge,
    ),
];

const BUSY_TOTAL: usize = 3;
const PARKS_TOTAL: usize = 7;

impl RuntimeStats {
    /// Takes one interval's reading.
    fn update(&self, m: &RuntimeMetrics) {
        let workers = m.workers_count as f64;
        let idle = m.workers_count == 0;
        let worker_time = m.elapsed.as_secs_f64() * workers;
        let ratio = match worker_time > 0.0 {
            true => (m.total_busy_duration.as_secs_f64() / worker_time).clamp(0.0, 1.0),
            false => 0.0,
        };
        let min_or_zero = |v: f64| if idle { 0.0 } else { v };
        let now = [
            workers,
            m.live_tasks_count as f64,
            m.global_queue_depth as f64,
            self.get(BUSY_TOTAL) + m.total_busy_duration.as_secs_f64(),
            m.max_busy_duration.as_secs_f64(),
            min_or_zero(m.min_busy_duration.as_secs_f64()),
            ratio,
            self.get(PARKS_TOTAL) + m.total_park_count as f64,
            m.max_park_count as f64,
            min_or_zero(m.min_park_count as f64),
        ];
        for (cell, value) in self.values.iter().zip(now) {
            cell.store(value.to_bits(), Ordering::Relaxed);
        }
    }

    fn get(&self, at: usize) -> f64 {
        f64::from_bits(self.values[at].load(Ordering::Relaxed))
    }

    /// The families, as of the last reading; `taken` tells a name the store already holds.
    pub(crate) fn families(&self, taken: impl Fn(&str) -> bool) -> Vec<ExtraFamily> {
        FAMILIES
            .iter()
            .enumerate()
            .filter(|(_, (name, ..))| !taken(name))
            .map(|(at, (name, help, kind))| ExtraFamily {
                name,
                help,
                kind: *kind,
                samples: vec![(Vec::new(), self.get(at))],
            })
            .collect()
    }
}

/// Starts reading `settings`' runtime every `interval` on a thread of ours, for as long as
/// the returned stats are held. The first reading is taken now. A thread that cannot start
/// is logged; the stats then keep that first reading.
pub(crate) fn start(settings: &RuntimeSettings, interval: Duration) -> Arc<RuntimeStats> {
    let stats = Arc::new(RuntimeStats::default());
    let mut intervals: RuntimeIntervals = RuntimeMonitor::new(&settings.handle).intervals();
    read(&mut intervals, &stats);
    let alive: Weak<RuntimeStats> = Arc::downgrade(&stats);
    let spawned = thread::Builder::new()
        .name("porter-metrics-runtime".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            loop {
                let left = next.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    thread::park_timeout(left);
                    continue;
                }
                next = Instant::now() + interval;
                match alive.upgrade() {
                    Some(stats) => read(&mut intervals, &stats),
                    None => return,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "porter-metrics: cannot start the runtime metrics thread");
    }
    stats
}

fn read(intervals: &mut RuntimeIntervals, stats: &RuntimeStats) {
    if let Some(metrics) = intervals.next() {
        stats.update(&metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_in_seconds_accumulated_and_the_ratio_is_per_worker_time() {
        let stats = RuntimeStats::default();
        let mut m = RuntimeMetrics::default();
        m.workers_count = 2;
        m.elapsed = Duration::from_secs(1);
        m.total_busy_duration = Duration::from_millis(1500);
        m.max_busy_duration = Duration::from_millis(900);
        m.min_busy_duration = Duration::from_millis(600);
        m.total_park_count = 7;
        stats.update(&m);
        stats.update(&m);
        let value = |name: &str| {
            let families = stats.families(|_| false);
            families
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.samples[0].1)
        };
        assert_eq!(value("tokio_busy_seconds_total"), Some(3.0));
        assert_eq!(value("tokio_parks_total"), Some(14.0));
        assert_eq!(value("tokio_max_busy_seconds"), Some(0.9));
        assert_eq!(value("tokio_busy_ratio"), Some(0.75));
        // Time credited late: capped at 1.
        m.total_busy_duration = Duration::from_millis(2200);
        stats.update(&m);
        assert_eq!(value("tokio_busy_ratio"), Some(1.0));
        let texts: std::collections::HashSet<_> = FAMILIES.iter().map(|f| f.1).collect();
        assert_eq!(texts.len(), FAMILIES.len(), "one HELP text each");
        assert!(FAMILIES
            .iter()
            .all(|f| !f.1.contains('`') && !f.1.contains('[')));
    }
}
