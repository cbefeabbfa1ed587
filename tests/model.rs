//! The store's write / hide / reclaim / reuse protocol, model-checked with `loom`: every
//! interleaving of a write (from another thread's cache, with a generation that may go
//! stale) against upkeep hiding, reclaiming and reusing its record.
//!
//! The protocol is `src/store/protocol.rs`, compiled here against loom's atomics. What
//! must hold whatever the scheduling:
//!
//! * nothing lands in another series: once the record is reused, the new series holds no
//!   update of the old one;
//! * nothing confirmed is lost: a write told "done" is in the series, never in a record that
//!   upkeep then reclaims without having seen it written (a write that finds its record
//!   reclaimed is told so, and is done again on the live series).
//!
//! The same model fails on broken protocols: reuse without waiting for the epoch, a write
//! that does not read the state again after its update, and 0.4's protocol (a write stamps
//! an idle clock, then checks the state).

mod sync {
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    /// The store's `SeqCst` accesses form one total order; loom models them as
    /// acquire-release only, so a `SeqCst` fence stands for that order here.
    pub(crate) fn total_order() {
        loom::sync::atomic::fence(Ordering::SeqCst);
    }
}

#[allow(dead_code)] // the model uses part of it
#[path = "../src/store/protocol.rs"]
mod protocol;

use std::panic::{catch_unwind, AssertUnwindSafe};

use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

use protocol::{Check, Confirm, Slot, Tick, LIVE, VISIBLE};

/// How a variant of the protocol is put together.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    /// `src/store/protocol.rs` as the store uses it.
    Store,
    /// Reuse at once, without waiting for running writes.
    NoGrace,
    /// A write trusts its first check.
    NoConfirm,
    /// 0.4: a write stamps the idle clock, checks the state, updates; expiry re-reads the
    /// stamp after changing the state; a reclaimed record is reused at once.
    Release04,
}

/// What became of the write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// In the series.
    Done,
    /// Done again on the live series (its record was reclaimed).
    Redone,
}

/// One record (state, idle clock, one counter cell) and the epochs.
struct World {
    state: AtomicU32,
    touched: AtomicU32,
    /// 0.4's coarse clock, which only upkeep moves.
    clock: AtomicU32,
    cell: AtomicU64,
    epoch: AtomicU64,
    writer: Slot,
}

/// The generation of the series the writer's cache knows.
const G0: u32 = 0;

impl World {
    fn new() -> Self {
        Self {
            // Exported, not written since upkeep last looked: idle.
            state: AtomicU32::new(G0 | LIVE | VISIBLE),
            touched: AtomicU32::new(0),
            clock: AtomicU32::new(3),
            cell: AtomicU64::new(0),
            epoch: AtomicU64::new(1),
            writer: Slot::default(),
        }
    }

    /// A write of 1 by a thread whose cache says generation `G0`.
    fn write(&self, variant: Variant) -> Outcome {
        if variant == Variant::Release04 {
            return self.write_04();
        }
        self.writer.pin(&self.epoch);
        let outcome = loop {
            match protocol::check(&self.state, G0) {
                Check::Stale => break Outcome::Redone,
                Check::Hidden => {
                    // Shown again (the limits always allow it here), then checked again.
                    protocol::show(&self.state, G0);
                }
                Check::Ready(seen) => {
                    self.cell.fetch_add(1, Ordering::Relaxed);
                    if variant == Variant::NoConfirm {
                        break Outcome::Done;
                    }
                    break match protocol::confirm(&self.state, seen) {
                        Confirm::Done => Outcome::Done,
                        Confirm::Moved => Outcome::Redone,
                        Confirm::Hidden if protocol::show(&self.state, G0) => Outcome::Done,
                        // Not shown: reclaimed meanwhile, so in a dead record.
                        Confirm::Hidden => Outcome::Redone,
                    };
                }
            }
        };
        self.writer.unpin();
        outcome
    }

