//! Lossless histograms: observations wait in a buffer of ours until a drain moves them into
//! the exporter's storage.
//!
//! The exporter keeps observations in `metrics-util`'s `AtomicBucket`, which loses a value
//! pushed while a drain (a render or an upkeep) detaches its blocks. So nothing but the drain
//! ever writes the exporter's storage: every observation goes into this series' buffer, and
//! [`Histograms::drain`] (called only under the layer's drain lock, right before the
//! exporter renders) moves the buffers into the exporter. A push and a drain of the
//! exporter's storage can then never overlap.
//!
//! A recording thread takes only its series' buffer lock, held by other recorders for one
//! push and by the drain for one swap of two buffers: it never waits for a render. Buffers
//! are chunked, so a push never copies earlier observations (a growing `Vec` would, under
//! the lock), and the drain hands emptied chunks back for reuse: a steady rate of
//! observations allocates nothing.
//!
//! This is also the one place where NaN and ±Inf observations are dropped and counted: they
//! would turn the exporter's `_sum` into NaN for good.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use hashbrown::HashTable;
use metrics::{Counter, Histogram, HistogramFn, Key};

use crate::recorder::limits::AdmittedFamily;

/// Most observations one `record_many` call adds; the rest of its count is dropped and
/// counted (a huge count would otherwise allocate without bound).
pub(crate) const MAX_BATCH: usize = 1 << 16;

/// Shards of the registry, so registrations rarely wait for each other or for a drain.
const SHARDS: usize = 16;

/// Capacity of the first chunk of a buffer; each next one doubles, up to `MAX_CHUNK`.
const MIN_CHUNK: usize = 8;
const MAX_CHUNK: usize = 1024;

/// Observations in chunks, and emptied chunks kept for reuse.
#[derive(Default)]
struct Chunks {
    full: Vec<Vec<f64>>,
    current: Vec<f64>,
    free: Vec<Vec<f64>>,
}

impl Chunks {
    #[inline]
    fn push(&mut self, value: f64) {
        if self.current.len() == self.current.capacity() {
            self.next_chunk();
        }
        self.current.push(value);
    }

    #[cold]
    fn next_chunk(&mut self) {
        let size = (self.current.capacity() * 2).clamp(MIN_CHUNK, MAX_CHUNK);
        let next = self.free.pop().unwrap_or_else(|| Vec::with_capacity(size));
        let done = std::mem::replace(&mut self.current, next);
        if !done.is_empty() {
            self.full.push(done);
        }
    }

    fn len(&self) -> usize {
        self.full.iter().map(Vec::len).sum::<usize>() + self.current.len()
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.full
            .iter()
            .chain(std::iter::once(&self.current))
            .flatten()
            .copied()
    }

    /// Empties every chunk into the free list, keeping about `keep` observations of room
    /// (what the next interval is likely to need), not the room of a past burst.
    fn recycle(&mut self, keep: usize) {
        let chunks = self
            .full
            .drain(..)
            .chain(std::iter::once(std::mem::take(&mut self.current)));
        self.free.extend(chunks.filter(|c| c.capacity() > 0));
        let mut room = 0;
        self.free.retain_mut(|chunk| {
            chunk.clear();
            room += chunk.capacity();
            room <= keep.max(MIN_CHUNK)
        });
    }
}

/// The buffer of one exported histogram series.
pub(crate) struct BufferedHistogram {
    samples: Mutex<Chunks>,
    drain: Mutex<DrainSide>,
    /// The exported key, to register the series again after the exporter expired it.
    key: Key,
    hash: u64,
    family: Arc<AdmittedFamily>,
    /// `porter_metrics_dropped_samples_total{reason="non_finite"}`.
    non_finite: Counter,
    /// `porter_metrics_dropped_samples_total{reason="batch_limit"}`.
    batch_limit: Counter,
}

/// What only the drain touches.
struct DrainSide {
    /// The buffer swapped in at the next drain.
    spare: Chunks,
    /// The exporter's handle of the series.
    target: Histogram,
    /// When observations last went into `target` (layer clock, ms).
    fed_ms: u64,
}

/// What a histogram handle drops and counts, shared by the series of a layer.
#[derive(Clone)]
pub(crate) struct DropCounters {
    pub(crate) non_finite: Counter,
    pub(crate) batch_limit: Counter,
}

