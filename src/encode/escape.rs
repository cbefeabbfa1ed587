//! Name escaping: how a recorded name reaches a scraper that cannot take it as it is.
//!
//! The store keeps names and label keys as recorded; a scrape negotiates one of the
//! schemes of `prometheus/common`'s `expfmt` (see [`super::format`]) and every name is
//! written through it. Only names that are not legacy names are touched; label values
//! never are.
//!
//! | scheme | `http.server.duration` | `a_b` |
//! |---|---|---|
//! | `allow-utf-8` | `http.server.duration` (quoted where the format needs it) | `a_b` |
//! | `underscores` (the default) | `http_server_duration` (the exporter's sanitizers) | `a_b` |
//! | `dots` | `http_dot_server_dot_duration` | `a_b` |
//! | `values` | `U__http_2e_server_2e_duration` | `a_b` |

use std::borrow::Cow;
use std::fmt::Write as _;

use metrics_exporter_prometheus::formatting::{sanitize_label_key, sanitize_metric_name};

use crate::store::names::{is_legacy_label, is_legacy_name};

/// An escaping scheme; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) enum Escaping {
    AllowUtf8,
    #[default]
    Underscores,
    Dots,
    Values,
}

/// What a name is: a metric's or a label's (a label name cannot hold `:`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Of {
    Metric,
    Label,
}

impl Escaping {
    /// The scheme an `escaping=` parameter names, if it is one.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        match value {
            "allow-utf-8" => Some(Escaping::AllowUtf8),
            "underscores" => Some(Escaping::Underscores),
            "dots" => Some(Escaping::Dots),
            "values" => Some(Escaping::Values),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Escaping::AllowUtf8 => "allow-utf-8",
            Escaping::Underscores => "underscores",
            Escaping::Dots => "dots",
            Escaping::Values => "values",
        }
    }

    /// A metric name as this scheme writes it.
    pub(crate) fn name(self, name: &str) -> Cow<'_, str> {
        self.escape(name, Of::Metric)
    }

    /// A label key as this scheme writes it.
    pub(crate) fn key(self, key: &str) -> Cow<'_, str> {
        self.escape(key, Of::Label)
    }

    fn escape(self, name: &str, of: Of) -> Cow<'_, str> {
        let legacy = match of {
            Of::Metric => is_legacy_name(name),
            Of::Label => is_legacy_label(name),
        };
        if legacy || self == Escaping::AllowUtf8 {
            return Cow::Borrowed(name);
        }
        let escaped = match (self, of) {
            (Escaping::Underscores, Of::Metric) => sanitize_metric_name(name),
            (Escaping::Underscores, Of::Label) => sanitize_label_key(name),
            (Escaping::Dots, _) => rewrite(name, of, "", |c, out| match c {
                '_' => out.push_str("__"),
                '.' => out.push_str("_dot_"),
                _ => out.push_str("__"),
            }),
            (_, _) => rewrite(name, of, "U__", |c, out| match c {
                '_' => out.push_str("__"),
                c => {
                    let _ = write!(out, "_{:x}_", u32::from(c));
                }
            }),
        };
        // An escaped label key must not look reserved.
        match (of, escaped.starts_with("__")) {
            (Of::Label, true) => Cow::Owned(format!("exported_{escaped}")),
            _ => Cow::Owned(escaped),
        }
    }
}

/// `prefix`, then `name` with each character that is not valid where it stands replaced
/// by what `replace` writes (`_` always goes to `replace` too).
fn rewrite(name: &str, of: Of, prefix: &str, replace: impl Fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(prefix.len() + name.len() + 8);
    out.push_str(prefix);
    for (i, c) in name.char_indices() {
        let valid = c.is_ascii_alphabetic()
            || (c == ':' && of == Of::Metric)
            || (c.is_ascii_digit() && i > 0);
        if valid {
            out.push(c);
        } else {
            replace(c, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_escape_as_prometheus_common_does() {
        use Escaping::*;
        let name = "http.server.duration";
        assert_eq!(AllowUtf8.name(name), name);
        assert_eq!(Underscores.name(name), "http_server_duration");
        assert_eq!(Dots.name(name), "http_dot_server_dot_duration");
        assert_eq!(Values.name(name), "U__http_2e_server_2e_duration");
        assert_eq!(Dots.name("a.b_c"), "a_dot_b__c");
        assert_eq!(Values.name("a.b_c"), "U__a_2e_b__c");
        assert_eq!(Values.name("é"), "U___e9_");
        assert_eq!(Underscores.name("9lives"), "_lives");
        // Legacy names are never touched.
        for scheme in [AllowUtf8, Underscores, Dots, Values] {
            assert!(matches!(scheme.name("a_b:c"), Cow::Borrowed("a_b:c")));
            assert!(matches!(scheme.key("a_b"), Cow::Borrowed("a_b")));
        }
        // A label key cannot keep a colon, nor start like a reserved one.
        assert_eq!(Underscores.key("a:b"), "a_b");
        assert_eq!(Underscores.key(".x"), "_x");
        assert_eq!(Underscores.key("..x"), "exported___x");
        assert_eq!(Escaping::parse("dots"), Some(Dots));
        assert_eq!(Escaping::parse("nonsense"), None);
    }
}
