//! Idle expiry in place: a series idle for the timeout is hidden (its record flagged), and
//! one hidden as long again that no kept handle pins is reclaimed; see the family's
//! documentation for how a write and the expiry meet.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::{rehash, Family, Index, Record, GENERATION, LIVE, VISIBLE};

impl Family {
    /// Hides the series idle for `idle_ms`, and reclaims those hidden as long again that
    /// nothing pins. Allocates nothing per series it keeps.
    pub(crate) fn expire(&self, now: u32, idle_ms: u32) {
        let idle = |record: &Record, times: u32| {
            now.wrapping_sub(record.touched.load(Ordering::SeqCst)) > idle_ms.saturating_mul(times)
        };
        let overflow = self.overflow.get().copied();
        let mut reclaim = Vec::new();
        for i in 0..self.len.load(Ordering::Acquire) {
            let Some((segment, at)) = self.slot(i) else {
                break;
            };
            let record = &segment.record(at);
            let state = record.state.load(Ordering::SeqCst);
            if state & LIVE == 0 || Some(i) == overflow || !idle(record, 1) {
                continue;
            }
            if state & VISIBLE == 0 {
                if idle(record, 2) {
                    reclaim.push(i);
                }
                continue;
            }
            let hide = state & !VISIBLE;
            if record
                .state
                .compare_exchange(state, hide, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                continue;
            }
            // A writer stamped it meanwhile: shown again, unless the writer did it (and
            // counted it) first.
            let stays = !idle(record, 1)
                && record
                    .state
                    .compare_exchange(hide, state, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
            if !stays {
                self.shown(-1, true);
            }
        }
        if !reclaim.is_empty() {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            for i in reclaim {
                self.reclaim(&mut index, i, &idle);
            }
        }
    }

    /// Frees a hidden, idle, unpinned record (under the write lock).
    fn reclaim(&self, index: &mut Index, i: u32, idle: &impl Fn(&Record, u32) -> bool) {
        let Some((segment, at)) = self.slot(i) else {
            return;
        };
        let record = &segment.record(at);
        let state = record.state.load(Ordering::SeqCst);
        let pinned = self
            .pins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&i);
        if state & (LIVE | VISIBLE) != LIVE || pinned {
            return;
        }
        let free = (state & !(LIVE | VISIBLE)).wrapping_add(GENERATION);
        if record
            .state
            .compare_exchange(state, free, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        if !idle(record, 2) {
            // A writer stamped it first: it stays.
            record.state.store(state, Ordering::SeqCst);
            return;
        }
        let hasher = &self.shared.hasher;
        let hash = rehash(&self.records, &self.arena, hasher, i);
        if let Ok(entry) = index.series.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        let list = record.labels.load(Ordering::Relaxed);
        index.space.free_list(&self.arena, hasher, list);
        index.free.push(i);
        self.shared.count_series(0, -1);
    }
}
