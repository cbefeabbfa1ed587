//! A web config checked and resolved for the listener: every value honoured or refused,
//! names mapped to what rustls offers, hashes and headers parsed.

use std::str::FromStr;
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use rustls::crypto::{ring, CryptoProvider, SupportedKxGroup};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use super::{ClientAuth, Pem, TlsServerConfig, TlsVersion, WebConfig, WebConfigError};

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) tls: Option<TlsSettings>,
    /// User and bcrypt hash.
    pub(crate) users: Vec<(String, String)>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

/// The TLS side, resolved.
#[derive(Clone, Debug)]
pub(crate) struct TlsSettings {
    pub(crate) cert: Pem,
    pub(crate) key: Pem,
    pub(crate) client_auth: ClientAuth,
    pub(crate) client_ca: Option<Pem>,
    pub(crate) allowed_sans: Vec<String>,
    pub(crate) versions: Vec<&'static SupportedProtocolVersion>,
    /// ring, with the cipher suites and curves asked for.
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) prefer_server_order: bool,
}

/// The headers exporter-toolkit lets a web config set, and the values it allows (any when
/// empty).
const HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Go's names of the cipher suites it calls secure, and the ring provider's suite for each
/// (`None`: Go has it, rustls does not).
fn suite(name: &str) -> Option<Option<SupportedCipherSuite>> {
    use ring::cipher_suite as s;
    Some(match name {
        "TLS_AES_128_GCM_SHA256" => Some(s::TLS13_AES_128_GCM_SHA256),
        "TLS_AES_256_GCM_SHA384" => Some(s::TLS13_AES_256_GCM_SHA384),
        "TLS_CHACHA20_POLY1305_SHA256" => Some(s::TLS13_CHACHA20_POLY1305_SHA256),
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            Some(s::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            Some(s::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            Some(s::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => Some(s::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => Some(s::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            Some(s::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA" => None,
        _ => return None,
    })
}

/// Go's names of the curves exporter-toolkit takes, and the ring provider's group for each.
fn curve(name: &str) -> Option<Option<&'static dyn SupportedKxGroup>> {
    use ring::kx_group as k;
    Some(match name {
        "X25519" => Some(k::X25519),
        "CurveP256" => Some(k::SECP256R1),
        "CurveP384" => Some(k::SECP384R1),
        "CurveP521" => None,
        _ => return None,
    })
}

pub(super) fn check(web: &WebConfig) -> Result<Checked, WebConfigError> {
    let tls = web.tls.as_ref().map(tls).transpose()?;
    for (user, hash) in &web.users {
        bcrypt::HashParts::from_str(hash).map_err(|e| WebConfigError::Bcrypt {
            user: user.clone(),
            source: Box::new(e),
        })?;
    }
    let headers = web
        .headers
        .iter()
        .map(|(name, value)| header(name, value))
        .collect::<Result<_, _>>()?;
    Ok(Checked {
        tls,
        users: web.users.clone(),
        headers,
    })
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), WebConfigError> {
    let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| *n == name) else {
        return Err(WebConfigError::invalid(
            "http_server_config.headers",
            name,
            "one of Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, \
             X-XSS-Protection, Content-Security-Policy",
        ));
    };
    if !allowed.is_empty() && !allowed.contains(&value) {
        return Err(WebConfigError::invalid(
            "http_server_config.headers",
            value,
            &format!("{name} takes one of {allowed:?}"),
        ));
    }
    let bad =
        |_| WebConfigError::invalid("http_server_config.headers", value, "not a header value");
    Ok((
        HeaderName::from_str(name).map_err(|_| bad(()))?,
        HeaderValue::from_str(value).map_err(|_| bad(()))?,
    ))
}

fn tls(tls: &TlsServerConfig) -> Result<TlsSettings, WebConfigError> {
    let (verifies, asks) = match tls.client_auth {
        ClientAuth::NoClientCert => (false, false),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => (false, true),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            (true, true)
        }
    };
    let auth = format!("{:?}", tls.client_auth);
    if tls.client_ca.is_some() && !asks {
        return Err(WebConfigError::invalid(
            "client_auth_type",
            auth,
            "a client CA is set, but no client certificate is asked for",
        ));
    }
    if verifies && tls.client_ca.is_none() {
        return Err(WebConfigError::invalid(
            "client_ca_file",
            "",
            &format!("{auth} verifies client certificates: it needs client_ca_file or client_ca"),
        ));
    }
    if !tls.allowed_sans.is_empty() && !asks {
        return Err(WebConfigError::invalid(
            "client_allowed_sans",
            tls.allowed_sans.join(", "),
            "no client certificate is asked for (client_auth_type)",
        ));
    }
    if tls.min_version > tls.max_version {
        return Err(WebConfigError::invalid(
            "min_version",
            format!("{:?}", tls.min_version),
            "newer than max_version",
        ));
    }
    let versions = [
        (TlsVersion::Tls13, &rustls::version::TLS13),
        (TlsVersion::Tls12, &rustls::version::TLS12),
    ]
    .into_iter()
    .filter(|(v, _)| (tls.min_version..=tls.max_version).contains(v))
    .map(|(_, version)| version)
    .collect();
    let mut provider = ring::default_provider();
    if !tls.cipher_suites.is_empty() {
        provider.cipher_suites = suites(&tls.cipher_suites)?;
    }
    if !tls.curves.is_empty() {
        provider.kx_groups = tls
            .curves
            .iter()
            .map(|name| match curve(name) {
                Some(Some(group)) => Ok(group),
                Some(None) => Err(WebConfigError::unsupported(
                    "curve_preferences",
                    name,
                    "rustls offers X25519, CurveP256, CurveP384",
                )),
                None => Err(WebConfigError::invalid(
                    "curve_preferences",
                    name,
                    "one of X25519, CurveP256, CurveP384, CurveP521",
                )),
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(TlsSettings {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        client_auth: tls.client_auth,
        client_ca: tls.client_ca.clone(),
        allowed_sans: tls.allowed_sans.clone(),
        versions,
        provider: Arc::new(provider),
        prefer_server_order: tls.prefer_server_cipher_suites,
    })
}

/// The suites named, in order. As in Go, the list is for TLS 1.2: unless it names TLS 1.3
/// suites too, every TLS 1.3 suite stays on.
fn suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, WebConfigError> {
    let mut chosen = names
        .iter()
        .map(|name| match suite(name) {
            Some(Some(suite)) => Ok(suite),
            Some(None) => Err(WebConfigError::unsupported(
                "cipher_suites",
                name,
                "rustls offers only ECDHE suites with AES-GCM or ChaCha20-Poly1305 \
                 (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, ...)",
            )),
            None => Err(WebConfigError::invalid(
                "cipher_suites",
                name,
                "not a cipher suite Go calls secure (crypto/tls CipherSuites)",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !chosen.iter().any(|s| s.tls13().is_some()) {
        let all13 = ring::ALL_CIPHER_SUITES
            .iter()
            .filter(|s| s.tls13().is_some());
        chosen.splice(0..0, all13.copied());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

    fn files() -> TlsServerConfig {
        TlsServerConfig::files("a.crt", "a.key")
    }

    fn key_of(web: WebConfig) -> &'static str {
        match web.check() {
            Err(WebConfigError::Invalid { key, .. } | WebConfigError::Unsupported { key, .. }) => {
                key
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_auth_needs_what_it_checks_with() {
        let tls = |t: TlsServerConfig| WebConfig::new().tls(t);
        let verify = files().client_auth(ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(key_of(tls(verify.clone())), "client_ca_file");
        assert!(tls(verify.client_ca_file("ca.crt")).check().is_ok());
        assert_eq!(
            key_of(tls(files().client_ca_file("ca.crt"))),
            "client_auth_type"
        );
        assert_eq!(
            key_of(tls(files().client_allowed_sans(["x"]))),
            "client_allowed_sans"
        );
        let any = files().client_auth(ClientAuth::RequireAnyClientCert);
        assert!(tls(any.client_allowed_sans(["x"])).check().is_ok());
        let inverted = files()
            .min_version(TlsVersion::Tls13)
            .max_version(TlsVersion::Tls12);
        assert_eq!(key_of(tls(inverted)), "min_version");
    }

    #[test]
    fn suites_and_curves_are_those_rustls_offers() {
        let tls = |t: TlsServerConfig| WebConfig::new().tls(t);
        let named = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"];
        let checked = tls(files().cipher_suites(named)).check().expect("offered");
        let suites = &checked.tls.expect("tls").provider.cipher_suites;
        // The TLS 1.3 suites stay on, as in Go, then the one named.
        assert_eq!(suites.len(), 4);
        assert_eq!(
            suites[3],
            ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        let cbc = files().cipher_suites(["TLS_RSA_WITH_AES_128_CBC_SHA"]);
        assert!(matches!(
            tls(cbc).check(),
            Err(WebConfigError::Unsupported { .. })
        ));
        let invented = files().cipher_suites(["TLS_MADE_UP"]);
        assert!(matches!(
            tls(invented).check(),
            Err(WebConfigError::Invalid { .. })
        ));
        let p521 = files().curve_preferences(["CurveP521"]);
        assert!(matches!(
            tls(p521).check(),
            Err(WebConfigError::Unsupported { .. })
        ));
        let curves = tls(files().curve_preferences(["CurveP384", "X25519"])).check();
        let groups = &curves
            .expect("offered")
            .tls
            .expect("tls")
            .provider
            .kx_groups;
        assert_eq!(groups[0].name(), ring::kx_group::SECP384R1.name());
    }

    #[test]
    fn hashes_and_headers_are_checked() {
        assert!(WebConfig::new().basic_auth_user("a", HASH).check().is_ok());
        let bad = WebConfig::new().basic_auth_user("a", "plain");
        assert!(matches!(bad.check(), Err(WebConfigError::Bcrypt { user, .. }) if user == "a"));
        let ok = WebConfig::new().header("X-Frame-Options", "deny").check();
        assert_eq!(ok.expect("allowed").headers.len(), 1);
        let value = WebConfig::new().header("X-Frame-Options", "allow");
        assert_eq!(key_of(value), "http_server_config.headers");
        let name = WebConfig::new().header("Server", "x");
        assert_eq!(key_of(name), "http_server_config.headers");
    }
}
