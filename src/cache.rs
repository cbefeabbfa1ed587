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
use std::hash::{BuildHasher, Hasher};

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
    /// The name, then the label strings, as given.
    parts: Box<[Box<str>]>,
    handle: Handle,
    dangling: bool,
    used_ms: u64,
}

impl Entry {
    fn matches(&self, pipeline: u64, kind: Kind, name: &str, labels: &[&str]) -> bool {
        self.pipeline == pipeline
            && self.kind == kind
            && self.parts.len() == labels.len() + 1
            && *self.parts[0] == *name
            && self.parts[1..].iter().zip(labels).all(|(a, b)| **a == **b)
    }
}

struct Cache {
    table: HashTable<Entry>,
    hasher: DefaultHashBuilder,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

fn hash(
    hasher: &DefaultHashBuilder,
    pipeline: u64,
    kind: Kind,
    name: &str,
    labels: &[&str],
) -> u64 {
    let mut h = hasher.build_hasher();
    h.write_u64(pipeline);
    h.write_u8(kind as u8);
    for part in std::iter::once(&name).chain(labels) {
        h.write(part.as_bytes());
        // 0xff never occurs in UTF-8: parts cannot run into each other.
        h.write_u8(0xff);
    }
    h.finish()
}

/// Registers the series of `name` and `labels` with `recorder`; reports a dangling key.
pub(crate) fn register(
    recorder: &dyn Recorder,
    kind: Kind,
    name: &str,
    labels: &[&str],
) -> (Handle, bool) {
    let (key, dangling) = key_from_pairs(name, labels);
    let handle = match kind {
        Kind::Counter => Handle::Counter(recorder.register_counter(&key, &COLLECTOR_METADATA)),
        Kind::Gauge => Handle::Gauge(recorder.register_gauge(&key, &COLLECTOR_METADATA)),
        Kind::Histogram => {
            Handle::Histogram(recorder.register_histogram(&key, &COLLECTOR_METADATA))
        }
    };
    (handle, dangling)
}

fn count_dangling(pipeline: &Pipeline, name: &str, warn: bool) {
    let self_metrics = &pipeline.stack.state().self_metrics;
    self_metrics
        .dropped_labels(LabelDrop::DanglingKey)
        .increment(1);
    if warn {
        self_metrics.warn_once(
            "dangling_key",
            name,
            "odd number of label strings; the last key has no value and was dropped",
        );
    }
}

/// Runs `f` on the handle of a series of `pipeline`, from the cache when possible.
pub(crate) fn with_handle<T>(
    pipeline: &Pipeline,
    kind: Kind,
    name: &str,
    labels: &[&str],
    f: impl Fn(&Handle) -> T,
) -> T {
    let epoch = pipeline.epoch.load(std::sync::atomic::Ordering::Acquire);
    let layer = pipeline.stack.state();
    let cached = CACHE.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return None;
        };
        let cache = slot.get_or_insert_with(|| Cache {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        });
        let hash = hash(&cache.hasher, pipeline.id, kind, name, labels);
        let now = layer.now_ms();
        let stale_before = layer.stale_before();
        if let Some(entry) = cache
            .table
            .find_mut(hash, |e| e.matches(pipeline.id, kind, name, labels))
        {
            if entry.epoch != epoch || entry.used_ms < stale_before {
                entry.handle = register(&pipeline.stack, kind, name, labels).0;
                entry.epoch = epoch;
            }
            entry.used_ms = now;
            if entry.dangling {
                count_dangling(pipeline, name, false);
            }
            return Some(f(&entry.handle));
        }
        let (handle, dangling) = register(&pipeline.stack, kind, name, labels);
        if dangling {
            count_dangling(pipeline, name, true);
        }
        if cache.table.len() >= MAX_ENTRIES {
            cache.table.clear();
        }
        let parts = std::iter::once(name)
            .chain(labels.iter().copied())
            .map(Box::from)
            .collect();
        let entry = cache.table.insert_unique(
            hash,
            Entry {
                hash,
                pipeline: pipeline.id,
                epoch,
                kind,
                parts,
                handle,
                dangling,
                used_ms: now,
            },
            |e| e.hash,
        );
        Some(f(&entry.get().handle))
    });
    if let Ok(Some(out)) = cached {
        return out;
    }
    // Re-entrant call, or the thread is shutting down: go without the cache.
    let (handle, dangling) = register(&pipeline.stack, kind, name, labels);
    if dangling {
        count_dangling(pipeline, name, true);
    }
    f(&handle)
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
    /// The counter of calls folded into the overflow series, if this key overflowed.
    overflow: Option<Counter>,
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
            if let Some(overflow) = &entry.overflow {
                overflow.increment(1);
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
    overflow: Option<Counter>,
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
            overflow,
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
