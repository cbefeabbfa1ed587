//! Pushing (feature `push`): to a Pushgateway, an OTLP/HTTP receiver (feature `otlp`) or a
//! Remote-Write receiver (feature `remote-write`), each a [`PushTarget`].
//!
//! A [`MetricsServer`](crate::MetricsServer) pushes to the targets of its
//! [`Builder`](crate::Builder) while it serves; a [`Pusher`] pushes without serving. Either
//! way the pushes run on a thread of their own, one loop per target:
//!
//! * every interval, the target's protocol encodes the one store (a lock-free walk: a push
//!   never blocks a writer) into a buffer reused from push to push, compresses it and sends
//!   it;
//! * one request at a time: a slow or dead receiver delays the next push, it never queues
//!   them. Values are cumulative, so the next push carries what a failed one had;
//! * a `429`, a transient `5xx`, a timeout or a refused connection is retried with
//!   exponential backoff and jitter (after `Retry-After` when the receiver says), while the
//!   interval lasts; any other refusal drops that push. Each failed attempt is counted in
//!   `porter_metrics_push_failures_total{reason}`, and the first one of a target is logged;
//! * `stop()` ends the loops, then pushes once more to each target, bounded by its
//!   timeout, so a job's last increments arrive; it reports the first final push that
//!   failed.
//!
//! Every push is described by the self-metrics `porter_metrics_pushes_total`,
//! `porter_metrics_push_failures_total`, `porter_metrics_push_bytes_total`,
//! `porter_metrics_push_duration_seconds` and
//! `porter_metrics_push_last_success_timestamp_seconds`, labelled with the target's
//! `protocol` and `endpoint` (host and port).
//!
//! The client is hyper with rustls (ring) and the system's root certificates, checked in
//! `start()`.

mod client;
mod protocol;
mod stats;

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use super::lifecycle::Lifecycle;
use super::Exported;
use crate::config::Config;
use crate::pipeline::Source;
use crate::push_target::PushTarget;
use crate::{Error, LocalRecorder, PrometheusCollector, PushError};
use client::Client;
pub(crate) use protocol::Identity;
use protocol::{Verdict, Wire};
use stats::{Reason, TargetStats};

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
            identity: Arc::new(identity(config)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The push self-metrics, as written with the other self-metrics.
    pub(crate) fn families(&self) -> Vec<crate::encode::ExtraFamily> {
        stats::families(&self.stats)
    }
}

/// Who pushes, from the builder's settings: `job` and `instance` for Remote-Write,
/// `service.name`, `service.instance.id` and the user's attributes for OTLP.
fn identity(config: &Config) -> Identity {
    let service = config.push.service_name.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "unknown_service".to_owned())
    });
    let instance = config.push.instance_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}:{}", std::process::id())
    });
    let mut resource = vec![
        ("service.name".to_owned(), service.clone()),
        ("service.instance.id".to_owned(), instance.clone()),
    ];
    for (key, value) in &config.push.resource {
        match resource.iter_mut().find(|(k, _)| k == key) {
            Some(kept) => kept.1 = value.clone(),
            None => resource.push((key.clone(), value.clone())),
        }
    }
    Identity {
        labels: vec![
            ("job".to_owned(), service),
            ("instance".to_owned(), instance),
        ],
        resource,
    }
}

/// What a push loop encodes for one target, outside one (see `testing::PushEncoder`).
#[cfg(feature = "testing")]
pub(crate) struct Encoder {
    wire: Wire,
    source: Source,
    identity: Identity,
}

#[cfg(feature = "testing")]
impl Encoder {
    pub(crate) fn new(pipeline: &Arc<crate::pipeline::Pipeline>, target: &PushTarget) -> Self {
        Self {
            wire: Wire::new(target),
            source: Source::new(pipeline.clone(), Vec::new),
            identity: identity(&pipeline.config().cloned().unwrap_or_default()),
        }
    }

    /// The next push's body.
    pub(crate) fn body(&mut self) -> Result<Vec<u8>, PushError> {
        let encoded = self.wire.encode(&self.source, &self.identity)?;
        Ok(encoded.body.to_vec())
    }
}

/// Pushes the exposition to its targets without serving it; see the module documentation.
///
/// ```no_run
/// use std::time::Duration;
/// use porter_metrics::{Builder, Collector, PushTarget};
///
/// # fn main() -> Result<(), porter_metrics::Error> {
/// let pusher = Builder::new()
///     .push(PushTarget::pushgateway("http://127.0.0.1:9091/metrics/job/nightly_import")?)
///     .build_pusher()?;
/// pusher.start()?;
/// pusher.collector().increment_counter("rows_imported_total", &["table", "orders"]);
/// pusher.stop()?; // pushes the final values
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a Pusher stops it"]
pub struct Pusher {
    exported: Exported,
    targets: Targets,
    running: Lifecycle<Pushing>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("targets", &self.targets.targets)
            .finish_non_exhaustive()
    }
}

