//! The parser behind [`Exposition::parse`]: one pass over the lines, each checked as
//! Prometheus' text parser checks it.

use std::collections::{HashMap, HashSet};

use super::{Exposition, Family, Labels, ParseError, Sample};
use crate::store::names::{is_legacy_label, is_legacy_name};

#[derive(Default)]
pub(super) struct Parser {
    out: Exposition,
    /// Family name → index into `out.families`.
    by_name: HashMap<String, usize>,
    /// Families that already have samples.
    sampled: HashSet<String>,
    series: HashSet<(String, Vec<(String, String)>)>,
    /// Families that had a TYPE line.
    typed: HashSet<String>,
}

fn is_metric_name(s: &str) -> bool {
    is_legacy_name(s)
}

/// A label name as Prometheus accepts it in a scrape (`le` included: buckets carry it).
fn is_label_name(s: &str) -> bool {
    is_legacy_label(s) && !s.starts_with("__")
}

/// Parses a value as Go's `strconv.ParseFloat` does for the forms exporters print.
pub(super) fn parse_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

fn unescape(s: &str, allow_quote: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if allow_quote => out.push('"'),
            other => {
                return Err(format!(
                    "invalid escape \\{}",
                    other.map(String::from).unwrap_or_default()
                ))
            }
        }
    }
    Ok(out)
}

impl Parser {
    pub(super) fn parse(mut self, text: &str) -> Result<Exposition, ParseError> {
        for (i, line) in text.lines().enumerate() {
            let err = |message: String| ParseError {
                line: i + 1,
                message,
            };
            let trimmed = line.trim_start();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(comment) = trimmed.strip_prefix('#') {
                self.comment(comment).map_err(err)?;
            } else {
                self.sample(trimmed).map_err(err)?;
            }
        }
        self.check_histograms()
            .map_err(|message| ParseError { line: 0, message })?;
        Ok(self.out)
    }

