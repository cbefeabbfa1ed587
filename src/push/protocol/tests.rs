use hyper::header::HeaderValue;

use super::*;

/// An answer of `status` with `headers` and an empty body.
pub(crate) fn answer(status: u16, headers: &[(&'static str, &str)]) -> Answer {
    with_body(status, headers, "")
}

pub(crate) fn with_body(status: u16, headers: &[(&'static str, &str)], body: &str) -> Answer {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, HeaderValue::from_str(value).expect("valid"));
    }
    Answer {
        status: StatusCode::from_u16(status).expect("valid"),
        headers: map,
        body: Bytes::from(body.to_owned()),
    }
}

#[test]
fn refusals_are_judged_as_the_specifications_say() {
    let server_error = |s: StatusCode| s.is_server_error();
    assert_eq!(
        refusal(&answer(429, &[("retry-after", "3")]), server_error),
        Verdict::Retry(Reason::Throttled, Some(Duration::from_secs(3)))
    );
    assert_eq!(
        refusal(&answer(503, &[]), server_error),
        Verdict::Retry(Reason::ServerError, None)
    );
    for dropped in [400, 415, 302, 404] {
        assert_eq!(
            refusal(&answer(dropped, &[]), server_error),
            Verdict::Drop(Reason::Rejected),
            "{dropped}"
        );
    }
}

#[test]
fn retry_after_is_read_in_both_forms() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
    let header = |value: &str| {
        let mut map = HeaderMap::new();
        map.insert(RETRY_AFTER, HeaderValue::from_str(value).expect("valid"));
        map
    };
    assert_eq!(
        retry_after(&header("120"), now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        retry_after(&header("Wed, 21 Oct 2015 07:28:00 GMT"), now),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        retry_after(&header("Wed, 21 Oct 2015 07:00:00 GMT"), now),
        Some(Duration::ZERO),
        "a date past is no wait"
    );
    assert_eq!(retry_after(&header("soon"), now), None);
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
}

#[test]
fn refused_native_histograms_are_recognised() {
    let prometheus = with_body(500, &[], "native histograms are disabled");
    assert!(refuses_native(&prometheus));
    assert!(!refuses_native(&answer(500, &[])));
}

#[test]
fn a_target_learns_each_fallback_once() {
    let mut learnt = Learnt::default();
    assert!(learnt.learn(Fallback::ClassicHistograms));
    assert!(!learnt.learn(Fallback::ClassicHistograms));
    assert!(learnt.has(Fallback::ClassicHistograms));
    assert!(!learnt.has(Fallback::RemoteWriteV1));
    let labels: Vec<&str> = Fallback::ALL.iter().map(|f| f.as_str()).collect();
    assert_eq!(
        labels,
        ["remote_write_v1", "escaped_names", "classic_histograms"]
    );
}
