//! The limits on what a layer admits, and the accounting that enforces them.
//!
//! A *family* is what the exporter prints under one `# TYPE` line: every raw name that
//! sanitizes to the same name belongs to it. The first kind seen for a family wins, and a
//! family also owns the names of the series it prints (a histogram `lat` owns `lat_bucket`,
//! `lat_sum` and `lat_count`), so no two families can print the same series name.
//!
//! Series are counted by their [`series_hash`](crate::key::series_hash): a collision can
//! make the count low by one, never send a sample to the wrong series.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Key};

use crate::handle::Kind;
use crate::recorder::rules::{claimed_names, family_name, histogram_export_name, SELF_PREFIX};
use crate::recorder::self_metrics::DropReason;

/// Limits on what one pipeline tracks. Past them, data is folded or dropped, and counted.
///
/// ```
/// let limits = porter_metrics::Limits::default();
/// assert_eq!((limits.series_per_metric, limits.metric_names, limits.series), (2000, 10_000, 500_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Series per metric name; further label sets fold into the metric's overflow series,
    /// labelled `otel_metric_overflow="true"`. Default 2000, as the OpenTelemetry SDKs.
    pub series_per_metric: usize,
    /// Distinct metric names; calls for further names are dropped. Default 10 000.
    pub metric_names: usize,
    /// Series across all metrics; further label sets fold into their metric's overflow
    /// series. Default 500 000.
    pub series: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            series_per_metric: 2000,
            metric_names: 10_000,
            series: 500_000,
        }
    }
}

impl Limits {
    /// These limits with another per-metric series limit.
    ///
    /// ```
    /// let limits = porter_metrics::Limits::default().with_series_per_metric(100);
    /// assert_eq!((limits.series_per_metric, limits.series), (100, 500_000));
    /// ```
    #[must_use]
    pub fn with_series_per_metric(mut self, series: usize) -> Self {
        self.series_per_metric = series;
        self
    }

    /// These limits with another metric-name limit.
    ///
    /// ```
    /// let limits = porter_metrics::Limits::default().with_metric_names(50);
    /// assert_eq!(limits.metric_names, 50);
    /// ```
    #[must_use]
    pub fn with_metric_names(mut self, names: usize) -> Self {
        self.metric_names = names;
        self
    }

    /// These limits with another total series limit.
    ///
    /// ```
    /// let limits = porter_metrics::Limits::default().with_series(1_000);
    /// assert_eq!(limits.series, 1_000);
    /// ```
    #[must_use]
    pub fn with_series(mut self, series: usize) -> Self {
        self.series = series;
        self
    }

    /// No limit at all (for benchmarks and tests that want every series).
    ///
    /// ```
    /// assert_eq!(porter_metrics::Limits::unlimited().series, usize::MAX);
    /// ```
    pub fn unlimited() -> Self {
        Self {
            series_per_metric: usize::MAX,
            metric_names: usize::MAX,
            series: usize::MAX,
        }
    }
}

/// Series hashes are already hashes: pass them through.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type SeriesMap = hashbrown::HashMap<u64, u64, BuildHasherDefault<IdentityHasher>>;
type HashMap<K, V> = hashbrown::HashMap<K, V>;

/// One admitted metric family: a sanitized name and its kind.
pub(crate) struct AdmittedFamily {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    /// The name the exporter must print instead of `name` (see `histogram_export_name`).
    pub(crate) export: Option<String>,
    /// Series hash → last time (layer clock, ms) a resolution touched it.
    series: Mutex<SeriesMap>,
    /// Set once the family has a HELP text (the user's or the default).
    pub(crate) has_help: AtomicBool,
    /// Set once a non-finite observation was warned about.
    pub(crate) warned_non_finite: AtomicBool,
    /// The overflow series' key and its self-metric counter, made on first use.
    pub(crate) overflow: OnceLock<(Key, Counter)>,
}

impl AdmittedFamily {
    /// The name the exporter prints this family under.
    pub(crate) fn exported_name(&self) -> &str {
        self.export.as_deref().unwrap_or(&self.name)
    }

    fn new(name: String, kind: Kind) -> Self {
        let export = match kind {
            Kind::Histogram => histogram_export_name(&name),
            Kind::Counter | Kind::Gauge => None,
        };
        Self {
            name,
            kind,
            export,
            series: Mutex::new(SeriesMap::default()),
            has_help: AtomicBool::new(false),
            warned_non_finite: AtomicBool::new(false),
            overflow: OnceLock::new(),
        }
    }
}

/// What happened to one call's series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Seen before.
    Known,
    /// A new series, now counted.
    New,
    /// Past a limit: the call goes to the family's overflow series.
    Overflow,
}

struct Table {
    /// Raw name → family, or why the name is refused. Bounded: past `raw_cap`, refusals are
    /// recomputed instead of remembered.
    raw: HashMap<Box<str>, Result<Arc<AdmittedFamily>, DropReason>>,
    /// Sanitized name → family.
    families: HashMap<String, Arc<AdmittedFamily>>,
    /// Every name printed by some family → the family's name.
    claims: HashMap<String, String>,
}

/// The admitted families and series of one layer.
pub(crate) struct Families {
    limits: RwLock<Limits>,
    table: RwLock<Table>,
    series: AtomicUsize,
    names: AtomicUsize,
}

