//! How a call finds its handle, fast at any number of series.
//!
//! 1. This thread's cache ([`ThreadCache`]): a 4-way set-associative table (one for the
//!    collector's flat pairs, one for the macros' keys) of small slots, each a hash tag and
//!    a shared [`Entry`]. A hit costs a hash, a comparison and no shared write. It starts at
//!    [`MIN_THREAD_ENTRIES`] slots and doubles, up to [`MAX_THREAD_ENTRIES`], while more
//!    than a quarter of its lookups miss.
//! 2. On a miss, the layer's shared index ([`SharedIndex`]): [`SHARDS`] shards of a
//!    read-mostly hash table from the same key to its entry. A hit costs one probe under a
//!    shard's read lock. The entry then replaces one slot of the thread's set, the first one
//!    not used since the set's hand last passed it (CLOCK). A thread whose working set
//!    outgrows even the largest cache keeps only one miss in eight, so a miss stays one
//!    probe, not a probe plus an eviction.
//! 3. Only a key new to the process is resolved by the rules, under the shard's write lock,
//!    so threads racing on a new series register it once.
//!
//! Entries remember the layer's epoch (bumped when the exporter is bound or the settings
//! change) and when they were resolved: with idle expiry, an entry resolved more than half
//! the idle timeout ago is resolved again, since the exporter may have removed its series.
//! Every resolution is followed by an update through the handle, so a series whose entry
//! is fresh has been updated within half the timeout and is still exported.
//!
//! Memory is bounded: at most [`MAX_THREAD_ENTRIES`] slots of 32 bytes per thread and
//! table; the shared index holds admitted keys only (not folded or dropped ones), at most
//! twice the layer's series limit, and forgets keys not resolved again within the idle
//! timeout.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::LocalKey;

use hashbrown::HashTable;
use metrics::Key;

use crate::handle::{Handle, Kind};
use crate::key::{self, PairsKey};

/// Ways per set of a thread's cache.
const WAYS: usize = 4;
/// Slots of a thread's cache, per table: where it starts, and how far it grows.
pub(crate) const MIN_THREAD_ENTRIES: usize = 1024;
pub(crate) const MAX_THREAD_ENTRIES: usize = 16 * 1024;
/// Lookups between two looks at a thread cache's miss rate.
const WINDOW: u32 = 4096;
/// Shards of the shared index.
pub(crate) const SHARDS: usize = 64;

/// A call's key, as a lookup sees it.
pub(crate) trait Probe {
    /// The key as entries keep it.
    type Stored;
    fn kind(&self) -> Kind;
    /// The hash choosing a thread cache's set.
    fn thread_hash(&self) -> u64;
    /// The hash of the shared index (only computed on a thread cache miss).
    fn shared_hash(&self) -> u64;
    fn matches(&self, stored: &Self::Stored) -> bool;
    fn store(&self) -> Self::Stored;
}

/// What a key resolved to.
#[derive(Clone)]
pub(crate) struct Resolved {
    pub(crate) handle: Handle,
    /// The call had an odd number of label strings (collector only).
    pub(crate) dangling: bool,
}

/// The layer's state a lookup checks entries against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub(crate) layer: u64,
    pub(crate) epoch: u64,
    /// The layer's clock, ms.
    pub(crate) ms: u64,
    /// Entries resolved before this are resolved again (0: never).
    pub(crate) stale_before: u64,
}

/// A key and what it resolved to, when: shared by the index and the thread caches. Read
/// on every cached call by every thread, so it keeps cache lines of its own: a neighbour's
/// counter, written by every call, must not share one with it.
#[repr(align(64))]
pub(crate) struct Entry<S> {
    hash: u64,
    kind: Kind,
    key: S,
    resolved: Resolved,
    epoch: u64,
    resolved_ms: u64,
}

impl<S> Entry<S> {
    #[inline]
    fn is<P: Probe<Stored = S>>(&self, probe: &P) -> bool {
        self.kind == probe.kind() && probe.matches(&self.key)
    }

    #[inline]
    fn fresh(&self, now: &Now) -> bool {
        self.epoch == now.epoch && self.resolved_ms >= now.stale_before
    }
}

struct Slot<S> {
    tag: u64,
    layer: u64,
    /// Used since the set's hand last passed it.
    referenced: bool,
    entry: Arc<Entry<S>>,
}

/// One thread's cache: see the module documentation.
pub(crate) struct ThreadCache<S> {
    slots: Box<[Option<Slot<S>>]>,
    /// Sets minus one (a power of two minus one): masks a hash into a set.
    mask: usize,
    /// Per set: the way the CLOCK hand points at.
    hands: Box<[u8]>,
    lookups: u32,
    misses: u32,
    /// Counts misses at the largest size: one in eight is kept.
    skipped: u8,
}

impl<S> ThreadCache<S> {
    fn with_slots(slots: usize) -> Self {
        Self {
            slots: (0..slots).map(|_| None).collect(),
            mask: slots / WAYS - 1,
            hands: vec![0; slots / WAYS].into_boxed_slice(),
            lookups: 0,
            misses: 0,
            skipped: 0,
        }
    }

