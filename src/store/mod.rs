//! The series store: every series lives here, exactly once.
//!
//! A [`Store`] holds one [`Family`] per metric name, each one map from canonical label set
//! to series (see [`family`]); a series holds its value inline (see [`series`]). The rules
//! that make any name and labels valid ([`rules`], [`labels`]), the limits ([`Limits`]),
//! overflow folding, idle expiry and the self-metrics ([`self_metrics`]) are all decided
//! here, in that one map. Data flows one way: the recorder resolves calls into series, the
//! encoder reads them out.
//!
//! Histogram buckets are those of the pipeline's settings, known when it is bound (a
//! server starts). Observations made before that wait in a bounded buffer here and are
//! counted into their buckets at bind; nothing else is ever buffered.

mod exemplar;
pub(crate) mod family;
pub(crate) mod kind;
pub(crate) mod labels;
mod limits;
mod map;
mod native;
pub(crate) mod rules;
pub mod self_metrics;
pub(crate) mod value;

use std::collections::{BTreeMap, HashSet};

use hashbrown::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

pub use limits::Limits;
pub use native::NativeHistograms;

use crate::matcher::Matcher;
use family::Family;
use family::Series;
use kind::Kind;
use rules::{claimed_names, family_name, histogram_export_name, SELF_PREFIX};
use self_metrics::{DropReason, SelfMetrics};
use value::{CounterValue, GaugeValue, HistogramValue, Layout};

/// Histogram observations kept, across all series, before the pipeline is bound.
pub(crate) const MAX_EARLY_OBSERVATIONS: usize = 100_000;

/// Most descriptions remembered for metrics not recorded yet.
const MAX_DESCRIBED: usize = 100_000;

/// What every family of a store shares: the clock, the limits, the counts.
pub(crate) struct Shared {
    started: Instant,
    /// Ms since `started` as of the last tick (wrapping): cheap to read on every update.
    coarse: AtomicU32,
    /// The idle timeout in ms; 0 for none.
    idle_ms: AtomicU32,
    limits: RwLock<Limits>,
    series: AtomicUsize,
    pub(crate) self_metrics: SelfMetrics,
    /// Observations made before the buckets were known, by series address.
    early: Mutex<Option<Early>>,
    hasher: hashbrown::DefaultHashBuilder,
}

#[derive(Default)]
struct Early {
    values: HashMap<usize, Vec<(f64, u64)>>,
    len: usize,
}

impl Shared {
    /// Whether idle expiry is on: updates then stamp their series.
    #[inline]
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

    /// A seeded hash: crafted label values cannot aim at one bucket.
    pub(crate) fn hash(&self, labels: &str) -> u64 {
        self.hasher.hash_one(labels)
    }

    pub(crate) fn limits(&self) -> Limits {
        *self.limits.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new series of a family holding `family_len`, if the limits allow it.
    pub(crate) fn admit_series(&self, family_len: usize) -> bool {
        let limits = self.limits();
        if family_len >= limits.series_per_metric
            || self.series.load(Ordering::Relaxed) >= limits.series
        {
            return false;
        }
        self.series.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Series currently stored.
    pub(crate) fn series(&self) -> usize {
        self.series.load(Ordering::Relaxed)
    }

    pub(crate) fn count_dropped(&self, reason: DropReason, n: u64) {
        self.self_metrics.count_dropped(reason, n);
    }

    /// Keeps an observation of the series at `address` until the buckets are known; says
    /// `true` when the caller must count it itself (they are known by now).
    pub(crate) fn keep_early(
        &self,
        address: usize,
        value: f64,
        n: u64,
        ready: impl Fn() -> bool,
    ) -> bool {
        let full = {
            let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
            match early.as_mut() {
                Some(_) if ready() => return true,
                None => return true,
                Some(early) if early.len >= MAX_EARLY_OBSERVATIONS => true,
                Some(early) => {
                    early.values.entry(address).or_default().push((value, n));
                    early.len += 1;
                    false
                }
            }
        };
        if full {
            self.count_dropped(DropReason::BufferFull, n);
            self.self_metrics.warn_once(
                DropReason::BufferFull.as_str(),
                "",
                DropReason::BufferFull.message(),
            );
        }
        false
    }
}

/// A family of any kind.
#[derive(Clone)]
pub(crate) enum FamilyRef {
    Counter(Arc<Family<CounterValue>>),
    Gauge(Arc<Family<GaugeValue>>),
    Histogram(Arc<Family<HistogramValue>>),
}

impl FamilyRef {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            FamilyRef::Counter(_) => Kind::Counter,
            FamilyRef::Gauge(_) => Kind::Gauge,
            FamilyRef::Histogram(_) => Kind::Histogram,
        }
    }

    fn set_help(&self, text: Arc<str>, default: bool) {
        match self {
            FamilyRef::Counter(f) => f.set_help(text, default),
            FamilyRef::Gauge(f) => f.set_help(text, default),
            FamilyRef::Histogram(f) => f.set_help(text, default),
        }
    }

