//! The three exposition formats over real HTTP: `Accept` negotiation by quality, the
//! `Content-Type` and `Vary` of each answer, and every format read back by a parser of its
//! own (the text format by `testing::Exposition`, protobuf by prost messages written here,
//! OpenMetrics by a strict parser written here), every family and value equal across them,
//! on hostile names, label values and HELP texts.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use porter_metrics::testing::Exposition;
use porter_metrics::{Collector, MetricsServer};

mod common;
use common::proto;

/// What Prometheus 2.42 and later send by default.
const PROMETHEUS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// What Prometheus sends with native histograms on.
const PROMETHEUS_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

// ---------------------------------------------------------------------------------------
// HTTP

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `method /metrics` with these extra header lines, `Connection: close`.
fn request(addr: SocketAddr, method: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = std::str::from_utf8(&raw[..split]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let response = Response {
        status,
        headers,
        body,
    };
    if let Some(length) = response.header("content-length") {
        assert_eq!(length.parse::<usize>().unwrap(), response.body.len());
    }
    response
}

fn scrape(addr: SocketAddr, accept: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    let response = request(addr, "GET", &headers);
    assert_eq!(response.status, 200);
    response
}

// ---------------------------------------------------------------------------------------
// What is recorded

const HELP_JOBS: &str = "Jobs \"done\", in C:\\jobs\\\nsecond line: ünïcödé ✓ \\n";
const HELP_LATENCY: &str = "Latency in \\seconds\\ \"quoted\" — 延迟";

fn hostile_server() -> MetricsServer {
    let server = MetricsServer::builder()
        .standalone()
        .global_label("env", "pr\"od\\\n")
        .expect("a valid label")
        .build("127.0.0.1:0");
    server.start().expect("start");
    let collector = server.collector();
    let recorder = server.recorder().expect("standalone");
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_counter!("jobs", HELP_JOBS);
        metrics::counter!("jobs", "queue" => "a\"b\\c\nd").increment(3);
        metrics::counter!("jobs", "queue" => "ünï \u{1F600}").increment(1);
        metrics::describe_histogram!("latency_seconds", metrics::Unit::Seconds, HELP_LATENCY);
        metrics::histogram!("latency_seconds", "path" => "/é/\"x\"").record(0.2);
        metrics::gauge!("in_flight", "who" => "}{,=\\\"").set(2.5);
    });
    collector.increment_counter("requests_total", &["method", "GET", "path", "/a\\b"]);
    collector.add_to_counter("requests_total", 41, &["method", "POST", "path", "\n"]);
    collector.record_gauge("temperature", -3.5, &["sensor", "ü\n\""]);
    collector.record_gauge("temperature", f64::NAN, &["sensor", "nan"]);
    collector.record_gauge("temperature", f64::INFINITY, &["sensor", "inf"]);
    collector.record_gauge("big", 1e300, &[]);
    for v in [0.001, 0.7, 3.0, 1e9] {
        collector.record_histogram("latency_seconds", v, &["path", "/"]);
    }
    for v in [f64::NAN, f64::INFINITY, 0.1] {
        collector.record_histogram("latency_seconds", v, &["path", "/odd"]);
    }
    collector.record_histogram("offset_seconds", -2.0, &[]);
    collector.increment_counter("a.b-c", &["label.key", "v"]);
    collector.increment_counter("", &[]);
    server
}

// ---------------------------------------------------------------------------------------
// One sample set for every format: (sample name, sorted labels) → value.

type Labels = Vec<(String, String)>;
type Samples = BTreeMap<(String, Labels), f64>;
/// (family name, type, HELP).
type Families = Vec<(String, String, Option<String>)>;

/// `le` values as numbers: `1` and `1.0` are one bucket.
fn normalized(mut labels: Labels) -> Labels {
    for (key, value) in &mut labels {
        if key == "le" {
            let le = parse_number(value).expect("a numeric le");
            *value = format!("{le:?}");
        }
    }
    labels.sort();
    labels
}

