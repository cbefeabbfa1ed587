//! Comparing what a receiver stores (Prometheus, VictoriaMetrics, through their query API)
//! with a process's own scrape, series by series.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use porter_metrics::testing::Exposition;

/// How long a receiver has to hold what was pushed.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A label set as a receiver returns it, without `__name__` and the `ignored` keys.
pub type LabelSet = BTreeSet<(String, String)>;

pub fn label_set(metric: &serde_json::Value, ignored: &[&str]) -> LabelSet {
    metric
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "__name__" && !ignored.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Each series of sample `name` in `scrape`: its labels (an `le` as a number) and value.
pub fn scraped(scrape: &Exposition, name: &str) -> BTreeMap<LabelSet, f64> {
    scrape
        .samples()
        .iter()
        .filter(|s| s.name == name)
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), normal(k, v)))
                .collect();
            (labels, s.value)
        })
        .collect()
}

/// An `le` value as a number (receivers write `1` or `1.0`), other values as they are.
pub fn normal(key: &str, value: &str) -> String {
    match (key, value.parse::<f64>()) {
        ("le", Ok(le)) => format!("{le}"),
        _ => value.to_owned(),
    }
}

/// Each series of `name` a receiver holds, as [`scraped`] gives them.
pub fn stored(
    query: &dyn Fn(&str) -> Vec<(serde_json::Value, f64)>,
    name: &str,
    ignored: &[&str],
) -> BTreeMap<LabelSet, f64> {
    query(&format!("{{__name__=\"{name}\"}}"))
        .into_iter()
        .map(|(metric, value)| {
            let labels = label_set(&metric, ignored)
                .into_iter()
                .map(|(k, v)| {
                    let v = normal(&k, &v);
                    (k, v)
                })
                .collect();
            (labels, value)
        })
        .collect()
}

/// Waits until the receiver holds exactly the scrape's series of each of `names`; the
/// differences left if it never does.
pub fn converge(
    query: &dyn Fn(&str) -> Vec<(serde_json::Value, f64)>,
    scrape: &Exposition,
    names: &[&str],
    ignored: &[&str],
) -> Vec<String> {
    let differences = || -> Vec<String> {
        names
            .iter()
            .filter_map(|name| {
                let want = scraped(scrape, name);
                let got = stored(query, name, ignored);
                assert!(!want.is_empty(), "{name} is in the scrape");
                (want != got).then(|| format!("{name}: scraped {want:?}, stored {got:?}"))
            })
            .collect()
    };
    super::wait_for(LIMIT, || {
        let left = differences();
        left.is_empty().then_some(())
    })
    .map_or_else(differences, |()| Vec::new())
}
