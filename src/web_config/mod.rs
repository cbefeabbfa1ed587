//! The web config of Prometheus' exporter-toolkit (feature `tls`): the file every official
//! exporter takes as `--web.config.file`, which puts the endpoint behind TLS, client
//! certificates and bcrypt basic auth. Operators reuse the files they have:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths are relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt
//!   client_allowed_sans: [prometheus.example.org]
//!   min_version: TLS12
//! basic_auth_users:
//!   prometheus: $2y$10$...         # htpasswd -nBC 10 "" | tr -d ':\n'
//! http_server_config:
//!   headers:
//!     X-Content-Type-Options: nosniff
//! ```
//!
//! Every key of the format is read; an unknown key (a typo), a key twice, or a value
//! porter-metrics cannot honour is an error when the config is read, never ignored:
//!
//! | key | porter-metrics |
//! |---|---|
//! | `cert`/`cert_file`, `key`/`key_file` | one of each; files are watched, and a replaced pair is served to new connections within two seconds (a bad pair keeps the last good one, counted in `porter_metrics_tls_reloads_total{outcome="error"}` and logged once) |
//! | `client_auth_type` | `NoClientCert`, `RequestClientCert`, `RequireAnyClientCert` (or `RequireClientCert`), `VerifyClientCertIfGiven`, `RequireAndVerifyClientCert`; the last two need `client_ca_file` or `client_ca` |
//! | `client_allowed_sans` | a presented certificate must carry one of them, exactly (DNS, IP, e-mail or URI) |
//! | `min_version`, `max_version` | `TLS12`, `TLS13` (rustls offers no older version: `TLS10`, `TLS11` are an error) |
//! | `cipher_suites` | Go's names of the suites rustls offers (ECDHE with AES-GCM or ChaCha20-Poly1305); a CBC or RSA-key-exchange suite is an error |
//! | `curve_preferences` | `X25519`, `CurveP256`, `CurveP384` (`CurveP521` is an error) |
//! | `prefer_server_cipher_suites` | honoured (default `true`) |
//! | `basic_auth_users` | bcrypt hashes, checked when read |
//! | `http_server_config.headers` | the five headers exporter-toolkit allows, with its values |
//! | `http_server_config.http2` | accepted; porter-metrics serves HTTP/1.1 (clients negotiate it) |
//! | `rate_limit` | an error unless its `interval` is 0 (off): the listener bounds connections and renders itself |
//!
//! The web config itself is read when set ([`Builder::web_config_file`]); the certificate,
//! key and CA files it names when the server starts, and again when they change.

mod check;
mod error;
mod file;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use check::{Checked, TlsSettings};
pub use error::WebConfigError;

use crate::{Builder, Error};

/// An endpoint's security settings, as exporter-toolkit's web config file has them: read
/// one with [`from_file`](Self::from_file), or set the values; then give it to
/// [`Builder::web_config`]. See the [module documentation](self) for every key.
///
/// ```
/// use porter_metrics::web_config::{ClientAuth, TlsServerConfig, TlsVersion};
/// use porter_metrics::{MetricsServer, WebConfig};
///
/// # fn main() -> Result<(), porter_metrics::Error> {
/// let web = WebConfig::new()
///     .tls(
///         TlsServerConfig::files("/etc/metrics/server.crt", "/etc/metrics/server.key")
///             .client_auth(ClientAuth::RequireAndVerifyClientCert)
///             .client_ca_file("/etc/metrics/clients-ca.crt")
///             .min_version(TlsVersion::Tls13),
///     )
///     .basic_auth_user(
///         "prometheus",
///         "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi",
///     );
/// let server = MetricsServer::builder().web_config(web)?.build("127.0.0.1:0");
/// # let _ = server;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct WebConfig {
    tls: Option<TlsServerConfig>,
    /// User and bcrypt hash.
    users: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("WebConfig")
            .field("tls", &self.tls)
            .field("basic_auth_users", &users)
            .field("headers", &self.headers)
            .finish()
    }
}

