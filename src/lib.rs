#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod cache;
mod collector;
mod config;
pub mod decorators;
mod encode;
mod error;
mod exporter;
mod handle;
mod local;
mod matcher;
mod pipeline;
#[cfg(feature = "process")]
mod process;
#[cfg(feature = "push")]
mod push;
mod recorder;
#[cfg(feature = "runtime")]
mod runtime;
mod server;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg(feature = "tls")]
pub mod web_config;

/// The `metrics` crate, re-exported: its macros record into porter-metrics once it is the
/// recorder, with no dependency of their own.
pub use metrics;

pub mod guide {
    #![doc = include_str!("../docs/guide.md")]
}

pub use builder::Builder;
pub use collector::{Collector, NoopCollector, PrometheusCollector, Timer};
pub use config::{DEFAULT_BUCKETS, MIN_IDLE_TIMEOUT};
pub use decorators::{Aggregate, AggregateEntry, AggregatingCollector, FilteringCollector};
pub use error::{Error, PushError};
pub use local::LocalRecorder;
pub use matcher::Matcher;
#[cfg(feature = "push")]
pub use push::{PushTarget, Pusher};
pub use server::MetricsServer;
pub use store::{self_metrics, Limits, NativeHistograms};
#[cfg(feature = "tls")]
pub use web_config::{WebConfig, WebConfigError};
