//! Push over TLS: a target's CA (the system's roots unless set), client certificate and
//! key (mutual TLS) and server name, read from PEM with `rustls-pki-types` when set, and
//! the rustls client configuration made of them when pushing starts.

use std::sync::Arc;

use hyper_rustls::ConfigBuilderExt;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::Error;

/// A client certificate chain and its key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A target's TLS settings; see the module documentation.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    /// The CAs to check the receiver's certificate against, instead of the system's.
    roots: Option<Arc<[CertificateDer<'static>]>>,
    client: Option<Arc<Identity>>,
    /// The name to check the receiver's certificate for (and to send as SNI), instead of
    /// the URL's host.
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_certificates", &self.roots.as_ref().map(|r| r.len()))
            .field("client_certificate", &self.client.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

fn invalid(
    what: &'static str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::PushTls {
        what,
        source: source.into(),
    }
}

/// The crypto provider: the application's process default if it installed one, else
/// *ring* (the provider this crate enables).
fn provider() -> Arc<CryptoProvider> {
    if let Some(installed) = CryptoProvider::get_default() {
        return installed.clone();
    }
    // rustls 0.23.48 deprecates its *ring* provider for want of post-quantum key exchange;
    // its replacement (aws-lc-rs) is a C build this crate does not impose. An application
    // that wants it installs it as the process default, which is taken above.
    #[allow(deprecated)]
    let ring = rustls::crypto::ring::default_provider();
    Arc::new(ring)
}

impl Tls {
    /// The client configuration of these settings.
    ///
    /// Fails with [`Error::Tls`] if the system has no usable root certificates (and no CA
    /// was set), with [`Error::PushTls`] if rustls refuses the client key.
    pub(crate) fn config(&self) -> Result<ClientConfig, Error> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("protocol versions", e))?;
        let builder = match &self.roots {
            Some(roots) => {
                let mut store = RootCertStore::empty();
                for root in roots.iter() {
                    store
                        .add(root.clone())
                        .map_err(|e| invalid("CA certificate", e))?;
                }
                builder.with_root_certificates(store)
            }
            None => builder.with_native_roots().map_err(Error::Tls)?,
        };
        match &self.client {
            Some(client) => builder
                .with_client_auth_cert(client.chain.clone(), client.key.clone_key())
                .map_err(|e| invalid("client certificate", e)),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

impl Tls {
    /// Trusts the CAs of `pem` instead of the system's roots.
    pub(crate) fn set_ca(&mut self, pem: &[u8]) -> Result<(), Error> {
        let roots = certificates(pem, "CA certificate")?;
        let mut store = RootCertStore::empty();
        for root in &roots {
            store
                .add(root.clone())
                .map_err(|e| invalid("CA certificate", e))?;
        }
        self.roots = Some(roots.into());
        Ok(())
    }

    /// Presents the client certificate `chain` with `key`, checked now against a
    /// configuration that trusts nothing: a pair rustls refuses is an error here, not at
    /// the first push.
    pub(crate) fn set_client(&mut self, chain: &[u8], key: &[u8]) -> Result<(), Error> {
        let chain = certificates(chain, "client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid("client key", e))?;
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("protocol versions", e))?
            .with_root_certificates(RootCertStore::empty())
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| invalid("client certificate", e))?;
        self.client = Some(Arc::new(Identity { chain, key }));
        Ok(())
    }

    /// Checks the receiver's certificate for `name` instead of the URL's host.
    pub(crate) fn set_server_name(&mut self, name: &str) -> Result<(), Error> {
        let name = ServerName::try_from(name.to_owned()).map_err(|e| invalid("server name", e))?;
        self.server_name = Some(name);
        Ok(())
    }
}

/// The certificates of `pem`, at least one.
fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, e))?;
    if certificates.is_empty() {
        return Err(invalid(what, "no certificate in the PEM text"));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_pem_and_names_are_refused_when_set() {
        let bad_pem = "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
        for bad in ["", "not pem", bad_pem] {
            let mut tls = Tls::default();
            let refused = tls.set_ca(bad.as_bytes());
            assert!(matches!(refused, Err(Error::PushTls { .. })), "{bad:?}");
            assert!(tls.set_client(bad.as_bytes(), bad.as_bytes()).is_err());
        }
        let mut tls = Tls::default();
        assert!(tls.set_server_name("not a name!").is_err());
        tls.set_server_name("receiver.internal")
            .expect("a DNS name");
        assert!(format!("{tls:?}").contains("receiver.internal"));
        assert!(tls.set_server_name("127.0.0.1").is_ok());
    }
}
