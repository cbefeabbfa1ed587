//! Per-thread handle caches: one behind [`PrometheusCollector`](crate::PrometheusCollector),
//! keyed by the name and label strings as given, and one in the recorder layer, keyed by the
//! `metrics` key (what the macros pass).
//!
//! A warm call (a series this thread used recently) hashes the name and label strings, finds
//! the `metrics` handle and updates it: no lock, no allocation, nothing shared written but
//! the series' own atomics, so threads on different series do not slow each other down.
//!
//! * Bounded: at most [`MAX_ENTRIES`] per thread; a full cache is emptied and refilled.
//! * Entries remember their pipeline and its epoch (bumped when the exporter is bound), so a
//!   handle from the pre-export buffer is replaced by the exporter's own.
//! * With an idle timeout, an entry not used for half the timeout is looked up again: the
//!   exporter removes series idle for the whole timeout, and a handle to a removed series
//!   would record into nothing.
//! * Re-entrant use (a recorder that records while registering) skips the cache.

use std::cell::RefCell;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Level, Metadata, Recorder};

use crate::labels::key_from_pairs;
use crate::layer::COLLECTOR_TARGET;
use crate::pipeline::Pipeline;
use crate::policy::Kind;
use crate::self_metrics::{DropSink, LabelDrop};

/// Series cached per thread.
pub(crate) const MAX_ENTRIES: usize = 1024;

static COLLECTOR_METADATA: Metadata<'static> =
    Metadata::new(COLLECTOR_TARGET, Level::INFO, Some(module_path!()));

/// A registered `metrics` handle.
#[derive(Clone)]
pub(crate) enum Handle {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Handle {
    /// A handle of `kind` standing in for a dropped metric.
    pub(crate) fn dropped(kind: Kind, sink: Arc<DropSink>) -> Self {
        match kind {
            Kind::Counter => Handle::Counter(Counter::from_arc(sink)),
            Kind::Gauge => Handle::Gauge(Gauge::from_arc(sink)),
            Kind::Histogram => Handle::Histogram(Histogram::from_arc(sink)),
        }
    }

    pub(crate) fn into_counter(self) -> Counter {
        match self {
            Handle::Counter(c) => c,
            _ => Counter::noop(),
        }
    }

    pub(crate) fn into_gauge(self) -> Gauge {
        match self {
            Handle::Gauge(g) => g,
            _ => Gauge::noop(),
        }
    }

    pub(crate) fn into_histogram(self) -> Histogram {
        match self {
            Handle::Histogram(h) => h,
            _ => Histogram::noop(),
        }
    }
}

struct Entry {
    hash: u64,
    pipeline: u64,
    epoch: u64,
    kind: Kind,
    /// The name and the label strings as given.
    key: PackedKey,
    handle: Handle,
    dangling: bool,
    used_ms: u64,
}

impl Entry {
    #[inline]
    fn matches(&self, pipeline: u64, kind: Kind, name: &str, labels: &[&str]) -> bool {
        self.pipeline == pipeline && self.kind == kind && self.key.matches(name, labels)
    }
}

/// Bytes kept inline in an entry: most keys fit, so caching them allocates nothing.
const INLINE: usize = 62;

/// A name and label strings packed as `[count][lengths...][bytes...]` (u32 little-endian
/// numbers), inline when short: no allocation to interleave with the exporter's own.
enum PackedKey {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

/// Packs a length; one over 4 GiB saturates, and then never matches (never cached).
fn packed_len(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

impl PackedKey {
    fn new(name: &str, labels: &[&str]) -> Self {
        let parts = || std::iter::once(name).chain(labels.iter().copied());
        let size = 4 + 4 * (labels.len() + 1) + parts().map(str::len).sum::<usize>();
        let fill = |out: &mut [u8]| {
            let mut at = 0;
            let mut put = |bytes: &[u8]| {
                if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                    dst.copy_from_slice(bytes);
                }
                at += bytes.len();
            };
            put(&packed_len(labels.len() + 1));
            parts().for_each(|p| put(&packed_len(p.len())));
            parts().for_each(|p| put(p.as_bytes()));
        };
        match u8::try_from(size) {
            Ok(len) if size <= INLINE => {
                let mut buf = [0u8; INLINE];
                fill(&mut buf);
                PackedKey::Inline { len, buf }
            }
            _ => {
                let mut heap = vec![0u8; size].into_boxed_slice();
                fill(&mut heap);
                PackedKey::Heap(heap)
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            PackedKey::Inline { len, buf } => &buf[..usize::from(*len)],
            PackedKey::Heap(bytes) => bytes,
        }
    }

    #[inline]
    fn matches(&self, name: &str, labels: &[&str]) -> bool {
        let packed = self.bytes();
        let count = labels.len() + 1;
        if word::<4>(packed, 0) != count as u64 {
            return false;
        }
        let mut len_at = 4;
        let mut offset = 4 + 4 * count;
        let mut same = |part: &str| {
            let len = word::<4>(packed, len_at) as usize;
            len_at += 4;
            let stored = packed.get(offset..offset + len);
            offset += len;
            part.len() == len && stored.is_some_and(|stored| same_bytes(stored, part.as_bytes()))
        };
        same(name) && labels.iter().all(|part| same(part))
    }
}

struct Cache {
    table: HashTable<Entry>,
    /// Random per thread, so crafted label values cannot aim at one bucket.
    seed: u64,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER)
}

/// Reads `N` bytes at `at` as a little-endian word (0 if out of range, which the callers
/// rule out).
#[inline]
fn word<const N: usize>(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(src) = bytes.get(at..at + N) {
        w[..N].copy_from_slice(src);
    }
    u64::from_le_bytes(w)
}

/// Equality of two byte strings of the same length; short ones (the usual label value)
/// by two overlapping word loads instead of a call to `memcmp`.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n > 16 || n != b.len() {
        return a == b;
    }
    if n >= 8 {
        word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8)
    } else if n >= 4 {
        word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4)
    } else {
        // 0 to 3 bytes: the first, middle and last cover them all.
        n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1])
    }
}

