//! What the TLS tests share: certificates made at run time (rcgen; no key is committed),
//! written to a temporary directory, and a blocking HTTPS client (rustls) for 127.0.0.1.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The password of the user `prometheus` in every test config.
pub const PASSWORD: &str = "scrape-me";

/// A certificate and its key, in PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// A CA of its own.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("a CA");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `sans` (IP addresses or DNS names) signed by this CA, for a server
    /// or a client.
    pub fn issue(&self, sans: &[&str], client: bool) -> Pair {
        let key = KeyPair::generate().expect("a key");
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "porter-metrics test");
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Everything a test needs, in files under a temporary directory removed on drop:
/// `ca.crt`, `server.crt`/`server.key` (127.0.0.1, localhost), and the clients.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Ca,
    pub server: Pair,
    /// Signed by the CA, SAN `prometheus`.
    pub client: Pair,
    /// Signed by the CA, SAN `intruder` (not allowed).
    pub other_san: Pair,
    /// Signed by another CA.
    pub foreign: Pair,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "porter-metrics-tls-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let ca = Ca::new("porter-metrics test CA");
        let server = ca.issue(&["127.0.0.1", "localhost"], false);
        let client = ca.issue(&["prometheus"], true);
        let other_san = ca.issue(&["intruder"], true);
        let foreign = Ca::new("someone else's CA").issue(&["prometheus"], true);
        let pki = Self {
            dir,
            ca,
            server,
            client,
            other_san,
            foreign,
        };
        pki.write("ca.crt", &pki.ca.pem);
        pki.write_pair("server", &pki.server);
        pki.write_pair("client", &pki.client);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `name` by a rename, as rotation tools do.
    pub fn write(&self, name: &str, text: &str) {
        let temporary = self.path(&format!(".{name}.new"));
        std::fs::write(&temporary, text).expect("write");
        std::fs::rename(&temporary, self.path(name)).expect("rename");
    }

    pub fn write_pair(&self, name: &str, pair: &Pair) {
        self.write(&format!("{name}.crt"), &pair.cert);
        self.write(&format!("{name}.key"), &pair.key);
    }

    /// A web config requiring a verified client certificate with SAN `prometheus`, and
    /// basic auth for `prometheus` (bcrypt at `cost`); written as `web.yml`.
    pub fn web_config(&self, cost: u32) -> PathBuf {
        let hash = bcrypt::hash(PASSWORD, cost).expect("bcrypt");
        let config = format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             client_allowed_sans: [prometheus]\n\
             basic_auth_users:\n  prometheus: {hash}\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        );
        self.write("web.yml", &config);
        self.path("web.yml")
    }

    /// A client trusting the CA, presenting `identity` if any.
    pub fn client_config(&self, identity: Option<&Pair>) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca.pem, identity)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client trusting `ca_pem`, presenting `identity` if any.
pub fn client_config(ca_pem: &str, identity: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(pair) => {
            let chain = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("PEM");
            let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).expect("key");
            builder.with_client_auth_cert(chain, key).expect("identity")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// An HTTPS answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The server's certificate, as served.
    pub server_cert: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over TLS with `Connection: close`, with basic auth if `auth`; bounded by
/// 10 s timeouts. An `Err` when the handshake or the connection fails.
pub fn https_get(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
    auth: Option<(&str, &str)>,
) -> std::io::Result<Answer> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("127.0.0.1")
        .expect("a name")
        .to_owned();
    let mut connection =
        rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::Stream::new(&mut connection, &mut tcp);
    let authorization = auth.map_or_else(String::new, |(user, password)| {
        format!(
            "Authorization: Basic {}\r\n",
            base64(&format!("{user}:{password}"))
        )
    });
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Some servers close without close_notify; what was read stands.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let server_cert = connection
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, text.clone());
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
        server_cert,
    })
}

/// Base64 (standard alphabet, padded) of `text`.
pub fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The directory of a file.
pub fn dir_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}
