//! The series store: every series lives here, exactly once.
//!
//! A [`Store`] holds one [`Family`] per metric, at a dense index, found by the name it was
//! recorded with; a family holds its series as small records (see [`family`]). The rules
//! that hold in every format ([`names`], [`labels`]), the limits ([`Limits`]), overflow,
//! idle expiry and the self-metrics ([`self_metrics`]) are all decided here. Data flows one
//! way: the recorder resolves calls into series, the encoder reads them out.
//!
//! Histogram buckets are those of the pipeline's settings, known when it is bound (a server
//! starts). Observations made before that wait in a bounded buffer here and are counted
//! into their buckets at bind; nothing else is ever buffered.

pub(crate) mod arena;
mod exemplar;
pub(crate) mod family;
pub(crate) mod kind;
pub(crate) mod labels;
mod limits;
pub(crate) mod names;
mod native;
pub mod self_metrics;
mod slab;
pub(crate) mod value;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hashbrown::HashMap;
use metrics::Unit;

pub use limits::Limits;
pub use native::NativeHistograms;

use crate::matcher::Matcher;
pub(crate) use exemplar::Pairs;
pub(crate) use family::Description;
use family::{Family, Layout, Series};
use kind::Kind;
use self_metrics::{DropReason, SelfMetrics};
use slab::Segmented;

/// Histogram observations kept, across all series, before the pipeline is bound.
pub(crate) const MAX_EARLY_OBSERVATIONS: usize = 100_000;

/// Most descriptions remembered for metrics not recorded yet.
const MAX_DESCRIBED: usize = 100_000;

/// An observation kept until the buckets are known: family, series, value, times.
type Early = (u32, u32, f64, u64);

/// What every family of a store shares: the clocks, the limits, the counts.
pub(crate) struct Shared {
    started: Instant,
    /// When `started` was, in ms since the Unix epoch.
    epoch_ms: u64,
    /// Ms since `started` as of the last tick (wrapping): cheap to read on every write.
    coarse: AtomicU32,
    /// The idle timeout in ms; 0 for none.
    idle_ms: AtomicU32,
    /// Series per metric, series, labels per series, bytes per label.
    limits: [AtomicUsize; 4],
    series: AtomicUsize,
    /// Series hidden by idle expiry and not yet reclaimed.
    hidden: AtomicUsize,
    pub(crate) self_metrics: SelfMetrics,
    /// Observations made before the buckets were known; `None` once bound.
    early: Mutex<Option<Vec<Early>>>,
    /// A seeded hash: crafted label values cannot aim at one bucket.
    pub(crate) hasher: hashbrown::DefaultHashBuilder,
}

impl Shared {
    fn new(limits: Limits) -> Self {
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let shared = Self {
            started: Instant::now(),
            epoch_ms,
            coarse: AtomicU32::new(0),
            idle_ms: AtomicU32::new(0),
            limits: Default::default(),
            series: AtomicUsize::new(0),
            hidden: AtomicUsize::new(0),
            self_metrics: SelfMetrics::default(),
            early: Mutex::new(Some(Vec::new())),
            hasher: hashbrown::DefaultHashBuilder::default(),
        };
        shared.set_limits(limits);
        shared
    }

    fn set_limits(&self, limits: Limits) {
        let values = [
            limits.series_per_metric,
            limits.series,
            limits.labels,
            limits.label_bytes,
        ];
        for (cell, value) in self.limits.iter().zip(values) {
            cell.store(value, Ordering::Relaxed);
        }
    }

    fn limit(&self, i: usize) -> usize {
        self.limits[i].load(Ordering::Relaxed)
    }

    /// Labels per series and bytes per label.
    pub(crate) fn label_limits(&self) -> (usize, usize) {
        (self.limit(2), self.limit(3))
    }

    /// Whether idle expiry is on.
    pub(crate) fn expiring(&self) -> bool {
        self.idle_ms.load(Ordering::Relaxed) != 0
    }

    /// The coarse clock, ms.
    #[inline]
    pub(crate) fn now(&self) -> u32 {
        self.coarse.load(Ordering::Relaxed)
    }

    fn tick(&self) -> u32 {
        // Wrapping by design: idle times are compared with `wrapping_sub`.
        let now = self.started.elapsed().as_millis() as u32;
        self.coarse.store(now, Ordering::Relaxed);
        now
    }

