//! Retries: how long a push may take ([`Deadline`]), the backoff's jitter, and how long a
//! receiver's `Retry-After` is waited.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::unix_now as since_epoch;

/// The longest wait a receiver's `Retry-After` gets: a larger value (or a date years
/// ahead) would silence a target for good.
pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// How long a push may take.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deadline {
    /// No retry starts after this (a request in flight runs to its timeout).
    Retries(Instant),
    /// The push ends by this, requests in flight included (at `stop()`).
    Whole(Instant),
}

impl Deadline {
    pub(crate) fn at(self) -> Instant {
        match self {
            Deadline::Retries(at) | Deadline::Whole(at) => at,
        }
    }

    /// How long a request may take from now: the target's timeout, within a whole
    /// deadline.
    pub(crate) fn request(self, timeout: Duration) -> Duration {
        match self {
            Deadline::Retries(_) => timeout,
            Deadline::Whole(at) => timeout
                .min(at.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(1)),
        }
    }
}

/// Spreads retries out (xorshift; no need for a cryptographic generator).
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(salt: usize) -> Self {
        let nanos = since_epoch().subsec_nanos();
        Self((u64::from(nanos) ^ (salt as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// `wait` scaled by a random factor in [0.5, 1).
    pub(crate) fn apply(&mut self, wait: Duration) -> Duration {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
        wait.mul_f64(0.5 + unit / 2.0)
    }
}

/// The wait before a retry: the receiver's `Retry-After` if it said one, at least the
/// backoff (`0` would be a hot loop) and at most [`RETRY_AFTER_CAP`]; else the backoff
/// with jitter.
pub(crate) fn wait(after: Option<Duration>, backoff: Duration, jitter: &mut Jitter) -> Duration {
    match after {
        Some(after) => after.max(backoff).min(RETRY_AFTER_CAP),
        None => jitter.apply(backoff),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_whole() {
        let mut jitter = Jitter::new(3);
        for _ in 0..1000 {
            let wait = jitter.apply(Duration::from_millis(100));
            assert!(wait >= Duration::from_millis(50) && wait < Duration::from_millis(100));
        }
    }

    #[test]
    fn retry_after_has_a_floor_and_a_cap() {
        let mut jitter = Jitter::new(1);
        let backoff = Duration::from_millis(200);
        assert_eq!(wait(Some(Duration::ZERO), backoff, &mut jitter), backoff);
        assert_eq!(
            wait(Some(Duration::from_secs(3)), backoff, &mut jitter),
            Duration::from_secs(3)
        );
        assert_eq!(
            wait(Some(Duration::from_secs(86_400)), backoff, &mut jitter),
            RETRY_AFTER_CAP
        );
        assert!(wait(None, backoff, &mut jitter) < backoff);
    }
}
