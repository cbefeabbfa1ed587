//! The error type of this crate.
//!
//! Every fallible public call returns [`Error`]: the caller can match on the variant and act
//! (pick another address, keep the running server, fix a configuration value), and the
//! underlying error, where there is one, is its [`source`](std::error::Error::source).
//! Failures while recording are never errors: the store drops or rewrites the
//! sample, counts it in a self-metric and warns once (see the crate documentation).

use std::io;
use std::time::Duration;

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
    #[error("invalid listen address {address:?}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it was rejected.
        #[source]
        source: io::Error,
    },

    /// The listener could not bind its address (for example, the port is in use).
    #[error("cannot listen on {address}")]
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

    /// `start()` was called on a pusher that is already pushing.
    #[error("the pusher is already pushing to {endpoints:?}")]
    AlreadyPushing {
        /// The URL of each of its targets.
        endpoints: Vec<String>,
    },

    /// The pipeline this server would export is exported by another running server.
    #[error("these metrics are already exported by another running server")]
    AlreadyExported,

    /// A server was built with pipeline settings (buckets, global labels, limits, ...)
    /// other than those the pipeline it exports was bound with, by the first server that
    /// started on it: they cannot change while the pipeline lives. Build every server of
    /// one pipeline (the global one, say) with the same settings.
    #[error("this server's {setting} differs from the settings its pipeline was bound with")]
    ConflictingSettings {
        /// The first setting that differs, by its `Builder` method's name.
        setting: &'static str,
    },

    /// Another crate installed a global `metrics` recorder before porter-metrics could.
    #[error("a global metrics recorder other than porter-metrics' is already installed")]
    ForeignRecorder,

    /// Histogram buckets must be a non-empty list of finite numbers (`+Inf` is implicit).
    #[error("histogram buckets must be a non-empty list of finite numbers, got {buckets:?}")]
    InvalidBuckets {
        /// The buckets as given.
        buckets: Vec<f64>,
    },

    /// Native histogram settings need a finite bucket factor above 1, a finite zero
    /// threshold of at least 0, and at least one bucket.
    #[error("unusable native histogram settings {settings:?}")]
    InvalidNativeHistograms {
        /// The settings as given.
        settings: crate::NativeHistograms,
    },

    /// A global label key must match `[a-zA-Z_][a-zA-Z0-9_]*`, not start with `__`, and not
    /// be `le` or `quantile`.
    #[error("{key:?} is not a usable label key")]
    InvalidLabelKey {
        /// The key as given.
        key: String,
    },

    /// An allowlist entry is neither an IP address nor a CIDR network.
    #[error("allowlist entry {entry:?} is neither an IP address nor a network")]
    InvalidNetwork {
        /// The entry as given.
        entry: String,
        /// Why it does not parse.
        #[source]
        source: ipnet::AddrParseError,
    },

    /// A push URL must be http(s), with a host, such as
    /// `http://127.0.0.1:9091/metrics/job/NAME`.
    #[error("invalid push URL {endpoint:?}")]
    InvalidEndpoint {
        /// The URL as given.
        endpoint: String,
        /// Why it does not parse, when it does not.
        #[source]
        source: Option<hyper::http::uri::InvalidUri>,
    },

    /// A push interval or timeout must not be zero.
    #[error("a push interval or timeout must not be zero")]
    InvalidInterval,

    /// A push header's name or value cannot be an HTTP header.
    #[error("{name:?} cannot be a push header")]
    InvalidHeader {
        /// The header's name as given.
        name: String,
        /// Why the name or the value was rejected.
        #[source]
        source: hyper::http::Error,
    },

    /// A push header is one the protocol sets itself (`Content-Type`, `Content-Encoding`,
    /// `X-Prometheus-Remote-Write-Version`, `Content-Length`, `Transfer-Encoding`, `Host`,
    /// `User-Agent`): the Remote-Write specification forbids replacing them.
    #[error("{name:?} is set by the push protocol and cannot be a push header")]
    ReservedHeader {
        /// The header's name as given.
        name: String,
    },

    /// A push setting is out of its range.
    #[error("push setting {setting}: {reason}")]
    InvalidPushSetting {
        /// The `PushTarget` method (or setting) that refused the value.
        setting: &'static str,
        /// What the value must be.
        reason: &'static str,
    },

    /// A push TLS setting (a CA, a client certificate or key, a server name) cannot be
    /// used.
    #[error("unusable push TLS {what}")]
    PushTls {
        /// Which setting.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A builder setting does not apply to what was built from it (`allow` for a
    /// `Pusher`, which has no listener).
    #[error("{setting} does not apply to {built}")]
    NotApplicable {
        /// The `Builder` method.
        setting: &'static str,
        /// What was built.
        built: &'static str,
    },

    /// A pusher needs at least one push target (`Builder::push`).
    #[error("a pusher needs at least one push target")]
    NoPushTarget,

    /// No usable root certificates for pushing over TLS.
    #[error("no usable root certificates for TLS")]
    Tls(#[source] io::Error),

    /// A final push, at `stop()`, failed.
    #[error("the final push to {endpoint} failed")]
    Push {
        /// The target's URL.
        endpoint: String,
        /// What went wrong.
        #[source]
        source: PushError,
    },

    /// The web config (feature `tls`) cannot be used: a file that cannot be read, a key
    /// porter-metrics does not know, a value it cannot honour, a certificate that does not
    /// load.
    #[cfg(feature = "tls")]
    #[error("the web config cannot be used")]
    WebConfig(#[from] crate::WebConfigError),

    /// The server's thread or runtime could not be created.
    #[error("cannot start the metrics server's thread or runtime")]
    Runtime(#[source] io::Error),

    /// The push thread or its runtime could not be created.
    #[error("cannot start the push thread or its runtime")]
    PushRuntime(#[source] io::Error),
}

/// Why a push failed.
///
/// ```
/// let timeout = porter_metrics::PushError::Timeout(std::time::Duration::from_secs(5));
/// assert_eq!(timeout.to_string(), "no answer within 5s");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The receiver did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be sent (connection refused, TLS, ...).
    #[error("the request failed")]
    Request(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The receiver answered with an error status, and this message (the start of its
    /// answer's body, if any).
    #[error("the receiver answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// What the receiver said, at most 256 characters.
        message: String,
    },
    /// The receiver took only part of the push (its message, if it gave one).
    #[error("the receiver took only part of the push: {0}")]
    Partial(String),
}