/// Mixes a string in with as few loads as possible (overlapping reads, as wyhash does).
#[inline]
fn mix_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let len = (n as u64) << 56;
    if n > 8 {
        let mut at = 0;
        while at + 8 < n {
            h = mix(h, word::<8>(bytes, at));
            at += 8;
        }
        mix(h, word::<8>(bytes, n - 8) ^ len)
    } else if n >= 4 {
        mix(
            h,
            (word::<4>(bytes, 0) | word::<4>(bytes, n - 4) << 32) ^ len,
        )
    } else if n > 0 {
        let b = |i: usize| u64::from(bytes[i]);
        mix(h, b(0) | b(n / 2) << 8 | b(n - 1) << 16 | len)
    } else {
        mix(h, 0)
    }
}

/// A fast hash of the name and the label values (keys rarely tell series apart; the full
/// comparison on a hit does), finished so both ends of the word are well mixed.
#[inline]
fn hash(seed: u64, pipeline: u64, kind: Kind, name: &str, labels: &[&str]) -> u64 {
    let mut h = mix(seed ^ pipeline, kind as u64 ^ ((labels.len() as u64) << 8));
    h = mix_bytes(h, name.as_bytes());
    for value in labels.iter().skip(1).step_by(2) {
        h = mix_bytes(h, value.as_bytes());
    }
    h ^= h >> 29;
    h = h.wrapping_mul(MULTIPLIER);
    h ^ (h >> 32)
}

/// Registers the series of `name` and `labels` with `recorder`; reports a dangling key.
pub(crate) fn register(
    recorder: &dyn Recorder,
    kind: Kind,
    name: &str,
    labels: &[&str],
) -> (Handle, bool) {
    register_with(recorder, kind, name, labels, &COLLECTOR_METADATA)
}

fn register_with(
    recorder: &dyn Recorder,
    kind: Kind,
    name: &str,
    labels: &[&str],
    metadata: &Metadata<'static>,
) -> (Handle, bool) {
    let (key, dangling) = key_from_pairs(name, labels);
    let handle = match kind {
        Kind::Counter => Handle::Counter(recorder.register_counter(&key, metadata)),
        Kind::Gauge => Handle::Gauge(recorder.register_gauge(&key, metadata)),
        Kind::Histogram => Handle::Histogram(recorder.register_histogram(&key, metadata)),
    };
    (handle, dangling)
}

/// Registers on a porter pipeline for the cache.
fn register_fast(pipeline: &Pipeline, kind: Kind, name: &str, labels: &[&str]) -> (Handle, bool) {
    register(&pipeline.stack, kind, name, labels)
}

/// Counts one dropped dangling key (every call that has one).
fn count_dangling(pipeline: &Pipeline) {
    pipeline
        .stack
        .state()
        .self_metrics
        .dropped_labels(LabelDrop::DanglingKey)
        .increment(1);
}