    fn comment(&mut self, comment: &str) -> Result<(), String> {
        let (keyword, after) = comment
            .trim_start()
            .split_once([' ', '\t'])
            .unwrap_or((comment.trim(), ""));
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        let (name, rest) = name_at(after.trim_start())?;
        let name = name.as_str();
        let rest = rest.strip_prefix([' ', '\t']).unwrap_or(rest);
        let index = match self.by_name.get(name) {
            Some(&index) => index,
            None => {
                if self.sampled.contains(name) {
                    return Err(format!("{keyword} for {name} after its samples"));
                }
                self.out.families.push(Family {
                    name: name.to_owned(),
                    kind: "untyped".into(),
                    help: None,
                });
                self.by_name
                    .insert(name.to_owned(), self.out.families.len() - 1);
                self.out.families.len() - 1
            }
        };
        if self.sampled.contains(name) {
            return Err(format!("{keyword} for {name} after its samples"));
        }
        let family = &mut self.out.families[index];
        if keyword == "HELP" {
            if family.help.is_some() {
                return Err(format!("second HELP line for {name}"));
            }
            family.help = Some(unescape(rest, false)?);
        } else {
            let kind = rest.trim();
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("unknown type {kind:?} for {name}"));
            }
            if !self.typed.insert(name.to_owned()) {
                return Err(format!("second TYPE line for {name}"));
            }
            family.kind = kind.to_owned();
        }
        Ok(())
    }

    /// The family a sample name belongs to, as Prometheus' parser decides it.
    fn family_of(&self, name: &str) -> Result<(String, String), String> {
        if let Some(&i) = self.by_name.get(name) {
            let family = &self.out.families[i];
            if family.kind == "histogram" {
                return Err(format!(
                    "sample {name} has the bare name of histogram {name}"
                ));
            }
            return Ok((family.name.clone(), family.kind.clone()));
        }
        for (suffix, kinds) in [
            ("_bucket", &["histogram"][..]),
            ("_sum", &["histogram", "summary"][..]),
            ("_count", &["histogram", "summary"][..]),
        ] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(&i) = self.by_name.get(base) {
                    let family = &self.out.families[i];
                    if kinds.contains(&family.kind.as_str()) {
                        return Ok((family.name.clone(), family.kind.clone()));
                    }
                }
            }
        }
        Ok((name.to_owned(), "untyped".into()))
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let (name, mut labels, rest) = match line.strip_prefix('{') {
            // A quoted name, first inside the braces (escaping=allow-utf-8).
            Some(inner) if inner.starts_with('"') => {
                let (name, after) = name_at(inner)?;
                let (labels, rest) = match after.strip_prefix(',') {
                    Some(more) => parse_labels(more)?,
                    None => (
                        Vec::new(),
                        after.strip_prefix('}').ok_or("unclosed labels")?,
                    ),
                };
                (name, labels, rest)
            }
            _ => {
                let name_end = line
                    .find(['{', ' ', '\t'])
                    .ok_or_else(|| format!("no value in sample line {line:?}"))?;
                let (name, _) = name_at(&line[..name_end])?;
                let rest = &line[name_end..];
                match rest.strip_prefix('{') {
                    Some(inner) => {
                        let (labels, after) = parse_labels(inner)?;
                        (name, labels, after)
                    }
                    None => (name, Vec::new(), rest),
                }
            }
        };
        let name = name.as_str();
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| format!("no value for {name}"))?;
        let value =
            parse_float(value).ok_or_else(|| format!("invalid value {value:?} for {name}"))?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("invalid timestamp {ts:?} for {name}"))?;
        }
        if fields.next().is_some() {
            return Err(format!("trailing text after the sample of {name}"));
        }
        let mut keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("repeated label key in a sample of {name}"));
        }

        let (family, kind) = self.family_of(name)?;
        let has_le = labels.iter().any(|(k, _)| k == "le");
        match kind.as_str() {
            "histogram" if name.ends_with("_bucket") => {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .map(|(_, v)| v.as_str());
                if le.and_then(parse_float).is_none() {
                    return Err(format!("bucket of {family} without a valid le label"));
                }
            }
            "histogram" if has_le => {
                return Err(format!("le label on {name}, which is not a bucket"))
            }
            "counter" if value < 0.0 || value.is_nan() => {
                return Err(format!("counter {name} has the invalid value {value}"))
            }
            _ => {}
        }
        self.sampled.insert(family);
        labels.sort();
        if !self.series.insert((name.to_owned(), labels.clone())) {
            return Err(format!("duplicate series {name}{labels:?}"));
        }
        self.out.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
        Ok(())
    }

    fn check_histograms(&self) -> Result<(), String> {
        for family in self.out.families.iter().filter(|f| f.kind == "histogram") {
            let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
            for s in self
                .out
                .samples
                .iter()
                .filter(|s| s.name == format!("{}_bucket", family.name))
            {
                let mut rest = s.labels.clone();
                let le = rest
                    .iter()
                    .position(|(k, _)| k == "le")
                    .map(|i| rest.remove(i).1)
                    .and_then(|v| parse_float(&v))
                    .unwrap_or(f64::NAN);
                groups.entry(rest).or_default().push((le, s.value));
            }
            for (labels, mut buckets) in groups {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                    return Err(format!(
                        "buckets of {}{labels:?} are not cumulative",
                        family.name
                    ));
                }
                let inf = buckets.last().filter(|(le, _)| *le == f64::INFINITY);
                let count_name = format!("{}_count", family.name);
                let count = self
                    .out
                    .samples
                    .iter()
                    .find(|s| s.name == count_name && s.labels == labels)
                    .map(|s| s.value);
                match (inf, count) {
                    (Some((_, c)), Some(count)) if *c == count => {}
                    _ => {
                        return Err(format!(
                            "histogram {}{labels:?} lacks a +Inf bucket equal to its _count",
                            family.name
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// A quoted string's text after its opening quote: unescaped, and what follows the
/// closing quote.
fn unquote(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[at + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                other => return Err(format!("invalid escape {other:?} in a quoted name")),
            },
            c => out.push(c),
        }
    }
    Err("an unterminated quoted name".into())
}

/// The metric name at the start of `s`: bare (a legacy name), or quoted (any text, as
/// `escaping=allow-utf-8` writes names that are not legacy ones); and what follows.
fn name_at(s: &str) -> Result<(String, &str), String> {
    if let Some(quoted) = s.strip_prefix('"') {
        let (name, rest) = unquote(quoted)?;
        return if name.is_empty() {
            Err("an empty quoted name".into())
        } else {
            Ok((name, rest))
        };
    }
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    let name = &s[..end];
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    Ok((name.to_owned(), &s[end..]))
}

/// Parses `k="v",...}` (a key bare or quoted) and returns the labels and the text after
/// `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let key = if let Some(quoted) = s.strip_prefix('"') {
            let (key, after) = unquote(quoted)?;
            s = after
                .trim_start()
                .strip_prefix('=')
                .ok_or("label without =")?;
            key
        } else {
            let eq = s.find('=').ok_or("label without =")?;
            let key = s[..eq].trim();
            if !is_label_name(key) {
                return Err(format!("invalid label name {key:?}"));
            }
            s = &s[eq + 1..];
            key.to_owned()
        };
        let key = key.as_str();
        s = s.trim_start();
        s = s.strip_prefix('"').ok_or("label value not quoted")?;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("unterminated label value")?;
        labels.push((key.to_owned(), unescape(&s[..end], true)?));
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}