fn same_values(a: &Samples, b: &Samples) -> Result<(), String> {
    let keys = |s: &Samples| s.keys().cloned().collect::<HashSet<_>>();
    let (ka, kb) = (keys(a), keys(b));
    if ka != kb {
        return Err(format!(
            "only in the first: {:?}\nonly in the second: {:?}",
            ka.difference(&kb).collect::<Vec<_>>(),
            kb.difference(&ka).collect::<Vec<_>>()
        ));
    }
    for (key, x) in a {
        let y = b[key];
        if !(x == &y || (x.is_nan() && y.is_nan())) {
            return Err(format!("{key:?}: {x} != {y}"));
        }
    }
    Ok(())
}

/// The text format's families and samples, with counter samples named as OpenMetrics names
/// them when `openmetrics` (`jobs` → `jobs_total`).
fn from_text(text: &str) -> (Families, Samples, Exposition) {
    let scrape = Exposition::parse(text).expect("a valid text exposition");
    let families = scrape
        .families()
        .iter()
        .map(|f| (f.name.clone(), f.kind.clone(), f.help.clone()))
        .collect();
    let samples = scrape
        .samples()
        .iter()
        .map(|s| ((s.name.clone(), normalized(s.labels.clone())), s.value))
        .collect();
    (families, samples, scrape)
}

// ---------------------------------------------------------------------------------------
// Protobuf, read back by the messages of `common::proto`.

fn from_protobuf(bytes: &[u8]) -> (Families, Samples) {
    let (mut families, mut samples) = (Vec::new(), Samples::new());
    for family in proto::families(bytes) {
        let name = family.name.clone().expect("a name");
        let kind = match family.r#type {
            Some(0) => "counter",
            Some(1) => "gauge",
            Some(4) => "histogram",
            other => panic!("{name}: unexpected type {other:?}"),
        };
        assert_eq!(family.unit, None);
        families.push((name.clone(), kind.to_owned(), family.help.clone()));
        for metric in &family.metric {
            assert_eq!(metric.timestamp_ms, None);
            assert!(metric.untyped.is_none());
            let labels: Labels = metric
                .label
                .iter()
                .map(|l| (l.name.clone().unwrap(), l.value.clone().unwrap()))
                .collect();
            let mut put = |sample: String, labels: Labels, value: f64| {
                let old = samples.insert((sample, normalized(labels)), value);
                assert!(old.is_none(), "a series twice in {name}");
            };
            match kind {
                "counter" => {
                    assert!(metric.gauge.is_none() && metric.histogram.is_none());
                    put(
                        name.clone(),
                        labels,
                        metric.counter.clone().unwrap().value.unwrap(),
                    );
                }
                "gauge" => put(
                    name.clone(),
                    labels,
                    metric.gauge.clone().unwrap().value.unwrap(),
                ),
                _ => {
                    let h = metric.histogram.clone().expect("a histogram");
                    // Classic: no native schema, no spans.
                    assert!(h.schema.is_none() && h.positive_span.is_empty());
                    for b in &h.bucket {
                        let mut with_le = labels.clone();
                        with_le.push(("le".into(), format!("{:?}", b.upper_bound.unwrap())));
                        put(
                            format!("{name}_bucket"),
                            with_le,
                            b.cumulative_count.unwrap() as f64,
                        );
                    }
                    let last = h.bucket.last().expect("buckets");
                    assert_eq!(last.upper_bound, Some(f64::INFINITY));
                    assert_eq!(last.cumulative_count, h.sample_count);
                    put(
                        format!("{name}_count"),
                        labels.clone(),
                        h.sample_count.unwrap() as f64,
                    );
                    put(format!("{name}_sum"), labels, h.sample_sum.unwrap());
                }
            }
        }
    }
    (families, samples)
}

// ---------------------------------------------------------------------------------------
// OpenMetrics 1.0: a strict parser of the text form.

#[derive(Debug, Default)]
struct OmFamily {
    name: String,
    kind: String,
    help: Option<String>,
    unit: Option<String>,
    sampled: bool,
}

