//! OTLP requests read back.

use super::*;
use crate::encode::batch::Limits;
use crate::encode::Native;
use crate::store::Pairs;

fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> Labels<'a> {
    Labels::fixed(pairs, &[])
}

fn decode(out: &[u8]) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest::decode(out).expect("a valid request")
}

/// The requests `write` makes an encoder (at 10 ns, points starting at 5 by default)
/// send, within `limits`.
fn requests(
    resource: &[(String, String)],
    now_ns: u64,
    limits: Limits,
    write: impl FnOnce(&mut Otlp<'_>),
) -> Vec<(ExportMetricsServiceRequest, Sent)> {
    let (mut out, mut buffers) = (Vec::new(), Buffers::default());
    let mut bodies = Vec::new();
    let mut sink = |body: &[u8], sent: Sent| {
        bodies.push((decode(body), sent));
        true
    };
    let cut = Cut::new(limits, &mut sink);
    let mut otlp = Otlp::new(
        &mut out,
        &mut buffers,
        resource,
        (now_ns, 5),
        Window::ALL,
        true,
        cut,
    );
    write(&mut otlp);
    otlp.finish();
    drop(otlp);
    bodies
}

fn head<'a>(name: &'a str, kind: Kind) -> FamilyHead<'a> {
    FamilyHead {
        name,
        kind,
        help: None,
        unit: None,
    }
}

fn metrics(request: &ExportMetricsServiceRequest) -> &[Metric] {
    &request.resource_metrics[0].scope_metrics[0].metrics
}

