//! One metrics pipeline: our layer, over the pending buffer, over the exporter's recorder,
//! kept in shape by an upkeep thread.
//!
//! A process has at most one *global* pipeline (installed as the `metrics` global recorder
//! the first time a [`PrometheusCollector`](crate::PrometheusCollector) or a global
//! [`MetricsServer`](crate::MetricsServer) needs it), and any number of standalone ones
//! held by their owners ([`LocalRecorder`](crate::LocalRecorder), standalone servers).
//!
//! The upkeep thread drains histogram observations into their buckets every
//! `upkeep_interval`, whether or not anybody scrapes: without it, observations pile up in
//! memory (the exporter's own `install_recorder` leaves this to the caller). With an idle
//! timeout it also expires idle series, which the exporter only does while rendering. It
//! runs as long as the pipeline exists, and ends when a standalone pipeline is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

use crate::builder::Config;
use crate::families::Limits;
use crate::layer::PorterRecorder;
use crate::pending::Pending;
use crate::self_metrics::DropReason;
use crate::Error;

pub(crate) type Stack = PorterRecorder<Pending<PrometheusRecorder>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// See the module documentation.
pub(crate) struct Pipeline {
    /// Unique for the life of the process; keys the collectors' handle caches.
    pub(crate) id: u64,
    pub(crate) stack: Stack,
    /// Bumped when cached handles must be looked up again (the exporter was bound).
    pub(crate) epoch: AtomicU64,
    handle: OnceLock<PrometheusHandle>,
    started: Instant,
    upkeep: OnceLock<Thread>,
    /// How often upkeep runs, in milliseconds.
    upkeep_ms: AtomicU64,
    /// Whether a running server exports this pipeline.
    exporting: AtomicBool,
    #[cfg(feature = "process")]
    process: OnceLock<metrics_process::Collector>,
}

impl Pipeline {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        let pipeline = Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stack: PorterRecorder::new(Pending::new(), limits),
            epoch: AtomicU64::new(0),
            handle: OnceLock::new(),
            started: Instant::now(),
            upkeep: OnceLock::new(),
            upkeep_ms: AtomicU64::new(duration_ms(Config::default().upkeep_interval())),
            exporting: AtomicBool::new(false),
            #[cfg(feature = "process")]
            process: OnceLock::new(),
        });
        // From the start: before the exporter is bound, upkeep moves histogram buffers into
        // the bounded pre-export buffer.
        pipeline.spawn_upkeep();
        pipeline
    }

    /// Connects the exporter's recorder, hands the buffered data over and starts upkeep.
    pub(crate) fn bind(
        self: &Arc<Self>,
        recorder: PrometheusRecorder,
        config: &Config,
    ) -> Result<(), Error> {
        let handle = recorder.handle();
        self.stack
            .state()
            .configure(config.limits, config.idle_timeout);
        // Under the drain lock: buffered observations move into the exporter with the rest.
        self.stack
            .drained(|pending| pending.bind(recorder))
            .map_err(|_| Error::AlreadyExported)?;
        let _ = self.handle.set(handle);
        let dropped = self.stack.inner().dropped();
        if dropped > 0 {
            self.stack
                .state()
                .self_metrics
                .dropped(DropReason::BufferFull)
                .increment(dropped);
        }
        self.epoch.fetch_add(1, Ordering::Release);
        #[cfg(feature = "process")]
        if config.process {
            let process = self
                .process
                .get_or_init(metrics_process::Collector::default);
            metrics::with_local_recorder(self.as_ref(), || {
                process.describe();
                process.collect();
            });
        }
        self.upkeep_ms
            .store(duration_ms(config.upkeep_interval()), Ordering::Relaxed);
        if let Some(thread) = self.upkeep.get() {
            thread.unpark(); // the new interval applies now
        }
        Ok(())
    }

    /// The text exposition, with every histogram observation recorded so far (empty before
    /// the exporter is bound).
    pub(crate) fn render(&self) -> String {
        self.stack
            .drained(|_| self.handle.get().map(PrometheusHandle::render))
            .unwrap_or_default()
    }

    pub(crate) fn is_bound(&self) -> bool {
        self.handle.get().is_some()
    }

    fn upkeep_interval(&self) -> Duration {
        Duration::from_millis(self.upkeep_ms.load(Ordering::Relaxed))
    }

    /// Marks the pipeline exported by a server; false if another server exports it now.
    pub(crate) fn claim_export(&self) -> bool {
        !self.exporting.swap(true, Ordering::AcqRel)
    }

    /// Ends [`claim_export`](Self::claim_export).
    pub(crate) fn release_export(&self) {
        self.exporting.store(false, Ordering::Release);
    }

    /// The idle timeout in effect, if any.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        self.stack.state().idle_timeout()
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

    /// Drains histograms, advances the layer's clock and forgets idle series.
    pub(crate) fn run_upkeep(&self) {
        #[cfg(feature = "process")]
        if let Some(process) = self.process.get() {
            metrics::with_local_recorder(self, || process.collect());
        }
        let idle = self.idle_timeout();
        self.stack.drained(|_| {
            let Some(handle) = self.handle.get() else {
                return;
            };
            if idle.is_some() {
                // The exporter expires idle series only while rendering: render (to nowhere)
                // so they expire even when nobody scrapes. This also drains histograms.
                let _ = handle.render_to_write(&mut std::io::sink());
            } else {
                handle.run_upkeep();
            }
        });
        let state = self.stack.state();
        let now = u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX);
        state.tick(now);
        if let Some(idle) = idle {
            // The exporter removes a series idle for `idle`; forget it then too (plus a second
            // of clock slack). Cached handles touch their series every half timeout, so a
            // series in use is never forgotten.
            let grace = u32::try_from(idle.as_secs().saturating_add(1)).unwrap_or(u32::MAX);
            state.families.forget_idle(now.saturating_sub(grace));
        }
        state.publish_counts();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(thread) = self.upkeep.get() {
            thread.unpark();
        }
    }
}

