//! The peers the benches run beside ours: the `prometheus` crate in the design's Go shape,
//! and `prometheus-client` families.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::RwLock;

use porter_metrics::DEFAULT_BUCKETS;

/// The `prometheus` crate as the Go design would use it: metric vectors looked up by name.
pub struct PromShape<V> {
    vecs: RwLock<HashMap<String, V>>,
    make: fn(&str, &[&str]) -> V,
}

impl<V: Clone> PromShape<V> {
    pub fn new(make: fn(&str, &[&str]) -> V) -> Self {
        Self {
            vecs: RwLock::new(HashMap::new()),
            make,
        }
    }

    /// Runs `f` on the vector of `name`, created with label names `names` on first use.
    #[inline]
    pub fn with<T>(&self, name: &str, names: &[&str], f: impl FnOnce(&V) -> T) -> T {
        if let Some(v) = self.vecs.read().expect("lock").get(name) {
            return f(v);
        }
        let v = self
            .vecs
            .write()
            .expect("lock")
            .entry(name.to_owned())
            .or_insert_with(|| (self.make)(name, names))
            .clone();
        f(&v)
    }
}

/// The Go design's `parseLabels`: flat pairs split into names and values on every call,
/// the names to create the vector on first use, the values for `WithLabelValues`.
#[inline]
pub fn parse_labels<'a>(labels: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let names = labels.iter().step_by(2).copied().collect();
    let values = labels.iter().skip(1).step_by(2).copied().collect();
    (names, values)
}

pub fn prom_counter(name: &str, labels: &[&str]) -> prometheus::CounterVec {
    prometheus::CounterVec::new(prometheus::Opts::new(name, "help"), labels).expect("vec")
}

pub fn prom_gauge(name: &str, labels: &[&str]) -> prometheus::GaugeVec {
    prometheus::GaugeVec::new(prometheus::Opts::new(name, "help"), labels).expect("vec")
}

pub fn prom_histogram(name: &str, labels: &[&str]) -> prometheus::HistogramVec {
    prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(name, "help").buckets(DEFAULT_BUCKETS.to_vec()),
        labels,
    )
    .expect("vec")
}

pub type ClientCounters = prometheus_client::metrics::family::Family<
    Vec<(String, String)>,
    prometheus_client::metrics::counter::Counter,
>;
pub type ClientGauges = prometheus_client::metrics::family::Family<
    Vec<(String, String)>,
    prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
>;
pub type ClientHistograms = prometheus_client::metrics::family::Family<
    Vec<(String, String)>,
    prometheus_client::metrics::histogram::Histogram,
    fn() -> prometheus_client::metrics::histogram::Histogram,
>;

pub fn client_histograms() -> ClientHistograms {
    fn make() -> prometheus_client::metrics::histogram::Histogram {
        prometheus_client::metrics::histogram::Histogram::new(DEFAULT_BUCKETS)
    }
    ClientHistograms::new_with_constructor(make)
}
