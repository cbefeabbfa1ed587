//! The main example: a metrics server exporting a simulated Flight SQL server's metrics.
//!
//! ```text
//! cargo run --example server                          # serves http://127.0.0.1:9090/metrics
//! cargo run --example server 127.0.0.1:0              # any free port
//! cargo run --example server 127.0.0.1:0 --steps 500  # 500 requests per stream, then idle
//! curl -s http://127.0.0.1:9090/metrics | grep flight_
//! ```
//!
//! Runs until Ctrl-C. It binds loopback unless told otherwise: to let a Prometheus on another
//! host scrape it, bind a private interface and keep an allowlist (see the README). The
//! workload's metrics are documented in `examples/support/workload.rs`; process metrics
//! (`process_*`) come with them.

#[path = "support/workload.rs"]
mod workload;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use porter_metrics::{Collector, MetricsServer, PrometheusCollector};
use workload::Workload;

/// Simulated client streams, each a task stepping every [`STEP`].
const STREAMS: u64 = 4;
const STEP: Duration = Duration::from_millis(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Loopback by default: expose on other interfaces only on purpose (e.g. `0.0.0.0:9090`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9090".to_owned());
    // `--steps N`: each stream stops after N requests (the server keeps serving).
    let steps: Option<u64> = args
        .iter()
        .position(|a| a == "--steps")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse())
        .transpose()?;

    // First thing: start the server. It installs the global recorder, so the collector and
    // the `metrics` macros of the workload land in the same scrape.
    let server = MetricsServer::builder().process_metrics().build(&addr);
    server.start()?;
    metrics::describe_counter!(
        workload::BYTES_SENT,
        metrics::Unit::Bytes,
        "Bytes sent in Flight responses, by method."
    );
    let local = server
        .local_addr()
        .expect("a started server has an address");
    println!("serving http://{local}/metrics (Ctrl-C to stop)");

    let collector: Arc<dyn Collector> = Arc::new(PrometheusCollector::new());
    let first = Workload::new(collector, 1);
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for stream in 0..STREAMS {
        let mut workload = first.fork(stream + 1);
        let running = running.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(STEP);
            while running.load(Ordering::Relaxed)
                && steps.is_none_or(|limit| workload.tally().steps < limit)
            {
                tick.tick().await;
                workload.step();
            }
            workload.tally().steps
        }));
    }

    tokio::signal::ctrl_c().await?;
    running.store(false, Ordering::Relaxed);
    let mut steps = 0;
    for task in tasks {
        steps += task.await?;
    }
    server.stop()?;
    println!("stopped after {steps} simulated requests");
    Ok(())
}
