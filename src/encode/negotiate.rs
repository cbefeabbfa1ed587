//! Content negotiation: which [`Format`] and which [`Escaping`] a scrape's `Accept` header
//! asks for, as `prometheus/common`'s `expfmt` negotiates them.
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
//! A range of quality 0 is never chosen. Anything else is passed over; when nothing
//! matches, or there is no `Accept` header, the answer is the text format.
//!
//! Escaping: an `escaping=` parameter of a range taken before the chosen one (or of the
//! chosen one) sets the scheme, the last one winning, as in `expfmt`; a scraper that names
//! `allow-utf-8` in any range gets names as recorded in whatever format it gets, protobuf
//! included (Prometheus 3 names it on its text ranges only). Without any, names are escaped
//! with underscores and the `Content-Type` is today's, without `escaping`.

use super::escape::Escaping;
use super::protobuf;
use super::text::{openmetrics, prometheus as text};

/// An exposition format a scrape can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    /// The Prometheus text format: the default.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Delimited protobuf `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

/// What a scrape gets: the format, the escaping, and how to say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub(crate) format: Format,
    pub(crate) escaping: Escaping,
    /// Whether the scraper named an escaping (the `Content-Type` then says which).
    named: bool,
    /// Text asked for as `version=1.0.0`.
    text_1: bool,
}

impl Default for Negotiated {
    fn default() -> Self {
        Self::of(Format::Text)
    }
}

impl Negotiated {
    /// `format` with legacy names, as a scraper that names no escaping gets it.
    pub(crate) fn of(format: Format) -> Self {
        Self {
            format,
            escaping: Escaping::Underscores,
            named: false,
            text_1: false,
        }
    }

    /// The `Content-Type` of the response.
    pub(crate) fn content_type(&self) -> String {
        let base = match (self.format, self.text_1) {
            (Format::Text, false) => text::CONTENT_TYPE,
            (Format::Text, true) => "text/plain; version=1.0.0; charset=utf-8",
            (Format::OpenMetrics, _) => openmetrics::CONTENT_TYPE,
            (Format::Protobuf, _) => protobuf::CONTENT_TYPE,
        };
        match self.named {
            true => format!("{base}; escaping={}", self.escaping.as_str()),
            false => base.to_owned(),
        }
    }
}

/// The protobuf media type and the parameters it needs.
const PROTO_TYPE: &str = "application/vnd.google.protobuf";
const PROTO_PROTOCOL: &str = "io.prometheus.client.MetricFamily";

/// One media range, read.
struct Range {
    q: f32,
    /// The format we would serve for it, and whether it is text 1.0.0.
    format: Option<(Format, bool)>,
    escaping: Option<Escaping>,
}

/// What the `Accept` header values `accept` ask for (none: the text format).
pub(crate) fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Negotiated {
    let mut ranges: Vec<Range> = accept
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter_map(media_range)
        .collect();
    let utf8 = ranges
        .iter()
        .any(|r| r.q > 0.0 && r.escaping == Some(Escaping::AllowUtf8));
    // Stable: equal qualities keep the header's order.
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    let mut out = Negotiated::default();
    for range in ranges.iter().filter(|r| r.q > 0.0) {
        if let Some(escaping) = range.escaping {
            out.escaping = escaping;
            out.named = true;
        }
        if let Some((format, text_1)) = range.format {
            out.format = format;
            out.text_1 = text_1;
            break;
        }
    }
    if utf8 {
        out.escaping = Escaping::AllowUtf8;
        out.named = true;
    }
    out
}

