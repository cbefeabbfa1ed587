//! How a write, idle expiry and reclamation meet on a series' record, and when a
//! reclaimed record may be used again. The store's only lock-free protocol: it is checked
//! by a model test (`tests/model.rs`, with `loom`), which compiles this very file.
//!
//! A record's state word holds `LIVE` (it holds a series), `VISIBLE` (it is exported),
//! `WRITTEN` (written since upkeep last looked) and, above them, a generation that changes
//! each time the record is reclaimed.
//!
//! * **A write** ([`check`], the update, then [`confirm`]) happens inside an epoch pin
//!   ([`Slot::pin`]). It checks the state it expects (its generation, `LIVE`, `VISIBLE`),
//!   updates the cells, then reads the state again. The same state means the update is in
//!   the series; a record reclaimed meanwhile means it is in a dead record, and the caller
//!   does it again on the live series; a series hidden meanwhile is shown again (through
//!   the limits). `WRITTEN` is raised after the update, so upkeep always sees a write.
//! * **Upkeep** ([`tick`]) lowers `WRITTEN` and restarts the idle clock, which only upkeep
//!   writes; it hides a series idle for the timeout, and reclaims (`retire`) one hidden for
//!   as long again. A write never needs the clock.
//! * **Reuse** waits for an epoch: records reclaimed before [`advance`] returned `e` are
//!   reused only once [`oldest`] is past `e`, when every write that could have checked the
//!   old generation has ended. So an update lands in its own series or in a dead
//!   record, never in another series, whatever the scheduling.

use super::sync::{total_order, AtomicU32, AtomicU64, Ordering};

/// The record holds a series.
pub(crate) const LIVE: u32 = 1;
/// The series is exported.
pub(crate) const VISIBLE: u32 = 2;
/// Written since upkeep last looked.
pub(crate) const WRITTEN: u32 = 4;
/// The generation's unit: the bits above the flags.
pub(crate) const GENERATION: u32 = 8;
const FLAGS: u32 = GENERATION - 1;

/// A record's generation (its state without the flags).
#[inline]
pub(crate) fn generation(state: u32) -> u32 {
    state & !FLAGS
}

/// The state of a new series in a record last in `state`: the next generation, live,
/// shown and written.
pub(crate) fn fresh(state: u32) -> u32 {
    generation(state).wrapping_add(GENERATION) | LIVE | VISIBLE | WRITTEN
}

/// What a write found before it updated anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Its series, exported: update, then [`confirm`] with this state.
    Ready(u32),
    /// Its series, hidden by idle expiry: show it again (through the limits) first.
    Hidden,
    /// Not its series any more (reclaimed, or reused by another): resolve again.
    Stale,
}

/// Checks that the record holds the series of generation `generation` (a write's first
/// step, inside its pin).
#[inline]
pub(crate) fn check(state: &AtomicU32, generation_expected: u32) -> Check {
    let now = state.load(Ordering::SeqCst);
    if now & LIVE == 0 || generation(now) != generation_expected {
        Check::Stale
    } else if now & VISIBLE == 0 {
        Check::Hidden
    } else {
        Check::Ready(now)
    }
}

/// What became of an update made after [`check`] found `Ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Confirm {
    /// It is in the series.
    Done,
    /// It is in the series, which expiry hid meanwhile: show it again (through the
    /// limits), or take the update back.
    Hidden,
    /// The record was reclaimed meanwhile: the update is in a dead record, do it again on
    /// the live series.
    Moved,
}

/// A write's last step: reads the state again after the update, and raises `WRITTEN`.
#[inline]
pub(crate) fn confirm(state: &AtomicU32, seen: u32) -> Confirm {
    let mut now = state.load(Ordering::SeqCst);
    if now & WRITTEN == 0 && generation(now) == generation(seen) && now & LIVE != 0 {
        now = state.fetch_or(WRITTEN, Ordering::SeqCst);
    }
    if now & LIVE == 0 || generation(now) != generation(seen) {
        Confirm::Moved
    } else if now & VISIBLE == 0 {
        Confirm::Hidden
    } else {
        Confirm::Done
    }
}