impl BufferedHistogram {
    fn new(
        key: Key,
        hash: u64,
        family: Arc<AdmittedFamily>,
        target: Histogram,
        drops: &DropCounters,
    ) -> Self {
        Self {
            samples: Mutex::new(Chunks::default()),
            drain: Mutex::new(DrainSide {
                spare: Chunks::default(),
                target,
                fed_ms: 0,
            }),
            key,
            hash,
            family,
            non_finite: drops.non_finite.clone(),
            batch_limit: drops.batch_limit.clone(),
        }
    }

    /// Buffers `count` observations of `value`; returns whether they were kept (false for
    /// NaN and ±Inf, which are counted and dropped).
    pub(crate) fn observe(&self, value: f64, count: usize) -> bool {
        if !value.is_finite() {
            self.non_finite.increment(count as u64);
            if !self.family.warned_non_finite.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    metric = %self.family.name,
                    "porter-metrics: non-finite histogram observation dropped"
                );
            }
            return false;
        }
        let kept = count.min(MAX_BATCH);
        if kept < count {
            self.batch_limit.increment((count - kept) as u64);
        }
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..kept {
            samples.push(value);
        }
        true
    }

    /// Moves the buffered observations into the exporter. `register` gives the exporter's
    /// handle afresh; it is used when nothing was fed since `refresh_before` (ms), since the
    /// exporter may have expired the series meanwhile.
    fn drain(
        &self,
        now_ms: u64,
        refresh_before: Option<u64>,
        register: &dyn Fn(&Key) -> Histogram,
    ) {
        let mut side = self.drain.lock().unwrap_or_else(PoisonError::into_inner);
        let side = &mut *side;
        {
            let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *samples, &mut side.spare);
        }
        let drained = side.spare.len();
        if drained > 0 {
            if refresh_before.is_some_and(|before| side.fed_ms < before) {
                side.target = register(&self.key);
            }
            for value in side.spare.values() {
                side.target.record(value);
            }
            side.fed_ms = now_ms;
        }
        side.spare.recycle(2 * drained);
    }

    fn is_empty(&self) -> bool {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            == 0
    }
}

impl HistogramFn for BufferedHistogram {
    fn record(&self, value: f64) {
        self.observe(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.observe(value, count);
    }
}

/// Every buffered histogram series of a layer, one per exported key.
pub(crate) struct Histograms {
    shards: Box<[Mutex<HashTable<Arc<BufferedHistogram>>>]>,
    drops: DropCounters,
}

impl Histograms {
    pub(crate) fn new(drops: DropCounters) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            drops,
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<HashTable<Arc<BufferedHistogram>>> {
        &self.shards[(hash as usize) % SHARDS]
    }

    /// The buffer of the series `key` (with series hash `hash`), created with `target` (the
    /// exporter's handle) on first use.
    pub(crate) fn get_or_insert(
        &self,
        hash: u64,
        key: &Key,
        family: &Arc<AdmittedFamily>,
        target: impl FnOnce() -> Histogram,
    ) -> Arc<BufferedHistogram> {
        let mut shard = self
            .shard(hash)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = shard.find(hash, |h| h.key == *key) {
            return found.clone();
        }
        let created = Arc::new(BufferedHistogram::new(
            key.clone(),
            hash,
            family.clone(),
            target(),
            &self.drops,
        ));
        shard.insert_unique(hash, created.clone(), |h| h.hash);
        created
    }

    /// Moves every buffer into the exporter (see [`BufferedHistogram::drain`]), and forgets
    /// the buffers nobody holds any more. Call it under the pipeline's render lock only.
    pub(crate) fn drain(
        &self,
        now_ms: u64,
        refresh_before: Option<u64>,
        register: &dyn Fn(&Key) -> Histogram,
    ) {
        let mut batch = Vec::new();
        for shard in self.shards.iter() {
            {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                // Held by the table alone and empty: no handle can fill it any more.
                shard.retain(|h| Arc::strong_count(h) > 1 || !h.is_empty());
                batch.extend(shard.iter().cloned());
            }
            // Drained outside the shard lock, so new series register meanwhile.
            for histogram in batch.drain(..) {
                histogram.drain(now_ms, refresh_before, register);
            }
        }
    }
}