    /// Now, in tenths of a second since the store started (a start timestamp).
    pub(crate) fn tenths(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_millis() / 100).unwrap_or(u32::MAX)
    }

    /// A start timestamp in ms since the Unix epoch.
    pub(crate) fn start_ms(&self, tenths: u32) -> u64 {
        self.epoch_ms + u64::from(tenths) * 100
    }

    /// Whether a family showing `visible` series may show one more.
    pub(crate) fn admit_series(&self, visible: usize) -> bool {
        visible < self.limit(0) && self.series.load(Ordering::Relaxed) < self.limit(1)
    }

    /// `shown` more series exported and `hidden` more hidden (each -1, 0 or 1).
    pub(crate) fn count_series(&self, shown: i32, hidden: i32) {
        for (count, n) in [(&self.series, shown), (&self.hidden, hidden)] {
            match n {
                1 => count.fetch_add(1, Ordering::Relaxed),
                -1 => count.fetch_sub(1, Ordering::Relaxed),
                _ => 0,
            };
        }
    }

    pub(crate) fn count_dropped(&self, reason: DropReason, n: u64) {
        self.self_metrics.count_dropped(reason, n);
    }

    /// Keeps an observation of `series` until its buckets are known (the pipeline binds),
    /// or counts it at once if they are known by now.
    pub(crate) fn keep_early(&self, series: &Series<'_>, value: f64, n: u64) {
        let full = {
            let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
            match early.as_mut() {
                None => None,
                Some(kept) if kept.len() >= MAX_EARLY_OBSERVATIONS => Some(true),
                Some(kept) => {
                    kept.push((series.family.id, series.index, value, n));
                    Some(false)
                }
            }
        };
        match full {
            // Bound meanwhile: the cells are there now.
            None if series.cells().is_some() => series.observe(value, n),
            None => {}
            Some(false) => {}
            Some(true) => {
                self.count_dropped(DropReason::BufferFull, n);
                let reason = DropReason::BufferFull;
                self.self_metrics
                    .warn_once(reason.as_str(), "", reason.message());
            }
        }
    }
}

/// The settings a store is bound with (by the first server that starts on it).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) buckets: Vec<f64>,
    pub(crate) overrides: Vec<(Matcher, Vec<f64>)>,
    /// Native buckets for every histogram, if set.
    pub(crate) native: Option<NativeHistograms>,
    /// Native buckets for the histograms a matcher matches.
    pub(crate) native_overrides: Vec<(Matcher, NativeHistograms)>,
    /// Global labels, `(key, value)`, on every series without that key.
    pub(crate) global: Vec<(String, String)>,
}

/// The setting of the best match for `name`: a full match, else a prefix, else a suffix.
fn best_match<'a, T>(overrides: &'a [(Matcher, T)], name: &str) -> Option<&'a T> {
    let rank = |m: &Matcher| match m {
        Matcher::Full(_) => 0,
        Matcher::Prefix(_) => 1,
        Matcher::Suffix(_) => 2,
    };
    overrides
        .iter()
        .filter(|(m, _)| m.matches(name))
        .min_by_key(|(m, _)| rank(m))
        .map(|(_, setting)| setting)
}

impl Settings {
    /// The buckets of the histogram family `name`: its matcher's, else the defaults.
    fn layout_for(&self, name: &str) -> Layout {
        let bounds = best_match(&self.overrides, name).unwrap_or(&self.buckets);
        Layout {
            bounds: bounds.as_slice().into(),
            native: best_match(&self.native_overrides, name)
                .copied()
                .or(self.native),
        }
    }
}

#[derive(Default)]
struct Table {
    /// Recorded names (and family keys) → family.
    by_name: HashMap<Box<str>, u32>,
    /// Names refused, per kind; bounded (past the bound, refusals are worked out again).
    refused: HashMap<Box<str>, [Option<DropReason>; 3]>,
    /// Every name some family's series take.
    claims: HashSet<String>,
    /// Families by key: the exposition's order.
    order: BTreeMap<Box<str>, u32>,
}