/// Shows a hidden series again (the caller has admitted it under the limits); `false` if
/// it is not that hidden series any more (shown by another writer, or reclaimed).
pub(crate) fn show(state: &AtomicU32, generation_expected: u32) -> bool {
    let now = state.load(Ordering::SeqCst);
    if now & (LIVE | VISIBLE) != LIVE || generation(now) != generation_expected {
        return false;
    }
    state
        .compare_exchange(
            now,
            now | VISIBLE | WRITTEN,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .is_ok()
}

/// What upkeep did to one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Nothing to do: not live, written since the last look, or not idle long enough.
    Kept,
    /// Hidden: idle for the timeout.
    Hid,
    /// Hidden and idle for another timeout: the caller may [`retire`] it.
    Reclaimable,
}

/// Upkeep's look at one record at `now` (its clock, ms, wrapping): `touched` is the
/// record's idle clock, which only upkeep writes.
pub(crate) fn tick(state: &AtomicU32, touched: &AtomicU32, now: u32, idle: u32) -> Tick {
    let seen = state.load(Ordering::SeqCst);
    if seen & LIVE == 0 {
        return Tick::Kept;
    }
    if seen & WRITTEN != 0 {
        // Lowered before the clock restarts: a write after this raises it again.
        if state
            .compare_exchange(seen, seen & !WRITTEN, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            touched.store(now, Ordering::Relaxed);
        }
        return Tick::Kept;
    }
    let idle_for = now.wrapping_sub(touched.load(Ordering::Relaxed));
    if seen & VISIBLE != 0 {
        let hid = idle_for >= idle
            && state
                .compare_exchange(seen, seen & !VISIBLE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        return if hid { Tick::Hid } else { Tick::Kept };
    }
    if idle_for >= idle.saturating_mul(2) {
        Tick::Reclaimable
    } else {
        Tick::Kept
    }
}

/// Reclaims a hidden, idle series: `false` if a write showed it or marked it meanwhile.
pub(crate) fn retire(state: &AtomicU32) -> bool {
    let seen = state.load(Ordering::SeqCst);
    if seen & (LIVE | VISIBLE | WRITTEN) != LIVE {
        return false;
    }
    let dead = generation(seen).wrapping_add(GENERATION);
    state
        .compare_exchange(seen, dead, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// One thread's epoch slot: 0 while it writes nothing, else the epoch it pinned at
/// (shifted) with bit 0 set.
#[derive(Default, Debug)]
pub(crate) struct Slot(AtomicU64);

impl Slot {
    /// Announces a write: the epoch now, made visible before the write's [`check`] reads
    /// the state (the swap orders them).
    #[inline]
    pub(crate) fn pin(&self, epoch: &AtomicU64) {
        let now = epoch.load(Ordering::Acquire);
        self.0.swap(now << 1 | 1, Ordering::SeqCst);
        total_order();
    }

    /// The write has ended.
    #[inline]
    pub(crate) fn unpin(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// The epoch of the write running here, if one is.
    pub(crate) fn pinned(&self) -> Option<u64> {
        let word = self.0.load(Ordering::SeqCst);
        (word & 1 == 1).then_some(word >> 1)
    }
}

/// Ends the epoch in which the records reclaimed so far were reclaimed, and returns it:
/// they may be reused once [`oldest`] is past it.
pub(crate) fn advance(epoch: &AtomicU64) -> u64 {
    epoch.fetch_add(1, Ordering::SeqCst)
}

/// The oldest epoch a write still running pinned (`u64::MAX` if none runs): what was
/// reclaimed in an epoch before it may be reused.
pub(crate) fn oldest<'a>(slots: impl Iterator<Item = &'a Slot>) -> u64 {
    total_order();
    slots.filter_map(Slot::pinned).min().unwrap_or(u64::MAX)
}