impl Pusher {
    pub(crate) fn new(config: Config) -> Result<Self, Error> {
        if config.push.targets.is_empty() {
            return Err(Error::NoPushTarget);
        }
        Ok(Self {
            targets: Targets::new(&config),
            exported: Exported::new(config),
            running: Lifecycle::default(),
        })
    }

    /// Starts pushing every interval, from a thread of its own.
    ///
    /// # Errors
    /// [`Error::AlreadyRunning`], [`Error::Tls`] (no usable root certificates),
    /// [`Error::ForeignRecorder`], [`Error::AlreadyExported`],
    /// [`Error::Runtime`].
    pub fn start(&self) -> Result<(), Error> {
        let busy = |_: Option<&Pushing>| Error::AlreadyRunning {
            address: self.endpoint().to_owned(),
        };
        self.running.start(busy, || {
            let targets = self.targets.clone();
            let (claim, source) = self.exported.claim(move || targets.families())?;
            Ok((claim, Pushing::start(&self.targets, source)?))
        })?;
        tracing::info!(endpoint = %self.endpoint(), "porter-metrics: pushing");
        Ok(())
    }

    /// Stops pushing, after one last push of the final values to each target. Idempotent.
    ///
    /// # Errors
    /// [`Error::Push`] if a final push failed. The pusher is stopped either way.
    pub fn stop(&self) -> Result<(), Error> {
        let Some((claim, pushing)) = self.running.stop() else {
            return Ok(());
        };
        let outcome = pushing.stop();
        drop(claim);
        tracing::info!(endpoint = %self.endpoint(), "porter-metrics: stopped pushing");
        outcome
    }

    /// The URL of the first target.
    ///
    /// ```
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let url = "http://127.0.0.1:9091/metrics/job/x";
    /// let pusher = porter_metrics::Builder::new().build_push(url, std::time::Duration::from_secs(1))?;
    /// assert_eq!(pusher.endpoint(), url);
    /// # Ok(())
    /// # }
    /// ```
    pub fn endpoint(&self) -> &str {
        self.targets.targets.first().map_or("", |t| t.url())
    }

    /// A collector recording into what this pusher pushes.
    ///
    /// ```
    /// use porter_metrics::Collector;
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let url = "http://127.0.0.1:9091/metrics/job/x";
    /// let pusher = porter_metrics::Builder::new().standalone().build_push(url, std::time::Duration::from_secs(1))?;
    /// pusher.collector().increment_counter("rows_total", &[]); // pushed from start() on
    /// # Ok(())
    /// # }
    /// ```
    pub fn collector(&self) -> PrometheusCollector {
        self.exported.collector()
    }

    /// The recorder of a standalone pusher, to use with `metrics::with_local_recorder`;
    /// `None` for a global one.
    pub fn recorder(&self) -> Option<LocalRecorder> {
        self.exported.recorder()
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The push thread, running one loop per target; see the module documentation.
pub(crate) struct Pushing {
    stop: watch::Sender<bool>,
    thread: JoinHandle<Vec<(String, Result<(), PushError>)>>,
}

impl Pushing {
    /// Starts pushing `source` to `targets`.
    pub(crate) fn start(targets: &Targets, source: Source) -> Result<Self, Error> {
        let client = client::client()?;
        let (stop, stopped) = watch::channel(false);
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let targets = targets.clone();
        // The runtime is built, and dropped, on the push thread: dropping one is not allowed
        // inside the caller's async code.
        let thread = thread::Builder::new()
            .name("porter-metrics-push".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(Error::Runtime(e)));
                        return Vec::new();
                    }
                };
                let _ = ready.send(Ok(()));
                runtime.block_on(async {
                    let mut loops = tokio::task::JoinSet::new();
                    for at in 0..targets.targets.len() {
                        let (targets, source, client) =
                            (targets.clone(), source.clone(), client.clone());
                        let stopped = stopped.clone();
                        loops.spawn(async move {
                            let target = &targets.targets[at];
                            let outcome = run(at, &targets, &source, &client, stopped).await;
                            (target.url().to_owned(), outcome)
                        });
                    }
                    let mut outcomes = Vec::new();
                    while let Some(joined) = loops.join_next().await {
                        outcomes.push(joined.unwrap_or_else(|_| {
                            (
                                String::new(),
                                Err(PushError::Request("a push loop ended unexpectedly".into())),
                            )
                        }));
                    }
                    outcomes
                })
            })
            .map_err(Error::Runtime)?;
        let outcome = started.recv().unwrap_or_else(|_| {
            Err(Error::Runtime(std::io::Error::other(
                "the push thread ended before it was ready",
            )))
        });
        if let Err(e) = outcome {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Self { stop, thread })
    }

    /// Stops the loops after their final pushes; the first final push that failed.
    pub(crate) fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let outcomes = self.thread.join().unwrap_or_else(|_| {
            vec![(
                String::new(),
                Err(PushError::Request(
                    "the push thread ended unexpectedly".into(),
                )),
            )]
        });
        match outcomes.into_iter().find(|(_, outcome)| outcome.is_err()) {
            Some((endpoint, Err(source))) => Err(Error::Push { endpoint, source }),
            _ => Ok(()),
        }
    }
}

