//! The lock-free walk of a family: every exported series in index order, each with its
//! label text copied out as of one moment (or skipped if it changed meanwhile).

use std::sync::atomic::{fence, Ordering};

use super::super::arena::Arena;
use super::super::protocol::{LIVE, VISIBLE};
use super::{Family, Series};

impl Family {
    /// Runs `f` on every exported series, in index order, without a lock: each with its
    /// labels (read into `scratch`) as of one moment, or skipped if it changed meanwhile.
    pub(crate) fn for_each(
        &self,
        scratch: &mut Scratch,
        f: impl FnMut(&Series<'_>, LabelsView<'_>),
    ) {
        self.walk(scratch, LIVE | VISIBLE, f);
    }

    /// Runs `f` on every series idle expiry has hidden and not yet reclaimed, as
    /// [`for_each`](Self::for_each) does on the exported ones: a pusher's stale markers.
    #[cfg_attr(
        not(any(feature = "otlp", feature = "remote-write", feature = "testing")),
        allow(
            dead_code,
            reason = "pushes write stale markers; tests count hidden samples"
        )
    )]
    pub(crate) fn for_each_hidden(
        &self,
        scratch: &mut Scratch,
        f: impl FnMut(&Series<'_>, LabelsView<'_>),
    ) {
        self.walk(scratch, LIVE, f);
    }

    /// The walk of the series whose state's `LIVE` and `VISIBLE` bits are `want`.
    fn walk(
        &self,
        scratch: &mut Scratch,
        want: u32,
        mut f: impl FnMut(&Series<'_>, LabelsView<'_>),
    ) {
        for i in 0..self.len.load(Ordering::Acquire) {
            let Some((segment, at)) = self.slot(i) else {
                break;
            };
            let record = &segment.record(at);
            let state = record.state.load(Ordering::Acquire);
            if state & (LIVE | VISIBLE) != want {
                continue;
            }
            scratch.read(&self.arena, record.labels.load(Ordering::Relaxed));
            let series = Series {
                family: self,
                index: i,
                record,
                segment,
                at,
                state,
            };
            fence(Ordering::Acquire);
            if record.state.load(Ordering::Relaxed) != state {
                continue;
            }
            if let Some(labels) = scratch.labels() {
                f(&series, labels);
            }
        }
    }
}

/// Where a walk copies a series' label text.
#[derive(Default)]
pub(crate) struct Scratch {
    text: Vec<u8>,
    /// Per pair: where its key ends, where its value ends.
    ends: Vec<(usize, usize)>,
}

impl Scratch {
    fn read(&mut self, arena: &Arena, list: u32) {
        self.text.clear();
        self.ends.clear();
        for (k, v) in arena.list(list) {
            arena.read(k, &mut self.text);
            let key_end = self.text.len();
            arena.read(v, &mut self.text);
            self.ends.push((key_end, self.text.len()));
        }
    }

    /// The pairs read; `None` if a racing reuse left bytes that are not text.
    fn labels(&self) -> Option<LabelsView<'_>> {
        let text = std::str::from_utf8(&self.text).ok()?;
        let fits = self
            .ends
            .iter()
            .all(|&(k, v)| text.is_char_boundary(k) && text.is_char_boundary(v));
        fits.then_some(LabelsView {
            text,
            ends: &self.ends,
        })
    }
}

/// A series' label pairs as a walk read them, sorted by key.
#[derive(Clone, Copy)]
pub(crate) struct LabelsView<'a> {
    text: &'a str,
    ends: &'a [(usize, usize)],
}

impl<'a> LabelsView<'a> {
    pub(crate) fn iter(self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone {
        let text = self.text;
        let starts = std::iter::once(0).chain(self.ends.iter().map(|e| e.1));
        self.ends
            .iter()
            .zip(starts)
            .map(move |(&(key_end, end), start)| (&text[start..key_end], &text[key_end..end]))
    }
}
