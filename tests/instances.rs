//! Many instances: a real Prometheus scrapes two processes of the example server, and a
//! PromQL `sum` across them equals the sum of what each one serves.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::prometheus::Prometheus;
use porter_metrics::testing::Exposition;

/// Requests each example process simulates per stream (it runs 4 streams).
const STEPS: u64 = 250;
const STREAMS: u64 = 4;

/// The example binary `cargo test` built next to this test.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = dir.join("examples").join("server");
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test` (which builds the examples)",
        binary.display()
    );
    binary
}

/// One running example process; killed on drop.
struct Instance {
    child: Child,
    addr: SocketAddr,
}

impl Instance {
    fn start() -> Self {
        let mut child = Command::new(example_binary())
            .args(["127.0.0.1:0", "--steps", &STEPS.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example starts");
        // Its first line says where it serves: "serving http://ADDR/metrics ...".
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Instance { child, addr }
    }

    fn requests_served(&self) -> Option<f64> {
        let body = common::get(self.addr, "/metrics").ok()?.body;
        Some(Exposition::parse(&body).ok()?.sum("flight_requests_total"))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs prometheus (run .ci/test)"]
fn a_sum_across_two_instances_equals_the_sum_of_each() {
    let instances = [Instance::start(), Instance::start()];
    let expected = (STEPS * STREAMS) as f64;
    for instance in &instances {
        let done = common::wait_for(Duration::from_secs(60), || {
            instance.requests_served().filter(|n| *n == expected)
        });
        assert_eq!(done, Some(expected), "the example finished its workload");
    }

    let prometheus = Prometheus::start(&[instances[0].addr, instances[1].addr]);
    let up = prometheus.wait_until("count(up == 1)", Duration::from_secs(60), |v| v == 2.0);
    assert_eq!(up, Some(2.0), "both instances scraped");
    let total = prometheus.wait_until("sum(flight_requests_total)", Duration::from_secs(30), |v| {
        v == 2.0 * expected
    });
    assert_eq!(total, Some(2.0 * expected));
    let per_instance = prometheus.query("sum by (instance) (flight_requests_total)");
    assert_eq!(per_instance.len(), 2);
    for (labels, value) in per_instance {
        assert_eq!(value, expected, "{labels}");
    }
    // Process metrics, on in the example, are there for both.
    let rss = prometheus.query("process_resident_memory_bytes");
    assert_eq!(rss.len(), 2);
    assert!(rss.iter().all(|(_, bytes)| *bytes > 0.0));
}
