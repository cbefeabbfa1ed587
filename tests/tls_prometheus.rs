//! The secure endpoint against the referees: Prometheus 2.42 and 3.5 scrape a server behind
//! TLS, a client certificate and basic auth (`up == 1` throughout) while 300 wrong-password
//! requests hit its port, and both promtools accept the shipped sample web config. Needs the
//! servers `.ci/install-deps` installs; everything on 127.0.0.1.

mod common;
mod tls_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::prometheus::{query_at, spawn_ready};
use common::{require_binary, sid_binary, wait_for};
use porter_metrics::{Collector, MetricsServer};
use tls_support::{https_get, Pki, PASSWORD};

/// A Prometheus process, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary` scraping `target` every second over TLS, with the client certificate and
/// the password of `pki`.
fn prometheus(binary: &Path, pki: &Pki, target: SocketAddr) -> (Running, SocketAddr) {
    let path = |name: &str| pki.path(name).display().to_string();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: porter\n    scheme: https\n    tls_config:\n      \
         ca_file: {}\n      cert_file: {}\n      key_file: {}\n    basic_auth:\n      \
         username: prometheus\n      password: {PASSWORD}\n    static_configs:\n      \
         - targets: ['{target}']\n",
        path("ca.crt"),
        path("client.crt"),
        path("client.key"),
    );
    pki.write("prometheus.yml", &config);
    std::fs::create_dir_all(pki.path("data")).expect("a data directory");
    let (child, addr) = spawn_ready(binary, |addr| {
        vec![
            format!("--config.file={}", path("prometheus.yml")),
            format!("--storage.tsdb.path={}", path("data")),
            format!("--web.listen-address={addr}"),
        ]
    });
    (Running(child), addr)
}

fn scrapes_through_a_flood_of_wrong_passwords(binary: &Path) {
    let pki = Pki::new("prometheus");
    let server = MetricsServer::builder()
        .standalone()
        .web_config_file(pki.web_config(bcrypt::DEFAULT_COST))
        .expect("a good web config")
        .build("127.0.0.1:0");
    server.start().expect("starts");
    let target = server.local_addr().expect("running");
    server.collector().increment_counter("secured_total", &[]);
    let (_prometheus, api) = prometheus(binary, &pki, target);
    let up = |query: &str| query_at(api, query).first().map(|(_, v)| *v);
    let first = wait_for(Duration::from_secs(60), || {
        (up(r#"up{job="porter"}"#) == Some(1.0)).then(Instant::now)
    })
    .unwrap_or_else(|| {
        let targets = common::get(api, "/api/v1/targets").map(|r| r.body);
        panic!("Prometheus does not scrape over TLS with its certificate and password: {targets:?}")
    });
    assert_eq!(up(r#"secured_total{job="porter"}"#), Some(1.0));

    // 300 wrong passwords, with a good certificate, from 20 clients at once.
    let config = pki.client_config(Some(&pki.client));
    let flood: Vec<_> = (0..20)
        .map(|t| {
            let config = config.clone();
            std::thread::spawn(move || {
                for i in 0..15 {
                    let password = format!("wrong-{t}-{i}");
                    let _ = https_get(target, &config, "/metrics", Some(("prometheus", &password)));
                }
            })
        })
        .collect();
    for thread in flood {
        thread.join().expect("a flood thread");
    }
    // Three more scrapes after the flood.
    std::thread::sleep(Duration::from_secs(3));

    let window = first.elapsed().as_secs().max(1);
    let (min, count) = (
        up(&format!(r#"min_over_time(up{{job="porter"}}[{window}s])"#)),
        up(&format!(
            r#"count_over_time(up{{job="porter"}}[{window}s])"#
        )),
    );
    assert_eq!(min, Some(1.0), "a scrape failed during the flood");
    assert!(count.is_some_and(|n| n >= 3.0), "{count:?} scrapes");
    let refused = wait_for(Duration::from_secs(30), || {
        let sum = up(
            r#"sum(porter_metrics_scrapes_refused_total{job="porter", reason=~"bad_password|auth_busy"})"#,
        )?;
        (sum >= 300.0).then_some(sum)
    });
    assert_eq!(refused, Some(300.0), "each wrong password is counted");
    server.stop().expect("stops");
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn prometheus_2_scrapes_over_tls_with_a_client_certificate_and_basic_auth_through_a_flood() {
    scrapes_through_a_flood_of_wrong_passwords(&require_binary("prometheus", "prometheus"));
}

#[test]
#[ignore = "needs prometheus 3.5 (run .ci/test)"]
fn prometheus_3_scrapes_over_tls_with_a_client_certificate_and_basic_auth_through_a_flood() {
    scrapes_through_a_flood_of_wrong_passwords(&sid_binary("prometheus"));
}

#[test]
#[ignore = "needs promtool (run .ci/test)"]
fn both_promtools_accept_the_shipped_web_config_and_its_scrape_config() {
    let pki = Pki::new("promtool");
    // The files the sample names, made as its comments say.
    pki.write("prometheus.crt", &pki.client.cert);
    pki.write("prometheus.key", &pki.client.key);
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/prometheus/web-config.yml"
    );
    let copy = pki.path("web-config.yml");
    std::fs::copy(sample, &copy).expect("copied");
    let kit = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prometheus");
    for file in ["prometheus-tls.yml", "alerts.yml"] {
        std::fs::copy(Path::new(kit).join(file), pki.path(file)).expect("copied");
    }
    for promtool in [
        require_binary("promtool", "prometheus"),
        sid_binary("promtool"),
    ] {
        for (check, file) in [
            ("web-config", "web-config.yml"),
            ("config", "prometheus-tls.yml"),
        ] {
            let out = Command::new(&promtool)
                .args(["check", check])
                .arg(pki.path(file))
                .output()
                .expect("promtool runs");
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "{} check {check}: {said}",
                promtool.display()
            );
        }
    }
    // And ours reads it as they do.
    porter_metrics::WebConfig::from_file(&copy).expect("porter-metrics reads it");
}