/// One media range: its quality, what we would serve for it, its escaping; `None` when it
/// cannot be read.
fn media_range(range: &str) -> Option<Range> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim();
    let (kind, subtype) = media.split_once('/')?;
    let (kind, subtype) = (kind.trim(), subtype.trim());
    let (mut q, mut version, mut proto, mut encoding, mut escaping) =
        (1.0f32, None, None, None, None);
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
        } else if key.eq_ignore_ascii_case("escaping") {
            escaping = Escaping::parse(value);
        }
    }
    let is = |t: &str, s: &str| kind.eq_ignore_ascii_case(t) && subtype.eq_ignore_ascii_case(s);
    let (proto_kind, proto_subtype) = PROTO_TYPE.split_once('/')?;
    let format = if is(proto_kind, proto_subtype) {
        (proto == Some(PROTO_PROTOCOL) && encoding == Some("delimited"))
            .then_some((Format::Protobuf, false))
    } else if is("application", "openmetrics-text") {
        matches!(version, None | Some("1.0.0" | "0.0.1")).then_some((Format::OpenMetrics, false))
    } else if is("text", "plain") {
        match version {
            None | Some("0.0.4") => Some((Format::Text, false)),
            Some("1.0.0") => Some((Format::Text, true)),
            _ => None,
        }
    } else {
        None
    };
    Some(Range {
        q,
        format,
        escaping,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Format {
        negotiate([accept]).format
    }

    /// Prometheus' own `Accept` headers, by version and settings.
    const PROMETHEUS_2_42: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_2_42_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_3_5: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_3_5_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    const PROMETHEUS_3_5_TEXT: &str = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    const PROMETHEUS_3_0: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.2,*/*;q=0.1";

    #[test]
    fn prometheus_headers_get_what_prometheus_prefers() {
        let old = negotiate([PROMETHEUS_2_42]);
        assert_eq!(
            (old.format, old.escaping),
            (Format::OpenMetrics, Escaping::Underscores)
        );
        assert_eq!(
            old.content_type(),
            openmetrics::CONTENT_TYPE,
            "2.42 sees what it always saw"
        );
        assert_eq!(pick(PROMETHEUS_2_42_NATIVE), Format::Protobuf);
        assert_eq!(
            negotiate([PROMETHEUS_2_42_NATIVE]).escaping,
            Escaping::Underscores
        );
        for (header, format) in [
            (PROMETHEUS_3_5, Format::OpenMetrics),
            (PROMETHEUS_3_5_NATIVE, Format::Protobuf),
            (PROMETHEUS_3_5_TEXT, Format::Text),
            (PROMETHEUS_3_0, Format::OpenMetrics),
        ] {
            let got = negotiate([header]);
            assert_eq!(
                (got.format, got.escaping),
                (format, Escaping::AllowUtf8),
                "{header}"
            );
            assert!(got.content_type().ends_with("; escaping=allow-utf-8"));
        }
        let text = negotiate([PROMETHEUS_3_5_TEXT]);
        assert_eq!(
            text.content_type(),
            "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
        );
    }

    #[test]
    fn escaping_is_the_last_named_up_to_the_chosen_range() {
        let got = negotiate([
            "application/openmetrics-text;escaping=dots;q=0.9,text/plain;escaping=values;q=0.5",
        ]);
        assert_eq!(
            (got.format, got.escaping),
            (Format::OpenMetrics, Escaping::Dots)
        );
        // A higher range we cannot serve still sets it.
        let got = negotiate(["text/html;escaping=values,text/plain;q=0.5"]);
        assert_eq!((got.format, got.escaping), (Format::Text, Escaping::Values));
        assert_eq!(
            got.content_type(),
            "text/plain; version=0.0.4; charset=utf-8; escaping=values"
        );
        // An unknown value is ignored.
        assert_eq!(
            negotiate(["text/plain;escaping=bogus"]).escaping,
            Escaping::Underscores
        );
        assert_eq!(
            negotiate(["text/plain;escaping=underscores"]).content_type(),
            format!("{}; escaping=underscores", text::CONTENT_TYPE)
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
            negotiate(["text/plain;q=0.1", "application/openmetrics-text"]).format,
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
        assert_eq!(negotiate([]), Negotiated::default());
        assert_eq!(pick(""), Format::Text);
        assert_eq!(pick("text/html, nonsense;;q=x"), Format::Text);
        assert_eq!(pick("application/openmetrics-text;q=bad"), Format::Text);
    }
}