/// Warns about a dangling key, once per metric name.
fn warn_dangling(pipeline: &Pipeline, name: &str) {
    pipeline.stack.state().self_metrics.warn_once(
        "dangling_key",
        name,
        "odd number of label strings; the last key has no value and was dropped",
    );
}

/// Runs `f` on the handle of a series of `pipeline`, from the cache when possible.
#[inline]
pub(crate) fn with_handle<T>(
    pipeline: &Pipeline,
    kind: Kind,
    name: &str,
    labels: &[&str],
    f: impl Fn(&Handle) -> T,
) -> T {
    // Relaxed: a stale epoch only means one more use of a handle that still forwards.
    let epoch = pipeline.epoch.load(std::sync::atomic::Ordering::Relaxed);
    let cached = CACHE.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return None;
        };
        let cache = slot.get_or_insert_with(Cache::new);
        let hash = hash(cache.seed, pipeline.id, kind, name, labels);
        let (now, stale_before) = pipeline.stack.state().clock_ms();
        let matches = |e: &Entry| e.matches(pipeline.id, kind, name, labels);
        let entry = match cache.table.find_entry(hash, matches) {
            Ok(found) => {
                let entry = found.into_mut();
                if entry.epoch != epoch || entry.used_ms < stale_before {
                    // A new epoch, or idle long enough for the exporter to have dropped it.
                    entry.handle = register_fast(pipeline, kind, name, labels).0;
                    entry.epoch = epoch;
                }
                entry
            }
            Err(absent) => insert(
                absent.into_table(),
                hash,
                epoch,
                pipeline,
                kind,
                name,
                labels,
            ),
        };
        entry.used_ms = now;
        if entry.dangling {
            count_dangling(pipeline);
        }
        Some(f(&entry.handle))
    });
    if let Ok(Some(out)) = cached {
        return out;
    }
    // Re-entrant call, or the thread is shutting down: go without the cache.
    let (handle, dangling) = register_fast(pipeline, kind, name, labels);
    if dangling {
        count_dangling(pipeline);
        warn_dangling(pipeline, name);
    }
    f(&handle)
}

impl Cache {
    fn new() -> Self {
        Self {
            table: HashTable::new(),
            seed: DefaultHashBuilder::default().hash_one(0u8),
        }
    }
}

/// The slow path, out of line: registers a series this thread has not cached.
#[cold]
#[inline(never)]
fn insert<'c>(
    table: &'c mut HashTable<Entry>,
    hash: u64,
    epoch: u64,
    pipeline: &Pipeline,
    kind: Kind,
    name: &str,
    labels: &[&str],
) -> &'c mut Entry {
    let (handle, dangling) = register_fast(pipeline, kind, name, labels);
    if dangling {
        warn_dangling(pipeline, name); // counted by the caller, on every call
    }
    if table.len() >= MAX_ENTRIES {
        table.clear();
    }
    let entry = Entry {
        hash,
        pipeline: pipeline.id,
        epoch,
        kind,
        key: PackedKey::new(name, labels),
        handle,
        dangling,
        used_ms: 0,
    };
    table.insert_unique(hash, entry, |e| e.hash).into_mut()
}

/// Runs `f` on a handle registered afresh with a recorder that is not a porter pipeline.
pub(crate) fn uncached<T>(
    recorder: &dyn Recorder,
    kind: Kind,
    name: &str,
    labels: &[&str],
    f: impl FnOnce(&Handle) -> T,
) -> T {
    let (handle, dangling) = register(recorder, kind, name, labels);
    if dangling {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(metric = name, "porter-metrics: odd number of label strings; the last key has no value and was dropped");
        });
    }
    f(&handle)
}

/// An entry of the layer's cache: a key as the macros gave it, and what it resolved to.
struct KeyEntry {
    layer: u64,
    epoch: u64,
    kind: Kind,
    /// Compared in full on a hit: a hash collision must never route to another series.
    key: Key,
    handle: Handle,
    resolved_ms: u64,
}

struct KeyCache {
    table: HashTable<KeyEntry>,
}

thread_local! {
    static KEYED: RefCell<Option<KeyCache>> = const { RefCell::new(None) };
}

fn key_hash(layer: u64, kind: Kind, key: &Key) -> u64 {
    // The key's own hash ignores label order, as does `Key`'s equality.
    key.get_hash() ^ layer.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (kind as u64).rotate_left(61)
}

