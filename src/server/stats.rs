//! What the listener refused or closed, by reason, for the self-metrics. One per server, so
//! the counts survive a stop and a start; never logged once per connection or request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::encode::ExtraFamily;
use crate::store::kind::Kind;

/// Why the listener refused a connection (`porter_metrics_connections_refused_total`) or
/// a request (`porter_metrics_scrapes_refused_total`), or closed one to make room
/// (`porter_metrics_connections_evicted_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A client outside the allowlist.
    Forbidden,
    /// A newcomer closed because every slot it could take had a request in flight.
    Full,
    /// Plain HTTP sent to a TLS port.
    Plaintext,
    /// No client certificate where one is required.
    NoCertificate,
    /// A client certificate that does not verify (unknown issuer, expired, bad signature).
    CertificateRefused,
    /// A client certificate without any of `client_allowed_sans`.
    SanNotAllowed,
    /// Any other failed TLS handshake (no common version or cipher, garbage, too slow).
    Handshake,
    /// An idle connection closed to make room at the cap.
    EvictedIdle,
    /// An idle connection closed because its address held its share of the slots.
    EvictedPerPeer,
    /// A scrape answered `503`: the renders in flight took too long.
    Busy,
    /// A request without basic-auth credentials, where they are required (`401`).
    NoCredentials,
    /// A request with a wrong user or password (`401`).
    BadPassword,
    /// A request whose password could not be checked in time: too many checks waited
    /// (`503`).
    AuthBusy,
}

impl Reason {
    const ALL: [Reason; 13] = [
        Reason::Forbidden,
        Reason::Full,
        Reason::Plaintext,
        Reason::NoCertificate,
        Reason::CertificateRefused,
        Reason::SanNotAllowed,
        Reason::Handshake,
        Reason::EvictedIdle,
        Reason::EvictedPerPeer,
        Reason::Busy,
        Reason::NoCredentials,
        Reason::BadPassword,
        Reason::AuthBusy,
    ];

    /// Its `reason` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::Forbidden => "forbidden",
            Reason::Full => "full",
            Reason::Plaintext => "plaintext",
            Reason::NoCertificate => "no_certificate",
            Reason::CertificateRefused => "certificate_refused",
            Reason::SanNotAllowed => "san_not_allowed",
            Reason::Handshake => "handshake",
            Reason::EvictedIdle => "idle",
            Reason::EvictedPerPeer => "per_peer",
            Reason::Busy => "busy",
            Reason::NoCredentials => "no_credentials",
            Reason::BadPassword => "bad_password",
            Reason::AuthBusy => "auth_busy",
        }
    }

    /// The family that counts it.
    pub(crate) fn family(self) -> &'static str {
        match self {
            Reason::EvictedIdle | Reason::EvictedPerPeer => {
                "porter_metrics_connections_evicted_total"
            }
            Reason::Busy | Reason::NoCredentials | Reason::BadPassword | Reason::AuthBusy => {
                "porter_metrics_scrapes_refused_total"
            }
            _ => "porter_metrics_connections_refused_total",
        }
    }

    fn is_tls(self) -> bool {
        matches!(
            self,
            Reason::Plaintext
                | Reason::NoCertificate
                | Reason::CertificateRefused
                | Reason::SanNotAllowed
                | Reason::Handshake
        )
    }

    fn is_auth(self) -> bool {
        matches!(
            self,
            Reason::NoCredentials | Reason::BadPassword | Reason::AuthBusy
        )
    }
}

/// The listener's counts; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ConnectionStats {
    counts: [AtomicU64; Reason::ALL.len()],
    /// Whether the TLS reasons apply (the server has a TLS config).
    tls: AtomicBool,
    /// Whether the basic-auth reasons apply.
    auth: AtomicBool,
    /// Certificate reloads that took, and that failed (the last good pair kept).
    reloads: [AtomicU64; 2],
    /// When the certificate served expires, in Unix seconds; 0 when unknown.
    not_after: AtomicU64,
}

impl ConnectionStats {
    /// Counts one refusal or eviction.
    pub(crate) fn count(&self, reason: Reason) {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many were counted for `reason`.
    pub(crate) fn get(&self, reason: Reason) -> u64 {
        self.counts[reason as usize].load(Ordering::Relaxed)
    }

    /// Shows the TLS and basic-auth reasons (at zero until counted) in the families.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn show(&self, tls: bool, auth: bool) {
        self.tls.store(tls, Ordering::Relaxed);
        self.auth.store(auth, Ordering::Relaxed);
    }

