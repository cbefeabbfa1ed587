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
use crate::encode::out::Out;
use crate::encode::{self, gzip, ExtraFamily, Negotiated, Options, Rebuilt, SelfFamilies, Tally};
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
    /// The runtime's last reading, once bound with `runtime_metrics`.
    #[cfg(feature = "runtime")]
    runtime: OnceLock<Arc<crate::runtime::RuntimeStats>>,
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
            #[cfg(feature = "runtime")]
            runtime: OnceLock::new(),
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
        #[cfg(feature = "runtime")]
        if let Some(runtime) = &config.runtime {
            let stats = crate::runtime::start(runtime, config.upkeep_interval());
            let _ = self.runtime.set(stats);
        }
        self.upkeep_ms
            .store(duration_ms(config.upkeep_interval()), Ordering::Relaxed);
        if config.idle_timeout.is_some() {
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

    /// The families read when the pipeline is read, beside the store's: the process' and
    /// the runtime's, as configured (a name the store holds is left to it).
    fn own_families(&self) -> Vec<ExtraFamily> {
        #[cfg_attr(not(any(feature = "process", feature = "runtime")), allow(unused_mut))]
        let mut own = Vec::new();
        #[cfg(any(feature = "process", feature = "runtime"))]
        let taken = |name: &str| self.recorder.store().holds(name);
        #[cfg(feature = "process")]
        if self.config.get().is_some_and(|c| c.process) {
            own.extend(crate::process::families(taken));
        }
        #[cfg(feature = "runtime")]
        if let Some(runtime) = self.runtime.get() {
            own.extend(runtime.families(taken));
        }
        own
    }

    fn options(&self, escaping: crate::encode::Escaping) -> Options {
        Options {
            escaping,
            created: self.config.get().is_some_and(|c| c.created_timestamps),
        }
    }

    /// The exposition of everything recorded so far, as negotiated, with the families of
    /// `extra`, whole.
    pub(crate) fn render(&self, negotiated: Negotiated, extra: &dyn SelfFamilies) -> Vec<u8> {
        let format = negotiated.format;
        let last = &self.last_size[format as usize];
        let hint = last.load(Ordering::Relaxed) as usize;
        let mut out = Out::whole(hint + hint / 8);
        let options = self.options(negotiated.escaping);
        let store = self.recorder.store();
        let extra = WithOwn::new(extra, self.own_families());
        encode::render(store, &extra, options, &self.tally, format, &mut out);
        let body = out.finish();
        last.store(body.len() as u64, Ordering::Relaxed);
        body
    }

    /// The exposition as negotiated, with the families of `extra`, handed to `sink` in
    /// chunks as it is rendered (gzipped if `gzip`): a scrape's body, streamed.
    pub(crate) fn stream(
        &self,
        negotiated: Negotiated,
        extra: &dyn SelfFamilies,
        gzip: bool,
        sink: &mut dyn FnMut(Vec<u8>),
    ) {
        let options = self.options(negotiated.escaping);
        let (store, format) = (self.recorder.store(), negotiated.format);
        let extra = &WithOwn::new(extra, self.own_families());
        match gzip {
            false => {
                let mut hand = |chunk: Vec<u8>| {
                    sink(chunk);
                    None
                };
                let mut out = Out::chunked(&mut hand);
                encode::render(store, extra, options, &self.tally, format, &mut out);
                out.finish();
            }
            true => {
                let mut stream = gzip::Stream::new(encode::out::CHUNK, sink);
                let mut hand = |chunk: Vec<u8>| Some(stream.write(chunk));
                let mut out = Out::chunked(&mut hand);
                encode::render(store, extra, options, &self.tally, format, &mut out);
                out.finish();
                stream.finish();
            }
        }
    }

    /// Walks everything recorded so far, with `extra` families, into `encoder`, names
    /// escaped by `escaping`: what a push sends.
    #[cfg(any(feature = "otlp", feature = "remote-write"))]
    pub(crate) fn encode(
        &self,
        escaping: Escaping,
        extra: &dyn SelfFamilies,
        encoder: &mut impl Encoder,
    ) {
        let extra = WithOwn::new(extra, self.own_families());
        let options = Options {
            escaping,
            created: false,
        };
        encode::walk(self.recorder.store(), &extra, options, &self.tally, encoder);
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
        let body = self.render(Negotiated::default(), &extra);
        // The text formats write only UTF-8 (labels and names are `str`).
        String::from_utf8(body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Expires idle series.
    pub(crate) fn run_upkeep(&self) {
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

/// An exporter's families and the pipeline's own (process, runtime), read together.
struct WithOwn<'a> {
    extra: &'a dyn SelfFamilies,
    own: Vec<ExtraFamily>,
}

impl<'a> WithOwn<'a> {
    fn new(extra: &'a dyn SelfFamilies, own: Vec<ExtraFamily>) -> Self {
        Self { extra, own }
    }
}

impl SelfFamilies for WithOwn<'_> {
    fn write(&self, out: &mut encode::Families<'_>) {
        self.extra.write(out);
        (&self.own[..]).write(out);
    }
}

/// What an exporter reads: a pipeline, and the families it exports beside the store's
/// (its own self-metrics), gathered at each read.
#[derive(Clone)]
pub(crate) struct Source {
    pipeline: Arc<Pipeline>,
    extra: Arc<dyn SelfFamilies>,
}

impl Source {
    /// A source whose families `extra` builds at each read (see [`Source::with`]).
    pub(crate) fn new(
        pipeline: Arc<Pipeline>,
        extra: impl Fn() -> Vec<ExtraFamily> + Send + Sync + 'static,
    ) -> Self {
        Self::with(pipeline, Arc::new(Rebuilt(extra)))
    }

    /// A source whose families `extra` writes from its counts at each read.
    pub(crate) fn with(pipeline: Arc<Pipeline>, extra: Arc<dyn SelfFamilies>) -> Self {
        Self { pipeline, extra }
    }

    /// A scrape's exposition, as negotiated, whole (the Pushgateway's body).
    #[cfg(feature = "push")]
    pub(crate) fn render(&self, negotiated: Negotiated) -> Vec<u8> {
        self.pipeline.render(negotiated, &*self.extra)
    }

    /// A scrape's exposition, as negotiated, in chunks as it is rendered (see
    /// [`Pipeline::stream`]).
    pub(crate) fn stream(&self, negotiated: Negotiated, gzip: bool, sink: &mut dyn FnMut(Vec<u8>)) {
        self.pipeline.stream(negotiated, &*self.extra, gzip, sink);
    }

    /// Walks the store and the extra families into `encoder` (see [`Pipeline::encode`]).
    #[cfg(any(feature = "otlp", feature = "remote-write"))]
    pub(crate) fn encode(&self, escaping: Escaping, encoder: &mut impl Encoder) {
        self.pipeline.encode(escaping, &*self.extra, encoder);
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
