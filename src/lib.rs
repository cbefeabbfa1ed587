//! # porter-metrics
//!
//! The simple `Collector` interface of the Porter metrics design, over the [`metrics`]
//! facade, exported to Prometheus by `metrics-exporter-prometheus`, with a recorder layer
//! that keeps every scrape valid whatever is recorded.
//!
//! ```no_run
//! use porter_metrics::{Collector, MetricsServer, PrometheusCollector};
//!
//! # fn main() -> Result<(), porter_metrics::Error> {
//! // 1. At startup: start the server. It installs the global recorder.
//! let server = MetricsServer::new("127.0.0.1:9090");
//! server.start()?;
//!
//! // 2. Anywhere: record through the collector, or through the `metrics` macros.
//! let collector = PrometheusCollector::new();
//! collector.increment_counter("requests_total", &["method", "GET", "status", "200"]);
//! let timer = collector.start_timer("request_duration_seconds");
//! // ... handle the request ...
//! let seconds = timer.stop(); // returns the duration and records it
//! metrics::gauge!("in_flight_requests").set(0.0);
//!
//! // 3. Prometheus scrapes http://127.0.0.1:9090/metrics.
//! # let _ = seconds;
//! server.stop()?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Install order
//!
//! Start the [`MetricsServer`] first thing in `main`. Anything the collector records before
//! that is kept: [`PrometheusCollector::new`] installs the pipeline as the global recorder
//! and buffers until the server exports it. Macros that run before *any* porter-metrics call
//! go to the `metrics` crate's no-op recorder, as with every `metrics` exporter.
//!
//! ## What is where
//!
//! | concern | module |
//! |---|---|
//! | the `Collector` interface, [`NoopCollector`] | `collector` |
//! | [`Timer`] | `timer` |
//! | decorators: [`FilteringCollector`], [`AggregatingCollector`], writing your own | [`decorators`] |
//! | label pairs to `metrics` keys | `labels` |
//! | the recorder layer and its policy | [`layer`], [`self_metrics`] |
//! | [`PrometheusCollector`] and its handle cache | `prometheus`, `cache` |
//! | [`MetricsServer`] | `server` |
//! | configuration | [`Builder`], [`Limits`] |
//! | a recorder held by the caller (tests) | [`LocalRecorder`] |
//! | testing helpers: capture and read back | [`testing`] |
//! | errors | [`Error`] |

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod cache;
mod collector;
pub mod decorators;
mod error;
mod families;
mod histogram;
mod labels;
pub mod layer;
mod listener;
mod local;
mod pending;
mod pipeline;
mod policy;
mod prometheus;
#[cfg(feature = "push")]
mod push;
pub mod self_metrics;
mod server;
pub mod testing;
mod timer;

pub use builder::{Builder, DEFAULT_BUCKETS};
pub use collector::{Collector, NoopCollector};
pub use decorators::{Aggregate, AggregateEntry, AggregatingCollector, FilteringCollector};
pub use error::Error;
pub use families::Limits;
pub use layer::{PorterLayer, PorterRecorder};
pub use local::LocalRecorder;
pub use metrics_exporter_prometheus::Matcher;
pub use prometheus::PrometheusCollector;
pub use server::MetricsServer;
pub use timer::Timer;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