#[test]
fn counters_are_monotonic_cumulative_sums_named_without_total() {
    let resource = [("service.name".to_owned(), "api".to_owned())];
    let bodies = requests(&resource, 2_000_000_000, Limits::NONE, |otlp| {
        otlp.family(&FamilyHead {
            name: "app.jobs.done",
            kind: Kind::Counter,
            help: Some("Jobs."),
            unit: Some(metrics::Unit::Seconds),
        });
        let pairs = [("job.kind", "export")];
        let trace = Pairs::from_flat(&["trace_id", "4bf92f3577b34da6a3ce929d0e0e4736", "x", "y"]);
        let sample = Sample {
            name: "app.jobs.done",
            labels: labels(&pairs),
            start_ms: Some(1_000),
        };
        let exemplar_ = Exemplar_ {
            labels: &trace,
            value: 1.0,
            timestamp: 1.5,
        };
        otlp.counter(&sample, 3, Some(&exemplar_));
    });
    let (request, sent) = &bodies[0];
    assert_eq!((sent.samples, sent.exemplars), (1, 1));
    let rm = &request.resource_metrics[0];
    let attributes = &rm.resource.as_ref().expect("resource").attributes;
    assert_eq!(attributes[0].key, "service.name");
    let scope = &rm.scope_metrics[0];
    assert_eq!(scope.scope.as_ref().map(|s| s.name.as_str()), Some(SCOPE));
    let metric = &scope.metrics[0];
    assert_eq!(
        (metric.name.as_str(), metric.description.as_str()),
        ("app.jobs.done", "Jobs.")
    );
    assert_eq!(metric.unit, "s", "the unit, in UCUM");
    let Some(Data::Sum(sum)) = &metric.data else {
        panic!("a sum: {metric:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, CUMULATIVE);
    let point = &sum.data_points[0];
    assert_eq!(point.value, Some(Number::AsInt(3)));
    assert_eq!(point.start_time_unix_nano, 1_000_000_000);
    assert_eq!(point.time_unix_nano, 2_000_000_000);
    assert_eq!(point.attributes[0].key, "job.kind");
    assert_eq!(point.flags, 0);
    let exemplar = &point.exemplars[0];
    assert_eq!(exemplar.trace_id.len(), 16);
    assert_eq!(exemplar.trace_id[0], 0x4b);
    assert_eq!(
        exemplar.filtered_attributes.len(),
        1,
        "x stays an attribute"
    );
    assert_eq!(exemplar.time_unix_nano, 1_500_000_000);
}

#[test]
fn native_histograms_are_exponential_with_offsets_one_less() {
    let positive = [(0, 2), (2, 1)];
    let bodies = requests(&[], 10, Limits::NONE, |otlp| {
        otlp.family(&head("latency", Kind::Histogram));
        let point = HistogramPoint {
            bounds: &[],
            counts: &[4],
            count: 4,
            sum: 3.0,
            exemplars: &[],
            native: Some(Native {
                schema: 3,
                zero_threshold: 1e-128,
                zero_count: 1,
                positive: &positive,
                negative: &[],
            }),
        };
        let sample = Sample {
            name: "latency",
            labels: labels(&[]),
            start_ms: None,
        };
        otlp.histogram(&sample, &point);
    });
    let metric = &metrics(&bodies[0].0)[0];
    let Some(Data::ExponentialHistogram(histogram)) = &metric.data else {
        panic!("exponential: {metric:?}")
    };
    let point = &histogram.data_points[0];
    assert_eq!((point.scale, point.count, point.zero_count), (3, 4, 1));
    assert_eq!(point.start_time_unix_nano, 5, "the default start");
    assert_eq!(point.sum, Some(3.0));
    let positive = point.positive.as_ref().expect("positive buckets");
    assert_eq!(positive.offset, -1);
    assert_eq!(positive.bucket_counts, [2, 0, 1]);
    assert!(point.negative.is_none());
}

#[test]
fn classic_histograms_are_explicit_buckets_and_empty_families_are_left_out() {
    let bodies = requests(&[], 10, Limits::NONE, |otlp| {
        otlp.family(&head("empty", Kind::Gauge));
        otlp.family(&head("size", Kind::Histogram));
        let point = HistogramPoint {
            bounds: &[1.0, 2.0],
            counts: &[1, 0, 2],
            count: 3,
            sum: 9.0,
            exemplars: &[],
            native: None,
        };
        let pairs = [("k", "v")];
        let sample = Sample {
            name: "size",
            labels: labels(&pairs),
            start_ms: Some(7),
        };
        otlp.histogram(&sample, &point);
        // Buckets from below zero: the sum may hold negative observations.
        let point = HistogramPoint {
            bounds: &[-1.0, 2.0],
            ..point
        };
        otlp.histogram(&sample, &point);
    });
    let metrics = metrics(&bodies[0].0);
    assert_eq!(metrics.len(), 1, "a family without points is not a metric");
    let Some(Data::Histogram(histogram)) = &metrics[0].data else {
        panic!("explicit: {:?}", metrics[0])
    };
    let point = &histogram.data_points[0];
    assert_eq!(point.bucket_counts, [1, 0, 2]);
    assert_eq!(point.explicit_bounds, [1.0, 2.0]);
    assert_eq!((point.count, point.sum), (3, Some(9.0)));
    assert_eq!(
        histogram.data_points[1].sum, None,
        "no sum: negatives possible"
    );
}

#[test]
fn requests_are_cut_between_points_each_a_whole_request() {
    let resource = [("service.name".to_owned(), "api".to_owned())];
    let limits = Limits {
        samples: 2,
        bytes: usize::MAX,
    };
    let bodies = requests(&resource, 10, limits, |otlp| {
        otlp.family(&head("jobs", Kind::Counter));
        for kind in ["a", "b", "c"] {
            let pairs = [("kind", kind)];
            let sample = Sample {
                name: "jobs",
                labels: labels(&pairs),
                start_ms: None,
            };
            otlp.counter(&sample, 1, None);
        }
        otlp.family(&head("depth", Kind::Gauge));
        let sample = Sample {
            name: "depth",
            labels: labels(&[]),
            start_ms: None,
        };
        otlp.gauge(&sample, 2.0);
    });
    assert_eq!(bodies.len(), 2);
    let mut points = Vec::new();
    for (request, sent) in &bodies {
        let rm = &request.resource_metrics[0];
        assert!(rm.resource.is_some(), "every request has its resource");
        let mut held = 0;
        for metric in metrics(request) {
            let count = match &metric.data {
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Gauge(g)) => g.data_points.len(),
                other => panic!("{other:?}"),
            };
            held += count;
            points.push((metric.name.clone(), count));
        }
        assert_eq!(held as u64, sent.samples);
    }
    assert_eq!(
        points,
        [
            ("jobs".to_owned(), 2),
            ("jobs".to_owned(), 1),
            ("depth".to_owned(), 1)
        ],
        "a family cut in two is a metric in each request"
    );
}

#[test]
fn stale_markers_are_points_without_values_flagged_no_recorded_value() {
    let bodies = requests(&[], 10, Limits::NONE, |otlp| {
        otlp.stale_from(3);
        otlp.family(&head("jobs", Kind::Counter));
        let sample = Sample {
            name: "jobs",
            labels: labels(&[]),
            start_ms: Some(1),
        };
        otlp.counter(&sample, 4, None);
        otlp.family(&head("size", Kind::Histogram));
        let point = HistogramPoint {
            bounds: &[1.0],
            counts: &[1, 2],
            count: 3,
            sum: 9.0,
            exemplars: &[],
            native: None,
        };
        otlp.histogram(&sample, &point);
    });
    let metrics = metrics(&bodies[0].0);
    let Some(Data::Sum(sum)) = &metrics[0].data else {
        panic!("a sum")
    };
    let point = &sum.data_points[0];
    assert_eq!((point.value, point.flags), (None, NO_RECORDED_VALUE));
    assert_eq!(point.time_unix_nano, 3_000_000);
    let Some(Data::Histogram(histogram)) = &metrics[1].data else {
        panic!("a histogram")
    };
    let point = &histogram.data_points[0];
    assert_eq!(point.flags, NO_RECORDED_VALUE);
    assert_eq!((point.count, &point.bucket_counts[..]), (0, &[0, 0][..]));
    assert_eq!(
        point.explicit_bounds,
        [1.0],
        "its series are named by the bounds"
    );
}
