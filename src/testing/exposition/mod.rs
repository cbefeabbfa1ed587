//! A text-format exposition read back into families and samples, parsed strictly as
//! Prometheus reads the text format 0.0.4 (the `parse` module).

mod parse;

use std::fmt;

use parse::{parse_float, Parser};

/// Why a text is not a valid exposition: the line and what is wrong with it.
///
/// ```
/// use porter_metrics::testing::Exposition;
///
/// let err = Exposition::parse("up 1\nbad-name 1\n").unwrap_err();
/// assert_eq!(err.line, 2);
/// assert!(err.to_string().starts_with("line 2: "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Label pairs of one series.
type Labels = Vec<(String, String)>;

/// One sample line.
///
/// ```
/// use porter_metrics::testing::{Exposition, Sample};
///
/// let text = "# TYPE jobs_total counter\njobs_total{queue=\"a\"} 3\n";
/// let scrape = Exposition::parse(text).unwrap();
/// let sample: &Sample = &scrape.samples()[0];
/// assert_eq!((sample.name.as_str(), sample.value), ("jobs_total", 3.0));
/// assert_eq!(sample.labels, [("queue".to_owned(), "a".to_owned())]);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// The series name (`lat_bucket` for a histogram bucket).
    pub name: String,
    /// Label pairs, sorted by key.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// One `# TYPE` family.
///
/// ```
/// use porter_metrics::testing::Exposition;
///
/// let text = "# HELP up Whether the target is up.\n# TYPE up gauge\nup 1\n";
/// let scrape = Exposition::parse(text).unwrap();
/// let family = &scrape.families()[0];
/// assert_eq!((family.name.as_str(), family.kind.as_str()), ("up", "gauge"));
/// assert_eq!(family.help.as_deref(), Some("Whether the target is up."));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Family {
    /// Family name.
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    /// The HELP text, unescaped.
    pub help: Option<String>,
}

/// A histogram's series for one label set.
///
/// ```
/// use porter_metrics::{testing::{Capture, HistogramValue}, Builder, Collector};
///
/// let capture = Capture::with_recorder(Builder::new().buckets(&[1.0]).unwrap().build_local());
/// capture.collector().record_histogram("job_seconds", 0.5, &["job", "a"]);
/// capture.collector().record_histogram("job_seconds", 2.0, &["job", "a"]);
/// let scrape = capture.exposition().unwrap();
/// let job: HistogramValue = scrape.histogram("job_seconds", &["job", "a"]).unwrap();
/// assert_eq!((job.count, job.sum), (2, 2.5));
/// assert_eq!(job.buckets, [(1.0, 1), (f64::INFINITY, 2)]);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HistogramValue {
    /// Observations.
    pub count: u64,
    /// Sum of observations.
    pub sum: f64,
    /// `(le, cumulative count)`, ascending, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl HistogramValue {
    /// The cumulative count of the bucket with upper bound `le`.
    ///
    /// ```
    /// use porter_metrics::testing::Exposition;
    ///
    /// let text = "# TYPE lat histogram\nlat_bucket{le=\"0.5\"} 2\nlat_bucket{le=\"+Inf\"} 3\n\
    ///             lat_sum 2\nlat_count 3\n";
    /// let lat = Exposition::parse(text).unwrap().histogram("lat", &[]).unwrap();
    /// assert_eq!((lat.bucket(0.5), lat.bucket(f64::INFINITY)), (Some(2), Some(3)));
    /// assert_eq!(lat.bucket(0.3), None); // not a bucket bound
    /// ```
    pub fn bucket(&self, le: f64) -> Option<u64> {
        self.buckets.iter().find(|(b, _)| *b == le).map(|(_, c)| *c)
    }
}

/// A parsed, validated text exposition.
///
/// ```
/// use porter_metrics::testing::Exposition;
///
/// let text = "# TYPE jobs_total counter\njobs_total{queue=\"a\"} 3\njobs_total{queue=\"b\"} 4\n";
/// let scrape = Exposition::parse(text).unwrap();
/// assert_eq!(scrape.value("jobs_total", &["queue", "b"]), Some(4.0));
/// assert_eq!(scrape.sum("jobs_total"), 7.0);
/// assert_eq!(scrape.kind("jobs_total"), Some("counter"));
/// assert!(Exposition::parse("# TYPE x counter\n# TYPE x gauge\n").is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    families: Vec<Family>,
    samples: Vec<Sample>,
}

