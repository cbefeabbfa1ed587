//! Idle expiry in place: a series idle for the timeout is hidden (its record flagged), and
//! one hidden as long again is reclaimed; a reclaimed record is reused once no write that
//! could have seen it runs (see the [`protocol`](super::super::protocol)).

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::super::protocol::{self, Tick};
use super::index::PENDING;
use super::Family;

impl Family {
    /// Upkeep's pass at `now` (its clock, ms): hides the series idle for `idle_ms`, and
    /// reclaims those hidden as long again. Allocates nothing per series it keeps.
    pub(crate) fn expire(&self, now: u32, idle_ms: u32) {
        let overflow = self.overflow.get().copied();
        let mut reclaimable = Vec::new();
        for i in 0..self.len.load(Ordering::Acquire) {
            let Some((segment, at)) = self.slot(i) else {
                break;
            };
            if Some(i) == overflow {
                continue;
            }
            let record = segment.record(at);
            match protocol::tick(&record.state, &record.touched, now, idle_ms) {
                Tick::Kept => {}
                Tick::Hid => {
                    self.release();
                    self.shared.count_hidden(1);
                }
                Tick::Reclaimable => reclaimable.push(i),
            }
        }
        if reclaimable.is_empty() {
            return;
        }
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for i in reclaimable {
            let Some((segment, at)) = self.slot(i) else {
                continue;
            };
            // Its hash before the state changes: the labels stay until the record is reused.
            let hash = self.hash_of(i);
            if protocol::retire(&segment.record(at).state) {
                index.remove(i, hash);
                index.retired.push((i, PENDING));
                self.shared.count_hidden(-1);
            }
        }
    }

    /// Dates the records reclaimed in the epoch that just ended, `epoch`.
    pub(crate) fn date_retired(&self, epoch: u64) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for (_, when) in index.retired.iter_mut().filter(|(_, e)| *e == PENDING) {
            *when = epoch;
        }
    }

    /// Makes the records reclaimed before epoch `oldest` (the oldest a running write
    /// pinned) free to use again, and frees their labels.
    pub(crate) fn reuse(&self, oldest: u64) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if index.retired.iter().all(|&(_, e)| e >= oldest) {
            return;
        }
        let retired = std::mem::take(&mut index.retired);
        let hasher = &self.shared.hasher;
        for (i, epoch) in retired {
            if epoch >= oldest {
                index.retired.push((i, epoch));
                continue;
            }
            if let Some(series) = self.series_at(i) {
                self.shared.count_expired(series.samples());
            }
            if let Some((segment, at)) = self.slot(i) {
                let list = segment.record(at).labels.load(Ordering::Relaxed);
                index.space.free_list(&self.arena, hasher, list);
                index.free.push(i);
            }
        }
    }

    /// Counter increments and histogram observations held by hidden series, and by series
    /// reclaimed whose records wait for reuse.
    #[cfg(feature = "testing")]
    pub(crate) fn hidden_samples(&self) -> u64 {
        let mut scratch = super::Scratch::default();
        let mut sum = 0u64;
        self.for_each_hidden(&mut scratch, |series, _| sum += series.samples());
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        for &(i, _) in &index.retired {
            sum += self.series_at(i).map_or(0, |s| s.samples());
        }
        sum
    }

    /// Whether it holds reclaimed records waiting for reuse.
    pub(crate) fn has_retired(&self) -> bool {
        !self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .retired
            .is_empty()
    }
}
