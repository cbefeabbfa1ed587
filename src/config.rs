//! The validated settings of a pipeline and its server; [`Builder`](crate::Builder) fills
//! them in, checking each value as it is set.

use std::time::Duration;

use ipnet::IpNet;

use crate::matcher::Matcher;
use crate::store::names::is_legacy_label;
use crate::store::{Limits, NativeHistograms};
use crate::Error;

/// Prometheus' default histogram buckets, in seconds.
///
/// ```
/// use porter_metrics::{testing::Capture, Collector, DEFAULT_BUCKETS};
///
/// let capture = Capture::new();
/// capture.collector().record_histogram("latency_seconds", 0.2, &[]);
/// let latency = capture.exposition().unwrap().histogram("latency_seconds", &[]).unwrap();
/// assert_eq!(latency.buckets.len(), DEFAULT_BUCKETS.len() + 1); // and +Inf
/// assert_eq!(latency.bucket(DEFAULT_BUCKETS[5]), Some(1)); // 0.25
/// ```
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The shortest idle timeout: twice the shortest upkeep interval with expiry on (50 ms),
/// so that upkeep looks at every series at least twice per timeout. A shorter one given to
/// [`Builder::idle_timeout`](crate::Builder::idle_timeout) is raised to it.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_millis(100);

/// How often idle series are expired and the runtime metrics read.
const DEFAULT_UPKEEP: Duration = Duration::from_secs(5);

/// How long a client has to send a complete request head.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Validated settings, shared by servers, pushers and local recorders.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) buckets: Vec<f64>,
    pub(crate) bucket_overrides: Vec<(Matcher, Vec<f64>)>,
    pub(crate) native: Option<NativeHistograms>,
    pub(crate) native_overrides: Vec<(Matcher, NativeHistograms)>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) global_labels: Vec<(String, String)>,
    pub(crate) allowed: Vec<IpNet>,
    pub(crate) header_read_timeout: Duration,
    /// TLS, client certificates, basic auth and headers of the endpoint.
    #[cfg(feature = "tls")]
    pub(crate) web: Option<std::sync::Arc<crate::web_config::Checked>>,
    pub(crate) limits: Limits,
    pub(crate) upkeep: Duration,
    pub(crate) standalone: bool,
    /// Whether OpenMetrics scrapes get `_created` samples.
    pub(crate) created_timestamps: bool,
    #[cfg_attr(not(feature = "process"), allow(dead_code))]
    pub(crate) process: bool,
    /// Where and as whom to push.
    #[cfg(feature = "push")]
    pub(crate) push: PushSettings,
    /// The tokio runtime whose metrics the pipeline reports, if any.
    #[cfg(feature = "runtime")]
    pub(crate) runtime: Option<crate::runtime::RuntimeSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            buckets: DEFAULT_BUCKETS.to_vec(),
            bucket_overrides: Vec::new(),
            native: None,
            native_overrides: Vec::new(),
            idle_timeout: None,
            global_labels: Vec::new(),
            allowed: Vec::new(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            #[cfg(feature = "tls")]
            web: None,
            limits: Limits::default(),
            upkeep: DEFAULT_UPKEEP,
            standalone: false,
            created_timestamps: false,
            process: false,
            #[cfg(feature = "push")]
            push: PushSettings::default(),
            #[cfg(feature = "runtime")]
            runtime: None,
        }
    }
}

/// The push targets of a server or pusher, and who pushes.
#[cfg(feature = "push")]
#[derive(Clone, Debug, Default)]
pub(crate) struct PushSettings {
    pub(crate) targets: Vec<crate::PushTarget>,
    /// `service.name`, and Remote-Write's `job`.
    pub(crate) service_name: Option<String>,
    /// `service.instance.id`, and Remote-Write's `instance`.
    pub(crate) instance_id: Option<String>,
    /// OTLP resource attributes beyond those two.
    pub(crate) resource: Vec<(String, String)>,
}

