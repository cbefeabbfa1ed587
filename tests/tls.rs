//! The secure endpoint (feature `tls`), over real TLS on 127.0.0.1 with certificates made
//! at run time: what an exporter-toolkit web config asks is served, every refusal is
//! refused and counted by its reason, a rotated certificate is served without a restart,
//! and a flood of wrong passwords never refuses a verified scraper.

mod tls_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, Error, MetricsServer, WebConfigError};
use tls_support::{https_get, Pki, PASSWORD};

fn secured(pki: &Pki, cost: u32) -> (MetricsServer, SocketAddr) {
    let server = MetricsServer::builder()
        .standalone()
        .web_config_file(pki.web_config(cost))
        .expect("a good web config")
        .build("127.0.0.1:0");
    server.start().expect("starts");
    let addr = server.local_addr().expect("running");
    (server, addr)
}

/// A scrape by the good client, parsed.
fn scrape(pki: &Pki, addr: SocketAddr) -> Exposition {
    let config = pki.client_config(Some(&pki.client));
    let answer = https_get(addr, &config, "/metrics", Some(("prometheus", PASSWORD)))
        .expect("the good client is served");
    assert_eq!(answer.status, 200, "{}", answer.body);
    Exposition::parse(&answer.body).expect("a valid exposition")
}

fn refused(scrape: &Exposition, family: &str, reason: &str) -> f64 {
    scrape
        .value(family, &["reason", reason])
        .unwrap_or_else(|| panic!("{family}{{reason={reason:?}}} is missing"))
}

#[test]
fn a_client_with_its_certificate_and_password_is_served_with_the_configured_headers() {
    let pki = Pki::new("served");
    let (server, addr) = secured(&pki, 4);
    server.collector().increment_counter("secret_total", &[]);
    let config = pki.client_config(Some(&pki.client));
    let answer = https_get(addr, &config, "/metrics", Some(("prometheus", PASSWORD))).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    let scrape = Exposition::parse(&answer.body).expect("valid");
    assert_eq!(scrape.value("secret_total", &[]), Some(1.0));
    // The certificate's expiry is exported, for alerts.
    let expiry = scrape.value(
        "porter_metrics_tls_certificate_expiry_timestamp_seconds",
        &[],
    );
    assert!(expiry.is_some_and(|t| t > 1e9), "{expiry:?}");
    // Every path is behind the same guard, the landing page included.
    let landing = https_get(addr, &config, "/", Some(("prometheus", PASSWORD))).unwrap();
    assert_eq!(landing.status, 200);
    assert_eq!(
        https_get(addr, &config, "/health", None).unwrap().status,
        401
    );
    server.stop().unwrap();
}

#[test]
fn plaintext_missing_or_foreign_certificates_and_bad_passwords_are_refused_and_counted() {
    let pki = Pki::new("refused");
    let (server, addr) = secured(&pki, 4);
    server.collector().increment_counter("secret_total", &[]);

    // Plain HTTP to the TLS port: 400, saying why.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = plain.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.0 400 Bad Request"), "{answer}");
    assert!(answer.contains("HTTPS server") && !answer.contains("secret_total"));
    drop(plain);

    // Handshakes that fail: no certificate, another CA's, a SAN not allowed.
    let failures = [
        (None, "no_certificate"),
        (Some(&pki.foreign), "certificate_refused"),
        (Some(&pki.other_san), "san_not_allowed"),
    ];
    for (identity, reason) in failures {
        let config = pki.client_config(identity);
        let outcome = https_get(addr, &config, "/metrics", Some(("prometheus", PASSWORD)));
        assert!(outcome.is_err(), "{reason}: served {outcome:?}");
    }

    // The certificate passes; the password does not.
    let config = pki.client_config(Some(&pki.client));
    for (auth, reason) in [
        (None, "no_credentials"),
        (Some(("prometheus", "wrong")), "bad_password"),
        (Some(("nobody", PASSWORD)), "bad_password"),
    ] {
        let answer = https_get(addr, &config, "/metrics", auth).unwrap();
        assert_eq!(answer.status, 401, "{reason}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"Basic realm="metrics", charset="UTF-8""#)
        );
        assert!(!answer.body.contains("secret_total"));
    }

    // Each is counted once its connection is done with (at once, or nearly).
    let connections = "porter_metrics_connections_refused_total";
    let scrape = wait_for(Duration::from_secs(10), || {
        let scrape = scrape(&pki, addr);
        (refused(&scrape, connections, "san_not_allowed") >= 1.0).then_some(scrape)
    })
    .expect("the refusals are counted");
    for reason in [
        "plaintext",
        "no_certificate",
        "certificate_refused",
        "san_not_allowed",
    ] {
        assert_eq!(refused(&scrape, connections, reason), 1.0, "{reason}");
    }
    assert_eq!(refused(&scrape, connections, "handshake"), 0.0);
    let requests = "porter_metrics_scrapes_refused_total";
    assert_eq!(refused(&scrape, requests, "no_credentials"), 1.0);
    assert_eq!(refused(&scrape, requests, "bad_password"), 2.0);
    assert_eq!(refused(&scrape, requests, "auth_busy"), 0.0);
    server.stop().unwrap();
}