#[derive(Debug, Default)]
struct OpenMetricsScrape {
    families: Vec<OmFamily>,
    samples: Samples,
    /// (sample name, labels, exemplar labels, exemplar value, timestamp).
    exemplars: Vec<(String, Labels, Labels, f64, Option<f64>)>,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An OpenMetrics number: a real number, or (any case) `+Inf`, `-Inf`, `NaN`.
fn parse_number(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if ["inf", "infinity"].contains(&unsigned) && lower.len() - unsigned.len() <= 1 {
        return Some(if lower.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" {
        return Some(f64::NAN);
    }
    // realnumber: [sign] digits [. digits] [e [sign] digits], with a digit somewhere.
    let body = lower.strip_prefix(['+', '-']).unwrap_or(&lower);
    let (mantissa, exponent) = match body.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (digits(a) || a.is_empty())
                && (digits(b) || b.is_empty())
                && !(a.is_empty() && b.is_empty())
        }
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    (mantissa_ok && exponent_ok)
        .then(|| text.parse().ok())
        .flatten()
}

/// A quoted, escaped string at the start of `rest` (after its opening quote); returns it
/// unescaped and what follows the closing quote. Only `\\`, `\"` and `\n` are escapes.
fn quoted(rest: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &rest[at + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                other => return Err(format!("invalid escape {other:?}")),
            },
            '\n' => return Err("a raw newline in a label value".into()),
            c => out.push(c),
        }
    }
    Err("an unterminated label value".into())
}

/// `{name="value",...}` at the start of `rest`; returns the labels and what follows.
fn label_set(rest: &str) -> Result<(Labels, &str), String> {
    let rest = rest.strip_prefix('{').ok_or("no label set")?;
    if let Some(after) = rest.strip_prefix('}') {
        return Ok((Labels::new(), after));
    }
    labels_inside(rest)
}

