//! `porter_metrics::tower::MetricsLayer::grpc` around a real tonic server, called by a real
//! tonic client over loopback: unary calls (OK and error), a client stream, a server stream
//! that ends in an error carried by its trailers, a cancelled stream, an unknown method and
//! an unknown service. Each test reads the exact series from the exposition. The client
//! side (`MetricsLayer::grpc_client` around the tonic client's channel) is checked against
//! the server on the same calls, and alone on a refused connection and a missed deadline.
//!
//! The service is written by hand against tonic's server API (no protoc): `test.Calc` with
//! `Echo` (unary; a negative number is `NotFound`), `Sum` (client stream), `Count` (server
//! stream of N numbers, then `Internal` when N is odd) and `Chat` (bidi, echoes).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use http::uri::PathAndQuery;
use porter_flight_sql::{instrument_channel, MeteredChannel};
use porter_metrics::testing::Exposition;
use porter_metrics::tower::{GrpcType, MetricsLayer};
use porter_metrics::{LocalRecorder, PrometheusCollector};
use tonic::server::NamedService;
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The one message type: a number.
#[derive(Clone, PartialEq, prost::Message)]
struct Num {
    #[prost(int64, tag = "1")]
    value: i64,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type NumStream = Pin<Box<dyn Stream<Item = Result<Num, Status>> + Send>>;

/// The hand-written `test.Calc` server.
#[derive(Clone)]
struct Calc;

impl NamedService for Calc {
    const NAME: &'static str = "test.Calc";
}

fn grpc() -> tonic::server::Grpc<ProstCodec<Num, Num>> {
    tonic::server::Grpc::new(ProstCodec::default())
}

impl<B> tower_service::Service<http::Request<B>> for Calc
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            "/test.Calc/Echo" => Box::pin(async move {
                let echo = tower::service_fn(|r: Request<Num>| async move {
                    match r.into_inner().value {
                        v if v < 0 => Err(Status::not_found("negative")),
                        value => Ok(Response::new(Num { value })),
                    }
                });
                Ok(grpc().unary(echo, req).await)
            }),
            "/test.Calc/Sum" => Box::pin(async move {
                let sum = tower::service_fn(|r: Request<Streaming<Num>>| async move {
                    let mut stream = r.into_inner();
                    let mut value = 0;
                    while let Some(n) = stream.message().await? {
                        value += n.value;
                    }
                    Ok(Response::new(Num { value }))
                });
                Ok(grpc().client_streaming(sum, req).await)
            }),
            "/test.Calc/Count" => Box::pin(async move {
                let count = tower::service_fn(|r: Request<Num>| async move {
                    let n = r.into_inner().value;
                    let numbers = futures::stream::iter(0..n).map(|value| Ok(Num { value }));
                    let end = (n % 2 == 1).then(|| Err(Status::internal("odd")));
                    let stream: NumStream = Box::pin(numbers.chain(futures::stream::iter(end)));
                    Ok::<_, Status>(Response::new(stream))
                });
                Ok(grpc().server_streaming(count, req).await)
            }),
            "/test.Calc/Chat" => Box::pin(async move {
                let chat = tower::service_fn(|r: Request<Streaming<Num>>| async move {
                    let stream: NumStream = Box::pin(r.into_inner());
                    Ok::<_, Status>(Response::new(stream))
                });
                Ok(grpc().streaming(chat, req).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

fn calc_types(_: &str, method: &str) -> GrpcType {
    match method {
        "Echo" => GrpcType::Unary,
        "Sum" => GrpcType::ClientStream,
        "Count" => GrpcType::ServerStream,
        "Chat" => GrpcType::BidiStream,
        _ => GrpcType::Unknown,
    }
}

mod served;

use served::{Layer, Served};

/// The `test.Calc` server under the layer, its methods named.
async fn calc() -> Served {
    let methods = ["Echo", "Sum", "Count", "Chat"].map(|m| format!("/test.Calc/{m}"));
    calc_with(|layer| layer.grpc_methods(methods)).await
}

/// The same, the layer configured by `configure`.
async fn calc_with(configure: impl FnOnce(Layer) -> Layer) -> Served {
    let routes = tonic::service::Routes::new(Calc);
    Served::start(
        LocalRecorder::new(),
        |layer| configure(layer.grpc_types(calc_types)),
        routes,
    )
    .await
}

/// A tonic client of `served`.
async fn client(served: &Served) -> tonic::client::Grpc<tonic::transport::Channel> {
    let mut client = tonic::client::Grpc::new(served.channel().await);
    client.ready().await.expect("ready");
    client
}

fn path(method: &str) -> PathAndQuery {
    PathAndQuery::try_from(format!("/test.Calc/{method}")).expect("path")
}

/// The labels of a `test.Calc` method.
fn labels<'a>(grpc_type: &'a str, method: &'a str) -> [&'a str; 6] {
    [
        "grpc_type",
        grpc_type,
        "grpc_service",
        "test.Calc",
        "grpc_method",
        method,
    ]
}

/// The labels of a method with its code.
fn handled<'a>(grpc_type: &'a str, method: &'a str, code: &'a str) -> Vec<&'a str> {
    let mut all = labels(grpc_type, method).to_vec();
    all.extend(["grpc_code", code]);
    all
}

#[tokio::test]
async fn unary_calls_count_started_handled_messages_and_seconds() {
    let served = calc().await;
    let mut client = client(&served).await;
    for value in [1, 2, 3] {
        client.ready().await.expect("ready");
        let answer: Response<Num> = client
            .unary(
                Request::new(Num { value }),
                path("Echo"),
                ProstCodec::default(),
            )
            .await
            .expect("OK");
        assert_eq!(answer.into_inner().value, value);
    }
    client.ready().await.expect("ready");
    let err = client
        .unary::<Num, Num, _>(
            Request::new(Num { value: -1 }),
            path("Echo"),
            ProstCodec::default(),
        )
        .await
        .expect_err("a negative number is NotFound");
    assert_eq!(err.code(), tonic::Code::NotFound);

    let l = labels("unary", "Echo");
    let s = served
        .scrape_when(|s| s.sum("grpc_server_handled_total") >= 4.0)
        .await;
    assert_eq!(s.value("grpc_server_started_total", &l), Some(4.0));
    assert_eq!(
        s.value("grpc_server_handled_total", &handled("unary", "Echo", "OK")),
        Some(3.0)
    );
    assert_eq!(
        s.value(
            "grpc_server_handled_total",
            &handled("unary", "Echo", "NotFound")
        ),
        Some(1.0)
    );
    assert_eq!(s.value("grpc_server_msg_received_total", &l), Some(4.0));
    assert_eq!(s.value("grpc_server_msg_sent_total", &l), Some(3.0));
    assert_eq!(
        s.histogram("grpc_server_handling_seconds", &l)
            .map(|h| h.count),
        Some(4)
    );
    assert_eq!(s.kind("grpc_server_handling_seconds"), Some("histogram"));
    served.stop().await;
}

#[tokio::test]
async fn a_client_stream_counts_every_message_received() {
    let served = calc().await;
    let mut client = client(&served).await;
    let numbers = futures::stream::iter((1..=5).map(|value| Num { value }));
    client.ready().await.expect("ready");
    let sum: Response<Num> = client
        .client_streaming(Request::new(numbers), path("Sum"), ProstCodec::default())
        .await
        .expect("OK");
    assert_eq!(sum.into_inner().value, 15);

    let l = labels("client_stream", "Sum");
    let s = served
        .scrape_when(|s| s.sum("grpc_server_handled_total") >= 1.0)
        .await;
    assert_eq!(s.value("grpc_server_started_total", &l), Some(1.0));
    assert_eq!(
        s.value(
            "grpc_server_handled_total",
            &handled("client_stream", "Sum", "OK")
        ),
        Some(1.0)
    );
    assert_eq!(s.value("grpc_server_msg_received_total", &l), Some(5.0));
    assert_eq!(s.value("grpc_server_msg_sent_total", &l), Some(1.0));
    assert_eq!(
        s.histogram("grpc_server_handling_seconds", &l)
            .map(|h| h.count),
        Some(1)
    );
    served.stop().await;
}

#[tokio::test]
async fn a_server_stream_ending_in_an_error_is_counted_with_the_trailers_code() {
    let served = calc().await;
    let mut client = client(&served).await;
    // 3 numbers, then `Internal` in the trailers; then 4 numbers and OK.
    for (n, code) in [(3, Some(tonic::Code::Internal)), (4, None)] {
        client.ready().await.expect("ready");
        let response: Response<Streaming<Num>> = client
            .server_streaming(
                Request::new(Num { value: n }),
                path("Count"),
                ProstCodec::default(),
            )
            .await
            .expect("the stream starts");
        let mut stream = response.into_inner();
        let mut got = 0;
        let end = loop {
            match stream.message().await {
                Ok(Some(_)) => got += 1,
                Ok(None) => break None,
                Err(status) => break Some(status.code()),
            }
        };
        assert_eq!((got, end), (n, code));
    }

    let l = labels("server_stream", "Count");
    let s = served
        .scrape_when(|s| s.sum("grpc_server_handled_total") >= 2.0)
        .await;
    assert_eq!(s.value("grpc_server_started_total", &l), Some(2.0));
    assert_eq!(
        s.value(
            "grpc_server_handled_total",
            &handled("server_stream", "Count", "Internal")
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "grpc_server_handled_total",
            &handled("server_stream", "Count", "OK")
        ),
        Some(1.0)
    );
    assert_eq!(s.value("grpc_server_msg_received_total", &l), Some(2.0));
    assert_eq!(s.value("grpc_server_msg_sent_total", &l), Some(7.0));
    assert_eq!(
        s.histogram("grpc_server_handling_seconds", &l)
            .map(|h| h.count),
        Some(2)
    );
    served.stop().await;
}

#[tokio::test]
async fn a_cancelled_stream_is_counted_canceled() {
    let served = calc().await;
    let mut client = client(&served).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Num>(4);
    let outgoing = tokio_stream::wrappers::ReceiverStream::new(rx);
    client.ready().await.expect("ready");
    let response: Response<Streaming<Num>> = client
        .streaming(Request::new(outgoing), path("Chat"), ProstCodec::default())
        .await
        .expect("the stream starts");
    let mut incoming = response.into_inner();
    tx.send(Num { value: 7 }).await.expect("send");
    let echoed = incoming.message().await.expect("a message");
    assert_eq!(echoed.map(|n| n.value), Some(7));
    // The client goes away mid-stream.
    drop(incoming);
    drop(tx);
    drop(client);

    let l = labels("bidi_stream", "Chat");
    let canceled = handled("bidi_stream", "Chat", "Canceled");
    let s = served
        .scrape_when(|s| s.value("grpc_server_handled_total", &canceled).is_some())
        .await;
    assert_eq!(s.value("grpc_server_started_total", &l), Some(1.0));
    assert_eq!(s.value("grpc_server_handled_total", &canceled), Some(1.0));
    assert_eq!(s.sum("grpc_server_handled_total"), 1.0, "counted once");
    assert_eq!(s.value("grpc_server_msg_sent_total", &l), Some(1.0));
    assert_eq!(
        s.histogram("grpc_server_handling_seconds", &l)
            .map(|h| h.count),
        Some(1)
    );
    served.stop().await;
}

/// Calls `full` (a path) once with a unary request; its code.
async fn call(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    full: &str,
) -> tonic::Code {
    client.ready().await.expect("ready");
    let path = PathAndQuery::try_from(full.to_owned()).expect("a path");
    match client
        .unary::<Num, Num, _>(Request::new(Num { value: 1 }), path, ProstCodec::default())
        .await
    {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn unknown_methods_and_services_are_unimplemented_and_labelled_unknown() {
    let served = calc().await;
    let mut client = client(&served).await;
    for full in ["/test.Calc/Nope", "/nope.Service/Call"] {
        assert_eq!(
            call(&mut client, full).await,
            tonic::Code::Unimplemented,
            "{full}"
        );
    }
    let s = served
        .scrape_when(|s| s.sum("grpc_server_handled_total") >= 2.0)
        .await;
    let l = [
        "grpc_type",
        "unknown",
        "grpc_service",
        "unknown",
        "grpc_method",
        "unknown",
    ];
    assert_eq!(s.value("grpc_server_started_total", &l), Some(2.0));
    let mut h = l.to_vec();
    h.extend(["grpc_code", "Unimplemented"]);
    assert_eq!(s.value("grpc_server_handled_total", &h), Some(2.0));
    assert_eq!(
        s.histogram("grpc_server_handling_seconds", &l)
            .map(|h| h.count),
        Some(2)
    );
    let services: std::collections::BTreeSet<String> = s
        .samples()
        .iter()
        .filter_map(|x| x.labels.iter().find(|(k, _)| k == "grpc_service"))
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(
        services,
        ["unknown".to_owned()].into(),
        "no label from the paths"
    );
    served.stop().await;
}

#[tokio::test]
async fn random_paths_add_no_series() {
    let served = calc().await;
    let mut client = client(&served).await;
    assert_eq!(call(&mut client, "/test.Calc/Echo").await, tonic::Code::Ok);
    let series = |s: &Exposition| s.samples().len();
    let before = series(
        &served
            .scrape_when(|s| s.sum("grpc_server_handled_total") >= 1.0)
            .await,
    );
    for i in 0..3000u32 {
        let full = format!("/evil.S{}/M{}{}", i % 7, i, "x".repeat((i % 50) as usize));
        call(&mut client, &full).await;
    }
    let after = served
        .scrape_when(|s| s.sum("grpc_server_handled_total") >= 3001.0)
        .await;
    assert_eq!(after.sum("grpc_server_handled_total"), 3001.0);
    // One unknown series per metric: started, handled (Unimplemented), two message
    // counters, and the histogram's 14 lines.
    let added = series(&after) - before;
    assert!(added <= 5 + 14, "{added} lines added by 3000 made-up paths");
    served.stop().await;
}

#[tokio::test]
async fn without_named_methods_every_call_of_a_served_path_is_labelled_with_it() {
    let served = calc_with(|layer| layer).await;
    let mut client = client(&served).await;
    for _ in 0..3 {
        assert_eq!(call(&mut client, "/test.Calc/Echo").await, tonic::Code::Ok);
    }
    assert_eq!(
        call(&mut client, "/nope.Service/Call").await,
        tonic::Code::Unimplemented
    );
    let s = served
        .scrape_when(|s| s.sum("grpc_server_handled_total") >= 4.0)
        .await;
    let echo = handled("unary", "Echo", "OK");
    assert_eq!(
        s.value("grpc_server_handled_total", &echo),
        Some(3.0),
        "the first call is labelled with its method (decided at the response head)"
    );
    assert_eq!(
        s.value("grpc_server_started_total", &labels("unary", "Echo")),
        Some(3.0)
    );
    let unknown = [
        "grpc_type",
        "unknown",
        "grpc_service",
        "unknown",
        "grpc_method",
        "unknown",
    ];
    let mut ok = unknown.to_vec();
    ok.extend(["grpc_code", "OK"]);
    assert_eq!(s.value("grpc_server_handled_total", &ok), None);
    let mut refused = unknown.to_vec();
    refused.extend(["grpc_code", "Unimplemented"]);
    assert_eq!(s.value("grpc_server_handled_total", &refused), Some(1.0));
    assert_eq!(s.value("grpc_server_started_total", &unknown), Some(1.0));
    served.stop().await;
}

/// A tonic client whose channel is under the client layer, recording into `recorder`.
fn metered_client(
    channel: tonic::transport::Channel,
    recorder: &LocalRecorder,
) -> tonic::client::Grpc<MeteredChannel<PrometheusCollector>> {
    let layer = MetricsLayer::grpc_client(recorder.collector()).grpc_types(calc_types);
    tonic::client::Grpc::new(instrument_channel(channel, &layer))
}

/// One side's view of a method: (started, handled by code, messages of the request,
/// messages of the response, handling-time observations).
type View = (f64, BTreeMap<String, f64>, f64, f64, u64);

fn view(s: &Exposition, side: &str, grpc_type: &str, method: &str) -> View {
    let l = labels(grpc_type, method);
    let (request, response) = match side {
        "server" => ("received", "sent"),
        _ => ("sent", "received"),
    };
    let handled = s
        .samples()
        .iter()
        .filter(|x| x.name == format!("grpc_{side}_handled_total"))
        .filter(|x| {
            let has = |k: &str, v: &str| x.labels.iter().any(|(a, b)| a == k && b == v);
            has("grpc_method", method) && has("grpc_type", grpc_type)
        })
        .map(|x| {
            let code = x.labels.iter().find(|(k, _)| k == "grpc_code");
            (code.map_or(String::new(), |(_, v)| v.clone()), x.value)
        })
        .collect();
    let value = |name: String| s.value(&name, &l).unwrap_or(0.0);
    let timed = s.histogram(&format!("grpc_{side}_handling_seconds"), &l);
    (
        value(format!("grpc_{side}_started_total")),
        handled,
        value(format!("grpc_{side}_msg_{request}_total")),
        value(format!("grpc_{side}_msg_{response}_total")),
        timed.map_or(0, |h| h.count),
    )
}

fn codes(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect()
}

#[tokio::test]
async fn the_client_layer_counts_the_same_calls_as_the_server() {
    let served = calc().await;
    let client_recorder = LocalRecorder::new();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", served.addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = metered_client(channel, &client_recorder);

    // Unary: 3 OK, 1 NotFound.
    for value in [1, 2, 3, -1] {
        client.ready().await.expect("ready");
        let answer = client
            .unary::<Num, Num, _>(
                Request::new(Num { value }),
                path("Echo"),
                ProstCodec::default(),
            )
            .await;
        assert_eq!(
            answer.map(|r| r.into_inner().value).map_err(|s| s.code()),
            if value < 0 {
                Err(tonic::Code::NotFound)
            } else {
                Ok(value)
            }
        );
    }
    // A client stream of 5.
    client.ready().await.expect("ready");
    let numbers = futures::stream::iter((1..=5).map(|value| Num { value }));
    let sum: Response<Num> = client
        .client_streaming(Request::new(numbers), path("Sum"), ProstCodec::default())
        .await
        .expect("OK");
    assert_eq!(sum.into_inner().value, 15);
    // Server streams: 3 then Internal, 4 then OK.
    for n in [3, 4] {
        client.ready().await.expect("ready");
        let response: Response<Streaming<Num>> = client
            .server_streaming(
                Request::new(Num { value: n }),
                path("Count"),
                ProstCodec::default(),
            )
            .await
            .expect("the stream starts");
        let mut stream = response.into_inner();
        while let Ok(Some(_)) = stream.message().await {}
    }
    // A bidi stream the client cancels after one echo.
    let (tx, rx) = tokio::sync::mpsc::channel::<Num>(4);
    client.ready().await.expect("ready");
    let response: Response<Streaming<Num>> = client
        .streaming(
            Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path("Chat"),
            ProstCodec::default(),
        )
        .await
        .expect("the stream starts");
    let mut incoming = response.into_inner();
    tx.send(Num { value: 7 }).await.expect("send");
    let echoed = incoming.message().await.expect("a message");
    assert_eq!(echoed.map(|n| n.value), Some(7));
    drop(incoming);
    drop(tx);
    drop(client);

    let canceled = handled("bidi_stream", "Chat", "Canceled");
    let server = served
        .scrape_when(|s| {
            s.sum("grpc_server_handled_total") >= 8.0
                && s.value("grpc_server_handled_total", &canceled).is_some()
        })
        .await;
    let client = Exposition::parse(&client_recorder.render()).expect("a valid exposition");
    assert_eq!(
        client.kind("grpc_client_handling_seconds"),
        Some("histogram")
    );
    let expected = [
        (
            "unary",
            "Echo",
            (4.0, codes(&[("OK", 3.0), ("NotFound", 1.0)]), 4.0, 3.0, 4),
        ),
        (
            "client_stream",
            "Sum",
            (1.0, codes(&[("OK", 1.0)]), 5.0, 1.0, 1),
        ),
        (
            "server_stream",
            "Count",
            (2.0, codes(&[("Internal", 1.0), ("OK", 1.0)]), 2.0, 7.0, 2),
        ),
        (
            "bidi_stream",
            "Chat",
            (1.0, codes(&[("Canceled", 1.0)]), 1.0, 1.0, 1),
        ),
    ];
    for (grpc_type, method, want) in expected {
        assert_eq!(
            view(&client, "client", grpc_type, method),
            want,
            "client {method}"
        );
        assert_eq!(
            view(&server, "server", grpc_type, method),
            want,
            "server {method}"
        );
    }
    assert_eq!(
        client.sum("grpc_client_handled_total"),
        8.0,
        "each call ends once"
    );
    served.stop().await;
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_and_a_missed_deadline_deadline_exceeded() {
    let recorder = LocalRecorder::new();
    // Nothing listens on the port of a listener that was dropped.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let refused = closed.local_addr().expect("address");
    drop(closed);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{refused}"))
        .expect("endpoint")
        .connect_lazy();
    let mut client = metered_client(channel, &recorder);
    client.ready().await.expect("a lazy channel is ready");
    let err = client
        .unary::<Num, Num, _>(
            Request::new(Num { value: 1 }),
            path("Echo"),
            ProstCodec::default(),
        )
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unavailable);

    // A peer that accepts connections and never answers: the call's deadline passes.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("address");
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            connections.push(socket);
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{silent_addr}"))
        .expect("endpoint")
        .connect_lazy();
    let mut client = metered_client(channel, &recorder);
    client.ready().await.expect("a lazy channel is ready");
    let mut request = Request::new(Num { value: 2 });
    request.set_timeout(Duration::from_millis(100));
    let call = client.unary::<Num, Num, _>(request, path("Echo"), ProstCodec::default());
    let err = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("tonic's deadline fires first")
        .expect_err("no answer");
    // tonic reports its own timeout as `Cancelled`; the layer says what happened.
    assert_eq!(err.code(), tonic::Code::Cancelled);
    held.abort();

    let s = Exposition::parse(&recorder.render()).expect("a valid exposition");
    let want = (
        2.0,
        codes(&[("Unavailable", 1.0), ("DeadlineExceeded", 1.0)]),
        0.0,
        0.0,
        2,
    );
    let (started, handled, _, received, timed) = view(&s, "client", "unary", "Echo");
    assert_eq!((started, handled, 0.0, received, timed), want);
}
