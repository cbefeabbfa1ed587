//! How a call finds its handle, fast at any number of series.
//!
//! 1. This thread's cache ([`ThreadCache`]): a 4-way set-associative table of
//!    [`THREAD_ENTRIES`] entries per thread (one table for the collector's flat pairs, one
//!    for the macros' keys). A hit costs a hash, a comparison and no shared write.
//! 2. On a miss, the layer's shared index ([`SharedIndex`]): [`SHARDS`] shards of a
//!    read-mostly hash table from the same key to the resolved handle. A hit costs one probe
//!    under a shard's read lock; the entry then replaces one entry of the thread's set, the
//!    first one not used since the set's hand last passed it (CLOCK), so a working set
//!    larger than the cache costs an index probe per call, never a registration.
//! 3. Only a key new to the process is resolved by the rules, under the shard's write lock,
//!    so threads racing on a new series register it once.
//!
//! Entries remember the layer's epoch (bumped when the exporter is bound or the settings
//! change) and when they were resolved: with idle expiry, an entry resolved more than half
//! the idle timeout ago is resolved again, since the exporter may have removed its series.
//! Every resolution is followed by an update through the handle, so a series whose entry
//! is fresh has been updated within half the timeout and is still exported.
//!
//! Memory is bounded: [`THREAD_ENTRIES`] entries per thread and table; the shared index
//! holds admitted keys only (not folded or dropped ones), at most twice the layer's series
//! limit, and forgets keys not resolved again within the idle timeout.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::thread::LocalKey;

use hashbrown::HashTable;
use metrics::Key;

use crate::handle::{Handle, Kind};
use crate::key::{self, PairsKey};

/// Ways per set of a thread's cache.
const WAYS: usize = 4;
/// Entries of a thread's cache, per table.
pub(crate) const THREAD_ENTRIES: usize = 1024;
const SETS: usize = THREAD_ENTRIES / WAYS;
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

#[derive(Clone, Copy)]
struct Stamp {
    epoch: u64,
    resolved_ms: u64,
}

impl Stamp {
    fn fresh(self, now: &Now) -> bool {
        self.epoch == now.epoch && self.resolved_ms >= now.stale_before
    }
}

struct Entry<S> {
    hash: u64,
    kind: Kind,
    key: S,
    resolved: Resolved,
    stamp: Stamp,
}

impl<S> Entry<S> {
    fn is<P: Probe<Stored = S>>(&self, hash: u64, probe: &P) -> bool {
        self.hash == hash && self.kind == probe.kind() && probe.matches(&self.key)
    }
}

struct Slot<S> {
    layer: u64,
    referenced: bool,
    entry: Entry<S>,
}

/// One thread's cache: see the module documentation.
pub(crate) struct ThreadCache<S> {
    slots: Box<[Option<Slot<S>>]>,
    /// Per set: the way the CLOCK hand points at.
    hands: Box<[u8]>,
}

impl<S> ThreadCache<S> {
    fn new() -> Self {
        Self {
            slots: (0..SETS * WAYS).map(|_| None).collect(),
            hands: vec![0; SETS].into_boxed_slice(),
        }
    }

    fn set(hash: u64, layer: u64) -> usize {
        ((hash ^ layer.rotate_left(29)) as usize) % SETS * WAYS
    }

    /// The fresh entry of `probe`, marked used.
    #[inline]
    fn get<P: Probe<Stored = S>>(&mut self, hash: u64, probe: &P, now: &Now) -> Option<&Resolved> {
        let base = Self::set(hash, now.layer);
        self.slots[base..base + WAYS]
            .iter_mut()
            .flatten()
            .find(|s| s.layer == now.layer && s.entry.is(hash, probe))
            .filter(|s| s.entry.stamp.fresh(now))
            .map(|s| {
                s.referenced = true;
                &s.entry.resolved
            })
    }

    /// Puts `entry` in its set: over the same key, in a free way, or over the first entry
    /// the hand finds unused since it last passed (clearing the marks it passes).
    fn insert<P: Probe<Stored = S>>(&mut self, probe: &P, now: &Now, entry: Entry<S>) {
        let base = Self::set(entry.hash, now.layer);
        let ways = &mut self.slots[base..base + WAYS];
        let way = ways
            .iter()
            .position(|s| {
                s.as_ref()
                    .is_some_and(|s| s.layer == now.layer && s.entry.is(entry.hash, probe))
            })
            .or_else(|| ways.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                let hand = &mut self.hands[base / WAYS];
                loop {
                    let way = usize::from(*hand) % WAYS;
                    *hand = hand.wrapping_add(1);
                    match &mut ways[way] {
                        Some(slot) if slot.referenced => slot.referenced = false,
                        _ => break way,
                    }
                }
            });
        ways[way] = Some(Slot {
            layer: now.layer,
            referenced: false,
            entry,
        });
    }
}

