//! What the gRPC layer adds to a call: a unary tonic call over loopback, through a server
//! with `MetricsLayer::grpc` and through the same server without it, in one run; then the
//! same call from a client whose channel is under `MetricsLayer::grpc_client` and from one
//! without it, to a server without the layer.
//!
//! Run with `cargo bench -p porter-flight-sql --bench layer`. The service is Arrow Flight's
//! `GetFlightInfo` of a tiny query on the example's in-memory service; the client is a real
//! tonic client on one connection, calls one at a time. The table printed at the end gives
//! both medians, the difference and the ratio (target: at most 2 % or 1 µs, whichever is
//! larger).

#[path = "../../../benches/support/estimates.rs"]
mod estimates;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::FlightDescriptor;
use criterion::Criterion;
use porter_flight_sql::{flight_grpc_types, instrument_channel, InMemoryService, Telemetry};
use porter_metrics::tower::MetricsLayer;
use porter_metrics::LocalRecorder;
use prost::Message;

/// Starts the example's service on 127.0.0.1:0, with the layer or without; returns where.
fn serve(runtime: &tokio::runtime::Runtime, layered: bool, recorder: &LocalRecorder) -> SocketAddr {
    let telemetry = Telemetry::new(recorder.collector());
    let service = FlightServiceServer::new(InMemoryService::new(telemetry));
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        if layered {
            let layer = MetricsLayer::grpc(recorder.collector()).grpc_types(flight_grpc_types);
            let router = tonic::transport::Server::builder()
                .layer(layer)
                .add_service(service);
            tokio::spawn(router.serve_with_incoming(incoming));
        } else {
            let router = tonic::transport::Server::builder().add_service(service);
            tokio::spawn(router.serve_with_incoming(incoming));
        }
        addr
    })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let recorder = LocalRecorder::new();
    let query = CommandStatementQuery {
        query: "SELECT * FROM orders LIMIT 1".into(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(query.as_any().encode_to_vec());
    let mut group = c.benchmark_group("grpc_unary");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    for (id, layered) in [("without_layer", false), ("with_layer", true)] {
        let addr = serve(&runtime, layered, &recorder);
        let client = runtime.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect");
            FlightServiceClient::new(channel)
        });
        group.bench_function(id, |b| {
            b.to_async(&runtime).iter(|| {
                let mut client = client.clone();
                let descriptor = descriptor.clone();
                async move {
                    let info = client
                        .get_flight_info(descriptor)
                        .await
                        .expect("a flight info");
                    black_box(info);
                }
            })
        });
    }
    group.finish();

    // The client side: one server without the layer, two clients.
    let addr = serve(&runtime, false, &recorder);
    let channel = runtime.block_on(async {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    });
    let layer = MetricsLayer::grpc_client(recorder.collector()).grpc_types(flight_grpc_types);
    let mut group = c.benchmark_group("grpc_unary_client");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    let plain = FlightServiceClient::new(channel.clone());
    let metered = FlightServiceClient::new(instrument_channel(channel, &layer));
    unary(
        &mut group,
        &runtime,
        "without_client_layer",
        plain,
        &descriptor,
    );
    unary(
        &mut group,
        &runtime,
        "with_client_layer",
        metered,
        &descriptor,
    );
    group.finish();
}

/// Benchmarks `GetFlightInfo` of `descriptor` through `client`, one call at a time.
fn unary<T>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    id: &str,
    client: FlightServiceClient<T>,
    descriptor: &FlightDescriptor,
) where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
    T::Future: Send,
{
    group.bench_function(id, |b| {
        b.to_async(runtime).iter(|| {
            let mut client = client.clone();
            let descriptor = descriptor.clone();
            async move {
                let info = client
                    .get_flight_info(descriptor)
                    .await
                    .expect("a flight info");
                black_box(info);
            }
        })
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let since = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    if !benching {
        return;
    }
    let median = |id: &str| estimates::median(since, &["grpc_unary", id]);
    match (median("without_layer"), median("with_layer")) {
        (Some(without), Some(with)) => {
            let added = with - without;
            let allowed = (0.02 * without).max(1_000.0);
            println!();
            println!("| unary GetFlightInfo over loopback | median |");
            println!("|---|---|");
            println!("| without the layer | {:.1} µs |", without / 1e3);
            println!("| with `MetricsLayer::grpc` | {:.1} µs |", with / 1e3);
            println!(
                "| added | {:.2} µs ({:+.1} %), allowed {:.2} µs: {} |",
                added / 1e3,
                100.0 * added / without,
                allowed / 1e3,
                if added <= allowed { "PASS" } else { "FAIL" }
            );
        }
        _ => println!("layer: medians not found (criterion's output moved?)"),
    }
    let median = |id: &str| estimates::median(since, &["grpc_unary_client", id]);
    match (median("without_client_layer"), median("with_client_layer")) {
        (Some(without), Some(with)) => {
            let added = with - without;
            let allowed = (0.02 * without).max(1_000.0);
            println!();
            println!("| unary GetFlightInfo over loopback, client side | median |");
            println!("|---|---|");
            println!("| without the client layer | {:.1} µs |", without / 1e3);
            println!(
                "| with `MetricsLayer::grpc_client` | {:.1} µs |",
                with / 1e3
            );
            println!(
                "| added | {:.2} µs ({:+.1} %), allowed {:.2} µs: {} |",
                added / 1e3,
                100.0 * added / without,
                allowed / 1e3,
                if added <= allowed { "PASS" } else { "FAIL" }
            );
        }
        _ => println!("client layer: medians not found (criterion's output moved?)"),
    }
}