    fn expire(&self, now: u32, idle_ms: u32) -> usize {
        match self {
            FamilyRef::Counter(f) => f.expire(now, idle_ms),
            FamilyRef::Gauge(f) => f.expire(now, idle_ms),
            FamilyRef::Histogram(f) => f.expire(now, idle_ms),
        }
    }

    fn set_expiring(&self, on: bool) {
        match self {
            FamilyRef::Counter(f) => f.expiring.store(on, Ordering::Relaxed),
            FamilyRef::Gauge(f) => f.expiring.store(on, Ordering::Relaxed),
            FamilyRef::Histogram(f) => f.expiring.store(on, Ordering::Relaxed),
        }
    }

    fn clear(&self) {
        match self {
            FamilyRef::Counter(f) => f.clear(),
            FamilyRef::Gauge(f) => f.clear(),
            FamilyRef::Histogram(f) => f.clear(),
        }
    }
}

/// Where a call came from: the collector's metrics get a default HELP text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Origin {
    Collector,
    Macro,
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
    /// Global labels, `(key, value)`, printed on every series without that key.
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

struct Table {
    /// Raw name → family, or why the name is refused. Bounded: past `raw_cap`, refusals are
    /// worked out again instead of remembered.
    raw: HashMap<Box<str>, Result<FamilyRef, DropReason>>,
    /// Sanitized name → family, in name order (the exposition's order).
    families: BTreeMap<String, FamilyRef>,
    /// Every name some family prints.
    claims: HashSet<String>,
}

/// See the module documentation.
pub(crate) struct Store {
    pub(crate) shared: Arc<Shared>,
    table: RwLock<Table>,
    settings: OnceLock<Settings>,
    /// Descriptions of metrics not recorded yet, by sanitized name.
    described: Mutex<HashMap<String, Arc<str>>>,
}

