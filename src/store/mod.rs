//! The series store: every series lives here, exactly once.
//!
//! A [`Store`] holds one [`Family`] per metric, at a dense index, found by the name it was
//! recorded with; a family holds its series as small records (see [`family`]). The rules
//! that hold in every format ([`names`], [`labels`]), the limits ([`Limits`]), overflow,
//! idle expiry and the self-metrics ([`self_metrics`]) are all decided here. Data flows one
//! way: the recorder resolves calls into series, the encoder reads them out.
//!
//! Where things are: this file keeps the names (which family a name is) and drives upkeep;
//! [`shared`] what every family shares (clock, limits, counts, the early buffer);
//! [`settings`] the buckets a family gets; [`protocol`] and [`epoch`] how writes and
//! reclamation meet; [`hash`] the one hash of names and label sets.
//!
//! Histogram buckets are those of the pipeline's settings, known when it is bound (a server
//! starts). Observations made before that wait in a bounded buffer and are counted into
//! their buckets at bind; nothing else is ever buffered.

pub(crate) mod arena;
mod clock;
pub(crate) mod epoch;
mod exemplar;
pub(crate) mod family;
pub(crate) mod hash;
pub(crate) mod kind;
pub(crate) mod labels;
mod limits;
pub(crate) mod names;
mod native;
pub(crate) mod protocol;
pub mod self_metrics;
mod settings;
mod shared;
mod slab;
mod sync;
pub(crate) mod value;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use hashbrown::HashMap;
use metrics::Unit;

pub use limits::Limits;
pub use native::NativeHistograms;

pub(crate) use clock::unix_now;
pub(crate) use exemplar::Pairs;
pub(crate) use family::Description;
use family::Family;
use kind::Kind;
use self_metrics::DropReason;
pub(crate) use settings::Settings;
pub(crate) use shared::Shared;
use slab::Segmented;

/// Most descriptions remembered for metrics not recorded yet.
const MAX_DESCRIBED: usize = 100_000;

#[derive(Default)]
struct Table {
    /// Recorded names (and family keys) → family.
    by_name: HashMap<Box<str>, u32>,
    /// Names refused, per kind; bounded (past the bound, refusals are worked out again),
    /// and forgotten when the limits change.
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
    /// Held by upkeep while it runs.
    upkeep: Mutex<()>,
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
            upkeep: Mutex::new(()),
        }
    }

    /// Holds upkeep still (for a test that reads the store as of one moment).
    #[cfg(feature = "testing")]
    pub(crate) fn pause_upkeep(&self) -> std::sync::MutexGuard<'_, ()> {
        self.upkeep.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Applies limits and the idle timeout (any time; they apply to what is recorded next,
    /// and names refused under the old limits are judged again).
    pub(crate) fn configure(&self, limits: Limits, idle: Option<Duration>) {
        self.metric_names
            .store(limits.metric_names, Ordering::Relaxed);
        self.table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .refused
            .clear();
        self.shared.set_limits(limits);
        let idle_ms = idle.map_or(0, |t| {
            u32::try_from(t.as_millis())
                .unwrap_or(u32::MAX / 4)
                .clamp(1, u32::MAX / 4)
        });
        self.shared.tick();
        self.shared.idle_ms.store(idle_ms, Ordering::Relaxed);
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
        for family in self.families() {
            if family.kind == Kind::Histogram {
                family.bind(settings.layout_for(&family.base));
            }
        }
        // Every family has its cells now: an observation either was kept before this, and
        // is replayed here, or finds the cells.
        let early = self
            .shared
            .early
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let pin = epoch::pin();
        for (family, index, generation, value, n) in early.unwrap_or_default() {
            if let Some(family) = self.family(family) {
                family.replay(&pin, index, generation, value, n);
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
        if let Err(reason) = result {
            let message = format!("{} ({})", reason.message(), kind.as_str());
            self.shared
                .self_metrics
                .warn_once(reason.as_str(), raw, &message);
        }
        result
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
        let (series, hidden) = self.shared.counts();
        (series, hidden, names)
    }

    /// Periodic work: advances the clock and, with an idle timeout, hides idle series,
    /// reclaims those idle for long, and reuses what no running write can still see.
    pub(crate) fn upkeep(&self) {
        let _running = self.upkeep.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.shared.tick();
        let idle_ms = self.shared.idle_ms.load(Ordering::Relaxed);
        if idle_ms == 0 {
            return;
        }
        let families = self.families();
        let oldest = epoch::oldest();
        for family in &families {
            family.reuse(oldest);
            family.expire(now, idle_ms);
        }
        let ended = epoch::advance();
        for family in families.iter().filter(|f| f.has_retired()) {
            family.date_retired(ended);
        }
    }
}
