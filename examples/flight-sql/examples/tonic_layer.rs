//! The gRPC layer on a tonic server, as the guide shows it: tonic's health service under
//! `MetricsLayer::grpc`, called once by a client under `MetricsLayer::grpc_client`, then
//! both sides' series printed.
//!
//! ```text
//! cargo run -p porter-flight-sql --example tonic_layer
//! ```

use std::error::Error;

use porter_metrics::tower::{GrpcType, MetricsLayer};
use porter_metrics::LocalRecorder;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The health service's method types (any other method is `unknown`).
fn health_types(_service: &str, method: &str) -> GrpcType {
    match method {
        "Check" => GrpcType::Unary,
        "Watch" => GrpcType::ServerStream,
        _ => GrpcType::Unknown,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // A standalone recorder keeps the example self-contained; an application would use
    // `PrometheusCollector::new()` beside its `MetricsServer`.
    let server_side = LocalRecorder::new();
    let client_side = LocalRecorder::new();

    // The server: every service added under the layer is measured.
    let layer = MetricsLayer::grpc(server_side.collector()).grpc_types(health_types);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );

    // The client: a `Channel` takes `tonic::body::Body` only, so the layer's body is boxed
    // back (`porter_flight_sql::instrument_channel` does the same).
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let channel = tower::ServiceBuilder::new()
        .layer(MetricsLayer::grpc_client(client_side.collector()).grpc_types(health_types))
        .map_request(|r: http::Request<_>| r.map(tonic::body::Body::new))
        .service(channel);
    let mut client = HealthClient::new(channel);
    let answer = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    println!("# the server is {:?}", answer.into_inner().status());

    let _ = stop.send(());
    server.await??;
    for text in [server_side.render(), client_side.render()] {
        for line in text.lines().filter(|l| l.starts_with("grpc_")) {
            println!("{line}");
        }
    }
    Ok(())
}