impl Store {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            shared: Arc::new(Shared {
                started: Instant::now(),
                coarse: AtomicU32::new(0),
                idle_ms: AtomicU32::new(0),
                limits: RwLock::new(limits),
                series: AtomicUsize::new(0),
                self_metrics: SelfMetrics::default(),
                early: Mutex::new(Some(Early::default())),
                hasher: hashbrown::DefaultHashBuilder::default(),
            }),
            table: RwLock::new(Table {
                raw: HashMap::default(),
                families: BTreeMap::new(),
                claims: HashSet::new(),
            }),
            settings: OnceLock::new(),
            described: Mutex::new(HashMap::default()),
        }
    }

    /// The settings the store was bound with.
    pub(crate) fn settings(&self) -> Option<&Settings> {
        self.settings.get()
    }

    /// Applies limits and the idle timeout (any time; they apply to new series).
    pub(crate) fn configure(&self, limits: Limits, idle: Option<Duration>) {
        *self
            .shared
            .limits
            .write()
            .unwrap_or_else(PoisonError::into_inner) = limits;
        let idle_ms = idle.map_or(0, |t| {
            u32::try_from(t.as_millis())
                .unwrap_or(u32::MAX / 2)
                .clamp(1, u32::MAX / 2)
        });
        self.shared.tick();
        // Under the table's lock: a family created meanwhile copies the new flag.
        let table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        self.shared.idle_ms.store(idle_ms, Ordering::Relaxed);
        for family in table.families.values() {
            family.set_expiring(idle_ms != 0);
        }
    }

    /// Binds the store's histogram buckets and global labels, once; replays the
    /// observations kept until then. Returns `false` if it was bound already.
    pub(crate) fn bind(&self, settings: Settings) -> bool {
        if self.settings.set(settings).is_err() {
            return false;
        }
        let Some(settings) = self.settings.get() else {
            return false;
        };
        let mut bound = Vec::new();
        for family in self.families() {
            if let FamilyRef::Histogram(f) = family {
                f.bind_buckets(settings.layout_for(&f.name), &mut bound);
            }
        }
        let early = self
            .shared
            .early
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(early) = early {
            let series: HashMap<usize, &Arc<Series<HistogramValue>>> =
                bound.iter().map(|(a, s)| (*a, s)).collect();
            for (at, values) in early.values {
                if let Some(series) = series.get(&at) {
                    for (value, n) in values {
                        series.replay(value, n);
                    }
                }
            }
        }
        true
    }

    /// The family a raw name belongs to, creating it if the name and kind are admissible;
    /// logs a refusal once (after every lock is released). The caller counts the drops.
    pub(crate) fn family(
        &self,
        raw: &str,
        kind: Kind,
        origin: Origin,
    ) -> Result<FamilyRef, DropReason> {
        let found = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .raw
            .get(raw)
            .cloned();
        let (result, created) = match found {
            Some(found) => (found, false),
            None => self.create(raw, kind),
        };
        let result = result.and_then(|family| {
            if family.kind() == kind {
                Ok(family)
            } else {
                Err(DropReason::KindConflict)
            }
        });
        match result {
            Ok(family) => {
                if origin == Origin::Collector && (created || found_without_help(&family)) {
                    let text = match kind {
                        Kind::Counter => "Counter for",
                        Kind::Gauge => "Gauge for",
                        Kind::Histogram => "Histogram for",
                    };
                    family.set_help(format!("{text} {raw}").into(), true);
                }
                Ok(family)
            }
            Err(reason) => {
                self.shared.self_metrics.warn_once(
                    reason.as_str(),
                    raw,
                    &format!("{} ({})", reason.message(), kind.as_str()),
                );
                Err(reason)
            }
        }
    }

    fn create(&self, raw: &str, kind: Kind) -> (Result<FamilyRef, DropReason>, bool) {
        let limits = self.shared.limits();
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = table.raw.get(raw) {
            return (found.clone(), false);
        }
        let (result, created) = self.resolve(&mut table, raw, kind, limits);
        let raw_cap = limits.metric_names.saturating_mul(4).max(1024);
        if result.is_ok() || table.raw.len() < raw_cap {
            table.raw.insert(raw.into(), result.clone());
        }
        (result, created)
    }

    fn resolve(
        &self,
        table: &mut Table,
        raw: &str,
        kind: Kind,
        limits: Limits,
    ) -> (Result<FamilyRef, DropReason>, bool) {
        let name = family_name(raw);
        if name.is_empty() {
            return (Err(DropReason::InvalidName), false);
        }
        if name.starts_with(SELF_PREFIX) {
            return (Err(DropReason::ReservedName), false);
        }
        if let Some(family) = table.families.get(name.as_ref()) {
            return (Ok(family.clone()), false);
        }
        let claims = claimed_names(&name, kind);
        if claims.iter().any(|c| table.claims.contains(c)) {
            return (Err(DropReason::KindConflict), false);
        }
        if table.families.len() >= limits.metric_names {
            return (Err(DropReason::MetricLimit), false);
        }
        let help = self
            .described
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name.as_ref());
        let family = self.new_family(&name, kind, help);
        table.claims.extend(claims);
        table.families.insert(name.into_owned(), family.clone());
        (Ok(family), true)
    }

    fn new_family(&self, name: &str, kind: Kind, help: Option<Arc<str>>) -> FamilyRef {
        let shared = self.shared.clone();
        match kind {
            Kind::Counter => FamilyRef::Counter(Arc::new(Family::new(name.into(), shared, help))),
            Kind::Gauge => FamilyRef::Gauge(Arc::new(Family::new(name.into(), shared, help))),
            Kind::Histogram => {
                let export = histogram_export_name(name).unwrap_or_else(|| name.to_owned());
                let family = Family::new(export, shared, help);
                if let Some(settings) = self.settings.get() {
                    let _ = family.layout.set(settings.layout_for(&family.name));
                }
                FamilyRef::Histogram(Arc::new(family))
            }
        }
    }

    /// Records a user's description: it wins over the collector's default text, whenever
    /// it is given.
    pub(crate) fn describe(&self, raw: &str, description: &str) {
        let name = family_name(raw);
        if name.is_empty() || name.starts_with(SELF_PREFIX) {
            return;
        }
        let text: Arc<str> = description.into();
        let found = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .families
            .get(name.as_ref())
            .cloned();
        match found {
            Some(family) => family.set_help(text, false),
            None => {
                let mut described = self
                    .described
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if described.len() < MAX_DESCRIBED {
                    described.insert(name.into_owned(), text);
                }
            }
        }
    }

    /// Every family, in name order (a snapshot: the table's lock is not held while the
    /// caller walks them).
    pub(crate) fn families(&self) -> Vec<FamilyRef> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .families
            .values()
            .cloned()
            .collect()
    }

    /// Series and metric names currently stored.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let names = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .families
            .len();
        (self.shared.series(), names)
    }

    /// Periodic work: advances the clock and, with an idle timeout, removes idle series.
    pub(crate) fn upkeep(&self) {
        let now = self.shared.tick();
        let idle_ms = self.shared.idle_ms.load(Ordering::Relaxed);
        if idle_ms == 0 {
            return;
        }
        let removed: usize = self.families().iter().map(|f| f.expire(now, idle_ms)).sum();
        self.shared.series.fetch_sub(removed, Ordering::Relaxed);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Series point at their family: let them go so both are freed.
        for family in self.families() {
            family.clear();
        }
    }
}

fn found_without_help(family: &FamilyRef) -> bool {
    match family {
        FamilyRef::Counter(f) => !f.has_help(),
        FamilyRef::Gauge(f) => !f.has_help(),
        FamilyRef::Histogram(f) => !f.has_help(),
    }
}
