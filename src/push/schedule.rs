//! One target's loop: a push every interval (later if the receiver said `Retry-After`)
//! until stopped, then the final push and, to a protocol that has them, stale markers for
//! every series. Each push learns from the receiver (a fallback is taken once, and the push
//! sent again at once), keeps its timestamps strictly increasing, and moves the exemplar
//! window on once the receiver answered every request.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::batches::{self, Context, Pushed};
use super::protocol::{Exchange, Fallback, Job, Learnt, What};
use super::retry::Deadline;
use crate::store::unix_now as since_epoch;
use crate::PushError;

/// Push timestamps of one target, in ms since the Unix epoch, strictly increasing: two
/// pushes within a millisecond (a final push right after a periodic one, a push sent again
/// after a fallback) would give a series two values at one timestamp, which Prometheus
/// refuses as a duplicate sample. The millisecond after each is kept for the push's stale
/// markers.
#[derive(Default)]
pub(crate) struct Clock {
    next: i64,
}

impl Clock {
    pub(crate) fn stamp(&mut self) -> i64 {
        let now = i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX / 2);
        let stamp = now.max(self.next);
        self.next = stamp + 2;
        stamp
    }
}

/// What a target's pushes keep from one to the next.
struct State<R> {
    /// The encoder's room (out while a push encodes).
    room: Option<R>,
    learnt: Learnt,
    clock: Clock,
    /// The exemplars not pushed yet: those recorded from this time on.
    exemplars_from: f64,
    /// Not before this, as the receiver asked.
    not_before: Option<Instant>,
    /// Whether a failure was logged (once per target).
    warned: bool,
}

/// Runs one target's loop (see the module documentation); the outcome of its final push.
pub(crate) async fn run<P: Exchange>(
    context: Arc<Context<P>>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), PushError> {
    let target = context.target();
    let mut learnt = Learnt::default();
    if target.v1 {
        learnt.learn(Fallback::RemoteWriteV1);
    }
    let mut state = State {
        room: None,
        learnt,
        clock: Clock::default(),
        exemplars_from: f64::NEG_INFINITY,
        not_before: None,
        warned: false,
    };
    let (interval, timeout) = (target.interval, target.timeout);
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = ticks.tick() => {}
        }
        if state.not_before.is_some_and(|at| Instant::now() < at) {
            continue; // the receiver asked for time
        }
        // Retried while the interval lasts; a request in flight runs to its timeout, and the
        // next push waits for it.
        let deadline = Deadline::Retries(Instant::now() + interval);
        tokio::select! {
            _ = stopped.changed() => break,
            _ = push(&context, &mut state, What::Values, deadline) => {}
        }
    }
    let deadline = Deadline::Whole(Instant::now() + timeout);
    let outcome = push(&context, &mut state, What::Values, deadline).await;
    if outcome.is_err() || !target.protocol.marks_stale() {
        return outcome;
    }
    let deadline = Deadline::Whole(Instant::now() + timeout);
    push(&context, &mut state, What::Ended, deadline).await
}

/// One push, within `deadline`: sent again at once after each fallback it teaches.
async fn push<P: Exchange>(
    context: &Arc<Context<P>>,
    state: &mut State<P::Room>,
    what: What,
    deadline: Deadline,
) -> Result<(), PushError> {
    let started = Instant::now();
    let outcome = loop {
        let stamp_ms = state.clock.stamp();
        let job = Job {
            source: context.source.clone(),
            identity: context.identity().clone(),
            learnt: state.learnt,
            what,
            stamp_ms,
            exemplars_from: state.exemplars_from,
            batching: context.target().batching,
        };
        let room = state.room.take().unwrap_or_default();
        let pushed = batches::push(context, room, job, deadline);
        let pushed = match deadline {
            Deadline::Retries(_) => Ok(pushed.await),
            Deadline::Whole(at) => tokio::time::timeout_at(at, pushed).await,
        };
        let Ok(Pushed {
            room,
            outcome,
            fallback,
            not_before,
            answered,
        }) = pushed
        else {
            break Err(PushError::Timeout(deadline.at() - started));
        };
        state.room = Some(room);
        if not_before.is_some() {
            state.not_before = not_before;
        }
        match fallback {
            Some(fallback) if state.learnt.learn(fallback) => {
                context.stats().fell_back(fallback);
                tracing::warn!(
                    endpoint = %context.target().endpoint(),
                    reason = fallback.as_str(),
                    "{} (logged once; see porter_metrics_push_fallbacks_total)",
                    fallback.message()
                );
                continue;
            }
            // Refused again as already sent: nothing more to learn.
            Some(_) => break outcome,
            None => {}
        }
        if answered && what == What::Values {
            state.exemplars_from = stamp_ms as f64 / 1000.0;
        }
        break outcome;
    };
    context.stats().ended(started.elapsed(), outcome.is_ok());
    if let Err(e) = &outcome {
        if !state.warned {
            state.warned = true;
            let target = context.target();
            tracing::warn!(
                endpoint = %target.endpoint(),
                protocol = target.protocol.as_str(),
                error = %e,
                "porter-metrics: push failed; retrying (logged once; see porter_metrics_push_failures_total)"
            );
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_strictly_increase_and_keep_a_millisecond_for_stale_markers() {
        let mut clock = Clock::default();
        let mut last = clock.stamp();
        for _ in 0..1000 {
            let stamp = clock.stamp();
            assert!(stamp >= last + 2, "{stamp} after {last}");
            last = stamp;
        }
    }
}
