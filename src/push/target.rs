//! [`PushTarget`]: where a push goes, by which protocol, how often, in requests of what
//! size, with which headers, credentials and TLS settings.

use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use hyper::Uri;

use super::credentials::{base64, redact, split_credentials};
use super::tls::Tls;
use crate::Error;

/// How often a target is pushed to, unless set.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// How long one request may take, unless set.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Samples (Remote-Write) or data points (OTLP) per request, unless set: as vmagent's
/// `-remoteWrite.maxRowsPerBlock`, far below Mimir's ingestion burst (200 000).
pub(crate) const DEFAULT_SAMPLES: usize = 10_000;

/// Bytes per request before compression, unless set: within VictoriaMetrics' 32 MiB
/// (`-maxInsertRequestSize`), the OpenTelemetry Collector's 20 MiB
/// (`max_request_body_size`) and Mimir's 100 MiB (`-distributor.max-recv-msg-size`).
pub(crate) const DEFAULT_BYTES: usize = 4 << 20;

/// Requests of one push in flight at once, unless set.
pub(crate) const DEFAULT_IN_FLIGHT: usize = 2;

/// Headers the protocols set themselves, which a user's header must not replace (the
/// Remote-Write specification says so of the first three).
const RESERVED: [&str; 7] = [
    "content-type",
    "content-encoding",
    "x-prometheus-remote-write-version",
    "content-length",
    "transfer-encoding",
    "host",
    "user-agent",
];

/// The wire protocol of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// The text format, `PUT` to a Pushgateway group.
    Pushgateway,
    /// OTLP/HTTP protobuf, gzip.
    #[cfg(feature = "otlp")]
    Otlp,
    /// Remote-Write 2.0, falling back to 1.0; snappy.
    #[cfg(feature = "remote-write")]
    RemoteWrite,
}

impl Protocol {
    /// The value of the `protocol` label of the push self-metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Pushgateway => "pushgateway",
            #[cfg(feature = "otlp")]
            Protocol::Otlp => "otlp",
            #[cfg(feature = "remote-write")]
            Protocol::RemoteWrite => "remote_write",
        }
    }

    /// Whether the protocol ends series with stale markers (a Pushgateway keeps a group
    /// until it is replaced).
    pub(crate) fn marks_stale(self) -> bool {
        self != Protocol::Pushgateway
    }
}

/// How a push is cut into requests: samples and bytes per request, requests in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Batching {
    pub(crate) samples: usize,
    pub(crate) bytes: usize,
    pub(crate) in_flight: usize,
}

/// A receiver to push to (feature `push`): a Pushgateway group, an OTLP/HTTP endpoint
/// (feature `otlp`) or a Remote-Write endpoint (feature `remote-write`), with how often
/// to push (10 s unless set), how long a request may take (5 s), how large a request may
/// grow (10 000 samples, 4 MiB unless set), extra HTTP headers (a tenant), credentials
/// (basic auth, a bearer token) and TLS settings (a CA, a client certificate).
///
/// Give it to [`Builder::push`](crate::Builder::push): a [`MetricsServer`] pushes to it
/// while it serves, a [`Pusher`](crate::Pusher) without serving. Every push reads the one
/// store, and carries cumulative values: a push after an outage carries every increment
/// made during it.
///
/// ```
/// use std::time::Duration;
/// use porter_metrics::PushTarget;
///
/// # fn main() -> Result<(), porter_metrics::Error> {
/// let target = PushTarget::remote_write("http://127.0.0.1:9090/api/v1/write")?
///     .interval(Duration::from_secs(15))?
///     .timeout(Duration::from_secs(3))?
///     .header("X-Scope-OrgID", "team-a")?
///     .bearer_token("s3cret")?;
/// assert_eq!(target.url(), "http://127.0.0.1:9090/api/v1/write");
/// assert!(!format!("{target:?}").contains("s3cret")); // header values are not printed
/// assert!(PushTarget::otlp("ftp://nowhere").is_err());
/// assert!(target.header("Content-Type", "text/plain").is_err()); // the protocol's own
/// # Ok(())
/// # }
/// ```
///
/// [`MetricsServer`]: crate::MetricsServer
#[derive(Clone)]
pub struct PushTarget {
    pub(crate) protocol: Protocol,
    /// The URL as given, without credentials.
    pub(crate) url: String,
    pub(crate) uri: Uri,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Remote-Write: send 1.0 from the first push.
    pub(crate) v1: bool,
    pub(crate) batching: Batching,
    pub(crate) tls: Tls,
}