impl Families {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits: RwLock::new(limits),
            table: RwLock::new(Table {
                raw: HashMap::default(),
                families: HashMap::default(),
                claims: HashMap::default(),
            }),
            series: AtomicUsize::new(0),
            names: AtomicUsize::new(0),
        }
    }

    pub(crate) fn set_limits(&self, limits: Limits) {
        *self.limits.write().unwrap_or_else(PoisonError::into_inner) = limits;
    }

    pub(crate) fn limits(&self) -> Limits {
        *self.limits.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Series and metric names currently tracked.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (
            self.series.load(Ordering::Relaxed),
            self.names.load(Ordering::Relaxed),
        )
    }

    /// The family a raw name belongs to, creating it if the name and kind are admissible.
    pub(crate) fn family(&self, raw: &str, kind: Kind) -> Result<Arc<AdmittedFamily>, DropReason> {
        let found = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .raw
            .get(raw)
            .cloned();
        let family = match found {
            Some(found) => found?,
            None => self.create(raw, kind)?,
        };
        if family.kind == kind {
            Ok(family)
        } else {
            Err(DropReason::KindConflict)
        }
    }

    fn create(&self, raw: &str, kind: Kind) -> Result<Arc<AdmittedFamily>, DropReason> {
        let limits = self.limits();
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = table.raw.get(raw) {
            return found.clone();
        }
        let result = Self::resolve(&mut table, raw, kind, limits);
        self.names.store(table.families.len(), Ordering::Relaxed);
        let raw_cap = limits.metric_names.saturating_mul(4).max(1024);
        if result.is_ok() || table.raw.len() < raw_cap {
            table.raw.insert(raw.into(), result.clone());
        }
        result
    }

    fn resolve(
        table: &mut Table,
        raw: &str,
        kind: Kind,
        limits: Limits,
    ) -> Result<Arc<AdmittedFamily>, DropReason> {
        let name = family_name(raw);
        if name.is_empty() {
            return Err(DropReason::InvalidName);
        }
        if name.starts_with(SELF_PREFIX) {
            return Err(DropReason::ReservedName);
        }
        if let Some(family) = table.families.get(name.as_ref()) {
            return Ok(family.clone());
        }
        let claims = claimed_names(&name, kind);
        if claims.iter().any(|c| table.claims.contains_key(c)) {
            return Err(DropReason::KindConflict);
        }
        if table.families.len() >= limits.metric_names {
            return Err(DropReason::MetricLimit);
        }
        let family = Arc::new(AdmittedFamily::new(name.clone().into_owned(), kind));
        for claim in claims {
            table.claims.insert(claim, family.name.clone());
        }
        table.families.insert(family.name.clone(), family.clone());
        Ok(family)
    }

    /// Counts the series with hash `hash` in `family`, or says it must overflow.
    pub(crate) fn admit(&self, family: &AdmittedFamily, hash: u64, now_ms: u64) -> Outcome {
        let mut series = family.series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(touched) = series.get_mut(&hash) {
            *touched = now_ms;
            return Outcome::Known;
        }
        let limits = self.limits();
        if series.len() >= limits.series_per_metric
            || self.series.load(Ordering::Relaxed) >= limits.series
        {
            return Outcome::Overflow;
        }
        series.insert(hash, now_ms);
        self.series.fetch_add(1, Ordering::Relaxed);
        Outcome::New
    }

    /// Forgets series no resolution touched since `before_ms`, so the limits follow the
    /// exporter's idle expiry. Families are kept: their kind stays claimed.
    pub(crate) fn forget_idle(&self, before_ms: u64) {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        for family in table.families.values() {
            let mut series = family.series.lock().unwrap_or_else(PoisonError::into_inner);
            let len = series.len();
            series.retain(|_, touched| *touched >= before_ms);
            self.series.fetch_sub(len - series.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_kind_wins_and_histograms_own_their_series() {
        let f = Families::new(Limits::default());
        assert!(f.family("lat", Kind::Histogram).is_ok());
        assert_eq!(
            f.family("lat", Kind::Counter).err(),
            Some(DropReason::KindConflict)
        );
        for taken in ["lat_count", "lat_sum", "lat_bucket"] {
            assert_eq!(
                f.family(taken, Kind::Counter).err(),
                Some(DropReason::KindConflict)
            );
        }
        assert!(f.family("c_count", Kind::Counter).is_ok());
        assert_eq!(
            f.family("c", Kind::Histogram).err(),
            Some(DropReason::KindConflict)
        );
        // Raw names that sanitize alike are one family.
        let (a, b) = (f.family("a.b", Kind::Gauge), f.family("a-b", Kind::Gauge));
        assert!(a.is_ok_and(|a| b.is_ok_and(|b| Arc::ptr_eq(&a, &b))));
    }

    #[test]
    fn names_are_validated_and_limited() {
        let f = Families::new(Limits::default().with_metric_names(1));
        assert_eq!(
            f.family("", Kind::Counter).err(),
            Some(DropReason::InvalidName)
        );
        assert_eq!(
            f.family("porter_metrics_x", Kind::Counter).err(),
            Some(DropReason::ReservedName)
        );
        assert!(f.family("one", Kind::Counter).is_ok());
        assert_eq!(
            f.family("two", Kind::Counter).err(),
            Some(DropReason::MetricLimit)
        );
    }

    #[test]
    fn series_past_the_limits_overflow_and_idle_ones_are_forgotten() {
        let f = Families::new(Limits::default().with_series_per_metric(2));
        let Ok(fam) = f.family("m", Kind::Counter) else {
            panic!("m is a valid name");
        };
        assert_eq!(f.admit(&fam, 1, 10), Outcome::New);
        assert_eq!(f.admit(&fam, 1, 10), Outcome::Known);
        assert_eq!(f.admit(&fam, 2, 20), Outcome::New);
        assert_eq!(f.admit(&fam, 3, 20), Outcome::Overflow);
        assert_eq!(f.counts(), (2, 1));
        f.forget_idle(15);
        assert_eq!(f.counts(), (1, 1));
        assert_eq!(f.admit(&fam, 3, 30), Outcome::New);
    }
}