#[test]
fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let pki = Pki::new("rotated");
    let (server, addr) = secured(&pki, 4);
    let config = pki.client_config(Some(&pki.client));
    let get = || https_get(addr, &config, "/metrics", Some(("prometheus", PASSWORD)));
    let first = get().expect("served").server_cert;

    let replacement = pki.ca.issue(&["127.0.0.1", "localhost"], false);
    pki.write_pair("server", &replacement);
    let rotated = wait_for(Duration::from_secs(20), || {
        let served = get().ok()?.server_cert;
        (served != first).then_some(served)
    })
    .expect("the replaced certificate is served within 20 s");
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(replacement.cert.as_bytes());
    assert_eq!(rotated, der.expect("PEM").as_ref());
    let scrape = scrape(&pki, addr);
    let reloads = |o| scrape.value("porter_metrics_tls_reloads_total", &["outcome", o]);
    assert_eq!((reloads("ok"), reloads("error")), (Some(1.0), Some(0.0)));

    // A key that does not go with the certificate: the last good pair is served.
    let stray = pki.ca.issue(&["127.0.0.1"], false);
    pki.write("server.key", &stray.key);
    let counted = wait_for(Duration::from_secs(20), || {
        let errors = self::scrape(&pki, addr)
            .value("porter_metrics_tls_reloads_total", &["outcome", "error"]);
        errors.filter(|n| *n >= 1.0)
    });
    assert_eq!(counted, Some(1.0), "the bad key is counted once");
    assert_eq!(get().expect("still served").server_cert, rotated);
    server.stop().unwrap();
}

#[test]
fn a_flood_of_wrong_passwords_never_refuses_a_verified_scraper() {
    let pki = Pki::new("flood");
    // bcrypt's usual cost: each wrong password costs tens of milliseconds.
    let (server, addr) = secured(&pki, 10);
    let good = pki.client_config(Some(&pki.client));
    let get = |password| https_get(addr, &good, "/metrics", Some(("prometheus", password)));
    assert_eq!(get(PASSWORD).expect("served").status, 200); // verified once

    let flood: Vec<_> = (0..20)
        .map(|t| {
            let config = good.clone();
            std::thread::spawn(move || {
                (0..15)
                    .map(|i| {
                        let password = format!("wrong-{t}-{i}");
                        let answer =
                            https_get(addr, &config, "/metrics", Some(("prometheus", &password)));
                        answer.map(|a| a.status).unwrap_or(0)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut good_scrapes = Vec::new();
    while !flood.iter().all(|t| t.is_finished()) {
        good_scrapes.push(get(PASSWORD).map(|a| a.status).unwrap_or(0));
    }
    let statuses: Vec<u16> = flood
        .into_iter()
        .flat_map(|t| t.join().expect("a flood thread"))
        .collect();
    assert_eq!(statuses.len(), 300);
    // Each wrong password was refused: checked (401) or, past the bound, not (503).
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    assert!(!good_scrapes.is_empty());
    assert!(good_scrapes.iter().all(|s| *s == 200), "{good_scrapes:?}");

    let scrape = scrape(&pki, addr);
    let requests = "porter_metrics_scrapes_refused_total";
    let counted =
        refused(&scrape, requests, "bad_password") + refused(&scrape, requests, "auth_busy");
    assert_eq!(counted, 300.0);
    server.stop().unwrap();
}

#[test]
fn a_bad_web_config_is_an_error_when_set_and_missing_files_when_started() {
    let pki = Pki::new("errors");
    pki.write("typo.yml", "tls_server_config:\n  cert_fil: server.crt\n");
    let typo = MetricsServer::builder().web_config_file(pki.path("typo.yml"));
    assert!(matches!(
        typo,
        Err(Error::WebConfig(WebConfigError::Syntax { .. }))
    ));
    let absent = MetricsServer::builder().web_config_file(pki.path("absent.yml"));
    assert!(matches!(
        absent,
        Err(Error::WebConfig(WebConfigError::Read { .. }))
    ));

    pki.write(
        "missing.yml",
        "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n",
    );
    let server = MetricsServer::builder()
        .standalone()
        .web_config_file(pki.path("missing.yml"))
        .expect("checked, not loaded yet")
        .build("127.0.0.1:0");
    match server.start() {
        Err(Error::WebConfig(WebConfigError::Read { key, path, .. })) => {
            assert_eq!(key, "cert_file");
            assert_eq!(path, pki.path("nowhere.crt"));
        }
        other => panic!("{other:?}"),
    }
    assert!(server.local_addr().is_none());

    // A key of another certificate.
    pki.write("stray.key", &pki.client.key);
    pki.write(
        "stray.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: stray.key\n",
    );
    let stray = MetricsServer::builder()
        .standalone()
        .web_config_file(pki.path("stray.yml"))
        .expect("checked")
        .build("127.0.0.1:0");
    assert!(matches!(
        stray.start(),
        Err(Error::WebConfig(WebConfigError::Pem {
            key: "key_file",
            ..
        }))
    ));
}

#[test]
fn the_shipped_sample_is_a_valid_web_config() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/prometheus/web-config.yml"
    );
    let web = porter_metrics::WebConfig::from_file(sample).expect("the sample parses");
    let debug = format!("{web:?}");
    assert!(debug.contains("RequireAndVerifyClientCert"), "{debug}");
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
