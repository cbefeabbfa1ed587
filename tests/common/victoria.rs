//! A real VictoriaMetrics (Debian sid's single binary, unpacked by `.ci/install-deps`) for
//! the push tests: a free loopback port, a temporary storage directory, no query latency
//! offset (pushed samples are queryable at once); killed and cleaned up on drop. It can be
//! stopped and started again on the same port and storage, as an outage does.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::wait_ready;

/// A running (or stopped) VictoriaMetrics; see the module documentation.
pub struct VictoriaMetrics {
    child: Option<Child>,
    dir: PathBuf,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    args: Vec<String>,
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics with `args` added; waits (at most 60 s) until it is ready.
    pub fn start(args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "porter-metrics-vm-{}-{}",
            std::process::id(),
            super::quiet_port()
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let mut last_error = String::new();
        for _ in 0..3 {
            let addr: SocketAddr = format!("127.0.0.1:{}", super::quiet_port())
                .parse()
                .expect("an address");
            let mut vm = Self {
                child: None,
                dir: dir.clone(),
                addr,
                args: args.iter().map(|a| (*a).to_owned()).collect(),
            };
            match vm.spawn() {
                Ok(()) => return vm,
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start VictoriaMetrics: {last_error}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let binary = super::sid_binary("victoria-metrics");
        let mut child = Command::new(binary)
            .arg(format!(
                "-storageDataPath={}",
                self.dir.join("data").display()
            ))
            .arg(format!("-httpListenAddr={}", self.addr))
            .args([
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-loggerLevel=ERROR",
            ])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("victoria-metrics starts: {e}"))?;
        let addr = self.addr;
        match wait_ready(&mut child, addr) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Kills it: its port refuses connections until [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("VictoriaMetrics starts again");
    }

    /// Runs an instant query; returns each result's labels (as JSON) and value.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        super::prometheus::query_at(self.addr, promql)
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
