//! The TLS side of the guard (feature `tls`): the handshake, with its client-certificate
//! checks as the web config's `client_auth_type` and `client_allowed_sans` say, and each
//! refusal counted by its reason (no certificate, a certificate refused, a SAN not allowed,
//! plain HTTP, any other failed handshake).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::rotation::{Rotating, POLL};
use super::Guard;
use crate::server::admission::Tracked;
use crate::server::stats::{ConnectionStats, Reason};
use crate::web_config::{ClientAuth, TlsSettings};
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

/// The client-certificate verifier `settings` asks for, with the CAs `client_cas`.
pub(super) fn client_verifier(
    settings: &TlsSettings,
    client_cas: Vec<CertificateDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let provider = settings.provider.clone();
    let verified = |optional: bool| {
        let mut roots = RootCertStore::empty();
        for ca in client_cas {
            roots.add(ca).map_err(|e| format!("not a usable CA: {e}"))?;
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder.build().map_err(|e| format!("no usable CA: {e}"))
    };
    let any = |mandatory| {
        Arc::new(AnyCertificate {
            mandatory,
            provider: provider.clone(),
        })
    };
    let verifier: Arc<dyn ClientCertVerifier> = match settings.client_auth {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert => any(false),
        ClientAuth::RequireAnyClientCert => any(true),
        ClientAuth::VerifyClientCertIfGiven => verified(true)?,
        ClientAuth::RequireAndVerifyClientCert => verified(false)?,
    };
    Ok(match settings.allowed_sans.is_empty() {
        true => verifier,
        false => Arc::new(AllowedSans {
            inner: verifier,
            allowed: settings.allowed_sans.clone(),
        }),
    })
}

/// Takes any client certificate, unverified (`RequestClientCert`, `RequireAnyClientCert`);
/// the handshake's signature is still checked, so the client holds its key.
#[derive(Debug)]
struct AnyCertificate {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// After `inner`, a client certificate must carry one of `allowed` as a subject alternative
/// name, exactly (DNS, IP, e-mail or URI, as exporter-toolkit compares them).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match sans(&cert).iter().any(|san| self.allowed.contains(san)) {
            true => Ok(verified),
            false => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A certificate's DNS, IP, e-mail and URI subject alternative names, as text (IP addresses
/// as Go prints them).
fn sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(extension)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some((*s).to_owned())
            }
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                _ => None,
            }
            .map(|ip| ip.to_canonical().to_string()),
            _ => None,
        })
        .collect()
}
