//! The per-thread handle cache behind [`PrometheusCollector`](crate::PrometheusCollector).
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
use metrics::{Counter, Gauge, Histogram, Level, Metadata, Recorder};

use crate::labels::key_from_pairs;
use crate::layer::COLLECTOR_TARGET;
use crate::pipeline::Pipeline;
use crate::policy::Kind;
use crate::self_metrics::LabelDrop;

/// Series cached per thread.
pub(crate) const MAX_ENTRIES: usize = 1024;

static COLLECTOR_METADATA: Metadata<'static> =
    Metadata::new(COLLECTOR_TARGET, Level::INFO, Some(module_path!()));

/// A registered `metrics` handle.
pub(crate) enum Handle {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
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
    let idle = pipeline.idle_timeout();
    let cached = CACHE.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return None;
        };
        let cache = slot.get_or_insert_with(|| Cache {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        });
        let hash = hash(&cache.hasher, pipeline.id, kind, name, labels);
        let now = idle.map_or(0, |_| pipeline.now_ms());
        let stale_before = idle.map_or(0, |idle| {
            now.saturating_sub(u64::try_from(idle.as_millis() / 2).unwrap_or(u64::MAX))
        });
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
