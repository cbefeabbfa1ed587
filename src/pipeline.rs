//! One metrics pipeline: the recorder over its store, the encoder, and, when there is
//! periodic work (idle expiry, process metrics), an upkeep thread.
//!
//! A process has at most one *global* pipeline (installed as the `metrics` global recorder
//! the first time a [`PrometheusCollector`](crate::PrometheusCollector) or a global
//! [`MetricsServer`](crate::MetricsServer) needs it), and any number of standalone ones
//! held by their owners ([`LocalRecorder`](crate::LocalRecorder), standalone servers).
//!
//! A pipeline is *bound* once, by the first server that starts on it (or at once, for a
//! local recorder), with that server's settings: histogram buckets, global labels, limits,
//! idle timeout. Servers then come and go over it, every value kept.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::encode::openmetrics::OpenMetrics;
use crate::encode::protobuf::Protobuf;
use crate::encode::{self, text::Text, ExtraFamily, Format, Negotiated, Options, Tally};
#[cfg(any(feature = "otlp", feature = "remote-write"))]
use crate::encode::{Encoder, Escaping};
use crate::recorder::PorterRecorder;
use crate::store::{Limits, Settings};
use crate::Error;

/// See the module documentation.
pub(crate) struct Pipeline {
    recorder: Arc<PorterRecorder>,
    /// The settings it was bound with.
    config: OnceLock<Config>,
    /// How often upkeep runs, in milliseconds.
    upkeep_ms: AtomicU64,
    upkeep: OnceLock<Thread>,
    /// Whether a running server exports this pipeline.
    exporting: AtomicBool,
    /// The size of the last exposition of each format: the next one's buffer starts that
    /// large.
    last_size: [AtomicU64; 3],
    /// Families left out of scrapes by escaping collisions.
    tally: Tally,
    #[cfg(feature = "process")]
    process: OnceLock<metrics_process::Collector>,
}

