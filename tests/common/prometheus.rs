//! A real Prometheus server (Debian's `prometheus` package) for the tests: started on a
//! free loopback port with a temporary storage directory and a 1 s scrape interval, killed
//! and cleaned up on drop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{get, require_binary, wait_for, wait_ready};

/// A running Prometheus; see the module documentation.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
}

/// Percent-encodes a query-string value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn free_port() -> u16 {
    super::quiet_port()
}

/// Starts `binary` with `args(addr)` on a free loopback port until `/-/ready` answers 200
/// (at most 60 s); tries 3 ports in case one is taken meanwhile.
pub(crate) fn spawn_ready(
    binary: &std::path::Path,
    args: impl Fn(SocketAddr) -> Vec<String>,
) -> (Child, SocketAddr) {
    let mut last_error = String::new();
    for _ in 0..3 {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(binary)
            .args(args(addr))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        match wait_ready(&mut child, addr) {
            Ok(()) => return (child, addr),
            Err(e) => last_error = e,
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("cannot start {}: {last_error}", binary.display());
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job `porter`) every second; waits (at most
    /// 60 s) until it is ready.
    pub fn start(targets: &[SocketAddr]) -> Self {
        Self::start_with(targets, &[])
    }

    /// The same, with feature flags (`--enable-feature=...`).
    pub fn start_with(targets: &[SocketAddr], features: &[&str]) -> Self {
        let binary = require_binary("prometheus", "prometheus");
        Self::launch(&binary, targets, features, "", &[])
    }

    /// Prometheus 3.5 (Debian sid's, unpacked by `.ci/install-deps`) scraping `targets`,
    /// with feature flags, lines added to the scrape job (such as `scrape_protocols`), and
    /// more arguments.
    pub fn start_v3(targets: &[SocketAddr], features: &[&str], job: &str, args: &[&str]) -> Self {
        Self::launch(
            &super::sid_binary("prometheus"),
            targets,
            features,
            job,
            args,
        )
    }

    /// Starts Prometheus 3 as a Remote-Write receiver with native histograms and exemplar
    /// storage, scraping nothing; returns it and its write URL.
    pub fn remote_write_receiver() -> (Self, String) {
        let prometheus = Self::start_v3(
            &[],
            &["native-histograms", "exemplar-storage"],
            "",
            &["--web.enable-remote-write-receiver"],
        );
        let url = format!("http://{}/api/v1/write", prometheus.addr);
        (prometheus, url)
    }

    fn launch(
        binary: &std::path::Path,
        targets: &[SocketAddr],
        features: &[&str],
        job: &str,
        extra: &[&str],
    ) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "porter-metrics-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("temporary directory");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: porter\n    static_configs:\n      - targets: [{}]\n{job}",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("config file");
        let (child, addr) = spawn_ready(binary, |addr| {
            vec![
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address={addr}"),
            ]
            .into_iter()
            .chain(
                (!features.is_empty()).then(|| format!("--enable-feature={}", features.join(","))),
            )
            .chain(extra.iter().map(|a| (*a).to_owned()))
            .collect()
        });
        Prometheus { child, dir, addr }
    }

    /// Runs an instant query; returns each result's labels (as JSON) and value.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        query_at(self.addr, promql)
    }

    /// Runs an instant query of a range (`metric[1m]`); returns each series' labels and
    /// its samples, (time, value).
    pub fn samples(&self, promql: &str) -> Vec<(serde_json::Value, Vec<(f64, f64)>)> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let json = get(self.addr, &path)
            .ok()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .unwrap_or_default();
        json["data"]["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .map(|r| {
                        let values = r["values"].as_array().cloned().unwrap_or_default();
                        let points = values
                            .iter()
                            .filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse().ok()?)))
                            .collect();
                        (r["metric"].clone(), points)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls `/api/v1/query_exemplars` for `promql` over the last five minutes until some
    /// exemplar shows (at most `limit`); returns their `trace_id` labels.
    pub fn trace_ids(&self, promql: &str, limit: Duration) -> Option<Vec<String>> {
        wait_for(limit, || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let path = format!(
                "/api/v1/query_exemplars?query={}&start={}&end={}",
                encode(promql),
                now.saturating_sub(300),
                now + 5
            );
            let response = get(self.addr, &path).ok()?;
            let json = serde_json::from_str::<serde_json::Value>(&response.body).ok()?;
            let ids: Vec<String> = json["data"]
                .as_array()?
                .iter()
                .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
                .collect();
            (!ids.is_empty()).then_some(ids)
        })
    }

    /// Polls `promql` until its single result satisfies `check` (at most `limit`).
    pub fn wait_until(
        &self,
        promql: &str,
        limit: Duration,
        mut check: impl FnMut(f64) -> bool,
    ) -> Option<f64> {
        wait_for(limit, || match self.query(promql).as_slice() {
            [(_, value)] if check(*value) => Some(*value),
            _ => None,
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs an instant query on the Prometheus-compatible API at `addr` (Prometheus,
/// VictoriaMetrics); returns each result's labels (as JSON) and value.
pub fn query_at(addr: SocketAddr, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let path = format!("/api/v1/query?query={}", encode(promql));
    let Ok(response) = get(addr, &path) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&response.body) else {
        return Vec::new();
    };
    json["data"]["result"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .filter_map(|r| {
                    let value = r["value"][1].as_str()?.parse::<f64>().ok()?;
                    Some((r["metric"].clone(), value))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `promtool check metrics` on `text`; returns promtool's exit code and output.
/// Exit code 1 means a parse error; 3 means lint warnings only.
pub fn promtool_check(text: &str) -> (i32, String) {
    promtool_check_with(&require_binary("promtool", "prometheus"), text)
}

/// The same with another `promtool` (3.5's: `common::sid_binary("promtool")`).
pub fn promtool_check_with(promtool: &std::path::Path, text: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), output)
}

/// A running Pushgateway (Debian's `prometheus-pushgateway`), in memory, killed on drop.
pub struct Pushgateway {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Pushgateway {
    /// Starts a Pushgateway on a free loopback port; waits until it is ready.
    pub fn start() -> Self {
        let binary = require_binary("prometheus-pushgateway", "prometheus-pushgateway");
        let (child, addr) =
            spawn_ready(&binary, |addr| vec![format!("--web.listen-address={addr}")]);
        Pushgateway { child, addr }
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
