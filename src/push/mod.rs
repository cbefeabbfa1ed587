//! Pushing (feature `push`): to a Pushgateway, an OTLP/HTTP receiver (feature `otlp`) or a
//! Remote-Write receiver (feature `remote-write`), each a [`PushTarget`].
//!
//! A [`MetricsServer`](crate::MetricsServer) pushes to the targets of its
//! [`Builder`](crate::Builder) while it serves; a [`Pusher`] pushes without serving. Either
//! way the pushes run on a thread of their own, one loop per target ([`schedule`]):
//!
//! * every interval, the target's protocol ([`protocol`]) encodes the one store (a
//!   lock-free walk: a push never blocks a writer) into requests of at most 10 000 samples
//!   and 4 MiB each (`PushTarget::max_request_size`), compresses each and sends it
//!   ([`batches`]): in order, at most two in flight (`PushTarget::requests_in_flight`),
//!   the walk waiting while they are, so a push holds a few requests, never the store;
//! * one push at a time: a slow or dead receiver delays the next push, it never queues
//!   them. Values are cumulative, so the next push carries what a failed one had;
//! * a `429`, a transient `5xx`, a timeout or a refused connection is retried with
//!   exponential backoff and jitter (after `Retry-After`, either form, at least the backoff
//!   and at most 5 minutes, when the receiver says; the next pushes wait for it too), while
//!   the interval lasts, each request alone: one the receiver took is never sent again.
//!   Any other refusal drops that request. Each failed attempt is counted in
//!   `porter_metrics_push_failures_total{reason}`, and the first one of a target is logged;
//! * a receiver that does not take what was sent as encoded teaches the target, for good:
//!   a Remote-Write 1.0 receiver gets 1.0, one that validates legacy names gets escaped
//!   names, one that refuses native histograms gets their classic buckets. The push is
//!   sent again at once; each is counted in `porter_metrics_push_fallbacks_total{reason}`
//!   and logged once;
//! * OTLP and Remote-Write end series with stale markers (Remote-Write's StaleNaN, OTLP's
//!   `NO_RECORDED_VALUE` flag): each push marks the series idle expiry hid (a series is
//!   hidden for one idle timeout before it is reclaimed, so an interval shorter than the
//!   idle timeout, which the builder checks, marks each at least once while pushes
//!   succeed), and `stop()` marks every series after the final push;
//! * `stop()` ends the loops, then pushes once more to each target, bounded by its
//!   timeout, so a job's last increments arrive, then sends the stale markers (bounded by
//!   the timeout again); it reports the first failure. A `stop()` before `start()` has
//!   nothing to push, and sends nothing.
//!
//! Every push is described by the self-metrics `porter_metrics_pushes_total`,
//! `porter_metrics_push_failures_total`, `porter_metrics_push_fallbacks_total`,
//! `porter_metrics_push_bytes_total`, `porter_metrics_push_duration_seconds` and
//! `porter_metrics_push_last_success_timestamp_seconds`, labelled with the target's
//! `protocol` and `endpoint` (host and port).
//!
//! The client ([`client`]) is hyper with rustls, with the system's root certificates or a
//! target's own CA, client certificate and server name ([`tls`]), checked in `start()`.

mod batches;
mod builder;
mod client;
mod credentials;
mod identity;
mod outcome;
mod protocol;
mod pusher;
mod retry;
mod schedule;
mod stats;
mod target;
mod tls;

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::exporter::thread;
use crate::pipeline::Source;
use crate::{Error, PushError};
use batches::Context;
use identity::Identity;
#[cfg(feature = "otlp")]
use protocol::otlp::Otlp;
use protocol::pushgateway::Pushgateway;
#[cfg(feature = "remote-write")]
use protocol::remote_write::RemoteWrite;
pub use pusher::Pusher;
use stats::TargetStats;
use target::Protocol;
pub use target::PushTarget;

#[cfg(feature = "testing")]
pub(crate) use pusher::Encoder;