/// See the module documentation.
pub(crate) struct Store {
    pub(crate) shared: Arc<Shared>,
    families: Segmented<Box<[OnceLock<Arc<Family>>]>, 4>,
    table: RwLock<Table>,
    settings: OnceLock<Settings>,
    /// Descriptions (and units) of metrics not recorded yet, by family key.
    described: Mutex<HashMap<String, Description>>,
    metric_names: AtomicUsize,
}

impl Store {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            shared: Arc::new(Shared::new(limits)),
            families: Segmented::default(),
            table: RwLock::default(),
            settings: OnceLock::new(),
            described: Mutex::default(),
            metric_names: AtomicUsize::new(limits.metric_names),
        }
    }

    /// The settings the store was bound with.
    pub(crate) fn settings(&self) -> Option<&Settings> {
        self.settings.get()
    }

    /// The family at `id`.
    #[inline]
    pub(crate) fn family(&self, id: u32) -> Option<&Arc<Family>> {
        self.families.get(id)?.get()
    }

    /// Applies limits and the idle timeout (any time; they apply to new series).
    pub(crate) fn configure(&self, limits: Limits, idle: Option<Duration>) {
        self.shared.set_limits(limits);
        self.metric_names
            .store(limits.metric_names, Ordering::Relaxed);
        let idle_ms = idle.map_or(0, |t| {
            u32::try_from(t.as_millis())
                .unwrap_or(u32::MAX / 4)
                .clamp(1, u32::MAX / 4)
        });
        self.shared.tick();
        // Under the table's lock: a family created meanwhile copies the new flag.
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        self.shared.idle_ms.store(idle_ms, Ordering::Relaxed);
        for &id in table.order.values() {
            if let Some(family) = self.family(id) {
                family.expiring.store(idle_ms != 0, Ordering::Relaxed);
            }
        }
    }

    /// Binds the histogram buckets and global labels, once; counts the observations kept
    /// until then. Returns `false` if it was bound already.
    pub(crate) fn bind(&self, settings: Settings) -> bool {
        if self.settings.set(settings).is_err() {
            return false;
        }
        let Some(settings) = self.settings.get() else {
            return false;
        };
        // Under the buffer's lock: an observation either waits in it and is replayed
        // here, or finds the buckets.
        let mut early = self
            .shared
            .early
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for family in self.families() {
            if family.kind == Kind::Histogram {
                family.bind(settings.layout_for(&family.base));
            }
        }
        for (family, index, value, n) in early.take().unwrap_or_default() {
            let series = self.family(family).and_then(|f| f.pinned(index));
            if let Some(series) = series {
                series.observe(value, n);
            }
        }
        true
    }

    /// The family a recorded name belongs to, created if the name and kind are admissible;
    /// a refusal is logged once (after every lock is released). The caller counts drops.
    pub(crate) fn family_of(&self, raw: &str, kind: Kind) -> Result<&Arc<Family>, DropReason> {
        let found = {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            match table.by_name.get(raw) {
                Some(&id) => Some(Ok(id)),
                None => table
                    .refused
                    .get(raw)
                    .and_then(|r| r[kind as usize])
                    .map(Err),
            }
        };
        let result = match found {
            Some(found) => found,
            None => self.create(raw, kind),
        };
        let result = result.and_then(|id| {
            let family = self.family(id).ok_or(DropReason::InvalidName)?;
            (family.kind == kind)
                .then_some(family)
                .ok_or(DropReason::KindConflict)
        });
        match result {
            Ok(family) => Ok(family),
            Err(reason) => {
                let message = format!("{} ({})", reason.message(), kind.as_str());
                self.shared
                    .self_metrics
                    .warn_once(reason.as_str(), raw, &message);
                Err(reason)
            }
        }
    }

    /// Creates the family of `raw`, or refuses it.
    fn create(&self, raw: &str, kind: Kind) -> Result<u32, DropReason> {
        let key = names::family_key(raw, kind);
        let refusal = if raw.is_empty() {
            Some(DropReason::InvalidName)
        } else if names::is_reserved(key) {
            Some(DropReason::ReservedName)
        } else {
            None
        };
        // Worked out before the lock is taken.
        let claims = names::claims(key, kind);
        let described = self
            .described
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let result = match (table.by_name.get(raw), table.by_name.get(key)) {
            (Some(&id), _) => Ok(id),
            (None, Some(&id)) => {
                if self.family(id).is_some_and(|f| f.kind == kind) {
                    table.by_name.insert(raw.into(), id);
                }
                Ok(id)
            }
            (None, None) => match refusal {
                Some(reason) => Err(reason),
                None if claims.iter().any(|c| table.claims.contains(c)) => {
                    Err(DropReason::KindConflict)
                }
                None if table.order.len() >= self.metric_names.load(Ordering::Relaxed) => {
                    Err(DropReason::MetricLimit)
                }
                None => Ok(self.add(&mut table, raw, key, kind, claims)),
            },
        };
        let cap = self
            .metric_names
            .load(Ordering::Relaxed)
            .saturating_mul(4)
            .max(1024);
        if let (Err(reason), true) = (result, table.refused.len() < cap) {
            table.refused.entry(raw.into()).or_default()[kind as usize] = Some(reason);
        }
        drop(table);
        if let Some(description) = described {
            match result.ok().and_then(|id| self.family(id)) {
                Some(family) => family.describe(description),
                None => self.keep_description(key, description),
            }
        }
        result
    }

    /// A new family (under the table's write lock).
    fn add(&self, table: &mut Table, raw: &str, key: &str, kind: Kind, claims: Vec<String>) -> u32 {
        let id = u32::try_from(table.order.len()).unwrap_or(u32::MAX);
        let family = Family::new(
            id,
            key,
            names::series_base(key, kind),
            kind,
            self.shared.clone(),
        );
        // The design's placeholder, until the user describes the metric.
        family.describe(Description {
            help: Some(format!("{} for {raw}", kind.title()).into()),
            unit: None,
            default: true,
        });
        if let (Kind::Histogram, Some(settings)) = (kind, self.settings.get()) {
            family.bind(settings.layout_for(&family.base));
        }
        self.families.reserve(id);
        if let Some(slot) = self.families.get(id) {
            let _ = slot.set(Arc::new(family));
        }
        table.claims.extend(claims);
        table.by_name.insert(key.into(), id);
        table.by_name.insert(raw.into(), id);
        table.order.insert(key.into(), id);
        id
    }

    fn keep_description(&self, key: &str, description: Description) {
        let mut described = self
            .described
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if described.len() < MAX_DESCRIBED {
            described.insert(key.to_owned(), description);
        }
    }

    /// Records a user's description and unit: they win over the placeholder, whenever they
    /// are given.
    pub(crate) fn describe(&self, raw: &str, kind: Kind, unit: Option<Unit>, text: &str) {
        let key = names::family_key(raw, kind);
        let description = Description {
            help: Some(text.into()),
            unit,
            default: false,
        };
        let found = {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            table
                .by_name
                .get(raw)
                .or_else(|| table.by_name.get(key))
                .copied()
        };
        match found.and_then(|id| self.family(id)) {
            Some(family) => family.describe(description),
            None => self.keep_description(key, description),
        }
    }

    /// Whether a family is recorded under `name` (as recorded, or as its key): a family
    /// written beside the store's must not take its name twice.
    #[cfg(any(feature = "process", feature = "runtime"))]
    pub(crate) fn holds(&self, name: &str) -> bool {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let base = name.strip_suffix("_total").unwrap_or(name);
        [name, base].iter().any(|n| table.by_name.contains_key(*n))
    }

    /// Every family, in key order (a snapshot: no lock is held while the caller walks).
    pub(crate) fn families(&self) -> Vec<Arc<Family>> {
        let ids: Vec<u32> = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .order
            .values()
            .copied()
            .collect();
        ids.into_iter()
            .filter_map(|id| self.family(id).cloned())
            .collect()
    }

    /// When the store was created, in ms since the Unix epoch.
    #[cfg(feature = "otlp")]
    pub(crate) fn epoch_ms(&self) -> u64 {
        self.shared.start_ms(0)
    }

    /// Series exported, series hidden by idle expiry, and metrics stored.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let names = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .order
            .len();
        let shared = &self.shared;
        let count = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        (count(&shared.series), count(&shared.hidden), names)
    }

    /// Periodic work: advances the clock and, with an idle timeout, expires idle series.
    pub(crate) fn upkeep(&self) {
        let now = self.shared.tick();
        let idle_ms = self.shared.idle_ms.load(Ordering::Relaxed);
        if idle_ms != 0 {
            for family in self.families() {
                family.expire(now, idle_ms);
            }
        }
    }
}
