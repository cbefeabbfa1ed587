//! The recorder: resolves every call, of the [`Collector`](crate::Collector) and of the
//! `metrics` macros alike, into a series of the store, through this thread's cache
//! ([`crate::cache`]).
//!
//! What it does with any input is the table *What porter-metrics does with any input* of
//! the [guide](crate::guide) (its one copy). Each distinct problem is logged once at
//! `WARN`; the self-metrics are listed in [`self_metrics`](crate::self_metrics).
//!
//! ```
//! use porter_metrics::{self_metrics::DROPPED_SAMPLES, testing::Capture};
//!
//! let capture = Capture::new();
//! capture.run(|| {
//!     metrics::counter!("jobs_total", "queue" => "a", "region" => "").increment(1);
//!     metrics::histogram!("latency_seconds").record(f64::NAN);
//! });
//! let scrape = capture.exposition().expect("always a valid scrape");
//! // the empty `region` removed:
//! assert_eq!(scrape.value("jobs_total", &["queue", "a"]), Some(1.0));
//! assert_eq!(scrape.value(DROPPED_SAMPLES, &["reason", "non_finite"]), Some(1.0));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

use crate::cache::{self, Answer};
use crate::handle::{pack, Bound, Target, TRIES};
use crate::store::epoch::{self, Pin};
use crate::store::family::{Family, Found, Op, Wrote};
use crate::store::hash;
use crate::store::kind::Kind;
use crate::store::self_metrics::{DropReason, LabelDrop};
use crate::store::{Limits, Store};

static NEXT_RECORDER: AtomicU64 = AtomicU64::new(1);

/// The recorder of one pipeline; see the module documentation.
pub(crate) struct PorterRecorder {
    store: Store,
    /// Unique for the life of the process; seeds this recorder's cache tags.
    id: u64,
}

impl std::fmt::Debug for PorterRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (series, _, names) = self.store.counts();
        f.debug_struct("PorterRecorder")
            .field("id", &self.id)
            .field("series", &series)
            .field("metric_names", &names)
            .finish()
    }
}

/// What the miss path of a collector call needs: the call, and its hashes.
struct Call<'a> {
    kind: Kind,
    name: &'a str,
    labels: &'a [&'a str],
    labels_hash: u64,
    /// The tag of its family in the thread's family cache.
    family_tag: u64,
    /// Its tag in the thread's cache.
    tag: u64,
}

/// Mixed into a family's tag in the thread's family cache (a table of its own).
const FAMILY: u64 = 0x6661_6d69_6c79_0001;

/// The flat pairs of a collector call, the dangling key left out.
#[inline]
fn flat<'a>(labels: &'a [&'a str]) -> impl Iterator<Item = (&'a str, &'a str)> + Clone {
    labels.chunks_exact(2).map(|p| (p[0], p[1]))
}

impl PorterRecorder {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            store: Store::new(limits),
            id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Unique for the life of the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Applies limits and the idle timeout.
    pub(crate) fn configure(&self, limits: Limits, idle: Option<Duration>) {
        self.store.configure(limits, idle);
    }

    fn seed(&self, kind: Kind) -> u64 {
        self.id << 2 | kind as u64
    }

    /// Applies `op` to the series of a collector call (flat label pairs).
    #[inline]
    pub(crate) fn write_pairs(&self, kind: Kind, name: &str, labels: &[&str], op: Op<'_>) {
        if labels.len() % 2 == 1 {
            let metrics = &self.store.shared.self_metrics;
            metrics.count_label_drop(LabelDrop::DanglingKey, 1);
        }
        let keys = hash::keys();
        let labels_hash = keys.labels(flat(labels));
        let name_hash = keys.text(name);
        let tag = keys.call(self.seed(kind), name_hash, labels_hash);
        let pin = epoch::pin();
        if let Some(answer) = cache::pairs(|t| t.get(tag).copied()).flatten() {
            if self.answer(&pin, answer, &op) {
                return;
            }
            cache::pairs(|t| t.miss());
        }
        let call = Call {
            kind,
            name,
            labels,
            labels_hash,
            family_tag: keys.call(self.seed(kind), name_hash, FAMILY),
            tag,
        };
        self.miss(&pin, &call, op);
    }

