//! Segmented storage: items addressed by a `u32` index that never moves, read without a
//! lock.
//!
//! Segment `k` holds `2^SHIFT << k` items and is allocated once, when the first index in it
//! is needed (by the owner, under its own lock); a reader finds an index in two loads. The
//! total size only ever doubles, as a `Vec`'s capacity does, but nothing is copied when it
//! grows, so a reader never needs a lock to keep a reference.

use std::sync::OnceLock;

/// Segments enough for every `u32` index with `SHIFT` 4 or more.
const SEGMENTS: usize = 29;

/// See the module documentation. `S` is one segment (a boxed slice, or a struct of them).
pub(crate) struct Segmented<S, const SHIFT: u32> {
    segments: [OnceLock<S>; SEGMENTS],
}

impl<S, const SHIFT: u32> Default for Segmented<S, SHIFT> {
    fn default() -> Self {
        Self {
            segments: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl<S, const SHIFT: u32> Segmented<S, SHIFT> {
    /// The segment holding `index`, and the offset of `index` in it.
    #[inline]
    pub(crate) fn locate(index: u32) -> (usize, usize) {
        let slot = (u64::from(index) >> SHIFT) + 1;
        let k = 63 - slot.leading_zeros() as usize;
        let start = ((1u64 << k) - 1) << SHIFT;
        (k, (u64::from(index) - start) as usize)
    }

    /// Items in segment `k`.
    pub(crate) fn size(k: usize) -> usize {
        1 << (SHIFT as usize + k)
    }

    /// The first index of segment `k`.
    pub(crate) fn start(k: usize) -> u32 {
        u32::try_from(((1u64 << k) - 1) << SHIFT).unwrap_or(u32::MAX)
    }

    /// Segment `k`, if allocated.
    #[inline]
    pub(crate) fn segment(&self, k: usize) -> Option<&S> {
        self.segments.get(k)?.get()
    }

    /// Segment `k`, allocated by `make` (given its size) if it is not yet; `None` past the
    /// last segment.
    pub(crate) fn segment_or_init(&self, k: usize, make: impl FnOnce(usize) -> S) -> Option<&S> {
        Some(self.segments.get(k)?.get_or_init(|| make(Self::size(k))))
    }

    /// Every allocated segment, in order, with its number.
    pub(crate) fn allocated(&self) -> impl Iterator<Item = (usize, &S)> {
        self.segments
            .iter()
            .enumerate()
            .map_while(|(k, s)| s.get().map(|s| (k, s)))
    }
}

/// Items of a slice segment, by index.
impl<T, const SHIFT: u32> Segmented<Box<[T]>, SHIFT> {
    /// The item at `index`, if its segment is allocated.
    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<&T> {
        let (k, at) = Self::locate(index);
        self.segment(k)?.get(at)
    }

    /// Makes sure the segment of `index` is allocated, with `T::default()` items.
    pub(crate) fn reserve(&self, index: u32) -> bool
    where
        T: Default,
    {
        let (k, _) = Self::locate(index);
        self.segment_or_init(k, |n| (0..n).map(|_| T::default()).collect())
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn indices_map_to_growing_segments_and_stay_put() {
        type S = Segmented<Box<[AtomicU64]>, 4>;
        assert_eq!(S::locate(0), (0, 0));
        assert_eq!(S::locate(15), (0, 15));
        assert_eq!(S::locate(16), (1, 0));
        assert_eq!(S::locate(47), (1, 31));
        assert_eq!(S::locate(48), (2, 0));
        assert_eq!(S::start(2), 48);
        let (k, at) = S::locate(u32::MAX);
        assert!(k < SEGMENTS && at < S::size(k));
        let slab = S::default();
        assert!(slab.get(100).is_none());
        assert!(slab.reserve(100));
        let cell = slab.get(100).expect("reserved");
        cell.store(7, Ordering::Relaxed);
        slab.reserve(5000);
        assert_eq!(slab.get(100).map(|c| c.load(Ordering::Relaxed)), Some(7));
        // Segments are allocated one by one: the ones below stay unallocated.
        assert!(slab.get(20).is_none() && slab.get(5).is_none());
    }
}