    fn write_04(&self) -> Outcome {
        let now = self.clock.load(Ordering::Relaxed);
        self.touched.store(now, Ordering::SeqCst);
        let state = self.state.load(Ordering::SeqCst);
        if state & LIVE == 0 || protocol::generation(state) != G0 {
            return Outcome::Redone;
        }
        self.cell.fetch_add(1, Ordering::Relaxed);
        if state & VISIBLE == 0 {
            let _ = self.state.compare_exchange(
                state,
                state | VISIBLE,
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
        }
        Outcome::Done
    }

    /// Upkeep, twice, with a timeout of 0 (anything not seen written is idle): hides the
    /// series, then reclaims it; then reuses the record for a new series. Returns whether
    /// it reclaimed.
    fn upkeep(&self, variant: Variant) -> bool {
        if variant == Variant::Release04 {
            return self.upkeep_04();
        }
        for _ in 0..2 {
            match protocol::tick(&self.state, &self.touched, 0, 0) {
                Tick::Hid => {}
                Tick::Reclaimable => break,
                // Seen written (or shown again): not idle.
                Tick::Kept => return false,
            }
        }
        if !protocol::retire(&self.state) {
            return false;
        }
        let retired = protocol::advance(&self.epoch);
        if variant != Variant::NoGrace {
            while protocol::oldest(std::iter::once(&self.writer)) <= retired {
                thread::yield_now();
            }
        }
        self.reuse();
        true
    }

    fn upkeep_04(&self) -> bool {
        // Time passes: a stamp of 3 is idle at 10 with a timeout of 1.
        self.clock.store(10, Ordering::Relaxed);
        let idle = |times: u32| 10 - self.touched.load(Ordering::SeqCst) > times;
        let state = self.state.load(Ordering::SeqCst);
        if !idle(1) {
            return false;
        }
        let hidden = state & !VISIBLE;
        if self
            .state
            .compare_exchange(state, hidden, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        if !idle(1) {
            let _ = self
                .state
                .compare_exchange(hidden, state, Ordering::SeqCst, Ordering::SeqCst);
            return false;
        }
        let free = protocol::generation(hidden).wrapping_add(protocol::GENERATION);
        if self
            .state
            .compare_exchange(hidden, free, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        if !idle(1) {
            self.state.store(hidden, Ordering::SeqCst);
            return false;
        }
        self.reuse();
        true
    }

    /// A new series in the record: from zero, at the next generation.
    fn reuse(&self) {
        self.cell.store(0, Ordering::Relaxed);
        let state = self.state.load(Ordering::Relaxed);
        self.state.store(protocol::fresh(state), Ordering::Release);
    }
}

/// Runs the model of `variant`, asserting what must hold.
fn model(variant: Variant) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let world = Arc::new(World::new());
        let writer = {
            let world = world.clone();
            thread::spawn(move || world.write(variant))
        };
        let reclaimed = world.upkeep(variant);
        let outcome = writer.join().expect("the writer ends");
        let cell = world.cell.load(Ordering::Relaxed);
        if reclaimed {
            assert_eq!(cell, 0, "an update landed in the record's new series");
            assert_eq!(
                outcome,
                Outcome::Redone,
                "a write told done was reclaimed unseen"
            );
        } else if outcome == Outcome::Done {
            assert_eq!(cell, 1, "a write told done is not in its series");
        }
    });
}

/// Whether the model of `variant` finds a violation.
fn fails(variant: Variant) -> bool {
    catch_unwind(AssertUnwindSafe(|| model(variant))).is_err()
}

#[test]
fn no_write_is_lost_or_lands_in_another_series() {
    model(Variant::Store);
}

#[test]
fn the_model_fails_on_reuse_without_waiting_for_the_epoch() {
    assert!(fails(Variant::NoGrace));
}

#[test]
fn the_model_fails_on_a_write_that_does_not_confirm() {
    assert!(fails(Variant::NoConfirm));
}

#[test]
fn the_model_fails_on_the_protocol_of_0_4() {
    assert!(fails(Variant::Release04));
}
