//! Remote-Write 2.0 requests read back.

use prost::Message;

use super::v2::RemoteWriteV2;
use super::*;
use crate::encode::batch::{Cut, Limits, Marks, Sent};
use crate::encode::{
    Encoder, Exemplar as Exemplar_, FamilyHead, HistogramPoint, Native, Sample, Window,
};
use crate::store::Pairs;

fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> Labels<'a> {
    Labels::fixed(pairs, &[])
}

/// A series read back: its labels, resolved, and its samples' values.
type Read = (Vec<(String, String)>, Vec<f64>);

/// The request, and each of its series read back.
fn read(out: &[u8]) -> (Request, Vec<Read>) {
    let request = Request::decode(out).expect("a valid request");
    let symbol = |r: &u32| request.symbols[*r as usize].clone();
    let series = request
        .timeseries
        .iter()
        .map(|ts| {
            let labels = ts
                .labels_refs
                .chunks(2)
                .map(|p| (symbol(&p[0]), symbol(&p[1])))
                .collect();
            (labels, ts.samples.iter().map(|s| s.value).collect())
        })
        .collect();
    (request, series)
}

/// The requests `write` makes an encoder send, within `limits`.
fn requests(
    identity: &[(String, String)],
    window: Window,
    limits: Limits,
    write: impl FnOnce(&mut RemoteWriteV2<'_>),
) -> Vec<(Vec<u8>, Sent)> {
    let (mut out, mut symbols) = (Vec::new(), Symbols::default());
    let mut bodies = Vec::new();
    let mut sink = |body: &[u8], sent: Sent| {
        bodies.push((body.to_vec(), sent));
        true
    };
    let cut = Cut::new(limits, &mut sink);
    let mut rw = RemoteWriteV2::new(&mut out, &mut symbols, identity, 1_000, window, true, cut);
    write(&mut rw);
    rw.finish();
    drop(rw);
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

#[test]
fn series_are_named_as_scraped_with_sorted_labels_and_identity() {
    let identity = [
        ("job".to_owned(), "api".to_owned()),
        ("instance".to_owned(), "h:1".to_owned()),
    ];
    let bodies = requests(&identity, Window::ALL, Limits::NONE, |rw| {
        rw.family(&FamilyHead {
            name: "app.jobs.done",
            kind: Kind::Counter,
            help: Some("Jobs."),
            unit: Some(metrics::Unit::Seconds),
        });
        let pairs = [("zone", "b"), ("Area", "x"), ("job", "mine"), ("empty", "")];
        let sample = Sample {
            name: "app.jobs.done",
            labels: labels(&pairs),
            start_ms: Some(500),
        };
        let trace = Pairs::from_flat(&["trace_id", "abc", "span_id", "def"]);
        let exemplar = Exemplar_ {
            labels: &trace,
            value: 1.0,
            timestamp: 0.9,
        };
        rw.counter(&sample, 7, Some(&exemplar));
    });
    let (out, sent) = &bodies[0];
    assert_eq!(
        *sent,
        Sent {
            samples: 1,
            histograms: 0,
            exemplars: 1
        }
    );
    let (request, series) = read(out);
    assert_eq!(request.symbols[0], "");
    let (labels, values) = &series[0];
    let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["Area", "__name__", "instance", "job", "zone"]);
    assert!(labels.contains(&("__name__".into(), "app.jobs.done_total".into())));
    assert!(
        labels.contains(&("job".into(), "mine".into())),
        "its own job wins"
    );
    assert_eq!(values, &[7.0]);
    let ts = &request.timeseries[0];
    assert_eq!(ts.created_timestamp, 500);
    assert_eq!(ts.samples[0].start_timestamp, 500);
    assert_eq!(ts.samples[0].timestamp, 1_000);
    let metadata = ts.metadata.expect("metadata");
    assert_eq!(metadata.r#type, 1);
    assert_eq!(request.symbols[metadata.help_ref as usize], "Jobs.");
    assert_eq!(request.symbols[metadata.unit_ref as usize], "seconds");
    let exemplar = &ts.exemplars[0];
    assert_eq!(exemplar.timestamp, 900);
    let keys: Vec<&str> = exemplar
        .labels_refs
        .chunks(2)
        .map(|p| request.symbols[p[0] as usize].as_str())
        .collect();
    assert_eq!(keys, ["span_id", "trace_id"], "exemplar labels sorted");
    let unique: std::collections::HashSet<&String> = request.symbols.iter().collect();
    assert_eq!(unique.len(), request.symbols.len(), "each symbol once");
}

fn native_point<'a>(positive: &'a [(i32, u64)]) -> HistogramPoint<'a> {
    HistogramPoint {
        bounds: &[0.5],
        counts: &[1, 2],
        count: 3,
        sum: 4.5,
        exemplars: &[],
        native: Some(Native {
            schema: 0,
            zero_threshold: 0.0,
            zero_count: 0,
            positive,
            negative: &[],
        }),
    }
}

