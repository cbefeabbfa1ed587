//! Push over TLS to a Prometheus 3.5 Remote-Write receiver that requires client
//! certificates (its own `--web.config.file`): with the target's CA, client certificate and
//! server name the push is stored; without a client certificate, with one another CA
//! signed, or without the CA, it is refused. Every certificate is made here, at run time.

mod common;

use std::time::Duration;

use common::receivers::TlsReceiver;
use porter_metrics::{Builder, Collector, Error, PushTarget};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, in PEM.
struct Pem {
    cert: String,
    key: String,
}

/// A CA that signs certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a CA"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names`, for a server or a client.
    fn sign(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Pem {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// What a pusher to `receiver` with `tls` applied to its target does at `stop()`, having
/// recorded `jobs` increments.
fn push(
    receiver: &TlsReceiver,
    jobs: u64,
    tls: impl Fn(PushTarget) -> PushTarget,
) -> Result<(), Error> {
    let url = format!("https://{}/api/v1/write", receiver.addr);
    let target = PushTarget::remote_write(&url)
        .and_then(|t| t.interval(Duration::from_secs(3600)))
        .and_then(|t| t.timeout(Duration::from_secs(5)))
        .expect("valid target");
    let pusher = Builder::new()
        .standalone()
        .service_name("tls-test")
        .push(tls(target))
        .build_pusher()
        .expect("a pusher");
    pusher.start().expect("starts");
    pusher
        .collector()
        .add_to_counter("tls_jobs_total", jobs, &[]);
    pusher.stop()
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn a_push_reaches_a_receiver_that_requires_client_certificates() {
    let (ca, clients, foreign) = (Ca::new("server CA"), Ca::new("client CA"), Ca::new("other"));
    // The certificate names the receiver, not its address: the target says which name.
    let server = ca.sign(&["receiver.test"], ExtendedKeyUsagePurpose::ServerAuth);
    let client = clients.sign(&["pusher"], ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = foreign.sign(&["pusher"], ExtendedKeyUsagePurpose::ClientAuth);
    let receiver = TlsReceiver::start(
        (&server.cert, &server.key),
        &clients.pem(),
        (&ca.pem(), "receiver.test"),
        (&client.cert, &client.key),
    );
    let with = |client: &Pem| {
        let (cert, key) = (client.cert.clone(), client.key.clone());
        let ca = ca.pem();
        move |target: PushTarget| {
            target
                .tls_ca_pem(&ca)
                .and_then(|t| t.tls_client_pem(&cert, &key))
                .and_then(|t| t.tls_server_name("receiver.test"))
                .expect("valid TLS settings")
        }
    };
    push(&receiver, 3, with(&client)).expect("the push is taken");
    let stored = common::wait_for(common::receivers::LIMIT, || {
        receiver
            .query("last_over_time(tls_jobs_total{job=\"tls-test\"}[1h])")
            .filter(|v| *v == 3.0)
    });
    assert_eq!(stored, Some(3.0), "the counter is stored");

    let refused = |outcome: Result<(), Error>, why: &str| {
        assert!(
            matches!(outcome, Err(Error::Push { .. })),
            "{why}: {outcome:?}"
        );
    };
    let ca_only = |target: PushTarget| {
        target
            .tls_ca_pem(ca.pem())
            .and_then(|t| t.tls_server_name("receiver.test"))
            .expect("valid TLS settings")
    };
    refused(push(&receiver, 1, ca_only), "no client certificate");
    refused(
        push(&receiver, 1, with(&stranger)),
        "a client certificate of another CA",
    );
    let no_ca = |target: PushTarget| {
        target
            .tls_client_pem(&client.cert, &client.key)
            .and_then(|t| t.tls_server_name("receiver.test"))
            .expect("valid TLS settings")
    };
    refused(push(&receiver, 1, no_ca), "the receiver's CA not trusted");
    let wrong_name = |target: PushTarget| {
        with(&client)(target)
            .tls_server_name("other.test")
            .expect("a name")
    };
    refused(
        push(&receiver, 1, wrong_name),
        "a name the certificate does not hold",
    );
    let after = receiver.query("last_over_time(tls_jobs_total{job=\"tls-test\"}[1h])");
    assert_eq!(after, Some(3.0), "nothing refused was stored");
}