impl Pipeline {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            recorder: Arc::new(PorterRecorder::new(limits)),
            config: OnceLock::new(),
            upkeep_ms: AtomicU64::new(0),
            upkeep: OnceLock::new(),
            exporting: AtomicBool::new(false),
            last_size: Default::default(),
            tally: Tally::default(),
            #[cfg(feature = "process")]
            process: OnceLock::new(),
        })
    }

    /// The settings it was bound with, once bound.
    #[cfg(all(feature = "testing", feature = "push"))]
    pub(crate) fn config(&self) -> Option<&Config> {
        self.config.get()
    }

    /// The pipeline's recorder: what the macros and the collector record into.
    pub(crate) fn recorder(&self) -> &Arc<PorterRecorder> {
        &self.recorder
    }

    /// Applies `config`'s settings, once in the pipeline's life: buckets, global labels,
    /// limits, idle timeout; starts upkeep if there is periodic work.
    pub(crate) fn bind(self: &Arc<Self>, config: &Config) {
        if self.config.set(config.clone()).is_err() {
            return;
        }
        self.recorder.configure(config.limits, config.idle_timeout);
        self.recorder.store().bind(Settings {
            buckets: config.buckets.clone(),
            overrides: config.bucket_overrides.clone(),
            native: config.native,
            native_overrides: config.native_overrides.clone(),
            global: config.global_labels.clone(),
        });
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
        if config.idle_timeout.is_some() || config.process {
            self.spawn_upkeep();
        }
    }

    /// Claims the pipeline for one server, binding it with `config` if nobody did yet.
    ///
    /// Fails with [`Error::AlreadyExported`] while another server exports it, and with
    /// [`Error::ConflictingSettings`] if it was bound with other settings than `config`'s.
    pub(crate) fn export(self: &Arc<Self>, config: &Config) -> Result<ExportClaim, Error> {
        if self.exporting.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyExported);
        }
        let claim = ExportClaim(self.clone());
        if let Some(setting) = self.config.get().and_then(|bound| bound.conflict(config)) {
            return Err(Error::ConflictingSettings { setting });
        }
        self.bind(config);
        Ok(claim)
    }

    /// The exposition of everything recorded so far, as negotiated, with `extra` families.
    pub(crate) fn render(&self, negotiated: Negotiated, extra: &[ExtraFamily]) -> Vec<u8> {
        let store = self.recorder.store();
        let options = Options {
            escaping: negotiated.escaping,
            created: self.config.get().is_some_and(|c| c.created_timestamps),
        };
        let tally = &self.tally;
        match negotiated.format {
            Format::Text => self
                .sized(Format::Text, |out: &mut String| {
                    encode::walk(store, extra, options, tally, &mut Text::new(out));
                })
                .into_bytes(),
            Format::OpenMetrics => self
                .sized(Format::OpenMetrics, |out: &mut String| {
                    encode::walk(
                        store,
                        extra,
                        options,
                        tally,
                        &mut OpenMetrics::new(out, options.created),
                    );
                })
                .into_bytes(),
            Format::Protobuf => self.sized(Format::Protobuf, |out: &mut Vec<u8>| {
                encode::walk(store, extra, options, tally, &mut Protobuf::new(out));
            }),
        }
    }

    /// Walks everything recorded so far, with `extra` families, into `encoder`, names
    /// escaped by `escaping`: what a push sends.
    #[cfg(any(feature = "otlp", feature = "remote-write"))]
    pub(crate) fn encode(
        &self,
        escaping: Escaping,
        extra: &[ExtraFamily],
        encoder: &mut impl Encoder,
    ) {
        let options = Options {
            escaping,
            created: false,
        };
        encode::walk(self.recorder.store(), extra, options, &self.tally, encoder);
    }

    /// Walks the series idle expiry hid, for stale markers (see `encode::stale`).
    #[cfg(any(feature = "otlp", feature = "remote-write"))]
    pub(crate) fn encode_hidden(&self, escaping: Escaping, encoder: &mut impl Encoder) {
        encode::stale::walk_hidden(self.recorder.store(), escaping, encoder);
    }

    /// When the pipeline's store was created, in ms since the Unix epoch.
    #[cfg(feature = "otlp")]
    pub(crate) fn epoch_ms(&self) -> u64 {
        self.recorder.store().epoch_ms()
    }

    /// The text exposition, with legacy names, and `extra` families.
    pub(crate) fn render_text(&self, extra: &[ExtraFamily]) -> String {
        String::from_utf8(self.render(Negotiated::default(), extra)).unwrap_or_default()
    }

    /// Runs `render` into a buffer as large as the format's last exposition (and a little
    /// more), and remembers this one's size.
    fn sized<B: Buffer>(&self, format: Format, render: impl FnOnce(&mut B)) -> B {
        let last = &self.last_size[format as usize];
        let hint = last.load(Ordering::Relaxed) as usize;
        let mut out = B::with_capacity(hint + hint / 8);
        render(&mut out);
        last.store(out.size() as u64, Ordering::Relaxed);
        out
    }
    /// Refreshes process metrics and expires idle series.
    pub(crate) fn run_upkeep(&self) {
        #[cfg(feature = "process")]
        if let Some(process) = self.process.get() {
            metrics::with_local_recorder(&*self.recorder, || process.collect());
        }
        self.recorder.store().upkeep();
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
                    // Woken early (the pipeline is gone, say): wait again.
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
            // Renders and `run_upkeep` still work; only periodic expiry is missing.
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

/// What an encoder writes into.
trait Buffer {
    fn with_capacity(capacity: usize) -> Self;
    fn size(&self) -> usize;
}

impl Buffer for String {
    fn with_capacity(capacity: usize) -> Self {
        String::with_capacity(capacity)
    }
    fn size(&self) -> usize {
        self.len()
    }
}

impl Buffer for Vec<u8> {
    fn with_capacity(capacity: usize) -> Self {
        Vec::with_capacity(capacity)
    }
    fn size(&self) -> usize {
        self.len()
    }
}

/// What an exporter reads: a pipeline, and the families it exports beside the store's
/// (its own self-metrics), gathered at each read.
#[derive(Clone)]
pub(crate) struct Source {
    pipeline: Arc<Pipeline>,
    extra: Arc<dyn Fn() -> Vec<ExtraFamily> + Send + Sync>,
}

impl Source {
    pub(crate) fn new(
        pipeline: Arc<Pipeline>,
        extra: impl Fn() -> Vec<ExtraFamily> + Send + Sync + 'static,
    ) -> Self {
        Self {
            pipeline,
            extra: Arc::new(extra),
        }
    }

    /// A scrape's exposition, as negotiated.
    pub(crate) fn render(&self, negotiated: Negotiated) -> Vec<u8> {
        self.pipeline.render(negotiated, &(self.extra)())
    }

    /// Walks the store and the extra families into `encoder` (see [`Pipeline::encode`]).
    #[cfg(any(feature = "otlp", feature = "remote-write"))]
    pub(crate) fn encode(&self, escaping: Escaping, encoder: &mut impl Encoder) {
        self.pipeline.encode(escaping, &(self.extra)(), encoder);
    }

    /// Walks the series idle expiry hid into `encoder` (see [`Pipeline::encode_hidden`]).
    #[cfg(any(feature = "otlp", feature = "remote-write"))]
    pub(crate) fn encode_hidden(&self, escaping: Escaping, encoder: &mut impl Encoder) {
        self.pipeline.encode_hidden(escaping, encoder);
    }

    /// When the pipeline's store was created, in ms since the Unix epoch.
    #[cfg(feature = "otlp")]
    pub(crate) fn epoch_ms(&self) -> u64 {
        self.pipeline.epoch_ms()
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
