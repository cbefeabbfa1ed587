//! What every push target counts, written with the self-metrics, kept across a stop and a
//! start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::outcome::{Fallback, Reason};
use super::target::PushTarget;
use crate::encode::ExtraFamily;
use crate::store::kind::Kind;

/// One target's counts.
pub(crate) struct TargetStats {
    protocol: &'static str,
    endpoint: String,
    pushes: AtomicU64,
    bytes: AtomicU64,
    failures: [AtomicU64; Reason::ALL.len()],
    fallbacks: [AtomicU64; Fallback::ALL.len()],
    /// The last push's duration in seconds, as f64 bits.
    last_seconds: AtomicU64,
    /// When the last push succeeded, in seconds since the Unix epoch, as f64 bits.
    last_success: AtomicU64,
}

impl TargetStats {
    pub(crate) fn new(target: &PushTarget) -> Self {
        Self {
            protocol: target.protocol.as_str(),
            endpoint: target.endpoint(),
            pushes: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failures: Default::default(),
            fallbacks: Default::default(),
            last_seconds: AtomicU64::new(0),
            last_success: AtomicU64::new(0),
        }
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, reason: Reason) {
        let at = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.failures[at].fetch_add(1, Ordering::Relaxed);
    }

    /// The target took `fallback`.
    pub(crate) fn fell_back(&self, fallback: Fallback) {
        let at = Fallback::ALL
            .iter()
            .position(|f| *f == fallback)
            .unwrap_or(0);
        self.fallbacks[at].fetch_add(1, Ordering::Relaxed);
    }

    /// A push ended after `took`, successfully or not.
    pub(crate) fn ended(&self, took: Duration, success: bool) {
        self.last_seconds
            .store(took.as_secs_f64().to_bits(), Ordering::Relaxed);
        if success {
            self.pushes.fetch_add(1, Ordering::Relaxed);
            let now = crate::store::unix_now();
            self.last_success
                .store(now.as_secs_f64().to_bits(), Ordering::Relaxed);
        }
    }
}

/// Every target's counts, as the families written with the self-metrics.
pub(crate) fn families(targets: &[TargetStats]) -> Vec<ExtraFamily> {
    if targets.is_empty() {
        return Vec::new();
    }
    let labels = |t: &TargetStats| {
        vec![
            ("endpoint", t.endpoint.clone()),
            ("protocol", t.protocol.to_owned()),
        ]
    };
    let each = |value: &dyn Fn(&TargetStats) -> f64| -> Vec<(Vec<(&'static str, String)>, f64)> {
        targets.iter().map(|t| (labels(t), value(t))).collect()
    };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let float = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
    let (mut failures, mut fallbacks) = (Vec::new(), Vec::new());
    for t in targets {
        for (reason, count) in Reason::ALL.iter().zip(&t.failures) {
            let mut labels = labels(t);
            labels.push(("reason", reason.as_str().to_owned()));
            failures.push((labels, load(count)));
        }
        for (fallback, count) in Fallback::ALL.iter().zip(&t.fallbacks) {
            let mut labels = labels(t);
            labels.push(("reason", fallback.as_str().to_owned()));
            fallbacks.push((labels, load(count)));
        }
    }
    vec![
        ExtraFamily {
            name: "porter_metrics_pushes_total",
            help: "Pushes a receiver took whole, by protocol and endpoint.",
            kind: Kind::Counter,
            samples: each(&|t| load(&t.pushes)),
        },
        ExtraFamily {
            name: "porter_metrics_push_failures_total",
            help: "Push requests that failed, each attempt, by protocol, endpoint and reason.",
            kind: Kind::Counter,
            samples: failures,
        },
        ExtraFamily {
            name: "porter_metrics_push_fallbacks_total",
            help: "Times a receiver made a target send what it takes (Remote-Write 1.0, escaped names, classic buckets), by protocol, endpoint and reason.",
            kind: Kind::Counter,
            samples: fallbacks,
        },
        ExtraFamily {
            name: "porter_metrics_push_bytes_total",
            help: "Bytes of push request bodies sent (compressed), by protocol and endpoint.",
            kind: Kind::Counter,
            samples: each(&|t| load(&t.bytes)),
        },
        ExtraFamily {
            name: "porter_metrics_push_duration_seconds",
            help: "How long the last push took, retries included, by protocol and endpoint.",
            kind: Kind::Gauge,
            samples: each(&|t| float(&t.last_seconds)),
        },
        ExtraFamily {
            name: "porter_metrics_push_last_success_timestamp_seconds",
            help: "When a push last succeeded (0: never), by protocol and endpoint.",
            kind: Kind::Gauge,
            samples: each(&|t| float(&t.last_success)),
        },
    ]
}
