//! `MetricsLayer::grpc` with no method named, around tonic's own health service
//! (`tonic-health`), called by a real tonic client over loopback: every `grpc_server_*`
//! series agrees with the calls made, from the first call of each method and for a stream
//! still open, and made-up paths add one `unknown` series per metric at most.

use std::collections::BTreeMap;

use http::uri::PathAndQuery;
use porter_metrics::testing::Exposition;
use porter_metrics::tower::GrpcType;
use porter_metrics::LocalRecorder;
use tonic::{Code, Request};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::ServingStatus;
use tonic_prost::ProstCodec;

const SERVICE: &str = "grpc.health.v1.Health";

fn health_types(_: &str, method: &str) -> GrpcType {
    match method {
        "Check" => GrpcType::Unary,
        "Watch" => GrpcType::ServerStream,
        _ => GrpcType::Unknown,
    }
}

mod served;

use served::Served;

/// A tonic health server (`svc.Up` serving) under the layer, learning its methods.
async fn health() -> Served {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("svc.Up", ServingStatus::Serving)
        .await;
    let served = Served::start(
        LocalRecorder::new(),
        |layer| layer.grpc_types(health_types),
        tonic::service::Routes::new(service),
    )
    .await;
    // The statuses stay as set while the reporter lives: for the whole test.
    std::mem::forget(reporter);
    served
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

/// Every `grpc_server_*` series: counters by name and labels, histograms by their count.
fn grpc_series(s: &Exposition) -> BTreeMap<String, f64> {
    s.samples()
        .iter()
        .filter(|x| x.name.starts_with("grpc_server_"))
        .filter(|x| !x.name.ends_with("_bucket") && !x.name.ends_with("_sum"))
        .map(|x| {
            let labels: Vec<String> = x.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (format!("{}{{{}}}", x.name, labels.join(",")), x.value)
        })
        .collect()
}

/// The expected series of `method` (of `grpc_type`): started, handled by code, messages
/// received and sent, handling-time observations.
fn expect(
    all: &mut BTreeMap<String, f64>,
    grpc_type: &str,
    method: &str,
    codes: &[(&str, f64)],
    [received, sent]: [f64; 2],
) {
    let labels = format!("grpc_method={method},grpc_service={SERVICE},grpc_type={grpc_type}");
    let calls: f64 = codes.iter().map(|(_, n)| n).sum();
    all.insert(format!("grpc_server_started_total{{{labels}}}"), calls);
    for (code, n) in codes {
        all.insert(
            format!("grpc_server_handled_total{{grpc_code={code},{labels}}}"),
            *n,
        );
    }
    all.insert(
        format!("grpc_server_msg_received_total{{{labels}}}"),
        received,
    );
    all.insert(format!("grpc_server_msg_sent_total{{{labels}}}"), sent);
    all.insert(
        format!("grpc_server_handling_seconds_count{{{labels}}}"),
        calls,
    );
}

#[tokio::test]
async fn health_checks_and_a_cancelled_watch_are_counted_exactly_from_the_first_call() {
    let health = health().await;
    let mut client = HealthClient::new(health.channel().await);
    // The very first call is an error (its answer is trailers-only), then 3 OK, then one
    // more NotFound: 5 calls of Check.
    for service in ["svc.Nope", "svc.Up", "svc.Up", "svc.Up", "svc.Nope"] {
        let answer = client.check(check(service)).await;
        match service {
            "svc.Up" => assert_eq!(
                answer.expect("serving").into_inner().status,
                ServingStatus::Serving as i32
            ),
            _ => assert_eq!(answer.expect_err("unknown").code(), Code::NotFound),
        }
    }
    // One long Watch stream: counted under its method while it is open.
    let mut watch = client
        .watch(check("svc.Up"))
        .await
        .expect("the stream starts")
        .into_inner();
    let first = watch.message().await.expect("a status").expect("one");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let watching = format!(
        "grpc_server_started_total{{grpc_method=Watch,grpc_service={SERVICE},grpc_type=server_stream}}"
    );
    let open = health
        .scrape_when(|s| grpc_series(s).contains_key(&watching))
        .await;
    assert_eq!(
        grpc_series(&open).get(&watching),
        Some(&1.0),
        "an open stream"
    );
    assert_eq!(
        open.sum("grpc_server_handled_total"),
        5.0,
        "the stream has not ended"
    );
    // The client goes away.
    drop(watch);
    drop(client);

    let mut want = BTreeMap::new();
    expect(
        &mut want,
        "unary",
        "Check",
        &[("NotFound", 2.0), ("OK", 3.0)],
        [5.0, 3.0],
    );
    expect(
        &mut want,
        "server_stream",
        "Watch",
        &[("Canceled", 1.0)],
        [1.0, 1.0],
    );
    let s = health
        .scrape_when(|s| s.sum("grpc_server_handled_total") >= 6.0)
        .await;
    assert_eq!(grpc_series(&s), want, "every grpc_server_* series");
    assert_eq!(s.kind("grpc_server_handling_seconds"), Some("histogram"));
    assert!(
        s.help("grpc_server_started_total")
            .is_some_and(|h| h.starts_with("gRPC calls the server began")),
        "described by the layer"
    );
    health.stop().await;
}

/// Calls `path` once with a health request; its code.
async fn call(client: &mut tonic::client::Grpc<tonic::transport::Channel>, path: &str) -> Code {
    client.ready().await.expect("ready");
    let path = PathAndQuery::try_from(path.to_owned()).expect("a path");
    let codec = ProstCodec::<HealthCheckRequest, tonic_health::pb::HealthCheckResponse>::default();
    match client
        .unary(Request::new(check("svc.Up")), path, codec)
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn made_up_paths_add_one_unknown_series_per_metric_at_most() {
    let health = health().await;
    let mut client = tonic::client::Grpc::new(health.channel().await);
    let check_path = format!("/{SERVICE}/Check");
    assert_eq!(call(&mut client, &check_path).await, Code::Ok);
    let before = health
        .scrape_when(|s| s.sum("grpc_server_handled_total") >= 1.0)
        .await;
    for i in 0..3000u32 {
        // Unknown services (tonic's router) and unknown methods of the health service (its
        // generated server) alike.
        let path = match i % 2 {
            0 => format!("/evil.S{}/M{i}{}", i % 7, "x".repeat((i % 50) as usize)),
            _ => format!("/{SERVICE}/Nope{i}"),
        };
        assert_eq!(
            call(&mut client, &path).await,
            Code::Unimplemented,
            "{path}"
        );
    }
    let after = health
        .scrape_when(|s| s.sum("grpc_server_handled_total") >= 3001.0)
        .await;
    let unknown = "grpc_method=unknown,grpc_service=unknown,grpc_type=unknown";
    let mut want = grpc_series(&before);
    // The router answers without reading the request or sending a message: no message
    // series.
    want.insert(format!("grpc_server_started_total{{{unknown}}}"), 3000.0);
    want.insert(
        format!("grpc_server_handled_total{{grpc_code=Unimplemented,{unknown}}}"),
        3000.0,
    );
    want.insert(
        format!("grpc_server_handling_seconds_count{{{unknown}}}"),
        3000.0,
    );
    assert_eq!(grpc_series(&after), want, "one unknown series per metric");
    health.stop().await;
}
