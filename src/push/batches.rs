//! One push as requests: encoded on a blocking thread into a queue as deep as the requests
//! in flight (the walk waits while it is full, so memory is bounded by the requests, not
//! the store), started in order, at most `requests_in_flight` at once, each retried alone
//! with backoff and jitter (after `Retry-After` when the receiver says) while the push's
//! deadline allows. A request the receiver refused is not sent again; one the receiver
//! took is never sent twice. A fallback ends the push at once (it is sent again, encoded
//! as the receiver takes it).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::header::USER_AGENT;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client;
use super::client::Client;
use super::identity::Identity;
use super::outcome::Reason;
use super::protocol::{reason, Exchange, Fallback, Job, Request, Verdict};
use super::retry::{wait, Deadline, Jitter};
use super::stats::TargetStats;
use super::target::PushTarget;
use super::Targets;
use crate::pipeline::Source;
use crate::PushError;

/// The `User-Agent` of every push.
const AGENT: &str = concat!("porter-metrics/", env!("CARGO_PKG_VERSION"));

/// What every push of one target reads.
pub(crate) struct Context<P> {
    pub(crate) exchange: P,
    pub(crate) targets: Targets,
    pub(crate) at: usize,
    pub(crate) client: Client,
    pub(crate) source: Source,
}

impl<P> Context<P> {
    pub(crate) fn target(&self) -> &PushTarget {
        &self.targets.targets[self.at]
    }

    pub(crate) fn stats(&self) -> &TargetStats {
        &self.targets.stats[self.at]
    }

    pub(crate) fn identity(&self) -> &Arc<Identity> {
        &self.targets.identity
    }
}

/// What a push came to.
pub(crate) struct Pushed<R> {
    /// The encoder's room, back.
    pub(crate) room: R,
    /// `Ok` if the receiver took every request; else the first request's failure, in
    /// order.
    pub(crate) outcome: Result<(), PushError>,
    /// What the receiver taught, if it refused a request as encoded.
    pub(crate) fallback: Option<Fallback>,
    /// Not before this, as the receiver asked when it last refused.
    pub(crate) not_before: Option<Instant>,
    /// Whether the receiver answered every request (took or refused it: none is due again).
    pub(crate) answered: bool,
}

/// What became of one request.
enum Outcome {
    Done,
    /// Refused: the next push carries its values.
    Dropped(PushError),
    /// No success before the deadline; and when the receiver asked to wait until.
    Failed(PushError, Option<Instant>),
    Fallback(Fallback),
}

/// Sends one push of `job`; see the module documentation.
pub(crate) async fn push<P: Exchange>(
    context: &Arc<Context<P>>,
    mut room: P::Room,
    job: Job,
    deadline: Deadline,
) -> Pushed<P::Room> {
    let in_flight = context.target().batching.in_flight;
    let (queue, mut requests) = mpsc::channel::<Request<P::Sent>>(in_flight);
    let producer = {
        let context = context.clone();
        tokio::task::spawn_blocking(move || {
            let mut send = |request| queue.blocking_send(request).is_ok();
            let encoded = context.exchange.encode(&mut room, &job, &mut send);
            (room, encoded)
        })
    };
    let mut sending = JoinSet::new();
    let (mut next, mut open) = (0usize, true);
    let mut failures: Vec<(usize, PushError)> = Vec::new();
    let (mut fallback, mut not_before, mut answered) = (None, None, true);
    while open || !sending.is_empty() {
        tokio::select! {
            request = requests.recv(), if open && sending.len() < in_flight => match request {
                Some(request) => {
                    let (context, at) = (context.clone(), next);
                    next += 1;
                    sending.spawn(async move { (at, send(&context, request, at, deadline).await) });
                }
                None => open = false,
            },
            Some(joined) = sending.join_next() => {
                let (at, outcome) = joined.unwrap_or_else(|_| {
                    let error = PushError::Request("a push request ended unexpectedly".into());
                    (usize::MAX, Outcome::Failed(error, None))
                });
                match outcome {
                    Outcome::Done => {}
                    Outcome::Dropped(error) => failures.push((at, error)),
                    Outcome::Failed(error, after) => {
                        answered = false;
                        not_before = after.or(not_before);
                        failures.push((at, error));
                    }
                    Outcome::Fallback(taught) => {
                        fallback = Some(taught);
                        break;
                    }
                }
            }
        }
    }
    // Whatever is queued or in flight is given up (after a fallback): the walk stops at its
    // next request, and the requests in flight are cancelled.
    drop(requests);
    sending.abort_all();
    let (room, encoded) = producer.await.unwrap_or_else(|_| {
        let error = PushError::Request("the push's encoding ended unexpectedly".into());
        (P::Room::default(), Err(error))
    });
    failures.sort_by_key(|(at, _)| *at);
    let outcome = match (encoded, failures.into_iter().next()) {
        (Err(e), _) => Err(e),
        (Ok(()), Some((_, e))) => Err(e),
        (Ok(()), None) => Ok(()),
    };
    Pushed {
        room,
        outcome,
        fallback,
        not_before,
        answered,
    }
}

/// Sends one request until the receiver takes or refuses it, or `deadline` passes.
async fn send<P: Exchange>(
    context: &Context<P>,
    request: Request<P::Sent>,
    salt: usize,
    deadline: Deadline,
) -> Outcome {
    let target = context.target();
    let stats = context.stats();
    let interval = target.interval;
    let mut backoff = (interval / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut jitter = Jitter::new(salt ^ context.at.rotate_left(16));
    loop {
        let mut http = hyper::Request::builder()
            .method(request.method.clone())
            .uri(target.uri.clone())
            .header(USER_AGENT, AGENT);
        for (name, value) in request.headers {
            http = http.header(*name, *value);
        }
        let mut http = match http.body(Full::new(request.body.clone())) {
            Ok(http) => http,
            Err(e) => return Outcome::Dropped(PushError::Request(e.into())),
        };
        for (name, value) in &target.headers {
            http.headers_mut().insert(name.clone(), value.clone());
        }
        stats.sent(request.body.len());
        let timeout = deadline.request(target.timeout);
        let (verdict, error) = match client::send(&context.client, http, timeout).await {
            Ok(answer) => {
                let verdict = context.exchange.judge(&answer, &request.sent);
                let message = answer.message();
                let error = match verdict {
                    Verdict::Drop(Reason::Partial) => PushError::Partial(message),
                    _ => PushError::Status {
                        status: answer.status.as_u16(),
                        message,
                    },
                };
                (verdict, error)
            }
            Err(e) => (Verdict::Retry(reason(&e), None), e),
        };
        let pause = match verdict {
            Verdict::Done => return Outcome::Done,
            Verdict::Drop(why) => {
                stats.failed(why);
                return Outcome::Dropped(error);
            }
            Verdict::Fallback(taught) => {
                stats.failed(Reason::Unsupported);
                return Outcome::Fallback(taught);
            }
            Verdict::Retry(why, after) => {
                stats.failed(why);
                let pause = wait(after, backoff, &mut jitter);
                if Instant::now() + pause >= deadline.at() {
                    let until = after.map(|_| Instant::now() + pause);
                    return Outcome::Failed(error, until);
                }
                pause
            }
        };
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(interval / 2).max(backoff);
    }
}
