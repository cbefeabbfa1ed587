//! The atomics the store's protocol is written against: the standard ones here, `loom`'s
//! in the model test that compiles [`protocol`](super::protocol) on its own.

pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Where the protocol relies on its sequentially consistent accesses being one total order
/// (a pin's swap before the state it then reads; reclamation's state change before the
/// pins it then reads). They are here, so nothing more is needed; `loom` models
/// `SeqCst` accesses as acquire-release only, so its model puts a `SeqCst` fence here.
#[inline(always)]
pub(crate) fn total_order() {}
