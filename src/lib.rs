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
//! A call flows one way: collector → key → layer → exporter → listener.
//!
//! | concern | module |
//! |---|---|
//! | the [`Collector`] interface, [`NoopCollector`], [`Timer`], [`PrometheusCollector`] | `collector` |
//! | flat label pairs to `metrics` keys; packing and hashing keys | `key` |
//! | what a call resolves to (a handle of one kind) | `handle` |
//! | the recorder layer ([`PorterLayer`]): admission rules, limits, lossless histograms, handle lookup, self-metrics | [`recorder`], [`self_metrics`] |
//! | one pipeline (layer, pre-export buffer, exporter, upkeep), the global install | `pipeline` |
//! | [`MetricsServer`] and its listener, [`Pusher`] | `server` |
//! | configuration: [`Builder`], [`Limits`], [`DEFAULT_BUCKETS`] | `builder`, `config` |
//! | a recorder held by the caller (tests) | [`LocalRecorder`] (`local`) |
//! | decorators: [`FilteringCollector`], [`AggregatingCollector`], writing your own | [`decorators`] |
//! | testing helpers: capture and read back (feature `testing`) | `testing` |
//! | request metrics for tower services (feature `tower`) | `tower` |
//! | errors | [`Error`], [`PushError`] |
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `push` | [`Pusher`], for batch jobs: pushes to a Pushgateway |
//! | `process` | `Builder::process_metrics()`: client_golang's process metrics |
//! | `runtime` | `Builder::runtime_metrics(handle)`: tokio runtime metrics, by `tokio-metrics` |
//! | `testing` | `testing::Capture` and `testing::Exposition` |
//! | `tower` | `tower::MetricsLayer`: request metrics for tonic (gRPC) and axum (HTTP) services |

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod collector;
mod config;
pub mod decorators;
mod error;
mod handle;
mod key;
mod local;
mod pipeline;
pub mod recorder;
#[cfg(feature = "runtime")]
mod runtime;
mod server;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tower")]
pub mod tower;

pub use builder::Builder;
pub use collector::{Collector, NoopCollector, PrometheusCollector, Timer};
pub use config::DEFAULT_BUCKETS;
pub use decorators::{Aggregate, AggregateEntry, AggregatingCollector, FilteringCollector};
pub use error::{Error, PushError};
pub use local::LocalRecorder;
pub use metrics_exporter_prometheus::Matcher;
pub use recorder::{self_metrics, Limits, PorterLayer, PorterRecorder};
pub use server::MetricsServer;
#[cfg(feature = "push")]
pub use server::Pusher;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