impl WebConfig {
    /// No TLS, no basic auth, no headers: plain HTTP, as without a web config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads an exporter-toolkit web config file; relative paths in it are relative to its
    /// directory.
    ///
    /// # Errors
    /// [`WebConfigError::Read`] if the file cannot be read, and as
    /// [`from_yaml`](Self::from_yaml).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, WebConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            key: "web config",
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_yaml(&text, dir)
    }

    /// Reads a web config from YAML text; relative paths are relative to `dir`.
    ///
    /// ```
    /// let web = porter_metrics::WebConfig::from_yaml(
    ///     "basic_auth_users:\n  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n",
    ///     ".",
    /// )?;
    /// # Ok::<(), porter_metrics::WebConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`WebConfigError::Syntax`] (YAML, unknown or repeated keys, wrong types),
    /// [`WebConfigError::Unsupported`], [`WebConfigError::Invalid`],
    /// [`WebConfigError::Bcrypt`].
    pub fn from_yaml(text: &str, dir: impl AsRef<Path>) -> Result<Self, WebConfigError> {
        let web = file::parse(text, dir.as_ref())?;
        // Checked now, so that a bad file fails where it is read.
        web.check()?;
        Ok(web)
    }

    /// Serves over TLS, as `tls` says.
    pub fn tls(mut self, tls: TlsServerConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Requires basic auth, and allows `user` with the password whose bcrypt hash is
    /// `bcrypt_hash` (set again, a user's hash is replaced).
    pub fn basic_auth_user(
        mut self,
        user: impl Into<String>,
        bcrypt_hash: impl Into<String>,
    ) -> Self {
        let user = user.into();
        self.users.retain(|(u, _)| *u != user);
        self.users.push((user, bcrypt_hash.into()));
        self
    }

    /// Adds a header to every answer: one of `Strict-Transport-Security`,
    /// `X-Content-Type-Options` (`nosniff`), `X-Frame-Options` (`deny`, `sameorigin`),
    /// `X-XSS-Protection`, `Content-Security-Policy`, as exporter-toolkit allows.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    /// The settings checked and resolved for the listener.
    pub(crate) fn check(&self) -> Result<Checked, WebConfigError> {
        check::check(self)
    }
}

/// Where a certificate, key or CA comes from: a file (watched), or PEM text.
#[derive(Clone)]
pub(crate) enum Pem {
    File(PathBuf),
    Inline(Arc<str>),
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::File(path) => path.fmt(f),
            // A key is a secret: its text is never printed.
            Pem::Inline(text) => write!(f, "<inline PEM, {} bytes>", text.len()),
        }
    }
}

/// Which client certificates the endpoint asks for, and checks (Go's `tls.ClientAuthType`,
/// by its name in the web config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// None asked for (the default).
    #[default]
    NoClientCert,
    /// Asked for, not required, not verified.
    RequestClientCert,
    /// Required, not verified against a CA (only `client_allowed_sans` checks it).
    RequireAnyClientCert,
    /// Verified against the client CA if given; a client without one is served.
    VerifyClientCertIfGiven,
    /// Required and verified against the client CA: the setting for client authentication.
    RequireAndVerifyClientCert,
}

impl std::str::FromStr for ClientAuth {
    type Err = WebConfigError;

    fn from_str(name: &str) -> Result<Self, WebConfigError> {
        Ok(match name {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // The second one is kept by exporter-toolkit for older files.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => {
                return Err(WebConfigError::invalid(
                    "client_auth_type",
                    name,
                    "one of NoClientCert, RequestClientCert, RequireAnyClientCert, \
                     VerifyClientCertIfGiven, RequireAndVerifyClientCert",
                ))
            }
        })
    }
}

/// A TLS version; rustls offers 1.2 and 1.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (`TLS12`).
    Tls12,
    /// TLS 1.3 (`TLS13`).
    Tls13,
}

