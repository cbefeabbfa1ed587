//! The TLS side of the guard (feature `tls`): the handshake, with the client-certificate
//! checks of [`verify`](super::verify) and the certificates of [`rotation`](super::rotation),
//! and each refusal counted by its reason (no certificate, a certificate refused, a SAN not
//! allowed, plain HTTP, any other failed handshake).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::CertificateError;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::rotation::{Rotating, POLL};
use super::Guard;
use crate::server::admission::Tracked;
use crate::server::stats::{ConnectionStats, Reason};
use crate::web_config::TlsSettings;
use crate::Error;

/// The first byte of every TLS connection (a handshake record).
const HANDSHAKE_RECORD: u8 = 0x16;

/// What plain HTTP sent to the TLS port gets, as Go's servers answer it.
const PLAINTEXT: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// See the module documentation.
pub(crate) struct Tls {
    rotating: Arc<Rotating>,
}

impl Tls {
    /// Loads the certificate, key and client CA `settings` names.
    pub(crate) fn load(settings: &TlsSettings, stats: Arc<ConnectionStats>) -> Result<Self, Error> {
        let rotating = Rotating::load(settings.clone(), stats)?;
        Ok(Self {
            rotating: Arc::new(rotating),
        })
    }

    /// Watches the files on the listener's runtime until the returned task is dropped.
    pub(crate) fn watch(&self) -> Option<Watching> {
        if !self.rotating.has_files() {
            return None;
        }
        let rotating = self.rotating.clone();
        Some(Watching(tokio::spawn(async move {
            let mut every = tokio::time::interval(POLL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let rotating = rotating.clone();
                // File reads and a rebuild: off the listener's thread.
                let _ = tokio::task::spawn_blocking(move || rotating.poll()).await;
            }
        })))
    }

    /// Runs the handshake within `timeout`; the stream, or `None` once refused (counted by
    /// reason, plain HTTP answered `400`).
    pub(in crate::server) async fn handshake(
        &self,
        io: Tracked,
        guard: &Guard,
        timeout: Duration,
    ) -> Option<TlsStream<Tracked>> {
        let peer = io.stream.peer_addr().ok().map(|a| a.ip().to_canonical());
        let refuse = |reason| guard.refuse(reason, || refusal(reason, peer));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(deadline, io.stream.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            // Closed before a byte (a port check): nothing to count.
            Ok(_) => return None,
            Err(_) => {
                refuse(Reason::Handshake);
                return None;
            }
        }
        if first[0] != HANDSHAKE_RECORD {
            if first[0].is_ascii_alphabetic() {
                refuse(Reason::Plaintext);
                let answer = super::forbidden::write_and_close(io.stream, PLAINTEXT);
                let _ = tokio::time::timeout_at(deadline, answer).await;
            } else {
                refuse(Reason::Handshake);
            }
            return None;
        }
        let acceptor = TlsAcceptor::from(self.rotating.current());
        match tokio::time::timeout_at(deadline, acceptor.accept(io)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                refuse(classify(&e));
                None
            }
            Err(_) => {
                refuse(Reason::Handshake);
                None
            }
        }
    }
}

/// The file watch of a running listener; ends when dropped.
pub(crate) struct Watching(tokio::task::JoinHandle<()>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The refusal's reason, from the handshake's error.
fn classify(error: &std::io::Error) -> Reason {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::NoCertificatesPresented) => Reason::NoCertificate,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )) => Reason::SanNotAllowed,
        Some(rustls::Error::InvalidCertificate(_)) => Reason::CertificateRefused,
        _ => Reason::Handshake,
    }
}

fn refusal(reason: Reason, peer: Option<IpAddr>) -> String {
    let peer = peer.map_or_else(|| "a client".to_owned(), |p| p.to_string());
    let what = match reason {
        Reason::Plaintext => "sent plain HTTP to the TLS port (answered 400)",
        Reason::NoCertificate => "sent no client certificate",
        Reason::CertificateRefused => "sent a client certificate that does not verify",
        Reason::SanNotAllowed => "sent a client certificate without an allowed SAN",
        _ => "failed its TLS handshake",
    };
    format!("{peer} {what}; its connection was closed")
}
