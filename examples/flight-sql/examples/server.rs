//! The main example: a real Arrow Flight SQL server, instrumented with porter-metrics,
//! under the load of its built-in Flight SQL client.
//!
//! ```text
//! cargo run --example server                      # Flight SQL on :50051, metrics on :9090
//! cargo run --example server -- --no-load         # serve only (bring your own client)
//! cargo run --example server -- --flight 127.0.0.1:0 --metrics 127.0.0.1:0 --seconds 5
//! cargo run --example server -- --otlp http://127.0.0.1:8428/opentelemetry/v1/metrics
//! cargo run --example server -- --remote-write http://127.0.0.1:8428/api/v1/write --push-interval 5
//! cargo run --example server -- --web.config.file examples/prometheus/web-config.yml  # TLS, auth
//! cargo run --example server -- --help                # every flag, with its default
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
//! Both listeners bind loopback unless told otherwise. The push URLs above are
//! VictoriaMetrics' on its default port 8428 (it takes OTLP and Remote-Write); a Prometheus
//! started with `--web.enable-remote-write-receiver` takes Remote-Write at
//! `/api/v1/write` on its own port (not `--metrics`' 9090, where this program listens).
//! An error is printed with its causes, one per line, and the program exits 1; output
//! piped into a reader that stops early (`| head`) is cut, never a panic.
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
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use porter_flight_sql::{run_load, serve, LoadConfig, Stop, Telemetry};
use porter_metrics::{Matcher, MetricsServer, NativeHistograms, PrometheusCollector, PushTarget};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A real Arrow Flight SQL server, instrumented with porter-metrics, under the load of its
/// built-in Flight SQL client. Prometheus scrapes --metrics; --otlp and --remote-write push
/// the same metrics as well.
#[derive(Parser)]
#[command(name = "server")]
struct Args {
    /// Where the Flight SQL server listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    flight: String,
    /// Where the metrics endpoint listens (`GET /metrics`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    metrics: String,
    /// Serve only: no built-in load (bring your own Flight SQL client).
    #[arg(long)]
    no_load: bool,
    /// Stop the load after this many requests (the server keeps serving).
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Exit after this many seconds (default: at Ctrl-C).
    #[arg(long, value_name = "N")]
    seconds: Option<u64>,
    /// Concurrent load-generator clients (1 to 10 000; --no-load for none).
    #[arg(long, value_name = "N", default_value_t = LoadConfig::default().clients,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    clients: usize,
    /// Also push by OTLP/HTTP to this URL (for example
    /// http://127.0.0.1:8428/opentelemetry/v1/metrics, or a Collector's http://HOST:4318).
    #[arg(long, value_name = "URL")]
    otlp: Option<String>,
    /// Also push by Prometheus Remote-Write to this URL (2.0, falling back to 1.0; for
    /// example VictoriaMetrics' http://127.0.0.1:8428/api/v1/write, or the /api/v1/write of
    /// a Prometheus started with --web.enable-remote-write-receiver: a receiver, not this
    /// program's --metrics port).
    #[arg(long, value_name = "URL")]
    remote_write: Option<String>,
    /// How often to push, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    push_interval: u64,
    /// The service name pushes carry (OTLP `service.name`, Remote-Write `job`).
    #[arg(long, value_name = "NAME", default_value = "flight-sql")]
    service: String,
    /// Secure the metrics endpoint with an exporter-toolkit web config: TLS, client
    /// certificates, basic auth (see examples/prometheus/web-config.yml).
    #[arg(long = "web.config.file", value_name = "PATH")]
    web_config_file: Option<std::path::PathBuf>,
    /// Pushes over https trust this CA (PEM) instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    push_ca: Option<std::path::PathBuf>,
    /// Pushes present this client certificate (PEM), with --push-key (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "push_key")]
    push_cert: Option<std::path::PathBuf>,
    /// The key (PEM) of --push-cert.
    #[arg(long, value_name = "FILE", requires = "push_cert")]
    push_key: Option<std::path::PathBuf>,
    /// Pushes check the receiver's certificate for this name instead of the URL's host.
    #[arg(long, value_name = "NAME")]
    push_server_name: Option<String>,
}

/// `target` with the TLS settings of `args`.
fn push_tls(args: &Args, mut target: PushTarget) -> Result<PushTarget, Box<dyn std::error::Error>> {
    if let Some(ca) = &args.push_ca {
        target = target.tls_ca_pem(std::fs::read(ca)?)?;
    }
    if let (Some(cert), Some(key)) = (&args.push_cert, &args.push_key) {
        target = target.tls_client_pem(std::fs::read(cert)?, std::fs::read(key)?)?;
    }
    if let Some(name) = &args.push_server_name {
        target = target.tls_server_name(name)?;
    }
    Ok(target)
}

/// Runs the program; an error is printed as its message and the chain of its causes (not
/// a debug struct), and the exit code is 1.
#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut cause = e.source();
            while let Some(source) = cause {
                eprintln!("  caused by: {source}");
                cause = source.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Writes a line to standard output. A reader that went away (`| head`) ends the output,
/// not the program: the line is dropped, and so are the next ones.
fn say(line: std::fmt::Arguments<'_>) {
    static CLOSED: AtomicBool = AtomicBool::new(false);
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // First thing: the metrics server. It installs the global recorder, so the collector,
    // the tower layer and the `metrics` macros all land in one scrape (and in every push).
    let mut builder = MetricsServer::builder()
        // Every latency histogram (`grpc_server_handling_seconds`, the handlers' timers) is
        // native as well as classic: protobuf scrapes carry both.
        .native_histograms_for_metric(
            Matcher::Suffix("_seconds".into()),
            NativeHistograms::default(),
        )?
        .process_metrics()
        // This runtime's workers, alive tasks, queue depth, busy time and parks.
        .runtime_metrics(&tokio::runtime::Handle::current())
        .service_name(&args.service);
    let interval = Duration::from_secs(args.push_interval);
    if let Some(url) = &args.otlp {
        builder = builder.push(push_tls(&args, PushTarget::otlp(url)?.interval(interval)?)?);
    }
    if let Some(url) = &args.remote_write {
        builder = builder.push(push_tls(
            &args,
            PushTarget::remote_write(url)?.interval(interval)?,
        )?);
    }
    if let Some(path) = &args.web_config_file {
        builder = builder.web_config_file(path)?;
    }
    let metrics = builder.build(&args.metrics);
    metrics.start()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();

    let listener = TcpListener::bind(&args.flight).await?;
    let flight = listener.local_addr()?;
    let metrics_addr = metrics
        .local_addr()
        .ok_or("the metrics server is not running")?;
    say(format_args!("flight: {flight}"));
    say(format_args!("metrics: {metrics_addr}"));

    let telemetry = Telemetry::new(PrometheusCollector::new());
    let (stop_server, mut server_stopped) = watch::channel(false);
    let shutdown = async move {
        let _ = server_stopped.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(serve(listener, telemetry.clone(), shutdown));

    let (stop_load, load_stopped) = watch::channel(false);
    let load = (!args.no_load).then(|| {
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
        say(format_args!("load: {} requests", tally.total()));
        for ((method, status), n) in &tally.requests {
            say(format_args!("load: {method} {status} {n}"));
        }
    }
    let _ = stop_server.send(true);
    tokio::time::timeout(Duration::from_secs(5), server).await???;
    metrics.stop()?;
    Ok(())
}