    fn new() -> Self {
        Self::with_slots(MIN_THREAD_ENTRIES)
    }

    #[inline]
    fn set(&self, tag: u64, layer: u64) -> usize {
        (((tag ^ layer.rotate_left(29)) as usize) & self.mask) * WAYS
    }

    /// The fresh entry of `probe`, marked used.
    #[inline]
    fn get<P: Probe<Stored = S>>(
        &mut self,
        tag: u64,
        probe: &P,
        now: &Now,
    ) -> Option<&Arc<Entry<S>>> {
        self.lookups = self.lookups.wrapping_add(1);
        let base = self.set(tag, now.layer);
        let found = self.slots[base..base + WAYS]
            .iter_mut()
            .flatten()
            .find(|s| s.tag == tag && s.layer == now.layer && s.entry.is(probe))
            .filter(|s| s.entry.fresh(now));
        match found {
            Some(slot) => {
                slot.referenced = true;
                Some(&slot.entry)
            }
            None => {
                self.misses = self.misses.wrapping_add(1);
                None
            }
        }
    }

    /// After a miss: whether to keep the entry found, growing first if the working set
    /// outgrew the cache.
    fn admit(&mut self) -> bool {
        if self.lookups >= WINDOW {
            let thrashing = self.misses * 4 > self.lookups;
            self.lookups = 0;
            self.misses = 0;
            if thrashing && self.slots.len() < MAX_THREAD_ENTRIES {
                self.grow();
                return true;
            }
        }
        if self.slots.len() < MAX_THREAD_ENTRIES || self.misses * 2 < self.lookups {
            return true;
        }
        self.skipped = self.skipped.wrapping_add(1);
        self.skipped % 8 == 0
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, Self::with_slots(self.slots.len() * 2));
        for slot in old.slots.into_vec().into_iter().flatten() {
            let base = self.set(slot.tag, slot.layer);
            if let Some(free) = self.slots[base..base + WAYS]
                .iter_mut()
                .find(|s| s.is_none())
            {
                *free = Some(slot);
            }
        }
    }

    /// Puts `entry` in its set: over the same key, in a free way, or over the first entry
    /// the hand finds unused since it last passed (clearing the marks it passes).
    fn insert<P: Probe<Stored = S>>(
        &mut self,
        tag: u64,
        probe: &P,
        now: &Now,
        entry: Arc<Entry<S>>,
    ) {
        let base = self.set(tag, now.layer);
        let ways = &self.slots[base..base + WAYS];
        let same = |s: &Option<Slot<S>>| {
            s.as_ref()
                .is_some_and(|s| s.tag == tag && s.layer == now.layer && s.entry.is(probe))
        };
        let way = match ways
            .iter()
            .position(same)
            .or_else(|| ways.iter().position(Option::is_none))
        {
            Some(way) => base + way,
            None => {
                let hand = &mut self.hands[base / WAYS];
                loop {
                    let way = base + usize::from(*hand) % WAYS;
                    *hand = hand.wrapping_add(1);
                    let referenced = self.slots[way]
                        .as_mut()
                        .map(|s| std::mem::take(&mut s.referenced));
                    if referenced != Some(true) {
                        break way;
                    }
                }
            }
        };
        self.slots[way] = Some(Slot {
            tag,
            layer: now.layer,
            referenced: false,
            entry,
        });
    }
}

/// A thread-local cache table.
pub(crate) type ThreadTable<S> = LocalKey<RefCell<Option<ThreadCache<S>>>>;

type Shard<S> = RwLock<HashTable<Arc<Entry<S>>>>;

/// The layer's shared index: see the module documentation.
pub(crate) struct SharedIndex<S> {
    shards: Box<[Shard<S>]>,
    len: AtomicUsize,
    /// Most keys held.
    cap: AtomicUsize,
}