impl std::fmt::Debug for PushTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("PushTarget")
            .field("protocol", &self.protocol.as_str())
            .field("url", &self.url)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("headers", &headers)
            .field("remote_write_v1", &self.v1)
            .field("batching", &self.batching)
            .field("tls", &self.tls)
            .finish()
    }
}

impl PushTarget {
    /// A Pushgateway group, such as `http://127.0.0.1:9091/metrics/job/nightly_import`:
    /// each push `PUT`s the text format there, in one request (replacing the group: a
    /// group cannot be sent in parts), without stale markers (the group stays until
    /// replaced or deleted).
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] if `url` is not an http(s) URL with a host.
    pub fn pushgateway(url: &str) -> Result<Self, Error> {
        Self::new(Protocol::Pushgateway, url)
    }

    /// An OTLP/HTTP receiver, such as an OpenTelemetry Collector
    /// (`http://collector:4318`, to which `/v1/metrics` is added, as OpenTelemetry SDKs add
    /// it to a bare endpoint) or VictoriaMetrics (`http://vm:8428/opentelemetry/v1/metrics`,
    /// taken as given). Each push `POST`s `ExportMetricsServiceRequest`s, gzipped.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] if `url` is not an http(s) URL with a host.
    #[cfg(feature = "otlp")]
    pub fn otlp(url: &str) -> Result<Self, Error> {
        let mut target = Self::new(Protocol::Otlp, url)?;
        if matches!(target.uri.path(), "" | "/") && target.uri.query().is_none() {
            let with_path = format!("{}/v1/metrics", target.url.trim_end_matches('/'));
            target.uri = with_path.parse().map_err(|e| invalid(url, Some(e)))?;
        }
        Ok(target)
    }

    /// A Prometheus Remote-Write receiver, such as Prometheus 3
    /// (`http://prometheus:9090/api/v1/write`, with `--web.enable-remote-write-receiver`),
    /// Mimir, Thanos Receive or VictoriaMetrics. Each push `POST`s 2.0 requests,
    /// snappy-compressed; a receiver that answers `415`, a `400` without the 2.0
    /// `X-Prometheus-Remote-Write-*-Written` headers, or a success without them, gets 1.0
    /// requests from then on.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] if `url` is not an http(s) URL with a host.
    #[cfg(feature = "remote-write")]
    pub fn remote_write(url: &str) -> Result<Self, Error> {
        Self::new(Protocol::RemoteWrite, url)
    }

    /// A target of `protocol` at `url`; credentials in the URL become basic auth.
    fn new(protocol: Protocol, url: &str) -> Result<Self, Error> {
        let trimmed = url.trim();
        let (without, credentials) =
            split_credentials(trimmed).ok_or_else(|| invalid(url, None))?;
        let uri: Uri = without.parse().map_err(|e| invalid(url, Some(e)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(invalid(url, None));
        }
        let target = Self {
            protocol,
            url: without,
            uri,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            headers: Vec::new(),
            v1: false,
            batching: Batching {
                samples: DEFAULT_SAMPLES,
                bytes: DEFAULT_BYTES,
                in_flight: DEFAULT_IN_FLIGHT,
            },
            tls: Tls::default(),
        };
        match credentials {
            Some((user, password)) => target.basic_auth(&user, &password),
            None => Ok(target),
        }
    }

    /// Sends Remote-Write 1.0 from the first push, for a receiver known to take only 1.0
    /// (as Prometheus' `protobuf_message: prometheus.WriteRequest`); a no-op for other
    /// protocols. Without it, the first push to such a receiver is sent twice.
    ///
    /// ```
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let target = porter_metrics::PushTarget::remote_write("http://vm:8428/api/v1/write")?
    ///     .remote_write_v1();
    /// # let _ = target;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "remote-write")]
    #[must_use]
    pub fn remote_write_v1(mut self) -> Self {
        self.v1 = true;
        self
    }

    /// How often to push (10 s unless set). To a target that sends stale markers (OTLP,
    /// Remote-Write), it must be shorter than the builder's idle timeout, if any: a series
    /// expiry hides is then seen by a push before it is reclaimed.
    ///
    /// # Errors
    /// [`Error::InvalidInterval`] if `interval` is zero.
    pub fn interval(mut self, interval: Duration) -> Result<Self, Error> {
        if interval.is_zero() {
            return Err(Error::InvalidInterval);
        }
        self.interval = interval;
        Ok(self)
    }

    /// How long one request may take (5 s unless set); the final push at `stop()` (and
    /// its stale markers) are bounded by it too.
    ///
    /// # Errors
    /// [`Error::InvalidInterval`] if `timeout` is zero.
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        if timeout.is_zero() {
            return Err(Error::InvalidInterval);
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// Cuts each push into requests of at most `samples` samples (Remote-Write: samples
    /// and native histograms; OTLP: data points) and `bytes` bytes before compression
    /// (10 000 and 4 MiB unless set, which VictoriaMetrics, the OpenTelemetry Collector and
    /// Mimir take with their default settings). A request always holds at least one whole
    /// series (a histogram is never split). Pushgateway pushes are one request.
    ///
    /// ```
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let target = porter_metrics::PushTarget::otlp("http://collector:4318")?
    ///     .max_request_size(2_000, 1 << 20)?;
    /// # let _ = target;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidPushSetting`] if either is zero.
    pub fn max_request_size(mut self, samples: usize, bytes: usize) -> Result<Self, Error> {
        if samples == 0 || bytes == 0 {
            return Err(Error::InvalidPushSetting {
                setting: "max_request_size",
                reason: "a request holds at least one sample and one byte",
            });
        }
        self.batching.samples = samples;
        self.batching.bytes = bytes;
        Ok(self)
    }

    /// How many requests of one push may be in flight at once (2 unless set): they start
    /// in order; each is retried alone.
    ///
    /// # Errors
    /// [`Error::InvalidPushSetting`] unless `requests` is 1 to 64.
    pub fn requests_in_flight(mut self, requests: usize) -> Result<Self, Error> {
        if !(1..=64).contains(&requests) {
            return Err(Error::InvalidPushSetting {
                setting: "requests_in_flight",
                reason: "between 1 and 64",
            });
        }
        self.batching.in_flight = requests;
        Ok(self)
    }

    /// Sends `name: value` with every push, such as a tenant (`X-Scope-OrgID` for Mimir,
    /// `THANOS-TENANT` for Thanos). The value is kept out of logs and `Debug`.
    ///
    /// # Errors
    /// [`Error::InvalidHeader`] if `name` or `value` cannot be an HTTP header;
    /// [`Error::ReservedHeader`] for a header the protocol sets (`Content-Type`,
    /// `Content-Encoding`, `X-Prometheus-Remote-Write-Version`, `Content-Length`,
    /// `Transfer-Encoding`, `Host`, `User-Agent`).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, Error> {
        let bad = |source: hyper::http::Error| Error::InvalidHeader {
            name: name.to_owned(),
            source,
        };
        let name_ = HeaderName::try_from(name).map_err(|e| bad(e.into()))?;
        if RESERVED.contains(&name_.as_str()) {
            return Err(Error::ReservedHeader {
                name: name.to_owned(),
            });
        }
        let mut value = HeaderValue::try_from(value).map_err(|e| bad(e.into()))?;
        value.set_sensitive(true);
        self.headers.retain(|(n, _)| *n != name_);
        self.headers.push((name_, value));
        Ok(self)
    }

    /// Sends `Authorization: Bearer <token>` with every push (replacing basic auth).
    ///
    /// # Errors
    /// [`Error::InvalidHeader`] if the token cannot be a header value.
    pub fn bearer_token(self, token: &str) -> Result<Self, Error> {
        self.header(AUTHORIZATION.as_str(), &format!("Bearer {token}"))
    }

    /// Sends `Authorization: Basic ...` with every push (replacing a bearer token), as a
    /// URL with credentials (`https://user:password@host/...`) does.
    ///
    /// ```
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let target = porter_metrics::PushTarget::remote_write("https://mimir:8080/api/v1/push")?
    ///     .basic_auth("tenant-1", "s3cret")?;
    /// assert!(!format!("{target:?}").contains("s3cret"));
    /// let from_url = porter_metrics::PushTarget::remote_write("https://tenant-1:s3cret@mimir:8080/api/v1/push")?;
    /// assert_eq!(from_url.url(), "https://mimir:8080/api/v1/push"); // credentials kept apart
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidPushSetting`] if `user` holds a `:`, or either a control character
    /// (they cannot be sent as basic auth).
    pub fn basic_auth(self, user: &str, password: &str) -> Result<Self, Error> {
        if user.contains(':') || user.chars().chain(password.chars()).any(char::is_control) {
            return Err(Error::InvalidPushSetting {
                setting: "basic_auth",
                reason: "a user holds no ':', and neither holds a control character",
            });
        }
        let encoded = base64(format!("{user}:{password}").as_bytes());
        self.header(AUTHORIZATION.as_str(), &format!("Basic {encoded}"))
    }

    /// Checks the receiver's certificate against these CAs (PEM: one or more
    /// certificates) instead of the system's root certificates, as Prometheus'
    /// `tls_config.ca_file` does.
    ///
    /// # Errors
    /// [`Error::PushTls`] if `pem` holds no certificate, or one rustls cannot use.
    pub fn tls_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        self.tls.set_ca(pem.as_ref())?;
        Ok(self)
    }

    /// Presents this client certificate (PEM: the chain, leaf first) and its private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1) to a receiver that asks for one: mutual TLS, as
    /// Prometheus' `tls_config.cert_file` and `key_file`.
    ///
    /// # Errors
    /// [`Error::PushTls`] if either cannot be read, or rustls refuses the pair (a key it
    /// does not support, a key that is not the certificate's).
    pub fn tls_client_pem(
        mut self,
        chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> Result<Self, Error> {
        self.tls.set_client(chain.as_ref(), key.as_ref())?;
        Ok(self)
    }

    /// Checks the receiver's certificate for `name`, and sends it as the TLS server name
    /// (SNI), instead of the URL's host: for a receiver reached by address whose
    /// certificate names it, as Prometheus' `tls_config.server_name`.
    ///
    /// # Errors
    /// [`Error::PushTls`] if `name` is neither a DNS name nor an IP address.
    pub fn tls_server_name(mut self, name: &str) -> Result<Self, Error> {
        self.tls.set_server_name(name)?;
        Ok(self)
    }

    /// The URL as given, without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The receiver's host and port, as the `endpoint` label of the push self-metrics
    /// shows it (never a path, a query or credentials).
    pub(crate) fn endpoint(&self) -> String {
        let host = self.uri.host().unwrap_or_default();
        match self.uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

fn invalid(url: &str, source: Option<hyper::http::uri::InvalidUri>) -> Error {
    Error::InvalidEndpoint {
        endpoint: redact(url),
        source,
    }
}

#[cfg(test)]
mod tests;
