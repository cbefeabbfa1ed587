//! The process's epochs (see [`protocol`](super::protocol)): one slot per thread that
//! writes, registered on its first write and dropped with the thread.
//!
//! A pin costs one swap on the thread's own cache line (no line another thread writes), and
//! an unpin one plain store. Nested pins (a recorder called while a write is pinned) reuse
//! the outer one.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::protocol::{self, Slot};

/// The current epoch.
static EPOCH: AtomicU64 = AtomicU64::new(1);

/// Every thread's slot.
static SLOTS: Mutex<Vec<Arc<Padded>>> = Mutex::new(Vec::new());

/// Writes pinned by threads whose slot is gone (a thread's last writes, from the
/// destructors of its other thread-locals): reuse waits for them all.
static UNSLOTTED: AtomicUsize = AtomicUsize::new(0);

/// A slot alone on its cache line.
#[derive(Default)]
#[repr(align(64))]
struct Padded(Slot);

/// This thread's slot and how deep its pins are nested.
struct Local {
    slot: Arc<Padded>,
    depth: Cell<u32>,
}

impl Local {
    fn new() -> Self {
        let slot = Arc::new(Padded::default());
        SLOTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(slot.clone());
        Self {
            slot,
            depth: Cell::new(0),
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|s| !Arc::ptr_eq(s, &self.slot));
    }
}

thread_local! {
    static LOCAL: Local = Local::new();
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
    let slotted = LOCAL
        .try_with(|local| {
            let depth = local.depth.get();
            if depth == 0 {
                local.slot.0.pin(&EPOCH);
            }
            local.depth.set(depth + 1);
        })
        .is_ok();
    if !slotted {
        // The thread is ending: counted where every reuse looks (rare, so a shared word).
        UNSLOTTED.fetch_add(1, Ordering::SeqCst);
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
        let _ = LOCAL.try_with(|local| {
            let depth = local.depth.get().saturating_sub(1);
            local.depth.set(depth);
            if depth == 0 {
                local.slot.0.unpin();
            }
        });
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