/// A thread-local cache table.
pub(crate) type ThreadTable<S> = LocalKey<RefCell<Option<ThreadCache<S>>>>;

/// The layer's shared index: see the module documentation.
pub(crate) struct SharedIndex<S> {
    shards: Box<[RwLock<HashTable<Entry<S>>>]>,
    len: AtomicUsize,
}

impl<S> SharedIndex<S> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            len: AtomicUsize::new(0),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<HashTable<Entry<S>>> {
        // The top bits: hashbrown uses the low ones within a shard.
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    fn get<P: Probe<Stored = S>>(&self, hash: u64, probe: &P, now: &Now) -> Option<(Resolved, Stamp)> {
        let shard = self.shard(hash).read().unwrap_or_else(PoisonError::into_inner);
        shard
            .find(hash, |e| e.is(hash, probe))
            .filter(|e| e.stamp.fresh(now))
            .map(|e| (e.resolved.clone(), e.stamp))
    }

    /// The fresh entry of `probe`, or what `resolve` gives (kept if it says so and the index
    /// holds fewer than `cap` keys), resolved once however many threads ask at once.
    fn get_or_resolve<P: Probe<Stored = S>>(
        &self,
        hash: u64,
        probe: &P,
        now: &Now,
        cap: usize,
        resolve: impl FnOnce() -> (Resolved, bool),
    ) -> (Resolved, Stamp) {
        let mut shard = self.shard(hash).write().unwrap_or_else(PoisonError::into_inner);
        let found = shard.find_entry(hash, |e| e.is(hash, probe));
        if let Ok(found) = &found {
            if found.get().stamp.fresh(now) {
                let entry = found.get();
                return (entry.resolved.clone(), entry.stamp);
            }
        }
        let (resolved, keep) = resolve();
        let stamp = Stamp {
            epoch: now.epoch,
            resolved_ms: now.ms,
        };
        match found {
            Ok(mut stale) if keep => {
                let entry = stale.get_mut();
                entry.resolved = resolved.clone();
                entry.stamp = stamp;
            }
            Ok(stale) => {
                stale.remove();
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
            Err(_) if keep && self.len.load(Ordering::Relaxed) < cap => {
                let entry = Entry {
                    hash,
                    kind: probe.kind(),
                    key: probe.store(),
                    resolved: resolved.clone(),
                    stamp,
                };
                shard.insert_unique(hash, entry, |e| e.hash);
                self.len.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        (resolved, stamp)
    }

    /// Forgets keys not resolved since `before_ms` (with idle expiry only).
    pub(crate) fn forget_before(&self, before_ms: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            let len = shard.len();
            shard.retain(|e| e.stamp.resolved_ms >= before_ms);
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
    cap: usize,
    probe: &P,
    resolve: impl FnOnce() -> (Resolved, bool),
    f: impl Fn(&Resolved) -> T,
) -> T {
    let thread_hash = probe.thread_hash();
    let hit = table.try_with(|cell| {
        // Busy: a recorder recording while it registers. Go without the cache.
        let mut cache = cell.try_borrow_mut().ok()?;
        let cache = cache.get_or_insert_with(ThreadCache::new);
        cache.get(thread_hash, probe, now).map(&f)
    });
    match hit {
        Ok(Some(out)) => out,
        _ => f(&miss(table, index, now, cap, probe, thread_hash, resolve)),
    }
}

/// The slow path, out of line: the shared index, or the rules.
#[cold]
#[inline(never)]
fn miss<P: Probe>(
    table: &'static ThreadTable<P::Stored>,
    index: &SharedIndex<P::Stored>,
    now: &Now,
    cap: usize,
    probe: &P,
    thread_hash: u64,
    resolve: impl FnOnce() -> (Resolved, bool),
) -> Resolved {
    let shared_hash = probe.shared_hash();
    let (resolved, stamp) = match index.get(shared_hash, probe, now) {
        Some(found) => found,
        None => index.get_or_resolve(shared_hash, probe, now, cap, resolve),
    };
    let _ = table.try_with(|cell| {
        if let Ok(mut cache) = cell.try_borrow_mut() {
            let entry = Entry {
                hash: thread_hash,
                kind: probe.kind(),
                key: probe.store(),
                resolved: resolved.clone(),
                stamp,
            };
            cache
                .get_or_insert_with(ThreadCache::new)
                .insert(probe, now, entry);
        }
    });
    resolved
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
