//! [`Matcher`]: which metrics a per-metric setting applies to.

/// Matches metric names, for settings given per metric (such as
/// [`Builder::buckets_for_metric`](crate::Builder::buckets_for_metric)). Where several
/// match, a full match wins over a prefix, and a prefix over a suffix.
///
/// ```
/// use porter_metrics::Matcher;
///
/// assert!(Matcher::Full("latency_seconds".into()).matches("latency_seconds"));
/// assert!(Matcher::Prefix("grpc_".into()).matches("grpc_server_handling_seconds"));
/// assert!(Matcher::Suffix("_bytes".into()).matches("response_bytes"));
/// assert!(!Matcher::Suffix("_bytes".into()).matches("response_seconds"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Matcher {
    /// The whole name.
    Full(String),
    /// Names starting with this.
    Prefix(String),
    /// Names ending with this.
    Suffix(String),
}

impl Matcher {
    /// Whether `name` (as exported, after sanitizing) matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Matcher::Full(full) => name == full,
            Matcher::Prefix(prefix) => name.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => name.ends_with(suffix.as_str()),
        }
    }
}