/// The `tls_server_config` of a web config: the endpoint's certificate and key, and what it
/// asks of clients.
#[derive(Clone, Debug)]
pub struct TlsServerConfig {
    pub(crate) cert: Pem,
    pub(crate) key: Pem,
    pub(crate) client_auth: ClientAuth,
    pub(crate) client_ca: Option<Pem>,
    pub(crate) allowed_sans: Vec<String>,
    pub(crate) min_version: TlsVersion,
    pub(crate) max_version: TlsVersion,
    pub(crate) cipher_suites: Vec<String>,
    pub(crate) curves: Vec<String>,
    pub(crate) prefer_server_cipher_suites: bool,
}

impl TlsServerConfig {
    fn with(cert: Pem, key: Pem) -> Self {
        Self {
            cert,
            key,
            client_auth: ClientAuth::NoClientCert,
            client_ca: None,
            allowed_sans: Vec::new(),
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            cipher_suites: Vec::new(),
            curves: Vec::new(),
            prefer_server_cipher_suites: true,
        }
    }

    /// The certificate (chain) and key in PEM files, watched: replaced files are served to
    /// new connections within two seconds.
    pub fn files(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self::with(Pem::File(cert_file.into()), Pem::File(key_file.into()))
    }

    /// The certificate (chain) and key as PEM text.
    pub fn inline(cert: &str, key: &str) -> Self {
        Self::with(Pem::Inline(cert.into()), Pem::Inline(key.into()))
    }

    /// Which client certificates are asked for and checked (default: none).
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// The CAs that client certificates are verified against, in a PEM file (watched).
    pub fn client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(Pem::File(path.into()));
        self
    }

    /// The same, as PEM text.
    pub fn client_ca(mut self, pem: &str) -> Self {
        self.client_ca = Some(Pem::Inline(pem.into()));
        self
    }

    /// A client certificate must carry one of these subject alternative names, exactly.
    pub fn client_allowed_sans<S: Into<String>>(
        mut self,
        sans: impl IntoIterator<Item = S>,
    ) -> Self {
        self.allowed_sans = sans.into_iter().map(Into::into).collect();
        self
    }

    /// The oldest TLS version served (default 1.2).
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }

    /// The newest TLS version served (default 1.3).
    pub fn max_version(mut self, version: TlsVersion) -> Self {
        self.max_version = version;
        self
    }

    /// The TLS 1.2 cipher suites, by Go's names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, ...),
    /// in order of preference.
    pub fn cipher_suites<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.cipher_suites = names.into_iter().map(Into::into).collect();
        self
    }

    /// The key-exchange curves, by Go's names (`X25519`, `CurveP256`, `CurveP384`), in order
    /// of preference.
    pub fn curve_preferences<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Self {
        self.curves = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the server's order of cipher suites wins over the client's (default `true`).
    pub fn prefer_server_cipher_suites(mut self, prefer: bool) -> Self {
        self.prefer_server_cipher_suites = prefer;
        self
    }
}

impl Builder {
    /// Secures the endpoint with an exporter-toolkit web config file (feature `tls`): TLS,
    /// client certificates, basic auth, headers; see [`web_config`](crate::web_config).
    /// The file is read and checked now; the certificates it names when the server starts.
    ///
    /// # Errors
    /// [`Error::WebConfig`] if the file cannot be read, or holds anything porter-metrics
    /// would not honour.
    pub fn web_config_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        self.web_config(WebConfig::from_file(path)?)
    }

    /// Secures the endpoint as `web` says (feature `tls`); see [`WebConfig`].
    ///
    /// # Errors
    /// [`Error::WebConfig`] if a value cannot be honoured.
    pub fn web_config(mut self, web: WebConfig) -> Result<Self, Error> {
        self.config.web = Some(Arc::new(web.check()?));
        Ok(self)
    }
}
