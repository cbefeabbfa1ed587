//! One metrics pipeline: our layer, over the pending buffer, over the exporter's recorder,
//! kept in shape by an upkeep thread.
//!
//! A process has at most one *global* pipeline (installed as the `metrics` global recorder
//! the first time a [`PrometheusCollector`](crate::PrometheusCollector) or a global
//! [`MetricsServer`](crate::MetricsServer) needs it), and any number of standalone ones
//! held by their owners ([`LocalRecorder`](crate::LocalRecorder), standalone servers).
//!
//! The layer holds the pipeline's one id, one epoch and one clock. The exporter is *bound*
//! once, by the first server that starts on the pipeline (or at once, for a local
//! recorder), with that server's settings; servers then come and go over it.
//!
//! The upkeep thread moves histogram buffers into the exporter every `upkeep_interval`,
//! whether or not anybody scrapes (without it, observations pile up in memory), and with an
//! idle timeout expires idle series, which the exporter only does while rendering. It runs
//! as long as the pipeline exists.

mod pending;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

use crate::config::Config;
use crate::recorder::self_metrics::DropReason;
use crate::recorder::{Limits, PorterRecorder};
use crate::Error;
use pending::Pending;

/// The recorders of a pipeline, from the layer down.
pub(crate) type Stack = PorterRecorder<Pending<PrometheusRecorder>>;

/// See the module documentation.
pub(crate) struct Pipeline {
    recorder: Arc<Stack>,
    exporter: OnceLock<PrometheusHandle>,
    /// How often upkeep runs, in milliseconds.
    upkeep_ms: AtomicU64,
    upkeep: OnceLock<Thread>,
    /// Whether a running server exports this pipeline.
    exporting: AtomicBool,
    #[cfg(feature = "process")]
    process: OnceLock<metrics_process::Collector>,
}