impl<S> SharedIndex<S> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            len: AtomicUsize::new(0),
            cap: AtomicUsize::new(cap),
        }
    }

    /// Holds at most `cap` keys from now on.
    pub(crate) fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    fn shard(&self, hash: u64) -> &Shard<S> {
        // The top bits: hashbrown uses the low ones within a shard.
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    /// Runs `f` on the fresh entry of `probe`, under the shard's read lock.
    #[inline]
    fn with<P: Probe<Stored = S>, T>(
        &self,
        hash: u64,
        probe: &P,
        now: &Now,
        f: impl FnOnce(&Arc<Entry<S>>) -> T,
    ) -> Option<T> {
        let shard = self
            .shard(hash)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .find(hash, |e| e.hash == hash && e.is(probe))
            .filter(|e| e.fresh(now))
            .map(f)
    }

    /// The fresh entry of `probe`, or one made of what `resolve` gives (kept in the index if
    /// it says so and the index is not full), resolved once however many threads ask at
    /// once.
    fn get_or_resolve<P: Probe<Stored = S>>(
        &self,
        hash: u64,
        probe: &P,
        now: &Now,
        resolve: impl FnOnce() -> (Resolved, bool),
    ) -> Arc<Entry<S>> {
        let mut shard = self
            .shard(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let found = shard.find_entry(hash, |e| e.hash == hash && e.is(probe));
        if let Ok(found) = &found {
            if found.get().fresh(now) {
                return found.get().clone();
            }
        }
        let (resolved, keep) = resolve();
        let entry = Arc::new(Entry {
            hash,
            kind: probe.kind(),
            key: probe.store(),
            resolved,
            epoch: now.epoch,
            resolved_ms: now.ms,
        });
        match found {
            Ok(mut stale) if keep => *stale.get_mut() = entry.clone(),
            Ok(stale) => {
                stale.remove();
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
            Err(_)
                if keep && self.len.load(Ordering::Relaxed) < self.cap.load(Ordering::Relaxed) =>
            {
                shard.insert_unique(hash, entry.clone(), |e| e.hash);
                self.len.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        entry
    }

    /// Forgets keys not resolved since `before_ms` (with idle expiry only).
    pub(crate) fn forget_before(&self, before_ms: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            let len = shard.len();
            shard.retain(|e| e.resolved_ms >= before_ms);
            self.len.fetch_sub(len - shard.len(), Ordering::Relaxed);
        }
    }

    /// Keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

/// Finds the handle of `probe` (see the module documentation) and runs `f` on it.
/// `resolve` applies the rules; it says whether the result may be shared.
#[inline]
pub(crate) fn find<P: Probe, T>(
    table: &'static ThreadTable<P::Stored>,
    index: &SharedIndex<P::Stored>,
    now: &Now,
    probe: &P,
    resolve: impl FnOnce() -> (Resolved, bool),
    f: impl Fn(&Resolved) -> T,
) -> T {
    let tag = probe.thread_hash();
    let hit = table.try_with(|cell| {
        // Busy: a recorder recording while it registers. Go without the cache.
        let mut cache = cell.try_borrow_mut().ok()?;
        let cache = cache.get_or_insert_with(ThreadCache::new);
        cache.get(tag, probe, now).map(|e| f(&e.resolved))
    });
    match hit {
        Ok(Some(out)) => out,
        _ => miss(table, index, now, probe, tag, resolve, &f),
    }
}

/// The slow path, out of line: the shared index, or the rules.
#[cold]
#[inline(never)]
fn miss<P: Probe, T>(
    table: &'static ThreadTable<P::Stored>,
    index: &SharedIndex<P::Stored>,
    now: &Now,
    probe: &P,
    tag: u64,
    resolve: impl FnOnce() -> (Resolved, bool),
    f: &impl Fn(&Resolved) -> T,
) -> T {
    let keep = |entry: &Arc<Entry<P::Stored>>| {
        let _ = table.try_with(|cell| {
            if let Ok(mut cache) = cell.try_borrow_mut() {
                let cache = cache.get_or_insert_with(ThreadCache::new);
                if cache.admit() {
                    cache.insert(tag, probe, now, entry.clone());
                }
            }
        });
    };
    let hash = probe.shared_hash();
    let found = index.with(hash, probe, now, |entry| {
        keep(entry);
        f(&entry.resolved)
    });
    match found {
        Some(out) => out,
        None => {
            let entry = index.get_or_resolve(hash, probe, now, resolve);
            keep(&entry);
            f(&entry.resolved)
        }
    }
}

/// A collector call: the kind, the name and the flat label strings as given.
pub(crate) struct PairsProbe<'a> {
    kind: Kind,
    name: &'a str,
    labels: &'a [&'a str],
    hash: u64,
}

impl<'a> PairsProbe<'a> {
    #[inline]
    pub(crate) fn new(kind: Kind, name: &'a str, labels: &'a [&'a str]) -> Self {
        Self {
            kind,
            name,
            labels,
            hash: key::pairs_hash(kind, name, labels),
        }
    }
}

impl Probe for PairsProbe<'_> {
    type Stored = PairsKey;
    fn kind(&self) -> Kind {
        self.kind
    }
    fn thread_hash(&self) -> u64 {
        self.hash
    }
    fn shared_hash(&self) -> u64 {
        self.hash
    }
    #[inline]
    fn matches(&self, stored: &PairsKey) -> bool {
        stored.matches(self.name, self.labels)
    }
    fn store(&self) -> PairsKey {
        PairsKey::new(self.name, self.labels)
    }
}

/// A macro call: the kind and the `metrics` key.
pub(crate) struct KeyProbe<'a> {
    pub(crate) kind: Kind,
    pub(crate) key: &'a Key,
}

impl Probe for KeyProbe<'_> {
    type Stored = Key;
    fn kind(&self) -> Kind {
        self.kind
    }
    /// The key's own hash, computed when it was built: free, and good enough to pick a set.
    fn thread_hash(&self) -> u64 {
        key::finish(self.key.get_hash() ^ self.kind as u64)
    }
    /// Seeded: the key's own hash has a fixed seed that crafted labels could aim at.
    fn shared_hash(&self) -> u64 {
        key::finish(key::series_hash(self.key) ^ self.kind as u64)
    }
    fn matches(&self, stored: &Key) -> bool {
        stored == self.key
    }
    fn store(&self) -> Key {
        self.key.clone()
    }
}
