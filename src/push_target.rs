//! [`PushTarget`]: where a push goes, by which protocol, how often, with which headers.

use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use hyper::Uri;

use crate::Error;

/// How often a target is pushed to, unless set.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// How long one push may take, unless set.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

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
}

/// A receiver to push to (feature `push`): a Pushgateway group, an OTLP/HTTP endpoint
/// (feature `otlp`) or a Remote-Write endpoint (feature `remote-write`), with how often
/// to push (10 s unless set), how long a push may take (5 s), and extra HTTP headers (a
/// bearer token, a tenant).
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
/// # Ok(())
/// # }
/// ```
///
/// [`MetricsServer`]: crate::MetricsServer
#[derive(Clone)]
pub struct PushTarget {
    pub(crate) protocol: Protocol,
    pub(crate) url: String,
    pub(crate) uri: Uri,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Remote-Write: send 1.0 from the first push.
    pub(crate) v1: bool,
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
            .finish()
    }
}

impl PushTarget {
    /// A Pushgateway group, such as `http://127.0.0.1:9091/metrics/job/nightly_import`:
    /// each push `PUT`s the text format there (replacing the group).
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] if `url` is not an http(s) URL with a host.
    pub fn pushgateway(url: &str) -> Result<Self, Error> {
        Self::new(Protocol::Pushgateway, url)
    }

    /// An OTLP/HTTP receiver, such as an OpenTelemetry Collector
    /// (`http://collector:4318`, to which `/v1/metrics` is added, as OpenTelemetry SDKs add
    /// it to a bare endpoint) or VictoriaMetrics (`http://vm:8428/opentelemetry/v1/metrics`,
    /// taken as given). Each push `POST`s an `ExportMetricsServiceRequest`, gzipped.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] if `url` is not an http(s) URL with a host.
    #[cfg(feature = "otlp")]
    pub fn otlp(url: &str) -> Result<Self, Error> {
        let mut target = Self::new(Protocol::Otlp, url)?;
        if matches!(target.uri.path(), "" | "/") && target.uri.query().is_none() {
            let with_path = format!("{}/v1/metrics", url.trim_end_matches('/'));
            target.uri = with_path.parse().map_err(|e| invalid(url, Some(e)))?;
        }
        Ok(target)
    }

    /// A Prometheus Remote-Write receiver, such as Prometheus 3
    /// (`http://prometheus:9090/api/v1/write`, with `--web.enable-remote-write-receiver`),
    /// Mimir, Thanos Receive or VictoriaMetrics. Each push `POST`s a 2.0 request,
    /// snappy-compressed; a receiver that answers `415`, or a success without the 2.0
    /// `X-Prometheus-Remote-Write-*-Written` headers, gets 1.0 requests from then on.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] if `url` is not an http(s) URL with a host.
    #[cfg(feature = "remote-write")]
    pub fn remote_write(url: &str) -> Result<Self, Error> {
        Self::new(Protocol::RemoteWrite, url)
    }

    fn new(protocol: Protocol, url: &str) -> Result<Self, Error> {
        let uri: Uri = url.trim().parse().map_err(|e| invalid(url, Some(e)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(invalid(url, None));
        }
        Ok(Self {
            protocol,
            url: url.to_owned(),
            uri,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            headers: Vec::new(),
            v1: false,
        })
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

    /// How often to push (10 s unless set).
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

    /// How long one request may take (5 s unless set); the final push at `stop()` is
    /// bounded by it too.
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

    /// Sends `name: value` with every push, such as a tenant (`X-Scope-OrgID` for Mimir,
    /// `THANOS-TENANT` for Thanos). The value is kept out of logs and `Debug`.
    ///
    /// # Errors
    /// [`Error::InvalidHeader`] if `name` or `value` cannot be an HTTP header.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, Error> {
        let bad = |source: hyper::http::Error| Error::InvalidHeader {
            name: name.to_owned(),
            source,
        };
        let name_ = HeaderName::try_from(name).map_err(|e| bad(e.into()))?;
        let mut value = HeaderValue::try_from(value).map_err(|e| bad(e.into()))?;
        value.set_sensitive(true);
        self.headers.retain(|(n, _)| *n != name_);
        self.headers.push((name_, value));
        Ok(self)
    }

    /// Sends `Authorization: Bearer <token>` with every push.
    ///
    /// # Errors
    /// [`Error::InvalidHeader`] if the token cannot be a header value.
    pub fn bearer_token(self, token: &str) -> Result<Self, Error> {
        self.header(AUTHORIZATION.as_str(), &format!("Bearer {token}"))
    }

    /// The URL as given.
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
        endpoint: url.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_intervals_and_headers_are_checked() {
        for bad in ["", "nonsense", "ftp://h/x", "http://", "http:///path"] {
            assert!(PushTarget::pushgateway(bad).is_err(), "{bad:?}");
        }
        let target = PushTarget::pushgateway("https://user:pw@gw.example:9091/metrics/job/x")
            .expect("valid");
        assert_eq!(
            target.endpoint(),
            "gw.example:9091",
            "no credentials, no path"
        );
        assert!(matches!(
            target.clone().interval(Duration::ZERO),
            Err(Error::InvalidInterval)
        ));
        assert!(target.clone().timeout(Duration::ZERO).is_err());
        assert!(matches!(
            target.clone().header("bad name", "v"),
            Err(Error::InvalidHeader { .. })
        ));
        assert!(target.clone().header("x-tenant", "line\nbreak").is_err());
        let twice = target
            .header("X-Scope-OrgID", "a")
            .and_then(|t| t.header("x-scope-orgid", "b"))
            .expect("valid");
        assert_eq!(twice.headers.len(), 1, "a header set again is replaced");
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn a_bare_otlp_endpoint_gets_the_metrics_path() {
        let bare = PushTarget::otlp("http://collector:4318").expect("valid");
        assert_eq!(bare.uri.path(), "/v1/metrics");
        assert_eq!(bare.url(), "http://collector:4318");
        let full = PushTarget::otlp("http://vm:8428/opentelemetry/v1/metrics").expect("valid");
        assert_eq!(full.uri.path(), "/opentelemetry/v1/metrics");
    }
}
