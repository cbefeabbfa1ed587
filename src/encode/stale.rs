//! The walk of the series idle expiry has hidden and not yet reclaimed, for a push's stale
//! markers: each is handed to the encoder with placeholder values (zeros, the family's
//! bucket layout), which an encoder told to mark ([`Marks`](super::batch::Marks)) writes
//! as stale markers.
//!
//! A series is hidden after one idle timeout and reclaimed after a second one: a pusher
//! whose interval is shorter than the idle timeout walks each expired series at least once
//! (the builder refuses a longer one). Names and keys are escaped as the push's own walk
//! escapes them; the rare series written alike under escaping get a marker each, which a
//! receiver takes as one.

use super::{Encoder, Escaping, FamilyHead, HistogramPoint, Labels, Native, Sample};
use crate::store::family::Scratch;
use crate::store::kind::Kind;
use crate::store::Store;

/// Walks the hidden series of `store` into `encoder`, then finishes it.
pub(crate) fn walk_hidden(store: &Store, escaping: Escaping, encoder: &mut impl Encoder) {
    let global = store.settings().map_or(&[][..], |s| &s.global[..]);
    let mut scratch = Scratch::default();
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for family in store.families() {
        let layout = family.layout.get();
        if family.kind == Kind::Histogram && layout.is_none() {
            continue; // never exported
        }
        let name = escaping.name(&family.base);
        let help = family.help();
        let head = FamilyHead {
            name: &name,
            kind: family.kind,
            help: help.as_deref(),
            unit: family.unit(),
        };
        let mut started = false;
        family.for_each_hidden(&mut scratch, |_, view| {
            if !started {
                encoder.family(&head);
                started = true;
            }
            keys.clear();
            keys.extend(
                view.iter()
                    .map(|(k, v)| (escaping.key(k).into_owned(), v.to_owned())),
            );
            let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (&**k, &**v)).collect();
            let sample = Sample {
                name: &name,
                labels: Labels::fixed(&pairs, global),
                start_ms: None,
            };
            match (family.kind, layout) {
                (Kind::Counter, _) => encoder.counter(&sample, 0, None),
                (Kind::Gauge, _) => encoder.gauge(&sample, 0.0),
                (Kind::Histogram, Some(layout)) => {
                    counts.clear();
                    counts.resize(layout.bounds.len() + 1, 0);
                    let point = HistogramPoint {
                        bounds: &layout.bounds,
                        counts: &counts,
                        count: 0,
                        sum: 0.0,
                        exemplars: &[],
                        native: layout.native.map(|settings| Native {
                            schema: 0,
                            zero_threshold: settings.zero_threshold,
                            zero_count: 0,
                            positive: &[],
                            negative: &[],
                        }),
                    };
                    encoder.histogram(&sample, &point);
                }
                (Kind::Histogram, None) => {}
            }
        });
    }
    encoder.finish();
}
