//! The wall clock, read in one place: the time since the Unix epoch (zero on a clock set
//! before it). Durations and idleness use monotonic clocks; this is for timestamps sent out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time since the Unix epoch (zero on a clock set before it).
pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
