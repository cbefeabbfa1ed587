//! [`Pusher`]: pushing without serving; and, for `testing::PushEncoder`, what a push loop
//! encodes, outside one.

use super::{Pushing, Targets};
use crate::config::Config;
use crate::exporter::{Exported, Lifecycle};
use crate::{Error, LocalRecorder, PrometheusCollector};

/// Pushes the exposition to its targets without serving it: every interval, in requests
/// of bounded size, retried with backoff, with stale markers for the series that end; and
/// once more at [`stop`](Self::stop). The [guide](crate::guide)'s push section says what
/// each protocol sends and how each answer is taken.
///
/// ```no_run
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
    /// A pusher of `config`'s targets; its settings checked.
    pub(crate) fn new(config: Config) -> Result<Self, Error> {
        if config.push.targets.is_empty() {
            return Err(Error::NoPushTarget);
        }
        // The listener's settings: a pusher has no listener.
        let defaults = Config::default();
        let listener = [
            ("allow", !config.allowed.is_empty()),
            (
                "header_read_timeout",
                config.header_read_timeout != defaults.header_read_timeout,
            ),
        ];
        if let Some((setting, _)) = listener.iter().find(|(_, set)| *set) {
            return Err(Error::NotApplicable {
                setting,
                built: "a Pusher",
            });
        }
        let targets = Targets::new(&config);
        targets.check(&config)?;
        Ok(Self {
            targets,
            exported: Exported::new(config),
            running: Lifecycle::default(),
        })
    }

    /// Starts pushing every interval, from a thread of its own.
    ///
    /// # Errors
    /// [`Error::AlreadyPushing`], [`Error::Tls`] (no usable root certificates),
    /// [`Error::PushTls`] (a client key rustls refuses), [`Error::ForeignRecorder`],
    /// [`Error::AlreadyExported`], [`Error::ConflictingSettings`], [`Error::PushRuntime`].
    pub fn start(&self) -> Result<(), Error> {
        let busy = |_: Option<&Pushing>| Error::AlreadyPushing {
            endpoints: self.endpoints().iter().map(|u| (*u).to_owned()).collect(),
        };
        self.running.start(busy, || {
            let targets = self.targets.clone();
            let (claim, source) = self.exported.claim(move || targets.families())?;
            Ok((claim, Pushing::start(&self.targets, source)?))
        })?;
        tracing::info!(
            endpoints = ?self.endpoints(),
            identity = %self.targets.identity,
            "porter-metrics: pushing"
        );
        Ok(())
    }

    /// Stops pushing, after one last push of the final values to each target (and stale
    /// markers for every series, to a target that has them). Idempotent; before `start()`
    /// there is nothing to push, and nothing is sent.
    ///
    /// # Errors
    /// [`Error::Push`] if a final push failed. The pusher is stopped either way.
    pub fn stop(&self) -> Result<(), Error> {
        let Some((claim, pushing)) = self.running.stop() else {
            return Ok(());
        };
        let outcome = pushing.stop();
        drop(claim);
        tracing::info!(endpoints = ?self.endpoints(), "porter-metrics: stopped pushing");
        outcome
    }

    /// The URL of each target, in the order they were added (without credentials).
    ///
    /// ```
    /// use porter_metrics::{Builder, PushTarget};
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let (gateway, otlp) = ("http://127.0.0.1:9091/metrics/job/x", "http://127.0.0.1:4318");
    /// let pusher = Builder::new()
    ///     .push(PushTarget::pushgateway(gateway)?)
    ///     .push(PushTarget::otlp(otlp)?)
    ///     .build_pusher()?;
    /// assert_eq!(pusher.endpoints(), [gateway, otlp]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn endpoints(&self) -> Vec<&str> {
        self.targets.urls()
    }

    /// A collector recording into what this pusher pushes.
    ///
    /// ```
    /// use porter_metrics::{Builder, Collector, PushTarget};
    /// # fn main() -> Result<(), porter_metrics::Error> {
    /// let target = PushTarget::pushgateway("http://127.0.0.1:9091/metrics/job/x")?;
    /// let pusher = Builder::new().standalone().push(target).build_pusher()?;
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

/// What a push loop encodes for one target, outside one (see `testing::PushEncoder`):
/// every exemplar recorded so far each time, timestamps increasing as a loop's.
#[cfg(feature = "testing")]
pub(crate) struct Encoder {
    target: super::PushTarget,
    source: crate::pipeline::Source,
    identity: std::sync::Arc<super::Identity>,
    clock: super::schedule::Clock,
    room: Room,
}

/// The room of each protocol's encoding.
#[cfg(feature = "testing")]
enum Room {
    Pushgateway,
    #[cfg(feature = "otlp")]
    Otlp(Box<<super::Otlp as super::protocol::Exchange>::Room>),
    #[cfg(feature = "remote-write")]
    RemoteWrite(Box<<super::RemoteWrite as super::protocol::Exchange>::Room>),
}

#[cfg(feature = "testing")]
impl Encoder {
    pub(crate) fn new(
        pipeline: &std::sync::Arc<crate::pipeline::Pipeline>,
        target: &super::PushTarget,
    ) -> Self {
        use super::Protocol;
        let config = pipeline.config().cloned().unwrap_or_default();
        Self {
            target: target.clone(),
            source: crate::pipeline::Source::new(pipeline.clone(), Vec::new),
            identity: std::sync::Arc::new(super::Identity::of(&config)),
            clock: super::schedule::Clock::default(),
            room: match target.protocol {
                Protocol::Pushgateway => Room::Pushgateway,
                #[cfg(feature = "otlp")]
                Protocol::Otlp => Room::Otlp(Default::default()),
                #[cfg(feature = "remote-write")]
                Protocol::RemoteWrite => Room::RemoteWrite(Default::default()),
            },
        }
    }

    /// The bodies of the next push's requests, compressed, cut as `batching` says.
    pub(crate) fn bodies(
        &mut self,
        batching: super::target::Batching,
    ) -> Result<Vec<Vec<u8>>, crate::PushError> {
        use super::protocol::{Exchange, Job, Learnt, What};
        let mut learnt = Learnt::default();
        if self.target.v1 {
            learnt.learn(super::protocol::Fallback::RemoteWriteV1);
        }
        let job = Job {
            source: self.source.clone(),
            identity: self.identity.clone(),
            learnt,
            what: What::Values,
            stamp_ms: self.clock.stamp(),
            exemplars_from: f64::NEG_INFINITY,
            batching,
        };
        let mut bodies = Vec::new();
        let mut take = |body: &[u8]| {
            bodies.push(body.to_vec());
            true
        };
        match &mut self.room {
            Room::Pushgateway => super::Pushgateway.encode(&mut (), &job, &mut |r| take(&r.body)),
            #[cfg(feature = "otlp")]
            Room::Otlp(room) => super::Otlp.encode(room, &job, &mut |r| take(&r.body)),
            #[cfg(feature = "remote-write")]
            Room::RemoteWrite(room) => {
                super::RemoteWrite.encode(room, &job, &mut |r| take(&r.body))
            }
        }?;
        Ok(bodies)
    }

    /// The target's own cut.
    pub(crate) fn batching(&self) -> super::target::Batching {
        self.target.batching
    }
}