impl Pipeline {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        let pipeline = Arc::new(Self {
            recorder: Arc::new(PorterRecorder::new(Pending::new(), limits)),
            exporter: OnceLock::new(),
            upkeep_ms: AtomicU64::new(duration_ms(Config::default().upkeep_interval())),
            upkeep: OnceLock::new(),
            exporting: AtomicBool::new(false),
            #[cfg(feature = "process")]
            process: OnceLock::new(),
        });
        // From the start: before the exporter is bound, upkeep moves histogram buffers into
        // the bounded pre-export buffer.
        pipeline.spawn_upkeep();
        pipeline
    }

    /// The pipeline's recorder: what the macros and the collector record into.
    pub(crate) fn recorder(&self) -> &Arc<Stack> {
        &self.recorder
    }

    /// Connects the exporter's recorder with `config`'s settings and hands the buffered data
    /// over. Once in the pipeline's life.
    pub(crate) fn bind(&self, exporter: PrometheusRecorder, config: &Config) -> Result<(), Error> {
        let handle = exporter.handle();
        // Under the drain lock: buffered observations move into the exporter with the rest.
        self.recorder
            .drained(|pending| pending.bind(exporter))
            .map_err(|_| Error::AlreadyExported)?;
        let _ = self.exporter.set(handle);
        // Cached handles into the pre-export buffer are replaced by the exporter's own.
        self.recorder.configure(config.limits, config.idle_timeout);
        let dropped = self.recorder.inner().dropped();
        if dropped > 0 {
            self.recorder.count_dropped(DropReason::BufferFull, dropped);
        }
        #[cfg(feature = "process")]
        if config.process {
            let process = self
                .process
                .get_or_init(metrics_process::Collector::default);
            metrics::with_local_recorder(&*self.recorder, || {
                process.describe();
                process.collect();
            });
        }
        #[cfg(feature = "runtime")]
        if let Some(runtime) = &config.runtime {
            crate::runtime::start(runtime, &self.recorder, config.upkeep_interval());
        }
        self.upkeep_ms
            .store(duration_ms(config.upkeep_interval()), Ordering::Relaxed);
        if let Some(thread) = self.upkeep.get() {
            thread.unpark(); // the new interval applies now
        }
        Ok(())
    }

    pub(crate) fn is_bound(&self) -> bool {
        self.exporter.get().is_some()
    }

    /// Claims the pipeline for one server, binding it with `config` if nobody did yet.
    pub(crate) fn export(self: &Arc<Self>, config: &Config) -> Result<ExportClaim, Error> {
        if self.exporting.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyExported);
        }
        let claim = ExportClaim(self.clone());
        if !self.is_bound() {
            self.bind(config.exporter()?.build_recorder(), config)?;
        }
        Ok(claim)
    }

    /// The text exposition, with every histogram observation recorded so far (empty before
    /// the exporter is bound).
    pub(crate) fn render(&self) -> String {
        self.recorder
            .drained(|_| self.exporter.get().map(PrometheusHandle::render))
            .unwrap_or_default()
    }

    /// Drains histograms, refreshes process metrics, and expires idle series.
    pub(crate) fn run_upkeep(&self) {
        #[cfg(feature = "process")]
        if let Some(process) = self.process.get() {
            metrics::with_local_recorder(&*self.recorder, || process.collect());
        }
        let idle = self.recorder.idle_timeout();
        self.recorder.drained(|_| {
            let Some(handle) = self.exporter.get() else {
                return;
            };
            if idle.is_some() {
                // The exporter expires idle series only while rendering: render (to nowhere)
                // so they expire even when nobody scrapes.
                let _ = handle.render_to_write(&mut std::io::sink());
            } else {
                handle.run_upkeep();
            }
        });
        self.recorder.upkeep();
    }

    fn upkeep_interval(&self) -> Duration {
        Duration::from_millis(self.upkeep_ms.load(Ordering::Relaxed))
    }

    fn spawn_upkeep(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let spawned = thread::Builder::new()
            .name("porter-metrics-upkeep".into())
            .spawn(move || {
                let mut last = Instant::now();
                loop {
                    let interval = match weak.upgrade() {
                        Some(pipeline) => pipeline.upkeep_interval(),
                        None => return,
                    };
                    // Woken early (the interval changed, or the pipeline is gone): wait again.
                    let left = interval.saturating_sub(last.elapsed());
                    if !left.is_zero() {
                        thread::park_timeout(left);
                        continue;
                    }
                    last = Instant::now();
                    match weak.upgrade() {
                        Some(pipeline) => pipeline.run_upkeep(),
                        None => return,
                    }
                }
            });
        match spawned {
            Ok(thread) => {
                let _ = self.upkeep.set(thread.thread().clone());
            }
            // Scrapes still drain histograms; only the unscraped case is left unbounded.
            Err(e) => tracing::error!(error = %e, "porter-metrics: cannot start the upkeep thread"),
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(thread) = self.upkeep.get() {
            thread.unpark();
        }
    }
}

/// A server's claim on a pipeline; released when dropped.
pub(crate) struct ExportClaim(Arc<Pipeline>);

impl Drop for ExportClaim {
    fn drop(&mut self) {
        self.0.exporting.store(false, Ordering::Release);
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

static GLOBAL: OnceLock<Result<Arc<Pipeline>, ()>> = OnceLock::new();

/// The global pipeline, installing it as the `metrics` global recorder on first use.
///
/// Fails with [`Error::ForeignRecorder`] if another global recorder was installed first.
pub(crate) fn global() -> Result<&'static Arc<Pipeline>, Error> {
    GLOBAL
        .get_or_init(|| {
            let pipeline = Pipeline::new(Limits::default());
            metrics::set_global_recorder(pipeline.recorder.clone()).map_err(|_| ())?;
            Ok(pipeline)
        })
        .as_ref()
        .map_err(|()| Error::ForeignRecorder)
}