fn names(series: &[Read]) -> Vec<&str> {
    series
        .iter()
        .map(|(l, _)| {
            l.iter()
                .find(|(k, _)| k == "__name__")
                .map_or("", |(_, v)| v.as_str())
        })
        .collect()
}

#[test]
fn a_native_histogram_is_sent_beside_its_classic_series() {
    let positive = [(1, 2), (3, 1)];
    let bodies = requests(&[], Window::ALL, Limits::NONE, |rw| {
        rw.family(&head("lat", Kind::Histogram));
        let sample = Sample {
            name: "lat",
            labels: labels(&[]),
            start_ms: None,
        };
        rw.histogram(&sample, &native_point(&positive));
    });
    let (out, sent) = &bodies[0];
    assert_eq!((sent.samples, sent.histograms, sent.exemplars), (4, 1, 0));
    let (request, series) = read(out);
    assert_eq!(
        names(&series),
        ["lat_bucket", "lat_bucket", "lat_sum", "lat_count", "lat"]
    );
    assert_eq!(series[1].1, [3.0], "cumulative");
    assert!(series[1].0.contains(&("le".into(), "+Inf".into())));
    let native = &request.timeseries[4].histograms[0];
    assert_eq!((native.count_int, native.schema), (3, 0));
    assert_eq!(native.positive_deltas, [2, -1]);
    assert_eq!(native.positive_spans.len(), 2);
}

#[test]
fn exemplars_outside_the_window_stay_home_and_the_rest_go_in_time_order() {
    let window = Window { from: 1.0, to: 3.0 };
    let trace = Pairs::from_flat(&["trace_id", "t"]);
    let at = |timestamp| {
        Some(Exemplar_ {
            labels: &trace,
            value: 1.0,
            timestamp,
        })
    };
    // Per bucket: too old, in, too new, in (older than the one before).
    let exemplars = [at(0.5), at(2.5), at(3.0), at(1.5)];
    let bodies = requests(&[], window, Limits::NONE, |rw| {
        rw.family(&head("lat", Kind::Histogram));
        let point = HistogramPoint {
            bounds: &[],
            counts: &[4],
            count: 4,
            sum: 4.0,
            exemplars: &exemplars,
            native: Some(Native {
                schema: 0,
                zero_threshold: 0.0,
                zero_count: 0,
                positive: &[(1, 4)],
                negative: &[],
            }),
        };
        let sample = Sample {
            name: "lat",
            labels: labels(&[]),
            start_ms: None,
        };
        rw.histogram(&sample, &point);
    });
    let request = Request::decode(bodies[0].0.as_slice()).expect("valid");
    let times: Vec<i64> = request.timeseries[0]
        .exemplars
        .iter()
        .map(|e| e.timestamp)
        .collect();
    assert_eq!(times, [1_500, 2_500]);
}

