//! How a call finds its series fast: a per-thread cache in front of the store.
//!
//! Each thread keeps a 4-way set-associative table (one for the collector's flat pairs, one
//! for the macros' keys) of small slots, each a hash tag and a shared [`Entry`]: the call's
//! key and what it resolved to. A hit costs a hash, a comparison and no shared write. The
//! table starts at [`MIN_THREAD_ENTRIES`] slots and doubles, up to [`MAX_THREAD_ENTRIES`],
//! while more than a quarter of its lookups miss; then it replaces the first entry the set's
//! hand finds unused since it last passed (CLOCK), and a thread whose working set outgrows
//! even the largest table keeps only one miss in eight. A miss asks the store, whose family
//! map is the one shared index.
//!
//! An entry is used only while it is fresh: made in the recorder's current epoch (bumped
//! when its settings change) and, for a series, while the series is live (idle expiry
//! did not remove it). Memory is bounded: at most [`MAX_THREAD_ENTRIES`] slots of 32 bytes
//! per thread and table.

use std::cell::RefCell;
use std::sync::Arc;
use std::thread::LocalKey;

use metrics::Key;

use crate::handle::Handle;
use crate::key::{self, PairsKey};
use crate::store::kind::Kind;

/// Ways per set of a thread's cache.
const WAYS: usize = 4;
/// Slots of a thread's cache, per table: where it starts, and how far it grows.
pub(crate) const MIN_THREAD_ENTRIES: usize = 1024;
pub(crate) const MAX_THREAD_ENTRIES: usize = 16 * 1024;
/// Lookups between two looks at a thread cache's miss rate.
const WINDOW: u32 = 4096;

/// A call's key, as a lookup sees it.
pub(crate) trait Probe {
    /// The key as entries keep it.
    type Stored;
    fn kind(&self) -> Kind;
    /// The hash choosing a thread cache's set.
    fn thread_hash(&self) -> u64;
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

/// The recorder's state a lookup checks entries against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub(crate) layer: u64,
    pub(crate) epoch: u64,
}

/// A key and what it resolved to, in which epoch.
pub(crate) struct Entry<S> {
    kind: Kind,
    key: S,
    resolved: Resolved,
    epoch: u64,
}

impl<S> Entry<S> {
    #[inline]
    fn is<P: Probe<Stored = S>>(&self, probe: &P) -> bool {
        self.kind == probe.kind() && probe.matches(&self.key)
    }

    #[inline]
    fn fresh(&self, now: &Now) -> bool {
        self.epoch == now.epoch && self.resolved.handle.is_live()
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

/// Finds what `probe` resolves to (see the module documentation) and runs `f` on it.
/// `resolve` asks the store.
#[inline]
pub(crate) fn find<P: Probe, T>(
    table: &'static ThreadTable<P::Stored>,
    now: &Now,
    probe: &P,
    resolve: impl FnOnce() -> Resolved,
    f: impl Fn(&Resolved) -> T,
) -> T {
    let tag = probe.thread_hash();
    let hit = table.try_with(|cell| {
        // Busy: a recorder recording while it resolves. Go without the cache.
        let mut cache = cell.try_borrow_mut().ok()?;
        let cache = cache.get_or_insert_with(ThreadCache::new);
        cache.get(tag, probe, now).map(|e| f(&e.resolved))
    });
    match hit {
        Ok(Some(out)) => out,
        _ => miss(table, now, probe, tag, resolve, &f),
    }
}

/// The slow path, out of line: the store, then the thread's cache keeps the answer.
#[cold]
#[inline(never)]
fn miss<P: Probe, T>(
    table: &'static ThreadTable<P::Stored>,
    now: &Now,
    probe: &P,
    tag: u64,
    resolve: impl FnOnce() -> Resolved,
    f: &impl Fn(&Resolved) -> T,
) -> T {
    let resolved = resolve();
    // Decide first: a thread that keeps only one miss in eight builds no entry for the
    // other seven (the key's copy is most of a miss's cost).
    let keep = table
        .try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut cache| cache.get_or_insert_with(ThreadCache::new).admit())
                .unwrap_or(false)
        })
        .unwrap_or(false);
    if !keep {
        return f(&resolved);
    }
    let entry = Arc::new(Entry {
        kind: probe.kind(),
        key: probe.store(),
        resolved,
        epoch: now.epoch,
    });
    let _ = table.try_with(|cell| {
        if let Ok(mut cache) = cell.try_borrow_mut() {
            let cache = cache.get_or_insert_with(ThreadCache::new);
            cache.insert(tag, probe, now, entry.clone());
        }
    });
    f(&entry.resolved)
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
    /// The key's own hash, computed when it was built: free, and good enough to pick a set
    /// (the store's map, not this cache, is what crafted labels could aim at).
    fn thread_hash(&self) -> u64 {
        key::finish(self.key.get_hash() ^ self.kind as u64)
    }
    fn matches(&self, stored: &Key) -> bool {
        stored == self.key
    }
    fn store(&self) -> Key {
        self.key.clone()
    }
}