/// One target's loop: a push every interval until stopped, then the final push.
async fn run(
    at: usize,
    targets: &Targets,
    source: &Source,
    client: &Client,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), PushError> {
    let (target, stats) = (&targets.targets[at], &targets.stats[at]);
    let mut push = Push {
        target,
        stats,
        identity: &targets.identity,
        source,
        client,
        wire: Wire::new(target),
        jitter: Jitter::new(at),
        warned: false,
    };
    let mut ticks = tokio::time::interval_at(Instant::now() + target.interval, target.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = ticks.tick() => {}
        }
        let deadline = Instant::now() + target.interval;
        tokio::select! {
            _ = stopped.changed() => break,
            _ = push.once(deadline) => {}
        }
    }
    let deadline = Instant::now() + target.timeout;
    tokio::time::timeout(target.timeout, push.once(deadline))
        .await
        .unwrap_or(Err(PushError::Timeout(target.timeout)))
}

/// Pushes to one target.
struct Push<'a> {
    target: &'a PushTarget,
    stats: &'a TargetStats,
    identity: &'a Identity,
    source: &'a Source,
    client: &'a Client,
    wire: Wire,
    jitter: Jitter,
    /// Whether a failure was logged (once per target).
    warned: bool,
}

impl Push<'_> {
    /// One push, retried while it may be before `deadline`.
    async fn once(&mut self, deadline: Instant) -> Result<(), PushError> {
        let started = Instant::now();
        let interval = self.target.interval;
        let mut backoff = (interval / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let outcome = loop {
            let request = match self.wire.request(self.target, self.source, self.identity) {
                Ok(request) => request,
                Err(e) => break Err(e),
            };
            self.stats
                .sent(hyper::body::Body::size_hint(request.body()).lower() as usize);
            let (verdict, error) =
                match client::send(self.client, request, self.target.timeout).await {
                    Ok(answer) => {
                        let verdict = self.wire.judge(&answer);
                        let message: String = String::from_utf8_lossy(&answer.body)
                            .trim()
                            .chars()
                            .take(256)
                            .collect();
                        let error = match verdict {
                            Verdict::Drop(Reason::Partial) => PushError::Partial(message),
                            _ => PushError::Status {
                                status: answer.status.as_u16(),
                                message,
                            },
                        };
                        (verdict, error)
                    }
                    Err(e) => (Verdict::Retry(protocol::reason(&e), None), e),
                };
            let wait = match verdict {
                Verdict::Done => break Ok(()),
                Verdict::Drop(reason) => {
                    self.stats.failed(reason);
                    break Err(error);
                }
                Verdict::Resend(reason) => {
                    self.stats.failed(reason);
                    tracing::warn!(
                        endpoint = %self.target.endpoint(),
                        "porter-metrics: the receiver does not take Remote-Write 2.0; sending 1.0 from now on"
                    );
                    continue;
                }
                Verdict::Retry(reason, after) => {
                    self.stats.failed(reason);
                    after.unwrap_or_else(|| self.jitter.apply(backoff))
                }
            };
            if Instant::now() + wait >= deadline {
                break Err(error);
            }
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(interval / 2);
        };
        self.stats.ended(started.elapsed(), outcome.is_ok());
        if let Err(e) = &outcome {
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    endpoint = %self.target.endpoint(),
                    protocol = self.target.protocol.as_str(),
                    error = %e,
                    "porter-metrics: push failed; retrying (logged once; see porter_metrics_push_failures_total)"
                );
            }
        }
        outcome
    }
}

/// Spreads retries out (xorshift; no need for a cryptographic generator).
struct Jitter(u64);

impl Jitter {
    fn new(salt: usize) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        Self((u64::from(nanos) ^ (salt as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// `wait` scaled by a random factor in [0.5, 1).
    fn apply(&mut self, wait: Duration) -> Duration {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
        wait.mul_f64(0.5 + unit / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_whole() {
        let mut jitter = Jitter::new(3);
        for _ in 0..1000 {
            let wait = jitter.apply(Duration::from_millis(100));
            assert!(wait >= Duration::from_millis(50) && wait < Duration::from_millis(100));
        }
    }

    #[test]
    fn identity_comes_from_the_builder_with_defaults() {
        let mut config = Config::default();
        let defaults = identity(&config);
        assert_eq!(defaults.labels[0].0, "job");
        assert!(!defaults.labels[0].1.is_empty());
        assert!(defaults.labels[1]
            .1
            .ends_with(&format!(":{}", std::process::id())));
        config.push.service_name = Some("api".into());
        config.push.instance_id = Some("pod-1".into());
        config.push.resource = vec![
            ("deployment.environment".into(), "prod".into()),
            ("service.name".into(), "override".into()),
        ];
        let set = identity(&config);
        assert_eq!(
            set.labels,
            [
                ("job".into(), "api".into()),
                ("instance".into(), "pod-1".into())
            ]
        );
        assert_eq!(set.resource[0], ("service.name".into(), "override".into()));
        assert_eq!(
            set.resource[2],
            ("deployment.environment".into(), "prod".into())
        );
    }
}