fn sorted_pairs(labels: &[&str]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = labels
        .chunks_exact(2)
        .map(|kv| (kv[0].to_owned(), kv[1].to_owned()))
        .collect();
    pairs.sort();
    pairs
}

impl Exposition {
    /// The series name `name` is found under: itself, or for a counter recorded without
    /// `_total`, the name with it (a counter's series always end in `_total`).
    fn resolve<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        if self.samples.iter().any(|s| s.name == name) || self.family(name).is_some() {
            return name.into();
        }
        let total = format!("{name}_total");
        match self.family(&total) {
            Some(f) if f.kind == "counter" => total.into(),
            _ => name.into(),
        }
    }

    /// Every family, in order of appearance.
    ///
    /// ```
    /// use porter_metrics::testing::Exposition;
    ///
    /// let text = "# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 2\n";
    /// let scrape = Exposition::parse(text).unwrap();
    /// let kinds: Vec<_> = scrape.families().iter().map(|f| (&*f.name, &*f.kind)).collect();
    /// assert_eq!(kinds, [("a_total", "counter"), ("b", "gauge")]);
    /// ```
    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// Every sample, in order of appearance.
    ///
    /// ```
    /// use porter_metrics::testing::Exposition;
    ///
    /// let scrape = Exposition::parse("x{b=\"2\",a=\"1\"} 1\ny 2\n").unwrap();
    /// let names: Vec<&str> = scrape.samples().iter().map(|s| s.name.as_str()).collect();
    /// assert_eq!(names, ["x", "y"]);
    /// assert_eq!(scrape.samples()[0].labels[0], ("a".into(), "1".into())); // sorted by key
    /// ```
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The value of the series `name` with exactly these label pairs (any order).
    ///
    /// ```
    /// use porter_metrics::testing::Exposition;
    ///
    /// let scrape = Exposition::parse("requests_total{code=\"200\",method=\"GET\"} 7\n").unwrap();
    /// assert_eq!(scrape.value("requests_total", &["method", "GET", "code", "200"]), Some(7.0));
    /// assert_eq!(scrape.value("requests_total", &["method", "GET"]), None); // exact labels only
    /// ```
    pub fn value(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let name = &*self.resolve(name);
        let want = sorted_pairs(labels);
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The sum of the values of every series named `name` (0 if none).
    ///
    /// ```
    /// use porter_metrics::testing::Exposition;
    ///
    /// let text = "jobs_total{queue=\"a\"} 3\njobs_total{queue=\"b\"} 4\n";
    /// let scrape = Exposition::parse(text).unwrap();
    /// assert_eq!(scrape.sum("jobs_total"), 7.0);
    /// assert_eq!(scrape.sum("missing_total"), 0.0);
    /// ```
    pub fn sum(&self, name: &str) -> f64 {
        let name = &*self.resolve(name);
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }

    /// How many series are named `name` (as client_golang's `CollectAndCount`).
    ///
    /// ```
    /// use porter_metrics::testing::Exposition;
    ///
    /// let text = "jobs_total{queue=\"a\"} 3\njobs_total{queue=\"b\"} 4\n";
    /// let scrape = Exposition::parse(text).unwrap();
    /// assert_eq!(scrape.count("jobs_total"), 2);
    /// assert_eq!(scrape.count("missing_total"), 0);
    /// ```
    pub fn count(&self, name: &str) -> usize {
        let name = &*self.resolve(name);
        self.samples.iter().filter(|s| s.name == name).count()
    }

    /// The histogram `name` with exactly these label pairs.
    ///
    /// ```
    /// use porter_metrics::testing::Exposition;
    ///
    /// let text = "# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 1\nlat_bucket{le=\"+Inf\"} 3\n\
    ///             lat_sum 2.5\nlat_count 3\n";
    /// let lat = Exposition::parse(text).unwrap().histogram("lat", &[]).unwrap();
    /// assert_eq!((lat.count, lat.sum), (3, 2.5));
    /// assert_eq!(lat.buckets, [(0.1, 1), (f64::INFINITY, 3)]);
    /// ```
    pub fn histogram(&self, name: &str, labels: &[&str]) -> Option<HistogramValue> {
        let want = sorted_pairs(labels);
        let count = self.value(&format!("{name}_count"), labels)?;
        let sum = self.value(&format!("{name}_sum"), labels)?;
        let bucket_name = format!("{name}_bucket");
        let mut buckets: Vec<(f64, u64)> = self
            .samples
            .iter()
            .filter(|s| s.name == bucket_name)
            .filter_map(|s| {
                let mut rest = Vec::with_capacity(s.labels.len());
                let mut le = None;
                for (k, v) in &s.labels {
                    if k == "le" {
                        le = parse_float(v);
                    } else {
                        rest.push((k.clone(), v.clone()));
                    }
                }
                (rest == want).then_some(())?;
                Some((le?, s.value as u64))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(HistogramValue {
            count: count as u64,
            sum,
            buckets,
        })
    }

    /// The HELP text of family `name`.
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Collector};
    ///
    /// let capture = Capture::new();
    /// capture.collector().increment_counter("jobs_total", &[]);
    /// let scrape = capture.exposition().unwrap();
    /// assert_eq!(scrape.help("jobs_total"), Some("Counter for jobs_total")); // the default text
    /// ```
    pub fn help(&self, name: &str) -> Option<&str> {
        self.family(&self.resolve(name))?.help.as_deref()
    }

    /// The TYPE of family `name`.
    ///
    /// ```
    /// use porter_metrics::{testing::Capture, Collector};
    ///
    /// let capture = Capture::new();
    /// capture.collector().record_histogram("latency_seconds", 0.1, &[]);
    /// let scrape = capture.exposition().unwrap();
    /// assert_eq!(scrape.kind("latency_seconds"), Some("histogram"));
    /// assert_eq!(scrape.kind("missing"), None);
    /// ```
    pub fn kind(&self, name: &str) -> Option<&str> {
        self.family(&self.resolve(name)).map(|f| f.kind.as_str())
    }

    fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Parses and validates `text` as Prometheus' text format 0.0.4 is read by Prometheus:
    /// valid names, escapes and values; one TYPE and HELP per family, before its samples;
    /// samples matching their family's type; no repeated label key or series; histogram
    /// buckets cumulative, with `+Inf` equal to `_count`.
    ///
    /// ```
    /// use porter_metrics::testing::Exposition;
    ///
    /// assert!(Exposition::parse("# TYPE up gauge\nup 1\n").is_ok());
    /// let repeated = Exposition::parse("# TYPE up gauge\nup 1\nup 2\n").unwrap_err();
    /// assert_eq!(repeated.line, 3); // the same series twice
    /// ```
    ///
    /// # Errors
    /// The first problem found, with its line.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        Parser::default().parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_prometheus_rejects() {
        for bad in [
            "# TYPE  counter\n 1\n",
            "# TYPE x counter\nx 1\n# TYPE x gauge\n",
            "x{a_b=\"1\",a_b=\"2\"} 1\n",
            "x{__name__=\"y\"} 1\n",
            "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
            "x{a=\"\\q\"} 1\n",
            "x 1\nx 2\n",
            "x 1\n# TYPE x counter\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        ] {
            assert!(Exposition::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn reads_values_and_histograms() {
        let text = "# HELP h Latency.\n# TYPE h histogram\nh_bucket{p=\"a\",le=\"1\"} 1\nh_bucket{p=\"a\",le=\"+Inf\"} 2\nh_sum{p=\"a\"} 5.5\nh_count{p=\"a\"} 2\n# TYPE g gauge\ng{x=\"q\\\"\\\\\\n\"} NaN\ng inf\n";
        let e = Exposition::parse(text).unwrap();
        let h = e.histogram("h", &["p", "a"]).unwrap();
        assert_eq!((h.count, h.sum, h.buckets.len()), (2, 5.5, 2));
        assert_eq!(e.help("h"), Some("Latency."));
        assert!(e.value("g", &["x", "q\"\\\n"]).unwrap().is_nan());
        assert_eq!(e.value("g", &[]), Some(f64::INFINITY));
    }
}