/// The cached handle of `key` in `layer`, if this thread resolved it in this epoch and
/// not before `stale_before` (ms).
pub(crate) fn keyed_hit(
    layer: u64,
    epoch: u64,
    kind: Kind,
    key: &Key,
    stale_before: u64,
) -> Option<Handle> {
    KEYED
        .try_with(|cell| {
            let cache = cell.try_borrow().ok()?;
            let entry = cache
                .as_ref()?
                .table
                .find(key_hash(layer, kind, key), |e| {
                    e.layer == layer && e.kind == kind && e.key == *key
                })?;
            if entry.epoch != epoch || entry.resolved_ms < stale_before {
                return None;
            }
            Some(entry.handle.clone())
        })
        .ok()
        .flatten()
}

/// Remembers what `key` resolved to, for this thread.
pub(crate) fn keyed_insert(
    layer: u64,
    epoch: u64,
    kind: Kind,
    key: &Key,
    handle: &Handle,
    now_ms: u64,
) {
    let _ = KEYED.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return;
        };
        let cache = slot.get_or_insert_with(|| KeyCache {
            table: HashTable::new(),
        });
        let hash = key_hash(layer, kind, key);
        let entry = KeyEntry {
            layer,
            epoch,
            kind,
            key: key.clone(),
            handle: handle.clone(),
            resolved_ms: now_ms,
        };
        match cache.table.find_mut(hash, |e| {
            e.layer == layer && e.kind == kind && e.key == *key
        }) {
            Some(existing) => *existing = entry,
            None => {
                if cache.table.len() >= MAX_ENTRIES {
                    cache.table.clear();
                }
                cache
                    .table
                    .insert_unique(hash, entry, |e| key_hash(e.layer, e.kind, &e.key));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalRecorder;

    fn collector_entries() -> usize {
        CACHE.with(|c| c.borrow().as_ref().map_or(0, |c| c.table.len()))
    }

    fn layer_entries() -> usize {
        KEYED.with(|c| c.borrow().as_ref().map_or(0, |c| c.table.len()))
    }

    #[test]
    fn caches_stay_bounded_per_thread() {
        let recorder = LocalRecorder::new();
        let collector = recorder.collector();
        for i in 0..(3 * MAX_ENTRIES) {
            let value = i.to_string();
            crate::Collector::increment_counter(&collector, "bounded_total", &["i", &value]);
            metrics::with_local_recorder(&recorder, || {
                metrics::counter!("bounded_macro_total", "i" => value.clone()).increment(1);
            });
            assert!(collector_entries() <= MAX_ENTRIES);
            assert!(layer_entries() <= MAX_ENTRIES);
        }
        assert!(collector_entries() > 0);
    }

    #[test]
    fn packed_keys_match_exactly_inline_and_on_the_heap() {
        let long = "x".repeat(200);
        for (name, labels) in [
            ("m", &["k", "v"][..]),
            ("requests_total", &["method", "GET", "endpoint", "/api"][..]),
            (long.as_str(), &["k", long.as_str()][..]),
            ("", &[][..]),
        ] {
            let key = PackedKey::new(name, labels);
            assert!(key.matches(name, labels));
            assert!(!key.matches(name, &[labels, &["extra"]].concat()));
            assert!(!key.matches(&format!("{name}_"), labels));
            if let Some((last, rest)) = labels.split_last() {
                let changed = format!("{last}!");
                let other: Vec<&str> = rest.iter().copied().chain([changed.as_str()]).collect();
                assert!(!key.matches(name, &other));
            }
        }
        // Parts that run into each other differently are different keys.
        assert!(!PackedKey::new("ab", &["c"]).matches("a", &["bc"]));
        assert!(matches!(
            PackedKey::new("m", &["k", "v"]),
            PackedKey::Inline { .. }
        ));
        assert!(matches!(PackedKey::new(&long, &[]), PackedKey::Heap(_)));
    }

    #[test]
    fn hashes_tell_short_values_apart() {
        let h = |v: &str| hash(7, 1, Kind::Counter, "m", &["k", v]);
        let values = [
            "",
            "1",
            "11",
            "111",
            "1111",
            "u1",
            "u11",
            "abcdefgh",
            "abcdefghi",
        ];
        let hashes: std::collections::HashSet<u64> = values.iter().map(|v| h(v)).collect();
        assert_eq!(hashes.len(), values.len());
        assert!(same_bytes(b"abc", b"abc") && !same_bytes(b"abc", b"abd"));
        assert!(same_bytes(b"0123456789", b"0123456789"));
        assert!(!same_bytes(b"0123456789", b"0123456788"));
    }
}