/// `name="value",...}` (a name bare, or quoted), after the opening brace.
fn labels_inside(mut rest: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    loop {
        let (name, after) = match rest.strip_prefix('"') {
            Some(quoted_name) => {
                let (name, after) = quoted(quoted_name)?;
                (
                    name,
                    after.strip_prefix("=\"").ok_or("a label without =\"")?,
                )
            }
            None => {
                let (name, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
                if !is_label_name(name) {
                    return Err(format!("invalid label name {name:?}"));
                }
                (name.to_owned(), after)
            }
        };
        let name = name.as_str();
        if labels.iter().any(|(k, _)| k == name) {
            return Err(format!("label {name:?} twice"));
        }
        let (value, after) = quoted(after)?;
        labels.push((name.to_owned(), value));
        if let Some(after) = after.strip_prefix(',') {
            rest = after;
        } else if let Some(after) = after.strip_prefix('}') {
            return Ok((labels, after));
        } else {
            return Err("a label set not closed".into());
        }
    }
}

fn unescape_help(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('n') => out.push('\n'),
                other => return Err(format!("invalid HELP escape {other:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn parse_openmetrics(text: &str) -> Result<OpenMetricsScrape, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("the exposition does not end with # EOF")?;
    let mut scrape = OpenMetricsScrape::default();
    let mut seen = HashSet::new();
    // (sample name, labels without le) → the last bucket's value and le, for cumulativity.
    let mut buckets: BTreeMap<(String, Labels), (f64, f64)> = BTreeMap::new();
    for (n, line) in body.lines().enumerate() {
        let fail = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment
                .strip_prefix(' ')
                .ok_or_else(|| fail("bad comment".into()))?;
            let (keyword, rest) = comment
                .split_once(' ')
                .ok_or_else(|| fail("a comment with no metadata".into()))?;
            let (name, value) = match rest.strip_prefix('"') {
                // A quoted name (escaping=allow-utf-8).
                Some(quoted_name) => {
                    let (name, after) = quoted(quoted_name).map_err(&fail)?;
                    (name, after.strip_prefix(' ').unwrap_or(after).to_owned())
                }
                None => {
                    let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                    if !is_metric_name(name) {
                        return Err(fail(format!("invalid family name {name:?}")));
                    }
                    (name.to_owned(), value.to_owned())
                }
            };
            let (name, value) = (name.as_str(), value.as_str());
            let current = scrape
                .families
                .last_mut()
                .filter(|f| f.name == name && !f.sampled);
            let family = match current {
                Some(family) => family,
                None => {
                    if !seen.insert(name.to_owned()) {
                        return Err(fail(format!(
                            "family {name} again, or metadata after samples"
                        )));
                    }
                    scrape.families.push(OmFamily {
                        name: name.to_owned(),
                        kind: "unknown".into(),
                        ..OmFamily::default()
                    });
                    scrape.families.last_mut().unwrap()
                }
            };
            match keyword {
                "TYPE" => {
                    const TYPES: [&str; 8] = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "stateset",
                        "info",
                        "summary",
                        "unknown",
                    ];
                    if !TYPES.contains(&value) {
                        return Err(fail(format!("unknown type {value:?}")));
                    }
                    if family.kind != "unknown" {
                        return Err(fail("a second TYPE".into()));
                    }
                    family.kind = value.to_owned();
                }
                "HELP" => {
                    if family.help.is_some() {
                        return Err(fail("a second HELP".into()));
                    }
                    family.help = Some(unescape_help(value).map_err(&fail)?);
                }
                "UNIT" => family.unit = Some(value.to_owned()),
                other => return Err(fail(format!("unknown metadata {other:?}"))),
            }
            continue;
        }
        // A sample: name, labels, value, then maybe a timestamp and an exemplar.
        let (name, labels, rest) = match line.strip_prefix("{\"") {
            // A quoted name, first inside the braces.
            Some(inner) => {
                let (name, after) = quoted(inner).map_err(&fail)?;
                let (labels, rest) = match after.strip_prefix(',') {
                    Some(more) => labels_inside(more).map_err(&fail)?,
                    None => (
                        Labels::new(),
                        after
                            .strip_prefix('}')
                            .ok_or_else(|| fail("unclosed".into()))?,
                    ),
                };
                (name, labels, rest)
            }
            None => {
                let name_end = line
                    .find(['{', ' '])
                    .ok_or_else(|| fail("no value".into()))?;
                let name = &line[..name_end];
                if !is_metric_name(name) {
                    return Err(fail(format!("invalid sample name {name:?}")));
                }
                let (labels, rest) = if line[name_end..].starts_with('{') {
                    label_set(&line[name_end..]).map_err(&fail)?
                } else {
                    (Labels::new(), &line[name_end..])
                };
                (name.to_owned(), labels, rest)
            }
        };
        let name = name.as_str();
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| fail("no space before the value".into()))?;
        let (sample, exemplar) = match rest.split_once(" # ") {
            Some((s, e)) => (s, Some(e)),
            None => (rest, None),
        };
        let mut fields = sample.split(' ');
        let value = fields
            .next()
            .and_then(parse_number)
            .ok_or_else(|| fail("an invalid value".into()))?;
        if let Some(ts) = fields.next() {
            parse_number(ts).ok_or_else(|| fail("an invalid timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(fail("trailing text".into()));
        }
        let family = scrape
            .families
            .last_mut()
            .ok_or_else(|| fail("a sample before any metadata".into()))?;
        family.sampled = true;
        let suffix = name
            .strip_prefix(family.name.as_str())
            .ok_or_else(|| fail(format!("a sample outside family {}", family.name)))?;
        let allowed: &[&str] = match family.kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            other => return Err(fail(format!("unexpected type {other}"))),
        };
        if !allowed.contains(&suffix) {
            return Err(fail(format!(
                "{name} is not a sample of {} {}",
                family.kind, family.name
            )));
        }
        let counter_like = matches!(suffix, "_total" | "_bucket" | "_count" | "_sum");
        if counter_like && (value.is_nan() || value < 0.0) {
            return Err(fail("a negative or NaN counter value".into()));
        }
        if matches!(suffix, "_bucket" | "_count" | "_total") && value.fract() != 0.0 {
            return Err(fail("a fractional count".into()));
        }
        let has_le = labels.iter().any(|(k, _)| k == "le");
        if has_le != (suffix == "_bucket") {
            return Err(fail(
                "le on a sample that is not a bucket, or a bucket without".into(),
            ));
        }
        if suffix == "_bucket" {
            let le = labels.iter().find(|(k, _)| k == "le").unwrap().1.as_str();
            let bound = parse_number(le).ok_or_else(|| fail(format!("le {le:?}")))?;
            let mut rest: Labels = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            rest.sort();
            let key = (family.name.clone(), rest);
            if let Some((last_value, last_bound)) = buckets.get(&key) {
                if bound <= *last_bound || value < *last_value {
                    return Err(fail("buckets not sorted or not cumulative".into()));
                }
            }
            buckets.insert(key, (value, bound));
        }
        if let Some(exemplar) = exemplar {
            if !matches!(suffix, "_total" | "_bucket") {
                return Err(fail("an exemplar outside a counter or a bucket".into()));
            }
            let (ex_labels, after) = label_set(exemplar).map_err(&fail)?;
            let chars: usize = ex_labels
                .iter()
                .map(|(k, v)| k.chars().count() + v.chars().count())
                .sum();
            if chars > 128 {
                return Err(fail("exemplar labels over 128 characters".into()));
            }
            let mut fields = after
                .strip_prefix(' ')
                .ok_or_else(|| fail("no exemplar value".into()))?
                .split(' ');
            let ex_value = fields
                .next()
                .and_then(parse_number)
                .ok_or_else(|| fail("an invalid exemplar value".into()))?;
            let ts = match fields.next() {
                Some(ts) => {
                    Some(parse_number(ts).ok_or_else(|| fail("an exemplar timestamp".into()))?)
                }
                None => None,
            };
            if fields.next().is_some() {
                return Err(fail("trailing text after the exemplar".into()));
            }
            scrape
                .exemplars
                .push((name.to_owned(), labels.clone(), ex_labels, ex_value, ts));
        }
        if scrape
            .samples
            .insert((name.to_owned(), normalized(labels)), value)
            .is_some()
        {
            return Err(fail("a series twice".into()));
        }
    }
    // Every histogram ends at +Inf, equal to its count.
    for ((family, labels), (value, bound)) in &buckets {
        if *bound != f64::INFINITY {
            return Err(format!("{family}{labels:?}: no +Inf bucket"));
        }
        let count = scrape
            .samples
            .get(&(format!("{family}_count"), labels.clone()));
        if count != Some(value) {
            return Err(format!(
                "{family}{labels:?}: +Inf {value} and count {count:?}"
            ));
        }
    }
    Ok(scrape)
}

#[test]
fn the_strict_parser_refuses_what_openmetrics_forbids() {
    let ok = "# TYPE a counter\n# HELP a x \\\" \\\\ \\n\na_total{l=\"\\\"\"} 1 # {t=\"1\"} 0.5 12.25\n# EOF\n";
    assert!(parse_openmetrics(ok).is_ok(), "{:?}", parse_openmetrics(ok));
    for bad in [
        "# TYPE a counter\na_total 1\n",                          // no EOF
        "# TYPE a counter\na_total 1\n# EOF\n# EOF\n",            // EOF twice
        "# TYPE a counter\na 1\n# EOF\n",                         // a counter sample without _total
        "# TYPE a counter\na_total -1\n# EOF\n",                  // negative
        "# TYPE a gauge\na 1 # {t=\"1\"} 1\n# EOF\n",             // exemplar on a gauge
        "# TYPE a gauge\na{l=\"\\x\"} 1\n# EOF\n",                // bad escape
        "# HELP a x \\t\n# TYPE a gauge\n# EOF\n",                // bad HELP escape
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n# EOF\n", // interleaved
        "# TYPE h histogram\nh_bucket{le=\"1.0\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_count 1\n# EOF\n", // no +Inf
        "# TYPE a gauge\n# comment\na 1\n# EOF\n",                        // a plain comment
    ] {
        assert!(parse_openmetrics(bad).is_err(), "accepted: {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn accept_is_negotiated_by_quality() {
    let server = hostile_server();
    let addr = server.local_addr().expect("running");
    let cases: [(Option<&str>, &str); 8] = [
        (None, TEXT),
        (Some("text/plain"), TEXT),
        (Some(PROMETHEUS), OPENMETRICS),
        (Some(PROMETHEUS_NATIVE), PROTOBUF),
        (
            Some("text/plain;q=0.3,application/openmetrics-text;q=0.4"),
            OPENMETRICS,
        ),
        (
            Some("application/openmetrics-text;q=0,text/plain;q=0.1"),
            TEXT,
        ),
        (
            Some("application/openmetrics-text;version=0.0.1"),
            OPENMETRICS,
        ),
        (Some("application/json, */*"), TEXT),
    ];
    for (accept, want) in cases {
        let response = scrape(addr, accept);
        assert_eq!(response.header("content-type"), Some(want), "{accept:?}");
        assert_eq!(response.header("vary"), Some("Accept, Accept-Encoding"));
        // HEAD answers with the same negotiated headers and no body.
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let head = request(addr, "HEAD", &headers);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some(want), "HEAD {accept:?}");
        assert!(head.body.is_empty());
    }
    server.stop().unwrap();
}

#[test]
fn every_format_reads_back_to_the_same_families_and_values() {
    let server = hostile_server();
    let addr = server.local_addr().expect("running");

    let text = scrape(addr, Some("text/plain"));
    let text = String::from_utf8(text.body).expect("UTF-8");
    let (text_families, text_samples, exposition) = from_text(&text);
    assert_eq!(exposition.help("jobs"), Some(HELP_JOBS));
    assert_eq!(exposition.help("latency_seconds"), Some(HELP_LATENCY));

    // Protobuf: the same families, in the same order, and the same values.
    let proto = scrape(addr, Some(PROMETHEUS_NATIVE));
    let (proto_families, proto_samples) = from_protobuf(&proto.body);
    assert_eq!(proto_families, text_families);
    same_values(&text_samples, &proto_samples).expect("protobuf values as the text format's");

    // OpenMetrics: counter families lose `_total`, their samples have it; no `_sum` that
    // would be negative or NaN; values as the text format's.
    let om = scrape(addr, Some(PROMETHEUS));
    let om = String::from_utf8(om.body).expect("UTF-8");
    let parsed = parse_openmetrics(&om).unwrap_or_else(|e| panic!("{e}\n{om}"));
    // The unit it was described with, where the name ends with it.
    let unit = |name: &str| {
        let family = parsed.families.iter().find(|f| f.name == name);
        family.and_then(|f| f.unit.clone())
    };
    assert_eq!(unit("latency_seconds").as_deref(), Some("seconds"));
    assert_eq!(unit("jobs"), None);
    let om_families: Families = parsed
        .families
        .iter()
        .map(|f| (f.name.clone(), f.kind.clone(), f.help.clone()))
        .collect();
    let expected_families: Families = text_families
        .iter()
        .map(|(name, kind, help)| {
            let name = match (kind.as_str(), name.strip_suffix("_total")) {
                ("counter", Some(family)) => family.to_owned(),
                _ => name.clone(),
            };
            (name, kind.clone(), help.clone())
        })
        .collect();
    assert_eq!(om_families, expected_families);
    let counters: HashSet<&str> = text_families
        .iter()
        .filter(|(_, kind, _)| kind == "counter")
        .map(|(name, _, _)| name.as_str())
        .collect();
    let expected_samples: Samples = text_samples
        .iter()
        .filter(|((name, _), value)| !(name.ends_with("_sum") && (value.is_nan() || **value < 0.0)))
        .map(|((name, labels), value)| {
            let name = if counters.contains(name.as_str()) && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.clone()
            };
            ((name, labels.clone()), *value)
        })
        .collect();
    same_values(&expected_samples, &parsed.samples)
        .expect("OpenMetrics values as the text format's");
    // The hostile values came through unescaped, in every format.
    let jobs = (
        "jobs_total".to_owned(),
        normalized(vec![
            ("env".into(), "pr\"od\\\n".into()),
            ("queue".into(), "a\"b\\c\nd".into()),
        ]),
    );
    assert_eq!(parsed.samples.get(&jobs), Some(&3.0));
    // One name in every format: the counter `jobs` is `jobs_total` in protobuf too.
    assert_eq!(proto_samples.get(&jobs), Some(&3.0));
    assert_eq!(text_samples.get(&jobs), Some(&3.0));
    // A negative sum (a negative observation): -2 in the text format and protobuf, left out
    // of OpenMetrics, where a sum is a counter.
    let env = vec![("env".to_owned(), "pr\"od\\\n".to_owned())];
    let offset_sum = ("offset_seconds_sum".to_owned(), env);
    assert_eq!(text_samples.get(&offset_sum), Some(&-2.0));
    assert_eq!(proto_samples.get(&offset_sum), Some(&-2.0));
    assert!(!parsed.samples.contains_key(&offset_sum));
    server.stop().unwrap();
}

#[test]
fn gzip_applies_to_every_format() {
    let server = hostile_server();
    let addr = server.local_addr().expect("running");
    for (accept, want) in [(PROMETHEUS, OPENMETRICS), (PROMETHEUS_NATIVE, PROTOBUF)] {
        let plain = scrape(addr, Some(accept)).body;
        let zipped = request(
            addr,
            "GET",
            &[("Accept", accept), ("Accept-Encoding", "gzip")],
        );
        assert_eq!(zipped.header("content-encoding"), Some("gzip"));
        assert_eq!(zipped.header("content-type"), Some(want));
        let mut body = Vec::new();
        flate2::read::GzDecoder::new(&zipped.body[..])
            .read_to_end(&mut body)
            .expect("gzip");
        // The same exposition, compressed: it reads back alike.
        if want == PROTOBUF {
            assert_eq!(from_protobuf(&body).0, from_protobuf(&plain).0);
        } else {
            let (a, b) = (
                String::from_utf8(body).unwrap(),
                String::from_utf8(plain).unwrap(),
            );
            parse_openmetrics(&a).unwrap();
            assert_eq!(a.lines().count(), b.lines().count());
        }
    }
    server.stop().unwrap();
}

#[test]
fn promtool_accepts_the_text_format() {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        eprintln!("promtool not installed: skipped");
        return;
    };
    assert!(out.status.success());
    let server = hostile_server();
    let addr = server.local_addr().expect("running");
    let text = scrape(addr, None).body;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    check.stdin.take().unwrap().write_all(&text).unwrap();
    let out = check.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lint warnings (HELP style, counter names) are not parse errors.
    assert!(!stderr.contains("error while linting"), "{stderr}");
    server.stop().unwrap();
}

