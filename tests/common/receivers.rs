//! Comparing what a receiver stores (Prometheus, VictoriaMetrics, through their query API)
//! with a process's own scrape, series by series.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use porter_metrics::testing::Exposition;

/// How long a receiver has to hold what was pushed.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A label set as a receiver returns it, without `__name__` and the `ignored` keys.
pub type LabelSet = BTreeSet<(String, String)>;

pub fn label_set(metric: &serde_json::Value, ignored: &[&str]) -> LabelSet {
    metric
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "__name__" && !ignored.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Each series of sample `name` in `scrape`: its labels (an `le` as a number) and value.
pub fn scraped(scrape: &Exposition, name: &str) -> BTreeMap<LabelSet, f64> {
    scrape
        .samples()
        .iter()
        .filter(|s| s.name == name)
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), normal(k, v)))
                .collect();
            (labels, s.value)
        })
        .collect()
}

/// An `le` value as a number (receivers write `1` or `1.0`), other values as they are.
pub fn normal(key: &str, value: &str) -> String {
    match (key, value.parse::<f64>()) {
        ("le", Ok(le)) => format!("{le}"),
        _ => value.to_owned(),
    }
}

/// Each series of `name` a receiver holds, as [`scraped`] gives them.
pub fn stored(
    query: &dyn Fn(&str) -> Vec<(serde_json::Value, f64)>,
    name: &str,
    ignored: &[&str],
) -> BTreeMap<LabelSet, f64> {
    query(&format!("{{__name__=\"{name}\"}}"))
        .into_iter()
        .map(|(metric, value)| {
            let labels = label_set(&metric, ignored)
                .into_iter()
                .map(|(k, v)| {
                    let v = normal(&k, &v);
                    (k, v)
                })
                .collect();
            (labels, value)
        })
        .collect()
}

/// Waits until the receiver holds exactly the scrape's series of each of `names`; the
/// differences left if it never does.
pub fn converge(
    query: &dyn Fn(&str) -> Vec<(serde_json::Value, f64)>,
    scrape: &Exposition,
    names: &[&str],
    ignored: &[&str],
) -> Vec<String> {
    let differences = || -> Vec<String> {
        names
            .iter()
            .filter_map(|name| {
                let want = scraped(scrape, name);
                let got = stored(query, name, ignored);
                assert!(!want.is_empty(), "{name} is in the scrape");
                (want != got).then(|| format!("{name}: scraped {want:?}, stored {got:?}"))
            })
            .collect()
    };
    super::wait_for(LIMIT, || {
        let left = differences();
        left.is_empty().then_some(())
    })
    .map_or_else(differences, |()| Vec::new())
}

/// A Prometheus 3.5 Remote-Write receiver behind TLS that requires client certificates
/// (its own `--web.config.file`), on a free loopback port; killed and cleaned up on drop.
/// Its files (certificates, keys, configurations) are in [`TlsReceiver::dir`].
pub struct TlsReceiver {
    child: std::process::Child,
    pub dir: std::path::PathBuf,
    pub addr: std::net::SocketAddr,
}

impl TlsReceiver {
    /// Starts it with the server certificate and key `cert`/`key` (PEM), trusting client
    /// certificates of `client_ca` (PEM); waits (at most 60 s) until `promtool check
    /// ready`, connecting with the client certificate `client` (PEM cert and key) and
    /// trusting `ca` as `server_name`, says it is ready.
    pub fn start(
        (cert, key): (&str, &str),
        client_ca: &str,
        (ca, server_name): (&str, &str),
        (client_cert, client_key): (&str, &str),
    ) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "porter-metrics-tls-{}-{}",
            std::process::id(),
            super::quiet_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("temporary directory");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).expect("a file");
        };
        write("server.pem", cert);
        write("server.key", key);
        write("client-ca.pem", client_ca);
        write("ca.pem", ca);
        write("client.pem", client_cert);
        write("client.key", client_key);
        write("prometheus.yml", "global:\n  scrape_interval: 1s\n");
        write(
            "web.yml",
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.pem\n",
        );
        write(
            "client.yml",
            &format!("tls_config:\n  ca_file: ca.pem\n  cert_file: client.pem\n  key_file: client.key\n  server_name: {server_name}\n"),
        );
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", super::quiet_port())
            .parse()
            .expect("an address");
        let child = std::process::Command::new(super::sid_binary("prometheus"))
            .current_dir(&dir)
            .args([
                "--config.file=prometheus.yml".to_owned(),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address={addr}"),
                "--web.config.file=web.yml".to_owned(),
                "--web.enable-remote-write-receiver".to_owned(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let receiver = Self { child, dir, addr };
        let ready = super::wait_for(Duration::from_secs(60), || {
            let url = format!("--url=https://{addr}");
            receiver.promtool(&["check", "ready", &url]).ok()
        });
        assert!(ready.is_some(), "Prometheus over TLS is not ready");
        receiver
    }

    /// Runs promtool 3.5 with `args`, connecting with the client certificate; its output,
    /// or why it failed.
    pub fn promtool(&self, args: &[&str]) -> Result<String, String> {
        let output = std::process::Command::new(super::sid_binary("promtool"))
            .current_dir(&self.dir)
            .args(args)
            .arg("--http.config.file=client.yml")
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        match output.status.success() {
            true => Ok(text),
            false => Err(format!("{text}{}", String::from_utf8_lossy(&output.stderr))),
        }
    }

    /// The value of an instant query's single result, as promtool prints it
    /// (`name{...} => 3 @[...]`).
    pub fn query(&self, promql: &str) -> Option<f64> {
        let server = format!("https://{}", self.addr);
        let output = self.promtool(&["query", "instant", &server, promql]).ok()?;
        let (_, rest) = output.split_once("=> ")?;
        rest.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
