//! The YAML of a web config file, read strictly: every key of exporter-toolkit's format,
//! and nothing else (serde-saphyr: no unsafe code, no panic on malformed input, a key twice
//! is an error, bounded work on anchors and nesting).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{ClientAuth, Pem, TlsServerConfig, TlsVersion, WebConfig, WebConfigError};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RateLimitFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct TlsFile {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct HttpFile {
    /// Read, and left: we serve HTTP/1.1, which every HTTP/2 client negotiates.
    #[serde(rename = "http2")]
    _http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RateLimitFile {
    interval: Option<String>,
    /// Read, and left: without an interval there is no rate limit.
    #[serde(rename = "burst")]
    _burst: Option<u64>,
}

/// Parses `text`; relative paths are joined to `dir`.
pub(super) fn parse(text: &str, dir: &Path) -> Result<WebConfig, WebConfigError> {
    let file: File = serde_saphyr::from_str(text).map_err(|e| WebConfigError::Syntax {
        message: e.to_string(),
    })?;
    if let Some(interval) = file.rate_limit.and_then(|r| r.interval) {
        if !is_zero(&interval) {
            return Err(WebConfigError::unsupported(
                "rate_limit.interval",
                interval,
                "porter-metrics has no rate limiter; its listener bounds connections and \
                 renders (set the interval to 0, or remove rate_limit)",
            ));
        }
    }
    let mut web = WebConfig::new();
    if let Some(tls) = file.tls_server_config {
        web.tls = tls_config(tls, dir)?;
    }
    for (user, hash) in file.basic_auth_users.unwrap_or_default() {
        web = web.basic_auth_user(user, hash);
    }
    let headers = file.http_server_config.and_then(|h| h.headers);
    for (name, value) in headers.unwrap_or_default() {
        // exporter-toolkit: "Unset if blank".
        if !value.is_empty() {
            web = web.header(name, value);
        }
    }
    Ok(web)
}

/// A Go duration of zero ("0", "0s", "0ms", ...).
fn is_zero(duration: &str) -> bool {
    let digits = duration
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !digits.is_empty() && digits.chars().all(|c| c == '0' || c == '.')
}