impl Config {
    /// The first pipeline setting in which `self` and `other` differ, by its `Builder`
    /// method's name: the settings a pipeline is bound with once (the listener's and the
    /// pushes' are each server's own).
    pub(crate) fn conflict(&self, other: &Config) -> Option<&'static str> {
        #[cfg(feature = "runtime")]
        let runtime = self.runtime.as_ref().map(|r| r.handle.id())
            != other.runtime.as_ref().map(|r| r.handle.id());
        #[cfg(not(feature = "runtime"))]
        let runtime = false;
        [
            ("buckets", self.buckets != other.buckets),
            (
                "buckets_for_metric",
                self.bucket_overrides != other.bucket_overrides,
            ),
            ("native_histograms", self.native != other.native),
            (
                "native_histograms_for_metric",
                self.native_overrides != other.native_overrides,
            ),
            ("idle_timeout", self.idle_timeout != other.idle_timeout),
            ("global_label", self.global_labels != other.global_labels),
            ("limits", self.limits != other.limits),
            ("upkeep_interval", self.upkeep != other.upkeep),
            (
                "created_timestamps",
                self.created_timestamps != other.created_timestamps,
            ),
            ("process_metrics", self.process != other.process),
            ("runtime_metrics", runtime),
        ]
        .into_iter()
        .find_map(|(setting, differs)| differs.then_some(setting))
    }

    /// How often the upkeep thread runs: often enough to expire idle series on time.
    pub(crate) fn upkeep_interval(&self) -> Duration {
        match self.idle_timeout {
            Some(idle) => self.upkeep.min(idle / 8).max(Duration::from_millis(50)),
            None => self.upkeep,
        }
    }
}

/// Histogram buckets, checked: finite and non-empty, then sorted and de-duplicated.
pub(crate) fn buckets(values: &[f64]) -> Result<Vec<f64>, Error> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidBuckets {
            buckets: values.to_vec(),
        });
    }
    let mut buckets = values.to_vec();
    buckets.sort_by(f64::total_cmp);
    buckets.dedup();
    Ok(buckets)
}

/// Native histogram settings, checked.
pub(crate) fn native(settings: NativeHistograms) -> Result<NativeHistograms, Error> {
    if settings.is_valid() {
        Ok(settings)
    } else {
        Err(Error::InvalidNativeHistograms { settings })
    }
}

/// A global label key, checked: a legacy label name (so every scraper reads it), not
/// reserved, not `le` or `quantile`.
pub(crate) fn label_key(key: &str) -> Result<(), Error> {
    if is_legacy_label(key) && !key.starts_with("__") && key != "le" && key != "quantile" {
        Ok(())
    } else {
        Err(Error::InvalidLabelKey {
            key: key.to_owned(),
        })
    }
}

/// An allowlist entry, checked: an IP address (a network of one) or a CIDR network.
pub(crate) fn network(entry: &str) -> Result<IpNet, Error> {
    let trimmed = entry.trim();
    match trimmed.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => trimmed
            .parse::<IpNet>()
            .map_err(|source| Error::InvalidNetwork {
                entry: entry.to_owned(),
                source,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_checked_sorted_and_deduplicated() {
        assert!(buckets(&[1.0, 0.5, 1.0]).is_ok_and(|b| b == [0.5, 1.0]));
        assert!(buckets(&[]).is_err());
        assert!(buckets(&[f64::NAN]).is_err());
        assert!(buckets(&[f64::INFINITY]).is_err());
    }

    #[test]
    fn label_keys_and_networks_are_checked() {
        assert!(label_key("service").is_ok());
        for bad in ["", "__x", "le", "quantile", "a-b", "9a"] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
        assert!(network("10.0.0.0/8").is_ok());
        assert!(network(" 127.0.0.1 ").is_ok());
        assert!(network("::1").is_ok());
        assert!(matches!(
            network("not-an-ip"),
            Err(Error::InvalidNetwork { .. })
        ));
    }
}
