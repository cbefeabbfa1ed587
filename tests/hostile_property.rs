//! Property: whatever goes through the collector and the macros, from two threads, the
//! scrape parses strictly, valid series keep exact totals, and the self-metrics account for
//! every dropped sample and label.
//!
//! The check is post hoc, because which kind wins a name depends on the interleaving: the
//! rendered TYPE of each family says which calls landed, and the label rules of
//! porter-metrics (re-stated below as a model) say which series each call landed in.

use std::collections::HashMap;

use porter_metrics::testing::{Exposition, HistogramValue};
use porter_metrics::{Builder, Collector, Limits};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn type_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Clone, Debug)]
struct Call {
    kind: Kind,
    macro_path: bool,
    name: String,
    /// Flat pairs; may be odd for the collector.
    labels: Vec<String>,
    value: f64,
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "req_total", "lat", "lat_count", "lat_sum", "lat_bucket", "x", "x_bucket", "a.b",
            "a_b", "a-b", "", "porter_metrics_x", "9lives", "é", "le", "up",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,6}",
    ]
}

fn label_part() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "method", "GET", "le", "__name__", "a-b", "a_b", "", "quantile", "x\\y", "q\"t",
            "new\nline", "otel_metric_overflow", "__", "é", "1",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,5}",
    ]
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (-1000i32..1000).prop_map(|v| f64::from(v) / 8.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

fn call_strategy() -> impl Strategy<Value = Call> {
    (
        prop::sample::select(vec![Kind::Counter, Kind::Gauge, Kind::Histogram]),
        any::<bool>(),
        name_strategy(),
        prop::collection::vec(label_part(), 0..7),
        value_strategy(),
    )
        .prop_map(|(kind, macro_path, name, mut labels, value)| {
            if macro_path && labels.len() % 2 == 1 {
                labels.pop(); // macros take pairs
            }
            Call {
                kind,
                macro_path,
                name,
                labels,
                value,
            }
        })
}

// ---- The model: the layer's documented rules, re-stated independently. ----

fn sanitize(raw: &str, colon: bool) -> String {
    raw.chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (colon && c == ':')
                || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The first of `name`, `name_1`, `name_2`, ... that `free` accepts (a `__` start made
/// `exported_`).
fn first_free(name: &str, free: impl Fn(&str, u32) -> bool) -> String {
    let mut n = 0;
    loop {
        let mut candidate = match n {
            0 => name.to_owned(),
            _ => format!("{name}_{n}"),
        };
        if n > 0 && candidate.starts_with("__") {
            candidate = format!("exported_{candidate}");
        }
        if free(&candidate, n) {
            return candidate;
        }
        n += 1;
    }
}

/// The series a call lands in: sorted label pairs as a scrape with legacy names shows them.
fn canonical_labels(call: &Call) -> Vec<(String, String)> {
    // The store keeps keys as recorded, but for those no format accepts.
    let mut pending: Vec<(bool, String, String)> = Vec::new();
    for pair in call.labels.chunks_exact(2) {
        let (key, value) = (&pair[0], &pair[1]);
        if value.is_empty() {
            continue;
        }
        let reserved = key.is_empty()
            || key.starts_with("__")
            || (call.kind == Kind::Histogram && key == "le");
        let target = if reserved {
            format!("exported_{key}")
        } else {
            key.clone()
        };
        pending.push((reserved, target, value.clone()));
    }
    pending.sort();
    // The same pair given twice is one label.
    pending.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
    let first: Vec<String> = pending.iter().map(|p| p.1.clone()).collect();
    let mut stored: Vec<(String, String)> = Vec::new();
    for (_, key, value) in pending {
        let name = first_free(&key, |c, n| {
            !stored.iter().any(|(k, _)| k == c) && (n == 0 || !first.iter().any(|k| k == c))
        });
        stored.push((name, value));
    }
    stored.sort();
    // Written with legacy names: keys escaped with underscores; a legacy key keeps its
    // name, an escaped one that clashes takes the first free `_n`.
    let escaped = |k: &str| {
        let e = sanitize(k, false);
        if e.starts_with("__") {
            format!("exported_{e}")
        } else {
            e
        }
    };
    let legacy: Vec<String> = stored
        .iter()
        .filter(|(k, _)| escaped(k) == *k)
        .map(|(k, _)| k.clone())
        .collect();
    let clash = {
        let mut all: Vec<String> = stored.iter().map(|(k, _)| escaped(k)).collect();
        all.sort();
        all.windows(2).any(|w| w[0] == w[1])
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in stored {
        let name = escaped(&key);
        let name = if !clash || legacy.contains(&key) {
            name
        } else {
            let taken = |c: &str| legacy.iter().any(|k| k == c) || out.iter().any(|(k, _)| k == c);
            let mut n = 0;
            let mut candidate = name.clone();
            while taken(&candidate) {
                n += 1;
                candidate = format!("{name}_{n}");
                if candidate.starts_with("__") {
                    candidate = format!("exported_{candidate}");
                }
            }
            candidate
        };
        out.push((name, value));
    }
    out.sort();
    out
}

/// Keeps the calls of one raw name per name as written (and `_total` or not): names that
/// escape alike are left out of a scrape with legacy names but one (tested apart), and a
/// counter is one metric with or without `_total`.
fn one_raw_name_each(calls: Vec<Call>) -> Vec<Call> {
    let mut raw: HashMap<String, String> = HashMap::new();
    calls
        .into_iter()
        .filter(|c| {
            let written = sanitize(&c.name, true);
            let base = written
                .strip_suffix("_total")
                .unwrap_or(&written)
                .to_owned();
            raw.entry(base).or_insert_with(|| c.name.clone()) == &c.name
        })
        .collect()
}

fn run(calls: &[Call]) -> Result<(), TestCaseError> {
    let recorder = Builder::new()
        .limits(Limits::default().with_series_per_metric(6))
        .build_local();
    std::thread::scope(|s| {
        for half in 0..2 {
            let recorder = recorder.clone();
            s.spawn(move || {
                let collector = recorder.collector();
                metrics::with_local_recorder(&recorder, || {
                    for call in calls.iter().skip(half).step_by(2) {
                        record(&collector, call);
                    }
                });
            });
        }
    });

    let text = recorder.render();
    let scrape = Exposition::parse(&text)
        .map_err(|e| TestCaseError::fail(format!("invalid scrape: {e}\n{text}")))?;

    // Which calls landed: those whose family is rendered with their kind.
    // (family, labels) -> (calls, sum of values)
    type Series = (String, Vec<(String, String)>);
    let mut per_series: HashMap<Series, (u64, f64)> = HashMap::new();
    let mut per_family: HashMap<String, u64> = HashMap::new();
    let (mut dropped, mut dangling) = (0u64, 0u64);
    for call in calls {
        if !call.macro_path && call.labels.len() % 2 == 1 {
            dangling += 1;
        }
        let mut family = sanitize(&call.name, true);
        if call.kind == Kind::Histogram
            && ["bucket", "sum", "count"]
                .iter()
                .any(|s| family.ends_with(s))
        {
            family.push_str("_histogram");
        }
        let landed = !family.is_empty()
            && !family.starts_with("porter_metrics_")
            && scrape.kind(&family) == Some(call.kind.type_name());
        if !landed {
            dropped += 1;
            continue;
        }
        let labels = canonical_labels(call);
        if call.kind == Kind::Histogram && !call.value.is_finite() {
            dropped += 1;
            continue;
        }
        if call.kind != Kind::Gauge {
            let entry = per_series.entry((family.clone(), labels)).or_default();
            entry.0 += 1;
            entry.1 += call.value;
            *per_family.entry(family).or_default() += 1;
        }
    }

    let self_metric = |name: &str, reason: &str| {
        scrape
            .samples()
            .iter()
            .filter(|s| s.name == name && s.labels.iter().any(|(_, v)| v == reason))
            .map(|s| s.value)
            .sum::<f64>() as u64
    };
    let dropped_seen: u64 = scrape
        .samples()
        .iter()
        .filter(|s| s.name == "porter_metrics_dropped_samples_total")
        .map(|s| s.value as u64)
        .sum();
    prop_assert_eq!(
        dropped_seen,
        dropped,
        "every dropped sample is counted\n{}",
        text
    );
    prop_assert_eq!(
        self_metric("porter_metrics_dropped_labels_total", "dangling_key"),
        dangling
    );

    // Exact totals: a series either has all its calls, or overflowed entirely.
    let mut overflowed: HashMap<String, u64> = HashMap::new();
    for ((family, labels), (count, sum)) in &per_series {
        let flat: Vec<&str> = labels
            .iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        let seen = match scrape.kind(family) {
            Some("counter") => scrape.value(family, &flat).map(|v| v as u64),
            _ => scrape.histogram(family, &flat).map(|h: HistogramValue| {
                assert!((h.sum - sum).abs() < 1e-6 || h.count != *count);
                h.count
            }),
        };
        match seen {
            Some(seen) => prop_assert_eq!(seen, *count, "series {}{:?}\n{}", family, labels, text),
            None => *overflowed.entry(family.clone()).or_default() += count,
        }
    }
    for (family, count) in &overflowed {
        let in_overflow = match scrape.kind(family) {
            Some("counter") => scrape.value(family, &["otel_metric_overflow", "true"]),
            _ => scrape
                .histogram(family, &["otel_metric_overflow", "true"])
                .map(|h| h.count as f64),
        };
        prop_assert_eq!(
            in_overflow.map(|v| v as u64),
            Some(*count),
            "overflow of {}",
            family
        );
    }
    let total_rendered: u64 = per_family
        .keys()
        .map(|family| match scrape.kind(family) {
            Some("counter") => scrape.sum(family) as u64,
            _ => scrape.sum(&format!("{family}_count")) as u64,
        })
        .sum();
    prop_assert_eq!(total_rendered, per_family.values().sum::<u64>());
    Ok(())
}

fn record(collector: &impl Collector, call: &Call) {
    let pairs: Vec<&str> = call.labels.iter().map(String::as_str).collect();
    if call.macro_path {
        let labels: Vec<metrics::Label> = call
            .labels
            .chunks_exact(2)
            .map(|kv| metrics::Label::new(kv[0].clone(), kv[1].clone()))
            .collect();
        let name = call.name.clone();
        match call.kind {
            Kind::Counter => metrics::counter!(name, labels).increment(1),
            Kind::Gauge => metrics::gauge!(name, labels).set(call.value),
            Kind::Histogram => metrics::histogram!(name, labels).record(call.value),
        }
    } else {
        match call.kind {
            Kind::Counter => collector.increment_counter(&call.name, &pairs),
            Kind::Gauge => collector.record_gauge(&call.name, call.value, &pairs),
            Kind::Histogram => collector.record_histogram(&call.name, call.value, &pairs),
        }
    }
}

fn call(kind: Kind, name: &str, labels: &[&str]) -> Call {
    Call {
        kind,
        macro_path: false,
        name: name.to_owned(),
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        value: 0.5,
    }
}

/// Series the store keeps apart but a scrape with legacy names writes alike are one series
/// there, their counts added up: cases proptest found.
#[test]
fn series_written_alike_are_one_series_with_every_count() {
    use Kind::{Counter, Histogram};
    let cases = [
        // `__` is stored as `exported___`; ` ¡` is kept, and escaped to `exported___`.
        vec![
            call(Counter, "a-b", &["__", "method"]),
            call(Counter, "req_total", &[]),
            call(Counter, "a-b", &[" \u{a1}", "method"]),
            call(Counter, "a-b", &["__", "method"]),
        ],
        // `é` and ` ` are both written `_`.
        vec![
            call(Histogram, "lat_sum", &["1", "", "\u{e9}", "\u{e9}"]),
            call(Histogram, "lat_sum", &[" ", "\u{e9}"]),
        ],
        // A series made by a dropped (non-finite) observation, and one written like it.
        vec![
            Call {
                value: f64::NAN,
                ..call(Histogram, "lat_count", &["a_b", "__", "x"])
            },
            call(Histogram, "lat_count", &["a-b", "__"]),
        ],
    ];
    for calls in cases {
        if let Err(e) = run(&calls) {
            panic!("{calls:?}: {e}");
        }
    }
}

proptest! {
    // PROPTEST_CASES=5000 for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_sequence_renders_a_valid_and_accounted_scrape(calls in prop::collection::vec(call_strategy(), 1..80)) {
        run(&one_raw_name_each(calls))?;
    }
}