#[test]
fn requests_are_cut_between_series_each_with_a_symbol_table_of_its_own() {
    let positive = [(1, 2), (3, 1)];
    let limits = Limits {
        samples: 6,
        bytes: usize::MAX,
    };
    let bodies = requests(&[], Window::ALL, limits, |rw| {
        rw.family(&FamilyHead {
            name: "lat",
            kind: Kind::Histogram,
            help: Some("Latency."),
            unit: None,
        });
        for path in ["/a", "/b", "/c"] {
            let pairs = [("path", path)];
            let sample = Sample {
                name: "lat",
                labels: labels(&pairs),
                start_ms: None,
            };
            rw.histogram(&sample, &native_point(&positive));
        }
    });
    // 5 points a histogram: each request is cut after the one that reaches 6.
    assert_eq!(bodies.len(), 2);
    let mut paths = Vec::new();
    for (body, sent) in &bodies {
        let (request, series) = read(body);
        assert_eq!(
            sent.samples + sent.histograms,
            series.len() as u64,
            "one point a series"
        );
        for ts in &request.timeseries {
            let metadata = ts.metadata.expect("metadata in every request");
            assert_eq!(request.symbols[metadata.help_ref as usize], "Latency.");
        }
        for (labels, _) in &series {
            let path = labels.iter().find(|(k, _)| k == "path").expect("a path");
            paths.push(path.1.clone());
        }
    }
    paths.dedup();
    assert_eq!(
        paths,
        ["/a", "/b", "/c"],
        "every series once, whole, in order"
    );
}

#[test]
fn stale_markers_end_every_series_without_starts_or_exemplars() {
    let positive = [(1, 2)];
    let trace = Pairs::from_flat(&["trace_id", "t"]);
    let exemplar = Exemplar_ {
        labels: &trace,
        value: 1.0,
        timestamp: 0.5,
    };
    let bodies = requests(&[], Window::ALL, Limits::NONE, |rw| {
        rw.stale_from(2_000);
        rw.family(&head("jobs", Kind::Counter));
        let sample = Sample {
            name: "jobs",
            labels: labels(&[]),
            start_ms: Some(10),
        };
        rw.counter(&sample, 3, Some(&exemplar));
        rw.family(&head("lat", Kind::Histogram));
        let sample = Sample {
            name: "lat",
            labels: labels(&[]),
            start_ms: Some(10),
        };
        rw.histogram(&sample, &native_point(&positive));
    });
    let (request, series) = read(&bodies[0].0);
    assert_eq!(bodies[0].1.exemplars, 0);
    for (ts, (_, values)) in request.timeseries.iter().zip(&series) {
        assert_eq!(ts.created_timestamp, 0);
        assert!(ts.exemplars.is_empty());
        for (sample, value) in ts.samples.iter().zip(values) {
            assert_eq!(value.to_bits(), super::STALE_NAN);
            assert_eq!((sample.timestamp, sample.start_timestamp), (2_000, 0));
        }
    }
    let native = &request
        .timeseries
        .last()
        .expect("a native series")
        .histograms[0];
    assert_eq!(native.sum.to_bits(), super::STALE_NAN);
    assert_eq!(native.count_int, 0);
    assert!(native.positive_spans.is_empty());
}

#[test]
fn without_native_histograms_only_classic_series_go() {
    let positive = [(1, 2)];
    let (mut out, mut symbols) = (Vec::new(), Symbols::default());
    let mut bodies = Vec::new();
    let mut sink = |body: &[u8], _: Sent| {
        bodies.push(body.to_vec());
        true
    };
    let cut = Cut::new(Limits::NONE, &mut sink);
    let mut rw = RemoteWriteV2::new(&mut out, &mut symbols, &[], 1, Window::ALL, false, cut);
    assert!(!rw.wants_native());
    rw.family(&head("lat", Kind::Histogram));
    let sample = Sample {
        name: "lat",
        labels: labels(&[]),
        start_ms: None,
    };
    rw.histogram(&sample, &native_point(&positive));
    rw.finish();
    drop(rw);
    let (_, series) = read(&bodies[0]);
    assert_eq!(
        names(&series),
        ["lat_bucket", "lat_bucket", "lat_sum", "lat_count"]
    );
}

#[test]
fn symbols_are_interned_once_and_cleared() {
    let mut symbols = Symbols::default();
    symbols.clear();
    let a = symbols.intern("a");
    assert_eq!(symbols.intern("a"), a);
    assert_ne!(symbols.intern("b"), a);
    assert_eq!(symbols.intern(""), 0);
    symbols.clear();
    assert_eq!(symbols.intern("b"), 1);
}
