//! Differential property: the same random macro calls go into `metrics-exporter-prometheus`
//! alone and into porter-metrics. Every series the exporter renders validly must appear in
//! ours with the same name, labels and value: the exporter is the reference for the format.
//!
//! "Validly" is judged family by family with the strict parser of `testing::Exposition`:
//! a family block that does not parse on its own, or a name the exporter types twice (two
//! kinds under one name), is where the exporter's output is invalid, and ours is allowed to
//! differ there (it does, by design: see the README's table of what happens to any input).
//! Names with our self-metrics' prefix are dropped by design, and label keys that collide
//! after sanitizing keep every value in ours (the exporter keeps the last one only), as do
//! raw names that sanitize alike (the exporter lets one overwrite the other), so the calls
//! avoid all three. A counter's series end in `_total` in ours whatever it was recorded
//! as (one name in every format): the exporter's counter `x` is our `x_total`. Label
//! values carry no backslash: the exporter's escaping of `\` is not injective, so its
//! output for them is not a reference. Histogram observations are finite (the exporter
//! puts a NaN into `_sum` for good; we drop and count it).

use std::collections::HashMap;

use metrics_exporter_prometheus::formatting::{sanitize_label_key, sanitize_metric_name};
use metrics_exporter_prometheus::PrometheusBuilder;
use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, Limits, DEFAULT_BUCKETS};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Counter(u64),
    Gauge(f64),
    GaugeAdd(f64),
    Histogram(f64),
}

#[derive(Clone, Debug)]
struct Call {
    name: String,
    labels: Vec<(String, String)>,
    op: Op,
}