    /// Counts a certificate reload: one that took, or one that failed.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn reloaded(&self, took: bool) {
        self.reloads[usize::from(!took)].fetch_add(1, Ordering::Relaxed);
    }

    /// Sets when the certificate served expires.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn expires(&self, unix_seconds: u64) {
        self.not_after.store(unix_seconds, Ordering::Relaxed);
    }

    /// The counts as counter families, zeros included (the TLS and auth reasons when they
    /// apply).
    pub(crate) fn families(&self) -> Vec<ExtraFamily> {
        let (tls, auth) = (
            self.tls.load(Ordering::Relaxed),
            self.auth.load(Ordering::Relaxed),
        );
        let samples = |of: &[Reason]| {
            of.iter()
                .filter(|r| (tls || !r.is_tls()) && (auth || !r.is_auth()))
                .map(|r| (vec![("reason", r.label().to_owned())], self.get(*r) as f64))
                .collect()
        };
        let counter = |name, help, samples| ExtraFamily {
            name,
            help,
            kind: Kind::Counter,
            samples,
        };
        let mut families = vec![
            counter(
                Reason::Forbidden.family(),
                "Connections the metrics listener refused, by reason.",
                samples(&Reason::ALL[..7]),
            ),
            counter(
                Reason::EvictedIdle.family(),
                "Idle connections the metrics listener closed to make room, by reason.",
                samples(&Reason::ALL[7..9]),
            ),
            counter(
                Reason::Busy.family(),
                "Requests the metrics listener refused, by reason (503 busy and auth_busy, 401).",
                samples(&Reason::ALL[9..]),
            ),
        ];
        if tls {
            let outcome = |o: &str, c: &AtomicU64| {
                let labels = vec![("outcome", o.to_owned())];
                (labels, c.load(Ordering::Relaxed) as f64)
            };
            families.push(counter(
                "porter_metrics_tls_reloads_total",
                "Certificate and key files the metrics listener reloaded, by outcome (on error \
                 the last good pair is served).",
                vec![
                    outcome("ok", &self.reloads[0]),
                    outcome("error", &self.reloads[1]),
                ],
            ));
            families.push(ExtraFamily {
                name: "porter_metrics_tls_certificate_expiry_timestamp_seconds",
                help: "When the certificate the metrics listener serves expires (notAfter).",
                kind: Kind::Gauge,
                samples: vec![(Vec::new(), self.not_after.load(Ordering::Relaxed) as f64)],
            });
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(f: &ExtraFamily) -> Vec<(String, f64)> {
        f.samples
            .iter()
            .map(|(l, n)| (l[0].1.clone(), *n))
            .collect()
    }

    #[test]
    fn the_counts_are_families_zeros_included() {
        let stats = ConnectionStats::default();
        stats.count(Reason::EvictedIdle);
        stats.count(Reason::EvictedIdle);
        let families = stats.families();
        let [refused, evicted, busy] = families.as_slice() else {
            panic!("three families without TLS: {}", families.len());
        };
        let pair = |r: &str, n: f64| (r.to_owned(), n);
        assert_eq!(refused.name, "porter_metrics_connections_refused_total");
        assert_eq!(counts(refused), [pair("forbidden", 0.0), pair("full", 0.0)]);
        assert_eq!(evicted.name, "porter_metrics_connections_evicted_total");
        assert_eq!(counts(evicted), [pair("idle", 2.0), pair("per_peer", 0.0)]);
        assert_eq!(counts(busy), [pair("busy", 0.0)]);
    }

    #[test]
    fn tls_and_auth_reasons_show_when_they_apply() {
        let stats = ConnectionStats::default();
        stats.show(true, true);
        stats.count(Reason::SanNotAllowed);
        stats.count(Reason::BadPassword);
        stats.reloaded(false);
        let families = stats.families();
        // Each reason is in the family it names.
        for family in &families[..3] {
            for (labels, _) in &family.samples {
                let reason = Reason::ALL.iter().find(|r| r.label() == labels[0].1);
                assert_eq!(reason.map(|r| r.family()), Some(family.name));
            }
        }
        let refused = counts(&families[0]);
        assert_eq!(refused.len(), 7);
        assert!(refused.contains(&("san_not_allowed".to_owned(), 1.0)));
        assert!(counts(&families[2]).contains(&("bad_password".to_owned(), 1.0)));
        assert_eq!(
            counts(&families[3]),
            [("ok".to_owned(), 0.0), ("error".to_owned(), 1.0)]
        );
        assert_eq!(families.len(), 5);
    }
}
