//! Why a web config cannot be used.

use std::path::PathBuf;

/// Why a web config (a file, or values) cannot be used: each names the key at fault.
///
/// ```
/// use porter_metrics::{WebConfig, WebConfigError};
///
/// let typo = WebConfig::from_yaml("tls_server_config:\n  cert_fil: a.crt\n", ".");
/// assert!(matches!(typo, Err(WebConfigError::Syntax { .. })));
/// let old = WebConfig::from_yaml(
///     "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS10\n",
///     ".",
/// );
/// assert!(matches!(old, Err(WebConfigError::Unsupported { key: "min_version", .. })));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebConfigError {
    /// A file (the web config, a certificate, a key, a CA) could not be read.
    #[error("cannot read {key} {path:?}")]
    Read {
        /// The key that names the file (`web config` for the web config itself).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The YAML does not parse, has a key the format does not have (a typo), a key twice,
    /// or a value of the wrong type. The message names the line and the key.
    #[error("the web config is not valid YAML of exporter-toolkit's format: {message}")]
    Syntax {
        /// What the YAML parser says.
        message: String,
    },

    /// A value of the format that porter-metrics cannot honour (TLS 1.0, a cipher suite or
    /// curve that rustls does not offer, a rate limit).
    #[error("{key}: {value:?} is not supported: {reason}")]
    Unsupported {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// Why, and what is.
        reason: String,
    },

    /// A value the format does not allow, or settings that contradict each other.
    #[error("{key}: {value:?} is not allowed: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// Why, and what is.
        reason: String,
    },

    /// A `basic_auth_users` entry is not a bcrypt hash.
    #[error("basic_auth_users: the password of {user:?} is not a bcrypt hash")]
    Bcrypt {
        /// The user.
        user: String,
        /// Why it does not parse.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A certificate, key or CA does not hold what it must (PEM that does not parse, no
    /// certificate, a key of another certificate, an unusable key).
    #[error("{key}{}: {reason}", path.as_ref().map(|p| format!(" {p:?}")).unwrap_or_default())]
    Pem {
        /// The key (`cert_file`, `cert`, `key_file`, `client_ca_file`, ...).
        key: &'static str,
        /// The file, unless inline.
        path: Option<PathBuf>,
        /// What is wrong with it.
        reason: String,
    },
}

impl WebConfigError {
    pub(crate) fn invalid(key: &'static str, value: impl Into<String>, reason: &str) -> Self {
        Self::Invalid {
            key,
            value: value.into(),
            reason: reason.to_owned(),
        }
    }

    pub(crate) fn unsupported(key: &'static str, value: impl Into<String>, reason: &str) -> Self {
        Self::Unsupported {
            key,
            value: value.into(),
            reason: reason.to_owned(),
        }
    }
}
