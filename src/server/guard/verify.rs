//! The client-certificate checks of the TLS side (feature `tls`), as the web config's
//! `client_auth_type` and `client_allowed_sans` say.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use crate::web_config::{ClientAuth, TlsSettings};

/// The client-certificate verifier `settings` asks for, with the CAs `client_cas`.
pub(super) fn client_verifier(
    settings: &TlsSettings,
    client_cas: Vec<CertificateDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let provider = settings.provider.clone();
    let chain = |optional: bool| {
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
    let (chain, mandatory) = match settings.client_auth {
        ClientAuth::NoClientCert => return Ok(WebPkiClientVerifier::no_client_auth()),
        ClientAuth::RequestClientCert => (None, false),
        ClientAuth::RequireAnyClientCert => (None, true),
        ClientAuth::VerifyClientCertIfGiven => (Some(chain(true)?), false),
        ClientAuth::RequireAndVerifyClientCert => (Some(chain(false)?), true),
    };
    Ok(Arc::new(ClientCheck {
        chain,
        mandatory,
        allowed_sans: settings.allowed_sans.clone(),
        provider,
    }))
}

/// Checks a client certificate: its chain (unless any certificate will do:
/// `RequestClientCert`, `RequireAnyClientCert`), then its subject alternative names (if
/// `client_allowed_sans`); the handshake's signature always, so the client holds its key.
#[derive(Debug)]
struct ClientCheck {
    /// Verifies the chain against the client CAs.
    chain: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    /// A certificate must carry one of them, exactly (DNS, IP, e-mail or URI, as
    /// exporter-toolkit compares them); any when empty.
    allowed_sans: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ClientCheck {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.as_ref().map_or(&[], |c| c.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_client_cert(end_entity, intermediates, now)?;
        }
        if self.allowed_sans.is_empty() {
            return Ok(ClientCertVerified::assertion());
        }
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match sans(&cert)
            .iter()
            .any(|san| self.allowed_sans.contains(san))
        {
            true => Ok(ClientCertVerified::assertion()),
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
