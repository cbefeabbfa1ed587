//! Decorators: collectors that wrap any collector to add behaviour.
//!
//! The design's integration examples, as real types. Each wraps any [`Collector`](crate::Collector), including
//! `Arc<dyn Collector>`, and is one itself, so they compose:
//! `FilteringCollector::deny(AggregatingCollector::new(PrometheusCollector::new()))`.
//!
//! * [`FilteringCollector`]: allows or denies calls by exact name, prefix or predicate. A
//!   denied call returns before reaching the wrapped collector; a denied timer measures but
//!   records nothing.
//! * [`AggregatingCollector`]: keeps running aggregates (count, sum, min, max, last) per name
//!   and label set, exact under any number of threads, readable while recording goes on.
//!
//! Writing your own is a matter of implementing [`Collector`](crate::Collector) and forwarding:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use porter_metrics::{Collector, LocalRecorder, Timer};
//!
//! /// Counts every call, then forwards it (the design's `CustomCollector`).
//! struct CountingCollector<C> {
//!     inner: C,
//!     calls: AtomicU64,
//! }
//!
//! impl<C: Collector> Collector for CountingCollector<C> {
//!     fn increment_counter(&self, name: &str, labels: &[&str]) {
//!         self.calls.fetch_add(1, Ordering::Relaxed);
//!         self.inner.increment_counter(name, labels);
//!     }
//!     fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
//!         self.calls.fetch_add(1, Ordering::Relaxed);
//!         self.inner.record_histogram(name, value, labels);
//!     }
//!     fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
//!         self.calls.fetch_add(1, Ordering::Relaxed);
//!         self.inner.record_gauge(name, value, labels);
//!     }
//!     fn start_timer(&self, name: &str) -> Timer {
//!         self.calls.fetch_add(1, Ordering::Relaxed);
//!         self.inner.start_timer(name)
//!     }
//!     fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]) {
//!         self.calls.fetch_add(1, Ordering::Relaxed);
//!         self.inner.add_to_gauge(name, delta, labels);
//!     }
//! }
//!
//! let recorder = LocalRecorder::new();
//! let counting = CountingCollector { inner: recorder.collector(), calls: AtomicU64::new(0) };
//! counting.increment_counter("requests_total", &["method", "GET"]);
//! assert_eq!(counting.calls.load(Ordering::Relaxed), 1);
//! assert!(recorder.render().contains(r#"requests_total{method="GET"} 1"#));
//! ```

mod aggregate;
mod filter;

pub use aggregate::{Aggregate, AggregateEntry, AggregatingCollector};
pub use filter::FilteringCollector;