/// The targets of one exporter, with their counts (kept across a stop and a start) and who
/// pushes.
#[derive(Clone)]
pub(crate) struct Targets {
    targets: Arc<[PushTarget]>,
    stats: Arc<[TargetStats]>,
    identity: Arc<Identity>,
}

impl Targets {
    pub(crate) fn new(config: &Config) -> Self {
        let targets: Arc<[PushTarget]> = config.push.targets.clone().into();
        Self {
            stats: targets.iter().map(TargetStats::new).collect(),
            targets,
            identity: Arc::new(Identity::of(config)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Checks the targets against the pipeline's settings: a target that writes stale
    /// markers pushes more often than idle expiry reclaims series (see the module
    /// documentation).
    pub(crate) fn check(&self, config: &Config) -> Result<(), Error> {
        let Some(idle) = config.idle_timeout else {
            return Ok(());
        };
        match self
            .targets
            .iter()
            .any(|t| t.protocol.marks_stale() && t.interval >= idle)
        {
            true => Err(Error::InvalidPushSetting {
                setting: "interval",
                reason: "shorter than the idle timeout, to mark each expired series stale",
            }),
            false => Ok(()),
        }
    }

    /// Every target's URL.
    pub(crate) fn urls(&self) -> Vec<&str> {
        self.targets.iter().map(PushTarget::url).collect()
    }

    /// The push self-metrics, as written with the other self-metrics.
    pub(crate) fn families(&self) -> Vec<crate::encode::ExtraFamily> {
        stats::families(&self.stats)
    }
}

/// The push thread, running one loop per target; see the module documentation.
pub(crate) struct Pushing {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Vec<(String, Result<(), PushError>)>>,
}

impl Pushing {
    /// Starts pushing `source` to `targets`: their clients made (TLS settings checked, the
    /// system's roots loaded) before the thread starts.
    pub(crate) fn start(targets: &Targets, source: Source) -> Result<Self, Error> {
        let clients = targets
            .targets
            .iter()
            .map(client::client)
            .collect::<Result<Vec<_>, Error>>()?;
        let (stop, stopped) = watch::channel(false);
        let targets = targets.clone();
        let thread = thread::spawn(
            "porter-metrics-push",
            Error::PushRuntime,
            move || async move {
                let mut loops = tokio::task::JoinSet::new();
                for (at, client) in clients.into_iter().enumerate() {
                    let (targets, source) = (targets.clone(), source.clone());
                    let url = targets.targets[at].url().to_owned();
                    let stopped = stopped.clone();
                    let protocol = targets.targets[at].protocol;
                    macro_rules! spawn {
                        ($exchange:expr) => {{
                            let context = Arc::new(Context {
                                exchange: $exchange,
                                targets,
                                at,
                                client,
                                source,
                            });
                            loops
                                .spawn(async move { (url, schedule::run(context, stopped).await) });
                        }};
                    }
                    match protocol {
                        Protocol::Pushgateway => spawn!(Pushgateway),
                        #[cfg(feature = "otlp")]
                        Protocol::Otlp => spawn!(Otlp),
                        #[cfg(feature = "remote-write")]
                        Protocol::RemoteWrite => spawn!(RemoteWrite),
                    }
                }
                let mut outcomes = Vec::new();
                while let Some(joined) = loops.join_next().await {
                    outcomes.push(joined.unwrap_or_else(|_| {
                        let error = PushError::Request("a push loop ended unexpectedly".into());
                        (String::new(), Err(error))
                    }));
                }
                outcomes
            },
        )?;
        Ok(Self { stop, thread })
    }

    /// Stops the loops after their final pushes; the first final push that failed.
    pub(crate) fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let outcomes = self.thread.join().unwrap_or_else(|_| {
            let error = PushError::Request("the push thread ended unexpectedly".into());
            vec![(String::new(), Err(error))]
        });
        match outcomes.into_iter().find(|(_, outcome)| outcome.is_err()) {
            Some((endpoint, Err(source))) => Err(Error::Push { endpoint, source }),
            _ => Ok(()),
        }
    }
}