    /// Applies `op` as a cached answer says; `false` if the answer no longer holds.
    #[inline]
    fn answer(&self, pin: &Pin, answer: Answer, op: &Op<'_>) -> bool {
        match answer {
            Answer::Series {
                family,
                index,
                generation,
            } => {
                let Some(family) = self.store.family(family) else {
                    return false;
                };
                match family.write(pin, index, generation, op) {
                    Wrote::Done => true,
                    Wrote::Refused => {
                        family.write_overflow(op);
                        true
                    }
                    Wrote::Gone => false,
                }
            }
            Answer::Overflow { family, room } => match self.store.family(family) {
                Some(family) if family.room() == room => {
                    family.write_overflow(op);
                    true
                }
                _ => false,
            },
            Answer::Dropped { reason, config } => {
                let shared = &self.store.shared;
                if shared.config() != config {
                    return false;
                }
                let reason = if op.is_non_finite() {
                    DropReason::NonFinite
                } else {
                    reason
                };
                shared.count_dropped(reason, op.samples());
                true
            }
            Answer::None => false,
        }
    }

    /// The family of a call: the one this thread remembers, else the store's (made if the
    /// name is admissible).
    fn family_of(&self, call: &Call<'_>) -> Result<&Arc<Family>, DropReason> {
        self.family_by_tag(call.family_tag, call.name, call.kind)
    }

    /// The family of `name` and `kind`, of tag `tag` in the thread's family cache.
    fn family_by_tag(&self, tag: u64, name: &str, kind: Kind) -> Result<&Arc<Family>, DropReason> {
        if let Some(family) = cache::family(tag).and_then(|id| self.store.family(id)) {
            return Ok(family);
        }
        let family = self.store.family_of(name, kind)?;
        cache::keep_family(tag, family.id);
        Ok(family)
    }

    /// The slow path, out of line: the store, then the thread's cache keeps the answer.
    #[cold]
    #[inline(never)]
    fn miss(&self, pin: &Pin, call: &Call<'_>, op: Op<'_>) {
        let shared = &self.store.shared;
        let (labels, labels_hash, tag) = (call.labels, call.labels_hash, call.tag);
        if labels.len() % 2 == 1 {
            let drop = LabelDrop::DanglingKey;
            shared
                .self_metrics
                .warn_once(drop.as_str(), call.name, drop.message());
        }
        let config = shared.config();
        let family = match self.family_of(call) {
            Ok(family) => family,
            Err(reason) => {
                self.keep(tag, Answer::Dropped { reason, config });
                let _ = self.answer(pin, Answer::Dropped { reason, config }, &op);
                return;
            }
        };
        // A series whose labels are the call's as given: found without a canonical set.
        let found = match labels.len() % 2 {
            0 => family.find_hash(labels_hash),
            _ => None,
        };
        if let Some((index, generation)) = found {
            let room = family.room();
            let answer = match family.write(pin, index, generation, &op) {
                Wrote::Done => Some(Answer::Series {
                    family: family.id,
                    index,
                    generation,
                }),
                Wrote::Refused => {
                    family.write_overflow(&op);
                    Some(Answer::Overflow {
                        family: family.id,
                        room,
                    })
                }
                Wrote::Gone => None,
            };
            if let Some(answer) = answer {
                self.keep(tag, answer);
                return;
            }
        }
        for _ in 0..TRIES {
            let room = family.room();
            let answer = match family.series_of(flat(labels), Some(labels_hash)) {
                Found::Series(index, generation) => {
                    match family.write(pin, index, generation, &op) {
                        Wrote::Done => Answer::Series {
                            family: family.id,
                            index,
                            generation,
                        },
                        Wrote::Refused => {
                            family.write_overflow(&op);
                            Answer::Overflow {
                                family: family.id,
                                room,
                            }
                        }
                        Wrote::Gone => continue,
                    }
                }
                Found::Overflow => {
                    family.write_overflow(&op);
                    Answer::Overflow {
                        family: family.id,
                        room,
                    }
                }
            };
            self.keep(tag, answer);
            return;
        }
        // Reclaimed under every try: folded (and counted) rather than lost.
        family.write_overflow(&op);
    }

    /// Keeps `answer` in this thread's cache, if the cache admits it.
    fn keep(&self, tag: u64, answer: Answer) {
        cache::pairs(|t| t.admit().then(|| t.put(tag, answer)));
    }

