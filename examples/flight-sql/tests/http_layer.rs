//! `porter_metrics::tower::MetricsLayer::http` on a real axum app over loopback: a matched
//! route, an unmatched path and a non-standard method `FOO`, read back from the exposition.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::routing::get;
use axum::Router;
use porter_metrics::testing::Exposition;
use porter_metrics::tower::MetricsLayer;
use porter_metrics::LocalRecorder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `method path` with `Connection: close`; returns the status code.
async fn send(addr: SocketAddr, method: &str, path: &str) -> u16 {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

#[tokio::test]
async fn routes_are_templates_unmatched_paths_and_unknown_methods_are_folded() {
    let recorder = LocalRecorder::new();
    let layer = MetricsLayer::http(recorder.collector()).route(|request| {
        request
            .extensions
            .get::<MatchedPath>()
            .map(|path| path.as_str().to_owned())
    });
    let app = Router::new()
        .route("/users/{id}", get(|| async { "a user" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serves");
    });

    assert_eq!(send(addr, "GET", "/users/1").await, 200);
    assert_eq!(send(addr, "GET", "/users/2").await, 200);
    assert_eq!(send(addr, "GET", "/nowhere/3").await, 404);
    assert_eq!(send(addr, "FOO", "/users/1").await, 405);

    // Every response was read to its end: every duration is recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let scrape = loop {
        let scrape = Exposition::parse(&recorder.render()).expect("a valid exposition");
        let count = |labels: &[&str]| {
            scrape
                .histogram("http_server_request_duration_seconds", labels)
                .map(|h| h.count)
        };
        let all = [
            count(&[
                "http_request_method",
                "GET",
                "http_route",
                "/users/{id}",
                "http_response_status_code",
                "200",
            ]),
            count(&[
                "http_request_method",
                "GET",
                "http_route",
                "unmatched",
                "http_response_status_code",
                "404",
            ]),
            count(&[
                "http_request_method",
                "_OTHER",
                "http_route",
                "/users/{id}",
                "http_response_status_code",
                "405",
            ]),
        ];
        if all == [Some(2), Some(1), Some(1)] || std::time::Instant::now() > deadline {
            break scrape;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let duration = |labels: &[&str]| {
        scrape
            .histogram("http_server_request_duration_seconds", labels)
            .map(|h| h.count)
    };
    assert_eq!(
        duration(&[
            "http_request_method",
            "GET",
            "http_route",
            "/users/{id}",
            "http_response_status_code",
            "200"
        ]),
        Some(2),
        "the route is the template, never the raw path"
    );
    assert_eq!(
        duration(&[
            "http_request_method",
            "GET",
            "http_route",
            "unmatched",
            "http_response_status_code",
            "404"
        ]),
        Some(1)
    );
    assert_eq!(
        duration(&[
            "http_request_method",
            "_OTHER",
            "http_route",
            "/users/{id}",
            "http_response_status_code",
            "405"
        ]),
        Some(1),
        "FOO is folded into _OTHER"
    );
    assert_eq!(
        scrape.count("http_server_request_duration_seconds_count"),
        3
    );
    // Nothing in flight any more, per method and route.
    for (method, route) in [
        ("GET", "/users/{id}"),
        ("GET", "unmatched"),
        ("_OTHER", "/users/{id}"),
    ] {
        assert_eq!(
            scrape.value(
                "http_server_active_requests",
                &["http_request_method", method, "http_route", route]
            ),
            Some(0.0),
            "{method} {route}"
        );
    }
    assert!(
        !scrape
            .samples()
            .iter()
            .any(|s| s.labels.iter().any(|(_, v)| v == "/users/1")),
        "no raw path in any label"
    );
    server.abort();
}