fn call() -> impl Strategy<Value = Call> {
    let name = prop_oneof![
        4 => prop::sample::select(vec![
            "requests_total", "latency_seconds", "queue", "a.b", "a_b", "9lives", "é", "",
            "req_count", "porter_metrics_x", "x:y", "lat_sum", "up",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_:.é-]{0,6}",
    ];
    let key = prop::sample::select(vec![
        "method", "code", "a-b", "a_b", "le", "__x", "", "quantile", "k", "é",
    ])
    .prop_map(str::to_owned);
    let value = prop_oneof![
        4 => prop::sample::select(vec![
            "GET", "", "a\"b", "line\nbreak", "ü", "200", "x y", "a,b=\"c\"", "}",
        ])
        .prop_map(str::to_owned),
        1 => "[^\\\\]{0,4}",
    ];
    let op = prop_oneof![
        (0u64..1000).prop_map(Op::Counter),
        prop::sample::select(vec![0.5, -3.0, f64::NAN, f64::INFINITY, 1e300, 0.1])
            .prop_map(Op::Gauge),
        (-50i32..50).prop_map(|d| Op::GaugeAdd(f64::from(d) / 4.0)),
        (0u32..2000).prop_map(|v| Op::Histogram(f64::from(v) / 100.0)),
    ];
    (name, prop::collection::vec((key, value), 0..3), op).prop_map(|(name, labels, op)| Call {
        name,
        labels: distinct_keys(labels),
        op,
    })
}

/// Keeps one pair per sanitized key: where keys collide, the exporter keeps only the last
/// value, and ours keeps every one (as `key_1`, ...). An exact repeat goes too: ours reads
/// it as the one label, the exporter as another series printed like the first, which
/// overwrites it in the exporter's text.
fn distinct_keys(labels: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in labels {
        let clash = out
            .iter()
            .any(|(k, _)| sanitize_label_key(k) == sanitize_label_key(&key));
        if !clash {
            out.push((key, value));
        }
    }
    out
}

/// Keeps the calls of one raw name per sanitized name (and `_total` or not): the exporter
/// keys series by raw name but prints them by sanitized name, so look-alikes overwrite
/// each other there, while ours keeps them apart (and leaves one out of a scrape with
/// legacy names); a counter is one metric with or without `_total` in ours, two in the
/// exporter.
fn one_raw_name_each(calls: Vec<Call>) -> Vec<Call> {
    let mut raw: HashMap<String, String> = HashMap::new();
    calls
        .into_iter()
        .filter(|c| {
            let sanitized = sanitize_metric_name(&c.name);
            let base = sanitized
                .strip_suffix("_total")
                .unwrap_or(&sanitized)
                .to_owned();
            let known = raw.entry(base).or_insert_with(|| c.name.clone());
            *known == c.name
        })
        .collect()
}

fn record(call: &Call) {
    let labels: Vec<metrics::Label> = call
        .labels
        .iter()
        .map(|(k, v)| metrics::Label::new(k.clone(), v.clone()))
        .collect();
    let name = call.name.clone();
    match call.op {
        Op::Counter(n) => metrics::counter!(name, labels).increment(n),
        Op::Gauge(v) => metrics::gauge!(name, labels).set(v),
        Op::GaugeAdd(d) => metrics::gauge!(name, labels).increment(d),
        Op::Histogram(v) => metrics::histogram!(name, labels).record(v),
    }
}

/// A sample's identity: its name, and its labels without empty values (absent to
/// Prometheus), `le` as a number.
type Id = (String, Vec<(String, String)>);

fn id(name: &str, labels: &[(String, String)]) -> Id {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            let v = match (k.as_str(), v.parse::<f64>()) {
                ("le", Ok(le)) => format!("{le}"),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

/// The exporter's samples that are valid: from family blocks that parse on their own, of
/// names typed once.
fn valid_reference_samples(text: &str) -> Vec<(Id, f64)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default().to_owned();
            blocks.push((name, String::new()));
        }
        match blocks.last_mut() {
            Some((_, block)) => {
                block.push_str(line);
                block.push('\n');
            }
            None => blocks.push((String::new(), format!("{line}\n"))),
        }
    }
    let mut typed: HashMap<&str, usize> = HashMap::new();
    for (name, _) in &blocks {
        *typed.entry(name).or_default() += 1;
    }
    let mut out = Vec::new();
    for (name, block) in &blocks {
        // The self-metrics' prefix is ours: such calls are dropped and counted, by design.
        if typed.get(name.as_str()) != Some(&1) || name.starts_with("porter_metrics_") {
            continue;
        }
        let Ok(parsed) = Exposition::parse(block) else {
            continue;
        };
        // Ours writes a counter's series with `_total` whatever it was recorded as.
        let counter = parsed.families().iter().any(|f| f.kind == "counter");
        for sample in parsed.samples() {
            let name = match (counter, sample.name.ends_with("_total")) {
                (true, false) => format!("{}_total", sample.name),
                _ => sample.name.clone(),
            };
            out.push((id(&name, &sample.labels), sample.value));
        }
    }
    // An empty label is an absent one to Prometheus: two samples that differ only by one
    // are one series printed twice, not valid either.
    let mut seen: HashMap<Id, usize> = HashMap::new();
    for (id, _) in &out {
        *seen.entry(id.clone()).or_default() += 1;
    }
    out.retain(|(id, _)| seen.get(id) == Some(&1));
    out
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_valid_series_of_the_exporter_is_ours_too(calls in prop::collection::vec(call(), 1..40)) {
        let calls = one_raw_name_each(calls);
        let exporter = PrometheusBuilder::new()
            .set_buckets(&DEFAULT_BUCKETS)
            .expect("buckets")
            .build_recorder();
        let ours = Builder::new().limits(Limits::unlimited()).build_local();
        for call in &calls {
            metrics::with_local_recorder(&exporter, || record(call));
            metrics::with_local_recorder(&ours, || record(call));
        }
        let reference = valid_reference_samples(&exporter.handle().render());
        let text = ours.render();
        let ours = Exposition::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let ours: HashMap<Id, f64> = ours
            .samples()
            .iter()
            .map(|s| (id(&s.name, &s.labels), s.value))
            .collect();
        for (id, value) in reference {
            let found = ours.get(&id).copied();
            prop_assert!(
                found.is_some_and(|v| same(v, value)),
                "{id:?} = {value} in the exporter, {found:?} in ours\n{text}"
            );
        }
    }
}
