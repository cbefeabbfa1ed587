//! HTTP's vocabulary: OpenTelemetry's HTTP server series (names and HELP texts), and the
//! label values of a request's method, route and status.

use http::Method;

/// `http_server_request_duration_seconds`: name and HELP text.
pub(crate) const SECONDS: (&str, &str) = (
    "http_server_request_duration_seconds",
    "Seconds from an HTTP request's arrival to the end of its response body (or the client going away).",
);
/// `http_server_active_requests`: name and HELP text.
pub(crate) const ACTIVE: (&str, &str) = (
    "http_server_active_requests",
    "HTTP requests whose response has not ended yet.",
);

/// The route label of a request the route function did not match.
pub(crate) const UNMATCHED: &str = "unmatched";

/// OpenTelemetry's known HTTP methods; any other is `_OTHER`, so a client cannot explode
/// the label's cardinality.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

pub(crate) fn route_label(route: &Option<String>) -> &str {
    route.as_deref().unwrap_or(UNMATCHED)
}

/// A status code's three digits, written into `digits` (no allocation).
pub(crate) fn status_label(status: i64, digits: &mut [u8; 3]) -> &str {
    let status = u16::try_from(status).unwrap_or(0).clamp(100, 999);
    for (i, d) in [status / 100, status / 10 % 10, status % 10]
        .into_iter()
        .enumerate()
    {
        digits[i] = b'0' + d as u8;
    }
    std::str::from_utf8(digits).unwrap_or("500")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_routes_and_statuses_are_labelled_as_opentelemetry_does() {
        assert_eq!(method_label(&Method::from_bytes(b"FOO").unwrap()), "_OTHER");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let mut digits = [0u8; 3];
        assert_eq!(status_label(404, &mut digits), "404");
        assert_eq!(status_label(0, &mut digits), "100");
        assert_eq!(status_label(1000, &mut digits), "999");
        assert_eq!(route_label(&None), UNMATCHED);
    }
}
