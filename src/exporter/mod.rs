//! What every exporter of a pipeline shares, the [`MetricsServer`](crate::MetricsServer)
//! and the `Pusher` alike: which pipeline, with which settings ([`Exported`]); the
//! lifecycle ([`Lifecycle`]); a thread running a runtime of its own ([`thread`]).

mod lifecycle;
pub(crate) mod thread;

use std::sync::Arc;

use crate::config::Config;
use crate::encode::ExtraFamily;
use crate::pipeline::{self, ExportClaim, Pipeline, Source};
use crate::{Error, LocalRecorder, PrometheusCollector};
pub(crate) use lifecycle::Lifecycle;

/// Which pipeline an exporter exports, and with which settings.
pub(crate) struct Exported {
    pub(crate) config: Config,
    /// The pipeline of a standalone exporter; `None` for the global one.
    own: Option<Arc<Pipeline>>,
}

impl Exported {
    pub(crate) fn new(config: Config) -> Self {
        let own = config.standalone.then(|| Pipeline::new(config.limits));
        Self { config, own }
    }

    /// Whether it exports a pipeline of its own.
    pub(crate) fn is_standalone(&self) -> bool {
        self.own.is_some()
    }

    /// Claims the pipeline (binding it if needed) and gives what reads it, with the
    /// families `extra` gives at each read.
    pub(crate) fn claim(
        &self,
        extra: impl Fn() -> Vec<ExtraFamily> + Send + Sync + 'static,
    ) -> Result<(ExportClaim, Source), Error> {
        let pipeline = match &self.own {
            Some(own) => own,
            None => pipeline::global()?,
        };
        let claim = pipeline.export(&self.config)?;
        Ok((claim, Source::new(pipeline.clone(), extra)))
    }

    pub(crate) fn collector(&self) -> PrometheusCollector {
        match &self.own {
            Some(own) => PrometheusCollector::for_pipeline(own.clone()),
            None => PrometheusCollector::new(),
        }
    }

    pub(crate) fn recorder(&self) -> Option<LocalRecorder> {
        self.own.clone().map(LocalRecorder::from_pipeline)
    }
}
