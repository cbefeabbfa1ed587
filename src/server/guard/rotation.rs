//! The certificate, key and client CA a TLS listener serves, reloaded without a restart:
//! every [`POLL`] the files are read again (a few kilobytes), and once a change has held
//! for one poll (so that a certificate written before its key is not taken alone), a new
//! TLS config is built and served to new connections. A pair that does not load keeps the
//! last good one, and is counted (`porter_metrics_tls_reloads_total{outcome="error"}`) and
//! logged once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;

use super::verify::client_verifier;
use crate::server::stats::ConnectionStats;
use crate::web_config::{Pem, TlsSettings, WebConfigError};

/// How often the files are read again.
pub(super) const POLL: Duration = Duration::from_secs(1);

/// Each source's bytes, in the order of [`sources`].
type Contents = Vec<Vec<u8>>;

/// The sources' contents the current config was built from, and those read at the last
/// poll.
struct Seen {
    built: Contents,
    last: Contents,
}

/// What the listener serves now, and how to make it again.
pub(super) struct Rotating {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    seen: Mutex<Seen>,
    stats: Arc<ConnectionStats>,
    /// Whether a failed reload was logged.
    logged: AtomicBool,
}

impl Rotating {
    /// Loads what `settings` names.
    pub(super) fn load(
        settings: TlsSettings,
        stats: Arc<ConnectionStats>,
    ) -> Result<Self, WebConfigError> {
        let contents = read(&settings)?;
        let config = build(&settings, &contents, &stats)?;
        Ok(Self {
            settings,
            current: RwLock::new(config),
            seen: Mutex::new(Seen {
                built: contents.clone(),
                last: contents,
            }),
            stats,
            logged: AtomicBool::new(false),
        })
    }

    /// The config a new connection gets.
    pub(super) fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether any of it is in files (and so worth watching).
    pub(super) fn has_files(&self) -> bool {
        sources(&self.settings).any(|(_, pem)| matches!(pem, Pem::File(_)))
    }

    /// Reads the files; builds and serves a new config if they changed and held since the
    /// last poll. Blocking (file reads).
    pub(super) fn poll(&self) {
        let contents = match read(&self.settings) {
            Ok(contents) => contents,
            Err(e) => return self.failed(&e),
        };
        let changed = {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let stable = contents == seen.last;
            seen.last = contents.clone();
            let changed = stable && contents != seen.built;
            if changed {
                // Tried once per change, whether it loads or not.
                seen.built = contents.clone();
            }
            changed
        };
        if !changed {
            return;
        }
        match build(&self.settings, &contents, &self.stats) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
                self.stats.reloaded(true);
                tracing::info!("porter-metrics: serving the replaced TLS certificate");
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&self, error: &WebConfigError) {
        self.stats.reloaded(false);
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %error,
                "porter-metrics: the replaced TLS files do not load, serving the last good \
                 pair (counted in porter_metrics_tls_reloads_total{{outcome=\"error\"}}; \
                 logged once)"
            );
        }
    }
}

/// The certificate, the key and the client CA, by the key that names them.
fn sources(settings: &TlsSettings) -> impl Iterator<Item = (&'static str, &Pem)> {
    let ca = settings.client_ca.iter().map(|pem| ("client_ca", pem));
    [("cert", &settings.cert), ("key", &settings.key)]
        .into_iter()
        .chain(ca)
}

/// Each source's bytes.
fn read(settings: &TlsSettings) -> Result<Contents, WebConfigError> {
    sources(settings)
        .map(|(key, pem)| match pem {
            Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
            Pem::File(path) => std::fs::read(path).map_err(|source| WebConfigError::Read {
                key: file_key(key),
                path: path.clone(),
                source,
            }),
        })
        .collect()
}

fn file_key(key: &'static str) -> &'static str {
    match key {
        "cert" => "cert_file",
        "key" => "key_file",
        _ => "client_ca_file",
    }
}

/// A TLS config from the sources' bytes (as [`read`] gives them); sets when its certificate
/// expires in `stats`.
fn build(
    settings: &TlsSettings,
    contents: &[Vec<u8>],
    stats: &ConnectionStats,
) -> Result<Arc<ServerConfig>, WebConfigError> {
    let pem_error = |key: &'static str, reason: String| {
        let (pem, key) = match key {
            "cert" => (&settings.cert, key),
            "key" => (&settings.key, key),
            _ => (
                settings.client_ca.as_ref().unwrap_or(&settings.cert),
                "client_ca",
            ),
        };
        match pem {
            Pem::File(path) => WebConfigError::Pem {
                key: file_key(key),
                path: Some(path.clone()),
                reason,
            },
            Pem::Inline(_) => WebConfigError::Pem {
                key,
                path: None,
                reason,
            },
        }
    };
    let certs = |key: &'static str, bytes: &[u8]| {
        let certs = CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(key, format!("not PEM certificates: {e}")))?;
        match certs.is_empty() {
            true => Err(pem_error(key, "no certificate in it".into())),
            false => Ok(certs),
        }
    };
    let [cert, key, ca @ ..] = contents else {
        return Err(pem_error("cert", "missing".into()));
    };
    let chain = certs("cert", cert)?;
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| pem_error("key", format!("not a PEM private key: {e}")))?;
    let client_cas = match ca.first() {
        Some(ca) => certs("client_ca", ca)?,
        None => Vec::new(),
    };
    let verifier =
        client_verifier(settings, client_cas).map_err(|reason| pem_error("client_ca", reason))?;
    let not_after = chain
        .first()
        .and_then(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, c)| c.validity().not_after.timestamp());
    let mut config = ServerConfig::builder_with_provider(settings.provider.clone())
        .with_protocol_versions(&settings.versions)
        .map_err(|e| pem_error("cert", format!("no usable TLS version: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| pem_error("key", format!("does not go with the certificate: {e}")))?;
    config.ignore_client_order = settings.prefer_server_order;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    stats.expires(not_after.map_or(0, |t| u64::try_from(t).unwrap_or(0)));
    Ok(Arc::new(config))
}
