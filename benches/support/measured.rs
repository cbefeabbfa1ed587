//! Neon's `measured` 0.0.25 as the scale and encode benches run it: one counter family and
//! one histogram family (Prometheus' default buckets) over `{user, method}`, both label
//! values interned with lasso.
#![allow(dead_code)]

use measured::lasso::ThreadedRodeo;
use measured::metric::histogram::Thresholds;
use measured::{CounterVec, HistogramVec, LabelGroup, MetricGroup};
use porter_metrics::DEFAULT_BUCKETS;

/// Histogram buckets: Prometheus' default, 11 bounds (and `+Inf`).
pub const BUCKETS: usize = DEFAULT_BUCKETS.len();

/// The label group: both values interned.
#[derive(LabelGroup)]
#[label(set = ScaleSet)]
pub struct Scale<'a> {
    #[label(dynamic_with = ThreadedRodeo, default)]
    pub user: &'a str,
    #[label(dynamic_with = ThreadedRodeo, default)]
    pub method: &'a str,
}

#[derive(MetricGroup)]
pub struct MeasuredCounters {
    /// Requests.
    pub scale_requests_total: CounterVec<ScaleSet>,
}

#[derive(MetricGroup)]
pub struct MeasuredHistograms {
    /// Request latency.
    pub scale_request_seconds: HistogramVec<ScaleSet, BUCKETS>,
}

impl MeasuredCounters {
    pub fn new() -> Self {
        Self {
            scale_requests_total: CounterVec::with_label_set(ScaleSet::new()),
        }
    }
}

impl MeasuredHistograms {
    pub fn new() -> Self {
        Self {
            scale_request_seconds: HistogramVec::with_label_set_and_metadata(
                ScaleSet::new(),
                Thresholds::with_buckets(DEFAULT_BUCKETS),
            ),
        }
    }
}