/// Native buckets and exemplars recorded through the collector reach the scrapes that
/// carry them: protobuf (schema and spans beside the classic buckets) and OpenMetrics
/// (exemplars on the counter and on the bucket each observation fell in).
#[test]
fn native_buckets_and_exemplars_reach_protobuf_and_openmetrics() {
    use porter_metrics::{Builder, Collector, Matcher, NativeHistograms};
    let server = Builder::new()
        .standalone()
        .native_histograms_for_metric(
            Matcher::Full("native_seconds".into()),
            NativeHistograms::default(),
        )
        .expect("valid settings")
        .build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    let c = server.collector();
    for v in [0.003, 0.2, 0.2, 7.0] {
        c.record_histogram_with_exemplar(
            "native_seconds",
            v,
            &["route", "/a"],
            &["trace_id", "t1"],
        );
        c.record_histogram("classic_seconds", v, &[]);
    }
    c.increment_counter_with_exemplar("calls_total", &[], &["trace_id", "t2"]);

    let proto = scrape(
        addr,
        Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"),
    );
    let mut native = None;
    let mut classic = None;
    for family in proto::families(&proto.body) {
        let histogram = family.metric.first().and_then(|m| m.histogram.clone());
        match family.name.as_deref() {
            Some("native_seconds") => native = histogram,
            Some("classic_seconds") => classic = histogram,
            _ => {}
        }
    }
    let native = native.expect("native_seconds in the protobuf scrape");
    assert_eq!(native.schema, Some(3));
    assert_eq!(native.sample_count, Some(4));
    assert!(!native.positive_span.is_empty());
    assert_eq!(
        native.bucket.len(),
        12,
        "classic buckets kept beside the native ones"
    );
    let classic = classic.expect("classic_seconds");
    assert_eq!(classic.schema, None, "a classic histogram has no schema");

    let om =
        String::from_utf8(scrape(addr, Some("application/openmetrics-text;version=1.0.0")).body)
            .expect("utf-8");
    assert!(om.contains("calls_total 1 # {trace_id=\"t2\"} 1 "), "{om}");
    let bucket = om
        .lines()
        .find(|l| l.starts_with("native_seconds_bucket{route=\"/a\",le=\"0.25\"}"))
        .expect("the 0.25 bucket");
    assert!(bucket.contains("# {trace_id=\"t1\"} 0.2 "), "{bucket}");
    parse_openmetrics(&om).expect("valid OpenMetrics");
    server.stop().expect("stop");
}

