//! What a client passes before it is served, and what it gets when refused:
//!
//! 1. the allowlist: a client outside it gets `403` at once, saying why, without its
//!    request being read, and never takes a connection slot ([`forbidden`]);
//! 2. with a web config's `tls_server_config` (feature `tls`), the TLS handshake and its
//!    client-certificate checks ([`tls`]); plain HTTP sent to the TLS port gets `400`;
//! 3. with `basic_auth_users`, basic auth on every request: `401` with
//!    `WWW-Authenticate` ([`auth`]).
//!
//! Every refusal is counted by reason ([`Reason`]) and logged once per reason, never once
//! per connection or request.

#[cfg(feature = "tls")]
mod auth;
mod forbidden;
#[cfg(feature = "tls")]
mod rotation;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(feature = "tls")]
mod verify;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::stats::{ConnectionStats, Reason};
use forbidden::{forbid, MAX_FORBIDDEN_WRITERS};

/// See the module documentation. One per running listener.
pub(crate) struct Guard {
    /// Clients allowed to connect; everyone when empty.
    allowed: Vec<IpNet>,
    stats: Arc<ConnectionStats>,
    /// `403` answers being written.
    forbidden_writers: Arc<Semaphore>,
    /// The reasons already logged, one bit each.
    logged: AtomicU32,
    /// The TLS side of the web config, if any.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tls::Tls>,
    /// Basic auth, if the web config has users.
    #[cfg(feature = "tls")]
    auth: Option<auth::BasicAuth>,
    /// The web config's `http_server_config.headers`, on every answer.
    #[cfg(feature = "tls")]
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl Guard {
    /// A guard with the allowlist `allowed` and no web config.
    pub(crate) fn new(allowed: Vec<IpNet>, stats: Arc<ConnectionStats>) -> Self {
        Self {
            allowed,
            stats,
            forbidden_writers: Arc::new(Semaphore::new(MAX_FORBIDDEN_WRITERS)),
            logged: AtomicU32::new(0),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            auth: None,
            #[cfg(feature = "tls")]
            headers: Vec::new(),
        }
    }

    /// The same, securing the endpoint as `web` says: loads its certificates now.
    ///
    /// # Errors
    /// [`Error::WebConfig`](crate::Error::WebConfig) if a certificate, key or CA file cannot
    /// be read or used.
    #[cfg(feature = "tls")]
    pub(crate) fn secured(
        allowed: Vec<IpNet>,
        stats: Arc<ConnectionStats>,
        web: &crate::web_config::Checked,
    ) -> Result<Self, crate::Error> {
        let tls = match &web.tls {
            Some(settings) => Some(tls::Tls::load(settings, stats.clone())?),
            None => None,
        };
        let auth = (!web.users.is_empty()).then(|| auth::BasicAuth::new(&web.users));
        stats.show(tls.is_some(), auth.is_some());
        Ok(Self {
            tls,
            auth,
            headers: web.headers.clone(),
            ..Self::new(allowed, stats)
        })
    }

    /// Whether `peer` may connect. If not, answers it `403` (saying why), closes its
    /// connection, counts it and logs it once.
    pub(crate) fn admit(&self, stream: TcpStream, peer: IpAddr) -> Option<TcpStream> {
        // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        if self.allows(peer) {
            return Some(stream);
        }
        self.refuse(Reason::Forbidden, || {
            format!(
                "a client outside the allowlist ({peer}; allowed: {:?}) was answered 403",
                self.allowed
            )
        });
        forbid(stream, peer, &self.forbidden_writers);
        None
    }

    fn allows(&self, peer: IpAddr) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|n| n.contains(&peer))
    }

    /// Counts a refusal for `reason`; the first one of each reason is logged, with `why`.
    pub(crate) fn refuse(&self, reason: Reason, why: impl FnOnce() -> String) {
        self.stats.count(reason);
        let bit = 1u32 << (reason as u32);
        if self.logged.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            let why = why();
            tracing::warn!(
                reason = reason.label(),
                "porter-metrics: {why} (counted in {}{{reason=\"{}\"}}; logged once)",
                reason.family(),
                reason.label()
            );
        }
    }

    /// Counts an eviction, or a newcomer refused at the cap; the first one is logged.
    pub(crate) fn crowded(&self, reason: Reason) {
        self.refuse(reason, || {
            format!(
                "the listener is at its connection limit ({} connections, {} per address), \
                 closing idle connections",
                super::admission::MAX_CONNECTIONS,
                super::admission::MAX_PER_PEER
            )
        });
    }

    /// Why a request may not be served, if it may not: no or wrong basic-auth credentials
    /// (counted, and logged once).
    pub(crate) async fn authorize(&self, headers: &hyper::HeaderMap) -> Result<(), Reason> {
        #[cfg(feature = "tls")]
        if let Some(auth) = &self.auth {
            if let Err(reason) = auth.check(headers).await {
                self.refuse(reason, || {
                    match reason {
                        Reason::NoCredentials => "a request without credentials was answered 401",
                        Reason::AuthBusy => "too many password checks waited, answering 503",
                        _ => "a request with a wrong user or password was answered 401",
                    }
                    .to_owned()
                });
                return Err(reason);
            }
        }
        let _ = headers;
        Ok(())
    }

    /// Adds the web config's headers to an answer's.
    pub(crate) fn decorate(&self, headers: &mut hyper::HeaderMap) {
        #[cfg(feature = "tls")]
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        let _ = headers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_matches_networks_and_mapped_addresses() {
        let guard = Guard::new(vec!["10.0.0.0/8".parse().unwrap()], Arc::default());
        assert!(guard.allows("10.1.2.3".parse().unwrap()));
        assert!(guard.allows("::ffff:10.1.2.3".parse::<IpAddr>().unwrap().to_canonical()));
        assert!(!guard.allows("127.0.0.1".parse().unwrap()));
        assert!(Guard::new(Vec::new(), Arc::default()).allows("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn refusals_are_counted_every_time() {
        let stats = Arc::new(ConnectionStats::default());
        let guard = Guard::new(Vec::new(), stats.clone());
        let mut asked = 0;
        for _ in 0..3 {
            guard.refuse(Reason::Busy, || {
                asked += 1;
                String::new()
            });
        }
        assert_eq!(stats.get(Reason::Busy), 3);
        assert_eq!(asked, 1, "the reason is worded (and logged) once");
    }
}