/// One of the inline text and the file, or neither; both is an error. Empty means unset,
/// as in exporter-toolkit.
fn pem(
    (inline_key, inline): (&'static str, Option<String>),
    (file_key, file): (&'static str, Option<String>),
    dir: &Path,
) -> Result<Option<Pem>, WebConfigError> {
    let inline = inline.filter(|s| !s.is_empty());
    let file = file.filter(|s| !s.is_empty());
    match (inline, file) {
        (Some(_), Some(path)) => Err(WebConfigError::invalid(
            file_key,
            path,
            &format!("set {inline_key} or {file_key}, not both"),
        )),
        (Some(text), None) => Ok(Some(Pem::Inline(text.into()))),
        (None, Some(path)) => Ok(Some(Pem::File(dir.join(path)))),
        (None, None) => Ok(None),
    }
}

fn version(key: &'static str, name: Option<String>) -> Result<Option<TlsVersion>, WebConfigError> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    match name.as_str() {
        "TLS12" => Ok(Some(TlsVersion::Tls12)),
        "TLS13" => Ok(Some(TlsVersion::Tls13)),
        "TLS10" | "TLS11" => Err(WebConfigError::unsupported(
            key,
            name,
            "rustls offers TLS12 and TLS13 only",
        )),
        _ => Err(WebConfigError::invalid(key, name, "one of TLS12, TLS13")),
    }
}

fn tls_config(file: TlsFile, dir: &Path) -> Result<Option<TlsServerConfig>, WebConfigError> {
    let cert = pem(("cert", file.cert), ("cert_file", file.cert_file), dir)?;
    let key = pem(("key", file.key), ("key_file", file.key_file), dir)?;
    let client_ca = pem(
        ("client_ca", file.client_ca),
        ("client_ca_file", file.client_ca_file),
        dir,
    )?;
    let client_auth = file.client_auth_type.unwrap_or_default();
    let others_set = file.min_version.is_some()
        || file.max_version.is_some()
        || file.cipher_suites.is_some()
        || file.curve_preferences.is_some()
        || file.client_allowed_sans.is_some()
        || file.prefer_server_cipher_suites.is_some();
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        // An empty section: plain HTTP, as with exporter-toolkit.
        (None, None) if client_ca.is_none() && client_auth.is_empty() && !others_set => {
            return Ok(None)
        }
        (None, _) => {
            return Err(WebConfigError::invalid(
                "cert_file",
                "",
                "tls_server_config needs a certificate: cert_file or cert",
            ))
        }
        (_, None) => {
            return Err(WebConfigError::invalid(
                "key_file",
                "",
                "tls_server_config needs a key: key_file or key",
            ))
        }
    };
    let mut tls = TlsServerConfig::with(cert, key);
    tls.client_auth = client_auth.parse::<ClientAuth>()?;
    tls.client_ca = client_ca;
    tls.allowed_sans = file.client_allowed_sans.unwrap_or_default();
    if let Some(min) = version("min_version", file.min_version)? {
        tls.min_version = min;
    }
    if let Some(max) = version("max_version", file.max_version)? {
        tls.max_version = max;
    }
    tls.cipher_suites = file.cipher_suites.unwrap_or_default();
    tls.curves = file.curve_preferences.unwrap_or_default();
    tls.prefer_server_cipher_suites = file.prefer_server_cipher_suites.unwrap_or(true);
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(yaml: &str) -> Result<WebConfig, WebConfigError> {
        parse(yaml, Path::new("/etc/metrics"))
    }

    #[test]
    fn every_key_of_the_format_is_read() {
        let web = parsed(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             client_allowed_sans: [a.example]\n  min_version: TLS13\n  max_version: TLS13\n  \
             cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  \
             prefer_server_cipher_suites: false\n  curve_preferences: [X25519]\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
             X-XSS-Protection: ''\n\
             basic_auth_users:\n  alice: $2y$10$x\n\
             rate_limit:\n  interval: 0s\n  burst: 3\n",
        )
        .expect("parses");
        let tls = web.tls.expect("tls");
        assert!(matches!(&tls.cert, Pem::File(p) if p == Path::new("/etc/metrics/server.crt")));
        assert!(matches!(&tls.key, Pem::File(p) if p == Path::new("/abs/server.key")));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert!(!tls.prefer_server_cipher_suites);
        assert_eq!((tls.curves.len(), tls.cipher_suites.len()), (1, 1));
        assert_eq!(tls.allowed_sans, ["a.example"]);
        // A blank header is unset.
        assert_eq!(
            web.headers,
            [("X-Frame-Options".to_owned(), "deny".to_owned())]
        );
        assert_eq!(web.users[0].0, "alice");
    }

    #[test]
    fn unknown_and_repeated_keys_and_wrong_types_are_syntax_errors() {
        for yaml in [
            "tls_server_config:\n  cert_fil: a\n",
            "basic_auth_user:\n  a: b\n",
            "basic_auth_users:\n  a: x\n  a: y\n",
            "tls_server_config:\n  cert_file: a\n  cert_file: b\n",
            "tls_server_config: [a]\n",
            "rate_limit:\n  burst: many\n",
            "a: [unclosed\n",
        ] {
            assert!(
                matches!(parsed(yaml), Err(WebConfigError::Syntax { .. })),
                "{yaml}"
            );
        }
    }

    #[test]
    fn what_cannot_be_honoured_is_an_error_naming_its_key() {
        let key = |yaml: &str| match parsed(yaml) {
            Err(WebConfigError::Invalid { key, .. } | WebConfigError::Unsupported { key, .. }) => {
                key
            }
            other => panic!("{yaml}: {other:?}"),
        };
        let tls = "tls_server_config:\n  cert_file: a\n  key_file: b\n";
        assert_eq!(key(&format!("{tls}  min_version: TLS10\n")), "min_version");
        assert_eq!(key(&format!("{tls}  max_version: TLS99\n")), "max_version");
        assert_eq!(
            key(&format!("{tls}  client_auth_type: Maybe\n")),
            "client_auth_type"
        );
        assert_eq!(key(&format!("{tls}  cert: inline\n")), "cert_file");
        assert_eq!(key("tls_server_config:\n  key_file: b\n"), "cert_file");
        assert_eq!(
            key("tls_server_config:\n  min_version: TLS13\n"),
            "cert_file"
        );
        assert_eq!(key("rate_limit:\n  interval: 1s\n"), "rate_limit.interval");
        // An empty section is plain HTTP, as in exporter-toolkit.
        assert!(parsed("tls_server_config: {}\n").is_ok_and(|w| w.tls.is_none()));
        assert!(parsed("").is_ok_and(|w| w.tls.is_none()));
    }

    #[test]
    fn zero_durations_are_recognised() {
        for zero in ["0", "0s", "0ms", "0.0s"] {
            assert!(is_zero(zero), "{zero}");
        }
        for not in ["1s", "10ms", "", "s"] {
            assert!(!is_zero(not), "{not}");
        }
    }
}
