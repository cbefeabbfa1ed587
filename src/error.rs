//! The error type of this crate.
//!
//! Every fallible public call returns [`Error`]: the caller can match on the variant and act
//! (pick another address, keep the running server, fix a configuration value). Failures that
//! happen while recording are never errors: the recorder layer drops or rewrites the sample,
//! counts it in a self-metric and warns once (see the crate documentation).

use std::io;

/// Everything that can go wrong in a call a user makes.
///
/// ```
/// use porter_metrics::{Error, MetricsServer};
///
/// let server = MetricsServer::builder().standalone().build("not an address");
/// match server.start() {
///     Err(Error::InvalidAddress { address, .. }) => assert_eq!(address, "not an address"),
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address could not be parsed or resolved.
    #[error("invalid listen address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The listener could not bind its address (for example, the port is in use).
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address the server tried to bind.
        address: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// `start()` was called on a server that is already serving.
    #[error("the metrics server is already running on {address}")]
    AlreadyRunning {
        /// The address it is serving on.
        address: String,
    },

    /// The pipeline this server would export is exported by another running server.
    #[error("these metrics are already exported by another running MetricsServer")]
    AlreadyExported,

    /// Another crate installed a global `metrics` recorder before porter-metrics could.
    #[error("a global metrics recorder other than porter-metrics' is already installed")]
    ForeignRecorder,

    /// A configuration value given to the [`Builder`](crate::Builder) is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The final push to the Pushgateway, at `stop()`, failed (push mode).
    #[error("the final push to the Pushgateway failed: {0}")]
    Push(String),

    /// The server's thread or runtime could not be created.
    #[error("cannot start the metrics server runtime: {0}")]
    Runtime(#[source] io::Error),
}