    /// The handle of a macro call: the thread's own, found in its cache (by `tag`,
    /// checked against `key`) or made and kept there.
    fn bound(&self, kind: Kind, tag: u64, key: &Key) -> Arc<Bound> {
        self.cached(tag, |b| self.answers(b, kind, key.name(), key))
            .unwrap_or_else(|| self.keep_bound(tag, self.make_bound(kind, key.clone())))
    }

    /// This thread's cached handle of `tag`, if `check` says it answers the call.
    #[inline]
    fn cached(&self, tag: u64, check: impl Fn(&Bound) -> bool) -> Option<Arc<Bound>> {
        let hit = cache::keys(|t| t.get(tag).cloned().flatten()).flatten();
        match hit {
            Some(bound) if check(&bound) => Some(bound),
            Some(_) => {
                cache::keys(|t| t.miss());
                None
            }
            None => None,
        }
    }

    fn keep_bound(&self, tag: u64, bound: Bound) -> Arc<Bound> {
        let bound = Arc::new(bound);
        cache::keys(|t| t.admit().then(|| t.put(tag, Some(bound.clone()))));
        bound
    }

    /// Whether a cached handle answers the key `key` (named `name`) of `kind` for this
    /// recorder.
    #[inline]
    fn answers(&self, bound: &Bound, kind: Kind, name: &str, key: &Key) -> bool {
        bound.recorder == self.id
            && bound.kind == kind
            && same_text(bound.key.name(), name)
            && same_labels(&bound.key, key)
            && bound.current()
    }

    #[cold]
    fn make_bound(&self, kind: Kind, key: Key) -> Bound {
        let shared = &self.store.shared;
        let config = shared.config();
        // As a collector call's miss: the family from the thread's cache, the series by
        // its hash when the key's labels are its canonical set.
        let keys = hash::keys();
        let pairs = key.labels().map(|l| (l.key(), l.value()));
        let labels_hash = keys.labels(pairs.clone());
        let family_tag = keys.call(self.seed(kind), keys.text(key.name()), FAMILY);
        let target = match self.family_by_tag(family_tag, key.name(), kind) {
            Err(reason) => Target::Dropped {
                shared: shared.clone(),
                reason,
                config,
            },
            Ok(family) => {
                let room = family.room();
                let found = match family.find_hash(labels_hash) {
                    Some((index, generation)) => Found::Series(index, generation),
                    None => family.series_of(pairs, Some(labels_hash)),
                };
                match found {
                    Found::Series(index, generation) => Target::Series {
                        family: family.clone(),
                        at: AtomicU64::new(pack(index, generation)),
                    },
                    Found::Overflow => Target::Overflow {
                        family: family.clone(),
                        room,
                    },
                }
            }
        };
        Bound {
            recorder: self.id,
            kind,
            key,
            target,
        }
    }

    fn bound_key(&self, kind: Kind, key: &Key) -> Arc<Bound> {
        self.bound(
            kind,
            hash::keys().of_key(self.seed(kind), key.get_hash()),
            key,
        )
    }

    /// The handle a timer of the histogram `name` records into.
    pub(crate) fn timer(&self, name: &str) -> Arc<Bound> {
        let kind = Kind::Histogram;
        let keys = hash::keys();
        let tag = keys.call(self.seed(kind), keys.text(name), 0);
        let unlabelled = Key::from_static_name("");
        self.cached(tag, |b| self.answers(b, kind, name, &unlabelled))
            .unwrap_or_else(|| {
                let key = Key::from_name(name.to_owned());
                self.keep_bound(tag, self.make_bound(kind, key))
            })
    }
}

/// Whether two texts are equal: at once when they are the same `'static` text.
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// Whether two keys have the same labels.
#[inline]
fn same_labels(a: &Key, b: &Key) -> bool {
    a.labels().len() == b.labels().len()
        && a.labels()
            .zip(b.labels())
            .all(|(x, y)| same_text(x.key(), y.key()) && same_text(x.value(), y.value()))
}

impl metrics::Recorder for PorterRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.store
            .describe(key.as_str(), Kind::Counter, unit, &description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.store
            .describe(key.as_str(), Kind::Gauge, unit, &description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.store
            .describe(key.as_str(), Kind::Histogram, unit, &description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.bound_key(Kind::Counter, key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.bound_key(Kind::Gauge, key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.bound_key(Kind::Histogram, key))
    }
}
