use super::*;

#[test]
fn urls_intervals_and_headers_are_checked() {
    for bad in ["", "nonsense", "ftp://h/x", "http://", "http:///path"] {
        assert!(PushTarget::pushgateway(bad).is_err(), "{bad:?}");
    }
    let target =
        PushTarget::pushgateway("https://user:pw@gw.example:9091/metrics/job/x").expect("valid");
    assert_eq!(
        target.endpoint(),
        "gw.example:9091",
        "no credentials, no path"
    );
    assert!(matches!(
        target.clone().interval(Duration::ZERO),
        Err(Error::InvalidInterval)
    ));
    assert!(target.clone().timeout(Duration::ZERO).is_err());
    assert!(matches!(
        target.clone().header("bad name", "v"),
        Err(Error::InvalidHeader { .. })
    ));
    assert!(target.clone().header("x-tenant", "line\nbreak").is_err());
    let twice = target
        .header("X-Scope-OrgID", "a")
        .and_then(|t| t.header("x-scope-orgid", "b"))
        .expect("valid");
    // The URL's credentials are one header, the tenant another.
    assert_eq!(twice.headers.len(), 2, "a header set again is replaced");
}

#[test]
fn the_protocols_own_headers_are_refused() {
    let target = PushTarget::pushgateway("http://gw:9091/metrics/job/x").expect("valid");
    for reserved in [
        "Content-Type",
        "content-encoding",
        "X-Prometheus-Remote-Write-Version",
        "Content-Length",
        "Host",
        "User-Agent",
    ] {
        assert!(
            matches!(
                target.clone().header(reserved, "x"),
                Err(Error::ReservedHeader { .. })
            ),
            "{reserved}"
        );
    }
    assert!(target.header("Authorization", "Bearer x").is_ok());
}

#[test]
fn credentials_in_the_url_become_basic_auth_and_never_show() {
    let target =
        PushTarget::pushgateway("https://us%40er:p%3Aw@gw:9091/metrics/job/x").expect("valid");
    assert_eq!(target.url(), "https://gw:9091/metrics/job/x");
    assert_eq!(target.uri.to_string(), "https://gw:9091/metrics/job/x");
    let auth = target
        .headers
        .iter()
        .find(|(n, _)| n == AUTHORIZATION)
        .map(|(_, v)| v.to_str().expect("text").to_owned());
    // base64("us@er:p:w")
    assert_eq!(auth.as_deref(), Some("Basic dXNAZXI6cDp3"));
    assert!(!format!("{target:?}").contains("p:w"));
    let bad = PushTarget::pushgateway("http://user:%zz@gw/x").expect_err("bad escape");
    assert!(
        !bad.to_string().contains("%zz"),
        "the password stays out of errors: {bad}"
    );
    assert!(
        PushTarget::pushgateway("http://a:b:c@gw/x").is_ok(),
        "':' in a password"
    );
    assert!(target.clone().basic_auth("a:b", "c").is_err());
    assert!(target.clone().basic_auth("a", "line\nbreak").is_err());
    assert!(
        target.tls_server_name("not a name!").is_err(),
        "TLS settings checked"
    );
}

#[test]
fn request_sizes_and_requests_in_flight_are_checked() {
    let target = PushTarget::pushgateway("http://gw/x").expect("valid");
    assert!(target.clone().max_request_size(0, 1).is_err());
    assert!(target.clone().max_request_size(1, 0).is_err());
    assert!(target.clone().requests_in_flight(0).is_err());
    assert!(target.clone().requests_in_flight(65).is_err());
    let set = target
        .max_request_size(5, 6)
        .and_then(|t| t.requests_in_flight(3))
        .expect("valid");
    assert_eq!(
        set.batching,
        Batching {
            samples: 5,
            bytes: 6,
            in_flight: 3
        }
    );
}

#[cfg(feature = "otlp")]
#[test]
fn a_bare_otlp_endpoint_gets_the_metrics_path() {
    let bare = PushTarget::otlp("http://collector:4318").expect("valid");
    assert_eq!(bare.uri.path(), "/v1/metrics");
    assert_eq!(bare.url(), "http://collector:4318");
    let full = PushTarget::otlp("http://vm:8428/opentelemetry/v1/metrics").expect("valid");
    assert_eq!(full.uri.path(), "/opentelemetry/v1/metrics");
}
