//! The main example: a real Arrow Flight SQL server, instrumented with porter-metrics,
//! under the load of its built-in Flight SQL client.
//!
//! ```text
//! cargo run --example server                      # Flight SQL on :50051, metrics on :9090
//! cargo run --example server -- --no-load         # serve only (bring your own client)
//! cargo run --example server -- --flight 127.0.0.1:0 --metrics 127.0.0.1:0 --seconds 5
//! curl -s http://127.0.0.1:9090/metrics | grep -E '^(flight|grpc_server|grpc_client)_'
//! ```
//!
//! It prints the bound addresses first, one per line, for scripts to read:
//!
//! ```text
//! flight: 127.0.0.1:50051
//! metrics: 127.0.0.1:9090
//! ```
//!
//! and runs until Ctrl-C (or `--seconds N`), then prints what the load generator saw.
//! Both listeners bind loopback unless told otherwise.
//!
//! The server (`porter_flight_sql::service`) answers statement queries, prepared
//! statements, bulk ingest and basic-auth handshakes over two in-memory tables; the load
//! generator (`porter_flight_sql::load`) sends a mix of them, with unknown tables, bad SQL
//! and wrong passwords among them. The scrape holds:
//!
//! * `grpc_server_started_total`, `grpc_server_handled_total`,
//!   `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`,
//!   `grpc_server_handling_seconds`: from porter-metrics' tower layer, by `grpc_type`,
//!   `grpc_service`, `grpc_method` (and `grpc_code`).
//! * `grpc_client_started_total`, `grpc_client_handled_total`,
//!   `grpc_client_msg_sent_total`, `grpc_client_msg_received_total`,
//!   `grpc_client_handling_seconds`: the load generator's side of the same calls, from the
//!   layer's client side.
//! * `flight_requests_total{method,status}`, `flight_errors_total`,
//!   `flight_request_duration_seconds{method}`, `flight_query_duration_seconds`,
//!   `flight_handler_duration_seconds`, `flight_requests_in_flight`,
//!   `flight_bytes_sent_total{method}`, `flight_result_cache_entries`: recorded by the
//!   handlers (see the `porter_flight_sql` documentation for the label sets).
//! * `process_*`: CPU seconds, resident memory, open file descriptors, start time.
//! * `tokio_*`: the runtime's workers, alive tasks, global queue depth, busy time and park
//!   counts, measured by `tokio-metrics` (`Builder::runtime_metrics`).
//! * `porter_metrics_*`: the library's own health.

use std::io::Write;
use std::time::Duration;

use porter_flight_sql::{run_load, serve, LoadConfig, Stop, Telemetry};
use porter_metrics::{Matcher, MetricsServer, NativeHistograms, PrometheusCollector};
use tokio::net::TcpListener;
use tokio::sync::watch;

const USAGE: &str =
    "usage: server [--flight ADDR] [--metrics ADDR] [--no-load] [--requests N] [--seconds N] [--clients N]";

/// The command line.
struct Args {
    flight: String,
    metrics: String,
    load: bool,
    seconds: Option<u64>,
    /// The load stops after this many requests (the server keeps serving).
    requests: Option<u64>,
    clients: usize,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self {
            flight: "127.0.0.1:50051".to_owned(),
            metrics: "127.0.0.1:9090".to_owned(),
            load: true,
            seconds: None,
            requests: None,
            clients: LoadConfig::default().clients,
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
            let number = |v: String| v.parse().map_err(|_| format!("{arg}: not a number: {v}"));
            match arg.as_str() {
                "--flight" => parsed.flight = value()?,
                "--metrics" => parsed.metrics = value()?,
                "--no-load" => parsed.load = false,
                "--seconds" => parsed.seconds = Some(number(value()?)?),
                "--requests" => parsed.requests = Some(number(value()?)?),
                "--clients" => parsed.clients = number(value()?)? as usize,
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(parsed)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(std::env::args().skip(1)).unwrap_or_else(|message| {
        eprintln!("{message}");
        std::process::exit(2);
    });

    // First thing: the metrics server. It installs the global recorder, so the collector,
    // the tower layer and the `metrics` macros all land in one scrape.
    let metrics = MetricsServer::builder()
        // Every latency histogram (`grpc_server_handling_seconds`, the handlers' timers) is
        // native as well as classic: protobuf scrapes carry both.
        .native_histograms_for_metric(
            Matcher::Suffix("_seconds".into()),
            NativeHistograms::default(),
        )?
        .process_metrics()
        // This runtime's workers, alive tasks, queue depth, busy time and parks.
        .runtime_metrics(&tokio::runtime::Handle::current())
        .build(&args.metrics);
    metrics.start()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();

    let listener = TcpListener::bind(&args.flight).await?;
    let flight = listener.local_addr()?;
    let metrics_addr = metrics
        .local_addr()
        .ok_or("the metrics server is not running")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "flight: {flight}")?;
    writeln!(stdout, "metrics: {metrics_addr}")?;
    stdout.flush()?;
    drop(stdout);

    let telemetry = Telemetry::new(PrometheusCollector::new());
    let (stop_server, mut server_stopped) = watch::channel(false);
    let shutdown = async move {
        let _ = server_stopped.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(serve(listener, telemetry.clone(), shutdown));

    let (stop_load, load_stopped) = watch::channel(false);
    let load = args.load.then(|| {
        let config = LoadConfig {
            clients: args.clients,
            // The clients' `grpc_client_*` series, in the same scrape.
            telemetry: Some(telemetry),
            ..LoadConfig::default()
        };
        let stop = match args.requests {
            Some(requests) => Stop::After(requests),
            None => Stop::Signal(load_stopped),
        };
        tokio::spawn(run_load(flight, config, stop))
    });

    let deadline = async {
        match args.seconds {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal?,
        () = deadline => {}
    }

    // The load first, so that no request of it meets a closing server.
    let _ = stop_load.send(true);
    if let Some(load) = load {
        let tally = load.await??;
        println!("load: {} requests", tally.total());
        for ((method, status), n) in &tally.requests {
            println!("load: {method} {status} {n}");
        }
    }
    let _ = stop_server.send(true);
    tokio::time::timeout(Duration::from_secs(5), server).await???;
    metrics.stop()?;
    Ok(())
}
