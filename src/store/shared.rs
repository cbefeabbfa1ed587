//! What every family of a store shares: the clock, the limits, the counts, the
//! self-metrics, and the observations kept until the buckets are known.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::family::Series;
use super::protocol;
use super::self_metrics::{DropReason, SelfMetrics};
use super::Limits;

/// Histogram observations kept, across all series, before the pipeline is bound.
pub(crate) const MAX_EARLY_OBSERVATIONS: usize = 100_000;

/// An observation kept until the buckets are known: family, series, generation, value,
/// times.
pub(crate) type Early = (u32, u32, u32, f64, u64);

/// See the module documentation.
pub(crate) struct Shared {
    started: Instant,
    /// When `started` was, in ms since the Unix epoch.
    epoch_ms: u64,
    /// Upkeep's clock: ms since `started` as of its last pass (wrapping). Only upkeep
    /// reads it to judge idleness; a write never needs it.
    coarse: AtomicU32,
    /// The idle timeout in ms; 0 for none.
    pub(super) idle_ms: AtomicU32,
    /// Series per metric, series, labels per series, bytes per label.
    limits: [AtomicUsize; 4],
    series: AtomicUsize,
    /// Series hidden by idle expiry and not yet reclaimed.
    hidden: AtomicUsize,
    /// Counter increments and histogram observations whose series idle expiry reclaimed.
    expired: AtomicU64,
    /// Bumped when the limits change: a thread's cached refusal holds only while it is
    /// unchanged.
    config: AtomicU32,
    pub(crate) self_metrics: SelfMetrics,
    /// Observations made before the buckets were known; `None` once bound.
    pub(super) early: Mutex<Option<Vec<Early>>>,
    /// A seeded hash for the arena's interning.
    pub(crate) hasher: hashbrown::DefaultHashBuilder,
}

impl Shared {
    pub(super) fn new(limits: Limits) -> Self {
        let epoch_ms = u64::try_from(super::unix_now().as_millis()).unwrap_or(u64::MAX);
        let shared = Self {
            started: Instant::now(),
            epoch_ms,
            coarse: AtomicU32::new(0),
            idle_ms: AtomicU32::new(0),
            limits: Default::default(),
            series: AtomicUsize::new(0),
            hidden: AtomicUsize::new(0),
            expired: AtomicU64::new(0),
            config: AtomicU32::new(0),
            self_metrics: SelfMetrics::default(),
            early: Mutex::new(Some(Vec::new())),
            hasher: hashbrown::DefaultHashBuilder::default(),
        };
        shared.set_limits(limits);
        shared
    }

    pub(super) fn set_limits(&self, limits: Limits) {
        let values = [
            limits.series_per_metric,
            limits.series,
            limits.labels,
            limits.label_bytes,
        ];
        for (cell, value) in self.limits.iter().zip(values) {
            cell.store(value, Ordering::Relaxed);
        }
        self.config.fetch_add(1, Ordering::AcqRel);
    }

    fn limit(&self, i: usize) -> usize {
        self.limits[i].load(Ordering::Relaxed)
    }

    /// The configuration stamp: changes whenever the limits do.
    #[inline]
    pub(crate) fn config(&self) -> u32 {
        self.config.load(Ordering::Acquire)
    }

    pub(crate) fn series_per_metric(&self) -> usize {
        self.limit(0)
    }

    /// Labels per series and bytes per label.
    pub(crate) fn label_limits(&self) -> (usize, usize) {
        (self.limit(2), self.limit(3))
    }

    /// Takes room for one more exported series in the store; `false` past the limit.
    pub(crate) fn reserve_series(&self) -> bool {
        let limit = self.limit(1);
        self.series
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back the room of one exported series.
    pub(crate) fn release_series(&self) {
        self.series.fetch_sub(1, Ordering::AcqRel);
    }

    /// One more (1) or one fewer (-1) series hidden.
    pub(crate) fn count_hidden(&self, n: i32) {
        match n {
            1 => self.hidden.fetch_add(1, Ordering::Relaxed),
            _ => self.hidden.fetch_sub(1, Ordering::Relaxed),
        };
    }

    /// Counts the samples of a series reclaimed by idle expiry.
    pub(crate) fn count_expired(&self, samples: u64) {
        self.expired.fetch_add(samples, Ordering::Relaxed);
    }

    /// Counter increments and histogram observations whose series idle expiry reclaimed.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Series exported and series hidden.
    pub(super) fn counts(&self) -> (usize, usize) {
        let count = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        (count(&self.series), count(&self.hidden))
    }

    /// Upkeep's clock, ms.
    #[inline]
    pub(crate) fn now(&self) -> u32 {
        self.coarse.load(Ordering::Relaxed)
    }

    pub(super) fn tick(&self) -> u32 {
        // Wrapping by design: idle times are compared with `wrapping_sub`.
        let now = self.started.elapsed().as_millis() as u32;
        self.coarse.store(now, Ordering::Relaxed);
        now
    }

    /// Now, in tenths of a second since the store started (a start timestamp).
    pub(crate) fn tenths(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_millis() / 100).unwrap_or(u32::MAX)
    }

    /// A start timestamp in ms since the Unix epoch.
    pub(crate) fn start_ms(&self, tenths: u32) -> u64 {
        self.epoch_ms + u64::from(tenths) * 100
    }

    pub(crate) fn count_dropped(&self, reason: DropReason, n: u64) {
        self.self_metrics.count_dropped(reason, n);
    }

    /// Keeps an observation of `series` until its buckets are known (the pipeline binds),
    /// or counts it at once if they are known by now.
    pub(crate) fn keep_early(&self, series: &Series<'_>, value: f64, n: u64) {
        let generation = protocol::generation(series.state());
        let full = {
            let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
            match early.as_mut() {
                None => None,
                Some(kept) if kept.len() >= MAX_EARLY_OBSERVATIONS => Some(true),
                Some(kept) => {
                    kept.push((series.family.id, series.index, generation, value, n));
                    Some(false)
                }
            }
        };
        match full {
            // Bound meanwhile: the cells are there now.
            None if series.cells().is_some() => series.observe(value, n),
            None => {}
            Some(false) => {}
            Some(true) => {
                self.count_dropped(DropReason::BufferFull, n);
                let reason = DropReason::BufferFull;
                self.self_metrics
                    .warn_once(reason.as_str(), "", reason.message());
            }
        }
    }
}