/// Prometheus 3.5's own `Accept` headers: by default, with native histograms, text only.
const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
const PROMETHEUS_3_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
const PROMETHEUS_3_TEXT: &str =
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

#[test]
fn utf8_names_read_back_whole_in_every_format() {
    let server = MetricsServer::builder().standalone().build("127.0.0.1:0");
    server.start().expect("start");
    let addr = server.local_addr().expect("running");
    let c = server.collector();
    // OpenTelemetry names, and hostile ones: quotes, backslashes, a newline, a digit first.
    let names = ["app.jobs.done", "we\"ird\\na\nme", "9lives", "é.ü"];
    for (i, name) in names.iter().enumerate() {
        c.add_to_counter(name, i as u64 + 1, &["job.kind", "ex\"port", "k-\n", "v"]);
    }
    c.record_histogram(
        "http.server.request.duration",
        0.2,
        &["http.route", "/users/{id}"],
    );
    c.record_gauge("queue.size", 3.0, &["a\"b", "c"]);
    let expected_counters: Vec<(String, f64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("{n}_total"), i as f64 + 1.0))
        .collect();

    // The text format, as Prometheus 3 asks for it.
    let text = scrape(addr, Some(PROMETHEUS_3_TEXT));
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8")
    );
    let text = String::from_utf8(text.body).expect("UTF-8");
    let parsed = Exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, value) in &expected_counters {
        let labels = ["job.kind", "ex\"port", "k-\n", "v"];
        assert_eq!(parsed.value(name, &labels), Some(*value), "{name}\n{text}");
        assert_eq!(parsed.kind(name), Some("counter"));
    }
    let h = parsed.histogram(
        "http.server.request.duration",
        &["http.route", "/users/{id}"],
    );
    assert_eq!(h.map(|h| h.count), Some(1));
    assert_eq!(parsed.value("queue.size", &["a\"b", "c"]), Some(3.0));

    // OpenMetrics, as Prometheus 3 asks for it by default.
    let om = scrape(addr, Some(PROMETHEUS_3));
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8")
    );
    let om = String::from_utf8(om.body).expect("UTF-8");
    let om = parse_openmetrics(&om).unwrap_or_else(|e| panic!("{e}\n{om}"));
    let labels = normalized(vec![
        ("job.kind".into(), "ex\"port".into()),
        ("k-\n".into(), "v".into()),
    ]);
    for (name, value) in &expected_counters {
        assert_eq!(
            om.samples.get(&(name.clone(), labels.clone())),
            Some(value),
            "{name}"
        );
    }

    // Protobuf, as Prometheus 3 asks for it with native histograms on: the same names.
    let proto = scrape(addr, Some(PROMETHEUS_3_NATIVE));
    assert_eq!(
        proto.header("content-type"),
        Some(&*format!("{PROTOBUF}; escaping=allow-utf-8"))
    );
    let (_, samples) = from_protobuf(&proto.body);
    for (name, value) in &expected_counters {
        assert_eq!(
            samples.get(&(name.clone(), labels.clone())),
            Some(value),
            "{name}"
        );
    }
    assert!(samples
        .keys()
        .any(|(n, _)| n == "http.server.request.duration_count"));

    // Without escaping=allow-utf-8 (Prometheus 2.42), the same series with legacy names.
    let old = String::from_utf8(scrape(addr, Some(PROMETHEUS)).body).expect("UTF-8");
    let old = parse_openmetrics(&old).unwrap_or_else(|e| panic!("{e}\n{old}"));
    let legacy = normalized(vec![
        ("job_kind".into(), "ex\"port".into()),
        ("k__".into(), "v".into()),
    ]);
    assert_eq!(om_value(&old, "app_jobs_done_total", &legacy), Some(1.0));
    assert_eq!(om_value(&old, "_lives_total", &legacy), Some(3.0));
    server.stop().expect("stop");
}

fn om_value(scrape: &OpenMetricsScrape, name: &str, labels: &Labels) -> Option<f64> {
    scrape
        .samples
        .get(&(name.to_owned(), labels.clone()))
        .copied()
}
