//! Content negotiation: which [`Format`] a scrape's `Accept` header asks for, as
//! client_golang's promhttp negotiates it (`expfmt.NegotiateIncludingOpenMetrics`).
//!
//! The header's media ranges are taken in order of their quality (`q`, 1 when absent; ties
//! keep the header's order); the first one we can serve wins:
//!
//! | media range | format |
//! |---|---|
//! | `application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily` and `encoding=delimited` | [`Format::Protobuf`] |
//! | `application/openmetrics-text`, `version` `1.0.0`, `0.0.1` or absent | [`Format::OpenMetrics`] (1.0.0) |
//! | `text/plain`, `version` `0.0.4`, `1.0.0` or absent | [`Format::Text`] |
//!
//! A range of quality 0 is not acceptable and never chosen. Anything else (wildcards, other
//! types, other versions or encodings) is passed over, as client_golang does; when nothing
//! matches, or there is no `Accept` header, the answer is the text format.

use super::Format;

/// The protobuf media type and the parameters it needs.
const PROTO_TYPE: &str = "application/vnd.google.protobuf";
const PROTO_PROTOCOL: &str = "io.prometheus.client.MetricFamily";

/// The format for the `Accept` header values `accept` (none: the text format).
pub(crate) fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Format {
    let mut candidates: Vec<(f32, Format)> = accept
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter_map(media_range)
        .filter(|(q, _)| *q > 0.0)
        .collect();
    // Stable: equal qualities keep the header's order.
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    candidates
        .first()
        .map_or(Format::Text, |(_, format)| *format)
}

/// One media range: its quality and the format we would serve for it, or `None` when we
/// serve nothing for it (or it cannot be read).
fn media_range(range: &str) -> Option<(f32, Format)> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim();
    let (kind, subtype) = media.split_once('/')?;
    let (kind, subtype) = (kind.trim(), subtype.trim());
    let (mut q, mut version, mut proto, mut encoding) = (1.0f32, None, None, None);
    for param in parts {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim().trim_matches('"');
        if key.eq_ignore_ascii_case("q") {
            // An unreadable quality makes the range unusable rather than preferred.
            q = value
                .parse::<f32>()
                .ok()
                .filter(|q| q.is_finite())?
                .clamp(0.0, 1.0);
        } else if key.eq_ignore_ascii_case("version") {
            version = Some(value);
        } else if key.eq_ignore_ascii_case("proto") {
            proto = Some(value);
        } else if key.eq_ignore_ascii_case("encoding") {
            encoding = Some(value);
        }
    }
    let is = |t: &str, s: &str| kind.eq_ignore_ascii_case(t) && subtype.eq_ignore_ascii_case(s);
    let (proto_kind, proto_subtype) = PROTO_TYPE.split_once('/')?;
    let format = if is(proto_kind, proto_subtype) {
        (proto == Some(PROTO_PROTOCOL) && encoding == Some("delimited")).then_some(Format::Protobuf)
    } else if is("application", "openmetrics-text") {
        matches!(version, None | Some("1.0.0" | "0.0.1")).then_some(Format::OpenMetrics)
    } else if is("text", "plain") {
        matches!(version, None | Some("0.0.4" | "1.0.0")).then_some(Format::Text)
    } else {
        None
    }?;
    Some((q, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Format {
        negotiate([accept])
    }

    #[test]
    fn prometheus_headers_get_what_prometheus_prefers() {
        // Prometheus 2.42 and later, by default.
        assert_eq!(
            pick("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::OpenMetrics
        );
        // With native histograms on.
        assert_eq!(
            pick("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::Protobuf
        );
        // Prometheus 3 (escaping parameters are ignored).
        assert_eq!(
            pick("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,application/openmetrics-text;version=0.0.1;q=0.9,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.8,text/plain;version=0.0.4;q=0.7,*/*;q=0.6"),
            Format::OpenMetrics
        );
    }

    #[test]
    fn quality_decides_and_ties_keep_the_header_order() {
        assert_eq!(
            pick("text/plain;q=0.5, application/openmetrics-text;q=0.9"),
            Format::OpenMetrics
        );
        assert_eq!(
            pick("application/openmetrics-text, text/plain"),
            Format::OpenMetrics
        );
        assert_eq!(
            pick("text/plain, application/openmetrics-text"),
            Format::Text
        );
        assert_eq!(
            pick("text/plain;q=0.2, application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited; q=0.3"),
            Format::Protobuf
        );
        // Quality 0: not acceptable, even alone.
        assert_eq!(pick("application/openmetrics-text;q=0"), Format::Text);
        assert_eq!(
            pick("application/openmetrics-text;q=0, text/plain;q=0.1"),
            Format::Text
        );
        // Several header values read as one list.
        assert_eq!(
            negotiate(["text/plain;q=0.1", "application/openmetrics-text"]),
            Format::OpenMetrics
        );
    }

    #[test]
    fn only_what_we_serve_is_chosen() {
        // Protobuf needs the message and the delimited encoding.
        assert_eq!(pick("application/vnd.google.protobuf"), Format::Text);
        assert_eq!(
            pick("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"),
            Format::Text
        );
        assert_eq!(
            pick("application/vnd.google.protobuf;proto=other;encoding=delimited"),
            Format::Text
        );
        // Unknown versions and types are passed over, not answered with text.
        assert_eq!(
            pick("application/openmetrics-text;version=2.0.0, application/openmetrics-text;version=0.0.1;q=0.1"),
            Format::OpenMetrics
        );
        assert_eq!(
            pick("*/*, application/openmetrics-text;q=0.1"),
            Format::OpenMetrics
        );
        assert_eq!(
            pick("APPLICATION/OpenMetrics-Text; Version=\"1.0.0\""),
            Format::OpenMetrics
        );
        // Defaults.
        assert_eq!(negotiate([]), Format::Text);
        assert_eq!(pick(""), Format::Text);
        assert_eq!(pick("text/html, nonsense;;q=x"), Format::Text);
        assert_eq!(pick("application/openmetrics-text;q=bad"), Format::Text);
    }
}
