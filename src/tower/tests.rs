//! The layer driven by hand, without a server: settings survive clones, filters compose.

use std::convert::Infallible;
use std::future::Ready;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

use super::call::Protocol;
use super::trace::Traces;
use super::*;
use crate::{FilteringCollector, LocalRecorder, NoopCollector};

fn knows<P>(layer: &MetricsLayer<NoopCollector, P>, path: &str) -> bool {
    match &layer.shared().protocol {
        Protocol::Grpc { methods, .. } => methods.knows(path),
        Protocol::Http { .. } => false,
    }
}

#[test]
fn a_cloned_layer_is_still_configured_and_its_clone_keeps_its_own_settings() {
    let layer = MetricsLayer::grpc(NoopCollector);
    let kept = layer.clone();
    let named = layer.grpc_methods(["/a.B/C"]).without_exemplars();
    assert!(knows(&named, "/a.B/C"), "configured after a clone");
    assert!(matches!(named.shared().traces, Traces::Off));
    assert!(!knows(&kept, "/a.B/C"), "the clone keeps what it had");
    assert!(matches!(kept.shared().traces, Traces::W3c));
}

/// A unary gRPC method that reads its request and answers one message, then `OK`.
#[derive(Clone)]
struct Echo;

impl<B> Service<::http::Request<B>> for Echo {
    type Response = ::http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ::http::Request<B>) -> Self::Future {
        let mut response = ::http::Response::new(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])));
        response
            .headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        std::future::ready(Ok(response))
    }
}

#[test]
fn the_module_example_filter_drops_the_message_counts_and_keeps_the_calls() {
    let recorder = LocalRecorder::new();
    let collector = FilteringCollector::deny(recorder.collector()).prefix("grpc_server_msg_");
    let layer = MetricsLayer::grpc(Arc::new(collector));
    let mut service = layer.layer(Echo);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let request = ::http::Request::post("/echo.Echo/Say")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
            .expect("a request");
        let response = service.call(request).await.expect("answered");
        let body = response.into_body().collect().await.expect("a body");
        assert_eq!(body.to_bytes().len(), 5);
    });
    let text = recorder.render();
    let labels = r#"grpc_method="Say",grpc_service="echo.Echo",grpc_type="unknown""#;
    assert!(
        text.contains(&format!("grpc_server_started_total{{{labels}}} 1")),
        "{text}"
    );
    assert!(text.contains("grpc_server_handled_total{"), "{text}");
    assert!(
        text.contains("grpc_server_handling_seconds_count{"),
        "{text}"
    );
    assert!(!text.contains("grpc_server_msg_"), "dropped:\n{text}");
    assert!(
        text.contains("# HELP grpc_server_started_total gRPC calls the server began"),
        "the layer describes its series:\n{text}"
    );
}
