//! The process's epochs (see [`protocol`](super::protocol)): one slot per thread that
//! writes, registered on its first write and dropped with the thread.
//!
//! A pin costs one swap on the thread's own cache line (no line another thread writes), and
//! an unpin one plain store. Nested pins (a recorder called while a write is pinned) reuse
//! the outer one.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::protocol::{self, Slot};

/// The current epoch.
static EPOCH: AtomicU64 = AtomicU64::new(1);

/// Every slot ever made: as many as threads have written at once (a thread's slot is
/// given back when it ends, for the next thread).
static SLOTS: Mutex<Vec<&'static Padded>> = Mutex::new(Vec::new());

/// Slots given back by threads that ended.
static FREE: Mutex<Vec<&'static Padded>> = Mutex::new(Vec::new());

/// Writes pinned by threads that have no slot (a thread's last writes, from the
/// destructors of its other thread-locals): reuse waits for them all.
static UNSLOTTED: AtomicUsize = AtomicUsize::new(0);

/// A slot alone on its cache line.
#[derive(Default)]
#[repr(align(64))]
struct Padded(Slot);

/// Gives this thread's slot back when the thread ends.
struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        if let Ok(Some(slot)) = SLOT.try_with(Cell::take) {
            FREE.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(slot);
        }
    }
}

thread_local! {
    /// This thread's slot, once it wrote (no destructor: a pin reads it directly).
    static SLOT: Cell<Option<&'static Padded>> = const { Cell::new(None) };
    /// How deep this thread's pins are nested.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static GIVE_BACK: GiveBack = const { GiveBack };
}

/// This thread's slot: a free one, or a new one (kept for the life of the process, and
/// reused by later threads).
#[cold]
fn take_slot() -> Option<&'static Padded> {
    // Registers the give-back first: a thread that is ending cannot take a slot.
    GIVE_BACK.try_with(|_| ()).ok()?;
    let free = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
    let slot = free.unwrap_or_else(|| {
        let slot: &'static Padded = Box::leak(Box::default());
        SLOTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(slot);
        slot
    });
    SLOT.set(Some(slot));
    Some(slot)
}

/// A write in progress: reuse of what it may touch waits until it is dropped.
#[must_use]
pub(crate) struct Pin {
    /// Whether this thread's slot holds it (else [`UNSLOTTED`] counts it).
    slotted: bool,
    /// Not `Send`: it is this thread's pin.
    _thread: std::marker::PhantomData<*const ()>,
}

/// Pins the current epoch for a write.
#[inline]
pub(crate) fn pin() -> Pin {
    let depth = DEPTH.get();
    let slotted = match depth {
        0 => match SLOT.get().or_else(take_slot) {
            Some(slot) => {
                slot.0.pin(&EPOCH);
                true
            }
            None => {
                // The thread is ending: counted where every reuse looks (rare, so a
                // shared word).
                UNSLOTTED.fetch_add(1, Ordering::SeqCst);
                false
            }
        },
        _ => true,
    };
    if slotted {
        DEPTH.with(|d| d.set(depth + 1));
    }
    Pin {
        slotted,
        _thread: std::marker::PhantomData,
    }
}

impl Drop for Pin {
    #[inline]
    fn drop(&mut self) {
        if !self.slotted {
            UNSLOTTED.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let depth = DEPTH.get().saturating_sub(1);
        DEPTH.with(|d| d.set(depth));
        if depth == 0 {
            if let Some(slot) = SLOT.get() {
                slot.0.unpin();
            }
        }
    }
}

/// Ends the current epoch: what was reclaimed until now may be reused once [`oldest`] is
/// past the number returned.
pub(crate) fn advance() -> u64 {
    protocol::advance(&EPOCH)
}

/// The oldest epoch a running write pinned: what was reclaimed in an earlier epoch may be
/// reused.
pub(crate) fn oldest() -> u64 {
    if UNSLOTTED.load(Ordering::SeqCst) != 0 {
        return 0;
    }
    let slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
    protocol::oldest(slots.iter().map(|s| &s.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_write_holds_back_reuse_until_it_ends() {
        let pin = pin();
        let later = advance();
        assert!(
            oldest() <= later,
            "a write pinned before the advance is running"
        );
        let nested = super::pin();
        drop(nested);
        assert!(oldest() <= later, "the outer pin still holds");
        drop(pin);
        // Other tests of this process may be writing: wait for them, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while oldest() <= later {
            assert!(std::time::Instant::now() < deadline, "never quiescent");
            std::thread::yield_now();
        }
    }
}