impl Recorder for Pipeline {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.stack.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.stack.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.stack.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.stack.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.stack.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.stack.register_histogram(key, metadata)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The pipeline installed as the `metrics` global recorder.
struct GlobalRecorder(Arc<Pipeline>);

impl Recorder for GlobalRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.0.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.0.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.0.register_histogram(key, metadata)
    }
}

static GLOBAL: OnceLock<Result<Arc<Pipeline>, ()>> = OnceLock::new();
/// Address of the installed global recorder, to recognise it behind `metrics::with_recorder`.
static GLOBAL_ADDR: AtomicUsize = AtomicUsize::new(0);

/// The global pipeline, installing it as the `metrics` global recorder on first use.
///
/// Fails with [`Error::ForeignRecorder`] if another global recorder was installed first.
pub(crate) fn global() -> Result<&'static Arc<Pipeline>, Error> {
    GLOBAL
        .get_or_init(|| {
            let pipeline = Pipeline::new(Limits::default());
            metrics::set_global_recorder(GlobalRecorder(pipeline.clone())).map_err(|_| ())?;
            // The recorder now lives where `metrics` boxed it; learn that address from a fresh
            // thread, which cannot have a local recorder set.
            let addr = thread::scope(|s| s.spawn(|| metrics::with_recorder(recorder_addr)).join())
                .unwrap_or(0);
            GLOBAL_ADDR.store(addr, Ordering::Release);
            Ok(pipeline)
        })
        .as_ref()
        .map_err(|()| Error::ForeignRecorder)
}

/// The global pipeline, if porter-metrics installed it.
pub(crate) fn installed() -> Option<&'static Arc<Pipeline>> {
    GLOBAL.get().and_then(|g| g.as_ref().ok())
}

/// The address of a recorder object, for identity comparisons only.
pub(crate) fn recorder_addr(recorder: &dyn Recorder) -> usize {
    (recorder as *const dyn Recorder).cast::<()>() as usize
}

/// Whether `recorder` is porter-metrics' installed global recorder.
pub(crate) fn is_global(recorder: &dyn Recorder) -> bool {
    let addr = GLOBAL_ADDR.load(Ordering::Acquire);
    addr != 0 && recorder_addr(recorder) == addr
}
